package artifact

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// ServiceConfig: a missing dependency is an error naming it, not a panic
// later, and every optional field gets its default.
func TestServiceConfig(t *testing.T) {
	t.Parallel()
	// Neither is connected to: NewService touches nothing.
	store, err := NewStore(Config{Endpoint: "127.0.0.1:1", Bucket: "b"})
	require.NoError(t, err)
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none")
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	for _, tc := range []struct {
		name  string
		cfg   ServiceConfig
		field string
	}{
		{"no store", ServiceConfig{Pool: pool}, "Store"},
		{"no pool", ServiceConfig{Store: store}, "Pool"},
		{"negative max bytes", ServiceConfig{Store: store, Pool: pool, MaxBytes: -1}, "MaxBytes"},
		{"negative orphan age", ServiceConfig{Store: store, Pool: pool, OrphanAge: -time.Second}, "OrphanAge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := NewService(tc.cfg)
			require.ErrorContains(t, err, tc.field)
			require.Nil(t, svc)
		})
	}

	t.Run("defaults", func(t *testing.T) {
		svc, err := NewService(ServiceConfig{Store: store, Pool: pool})
		require.NoError(t, err)
		require.Equal(t, int64(DefaultMaxBytes), svc.MaxBytes())
		require.Equal(t, DefaultOrphanAge, svc.orphanAge)
		require.Equal(t, DefaultOrphanScan, svc.orphanScan)
		require.NotNil(t, svc.logger)
		svc.logger.Info("a nil Logger logs nothing") // and does not panic
	})

	t.Run("set fields are kept", func(t *testing.T) {
		svc, err := NewService(ServiceConfig{Store: store, Pool: pool, MaxBytes: 7, OrphanAge: time.Minute, OrphanScan: 3})
		require.NoError(t, err)
		require.Equal(t, int64(7), svc.MaxBytes())
		require.Equal(t, time.Minute, svc.orphanAge)
		require.Equal(t, 3, svc.orphanScan)
	})
}
