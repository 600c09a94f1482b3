-- +goose Up

-- The key index (00001) kept each key's runs newest first: every run
-- recorded for a key went in at the front of the key's entries, on the
-- same leaf page, which split in half again and again. Oldest first, a
-- key's new runs go in at the end of its entries, where B-tree pages fill
-- before they split. latest_run_for_key reads the index backward, as
-- fast as forward. The index is built again under a lock that holds run
-- writes until it is done (about 2 s per million runs): the run writer
-- keeps their records and writes them after.
DROP INDEX runs_key_started_at_idx;
CREATE INDEX runs_key_started_at_idx ON runs (key, started_at);

-- +goose Down
DROP INDEX runs_key_started_at_idx;
CREATE INDEX runs_key_started_at_idx ON runs (key, started_at DESC);
