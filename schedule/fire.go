package schedule

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/metrics"
	"github.com/taskrunner/taskrunner/task"
)

// FirerConfig is what a Firer works with.
type FirerConfig struct {
	// Pool is where ticks are claimed and tasks inserted.
	Pool *pgxpool.Pool
	// Tasks validates and inserts the ticks' tasks.
	Tasks *task.Service
	// Limiter holds each tick to its owner's enqueue limit, as POST /tasks
	// is held: a tick takes one task of the tenant's allowance
	// (Limits.TasksPerMinuteFor, under cache.TenantKey), the allowance
	// the API's requests take theirs from. nil: ticks are not limited.
	Limiter *cache.Limiter
	Limits  config.Limits
	// Metrics counts the tasks enqueued and the ticks limited; nil counts
	// nothing.
	Metrics *metrics.Metrics
	// Logger may be nil.
	Logger *slog.Logger
}

// Firer enqueues the tasks of schedules' ticks: the tick job's worker
// (jobs.ScheduleFirer).
type Firer struct {
	cfg         FirerConfig
	logger      *slog.Logger
	limiterDown *cache.FailOpen
}

// NewFirer returns a Firer of cfg.
func NewFirer(cfg FirerConfig) *Firer {
	cfg.Limits.TasksPerMinute = cmp.Or(cfg.Limits.TasksPerMinute, config.DefaultTasksPerMinute)
	logger := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return &Firer{cfg: cfg, logger: logger,
		limiterDown: cache.NewFailOpen(logger, cfg.Metrics, "rate limiter unavailable; firing schedule ticks unlimited")}
}

// FireTick claims the tick, enqueues the schedule's task owned by the
// schedule's owner (and the tasks of the ticks a leader change skipped,
// handedOver), and completes the tick job, in one transaction. A tick
// that may not fire (the schedule is gone or paused, or this tick or a
// later one fired already) completes without a task and takes nothing of
// the owner's enqueue limit. A tick claimed once the owner's limit is used
// up is skipped: claimed without a task, counted in the schedule's
// skipped ticks, not retried. A schedule whose task no longer validates
// (the server's settings changed) uses its tick up without a task, and
// says so in the log.
func (f *Firer) FireTick(ctx context.Context, job *river.Job[jobs.ScheduleTickArgs]) error {
	tasks := f.cfg.Tasks
	a := job.Args
	attrs := []slog.Attr{slog.String("tenant", a.Owner), slog.String("schedule", a.Name), slog.Time("tick", a.Tick)}
	var fired []*taskrunner.Task
	var limited int
	err := db.WithTx(ctx, f.cfg.Pool, func(tx pgx.Tx) error {
		fired, limited = nil, 0
		sch, previous, err := db.ClaimScheduleTick(ctx, tx, a.Owner, a.Name, a.Tick)
		switch {
		case errors.Is(err, db.ErrNotFound):
			f.logger.LogAttrs(ctx, slog.LevelDebug, "schedule tick not fired", append(attrs, slog.String("event", "schedule_tick_skipped"))...)
		case err != nil:
			return err
		default:
			var lastLimited time.Time
			for _, tick := range append(handedOver(sch, previous, a.Tick), a.Tick) {
				t, skipped, err := f.enqueue(ctx, tx, tasks, sch, tick, attrs)
				switch {
				case err != nil:
					return err
				case skipped:
					limited, lastLimited = limited+1, tick
				case t != nil:
					fired = append(fired, t)
				}
			}
			if limited > 0 {
				if err := db.SkipScheduleTicks(ctx, tx, sch.Owner, sch.Name, limited, lastLimited); err != nil {
					return err
				}
			}
		}
		_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	if err != nil {
		return err
	}
	for _, t := range fired {
		f.cfg.Metrics.TaskEnqueued(t.Type, a.Owner)
	}
	for range limited {
		f.cfg.Metrics.RateLimited()
	}
	return nil
}

// handedOver are the ticks of sch after previous and before tick when they
// are at most Grace before it: ticks passed while the River leader
// changed, which fire late but all fire. After a longer gap (no leader
// ran), only tick fires: the missed policy's one tick, or none.
func handedOver(sch *taskrunner.Schedule, previous *time.Time, tick time.Time) []time.Time {
	if previous == nil || tick.Sub(*previous) > Grace {
		return nil
	}
	timing, err := TimingOf(sch)
	if err != nil {
		return nil
	}
	var out []time.Time
	for t := timing.Next(*previous); !t.IsZero() && t.Before(tick); t = timing.Next(t) {
		if !t.Before(sch.ActiveSince) {
			out = append(out, t)
		}
	}
	return out
}

// enqueue inserts the task of sch's tick in tx, once the task validates
// and the owner's enqueue limit admits it; skipped when the limit is used
// up. A task validation refuses is neither: no task, and nothing of the
// limit taken.
func (f *Firer) enqueue(ctx context.Context, tx pgx.Tx, tasks *task.Service, sch *taskrunner.Schedule, tick time.Time,
	attrs []slog.Attr) (_ *taskrunner.Task, skipped bool, _ error) {
	var req task.Request
	if err := json.Unmarshal(sch.Task, &req); err != nil {
		return nil, false, river.JobCancel(fmt.Errorf("schedule %s/%s: stored task: %w", sch.Owner, sch.Name, err))
	}
	tick = tick.UTC()
	attrs = append(attrs[:2:2], slog.Time("tick", tick))
	p, err := tasks.Validate(&req)
	if err != nil {
		f.logger.LogAttrs(ctx, slog.LevelWarn, "schedule's task refused; tick dropped",
			append(attrs, slog.String("event", "schedule_tick_failed"), slog.String("error_code", string(taskrunner.ErrorCode(err))),
				slog.String("error", taskrunner.ErrorMessage(err)))...)
		return nil, false, nil
	}
	if p, err = p.ForSchedule(sch.Owner, sch.Name, tick); err != nil {
		return nil, false, err
	}
	if perMinute, admitted := f.admit(ctx, sch.Owner); !admitted {
		f.logger.LogAttrs(ctx, slog.LevelInfo, "schedule tick skipped: the owner's enqueue limit is used up",
			append(attrs, slog.String("event", "schedule_tick_limited"), slog.Int("tasks_per_minute", perMinute))...)
		return nil, true, nil
	}
	t, err := tasks.InsertTx(taskrunner.WithTenant(ctx, taskrunner.Tenant{Name: sch.Owner}), tx, p)
	if err != nil {
		return nil, false, err
	}
	f.logger.LogAttrs(ctx, slog.LevelInfo, "schedule fired", append(attrs, slog.String("event", "schedule_fired"), slog.Int64("task_id", t.ID))...)
	return t, false, nil
}

// admit takes one task from owner's enqueue allowance, as POST /tasks
// takes one from the tenant's, and reports whether it was granted, with
// owner's tasks per minute. While the limiter's Redis is unavailable the
// tick fires, as requests go through then, and the log and metric say so.
// The allowance taken stays taken if the transaction then fails.
func (f *Firer) admit(ctx context.Context, owner string) (perMinute int, ok bool) {
	perMinute = f.cfg.Limits.TasksPerMinuteFor(owner)
	if f.cfg.Limiter == nil {
		return perMinute, true
	}
	d, err := f.cfg.Limiter.Allow(ctx, cache.TenantKey(owner), perMinute, 1)
	if err != nil {
		f.limiterDown.LetThrough(ctx, err)
		return perMinute, true
	}
	return perMinute, d.Allowed
}
