package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/cache"
)

// limiterWarnEvery spaces the warnings that the limiter is unavailable.
const limiterWarnEvery = 10 * time.Second

// Limiter is the per-minute enqueue limit (cache.Limiter in production).
type Limiter interface {
	Allow(ctx context.Context, client string, n int) (cache.Decision, error)
}

// admit takes n enqueues from the client's allowance, sets the RateLimit
// headers, and refuses with 429 and Retry-After when too few are left.
// When the limiter's Redis is down the request goes through (fail open),
// and the log says so.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, n int) error {
	if s.deps.Limiter == nil {
		return nil
	}
	client := clientOf(r.Context())
	d, err := s.deps.Limiter.Allow(r.Context(), client, n)
	if err != nil {
		// Said at most every limiterWarnEvery, not for every request while
		// Redis is down; the metric counts them all.
		now := time.Now().UnixNano()
		if last := s.limiterWarned.Load(); now-last >= int64(limiterWarnEvery) && s.limiterWarned.CompareAndSwap(last, now) {
			s.deps.Logger.WarnContext(r.Context(), "enqueue limiter unavailable; letting requests through",
				slog.String("event", "rate_limiter_unavailable"), slog.String("error", err.Error()))
		}
		s.deps.Metrics.LimiterUnavailable()
		return nil
	}
	h := w.Header()
	h.Set("RateLimit-Policy", fmt.Sprintf(`"enqueue";q=%d;w=60`, d.Limit))
	h.Set("RateLimit", fmt.Sprintf(`"enqueue";r=%d;t=%d`, d.Remaining, ceilSeconds(d.ResetAfter)))
	if d.Allowed {
		return nil
	}
	retry := ceilSeconds(d.RetryAfter)
	msg := fmt.Sprintf("%d tasks per minute; retry in %ds", d.Limit, retry)
	if d.RetryAfter < 0 {
		retry = 60
		msg = fmt.Sprintf("%d tasks per minute: a request of %d tasks can never fit; send fewer at a time", d.Limit, n)
	}
	h.Set("Retry-After", strconv.Itoa(retry))
	s.deps.Logger.LogAttrs(r.Context(), slog.LevelInfo, "enqueue rate limited", slog.String("event", "rate_limited"),
		slog.String("tenant", client), slog.Int("tasks", n), slog.Int("retry_after_s", retry))
	s.deps.Metrics.RateLimited()
	return &taskrunner.Error{Code: taskrunner.CodeRateLimitExceeded, Message: msg}
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}
