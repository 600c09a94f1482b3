package task

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/jobs"
)

// scope is f checked and narrowed to what the tenant ctx acts for may
// see: a client tenant's own tasks. none is true when f names another
// tenant's tasks, which such a client never sees.
func scope(ctx context.Context, f *taskrunner.Filter) (tf *db.TaskFilter, none bool, err error) {
	if f.Type != "" {
		if _, ok := jobs.Types[f.Type]; !ok {
			return nil, false, &taskrunner.Error{Code: taskrunner.CodeUnknownTaskType, Field: "type",
				Message: fmt.Sprintf("unknown task type %q; known types: %s", f.Type, strings.Join(jobs.TypeNames(), ", "))}
		}
	}
	for _, st := range f.Statuses {
		if !slices.Contains(taskrunner.Statuses, st) {
			return nil, false, taskrunner.Invalid("status", "must be one or more of: %s", strings.Join(taskrunner.Statuses, ", "))
		}
	}
	tf = &db.TaskFilter{Filter: *f, TenantQueuePrefix: jobs.TenantQueuePrefix(f.Queue)}
	if tenant, ok := taskrunner.TenantFrom(ctx); ok && !tenant.Admin {
		if f.Owner != "" && f.Owner != tenant.Name {
			return nil, true, nil // another tenant's tasks: none this client may see
		}
		tf.Owner = tenant.Name
	}
	return tf, false, nil
}

// Action is a bulk action on the tasks a filter matches.
type Action string

// The bulk actions.
const (
	// ActionCancel cancels queued tasks and asks running ones to stop
	// (River's JobCancel).
	ActionCancel Action = "cancel"
	// ActionRetry makes discarded, cancelled and retryable tasks
	// available to run again at once (River's JobRetry).
	ActionRetry Action = "retry"
	// ActionDelete deletes finished tasks with their artifacts, rows and
	// objects (River's JobDeleteMany).
	ActionDelete Action = "delete"
)

// ActionStates are the statuses each action touches: a task in any other
// status is neither matched nor affected.
var ActionStates = map[Action][]string{
	ActionCancel: {taskrunner.StatusAvailable, taskrunner.StatusScheduled, taskrunner.StatusPending,
		taskrunner.StatusRetryable, taskrunner.StatusRunning},
	ActionRetry:  {taskrunner.StatusDiscarded, taskrunner.StatusCancelled, taskrunner.StatusRetryable},
	ActionDelete: {taskrunner.StatusCompleted, taskrunner.StatusCancelled, taskrunner.StatusDiscarded},
}

// BulkPageSize is how many tasks a bulk action changes per transaction:
// however many match, no transaction is long.
const BulkPageSize = 500

// BulkResult is what a bulk action did. Matched counts the tasks the
// filter matched in the statuses the action touches; Affected, of a real
// run, those the action changed (a task that left those statuses in the
// meantime is matched, not affected). A cancelled running task counts as
// affected: its worker has been told to stop.
type BulkResult struct {
	Matched  int64
	Affected int64
	// Pages is how many transactions a real run took.
	Pages int
}

// ArtifactRemover removes tasks' artifacts, rows and objects, within the
// transaction that deletes the tasks; artifact.Service is the one
// taskrunner runs.
type ArtifactRemover interface {
	RemoveForTasksTx(ctx context.Context, tx pgx.Tx, taskIDs []int64) (int, error)
}

// Bulk applies action to the tasks f matches, among the task types only
// (never taskrunner's own jobs) and, for a client tenant, among its own
// tasks only. A dry run counts them and changes nothing. A real run pages
// through the matching ids, oldest first, BulkPageSize at a time, each
// page in a transaction of its own through River's own operations, and
// stops at the newest task that existed when it began. Each call logs one
// bulk_action line.
func (s *Service) Bulk(ctx context.Context, action Action, f *taskrunner.Filter, dryRun bool) (res BulkResult, err error) {
	states, ok := ActionStates[action]
	if !ok {
		return BulkResult{}, fmt.Errorf("unknown bulk action %q", action)
	}
	tf, none, err := scope(ctx, f)
	if err != nil {
		return BulkResult{}, err
	}
	defer func() { s.logBulk(ctx, action, f, dryRun, res, err) }()
	if none {
		return BulkResult{}, nil
	}
	tf.Kinds = jobs.TypeNames()
	tf.Statuses = states
	if len(f.Statuses) > 0 {
		tf.Statuses = slices.DeleteFunc(slices.Clone(f.Statuses), func(st string) bool { return !slices.Contains(states, st) })
		if len(tf.Statuses) == 0 {
			return BulkResult{}, nil // only statuses the action does not touch
		}
	}
	if dryRun {
		n, err := db.CountTasks(ctx, s.pool, tf)
		if err != nil {
			return BulkResult{}, db.AsUnavailable(err)
		}
		return BulkResult{Matched: n}, nil
	}
	if action == ActionDelete && s.artifacts == nil {
		return BulkResult{}, errors.New("bulk delete: the task service has no ArtifactRemover")
	}
	through, err := db.MaxTaskID(ctx, s.pool)
	if err != nil {
		return BulkResult{}, db.AsUnavailable(err)
	}
	for after := int64(0); ; {
		ids, err := db.MatchingTaskIDs(ctx, s.pool, tf, after, through, BulkPageSize)
		if err != nil {
			return res, db.AsUnavailable(err)
		}
		if len(ids) == 0 {
			return res, nil
		}
		res.Matched += int64(len(ids))
		res.Pages++
		var affected int
		err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
			locked, err := db.LockTasksInStates(ctx, tx, ids, tf.Statuses)
			if err != nil || len(locked) == 0 {
				return err
			}
			affected, err = s.apply(ctx, tx, action, locked)
			return err
		})
		if err != nil {
			return res, db.AsUnavailable(fmt.Errorf("bulk %s of tasks %d to %d: %w", action, ids[0], ids[len(ids)-1], err))
		}
		res.Affected += int64(affected)
		after = ids[len(ids)-1]
	}
}

// apply applies action to ids, tasks locked in tx in statuses the action
// touches, and returns how many it changed.
func (s *Service) apply(ctx context.Context, tx pgx.Tx, action Action, ids []int64) (int, error) {
	switch action {
	case ActionCancel:
		for _, id := range ids {
			if _, err := s.client.JobCancelTx(ctx, tx, id); err != nil {
				return 0, fmt.Errorf("cancel task %d: %w", id, err)
			}
		}
	case ActionRetry:
		for _, id := range ids {
			if _, err := s.client.JobRetryTx(ctx, tx, id); err != nil {
				return 0, fmt.Errorf("retry task %d: %w", id, err)
			}
		}
	case ActionDelete:
		finished := make([]rivertype.JobState, 0, 3)
		for _, st := range ActionStates[ActionDelete] {
			finished = append(finished, rivertype.JobState(st))
		}
		deleted, err := s.client.JobDeleteManyTx(ctx, tx, river.NewJobDeleteManyParams().IDs(ids...).States(finished...).First(len(ids)))
		if err != nil {
			return 0, fmt.Errorf("delete tasks: %w", err)
		}
		gone := make([]int64, len(deleted.Jobs))
		for i, j := range deleted.Jobs {
			gone[i] = j.ID
		}
		// In the same transaction: should an object not go, neither do the
		// tasks nor the rows.
		if _, err := s.artifacts.RemoveForTasksTx(ctx, tx, gone); err != nil {
			return 0, err
		}
		return len(gone), nil
	}
	return len(ids), nil
}

// logBulk writes a bulk action's one bulk_action line: the action, the
// filter as the caller gave it, the counts and the tenant's name.
func (s *Service) logBulk(ctx context.Context, action Action, f *taskrunner.Filter, dryRun bool, res BulkResult, err error) {
	attrs := []slog.Attr{
		slog.String("event", "bulk_action"), slog.String("action", string(action)), slog.String("filter", f.String()),
		slog.Bool("dry_run", dryRun), slog.Int64("matched", res.Matched), slog.Int64("affected", res.Affected),
		slog.Int("pages", res.Pages), slog.String("tenant", tenantName(ctx)),
	}
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelWarn
		attrs = append(attrs, slog.String("error_code", taskrunner.ErrorCode(err)), slog.String("error", err.Error()))
	}
	s.logger.LogAttrs(ctx, level, "bulk action", attrs...)
}
