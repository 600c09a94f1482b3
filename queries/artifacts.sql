-- name: ArtifactInsert :one
INSERT INTO artifacts (id, task_id, type, name, content_type, size_bytes, sha256, bucket, object_key)
VALUES (@id, @task_id, @type, @name, @content_type, @size_bytes, @sha256, @bucket, @object_key)
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
