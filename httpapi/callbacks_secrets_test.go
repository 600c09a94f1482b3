package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/callback"
)

// callbackSecretAs reads the callback secret of the tenant key is for.
func (b *bundle) callbackSecretAs(t *testing.T, key string) taskrunner.CallbackSecret {
	t.Helper()
	resp := b.doAs(t, key, http.MethodGet, "/callbacks/secret", nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
	return decode[taskrunner.CallbackSecret](t, resp.raw)
}

func (b *bundle) rotateCallbackSecretAs(t *testing.T, key string) taskrunner.CallbackSecret {
	t.Helper()
	resp := b.doAs(t, key, http.MethodPost, "/callbacks/secret/rotate", nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
	return decode[taskrunner.CallbackSecret](t, resp.raw)
}

// submitCallbackAs submits an echo task of key's tenant with a callback to
// url and returns its id.
func (b *bundle) submitCallbackAs(t *testing.T, key, url string) int64 {
	t.Helper()
	resp := b.doAs(t, key, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": url})
	require.Equal(t, http.StatusAccepted, resp.status, "%s", resp.raw)
	return resp.task(t).ID
}

// deliveryOf is the delivery rc got of task id's callback.
func (rc *receiver) deliveryOf(t *testing.T, id int64) delivery {
	t.Helper()
	for _, d := range rc.deliveries() {
		if decode[struct {
			ID int64 `json:"id"`
		}](t, d.body).ID == id {
			return d
		}
	}
	t.Fatalf("no delivery of task %d", id)
	return delivery{}
}

func verifies(secret string, d delivery) error {
	return callback.Verify([]byte(secret), d.header.Get(callback.HeaderSignature), d.body, time.Minute, time.Now())
}

// Each tenant's callbacks are signed with its own secret: they verify
// with it, and not with another tenant's nor with CALLBACK_SECRET. The
// delivery names the tenant, in a header and in the signed body. No
// tenant reads another's secret, and no secret reaches the log.
func TestCallbacksAreSignedWithTheOwnersSecret(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	b := setupCallbacks(t, rc, callbackOpts{apiKeys: true, fairShare: true})

	alice, bob, ops := b.callbackSecretAs(t, aliceKey), b.callbackSecretAs(t, bobKey), b.callbackSecretAs(t, opsKey)
	for _, s := range []taskrunner.CallbackSecret{alice, bob, ops} {
		require.Regexp(t, `^whsec_[A-Za-z0-9_-]{43}$`, s.Secret)
		require.Nil(t, s.Previous)
		require.Nil(t, s.PreviousExpiresAt)
		require.NotContains(t, s.Secret, string(testCallbackSecret))
	}
	require.Equal(t, alice, b.callbackSecretAs(t, alice2Key), "one secret per tenant, whichever of its keys asks")
	require.NotEqual(t, alice.Secret, bob.Secret)
	require.NotEqual(t, alice.Secret, ops.Secret, "an admin reads its own, not another's")
	resp := b.doAs(t, aliceKey, http.MethodGet, "/callbacks/secret?owner=bob", nil)
	require.Equal(t, http.StatusOK, resp.status)
	require.Equal(t, alice, decode[taskrunner.CallbackSecret](t, resp.raw), "no way to name another tenant")
	require.Equal(t, "no-store", resp.header.Get("Cache-Control"))

	aliceTask := b.submitCallbackAs(t, aliceKey, rc.url("/alice"))
	bobTask := b.submitCallbackAs(t, bobKey, rc.url("/bob"))
	b.waitCallbackAs(t, aliceKey, aliceTask, "delivered")
	b.waitCallbackAs(t, bobKey, bobTask, "delivered")

	for _, c := range []struct {
		id           int64
		owner        string
		own, other   string
		otherTenants string
	}{
		{aliceTask, "alice", alice.Secret, bob.Secret, "bob"},
		{bobTask, "bob", bob.Secret, alice.Secret, "alice"},
	} {
		d := rc.deliveryOf(t, c.id)
		require.Equal(t, c.owner, d.header.Get(callback.HeaderTenant))
		require.Equal(t, c.owner, decode[struct {
			Owner string `json:"owner"`
		}](t, d.body).Owner, "the signed body names the owner")
		require.Regexp(t, `^t=\d+,v1=[0-9a-f]{64}$`, d.header.Get(callback.HeaderSignature))
		require.NoError(t, verifies(c.own, d), "%s's own secret", c.owner)
		require.ErrorIs(t, verifies(c.other, d), callback.ErrMismatch, "%s's secret", c.otherTenants)
		require.ErrorIs(t, verifies(ops.Secret, d), callback.ErrMismatch, "an admin's secret")
		require.ErrorIs(t, verifies(string(testCallbackSecret), d), callback.ErrMismatch, "CALLBACK_SECRET")
	}

	logs := b.logs.String()
	for _, s := range []string{alice.Secret, bob.Secret, ops.Secret, string(testCallbackSecret)} {
		require.NotContains(t, logs, s)
	}
}

// A rotation makes a new secret sign at once (in this process) and the
// old one sign too until the grace ends: each delivery carries both
// signatures, the new first, and both verify. After the grace only the
// new one signs. A worker that read the generations before the rotation
// signs with the new one within its cache's bound.
func TestCallbackSecretRotation(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	const cache = 200 * time.Millisecond
	b := setupCallbacks(t, rc, callbackOpts{apiKeys: true, fairShare: true, secretCache: cache, rotationGrace: 3 * time.Second})

	old := b.callbackSecretAs(t, aliceKey)
	before := b.submitCallbackAs(t, aliceKey, rc.url("/hook")) // the worker reads alice's generation
	b.waitCallbackAs(t, aliceKey, before, "delivered")
	require.NoError(t, verifies(old.Secret, rc.deliveryOf(t, before)))

	rotated := b.rotateCallbackSecretAs(t, aliceKey)
	require.NotEqual(t, old.Secret, rotated.Secret)
	require.Regexp(t, `^whsec_`, rotated.Secret)
	require.NotNil(t, rotated.Previous)
	require.Equal(t, old.Secret, *rotated.Previous)
	require.NotNil(t, rotated.PreviousExpiresAt)
	require.WithinDuration(t, time.Now().Add(3*time.Second), *rotated.PreviousExpiresAt, 2*time.Second)
	require.Equal(t, rotated, b.callbackSecretAs(t, aliceKey))
	require.Equal(t, b.callbackSecretAs(t, bobKey).Previous, (*string)(nil), "bob's is untouched")

	time.Sleep(cache) // the worker's cache bound: the rotation holds everywhere after it
	during := b.submitCallbackAs(t, aliceKey, rc.url("/hook"))
	b.waitCallbackAs(t, aliceKey, during, "delivered")
	d := rc.deliveryOf(t, during)
	sig := d.header.Get(callback.HeaderSignature)
	require.Regexp(t, `^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$`, sig, "two signatures during the grace")
	require.NoError(t, verifies(rotated.Secret, d), "the new secret")
	require.NoError(t, verifies(old.Secret, d), "the old secret, during the grace")
	newOnly := sig[:strings.LastIndex(sig, ",")]
	require.NoError(t, callback.Verify([]byte(rotated.Secret), newOnly, d.body, time.Minute, time.Now()), "the new one first")

	time.Sleep(time.Until(*rotated.PreviousExpiresAt) + cache)
	after := b.submitCallbackAs(t, aliceKey, rc.url("/hook"))
	b.waitCallbackAs(t, aliceKey, after, "delivered")
	d = rc.deliveryOf(t, after)
	require.Regexp(t, `^t=\d+,v1=[0-9a-f]{64}$`, d.header.Get(callback.HeaderSignature), "one signature after the grace")
	require.NoError(t, verifies(rotated.Secret, d))
	require.ErrorIs(t, verifies(old.Secret, d), callback.ErrMismatch, "the old secret no longer signs")
	now := b.callbackSecretAs(t, aliceKey)
	require.Equal(t, rotated.Secret, now.Secret)
	require.Nil(t, now.Previous)
	require.Nil(t, now.PreviousExpiresAt)

	logs := b.logs.String()
	require.NotContains(t, logs, old.Secret)
	require.NotContains(t, logs, rotated.Secret)
	require.Len(t, b.logs.Events("callback_secret_rotated"), 1)
}

// Concurrent rotations each step the generation once: none is lost, none
// counts twice, and each answers a secret of its own.
func TestConcurrentCallbackSecretRotations(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	b := setupCallbacks(t, rc, callbackOpts{apiKeys: true})
	const n = 20
	var wg sync.WaitGroup
	got := make([]string, n)
	for i := range n {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodPost, b.server.URL+"/callbacks/secret/rotate", nil)
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+aliceKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == http.StatusOK {
				got[i] = string(body)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, raw := range got {
		require.NotEmpty(t, raw, "rotation %d failed", i)
		s := decode[taskrunner.CallbackSecret](t, []byte(raw)).Secret
		require.False(t, seen[s], "two rotations answered the same secret")
		seen[s] = true
	}
	var gen int64
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		"SELECT generation FROM callback_secret_generations WHERE owner = 'alice'").Scan(&gen))
	require.EqualValues(t, n, gen)
	require.True(t, seen[b.callbackSecretAs(t, aliceKey).Secret], "the current one is the last rotation's")
}

// Without keys the tenant local signs with CALLBACK_SECRET itself, as
// before secrets were per tenant, until it first rotates.
func TestLocalCallbackSecretIsCallbackSecretUntilRotated(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	const cache = 100 * time.Millisecond
	b := setupCallbacks(t, rc, callbackOpts{secretCache: cache})
	s := b.callbackSecretAs(t, "")
	require.Equal(t, string(testCallbackSecret), s.Secret)
	require.Nil(t, s.Previous)

	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": rc.url("/hook")})
	b.waitCallback(t, id, "delivered")
	d := rc.deliveryOf(t, id)
	require.Equal(t, taskrunner.LocalTenant, d.header.Get(callback.HeaderTenant))
	require.NoError(t, verifies(string(testCallbackSecret), d))

	rotated := b.rotateCallbackSecretAs(t, "")
	require.Regexp(t, `^whsec_`, rotated.Secret)
	require.Equal(t, string(testCallbackSecret), *rotated.Previous)
	time.Sleep(cache) // the worker's cache bound
	id = b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": rc.url("/hook")})
	b.waitCallback(t, id, "delivered")
	d = rc.deliveryOf(t, id)
	require.NoError(t, verifies(rotated.Secret, d))
	require.NoError(t, verifies(string(testCallbackSecret), d), "during the grace")
}

// A server without CALLBACK_SECRET has no callback secrets to show.
func TestCallbackSecretRoutesWithoutCallbacks(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: tenantKeys})
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/callbacks/secret"},
		{http.MethodPost, "/callbacks/secret/rotate"},
	} {
		resp := b.doAs(t, aliceKey, r.method, r.path, nil)
		require.Equal(t, http.StatusNotFound, resp.status, "%s %s: %s", r.method, r.path, resp.raw)
		require.Equal(t, taskrunner.CodeCallbacksDisabled, resp.apiError(t).Code)
		resp = b.doAs(t, "", r.method, r.path, nil)
		require.Equal(t, http.StatusUnauthorized, resp.status, "%s %s without a key", r.method, r.path)
	}
}

// A rotation is a write: it counts against the tenant's enqueue limit,
// and is refused, changing nothing, beyond it.
func TestCallbackSecretRotationIsRateLimited(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	b := setupCallbacks(t, rc, callbackOpts{apiKeys: true, perMinute: 2})
	first := b.rotateCallbackSecretAs(t, aliceKey)
	second := b.rotateCallbackSecretAs(t, aliceKey)
	resp := b.doAs(t, aliceKey, http.MethodPost, "/callbacks/secret/rotate", nil)
	require.Equal(t, http.StatusTooManyRequests, resp.status, "%s", resp.raw)
	require.Equal(t, taskrunner.CodeRateLimitExceeded, resp.apiError(t).Code)
	require.Equal(t, second, b.callbackSecretAs(t, aliceKey), "the refused rotation changed nothing")
	require.Equal(t, first.Secret, *second.Previous)
	b.rotateCallbackSecretAs(t, bobKey) // bob's allowance is his own
}
