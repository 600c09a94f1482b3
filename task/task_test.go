package task_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

const testMaxRuntime = 60 * time.Second

// testBundle is what each test of the task service works with: the service
// over a fresh database, with a River client that only inserts (nothing
// works the tasks, so their statuses stay as the service left them).
type testBundle struct {
	svc  *task.Service
	pool *pgxpool.Pool
	logs *testenv.Logs
}

func setup(t *testing.T, opts ...func(*task.ServiceConfig)) *testBundle {
	t.Helper()
	tdb := testenv.NewDB(t)
	logger, logs := testenv.Logger(t)
	types := builtin.Registry(builtin.Config{
		Search: builtin.SearchConfig{Sources: []string{"brave"}, MaxResults: 10},
		Fetch:  fetch.Config{Allowlist: []string{"example.com"}},
	})
	client, err := jobs.NewClient(jobs.ClientConfig{
		Pool: tdb.Pool, Logger: logger, Types: types,
		Queues: []string{"default"}, MaxRuntime: testMaxRuntime, RescueAfter: 2 * testMaxRuntime,
		Retention: time.Hour,
	})
	require.NoError(t, err)
	cfg := task.ServiceConfig{
		Pool: tdb.Pool, Client: client, Types: types, Logger: logger,
		Limits: task.Limits{MaxRuntime: testMaxRuntime, Queues: []string{"default", "other"}},
	}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := task.NewService(cfg)
	require.NoError(t, err)
	return &testBundle{svc: svc, pool: tdb.Pool, logs: logs}
}

func echo(msg string) *task.Request {
	return &task.Request{Type: "echo", Params: json.RawMessage(`{"msg":` + strconv.Quote(msg) + `}`)}
}

// requireRefusal checks err is a *taskrunner.Error with code, field and a
// message.
func requireRefusal(t *testing.T, err error, code taskrunner.Code, field string) *taskrunner.Error {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, taskrunner.ErrorCode(err), "error: %v", err)
	e := err.(*taskrunner.Error)
	require.Equal(t, field, e.Field)
	require.NotEmpty(t, e.Message)
	return e
}

// submit submits req, which must be accepted.
func (b *testBundle) submit(t *testing.T, req *task.Request, idempotencyKey string) (*taskrunner.Task, bool) {
	t.Helper()
	tk, existing, err := b.svc.Submit(context.Background(), req, idempotencyKey)
	require.NoError(t, err)
	return tk, existing
}

func (b *testBundle) count(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "select count(*) from tasks").Scan(&n))
	return n
}

func TestService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("Validate", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		seconds := func(v float64) *float64 { return &v }
		ints := func(v int) *int { return &v }
		for _, tc := range []struct {
			name    string
			req     task.Request
			code    taskrunner.Code
			field   string
			message string // the whole message, where it matters
		}{
			{"no type", task.Request{}, taskrunner.CodeInvalidParams, "type", "type is required"},
			{"unknown type", task.Request{Type: "nope"}, taskrunner.CodeUnknownTaskType, "type", ""},
			{"missing param", task.Request{Type: "echo", Params: json.RawMessage(`{}`)},
				taskrunner.CodeInvalidParams, "params.msg", "params.msg: is required"},
			{"param of the wrong type", task.Request{Type: "sleep", Params: json.RawMessage(`{"seconds":"1"}`)},
				taskrunner.CodeInvalidParams, "params.seconds", "params.seconds: must be a number"},
			{"unknown param", task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"a","loud":true}`)},
				taskrunner.CodeInvalidParams, "params.loud", "params.loud: is not a known param"},
			{"params not an object", task.Request{Type: "echo", Params: json.RawMessage(`[1]`)},
				taskrunner.CodeInvalidParams, "params", "params: must be a JSON object"},
			{"params as the body", task.Request{Type: "search", Params: json.RawMessage(`{"query":" "}`), ParamsInBody: true},
				taskrunner.CodeInvalidParams, "query", "query: is required"},
			{"params as the body, bad source", task.Request{Type: "search", Params: json.RawMessage(`{"query":"q","sources":["bing"]}`), ParamsInBody: true},
				taskrunner.CodeInvalidParams, "sources", `sources: "bing" is not an allowed source (SEARCH_SOURCE_ALLOWLIST: brave)`},
			{"domain not allowed", task.Request{Type: "fetch", Params: json.RawMessage(`{"url":"https://evil.test/"}`)},
				taskrunner.CodeDomainNotAllowed, "params.url", `params.url: host "evil.test" is not allowed by FETCH_DOMAIN_ALLOWLIST`},
			{"port not allowed", task.Request{Type: "fetch", Params: json.RawMessage(`{"url":"https://example.com:8080/"}`)},
				taskrunner.CodeInvalidParams, "params.url", "params.url: port 8080 is not allowed: only 80, 443 and configured ports"},
			{"zero timeout", task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"a"}`), TimeoutSeconds: seconds(0)},
				taskrunner.CodeInvalidParams, "timeout_seconds", "timeout_seconds must be a positive number of seconds"},
			{"timeout over the cap", task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"a"}`), TimeoutSeconds: seconds(61)},
				taskrunner.CodeInvalidParams, "timeout_seconds", "timeout_seconds must be at most 60 (TASK_MAX_RUNTIME_SECONDS)"},
			{"negative retries", task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"a"}`), MaxRetries: ints(-1)},
				taskrunner.CodeInvalidParams, "max_retries", "max_retries must be between 0 and 100"},
			{"priority out of range", task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"a"}`), Priority: ints(5)},
				taskrunner.CodeInvalidParams, "priority", "priority must be between 1 (first) and 4"},
			{"unknown queue", task.Request{Type: "echo", Params: json.RawMessage(`{"msg":"a"}`), Queue: "nope"},
				taskrunner.CodeInvalidParams, "queue", "queue must be one of: default, other"},
		} {
			_, err := b.svc.Validate(&tc.req)
			e := requireRefusal(t, err, tc.code, tc.field)
			if tc.message != "" {
				require.Equal(t, tc.message, e.Message, tc.name)
			}
		}

		prepared, err := b.svc.Validate(&task.Request{Type: "sleep", Params: json.RawMessage(`{"seconds":1}`), Queue: "other", Priority: ints(2)})
		require.NoError(t, err)
		require.Equal(t, "sleep", prepared.Type())
		p := prepared.RiverParams()
		require.Equal(t, "other", p.InsertOpts.Queue)
		require.Equal(t, 2, p.InsertOpts.Priority)
		require.Zero(t, b.count(t), "Validate touches nothing")
	})

	t.Run("SubmitWithoutIdempotencyKey", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first, existing := b.submit(t, echo("a"), "")
		require.False(t, existing)
		second, existing := b.submit(t, echo("a"), "")
		require.False(t, existing)
		require.NotEqual(t, first.ID, second.ID, "without a key, the same request is two tasks")
		require.Equal(t, taskrunner.StatusAvailable, first.Status)
		require.Equal(t, "echo", first.Type)
		require.JSONEq(t, `{"msg":"a"}`, string(first.Params))
		require.Nil(t, first.TimeoutSeconds, "no timeout of its own when the request gives none: the cap applies")
		var stored bool
		require.NoError(t, b.pool.QueryRow(ctx, "SELECT metadata ? 'timeout_seconds' FROM river_job WHERE id = $1", first.ID).Scan(&stored))
		require.False(t, stored, "metadata holds only what the task set")
		require.Equal(t, 2, b.count(t))

		_, _, err := b.svc.Submit(ctx, &task.Request{Type: "echo"}, "")
		requireRefusal(t, err, taskrunner.CodeInvalidParams, "params.msg")
		require.Equal(t, 2, b.count(t), "a refused request enqueues nothing")
	})

	t.Run("SubmitWithIdempotencyKey", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first, existing := b.submit(t, echo("a"), "alice/k1")
		require.False(t, existing)
		again, existing := b.submit(t, echo("a"), "alice/k1")
		require.True(t, existing, "a repeated key returns the first task")
		require.Equal(t, first.ID, again.ID)
		other, existing := b.submit(t, echo("a"), "alice/k2")
		require.False(t, existing)
		require.NotEqual(t, first.ID, other.ID)

		// Still the first task once it finished.
		_, err := b.svc.Cancel(ctx, first.ID)
		require.NoError(t, err)
		again, existing = b.submit(t, echo("a"), "alice/k1")
		require.True(t, existing)
		require.Equal(t, first.ID, again.ID)
		require.Equal(t, 2, b.count(t))
	})

	for _, coalesce := range []int{0, -1} { // shared inserts, and each its own
		t.Run("SubmitBatch coalesce "+strconv.Itoa(coalesce), func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(cfg *task.ServiceConfig) { cfg.CoalesceInserts = coalesce })
			_, err := b.svc.ValidateBatch(nil, 3)
			requireRefusal(t, err, taskrunner.CodeInvalidParams, "tasks")
			_, err = b.svc.ValidateBatch(make([]task.Request, 4), 3)
			requireRefusal(t, err, taskrunner.CodeBatchTooLarge, "tasks")
			_, err = b.svc.ValidateBatch([]task.Request{*echo("a"), {Type: "echo", Params: json.RawMessage(`{}`)}, *echo("c")}, 3)
			e := requireRefusal(t, err, taskrunner.CodeInvalidParams, "tasks[1].params.msg")
			require.Equal(t, "tasks[1]: params.msg: is required", e.Message)
			_, err = b.svc.ValidateBatch([]task.Request{*echo("a"), {Type: "nope"}}, 3)
			requireRefusal(t, err, taskrunner.CodeUnknownTaskType, "tasks[1].type")
			require.Zero(t, b.count(t))

			params, err := b.svc.ValidateBatch([]task.Request{*echo("a"), *echo("b"), *echo("c")}, 3)
			require.NoError(t, err)
			tasks, err := b.svc.SubmitBatch(ctx, params)
			require.NoError(t, err)
			require.Len(t, tasks, 3)
			for i, msg := range []string{"a", "b", "c"} {
				require.JSONEq(t, `{"msg":"`+msg+`"}`, string(tasks[i].Params), "in the order given")
			}
			require.Equal(t, 3, b.count(t))

			// One insert River refuses refuses the whole batch.
			bad := append(params[:1:1], task.PreparedOf(river.InsertManyParams{Args: builtin.EchoArgs{Msg: "x"}, InsertOpts: &river.InsertOpts{Priority: 9}}))
			_, err = b.svc.SubmitBatch(ctx, bad)
			require.Error(t, err)
			require.Equal(t, 3, b.count(t), "all or none")
		})
	}

	t.Run("Get", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		submitted, _ := b.submit(t, echo("a"), "")
		got, err := b.svc.Get(ctx, submitted.ID)
		require.NoError(t, err)
		require.Equal(t, submitted.ID, got.ID)
		require.Equal(t, taskrunner.StatusAvailable, got.Status)
		require.Nil(t, got.ErrorCode)
		require.Empty(t, got.Runs)
		require.Empty(t, got.ArtifactIDs)

		_, err = b.svc.Get(ctx, submitted.ID+1000)
		requireRefusal(t, err, taskrunner.CodeNotFound, "")
		for _, raw := range []string{"0", "-1", "abc", "1.5", ""} {
			_, err := task.ParseID(raw)
			requireRefusal(t, err, taskrunner.CodeNotFound, "")
		}
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var ids []int64
		for _, msg := range []string{"a", "b", "c"} {
			tk, _ := b.submit(t, echo(msg), "")
			ids = append(ids, tk.ID)
		}
		slept, _ := b.submit(t, &task.Request{Type: "sleep", Params: json.RawMessage(`{"seconds":1}`)}, "")
		_, err := b.svc.Cancel(ctx, ids[0])
		require.NoError(t, err)

		list := func(q task.ListQuery) ([]int64, string) {
			t.Helper()
			var got []int64
			next, err := b.svc.List(ctx, q, func(tk *taskrunner.Task) (bool, error) {
				got = append(got, tk.ID)
				return true, nil
			})
			require.NoError(t, err)
			return got, next
		}
		got, next := list(task.ListQuery{})
		require.Equal(t, []int64{slept.ID, ids[2], ids[1], ids[0]}, got, "newest first")
		require.Empty(t, next)
		got, _ = list(task.ListQuery{Filter: taskrunner.Filter{Type: "echo"}})
		require.Equal(t, []int64{ids[2], ids[1], ids[0]}, got)
		got, _ = list(task.ListQuery{Filter: taskrunner.Filter{Statuses: []taskrunner.Status{taskrunner.StatusCancelled}}})
		require.Equal(t, []int64{ids[0]}, got)
		got, next = list(task.ListQuery{Limit: 2})
		require.Equal(t, []int64{slept.ID, ids[2]}, got)
		require.NotEmpty(t, next)
		got, next = list(task.ListQuery{Limit: 2, Cursor: next})
		require.Equal(t, []int64{ids[1], ids[0]}, got)
		require.Empty(t, next)

		noop := func(*taskrunner.Task) (bool, error) { return true, nil }
		_, err = b.svc.List(ctx, task.ListQuery{Filter: taskrunner.Filter{Type: "nope"}}, noop)
		requireRefusal(t, err, taskrunner.CodeUnknownTaskType, "type")
		_, err = b.svc.List(ctx, task.ListQuery{Filter: taskrunner.Filter{Statuses: []taskrunner.Status{"done"}}}, noop)
		requireRefusal(t, err, taskrunner.CodeInvalidParams, "status")
		_, err = b.svc.List(ctx, task.ListQuery{Limit: task.MaxPageSize + 1}, noop)
		requireRefusal(t, err, taskrunner.CodeInvalidParams, "limit")
		_, err = b.svc.List(ctx, task.ListQuery{Cursor: "x"}, noop)
		requireRefusal(t, err, taskrunner.CodeInvalidParams, "cursor")
	})

	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		submitted, _ := b.submit(t, echo("a"), "")
		cancelled, err := b.svc.Cancel(ctx, submitted.ID)
		require.NoError(t, err)
		require.Equal(t, taskrunner.StatusCancelled, cancelled.Status, "a queued task is cancelled at once")
		require.True(t, taskrunner.Finished(cancelled.Status))
		require.NotNil(t, cancelled.ErrorCode)
		require.Equal(t, taskrunner.CodeTaskCancelled, *cancelled.ErrorCode, "the code comes from the tasks view")

		_, err = b.svc.Cancel(ctx, submitted.ID)
		e := requireRefusal(t, err, taskrunner.CodeTaskAlreadyFinished, "")
		require.Contains(t, e.Message, "cancelled")
		_, err = b.svc.Cancel(ctx, submitted.ID+1000)
		requireRefusal(t, err, taskrunner.CodeNotFound, "")
	})

	t.Run("DatabaseDown", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		submitted, _ := b.submit(t, echo("a"), "")
		b.pool.Close()
		_, err := b.svc.Get(ctx, submitted.ID)
		require.Equal(t, taskrunner.CodeDependencyUnavailable, taskrunner.ErrorCode(err), "error: %v", err)
		_, _, err = b.svc.Submit(ctx, echo("b"), "")
		require.Equal(t, taskrunner.CodeDependencyUnavailable, taskrunner.ErrorCode(err), "error: %v", err)
		_, err = b.svc.Cancel(ctx, submitted.ID)
		require.Equal(t, taskrunner.CodeDependencyUnavailable, taskrunner.ErrorCode(err), "error: %v", err)
	})
}

// The service, not its callers, keeps tenants apart: a task is its
// submitter's (in its metadata and the tasks view), another client's Get,
// Cancel and List do not find it, an admin's do, and a batch is owned as
// one task is.
func TestServiceKeepsTenantsApart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := taskrunner.WithTenant(context.Background(), taskrunner.Tenant{Name: "alice"})
	bob := taskrunner.WithTenant(context.Background(), taskrunner.Tenant{Name: "bob"})
	admin := taskrunner.WithTenant(context.Background(), taskrunner.Tenant{Name: "ops", Admin: true})

	a, _, err := b.svc.Submit(alice, echo("a"), "")
	require.NoError(t, err)
	require.Equal(t, "alice", a.Owner)
	var meta, viewOwner string
	require.NoError(t, b.pool.QueryRow(context.Background(), "select metadata->>'owner', owner from tasks where id = $1", a.ID).Scan(&meta, &viewOwner))
	require.Equal(t, "alice", meta)
	require.Equal(t, "alice", viewOwner)
	params, err := b.svc.ValidateBatch([]task.Request{*echo("b1"), *echo("b2")}, 10)
	require.NoError(t, err)
	batch, err := b.svc.SubmitBatch(bob, params)
	require.NoError(t, err)
	require.Equal(t, "bob", batch[0].Owner)

	_, err = b.svc.Get(bob, a.ID)
	requireRefusal(t, err, taskrunner.CodeNotFound, "")
	_, err = b.svc.Cancel(bob, a.ID)
	requireRefusal(t, err, taskrunner.CodeNotFound, "")
	got, err := b.svc.Get(admin, a.ID)
	require.NoError(t, err)
	require.Equal(t, "alice", got.Owner)
	got, err = b.svc.Get(alice, a.ID)
	require.NoError(t, err)
	require.Equal(t, taskrunner.StatusAvailable, got.Status, "bob's cancel did nothing")

	list := func(ctx context.Context, owner string) []int64 {
		ids := []int64{}
		_, err := b.svc.List(ctx, task.ListQuery{Filter: taskrunner.Filter{Owner: owner}}, func(t *taskrunner.Task) (bool, error) {
			ids = append(ids, t.ID)
			return true, nil
		})
		require.NoError(t, err)
		return ids
	}
	require.Equal(t, []int64{a.ID}, list(alice, ""))
	require.Empty(t, list(alice, "bob"))
	require.Equal(t, []int64{batch[1].ID, batch[0].ID}, list(bob, ""))
	require.Equal(t, []int64{batch[1].ID, batch[0].ID, a.ID}, list(admin, ""))
	require.Equal(t, []int64{a.ID}, list(admin, "alice"))

	// Taskrunner's own work (no tenant) inserts without an owner: local's.
	own, _, err := b.svc.Submit(context.Background(), echo("own"), "")
	require.NoError(t, err)
	require.Equal(t, taskrunner.LocalTenant, own.Owner)
	_, err = b.svc.Get(alice, own.ID)
	requireRefusal(t, err, taskrunner.CodeNotFound, "")
	require.Equal(t, []int64{own.ID}, list(admin, taskrunner.LocalTenant))
}

// task_enqueued names the tenant the request acted for, never its key.
func TestEnqueuedLogNamesTheTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := taskrunner.WithTenant(context.Background(), taskrunner.Tenant{Name: "alice"})
	_, _, err := b.svc.Submit(ctx, echo("hi"), "")
	require.NoError(t, err)
	params, err := b.svc.ValidateBatch([]task.Request{*echo("a"), *echo("b")}, 10)
	require.NoError(t, err)
	_, err = b.svc.SubmitBatch(ctx, params)
	require.NoError(t, err)
	b.submit(t, echo("own work"), "")
	var tenants []any
	for _, e := range b.logs.Events("task_enqueued") {
		tenants = append(tenants, e["tenant"])
	}
	require.Equal(t, []any{"alice", "alice", "alice", "system"}, tenants)
}
