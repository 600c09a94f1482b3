package cache

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// SearchCache keeps search providers' answers in Redis under a key prefix.
// Every call has a short deadline; errors mean Redis is unavailable, and
// callers search uncached.
type SearchCache struct {
	rdb    *redis.Client
	prefix string
}

// NewSearchCache returns a cache storing keys under prefix (e.g.
// "taskrunner:").
func NewSearchCache(rdb *redis.Client, prefix string) *SearchCache {
	return &SearchCache{rdb: rdb, prefix: prefix}
}

// Get returns the value at key; ok is false on a miss.
func (c *SearchCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	defer cancel()
	val, err := c.rdb.Get(ctx, c.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return val, true, nil
}

// Set stores val at key for ttl.
func (c *SearchCache) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	defer cancel()
	return c.rdb.Set(ctx, c.prefix+key, val, ttl).Err()
}
