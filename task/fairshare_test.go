package task_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/task"
)

// With fair share on, a tenant's tasks (one, or a batch) go to its own
// River queue of the queue asked for, while every view shows the queue
// asked for; tasks without a tenant, and every task with fair share off,
// go to the queue itself.
func TestFairShareSendsTasksToTenantQueues(t *testing.T) {
	t.Parallel()
	alice := taskrunner.WithTenant(context.Background(), taskrunner.Tenant{Name: "alice"})
	riverQueue := func(t *testing.T, b *testBundle, id int64) string {
		t.Helper()
		var q string
		require.NoError(t, b.pool.QueryRow(context.Background(), "select queue from river_job where id = $1", id).Scan(&q))
		return q
	}
	for _, tc := range []struct {
		name      string
		fairShare bool
		ctx       context.Context
		queue     string // asked for
		want      string // in river_job
	}{
		{"a tenant's task", true, alice, "", "default-tenant-alice"},
		{"a tenant's task in another queue", true, alice, "other", "other-tenant-alice"},
		{"a task without a tenant", true, context.Background(), "", "default"},
		{"fair share off", false, alice, "other", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(cfg *task.ServiceConfig) { cfg.FairShare = tc.fairShare })
			base := tc.queue
			if base == "" {
				base = "default"
			}
			req := echo("hi")
			req.Queue = tc.queue
			p, err := b.svc.Validate(req)
			require.NoError(t, err)
			one, _, err := b.svc.Insert(tc.ctx, p, "")
			require.NoError(t, err)
			require.Equal(t, base, one.Queue, "the view of a task just inserted")
			require.Equal(t, tc.want, riverQueue(t, b, one.ID))

			got, err := b.svc.Get(tc.ctx, one.ID)
			require.NoError(t, err)
			require.Equal(t, base, got.Queue, "GET shows the queue asked for")
			var listed []string
			_, err = b.svc.List(tc.ctx, task.ListQuery{}, func(tk *taskrunner.Task) (bool, error) {
				listed = append(listed, tk.Queue)
				return true, nil
			})
			require.NoError(t, err)
			require.Equal(t, []string{base}, listed)
			cancelled, err := b.svc.Cancel(tc.ctx, one.ID)
			require.NoError(t, err)
			require.Equal(t, base, cancelled.Queue)

			params, err := b.svc.ValidateBatch([]task.Request{*req, *req}, 10)
			require.NoError(t, err)
			batch, err := b.svc.SubmitBatch(tc.ctx, params)
			require.NoError(t, err)
			require.Len(t, batch, 2)
			for _, tk := range batch {
				require.Equal(t, base, tk.Queue)
				require.Equal(t, tc.want, riverQueue(t, b, tk.ID))
			}
			require.Equal(t, tc.queue, params[0].RiverParams().InsertOpts.Queue, "the caller's params are left as they were")
		})
	}
}

// Concurrent submissions of several tenants, inserted together, each land
// with their own tenant: owner and fair-share queue, and their own params.
func TestConcurrentSubmissionsKeepTheirTenants(t *testing.T) {
	t.Parallel()
	b := setup(t, func(cfg *task.ServiceConfig) { cfg.FairShare = true })
	tenants := []string{"alice", "bob", "carol", "dave"}
	type got struct {
		tenant, msg string
		task        *taskrunner.Task
		err         error
	}
	out := make(chan got, 80)
	for i := range 80 {
		tenant := tenants[i%len(tenants)]
		msg := tenant + "-" + strconv.Itoa(i)
		go func() {
			ctx := taskrunner.WithTenant(context.Background(), taskrunner.Tenant{Name: tenant})
			tk, _, err := b.svc.Submit(ctx, echo(msg), "")
			out <- got{tenant, msg, tk, err}
		}()
	}
	for range 80 {
		g := <-out
		require.NoError(t, g.err)
		var owner, queue, msg string
		require.NoError(t, b.pool.QueryRow(context.Background(),
			"SELECT metadata->>'owner', queue, args->>'msg' FROM river_job WHERE id = $1", g.task.ID).Scan(&owner, &queue, &msg))
		require.Equal(t, g.tenant, owner)
		require.Equal(t, "default-tenant-"+g.tenant, queue)
		require.Equal(t, g.msg, msg)
		require.Equal(t, g.tenant, g.task.Owner)
	}
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM river_job").Scan(&n))
	require.Equal(t, 80, n)
}
