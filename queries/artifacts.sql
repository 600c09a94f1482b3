-- name: ArtifactLockByName :one
-- The artifact a new one of the same task and name replaces, locked until
-- the replacement commits.
SELECT bucket, object_key FROM artifacts WHERE task_id = @task_id AND name = @name FOR UPDATE;

-- name: ArtifactUpsert :one
-- Stores an artifact, replacing the task's artifact of the same name (a new
-- id, object and creation time).
INSERT INTO artifacts (id, task_id, type, name, content_type, size_bytes, sha256, bucket, object_key, owner)
VALUES (@id, @task_id, @type, @name, @content_type, @size_bytes, @sha256, @bucket, @object_key, @owner)
ON CONFLICT (task_id, name) DO UPDATE SET
    id = EXCLUDED.id, owner = EXCLUDED.owner, type = EXCLUDED.type, content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes,
    sha256 = EXCLUDED.sha256, bucket = EXCLUDED.bucket, object_key = EXCLUDED.object_key, created_at = now()
RETURNING *;

-- name: ArtifactGet :one
SELECT * FROM artifacts WHERE id = @id;

-- name: ArtifactTaskLock :exec
-- Serialises the transactions that add artifacts to one task until they
-- commit, so that the cap on a task's artifacts holds under concurrent
-- uploads. (A row lock would need a row: the task's first artifact has
-- none to lock, and River's job row is River's.)
SELECT pg_advisory_xact_lock(hashtextextended('taskrunner.artifacts.' || @task_id::bigint, 0));

-- name: ArtifactRoom :one
-- How many artifacts a task has, and whether one of them has the name.
SELECT count(*)::int AS artifacts, coalesce(bool_or(name = @name), false)::boolean AS has_name
FROM artifacts WHERE task_id = @task_id;

-- name: ArtifactsForTaskPage :many
-- A page of a task's artifacts, oldest first, after the cursor's
-- (created_at, id) when paged.
SELECT * FROM artifacts
WHERE task_id = @task_id
  AND (NOT @paged::boolean OR (created_at, id) > (@after_created_at::timestamptz, @after_id::uuid))
ORDER BY created_at, id
LIMIT @max_rows;

-- name: ArtifactIDsForTask :many
-- The ids of a task's first artifacts, oldest first, and how many it has
-- in all.
SELECT id, count(*) OVER ()::int AS total
FROM artifacts WHERE task_id = @task_id ORDER BY created_at, id LIMIT @max_ids;

-- name: ArtifactsDeleteExpired :many
-- Takes a batch of artifacts older than the cutoff out of the table and
-- returns their objects, which the caller removes in the same transaction.
DELETE FROM artifacts
WHERE id IN (
    SELECT a.id FROM artifacts a WHERE a.created_at < @cutoff::timestamptz ORDER BY a.created_at LIMIT @max_rows FOR UPDATE SKIP LOCKED
)
RETURNING bucket, object_key;

-- name: ArtifactKeysStored :many
-- Which of the given objects of a bucket have an artifact row.
SELECT object_key FROM artifacts WHERE bucket = @bucket AND object_key = ANY(@object_keys::text[]);

-- name: ArtifactsDeleteForTasks :many
-- Takes the artifacts of the given tasks out of the table and returns
-- their objects, which the caller removes in the same transaction.
DELETE FROM artifacts WHERE task_id = ANY(@task_ids::bigint[])
RETURNING bucket, object_key;
