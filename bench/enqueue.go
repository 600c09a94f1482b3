package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
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
	return e.enqueue(ctx, opts, "bare River client.Insert", func(ctx context.Context) error {
		if _, err := client.Insert(ctx, noopArgs{Msg: "hello"}, nil); err != nil {
			return fmt.Errorf("bare River insert: %w", err)
		}
		return nil
	})
}

// enqueueHTTP measures POST /tasks of an echo task against the real API on
// a loopback port, from opts.clients HTTP clients.
func (e *env) enqueueHTTP(ctx context.Context, opts *options) (loadResult, error) {
	svc, err := e.insertOnlyService()
	if err != nil {
		return loadResult{}, err
	}
	addr, stop, err := e.serveAPI(svc)
	if err != nil {
		return loadResult{}, err
	}
	defer stop()

	// Keep one idle connection per client: the default of two per host
	// would make most requests dial a new connection.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = opts.clients
	transport.MaxIdleConnsPerHost = opts.clients
	defer transport.CloseIdleConnections()
	httpClient := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	target := "http://" + addr + "/tasks"

	return e.enqueue(ctx, opts, "taskrunner POST /tasks", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader([]byte(echoBody)))
		if err != nil {
			return fmt.Errorf("build POST /tasks: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpClient.Do(req)
		if err != nil {
			return fmt.Errorf("POST /tasks: %w", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("POST /tasks: read response: %w", err)
		}
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("POST /tasks: status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		return nil
	})
}

// enqueueService measures task.Service.Submit called directly, without
// HTTP: the part of POST /tasks that is not the HTTP server, JSON and
// routing (breakdown only).
func (e *env) enqueueService(ctx context.Context, opts *options) (loadResult, error) {
	svc, err := e.insertOnlyService()
	if err != nil {
		return loadResult{}, err
	}
	return e.enqueue(ctx, opts, "taskrunner Service.Submit (no HTTP)", func(ctx context.Context) error {
		req := &task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"hello"}`)}
		if _, _, err := svc.Submit(ctx, req, ""); err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		return nil
	})
}

// enqueue empties the tables, runs op under load and reports it.
func (e *env) enqueue(ctx context.Context, opts *options, label string, op func(context.Context) error) (loadResult, error) {
	if err := e.reset(ctx); err != nil {
		return loadResult{}, err
	}
	e.p.linef("enqueue: %s, %d clients, %s warm-up then %s measured ...", label, opts.clients, opts.enqueueWarm, opts.enqueueDur)
	r, err := runLoad(ctx, opts.clients, opts.enqueueWarm, opts.enqueueDur, op)
	if err != nil {
		return loadResult{}, fmt.Errorf("enqueue with %s: %w", label, err)
	}
	e.p.linef("enqueue: %s: %d inserts in %s = %s; latency p50 %s, p99 %s",
		label, r.ops, r.elapsed, formatRate(r.rate()), formatLatency(percentile(r.latencies, 0.50)), formatLatency(percentile(r.latencies, 0.99)))
	return r, nil
}

// insertOnlyService returns a task.Service on an insert-only taskrunner
// client, as `taskrunner api` builds it.
func (e *env) insertOnlyService() (*task.Service, error) {
	client, err := e.taskrunnerClient(e.clientConfig())
	if err != nil {
		return nil, err
	}
	return task.NewService(e.pool, client, task.Limits{MaxRuntime: e.cfg.Limits.TaskMaxRuntime, Queues: e.cfg.Queues}, e.logger), nil
}

// taskrunnerClient returns the River client jobs.NewClient builds for cfg;
// a working one gets a run recorder, closed with the env.
func (e *env) taskrunnerClient(cfg jobs.ClientConfig) (*river.Client[pgx.Tx], error) {
	if cfg.Work && cfg.Runs == nil {
		cfg.Runs = jobs.NewRunRecorder(e.pool, e.logger, cfg.WorkerName, nil)
		e.recorders = append(e.recorders, cfg.Runs)
	}
	client, err := jobs.NewClient(e.pool, cfg, e.logger)
	if err != nil {
		return nil, fmt.Errorf("taskrunner River client: %w", err)
	}
	return client, nil
}

// clientConfig is the insert-only jobs.ClientConfig `taskrunner api` builds
// from e.cfg; set Work and the worker settings for a working client.
func (e *env) clientConfig() jobs.ClientConfig {
	return jobs.ClientConfig{
		Queues:        e.cfg.Queues,
		Concurrency:   e.cfg.WorkerConcurrency,
		MaxRuntime:    e.cfg.Limits.TaskMaxRuntime,
		RescueAfter:   e.cfg.RescueAfter,
		FetchCooldown: e.cfg.WorkerFetchCooldown,
		FetchPoll:     e.cfg.WorkerFetchPoll,
		Retention:     e.cfg.TaskRetention,
		WorkerName:    "bench",
	}
}

// serveAPI serves the API for svc on a loopback port, as startAPI in
// cmd/taskrunner/serve.go does but with no readiness checks, and returns
// its address and a function that shuts it down.
func (e *env) serveAPI(svc *task.Service) (addr string, stop func(), err error) {
	api := httpapi.New(httpapi.Deps{
		Tasks:          svc,
		Limits:         e.cfg.Limits,
		Logger:         e.logger,
		MaxBodyBytes:   e.cfg.Limits.MaxRequestBodyBytes,
		RequestTimeout: config.DefaultRequestTimeout,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen on loopback: %w", err)
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(e.logger.With(slog.String("event", "http_server_error")).Handler(), slog.LevelWarn),
	}
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
