-- +goose Up

-- A run is named by its task and attempt: the primary key is the unique
-- (task_id, attempt) index every write and read of runs already used, and
-- the index on id goes. Every run costs one index fewer, on disk and on
-- each insert. id stays, numbered by its sequence as before: the API shows
-- it, but nothing looks a run up by it. Metrics and notes name their run
-- the same way, so writing them needs no lookup of the run's id.
ALTER TABLE run_metrics ADD COLUMN task_id bigint, ADD COLUMN attempt integer;
UPDATE run_metrics m SET task_id = r.task_id, attempt = r.attempt FROM runs r WHERE r.id = m.run_id;
ALTER TABLE run_notes ADD COLUMN task_id bigint, ADD COLUMN attempt integer;
UPDATE run_notes n SET task_id = r.task_id, attempt = r.attempt FROM runs r WHERE r.id = n.run_id;

ALTER TABLE run_metrics DROP CONSTRAINT run_metrics_pkey, DROP COLUMN run_id;
ALTER TABLE run_notes DROP COLUMN run_id; -- its index and foreign key go with it

ALTER TABLE runs
    DROP CONSTRAINT runs_pkey,
    DROP CONSTRAINT runs_task_attempt_key,
    ADD CONSTRAINT runs_pkey PRIMARY KEY (task_id, attempt);

ALTER TABLE run_metrics
    ALTER COLUMN task_id SET NOT NULL,
    ALTER COLUMN attempt SET NOT NULL,
    ADD PRIMARY KEY (task_id, attempt, name),
    ADD CONSTRAINT run_metrics_run_fkey FOREIGN KEY (task_id, attempt) REFERENCES runs (task_id, attempt) ON DELETE CASCADE;
ALTER TABLE run_notes
    ALTER COLUMN task_id SET NOT NULL,
    ALTER COLUMN attempt SET NOT NULL,
    ADD CONSTRAINT run_notes_run_fkey FOREIGN KEY (task_id, attempt) REFERENCES runs (task_id, attempt) ON DELETE CASCADE;
CREATE INDEX run_notes_task_attempt_idx ON run_notes (task_id, attempt);

-- +goose Down

ALTER TABLE run_metrics DROP CONSTRAINT run_metrics_run_fkey, DROP CONSTRAINT run_metrics_pkey;
ALTER TABLE run_notes DROP CONSTRAINT run_notes_run_fkey;
DROP INDEX run_notes_task_attempt_idx;

ALTER TABLE runs DROP CONSTRAINT runs_pkey;
ALTER TABLE runs ADD CONSTRAINT runs_task_attempt_key UNIQUE (task_id, attempt);
ALTER TABLE runs ADD PRIMARY KEY (id);

ALTER TABLE run_metrics ADD COLUMN run_id bigint;
UPDATE run_metrics m SET run_id = r.id FROM runs r WHERE r.task_id = m.task_id AND r.attempt = m.attempt;
ALTER TABLE run_metrics
    DROP COLUMN task_id,
    DROP COLUMN attempt,
    ALTER COLUMN run_id SET NOT NULL,
    ADD CONSTRAINT run_metrics_run_id_fkey FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE,
    ADD PRIMARY KEY (run_id, name);

ALTER TABLE run_notes ADD COLUMN run_id bigint;
UPDATE run_notes n SET run_id = r.id FROM runs r WHERE r.task_id = n.task_id AND r.attempt = n.attempt;
ALTER TABLE run_notes
    DROP COLUMN task_id,
    DROP COLUMN attempt,
    ALTER COLUMN run_id SET NOT NULL,
    ADD CONSTRAINT run_notes_run_id_fkey FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE;
CREATE INDEX run_notes_run_id_idx ON run_notes (run_id);
