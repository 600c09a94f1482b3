-- +goose Up

-- Every change of a task's state is announced on the channel
-- taskrunner_task_state as "id:state" items, comma-separated, so API
-- processes can end long polls and event streams of tasks worked by any
-- process. One statement-level trigger per UPDATE (River completes jobs in
-- batches); payloads are split to stay under PostgreSQL's 8000 bytes.
-- +goose StatementBegin
CREATE FUNCTION taskrunner_notify_task_state() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    FOR payload IN
        SELECT string_agg(c.id::text || ':' || c.state::text, ',')
        FROM (
            SELECT n.id, n.state, (row_number() OVER ()) / 300 AS chunk
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.state IS DISTINCT FROM o.state
        ) c
        GROUP BY c.chunk
    LOOP
        PERFORM pg_notify('taskrunner_task_state', payload);
    END LOOP;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER taskrunner_task_state
AFTER UPDATE ON river_job
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION taskrunner_notify_task_state();

-- +goose Down
DROP TRIGGER taskrunner_task_state ON river_job;
DROP FUNCTION taskrunner_notify_task_state();
