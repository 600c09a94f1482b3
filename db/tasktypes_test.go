package db_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
)

// Migration 00016: task types defined at run time, put (inserted or
// replaced), read, listed and deleted; the table refuses what the API
// refuses (a bad name, a push type without a URL), a put past the bound
// on their number is refused, and a type with tasks waiting is told.
// Undone, the table is gone.
func TestTaskTypes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb, m := migratedDB(t)
	retries := 2
	put, err := db.PutTaskType(ctx, tdb.Pool, &taskrunner.ExternalType{Name: "resize", Mode: taskrunner.ModePull,
		ParamsSchema: []byte(`{"type":"object"}`), MaxRetries: &retries}, 2)
	require.NoError(t, err)
	require.Equal(t, 2, *put.MaxRetries)
	require.Nil(t, put.TimeoutSeconds)

	again, err := db.PutTaskType(ctx, tdb.Pool, &taskrunner.ExternalType{Name: "resize", Mode: taskrunner.ModePush,
		ParamsSchema: []byte(`{}`), PushURL: "https://example.com/"}, 2)
	require.NoError(t, err)
	require.Equal(t, put.CreatedAt, again.CreatedAt, "replaced, not created again")
	require.True(t, again.UpdatedAt.After(put.UpdatedAt) || again.UpdatedAt.Equal(put.UpdatedAt))
	require.Nil(t, again.MaxRetries)
	require.Equal(t, "https://example.com/", again.PushURL)

	_, err = db.PutTaskType(ctx, tdb.Pool, &taskrunner.ExternalType{Name: "thumb", Mode: taskrunner.ModePull, ParamsSchema: []byte(`{}`)}, 2)
	require.NoError(t, err)
	_, err = db.PutTaskType(ctx, tdb.Pool, &taskrunner.ExternalType{Name: "third", Mode: taskrunner.ModePull, ParamsSchema: []byte(`{}`)}, 2)
	require.ErrorIs(t, err, db.ErrTooMany)
	_, err = db.PutTaskType(ctx, tdb.Pool, &taskrunner.ExternalType{Name: "thumb", Mode: taskrunner.ModePull, ParamsSchema: []byte(`{"type":"object"}`)}, 2)
	require.NoError(t, err, "replacing one is no new one")

	list, err := db.ListTaskTypes(ctx, tdb.Pool)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "resize", list[0].Name)

	for _, bad := range []string{
		`INSERT INTO task_types (name, mode, params_schema) VALUES ('Bad', 'pull', '{}')`,
		`INSERT INTO task_types (name, mode, params_schema) VALUES ('taskrunner_x', 'pull', '{}')`,
		`INSERT INTO task_types (name, mode, params_schema) VALUES ('x', 'poll', '{}')`,
		`INSERT INTO task_types (name, mode, params_schema) VALUES ('x', 'push', '{}')`,
		`INSERT INTO task_types (name, mode, params_schema, push_url) VALUES ('x', 'pull', '{}', 'https://example.com/')`,
		`INSERT INTO task_types (name, mode, params_schema, max_retries) VALUES ('x', 'pull', '{}', -1)`,
	} {
		_, err := tdb.Pool.Exec(ctx, bad)
		require.Error(t, err, bad)
	}

	busy, err := db.HasUnfinishedTasks(ctx, tdb.Pool, "resize")
	require.NoError(t, err)
	require.False(t, busy)
	_, err = tdb.Pool.Exec(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state) VALUES ('{}', 'resize', 1, 'external', 'available')`)
	require.NoError(t, err)
	busy, err = db.HasUnfinishedTasks(ctx, tdb.Pool, "resize")
	require.NoError(t, err)
	require.True(t, busy)

	require.NoError(t, db.DeleteTaskType(ctx, tdb.Pool, "resize"))
	require.ErrorIs(t, db.DeleteTaskType(ctx, tdb.Pool, "resize"), db.ErrNotFound)
	_, err = db.GetTaskType(ctx, tdb.Pool, "resize")
	require.ErrorIs(t, err, db.ErrNotFound)

	downTo(t, m, 16)
	var n int
	require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'task_types'").Scan(&n))
	require.Zero(t, n, "the table is gone with 00016 undone")
}
