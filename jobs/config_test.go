package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"
)

// unconnectedPool is a pool no test connects to: constructors touch
// nothing.
func unconnectedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// RunRecorderConfig: a missing pool is an error, not a panic later, and
// the optional fields get their defaults.
func TestRunRecorderConfig(t *testing.T) {
	t.Parallel()
	t.Run("no pool", func(t *testing.T) {
		rr, err := NewRunRecorder(RunRecorderConfig{})
		require.ErrorContains(t, err, "Pool")
		require.Nil(t, rr)
	})
	t.Run("defaults", func(t *testing.T) {
		cfg := RunRecorderConfig{Pool: unconnectedPool(t)}.withDefaults()
		require.Equal(t, processName(), cfg.WorkerName)
		require.NotNil(t, cfg.Logger)
		rr, err := NewRunRecorder(RunRecorderConfig{Pool: cfg.Pool})
		require.NoError(t, err)
		require.Equal(t, processName(), rr.worker)
		require.NotNil(t, rr.logger)
		require.NoError(t, rr.Close(context.Background()))
	})
}

// ClientConfig: a missing or contradictory field is an error naming it,
// and every optional field gets its default.
func TestClientConfig(t *testing.T) {
	t.Parallel()
	pool := unconnectedPool(t)
	for _, tc := range []struct {
		name  string
		cfg   ClientConfig
		field string
	}{
		{"no pool", ClientConfig{}, "Pool"},
		{"working without a run recorder", ClientConfig{Pool: pool, Work: true}, "Runs"},
		{"rescue before the runtime cap", ClientConfig{Pool: pool, MaxRuntime: time.Minute, RescueAfter: time.Minute}, "RescueAfter"},
		{"negative concurrency", ClientConfig{Pool: pool, Concurrency: -1}, "Concurrency"},
		{"negative run sweep interval", ClientConfig{Pool: pool, RunSweepInterval: -time.Second}, "RunSweepInterval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := NewClient(tc.cfg)
			require.ErrorContains(t, err, tc.field)
			require.Nil(t, client)
		})
	}

	t.Run("defaults", func(t *testing.T) {
		cfg := ClientConfig{Pool: pool}.withDefaults()
		require.Equal(t, []string{river.QueueDefault}, cfg.Queues)
		require.Equal(t, DefaultConcurrency, cfg.Concurrency)
		require.Equal(t, DefaultMaxRuntime, cfg.MaxRuntime)
		require.Equal(t, DefaultMaxRuntime+DefaultRescueMargin, cfg.RescueAfter)
		require.Equal(t, DefaultRetention, cfg.Retention)
		require.Equal(t, DefaultRetentionInterval, cfg.RetentionInterval)
		require.Equal(t, DefaultRunSweepInterval, cfg.RunSweepInterval)
		require.NotNil(t, cfg.Logger)

		client, err := NewClient(ClientConfig{Pool: pool})
		require.NoError(t, err)
		require.NotNil(t, client)
	})

	t.Run("a working client with defaults", func(t *testing.T) {
		rr, err := NewRunRecorder(RunRecorderConfig{Pool: pool})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, rr.Close(context.Background())) })
		client, err := NewClient(ClientConfig{Pool: pool, Work: true, Runs: rr})
		require.NoError(t, err)
		require.NotNil(t, client)
	})
}
