-- name: RunMetricsUpsert :exec
INSERT INTO run_metrics (task_id, attempt, name, value)
SELECT @task_id::bigint, @attempt::int, unnest(@names::text[]), unnest(@metric_values::double precision[])
ON CONFLICT (task_id, attempt, name) DO UPDATE SET value = EXCLUDED.value;

-- name: RunNotesInsert :exec
INSERT INTO run_notes (task_id, attempt, note)
SELECT @task_id::bigint, @attempt::int, unnest(@notes::text[]);

-- name: RunsForTask :many
SELECT * FROM runs WHERE task_id = @task_id ORDER BY attempt;

-- name: RunMetricsForRun :many
SELECT * FROM run_metrics WHERE task_id = @task_id AND attempt = @attempt ORDER BY name;

-- name: RunNotesForRun :many
SELECT * FROM run_notes WHERE task_id = @task_id AND attempt = @attempt ORDER BY id;

-- name: HasBeenProcessed :one
-- Whether a run with this scope-prefixed key completed, and when it last did.
SELECT (count(*) > 0)::boolean AS processed, max(finished_at) AS last_at
FROM runs
WHERE key = @scope::text || ':' || @key::text AND status = 'completed';

-- name: LatestRunForKey :one
SELECT * FROM runs WHERE key = @key ORDER BY started_at DESC, id DESC LIMIT 1;

-- name: RunsInsert :exec
-- Records many ended attempts at once, as RunsUpsert does, when none of
-- them has a row yet: the common case, cheaper than an upsert. A unique
-- violation means one had (an interrupted attempt that ran again, or one
-- the sweep recorded as abandoned), and the writer sends the batch again
-- with RunsUpsert.
INSERT INTO runs (task_id, attempt, key, task_type, status, error_code, error, worker, started_at, finished_at, duration_ms)
SELECT unnest(@task_ids::bigint[]), unnest(@attempts::int[]), unnest(@keys::text[]), unnest(@task_types::text[]),
       unnest(@statuses::text[]), nullif(unnest(@error_codes::text[]), ''), nullif(unnest(@errors::text[]), ''),
       unnest(@workers::text[]), unnest(@started_ats::timestamptz[]), unnest(@finished_ats::timestamptz[]),
       unnest(@durations_ms::double precision[]);

-- name: RunsUpsert :exec
-- Records many ended attempts at once (the run writer's batch): one insert
-- per attempt. An attempt that ends again (a shutdown interrupted it, and
-- River ran the same attempt again) takes its latest state and counts an
-- interruption. A record replaces an abandoned row written for its attempt
-- before it arrived (by the run sweep, or a later attempt's record): the
-- attempt's own worker knows how it ended.
INSERT INTO runs (task_id, attempt, key, task_type, status, error_code, error, worker, started_at, finished_at, duration_ms)
SELECT i.task_id, i.attempt, i.key, i.task_type, i.status, nullif(i.error_code, ''), nullif(i.error, ''), i.worker, i.started_at,
       i.finished_at, i.duration_ms
FROM (
    SELECT unnest(@task_ids::bigint[]) AS task_id, unnest(@attempts::int[]) AS attempt, unnest(@keys::text[]) AS key,
           unnest(@task_types::text[]) AS task_type, unnest(@statuses::text[]) AS status,
           unnest(@error_codes::text[]) AS error_code, unnest(@errors::text[]) AS error, unnest(@workers::text[]) AS worker,
           unnest(@started_ats::timestamptz[]) AS started_at, unnest(@finished_ats::timestamptz[]) AS finished_at,
           unnest(@durations_ms::double precision[]) AS duration_ms
) i
ON CONFLICT (task_id, attempt) DO UPDATE
SET status = EXCLUDED.status,
    error_code = EXCLUDED.error_code,
    error = EXCLUDED.error,
    worker = EXCLUDED.worker,
    started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at,
    duration_ms = EXCLUDED.duration_ms,
    interruptions = runs.interruptions + CASE WHEN runs.status = 'interrupted' THEN 1 ELSE 0 END;

-- name: RunsAbandonEarlier :exec
-- Records as abandoned, for each task, its attempts up to and including
-- @throughs whose worker died before it could write their row. The run
-- writer passes the attempts before the one it records; the sweep of
-- finalized tasks (RunsUnrecordedFinalized) passes a task's last attempt.
-- Attempts with no row lost their record with a worker that died (River
-- rescued the task). So did an attempt still marked interrupted: River gave
-- it back without using it up, so it ran again (or it was the task's last,
-- and the task was finalized without it ever ending), and that run's record
-- is missing. Rows still marked running (written when attempts started, in
-- earlier versions) belonged to such a worker too. All are recorded as
-- abandoned, so every attempt has exactly one row. A record written later
-- by the attempt's own worker replaces the abandoned row (RunsUpsert).
WITH started AS (
    SELECT unnest(@task_ids::bigint[]) AS task_id, unnest(@throughs::int[]) AS through,
           unnest(@keys::text[]) AS key, unnest(@task_types::text[]) AS task_type
), closed AS (
    UPDATE runs r
    SET status = 'abandoned',
        error_code = 'worker_lost',
        error = 'the worker running this attempt stopped without finishing it',
        finished_at = now(),
        duration_ms = EXTRACT(EPOCH FROM now() - r.started_at) * 1000,
        interruptions = r.interruptions + CASE WHEN r.status = 'interrupted' THEN 1 ELSE 0 END
    FROM started s
    WHERE r.task_id = s.task_id AND r.attempt <= s.through AND r.status IN ('running', 'interrupted')
)
-- River appends its client id (the run recorder's worker name) to
-- attempted_by at each attempt: the task's current attempt ran last in the
-- client named last, the one before it in the client named next to last;
-- older ones are unknown. The task's current attempt, when it is filled in
-- (its task was finalized without a record), started at attempted_at and
-- ended at finalized_at.
INSERT INTO runs (task_id, attempt, key, task_type, status, error_code, error, worker, started_at, finished_at)
SELECT s.task_id, g.attempt, s.key, s.task_type, 'abandoned', 'worker_lost',
       'no record of this attempt survived its worker',
       coalesce(CASE WHEN j.attempt - g.attempt IN (0, 1)
                     THEN j.attempted_by[array_upper(j.attempted_by, 1) - (j.attempt - g.attempt)] END, 'unknown'),
       coalesce(CASE WHEN g.attempt = j.attempt THEN j.attempted_at END, now()),
       coalesce(CASE WHEN g.attempt = j.attempt THEN j.finalized_at END, now())
FROM started s
CROSS JOIN generate_series(1, s.through) AS g (attempt)
LEFT JOIN river_job j ON j.id = s.task_id
WHERE s.through > 0
ON CONFLICT (task_id, attempt) DO NOTHING;

-- name: RunsUnrecordedFinalized :many
-- Finalized tasks (completed, discarded, cancelled) since @since whose last
-- attempt has no ended row in runs: its worker died (River's rescuer then
-- discarded the task) or the task was finalized without it (an operator's
-- SQL), or it was left interrupted. Oldest finalized first, after the
-- keyset (@after_at, @after_id), at most @max_rows. Reads River's
-- (state, finalized_at) index and runs' unique (task_id, attempt) index.
-- taskrunner's own jobs (kinds starting with taskrunner_) that completed
-- have no record by design (the run recorder writes one only when their
-- attempt fails), so they are not filled in.
SELECT j.id, j.attempt::int AS attempt, j.kind, j.args, j.finalized_at::timestamptz AS finalized_at
FROM river_job j
WHERE j.state IN ('completed', 'discarded', 'cancelled')
  AND NOT (j.state = 'completed' AND starts_with(j.kind, 'taskrunner_'))
  AND j.finalized_at IS NOT NULL
  AND j.finalized_at > @since::timestamptz
  AND j.attempt > 0
  AND (j.finalized_at, j.id) > (@after_at::timestamptz, @after_id::bigint)
  AND NOT EXISTS (
      SELECT 1 FROM runs r
      WHERE r.task_id = j.id AND r.attempt = j.attempt AND r.status NOT IN ('running', 'interrupted')
  )
ORDER BY j.finalized_at, j.id
LIMIT @max_rows::int;

-- name: RunningAttempt :many
-- The attempt a task is running now, if any: its row is written when it
-- ends. River's client id (the worker name) is last in attempted_by.
SELECT j.attempt::int AS attempt, j.attempted_at::timestamptz AS started_at,
       coalesce(j.attempted_by[array_upper(j.attempted_by, 1)], '')::text AS worker
FROM river_job j
WHERE j.id = @task_id AND j.state = 'running' AND j.attempted_at IS NOT NULL;

-- name: RunMetricsUpsertMany :exec
INSERT INTO run_metrics (task_id, attempt, name, value)
SELECT unnest(@task_ids::bigint[]), unnest(@attempts::int[]), unnest(@names::text[]), unnest(@metric_values::double precision[])
ON CONFLICT (task_id, attempt, name) DO UPDATE SET value = EXCLUDED.value;

-- name: RunNotesInsertMany :exec
-- Notes keep their order (ids are assigned in it).
INSERT INTO run_notes (task_id, attempt, note)
SELECT unnest(@task_ids::bigint[]), unnest(@attempts::int[]), unnest(@notes::text[]);

-- name: RunsDeleteExpired :execrows
-- Deletes a batch of finished runs older than the cutoff (their metrics
-- and notes go with them).
DELETE FROM runs
WHERE (task_id, attempt) IN (
    SELECT r.task_id, r.attempt FROM runs r WHERE r.started_at < @cutoff::timestamptz AND r.status <> 'running' ORDER BY r.started_at LIMIT @max_rows
);

-- name: RunSweepLastThrough :many
-- How far the newest completed run sweep (a River job of @kind) swept:
-- the swept_through of its output, where the next one goes on.
SELECT (j.metadata -> 'output' ->> 'swept_through')::timestamptz AS swept_through
FROM river_job j
WHERE j.kind = @kind AND j.state = 'completed' AND j.metadata -> 'output' ? 'swept_through'
ORDER BY j.id DESC
LIMIT 1;

-- name: DatabaseNow :one
SELECT now()::timestamptz AS now;
