package db

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

// Artifact is a file attached to or produced by a task; its bytes are the
// object ObjectKey in Bucket.
type Artifact struct {
	ID          uuid.UUID `json:"id"`
	TaskID      int64     `json:"task_id"`
	Type        string    `json:"type"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Bucket      string    `json:"bucket"`
	ObjectKey   string    `json:"object_key"`
	CreatedAt   time.Time `json:"created_at"`
}

func artifactFromRow(r dbsqlc.Artifact) Artifact {
	return Artifact{
		ID: r.ID, TaskID: r.TaskID, Type: r.Type, Name: r.Name, ContentType: r.ContentType, Size: r.SizeBytes,
		SHA256: r.Sha256, Bucket: r.Bucket, ObjectKey: r.ObjectKey, CreatedAt: r.CreatedAt,
	}
}

// InsertArtifact records an artifact whose object is already stored.
func InsertArtifact(ctx context.Context, ex Executor, a Artifact) (*Artifact, error) {
	row, err := queries.ArtifactInsert(ctx, ex, dbsqlc.ArtifactInsertParams{
		ID: a.ID, TaskID: a.TaskID, Type: a.Type, Name: a.Name, ContentType: a.ContentType,
		SizeBytes: a.Size, Sha256: a.SHA256, Bucket: a.Bucket, ObjectKey: a.ObjectKey,
	})
	if err != nil {
		return nil, fmt.Errorf("insert artifact %s: %w", a.ID, err)
	}
	out := artifactFromRow(row)
	return &out, nil
}

// GetArtifact returns the artifact with id, or ErrNotFound.
func GetArtifact(ctx context.Context, ex Executor, id uuid.UUID) (*Artifact, error) {
	row, err := queries.ArtifactGet(ctx, ex, id)
	if err != nil {
		return nil, fmt.Errorf("get artifact %s: %w", id, interpret(err))
	}
	a := artifactFromRow(row)
	return &a, nil
}

// ArtifactsForTask returns a task's artifacts, oldest first.
func ArtifactsForTask(ctx context.Context, ex Executor, taskID int64) ([]Artifact, error) {
	rows, err := queries.ArtifactsForTask(ctx, ex, taskID)
	if err != nil {
		return nil, fmt.Errorf("artifacts of task %d: %w", taskID, err)
	}
	out := make([]Artifact, len(rows))
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

// ExpiredObject is the object of an artifact taken out by retention.
type ExpiredObject struct {
	Bucket    string
	ObjectKey string
}

// DeleteExpiredArtifacts deletes up to max artifact rows created before
// cutoff, inside tx, and returns their objects: remove them before
// committing, so rows and objects go together.
func DeleteExpiredArtifacts(ctx context.Context, tx pgx.Tx, cutoff time.Time, max int) ([]ExpiredObject, error) {
	rows, err := queries.ArtifactsDeleteExpired(ctx, tx, dbsqlc.ArtifactsDeleteExpiredParams{Cutoff: cutoff, MaxRows: int32(max)})
	if err != nil {
		return nil, fmt.Errorf("delete expired artifacts: %w", err)
	}
	out := make([]ExpiredObject, len(rows))
	for i, r := range rows {
		out[i] = ExpiredObject{Bucket: r.Bucket, ObjectKey: r.ObjectKey}
	}
	return out, nil
}
