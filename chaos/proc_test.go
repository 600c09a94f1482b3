//go:build chaos

package chaos

// taskrunner processes started by a suite, their JSON log lines, and an
// HTTP client for their API.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Bounds on process start and exit.
const (
	procStartTimeout = 30 * time.Second
	procExitTimeout  = 20 * time.Second
)

// proc is a taskrunner process.
type proc struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	started time.Time // just before exec
	ready   time.Time // when it logged workers_started or api_listening
	logPath string
	logFile *os.File

	mu      sync.Mutex
	lines   []string
	changed chan struct{}
	eof     bool

	done  chan struct{}
	state *os.ProcessState
}

// startProc starts `taskrunner args...` with env and nothing else of the
// suite's environment but PATH, HOME and TMPDIR. It is killed when the test
// ends; when the test fails its last log lines are shown.
func startProc(t *testing.T, logs, name string, env map[string]string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bins.taskrunner, args...)
	cmd.Env = baseEnv()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.SysProcAttr = childAttrs()
	p := &proc{t: t, name: name, cmd: cmd, changed: make(chan struct{}), done: make(chan struct{}),
		logPath: filepath.Join(logs, name+".log")}
	var err error
	if p.logFile, err = os.Create(p.logPath); err != nil {
		t.Fatalf("%s log: %v", name, err)
	}
	cmd.Stdout = p.logFile
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.read(stderr)
		_ = cmd.Wait()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			_ = cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
			}
		}
		p.logFile.Close()
		if t.Failed() {
			t.Logf("---- %s (pid %d, %s): errors and last lines ----\n%s", name, p.pid(), p.exitDescription(), p.digest(20, 30))
		}
	})
	return p
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		_, _ = p.logFile.WriteString(line + "\n")
		p.mu.Lock()
		p.lines = append(p.lines, line)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
	p.mu.Lock()
	p.eof = true
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// digest is up to nErr error lines and the last nTail lines.
func (p *proc) digest(nErr, nTail int) string {
	p.mu.Lock()
	lines := slices.Clone(p.lines)
	p.mu.Unlock()
	var errs []string
	for _, l := range lines {
		if m, ok := decode(l); (ok && m["level"] == "ERROR") || (!ok && strings.TrimSpace(l) != "") {
			errs = append(errs, l)
		}
	}
	if len(errs) > nErr {
		errs = append(errs[:nErr], fmt.Sprintf("... %d more", len(errs)-nErr))
	}
	if len(lines) > nTail {
		lines = lines[len(lines)-nTail:]
	}
	return "errors:\n" + strings.Join(errs, "\n") + "\nlast:\n" + strings.Join(lines, "\n")
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// workerName is how the process names itself in runs.
func (p *proc) workerName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, p.pid())
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func decode(line string) (map[string]any, bool) {
	if !strings.HasPrefix(line, "{") {
		return nil, false
	}
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return nil, false
	}
	return m, true
}

// events returns the lines logged so far whose event is name.
func (p *proc) events(name string) []map[string]any {
	p.mu.Lock()
	lines := slices.Clone(p.lines)
	p.mu.Unlock()
	var out []map[string]any
	for _, l := range lines {
		if m, ok := decode(l); ok && m["event"] == name {
			out = append(out, m)
		}
	}
	return out
}

// waitEvent waits for a line with event name, failing the test if the
// process ends first or timeout passes.
func (p *proc) waitEvent(name string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		lines := p.lines[seen:len(p.lines):len(p.lines)]
		changed, eof := p.changed, p.eof
		p.mu.Unlock()
		for _, l := range lines {
			seen++
			if m, ok := decode(l); ok && m["event"] == name {
				return m
			}
		}
		if eof {
			p.t.Fatalf("%s ended (%s) without logging %q; its log:\n%s", p.name, p.exitDescription(), name, p.digest(20, 30))
		}
		select {
		case <-changed:
		case <-deadline.C:
			p.t.Fatalf("%s did not log %q within %s", p.name, name, timeout)
		}
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// waitExit waits for the process to exit and returns its exit code (-1
// when a signal ended it).
func (p *proc) waitExit(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s", p.name, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.ExitCode()
}

func (p *proc) exitDescription() string {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.state.String()
	default:
		return "still running"
	}
}

// startWorker starts a worker process and waits until it works.
func startWorker(t *testing.T, logs, name string, env map[string]string) *proc {
	t.Helper()
	p := startProc(t, logs, name, env, "worker")
	p.waitEvent("workers_started", procStartTimeout)
	p.ready = time.Now()
	return p
}

// startAPI starts an api process and returns a client for it once it
// listens.
func startAPI(t *testing.T, logs, name string, env map[string]string) (*proc, *apiClient) {
	t.Helper()
	p := startProc(t, logs, name, env, "api")
	ev := p.waitEvent("api_listening", procStartTimeout)
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
