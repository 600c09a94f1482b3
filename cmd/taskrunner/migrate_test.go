package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

// runOut is what one in-process run of taskrunner printed.
type runOut struct {
	stdout, stderr string
	err            error
}

// runCmd runs taskrunner in-process with env and args, bounded in time.
func runCmd(t *testing.T, env map[string]string, args ...string) runOut {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, getenvOf(env), &stdout, &stderr)
	return runOut{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

func migrateEnv(dbURL string) map[string]string {
	return map[string]string{"DATABASE_URL": dbURL, "LOG_LEVEL": "debug"}
}

// relation reports whether a table or view exists in the public schema.
func relation(t *testing.T, tdb *testenv.DB, name string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, tdb.Pool.QueryRow(context.Background(),
		"SELECT to_regclass('public.' || $1) IS NOT NULL", name).Scan(&exists))
	return exists
}

// column reports whether table has column in the public schema.
func column(t *testing.T, tdb *testenv.DB, table, name string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, tdb.Pool.QueryRow(context.Background(), `SELECT EXISTS (
		SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2)`,
		table, name).Scan(&exists))
	return exists
}

// indexDef returns the definition of the index name in the public schema.
func indexDef(t *testing.T, tdb *testenv.DB, name string) string {
	t.Helper()
	var def string
	require.NoError(t, tdb.Pool.QueryRow(context.Background(),
		"SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname = $1", name).Scan(&def))
	return def
}

// undoneVersion is the version of the migration `migrate down` printed
// as undone.
func undoneVersion(t *testing.T, out string) int {
	t.Helper()
	f := strings.Fields(out)
	i := slices.Index(f, "down")
	require.True(t, i >= 0 && i+2 < len(f), "migrate down printed: %q", out)
	v, err := strconv.Atoi(f[i+2])
	require.NoError(t, err, "migrate down printed: %q", out)
	return v
}

// statusLines returns the migration lines of `migrate status` (without
// its header), each split into fields.
func statusLines(t *testing.T, out string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.GreaterOrEqual(t, len(lines), 2, "migrate status printed: %q", out)
	require.Equal(t, []string{"LINE", "VERSION", "NAME", "STATE"}, strings.Fields(lines[0]))
	var rows [][]string
	for _, l := range lines[1:] {
		f := strings.Fields(l) // the name may have spaces: line, version, name..., state
		require.GreaterOrEqual(t, len(f), 4, "status line %q", l)
		rows = append(rows, []string{f[0], f[1], strings.Join(f[2:len(f)-1], " "), f[len(f)-1]})
	}
	return rows
}

// Acceptance: migrate up, status, down (one step at a time) and up again,
// from an empty database to nothing and back.
func TestMigrateRoundTrip(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewEmptyDB(t)
	env := migrateEnv(tdb.URL)

	// Before: everything is pending, nothing exists, and servers refuse to
	// start.
	out := runCmd(t, env, "migrate", "status")
	require.NoError(t, out.err)
	before := statusLines(t, out.stdout)
	for _, row := range before {
		require.Equal(t, "pending", row[3], "%v", row)
	}

	out = runCmd(t, env, "migrate", "up")
	require.NoError(t, out.err, "stderr: %s", out.stderr)
	require.Contains(t, out.stdout, "applied ")
	require.Contains(t, out.stdout, "up    app")
	require.Contains(t, out.stdout, "up    river")
	require.Contains(t, out.stderr, `"event":"migration_applied"`)
	for _, rel := range []string{"tasks", "runs", "run_metrics", "run_notes", "callback_attempts", "callback_secret_generations", "schedules", "task_types", "river_job", "river_leader"} {
		require.True(t, relation(t, tdb, rel), "%s missing after migrate up", rel)
	}
	for _, col := range []string{"skipped_ticks", "last_skipped_at"} {
		require.True(t, column(t, tdb, "schedules", col), "schedules.%s missing after migrate up", col)
	}
	require.True(t, column(t, tdb, "run_metrics", "task_id"), "run_metrics.task_id missing after migrate up")
	var nestloop []string
	require.NoError(t, tdb.Pool.QueryRow(context.Background(),
		"SELECT proconfig FROM pg_proc WHERE proname = 'taskrunner_notify_task_state'").Scan(&nestloop))
	require.Equal(t, []string{"enable_nestloop=off"}, nestloop, "the state trigger's join may be a nested loop")
	require.Contains(t, indexDef(t, tdb, "taskrunner_river_job_internal_finalized_idx"), "starts_with(kind, 'taskrunner_'::text)")

	out = runCmd(t, env, "migrate", "status")
	require.NoError(t, out.err)
	rows := statusLines(t, out.stdout)
	require.Len(t, rows, len(before))
	lines := map[string]bool{}
	for _, row := range rows {
		require.Equal(t, "applied", row[3], "%v", row)
		lines[row[0]] = true
	}
	require.Equal(t, map[string]bool{"river": true, "app": true}, lines)

	// Up again does nothing.
	out = runCmd(t, env, "migrate", "up")
	require.NoError(t, out.err)
	require.Equal(t, "applied 0 migration(s)\n", out.stdout)

	// Down undoes the app's migrations one at a time, newest first, and
	// leaves River's.
	appMigrations := 0
	for _, row := range rows {
		if row[0] == "app" {
			appMigrations++
		}
	}
	for step := range appMigrations {
		require.True(t, relation(t, tdb, "tasks"), "tasks gone before the app's first migration was undone")
		out = runCmd(t, env, "migrate", "down")
		require.NoError(t, out.err, "stderr: %s", out.stderr)
		require.Contains(t, out.stdout, "down  app", "step %d", step+1)
		switch undoneVersion(t, out.stdout) {
		case 16:
			// 00016 undone: no task types defined at run time.
			require.False(t, relation(t, tdb, "task_types"), "task_types left after 00016 was undone")
		case 15:
			// 00015 undone: no index of finished internal jobs.
			var n int
			require.NoError(t, tdb.Pool.QueryRow(context.Background(),
				"SELECT count(*) FROM pg_indexes WHERE indexname = 'taskrunner_river_job_internal_finalized_idx'").Scan(&n))
			require.Zero(t, n, "the internal jobs' index after 00015 was undone")
		case 14:
			// 00014 undone: no secret generations, and deliveries go to
			// 'default' again.
			require.False(t, relation(t, tdb, "callback_secret_generations"), "callback_secret_generations left after 00014 was undone")
			var src string
			require.NoError(t, tdb.Pool.QueryRow(context.Background(),
				"SELECT prosrc FROM pg_proc WHERE proname = 'taskrunner_enqueue_callback'").Scan(&src))
			require.NotContains(t, src, "callback_queue", "the callback trigger after 00014 was undone")
		case 13:
			// 00013 undone: the key index keeps each key's runs newest
			// first again.
			require.Contains(t, indexDef(t, tdb, "runs_key_started_at_idx"), "(key, started_at DESC)", "the key index after 00013 was undone")
		case 12:
			// 00012 undone: the state trigger's function keeps no setting.
			var config []string
			require.NoError(t, tdb.Pool.QueryRow(context.Background(),
				"SELECT coalesce(proconfig, '{}') FROM pg_proc WHERE proname = 'taskrunner_notify_task_state'").Scan(&config))
			require.Empty(t, config, "enable_nestloop still set after 00012 was undone")
		case 11:
			// 00011 undone: the owner index holds every task again.
			require.NotContains(t, indexDef(t, tdb, "taskrunner_river_job_owner_idx"), "WHERE", "the owner index is partial after 00011 was undone")
		case 10:
			// 00010 undone: metrics name their run by id again.
			require.True(t, column(t, tdb, "run_metrics", "run_id"), "run_metrics.run_id missing after 00010 was undone")
			require.False(t, column(t, tdb, "run_metrics", "task_id"), "run_metrics.task_id left after 00010 was undone")
		case 9:
			// 00009 undone: the schedules stay, without their skipped ticks.
			require.True(t, relation(t, tdb, "schedules"), "schedules gone with the newest migration")
			require.False(t, column(t, tdb, "schedules", "skipped_ticks"), "skipped_ticks left after its migration was undone")
			require.False(t, column(t, tdb, "schedules", "last_skipped_at"), "last_skipped_at left after its migration was undone")
		}
	}
	for _, rel := range []string{"tasks", "runs", "run_metrics", "run_notes", "artifacts", "callback_attempts", "schedules", "task_types"} {
		require.False(t, relation(t, tdb, rel), "%s left after migrate down", rel)
	}
	require.True(t, relation(t, tdb, "river_job"), "river_job removed by the app's down")

	// A server refuses a partly migrated database.
	out = runCmd(t, with(baseEnv(tdb.URL), "LOG_LEVEL", "error"), "worker")
	require.ErrorIs(t, out.err, db.ErrMigrationsPending)

	out = runCmd(t, env, "migrate", "up")
	require.NoError(t, out.err, "stderr: %s", out.stderr)
	require.Contains(t, out.stdout, fmt.Sprintf("applied %d migration(s)", appMigrations))
	require.True(t, relation(t, tdb, "tasks"))
	require.True(t, relation(t, tdb, "artifacts"))
	require.True(t, relation(t, tdb, "runs"))

	// Down step by step until nothing is left.
	steps := 0
	for {
		out = runCmd(t, env, "migrate", "down")
		require.NoError(t, out.err, "down step %d; stderr: %s", steps+1, out.stderr)
		if strings.TrimSpace(out.stdout) == "nothing to undo" {
			break
		}
		require.Contains(t, out.stdout, "down  ", "down step %d", steps+1)
		steps++
		require.LessOrEqual(t, steps, len(before), "migrate down never said nothing to undo")
	}
	require.Equal(t, len(before), steps, "one down step per migration")
	for _, rel := range []string{"river_job", "river_leader", "river_queue", "tasks", "runs"} {
		require.False(t, relation(t, tdb, rel), "%s left after undoing every migration", rel)
	}
	out = runCmd(t, env, "migrate", "down")
	require.NoError(t, out.err)
	require.Equal(t, "nothing to undo\n", out.stdout)

	out = runCmd(t, env, "migrate", "up")
	require.NoError(t, out.err, "stderr: %s", out.stderr)
	for _, rel := range []string{"tasks", "runs", "river_job"} {
		require.True(t, relation(t, tdb, rel), "%s missing after migrate up", rel)
	}
	require.True(t, column(t, tdb, "schedules", "skipped_ticks"), "schedules.skipped_ticks missing after migrate up again")
	out = runCmd(t, env, "migrate", "status")
	require.NoError(t, out.err)
	for _, row := range statusLines(t, out.stdout) {
		require.Equal(t, "applied", row[3], "%v", row)
	}
}

// migrate up creates the database DATABASE_URL names when it is missing.
func TestMigrateUpCreatesDatabase(t *testing.T) {
	t.Parallel()
	name := testenv.RandomName("taskrunner_test_")
	u, err := url.Parse(testenv.AdminURL())
	require.NoError(t, err)
	u.Path = "/" + name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, testenv.AdminURL())
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	env := migrateEnv(u.String())

	out := runCmd(t, env, "migrate", "up")
	require.NoError(t, out.err, "stderr: %s", out.stderr)
	require.Contains(t, out.stderr, `"event":"database_created"`)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	require.NoError(t, err)
	defer conn.Close(ctx)
	var tasks, runs bool
	require.NoError(t, conn.QueryRow(ctx, "SELECT to_regclass('public.tasks') IS NOT NULL, to_regclass('public.runs') IS NOT NULL").Scan(&tasks, &runs))
	require.True(t, tasks && runs, "created database not migrated")

	out = runCmd(t, env, "migrate", "up")
	require.NoError(t, out.err)
	require.NotContains(t, out.stderr, "database_created")
	require.Equal(t, "applied 0 migration(s)\n", out.stdout)
}
