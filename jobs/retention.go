package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/tasktype"
)

// retentionBatch is how many rows retention deletes per statement.
const retentionBatch = 1000

// RetentionArgs is the periodic job that deletes runs, and artifacts with
// their objects, older than ARTIFACT_RETENTION, and objects left without a
// row (artifact.Service.RemoveOrphans). (River deletes finished
// jobs itself after TASK_RETENTION.) It is not a task type clients submit.
type RetentionArgs struct {
	// Retention is the age past which runs and artifacts go, in seconds.
	RetentionSeconds float64 `json:"retention_seconds"`
}

// Kind is the retention job's River kind.
func (RetentionArgs) Kind() string { return "taskrunner_retention" }

// RetentionWorker works retention jobs.
type RetentionWorker struct {
	river.WorkerDefaults[RetentionArgs]
	pool      *pgxpool.Pool
	artifacts *artifact.Service
}

// Work deletes what has outlived the retention, in batches.
func (w *RetentionWorker) Work(ctx context.Context, job *river.Job[RetentionArgs]) error {
	cutoff := time.Now().Add(-time.Duration(job.Args.RetentionSeconds * float64(time.Second)))
	var runs int64
	for {
		n, err := db.DeleteExpiredRuns(ctx, w.pool, cutoff, retentionBatch)
		if err != nil {
			return err
		}
		runs += n
		if n < retentionBatch {
			break
		}
	}
	tasktype.RecordMetric(ctx, "runs_deleted", float64(runs))
	callbacks, err := db.DeleteExpiredCallbackAttempts(ctx, w.pool, cutoff)
	if err != nil {
		return err
	}
	tasktype.RecordMetric(ctx, "callback_attempts_deleted", float64(callbacks))
	if w.artifacts != nil {
		n, err := w.artifacts.RemoveExpired(ctx, cutoff, retentionBatch)
		tasktype.RecordMetric(ctx, "artifacts_deleted", float64(n))
		if err != nil {
			return fmt.Errorf("artifact retention: %w", err)
		}
		orphans, err := w.artifacts.RemoveOrphans(ctx)
		tasktype.RecordMetric(ctx, "orphan_objects_deleted", float64(orphans))
		if err != nil {
			return fmt.Errorf("objects without a row: %w", err)
		}
	}
	return river.RecordOutput(ctx, map[string]any{"cutoff": cutoff, "runs_deleted": runs})
}

// retentionPeriodicJob enqueues a retention job every interval, and once
// when the leader starts.
func retentionPeriodicJob(retention, interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval), func() (river.JobArgs, *river.InsertOpts) {
		return RetentionArgs{RetentionSeconds: retention.Seconds()}, &river.InsertOpts{MaxAttempts: 3, Queue: InternalQueue}
	}, &river.PeriodicJobOpts{RunOnStart: true, ID: "taskrunner_retention"})
}
