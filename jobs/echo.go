package jobs

import (
	"context"
	"encoding/json"

	"github.com/riverqueue/river"
)

// EchoArgs is the echo task: it returns its message.
type EchoArgs struct {
	Idempotency
	Msg string `json:"msg"`
}

// Kind is the echo task's type and River job kind.
func (EchoArgs) Kind() string { return "echo" }

// EchoResult is an echo task's result.
type EchoResult struct {
	Msg string `json:"msg"`
}

// EchoWorker works echo tasks.
type EchoWorker struct {
	taskWorker[EchoArgs]
}

// Work records the message as the task's result.
func (w *EchoWorker) Work(ctx context.Context, job *river.Job[EchoArgs]) error {
	return recordOutput(ctx, EchoResult{Msg: job.Args.Msg})
}

func init() {
	register(TaskType{
		Name: EchoArgs{}.Kind(),
		Params: []Param{
			{Name: "msg", Type: "string", Required: true, Description: "The result is `{\"msg\": msg}`."},
		},
		ParamsDoc: "`msg` (string, required)",
		Doc:       "result `{\"msg\": ...}`",
		Result:    "`{\"msg\"}`",
		Example:   `{"msg":"hello"}`,
		addWorker: func(workers *river.Workers, _ Deps) { river.AddWorker(workers, &EchoWorker{}) },
		Decode: func(params json.RawMessage, _ Env) (river.JobArgs, error) {
			if msg, ok := plainStringParam(params, "msg"); ok {
				return EchoArgs{Msg: msg}, nil // {"msg": "hello"}, without a decoder
			}
			var p struct {
				Msg *string `json:"msg"`
			}
			if err := decodeParams(params, &p); err != nil {
				return nil, err
			}
			if p.Msg == nil {
				return nil, paramError("msg", "is required")
			}
			return EchoArgs{Msg: *p.Msg}, nil
		},
	})
}
