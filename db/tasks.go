package db

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

func taskFromRow(r dbsqlc.Task) taskrunner.Task {
	return taskrunner.Task{
		ID: r.ID, Type: r.Type, Status: string(r.Status), Params: r.Params, Result: r.Result,
		ErrorCode: r.ErrorCode, Error: r.Error, Attempt: int(r.Attempt), MaxAttempts: int(r.MaxAttempts), Priority: int(r.Priority),
		Queue: r.Queue, TimeoutSeconds: r.TimeoutSeconds, CreatedAt: r.CreatedAt, ScheduledAt: r.ScheduledAt,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Metadata: r.Metadata, Owner: r.Owner,
	}
}

// GetTask returns the task with id, or ErrNotFound.
func GetTask(ctx context.Context, ex Executor, id int64) (*taskrunner.Task, error) {
	row, err := queries.TaskGet(ctx, ex, id)
	if err != nil {
		return nil, fmt.Errorf("get task %d: %w", id, interpret(err))
	}
	t := taskFromRow(row)
	return &t, nil
}

// TaskFilter selects tasks for ListTasks. Zero fields do not filter.
type TaskFilter struct {
	Type     string
	Owner    string
	Statuses []string
	BeforeID int64 // cursor: only tasks with a smaller id
	Limit    int
}

// ListTasks returns tasks newest first.
func ListTasks(ctx context.Context, ex Executor, f TaskFilter) ([]taskrunner.Task, error) {
	rows, err := queries.TaskList(ctx, ex, dbsqlc.TaskListParams{
		TaskType: f.Type, Owner: f.Owner, Statuses: f.Statuses, BeforeID: f.BeforeID, MaxRows: int32(f.Limit),
	})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out := make([]taskrunner.Task, len(rows))
	for i, r := range rows {
		out[i] = taskFromRow(r)
	}
	return out, nil
}

// CountTasksByState counts river_job rows by state, for the queue depth
// metric.
func CountTasksByState(ctx context.Context, ex Executor) (map[string]int64, error) {
	rows, err := queries.TaskCountByState(ctx, ex)
	if err != nil {
		return nil, fmt.Errorf("count tasks by state: %w", err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.State] = r.Count
	}
	return out, nil
}

// SetProgress stores p as task id's progress while its attempt p.Attempt
// is running, and wakes those waiting on the task in every process. It
// does nothing once that attempt has ended.
func SetProgress(ctx context.Context, ex Executor, id int64, p taskrunner.Progress) error {
	doc, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := queries.TaskProgressSet(ctx, ex, dbsqlc.TaskProgressSetParams{Progress: doc, ID: id, Attempt: int16(p.Attempt)}); err != nil {
		return fmt.Errorf("set progress of task %d: %w", id, interpret(err))
	}
	return nil
}
