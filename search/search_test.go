package search_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/search"
	"github.com/taskrunner/taskrunner/search/searchtest"
)

var (
	hitA = searchtest.Hit{Title: "River", URL: "https://riverqueue.com/", Snippet: "Postgres job queue"}
	hitB = searchtest.Hit{Title: "pgx", URL: "https://github.com/jackc/pgx", Snippet: "Go driver"}
	hitC = searchtest.Hit{Title: "sqlc", URL: "https://sqlc.dev/docs?utm_source=x", Snippet: "typed SQL"}
)

func TestBraveAdapter(t *testing.T) {
	t.Parallel()
	fake := searchtest.NewBrave(t)
	fake.SetHits(hitA, hitB, hitC)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	brave := search.NewBrave(fake.BraveEndpoint(), searchtest.BraveKey, http.DefaultClient)

	results, err := brave.Search(context.Background(), search.Query{Text: "go task runner", RecencyDays: 7, MaxResults: 2})
	require.NoError(t, err)
	require.Equal(t, []search.Result{
		{Title: "River", URL: "https://riverqueue.com/", Snippet: "Postgres job queue", Published: "2026-11-24T10:00:00"},
		{Title: "pgx", URL: "https://github.com/jackc/pgx", Snippet: "Go driver", Published: "2026-11-24T10:00:00"},
	}, results)
	req := fake.LastRequest()
	require.Equal(t, searchtest.BraveKey, req.Header.Get("X-Subscription-Token"), "the key goes in Brave's header")
	require.Equal(t, "application/json", req.Header.Get("Accept"))
	require.Equal(t, "go task runner", req.URL.Query().Get("q"))
	require.Equal(t, "2", req.URL.Query().Get("count"))
	require.Equal(t, "pw", req.URL.Query().Get("freshness"))
	require.NotContains(t, req.URL.RawQuery, searchtest.BraveKey, "the key never goes in the URL")

	// count is capped at Brave's 20.
	_, err = brave.Search(context.Background(), search.Query{Text: "x", MaxResults: 50})
	require.NoError(t, err)
	require.Equal(t, "20", fake.LastRequest().URL.Query().Get("count"))
	require.Empty(t, fake.LastRequest().URL.Query().Get("freshness"), "recency 0 is no filter")

	for days, want := range map[int]string{0: "", 1: "pd", 7: "pw", 31: "pm", 365: "py", 3: "2026-11-23to2026-11-26", 90: "2026-08-28to2026-11-26"} {
		require.Equal(t, want, search.BraveFreshness(now, days), "recency %d", days)
	}
}

func TestBraveEmptyAndErrors(t *testing.T) {
	t.Parallel()
	fake := searchtest.NewBrave(t)
	brave := search.NewBrave(fake.BraveEndpoint(), searchtest.BraveKey, http.DefaultClient)
	ctx := context.Background()

	fake.SetHits() // Brave omits "web" when nothing matched
	results, err := brave.Search(ctx, search.Query{Text: "nothing", MaxResults: 5})
	require.NoError(t, err)
	require.Empty(t, results)

	cases := []struct {
		status    int
		code      taskrunner.Code
		retryable bool
	}{
		{429, taskrunner.CodeSearchProviderRateLimited, true},
		{500, taskrunner.CodeSearchProviderUnavailable, true},
		{503, taskrunner.CodeSearchProviderUnavailable, true},
		{422, taskrunner.CodeSearchProviderBadResponse, false},
	}
	for _, tc := range cases {
		fake.FailWith(tc.status)
		_, err := brave.Search(ctx, search.Query{Text: "x", MaxResults: 5})
		var pe *search.ProviderError
		require.True(t, errors.As(err, &pe), "status %d: %v", tc.status, err)
		require.Equal(t, tc.code, pe.Code)
		require.Equal(t, tc.status, pe.Status)
		require.Equal(t, tc.retryable, pe.Retryable)
	}

	fake.AnswerRaw(`<html>not json</html>`)
	_, err = brave.Search(ctx, search.Query{Text: "x", MaxResults: 5})
	requireCode(t, err, taskrunner.CodeSearchProviderBadResponse, false)

	// A wrong key: 401, not retryable, and the key is nowhere in the error.
	wrong := search.NewBrave(fake.BraveEndpoint(), "wrong-key-0000", http.DefaultClient)
	fake.SetHits(hitA)
	_, err = wrong.Search(ctx, search.Query{Text: "x", MaxResults: 5})
	requireCode(t, err, taskrunner.CodeSearchProviderUnauthorized, false)
	require.NotContains(t, err.Error(), "wrong-key-0000")

	noKey := search.NewBrave(fake.BraveEndpoint(), "", http.DefaultClient)
	_, err = noKey.Search(ctx, search.Query{Text: "x", MaxResults: 5})
	requireCode(t, err, taskrunner.CodeSearchProviderUnauthorized, false)
}

func TestProviderTimeout(t *testing.T) {
	t.Parallel()
	fake := searchtest.NewBrave(t)
	fake.SetHits(hitA)
	fake.Delay(2 * time.Second)
	brave := search.NewBrave(fake.BraveEndpoint(), searchtest.BraveKey, http.DefaultClient)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := brave.Search(ctx, search.Query{Text: "slow", MaxResults: 5})
	requireCode(t, err, taskrunner.CodeSearchProviderTimeout, true)
	require.Less(t, time.Since(start), 1500*time.Millisecond)
}

func TestSearXNGAdapter(t *testing.T) {
	t.Parallel()
	fake := searchtest.NewSearXNG(t)
	fake.SetHits(hitA, hitB, hitC)
	sx := search.NewSearXNG(fake.URL()+"/", http.DefaultClient)
	ctx := context.Background()

	results, err := sx.Search(ctx, search.Query{Text: "go task runner", RecencyDays: 3, MaxResults: 2})
	require.NoError(t, err)
	require.Equal(t, []search.Result{
		{Title: "River", URL: "https://riverqueue.com/", Snippet: "Postgres job queue"},
		{Title: "pgx", URL: "https://github.com/jackc/pgx", Snippet: "Go driver"},
	}, results)
	q := fake.LastRequest().URL.Query()
	require.Equal(t, "json", q.Get("format"))
	require.Equal(t, "week", q.Get("time_range"))
	require.Equal(t, "go task runner", q.Get("q"))

	for days, want := range map[int]string{0: "", 1: "day", 7: "week", 8: "month", 31: "month", 32: "year", 3650: "year"} {
		require.Equal(t, want, search.SearXNGTimeRange(days), "recency %d", days)
	}

	fake.SetHits()
	results, err = sx.Search(ctx, search.Query{Text: "none", MaxResults: 5})
	require.NoError(t, err)
	require.Empty(t, results)

	fake.FailWith(http.StatusTooManyRequests)
	_, err = sx.Search(ctx, search.Query{Text: "x", MaxResults: 5})
	requireCode(t, err, taskrunner.CodeSearchProviderRateLimited, true)

	fake.AnswerRaw(`{"results": "nope"}`)
	fake.FailWith(0)
	_, err = sx.Search(ctx, search.Query{Text: "x", MaxResults: 5})
	requireCode(t, err, taskrunner.CodeSearchProviderBadResponse, false)

	_, err = search.NewSearXNG("", http.DefaultClient).Search(ctx, search.Query{Text: "x", MaxResults: 5})
	requireCode(t, err, taskrunner.CodeSearchProviderUnavailable, false)
}

func TestNormalizeURL(t *testing.T) {
	t.Parallel()
	same := []string{
		"https://www.Example.com/a/b/",
		"http://example.com/a/b",
		"https://EXAMPLE.com:443/a/b?utm_source=news&utm_medium=email",
		"https://example.com/a/b#section",
		"https://example.com/a/b/?fbclid=123&gclid=9",
	}
	for _, u := range same {
		require.Equal(t, "example.com/a/b", search.NormalizeURL(u), u)
	}
	require.Equal(t, "example.com/p?a=1&b=2", search.NormalizeURL("https://example.com/p?b=2&a=1&utm_campaign=x"))
	require.NotEqual(t, search.NormalizeURL("https://example.com/a"), search.NormalizeURL("https://example.com/b"))
	require.NotEqual(t, search.NormalizeURL("https://example.com:8443/a"), search.NormalizeURL("https://example.com/a"))
	require.Equal(t, "not a url", search.NormalizeURL(" not a url "))
}

func TestMergeDeduplicatesAndRanksByReciprocalRankFusion(t *testing.T) {
	t.Parallel()
	brave := []search.Result{
		{Title: "A from brave", URL: "https://www.a.com/"},
		{Title: "B", URL: "https://b.com/x"},
		{Title: "C", URL: "https://c.com"},
	}
	searx := []search.Result{
		{Title: "C from searx", URL: "http://c.com/?utm_source=s"},
		{Title: "A from searx", URL: "https://a.com"},
		{Title: "D", URL: "https://d.com"},
	}
	merged := search.Merge([]string{"brave", "searxng"}, [][]search.Result{brave, searx}, 10)

	// A: 1/61 + 1/62; C: 1/63 + 1/61; B: 1/62; D: 1/63.
	require.Len(t, merged, 4)
	require.Equal(t, []string{"A from brave", "C from searx", "B", "D"}, titles(merged))
	require.Equal(t, []string{"brave", "searxng"}, merged[0].Sources)
	require.Equal(t, []string{"brave"}, merged[2].Sources)
	require.InDelta(t, 1.0/61+1.0/62, merged[0].Score, 1e-12)
	require.InDelta(t, 1.0/63, merged[3].Score, 1e-12)

	require.Len(t, search.Merge([]string{"brave", "searxng"}, [][]search.Result{brave, searx}, 2), 2, "max results caps the merge")
}

func titles(ms []search.Merged) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Title
	}
	return out
}

func requireCode(t *testing.T, err error, code taskrunner.Code, retryable bool) {
	t.Helper()
	var pe *search.ProviderError
	require.True(t, errors.As(err, &pe), "not a ProviderError: %v", err)
	require.Equal(t, code, pe.Code, "error: %v", err)
	require.Equal(t, retryable, pe.Retryable, "error: %v", err)
}

// aggSetup is an aggregator over a fake Brave and a fake SearXNG, cached in
// the real Redis under a key prefix of the test's own.
type aggSetup struct {
	agg   *search.Aggregator
	brave *searchtest.Fake
	searx *searchtest.Fake
	logs  *testenv.Logs
}

func newAgg(t *testing.T, redisURL string) aggSetup {
	t.Helper()
	brave, searx := searchtest.NewBrave(t), searchtest.NewSearXNG(t)
	logger, logs := testenv.Logger(t)
	rdb, err := cache.NewClient(redisURL)
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	agg, err := search.NewAggregator(search.AggregatorConfig{
		Providers: []search.Provider{
			search.NewBrave(brave.BraveEndpoint(), searchtest.BraveKey, http.DefaultClient),
			search.NewSearXNG(searx.URL(), http.DefaultClient),
		},
		Cache:         cache.NewSearchCache(rdb, testenv.RandomName("test:")+":"),
		CacheTTL:      time.Minute,
		SourceTimeout: 300 * time.Millisecond,
		Logger:        logger,
	})
	require.NoError(t, err)
	return aggSetup{agg: agg, brave: brave, searx: searx, logs: logs}
}

func TestAggregatorCachesPerSource(t *testing.T) {
	t.Parallel()
	s := newAgg(t, testenv.RedisURL())
	s.brave.SetHits(hitA, hitB)
	s.searx.SetHits(hitB, hitC)
	ctx := context.Background()
	req := search.Request{Query: "  Go   Task Runner ", Sources: []string{"brave", "searxng"}, RecencyDays: 7, MaxResults: 5}

	first, err := s.agg.Search(ctx, req)
	require.NoError(t, err)
	require.Equal(t, "go task runner", first.Query)
	require.Len(t, first.Results, 3)
	require.Equal(t, "pgx", first.Results[0].Title, "returned by both sources, it ranks first")
	require.False(t, first.Sources["brave"].Cached)
	require.Equal(t, 2, first.Sources["brave"].Count)

	// The same question, differently spaced and cased: served from the cache.
	req.Query = "go TASK runner"
	second, err := s.agg.Search(ctx, req)
	require.NoError(t, err)
	require.True(t, second.Sources["brave"].Cached)
	require.True(t, second.Sources["searxng"].Cached)
	require.Equal(t, first.Results, second.Results)
	require.Equal(t, 1, s.brave.Calls(), "a cache hit makes no provider call")
	require.Equal(t, 1, s.searx.Calls())
	require.Len(t, s.logs.Events("search_cache_hit"), 2)

	// Another recency or result count is another question.
	req.RecencyDays = 30
	_, err = s.agg.Search(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 2, s.brave.Calls())
}

// OnAnswer hears of each source as it answers or fails, counting up to the
// sources asked.
func TestAggregatorReportsSourcesAnswered(t *testing.T) {
	t.Parallel()
	s := newAgg(t, testenv.RedisURL())
	s.brave.FailWith(http.StatusServiceUnavailable)
	s.searx.SetHits(hitA)
	var mu sync.Mutex
	var got []string
	req := search.Request{Query: "progress", Sources: []string{"brave", "searxng"}, MaxResults: 5,
		OnAnswer: func(answered, asked int) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, fmt.Sprintf("%d/%d", answered, asked))
		}}
	_, err := s.agg.Search(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, []string{"1/2", "2/2"}, got, "a failed source counts as answered")
}

func TestAggregatorPartialAndTotalFailure(t *testing.T) {
	t.Parallel()
	s := newAgg(t, testenv.RedisURL())
	ctx := context.Background()
	s.brave.FailWith(http.StatusTooManyRequests)
	s.searx.SetHits(hitA)

	resp, err := s.agg.Search(ctx, search.Request{Query: "partial", Sources: []string{"brave", "searxng"}, MaxResults: 5})
	require.NoError(t, err, "one source failing still answers")
	require.Len(t, resp.Results, 1)
	require.Equal(t, "error", resp.Sources["brave"].Status)
	require.Equal(t, taskrunner.CodeSearchProviderRateLimited, resp.Sources["brave"].ErrorCode)
	require.Equal(t, "ok", resp.Sources["searxng"].Status)

	// A slow source times out on its own; the other still answers.
	s.brave.SetHits(hitB)
	s.brave.Delay(2 * time.Second)
	start := time.Now()
	resp, err = s.agg.Search(ctx, search.Request{Query: "slow", Sources: []string{"brave", "searxng"}, MaxResults: 5})
	require.NoError(t, err)
	require.Equal(t, taskrunner.CodeSearchProviderTimeout, resp.Sources["brave"].ErrorCode)
	require.Less(t, time.Since(start), 1500*time.Millisecond)
	s.brave.Delay(0)

	// Every source failing: retryable when any failure may pass.
	s.brave.FailWith(http.StatusServiceUnavailable)
	s.searx.FailWith(http.StatusTooManyRequests)
	_, err = s.agg.Search(ctx, search.Request{Query: "down", Sources: []string{"brave", "searxng"}, MaxResults: 5})
	var all *search.AllFailedError
	require.True(t, errors.As(err, &all))
	require.True(t, all.Retryable())
	require.Equal(t, taskrunner.CodeSearchFailed, taskrunner.ErrorCode(err), "the failure carries its code")
	require.Equal(t, "every search source failed (brave: search_provider_unavailable; searxng: search_provider_rate_limited)", taskrunner.ErrorMessage(err))

	// Only a bad key: not retryable.
	bad := search.NewBrave(s.brave.BraveEndpoint(), "bad-key-123", http.DefaultClient)
	agg, err := search.NewAggregator(search.AggregatorConfig{Providers: []search.Provider{bad}, Logger: testLogger(t)})
	require.NoError(t, err)
	_, err = agg.Search(ctx, search.Request{Query: "key", Sources: []string{"brave"}, MaxResults: 5})
	require.True(t, errors.As(err, &all))
	require.False(t, all.Retryable())
	require.NotContains(t, err.Error(), "bad-key-123")
}

func TestAggregatorWithRedisDownSearchesUncached(t *testing.T) {
	t.Parallel()
	s := newAgg(t, "redis://127.0.0.1:1/0")
	s.brave.SetHits(hitA)
	req := search.Request{Query: "no cache", Sources: []string{"brave"}, MaxResults: 5}
	for range 2 {
		resp, err := s.agg.Search(context.Background(), req)
		require.NoError(t, err)
		require.Len(t, resp.Results, 1)
		require.False(t, resp.Sources["brave"].Cached)
	}
	require.Equal(t, 2, s.brave.Calls())
	require.NotEmpty(t, s.logs.Events("search_cache_unavailable"))
}

func TestTheKeyNeverLeaks(t *testing.T) {
	t.Parallel()
	s := newAgg(t, testenv.RedisURL())
	ctx := context.Background()
	s.brave.SetHits(hitA)
	ok, err := s.agg.Search(ctx, search.Request{Query: "leak check", Sources: []string{"brave"}, MaxResults: 5})
	require.NoError(t, err)
	s.brave.FailWith(http.StatusInternalServerError)
	failed, _ := s.agg.Search(ctx, search.Request{Query: "leak check 2", Sources: []string{"brave", "searxng"}, MaxResults: 5})
	for _, v := range []any{ok, failed} {
		require.NotContains(t, strings.ToLower(toJSON(t, v)), strings.ToLower(searchtest.BraveKey))
	}
	require.NotContains(t, s.logs.String(), searchtest.BraveKey)
}
