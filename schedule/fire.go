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
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

// Firer enqueues the tasks of schedules' ticks: the tick job's worker
// (jobs.ScheduleFirer).
type Firer struct {
	pool   *pgxpool.Pool
	tasks  task.ServiceConfig
	logger *slog.Logger
}

// NewFirer returns a Firer inserting in pool through a task service made
// of tasks (its Client is the River client working the tick).
func NewFirer(pool *pgxpool.Pool, tasks task.ServiceConfig, logger *slog.Logger) *Firer {
	return &Firer{pool: pool, tasks: tasks, logger: cmp.Or(logger, slog.New(slog.DiscardHandler))}
}

// FireTick claims the tick, enqueues the schedule's task owned by the
// schedule's owner (and the tasks of the ticks a leader change skipped,
// handedOver), and completes the tick job, in one transaction. A tick
// that may not fire (the schedule is gone or paused, or this tick or a
// later one fired already) completes without a task. A schedule whose
// task no longer validates (the server's settings changed) uses its tick
// up without a task, and says so in the log.
func (f *Firer) FireTick(ctx context.Context, job *river.Job[jobs.ScheduleTickArgs]) error {
	cfg := f.tasks
	cfg.Client = river.ClientFromContext[pgx.Tx](ctx)
	tasks, err := task.NewService(cfg)
	if err != nil {
		return err
	}
	a := job.Args
	attrs := []slog.Attr{slog.String("tenant", a.Owner), slog.String("schedule", a.Name), slog.Time("tick", a.Tick)}
	return db.WithTx(ctx, f.pool, func(tx pgx.Tx) error {
		sch, previous, err := db.ClaimScheduleTick(ctx, tx, a.Owner, a.Name, a.Tick)
		switch {
		case errors.Is(err, db.ErrNotFound):
			f.logger.LogAttrs(ctx, slog.LevelDebug, "schedule tick not fired", append(attrs, slog.String("event", "schedule_tick_skipped"))...)
		case err != nil:
			return err
		default:
			for _, tick := range append(handedOver(sch, previous, a.Tick), a.Tick) {
				if err := f.enqueue(ctx, tx, tasks, sch, tick, attrs); err != nil {
					return err
				}
			}
		}
		_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
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

// enqueue inserts the task of sch's tick in tx.
func (f *Firer) enqueue(ctx context.Context, tx pgx.Tx, tasks *task.Service, sch *taskrunner.Schedule, tick time.Time, attrs []slog.Attr) error {
	var req task.Request
	if err := json.Unmarshal(sch.Task, &req); err != nil {
		return river.JobCancel(fmt.Errorf("schedule %s/%s: stored task: %w", sch.Owner, sch.Name, err))
	}
	p, err := tasks.Validate(&req)
	if err != nil {
		f.logger.LogAttrs(ctx, slog.LevelWarn, "schedule's task refused; tick dropped",
			append(attrs, slog.String("event", "schedule_tick_failed"), slog.String("error_code", taskrunner.ErrorCode(err)),
				slog.String("error", taskrunner.ErrorMessage(err)))...)
		return nil
	}
	var meta jobs.Metadata
	if err := json.Unmarshal(p.InsertOpts.Metadata, &meta); err != nil {
		return err
	}
	tick = tick.UTC()
	meta.Schedule, meta.ScheduleTick = sch.Name, &tick
	opts := *p.InsertOpts
	if opts.Metadata, err = json.Marshal(meta); err != nil {
		return err
	}
	p.InsertOpts = &opts
	t, err := tasks.InsertTx(taskrunner.WithTenant(ctx, taskrunner.Tenant{Name: sch.Owner}), tx, p)
	if err != nil {
		return err
	}
	f.logger.LogAttrs(ctx, slog.LevelInfo, "schedule fired", append(attrs[:2:2], slog.Time("tick", tick),
		slog.String("event", "schedule_fired"), slog.Int64("task_id", t.ID))...)
	return nil
}
