package jobs

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/metrics"
	"github.com/taskrunner/taskrunner/storable"
	"github.com/taskrunner/taskrunner/tasktype"
)

// runWriteTimeout bounds the writes of a run record, which happen even when
// the job's context is already cancelled.
const runWriteTimeout = 10 * time.Second

// RunRecorder is River worker middleware that records each attempt of a task
// as a row in runs, written once when the attempt ends, logs its start and
// end, and turns a timeout into task_runtime_exceeded. Workers never write runs themselves; they attach
// metrics and notes with tasktype.RecordMetric and tasktype.AddNote.
type RunRecorder struct {
	river.MiddlewareDefaults

	writer  *runWriter
	pool    *pgxpool.Pool // where progress is written
	logger  *slog.Logger
	worker  string
	metrics *metrics.Metrics
	types   *tasktype.Registry // the runs' keys
}

// RunRecorderConfig is what a RunRecorder is built from.
type RunRecorderConfig struct {
	// Pool is the database the runs are written to. Required.
	Pool *pgxpool.Pool
	// WorkerName names this process in every run it records; the
	// process's host/pid-<random> when empty.
	WorkerName string
	// Logger gets task_started, task_completed and the other run events;
	// nil logs nothing.
	Logger *slog.Logger
	// Metrics counts tasks by outcome; nil counts nothing.
	Metrics *metrics.Metrics
	// Types give the runs' keys (a type's RunKey); without them every
	// run's key is a hash of its args.
	Types *tasktype.Registry
}

// processName is the default RunRecorderConfig.WorkerName, and so the
// River client id of a working process: host/pid-<8 random hex digits>.
// The random part tells apart processes that share a host name and a pid:
// containers on one host network, each its own pid 1, or one container
// restarted, whose earlier incarnation may still lead or hold attempts.
var processName = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
})

// withDefaults is cfg with every unset optional field at its default.
func (cfg RunRecorderConfig) withDefaults() RunRecorderConfig {
	if cfg.WorkerName == "" {
		cfg.WorkerName = processName()
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return cfg
}

// validate names the first field that is missing.
func (cfg RunRecorderConfig) validate() error {
	if cfg.Pool == nil {
		return errors.New("run recorder: Pool is required")
	}
	return nil
}

// NewRunRecorder returns the middleware built from cfg, or an error naming
// the field of cfg that is missing. Its writer waits for records from the
// start; Close it after the River client has stopped, so the last records
// are written.
func NewRunRecorder(cfg RunRecorderConfig) (*RunRecorder, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	runs, err := db.NewRunPool(cfg.Pool)
	if err != nil {
		return nil, err
	}
	return &RunRecorder{writer: newRunWriter(runs, cfg.Logger, cfg.Metrics), pool: cfg.Pool, logger: cfg.Logger, worker: cfg.WorkerName, metrics: cfg.Metrics, types: cfg.Types}, nil
}

// Close writes the records still pending, stops the writer and closes its
// connections.
func (m *RunRecorder) Close(ctx context.Context) error {
	err := m.writer.close(ctx)
	if err == nil {
		m.writer.pool.Close()
	}
	return err
}

// Outcomes of a record that is not written.
var (
	// errRunBacklog: dropped because too many records wait.
	errRunBacklog = errors.New("too many run records are waiting to be written")
	// errRunDropped: dropped because the database refuses it.
	errRunDropped = errors.New("the database refused the run record; dropped")
)

var _ rivertype.WorkerMiddleware = (*RunRecorder)(nil)

// Work records the run around the inner work. Its own frame stays small:
// River runs each job on a goroutine of its own, which starts with a small
// stack, and every byte this frame holds while the job runs is stack the
// job's decoding and work may have to grow (copying it) to get. What
// happens before and after lives in begin and end.
func (m *RunRecorder) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	a := m.begin(ctx, job)
	workErr := doInner(tasktype.WithReporter(ctx, a))
	return m.end(ctx, job, a, workErr)
}

// begin notes an attempt's start: what the recorder collects while it
// runs, and what end needs.
//
//go:noinline
func (m *RunRecorder) begin(ctx context.Context, job *rivertype.JobRow) *recorder {
	started := time.Now()
	a := &recorder{
		started: started, owner: tasktype.OwnerOf(job),
		progress: progressState{pool: m.pool, logger: m.logger, taskID: job.ID, attempt: job.Attempt, last: started},
	}
	m.metrics.RunStarted(a.owner)
	// Attributes are built only for lines that are logged: this runs for
	// every task.
	if m.logger.Enabled(ctx, slog.LevelDebug) {
		m.logger.LogAttrs(ctx, slog.LevelDebug, "task started", append(runAttrs(job, a.owner), slog.String("event", "task_started"))...)
	}
	return a
}

// runAttrs are the attributes of a task's log lines.
func runAttrs(job *rivertype.JobRow, owner string) []slog.Attr {
	return []slog.Attr{
		slog.Int64("task_id", job.ID), slog.String("type", job.Kind), slog.String("tenant", tenantAttr(owner)),
		slog.Int("attempt", job.Attempt), slog.Int("max_attempts", job.MaxAttempts),
	}
}

// end classifies how the attempt ended, logs it and writes its record,
// waiting for the write, and returns what River is told.
//
//go:noinline
func (m *RunRecorder) end(ctx context.Context, job *rivertype.JobRow, a *recorder, workErr error) error {
	took := time.Since(a.started)
	out := classify(ctx, job, workErr, took)
	m.metrics.RunFinished(job.Kind, a.owner, out.status, took)
	// taskrunner's own jobs (a schedule's tick, a callback delivery) leave
	// a record only when an attempt fails: one a second per schedule would
	// otherwise fill runs, and their success is logged at debug only. The
	// run sweep leaves their completed jobs alone too.
	quiet := out.err == nil && IsInternal(job.Kind)
	if quiet {
		out.level = slog.LevelDebug
	}
	if m.logger.Enabled(ctx, out.level) {
		attrs := append(runAttrs(job, a.owner), slog.Float64("took_ms", ms(took)), slog.String("event", out.event))
		if out.code != "" {
			attrs = append(attrs, slog.String("error_code", string(out.code)), slog.String("error", out.err.Error()))
		}
		m.logger.LogAttrs(ctx, out.level, out.message, attrs...)
	}
	if quiet {
		return nil
	}
	if out.final && job.Attempt < job.MaxAttempts {
		// River decides between a retry and a discard on this very row once
		// the middleware returns (Attempt >= MaxAttempts discards; see
		// jobexecutor's reportError): the task ends discarded, not
		// cancelled. The row in the database keeps its max_attempts.
		job.MaxAttempts = job.Attempt
	}

	// The attempt's start is River's attempted_at, set when the job was
	// fetched: no row is written when an attempt starts. A running attempt
	// is river_job's (state running, attempt, attempted_at), and the API
	// shows it as a running run.
	startedAt := a.started
	if job.AttemptedAt != nil {
		startedAt = *job.AttemptedAt
	}
	rec := db.RunRecord{
		TaskID: job.ID, Attempt: job.Attempt, Key: m.types.KeyOf(job.Kind, job.EncodedArgs), TaskType: job.Kind, Worker: m.worker,
		StartedAt: startedAt, CloseEarlier: job.Attempt > 1,
		Status: out.status, ErrorCode: out.code, Error: out.public,
		FinishedAt: a.started.Add(took), Duration: took,
	}
	rec.Metrics, rec.Notes = a.snapshot()
	wait := time.NewTimer(runWriteTimeout)
	defer wait.Stop()
	select {
	case err := <-m.writer.record(storableRecord(rec)):
		if err != nil && !errors.Is(err, errRunDropped) {
			m.logger.LogAttrs(ctx, slog.LevelError, "run record not written yet; the writer retries",
				append(runAttrs(job, a.owner), slog.String("event", "run_record_failed"), slog.String("error", err.Error()))...)
		}
	case <-wait.C:
		m.logger.LogAttrs(ctx, slog.LevelError, "run record not written in time; the writer retries",
			append(runAttrs(job, a.owner), slog.String("event", "run_record_failed"))...)
	}
	if out.err == nil {
		return nil
	}
	return riverErrorOf(out.err)
}

// tenantAttr is the tenant a task's log lines name: its owner, or system
// for taskrunner's own jobs.
func tenantAttr(owner string) string {
	if owner == "" {
		return metrics.TenantSystem
	}
	return owner
}

// storableRecord is rec with every text that came from outside (an error's
// message, notes, metric names) made storable: PostgreSQL refuses a NUL or
// bytes that are not UTF-8 in text, and one such record would hold up
// every record of its batch.
func storableRecord(rec db.RunRecord) db.RunRecord {
	rec.Error = storable.Text(rec.Error)
	if len(rec.Notes) > 0 {
		notes := make([]string, len(rec.Notes))
		for i, n := range rec.Notes {
			notes[i] = storable.Text(n)
		}
		rec.Notes = notes
	}
	for name, v := range rec.Metrics {
		if clean := storable.Text(name); clean != name {
			delete(rec.Metrics, name)
			rec.Metrics[clean] = v
		}
	}
	return rec
}

// riverError is a failed attempt's error as River is given it: the whole
// error text, for operators (River UI shows it), made storable, because
// River keeps it in jsonb. River's own checks (a shutdown's
// context.Canceled) still see the error it wraps; a JobCancelError is not
// passed on, since a worker's own refusal ends its task discarded.
type riverError struct {
	err  error
	text string
}

func (e *riverError) Error() string { return e.text }
func (e *riverError) Unwrap() error { return e.err }

func riverErrorOf(err error) error {
	var cancelErr *rivertype.JobCancelError
	if errors.As(err, &cancelErr) {
		err = cancelErr.Unwrap()
	}
	return &riverError{err: err, text: storable.Text(err.Error())}
}

// outcome is how an attempt ended.
type outcome struct {
	status  string          // run status
	code    taskrunner.Code // error code, empty on success
	public  string          // what clients are shown of the error: taskrunner.PublicMessage
	err     error           // returned to River
	final   bool            // no retry can fix it: the task ends discarded
	event   string          // log event
	message string
	level   slog.Level
}

func classify(ctx context.Context, job *rivertype.JobRow, err error, took time.Duration) outcome {
	out := classifyErr(ctx, job, err, took)
	if out.code != "" {
		out.public = taskrunner.PublicMessage(out.code, out.err)
	}
	return out
}

func classifyErr(ctx context.Context, job *rivertype.JobRow, err error, took time.Duration) outcome {
	var cancelErr *rivertype.JobCancelError
	switch {
	case err == nil:
		return outcome{status: db.RunCompleted, event: "task_completed", message: "task completed", level: slog.LevelInfo}
	case errors.Is(context.Cause(ctx), rivertype.ErrJobCancelledRemotely):
		return outcome{status: db.RunCancelled, code: taskrunner.CodeTaskCancelled, err: err,
			event: "task_cancelled", message: "task cancelled while running", level: slog.LevelInfo}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && ranPastTimeout(job, took):
		// The job's own deadline passed (not some shorter one inside the
		// worker): River's timeout killed it.
		public := taskrunner.PublicMessage(taskrunner.CodeTaskRuntimeExceeded, nil)
		if timeout := tasktype.TimeoutOf(job); timeout > 0 {
			public = fmt.Sprintf("the task ran longer than its timeout (%s) and was killed", timeout)
		}
		return outcome{status: db.RunKilled, code: taskrunner.CodeTaskRuntimeExceeded,
			err:   &taskrunner.Error{Code: taskrunner.CodeTaskRuntimeExceeded, Message: public, Err: fmt.Errorf("killed after %s: %w", took.Round(time.Millisecond), err)},
			event: "task_killed", message: "task killed: runtime exceeded", level: slog.LevelWarn}
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// The client is stopping: River puts the task back in the queue
		// without using up an attempt.
		return outcome{status: db.RunInterrupted, code: taskrunner.CodeTaskInterrupted, err: err,
			event: "task_interrupted", message: "task interrupted by shutdown; returned to the queue", level: slog.LevelWarn}
	case tasktype.IsNotRetried(err) || errors.As(err, &cancelErr):
		// A failure its worker knows retrying cannot fix (a bad API key).
		return outcome{status: db.RunFailed, code: codeOf(err), err: err, final: true,
			event: "task_failed", message: "task failed; not retried", level: slog.LevelWarn}
	default:
		return outcome{status: db.RunFailed, code: codeOf(err), err: err,
			event: "task_failed", message: "task attempt failed", level: slog.LevelWarn}
	}
}

// ranPastTimeout reports whether an attempt lasted its whole timeout, so a
// deadline error was River's timeout and not a shorter one inside the
// worker. The metadata is read only here, not for every attempt.
func ranPastTimeout(job *rivertype.JobRow, took time.Duration) bool {
	timeout := tasktype.TimeoutOf(job)
	return timeout == 0 || took >= timeout
}

// codeOf is the code a failed attempt is recorded with: its error's, or
// task_failed for an error without one, or with a code that says only that
// taskrunner itself failed (a dependency down, an internal error): the
// attempt is retried like any failure.
func codeOf(err error) taskrunner.Code {
	switch code := taskrunner.ErrorCode(err); code {
	case taskrunner.CodeInternal, taskrunner.CodeDependencyUnavailable:
		return taskrunner.CodeTaskFailed
	default:
		return code
	}
}

// recorder collects what a worker attaches to its run.
type recorder struct {
	started  time.Time // when the middleware began the attempt
	owner    string    // the task's owner, "" for taskrunner's own jobs
	mu       sync.Mutex
	metrics  map[string]float64
	notes    []string
	progress progressState
}

func (r *recorder) snapshot() (map[string]float64, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.metrics, r.notes
}

var _ tasktype.Reporter = (*recorder)(nil)

// Metric attaches a number to the run (a search's latency, its result
// count).
func (r *recorder) Metric(name string, value float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.metrics == nil {
		r.metrics = map[string]float64{}
	}
	r.metrics[name] = value
}

// Note attaches free text to the run.
func (r *recorder) Note(note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, note)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
