package task

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/jobs"
)

// ServiceConfig: a missing dependency is an error naming it, not a panic
// later, and the optional fields get their defaults.
func TestServiceConfig(t *testing.T) {
	t.Parallel()
	// Never connected to: NewService touches nothing.
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	types := builtin.Registry(builtin.Config{})
	client, err := jobs.NewClient(jobs.ClientConfig{Pool: pool, Types: types})
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		cfg   ServiceConfig
		field string
	}{
		{"no pool", ServiceConfig{Client: client, Types: types}, "Pool"},
		{"no types", ServiceConfig{Pool: pool, Client: client}, "Types"},
		{"negative max runtime", ServiceConfig{Pool: pool, Client: client, Types: types, Limits: Limits{MaxRuntime: -time.Second}}, "MaxRuntime"},
		{"coalesce below -1", ServiceConfig{Pool: pool, Client: client, Types: types, CoalesceInserts: -2}, "CoalesceInserts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := NewService(tc.cfg)
			require.ErrorContains(t, err, tc.field)
			require.Nil(t, svc)
		})
	}

	t.Run("defaults", func(t *testing.T) {
		svc, err := NewService(ServiceConfig{Pool: pool, Client: client, Types: types})
		require.NoError(t, err)
		require.Equal(t, jobs.DefaultMaxRuntime, svc.limits.MaxRuntime)
		require.Equal(t, []string{river.QueueDefault}, svc.limits.Queues)
		require.NotNil(t, svc.logger)
		// The defaults are what a request is checked against.
		p, err := svc.Validate(&Request{Type: "echo", Params: []byte(`{"msg":"a"}`), Queue: river.QueueDefault})
		require.NoError(t, err)
		require.Equal(t, river.QueueDefault, p.p.InsertOpts.Queue)
		_, err = svc.Validate(&Request{Type: "echo", Params: []byte(`{"msg":"a"}`), TimeoutSeconds: ptr(jobs.DefaultMaxRuntime.Seconds() + 1)})
		require.ErrorContains(t, err, "timeout_seconds")
	})
}

func ptr[T any](v T) *T { return &v }
