package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

// ErrTooMany is returned when a put would pass a bound on how many rows
// there may be.
var ErrTooMany = errors.New("too many")

func externalTypeFromRow(r dbsqlc.TaskType) taskrunner.ExternalType {
	t := taskrunner.ExternalType{Name: r.Name, Mode: r.Mode, ParamsSchema: r.ParamsSchema, TimeoutSeconds: r.TimeoutSeconds,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if r.MaxRetries != nil {
		n := int(*r.MaxRetries)
		t.MaxRetries = &n
	}
	if r.PushUrl != nil {
		t.PushURL = *r.PushUrl
	}
	return t
}

// PutTaskType inserts t, or replaces the type of its name, and returns it
// as stored; ErrTooMany when it is new and maxTypes are stored already.
func PutTaskType(ctx context.Context, pool *pgxpool.Pool, t *taskrunner.ExternalType, maxTypes int) (*taskrunner.ExternalType, error) {
	p := dbsqlc.TaskTypePutParams{Name: t.Name, Mode: t.Mode, ParamsSchema: t.ParamsSchema, TimeoutSeconds: t.TimeoutSeconds}
	if t.MaxRetries != nil {
		n := int32(min(*t.MaxRetries, 1<<30)) //nolint:gosec // bounded above
		p.MaxRetries = &n
	}
	if t.PushURL != "" {
		p.PushUrl = &t.PushURL
	}
	var out taskrunner.ExternalType
	err := WithTx(ctx, pool, func(tx pgx.Tx) error {
		if err := queries.TaskTypeLock(ctx, tx); err != nil {
			return err
		}
		n, err := queries.TaskTypeCount(ctx, tx)
		if err != nil {
			return err
		}
		if n >= int64(maxTypes) {
			if _, err := queries.TaskTypeGet(ctx, tx, t.Name); err != nil {
				if errors.Is(interpret(err), ErrNotFound) {
					return ErrTooMany
				}
				return err
			}
		}
		row, err := queries.TaskTypePut(ctx, tx, p)
		if err != nil {
			return err
		}
		out = externalTypeFromRow(row)
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrTooMany) {
			return nil, err
		}
		return nil, fmt.Errorf("put task type %s: %w", t.Name, err)
	}
	return &out, nil
}

// GetTaskType returns the external type name, or ErrNotFound.
func GetTaskType(ctx context.Context, ex Executor, name string) (*taskrunner.ExternalType, error) {
	row, err := queries.TaskTypeGet(ctx, ex, name)
	if err != nil {
		return nil, fmt.Errorf("get task type %s: %w", name, interpret(err))
	}
	t := externalTypeFromRow(row)
	return &t, nil
}

// ListTaskTypes returns every external type, by name.
func ListTaskTypes(ctx context.Context, ex Executor) ([]taskrunner.ExternalType, error) {
	rows, err := queries.TaskTypeList(ctx, ex)
	if err != nil {
		return nil, fmt.Errorf("list task types: %w", err)
	}
	out := make([]taskrunner.ExternalType, len(rows))
	for i, r := range rows {
		out[i] = externalTypeFromRow(r)
	}
	return out, nil
}

// DeleteTaskType deletes the external type name: ErrNotFound when there
// is none.
func DeleteTaskType(ctx context.Context, ex Executor, name string) error {
	n, err := queries.TaskTypeDelete(ctx, ex, name)
	if err != nil {
		return fmt.Errorf("delete task type %s: %w", name, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// HasUnfinishedTasks reports whether a task of kind is waiting (available,
// pending, scheduled, retryable) or running.
func HasUnfinishedTasks(ctx context.Context, ex Executor, kind string) (bool, error) {
	ok, err := queries.TaskTypeHasUnfinishedTasks(ctx, ex, kind)
	if err != nil {
		return false, fmt.Errorf("tasks of %s: %w", kind, err)
	}
	return ok, nil
}

// CancelWaitingTasks cancels the tasks of kind that wait (available,
// pending, scheduled, retryable), and returns how many it cancelled.
func CancelWaitingTasks(ctx context.Context, ex Executor, kind string) (int64, error) {
	n, err := queries.TaskTypeCancelWaitingTasks(ctx, ex, kind)
	if err != nil {
		return 0, fmt.Errorf("cancel tasks of %s: %w", kind, err)
	}
	return n, nil
}
