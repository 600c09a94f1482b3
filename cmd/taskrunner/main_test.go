package main

// The tests of this package run real taskrunner processes: the test binary
// re-executes itself (proctest.StartSelf), and TestMain then calls the real main
// with the subcommand as arguments and the test's environment. Each process
// logs JSON lines on stderr, which proc (proctest.Proc) collects and
// searches by event.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/proctest"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

func TestMain(m *testing.M) { proctest.MainOrTests(m, main) }

// Bounds on waits that should be quick; a process built with -race on two
// cores still starts in well under these.
const (
	startTimeout = 30 * time.Second
	exitTimeout  = 20 * time.Second
)

// baseEnv is the environment of a process on the database at dbURL: an API
// on a free loopback port, debug logs, quick fetch polling, a small pool.
// MinIO points at a closed port: these tests don't need it, and the API
// only reports it down in /ready. Redis keys (the enqueue limit, the
// search cache) are under a prefix of the test's own, so tests that run at
// once from one address do not share an allowance.
func baseEnv(dbURL string) map[string]string {
	return map[string]string{
		"DATABASE_URL":               dbURL,
		"REDIS_URL":                  testenv.RedisURL(),
		"REDIS_KEY_PREFIX":           testenv.RandomName("cmd-test:") + ":",
		"HTTP_ADDR":                  "127.0.0.1:0",
		"LOG_LEVEL":                  "debug",
		"MINIO_ENDPOINT":             "127.0.0.1:1",
		"MINIO_BUCKET":               "taskrunner-cmd-test",
		"TASK_MAX_RUNTIME_SECONDS":   "120",
		"SHUTDOWN_GRACE_SECONDS":     "5",
		"WORKER_FETCH_POLL_INTERVAL": "200ms",
		"WORKER_CONCURRENCY":         "10",
		"TASKS_PER_MINUTE":           "100000",
		"DB_MAX_CONNS":               "8",
	}
}

// with returns a copy of env with the given key/value pairs set.
func with(env map[string]string, kv ...string) map[string]string {
	out := maps.Clone(env)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// getenvOf is a getenv over env, for calling run in-process.
func getenvOf(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a taskrunner process started by a test.
type proc = proctest.Proc

// startProc starts `taskrunner args...` with env (and nothing else of the
// test's environment but PATH, HOME, TMPDIR and the race detector's and
// coverage settings). The process is killed at the end of the test, which
// fails if the race detector reported a data race in it; its stderr is
// logged when the test fails or runs verbose.
func startProc(t *testing.T, name string, env map[string]string, args ...string) *proc {
	t.Helper()
	return proctest.StartSelf(t, name, env, args...)
}

// forTask matches log lines about task id.
func forTask(id int64) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["task_id"] == float64(id) }
}

// startAPIProc starts an api (or serve) process and returns a client for it once
// it listens.
func startAPIProc(t *testing.T, name string, env map[string]string, subcommand string) (*proc, *apiClient) {
	t.Helper()
	p := startProc(t, name, env, subcommand)
	ev := p.WaitEvent("api_listening", startTimeout, nil)
	addr, _ := ev["addr"].(string)
	require.NotEmpty(t, addr, "api_listening without addr: %v", ev)
	return p, &apiClient{t: t, base: "http://" + addr}
}

// startWorker starts a worker process and waits until it works.
func startWorker(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	p := startProc(t, name, env, "worker")
	p.WaitEvent("workers_started", startTimeout, nil)
	return p
}

// apiClient talks to a process's HTTP API.
type apiClient struct {
	t    *testing.T
	base string
}

var httpClient = &http.Client{Timeout: 15 * time.Second}

// do sends a request with a JSON body (when body is not nil) and returns the
// status and the decoded JSON answer.
func (c *apiClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		require.NoError(c.t, err)
		rd = bytes.NewReader(buf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	require.NoError(c.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	require.NoError(c.t, err, "%s %s", method, path)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(c.t, json.Unmarshal(raw, &out), "%s %s: body %s", method, path, raw)
	}
	return resp.StatusCode, out
}

// submit posts a task and returns its id, requiring 202.
func (c *apiClient) submit(req map[string]any) int64 {
	c.t.Helper()
	status, body := c.do(http.MethodPost, "/tasks", req)
	require.Equal(c.t, http.StatusAccepted, status, "POST /tasks: %v", body)
	id, ok := body["id"].(float64)
	require.True(c.t, ok, "POST /tasks without id: %v", body)
	return int64(id)
}

func (c *apiClient) get(id int64) map[string]any {
	c.t.Helper()
	status, body := c.do(http.MethodGet, "/tasks/"+strconv.FormatInt(id, 10), nil)
	require.Equal(c.t, http.StatusOK, status, "GET /tasks/%d: %v", id, body)
	return body
}

// waitStatus polls the task until its status is one of want, for up to
// timeout, and returns it.
func (c *apiClient) waitStatus(id int64, timeout time.Duration, want ...string) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		body := c.get(id)
		if slices.Contains(want, body["status"].(string)) {
			return body
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("task %d: status %v after %s, want one of %v; task: %v", id, body["status"], timeout, want, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runsOf returns the runs of a task as GET /tasks/{id} shows them.
func runsOf(t *testing.T, task map[string]any) []map[string]any {
	t.Helper()
	raw, ok := task["runs"].([]any)
	require.True(t, ok, "task without runs: %v", task)
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i] = r.(map[string]any)
	}
	return out
}
