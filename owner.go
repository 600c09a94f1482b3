package taskrunner

import "context"

// Visible reports whether the tenant ctx acts for may see and act on what
// owner owns. A context without a tenant is taskrunner's own work (the
// retention job, a worker storing a task's artifact), which may act on
// everything; every API request carries a tenant.
func Visible(ctx context.Context, owner string) bool {
	t, ok := TenantFrom(ctx)
	return !ok || t.Owns(owner)
}
