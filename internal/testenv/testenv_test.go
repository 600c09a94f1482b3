package testenv_test

import (
	"context"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
)

// fill puts three objects in b and leaves a multipart upload unfinished
// in it, as an upload cut off halfway does.
func fill(t *testing.T, b *testenv.Bucket) {
	t.Helper()
	ctx := context.Background()
	for _, key := range []string{"a", "tasks/1/b", "tasks/2/deep/c"} {
		_, err := b.Client.PutObject(ctx, b.Name, key, strings.NewReader("x"), 1, minio.PutObjectOptions{})
		require.NoError(t, err)
	}
	core := minio.Core{Client: b.Client}
	upload, err := core.NewMultipartUpload(ctx, b.Name, "tasks/3/unfinished", minio.PutObjectOptions{})
	require.NoError(t, err)
	_, err = core.PutObjectPart(ctx, b.Name, "tasks/3/unfinished", upload, 1, strings.NewReader("part"), 4, minio.PutObjectPartOptions{})
	require.NoError(t, err)
	require.Equal(t, 4, b.Count(t), "three objects and one unfinished upload")
}

func TestNewBucket(t *testing.T) {
	t.Parallel()

	t.Run("IsRemovedWithEverythingInItWhenTheTestEnds", func(t *testing.T) {
		t.Parallel()
		var b *testenv.Bucket
		// A subtest's cleanup runs when it returns: the bucket must be gone then.
		t.Run("UseTheBucket", func(t *testing.T) {
			b = testenv.NewBucket(t, "testenv-")
			require.True(t, strings.HasPrefix(b.Name, "testenv-"), "name %s", b.Name)
			fill(t, b)
		})
		require.NotNil(t, b)
		exists, err := b.Client.BucketExists(context.Background(), b.Name)
		require.NoError(t, err)
		require.False(t, exists, "the test's bucket outlived it")
	})

	t.Run("EmptyRemovesObjectsAndUnfinishedUploads", func(t *testing.T) {
		t.Parallel()
		b := testenv.NewBucket(t, "testenv-")
		fill(t, b)
		b.Empty(t)
		require.Zero(t, b.Count(t))
	})

	t.Run("EachCallHasABucketOfItsOwn", func(t *testing.T) {
		t.Parallel()
		first, second := testenv.NewBucket(t, "testenv-"), testenv.NewBucket(t, "testenv-")
		require.NotEqual(t, first.Name, second.Name)
		for _, b := range []*testenv.Bucket{first, second} {
			exists, err := b.Client.BucketExists(context.Background(), b.Name)
			require.NoError(t, err)
			require.True(t, exists)
			require.Zero(t, b.Count(t))
		}
	})
}
