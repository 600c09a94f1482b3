package httpapi_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"
	"riverqueue.com/riverui"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/app"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/metrics"
	"github.com/taskrunner/taskrunner/schedule"
	"github.com/taskrunner/taskrunner/search"
	"github.com/taskrunner/taskrunner/task"
	"github.com/taskrunner/taskrunner/tasktype"
)

// testMaxRuntime is the runtime cap in these tests.
const testMaxRuntime = 10 * time.Minute

type bundle struct {
	db        *testenv.DB
	client    *river.Client[pgx.Tx]
	server    *httptest.Server
	logs      *testenv.Logs
	store     *artifact.Store
	artifacts *artifact.Service
	watcher   *db.TaskWatcher
	// serverChecked: the server checks every exchange against the OpenAPI
	// document itself (setup's servers do); otherwise do checks its own.
	serverChecked bool
}

type setupOpts struct {
	work   bool // start workers in this process
	checks []httpapi.Check
	// search answers search tasks; nil: they fail, not retried.
	search *search.Aggregator
	// fetch is what fetch tasks may reach; nothing when nil.
	fetch *fetch.Config
	// maxArtifactBytes is the artifact limit; testMaxArtifactBytes when 0.
	maxArtifactBytes int64
	// minioEndpoint replaces the test MinIO's address (a closed port: MinIO down).
	minioEndpoint string
	// maxWaiters bounds the waiting requests; 100 when 0.
	maxWaiters int
	// perMinute turns the enqueue limit on, in Redis at redisURL
	// (testenv.RedisURL() when empty), under a key prefix of the test's own.
	perMinute int
	redisURL  string
	// artifactMBPerMinute is each tenant's artifact byte rate (with
	// perMinute set, which turns the limiter on); the default when 0.
	artifactMBPerMinute int
	// tenantMaxWaiters bounds one tenant's waiting requests; the default
	// when 0.
	tenantMaxWaiters int
	// tenantLimits are TENANT_LIMITS.
	tenantLimits map[string]config.TenantLimits
	// apiKeys turns authentication on.
	apiKeys []config.APIKey
	// metrics, when set, is counted into and served at /metrics.
	metrics *metrics.Metrics
	// readTimeout is HTTP_READ_TIMEOUT_SECONDS; the default when 0.
	readTimeout time.Duration
	// riverUI mounts River UI, on the test's River client.
	riverUI bool
	// maxUploads bounds the uploads received at once; the default when 0.
	maxUploads int
	// tenantMaxUploads bounds one tenant's uploads at once; the default
	// (a quarter of maxUploads) when 0.
	tenantMaxUploads int
	// uploadIdleTimeout is UPLOAD_IDLE_TIMEOUT_SECONDS; the default when 0.
	uploadIdleTimeout time.Duration
	// maxArtifactsPerTask is TASK_MAX_ARTIFACTS; the default when 0.
	maxArtifactsPerTask int
	// callback is what a callback_url may reach; nil: callbacks off.
	callback *fetch.Config
	// callbackDeps deliver callbacks in this process's workers; their Task
	// reads the test's database when unset.
	callbackDeps *jobs.CallbackDeps
	// callbackLimits are the callback settings GET /limits shows.
	callbackLimits config.CallbackLimits
	// callbackSecretCache is how long the workers keep the tenants'
	// secret generations; the default when 0. The API reads and rotates
	// them through secrets of its own, as another process would.
	callbackSecretCache time.Duration
	// callbackRotationGrace is CALLBACK_ROTATION_GRACE; the default when 0.
	callbackRotationGrace time.Duration
	// fairShare sends each tenant's tasks, and its callbacks' deliveries,
	// to queues of its own, worked at callbackConcurrency deliveries at
	// once per tenant (the default when 0).
	fairShare           bool
	callbackConcurrency int
	// tracer sees the queries of the API's task service, on a pool of its
	// own.
	tracer pgx.QueryTracer
	// bulkMaxConcurrent and bulkCountTimeout are BULK_MAX_CONCURRENT and
	// BULK_COUNT_TIMEOUT_SECONDS; the defaults when 0.
	bulkMaxConcurrent int
	bulkCountTimeout  time.Duration
}

// testMaxArtifactBytes is the artifact limit in these tests.
const testMaxArtifactBytes = 256 << 10

// testTypes are the built-in types as these tests deploy them: search with
// agg (nil: search tasks fail, not retried) over the sources brave and
// searxng, fetch reaching what fetchCfg allows (nothing when nil).
func testTypes(agg *search.Aggregator, fetchCfg *fetch.Config) *tasktype.Registry {
	cfg := builtin.Config{Search: builtin.SearchConfig{Sources: []string{"brave", "searxng"}, MaxResults: 10}}
	if agg != nil {
		cfg.Search.NewAggregator = func(tasktype.Services) (*search.Aggregator, error) { return agg, nil }
	}
	if fetchCfg != nil {
		cfg.Fetch = *fetchCfg
	}
	return builtin.Registry(cfg)
}

// setup gives a test its own database, a River client on it (working tasks
// when opts.work) and the API on an httptest server.
func setup(t *testing.T, opts setupOpts) *bundle {
	t.Helper()
	tdb := testenv.NewDB(t)
	logger, logs := testenv.Logger(t)
	store, artifacts := newArtifacts(t, tdb, logger, opts)
	types := testTypes(opts.search, opts.fetch)
	var deps jobs.Deps
	var apiSecrets httpapi.CallbackSecrets
	if opts.callbackDeps != nil {
		d := *opts.callbackDeps
		if d.Task == nil {
			d.Task = task.CallbackTasks(tdb.Pool, httpapi.CallbackBody(jobs.DefaultMaxRuntime))
		}
		d.Logger = logger
		var err error
		d.Secrets, err = jobs.NewCallbackSecrets(jobs.CallbackSecretsConfig{Master: d.Secret, DB: tdb.Pool,
			Grace: opts.callbackRotationGrace, CacheTTL: opts.callbackSecretCache})
		require.NoError(t, err)
		secrets, err := jobs.NewCallbackSecrets(jobs.CallbackSecretsConfig{Master: d.Secret, DB: tdb.Pool, Grace: opts.callbackRotationGrace})
		require.NoError(t, err)
		apiSecrets = secrets
		deps.Callback = &d
	}
	cfg := testConfig(opts)
	limits := cfg.Limits
	tc, err := app.TaskServiceConfig(cfg)
	require.NoError(t, err)
	tc.Pool, tc.Types, tc.Logger, tc.Artifacts = tracedPool(t, tdb, opts.tracer), types, logger, artifacts
	tc.Limits.Callback = opts.callback
	catalog, err := task.NewCatalog(task.CatalogConfig{Pool: tdb.Pool, Builtins: types, MaxRuntime: testMaxRuntime, Logger: logger})
	require.NoError(t, err)
	tc.Catalog = catalog
	tasks, err := task.NewService(tc)
	require.NoError(t, err)
	// The API and the schedules' ticks share the limiter, as in a process.
	limiter := newLimiter(t, opts)
	var runs *jobs.RunRecorder
	if opts.work {
		deps.Schedules = schedule.NewFirer(schedule.FirerConfig{Pool: tdb.Pool, Tasks: tasks, Logger: logger,
			Limiter: limiter, Limits: limits, Metrics: opts.metrics})
		runs, err = jobs.NewRunRecorder(jobs.RunRecorderConfig{Pool: tdb.Pool, Logger: logger, WorkerName: "test", Metrics: opts.metrics, Types: types})
		require.NoError(t, err)
	}
	cc := app.ClientConfig(cfg)
	// Tasks may name the queue "other", which no worker works: they stay
	// queued.
	cc.Queues = []string{"default"}
	cc.Pool, cc.Logger, cc.Work, cc.Types, cc.Deps, cc.Runs = tdb.Pool, logger, opts.work, types, deps, runs
	cc.Services = tasktype.Services{Artifacts: artifacts, Logger: logger, Metrics: opts.metrics}
	client, err := jobs.NewClient(cc)
	require.NoError(t, err)
	tasks.SetClient(client)
	if opts.work {
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, client.Start(ctx))
		t.Cleanup(func() {
			stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
			defer stop()
			require.NoError(t, client.StopAndCancel(stopCtx))
			require.NoError(t, runs.Close(stopCtx))
			cancel()
		})
	}
	maxWaiters := opts.maxWaiters
	if maxWaiters == 0 {
		maxWaiters = 100
	}
	watcher := db.NewTaskWatcher(tdb.Pool, maxWaiters, logger)
	watchCtx, stopWatching := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); watcher.Run(watchCtx) }()
	t.Cleanup(func() { stopWatching(); <-watchDone })
	schedules, err := schedule.NewService(tdb.Pool, tasks, limits, logger)
	require.NoError(t, err)
	if opts.work {
		// As every working process does: the client's periodic jobs follow
		// the schedules.
		syncCtx, stopSync := context.WithCancel(context.Background())
		syncDone := make(chan struct{})
		syncer := schedule.NewSyncer(tdb.Pool, client, cfg.Tenants(), 0, logger)
		go func() { defer close(syncDone); syncer.Run(syncCtx) }()
		t.Cleanup(func() { stopSync(); <-syncDone })
	}
	ac := app.APIConfig(cfg)
	ac.Tasks, ac.Schedules, ac.Artifacts, ac.Watcher, ac.Limiter = tasks, schedules, artifacts, watcher, apiLimiter(limiter)
	ac.TaskTypes = catalog
	ac.Metrics, ac.Checks, ac.CallbackSecrets, ac.Logger = opts.metrics, opts.checks, apiSecrets, logger
	ac.Callback, ac.RiverUI = opts.callbackLimits, newRiverUI(t, opts, client, logger)
	api, err := httpapi.New(ac)
	require.NoError(t, err)
	// Every response, whichever helper asked, must be one the OpenAPI
	// document describes; the http.Server is the one the processes run.
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = httpapi.NewHTTPServer(checked(t, api), cfg.Limits.HTTPReadTimeout, logger)
	srv.Start()
	t.Cleanup(srv.CloseClientConnections)
	t.Cleanup(srv.Close)
	return &bundle{db: tdb, client: client, server: srv, logs: logs, store: store, artifacts: artifacts, watcher: watcher, serverChecked: true}
}

// testConfig is the configuration of a process as opts describe it, as
// package app reads it: the limits, the tenants and the workers' settings.
// Its queues are "default" and "other".
func testConfig(opts setupOpts) *config.Config {
	cfg := &config.Config{
		Queues: []string{"default", "other"}, WorkerConcurrency: 10,
		WorkerFetchCooldown: 5 * time.Millisecond, WorkerFetchPoll: 200 * time.Millisecond,
		RescueAfter: testMaxRuntime + time.Minute, TaskRetention: time.Hour,
		APIKeys: opts.apiKeys, TenantFairShare: opts.fairShare,
		Limits: config.Limits{TaskMaxRuntime: testMaxRuntime, MaxBatchSize: 50, MaxRequestBodyBytes: config.DefaultMaxRequestBodyBytes,
			HTTPReadTimeout: cmp.Or(opts.readTimeout, config.DefaultHTTPReadTimeout), MaxConcurrentUploads: cmp.Or(opts.maxUploads, config.DefaultMaxConcurrentUploads),
			TasksPerMinute: opts.perMinute, ArtifactMBPerMinute: opts.artifactMBPerMinute, TenantMaxWaiters: opts.tenantMaxWaiters,
			TenantMaxUploads: opts.tenantMaxUploads, UploadIdleTimeout: opts.uploadIdleTimeout, Tenants: opts.tenantLimits,
			ScheduleMaxTaskBytes: config.DefaultScheduleMaxTaskBytes, InternalJobRetention: config.DefaultInternalJobRetention,
			BulkMaxConcurrent: opts.bulkMaxConcurrent, BulkCountTimeout: opts.bulkCountTimeout,
			CallbackTenantConcurrency: opts.callbackConcurrency},
	}
	return cfg
}

// tracedPool is a pool on tdb whose queries tracer sees, or tdb's own
// without a tracer.
func tracedPool(t *testing.T, tdb *testenv.DB, tracer pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	if tracer == nil {
		return tdb.Pool
	}
	cfg, err := pgxpool.ParseConfig(tdb.URL)
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// newRiverUI is River UI on client when opts asks for it, or nil.
func newRiverUI(t *testing.T, opts setupOpts, client *river.Client[pgx.Tx], logger *slog.Logger) http.Handler {
	t.Helper()
	if !opts.riverUI {
		return nil
	}
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{Endpoints: riverui.NewEndpoints(client, nil), Logger: logger, Prefix: "/riverui"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, ui.Start(ctx))
	return ui
}

// newArtifacts is an artifact service on a bucket of the test's own in the
// test MinIO, emptied and removed when the test ends.
func newArtifacts(t *testing.T, tdb *testenv.DB, logger *slog.Logger, opts setupOpts) (*artifact.Store, *artifact.Service) {
	t.Helper()
	m := testenv.MinIOServer(t)
	endpoint, bucket := m.Endpoint, testenv.RandomName("test-")
	if opts.minioEndpoint != "" {
		endpoint = opts.minioEndpoint
	} else {
		bucket = testenv.NewBucket(t, "test-").Name
	}
	store, err := artifact.NewStore(artifact.Config{Endpoint: endpoint, User: m.User, Password: m.Password, Bucket: bucket})
	require.NoError(t, err)
	limit := opts.maxArtifactBytes
	if limit == 0 {
		limit = testMaxArtifactBytes
	}
	svc, err := artifact.NewService(artifact.ServiceConfig{Store: store, Pool: tdb.Pool, MaxBytes: limit, MaxPerTask: opts.maxArtifactsPerTask,
		Logger: logger, Metrics: opts.metrics})
	require.NoError(t, err)
	return store, svc
}

// offlineServices are a task and an artifact service on a database and a
// MinIO that are never reached, for an API whose routes are only walked or
// whose requests are refused before touching either.
func offlineServices(t *testing.T, logger *slog.Logger) (*task.Service, *artifact.Service) {
	t.Helper()
	pool, err := db.NewPool(context.Background(), db.PoolConfig{URL: "postgres://127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	client, err := jobs.NewClient(jobs.ClientConfig{Pool: pool, Logger: logger, Types: testTypes(nil, nil)})
	require.NoError(t, err)
	store, err := artifact.NewStore(artifact.Config{Endpoint: "127.0.0.1:1", Bucket: "offline"})
	require.NoError(t, err)
	artifacts, err := artifact.NewService(artifact.ServiceConfig{Store: store, Pool: pool, Logger: logger})
	require.NoError(t, err)
	tasks, err := task.NewService(task.ServiceConfig{
		Pool: pool, Client: client, Types: testTypes(nil, nil), Logger: logger, Artifacts: artifacts,
		Limits: task.Limits{MaxRuntime: time.Minute, Queues: []string{"default"}},
	})
	require.NoError(t, err)
	return tasks, artifacts
}

// objectCount is how many objects (and unfinished uploads) the test's
// bucket holds.
func (b *bundle) objectCount(t *testing.T) int {
	t.Helper()
	bucket := testenv.Bucket{MinIO: testenv.MinIOServer(t), Name: b.store.Bucket(), Client: b.store.Client()}
	return bucket.Count(t)
}

func (b *bundle) artifactRows(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM artifacts").Scan(&n))
	return n
}

// response is an API answer; views_test.go's helpers decode its body.
type response struct {
	status int
	header http.Header
	raw    []byte
}

// do sends a request with a JSON body (a string or []byte as is, anything
// else marshalled) and reads the JSON answer. The exchange must match the
// OpenAPI document.
func (b *bundle) do(t *testing.T, method, path string, body any) response {
	t.Helper()
	return b.doAs(t, "", method, path, body)
}

// doAs is do with a bearer key (none when empty) and extra headers, as
// name, value pairs.
func (b *bundle) doAs(t *testing.T, key, method, path string, body any, header ...string) response {
	t.Helper()
	var reqBody []byte
	switch v := body.(type) {
	case nil:
	case string:
		reqBody = []byte(v)
	case []byte:
		reqBody = v
	default:
		buf, err := json.Marshal(v)
		require.NoError(t, err)
		reqBody = buf
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequest(method, b.server.URL+path, rd)
	require.NoError(t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if !b.serverChecked {
		x := exchange{method: method, url: req.URL, header: req.Header, reqBody: reqBody, status: resp.StatusCode, respHdr: resp.Header, body: raw}
		require.NoError(t, apiContract(t).check(x), "the exchange does not match %s:\n%s", openAPIFile, x)
	}
	if len(raw) > 0 {
		require.True(t, json.Valid(raw), "body is not JSON: %s", raw)
	}
	return response{status: resp.StatusCode, header: resp.Header, raw: raw}
}

// submit posts a task and returns its id, requiring 202.
func (b *bundle) submit(t *testing.T, req map[string]any) int64 {
	t.Helper()
	resp := b.do(t, http.MethodPost, "/tasks", req)
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	return resp.task(t).ID
}

// waitStatus polls the task until its status is one of want.
func (b *bundle) waitStatus(t *testing.T, id int64, want ...taskrunner.Status) response {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := b.do(t, http.MethodGet, "/tasks/"+strconv.FormatInt(id, 10), nil)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
		status := resp.task(t).Status
		if slices.Contains(want, status) {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d: status %s, want one of %v; body: %s", id, status, want, resp.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobCount is how many tasks river_job holds: taskrunner's own jobs (the
// periodic run sweep and retention a working client's leader inserts when
// elected) are not counted.
func (b *bundle) jobCount(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind NOT LIKE 'taskrunner\_%'`).Scan(&n))
	return n
}

func errorCode(t *testing.T, r response) taskrunner.Code {
	t.Helper()
	return r.apiError(t).Code
}

func testenvPassword(t *testing.T) string { return testenv.MinIOServer(t).Password }

// apiLimiter is l as the API takes it: no limiter when nil.
func apiLimiter(l *cache.Limiter) httpapi.Limiter {
	if l == nil {
		return nil
	}
	return l
}

// newLimiter is the enqueue limit of opts, or nil.
func newLimiter(t *testing.T, opts setupOpts) *cache.Limiter {
	t.Helper()
	if opts.perMinute == 0 {
		return nil
	}
	url := opts.redisURL
	if url == "" {
		url = testenv.RedisURL()
	}
	rdb, err := cache.NewClient(url)
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	return cache.NewLimiter(rdb, testenv.RandomName("test:")+":")
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

func testLoggerOf(t *testing.T) *slog.Logger {
	l, _ := testenv.Logger(t)
	return l
}
