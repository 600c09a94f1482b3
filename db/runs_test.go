package db_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

// ended is the record of an attempt that ended with status after took.
func ended(taskID int64, attempt int, key, worker, status string, code taskrunner.Code, msg string, took time.Duration) db.RunRecord {
	started := time.Now().Add(-took)
	return db.RunRecord{TaskID: taskID, Attempt: attempt, Key: key, TaskType: "search", Worker: worker,
		Status: status, ErrorCode: code, Error: msg, StartedAt: started, FinishedAt: started.Add(took), Duration: took,
		CloseEarlier: attempt > 1}
}

func TestRunLifecycleAndHelpers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)

	processed, last, err := db.HasBeenProcessed(ctx, tdb.Pool, "abc123", "search")
	require.NoError(t, err)
	require.False(t, processed)
	require.Nil(t, last)
	_, err = db.LatestRunForKey(ctx, tdb.Pool, "search:abc123")
	require.True(t, errors.Is(err, db.ErrNotFound), "got %v", err)

	// Attempt 1 fails with metrics and notes: one write.
	f1 := ended(7, 1, "search:abc123", "w1", db.RunFailed, "task_failed", "provider said no", 1500*time.Millisecond)
	f1.Metrics = map[string]float64{"latency_ms": 12.5, "results": 0}
	f1.Notes = []string{"brave: 503", "retrying"}
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{f1}))
	processed, _, err = db.HasBeenProcessed(ctx, tdb.Pool, "abc123", "search")
	require.NoError(t, err)
	require.False(t, processed, "a failed run has not processed the key")

	// Attempt 2 completes: one write.
	a2 := ended(7, 2, "search:abc123", "w2", db.RunCompleted, "", "", time.Second)
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{a2}))

	processed, last, err = db.HasBeenProcessed(ctx, tdb.Pool, "abc123", "search")
	require.NoError(t, err)
	require.True(t, processed)
	require.NotNil(t, last)
	require.WithinDuration(t, time.Now(), *last, time.Minute)

	// The scope prefixes the key: the same key in another scope is not processed.
	processed, _, err = db.HasBeenProcessed(ctx, tdb.Pool, "abc123", "fetch")
	require.NoError(t, err)
	require.False(t, processed)

	latest, err := db.LatestRunForKey(ctx, tdb.Pool, "search:abc123")
	require.NoError(t, err)
	require.Equal(t, 2, latest.Attempt)
	require.Equal(t, db.RunCompleted, latest.Status)

	runs, err := db.RunsForTask(ctx, tdb.Pool, 7)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.Equal(t, db.RunFailed, runs[0].Status, "attempt 1 keeps how it ended")
	require.Equal(t, taskrunner.CodeTaskFailed, *runs[0].ErrorCode)
	require.InDelta(t, 1500, *runs[0].DurationMS, 0.001)
	require.NotNil(t, runs[0].FinishedAt)
	require.WithinDuration(t, f1.StartedAt, runs[0].StartedAt, time.Millisecond)
	require.Equal(t, db.RunCompleted, runs[1].Status)
	require.Nil(t, runs[1].ErrorCode)

	metrics, err := db.RunMetrics(ctx, tdb.Pool, runs[0].TaskID, runs[0].Attempt)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"latency_ms": 12.5, "results": 0}, metrics)
	notes, err := db.RunNotes(ctx, tdb.Pool, runs[0].TaskID, runs[0].Attempt)
	require.NoError(t, err)
	require.Equal(t, []string{"brave: 503", "retrying"}, notes)

	// The helpers for attaching more later.
	require.NoError(t, db.AddRunMetrics(ctx, tdb.Pool, runs[1].TaskID, runs[1].Attempt, map[string]float64{"cache_hits": 1}))
	require.NoError(t, db.AddRunNotes(ctx, tdb.Pool, runs[1].TaskID, runs[1].Attempt, "from the cache"))
	metrics, err = db.RunMetrics(ctx, tdb.Pool, runs[1].TaskID, runs[1].Attempt)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"cache_hits": 1}, metrics)
}

func TestRunRecordsKeepOneRowPerAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)

	// Attempt 1 is interrupted by a shutdown; River gives the attempt back
	// and it runs again and is interrupted again: the same row, with an
	// interruption counted.
	interrupted := ended(9, 1, "sleep:x", "w1", db.RunInterrupted, "task_interrupted", "context canceled", time.Second)
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{interrupted}))
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{interrupted}))

	// It runs a third time and its worker dies mid-run, leaving no record;
	// River's rescuer hands out attempt 2, whose record closes attempt 1
	// as abandoned.
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{ended(9, 2, "sleep:x", "w2", db.RunCompleted, "", "", time.Second)}))

	runs, err := db.RunsForTask(ctx, tdb.Pool, 9)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.Equal(t, db.RunAbandoned, runs[0].Status)
	require.Equal(t, taskrunner.CodeWorkerLost, *runs[0].ErrorCode)
	require.Equal(t, 2, runs[0].Interruptions, "interrupted twice, then started a third time")
	require.NotNil(t, runs[0].FinishedAt)
	require.Equal(t, db.RunCompleted, runs[1].Status)
	require.Equal(t, "w2", runs[1].Worker)

	// An attempt whose worker died before it wrote its record gets one when
	// a later attempt is recorded: attempt 3 of task 10 fills in 1 and 2.
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{ended(10, 3, "sleep:y", "w3", db.RunFailed, "task_failed", "no", time.Second)}))
	runs, err = db.RunsForTask(ctx, tdb.Pool, 10)
	require.NoError(t, err)
	require.Len(t, runs, 3)
	for i, want := range []string{db.RunAbandoned, db.RunAbandoned, db.RunFailed} {
		require.Equal(t, i+1, runs[i].Attempt)
		require.Equal(t, want, runs[i].Status)
	}

	// A row marked running (as earlier versions of taskrunner wrote when
	// an attempt started) is closed as abandoned the same way.
	_, err = tdb.Pool.Exec(ctx, `INSERT INTO runs (task_id, attempt, key, task_type, status, worker) VALUES (11, 1, 'sleep:z', 'sleep', 'running', 'old')`)
	require.NoError(t, err)
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{ended(11, 2, "sleep:z", "w4", db.RunCompleted, "", "", time.Second)}))
	runs, err = db.RunsForTask(ctx, tdb.Pool, 11)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.Equal(t, db.RunAbandoned, runs[0].Status)
	require.Equal(t, "old", runs[0].Worker)
}

func TestGetTaskNotFound(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	_, err := db.GetTask(context.Background(), tdb.Pool, 12345)
	require.True(t, errors.Is(err, db.ErrNotFound), "got %v", err)
}

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := db.NewPool(ctx, db.PoolConfig{URL: "postgres://127.0.0.1:1/none?sslmode=disable&connect_timeout=2"})
	require.NoError(t, err) // pgxpool connects lazily
	defer pool.Close()
	_, err = db.GetTask(ctx, pool, 1)
	require.Error(t, err)
	require.True(t, db.IsUnavailable(err), "a refused connection is unavailability: %v", err)

	tdb := testenv.NewDB(t)
	_, err = tdb.Pool.Exec(ctx, "SELECT * FROM no_such_table")
	require.Error(t, err)
	require.False(t, db.IsUnavailable(err), "a bad query is not unavailability")
}

// The run writer's pool commits without waiting for the WAL flush; the
// pool it is made from is left as it was.
func TestRunPoolCommitsAsynchronously(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	runs, err := db.NewRunPool(tdb.Pool)
	require.NoError(t, err)
	defer runs.Close()
	var setting string
	require.NoError(t, runs.QueryRow(ctx, "SHOW synchronous_commit").Scan(&setting))
	require.Equal(t, "off", setting)
	require.NoError(t, tdb.Pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&setting))
	require.Equal(t, "on", setting)
	require.NoError(t, db.RecordRuns(ctx, runs, []db.RunRecord{ended(5, 1, "echo:x", "w", db.RunCompleted, "", "", time.Millisecond)}))
	got, err := db.RunsForTask(ctx, tdb.Pool, 5)
	require.NoError(t, err)
	require.Len(t, got, 1)
}
