package app

import (
	"log/slog"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/metrics"
	"github.com/taskrunner/taskrunner/search"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Builtins are taskrunner's own task types, configured by cfg: what
// cmd/taskrunner serves, and what a program of your own adds its types to.
func Builtins(cfg *config.Config) []tasktype.Type {
	return builtin.Types(builtin.Config{
		Search: builtin.SearchConfig{
			Sources: cfg.Limits.SearchSourceAllowlist, MaxResults: cfg.SearchMaxResults,
			NewAggregator: func(s tasktype.Services) (*search.Aggregator, error) {
				return SearchAggregator(cfg, s.Redis, s.Logger, s.Metrics)
			},
		},
		Fetch: FetchConfig(cfg),
	})
}

// SearchAggregator is the search providers of cfg, each behind the Redis
// cache: each tenant's own, unless SEARCH_CACHE_SHARED. m may be nil.
func SearchAggregator(cfg *config.Config, rdb *redis.Client, logger *slog.Logger, m *metrics.Metrics) (*search.Aggregator, error) {
	// The providers wrap it so that no redirect to another host is followed.
	httpClient := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	return search.NewAggregator(search.AggregatorConfig{
		Providers: []search.Provider{
			search.NewBrave(cfg.BraveAPIURL, cfg.BraveAPIKey, httpClient),
			search.NewSearXNG(cfg.SearXNGURL, httpClient),
		},
		Cache:         cache.NewSearchCache(rdb, cfg.RedisKeyPrefix),
		CacheTTL:      cfg.SearchCacheTTL,
		CacheShared:   cfg.Limits.SearchCacheShared,
		SourceTimeout: cfg.SearchSourceTimeout,
		Logger:        logger,
		Metrics:       m,
	})
}

// FetchConfig is the fetch task's configuration: what it may reach, and
// the artifact limit as its body cap.
func FetchConfig(cfg *config.Config) fetch.Config {
	return fetch.Config{
		Allowlist:            cfg.Limits.FetchDomainAllowlist,
		AllowedPorts:         cfg.Limits.FetchAllowedPorts,
		AllowPrivateNetworks: cfg.Limits.FetchAllowPrivateNetworks,
		MaxBytes:             int64(cfg.Limits.TaskMaxArtifactMB) << 20,
	}
}

// CallbackURLConfig is what a callback URL may reach, checked at submit
// and at dial time by the fetch package's rules under the CALLBACK_*
// settings. No redirect is followed.
func CallbackURLConfig(cfg *config.Config) fetch.Config {
	return fetch.Config{
		Allowlist:            cfg.Callback.DomainAllowlist,
		AllowlistSetting:     "CALLBACK_DOMAIN_ALLOWLIST",
		AllowedPorts:         cfg.Callback.AllowedPorts,
		AllowPrivateNetworks: cfg.Callback.AllowPrivateNetworks,
		MaxRedirects:         -1,
		MaxBytes:             64 << 10,
		DialTimeout:          cfg.Callback.Timeout,
	}
}
