-- name: TaskGet :one
SELECT * FROM tasks WHERE id = @id;

-- name: TaskList :many
-- Newest first. The cursor is the id of the last task of the previous page.
SELECT * FROM tasks
-- An empty type or owner, no statuses or a zero cursor means no filter.
WHERE (@task_type::text = '' OR type = @task_type::text)
  AND (@owner::text = '' OR owner = @owner::text)
  AND (coalesce(cardinality(@statuses::text[]), 0) = 0 OR status = ANY(CAST(@statuses::text[] AS river_job_state[])))
  AND (@before_id::bigint = 0 OR id < @before_id::bigint)
ORDER BY id DESC
LIMIT @max_rows;

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
