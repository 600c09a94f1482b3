package task

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

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
func (s *Service) scope(ctx context.Context, f *taskrunner.Filter) (tf *db.TaskFilter, none bool, err error) {
	if f.Type != "" {
		if _, ok := s.types.Lookup(f.Type); !ok {
			if _, err := s.lookupExternal(f.Type); err != nil {
				return nil, false, err
			}
		}
	}
	for _, st := range f.Statuses {
		if !slices.Contains(taskrunner.Statuses, st) {
			return nil, false, taskrunner.Invalid("status", "must be one or more of: %s", strings.Join(taskrunner.StatusNames(taskrunner.Statuses), ", "))
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
var ActionStates = map[Action][]taskrunner.Status{
	ActionCancel: {taskrunner.StatusAvailable, taskrunner.StatusScheduled, taskrunner.StatusPending,
		taskrunner.StatusRetryable, taskrunner.StatusRunning},
	ActionRetry:  {taskrunner.StatusDiscarded, taskrunner.StatusCancelled, taskrunner.StatusRetryable},
	ActionDelete: {taskrunner.StatusCompleted, taskrunner.StatusCancelled, taskrunner.StatusDiscarded},
}

// BulkPageSize is how many tasks a bulk action changes per transaction:
// however many match, no transaction is long.
const BulkPageSize = 500

// Defaults of the bulk action limits.
const (
	// DefaultBulkMaxConcurrent is how many bulk actions, dry runs
	// included, one tenant may run at once (BULK_MAX_CONCURRENT).
	DefaultBulkMaxConcurrent = 2
	// DefaultBulkCountTimeout bounds each statement that counts or finds
	// the tasks of a bulk action's filter (BULK_COUNT_TIMEOUT_SECONDS).
	DefaultBulkCountTimeout = 5 * time.Second
)

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
//
// A tenant runs at most Limits.BulkMaxConcurrent bulk actions at once,
// in every process sharing the database: each holds one of its slots (see
// db.AcquireBulkSlot) on the connection that runs its statements, and
// one more is refused with too_many_bulk_actions. Each statement that
// counts or finds the filter's tasks may take Limits.BulkCountTimeout; a
// longer one ends the action with bulk_count_timeout. It is always the
// first to run, before anything changes, so a filter too slow to match
// changes nothing; should a later page's take too long (the database
// slowed down meanwhile), the pages before it stay done and the error
// says how many tasks they changed.
func (s *Service) Bulk(ctx context.Context, action Action, f *taskrunner.Filter, dryRun bool) (res BulkResult, err error) {
	states, ok := ActionStates[action]
	if !ok {
		return BulkResult{}, fmt.Errorf("unknown bulk action %q", action)
	}
	tf, none, err := s.scope(ctx, f)
	if err != nil {
		return BulkResult{}, err
	}
	defer func() { s.logBulk(ctx, action, f, dryRun, res, err) }()
	if none {
		return BulkResult{}, nil
	}
	if tf.Kinds, err = s.kinds(); err != nil {
		return BulkResult{}, err
	}
	tf.Statuses = states
	if len(f.Statuses) > 0 {
		tf.Statuses = slices.DeleteFunc(slices.Clone(f.Statuses), func(st taskrunner.Status) bool { return !slices.Contains(states, st) })
		if len(tf.Statuses) == 0 {
			return BulkResult{}, nil // only statuses the action does not touch
		}
	}
	if action == ActionDelete && !dryRun && s.artifacts == nil {
		return BulkResult{}, errors.New("bulk delete: the task service has no ArtifactRemover")
	}
	slot, err := db.AcquireBulkSlot(ctx, s.pool, tenantName(ctx), s.limits.BulkMaxConcurrent)
	if err != nil {
		return BulkResult{}, db.AsUnavailable(err)
	}
	if slot == nil {
		return BulkResult{}, &taskrunner.Error{Code: taskrunner.CodeTooManyBulkActions,
			Message: fmt.Sprintf("%d bulk actions of yours are running (BULK_MAX_CONCURRENT); retry when one has finished", s.limits.BulkMaxConcurrent)}
	}
	defer slot.Release()
	conn := slot.Conn()
	if dryRun {
		var n int64
		err := db.WithStatementTimeout(ctx, conn, s.limits.BulkCountTimeout, func(tx pgx.Tx) (err error) {
			n, err = db.CountTasks(ctx, tx, tf)
			return err
		})
		if err != nil {
			return BulkResult{}, s.countFailure(err, res)
		}
		return BulkResult{Matched: n}, nil
	}
	var through int64
	err = db.WithStatementTimeout(ctx, conn, s.limits.BulkCountTimeout, func(tx pgx.Tx) (err error) {
		through, err = db.MaxTaskID(ctx, tx)
		return err
	})
	if err != nil {
		return BulkResult{}, s.countFailure(err, res)
	}
	for after := int64(0); ; {
		var ids []int64
		err := db.WithStatementTimeout(ctx, conn, s.limits.BulkCountTimeout, func(tx pgx.Tx) (err error) {
			ids, err = db.MatchingTaskIDs(ctx, tx, tf, after, through, BulkPageSize)
			return err
		})
		if err != nil {
			return res, s.countFailure(err, res)
		}
		if len(ids) == 0 {
			return res, nil
		}
		res.Matched += int64(len(ids))
		res.Pages++
		var affected int
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
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

// countFailure is the error of a bulk action whose statement that counts
// or finds its tasks failed (err), after res was done: bulk_count_timeout
// when it ran out of time.
func (s *Service) countFailure(err error, res BulkResult) error {
	if !errors.Is(err, db.ErrStatementTimeout) {
		return db.AsUnavailable(err)
	}
	msg := fmt.Sprintf("finding the tasks this filter matches took longer than %s (BULK_COUNT_TIMEOUT_SECONDS): narrow it by type, status or creation time, or retry later", s.limits.BulkCountTimeout)
	if res.Pages > 0 {
		msg += fmt.Sprintf("; %d tasks were changed before it stopped, and the action may be repeated", res.Affected)
	}
	return &taskrunner.Error{Code: taskrunner.CodeBulkCountTimeout, Message: msg, Err: err}
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
		attrs = append(attrs, slog.String("error_code", string(taskrunner.ErrorCode(err))), slog.String("error", err.Error()))
	}
	s.logger.LogAttrs(ctx, level, "bulk action", attrs...)
}
