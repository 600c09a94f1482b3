package schedule

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/jobs"
)

func mustTiming(t *testing.T, cron, every, tz string) Timing {
	t.Helper()
	timing, err := ParseTiming(cron, every, tz)
	require.NoError(t, err)
	return timing
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestIntervalTicksAreMultiplesSinceTheEpoch(t *testing.T) {
	t.Parallel()
	every := mustTiming(t, "", "7s", "")
	at := time.Unix(1000, 500_000_000) // 1000 = 142*7 + 6
	require.Equal(t, time.Unix(994, 0).UTC(), every.Prev(at))
	require.Equal(t, time.Unix(1001, 0).UTC(), every.Next(at))
	// A tick is its own Prev, and Next is strictly after.
	require.Equal(t, time.Unix(1001, 0).UTC(), every.Prev(time.Unix(1001, 0)))
	require.Equal(t, time.Unix(1008, 0).UTC(), every.Next(time.Unix(1001, 0)))
	require.Equal(t, []time.Time{time.Unix(1001, 0).UTC(), time.Unix(1008, 0).UTC()}, every.NextN(at, 2))
}

func TestCronTicks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, cron, tz, at, prev, next string
	}{
		{"every five minutes", "*/5 * * * *", "", "2026-11-30T10:07:30Z", "2026-11-30T10:05:00Z", "2026-11-30T10:10:00Z"},
		{"on a tick", "*/5 * * * *", "", "2026-11-30T10:05:00Z", "2026-11-30T10:05:00Z", "2026-11-30T10:10:00Z"},
		{"weekly", "0 9 * * 1", "", "2026-11-30T08:00:00Z", "2026-11-23T09:00:00Z", "2026-11-30T09:00:00Z"},
		{"yearly", "0 0 1 1 *", "", "2026-11-30T08:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		// 02:30 in Paris: 01:30 UTC in winter, 00:30 UTC in summer.
		{"time zone, winter", "30 2 * * *", "Europe/Paris", "2026-11-30T12:00:00Z", "2026-11-30T01:30:00Z", "2026-12-01T01:30:00Z"},
		{"time zone, summer", "30 2 * * *", "Europe/Paris", "2026-07-01T12:00:00Z", "2026-07-01T00:30:00Z", "2026-07-02T00:30:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			timing := mustTiming(t, tc.cron, "", tc.tz)
			require.True(t, utc(tc.prev).Equal(timing.Prev(utc(tc.at))), "prev: %s", timing.Prev(utc(tc.at)))
			require.True(t, utc(tc.next).Equal(timing.Next(utc(tc.at))), "next: %s", timing.Next(utc(tc.at)))
		})
	}
}

// construct, River's periodic job constructor, fires the tick due; on a
// start (a leader starting, the schedule just added) the latest tick due,
// which the tick job may find claimed; a late tick as the latest due; and
// under skip, nothing more than Grace late.
func TestPeriodicConstruct(t *testing.T) {
	t.Parallel()
	tickOf := func(t *testing.T, p *periodicSchedule) time.Time {
		t.Helper()
		args, _ := p.construct()
		require.NotNil(t, args)
		return args.(jobs.ScheduleTickArgs).Tick
	}
	now := time.Now()

	// An interval longer than any test run: its latest tick is long past.
	long := mustTiming(t, "", MaxEvery.String(), "")
	p := &periodicSchedule{timing: long, owner: "o", name: "n", missed: taskrunner.MissedRunOnce}
	next := p.Next(now) // a start
	require.Equal(t, long.Next(now), next)
	require.True(t, long.Prev(now).Equal(tickOf(t, p)), "a start fires the latest tick due")

	skip := &periodicSchedule{timing: long, owner: "o", name: "n", missed: taskrunner.MissedSkip}
	skip.Next(now)
	args, _ := skip.construct()
	require.Nil(t, args, "skip fired a tick missed long ago")

	// The regular path: the enqueuer calls construct when the tick it got
	// from Next is due, then Next with that tick.
	sec := mustTiming(t, "", "1s", "")
	p = &periodicSchedule{timing: sec, owner: "o", name: "n", missed: taskrunner.MissedSkip}
	p.Next(time.Now())
	tickOf(t, p) // the start's
	due := p.Next(p.due)
	require.False(t, p.restarted)
	time.Sleep(time.Until(due))
	require.True(t, due.Equal(tickOf(t, p)), "the tick due fires")

	// Late by more than Grace: the latest tick due, not the stale one.
	p.mu.Lock()
	p.due = time.Now().Add(-time.Minute).Truncate(time.Second)
	p.mu.Unlock()
	got := tickOf(t, p)
	require.WithinDuration(t, time.Now(), got, 1100*time.Millisecond)
}

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "nightly-report", "A.b_c-9", "0"} {
		require.True(t, ValidName(ok), ok)
	}
	for _, bad := range []string{"", "-a", ".a", "a b", "a/b", "é", string(make([]byte, MaxNameLength+1))} {
		require.False(t, ValidName(bad), bad)
	}
}

// The ticks a leader change skipped fire late, all of them, when the gap
// is at most Grace; after a longer one only the tick claimed fires.
func TestHandedOver(t *testing.T) {
	t.Parallel()
	sch := &taskrunner.Schedule{Every: time.Second, ActiveSince: utc("2026-11-30T10:00:00Z")}
	at := func(s string) *time.Time { v := utc("2026-11-30T10:00:" + s + "Z"); return &v }
	require.Equal(t, []time.Time{*at("11"), *at("12"), *at("13")}, handedOver(sch, at("10"), *at("14")))
	require.Empty(t, handedOver(sch, at("13"), *at("14")), "the next tick")
	require.Empty(t, handedOver(sch, at("10"), *at("25")), "a gap longer than Grace")
	require.Empty(t, handedOver(sch, nil, *at("14")), "the first tick")
	// Never before the schedule was created or resumed.
	sch.ActiveSince = *at("12")
	require.Equal(t, []time.Time{*at("12"), *at("13")}, handedOver(sch, at("10"), *at("14")))
}
