package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

func artifactFromRow(r dbsqlc.Artifact) taskrunner.Artifact {
	return taskrunner.Artifact{
		ID: r.ID, TaskID: r.TaskID, Type: r.Type, Name: r.Name, ContentType: r.ContentType, Size: r.SizeBytes,
		SHA256: r.Sha256, Bucket: r.Bucket, ObjectKey: r.ObjectKey, CreatedAt: r.CreatedAt, Owner: r.Owner,
	}
}

// StoreArtifact records an artifact whose object is already stored. The
// task's artifact of the same name, if there is one, is replaced: its row
// takes the new id and object, and its old object is returned for the
// caller to remove once this has committed (nil when nothing was replaced).
func StoreArtifact(ctx context.Context, pool *pgxpool.Pool, a taskrunner.Artifact) (*taskrunner.Artifact, *ObjectRef, error) {
	var out taskrunner.Artifact
	var replaced *ObjectRef
	err := WithTx(ctx, pool, func(tx pgx.Tx) error {
		old, err := queries.ArtifactLockByName(ctx, tx, dbsqlc.ArtifactLockByNameParams{TaskID: a.TaskID, Name: a.Name})
		switch {
		case err == nil:
			replaced = &ObjectRef{Bucket: old.Bucket, ObjectKey: old.ObjectKey}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		row, err := queries.ArtifactUpsert(ctx, tx, dbsqlc.ArtifactUpsertParams{
			ID: a.ID, TaskID: a.TaskID, Type: a.Type, Name: a.Name, ContentType: a.ContentType,
			SizeBytes: a.Size, Sha256: a.SHA256, Bucket: a.Bucket, ObjectKey: a.ObjectKey, Owner: a.Owner,
		})
		out = artifactFromRow(row)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store artifact %s: %w", a.ID, err)
	}
	return &out, replaced, nil
}

// GetArtifact returns the artifact with id, or ErrNotFound.
func GetArtifact(ctx context.Context, ex Executor, id uuid.UUID) (*taskrunner.Artifact, error) {
	row, err := queries.ArtifactGet(ctx, ex, id)
	if err != nil {
		return nil, fmt.Errorf("get artifact %s: %w", id, interpret(err))
	}
	a := artifactFromRow(row)
	return &a, nil
}

// ArtifactsForTask returns a task's artifacts, oldest first.
func ArtifactsForTask(ctx context.Context, ex Executor, taskID int64) ([]taskrunner.Artifact, error) {
	rows, err := queries.ArtifactsForTask(ctx, ex, taskID)
	if err != nil {
		return nil, fmt.Errorf("artifacts of task %d: %w", taskID, err)
	}
	out := make([]taskrunner.Artifact, len(rows))
	for i, r := range rows {
		out[i] = artifactFromRow(r)
	}
	return out, nil
}

// ArtifactIDsForTask returns the ids of a task's artifacts, oldest first.
func ArtifactIDsForTask(ctx context.Context, ex Executor, taskID int64) ([]uuid.UUID, error) {
	ids, err := queries.ArtifactIDsForTask(ctx, ex, taskID)
	if err != nil {
		return nil, fmt.Errorf("artifact ids of task %d: %w", taskID, err)
	}
	return ids, nil
}

// ObjectRef names an artifact's object: one taken out by retention, or
// one replaced by a newer artifact of the same name.
type ObjectRef struct {
	Bucket    string
	ObjectKey string
}

// DeleteExpiredArtifacts deletes up to max artifact rows created before
// cutoff, inside tx, and returns their objects: remove them before
// committing, so rows and objects go together.
func DeleteExpiredArtifacts(ctx context.Context, tx pgx.Tx, cutoff time.Time, max int) ([]ObjectRef, error) {
	rows, err := queries.ArtifactsDeleteExpired(ctx, tx, dbsqlc.ArtifactsDeleteExpiredParams{Cutoff: cutoff, MaxRows: int32(max)})
	if err != nil {
		return nil, fmt.Errorf("delete expired artifacts: %w", err)
	}
	out := make([]ObjectRef, len(rows))
	for i, r := range rows {
		out[i] = ObjectRef{Bucket: r.Bucket, ObjectKey: r.ObjectKey}
	}
	return out, nil
}

// DeleteArtifactsForTasks deletes the artifact rows of the tasks, inside
// tx, and returns their objects: remove them before committing, so rows
// and objects go together.
func DeleteArtifactsForTasks(ctx context.Context, tx pgx.Tx, taskIDs []int64) ([]ObjectRef, error) {
	rows, err := queries.ArtifactsDeleteForTasks(ctx, tx, taskIDs)
	if err != nil {
		return nil, fmt.Errorf("delete artifacts of %d tasks: %w", len(taskIDs), err)
	}
	out := make([]ObjectRef, len(rows))
	for i, r := range rows {
		out[i] = ObjectRef{Bucket: r.Bucket, ObjectKey: r.ObjectKey}
	}
	return out, nil
}

// StoredKeys returns which of keys, objects of bucket, have an artifact row.
func StoredKeys(ctx context.Context, ex Executor, bucket string, keys []string) (map[string]bool, error) {
	rows, err := queries.ArtifactKeysStored(ctx, ex, dbsqlc.ArtifactKeysStoredParams{Bucket: bucket, ObjectKeys: keys})
	if err != nil {
		return nil, fmt.Errorf("artifact rows of %d objects: %w", len(keys), err)
	}
	out := make(map[string]bool, len(rows))
	for _, k := range rows {
		out[k] = true
	}
	return out, nil
}
