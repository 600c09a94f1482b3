package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
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

// runServer runs an api, worker or serve process until ctx is done, then
// shuts down: the API stops taking requests, running tasks get
// cfg.ShutdownGrace to finish, and those still running are cancelled so
// River returns them to the queue.
func runServer(ctx context.Context, cfg *config.Config, logger *slog.Logger, r role) error {
	logger = logger.With(slog.String("role", string(r)))
	pool, err := db.NewPool(ctx, db.PoolConfig{URL: cfg.DatabaseURL, MaxConns: int32(cfg.DBMaxConns), AppName: "taskrunner-" + string(r)})
	if err != nil {
		return err
	}
	defer pool.Close()

	migrator, err := db.NewMigrator(pool, logger)
	if err != nil {
		return err
	}
	err = migrator.CheckMigrated(ctx)
	_ = migrator.Close()
	if err != nil {
		return err
	}

	cache.SetLogger(logger)
	rdb, err := cache.NewClient(cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store, err := artifact.NewStore(artifact.Config{
		Endpoint: cfg.MinIOEndpoint, User: cfg.MinIOUser, Password: cfg.MinIOPassword,
		Bucket: cfg.MinIOBucket, Secure: cfg.MinIOSecure,
	})
	if err != nil {
		return err
	}
	bucketCtx, cancel := context.WithTimeout(ctx, artifact.DefaultPingTimeout)
	if err := store.EnsureBucket(bucketCtx); err != nil {
		logger.Warn("artifact bucket not ready; /ready reports minio down until it is",
			slog.String("event", "dependency_down"), slog.String("dependency", "minio"), slog.String("error", err.Error()))
	}
	cancel()

	m := metrics.New()
	m.WatchQueueDepth(func(ctx context.Context) (map[string]int64, error) { return db.CountTasksByState(ctx, pool) }, queueDepthInterval)
	artifacts := artifact.NewService(store, pool, int64(cfg.Limits.TaskMaxArtifactMB)<<20, logger)
	artifacts.Metrics = m
	deps := jobs.Deps{Artifacts: artifacts}
	fetchCfg := wiring.FetchConfig(cfg)
	if err := fetchCfg.Validate(); err != nil {
		return fmt.Errorf("FETCH_DOMAIN_ALLOWLIST or FETCH_ALLOWED_PORTS: %w", err)
	}
	if r.works() {
		deps.Fetcher = fetch.New(fetchCfg)
		if deps.Search, err = wiring.SearchAggregator(cfg, rdb, logger, m); err != nil {
			return err
		}
	}

	host, _ := os.Hostname()
	workerName := fmt.Sprintf("%s/%d", host, os.Getpid())
	var runs *jobs.RunRecorder
	if r.works() {
		runs = jobs.NewRunRecorder(pool, logger, workerName, m)
	}
	client, err := jobs.NewClient(pool, jobs.ClientConfig{
		Work:              r.works(),
		Queues:            cfg.Queues,
		Concurrency:       cfg.WorkerConcurrency,
		MaxRuntime:        cfg.Limits.TaskMaxRuntime,
		RescueAfter:       cfg.RescueAfter,
		FetchCooldown:     cfg.WorkerFetchCooldown,
		FetchPoll:         cfg.WorkerFetchPoll,
		Retention:         cfg.TaskRetention,
		ArtifactRetention: cfg.ArtifactRetention,
		RetentionInterval: cfg.RetentionInterval,
		WorkerName:        workerName,
		Deps:              deps,
		Runs:              runs,
	}, logger)
	if err != nil {
		return fmt.Errorf("river client: %w", err)
	}

	serveErr := make(chan error, 1)
	var srv *http.Server
	if r.serves() {
		srv, err = startAPI(ctx, apiDeps{cfg, logger, pool, rdb, store, artifacts, client, m}, serveErr)
		if err != nil {
			return err
		}
	} else if cfg.MetricsAddr != "" {
		srv, err = startMetrics(cfg, logger, m, serveErr)
		if err != nil {
			return err
		}
	}
	if r.works() {
		// Not ctx: cancelling River's start context is a hard stop that
		// cancels running tasks at once; shutdown below stops it gracefully.
		if err := client.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("start workers: %w", err)
		}
		logger.Info("workers started", slog.String("event", "workers_started"),
			slog.Any("queues", cfg.Queues), slog.Int("concurrency", cfg.WorkerConcurrency))
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		logger.Error("api stopped", slog.String("event", "api_failed"), slog.String("error", err.Error()))
	}
	logger.Info("shutting down", slog.String("event", "shutdown_started"), slog.Float64("grace_seconds", cfg.ShutdownGrace.Seconds()))

	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if srv != nil {
			if err := srv.Shutdown(graceCtx); err != nil {
				_ = srv.Close()
			}
		}
	}()
	if r.works() {
		if err := client.Stop(graceCtx); err != nil {
			logger.Warn("grace period over; cancelling running tasks", slog.String("event", "shutdown_cancelling_tasks"))
			cancelCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopAndCancelTimeout)
			defer cancel()
			if err := client.StopAndCancel(cancelCtx); err != nil {
				logger.Error("tasks did not stop", slog.String("event", "shutdown_incomplete"), slog.String("error", err.Error()))
			}
		}
	}
	<-httpDone
	if runs != nil {
		// The last run records, after River has stopped working.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopAndCancelTimeout)
		defer cancel()
		if err := runs.Close(flushCtx); err != nil {
			logger.Error("run records not all written", slog.String("event", "shutdown_incomplete"), slog.String("error", err.Error()))
		}
	}
	logger.Info("stopped", slog.String("event", "shutdown_complete"))
	return nil
}

// apiDeps is what the API of a process is built from.
type apiDeps struct {
	cfg       *config.Config
	logger    *slog.Logger
	pool      *pgxpool.Pool
	rdb       *redis.Client
	store     *artifact.Store
	artifacts *artifact.Service
	client    *river.Client[pgx.Tx]
	metrics   *metrics.Metrics
}

// startAPI listens on cfg.HTTPAddr and serves the API, River UI and
// /metrics in the background; serving errors arrive on serveErr.
func startAPI(ctx context.Context, d apiDeps, serveErr chan<- error) (*http.Server, error) {
	cfg := d.cfg
	watcher := db.NewTaskWatcher(d.pool, cfg.MaxWaiters, d.logger)
	go watcher.Run(ctx)
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(d.client, nil),
		Logger:    d.logger.With(slog.String("event", "riverui_log")),
		Prefix:    "/riverui",
	})
	if err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	// Its background services end with the process.
	if err := ui.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("start river ui: %w", err)
	}
	api := httpapi.New(httpapi.Deps{
		Tasks: task.NewService(d.pool, d.client, task.Limits{
			MaxRuntime: cfg.Limits.TaskMaxRuntime,
			Queues:     cfg.Queues,
			Env:        jobs.Env{SearchSources: cfg.Limits.SearchSourceAllowlist, SearchMaxResults: cfg.SearchMaxResults, Fetch: wiring.FetchConfig(cfg)},
		}, d.logger),
		Artifacts: d.artifacts,
		Checks: []httpapi.Check{
			{Name: "postgres", Check: d.pool.Ping},
			{Name: "redis", Check: func(ctx context.Context) error { return cache.Ping(ctx, d.rdb) }},
			{Name: "minio", Check: d.store.Ping},
		},
		APIKeys:              cfg.APIKeys,
		Limiter:              cache.NewLimiter(d.rdb, cfg.RedisKeyPrefix, cfg.Limits.TasksPerMinute),
		Metrics:              d.metrics,
		RiverUI:              ui,
		Watcher:              watcher,
		MaxBatchSize:         cfg.Limits.MaxBatchSize,
		Limits:               cfg.Limits,
		Logger:               d.logger,
		MaxBodyBytes:         cfg.Limits.MaxRequestBodyBytes,
		RequestTimeout:       config.DefaultRequestTimeout,
		ReadTimeout:          cfg.Limits.HTTPReadTimeout,
		MaxConcurrentUploads: cfg.Limits.MaxConcurrentUploads,
	})
	return listen(cfg.HTTPAddr, "api", httpapi.NewHTTPServer(api, cfg.Limits.HTTPReadTimeout, d.logger), d.logger, serveErr)
}

// startMetrics serves /metrics for a worker process on addr.
func startMetrics(cfg *config.Config, logger *slog.Logger, m *metrics.Metrics, serveErr chan<- error) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	return listen(cfg.MetricsAddr, "metrics", httpapi.NewHTTPServer(mux, cfg.Limits.HTTPReadTimeout, logger), logger, serveErr)
}

// listen serves srv on addr in the background and logs the address it got.
func listen(addr, what string, srv *http.Server, logger *slog.Logger, serveErr chan<- error) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	}()
	logger.Info(what+" listening", slog.String("event", what+"_listening"), slog.String("addr", ln.Addr().String()))
	return srv, nil
}
