package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// maxPickupRate bounds -pickup-rate: the tasks are enqueued one at a time,
// and the figure is about a worker that is idle between them.
const maxPickupRate = 1000

// pickupBare measures how soon bare River starts a job inserted into an
// idle working client: the no-op worker at the end-to-end figure's
// settings, jobs inserted one at a time with client.Insert on that client.
func (e *env) pickupBare(ctx context.Context, opts *options) ([]time.Duration, error) {
	client, label, err := e.bareWorkingClient(opts, 0)
	if err != nil {
		return nil, err
	}
	return e.pickup(ctx, opts, label, client, false, bareInsert(client))
}

// pickupTaskrunner measures how soon taskrunner starts an echo task
// submitted with POST /tasks to an idle `taskrunner serve`: the working
// client jobs.NewClient builds from the configuration (WORKER_CONCURRENCY,
// WORKER_FETCH_COOLDOWN, WORKER_FETCH_POLL_INTERVAL) with its run
// recorder, and the API on that same client, as serve shares one.
func (e *env) pickupTaskrunner(ctx context.Context, opts *options) ([]time.Duration, error) {
	client, label, submit, stop, err := e.taskrunnerPickupSide(e.clientConfig())
	if err != nil {
		return nil, err
	}
	defer stop()
	return e.pickup(ctx, opts, label, client, true, submit)
}

// postTask submits body with POST /tasks to target and returns the new
// task's id.
func postTask(ctx context.Context, httpClient *http.Client, target string, body []byte) (int64, error) {
	answer, err := postJSON(ctx, httpClient, "POST /tasks", target, body, http.StatusAccepted)
	if err != nil {
		return 0, err
	}
	var view struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(answer, &view); err != nil || view.ID <= 0 {
		return 0, fmt.Errorf("POST /tasks: no task id in %s", answer)
	}
	return view.ID, nil
}

// pickup empties the tables and starts client, then submits tasks one at a
// time at opts.pickupRate with submit (which returns the new job's id):
// opts.pickupWarm's worth not counted, then opts.pickupTasks measured. Once
// every one has completed it returns the measured tasks' pickup latencies,
// river_job.attempted_at - created_at: River sets created_at as it
// inserts and attempted_at (the database's now()) as a worker fetches the
// job. With runs it also checks that every attempt has its completed run
// record. It stops the client before returning.
func (e *env) pickup(ctx context.Context, opts *options, label string, client *river.Client[pgx.Tx], runs bool, submit func(context.Context) (int64, error)) ([]time.Duration, error) {
	if err := e.reset(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := client.Start(runCtx); err != nil {
		return nil, fmt.Errorf("pickup %s: start client: %w", label, err)
	}
	defer stopClient(client)

	warm := pickupWarmTasks(opts.pickupRate, opts.pickupWarm)
	total := warm + opts.pickupTasks
	e.p.linef("pickup: %s: enqueueing %d tasks one at a time at %s/s (%d warm-up not counted) ...", label, total, formatPerSecond(opts.pickupRate), warm)
	ids, took, behind, err := openLoop(ctx, opts.pickupRate, warm, total, submit)
	if err != nil {
		return nil, fmt.Errorf("pickup %s: %w", label, err)
	}
	e.p.linef("pickup: %s: %d enqueued in %s (%s; %d more than one interval late); waiting for them ...",
		label, total, took.Round(time.Millisecond), formatRate(float64(total)/took.Seconds()), behind)
	if _, err := e.waitCompleted(ctx, opts, "pickup", label, total, time.Now()); err != nil {
		return nil, err
	}

	latencies, err := e.pickupLatencies(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("pickup %s: %w", label, err)
	}
	checked := "all completed on their first attempt"
	if runs {
		n, completed, err := e.countRuns(ctx)
		if err != nil {
			return nil, err
		}
		if n != total || completed != total {
			return nil, fmt.Errorf("pickup %s: %d tasks completed but %d runs recorded (%d completed)", label, total, n, completed)
		}
		checked += ", each with its completed run record"
	}
	e.p.linef("pickup: %s: %d tasks measured (%s); created_at -> attempted_at p50 %s, p99 %s, max %s",
		label, len(latencies), checked,
		formatTableLatency(percentile(latencies, 0.50)), formatTableLatency(percentile(latencies, 0.99)), formatTableLatency(percentile(latencies, 1)))
	return latencies, nil
}

// openLoop submits tasks 0 to total-1 with submit (which returns the new
// task's id) at rate per second, open loop: task i goes at start + i/rate,
// whatever the previous ones took, so the workers idle in between. It
// returns the ids of the tasks after the first warm, the time it took and
// how many tasks went more than one interval after their slot.
func openLoop(ctx context.Context, rate float64, warm, total int, submit func(context.Context) (int64, error)) (ids []int64, took time.Duration, behind int, err error) {
	interval := time.Duration(float64(time.Second) / rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	start := time.Now()
	ids = make([]int64, 0, max(total-warm, 0))
	for i := range total {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil, 0, behind, ctx.Err()
			case <-timer.C:
			}
		} else if i > 0 && -wait > interval {
			behind++
		}
		id, err := submit(ctx)
		if err != nil {
			return nil, 0, behind, err
		}
		if i >= warm {
			ids = append(ids, id)
		}
	}
	return ids, time.Since(start), behind, nil
}

// pickupWarmTasks is how many tasks enqueueing at rate per second for warm
// takes, rounded to the nearest.
func pickupWarmTasks(rate float64, warm time.Duration) int {
	return int(math.Round(rate * warm.Seconds()))
}

// pickupLatencies reads attempted_at - created_at of the jobs ids, checking
// that each one completed on its first attempt (a retry's attempted_at is
// its last attempt's).
func (e *env) pickupLatencies(ctx context.Context, ids []int64) ([]time.Duration, error) {
	rows, err := e.conn.Query(ctx, `
		SELECT extract(epoch FROM attempted_at - created_at) * 1000, attempt, state
		FROM river_job WHERE id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("read pickup times: %w", err)
	}
	defer rows.Close()
	latencies := make([]time.Duration, 0, len(ids))
	for rows.Next() {
		var ms float64
		var attempt int
		var state string
		if err := rows.Scan(&ms, &attempt, &state); err != nil {
			return nil, fmt.Errorf("read pickup times: %w", err)
		}
		if state != "completed" || attempt != 1 {
			return nil, fmt.Errorf("a job is %s after %d attempt(s), want completed after 1", state, attempt)
		}
		latencies = append(latencies, msDuration(ms))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pickup times: %w", err)
	}
	if len(latencies) != len(ids) {
		return nil, fmt.Errorf("%d of the %d measured jobs found in river_job", len(latencies), len(ids))
	}
	return latencies, nil
}
