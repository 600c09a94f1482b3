package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/client"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/schedule"
)

// countSchedules is how many schedules owner has in the database.
func countSchedules(t *testing.T, b *bundle, owner string) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM schedules WHERE owner = $1`, owner).Scan(&n))
	return n
}

// parallelCreates posts every body at once as key and returns the
// answers' statuses and codes, counted.
func parallelCreates(t *testing.T, b *bundle, key string, bodies []map[string]any) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, body := range bodies {
		wg.Go(func() {
			<-start
			r := b.doAs(t, key, http.MethodPost, "/schedules", body)
			outcome := "201"
			if r.status != http.StatusCreated {
				outcome = fmt.Sprintf("%d %s", r.status, errorCode(t, r))
			}
			mu.Lock()
			got[outcome]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return got
}

// 50 parallel creates with room for 10 under the cap of schedules per
// tenant leave exactly the cap: the count and the insert happen under a
// lock of the tenant's schedules. Bob's schedules are not held up by
// alice's cap.
func TestScheduleCapHoldsUnderParallelCreates(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: tenantKeys})
	const room = 10
	_, err := b.db.Pool.Exec(context.Background(), `INSERT INTO schedules (owner, name, every_seconds, task)
		SELECT 'alice', 'pre-' || g, 86400, '{"type":"echo","params":{"msg":"x"}}' FROM generate_series(1, $1::int) g`, schedule.MaxPerOwner-room)
	require.NoError(t, err)

	bodies := make([]map[string]any, 50)
	for i := range bodies {
		bodies[i] = map[string]any{"name": fmt.Sprintf("new-%d", i), "every": "24h", "task": echoTask}
	}
	got := parallelCreates(t, b, aliceKey, bodies)
	require.Equal(t, map[string]int{"201": room, "409 " + string(taskrunner.CodeTooManySchedules): 50 - room}, got)
	require.Equal(t, schedule.MaxPerOwner, countSchedules(t, b, "alice"), "exactly the cap")

	r := b.doAs(t, bobKey, http.MethodPost, "/schedules", hourly("bobs"))
	require.Equal(t, http.StatusCreated, r.status, "another tenant's cap is its own: %s", r.raw)
}

// A tenant's active schedules may tick at most its tasks_per_minute
// times a minute in all: a create or a resume over it is refused with
// schedule_rate_exceeded, naming the numbers; paused schedules do not
// count. Parallel creates cannot pass the bound together.
func TestScheduleTickBound(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: tenantKeys, tenantLimits: map[string]config.TenantLimits{"alice": {TasksPerMinute: 60}}})
	create := func(name, field, spec string) response {
		return b.doAs(t, aliceKey, http.MethodPost, "/schedules", map[string]any{"name": name, field: spec, "task": echoTask})
	}
	for _, c := range [][3]string{
		{"a", "every", "2s"},         // 30 a minute
		{"b", "every", "4s"},         // 15
		{"c", "cron", "*/4 * * * *"}, // 15 an hour: 0.25
		{"d", "cron", "0 3 * * *"},   // 1 an hour at most: 1/60
		{"e", "every", "5m"},         // 0.2
	} {
		r := create(c[0], c[1], c[2])
		require.Equal(t, http.StatusCreated, r.status, "%v: %s", c, r.raw)
	}
	// 45.47 a minute so far; 15 more is over.
	r := create("f", "every", "4s")
	require.Equal(t, http.StatusConflict, r.status, "body: %s", r.raw)
	require.Equal(t, taskrunner.CodeScheduleRateExceeded, errorCode(t, r))
	msg := decode[struct {
		Error struct{ Message string } `json:"error"`
	}](t, r.raw).Error.Message
	require.Contains(t, msg, "would tick 60.47 times a minute")
	require.Contains(t, msg, "may tick 60")

	// Paused, a's 30 are free; resuming it is then over the bound.
	r = b.doAs(t, aliceKey, http.MethodPost, "/schedules/a/pause", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	r = create("f", "every", "2s")
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	r = b.doAs(t, aliceKey, http.MethodPost, "/schedules/a/resume", nil)
	require.Equal(t, http.StatusConflict, r.status, "body: %s", r.raw)
	require.Equal(t, taskrunner.CodeScheduleRateExceeded, errorCode(t, r))
	s := b.doAs(t, aliceKey, http.MethodGet, "/schedules/a", nil).schedule(t)
	require.True(t, s.Paused, "a refused resume leaves the schedule paused")
	// Resuming a schedule that ticks already changes nothing, and passes.
	r = b.doAs(t, aliceKey, http.MethodPost, "/schedules/b/resume", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	// With f deleted, a may tick again.
	r = b.doAs(t, aliceKey, http.MethodDelete, "/schedules/f", nil)
	require.Equal(t, http.StatusNoContent, r.status, "body: %s", r.raw)
	r = b.doAs(t, aliceKey, http.MethodPost, "/schedules/a/resume", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)

	// Bob's bound is his own (the default 30 a minute), whatever alice's.
	r = b.doAs(t, bobKey, http.MethodPost, "/schedules", map[string]any{"name": "fast", "every": "1s", "task": echoTask})
	require.Equal(t, http.StatusConflict, r.status, "body: %s", r.raw)
	require.Equal(t, taskrunner.CodeScheduleRateExceeded, errorCode(t, r))
	// Parallel creates pass the bound one at a time: 20 schedules of 20 a
	// minute leave one.
	bodies := make([]map[string]any, 20)
	for i := range bodies {
		bodies[i] = map[string]any{"name": fmt.Sprintf("p%d", i), "every": "3s", "task": echoTask}
	}
	got := parallelCreates(t, b, bobKey, bodies)
	require.Equal(t, map[string]int{"201": 1, "409 " + string(taskrunner.CodeScheduleRateExceeded): 19}, got)
	require.Equal(t, 1, countSchedules(t, b, "bob"))
}

// A schedule's task is stored at most SCHEDULE_MAX_TASK_BYTES: a larger
// one is refused with schedule_task_too_large, naming the field, and
// nothing is stored.
func TestScheduleTaskIsCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	withMsg := func(name string, n int) map[string]any {
		return map[string]any{"name": name, "every": "1h", "task": map[string]any{"type": "echo", "params": map[string]any{"msg": strings.Repeat("x", n)}}}
	}
	r := b.do(t, http.MethodPost, "/schedules", withMsg("small", 60<<10))
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	r = b.do(t, http.MethodPost, "/schedules", withMsg("large", 64<<10))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status, "body: %s", r.raw)
	require.Equal(t, taskrunner.CodeScheduleTaskTooLarge, errorCode(t, r))
	require.Contains(t, string(r.raw), `"field":"task"`)
	require.Contains(t, string(r.raw), fmt.Sprintf("at most %d", config.DefaultScheduleMaxTaskBytes))
	require.Equal(t, 1, countSchedules(t, b, taskrunner.LocalTenant))

	limits := decode[map[string]any](t, b.do(t, http.MethodGet, "/limits", nil).raw)
	require.EqualValues(t, config.DefaultScheduleMaxTaskBytes, limits["schedule_max_task_bytes"])
}

// A page of GET /schedules is capped in bytes as GET /tasks pages are:
// schedules with large tasks end it early, with a next_cursor, and
// following the cursors gives every schedule exactly once.
func TestScheduleListIsCappedInBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	// 5.6 MB of tasks in all: more than one page of 4 MiB.
	const n, msgBytes = 90, 62 << 10
	var names []string
	for i := range n {
		name := fmt.Sprintf("s%03d", i)
		names = append(names, name)
		r := b.do(t, http.MethodPost, "/schedules", map[string]any{"name": name, "every": "24h",
			"task": map[string]any{"type": "echo", "params": map[string]any{"msg": strings.Repeat(fmt.Sprint(i%10), msgBytes)}}})
		require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	}

	var seen []string
	cursor, pages := "", 0
	for {
		pages++
		require.Less(t, pages, n+1, "pagination does not end")
		r := b.do(t, http.MethodGet, "/schedules?limit=500&cursor="+cursor, nil)
		require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
		require.LessOrEqual(t, len(r.raw), 4<<20+msgBytes+4096, "a page passes 4 MiB by one schedule at most")
		page := decode[client.ScheduleList](t, r.raw)
		require.NotEmpty(t, page.Schedules)
		for _, s := range page.Schedules {
			seen = append(seen, s.Name)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	require.Greater(t, pages, 1, "5 MB of schedules do not fit one page")
	require.Equal(t, names, seen, "by name, each schedule once")
}
