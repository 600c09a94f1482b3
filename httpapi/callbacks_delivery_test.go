package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/callback"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/jobs"
)

var testCallbackSecret = []byte("callback-test-secret-0123456789")

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a local callback receiver on 127.0.0.1. Its handler, when
// set, answers; otherwise it answers 200.
type receiver struct {
	srv     *httptest.Server
	port    int
	mu      sync.Mutex
	got     []delivery
	handler func(n int, w http.ResponseWriter, r *http.Request) // n: this request's number, from 1
}

func newReceiver(t *testing.T, handler func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{handler: handler}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body, at: time.Now()})
		n := len(rc.got)
		rc.mu.Unlock()
		if rc.handler != nil {
			rc.handler(n, w, r)
		}
	}))
	t.Cleanup(rc.srv.CloseClientConnections)
	t.Cleanup(rc.srv.Close)
	u, err := url.Parse(rc.srv.URL)
	require.NoError(t, err)
	rc.port, err = strconv.Atoi(u.Port())
	require.NoError(t, err)
	return rc
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

func (rc *receiver) url(path string) string { return rc.srv.URL + path }

// callbackOpts configure setupCallbacks.
type callbackOpts struct {
	maxAttempts int
	timeout     time.Duration
	// refusePrivate makes the worker's dialer refuse private addresses
	// (the submit check allows them here, as CALLBACK_ALLOW_PRIVATE_NETWORKS
	// does for the receiver on 127.0.0.1).
	refusePrivate bool
	apiKeys       bool
	// others are more receivers callbacks may reach.
	others []*receiver
	// fairShare, secretCache, rotationGrace and concurrency: as setupOpts'.
	fairShare     bool
	secretCache   time.Duration
	rotationGrace time.Duration
	concurrency   int
	perMinute     int
}

// setupCallbacks is a working server whose tasks may ask for callbacks to
// rc, delivered by this process's workers with a short backoff.
func setupCallbacks(t *testing.T, rc *receiver, o callbackOpts) *bundle {
	t.Helper()
	ports := []int{rc.port}
	for _, other := range o.others {
		ports = append(ports, other.port)
	}
	submit := fetch.Config{Allowlist: []string{"*"}, AllowlistSetting: "CALLBACK_DOMAIN_ALLOWLIST", AllowedPorts: ports, AllowPrivateNetworks: true}
	dial := submit
	dial.AllowPrivateNetworks = !o.refusePrivate
	dial.MaxRedirects = -1
	opts := setupOpts{work: true, callback: &submit, callbackDeps: &jobs.CallbackDeps{
		Secret: testCallbackSecret, Poster: fetch.New(dial), MaxAttempts: o.maxAttempts, Timeout: o.timeout,
		RetryBase: 10 * time.Millisecond, RetryCap: 50 * time.Millisecond,
	}, fairShare: o.fairShare, callbackSecretCache: o.secretCache, callbackRotationGrace: o.rotationGrace, callbackConcurrency: o.concurrency, perMinute: o.perMinute}
	if o.apiKeys {
		opts.apiKeys = tenantKeys
	}
	return setup(t, opts)
}

// waitCallback polls GET /tasks/{id} until its callback's state is want.
func (b *bundle) waitCallback(t *testing.T, id int64, want string) callbackView {
	t.Helper()
	return b.waitCallbackAs(t, "", id, want)
}

func (b *bundle) waitCallbackAs(t *testing.T, key string, id int64, want string) callbackView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := b.doAs(t, key, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil)
		require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
		v := decode[struct {
			Callback *callbackView `json:"callback"`
		}](t, resp.raw)
		require.NotNil(t, v.Callback, "%s", resp.raw)
		if v.Callback.State == want {
			return *v.Callback
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d: callback %+v, want state %s", id, *v.Callback, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type callbackView struct {
	URL      string `json:"url"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
}

func (b *bundle) callbackAttempts(t *testing.T, id int64) []taskrunner.CallbackAttempt {
	t.Helper()
	resp := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d/callbacks", id), nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
	return decode[struct {
		Attempts []taskrunner.CallbackAttempt `json:"attempts"`
	}](t, resp.raw).Attempts
}

func (b *bundle) callbackJobs(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM river_job WHERE kind = 'taskrunner_callback'").Scan(&n))
	return n
}

func TestOneSignedCallbackPerFinishedTask(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	b := setupCallbacks(t, rc, callbackOpts{})
	cb := rc.url("/hook")

	completed := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": cb})
	discarded := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 5}, "timeout_seconds": 0.1, "max_retries": 0, "callback_url": cb})
	queued := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "later"}, "run_at": time.Now().Add(time.Hour), "callback_url": cb})
	unfinished := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "much later"}, "run_at": time.Now().Add(time.Hour), "callback_url": cb})
	plain := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "no callback"}})
	resp := b.do(t, http.MethodPost, fmt.Sprintf("/tasks/%d/cancel", queued), nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)

	want := map[int64]string{completed: "task.completed", discarded: "task.discarded", queued: "task.cancelled"}
	for id := range want {
		v := b.waitCallback(t, id, "delivered")
		require.Equal(t, callbackView{URL: cb, State: "delivered", Attempts: 1}, v)
	}
	b.waitStatus(t, plain, "completed")

	got := rc.deliveries()
	require.Len(t, got, 3, "one delivery per finished task with a callback")
	seen := map[int64]bool{}
	for _, d := range got {
		require.Equal(t, "application/json", d.header.Get("Content-Type"))
		require.NoError(t, callback.Verify(testCallbackSecret, d.header.Get(callback.HeaderSignature), d.body, time.Minute, time.Now()))
		_, err := uuid.Parse(d.header.Get(callback.HeaderDelivery))
		require.NoError(t, err)
		view := decode[struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
			Owner  string `json:"owner"`
		}](t, d.body)
		require.False(t, seen[view.ID], "task %d delivered twice", view.ID)
		seen[view.ID] = true
		require.Equal(t, want[view.ID], d.header.Get(callback.HeaderEvent))
		require.Equal(t, want[view.ID], "task."+view.Status, "the body is the task in its final state")
	}

	attempts := b.callbackAttempts(t, completed)
	require.Len(t, attempts, 1)
	require.Equal(t, 200, *attempts[0].StatusCode)
	require.True(t, attempts[0].Delivered)
	require.Nil(t, attempts[0].Error)

	// Not finished, or no callback: nothing sent, nothing queued.
	require.Equal(t, callbackView{URL: cb, State: "pending"}, b.waitCallback(t, unfinished, "pending"))
	require.Empty(t, b.callbackAttempts(t, unfinished))
	resp = b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d", plain), nil)
	require.JSONEq(t, "null", string(decode[struct {
		Callback json.RawMessage `json:"callback"`
	}](t, resp.raw).Callback))
	require.Equal(t, 3, b.callbackJobs(t))
}

func TestCallbackRetriedUntilDelivered(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	b := setupCallbacks(t, rc, callbackOpts{maxAttempts: 5})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": rc.url("/hook")})
	v := b.waitCallback(t, id, "delivered")
	require.Equal(t, 3, v.Attempts)

	attempts := b.callbackAttempts(t, id)
	require.Len(t, attempts, 3)
	for i, a := range attempts {
		require.Equal(t, i+1, a.Attempt)
		require.Equal(t, attempts[0].DeliveryID, a.DeliveryID, "one delivery, retried")
		require.Equal(t, "task.completed", a.Event)
		require.False(t, a.GaveUp)
	}
	require.Equal(t, 500, *attempts[0].StatusCode)
	require.Equal(t, "the receiver answered 500", *attempts[0].Error)
	require.Equal(t, 500, *attempts[1].StatusCode)
	require.Equal(t, 200, *attempts[2].StatusCode)
	require.True(t, attempts[2].Delivered)
	got := rc.deliveries()
	require.Len(t, got, 3)
	require.Equal(t, got[0].header.Get(callback.HeaderDelivery), got[2].header.Get(callback.HeaderDelivery))
}

func TestCallbackReceiverThatNeverAnswersUsesUpTheAttempts(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select { // never answers while the request lasts
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	b := setupCallbacks(t, rc, callbackOpts{maxAttempts: 2, timeout: 200 * time.Millisecond})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": rc.url("/hook")})
	v := b.waitCallback(t, id, "failed")
	require.Equal(t, 2, v.Attempts)
	attempts := b.callbackAttempts(t, id)
	require.Len(t, attempts, 2)
	for _, a := range attempts {
		require.Nil(t, a.StatusCode)
		require.False(t, a.Delivered)
		require.Contains(t, *a.Error, "fetch_timeout")
	}
	require.False(t, attempts[0].GaveUp)
	require.True(t, attempts[1].GaveUp)
	require.Eventually(t, func() bool {
		var state string
		err := b.db.Pool.QueryRow(context.Background(), "SELECT state FROM river_job WHERE kind = 'taskrunner_callback'").Scan(&state)
		return err == nil && state == "discarded"
	}, 10*time.Second, 20*time.Millisecond, "the delivery job ends discarded")
}

func TestCallbackRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	followed := make(chan struct{}, 10)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed <- struct{}{}
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	b := setupCallbacks(t, rc, callbackOpts{maxAttempts: 1})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": rc.url("/hook")})
	b.waitCallback(t, id, "failed")
	attempts := b.callbackAttempts(t, id)
	require.Len(t, attempts, 1)
	require.Equal(t, http.StatusTemporaryRedirect, *attempts[0].StatusCode)
	require.Equal(t, "the receiver answered 307; redirects are not followed", *attempts[0].Error)
	require.Len(t, rc.deliveries(), 1)
	require.Empty(t, followed)
}

func TestCallbackToAPrivateAddressIsRefusedAtDialTime(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	// Accepted at submit (as a name could be, resolving later to a
	// private address), refused by the worker's dialer.
	b := setupCallbacks(t, rc, callbackOpts{maxAttempts: 1, refusePrivate: true})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": rc.url("/hook")})
	b.waitCallback(t, id, "failed")
	attempts := b.callbackAttempts(t, id)
	require.Len(t, attempts, 1)
	require.Nil(t, attempts[0].StatusCode)
	require.Contains(t, *attempts[0].Error, "address_not_allowed")
	require.NotContains(t, *attempts[0].Error, strconv.Itoa(rc.port)+"/", "no URL in the error")
	require.Empty(t, rc.deliveries())
}

func TestTaskCallbacksAreTheOwnersOnly(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	b := setupCallbacks(t, rc, callbackOpts{apiKeys: true})
	resp := b.doAs(t, aliceKey, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": rc.url("/hook")})
	require.Equal(t, http.StatusAccepted, resp.status, "%s", resp.raw)
	id := resp.task(t).ID
	b.waitCallbackAs(t, aliceKey, id, "delivered")

	path := fmt.Sprintf("/tasks/%d/callbacks", id)
	resp = b.doAs(t, aliceKey, http.MethodGet, path, nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
	resp = b.doAs(t, bobKey, http.MethodGet, path, nil)
	require.Equal(t, http.StatusNotFound, resp.status, "%s", resp.raw)
	require.Equal(t, taskrunner.CodeNotFound, resp.apiError(t).Code)
	resp = b.doAs(t, opsKey, http.MethodGet, path, nil)
	require.Equal(t, http.StatusOK, resp.status, "admins see every task's")
	resp = b.doAs(t, aliceKey, http.MethodGet, "/tasks/999999/callbacks", nil)
	require.Equal(t, http.StatusNotFound, resp.status)
}

// hang is a receiver's handler that accepts a callback and never
// answers while the request lasts.
func hang(_ int, _ http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(30 * time.Second):
	}
}

// One tenant's receiver that accepts and never answers, with 200 of its
// deliveries due, holds only that tenant's delivery workers: another
// tenant's callback arrives within 2 s of its task finishing, well within
// one attempt's timeout.
func TestHangingReceiverOfOneTenantLeavesAnothersCallbacksOnTime(t *testing.T) {
	t.Parallel()
	stuck := newReceiver(t, hang)
	rc := newReceiver(t, nil)
	const timeout = 8 * time.Second
	b := setupCallbacks(t, stuck, callbackOpts{apiKeys: true, fairShare: true, others: []*receiver{rc}, timeout: timeout, maxAttempts: 2})

	const due = 200
	batch := make([]map[string]any, 50)
	for i := range batch {
		batch[i] = map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": stuck.url("/hook")}
	}
	for range due / len(batch) {
		resp := b.doAs(t, aliceKey, http.MethodPost, "/tasks/batch", map[string]any{"tasks": batch})
		require.Equal(t, http.StatusAccepted, resp.status, "%s", resp.raw)
	}
	require.Eventually(t, func() bool { return b.callbackJobs(t) >= due }, 20*time.Second, 20*time.Millisecond,
		"every one of alice's deliveries due")
	require.Eventually(t, func() bool { return len(stuck.deliveries()) >= 1 }, 10*time.Second, 10*time.Millisecond,
		"alice's receiver holds deliveries")

	id := b.submitCallbackAs(t, bobKey, rc.url("/bob"))
	b.waitCallbackAs(t, bobKey, id, "delivered")
	var finished time.Time
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT finalized_at FROM river_job WHERE id = $1", id).Scan(&finished))
	got := rc.deliveryOf(t, id)
	late := got.at.Sub(finished)
	t.Logf("bob's callback arrived %s after his task finished; alice's receiver got %d requests", late, len(stuck.deliveries()))
	require.Less(t, late, 2*time.Second, "bob's callback waited behind alice's hanging receiver")
}

// Each tenant's deliveries go to its own delivery queue with fair share;
// a task enqueued before deliveries had queues (its metadata names none)
// still gets its callback, from 'default'.
func TestCallbackDeliveryQueues(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	b := setupCallbacks(t, rc, callbackOpts{apiKeys: true, fairShare: true})
	queueOf := func(id int64) string {
		t.Helper()
		var q string
		require.NoError(t, b.db.Pool.QueryRow(context.Background(),
			"SELECT queue FROM river_job WHERE kind = 'taskrunner_callback' AND (args->>'task_id')::bigint = $1", id).Scan(&q))
		return q
	}
	alice := b.submitCallbackAs(t, aliceKey, rc.url("/a"))
	bob := b.submitCallbackAs(t, bobKey, rc.url("/b"))
	b.waitCallbackAs(t, aliceKey, alice, "delivered")
	b.waitCallbackAs(t, bobKey, bob, "delivered")
	require.Equal(t, jobs.CallbackQueueFor("alice"), queueOf(alice))
	require.Equal(t, jobs.CallbackQueueFor("bob"), queueOf(bob))

	// As enqueued before: no callback_queue in its metadata.
	resp := b.doAs(t, aliceKey, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "old"},
		"callback_url": rc.url("/old"), "run_at": time.Now().Add(time.Hour)})
	require.Equal(t, http.StatusAccepted, resp.status, "%s", resp.raw)
	old := resp.task(t).ID
	_, err := b.db.Pool.Exec(context.Background(), "UPDATE river_job SET metadata = metadata - 'callback_queue' WHERE id = $1", old)
	require.NoError(t, err)
	resp = b.doAs(t, aliceKey, http.MethodPost, fmt.Sprintf("/tasks/%d/cancel", old), nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
	b.waitCallbackAs(t, aliceKey, old, "delivered")
	require.Equal(t, "default", queueOf(old))
	require.Equal(t, "alice", rc.deliveryOf(t, old).header.Get(callback.HeaderTenant))
}
