package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner/db"
)

// Defaults of the run sweep.
const (
	// DefaultRunSweepInterval is how often finalized tasks are checked for
	// attempts without a row (RUN_SWEEP_INTERVAL).
	DefaultRunSweepInterval = time.Minute
	// runSweepWindow is how far back a sweep looks: tasks finalized
	// earlier were swept long ago.
	runSweepWindow = 24 * time.Hour
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
	pool *pgxpool.Pool
}

// Work fills in a bounded number of tasks' missing attempts.
func (w *RunSweepWorker) Work(ctx context.Context, _ *river.Job[RunSweepArgs]) error {
	n, err := SweepUnrecordedRuns(ctx, w.pool, time.Now().Add(-runSweepWindow), runSweepBatch, runSweepMaxBatches)
	RecordMetric(ctx, "tasks_swept", float64(n))
	if err != nil {
		return err
	}
	return river.RecordOutput(ctx, map[string]any{"tasks_swept": n})
}

// SweepUnrecordedRuns records as abandoned the attempts without a row of
// up to batch*maxBatches tasks finalized after since, batch by batch in
// the order they were finalized, with each run's key and task type as the
// run recorder computes them. It returns how many tasks it filled in.
func SweepUnrecordedRuns(ctx context.Context, pool *pgxpool.Pool, since time.Time, batch, maxBatches int) (int, error) {
	var total int
	afterAt, afterID := since, int64(0)
	for range maxBatches {
		tasks, err := db.UnrecordedFinalized(ctx, pool, since, afterAt, afterID, batch)
		if err != nil {
			return total, err
		}
		if len(tasks) == 0 {
			return total, nil
		}
		fill := make([]db.Abandoned, len(tasks))
		for i, t := range tasks {
			fill[i] = db.Abandoned{TaskID: t.TaskID, Through: t.Attempt, Key: KeyOf(t.Kind, t.Args), TaskType: t.Kind}
		}
		if err := db.RecordAbandoned(ctx, pool, fill); err != nil {
			return total, err
		}
		total += len(tasks)
		last := tasks[len(tasks)-1]
		afterAt, afterID = last.FinalizedAt, last.TaskID
		if len(tasks) < batch {
			return total, nil
		}
	}
	return total, nil
}

// runSweepPeriodicJob enqueues a run sweep every interval, and once when
// the leader starts.
func runSweepPeriodicJob(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval), func() (river.JobArgs, *river.InsertOpts) {
		return RunSweepArgs{}, &river.InsertOpts{MaxAttempts: 3}
	}, &river.PeriodicJobOpts{RunOnStart: true, ID: "taskrunner_run_sweep"})
}
