-- +goose Up

-- Files attached to or produced by tasks. A row exists only for an object
-- that is stored in MinIO: the object is written first, and removed again
-- if its row cannot be.
CREATE TABLE artifacts (
    id            uuid PRIMARY KEY,
    task_id       bigint NOT NULL,
    type          text NOT NULL,
    name          text NOT NULL,
    content_type  text NOT NULL,
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    sha256        text NOT NULL,
    bucket        text NOT NULL,
    object_key    text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX artifacts_task_id_idx ON artifacts (task_id, created_at);
CREATE INDEX artifacts_created_at_idx ON artifacts (created_at);

-- +goose Down
DROP TABLE artifacts;
