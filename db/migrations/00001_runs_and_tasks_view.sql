-- +goose Up

-- One row per attempt of a task. Rows outlive River's jobs: they are the
-- history that has_been_processed and latest_run_for_key read.
CREATE TABLE runs (
    id             bigserial PRIMARY KEY,
    task_id        bigint NOT NULL,
    attempt        integer NOT NULL CHECK (attempt > 0),
    -- scope-prefixed key, e.g. "echo:5f1c..." or "search:9ab0...".
    key            text NOT NULL,
    task_type      text NOT NULL,
    status         text NOT NULL CHECK (status IN
                       ('running', 'completed', 'failed', 'killed', 'cancelled', 'interrupted', 'abandoned')),
    error_code     text,
    error          text,
    -- which process worked it: River client id.
    worker         text NOT NULL,
    -- times this attempt was interrupted by a shutdown and started again.
    interruptions  integer NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    duration_ms    double precision,
    CONSTRAINT runs_task_attempt_key UNIQUE (task_id, attempt)
);

CREATE INDEX runs_key_started_at_idx ON runs (key, started_at DESC);
CREATE INDEX runs_started_at_idx ON runs (started_at);

-- Numbers attached to a run: latency, result counts, cache hits.
CREATE TABLE run_metrics (
    run_id      bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name        text NOT NULL,
    value       double precision NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, name)
);

-- Free text attached to a run.
CREATE TABLE run_notes (
    id          bigserial PRIMARY KEY,
    run_id      bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    note        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX run_notes_run_id_idx ON run_notes (run_id);

-- A task is a River job: `select * from tasks` reads river_job in the
-- vocabulary of the API.
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

-- +goose Down
DROP VIEW tasks;
DROP TABLE run_notes;
DROP TABLE run_metrics;
DROP TABLE runs;
