package jobs

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/callback"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/storable"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Defaults of CallbackDeps.
const (
	// DefaultCallbackTimeout bounds one delivery attempt
	// (CALLBACK_TIMEOUT_SECONDS).
	DefaultCallbackTimeout = 10 * time.Second
	// DefaultCallbackMaxAttempts is how many attempts a delivery gets
	// (CALLBACK_MAX_ATTEMPTS).
	DefaultCallbackMaxAttempts = 12
	// DefaultCallbackRetryBase is the wait before the first retry; each
	// next wait doubles, up to DefaultCallbackRetryCap: with 12 attempts
	// the last comes about 17 hours after the first, and a day and a half
	// at most with the cap reached.
	DefaultCallbackRetryBase = 30 * time.Second
	DefaultCallbackRetryCap  = 8 * time.Hour
)

// CallbackQueue is the River queue of callback deliveries, and with fair
// share each tenant has its own of it (TenantQueue): one tenant's slow or
// hanging receivers hold only its own delivery workers, never another
// tenant's, nor the workers of tasks.
const CallbackQueue = "callbacks"

// CallbackQueueFor is the River queue of the deliveries of tenant's
// callbacks: tenant's own with fair share (a tenant not empty),
// CallbackQueue otherwise.
func CallbackQueueFor(tenant string) string { return TenantQueue(CallbackQueue, tenant) }

// CallbackArgs is one delivery of a task's callback. A database trigger
// inserts it (migration 00007) in the transaction that gives the task its
// final state, into the queue the task's metadata names (CallbackQueue);
// taskrunner never inserts it from Go.
type CallbackArgs struct {
	TaskID     int64     `json:"task_id"`
	Event      string    `json:"event"` // task.completed, task.discarded or task.cancelled
	DeliveryID uuid.UUID `json:"delivery_id"`
}

// Kind is the River job kind the trigger inserts.
func (CallbackArgs) Kind() string { return "taskrunner_callback" }

// CallbackTask is what a callback delivers: the task's view as JSON, and
// where to. Owner is the tenant that owns the task, whose secret signs the
// delivery.
type CallbackTask struct {
	Body  []byte
	URL   string
	Owner string
}

// CallbackDeps are what delivering callbacks needs.
type CallbackDeps struct {
	// Secret is CALLBACK_SECRET, which every tenant's signing secret is
	// derived from. Required.
	Secret []byte
	// Secrets sign each delivery with the secrets of the task's owner;
	// when nil, the worker's own, from Secret and its database with their
	// defaults. A process shares one with its API, so that a rotation
	// there takes effect here at once.
	Secrets *CallbackSecrets
	// Poster sends the requests: a fetch.Fetcher under the CALLBACK_*
	// settings, following no redirect. Required.
	Poster *fetch.Fetcher
	// Task reads the task a delivery is for; db.ErrNotFound when it is
	// gone. Required.
	Task func(ctx context.Context, id int64) (CallbackTask, error)
	// Timeout bounds one attempt; DefaultCallbackTimeout when 0.
	Timeout time.Duration
	// MaxAttempts is how many attempts a delivery gets;
	// DefaultCallbackMaxAttempts when 0.
	MaxAttempts int
	// RetryBase and RetryCap shape the backoff between attempts;
	// DefaultCallbackRetryBase and DefaultCallbackRetryCap when 0.
	RetryBase, RetryCap time.Duration
	// Logger gets callback_delivered and callback_failed; nil logs nothing.
	Logger *slog.Logger
}

// CallbackWorker delivers callbacks.
type CallbackWorker struct {
	river.WorkerDefaults[CallbackArgs]
	pool *pgxpool.Pool
	deps *CallbackDeps
	// hosts makes a tenant's deliveries to a receiver host that timed out
	// or could not be reached wait a while.
	hosts *hostBackoff
}

func newCallbackWorker(pool *pgxpool.Pool, d *CallbackDeps) *CallbackWorker {
	if d == nil {
		return &CallbackWorker{pool: pool}
	}
	c := *d
	c.Timeout = cmp.Or(c.Timeout, DefaultCallbackTimeout)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultCallbackMaxAttempts)
	c.RetryBase = cmp.Or(c.RetryBase, DefaultCallbackRetryBase)
	c.RetryCap = cmp.Or(c.RetryCap, DefaultCallbackRetryCap)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	if c.Secrets == nil && pool != nil && len(c.Secret) > 0 {
		// Only a missing field fails, and neither is missing here.
		c.Secrets, _ = NewCallbackSecrets(CallbackSecretsConfig{Master: c.Secret, DB: pool})
	}
	return &CallbackWorker{pool: pool, deps: &c, hosts: newHostBackoff()}
}

// Timeout is the attempt's bound plus a margin for reading the task and
// recording the attempt.
func (w *CallbackWorker) Timeout(*river.Job[CallbackArgs]) time.Duration {
	if w.deps == nil {
		return 0
	}
	return w.deps.Timeout + 10*time.Second
}

// NextRetry doubles the wait after each failed attempt, from RetryBase up
// to RetryCap, with a tenth of jitter so that a receiver that comes back
// is not hit by every delivery at once.
func (w *CallbackWorker) NextRetry(job *river.Job[CallbackArgs]) time.Time {
	if w.deps == nil {
		return time.Time{} // River's own policy
	}
	d := w.deps.RetryCap
	if n := job.Attempt - 1; n < 40 {
		d = min(w.deps.RetryBase<<n, w.deps.RetryCap)
	}
	d += time.Duration(rand.Int64N(int64(d)/10 + 1))
	return time.Now().Add(d)
}

// Work makes one delivery attempt and records it. A failure is retried
// until MaxAttempts; then the delivery gives up (the job ends discarded).
func (w *CallbackWorker) Work(ctx context.Context, job *river.Job[CallbackArgs]) error {
	if w.deps == nil || w.deps.Secrets == nil {
		// Another process, configured with CALLBACK_SECRET, may deliver it.
		return errors.New("callbacks are not configured in this worker (CALLBACK_SECRET)")
	}
	a := job.Args
	rec := db.CallbackAttempt{TaskID: a.TaskID, DeliveryID: a.DeliveryID, Event: a.Event, Attempt: job.Attempt}
	t, err := w.deps.Task(ctx, a.TaskID)
	if errors.Is(err, db.ErrNotFound) {
		msg := "the task no longer exists"
		rec.Error, rec.GaveUp = &msg, true
		return w.finish(ctx, rec, tasktype.NotRetried(errors.New(msg)))
	}
	if err != nil {
		return fmt.Errorf("read task %d for its callback: %w", a.TaskID, err)
	}
	owner := cmp.Or(t.Owner, taskrunner.LocalTenant)
	secrets, err := w.deps.Secrets.Signing(ctx, owner)
	if err != nil {
		return fmt.Errorf("read the signing secret of task %d's callback: %w", a.TaskID, err)
	}
	// Per tenant: another tenant's deliveries that hang at a host, on
	// some path of its choosing, must not hold this tenant's back.
	host := owner + " " + receiverHost(t.URL)
	if d := w.hosts.wait(host, time.Now()); d > 0 {
		// Another delivery of the tenant to this host timed out or found
		// no one: wait without using an attempt or holding a worker.
		return river.JobSnooze(d + time.Duration(rand.Int64N(int64(d)/10+1)))
	}
	started := time.Now()
	status, deliverErr := w.deliver(ctx, t, a, secrets)
	w.hosts.done(host, ctx.Err() == nil && unreachable(deliverErr), time.Now())
	rec.LatencyMS = ms(time.Since(started))
	if status != 0 {
		rec.StatusCode = &status
	}
	if deliverErr == nil {
		rec.Delivered = true
		return w.finish(ctx, rec, nil)
	}
	msg := storable.Text(publicDeliveryError(deliverErr))
	rec.Error = &msg
	// The message alone goes on: a timeout's context.DeadlineExceeded
	// would read as the job's own timeout, which a retry ignores.
	deliverErr = errors.New("callback not delivered: " + msg)
	if job.Attempt >= w.deps.MaxAttempts {
		rec.GaveUp = true
		deliverErr = tasktype.NotRetried(deliverErr)
	}
	return w.finish(ctx, rec, deliverErr)
}

// finish records the attempt and returns the attempt's outcome. A record
// that cannot be written fails the attempt, so it is tried again: a
// receiver may get a delivery twice, never none.
func (w *CallbackWorker) finish(ctx context.Context, rec db.CallbackAttempt, outcome error) error {
	if err := db.InsertCallbackAttempt(ctx, w.pool, rec); err != nil {
		return err
	}
	attrs := []slog.Attr{slog.Int64("task_id", rec.TaskID), slog.String("delivery_id", rec.DeliveryID.String()),
		slog.Int("attempt", rec.Attempt), slog.Float64("latency_ms", rec.LatencyMS)}
	if rec.StatusCode != nil {
		attrs = append(attrs, slog.Int("status_code", *rec.StatusCode))
	}
	if outcome == nil {
		w.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "callback delivered", append(attrs, slog.String("event", "callback_delivered"))...)
		return nil
	}
	attrs = append(attrs, slog.String("event", "callback_failed"), slog.String("error", *rec.Error), slog.Bool("gave_up", rec.GaveUp))
	w.deps.Logger.LogAttrs(ctx, slog.LevelWarn, "callback attempt failed", attrs...)
	return outcome
}

// deliver POSTs the task's view, signed, and returns the status code (0
// when no answer came) and an error for anything but a 2xx.
func (w *CallbackWorker) deliver(ctx context.Context, t CallbackTask, a CallbackArgs, secrets [][]byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.deps.Timeout)
	defer cancel()
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(callback.HeaderEvent, a.Event)
	h.Set(callback.HeaderDelivery, a.DeliveryID.String())
	h.Set(callback.HeaderTenant, cmp.Or(t.Owner, taskrunner.LocalTenant))
	h.Set(callback.HeaderSignature, callback.Sign(secrets[0], time.Now(), t.Body, secrets[1:]...))
	resp, err := w.deps.Poster.Post(ctx, t.URL, h, t.Body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.OK():
		return resp.Status, nil
	case resp.Status >= 300 && resp.Status < 400:
		return resp.Status, fmt.Errorf("the receiver answered %d; redirects are not followed", resp.Status)
	}
	return resp.Status, fmt.Errorf("the receiver answered %d", resp.Status)
}

// receiverHost is the host (and port) a callback URL names, which
// hostBackoff keys on, with the tenant.
func receiverHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Host
}

// unreachable reports whether a delivery failed for want of an answer:
// it timed out, or the host could not be reached.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	return fetch.Retryable(taskrunner.ErrorCode(err))
}

// publicDeliveryError is what the task's owner is shown of a failed
// attempt: the fetch package's public message (it names no address), or
// the status line deliver wrote.
func publicDeliveryError(err error) string {
	var e *taskrunner.Error
	if errors.As(err, &e) && e.Message != "" {
		return string(e.Code) + ": " + e.Message
	}
	return err.Error()
}

// inlineCompleter completes a task that asked for a callback in a
// transaction of its own as soon as its work succeeds, rather than
// leaving it to River's batch completer, which writes a quiet client's
// completions every 250 ms: the final state's transaction is the one that
// enqueues the delivery (migration 00007), so the wait would add to every
// callback. It runs outside the run recorder, so the run record is
// durable first, as River's own completion has it. A failed completion is
// logged and left to River, which completes the task as usual. Tasks with
// large args are completed the same way (InlineCompleteArgsBytes); other
// tasks, and failures, take River's path.
type inlineCompleter struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	river.MiddlewareDefaults
}

var _ rivertype.WorkerMiddleware = (*inlineCompleter)(nil)

// anyArgs stands for a task's args where their type does not matter.
type anyArgs struct{}

func (anyArgs) Kind() string { return "" }

// InlineCompleteArgsBytes is the size of a task's args from which it is
// completed in its worker's own transaction, as a task with a callback
// is, rather than by River's batch completer. River keeps each completion
// it has not yet written (the result among it) and reads each batch of
// up to 5,000 jobs back whole once written, so a flood of tasks with
// large args and results (an echo's result is its args) would hold them
// by the thousand in the worker's memory while the database falls behind.
// Completed in its own worker, such a task holds its memory only until
// its own completion commits, and that worker waits until it has.
const InlineCompleteArgsBytes = 16 << 10

// Work completes the job at once when its work succeeded and it has a
// callback_url or args of InlineCompleteArgsBytes or more.
func (m *inlineCompleter) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	if err := doInner(ctx); err != nil || (CallbackURL(job.Metadata) == "" && len(job.EncodedArgs) < InlineCompleteArgsBytes) {
		return err
	}
	m.complete(ctx, job)
	return nil
}

// complete marks job completed in a transaction of its own, or logs why
// not (River's completer then does). Apart from Work, so the frame Work
// holds while the job runs stays small (see RunRecorder.Work).
//
//go:noinline
func (m *inlineCompleter) complete(ctx context.Context, job *rivertype.JobRow) {
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, &river.Job[anyArgs]{JobRow: job})
		return err
	})
	if err != nil {
		m.logger.LogAttrs(ctx, slog.LevelWarn, "task not completed at once; River completes it",
			slog.String("event", "task_complete_deferred"), slog.Int64("task_id", job.ID), slog.String("error", err.Error()))
	}
}

// CallbackURL is the callback_url a task's metadata asked for, "" for
// none.
func CallbackURL(metadata []byte) string {
	if !bytes.Contains(metadata, []byte(`"callback_url"`)) {
		return "" // most tasks: no decoding
	}
	var m tasktype.Metadata
	if json.Unmarshal(metadata, &m) != nil {
		return ""
	}
	return m.CallbackURL
}
