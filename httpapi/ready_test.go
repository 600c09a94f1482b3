package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

// readyChecks are the real checks of the API process against the given
// services.
func readyChecks(t *testing.T, pool *pgxpool.Pool, redisURL string, minio testenv.MinIO) []httpapi.Check {
	t.Helper()
	rdb, err := cache.NewClient(redisURL)
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	bucket := testenv.RandomName("ready-")
	if minio.Endpoint != "127.0.0.1:1" {
		bucket = testenv.NewBucket(t, "ready-").Name
	}
	store, err := artifact.NewStore(artifact.Config{Endpoint: minio.Endpoint, User: minio.User, Password: minio.Password, Bucket: bucket})
	require.NoError(t, err)
	return []httpapi.Check{
		{Name: "postgres", Check: pool.Ping},
		{Name: "redis", Check: func(ctx context.Context) error { return cache.Ping(ctx, rdb) }},
		{Name: "minio", Check: store.Ping},
	}
}

func TestReadyNamesTheDependencyThatIsDown(t *testing.T) {
	t.Parallel()
	minio := testenv.MinIOServer(t)
	downMinIO := minio
	downMinIO.Endpoint = "127.0.0.1:1"
	tdb := testenv.NewDB(t)
	downPool, err := db.NewPool(context.Background(), db.PoolConfig{URL: "postgres://127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	require.NoError(t, err)
	t.Cleanup(downPool.Close)

	cases := []struct {
		name  string
		pool  *pgxpool.Pool
		redis string
		minio testenv.MinIO
		down  string
	}{
		{"all up", tdb.Pool, testenv.RedisURL(), minio, ""},
		{"postgres down", downPool, testenv.RedisURL(), minio, "postgres"},
		{"redis down", tdb.Pool, "redis://127.0.0.1:1/0", minio, "redis"},
		{"minio down", tdb.Pool, testenv.RedisURL(), downMinIO, "minio"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, setupOpts{checks: readyChecks(t, tc.pool, tc.redis, tc.minio)})
			resp := b.do(t, http.MethodGet, "/ready", nil)
			checks := decode[statusBody](t, resp.raw).Checks
			if tc.down == "" {
				require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
				require.Equal(t, map[string]string{"postgres": "ok", "redis": "ok", "minio": "ok"}, checks)
				return
			}
			require.Equal(t, http.StatusServiceUnavailable, resp.status, "body: %s", resp.raw)
			require.Equal(t, taskrunner.CodeDependencyUnavailable, errorCode(t, resp))
			require.Equal(t, "down", checks[tc.down])
			require.Contains(t, resp.apiError(t).Message, tc.down)
			require.NotContains(t, string(resp.raw), minio.Password)

			// /health touches nothing and stays up.
			require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/health", nil).status)
		})
	}
}

// With PostgreSQL unreachable, the API answers 503 dependency_unavailable
// (never a 500, never a hang) and shows nothing of the cause.
func TestDatabaseDownIsServiceUnavailable(t *testing.T) {
	t.Parallel()
	logger, logs := testenv.Logger(t)
	downPool, err := db.NewPool(context.Background(), db.PoolConfig{URL: "postgres://127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	require.NoError(t, err)
	t.Cleanup(downPool.Close)
	client, err := jobs.NewClient(jobs.ClientConfig{Pool: downPool, Logger: logger, Types: testTypes(nil, nil), MaxRuntime: time.Minute, RescueAfter: 2 * time.Minute, Retention: time.Hour})
	require.NoError(t, err)
	tasks, err := task.NewService(task.ServiceConfig{Pool: downPool, Client: client, Types: testTypes(nil, nil), Logger: logger, Limits: task.Limits{MaxRuntime: time.Minute, Queues: []string{"default"}}})
	require.NoError(t, err)
	_, artifacts := offlineServices(t, logger)
	api, err := httpapi.New(httpapi.Config{
		Tasks: tasks, Artifacts: artifacts,
		Logger: logger, Limits: config.Limits{MaxRequestBodyBytes: 1 << 20}, RequestTimeout: 10 * time.Second,
	})
	require.NoError(t, err)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := &bundle{server: srv, logs: logs}

	for _, r := range []struct{ method, path, body string }{
		{"POST", "/tasks", `{"type":"echo","params":{"msg":"a"}}`},
		{"GET", "/tasks/1", ""},
		{"GET", "/tasks", ""},
		{"POST", "/tasks/1/cancel", ""},
	} {
		var body any
		if r.body != "" {
			body = r.body
		}
		resp := b.do(t, r.method, r.path, body)
		require.Equal(t, http.StatusServiceUnavailable, resp.status, "%s %s: %s", r.method, r.path, resp.raw)
		require.Equal(t, taskrunner.CodeDependencyUnavailable, errorCode(t, resp))
		require.NotContains(t, string(resp.raw), "127.0.0.1:1", "the cause reached the client")
	}
	require.NotEmpty(t, logs.Events("http_error"), "the cause is logged")
	require.Contains(t, logs.String(), "127.0.0.1")
}
