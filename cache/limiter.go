package cache

import (
	"cmp"
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/taskrunner/taskrunner/metrics"
)

// Limiter is a per-minute limit kept in Redis so every API process shares
// it (GCRA: up to a minute's allowance at once, refilling evenly over the
// minute). Each call names its key and its rate, so every tenant may have
// its own: the enqueue limit and the artifact byte rate use it.
type Limiter struct {
	limiter *redis_rate.Limiter
	prefix  string
}

// TenantKey is the key a tenant's enqueue allowance is counted under: by
// the API for the requests of its keys, and by the schedules for their
// ticks, so both draw on one allowance.
func TenantKey(tenant string) string { return "tenant:" + tenant }

// NewLimiter returns a limiter keeping its keys under prefix.
func NewLimiter(rdb *redis.Client, prefix string) *Limiter {
	return &Limiter{limiter: redis_rate.NewLimiter(rdb), prefix: prefix + "rate:"}
}

// Decision is the limiter's answer for one request.
type Decision struct {
	Allowed bool
	// Limit is the allowance a minute.
	Limit int
	// Remaining is how much more may be taken now.
	Remaining int
	// RetryAfter is how long until n more would be allowed (negative: n
	// never fits); ResetAfter until the key is back to its full allowance.
	RetryAfter time.Duration
	ResetAfter time.Duration
}

// Allow takes n from key's allowance of perMinute a minute, or none if
// fewer than n are left. An error means Redis is unavailable: the caller
// lets the request through (fail open) and says so.
func (l *Limiter) Allow(ctx context.Context, key string, perMinute, n int) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	defer cancel()
	limit := redis_rate.PerMinute(perMinute)
	res, err := l.limiter.AllowN(ctx, l.prefix+key, limit, n)
	if err != nil {
		return Decision{Allowed: true, Limit: perMinute}, err
	}
	d := Decision{
		Allowed: res.Allowed >= n && n > 0, Limit: perMinute, Remaining: res.Remaining,
		RetryAfter: res.RetryAfter, ResetAfter: res.ResetAfter,
	}
	if n > limit.Burst {
		// More than a minute's allowance can never be granted at once.
		d.RetryAfter = -1
	}
	return d, nil
}

// LimiterWarnEvery spaces the warnings that the limiter is unavailable.
const LimiterWarnEvery = 10 * time.Second

// FailOpen is what a Limiter's callers do while its Redis is unavailable:
// let through what was asked (an enqueue, an upload, a schedule's tick),
// count each in the metric, and log rate_limiter_unavailable at most every
// LimiterWarnEvery, not once for each.
type FailOpen struct {
	logger  *slog.Logger
	metrics *metrics.Metrics
	message string
	warned  atomic.Int64 // when it was last said, in Unix nanoseconds
}

// NewFailOpen returns a FailOpen whose warning is message (what is let
// through); logger and m may be nil.
func NewFailOpen(logger *slog.Logger, m *metrics.Metrics, message string) *FailOpen {
	return &FailOpen{logger: cmp.Or(logger, slog.New(slog.DiscardHandler)), metrics: m, message: message}
}

// LetThrough counts one thing let through because the limiter failed
// with err, and says so unless it was said less than LimiterWarnEvery ago.
func (f *FailOpen) LetThrough(ctx context.Context, err error) {
	now := time.Now().UnixNano()
	if last := f.warned.Load(); now-last >= int64(LimiterWarnEvery) && f.warned.CompareAndSwap(last, now) {
		f.logger.WarnContext(ctx, f.message, slog.String("event", "rate_limiter_unavailable"), slog.String("error", err.Error()))
	}
	f.metrics.LimiterUnavailable()
}
