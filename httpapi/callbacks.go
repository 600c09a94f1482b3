package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/task"
)

// callbackSummary is a task's callback in its view.
type callbackSummary struct {
	URL      string `json:"url"`
	State    string `json:"state"` // pending, delivered or failed
	Attempts int    `json:"attempts"`
}

// newCallbackSummary is the callback to url as tally says it went; nil
// without a url.
func newCallbackSummary(url string, tally taskrunner.CallbackTally) *callbackSummary {
	if url == "" {
		return nil
	}
	return &callbackSummary{URL: url, State: tally.State(), Attempts: tally.Attempts}
}

// callbackSummary is t's callback, its attempts read from the database;
// nil, without a query, when it asked for none.
func (s *Server) callbackSummary(ctx context.Context, t *taskrunner.Task) (*callbackSummary, error) {
	url := task.CallbackURLOf(t)
	if url == "" {
		return nil, nil
	}
	tallies, err := s.deps.Tasks.CallbackTallies(ctx, []int64{t.ID})
	if err != nil {
		return nil, err
	}
	return newCallbackSummary(url, tallies[t.ID]), nil
}

// maxCallbackSummaryBytes bounds the encoding of a callback summary
// besides its URL, for the size of a list page.
const maxCallbackSummaryBytes = 64

// listedCallback is a task of a list page that asked for a callback.
type listedCallback struct {
	index int // in the page
	id    int64
	url   string
}

// addCallbacks completes the encoded taskFields of a list page into
// taskViews: the callbacks of those of them in withURL read in one query,
// and null for the others.
func (s *Server) addCallbacks(ctx context.Context, page []json.RawMessage, withURL []listedCallback) error {
	ids := make([]int64, len(withURL))
	for i, c := range withURL {
		ids[i] = c.id
	}
	tallies, err := s.deps.Tasks.CallbackTallies(ctx, ids)
	if err != nil {
		return err
	}
	summaries := make([]*callbackSummary, len(page))
	for _, c := range withURL {
		summaries[c.index] = newCallbackSummary(c.url, tallies[c.id])
	}
	for i, fields := range page {
		if page[i], err = withCallback(fields, summaries[i]); err != nil {
			return err
		}
	}
	return nil
}

// withCallback is the encoding of a taskView made of the encoding of its
// taskFields and its callback: the same bytes as encoding the taskView.
func withCallback(fields []byte, cb *callbackSummary) ([]byte, error) {
	enc := []byte("null")
	if cb != nil {
		var err error
		if enc, err = encodeJSON(cb); err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, len(fields)+len(`,"callback":`)+len(enc))
	out = append(out, fields[:len(fields)-1]...) // without its closing brace
	out = append(out, `,"callback":`...)
	out = append(out, enc...)
	return append(out, '}'), nil
}

type callbackAttemptList struct {
	Attempts []taskrunner.CallbackAttempt `json:"attempts"`
}

// taskCallbacks lists a task's callback delivery attempts, oldest first.
func (s *Server) taskCallbacks(w http.ResponseWriter, r *http.Request) error {
	id, err := task.ParseID(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	if _, err := s.deps.Tasks.Owned(r.Context(), id); err != nil {
		return err
	}
	attempts, err := s.deps.Tasks.CallbackAttempts(r.Context(), id)
	if err != nil {
		return err
	}
	if attempts == nil {
		attempts = []taskrunner.CallbackAttempt{}
	}
	writeJSON(w, http.StatusOK, callbackAttemptList{Attempts: attempts})
	return nil
}

// CallbackBody returns what a task's callback delivers: the task's view,
// the JSON of GET /tasks/{id} without its runs, artifact ids and callback
// (task.CallbackTasks reads the task for it); maxRuntime is
// TASK_MAX_RUNTIME_SECONDS, the timeout shown for a task that set none.
func CallbackBody(maxRuntime time.Duration) func(t *taskrunner.Task) ([]byte, error) {
	return func(t *taskrunner.Task) ([]byte, error) {
		return json.Marshal(fieldsOf(t, maxRuntime))
	}
}

// CallbackSecrets are the tenants' callback signing secrets
// (jobs.CallbackSecrets).
type CallbackSecrets interface {
	// Current is owner's secret, and its previous one during a rotation.
	Current(ctx context.Context, owner string) (taskrunner.CallbackSecret, error)
	// Rotate starts a rotation of owner's secret and answers as Current.
	Rotate(ctx context.Context, owner string) (taskrunner.CallbackSecret, error)
}

// callbacksDisabled refuses the callback secret routes of a server
// without CALLBACK_SECRET.
var callbacksDisabled = &taskrunner.Error{Code: taskrunner.CodeCallbacksDisabled,
	Message: "callbacks are off on this server (CALLBACK_SECRET is not set)"}

// secretOwner is the tenant whose callback secret a request reads: the
// caller's own, admins included; never another's.
func secretOwner(ctx context.Context) string {
	if t, ok := taskrunner.TenantFrom(ctx); ok && t.Name != "" {
		return t.Name
	}
	return taskrunner.LocalTenant
}

// callbackSecret answers the caller's callback signing secret.
func (s *Server) callbackSecret(w http.ResponseWriter, r *http.Request) error {
	if s.deps.CallbackSecrets == nil {
		return callbacksDisabled
	}
	v, err := s.deps.CallbackSecrets.Current(r.Context(), secretOwner(r.Context()))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, v)
	return nil
}

// rotateCallbackSecret starts a rotation of the caller's callback signing
// secret and answers the new one and the previous. A rotation is a write:
// it counts as one task against the tenant's TASKS_PER_MINUTE.
func (s *Server) rotateCallbackSecret(w http.ResponseWriter, r *http.Request) error {
	if s.deps.CallbackSecrets == nil {
		return callbacksDisabled
	}
	if err := s.admit(w, r, 1); err != nil {
		return err
	}
	owner := secretOwner(r.Context())
	v, err := s.deps.CallbackSecrets.Rotate(r.Context(), owner)
	if err != nil {
		return err
	}
	s.deps.Logger.LogAttrs(r.Context(), slog.LevelInfo, "callback secret rotated", slog.String("event", "callback_secret_rotated"),
		slog.String("tenant", owner))
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, v)
	return nil
}
