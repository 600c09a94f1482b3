package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/metrics"
)

func TestMetricsCountWhatHappened(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.WatchQueueDepth(func(context.Context) (map[string]int64, error) { return map[string]int64{"available": 3}, nil }, time.Minute)
	b := setup(t, setupOpts{work: true, metrics: m, perMinute: 2})

	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	b.waitStatus(t, id, "completed")
	b.waitStatus(t, b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "y"}}), "completed")
	require.Equal(t, http.StatusTooManyRequests, b.do(t, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "z"}}).status)
	put, _ := b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/a.bin", id), "application/octet-stream", make([]byte, 1000), 1000)
	require.Equal(t, http.StatusCreated, put.StatusCode)

	resp, err := http.Get(b.server.URL + "/metrics")
	require.NoError(t, err)
	text, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, want := range []string{
		`taskrunner_tasks_enqueued_total{tenant="local",type="echo"} 2`,
		`taskrunner_run_duration_seconds_count{status="completed",type="echo"} 2`,
		`taskrunner_http_requests_total{method="POST",route="/tasks",status="202"} 2`,
		`taskrunner_http_requests_total{method="POST",route="/tasks",status="429"} 1`,
		`taskrunner_http_request_duration_seconds_count{method="POST",route="/tasks"} 3`,
		`taskrunner_rate_limited_total 1`,
		`taskrunner_artifact_bytes_total{direction="in"} 1000`,
		`taskrunner_tasks{state="available"} 3`,
		`go_goroutines`,
	} {
		require.Contains(t, string(text), want)
	}
	// The runs' tenant is their owner: local once tasks record it, system
	// for a task without one.
	require.Regexp(t, fmt.Sprintf(`taskrunner_runs_finished_total\{status=%q,tenant="(local|system)",type="echo"\} 2`, db.RunCompleted), string(text))
	post, err := http.Post(b.server.URL+"/metrics", "text/plain", nil)
	require.NoError(t, err)
	post.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, post.StatusCode)
}

// A batch counts each of its tasks under its type, however the types
// follow one another.
func TestMetricsCountABatchByType(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	b := setup(t, setupOpts{metrics: m})
	echo := map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}}
	sleep := map[string]any{"type": "sleep", "params": map[string]any{"seconds": 1}}
	resp := b.do(t, http.MethodPost, "/tasks/batch", map[string]any{"tasks": []any{echo, echo, sleep, echo, sleep}})
	require.Equal(t, http.StatusAccepted, resp.status)

	got, err := http.Get(b.server.URL + "/metrics")
	require.NoError(t, err)
	text, err := io.ReadAll(got.Body)
	got.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(text), `taskrunner_tasks_enqueued_total{tenant="local",type="echo"} 3`)
	require.Contains(t, string(text), `taskrunner_tasks_enqueued_total{tenant="local",type="sleep"} 2`)
}
