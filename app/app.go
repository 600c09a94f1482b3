// Package app assembles taskrunner: from the configuration and a list of
// task types it builds every part of a process once (database pool, Redis,
// artifact store, River client, task and schedule services, the API),
// runs the process's role, and shuts it down in a numbered order that
// loses no task. cmd/taskrunner is app.Run with the built-in types; a
// program of your own passes its own types as well (examples/embed).
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/metrics"
	"github.com/taskrunner/taskrunner/schedule"
	"github.com/taskrunner/taskrunner/task"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Role is what a server process does.
type Role string

// The roles of a process.
const (
	RoleServe  Role = "serve"  // API and workers
	RoleAPI    Role = "api"    // API only
	RoleWorker Role = "worker" // workers only
)

func (r Role) serves() bool { return r != RoleWorker }
func (r Role) works() bool  { return r != RoleAPI }

// Options are what a process is built from.
type Options struct {
	// Config is the process's configuration (config.Load). Required.
	Config *config.Config
	// Role is what the process does; RoleServe when empty.
	Role Role
	// Types are the task types the process serves; Builtins(Config)
	// when nil.
	Types []tasktype.Type
	// Logger gets every line; nil logs nothing.
	Logger *slog.Logger
}

// stopAndCancelTimeout bounds the wait for cancelled tasks to return after
// the grace period.
const stopAndCancelTimeout = 10 * time.Second

// queueDepthInterval is how often /metrics recounts tasks by state.
const queueDepthInterval = 5 * time.Second

// Run runs an api, worker or serve process until ctx is done: it builds
// every part, runs them, and shuts down.
func Run(ctx context.Context, opts Options) error {
	// go-redis v9 has one logger for the whole process and none per
	// client, so the process sets it, here and nowhere else: the library's
	// own lines (dial failures, pool trouble) become JSON lines with an
	// event, like every other line.
	if opts.Logger != nil {
		redis.SetLogger(cache.LibraryLogger{Logger: opts.Logger.With(slog.String("role", string(cmp.Or(opts.Role, RoleServe))))})
	}
	a, err := New(ctx, opts)
	if err != nil {
		return err
	}
	err = a.Run(ctx)
	a.Shutdown(ctx)
	return err
}

// App is an api, worker or serve process: what New made, Run starts and
// Shutdown stops.
type App struct {
	cfg    *config.Config
	logger *slog.Logger
	role   Role
	types  *tasktype.Registry

	pool   *pgxpool.Pool
	rdb    *redis.Client
	client *river.Client[pgx.Tx]
	// tasks submits and reads tasks for the API and the schedules' ticks.
	tasks *task.Service
	// runs records every attempt; nil unless the process works tasks.
	runs *jobs.RunRecorder
	// http is the API, or a worker's /metrics (httpName says which); nil
	// for a worker without METRICS_ADDR.
	http     *http.Server
	httpName string
	httpAddr string
	// watcher and riverUI are the API's background parts; nil without it.
	watcher *db.TaskWatcher
	riverUI *riverui.Handler
	// schedules keeps the River client's periodic jobs in step with the
	// schedules; nil unless the process works tasks.
	schedules *schedule.Syncer
	// callbackSecrets are the tenants' callback signing secrets, shared by
	// the API and the workers, and callbackURLs what a callback URL may
	// reach; nil without CALLBACK_SECRET.
	callbackSecrets *jobs.CallbackSecrets
	callbackURLs    *fetch.Config
	// serveErr receives the error an HTTP server stops with.
	serveErr chan error
	// background holds the goroutines run starts (the watcher, the
	// schedules' syncer); stopBackground ends them, and shutdown waits
	// for them before it closes the connections they use.
	background     sync.WaitGroup
	stopBackground context.CancelFunc
}

// New makes every part of the process and checks its dependencies; it
// starts nothing. What it opened is closed again when it fails.
func New(ctx context.Context, opts Options) (_ *App, err error) {
	if opts.Config == nil {
		return nil, errors.New("app: Config is required")
	}
	cfg, r := opts.Config, cmp.Or(opts.Role, RoleServe)
	logger := cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)).With(slog.String("role", string(r)))
	types := opts.Types
	if types == nil {
		types = Builtins(cfg)
	}
	registry, err := tasktype.NewRegistry(types...)
	if err != nil {
		return nil, err
	}
	if err := FetchConfig(cfg).Validate(); err != nil {
		return nil, fmt.Errorf("FETCH_DOMAIN_ALLOWLIST or FETCH_ALLOWED_PORTS: %w", err)
	}
	s := &App{cfg: cfg, logger: logger, role: r, types: registry, serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.flushRuns(ctx)
			s.closeConnections()
		}
	}()
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	m := metrics.New()
	m.SetTenants(tenantNames(cfg))
	m.WatchQueueDepth(func(ctx context.Context) (map[string]int64, error) { return db.CountTasksByState(ctx, s.pool) }, queueDepthInterval)
	store, artifacts, err := s.buildArtifacts(ctx, m)
	if err != nil {
		return nil, err
	}
	if cfg.Callback.Secret != "" {
		s.callbackSecrets, err = jobs.NewCallbackSecrets(jobs.CallbackSecretsConfig{
			Master: []byte(cfg.Callback.Secret), DB: s.pool, Grace: cfg.Callback.RotationGrace,
		})
		if err != nil {
			return nil, err
		}
	}
	if s.tasks, err = s.buildTasks(artifacts); err != nil {
		return nil, err
	}
	if s.client, err = s.buildClient(artifacts, m); err != nil {
		return nil, err
	}
	s.tasks.SetClient(s.client)
	switch {
	case r.serves():
		err = s.buildAPI(store, artifacts, m)
	case cfg.MetricsAddr != "":
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		s.http, s.httpName, s.httpAddr = httpapi.NewHTTPServer(mux, cfg.Limits.HTTPReadTimeout, logger), "metrics", cfg.MetricsAddr
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// connect opens the database pool, once its migrations are checked, and
// the Redis client.
func (s *App) connect(ctx context.Context) (err error) {
	cfg := s.cfg
	s.pool, err = db.NewPool(ctx, db.PoolConfig{URL: cfg.DatabaseURL, MaxConns: int32(cfg.DBMaxConns), AppName: "taskrunner-" + string(s.role)})
	if err != nil {
		return err
	}
	if err := checkMigrated(ctx, s.pool, s.logger); err != nil {
		return err
	}
	s.rdb, err = cache.NewClient(cfg.RedisURL)
	return err
}

// buildArtifacts makes the MinIO store, with its bucket when MinIO
// answers (/ready says it is down until it does), and the artifact service.
func (s *App) buildArtifacts(ctx context.Context, m *metrics.Metrics) (*artifact.Store, *artifact.Service, error) {
	cfg := s.cfg
	store, err := artifact.NewStore(artifact.Config{
		Endpoint: cfg.MinIOEndpoint, User: cfg.MinIOUser, Password: cfg.MinIOPassword,
		Bucket: cfg.MinIOBucket, Secure: cfg.MinIOSecure,
	})
	if err != nil {
		return nil, nil, err
	}
	bucketCtx, cancel := context.WithTimeout(ctx, artifact.DefaultPingTimeout)
	if err := store.EnsureBucket(bucketCtx); err != nil {
		s.logger.Warn("artifact bucket not ready; /ready reports minio down until it is",
			slog.String("event", "dependency_down"), slog.String("dependency", "minio"), slog.String("error", err.Error()))
	}
	cancel()
	artifacts, err := artifact.NewService(artifact.ServiceConfig{
		Store: store, Pool: s.pool, MaxBytes: int64(cfg.Limits.TaskMaxArtifactMB) << 20, MaxPerTask: cfg.Limits.TaskMaxArtifacts,
		Logger: s.logger, Metrics: m,
	})
	return store, artifacts, err
}

// checkMigrated fails unless River's and the app's migrations are applied.
func checkMigrated(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	migrator, err := db.NewMigrator(pool, logger)
	if err != nil {
		return err
	}
	err = migrator.CheckMigrated(ctx)
	_ = migrator.Close()
	return err
}

// buildClient makes the River client: one that works tasks, with their
// dependencies and the run recorder, when the process works; one that
// only inserts and cancels otherwise.
func (s *App) buildClient(artifacts *artifact.Service, m *metrics.Metrics) (*river.Client[pgx.Tx], error) {
	cfg := s.cfg
	var deps jobs.Deps
	if s.role.works() {
		// Ticks draw on the enqueue allowance the API's requests draw on:
		// the same limiter keys, at the same per-tenant rates.
		deps.Schedules = schedule.NewFirer(schedule.FirerConfig{Pool: s.pool, Tasks: s.tasks, Logger: s.logger,
			Limiter: cache.NewLimiter(s.rdb, cfg.RedisKeyPrefix), Limits: cfg.Limits, Metrics: m})
		if s.callbackURLs != nil {
			cb := *s.callbackURLs
			cb.Logger = s.logger // fetch_host_refused
			deps.Callback = &jobs.CallbackDeps{
				Secret: []byte(cfg.Callback.Secret), Secrets: s.callbackSecrets, Poster: fetch.New(cb), Task: task.CallbackTasks(s.pool, httpapi.CallbackBody(cfg.Limits.TaskMaxRuntime)),
				Timeout: cfg.Callback.Timeout, MaxAttempts: cfg.Callback.MaxAttempts, Logger: s.logger,
			}
		}
		var err error
		if s.runs, err = jobs.NewRunRecorder(jobs.RunRecorderConfig{Pool: s.pool, Logger: s.logger, Metrics: m, Types: s.types}); err != nil {
			return nil, err
		}
	}
	cc := ClientConfig(cfg)
	cc.Pool, cc.Logger, cc.Work, cc.Types = s.pool, s.logger, s.role.works(), s.types
	cc.Services = tasktype.Services{Pool: s.pool, Artifacts: artifacts, Redis: s.rdb, Logger: s.logger, Metrics: m}
	cc.Deps, cc.Runs = deps, s.runs
	client, err := jobs.NewClient(cc)
	if err != nil {
		return nil, err
	}
	if s.role.works() {
		s.schedules = schedule.NewSyncer(s.pool, client, cfg.Tenants(), 0, s.logger)
	}
	return client, nil
}

// buildTasks makes the task service the API submits with and the
// schedules' ticks enqueue with; its River client is given once made.
func (s *App) buildTasks(artifacts *artifact.Service) (*task.Service, error) {
	tc, err := TaskServiceConfig(s.cfg)
	if err != nil {
		return nil, err
	}
	tc.Pool, tc.Types, tc.Logger, tc.Artifacts = s.pool, s.types, s.logger, artifacts
	catalog, err := task.NewCatalog(task.CatalogConfig{Pool: s.pool, Builtins: s.types, MaxRuntime: tc.Limits.MaxRuntime, Logger: s.logger})
	if err != nil {
		return nil, err
	}
	tc.Catalog = catalog
	s.callbackURLs = tc.Limits.Callback
	return task.NewService(tc)
}

// buildAPI makes the API, River UI and /metrics on cfg.HTTPAddr.
func (s *App) buildAPI(store *artifact.Store, artifacts *artifact.Service, m *metrics.Metrics) error {
	cfg := s.cfg
	s.watcher = db.NewTaskWatcher(s.pool, cfg.MaxWaiters, s.logger)
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(s.client, nil),
		Logger:    s.logger.With(slog.String("event", "riverui_log")),
		Prefix:    "/riverui",
	})
	if err != nil {
		return fmt.Errorf("river ui: %w", err)
	}
	s.riverUI = ui
	schedules, err := schedule.NewService(s.pool, s.tasks, cfg.Limits, s.logger)
	if err != nil {
		return err
	}
	var secrets httpapi.CallbackSecrets
	if s.callbackSecrets != nil {
		secrets = s.callbackSecrets
	}
	ac := APIConfig(cfg)
	ac.Tasks, ac.Schedules, ac.Artifacts, ac.TaskTypes = s.tasks, schedules, artifacts, s.tasks.Catalog()
	ac.Checks = []httpapi.Check{
		{Name: "postgres", Check: s.pool.Ping},
		{Name: "redis", Check: func(ctx context.Context) error { return cache.Ping(ctx, s.rdb) }},
		{Name: "minio", Check: store.Ping},
	}
	ac.Limiter = cache.NewLimiter(s.rdb, cfg.RedisKeyPrefix)
	ac.Metrics, ac.RiverUI, ac.Watcher, ac.CallbackSecrets, ac.Logger = m, ui, s.watcher, secrets, s.logger
	api, err := httpapi.New(ac)
	if err != nil {
		return err
	}
	s.http, s.httpName, s.httpAddr = httpapi.NewHTTPServer(api, cfg.Limits.HTTPReadTimeout, s.logger), "api", cfg.HTTPAddr
	return nil
}

// Run starts the HTTP server and the workers, and waits until ctx is done
// or the HTTP server fails.
func (s *App) Run(ctx context.Context) error {
	bg, stop := context.WithCancel(ctx)
	s.stopBackground = stop
	if s.watcher != nil {
		s.goBackground("task watcher", func() { s.watcher.Run(bg) })
		// Its background services end with the process.
		if err := s.riverUI.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("start river ui: %w", err)
		}
	}
	if s.http != nil {
		if err := listen(s.httpAddr, s.httpName, s.http, s.logger, s.serveErr); err != nil {
			return err
		}
	}
	if s.role.works() {
		// Not ctx: cancelling River's start context is a hard stop that
		// cancels running tasks at once; shutdown stops it gracefully.
		if err := s.client.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("start workers: %w", err)
		}
		s.logger.Info("workers started", slog.String("event", "workers_started"),
			slog.String("client_id", s.client.ID()), slog.Any("queues", s.cfg.Queues), slog.Int("concurrency", s.cfg.WorkerConcurrency),
			slog.Any("tenants", s.cfg.Tenants()), slog.Bool("fair_share", s.cfg.TenantFairShare))
		s.goBackground("schedule syncer", func() { s.schedules.Run(bg) })
	}

	select {
	case <-ctx.Done():
	case err := <-s.serveErr:
		s.logger.Error("api stopped", slog.String("event", "api_failed"), slog.String("error", err.Error()))
	}
	return nil
}

// Shutdown stops the process without losing a task, in this order (the
// chaos suite checks it): nothing is left running, and every attempt that
// ran has its run record.
func (s *App) Shutdown(ctx context.Context) {
	s.logger.Info("shutting down", slog.String("event", "shutdown_started"), slog.Float64("grace_seconds", s.cfg.ShutdownGrace.Seconds()))
	ctx = context.WithoutCancel(ctx)
	graceCtx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownGrace)
	defer cancel()

	// 1. HTTP stops taking requests and River stops fetching, together;
	// running tasks get the grace period to finish.
	httpDone := s.stopHTTP(graceCtx)
	if err := s.stopWorkers(graceCtx); err != nil {
		// 2. Those still running are cancelled, so River returns them to
		// the queue.
		s.logger.Warn("grace period over; cancelling running tasks", slog.String("event", "shutdown_cancelling_tasks"))
		s.cancelWorkers(ctx)
	}
	// 3. HTTP has finished the requests it had.
	<-httpDone
	// 4. The last run records are written, now that River works no more.
	s.flushRuns(ctx)
	// 5. The task watcher and the schedules' syncer have stopped.
	s.waitBackground()
	// 6. Nothing uses Redis or the database any longer.
	s.closeConnections()
	s.logger.Info("stopped", slog.String("event", "shutdown_complete"))
}

// goBackground runs fn in a goroutine that shutdown waits for, and logs
// when it has returned.
func (s *App) goBackground(what string, fn func()) {
	s.background.Go(func() {
		fn()
		s.logger.Info(what+" stopped", slog.String("event", "background_stopped"), slog.String("part", what))
	})
}

// waitBackground ends the goroutines run started and waits for them.
func (s *App) waitBackground() {
	if s.stopBackground != nil {
		s.stopBackground()
	}
	s.background.Wait()
}

// stopHTTP stops the HTTP server taking requests and lets those it has
// finish until ctx is done, in the background; the channel is closed when
// it has stopped.
func (s *App) stopHTTP(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s.http != nil {
			if err := s.http.Shutdown(ctx); err != nil {
				_ = s.http.Close()
			}
		}
	}()
	return done
}

// stopWorkers stops River fetching and waits until ctx is done for the
// running tasks to finish.
func (s *App) stopWorkers(ctx context.Context) error {
	if !s.role.works() {
		return nil
	}
	return s.client.Stop(ctx)
}

// cancelWorkers cancels the tasks still running, so River returns them to
// the queue, waiting at most stopAndCancelTimeout.
func (s *App) cancelWorkers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, stopAndCancelTimeout)
	defer cancel()
	if err := s.client.StopAndCancel(ctx); err != nil {
		s.logger.Error("tasks did not stop", slog.String("event", "shutdown_incomplete"), slog.String("error", err.Error()))
	}
}

// flushRuns writes the last run records, once River has stopped working.
func (s *App) flushRuns(ctx context.Context) {
	if s.runs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stopAndCancelTimeout)
	defer cancel()
	if err := s.runs.Close(ctx); err != nil {
		s.logger.Error("run records not all written", slog.String("event", "shutdown_incomplete"), slog.String("error", err.Error()))
	}
}

// closeConnections closes Redis and the database pool, whichever are open.
func (s *App) closeConnections() {
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

// listen serves srv on addr in the background and logs the address it got.
func listen(addr, what string, srv *http.Server, logger *slog.Logger, serveErr chan<- error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	}()
	logger.Info(what+" listening", slog.String("event", what+"_listening"), slog.String("addr", ln.Addr().String()))
	return nil
}

// ClientConfig is the River client's configuration from cfg: queues,
// workers, fair share, timeouts, fetch speed and retention. The caller
// adds the pool, the logger, the types and their services, and what a
// working client needs (Work, Deps, Runs).
func ClientConfig(cfg *config.Config) jobs.ClientConfig {
	return jobs.ClientConfig{
		Queues:      cfg.Queues,
		Concurrency: cfg.WorkerConcurrency,
		Tenants:     tenantQueues(cfg),
		// Each tenant's callback deliveries in a queue of their own.
		CallbackConcurrency: cfg.Limits.CallbackTenantConcurrency,
		CallbackTenants:     callbackQueues(cfg),
		MaxRuntime:          cfg.Limits.TaskMaxRuntime,
		RescueAfter:         cfg.RescueAfter,
		FetchCooldown:       cfg.WorkerFetchCooldown,
		FetchPoll:           cfg.WorkerFetchPoll,
		Retention:           cfg.TaskRetention,
		InternalRetention:   cfg.Limits.InternalJobRetention,
		ArtifactRetention:   cfg.ArtifactRetention,
		RetentionInterval:   cfg.RetentionInterval,
		RunSweepInterval:    cfg.RunSweepInterval,
	}
}

// TaskServiceConfig is the task service's configuration from cfg: what a
// request may ask for, fair share, and what a callback URL may reach
// (none without CALLBACK_SECRET). The caller adds the pool, the types,
// the logger and the artifact service.
func TaskServiceConfig(cfg *config.Config) (task.ServiceConfig, error) {
	var callbackURLs *fetch.Config
	if cfg.Callback.Secret != "" {
		c := CallbackURLConfig(cfg)
		if err := c.Validate(); err != nil {
			return task.ServiceConfig{}, fmt.Errorf("CALLBACK_DOMAIN_ALLOWLIST or CALLBACK_ALLOWED_PORTS: %w", err)
		}
		callbackURLs = &c
	}
	return task.ServiceConfig{
		FairShare: cfg.TenantFairShare,
		Limits: task.Limits{
			MaxRuntime: cfg.Limits.TaskMaxRuntime,
			Queues:     cfg.Queues,
			Callback:   callbackURLs,

			BulkMaxConcurrent: cfg.Limits.BulkMaxConcurrent,
			BulkCountTimeout:  cfg.Limits.BulkCountTimeout,
		},
	}, nil
}

// APIConfig is the API's configuration from cfg: keys, limits and the
// callback settings it shows. The caller adds the services, the checks,
// the limiter, the metrics, River UI, the watcher and the logger.
func APIConfig(cfg *config.Config) httpapi.Config {
	return httpapi.Config{
		APIKeys:        cfg.APIKeys,
		Limits:         cfg.Limits,
		Callback:       cfg.Callback.Limits(),
		RequestTimeout: config.DefaultRequestTimeout,
	}
}

// tenantNames are the tenants the metrics' tenant label may name: those of
// API_KEYS and TENANT_LIMITS.
func tenantNames(cfg *config.Config) []string {
	var names []string
	for _, k := range cfg.APIKeys {
		names = append(names, k.Name)
	}
	for name := range cfg.Limits.Tenants {
		names = append(names, name)
	}
	return names
}

// tenantQueues are the tenants whose own queues a working client serves,
// each with its cap on running tasks (0: none beyond WORKER_CONCURRENCY).
// They are served whether TENANT_FAIR_SHARE is on or not, so that turning
// it off leaves no task waiting in a queue nobody works.
func tenantQueues(cfg *config.Config) map[string]int {
	out := make(map[string]int)
	for _, t := range cfg.Tenants() {
		out[t] = cfg.Limits.MaxRunningFor(t)
	}
	return out
}

// callbackQueues are each tenant's cap on callback deliveries at once
// (CALLBACK_TENANT_CONCURRENCY and its overrides): a working client serves
// every tenant's own delivery queue, fair share or not.
func callbackQueues(cfg *config.Config) map[string]int {
	out := make(map[string]int)
	for _, t := range cfg.Tenants() {
		out[t] = cfg.Limits.CallbackConcurrencyFor(t)
	}
	return out
}
