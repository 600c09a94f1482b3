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
