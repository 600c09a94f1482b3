//go:build chaos

package chaos

// The services a suite runs against, each its own: a PostgreSQL cluster,
// a Redis and a MinIO on spare loopback ports with their data in a
// temporary folder. Each can be stopped and started again on the same port
// and data, which is what the fault phases do.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Bounds of the waits for a service.
const (
	serviceStartTimeout = 60 * time.Second
	serviceStopTimeout  = 30 * time.Second
)

// binaries are the programs a suite runs.
type binaries struct {
	taskrunner string
	minio      string
	pgBin      string // folder of initdb and postgres
	redis      string
}

var bins binaries

// findBinaries locates (and for taskrunner, builds) what the suite runs.
func findBinaries() (binaries, func(), error) {
	var b binaries
	cleanup := func() {}
	if p := os.Getenv("CHAOS_TASKRUNNER_BIN"); p != "" {
		b.taskrunner = p
	} else {
		dir, err := os.MkdirTemp("", "chaos-bin-")
		if err != nil {
			return b, cleanup, err
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
		b.taskrunner = filepath.Join(dir, "taskrunner")
		cmd := exec.Command("go", "build", "-o", b.taskrunner, "github.com/taskrunner/taskrunner/cmd/taskrunner")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return b, cleanup, fmt.Errorf("build taskrunner: %w", err)
		}
	}
	b.minio = os.Getenv("CHAOS_MINIO_BIN")
	if b.minio == "" {
		b.minio, _ = filepath.Abs("../bin/minio")
	}
	if _, err := os.Stat(b.minio); err != nil {
		return b, cleanup, fmt.Errorf("no MinIO server at %s: run `make minio` (or set CHAOS_MINIO_BIN)", b.minio)
	}
	b.pgBin = os.Getenv("CHAOS_PG_BIN")
	if b.pgBin == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) < pgVersion(dirs[j]) })
		if len(dirs) > 0 {
			b.pgBin = dirs[len(dirs)-1]
		} else if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			b.pgBin = strings.TrimSpace(string(out))
		}
	}
	for _, p := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(b.pgBin, p)); err != nil {
			return b, cleanup, fmt.Errorf("no PostgreSQL %s in %q: install PostgreSQL's server or set CHAOS_PG_BIN", p, b.pgBin)
		}
	}
	var err error
	if b.redis, err = exec.LookPath("redis-server"); err != nil {
		return b, cleanup, fmt.Errorf("redis-server is not on PATH: %w", err)
	}
	return b, cleanup, nil
}

func pgVersion(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func TestMain(m *testing.M) {
	var cleanup func()
	var err error
	bins, cleanup, err = findBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		cleanup()
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// sparePort returns a loopback TCP port nothing listens on now. It is
// below the kernel's ephemeral range, so while a service is stopped no
// outgoing connection takes its port as a source port and keeps it from
// starting again.
func sparePort(t *testing.T) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const first = 20000
	for range 100 {
		if low <= first+1000 {
			break
		}
		port := first + mathrand.IntN(low-first)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a spare port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// logDir is where process logs go: CHAOS_LOG_DIR (kept) or a folder of
// the test's (removed).
func logDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("CHAOS_LOG_DIR"); d != "" {
		d = filepath.Join(d, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("CHAOS_LOG_DIR: %v", err)
		}
		return d
	}
	return t.TempDir()
}

// childAttrs makes a child die with the test binary, even when it is
// killed or times out before its cleanups run.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// baseEnv is the part of the suite's environment children get.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, "LC_ALL=C")
}

// daemon is a service process the suite starts and stops.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	logFile *os.File
}

func startDaemon(t *testing.T, name, logPath string, cmd *exec.Cmd) *daemon {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s log: %v", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = childAttrs()
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), logFile: f}
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	return d
}

func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends sig and waits for the process to exit, killing it after
// timeout.
func (d *daemon) stop(sig syscall.Signal, timeout time.Duration) error {
	if d == nil {
		return nil
	}
	defer d.logFile.Close()
	if !d.running() {
		return nil
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
		return nil
	case <-time.After(timeout):
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
	}
	return fmt.Errorf("%s did not stop within %s after %s; killed", d.name, timeout, sig)
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond every interval until it is true or timeout passes.
func waitFor(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// ---- PostgreSQL ----

// postgres is a cluster of the suite's own, run as the postgres user when
// the suite runs as root (PostgreSQL refuses to run as root).
type postgres struct {
	t       *testing.T
	dir     string // owned by the cluster's user: data/, the socket, the log
	port    int
	cred    *syscall.Credential
	logPath string
	d       *daemon
}

func startPostgres(t *testing.T, base, logs string) *postgres {
	t.Helper()
	pg := &postgres{t: t, dir: filepath.Join(base, "pg"), port: sparePort(t), logPath: filepath.Join(logs, "postgres.log")}
	if err := os.MkdirAll(pg.dir, 0o700); err != nil {
		t.Fatalf("postgres dir: %v", err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The cluster's user must reach its folder through base.
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatalf("chmod %s: %v", base, err)
		}
		if err := os.Chown(pg.dir, uid, gid); err != nil {
			t.Fatalf("chown %s: %v", pg.dir, err)
		}
	}
	initdb := exec.Command(filepath.Join(bins.pgBin, "initdb"), "-D", filepath.Join(pg.dir, "data"),
		"-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Env = baseEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if err := pg.d.stop(syscall.SIGQUIT, 10*time.Second); err != nil {
			t.Logf("postgres: %v", err)
		}
	})
	pg.start()
	return pg
}

// start runs the postmaster and waits until it takes connections.
func (pg *postgres) start() {
	t := pg.t
	t.Helper()
	cmd := exec.Command(filepath.Join(bins.pgBin, "postgres"), "-D", filepath.Join(pg.dir, "data"),
		"-p", strconv.Itoa(pg.port), "-k", pg.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "log_min_messages=warning", "-c", "log_connections=off")
	cmd.Env = baseEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred, Pdeathsig: syscall.SIGKILL}
	pg.d = startDaemon(t, "postgres", pg.logPath, cmd)
	ok := waitFor(serviceStartTimeout, 100*time.Millisecond, func() bool {
		if !pg.d.running() {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.url("postgres"))
		if err != nil {
			return false
		}
		_ = conn.Close(ctx)
		return true
	})
	if !ok || !pg.d.running() {
		t.Fatalf("postgres did not start on port %d; its log ends:\n%s", pg.port, tailFile(pg.logPath, 30))
	}
}

// stop shuts the cluster down the way `pg_ctl stop -m fast` does (SIGINT:
// sessions are ended, then a clean shutdown).
func (pg *postgres) stop() {
	pg.t.Helper()
	if err := pg.d.stop(syscall.SIGINT, serviceStopTimeout); err != nil {
		pg.t.Fatalf("postgres: %v", err)
	}
}

func (pg *postgres) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, db)
}

// ---- Redis ----

type redisServer struct {
	t       *testing.T
	dir     string
	port    int
	logPath string
	d       *daemon
}

func startRedis(t *testing.T, base, logs string) *redisServer {
	t.Helper()
	r := &redisServer{t: t, dir: filepath.Join(base, "redis"), port: sparePort(t), logPath: filepath.Join(logs, "redis.log")}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		t.Fatalf("redis dir: %v", err)
	}
	t.Cleanup(func() {
		if err := r.d.stop(syscall.SIGKILL, 10*time.Second); err != nil {
			t.Logf("redis: %v", err)
		}
	})
	r.start()
	return r
}

func (r *redisServer) start() {
	t := r.t
	t.Helper()
	cmd := exec.Command(bins.redis, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--daemonize", "no", "--dir", r.dir)
	cmd.Env = baseEnv()
	r.d = startDaemon(t, "redis", r.logPath, cmd)
	ok := waitFor(serviceStartTimeout, 50*time.Millisecond, func() bool { return !r.d.running() || redisPing(r.addr()) == nil })
	if !ok || !r.d.running() {
		t.Fatalf("redis did not start on port %d; its log ends:\n%s", r.port, tailFile(r.logPath, 30))
	}
}

func (r *redisServer) stop() {
	r.t.Helper()
	if err := r.d.stop(syscall.SIGTERM, serviceStopTimeout); err != nil {
		r.t.Fatalf("redis: %v", err)
	}
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }
func (r *redisServer) url() string  { return "redis://" + r.addr() + "/0" }

func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

// ---- MinIO ----

type minioServer struct {
	t        *testing.T
	dir      string
	port     int
	user     string
	password string
	logPath  string
	d        *daemon
}

func startMinIO(t *testing.T, base, logs string) *minioServer {
	t.Helper()
	m := &minioServer{t: t, dir: filepath.Join(base, "minio"), port: sparePort(t),
		user: "chaos-" + randomHex(4), password: randomHex(16), logPath: filepath.Join(logs, "minio.log")}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		t.Fatalf("minio dir: %v", err)
	}
	t.Cleanup(func() {
		if err := m.d.stop(syscall.SIGKILL, 10*time.Second); err != nil {
			t.Logf("minio: %v", err)
		}
	})
	m.start()
	return m
}

func (m *minioServer) start() {
	t := m.t
	t.Helper()
	cmd := exec.Command(bins.minio, "server", "--quiet", "--address", m.addr(), m.dir)
	cmd.Env = append(baseEnv(), "MINIO_BROWSER=off", "MINIO_UPDATE=off",
		"MINIO_ROOT_USER="+m.user, "MINIO_ROOT_PASSWORD="+m.password)
	m.d = startDaemon(t, "minio", m.logPath, cmd)
	client := &http.Client{Timeout: time.Second}
	ok := waitFor(serviceStartTimeout, 100*time.Millisecond, func() bool {
		if !m.d.running() {
			return true
		}
		resp, err := client.Get("http://" + m.addr() + "/minio/health/live")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ok || !m.d.running() {
		t.Fatalf("minio did not start on %s; its log ends:\n%s", m.addr(), tailFile(m.logPath, 30))
	}
}

func (m *minioServer) stop() {
	m.t.Helper()
	if err := m.d.stop(syscall.SIGTERM, serviceStopTimeout); err != nil {
		m.t.Fatalf("minio: %v", err)
	}
}

func (m *minioServer) addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

// ---- all three ----

type services struct {
	t     *testing.T
	logs  string
	pg    *postgres
	redis *redisServer
	minio *minioServer
	db    string // the taskrunner database's name
}

// startServices starts a PostgreSQL, a Redis and a MinIO of the test's
// own and migrates a taskrunner database; all are stopped and removed when
// the test ends.
func startServices(t *testing.T) *services {
	t.Helper()
	base, err := os.MkdirTemp("", "chaos-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after every service has stopped.
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	s := &services{t: t, logs: logDir(t), db: "taskrunner_chaos"}
	started := time.Now()
	s.pg = startPostgres(t, base, s.logs)
	s.redis = startRedis(t, base, s.logs)
	s.minio = startMinIO(t, base, s.logs)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{s.pg.logPath, s.redis.logPath, s.minio.logPath} {
				if tail := tailFile(f, 15); tail != "" {
					t.Logf("---- %s (last lines) ----\n%s", filepath.Base(f), tail)
				}
			}
		}
	})

	migrate := exec.Command(bins.taskrunner, "migrate", "up")
	migrate.Env = append(baseEnv(), "DATABASE_URL="+s.databaseURL(), "LOG_LEVEL=warn")
	migrate.SysProcAttr = childAttrs()
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("taskrunner migrate up: %v\n%s", err, out)
	}
	progress(t, "services up in %s: postgres 127.0.0.1:%d, redis %s, minio %s; database migrated",
		time.Since(started).Round(time.Millisecond), s.pg.port, s.redis.addr(), s.minio.addr())
	return s
}

func (s *services) databaseURL() string { return s.pg.url(s.db) }

// env is the environment of a taskrunner process on these services.
func (s *services) env(extra map[string]string) map[string]string {
	env := map[string]string{
		"DATABASE_URL":        s.databaseURL(),
		"REDIS_URL":           s.redis.url(),
		"MINIO_ENDPOINT":      s.minio.addr(),
		"MINIO_ROOT_USER":     s.minio.user,
		"MINIO_ROOT_PASSWORD": s.minio.password,
		"MINIO_BUCKET":        "chaos",
		"HTTP_ADDR":           "127.0.0.1:0",
		"LOG_LEVEL":           "info",
		"LOG_FORMAT":          "json",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// pool opens a connection pool of the test's own on the taskrunner
// database, reconnecting by itself after a restart.
func (s *services) pool() *pgxpool.Pool {
	s.t.Helper()
	return openPool(s.t, s.databaseURL())
}

// progress prints a line a person waiting on the suite reads.
func progress(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("%s  %s", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
