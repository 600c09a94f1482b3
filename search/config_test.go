package search

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// AggregatorConfig: a missing or repeated provider is an error, not a
// panic or a silent gap later, and the optional fields get their defaults.
func TestAggregatorConfig(t *testing.T) {
	t.Parallel()
	brave := NewBrave("http://127.0.0.1:1", "key", http.DefaultClient)
	for _, tc := range []struct {
		name string
		cfg  AggregatorConfig
		want string
	}{
		{"no providers", AggregatorConfig{}, "Providers"},
		{"a nil provider", AggregatorConfig{Providers: []Provider{brave, nil}}, "Providers"},
		{"a provider twice", AggregatorConfig{Providers: []Provider{brave, brave}}, `"brave" registered twice`},
		{"negative source timeout", AggregatorConfig{Providers: []Provider{brave}, SourceTimeout: -time.Second}, "SourceTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agg, err := NewAggregator(tc.cfg)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, agg)
		})
	}

	t.Run("defaults", func(t *testing.T) {
		agg, err := NewAggregator(AggregatorConfig{Providers: []Provider{brave}})
		require.NoError(t, err)
		require.Equal(t, DefaultSourceTimeout, agg.cfg.SourceTimeout)
		require.Equal(t, DefaultCacheTTL, agg.cfg.CacheTTL)
		require.NotNil(t, agg.cfg.Logger)
	})
}
