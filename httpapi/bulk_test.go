package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

// bulkResult is a bulk action's answer.
type bulkResult struct {
	Matched  int64  `json:"matched"`
	Affected *int64 `json:"affected"`
}

var bulkActions = []task.Action{task.ActionCancel, task.ActionRetry, task.ActionDelete}

// bulk posts a bulk action as key, requiring 200.
func (b *bundle) bulk(t *testing.T, key string, action task.Action, filter any, dryRun bool) bulkResult {
	t.Helper()
	r := b.doAs(t, key, http.MethodPost, "/tasks/"+string(action), map[string]any{"filter": filter, "dry_run": dryRun})
	require.Equal(t, http.StatusOK, r.status, "%s: %s", action, r.raw)
	res := decode[bulkResult](t, r.raw)
	require.Equal(t, dryRun, res.Affected == nil, "a dry run, and only a dry run, has no affected: %s", r.raw)
	return res
}

// setState puts task id in status as River would leave it (finalized_at
// for a finished task, an attempt for one that ran), and its creation at
// created when it is not zero.
func (b *bundle) setState(t *testing.T, id int64, status string, created time.Time) {
	t.Helper()
	_, err := b.db.Pool.Exec(context.Background(), `
		UPDATE river_job SET state = $2::river_job_state,
			finalized_at = CASE WHEN $2 IN ('completed', 'cancelled', 'discarded') THEN now() END,
			attempt = CASE WHEN $2 IN ('available', 'scheduled', 'pending') THEN 0 ELSE 1 END,
			attempted_at = CASE WHEN $2 IN ('available', 'scheduled', 'pending') THEN NULL ELSE now() END,
			created_at = coalesce($3, created_at)
		WHERE id = $1`, id, status, nullTime(created))
	require.NoError(t, err)
}

func nullTime(tm time.Time) *time.Time {
	if tm.IsZero() {
		return nil
	}
	return &tm
}

// failRun records a failed run of task id with code, as the run recorder
// does.
func (b *bundle) failRun(t *testing.T, id int64, code string) {
	t.Helper()
	_, err := b.db.Pool.Exec(context.Background(), `
		INSERT INTO runs (task_id, attempt, key, task_type, status, error_code, error, worker, finished_at)
		SELECT id, 1, 'task:' || id, kind, 'failed', $2, 'it failed', 'test', now() FROM river_job WHERE id = $1`, id, code)
	require.NoError(t, err)
}

// states is every task's status by id.
func (b *bundle) states(t *testing.T) map[int64]string {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), "SELECT id, state::text FROM river_job")
	require.NoError(t, err)
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var st string
		require.NoError(t, rows.Scan(&id, &st))
		out[id] = st
	}
	require.NoError(t, rows.Err())
	return out
}

// snapshot is everything a bulk action could change, as text.
func (b *bundle) snapshot(t *testing.T) string {
	t.Helper()
	var s string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `
		SELECT coalesce(string_agg(concat_ws(' ', id, state, attempt, max_attempts, scheduled_at, finalized_at, metadata), E'\n' ORDER BY id), '')
		FROM river_job`).Scan(&s))
	return fmt.Sprintf("%s\nartifacts %d, objects %d", s, b.artifactRows(t), b.objectCount(t))
}

// Every filter field keeps what it should and nothing else, in GET /tasks
// and in the bulk actions' dry runs alike; the bulk actions count only
// the task types' jobs in the statuses they touch.
func TestFilterFieldsMatch(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: tenantKeys})
	ctx := context.Background()
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	submit := func(key string, req map[string]any) int64 {
		r := b.doAs(t, key, http.MethodPost, "/tasks", req)
		require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.raw)
		return r.task(t).ID
	}
	echo := func(msg string) map[string]any {
		return map[string]any{"type": "echo", "params": map[string]any{"msg": msg}}
	}
	a := submit(aliceKey, echo("a"))
	bq := submit(aliceKey, map[string]any{"type": "echo", "params": map[string]any{"msg": "b"}, "queue": "other"})
	c := submit(bobKey, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 1}, "run_at": time.Now().Add(time.Hour)})
	d := submit(bobKey, echo("a"))
	b.setState(t, d, "discarded", time.Time{})
	b.failRun(t, d, "fetch_timeout")
	e := submit(aliceKey, echo("c"))
	b.setState(t, e, "discarded", time.Time{})
	f := submit(aliceKey, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 2}})
	b.setState(t, f, "cancelled", time.Time{})
	g := submit(bobKey, echo("d"))
	b.setState(t, g, "completed", time.Time{})
	h := submit(aliceKey, echo("e"))
	b.setState(t, h, "running", old)
	b.failRun(t, h, "task_interrupted")
	// A job of taskrunner's own: never listed, never touched in bulk.
	res, err := b.client.Insert(ctx, jobs.RetentionArgs{RetentionSeconds: 1}, nil)
	require.NoError(t, err)
	own := res.Job.ID
	all := []int64{a, bq, c, d, e, f, g, h}
	except := func(ids ...int64) []int64 {
		return slices.DeleteFunc(slices.Clone(all), func(id int64) bool { return slices.Contains(ids, id) })
	}
	status := b.states(t)

	for _, tc := range []struct {
		name   string
		filter taskrunner.Filter
		want   []int64
	}{
		{"none", taskrunner.Filter{}, all},
		{"type", taskrunner.Filter{Type: "echo"}, []int64{a, bq, d, e, g, h}},
		{"one status", taskrunner.Filter{Statuses: []taskrunner.Status{"available"}}, []int64{a, bq}},
		{"statuses", taskrunner.Filter{Statuses: []taskrunner.Status{"discarded", "cancelled", "scheduled"}}, []int64{c, d, e, f}},
		{"owner", taskrunner.Filter{Owner: "bob"}, []int64{c, d, g}},
		{"owner local", taskrunner.Filter{Owner: "local"}, nil},
		{"created before", taskrunner.Filter{CreatedBefore: new(old.Add(time.Second))}, []int64{h}},
		{"created after", taskrunner.Filter{CreatedAfter: new(old.Add(time.Second))}, except(h)},
		{"created between", taskrunner.Filter{CreatedAfter: new(old.Add(-time.Second)), CreatedBefore: new(old.Add(time.Second))}, []int64{h}},
		{"error code of a run", taskrunner.Filter{ErrorCode: "fetch_timeout"}, []int64{d}},
		{"error code of a discarded task without one", taskrunner.Filter{ErrorCode: "task_failed"}, []int64{e}},
		{"error code of a cancelled task", taskrunner.Filter{ErrorCode: "task_cancelled"}, []int64{f}},
		{"error code of a running task's earlier run", taskrunner.Filter{ErrorCode: "task_interrupted"}, []int64{h}},
		{"error code nobody has", taskrunner.Filter{ErrorCode: "search_failed"}, nil},
		{"queue", taskrunner.Filter{Queue: "other"}, []int64{bq}},
		{"default queue", taskrunner.Filter{Queue: "default"}, except(bq)},
		{"params", taskrunner.Filter{Params: json.RawMessage(`{"msg":"a"}`)}, []int64{a, d}},
		{"params of another type", taskrunner.Filter{Params: json.RawMessage(`{"seconds":2}`)}, []int64{f}},
		{"params that no task holds", taskrunner.Filter{Params: json.RawMessage(`{"msg":"a","seconds":1}`)}, nil},
		{"every field", taskrunner.Filter{Type: "echo", Statuses: []taskrunner.Status{"available", "discarded"}, Owner: "alice",
			CreatedAfter: new(old), Queue: "default", Params: json.RawMessage(`{"msg":"a"}`)}, []int64{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := listIDs(t, b, opsKey, "?limit=500&"+tc.filter.Values().Encode())
			want := slices.Clone(tc.want)
			slices.Reverse(want) // newest first
			if want == nil {
				want = []int64{}
			}
			require.Equal(t, want, got, "GET /tasks?%s", tc.filter.Values().Encode())
			for _, action := range bulkActions {
				n := 0
				for _, id := range tc.want {
					if slices.Contains(task.ActionStates[action], taskrunner.Status(status[id])) {
						n++
					}
				}
				require.EqualValues(t, n, b.bulk(t, opsKey, action, tc.filter, true).Matched, "dry run of %s", action)
			}
		})
	}
	require.Equal(t, status, b.states(t), "the dry runs changed nothing")
	require.NotContains(t, listIDs(t, b, opsKey, "?limit=500"), own, "taskrunner's own job is not a task")

	// A client sees and counts its own tasks only.
	require.Equal(t, []int64{bq, a}, listIDs(t, b, aliceKey, "?status=available"))
	require.Empty(t, listIDs(t, b, aliceKey, "?owner=bob"))
	require.EqualValues(t, 2, b.bulk(t, aliceKey, task.ActionCancel, map[string]any{"status": "available"}, true).Matched)
	require.EqualValues(t, 0, b.bulk(t, aliceKey, task.ActionCancel, map[string]any{"owner": "bob"}, true).Matched)
	require.EqualValues(t, 1, b.bulk(t, bobKey, task.ActionCancel, map[string]any{}, true).Matched)
}

// Each action touches only its statuses; dry runs change nothing; each
// call logs one bulk_action line without the key.
func TestBulkActionsTouchOnlyTheirStates(t *testing.T) {
	t.Parallel()
	for _, action := range bulkActions {
		t.Run(string(action), func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{apiKeys: tenantKeys})
			byStatus := map[string]int64{}
			for _, st := range taskrunner.Statuses {
				r := b.doAs(t, opsKey, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": st}})
				require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.raw)
				id := r.task(t).ID
				b.setState(t, id, string(st), time.Time{})
				byStatus[string(st)] = id
			}
			before := b.snapshot(t)
			dry := b.bulk(t, opsKey, action, map[string]any{}, true)
			require.EqualValues(t, len(task.ActionStates[action]), dry.Matched)
			require.Equal(t, before, b.snapshot(t), "a dry run changes nothing")

			res := b.bulk(t, opsKey, action, map[string]any{}, false)
			require.EqualValues(t, len(task.ActionStates[action]), res.Matched)
			require.EqualValues(t, len(task.ActionStates[action]), *res.Affected)
			after := b.states(t)
			for st, id := range byStatus {
				got, exists := after[id]
				touched := slices.Contains(task.ActionStates[action], taskrunner.Status(st))
				switch {
				case !touched:
					require.Equal(t, st, got, "%s must leave a %s task alone", action, st)
				case action == task.ActionDelete:
					require.False(t, exists, "a %s task is deleted", st)
				case action == task.ActionRetry:
					require.Equal(t, "available", got, "a %s task is retried", st)
				case st == "running":
					require.Equal(t, "running", got, "a running task's worker is told to stop")
					var requested bool
					require.NoError(t, b.db.Pool.QueryRow(context.Background(),
						"SELECT metadata ? 'cancel_attempted_at' FROM river_job WHERE id = $1", id).Scan(&requested))
					require.True(t, requested)
				default:
					require.Equal(t, "cancelled", got, "a %s task is cancelled", st)
				}
			}
			// Again: nothing left to touch but what the action itself left
			// in its statuses (a retried task is available, a running one
			// still running).
			again := b.bulk(t, opsKey, action, map[string]any{"status": []string{"completed"}, "type": "echo"}, false)
			if action == task.ActionDelete {
				require.Zero(t, again.Matched)
			}

			lines := b.logs.Events("bulk_action")
			require.Len(t, lines, 3)
			require.Equal(t, string(action), lines[1]["action"])
			require.Equal(t, false, lines[1]["dry_run"])
			require.Equal(t, true, lines[0]["dry_run"])
			require.EqualValues(t, len(task.ActionStates[action]), lines[1]["matched"])
			require.EqualValues(t, len(task.ActionStates[action]), lines[1]["affected"])
			require.Equal(t, "ops", lines[1]["tenant"])
			require.Equal(t, "status=completed&type=echo", lines[2]["filter"])
			require.NotContains(t, b.logs.String(), opsKey)
		})
	}
}

// A bulk cancel of 10,000 queued tasks pages through them and leaves none
// queued.
func TestBulkCancelTenThousand(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	const n = 10_000
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: builtin.EchoArgs{Msg: strconv.Itoa(i)}, InsertOpts: &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)}}
	}
	inserted, err := b.client.InsertManyFast(context.Background(), params)
	require.NoError(t, err)
	require.Equal(t, n, inserted)

	require.EqualValues(t, n, b.bulk(t, "", task.ActionCancel, map[string]any{"type": "echo"}, true).Matched)
	res := b.bulk(t, "", task.ActionCancel, map[string]any{"type": "echo"}, false)
	require.EqualValues(t, n, res.Matched)
	require.EqualValues(t, n, *res.Affected)
	counts := map[string]int{}
	for _, st := range b.states(t) {
		counts[st]++
	}
	require.Equal(t, map[string]int{"cancelled": n}, counts)
	lines := b.logs.Events("bulk_action")
	require.Len(t, lines, 2)
	require.EqualValues(t, n/task.BulkPageSize, lines[1]["pages"], "one transaction per page")
}

// A bulk delete takes the finished tasks' artifacts with them, rows and
// MinIO objects, and leaves the others' alone.
func TestBulkDeleteRemovesArtifacts(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	var ids []int64
	for i := range 3 {
		id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": strconv.Itoa(i)}})
		for _, name := range []string{"a.txt", "b.txt"} {
			put := b.do(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/%s", id, name), "data of "+name)
			require.Equal(t, http.StatusCreated, put.status, "body: %s", put.raw)
		}
		ids = append(ids, id)
	}
	for _, id := range ids[:2] {
		r := b.do(t, http.MethodPost, fmt.Sprintf("/tasks/%d/cancel", id), nil)
		require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	}
	require.Equal(t, 6, b.objectCount(t))

	before := b.snapshot(t)
	require.EqualValues(t, 2, b.bulk(t, "", task.ActionDelete, map[string]any{}, true).Matched)
	require.Equal(t, before, b.snapshot(t))

	res := b.bulk(t, "", task.ActionDelete, map[string]any{}, false)
	require.EqualValues(t, 2, *res.Affected)
	require.Equal(t, []int64{ids[2]}, slices.Collect(maps.Keys(b.states(t))))
	require.Equal(t, 2, b.artifactRows(t), "the queued task keeps its artifacts")
	require.Equal(t, 2, b.objectCount(t), "the deleted tasks' objects are gone")
	r := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d/artifacts", ids[2]), nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Len(t, decode[artifactListBody](t, r.raw).Artifacts, 2)
}

// A client's bulk action acts on its own tasks only, whatever its filter
// names.
func TestBulkActionsKeepToTheTenant(t *testing.T) {
	t.Parallel()
	ts := setupTenants(t, setupOpts{})
	b := ts.bundle
	require.EqualValues(t, 0, b.bulk(t, bobKey, task.ActionCancel, map[string]any{"owner": "alice"}, false).Matched)
	res := b.bulk(t, bobKey, task.ActionCancel, map[string]any{}, false)
	require.EqualValues(t, 1, *res.Affected)
	st := b.states(t)
	require.Equal(t, "cancelled", st[ts.bobTask])
	require.Equal(t, "available", st[ts.aliceTask])

	// alice's task, cancelled by alice, is hers to delete; bob's delete
	// leaves it and its artifact alone.
	require.EqualValues(t, 1, *b.bulk(t, aliceKey, task.ActionCancel, map[string]any{}, false).Affected)
	require.EqualValues(t, 1, *b.bulk(t, bobKey, task.ActionDelete, map[string]any{}, false).Affected)
	require.Contains(t, b.states(t), ts.aliceTask)
	require.Equal(t, 1, b.artifactRows(t))
	require.Equal(t, 1, b.objectCount(t))
	require.EqualValues(t, 1, *b.bulk(t, alice2Key, task.ActionRetry, map[string]any{}, false).Affected, "a rotated key is the same tenant")
	require.Equal(t, "available", b.states(t)[ts.aliceTask])
	for _, l := range b.logs.Events("bulk_action") {
		require.Contains(t, []any{"alice", "bob"}, l["tenant"])
	}
}

// Bad filters and bodies are refused with a stable code naming the field.
func TestBulkAndListRefuseBadFilters(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.submit(t, echoTask)
	before := b.snapshot(t)
	for _, tc := range []struct {
		body        string
		code, field string
	}{
		{`{"dry_run":true}`, "task_rejected_invalid_params", "filter"},
		{`{"filter":null}`, "task_rejected_invalid_params", "filter"},
		{`{"filter":[]}`, "task_rejected_invalid_params", "filter"},
		{`{"filter":{},"dry_run":"yes"}`, "task_rejected_invalid_params", "dry_run"},
		{`{"filter":{},"extra":1}`, "task_rejected_invalid_params", "extra"},
		{`{"filter":{"nope":1}}`, "task_rejected_invalid_params", "filter.nope"},
		{`{"filter":{"status":"finished"}}`, "task_rejected_invalid_params", "filter.status"},
		{`{"filter":{"status":[1]}}`, "task_rejected_invalid_params", "filter.status"},
		{`{"filter":{"type":"nope"}}`, "unknown_task_type", "filter.type"},
		{`{"filter":{"created_after":"yesterday"}}`, "task_rejected_invalid_params", "filter.created_after"},
		{`{"filter":{"created_before":12}}`, "task_rejected_invalid_params", "filter.created_before"},
		{`{"filter":{"params":"msg=a"}}`, "task_rejected_invalid_params", "filter.params"},
		{`{"filter":{"params":[1]}}`, "task_rejected_invalid_params", "filter.params"},
		{`{"filter":{"params":{"msg":"` + strings.Repeat("x", taskrunner.MaxFilterParamsBytes) + `"}}}`, "task_rejected_invalid_params", "filter.params"},
		{`{"filter":{"error_code":"Not A Code"}}`, "task_rejected_invalid_params", "filter.error_code"},
		{`{"filter":{"queue":"UPPER"}}`, "task_rejected_invalid_params", "filter.queue"},
		{`{"filter":{"owner":"` + strings.Repeat("o", 65) + `"}}`, "task_rejected_invalid_params", "filter.owner"},
		{`{"filter":{"owner":"a\u0000b"}}`, "task_rejected_invalid_params", "filter.owner"},
		{`{"filter":{}`, "invalid_json", ""},
	} {
		for _, action := range bulkActions {
			r := b.do(t, http.MethodPost, "/tasks/"+string(action), tc.body)
			require.Equal(t, http.StatusBadRequest, r.status, "%s %s: %s", action, tc.body, r.raw)
			e := r.apiError(t)
			require.Equal(t, taskrunner.Code(tc.code), e.Code, "%s %s: %s", action, tc.body, r.raw)
			require.Equal(t, tc.field, e.Field, "%s %s: %s", action, tc.body, r.raw)
		}
	}
	for _, q := range []string{"nope=1", "status=finished", "type=nope", "created_after=2026-13-01", "created_before=x",
		"params=%7B", "params=%5B%5D", "error_code=X", "queue=a__b", "owner=a%00b", "type=echo&type=sleep"} {
		r := b.do(t, http.MethodGet, "/tasks?"+q, nil)
		require.Equal(t, http.StatusBadRequest, r.status, "GET /tasks?%s: %s", q, r.raw)
	}
	require.Equal(t, before, b.snapshot(t))
}

// A queue filter matches the queue's tenants' queues too (fair share puts
// a tenant's tasks there), and no other queue sharing its prefix.
func TestQueueFilterMatchesTenantQueues(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	var ids []int64
	for _, q := range []string{"other", jobs.TenantQueue("other", "alice"), "otherwise", "default"} {
		res, err := b.client.Insert(context.Background(), builtin.EchoArgs{Msg: q}, &river.InsertOpts{Queue: q})
		require.NoError(t, err)
		ids = append(ids, res.Job.ID)
	}
	require.Equal(t, []int64{ids[1], ids[0]}, listIDs(t, b, "", "?queue=other"))
	require.Equal(t, []int64{ids[2]}, listIDs(t, b, "", "?queue=otherwise"))
	require.EqualValues(t, 2, b.bulk(t, "", task.ActionCancel, map[string]any{"queue": "other"}, true).Matched)
	list := decode[listBody](t, b.do(t, http.MethodGet, "/tasks?queue=other", nil).raw)
	require.Equal(t, "other", list.Tasks[0].Queue, "a tenant's queue shows as the queue it serves")
}
