package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/internal/quickjson"
	"github.com/taskrunner/taskrunner/storable"
)

// TaskType describes one kind of task clients may submit. Each is
// registered from its own file (doc.go says what that file holds).
type TaskType struct {
	// Name is the task type in the API and the River job kind.
	Name string
	// DefaultMaxRetries applies when a request gives no max_retries.
	DefaultMaxRetries int
	// Decode validates params against env and returns the job args to
	// enqueue.
	Decode func(params json.RawMessage, env Env) (river.JobArgs, error)
	// RunKey, when set, gives the part after "<type>:" of the key its runs
	// are recorded under (search uses a hash of its normalised query). By
	// default it is a hash of the args.
	RunKey func(encodedArgs []byte) string

	// Params are the params Decode takes, as the OpenAPI document's
	// <Name>Params schema shows them.
	Params []Param
	// ParamsDoc and Doc are the type's row in the README's table of task
	// types: its params, and what it does (Markdown, one line each).
	ParamsDoc, Doc string
	// Result is the shape of its result, for the OpenAPI document's
	// description of a task's result (e.g. `{"msg"}`).
	Result string
	// Example is params Decode accepts in a deployment that allows any
	// fetch domain and the search source brave; tests submit it.
	Example string

	// addWorker adds the type's worker, built from deps, to River's workers.
	addWorker func(workers *river.Workers, deps Deps)
}

// Param is one param of a task type, for its OpenAPI schema.
type Param struct {
	Name string
	// Type is its JSON Schema type: string, number, integer, boolean, or
	// array (of strings).
	Type     string
	Required bool
	// Min and Max bound a number or an integer; nil for no bound.
	Min, Max *float64
	// MaxLength bounds a string, in characters; 0 for no bound.
	MaxLength int
	// Description is what a client needs to know (Markdown, one line).
	Description string
}

// decoder makes a typed decode (DecodeFetch) a TaskType's Decode.
func decoder[A river.JobArgs](decode func(json.RawMessage, Env) (A, error)) func(json.RawMessage, Env) (river.JobArgs, error) {
	return func(params json.RawMessage, env Env) (river.JobArgs, error) {
		args, err := decode(params, env)
		if err != nil {
			return nil, err
		}
		return args, nil
	}
}

// bound is a Param's Min or Max.
func bound(v float64) *float64 { return &v }

// Env is what validating params needs to know of the deployment.
type Env struct {
	SearchSources    []string     // SEARCH_SOURCE_ALLOWLIST
	SearchMaxResults int          // SEARCH_MAX_RESULTS
	Fetch            fetch.Config // FETCH_DOMAIN_ALLOWLIST, FETCH_ALLOWED_PORTS, ...
}

// Types lists every task type clients may submit, by name. Jobs taskrunner
// enqueues itself (IsInternal: taskrunner_retention, taskrunner_run_sweep,
// ...) are not among them.
var Types = map[string]TaskType{}

// register adds t to Types; each task type's file calls it from init.
func register(t TaskType) {
	if _, dup := Types[t.Name]; dup || t.Name == "" || IsInternal(t.Name) || t.Decode == nil || t.addWorker == nil {
		panic(fmt.Sprintf("jobs: task type %q is registered twice, is named as taskrunner's own jobs are, or lacks a Name, Decode or addWorker", t.Name))
	}
	Types[t.Name] = t
}

// TypeNames returns the task type names, sorted.
func TypeNames() []string {
	names := make([]string, 0, len(Types))
	for n := range Types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Idempotency is embedded in every task's args: a task submitted with an
// Idempotency-Key carries it here, and River's unique jobs (by this field
// alone) make a repeated key return the first task.
type Idempotency struct {
	IdempotencyKey string `json:"idempotency_key,omitempty" river:"unique"`
}

// WithIdempotencyKey returns args with its Idempotency set to key. Every
// task type's args embed Idempotency (a test checks it).
func WithIdempotencyKey(args river.JobArgs, key string) (river.JobArgs, bool) {
	v := reflect.New(reflect.TypeOf(args)).Elem()
	v.Set(reflect.ValueOf(args))
	f := v.FieldByName("Idempotency")
	if !f.IsValid() || f.Type() != reflect.TypeFor[Idempotency]() {
		return args, false
	}
	f.Set(reflect.ValueOf(Idempotency{IdempotencyKey: key}))
	return v.Interface().(river.JobArgs), true
}

// paramError is the refusal of a param: task_rejected_invalid_params, its
// Field the param's name within params ("" for params as a whole) and its
// Message what is wrong with it. The task service names the field in full
// (params.seconds, or seconds where the params are the request body) and
// starts the message with it.
func paramError(field, message string) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: field, Message: message}
}

// decodeParams decodes params strictly into v: an object, no unknown fields,
// no trailing data. Errors are paramError's, naming the field.
func decodeParams(params json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(params)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		trimmed = []byte("{}")
	}
	if trimmed[0] != '{' {
		return paramError("", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return paramsErrorFrom(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return paramError("", "unexpected data after the object")
	}
	return nil
}

// plainStringParam is the value of params when they are an object of
// this one member, name, holding a string without escapes: what
// decodeParams would decode into a struct of that one field. ok is false
// for any other params, which decodeParams decodes (or refuses).
func plainStringParam(params json.RawMessage, name string) (value string, ok bool) {
	b, ok := quickjson.ObjectKey(quickjson.SkipSpace(params), name)
	if !ok {
		return "", false
	}
	v, b, ok := quickjson.PlainString(b)
	if b = quickjson.SkipSpace(b); !ok || len(b) == 0 || b[0] != '}' || len(quickjson.SkipSpace(b[1:])) != 0 {
		return "", false
	}
	return string(v), true
}

func paramsErrorFrom(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return paramError(typeErr.Field, "must be a "+jsonTypeName(typeErr.Type.Kind().String()))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return paramError(strings.Trim(name, `"`), "is not a known param")
	}
	return paramError("", "is not valid: "+err.Error())
}

func jsonTypeName(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"), strings.HasPrefix(goKind, "float"):
		return "number"
	case goKind == "string":
		return "string"
	case goKind == "bool":
		return "boolean"
	case goKind == "slice":
		return "list"
	default:
		return "JSON " + goKind
	}
}

// Metadata is what taskrunner stores in a job's River metadata.
type Metadata struct {
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// Owner is the tenant that submitted the task; empty for jobs
	// taskrunner enqueues itself, which belong to taskrunner.LocalTenant.
	Owner string `json:"owner,omitempty"`
	// CallbackURL is where the task's view is POSTed when it reaches a
	// final state, in the canonical form checked at submit; empty for
	// none. A database trigger reads it (migration 00007).
	CallbackURL string `json:"callback_url,omitempty"`
	// CallbackQueue is the River queue the callback's deliveries go to
	// (CallbackQueueFor); the database trigger reads it (migration 00014).
	// Tasks enqueued before it have none: theirs go to 'default'.
	CallbackQueue string `json:"callback_queue,omitempty"`
	// Schedule is the name of the schedule (of the task's owner) that
	// enqueued the task, and ScheduleTick the tick it was enqueued for;
	// empty and nil for a task a client submitted. A unique index over
	// them keeps a tick from enqueueing two tasks (migration 00008).
	Schedule     string     `json:"schedule,omitempty"`
	ScheduleTick *time.Time `json:"schedule_tick,omitempty"`
}

// OwnerOf is the tenant that owns job: its metadata's owner; for a task
// without one, taskrunner.LocalTenant (a server without keys stores none);
// "" for taskrunner's own jobs (IsInternal), whatever their metadata says:
// they are never counted as a tenant's.
func OwnerOf(job *rivertype.JobRow) string {
	if IsInternal(job.Kind) {
		return ""
	}
	if !bytes.Contains(job.Metadata, []byte(`"owner"`)) {
		if _, ok := Types[job.Kind]; ok {
			return taskrunner.LocalTenant
		}
		return "" // taskrunner's own jobs: no decoding
	}
	var m struct {
		Owner string `json:"owner"`
	}
	if json.Unmarshal(job.Metadata, &m) != nil {
		return ""
	}
	return m.Owner
}

// timeoutOf is the job's own timeout, or 0 to use the client's (the cap).
func timeoutOf(job *rivertype.JobRow) time.Duration {
	var m Metadata
	if len(job.Metadata) == 0 || json.Unmarshal(job.Metadata, &m) != nil || m.TimeoutSeconds <= 0 {
		return 0
	}
	return time.Duration(m.TimeoutSeconds * float64(time.Second))
}

// taskWorker gives every worker the task's own timeout. Workers embed it in
// place of river.WorkerDefaults.
type taskWorker[T river.JobArgs] struct {
	river.WorkerDefaults[T]
}

// Timeout returns the task's timeout_seconds; River applies its client-wide
// JobTimeout (the runtime cap) when there is none.
func (taskWorker[T]) Timeout(job *river.Job[T]) time.Duration { return timeoutOf(job.JobRow) }

// RunKey is the default scope-prefixed key a run is recorded under: the
// task type, then a hash of its args.
func RunKey(kind string, encodedArgs []byte) string {
	sum := sha256.Sum256(encodedArgs)
	return kind + ":" + hex.EncodeToString(sum[:16])
}

// KeyOf is the key the runs of a task with this type and args are recorded
// under: its type's own RunKey, or the default.
func KeyOf(kind string, encodedArgs []byte) string {
	if t, ok := Types[kind]; ok && t.RunKey != nil {
		return kind + ":" + t.RunKey(encodedArgs)
	}
	return RunKey(kind, encodedArgs)
}

// recordOutput records v as the task's result (River's RecordOutput) made
// storable: a result carries text from outside (a provider's titles, a
// page's headers), and River keeps it in jsonb, which refuses a \u0000 or
// a lone surrogate. Every worker records its result through it.
func recordOutput(ctx context.Context, v any) error {
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
// only. Without a Message clients see the code's fixed message
// (PublicMessage). Any other error is task_failed.

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

// publicMessages are what clients are shown for codes whose errors carry
// no public message of their own.
var publicMessages = map[string]string{
	taskrunner.CodeTaskFailed:          "the task failed; the server log has the details",
	taskrunner.CodeTaskCancelled:       "the task was cancelled",
	taskrunner.CodeTaskRuntimeExceeded: "the task ran longer than its timeout and was killed",
	taskrunner.CodeTaskInterrupted:     "the worker stopped during the attempt; the task went back to the queue",
	taskrunner.CodeWorkerLost:          "the worker running the attempt stopped without finishing it",
	taskrunner.CodeFetchHTTPError:      "the server answered with an error status",
	taskrunner.CodeSearchFailed:        "every search source failed",

	taskrunner.CodeInvalidURL:                "the URL cannot be fetched",
	taskrunner.CodeDomainNotAllowed:          "the URL's domain is not allowed by FETCH_DOMAIN_ALLOWLIST",
	taskrunner.CodePortNotAllowed:            "the URL's port is not allowed (FETCH_ALLOWED_PORTS)",
	taskrunner.CodeAddressNotAllowed:         "the URL's host does not resolve, or is or resolves to an address that may not be fetched",
	taskrunner.CodeTooManyRedirects:          "the page redirected too many times",
	taskrunner.CodeArtifactSizeExceeded:      "the body is larger than TASK_MAX_ARTIFACT_MB",
	taskrunner.CodeFetchTimeout:              "the page did not answer in time",
	taskrunner.CodeFetchFailed:               "the page could not be fetched: the name could not be resolved now, or the connection failed",
	taskrunner.CodeArtifactInvalid:           "the result could not be stored as an artifact",
	taskrunner.CodeSearchProviderUnavailable: "search is not available",
}

// PublicMessage is what clients are shown of a failure with code: err's
// own public message (its *taskrunner.Error's Message), else the code's
// fixed message. Never the error's text, which may name hosts, keys,
// queries or types.
func PublicMessage(code string, err error) string {
	var e *taskrunner.Error
	if errors.As(err, &e) && e.Code == code && e.Message != "" {
		return e.Message
	}
	if m, ok := publicMessages[code]; ok {
		return m
	}
	return publicMessages[taskrunner.CodeTaskFailed]
}
