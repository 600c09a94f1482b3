package jobs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
)

// sweepTask inserts an echo task and sets its River row with set (an
// UPDATE's SET list, $2 and on from args); it returns its id and the key
// the run recorder gives its runs.
func sweepTask(t *testing.T, tdb *testenv.DB, msg, set string, args ...any) (int64, string) {
	t.Helper()
	ctx := context.Background()
	var id int64
	var kind string
	var encoded []byte
	require.NoError(t, tdb.Pool.QueryRow(ctx,
		// Scheduled an hour ahead, so a working client never takes it
		// before set puts it where the test wants it.
		`INSERT INTO river_job (kind, args, queue, priority, max_attempts, state, scheduled_at)
		 VALUES ('echo', $1, 'default', 1, 3, 'scheduled', now() + interval '1 hour')
		 RETURNING id, kind, args`, fmt.Sprintf(`{"msg": %q}`, msg)).Scan(&id, &kind, &encoded))
	_, err := tdb.Pool.Exec(ctx, "UPDATE river_job SET "+set+" WHERE id = $1", append([]any{id}, args...)...)
	require.NoError(t, err)
	return id, types.KeyOf(kind, encoded)
}

// The run sweep records as abandoned the last attempt of a finalized task
// that no worker recorded, with the key and task type the run recorder
// gives it, and the attempts before it; it leaves a running task alone, and
// tasks whose last attempt has its record. The attempt's own record, when
// it arrives later, replaces the abandoned row.
func TestRunSweepFillsInFinalizedTasksLastAttempts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	now := time.Now()
	since := now.Add(-time.Hour)

	// Discarded by River's rescuer: its only attempt's worker died.
	lost, lostKey := sweepTask(t, tdb, "lost", `state = 'discarded', attempt = 1, attempted_at = now() - interval '2 minutes',
		attempted_by = '{w-a}', finalized_at = now()`)
	// Running: its attempt is in progress.
	running, _ := sweepTask(t, tdb, "running", `state = 'running', attempt = 1, attempted_at = now(), attempted_by = '{w-b}'`)
	// Discarded after its last attempt was interrupted by a shutdown.
	interrupted, interruptedKey := sweepTask(t, tdb, "interrupted", `state = 'discarded', attempt = 2, attempted_at = now(),
		attempted_by = '{w-a,w-b}', finalized_at = now()`)
	// Cancelled by an operator's SQL after three attempts, none recorded.
	cancelled, _ := sweepTask(t, tdb, "cancelled", `state = 'cancelled', attempt = 3, attempted_at = now(),
		attempted_by = '{w-a,w-b,w-c}', finalized_at = now()`)
	// Completed and recorded.
	done, doneKey := sweepTask(t, tdb, "done", `state = 'completed', attempt = 1, attempted_at = now(), attempted_by = '{w-a}', finalized_at = now()`)
	// Finalized before the sweep's window.
	old, _ := sweepTask(t, tdb, "old", `state = 'discarded', attempt = 1, attempted_at = now() - interval '2 hours',
		attempted_by = '{w-a}', finalized_at = now() - interval '2 hours'`)

	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{
		{TaskID: interrupted, Attempt: 1, Key: interruptedKey, TaskType: "echo", Worker: "w-a", Status: db.RunFailed, ErrorCode: "task_failed", StartedAt: now, FinishedAt: now},
		{TaskID: interrupted, Attempt: 2, Key: interruptedKey, TaskType: "echo", Worker: "w-b", Status: db.RunInterrupted, ErrorCode: "task_interrupted", StartedAt: now, FinishedAt: now},
		{TaskID: done, Attempt: 1, Key: doneKey, TaskType: "echo", Worker: "w-a", Status: db.RunCompleted, StartedAt: now, FinishedAt: now},
	}))

	sw, err := jobs.SweepUnrecordedRuns(ctx, tdb.Pool, types, since, 100, 10)
	require.NoError(t, err)
	require.Equal(t, jobs.RunSweep{Tasks: 3}, sw)

	runs := runsByTask(t, tdb)
	require.Len(t, runs[lost], 1)
	r := runs[lost][0]
	require.Equal(t, db.RunAbandoned, r.Status, "%+v", r)
	require.Equal(t, "worker_lost", deref(r.ErrorCode))
	require.Equal(t, lostKey, r.Key)
	require.Equal(t, "echo", r.TaskType)
	require.Equal(t, "w-a", r.Worker, "the last attempt's worker is River's last attempted_by")
	require.NotNil(t, r.FinishedAt)
	require.True(t, r.StartedAt.Before(*r.FinishedAt), "started %s, finished %s: not River's attempted_at and finalized_at", r.StartedAt, *r.FinishedAt)

	require.Empty(t, runs[running], "a running attempt got a row")
	require.Empty(t, runs[old], "a task finalized before the window was swept")

	require.Len(t, runs[interrupted], 2)
	require.Equal(t, db.RunFailed, runs[interrupted][0].Status, "a recorded attempt was changed")
	require.Equal(t, db.RunAbandoned, runs[interrupted][1].Status)
	require.Equal(t, 1, runs[interrupted][1].Interruptions)
	require.Equal(t, "w-b", runs[interrupted][1].Worker)

	require.Len(t, runs[cancelled], 3)
	for i, want := range []string{"unknown", "w-b", "w-c"} {
		require.Equal(t, i+1, runs[cancelled][i].Attempt)
		require.Equal(t, db.RunAbandoned, runs[cancelled][i].Status)
		require.Equal(t, want, runs[cancelled][i].Worker, "attempt %d", i+1)
	}

	require.Len(t, runs[done], 1)
	require.Equal(t, db.RunCompleted, runs[done][0].Status)

	// Nothing is left to sweep.
	sw, err = jobs.SweepUnrecordedRuns(ctx, tdb.Pool, types, since, 100, 10)
	require.NoError(t, err)
	require.Zero(t, sw.Tasks)

	// The lost attempt's own record arrives late (its writer was retrying):
	// it replaces the abandoned row.
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{
		{TaskID: lost, Attempt: 1, Key: lostKey, TaskType: "echo", Worker: "w-real", Status: db.RunFailed, ErrorCode: "task_failed", Error: "boom", StartedAt: now, FinishedAt: now},
	}))
	runs = runsByTask(t, tdb)
	require.Len(t, runs[lost], 1)
	require.Equal(t, db.RunFailed, runs[lost][0].Status)
	require.Equal(t, "task_failed", deref(runs[lost][0].ErrorCode))
	require.Equal(t, "w-real", runs[lost][0].Worker)
	require.Equal(t, 0, runs[lost][0].Interruptions)
}

// A sweep fills in at most batch*maxBatches tasks, oldest finalized first;
// the next sweep goes on where it stopped.
func TestRunSweepIsBoundedAndResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	ids := make([]int64, 7)
	for i := range ids {
		// Finalized in the reverse order of their ids, to tell the order
		// of the keyset from the ids'.
		ids[i], _ = sweepTask(t, tdb, fmt.Sprint(i), `state = 'discarded', attempt = 1, attempted_at = now() - interval '1 hour',
			attempted_by = '{w}', finalized_at = now() - make_interval(secs => 54 + $2)`, i)
	}
	since := time.Now().Add(-time.Hour)
	for pass, want := range [][]int64{{ids[6], ids[5], ids[4], ids[3]}, {ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}} {
		sw, err := jobs.SweepUnrecordedRuns(ctx, tdb.Pool, types, since, 2, 2)
		require.NoError(t, err)
		require.Equal(t, []int{4, 3}[pass], sw.Tasks, "pass %d: tasks swept", pass)
		require.Equal(t, pass == 0, sw.More, "pass %d: stopped at its bound", pass)
		if sw.More {
			// It stopped at the fourth task finalized.
			var at time.Time
			require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT finalized_at FROM river_job WHERE id = $1", ids[3]).Scan(&at))
			require.True(t, at.Equal(sw.Through), "through %s, want %s", sw.Through, at)
		}
		runs := runsByTask(t, tdb)
		require.Len(t, runs, len(want), "pass %d", pass)
		for _, id := range want {
			require.Len(t, runs[id], 1, "task %d", id)
			require.Equal(t, db.RunAbandoned, runs[id][0].Status)
		}
	}
	sw, err := jobs.SweepUnrecordedRuns(ctx, tdb.Pool, types, since, 2, 2)
	require.NoError(t, err)
	require.Equal(t, jobs.RunSweep{}, sw)
}

// sweptRun is a row of runs.
type sweptRun struct {
	Attempt       int
	Key, TaskType string
	Status        string
	ErrorCode     *string
	Worker        string
	Interruptions int
	StartedAt     time.Time
	FinishedAt    *time.Time
}

// runsByTask returns every task's runs, first attempt first.
func runsByTask(t *testing.T, tdb *testenv.DB) map[int64][]sweptRun {
	t.Helper()
	rows, err := tdb.Pool.Query(context.Background(),
		`SELECT task_id, attempt, key, task_type, status, error_code, worker, interruptions, started_at, finished_at
		 FROM runs ORDER BY task_id, attempt`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[int64][]sweptRun{}
	for rows.Next() {
		var id int64
		var r sweptRun
		require.NoError(t, rows.Scan(&id, &r.Attempt, &r.Key, &r.TaskType, &r.Status, &r.ErrorCode, &r.Worker, &r.Interruptions, &r.StartedAt, &r.FinishedAt))
		out[id] = append(out[id], r)
	}
	require.NoError(t, rows.Err())
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// The leader runs the sweep every RunSweepInterval; each sweep goes on
// from where the last one stopped, and fills in tasks finalized since.
func TestRunSweepJobRunsPeriodically(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	startWorking(t, tdb, jobs.ClientConfig{RunSweepInterval: 200 * time.Millisecond})

	for _, msg := range []string{"first", "second"} {
		id, key := sweepTask(t, tdb, msg, `state = 'discarded', attempt = 1, attempted_at = now(), attempted_by = '{w-dead}', finalized_at = now()`)
		require.Eventually(t, func() bool {
			return len(runsByTask(t, tdb)[id]) == 1
		}, 30*time.Second, 50*time.Millisecond, "task %q was not swept", msg)
		r := runsByTask(t, tdb)[id][0]
		require.Equal(t, db.RunAbandoned, r.Status)
		require.Equal(t, key, r.Key)
		require.Equal(t, "w-dead", r.Worker)
	}

	// River completes the sweep's job (with its output) after the rows it
	// wrote are visible, in its own batched write.
	require.Eventually(t, func() bool {
		var marked int
		require.NoError(t, tdb.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'taskrunner_run_sweep' AND state = 'completed'
			AND (metadata -> 'output' ->> 'swept_through')::timestamptz > now() - interval '1 minute'`).Scan(&marked))
		return marked > 0
	}, 30*time.Second, 50*time.Millisecond, "no sweep recorded how far it swept")
}

// startWorking starts a River client that works the default queue on tdb,
// with cfg's other settings, and stops it when the test ends.
func startWorking(t *testing.T, tdb *testenv.DB, cfg jobs.ClientConfig) {
	t.Helper()
	ctx := context.Background()
	logger, _ := testenv.Logger(t)
	runs, err := jobs.NewRunRecorder(jobs.RunRecorderConfig{Pool: tdb.Pool, Logger: logger, WorkerName: "test"})
	require.NoError(t, err)
	cfg.Pool, cfg.Logger, cfg.Runs, cfg.Types = tdb.Pool, logger, runs, types
	cfg.Work, cfg.Queues, cfg.Concurrency = true, []string{"default"}, 2
	cfg.MaxRuntime, cfg.RescueAfter = time.Minute, 2*time.Minute
	cfg.FetchCooldown, cfg.FetchPoll = 5*time.Millisecond, 100*time.Millisecond
	client, err := jobs.NewClient(cfg)
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	require.NoError(t, client.Start(runCtx))
	t.Cleanup(func() {
		defer cancel()
		stopCtx, stop := context.WithTimeout(ctx, 10*time.Second)
		defer stop()
		require.NoError(t, client.Stop(stopCtx))
		require.NoError(t, runs.Close(stopCtx))
	})
}

// The sweep leaves alone taskrunner's own jobs that completed, which have
// no record by design, and still fills in one whose attempt no worker
// recorded and that did not complete (its worker died, and River's
// rescuer discarded it).
func TestRunSweepLeavesCompletedInternalJobsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	internal := func(kind, state string) int64 {
		t.Helper()
		var id int64
		require.NoError(t, tdb.Pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, queue, max_attempts, state, attempt, attempted_at, attempted_by, finalized_at)
			VALUES ($1, '{}', 'taskrunner_internal', 5, $2, 1, now(), '{w-a}', now()) RETURNING id`, kind, state).Scan(&id))
		return id
	}
	tick := internal(jobs.ScheduleTickArgs{}.Kind(), "completed")
	delivered := internal(jobs.CallbackArgs{}.Kind(), "completed")
	lost := internal(jobs.CallbackArgs{}.Kind(), "discarded")
	task, _ := sweepTask(t, tdb, "done", `state = 'completed', attempt = 1, attempted_at = now(), attempted_by = '{w-a}', finalized_at = now()`)

	sw, err := jobs.SweepUnrecordedRuns(ctx, tdb.Pool, types, time.Now().Add(-time.Hour), 100, 10)
	require.NoError(t, err)
	require.Equal(t, jobs.RunSweep{Tasks: 2}, sw)
	runs := runsByTask(t, tdb)
	require.NotContains(t, runs, tick, "a completed tick is not abandoned")
	require.NotContains(t, runs, delivered, "a completed delivery is not abandoned")
	require.Len(t, runs[lost], 1)
	require.Equal(t, db.RunAbandoned, runs[lost][0].Status)
	require.Len(t, runs[task], 1, "a task completed without its record is filled in")
}

// The leader deletes taskrunner's own jobs once they have been finished
// longer than InternalRetention, and leaves tasks (River keeps them
// TASK_RETENTION) and unfinished internal jobs alone.
func TestInternalRetentionJobRunsPeriodically(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	_, err := tdb.Pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		SELECT '{}', k, 1, q, 'completed', now() - interval '1 hour'
		FROM (VALUES ('echo', 'default'), ('taskrunner_schedule_tick', 'taskrunner_internal'), ('taskrunner_callback', 'default')) v (k, q),
		     generate_series(1, 10);
		INSERT INTO river_job (args, kind, max_attempts, queue, state, scheduled_at)
		VALUES ('{}', 'taskrunner_callback', 1, 'elsewhere', 'scheduled', now() + interval '1 hour')`)
	require.NoError(t, err)
	startWorking(t, tdb, jobs.ClientConfig{InternalRetention: time.Minute})
	count := func(where string) int {
		t.Helper()
		var n int
		require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE "+where).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool {
		return count("kind IN ('taskrunner_schedule_tick', 'taskrunner_callback') AND state = 'completed'") == 0
	}, 30*time.Second, 50*time.Millisecond, "finished internal jobs past the retention stay")
	require.Equal(t, 10, count("kind = 'echo'"), "tasks stay TASK_RETENTION")
	require.Equal(t, 1, count("kind = 'taskrunner_callback' AND state = 'scheduled'"), "an unfinished internal job stays")
	require.Equal(t, 0, count("starts_with(kind, 'taskrunner_') AND queue = 'default' AND kind <> 'taskrunner_callback'"),
		"taskrunner's own periodic jobs run in the internal queue")
}

// A backlog of ticks in the internal queue (the database fell behind a
// tenant's schedules) does not hold up the internal retention job: ticks
// come after taskrunner's maintenance jobs, so the finished jobs are
// deleted while most of the backlog still waits.
func TestInternalRetentionJumpsATickBacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	const backlog = 4000
	opts := jobs.ScheduleTickArgs{}.InsertOpts()
	_, err := tdb.Pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, queue, priority, state, scheduled_at)
		SELECT jsonb_build_object('owner', 'nobody', 'name', 'gone', 'tick', now() - g * interval '1 s'), $1, 1, $2, $3, 'available',
		       now() - interval '1 minute'
		FROM generate_series(1, $4::int) g`, jobs.ScheduleTickArgs{}.Kind(), opts.Queue, opts.Priority, backlog)
	require.NoError(t, err)
	_, err = tdb.Pool.Exec(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		SELECT '{}', $1, 1, $2, 'completed', now() - interval '1 hour' FROM generate_series(1, 10)`, jobs.ScheduleTickArgs{}.Kind(), opts.Queue)
	require.NoError(t, err)
	startWorking(t, tdb, jobs.ClientConfig{InternalRetention: time.Minute})
	var untried int
	require.Eventually(t, func() bool {
		var finished int
		require.NoError(t, tdb.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE attempt = 0)
			FROM river_job WHERE kind = $1`, jobs.ScheduleTickArgs{}.Kind()).Scan(&finished, &untried))
		return finished == 0
	}, 60*time.Second, 20*time.Millisecond, "the finished ticks were not deleted")
	require.Greater(t, untried, backlog/2, "the retention job waited behind the backlog of ticks")
}

// types are the built-in task types, whose runs the sweep fills in.
var types = builtin.Registry(builtin.Config{})
