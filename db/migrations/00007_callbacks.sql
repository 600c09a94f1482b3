-- +goose Up

-- Callbacks. A task that asked for one carries its URL in its River
-- metadata (callback_url). When such a task reaches a final state
-- (completed, discarded, cancelled), this trigger inserts a
-- taskrunner_callback River job in the same transaction as the update that
-- wrote the state, whichever path wrote it: River's completer, JobCancel
-- of a queued task, the rescuer discarding a lost task, an operator's SQL.
-- The delivery is therefore committed exactly when the final state is, and
-- cannot be lost to a process that dies just after the task finished; no
-- delivery is made for a task that did not finish. The job carries a
-- delivery id, the event, and the task id; the worker reads the task and
-- its URL when it delivers. Its max_attempts is River's ceiling: the
-- worker stops at CALLBACK_MAX_ATTEMPTS itself (the job ends discarded).
-- An insert notification wakes idle workers of the queue at once, as
-- River's own inserts do.
-- +goose StatementBegin
CREATE FUNCTION taskrunner_enqueue_callback() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO %I.river_job (args, kind, max_attempts, queue, state) VALUES ($1, $2, 100, $3, ''available'')',
        TG_TABLE_SCHEMA)
    USING jsonb_build_object(
            'task_id', NEW.id,
            'event', 'task.' || NEW.state::text,
            'delivery_id', gen_random_uuid()::text),
          'taskrunner_callback', 'default';
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.river_insert', '{"queue": "default"}');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER taskrunner_enqueue_callback
AFTER UPDATE OF state ON river_job
FOR EACH ROW
WHEN (NEW.state IN ('completed', 'discarded', 'cancelled')
      AND OLD.state IS DISTINCT FROM NEW.state
      AND NEW.metadata ? 'callback_url')
EXECUTE FUNCTION taskrunner_enqueue_callback();

-- One row per delivery attempt of a task's callback. Rows outlive the task
-- in river_job, as runs do, until ARTIFACT_RETENTION.
CREATE TABLE callback_attempts (
    id          bigserial PRIMARY KEY,
    task_id     bigint NOT NULL,
    delivery_id uuid NOT NULL,
    event       text NOT NULL,
    attempt     integer NOT NULL,
    -- null when no answer came (a timeout, a refused connection)
    status_code integer,
    latency_ms  double precision NOT NULL,
    -- what went wrong, safe to show the task's owner; null when delivered
    error       text,
    -- delivered: a 2xx answer; gave_up: the last attempt failed
    delivered   boolean NOT NULL,
    gave_up     boolean NOT NULL DEFAULT false,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX callback_attempts_task_id ON callback_attempts (task_id, id);
CREATE INDEX callback_attempts_at ON callback_attempts (at);

-- +goose Down
DROP TABLE callback_attempts;
DROP TRIGGER taskrunner_enqueue_callback ON river_job;
DROP FUNCTION taskrunner_enqueue_callback();
