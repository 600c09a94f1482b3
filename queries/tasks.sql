-- name: TaskGet :one
-- A task: never one of taskrunner's own jobs (kinds starting with
-- taskrunner_: schedule ticks, callback deliveries, retention), which are
-- no tenant's task to see or act on, whatever their metadata says.
SELECT * FROM tasks WHERE id = @id AND NOT starts_with(type, 'taskrunner_');

-- The three queries below select tasks by one filter (taskrunner.Filter)
-- with the same WHERE clause over river_job: keep them in step. Each
-- condition reads as the tasks view's column of the same name (owner,
-- error_code), and the OR short-circuits, so the latest failed run is read
-- only when error_code filters. An empty text, an empty list or a NULL
-- means no filter. kinds limits the match to task types (the bulk actions
-- never touch taskrunner's own jobs). A queue matches its tenants' queues
-- too: those starting with tenant_queue_prefix (jobs.TenantQueuePrefix).

-- name: TaskList :many
-- Newest first. The cursor is the id of the last task of the previous page.
SELECT * FROM tasks WHERE tasks.id = ANY(ARRAY(
    SELECT j.id FROM river_job j
    WHERE (@task_type::text = '' OR j.kind = @task_type::text)
      AND (coalesce(cardinality(@kinds::text[]), 0) = 0 OR j.kind = ANY(@kinds::text[]))
      AND (@owner::text = '' OR coalesce(j.metadata ->> 'owner', 'local') = @owner::text)
      AND (coalesce(cardinality(@statuses::text[]), 0) = 0 OR j.state = ANY(CAST(@statuses::text[] AS river_job_state[])))
      AND (sqlc.narg(created_after)::timestamptz IS NULL OR j.created_at > sqlc.narg(created_after)::timestamptz)
      AND (sqlc.narg(created_before)::timestamptz IS NULL OR j.created_at < sqlc.narg(created_before)::timestamptz)
      AND (@queue::text = '' OR j.queue = @queue::text OR starts_with(j.queue, @tenant_queue_prefix::text))
      AND (sqlc.narg(params)::jsonb IS NULL OR j.args @> sqlc.narg(params)::jsonb)
      AND (@error_code::text = '' OR @error_code::text = CASE
            WHEN j.state = 'completed' THEN NULL
            WHEN j.state = 'cancelled' THEN 'task_cancelled'
            ELSE coalesce(
                (SELECT r.error_code FROM runs r WHERE r.task_id = j.id AND r.error_code IS NOT NULL ORDER BY r.attempt DESC LIMIT 1),
                CASE WHEN j.state = 'discarded' THEN 'task_failed' END)
          END)
      AND (@before_id::bigint = 0 OR j.id < @before_id::bigint)
    ORDER BY j.id DESC
    LIMIT @max_rows))
ORDER BY tasks.id DESC;

-- name: TaskMatchCount :one
SELECT count(*) FROM river_job j
WHERE (@task_type::text = '' OR j.kind = @task_type::text)
  AND (coalesce(cardinality(@kinds::text[]), 0) = 0 OR j.kind = ANY(@kinds::text[]))
  AND (@owner::text = '' OR coalesce(j.metadata ->> 'owner', 'local') = @owner::text)
  AND (coalesce(cardinality(@statuses::text[]), 0) = 0 OR j.state = ANY(CAST(@statuses::text[] AS river_job_state[])))
  AND (sqlc.narg(created_after)::timestamptz IS NULL OR j.created_at > sqlc.narg(created_after)::timestamptz)
  AND (sqlc.narg(created_before)::timestamptz IS NULL OR j.created_at < sqlc.narg(created_before)::timestamptz)
  AND (@queue::text = '' OR j.queue = @queue::text OR starts_with(j.queue, @tenant_queue_prefix::text))
  AND (sqlc.narg(params)::jsonb IS NULL OR j.args @> sqlc.narg(params)::jsonb)
  AND (@error_code::text = '' OR @error_code::text = CASE
        WHEN j.state = 'completed' THEN NULL
        WHEN j.state = 'cancelled' THEN 'task_cancelled'
        ELSE coalesce(
            (SELECT r.error_code FROM runs r WHERE r.task_id = j.id AND r.error_code IS NOT NULL ORDER BY r.attempt DESC LIMIT 1),
            CASE WHEN j.state = 'discarded' THEN 'task_failed' END)
      END);

-- name: TaskMatchIDs :many
-- A page of the ids of matching tasks, oldest first, after after_id and up
-- to through_id (the newest task when a bulk action began: tasks created
-- while it runs are not its business).
SELECT j.id FROM river_job j
WHERE (@task_type::text = '' OR j.kind = @task_type::text)
  AND (coalesce(cardinality(@kinds::text[]), 0) = 0 OR j.kind = ANY(@kinds::text[]))
  AND (@owner::text = '' OR coalesce(j.metadata ->> 'owner', 'local') = @owner::text)
  AND (coalesce(cardinality(@statuses::text[]), 0) = 0 OR j.state = ANY(CAST(@statuses::text[] AS river_job_state[])))
  AND (sqlc.narg(created_after)::timestamptz IS NULL OR j.created_at > sqlc.narg(created_after)::timestamptz)
  AND (sqlc.narg(created_before)::timestamptz IS NULL OR j.created_at < sqlc.narg(created_before)::timestamptz)
  AND (@queue::text = '' OR j.queue = @queue::text OR starts_with(j.queue, @tenant_queue_prefix::text))
  AND (sqlc.narg(params)::jsonb IS NULL OR j.args @> sqlc.narg(params)::jsonb)
  AND (@error_code::text = '' OR @error_code::text = CASE
        WHEN j.state = 'completed' THEN NULL
        WHEN j.state = 'cancelled' THEN 'task_cancelled'
        ELSE coalesce(
            (SELECT r.error_code FROM runs r WHERE r.task_id = j.id AND r.error_code IS NOT NULL ORDER BY r.attempt DESC LIMIT 1),
            CASE WHEN j.state = 'discarded' THEN 'task_failed' END)
      END)
  AND j.id > @after_id::bigint AND j.id <= @through_id::bigint
ORDER BY j.id
LIMIT @max_rows;

-- name: TaskMaxID :one
SELECT coalesce(max(id), 0)::bigint FROM river_job;

-- name: TaskLockInStates :many
-- Locks those of the given tasks still in one of the states, for a bulk
-- action's page: what changed state since it was matched is left alone.
SELECT id FROM river_job
WHERE id = ANY(@ids::bigint[]) AND state = ANY(CAST(@states::text[] AS river_job_state[]))
ORDER BY id
FOR UPDATE;

-- name: TaskCountByState :many
SELECT state::text AS state, count(*)::bigint AS count FROM river_job GROUP BY state;

-- name: TaskProgressSet :exec
-- Stores a running attempt's latest progress in its job's metadata and
-- announces it on the channel of the taskrunner_task_state trigger (which
-- speaks only of state changes), so long polls and event streams in every
-- process read the task again. A job no longer running that attempt is
-- left alone.
WITH updated AS (
    UPDATE river_job
    SET metadata = jsonb_set(metadata, '{progress}', @progress::jsonb)
    WHERE id = @id::bigint AND attempt = @attempt::smallint AND state = 'running'
    RETURNING id, state
)
SELECT pg_notify('taskrunner_task_state', updated.id::text || ':' || updated.state::text) FROM updated;
