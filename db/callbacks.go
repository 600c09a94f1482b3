package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

// CallbackAttempt is one attempt at delivering a task's callback.
type CallbackAttempt = taskrunner.CallbackAttempt

// InsertCallbackAttempt records a delivery attempt.
func InsertCallbackAttempt(ctx context.Context, ex Executor, a CallbackAttempt) error {
	var status *int32
	if a.StatusCode != nil {
		s := int32(*a.StatusCode)
		status = &s
	}
	err := queries.CallbackAttemptInsert(ctx, ex, dbsqlc.CallbackAttemptInsertParams{
		TaskID: a.TaskID, DeliveryID: a.DeliveryID, Event: a.Event, Attempt: int32(a.Attempt),
		StatusCode: status, LatencyMs: a.LatencyMS, Error: a.Error, Delivered: a.Delivered, GaveUp: a.GaveUp,
	})
	if err != nil {
		return fmt.Errorf("record callback attempt of task %d: %w", a.TaskID, err)
	}
	return nil
}

// CallbackAttemptsForTask returns a task's callback attempts, oldest first.
func CallbackAttemptsForTask(ctx context.Context, ex Executor, taskID int64) ([]CallbackAttempt, error) {
	rows, err := queries.CallbackAttemptsForTask(ctx, ex, taskID)
	if err != nil {
		return nil, fmt.Errorf("callback attempts of task %d: %w", taskID, err)
	}
	out := make([]CallbackAttempt, len(rows))
	for i, r := range rows {
		out[i] = CallbackAttempt{TaskID: r.TaskID, DeliveryID: r.DeliveryID, Event: r.Event, Attempt: int(r.Attempt),
			LatencyMS: r.LatencyMs, Error: r.Error, Delivered: r.Delivered, GaveUp: r.GaveUp, At: r.At}
		if r.StatusCode != nil {
			s := int(*r.StatusCode)
			out[i].StatusCode = &s
		}
	}
	return out, nil
}

// DeleteExpiredCallbackAttempts deletes the callback attempts recorded
// before cutoff, as runs outlive their tasks until ARTIFACT_RETENTION.
func DeleteExpiredCallbackAttempts(ctx context.Context, ex Executor, cutoff time.Time) (int64, error) {
	n, err := queries.CallbackAttemptsDeleteBefore(ctx, ex, cutoff)
	if err != nil {
		return 0, fmt.Errorf("delete callback attempts before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	return n, nil
}

// CallbackTallies sums up the callback attempts of tasks ids, in one
// query: a task without any attempt has no entry.
func CallbackTallies(ctx context.Context, ex Executor, ids []int64) (map[int64]taskrunner.CallbackTally, error) {
	rows, err := queries.CallbackAttemptTallies(ctx, ex, ids)
	if err != nil {
		return nil, fmt.Errorf("callback attempts of %d tasks: %w", len(ids), err)
	}
	out := make(map[int64]taskrunner.CallbackTally, len(rows))
	for _, r := range rows {
		out[r.TaskID] = taskrunner.CallbackTally{Attempts: int(r.Attempts), Delivered: r.Delivered, GaveUp: r.GaveUp}
	}
	return out, nil
}

// CallbackSecretGeneration is which of a tenant's callback signing secrets
// sign: Generation, and Generation-1 too until PreviousUntil (nil: not).
type CallbackSecretGeneration struct {
	Generation    int64
	PreviousUntil *time.Time
}

// CallbackSecretGenerationOf reads owner's generation: 0 for a tenant
// that never rotated.
func CallbackSecretGenerationOf(ctx context.Context, ex Executor, owner string) (CallbackSecretGeneration, error) {
	r, err := queries.CallbackSecretGeneration(ctx, ex, owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return CallbackSecretGeneration{}, nil
	}
	if err != nil {
		return CallbackSecretGeneration{}, fmt.Errorf("callback secret generation of %s: %w", owner, err)
	}
	return CallbackSecretGeneration{Generation: r.Generation, PreviousUntil: r.PreviousGenerationUntil}, nil
}

// RotateCallbackSecret steps owner's generation by one, the previous
// generation signing too until previousUntil, and returns the new state.
// Concurrent rotations of one tenant wait for each other's row lock: each
// steps once.
func RotateCallbackSecret(ctx context.Context, ex Executor, owner string, previousUntil time.Time) (CallbackSecretGeneration, error) {
	r, err := queries.CallbackSecretRotate(ctx, ex, dbsqlc.CallbackSecretRotateParams{Owner: owner, PreviousUntil: &previousUntil})
	if err != nil {
		return CallbackSecretGeneration{}, fmt.Errorf("rotate callback secret of %s: %w", owner, err)
	}
	return CallbackSecretGeneration{Generation: r.Generation, PreviousUntil: r.PreviousGenerationUntil}, nil
}
