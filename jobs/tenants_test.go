package jobs

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// A tenant's queue names its queue and its tenant, BaseQueue gives the
// queue back whatever the tenant's name holds, and River accepts the name.
func TestTenantQueue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ queue, tenant, want string }{
		{"default", "alice", "default-tenant-alice"},
		{"slow", "a_b-c", "slow-tenant-a_b-c"},
		{"default", "x-tenant-y", "default-tenant-x-tenant-y"},
		{"default", "", "default"},
	} {
		got := TenantQueue(tc.queue, tc.tenant)
		require.Equal(t, tc.want, got)
		require.Equal(t, tc.queue, BaseQueue(got), "base queue of %s", got)
	}
	require.Equal(t, "default", BaseQueue("default"), "a queue without a tenant is its own base")

	// River validates every queue a working client serves.
	pool := unconnectedPool(t)
	rr, err := NewRunRecorder(RunRecorderConfig{Pool: pool})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rr.Close(context.Background())) })
	client, err := NewClient(ClientConfig{Pool: pool, Work: true, Runs: rr, Queues: []string{"default", "slow"},
		Tenants: map[string]int{"alice": 0, "a_b-c": 5, "x-tenant-y": 1}})
	require.NoError(t, err)
	require.NotNil(t, client)
}

// Each tenant's queue gets min(Concurrency, its cap) workers, no cap
// meaning Concurrency; the queues themselves keep Concurrency.
func TestQueueConfigs(t *testing.T) {
	t.Parallel()
	got := queueConfigs(ClientConfig{Queues: []string{"default", "slow"}, Concurrency: 20,
		Tenants: map[string]int{"a": 0, "b": 5, "c": 50}})
	require.Equal(t, map[string]int{
		"default": 20, "default-tenant-a": 20, "default-tenant-b": 5, "default-tenant-c": 20,
		"slow": 20, "slow-tenant-a": 20, "slow-tenant-b": 5, "slow-tenant-c": 20,
		InternalQueue: 20, "taskrunner_internal-tenant-a": TenantTickConcurrency,
		"taskrunner_internal-tenant-b": TenantTickConcurrency, "taskrunner_internal-tenant-c": TenantTickConcurrency,
	}, got)
	require.Equal(t, "taskrunner_internal-tenant-a", ScheduleTickQueueFor("a"))
	require.Equal(t, map[string]int{"default": 7, InternalQueue: 7}, queueConfigs(ClientConfig{Queues: []string{"default"}, Concurrency: 7}))
}

// With callbacks, every tenant's own delivery queue is served at its cap
// on deliveries at once, and the delivery queue without a tenant at the
// default cap.
func TestCallbackQueueConfigs(t *testing.T) {
	t.Parallel()
	got := queueConfigs(ClientConfig{Queues: []string{"default"}, Concurrency: 20, CallbackConcurrency: 4,
		CallbackTenants: map[string]int{"b": 2}, Tenants: map[string]int{"a": 0, "b": 5},
		Deps: Deps{Callback: &CallbackDeps{}}})
	require.Equal(t, map[string]int{
		"default": 20, "default-tenant-a": 20, "default-tenant-b": 5,
		"callbacks": 4, "callbacks-tenant-a": 4, "callbacks-tenant-b": 2,
		InternalQueue: 20, ScheduleTickQueueFor("a"): TenantTickConcurrency, ScheduleTickQueueFor("b"): TenantTickConcurrency,
	}, got)
	require.Equal(t, "callbacks-tenant-a", CallbackQueueFor("a"))
	require.Equal(t, "callbacks", CallbackQueueFor(""))
}

// A queue named like a tenant's queue, a tenant that cannot name a queue
// and a negative cap are refused.
func TestTenantQueueRefusals(t *testing.T) {
	t.Parallel()
	pool := unconnectedPool(t)
	for name, cfg := range map[string]ClientConfig{
		"queue holding the separator": {Pool: pool, Queues: []string{"default", "a-tenant-b"}},
		"the internal queue":          {Pool: pool, Queues: []string{"default", InternalQueue}},
		"empty tenant":                {Pool: pool, Tenants: map[string]int{"": 0}},
		"negative cap":                {Pool: pool, Tenants: map[string]int{"alice": -1}},
		"the callback queue":          {Pool: pool, Queues: []string{"default", CallbackQueue}},
	} {
		t.Run(name, func(t *testing.T) {
			client, err := NewClient(cfg)
			require.Error(t, err)
			require.Nil(t, client)
		})
	}
}

// No client may work the external queue, where the tasks of types defined
// at run time wait for workers outside the server.
func TestExternalQueueIsWorkedByNoClient(t *testing.T) {
	t.Parallel()
	require.ErrorContains(t, validateTenantQueues([]string{"default", ExternalQueue}, nil), `"external"`)
	for q := range queueConfigs(ClientConfig{Queues: []string{"default"}, Tenants: map[string]int{"a": 0}, Concurrency: 1}) {
		require.NotEqual(t, ExternalQueue, BaseQueue(q), "queue %s", q)
	}
}
