package httpapi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/taskrunner/taskrunner"
)

// What this file guards against: one tenant's uploads costing the others.
// Every upload holds buffers of its own while its body arrives, so their
// number is bounded per process (MAX_CONCURRENT_UPLOADS) and, within it,
// per tenant (TENANT_MAX_UPLOADS), so that no tenant holds every slot; and
// a body that sends nothing for UPLOAD_IDLE_TIMEOUT_SECONDS gives its slot
// back then, not at HTTP_READ_TIMEOUT_SECONDS.

// uploadRetryAfter is the Retry-After of a refused upload, in seconds.
const uploadRetryAfter = 1

// takeUploadSlot takes one of the request's tenant's TENANT_MAX_UPLOADS
// slots, then one of the process's MAX_CONCURRENT_UPLOADS, or refuses with
// 503 too_many_uploads and Retry-After when either has none free. The
// slots are given back by calling release.
//
// A tenant over its own share gets the same answer as a full process, as
// TENANT_MAX_WAITERS does: both mean "retry shortly", the message says
// which bound it was, and clients that handle too_many_uploads today keep
// working.
func (s *Server) takeUploadSlot(w http.ResponseWriter, r *http.Request) (release func(), err error) {
	ctx := r.Context()
	tenant, key := tenantOf(ctx), limitKey(ctx)
	limit := s.deps.Limits.MaxUploadsFor(tenant)
	s.tenantUploadsMu.Lock()
	if s.tenantUploads[key] >= limit {
		s.tenantUploadsMu.Unlock()
		s.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "tenant sends its maximum of uploads", slog.String("event", "rate_limited"),
			slog.String("limit", "uploads"), slog.String("tenant", tenant), slog.Int("max_uploads", limit))
		return nil, tooManyUploads(w, fmt.Sprintf("this tenant sends at most %d uploads at once (TENANT_MAX_UPLOADS); retry shortly", limit))
	}
	s.tenantUploads[key]++
	s.tenantUploadsMu.Unlock()
	var once sync.Once
	releaseTenant := func() {
		once.Do(func() {
			s.tenantUploadsMu.Lock()
			defer s.tenantUploadsMu.Unlock()
			if s.tenantUploads[key]--; s.tenantUploads[key] <= 0 {
				delete(s.tenantUploads, key)
			}
		})
	}
	select {
	case s.uploads <- struct{}{}:
		return func() { <-s.uploads; releaseTenant() }, nil
	default:
		releaseTenant()
		return nil, tooManyUploads(w, fmt.Sprintf("this server receives at most %d uploads at once (MAX_CONCURRENT_UPLOADS); retry shortly", cap(s.uploads)))
	}
}

func tooManyUploads(w http.ResponseWriter, msg string) error {
	w.Header().Set("Retry-After", strconv.Itoa(uploadRetryAfter))
	return &taskrunner.Error{Code: taskrunner.CodeTooManyUploads, Message: msg}
}

// idleBody is an upload's body that fails when nothing arrives for idle:
// before each read it moves the connection's read deadline to idle from
// now, but never past end, the whole request's read deadline
// (HTTP_READ_TIMEOUT_SECONDS, counted from when the handler started).
type idleBody struct {
	body    io.Reader
	rc      *http.ResponseController
	idle    time.Duration
	end     time.Time
	done    bool // the body ended or failed: net/http owns the deadline again
	stalled bool // the idle deadline cut the body
}

// idleCut is r's body, cut when it sends nothing for
// UPLOAD_IDLE_TIMEOUT_SECONDS.
func (s *Server) idleCut(w http.ResponseWriter, r *http.Request) *idleBody {
	return &idleBody{body: r.Body, rc: http.NewResponseController(w), idle: s.deps.Limits.UploadIdleTimeout,
		end: time.Now().Add(s.deps.Limits.HTTPReadTimeout)}
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.done {
		// Once the body has ended net/http lifts the deadline and watches
		// the connection itself: a deadline set now would end the request.
		return b.body.Read(p)
	}
	deadline := time.Now().Add(b.idle)
	idleBinds := deadline.Before(b.end)
	if !idleBinds {
		deadline = b.end
	}
	if err := b.rc.SetReadDeadline(deadline); err != nil {
		b.done = true // a connection that cannot: the server's own deadline holds
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.done = true
		if idleBinds && errors.Is(err, os.ErrDeadlineExceeded) {
			b.stalled = true
		}
	}
	return n, err
}

// result is the upload's outcome: upload_stalled when the idle deadline
// cut its body (whatever error the store made of the failed read), else
// err.
func (b *idleBody) result(err error) error {
	if err != nil && b.stalled {
		return &taskrunner.Error{Code: taskrunner.CodeUploadStalled, Message: fmt.Sprintf(
			"the body sent nothing for %s (UPLOAD_IDLE_TIMEOUT_SECONDS); nothing was stored", b.idle)}
	}
	return err
}
