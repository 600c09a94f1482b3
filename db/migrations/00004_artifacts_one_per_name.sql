-- +goose Up

-- One artifact per task and name: a retried search or fetch, or a repeated
-- PUT of the same name, replaces the artifact instead of adding another.
-- Of the duplicates already stored, the newest is kept; the objects of the
-- others lose their rows, and retention's sweep of objects without a row
-- removes them once they are an hour old.
DELETE FROM artifacts a
USING artifacts newer
WHERE newer.task_id = a.task_id AND newer.name = a.name
  AND (newer.created_at, newer.id) > (a.created_at, a.id);

CREATE UNIQUE INDEX artifacts_task_id_name_key ON artifacts (task_id, name);

-- +goose Down
-- The duplicates removed on the way up are not restored.
DROP INDEX artifacts_task_id_name_key;
