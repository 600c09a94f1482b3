package builtin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"

	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/storable"
	"github.com/taskrunner/taskrunner/tasktype"
)

// FetchArgs is the fetch task: one URL, stored as an artifact.
type FetchArgs struct {
	tasktype.Idempotency
	URL string `json:"url"`
}

// Kind is the fetch task's type and River job kind.
func (FetchArgs) Kind() string { return "fetch" }

// FetchResult is a fetch task's result.
type FetchResult struct {
	URL         string `json:"url"`
	FinalURL    string `json:"final_url"`
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ArtifactID  string `json:"artifact_id"`
}

// FetchWorker works fetch tasks: it fetches the URL with the SSRF-safe
// fetcher (allowlist re-checked on every redirect, non-public addresses
// refused at dial time) and streams the body into an artifact.
type FetchWorker struct {
	river.WorkerDefaults[FetchArgs]
	fetcher   *fetch.Fetcher
	artifacts *artifact.Service
}

// Work fetches and stores. A refused URL, a 4xx or an oversized body is
// not retried; a network failure, a timeout, a 429 or a 5xx is.
func (w *FetchWorker) Work(ctx context.Context, job *river.Job[FetchArgs]) error {
	if w.fetcher == nil || w.artifacts == nil {
		return tasktype.NotRetried(taskrunner.Errorf(taskrunner.CodeTaskFailed, "fetch is not configured in this worker"))
	}
	resp, err := w.fetcher.Fetch(ctx, job.Args.URL)
	if err != nil {
		return fetchFailure(err)
	}
	defer resp.Body.Close()
	tasktype.RecordMetric(ctx, "http_status", float64(resp.Status))
	if !resp.OK() {
		err := taskrunner.Errorf(taskrunner.CodeFetchHTTPError, "the server answered %d %s", resp.Status, http.StatusText(resp.Status))
		if resp.Status == http.StatusTooManyRequests || resp.Status >= 500 {
			return err
		}
		return tasktype.NotRetried(err)
	}
	contentType := resp.ContentType
	if storable.CheckText(contentType) != "" {
		contentType = "" // the server's header is not text PostgreSQL stores: stored as application/octet-stream
	}
	a, err := w.artifacts.Put(ctx, artifact.New{
		TaskID: job.ID, Type: "fetch", Name: fetchedName(resp.FinalURL), ContentType: contentType,
		Size: resp.ContentLength, Body: &progressReader{ctx: ctx, r: resp.Body, total: max(resp.ContentLength, 0)},
	})
	if err != nil {
		// The failure at the root: the fetcher's (a body cut short or too
		// large, inside the artifact service's refusal), or the artifact
		// service's own.
		cause := rootError(err)
		switch {
		case cause == nil || cause.Code == taskrunner.CodeDependencyUnavailable:
			return fmt.Errorf("store fetched body: %w", err)
		case fetchCodes[cause.Code]:
			return fetchFailure(err)
		}
		return tasktype.NotRetried(&taskrunner.Error{Code: cause.Code, Err: errors.New(cause.Message)})
	}
	tasktype.RecordMetric(ctx, "bytes", float64(a.Size))
	return tasktype.RecordOutput(ctx, FetchResult{
		URL: job.Args.URL, FinalURL: resp.FinalURL, Status: resp.Status, ContentType: a.ContentType,
		Size: a.Size, SHA256: a.SHA256, ArtifactID: a.ID.String(),
	})
}

// progressReader reports the bytes read through it as the task's
// progress, out of total (the Content-Length; 0 when unknown).
type progressReader struct {
	ctx   context.Context //nolint:containedctx // the worker's, for its reports
	r     io.Reader
	n     int64
	total int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += int64(n)
		tasktype.ReportProgress(p.ctx, p.n, p.total, "bytes received")
	}
	return n, err
}

// fetchCodes are the codes of the fetcher's errors.
var fetchCodes = map[taskrunner.Code]bool{
	taskrunner.CodeInvalidURL: true, taskrunner.CodeDomainNotAllowed: true, taskrunner.CodePortNotAllowed: true,
	taskrunner.CodeAddressNotAllowed: true, taskrunner.CodeTooManyRedirects: true,
	taskrunner.CodeArtifactSizeExceeded: true, taskrunner.CodeFetchTimeout: true, taskrunner.CodeFetchFailed: true,
}

// rootError is the innermost *taskrunner.Error in err's chain: the failure
// at the root of it. Nil when there is none.
func rootError(err error) *taskrunner.Error {
	var root *taskrunner.Error
	for e := err; ; {
		var next *taskrunner.Error
		if !errors.As(e, &next) {
			return root
		}
		root = next
		if next.Err == nil {
			return root
		}
		e = next.Err
	}
}

// fetchFailure turns the fetcher's error into the task's: retried when a
// retry may help, discarded (not retried) when it cannot. The fetcher's
// message, which may name the host, goes to the log; clients see the
// code's fixed message.
func fetchFailure(err error) error {
	fe := rootError(err)
	if fe == nil {
		return err
	}
	coded := &taskrunner.Error{Code: fe.Code, Err: errors.New(fe.Message)}
	if errors.Is(err, context.DeadlineExceeded) {
		// The task's own timeout: the run recorder reports it as killed.
		return fmt.Errorf("%s: %w", fe.Message, context.DeadlineExceeded)
	}
	if fetch.Retryable(fe.Code) {
		return coded
	}
	return tasktype.NotRetried(coded)
}

// fetchedName is the artifact name of a fetched URL: its last path
// segment when that is a good file name, else its host.
func fetchedName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "fetched"
	}
	if base := path.Base(u.Path); base != "/" && base != "." && artifact.CheckName(base) == nil {
		return base
	}
	if artifact.CheckName(u.Hostname()) == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "fetched"
}

// DecodeFetch validates fetch params: a URL that FETCH_DOMAIN_ALLOWLIST and
// the port rules allow (checked again on every redirect when fetched).
func DecodeFetch(params json.RawMessage, cfg fetch.Config) (FetchArgs, error) {
	var p struct {
		URL *string `json:"url"`
	}
	if err := tasktype.DecodeParams(params, &p); err != nil {
		return FetchArgs{}, err
	}
	if p.URL == nil || *p.URL == "" {
		return FetchArgs{}, tasktype.ParamError("url", "is required")
	}
	u, err := fetch.CheckURL(*p.URL, cfg)
	if err != nil {
		pe := tasktype.ParamError("url", "is not a URL that may be fetched")
		var fe *taskrunner.Error
		if errors.As(err, &fe) {
			pe.Message = fe.Message
			if fe.Code == taskrunner.CodeDomainNotAllowed {
				pe.Code = fe.Code
			}
		}
		return FetchArgs{}, pe
	}
	return FetchArgs{URL: u.String()}, nil
}

// Fetch is the fetch task type: cfg says what it may reach
// (FETCH_DOMAIN_ALLOWLIST, FETCH_ALLOWED_PORTS, ...) and its body cap.
func Fetch(cfg fetch.Config) tasktype.Type {
	return tasktype.New(tasktype.Doc{
		DefaultMaxRetries: 2,
		Params: []tasktype.Param{
			{Name: "url", Type: "string", Required: true, Description: "An http(s) URL on FETCH_DOMAIN_ALLOWLIST, on port 80, 443 or FETCH_ALLOWED_PORTS."},
		},
		ParamsDoc: "`url` (http or https, required)",
		Summary:   "fetches one page into a `fetch` artifact; result `{\"url\",\"final_url\",\"status\",\"content_type\",\"size\",\"sha256\",\"artifact_id\"}`",
		Result:    "`{\"url\", \"final_url\", \"status\", \"content_type\", \"size\", \"sha256\", \"artifact_id\"}`",
		Example:   `{"url":"https://example.com/"}`,
	}, func(params json.RawMessage) (FetchArgs, error) { return DecodeFetch(params, cfg) },
		func(s tasktype.Services) (river.Worker[FetchArgs], error) {
			fc := cfg
			fc.Logger = cmp.Or(fc.Logger, s.Logger) // fetch_host_refused
			return &FetchWorker{fetcher: fetch.New(fc), artifacts: s.Artifacts}, nil
		})
}
