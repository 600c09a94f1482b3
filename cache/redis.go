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

// LibraryLogger is go-redis's own messages (dial failures, pool trouble)
// as warn lines with event redis_log on a *slog.Logger, instead of plain
// text on stderr. go-redis has one logger per process, which only the
// process sets (redis.SetLogger); this package never does.
type LibraryLogger struct{ Logger *slog.Logger }

// Printf logs one go-redis message.
func (l LibraryLogger) Printf(ctx context.Context, format string, v ...any) {
	l.Logger.WarnContext(ctx, fmt.Sprintf(format, v...), slog.String("event", "redis_log"))
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
