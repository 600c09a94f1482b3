package schedule_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/schedule"
)

// poolWithoutTaskColumn is a pool on tdb whose role may read every column
// of schedules but task: a query that reads task fails with
// insufficient_privilege.
func poolWithoutTaskColumn(t *testing.T, tdb *testenv.DB) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	role := testenv.RandomName("taskrunner_notask_")
	rows, err := tdb.Pool.Query(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'schedules' AND column_name <> 'task'`)
	require.NoError(t, err)
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for i, c := range cols {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	_, err = tdb.Pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN")
	require.NoError(t, err)
	_, err = tdb.Pool.Exec(ctx, "GRANT SELECT ("+strings.Join(cols, ", ")+") ON schedules TO "+role)
	require.NoError(t, err)
	u, err := url.Parse(tdb.URL)
	require.NoError(t, err)
	u.User = url.User(role)
	pool, err := pgxpool.New(ctx, u.String())
	require.NoError(t, err)
	t.Cleanup(func() {
		pool.Close()
		_, err := tdb.Pool.Exec(context.Background(), "DROP OWNED BY "+role)
		require.NoError(t, err)
		_, err = tdb.Pool.Exec(context.Background(), "DROP ROLE "+role)
		require.NoError(t, err)
	})
	return pool
}

// Syncing reads what schedules' ticks are made from and never their
// tasks, which every working process would otherwise read again every
// 30 s: a syncer whose database role may not read the task column syncs
// every active schedule.
func TestSyncReadsNoTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	for _, s := range []taskrunner.Schedule{
		{Owner: "alice", Name: "every", Every: time.Hour, Task: []byte(`{"type":"echo","params":{"msg":"x"}}`)},
		{Owner: "bob", Name: "cron", Cron: "0 3 * * *", TimeZone: "Europe/Paris", Task: []byte(`{"type":"echo","params":{"msg":"y"}}`)},
	} {
		_, err := db.InsertSchedule(ctx, tdb.Pool, &s)
		require.NoError(t, err)
	}
	restricted := poolWithoutTaskColumn(t, tdb)
	var pgErr *pgconn.PgError
	_, err := restricted.Exec(ctx, `SELECT task FROM schedules`)
	require.True(t, errors.As(err, &pgErr) && pgErr.Code == "42501", "the role may not read task: %v", err)

	runs, err := jobs.NewRunRecorder(jobs.RunRecorderConfig{Pool: tdb.Pool})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, runs.Close(context.Background())) })
	client, err := jobs.NewClient(jobs.ClientConfig{Pool: tdb.Pool, Types: builtin.Registry(builtin.Config{}), Work: true, Runs: runs})
	require.NoError(t, err)
	logger, logs := testenv.Logger(t)
	syncer := schedule.NewSyncer(restricted, client, nil, 0, logger)
	require.NoError(t, syncer.Sync(ctx))
	synced := logs.Events("schedules_synced")
	require.Len(t, synced, 1)
	require.EqualValues(t, 2, synced[0]["active"], "both schedules are scheduled")
}
