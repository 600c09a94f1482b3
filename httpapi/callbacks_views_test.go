package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/fetch"
)

// callbackReads counts the queries that read callback_attempts.
type callbackReads struct {
	mu sync.Mutex
	n  int
}

func (c *callbackReads) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "FROM callback_attempts") {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return ctx
}

func (c *callbackReads) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns the count so far and starts over.
func (c *callbackReads) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = 0
	return n
}

// anyCallback lets callback_url name any public host.
var anyCallback = &fetch.Config{Allowlist: []string{"*"}, AllowlistSetting: "CALLBACK_DOMAIN_ALLOWLIST"}

// recordAttempts records attempts of task id's callback, the last one
// delivered or given up as last says ("" for neither).
func (b *bundle) recordAttempts(t *testing.T, id int64, n int, last string) {
	t.Helper()
	delivery := uuid.New()
	for i := 1; i <= n; i++ {
		a := db.CallbackAttempt{TaskID: id, DeliveryID: delivery, Event: "task.completed", Attempt: i, LatencyMS: 1, At: time.Now()}
		switch {
		case i == n && last == taskrunner.CallbackDelivered:
			a.Delivered, a.StatusCode = true, new(204)
		case i == n && last == taskrunner.CallbackFailed:
			a.GaveUp, a.StatusCode, a.Error = true, new(500), new("the receiver answered 500")
		default:
			a.StatusCode, a.Error = new(503), new("the receiver answered 503")
		}
		require.NoError(t, db.InsertCallbackAttempt(context.Background(), b.db.Pool, a))
	}
}

// callbackOfView is the callback field of an encoded task view, which must
// be there.
func callbackOfView(t *testing.T, raw []byte) *callbackView {
	t.Helper()
	var v map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &v))
	cb, ok := v["callback"]
	require.True(t, ok, "no callback in %s", raw)
	var out *callbackView
	require.NoError(t, json.Unmarshal(cb, &out))
	return out
}

// A page of GET /tasks shows each task's callback as GET /tasks/{id} does,
// read in one query for the whole page; a page without callbacks reads
// none.
func TestTaskListShowsEachCallbackStateInOneQuery(t *testing.T) {
	t.Parallel()
	reads := &callbackReads{}
	b := setup(t, setupOpts{callback: anyCallback, tracer: reads})
	echo := func(cb string) int64 {
		req := map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}}
		if cb != "" {
			req["callback_url"] = cb
		}
		return b.submit(t, req)
	}
	plain := echo("")
	delivered := echo("https://a.example.com/delivered")
	retrying := echo("https://a.example.com/retrying")
	failed := echo("https://a.example.com/failed")
	fresh := echo("https://a.example.com/fresh")
	plain2 := echo("")
	b.recordAttempts(t, delivered, 2, taskrunner.CallbackDelivered)
	b.recordAttempts(t, retrying, 1, "")
	b.recordAttempts(t, failed, 3, taskrunner.CallbackFailed)
	want := map[int64]*callbackView{
		plain: nil, plain2: nil,
		delivered: {URL: "https://a.example.com/delivered", State: "delivered", Attempts: 2},
		retrying:  {URL: "https://a.example.com/retrying", State: "pending", Attempts: 1},
		failed:    {URL: "https://a.example.com/failed", State: "failed", Attempts: 3},
		fresh:     {URL: "https://a.example.com/fresh", State: "pending", Attempts: 0},
	}
	reads.take()

	resp := b.do(t, http.MethodGet, "/tasks", nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
	require.Equal(t, 1, reads.take(), "one read of callback_attempts for the page")
	page := decode[struct {
		Tasks []json.RawMessage `json:"tasks"`
	}](t, resp.raw).Tasks
	require.Len(t, page, len(want))
	for _, raw := range page {
		id := decode[struct {
			ID int64 `json:"id"`
		}](t, raw).ID
		require.Equal(t, want[id], callbackOfView(t, raw), "task %d in the list", id)
		one := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil)
		require.Equal(t, want[id], callbackOfView(t, one.raw), "task %d alone", id)
	}

	// A page of tasks without a callback costs no read.
	reads.take()
	resp = b.do(t, http.MethodGet, fmt.Sprintf("/tasks?limit=1&cursor=%d", delivered), nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
	page = decode[struct {
		Tasks []json.RawMessage `json:"tasks"`
	}](t, resp.raw).Tasks
	require.Len(t, page, 1)
	require.Nil(t, callbackOfView(t, page[0]))
	require.Zero(t, reads.take())
}

// The answers of POST /tasks, /tasks/batch and /search show a new task's
// callback pending with no attempt, without reading any; a repeated
// Idempotency-Key shows the first task's as it is.
func TestSubmitAnswersShowTheCallback(t *testing.T) {
	t.Parallel()
	reads := &callbackReads{}
	b := setup(t, setupOpts{callback: anyCallback, tracer: reads})
	pending := &callbackView{URL: "https://a.example.com/cb", State: "pending"}

	first := b.doAs(t, "", http.MethodPost, "/tasks",
		map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": "https://a.example.com/cb"}, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusAccepted, first.status, "%s", first.raw)
	require.Equal(t, pending, callbackOfView(t, first.raw))
	plain := b.do(t, http.MethodPost, "/tasks", map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}})
	require.Equal(t, http.StatusAccepted, plain.status, "%s", plain.raw)
	require.Nil(t, callbackOfView(t, plain.raw))

	batch := b.do(t, http.MethodPost, "/tasks/batch", map[string]any{"tasks": []any{
		map[string]any{"type": "echo", "params": map[string]any{"msg": "a"}, "callback_url": "https://a.example.com/cb"},
		map[string]any{"type": "echo", "params": map[string]any{"msg": "b"}},
	}})
	require.Equal(t, http.StatusAccepted, batch.status, "%s", batch.raw)
	items := decode[struct {
		Tasks []json.RawMessage `json:"tasks"`
	}](t, batch.raw).Tasks
	require.Len(t, items, 2)
	require.Equal(t, pending, callbackOfView(t, items[0]))
	require.Nil(t, callbackOfView(t, items[1]))

	search := b.do(t, http.MethodPost, "/search", map[string]any{"query": "q", "callback_url": "https://a.example.com/cb"})
	require.Equal(t, http.StatusAccepted, search.status, "%s", search.raw)
	require.Equal(t, pending, callbackOfView(t, search.raw))
	require.Zero(t, reads.take(), "a new task's callback has no attempt to read")

	// The same key again: the first task, its callback as it went since.
	id := decode[struct {
		ID int64 `json:"id"`
	}](t, first.raw).ID
	b.recordAttempts(t, id, 1, taskrunner.CallbackDelivered)
	again := b.doAs(t, "", http.MethodPost, "/tasks",
		map[string]any{"type": "echo", "params": map[string]any{"msg": "hi"}, "callback_url": "https://a.example.com/cb"}, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusOK, again.status, "%s", again.raw)
	require.Equal(t, &callbackView{URL: "https://a.example.com/cb", State: "delivered", Attempts: 1}, callbackOfView(t, again.raw))
}

// The state events of GET /tasks/{id}/events and the cancel answer carry
// the task's callback as it is when they are sent.
func TestEventStreamStateCarriesTheCallback(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{callback: anyCallback})
	runAt := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "later"}, "run_at": runAt,
		"callback_url": "https://a.example.com/cb"})

	events := b.firstEvents(t, id, 1)
	require.Equal(t, "state", events[0].name)
	require.Equal(t, &callbackView{URL: "https://a.example.com/cb", State: "pending"}, callbackOfView(t, events[0].data))

	// Attempts recorded (as a test can), then the task cancelled: its
	// final state event and the cancel answer show them.
	b.recordAttempts(t, id, 2, "")
	cancelled := b.do(t, http.MethodPost, fmt.Sprintf("/tasks/%d/cancel", id), nil)
	require.Equal(t, http.StatusOK, cancelled.status, "%s", cancelled.raw)
	want := &callbackView{URL: "https://a.example.com/cb", State: "pending", Attempts: 2}
	require.Equal(t, want, callbackOfView(t, cancelled.raw))
	events = b.readEvents(t, id)
	require.Len(t, events, 2, "the final state, then end")
	require.Equal(t, "state", events[0].name)
	require.Equal(t, want, callbackOfView(t, events[0].data))
	require.Equal(t, "end", events[1].name)
}

// GET /limits shows the callback settings a client needs, and whether
// callbacks are on, never the secret.
func TestLimitsShowTheCallbackSettings(t *testing.T) {
	t.Parallel()
	const secret = "callback-secret-0123456789"
	cfg, err := config.Load(func(k string) string {
		return map[string]string{
			"CALLBACK_SECRET": secret, "CALLBACK_TIMEOUT_SECONDS": "4", "CALLBACK_MAX_ATTEMPTS": "7",
			"CALLBACK_DOMAIN_ALLOWLIST": "hooks.example.com,*.example.org", "CALLBACK_ALLOWED_PORTS": "8443",
			"CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
		}[k]
	})
	require.NoError(t, err)
	b := setup(t, setupOpts{callbackLimits: cfg.Callback.Limits()})
	resp := b.do(t, http.MethodGet, "/limits", nil)
	require.Equal(t, http.StatusOK, resp.status, "%s", resp.raw)
	require.NotContains(t, string(resp.raw), secret)
	require.NotContains(t, string(resp.raw), "secret")
	got := decode[map[string]json.RawMessage](t, resp.raw)
	for k, v := range map[string]string{
		"callbacks_enabled": `true`, "callback_timeout_seconds": `4`, "callback_max_attempts": `7`,
		"callback_domain_allowlist": `["hooks.example.com","*.example.org"]`, "callback_allowed_ports": `[80,443,8443]`,
		"callback_allow_private_networks": `true`,
	} {
		require.JSONEq(t, v, string(got[k]), k)
	}

	// Without a secret, callbacks are off; the rest are the defaults.
	off := setup(t, setupOpts{})
	resp = off.do(t, http.MethodGet, "/limits", nil)
	got = decode[map[string]json.RawMessage](t, resp.raw)
	require.JSONEq(t, `false`, string(got["callbacks_enabled"]))
	require.JSONEq(t, fmt.Sprint(config.DefaultCallbackTimeout.Seconds()), string(got["callback_timeout_seconds"]))
	require.JSONEq(t, fmt.Sprint(config.DefaultCallbackMaxAttempts), string(got["callback_max_attempts"]))
}
