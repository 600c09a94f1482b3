package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/taskrunner/taskrunner/app"
	"github.com/taskrunner/taskrunner/callback"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

// callbackPath is where the bench's receiver takes deliveries.
const callbackPath = "/callback"

// delivery is what the receiver saw of one callback.
type delivery struct {
	arrived  time.Time // when its request reached the handler
	finished time.Time // the task's finished_at in the body
	event    string    // Taskrunner-Event
	status   string    // the task's status in the body
}

// callbackReceiver is the bench's callback endpoint: it checks every
// delivery's signature and records when it arrived, the first delivery of
// each task.
type callbackReceiver struct {
	secret []byte

	mu         sync.Mutex
	deliveries map[int64]delivery // by task id
	repeats    int                // deliveries of a task already delivered
	bad        error              // the first delivery refused
}

// ServeHTTP records one delivery, or refuses it (400) with what was wrong.
func (r *callbackReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	if err == nil {
		err = callback.Verify(r.secret, req.Header.Get(callback.HeaderSignature), body, 0, arrived)
	}
	var view struct {
		ID         int64      `json:"id"`
		Status     string     `json:"status"`
		FinishedAt *time.Time `json:"finished_at"`
	}
	if err == nil {
		if err = json.Unmarshal(body, &view); err == nil && (view.ID <= 0 || view.FinishedAt == nil) {
			err = fmt.Errorf("no task id or finished_at in %s", body)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.bad == nil {
			r.bad = err
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, ok := r.deliveries[view.ID]; ok {
		r.repeats++
	} else {
		r.deliveries[view.ID] = delivery{arrived: arrived, finished: *view.FinishedAt, event: req.Header.Get(callback.HeaderEvent), status: view.Status}
	}
	w.WriteHeader(http.StatusNoContent)
}

// count is how many tasks were delivered, and the first delivery refused.
func (r *callbackReceiver) count() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.deliveries), r.bad
}

// serveCallbacks starts a receiver on a loopback port and returns it, its
// port and a function that shuts it down.
func (e *env) serveCallbacks(secret []byte) (*callbackReceiver, int, func(), error) {
	r := &callbackReceiver{secret: secret, deliveries: map[int64]delivery{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("callback receiver: listen on loopback: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+callbackPath, r)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.logger.Error("bench callback receiver stopped", slog.String("error", err.Error()))
		}
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	}
	return r, ln.Addr().(*net.TCPAddr).Port, stop, nil
}

// callbackResult is one run of the callback figure: the measured tasks'
// latencies from finished to delivered, and for information its stages.
type callbackResult struct {
	latencies []time.Duration // delivery arrival - the task's finished_at
	// The stages, p50 of each: finished_at -> the callback job's
	// created_at (the start of the transaction that wrote the final state,
	// so it may be a little negative), created_at -> attempted_at (the
	// callback job picked up), attempted_at -> arrival (reading the task,
	// signing, the POST).
	commit, pickup, post time.Duration
}

// callbackLatency measures how soon a finished task's callback arrives:
// echo tasks submitted with a callback_url through POST /tasks, one at a
// time at opts.cbRate (opts.cbWarm's worth not counted, then
// opts.cbTasks measured), to the working client `taskrunner serve`
// builds from the configuration (WORKER_CONCURRENCY, WORKER_FETCH_COOLDOWN,
// WORKER_FETCH_POLL_INTERVAL, run recorder) with callbacks on
// (CALLBACK_SECRET, CALLBACK_ALLOW_PRIVATE_NETWORKS=true,
// CALLBACK_ALLOWED_PORTS the receiver's port), delivering to a receiver on
// loopback that checks each signature and notes when each delivery
// arrived. The latency is that arrival - the task's finished_at in the
// delivered body (River's finalized_at, set in this process).
func (e *env) callbackLatency(ctx context.Context, opts *options) (callbackResult, error) {
	var res callbackResult
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	secret = []byte(hex.EncodeToString(secret))
	receiver, port, stopReceiver, err := e.serveCallbacks(secret)
	if err != nil {
		return res, err
	}
	defer stopReceiver()

	cfg := *e.cfg
	cfg.Callback.Secret = string(secret)
	cfg.Callback.AllowPrivateNetworks = true
	cfg.Callback.AllowedPorts = []int{port}
	urls := app.CallbackURLConfig(&cfg)
	if err := urls.Validate(); err != nil {
		return res, fmt.Errorf("callback settings: %w", err)
	}
	ccfg := e.clientConfig()
	ccfg.Work = true
	ccfg.Deps.Callback = &jobs.CallbackDeps{
		Secret: secret, Poster: fetch.New(urls), Task: task.CallbackTasks(e.pool, httpapi.CallbackBody(jobs.DefaultMaxRuntime)),
		Timeout: cfg.Callback.Timeout, MaxAttempts: cfg.Callback.MaxAttempts, Logger: e.logger,
	}
	client, err := e.taskrunnerClient(ccfg)
	if err != nil {
		return res, err
	}
	svc, err := e.taskService(client, nil, &urls)
	if err != nil {
		return res, err
	}
	addr, stopAPI, err := e.serveAPI(svc)
	if err != nil {
		return res, err
	}
	defer stopAPI()

	if err := e.reset(ctx); err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	label := fmt.Sprintf("taskrunner POST /tasks with callback_url, echo worker + run records (%d workers, FetchCooldown %s, FetchPollInterval %s)",
		ccfg.Concurrency, ccfg.FetchCooldown, ccfg.FetchPoll)
	if err := client.Start(runCtx); err != nil {
		return res, fmt.Errorf("callbacks %s: start client: %w", label, err)
	}
	defer stopClient(client)

	httpClient, closeIdle := loopbackClient(1)
	defer closeIdle()
	target := "http://" + addr + "/tasks"
	body, err := json.Marshal(map[string]any{
		"type": "echo", "params": map[string]string{"msg": "hello"},
		"callback_url": "http://127.0.0.1:" + strconv.Itoa(port) + callbackPath,
	})
	if err != nil {
		return res, err
	}
	warm := pickupWarmTasks(opts.cbRate, opts.cbWarm)
	total := warm + opts.cbTasks
	e.p.linef("callbacks: %s: enqueueing %d tasks one at a time at %s/s (%d warm-up not counted) ...", label, total, formatPerSecond(opts.cbRate), warm)
	ids, took, behind, err := openLoop(ctx, opts.cbRate, warm, total, func(ctx context.Context) (int64, error) {
		return postTask(ctx, httpClient, target, body)
	})
	if err != nil {
		return res, fmt.Errorf("callbacks %s: %w", label, err)
	}
	e.p.linef("callbacks: %s: %d enqueued in %s (%s; %d more than one interval late); waiting for their callbacks ...",
		label, total, took.Round(time.Millisecond), formatRate(float64(total)/took.Seconds()), behind)
	if err := e.waitDelivered(ctx, opts, receiver, total); err != nil {
		return res, err
	}

	receiver.mu.Lock()
	deliveries, repeats := receiver.deliveries, receiver.repeats
	receiver.mu.Unlock()
	for _, id := range ids {
		d, ok := deliveries[id]
		if !ok {
			return res, fmt.Errorf("callbacks: task %d was not delivered", id)
		}
		if d.event != "task.completed" || d.status != "completed" {
			return res, fmt.Errorf("callbacks: task %d delivered as %s with status %s, want task.completed and completed", id, d.event, d.status)
		}
		res.latencies = append(res.latencies, d.arrived.Sub(d.finished))
	}
	if err := e.callbackStages(ctx, ids, deliveries, &res); err != nil {
		return res, err
	}
	e.p.linef("callbacks: %s: %d tasks measured (all completed, each delivered, signature checked; %d repeated deliveries); "+
		"finished_at -> callback arrival p50 %s, p99 %s, max %s; p50 of its stages: finished_at -> final state written %s, callback job picked up %s, picked up -> arrival %s",
		label, len(res.latencies), repeats,
		formatTableLatency(percentile(res.latencies, 0.50)), formatTableLatency(percentile(res.latencies, 0.99)), formatTableLatency(percentile(res.latencies, 1)),
		formatLatency(res.commit), formatLatency(res.pickup), formatLatency(res.post))
	return res, nil
}

// waitDelivered polls the receiver until n tasks were delivered, with a
// progress line every second.
func (e *env) waitDelivered(ctx context.Context, opts *options, r *callbackReceiver, n int) error {
	ticker := time.NewTicker(opts.pollEvery)
	defer ticker.Stop()
	start := time.Now()
	lastLine := start
	for {
		got, bad := r.count()
		if bad != nil {
			return fmt.Errorf("callbacks: a delivery was refused: %w", bad)
		}
		now := time.Now()
		if got >= n {
			return nil
		}
		if now.Sub(start) > opts.e2eTimeout {
			return fmt.Errorf("callbacks: only %d of %d tasks delivered after %s", got, n, opts.e2eTimeout)
		}
		if now.Sub(lastLine) >= time.Second {
			e.p.linef("callbacks: %d of %d delivered", got, n)
			lastLine = now
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// callbackStages reads each measured task's callback job and sets res's
// stage figures (p50 of each): the callback job's created_at is the
// transaction that wrote the task's final state (the trigger inserts it
// there), its attempted_at when a worker fetched it.
func (e *env) callbackStages(ctx context.Context, ids []int64, deliveries map[int64]delivery, res *callbackResult) error {
	rows, err := e.conn.Query(ctx, `
		SELECT DISTINCT ON ((args->>'task_id')::bigint) (args->>'task_id')::bigint, created_at, attempted_at
		FROM river_job WHERE kind = 'taskrunner_callback' AND (args->>'task_id')::bigint = ANY($1)
		ORDER BY (args->>'task_id')::bigint, id`, ids)
	if err != nil {
		return fmt.Errorf("read callback jobs: %w", err)
	}
	defer rows.Close()
	var commit, pickup, post []time.Duration
	for rows.Next() {
		var id int64
		var created time.Time
		var attempted *time.Time
		if err := rows.Scan(&id, &created, &attempted); err != nil {
			return fmt.Errorf("read callback jobs: %w", err)
		}
		d := deliveries[id]
		commit = append(commit, created.Sub(d.finished))
		if attempted != nil {
			pickup = append(pickup, attempted.Sub(created))
			post = append(post, d.arrived.Sub(*attempted))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read callback jobs: %w", err)
	}
	if len(commit) != len(ids) {
		return fmt.Errorf("callbacks: %d callback jobs found for %d measured tasks", len(commit), len(ids))
	}
	res.commit, res.pickup, res.post = percentile(commit, 0.5), percentile(pickup, 0.5), percentile(post, 0.5)
	return nil
}
