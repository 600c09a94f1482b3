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

// ErrTooManyArtifacts is StoreArtifact's refusal of a new artifact for a
// task that has its maximum already.
var ErrTooManyArtifacts = errors.New("the task has its maximum of artifacts")

// StoreArtifact records an artifact whose object is already stored. The
// task's artifact of the same name, if there is one, is replaced: its row
// takes the new id and object, and its old object is returned for the
// caller to remove once this has committed (nil when nothing was replaced).
// A new name is refused with ErrTooManyArtifacts when the task has
// maxPerTask artifacts already (0: no cap); the transactions adding
// artifacts to one task take turns, so concurrent ones cannot overshoot.
func StoreArtifact(ctx context.Context, pool *pgxpool.Pool, a taskrunner.Artifact, maxPerTask int) (*taskrunner.Artifact, *ObjectRef, error) {
	var out taskrunner.Artifact
	var replaced *ObjectRef
	err := WithTx(ctx, pool, func(tx pgx.Tx) error {
		if err := queries.ArtifactTaskLock(ctx, tx, a.TaskID); err != nil {
			return err
		}
		old, err := queries.ArtifactLockByName(ctx, tx, dbsqlc.ArtifactLockByNameParams{TaskID: a.TaskID, Name: a.Name})
		switch {
		case err == nil:
			replaced = &ObjectRef{Bucket: old.Bucket, ObjectKey: old.ObjectKey}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		case maxPerTask > 0:
			n, _, err := ArtifactRoom(ctx, tx, a.TaskID, a.Name)
			if err != nil {
				return err
			}
			if n >= maxPerTask {
				return ErrTooManyArtifacts
			}
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

// ArtifactRoom returns how many artifacts a task has, and whether one of
// them is named name (a new one of that name replaces it).
func ArtifactRoom(ctx context.Context, ex Executor, taskID int64, name string) (count int, hasName bool, err error) {
	row, err := queries.ArtifactRoom(ctx, ex, dbsqlc.ArtifactRoomParams{TaskID: taskID, Name: name})
	if err != nil {
		return 0, false, fmt.Errorf("artifacts of task %d: %w", taskID, err)
	}
	return int(row.Artifacts), row.HasName, nil
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

// ArtifactPageQuery selects a page of a task's artifacts, oldest first.
type ArtifactPageQuery struct {
	TaskID int64
	// Paged: the page starts after the artifact created at AfterCreatedAt
	// with id AfterID; otherwise at the first.
	Paged          bool
	AfterCreatedAt time.Time
	AfterID        uuid.UUID
	Limit          int
}

// ArtifactsForTaskPage returns up to q.Limit of a task's artifacts, oldest
// first, after q's cursor.
func ArtifactsForTaskPage(ctx context.Context, ex Executor, q ArtifactPageQuery) ([]taskrunner.Artifact, error) {
	rows, err := queries.ArtifactsForTaskPage(ctx, ex, dbsqlc.ArtifactsForTaskPageParams{
		TaskID: q.TaskID, Paged: q.Paged, AfterCreatedAt: q.AfterCreatedAt, AfterID: q.AfterID, MaxRows: int32(q.Limit),
	})
	if err != nil {
		return nil, fmt.Errorf("artifacts of task %d: %w", q.TaskID, err)
	}
	out := make([]taskrunner.Artifact, len(rows))
	for i, r := range rows {
		out[i] = artifactFromRow(r)
	}
	return out, nil
}

// ArtifactIDsForTask returns the ids of a task's first max artifacts,
// oldest first, and how many artifacts it has in all.
func ArtifactIDsForTask(ctx context.Context, ex Executor, taskID int64, max int) (ids []uuid.UUID, total int, err error) {
	rows, err := queries.ArtifactIDsForTask(ctx, ex, dbsqlc.ArtifactIDsForTaskParams{TaskID: taskID, MaxIds: int32(max)})
	if err != nil {
		return nil, 0, fmt.Errorf("artifact ids of task %d: %w", taskID, err)
	}
	ids = make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	if len(rows) > 0 {
		total = int(rows[0].Total)
	}
	return ids, total, nil
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
