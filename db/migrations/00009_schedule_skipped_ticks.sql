-- +goose Up

-- A tick claimed while its owner's enqueue limit (TASKS_PER_MINUTE, or
-- the tenant's tasks_per_minute) was used up enqueues no task: it is
-- skipped, for good, and counted here in the tick's transaction.
-- last_skipped_at is the latest such tick. Neither column is in the
-- taskrunner_schedules_changed trigger's list: a skip changes nothing
-- that is scheduled.
ALTER TABLE schedules
    ADD COLUMN skipped_ticks   bigint NOT NULL DEFAULT 0 CHECK (skipped_ticks >= 0),
    ADD COLUMN last_skipped_at timestamptz;

-- +goose Down
ALTER TABLE schedules
    DROP COLUMN last_skipped_at,
    DROP COLUMN skipped_ticks;
