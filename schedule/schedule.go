// Package schedule is taskrunner's schedules: a task request enqueued at
// each tick of a cron expression or of a fixed interval, for the tenant
// that owns the schedule.
//
// Schedules live in PostgreSQL (the schedules table). Every working
// process keeps its River client's periodic jobs in step with the table
// (Syncer); River runs periodic jobs in its elected leader only, so one
// process fires the ticks at a time. A tick is a small River job
// (jobs.ScheduleTickArgs), unique by schedule and tick; its worker
// (Firer) claims the tick in the schedules table, where the last tick only
// moves forward, inserts the task and completes the tick job, all in one
// transaction. So a tick enqueues one task at most, whichever leader fires
// it and however often, and a unique index on the tasks' schedule and
// tick makes the database refuse a second one too. A tick's task takes one
// of its owner's enqueue allowance, the one POST /tasks takes from; a tick
// claimed once that is used up is skipped and counted, not retried.
package schedule

import (
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

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/task"
)

// Bounds of schedules.
const (
	// MaxPerOwner is how many schedules a tenant may have.
	MaxPerOwner = 1000
	// MaxNameLength bounds a schedule's name.
	MaxNameLength = 64
	// NextRunsShown is how many next runs a schedule's view lists.
	NextRunsShown = 5
	// LastTasksShown is how many of its latest task ids a schedule's view
	// lists.
	LastTasksShown = 5
	// DefaultPageSize and MaxPageSize bound a page of List.
	DefaultPageSize = 100
	MaxPageSize     = 500
	// listChunk is how many schedules List reads at a time, so that a
	// page whose encoding its caller caps in bytes is never read whole.
	listChunk = 50
)

// Request is a new schedule (POST /schedules): a name, exactly one of
// Cron and Every, and the task to enqueue at each tick, as POST /tasks
// takes it.
type Request struct {
	Name string `json:"name"`
	// Cron is five fields in TimeZone (UTC by default).
	Cron     string `json:"cron"`
	TimeZone string `json:"time_zone"`
	// Every is an interval (a Go duration such as "30s" or "1h") from 1 s;
	// its ticks are its multiples since the Unix epoch.
	Every string `json:"every"`
	// Missed is what a tick missed while no leader ran becomes:
	// taskrunner.MissedRunOnce (the default) or taskrunner.MissedSkip.
	Missed string       `json:"missed"`
	Task   task.Request `json:"task"`
}

// Service creates, reads, pauses, resumes and deletes schedules.
type Service struct {
	pool   *pgxpool.Pool
	tasks  *task.Service
	limits config.Limits
	logger *slog.Logger
}

// NewService returns a Service storing schedules in pool; tasks validates
// their task requests as POST /tasks does. limits bound a tenant's
// schedules: their ticks a minute by its tasks per minute
// (Limits.TasksPerMinuteFor), and their stored tasks by
// ScheduleMaxTaskBytes (each config's default when 0). logger may be nil.
func NewService(pool *pgxpool.Pool, tasks *task.Service, limits config.Limits, logger *slog.Logger) (*Service, error) {
	if pool == nil || tasks == nil {
		return nil, errors.New("schedule service: a pool and a task service are required")
	}
	limits.TasksPerMinute = cmp.Or(limits.TasksPerMinute, config.DefaultTasksPerMinute)
	limits.ScheduleMaxTaskBytes = cmp.Or(limits.ScheduleMaxTaskBytes, config.DefaultScheduleMaxTaskBytes)
	return &Service{pool: pool, tasks: tasks, limits: limits, logger: cmp.Or(logger, slog.New(slog.DiscardHandler))}, nil
}

// notFound is the refusal of a name that names none of the tenant's
// schedules.
func notFound(name string) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeNotFound, Message: fmt.Sprintf("no schedule named %q", name)}
}

// ValidName reports whether name may name a schedule: 1 to MaxNameLength
// of A-Z, a-z, 0-9, _, - and ., starting with a letter or digit.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLength {
		return false
	}
	for i, c := range name {
		alnum := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !alnum && (i == 0 || (c != '_' && c != '-' && c != '.')) {
			return false
		}
	}
	return true
}

// Validate checks a request: its name, its timing, its missed policy, and
// its task exactly as POST /tasks checks one (the same codes, fields under
// task.). It touches nothing.
func (s *Service) Validate(req *Request) (Timing, error) {
	if !ValidName(req.Name) {
		return Timing{}, taskrunner.Invalid("name", "must be 1 to %d letters, digits, '_', '-' or '.', starting with a letter or digit", MaxNameLength)
	}
	timing, err := ParseTiming(req.Cron, req.Every, req.TimeZone)
	if err != nil {
		return Timing{}, err
	}
	switch req.Missed {
	case "", taskrunner.MissedRunOnce, taskrunner.MissedSkip:
	default:
		return Timing{}, taskrunner.Invalid("missed", "must be %s or %s", taskrunner.MissedRunOnce, taskrunner.MissedSkip)
	}
	if req.Task.RunAt != nil {
		return Timing{}, taskrunner.Invalid("task.run_at", "cannot be set in a schedule: each tick enqueues its task at once")
	}
	if _, err := s.tasks.Validate(&req.Task); err != nil {
		return Timing{}, taskField(err)
	}
	return timing, nil
}

// taskField is a refusal of a schedule's task with its field named within
// the schedule: task.params.msg.
func taskField(err error) error {
	var e *taskrunner.Error
	if !errors.As(err, &e) {
		return err
	}
	field := "task"
	if e.Field != "" {
		field += "." + e.Field
	}
	return &taskrunner.Error{Code: e.Code, Field: field, Message: "task: " + e.Message, Err: e.Err}
}

// Create validates and stores a schedule owned by the tenant ctx acts for.
// The owner's count of schedules and their ticks a minute are checked and
// the schedule inserted under a lock of the owner's schedules
// (db.LockOwnerSchedules), so parallel creates cannot pass one count.
func (s *Service) Create(ctx context.Context, req *Request) (*taskrunner.Schedule, error) {
	timing, err := s.Validate(req)
	if err != nil {
		return nil, err
	}
	owner := ownerOf(ctx)
	taskJSON, err := storedTask(&req.Task)
	if err != nil {
		return nil, err
	}
	if n, limit := len(taskJSON), s.limits.ScheduleMaxTaskBytes; n > limit {
		return nil, &taskrunner.Error{Code: taskrunner.CodeScheduleTaskTooLarge, Field: "task",
			Message: fmt.Sprintf("task is %d bytes as stored; a schedule's task may be at most %d (SCHEDULE_MAX_TASK_BYTES)", n, limit)}
	}
	tz := req.TimeZone
	if req.Cron == "" {
		tz = ""
	}
	var sch *taskrunner.Schedule
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		others, err := s.lockOwner(ctx, tx, owner)
		if err != nil {
			return err
		}
		if len(others) >= MaxPerOwner {
			return taskrunner.Errorf(taskrunner.CodeTooManySchedules, "a tenant has at most %d schedules; delete one first", MaxPerOwner)
		}
		if err := s.checkTicks(owner, others, "", timing); err != nil {
			return err
		}
		sch, err = db.InsertSchedule(ctx, tx, &taskrunner.Schedule{Owner: owner, Name: req.Name, Cron: req.Cron, Every: everyOf(req),
			TimeZone: tz, Task: taskJSON, Missed: req.Missed})
		return err
	})
	if errors.Is(err, db.ErrExists) {
		return nil, &taskrunner.Error{Code: taskrunner.CodeScheduleExists, Field: "name",
			Message: fmt.Sprintf("a schedule named %q exists; delete it first or choose another name", req.Name)}
	}
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "schedule created", slog.String("event", "schedule_created"),
		slog.String("tenant", owner), slog.String("schedule", sch.Name))
	return sch, nil
}

// lockOwner locks owner's schedules until tx ends and returns them all,
// paused or not, with their timings only.
func (s *Service) lockOwner(ctx context.Context, tx pgx.Tx, owner string) ([]taskrunner.Schedule, error) {
	if err := db.LockOwnerSchedules(ctx, tx, owner); err != nil {
		return nil, err
	}
	return db.OwnerScheduleTimings(ctx, tx, owner)
}

// checkTicks refuses timing, a schedule about to tick (created, or
// resumed: named name), when with owner's other active schedules it would
// make more ticks a minute (Timing.TicksPerMinute) than owner's tasks per
// minute: every tick is a job and a transaction, whether or not its task
// is admitted.
func (s *Service) checkTicks(owner string, schedules []taskrunner.Schedule, name string, timing Timing) error {
	sum := timing.TicksPerMinute()
	for i := range schedules {
		o := &schedules[i]
		if o.Paused || o.Name == name {
			continue
		}
		if t, err := TimingOf(o); err == nil {
			sum += t.TicksPerMinute()
		}
	}
	limit := s.limits.TasksPerMinuteFor(owner)
	// A little slack for the sum of fractions such as 60/7.
	if sum > float64(limit)+1e-6 {
		return taskrunner.Errorf(taskrunner.CodeScheduleRateExceeded,
			"with this schedule, %s's active schedules would tick %s times a minute, and may tick %d (its tasks_per_minute); pause or delete one, or tick less often",
			owner, strconv.FormatFloat(math.Round(sum*100)/100, 'f', -1, 64), limit)
	}
	return nil
}

// storedTask is a schedule's task request as stored and shown: the
// fields it sets, without the nulls and empty strings of those it leaves
// out.
func storedTask(req *task.Request) (json.RawMessage, error) {
	full, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(full, &fields); err != nil {
		return nil, err
	}
	for k, v := range fields {
		if string(v) == "null" || string(v) == `""` {
			delete(fields, k)
		}
	}
	return json.Marshal(fields)
}

// everyOf is a valid request's interval; 0 for a cron schedule.
func everyOf(req *Request) time.Duration {
	if req.Every == "" {
		return 0
	}
	d, _ := time.ParseDuration(req.Every)
	return d
}

// ownerOf is the tenant ctx acts for; LocalTenant for taskrunner's own
// work.
func ownerOf(ctx context.Context) string {
	if t, ok := taskrunner.TenantFrom(ctx); ok {
		return t.Name
	}
	return taskrunner.LocalTenant
}

// target is whose schedule a request names: the tenant's own, or for an
// admin the owner it names.
func target(ctx context.Context, owner string) string {
	if t, ok := taskrunner.TenantFrom(ctx); owner != "" && (!ok || t.Admin) {
		return owner
	}
	return ownerOf(ctx)
}

// Detail is a schedule with what its view shows besides: its next runs
// and its latest tasks.
type Detail struct {
	taskrunner.Schedule
	NextRuns    []time.Time
	LastTaskIDs []int64 // newest first; nil when not read
}

// detail is s with its next runs (none while paused).
func detail(s *taskrunner.Schedule) Detail {
	d := Detail{Schedule: *s, NextRuns: []time.Time{}}
	if s.Paused {
		return d
	}
	if t, err := TimingOf(s); err == nil {
		d.NextRuns = t.NextN(time.Now(), NextRunsShown)
	}
	return d
}

// Get returns a schedule of the tenant ctx acts for (an admin may name
// another owner) with its next runs and latest task ids; another tenant's
// is not found.
func (s *Service) Get(ctx context.Context, owner, name string) (*Detail, error) {
	sch, err := s.get(ctx, target(ctx, owner), name)
	if err != nil {
		return nil, err
	}
	d := detail(sch)
	if d.LastTaskIDs, err = db.ScheduleTaskIDs(ctx, s.pool, sch.Owner, sch.Name, LastTasksShown); err != nil {
		return nil, db.AsUnavailable(err)
	}
	return &d, nil
}

func (s *Service) get(ctx context.Context, owner, name string) (*taskrunner.Schedule, error) {
	if !ValidName(name) {
		return nil, notFound(name)
	}
	sch, err := db.GetSchedule(ctx, s.pool, owner, name)
	if errors.Is(err, db.ErrNotFound) {
		return nil, notFound(name)
	}
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	return sch, nil
}

// ListQuery selects a page of schedules.
type ListQuery struct {
	// Owner keeps one tenant's schedules; a client tenant lists its own
	// only, whatever Owner says.
	Owner  string
	Cursor string // the previous page's next cursor
	Limit  int
}

// List hands a page of schedules, by owner and name, with their next
// runs, to add as it reads them, and returns the cursor of the next page
// ("" on the last). add returns false when the page is full before the
// query's limit (a cap on its encoded size): the page ends with the
// schedule it was given.
func (s *Service) List(ctx context.Context, q ListQuery, add func(*Detail) (more bool, err error)) (string, error) {
	limit := cmp.Or(q.Limit, DefaultPageSize)
	if limit < 0 || limit > MaxPageSize {
		return "", taskrunner.Invalid("limit", "must be between 1 and %d", MaxPageSize)
	}
	owner := q.Owner
	if len(owner) > MaxNameLength {
		return "", taskrunner.Invalid("owner", "must be at most %d characters", MaxNameLength)
	}
	if t, ok := taskrunner.TenantFrom(ctx); ok && !t.Admin {
		if owner != "" && owner != t.Name {
			return "", nil // another tenant's: none this client may see
		}
		owner = t.Name
	}
	f := db.ScheduleFilter{Owner: owner}
	if q.Cursor != "" {
		var ok bool
		f.AfterOwner, f.AfterName, ok = strings.Cut(q.Cursor, "/")
		if !ok || !ValidName(f.AfterName) {
			return "", taskrunner.Invalid("cursor", "is not a cursor this API returned")
		}
	}
	cursor := func(sch *taskrunner.Schedule) string { return sch.Owner + "/" + sch.Name }
	for remaining := limit; remaining > 0; {
		n := min(remaining, listChunk)
		// One more than needed tells whether another page follows.
		f.Limit = n + 1
		rows, err := db.ListSchedules(ctx, s.pool, f)
		if err != nil {
			return "", db.AsUnavailable(err)
		}
		for i := range rows[:min(len(rows), n)] {
			d := detail(&rows[i])
			more, err := add(&d)
			if err != nil {
				return "", err
			}
			remaining--
			if !more {
				if i+1 < len(rows) {
					return cursor(&rows[i]), nil
				}
				return "", nil
			}
		}
		if len(rows) <= n {
			return "", nil
		}
		f.AfterOwner, f.AfterName = rows[n-1].Owner, rows[n-1].Name
	}
	return f.AfterOwner + "/" + f.AfterName, nil
}

// SetPaused pauses (no more ticks) or resumes (ticks from now on; those
// passed while paused stay passed) a schedule, as Get names it. A resume
// is checked against the owner's ticks a minute as a create is, under the
// same lock.
func (s *Service) SetPaused(ctx context.Context, owner, name string, paused bool) (*Detail, error) {
	owner = target(ctx, owner)
	if !ValidName(name) {
		return nil, notFound(name)
	}
	var sch *taskrunner.Schedule
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		if !paused {
			if err := s.checkResume(ctx, tx, owner, name); err != nil {
				return err
			}
		}
		var err error
		sch, err = db.SetSchedulePaused(ctx, tx, owner, name, paused)
		return err
	})
	if errors.Is(err, db.ErrNotFound) {
		return nil, notFound(name)
	}
	if err != nil {
		return nil, db.AsUnavailable(err)
	}
	event := "schedule_resumed"
	if paused {
		event = "schedule_paused"
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, strings.ReplaceAll(event, "_", " "), slog.String("event", event),
		slog.String("tenant", owner), slog.String("schedule", name))
	d := detail(sch)
	return &d, nil
}

// checkResume refuses to resume owner's paused schedule name when its
// ticks would take owner's active schedules over the bound checkTicks
// sets. A schedule that is not paused passes: resuming it changes
// nothing.
func (s *Service) checkResume(ctx context.Context, tx pgx.Tx, owner, name string) error {
	all, err := s.lockOwner(ctx, tx, owner)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(all, func(o taskrunner.Schedule) bool { return o.Name == name })
	if i < 0 {
		return db.ErrNotFound
	}
	if !all[i].Paused {
		return nil
	}
	timing, err := TimingOf(&all[i])
	if err != nil {
		return nil // it cannot tick: it costs nothing
	}
	return s.checkTicks(owner, all, name, timing)
}

// Delete deletes a schedule, as Get names it, for good; the tasks it
// enqueued stay.
func (s *Service) Delete(ctx context.Context, owner, name string) error {
	owner = target(ctx, owner)
	if !ValidName(name) {
		return notFound(name)
	}
	err := db.DeleteSchedule(ctx, s.pool, owner, name)
	if errors.Is(err, db.ErrNotFound) {
		return notFound(name)
	}
	if err != nil {
		return db.AsUnavailable(err)
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "schedule deleted", slog.String("event", "schedule_deleted"),
		slog.String("tenant", owner), slog.String("schedule", name))
	return nil
}
