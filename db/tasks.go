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
		ID: r.ID, Type: r.Type, Status: taskrunner.Status(r.Status), Params: r.Params, Result: r.Result,
		ErrorCode: (*taskrunner.Code)(r.ErrorCode), Error: r.Error, Attempt: int(r.Attempt), MaxAttempts: int(r.MaxAttempts), Priority: int(r.Priority),
		Queue: r.Queue, TimeoutSeconds: r.TimeoutSeconds, CreatedAt: r.CreatedAt, ScheduledAt: r.ScheduledAt,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Metadata: r.Metadata, Owner: r.Owner,
	}
}

// GetTask returns the task with id, or ErrNotFound; one of taskrunner's own
// jobs (schedule ticks, callback deliveries) is not a task, and not found.
func GetTask(ctx context.Context, ex Executor, id int64) (*taskrunner.Task, error) {
	row, err := queries.TaskGet(ctx, ex, id)
	if err != nil {
		return nil, fmt.Errorf("get task %d: %w", id, interpret(err))
	}
	t := taskFromRow(row)
	return &t, nil
}

// TaskFilter selects tasks for ListTasks, CountTasks and MatchingTaskIDs:
// a taskrunner.Filter, checked, with what the caller adds. Zero fields do
// not filter.
type TaskFilter struct {
	taskrunner.Filter
	// Kinds keeps the tasks of these kinds (the task types).
	Kinds []string
	// TenantQueuePrefix begins the names of the River queues of Queue's
	// tenants (jobs.TenantQueuePrefix), which Queue matches too; required
	// with Queue.
	TenantQueuePrefix string
}

// ListTasks returns up to limit tasks newest first, those with an id
// below beforeID when it is not 0.
func ListTasks(ctx context.Context, ex Executor, f *TaskFilter, beforeID int64, limit int) ([]taskrunner.Task, error) {
	p := f.params()
	rows, err := queries.TaskList(ctx, ex, dbsqlc.TaskListParams{
		TaskType: p.TaskType, Kinds: p.Kinds, Owner: p.Owner, Statuses: p.Statuses, CreatedAfter: p.CreatedAfter,
		CreatedBefore: p.CreatedBefore, ErrorCode: p.ErrorCode, Queue: p.Queue, TenantQueuePrefix: p.TenantQueuePrefix, Params: p.Params,
		BeforeID: beforeID, MaxRows: int32(limit),
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

// CountTasks counts the tasks f matches.
func CountTasks(ctx context.Context, ex Executor, f *TaskFilter) (int64, error) {
	n, err := queries.TaskMatchCount(ctx, ex, f.params())
	if err != nil {
		return 0, fmt.Errorf("count tasks: %w", err)
	}
	return n, nil
}

// MatchingTaskIDs returns up to limit ids of tasks f matches, ascending,
// each above afterID and at most throughID.
func MatchingTaskIDs(ctx context.Context, ex Executor, f *TaskFilter, afterID, throughID int64, limit int) ([]int64, error) {
	p := f.params()
	ids, err := queries.TaskMatchIDs(ctx, ex, dbsqlc.TaskMatchIDsParams{
		TaskType: p.TaskType, Kinds: p.Kinds, Owner: p.Owner, Statuses: p.Statuses, CreatedAfter: p.CreatedAfter,
		CreatedBefore: p.CreatedBefore, ErrorCode: p.ErrorCode, Queue: p.Queue, TenantQueuePrefix: p.TenantQueuePrefix, Params: p.Params,
		AfterID: afterID, ThroughID: throughID, MaxRows: int32(limit),
	})
	if err != nil {
		return nil, fmt.Errorf("match tasks: %w", err)
	}
	return ids, nil
}

// MaxTaskID is the id of the newest task; 0 when there is none.
func MaxTaskID(ctx context.Context, ex Executor) (int64, error) {
	id, err := queries.TaskMaxID(ctx, ex)
	if err != nil {
		return 0, fmt.Errorf("newest task id: %w", err)
	}
	return id, nil
}

// LockTasksInStates locks, until ex's transaction ends, those of ids still
// in one of states, and returns them.
func LockTasksInStates(ctx context.Context, ex Executor, ids []int64, states []taskrunner.Status) ([]int64, error) {
	locked, err := queries.TaskLockInStates(ctx, ex, dbsqlc.TaskLockInStatesParams{Ids: ids, States: taskrunner.StatusNames(states)})
	if err != nil {
		return nil, fmt.Errorf("lock tasks: %w", err)
	}
	return locked, nil
}

func (f *TaskFilter) params() dbsqlc.TaskMatchCountParams {
	return dbsqlc.TaskMatchCountParams{
		TaskType: f.Type, Kinds: f.Kinds, Owner: f.Owner, Statuses: taskrunner.StatusNames(f.Statuses), CreatedAfter: f.CreatedAfter,
		CreatedBefore: f.CreatedBefore, ErrorCode: string(f.ErrorCode), Queue: f.Queue, TenantQueuePrefix: f.TenantQueuePrefix, Params: f.Params,
	}
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
