package search

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/taskrunner/taskrunner"
)

// SearXNG is a SearXNG instance's JSON API (its settings must enable the
// json format).
type SearXNG struct {
	base   string
	client *http.Client
}

// NewSearXNG returns the provider for the instance at base (SEARXNG_URL).
// Like Brave's, its queries never follow a redirect to another host.
func NewSearXNG(base string, client *http.Client) *SearXNG {
	return &SearXNG{base: strings.TrimRight(base, "/"), client: keepOnHost(client)}
}

// Name is "searxng".
func (s *SearXNG) Name() string { return "searxng" }

// searxngResponse is the part of SearXNG's answer taskrunner reads.
type searxngResponse struct {
	Query   string `json:"query"`
	Results []struct {
		URL           string `json:"url"`
		Title         string `json:"title"`
		Content       string `json:"content"`
		PublishedDate string `json:"publishedDate"`
	} `json:"results"`
}

// SearXNGTimeRange maps a recency window in days to SearXNG's time_range:
// the smallest of day, week, month, year that covers it. Zero means none.
func SearXNGTimeRange(days int) string {
	switch {
	case days <= 0:
		return ""
	case days <= 1:
		return "day"
	case days <= 7:
		return "week"
	case days <= 31:
		return "month"
	default:
		return "year"
	}
}

// Search asks SearXNG's /search with format=json.
func (s *SearXNG) Search(ctx context.Context, q Query) ([]Result, error) {
	if s.base == "" {
		return nil, &ProviderError{Source: s.Name(), Code: taskrunner.CodeSearchProviderUnavailable, Message: "SEARXNG_URL is not set"}
	}
	params := url.Values{"q": {q.Text}, "format": {"json"}, "pageno": {"1"}}
	if tr := SearXNGTimeRange(q.RecencyDays); tr != "" {
		params.Set("time_range", tr)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/search?"+params.Encode(), nil)
	if err != nil {
		return nil, &ProviderError{Source: s.Name(), Code: taskrunner.CodeSearchProviderBadResponse, Message: "SEARXNG_URL is not a valid URL"}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, errorFromTransport(ctx, s.Name(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if err != nil {
		return nil, errorFromTransport(ctx, s.Name(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errorFromStatus(s.Name(), resp.StatusCode, "")
	}
	results, err := parseSearXNG(body, q.MaxResults)
	if err != nil {
		return nil, &ProviderError{Source: s.Name(), Code: taskrunner.CodeSearchProviderBadResponse, Status: resp.StatusCode, Message: "the answer is not SearXNG's JSON (is format=json enabled?)"}
	}
	return results, nil
}

// parseSearXNG reads SearXNG's JSON answer, keeping at most maxResults.
func parseSearXNG(body []byte, maxResults int) ([]Result, error) {
	var parsed searxngResponse
	if err := json.Unmarshal(body, &parsed); err != nil {
		return nil, err
	}
	out := make([]Result, 0, min(len(parsed.Results), maxResults))
	for _, r := range parsed.Results {
		if len(out) == maxResults {
			break
		}
		if r.URL == "" {
			continue
		}
		out = append(out, Result{Title: r.Title, URL: r.URL, Snippet: r.Content, Published: r.PublishedDate})
	}
	return out, nil
}
