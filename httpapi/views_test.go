package httpapi_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/client"
)

// The API's answers as the tests read them, at the JSON level. The task
// and artifact views are the Go client's own types plus the second name
// the API gives each id, so these tests also hold the client's types to
// what the server sends. Where a test needs to tell a missing or null
// field from a zero one, the field is a pointer or a json.RawMessage.

// taskView is a task (POST /tasks, GET /tasks/{id}, a page of GET /tasks);
// only GET /tasks/{id} has runs and artifact ids.
type taskView struct {
	client.Task
	TaskID int64 `json:"task_id"` // the same as id
}

// listBody is a page of GET /tasks, or the answer of POST /tasks/batch
// (tasks only).
type listBody struct {
	Tasks      []taskView `json:"tasks"`
	NextCursor *string    `json:"next_cursor"`
}

// artifactView is an artifact's metadata.
type artifactView struct {
	client.Artifact
	ArtifactID string `json:"artifact_id"` // the same as id
}

// artifactListBody is GET /tasks/{id}/artifacts.
type artifactListBody struct {
	Artifacts  []artifactView `json:"artifacts"`
	NextCursor *string        `json:"next_cursor"`
}

// failure is the task's error, which it must have.
func (v taskView) failure(t *testing.T) client.TaskError {
	t.Helper()
	require.NotNil(t, v.Error, "task %d (%s) has no error", v.ID, v.Status)
	return *v.Error
}

// run is the task's i-th run, which it must have.
func (v taskView) run(t *testing.T, i int) client.Run {
	t.Helper()
	require.Greater(t, len(v.Runs), i, "task %d has %d runs", v.ID, len(v.Runs))
	return v.Runs[i]
}

// errorBody is the one error shape.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      taskrunner.Code `json:"code"`
	Message   string          `json:"message"`
	Field     string          `json:"field"`
	RequestID string          `json:"request_id"`
}

// limitsView is GET /limits (the fields the tests read).
type limitsView struct {
	TaskMaxRuntimeSeconds  float64 `json:"task_max_runtime_seconds"`
	MaxBatchSize           int     `json:"max_batch_size"`
	MaxRequestBodyBytes    int64   `json:"max_request_body_bytes"`
	HTTPReadTimeoutSeconds float64 `json:"http_read_timeout_seconds"`
}

// statusBody is GET /health and GET /ready; a 503 from /ready has the
// error too.
type statusBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Error  *errorDetail      `json:"error"`
}

// decode reads a JSON body as a T.
func decode[T any](t *testing.T, raw []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(raw, &v), "body: %s", raw)
	return v
}

// task is r's body as a task.
func (r response) task(t *testing.T) taskView {
	t.Helper()
	return decode[taskView](t, r.raw)
}

// artifact is r's body as an artifact's metadata.
func (r response) artifact(t *testing.T) artifactView {
	t.Helper()
	return decode[artifactView](t, r.raw)
}

// apiError is r's body as an error, which must have a code, a message and
// a request id.
func (r response) apiError(t *testing.T) errorDetail {
	t.Helper()
	e := decode[errorBody](t, r.raw).Error
	require.NotEmpty(t, e.Code, "no error code in %s", r.raw)
	require.NotEmpty(t, e.RequestID, "error without request_id: %s", r.raw)
	require.NotEmpty(t, e.Message, "error without message: %s", r.raw)
	return e
}

// deref is *p, or the zero value ("") when p is nil (a null or missing
// field).
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
