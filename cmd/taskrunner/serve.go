package main

import (
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
	"github.com/taskrunner/taskrunner/internal/wiring"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/metrics"
	"github.com/taskrunner/taskrunner/schedule"
	"github.com/taskrunner/taskrunner/task"
)

// role is what a server process does.
type role string

const (
	roleServe  role = "serve"  // API and workers
	roleAPI    role = "api"    // API only
	roleWorker role = "worker" // workers only
)

func (r role) serves() bool { return r != roleWorker }
func (r role) works() bool  { return r != roleAPI }

// stopAndCancelTimeout bounds the wait for cancelled tasks to return after
// the grace period.
const stopAndCancelTimeout = 10 * time.Second

// queueDepthInterval is how often /metrics recounts tasks by state.
const queueDepthInterval = 5 * time.Second

// runServer runs an api, worker or serve process until ctx is done: it
// builds every part, runs them, and shuts down.
func runServer(ctx context.Context, cfg *config.Config, logger *slog.Logger, r role) error {
	logger = logger.With(slog.String("role", string(r)))
	// go-redis v9 has one logger for the whole process and none per
	// client, so the process sets it, here and nowhere else: the library's
	// own lines (dial failures, pool trouble) become JSON lines with an
	// event, like every other line.
	redis.SetLogger(cache.LibraryLogger{Logger: logger})
	s, err := build(ctx, cfg, logger, r)
	if err != nil {
		return err
	}
	err = s.run(ctx)
	s.shutdown(ctx)
	return err
}

// server is an api, worker or serve process: what build made, run starts
// and shutdown stops.
type server struct {
	cfg    *config.Config
	logger *slog.Logger
	role   role

	pool   *pgxpool.Pool
	rdb    *redis.Client
	client *river.Client[pgx.Tx]
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
	// the API and the workers; nil without CALLBACK_SECRET.
	callbackSecrets *jobs.CallbackSecrets
	// serveErr receives the error an HTTP server stops with.
	serveErr chan error
	// background holds the goroutines run starts (the watcher, the
	// schedules' syncer); stopBackground ends them, and shutdown waits
	// for them before it closes the connections they use.
	background     sync.WaitGroup
	stopBackground context.CancelFunc
}

// build makes every part of the process and checks its dependencies; it
// starts nothing. What it opened is closed again when it fails.
func build(ctx context.Context, cfg *config.Config, logger *slog.Logger, r role) (_ *server, err error) {
	s := &server{cfg: cfg, logger: logger, role: r, serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.flushRuns(ctx)
			s.closeConnections()
		}
	}()
	s.pool, err = db.NewPool(ctx, db.PoolConfig{URL: cfg.DatabaseURL, MaxConns: int32(cfg.DBMaxConns), AppName: "taskrunner-" + string(r)})
	if err != nil {
		return nil, err
	}
	if err := checkMigrated(ctx, s.pool, logger); err != nil {
		return nil, err
	}
	if s.rdb, err = cache.NewClient(cfg.RedisURL); err != nil {
		return nil, err
	}
	store, err := artifact.NewStore(artifact.Config{
		Endpoint: cfg.MinIOEndpoint, User: cfg.MinIOUser, Password: cfg.MinIOPassword,
		Bucket: cfg.MinIOBucket, Secure: cfg.MinIOSecure,
	})
	if err != nil {
		return nil, err
	}
	bucketCtx, cancel := context.WithTimeout(ctx, artifact.DefaultPingTimeout)
	if err := store.EnsureBucket(bucketCtx); err != nil {
		logger.Warn("artifact bucket not ready; /ready reports minio down until it is",
			slog.String("event", "dependency_down"), slog.String("dependency", "minio"), slog.String("error", err.Error()))
	}
	cancel()

	m := metrics.New()
	m.SetTenants(tenantNames(cfg))
	m.WatchQueueDepth(func(ctx context.Context) (map[string]int64, error) { return db.CountTasksByState(ctx, s.pool) }, queueDepthInterval)
	artifacts, err := artifact.NewService(artifact.ServiceConfig{
		Store: store, Pool: s.pool, MaxBytes: int64(cfg.Limits.TaskMaxArtifactMB) << 20, MaxPerTask: cfg.Limits.TaskMaxArtifacts,
		Logger: logger, Metrics: m,
	})
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
	if s.client, err = s.buildClient(artifacts, m); err != nil {
		return nil, err
	}
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
func (s *server) buildClient(artifacts *artifact.Service, m *metrics.Metrics) (*river.Client[pgx.Tx], error) {
	cfg := s.cfg
	fetchCfg := wiring.FetchConfig(cfg)
	if err := fetchCfg.Validate(); err != nil {
		return nil, fmt.Errorf("FETCH_DOMAIN_ALLOWLIST or FETCH_ALLOWED_PORTS: %w", err)
	}
	deps := jobs.Deps{Artifacts: artifacts}
	if s.role.works() {
		taskCfg, err := s.taskServiceConfig()
		if err != nil {
			return nil, err
		}
		// Ticks draw on the enqueue allowance the API's requests draw on:
		// the same limiter keys, at the same per-tenant rates.
		deps.Schedules = schedule.NewFirer(schedule.FirerConfig{Pool: s.pool, Tasks: taskCfg, Logger: s.logger,
			Limiter: cache.NewLimiter(s.rdb, cfg.RedisKeyPrefix), Limits: cfg.Limits, Metrics: m})
		fetchCfg.Logger = s.logger // fetch_host_refused
		deps.Fetcher = fetch.New(fetchCfg)
		agg, err := wiring.SearchAggregator(cfg, s.rdb, s.logger, m)
		if err != nil {
			return nil, err
		}
		deps.Search = agg
		if cfg.Callback.Secret != "" {
			cb := wiring.CallbackURLConfig(cfg)
			if err := cb.Validate(); err != nil {
				return nil, fmt.Errorf("CALLBACK_DOMAIN_ALLOWLIST or CALLBACK_ALLOWED_PORTS: %w", err)
			}
			cb.Logger = s.logger // fetch_host_refused
			deps.Callback = &jobs.CallbackDeps{
				Secret: []byte(cfg.Callback.Secret), Secrets: s.callbackSecrets, Poster: fetch.New(cb), Task: task.CallbackTasks(s.pool, httpapi.CallbackBody(cfg.Limits.TaskMaxRuntime)),
				Timeout: cfg.Callback.Timeout, MaxAttempts: cfg.Callback.MaxAttempts, Logger: s.logger,
			}
		}
		if s.runs, err = jobs.NewRunRecorder(jobs.RunRecorderConfig{Pool: s.pool, Logger: s.logger, Metrics: m}); err != nil {
			return nil, err
		}
	}
	client, err := jobs.NewClient(jobs.ClientConfig{
		Pool:        s.pool,
		Logger:      s.logger,
		Work:        s.role.works(),
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
		Deps:                deps,
		Runs:                s.runs,
	})
	if err != nil {
		return nil, err
	}
	if s.role.works() {
		s.schedules = schedule.NewSyncer(s.pool, client, cfg.Tenants(), 0, s.logger)
	}
	return client, nil
}

// taskServiceConfig is how the API submits tasks, and schedules enqueue
// theirs, without the River client.
func (s *server) taskServiceConfig() (task.ServiceConfig, error) {
	cfg := s.cfg
	var callbackURLs *fetch.Config
	if cfg.Callback.Secret != "" {
		c := wiring.CallbackURLConfig(cfg)
		if err := c.Validate(); err != nil {
			return task.ServiceConfig{}, fmt.Errorf("CALLBACK_DOMAIN_ALLOWLIST or CALLBACK_ALLOWED_PORTS: %w", err)
		}
		callbackURLs = &c
	}
	return task.ServiceConfig{
		Pool: s.pool, Logger: s.logger, FairShare: cfg.TenantFairShare,
		Limits: task.Limits{
			MaxRuntime: cfg.Limits.TaskMaxRuntime,
			Queues:     cfg.Queues,
			Env:        jobs.Env{SearchSources: cfg.Limits.SearchSourceAllowlist, SearchMaxResults: cfg.SearchMaxResults, Fetch: wiring.FetchConfig(cfg)},
			Callback:   callbackURLs,

			BulkMaxConcurrent: cfg.Limits.BulkMaxConcurrent,
			BulkCountTimeout:  cfg.Limits.BulkCountTimeout,
		},
	}, nil
}

// buildAPI makes the API, River UI and /metrics on cfg.HTTPAddr.
func (s *server) buildAPI(store *artifact.Store, artifacts *artifact.Service, m *metrics.Metrics) error {
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
	taskCfg, err := s.taskServiceConfig()
	if err != nil {
		return err
	}
	taskCfg.Client, taskCfg.Artifacts = s.client, artifacts
	tasks, err := task.NewService(taskCfg)
	if err != nil {
		return err
	}
	schedules, err := schedule.NewService(s.pool, tasks, cfg.Limits, s.logger)
	if err != nil {
		return err
	}
	var secrets httpapi.CallbackSecrets
	if s.callbackSecrets != nil {
		secrets = s.callbackSecrets
	}
	api, err := httpapi.New(httpapi.Config{
		Tasks:     tasks,
		Schedules: schedules,
		Artifacts: artifacts,
		Checks: []httpapi.Check{
			{Name: "postgres", Check: s.pool.Ping},
			{Name: "redis", Check: func(ctx context.Context) error { return cache.Ping(ctx, s.rdb) }},
			{Name: "minio", Check: store.Ping},
		},
		APIKeys:         cfg.APIKeys,
		Limiter:         cache.NewLimiter(s.rdb, cfg.RedisKeyPrefix),
		Metrics:         m,
		RiverUI:         ui,
		Watcher:         s.watcher,
		Limits:          cfg.Limits,
		Callback:        cfg.Callback.Limits(),
		CallbackSecrets: secrets,
		RequestTimeout:  config.DefaultRequestTimeout,
		Logger:          s.logger,
	})
	if err != nil {
		return err
	}
	s.http, s.httpName, s.httpAddr = httpapi.NewHTTPServer(api, cfg.Limits.HTTPReadTimeout, s.logger), "api", cfg.HTTPAddr
	return nil
}

// run starts the HTTP server and the workers, and waits until ctx is done
// or the HTTP server fails.
func (s *server) run(ctx context.Context) error {
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

// shutdown stops the process without losing a task, in this order (the
// chaos suite checks it): nothing is left running, and every attempt that
// ran has its run record.
func (s *server) shutdown(ctx context.Context) {
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
func (s *server) goBackground(what string, fn func()) {
	s.background.Go(func() {
		fn()
		s.logger.Info(what+" stopped", slog.String("event", "background_stopped"), slog.String("part", what))
	})
}

// waitBackground ends the goroutines run started and waits for them.
func (s *server) waitBackground() {
	if s.stopBackground != nil {
		s.stopBackground()
	}
	s.background.Wait()
}

// stopHTTP stops the HTTP server taking requests and lets those it has
// finish until ctx is done, in the background; the channel is closed when
// it has stopped.
func (s *server) stopHTTP(ctx context.Context) <-chan struct{} {
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
func (s *server) stopWorkers(ctx context.Context) error {
	if !s.role.works() {
		return nil
	}
	return s.client.Stop(ctx)
}

// cancelWorkers cancels the tasks still running, so River returns them to
// the queue, waiting at most stopAndCancelTimeout.
func (s *server) cancelWorkers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, stopAndCancelTimeout)
	defer cancel()
	if err := s.client.StopAndCancel(ctx); err != nil {
		s.logger.Error("tasks did not stop", slog.String("event", "shutdown_incomplete"), slog.String("error", err.Error()))
	}
}

// flushRuns writes the last run records, once River has stopped working.
func (s *server) flushRuns(ctx context.Context) {
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
func (s *server) closeConnections() {
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
