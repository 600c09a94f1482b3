package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/metrics"
)

var echoTask = map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}}

func TestEnqueueLimitAtNAndNPlusOne(t *testing.T) {
	t.Parallel()
	const n = 5
	b := setup(t, setupOpts{perMinute: n, apiKeys: []config.APIKey{
		{Name: "alice", Key: "alice-key-0123456789abcdef"}, {Name: "bob", Key: "bob-key-0123456789abcdef"},
	}})

	for i := range n {
		r := b.doAs(t, "alice-key-0123456789abcdef", "POST", "/tasks", echoTask)
		require.Equal(t, http.StatusAccepted, r.status, "enqueue %d of %d: %s", i+1, n, r.raw)
		require.Equal(t, `"enqueue";q=5;w=60`, r.header.Get("RateLimit-Policy"))
		require.True(t, strings.HasPrefix(r.header.Get("RateLimit"), fmt.Sprintf(`"enqueue";r=%d;t=`, n-1-i)), r.header.Get("RateLimit"))
	}
	over := b.doAs(t, "alice-key-0123456789abcdef", "POST", "/tasks", echoTask)
	require.Equal(t, http.StatusTooManyRequests, over.status)
	require.Equal(t, taskrunner.CodeRateLimitExceeded, errorCode(t, over))
	retry, err := strconv.Atoi(over.header.Get("Retry-After"))
	require.NoError(t, err)
	require.True(t, retry >= 1 && retry <= 60, "Retry-After %d", retry)
	require.Contains(t, over.apiError(t).Message, "5 tasks per minute")
	require.Equal(t, n, b.jobCount(t), "the refused request enqueued nothing")
	require.Len(t, b.logs.Events("rate_limited"), 1)

	// The limit is per key: bob still has his.
	require.Equal(t, http.StatusAccepted, b.doAs(t, "bob-key-0123456789abcdef", "POST", "/tasks", echoTask).status)
	// Searches count too; reads don't.
	require.Equal(t, http.StatusTooManyRequests, b.doAs(t, "alice-key-0123456789abcdef", "POST", "/search", map[string]any{"query": "x"}).status)
	require.Equal(t, http.StatusOK, b.doAs(t, "alice-key-0123456789abcdef", "GET", "/tasks", nil).status)
}

func TestBatchCountsEachTask(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{perMinute: 5})
	batch := func(k int) response {
		tasks := make([]any, k)
		for i := range tasks {
			tasks[i] = echoTask
		}
		return b.do(t, "POST", "/tasks/batch", map[string]any{"tasks": tasks})
	}
	r := batch(3)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.raw)
	require.Len(t, decode[listBody](t, r.raw).Tasks, 3)
	r = batch(3) // 3 more than the 2 left: refused whole
	require.Equal(t, http.StatusTooManyRequests, r.status, "body: %s", r.raw)
	require.Equal(t, 3, b.jobCount(t))
	r = batch(2)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.raw)
	require.Equal(t, 5, b.jobCount(t))
	r = batch(6) // more than a minute's allowance: can never fit
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Contains(t, r.apiError(t).Message, "can never fit")
}

func TestLimiterFailsOpenWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	b := setup(t, setupOpts{perMinute: 1, redisURL: "redis://127.0.0.1:1/0", metrics: m})
	for range 3 {
		r := b.do(t, "POST", "/tasks", echoTask)
		require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.raw)
	}
	require.Equal(t, 3, b.jobCount(t))
	require.Len(t, b.logs.Events("rate_limiter_unavailable"), 1, "said once, not for every request")
	resp, err := http.Get(b.server.URL + "/metrics")
	require.NoError(t, err)
	text, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(text), "taskrunner_rate_limiter_unavailable_total 3", "the metric counts every one")
}

func TestBatchIsAllOrNone(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})

	// One invalid task rejects the batch, naming its index.
	r := b.do(t, "POST", "/tasks/batch", map[string]any{"tasks": []any{echoTask, map[string]any{"type": "sleep", "params": map[string]any{"seconds": -1}}, echoTask}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, taskrunner.CodeInvalidParams, errorCode(t, r))
	require.Equal(t, "tasks[1].params.seconds", r.apiError(t).Field)
	require.Zero(t, b.jobCount(t))

	// Over MAX_BATCH_SIZE (50 here).
	big := make([]any, 51)
	for i := range big {
		big[i] = echoTask
	}
	r = b.do(t, "POST", "/tasks/batch", map[string]any{"tasks": big})
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	require.Equal(t, taskrunner.CodeBatchTooLarge, errorCode(t, r))
	r = b.do(t, "POST", "/tasks/batch", map[string]any{"tasks": []any{}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Zero(t, b.jobCount(t))

	// An insert that fails in the database half way leaves none: a trigger
	// refuses the third row.
	ctx := context.Background()
	_, err := b.db.Pool.Exec(ctx, `
		CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.args->>'msg' = 'boom' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_boom BEFORE INSERT ON river_job FOR EACH ROW EXECUTE FUNCTION refuse_boom();`)
	require.NoError(t, err)
	r = b.do(t, "POST", "/tasks/batch", map[string]any{"tasks": []any{echoTask, echoTask, map[string]any{"type": "echo", "params": map[string]any{"msg": "boom"}}, echoTask}})
	require.Equal(t, http.StatusInternalServerError, r.status, "body: %s", r.raw)
	require.Zero(t, b.jobCount(t), "a failing insert leaves none of the batch")

	r = b.do(t, "POST", "/tasks/batch", map[string]any{"tasks": []any{echoTask, echoTask}})
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, 2, b.jobCount(t))
}

func TestIdempotencyKeyUnderConcurrentRepeats(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})

	const n = 20
	ids := make([]int64, n)
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := b.doAs(t, "", "POST", "/tasks", echoTask, "Idempotency-Key", "order-7781")
			statuses[i] = r.status
			var v taskView // no require off the test's goroutine: a bad body leaves 0
			_ = json.Unmarshal(r.raw, &v)
			ids[i] = v.ID
		}()
	}
	wg.Wait()
	created := 0
	for i := range n {
		require.Contains(t, []int{http.StatusAccepted, http.StatusOK}, statuses[i])
		require.Equal(t, ids[0], ids[i], "every repeat returns the first task")
		if statuses[i] == http.StatusAccepted {
			created++
		}
	}
	require.Equal(t, 1, created, "one 202, the rest 200")
	require.Equal(t, 1, b.jobCount(t))

	// Another key, or none, is another task; so is the same key on /search.
	require.Equal(t, http.StatusAccepted, b.doAs(t, "", "POST", "/tasks", echoTask, "Idempotency-Key", "order-7782").status)
	require.Equal(t, http.StatusAccepted, b.doAs(t, "", "POST", "/tasks", echoTask).status)
	s1 := b.doAs(t, "", "POST", "/search", map[string]any{"query": "q"}, "Idempotency-Key", "s-1")
	s2 := b.doAs(t, "", "POST", "/search", map[string]any{"query": "q"}, "Idempotency-Key", "s-1")
	require.Equal(t, http.StatusAccepted, s1.status)
	require.Equal(t, http.StatusOK, s2.status)
	first := s1.task(t)
	require.Equal(t, first.ID, s2.task(t).ID)
	require.JSONEq(t, `{"query": "q", "sources": ["brave", "searxng"], "recency_days": 0, "max_results": 10}`, string(first.Params),
		"the stored idempotency key, which names the client, stays out of the task's params")
	require.Equal(t, 4, b.jobCount(t))

	bad := b.doAs(t, "", "POST", "/tasks", echoTask, "Idempotency-Key", strings.Repeat("k", 300))
	require.Equal(t, http.StatusBadRequest, bad.status)
}

// Every route but /health needs a key: the test walks the router, so a new
// route cannot be left open by mistake.
func TestAuthOnEveryRoute(t *testing.T) {
	t.Parallel()
	key := "ci-key-0123456789abcdef0123"
	b := setup(t, setupOpts{apiKeys: []config.APIKey{{Name: "ci", Key: key}}})
	tasks, artifacts := offlineServices(t, testLoggerOf(t))
	api, err := httpapi.New(httpapi.Config{Tasks: tasks, Artifacts: artifacts, Metrics: metrics.New(), RiverUI: http.NotFoundHandler(), Logger: testLoggerOf(t)})
	require.NoError(t, err)

	var routes int
	err = chi.Walk(api.Routes(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes++
		path := strings.NewReplacer("{id}", "1", "{name}", "a.txt", "/*", "/").Replace(route)
		for _, tc := range []struct {
			name, header string
		}{{"no key", ""}, {"wrong key", "Bearer not-the-key-0123456789"}, {"basic, wrong password", "Basic " + basic("ci", "nope")}, {"key as a query", ""}} {
			req, err := http.NewRequest(method, b.server.URL+path, nil)
			require.NoError(t, err)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			if tc.name == "key as a query" {
				req.URL.RawQuery = "api_key=" + key
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			var body struct {
				Error *errorDetail `json:"error"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if route == "/health" {
				require.Equal(t, http.StatusOK, resp.StatusCode, "/health needs no key")
				continue
			}
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s (%s)", method, route, tc.name)
			require.NotEmpty(t, resp.Header.Get("WWW-Authenticate"))
			if method == http.MethodHead {
				continue // no body
			}
			e := body.Error
			require.NotNil(t, e, "%s %s (%s): no error body", method, route, tc.name)
			require.Equal(t, taskrunner.CodeUnauthorized, e.Code)
			require.NotContains(t, e.Message, "wrong", "the 401 says nothing of which part was wrong")
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, routes, 15)

	// With the key: in, as bearer, and as River UI's basic-auth password.
	require.Equal(t, http.StatusAccepted, b.doAs(t, key, "POST", "/tasks", echoTask).status)
	req, _ := http.NewRequest("GET", b.server.URL+"/tasks", nil)
	req.SetBasicAuth("anyone", key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, b.logs.String(), key, "keys never reach the log")
}
