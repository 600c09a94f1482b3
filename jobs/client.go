package jobs

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/search"
)

// ClientConfig configures the River client of an api, worker or serve process.
type ClientConfig struct {
	// Work makes the client fetch and work tasks; without it the client
	// only inserts and cancels (the api process).
	Work bool
	// Queues are the queues worked, each with Concurrency workers.
	Queues      []string
	Concurrency int
	// MaxRuntime is River's JobTimeout: the cap on every task's timeout.
	MaxRuntime time.Duration
	// RescueAfter is how long a task may stay running before River's
	// rescuer returns it to the queue, assuming its worker died.
	RescueAfter   time.Duration
	FetchCooldown time.Duration
	FetchPoll     time.Duration
	// Retention is how long finished tasks stay in river_job.
	Retention time.Duration
	// ArtifactRetention is how long runs and artifacts stay; 0 keeps them.
	// Checked every RetentionInterval by a periodic job.
	ArtifactRetention time.Duration
	RetentionInterval time.Duration
	// WorkerName identifies this process in runs.
	WorkerName string
	// Deps are the workers' dependencies.
	Deps Deps
	// Runs records every attempt; required with Work. Close it after the
	// client has stopped.
	Runs *RunRecorder
}

// Deps are what workers use besides the database.
type Deps struct {
	// Search answers search tasks; without it they fail, not retried.
	Search *search.Aggregator
	// Artifacts stores what tasks produce (search results, fetched pages).
	Artifacts *artifact.Service
	// Fetcher fetches for fetch tasks; without it they fail, not retried.
	Fetcher *fetch.Fetcher
}

// NewClient returns the River client on pool, with every task type's
// worker and the run recorder when cfg.Work is set.
func NewClient(pool *pgxpool.Pool, cfg ClientConfig, logger *slog.Logger) (*river.Client[pgx.Tx], error) {
	rc := &river.Config{
		Logger:                      riverLogger(logger),
		JobTimeout:                  cfg.MaxRuntime,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		CompletedJobRetentionPeriod: cfg.Retention,
		CancelledJobRetentionPeriod: cfg.Retention,
		DiscardedJobRetentionPeriod: cfg.Retention,
		// Registered for inserts in every process, so River validates kinds.
		Workers: Workers(pool, cfg.Deps),
	}
	if cfg.Work {
		rc.FetchCooldown = cfg.FetchCooldown
		rc.FetchPollInterval = cfg.FetchPoll
		rc.Queues = make(map[string]river.QueueConfig, len(cfg.Queues))
		for _, q := range cfg.Queues {
			rc.Queues[q] = river.QueueConfig{MaxWorkers: cfg.Concurrency}
		}
		if cfg.Runs == nil {
			return nil, errors.New("a working client needs a RunRecorder")
		}
		rc.Middleware = []rivertype.Middleware{cfg.Runs}
		if cfg.ArtifactRetention > 0 {
			rc.PeriodicJobs = []*river.PeriodicJob{retentionPeriodicJob(cfg.ArtifactRetention, cmp.Or(cfg.RetentionInterval, time.Hour))}
		}
	}
	return river.NewClient(riverpgxv5.New(pool), rc)
}

// Workers returns a River worker bundle with every task type's worker and
// the retention job's.
func Workers(pool *pgxpool.Pool, d Deps) *river.Workers {
	workers := river.NewWorkers()
	river.AddWorker(workers, &RetentionWorker{pool: pool, artifacts: d.Artifacts})
	for _, t := range Types {
		t.addWorker(workers, d)
	}
	return workers
}

// riverLogger passes River's own log lines through at warn and above, with
// an event name like every other line.
func riverLogger(logger *slog.Logger) *slog.Logger {
	return slog.New(&levelFloor{Handler: logger.Handler(), floor: slog.LevelWarn}).With(slog.String("event", "river_log"))
}

type levelFloor struct {
	slog.Handler
	floor slog.Level
}

func (h *levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.floor && h.Handler.Enabled(ctx, l)
}

func (h *levelFloor) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelFloor{Handler: h.Handler.WithAttrs(attrs), floor: h.floor}
}

func (h *levelFloor) WithGroup(name string) slog.Handler {
	return &levelFloor{Handler: h.Handler.WithGroup(name), floor: h.floor}
}
