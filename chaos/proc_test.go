//go:build chaos

package chaos

// taskrunner processes started by a suite, their JSON log lines, and an
// HTTP client for their API.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner/internal/proctest"
)

// Bounds on process start and exit.
const (
	procStartTimeout = 30 * time.Second
	procExitTimeout  = 20 * time.Second
)

// proc is a taskrunner process.
type proc struct {
	*proctest.Proc
	ready time.Time // when it logged workers_started or api_listening
}

// startProc starts `taskrunner args...` with env and nothing else of the
// suite's environment but PATH, HOME and TMPDIR, logging to name.log in
// logs. It is killed when the test ends; when the test fails its last log
// lines are shown.
func startProc(t *testing.T, logs, name string, env map[string]string, args ...string) *proc {
	t.Helper()
	return &proc{Proc: proctest.Start(t, proctest.Options{Name: name, Path: bins.taskrunner, Args: args,
		Env: baseEnv(), Vars: env, SysProcAttr: childAttrs(), LogDir: logs})}
}

// startWorker starts a worker process and waits until it works.
func startWorker(t *testing.T, logs, name string, env map[string]string) *proc {
	t.Helper()
	p := startProc(t, logs, name, env, "worker")
	p.WaitEvent("workers_started", procStartTimeout, nil)
	p.ready = time.Now()
	return p
}

// startAPI starts an api process and returns a client for it once it
// listens.
func startAPI(t *testing.T, logs, name string, env map[string]string) (*proc, *apiClient) {
	t.Helper()
	p := startProc(t, logs, name, env, "api")
	ev := p.WaitEvent("api_listening", procStartTimeout, nil)
	p.ready = time.Now()
	addr, _ := ev["addr"].(string)
	if addr == "" {
		t.Fatalf("%s: api_listening without addr: %v", name, ev)
	}
	return p, &apiClient{base: "http://" + addr, http: newHTTPClient()}
}

func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 128}}
}

// apiClient talks to an api process. Every call has its own deadline.
type apiClient struct {
	base string
	key  string // API key, if any
	http *http.Client
}

// response is an API answer: status, the decoded JSON body (when JSON),
// the error code of an error body, and how long it took.
type response struct {
	status int
	body   map[string]any
	header http.Header
	code   string
	took   time.Duration
	err    error // transport error or timeout: no answer
}

func (r response) String() string {
	if r.err != nil {
		return fmt.Sprintf("no answer after %s: %v", r.took.Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("%d %s after %s: %v", r.status, r.code, r.took.Round(time.Millisecond), r.body)
}

func (c *apiClient) withKey(key string) *apiClient {
	cp := *c
	cp.key = key
	return &cp
}

func (c *apiClient) do(method, path, contentType string, body []byte, timeout time.Duration) response {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return response{err: err}
	}
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return response{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, took: time.Since(start), err: err}
	if json.Unmarshal(raw, &out.body) == nil {
		if e, ok := out.body["error"].(map[string]any); ok {
			out.code, _ = e["code"].(string)
		}
	} else if len(raw) > 0 {
		out.body = map[string]any{"raw": string(raw)}
	}
	return out
}

func (c *apiClient) postJSON(path string, v any, timeout time.Duration) response {
	b, _ := json.Marshal(v)
	return c.do(http.MethodPost, path, "application/json", b, timeout)
}

func (c *apiClient) get(path string, timeout time.Duration) response {
	return c.do(http.MethodGet, path, "", nil, timeout)
}

// id is the task id of a 2xx answer to POST /tasks, or 0.
func (r response) id() int64 {
	if r.err != nil || r.status/100 != 2 {
		return 0
	}
	f, _ := r.body["id"].(float64)
	return int64(f)
}

// readyChecks is GET /ready's checks object.
func (r response) readyChecks() map[string]string {
	out := map[string]string{}
	if m, ok := r.body["checks"].(map[string]any); ok {
		for k, v := range m {
			out[k], _ = v.(string)
		}
	}
	return out
}

// openPool opens a small pool of the suite's own on url; it reconnects by
// itself after a restart.
func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "chaos-suite"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// queryInt runs a query returning one integer, with a deadline.
func queryInt(pool *pgxpool.Pool, sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	err := pool.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}

func mustInt(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	n, err := queryInt(pool, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
