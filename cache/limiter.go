package cache

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limiter is the per-minute enqueue limit, kept in Redis so every API
// process shares it (GCRA: up to perMinute at once, refilling evenly over
// the minute).
type Limiter struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
}

// NewLimiter allows perMinute enqueues per client, keyed under prefix.
func NewLimiter(rdb *redis.Client, prefix string, perMinute int) *Limiter {
	return &Limiter{limiter: redis_rate.NewLimiter(rdb), limit: redis_rate.PerMinute(perMinute), prefix: prefix + "rate:"}
}

// Decision is the limiter's answer for one request.
type Decision struct {
	Allowed bool
	// Limit is the number of enqueues a minute.
	Limit int
	// Remaining is how many more the client may enqueue now.
	Remaining int
	// RetryAfter is how long until n more would be allowed; ResetAfter
	// until the client is back to its full allowance.
	RetryAfter time.Duration
	ResetAfter time.Duration
}

// Allow takes n enqueues from client's allowance, or none if fewer than n
// are left. An error means Redis is unavailable: the caller lets the
// request through (fail open) and says so.
func (l *Limiter) Allow(ctx context.Context, client string, n int) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	defer cancel()
	res, err := l.limiter.AllowN(ctx, l.prefix+client, l.limit, n)
	if err != nil {
		return Decision{Allowed: true, Limit: l.limit.Rate}, err
	}
	d := Decision{
		Allowed: res.Allowed >= n && n > 0, Limit: l.limit.Rate, Remaining: res.Remaining,
		RetryAfter: res.RetryAfter, ResetAfter: res.ResetAfter,
	}
	if n > l.limit.Burst {
		// More than a minute's allowance can never be granted at once.
		d.RetryAfter = -1
	}
	return d, nil
}
