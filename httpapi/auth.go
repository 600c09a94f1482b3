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

// client is who made a request, filled in by authenticate. The request log,
// outside authenticate, holds the same one, so its line names the client.
type client struct{ name string }

// withClient gives the request a client to fill in, if it has none yet.
func withClient(r *http.Request) (*http.Request, *client) {
	if c, ok := r.Context().Value(clientKey{}).(*client); ok {
		return r, c
	}
	c := &client{}
	return r.WithContext(context.WithValue(r.Context(), clientKey{}, c)), c
}

// clientOf names who made the request: the API key's name, or the client
// address when no keys are set. Limits and logs use it.
func clientOf(ctx context.Context) string {
	if c, ok := ctx.Value(clientKey{}).(*client); ok {
		return c.name
	}
	return ""
}

// keyring checks API keys in constant time. Keys are hashed first so every
// comparison has the same length, and every key is compared, so the time
// taken says nothing about which key came close.
type keyring struct {
	names  []string
	hashes [][32]byte
}

func newKeyring(keys []config.APIKey) *keyring {
	k := &keyring{}
	for _, key := range keys {
		k.names = append(k.names, key.Name)
		k.hashes = append(k.hashes, sha256.Sum256([]byte(key.Key)))
	}
	return k
}

// match returns the name of the key given, or "".
func (k *keyring) match(given string) string {
	h := sha256.Sum256([]byte(given))
	found := -1
	for i := range k.hashes {
		if subtle.ConstantTimeCompare(h[:], k.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return ""
	}
	return k.names[found]
}

// publicPaths need no key.
var publicPaths = map[string]bool{"/health": true}

// authenticate requires a key on every route but /health when keys are
// set: a bearer token, or for River UI (which a browser opens) the key as
// the basic-auth password. Without keys the client is its address.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, c := withClient(r)
		if s.keys == nil || publicPaths[r.URL.Path] {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			c.name = "addr:" + host
			if s.keys == nil {
				r = r.WithContext(taskrunner.WithTenant(r.Context(), taskrunner.Tenant{Name: taskrunner.LocalTenant, Admin: true}))
			}
			next.ServeHTTP(w, r)
			return
		}
		var given string
		if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			given = strings.TrimSpace(auth[7:])
		} else if _, pass, ok := r.BasicAuth(); ok {
			given = pass
		}
		name := ""
		if given != "" {
			name = s.keys.match(given)
		}
		if name == "" {
			if strings.HasPrefix(r.URL.Path, riverUIPrefix) {
				w.Header().Set("WWW-Authenticate", `Basic realm="taskrunner", charset="UTF-8"`)
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="taskrunner"`)
			}
			writeError(w, r, s.deps.Logger, &taskrunner.Error{Code: taskrunner.CodeUnauthorized,
				Message: "a valid API key is required: Authorization: Bearer <key>"})
			return
		}
		c.name = "key:" + name
		next.ServeHTTP(w, r.WithContext(taskrunner.WithTenant(r.Context(), taskrunner.Tenant{Name: name})))
	})
}
