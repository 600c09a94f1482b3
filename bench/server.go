package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// serverStartTimeout bounds the wait for a serve process's
	// api_listening line.
	serverStartTimeout = time.Minute
	// serverStopTimeout bounds the wait for a serve process to exit after
	// SIGTERM before it is killed; its SHUTDOWN_GRACE_SECONDS is shorter.
	serverStopTimeout = 30 * time.Second
	// serverTailLines is how many of its last log lines a failure shows.
	serverTailLines = 20
)

// serverProc is a `taskrunner serve` process the bench started.
type serverProc struct {
	cmd  *exec.Cmd
	addr string // where its API listens
	p    *progress

	mu   sync.Mutex
	tail []string // its last log lines

	done    chan struct{} // closed once it has exited and its stderr is read
	waitErr error         // its exit status, set before done is closed
	stopped bool
}

// startServer starts bin serve with env and returns once its API listens
// (its api_listening log line, which names the address). Its WARN and
// ERROR log lines, and any line that is not a JSON log line, go to the
// progress output.
func startServer(ctx context.Context, bin string, env []string, p *progress) (*serverProc, error) {
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	setParentDeathSignal(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("taskrunner serve: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start taskrunner serve (%s): %w", bin, err)
	}
	s := &serverProc{cmd: cmd, p: p, done: make(chan struct{})}
	listening := make(chan string, 1)
	go func() {
		s.readLog(stderr, listening)
		// Wait only once stderr is read to its end, as exec asks.
		s.waitErr = cmd.Wait()
		close(s.done)
	}()

	timer := time.NewTimer(serverStartTimeout)
	defer timer.Stop()
	select {
	case s.addr = <-listening:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("taskrunner serve exited before listening (%v); its last log lines:\n%s", s.waitErr, s.lastLines())
	case <-timer.C:
		_ = s.stop()
		return nil, fmt.Errorf("taskrunner serve did not log api_listening within %s; its last log lines:\n%s", serverStartTimeout, s.lastLines())
	case <-ctx.Done():
		_ = s.stop()
		return nil, ctx.Err()
	}
}

// pid is the process id.
func (s *serverProc) pid() int { return s.cmd.Process.Pid }

// readLog reads the process's log lines until its stderr closes, sending
// the address of its api_listening line on listening. It keeps reading
// whatever happens, so the process never blocks writing its log.
func (s *serverProc) readLog(r io.Reader, listening chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		s.tail = append(s.tail, line)
		if len(s.tail) > serverTailLines {
			s.tail = s.tail[len(s.tail)-serverTailLines:]
		}
		s.mu.Unlock()
		ev, ok := parseLogLine(line)
		switch {
		case !ok:
			s.p.linef("taskrunner serve: %s", line)
		case ev.Event == "api_listening" && ev.Addr != "":
			select {
			case listening <- ev.Addr:
			default:
			}
		case ev.Level == "WARN" || ev.Level == "ERROR":
			s.p.linef("taskrunner serve: %s", line)
		}
	}
	_, _ = io.Copy(io.Discard, r) // a line too long for the scanner
}

// logLine is what the bench reads of a JSON log line.
type logLine struct {
	Level string `json:"level"`
	Event string `json:"event"`
	Addr  string `json:"addr"`
}

// parseLogLine reads a JSON log line; ok is false for anything else.
func parseLogLine(line string) (logLine, bool) {
	var ev logLine
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Level == "" {
		return logLine{}, false
	}
	return ev, true
}

// lastLines is the process's last log lines.
func (s *serverProc) lastLines() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tail) == 0 {
		return "(none)"
	}
	return strings.Join(s.tail, "\n")
}

// status returns a field of /proc/<pid>/status in bytes (VmRSS, VmHWM).
func (s *serverProc) status(field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid()) + "/status")
	if err != nil {
		return 0, fmt.Errorf("taskrunner serve's memory: %w", err)
	}
	return procStatusBytes(string(b), field)
}

// procStatusBytes returns a "kB" field of a /proc/<pid>/status text in
// bytes (the kernel's kB are KiB).
func procStatusBytes(status, field string) (int64, error) {
	for line := range strings.Lines(status) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in kB in /proc/<pid>/status", field)
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// serverStopTimeout. It returns an error when the process did not exit
// cleanly; calling it again returns nil.
func (s *serverProc) stop() error {
	if s.stopped {
		return nil
	}
	s.stopped = true
	select {
	case <-s.done:
		return fmt.Errorf("taskrunner serve (pid %d) exited by itself (%v); its last log lines:\n%s", s.pid(), s.waitErr, s.lastLines())
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = s.cmd.Process.Kill()
	}
	timer := time.NewTimer(serverStopTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("taskrunner serve (pid %d) did not exit within %s of SIGTERM and was killed; its last log lines:\n%s", s.pid(), serverStopTimeout, s.lastLines())
	}
	if s.waitErr != nil {
		return fmt.Errorf("taskrunner serve (pid %d) exited after SIGTERM with %v; its last log lines:\n%s", s.pid(), s.waitErr, s.lastLines())
	}
	return nil
}
