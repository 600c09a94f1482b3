-- name: CallbackAttemptInsert :exec
INSERT INTO callback_attempts (task_id, delivery_id, event, attempt, status_code, latency_ms, error, delivered, gave_up)
VALUES (@task_id, @delivery_id, @event, @attempt, @status_code, @latency_ms, @error, @delivered, @gave_up);

-- name: CallbackAttemptsForTask :many
-- Oldest first.
SELECT * FROM callback_attempts WHERE task_id = @task_id ORDER BY id LIMIT 1000;

-- name: CallbackAttemptsDeleteBefore :execrows
DELETE FROM callback_attempts WHERE at < @before;

-- name: CallbackAttemptTallies :many
-- How the callbacks of the given tasks went so far, one row per task with
-- any attempt.
SELECT task_id, count(*)::int AS attempts, bool_or(delivered)::bool AS delivered, bool_or(gave_up)::bool AS gave_up
FROM callback_attempts
WHERE task_id = ANY(@task_ids::bigint[])
GROUP BY task_id;
