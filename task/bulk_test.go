package task_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/task"
)

// A bulk delete whose objects cannot be removed (MinIO down) deletes
// nothing of that page: the tasks and their artifact rows stay together,
// and the answer is dependency_unavailable.
func TestBulkDeleteWithMinIODownDeletesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var artifacts *artifact.Service
	b := setup(t, func(cfg *task.ServiceConfig) {
		store, err := artifact.NewStore(artifact.Config{Endpoint: "127.0.0.1:1", Bucket: "down"})
		require.NoError(t, err)
		artifacts, err = artifact.NewService(artifact.ServiceConfig{Store: store, Pool: cfg.Pool})
		require.NoError(t, err)
		cfg.Artifacts = artifacts
	})
	submitted, _ := b.submit(t, echo("a"), "")
	_, err := b.svc.Cancel(ctx, submitted.ID)
	require.NoError(t, err)
	// The row of an object stored while MinIO was up.
	_, err = b.pool.Exec(ctx, `INSERT INTO artifacts (id, task_id, type, name, content_type, size_bytes, sha256, bucket, object_key)
		VALUES ($1, $2, 'file', 'a.txt', 'text/plain', 1, 'x', 'down', $3)`, uuid.New(), submitted.ID, artifact.ObjectKey(submitted.ID, uuid.New()))
	require.NoError(t, err)

	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := b.svc.Bulk(dctx, task.ActionDelete, &taskrunner.Filter{}, false)
	requireRefusal(t, err, taskrunner.CodeDependencyUnavailable, "")
	require.EqualValues(t, 1, res.Matched)
	require.Zero(t, res.Affected)
	require.Equal(t, 1, b.count(t), "the task is still there")
	var rows int
	require.NoError(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM artifacts").Scan(&rows))
	require.Equal(t, 1, rows, "and so is its artifact row")
	lines := b.logs.Events("bulk_action")
	require.Len(t, lines, 1)
	require.Equal(t, string(taskrunner.CodeDependencyUnavailable), lines[0]["error_code"])
	require.Equal(t, "delete", lines[0]["action"])
	require.Equal(t, "system", lines[0]["tenant"])
}

// Without an ArtifactRemover, a bulk delete is refused before it touches
// anything; a dry run still counts.
func TestBulkDeleteNeedsArtifacts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	submitted, _ := b.submit(t, echo("a"), "")
	_, err := b.svc.Cancel(ctx, submitted.ID)
	require.NoError(t, err)
	res, err := b.svc.Bulk(ctx, task.ActionDelete, &taskrunner.Filter{}, true)
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Matched)
	_, err = b.svc.Bulk(ctx, task.ActionDelete, &taskrunner.Filter{}, false)
	require.ErrorContains(t, err, "ArtifactRemover")
	require.Equal(t, 1, b.count(t))
	_, err = b.svc.Bulk(ctx, task.Action("purge"), &taskrunner.Filter{}, false)
	require.ErrorContains(t, err, "unknown bulk action")
}
