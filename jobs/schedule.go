package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/riverqueue/river"
)

// ScheduleTickArgs is one tick of a schedule: the River leader's periodic
// job enqueuer inserts it when the schedule is due, and its worker enqueues
// the schedule's task (ScheduleFirer). It is not a task type clients
// submit. Unique by its args, so a tick inserted twice (by two leaders in
// turn) is one job while River keeps it.
type ScheduleTickArgs struct {
	Owner string    `json:"owner"`
	Name  string    `json:"name"`
	Tick  time.Time `json:"tick"`
}

// Kind is the tick job's River kind.
func (ScheduleTickArgs) Kind() string { return "taskrunner_schedule_tick" }

// ScheduleTickMaxAttempts bounds a tick job's attempts: a tick that cannot
// be enqueued within them is dropped.
const ScheduleTickMaxAttempts = 5

// ScheduleTickPriority is a tick job's River priority: after the internal
// queue's other jobs (retention, the run sweep, at River's first priority),
// so that a backlog of ticks, when the database falls behind them, never
// holds up the job that deletes the finished ones.
const ScheduleTickPriority = 2

// TenantTickConcurrency is how many of one tenant's ticks a working
// process fires at once, in the tenant's own tick queue
// (ScheduleTickQueueFor): a tick is one short transaction, and a tenant
// whose schedules tick faster than the database takes them builds a
// backlog in its own queue, not in front of another tenant's ticks.
const TenantTickConcurrency = 10

// ScheduleTickQueueFor is the River queue of the ticks of tenant's
// schedules: the tenant's own, beside the internal queue, so that one
// tenant's backlog of ticks never delays another's ticks, nor retention
// and the run sweep. Every working process serves the queues of the
// tenants it knows (API_KEYS); the ticks of an owner it does not know go
// to the internal queue (InsertOpts).
func ScheduleTickQueueFor(tenant string) string { return TenantQueue(InternalQueue, tenant) }

// InsertOpts makes ticks unique by their args (whichever queue they are
// in), in the internal queue, which every working process works, behind
// its maintenance jobs. The schedules' syncer puts the ticks of a tenant
// it knows in the tenant's own tick queue. (Ticks queued in the default
// queue by an earlier version are worked there.)
func (ScheduleTickArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: ScheduleTickMaxAttempts, Queue: InternalQueue, Priority: ScheduleTickPriority,
		UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// ScheduleFirer enqueues the task of a schedule's tick, and completes the
// tick job in the same transaction (river.JobCompleteTx), so a tick's task
// exists exactly when its job is completed.
type ScheduleFirer interface {
	FireTick(ctx context.Context, job *river.Job[ScheduleTickArgs]) error
}

// errNoScheduleFirer fails a tick in a process that cannot fire it; a
// retry may land in one that can.
var errNoScheduleFirer = errors.New("this process does not fire schedules")

// scheduleTickWorker works tick jobs.
type scheduleTickWorker struct {
	river.WorkerDefaults[ScheduleTickArgs]
	firer ScheduleFirer
}

// Work enqueues the tick's task through the firer.
func (w *scheduleTickWorker) Work(ctx context.Context, job *river.Job[ScheduleTickArgs]) error {
	if w.firer == nil {
		return errNoScheduleFirer
	}
	return w.firer.FireTick(ctx, job)
}
