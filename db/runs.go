package db

import (
	"context"
	"fmt"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

// Run statuses. A run is one attempt of a task.
const (
	RunRunning     = "running"
	RunCompleted   = "completed"
	RunFailed      = "failed"
	RunKilled      = "killed"      // ended by its timeout: task_runtime_exceeded
	RunCancelled   = "cancelled"   // ended by a cancel request or a JobCancel error
	RunInterrupted = "interrupted" // stopped by a shutdown; River puts the task back without using an attempt
	RunAbandoned   = "abandoned"   // its worker died; River's rescuer gave the task back
)

func runFromRow(r dbsqlc.Run) taskrunner.Run {
	return taskrunner.Run{
		ID: r.ID, TaskID: r.TaskID, Attempt: int(r.Attempt), Key: r.Key, TaskType: r.TaskType,
		Status: r.Status, ErrorCode: (*taskrunner.Code)(r.ErrorCode), Error: r.Error, Worker: r.Worker,
		Interruptions: int(r.Interruptions), StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		DurationMS: r.DurationMs,
	}
}

// AddRunMetrics records numbers against a run, named by its task and
// attempt; a name already recorded takes the new value.
func AddRunMetrics(ctx context.Context, ex Executor, taskID int64, attempt int, metrics map[string]float64) error {
	if len(metrics) == 0 {
		return nil
	}
	names := make([]string, 0, len(metrics))
	values := make([]float64, 0, len(metrics))
	for name, v := range metrics {
		names = append(names, name)
		values = append(values, v)
	}
	if err := queries.RunMetricsUpsert(ctx, ex, dbsqlc.RunMetricsUpsertParams{TaskID: taskID, Attempt: int32(attempt), Names: names, MetricValues: values}); err != nil {
		return fmt.Errorf("add metrics to run %d/%d: %w", taskID, attempt, err)
	}
	return nil
}

// AddRunNotes attaches free text to a run, named by its task and attempt.
func AddRunNotes(ctx context.Context, ex Executor, taskID int64, attempt int, notes ...string) error {
	if len(notes) == 0 {
		return nil
	}
	if err := queries.RunNotesInsert(ctx, ex, dbsqlc.RunNotesInsertParams{TaskID: taskID, Attempt: int32(attempt), Notes: notes}); err != nil {
		return fmt.Errorf("add notes to run %d/%d: %w", taskID, attempt, err)
	}
	return nil
}

// RunsForTask returns a task's runs, first attempt first.
func RunsForTask(ctx context.Context, ex Executor, taskID int64) ([]taskrunner.Run, error) {
	rows, err := queries.RunsForTask(ctx, ex, taskID)
	if err != nil {
		return nil, fmt.Errorf("runs of task %d: %w", taskID, err)
	}
	out := make([]taskrunner.Run, len(rows))
	for i, r := range rows {
		out[i] = runFromRow(r)
	}
	return out, nil
}

// RunningAttempt returns the attempt a task is running now, from river_job
// (its row in runs is written when it ends): its number, when it started
// and the worker running it; ok is false when the task is not running.
func RunningAttempt(ctx context.Context, ex Executor, taskID int64) (attempt int, startedAt time.Time, worker string, ok bool, err error) {
	rows, err := queries.RunningAttempt(ctx, ex, taskID)
	if err != nil {
		return 0, time.Time{}, "", false, fmt.Errorf("running attempt of task %d: %w", taskID, err)
	}
	if len(rows) == 0 {
		return 0, time.Time{}, "", false, nil
	}
	return int(rows[0].Attempt), rows[0].StartedAt, rows[0].Worker, true, nil
}

// RunMetrics returns the metrics recorded against a run (a task's
// attempt), by name.
func RunMetrics(ctx context.Context, ex Executor, taskID int64, attempt int) (map[string]float64, error) {
	rows, err := queries.RunMetricsForRun(ctx, ex, dbsqlc.RunMetricsForRunParams{TaskID: taskID, Attempt: int32(attempt)})
	if err != nil {
		return nil, fmt.Errorf("metrics of run %d/%d: %w", taskID, attempt, err)
	}
	out := make(map[string]float64, len(rows))
	for _, r := range rows {
		out[r.Name] = r.Value
	}
	return out, nil
}

// RunNotes returns the notes attached to a run (a task's attempt), oldest
// first.
func RunNotes(ctx context.Context, ex Executor, taskID int64, attempt int) ([]string, error) {
	rows, err := queries.RunNotesForRun(ctx, ex, dbsqlc.RunNotesForRunParams{TaskID: taskID, Attempt: int32(attempt)})
	if err != nil {
		return nil, fmt.Errorf("notes of run %d/%d: %w", taskID, attempt, err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Note
	}
	return out, nil
}

// HasBeenProcessed reports whether a run with key, prefixed by scope,
// completed, and when the last one finished.
func HasBeenProcessed(ctx context.Context, ex Executor, key, scope string) (bool, *time.Time, error) {
	row, err := queries.HasBeenProcessed(ctx, ex, dbsqlc.HasBeenProcessedParams{Key: key, Scope: scope})
	if err != nil {
		return false, nil, fmt.Errorf("has %s:%s been processed: %w", scope, key, err)
	}
	// max() over no rows is NULL, which sqlc types as interface{}.
	if last, ok := row.LastAt.(time.Time); ok {
		return row.Processed, &last, nil
	}
	return row.Processed, nil, nil
}

// LatestRunForKey returns the newest run with the scope-prefixed key, or
// ErrNotFound.
func LatestRunForKey(ctx context.Context, ex Executor, key string) (*taskrunner.Run, error) {
	row, err := queries.LatestRunForKey(ctx, ex, key)
	if err != nil {
		return nil, fmt.Errorf("latest run for %s: %w", key, interpret(err))
	}
	r := runFromRow(row)
	return &r, nil
}

// DeleteExpiredRuns deletes up to max finished runs started before cutoff,
// with their metrics and notes, and returns how many it deleted.
func DeleteExpiredRuns(ctx context.Context, ex Executor, cutoff time.Time, max int) (int64, error) {
	n, err := queries.RunsDeleteExpired(ctx, ex, dbsqlc.RunsDeleteExpiredParams{Cutoff: cutoff, MaxRows: int32(max)})
	if err != nil {
		return 0, fmt.Errorf("delete expired runs: %w", err)
	}
	return n, nil
}
