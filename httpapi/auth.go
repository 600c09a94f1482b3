package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
)

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

// identify sets the tenant a request acts for (taskrunner.WithTenant), the
// one thing the request carries about its caller: without keys, the admin
// tenant local with the client's address; with keys, the tenant of the
// key given, a bearer token or for River UI (which a browser opens) the
// basic-auth password. It refuses nothing: a request without a valid key
// goes on without a tenant, and authenticate refuses it. It runs before
// the request log, so that the log names the tenant.
func (s *Server) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.keys == nil {
			t := localTenant
			t.Addr = r.RemoteAddr
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				t.Addr = host
			}
			next.ServeHTTP(w, r.WithContext(taskrunner.WithTenant(r.Context(), t)))
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
		if given != "" {
			if t, ok := s.keys.match(given); ok {
				r = r.WithContext(taskrunner.WithTenant(r.Context(), t))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate requires a key on every route but /health when keys are
// set: a request identify found no tenant for is refused with 401.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := taskrunner.TenantFrom(r.Context()); ok || s.keys == nil || publicPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, riverUIPrefix) {
			w.Header().Set("WWW-Authenticate", `Basic realm="taskrunner", charset="UTF-8"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="taskrunner"`)
		}
		writeError(w, r, s.deps.Logger, &taskrunner.Error{Code: taskrunner.CodeUnauthorized,
			Message: "a valid API key is required: Authorization: Bearer <key>"})
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
