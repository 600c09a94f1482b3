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
