package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/client"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/task"
)

const (
	typesAdminKey  = "types-admin-key"
	typesClientKey = "types-client-key"
)

var typesKeys = []config.APIKey{{Name: "ops", Key: typesAdminKey, Admin: true}, {Name: "alice", Key: typesClientKey}}

// resizeSchema is the params schema of the external type these tests
// define.
const resizeSchema = `{"type":"object","required":["width"],"additionalProperties":false,
	"properties":{"width":{"type":"integer","minimum":1},
	"opts":{"type":"object","properties":{"fmt":{"type":"string","enum":["png","jpg"]}}}}}`

func (r response) taskType(t *testing.T) client.TaskType {
	t.Helper()
	var v client.TaskType
	require.NoError(t, json.Unmarshal(r.raw, &v), "body: %s", r.raw)
	return v
}

func putResize(t *testing.T, b *bundle, key string) response {
	t.Helper()
	return b.doAs(t, key, http.MethodPut, "/task-types/resize",
		`{"mode":"pull","params_schema":`+resizeSchema+`,"max_retries":2,"timeout_seconds":30}`)
}

// Task types defined at run time: put, get, list and delete by an admin,
// read by any key; their params checked against their schema at enqueue,
// naming the field; their tasks listed by type and held in the external
// queue; a delete refused while tasks of the type wait, unless forced.
func TestTaskTypesDefinedAtRunTime(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: typesKeys})

	resp := putResize(t, b, typesClientKey)
	require.Equal(t, http.StatusForbidden, resp.status, "a client key may not define types: %s", resp.raw)
	require.Equal(t, taskrunner.CodeForbidden, errorCode(t, resp))

	resp = putResize(t, b, typesAdminKey)
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	tt := resp.taskType(t)
	require.Equal(t, "resize", tt.Name)
	require.False(t, tt.Builtin)
	require.Equal(t, "pull", *tt.Mode)
	require.Equal(t, 2, *tt.MaxRetries)
	require.InDelta(t, 30, *tt.TimeoutSeconds, 0)
	require.JSONEq(t, resizeSchema, string(tt.ParamsSchema))
	require.Nil(t, tt.PushURL)

	t.Run("ReadByAnyKey", func(t *testing.T) {
		resp := b.doAs(t, typesClientKey, http.MethodGet, "/task-types", nil)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
		var body struct {
			TaskTypes []client.TaskType `json:"task_types"`
		}
		require.NoError(t, json.Unmarshal(resp.raw, &body))
		byName := map[string]client.TaskType{}
		for _, tt := range body.TaskTypes {
			byName[tt.Name] = tt
		}
		for _, name := range builtin.Registry(builtin.Config{}).Names() {
			require.True(t, byName[name].Builtin, name)
			require.Nil(t, byName[name].Mode, name)
		}
		require.JSONEq(t, `{"type":"object","additionalProperties":false,"required":["msg"],
			"properties":{"msg":{"type":"string","description":"The result is `+"`{\\\"msg\\\": msg}`"+`."}}}`, string(byName["echo"].ParamsSchema))
		require.False(t, byName["resize"].Builtin)

		resp = b.doAs(t, typesClientKey, http.MethodGet, "/task-types/resize", nil)
		require.Equal(t, http.StatusOK, resp.status)
		require.JSONEq(t, resizeSchema, string(resp.taskType(t).ParamsSchema))
		resp = b.doAs(t, typesClientKey, http.MethodGet, "/task-types/sleep", nil)
		require.Equal(t, http.StatusOK, resp.status)
		require.True(t, resp.taskType(t).Builtin)
		resp = b.doAs(t, typesClientKey, http.MethodGet, "/task-types/nope", nil)
		require.Equal(t, http.StatusNotFound, resp.status)
	})

	t.Run("PutRefusals", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, body string
			status           int
			code             taskrunner.Code
			field            string
		}{
			{"SchemaNotASchema", "/task-types/bad", `{"mode":"pull","params_schema":{"type":12}}`, 400, taskrunner.CodeInvalidParams, "params_schema"},
			{"SchemaNotAnObject", "/task-types/bad", `{"mode":"pull","params_schema":[1]}`, 400, taskrunner.CodeInvalidParams, "params_schema"},
			{"SchemaMissing", "/task-types/bad", `{"mode":"pull"}`, 400, taskrunner.CodeInvalidParams, "params_schema"},
			{"SchemaRefToAFile", "/task-types/bad", `{"mode":"pull","params_schema":{"$ref":"file:///etc/passwd"}}`, 400, taskrunner.CodeInvalidParams, "params_schema"},
			{"SchemaRefToTheNetwork", "/task-types/bad", `{"mode":"pull","params_schema":{"$ref":"http://127.0.0.1:1/s.json"}}`, 400, taskrunner.CodeInvalidParams, "params_schema"},
			{"SchemaTooLarge", "/task-types/bad", `{"mode":"pull","params_schema":{"description":"` + strings.Repeat("x", 70<<10) + `"}}`, 400, taskrunner.CodeInvalidParams, "params_schema"},
			{"UnknownField", "/task-types/bad", `{"mode":"pull","params_schema":{},"queue":"x"}`, 400, taskrunner.CodeInvalidParams, "queue"},
			{"BadMode", "/task-types/bad", `{"mode":"poll","params_schema":{}}`, 400, taskrunner.CodeInvalidParams, "mode"},
			{"PushWithoutURL", "/task-types/bad", `{"mode":"push","params_schema":{}}`, 400, taskrunner.CodeInvalidParams, "push_url"},
			{"PushToNotAURL", "/task-types/bad", `{"mode":"push","params_schema":{},"push_url":"ftp://x"}`, 400, taskrunner.CodeInvalidParams, "push_url"},
			{"PullWithURL", "/task-types/bad", `{"mode":"pull","params_schema":{},"push_url":"https://example.com/"}`, 400, taskrunner.CodeInvalidParams, "push_url"},
			{"TimeoutOverTheCap", "/task-types/bad", `{"mode":"pull","params_schema":{},"timeout_seconds":1e9}`, 400, taskrunner.CodeInvalidParams, "timeout_seconds"},
			{"NegativeRetries", "/task-types/bad", `{"mode":"pull","params_schema":{},"max_retries":-1}`, 400, taskrunner.CodeInvalidParams, "max_retries"},
			{"NameUppercase", "/task-types/Bad", `{"mode":"pull","params_schema":{}}`, 400, taskrunner.CodeInvalidParams, "name"},
			{"NameReservedPrefix", "/task-types/taskrunner_x", `{"mode":"pull","params_schema":{}}`, 400, taskrunner.CodeInvalidParams, "name"},
			{"NameTooLong", "/task-types/" + strings.Repeat("a", 64), `{"mode":"pull","params_schema":{}}`, 400, taskrunner.CodeInvalidParams, "name"},
			{"BuiltinName", "/task-types/echo", `{"mode":"pull","params_schema":{}}`, 409, taskrunner.CodeTaskTypeReserved, "name"},
			{"NotJSON", "/task-types/bad", `{"mode":`, 400, taskrunner.CodeInvalidJSON, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp := b.doAs(t, typesAdminKey, http.MethodPut, tc.path, tc.body)
				require.Equal(t, tc.status, resp.status, "body: %s", resp.raw)
				e := resp.apiError(t)
				require.Equal(t, tc.code, e.Code, "body: %s", resp.raw)
				require.Equal(t, tc.field, e.Field, "body: %s", resp.raw)
			})
		}
		resp := b.doAs(t, typesAdminKey, http.MethodGet, "/task-types/bad", nil)
		require.Equal(t, http.StatusNotFound, resp.status, "nothing refused was stored")
	})

	t.Run("ParamsCheckedAtEnqueueNamingTheField", func(t *testing.T) {
		for _, tc := range []struct{ params, field string }{
			{`{}`, "params.width"},
			{`{"width":0}`, "params.width"},
			{`{"width":"wide"}`, "params.width"},
			{`{"width":1,"opts":{"fmt":"gif"}}`, "params.opts.fmt"},
			{`{"width":1,"height":2}`, "params"},
			{`[1]`, "params"},
			{`{"width":1,"idempotency_key":"k"}`, "params.idempotency_key"},
		} {
			resp := b.doAs(t, typesClientKey, http.MethodPost, "/tasks", `{"type":"resize","params":`+tc.params+`}`)
			require.Equal(t, http.StatusBadRequest, resp.status, "%s: %s", tc.params, resp.raw)
			e := resp.apiError(t)
			require.Equal(t, taskrunner.CodeInvalidParams, e.Code, "%s: %s", tc.params, resp.raw)
			require.Equal(t, tc.field, e.Field, "%s: %s", tc.params, resp.raw)
			require.True(t, strings.HasPrefix(e.Message, tc.field+": "), "%s: %s", tc.params, resp.raw)
		}
		resp := b.doAs(t, typesClientKey, http.MethodPost, "/tasks", `{"type":"resize","params":{"width":1},"queue":"default"}`)
		require.Equal(t, http.StatusBadRequest, resp.status, "body: %s", resp.raw)
		require.Equal(t, "queue", resp.apiError(t).Field)
		resp = b.doAs(t, typesClientKey, http.MethodPost, "/tasks", `{"type":"resise","params":{}}`)
		require.Equal(t, http.StatusBadRequest, resp.status)
		require.Equal(t, taskrunner.CodeUnknownTaskType, resp.apiError(t).Code)
		require.Contains(t, resp.apiError(t).Message, "resize", "the known types, external ones among them")
	})

	var queued int64
	t.Run("SubmittedListedAndIdempotent", func(t *testing.T) {
		resp := b.doAs(t, typesClientKey, http.MethodPost, "/tasks", `{"type":"resize","params":{"width":640,"opts":{"fmt":"png"}}}`,
			"Idempotency-Key", "resize-1")
		require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
		v := resp.task(t)
		queued = v.ID
		require.Equal(t, taskrunner.StatusAvailable, v.Status)
		require.Equal(t, "external", v.Queue)
		require.Equal(t, 3, v.MaxAttempts, "the type's max_retries")
		require.NotNil(t, v.TimeoutSeconds)
		require.InDelta(t, 30, *v.TimeoutSeconds, 0, "the type's timeout_seconds")
		require.JSONEq(t, `{"width":640,"opts":{"fmt":"png"}}`, string(v.Params), "params as sent, without the key")

		again := b.doAs(t, typesClientKey, http.MethodPost, "/tasks", `{"type":"resize","params":{"width":1}}`, "Idempotency-Key", "resize-1")
		require.Equal(t, http.StatusOK, again.status, "a repeated key: body: %s", again.raw)
		require.Equal(t, queued, again.task(t).ID)

		resp = b.doAs(t, typesClientKey, http.MethodGet, "/tasks?type=resize", nil)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
		var page listBody
		require.NoError(t, json.Unmarshal(resp.raw, &page))
		require.Len(t, page.Tasks, 1)
		require.Equal(t, queued, page.Tasks[0].ID)
		require.Equal(t, taskrunner.StatusAvailable, page.Tasks[0].Status)
	})

	t.Run("ServedOpenAPIDocumentShowsIt", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, b.server.URL+"/openapi.yaml", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+typesClientKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		doc, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, string(doc), `enum: [echo, fetch, search, sleep, "resize"]`)
		require.Contains(t, string(doc), `- $ref: "#/components/schemas/ResizeParams"`)
		require.Contains(t, string(doc), `    ResizeParams: {"type":"object","required":["width"]`)
		loader := openapi3.NewLoader()
		parsed, err := loader.LoadFromData(doc)
		require.NoError(t, err)
		require.NoError(t, parsed.Validate(loader.Context), "the served document is valid OpenAPI")
		require.Contains(t, parsed.Components.Schemas["TaskType"].Value.Enum, "resize")
	})

	t.Run("DeleteRefusedWhileQueuedUnlessForced", func(t *testing.T) {
		resp := b.doAs(t, typesClientKey, http.MethodDelete, "/task-types/resize", nil)
		require.Equal(t, http.StatusForbidden, resp.status)
		resp = b.doAs(t, typesAdminKey, http.MethodDelete, "/task-types/resize", nil)
		require.Equal(t, http.StatusConflict, resp.status, "body: %s", resp.raw)
		require.Equal(t, taskrunner.CodeTaskTypeInUse, errorCode(t, resp))
		resp = b.doAs(t, typesAdminKey, http.MethodDelete, "/task-types/resize?force=maybe", nil)
		require.Equal(t, http.StatusBadRequest, resp.status)
		resp = b.doAs(t, typesAdminKey, http.MethodDelete, "/task-types/echo", nil)
		require.Equal(t, http.StatusConflict, resp.status)
		require.Equal(t, taskrunner.CodeTaskTypeReserved, errorCode(t, resp))

		resp = b.doAs(t, typesAdminKey, http.MethodDelete, "/task-types/resize?force=true", nil)
		require.Equal(t, http.StatusNoContent, resp.status, "body: %s", resp.raw)
		resp = b.doAs(t, typesAdminKey, http.MethodGet, "/task-types/resize", nil)
		require.Equal(t, http.StatusNotFound, resp.status)
		resp = b.doAs(t, typesAdminKey, http.MethodDelete, "/task-types/resize", nil)
		require.Equal(t, http.StatusNotFound, resp.status)
		resp = b.doAs(t, typesClientKey, http.MethodPost, "/tasks", `{"type":"resize","params":{"width":1}}`)
		require.Equal(t, http.StatusBadRequest, resp.status, "this process sees its own delete at once")
		require.Equal(t, taskrunner.CodeUnknownTaskType, errorCode(t, resp))
		// The forced delete cancelled the type's waiting task, which no
		// worker could ever claim now: none is left waiting for good.
		var state string
		var finalized bool
		require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT state, finalized_at IS NOT NULL FROM river_job WHERE id = $1", queued).Scan(&state, &finalized))
		require.Equal(t, "cancelled", state)
		require.True(t, finalized)
		resp = b.doAs(t, typesAdminKey, http.MethodGet, "/tasks/"+strconv.FormatInt(queued, 10), nil)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
		require.Equal(t, taskrunner.StatusCancelled, resp.task(t).Status)
	})
}

// No worker of the server's ever fetches a task of a type defined at run
// time: a working client on the default queue (and, with fair share, on
// every tenant's) runs echo tasks while the external task stays available,
// never attempted.
func TestExternalTasksAreNeverFetchedInProcess(t *testing.T) {
	t.Parallel()
	for _, fairShare := range []bool{false, true} {
		t.Run("FairShare="+strconv.FormatBool(fairShare), func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{work: true, fairShare: fairShare, apiKeys: typesKeys})
			resp := putResize(t, b, typesAdminKey)
			require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
			resp = b.doAs(t, typesClientKey, http.MethodPost, "/tasks", `{"type":"resize","params":{"width":1}}`)
			require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
			external := resp.task(t).ID

			// Long enough for several fetch polls (200 ms here) and for echo
			// tasks enqueued after it to run.
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				resp := b.doAs(t, typesClientKey, http.MethodPost, "/tasks", `{"type":"echo","params":{"msg":"x"}}`)
				require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
				echo := resp.task(t).ID
				resp = b.doAs(t, typesClientKey, http.MethodGet, "/tasks/"+strconv.FormatInt(echo, 10)+"?wait=5s", nil)
				require.Equal(t, taskrunner.StatusCompleted, resp.task(t).Status, "the workers do run echo")
				time.Sleep(200 * time.Millisecond)
			}
			var state string
			var attempt int
			require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT state, attempt FROM river_job WHERE id = $1", external).Scan(&state, &attempt))
			require.Equal(t, "available", state)
			require.Zero(t, attempt, "no worker of the server's attempted it")
		})
	}
}

// Every process sees a put or a delete of another within the catalog's
// TTL: a second catalog on the same database, as a second API process
// has, first answers from what it read, then from the new types.
func TestTaskTypesSeenByAnotherProcessWithinTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: typesKeys})
	other, err := task.NewCatalog(task.CatalogConfig{Pool: b.db.Pool, Builtins: testTypes(nil, nil)})
	require.NoError(t, err)
	_, ok, err := other.Lookup("resize")
	require.NoError(t, err)
	require.False(t, ok)

	resp := putResize(t, b, typesAdminKey)
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	put := time.Now()
	require.Eventually(t, func() bool {
		_, ok, err := other.Lookup("resize")
		require.NoError(t, err)
		return ok
	}, task.DefaultCatalogTTL+time.Second, 50*time.Millisecond, "the other process sees the put")
	require.Less(t, time.Since(put), task.DefaultCatalogTTL+time.Second)

	resp = b.doAs(t, typesAdminKey, http.MethodDelete, "/task-types/resize", nil)
	require.Equal(t, http.StatusNoContent, resp.status, "body: %s", resp.raw)
	require.Eventually(t, func() bool {
		_, ok, err := other.Lookup("resize")
		require.NoError(t, err)
		return !ok
	}, task.DefaultCatalogTTL+time.Second, 50*time.Millisecond, "the other process sees the delete")
}
