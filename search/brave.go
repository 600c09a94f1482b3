package search

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/taskrunner/taskrunner"
)

// DefaultBraveURL is Brave Search API's web search endpoint.
const DefaultBraveURL = "https://api.search.brave.com/res/v1/web/search"

// braveMaxCount is the most results Brave returns for one request.
const braveMaxCount = 20

// maxProviderBody bounds what is read of a provider's answer.
const maxProviderBody = 4 << 20

// Brave is the Brave Search API provider.
type Brave struct {
	endpoint string
	key      string // secret: sent only in the X-Subscription-Token header
	client   *http.Client
	now      func() time.Time
}

// NewBrave returns the Brave provider for endpoint (DefaultBraveURL when
// empty) with the API key. Whatever client's redirect policy, the key never
// follows a redirect to another host: such a redirect is not followed.
func NewBrave(endpoint, key string, client *http.Client) *Brave {
	if endpoint == "" {
		endpoint = DefaultBraveURL
	}
	return &Brave{endpoint: endpoint, key: key, client: keepOnHost(client), now: time.Now}
}

// Name is "brave".
func (b *Brave) Name() string { return "brave" }

// braveResponse is the part of Brave's web search answer taskrunner reads.
type braveResponse struct {
	Type string `json:"type"`
	Web  *struct {
		Results []struct {
			Title       string `json:"title"`
			URL         string `json:"url"`
			Description string `json:"description"`
			Age         string `json:"age"`
			PageAge     string `json:"page_age"`
		} `json:"results"`
	} `json:"web"`
	Error *braveError `json:"error"`
}

type braveError struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// BraveFreshness maps a recency window in days to Brave's freshness
// parameter: pd, pw, pm, py for a day, week, month and year, otherwise an
// explicit date range. Zero means no filter.
func BraveFreshness(now time.Time, days int) string {
	switch days {
	case 0:
		return ""
	case 1:
		return "pd"
	case 7:
		return "pw"
	case 31:
		return "pm"
	case 365:
		return "py"
	}
	return RecencyCutoff(now, days).UTC().Format("2006-01-02") + "to" + now.UTC().Format("2006-01-02")
}

// Search asks Brave's web search.
func (b *Brave) Search(ctx context.Context, q Query) ([]Result, error) {
	if b.key == "" {
		return nil, &ProviderError{Source: b.Name(), Code: taskrunner.CodeSearchProviderUnauthorized, Message: "BRAVE_API_KEY is not set"}
	}
	params := url.Values{"q": {q.Text}, "count": {strconv.Itoa(min(q.MaxResults, braveMaxCount))}}
	if f := BraveFreshness(b.now(), q.RecencyDays); f != "" {
		params.Set("freshness", f)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.endpoint+"?"+params.Encode(), nil)
	if err != nil {
		return nil, &ProviderError{Source: b.Name(), Code: taskrunner.CodeSearchProviderBadResponse, Message: "BRAVE_API_URL is not a valid URL"}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Subscription-Token", b.key)
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, errorFromTransport(ctx, b.Name(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if err != nil {
		return nil, errorFromTransport(ctx, b.Name(), err)
	}
	var parsed braveResponse
	decodeErr := json.Unmarshal(body, &parsed)
	if resp.StatusCode != http.StatusOK {
		detail := ""
		if decodeErr == nil && parsed.Error != nil {
			// Whatever the provider says, the key is not repeated.
			detail = strings.ReplaceAll(parsed.Error.Code+": "+parsed.Error.Detail, b.key, "[redacted]")
		}
		return nil, errorFromStatus(b.Name(), resp.StatusCode, detail)
	}
	if decodeErr != nil {
		return nil, &ProviderError{Source: b.Name(), Code: taskrunner.CodeSearchProviderBadResponse, Status: resp.StatusCode, Message: "the answer is not Brave's JSON"}
	}
	return parseBrave(parsed, q.MaxResults), nil
}

func parseBrave(r braveResponse, maxResults int) []Result {
	if r.Web == nil {
		return []Result{} // Brave omits "web" when nothing matched
	}
	out := make([]Result, 0, min(len(r.Web.Results), maxResults))
	for _, w := range r.Web.Results {
		if len(out) == maxResults {
			break
		}
		if w.URL == "" {
			continue
		}
		published := w.PageAge
		if published == "" {
			published = w.Age
		}
		out = append(out, Result{Title: w.Title, URL: w.URL, Snippet: w.Description, Published: published})
	}
	return out
}

// String describes the provider without its key.
func (b *Brave) String() string { return fmt.Sprintf("brave(%s)", b.endpoint) }
