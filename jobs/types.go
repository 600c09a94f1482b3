// Package jobs holds taskrunner's task types, each a River job kind with
// typed args and a worker, the middleware that records every attempt as a
// run, and the construction of the River client that works them.
//
// A task type is one file: its XArgs (snake_case JSON, a stable Kind), its
// XWorker, and a TaskType entry in Types that decodes and validates the
// params a client sends.
package jobs

import (
	"bytes"
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

	"github.com/taskrunner/taskrunner/fetch"
)

// TaskType describes one kind of task clients may submit.
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
}

// Env is what validating params needs to know of the deployment.
type Env struct {
	SearchSources    []string     // SEARCH_SOURCE_ALLOWLIST
	SearchMaxResults int          // SEARCH_MAX_RESULTS
	Fetch            fetch.Config // FETCH_DOMAIN_ALLOWLIST, FETCH_ALLOWED_PORTS, ...
}

// Types lists every task type by name.
var Types = map[string]TaskType{}

func register(t TaskType) { Types[t.Name] = t }

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

// ParamsError says which param is wrong and why.
type ParamsError struct {
	Field   string // e.g. "params.seconds"
	Message string
	// Code is a stable code when more specific than
	// task_rejected_invalid_params (domain_not_allowed).
	Code string
}

func (e *ParamsError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// decodeParams decodes params strictly into v: an object, no unknown fields,
// no trailing data. Errors are *ParamsError naming the field.
func decodeParams(params json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(params)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		trimmed = []byte("{}")
	}
	if trimmed[0] != '{' {
		return &ParamsError{Field: "params", Message: "must be a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return paramsErrorFrom(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &ParamsError{Field: "params", Message: "unexpected data after the object"}
	}
	return nil
}

func paramsErrorFrom(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return &ParamsError{Field: "params." + typeErr.Field, Message: "must be a " + jsonTypeName(typeErr.Type.Kind().String())}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &ParamsError{Field: "params." + strings.Trim(name, `"`), Message: "is not a known param"}
	}
	return &ParamsError{Field: "params", Message: "is not valid: " + err.Error()}
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

// ErrorCoder is an error with a stable public code, recorded on the run.
type ErrorCoder interface {
	error
	ErrorCode() string
}

// CodedError is an error with a stable public code.
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string     { return e.Code + ": " + e.Err.Error() }
func (e *CodedError) Unwrap() error     { return e.Err }
func (e *CodedError) ErrorCode() string { return e.Code }

// Errorf returns a CodedError with a formatted message.
func Errorf(code, format string, args ...any) error {
	return &CodedError{Code: code, Err: fmt.Errorf(format, args...)}
}
