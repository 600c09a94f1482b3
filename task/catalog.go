package task

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Defaults of CatalogConfig.
const (
	// DefaultCatalogTTL is how long a process uses the external types it
	// read before it reads them again: how soon it sees another process's
	// put or delete.
	DefaultCatalogTTL = 2 * time.Second
	// DefaultMaxExternalTypes bounds how many types may be defined at run
	// time: every process keeps them all, compiled, in memory.
	DefaultMaxExternalTypes = 200
	// maxPushURLLength bounds a push type's URL.
	maxPushURLLength = 2048
	// catalogReadTimeout bounds one reading of the types, which every
	// request waiting on it shares.
	catalogReadTimeout = 5 * time.Second
)

// CatalogConfig is what a Catalog is built from.
type CatalogConfig struct {
	// Pool is the database the types are stored in. Required.
	Pool *pgxpool.Pool
	// Builtins are the types compiled into the program, whose names a
	// type defined at run time may not take. Required.
	Builtins *tasktype.Registry
	// TTL is DefaultCatalogTTL when 0.
	TTL time.Duration
	// MaxTypes is DefaultMaxExternalTypes when 0.
	MaxTypes int
	// MaxRuntime caps a type's timeout_seconds (TASK_MAX_RUNTIME_SECONDS);
	// jobs.DefaultMaxRuntime when 0.
	MaxRuntime time.Duration
	// Logger gets the catalog's events; nil logs nothing.
	Logger *slog.Logger
}

// Catalog is the task types defined at run time (PUT /task-types/{name}),
// stored in PostgreSQL and shared by every process. The task service
// looks a type up in its built-in registry first, then here.
//
// A process reads every type at once and keeps them, their schemas
// compiled, for TTL: a put or delete in another process is seen within
// TTL, and one in this process at once. A schema is compiled again only
// when its type changed.
type Catalog struct {
	pool       *pgxpool.Pool
	builtins   *tasktype.Registry
	ttl        time.Duration
	maxTypes   int
	maxRuntime time.Duration
	logger     *slog.Logger

	mu   sync.Mutex // held while reading the types: one reading at a time
	snap *catalogSnapshot
}

// External is a type defined at run time with its compiled schema.
type External struct {
	taskrunner.ExternalType
	Schema *tasktype.Schema
}

// catalogSnapshot is the types as read at one time.
type catalogSnapshot struct {
	readAt time.Time
	byName map[string]*External
	names  []string // sorted
}

// NewCatalog returns a Catalog built from cfg, or an error naming the
// field of cfg that is missing or wrong.
func NewCatalog(cfg CatalogConfig) (*Catalog, error) {
	switch {
	case cfg.Pool == nil:
		return nil, errors.New("task type catalog: Pool is required")
	case cfg.Builtins == nil:
		return nil, errors.New("task type catalog: Builtins is required")
	case cfg.TTL < 0 || cfg.MaxTypes < 0 || cfg.MaxRuntime < 0:
		return nil, errors.New("task type catalog: TTL, MaxTypes and MaxRuntime must not be negative")
	}
	return &Catalog{pool: cfg.Pool, builtins: cfg.Builtins, ttl: cmp.Or(cfg.TTL, DefaultCatalogTTL),
		maxTypes: cmp.Or(cfg.MaxTypes, DefaultMaxExternalTypes), maxRuntime: cmp.Or(cfg.MaxRuntime, jobs.DefaultMaxRuntime),
		logger: cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))}, nil
}

// typeNotFound is the refusal of a name that names no type.
func typeNotFound(name string) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeNotFound, Message: fmt.Sprintf("no task type %q defined at run time", name)}
}

// Put checks t and stores it, replacing the type of its name, and returns
// it as stored. Refusals name the field: task_rejected_invalid_params,
// task_type_reserved for a built-in type's name, too_many_task_types.
func (c *Catalog) Put(ctx context.Context, t *taskrunner.ExternalType) (*taskrunner.ExternalType, error) {
	if err := c.check(t); err != nil {
		return nil, err
	}
	out, err := db.PutTaskType(ctx, c.pool, t, c.maxTypes)
	if errors.Is(err, db.ErrTooMany) {
		return nil, taskrunner.Errorf(taskrunner.CodeTooManyTaskTypes, "at most %d task types may be defined at run time; delete one first", c.maxTypes)
	}
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	c.forget()
	c.logger.LogAttrs(ctx, slog.LevelInfo, "task type put", slog.String("event", "task_type_put"),
		slog.String("task_type", out.Name), slog.String("mode", out.Mode))
	return out, nil
}

// check refuses a type that may not be stored, naming the field.
func (c *Catalog) check(t *taskrunner.ExternalType) error {
	if err := tasktype.CheckName(t.Name); err != nil {
		return err
	}
	if _, ok := c.builtins.Lookup(t.Name); ok {
		return &taskrunner.Error{Code: taskrunner.CodeTaskTypeReserved, Field: "name",
			Message: fmt.Sprintf("%q is a built-in task type", t.Name)}
	}
	switch t.Mode {
	case taskrunner.ModePull:
		if t.PushURL != "" {
			return taskrunner.Invalid("push_url", "is for push types only")
		}
	case taskrunner.ModePush:
		if err := checkPushURL(t.PushURL); err != nil {
			return err
		}
	case "":
		return taskrunner.Invalid("mode", "is required: pull or push")
	default:
		return taskrunner.Invalid("mode", "must be pull or push")
	}
	if _, err := tasktype.CompileSchema(t.Name, t.ParamsSchema); err != nil {
		return err
	}
	if t.TimeoutSeconds != nil {
		capSeconds := c.maxRuntime.Seconds()
		if v := *t.TimeoutSeconds; math.IsNaN(v) || v <= 0 || v > capSeconds {
			return taskrunner.Invalid("timeout_seconds", "must be a positive number of seconds, at most %s (TASK_MAX_RUNTIME_SECONDS)",
				strconv.FormatFloat(capSeconds, 'f', -1, 64))
		}
	}
	if t.MaxRetries != nil && (*t.MaxRetries < 0 || *t.MaxRetries > maxRetriesCap) {
		return taskrunner.Invalid("max_retries", "must be between 0 and %d", maxRetriesCap)
	}
	return nil
}

// checkPushURL refuses a push_url that is not an absolute http(s) URL.
// Where it may point (the SSRF guard) is checked when tasks are pushed.
func checkPushURL(raw string) error {
	if raw == "" {
		return taskrunner.Invalid("push_url", "is required for a push type")
	}
	if len(raw) > maxPushURLLength {
		return taskrunner.Invalid("push_url", "must be at most %d characters", maxPushURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return taskrunner.Invalid("push_url", "must be an absolute http or https URL without credentials")
	}
	return nil
}

// Get returns the type name defined at run time, read now.
func (c *Catalog) Get(ctx context.Context, name string) (*taskrunner.ExternalType, error) {
	if tasktype.CheckName(name) != nil {
		return nil, typeNotFound(name)
	}
	t, err := db.GetTaskType(ctx, c.pool, name)
	if errors.Is(err, db.ErrNotFound) {
		return nil, typeNotFound(name)
	}
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	return t, nil
}

// List returns every type defined at run time, by name, read now.
func (c *Catalog) List(ctx context.Context) ([]taskrunner.ExternalType, error) {
	types, err := db.ListTaskTypes(ctx, c.pool)
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	return types, nil
}

// Delete deletes the type name. While a task of it waits or runs it
// refuses with task_type_in_use, unless force: then those tasks stay in
// the queue, unworked and unlisted, until a type of that name is put
// again. A process that read the types within its TTL before the delete
// may still take a task of it for that long.
func (c *Catalog) Delete(ctx context.Context, name string, force bool) error {
	if _, ok := c.builtins.Lookup(name); ok {
		return &taskrunner.Error{Code: taskrunner.CodeTaskTypeReserved, Message: fmt.Sprintf("%q is a built-in task type and cannot be deleted", name)}
	}
	if tasktype.CheckName(name) != nil {
		return typeNotFound(name)
	}
	if !force {
		// An unknown type is not found, whatever tasks of its name wait.
		if _, err := c.Get(ctx, name); err != nil {
			return err
		}
		busy, err := db.HasUnfinishedTasks(ctx, c.pool, name)
		if err != nil {
			return db.AsUnavailable(err)
		}
		if busy {
			return taskrunner.Errorf(taskrunner.CodeTaskTypeInUse,
				"task type %q has tasks waiting or running; wait for them, cancel them, or delete with force=true", name)
		}
	}
	// With force, the type's waiting tasks are cancelled with it, in one
	// transaction: none is left that no worker could ever claim.
	var cancelled int64
	err := db.WithTx(ctx, c.pool, func(tx pgx.Tx) error {
		if err := db.DeleteTaskType(ctx, tx, name); err != nil {
			return err
		}
		if !force {
			return nil
		}
		var err error
		cancelled, err = db.CancelWaitingTasks(ctx, tx, name)
		return err
	})
	if errors.Is(err, db.ErrNotFound) {
		return typeNotFound(name)
	}
	if err != nil {
		return db.AsUnavailable(err)
	}
	c.forget()
	c.logger.LogAttrs(ctx, slog.LevelInfo, "task type deleted", slog.String("event", "task_type_deleted"),
		slog.String("task_type", name), slog.Bool("force", force), slog.Int64("tasks_cancelled", cancelled))
	return nil
}

// forget drops the types read, so that the next lookup reads them again:
// this process sees its own puts and deletes at once.
func (c *Catalog) forget() {
	c.mu.Lock()
	if c.snap != nil {
		c.snap.readAt = time.Time{} // stale; its compiled schemas are kept
	}
	c.mu.Unlock()
}

// Lookup is the type name defined at run time, as read within TTL.
func (c *Catalog) Lookup(name string) (*External, bool, error) {
	snap, err := c.snapshot()
	if err != nil {
		return nil, false, err
	}
	t, ok := snap.byName[name]
	return t, ok, nil
}

// Names are the names of the types defined at run time, sorted, as read
// within TTL.
func (c *Catalog) Names() ([]string, error) {
	snap, err := c.snapshot()
	if err != nil {
		return nil, err
	}
	return snap.names, nil
}

// Externals are the types defined at run time, by name, as read within
// TTL.
func (c *Catalog) Externals() ([]*External, error) {
	snap, err := c.snapshot()
	if err != nil {
		return nil, err
	}
	out := make([]*External, len(snap.names))
	for i, n := range snap.names {
		out[i] = snap.byName[n]
	}
	return out, nil
}

// snapshot is the types read within TTL, or read now. The reading is
// not any one request's: it has a deadline of its own, so a request that
// gives up does not fail the others waiting on it.
func (c *Catalog) snapshot() (*catalogSnapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != nil && time.Since(c.snap.readAt) < c.ttl {
		return c.snap, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), catalogReadTimeout)
	defer cancel()
	readAt := time.Now()
	types, err := db.ListTaskTypes(ctx, c.pool)
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	next := &catalogSnapshot{readAt: readAt, byName: make(map[string]*External, len(types)), names: make([]string, 0, len(types))}
	for _, t := range types {
		if prev := c.previous(t.Name); prev != nil && prev.UpdatedAt.Equal(t.UpdatedAt) {
			next.byName[t.Name] = prev
		} else {
			sch, err := tasktype.CompileSchema(t.Name, t.ParamsSchema)
			if err != nil {
				// Stored types were compiled when put; a library that
				// changed its mind must not take every type down.
				c.logger.LogAttrs(ctx, slog.LevelError, "stored task type does not compile", slog.String("event", "task_type_invalid"),
					slog.String("task_type", t.Name), slog.String("error", err.Error()))
				continue
			}
			next.byName[t.Name] = &External{ExternalType: t, Schema: sch}
		}
		next.names = append(next.names, t.Name)
	}
	c.snap = next
	return next, nil
}

// previous is the type name as last read, nil when none; c.mu is held.
func (c *Catalog) previous(name string) *External {
	if c.snap == nil {
		return nil
	}
	return c.snap.byName[name]
}

// externalArgs validates a request's params against t's schema and
// returns the task's args.
func externalArgs(t *External, params json.RawMessage) (tasktype.ExternalArgs, error) {
	p, err := t.Schema.Validate(params)
	if err != nil {
		return tasktype.ExternalArgs{}, err
	}
	return tasktype.NewExternalArgs(t.Name, p), nil
}
