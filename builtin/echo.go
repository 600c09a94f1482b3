package builtin

import (
	"context"
	"encoding/json"

	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner/tasktype"
)

// EchoArgs is the echo task: it returns its message.
type EchoArgs struct {
	tasktype.Idempotency
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
	river.WorkerDefaults[EchoArgs]
}

// Work records the message as the task's result.
func (w *EchoWorker) Work(ctx context.Context, job *river.Job[EchoArgs]) error {
	return tasktype.RecordOutput(ctx, EchoResult{Msg: job.Args.Msg})
}

// DecodeEcho validates echo params: a msg, which may be empty.
func DecodeEcho(params json.RawMessage) (EchoArgs, error) {
	var p struct {
		Msg *string `json:"msg"`
	}
	if err := tasktype.DecodeParams(params, &p); err != nil {
		return EchoArgs{}, err
	}
	if p.Msg == nil {
		return EchoArgs{}, tasktype.ParamError("msg", "is required")
	}
	return EchoArgs{Msg: *p.Msg}, nil
}

// Echo is the echo task type.
func Echo() tasktype.Type {
	return tasktype.New(tasktype.Doc{
		Params: []tasktype.Param{
			{Name: "msg", Type: "string", Required: true, Description: "The result is `{\"msg\": msg}`."},
		},
		ParamsDoc: "`msg` (string, required)",
		Summary:   "result `{\"msg\": ...}`",
		Result:    "`{\"msg\"}`",
		Example:   `{"msg":"hello"}`,
	}, DecodeEcho, func(tasktype.Services) (river.Worker[EchoArgs], error) { return &EchoWorker{}, nil })
}
