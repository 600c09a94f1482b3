package db_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

// migratedDB is a database of its own, migrated up, and the migrator
// that did it.
func migratedDB(t *testing.T) (*testenv.DB, *db.Migrator) {
	t.Helper()
	tdb := testenv.NewEmptyDB(t)
	m, err := db.NewMigrator(tdb.Pool, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	_, err = m.Up(context.Background())
	require.NoError(t, err)
	return tdb, m
}

// downTo undoes migrations, newest first, down to and including version.
func downTo(t *testing.T, m *db.Migrator, version int64) {
	t.Helper()
	for {
		down, err := m.Down(context.Background())
		require.NoError(t, err)
		require.NotNil(t, down)
		require.GreaterOrEqual(t, down.Version, version)
		if down.Version == version {
			return
		}
	}
}

// Migration 00010 names a run by (task_id, attempt): runs keep their rows
// and ids, and metrics and notes stay attached to the same runs, up and
// down again.
func TestMigrationRunsKeyedByAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb, m := migratedDB(t)
	// Undo the migrations down to and including 00010.
	downTo(t, m, 10)

	// Three runs of two tasks, with metrics and notes, in the old shape:
	// ids out of step with task order, so a join by the wrong column
	// would show.
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := tdb.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}
	exec(`INSERT INTO runs (id, task_id, attempt, key, task_type, status, worker) VALUES
		(7, 2, 1, 'echo:b', 'echo', 'failed', 'w'), (5, 1, 1, 'echo:a', 'echo', 'completed', 'w'),
		(9, 2, 2, 'echo:b', 'echo', 'completed', 'w')`)
	exec(`INSERT INTO run_metrics (run_id, name, value) VALUES (7, 'n', 1), (9, 'n', 2), (5, 'm', 3)`)
	exec(`INSERT INTO run_notes (run_id, note) VALUES (9, 'second'), (7, 'first'), (9, 'third')`)

	_, err := m.Up(ctx)
	require.NoError(t, err)
	metrics, err := db.RunMetrics(ctx, tdb.Pool, 2, 1)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"n": 1}, metrics)
	metrics, err = db.RunMetrics(ctx, tdb.Pool, 2, 2)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"n": 2}, metrics)
	metrics, err = db.RunMetrics(ctx, tdb.Pool, 1, 1)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"m": 3}, metrics)
	notes, err := db.RunNotes(ctx, tdb.Pool, 2, 2)
	require.NoError(t, err)
	require.Equal(t, []string{"second", "third"}, notes)
	runs, err := db.RunsForTask(ctx, tdb.Pool, 2)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.Equal(t, []int64{7, 9}, []int64{runs[0].ID, runs[1].ID}, "runs keep their ids")

	strs := func(sql string) []string {
		t.Helper()
		rows, err := tdb.Pool.Query(ctx, sql)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err, sql)
		return out
	}
	indexes := strs("SELECT indexname::text FROM pg_indexes WHERE tablename = 'runs' ORDER BY 1")
	require.Equal(t, []string{"runs_key_started_at_idx", "runs_pkey", "runs_started_at_idx"}, indexes, "one index fewer: none on id")

	// One row per attempt still; a deleted run takes its metrics and notes.
	_, err = tdb.Pool.Exec(ctx, `INSERT INTO runs (task_id, attempt, key, task_type, status, worker) VALUES (2, 2, 'echo:b', 'echo', 'failed', 'w')`)
	require.ErrorContains(t, err, "runs_pkey")
	exec(`DELETE FROM runs WHERE task_id = 2 AND attempt = 1`)
	var left int
	require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM run_metrics) + (SELECT count(*) FROM run_notes)").Scan(&left))
	require.Equal(t, 4, left, "the deleted run's metric and note went with it")

	// Down again: metrics and notes name their run by id.
	downTo(t, m, 10)
	pairs := strs(`
		SELECT r.task_id || '/' || r.attempt || ':' || m.name || '=' || m.value FROM run_metrics m JOIN runs r ON r.id = m.run_id
		UNION ALL
		SELECT r.task_id || '/' || r.attempt || ':' || n.note FROM run_notes n JOIN runs r ON r.id = n.run_id
		ORDER BY 1`)
	require.Equal(t, []string{"1/1:m=3", "2/2:n=2", "2/2:second", "2/2:third"}, pairs)
	_, err = tdb.Pool.Exec(ctx, `INSERT INTO runs (id, task_id, attempt, key, task_type, status, worker) VALUES (9, 3, 1, 'echo:c', 'echo', 'failed', 'w')`)
	require.ErrorContains(t, err, "runs_pkey", "id is the primary key again")
}

// Migration 00011: the owner index holds the tasks of named tenants only,
// and a tenant's list of its own tasks still reads it.
func TestOwnerIndexTenantsOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	_, err := tdb.Pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, metadata, priority, queue, state, scheduled_at)
		SELECT '{"msg":"a"}', 'echo', 1, CASE WHEN g % 10 = 0 THEN '{"owner":"alice"}' ELSE '{}' END::jsonb,
		       1, 'default', 'available', now()
		FROM generate_series(1, 5000) g`)
	require.NoError(t, err)
	_, err = tdb.Pool.Exec(ctx, "ANALYZE river_job")
	require.NoError(t, err)

	// VACUUM counts each index's entries: only alice's 500 tasks are in it.
	_, err = tdb.Pool.Exec(ctx, "VACUUM river_job")
	require.NoError(t, err)
	var entries, jobs float64
	require.NoError(t, tdb.Pool.QueryRow(ctx, `
		SELECT (SELECT reltuples FROM pg_class WHERE relname = 'taskrunner_river_job_owner_idx'),
		       (SELECT reltuples FROM pg_class WHERE relname = 'river_job_pkey')`).Scan(&entries, &jobs))
	require.EqualValues(t, 500, entries)
	require.EqualValues(t, 5000, jobs)
	var def string
	require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT indexdef FROM pg_indexes WHERE indexname = 'taskrunner_river_job_owner_idx'").Scan(&def))
	require.Contains(t, def, "WHERE (COALESCE((metadata ->> 'owner'::text), 'local'::text) <> 'local'::text)", "local tasks are left out")

	// The list of a tenant's tasks, as TaskList filters it.
	rows, err := tdb.Pool.Query(ctx, `EXPLAIN (COSTS OFF)
		SELECT j.id FROM river_job j
		WHERE ('alice' = '' OR coalesce(j.metadata ->> 'owner', 'local') = 'alice')
		ORDER BY j.id DESC LIMIT 50`)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, strings.Join(plan, "\n"), "Index Scan using taskrunner_river_job_owner_idx")
}

// Migration 00012: the state trigger's join of a statement's old and new
// rows is never a nested loop, even when the connection's kept plan was
// made for a one-row change. Before it, a completion of thousands of jobs
// after a one-row fetch compared every pair. auto_explain shows the plan
// the trigger ran; with 00012 undone the same steps show the nested loop.
func TestStateNotifyJoinIsNoNestedLoop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	_, err := tdb.Pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, priority, queue, state, scheduled_at)
		SELECT '{"msg":"a"}', 'echo', 1, 1, 'default', 'available', now() FROM generate_series(1, 2000)`)
	require.NoError(t, err)

	// joinPlan changes one job's state, then every other job's, on a new
	// connection, and returns the plan of the trigger's join in the second.
	joinPlan := func(from, to string) string {
		t.Helper()
		cfg, err := pgx.ParseConfig(tdb.URL)
		require.NoError(t, err)
		var plans []string
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			if strings.Contains(n.Message, "JOIN old_rows") {
				plans = append(plans, n.Message)
			}
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		defer conn.Close(ctx)
		for _, sql := range []string{"LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
			"SET auto_explain.log_nested_statements = on", "SET auto_explain.log_level = notice", "SET client_min_messages = notice"} {
			_, err := conn.Exec(ctx, sql)
			require.NoError(t, err, sql)
		}
		_, err = conn.Exec(ctx, "UPDATE river_job SET state = $2 WHERE id = (SELECT min(id) FROM river_job WHERE state = $1)", from, to)
		require.NoError(t, err)
		tag, err := conn.Exec(ctx, "UPDATE river_job SET state = $2 WHERE state = $1", from, to)
		require.NoError(t, err)
		require.EqualValues(t, 1999, tag.RowsAffected())
		require.Len(t, plans, 2, "one plan of the trigger's join per UPDATE")
		return plans[1]
	}

	plan := joinPlan("available", "running")
	require.NotContains(t, plan, "Nested Loop", plan)
	require.Regexp(t, "Hash Join|Merge Join", plan)

	m, err := db.NewMigrator(tdb.Pool, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	downTo(t, m, 12)
	require.Contains(t, joinPlan("running", "available"), "Nested Loop", "without 00012 the kept one-row plan is a nested loop")
}

// Migration 00013: the key index keeps each key's runs oldest first, so a
// key's new runs go in at the end of its entries. Newest first (00013
// undone), 4,000 runs of one key, recorded in the order they start, left
// its leaf pages split in half and the index about twice as large.
// latest_run_for_key still reads the index (backward) to its one row.
func TestRunsKeyIndexOldestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb, m := migratedDB(t)

	const n = 4000
	// Runs of one key, recorded in batches as the run writer does, each
	// starting after the one before.
	record := func() {
		t.Helper()
		_, err := tdb.Pool.Exec(ctx, "TRUNCATE runs CASCADE")
		require.NoError(t, err)
		base := time.Now().Add(-time.Hour)
		for b := 0; b < n; b += 50 {
			recs := make([]db.RunRecord, 50)
			for i := range recs {
				started := base.Add(time.Duration(b+i) * time.Millisecond)
				recs[i] = db.RunRecord{TaskID: int64(b + i + 1), Attempt: 1, Key: "echo:same", TaskType: "echo", Worker: "w",
					Status: db.RunCompleted, StartedAt: started, FinishedAt: started.Add(time.Millisecond), Duration: time.Millisecond}
			}
			require.NoError(t, db.RecordRuns(ctx, tdb.Pool, recs))
		}
	}
	indexBytes := func() int64 {
		t.Helper()
		var size int64
		require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT pg_relation_size('runs_key_started_at_idx')").Scan(&size))
		return size
	}
	indexDef := func() string {
		t.Helper()
		var def string
		require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT indexdef FROM pg_indexes WHERE indexname = 'runs_key_started_at_idx'").Scan(&def))
		return def
	}

	require.Contains(t, indexDef(), "(key, started_at)")
	record()
	oldestFirst := indexBytes()
	latest, err := db.LatestRunForKey(ctx, tdb.Pool, "echo:same")
	require.NoError(t, err)
	require.EqualValues(t, n, latest.TaskID, "the run that started last")
	// Among many keys, the query reads the index backward.
	_, err = tdb.Pool.Exec(ctx, `
		INSERT INTO runs (task_id, attempt, key, task_type, status, worker, started_at)
		SELECT 100000 + g, 1, 'echo:k' || (g % 2000), 'echo', 'completed', 'w', now() - g * interval '1 s'
		FROM generate_series(1, 20000) g;
		ANALYZE runs`)
	require.NoError(t, err)
	rows, err := tdb.Pool.Query(ctx, "EXPLAIN (COSTS OFF) SELECT * FROM runs WHERE key = 'echo:k7' ORDER BY started_at DESC, id DESC LIMIT 1")
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, strings.Join(plan, "\n"), "Index Scan Backward using runs_key_started_at_idx")
	latest, err = db.LatestRunForKey(ctx, tdb.Pool, "echo:k7")
	require.NoError(t, err)
	require.EqualValues(t, 100000+7, latest.TaskID, "the run of echo:k7 that started last")

	downTo(t, m, 13)
	require.Contains(t, indexDef(), "(key, started_at DESC)")
	record()
	newestFirst := indexBytes()
	t.Logf("key index for %d runs of one key: oldest first %d bytes, newest first %d bytes", n, oldestFirst, newestFirst)
	require.Greater(t, float64(newestFirst), 1.5*float64(oldestFirst),
		"newest first: %d bytes, oldest first: %d bytes, for %d runs", newestFirst, oldestFirst, n)
}

// Migration 00014: a task's callback delivery goes to the queue its
// metadata names, 'default' for a task that names none (one enqueued
// before it); undone, every delivery goes to 'default' again.
func TestMigrationCallbackQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb, m := migratedDB(t)
	// finish inserts a running task with metadata, finishes it, and
	// returns the queue of its delivery.
	finish := func(metadata string) string {
		t.Helper()
		var id int64
		require.NoError(t, tdb.Pool.QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, metadata, attempt, attempted_at)
			VALUES ('{}', 'echo', 1, 'default', 'running', $1, 1, now()) RETURNING id`, metadata).Scan(&id))
		_, err := tdb.Pool.Exec(ctx, "UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = $1", id)
		require.NoError(t, err)
		var queue string
		require.NoError(t, tdb.Pool.QueryRow(ctx,
			"SELECT queue FROM river_job WHERE kind = 'taskrunner_callback' AND (args->>'task_id')::bigint = $1", id).Scan(&queue))
		return queue
	}
	named := `{"callback_url": "https://hooks.example.com/x", "callback_queue": "callbacks-tenant-alice", "owner": "alice"}`
	older := `{"callback_url": "https://hooks.example.com/x"}`
	require.Equal(t, "callbacks-tenant-alice", finish(named))
	require.Equal(t, "default", finish(older), "a task enqueued before 00014")

	downTo(t, m, 14)
	require.Equal(t, "default", finish(named))
	var n int
	require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'callback_secret_generations'").Scan(&n))
	require.Zero(t, n)

	_, err := m.Up(ctx)
	require.NoError(t, err)
	require.Equal(t, "callbacks-tenant-alice", finish(named), "up again")
}

// Migration 00015: the job that deletes taskrunner's own finished jobs
// after INTERNAL_JOB_RETENTION reads a partial index of them alone, so it
// never steps over the finished tasks River keeps for days; the delete
// leaves tasks, unfinished internal jobs and recent ones alone. Undone,
// the index is gone.
func TestInternalJobsFinalizedIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb, m := migratedDB(t)
	// 20,000 finished tasks, and 1,000 finished internal jobs, half of them
	// two hours old; plus a running internal job finalized_at cannot
	// describe and an old discarded tick.
	_, err := tdb.Pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		SELECT '{}', 'echo', 1, 'default', 'completed', now() - g * interval '1 s' FROM generate_series(1, 20000) g;
		INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		SELECT '{}', 'taskrunner_schedule_tick', 1, 'taskrunner_internal', 'completed',
		       now() - CASE WHEN g % 2 = 0 THEN interval '2 h' ELSE interval '1 s' END
		FROM generate_series(1, 1000) g;
		INSERT INTO river_job (args, kind, max_attempts, queue, state, attempted_at)
		VALUES ('{}', 'taskrunner_callback', 1, 'taskrunner_internal', 'running', now() - interval '3 h');
		INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		VALUES ('{}', 'taskrunner_schedule_tick', 1, 'taskrunner_internal', 'discarded', now() - interval '3 h');
		ANALYZE river_job`)
	require.NoError(t, err)
	rows, err := tdb.Pool.Query(ctx, `EXPLAIN (COSTS OFF) SELECT j.id FROM river_job j
		WHERE starts_with(j.kind, 'taskrunner_') AND j.finalized_at IS NOT NULL
		  AND j.finalized_at < now() - make_interval(secs => 3600) AND j.state IN ('completed', 'cancelled', 'discarded')
		ORDER BY j.finalized_at LIMIT 100`)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, strings.Join(plan, "\n"), "taskrunner_river_job_internal_finalized_idx", "plan: %s", strings.Join(plan, "\n"))

	count := func(where string) int {
		t.Helper()
		var n int
		require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE "+where).Scan(&n))
		return n
	}
	deleted := int64(0)
	for {
		n, err := db.DeleteFinishedInternalJobs(ctx, tdb.Pool, time.Hour, 200)
		require.NoError(t, err)
		deleted += n
		if n < 200 {
			break
		}
	}
	require.EqualValues(t, 501, deleted, "the 500 old completed ticks and the old discarded one")
	require.Equal(t, 20000, count("kind = 'echo'"), "tasks stay TASK_RETENTION")
	require.Equal(t, 500, count("kind = 'taskrunner_schedule_tick'"), "recent ticks stay")
	require.Equal(t, 1, count("kind = 'taskrunner_callback'"), "an unfinished internal job stays")

	downTo(t, m, 15)
	var n int
	require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'taskrunner_river_job_internal_finalized_idx'").Scan(&n))
	require.Zero(t, n, "the index is gone with 00015 undone")
}
