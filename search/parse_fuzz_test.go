package search

import (
	"encoding/json"
	"testing"
)

// FuzzProviderAnswers feeds arbitrary bodies to both providers' answer
// parsers and the URL normaliser: no panics, never more than asked for,
// never a result without a URL.
func FuzzProviderAnswers(f *testing.F) {
	f.Add([]byte(`{"type":"search","web":{"results":[{"title":"a","url":"https://a.com","description":"d","page_age":"2026-01-01"}]}}`), 5)
	f.Add([]byte(`{"query":"q","results":[{"url":"https://b.com/?utm_source=x","title":"b","content":"c","publishedDate":null}]}`), 1)
	f.Add([]byte(`{"type":"ErrorResponse","error":{"status":429,"code":"RATE_LIMITED"}}`), 3)
	f.Add([]byte(`{"results":[{"url":""},{"url":"::"},{"url":"http://[::1]:80/x"}]}`), 2)
	f.Add([]byte(`null`), 0)
	f.Fuzz(func(t *testing.T, body []byte, maxResults int) {
		maxResults = max(0, min(maxResults, 50))
		var brave braveResponse
		if json.Unmarshal(body, &brave) == nil {
			check(t, parseBrave(brave, maxResults), maxResults)
		}
		if results, err := parseSearXNG(body, maxResults); err == nil {
			check(t, results, maxResults)
			lists := [][]Result{results, results}
			merged := Merge([]string{"a", "b"}, lists, maxResults)
			if len(merged) > maxResults {
				t.Fatalf("merge kept %d of at most %d", len(merged), maxResults)
			}
		}
		_ = NormalizeURL(string(body))
	})
}

func check(t *testing.T, results []Result, maxResults int) {
	t.Helper()
	if len(results) > maxResults {
		t.Fatalf("%d results, asked for %d", len(results), maxResults)
	}
	for _, r := range results {
		if r.URL == "" {
			t.Fatal("a result without a URL")
		}
	}
}
