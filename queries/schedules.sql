-- name: ScheduleInsert :one
-- No row when the owner already has a schedule of that name.
INSERT INTO schedules (owner, name, cron, every_seconds, time_zone, task, missed)
VALUES (@owner, @name, @cron, @every_seconds, @time_zone, @task, @missed)
ON CONFLICT (owner, name) DO NOTHING
RETURNING *;

-- name: ScheduleLockOwner :exec
-- Holds owner's schedules still until the transaction ends: a create or a
-- resume counts the owner's schedules and sums their ticks, then writes,
-- under it, so parallel ones cannot all pass the same count. Other
-- owners' are not held (a hash collision only makes two owners wait on
-- each other).
SELECT pg_advisory_xact_lock(hashtextextended('taskrunner_schedules:' || @owner::text, 0));

-- name: ScheduleOwnerTimings :many
-- The timing of every schedule of owner, paused or not: what its count
-- and its ticks a minute are computed from. Never the task.
SELECT name, cron, every_seconds, time_zone, paused FROM schedules WHERE owner = @owner ORDER BY name;

-- name: ScheduleGet :one
SELECT * FROM schedules WHERE owner = @owner AND name = @name;

-- name: ScheduleList :many
-- By owner and name. An empty owner lists every owner's; the cursor is the
-- owner and name of the previous page's last schedule.
SELECT * FROM schedules
WHERE (@owner::text = '' OR owner = @owner::text)
  AND (owner, name) > (@after_owner::text, @after_name::text)
ORDER BY owner, name
LIMIT @max_rows;

-- name: ScheduleActiveTimings :many
-- Every schedule that ticks, with what its ticks are made from: what each
-- working process's River client schedules. Never the task, which the
-- tick reads when it fires: every process reads this every 30 s.
SELECT owner, name, cron, every_seconds, time_zone, missed, active_since FROM schedules WHERE NOT paused ORDER BY owner, name;

-- name: ScheduleSetPaused :one
-- Resuming moves active_since, so ticks passed while paused stay passed.
UPDATE schedules
SET paused = @paused::boolean,
    active_since = CASE WHEN paused AND NOT @paused::boolean THEN now() ELSE active_since END
WHERE owner = @owner AND name = @name
RETURNING *;

-- name: ScheduleDelete :execrows
DELETE FROM schedules WHERE owner = @owner AND name = @name;

-- name: ScheduleClaimTick :one
-- Claims a tick for its task: no row when the schedule is gone or paused,
-- when the tick comes before it was created or resumed, or when this tick
-- or a later one was claimed already. last_tick_at only moves forward, so
-- no tick is claimed twice. previous_tick_at is the last tick before this
-- one (null before the first).
UPDATE schedules s
SET last_tick_at = @tick::timestamptz
FROM (
    SELECT c.owner, c.name, c.last_tick_at AS previous_tick_at FROM schedules c
    WHERE c.owner = @owner AND c.name = @name
    FOR UPDATE
) p
WHERE s.owner = p.owner AND s.name = p.name
  AND NOT s.paused
  AND @tick::timestamptz >= s.active_since
  AND (s.last_tick_at IS NULL OR s.last_tick_at < @tick::timestamptz)
RETURNING s.*, p.previous_tick_at;

-- name: ScheduleSkipTicks :exec
-- Counts ticks claimed that enqueued no task because the owner's enqueue
-- limit was used up; last_skipped_at is the latest of them. Call it in
-- the transaction that claimed them.
UPDATE schedules
SET skipped_ticks = skipped_ticks + @skipped::bigint,
    last_skipped_at = greatest(last_skipped_at, @last_skipped::timestamptz)
WHERE owner = @owner AND name = @name;

-- name: ScheduleTaskIDs :many
-- A schedule's newest tasks (those retention has not removed).
SELECT id FROM river_job
WHERE metadata ? 'schedule'
  AND metadata ->> 'owner' = @owner::text
  AND metadata ->> 'schedule' = @name::text
ORDER BY id DESC
LIMIT @max_rows;
