package db_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

func TestRunLifecycleAndSeedHelpers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)

	processed, last, err := db.HasBeenProcessed(ctx, tdb.Pool, "abc123", "search")
	require.NoError(t, err)
	require.False(t, processed)
	require.Nil(t, last)
	_, err = db.LatestRunForKey(ctx, tdb.Pool, "search:abc123")
	require.True(t, errors.Is(err, db.ErrNotFound), "got %v", err)

	// Attempt 1 fails with metrics and notes; attempt 2 completes.
	run1, err := db.StartRun(ctx, tdb.Pool, db.RunStart{TaskID: 7, Attempt: 1, Key: "search:abc123", TaskType: "search", Worker: "w1"})
	require.NoError(t, err)
	processed, _, err = db.HasBeenProcessed(ctx, tdb.Pool, "abc123", "search")
	require.NoError(t, err)
	require.False(t, processed, "a running run has not processed the key")
	require.NoError(t, db.FinishRun(ctx, tdb.Pool, db.RunFinish{
		RunID: run1, Status: db.RunFailed, ErrorCode: "task_failed", Error: "provider said no",
		Duration: 1500 * time.Millisecond, Metrics: map[string]float64{"latency_ms": 12.5, "results": 0},
		Notes: []string{"brave: 503", "retrying"},
	}))
	run2, err := db.StartRun(ctx, tdb.Pool, db.RunStart{TaskID: 7, Attempt: 2, Key: "search:abc123", TaskType: "search", Worker: "w2"})
	require.NoError(t, err)
	require.NoError(t, db.FinishRun(ctx, tdb.Pool, db.RunFinish{RunID: run2, Status: db.RunCompleted, Duration: time.Second}))

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
	require.Equal(t, run2, latest.ID)
	require.Equal(t, 2, latest.Attempt)
	require.Equal(t, db.RunCompleted, latest.Status)

	metrics, err := db.RunMetrics(ctx, tdb.Pool, run1)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"latency_ms": 12.5, "results": 0}, metrics)
	notes, err := db.RunNotes(ctx, tdb.Pool, run1)
	require.NoError(t, err)
	require.Equal(t, []string{"brave: 503", "retrying"}, notes)

	runs, err := db.RunsForTask(ctx, tdb.Pool, 7)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.Equal(t, db.RunFailed, runs[0].Status)
	require.Equal(t, "task_failed", *runs[0].ErrorCode)
	require.InDelta(t, 1500, *runs[0].DurationMS, 0.001)
	require.Equal(t, db.RunCompleted, runs[1].Status)
	require.Nil(t, runs[1].ErrorCode)
}

func TestStartRunKeepsOneRowPerAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	start := db.RunStart{TaskID: 9, Attempt: 1, Key: "sleep:x", TaskType: "sleep", Worker: "w1"}

	// Attempt 1 is interrupted by a shutdown; River gives the attempt back
	// and it starts again: the same row, counted as an interruption.
	first, err := db.StartRun(ctx, tdb.Pool, start)
	require.NoError(t, err)
	require.NoError(t, db.FinishRun(ctx, tdb.Pool, db.RunFinish{RunID: first, Status: db.RunInterrupted, ErrorCode: "task_interrupted", Error: "context canceled"}))
	again, err := db.StartRun(ctx, tdb.Pool, start)
	require.NoError(t, err)
	require.Equal(t, first, again)

	// Its worker then dies mid-run; River's rescuer hands out attempt 2,
	// which closes attempt 1 as abandoned.
	_, err = db.StartRun(ctx, tdb.Pool, db.RunStart{TaskID: 9, Attempt: 2, Key: "sleep:x", TaskType: "sleep", Worker: "w2"})
	require.NoError(t, err)

	runs, err := db.RunsForTask(ctx, tdb.Pool, 9)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.Equal(t, db.RunAbandoned, runs[0].Status)
	require.Equal(t, "worker_lost", *runs[0].ErrorCode)
	require.Equal(t, 1, runs[0].Interruptions)
	require.NotNil(t, runs[0].FinishedAt)
	require.Equal(t, db.RunRunning, runs[1].Status)
	require.Equal(t, "w2", runs[1].Worker)
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
