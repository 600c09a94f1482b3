package search_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/search"
	"github.com/taskrunner/taskrunner/search/searchtest"
)

// TestAggregatorCachesPerTenant: a tenant's search is never answered from
// another tenant's cached answer, so neither the cached flag nor the
// latency tells bob what alice searched; with the cache shared
// (SEARCH_CACHE_SHARED) it is.
func TestAggregatorCachesPerTenant(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		shared     bool
		bobCached  bool
		braveCalls int
	}{
		{name: "per tenant", shared: false, bobCached: false, braveCalls: 2},
		{name: "shared", shared: true, bobCached: true, braveCalls: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			brave := searchtest.NewBrave(t)
			brave.SetHits(hitA, hitB)
			rdb, err := cache.NewClient(testenv.RedisURL())
			require.NoError(t, err)
			t.Cleanup(func() { rdb.Close() })
			agg, err := search.NewAggregator(search.AggregatorConfig{
				Providers:   []search.Provider{search.NewBrave(brave.BraveEndpoint(), searchtest.BraveKey, http.DefaultClient)},
				Cache:       cache.NewSearchCache(rdb, testenv.RandomName("test:")+":"),
				CacheTTL:    time.Minute,
				CacheShared: tc.shared,
			})
			require.NoError(t, err)
			ctx := context.Background()
			req := search.Request{Query: "acme merger globex", Sources: []string{"brave"}, MaxResults: 5}

			req.Tenant = "alice"
			first, err := agg.Search(ctx, req)
			require.NoError(t, err)
			require.False(t, first.Sources["brave"].Cached)
			again, err := agg.Search(ctx, req)
			require.NoError(t, err)
			require.True(t, again.Sources["brave"].Cached, "alice's own search again is cached")

			req.Tenant, req.Query = "bob", "ACME  merger globex"
			bob, err := agg.Search(ctx, req)
			require.NoError(t, err)
			require.Equal(t, tc.bobCached, bob.Sources["brave"].Cached)
			require.Equal(t, first.Results, bob.Results)
			require.Equal(t, tc.braveCalls, brave.Calls())
		})
	}
}
