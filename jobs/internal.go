package jobs

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/tasktype"
)

// InternalQueue is the River queue of taskrunner's own jobs (schedule
// ticks, retention, the run sweep): every working process works it, with
// workers of its own, so tasks in the other queues never delay them and
// they never delay tasks. It is not a queue tasks may name.
const InternalQueue = "taskrunner_internal"

// IsInternal reports whether kind is one of taskrunner's own jobs:
// schedule ticks, callback deliveries, retention, the run sweep. They are
// never a tenant's: no task view, list or bulk action shows them, and a
// run is recorded for one only when an attempt fails.
func IsInternal(kind string) bool { return strings.HasPrefix(kind, tasktype.ReservedPrefix) }

// Bounds of the internal job retention.
const (
	// DefaultInternalRetention is how long finished internal jobs stay
	// (INTERNAL_JOB_RETENTION).
	DefaultInternalRetention = time.Hour
	// maxInternalRetentionInterval is how often finished internal jobs
	// past the retention are deleted at most; a retention shorter than it
	// is checked as often as it is long.
	maxInternalRetentionInterval = time.Minute
	// internalRetentionBatch is how many rows one statement deletes, and
	// internalRetentionMaxBatches how many statements one pass runs at
	// most (1,000,000 rows a minute: far more than 1000 ticks a second).
	internalRetentionBatch      = 5000
	internalRetentionMaxBatches = 200
)

// InternalRetentionArgs is the periodic job that deletes taskrunner's own
// jobs (IsInternal) finished more than RetentionSeconds ago, in bounded
// batches. River's own cleaner keeps every job TASK_RETENTION; a tenant's
// schedules tick up to its tasks_per_minute, and each tick is a job, so
// those would otherwise pile up for days. It is not a task type clients
// submit.
type InternalRetentionArgs struct {
	RetentionSeconds float64 `json:"retention_seconds"`
}

// Kind is the internal retention job's River kind.
func (InternalRetentionArgs) Kind() string { return "taskrunner_internal_retention" }

// InternalRetentionWorker works internal retention jobs.
type InternalRetentionWorker struct {
	river.WorkerDefaults[InternalRetentionArgs]
	pool *pgxpool.Pool
}

// Work deletes finished internal jobs past the retention, batch by batch,
// up to internalRetentionMaxBatches; the next pass goes on.
func (w *InternalRetentionWorker) Work(ctx context.Context, job *river.Job[InternalRetentionArgs]) error {
	retention := time.Duration(job.Args.RetentionSeconds * float64(time.Second))
	deleted, err := DeleteFinishedInternalJobs(ctx, w.pool, retention, internalRetentionBatch, internalRetentionMaxBatches)
	tasktype.RecordMetric(ctx, "internal_jobs_deleted", float64(deleted))
	if err != nil {
		return err
	}
	return river.RecordOutput(ctx, map[string]any{"internal_jobs_deleted": deleted})
}

// DeleteFinishedInternalJobs deletes internal jobs (IsInternal) that
// finished (completed, cancelled or discarded) more than retention ago, by
// the database's clock, batch rows per statement and at most maxBatches
// statements, and returns how many it deleted.
func DeleteFinishedInternalJobs(ctx context.Context, pool *pgxpool.Pool, retention time.Duration, batch, maxBatches int) (int64, error) {
	var deleted int64
	for range maxBatches {
		n, err := db.DeleteFinishedInternalJobs(ctx, pool, retention, batch)
		deleted += n
		if err != nil || n < int64(batch) {
			return deleted, err
		}
	}
	return deleted, nil
}

// internalRetentionPeriodicJob enqueues an internal retention job every
// minute, or every retention when that is shorter, and once when the
// leader starts.
func internalRetentionPeriodicJob(retention time.Duration) *river.PeriodicJob {
	interval := min(retention, maxInternalRetentionInterval)
	return river.NewPeriodicJob(river.PeriodicInterval(interval), func() (river.JobArgs, *river.InsertOpts) {
		return InternalRetentionArgs{RetentionSeconds: retention.Seconds()}, &river.InsertOpts{MaxAttempts: 3, Queue: InternalQueue}
	}, &river.PeriodicJobOpts{RunOnStart: true, ID: "taskrunner_internal_retention"})
}
