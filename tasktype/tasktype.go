// Package tasktype is how a kind of task is defined: its name, how its
// params are decoded and documented, and the River worker that runs it,
// built from the services it needs. taskrunner's own types (package
// builtin) are defined the same way as a user's.
//
// A type is a value made by New, and a Registry is the explicit list of
// them a process serves: there is no global registry and no init.
//
//	type WordCountArgs struct {
//		tasktype.Idempotency
//		ArtifactID string `json:"artifact_id"`
//	}
//
//	func (WordCountArgs) Kind() string { return "wordcount" }
//
//	var WordCount = tasktype.New(tasktype.Doc{...}, decodeWordCount,
//		func(s tasktype.Services) (river.Worker[WordCountArgs], error) {
//			return &WordCountWorker{artifacts: s.Artifacts}, nil
//		})
package tasktype

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/metrics"
)

// ReservedPrefix starts the kind of every job taskrunner enqueues itself
// (schedule ticks, callback deliveries, retention); no task type's name may
// start with it.
const ReservedPrefix = "taskrunner_"

// Doc is what clients and the generated documents know of a type.
type Doc struct {
	// DefaultMaxRetries applies when a request gives no max_retries.
	DefaultMaxRetries int
	// Params are the params the type takes, as the OpenAPI document's
	// <Name>Params schema shows them.
	Params []Param
	// ParamsDoc and Summary are the type's row in the README's table of
	// task types: its params, and what it does (Markdown, one line each).
	ParamsDoc, Summary string
	// Result is the shape of its result (e.g. `{"msg"}`), for the OpenAPI
	// document's description of a task's result.
	Result string
	// Example is params the type accepts; tests submit it, and the OpenAPI
	// document shows it.
	Example string
	// RunKey, when set, gives the part after "<type>:" of the key its runs
	// are recorded under (search uses a hash of its normalised query). By
	// default it is a hash of the args.
	RunKey func(encodedArgs []byte) string
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

// Bound is a Param's Min or Max.
func Bound(v float64) *float64 { return &v }

// Services are what every taskrunner process builds and a type's worker
// may use. A type needing anything else (a provider, an HTTP client) builds
// it in its worker constructor, or is given it when it is made.
type Services struct {
	Pool      *pgxpool.Pool
	Artifacts *artifact.Service
	Redis     *redis.Client
	Logger    *slog.Logger
	// Metrics is nil where nothing is counted (some tests).
	Metrics *metrics.Metrics
}

// Type is one kind of task clients may submit: make it with New.
type Type struct {
	// Name is the task type in the API and the River job kind: the Kind of
	// its args.
	Name string
	Doc
	decode    func(json.RawMessage) (river.JobArgs, error)
	addWorker func(*river.Workers, Services) error
}

// New is the task type whose args are A: decode validates a request's
// params into A (refusing with ParamError, naming the field), and
// newWorker builds the worker from the services, once per process.
// The worker is a plain River worker; the task's own timeout_seconds is
// applied to it.
func New[A river.JobArgs](doc Doc, decode func(params json.RawMessage) (A, error), newWorker func(Services) (river.Worker[A], error)) Type {
	var zero A
	return Type{
		Name: zero.Kind(),
		Doc:  doc,
		decode: func(params json.RawMessage) (river.JobArgs, error) {
			args, err := decode(params)
			if err != nil {
				return nil, err
			}
			return args, nil
		},
		addWorker: func(workers *river.Workers, s Services) error {
			w, err := newWorker(s)
			if err != nil {
				return fmt.Errorf("task type %s: %w", zero.Kind(), err)
			}
			return river.AddWorkerSafely(workers, river.Worker[A](timed[A]{w}))
		},
	}
}

// Decode validates params and returns the job args to enqueue.
func (t Type) Decode(params json.RawMessage) (river.JobArgs, error) { return t.decode(params) }

// KeyOf is the key the runs of a task of this type with these args are
// recorded under: the type's own RunKey, or a hash of the args.
func (t Type) KeyOf(encodedArgs []byte) string {
	if t.RunKey != nil {
		return t.Name + ":" + t.RunKey(encodedArgs)
	}
	return DefaultRunKey(t.Name, encodedArgs)
}

// DefaultRunKey is the key a run is recorded under without a RunKey: the
// task type, then a hash of its args.
func DefaultRunKey(kind string, encodedArgs []byte) string {
	sum := sha256.Sum256(encodedArgs)
	return kind + ":" + hex.EncodeToString(sum[:16])
}

// Registry is the task types a process serves, by name.
type Registry struct {
	types map[string]Type
	names []string
}

// NewRegistry is the registry of types, or an error naming the first type
// that is unnamed, reserved, incomplete or given twice.
func NewRegistry(types ...Type) (*Registry, error) {
	r := &Registry{types: make(map[string]Type, len(types))}
	for _, t := range types {
		switch _, dup := r.types[t.Name]; {
		case t.Name == "":
			return nil, fmt.Errorf("task type without a name (its args' Kind)")
		case strings.HasPrefix(t.Name, ReservedPrefix):
			return nil, fmt.Errorf("task type %q: the prefix %s is taskrunner's own jobs'", t.Name, ReservedPrefix)
		case t.decode == nil || t.addWorker == nil:
			return nil, fmt.Errorf("task type %q was not made with tasktype.New", t.Name)
		case dup:
			return nil, fmt.Errorf("task type %q is registered twice", t.Name)
		}
		r.types[t.Name] = t
		r.names = append(r.names, t.Name)
	}
	sort.Strings(r.names)
	return r, nil
}

// Lookup is the type named name.
func (r *Registry) Lookup(name string) (Type, bool) {
	t, ok := r.types[name]
	return t, ok
}

// Names are the types' names, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Types are the types, sorted by name.
func (r *Registry) Types() []Type {
	out := make([]Type, len(r.names))
	for i, n := range r.names {
		out[i] = r.types[n]
	}
	return out
}

// KeyOf is the key the runs of a task of kind with these args are recorded
// under; a kind the registry does not know (or a nil registry) gets the
// default key.
func (r *Registry) KeyOf(kind string, encodedArgs []byte) string {
	if r == nil {
		return DefaultRunKey(kind, encodedArgs)
	}
	if t, ok := r.types[kind]; ok {
		return t.KeyOf(encodedArgs)
	}
	return DefaultRunKey(kind, encodedArgs)
}

// AddWorkers adds every type's worker, built from s, to workers.
func (r *Registry) AddWorkers(workers *river.Workers, s Services) error {
	for _, n := range r.names {
		if err := r.types[n].addWorker(workers, s); err != nil {
			return err
		}
	}
	return nil
}
