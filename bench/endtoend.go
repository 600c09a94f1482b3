package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

// noopArgs is bare River's job: the same payload as an echo task, worked
// by a worker that does nothing.
type noopArgs struct {
	Msg string `json:"msg"`
}

// Kind is the job kind of the bare River side.
func (noopArgs) Kind() string { return "bench_noop" }

// noopWorker completes every job at once.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

// Work does nothing.
func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// e2eResult is one end-to-end run.
type e2eResult struct {
	jobs       int
	insertTook time.Duration // inserting them all with InsertManyFast
	workTook   time.Duration // from client.Start until all were completed
}

// rate is jobs completed per second of work.
func (r e2eResult) rate() float64 {
	if r.workTook <= 0 {
		return 0
	}
	return float64(r.jobs) / r.workTook.Seconds()
}

// endToEndBare measures River's no-op worker at the bench's fetch settings.
func (e *env) endToEndBare(ctx context.Context, opts *options) (e2eResult, error) {
	client, _, err := e.bareWorkingClient(opts, 0)
	if err != nil {
		return e2eResult{}, err
	}
	params := slices.Repeat([]river.InsertManyParams{{Args: noopArgs{Msg: "hello"}}}, opts.e2eJobs)
	return e.endToEnd(ctx, opts, "bare River no-op worker", client, params)
}

// endToEndTaskrunner measures taskrunner's echo worker with its run
// records: the client jobs.NewClient builds for a worker process, with the
// bench's worker count and fetch settings, working jobs inserted with the
// parameters task.Service gives an echo task.
func (e *env) endToEndTaskrunner(ctx context.Context, opts *options) (e2eResult, error) {
	cfg := e.clientConfig()
	cfg.Work = true
	cfg.Concurrency = opts.workers
	cfg.FetchCooldown = opts.fetchCool
	cfg.FetchPoll = opts.fetchPoll
	client, err := e.taskrunnerClient(cfg)
	if err != nil {
		return e2eResult{}, err
	}
	params, err := e.echoParams(client, opts.e2eJobs)
	if err != nil {
		return e2eResult{}, err
	}
	r, err := e.endToEnd(ctx, opts, "taskrunner echo worker + run records", client, params)
	if err != nil {
		return r, err
	}
	// Every completed attempt must have its run record, or the figure
	// would flatter taskrunner.
	total, completed, err := e.countRuns(ctx)
	if err != nil {
		return r, err
	}
	if total != r.jobs || completed != r.jobs {
		return r, fmt.Errorf("end-to-end taskrunner: %d jobs completed but %d runs recorded (%d completed)", r.jobs, total, completed)
	}
	e.p.linef("end-to-end: run records checked: %d runs, all completed", total)
	return r, nil
}

// endToEndNoRecorder measures taskrunner's echo worker without the run
// recorder middleware, otherwise configured as jobs.NewClient configures
// it, to show what the run records cost (breakdown only).
func (e *env) endToEndNoRecorder(ctx context.Context, opts *options) (e2eResult, error) {
	cfg := e.clientConfig()
	workers, err := jobs.Workers(e.pool, cfg.Types, cfg.Services, cfg.Deps)
	if err != nil {
		return e2eResult{}, err
	}
	client, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{
		Logger:                      e.logger,
		JobTimeout:                  cfg.MaxRuntime,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		CompletedJobRetentionPeriod: cfg.Retention,
		CancelledJobRetentionPeriod: cfg.Retention,
		DiscardedJobRetentionPeriod: cfg.Retention,
		Workers:                     workers,
		Queues:                      map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.workers}},
		FetchCooldown:               opts.fetchCool,
		FetchPollInterval:           opts.fetchPoll,
	})
	if err != nil {
		return e2eResult{}, fmt.Errorf("River client without run recorder: %w", err)
	}
	params, err := e.echoParams(client, opts.e2eJobs)
	if err != nil {
		return e2eResult{}, err
	}
	return e.endToEnd(ctx, opts, "taskrunner echo worker, no RunRecorder", client, params)
}

// echoParams returns n copies of the insert parameters task.Service gives
// an echo task submitted with POST /tasks.
func (e *env) echoParams(client *river.Client[pgx.Tx], n int) ([]river.InsertManyParams, error) {
	svc, err := e.taskService(client, nil, nil)
	if err != nil {
		return nil, err
	}
	p, err := svc.Validate(&task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"hello"}`)})
	if err != nil {
		return nil, fmt.Errorf("echo task parameters: %w", err)
	}
	return slices.Repeat([]river.InsertManyParams{p.RiverParams()}, n), nil
}

// endToEnd empties the tables, inserts params with client (timed apart),
// then starts client and times until every job is completed, counting
// completed rows in river_job every opts.pollEvery. It stops the client
// before returning.
func (e *env) endToEnd(ctx context.Context, opts *options, label string, client *river.Client[pgx.Tx], params []river.InsertManyParams) (e2eResult, error) {
	if err := e.reset(ctx); err != nil {
		return e2eResult{}, err
	}
	r := e2eResult{jobs: len(params)}
	e.p.linef("end-to-end: %s: inserting %d jobs with InsertManyFast ...", label, r.jobs)
	start := time.Now()
	for chunk := range slices.Chunk(params, opts.insertBatch) {
		if _, err := client.InsertManyFast(ctx, chunk); err != nil {
			return r, fmt.Errorf("end-to-end %s: insert jobs: %w", label, err)
		}
	}
	r.insertTook = time.Since(start)
	// Fresh planner statistics, so both sides fetch with the same plans
	// whatever autovacuum happened to do.
	if _, err := e.conn.Exec(ctx, "ANALYZE river_job"); err != nil {
		return r, fmt.Errorf("analyze river_job: %w", err)
	}
	if err := e.checkpoint(ctx); err != nil {
		return r, err
	}
	e.p.linef("end-to-end: %s: inserted %d jobs in %s (%s, not in the table); starting %d workers ...",
		label, r.jobs, r.insertTook.Round(time.Millisecond), formatRate(float64(r.jobs)/r.insertTook.Seconds()), opts.workers)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cpu := readCPU()
	start = time.Now()
	if err := client.Start(runCtx); err != nil {
		return r, fmt.Errorf("end-to-end %s: start client: %w", label, err)
	}
	defer stopClient(client)
	took, err := e.waitCompleted(ctx, opts, "end-to-end", label, r.jobs, start)
	if err != nil {
		return r, err
	}
	r.workTook = took
	e.p.linef("end-to-end: %s: %d jobs completed in %s = %s%s", label, r.jobs, r.workTook.Round(time.Millisecond), formatRate(r.rate()),
		cpuSpent(cpu, r.jobs))
	return r, nil
}

// waitCompleted polls until n jobs are completed and returns the time
// since start when it saw them, with a progress line every second; what
// names the figure in those lines and in errors.
func (e *env) waitCompleted(ctx context.Context, opts *options, what, label string, n int, start time.Time) (time.Duration, error) {
	ticker := time.NewTicker(opts.pollEvery)
	defer ticker.Stop()
	lastLine := start
	for {
		done, err := e.countCompleted(ctx)
		if err != nil {
			return 0, err
		}
		now := time.Now()
		if done >= n {
			return now.Sub(start), nil
		}
		if now.Sub(start) > opts.e2eTimeout {
			return 0, fmt.Errorf("%s %s: only %d of %d jobs completed after %s", what, label, done, n, opts.e2eTimeout)
		}
		if now.Sub(lastLine) >= time.Second {
			e.p.linef("%s: %s: %d of %d completed", what, label, done, n)
			lastLine = now
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-ticker.C:
		}
	}
}

// stopClient stops a working client, giving running jobs 30 seconds, then
// cancelling them.
func stopClient(client *river.Client[pgx.Tx]) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Stop(ctx); err != nil {
		cancelCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.StopAndCancel(cancelCtx)
	}
}

// cpuSpent says what CPU this process and PostgreSQL used since before,
// in all and per job: where a figure's time went, on a machine both share.
func cpuSpent(before cpuUse, jobs int) string {
	now := readCPU()
	if !now.ok || jobs < 1 {
		return ""
	}
	b, pg := now.bench-before.bench, now.postgres-before.postgres
	per := func(d time.Duration) string {
		return fmt.Sprintf("%.0fµs/job", float64(d.Microseconds())/float64(jobs))
	}
	return fmt.Sprintf("; CPU: this process %s (%s), PostgreSQL %s (%s)",
		b.Round(10*time.Millisecond), per(b), pg.Round(10*time.Millisecond), per(pg))
}
