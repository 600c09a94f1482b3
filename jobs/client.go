package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner/tasktype"
)

// Defaults of ClientConfig, each the default of the setting named.
const (
	// DefaultConcurrency is the workers per queue (WORKER_CONCURRENCY).
	DefaultConcurrency = 100
	// DefaultMaxRuntime is the cap on every task's timeout
	// (TASK_MAX_RUNTIME_SECONDS).
	DefaultMaxRuntime = 600 * time.Second
	// DefaultRescueMargin is how much longer than MaxRuntime a task may
	// stay running before River's rescuer takes it for lost
	// (TASK_RESCUE_AFTER_SECONDS is the sum).
	DefaultRescueMargin = 60 * time.Second
	// DefaultRetention is how long finished tasks stay (TASK_RETENTION).
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultRetentionInterval is how often runs and artifacts past
	// ArtifactRetention are removed (RETENTION_INTERVAL).
	DefaultRetentionInterval = time.Hour
	// DefaultCallbackConcurrency is how many of one tenant's callback
	// deliveries one process makes at once (CALLBACK_TENANT_CONCURRENCY).
	DefaultCallbackConcurrency = 10
)

// ClientConfig configures the River client of an api, worker or serve process.
type ClientConfig struct {
	// Pool is the database River works on. Required.
	Pool *pgxpool.Pool
	// Logger gets River's own lines at warn and above, as river_log; nil
	// logs nothing.
	Logger *slog.Logger
	// Work makes the client fetch and work tasks; without it the client
	// only inserts and cancels (the api process).
	Work bool
	// Queues are the queues worked; River's default queue alone when
	// empty.
	Queues []string
	// Concurrency is the workers per queue; DefaultConcurrency when 0.
	Concurrency int
	// Tenants, when not empty, makes the client also serve every tenant's
	// own queue of each of Queues (TenantQueue), for fair share: the map
	// holds each tenant's cap on running tasks (TENANT_MAX_RUNNING and its
	// overrides), 0 for none beyond Concurrency. A tenant queue gets
	// min(Concurrency, cap) workers. River's MaxWorkers is per client, so
	// the cap holds per process; the total of workers is the sum over the
	// queues.
	Tenants map[string]int
	// CallbackConcurrency is how many callback deliveries of one tenant
	// (in its own delivery queue, CallbackQueueFor), and of the callback
	// queue without a tenant, one process makes at once;
	// DefaultCallbackConcurrency when 0. CallbackTenants overrides it per
	// tenant (TENANT_LIMITS callback_concurrency).
	CallbackConcurrency int
	CallbackTenants     map[string]int
	// MaxRuntime is River's JobTimeout: the cap on every task's timeout;
	// DefaultMaxRuntime when 0.
	MaxRuntime time.Duration
	// RescueAfter is how long a task may stay running before River's
	// rescuer returns it to the queue, assuming its worker died; it must
	// be longer than MaxRuntime, and is MaxRuntime + DefaultRescueMargin
	// when 0.
	RescueAfter time.Duration
	// FetchCooldown is River's FetchCooldown (WORKER_FETCH_COOLDOWN);
	// River's default when 0.
	FetchCooldown time.Duration
	// FetchPoll is River's FetchPollInterval (WORKER_FETCH_POLL_INTERVAL);
	// River's default when 0.
	FetchPoll time.Duration
	// Retention is how long finished tasks stay in river_job;
	// DefaultRetention when 0.
	Retention time.Duration
	// InternalRetention is how long taskrunner's own finished jobs
	// (IsInternal) stay in river_job; DefaultInternalRetention when 0.
	InternalRetention time.Duration
	// ArtifactRetention is how long runs and artifacts stay; 0 keeps them.
	// Checked every RetentionInterval (DefaultRetentionInterval when 0) by
	// a periodic job.
	ArtifactRetention time.Duration
	RetentionInterval time.Duration
	// RunSweepInterval is how often finalized tasks' attempts that no
	// worker recorded are recorded as abandoned (RunSweepArgs);
	// DefaultRunSweepInterval when 0.
	RunSweepInterval time.Duration
	// Types are the task types the client works. The client inserts
	// tasks of any kind (River's check of unknown kinds is off): the task
	// service decides which types it takes, its external ones included.
	Types *tasktype.Registry
	// Services are what the types' workers are built from (its Pool is
	// Pool when nil); retention removes the artifacts of Services.Artifacts.
	Services tasktype.Services
	// Deps are the dependencies of taskrunner's own jobs.
	Deps Deps
	// Runs records every attempt; required with Work. Close it after the
	// client has stopped.
	Runs *RunRecorder
}

// withDefaults is cfg with every unset optional field at its default.
func (cfg ClientConfig) withDefaults() ClientConfig {
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if len(cfg.Queues) == 0 {
		cfg.Queues = []string{river.QueueDefault}
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	cfg.CallbackConcurrency = cmp.Or(cfg.CallbackConcurrency, DefaultCallbackConcurrency)
	cfg.MaxRuntime = cmp.Or(cfg.MaxRuntime, DefaultMaxRuntime)
	cfg.RescueAfter = cmp.Or(cfg.RescueAfter, cfg.MaxRuntime+DefaultRescueMargin)
	cfg.Retention = cmp.Or(cfg.Retention, DefaultRetention)
	cfg.InternalRetention = cmp.Or(cfg.InternalRetention, DefaultInternalRetention)
	cfg.RetentionInterval = cmp.Or(cfg.RetentionInterval, DefaultRetentionInterval)
	cfg.RunSweepInterval = cmp.Or(cfg.RunSweepInterval, DefaultRunSweepInterval)
	return cfg
}

// validate names the first field that is missing or out of range.
func (cfg ClientConfig) validate() error {
	switch {
	case cfg.Pool == nil:
		return errors.New("river client: Pool is required")
	case cfg.Work && cfg.Runs == nil:
		return errors.New("river client: Runs is required with Work")
	case cfg.Concurrency < 0:
		return fmt.Errorf("river client: Concurrency must be positive, got %d", cfg.Concurrency)
	case cfg.CallbackConcurrency < 0:
		return fmt.Errorf("river client: CallbackConcurrency must be positive, got %d", cfg.CallbackConcurrency)
	case cfg.MaxRuntime < 0:
		return fmt.Errorf("river client: MaxRuntime must be positive, got %s", cfg.MaxRuntime)
	case cfg.RescueAfter <= cfg.MaxRuntime:
		return fmt.Errorf("river client: RescueAfter (%s) must be longer than MaxRuntime (%s), or running tasks are rescued", cfg.RescueAfter, cfg.MaxRuntime)
	case cfg.RunSweepInterval < 0:
		return fmt.Errorf("river client: RunSweepInterval must not be negative, got %s", cfg.RunSweepInterval)
	case cfg.InternalRetention < 0:
		return fmt.Errorf("river client: InternalRetention must not be negative, got %s", cfg.InternalRetention)
	case cfg.ArtifactRetention < 0:
		return fmt.Errorf("river client: ArtifactRetention must not be negative, got %s", cfg.ArtifactRetention)
	}
	return validateTenantQueues(cfg.Queues, cfg.Tenants)
}

// Deps are what taskrunner's own jobs use besides the database.
type Deps struct {
	// Callback delivers callbacks; without it (no CALLBACK_SECRET) a
	// delivery fails and is retried, for a process that has it.
	Callback *CallbackDeps
	// Schedules enqueues the tasks of schedules' ticks; without it a tick
	// fails and is retried, for a process that has it.
	Schedules ScheduleFirer
}

// maxClientID is the longest client id River accepts.
const maxClientID = 100

// NewClient returns the River client built from cfg, with every task
// type's worker and, when cfg.Work is set, the run recorder; or an error
// naming the field of cfg that is missing or wrong. It starts nothing.
func NewClient(cfg ClientConfig) (*river.Client[pgx.Tx], error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rc := &river.Config{
		// Tasks of types defined at run time have kinds no worker of the
		// client's has: River would refuse to insert them. The task
		// service inserts only the kinds of its types, built-in (which
		// have workers here) or external (which go to ExternalQueue).
		SkipUnknownJobCheck:         true,
		Logger:                      riverLogger(cfg.Logger),
		JobTimeout:                  cfg.MaxRuntime,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		CompletedJobRetentionPeriod: cfg.Retention,
		CancelledJobRetentionPeriod: cfg.Retention,
		DiscardedJobRetentionPeriod: cfg.Retention,
	}
	// Registered for inserts in every process, so River validates kinds.
	workers, err := Workers(cfg.Pool, cfg.Types, cfg.Services, cfg.Deps)
	if err != nil {
		return nil, err
	}
	rc.Workers = workers
	if cfg.Work {
		// River records its client id in attempted_by for each attempt:
		// naming the client as runs name the process lets the attempt a task
		// is running now, and one whose worker died, be told by the same
		// name as the runs it recorded.
		if name := cfg.Runs.worker; len(name) <= maxClientID {
			rc.ID = name
		}
		rc.FetchCooldown = cfg.FetchCooldown
		rc.FetchPollInterval = cfg.FetchPoll
		rc.Queues = make(map[string]river.QueueConfig)
		for q, n := range queueConfigs(cfg) {
			rc.Queues[q] = river.QueueConfig{MaxWorkers: n}
		}
		rc.Middleware = []rivertype.Middleware{&inlineCompleter{pool: cfg.Pool, logger: cfg.Logger}, cfg.Runs}
		rc.PeriodicJobs = []*river.PeriodicJob{runSweepPeriodicJob(cfg.RunSweepInterval), internalRetentionPeriodicJob(cfg.InternalRetention)}
		if cfg.ArtifactRetention > 0 {
			rc.PeriodicJobs = append(rc.PeriodicJobs, retentionPeriodicJob(cfg.ArtifactRetention, cfg.RetentionInterval))
		}
	}
	client, err := river.NewClient(riverpgxv5.New(cfg.Pool), rc)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return client, nil
}

// Workers returns a River worker bundle with every task type's worker,
// built from s, and those of taskrunner's own jobs.
func Workers(pool *pgxpool.Pool, types *tasktype.Registry, s tasktype.Services, d Deps) (*river.Workers, error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &RetentionWorker{pool: pool, artifacts: s.Artifacts})
	river.AddWorker(workers, &RunSweepWorker{pool: pool, types: types})
	river.AddWorker(workers, &InternalRetentionWorker{pool: pool})
	river.AddWorker(workers, newCallbackWorker(pool, d.Callback))
	river.AddWorker(workers, &scheduleTickWorker{firer: d.Schedules})
	if types == nil {
		return workers, nil
	}
	if s.Pool == nil {
		s.Pool = pool
	}
	if err := types.AddWorkers(workers, s); err != nil {
		return nil, err
	}
	return workers, nil
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
