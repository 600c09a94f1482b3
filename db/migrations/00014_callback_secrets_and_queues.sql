-- +goose Up

-- Each tenant signs its callbacks with a secret of its own, derived from
-- CALLBACK_SECRET and a generation (callback.DeriveSecret): nothing secret
-- is stored here, only which generation is current, and until when the
-- one before it still signs too after a rotation. A tenant without a row
-- is at generation 0.
CREATE TABLE callback_secret_generations (
    owner                    text PRIMARY KEY,
    generation               bigint NOT NULL CHECK (generation >= 0),
    -- the previous generation signs too until then; null: it does not
    previous_generation_until timestamptz,
    rotated_at               timestamptz NOT NULL DEFAULT now()
);

-- Deliveries go to the River queue the task's metadata names
-- (callback_queue: the tenant's own delivery queue), so that one tenant's
-- slow receivers hold only its own workers. Tasks enqueued before this
-- migration name none: theirs go to 'default', as before.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION taskrunner_enqueue_callback() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    q text := coalesce(NEW.metadata->>'callback_queue', 'default');
BEGIN
    EXECUTE format(
        'INSERT INTO %I.river_job (args, kind, max_attempts, queue, state) VALUES ($1, $2, 100, $3, ''available'')',
        TG_TABLE_SCHEMA)
    USING jsonb_build_object(
            'task_id', NEW.id,
            'event', 'task.' || NEW.state::text,
            'delivery_id', gen_random_uuid()::text),
          'taskrunner_callback', q;
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.river_insert', jsonb_build_object('queue', q)::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION taskrunner_enqueue_callback() RETURNS trigger
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

DROP TABLE callback_secret_generations;
