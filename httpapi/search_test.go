package httpapi_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
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
	return searchBundle{bundle: setup(t, setupOpts{work: true, search: agg}), brave: brave, searx: searx}
}

// searchResult is a search task's result.
type searchResult struct {
	Results []struct {
		Title   string   `json:"title"`
		URL     string   `json:"url"`
		Snippet string   `json:"snippet"`
		Sources []string `json:"sources"`
	} `json:"results"`
	Sources map[string]struct {
		Status string `json:"status"`
		Cached bool   `json:"cached"`
	} `json:"sources"`
}

// searchParams is a search task's params as the API shows them.
type searchParams struct {
	Query       string   `json:"query"`
	Sources     []string `json:"sources"`
	RecencyDays int      `json:"recency_days"`
	MaxResults  int      `json:"max_results"`
}

func searchResultOf(t *testing.T, v taskView) searchResult {
	t.Helper()
	return decode[searchResult](t, v.Result)
}

func TestSearchEndToEndWithCache(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, searchtest.BraveKey)
	s.brave.SetHits(searchtest.Hit{Title: "River", URL: "https://riverqueue.com/"}, searchtest.Hit{Title: "pgx", URL: "https://github.com/jackc/pgx"})
	s.searx.SetHits(searchtest.Hit{Title: "River docs", URL: "http://www.riverqueue.com"}, searchtest.Hit{Title: "sqlc", URL: "https://sqlc.dev"})
	body := map[string]any{"query": "open source task runner", "sources": []string{"brave", "searxng"}, "recency_days": 7}
	// Brave answers after the attempt's first jobs.ProgressEvery, in which
	// no progress is stored, so its answer is.
	s.brave.Delay(2 * jobs.ProgressEvery)

	resp := s.do(t, http.MethodPost, "/search", body)
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	require.Equal(t, "search", resp.task(t).Type)
	id := resp.task(t).ID
	doneResp := s.waitStatus(t, id, "completed")
	done := doneResp.task(t)

	result := searchResultOf(t, done)
	require.Len(t, result.Results, 3, "riverqueue.com from both sources is one result")
	// Its progress: sources answered out of sources asked (SearXNG's
	// answer, in the first ProgressEvery, is not stored).
	require.NotNil(t, done.Progress)
	require.Equal(t, int64(2), done.Progress.Total)
	require.Equal(t, int64(2), done.Progress.Done)
	require.Equal(t, "sources answered", done.Progress.Message)
	top := result.Results[0]
	require.Equal(t, "River", top.Title)
	require.Equal(t, []string{"brave", "searxng"}, top.Sources)
	require.Contains(t, result.Sources, "brave")
	require.False(t, result.Sources["brave"].Cached)
	require.Equal(t, "ok", result.Sources["searxng"].Status)

	// Runs carry search:<hash>, so has_been_processed and latest_run_for_key work for searches.
	key := done.run(t, 0).Key
	require.True(t, strings.HasPrefix(key, "search:"), key)
	processed, _, err := db.HasBeenProcessed(context.Background(), s.db.Pool, strings.TrimPrefix(key, "search:"), "search")
	require.NoError(t, err)
	require.True(t, processed)
	latest, err := db.LatestRunForKey(context.Background(), s.db.Pool, key)
	require.NoError(t, err)
	metrics, err := db.RunMetrics(context.Background(), s.db.Pool, latest.TaskID, latest.Attempt)
	require.NoError(t, err)
	require.EqualValues(t, 3, metrics["results"])
	require.EqualValues(t, 0, metrics["cache_hits"])
	require.Contains(t, metrics, "latency_ms")
	require.Contains(t, metrics, "brave.latency_ms")

	// The same search again: both sources from the cache, no provider call.
	again := s.do(t, http.MethodPost, "/search", map[string]any{"query": "Open Source  TASK runner", "sources": []string{"searxng", "brave"}, "recency_days": 7})
	require.Equal(t, http.StatusAccepted, again.status, "body: %s", again.raw)
	secondResp := s.waitStatus(t, again.task(t).ID, "completed")
	second := secondResp.task(t)
	sources := searchResultOf(t, second).Sources
	require.True(t, sources["brave"].Cached)
	require.True(t, sources["searxng"].Cached)
	require.Equal(t, 1, s.brave.Calls())
	require.Equal(t, 1, s.searx.Calls())
	require.Equal(t, key, second.run(t, 0).Key, "the same normalised search has the same key")
	// Answered from the cache within the attempt's first ProgressEvery: no
	// progress write.
	require.Nil(t, second.Progress, "a cached search stored progress")
	latest, err = db.LatestRunForKey(context.Background(), s.db.Pool, key)
	require.NoError(t, err)
	metrics, err = db.RunMetrics(context.Background(), s.db.Pool, latest.TaskID, latest.Attempt)
	require.NoError(t, err)
	require.EqualValues(t, 2, metrics["cache_hits"])

	require.NotContains(t, string(doneResp.raw)+string(secondResp.raw), searchtest.BraveKey)

	// The merged answer is also a JSON artifact of the task.
	ids := done.ArtifactIDs
	require.Len(t, ids, 1)
	meta := s.do(t, http.MethodGet, "/artifacts/"+ids[0]+"/meta", nil).artifact(t)
	require.Equal(t, "search_result", meta.Type)
	require.Equal(t, "application/json", meta.ContentType)
	stored := s.do(t, http.MethodGet, "/artifacts/"+ids[0], nil)
	require.Equal(t, http.StatusOK, stored.status)
	require.JSONEq(t, string(done.Result), string(stored.raw), "the artifact is the task's result")
}

func TestSearchThroughPostTasksAndDefaults(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, searchtest.BraveKey)
	s.brave.SetHits(searchtest.Hit{Title: "one", URL: "https://one.example"})
	s.searx.SetHits()

	id := s.submit(t, map[string]any{"type": "search", "params": map[string]any{"query": "defaults", "max_results": 500}})
	done := s.waitStatus(t, id, "completed").task(t)
	params := decode[searchParams](t, done.Params)
	require.Equal(t, []string{"brave", "searxng"}, params.Sources, "no sources: every allowed source")
	require.Equal(t, 10, params.MaxResults, "capped by SEARCH_MAX_RESULTS")
	require.Equal(t, 4, done.MaxAttempts, "search retries 3 times by default")
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
		require.Equal(t, taskrunner.CodeInvalidParams, errorCode(t, resp))
		require.Equal(t, tc.field, resp.apiError(t).Field, "%s: %s", tc.body, resp.raw)
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
func requireFailedForGood(t *testing.T, s searchBundle, resp response, providerCode taskrunner.Code) {
	t.Helper()
	done := resp.task(t)
	require.Equal(t, taskrunner.StatusDiscarded, done.Status, "body: %s", resp.raw)
	require.Equal(t, 1, done.Attempt, "not retried")
	taskErr := done.failure(t)
	require.Equal(t, taskrunner.CodeSearchFailed, taskErr.Code)
	msg := taskErr.Message
	require.Contains(t, msg, "brave: "+string(providerCode))
	require.Contains(t, msg, "not retried")
	require.NotRegexp(t, unsafeInMessages, msg)
	require.NotContains(t, msg, s.brave.URL())
	run := done.run(t, 0)
	require.Equal(t, db.RunFailed, run.Status)
	require.Equal(t, taskrunner.CodeSearchFailed, deref(run.ErrorCode))
	require.Equal(t, msg, deref(run.Error), "a run shows the same public message")

	id := done.ID
	var status, code, sqlMsg, riverState, riverErr string
	require.NoError(t, s.db.Pool.QueryRow(context.Background(),
		`SELECT status::text, error_code, error FROM tasks WHERE id = $1`, id).Scan(&status, &code, &sqlMsg))
	require.Equal(t, []string{"discarded", string(taskrunner.CodeSearchFailed), msg}, []string{status, code, sqlMsg}, "select * from tasks agrees")
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
	done := s.waitStatus(t, resp.task(t).ID, "cancelled", "discarded")

	requireFailedForGood(t, s, done, taskrunner.CodeSearchProviderUnauthorized)
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
	done := s.waitStatus(t, resp.task(t).ID, "cancelled", "discarded")

	requireFailedForGood(t, s, done, taskrunner.CodeSearchProviderUnauthorized)
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
	doneResp := s.waitStatus(t, resp.task(t).ID, "completed", "discarded")
	done := doneResp.task(t)
	require.Equal(t, taskrunner.StatusCompleted, done.Status, "body: %s", doneResp.raw)
	results := searchResultOf(t, done).Results
	require.NotEmpty(t, results)
	require.Equal(t, "a\uFFFDb \uFFFD", results[0].Title)
	require.Equal(t, "nul\uFFFD", results[0].Snippet)
}

func TestSearchRateLimitedIsRetried(t *testing.T) {
	t.Parallel()
	s := setupSearch(t, searchtest.BraveKey)
	s.brave.FailWith(http.StatusTooManyRequests)

	resp := s.do(t, http.MethodPost, "/search", map[string]any{"query": "busy", "sources": []string{"brave"}, "max_retries": 1})
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	done := s.waitStatus(t, resp.task(t).ID, "discarded").task(t)
	require.Equal(t, 2, done.Attempt)
	require.Equal(t, 2, s.brave.Calls(), "River retried the rate-limited search")
	require.Len(t, done.Runs, 2)
	require.Equal(t, taskrunner.CodeSearchFailed, deref(done.Runs[1].ErrorCode))
}
