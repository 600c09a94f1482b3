// Package proctest runs real taskrunner processes in tests and reads what
// they log. A process started with Start logs JSON lines on stderr; Proc
// collects them so a test can wait for an event (WaitEvent), list the events
// seen so far (Events), signal the process and wait for its exit. Every wait
// is bounded, and the process is killed when the test ends.
package proctest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// killTimeout bounds the wait for a process killed at the end of a test.
const killTimeout = 10 * time.Second

// Options says which process Start runs and what happens to its output.
type Options struct {
	// Name names the process in messages (and its log file in LogDir).
	Name string
	// Path is the executable; Args its arguments.
	Path string
	Args []string
	// Env is the process's whole environment, to which Vars are added in
	// the order of their names; nothing of the test's own is inherited.
	Env  []string
	Vars map[string]string
	// SysProcAttr, when not nil, is the process's exec.Cmd SysProcAttr.
	SysProcAttr *syscall.SysProcAttr
	// LogDir, when set, is where the file Name+".log" is created to get the
	// process's stdout and a copy of every stderr line. Without it stdout is
	// kept in memory (Stdout).
	LogDir string
	// CheckRace fails the test when the process's stderr holds a report of
	// the race detector.
	CheckRace bool
	// LogAll makes the end of the test log every stderr line and the
	// stdout kept in memory when the test failed or runs verbose. Without
	// it the end of a failed test logs the process's Digest(20, 30).
	LogAll bool
}

// Proc is a process started by Start. Its methods may be called from any
// goroutine; those that fail the test must be called from the test's.
type Proc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	started time.Time // just before exec
	logFile *os.File  // LogDir's file, or nil

	mu      sync.Mutex
	stdout  bytes.Buffer  // without a log file
	lines   []string      // stderr, one entry per line
	changed chan struct{} // closed and replaced when lines grows or stderr ends
	eof     bool

	done  chan struct{} // closed once the process has exited and been waited for
	state *os.ProcessState
}

// Start starts the process o describes and fails the test if it cannot.
// When the test ends, the process is killed if it still runs (an error if
// it has not exited 10 s after SIGKILL) and, as o says, a race report fails
// the test and its output is logged.
func Start(t testing.TB, o Options) *Proc {
	t.Helper()
	cmd := exec.Command(o.Path, o.Args...)
	cmd.Env = slices.Clone(o.Env)
	for _, k := range slices.Sorted(maps.Keys(o.Vars)) {
		cmd.Env = append(cmd.Env, k+"="+o.Vars[k])
	}
	cmd.SysProcAttr = o.SysProcAttr
	p := &Proc{t: t, name: o.Name, cmd: cmd, changed: make(chan struct{}), done: make(chan struct{})}
	if o.LogDir != "" {
		f, err := os.Create(filepath.Join(o.LogDir, o.Name+".log"))
		if err != nil {
			t.Fatalf("%s log: %v", o.Name, err)
		}
		p.logFile = f
		cmd.Stdout = f
	} else {
		cmd.Stdout = stdoutWriter{p}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("%s stderr: %v", o.Name, err)
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", o.Name, err)
	}
	go func() {
		p.read(stderr)
		_ = cmd.Wait() // the exit status is in cmd.ProcessState
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() { p.end(o) })
	return p
}

// end is what Start has done at the end of the test.
func (p *Proc) end(o Options) {
	t := p.t
	if p.Running() {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(killTimeout):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.Pid())
		}
	}
	if p.logFile != nil {
		p.logFile.Close()
	}
	lines := p.Lines()
	if o.CheckRace {
		for _, l := range lines {
			if strings.Contains(l, "WARNING: DATA RACE") {
				t.Errorf("%s: the race detector reported a data race (see its stderr)", p.name)
				break
			}
		}
	}
	switch {
	case o.LogAll && (t.Failed() || testing.Verbose()):
		for _, l := range lines {
			t.Logf("[%s] %s", p.name, l)
		}
		if out := p.Stdout(); out != "" {
			t.Logf("[%s stdout] %s", p.name, out)
		}
	case !o.LogAll && t.Failed():
		t.Logf("---- %s (pid %d, %s): errors and last lines ----\n%s", p.name, p.Pid(), p.ExitDescription(), p.Digest(20, 30))
	}
}

// stdoutWriter keeps a process's stdout in its Proc.
type stdoutWriter struct{ p *Proc }

func (w stdoutWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.stdout.Write(b)
}

// read collects the lines of r (stderr) until it ends.
func (p *Proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if p.logFile != nil {
			_, _ = p.logFile.WriteString(line + "\n")
		}
		p.mu.Lock()
		p.lines = append(p.lines, line)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r) // an over-long line: keep the pipe drained
	p.mu.Lock()
	p.eof = true
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Name is the process's name in messages.
func (p *Proc) Name() string { return p.name }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Started is when the process was started (just before exec).
func (p *Proc) Started() time.Time { return p.started }

// WorkerName is how the process names itself in runs and as River client
// id: the client_id of its workers_started line (waited for).
func (p *Proc) WorkerName() string {
	p.t.Helper()
	e := p.WaitEvent("workers_started", 2*time.Minute, nil)
	id, ok := e["client_id"].(string)
	if !ok || id == "" {
		p.t.Fatalf("%s logged workers_started without a client_id: %v", p.name, e)
	}
	return id
}

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Lines is what the process wrote on stderr so far, a line an entry.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// Text is everything the process wrote on stderr so far.
func (p *Proc) Text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// Stdout is what the process wrote on stdout so far, when it has no log
// file (Options.LogDir); otherwise it is empty.
func (p *Proc) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// Digest is up to nErr of the process's error lines (level ERROR, or not
// JSON) and its last nTail lines.
func (p *Proc) Digest(nErr, nTail int) string {
	lines := p.Lines()
	var errs []string
	for _, l := range lines {
		if m, ok := Decode(l); (ok && m["level"] == "ERROR") || (!ok && strings.TrimSpace(l) != "") {
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

// Decode parses a JSON log line; ok is false for anything else.
func Decode(line string) (m map[string]any, ok bool) {
	if !strings.HasPrefix(line, "{") {
		return nil, false
	}
	if json.Unmarshal([]byte(line), &m) != nil {
		return nil, false
	}
	return m, true
}

// is reports whether the log line m has event name and matches (when
// match is not nil).
func is(m map[string]any, name string, match func(map[string]any) bool) bool {
	return m["event"] == name && (match == nil || match(m))
}

// Events returns the lines logged so far whose event is name and that
// match (when match is not nil).
func (p *Proc) Events(name string, match func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	for _, l := range p.Lines() {
		if m, ok := Decode(l); ok && is(m, name, match) {
			out = append(out, m)
		}
	}
	return out
}

// WaitEvent waits up to timeout for a line with event name that matches
// (when match is not nil) and returns it. It fails the test, showing the
// process's Digest, if the process ends first, and if the time runs out.
func (p *Proc) WaitEvent(name string, timeout time.Duration, match func(map[string]any) bool) map[string]any {
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
			if m, ok := Decode(l); ok && is(m, name, match) {
				return m
			}
		}
		if eof {
			p.t.Fatalf("%s ended (%s) without logging event %q; its log:\n%s", p.name, p.ExitDescription(), name, p.Digest(20, 30))
		}
		select {
		case <-changed:
		case <-deadline.C:
			p.t.Fatalf("%s did not log event %q within %s", p.name, name, timeout)
		}
	}
}

// Signal sends sig to the process, failing the test if it cannot.
func (p *Proc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// WaitExit waits up to timeout for the process to exit and returns its
// exit code (-1 when a signal ended it). It fails the test when the time
// runs out.
func (p *Proc) WaitExit(timeout time.Duration) int {
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

// ExitDescription is how the process exited, or "still running".
func (p *Proc) ExitDescription() string {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.state.String()
	default:
		return "still running"
	}
}
