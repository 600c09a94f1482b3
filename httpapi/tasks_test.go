package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/db"
)

func TestSubmitEchoCompletesWithResult(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hello"}, "timeout_seconds": 300, "max_retries": 0})
	resp := b.waitStatus(t, id, "completed")

	require.Equal(t, map[string]any{"msg": "hello"}, resp.body["result"])
	require.Nil(t, resp.body["error"])
	require.EqualValues(t, id, resp.body["task_id"])
	require.EqualValues(t, 300, resp.body["timeout_seconds"])
	require.EqualValues(t, 1, resp.body["max_attempts"])
	runs := resp.body["runs"].([]any)
	require.Len(t, runs, 1)
	run := runs[0].(map[string]any)
	require.Equal(t, "completed", run["status"])
	require.EqualValues(t, 1, run["attempt"])
	require.True(t, strings.HasPrefix(run["key"].(string), "echo:"), run["key"])

	// The same task through SQL, as an operator sees it.
	var status, result string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		"SELECT status::text, result::text FROM tasks WHERE id = $1", id).Scan(&status, &result))
	require.Equal(t, "completed", status)
	require.JSONEq(t, `{"msg":"hello"}`, result)

	require.Len(t, b.logs.Events("task_enqueued"), 1)
	require.Len(t, b.logs.Events("task_completed"), 1)
}

func TestTimeoutKillsWithRuntimeExceeded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 10}, "timeout_seconds": 0.2, "max_retries": 0})
	resp := b.waitStatus(t, id, "discarded")

	taskErr := resp.body["error"].(map[string]any)
	require.Equal(t, "task_runtime_exceeded", taskErr["code"])
	require.Equal(t, "the task ran longer than its timeout (200ms) and was killed", taskErr["message"], "no Go error text")
	runs := resp.body["runs"].([]any)
	require.Len(t, runs, 1)
	run := runs[0].(map[string]any)
	require.Equal(t, db.RunKilled, run["status"])
	require.Equal(t, "task_runtime_exceeded", run["error_code"])
	require.Less(t, run["duration_ms"].(float64), 5000.0, "the sleep was not cut short")

	killed := b.logs.Events("task_killed")
	require.Len(t, killed, 1)
	require.EqualValues(t, id, killed[0]["task_id"])
	require.Equal(t, "task_runtime_exceeded", killed[0]["error_code"])
}

func TestRetriesAreRecordedAsRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	// Each attempt times out; max_retries 1 gives two attempts.
	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 10}, "timeout_seconds": 0.1, "max_retries": 1})
	resp := b.waitStatus(t, id, "discarded")

	require.EqualValues(t, 2, resp.body["attempt"])
	runs := resp.body["runs"].([]any)
	require.Len(t, runs, 2)
	for i, r := range runs {
		run := r.(map[string]any)
		require.EqualValues(t, i+1, run["attempt"])
		require.Equal(t, db.RunKilled, run["status"])
	}
}

func TestCancelQueuedTask(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	runAt := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "later"}, "run_at": runAt})
	path := "/tasks/" + strconv.FormatInt(id, 10)
	require.Equal(t, "scheduled", b.do(t, http.MethodGet, path, nil).body["status"])

	resp := b.do(t, http.MethodPost, path+"/cancel", nil)
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	require.Equal(t, "cancelled", resp.body["status"])

	got := b.do(t, http.MethodGet, path, nil)
	require.Equal(t, "cancelled", got.body["status"])
	require.Empty(t, got.body["runs"], "a cancelled queued task never runs")
	require.Equal(t, map[string]any{"code": "task_cancelled", "message": "the task was cancelled"}, got.body["error"])

	// Cancelling it again: it is finished.
	again := b.do(t, http.MethodPost, path+"/cancel", nil)
	require.Equal(t, http.StatusConflict, again.status)
	require.Equal(t, "task_already_finished", errorCode(t, again))
}

func TestCancelRunningTaskInProcess(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 30}})
	path := "/tasks/" + strconv.FormatInt(id, 10)
	b.waitStatus(t, id, "running")

	resp := b.do(t, http.MethodPost, path+"/cancel", nil)
	require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, resp.status, "body: %s", resp.raw)
	got := b.waitStatus(t, id, "cancelled")
	require.Equal(t, "task_cancelled", got.body["error"].(map[string]any)["code"])
	run := got.body["runs"].([]any)[0].(map[string]any)
	require.Equal(t, db.RunCancelled, run["status"])
	require.Less(t, run["duration_ms"].(float64), 20000.0)
	require.Len(t, b.logs.Events("task_cancelled"), 1)
}

func TestCancelFinishedTaskIsConflict(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "done"}})
	b.waitStatus(t, id, "completed")

	resp := b.do(t, http.MethodPost, fmt.Sprintf("/tasks/%d/cancel", id), nil)
	require.Equal(t, http.StatusConflict, resp.status)
	require.Equal(t, "task_already_finished", errorCode(t, resp))
	require.Equal(t, "completed", b.waitStatus(t, id, "completed").body["status"])
}

func TestListFiltersAndPaginates(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}) // nothing works the tasks: they stay available

	var echoIDs []int64
	for i := range 5 {
		echoIDs = append(echoIDs, b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": strconv.Itoa(i)}}))
		b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 1}})
	}

	var seen []int64
	cursor := ""
	for page := 0; ; page++ {
		require.Less(t, page, 5, "pagination does not end")
		resp := b.do(t, http.MethodGet, "/tasks?type=echo&status=available&limit=2&cursor="+cursor, nil)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
		for _, tk := range resp.body["tasks"].([]any) {
			m := tk.(map[string]any)
			require.Equal(t, "echo", m["type"])
			seen = append(seen, int64(m["id"].(float64)))
		}
		next, ok := resp.body["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	// Newest first, every echo task exactly once.
	require.Equal(t, []int64{echoIDs[4], echoIDs[3], echoIDs[2], echoIDs[1], echoIDs[0]}, seen)

	none := b.do(t, http.MethodGet, "/tasks?status=completed", nil)
	require.Empty(t, none.body["tasks"])
	all := b.do(t, http.MethodGet, "/tasks?status=available,completed", nil)
	require.Len(t, all.body["tasks"], 10)
	unfiltered := b.do(t, http.MethodGet, "/tasks", nil)
	require.Len(t, unfiltered.body["tasks"], 10)
	sleeps := b.do(t, http.MethodGet, "/tasks?type=sleep&limit=3", nil)
	require.Len(t, sleeps.body["tasks"], 3)
	require.NotNil(t, sleeps.body["next_cursor"])

	for _, q := range []string{"status=finished", "type=nope", "limit=0", "limit=x", "cursor=abc", "limit=100000"} {
		resp := b.do(t, http.MethodGet, "/tasks?"+q, nil)
		require.Equal(t, http.StatusBadRequest, resp.status, "query %s: %s", q, resp.raw)
	}
}

func TestHealthAndLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})

	health := b.do(t, http.MethodGet, "/health", nil)
	require.Equal(t, http.StatusOK, health.status)
	require.Equal(t, "ok", health.body["status"])

	limits := b.do(t, http.MethodGet, "/limits", nil)
	require.Equal(t, http.StatusOK, limits.status)
	require.EqualValues(t, testMaxRuntime.Seconds(), limits.body["task_max_runtime_seconds"])
	require.EqualValues(t, 50, limits.body["max_batch_size"])
	require.EqualValues(t, 1<<20, limits.body["max_request_body_bytes"])

	missing := b.do(t, http.MethodGet, "/nope", nil)
	require.Equal(t, http.StatusNotFound, missing.status)
	require.Equal(t, "not_found", errorCode(t, missing))
}

// A page of GET /tasks is capped in bytes as well as in tasks: large
// tasks end it early, with a next_cursor, and following the cursors gives
// every task exactly once.
func TestListIsCappedInBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})

	// 8.4 MB of params in all: two pages of 7, the second ending just as
	// its tasks end (no cursor to an empty page).
	const n, msgBytes = 14, 600 << 10
	var ids []int64
	for i := range n {
		ids = append(ids, b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": strings.Repeat(strconv.Itoa(i%10), msgBytes)}}))
	}

	var seen []int64
	cursor, pages := "", 0
	for {
		pages++
		require.Less(t, pages, n+1, "pagination does not end")
		resp := b.do(t, http.MethodGet, "/tasks?limit=500&cursor="+cursor, nil)
		require.Equal(t, http.StatusOK, resp.status)
		require.LessOrEqual(t, len(resp.raw), 4<<20+msgBytes+4096, "a page passes 4 MiB by one task at most")
		tasks := resp.body["tasks"].([]any)
		require.NotEmpty(t, tasks)
		for _, tk := range tasks {
			seen = append(seen, int64(tk.(map[string]any)["id"].(float64)))
		}
		next, ok := resp.body["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	require.Greater(t, pages, 1, "8 MB of tasks do not fit one page")
	slices.Reverse(ids)
	require.Equal(t, ids, seen, "newest first, each task once")
}
