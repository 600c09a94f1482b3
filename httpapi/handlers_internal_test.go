package httpapi

// Tests of the handlers alone: a fake task service (Tasks) answers, and
// no database, Redis or MinIO is reached. They check what the handlers
// own: decoding, the status of each code, and headers. The tests on real
// services (setup) check the rest end to end.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/task"
	"github.com/taskrunner/taskrunner/tasktype"
)

// fakeTasks is a task service that records the requests it is given and
// answers with task, or with err; what a test does not use panics (the
// embedded nil interface).
type fakeTasks struct {
	Tasks
	task    taskrunner.Task
	err     error
	got     []*task.Request
	inserts int
}

func (f *fakeTasks) Types() *tasktype.Registry { return builtin.Registry(builtin.Config{}) }

func (f *fakeTasks) MaxRuntime() time.Duration { return time.Minute }

func (f *fakeTasks) Validate(req *task.Request) (task.Prepared, error) {
	f.got = append(f.got, req)
	return task.Prepared{}, f.err
}

func (f *fakeTasks) Insert(context.Context, task.Prepared, string) (*taskrunner.Task, bool, error) {
	f.inserts++
	t := f.task
	return &t, false, nil
}

func (f *fakeTasks) Get(context.Context, int64) (*taskrunner.Task, error) {
	if f.err != nil {
		return nil, f.err
	}
	t := f.task
	return &t, nil
}

func (f *fakeTasks) CallbackTallies(context.Context, []int64) (map[int64]taskrunner.CallbackTally, error) {
	return nil, nil
}

// fakeAPI is the API on f, with an artifact service on a database and a
// MinIO that are never reached, and a body limit of 1 KiB.
func fakeAPI(t *testing.T, f *fakeTasks) *httptest.Server {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none?connect_timeout=1")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	store, err := artifact.NewStore(artifact.Config{Endpoint: "127.0.0.1:1", Bucket: "none"})
	require.NoError(t, err)
	artifacts, err := artifact.NewService(artifact.ServiceConfig{Store: store, Pool: pool})
	require.NoError(t, err)
	api, err := New(Config{Tasks: f, Artifacts: artifacts, Limits: config.Limits{MaxRequestBodyBytes: 1 << 10}})
	require.NoError(t, err)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

// send sends a request and returns the answer and its decoded error, if
// it is one.
func send(t *testing.T, srv *httptest.Server, method, path, contentType, body string) (*http.Response, errorDetail) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var e errorBody
	if resp.StatusCode >= 400 {
		require.NoError(t, json.Unmarshal(raw, &e), "%s", raw)
	}
	return resp, e.Error
}

// A body the handler cannot decode is refused with its code, and never
// reaches the service; one it can reaches it as sent.
func TestHandlerDecodesBeforeTheService(t *testing.T) {
	t.Parallel()
	f := &fakeTasks{task: taskrunner.Task{ID: 7, Type: "echo", Status: taskrunner.StatusAvailable, Queue: "default"}}
	srv := fakeAPI(t, f)
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		code                    taskrunner.Code
	}{
		{"not JSON", "application/json", `{"type":`, http.StatusBadRequest, taskrunner.CodeInvalidJSON},
		{"trailing data", "application/json", `{"type":"echo"} {}`, http.StatusBadRequest, taskrunner.CodeInvalidJSON},
		{"unknown field", "application/json", `{"type":"echo","colour":"red"}`, http.StatusBadRequest, taskrunner.CodeInvalidParams},
		{"wrong field type", "application/json", `{"type":7}`, http.StatusBadRequest, taskrunner.CodeInvalidParams},
		{"not a JSON body", "text/plain", `{"type":"echo"}`, http.StatusUnsupportedMediaType, taskrunner.CodeUnsupportedMediaType},
		{"too large", "application/json", `{"type":"echo","params":{"msg":"` + strings.Repeat("x", 2<<10) + `"}}`, http.StatusRequestEntityTooLarge, taskrunner.CodeBodyTooLarge},
	} {
		resp, e := send(t, srv, http.MethodPost, "/tasks", tc.contentType, tc.body)
		require.Equal(t, tc.status, resp.StatusCode, tc.name)
		require.Equal(t, tc.code, e.Code, tc.name)
		require.NotEmpty(t, e.Message, tc.name)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), tc.name)
	}
	require.Empty(t, f.got, "a refused body reached the service")

	resp, _ := send(t, srv, http.MethodPost, "/tasks", "application/json; charset=utf-8",
		`{"type":"echo","params":{"msg":"hi"},"priority":2,"queue":"default","timeout_seconds":5}`)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, "/tasks/7", resp.Header.Get("Location"))
	require.Len(t, f.got, 1)
	got := f.got[0]
	require.Equal(t, "echo", got.Type)
	require.JSONEq(t, `{"msg":"hi"}`, string(got.Params))
	require.Equal(t, 2, *got.Priority)
	require.Equal(t, "default", got.Queue)
	require.Equal(t, 5.0, *got.TimeoutSeconds)
	require.Equal(t, 1, f.inserts)
}

// Every code the service may return is answered with its status, in the
// one error shape, with the error's own message; any other error is a 500
// that says nothing of its cause.
func TestHandlerAnswersEachCodeWithItsStatus(t *testing.T) {
	t.Parallel()
	f := &fakeTasks{}
	srv := fakeAPI(t, f)
	for _, code := range taskrunner.Codes() {
		f.err = &taskrunner.Error{Code: code, Message: "the message of " + string(code), Err: errors.New("secret cause")}
		resp, e := send(t, srv, http.MethodGet, "/tasks/1", "", "")
		require.Equal(t, codeStatus[code], resp.StatusCode, code)
		require.Equal(t, code, e.Code)
		require.Equal(t, "the message of "+string(code), e.Message)
		require.NotEmpty(t, e.RequestID, code)
	}

	f.err = errors.New("dial tcp 10.1.2.3:5432: secret cause")
	resp, e := send(t, srv, http.MethodGet, "/tasks/1", "", "")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	require.Equal(t, taskrunner.CodeInternal, e.Code)
	require.NotContains(t, e.Message, "secret")
	require.NotContains(t, e.Message, "10.1.2.3")

	f.err = context.DeadlineExceeded
	resp, e = send(t, srv, http.MethodGet, "/tasks/1", "", "")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, taskrunner.CodeDependencyUnavailable, e.Code)
}

// An id that is not one is refused before the service is asked.
func TestHandlerRefusesABadIDBeforeTheService(t *testing.T) {
	t.Parallel()
	f := &fakeTasks{err: errors.New("the service was asked")}
	srv := fakeAPI(t, f)
	for _, id := range []string{"x", "-1", "1.5", "99999999999999999999"} {
		resp, e := send(t, srv, http.MethodGet, "/tasks/"+id, "", "")
		require.Equal(t, http.StatusNotFound, resp.StatusCode, id)
		require.Equal(t, taskrunner.CodeNotFound, e.Code, id)
	}
}
