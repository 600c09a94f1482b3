package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/metrics"
)

// yearly is a schedule whose own ticks (each 1 January) do not come
// during a test: the test fires its ticks itself, with fireTick.
func yearly(name string) map[string]any {
	return map[string]any{"name": name, "cron": "0 0 1 1 *", "task": echoTask}
}

// fireTick inserts the tick job of owner's schedule name, as the River
// leader does when the tick is due, and waits until the worker has
// completed it.
func (b *bundle) fireTick(t *testing.T, owner, name string, tick time.Time) {
	t.Helper()
	ctx := context.Background()
	res, err := b.client.Insert(ctx, jobs.ScheduleTickArgs{Owner: owner, Name: name, Tick: tick.UTC()}, nil)
	require.NoError(t, err)
	require.False(t, res.UniqueSkippedAsDuplicate, "tick %s fired twice by the test", tick)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var state string
		var errs []byte
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT state, coalesce(errors::text, '') FROM river_job WHERE id = $1`, res.Job.ID).Scan(&state, &errs))
		switch state {
		case "completed":
			return
		case "retryable", "discarded", "cancelled":
			t.Fatalf("tick job %s/%s %s: %s; errors: %s", owner, name, tick, state, errs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tick job %s/%s %s still %s", owner, name, tick, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricsOf is m's text exposition.
func metricsOf(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

// A schedule's ticks take their tasks from the owner's enqueue allowance,
// the one POST /tasks takes from: alice (3 a minute) gets 3 tasks of 5
// ticks, the other 2 skipped, logged, counted in her schedule's view and
// the metrics, and her own POST /tasks is then refused. Bob's ticks draw
// on his own allowance (2): his paused schedule's ticks, and a tick
// claimed already, take nothing of it, so 2 of his ticks fire after alice
// used hers up, and a third is skipped.
func TestScheduleTicksTakeTheOwnersEnqueueAllowance(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.SetTenants([]string{"alice", "bob"})
	const alicePerMinute, bobPerMinute = 3, 2
	b := setup(t, setupOpts{work: true, apiKeys: tenantKeys, metrics: m, perMinute: 100,
		tenantLimits: map[string]config.TenantLimits{"alice": {TasksPerMinute: alicePerMinute}, "bob": {TasksPerMinute: bobPerMinute}}})
	for _, key := range []string{aliceKey, bobKey} {
		r := b.doAs(t, key, http.MethodPost, "/schedules", yearly("report"))
		require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	}
	r := b.doAs(t, bobKey, http.MethodPost, "/schedules/report/pause", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	base := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	tick := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

	// Bob's paused schedule: its ticks fire nothing and take nothing.
	for i := range 3 {
		b.fireTick(t, "bob", "report", tick(i))
	}

	start := time.Now()
	for i := range 5 {
		b.fireTick(t, "alice", "report", tick(i))
	}
	post := b.doAs(t, aliceKey, http.MethodPost, "/tasks", echoTask)
	// The allowance refills one task every minute/3: however slow this
	// machine, no more than that came back meanwhile.
	refilled := int(time.Since(start) / (time.Minute / alicePerMinute))
	fired := scheduleTasks(t, b, "alice", "report")
	require.GreaterOrEqual(t, fired, alicePerMinute, "alice's ticks within her allowance fire")
	require.LessOrEqual(t, fired, alicePerMinute+refilled, "alice's ticks beyond her allowance are skipped")
	if refilled == 0 {
		require.Equal(t, http.StatusTooManyRequests, post.status, "her ticks used her allowance up: %s", post.raw)
		require.Equal(t, taskrunner.CodeRateLimitExceeded, errorCode(t, post))
	}
	skipped := 5 - fired

	s := b.doAs(t, aliceKey, http.MethodGet, "/schedules/report", nil).schedule(t)
	require.EqualValues(t, skipped, s.SkippedTicks)
	require.NotNil(t, s.LastSkippedAt)
	require.True(t, s.LastSkippedAt.Equal(tick(4)), "the last tick was the last skipped: %s", s.LastSkippedAt)
	require.True(t, s.LastTickAt.Equal(tick(4)), "a skipped tick is claimed too: %s", s.LastTickAt)
	require.Len(t, s.LastTaskIDs, fired)
	limited := b.logs.Events("schedule_tick_limited")
	require.Len(t, limited, skipped, "one line per skipped tick")
	for _, e := range limited {
		require.Equal(t, "alice", e["tenant"])
		require.Equal(t, "report", e["schedule"])
		require.NotEmpty(t, e["tick"])
		require.EqualValues(t, alicePerMinute, e["tasks_per_minute"])
	}
	require.Equal(t, tick(4).Format(time.RFC3339), limited[len(limited)-1]["tick"])

	// Bob: the paused ticks took nothing, nor does a tick claimed already.
	r = b.doAs(t, bobKey, http.MethodPost, "/schedules/report/resume", nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	start = time.Now()
	b.fireTick(t, "bob", "report", tick(11))
	b.fireTick(t, "bob", "report", tick(10)) // before the tick claimed: refused
	b.fireTick(t, "bob", "report", tick(12))
	b.fireTick(t, "bob", "report", tick(13))
	refilled = int(time.Since(start) / (time.Minute / bobPerMinute))
	bobs := b.doAs(t, bobKey, http.MethodGet, "/schedules/report", nil).schedule(t)
	require.GreaterOrEqual(t, len(bobs.LastTaskIDs), bobPerMinute, "bob's allowance was untouched by his paused and claimed ticks, and by alice's")
	require.LessOrEqual(t, len(bobs.LastTaskIDs), bobPerMinute+refilled)
	require.EqualValues(t, 3-len(bobs.LastTaskIDs), bobs.SkippedTicks)
	require.Len(t, b.logs.Events("schedule_tick_limited"), skipped+int(bobs.SkippedTicks))

	text := metricsOf(t, m)
	require.Contains(t, text, fmt.Sprintf(`taskrunner_tasks_enqueued_total{tenant="alice",type="echo"} %d`, fired))
	require.Contains(t, text, fmt.Sprintf(`taskrunner_tasks_enqueued_total{tenant="bob",type="echo"} %d`, len(bobs.LastTaskIDs)))
	rateLimited := skipped + int(bobs.SkippedTicks)
	if post.status == http.StatusTooManyRequests {
		rateLimited++
	}
	require.Contains(t, text, fmt.Sprintf("taskrunner_rate_limited_total %d", rateLimited))
}

// While the limiter's Redis is down, ticks fire, as requests go through:
// the log says so once, the metric counts each.
func TestScheduleTicksFireWhenTheLimiterIsDown(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	b := setup(t, setupOpts{work: true, perMinute: 1, redisURL: "redis://127.0.0.1:1/0", metrics: m})
	r := b.do(t, http.MethodPost, "/schedules", yearly("report"))
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	base := time.Now().Add(time.Hour).Truncate(time.Second)
	for i := range 3 {
		b.fireTick(t, "local", "report", base.Add(time.Duration(i)*time.Second))
	}
	s := b.do(t, http.MethodGet, "/schedules/report", nil).schedule(t)
	require.Len(t, s.LastTaskIDs, 3, "every tick fired")
	require.Zero(t, s.SkippedTicks)
	require.Nil(t, s.LastSkippedAt)
	require.Empty(t, b.logs.Events("schedule_tick_limited"))
	require.Len(t, b.logs.Events("rate_limiter_unavailable"), 1, "said once, not for every tick")
	text := metricsOf(t, m)
	require.Contains(t, text, "taskrunner_rate_limiter_unavailable_total 3")
	require.Contains(t, text, `taskrunner_tasks_enqueued_total{tenant="local",type="echo"} 3`)
}

// Ticks go to the internal queue; a tick queued in the default queue (by
// an earlier version, at an upgrade) is still worked there.
func TestScheduleTicksQueuedInDefaultAreWorked(t *testing.T) {
	t.Parallel()
	require.Equal(t, jobs.InternalQueue, jobs.ScheduleTickArgs{}.InsertOpts().Queue)
	b := setup(t, setupOpts{work: true})
	r := b.do(t, http.MethodPost, "/schedules", yearly("report"))
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	tick := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	res, err := b.client.Insert(context.Background(), jobs.ScheduleTickArgs{Owner: "local", Name: "report", Tick: tick},
		&river.InsertOpts{Queue: river.QueueDefault})
	require.NoError(t, err)
	require.Equal(t, river.QueueDefault, res.Job.Queue)
	require.Eventually(t, func() bool {
		return len(b.do(t, http.MethodGet, "/schedules/report", nil).schedule(t).LastTaskIDs) == 1
	}, 20*time.Second, 20*time.Millisecond, "the tick in the default queue fired")
}
