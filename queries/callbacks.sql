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

-- name: CallbackSecretGeneration :one
-- A tenant's signing secret generation; no row: generation 0.
SELECT generation, previous_generation_until FROM callback_secret_generations WHERE owner = @owner;

-- name: CallbackSecretRotate :one
-- Starts a rotation: the next generation, the previous one signing too
-- until @previous_until. The upsert locks the tenant's row, so concurrent
-- rotations each step once, one after the other.
INSERT INTO callback_secret_generations AS g (owner, generation, previous_generation_until, rotated_at)
VALUES (@owner, 1, @previous_until, now())
ON CONFLICT (owner) DO UPDATE
SET generation = g.generation + 1, previous_generation_until = EXCLUDED.previous_generation_until, rotated_at = now()
RETURNING generation, previous_generation_until;
