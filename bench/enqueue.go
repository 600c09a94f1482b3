package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/taskrunner/taskrunner/app"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
	"github.com/taskrunner/taskrunner/tasktype"
)

// echoBody is the POST /tasks body of the single-enqueue figure.
const echoBody = `{"type":"echo","params":{"msg":"hello"}}`

// enqueueBare measures River's client.Insert of a no-op job on an
// insert-only client, from opts.clients goroutines.
func (e *env) enqueueBare(ctx context.Context, opts *options) (loadResult, error) {
	client, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: e.logger})
	if err != nil {
		return loadResult{}, fmt.Errorf("bare River insert-only client: %w", err)
	}
	return e.enqueue(ctx, opts, "bare River client.Insert", 1, func(ctx context.Context) error {
		if _, err := client.Insert(ctx, noopArgs{Msg: "hello"}, nil); err != nil {
			return fmt.Errorf("bare River insert: %w", err)
		}
		return nil
	})
}

// enqueueHTTP measures POST /tasks of an echo task against the real API on
// a loopback port, from opts.clients HTTP clients.
func (e *env) enqueueHTTP(ctx context.Context, opts *options) (loadResult, error) {
	return e.enqueueThroughAPI(ctx, opts, "/tasks", []byte(echoBody), 1, 0)
}

// enqueueHTTPAlone measures POST /tasks as enqueueHTTP does, with every
// request's task inserted on its own (CoalesceInserts -1; breakdown
// only).
func (e *env) enqueueHTTPAlone(ctx context.Context, opts *options) (loadResult, error) {
	return e.enqueueThroughAPI(ctx, opts, "/tasks", []byte(echoBody), 1, -1)
}

// enqueueThroughAPI measures POSTs of body to path on the real API on a
// loopback port, each enqueueing perCall tasks, from opts.clients HTTP
// clients (a poster's keep-alive connections); coalesce is the task
// service's CoalesceInserts.
func (e *env) enqueueThroughAPI(ctx context.Context, opts *options, path string, body []byte, perCall, coalesce int) (loadResult, error) {
	svc, err := e.insertOnlyService(coalesce)
	if err != nil {
		return loadResult{}, err
	}
	addr, stop, err := e.serveAPI(svc)
	if err != nil {
		return loadResult{}, err
	}
	defer stop()
	p := newPoster(addr, path, body, http.StatusAccepted, opts.clients)
	defer p.close()
	return e.enqueue(ctx, opts, "taskrunner "+p.what, perCall, p.post)
}

// enqueueBatchBare measures River's client.InsertMany of opts.batchSize
// no-op jobs per call on an insert-only client, from opts.clients
// goroutines.
func (e *env) enqueueBatchBare(ctx context.Context, opts *options) (loadResult, error) {
	client, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: e.logger})
	if err != nil {
		return loadResult{}, fmt.Errorf("bare River insert-only client: %w", err)
	}
	params := slices.Repeat([]river.InsertManyParams{{Args: noopArgs{Msg: "hello"}}}, opts.batchSize)
	return e.enqueue(ctx, opts, "bare River client.InsertMany", opts.batchSize, func(ctx context.Context) error {
		res, err := client.InsertMany(ctx, params)
		if err != nil {
			return fmt.Errorf("bare River InsertMany: %w", err)
		}
		if len(res) != len(params) {
			return fmt.Errorf("bare River InsertMany: %d jobs inserted, want %d", len(res), len(params))
		}
		return nil
	})
}

// enqueueBatchHTTP measures POST /tasks/batch of opts.batchSize echo tasks
// against the real API on a loopback port (MAX_BATCH_SIZE at least
// opts.batchSize), from opts.clients HTTP clients.
func (e *env) enqueueBatchHTTP(ctx context.Context, opts *options) (loadResult, error) {
	body, err := batchBody(opts.batchSize)
	if err != nil {
		return loadResult{}, err
	}
	return e.enqueueThroughAPI(ctx, opts, "/tasks/batch", body, opts.batchSize, 0)
}

// batchBody is the POST /tasks/batch body of n echo tasks.
func batchBody(n int) ([]byte, error) {
	b, err := json.Marshal(struct {
		Tasks []json.RawMessage `json:"tasks"`
	}{slices.Repeat([]json.RawMessage{json.RawMessage(echoBody)}, n)})
	if err != nil {
		return nil, fmt.Errorf("batch body: %w", err)
	}
	return b, nil
}

// loopbackClient returns an HTTP client for n concurrent clients of the
// bench's API, and the function that closes its idle connections. It
// keeps one idle connection per client: the default of two per host would
// make most requests dial a new connection.
func loopbackClient(n int) (*http.Client, func()) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = n
	transport.MaxIdleConnsPerHost = n
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}, transport.CloseIdleConnections
}

// postJSON posts body to url as JSON and returns the response body,
// failing unless the status is want; what names the request in errors.
func postJSON(ctx context.Context, client *http.Client, what, url string, body []byte, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: read response: %w", what, err)
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s: status %d: %s", what, resp.StatusCode, bytes.TrimSpace(answer))
	}
	return answer, nil
}

// enqueueService measures task.Service.Submit called directly, without
// HTTP: the part of POST /tasks that is not the HTTP server, JSON and
// routing (breakdown only).
func (e *env) enqueueService(ctx context.Context, opts *options) (loadResult, error) {
	svc, err := e.insertOnlyService(0)
	if err != nil {
		return loadResult{}, err
	}
	return e.enqueue(ctx, opts, "taskrunner Service.Submit (no HTTP)", 1, func(ctx context.Context) error {
		req := &task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"hello"}`)}
		if _, _, err := svc.Submit(ctx, req, ""); err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		return nil
	})
}

// enqueue empties the tables, runs op (which inserts per jobs) under load,
// checks that river_job holds per jobs for every op that succeeded, warm-up
// included, and reports it. The result counts ops: its rate times per is
// jobs per second.
func (e *env) enqueue(ctx context.Context, opts *options, label string, per int, op func(context.Context) error) (loadResult, error) {
	if err := e.reset(ctx); err != nil {
		return loadResult{}, err
	}
	if err := e.checkpoint(ctx); err != nil {
		return loadResult{}, err
	}
	cpu := readCPU()
	each := ""
	if per > 1 {
		each = fmt.Sprintf(" of %d jobs each", per)
	}
	e.p.linef("enqueue: %s%s, %d clients, %s warm-up then %s measured ...", label, each, opts.clients, opts.enqueueWarm, opts.enqueueDur)
	var done atomic.Int64
	r, err := runLoad(ctx, opts.clients, opts.enqueueWarm, opts.enqueueDur, func(ctx context.Context) error {
		if err := op(ctx); err != nil {
			return err
		}
		done.Add(1)
		return nil
	})
	if err != nil {
		return loadResult{}, fmt.Errorf("enqueue with %s: %w", label, err)
	}
	var rows int64
	if err := e.conn.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE id > $1", e.keep).Scan(&rows); err != nil {
		return r, fmt.Errorf("count inserted jobs: %w", err)
	}
	if want := done.Load() * int64(per); rows != want {
		return r, fmt.Errorf("enqueue with %s: %d calls of %d jobs succeeded, but river_job holds %d jobs", label, done.Load(), per, rows)
	}
	p50, p99 := formatLatency(percentile(r.latencies, 0.50)), formatLatency(percentile(r.latencies, 0.99))
	// The CPU counts the warm-up too: per job of all rows inserted.
	spent := cpuSpent(cpu, int(rows))
	if per == 1 {
		e.p.linef("enqueue: %s: %d inserts in %s = %s; latency p50 %s, p99 %s%s", label, r.ops, r.elapsed, formatRate(r.rate()), p50, p99, spent)
	} else {
		e.p.linef("enqueue: %s: %d calls of %d jobs in %s = %s calls, %s jobs; latency per call p50 %s, p99 %s%s",
			label, r.ops, per, r.elapsed, formatRate(r.rate()), formatRate(r.rate()*float64(per)), p50, p99, spent)
	}
	return r, nil
}

// insertOnlyService returns a task.Service on an insert-only taskrunner
// client, as `taskrunner api` builds it, with coalesce as its
// CoalesceInserts (0: the default).
func (e *env) insertOnlyService(coalesce int) (*task.Service, error) {
	client, err := e.taskrunnerClient(e.clientConfig())
	if err != nil {
		return nil, err
	}
	return e.newTaskService(task.ServiceConfig{Client: client, CoalesceInserts: coalesce})
}

// taskService is the task service on client, as package app builds it
// from e.cfg, with types (e.types when nil) and callbackURLs for what a
// callback_url may reach (nil: callbacks off, as without CALLBACK_SECRET).
func (e *env) taskService(client *river.Client[pgx.Tx], types *tasktype.Registry, callbackURLs *fetch.Config) (*task.Service, error) {
	return e.newTaskService(task.ServiceConfig{Client: client, Types: types, Limits: task.Limits{Callback: callbackURLs}})
}

// newTaskService is the task service of cfg, with the pool, logger,
// maximum runtime and queues of e.cfg.
func (e *env) newTaskService(cfg task.ServiceConfig) (*task.Service, error) {
	base, err := app.TaskServiceConfig(e.cfg)
	if err != nil {
		return nil, err
	}
	cfg.Pool, cfg.Logger = e.pool, e.logger
	cfg.Types = cmp.Or(cfg.Types, e.types)
	cfg.FairShare = base.FairShare
	cfg.Limits.MaxRuntime, cfg.Limits.Queues = base.Limits.MaxRuntime, base.Limits.Queues
	cfg.Limits.BulkMaxConcurrent, cfg.Limits.BulkCountTimeout = base.Limits.BulkMaxConcurrent, base.Limits.BulkCountTimeout
	svc, err := task.NewService(cfg)
	if err != nil {
		return nil, fmt.Errorf("task service: %w", err)
	}
	return svc, nil
}

// taskrunnerClient returns the River client jobs.NewClient builds for cfg;
// a working one gets a run recorder, closed with the env.
func (e *env) taskrunnerClient(cfg jobs.ClientConfig) (*river.Client[pgx.Tx], error) {
	if cfg.Work && cfg.Runs == nil {
		runs, err := jobs.NewRunRecorder(jobs.RunRecorderConfig{Pool: e.pool, Logger: e.logger, WorkerName: "bench", Types: cfg.Types})
		if err != nil {
			return nil, fmt.Errorf("run recorder: %w", err)
		}
		cfg.Runs = runs
		e.recorders = append(e.recorders, cfg.Runs)
	}
	client, err := jobs.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("taskrunner River client: %w", err)
	}
	return client, nil
}

// clientConfig is the insert-only jobs.ClientConfig `taskrunner api` builds
// from e.cfg (app.ClientConfig); set Work for a working client.
func (e *env) clientConfig() jobs.ClientConfig {
	cfg := app.ClientConfig(e.cfg)
	cfg.Pool, cfg.Logger, cfg.Types = e.pool, e.logger, e.types
	cfg.Services = tasktype.Services{Pool: e.pool, Logger: e.logger}
	return cfg
}

// serveAPI serves the API for svc on a loopback port, as package app does
// but with no readiness checks and no
// enqueue limit (Limiter nil: TASKS_PER_MINUTE would cap every figure),
// and returns its address and a function that shuts it down.
func (e *env) serveAPI(svc *task.Service) (addr string, stop func(), err error) {
	// The configuration's MinIO; no figure here touches it.
	store, err := artifact.NewStore(artifact.Config{
		Endpoint: e.cfg.MinIOEndpoint, User: e.cfg.MinIOUser, Password: e.cfg.MinIOPassword,
		Bucket: e.cfg.MinIOBucket, Secure: e.cfg.MinIOSecure,
	})
	if err != nil {
		return "", nil, err
	}
	artifacts, err := artifact.NewService(artifact.ServiceConfig{Store: store, Pool: e.pool, Logger: e.logger})
	if err != nil {
		return "", nil, err
	}
	cfg := app.APIConfig(e.cfg) // Limits.MaxBatchSize is at least -batch-size: run raises it
	cfg.Tasks, cfg.Artifacts, cfg.Logger = svc, artifacts, e.logger
	api, err := httpapi.New(cfg)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen on loopback: %w", err)
	}
	srv := httpapi.NewHTTPServer(api, e.cfg.Limits.HTTPReadTimeout, e.logger)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.logger.Error("bench API stopped", slog.String("error", err.Error()))
		}
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	}
	return ln.Addr().String(), stop, nil
}

// loadResult is what one closed-loop load run measured.
type loadResult struct {
	ops       int             // operations completed inside the measured window
	elapsed   time.Duration   // the measured window
	latencies []time.Duration // of those operations
}

// rate is operations per second.
func (r loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ops) / r.elapsed.Seconds()
}

// runLoad runs op in a loop on each of clients goroutines for warmup plus
// duration, and counts the operations that complete inside the window of
// length duration after the warm-up. The first error stops every client
// and is returned.
func runLoad(ctx context.Context, clients int, warmup, duration time.Duration, op func(context.Context) error) (loadResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	from := time.Now().Add(warmup)
	to := from.Add(duration)

	perClient := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(to) {
					return
				}
				if err := op(ctx); err != nil {
					cancel(err)
					return
				}
				end := time.Now()
				if end.After(from) && !end.After(to) {
					perClient[i] = append(perClient[i], end.Sub(start))
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return loadResult{}, err
	}
	var all []time.Duration
	for _, l := range perClient {
		all = append(all, l...)
	}
	return loadResult{ops: len(all), elapsed: duration, latencies: all}, nil
}
