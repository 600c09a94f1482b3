package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/metrics"
)

func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	c := apiContract(t) // loads and validates with kin-openapi
	require.Equal(t, "3.0.3", c.doc.OpenAPI)

	ids := map[string]string{}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			require.NotEmpty(t, op.OperationID, where)
			require.NotContains(t, ids, op.OperationID, "%s: operationId %s is also %s's", where, op.OperationID, ids[op.OperationID])
			ids[op.OperationID] = where
			var success bool
			for status := range op.Responses.Map() {
				success = success || status[0] == '2' || status[0] == '3'
			}
			require.True(t, success, "%s documents no success", where)
			require.Nil(t, op.Responses.Default(), "%s: a default response would hide undocumented statuses", where)
			if path == "/health" {
				require.NotNil(t, op.Security, "/health needs no key")
				require.Empty(t, *op.Security, "/health needs no key")
				continue
			}
			require.NotNil(t, op.Responses.Status(http.StatusUnauthorized), "%s needs a key, so it can answer 401", where)
			if method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions {
				require.NotNil(t, op.Responses.Status(http.StatusForbidden), "%s changes state, so it refuses cross-origin browser requests with 403", where)
			}
		}
	}

	// Every error code the API's packages define is in the document.
	codes := c.doc.Components.Schemas["ErrorCode"].Value.Enum
	for _, code := range []taskrunner.Code{
		taskrunner.CodeInvalidJSON, taskrunner.CodeBodyTooLarge, taskrunner.CodeUnsupportedMediaType, taskrunner.CodeDependencyUnavailable,
		taskrunner.CodeInternal, taskrunner.CodeMethodNotAllowed, taskrunner.CodeUnauthorized, taskrunner.CodeRateLimitExceeded, taskrunner.CodeTooManyWaiters,
		taskrunner.CodeCrossOriginRequest,
		taskrunner.CodeInvalidParams, taskrunner.CodeUnknownTaskType, taskrunner.CodeNotFound, taskrunner.CodeTaskAlreadyFinished, taskrunner.CodeBatchTooLarge,
		taskrunner.CodeArtifactSizeExceeded, taskrunner.CodeArtifactInvalid, taskrunner.CodeNotFound, taskrunner.CodeDomainNotAllowed,
		taskrunner.CodeTooManyUploads, taskrunner.CodeUploadStalled, taskrunner.CodeTooManyArtifacts,
	} {
		require.Contains(t, codes, string(code), "error code %s is not in the ErrorCode schema", code)
	}

	// A task's detail is the task plus its runs and artifact ids.
	taskSchema, detail := c.doc.Components.Schemas["Task"].Value, c.doc.Components.Schemas["TaskDetail"].Value
	require.ElementsMatch(t, append(slices.Clone(taskSchema.Required), "runs", "artifact_ids", "artifact_count"), detail.Required)
	for name, prop := range taskSchema.Properties {
		require.Contains(t, detail.Properties, name)
		require.Equal(t, prop.Ref, detail.Properties[name].Ref, name)
		require.Equal(t, prop.Value.Type, detail.Properties[name].Value.Type, name)
		require.Equal(t, prop.Value.Nullable, detail.Properties[name].Value.Nullable, name)
	}
	require.Len(t, detail.Properties, len(taskSchema.Properties)+3)
}

// allMethods are the methods a handler mounted with chi's Handle serves.
var allMethods = []string{
	http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
	http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace,
}

var chiParam = regexp.MustCompile(`\{([^}:]+)(:[^}]*)?\}`)

// openAPIPath is a chi route pattern as the document writes it: {id:regex}
// is {id}, and a mount's trailing /* is /{path}.
func openAPIPath(pattern string) string {
	p := chiParam.ReplaceAllString(pattern, "{$1}")
	if prefix, ok := strings.CutSuffix(p, "/*"); ok {
		return prefix + "/{path}"
	}
	return p
}

// TestOpenAPIDocumentMatchesRoutes walks the router with every optional
// route enabled and fails when it serves an operation the document lacks
// or the document has one the router does not serve.
//
// A handler mounted for every method (chi's Handle: /metrics, River UI's
// /riverui and /riverui/*) is one documented GET operation: what it does
// with other methods is its own business (River UI's API under
// /riverui/api/ takes POSTs and DELETEs, documented by River). The mount
// /riverui/* is documented as /riverui/{path}, {path} standing for the
// whole rest of the path; the response check routes every request under
// /riverui/ to it.
func TestOpenAPIDocumentMatchesRoutes(t *testing.T) {
	t.Parallel()
	c := apiContract(t)
	logger, _ := testenv.Logger(t)
	tasks, artifacts := offlineServices(t, logger)
	srv, err := httpapi.New(httpapi.Config{
		Tasks:     tasks,
		Artifacts: artifacts,
		Metrics:   metrics.New(),
		RiverUI:   http.NotFoundHandler(),
		Logger:    logger,
	})
	require.NoError(t, err)

	methods := map[string]map[string]bool{}
	require.NoError(t, chi.Walk(srv.Routes(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if methods[route] == nil {
			methods[route] = map[string]bool{}
		}
		methods[route][method] = true
		return nil
	}))
	served := map[string]bool{}
	for route, ms := range methods {
		path := openAPIPath(route)
		if strings.HasSuffix(route, "/*") && !strings.HasSuffix(path, "/{path}") {
			t.Errorf("route %s: a wildcard only at the end is understood", route)
		}
		mountedForAll := true
		for _, m := range allMethods {
			mountedForAll = mountedForAll && ms[m]
		}
		if mountedForAll {
			served[http.MethodGet+" "+path] = true
			continue
		}
		for m := range ms {
			served[m+" "+path] = true
		}
	}
	documented := map[string]bool{}
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}

	var undocumented, unserved []string
	for op := range served {
		if !documented[op] {
			undocumented = append(undocumented, op)
		}
	}
	for op := range documented {
		if !served[op] {
			unserved = append(unserved, op)
		}
	}
	sort.Strings(undocumented)
	sort.Strings(unserved)
	require.Empty(t, undocumented, "the router serves these, %s does not describe them", openAPIFile)
	require.Empty(t, unserved, "%s describes these, the router does not serve them", openAPIFile)
	// The walk did see the optional routes.
	for _, op := range []string{"GET /metrics", "GET /riverui", "GET /riverui/{path}", "GET /openapi.yaml", "GET /tasks/{id}/events", "GET /task-types", "PUT /task-types/{name}", "DELETE /task-types/{name}"} {
		require.True(t, served[op], "the router does not serve %s", op)
	}
}

// denyAll is an enqueue limiter that has nothing left.
type denyAll struct{}

func (denyAll) Allow(context.Context, string, int, int) (cache.Decision, error) {
	return cache.Decision{Limit: 30, Remaining: 0, RetryAfter: 12 * time.Second, ResetAfter: 40 * time.Second}, nil
}

// The routes that need no database, with keys, metrics, River UI and a
// limiter, each answer as the document says (checked by checked()).
func TestOpenAPIServedAndRoutesWithoutDatabase(t *testing.T) {
	t.Parallel()
	logger, _ := testenv.Logger(t)
	const key = "k-7f3e9a"
	riverUI := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>River</title>")
	})
	limits := config.Limits{TaskMaxRuntime: time.Minute, TaskMaxArtifactMB: 25, TasksPerMinute: 30,
		SearchSourceAllowlist: []string{"brave"}, FetchDomainAllowlist: []string{"*"}, MaxBatchSize: 50, MaxRequestBodyBytes: 1 << 20}
	// Validate touches no database; nothing here gets further.
	tasks, artifacts := offlineServices(t, logger)
	api, err := httpapi.New(httpapi.Config{
		Tasks:     tasks,
		Artifacts: artifacts,
		Checks: []httpapi.Check{
			{Name: "postgres", Check: func(context.Context) error { return nil }},
			{Name: "redis", Check: func(context.Context) error { return errors.New("connection refused") }},
		},
		APIKeys:        []config.APIKey{{Name: "ci", Key: key, Admin: true}},
		Limiter:        denyAll{},
		Metrics:        metrics.New(),
		RiverUI:        riverUI,
		Limits:         limits,
		Logger:         logger,
		RequestTimeout: 10 * time.Second,
	})
	require.NoError(t, err)
	srv := httptest.NewServer(checked(t, api))
	t.Cleanup(srv.Close)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	send := func(method, path, auth, contentType, body string) (*http.Response, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, srv.URL+path, rd)
		require.NoError(t, err)
		switch auth {
		case "bearer":
			req.Header.Set("Authorization", "Bearer "+key)
		case "basic":
			req.SetBasicAuth("me", key)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, out
	}

	doc, err := os.ReadFile(openAPIFile)
	require.NoError(t, err)
	resp, out := send("GET", "/openapi.yaml", "bearer", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/yaml", resp.Header.Get("Content-Type"))
	require.Equal(t, string(doc), string(out), "the served document is the file")

	echo := `{"type":"echo","params":{"msg":"a"}}`
	for _, tc := range []struct {
		method, path, auth, contentType, body string
		status                                int
	}{
		{"GET", "/openapi.yaml", "", "", "", http.StatusUnauthorized},
		{"GET", "/health", "", "", "", http.StatusOK},
		{"GET", "/limits", "", "", "", http.StatusUnauthorized},
		{"GET", "/limits", "bearer", "", "", http.StatusOK},
		{"GET", "/limits", "basic", "", "", http.StatusOK},
		{"GET", "/ready", "bearer", "", "", http.StatusServiceUnavailable},
		{"GET", "/metrics", "bearer", "", "", http.StatusOK},
		{"GET", "/metrics", "", "", "", http.StatusUnauthorized},
		{"GET", "/riverui", "basic", "", "", http.StatusMovedPermanently},
		{"GET", "/riverui/", "", "", "", http.StatusUnauthorized},
		{"GET", "/riverui/", "basic", "", "", http.StatusOK},
		{"GET", "/riverui/jobs/12", "basic", "", "", http.StatusOK},
		{"GET", "/nope", "bearer", "", "", http.StatusNotFound},
		{"GET", "/nope", "", "", "", http.StatusUnauthorized},
		{"DELETE", "/tasks", "bearer", "", "", http.StatusMethodNotAllowed},
		{"POST", "/tasks", "bearer", "application/json", echo, http.StatusTooManyRequests},
		{"POST", "/tasks", "bearer", "application/json", `{"type":"echo",`, http.StatusBadRequest},
		{"POST", "/tasks", "bearer", "text/plain", echo, http.StatusUnsupportedMediaType},
		{"POST", "/tasks/batch", "bearer", "application/json", `{"tasks":[` + echo + `,` + echo + `]}`, http.StatusTooManyRequests},
		{"POST", "/search", "bearer", "application/json", `{"query":"x"}`, http.StatusTooManyRequests},
		{"GET", "/tasks/1?wait=forever", "bearer", "", "", http.StatusBadRequest},
		{"GET", "/tasks/1?wait=1s", "bearer", "", "", http.StatusServiceUnavailable},
		{"GET", "/tasks/1/events", "bearer", "", "", http.StatusServiceUnavailable},
	} {
		resp, out := send(tc.method, tc.path, tc.auth, tc.contentType, tc.body)
		require.Equal(t, tc.status, resp.StatusCode, "%s %s: %s", tc.method, tc.path, out)
	}
}

// The check is not vacuous: what the document does not say fails it.
func TestContractCheckRefusesWhatTheDocumentDoesNotSay(t *testing.T) {
	t.Parallel()
	c := apiContract(t)
	jsonHdr := http.Header{"Content-Type": {"application/json"}}
	errBody := `{"error":{"code":"not_found","message":"no task with id \"9\"","request_id":"r1"}}`
	u := func(s string) *url.URL { v, err := url.Parse(s); require.NoError(t, err); return v }

	ok := []exchange{
		{method: "GET", url: u("/health"), status: 200, respHdr: jsonHdr, body: []byte(`{"status":"ok"}`)},
		{method: "GET", url: u("/tasks/9"), status: 404, respHdr: jsonHdr, body: []byte(errBody)},
		{method: "GET", url: u("/no/such/route"), status: 404, respHdr: jsonHdr, body: []byte(errBody)},
	}
	for _, x := range ok {
		require.NoError(t, c.check(x), "%s", x)
	}
	bad := []exchange{
		{method: "GET", url: u("/health"), status: 200, respHdr: jsonHdr, body: []byte(`{"status":"ok","uptime":3}`)},
		{method: "GET", url: u("/health"), status: 201, respHdr: jsonHdr, body: []byte(`{"status":"ok"}`)},
		{method: "GET", url: u("/health"), status: 200, respHdr: http.Header{"Content-Type": {"text/plain"}}, body: []byte(`ok`)},
		{method: "GET", url: u("/tasks/9"), status: 404, respHdr: jsonHdr, body: []byte(`{"error":{"code":"gone","message":"x","request_id":"r1"}}`)},
		{method: "GET", url: u("/tasks/9"), status: 404, respHdr: jsonHdr, body: []byte(`{"error":{"code":"not_found","message":"x"}}`)},
		{method: "GET", url: u("/no/such/route"), status: 200, respHdr: jsonHdr, body: []byte(`{}`)},
		{method: "GET", url: u("/tasks?limit=2"), status: 200, respHdr: jsonHdr, body: []byte(`{"tasks":[]}`)}, // next_cursor missing
		{method: "POST", url: u("/tasks"), header: http.Header{"Content-Type": {"application/json"}}, reqBody: []byte(`{"type":"echo","params":{"msg":"a"}}`),
			status: 429, respHdr: jsonHdr, body: []byte(`{"error":{"code":"rate_limit_exceeded","message":"x","request_id":"r1"}}`)}, // no Retry-After
		{method: "POST", url: u("/tasks"), header: http.Header{"Content-Type": {"application/json"}}, reqBody: []byte(`{"type":"echo","params":{"msg":"a"},"colour":"red"}`),
			status: 202, respHdr: http.Header{"Content-Type": {"application/json"}, "Location": {"/tasks/1"}}, body: taskJSON}, // accepted an unknown field
	}
	for _, x := range bad {
		if x.header == nil {
			x.header = http.Header{}
		}
		require.Error(t, c.check(x), "%s", x)
	}
	good := exchange{method: "POST", url: u("/tasks"), header: http.Header{"Content-Type": {"application/json"}}, reqBody: []byte(`{"type":"echo","params":{"msg":"a"}}`),
		status: 202, respHdr: http.Header{"Content-Type": {"application/json"}, "Location": {"/tasks/1"}}, body: taskJSON}
	require.NoError(t, c.check(good), "%s", good)
	good.respHdr.Del("Location")
	require.Error(t, c.check(good), "202 without Location")
}

var taskJSON = []byte(`{"id":1,"task_id":1,"type":"echo","status":"available","params":{"msg":"a"},"result":null,"error":null,
"attempt":0,"max_attempts":1,"max_retries":0,"priority":1,"queue":"default","owner":"alice","timeout_seconds":600,"cancel_requested":false,"schedule":null,
"created_at":"2026-01-02T15:04:05.123456Z","scheduled_at":"2026-01-02T15:04:05.123456Z","started_at":null,"finished_at":null,"progress":null,"callback":null}`)

// A download's refusals by http.ServeContent (a range outside the artifact,
// a failed precondition) and its partial answers are as documented.
func TestDownloadStatusesAsDocumented(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	put := b.do(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/ten.txt", id), "0123456789")
	require.Equal(t, http.StatusCreated, put.status, "body: %s", put.raw)
	path := "/artifacts/" + put.artifact(t).ID

	for _, tc := range []struct {
		header []string
		status int
	}{
		{[]string{"Range", "bytes=2-4"}, http.StatusPartialContent},
		{[]string{"Range", "bytes=0-1,5-6"}, http.StatusPartialContent},
		{[]string{"Range", "bytes=100-200"}, http.StatusRequestedRangeNotSatisfiable},
		{[]string{"If-Match", `"0000"`}, http.StatusPreconditionFailed},
	} {
		resp, out := b.raw(t, http.MethodGet, path, "", nil, 0, tc.header...)
		require.Equal(t, tc.status, resp.StatusCode, "%v: %s", tc.header, out)
	}
}
