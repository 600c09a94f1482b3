package tasktype

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/storable"
)

// Idempotency is embedded in every task type's args: a task submitted with
// an Idempotency-Key carries it here, and River's unique jobs (by this
// field alone) make a repeated key return the first task.
type Idempotency struct {
	IdempotencyKey string `json:"idempotency_key,omitempty" river:"unique"`
}

// WithIdempotencyKey returns args with its Idempotency set to key; ok is
// false when args do not embed Idempotency.
func WithIdempotencyKey(args river.JobArgs, key string) (_ river.JobArgs, ok bool) {
	v := reflect.New(reflect.TypeOf(args)).Elem()
	v.Set(reflect.ValueOf(args))
	f := v.FieldByName("Idempotency")
	if !f.IsValid() || f.Type() != reflect.TypeFor[Idempotency]() {
		return args, false
	}
	f.Set(reflect.ValueOf(Idempotency{IdempotencyKey: key}))
	return v.Interface().(river.JobArgs), true
}

// TimeoutOf is the task's own timeout_seconds, or 0 when it has none (the
// runtime cap applies).
func TimeoutOf(job *rivertype.JobRow) time.Duration {
	m, ok := MetadataOf(job)
	if !ok || m.TimeoutSeconds <= 0 {
		return 0
	}
	return time.Duration(m.TimeoutSeconds * float64(time.Second))
}

// OwnerOf is the tenant that owns job: its metadata's owner, or
// taskrunner.LocalTenant for a task without one (a server without keys
// stores none); "" for taskrunner's own jobs, whatever their metadata
// says: they are never counted as a tenant's.
func OwnerOf(job *rivertype.JobRow) string {
	if strings.HasPrefix(job.Kind, ReservedPrefix) {
		return ""
	}
	if !bytes.Contains(job.Metadata, []byte(`"owner"`)) {
		return taskrunner.LocalTenant
	}
	m, ok := MetadataOf(job)
	if !ok {
		return ""
	}
	return m.Owner
}

// timed is a type's worker with the task's own timeout applied.
type timed[A river.JobArgs] struct{ river.Worker[A] }

// Timeout is the task's timeout_seconds, else the worker's own (River's
// client-wide JobTimeout, the runtime cap, when that is 0).
func (w timed[A]) Timeout(job *river.Job[A]) time.Duration {
	if d := TimeoutOf(job.JobRow); d > 0 {
		return d
	}
	return w.Worker.Timeout(job)
}

// RecordOutput records v as the task's result (River's RecordOutput) made
// storable: a result may carry text from outside (a provider's titles, a
// page's headers), and River keeps it in jsonb, which refuses a \u0000 or
// a lone surrogate. Every worker records its result through it.
func RecordOutput(ctx context.Context, v any) error {
	out, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return river.RecordOutput(ctx, json.RawMessage(storable.JSON(out)))
}

// A worker fails its task with a *taskrunner.Error to give the failure a
// stable code, recorded on the run. Its Message, when set, is safe to show
// clients: the worker vouches that it names no host, URL, key, address,
// query or internal type. Err is the cause, for the log and operators
// only. Without a Message clients see the code's fixed message. Any other
// error is task_failed.

// NotRetried marks err as a failure no retry can fix (a bad key, a refused
// URL, a 4xx): its attempt is the task's last, and the task ends
// discarded, whatever attempts it had left. (River's JobCancel would end
// it cancelled, which taskrunner keeps for cancels a client or an operator
// asked for.)
func NotRetried(err error) error { return &notRetriedError{err: err} }

type notRetriedError struct{ err error }

func (e *notRetriedError) Error() string { return e.err.Error() }
func (e *notRetriedError) Unwrap() error { return e.err }

// IsNotRetried reports whether err was marked with NotRetried.
func IsNotRetried(err error) bool {
	var nr *notRetriedError
	return errors.As(err, &nr)
}

// Reporter takes what a running attempt reports; the worker machinery puts
// one in the context of every attempt.
type Reporter interface {
	// Progress records done out of total (0 when not known) with a short
	// message.
	Progress(ctx context.Context, done, total int64, message string)
	// Metric attaches a number to the attempt's run.
	Metric(name string, value float64)
	// Note attaches free text to the attempt's run.
	Note(note string)
}

type reporterKey struct{}

// WithReporter is ctx carrying r, for the attempt it runs.
func WithReporter(ctx context.Context, r Reporter) context.Context {
	return context.WithValue(ctx, reporterKey{}, r)
}

func reporter(ctx context.Context) Reporter {
	r, _ := ctx.Value(reporterKey{}).(Reporter)
	return r
}

// ReportProgress records a running task's progress: done out of total (0
// when the total is not known) with a short message. The task view shows
// it and its event stream sends it. Reports are stored a few times a
// second at most, so a worker may call it as often as it likes. Outside a
// worker it does nothing.
func ReportProgress(ctx context.Context, done, total int64, message string) {
	if r := reporter(ctx); r != nil {
		r.Progress(ctx, done, total, message)
	}
}

// RecordMetric attaches a number to the current run (a search's latency,
// its result count). Outside a worker it does nothing.
func RecordMetric(ctx context.Context, name string, value float64) {
	if r := reporter(ctx); r != nil {
		r.Metric(name, value)
	}
}

// AddNote attaches free text to the current run. Outside a worker it does
// nothing.
func AddNote(ctx context.Context, note string) {
	if r := reporter(ctx); r != nil {
		r.Note(note)
	}
}

// AsOwner is ctx acting for the tenant that owns job: what the worker
// reads through the services with it (an artifact by id, say) is that
// tenant's alone, as the tenant's own requests would see it. A worker
// reading anything a client named in its params reads it with AsOwner.
func AsOwner(ctx context.Context, job *rivertype.JobRow) context.Context {
	return taskrunner.WithTenant(ctx, taskrunner.Tenant{Name: OwnerOf(job)})
}
