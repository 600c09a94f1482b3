package task

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/internal/wire"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/tasktype"
)

// notFound is the refusal of an id that names no task.
func notFound(id string) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeNotFound, Message: fmt.Sprintf("no task with id %q", id)}
}

// Request is a task submission (POST /tasks), with priority, queue
// and run_at.
type Request struct {
	Type           string          `json:"type"`
	Params         json.RawMessage `json:"params"`
	TimeoutSeconds *float64        `json:"timeout_seconds"`
	MaxRetries     *int            `json:"max_retries"`
	Priority       *int            `json:"priority"`
	Queue          string          `json:"queue"`
	RunAt          *time.Time      `json:"run_at"`
	// CallbackURL, when set, gets a signed POST of the task's view when
	// the task reaches a final state.
	CallbackURL *string `json:"callback_url"`
	// ParamsInBody says the params are the request body itself (POST
	// /search): refusals name a param as it is ("query"), not within
	// params ("params.query").
	ParamsInBody bool `json:"-"`
}

// Limits bound what a request may ask for.
type Limits struct {
	// MaxRuntime caps timeout_seconds (TASK_MAX_RUNTIME_SECONDS).
	MaxRuntime time.Duration
	// Queues are the queues a request may name (QUEUES).
	Queues []string
	// Callback is what a callback_url may reach (the CALLBACK_* settings);
	// nil when callbacks are off (no CALLBACK_SECRET), and a request
	// asking for one is refused.
	Callback *fetch.Config
	// BulkMaxConcurrent bounds the bulk actions, dry runs included, one
	// tenant runs at once in every process sharing the database
	// (BULK_MAX_CONCURRENT); DefaultBulkMaxConcurrent when 0.
	BulkMaxConcurrent int
	// BulkCountTimeout bounds each statement that counts or finds the
	// tasks of a bulk action's filter (BULK_COUNT_TIMEOUT_SECONDS);
	// DefaultBulkCountTimeout when 0.
	BulkCountTimeout time.Duration
}

// maxRetriesCap bounds max_retries; River's own default is 24 retries.
const maxRetriesCap = 100

// Service submits and reads tasks.
type Service struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	types  *tasktype.Registry
	// catalog holds the types defined at run time; nil: none.
	catalog *Catalog
	limits  Limits
	logger  *slog.Logger
	// fairShare sends each tenant's tasks to its own queues.
	fairShare bool
	// artifacts go with the tasks a bulk delete deletes.
	artifacts ArtifactRemover
	// coalesce inserts concurrent submissions together; nil: each its
	// own insert.
	coalesce        *coalescer
	coalesceInserts int
}

// ServiceConfig is what a Service is built from.
type ServiceConfig struct {
	// Pool is the database tasks are read from and inserted in. Required.
	Pool *pgxpool.Pool
	// Client inserts and cancels tasks; it need not work them. Required
	// before the service is used: when nil (the River client is made
	// after the services its workers use, and one of them is this), give
	// it with SetClient.
	Client *river.Client[pgx.Tx]
	// Types are the task types requests may name: those the client
	// inserts. Required.
	Types *tasktype.Registry
	// Catalog holds the task types defined at run time, which requests
	// may name besides Types; nil: none.
	Catalog *Catalog
	// Limits bound what a request may ask for. Limits.MaxRuntime is
	// jobs.DefaultMaxRuntime when 0, as the River client's; Limits.Queues
	// is River's default queue alone when empty.
	Limits Limits
	// Logger gets task_enqueued and the other task events; nil logs
	// nothing.
	Logger *slog.Logger
	// FairShare sends the tasks of the tenant a request acts for to that
	// tenant's own River queue (jobs.TenantQueue; TENANT_FAIR_SHARE);
	// tasks without a tenant go to the queue itself.
	FairShare bool
	// Artifacts removes the artifacts of the tasks a bulk delete deletes;
	// nil refuses bulk deletes.
	Artifacts ArtifactRemover
	// CoalesceInserts is how many inserts of submissions (Insert without
	// an idempotency key, SubmitBatch) may be in flight at once; a
	// submission that arrives while they all are waits for the next, which
	// takes every submission waiting then, in one transaction. 0 is
	// DefaultCoalesceInserts; -1 gives every submission its own insert.
	CoalesceInserts int
}

// withDefaults is cfg with every unset optional field at its default.
func (cfg ServiceConfig) withDefaults() ServiceConfig {
	cfg.Limits.MaxRuntime = cmp.Or(cfg.Limits.MaxRuntime, jobs.DefaultMaxRuntime)
	cfg.Limits.BulkMaxConcurrent = cmp.Or(cfg.Limits.BulkMaxConcurrent, DefaultBulkMaxConcurrent)
	cfg.Limits.BulkCountTimeout = cmp.Or(cfg.Limits.BulkCountTimeout, DefaultBulkCountTimeout)
	if len(cfg.Limits.Queues) == 0 {
		cfg.Limits.Queues = []string{river.QueueDefault}
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.CoalesceInserts = cmp.Or(cfg.CoalesceInserts, DefaultCoalesceInserts)
	return cfg
}

// validate names the first field that is missing or out of range.
func (cfg ServiceConfig) validate() error {
	switch {
	case cfg.Pool == nil:
		return errors.New("task service: Pool is required")
	case cfg.Types == nil:
		return errors.New("task service: Types is required")
	case cfg.Limits.MaxRuntime < 0:
		return fmt.Errorf("task service: Limits.MaxRuntime must be positive, got %s", cfg.Limits.MaxRuntime)
	case cfg.Limits.BulkMaxConcurrent < 0:
		return fmt.Errorf("task service: Limits.BulkMaxConcurrent must be positive, got %d", cfg.Limits.BulkMaxConcurrent)
	case cfg.Limits.BulkCountTimeout < 0:
		return fmt.Errorf("task service: Limits.BulkCountTimeout must be positive, got %s", cfg.Limits.BulkCountTimeout)
	case cfg.CoalesceInserts < -1:
		return fmt.Errorf("task service: CoalesceInserts must be -1 (off), 0 (default) or positive, got %d", cfg.CoalesceInserts)
	}
	return nil
}

// NewService returns a Service built from cfg, or an error naming the
// field of cfg that is missing or wrong.
func NewService(cfg ServiceConfig) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Service{pool: cfg.Pool, types: cfg.Types, catalog: cfg.Catalog, limits: cfg.Limits, logger: cfg.Logger, fairShare: cfg.FairShare, artifacts: cfg.Artifacts,
		coalesceInserts: cfg.CoalesceInserts}
	if cfg.Client != nil {
		s.SetClient(cfg.Client)
	}
	return s, nil
}

// Types are the built-in task types requests may name.
func (s *Service) Types() *tasktype.Registry { return s.types }

// Catalog holds the task types defined at run time; nil when the service
// takes none.
func (s *Service) Catalog() *Catalog { return s.catalog }

// SetClient gives the service the River client it inserts and cancels
// with, once, before it is used: a client that works schedule ticks is
// made with the service that inserts their tasks.
func (s *Service) SetClient(client *river.Client[pgx.Tx]) {
	s.client = client
	if s.coalesceInserts > 0 {
		s.coalesce = newCoalescer(client, s.pool, s.coalesceInserts)
	}
}

// Prepared is a request Validate accepted: its task, ready to insert with
// Insert, InsertTx or SubmitBatch.
type Prepared struct {
	p river.InsertManyParams
}

// Type is the task's type.
func (p Prepared) Type() string { return p.p.Args.Kind() }

// RiverParams are the River insert parameters of the task, for a program
// that inserts through River itself (the bench's bulk load); the service's
// own inserts add its owner and its tenant's queue.
func (p Prepared) RiverParams() river.InsertManyParams { return p.p }

// ForSchedule is p as a tick of owner's schedule name enqueues it: its
// metadata names the schedule, the tick and the owner, even the local
// tenant, whose tasks otherwise carry none, so that the unique index on
// (owner, schedule, tick) refuses a second task for the tick.
func (p Prepared) ForSchedule(owner, name string, tick time.Time) (Prepared, error) {
	var meta tasktype.Metadata
	if err := json.Unmarshal(p.p.InsertOpts.Metadata, &meta); err != nil {
		return Prepared{}, fmt.Errorf("task metadata: %w", err)
	}
	meta.Owner, meta.Schedule, meta.ScheduleTick = owner, name, &tick
	opts := *p.p.InsertOpts
	var err error
	if opts.Metadata, err = json.Marshal(meta); err != nil {
		return Prepared{}, err
	}
	p.p.InsertOpts = &opts
	return p, nil
}

// Validate checks a request and returns its task, prepared. It touches
// nothing. Refusals are *taskrunner.Error naming the field.
func (s *Service) Validate(req *Request) (Prepared, error) {
	p, err := s.validate(req, new(river.InsertOpts))
	return Prepared{p}, err
}

// validate is Validate, filling opts for the parameters it returns.
func (s *Service) validate(req *Request, opts *river.InsertOpts) (river.InsertManyParams, error) {
	var (
		args           river.JobArgs
		defaultRetries int
		defaultTimeout float64
		external       bool
		err            error
	)
	if tt, ok := s.types.Lookup(req.Type); ok {
		args, err = tt.Decode(req.Params)
		defaultRetries = tt.DefaultMaxRetries
	} else {
		var ext *External
		if ext, err = s.lookupExternal(req.Type); err != nil {
			return river.InsertManyParams{}, err
		}
		args, err = externalArgs(ext, req.Params)
		external = true
		if ext.MaxRetries != nil {
			defaultRetries = *ext.MaxRetries
		}
		if ext.TimeoutSeconds != nil {
			// The cap may have been lowered since the type was put.
			defaultTimeout = min(*ext.TimeoutSeconds, s.limits.MaxRuntime.Seconds())
		}
	}
	if err != nil {
		var pe *taskrunner.Error
		if errors.As(err, &pe) {
			return river.InsertManyParams{}, paramRefusal(pe, req.ParamsInBody)
		}
		return river.InsertManyParams{}, err
	}

	// A task without timeout_seconds stores none: TASK_MAX_RUNTIME_SECONDS
	// (River's JobTimeout) applies when it runs, and its view shows that
	// cap. Metadata holds only what a task sets: River indexes it (GIN),
	// and every entry costs each insert and each state change.
	capSeconds := s.limits.MaxRuntime.Seconds()
	timeout := defaultTimeout
	if req.TimeoutSeconds != nil {
		timeout = *req.TimeoutSeconds
		switch {
		case math.IsNaN(timeout) || timeout <= 0:
			return river.InsertManyParams{}, taskrunner.Invalid("timeout_seconds", "must be a positive number of seconds")
		case timeout > capSeconds:
			return river.InsertManyParams{}, taskrunner.Invalid("timeout_seconds", "must be at most %s (TASK_MAX_RUNTIME_SECONDS)", strconv.FormatFloat(capSeconds, 'f', -1, 64))
		}
	}
	retries := defaultRetries
	if req.MaxRetries != nil {
		retries = *req.MaxRetries
		if retries < 0 || retries > maxRetriesCap {
			return river.InsertManyParams{}, taskrunner.Invalid("max_retries", "must be between 0 and %d", maxRetriesCap)
		}
	}
	*opts = river.InsertOpts{MaxAttempts: retries + 1}
	if req.Priority != nil {
		if *req.Priority < 1 || *req.Priority > 4 {
			return river.InsertManyParams{}, taskrunner.Invalid("priority", "must be between 1 (first) and 4")
		}
		opts.Priority = *req.Priority
	}
	switch {
	case external:
		// No worker of the server's works the external queue: the tasks
		// wait there for workers outside it.
		if req.Queue != "" && req.Queue != jobs.ExternalQueue {
			return river.InsertManyParams{}, taskrunner.Invalid("queue", "must be %s (or none) for a task type defined at run time", jobs.ExternalQueue)
		}
		opts.Queue = jobs.ExternalQueue
	case req.Queue != "":
		if !slices.Contains(s.limits.Queues, req.Queue) {
			return river.InsertManyParams{}, taskrunner.Invalid("queue", "must be one of: %s", strings.Join(s.limits.Queues, ", "))
		}
		opts.Queue = req.Queue
	}
	if req.RunAt != nil {
		opts.ScheduledAt = *req.RunAt
	}
	callbackURL, err := s.checkCallbackURL(req.CallbackURL)
	if err != nil {
		return river.InsertManyParams{}, err
	}
	if timeout == 0 && callbackURL == "" {
		opts.Metadata = []byte("{}") // most tasks: no encoding
	} else {
		meta, err := json.Marshal(tasktype.Metadata{TimeoutSeconds: timeout, CallbackURL: callbackURL})
		if err != nil {
			return river.InsertManyParams{}, err
		}
		opts.Metadata = meta
	}
	return river.InsertManyParams{Args: args, InsertOpts: opts}, nil
}

// lookupExternal is the type defined at run time that name names, or the
// refusal of a name that names no type.
func (s *Service) lookupExternal(name string) (*External, error) {
	if name == "" {
		return nil, taskrunner.Invalid("type", "is required")
	}
	names := s.types.Names()
	if s.catalog != nil {
		ext, ok, err := s.catalog.Lookup(name)
		if err != nil {
			return nil, err
		}
		if ok {
			return ext, nil
		}
		if more, err := s.catalog.Names(); err == nil {
			names = append(names, more...)
			slices.Sort(names)
		}
	}
	return nil, &taskrunner.Error{Code: taskrunner.CodeUnknownTaskType, Field: "type",
		Message: fmt.Sprintf("unknown task type %q; known types: %s", name, strings.Join(names, ", "))}
}

// kinds are the names of every type the service takes, built-in and
// defined at run time: what task lists and bulk actions select from.
func (s *Service) kinds() ([]string, error) {
	names := s.types.Names()
	if s.catalog == nil {
		return names, nil
	}
	more, err := s.catalog.Names()
	if err != nil {
		return nil, err
	}
	return append(names, more...), nil
}

// MaxRuntime is TASK_MAX_RUNTIME_SECONDS: the timeout of a task that
// sets none.
func (s *Service) MaxRuntime() time.Duration { return s.limits.MaxRuntime }

// checkCallbackURL checks a request's callback_url by the fetch
// package's rules under the CALLBACK_* settings and returns it in the
// canonical form it will be dialled in; "" for none.
func (s *Service) checkCallbackURL(raw *string) (string, error) {
	if raw == nil {
		return "", nil
	}
	if s.limits.Callback == nil {
		return "", taskrunner.Invalid("callback_url", "is refused: callbacks are off on this server (CALLBACK_SECRET is not set)")
	}
	u, err := fetch.CheckURL(*raw, *s.limits.Callback)
	if err != nil {
		var fe *taskrunner.Error
		if errors.As(err, &fe) {
			return "", &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: "callback_url",
				Message: "callback_url: " + fe.Message}
		}
		return "", err
	}
	return u.String(), nil
}

// paramRefusal is a task type's refusal of a param (its Field relative to
// params) named in full: params.seconds, or seconds when the params are
// the request body; params for the params as a whole.
func paramRefusal(pe *taskrunner.Error, paramsInBody bool) *taskrunner.Error {
	field := pe.Field
	switch {
	case field == "":
		field = "params"
	case !paramsInBody:
		field = "params." + field
	}
	return &taskrunner.Error{Code: pe.Code, Field: field, Message: field + ": " + pe.Message, Err: pe.Err}
}

// allStates makes an idempotency key unique whatever became of its first
// task: a repeat returns it even when it finished long ago (until retention
// deletes it).
var allStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStateCancelled, rivertype.JobStateCompleted, rivertype.JobStateDiscarded,
	rivertype.JobStatePending, rivertype.JobStateRetryable, rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// MaxIdempotencyKeyLength bounds the Idempotency-Key header.
const MaxIdempotencyKeyLength = 255

// Submit validates and enqueues one task. With an idempotency key (scoped
// to the client by the caller), a repeated key returns the first task and
// existing is true; River's unique index makes that hold under concurrent
// repeats.
func (s *Service) Submit(ctx context.Context, req *Request, idempotencyKey string) (t *taskrunner.Task, existing bool, err error) {
	p, err := s.Validate(req)
	if err != nil {
		return nil, false, err
	}
	return s.Insert(ctx, p, idempotencyKey)
}

// Insert enqueues a task Validate accepted, owned by the tenant ctx acts
// for; see Submit.
func (s *Service) Insert(ctx context.Context, prepared Prepared, idempotencyKey string) (t *taskrunner.Task, existing bool, err error) {
	p := prepared.p
	kind := p.Args.Kind()
	if err := own(ctx, &p); err != nil {
		return nil, false, err
	}
	if idempotencyKey != "" {
		args, ok := tasktype.WithIdempotencyKey(p.Args, idempotencyKey)
		if !ok {
			return nil, false, fmt.Errorf("task type %s does not embed tasktype.Idempotency", kind)
		}
		p.Args = args
		p.InsertOpts.UniqueOpts = river.UniqueOpts{ByArgs: true, ByState: allStates}
	}
	if p.InsertOpts, err = s.tenantQueue(ctx, p.InsertOpts); err != nil {
		return nil, false, err
	}
	var res *rivertype.JobInsertResult
	// A task with an idempotency key is a unique insert: River's upsert
	// of it may not share a statement with another of the same key.
	if s.coalesce != nil && idempotencyKey == "" {
		var results []*rivertype.JobInsertResult
		if results, err = s.coalesce.insert(ctx, []river.InsertManyParams{p}); err == nil {
			res = results[0]
		}
	} else {
		res, err = s.client.Insert(ctx, p.Args, p.InsertOpts)
	}
	if err != nil {
		return nil, false, db.AsUnavailable(fmt.Errorf("enqueue %s task: %w", kind, err))
	}
	task := FromJobRow(res.Job)
	if res.UniqueSkippedAsDuplicate {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "repeated idempotency key; returning the first task", slog.String("event", "task_idempotent_repeat"),
			slog.Int64("task_id", task.ID), slog.String("type", task.Type))
		return &task, true, nil
	}
	s.logEnqueued(ctx, &task)
	return &task, false, nil
}

// InsertTx enqueues a task Validate accepted in tx, owned by the tenant
// ctx acts for: the task exists only if tx commits.
func (s *Service) InsertTx(ctx context.Context, tx pgx.Tx, prepared Prepared) (*taskrunner.Task, error) {
	p := prepared.p
	if err := own(ctx, &p); err != nil {
		return nil, err
	}
	opts, err := s.tenantQueue(ctx, p.InsertOpts)
	if err != nil {
		return nil, err
	}
	res, err := s.client.InsertTx(ctx, tx, p.Args, opts)
	if err != nil {
		return nil, db.AsUnavailable(fmt.Errorf("enqueue %s task: %w", p.Args.Kind(), err))
	}
	task := FromJobRow(res.Job)
	s.logEnqueued(ctx, &task)
	return &task, nil
}

// tenantQueue is opts sending the task to the River queue of the tenant
// ctx acts for, when fair share is on, and naming in its metadata the
// queue of its callback's deliveries (jobs.CallbackQueueFor) when it asked
// for one; opts itself otherwise.
func (s *Service) tenantQueue(ctx context.Context, opts *river.InsertOpts) (*river.InsertOpts, error) {
	var tenant string
	if t, ok := taskrunner.TenantFrom(ctx); ok && s.fairShare {
		tenant = t.Name
	}
	withCallback := opts != nil && bytes.Contains(opts.Metadata, []byte(`"callback_url"`))
	if tenant == "" && !withCallback {
		return opts, nil
	}
	o := river.InsertOpts{}
	if opts != nil {
		o = *opts
	}
	if tenant != "" {
		o.Queue = jobs.TenantQueue(cmp.Or(o.Queue, river.QueueDefault), tenant)
	}
	if withCallback {
		var m tasktype.Metadata
		if err := json.Unmarshal(o.Metadata, &m); err != nil {
			return nil, fmt.Errorf("task metadata: %w", err)
		}
		m.CallbackQueue = jobs.CallbackQueueFor(tenant)
		meta, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		o.Metadata = meta
	}
	return &o, nil
}

func (s *Service) logEnqueued(ctx context.Context, t *taskrunner.Task) {
	if !s.logger.Enabled(ctx, slog.LevelInfo) {
		return // a batch has fifty: no attributes for a line not logged
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "task enqueued", slog.String("event", "task_enqueued"),
		slog.Int64("task_id", t.ID), slog.String("type", t.Type), slog.String("queue", t.Queue), slog.String("tenant", tenantName(ctx)))
}

// tenantName is the tenant ctx acts for, as log lines name it (never its
// key): system for taskrunner's own work.
func tenantName(ctx context.Context) string {
	if t, ok := taskrunner.TenantFrom(ctx); ok {
		return t.Name
	}
	return "system"
}

// ValidateBatch checks every request of a batch of at most maxSize, naming
// the index of the first bad one, and returns their tasks, prepared.
func (s *Service) ValidateBatch(reqs []Request, maxSize int) ([]Prepared, error) {
	switch {
	case len(reqs) == 0:
		return nil, taskrunner.Invalid("tasks", "must hold at least one task")
	case len(reqs) > maxSize:
		return nil, &taskrunner.Error{Code: taskrunner.CodeBatchTooLarge, Field: "tasks",
			Message: fmt.Sprintf("a batch holds at most %d tasks (MAX_BATCH_SIZE); this one has %d", maxSize, len(reqs))}
	}
	params := make([]Prepared, len(reqs))
	opts := make([]river.InsertOpts, len(reqs)) // the batch's options, in one allocation
	for i := range reqs {
		p, err := s.validate(&reqs[i], &opts[i])
		var taskErr *taskrunner.Error
		if errors.As(err, &taskErr) {
			field := fmt.Sprintf("tasks[%d]", i)
			if taskErr.Field != "" {
				field += "." + taskErr.Field
			}
			return nil, &taskrunner.Error{Code: taskErr.Code, Field: field, Message: fmt.Sprintf("tasks[%d]: %s", i, taskErr.Message)}
		}
		if err != nil {
			return nil, err
		}
		params[i] = Prepared{p}
	}
	return params, nil
}

// SubmitBatch enqueues validated tasks in one transaction, all or none,
// owned by the tenant ctx acts for.
func (s *Service) SubmitBatch(ctx context.Context, prepared []Prepared) ([]taskrunner.Task, error) {
	params := make([]river.InsertManyParams, len(prepared))
	for i := range prepared {
		params[i] = prepared[i].p
	}
	tenant, owned := taskrunner.TenantFrom(ctx)
	opts := make([]river.InsertOpts, len(params)) // the owned copies, in one allocation
	for i := range params {
		if owned {
			if err := ownAs(tenant.Name, &params[i], &opts[i]); err != nil {
				return nil, err
			}
		}
		var err error
		if params[i].InsertOpts, err = s.tenantQueue(ctx, params[i].InsertOpts); err != nil {
			return nil, err
		}
	}
	var results []*rivertype.JobInsertResult
	var err error
	if s.coalesce != nil {
		results, err = s.coalesce.insert(ctx, params)
	} else {
		results, err = insertManyInTx(ctx, s.client, s.pool, params)
	}
	if err != nil {
		return nil, db.AsUnavailable(fmt.Errorf("enqueue batch of %d: %w", len(params), err))
	}
	tasks := make([]taskrunner.Task, len(results))
	for i, r := range results {
		tasks[i] = FromJobRow(r.Job)
		s.logEnqueued(ctx, &tasks[i])
	}
	return tasks, nil
}

// own records the tenant ctx acts for as the owner in p's metadata; a
// context without a tenant (taskrunner's own work) inserts a job without
// an owner, which belongs to taskrunner.LocalTenant.
func own(ctx context.Context, p *river.InsertManyParams) error {
	tenant, ok := taskrunner.TenantFrom(ctx)
	if !ok || tenant.Name == taskrunner.LocalTenant {
		// A task without an owner is the local tenant's (the tasks view,
		// the filters and jobs.OwnerOf read it so): a server without keys
		// stores none, and its tasks' metadata holds no entry River's index
		// on it must keep.
		return nil
	}
	return ownAs(tenant.Name, p, new(river.InsertOpts))
}

// ownAs records owner in p's metadata: p's options are copied to opts,
// with the owner added, and p takes them.
func ownAs(owner string, p *river.InsertManyParams, opts *river.InsertOpts) error {
	meta, err := withOwner(p.InsertOpts.Metadata, owner)
	if err != nil {
		return err
	}
	*opts = *p.InsertOpts
	opts.Metadata = meta
	p.InsertOpts = opts
	return nil
}

// withOwner is metadata (a JSON object, or empty) with its owner set to
// owner. Validate's metadata has no owner yet: the owner is added after
// the object's last member without decoding it; metadata that already
// names an owner is decoded and encoded again.
func withOwner(metadata []byte, owner string) ([]byte, error) {
	trimmed := bytes.TrimSpace(metadata)
	if len(trimmed) >= 2 && trimmed[0] == '{' && trimmed[len(trimmed)-1] == '}' && !bytes.Contains(trimmed, []byte(`"owner"`)) {
		body := bytes.TrimSpace(trimmed[1 : len(trimmed)-1])
		out := make([]byte, 0, len(body)+len(owner)+14)
		out = append(out, '{')
		if len(body) > 0 {
			out = append(append(out, body...), ',')
		}
		out, err := appendJSONString(append(out, `"owner":`...), owner)
		if err != nil {
			return nil, err
		}
		return append(out, '}'), nil
	}
	var m tasktype.Metadata
	if len(trimmed) > 0 {
		if err := json.Unmarshal(trimmed, &m); err != nil {
			return nil, fmt.Errorf("task metadata: %w", err)
		}
	}
	m.Owner = owner
	return json.Marshal(m)
}

// appendJSONString appends s as json.Marshal writes it: quoted as it is
// when it needs no escape (a tenant's name), without encoding it.
func appendJSONString(b []byte, s string) ([]byte, error) {
	// json.Marshal also escapes <, > and &, for HTML.
	if !strings.ContainsAny(s, "<>&") {
		if out, ok := wire.AppendPlainString(b, s); ok {
			return out, nil
		}
	}
	enc, err := json.Marshal(s)
	return append(b, enc...), err
}

// getOwned reads task id for the tenant ctx acts for: another tenant's
// task is not found, exactly as an unknown id.
func (s *Service) getOwned(ctx context.Context, id int64) (*taskrunner.Task, error) {
	t, err := db.GetTask(ctx, s.pool, id)
	if errors.Is(err, db.ErrNotFound) || (err == nil && !taskrunner.Visible(ctx, t.Owner)) {
		return nil, notFound(strconv.FormatInt(id, 10))
	}
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	return t, nil
}

// Owned returns task id when the tenant ctx acts for may see it: another
// tenant's task is not found, exactly as an unknown id.
func (s *Service) Owned(ctx context.Context, id int64) (*taskrunner.Task, error) {
	return s.getOwned(ctx, id)
}

// CallbackAttempts returns the delivery attempts of task id's callback,
// oldest first. The caller has checked the task is the tenant's (Owned).
func (s *Service) CallbackAttempts(ctx context.Context, id int64) ([]taskrunner.CallbackAttempt, error) {
	a, err := db.CallbackAttemptsForTask(ctx, s.pool, id)
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	return a, nil
}

// CallbackTallies sums up the callback attempts of tasks ids in one
// query; a task without any attempt has no entry. The caller has checked
// the tasks are the tenant's.
func (s *Service) CallbackTallies(ctx context.Context, ids []int64) (map[int64]taskrunner.CallbackTally, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	t, err := db.CallbackTallies(ctx, s.pool, ids)
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	return t, nil
}

// CallbackTasks reads tasks for their callbacks' deliveries (the callback
// worker's jobs.CallbackDeps.Task): the task as body encodes it (the API's
// view), and its URL; db.ErrNotFound for a task that is gone.
func CallbackTasks(ex db.Executor, body func(*taskrunner.Task) ([]byte, error)) func(ctx context.Context, id int64) (jobs.CallbackTask, error) {
	return func(ctx context.Context, id int64) (jobs.CallbackTask, error) {
		t, err := db.GetTask(ctx, ex, id)
		if err != nil {
			return jobs.CallbackTask{}, err
		}
		t.Queue = jobs.BaseQueue(t.Queue)
		b, err := body(t)
		if err != nil {
			return jobs.CallbackTask{}, err
		}
		return jobs.CallbackTask{Body: b, URL: CallbackURLOf(t), Owner: t.Owner}, nil
	}
}

// CallbackURLOf is the callback_url t asked for, "" for none.
func CallbackURLOf(t *taskrunner.Task) string { return jobs.CallbackURL(t.Metadata) }

// ParseID parses a task id from a path; anything but a positive integer
// names no task.
func ParseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, notFound(s)
	}
	return id, nil
}

// MaxArtifactIDs is how many of a task's artifact ids its view holds, the
// first (oldest) of them; GET /tasks/{id}/artifacts pages through all.
const MaxArtifactIDs = 100

// Get returns the task with its runs, how many artifacts it has and the
// ids of the first MaxArtifactIDs. A client tenant gets only its own
// tasks: another tenant's id is not found.
func (s *Service) Get(ctx context.Context, id int64) (*taskrunner.Task, error) {
	t, err := s.getOwned(ctx, id)
	if err != nil {
		return nil, err
	}
	t.Queue = jobs.BaseQueue(t.Queue)
	if t.Runs, err = db.RunsForTask(ctx, s.pool, id); err != nil {
		return nil, db.AsUnavailable(err)
	}
	if t.Status == taskrunner.StatusRunning {
		attempt, startedAt, worker, ok, err := db.RunningAttempt(ctx, s.pool, id)
		if err != nil {
			return nil, db.AsUnavailable(err)
		}
		if ok {
			t.Runs = withRunningAttempt(t.Runs, taskrunner.Run{
				TaskID: id, Attempt: attempt, Key: s.types.KeyOf(t.Type, t.Params), TaskType: t.Type,
				Status: db.RunRunning, Worker: worker, StartedAt: startedAt,
			})
		}
	}
	if t.ArtifactIDs, t.ArtifactCount, err = db.ArtifactIDsForTask(ctx, s.pool, id, MaxArtifactIDs); err != nil {
		return nil, db.AsUnavailable(err)
	}
	return t, nil
}

// withRunningAttempt is runs with running, the attempt the task is
// running now. An attempt's row is written when it ends; while it runs, it
// is River's (attempt, attempted_at, attempted_by). An attempt a shutdown
// interrupted that runs again shows as running, its interruption counted.
func withRunningAttempt(runs []taskrunner.Run, running taskrunner.Run) []taskrunner.Run {
	n := len(runs)
	if n == 0 || runs[n-1].Attempt < running.Attempt {
		return append(runs, running)
	}
	last := &runs[n-1]
	if last.Attempt == running.Attempt && last.Status == db.RunInterrupted {
		running.ID, running.Interruptions = last.ID, last.Interruptions+1
		*last = running
	}
	// Otherwise the attempt has ended and River has yet to mark the task.
	return runs
}

// Page limits for List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// ListQuery selects a page of tasks.
type ListQuery struct {
	// Filter selects the tasks. A client tenant lists its own tasks only,
	// whatever Filter.Owner says (another name lists nothing).
	Filter taskrunner.Filter
	Cursor string // the previous page's NextCursor
	Limit  int
}

// listChunk is how many tasks List reads from the database at a time, so
// a page of large tasks is never held whole.
const listChunk = 50

// List hands a page of tasks to add, newest first, as it reads them, and
// returns the cursor of the next page ("" on the last). add returns false
// when the page is full before the query's limit (a cap on its encoded
// size): the page ends with the task it was given.
func (s *Service) List(ctx context.Context, q ListQuery, add func(*taskrunner.Task) (more bool, err error)) (nextCursor string, err error) {
	f, none, err := s.scope(ctx, &q.Filter)
	if err != nil || none {
		return "", err
	}
	// Tasks only, as the bulk actions see them: taskrunner's own jobs
	// (callback deliveries, schedule ticks, retention) are River UI's.
	if f.Kinds, err = s.kinds(); err != nil {
		return "", err
	}
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultPageSize
	case limit < 0 || limit > MaxPageSize:
		return "", taskrunner.Invalid("limit", "must be between 1 and %d", MaxPageSize)
	}
	var before int64
	if q.Cursor != "" {
		c, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil || c <= 0 {
			return "", taskrunner.Invalid("cursor", "is not a cursor this API returned")
		}
		before = c
	}
	for remaining := limit; remaining > 0; {
		n := min(remaining, listChunk)
		// One more than needed tells whether another page follows.
		tasks, err := db.ListTasks(ctx, s.pool, f, before, n+1)
		if err != nil {
			return "", db.AsUnavailable(err)
		}
		for i := range tasks[:min(len(tasks), n)] {
			tasks[i].Queue = jobs.BaseQueue(tasks[i].Queue)
			more, err := add(&tasks[i])
			if err != nil {
				return "", err
			}
			remaining--
			if !more {
				if i+1 < len(tasks) {
					return strconv.FormatInt(tasks[i].ID, 10), nil
				}
				return "", nil
			}
		}
		if len(tasks) <= n {
			return "", nil
		}
		before = tasks[n-1].ID
	}
	return strconv.FormatInt(before, 10), nil
}

// Cancel cancels a queued task at once, or asks the process running it to
// stop it (River's JobCancel, delivered by a Postgres notification). A
// finished task gives task_already_finished. A client tenant cancels only
// its own tasks: another tenant's id is not found.
func (s *Service) Cancel(ctx context.Context, id int64) (*taskrunner.Task, error) {
	current, err := s.getOwned(ctx, id)
	if err != nil {
		return nil, err
	}
	if taskrunner.Finished(current.Status) {
		return nil, alreadyFinished(id, current.Status)
	}
	row, err := s.client.JobCancel(ctx, id)
	if errors.Is(err, river.ErrNotFound) {
		return nil, notFound(strconv.FormatInt(id, 10))
	}
	if err != nil {
		return nil, db.AsUnavailable(fmt.Errorf("cancel task %d: %w", id, err))
	}
	if row.State == rivertype.JobStateCompleted || row.State == rivertype.JobStateDiscarded {
		return nil, alreadyFinished(id, taskrunner.Status(row.State)) // it finished while we looked
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "task cancel requested", slog.String("event", "task_cancel_requested"),
		slog.Int64("task_id", id), slog.String("status", string(row.State)))
	// Read back through the tasks view, which knows the task's error.
	t, err := db.GetTask(ctx, s.pool, id)
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	t.Queue = jobs.BaseQueue(t.Queue)
	return t, nil
}

func alreadyFinished(id int64, status taskrunner.Status) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeTaskAlreadyFinished, Message: fmt.Sprintf("task %d already finished (%s)", id, status)}
}

// FromJobRow is a River job row in the shape of the tasks view, for a task
// just inserted: without an error, which only the view (from the task's
// runs) knows.
func FromJobRow(j *rivertype.JobRow) taskrunner.Task {
	t := taskrunner.Task{
		ID: j.ID, Type: j.Kind, Status: taskrunner.Status(j.State), Params: j.EncodedArgs,
		Attempt: j.Attempt, MaxAttempts: j.MaxAttempts, Priority: j.Priority, Queue: jobs.BaseQueue(j.Queue),
		CreatedAt: j.CreatedAt, ScheduledAt: j.ScheduledAt, StartedAt: j.AttemptedAt, FinishedAt: j.FinalizedAt,
		Metadata: j.Metadata,
	}
	// One decoding of the metadata, for the timeout, the owner and the
	// output (River's, under "output"; a task just inserted has none):
	// without reflection for metadata as an insert stores it.
	m, err := decodeMetadata(j.Metadata)
	if err == nil {
		if timeout := m.TimeoutSeconds; timeout > 0 {
			t.TimeoutSeconds = &timeout
		}
		if len(m.Output) > 0 {
			t.Result = m.Output
		}
	} else if out := j.Output(); len(out) > 0 {
		t.Result = out
	}
	t.Owner = cmp.Or(m.Owner, taskrunner.LocalTenant) // as the tasks view shows it
	return t
}

// jobMetadata is a River job's metadata as FromJobRow reads it: River's
// output beside taskrunner's own.
type jobMetadata struct {
	tasktype.Metadata
	Output json.RawMessage `json:"output"`
}

// metadataDecoder reads the metadata of each task inserted.
var metadataDecoder = wire.NewDecoder[jobMetadata]()

// decodeMetadata is meta decoded, by metadataDecoder when it takes it:
// then without an allocation for the decoding itself.
func decodeMetadata(meta []byte) (jobMetadata, error) {
	var m jobMetadata
	if metadataDecoder.Decode(meta, &m) {
		return m, nil
	}
	return decodeMetadataJSON(meta)
}

// decodeMetadataJSON is meta decoded by encoding/json, as much of it as
// it decodes before an error.
func decodeMetadataJSON(meta []byte) (jobMetadata, error) {
	var m jobMetadata
	err := json.Unmarshal(meta, &m)
	return m, err
}
