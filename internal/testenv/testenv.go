// Package testenv gives tests the real services they run against: a fresh
// migrated PostgreSQL database per test (copied from a template built once),
// Redis, and a MinIO bucket per test. Nothing here fakes a service; when one is missing the
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
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

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

// Bucket is a MinIO bucket of one test's own.
type Bucket struct {
	MinIO  // the server that holds it
	Name   string
	Client *minio.Client
}

// NewBucket makes a bucket named prefix plus random hex in the test MinIO.
// When the test ends the bucket is removed with everything in it: its
// objects and the multipart uploads begun in it and never finished.
func NewBucket(t testing.TB, prefix string) *Bucket {
	t.Helper()
	m := MinIOServer(t)
	client, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.User, m.Password, "")})
	if err != nil {
		t.Fatalf("MinIO client for %s: %v", m.Endpoint, err)
	}
	b := &Bucket{MinIO: m, Name: RandomName(prefix), Client: client}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, b.Name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make test bucket %s at TEST_MINIO_ENDPOINT %s: %v", b.Name, m.Endpoint, err)
	}
	t.Cleanup(func() { b.remove(t) })
	return b
}

// remove empties the bucket and removes it; what it cannot remove fails
// the test, since it would stay behind in the shared MinIO.
func (b *Bucket) remove(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.empty(ctx, t)
	if err := b.Client.RemoveBucket(ctx, b.Name); err != nil {
		t.Errorf("remove test bucket %s: %v", b.Name, err)
	}
}

// Empty removes every object in the bucket and every multipart upload
// begun in it and not finished. What it cannot remove fails the test.
func (b *Bucket) Empty(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.empty(ctx, t)
}

// Count is how many objects the bucket holds, with the multipart uploads
// begun in it and not finished.
func (b *Bucket) Count(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	for obj := range b.Client.ListObjectsIter(ctx, b.Name, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("list the objects of test bucket %s: %v", b.Name, obj.Err)
		}
		n++
	}
	for up := range b.Client.ListIncompleteUploads(ctx, b.Name, "", true) {
		if up.Err != nil {
			t.Fatalf("list unfinished uploads of test bucket %s: %v", b.Name, up.Err)
		}
		n++
	}
	return n
}

func (b *Bucket) empty(ctx context.Context, t testing.TB) {
	var listErr error
	objects := func(yield func(minio.ObjectInfo) bool) {
		for obj := range b.Client.ListObjectsIter(ctx, b.Name, minio.ListObjectsOptions{Recursive: true}) {
			if obj.Err != nil {
				listErr = obj.Err
				return
			}
			if !yield(obj) {
				return
			}
		}
	}
	removed, err := b.Client.RemoveObjectsWithIter(ctx, b.Name, objects, minio.RemoveObjectsOptions{})
	if err != nil {
		t.Errorf("remove the objects of test bucket %s: %v", b.Name, err)
		return
	}
	for r := range removed {
		if r.Err != nil {
			t.Errorf("remove object %s from test bucket %s: %v", r.ObjectName, b.Name, r.Err)
		}
	}
	if listErr != nil {
		t.Errorf("list the objects of test bucket %s: %v", b.Name, listErr)
	}
	for up := range b.Client.ListIncompleteUploads(ctx, b.Name, "", true) {
		if up.Err != nil {
			t.Errorf("list unfinished uploads of test bucket %s: %v", b.Name, up.Err)
			break
		}
		if err := b.Client.RemoveIncompleteUpload(ctx, b.Name, up.Key); err != nil {
			t.Errorf("remove unfinished upload %s from test bucket %s: %v", up.Key, b.Name, err)
		}
	}
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
