package main

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

// queuedStates are the states of a task that is back in the queue.
var queuedStates = []string{"available", "retryable", "scheduled"}

// TestServeWorksTasksAndStops: one serve process is API and workers; it
// works a task and stops cleanly on SIGTERM.
func TestServeWorksTasksAndStops(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	srv, api := startAPIProc(t, "serve", baseEnv(tdb.URL), "serve")
	srv.WaitEvent("workers_started", startTimeout, nil)

	status, body := api.do(http.MethodGet, "/health", nil)
	require.Equal(t, http.StatusOK, status, "GET /health: %v", body)

	id := api.submit(map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "max_retries": 0})
	got := api.waitStatus(id, 20*time.Second, "completed")
	require.Equal(t, map[string]any{"msg": "hi"}, got["result"])
	runs := runsOf(t, got)
	require.Len(t, runs, 1)
	require.Equal(t, db.RunCompleted, runs[0]["status"])
	require.Equal(t, srv.WorkerName(), runs[0]["worker"])

	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.WaitExit(exitTimeout), "serve exit code after SIGTERM")
	require.Len(t, srv.Events("shutdown_complete", nil), 1)
}

// Acceptance: a task running in a worker process is cancelled through
// another process's API (River's JobCancel, delivered by a Postgres
// notification).
func TestCancelRunningTaskAcrossProcesses(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	env := baseEnv(tdb.URL)
	worker := startProc(t, "worker", env, "worker")
	apiProc, api := startAPIProc(t, "api", env, "api")
	worker.WaitEvent("workers_started", startTimeout, nil)

	id := api.submit(map[string]any{"type": "sleep", "params": map[string]any{"seconds": 60}, "max_retries": 3})
	api.waitStatus(id, 20*time.Second, "running")
	worker.WaitEvent("task_started", 5*time.Second, forTask(id))

	cancelled := time.Now()
	status, body := api.do(http.MethodPost, "/tasks/"+strconv.FormatInt(id, 10)+"/cancel", nil)
	require.Contains(t, []int{http.StatusAccepted, http.StatusOK}, status, "POST /tasks/%d/cancel: %v", id, body)

	got := api.waitStatus(id, 10*time.Second, "cancelled")
	t.Logf("task cancelled %s after the request", time.Since(cancelled).Round(time.Millisecond))
	runs := runsOf(t, got)
	require.Len(t, runs, 1, "runs: %v", runs)
	require.Equal(t, db.RunCancelled, runs[0]["status"], "run: %v", runs[0])
	require.Equal(t, string(taskrunner.CodeTaskCancelled), runs[0]["error_code"], "run: %v", runs[0])
	require.Equal(t, worker.WorkerName(), runs[0]["worker"])
	require.Less(t, runs[0]["duration_ms"].(float64), 30000.0, "the sleep was not cut short: %v", runs[0])

	worker.WaitEvent("task_cancelled", 5*time.Second, forTask(id))
	require.Empty(t, apiProc.Events("task_started", nil), "the api process worked a task")
	require.Len(t, apiProc.Events("task_cancel_requested", forTask(id)), 1)

	// Cancelling it again: it is finished.
	status, body = api.do(http.MethodPost, "/tasks/"+strconv.FormatInt(id, 10)+"/cancel", nil)
	require.Equal(t, http.StatusConflict, status, "second cancel: %v", body)

	// Both stop cleanly.
	apiProc.Signal(syscall.SIGTERM)
	worker.Signal(syscall.SIGTERM)
	require.Equal(t, 0, apiProc.WaitExit(exitTimeout), "api exit code after SIGTERM")
	require.Equal(t, 0, worker.WaitExit(exitTimeout), "worker exit code after SIGTERM")
}

// Acceptance: a worker killed with SIGKILL mid-task loses nothing: River's
// rescuer, run by the next leader, gives the task back and another worker
// finishes it; the dead attempt's run is closed as abandoned.
func TestSIGKILLedWorkersTaskIsRescued(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	env := with(baseEnv(tdb.URL), "TASK_MAX_RUNTIME_SECONDS", "5", "TASK_RESCUE_AFTER_SECONDS", "6")
	a := startWorker(t, "worker-a", env)
	_, api := startAPIProc(t, "api", env, "api")

	id := api.submit(map[string]any{"type": "sleep", "params": map[string]any{"seconds": 2}, "max_retries": 2})
	a.WaitEvent("task_started", 20*time.Second, forTask(id))
	// Mid-task: the task shows its running attempt (from river_job; the
	// attempt's row is written when it ends), run by worker A.
	require.Eventually(t, func() bool {
		runs := runsOf(t, api.get(id))
		return len(runs) == 1 && runs[0]["status"] == db.RunRunning && runs[0]["worker"] == a.WorkerName()
	}, 5*time.Second, 10*time.Millisecond)
	a.Signal(syscall.SIGKILL)
	require.Equal(t, -1, a.WaitExit(exitTimeout), "worker A was not ended by SIGKILL")
	killed := time.Now()

	got := api.get(id)
	require.Equal(t, "running", got["status"], "the task was not running when worker A died: %v", got)
	require.Len(t, runsOf(t, got), 1)

	b := startWorker(t, "worker-b", env)
	// River's rescuer runs in the leader, every 30 s; worker B becomes leader
	// once worker A's lease lapses (up to 15 s), and rescues at once.
	got = api.waitStatus(id, 90*time.Second, "completed")
	t.Logf("task completed %s after worker A was killed", time.Since(killed).Round(time.Second))

	require.Equal(t, map[string]any{"slept": 2.0}, got["result"])
	runs := runsOf(t, got)
	require.GreaterOrEqual(t, len(runs), 2, "runs: %v", runs)
	var attempts []float64
	for _, r := range runs {
		attempts = append(attempts, r["attempt"].(float64))
	}
	require.Equal(t, slices.Compact(slices.Clone(attempts)), attempts, "more than one run for an attempt: %v", runs)

	first, last := runs[0], runs[len(runs)-1]
	require.EqualValues(t, 1, first["attempt"])
	require.Equal(t, db.RunAbandoned, first["status"], "attempt 1: %v", first)
	require.Equal(t, a.WorkerName(), first["worker"], "attempt 1: %v", first)
	require.NotNil(t, first["finished_at"], "attempt 1 not closed: %v", first)

	require.Greater(t, last["attempt"].(float64), 1.0, "last run: %v", last)
	require.Equal(t, db.RunCompleted, last["status"], "last run: %v", last)
	require.Equal(t, b.WorkerName(), last["worker"], "last run: %v", last)
	require.EqualValues(t, got["attempt"], last["attempt"], "the task's attempt is not its last run's")
	for _, r := range runs[1 : len(runs)-1] {
		require.NotEqual(t, db.RunRunning, r["status"], "a middle run left running: %v", r)
	}

	b.WaitEvent("task_completed", 5*time.Second, forTask(id))
	require.Empty(t, a.Events("task_completed", forTask(id)), "worker A completed the task before it died")

	var dup int
	require.NoError(t, tdb.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM (SELECT attempt FROM runs WHERE task_id = $1 GROUP BY attempt HAVING count(*) > 1) d", id).Scan(&dup))
	require.Zero(t, dup, "attempts with more than one run row")
}

// A worker killed with SIGKILL during its task's only attempt: River's
// rescuer, with no attempt left, discards the task, and the leader's run
// sweep records the attempt as abandoned, named after worker A: every
// attempt has its row though no worker wrote it.
func TestSIGKILLedWorkersLastAttemptIsRecordedAbandoned(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	env := with(baseEnv(tdb.URL), "TASK_MAX_RUNTIME_SECONDS", "5", "TASK_RESCUE_AFTER_SECONDS", "6", "RUN_SWEEP_INTERVAL", "1s")
	a := startWorker(t, "worker-a", env)
	_, api := startAPIProc(t, "api", env, "api")

	id := api.submit(map[string]any{"type": "sleep", "params": map[string]any{"seconds": 30}, "max_retries": 0})
	a.WaitEvent("task_started", 20*time.Second, forTask(id))
	a.Signal(syscall.SIGKILL)
	require.Equal(t, -1, a.WaitExit(exitTimeout), "worker A was not ended by SIGKILL")
	require.Empty(t, dbRuns(t, tdb, id), "a row was written for an attempt that had not ended")

	b := startWorker(t, "worker-b", env)
	// Worker B becomes leader once worker A's lease lapses; its rescuer
	// discards the task, and its sweep fills in the attempt.
	got := api.waitStatus(id, 90*time.Second, "discarded")
	require.EqualValues(t, 1, got["attempt"], "%v", got)
	var runs []taskrunner.Run
	require.Eventually(t, func() bool {
		runs = dbRuns(t, tdb, id)
		return len(runs) > 0
	}, 30*time.Second, 100*time.Millisecond, "the discarded task's attempt got no row")
	require.Len(t, runs, 1, "%+v", runs)
	r := runs[0]
	require.Equal(t, 1, r.Attempt)
	require.Equal(t, db.RunAbandoned, r.Status, "%+v", r)
	require.NotNil(t, r.ErrorCode, "%+v", r)
	require.Equal(t, taskrunner.CodeWorkerLost, *r.ErrorCode, "%+v", r)
	require.Equal(t, a.WorkerName(), r.Worker, "%+v", r)
	require.Equal(t, "sleep", r.TaskType)
	var kind string
	var args []byte
	require.NoError(t, tdb.Pool.QueryRow(context.Background(), "SELECT kind, args FROM river_job WHERE id = $1", id).Scan(&kind, &args))
	require.Equal(t, builtin.Registry(builtin.Config{}).KeyOf(kind, args), r.Key, "not the key the run recorder gives the task's runs")
	require.NotNil(t, r.FinishedAt)
	require.Empty(t, b.Events("task_started", forTask(id)), "worker B ran the task")

	// The API shows it too.
	apiRuns := runsOf(t, api.get(id))
	require.Len(t, apiRuns, 1, "%v", apiRuns)
	require.Equal(t, db.RunAbandoned, apiRuns[0]["status"])
}

// Acceptance: SIGTERM during work lets the grace period pass, then cancels
// the running tasks so River returns them to the queue: nothing is left
// running, and a new worker works them again.
func TestSIGTERMLeavesNothingRunning(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	svc := newSubmitter(t, tdb)
	env := with(baseEnv(tdb.URL), "SHUTDOWN_GRACE_SECONDS", "1")
	w := startWorker(t, "worker", env)

	ids := make([]int64, 3)
	for i := range ids {
		ids[i] = submitSleep(t, svc, 30, 2)
	}
	for _, id := range ids {
		w.WaitEvent("task_started", 20*time.Second, forTask(id))
		status, _ := taskState(t, tdb, id)
		require.Equal(t, "running", status, "task %d", id)
	}

	stopped := time.Now()
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.WaitExit(15*time.Second), "worker exit code after SIGTERM")
	t.Logf("worker exited %s after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	require.Len(t, w.Events("shutdown_complete", nil), 1)
	require.Empty(t, w.Events("shutdown_incomplete", nil))

	var running int
	require.NoError(t, tdb.Pool.QueryRow(context.Background(), "SELECT count(*) FROM river_job WHERE state = 'running'").Scan(&running))
	require.Zero(t, running, "tasks left running after SIGTERM")

	for _, id := range ids {
		status, attempt := taskState(t, tdb, id)
		require.Contains(t, queuedStates, status, "task %d is not back in the queue", id)
		t.Logf("task %d: %s, attempt %d", id, status, attempt)
		runs := dbRuns(t, tdb, id)
		require.Len(t, runs, 1, "task %d: %v", id, runs)
		require.Equal(t, db.RunInterrupted, runs[0].Status, "task %d: %+v", id, runs[0])
		require.NotNil(t, runs[0].ErrorCode, "task %d: %+v", id, runs[0])
		require.Equal(t, taskrunner.CodeTaskInterrupted, *runs[0].ErrorCode, "task %d: %+v", id, runs[0])
		require.NotNil(t, runs[0].FinishedAt, "task %d: %+v", id, runs[0])
		require.Len(t, w.Events("task_interrupted", forTask(id)), 1, "task %d", id)
	}

	// A new worker takes them up again; each attempt still has one run row.
	w2 := startWorker(t, "worker-2", env)
	for _, id := range ids {
		w2.WaitEvent("task_started", 20*time.Second, forTask(id))
	}
	for _, id := range ids {
		for _, r := range dbRuns(t, tdb, id) {
			if r.Worker == w2.WorkerName() {
				require.Equal(t, db.RunRunning, r.Status, "task %d: %+v", id, r)
			} else {
				require.Equal(t, db.RunInterrupted, r.Status, "task %d: %+v", id, r)
			}
		}
	}
	w2.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w2.WaitExit(15*time.Second), "second worker exit code after SIGTERM")
}

// A task that finishes within the grace period completes rather than being
// interrupted.
func TestSIGTERMLetsTaskFinishWithinGrace(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	svc := newSubmitter(t, tdb)
	w := startWorker(t, "worker", with(baseEnv(tdb.URL), "SHUTDOWN_GRACE_SECONDS", "5"))

	id := submitSleep(t, svc, 1.5, 0)
	w.WaitEvent("task_started", 20*time.Second, forTask(id))
	w.Signal(syscall.SIGTERM)
	require.Equal(t, 0, w.WaitExit(15*time.Second), "worker exit code after SIGTERM")

	status, _ := taskState(t, tdb, id)
	require.Equal(t, "completed", status)
	runs := dbRuns(t, tdb, id)
	require.Len(t, runs, 1)
	require.Equal(t, db.RunCompleted, runs[0].Status, "%+v", runs[0])
	require.Len(t, w.Events("task_completed", forTask(id)), 1)
	require.Empty(t, w.Events("task_interrupted", nil))
	require.Empty(t, w.Events("shutdown_cancelling_tasks", nil))
	require.Len(t, w.Events("shutdown_complete", nil), 1)
}

// newSubmitter returns the task service on the test's database, inserting
// (never working) through its own River client, as an api process does.
func newSubmitter(t *testing.T, tdb *testenv.DB) *task.Service {
	t.Helper()
	const maxRuntime = 120 * time.Second // TASK_MAX_RUNTIME_SECONDS of baseEnv
	logger, _ := testenv.Logger(t)
	types := builtin.Registry(builtin.Config{})
	client, err := jobs.NewClient(jobs.ClientConfig{
		Pool: tdb.Pool, Logger: logger, Types: types,
		Queues: []string{"default"}, MaxRuntime: maxRuntime, RescueAfter: maxRuntime + time.Minute, Retention: time.Hour,
	})
	require.NoError(t, err)
	svc, err := task.NewService(task.ServiceConfig{Pool: tdb.Pool, Client: client, Types: types, Logger: logger, Limits: task.Limits{MaxRuntime: maxRuntime, Queues: []string{"default"}}})
	require.NoError(t, err)
	return svc
}

func submitSleep(t *testing.T, svc *task.Service, seconds float64, retries int) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, _, err := svc.Submit(ctx, &task.Request{
		Type: "sleep", Params: []byte(`{"seconds": ` + strconv.FormatFloat(seconds, 'f', -1, 64) + `}`), MaxRetries: &retries,
	}, "")
	require.NoError(t, err)
	return got.ID
}

// taskState reads a task's status and attempt from the tasks view.
func taskState(t *testing.T, tdb *testenv.DB, id int64) (string, int) {
	t.Helper()
	var status string
	var attempt int
	require.NoError(t, tdb.Pool.QueryRow(context.Background(),
		"SELECT status::text, attempt FROM tasks WHERE id = $1", id).Scan(&status, &attempt))
	return status, attempt
}

func dbRuns(t *testing.T, tdb *testenv.DB, id int64) []taskrunner.Run {
	t.Helper()
	runs, err := db.RunsForTask(context.Background(), tdb.Pool, id)
	require.NoError(t, err)
	return runs
}

// Acceptance: a worker SIGKILLed right after it finished a task with a
// callback loses no delivery: the delivery job was committed with the
// task's final state, and another worker process delivers it. Worker A
// has no CALLBACK_SECRET, so it cannot deliver: whatever reaches the
// receiver came from worker B.
func TestCallbackOfSIGKILLedWorkerIsDeliveredByAnother(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	hooks := newHookReceiver(t)
	env := with(baseEnv(tdb.URL), "TASK_MAX_RUNTIME_SECONDS", "5", "TASK_RESCUE_AFTER_SECONDS", "6",
		"CALLBACK_ALLOW_PRIVATE_NETWORKS", "true", "CALLBACK_ALLOWED_PORTS", strconv.Itoa(hooks.port))
	withSecret := with(env, "CALLBACK_SECRET", clientCallbackSecret)
	a := startWorker(t, "worker-a", env)
	_, api := startAPIProc(t, "api", withSecret, "api")

	id := api.submit(map[string]any{"type": "echo", "params": map[string]any{"msg": "last words"}, "callback_url": hooks.url})
	// Killed as soon as the final state is committed (for a task with a
	// callback the worker writes it after its run record).
	require.Eventually(t, func() bool { return api.get(id)["status"] == "completed" }, 20*time.Second, 5*time.Millisecond)
	a.Signal(syscall.SIGKILL)
	require.Equal(t, -1, a.WaitExit(exitTimeout), "worker A was not ended by SIGKILL")
	require.Empty(t, hooks.got, "delivered before worker B ran")

	b := startWorker(t, "worker-b", withSecret)
	// Up to 90 s: worker A may have died inside its failed attempt, which
	// River's rescuer gives back once worker B leads.
	hooks.next(t, 90*time.Second, id, "task.completed")
	b.WaitEvent("callback_delivered", 10*time.Second, forTask(id))
}
