package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Retention removes what has outlived it and keeps the rest: River's
// finished jobs after TASK_RETENTION, runs and artifacts (rows and objects
// together) after ARTIFACT_RETENTION.
func TestRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	logger, _ := testenv.Logger(t)
	bucket := testenv.NewBucket(t, "retention-")
	store, err := artifact.NewStore(artifact.Config{Endpoint: bucket.Endpoint, User: bucket.User, Password: bucket.Password, Bucket: bucket.Name})
	require.NoError(t, err)
	// The retention job removes objects without a row once they are
	// OrphanAge old: here, at once.
	arts, err := artifact.NewService(artifact.ServiceConfig{Store: store, Pool: tdb.Pool, MaxBytes: 1 << 20, Logger: logger, OrphanAge: time.Nanosecond})
	require.NoError(t, err)

	// Two tasks: an old one, finished a day ago, and a fresh one.
	insertOnly, err := jobs.NewClient(jobs.ClientConfig{Pool: tdb.Pool, Logger: logger, Types: builtin.Registry(builtin.Config{}), MaxRuntime: time.Minute, RescueAfter: 2 * time.Minute, Retention: time.Hour})
	require.NoError(t, err)
	var ids [2]int64
	for i := range ids {
		res, err := insertOnly.Insert(ctx, builtin.EchoArgs{Msg: "x"}, nil)
		require.NoError(t, err)
		ids[i] = res.Job.ID
	}
	old, fresh := ids[0], ids[1]
	_, err = tdb.Pool.Exec(ctx, `UPDATE river_job SET state = 'completed', attempt = 1, attempted_at = now() - interval '1 day',
		finalized_at = now() - interval '1 day' WHERE id = $1`, old)
	require.NoError(t, err)
	_, err = tdb.Pool.Exec(ctx, `UPDATE river_job SET state = 'completed', attempt = 1, attempted_at = now(), finalized_at = now() WHERE id = $1`, fresh)
	require.NoError(t, err)

	// Runs and artifacts of both; the old ones backdated.
	now := time.Now()
	require.NoError(t, db.RecordRuns(ctx, tdb.Pool, []db.RunRecord{
		{TaskID: old, Attempt: 1, Key: "echo:old", TaskType: "echo", Worker: "w", Status: db.RunCompleted, StartedAt: now.Add(-10 * 24 * time.Hour), FinishedAt: now.Add(-10 * 24 * time.Hour), Metrics: map[string]float64{"n": 1}, Notes: []string{"old"}},
		{TaskID: old, Attempt: 2, Key: "echo:old", TaskType: "echo", Worker: "w", Status: db.RunRunning, StartedAt: now.Add(-10 * 24 * time.Hour)},
		{TaskID: fresh, Attempt: 1, Key: "echo:fresh", TaskType: "echo", Worker: "w", Status: db.RunCompleted, StartedAt: now, FinishedAt: now},
	}))
	var oldArt, freshArt *taskrunner.Artifact
	for _, id := range ids {
		a, err := arts.Put(ctx, artifact.New{TaskID: id, Name: "a.txt", Size: 5, Body: strings.NewReader("hello")})
		require.NoError(t, err)
		if id == old {
			oldArt = a
		} else {
			freshArt = a
		}
	}
	_, err = tdb.Pool.Exec(ctx, "UPDATE artifacts SET created_at = now() - interval '40 days' WHERE id = $1", oldArt.ID)
	require.NoError(t, err)
	// An object a crash left without its row.
	const orphan = "tasks/999/left-by-a-crash"
	_, err = store.Client().PutObject(ctx, store.Bucket(), orphan, strings.NewReader("x"), 1, minio.PutObjectOptions{})
	require.NoError(t, err)

	// A worker with a week's artifact retention and an hour's task
	// retention: its leader cleans River's jobs and runs the retention job
	// when it starts.
	startWorking(t, tdb, jobs.ClientConfig{
		Retention: time.Hour, ArtifactRetention: 7 * 24 * time.Hour, RetentionInterval: time.Hour,
		Services: tasktype.Services{Artifacts: arts},
	})

	exists := func(q string, args ...any) bool {
		var ok bool
		require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT EXISTS ("+q+")", args...).Scan(&ok))
		return ok
	}
	require.Eventually(t, func() bool {
		return !exists("SELECT 1 FROM river_job WHERE id = $1", old) &&
			exists("SELECT 1 FROM river_job WHERE kind = 'taskrunner_retention' AND state = 'completed'")
	}, 60*time.Second, 100*time.Millisecond, "River's cleaner and the retention job did not both run")

	require.True(t, exists("SELECT 1 FROM river_job WHERE id = $1", fresh), "a fresh task was deleted")
	require.False(t, exists("SELECT 1 FROM runs WHERE task_id = $1 AND attempt = 1", old), "an expired run was kept")
	require.False(t, exists("SELECT 1 FROM run_metrics m LEFT JOIN runs r ON r.task_id = m.task_id AND r.attempt = m.attempt WHERE r.task_id IS NULL"))
	require.False(t, exists("SELECT 1 FROM run_notes WHERE note = 'old'"), "an expired run's notes were kept")
	require.True(t, exists("SELECT 1 FROM runs WHERE task_id = $1 AND attempt = 2", old), "a run still running was deleted")
	require.True(t, exists("SELECT 1 FROM runs WHERE task_id = $1", fresh), "a fresh run was deleted")
	require.False(t, exists("SELECT 1 FROM artifacts WHERE id = $1", oldArt.ID), "an expired artifact row was kept")
	require.True(t, exists("SELECT 1 FROM artifacts WHERE id = $1", freshArt.ID), "a fresh artifact row was deleted")
	_, err = store.Client().StatObject(ctx, store.Bucket(), oldArt.ObjectKey, minio.StatObjectOptions{})
	require.Equal(t, "NoSuchKey", minio.ToErrorResponse(err).Code, "an expired artifact's object was kept")
	_, err = store.Client().StatObject(ctx, store.Bucket(), freshArt.ObjectKey, minio.StatObjectOptions{})
	require.NoError(t, err, "a fresh artifact's object was deleted")
	_, err = store.Client().StatObject(ctx, store.Bucket(), orphan, minio.StatObjectOptions{})
	require.Equal(t, "NoSuchKey", minio.ToErrorResponse(err).Code, "an object without a row was kept")
}
