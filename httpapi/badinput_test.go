package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

// Every kind of bad input gets the one error shape with the right status and
// code, and nothing is enqueued.
func TestBadInputIsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})

	huge := `{"type":"echo","params":{"msg":"` + strings.Repeat("x", 1<<20) + `"}}`
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
		field  string
	}{
		{"malformed json", "POST", "/tasks", `{"type":"echo",`, 400, "invalid_json", ""},
		{"not an object", "POST", "/tasks", `["echo"]`, 400, "invalid_json", ""},
		{"empty body", "POST", "/tasks", ``, 400, "invalid_json", ""},
		{"trailing data", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"}} {}`, 400, "invalid_json", ""},
		{"type of wrong type", "POST", "/tasks", `{"type":5}`, 400, "task_rejected_invalid_params", "type"},
		{"timeout of wrong type", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"},"timeout_seconds":"soon"}`, 400, "task_rejected_invalid_params", "timeout_seconds"},
		{"retries of wrong type", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"},"max_retries":1.5}`, 400, "task_rejected_invalid_params", "max_retries"},
		{"unknown field", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"},"colour":"red"}`, 400, "task_rejected_invalid_params", "colour"},
		{"missing type", "POST", "/tasks", `{"params":{"msg":"a"}}`, 400, "task_rejected_invalid_params", "type"},
		{"unknown type", "POST", "/tasks", `{"type":"launch_rockets","params":{}}`, 400, "unknown_task_type", "type"},
		{"echo without msg", "POST", "/tasks", `{"type":"echo","params":{}}`, 400, "task_rejected_invalid_params", "params.msg"},
		{"echo msg of wrong type", "POST", "/tasks", `{"type":"echo","params":{"msg":7}}`, 400, "task_rejected_invalid_params", "params.msg"},
		{"echo unknown param", "POST", "/tasks", `{"type":"echo","params":{"msg":"a","loud":true}}`, 400, "task_rejected_invalid_params", "params.loud"},
		{"params not an object", "POST", "/tasks", `{"type":"echo","params":"hello"}`, 400, "task_rejected_invalid_params", "params"},
		{"sleep without seconds", "POST", "/tasks", `{"type":"sleep","params":{}}`, 400, "task_rejected_invalid_params", "params.seconds"},
		{"sleep negative seconds", "POST", "/tasks", `{"type":"sleep","params":{"seconds":-1}}`, 400, "task_rejected_invalid_params", "params.seconds"},
		{"sleep seconds as string", "POST", "/tasks", `{"type":"sleep","params":{"seconds":"1"}}`, 400, "task_rejected_invalid_params", "params.seconds"},
		{"timeout over the cap", "POST", "/tasks", `{"type":"sleep","params":{"seconds":1},"timeout_seconds":601}`, 400, "task_rejected_invalid_params", "timeout_seconds"},
		{"zero timeout", "POST", "/tasks", `{"type":"sleep","params":{"seconds":1},"timeout_seconds":0}`, 400, "task_rejected_invalid_params", "timeout_seconds"},
		{"negative timeout", "POST", "/tasks", `{"type":"sleep","params":{"seconds":1},"timeout_seconds":-5}`, 400, "task_rejected_invalid_params", "timeout_seconds"},
		{"negative retries", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"},"max_retries":-1}`, 400, "task_rejected_invalid_params", "max_retries"},
		{"priority out of range", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"},"priority":9}`, 400, "task_rejected_invalid_params", "priority"},
		{"unknown queue", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"},"queue":"nowhere"}`, 400, "task_rejected_invalid_params", "queue"},
		{"run_at not a time", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"},"run_at":"tomorrow"}`, 400, "task_rejected_invalid_params", "run_at"},
		{"body over 1 MiB", "POST", "/tasks", huge, 413, "body_too_large", ""},
		// What PostgreSQL cannot store is refused before anything is written,
		// naming the field, on every JSON route.
		{"nul in a param", "POST", "/tasks", `{"type":"echo","params":{"msg":"a\u0000b"}}`, 400, "task_rejected_invalid_params", "params.msg"},
		{"nul in a param key", "POST", "/tasks", `{"type":"echo","params":{"msg":"a","x\u0000":1}}`, 400, "task_rejected_invalid_params", "params"},
		{"nul in a top-level key", "POST", "/tasks", `{"type":"echo","params":{"msg":"a"},"\u0000":1}`, 400, "task_rejected_invalid_params", "body"},
		{"nul in the type", "POST", "/tasks", `{"type":"echo\u0000","params":{"msg":"a"}}`, 400, "task_rejected_invalid_params", "type"},
		{"lone surrogate", "POST", "/tasks", `{"type":"echo","params":{"msg":"\ud800"}}`, 400, "task_rejected_invalid_params", "params.msg"},
		{"lone low surrogate", "POST", "/tasks", `{"type":"echo","params":{"msg":"x\udfff"}}`, 400, "task_rejected_invalid_params", "params.msg"},
		{"invalid utf-8", "POST", "/tasks", "{\"type\":\"echo\",\"params\":{\"msg\":\"a\xffb\"}}", 400, "task_rejected_invalid_params", "params.msg"},
		{"nul deep in a batch", "POST", "/tasks/batch", `{"tasks":[{"type":"echo","params":{"msg":"a"}},{"type":"echo","params":{"msg":"b"}},{"type":"echo","params":{"msg":"\u0000"}}]}`, 400, "task_rejected_invalid_params", "tasks[2].params.msg"},
		{"nul in a search", "POST", "/search", `{"query":"open\u0000source","sources":["brave"]}`, 400, "task_rejected_invalid_params", "query"},
		{"nul in a search source", "POST", "/search", `{"query":"x","sources":["brave","\u0000"]}`, 400, "task_rejected_invalid_params", "sources[1]"},
		{"nul in an artifact", "POST", "/artifacts", `{"task_id":1,"type":"log\u0000","content_type":"text/plain","data_base64":"SGk="}`, 400, "task_rejected_invalid_params", "type"},
		{"nul in an artifact's content type", "POST", "/artifacts", `{"content_type":"text/pl\u0000ain","task_id":1,"data_base64":"SGk="}`, 400, "task_rejected_invalid_params", "content_type"},
		{"non-numeric id", "GET", "/tasks/abc", "", 404, "not_found", ""},
		{"negative id", "GET", "/tasks/-3", "", 404, "not_found", ""},
		{"unknown id", "GET", "/tasks/999999", "", 404, "not_found", ""},
		{"id past int64", "GET", "/tasks/99999999999999999999", "", 404, "not_found", ""},
		{"cancel non-numeric id", "POST", "/tasks/abc/cancel", "", 404, "not_found", ""},
		{"cancel unknown id", "POST", "/tasks/999999/cancel", "", 404, "not_found", ""},
		{"wrong method", "DELETE", "/tasks", "", 405, "method_not_allowed", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			resp := b.do(t, tc.method, tc.path, body)
			require.Equal(t, tc.status, resp.status, "body: %s", resp.raw)
			require.Equal(t, "application/json", resp.header.Get("Content-Type"))
			require.Equal(t, taskrunner.Code(tc.code), errorCode(t, resp), "body: %s", resp.raw)
			if tc.field != "" {
				require.Equal(t, tc.field, resp.apiError(t).Field, "body: %s", resp.raw)
			}
		})
	}
	require.Zero(t, b.jobCount(t), "a refused request enqueued something")
	require.Zero(t, b.artifactRows(t), "a refused request stored an artifact")
}

func TestWrongContentTypeIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})

	req, err := http.NewRequest(http.MethodPost, b.server.URL+"/tasks", strings.NewReader(`{"type":"echo","params":{"msg":"a"}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	require.Zero(t, b.jobCount(t))
}
