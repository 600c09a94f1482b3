-- +goose Up

-- The owner index serves a tenant's list of its own tasks. Tasks of the
-- local tenant (a server without API keys, taskrunner's own jobs) are
-- listed by an administrator, never through it, so they leave it out: on
-- a server without keys no insert or state change of a task writes to it.
-- A query for a named tenant, coalesce(...) = 'alice', implies the
-- predicate, so the planner still uses it.
DROP INDEX taskrunner_river_job_owner_idx;
CREATE INDEX taskrunner_river_job_owner_idx ON river_job ((coalesce(metadata ->> 'owner', 'local')), id DESC)
WHERE coalesce(metadata ->> 'owner', 'local') <> 'local';

-- +goose Down
DROP INDEX taskrunner_river_job_owner_idx;
CREATE INDEX taskrunner_river_job_owner_idx ON river_job ((coalesce(metadata ->> 'owner', 'local')), id DESC);
