-- +goose Up

-- A task's error is its latest failed run's stable code and the message
-- clients may see, never River's raw error text (which can name hosts,
-- keys or Go types; River UI and river_job.errors keep it for operators).
-- A cancelled task's error is task_cancelled, whatever ended its attempts;
-- a discarded task with no run to tell why is task_failed. (The two
-- messages are those of jobs.PublicMessage.)
CREATE OR REPLACE VIEW tasks AS
SELECT
    j.id,
    j.kind AS type,
    j.state AS status,
    j.args AS params,
    j.metadata -> 'output' AS result,
    CASE
        WHEN j.state = 'completed' THEN NULL
        WHEN j.state = 'cancelled' AND r.error_code = 'task_cancelled' THEN r.error
        WHEN j.state = 'cancelled' THEN 'the task was cancelled'
        WHEN j.state = 'discarded' THEN coalesce(r.error, 'the task failed; the server log has the details')
        ELSE r.error
    END AS error,
    j.attempt,
    j.max_attempts,
    j.priority,
    j.queue,
    (j.metadata ->> 'timeout_seconds')::double precision AS timeout_seconds,
    j.created_at,
    j.scheduled_at,
    j.attempted_at AS started_at,
    j.finalized_at AS finished_at,
    j.metadata,
    CASE
        WHEN j.state = 'completed' THEN NULL
        WHEN j.state = 'cancelled' THEN 'task_cancelled'
        WHEN j.state = 'discarded' THEN coalesce(r.error_code, 'task_failed')
        ELSE r.error_code
    END AS error_code
FROM river_job j
LEFT JOIN LATERAL (
    SELECT runs.error_code, runs.error
    FROM runs
    WHERE runs.task_id = j.id AND runs.error_code IS NOT NULL
    ORDER BY runs.attempt DESC
    LIMIT 1
) r ON true;

-- +goose Down
DROP VIEW tasks;
CREATE VIEW tasks AS
SELECT
    j.id,
    j.kind AS type,
    j.state AS status,
    j.args AS params,
    j.metadata -> 'output' AS result,
    (j.errors[array_upper(j.errors, 1)]) ->> 'error' AS error,
    j.attempt,
    j.max_attempts,
    j.priority,
    j.queue,
    (j.metadata ->> 'timeout_seconds')::double precision AS timeout_seconds,
    j.created_at,
    j.scheduled_at,
    j.attempted_at AS started_at,
    j.finalized_at AS finished_at,
    j.metadata
FROM river_job j;
