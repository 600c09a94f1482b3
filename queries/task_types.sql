-- name: TaskTypePut :one
-- Inserts the type, or replaces every field of the one of that name but
-- its created_at.
INSERT INTO task_types (name, mode, params_schema, timeout_seconds, max_retries, push_url)
VALUES (@name, @mode, @params_schema, @timeout_seconds, @max_retries, @push_url)
ON CONFLICT (name) DO UPDATE
SET mode = excluded.mode, params_schema = excluded.params_schema, timeout_seconds = excluded.timeout_seconds,
    max_retries = excluded.max_retries, push_url = excluded.push_url, updated_at = now()
RETURNING *;

-- name: TaskTypeCount :one
SELECT count(*) FROM task_types;

-- name: TaskTypeGet :one
SELECT * FROM task_types WHERE name = @name;

-- name: TaskTypeList :many
-- Every type, by name: a process keeps them all in memory (their number
-- is bounded when they are put).
SELECT * FROM task_types ORDER BY name;

-- name: TaskTypeDelete :execrows
DELETE FROM task_types WHERE name = @name;

-- name: TaskTypeHasUnfinishedTasks :one
-- Whether a task of kind is waiting or running: River's index on
-- (kind) finds them.
SELECT EXISTS (
    SELECT 1 FROM river_job
    WHERE kind = @kind AND state IN ('available', 'pending', 'retryable', 'running', 'scheduled')
)::boolean;

-- name: TaskTypeLock :exec
-- Holds the catalog still until the transaction ends: a put counts the
-- types, then writes, under it, so parallel puts cannot all pass the same
-- count.
SELECT pg_advisory_xact_lock(hashtextextended('taskrunner_task_types', 0));

-- name: TaskTypeCancelWaitingTasks :execrows
-- Cancels the tasks of kind that wait (a forced delete of their type):
-- none of them could ever run. Like River's own cancel of a job that is
-- not running, it finalizes them now and notes when the cancel was asked;
-- the state trigger sends their callbacks.
UPDATE river_job
SET state = 'cancelled',
    finalized_at = now(),
    metadata = jsonb_set(metadata, '{cancel_attempted_at}', to_jsonb(now()))
WHERE kind = @kind AND state IN ('available', 'pending', 'retryable', 'scheduled');
