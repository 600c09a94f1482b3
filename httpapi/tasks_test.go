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

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/client"
	"github.com/taskrunner/taskrunner/db"
)

// A task that sets no timeout stores none (TASK_MAX_RUNTIME_SECONDS
// applies when it runs), and its views show that cap.
func TestTaskWithoutTimeoutShowsTheCap(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	resp := b.do(t, "POST", "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}})
	require.Equal(t, 202, resp.status, string(resp.raw))
	for _, view := range []taskView{resp.task(t), b.do(t, "GET", fmt.Sprintf("/tasks/%d", resp.task(t).TaskID), nil).task(t)} {
		require.NotNil(t, view.TimeoutSeconds)
		require.Equal(t, testMaxRuntime.Seconds(), *view.TimeoutSeconds)
	}
	var timeout *float64
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT timeout_seconds FROM tasks WHERE id = $1", resp.task(t).TaskID).Scan(&timeout))
	require.Nil(t, timeout, "the tasks view shows no timeout of the task's own")
}

func TestSubmitEchoCompletesWithResult(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hello"}, "timeout_seconds": 300, "max_retries": 0})
	resp := b.waitStatus(t, id, "completed").task(t)

	require.JSONEq(t, `{"msg": "hello"}`, string(resp.Result))
	require.Nil(t, resp.Error)
	require.Equal(t, id, resp.TaskID)
	require.NotNil(t, resp.TimeoutSeconds)
	require.Equal(t, 300.0, *resp.TimeoutSeconds)
	require.Equal(t, 1, resp.MaxAttempts)
	require.Len(t, resp.Runs, 1)
	run := resp.Runs[0]
	require.Equal(t, "completed", run.Status)
	require.Equal(t, 1, run.Attempt)
	require.True(t, strings.HasPrefix(run.Key, "echo:"), run.Key)

	// The same task through SQL, as an operator sees it.
	var status, result string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		"SELECT status::text, result::text FROM tasks WHERE id = $1", id).Scan(&status, &result))
	require.Equal(t, "completed", status)
	require.JSONEq(t, `{"msg":"hello"}`, result)

	require.Len(t, b.logs.Events("task_enqueued"), 1)
	// The task's own: taskrunner's internal jobs (the run sweep, retention)
	// log theirs too, at debug.
	var completed int
	for _, e := range b.logs.Events("task_completed") {
		if e["task_id"] == float64(id) {
			completed++
		}
	}
	require.Equal(t, 1, completed, "task_completed lines of task %d", id)
}

func TestTimeoutKillsWithRuntimeExceeded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 10}, "timeout_seconds": 0.2, "max_retries": 0})
	resp := b.waitStatus(t, id, "discarded").task(t)

	taskErr := resp.failure(t)
	require.Equal(t, taskrunner.CodeTaskRuntimeExceeded, taskErr.Code)
	require.Equal(t, "the task ran longer than its timeout (200ms) and was killed", taskErr.Message, "no Go error text")
	require.Len(t, resp.Runs, 1)
	run := resp.Runs[0]
	require.Equal(t, db.RunKilled, run.Status)
	require.Equal(t, taskrunner.CodeTaskRuntimeExceeded, deref(run.ErrorCode))
	require.NotNil(t, run.DurationMS)
	require.Less(t, *run.DurationMS, 5000.0, "the sleep was not cut short")

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
	resp := b.waitStatus(t, id, "discarded").task(t)

	require.Equal(t, 2, resp.Attempt)
	require.Len(t, resp.Runs, 2)
	for i, run := range resp.Runs {
		require.Equal(t, i+1, run.Attempt)
		require.Equal(t, db.RunKilled, run.Status)
	}
}

func TestCancelQueuedTask(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	runAt := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "later"}, "run_at": runAt})
	path := "/tasks/" + strconv.FormatInt(id, 10)
	require.Equal(t, taskrunner.StatusScheduled, b.do(t, http.MethodGet, path, nil).task(t).Status)

	resp := b.do(t, http.MethodPost, path+"/cancel", nil)
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	require.Equal(t, taskrunner.StatusCancelled, resp.task(t).Status)

	got := b.do(t, http.MethodGet, path, nil).task(t)
	require.Equal(t, taskrunner.StatusCancelled, got.Status)
	require.Empty(t, got.Runs, "a cancelled queued task never runs")
	require.Equal(t, &client.TaskError{Code: "task_cancelled", Message: "the task was cancelled"}, got.Error)

	// Cancelling it again: it is finished.
	again := b.do(t, http.MethodPost, path+"/cancel", nil)
	require.Equal(t, http.StatusConflict, again.status)
	require.Equal(t, taskrunner.CodeTaskAlreadyFinished, errorCode(t, again))
}

func TestCancelRunningTaskInProcess(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 30}})
	path := "/tasks/" + strconv.FormatInt(id, 10)
	running := b.waitStatus(t, id, "running").task(t)
	// The attempt has no row yet (it is written when the attempt ends): the
	// task shows it from River's job.
	require.Len(t, running.Runs, 1)
	require.Equal(t, 1, running.Runs[0].Attempt)
	require.Equal(t, db.RunRunning, running.Runs[0].Status)
	require.Equal(t, "test", running.Runs[0].Worker)
	require.True(t, strings.HasPrefix(running.Runs[0].Key, "sleep:"), "key %q", running.Runs[0].Key)
	require.NotNil(t, running.StartedAt)
	require.True(t, running.StartedAt.Equal(running.Runs[0].StartedAt), "the run starts when the task does")
	require.Nil(t, running.Runs[0].FinishedAt)
	var rows int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM runs WHERE task_id = $1", id).Scan(&rows))
	require.Zero(t, rows)

	resp := b.do(t, http.MethodPost, path+"/cancel", nil)
	require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, resp.status, "body: %s", resp.raw)
	got := b.waitStatus(t, id, "cancelled").task(t)
	require.Equal(t, taskrunner.CodeTaskCancelled, got.failure(t).Code)
	run := got.run(t, 0)
	require.Equal(t, db.RunCancelled, run.Status)
	require.NotNil(t, run.DurationMS)
	require.Less(t, *run.DurationMS, 20000.0)
	require.Len(t, b.logs.Events("task_cancelled"), 1)
}

func TestCancelFinishedTaskIsConflict(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})

	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "done"}})
	b.waitStatus(t, id, "completed")

	resp := b.do(t, http.MethodPost, fmt.Sprintf("/tasks/%d/cancel", id), nil)
	require.Equal(t, http.StatusConflict, resp.status)
	require.Equal(t, taskrunner.CodeTaskAlreadyFinished, errorCode(t, resp))
	require.Equal(t, taskrunner.StatusCompleted, b.waitStatus(t, id, "completed").task(t).Status)
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
		list := decode[listBody](t, resp.raw)
		for _, tk := range list.Tasks {
			require.Equal(t, "echo", tk.Type)
			seen = append(seen, tk.ID)
		}
		if list.NextCursor == nil {
			break
		}
		cursor = *list.NextCursor
	}
	// Newest first, every echo task exactly once.
	require.Equal(t, []int64{echoIDs[4], echoIDs[3], echoIDs[2], echoIDs[1], echoIDs[0]}, seen)

	list := func(query string) listBody {
		t.Helper()
		return decode[listBody](t, b.do(t, http.MethodGet, "/tasks"+query, nil).raw)
	}
	require.Empty(t, list("?status=completed").Tasks)
	require.Len(t, list("?status=available,completed").Tasks, 10)
	require.Len(t, list("").Tasks, 10)
	// taskrunner's own jobs are not tasks: they are not listed.
	_, err := b.db.Pool.Exec(context.Background(),
		`INSERT INTO river_job (args, kind, max_attempts, queue, state) VALUES ('{}', 'taskrunner_callback', 1, 'default', 'available')`)
	require.NoError(t, err)
	require.Len(t, list("").Tasks, 10)
	sleeps := list("?type=sleep&limit=3")
	require.Len(t, sleeps.Tasks, 3)
	require.NotNil(t, sleeps.NextCursor)

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
	require.Equal(t, "ok", decode[statusBody](t, health.raw).Status)

	limitsResp := b.do(t, http.MethodGet, "/limits", nil)
	require.Equal(t, http.StatusOK, limitsResp.status)
	limits := decode[limitsView](t, limitsResp.raw)
	require.Equal(t, testMaxRuntime.Seconds(), limits.TaskMaxRuntimeSeconds)
	require.Equal(t, 50, limits.MaxBatchSize)
	require.EqualValues(t, 1<<20, limits.MaxRequestBodyBytes)

	missing := b.do(t, http.MethodGet, "/nope", nil)
	require.Equal(t, http.StatusNotFound, missing.status)
	require.Equal(t, taskrunner.CodeNotFound, errorCode(t, missing))
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
		page := decode[listBody](t, resp.raw)
		require.NotEmpty(t, page.Tasks)
		for _, tk := range page.Tasks {
			seen = append(seen, tk.ID)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	require.Greater(t, pages, 1, "8 MB of tasks do not fit one page")
	slices.Reverse(ids)
	require.Equal(t, ids, seen, "newest first, each task once")
}
