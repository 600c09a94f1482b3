package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
)

// privateName resolves to a private address; unknownName does not
// resolve (.invalid never does). The test resolver stands for DNS.
const (
	privateName = "internal.test"
	unknownName = "nonexistent.invalid"
)

var unreachableNames = names{privateName: netip.MustParseAddr("10.0.0.7")}

// requireRefusedApart: the fetcher's log tells the two names apart, with
// the real reason.
func requireRefusedApart(t *testing.T, logs *testenv.Logs) {
	t.Helper()
	reasons := map[any]any{}
	for _, line := range logs.Events("fetch_host_refused") {
		reasons[line["host"]] = line["reason"]
	}
	require.Equal(t, map[any]any{privateName: "non_public_address", unknownName: "does_not_resolve"}, reasons)
}

// TestFetchTaskDoesNotTellWhetherANameResolves: a fetch of a name that
// resolves to a private address and one of a name that does not resolve
// are accepted alike, and fail alike: the same status, attempts, error
// and runs, byte for byte. Only the log tells them apart.
func TestFetchTaskDoesNotTellWhetherANameResolves(t *testing.T) {
	t.Parallel()
	logger, logs := testenv.Logger(t)
	cfg := fetch.Config{Allowlist: []string{"*"}, Resolver: unreachableNames, Logger: logger}
	b := setup(t, setupOpts{work: true, fetch: &cfg})

	public := map[string]json.RawMessage{}
	for _, host := range []string{privateName, unknownName} {
		resp := b.do(t, http.MethodPost, "/tasks", map[string]any{"type": "fetch", "params": map[string]any{"url": "http://" + host + "/page"}, "max_retries": 2})
		require.Equal(t, http.StatusAccepted, resp.status, "%s: %s", host, resp.raw)
		done := b.waitStatus(t, resp.task(t).ID, "discarded", "completed")
		v := done.task(t)
		require.Equal(t, taskrunner.CodeAddressNotAllowed, v.failure(t).Code)
		require.Len(t, v.Runs, 1, "not retried")
		var fields map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(done.raw, &fields))
		var runs []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(fields["runs"], &runs))
		public[host] = fmt.Appendf(nil, "%s %s %s %s %s %s", fields["status"], fields["attempt"], fields["error"],
			runs[0]["status"], runs[0]["error_code"], runs[0]["error"])
	}
	require.Equal(t, string(public[privateName]), string(public[unknownName]))
	require.NotContains(t, string(public[privateName]), "10.0.0.7")
	requireRefusedApart(t, logs)
}

// TestCallbackDoesNotTellWhetherANameResolves: callback URLs naming a
// host that resolves to a private address and one that does not resolve
// are accepted alike at submit, and their delivery attempts fail with the
// same recorded error, byte for byte. Only the log tells them apart.
func TestCallbackDoesNotTellWhetherANameResolves(t *testing.T) {
	t.Parallel()
	logger, logs := testenv.Logger(t)
	submit := fetch.Config{Allowlist: []string{"*"}, AllowlistSetting: "CALLBACK_DOMAIN_ALLOWLIST"}
	dial := submit
	dial.MaxRedirects, dial.Resolver, dial.Logger = -1, unreachableNames, logger
	b := setup(t, setupOpts{work: true, callback: &submit, callbackDeps: &jobs.CallbackDeps{
		Secret: testCallbackSecret, Poster: fetch.New(dial), MaxAttempts: 1,
	}})

	public := map[string]string{}
	for _, host := range []string{privateName, unknownName} {
		resp := b.do(t, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": "http://" + host + "/hook"})
		require.Equal(t, http.StatusAccepted, resp.status, "%s: %s", host, resp.raw)
		id := resp.task(t).ID
		b.waitCallback(t, id, "failed")
		attempts := b.callbackAttempts(t, id)
		require.Len(t, attempts, 1)
		require.NotNil(t, attempts[0].Error)
		public[host] = fmt.Sprintf("%v %v %v %s", attempts[0].StatusCode, attempts[0].Delivered, attempts[0].GaveUp, *attempts[0].Error)
	}
	require.Equal(t, public[privateName], public[unknownName])
	require.Contains(t, public[privateName], "address_not_allowed: "+fetch.UnreachableMessage)
	requireRefusedApart(t, logs)
}
