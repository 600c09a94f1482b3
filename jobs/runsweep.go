package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Defaults of the run sweep.
const (
	// DefaultRunSweepInterval is how often finalized tasks are checked for
	// attempts without a row (RUN_SWEEP_INTERVAL).
	DefaultRunSweepInterval = time.Minute
	// runSweepWindow is how far back a sweep looks at most: tasks
	// finalized earlier were swept long ago. A sweep goes on from where the
	// last one stopped (its output's swept_through), less runSweepLag: a
	// task's finalized_at is taken before its transaction commits, so a
	// task finalized just before a sweep began may become visible after it.
	runSweepWindow = 24 * time.Hour
	runSweepLag    = 5 * time.Minute
	// runSweepBatch is how many tasks a sweep fills in per statement, and
	// runSweepMaxBatches how many statements a pass runs at most; the next
	// pass goes on where it stopped (what it filled in no longer matches).
	runSweepBatch      = 500
	runSweepMaxBatches = 20
)

// RunSweepArgs is the periodic job that records as abandoned the attempts
// of finalized tasks that no worker recorded: River's rescuer discarded a
// task whose last attempt's worker died, or a task was finalized without
// its attempt ending (an operator's SQL), or it was left interrupted. The
// run recorder fills in earlier attempts when a later one ends; this is
// for a task's last. It is not a task type clients submit.
type RunSweepArgs struct{}

// Kind is the run sweep's River kind.
func (RunSweepArgs) Kind() string { return "taskrunner_run_sweep" }

// RunSweepWorker works run sweep jobs.
type RunSweepWorker struct {
	river.WorkerDefaults[RunSweepArgs]
	pool  *pgxpool.Pool
	types *tasktype.Registry // the runs' keys
}

// Work fills in a bounded number of tasks' missing attempts, going on
// from where the last sweep stopped.
func (w *RunSweepWorker) Work(ctx context.Context, _ *river.Job[RunSweepArgs]) error {
	now, err := db.Now(ctx, w.pool)
	if err != nil {
		return err
	}
	since := now.Add(-runSweepWindow)
	if mark, ok, err := db.RunSweepMark(ctx, w.pool, RunSweepArgs{}.Kind()); err != nil {
		return err
	} else if ok && mark.Add(-runSweepLag).After(since) {
		since = mark.Add(-runSweepLag)
	}
	sw, err := SweepUnrecordedRuns(ctx, w.pool, w.types, since, runSweepBatch, runSweepMaxBatches)
	tasktype.RecordMetric(ctx, "tasks_swept", float64(sw.Tasks))
	if err != nil {
		return err
	}
	through := now
	if sw.More {
		through = sw.Through
	}
	return river.RecordOutput(ctx, map[string]any{"tasks_swept": sw.Tasks, "since": since, "swept_through": through})
}

// RunSweep is what SweepUnrecordedRuns did.
type RunSweep struct {
	// Tasks is how many tasks it filled in.
	Tasks int
	// More is set when it stopped at its bound: tasks finalized after
	// Through may be left.
	More    bool
	Through time.Time
}

// SweepUnrecordedRuns records as abandoned the attempts without a row of
// up to batch*maxBatches tasks finalized after since, batch by batch in
// the order they were finalized, with each run's key and task type as the
// run recorder computes them.
func SweepUnrecordedRuns(ctx context.Context, pool *pgxpool.Pool, types *tasktype.Registry, since time.Time, batch, maxBatches int) (RunSweep, error) {
	var sw RunSweep
	afterAt, afterID := since, int64(0)
	for range maxBatches {
		tasks, err := db.UnrecordedFinalized(ctx, pool, since, afterAt, afterID, batch)
		if err != nil {
			return sw, err
		}
		if len(tasks) == 0 {
			return RunSweep{Tasks: sw.Tasks}, nil
		}
		fill := make([]db.Abandoned, len(tasks))
		for i, t := range tasks {
			fill[i] = db.Abandoned{TaskID: t.TaskID, Through: t.Attempt, Key: types.KeyOf(t.Kind, t.Args), TaskType: t.Kind}
		}
		if err := db.RecordAbandoned(ctx, pool, fill); err != nil {
			return sw, err
		}
		sw.Tasks += len(tasks)
		last := tasks[len(tasks)-1]
		afterAt, afterID = last.FinalizedAt, last.TaskID
		sw.More, sw.Through = len(tasks) == batch, last.FinalizedAt
		if !sw.More {
			return RunSweep{Tasks: sw.Tasks}, nil
		}
	}
	return sw, nil
}

// runSweepPeriodicJob enqueues a run sweep every interval, and once when
// the leader starts.
func runSweepPeriodicJob(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval), func() (river.JobArgs, *river.InsertOpts) {
		return RunSweepArgs{}, &river.InsertOpts{MaxAttempts: 3, Queue: InternalQueue}
	}, &river.PeriodicJobOpts{RunOnStart: true, ID: "taskrunner_run_sweep"})
}
