package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/client"
	"github.com/taskrunner/taskrunner/config"
)

func (r response) schedule(t *testing.T) client.Schedule {
	t.Helper()
	return decode[client.Schedule](t, r.raw)
}

func hourly(name string) map[string]any {
	return map[string]any{"name": name, "every": "1h", "task": echoTask}
}

// A schedule is created, read, listed, paused, resumed and deleted.
func TestScheduleLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})

	r := b.do(t, http.MethodPost, "/schedules", map[string]any{
		"name": "nightly", "cron": "30 2 * * *", "time_zone": "Europe/Paris", "missed": "skip", "task": echoTask,
	})
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	require.Equal(t, "/schedules/nightly", r.header.Get("Location"))
	s := r.schedule(t)
	require.Equal(t, "nightly", s.Name)
	require.Equal(t, taskrunner.LocalTenant, s.Owner)
	require.Equal(t, "30 2 * * *", deref(s.Cron))
	require.Nil(t, s.Every)
	require.Equal(t, "Europe/Paris", deref(s.TimeZone))
	require.Equal(t, taskrunner.MissedSkip, s.Missed)
	require.False(t, s.Paused)
	require.Nil(t, s.LastTickAt)
	require.Len(t, s.NextRuns, 5)
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	for i, next := range s.NextRuns {
		local := next.In(paris)
		require.Equal(t, []int{2, 30}, []int{local.Hour(), local.Minute()}, "next run %d: %s", i, next)
		if i > 0 {
			require.True(t, next.After(s.NextRuns[i-1]))
		}
	}
	require.JSONEq(t, `{"type":"echo","params":{"msg":"x"}}`, string(s.Task), "the task as given")

	// The default missed policy, and an interval's view.
	r = b.do(t, http.MethodPost, "/schedules", hourly("hourly"))
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	s = r.schedule(t)
	require.Equal(t, "1h0m0s", deref(s.Every))
	require.Nil(t, s.Cron)
	require.Nil(t, s.TimeZone)
	require.Equal(t, taskrunner.MissedRunOnce, s.Missed)
	// Interval ticks are multiples of it since the Unix epoch.
	for _, next := range s.NextRuns {
		require.Zero(t, next.Unix()%3600, "next run %s", next)
	}

	r = b.do(t, http.MethodPost, "/schedules", hourly("hourly"))
	require.Equal(t, http.StatusConflict, r.status, "body: %s", r.raw)
	require.Equal(t, taskrunner.CodeScheduleExists, errorCode(t, r))

	r = b.do(t, http.MethodGet, "/schedules/hourly", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	require.Equal(t, []int64{}, r.schedule(t).LastTaskIDs)

	r = b.do(t, http.MethodGet, "/schedules", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	list := decode[client.ScheduleList](t, r.raw)
	require.Len(t, list.Schedules, 2)
	require.Equal(t, "hourly", list.Schedules[0].Name)
	require.Nil(t, list.NextCursor)

	// Pages.
	r = b.do(t, http.MethodGet, "/schedules?limit=1", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	list = decode[client.ScheduleList](t, r.raw)
	require.Len(t, list.Schedules, 1)
	require.NotNil(t, list.NextCursor)
	r = b.do(t, http.MethodGet, "/schedules?limit=1&cursor="+*list.NextCursor, nil)
	list = decode[client.ScheduleList](t, r.raw)
	require.Len(t, list.Schedules, 1)
	require.Equal(t, "nightly", list.Schedules[0].Name)
	require.Nil(t, list.NextCursor)

	r = b.do(t, http.MethodPost, "/schedules/hourly/pause", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	require.True(t, r.schedule(t).Paused)
	require.Empty(t, r.schedule(t).NextRuns)
	r = b.do(t, http.MethodPost, "/schedules/hourly/resume", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	require.False(t, r.schedule(t).Paused)
	require.Len(t, r.schedule(t).NextRuns, 5)

	r = b.do(t, http.MethodDelete, "/schedules/hourly", nil)
	require.Equal(t, http.StatusNoContent, r.status, "body: %s", r.raw)
	for _, req := range [][2]string{
		{http.MethodGet, "/schedules/hourly"}, {http.MethodDelete, "/schedules/hourly"},
		{http.MethodPost, "/schedules/hourly/pause"}, {http.MethodPost, "/schedules/hourly/resume"},
		{http.MethodGet, "/schedules/no%20such"},
	} {
		r = b.do(t, req[0], req[1], nil)
		require.Equal(t, http.StatusNotFound, r.status, "%s %s: %s", req[0], req[1], r.raw)
		require.Equal(t, taskrunner.CodeNotFound, errorCode(t, r))
	}
}

// A bad schedule is refused with the codes of POST /tasks, naming its
// field; a bad task names its field under task.
func TestScheduleRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	for _, tc := range []struct {
		name  string
		body  any
		code  taskrunner.Code
		field string
	}{
		{"no name", map[string]any{"every": "1m", "task": echoTask}, taskrunner.CodeInvalidParams, "name"},
		{"bad name", map[string]any{"name": "a b", "every": "1m", "task": echoTask}, taskrunner.CodeInvalidParams, "name"},
		{"leading dot", map[string]any{"name": ".a", "every": "1m", "task": echoTask}, taskrunner.CodeInvalidParams, "name"},
		{"long name", map[string]any{"name": string(make([]byte, 65)), "every": "1m", "task": echoTask}, taskrunner.CodeInvalidParams, "name"},
		{"neither", map[string]any{"name": "a", "task": echoTask}, taskrunner.CodeInvalidParams, "cron"},
		{"both", map[string]any{"name": "a", "every": "1m", "cron": "* * * * *", "task": echoTask}, taskrunner.CodeInvalidParams, "cron"},
		{"under a second", map[string]any{"name": "a", "every": "500ms", "task": echoTask}, taskrunner.CodeInvalidParams, "every"},
		{"not whole seconds", map[string]any{"name": "a", "every": "1500ms", "task": echoTask}, taskrunner.CodeInvalidParams, "every"},
		{"too long", map[string]any{"name": "a", "every": "9000h", "task": echoTask}, taskrunner.CodeInvalidParams, "every"},
		{"not a duration", map[string]any{"name": "a", "every": "daily", "task": echoTask}, taskrunner.CodeInvalidParams, "every"},
		{"six fields", map[string]any{"name": "a", "cron": "0 * * * * *", "task": echoTask}, taskrunner.CodeInvalidParams, "cron"},
		{"descriptor", map[string]any{"name": "a", "cron": "@hourly", "task": echoTask}, taskrunner.CodeInvalidParams, "cron"},
		{"tz prefix", map[string]any{"name": "a", "cron": "TZ=UTC * * * * *", "task": echoTask}, taskrunner.CodeInvalidParams, "cron"},
		{"out of range", map[string]any{"name": "a", "cron": "61 * * * *", "task": echoTask}, taskrunner.CodeInvalidParams, "cron"},
		{"never", map[string]any{"name": "a", "cron": "0 0 30 2 *", "task": echoTask}, taskrunner.CodeInvalidParams, "cron"},
		{"bad zone", map[string]any{"name": "a", "cron": "* * * * *", "time_zone": "Mars/Olympus", "task": echoTask}, taskrunner.CodeInvalidParams, "time_zone"},
		{"local zone", map[string]any{"name": "a", "cron": "* * * * *", "time_zone": "Local", "task": echoTask}, taskrunner.CodeInvalidParams, "time_zone"},
		{"zone with every", map[string]any{"name": "a", "every": "1m", "time_zone": "UTC", "task": echoTask}, taskrunner.CodeInvalidParams, "time_zone"},
		{"bad missed", map[string]any{"name": "a", "every": "1m", "missed": "twice", "task": echoTask}, taskrunner.CodeInvalidParams, "missed"},
		{"no task", map[string]any{"name": "a", "every": "1m"}, taskrunner.CodeInvalidParams, "task.type"},
		{"unknown type", map[string]any{"name": "a", "every": "1m", "task": map[string]any{"type": "nope"}}, taskrunner.CodeUnknownTaskType, "task.type"},
		{"bad params", map[string]any{"name": "a", "every": "1m", "task": map[string]any{"type": "sleep", "params": map[string]any{"seconds": -1}}}, taskrunner.CodeInvalidParams, "task.params.seconds"},
		{"bad queue", map[string]any{"name": "a", "every": "1m", "task": map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}, "queue": "nope"}}, taskrunner.CodeInvalidParams, "task.queue"},
		{"run_at", map[string]any{"name": "a", "every": "1m", "task": map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}, "run_at": "2030-01-01T00:00:00Z"}}, taskrunner.CodeInvalidParams, "task.run_at"},
		{"unknown field", map[string]any{"name": "a", "every": "1m", "task": echoTask, "at": 1}, taskrunner.CodeInvalidParams, "at"},
		{"unknown task field", map[string]any{"name": "a", "every": "1m", "task": map[string]any{"type": "echo", "x": 1}}, taskrunner.CodeInvalidParams, "x"},
		{"not JSON", `{"name":`, taskrunner.CodeInvalidJSON, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(t, http.MethodPost, "/schedules", tc.body)
			require.Equal(t, http.StatusBadRequest, r.status, "body: %s", r.raw)
			e := r.apiError(t)
			require.Equal(t, tc.code, e.Code, "body: %s", r.raw)
			require.Equal(t, tc.field, e.Field, "body: %s", r.raw)
		})
	}
	r := b.do(t, http.MethodGet, "/schedules", nil)
	require.Empty(t, decode[client.ScheduleList](t, r.raw).Schedules, "a refused schedule was stored")
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "cursor=nope"} {
		r := b.do(t, http.MethodGet, "/schedules?"+q, nil)
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", q, r.raw)
	}
}

// A client sees and acts on its own schedules only; an admin on anyone's,
// naming the owner.
func TestScheduleTenants(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: tenantKeys})
	r := b.doAs(t, aliceKey, http.MethodPost, "/schedules", hourly("report"))
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	require.Equal(t, "alice", r.schedule(t).Owner)
	// Names are per tenant.
	r = b.doAs(t, bobKey, http.MethodPost, "/schedules", hourly("report"))
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	r = b.doAs(t, bobKey, http.MethodPost, "/schedules", hourly("bobs"))
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)

	for _, req := range [][2]string{
		{http.MethodGet, "/schedules/bobs"}, {http.MethodGet, "/schedules/bobs?owner=bob"},
		{http.MethodPost, "/schedules/bobs/pause?owner=bob"}, {http.MethodDelete, "/schedules/bobs?owner=bob"},
	} {
		r = b.doAs(t, aliceKey, req[0], req[1], nil)
		require.Equal(t, http.StatusNotFound, r.status, "alice %s %s: %s", req[0], req[1], r.raw)
	}
	r = b.doAs(t, alice2Key, http.MethodGet, "/schedules", nil)
	list := decode[client.ScheduleList](t, r.raw).Schedules
	require.Len(t, list, 1)
	require.Equal(t, "alice", list[0].Owner)
	r = b.doAs(t, aliceKey, http.MethodGet, "/schedules?owner=bob", nil)
	require.Empty(t, decode[client.ScheduleList](t, r.raw).Schedules)

	r = b.doAs(t, opsKey, http.MethodGet, "/schedules", nil)
	require.Len(t, decode[client.ScheduleList](t, r.raw).Schedules, 3)
	r = b.doAs(t, opsKey, http.MethodGet, "/schedules?owner=bob", nil)
	require.Len(t, decode[client.ScheduleList](t, r.raw).Schedules, 2)
	r = b.doAs(t, opsKey, http.MethodGet, "/schedules/bobs", nil)
	require.Equal(t, http.StatusNotFound, r.status, "an admin's own tenant has no such schedule: %s", r.raw)
	r = b.doAs(t, opsKey, http.MethodPost, "/schedules/bobs/pause?owner=bob", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	require.Equal(t, "bob", r.schedule(t).Owner)
	r = b.doAs(t, opsKey, http.MethodDelete, "/schedules/bobs?owner=bob", nil)
	require.Equal(t, http.StatusNoContent, r.status, "body: %s", r.raw)
	r = b.doAs(t, bobKey, http.MethodGet, "/schedules/bobs", nil)
	require.Equal(t, http.StatusNotFound, r.status, "body: %s", r.raw)
}

// An every-second schedule enqueues a task per tick, owned by the
// schedule's owner and showing its name, and no tick twice; paused, it
// enqueues nothing.
func TestScheduleFires(t *testing.T) {
	t.Parallel()
	// 60 tasks a minute allow an every-second schedule's ticks.
	b := setup(t, setupOpts{work: true, apiKeys: tenantKeys, tenantLimits: map[string]config.TenantLimits{"alice": {TasksPerMinute: 60}}})
	r := b.doAs(t, aliceKey, http.MethodPost, "/schedules", map[string]any{"name": "tick", "every": "1s", "task": echoTask})
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)

	var s client.Schedule
	require.Eventually(t, func() bool {
		r = b.doAs(t, aliceKey, http.MethodGet, "/schedules/tick", nil)
		s = r.schedule(t)
		return len(s.LastTaskIDs) >= 3
	}, 20*time.Second, 100*time.Millisecond, "three ticks")
	require.NotNil(t, s.LastTickAt)
	require.Zero(t, s.LastTickAt.Nanosecond())

	r = b.doAs(t, aliceKey, http.MethodGet, "/tasks/"+strconv.FormatInt(s.LastTaskIDs[0], 10), nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	task := r.task(t)
	require.Equal(t, "alice", task.Owner)
	require.Equal(t, "tick", deref(task.Schedule))
	require.Equal(t, "echo", task.Type)
	// A client's own task shows no schedule.
	r = b.doAs(t, aliceKey, http.MethodPost, "/tasks", echoTask)
	require.Nil(t, r.task(t).Schedule)

	r = b.doAs(t, aliceKey, http.MethodPost, "/schedules/tick/pause", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	// A tick already on its way may still land; then none.
	time.Sleep(1500 * time.Millisecond)
	paused := scheduleTasks(t, b, "alice", "tick")
	time.Sleep(2500 * time.Millisecond)
	require.Equal(t, paused, scheduleTasks(t, b, "alice", "tick"), "a paused schedule enqueued")

	var dups int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `
		SELECT count(*) FROM (
			SELECT metadata ->> 'schedule_tick' FROM river_job WHERE metadata ->> 'schedule' = 'tick'
			GROUP BY 1 HAVING count(*) > 1) d`).Scan(&dups))
	require.Zero(t, dups, "a tick enqueued two tasks")
}

// scheduleTasks counts the tasks of owner's schedule name.
func scheduleTasks(t *testing.T, b *bundle, owner, name string) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM river_job WHERE metadata ->> 'owner' = $1 AND metadata ->> 'schedule' = $2`, owner, name).Scan(&n))
	return n
}
