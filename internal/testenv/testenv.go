// Package testenv gives tests the real services they run against: a fresh
// migrated PostgreSQL database per test (copied from a template built once),
// Redis, and MinIO. Nothing here fakes a service; when one is missing the
// test fails and says how to start it (`make test` starts them all).
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner/db"
)

// Defaults for the services on a development machine; TEST_DATABASE_URL,
// TEST_REDIS_URL and TEST_MINIO_* override them.
const (
	DefaultAdminURL = "postgres://127.0.0.1:5432/test?sslmode=disable"
	DefaultRedisURL = "redis://127.0.0.1:6379/0"
)

// templateLockKey serialises template builds across test processes.
const templateLockKey = 0x74727465737474 // "trtestt"

// AdminURL is the database tests connect to in order to create their own.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// RedisURL is the Redis tests use; tests keep to their own key prefixes.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return DefaultRedisURL
}

// RandomName returns prefix followed by random hex, for databases, buckets
// and key prefixes of one test.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// DB is a test's own database.
type DB struct {
	URL  string
	Name string
	Pool *pgxpool.Pool
}

// NewDB returns a fresh database with every migration applied, dropped
// when the test ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	tmpl := template(t)
	return newDB(t, "TEMPLATE "+pgx.Identifier{tmpl}.Sanitize())
}

// NewEmptyDB returns a fresh database with no migrations applied, dropped
// when the test ends.
func NewEmptyDB(t testing.TB) *DB {
	t.Helper()
	return newDB(t, "")
}

func newDB(t testing.TB, from string) *DB {
	ctx := context.Background()
	name := RandomName("taskrunner_test_")
	admin := adminConn(t)
	defer admin.Close(ctx)
	var err error
	for range 20 { // a concurrent copy of the template can make it "busy"
		if _, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" "+from); err == nil || !isBusy(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	u := withDatabase(t, AdminURL(), name)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		dropDatabase(t, name)
	})
	return &DB{URL: u, Name: name, Pool: pool}
}

func isBusy(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006" // object_in_use
}

func dropDatabase(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Errorf("drop test database %s: %v", name, err)
		return
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("drop test database %s: %v", name, err)
	}
}

func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("connect to PostgreSQL at TEST_DATABASE_URL (default %s; `make test` expects it running): %v", DefaultAdminURL, err)
	}
	return conn
}

func withDatabase(t testing.TB, base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// template returns the name of a migrated template database for the
// current schema, building it once per schema across all test processes.
func template(t testing.TB) string {
	t.Helper()
	templateOnce.Do(func() { templateName, templateErr = buildTemplate() })
	if templateErr != nil {
		t.Fatalf("build template database: %v", templateErr)
	}
	return templateName
}

func buildTemplate() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fp, err := db.SchemaFingerprint()
	if err != nil {
		return "", err
	}
	name := "taskrunner_tmpl_" + fp
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL at TEST_DATABASE_URL (default %s): %w", DefaultAdminURL, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(templateLockKey)); err != nil {
		return "", err
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(templateLockKey)) //nolint:errcheck

	var ready bool
	err = admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", name).Scan(&ready)
	if err != nil || ready {
		return name, err
	}
	// A half-built template from an interrupted run is rebuilt.
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	u, err := url.Parse(AdminURL())
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		return "", err
	}
	m, err := db.NewMigrator(pool, slog.New(slog.DiscardHandler))
	if err == nil {
		_, err = m.Up(ctx)
		_ = m.Close()
	}
	pool.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	_, err = admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH IS_TEMPLATE true")
	return name, err
}

// MinIO locates the test MinIO server.
type MinIO struct {
	Endpoint string
	User     string
	Password string
}

// MinIOServer returns the MinIO that `make test` started
// (TEST_MINIO_ENDPOINT, TEST_MINIO_USER, TEST_MINIO_PASSWORD). Without it
// the test fails: these tests need the real server.
func MinIOServer(t testing.TB) MinIO {
	t.Helper()
	m := MinIO{
		Endpoint: os.Getenv("TEST_MINIO_ENDPOINT"),
		User:     os.Getenv("TEST_MINIO_USER"),
		Password: os.Getenv("TEST_MINIO_PASSWORD"),
	}
	if m.Endpoint == "" || m.User == "" || m.Password == "" {
		t.Fatal("TEST_MINIO_ENDPOINT, TEST_MINIO_USER and TEST_MINIO_PASSWORD are not set: run the tests with `make test`, which starts MinIO")
	}
	return m
}

// Logs captures a logger's JSON lines for assertions on events.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Events returns the decoded lines whose event attribute is name.
func (l *Logs) Events(name string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == name {
			out = append(out, m)
		}
	}
	return out
}

// Logger returns a debug-level JSON logger writing to the returned Logs
// and, when the test is verbose, to stderr too.
func Logger(t testing.TB) (*slog.Logger, *Logs) {
	logs := &Logs{}
	var w io.Writer = logs
	if testing.Verbose() {
		w = io.MultiWriter(logs, os.Stderr)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), logs
}
