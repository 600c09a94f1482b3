package db_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

// insertJobs inserts n echo jobs in state and returns their ids, oldest
// first.
func insertJobs(t *testing.T, tdb *testenv.DB, n int, state string) []int64 {
	t.Helper()
	rows, err := tdb.Pool.Query(context.Background(), `
		INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		SELECT '{"msg":"x"}', 'echo', 1, 'default', $2::river_job_state,
			CASE WHEN $2 IN ('completed', 'cancelled', 'discarded') THEN now() END
		FROM generate_series(1, $1) RETURNING id`, n, state)
	require.NoError(t, err)
	var ids []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

// A bulk action's page locks only the tasks still in the action's
// states: one that moved on since it was matched is left alone.
func TestLockTasksInStatesSkipsWhatMoved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	queued := insertJobs(t, tdb, 3, "available")
	done := insertJobs(t, tdb, 1, "completed")
	tx, err := tdb.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	locked, err := db.LockTasksInStates(ctx, tx, append(queued, done...), []taskrunner.Status{"available", "running"})
	require.NoError(t, err)
	require.Equal(t, queued, locked)
}

// Pages of matching ids go up from after, stop at through, and hold at
// most the limit.
func TestMatchingTaskIDsPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	ids := insertJobs(t, tdb, 5, "available")
	insertJobs(t, tdb, 2, "completed")
	f := &db.TaskFilter{Filter: taskrunner.Filter{Statuses: []taskrunner.Status{"available"}}, Kinds: []string{"echo"}}
	page, err := db.MatchingTaskIDs(ctx, tdb.Pool, f, 0, ids[3], 2)
	require.NoError(t, err)
	require.Equal(t, ids[:2], page)
	page, err = db.MatchingTaskIDs(ctx, tdb.Pool, f, ids[1], ids[3], 2)
	require.NoError(t, err)
	require.Equal(t, ids[2:4], page, "up to through, the newest task when the action began")
	page, err = db.MatchingTaskIDs(ctx, tdb.Pool, f, ids[3], ids[3], 2)
	require.NoError(t, err)
	require.Empty(t, page)
	n, err := db.CountTasks(ctx, tdb.Pool, f)
	require.NoError(t, err)
	require.EqualValues(t, 5, n)
	f.Kinds = []string{"sleep"}
	n, err = db.CountTasks(ctx, tdb.Pool, f)
	require.NoError(t, err)
	require.Zero(t, n)
}
