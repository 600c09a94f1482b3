package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/fetch"
)

// callbackURLOf is the callback_url task id carries in its River metadata,
// "" for none.
func (b *bundle) callbackURLOf(t *testing.T, id int64) string {
	t.Helper()
	var meta []byte
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT metadata FROM river_job WHERE id = $1", id).Scan(&meta))
	var m struct {
		CallbackURL string `json:"callback_url"`
	}
	require.NoError(t, json.Unmarshal(meta, &m))
	return m.CallbackURL
}

func TestCallbackURLIsStoredWithTheTaskInCanonicalForm(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{callback: &fetch.Config{Allowlist: []string{"*.example.com"}, AllowlistSetting: "CALLBACK_DOMAIN_ALLOWLIST", AllowedPorts: []int{8443}}})

	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": "https://Hooks.Example.COM.:8443/done?x=1"})
	require.Equal(t, "https://hooks.example.com:8443/done?x=1", b.callbackURLOf(t, id))

	plain := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}})
	require.Empty(t, b.callbackURLOf(t, plain))

	resp := b.do(t, http.MethodPost, "/tasks/batch", map[string]any{"tasks": []map[string]any{
		{"type": "echo", "params": map[string]any{"msg": "a"}, "callback_url": "https://a.example.com/cb"},
		{"type": "echo", "params": map[string]any{"msg": "b"}},
	}})
	require.Equal(t, http.StatusAccepted, resp.status, "%s", resp.raw)
	batch := decode[struct {
		Tasks []struct {
			ID int64 `json:"id"`
		} `json:"tasks"`
	}](t, resp.raw)
	require.Len(t, batch.Tasks, 2)
	require.Equal(t, "https://a.example.com/cb", b.callbackURLOf(t, batch.Tasks[0].ID))
	require.Empty(t, b.callbackURLOf(t, batch.Tasks[1].ID))

	resp = b.do(t, http.MethodPost, "/search", map[string]any{"query": "q", "callback_url": "https://s.example.com/cb"})
	require.Equal(t, http.StatusAccepted, resp.status, "%s", resp.raw)
	search := decode[struct {
		ID int64 `json:"id"`
	}](t, resp.raw)
	require.Equal(t, "https://s.example.com/cb", b.callbackURLOf(t, search.ID))
}

func TestBadCallbackURLIsRefusedAtSubmit(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{callback: &fetch.Config{Allowlist: []string{"*"}, AllowlistSetting: "CALLBACK_DOMAIN_ALLOWLIST", AllowedPorts: []int{8443}}})

	bad := []string{
		"", "not a url", "ftp://example.com/x", "/relative", "http://user:pw@example.com/",
		"http://example.com:9999/", // port not allowed
		"http://127.0.0.1:8443/", "http://10.1.2.3/", "http://169.254.169.254/", "http://[::1]/", "http://localhost/",
		"http://2130706433/",
	}
	for _, u := range bad {
		resp := b.do(t, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": u})
		require.Equal(t, http.StatusBadRequest, resp.status, "%q: %s", u, resp.raw)
		e := resp.apiError(t)
		require.Equal(t, taskrunner.CodeInvalidParams, e.Code, "%q", u)
		require.Equal(t, "callback_url", e.Field, "%q", u)
		require.Contains(t, e.Message, "callback_url", "%q", u)
		require.NotContains(t, e.Message, "FETCH_", "%q: a callback refusal names the callback settings", u)
	}

	resp := b.do(t, http.MethodPost, "/tasks/batch", map[string]any{"tasks": []map[string]any{
		{"type": "echo", "params": map[string]any{"msg": "a"}, "callback_url": "https://example.com/cb"},
		{"type": "echo", "params": map[string]any{"msg": "b"}, "callback_url": "http://10.0.0.1/cb"},
	}})
	require.Equal(t, http.StatusBadRequest, resp.status, "%s", resp.raw)
	require.Equal(t, "tasks[1].callback_url", resp.apiError(t).Field)

	resp = b.do(t, http.MethodPost, "/search", map[string]any{"query": "q", "callback_url": "http://192.168.1.1/cb"})
	require.Equal(t, http.StatusBadRequest, resp.status, "%s", resp.raw)
	require.Equal(t, "callback_url", resp.apiError(t).Field)

	resp = b.do(t, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": 7})
	require.Equal(t, http.StatusBadRequest, resp.status, "%s", resp.raw)

	require.Zero(t, b.jobCount(t), "nothing is enqueued")
}

func TestPrivateCallbackURLIsAcceptedOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{callback: &fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{8443}, AllowPrivateNetworks: true}})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": "http://127.0.0.1:8443/cb"})
	require.Equal(t, "http://127.0.0.1:8443/cb", b.callbackURLOf(t, id))

	// The port check still applies.
	resp := b.do(t, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": "http://127.0.0.1:9999/cb"})
	require.Equal(t, http.StatusBadRequest, resp.status, "%s", resp.raw)
	require.Equal(t, "callback_url", resp.apiError(t).Field)
}

func TestCallbackURLIsRefusedWhenCallbacksAreOff(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}) // no CALLBACK_SECRET
	resp := b.do(t, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": "https://example.com/cb"})
	require.Equal(t, http.StatusBadRequest, resp.status, "%s", resp.raw)
	e := resp.apiError(t)
	require.Equal(t, taskrunner.CodeInvalidParams, e.Code)
	require.Equal(t, "callback_url", e.Field)
	require.Contains(t, e.Message, "CALLBACK_SECRET")
	require.Zero(t, b.jobCount(t))
}
