package httpapi_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/search"
	"github.com/taskrunner/taskrunner/search/searchtest"
)

type searchBundle struct {
	*bundle
	brave, searx *searchtest.Fake
}

// setupSearch is setup with workers whose search aggregator asks fake Brave
// and SearXNG servers, cached in the real Redis.
func setupSearch(t *testing.T, braveKey string) searchBundle {
	t.Helper()
	brave, searx := searchtest.NewBrave(t), searchtest.NewSearXNG(t)
	logger, _ := testenv.Logger(t)
	rdb, err := cache.NewClient(testenv.RedisURL())
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	agg, err := search.NewAggregator(search.AggregatorConfig{
		Providers: []search.Provider{
			search.NewBrave(brave.BraveEndpoint(), braveKey, http.DefaultClient),
			search.NewSearXNG(searx.URL(), http.DefaultClient),
		},
		Cache:    cache.NewSearchCache(rdb, testenv.RandomName("test:")+":"),
		CacheTTL: time.Minute,
		Logger:   logger,
	})
	require.NoError(t, err)
	return searchBundle{bundle: setup(t, setupOpts{work: true, deps: jobs.Deps{Search: agg}}), brave: brave, searx: searx}
}

func TestSearchEndToEndWithCache(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, searchtest.BraveKey)
	s.brave.SetHits(searchtest.Hit{Title: "River", URL: "https://riverqueue.com/"}, searchtest.Hit{Title: "pgx", URL: "https://github.com/jackc/pgx"})
	s.searx.SetHits(searchtest.Hit{Title: "River docs", URL: "http://www.riverqueue.com"}, searchtest.Hit{Title: "sqlc", URL: "https://sqlc.dev"})
	body := map[string]any{"query": "open source task runner", "sources": []string{"brave", "searxng"}, "recency_days": 7}

	resp := s.do(t, http.MethodPost, "/search", body)
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	require.Equal(t, "search", resp.body["type"])
	id := int64(resp.body["id"].(float64))
	done := s.waitStatus(t, id, "completed")

	result := done.body["result"].(map[string]any)
	results := result["results"].([]any)
	require.Len(t, results, 3, "riverqueue.com from both sources is one result")
	top := results[0].(map[string]any)
	require.Equal(t, "River", top["title"])
	require.Equal(t, []any{"brave", "searxng"}, top["sources"])
	sources := result["sources"].(map[string]any)
	require.Equal(t, false, sources["brave"].(map[string]any)["cached"])
	require.Equal(t, "ok", sources["searxng"].(map[string]any)["status"])

	// Runs carry search:<hash>, so the seed's helpers work for searches.
	run := done.body["runs"].([]any)[0].(map[string]any)
	key := run["key"].(string)
	require.True(t, strings.HasPrefix(key, "search:"), key)
	processed, _, err := db.HasBeenProcessed(context.Background(), s.db.Pool, strings.TrimPrefix(key, "search:"), "search")
	require.NoError(t, err)
	require.True(t, processed)
	latest, err := db.LatestRunForKey(context.Background(), s.db.Pool, key)
	require.NoError(t, err)
	metrics, err := db.RunMetrics(context.Background(), s.db.Pool, latest.ID)
	require.NoError(t, err)
	require.EqualValues(t, 3, metrics["results"])
	require.EqualValues(t, 0, metrics["cache_hits"])
	require.Contains(t, metrics, "latency_ms")
	require.Contains(t, metrics, "brave.latency_ms")

	// The same search again: both sources from the cache, no provider call.
	again := s.do(t, http.MethodPost, "/search", map[string]any{"query": "Open Source  TASK runner", "sources": []string{"searxng", "brave"}, "recency_days": 7})
	require.Equal(t, http.StatusAccepted, again.status, "body: %s", again.raw)
	second := s.waitStatus(t, int64(again.body["id"].(float64)), "completed")
	sources = second.body["result"].(map[string]any)["sources"].(map[string]any)
	require.Equal(t, true, sources["brave"].(map[string]any)["cached"])
	require.Equal(t, true, sources["searxng"].(map[string]any)["cached"])
	require.Equal(t, 1, s.brave.Calls())
	require.Equal(t, 1, s.searx.Calls())
	require.Equal(t, key, second.body["runs"].([]any)[0].(map[string]any)["key"], "the same normalised search has the same key")
	latest, err = db.LatestRunForKey(context.Background(), s.db.Pool, key)
	require.NoError(t, err)
	metrics, err = db.RunMetrics(context.Background(), s.db.Pool, latest.ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, metrics["cache_hits"])

	require.NotContains(t, string(done.raw)+string(second.raw), searchtest.BraveKey)

	// The merged answer is also a JSON artifact of the task.
	ids := done.body["artifact_ids"].([]any)
	require.Len(t, ids, 1)
	meta := s.do(t, http.MethodGet, "/artifacts/"+ids[0].(string)+"/meta", nil)
	require.Equal(t, "search_result", meta.body["type"])
	require.Equal(t, "application/json", meta.body["content_type"])
	stored := s.do(t, http.MethodGet, "/artifacts/"+ids[0].(string), nil)
	require.Equal(t, http.StatusOK, stored.status)
	require.Equal(t, result, stored.body, "the artifact is the task's result")
}

func TestSearchThroughPostTasksAndDefaults(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, searchtest.BraveKey)
	s.brave.SetHits(searchtest.Hit{Title: "one", URL: "https://one.example"})
	s.searx.SetHits()

	id := s.submit(t, map[string]any{"type": "search", "params": map[string]any{"query": "defaults", "max_results": 500}})
	done := s.waitStatus(t, id, "completed")
	params := done.body["params"].(map[string]any)
	require.Equal(t, []any{"brave", "searxng"}, params["sources"], "no sources: every allowed source")
	require.EqualValues(t, 10, params["max_results"], "capped by SEARCH_MAX_RESULTS")
	require.EqualValues(t, 4, done.body["max_attempts"], "search retries 3 times by default")
	require.Equal(t, "10", s.brave.LastRequest().URL.Query().Get("count"))
}

func TestSearchRejectsSourcesOutsideTheAllowlist(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, searchtest.BraveKey)
	for _, tc := range []struct {
		path, body, field string
	}{
		{"/search", `{"query":"x","sources":["google"]}`, "sources"},
		{"/search", `{"query":"   "}`, "query"},
		{"/search", `{"sources":["brave"]}`, "query"},
		{"/search", `{"query":"x","recency_days":-1}`, "recency_days"},
		{"/search", `{"query":"x","max_results":0}`, "max_results"},
		{"/search", `{"query":"x","engine":"google"}`, "engine"},
		{"/tasks", `{"type":"search","params":{"query":"x","sources":["bing"]}}`, "params.sources"},
	} {
		resp := s.do(t, http.MethodPost, tc.path, tc.body)
		require.Equal(t, http.StatusBadRequest, resp.status, "%s: %s", tc.body, resp.raw)
		require.Equal(t, "task_rejected_invalid_params", errorCode(t, resp))
		require.Equal(t, tc.field, resp.body["error"].(map[string]any)["field"], "%s: %s", tc.body, resp.raw)
	}
	require.Zero(t, s.jobCount(t), "a rejected search is never enqueued")
	require.Zero(t, s.brave.Calls())
}

// unsafeInMessages are what a task's error shown to clients never holds:
// Go or River type names, hosts, URLs.
var unsafeInMessages = regexp.MustCompile(`(?i)[A-Za-z]+Error\b|JobCancel|river|://|127\.0\.0\.1|localhost|\*[a-z]+\.`)

// requireFailedForGood checks a search that no retry can fix: it ends
// discarded (not cancelled: nobody asked for that) after one attempt, with
// search_failed and a message naming the source and its failure's code but
// no host, URL or type name, the same in the API, in SQL and in River's
// own row (which River UI shows).
func requireFailedForGood(t *testing.T, s searchBundle, done response, providerCode string) {
	t.Helper()
	require.Equal(t, "discarded", done.body["status"], "body: %s", done.raw)
	require.EqualValues(t, 1, done.body["attempt"], "not retried")
	taskErr := done.body["error"].(map[string]any)
	require.Equal(t, search.CodeAllFailed, taskErr["code"])
	msg := taskErr["message"].(string)
	require.Contains(t, msg, "brave: "+providerCode)
	require.Contains(t, msg, "not retried")
	require.NotRegexp(t, unsafeInMessages, msg)
	require.NotContains(t, msg, s.brave.URL())
	run := done.body["runs"].([]any)[0].(map[string]any)
	require.Equal(t, db.RunFailed, run["status"])
	require.Equal(t, search.CodeAllFailed, run["error_code"])
	require.Equal(t, msg, run["error"], "a run shows the same public message")

	id := int64(done.body["id"].(float64))
	var status, code, sqlMsg, riverState, riverErr string
	require.NoError(t, s.db.Pool.QueryRow(context.Background(),
		`SELECT status::text, error_code, error FROM tasks WHERE id = $1`, id).Scan(&status, &code, &sqlMsg))
	require.Equal(t, []string{"discarded", search.CodeAllFailed, msg}, []string{status, code, sqlMsg}, "select * from tasks agrees")
	require.NoError(t, s.db.Pool.QueryRow(context.Background(),
		`SELECT state::text, errors[array_upper(errors, 1)] ->> 'error' FROM river_job WHERE id = $1`, id).Scan(&riverState, &riverErr))
	require.Equal(t, "discarded", riverState, "River UI shows the same state")
	require.Contains(t, riverErr, providerCode, "operators see the whole error in River UI")
	require.NotContains(t, riverErr, "JobCancel")
}

func TestSearchWithABadKeyIsNotRetried(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, "not-the-key-7d1e")
	s.brave.SetHits(searchtest.Hit{Title: "x", URL: "https://x.example"})

	resp := s.do(t, http.MethodPost, "/search", map[string]any{"query": "bad key", "sources": []string{"brave"}, "max_retries": 3})
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	done := s.waitStatus(t, int64(resp.body["id"].(float64)), "cancelled", "discarded")

	requireFailedForGood(t, s, done, search.CodeUnauthorized)
	require.NotContains(t, string(done.raw), "not-the-key-7d1e")
	require.Equal(t, 1, s.brave.Calls())
}

// Brave allowed but no BRAVE_API_KEY: the search fails for good, discarded
// with search_failed, and says nothing of hosts or types; the log has the
// whole story.
func TestSearchWithoutAKeyIsDiscarded(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, "")

	resp := s.do(t, http.MethodPost, "/search", map[string]any{"query": "no key", "sources": []string{"brave"}, "max_retries": 3})
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	done := s.waitStatus(t, int64(resp.body["id"].(float64)), "cancelled", "discarded")

	requireFailedForGood(t, s, done, search.CodeUnauthorized)
	require.Zero(t, s.brave.Calls(), "without a key Brave is not asked")
	failed := s.logs.Events("task_failed")
	require.Len(t, failed, 1)
	require.Contains(t, failed[0]["error"], "BRAVE_API_KEY is not set", "the log has the provider's own words")
	require.Equal(t, "task failed; not retried", failed[0]["msg"])
}

// Text from a provider that PostgreSQL cannot store (a NUL, a lone
// surrogate) is made storable in the task's result, which River keeps in
// jsonb: the task completes instead of failing to be marked so.
func TestSearchResultWithUnstorableTextCompletes(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, searchtest.BraveKey)
	s.brave.AnswerRaw(`{"type":"search","web":{"results":[{"title":"a\u0000b \ud800","url":"https://x.example/","description":"nul\u0000"}]}}`)

	resp := s.do(t, http.MethodPost, "/search", map[string]any{"query": "nul", "sources": []string{"brave"}})
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	done := s.waitStatus(t, int64(resp.body["id"].(float64)), "completed", "discarded")
	require.Equal(t, "completed", done.body["status"], "body: %s", done.raw)
	top := done.body["result"].(map[string]any)["results"].([]any)[0].(map[string]any)
	require.Equal(t, "a\uFFFDb \uFFFD", top["title"])
	require.Equal(t, "nul\uFFFD", top["snippet"])
}

func TestSearchRateLimitedIsRetried(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, searchtest.BraveKey)
	s.brave.FailWith(http.StatusTooManyRequests)

	resp := s.do(t, http.MethodPost, "/search", map[string]any{"query": "busy", "sources": []string{"brave"}, "max_retries": 1})
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	done := s.waitStatus(t, int64(resp.body["id"].(float64)), "discarded")
	require.EqualValues(t, 2, done.body["attempt"])
	require.Equal(t, 2, s.brave.Calls(), "River retried the rate-limited search")
	runs := done.body["runs"].([]any)
	require.Len(t, runs, 2)
	require.Equal(t, search.CodeAllFailed, runs[1].(map[string]any)["error_code"])
}
