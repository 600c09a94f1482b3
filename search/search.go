// Package search is taskrunner's search aggregator: it asks several search
// providers in parallel, each with its own timeout and Redis cache entry,
// merges their results (de-duplicated by normalised URL, ranked by
// reciprocal rank fusion) and reports how each source did.
//
// A provider is one file: a type implementing Provider, registered by name
// where cmd wires the aggregator.
package search

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/taskrunner/taskrunner"
)

// Query is what one provider is asked.
type Query struct {
	Text        string // the normalised query text
	RecencyDays int    // 0: any time
	MaxResults  int
}

// Result is one search hit.
type Result struct {
	Title     string `json:"title"`
	URL       string `json:"url"`
	Snippet   string `json:"snippet"`
	Published string `json:"published,omitempty"` // as the provider gave it
}

// Provider is one search source.
type Provider interface {
	// Name is the source name clients use in "sources".
	Name() string
	// Search returns the provider's results, best first. Errors should be
	// *ProviderError so the aggregator knows whether a retry may help.
	Search(ctx context.Context, q Query) ([]Result, error)
}

// ProviderError is a provider's failure, described without secrets.
type ProviderError struct {
	Source string
	// Code is one of taskrunner's search_provider_* codes:
	// search_provider_unauthorized,
	// search_provider_rate_limited, search_provider_unavailable,
	// search_provider_timeout, search_provider_bad_response.
	Code taskrunner.Code
	// Status is the provider's HTTP status, 0 when there was no answer.
	Status  int
	Message string
	// Retryable says whether asking again later may succeed (429, 5xx,
	// timeouts), as opposed to a bad key or a malformed answer.
	Retryable bool
}

func (e *ProviderError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s: %s (HTTP %d): %s", e.Source, e.Code, e.Status, e.Message)
	}
	return fmt.Sprintf("%s: %s: %s", e.Source, e.Code, e.Message)
}

// errorFromStatus classifies a provider's non-2xx answer.
func errorFromStatus(source string, status int, detail string) *ProviderError {
	e := &ProviderError{Source: source, Status: status, Message: detail}
	switch {
	case status == 401 || status == 403:
		e.Code = taskrunner.CodeSearchProviderUnauthorized
		if e.Message == "" {
			e.Message = "the provider refused the API key"
		}
	case status == 429:
		e.Code, e.Retryable = taskrunner.CodeSearchProviderRateLimited, true
	case status >= 500:
		e.Code, e.Retryable = taskrunner.CodeSearchProviderUnavailable, true
	default:
		e.Code = taskrunner.CodeSearchProviderBadResponse
	}
	if e.Message == "" {
		e.Message = "the provider answered with an error"
	}
	return e
}

// errRedirectRefused is a provider's redirect to another host (or from
// https to http), which is not followed.
var errRedirectRefused = errors.New("the provider redirected to another host; not followed")

// maxProviderRedirects bounds the redirects followed within a host.
const maxProviderRedirects = 5

// keepOnHost returns a copy of client that follows a provider's redirects
// only on the host it asked, and never from https to http. Go's client
// drops only Authorization and cookies on a redirect to another host: a
// key in a provider's own header (Brave's X-Subscription-Token) would go
// to whatever host a redirect named.
func keepOnHost(client *http.Client) *http.Client {
	if client == nil {
		client = http.DefaultClient
	}
	c := *client
	next := client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		downgrade := first.Scheme == "https" && req.URL.Scheme != "https"
		if !strings.EqualFold(req.URL.Host, first.Host) || downgrade {
			return errRedirectRefused
		}
		if len(via) > maxProviderRedirects {
			return fmt.Errorf("stopped after %d redirects", maxProviderRedirects)
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &c
}

// errorFromTransport classifies a failure to get any answer.
func errorFromTransport(ctx context.Context, source string, err error) *ProviderError {
	if errors.Is(err, errRedirectRefused) {
		// A retry gets the same redirect: BRAVE_API_URL or SEARXNG_URL is
		// wrong, or the provider moved.
		return &ProviderError{Source: source, Code: taskrunner.CodeSearchProviderBadResponse, Message: errRedirectRefused.Error()}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &ProviderError{Source: source, Code: taskrunner.CodeSearchProviderTimeout, Message: "no answer in time", Retryable: true}
	}
	return &ProviderError{Source: source, Code: taskrunner.CodeSearchProviderUnavailable, Message: "could not reach the provider", Retryable: true}
}

// NormalizeQuery folds case and spacing, so equal questions share a cache
// entry and a run key.
func NormalizeQuery(q string) string {
	return strings.Join(strings.Fields(strings.ToLower(q)), " ")
}

// RecencyCutoff is the earliest date a recency window admits.
func RecencyCutoff(now time.Time, days int) time.Time {
	return now.AddDate(0, 0, -days)
}
