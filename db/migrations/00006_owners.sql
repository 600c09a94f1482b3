-- +goose Up

-- Every task and artifact has an owner: the tenant (the API key's name)
-- that submitted it. A task's owner is in its River metadata ("owner"), set
-- at insert; the tasks view shows it. A job without one (those taskrunner
-- enqueues itself, and every task submitted before owners existed) belongs
-- to local, the admin tenant: API_KEYS may not name local, so only admins
-- see such tasks.
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
    END AS error_code,
    coalesce(j.metadata ->> 'owner', 'local') AS owner
FROM river_job j
LEFT JOIN LATERAL (
    SELECT runs.error_code, runs.error
    FROM runs
    WHERE runs.task_id = j.id AND runs.error_code IS NOT NULL
    ORDER BY runs.attempt DESC
    LIMIT 1
) r ON true;

-- A tenant's page of tasks, newest first, without reading other tenants'.
CREATE INDEX taskrunner_river_job_owner_idx ON river_job ((coalesce(metadata ->> 'owner', 'local')), id DESC);

-- An artifact keeps its owner (its task's, when it was stored) after
-- retention has removed the task. Existing artifacts belong to their
-- task's owner, which for tasks from before owners is local; so does a row
-- written without one, which only admins then see.
ALTER TABLE artifacts ADD COLUMN owner text NOT NULL DEFAULT 'local';
UPDATE artifacts a SET owner = j.metadata ->> 'owner'
FROM river_job j WHERE j.id = a.task_id AND j.metadata ->> 'owner' IS NOT NULL;

-- +goose Down
ALTER TABLE artifacts DROP COLUMN owner;
DROP INDEX taskrunner_river_job_owner_idx;
DROP VIEW tasks;
CREATE VIEW tasks AS
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

