-- +goose Up

-- The state trigger (00003) joins a statement's old and new rows by id.
-- PL/pgSQL plans that query once per connection and keeps the plan, sized
-- for the rows of the first statement it ran for. After a one-row change
-- (River fetching a single job) the kept plan is a nested loop, and on the
-- same connection a later completion of 5,000 jobs compared 25 million
-- pairs: River's completer waited 1.6 s on one UPDATE, at full CPU, while
-- workers stood idle. With nested loops off inside the function the join
-- is a hash or merge join, whatever size it was planned for.
ALTER FUNCTION taskrunner_notify_task_state() SET enable_nestloop = off;

-- +goose Down
ALTER FUNCTION taskrunner_notify_task_state() RESET enable_nestloop;
