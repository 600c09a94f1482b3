package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/task"
)

// The two tenants of the fair-share figure.
const (
	busyTenant  = "busy"
	quietTenant = "quiet"
)

// fairBacklogTasks is how many sleep tasks of -fair-sleep make a backlog of
// -fair-backlog for a pool of workers.
func fairBacklogTasks(opts *options, workers int) int {
	return int(math.Ceil(opts.fairBacklog.Seconds() * float64(workers) / opts.fairSleep.Seconds()))
}

// measureFairShare measures the fair-share figure once: the quiet tenant's
// pickup with one shared queue and with fair share, both under the busy
// tenant's backlog, then with fair share and no backlog.
func measureFairShare(ctx context.Context, env *env, opts *options, figs *figures, bareFirst bool) error {
	err := runSides(bareFirst,
		func() error {
			ds, err := env.fairPickup(ctx, opts, false, true)
			if err == nil {
				figs.fair.addBare(ds)
			}
			return err
		},
		func() error {
			ds, err := env.fairPickup(ctx, opts, true, true)
			if err == nil {
				figs.fair.add(ds)
			}
			return err
		})
	if err != nil {
		return err
	}
	ds, err := env.fairPickup(ctx, opts, true, false)
	if err == nil {
		figs.fairIdle.add(ds)
	}
	return err
}

// fairPickup empties the tables; with backlog, has the busy tenant enqueue
// -fair-backlog's worth of sleep tasks; starts a working client as
// `taskrunner serve` builds it with both tenants' queues; then has the
// quiet tenant submit -fair-tasks echo tasks one at a time at -fair-rate
// through the task service (TENANT_FAIR_SHARE as fairShare), and returns
// their pickup latencies (river_job.attempted_at - created_at) once all
// completed. With backlog it fails unless the busy tenant still had tasks
// waiting when the last quiet task was enqueued.
func (e *env) fairPickup(ctx context.Context, opts *options, fairShare, backlog bool) ([]time.Duration, error) {
	if err := e.reset(ctx); err != nil {
		return nil, err
	}
	cfg := e.clientConfig()
	cfg.Work = true
	cfg.Tenants = map[string]int{busyTenant: 0, quietTenant: 0}
	client, err := e.taskrunnerClient(cfg)
	if err != nil {
		return nil, err
	}
	svc, err := task.NewService(task.ServiceConfig{
		Pool: e.pool, Client: client, Types: e.types, Logger: e.logger, FairShare: fairShare,
		Limits: task.Limits{MaxRuntime: e.cfg.Limits.TaskMaxRuntime, Queues: e.cfg.Queues},
	})
	if err != nil {
		return nil, fmt.Errorf("task service: %w", err)
	}
	label := "one shared queue"
	if fairShare {
		label = "a queue per tenant"
	}
	if backlog {
		n := fairBacklogTasks(opts, cfg.Concurrency)
		label += fmt.Sprintf(", busy tenant's backlog of %d sleep tasks of %s", n, opts.fairSleep)
		if err := e.fairBacklog(ctx, svc, opts, n); err != nil {
			return nil, err
		}
	} else {
		label += ", no backlog"
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := client.Start(runCtx); err != nil {
		return nil, fmt.Errorf("fair share %s: start client: %w", label, err)
	}
	defer stopClient(client)

	quietCtx := taskrunner.WithTenant(ctx, taskrunner.Tenant{Name: quietTenant})
	p, err := svc.Validate(&task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"quiet"}`)})
	if err != nil {
		return nil, err
	}
	e.p.linef("fair share: %s: the quiet tenant enqueues %d tasks at %s/s ...", label, opts.fairTasks, formatPerSecond(opts.fairRate))
	interval := time.Duration(float64(time.Second) / opts.fairRate)
	ids := make([]int64, 0, opts.fairTasks)
	start := time.Now()
	for i := range opts.fairTasks {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		t, _, err := svc.Insert(quietCtx, p, "")
		if err != nil {
			return nil, fmt.Errorf("fair share %s: %w", label, err)
		}
		ids = append(ids, t.ID)
	}
	if backlog {
		var waiting int
		if err := e.conn.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE kind = 'sleep' AND state = 'available'").Scan(&waiting); err != nil {
			return nil, fmt.Errorf("fair share: count the backlog: %w", err)
		}
		if waiting == 0 {
			return nil, fmt.Errorf("fair share %s: the busy tenant's backlog drained before the quiet tenant's last task was enqueued; raise -fair-backlog", label)
		}
		e.p.linef("fair share: %s: %d of the busy tenant's tasks still waiting after the quiet tenant's last", label, waiting)
	}
	if err := e.waitIDsCompleted(ctx, opts, ids); err != nil {
		return nil, fmt.Errorf("fair share %s: %w", label, err)
	}
	latencies, err := e.pickupLatencies(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("fair share %s: %w", label, err)
	}
	e.p.linef("fair share: %s: quiet tenant's created_at -> attempted_at p50 %s, p99 %s, max %s", label,
		formatTableLatency(percentile(latencies, 0.50)), formatTableLatency(percentile(latencies, 0.99)), formatTableLatency(percentile(latencies, 1)))
	return latencies, nil
}

// fairBacklog has the busy tenant enqueue n sleep tasks of -fair-sleep.
func (e *env) fairBacklog(ctx context.Context, svc *task.Service, opts *options, n int) error {
	zero := 0
	p, err := svc.Validate(&task.Request{Type: "sleep", MaxRetries: &zero,
		Params: json.RawMessage(fmt.Sprintf(`{"seconds":%g}`, opts.fairSleep.Seconds()))})
	if err != nil {
		return err
	}
	busyCtx := taskrunner.WithTenant(ctx, taskrunner.Tenant{Name: busyTenant})
	const chunk = 1000
	for done := 0; done < n; done += chunk {
		batch := make([]task.Prepared, min(chunk, n-done))
		for i := range batch {
			batch[i] = p
		}
		if _, err := svc.SubmitBatch(busyCtx, batch); err != nil {
			return fmt.Errorf("fair share: the busy tenant's backlog: %w", err)
		}
	}
	return nil
}

// waitIDsCompleted waits until every job of ids has completed, for up to
// -e2e-timeout.
func (e *env) waitIDsCompleted(ctx context.Context, opts *options, ids []int64) error {
	deadline := time.Now().Add(opts.e2eTimeout)
	for {
		var n int
		if err := e.conn.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'completed'", ids).Scan(&n); err != nil {
			return fmt.Errorf("count completed: %w", err)
		}
		if n == len(ids) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d completed after %s", n, len(ids), opts.e2eTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(opts.pollEvery):
		}
	}
}
