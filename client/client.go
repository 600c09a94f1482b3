// Package client is a small typed client of taskrunner's HTTP API: submit,
// get, wait, cancel, list and search tasks, cancel, retry and delete them
// in bulk, and upload and download artifacts.
//
// Every method takes a context and returns the API's refusals as *APIError,
// which carries the HTTP status and the API's stable error code. The API
// key is sent only in the Authorization header and never appears in an
// error.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/taskrunner/taskrunner"
)

// DefaultRequestTimeout bounds a request that neither waits on a task nor
// streams bytes, when its context has no earlier deadline.
const DefaultRequestTimeout = 30 * time.Second

// maxJSONBody bounds a JSON answer read into memory (a task with a large
// result, a page of artifacts).
const maxJSONBody = 64 << 20

// Client talks to one taskrunner API. It is safe for concurrent use.
type Client struct {
	base   string // scheme://host[:port][/prefix], no trailing slash
	apiKey string
	hc     *http.Client
	// RequestTimeout bounds each plain request (not waits, event streams
	// or artifact bodies); 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// New returns a client of the API at baseURL (http or https, with an
// optional path prefix), sending apiKey as a bearer token when it is not
// empty. httpClient may be nil for a default one; its Timeout should be 0,
// since waits and downloads are bounded by their contexts instead.
func New(baseURL, apiKey string, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		return nil, errors.New("the API URL is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("the API URL %s must start with http:// or https://", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("the API URL %s has no host", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("the API URL %s must not have a query or fragment", u.Redacted())
	}
	if strings.ContainsFunc(apiKey, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return nil, ErrInvalidAPIKey
	}
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	u.User = nil // credentials in the URL are not how this API authenticates
	return &Client{
		base:      strings.TrimRight(u.String(), "/"),
		apiKey:    apiKey,
		hc:        httpClient,
		UserAgent: "taskrunner-client",
	}, nil
}

// ErrInvalidAPIKey is a key that no header can carry. (The key itself is
// never shown.)
var ErrInvalidAPIKey = errors.New("the API key contains spaces or control characters")

// BaseURL is the API's URL as the client uses it.
func (c *Client) BaseURL() string { return c.base }

// APIError is a refusal by the API, or an answer that is not one of its.
type APIError struct {
	StatusCode int    // HTTP status; 0 for an error sent inside an event stream
	Code       string // the API's stable code, e.g. "not_found"
	Message    string
	Field      string // the request field at fault, when there is one
	RequestID  string
	// RetryAfter is the wait the API asked for (429, 503), or 0.
	RetryAfter time.Duration
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

// IsCode reports whether err is an *APIError with the given code.
func IsCode(err error, code string) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Code == code
}

// Task is a task as the API shows it. Raw holds the JSON as received, with
// every field, including ones this client does not know.
type Task struct {
	ID              int64             `json:"id"`
	Type            string            `json:"type"`
	Status          taskrunner.Status `json:"status"`
	Params          json.RawMessage   `json:"params"`
	Result          json.RawMessage   `json:"result"`
	Error           *TaskError        `json:"error"`
	Attempt         int               `json:"attempt"`
	MaxAttempts     int               `json:"max_attempts"`
	MaxRetries      int               `json:"max_retries"`
	Priority        int               `json:"priority"`
	Queue           string            `json:"queue"`
	Owner           string            `json:"owner"` // the tenant that submitted it
	TimeoutSeconds  *float64          `json:"timeout_seconds"`
	CancelRequested bool              `json:"cancel_requested"`
	// Schedule is the name of the schedule that enqueued the task; nil for
	// a task a client submitted.
	Schedule    *string    `json:"schedule"`
	CreatedAt   time.Time  `json:"created_at"`
	ScheduledAt time.Time  `json:"scheduled_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Progress    *Progress  `json:"progress"` // the current attempt's latest; nil when none
	Callback    *Callback  `json:"callback"` // nil when it asked for none
	Runs        []Run      `json:"runs"`
	// ArtifactIDs are the ids of the task's first (oldest) artifacts, at
	// most 100 of its ArtifactCount; TaskArtifacts pages through all.
	ArtifactIDs   []string `json:"artifact_ids"`
	ArtifactCount int      `json:"artifact_count"`

	Raw json.RawMessage `json:"-"`
}

// Callback is a task's callback: where it goes, its delivery state
// (pending, delivered or failed) and the attempts made so far.
type Callback struct {
	URL      string `json:"url"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
}

// Progress is what a task's worker last reported: done out of total (0
// when the total is not known), with what is counted.
type Progress = taskrunner.Progress

// TaskError is why a task failed or ended.
type TaskError struct {
	Code    taskrunner.Code `json:"code"`
	Message string          `json:"message"`
}

// Run is one attempt of a task, as the API shows it.
type Run = taskrunner.Run

// Finished reports whether the task will not change any more.
func (t *Task) Finished() bool { return taskrunner.Finished(t.Status) }

// Artifact is an artifact's metadata. Raw holds the JSON as received.
type Artifact struct {
	ID          string    `json:"id"`
	TaskID      int64     `json:"task_id"`
	Type        string    `json:"type"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	CreatedAt   time.Time `json:"created_at"`
	URL         string    `json:"url"`

	Raw json.RawMessage `json:"-"`
}

// SubmitRequest is a task to submit (POST /tasks).
type SubmitRequest struct {
	Type           string          `json:"type"`
	Params         json.RawMessage `json:"params,omitempty"`
	TimeoutSeconds *float64        `json:"timeout_seconds,omitempty"`
	MaxRetries     *int            `json:"max_retries,omitempty"`
	Priority       *int            `json:"priority,omitempty"`
	Queue          string          `json:"queue,omitempty"`
	RunAt          *time.Time      `json:"run_at,omitempty"`
	// CallbackURL, when set, gets a signed POST of the task when it
	// finishes.
	CallbackURL string `json:"callback_url,omitempty"`
	// IdempotencyKey, when set, makes a repeated submission return the
	// first task instead of a new one.
	IdempotencyKey string `json:"-"`
}

// SearchRequest is a search to enqueue (POST /search).
type SearchRequest struct {
	Query          string   `json:"query"`
	Sources        []string `json:"sources,omitempty"`
	RecencyDays    *int     `json:"recency_days,omitempty"`
	MaxResults     *int     `json:"max_results,omitempty"`
	TimeoutSeconds *float64 `json:"timeout_seconds,omitempty"`
	MaxRetries     *int     `json:"max_retries,omitempty"`
	CallbackURL    string   `json:"callback_url,omitempty"`
	IdempotencyKey string   `json:"-"`
}

// Submit enqueues a task and returns it as accepted.
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (*Task, error) {
	var h http.Header
	if req.IdempotencyKey != "" {
		h = http.Header{"Idempotency-Key": {req.IdempotencyKey}}
	}
	return c.postTask(ctx, "/tasks", req, h)
}

// Search enqueues a search task and returns it; its result is the merged
// answer once it completes.
func (c *Client) Search(ctx context.Context, req SearchRequest) (*Task, error) {
	var h http.Header
	if req.IdempotencyKey != "" {
		h = http.Header{"Idempotency-Key": {req.IdempotencyKey}}
	}
	return c.postTask(ctx, "/search", req, h)
}

func (c *Client) postTask(ctx context.Context, path string, body any, h http.Header) (*Task, error) {
	buf, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var t Task
	if err := c.doJSON(ctx, http.MethodPost, path, bytes.NewReader(buf), h, &t, &t.Raw); err != nil {
		return nil, err
	}
	return &t, nil
}

// Get returns a task with its result, error, runs and artifact ids.
func (c *Client) Get(ctx context.Context, id int64) (*Task, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	return c.getTask(ctx, id, 0)
}

// getTask is GET /tasks/{id}, holding the request up to wait (a long poll)
// when wait > 0.
func (c *Client) getTask(ctx context.Context, id int64, wait time.Duration) (*Task, error) {
	path := taskPath(id)
	if wait > 0 {
		path += "?wait=" + url.QueryEscape(wait.String())
	}
	var t Task
	if err := c.doJSON(ctx, http.MethodGet, path, nil, nil, &t, &t.Raw); err != nil {
		return nil, err
	}
	return &t, nil
}

// Cancel cancels a queued or running task and returns it; a running task
// may still show running until its worker stops it. Cancelling a finished
// task is an *APIError with code "task_already_finished".
func (c *Client) Cancel(ctx context.Context, id int64) (*Task, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var t Task
	if err := c.doJSON(ctx, http.MethodPost, taskPath(id)+"/cancel", nil, nil, &t, &t.Raw); err != nil {
		return nil, err
	}
	return &t, nil
}

// Page sizes of GET /tasks: the server's default and its largest.
const (
	DefaultListLimit = 50
	MaxListPage      = 500
)

// TaskPage is a page of GET /tasks, newest first.
type TaskPage struct {
	Tasks []Task
	// NextCursor continues the list; "" on the last page.
	NextCursor string
}

// List returns a page of at most limit tasks (the server's default when
// 0) that f matches, after cursor ("" for the first page).
func (c *Client) List(ctx context.Context, f taskrunner.Filter, cursor string, limit int) (*TaskPage, error) {
	q := f.Values()
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/tasks"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var body struct {
		Tasks      []json.RawMessage `json:"tasks"`
		NextCursor *string           `json:"next_cursor"`
	}
	if err := c.doJSON(ctx, http.MethodGet, path, nil, nil, &body, nil); err != nil {
		return nil, err
	}
	page := &TaskPage{Tasks: make([]Task, len(body.Tasks))}
	for i, raw := range body.Tasks {
		if err := json.Unmarshal(raw, &page.Tasks[i]); err != nil {
			return nil, fmt.Errorf("GET /tasks: task %d of the page: %w", i, err)
		}
		page.Tasks[i].Raw = raw
	}
	if body.NextCursor != nil {
		page.NextCursor = *body.NextCursor
	}
	return page, nil
}

// The bulk actions of Bulk.
const (
	BulkCancel = "cancel" // queued and running tasks
	BulkRetry  = "retry"  // discarded, cancelled and retryable tasks
	BulkDelete = "delete" // finished tasks, with their artifacts
)

// BulkResult is what a bulk action matched and, unless it was a dry run,
// changed.
type BulkResult struct {
	Matched  int64  `json:"matched"`
	Affected *int64 `json:"affected"` // nil for a dry run
}

// Bulk applies action (BulkCancel, BulkRetry or BulkDelete) to the tasks
// f matches (POST /tasks/{action}); a dry run only counts them. A bulk
// action over many tasks takes a while: it is bounded by ctx alone.
func (c *Client) Bulk(ctx context.Context, action string, f taskrunner.Filter, dryRun bool) (*BulkResult, error) {
	switch action {
	case BulkCancel, BulkRetry, BulkDelete:
	default:
		return nil, fmt.Errorf("unknown bulk action %q", action)
	}
	buf, err := json.Marshal(struct {
		Filter taskrunner.Filter `json:"filter"`
		DryRun bool              `json:"dry_run"`
	}{f, dryRun})
	if err != nil {
		return nil, err
	}
	var res BulkResult
	if err := c.doJSON(ctx, http.MethodPost, "/tasks/"+action, bytes.NewReader(buf), nil, &res, nil); err != nil {
		return nil, err
	}
	return &res, nil
}

// PutArtifactOptions describe an upload.
type PutArtifactOptions struct {
	Type        string // the artifact's type (default: the server's)
	ContentType string // default: the server's (application/octet-stream)
}

// PutArtifact streams size bytes from body into an artifact of task taskID
// named name (PUT /tasks/{id}/artifacts/{name}). The request carries
// Content-Length, so the server can refuse an oversized upload before any
// byte is sent; body is read as it is sent, never held whole.
func (c *Client) PutArtifact(ctx context.Context, taskID int64, name string, body io.Reader, size int64, opts PutArtifactOptions) (*Artifact, error) {
	if size < 0 {
		return nil, errors.New("the artifact's size must be known")
	}
	path := taskPath(taskID) + "/artifacts/" + url.PathEscape(name)
	if opts.Type != "" {
		path += "?type=" + url.QueryEscape(opts.Type)
	}
	req, err := c.newRequest(ctx, http.MethodPut, path, io.NopCloser(body))
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	if opts.ContentType != "" {
		req.Header.Set("Content-Type", opts.ContentType)
	}
	var a Artifact
	if err := c.sendJSON(req, &a, &a.Raw); err != nil {
		return nil, err
	}
	return &a, nil
}

// Limits returns GET /limits: the server's limits and, under "tenant", the
// caller's own.
func (c *Client) Limits(ctx context.Context) (json.RawMessage, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var obj map[string]any
	var raw json.RawMessage
	if err := c.doJSON(ctx, http.MethodGet, "/limits", nil, nil, &obj, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// Page sizes of GET /tasks/{id}/artifacts: the server's default and its
// largest.
const (
	DefaultArtifactPage = 100
	MaxArtifactPage     = 1000
)

// ArtifactPage is a page of a task's artifacts, oldest first.
type ArtifactPage struct {
	Artifacts []Artifact
	// NextCursor continues the list; "" on the last page.
	NextCursor string
}

// TaskArtifacts returns a page of at most limit (the server's default
// when 0) of task taskID's artifacts, oldest first, after cursor ("" for
// the first page).
func (c *Client) TaskArtifacts(ctx context.Context, taskID int64, cursor string, limit int) (*ArtifactPage, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := taskPath(taskID) + "/artifacts"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var body struct {
		Artifacts  []json.RawMessage `json:"artifacts"`
		NextCursor *string           `json:"next_cursor"`
	}
	if err := c.doJSON(ctx, http.MethodGet, path, nil, nil, &body, nil); err != nil {
		return nil, err
	}
	page := &ArtifactPage{Artifacts: make([]Artifact, len(body.Artifacts))}
	for i, raw := range body.Artifacts {
		if err := json.Unmarshal(raw, &page.Artifacts[i]); err != nil {
			return nil, fmt.Errorf("GET %s: artifact %d of the page: %w", path, i, err)
		}
		page.Artifacts[i].Raw = raw
	}
	if body.NextCursor != nil {
		page.NextCursor = *body.NextCursor
	}
	return page, nil
}

// ArtifactMeta returns an artifact's metadata.
func (c *Client) ArtifactMeta(ctx context.Context, id string) (*Artifact, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var a Artifact
	if err := c.doJSON(ctx, http.MethodGet, "/artifacts/"+url.PathEscape(id)+"/meta", nil, nil, &a, &a.Raw); err != nil {
		return nil, err
	}
	return &a, nil
}

// ErrChecksumMismatch is a download whose bytes do not hash to the
// artifact's sha256.
var ErrChecksumMismatch = errors.New("the downloaded bytes do not match the artifact's sha256")

// GetArtifact streams an artifact's bytes to w and returns how many were
// written. When the server sends the artifact's sha256 as its ETag the
// bytes are checked against it, and a mismatch is ErrChecksumMismatch
// (after the bytes were written: write to a temporary file to discard
// them).
func (c *Client) GetArtifact(ctx context.Context, id string, w io.Writer) (int64, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/artifacts/"+url.PathEscape(id), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, errorOf(resp)
	}
	return copyChecked(w, resp.Body, resp.ContentLength, strings.Trim(resp.Header.Get("ETag"), `"`))
}

// plainTimeout bounds a request that neither waits nor streams.
func (c *Client) plainTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.RequestTimeout
	if d <= 0 {
		d = DefaultRequestTimeout
	}
	return context.WithTimeout(ctx, d)
}

func taskPath(id int64) string { return "/tasks/" + strconv.FormatInt(id, 10) }

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	return req, nil
}

// doJSON sends a request (with a JSON body when body is not nil) and
// decodes a 2xx JSON answer into out, keeping its bytes in raw; with out
// nil, a 2xx answer's body is not read.
func (c *Client) doJSON(ctx context.Context, method, path string, body io.Reader, h http.Header, out any, raw *json.RawMessage) error {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	return c.sendJSON(req, out, raw)
}

func (c *Client) sendJSON(req *http.Request, out any, raw *json.RawMessage) error {
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errorOf(resp)
	}
	if out == nil {
		return nil // an answer without a body (204)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody+1))
	if err != nil {
		return fmt.Errorf("reading the answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	if len(data) > maxJSONBody {
		return fmt.Errorf("the answer to %s %s is over %d MiB", req.Method, req.URL.Path, maxJSONBody>>20)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the answer to %s %s is not the expected JSON: %w", req.Method, req.URL.Path, err)
	}
	if raw != nil {
		*raw = data
	}
	return nil
}

// errorOf reads a non-2xx answer as the API's error shape, or describes it
// when it is not one (a proxy's page, say).
func errorOf(resp *http.Response) *APIError {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	var body struct {
		Error *struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			Field     string `json:"field"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error != nil && body.Error.Code != "" {
		e.Code, e.Message, e.Field, e.RequestID = body.Error.Code, body.Error.Message, body.Error.Field, body.Error.RequestID
		return e
	}
	e.Code = "http_" + strconv.Itoa(resp.StatusCode)
	e.Message = resp.Status + " that is not a taskrunner API error"
	if snippet := strings.TrimSpace(strings.ToValidUTF8(string(data[:min(len(data), 200)]), "")); snippet != "" {
		e.Message += ": " + strings.Join(strings.Fields(snippet), " ")
	}
	return e
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(time.Until(at), 0)
	}
	return 0
}
