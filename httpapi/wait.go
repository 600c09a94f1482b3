package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/task"
)

// Bounds on requests that wait for a task.
const (
	// MaxWait is the longest ?wait= a GET /tasks/{id} may ask for.
	MaxWait = 60 * time.Second
	// maxEventStream is how long one event stream stays open; clients
	// reconnect after it.
	maxEventStream = 30 * time.Minute
	// recheckEvery re-reads a waited task even without a notification, in
	// case one was missed while the watcher reconnected.
	recheckEvery = 5 * time.Second
	// keepAliveEvery sends a comment on an idle event stream so proxies
	// keep it open.
	keepAliveEvery = 15 * time.Second
)

// parseWait reads ?wait= as a Go duration ("30s") or a number of seconds.
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil || math.IsNaN(secs) {
			return 0, &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: "wait",
				Message: `wait must be a duration such as "30s" or a number of seconds`}
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 || d > MaxWait {
		return 0, &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: "wait",
			Message: fmt.Sprintf("wait must be between 0s and %s", MaxWait)}
	}
	return d, nil
}

// watch subscribes to a task's changes, or refuses with too_many_waiters
// when the request's tenant holds its TENANT_MAX_WAITERS in this process,
// or the process its MAX_WAITERS.
func (s *Server) watch(ctx context.Context, id int64) (wake <-chan struct{}, stop func(), err error) {
	if s.deps.Watcher == nil {
		return nil, nil, &taskrunner.Error{Code: taskrunner.CodeDependencyUnavailable, Message: "waiting on tasks is not available here"}
	}
	key := limitKey(ctx)
	release, err := s.takeTenantWaiter(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	wake, stopWatch, err := s.deps.Watcher.Subscribe(id)
	if err != nil {
		release()
		return nil, nil, err
	}
	return wake, func() { stopWatch(); release() }, nil
}

// takeTenantWaiter counts one more waiter of key, or refuses when it holds
// TENANT_MAX_WAITERS already.
func (s *Server) takeTenantWaiter(ctx context.Context, key string) (release func(), err error) {
	limit := s.deps.Limits.TenantMaxWaiters
	s.waitersMu.Lock()
	defer s.waitersMu.Unlock()
	if s.waiters[key] >= limit {
		s.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "tenant holds its maximum of waiters", slog.String("event", "rate_limited"),
			slog.String("limit", "waiters"), slog.String("tenant", tenantOf(ctx)), slog.Int("max_waiters", limit))
		return nil, &taskrunner.Error{Code: taskrunner.CodeTooManyWaiters, Message: fmt.Sprintf(
			"this tenant holds its maximum of %d long polls and event streams (TENANT_MAX_WAITERS); retry shortly or poll", limit)}
	}
	s.waiters[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.waitersMu.Lock()
			defer s.waitersMu.Unlock()
			if s.waiters[key]--; s.waiters[key] <= 0 {
				delete(s.waiters, key)
			}
		})
	}, nil
}

// getTask returns a task; with ?wait= it holds the request until the task
// finishes or the wait ends, then returns it as it is.
func (s *Server) getTask(w http.ResponseWriter, r *http.Request) error {
	id, err := task.ParseID(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.deps.RequestTimeout+wait)
	defer cancel()
	var wake <-chan struct{}
	if wait > 0 {
		// Subscribe before the first read, so no change falls between.
		var stop func()
		if wake, stop, err = s.watch(r.Context(), id); err != nil {
			return err
		}
		defer stop()
	}
	d, err := s.deps.Tasks.Get(ctx, id)
	if err != nil {
		return err
	}
	if wake != nil && !taskrunner.Finished(d.Status) {
		d, err = s.waitFinished(ctx, wake, id, wait, d)
		if err != nil {
			return err
		}
	}
	v, err := s.detailView(ctx, d)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// waitFinished re-reads the task whenever it may have changed, until it is
// finished or wait has passed.
func (s *Server) waitFinished(ctx context.Context, wake <-chan struct{}, id int64, wait time.Duration, d *taskrunner.Task) (*taskrunner.Task, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	recheck := time.NewTicker(recheckEvery)
	defer recheck.Stop()
	for !taskrunner.Finished(d.Status) {
		select {
		case <-timer.C:
			return d, nil
		case <-ctx.Done():
			return d, nil
		case <-wake:
		case <-recheck.C:
		}
		next, err := s.deps.Tasks.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		d = next
	}
	return d, nil
}

// eventID is the id of an event stream's event: the task's attempt, the
// sequence number of the last progress of that attempt the client was
// sent (0 for none) and its status, as "<attempt>-<seq>-<status>". Both
// numbers only grow and a status only moves on, so an id names how far a
// client got; Last-Event-ID brings it back there.
type eventID struct {
	attempt int
	seq     int64
	status  taskrunner.Status
}

func (e eventID) String() string { return fmt.Sprintf("%d-%d-%s", e.attempt, e.seq, e.status) }

// parseEventID reads a Last-Event-ID; ok is false for one this server did
// not send, which is then ignored (the stream starts over).
func parseEventID(v string) (e eventID, ok bool) {
	parts := strings.SplitN(v, "-", 3)
	if len(parts) != 3 {
		return eventID{}, false
	}
	attempt, err1 := strconv.Atoi(parts[0])
	seq, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || attempt < 0 || seq < 0 || parts[2] == "" {
		return eventID{}, false
	}
	return eventID{attempt: attempt, seq: seq, status: taskrunner.Status(parts[2])}, true
}

// taskEvents streams a task's state changes and progress as server-sent
// events until it finishes: an event "state" with the task each time its
// status or attempt changes, an event "progress" each time its worker
// reports progress, then an event "end". Every event has an id; a client
// that reconnects with Last-Event-ID is sent only what is newer than it,
// and always the final state of a finished task.
func (s *Server) taskEvents(w http.ResponseWriter, r *http.Request) error {
	id, err := task.ParseID(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return &taskrunner.Error{Code: taskrunner.CodeInternal, Message: "streaming is not supported here"}
	}
	wake, stop, err := s.watch(r.Context(), id)
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(r.Context(), maxEventStream)
	defer cancel()
	d, err := s.deps.Tasks.Get(ctx, id)
	if err != nil {
		return err
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	// sent is what the client has: the id of its last event. A state
	// event carries the task's progress too; progressSent is the seq of
	// the last progress event, or of the one the client resumed from.
	var sent eventID
	var progressSent int64
	send := func(event string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\nid: %s\ndata: %s\n\n", event, sent, data); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	// fail tells the client why the stream ends, in an event "error".
	fail := func(err error) {
		_ = send("error", errorDetail{Code: asError(err).Code, Message: asError(err).Message})
	}
	// update sends what of d the client does not have yet.
	update := func(d *taskrunner.Task, first bool) error {
		p := taskrunner.ProgressOf(d)
		var seq int64
		if p != nil {
			seq = p.Seq
		}
		if d.Attempt != sent.attempt {
			progressSent = 0 // a new attempt starts its progress over
		}
		if first || d.Status != sent.status || d.Attempt != sent.attempt || taskrunner.Finished(d.Status) {
			v, err := s.detailView(ctx, d)
			if err != nil {
				fail(err)
				return err
			}
			sent = eventID{attempt: d.Attempt, seq: seq, status: d.Status}
			if err := send("state", v); err != nil {
				return err
			}
		}
		if p != nil && seq != progressSent && !taskrunner.Finished(d.Status) {
			sent.seq, progressSent = seq, seq
			return send("progress", p)
		}
		return nil
	}
	first := true
	if last, ok := parseEventID(r.Header.Get("Last-Event-ID")); ok {
		sent, progressSent, first = last, last.seq, false
	}
	if err := update(d, first); err != nil {
		return nil //nolint:nilerr // the client left, or was told why not
	}
	recheck := time.NewTicker(recheckEvery)
	defer recheck.Stop()
	keepAlive := time.NewTicker(keepAliveEvery)
	defer keepAlive.Stop()
	for !taskrunner.Finished(sent.status) {
		select {
		case <-ctx.Done():
			return nil
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil //nolint:nilerr // the client left
			}
			flusher.Flush()
			continue
		case <-wake:
		case <-recheck.C:
		}
		next, err := s.deps.Tasks.Get(ctx, id)
		if err != nil {
			fail(err)
			return nil
		}
		if err := update(next, false); err != nil {
			return nil //nolint:nilerr // the client left
		}
	}
	_ = send("end", map[string]string{"status": string(sent.status)})
	return nil
}
