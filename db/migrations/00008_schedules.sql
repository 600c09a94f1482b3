-- +goose Up

-- Schedules: a task request enqueued at each tick of a five-field cron
-- expression (in a time zone) or of a fixed interval. The River leader's
-- periodic-job enqueuer fires the ticks (every working process keeps its
-- River client's periodic jobs in step with this table, told of changes by
-- the notification below); a tick job then claims its tick here, in the
-- transaction that inserts the task: last_tick_at only moves forward, so
-- no tick is enqueued twice, whichever leader fires it and however often.
CREATE TABLE schedules (
    owner         text NOT NULL,
    name          text NOT NULL,
    -- Exactly one of cron and every_seconds.
    cron          text,
    every_seconds bigint,
    time_zone     text NOT NULL DEFAULT 'UTC',
    -- The task to enqueue, as POST /tasks takes it (validated at create).
    task          jsonb NOT NULL,
    -- What a tick missed while no leader ran becomes: run_once fires the
    -- latest missed tick once when a leader comes back; skip drops it.
    missed        text NOT NULL DEFAULT 'run_once' CHECK (missed IN ('run_once', 'skip')),
    paused        boolean NOT NULL DEFAULT false,
    -- Ticks before active_since are never fired: it is the creation time,
    -- and moves to the resume time, so ticks passed while paused stay
    -- passed.
    active_since  timestamptz NOT NULL DEFAULT now(),
    last_tick_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, name),
    CHECK ((cron IS NULL) <> (every_seconds IS NULL)),
    CHECK (every_seconds IS NULL OR every_seconds >= 1)
);

-- Every working process re-reads the schedules when they change.
-- +goose StatementBegin
CREATE FUNCTION taskrunner_schedules_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskrunner_schedules', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- A tick moving last_tick_at is no change to what is scheduled.
CREATE TRIGGER taskrunner_schedules_changed
AFTER INSERT OR DELETE OR UPDATE OF cron, every_seconds, time_zone, missed, paused, active_since ON schedules
FOR EACH STATEMENT
EXECUTE FUNCTION taskrunner_schedules_changed();

-- The tasks of a schedule carry its name and their tick in their River
-- metadata. No tick makes two tasks: the guard on last_tick_at already
-- ensures it, and this index makes the database refuse it too.
CREATE UNIQUE INDEX taskrunner_river_job_schedule_tick_idx
ON river_job ((metadata ->> 'owner'), (metadata ->> 'schedule'), (metadata ->> 'schedule_tick'))
WHERE metadata ? 'schedule_tick';

-- A schedule's latest tasks (GET /schedules/{name}).
CREATE INDEX taskrunner_river_job_schedule_idx
ON river_job ((metadata ->> 'owner'), (metadata ->> 'schedule'), id DESC)
WHERE metadata ? 'schedule';

-- +goose Down
DROP INDEX taskrunner_river_job_schedule_idx;
DROP INDEX taskrunner_river_job_schedule_tick_idx;
DROP TABLE schedules;
DROP FUNCTION taskrunner_schedules_changed();
