// Package config reads taskrunner's settings from the environment.
//
// Every setting has a documented default kept as a named constant below and
// filled in by Load, the only place the environment is read. Names and
// defaults follow the Python system taskrunner replaces wherever they apply.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/search"
	"github.com/taskrunner/taskrunner/task"
)

// Defaults for every setting. Where a package has a default of its own
// for the part a setting configures, the setting's default is that
// constant, so that no default is written twice.
const (
	DefaultDatabaseURL = "postgres://127.0.0.1:5432/taskrunner?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
	DefaultHTTPAddr    = "127.0.0.1:8000"
	DefaultLogLevel    = "info"
	DefaultLogFormat   = "json"

	DefaultMinIOEndpoint = "127.0.0.1:9000"
	DefaultMinIOUser     = "minioadmin"
	DefaultMinIOPassword = "minioadmin"
	DefaultMinIOBucket   = "artifacts"

	DefaultTaskMaxRuntime    = jobs.DefaultMaxRuntime
	DefaultTaskMaxArtifactMB = artifact.DefaultMaxBytes >> 20
	// DefaultTaskMaxArtifacts is how many artifacts one task may have
	// (TASK_MAX_ARTIFACTS).
	DefaultTaskMaxArtifacts  = artifact.DefaultMaxPerTask
	DefaultTasksPerMinute    = 30
	DefaultSearchSourceAllow = "brave"
	DefaultFetchDomainAllow  = "*"
	DefaultMaxBatchSize      = 50
	// DefaultBulkMaxConcurrent is how many bulk actions (dry runs
	// included) one tenant may run at once, across every API process
	// (BULK_MAX_CONCURRENT).
	DefaultBulkMaxConcurrent = task.DefaultBulkMaxConcurrent
	// DefaultBulkCountTimeout bounds each statement that counts or finds
	// the tasks of a bulk action's filter (BULK_COUNT_TIMEOUT_SECONDS).
	DefaultBulkCountTimeout     = task.DefaultBulkCountTimeout
	DefaultSearchCacheTTL       = search.DefaultCacheTTL
	DefaultSearchMaxResults     = 10
	DefaultSearchSourceTimeout  = search.DefaultSourceTimeout
	DefaultRedisKeyPrefix       = "taskrunner:"
	DefaultTaskRetention        = jobs.DefaultRetention
	DefaultInternalJobRetention = jobs.DefaultInternalRetention // taskrunner's own finished jobs (INTERNAL_JOB_RETENTION)
	DefaultArtifactRetention    = 30 * 24 * time.Hour
	DefaultRetentionInterval    = jobs.DefaultRetentionInterval
	DefaultRunSweepInterval     = jobs.DefaultRunSweepInterval
	DefaultWorkerConcurrency    = jobs.DefaultConcurrency
	DefaultWorkerFetchCooldown  = 5 * time.Millisecond
	DefaultWorkerFetchPoll      = time.Second
	DefaultShutdownGrace        = 30 * time.Second
	DefaultRescueMarginOverCap  = jobs.DefaultRescueMargin
	DefaultMaxRequestBodyBytes  = 1 << 20
	DefaultScheduleMaxTaskBytes = 64 << 10 // a schedule's stored task, read at every tick
	DefaultDBMaxConns           = 40
	DefaultRequestTimeout       = 60 * time.Second
	DefaultHTTPReadTimeout      = 30 * time.Second
	DefaultQueue                = "default"
	DefaultMaxWaiters           = 1000
	DefaultMaxConcurrentUploads = 16
	// DefaultTenantUploadsShare is the default TENANT_MAX_UPLOADS as a
	// share of MAX_CONCURRENT_UPLOADS: one tenant may send a quarter of a
	// process's uploads at once.
	DefaultTenantUploadsShare = 4
	// DefaultUploadIdleTimeout is how long an upload's body may send
	// nothing before it is cut (UPLOAD_IDLE_TIMEOUT_SECONDS).
	DefaultUploadIdleTimeout   = 10 * time.Second
	DefaultArtifactMBPerMinute = 1024
	// ArtifactUploadMinCostKiB is the least an upload costs against
	// ARTIFACT_MB_PER_MINUTE, whatever its size, so that empty uploads are
	// not free.
	ArtifactUploadMinCostKiB = 64
	// DefaultTenantMaxRunning is no cap on one tenant's running tasks
	// beyond the worker pool.
	DefaultTenantMaxRunning = 0
	// DefaultCallbackTimeout bounds one callback delivery attempt
	// (CALLBACK_TIMEOUT_SECONDS).
	DefaultCallbackTimeout = jobs.DefaultCallbackTimeout
	// DefaultCallbackMaxAttempts is how many times a callback is tried
	// before it is given up (CALLBACK_MAX_ATTEMPTS).
	DefaultCallbackMaxAttempts = jobs.DefaultCallbackMaxAttempts
	// DefaultCallbackRotationGrace is how long a tenant's previous
	// callback secret still signs after a rotation
	// (CALLBACK_ROTATION_GRACE).
	DefaultCallbackRotationGrace = jobs.DefaultCallbackSecretGrace
	// DefaultCallbackTenantConcurrency is how many of one tenant's callback
	// deliveries a process makes at once (CALLBACK_TENANT_CONCURRENCY).
	DefaultCallbackTenantConcurrency = jobs.DefaultCallbackConcurrency
	// DefaultCallbackDomainAllow allows callbacks to any public host
	// (CALLBACK_DOMAIN_ALLOWLIST).
	DefaultCallbackDomainAllow = "*"
	// minCallbackSecretLength keeps CALLBACK_SECRET unguessable.
	minCallbackSecretLength = 16
	// maxCallbackAttempts bounds CALLBACK_MAX_ATTEMPTS (River stores
	// attempts in a smallint).
	maxCallbackAttempts = 100
	// DefaultTenantWaitersShare is the default TENANT_MAX_WAITERS as a
	// share of MAX_WAITERS: one tenant may hold a quarter of a process's
	// long polls and event streams.
	DefaultTenantWaitersShare = 4
)

// Config is every setting taskrunner reads at start-up.
type Config struct {
	DatabaseURL string // DATABASE_URL
	RedisURL    string // REDIS_URL
	HTTPAddr    string // HTTP_ADDR
	LogLevel    string // LOG_LEVEL: debug, info, warn, error
	LogFormat   string // LOG_FORMAT: json or text

	MinIOEndpoint string // MINIO_ENDPOINT, host:port
	MinIOUser     string // MINIO_ROOT_USER (secret)
	MinIOPassword string // MINIO_ROOT_PASSWORD (secret)
	MinIOBucket   string // MINIO_BUCKET
	MinIOSecure   bool   // MINIO_SECURE

	Limits Limits

	SearchCacheTTL      time.Duration // SEARCH_CACHE_TTL_SECONDS
	SearchMaxResults    int           // SEARCH_MAX_RESULTS
	SearchSourceTimeout time.Duration // SEARCH_SOURCE_TIMEOUT_SECONDS: each provider's own timeout
	BraveAPIKey         string        // BRAVE_API_KEY (secret)
	BraveAPIURL         string        // BRAVE_API_URL: Brave's web search endpoint; empty: its public one
	SearXNGURL          string        // SEARXNG_URL: a SearXNG instance with the json format enabled
	// RedisKeyPrefix starts every Redis key taskrunner writes
	// (REDIS_KEY_PREFIX), so several deployments can share one Redis.
	RedisKeyPrefix string

	// TaskRetention is how long River keeps finished jobs (TASK_RETENTION,
	// a Go duration or a number of days such as "7d").
	TaskRetention time.Duration
	// ArtifactRetention is how long runs and artifacts (rows and objects)
	// are kept (ARTIFACT_RETENTION, like TASK_RETENTION); RetentionInterval
	// how often they are swept (RETENTION_INTERVAL).
	ArtifactRetention time.Duration
	RetentionInterval time.Duration
	// RunSweepInterval is how often the attempts of finalized tasks that no
	// worker recorded (its worker died, and River's rescuer discarded the
	// task) are recorded as abandoned (RUN_SWEEP_INTERVAL).
	RunSweepInterval time.Duration

	WorkerConcurrency   int           // WORKER_CONCURRENCY: tasks worked at once per process
	WorkerFetchCooldown time.Duration // WORKER_FETCH_COOLDOWN: River's minimum time between fetches
	WorkerFetchPoll     time.Duration // WORKER_FETCH_POLL_INTERVAL: River's fallback poll
	// RescueAfter is how long a task may stay running before River's rescuer
	// assumes its worker died and returns it to the queue
	// (TASK_RESCUE_AFTER_SECONDS; default: the runtime cap plus a minute).
	RescueAfter   time.Duration
	ShutdownGrace time.Duration // SHUTDOWN_GRACE_SECONDS: how long running tasks may finish on SIGTERM

	DBMaxConns int // DB_MAX_CONNS: size of the process's one pgx pool

	// APIKeys are the clients allowed in (API_KEYS: name:key for a client,
	// name:key:admin for an admin, comma-separated; a name may have several
	// keys, for rotation). Secret. Empty: no authentication, loopback only,
	// and everything belongs to the admin tenant local.
	APIKeys []APIKey
	// AllowNoKeys lets a server without API_KEYS listen beyond loopback
	// (API_ALLOW_NO_KEYS=true), for deployments behind their own gateway.
	AllowNoKeys bool

	// MaxWaiters bounds the long polls and event streams one API process
	// holds at once (MAX_WAITERS).
	MaxWaiters int

	// MetricsAddr is where a worker process serves /metrics
	// (METRICS_ADDR; empty: nowhere). API processes serve it on HTTP_ADDR.
	MetricsAddr string

	// Queues are the River queues tasks may be sent to and workers work
	// (QUEUES, comma-separated; the first is the default).
	Queues []string

	// TenantFairShare sends each tenant's tasks to a River queue of its own
	// per queue, worked by its own workers, so that a tenant's backlog never
	// delays another tenant's tasks (TENANT_FAIR_SHARE, default on). Worker
	// processes serve the tenants' queues whatever it says, so turning it
	// off leaves no task behind.
	TenantFairShare bool

	// Callback is how task callbacks are checked, signed and delivered.
	Callback Callback
}

// Callback is the configuration of task callbacks (callback_url).
type Callback struct {
	// Secret signs every callback (CALLBACK_SECRET, at least 16
	// characters). Secret: never logged or shown. Empty: callbacks are off
	// and a task asking for one is refused.
	Secret string
	// DomainAllowlist, AllowedPorts and AllowPrivateNetworks are what a
	// callback URL may reach, as FETCH_* are for fetch
	// (CALLBACK_DOMAIN_ALLOWLIST, CALLBACK_ALLOWED_PORTS,
	// CALLBACK_ALLOW_PRIVATE_NETWORKS; the last for tests only).
	DomainAllowlist      []string
	AllowedPorts         []int
	AllowPrivateNetworks bool
	// Timeout bounds one delivery attempt (CALLBACK_TIMEOUT_SECONDS).
	Timeout time.Duration
	// MaxAttempts is how many attempts a delivery gets
	// (CALLBACK_MAX_ATTEMPTS).
	MaxAttempts int
	// RotationGrace is how long a tenant's previous secret still signs
	// after it rotates its secret (CALLBACK_ROTATION_GRACE).
	RotationGrace time.Duration
}

// Limits are the callback settings a client needs, as GET /limits shows
// them: the secret only as whether callbacks are on.
func (c Callback) Limits() CallbackLimits {
	return CallbackLimits{Enabled: c.Secret != "", Timeout: c.Timeout, MaxAttempts: c.MaxAttempts, RotationGrace: c.RotationGrace,
		DomainAllowlist: c.DomainAllowlist, AllowedPorts: c.AllowedPorts, AllowPrivateNetworks: c.AllowPrivateNetworks}
}

// CallbackLimits are the CALLBACK_* settings but the secret.
type CallbackLimits struct {
	Enabled              bool // CALLBACK_SECRET is set
	Timeout              time.Duration
	MaxAttempts          int
	RotationGrace        time.Duration
	DomainAllowlist      []string
	AllowedPorts         []int // besides 80 and 443
	AllowPrivateNetworks bool
}

// MarshalJSON shows the callback settings as GET /limits does, each named
// after its variable.
func (c CallbackLimits) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Enabled              bool     `json:"callbacks_enabled"`
		TimeoutSeconds       float64  `json:"callback_timeout_seconds"`
		MaxAttempts          int      `json:"callback_max_attempts"`
		RotationGrace        float64  `json:"callback_rotation_grace_seconds"`
		DomainAllowlist      []string `json:"callback_domain_allowlist"`
		AllowedPorts         []int    `json:"callback_allowed_ports"`
		AllowPrivateNetworks bool     `json:"callback_allow_private_networks"`
	}{
		c.Enabled, c.Timeout.Seconds(), c.MaxAttempts, c.RotationGrace.Seconds(), c.DomainAllowlist, append([]int{80, 443}, c.AllowedPorts...),
		c.AllowPrivateNetworks,
	})
}

// Tenants are the tenants known at start: the names in API_KEYS, sorted,
// or the local tenant alone without keys. Worker processes serve a queue
// of each.
func (c *Config) Tenants() []string {
	if len(c.APIKeys) == 0 {
		return []string{taskrunner.LocalTenant}
	}
	names := make([]string, 0, len(c.APIKeys))
	for _, k := range c.APIKeys {
		names = append(names, k.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// APIKey is one key of a tenant. Key is a secret. Name is the tenant:
// several keys may share it (all with the same role), so a key can be
// rotated without downtime.
type APIKey struct {
	Name  string
	Key   string
	Admin bool // an admin sees and acts on every tenant's tasks
}

// Roles an API_KEYS entry may end with; without one the key is a client's.
const (
	RoleClient = "client"
	RoleAdmin  = "admin"
)

// maxTenantNameLength bounds a tenant's name, which becomes part of River
// queue names and a metric label.
const maxTenantNameLength = 32

// ValidTenantName reports whether name may name a tenant: 1 to 32 of
// a-z, 0-9, _ and -. (LocalTenant, "local", is valid but reserved.)
func ValidTenantName(name string) bool {
	if name == "" || len(name) > maxTenantNameLength {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// minAPIKeyLength keeps keys guessable by no one.
const minAPIKeyLength = 16

// Limits are the enforced limits, all visible in GET /limits.
type Limits struct {
	TaskMaxRuntime        time.Duration // TASK_MAX_RUNTIME_SECONDS
	TaskMaxArtifactMB     int           // TASK_MAX_ARTIFACT_MB
	TasksPerMinute        int           // TASKS_PER_MINUTE
	SearchSourceAllowlist []string      // SEARCH_SOURCE_ALLOWLIST, comma-separated
	// SearchCacheShared keeps one search cache for every tenant
	// (SEARCH_CACHE_SHARED; off: each tenant has its own). Shared, any
	// tenant learns through an answer's cached flag and latency whether
	// anyone searched the same query within SEARCH_CACHE_TTL_SECONDS: for
	// deployments whose tenants are one organisation.
	SearchCacheShared    bool
	FetchDomainAllowlist []string // FETCH_DOMAIN_ALLOWLIST, comma-separated, "*" for any
	FetchAllowedPorts    []int    // FETCH_ALLOWED_PORTS: ports fetch may use besides 80 and 443
	// FetchAllowPrivateNetworks lets fetch reach loopback and private
	// addresses (FETCH_ALLOW_PRIVATE_NETWORKS; off; for tests only).
	FetchAllowPrivateNetworks bool
	MaxBatchSize              int   // MAX_BATCH_SIZE
	MaxRequestBodyBytes       int64 // MAX_REQUEST_BODY_BYTES
	// ScheduleMaxTaskBytes bounds a schedule's task as stored
	// (SCHEDULE_MAX_TASK_BYTES).
	ScheduleMaxTaskBytes int
	// InternalJobRetention is how long taskrunner's own jobs (schedule
	// ticks, callback deliveries, retention and sweeps) stay in river_job
	// once finished (INTERNAL_JOB_RETENTION); tasks stay TASK_RETENTION.
	InternalJobRetention time.Duration
	// BulkMaxConcurrent bounds the bulk actions, dry runs included, one
	// tenant runs at once, across every API process (BULK_MAX_CONCURRENT);
	// more are refused with 429.
	BulkMaxConcurrent int
	// BulkCountTimeout bounds each statement that counts or finds the
	// tasks a bulk action's filter matches (BULK_COUNT_TIMEOUT_SECONDS).
	BulkCountTimeout time.Duration
	// HTTPReadTimeout is how long a request's headers and body may take to
	// arrive (HTTP_READ_TIMEOUT_SECONDS); a stalled body fails after it.
	// Long polls and event streams, which send no body, are not bound by it.
	HTTPReadTimeout time.Duration
	// MaxConcurrentUploads bounds the artifact uploads one API process
	// receives at once (MAX_CONCURRENT_UPLOADS); more are refused with 503.
	MaxConcurrentUploads int
	// TenantMaxUploads bounds the uploads one tenant sends one API process
	// at once (TENANT_MAX_UPLOADS; default a quarter of
	// MAX_CONCURRENT_UPLOADS), so no tenant holds every slot.
	TenantMaxUploads int
	// UploadIdleTimeout cuts an upload whose body sends nothing for this
	// long (UPLOAD_IDLE_TIMEOUT_SECONDS), within HTTP_READ_TIMEOUT_SECONDS.
	UploadIdleTimeout time.Duration
	// TaskMaxArtifacts is how many artifacts one task may have
	// (TASK_MAX_ARTIFACTS); replacing one of the same name adds none.
	TaskMaxArtifacts int

	// TenantMaxRunning caps one tenant's running tasks per worker process
	// (TENANT_MAX_RUNNING; 0, the default: no cap beyond the worker pool).
	TenantMaxRunning int
	// CallbackTenantConcurrency caps one tenant's callback deliveries made
	// at once per worker process (CALLBACK_TENANT_CONCURRENCY), each
	// tenant's in a queue of its own.
	CallbackTenantConcurrency int
	// ArtifactMBPerMinute is the artifact bytes one tenant may upload a
	// minute, in MiB, shared by every API process (ARTIFACT_MB_PER_MINUTE).
	ArtifactMBPerMinute int
	// TenantMaxWaiters bounds the long polls and event streams one tenant
	// holds at once in one API process (TENANT_MAX_WAITERS; default a
	// quarter of MAX_WAITERS), under the process's own MAX_WAITERS.
	TenantMaxWaiters int
	// Tenants are the per-tenant overrides (TENANT_LIMITS), by tenant
	// name. Not shown by GET /limits: a tenant sees only its own, through
	// TasksPerMinuteFor, MaxRunningFor and MaxUploadsFor.
	Tenants map[string]TenantLimits
}

// TenantLimits are one tenant's overrides of the global limits; 0 keeps
// the global setting.
type TenantLimits struct {
	TasksPerMinute int // tasks_per_minute: overrides TASKS_PER_MINUTE
	MaxRunning     int // max_running: overrides TENANT_MAX_RUNNING
	MaxUploads     int // max_uploads: overrides TENANT_MAX_UPLOADS
	// callback_concurrency: overrides CALLBACK_TENANT_CONCURRENCY
	CallbackConcurrency int
}

// TasksPerMinuteFor is tenant's enqueue limit: its override, or
// TASKS_PER_MINUTE.
func (l Limits) TasksPerMinuteFor(tenant string) int {
	if n := l.Tenants[tenant].TasksPerMinute; n > 0 {
		return n
	}
	return l.TasksPerMinute
}

// MaxRunningFor is the cap on tenant's running tasks: its override, or
// TENANT_MAX_RUNNING (0: no cap beyond the worker pool).
func (l Limits) MaxRunningFor(tenant string) int {
	if n := l.Tenants[tenant].MaxRunning; n > 0 {
		return n
	}
	return l.TenantMaxRunning
}

// MaxUploadsFor is how many uploads tenant may send one API process at
// once: its override, or TENANT_MAX_UPLOADS; never more than
// MAX_CONCURRENT_UPLOADS.
func (l Limits) MaxUploadsFor(tenant string) int {
	n := l.TenantMaxUploads
	if o := l.Tenants[tenant].MaxUploads; o > 0 {
		n = o
	}
	return min(n, l.MaxConcurrentUploads)
}

// CallbackConcurrencyFor is the cap on tenant's callback deliveries at
// once: its override, or CALLBACK_TENANT_CONCURRENCY.
func (l Limits) CallbackConcurrencyFor(tenant string) int {
	if n := l.Tenants[tenant].CallbackConcurrency; n > 0 {
		return n
	}
	return l.CallbackTenantConcurrency
}

// Load reads the configuration through getenv (os.Getenv in production). The
// error names the variable that is wrong.
func Load(getenv func(string) string) (*Config, error) {
	r := reader{getenv: getenv}
	c := &Config{
		DatabaseURL:   normalizeDatabaseURL(r.str("DATABASE_URL", DefaultDatabaseURL)),
		RedisURL:      r.str("REDIS_URL", DefaultRedisURL),
		HTTPAddr:      r.str("HTTP_ADDR", DefaultHTTPAddr),
		LogLevel:      strings.ToLower(r.str("LOG_LEVEL", DefaultLogLevel)),
		LogFormat:     strings.ToLower(r.str("LOG_FORMAT", DefaultLogFormat)),
		MinIOEndpoint: r.str("MINIO_ENDPOINT", DefaultMinIOEndpoint),
		MinIOUser:     r.str("MINIO_ROOT_USER", DefaultMinIOUser),
		MinIOPassword: r.str("MINIO_ROOT_PASSWORD", DefaultMinIOPassword),
		MinIOBucket:   r.str("MINIO_BUCKET", DefaultMinIOBucket),
		MinIOSecure:   r.boolean("MINIO_SECURE", false),
		Limits: Limits{
			TaskMaxRuntime:            r.seconds("TASK_MAX_RUNTIME_SECONDS", DefaultTaskMaxRuntime),
			TaskMaxArtifactMB:         r.positiveInt("TASK_MAX_ARTIFACT_MB", DefaultTaskMaxArtifactMB),
			TasksPerMinute:            r.positiveInt("TASKS_PER_MINUTE", DefaultTasksPerMinute),
			SearchSourceAllowlist:     r.list("SEARCH_SOURCE_ALLOWLIST", DefaultSearchSourceAllow),
			SearchCacheShared:         r.boolean("SEARCH_CACHE_SHARED", false),
			FetchDomainAllowlist:      r.list("FETCH_DOMAIN_ALLOWLIST", DefaultFetchDomainAllow),
			MaxBatchSize:              r.positiveInt("MAX_BATCH_SIZE", DefaultMaxBatchSize),
			MaxRequestBodyBytes:       int64(r.positiveInt("MAX_REQUEST_BODY_BYTES", DefaultMaxRequestBodyBytes)),
			ScheduleMaxTaskBytes:      r.positiveInt("SCHEDULE_MAX_TASK_BYTES", DefaultScheduleMaxTaskBytes),
			InternalJobRetention:      r.duration("INTERNAL_JOB_RETENTION", DefaultInternalJobRetention),
			BulkMaxConcurrent:         r.positiveInt("BULK_MAX_CONCURRENT", DefaultBulkMaxConcurrent),
			BulkCountTimeout:          r.seconds("BULK_COUNT_TIMEOUT_SECONDS", DefaultBulkCountTimeout),
			FetchAllowedPorts:         r.ports("FETCH_ALLOWED_PORTS"),
			FetchAllowPrivateNetworks: r.boolean("FETCH_ALLOW_PRIVATE_NETWORKS", false),
			HTTPReadTimeout:           r.seconds("HTTP_READ_TIMEOUT_SECONDS", DefaultHTTPReadTimeout),
			MaxConcurrentUploads:      r.positiveInt("MAX_CONCURRENT_UPLOADS", DefaultMaxConcurrentUploads),
			UploadIdleTimeout:         r.seconds("UPLOAD_IDLE_TIMEOUT_SECONDS", DefaultUploadIdleTimeout),
			TaskMaxArtifacts:          r.positiveInt("TASK_MAX_ARTIFACTS", DefaultTaskMaxArtifacts),
			TenantMaxRunning:          r.nonNegativeInt("TENANT_MAX_RUNNING", DefaultTenantMaxRunning),
			CallbackTenantConcurrency: r.positiveInt("CALLBACK_TENANT_CONCURRENCY", DefaultCallbackTenantConcurrency),
			ArtifactMBPerMinute:       r.positiveInt("ARTIFACT_MB_PER_MINUTE", DefaultArtifactMBPerMinute),
		},
		SearchCacheTTL:      r.seconds("SEARCH_CACHE_TTL_SECONDS", DefaultSearchCacheTTL),
		SearchMaxResults:    r.positiveInt("SEARCH_MAX_RESULTS", DefaultSearchMaxResults),
		SearchSourceTimeout: r.seconds("SEARCH_SOURCE_TIMEOUT_SECONDS", DefaultSearchSourceTimeout),
		BraveAPIKey:         r.str("BRAVE_API_KEY", ""),
		BraveAPIURL:         r.str("BRAVE_API_URL", ""),
		SearXNGURL:          r.str("SEARXNG_URL", ""),
		RedisKeyPrefix:      r.str("REDIS_KEY_PREFIX", DefaultRedisKeyPrefix),
		TaskRetention:       r.days("TASK_RETENTION", DefaultTaskRetention),
		ArtifactRetention:   r.days("ARTIFACT_RETENTION", DefaultArtifactRetention),
		RetentionInterval:   r.duration("RETENTION_INTERVAL", DefaultRetentionInterval),
		RunSweepInterval:    r.duration("RUN_SWEEP_INTERVAL", DefaultRunSweepInterval),
		WorkerConcurrency:   r.positiveInt("WORKER_CONCURRENCY", DefaultWorkerConcurrency),
		WorkerFetchCooldown: r.duration("WORKER_FETCH_COOLDOWN", DefaultWorkerFetchCooldown),
		WorkerFetchPoll:     r.duration("WORKER_FETCH_POLL_INTERVAL", DefaultWorkerFetchPoll),
		ShutdownGrace:       r.seconds("SHUTDOWN_GRACE_SECONDS", DefaultShutdownGrace),
		DBMaxConns:          r.positiveInt("DB_MAX_CONNS", DefaultDBMaxConns),
		Queues:              r.list("QUEUES", DefaultQueue),
		AllowNoKeys:         r.boolean("API_ALLOW_NO_KEYS", false),
		MetricsAddr:         r.str("METRICS_ADDR", ""),
		MaxWaiters:          r.positiveInt("MAX_WAITERS", DefaultMaxWaiters),
		TenantFairShare:     r.boolean("TENANT_FAIR_SHARE", true),
		Callback: Callback{
			Secret:               r.str("CALLBACK_SECRET", ""),
			DomainAllowlist:      r.list("CALLBACK_DOMAIN_ALLOWLIST", DefaultCallbackDomainAllow),
			AllowedPorts:         r.ports("CALLBACK_ALLOWED_PORTS"),
			AllowPrivateNetworks: r.boolean("CALLBACK_ALLOW_PRIVATE_NETWORKS", false),
			Timeout:              r.seconds("CALLBACK_TIMEOUT_SECONDS", DefaultCallbackTimeout),
			MaxAttempts:          r.positiveInt("CALLBACK_MAX_ATTEMPTS", DefaultCallbackMaxAttempts),
			RotationGrace:        r.days("CALLBACK_ROTATION_GRACE", DefaultCallbackRotationGrace),
		},
	}
	c.APIKeys, r.err = parseAPIKeys(getenv("API_KEYS"), r.err)
	c.RescueAfter = r.seconds("TASK_RESCUE_AFTER_SECONDS", c.Limits.TaskMaxRuntime+DefaultRescueMarginOverCap)
	c.Limits.TenantMaxWaiters = r.positiveInt("TENANT_MAX_WAITERS", max(1, c.MaxWaiters/DefaultTenantWaitersShare))
	c.Limits.TenantMaxUploads = r.positiveInt("TENANT_MAX_UPLOADS", max(1, c.Limits.MaxConcurrentUploads/DefaultTenantUploadsShare))
	if r.err == nil {
		c.Limits.Tenants, r.err = parseTenantLimits(getenv("TENANT_LIMITS"), c.APIKeys)
	}

	if r.err == nil {
		r.err = c.validate()
	}
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

func (c *Config) validate() error {
	switch c.LogFormat {
	case "json", "text":
	default:
		return fmt.Errorf("LOG_FORMAT: %q is not json or text", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.RescueAfter <= c.Limits.TaskMaxRuntime {
		return fmt.Errorf("TASK_RESCUE_AFTER_SECONDS: %s must exceed TASK_MAX_RUNTIME_SECONDS (%s), or running tasks would be rescued while still working",
			c.RescueAfter, c.Limits.TaskMaxRuntime)
	}
	if c.WorkerFetchCooldown <= 0 || c.WorkerFetchPoll <= c.WorkerFetchCooldown {
		return errors.New("WORKER_FETCH_POLL_INTERVAL must exceed WORKER_FETCH_COOLDOWN, and both be positive")
	}
	if len(c.APIKeys) == 0 && !c.AllowNoKeys && !isLoopback(c.HTTPAddr) {
		return fmt.Errorf("HTTP_ADDR: %s is not a loopback address and API_KEYS is empty: set API_KEYS, or API_ALLOW_NO_KEYS=true if a gateway in front authenticates", c.HTTPAddr)
	}
	if !slices.Contains(c.Queues, DefaultQueue) {
		return fmt.Errorf("QUEUES: must include %q, where tasks without a queue go", DefaultQueue)
	}
	if slices.Contains(c.Queues, jobs.ExternalQueue) {
		return fmt.Errorf("QUEUES: %q holds the tasks of types defined at run time, for workers outside the server: no worker of the server's may work it", jobs.ExternalQueue)
	}
	if c.Limits.ArtifactMBPerMinute < c.Limits.TaskMaxArtifactMB {
		return fmt.Errorf("ARTIFACT_MB_PER_MINUTE: %d is under TASK_MAX_ARTIFACT_MB (%d), so the largest artifact could never be uploaded",
			c.Limits.ArtifactMBPerMinute, c.Limits.TaskMaxArtifactMB)
	}
	if c.Limits.TenantMaxUploads > c.Limits.MaxConcurrentUploads {
		return fmt.Errorf("TENANT_MAX_UPLOADS: %d is over MAX_CONCURRENT_UPLOADS (%d)", c.Limits.TenantMaxUploads, c.Limits.MaxConcurrentUploads)
	}
	if !c.TenantFairShare && c.Limits.TenantMaxRunning > 0 {
		return errors.New("TENANT_MAX_RUNNING: a cap on a tenant's running tasks needs TENANT_FAIR_SHARE=true (each tenant's tasks in queues of its own)")
	}
	if c.Callback.Secret != "" && len(c.Callback.Secret) < minCallbackSecretLength {
		return fmt.Errorf("CALLBACK_SECRET: shorter than %d characters", minCallbackSecretLength) // never echo it
	}
	if c.Callback.MaxAttempts > maxCallbackAttempts {
		return fmt.Errorf("CALLBACK_MAX_ATTEMPTS: %d is over %d", c.Callback.MaxAttempts, maxCallbackAttempts)
	}
	if _, err := url.Parse(c.DatabaseURL); err != nil {
		return errors.New("DATABASE_URL: not a URL") // the URL may hold a password: never echo it
	}
	return nil
}

// isLoopback reports whether addr (host:port) listens on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseAPIKeys reads name:key and name:key:admin entries. A name may come
// back with other keys (rotation) but not with another role, and no key
// may serve two entries. Errors never repeat a key.
func parseAPIKeys(v string, prev error) ([]APIKey, error) {
	if prev != nil {
		return nil, prev
	}
	var keys []APIKey
	admin := map[string]bool{} // each name's role
	seen := map[string]bool{}  // keys already given
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, key, ok := strings.Cut(entry, ":")
		name, key = strings.TrimSpace(name), strings.TrimSpace(key)
		role := RoleClient
		// The role follows the last colon: a key may hold colons when the
		// entry ends with its role.
		if at := strings.LastIndexByte(key, ':'); at >= 0 {
			key, role = strings.TrimSpace(key[:at]), strings.TrimSpace(key[at+1:])
		}
		switch {
		case !ok || name == "" || key == "":
			return nil, fmt.Errorf("API_KEYS: entry %d is not name:key or name:key:admin", i+1)
		case !ValidTenantName(name):
			return nil, fmt.Errorf("API_KEYS: entry %d: a name is 1 to %d of a-z, 0-9, _ and -", i+1, maxTenantNameLength)
		case name == taskrunner.LocalTenant:
			return nil, fmt.Errorf("API_KEYS: %q is reserved for the server without keys", name)
		case role != RoleClient && role != RoleAdmin:
			return nil, fmt.Errorf("API_KEYS: the role of %q is not %s or %s", name, RoleClient, RoleAdmin)
		case len(key) < minAPIKeyLength:
			return nil, fmt.Errorf("API_KEYS: a key of %q is shorter than %d characters", name, minAPIKeyLength)
		case seen[key]:
			return nil, fmt.Errorf("API_KEYS: entry %d repeats a key given before", i+1)
		}
		isAdmin := role == RoleAdmin
		if was, named := admin[name]; named && was != isAdmin {
			return nil, fmt.Errorf("API_KEYS: the keys of %q must all have the same role", name)
		}
		admin[name] = isAdmin
		seen[key] = true
		keys = append(keys, APIKey{Name: name, Key: key, Admin: isAdmin})
	}
	return keys, nil
}

// parseTenantLimits reads TENANT_LIMITS: comma-separated entries of a
// tenant's name and its overrides, each setting=value, separated by
// colons (alice:tasks_per_minute=600:max_running=50). A tenant must be a
// name of API_KEYS (or local, when there are no keys). Errors name the
// entry.
func parseTenantLimits(v string, keys []APIKey) (map[string]TenantLimits, error) {
	known := map[string]bool{}
	for _, k := range keys {
		known[k.Name] = true
	}
	if len(keys) == 0 {
		known["local"] = true
	}
	var out map[string]TenantLimits
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("TENANT_LIMITS: entry %d (%q): %s", i+1, entry, fmt.Sprintf(format, a...))
		}
		parts := strings.Split(entry, ":")
		name := strings.TrimSpace(parts[0])
		switch {
		case !ValidTenantName(name):
			return nil, bad("the tenant name must be 1-%d of a-z, 0-9, _ and -", maxTenantNameLength)
		case !known[name]:
			return nil, bad("%q is not a name in API_KEYS", name)
		case out[name] != (TenantLimits{}):
			return nil, bad("%q appears twice", name)
		case len(parts) == 1:
			return nil, bad("no limits: write name:tasks_per_minute=N:max_running=N:max_uploads=N")
		}
		var tl TenantLimits
		for _, kv := range parts[1:] {
			k, val, ok := strings.Cut(kv, "=")
			k, val = strings.TrimSpace(k), strings.TrimSpace(val)
			n, err := strconv.Atoi(val)
			if !ok || err != nil || n <= 0 {
				return nil, bad("%q is not setting=N with N a positive whole number", kv)
			}
			switch k {
			case "tasks_per_minute":
				tl.TasksPerMinute = n
			case "max_running":
				tl.MaxRunning = n
			case "max_uploads":
				tl.MaxUploads = n
			case "callback_concurrency":
				tl.CallbackConcurrency = n
			default:
				return nil, bad("unknown setting %q: tasks_per_minute, max_running, max_uploads or callback_concurrency", k)
			}
		}
		if out == nil {
			out = map[string]TenantLimits{}
		}
		out[name] = tl
	}
	return out, nil
}

// normalizeDatabaseURL accepts SQLAlchemy's form
// (postgresql+psycopg2://...) by dropping the driver suffix.
func normalizeDatabaseURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	if base, _, hasDriver := strings.Cut(scheme, "+"); hasDriver {
		return base + "://" + rest
	}
	return s
}

// reader collects the first error while reading variables, so Load reads
// like a table.
type reader struct {
	getenv func(string) string
	err    error
}

func (r *reader) fail(name, val, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %q is not %s", name, val, want)
	}
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *reader) positiveInt(name string, def int) int {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		r.fail(name, v, "a positive whole number")
		return def
	}
	return n
}

// nonNegativeInt reads a whole number where 0 means "none".
func (r *reader) nonNegativeInt(name string, def int) int {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.fail(name, v, "a whole number, 0 or more")
		return def
	}
	return n
}

func (r *reader) seconds(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 1e9 {
		r.fail(name, v, "a positive number of seconds")
		return def
	}
	return time.Duration(f * float64(time.Second))
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, v, "a positive duration such as 250ms or 2s")
		return def
	}
	return d
}

// days reads a duration that may also be written as whole days ("7d").
func (r *reader) days(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if n, ok := strings.CutSuffix(v, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d <= 0 || d > 36500 {
			r.fail(name, v, "a positive duration such as 7d or 36h")
			return def
		}
		return time.Duration(d) * 24 * time.Hour
	}
	return r.duration(name, def)
}

func (r *reader) boolean(name string, def bool) bool {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, v, "true or false")
		return def
	}
	return b
}

func (r *reader) ports(name string) []int {
	var out []int
	for _, p := range r.list(name, "") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			r.fail(name, p, "a TCP port")
			return nil
		}
		out = append(out, n)
	}
	return out
}

func (r *reader) list(name, def string) []string {
	var out []string
	for _, part := range strings.Split(r.str(name, def), ",") {
		if p := strings.ToLower(strings.TrimSpace(part)); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// MarshalJSON shows the limits as GET /limits does, each named after its
// variable.
func (l Limits) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TaskMaxRuntimeSeconds float64  `json:"task_max_runtime_seconds"`
		TaskMaxArtifactMB     int      `json:"task_max_artifact_mb"`
		TaskMaxArtifacts      int      `json:"task_max_artifacts"`
		TasksPerMinute        int      `json:"tasks_per_minute"`
		SearchSourceAllowlist []string `json:"search_source_allowlist"`
		SearchCacheShared     bool     `json:"search_cache_shared"`
		FetchDomainAllowlist  []string `json:"fetch_domain_allowlist"`
		MaxBatchSize          int      `json:"max_batch_size"`
		MaxRequestBodyBytes   int64    `json:"max_request_body_bytes"`
		ScheduleMaxTaskBytes  int      `json:"schedule_max_task_bytes"`
		InternalJobRetention  float64  `json:"internal_job_retention_seconds"`
		BulkMaxConcurrent     int      `json:"bulk_max_concurrent"`
		BulkCountTimeout      float64  `json:"bulk_count_timeout_seconds"`
		FetchAllowedPorts     []int    `json:"fetch_allowed_ports"`
		HTTPReadTimeout       float64  `json:"http_read_timeout_seconds"`
		MaxConcurrentUploads  int      `json:"max_concurrent_uploads"`
		TenantMaxUploads      int      `json:"tenant_max_uploads"`
		UploadIdleTimeout     float64  `json:"upload_idle_timeout_seconds"`
		TenantMaxRunning      int      `json:"tenant_max_running"`
		CallbackTenantConc    int      `json:"callback_tenant_concurrency"`
		ArtifactMBPerMinute   int      `json:"artifact_mb_per_minute"`
		ArtifactUploadMinKiB  int      `json:"artifact_upload_min_cost_kib"`
		TenantMaxWaiters      int      `json:"tenant_max_waiters"`
	}{
		l.TaskMaxRuntime.Seconds(), l.TaskMaxArtifactMB, l.TaskMaxArtifacts, l.TasksPerMinute, l.SearchSourceAllowlist, l.SearchCacheShared,
		l.FetchDomainAllowlist, l.MaxBatchSize, l.MaxRequestBodyBytes, l.ScheduleMaxTaskBytes, l.InternalJobRetention.Seconds(),
		l.BulkMaxConcurrent, l.BulkCountTimeout.Seconds(), append([]int{80, 443}, l.FetchAllowedPorts...),
		l.HTTPReadTimeout.Seconds(), l.MaxConcurrentUploads, l.TenantMaxUploads, l.UploadIdleTimeout.Seconds(),
		l.TenantMaxRunning, l.CallbackTenantConcurrency, l.ArtifactMBPerMinute, ArtifactUploadMinCostKiB, l.TenantMaxWaiters,
	})
}
