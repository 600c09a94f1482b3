package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/search"
)

// Bounds on search params.
const (
	maxQueryLength = 1000
	maxRecencyDays = 3650
)

// SearchArgs is the search task: the body of POST /search.
type SearchArgs struct {
	Idempotency
	Query       string   `json:"query"`
	Sources     []string `json:"sources"`
	RecencyDays int      `json:"recency_days"`
	MaxResults  int      `json:"max_results"`
}

// Kind is the search task's type and River job kind.
func (SearchArgs) Kind() string { return "search" }

func (a SearchArgs) request() search.Request {
	return search.Request{Query: a.Query, Sources: a.Sources, RecencyDays: a.RecencyDays, MaxResults: a.MaxResults}
}

// SearchWorker works search tasks through the aggregator.
type SearchWorker struct {
	taskWorker[SearchArgs]
	agg       *search.Aggregator
	artifacts *artifact.Service
}

// Work asks the sources, records per-source metrics on the run and the
// merged answer as the task's result. Every source failing fails the
// attempt: River retries it when a retry may help (rate limit, outage,
// timeout), and not when it cannot (a bad key).
func (w *SearchWorker) Work(ctx context.Context, job *river.Job[SearchArgs]) error {
	if w.agg == nil {
		return NotRetried(taskrunner.Errorf(taskrunner.CodeSearchProviderUnavailable, "search is not configured in this worker"))
	}
	req := job.Args.request()
	req.Tenant = OwnerOf(job.JobRow) // the cache is the owner's own, unless shared
	req.OnAnswer = func(answered, asked int) {
		ReportProgress(ctx, int64(answered), int64(asked), "sources answered")
	}
	resp, err := w.agg.Search(ctx, req)
	if resp != nil {
		recordSearchMetrics(ctx, resp)
	}
	var allFailed *search.AllFailedError
	if errors.As(err, &allFailed) {
		return searchFailure(err, allFailed)
	}
	if err != nil {
		return err
	}
	if w.artifacts != nil {
		// The merged answer is also kept as a JSON artifact of the task. If
		// MinIO is down the attempt fails and River retries it; the cache
		// makes the retry cheap.
		body, err := json.Marshal(resp)
		if err != nil {
			return err
		}
		if _, err := w.artifacts.Put(ctx, artifact.New{
			TaskID: job.ID, Type: "search_result", Name: "search-results.json", ContentType: "application/json",
			Size: int64(len(body)), Body: bytes.NewReader(body),
		}); err != nil {
			return fmt.Errorf("store search result: %w", err)
		}
	}
	return recordOutput(ctx, resp)
}

// searchFailure is the task's error when every source failed (err, the
// aggregator's search_failed): retried when a retry may help (a rate
// limit, an outage, a timeout), not when it cannot (a bad key). Its public
// message names each source and its failure's code; the providers' own
// words, which may name hosts, go to the log.
func searchFailure(err error, e *search.AllFailedError) error {
	if e.Retryable() {
		return err
	}
	return NotRetried(&taskrunner.Error{Code: taskrunner.ErrorCode(err), Message: taskrunner.ErrorMessage(err) + "; not retried", Err: e})
}

func recordSearchMetrics(ctx context.Context, resp *search.Response) {
	var hits, latency float64
	for source, r := range resp.Sources {
		RecordMetric(ctx, source+".latency_ms", r.LatencyMS)
		RecordMetric(ctx, source+".count", float64(r.Count))
		cached := 0.0
		if r.Cached {
			cached, hits = 1, hits+1
		}
		RecordMetric(ctx, source+".cached", cached)
		latency = max(latency, r.LatencyMS)
		if r.Status != "ok" {
			AddNote(ctx, r.Error)
		}
	}
	RecordMetric(ctx, "latency_ms", latency)
	RecordMetric(ctx, "results", float64(len(resp.Results)))
	RecordMetric(ctx, "cache_hits", hits)
	RecordMetric(ctx, "cache_misses", float64(len(resp.Sources))-hits)
}

// DecodeSearch validates search params: a query, sources within the
// allowlist (all allowed sources when none are given), a recency window
// and a result count capped by SEARCH_MAX_RESULTS.
func DecodeSearch(params json.RawMessage, env Env) (SearchArgs, error) {
	var p struct {
		Query       *string  `json:"query"`
		Sources     []string `json:"sources"`
		RecencyDays *int     `json:"recency_days"`
		MaxResults  *int     `json:"max_results"`
	}
	if err := decodeParams(params, &p); err != nil {
		return SearchArgs{}, err
	}
	args := SearchArgs{MaxResults: env.SearchMaxResults}
	switch {
	case p.Query == nil || search.NormalizeQuery(*p.Query) == "":
		return args, paramError("query", "is required")
	case utf8.RuneCountInString(*p.Query) > maxQueryLength || !utf8.ValidString(*p.Query):
		return args, paramError("query", fmt.Sprintf("must be valid text of at most %d characters", maxQueryLength))
	}
	args.Query = strings.TrimSpace(*p.Query)
	if len(p.Sources) == 0 {
		args.Sources = append([]string(nil), env.SearchSources...)
	}
	for _, s := range p.Sources {
		s = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(env.SearchSources, s) {
			return args, paramError("sources", fmt.Sprintf("%q is not an allowed source (SEARCH_SOURCE_ALLOWLIST: %s)", s, strings.Join(env.SearchSources, ", ")))
		}
		if !slices.Contains(args.Sources, s) {
			args.Sources = append(args.Sources, s)
		}
	}
	if len(args.Sources) == 0 {
		return args, paramError("sources", "no source is allowed (SEARCH_SOURCE_ALLOWLIST is empty)")
	}
	if p.RecencyDays != nil {
		if *p.RecencyDays < 0 || *p.RecencyDays > maxRecencyDays {
			return args, paramError("recency_days", fmt.Sprintf("must be between 0 (any time) and %d", maxRecencyDays))
		}
		args.RecencyDays = *p.RecencyDays
	}
	if p.MaxResults != nil {
		if *p.MaxResults < 1 {
			return args, paramError("max_results", "must be at least 1")
		}
		args.MaxResults = min(*p.MaxResults, env.SearchMaxResults) // capped by SEARCH_MAX_RESULTS
	}
	return args, nil
}

func init() {
	register(TaskType{
		Name:              SearchArgs{}.Kind(),
		DefaultMaxRetries: 3,
		Params: []Param{
			{Name: "query", Type: "string", Required: true, MaxLength: maxQueryLength, Description: "Not blank."},
			{Name: "sources", Type: "array", Description: "Within SEARCH_SOURCE_ALLOWLIST; every allowed source when absent."},
			{Name: "recency_days", Type: "integer", Min: bound(0), Max: bound(maxRecencyDays), Description: "Only results of the last this many days; 0 for any time."},
			{Name: "max_results", Type: "integer", Min: bound(1), Description: "Capped by SEARCH_MAX_RESULTS."},
		},
		ParamsDoc: "`query` (required), `sources` (default: every allowed source), `recency_days` (0 = any time), `max_results` (default and cap `SEARCH_MAX_RESULTS`)",
		Doc:       "asks each source in parallel and merges the answers; also `POST /search`",
		Result:    "`{\"results\", \"sources\", ...}`",
		Example:   `{"query":"q"}`,
		addWorker: func(workers *river.Workers, deps Deps) {
			river.AddWorker(workers, &SearchWorker{agg: deps.Search, artifacts: deps.Artifacts})
		},
		Decode: decoder(DecodeSearch),
		RunKey: func(encodedArgs []byte) string {
			var args SearchArgs
			_ = json.Unmarshal(encodedArgs, &args)
			return search.RunKeyHash(args.request())
		},
	})
}
