package search_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/search"
	"github.com/taskrunner/taskrunner/search/searchtest"
)

// elsewhere is a server on another loopback address, 127.0.0.2, that
// records the requests it gets.
type elsewhere struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newElsewhere(t *testing.T) *elsewhere {
	t.Helper()
	e := &elsewhere{}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err, "loopback 127.0.0.0/8 is one interface on Linux")
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.Header.Clone())
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"type":"search","web":{"results":[{"title":"stolen","url":"https://evil.example/"}]}}`))
	}))
	e.Server.Listener.Close()
	e.Server.Listener = ln
	e.Start()
	t.Cleanup(e.Close)
	return e
}

func (e *elsewhere) requests() []http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]http.Header(nil), e.seen...)
}

// A provider whose answer is a redirect to another host does not get its
// key sent there: the redirect is not followed, whatever the client's own
// policy (http.DefaultClient follows every redirect), the source is
// reported failed, and the other sources still answer. A redirect on the
// same host is followed.
func TestProviderKeyNeverFollowsARedirectToAnotherHost(t *testing.T) {
	t.Parallel()
	other := newElsewhere(t)
	brave := searchtest.NewBraveHandler()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/res/v1/web/search?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/res/v1/web/search?"+r.URL.RawQuery, http.StatusMovedPermanently)
	})
	mux.Handle("/", brave.Handler)
	provider := httptest.NewServer(mux) // on 127.0.0.1
	t.Cleanup(provider.Close)
	brave.SetHits(hitA)
	searx := searchtest.NewSearXNG(t)
	searx.SetHits(hitB)

	ask := func(endpoint string) *search.Response {
		agg, err := search.NewAggregator(search.AggregatorConfig{
			Providers: []search.Provider{
				search.NewBrave(endpoint, searchtest.BraveKey, http.DefaultClient),
				search.NewSearXNG(searx.URL(), http.DefaultClient),
			},
			Logger: testLogger(t),
		})
		require.NoError(t, err)
		resp, err := agg.Search(context.Background(), search.Request{Query: "redirected", Sources: []string{"brave", "searxng"}, MaxResults: 5})
		require.NoError(t, err, "one source failing still answers")
		return resp
	}

	resp := ask(provider.URL + "/away")
	require.Empty(t, other.requests(), "the other host was never asked, so never saw the key")
	require.Equal(t, "error", resp.Sources["brave"].Status)
	require.Equal(t, taskrunner.CodeSearchProviderBadResponse, resp.Sources["brave"].ErrorCode)
	require.NotContains(t, resp.Sources["brave"].Error, other.URL)
	require.Equal(t, "ok", resp.Sources["searxng"].Status)
	require.Len(t, resp.Results, 1)
	require.Equal(t, hitB.URL, resp.Results[0].URL)

	// On the same host the redirect is followed, key and all.
	resp = ask(provider.URL + "/moved")
	require.Equal(t, "ok", resp.Sources["brave"].Status, "%+v", resp.Sources["brave"])
	require.Equal(t, searchtest.BraveKey, brave.LastRequest().Header.Get("X-Subscription-Token"))
	require.Empty(t, other.requests())
}
