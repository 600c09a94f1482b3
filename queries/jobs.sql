-- name: InternalJobsDeleteFinished :execrows
-- Deletes a batch of taskrunner's own jobs (kinds starting with
-- taskrunner_) finished more than @retention_seconds ago, oldest first.
-- Reads the partial index taskrunner_river_job_internal_finalized_idx
-- (migration 00015), which holds finished internal jobs only: the tasks
-- River keeps for TASK_RETENTION are never scanned.
DELETE FROM river_job
WHERE id IN (
    SELECT j.id FROM river_job j
    WHERE starts_with(j.kind, 'taskrunner_')
      AND j.finalized_at IS NOT NULL
      AND j.finalized_at < now() - make_interval(secs => @retention_seconds::double precision)
      AND j.state IN ('completed', 'cancelled', 'discarded')
    ORDER BY j.finalized_at
    LIMIT @max_rows::int
);
