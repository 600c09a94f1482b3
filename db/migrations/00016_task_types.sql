-- +goose Up

-- Task types defined at run time (PUT /task-types/{name}): their tasks are
-- River jobs of kind name, worked outside the server's own workers (pull
-- workers claim them over HTTP; push types are posted to push_url). The
-- checks repeat the API's rules, so that a row written by hand obeys them
-- too: a name is a lowercase letter then lowercase letters, digits and
-- '_' (63 at most), never starting with taskrunner's own prefix; a push
-- type has a URL and a pull type none.
CREATE TABLE task_types (
    name            text PRIMARY KEY
                    CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$' AND NOT starts_with(name, 'taskrunner_')),
    mode            text NOT NULL CHECK (mode IN ('pull', 'push')),
    params_schema   jsonb NOT NULL,
    -- NULL: the server's defaults (TASK_MAX_RUNTIME_SECONDS, no retries).
    timeout_seconds double precision CHECK (timeout_seconds > 0),
    max_retries     integer CHECK (max_retries >= 0),
    push_url        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((mode = 'push') = (push_url IS NOT NULL))
);

-- +goose Down
DROP TABLE task_types;
