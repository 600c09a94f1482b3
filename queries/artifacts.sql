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

-- name: ArtifactsForTask :many
SELECT * FROM artifacts WHERE task_id = @task_id ORDER BY created_at, id;

-- name: ArtifactIDsForTask :many
SELECT id FROM artifacts WHERE task_id = @task_id ORDER BY created_at, id;

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
