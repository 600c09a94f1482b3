package taskrunner

import (
	"encoding/json"
	"time"
)

// What a schedule does with a tick missed while no leader ran (every
// process was down, or none was leader): Schedule.Missed.
const (
	// MissedRunOnce fires the latest missed tick once, when a leader
	// comes back; earlier missed ticks are dropped. The default.
	MissedRunOnce = "run_once"
	// MissedSkip drops missed ticks: the schedule goes on with its next
	// tick.
	MissedSkip = "skip"
)

// Schedule enqueues a task at each tick of a cron expression or of a fixed
// interval. Its owner is the tenant that created it; its name is unique
// among its owner's schedules.
type Schedule struct {
	Owner string
	Name  string
	// Cron is a five-field cron expression in TimeZone; "" for a schedule
	// that ticks Every.
	Cron string
	// Every is the interval of a schedule without Cron: its ticks are the
	// multiples of Every since the Unix epoch.
	Every    time.Duration
	TimeZone string // an IANA name; UTC by default
	// Task is the task request enqueued at each tick, as POST /tasks takes
	// it.
	Task   json.RawMessage
	Missed string // MissedRunOnce or MissedSkip
	Paused bool
	// ActiveSince is when the schedule was created or last resumed: no
	// earlier tick is fired.
	ActiveSince time.Time
	// LastTickAt is the latest tick claimed: it enqueued a task, or was
	// skipped; nil before the first.
	LastTickAt *time.Time
	CreatedAt  time.Time
	// SkippedTicks counts the ticks that enqueued no task because the
	// owner's enqueue limit (its tasks per minute) was used up;
	// LastSkippedAt is the latest of them, nil before the first.
	SkippedTicks  int64
	LastSkippedAt *time.Time
}
