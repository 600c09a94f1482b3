-- name: RunStart :one
-- Records the start of an attempt. Earlier attempts of the same task still
-- marked running belonged to a worker that died (River rescued the task), so
-- they are closed as abandoned in the same statement. A repeated attempt
-- number (River gives an attempt back when a shutdown interrupts it) reuses
-- its row: one row per attempt, always.
WITH abandoned AS (
    UPDATE runs
    SET status = 'abandoned',
        error_code = 'worker_lost',
        error = 'the worker running this attempt stopped without finishing it',
        finished_at = now(),
        duration_ms = EXTRACT(EPOCH FROM now() - runs.started_at) * 1000
    WHERE runs.task_id = @task_id AND runs.attempt < @attempt AND runs.status = 'running'
)
INSERT INTO runs (task_id, attempt, key, task_type, status, worker)
VALUES (@task_id, @attempt, @key, @task_type, 'running', @worker)
ON CONFLICT (task_id, attempt) DO UPDATE
SET status = 'running',
    error_code = NULL,
    error = NULL,
    finished_at = NULL,
    duration_ms = NULL,
    worker = EXCLUDED.worker,
    started_at = now(),
    interruptions = runs.interruptions + 1
RETURNING id;

-- name: RunFinish :exec
UPDATE runs
SET status = @status,
    error_code = sqlc.narg(error_code),
    error = sqlc.narg(error),
    finished_at = now(),
    duration_ms = @duration_ms
WHERE id = @id;

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
