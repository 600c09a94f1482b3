package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

// benchAPI is the API on an insert-only client, as `taskrunner api` builds
// it without keys or limiter, for the enqueue benchmarks.
func benchAPI(b *testing.B) http.Handler {
	b.Helper()
	tdb := testenv.NewDB(b)
	client, err := jobs.NewClient(jobs.ClientConfig{Pool: tdb.Pool, Types: testTypes(nil, nil), Queues: []string{"default"}, MaxRuntime: testMaxRuntime})
	require.NoError(b, err)
	tasks, err := task.NewService(task.ServiceConfig{Pool: tdb.Pool, Client: client,
		Types: testTypes(nil, nil), Limits: task.Limits{MaxRuntime: testMaxRuntime, Queues: []string{"default"}}})
	require.NoError(b, err)
	m := testenv.MinIOServer(b)
	store, err := artifact.NewStore(artifact.Config{Endpoint: m.Endpoint, User: m.User, Password: m.Password, Bucket: "unused"})
	require.NoError(b, err)
	artifacts, err := artifact.NewService(artifact.ServiceConfig{Store: store, Pool: tdb.Pool})
	require.NoError(b, err)
	api, err := httpapi.New(httpapi.Config{Tasks: tasks, Artifacts: artifacts,
		Limits: config.Limits{TaskMaxRuntime: testMaxRuntime, MaxBatchSize: 50}})
	require.NoError(b, err)
	return api
}

func benchPost(b *testing.B, api http.Handler, path string, body []byte) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// The enqueue benchmarks measure the handler without a network (allocs/op
// and CPU profiles of the request path); `make bench` measures the rates.
func BenchmarkSubmitTask(b *testing.B) {
	benchPost(b, benchAPI(b), "/tasks", []byte(`{"type":"echo","params":{"msg":"hello"}}`))
}

func BenchmarkSubmitBatch(b *testing.B) {
	body, err := json.Marshal(map[string]any{"tasks": slices.Repeat([]json.RawMessage{json.RawMessage(`{"type":"echo","params":{"msg":"hello"}}`)}, 50)})
	require.NoError(b, err)
	benchPost(b, benchAPI(b), "/tasks/batch", body)
}
