package artifact_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

type testBundle struct {
	db    *testenv.DB
	store *artifact.Store
	svc   *artifact.Service
	minio testenv.MinIO
}

// setup gives a test its own database and a bucket of its own in the test
// MinIO, and an artifact service on them.
func setup(t *testing.T) *testBundle {
	t.Helper()
	tdb := testenv.NewDB(t)
	store := newBucket(t)
	logger, _ := testenv.Logger(t)
	svc, err := artifact.NewService(artifact.ServiceConfig{Store: store, Pool: tdb.Pool, MaxBytes: 1 << 20, Logger: logger})
	require.NoError(t, err)
	return &testBundle{db: tdb, store: store, svc: svc, minio: testenv.MinIOServer(t)}
}

// newBucket is a store on a bucket of the test's own, emptied and removed
// when the test ends.
func newBucket(t *testing.T) *artifact.Store {
	t.Helper()
	b := testenv.NewBucket(t, "art-")
	store, err := artifact.NewStore(artifact.Config{Endpoint: b.Endpoint, User: b.User, Password: b.Password, Bucket: b.Name})
	require.NoError(t, err)
	return store
}

// plant stores an object; with row, an artifact row for it too, created
// age ago.
func (b *testBundle) plant(t *testing.T, store *artifact.Store, key string, row bool, age time.Duration) {
	t.Helper()
	ctx := context.Background()
	_, err := store.Client().PutObject(ctx, store.Bucket(), key, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
	require.NoError(t, err)
	if row {
		b.row(t, store.Bucket(), key, age)
	}
}

// row inserts an artifact row for bucket and key, created age ago.
func (b *testBundle) row(t *testing.T, bucket, key string, age time.Duration) {
	t.Helper()
	_, err := b.db.Pool.Exec(context.Background(), `INSERT INTO artifacts (id, task_id, type, name, content_type, size_bytes, sha256, bucket, object_key, created_at)
		VALUES ($1, 1, 'file', $2, 'text/plain', 1, 'x', $3, $4, now() - $5::interval)`,
		uuid.New(), key, bucket, key, fmt.Sprintf("%d seconds", int(age.Seconds())))
	require.NoError(t, err)
}

func (b *testBundle) exists(t *testing.T, store *artifact.Store, key string) bool {
	t.Helper()
	_, err := store.Client().StatObject(context.Background(), store.Bucket(), key, minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return false
	}
	require.NoError(t, err)
	return true
}

func (b *testBundle) rows(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM artifacts").Scan(&n))
	return n
}

func TestServiceRemoveExpired(t *testing.T) {
	t.Parallel()

	// Expired artifacts go with their objects, each from its row's own bucket;
	// a row whose bucket is gone goes too.
	t.Run("FromEachRowsBucket", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		other := newBucket(t)
		day := 24 * time.Hour
		b.plant(t, b.store, "tasks/1/old-here", true, 40*day)
		b.plant(t, other, "tasks/1/old-there", true, 40*day)
		b.row(t, testenv.RandomName("gone-"), "tasks/1/old-in-a-bucket-gone", 40*day)
		b.plant(t, other, "tasks/1/fresh-there", true, 0)

		n, err := b.svc.RemoveExpired(context.Background(), time.Now().Add(-7*day), 2)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		require.False(t, b.exists(t, b.store, "tasks/1/old-here"))
		require.False(t, b.exists(t, other, "tasks/1/old-there"), "the object in the row's own bucket was kept")
		require.True(t, b.exists(t, other, "tasks/1/fresh-there"))
		require.Equal(t, 1, b.rows(t))
	})

	// When objects cannot be removed, every failure is read from minio-go and
	// reported, and the rows stay for the next run.
	t.Run("ReportsEveryFailure", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		down, err := artifact.NewStore(artifact.Config{Endpoint: "127.0.0.1:1", User: b.minio.User, Password: b.minio.Password, Bucket: b.store.Bucket()})
		require.NoError(t, err)
		logger, _ := testenv.Logger(t)
		svc, err := artifact.NewService(artifact.ServiceConfig{Store: down, Pool: b.db.Pool, MaxBytes: 1 << 20, Logger: logger})
		require.NoError(t, err)
		keys := []string{"tasks/1/a", "tasks/1/b", "tasks/1/c"}
		for _, k := range keys {
			b.row(t, b.store.Bucket(), k, 40*24*time.Hour)
		}

		n, err := svc.RemoveExpired(context.Background(), time.Now().Add(-time.Hour), 10)
		require.Error(t, err)
		require.ErrorIs(t, err, artifact.ErrUnavailable)
		require.Zero(t, n)
		for _, k := range keys {
			require.Contains(t, err.Error(), k, "a failure was not reported")
		}
		require.Equal(t, 3, b.rows(t), "rows whose objects remain were deleted")
	})
}

func TestServiceRemoveOrphans(t *testing.T) {
	t.Parallel()

	// Objects under tasks/ without a row are removed once older than the
	// orphan age; objects with rows, young ones and others are kept. Each call
	// lists a bounded number of objects and the next goes on from there.
	t.Run("OldOnesUnderTasksABoundedScanAtATime", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := context.Background()
		b.plant(t, b.store, "tasks/5/has-a-row", true, 0)
		b.plant(t, b.store, "tasks/5/orphan", false, 0)
		b.plant(t, b.store, "tasks/0/staged-orphan", false, 0)
		b.plant(t, b.store, "elsewhere/no-row", false, 0)

		n, err := b.svc.RemoveOrphans(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "objects younger than an hour were removed")
		require.True(t, b.exists(t, b.store, "tasks/5/orphan"))

		logger, _ := testenv.Logger(t)
		sweeper, err := artifact.NewService(artifact.ServiceConfig{
			Store: b.store, Pool: b.db.Pool, Logger: logger,
			OrphanAge:  time.Nanosecond,
			OrphanScan: 1, // one object per call: three calls go through tasks/
		})
		require.NoError(t, err)
		removed := 0
		for range 3 {
			n, err := sweeper.RemoveOrphans(ctx)
			require.NoError(t, err)
			require.LessOrEqual(t, n, 1)
			removed += n
		}
		require.Equal(t, 2, removed)
		require.False(t, b.exists(t, b.store, "tasks/5/orphan"))
		require.False(t, b.exists(t, b.store, "tasks/0/staged-orphan"))
		require.True(t, b.exists(t, b.store, "tasks/5/has-a-row"))
		require.True(t, b.exists(t, b.store, "elsewhere/no-row"), "an object outside tasks/ was removed")
		require.Equal(t, 1, b.rows(t))
	})
}

func TestServicePut(t *testing.T) {
	t.Parallel()

	// Putting a task's artifact under a name it has replaces it: one row, one
	// object, the second's bytes.
	t.Run("SameNameReplaces", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := context.Background()
		var taskID int64
		require.NoError(t, b.db.Pool.QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state)
			VALUES ('{}', 'echo', 1, 'default', 'available') RETURNING id`).Scan(&taskID))
		put := func(body string) string {
			a, err := b.svc.Put(ctx, artifact.New{TaskID: taskID, Name: "result.json", Size: int64(len(body)), Body: strings.NewReader(body)})
			require.NoError(t, err)
			return a.ObjectKey
		}
		first := put("first")
		second := put("second!")
		require.NotEqual(t, first, second)
		require.Equal(t, 1, b.rows(t))
		require.False(t, b.exists(t, b.store, first), "the replaced object was kept")
		var size int64
		require.NoError(t, b.db.Pool.QueryRow(ctx, "SELECT size_bytes FROM artifacts WHERE object_key = $1", second).Scan(&size))
		require.EqualValues(t, 7, size)
	})
}
