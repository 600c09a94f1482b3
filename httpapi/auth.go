package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
)

type clientKey struct{}

// client is who made a request, filled in by authenticate: its tenant's
// name (never the key). The request log, outside authenticate, holds the
// same one, so its line names the tenant.
type client struct {
	name string
	// addr is the client's address when no keys are set: the enqueue
	// limit then counts each address on its own.
	addr string
}

// withClient gives the request a client to fill in, if it has none yet.
func withClient(r *http.Request) (*http.Request, *client) {
	if c, ok := r.Context().Value(clientKey{}).(*client); ok {
		return r, c
	}
	c := &client{}
	return r.WithContext(context.WithValue(r.Context(), clientKey{}, c)), c
}

// clientOf names who made the request: its tenant, the API key's name
// (taskrunner.LocalTenant when no keys are set). The enqueue limit, the
// scope of idempotency keys and the logs use it, so the keys of one tenant
// share them.
func clientOf(ctx context.Context) string {
	if c, ok := ctx.Value(clientKey{}).(*client); ok {
		return c.name
	}
	return ""
}

// clientAddr is the client's address when no keys are set, else "".
func clientAddr(ctx context.Context) string {
	if c, ok := ctx.Value(clientKey{}).(*client); ok {
		return c.addr
	}
	return ""
}

// keyring checks API keys in constant time. Keys are hashed first so every
// comparison has the same length, and every key is compared, so the time
// taken says nothing about which key came close.
type keyring struct {
	tenants []taskrunner.Tenant
	hashes  [][32]byte
}

func newKeyring(keys []config.APIKey) *keyring {
	k := &keyring{}
	for _, key := range keys {
		k.tenants = append(k.tenants, taskrunner.Tenant{Name: key.Name, Admin: key.Admin})
		k.hashes = append(k.hashes, sha256.Sum256([]byte(key.Key)))
	}
	return k
}

// match returns the tenant of the key given; ok is false for no key's.
func (k *keyring) match(given string) (t taskrunner.Tenant, ok bool) {
	h := sha256.Sum256([]byte(given))
	found := -1
	for i := range k.hashes {
		if subtle.ConstantTimeCompare(h[:], k.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return taskrunner.Tenant{}, false
	}
	return k.tenants[found], true
}

// localTenant is who every request acts for when no keys are set.
var localTenant = taskrunner.Tenant{Name: taskrunner.LocalTenant, Admin: true}

// publicPaths need no key.
var publicPaths = map[string]bool{"/health": true}

// authenticate requires a key on every route but /health when keys are
// set: a bearer token, or for River UI (which a browser opens) the key as
// the basic-auth password. The request then acts for the key's tenant
// (taskrunner.WithTenant); without keys, for the admin tenant local.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, c := withClient(r)
		if s.keys == nil {
			c.name = localTenant.Name
			c.addr = r.RemoteAddr
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				c.addr = host
			}
			next.ServeHTTP(w, r.WithContext(taskrunner.WithTenant(r.Context(), localTenant)))
			return
		}
		if publicPaths[r.URL.Path] {
			next.ServeHTTP(w, r) // acts for no tenant: it touches nothing of one
			return
		}
		var given string
		if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			given = strings.TrimSpace(auth[7:])
		} else if _, pass, ok := r.BasicAuth(); ok {
			given = pass
		}
		var tenant taskrunner.Tenant
		ok := false
		if given != "" {
			tenant, ok = s.keys.match(given)
		}
		if !ok {
			if strings.HasPrefix(r.URL.Path, riverUIPrefix) {
				w.Header().Set("WWW-Authenticate", `Basic realm="taskrunner", charset="UTF-8"`)
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="taskrunner"`)
			}
			writeError(w, r, s.deps.Logger, &taskrunner.Error{Code: taskrunner.CodeUnauthorized,
				Message: "a valid API key is required: Authorization: Bearer <key>"})
			return
		}
		c.name = tenant.Name
		next.ServeHTTP(w, r.WithContext(taskrunner.WithTenant(r.Context(), tenant)))
	})
}

// adminOnly refuses a client tenant with 403 forbidden: River UI and
// /metrics show every tenant's work.
func (s *Server) adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t, ok := taskrunner.TenantFrom(r.Context()); !ok || !t.Admin {
			writeError(w, r, s.deps.Logger, &taskrunner.Error{Code: taskrunner.CodeForbidden,
				Message: "this route is for admin keys only (name:key:admin in API_KEYS)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
