package db

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

// ErrExists is returned when a row with the same key exists already.
var ErrExists = errors.New("already exists")

// schedulesChannel is where the taskrunner_schedules_changed trigger
// announces changes to the schedules (migration 00008).
const schedulesChannel = "taskrunner_schedules"

func scheduleFromRow(r dbsqlc.Schedule) taskrunner.Schedule {
	s := taskrunner.Schedule{
		Owner: r.Owner, Name: r.Name, TimeZone: r.TimeZone, Task: r.Task, Missed: r.Missed, Paused: r.Paused,
		ActiveSince: r.ActiveSince, LastTickAt: r.LastTickAt, CreatedAt: r.CreatedAt,
		SkippedTicks: r.SkippedTicks, LastSkippedAt: r.LastSkippedAt,
	}
	if r.Cron != nil {
		s.Cron = *r.Cron
	}
	if r.EverySeconds != nil {
		s.Every = time.Duration(*r.EverySeconds) * time.Second
	}
	return s
}

func schedulesFromRows(rows []dbsqlc.Schedule) []taskrunner.Schedule {
	out := make([]taskrunner.Schedule, len(rows))
	for i, r := range rows {
		out[i] = scheduleFromRow(r)
	}
	return out
}

// InsertSchedule stores a new schedule (its Owner, Name, Cron or Every,
// TimeZone, Task and Missed) and returns it as stored; ErrExists when its
// owner has one of that name.
func InsertSchedule(ctx context.Context, ex Executor, s *taskrunner.Schedule) (*taskrunner.Schedule, error) {
	p := dbsqlc.ScheduleInsertParams{Owner: s.Owner, Name: s.Name, TimeZone: cmp.Or(s.TimeZone, "UTC"), Task: s.Task,
		Missed: cmp.Or(s.Missed, taskrunner.MissedRunOnce)}
	if s.Cron != "" {
		p.Cron = &s.Cron
	} else {
		secs := int64(s.Every / time.Second)
		p.EverySeconds = &secs
	}
	row, err := queries.ScheduleInsert(ctx, ex, p)
	if err != nil {
		if errors.Is(interpret(err), ErrNotFound) {
			return nil, ErrExists
		}
		return nil, fmt.Errorf("insert schedule %s/%s: %w", s.Owner, s.Name, err)
	}
	out := scheduleFromRow(row)
	return &out, nil
}

// LockOwnerSchedules holds owner's schedules still until tx ends: every
// create and resume takes it before it counts the owner's schedules and
// sums their ticks, so that parallel ones are counted one after another.
func LockOwnerSchedules(ctx context.Context, tx pgx.Tx, owner string) error {
	if err := queries.ScheduleLockOwner(ctx, tx, owner); err != nil {
		return fmt.Errorf("lock schedules of %s: %w", owner, err)
	}
	return nil
}

// OwnerScheduleTimings returns every schedule of owner, paused or not,
// with its timing and whether it is paused, but without its task.
func OwnerScheduleTimings(ctx context.Context, ex Executor, owner string) ([]taskrunner.Schedule, error) {
	rows, err := queries.ScheduleOwnerTimings(ctx, ex, owner)
	if err != nil {
		return nil, fmt.Errorf("schedules of %s: %w", owner, err)
	}
	out := make([]taskrunner.Schedule, len(rows))
	for i, r := range rows {
		out[i] = scheduleFromRow(dbsqlc.Schedule{Owner: owner, Name: r.Name, Cron: r.Cron, EverySeconds: r.EverySeconds,
			TimeZone: r.TimeZone, Paused: r.Paused})
	}
	return out, nil
}

// GetSchedule returns owner's schedule name, or ErrNotFound.
func GetSchedule(ctx context.Context, ex Executor, owner, name string) (*taskrunner.Schedule, error) {
	row, err := queries.ScheduleGet(ctx, ex, dbsqlc.ScheduleGetParams{Owner: owner, Name: name})
	if err != nil {
		return nil, fmt.Errorf("get schedule %s/%s: %w", owner, name, interpret(err))
	}
	s := scheduleFromRow(row)
	return &s, nil
}

// ScheduleFilter selects schedules for ListSchedules: those of Owner (every
// owner's when empty) after the schedule AfterOwner/AfterName, at most
// Limit.
type ScheduleFilter struct {
	Owner      string
	AfterOwner string
	AfterName  string
	Limit      int
}

// ListSchedules returns schedules by owner and name.
func ListSchedules(ctx context.Context, ex Executor, f ScheduleFilter) ([]taskrunner.Schedule, error) {
	rows, err := queries.ScheduleList(ctx, ex, dbsqlc.ScheduleListParams{Owner: f.Owner, AfterOwner: f.AfterOwner, AfterName: f.AfterName, MaxRows: int32(f.Limit)})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return schedulesFromRows(rows), nil
}

// ActiveScheduleTimings returns every schedule that is not paused, with
// what its ticks are made from (owner, name, cron or every, time zone,
// missed policy, active since) and nothing else: no task.
func ActiveScheduleTimings(ctx context.Context, ex Executor) ([]taskrunner.Schedule, error) {
	rows, err := queries.ScheduleActiveTimings(ctx, ex)
	if err != nil {
		return nil, fmt.Errorf("active schedules: %w", err)
	}
	out := make([]taskrunner.Schedule, len(rows))
	for i, r := range rows {
		out[i] = scheduleFromRow(dbsqlc.Schedule{Owner: r.Owner, Name: r.Name, Cron: r.Cron, EverySeconds: r.EverySeconds,
			TimeZone: r.TimeZone, Missed: r.Missed, ActiveSince: r.ActiveSince})
	}
	return out, nil
}

// SetSchedulePaused pauses or resumes owner's schedule name and returns
// it; ErrNotFound when there is none.
func SetSchedulePaused(ctx context.Context, ex Executor, owner, name string, paused bool) (*taskrunner.Schedule, error) {
	row, err := queries.ScheduleSetPaused(ctx, ex, dbsqlc.ScheduleSetPausedParams{Owner: owner, Name: name, Paused: paused})
	if err != nil {
		return nil, fmt.Errorf("pause schedule %s/%s: %w", owner, name, interpret(err))
	}
	s := scheduleFromRow(row)
	return &s, nil
}

// DeleteSchedule deletes owner's schedule name; ErrNotFound when there is
// none.
func DeleteSchedule(ctx context.Context, ex Executor, owner, name string) error {
	n, err := queries.ScheduleDelete(ctx, ex, dbsqlc.ScheduleDeleteParams{Owner: owner, Name: name})
	if err != nil {
		return fmt.Errorf("delete schedule %s/%s: %w", owner, name, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// ClaimScheduleTick claims tick of owner's schedule name for its task,
// moving its last tick there, and returns the schedule with the tick
// claimed before (nil before the first); ErrNotFound when the tick may not
// fire: the schedule is gone or paused, the tick comes before it was
// created or resumed, or this tick or a later one was claimed already.
// Call it in the transaction that inserts the task.
func ClaimScheduleTick(ctx context.Context, ex Executor, owner, name string, tick time.Time) (sch *taskrunner.Schedule, previous *time.Time, err error) {
	r, err := queries.ScheduleClaimTick(ctx, ex, dbsqlc.ScheduleClaimTickParams{Owner: owner, Name: name, Tick: tick})
	if err != nil {
		return nil, nil, fmt.Errorf("claim tick %s of schedule %s/%s: %w", tick.Format(time.RFC3339Nano), owner, name, interpret(err))
	}
	s := scheduleFromRow(dbsqlc.Schedule{Owner: r.Owner, Name: r.Name, Cron: r.Cron, EverySeconds: r.EverySeconds, TimeZone: r.TimeZone,
		Task: r.Task, Missed: r.Missed, Paused: r.Paused, ActiveSince: r.ActiveSince, LastTickAt: r.LastTickAt, CreatedAt: r.CreatedAt,
		SkippedTicks: r.SkippedTicks, LastSkippedAt: r.LastSkippedAt})
	return &s, r.PreviousTickAt, nil
}

// SkipScheduleTicks counts n ticks of owner's schedule name, the latest
// last, as skipped: claimed, but refused by the owner's enqueue limit.
// Call it in the transaction that claimed them.
func SkipScheduleTicks(ctx context.Context, ex Executor, owner, name string, n int, last time.Time) error {
	err := queries.ScheduleSkipTicks(ctx, ex, dbsqlc.ScheduleSkipTicksParams{Owner: owner, Name: name, Skipped: int64(n), LastSkipped: last})
	if err != nil {
		return fmt.Errorf("count skipped ticks of schedule %s/%s: %w", owner, name, err)
	}
	return nil
}

// ScheduleTaskIDs returns the ids of the newest tasks (at most limit) of
// owner's schedule name, newest first.
func ScheduleTaskIDs(ctx context.Context, ex Executor, owner, name string, limit int) ([]int64, error) {
	ids, err := queries.ScheduleTaskIDs(ctx, ex, dbsqlc.ScheduleTaskIDsParams{Owner: owner, Name: name, MaxRows: int32(limit)})
	if err != nil {
		return nil, fmt.Errorf("tasks of schedule %s/%s: %w", owner, name, err)
	}
	return ids, nil
}
