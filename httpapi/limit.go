package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/config"
)

// Limiter is the per-minute limit kept in Redis for every API process
// (cache.Limiter in production): the enqueue limit and the artifact byte
// rate, each key at its own rate.
type Limiter interface {
	Allow(ctx context.Context, key string, perMinute, n int) (cache.Decision, error)
}

// tenantOf names the tenant a request acts for: the context's tenant
// (the API key's name), or local when it has none.
func tenantOf(ctx context.Context) string {
	if t, ok := taskrunner.TenantFrom(ctx); ok && t.Name != "" {
		return t.Name
	}
	return taskrunner.LocalTenant
}

// callerName names the tenant a request acts for in its log line: "" for
// a request without one (refused before authentication, or /health).
func callerName(ctx context.Context) string {
	t, _ := taskrunner.TenantFrom(ctx)
	return t.Name
}

// limitKey is what a request's per-tenant limits are counted under: its
// tenant, so that all keys of one name share them; without keys (the
// tenant local) each client address on its own, as before tenants.
func limitKey(ctx context.Context) string {
	if t, ok := taskrunner.TenantFrom(ctx); ok && t.Addr != "" {
		return "addr:" + t.Addr
	}
	return cache.TenantKey(tenantOf(ctx))
}

// admit takes n enqueues from the tenant's allowance (its own
// TASKS_PER_MINUTE from TENANT_LIMITS, or the global one), sets the
// RateLimit headers, and refuses with 429 and Retry-After when too few are
// left. When the limiter's Redis is down the request goes through (fail
// open), and the log says so.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, n int) error {
	if s.deps.Limiter == nil {
		return nil
	}
	tenant := tenantOf(r.Context())
	d, err := s.deps.Limiter.Allow(r.Context(), limitKey(r.Context()), s.deps.Limits.TasksPerMinuteFor(tenant), n)
	if err != nil {
		s.limiterDown.LetThrough(r.Context(), err)
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
		slog.String("limit", "enqueue"), slog.String("tenant", tenant), slog.Int("tasks", n), slog.Int("retry_after_s", retry))
	s.deps.Metrics.RateLimited()
	return &taskrunner.Error{Code: taskrunner.CodeRateLimitExceeded, Message: msg}
}

// Artifact bytes are counted in KiB, so a minute's allowance of even many
// GiB is a small number for the limiter.
const (
	kib = 1 << 10
	// meterStep is how many bytes of an upload of unknown size are read
	// before they are counted: one limiter call per step, not per read.
	meterStep = 256 * kib
	// minUploadCost is the least an upload costs, whatever its size: an
	// empty one still takes a slot, a row and a request to MinIO.
	minUploadCost = config.ArtifactUploadMinCostKiB * kib
)

// uploadMeter counts an upload's bytes against its tenant's
// ARTIFACT_MB_PER_MINUTE. begin counts minUploadCost, which every upload
// costs, refused or not, before anything else is done. A declared size
// is counted at the first read, in full, before any byte is stored; an
// unknown size as it is read, in steps of meterStep. (An upload refused
// before its body is read, such as one for a task at TASK_MAX_ARTIFACTS,
// thus costs only the minimum, whatever it declared.) Over the allowance
// begin or the read fails and refused holds the 429 to answer with (the
// upload is then removed by the artifact service). When the limiter is
// unavailable the upload goes through.
type uploadMeter struct {
	s        *Server
	w        http.ResponseWriter
	ctx      context.Context
	tenant   string
	body     io.Reader
	declared int64 // -1: unknown
	started  bool
	read     int64 // bytes read
	charged  int64 // bytes counted
	open     bool  // stop counting: the limiter is unavailable
	refused  *taskrunner.Error
}

// meterUpload wraps body (of declared length size, -1 if unknown; nil
// until the body is known) in the request's tenant's byte allowance.
// Call begin before reading.
func (s *Server) meterUpload(w http.ResponseWriter, r *http.Request, body io.Reader, size int64) *uploadMeter {
	return &uploadMeter{s: s, w: w, ctx: r.Context(), tenant: tenantOf(r.Context()), body: body, declared: size,
		open: s.deps.Limiter == nil}
}

// begin counts minUploadCost, the least an upload costs; it returns the
// refusal when the allowance has less left.
func (m *uploadMeter) begin() error {
	if !m.count(minUploadCost) {
		return m.refused
	}
	return nil
}

func (m *uploadMeter) Read(p []byte) (int, error) {
	if m.refused != nil {
		return 0, m.refused
	}
	if !m.started {
		m.started = true
		if m.declared > m.charged && !m.count(m.declared-m.charged) {
			return 0, m.refused
		}
	}
	n, err := m.body.Read(p)
	m.read += int64(n)
	if m.declared < 0 && !m.open {
		uncounted := m.read - m.charged
		if (uncounted >= meterStep || (errors.Is(err, io.EOF) && uncounted > 0)) && !m.count(uncounted) {
			return 0, m.refused
		}
	}
	return n, err
}

// count takes n bytes from the tenant's allowance and reports whether
// they were granted.
func (m *uploadMeter) count(n int64) bool {
	if m.open {
		return true
	}
	perMinute := m.s.deps.Limits.ArtifactMBPerMinute * 1024
	d, err := m.s.deps.Limiter.Allow(m.ctx, "bytes:"+limitKey(m.ctx), perMinute, int((n+kib-1)/kib))
	if err != nil {
		m.s.limiterDown.LetThrough(m.ctx, err)
		m.open = true
		return true
	}
	if d.Allowed {
		m.charged += n
		return true
	}
	retry := max(ceilSeconds(d.RetryAfter), 1)
	if d.RetryAfter < 0 {
		retry = 60
	}
	m.w.Header().Set("Retry-After", strconv.Itoa(retry))
	m.s.deps.Logger.LogAttrs(m.ctx, slog.LevelInfo, "artifact upload rate limited", slog.String("event", "rate_limited"),
		slog.String("limit", "artifact_bytes"), slog.String("tenant", m.tenant), slog.Int64("bytes", n),
		slog.Int("retry_after_s", retry))
	m.refused = &taskrunner.Error{Code: taskrunner.CodeRateLimitExceeded,
		Message: fmt.Sprintf("%d MB of artifacts per minute (ARTIFACT_MB_PER_MINUTE); retry in %ds", m.s.deps.Limits.ArtifactMBPerMinute, retry)}
	return false
}

// result is the upload's outcome: the refusal when the allowance ran
// out (whatever error the store made of the failed read), else err.
func (m *uploadMeter) result(err error) error {
	if err != nil && m.refused != nil {
		return m.refused
	}
	return err
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}
