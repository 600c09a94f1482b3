package main

// The test runs this program as a real process: the test binary
// re-executes itself (proctest.StartSelf), and TestMain then calls main
// with the test's arguments and environment.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/proctest"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

func TestMain(m *testing.M) { proctest.MainOrTests(m, main) }

const (
	aliceKey = "alice-key-0123456789abcdef"
	bobKey   = "bob-key-0123456789abcdef01"
	opsKey   = "ops-key-0123456789abcdef01"
)

// The program serves its own task type next to the built-ins, end to end:
// a wordcount over an artifact of the caller's, its params' schema and an
// example that runs in /openapi.yaml, the type in GET /tasks?type=, in
// River UI, in a schedule and in the command line.
func TestEmbeddedTaskTypeEndToEnd(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	bucket := testenv.NewBucket(t, "embed-")
	env := map[string]string{
		"DATABASE_URL": tdb.URL, "REDIS_URL": testenv.RedisURL(), "REDIS_KEY_PREFIX": testenv.RandomName("embed-test:") + ":",
		"HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
		"MINIO_ENDPOINT": bucket.MinIO.Endpoint, "MINIO_ROOT_USER": bucket.MinIO.User, "MINIO_ROOT_PASSWORD": bucket.MinIO.Password,
		"MINIO_BUCKET": bucket.Name, "WORKER_FETCH_POLL_INTERVAL": "200ms", "WORKER_CONCURRENCY": "4", "DB_MAX_CONNS": "8",
		"TASKS_PER_MINUTE": "10000", "API_KEYS": "alice:" + aliceKey + ",bob:" + bobKey + ",ops:" + opsKey + ":admin",
	}
	p := proctest.StartSelf(t, "embed", env, "serve")
	ev := p.WaitEvent("api_listening", 60*time.Second, nil)
	base := "http://" + ev["addr"].(string)

	// Alice stores a text as an artifact of a task of hers, and counts it.
	status, echo := call(t, base, aliceKey, "POST", "/tasks", `{"type":"echo","params":{"msg":"hold"}}`, "")
	require.Equal(t, http.StatusAccepted, status, "%v", echo)
	echoID := int64(echo["id"].(float64))
	status, art := call(t, base, aliceKey, "PUT", fmt.Sprintf("/tasks/%d/artifacts/words.txt", echoID), "one two  three\nfour\tfive\n", "text/plain")
	require.Equal(t, http.StatusCreated, status, "%v", art)
	artifactID := art["id"].(string)

	counted := submit(t, base, aliceKey, `{"artifact_id":"`+artifactID+`"}`)
	done := waitFinished(t, base, aliceKey, counted)
	require.Equal(t, "completed", done["status"], "%v", done)
	require.Equal(t, map[string]any{"words": 5.0, "lines": 2.0, "bytes": 25.0}, done["result"])

	// Bob cannot count Alice's artifact: to his task it does not exist.
	stolen := waitFinished(t, base, bobKey, submit(t, base, bobKey, `{"artifact_id":"`+artifactID+`"}`))
	require.Equal(t, "discarded", stolen["status"], "%v", stolen)
	require.Equal(t, "not_found", stolen["error"].(map[string]any)["code"], "%v", stolen)

	// Params are checked at submit, naming the field.
	status, refused := call(t, base, aliceKey, "POST", "/tasks", `{"type":"wordcount","params":{"artifact_id":"nope"}}`, "")
	require.Equal(t, http.StatusBadRequest, status, "%v", refused)
	require.Contains(t, refused["error"].(map[string]any)["message"], "params.artifact_id")

	// The document describes the type, with an example that runs.
	example := wordcountExample(t, base)
	ran := waitFinished(t, base, aliceKey, submit(t, base, aliceKey, example))
	require.Equal(t, "completed", ran["status"], "%v", ran)
	require.Equal(t, 4.0, ran["result"].(map[string]any)["words"], "%v", ran)

	// A schedule enqueues it as it enqueues any type.
	status, sch := call(t, base, aliceKey, "POST", "/schedules", `{"name":"wc","every":"1s","task":{"type":"wordcount","params":{"text":"tick tock"}}}`, "")
	require.Equal(t, http.StatusCreated, status, "%v", sch)
	require.Eventually(t, func() bool {
		_, page := call(t, base, aliceKey, "GET", "/tasks?type=wordcount&status=completed&limit=100", "", "")
		for _, v := range page["tasks"].([]any) {
			if v.(map[string]any)["schedule"] == "wc" {
				return true
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "the schedule enqueued no wordcount task")
	status, _ = call(t, base, aliceKey, "DELETE", "/schedules/wc", "", "")
	require.Equal(t, http.StatusNoContent, status)

	// GET /tasks?type= lists it; River UI shows the job's kind.
	status, page := call(t, base, opsKey, "GET", "/tasks?type=wordcount&limit=100", "", "")
	require.Equal(t, http.StatusOK, status, "%v", page)
	require.GreaterOrEqual(t, len(page["tasks"].([]any)), 4, "%v", page)
	status, job := call(t, base, opsKey, "GET", fmt.Sprintf("/riverui/api/jobs/%d", counted), "", "")
	require.Equal(t, http.StatusOK, status, "%v", job)
	require.Equal(t, "wordcount", job["kind"], "%v", job)

	// The command line submits it and waits for it.
	cmd := exec.Command(os.Args[0], "submit", "wordcount", "--param", "text=a b c", "--wait")
	cmd.Env = append(proctest.SelfEnv(), "TASKRUNNER_URL="+base, "TASKRUNNER_API_KEY="+aliceKey)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), `"words": 3`, "%s", out)
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// call sends a request as the tenant with key, with body (JSON unless
// contentType says otherwise) when not empty, and decodes the answer.
func call(t *testing.T, base, key, method, path, body, contentType string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, base+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), "%s %s: %s", method, path, raw)
	}
	return resp.StatusCode, out
}

// submit submits a wordcount task with params and returns its id.
func submit(t *testing.T, base, key, params string) int64 {
	t.Helper()
	status, task := call(t, base, key, "POST", "/tasks", `{"type":"wordcount","params":`+params+`}`, "")
	require.Equal(t, http.StatusAccepted, status, "%v", task)
	return int64(task["id"].(float64))
}

// waitFinished polls the task until it is finished and returns it.
func waitFinished(t *testing.T, base, key string, id int64) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, task := call(t, base, key, "GET", fmt.Sprintf("/tasks/%d", id), "", "")
		require.Equal(t, http.StatusOK, status, "%v", task)
		switch task["status"] {
		case "completed", "discarded", "cancelled":
			return task
		}
		require.True(t, time.Now().Before(deadline), "task %d did not finish: %v", id, task)
		time.Sleep(50 * time.Millisecond)
	}
}

// wordcountExample is the example of the wordcount params' schema in the
// server's /openapi.yaml, which must be a valid document naming the type.
func wordcountExample(t *testing.T, base string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), "GET", base+"/openapi.yaml", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+aliceKey)
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context))
	require.Contains(t, doc.Components.Schemas["TaskType"].Value.Enum, "wordcount")
	schema := doc.Components.Schemas["WordcountParams"]
	require.NotNil(t, schema, "no WordcountParams schema")
	require.Contains(t, schema.Value.Properties, "artifact_id")
	require.Contains(t, schema.Value.Properties, "text")
	example, err := json.Marshal(schema.Value.Example)
	require.NoError(t, err)
	return string(example)
}
