package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/schedule"
)

// scheduleTicks are the ticks of the tasks of schedule name, oldest first,
// read in SQL.
func scheduleTicks(t *testing.T, tdb *testenv.DB, name string) []time.Time {
	t.Helper()
	rows, err := tdb.Pool.Query(context.Background(),
		`SELECT (metadata ->> 'schedule_tick')::timestamptz FROM river_job WHERE metadata ->> 'schedule' = $1 ORDER BY 1`, name)
	require.NoError(t, err)
	defer rows.Close()
	var ticks []time.Time
	for rows.Next() {
		var tick time.Time
		require.NoError(t, rows.Scan(&tick))
		ticks = append(ticks, tick)
	}
	require.NoError(t, rows.Err())
	return ticks
}

// requireNoTickTwice fails when any tick of any schedule made two tasks,
// read in SQL.
func requireNoTickTwice(t *testing.T, tdb *testenv.DB) {
	t.Helper()
	var dups int
	require.NoError(t, tdb.Pool.QueryRow(context.Background(), `
		SELECT count(*) FROM (
			SELECT 1 FROM river_job WHERE metadata ? 'schedule_tick'
			GROUP BY metadata ->> 'owner', metadata ->> 'schedule', metadata ->> 'schedule_tick'
			HAVING count(*) > 1) d`).Scan(&dups))
	require.Zero(t, dups, "a tick enqueued two tasks")
}

// ticksAfter are the ticks after at.
func ticksAfter(ticks []time.Time, at time.Time) []time.Time {
	i, _ := slices.BinarySearchFunc(ticks, at, func(a, b time.Time) int { return a.Compare(b) })
	for i < len(ticks) && !ticks[i].After(at) {
		i++
	}
	return ticks[i:]
}

// requireEverySecond fails unless ticks are consecutive seconds.
func requireEverySecond(t *testing.T, ticks []time.Time) {
	t.Helper()
	for i := 1; i < len(ticks); i++ {
		require.Equal(t, time.Second, ticks[i].Sub(ticks[i-1]), "ticks %d and %d: %v", i-1, i, ticks)
	}
}

// leaderID is the River leader the database records; "" for none.
func leaderID(t *testing.T, tdb *testenv.DB) string {
	t.Helper()
	var id string
	err := tdb.Pool.QueryRow(context.Background(), `SELECT leader_id FROM river_leader`).Scan(&id)
	if err != nil {
		return ""
	}
	return id
}

func (c *apiClient) createSchedule(body map[string]any) {
	c.t.Helper()
	status, resp := c.do(http.MethodPost, "/schedules", body)
	require.Equal(c.t, http.StatusCreated, status, "POST /schedules: %v", resp)
}

// Acceptance: an every-second schedule makes a task each second, and goes
// on when the River leader stops and another process is elected; no tick
// makes two tasks.
func TestScheduleAcrossLeaderChange(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	env := baseEnv(tdb.URL)
	a := startWorker(t, "worker-a", env)
	// Alone, worker A is elected.
	require.Eventually(t, func() bool { return leaderID(t, tdb) != "" }, startTimeout, 50*time.Millisecond, "no leader")
	first := leaderID(t, tdb)
	startWorker(t, "worker-b", env)
	_, api := startAPIProc(t, "api", env, "api")

	api.createSchedule(map[string]any{"name": "tick", "every": "1s", "task": map[string]any{"type": "echo", "params": map[string]any{"msg": "tick"}}})
	require.Eventually(t, func() bool { return len(scheduleTicks(t, tdb, "tick")) >= 4 }, 20*time.Second, 100*time.Millisecond)

	stopping := time.Now()
	a.Signal(syscall.SIGTERM)
	require.Equal(t, 0, a.WaitExit(exitTimeout), "worker A exit code after SIGTERM")
	require.Eventually(t, func() bool { id := leaderID(t, tdb); return id != "" && id != first }, 30*time.Second, 50*time.Millisecond, "worker B not elected")
	elected := time.Now()
	require.Eventually(t, func() bool { return len(ticksAfter(scheduleTicks(t, tdb, "tick"), elected)) >= 4 }, 20*time.Second, 100*time.Millisecond)
	ticks := scheduleTicks(t, tdb, "tick")
	t.Logf("worker B elected %s after worker A was told to stop; ticks: %v", elected.Sub(stopping).Round(time.Millisecond), ticks)

	requireNoTickTwice(t, tdb)
	// A task each second, across the change: the ticks that passed while
	// the leader changed fire late, all of them (schedule.Grace).
	requireEverySecond(t, ticks)
	require.True(t, ticks[len(ticks)-1].After(elected), "no tick after the change")

	// The tasks are the schedule's, and ran.
	var id int64
	require.NoError(t, tdb.Pool.QueryRow(context.Background(),
		`SELECT id FROM river_job WHERE metadata ->> 'schedule' = 'tick' ORDER BY id DESC LIMIT 1`).Scan(&id))
	got := api.waitStatus(id, 20*time.Second, "completed")
	require.Equal(t, "tick", got["schedule"])
	require.Equal(t, "local", got["owner"])
}

// Acceptance: schedules survive a restart of every process; a tick missed
// while none ran fires once under run_once and not under skip; pause stops
// the ticks, resume restarts them, delete stops them for good.
func TestScheduleRestartMissedPauseDelete(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	env := baseEnv(tdb.URL)
	srv, api := startAPIProc(t, "serve-1", env, "serve")
	srv.WaitEvent("workers_started", startTimeout, nil)
	echo := map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}}
	api.createSchedule(map[string]any{"name": "tick", "every": "1s", "task": echo})
	api.createSchedule(map[string]any{"name": "once", "every": "30s", "task": echo})
	api.createSchedule(map[string]any{"name": "skip", "every": "30s", "missed": "skip", "task": echo})
	require.Eventually(t, func() bool { return len(scheduleTicks(t, tdb, "tick")) >= 2 }, 20*time.Second, 100*time.Millisecond)

	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.WaitExit(exitTimeout), "serve exit code after SIGTERM")
	// Nothing runs over a tick of once and skip, until it is later than a
	// leader change takes.
	missed := time.Unix((time.Now().Unix()/30+1)*30, 0) // the next tick of every: 30s
	time.Sleep(time.Until(missed.Add(schedule.Grace + time.Second)))

	srv, api = startAPIProc(t, "serve-2", env, "serve")
	srv.WaitEvent("workers_started", startTimeout, nil)
	restarted := time.Now()
	status, body := api.do(http.MethodGet, "/schedules", nil)
	require.Equal(t, http.StatusOK, status, "GET /schedules: %v", body)
	require.Len(t, body["schedules"], 3)
	require.Eventually(t, func() bool { return len(ticksAfter(scheduleTicks(t, tdb, "tick"), restarted)) >= 2 }, 20*time.Second, 100*time.Millisecond,
		"tick does not tick after the restart")
	require.Eventually(t, func() bool { return slices.ContainsFunc(scheduleTicks(t, tdb, "once"), missed.Equal) }, 10*time.Second, 100*time.Millisecond,
		"the missed tick of run_once was not fired: %v", scheduleTicks(t, tdb, "once"))
	require.False(t, slices.ContainsFunc(scheduleTicks(t, tdb, "skip"), missed.Equal), "the missed tick of skip was fired")

	status, body = api.do(http.MethodGet, "/schedules/once", nil)
	require.Equal(t, http.StatusOK, status, "GET /schedules/once: %v", body)
	require.NotEmpty(t, body["last_task_ids"])
	require.Len(t, body["next_runs"], 5)

	// Pause: a tick already on its way may land, then none.
	status, body = api.do(http.MethodPost, "/schedules/tick/pause", nil)
	require.Equal(t, http.StatusOK, status, "pause: %v", body)
	time.Sleep(1500 * time.Millisecond)
	paused, pausedAt := len(scheduleTicks(t, tdb, "tick")), time.Now()
	time.Sleep(3 * time.Second)
	require.Equal(t, paused, len(scheduleTicks(t, tdb, "tick")), "a paused schedule ticked")

	resumed := time.Now()
	status, body = api.do(http.MethodPost, "/schedules/tick/resume", nil)
	require.Equal(t, http.StatusOK, status, "resume: %v", body)
	require.Eventually(t, func() bool { return len(ticksAfter(scheduleTicks(t, tdb, "tick"), resumed)) >= 2 }, 10*time.Second, 100*time.Millisecond,
		"a resumed schedule does not tick")
	// Ticks passed while paused stay passed, even under run_once.
	for _, tick := range scheduleTicks(t, tdb, "tick") {
		require.False(t, tick.After(pausedAt) && tick.Before(resumed), "tick %s, passed while paused, was fired", tick)
	}

	status, _ = api.do(http.MethodDelete, "/schedules/tick", nil)
	require.Equal(t, http.StatusNoContent, status)
	time.Sleep(1500 * time.Millisecond)
	deleted := len(scheduleTicks(t, tdb, "tick"))
	time.Sleep(3 * time.Second)
	require.Equal(t, deleted, len(scheduleTicks(t, tdb, "tick")), "a deleted schedule ticked")
	status, _ = api.do(http.MethodGet, "/schedules/tick", nil)
	require.Equal(t, http.StatusNotFound, status)

	requireNoTickTwice(t, tdb)
}

// The schedules client commands: add, ls, get, pause, resume, rm.
func TestScheduleCommands(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	srv, api := startAPIProc(t, "serve", baseEnv(tdb.URL), "serve")
	srv.WaitEvent("workers_started", startTimeout, nil)
	cli := func(t *testing.T, args ...string) clientOut {
		t.Helper()
		return runClientCmd(t, api.base, "", args...)
	}

	out := cli(t, "schedules", "add", "tick", "--every", "1s", "echo", "--param", "msg=hi", "--retries", "0")
	require.NoError(t, out.err, out.all())
	require.Contains(t, out.stdout, `"every": "1s"`)
	out = cli(t, "schedules", "add", "nightly", "--cron", "30 2 * * *", "--tz", "Europe/Paris", "--missed", "skip", "echo", "--params", `{"msg":"night"}`)
	require.NoError(t, out.err, out.all())

	out = cli(t, "schedules", "ls")
	require.NoError(t, out.err, out.all())
	lines := strings.Split(strings.TrimSpace(out.stdout), "\n")
	require.Len(t, lines, 3, out.stdout)
	require.Regexp(t, `^NAME\s+OWNER\s+WHEN.*\s+SKIPPED$`, lines[0])
	require.Regexp(t, `^nightly\s+local\s+cron 30 2 \* \* \* \(Europe/Paris\)\s+skip\s+active\s+\d{4}-.*\s+0$`, lines[1])
	require.Regexp(t, `^tick\s+local\s+every 1s\s+run_once\s+active\s+\d{4}-`, lines[2])

	require.Eventually(t, func() bool { return len(scheduleTicks(t, tdb, "tick")) >= 2 }, 20*time.Second, 100*time.Millisecond)
	out = cli(t, "schedules", "get", "tick")
	require.NoError(t, out.err, out.all())
	require.Contains(t, out.stdout, `"last_task_ids": [`)

	out = cli(t, "schedules", "pause", "tick")
	require.NoError(t, out.err, out.all())
	require.Contains(t, out.stdout, `"paused": true`)
	out = cli(t, "schedules", "resume", "tick")
	require.NoError(t, out.err, out.all())
	require.Contains(t, out.stdout, `"paused": false`)
	out = cli(t, "schedules", "rm", "tick")
	require.NoError(t, out.err, out.all())
	require.Equal(t, "schedule tick deleted\n", out.stdout)
	out = cli(t, "schedules", "get", "tick")
	require.ErrorContains(t, out.err, "not_found")
	require.Equal(t, 1, out.code)

	// Refusals: the server's, and usage errors.
	out = cli(t, "schedules", "add", "bad", "--every", "100ms", "echo")
	require.ErrorContains(t, out.err, "task_rejected_invalid_params")
	out = cli(t, "schedules", "add", "big", "--every", "1h", "echo", "--param", "msg="+strings.Repeat("x", 70<<10))
	require.ErrorContains(t, out.err, "schedule_task_too_large")
	require.Equal(t, 1, out.code)
	for _, args := range [][]string{
		{"schedules"}, {"schedules", "frob"}, {"schedules", "add", "onlyname"}, {"schedules", "rm"},
		{"schedules", "ls", "extra"}, {"schedules", "add", "x", "echo", "--retries", "many"},
	} {
		out = cli(t, args...)
		require.Equal(t, 2, out.code, "%v: %s", args, out.all())
	}
}
