#!/usr/bin/env bash
# `make smoke`: the README's curl tour against a running taskrunner at
# TASKRUNNER_URL (default http://127.0.0.1:8000), with TASKRUNNER_API_KEY as
# the bearer key when set. Each step prints one line; the first wrong answer
# stops it with the request, the status and the body.
#
# SMOKE_SEARCH=1 adds a search through SMOKE_SEARCH_SOURCES (default brave),
# run twice: the second must come from the cache. The server needs a
# provider it can reach: a real key, or `make fake-search` (see the README).
set -euo pipefail

url=${TASKRUNNER_URL:-http://127.0.0.1:8000}
auth=()
[[ -n "${TASKRUNNER_API_KEY:-}" ]] && auth=(-H "Authorization: Bearer $TASKRUNNER_API_KEY")
body=$(mktemp)
trap 'rm -f "$body"' EXIT
step=0

fail() {
  echo "smoke: FAIL: $*" >&2
  echo "smoke: last body: $(cat "$body")" >&2
  exit 1
}
ok() { step=$((step + 1)); echo "smoke: ok $step: $*"; }

# call METHOD PATH [JSON] -> sets $status, body in $body
call() {
  local method=$1 path=$2 data=${3:-}
  local args=(-sS -o "$body" -w '%{http_code}' -X "$method" "${auth[@]}" "$url$path")
  [[ -n "$data" ]] && args+=(-H 'Content-Type: application/json' -d "$data")
  status=$(curl "${args[@]}") || fail "$method $path: no answer from $url"
}
expect() { # expect STATUS what
  [[ "$status" == "$1" ]] || fail "$2: want HTTP $1, got $status"
}
field() { jq -r "$1" <"$body"; }

# wait_status ID STATUS...: polls GET /tasks/ID until its status is one of them.
wait_status() {
  local id=$1; shift
  for _ in $(seq 1 150); do
    call GET "/tasks/$id"
    expect 200 "GET /tasks/$id"
    local s
    s=$(field .status)
    for want in "$@"; do [[ "$s" == "$want" ]] && return 0; done
    sleep 0.2
  done
  fail "task $id: status $(field .status), want one of: $*"
}

call GET /health
expect 200 "GET /health"
[[ $(field .status) == ok ]] || fail "/health did not say ok"
ok "health"

call GET /ready
expect 200 "GET /ready (checks: $(field .checks 2>/dev/null || true))"
ok "ready: $(field '.checks | to_entries | map("\(.key) \(.value)") | join(", ")')"

call POST /tasks '{"type":"echo","params":{"msg":"hello"},"timeout_seconds":300,"max_retries":0}'
expect 202 "POST /tasks echo"
echo_id=$(field .id)
wait_status "$echo_id" completed
[[ $(field .result.msg) == hello ]] || fail "echo task $echo_id: result.msg is not hello"
[[ $(field '.runs | length') == 1 ]] || fail "echo task $echo_id: want one run"
ok "echo task $echo_id completed with result {\"msg\":\"hello\"}"

call POST /tasks '{"type":"sleep","params":{"seconds":0.5},"timeout_seconds":300,"max_retries":0}'
expect 202 "POST /tasks sleep"
sleep_id=$(field .id)
wait_status "$sleep_id" completed
ok "sleep task $sleep_id completed"

call POST /tasks '{"type":"sleep","params":{"seconds":30},"timeout_seconds":300,"max_retries":0}'
expect 202 "POST /tasks long sleep"
cancel_id=$(field .id)
wait_status "$cancel_id" running
call POST "/tasks/$cancel_id/cancel"
[[ "$status" == 200 || "$status" == 202 ]] || fail "POST /tasks/$cancel_id/cancel: want 200 or 202, got $status"
wait_status "$cancel_id" cancelled
ok "running sleep task $cancel_id cancelled"

call POST "/tasks/$cancel_id/cancel"
expect 409 "cancelling a finished task"
[[ $(field .error.code) == task_already_finished ]] || fail "want error code task_already_finished"
ok "cancelling it again: 409 task_already_finished"

call POST /tasks '{"type":"sleep","params":{"seconds":30},"timeout_seconds":0.5,"max_retries":0}'
expect 202 "POST /tasks sleep with a short timeout"
killed_id=$(field .id)
wait_status "$killed_id" discarded
[[ $(field .error.code) == task_runtime_exceeded ]] || fail "task $killed_id: want error code task_runtime_exceeded"
ok "sleep task $killed_id killed by its timeout: task_runtime_exceeded"

# Bulk actions: a dry run counts what a delete would take (the cancelled
# sleep among it) and changes nothing; the filter also lists it.
call POST /tasks/delete '{"filter":{"type":"sleep","status":"cancelled","error_code":"task_cancelled"},"dry_run":true}'
expect 200 "POST /tasks/delete dry run"
[[ $(field '.matched >= 1 and (has("affected") | not)') == true ]] || fail "dry run: want matched >= 1 and no affected"
matched=$(field .matched)
call GET "/tasks/$cancel_id"
expect 200 "GET /tasks/$cancel_id after the dry run"
[[ $(field .status) == cancelled ]] || fail "task $cancel_id: the dry run changed it"
call GET "/tasks?type=sleep&status=cancelled&created_after=2000-01-01T00:00:00Z&limit=500"
expect 200 "GET /tasks with a filter"
[[ $(field "any(.tasks[]; .id == $cancel_id)") == true ]] || fail "the filtered list lacks task $cancel_id"
ok "bulk delete dry run: $matched cancelled sleep task(s) matched, none deleted"

# Artifacts, both ways: the JSON form with base64, and a raw streamed PUT.
call POST /artifacts "{\"task_id\":$echo_id,\"type\":\"log\",\"content_type\":\"text/plain\",\"data_base64\":\"SGVsbG8gd29ybGQ=\"}"
expect 201 "POST /artifacts"
json_artifact=$(field .id)
[[ $(field .sha256) == 64ec88ca00b268e5ba1a35678a1b5316d212f4f366b2477232534a8aeca37f3c ]] || fail "artifact $json_artifact: wrong sha256"
call GET "/artifacts/$json_artifact/meta"
expect 200 "GET /artifacts/$json_artifact/meta"
[[ $(field .size) == 11 && $(field .content_type) == text/plain ]] || fail "artifact $json_artifact: wrong metadata"
status=$(curl -sS -o "$body" -w '%{http_code}' "${auth[@]}" "$url/artifacts/$json_artifact")
expect 200 "GET /artifacts/$json_artifact"
[[ $(cat "$body") == "Hello world" ]] || fail "artifact $json_artifact: downloaded bytes differ"
ok "artifact $json_artifact stored from base64 and downloaded"

upload=$(mktemp)
trap 'rm -f "$body" "$upload"' EXIT
head -c 300000 /dev/urandom >"$upload"
want_sha=$(sha256sum "$upload" | cut -d' ' -f1)
status=$(curl -sS -o "$body" -w '%{http_code}' -X PUT "${auth[@]}" -H 'Content-Type: application/octet-stream' \
  --data-binary "@$upload" "$url/tasks/$echo_id/artifacts/smoke.bin?type=file")
expect 201 "PUT /tasks/$echo_id/artifacts/smoke.bin"
raw_artifact=$(field .id)
[[ $(field .sha256) == "$want_sha" ]] || fail "artifact $raw_artifact: sha256 differs from the upload's"
status=$(curl -sS -o "$body" -w '%{http_code}' "${auth[@]}" "$url/artifacts/$raw_artifact")
expect 200 "GET /artifacts/$raw_artifact"
[[ $(sha256sum "$body" | cut -d' ' -f1) == "$want_sha" ]] || fail "artifact $raw_artifact: downloaded bytes differ"
status=$(curl -sS -o "$body" -w '%{http_code}' "${auth[@]}" -H 'Range: bytes=0-99' "$url/artifacts/$raw_artifact")
expect 206 "GET /artifacts/$raw_artifact with Range"
[[ $(stat -c %s "$body") == 100 ]] || fail "artifact $raw_artifact: range of 100 bytes has $(stat -c %s "$body")"
call GET "/tasks/$echo_id/artifacts"
expect 200 "GET /tasks/$echo_id/artifacts"
[[ $(field '.artifacts | length') == 2 ]] || fail "task $echo_id: want 2 artifacts"
call GET "/tasks/$echo_id/artifacts?limit=1"
expect 200 "GET /tasks/$echo_id/artifacts?limit=1"
cursor=$(field .next_cursor)
[[ $(field '.artifacts | length') == 1 && $cursor != null ]] || fail "task $echo_id: want a page of 1 with a next_cursor"
call GET "/tasks/$echo_id/artifacts?limit=1&cursor=$cursor"
expect 200 "GET /tasks/$echo_id/artifacts, second page"
[[ $(field '.artifacts | length') == 1 && $(field .next_cursor) == null ]] || fail "task $echo_id: want a last page of 1"
call GET "/tasks/$echo_id"
[[ $(field .artifact_count) == 2 ]] || fail "task $echo_id: want artifact_count 2"
ok "artifact $raw_artifact streamed up (300 kB), downloaded whole and by range; task $echo_id lists both, and pages through them"

call GET /limits
expect 200 "GET /limits"
for k in task_max_runtime_seconds task_max_artifact_mb task_max_artifacts tasks_per_minute search_source_allowlist fetch_domain_allowlist \
  max_batch_size max_concurrent_uploads tenant_max_uploads upload_idle_timeout_seconds artifact_upload_min_cost_kib \
  schedule_max_task_bytes internal_job_retention_seconds; do
  [[ $(field "has(\"$k\")") == true ]] || fail "/limits lacks $k"
done
ok "limits: $(jq -c . <"$body")"
callbacks=$(field .callbacks_enabled)

# The caller's callback signing secret: read, never rotated here.
call GET /callbacks/secret
if [[ "$callbacks" == true ]]; then
  expect 200 "GET /callbacks/secret"
  [[ -n $(field '.secret // empty') ]] || fail "/callbacks/secret has no secret"
  ok "callback secret read (previous: $(field '.previous != null'))"
else
  expect 404 "GET /callbacks/secret without CALLBACK_SECRET"
  [[ $(field .error.code) == callbacks_disabled ]] || fail "want callbacks_disabled"
  ok "callbacks off: GET /callbacks/secret is callbacks_disabled"
fi

call POST /tasks '{"type":"sleep","params":{"seconds":-1}}'
expect 400 "negative seconds"
[[ $(field .error.code) == task_rejected_invalid_params ]] || fail "want task_rejected_invalid_params"
call POST /tasks '{"type":"nope","params":{}}'
expect 400 "unknown type"
[[ $(field .error.code) == unknown_task_type ]] || fail "want unknown_task_type"
call GET /tasks/not-a-task
expect 404 "unknown task id"
ok "bad input refused: task_rejected_invalid_params, unknown_task_type, not_found"

if [[ "${SMOKE_SEARCH:-0}" == 1 ]]; then
  sources=$(jq -cn --arg s "${SMOKE_SEARCH_SOURCES:-brave}" '$s | split(",")')
  query="taskrunner smoke $(date +%s%N)" # new each run, so the first is a miss
  search_once() {
    call POST /search "$(jq -cn --arg q "$query" --argjson s "$sources" '{query: $q, sources: $s, recency_days: 7}')"
    expect 202 "POST /search"
    local id
    id=$(field .id)
    wait_status "$id" completed discarded cancelled
    [[ $(field .status) == completed ]] || fail "search task $id: $(field .status): $(field .error.message)"
    [[ $(field '.result.results | length') -ge 1 ]] || fail "search task $id: no results"
    search_id=$id
  }
  search_once
  [[ $(field '[.result.sources[] | .cached] | any') == false ]] || fail "first search $search_id: a source was already cached"
  ok "search $search_id: $(field '.result.results | length') result(s) from $(field '.result.sources | keys | join(", ")')"
  search_once
  [[ $(field '[.result.sources[] | .cached] | all') == true ]] || fail "second search $search_id: not served from the cache: $(jq -c .result.sources <"$body")"
  ok "the same search again, $search_id: every source from the cache"
fi

call GET "/tasks?type=echo&limit=5"
expect 200 "GET /tasks"
[[ $(field '.tasks | length') -ge 1 ]] || fail "GET /tasks lists no echo task"
ok "list: $(field '.tasks | length') echo task(s) on the first page"

# A schedule: as often as the tenant's tasks_per_minute lets its ticks
# come (every second from 60 a minute), an echo task; it fires, then is
# deleted. Under 60 a minute, an every-second schedule is refused.
sched="smoke-$(date +%s%N)"
per_minute=$(curl -sS "${auth[@]}" "$url/limits" | jq .tenant.tasks_per_minute)
every=$(( (60 + per_minute - 1) / per_minute ))
if (( per_minute < 60 )); then
  call POST /schedules "{\"name\":\"$sched\",\"every\":\"1s\",\"task\":{\"type\":\"echo\",\"params\":{\"msg\":\"tick\"}}}"
  expect 409 "POST /schedules ticking 60 times a minute with tasks_per_minute $per_minute"
  [[ $(field .error.code) == schedule_rate_exceeded ]] || fail "want schedule_rate_exceeded"
  ok "an every-second schedule refused: schedule_rate_exceeded ($per_minute tasks a minute)"
fi
call POST /schedules "{\"name\":\"$sched\",\"every\":\"${every}s\",\"task\":{\"type\":\"echo\",\"params\":{\"msg\":\"tick\"},\"max_retries\":0}}"
expect 201 "POST /schedules"
[[ $(field '.next_runs | length') == 5 ]] || fail "schedule $sched: want 5 next runs"
for _ in $(seq 1 100); do
  call GET "/schedules/$sched"
  expect 200 "GET /schedules/$sched"
  [[ $(field '.last_task_ids | length') -ge 1 ]] && break
  sleep 0.2
done
tick_id=$(field '.last_task_ids[0] // empty')
[[ -n "$tick_id" ]] || fail "schedule $sched never fired"
wait_status "$tick_id" completed
[[ $(field .schedule) == "$sched" ]] || fail "task $tick_id does not name schedule $sched"
call DELETE "/schedules/$sched"
expect 204 "DELETE /schedules/$sched"
call GET "/schedules/$sched"
expect 404 "GET /schedules/$sched after DELETE"
ok "schedule $sched fired task $tick_id, then was deleted"

# A batch, then the enqueue limit: the batch's answer says how many enqueues
# are left this minute; use them up, and the next one is refused with 429
# and Retry-After. (This leaves the limit spent for up to a minute.)
headers=$(mktemp)
trap 'rm -f "$body" "$upload" "$headers"' EXIT
batch_of() { jq -cn --argjson n "$1" '{tasks: [range($n) | {type: "echo", params: {msg: "batch \(.)"}}]}'; }
status=$(curl -sS -o "$body" -D "$headers" -w '%{http_code}' -X POST "${auth[@]}" -H 'Content-Type: application/json' \
  -d "$(batch_of 3)" "$url/tasks/batch")
expect 202 "POST /tasks/batch"
[[ $(field '.tasks | length') == 3 ]] || fail "batch: want 3 tasks"
left=$(tr -d '\r' <"$headers" | sed -n 's/^[Rr]ate[Ll]imit: .*r=\([0-9]*\).*/\1/p')
[[ -n "$left" ]] || fail "batch: no RateLimit header"
ok "batch of 3 enqueued in one transaction; $left enqueue(s) left this minute"
max_batch=$(curl -sS "${auth[@]}" "$url/limits" | jq .max_batch_size)
# The allowance refills as the minute goes on, so spend what each answer
# says is left until a request is refused (a bounded number of tries).
for _ in $(seq 1 20); do
  n=$(( left < 1 ? 1 : (left < max_batch ? left : max_batch) ))
  status=$(curl -sS -o "$body" -D "$headers" -w '%{http_code}' -X POST "${auth[@]}" -H 'Content-Type: application/json' \
    -d "$(batch_of "$n")" "$url/tasks/batch")
  [[ "$status" == 429 ]] && break
  expect 202 "POST /tasks/batch of $n"
  left=$(tr -d '\r' <"$headers" | sed -n 's/^[Rr]ate[Ll]imit: .*r=\([0-9]*\).*/\1/p')
done
expect 429 "POST /tasks/batch over the limit"
[[ $(field .error.code) == rate_limit_exceeded ]] || fail "want rate_limit_exceeded"
retry=$(tr -d '\r' <"$headers" | sed -n 's/^[Rr]etry-[Aa]fter: *//p')
[[ "$retry" =~ ^[0-9]+$ ]] || fail "429 without a Retry-After"
ok "over the limit: 429 rate_limit_exceeded, Retry-After ${retry}s"

echo "smoke: passed ($step checks against $url)"
