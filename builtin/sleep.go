package builtin

import (
	"context"
	"encoding/json"
	"math"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner/tasktype"
)

// maxSleepSeconds bounds a sleep task's own length; its timeout still ends
// it sooner.
const maxSleepSeconds = 24 * 60 * 60

// SleepArgs is the sleep task: it waits, honouring cancel and timeout at once.
type SleepArgs struct {
	tasktype.Idempotency
	Seconds float64 `json:"seconds"`
}

// Kind is the sleep task's type and River job kind.
func (SleepArgs) Kind() string { return "sleep" }

// SleepResult is a sleep task's result.
type SleepResult struct {
	Slept float64 `json:"slept"`
}

// SleepWorker works sleep tasks.
type SleepWorker struct {
	river.WorkerDefaults[SleepArgs]
}

// Work sleeps for the task's seconds, returning as soon as ctx is done. A
// sleep of a second or more reports the whole seconds slept as its
// progress, at the start and then about once a second.
func (w *SleepWorker) Work(ctx context.Context, job *river.Job[SleepArgs]) error {
	start := time.Now()
	timer := time.NewTimer(time.Duration(job.Args.Seconds * float64(time.Second)))
	defer timer.Stop()
	var tick <-chan time.Time
	total := int64(math.Ceil(job.Args.Seconds))
	if job.Args.Seconds >= 1 {
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		tick = ticker.C
		tasktype.ReportProgress(ctx, 0, total, "seconds slept")
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return tasktype.RecordOutput(ctx, SleepResult{Slept: job.Args.Seconds})
		case <-tick:
			tasktype.ReportProgress(ctx, min(int64(time.Since(start)/time.Second), total), total, "seconds slept")
		}
	}
}

// DecodeSleep validates sleep params: seconds, from 0 to a day.
func DecodeSleep(params json.RawMessage) (SleepArgs, error) {
	var p struct {
		Seconds *float64 `json:"seconds"`
	}
	if err := tasktype.DecodeParams(params, &p); err != nil {
		return SleepArgs{}, err
	}
	switch {
	case p.Seconds == nil:
		return SleepArgs{}, tasktype.ParamError("seconds", "is required")
	case *p.Seconds < 0 || math.IsNaN(*p.Seconds):
		return SleepArgs{}, tasktype.ParamError("seconds", "must not be negative")
	case *p.Seconds > maxSleepSeconds:
		return SleepArgs{}, tasktype.ParamError("seconds", "must be at most 86400")
	}
	return SleepArgs{Seconds: *p.Seconds}, nil
}

// Sleep is the sleep task type.
func Sleep() tasktype.Type {
	return tasktype.New(tasktype.Doc{
		Params: []tasktype.Param{
			{Name: "seconds", Type: "number", Required: true, Min: tasktype.Bound(0), Max: tasktype.Bound(maxSleepSeconds), Description: "The result is `{\"slept\": seconds}`."},
		},
		ParamsDoc: "`seconds` (number, 0 to 86400, required)",
		Summary:   "sleeps; a cancel or its timeout ends it at once; result `{\"slept\": ...}`",
		Result:    "`{\"slept\"}`",
		Example:   `{"seconds":1}`,
	}, DecodeSleep, func(tasktype.Services) (river.Worker[SleepArgs], error) { return &SleepWorker{}, nil })
}
