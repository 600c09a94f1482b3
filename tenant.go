package taskrunner

import "context"

// LocalTenant owns everything when the server runs without API keys (it
// then listens on loopback only), and it is an admin.
const LocalTenant = "local"

// Tenant is who a request acts for: the name of its API key (several keys
// may share a name, so a key can be rotated), and whether that name is an
// admin. A client tenant sees and acts on its own tasks, artifacts and
// schedules only; an admin sees and acts on all of them.
type Tenant struct {
	Name  string
	Admin bool
	// Addr is the client's address when the server runs without API keys
	// (every request then acts for LocalTenant): the per-tenant limits
	// count each address on its own. "" when keys are set.
	Addr string
}

// Owns reports whether t may see and act on something owned by owner.
func (t Tenant) Owns(owner string) bool { return t.Admin || t.Name == owner }

type tenantKey struct{}

// WithTenant returns ctx acting for t.
func WithTenant(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, tenantKey{}, t)
}

// TenantFrom returns the tenant ctx acts for; ok is false when none was
// set (a process's own work, such as the retention job).
func TenantFrom(ctx context.Context) (t Tenant, ok bool) {
	t, ok = ctx.Value(tenantKey{}).(Tenant)
	return t, ok
}
