// Package httpapi is taskrunner's REST API: every route in one router,
// handlers of one shape (decode and validate, call the domain, encode or
// return an error), one JSON error shape, and middleware in a fixed order.
package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/metrics"
	"github.com/taskrunner/taskrunner/schedule"
	"github.com/taskrunner/taskrunner/task"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Check is one dependency that /ready checks.
type Check struct {
	Name  string // "postgres", "redis", "minio"
	Check func(ctx context.Context) error
}

// TaskWatcher wakes requests waiting on a task (long polls, event
// streams); db.TaskWatcher is the one taskrunner runs.
type TaskWatcher interface {
	// Subscribe subscribes to task id's changes: wake receives when the
	// task may have changed, stop ends the subscription. A process holding
	// its maximum of waiters refuses with too_many_waiters.
	Subscribe(id int64) (wake <-chan struct{}, stop func(), err error)
}

// riverUIPrefix is where River UI is mounted.
const riverUIPrefix = "/riverui"

// Tasks is what the API asks of the task service (*task.Service): the
// types it takes, and submitting, reading, listing and cancelling tasks.
// Tests of the handlers alone serve it with a fake.
type Tasks interface {
	Types() *tasktype.Registry
	MaxRuntime() time.Duration
	Validate(req *task.Request) (task.Prepared, error)
	ValidateBatch(reqs []task.Request, maxSize int) ([]task.Prepared, error)
	Insert(ctx context.Context, p task.Prepared, idempotencyKey string) (t *taskrunner.Task, existing bool, err error)
	SubmitBatch(ctx context.Context, ps []task.Prepared) ([]taskrunner.Task, error)
	Get(ctx context.Context, id int64) (*taskrunner.Task, error)
	Owned(ctx context.Context, id int64) (*taskrunner.Task, error)
	List(ctx context.Context, q task.ListQuery, add func(*taskrunner.Task) (more bool, err error)) (nextCursor string, err error)
	Cancel(ctx context.Context, id int64) (*taskrunner.Task, error)
	Bulk(ctx context.Context, action task.Action, f *taskrunner.Filter, dryRun bool) (task.BulkResult, error)
	CallbackAttempts(ctx context.Context, id int64) ([]taskrunner.CallbackAttempt, error)
	CallbackTallies(ctx context.Context, ids []int64) (map[int64]taskrunner.CallbackTally, error)
}

var _ Tasks = (*task.Service)(nil)

// Config is what the API is built from.
type Config struct {
	// Tasks submits, reads and cancels tasks. Required.
	Tasks Tasks
	// Schedules creates and reads schedules; nil: the schedule routes
	// answer not_found.
	Schedules *schedule.Service
	// TaskTypes are the task types defined at run time; nil: the server
	// defines none (GET /task-types lists the built-in ones, the others
	// answer not_found).
	TaskTypes TaskTypes
	// Artifacts stores and serves artifacts. Required.
	Artifacts *artifact.Service
	// Checks are what GET /ready checks, in order; none: always ready.
	Checks []Check
	// APIKeys, when set, are required on every route but /health.
	APIKeys []config.APIKey
	// Limiter keeps the per-minute enqueue limit and artifact byte rate;
	// nil: neither is enforced.
	Limiter Limiter
	// Metrics counts requests and serves /metrics; nil: no /metrics.
	Metrics *metrics.Metrics
	// Watcher wakes long polls and event streams; nil: they are refused.
	Watcher TaskWatcher
	// RiverUI is River UI's handler, mounted at /riverui/; nil: not mounted.
	RiverUI http.Handler
	// Limits are the limits the API enforces, shown as they are by
	// GET /limits. Of them the API uses MaxBatchSize,
	// MaxRequestBodyBytes, MaxConcurrentUploads, TenantMaxUploads,
	// UploadIdleTimeout, HTTPReadTimeout (the server's read deadline, see
	// NewHTTPServer: reading what a handler left of a body stops at it
	// too), TasksPerMinute, ArtifactMBPerMinute, TenantMaxWaiters and
	// Tenants; each is config's default when 0. TaskMaxArtifacts is
	// shown as Artifacts enforces it.
	Limits config.Limits
	// Callback are the callback settings GET /limits shows; its Timeout
	// and MaxAttempts are config's defaults when 0.
	Callback config.CallbackLimits
	// CallbackSecrets are the tenants' callback signing secrets, which
	// GET /callbacks/secret reads and POST /callbacks/secret/rotate
	// rotates; nil (no CALLBACK_SECRET): those answer callbacks_disabled.
	CallbackSecrets CallbackSecrets
	// RequestTimeout is every request's deadline (a long poll's is its
	// wait plus this); config.DefaultRequestTimeout when 0.
	RequestTimeout time.Duration
	// Logger gets a line per request and the API's events; nil logs
	// nothing.
	Logger *slog.Logger
}

// withDefaults is cfg with every unset optional field at its default.
func (cfg Config) withDefaults() Config {
	cfg.Limits.MaxBatchSize = cmp.Or(cfg.Limits.MaxBatchSize, config.DefaultMaxBatchSize)
	cfg.Limits.MaxRequestBodyBytes = cmp.Or(cfg.Limits.MaxRequestBodyBytes, config.DefaultMaxRequestBodyBytes)
	cfg.Limits.MaxConcurrentUploads = cmp.Or(cfg.Limits.MaxConcurrentUploads, config.DefaultMaxConcurrentUploads)
	cfg.Limits.TenantMaxUploads = cmp.Or(cfg.Limits.TenantMaxUploads, max(1, cfg.Limits.MaxConcurrentUploads/config.DefaultTenantUploadsShare))
	cfg.Limits.UploadIdleTimeout = cmp.Or(cfg.Limits.UploadIdleTimeout, config.DefaultUploadIdleTimeout)
	cfg.Limits.HTTPReadTimeout = cmp.Or(cfg.Limits.HTTPReadTimeout, config.DefaultHTTPReadTimeout)
	cfg.Limits.TasksPerMinute = cmp.Or(cfg.Limits.TasksPerMinute, config.DefaultTasksPerMinute)
	cfg.Limits.ArtifactMBPerMinute = cmp.Or(cfg.Limits.ArtifactMBPerMinute, config.DefaultArtifactMBPerMinute)
	cfg.Limits.TenantMaxWaiters = cmp.Or(cfg.Limits.TenantMaxWaiters, config.DefaultMaxWaiters/config.DefaultTenantWaitersShare)
	cfg.Callback.Timeout = cmp.Or(cfg.Callback.Timeout, config.DefaultCallbackTimeout)
	cfg.Callback.MaxAttempts = cmp.Or(cfg.Callback.MaxAttempts, config.DefaultCallbackMaxAttempts)
	cfg.Callback.RotationGrace = cmp.Or(cfg.Callback.RotationGrace, config.DefaultCallbackRotationGrace)
	cfg.Limits.CallbackTenantConcurrency = cmp.Or(cfg.Limits.CallbackTenantConcurrency, config.DefaultCallbackTenantConcurrency)
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, config.DefaultRequestTimeout)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return cfg
}

// validate names the first field that is missing or out of range.
func (cfg Config) validate() error {
	switch {
	case cfg.Tasks == nil:
		return errors.New("http api: Tasks is required")
	case cfg.Artifacts == nil:
		return errors.New("http api: Artifacts is required")
	case cfg.Limits.MaxBatchSize < 0:
		return fmt.Errorf("http api: Limits.MaxBatchSize must be positive, got %d", cfg.Limits.MaxBatchSize)
	case cfg.Limits.MaxRequestBodyBytes < 0:
		return fmt.Errorf("http api: Limits.MaxRequestBodyBytes must be positive, got %d", cfg.Limits.MaxRequestBodyBytes)
	case cfg.Limits.MaxConcurrentUploads < 0:
		return fmt.Errorf("http api: Limits.MaxConcurrentUploads must be positive, got %d", cfg.Limits.MaxConcurrentUploads)
	case cfg.Limits.TenantMaxUploads < 0 || cfg.Limits.UploadIdleTimeout < 0:
		return errors.New("http api: Limits.TenantMaxUploads and UploadIdleTimeout must be positive")
	case cfg.Limits.TasksPerMinute < 0 || cfg.Limits.ArtifactMBPerMinute < 0 || cfg.Limits.TenantMaxWaiters < 0:
		return errors.New("http api: Limits.TasksPerMinute, ArtifactMBPerMinute and TenantMaxWaiters must be positive")
	case cfg.Limits.HTTPReadTimeout < 0:
		return fmt.Errorf("http api: Limits.HTTPReadTimeout must be positive, got %s", cfg.Limits.HTTPReadTimeout)
	case cfg.RequestTimeout < 0:
		return fmt.Errorf("http api: RequestTimeout must be positive, got %s", cfg.RequestTimeout)
	}
	for i, c := range cfg.Checks {
		if c.Name == "" || c.Check == nil {
			return fmt.Errorf("http api: Checks[%d] needs a Name and a Check", i)
		}
	}
	return nil
}

// Server is the API's HTTP handler.
type Server struct {
	deps   Config   // with its defaults filled
	keys   *keyring // nil: no authentication
	router chi.Router
	// limiterDown lets requests through while the limiter's Redis is down,
	// and says so.
	limiterDown *cache.FailOpen
	// uploads holds one token per artifact upload being received.
	uploads chan struct{}
	// tenantUploads counts the uploads each tenant sends (by limitKey).
	tenantUploadsMu sync.Mutex
	tenantUploads   map[string]int
	// waiters counts the long polls and event streams each tenant holds
	// (by limitKey).
	waitersMu sync.Mutex
	waiters   map[string]int
	// openAPIDoc is the OpenAPI document of the task types the task
	// service takes.
	openAPIDoc []byte
	// externalDocs is the document with the types defined at run time.
	externalDocs externalDocs
}

// New returns the API handler built from cfg, or an error naming the field
// of cfg that is missing or wrong.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{deps: cfg, uploads: make(chan struct{}, cfg.Limits.MaxConcurrentUploads), tenantUploads: map[string]int{},
		waiters:     map[string]int{},
		limiterDown: cache.NewFailOpen(cfg.Logger, cfg.Metrics, "rate limiter unavailable; letting requests through")}
	if len(cfg.APIKeys) > 0 {
		s.keys = newKeyring(cfg.APIKeys)
	}
	doc, err := OpenAPIDocument(cfg.Tasks.Types())
	if err != nil {
		return nil, err
	}
	s.openAPIDoc = doc
	s.router = s.routes()
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Routes returns the router, for walking every route in tests.
func (s *Server) Routes() chi.Routes { return s.router }

// handlerFunc is the one handler shape: it returns an error instead of
// writing one.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, s.deps.Logger, err)
		}
	}
}

func (s *Server) routes() chi.Router {
	r := chi.NewRouter()
	// Outermost first: recover, request id, identify the tenant (so that
	// the log names it), log, drain what a handler left of a body, refuse
	// cross-origin browser requests, auth (refuse a request identify
	// found no tenant for), deadline. The enqueue limit is taken in the
	// handlers that enqueue, once they know how many tasks a request
	// holds.
	r.Use(s.recoverer)
	r.Use(requestID)
	r.Use(s.identify)
	r.Use(s.requestLog)
	r.Use(s.drainBody)
	r.Use(s.crossOrigin)
	r.Use(s.authenticate)
	r.NotFound(s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return &taskrunner.Error{Code: taskrunner.CodeNotFound, Message: "no such route: " + logMethod(r) + " " + logPath(r)}
	}))
	r.MethodNotAllowed(s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return &taskrunner.Error{Code: taskrunner.CodeMethodNotAllowed, Message: logMethod(r) + " is not allowed on " + logPath(r)}
	}))

	if s.deps.RiverUI != nil {
		// River UI streams and polls: no request deadline of ours.
		// River UI and /metrics show every tenant's work: admins only.
		r.With(s.adminOnly).Handle(riverUIPrefix, http.RedirectHandler(riverUIPrefix+"/", http.StatusMovedPermanently))
		r.With(s.adminOnly).Handle(riverUIPrefix+"/*", s.limitRiverUIBodies(s.deps.RiverUI))
	}
	if s.deps.Metrics != nil {
		r.With(s.adminOnly).Method(http.MethodGet, "/metrics", s.deps.Metrics.Handler())
	}

	r.Group(func(r chi.Router) {
		r.Use(s.deadline)
		s.apiRoutes(r)
	})
	// These wait, and set their own deadlines.
	r.Get("/tasks/{id}", s.handle(s.getTask))
	r.Get("/tasks/{id}/events", s.handle(s.taskEvents))
	r.Post("/tasks/cancel", s.handle(s.bulk(task.ActionCancel)))
	r.Post("/tasks/retry", s.handle(s.bulk(task.ActionRetry)))
	r.Post("/tasks/delete", s.handle(s.bulk(task.ActionDelete)))
	return r
}

// apiRoutes are the JSON API's routes.
func (s *Server) apiRoutes(r chi.Router) {
	r.Get("/health", s.handle(s.health))
	r.Get("/ready", s.handle(s.ready))
	r.Get("/limits", s.handle(s.limits))
	r.Get("/openapi.yaml", s.handle(s.openAPI))

	r.Post("/tasks", s.handle(s.submitTask))
	r.Post("/tasks/batch", s.handle(s.submitBatch))
	r.Get("/tasks", s.handle(s.listTasks))
	r.Post("/tasks/{id}/cancel", s.handle(s.cancelTask))
	r.Post("/search", s.handle(s.submitSearch))

	r.Post("/schedules", s.handle(s.createSchedule))
	r.Get("/schedules", s.handle(s.listSchedules))
	r.Get("/schedules/{name}", s.handle(s.getSchedule))
	r.Post("/schedules/{name}/pause", s.handle(s.pauseSchedule))
	r.Post("/schedules/{name}/resume", s.handle(s.resumeSchedule))
	r.Delete("/schedules/{name}", s.handle(s.deleteSchedule))

	r.Post("/artifacts", s.handle(s.createArtifact))
	r.Get("/task-types", s.handle(s.listTaskTypes))
	r.Get("/task-types/{name}", s.handle(s.getTaskType))
	r.With(s.adminOnly).Put("/task-types/{name}", s.handle(s.putTaskType))
	r.With(s.adminOnly).Delete("/task-types/{name}", s.handle(s.deleteTaskType))

	r.Get("/artifacts/{id}", s.handle(s.downloadArtifact))
	r.Get("/artifacts/{id}/meta", s.handle(s.artifactMeta))
	r.Put("/tasks/{id}/artifacts/{name}", s.handle(s.uploadArtifact))
	r.Get("/tasks/{id}/artifacts", s.handle(s.taskArtifacts))
	r.Get("/tasks/{id}/callbacks", s.handle(s.taskCallbacks))
	r.Get("/callbacks/secret", s.handle(s.callbackSecret))
	r.Post("/callbacks/secret/rotate", s.handle(s.rotateCallbackSecret))
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
					panic(v)
				}
				s.deps.Logger.ErrorContext(r.Context(), "handler panicked", slog.String("event", "http_panic"),
					slog.Any("panic", v), slog.String("path", logPath(r)), slog.String("request_id", middleware.GetReqID(r.Context())))
				writeError(w, r, s.deps.Logger, &taskrunner.Error{Code: taskrunner.CodeInternal,
					Message: "internal error; the server log has the details"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) requestLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		start := time.Now()
		next.ServeHTTP(ww, r)
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route == "" {
			route = "unmatched"
		}
		s.deps.Metrics.HTTPRequest(route, r.Method, ww.Status(), time.Since(start))
		level := slog.LevelDebug
		if ww.Status() >= 500 {
			level = slog.LevelWarn
		}
		if s.deps.Logger.Enabled(r.Context(), level) {
			s.deps.Logger.LogAttrs(r.Context(), level, "http request", slog.String("event", "http_request"),
				slog.String("method", logMethod(r)), slog.String("route", route), slog.String("tenant", callerName(r.Context())),
				slog.Int("status", ww.Status()), slog.Float64("took_ms", float64(time.Since(start).Microseconds())/1000),
				slog.String("request_id", middleware.GetReqID(r.Context())))
		}
	})
}

func (s *Server) deadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.deps.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

type readyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// ready checks every dependency at once and names those that are down.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) error {
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(s.deps.Checks))
	for _, c := range s.deps.Checks {
		go func() { results <- result{c.Name, c.Check(r.Context())} }()
	}
	body := readyBody{Status: "ok", Checks: map[string]string{}}
	var down []string
	for range s.deps.Checks {
		res := <-results
		if res.err != nil {
			body.Checks[res.name] = "down"
			down = append(down, res.name)
			s.deps.Logger.WarnContext(r.Context(), "dependency down", slog.String("event", "dependency_down"),
				slog.String("dependency", res.name), slog.String("error", res.err.Error()))
		} else {
			body.Checks[res.name] = "ok"
		}
	}
	if len(down) > 0 {
		body.Status = "unavailable"
		writeJSON(w, http.StatusServiceUnavailable, struct {
			readyBody
			Error errorDetail `json:"error"`
		}{body, errorDetail{Code: taskrunner.CodeDependencyUnavailable, Message: "down: " + joinSorted(down), RequestID: middleware.GetReqID(r.Context())}})
		return nil
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// tenantLimitsView is what GET /limits shows the caller of its own
// effective limits.
type tenantLimitsView struct {
	Name                string `json:"name"`
	TasksPerMinute      int    `json:"tasks_per_minute"`
	MaxRunning          int    `json:"max_running"`
	CallbackConcurrency int    `json:"callback_concurrency"`
	ArtifactMBPerMinute int    `json:"artifact_mb_per_minute"`
	MaxWaiters          int    `json:"max_waiters"`
	MaxUploads          int    `json:"max_uploads"`
}

// limits shows the global limits and, under "tenant", the caller's own:
// its overrides from TENANT_LIMITS applied. Other tenants' overrides are
// not shown.
func (s *Server) limits(w http.ResponseWriter, r *http.Request) error {
	l := s.deps.Limits
	l.TaskMaxArtifacts = s.deps.Artifacts.MaxPerTask()
	body := map[string]json.RawMessage{}
	// The global limits and the callback settings, side by side.
	for _, part := range []any{l, s.deps.Callback} {
		enc, err := json.Marshal(part)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(enc, &body); err != nil {
			return err
		}
	}
	name := tenantOf(r.Context())
	own, err := json.Marshal(tenantLimitsView{
		Name: name, TasksPerMinute: l.TasksPerMinuteFor(name), MaxRunning: l.MaxRunningFor(name),
		CallbackConcurrency: l.CallbackConcurrencyFor(name),
		ArtifactMBPerMinute: l.ArtifactMBPerMinute, MaxWaiters: l.TenantMaxWaiters, MaxUploads: l.MaxUploadsFor(name),
	})
	if err != nil {
		return err
	}
	body["tenant"] = own
	writeJSON(w, http.StatusOK, body)
	return nil
}

func joinSorted(names []string) string {
	slices.Sort(names)
	return strings.Join(names, ", ")
}
