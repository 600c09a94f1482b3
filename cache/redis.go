// Package cache is taskrunner's Redis: the search cache and the per-minute
// enqueue limiter. Redis is never the queue, and every use of it has a
// short deadline and a fallback, so taskrunner keeps working without it.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts for Redis calls: much shorter than a request's, since every
// caller can do without Redis.
const (
	DefaultDialTimeout = 500 * time.Millisecond
	DefaultCallTimeout = 250 * time.Millisecond
)

// NewClient returns a Redis client for url (redis://host:port/db). It does
// not connect until first used. The error never repeats the URL, which may
// hold a password.
func NewClient(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("parse REDIS_URL: not a redis:// URL")
	}
	opts.DialTimeout = DefaultDialTimeout
	opts.ReadTimeout = DefaultCallTimeout
	opts.WriteTimeout = DefaultCallTimeout
	opts.MaxRetries = 1
	return redis.NewClient(opts), nil
}

// SetLogger sends the Redis client library's own messages (dial failures,
// pool trouble) to logger as JSON lines with an event, instead of plain
// text on stderr. The library has one logger per process.
func SetLogger(logger *slog.Logger) {
	redis.SetLogger(redisLogger{logger})
}

type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.WarnContext(ctx, fmt.Sprintf(format, v...), slog.String("event", "redis_log"))
}

// Ping checks that Redis answers.
func Ping(ctx context.Context, rdb *redis.Client) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout*2)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}
