package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/jobs"
)

// The scale figures (-scale N): the throughput and pickup figures again
// with N tasks already queued, bytes on disk per finished task, and pickup
// latency while a retention pass deletes N finished tasks.

// sizedTables are the tables a finished task takes room in: its River row
// and its run records, each with its indexes (and TOAST).
const sizedTables = "river_job, runs, run_metrics, run_notes"

// fillQueuedSQL copies job $1 $2 times as scheduled an hour ahead, so
// the copies wait in river_job without being worked.
const fillQueuedSQL = `
	INSERT INTO river_job (state, max_attempts, scheduled_at, priority, args, kind, metadata, queue, tags)
	SELECT 'scheduled', t.max_attempts, now() + interval '1 hour', t.priority, t.args, t.kind, t.metadata, t.queue, t.tags
	FROM river_job t, generate_series(1, $2)
	WHERE t.id = $1`

// fillFinishedSQL copies job $1 $2 times as completed at $3 on its first
// attempt, with $4 merged into its metadata (the output a worker records).
const fillFinishedSQL = `
	INSERT INTO river_job (state, attempt, max_attempts, attempted_at, attempted_by, created_at, finalized_at, scheduled_at,
		priority, args, kind, metadata, queue, tags)
	SELECT 'completed', 1, t.max_attempts, $3, ARRAY['bench'], $3, $3, $3,
		t.priority, t.args, t.kind, t.metadata || $4::jsonb, t.queue, t.tags
	FROM river_job t, generate_series(1, $2)
	WHERE t.id = $1`

// fillRunsSQL gives every job after id $1 the completed run record of its
// first attempt, started and finished when the job was, with run key $2.
const fillRunsSQL = `
	INSERT INTO runs (task_id, attempt, key, task_type, status, worker, started_at, finished_at, duration_ms)
	SELECT id, 1, $2, kind, 'completed', 'bench', attempted_at, finalized_at, 0.05
	FROM river_job WHERE id > $1`

// fillJobs inserts one job with insert (which returns its id), copies it n
// times with fill (fillQueuedSQL or fillFinishedSQL, given the template's
// id, n and more), deletes the template and returns the range of ids the
// copies took: after first, up to last.
func (e *env) fillJobs(ctx context.Context, n int, insert func(context.Context) (int64, error), fill string, more ...any) (first, last int64, err error) {
	template, err := insert(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("fill: template job: %w", err)
	}
	start := time.Now()
	if _, err := e.conn.Exec(ctx, fill, append([]any{template, n}, more...)...); err != nil {
		return 0, 0, fmt.Errorf("fill: copy the template %d times: %w", n, err)
	}
	if _, err := e.conn.Exec(ctx, "DELETE FROM river_job WHERE id = $1", template); err != nil {
		return 0, 0, fmt.Errorf("fill: delete the template: %w", err)
	}
	if err := e.conn.QueryRow(ctx, "SELECT max(id) FROM river_job").Scan(&last); err != nil {
		return 0, 0, fmt.Errorf("fill: %w", err)
	}
	e.p.linef("fill: %s copies of job %d inserted in %s", countLabel(n), template, time.Since(start).Round(time.Millisecond))
	return template, last, nil
}

// vacuumAnalyze vacuums and analyzes tables, so the figures after a fill
// see the steady state (visibility map set, fresh statistics), not a
// table fresh from a bulk insert.
func (e *env) vacuumAnalyze(ctx context.Context, tables string) error {
	start := time.Now()
	if _, err := e.conn.Exec(ctx, "VACUUM ANALYZE "+tables); err != nil {
		return fmt.Errorf("vacuum analyze %s: %w", tables, err)
	}
	e.p.linef("fill: VACUUM ANALYZE %s in %s", tables, time.Since(start).Round(time.Millisecond))
	return nil
}

// fillQueued empties the tables and fills river_job with n echo
// tasks as POST /tasks enqueues them, but scheduled an hour ahead, so they
// wait in the table through every figure; from then on reset keeps them.
// Both sides run on this one database, so both see the same rows.
func (e *env) fillQueued(ctx context.Context, n int) error {
	if err := e.reset(ctx); err != nil {
		return err
	}
	client, err := e.taskrunnerClient(e.clientConfig())
	if err != nil {
		return err
	}
	params, err := e.echoParams(client, 1)
	if err != nil {
		return err
	}
	e.p.linef("fill: %s echo tasks scheduled an hour ahead ...", countLabel(n))
	_, last, err := e.fillJobs(ctx, n, func(ctx context.Context) (int64, error) {
		res, err := client.InsertMany(ctx, params)
		if err != nil {
			return 0, err
		}
		return res[0].Job.ID, nil
	}, fillQueuedSQL)
	if err != nil {
		return err
	}
	if err := e.vacuumAnalyze(ctx, "river_job"); err != nil {
		return err
	}
	e.keep = last
	return nil
}

// dropQueued removes the queued fill: reset empties the tables again.
func (e *env) dropQueued(ctx context.Context) error {
	e.keep = 0
	return e.reset(ctx)
}

// bytesPerTask is the room on disk each of n finished jobs takes, after
// VACUUM FULL (the rows at rest, without the dead versions a burst leaves
// before vacuum reuses their room), less what the empty tables take
// (e.emptyParts). Bare River's jobs (bare) are sized without taskrunner's
// own indexes on river_job (named taskrunner_...), which both sides' rows
// pay for in the bench's one database but River alone would not have.
func (e *env) bytesPerTask(ctx context.Context, n int, bare bool) (float64, error) {
	if err := e.waitNoSnapshots(ctx); err != nil {
		return 0, err
	}
	if _, err := e.conn.Exec(ctx, "VACUUM FULL "+sizedTables); err != nil {
		return 0, fmt.Errorf("vacuum full: %w", err)
	}
	sizes, err := e.relationSizes(ctx)
	if err != nil {
		return 0, err
	}
	type part struct {
		name  string
		bytes int64
	}
	var parts []part
	var total int64
	for name, size := range sizes {
		d := size - e.emptyParts[name]
		if d <= 0 || (bare && strings.HasPrefix(name, "taskrunner_")) {
			continue
		}
		parts = append(parts, part{name, d})
		total += d
	}
	slices.SortFunc(parts, func(a, b part) int { return cmp.Or(cmp.Compare(b.bytes, a.bytes), strings.Compare(a.name, b.name)) })
	each := make([]string, len(parts))
	for i, p := range parts {
		each[i] = fmt.Sprintf("%s %s", p.name, formatBytes(float64(p.bytes)/float64(n)))
	}
	var jobRows, runRows int64
	if err := e.conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM river_job), (SELECT count(*) FROM runs)").Scan(&jobRows, &runRows); err != nil {
		return 0, fmt.Errorf("count the sized rows: %w", err)
	}
	left := ""
	if bare {
		left = " (taskrunner's own indexes left out)"
	}
	per := float64(total) / float64(n)
	e.p.linef("size: %d finished jobs (river_job holds %d rows, runs %d) take %d bytes in %s and their indexes%s = %s each: %s",
		n, jobRows, runRows, total, sizedTables, left, formatBytes(per), strings.Join(each, ", "))
	return per, nil
}

// waitNoSnapshots waits, for up to 10 seconds, until no other session on
// the bench database holds a snapshot (an autovacuum's ANALYZE of the
// jobs just finished, say), so VACUUM FULL can drop every dead row
// version and the size counts only the rows at rest.
func (e *env) waitNoSnapshots(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy bool
		err := e.conn.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL)`).Scan(&busy)
		if err != nil {
			return fmt.Errorf("look for open snapshots: %w", err)
		}
		if !busy || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// measureEmptyBytes notes what the empty tables take, the base
// bytesPerTask subtracts.
func (e *env) measureEmptyBytes(ctx context.Context) error {
	if err := e.reset(ctx); err != nil {
		return err
	}
	if _, err := e.conn.Exec(ctx, "VACUUM FULL "+sizedTables); err != nil {
		return fmt.Errorf("vacuum full: %w", err)
	}
	var err error
	e.emptyParts, err = e.relationSizes(ctx)
	return err
}

// bareWorkingClient is bare River's working client of the pickup
// figures: the no-op worker at the end-to-end figure's settings, keeping
// completed jobs for retention (0: River's default).
func (e *env) bareWorkingClient(opts *options, retention time.Duration) (*river.Client[pgx.Tx], string, error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{})
	client, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{
		Logger:                      e.logger,
		Workers:                     workers,
		Queues:                      map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.workers}},
		FetchCooldown:               opts.fetchCool,
		FetchPollInterval:           opts.fetchPoll,
		CompletedJobRetentionPeriod: retention,
	})
	if err != nil {
		return nil, "", fmt.Errorf("bare River client: %w", err)
	}
	label := fmt.Sprintf("bare River client.Insert, no-op worker (%d workers, FetchCooldown %s, FetchPollInterval %s)", opts.workers, opts.fetchCool, opts.fetchPoll)
	return client, label, nil
}

// bareInsert is bare River's submit of the pickup figures: client.Insert
// of a no-op job.
func bareInsert(client *river.Client[pgx.Tx]) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		res, err := client.Insert(ctx, noopArgs{Msg: "hello"}, nil)
		if err != nil {
			return 0, fmt.Errorf("bare River insert: %w", err)
		}
		return res.Job.ID, nil
	}
}

// taskrunnerPickupSide is taskrunner's side of the pickup figures: the
// working client built from cfg, the API served on it, and a submit that
// POSTs an echo task to it. stop shuts the API down.
func (e *env) taskrunnerPickupSide(cfg jobs.ClientConfig) (client *river.Client[pgx.Tx], label string, submit func(context.Context) (int64, error), stop func(), err error) {
	cfg.Work = true
	client, err = e.taskrunnerClient(cfg)
	if err != nil {
		return nil, "", nil, nil, err
	}
	svc, err := e.taskService(client, nil, nil)
	if err != nil {
		return nil, "", nil, nil, err
	}
	addr, stopAPI, err := e.serveAPI(svc)
	if err != nil {
		return nil, "", nil, nil, err
	}
	httpClient, closeIdle := loopbackClient(1)
	target := "http://" + addr + "/tasks"
	body := []byte(echoBody)
	label = fmt.Sprintf("taskrunner POST /tasks, echo worker + run records (%d workers, FetchCooldown %s, FetchPollInterval %s)",
		cfg.Concurrency, cfg.FetchCooldown, cfg.FetchPoll)
	submit = func(ctx context.Context) (int64, error) { return postTask(ctx, httpClient, target, body) }
	return client, label, submit, func() { closeIdle(); stopAPI() }, nil
}

// retentionAge is how long ago the retention figure's finished tasks
// finished: past both TASK_RETENTION (River deletes the jobs) and
// ARTIFACT_RETENTION (taskrunner's retention job deletes the runs).
func (e *env) retentionAge() time.Duration {
	return max(e.cfg.TaskRetention, e.cfg.ArtifactRetention) + time.Hour
}

// retentionBare measures bare River's pickup latency while its job
// cleaner deletes opts.scale completed no-op jobs past its retention.
func (e *env) retentionBare(ctx context.Context, opts *options) ([]time.Duration, error) {
	if err := e.reset(ctx); err != nil {
		return nil, err
	}
	insertOnly, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: e.logger})
	if err != nil {
		return nil, fmt.Errorf("bare River insert-only client: %w", err)
	}
	e.p.linef("retention: bare River: %s no-op jobs completed %s ago ...", countLabel(opts.scale), e.retentionAge())
	_, last, err := e.fillJobs(ctx, opts.scale, bareInsert(insertOnly), fillFinishedSQL, time.Now().Add(-e.retentionAge()), `{}`)
	if err != nil {
		return nil, err
	}
	if err := e.vacuumAnalyze(ctx, "river_job"); err != nil {
		return nil, err
	}
	client, label, err := e.bareWorkingClient(opts, e.cfg.TaskRetention)
	if err != nil {
		return nil, err
	}
	return e.pickupDuringRetention(ctx, opts, label+", job cleaner at TASK_RETENTION", client, false, last, bareInsert(client))
}

// retentionTaskrunner measures taskrunner's pickup latency while a
// retention pass deletes opts.scale finished echo tasks with their run
// records, as the product runs it: River's job cleaner at TASK_RETENTION
// deletes the jobs, and taskrunner's retention job (jobs/retention.go,
// enqueued when the client becomes leader) the runs past
// ARTIFACT_RETENTION.
func (e *env) retentionTaskrunner(ctx context.Context, opts *options) ([]time.Duration, error) {
	if err := e.reset(ctx); err != nil {
		return nil, err
	}
	insertOnly, err := e.taskrunnerClient(e.clientConfig())
	if err != nil {
		return nil, err
	}
	params, err := e.echoParams(insertOnly, 1)
	if err != nil {
		return nil, err
	}
	output, err := json.Marshal(map[string]any{"output": builtin.EchoResult{Msg: "hello"}})
	if err != nil {
		return nil, err
	}
	e.p.linef("retention: taskrunner: %s echo tasks completed %s ago, with their run records ...", countLabel(opts.scale), e.retentionAge())
	first, last, err := e.fillJobs(ctx, opts.scale, func(ctx context.Context) (int64, error) {
		res, err := insertOnly.InsertMany(ctx, params)
		if err != nil {
			return 0, err
		}
		return res[0].Job.ID, nil
	}, fillFinishedSQL, time.Now().Add(-e.retentionAge()), string(output))
	if err != nil {
		return nil, err
	}
	args, err := json.Marshal(params[0].Args)
	if err != nil {
		return nil, err
	}
	if _, err := e.conn.Exec(ctx, fillRunsSQL, first, e.types.KeyOf("echo", args)); err != nil {
		return nil, fmt.Errorf("fill: run records: %w", err)
	}
	if err := e.vacuumAnalyze(ctx, "river_job, runs"); err != nil {
		return nil, err
	}
	cfg := e.clientConfig()
	cfg.ArtifactRetention = e.cfg.ArtifactRetention
	if cfg.ArtifactRetention <= 0 {
		cfg.ArtifactRetention = e.cfg.TaskRetention
	}
	client, label, submit, stop, err := e.taskrunnerPickupSide(cfg)
	if err != nil {
		return nil, err
	}
	defer stop()
	return e.pickupDuringRetention(ctx, opts, label+", River's job cleaner and taskrunner's retention job", client, true, last, submit)
}

// pickupDuringRetention starts client and submits tasks one at a time at
// opts.pickupRate until the jobs up to id last are gone from river_job
// (and, with runs, their run records from runs), and at least
// opts.pickupTasks have been measured after opts.pickupWarm's worth not
// counted. It returns the pickup latencies of the tasks submitted after
// the warm-up, once all have completed. It stops the client before
// returning.
func (e *env) pickupDuringRetention(ctx context.Context, opts *options, label string, client *river.Client[pgx.Tx], runs bool, last int64, submit func(context.Context) (int64, error)) ([]time.Duration, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	if err := client.Start(runCtx); err != nil {
		return nil, fmt.Errorf("retention %s: start client: %w", label, err)
	}
	defer stopClient(client)
	warm := pickupWarmTasks(opts.pickupRate, opts.pickupWarm)
	e.p.linef("retention: %s: enqueueing one at a time at %s/s until the pass is done ...", label, formatPerSecond(opts.pickupRate))

	// The pass is done when no job up to last is left, nor (with runs)
	// a run record of one.
	left := func(ctx context.Context) (bool, error) {
		q := "SELECT EXISTS (SELECT 1 FROM river_job WHERE id <= $1)"
		if runs {
			q = "SELECT EXISTS (SELECT 1 FROM river_job WHERE id <= $1) OR EXISTS (SELECT 1 FROM runs WHERE task_id <= $1)"
		}
		var any bool
		err := e.conn.QueryRow(ctx, q, last).Scan(&any)
		return any, err
	}
	interval := time.Duration(float64(time.Second) / opts.pickupRate)
	var ids []int64
	var passTook time.Duration
	for i := 0; ; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		id, err := submit(ctx)
		if err != nil {
			return nil, fmt.Errorf("retention %s: %w", label, err)
		}
		if i >= warm {
			ids = append(ids, id)
		}
		// Look every half second whether the pass is done.
		if i%max(int(opts.pickupRate/2), 1) != 0 {
			continue
		}
		if passTook == 0 {
			busy, err := left(ctx)
			if err != nil {
				return nil, fmt.Errorf("retention %s: %w", label, err)
			}
			if !busy {
				passTook = time.Since(start)
				e.p.linef("retention: %s: the pass deleted %s finished tasks in about %s", label, countLabel(opts.scale), passTook.Round(100*time.Millisecond))
			} else if time.Since(start) > opts.retentionMax {
				return nil, fmt.Errorf("retention %s: the pass was not done after %s", label, opts.retentionMax)
			}
		}
		if passTook > 0 && len(ids) >= opts.pickupTasks {
			break
		}
	}
	e.p.linef("retention: %s: %d tasks measured; waiting for them ...", label, len(ids))
	if err := e.waitIDsCompleted(ctx, opts, ids); err != nil {
		return nil, fmt.Errorf("retention %s: %w", label, err)
	}
	latencies, err := e.pickupLatencies(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("retention %s: %w", label, err)
	}
	if runs {
		var n int
		if err := e.conn.QueryRow(ctx, "SELECT count(*) FROM runs WHERE task_id = ANY($1) AND status = 'completed'", ids).Scan(&n); err != nil {
			return nil, fmt.Errorf("retention %s: count runs: %w", label, err)
		}
		if n != len(ids) {
			return nil, fmt.Errorf("retention %s: %d tasks completed but %d completed runs recorded", label, len(ids), n)
		}
	}
	e.p.linef("retention: %s: created_at -> attempted_at p50 %s, p99 %s, max %s", label,
		formatTableLatency(percentile(latencies, 0.50)), formatTableLatency(percentile(latencies, 0.99)), formatTableLatency(percentile(latencies, 1)))
	return latencies, nil
}

// relationSizes is the size of each of sizedTables (its heap and TOAST)
// and of each of their indexes, by name.
func (e *env) relationSizes(ctx context.Context) (map[string]int64, error) {
	rows, err := e.conn.Query(ctx, `
		SELECT c.relname::text, pg_table_size(c.oid)
		FROM unnest(string_to_array($1, ', ')) AS t (name) JOIN pg_class c ON c.oid = t.name::regclass
		UNION ALL
		SELECT i.relname::text, pg_relation_size(i.oid)
		FROM unnest(string_to_array($1, ', ')) AS t (name)
		JOIN pg_index x ON x.indrelid = t.name::regclass JOIN pg_class i ON i.oid = x.indexrelid`, sizedTables)
	if err != nil {
		return nil, fmt.Errorf("sizes of %s and their indexes: %w", sizedTables, err)
	}
	sizes := map[string]int64{}
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			return nil, err
		}
		sizes[name] = size
	}
	return sizes, rows.Err()
}
