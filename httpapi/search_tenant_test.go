package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/search"
	"github.com/taskrunner/taskrunner/search/searchtest"
)

// TestSearchCacheIsPerTenant: bob's search for what alice searched a
// moment ago is not answered from her cached answer, so neither its
// cached flag nor its latency tells him she did; alice's own search
// again is. With SEARCH_CACHE_SHARED it is answered from the cache.
func TestSearchCacheIsPerTenant(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%t", shared), func(t *testing.T) {
			t.Parallel()
			brave := searchtest.NewBrave(t)
			brave.SetHits(searchtest.Hit{Title: "Merger", URL: "https://example.com/merger"})
			rdb, err := cache.NewClient(testenv.RedisURL())
			require.NoError(t, err)
			t.Cleanup(func() { rdb.Close() })
			agg, err := search.NewAggregator(search.AggregatorConfig{
				Providers:   []search.Provider{search.NewBrave(brave.BraveEndpoint(), searchtest.BraveKey, http.DefaultClient)},
				Cache:       cache.NewSearchCache(rdb, testenv.RandomName("test:")+":"),
				CacheTTL:    time.Minute,
				CacheShared: shared,
			})
			require.NoError(t, err)
			b := setup(t, setupOpts{work: true, apiKeys: tenantKeys, search: agg})

			searchAs := func(key string) searchResult {
				t.Helper()
				resp := b.doAs(t, key, http.MethodPost, "/search", map[string]any{"query": "acme merger globex", "sources": []string{"brave"}})
				require.Equal(t, http.StatusAccepted, resp.status, "%s", resp.raw)
				done := b.doAs(t, key, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=20s", resp.task(t).ID), nil)
				require.Equal(t, taskrunner.StatusCompleted, done.task(t).Status, "%s", done.raw)
				return searchResultOf(t, done.task(t))
			}
			require.False(t, searchAs(aliceKey).Sources["brave"].Cached)
			require.True(t, searchAs(aliceKey).Sources["brave"].Cached, "alice's own search again comes from the cache")
			require.Equal(t, shared, searchAs(bobKey).Sources["brave"].Cached)
			want := 2
			if shared {
				want = 1
			}
			require.Equal(t, want, brave.Calls())
		})
	}
}
