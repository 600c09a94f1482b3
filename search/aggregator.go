package search

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/metrics"
)

// Defaults for the aggregator.
const (
	// DefaultSourceTimeout is each provider's own timeout
	// (SEARCH_SOURCE_TIMEOUT_SECONDS).
	DefaultSourceTimeout = 10 * time.Second
	// DefaultCacheTTL is how long a provider's answer stays cached
	// (SEARCH_CACHE_TTL_SECONDS).
	DefaultCacheTTL = time.Hour
	// rrfK is reciprocal rank fusion's constant: a result's score is the
	// sum over sources of 1/(rrfK + rank).
	rrfK = 60
)

// Cache keeps provider answers. Get reports a miss as ok == false; an error
// means the cache itself is unavailable, and search goes on without it.
type Cache interface {
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

// AggregatorConfig is what an Aggregator is built from.
type AggregatorConfig struct {
	// Providers are the sources a search may ask, each under its own Name.
	// At least one is required.
	Providers []Provider
	// Cache keeps provider answers; nil: no cache.
	Cache Cache
	// CacheTTL is how long an answer stays in Cache; DefaultCacheTTL when 0.
	CacheTTL time.Duration
	// CacheShared keeps one cache for every tenant (SEARCH_CACHE_SHARED).
	// Off, the default, each tenant (Request.Tenant) has a cache of its
	// own: a shared one tells any tenant, through an answer's cached flag
	// and latency, whether anyone searched the same query within CacheTTL.
	CacheShared bool
	// SourceTimeout is each provider's own timeout; DefaultSourceTimeout
	// when 0.
	SourceTimeout time.Duration
	// Logger gets search_source_failed and the cache's events; nil logs
	// nothing.
	Logger *slog.Logger
	// Metrics counts cache hits and misses; nil counts nothing.
	Metrics *metrics.Metrics
}

// withDefaults is cfg with every unset optional field at its default.
func (cfg AggregatorConfig) withDefaults() AggregatorConfig {
	cfg.CacheTTL = cmp.Or(cfg.CacheTTL, DefaultCacheTTL)
	cfg.SourceTimeout = cmp.Or(cfg.SourceTimeout, DefaultSourceTimeout)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return cfg
}

// validate names the first field that is missing or out of range.
func (cfg AggregatorConfig) validate() error {
	switch {
	case len(cfg.Providers) == 0:
		return errors.New("search aggregator: Providers: at least one is required")
	case slices.Contains(cfg.Providers, nil):
		return errors.New("search aggregator: Providers: a provider is nil")
	case cfg.CacheTTL < 0:
		return fmt.Errorf("search aggregator: CacheTTL must be positive, got %s", cfg.CacheTTL)
	case cfg.SourceTimeout < 0:
		return fmt.Errorf("search aggregator: SourceTimeout must be positive, got %s", cfg.SourceTimeout)
	}
	return nil
}

// Aggregator asks providers in parallel and merges their answers.
type Aggregator struct {
	providers map[string]Provider
	cfg       AggregatorConfig
}

// NewAggregator returns an Aggregator built from cfg, or an error naming
// the field of cfg that is missing or wrong.
func NewAggregator(cfg AggregatorConfig) (*Aggregator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &Aggregator{providers: map[string]Provider{}, cfg: cfg}
	for _, p := range cfg.Providers {
		if _, dup := a.providers[p.Name()]; dup {
			return nil, fmt.Errorf("search aggregator: Providers: %q registered twice", p.Name())
		}
		a.providers[p.Name()] = p
	}
	return a, nil
}

// Request is one search over several sources.
type Request struct {
	Query       string   `json:"query"`
	Sources     []string `json:"sources"`
	RecencyDays int      `json:"recency_days"`
	MaxResults  int      `json:"max_results"`
	// Tenant is who searches: unless the cache is shared, answers are
	// cached per tenant, so no tenant learns what another searched.
	Tenant string `json:"-"`
	// OnAnswer, when set, is called (from the sources' goroutines) each
	// time a source has answered or failed, with how many have out of
	// how many were asked.
	OnAnswer func(answered, asked int) `json:"-"`
}

// SourceReport says how one source did.
type SourceReport struct {
	Status    string          `json:"status"` // "ok" or "error"
	Count     int             `json:"count"`
	LatencyMS float64         `json:"latency_ms"`
	Cached    bool            `json:"cached"`
	ErrorCode taskrunner.Code `json:"error_code,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// Merged is one de-duplicated result with its fused score and the sources
// that returned it.
type Merged struct {
	Result
	Score   float64  `json:"score"`
	Sources []string `json:"sources"`
}

// Response is the merged answer: the search task's result.
type Response struct {
	Query       string                  `json:"query"`
	RecencyDays int                     `json:"recency_days"`
	MaxResults  int                     `json:"max_results"`
	Results     []Merged                `json:"results"`
	Sources     map[string]SourceReport `json:"sources"`
}

// AllFailedError is returned when no source answered.
type AllFailedError struct {
	Errors []*ProviderError
}

func (e *AllFailedError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, pe := range e.Errors {
		parts[i] = pe.Error()
	}
	return "every search source failed: " + strings.Join(parts, "; ")
}

// Retryable reports whether asking again may help: some source failed in a
// way that can pass (rate limit, outage, timeout).
func (e *AllFailedError) Retryable() bool {
	for _, pe := range e.Errors {
		if pe.Retryable {
			return true
		}
	}
	return false
}

// allFailed is the error of a search no source answered. Its message is
// public: it names each source and its failure's code, never the
// providers' words, which may name hosts.
func allFailed(failures []*ProviderError) *taskrunner.Error {
	parts := make([]string, len(failures))
	for i, pe := range failures {
		parts[i] = pe.Source + ": " + string(pe.Code)
	}
	return &taskrunner.Error{Code: taskrunner.CodeSearchFailed, Err: &AllFailedError{Errors: failures},
		Message: "every search source failed (" + strings.Join(parts, "; ") + ")"}
}

// Search asks every requested source in parallel and merges the answers.
// One source failing is reported in Sources; every source failing returns
// a *taskrunner.Error (search_failed) that names each source and its
// failure's code, and wraps *AllFailedError with the providers' own words.
func (a *Aggregator) Search(ctx context.Context, req Request) (*Response, error) {
	q := Query{Text: NormalizeQuery(req.Query), RecencyDays: req.RecencyDays, MaxResults: req.MaxResults}
	type answer struct {
		source  string
		results []Result
		report  SourceReport
		err     *ProviderError
	}
	answers := make([]answer, len(req.Sources))
	var answered atomic.Int64
	var wg sync.WaitGroup
	for i, source := range req.Sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results, report, err := a.ask(ctx, source, a.cacheScope(req.Tenant), q)
			answers[i] = answer{source, results, report, err}
			if n := answered.Add(1); req.OnAnswer != nil {
				req.OnAnswer(int(n), len(req.Sources))
			}
		}()
	}
	wg.Wait()

	resp := &Response{Query: q.Text, RecencyDays: q.RecencyDays, MaxResults: q.MaxResults, Sources: map[string]SourceReport{}}
	var failures []*ProviderError
	ranked := make([][]Result, 0, len(answers))
	names := make([]string, 0, len(answers))
	for _, ans := range answers {
		resp.Sources[ans.source] = ans.report
		if ans.err != nil {
			failures = append(failures, ans.err)
			continue
		}
		ranked = append(ranked, ans.results)
		names = append(names, ans.source)
	}
	if len(failures) == len(answers) {
		return resp, allFailed(failures)
	}
	resp.Results = Merge(names, ranked, q.MaxResults)
	return resp, nil
}

// cacheScope is the part of the cache a tenant's searches use: its own,
// or the one every tenant shares.
func (a *Aggregator) cacheScope(tenant string) string {
	if a.cfg.CacheShared {
		return "shared"
	}
	return "tenant " + tenant
}

// ask gets one source's results, from the cache (scope's part of it) when
// it has them.
func (a *Aggregator) ask(ctx context.Context, source, scope string, q Query) ([]Result, SourceReport, *ProviderError) {
	start := time.Now()
	p, ok := a.providers[source]
	if !ok {
		pe := &ProviderError{Source: source, Code: taskrunner.CodeSearchProviderUnavailable, Message: "no such provider is configured"}
		return nil, SourceReport{Status: "error", ErrorCode: pe.Code, Error: pe.Error()}, pe
	}
	key := CacheKey(source, scope, q)
	if results, hit := a.cacheGet(ctx, key, source); hit {
		return results, SourceReport{Status: "ok", Count: len(results), Cached: true, LatencyMS: ms(time.Since(start))}, nil
	}
	pctx, cancel := context.WithTimeout(ctx, a.cfg.SourceTimeout)
	defer cancel()
	results, err := p.Search(pctx, q)
	latency := ms(time.Since(start))
	if err != nil {
		var pe *ProviderError
		if !errors.As(err, &pe) {
			pe = &ProviderError{Source: source, Code: taskrunner.CodeSearchProviderUnavailable, Message: "provider failed", Retryable: true}
		}
		a.cfg.Logger.WarnContext(ctx, "search source failed", slog.String("event", "search_source_failed"),
			slog.String("source", source), slog.String("error_code", string(pe.Code)), slog.Int("status", pe.Status),
			slog.Float64("latency_ms", latency))
		return nil, SourceReport{Status: "error", LatencyMS: latency, ErrorCode: pe.Code, Error: pe.Error()}, pe
	}
	a.cacheSet(ctx, key, source, results)
	return results, SourceReport{Status: "ok", Count: len(results), LatencyMS: latency}, nil
}

func (a *Aggregator) cacheGet(ctx context.Context, key, source string) ([]Result, bool) {
	if a.cfg.Cache == nil {
		return nil, false
	}
	val, ok, err := a.cfg.Cache.Get(ctx, key)
	switch {
	case err != nil:
		a.cfg.Metrics.SearchCache(source, "error")
	case ok:
		a.cfg.Metrics.SearchCache(source, "hit")
	default:
		a.cfg.Metrics.SearchCache(source, "miss")
	}
	if err != nil {
		a.cfg.Logger.WarnContext(ctx, "search cache unavailable; searching uncached", slog.String("event", "search_cache_unavailable"),
			slog.String("source", source), slog.String("error", err.Error()))
		return nil, false
	}
	if !ok {
		a.cfg.Logger.DebugContext(ctx, "search cache miss", slog.String("event", "search_cache_miss"), slog.String("source", source))
		return nil, false
	}
	var results []Result
	if err := json.Unmarshal(val, &results); err != nil {
		return nil, false // a corrupt entry is a miss; the fresh answer replaces it
	}
	a.cfg.Logger.InfoContext(ctx, "search cache hit", slog.String("event", "search_cache_hit"), slog.String("source", source))
	return results, true
}

func (a *Aggregator) cacheSet(ctx context.Context, key, source string, results []Result) {
	if a.cfg.Cache == nil {
		return
	}
	val, err := json.Marshal(results)
	if err != nil {
		return
	}
	if err := a.cfg.Cache.Set(ctx, key, val, a.cfg.CacheTTL); err != nil {
		a.cfg.Logger.WarnContext(ctx, "search cache unavailable; answer not cached", slog.String("event", "search_cache_unavailable"),
			slog.String("source", source), slog.String("error", err.Error()))
	}
}

// CacheKey is a source's cache key for a query in scope (a tenant's part
// of the cache, or the part every tenant shares): the source, then a hash
// of the scope, the normalised text, recency and result count.
func CacheKey(source, scope string, q Query) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d", scope, NormalizeQuery(q.Text), q.RecencyDays, q.MaxResults))
	return "search:" + source + ":" + hex.EncodeToString(sum[:16])
}

// RunKeyHash is the hash in a search run's key, search:<hash>: the
// normalised query, the sorted sources, recency and result count.
func RunKeyHash(req Request) string {
	sources := append([]string(nil), req.Sources...)
	sort.Strings(sources)
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d", NormalizeQuery(req.Query), strings.Join(sources, ","), req.RecencyDays, req.MaxResults))
	return hex.EncodeToString(sum[:16])
}

// Merge fuses ranked lists from several sources: results are de-duplicated
// by NormalizeURL, scored by reciprocal rank fusion (the sum of
// 1/(60+rank)), and returned best first, at most maxResults. A result keeps
// the title and snippet of the source that ranked it highest.
func Merge(sources []string, lists [][]Result, maxResults int) []Merged {
	type entry struct {
		merged   Merged
		bestRank int
		order    int
	}
	byKey := map[string]*entry{}
	var order int
	for s, list := range lists {
		for rank, r := range list {
			key := NormalizeURL(r.URL)
			score := 1.0 / float64(rrfK+rank+1)
			e, ok := byKey[key]
			if !ok {
				byKey[key] = &entry{merged: Merged{Result: r, Score: score, Sources: []string{sources[s]}}, bestRank: rank, order: order}
				order++
				continue
			}
			e.merged.Score += score
			if !contains(e.merged.Sources, sources[s]) {
				e.merged.Sources = append(e.merged.Sources, sources[s])
			}
			if rank < e.bestRank {
				e.bestRank = rank
				e.merged.Title, e.merged.Snippet = r.Title, r.Snippet
				if r.Published != "" {
					e.merged.Published = r.Published
				}
			}
		}
	}
	entries := make([]*entry, 0, len(byKey))
	for _, e := range byKey {
		sort.Strings(e.merged.Sources)
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].merged.Score != entries[j].merged.Score {
			return entries[i].merged.Score > entries[j].merged.Score
		}
		return entries[i].order < entries[j].order
	})
	out := make([]Merged, 0, min(len(entries), maxResults))
	for _, e := range entries {
		if len(out) == maxResults {
			break
		}
		out = append(out, e.merged)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// trackingParams are query parameters that identify a campaign or a click,
// not a page.
var trackingParams = map[string]bool{
	"gclid": true, "fbclid": true, "msclkid": true, "yclid": true, "dclid": true, "igshid": true,
	"mc_cid": true, "mc_eid": true, "_hsenc": true, "_hsmi": true, "ref_src": true, "spm": true,
}

// NormalizeURL is the key results are de-duplicated by: scheme dropped
// (http and https are one page), host lower-cased without "www." or a
// default port, no fragment, no trailing slash, tracking parameters (utm_*,
// gclid, fbclid, ...) removed and the rest sorted. A string that does not
// parse as an absolute URL is its own key.
func NormalizeURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return strings.TrimSpace(raw)
	}
	host := strings.ToLower(u.Hostname())
	host = strings.TrimPrefix(host, "www.")
	if port := u.Port(); port != "" && port != "80" && port != "443" {
		host += ":" + port
	}
	path := strings.TrimRight(u.EscapedPath(), "/")
	q := u.Query()
	for k := range q {
		if strings.HasPrefix(strings.ToLower(k), "utm_") || trackingParams[strings.ToLower(k)] {
			q.Del(k)
		}
	}
	key := host + path
	if enc := q.Encode(); enc != "" { // Encode sorts by key
		key += "?" + enc
	}
	return key
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
