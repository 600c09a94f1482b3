-- +goose Up

-- taskrunner's own jobs (schedule ticks, callback deliveries, retention,
-- the run sweep: kinds starting with taskrunner_) stay in river_job only
-- INTERNAL_JOB_RETENTION once finished, an hour by default, while tasks
-- stay TASK_RETENTION, days. The job that deletes them reads this index,
-- which holds finished internal jobs only, oldest first: River's own
-- (state, finalized_at) index would have it step over every finished
-- task. Tasks are never in it, so it costs their inserts and updates
-- nothing. It is built under a lock that holds writes to river_job until
-- it is done (one pass over the table).
CREATE INDEX taskrunner_river_job_internal_finalized_idx ON river_job (finalized_at)
WHERE starts_with(kind, 'taskrunner_') AND finalized_at IS NOT NULL;

-- +goose Down
DROP INDEX taskrunner_river_job_internal_finalized_idx;
