package httpapi

import (
	"context"
	"encoding/json"
	"net/http"

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

// callbackSummary is d's callback, nil when it asked for none.
func (s *Server) callbackSummary(ctx context.Context, d *taskrunner.Task) (*callbackSummary, error) {
	url := task.CallbackURLOf(d)
	if url == "" {
		return nil, nil
	}
	attempts, err := s.deps.Tasks.CallbackAttempts(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	return &callbackSummary{URL: url, State: taskrunner.CallbackState(attempts), Attempts: len(attempts)}, nil
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

// CallbackBody is what a task's callback delivers: the task's view, the
// JSON of GET /tasks/{id} without its runs, artifact ids and callback
// (task.CallbackTasks reads the task for it).
func CallbackBody(t *taskrunner.Task) ([]byte, error) {
	return json.Marshal(viewOf(t))
}
