package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/search/searchtest"
)

// The curl commands of the README of the Python system taskrunner
// replaces, as written there but for the `docker compose exec -T api`
// before each (they ran inside its API container). <task_id> and
// <artifact_id> are filled in, and http://127.0.0.1:8000 becomes the
// server's address.
const (
	pythonHealth = `curl -s http://127.0.0.1:8000/health`

	pythonCreateEcho = `curl -s -X POST http://127.0.0.1:8000/tasks \
  -H 'Content-Type: application/json' \
  -d '{"type":"echo","params":{"msg":"hello"},"timeout_seconds":300,"max_retries":0}'`

	pythonGetTask = `curl -s http://127.0.0.1:8000/tasks/<task_id>`

	pythonCreateSleep = `curl -s -X POST http://127.0.0.1:8000/tasks \
  -H 'Content-Type: application/json' \
  -d '{"type":"sleep","params":{"seconds":10},"timeout_seconds":300,"max_retries":0}'`

	pythonCancel = `curl -s -X POST http://127.0.0.1:8000/tasks/<task_id>/cancel`

	pythonSearch = `curl -s -X POST http://127.0.0.1:8000/search \
  -H 'Content-Type: application/json' \
  -d '{"query":"open source task runner","sources":["brave"],"recency_days":7}'`

	pythonPoll = `curl -s http://127.0.0.1:8000/tasks/<task_id>`

	pythonCreateArtifact = `curl -s -X POST http://127.0.0.1:8000/artifacts \
  -H 'Content-Type: application/json' \
  -d '{"task_id":"<task_id>","type":"log","content_type":"text/plain","data_base64":"SGVsbG8gd29ybGQ="}'`

	pythonArtifactMeta = `curl -s http://127.0.0.1:8000/artifacts/<artifact_id>/meta`

	pythonDownload = `curl -s http://127.0.0.1:8000/artifacts/<artifact_id>`
)

// TestPythonREADMECurls runs every curl command of that README, as written,
// against a serve process (its search provider a fake Brave), and checks
// each answer.
func TestPythonREADMECurls(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the test needs %s", tool)
	}
	bucket := testenv.NewBucket(t, "pycurl-")
	brave := searchtest.NewBrave(t)
	brave.SetHits(searchtest.Hit{Title: "River", URL: "https://riverqueue.com/"})
	env := with(baseEnv(testenv.NewDB(t).URL),
		"MINIO_ENDPOINT", bucket.Endpoint, "MINIO_ROOT_USER", bucket.User, "MINIO_ROOT_PASSWORD", bucket.Password,
		"MINIO_BUCKET", bucket.Name,
		"BRAVE_API_URL", brave.BraveEndpoint(), "BRAVE_API_KEY", searchtest.BraveKey,
		"TASK_MAX_RUNTIME_SECONDS", "600")
	server, api := startAPIProc(t, "serve", env, "serve")
	server.WaitEvent("workers_started", startTimeout, nil)

	// run runs one command with its placeholders filled in and returns
	// what curl printed.
	run := func(command string, ids ...string) string {
		t.Helper()
		command = strings.ReplaceAll(command, "http://127.0.0.1:8000", api.base)
		for i := 0; i+1 < len(ids); i += 2 {
			command = strings.ReplaceAll(command, ids[i], ids[i+1])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-c", command)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.Output()
		require.NoError(t, err, "%s", command)
		return string(out)
	}
	runJSON := func(command string, ids ...string) map[string]any {
		t.Helper()
		out := run(command, ids...)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &m), "%s answered %q", command, out)
		if e, ok := m["error"].(map[string]any); ok {
			require.NotContains(t, e, "request_id", "%s answered an API error: %s", command, out)
		}
		return m
	}
	idOf := func(m map[string]any) string {
		t.Helper()
		id, ok := m["id"].(float64)
		require.True(t, ok, "no id in %v", m)
		return strconv.FormatInt(int64(id), 10)
	}
	// poll runs a get command until the task's status is one of want.
	poll := func(command, id string, want ...string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			m := runJSON(command, "<task_id>", id)
			for _, w := range want {
				if m["status"] == w {
					return m
				}
			}
			require.True(t, time.Now().Before(deadline), "task %s: status %v, want one of %v", id, m["status"], want)
			time.Sleep(100 * time.Millisecond)
		}
	}

	require.Equal(t, map[string]any{"status": "ok"}, runJSON(pythonHealth))

	echo := runJSON(pythonCreateEcho)
	echoID := idOf(echo)
	require.Equal(t, "echo", echo["type"])
	done := poll(pythonGetTask, echoID, "completed")
	require.Equal(t, map[string]any{"msg": "hello"}, done["result"])

	sleepID := idOf(runJSON(pythonCreateSleep))
	poll(pythonGetTask, sleepID, "running")
	cancelled := runJSON(pythonCancel, "<task_id>", sleepID)
	require.Equal(t, sleepID, strconv.FormatInt(int64(cancelled["id"].(float64)), 10))
	poll(pythonGetTask, sleepID, "cancelled")

	searchID := idOf(runJSON(pythonSearch))
	found := poll(pythonPoll, searchID, "completed")
	results := found["result"].(map[string]any)["results"].([]any)
	require.Len(t, results, 1)
	require.Equal(t, "River", results[0].(map[string]any)["title"])

	art := runJSON(pythonCreateArtifact, "<task_id>", echoID)
	artifactID, _ := art["artifact_id"].(string)
	require.NotEmpty(t, artifactID, "no artifact_id in %v", art)
	require.Equal(t, echoID, strconv.FormatInt(int64(art["task_id"].(float64)), 10))
	meta := runJSON(pythonArtifactMeta, "<artifact_id>", artifactID)
	require.EqualValues(t, 11, meta["size"])
	require.Equal(t, "text/plain", meta["content_type"])
	require.Equal(t, "log", meta["type"])
	require.Equal(t, "Hello world", run(pythonDownload, "<artifact_id>", artifactID))

	server.Signal(syscall.SIGTERM)
	require.Equal(t, 0, server.WaitExit(exitTimeout))
}
