-- name: RunMetricsUpsert :exec
INSERT INTO run_metrics (run_id, name, value)
SELECT @run_id::bigint, unnest(@names::text[]), unnest(@metric_values::double precision[])
ON CONFLICT (run_id, name) DO UPDATE SET value = EXCLUDED.value;

-- name: RunNotesInsert :exec
INSERT INTO run_notes (run_id, note)
SELECT @run_id::bigint, unnest(@notes::text[]);

-- name: RunsForTask :many
SELECT * FROM runs WHERE task_id = @task_id ORDER BY attempt;

-- name: RunMetricsForRun :many
SELECT * FROM run_metrics WHERE run_id = @run_id ORDER BY name;

-- name: RunNotesForRun :many
SELECT * FROM run_notes WHERE run_id = @run_id ORDER BY id;

-- name: HasBeenProcessed :one
-- Whether a run with this scope-prefixed key completed, and when it last did.
SELECT (count(*) > 0)::boolean AS processed, max(finished_at) AS last_at
FROM runs
WHERE key = @scope::text || ':' || @key::text AND status = 'completed';

-- name: LatestRunForKey :one
SELECT * FROM runs WHERE key = @key ORDER BY started_at DESC, id DESC LIMIT 1;

-- name: RunsUpsert :exec
-- Records many ended attempts at once (the run writer's batch): one insert
-- per attempt. An attempt that ends again (a shutdown interrupted it, and
-- River ran the same attempt again) takes its latest state and counts an
-- interruption.
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
-- For attempts after the first, as they are recorded: earlier attempts of
-- their tasks with no row lost their record with a worker that died (River
-- rescued the task). So did an earlier attempt still marked interrupted:
-- River gave it back without using it up, so it ran again, and that run's
-- record is missing. Rows still marked running (written when attempts
-- started, in earlier versions) belonged to such a worker too. All are
-- recorded as abandoned, so every attempt has exactly one row.
WITH started AS (
    SELECT unnest(@task_ids::bigint[]) AS task_id, unnest(@attempts::int[]) AS attempt,
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
    WHERE r.task_id = s.task_id AND r.attempt < s.attempt AND r.status IN ('running', 'interrupted')
)
-- The attempt just before this one ran last in the client River recorded
-- next to last in attempted_by (River's client id is the run recorder's
-- worker name), so its row names that worker; older ones are unknown.
INSERT INTO runs (task_id, attempt, key, task_type, status, error_code, error, worker, started_at, finished_at)
SELECT s.task_id, g.attempt, s.key, s.task_type, 'abandoned', 'worker_lost',
       'no record of this attempt survived its worker',
       coalesce(CASE WHEN g.attempt = s.attempt - 1 THEN j.attempted_by[array_upper(j.attempted_by, 1) - 1] END, 'unknown'),
       now(), now()
FROM started s
CROSS JOIN generate_series(1, s.attempt - 1) AS g (attempt)
LEFT JOIN river_job j ON j.id = s.task_id
WHERE s.attempt > 1
ON CONFLICT (task_id, attempt) DO NOTHING;

-- name: RunningAttempt :many
-- The attempt a task is running now, if any: its row is written when it
-- ends. River's client id (the worker name) is last in attempted_by.
SELECT j.attempt::int AS attempt, j.attempted_at::timestamptz AS started_at,
       coalesce(j.attempted_by[array_upper(j.attempted_by, 1)], '')::text AS worker
FROM river_job j
WHERE j.id = @task_id AND j.state = 'running' AND j.attempted_at IS NOT NULL;

-- name: RunMetricsUpsertMany :exec
INSERT INTO run_metrics (run_id, name, value)
SELECT r.id, m.name, m.value
FROM (
    SELECT unnest(@task_ids::bigint[]) AS task_id, unnest(@attempts::int[]) AS attempt,
           unnest(@names::text[]) AS name, unnest(@metric_values::double precision[]) AS value
) m
JOIN runs r ON r.task_id = m.task_id AND r.attempt = m.attempt
ON CONFLICT (run_id, name) DO UPDATE SET value = EXCLUDED.value;

-- name: RunNotesInsertMany :exec
-- Notes keep their order (ids are assigned in it).
INSERT INTO run_notes (run_id, note)
SELECT r.id, n.note
FROM (
    SELECT u.*, row_number() OVER () AS position
    FROM (
        SELECT unnest(@task_ids::bigint[]) AS task_id, unnest(@attempts::int[]) AS attempt, unnest(@notes::text[]) AS note
    ) u
) n
JOIN runs r ON r.task_id = n.task_id AND r.attempt = n.attempt
ORDER BY n.position;

-- name: RunsDeleteExpired :execrows
-- Deletes a batch of finished runs older than the cutoff (their metrics
-- and notes go with them).
DELETE FROM runs
WHERE id IN (
    SELECT r.id FROM runs r WHERE r.started_at < @cutoff::timestamptz AND r.status <> 'running' ORDER BY r.started_at LIMIT @max_rows
);
