package db_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

// A tick is claimed once: last_tick_at only moves forward, and a paused,
// deleted, or not yet created schedule claims nothing; a second task of
// one tick is refused by the database itself.
func TestScheduleClaimTick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	sch, err := db.InsertSchedule(ctx, tdb.Pool, &taskrunner.Schedule{Owner: "alice", Name: "tick", Every: time.Second, Task: []byte(`{"type":"echo"}`)})
	require.NoError(t, err)
	require.Equal(t, taskrunner.MissedRunOnce, sch.Missed)
	require.Equal(t, "UTC", sch.TimeZone)
	_, err = db.InsertSchedule(ctx, tdb.Pool, &taskrunner.Schedule{Owner: "alice", Name: "tick", Every: time.Second, Task: []byte(`{}`)})
	require.ErrorIs(t, err, db.ErrExists)

	tick := sch.ActiveSince.Truncate(time.Second).Add(2 * time.Second)
	claimed, previous, err := db.ClaimScheduleTick(ctx, tdb.Pool, "alice", "tick", tick)
	require.NoError(t, err)
	require.Nil(t, previous)
	require.True(t, tick.Equal(*claimed.LastTickAt))
	for _, again := range []time.Time{tick, tick.Add(-time.Second), sch.ActiveSince.Add(-time.Second)} {
		_, _, err = db.ClaimScheduleTick(ctx, tdb.Pool, "alice", "tick", again)
		require.True(t, errors.Is(err, db.ErrNotFound), "tick %s claimed: %v", again, err)
	}
	_, previous, err = db.ClaimScheduleTick(ctx, tdb.Pool, "alice", "tick", tick.Add(time.Second))
	require.NoError(t, err)
	require.True(t, tick.Equal(*previous))
	_, _, err = db.ClaimScheduleTick(ctx, tdb.Pool, "bob", "tick", tick.Add(2*time.Second))
	require.ErrorIs(t, err, db.ErrNotFound, "another owner's schedule")

	// Paused, nothing; resumed, only ticks from the resume on.
	_, err = db.SetSchedulePaused(ctx, tdb.Pool, "alice", "tick", true)
	require.NoError(t, err)
	_, _, err = db.ClaimScheduleTick(ctx, tdb.Pool, "alice", "tick", tick.Add(2*time.Second))
	require.ErrorIs(t, err, db.ErrNotFound)
	resumed, err := db.SetSchedulePaused(ctx, tdb.Pool, "alice", "tick", false)
	require.NoError(t, err)
	require.True(t, resumed.ActiveSince.After(sch.ActiveSince))
	_, _, err = db.ClaimScheduleTick(ctx, tdb.Pool, "alice", "tick", resumed.ActiveSince.Add(-time.Millisecond))
	require.ErrorIs(t, err, db.ErrNotFound)
	_, _, err = db.ClaimScheduleTick(ctx, tdb.Pool, "alice", "tick", tick.Add(10*time.Second))
	require.NoError(t, err)

	// The database refuses a second task of one tick.
	insert := `INSERT INTO river_job (args, kind, max_attempts, queue, state, metadata)
		VALUES ('{}', 'echo', 1, 'default', 'available', '{"owner":"alice","schedule":"tick","schedule_tick":"2026-01-01T00:00:00Z"}')`
	_, err = tdb.Pool.Exec(ctx, insert)
	require.NoError(t, err)
	_, err = tdb.Pool.Exec(ctx, insert)
	require.ErrorContains(t, err, "taskrunner_river_job_schedule_tick_idx")
	ids, err := db.ScheduleTaskIDs(ctx, tdb.Pool, "alice", "tick", 5)
	require.NoError(t, err)
	require.Len(t, ids, 1)

	require.NoError(t, db.DeleteSchedule(ctx, tdb.Pool, "alice", "tick"))
	require.ErrorIs(t, db.DeleteSchedule(ctx, tdb.Pool, "alice", "tick"), db.ErrNotFound)
	_, _, err = db.ClaimScheduleTick(ctx, tdb.Pool, "alice", "tick", time.Now().Add(time.Hour))
	require.ErrorIs(t, err, db.ErrNotFound, "a deleted schedule")
}

// Skipped ticks add up, last_skipped_at keeps the latest, and counting
// them wakes no process that syncs the schedules.
func TestScheduleSkipTicks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	sch, err := db.InsertSchedule(ctx, tdb.Pool, &taskrunner.Schedule{Owner: "alice", Name: "tick", Every: time.Second, Task: []byte(`{"type":"echo"}`)})
	require.NoError(t, err)
	require.Zero(t, sch.SkippedTicks)
	require.Nil(t, sch.LastSkippedAt)

	conn, err := tdb.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "LISTEN taskrunner_schedules")
	require.NoError(t, err)

	tick := sch.ActiveSince.Truncate(time.Second).Add(5 * time.Second)
	require.NoError(t, db.SkipScheduleTicks(ctx, tdb.Pool, "alice", "tick", 2, tick))
	require.NoError(t, db.SkipScheduleTicks(ctx, tdb.Pool, "alice", "tick", 1, tick.Add(-time.Second)))
	got, err := db.GetSchedule(ctx, tdb.Pool, "alice", "tick")
	require.NoError(t, err)
	require.EqualValues(t, 3, got.SkippedTicks)
	require.True(t, tick.Equal(*got.LastSkippedAt), "the latest skipped tick: %s", got.LastSkippedAt)
	claimed, _, err := db.ClaimScheduleTick(ctx, tdb.Pool, "alice", "tick", tick.Add(time.Second))
	require.NoError(t, err)
	require.EqualValues(t, 3, claimed.SkippedTicks)

	waitCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = conn.Conn().WaitForNotification(waitCtx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a skip notified the schedules' listeners")
}
