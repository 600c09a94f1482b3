-- A tenant's bulk action slots: session advisory locks on the two-key
-- form (tenant key, slot), held by the connection that runs the action,
-- so a slot is free again as soon as its action ends or its connection
-- dies, in whichever process.

-- name: BulkSlotTryLock :one
SELECT pg_try_advisory_lock(@tenant_key::int, @slot::int);

-- name: BulkSlotUnlock :one
SELECT pg_advisory_unlock(@tenant_key::int, @slot::int);

-- name: StatementTimeoutSetLocal :exec
-- Bounds each statement of the current transaction that follows
-- (timeout: "250ms", "5s"; PostgreSQL's statement_timeout).
SELECT set_config('statement_timeout', @timeout::text, true);
