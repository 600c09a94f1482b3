package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/task"
)

// taskFields are a task's own fields: its view without the callback, and
// the body a callback delivers.
type taskFields struct {
	ID              int64             `json:"id"`
	TaskID          int64             `json:"task_id"` // id, under the name earlier clients read
	Type            string            `json:"type"`
	Status          taskrunner.Status `json:"status"`
	Params          json.RawMessage   `json:"params"`
	Result          json.RawMessage   `json:"result"`
	Error           *taskError        `json:"error"`
	Attempt         int               `json:"attempt"`
	MaxAttempts     int               `json:"max_attempts"`
	MaxRetries      int               `json:"max_retries"`
	Priority        int               `json:"priority"`
	Queue           string            `json:"queue"`
	Owner           string            `json:"owner"`
	TimeoutSeconds  *float64          `json:"timeout_seconds"`
	CancelRequested bool              `json:"cancel_requested"`
	// Schedule is the name of the schedule that enqueued the task; nil
	// for a task a client submitted.
	Schedule    *string    `json:"schedule"`
	CreatedAt   time.Time  `json:"created_at"`
	ScheduledAt time.Time  `json:"scheduled_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	// Progress is the latest progress the current attempt reported; nil
	// when it reported none.
	Progress *taskrunner.Progress `json:"progress"`
}

// taskView is a task as the API shows it.
type taskView struct {
	taskFields
	// Callback is the task's callback; nil when it asked for none.
	Callback *callbackSummary `json:"callback"`
}

// taskDetailView is one task with its runs and artifacts (GET /tasks/{id}).
type taskDetailView struct {
	taskView
	Runs []taskrunner.Run `json:"runs"`
	// ArtifactIDs are the first of the task's ArtifactCount artifacts,
	// oldest first: task.MaxArtifactIDs at most.
	ArtifactIDs   []string `json:"artifact_ids"`
	ArtifactCount int      `json:"artifact_count"`
}

type taskError struct {
	Code    taskrunner.Code `json:"code"`
	Message string          `json:"message"`
}

// fieldsOf is t's fields as the API shows them; maxRuntime is the timeout
// shown for a task that set none (TASK_MAX_RUNTIME_SECONDS).
func fieldsOf(t *taskrunner.Task, maxRuntime time.Duration) taskFields {
	v := taskFields{
		ID: t.ID, TaskID: t.ID, Type: t.Type, Status: t.Status, Params: publicParams(t.Params), Result: t.Result,
		Attempt: t.Attempt, MaxAttempts: t.MaxAttempts, MaxRetries: t.MaxAttempts - 1, Priority: t.Priority,
		Queue: t.Queue, Owner: t.Owner, TimeoutSeconds: t.TimeoutSeconds, CreatedAt: t.CreatedAt, ScheduledAt: t.ScheduledAt,
		StartedAt: t.StartedAt, FinishedAt: t.FinishedAt, Progress: taskrunner.ProgressOf(t),
	}
	if v.TimeoutSeconds == nil {
		seconds := maxRuntime.Seconds()
		v.TimeoutSeconds = &seconds
	}
	// River marks a cancel request in the metadata; most tasks have none,
	// and a batch answer shows fifty tasks, so look before decoding.
	if bytes.Contains(t.Metadata, []byte(`"cancel_attempted_at"`)) {
		var meta struct {
			CancelAttemptedAt *time.Time `json:"cancel_attempted_at"`
		}
		if json.Unmarshal(t.Metadata, &meta) == nil && meta.CancelAttemptedAt != nil {
			v.CancelRequested = true
		}
	}
	v.Schedule = scheduleOf(t.Metadata)
	if t.ErrorCode != nil && t.Status != taskrunner.StatusCompleted {
		// The code and public message travel as data, from the task's runs;
		// River's own error text (hosts, types) is never shown.
		v.Error = &taskError{Code: *t.ErrorCode}
		if t.Error != nil {
			v.Error.Message = *t.Error
		}
		if v.Error.Message == "" {
			v.Error.Message = taskrunner.PublicMessage(v.Error.Code, nil)
		}
	}
	return v
}

// scheduleOf is the name of the schedule whose tick enqueued a task, from
// its metadata; nil for most tasks, which no schedule enqueued, without
// decoding.
func scheduleOf(metadata json.RawMessage) *string {
	if !bytes.Contains(metadata, []byte(`"schedule"`)) {
		return nil
	}
	var meta struct {
		Schedule string `json:"schedule"`
	}
	if json.Unmarshal(metadata, &meta) != nil || meta.Schedule == "" {
		return nil
	}
	return &meta.Schedule
}

// publicParams are a task's params as its client sent them: without the
// idempotency key River stores beside them, which names the client.
func publicParams(params json.RawMessage) json.RawMessage {
	if !bytes.Contains(params, []byte(`"idempotency_key"`)) {
		return params
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(params, &m) != nil {
		return params
	}
	delete(m, "idempotency_key")
	out, err := json.Marshal(m)
	if err != nil {
		return params
	}
	return out
}

func (s *Server) submitTask(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, s.deps.Limits.MaxRequestBodyBytes)
	if err != nil {
		return err
	}
	req, err := decodeTaskRequest(body)
	if err != nil {
		return err
	}
	return s.enqueue(w, r, req)
}

// enqueue validates a task request, takes it from the client's allowance
// and submits it, honouring Idempotency-Key: 202 for a new task, 200 with
// the first task for a repeated key.
func (s *Server) enqueue(w http.ResponseWriter, r *http.Request, req *task.Request) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	params, err := s.deps.Tasks.Validate(req)
	if err != nil {
		return err // refused before it counts against the limit
	}
	if err := s.admit(w, r, 1); err != nil {
		return err
	}
	t, existing, err := s.deps.Tasks.Insert(r.Context(), params, key)
	if err != nil {
		return err
	}
	status, v := http.StatusAccepted, s.newTaskView(t)
	if existing {
		// The first task's callback may have been tried since.
		status = http.StatusOK
		if v, err = s.taskView(r.Context(), t); err != nil {
			return err
		}
	} else {
		s.deps.Metrics.TaskEnqueued(t.Type, tenantOf(r.Context()))
	}
	w.Header().Set("Location", "/tasks/"+strconv.FormatInt(t.ID, 10))
	writeTaskViews(w, status, false, v)
	return nil
}

// idempotencyKey reads the Idempotency-Key header, scoped to the tenant so
// one tenant's keys never find another's tasks (and a rotated key finds
// its tenant's).
func idempotencyKey(r *http.Request) (string, error) {
	k := r.Header.Get("Idempotency-Key")
	if k == "" {
		return "", nil
	}
	if len(k) > task.MaxIdempotencyKeyLength || strings.ContainsFunc(k, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		return "", &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: "Idempotency-Key",
			Message: fmt.Sprintf("Idempotency-Key must be 1 to %d visible ASCII characters", task.MaxIdempotencyKeyLength)}
	}
	return tenantOf(r.Context()) + "/" + k, nil
}

// batchRequest is a POST /tasks/batch body.
type batchRequest struct {
	Tasks []task.Request `json:"tasks"`
}

type batchBody struct {
	Tasks []taskView `json:"tasks"`
}

// submitBatch enqueues up to MAX_BATCH_SIZE tasks in one transaction: all
// or none. A batch of N counts N against the limit.
func (s *Server) submitBatch(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, s.deps.Limits.MaxRequestBodyBytes)
	if err != nil {
		return err
	}
	req, err := decodeBatchRequest(body)
	if err != nil {
		return err
	}
	params, err := s.deps.Tasks.ValidateBatch(req.Tasks, s.deps.Limits.MaxBatchSize)
	if err != nil {
		return err
	}
	if err := s.admit(w, r, len(params)); err != nil {
		return err
	}
	tasks, err := s.deps.Tasks.SubmitBatch(r.Context(), params)
	if err != nil {
		return err
	}
	views := make([]taskView, len(tasks))
	tenant, counted := tenantOf(r.Context()), 0
	for i := range tasks {
		views[i] = s.newTaskView(&tasks[i])
		// Counted by runs of one type: one look-up of the labels for most
		// batches.
		if i == len(tasks)-1 || tasks[i+1].Type != tasks[i].Type {
			s.deps.Metrics.TasksEnqueued(tasks[i].Type, tenant, i+1-counted)
			counted = i + 1
		}
	}
	writeTaskViews(w, http.StatusAccepted, true, views...)
	return nil
}

// fieldsOf is t's fields with this server's TASK_MAX_RUNTIME_SECONDS.
func (s *Server) fieldsOf(t *taskrunner.Task) taskFields {
	return fieldsOf(t, s.deps.Tasks.MaxRuntime())
}

// newTaskView is a task just submitted: its callback, if it asked for
// one, is pending with no attempt yet.
func (s *Server) newTaskView(t *taskrunner.Task) taskView {
	return taskView{taskFields: s.fieldsOf(t), Callback: newCallbackSummary(task.CallbackURLOf(t), taskrunner.CallbackTally{})}
}

// taskView is t's view, its callback's state read from the database.
func (s *Server) taskView(ctx context.Context, t *taskrunner.Task) (taskView, error) {
	cb, err := s.callbackSummary(ctx, t)
	if err != nil {
		return taskView{}, err
	}
	return taskView{taskFields: s.fieldsOf(t), Callback: cb}, nil
}

// detailView is d's view with its runs and artifact ids, its callback's
// state read from the database.
func (s *Server) detailView(ctx context.Context, d *taskrunner.Task) (taskDetailView, error) {
	tv, err := s.taskView(ctx, d)
	if err != nil {
		return taskDetailView{}, err
	}
	v := taskDetailView{taskView: tv, Runs: d.Runs}
	if v.Runs == nil {
		v.Runs = []taskrunner.Run{}
	}
	v.ArtifactCount = d.ArtifactCount
	v.ArtifactIDs = make([]string, len(d.ArtifactIDs))
	for i, id := range d.ArtifactIDs {
		v.ArtifactIDs[i] = id.String()
	}
	return v, nil
}

type listBody struct {
	Tasks      []json.RawMessage `json:"tasks"` // each an encoded taskView
	NextCursor *string           `json:"next_cursor"`
}

// maxListBytes caps a page of GET /tasks: once its tasks' encoding passes
// it, the page ends (with a next_cursor), however many the limit allowed.
// Five hundred tasks can each hold a megabyte of params and a result.
const maxListBytes = 4 << 20

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f, err := taskrunner.ParseFilter(q, "cursor", "limit")
	if err != nil {
		return err
	}
	lq := task.ListQuery{Filter: f, Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			return &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: "limit",
				Message: "limit must be a positive whole number"}
		}
		lq.Limit = n
	}
	// Each task is encoded as it is read, without its callback; the
	// callbacks of the page are read after, in one query, and added.
	body := listBody{Tasks: []json.RawMessage{}}
	var withURL []listedCallback
	size := 0
	next, err := s.deps.Tasks.List(r.Context(), lq, func(t *taskrunner.Task) (bool, error) {
		enc, err := encodeJSON(s.fieldsOf(t))
		if err != nil {
			return false, err
		}
		if url := task.CallbackURLOf(t); url != "" {
			withURL = append(withURL, listedCallback{index: len(body.Tasks), id: t.ID, url: url})
			size += len(url) + maxCallbackSummaryBytes
		}
		body.Tasks = append(body.Tasks, enc)
		size += len(enc)
		return size < maxListBytes, nil
	})
	if err != nil {
		return err
	}
	if err := s.addCallbacks(r.Context(), body.Tasks, withURL); err != nil {
		return err
	}
	if next != "" {
		body.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) error {
	id, err := task.ParseID(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	t, err := s.deps.Tasks.Cancel(r.Context(), id)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if !taskrunner.Finished(t.Status) {
		status = http.StatusAccepted // running: its worker is being told to stop
	}
	v, err := s.taskView(r.Context(), t)
	if err != nil {
		return err
	}
	writeJSON(w, status, v)
	return nil
}

// bulkRequest is the body of POST /tasks/cancel, /tasks/retry and
// /tasks/delete.
type bulkRequest struct {
	Filter json.RawMessage `json:"filter"`
	DryRun bool            `json:"dry_run"`
}

// bulkBody is a bulk action's answer; a dry run has no affected.
type bulkBody struct {
	Matched  int64  `json:"matched"`
	Affected *int64 `json:"affected,omitempty"`
}

// decodeBulkRequest decodes the body of a bulk action: its filter
// (required) and whether it is a dry run.
func decodeBulkRequest(body []byte) (f taskrunner.Filter, dryRun bool, err error) {
	var req bulkRequest
	if err := decodeStrict(body, &req); err != nil {
		return f, false, err
	}
	if req.Filter == nil {
		return f, false, taskrunner.Invalid("filter", `is required: {} selects every task the action applies to`)
	}
	f, err = taskrunner.DecodeFilter(req.Filter, "filter.")
	return f, req.DryRun, err
}

// bulkActionTimeout bounds a bulk action, which pages through what may be
// a million tasks: each page commits on its own, so one cut short by it
// has done what it says in the log, and may be called again.
const bulkActionTimeout = 10 * time.Minute

// bulkRetryAfter is the Retry-After of a bulk action refused because the
// tenant runs its maximum at once, in seconds: about what a dry run
// takes at most (BULK_COUNT_TIMEOUT_SECONDS' default).
const bulkRetryAfter = 5

// bulk is the handler of a bulk action.
func (s *Server) bulk(action task.Action) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r, s.deps.Limits.MaxRequestBodyBytes)
		if err != nil {
			return err
		}
		f, dryRun, err := decodeBulkRequest(body)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(r.Context(), bulkActionTimeout)
		defer cancel()
		res, err := s.deps.Tasks.Bulk(ctx, action, &f, dryRun)
		if taskrunner.ErrorCode(err) == taskrunner.CodeTooManyBulkActions {
			w.Header().Set("Retry-After", strconv.Itoa(bulkRetryAfter))
		}
		var refusal *taskrunner.Error
		if errors.As(err, &refusal) && refusal.Field != "" {
			// The service names the filter's fields as GET /tasks does.
			r := *refusal
			r.Field, r.Message = "filter."+r.Field, "filter."+r.Message
			return &r
		}
		if err != nil {
			return err
		}
		out := bulkBody{Matched: res.Matched}
		if !dryRun {
			out.Affected = &res.Affected
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}
