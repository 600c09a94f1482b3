package cache_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

type testBundle struct {
	rdb    *redis.Client
	prefix string // this test's own key prefix
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	rdb, err := cache.NewClient(testenv.RedisURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, cache.Ping(context.Background(), rdb), "Redis must answer at %s (`make test` starts it)", testenv.RedisURL())
	prefix := testenv.RandomName("cachetest:") + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, "*"+prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	return &testBundle{rdb: rdb, prefix: prefix}
}

// downClient is a client of a Redis that is not there.
func downClient(t *testing.T) *redis.Client {
	t.Helper()
	rdb, err := cache.NewClient("redis://127.0.0.1:1/0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func TestNewClient(t *testing.T) {
	t.Parallel()

	t.Run("RefusesABadURLWithoutRepeatingIt", func(t *testing.T) {
		t.Parallel()
		_, err := cache.NewClient("http://user:s3cret-password@example.com")
		require.Error(t, err)
		require.NotContains(t, err.Error(), "s3cret-password")
		require.Contains(t, err.Error(), "REDIS_URL")
	})

	t.Run("PingFailsFastWhenRedisIsDown", func(t *testing.T) {
		t.Parallel()
		err := cache.Ping(context.Background(), downClient(t))
		require.Error(t, err)
		require.Contains(t, err.Error(), "ping redis")
	})
}

func TestSearchCache(t *testing.T) {
	t.Parallel()

	t.Run("MissThenHit", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := cache.NewSearchCache(b.rdb, b.prefix)
		ctx := context.Background()

		_, ok, err := c.Get(ctx, "q")
		require.NoError(t, err)
		require.False(t, ok)

		require.NoError(t, c.Set(ctx, "q", []byte(`{"results":[]}`), time.Minute))
		val, ok, err := c.Get(ctx, "q")
		require.NoError(t, err)
		require.True(t, ok)
		require.JSONEq(t, `{"results":[]}`, string(val))

		// Stored under the prefix, with the TTL.
		ttl, err := b.rdb.TTL(ctx, b.prefix+"q").Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 50*time.Second)
	})

	t.Run("ExpiresAfterItsTTL", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := cache.NewSearchCache(b.rdb, b.prefix)
		ctx := context.Background()
		require.NoError(t, c.Set(ctx, "q", []byte("v"), 50*time.Millisecond))
		require.Eventually(t, func() bool {
			_, ok, err := c.Get(ctx, "q")
			return err == nil && !ok
		}, 5*time.Second, 20*time.Millisecond)
	})

	t.Run("RedisDownIsAnErrorNotAMiss", func(t *testing.T) {
		t.Parallel()
		c := cache.NewSearchCache(downClient(t), "x:")
		_, ok, err := c.Get(context.Background(), "q")
		require.Error(t, err)
		require.False(t, ok)
		require.Error(t, c.Set(context.Background(), "q", []byte("v"), time.Minute))
	})
}

func TestLimiter(t *testing.T) {
	t.Parallel()

	t.Run("AllowsUpToTheLimitThenRefuses", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		l := cache.NewLimiter(b.rdb, b.prefix)
		ctx := context.Background()
		for i := range 3 {
			d, err := l.Allow(ctx, "alice", 3, 1)
			require.NoError(t, err)
			require.True(t, d.Allowed, "enqueue %d", i+1)
			require.Equal(t, 3, d.Limit)
			require.Equal(t, 2-i, d.Remaining)
		}
		d, err := l.Allow(ctx, "alice", 3, 1)
		require.NoError(t, err)
		require.False(t, d.Allowed)
		require.Positive(t, d.RetryAfter)
		require.LessOrEqual(t, d.RetryAfter, time.Minute)
	})

	t.Run("ClientsHaveTheirOwnAllowance", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		l := cache.NewLimiter(b.rdb, b.prefix)
		ctx := context.Background()
		d, err := l.Allow(ctx, "alice", 1, 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
		d, err = l.Allow(ctx, "bob", 1, 1)
		require.NoError(t, err)
		require.True(t, d.Allowed, "bob is not limited by alice's use")
	})

	t.Run("EachKeyHasTheRateItIsAskedWith", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		l := cache.NewLimiter(b.rdb, b.prefix)
		ctx := context.Background()
		for i := range 3 {
			d, err := l.Allow(ctx, "alice", 3, 1)
			require.NoError(t, err)
			require.True(t, d.Allowed, "alice's enqueue %d", i+1)
		}
		d, err := l.Allow(ctx, "alice", 3, 1)
		require.NoError(t, err)
		require.False(t, d.Allowed, "alice's own rate is 3 a minute")
		require.Equal(t, 3, d.Limit)
		for i := range 10 {
			d, err := l.Allow(ctx, "bob", 10, 1)
			require.NoError(t, err)
			require.True(t, d.Allowed, "bob's enqueue %d, at his rate of 10", i+1)
			require.Equal(t, 10, d.Limit)
		}
		d, err = l.Allow(ctx, "carol-bytes", 1<<20, 25<<10)
		require.NoError(t, err)
		require.True(t, d.Allowed, "a byte rate in KiB: 25 MiB of 1 GiB a minute")
		require.Equal(t, 1<<20-25<<10, d.Remaining)
	})

	t.Run("ABatchTakesAllOrNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		l := cache.NewLimiter(b.rdb, b.prefix)
		ctx := context.Background()
		d, err := l.Allow(ctx, "alice", 10, 8)
		require.NoError(t, err)
		require.True(t, d.Allowed)
		d, err = l.Allow(ctx, "alice", 10, 3)
		require.NoError(t, err)
		require.False(t, d.Allowed, "3 more than the 2 left")
		d, err = l.Allow(ctx, "alice", 10, 2)
		require.NoError(t, err)
		require.True(t, d.Allowed, "the refused batch took nothing")
	})

	t.Run("MoreThanAMinuteCanNeverBeGranted", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		l := cache.NewLimiter(b.rdb, b.prefix)
		d, err := l.Allow(context.Background(), "alice", 5, 6)
		require.NoError(t, err)
		require.False(t, d.Allowed)
		require.Negative(t, d.RetryAfter)
	})

	t.Run("KeysAreUnderThePrefix", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		l := cache.NewLimiter(b.rdb, b.prefix)
		_, err := l.Allow(context.Background(), "alice", 5, 1)
		require.NoError(t, err)
		// redis_rate puts its own "rate:" before the key.
		keys, err := b.rdb.Keys(context.Background(), "*"+b.prefix+"*").Result()
		require.NoError(t, err)
		require.Len(t, keys, 1)
		require.Contains(t, keys[0], b.prefix)
		require.True(t, strings.HasSuffix(keys[0], "alice"), keys[0])
	})

	t.Run("FailsOpenWhenRedisIsDown", func(t *testing.T) {
		t.Parallel()
		l := cache.NewLimiter(downClient(t), "x:")
		d, err := l.Allow(context.Background(), "alice", 1, 1)
		require.Error(t, err)
		require.True(t, d.Allowed, "the caller lets the request through")
	})
}
