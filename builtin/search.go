package builtin

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
	"github.com/taskrunner/taskrunner/tasktype"
)

// Bounds on search params.
const (
	maxQueryLength = 1000
	maxRecencyDays = 3650
)

// SearchArgs is the search task: the body of POST /search.
type SearchArgs struct {
	tasktype.Idempotency
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
	river.WorkerDefaults[SearchArgs]
	agg       *search.Aggregator
	artifacts *artifact.Service
}

// Work asks the sources, records per-source metrics on the run and the
// merged answer as the task's result. Every source failing fails the
// attempt: River retries it when a retry may help (rate limit, outage,
// timeout), and not when it cannot (a bad key).
func (w *SearchWorker) Work(ctx context.Context, job *river.Job[SearchArgs]) error {
	if w.agg == nil {
		return tasktype.NotRetried(taskrunner.Errorf(taskrunner.CodeSearchProviderUnavailable, "search is not configured in this worker"))
	}
	req := job.Args.request()
	req.Tenant = tasktype.OwnerOf(job.JobRow) // the cache is the owner's own, unless shared
	req.OnAnswer = func(answered, asked int) {
		tasktype.ReportProgress(ctx, int64(answered), int64(asked), "sources answered")
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
	return tasktype.RecordOutput(ctx, resp)
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
	return tasktype.NotRetried(&taskrunner.Error{Code: taskrunner.ErrorCode(err), Message: taskrunner.ErrorMessage(err) + "; not retried", Err: e})
}

func recordSearchMetrics(ctx context.Context, resp *search.Response) {
	var hits, latency float64
	for source, r := range resp.Sources {
		tasktype.RecordMetric(ctx, source+".latency_ms", r.LatencyMS)
		tasktype.RecordMetric(ctx, source+".count", float64(r.Count))
		cached := 0.0
		if r.Cached {
			cached, hits = 1, hits+1
		}
		tasktype.RecordMetric(ctx, source+".cached", cached)
		latency = max(latency, r.LatencyMS)
		if r.Status != "ok" {
			tasktype.AddNote(ctx, r.Error)
		}
	}
	tasktype.RecordMetric(ctx, "latency_ms", latency)
	tasktype.RecordMetric(ctx, "results", float64(len(resp.Results)))
	tasktype.RecordMetric(ctx, "cache_hits", hits)
	tasktype.RecordMetric(ctx, "cache_misses", float64(len(resp.Sources))-hits)
}

// DecodeSearch validates search params: a query, sources within the
// allowlist (all allowed sources when none are given), a recency window
// and a result count capped by SEARCH_MAX_RESULTS.
func DecodeSearch(params json.RawMessage, env SearchConfig) (SearchArgs, error) {
	var p struct {
		Query       *string  `json:"query"`
		Sources     []string `json:"sources"`
		RecencyDays *int     `json:"recency_days"`
		MaxResults  *int     `json:"max_results"`
	}
	if err := tasktype.DecodeParams(params, &p); err != nil {
		return SearchArgs{}, err
	}
	args := SearchArgs{MaxResults: env.MaxResults}
	switch {
	case p.Query == nil || search.NormalizeQuery(*p.Query) == "":
		return args, tasktype.ParamError("query", "is required")
	case utf8.RuneCountInString(*p.Query) > maxQueryLength || !utf8.ValidString(*p.Query):
		return args, tasktype.ParamError("query", fmt.Sprintf("must be valid text of at most %d characters", maxQueryLength))
	}
	args.Query = strings.TrimSpace(*p.Query)
	if len(p.Sources) == 0 {
		args.Sources = append([]string(nil), env.Sources...)
	}
	for _, s := range p.Sources {
		s = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(env.Sources, s) {
			return args, tasktype.ParamError("sources", fmt.Sprintf("%q is not an allowed source (SEARCH_SOURCE_ALLOWLIST: %s)", s, strings.Join(env.Sources, ", ")))
		}
		if !slices.Contains(args.Sources, s) {
			args.Sources = append(args.Sources, s)
		}
	}
	if len(args.Sources) == 0 {
		return args, tasktype.ParamError("sources", "no source is allowed (SEARCH_SOURCE_ALLOWLIST is empty)")
	}
	if p.RecencyDays != nil {
		if *p.RecencyDays < 0 || *p.RecencyDays > maxRecencyDays {
			return args, tasktype.ParamError("recency_days", fmt.Sprintf("must be between 0 (any time) and %d", maxRecencyDays))
		}
		args.RecencyDays = *p.RecencyDays
	}
	if p.MaxResults != nil {
		if *p.MaxResults < 1 {
			return args, tasktype.ParamError("max_results", "must be at least 1")
		}
		args.MaxResults = min(*p.MaxResults, env.MaxResults) // capped by SEARCH_MAX_RESULTS
	}
	return args, nil
}

// SearchConfig is the search task type's deployment.
type SearchConfig struct {
	// Sources are the sources a task may ask (SEARCH_SOURCE_ALLOWLIST),
	// and every one of them when it names none.
	Sources []string
	// MaxResults is the default and the cap of max_results
	// (SEARCH_MAX_RESULTS).
	MaxResults int
	// NewAggregator builds the aggregator the workers ask; without it a
	// search task fails, not retried.
	NewAggregator func(tasktype.Services) (*search.Aggregator, error)
}

// Search is the search task type.
func Search(cfg SearchConfig) tasktype.Type {
	return tasktype.New(tasktype.Doc{
		DefaultMaxRetries: 3,
		Params: []tasktype.Param{
			{Name: "query", Type: "string", Required: true, MaxLength: maxQueryLength, Description: "Not blank."},
			{Name: "sources", Type: "array", Description: "Within SEARCH_SOURCE_ALLOWLIST; every allowed source when absent."},
			{Name: "recency_days", Type: "integer", Min: tasktype.Bound(0), Max: tasktype.Bound(maxRecencyDays), Description: "Only results of the last this many days; 0 for any time."},
			{Name: "max_results", Type: "integer", Min: tasktype.Bound(1), Description: "Capped by SEARCH_MAX_RESULTS."},
		},
		ParamsDoc: "`query` (required), `sources` (default: every allowed source), `recency_days` (0 = any time), `max_results` (default and cap `SEARCH_MAX_RESULTS`)",
		Summary:   "asks each source in parallel and merges the answers; also `POST /search`",
		Result:    "`{\"results\", \"sources\", ...}`",
		Example:   `{"query":"q"}`,
		RunKey: func(encodedArgs []byte) string {
			var args SearchArgs
			_ = json.Unmarshal(encodedArgs, &args)
			return search.RunKeyHash(args.request())
		},
	}, func(params json.RawMessage) (SearchArgs, error) { return DecodeSearch(params, cfg) },
		func(s tasktype.Services) (river.Worker[SearchArgs], error) {
			w := &SearchWorker{artifacts: s.Artifacts}
			if cfg.NewAggregator != nil {
				agg, err := cfg.NewAggregator(s)
				if err != nil {
					return nil, err
				}
				w.agg = agg
			}
			return w, nil
		})
}
