// Package searchtest has local fake search providers that answer in each
// real API's response format, for tests: nothing in a test reaches the
// internet.
package searchtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Hit is one result a fake returns.
type Hit struct {
	Title, URL, Snippet string
}

// Fake is a fake provider server. Set its fields before the calls that
// should see them; they are read under its lock.
type Fake struct {
	Server  *httptest.Server // set by NewBrave and NewSearXNG
	Handler http.Handler

	mu       sync.Mutex
	hits     []Hit
	status   int           // answer with this HTTP status instead of results
	delay    time.Duration // wait this long before answering
	rawBody  string        // answer with this body instead of results
	requests []*http.Request
}

// SetHits sets the results returned from now on.
func (f *Fake) SetHits(hits ...Hit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits, f.status, f.rawBody = hits, 0, ""
}

// FailWith makes the fake answer with an HTTP error status (in the
// provider's error format).
func (f *Fake) FailWith(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// AnswerRaw makes the fake answer 200 with body as is.
func (f *Fake) AnswerRaw(body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rawBody = body
}

// Delay makes the fake wait before answering.
func (f *Fake) Delay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// Calls is how many requests the fake has answered.
func (f *Fake) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// LastRequest is the most recent request, or nil.
func (f *Fake) LastRequest() *http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil
	}
	return f.requests[len(f.requests)-1]
}

// URL is the fake's base URL.
func (f *Fake) URL() string { return f.Server.URL }

func (f *Fake) take(r *http.Request) (hits []Hit, status int, raw string, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Clone(r.Context()))
	return f.hits, f.status, f.rawBody, f.delay
}

func wait(r *http.Request, d time.Duration) bool {
	if d == 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-r.Context().Done():
		return false
	}
}

// BraveKey is the API key the fake Brave accepts.
const BraveKey = "test-brave-key-5f0c1e9a"

// NewBrave starts a fake Brave Search API web search endpoint: it checks the
// X-Subscription-Token header (BraveKey), honours count, and answers in
// Brave's JSON format, errors included. The endpoint is URL() + "/res/v1/web/search".
func NewBrave(t testing.TB) *Fake {
	f := NewBraveHandler()
	f.Server = httptest.NewServer(f.Handler)
	t.Cleanup(f.Server.Close)
	return f
}

// NewBraveHandler is NewBrave without a server: serve f.Handler yourself.
func NewBraveHandler() *Fake {
	f := &Fake{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /res/v1/web/search", func(w http.ResponseWriter, r *http.Request) {
		hits, status, raw, delay := f.take(r)
		if !wait(r, delay) {
			return
		}
		if r.Header.Get("X-Subscription-Token") != BraveKey {
			status = http.StatusUnauthorized
		}
		if status != 0 {
			braveError(w, status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if raw != "" {
			_, _ = w.Write([]byte(raw))
			return
		}
		q := r.URL.Query()
		if count := atoi(q.Get("count")); count > 0 && count < len(hits) {
			hits = hits[:count]
		}
		if len(hits) == 0 {
			// Brave leaves "web" out when nothing matched.
			_ = json.NewEncoder(w).Encode(map[string]any{"type": "search", "query": map[string]any{"original": q.Get("q")}})
			return
		}
		results := make([]map[string]any, len(hits))
		for i, h := range hits {
			results[i] = map[string]any{
				"type": "search_result", "title": h.Title, "url": h.URL, "description": h.Snippet,
				"age": "2 days ago", "page_age": "2026-11-24T10:00:00", "language": "en", "family_friendly": true,
				"meta_url": map[string]any{"scheme": "https", "hostname": hostOf(h.URL)},
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"type":  "search",
			"query": map[string]any{"original": q.Get("q"), "more_results_available": false},
			"web":   map[string]any{"type": "search", "family_friendly": true, "results": results},
		})
	})
	f.Handler = mux
	return f
}

// BraveEndpoint is the fake's web search endpoint, for BRAVE_API_URL.
func (f *Fake) BraveEndpoint() string { return f.Server.URL + "/res/v1/web/search" }

func braveError(w http.ResponseWriter, status int) {
	code := map[int]string{401: "SUBSCRIPTION_TOKEN_INVALID", 422: "VALIDATION", 429: "RATE_LIMITED"}[status]
	if code == "" {
		code = "INTERNAL_ERROR"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "ErrorResponse",
		"error": map[string]any{
			"id": "5b2e0a9e-8d0b-4a5c-9f4e-0d8c4b1f2a3c", "status": status, "code": code,
			"detail": http.StatusText(status), "meta": map[string]any{"component": "api"},
		},
		"time": 1732600000,
	})
}

// NewSearXNG starts a fake SearXNG instance answering /search?format=json
// in SearXNG's JSON format (and 403, as SearXNG does, when format=json is
// not asked for).
func NewSearXNG(t testing.TB) *Fake {
	f := NewSearXNGHandler()
	f.Server = httptest.NewServer(f.Handler)
	t.Cleanup(f.Server.Close)
	return f
}

// NewSearXNGHandler is NewSearXNG without a server: serve f.Handler yourself.
func NewSearXNGHandler() *Fake {
	f := &Fake{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {
		hits, status, raw, delay := f.take(r)
		if !wait(r, delay) {
			return
		}
		q := r.URL.Query()
		if q.Get("format") != "json" {
			status = http.StatusForbidden
		}
		if status != 0 {
			http.Error(w, http.StatusText(status), status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if raw != "" {
			_, _ = w.Write([]byte(raw))
			return
		}
		results := make([]map[string]any, len(hits))
		for i, h := range hits {
			results[i] = map[string]any{
				"url": h.URL, "title": h.Title, "content": h.Snippet, "engine": "duckduckgo",
				"engines": []string{"duckduckgo", "bing"}, "positions": []int{i + 1}, "score": 2.0 / float64(i+1),
				"category": "general", "parsed_url": []string{"https", hostOf(h.URL), "/", "", "", ""},
				"publishedDate": nil,
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"query": q.Get("q"), "number_of_results": len(hits), "results": results,
			"answers": []any{}, "corrections": []any{}, "infoboxes": []any{}, "suggestions": []any{},
			"unresponsive_engines": []any{},
		})
	})
	f.Handler = mux
	return f
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
