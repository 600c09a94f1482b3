package jobs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
)

// finishArgs is a test task: it records an output and fails when Fail.
type finishArgs struct {
	Fail bool   `json:"fail"`
	Pad  string `json:"pad,omitempty"`
}

func (finishArgs) Kind() string { return "test_finish" }

type finishWorker struct {
	river.WorkerDefaults[finishArgs]
}

func (finishWorker) Work(ctx context.Context, job *river.Job[finishArgs]) error {
	if job.Args.Fail {
		return river.JobCancel(errors.New("told to fail"))
	}
	return river.RecordOutput(ctx, "done")
}

// seenState is what the probe read of a task once its work had returned,
// before River's own completion could run.
type seenState struct {
	id        int64
	state     string
	output    string // metadata's output, "" for none
	callbacks int    // taskrunner_callback jobs of the task
}

// stateProbe reads the task's row right after the inner middleware and
// work return: River's completer only runs after the whole chain has.
type stateProbe struct {
	river.MiddlewareDefaults
	pool *pgxpool.Pool
	seen chan seenState
}

func (p *stateProbe) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	err := doInner(ctx)
	s := seenState{id: job.ID}
	if qerr := p.pool.QueryRow(ctx, `
		SELECT state::text, coalesce((metadata->'output')::text, ''),
		       (SELECT count(*) FROM river_job c WHERE c.kind = 'taskrunner_callback' AND (c.args->>'task_id')::bigint = j.id)
		FROM river_job j WHERE id = $1`, job.ID).Scan(&s.state, &s.output, &s.callbacks); qerr != nil {
		s.state = "error: " + qerr.Error()
	}
	p.seen <- s
	return err
}

// A task that asked for a callback is completed, output and all, in the
// worker as soon as its work succeeds: its final state, and so its
// callback's delivery job, are committed before River's batch completer
// would get to it. So is a task whose args reach InlineCompleteArgsBytes,
// so that River's completer never holds thousands of large ones. A task
// without a callback and with small args, or whose work failed, is left
// to River.
func TestCallbackTaskCompletedAtOnce(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	logger, logs := testenv.Logger(t)
	probe := &stateProbe{pool: tdb.Pool, seen: make(chan seenState, 5)}
	workers := river.NewWorkers()
	river.AddWorker(workers, &finishWorker{})
	client, err := river.NewClient(riverpgxv5.New(tdb.Pool), &river.Config{
		Workers:    workers,
		Queues:     map[string]river.QueueConfig{"finish": {MaxWorkers: 3}},
		Middleware: []rivertype.Middleware{probe, &inlineCompleter{pool: tdb.Pool, logger: logger}},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	insert := func(args finishArgs, metadata string) int64 {
		res, err := client.Insert(ctx, args, &river.InsertOpts{Queue: "finish", Metadata: []byte(metadata)})
		require.NoError(t, err)
		return res.Job.ID
	}
	withCallback := insert(finishArgs{}, `{"callback_url":"https://example.com/hook"}`)
	without := insert(finishArgs{}, `{"owner":"alice"}`)
	failed := insert(finishArgs{Fail: true}, `{"callback_url":"https://example.com/hook"}`)
	large := insert(finishArgs{Pad: strings.Repeat("x", InlineCompleteArgsBytes)}, `{"owner":"alice"}`)
	half := insert(finishArgs{Pad: strings.Repeat("x", InlineCompleteArgsBytes/2)}, `{"owner":"alice"}`)

	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() {
		stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		require.NoError(t, client.Stop(stopCtx))
	})
	seen := map[int64]seenState{}
	for range 5 {
		select {
		case s := <-probe.seen:
			seen[s.id] = s
		case <-ctx.Done():
			t.Fatalf("only %d of 5 tasks worked: %v", len(seen), seen)
		}
	}
	require.Equal(t, seenState{id: withCallback, state: "completed", output: `"done"`, callbacks: 1}, seen[withCallback],
		"completed with its output and its callback enqueued before River's completion")
	require.Equal(t, seenState{id: without, state: "running"}, seen[without], "no callback: left to River")
	require.Equal(t, seenState{id: failed, state: "running"}, seen[failed], "failed work: left to River")
	require.Equal(t, seenState{id: large, state: "completed", output: `"done"`}, seen[large], "large args: completed with its output at once")
	require.Equal(t, seenState{id: half, state: "running"}, seen[half], "args of half the bound: left to River")
	require.Empty(t, logs.Events("task_complete_deferred"))
}
