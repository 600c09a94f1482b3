package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/metrics"
)

// Keys of the tenants in these tests: alice has two (a rotation), bob one.
const (
	limitsAliceKey    = "alice-key-0123456789abcdef"
	limitsAliceKeyNew = "alice-key-new-0123456789ab"
	limitsBobKey      = "bob-key-0123456789abcdef"
)

var limitsTenantKeys = []config.APIKey{{Name: "alice", Key: limitsAliceKey}, {Name: "alice", Key: limitsAliceKeyNew}, {Name: "bob", Key: limitsBobKey}}

// The enqueue limit is per tenant, at the tenant's own TASKS_PER_MINUTE
// when TENANT_LIMITS gives one: alice (3 a minute) is refused the 4th,
// whichever of her keys sends it; bob, at the global rate, is not held
// back by her.
func TestEnqueueLimitIsPerTenantWithItsOverride(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.SetTenants([]string{"alice", "bob"})
	b := setup(t, setupOpts{perMinute: 10, apiKeys: limitsTenantKeys, metrics: m,
		tenantLimits: map[string]config.TenantLimits{"alice": {TasksPerMinute: 3}}})

	for i, key := range []string{limitsAliceKey, limitsAliceKeyNew, limitsAliceKey} {
		r := b.doAs(t, key, "POST", "/tasks", echoTask)
		require.Equal(t, http.StatusAccepted, r.status, "alice's enqueue %d: %s", i+1, r.raw)
		require.Equal(t, `"enqueue";q=3;w=60`, r.header.Get("RateLimit-Policy"))
	}
	over := b.doAs(t, limitsAliceKeyNew, "POST", "/tasks", echoTask)
	require.Equal(t, http.StatusTooManyRequests, over.status, "the 4th, by her other key: %s", over.raw)
	require.Equal(t, taskrunner.CodeRateLimitExceeded, errorCode(t, over))
	require.NotEmpty(t, over.header.Get("Retry-After"))
	require.Contains(t, over.apiError(t).Message, "3 tasks per minute")

	for i := range 5 {
		r := b.doAs(t, limitsBobKey, "POST", "/tasks", echoTask)
		require.Equal(t, http.StatusAccepted, r.status, "bob's enqueue %d: %s", i+1, r.raw)
		require.Equal(t, `"enqueue";q=10;w=60`, r.header.Get("RateLimit-Policy"))
	}

	limited := b.logs.Events("rate_limited")
	require.Len(t, limited, 1)
	require.Equal(t, "alice", limited[0]["tenant"])
	require.NotContains(t, b.logs.String(), limitsAliceKeyNew, "logs name the tenant, never the key")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	require.Contains(t, text, `taskrunner_tasks_enqueued_total{tenant="alice",type="echo"} 3`)
	require.Contains(t, text, `taskrunner_tasks_enqueued_total{tenant="bob",type="echo"} 5`)
}

// Artifact uploads count against the tenant's ARTIFACT_MB_PER_MINUTE: a
// declared size is refused whole when more than is left, a body of
// unknown size once what was read is; nothing of a refused upload is
// kept, and another tenant still has its allowance.
func TestArtifactBytesAreLimitedPerTenant(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	b := setup(t, setupOpts{perMinute: 100, artifactMBPerMinute: 1, maxArtifactBytes: mib, apiKeys: limitsTenantKeys})
	aliceTask := b.submitAs(t, limitsAliceKey, echoTask)
	bobTask := b.submitAs(t, limitsBobKey, echoTask)
	put := func(key string, id int64, name string, body []byte, size int64) (*http.Response, []byte) {
		return b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/%s", id, name), "application/octet-stream", body, size,
			"Authorization", "Bearer "+key)
	}
	data := randomBytes(t, mib)

	resp, body := put(limitsAliceKey, aliceTask, "first.bin", data, mib)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "a minute's whole allowance: %s", body)
	rows, objects := b.artifactRows(t), b.objectCount(t)

	for _, tc := range []struct {
		name string
		size int64
		key  string
	}{{"declared.bin", mib, limitsAliceKeyNew}, {"chunked.bin", -1, limitsAliceKey}} {
		resp, body = put(tc.key, aliceTask, tc.name, data, tc.size)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "%s: %s", tc.name, body)
		require.Contains(t, string(body), `"rate_limit_exceeded"`)
		require.Contains(t, string(body), "ARTIFACT_MB_PER_MINUTE")
		retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err, tc.name)
		require.Positive(t, retry, tc.name)
	}
	// The JSON form counts its decoded bytes too.
	jsonBody := fmt.Sprintf(`{"task_id":%d,"type":"blob","data_base64":%q}`, aliceTask, base64.StdEncoding.EncodeToString(data[:512<<10]))
	resp, body = b.raw(t, http.MethodPost, "/artifacts", "application/json", []byte(jsonBody), int64(len(jsonBody)), "Authorization", "Bearer "+limitsAliceKey)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "%s", body)
	require.Equal(t, rows, b.artifactRows(t), "no row of a refused upload")
	require.Equal(t, objects, b.objectCount(t), "no object of a refused upload")

	resp, body = put(limitsBobKey, bobTask, "bob.bin", data, -1)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "bob has his own allowance: %s", body)

	limited := b.logs.Events("rate_limited")
	require.Len(t, limited, 3)
	for _, e := range limited {
		require.Equal(t, "artifact_bytes", e["limit"])
		require.Equal(t, "alice", e["tenant"])
	}
}

// Without Redis the byte rate lets uploads through, as the enqueue limit
// does, and says so.
func TestArtifactByteLimitFailsOpen(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{perMinute: 1, artifactMBPerMinute: 1, redisURL: "redis://127.0.0.1:1/0", apiKeys: limitsTenantKeys})
	id := b.submitAs(t, limitsAliceKey, echoTask)
	for i := range 2 {
		resp, body := b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/a%d.bin", id, i), "", bytes.Repeat([]byte("x"), 200<<10), -1,
			"Authorization", "Bearer "+limitsAliceKey)
		require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", body)
	}
	require.Len(t, b.logs.Events("rate_limiter_unavailable"), 1, "said once")
}

// A tenant holding its TENANT_MAX_WAITERS in the process is refused more
// long polls and event streams with too_many_waiters; another tenant still
// waits, and the tenant may wait again once one ended.
func TestWaitersAreBoundedPerTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{maxWaiters: 100, tenantMaxWaiters: 1, apiKeys: limitsTenantKeys}) // nothing works the tasks
	aliceTask := b.submitAs(t, limitsAliceKey, echoTask)
	bobTask := b.submitAs(t, limitsBobKey, echoTask)

	first := make(chan response, 1)
	go func() {
		first <- b.doAs(t, limitsAliceKey, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=3s", aliceTask), nil)
	}()
	require.Eventually(t, func() bool { return b.waiting(t) == 1 }, 5*time.Second, 10*time.Millisecond)

	second := b.doAs(t, limitsAliceKeyNew, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=3s", aliceTask), nil)
	require.Equal(t, http.StatusServiceUnavailable, second.status)
	require.Equal(t, taskrunner.CodeTooManyWaiters, errorCode(t, second))
	require.Contains(t, second.apiError(t).Message, "TENANT_MAX_WAITERS")
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/tasks/%d/events", b.server.URL, aliceTask), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+limitsAliceKey)
	events, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	events.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, events.StatusCode, "event streams count too")

	bob := b.doAs(t, limitsBobKey, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=200ms", bobTask), nil)
	require.Equal(t, http.StatusOK, bob.status, "bob is not held back by alice: %s", bob.raw)
	require.Equal(t, http.StatusOK, (<-first).status)
	again := b.doAs(t, limitsAliceKey, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=200ms", aliceTask), nil)
	require.Equal(t, http.StatusOK, again.status, "alice's waiter was let go: %s", again.raw)
	require.Zero(t, b.waiting(t))
}

// GET /limits shows the caller its own effective limits beside the global
// ones, and nothing of another tenant's.
func TestLimitsShowTheCallersOwn(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{perMinute: 10, artifactMBPerMinute: 64, tenantMaxWaiters: 4, apiKeys: limitsTenantKeys,
		tenantLimits: map[string]config.TenantLimits{"alice": {TasksPerMinute: 3, MaxRunning: 7}}})
	type own struct {
		Name                string `json:"name"`
		TasksPerMinute      int    `json:"tasks_per_minute"`
		MaxRunning          int    `json:"max_running"`
		ArtifactMBPerMinute int    `json:"artifact_mb_per_minute"`
		MaxWaiters          int    `json:"max_waiters"`
	}
	type limits struct {
		TasksPerMinute      int `json:"tasks_per_minute"`
		ArtifactMBPerMinute int `json:"artifact_mb_per_minute"`
		TenantMaxWaiters    int `json:"tenant_max_waiters"`
		TenantMaxRunning    int `json:"tenant_max_running"`
		Tenant              own `json:"tenant"`
	}
	alice := b.doAs(t, limitsAliceKeyNew, http.MethodGet, "/limits", nil)
	require.Equal(t, http.StatusOK, alice.status, "%s", alice.raw)
	require.Equal(t, limits{TasksPerMinute: 10, ArtifactMBPerMinute: 64, TenantMaxWaiters: 4,
		Tenant: own{Name: "alice", TasksPerMinute: 3, MaxRunning: 7, ArtifactMBPerMinute: 64, MaxWaiters: 4}}, decode[limits](t, alice.raw))

	bob := b.doAs(t, limitsBobKey, http.MethodGet, "/limits", nil)
	require.Equal(t, http.StatusOK, bob.status)
	require.Equal(t, own{Name: "bob", TasksPerMinute: 10, ArtifactMBPerMinute: 64, MaxWaiters: 4}, decode[limits](t, bob.raw).Tenant)
	require.False(t, strings.Contains(string(bob.raw), "alice"), "bob sees nothing of alice's limits: %s", bob.raw)
}
