package taskrunner_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

func TestTenant(t *testing.T) {
	t.Parallel()

	t.Run("AClientOwnsItsOwnOnly", func(t *testing.T) {
		t.Parallel()
		alice := taskrunner.Tenant{Name: "alice"}
		require.True(t, alice.Owns("alice"))
		require.False(t, alice.Owns("bob"))
		require.False(t, alice.Owns(""))
	})

	t.Run("AnAdminOwnsAll", func(t *testing.T) {
		t.Parallel()
		ops := taskrunner.Tenant{Name: "ops", Admin: true}
		require.True(t, ops.Owns("alice"))
		require.True(t, ops.Owns(""))
	})

	t.Run("TravelsInTheContext", func(t *testing.T) {
		t.Parallel()
		_, ok := taskrunner.TenantFrom(context.Background())
		require.False(t, ok)
		ctx := taskrunner.WithTenant(context.Background(), taskrunner.Tenant{Name: "alice"})
		got, ok := taskrunner.TenantFrom(ctx)
		require.True(t, ok)
		require.Equal(t, taskrunner.Tenant{Name: "alice"}, got)
	})
}
