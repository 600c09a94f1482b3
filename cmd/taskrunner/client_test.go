package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/callback"
	"github.com/taskrunner/taskrunner/client"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/search/searchtest"
)

// clientOut is what one in-process client command produced.
type clientOut struct {
	stdout, stderr string
	err            error
	code           int
}

// all is everything the command showed: its output and its error as main
// prints it.
func (o clientOut) all() string {
	s := o.stdout + o.stderr
	if o.err != nil {
		s += "taskrunner: " + o.err.Error()
	}
	return s
}

// runClientCmd runs `taskrunner args...` in-process as a client of the API
// at base, with key as TASKRUNNER_API_KEY when it is not empty. Its
// environment has nothing of the server's.
func runClientCmd(t *testing.T, base, key string, args ...string) clientOut {
	t.Helper()
	env := map[string]string{"TASKRUNNER_URL": base}
	if key != "" {
		env["TASKRUNNER_API_KEY"] = key
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, getenvOf(env), &stdout, &stderr)
	return clientOut{stdout: stdout.String(), stderr: stderr.String(), err: err, code: exitOf(err)}
}

// taskOf decodes the task a command printed.
func taskOf(t *testing.T, out clientOut) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out.stdout), &m), "stdout is not one JSON object: %q (stderr %q, err %v)", out.stdout, out.stderr, out.err)
	return m
}

func idOf(t *testing.T, task map[string]any) int64 {
	t.Helper()
	id, ok := task["id"].(float64)
	require.True(t, ok, "no id in %v", task)
	return int64(id)
}

// Acceptance: the client subcommands against a real serve process (with
// MinIO for artifacts and a fake Brave for search).
func TestClientCommands(t *testing.T) {
	t.Parallel()
	bucket := testenv.NewBucket(t, "client-")
	brave := searchtest.NewBrave(t)
	brave.SetHits(searchtest.Hit{Title: "River", URL: "https://riverqueue.com/"}, searchtest.Hit{Title: "pgx", URL: "https://github.com/jackc/pgx"})
	hooks := newHookReceiver(t)
	env := with(baseEnv(testenv.NewDB(t).URL),
		"MINIO_ENDPOINT", bucket.Endpoint, "MINIO_ROOT_USER", bucket.User, "MINIO_ROOT_PASSWORD", bucket.Password,
		"MINIO_BUCKET", bucket.Name, "REDIS_KEY_PREFIX", testenv.RandomName("client-test:")+":",
		"BRAVE_API_URL", brave.BraveEndpoint(), "BRAVE_API_KEY", searchtest.BraveKey,
		"TENANT_LIMITS", "local:tasks_per_minute=99999:max_running=3",
		"CALLBACK_SECRET", clientCallbackSecret, "CALLBACK_ALLOW_PRIVATE_NETWORKS", "true",
		"CALLBACK_ALLOWED_PORTS", strconv.Itoa(hooks.port))
	server, api := startAPIProc(t, "serve", env, "serve")
	server.WaitEvent("workers_started", startTimeout, nil)
	base := api.base
	cli := func(t *testing.T, args ...string) clientOut {
		t.Helper()
		return runClientCmd(t, base, "", args...)
	}

	t.Run("submit echo --wait", func(t *testing.T) {
		t.Parallel()
		out := cli(t, "submit", "echo", "--param", "msg=hello", "--retries", "0", "--wait")
		require.NoError(t, out.err, out.all())
		task := taskOf(t, out)
		require.Equal(t, "completed", task["status"])
		require.Equal(t, map[string]any{"msg": "hello"}, task["result"])
		require.Contains(t, out.stdout, "\n  \"status\": \"completed\"", "the task is printed indented")
		require.Contains(t, out.stderr, "task "+strconv.FormatInt(idOf(t, task), 10)+": completed (attempt 1/1)")
	})

	t.Run("submit --callback-url", func(t *testing.T) {
		t.Parallel()
		out := cli(t, "submit", "echo", "--param", "msg=call me", "--callback-url", hooks.url, "--wait", "-q")
		require.NoError(t, out.err, out.all())
		id := idOf(t, taskOf(t, out))
		view := hooks.next(t, 30*time.Second, id, "task.completed")
		require.Equal(t, "completed", view["status"])
		require.Equal(t, map[string]any{"msg": "call me"}, view["result"])
		// The Go client reads the callback's state from the task view.
		c, err := client.New(base, "", nil)
		require.NoError(t, err)
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			got, err := c.Get(context.Background(), id)
			if assert.NoError(ct, err) && assert.NotNil(ct, got.Callback) {
				assert.Equal(ct, client.Callback{URL: hooks.url, State: "delivered", Attempts: 1}, *got.Callback)
			}
		}, 30*time.Second, 100*time.Millisecond)

		out = cli(t, "submit", "echo", "--param", "msg=x", "--callback-url", "http://127.0.0.1:1/hook") // a port CALLBACK_ALLOWED_PORTS does not list
		require.Error(t, out.err)
		require.Contains(t, out.all(), "task_rejected_invalid_params")
		require.Contains(t, out.all(), "callback_url")
	})

	t.Run("callbacks secret, rotate", func(t *testing.T) {
		t.Parallel()
		// Without keys the one tenant, local, signs with CALLBACK_SECRET
		// until it rotates; after, that one still signs during the grace,
		// so the other subtests' callbacks keep verifying with it.
		out := cli(t, "callbacks", "secret")
		require.NoError(t, out.err, out.all())
		var s client.CallbackSecret
		require.NoError(t, json.Unmarshal([]byte(out.stdout), &s), out.stdout)
		require.Equal(t, clientCallbackSecret, s.Secret)
		require.Nil(t, s.Previous)

		out = cli(t, "callbacks", "rotate")
		require.NoError(t, out.err, out.all())
		require.NoError(t, json.Unmarshal([]byte(out.stdout), &s), out.stdout)
		require.Regexp(t, `^whsec_`, s.Secret)
		require.NotNil(t, s.Previous)
		require.Equal(t, clientCallbackSecret, *s.Previous)
		require.NotContains(t, server.Text(), s.Secret, "no secret in the log")

		out = cli(t, "callbacks", "shred")
		require.Error(t, out.err)
		require.Contains(t, out.all(), "want secret or rotate")
	})

	t.Run("types ls, get, put, rm", func(t *testing.T) {
		t.Parallel()
		schema := filepath.Join(t.TempDir(), "schema.json")
		require.NoError(t, os.WriteFile(schema, []byte(`{"type":"object","required":["n"],"properties":{"n":{"type":"integer"}}}`), 0o600))
		out := cli(t, "types", "put", "cli_resize", "--mode", "pull", "--schema", schema, "--timeout", "30", "--retries", "2")
		require.NoError(t, out.err, out.all())
		var tt client.TaskType
		require.NoError(t, json.Unmarshal([]byte(out.stdout), &tt), out.stdout)
		require.Equal(t, "cli_resize", tt.Name)
		require.Equal(t, 2, *tt.MaxRetries)

		out = cli(t, "types", "ls")
		require.NoError(t, out.err, out.all())
		require.Regexp(t, `(?m)^echo\s+builtin\s`, out.stdout)
		require.Regexp(t, `(?m)^cli_resize\s+pull\s+30s\s+2\s+-\s`, out.stdout)
		out = cli(t, "types", "get", "cli_resize")
		require.NoError(t, out.err, out.all())
		require.Contains(t, out.stdout, `"params_schema"`)

		out = cli(t, "submit", "cli_resize", "--param", "n=x")
		require.Error(t, out.err)
		require.Contains(t, out.all(), "params.n")
		out = cli(t, "submit", "cli_resize", "--params", `{"n":3}`)
		require.NoError(t, out.err, out.all())
		require.Equal(t, "available", taskOf(t, out)["status"])

		out = cli(t, "types", "rm", "cli_resize")
		require.Error(t, out.err)
		require.Contains(t, out.all(), "task_type_in_use")
		out = cli(t, "types", "rm", "cli_resize", "--force")
		require.NoError(t, out.err, out.all())
		require.Equal(t, "task type cli_resize deleted\n", out.stdout)

		out = cli(t, "types", "put", "bad", "--mode", "pull")
		require.Error(t, out.err)
		require.Contains(t, out.all(), "put wants --mode and --schema")
		out = cli(t, "types", "shred")
		require.Error(t, out.err)
		require.Contains(t, out.all(), "want ls, get, put or rm")
	})

	t.Run("tasks ls, cancel, retry, rm", func(t *testing.T) {
		t.Parallel()
		// Scheduled for later, so they stay queued; their own params keep
		// the other subtests' tasks out of the filter.
		var ids []string
		for range 2 {
			out := cli(t, "submit", "echo", "--param", "msg=bulk-cli", "--run-at", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
			require.NoError(t, out.err, out.all())
			ids = append(ids, strconv.FormatInt(idOf(t, taskOf(t, out)), 10))
		}
		mine := []string{"--filter", `params={"msg":"bulk-cli"}`}
		bulk := func(args ...string) map[string]any {
			t.Helper()
			out := cli(t, append(append([]string{"tasks"}, args...), mine...)...)
			require.NoError(t, out.err, out.all())
			return taskOf(t, out)
		}
		out := cli(t, append([]string{"tasks", "ls", "--filter", "type=echo", "--filter", "status=scheduled,available"}, mine...)...)
		require.NoError(t, out.err, out.all())
		lines := strings.Split(strings.TrimSpace(out.stdout), "\n")
		require.Len(t, lines, 2, out.stdout)
		require.True(t, strings.HasPrefix(lines[0], ids[1]+"\techo\tscheduled\tlocal\tdefault\t"), lines[0])
		require.True(t, strings.HasPrefix(lines[1], ids[0]+"\t"), "newest first: %s", out.stdout)

		require.Equal(t, map[string]any{"matched": float64(2), "affected": nil}, bulk("cancel", "--dry-run"))
		require.Equal(t, map[string]any{"matched": float64(0), "affected": nil}, bulk("rm", "--dry-run"), "the dry run cancelled nothing")
		require.Equal(t, map[string]any{"matched": float64(2), "affected": float64(2)}, bulk("cancel"))
		require.Equal(t, map[string]any{"matched": float64(2), "affected": float64(2)}, bulk("retry"))
		for _, id := range ids { // retried: available at once, and worked
			out := cli(t, "wait", id, "-q")
			require.NoError(t, out.err, out.all())
		}
		require.Equal(t, map[string]any{"matched": float64(2), "affected": float64(2)}, bulk("rm"))
		out = cli(t, append([]string{"tasks", "ls"}, mine...)...)
		require.NoError(t, out.err, out.all())
		require.Empty(t, out.stdout)
		out = cli(t, "get", ids[0])
		require.Equal(t, 1, out.code)
		require.Contains(t, out.all(), "not_found")
	})

	t.Run("submit sleep then wait", func(t *testing.T) {
		t.Parallel()
		out := cli(t, "submit", "sleep", "--param", "seconds=2", "--retries", "0", "--priority", "2")
		require.NoError(t, out.err, out.all())
		task := taskOf(t, out)
		require.Equal(t, map[string]any{"seconds": float64(2)}, task["params"], "seconds=2 is sent as a number")
		require.EqualValues(t, 2, task["priority"])
		require.Empty(t, out.stderr)
		id := strconv.FormatInt(idOf(t, task), 10)

		out = cli(t, "wait", id)
		require.NoError(t, out.err, out.all())
		require.Equal(t, 0, out.code)
		require.Equal(t, "completed", taskOf(t, out)["status"])
		require.Equal(t, map[string]any{"slept": float64(2)}, taskOf(t, out)["result"])
		// Not a terminal: one plain line per state, no redrawing.
		lines := strings.Split(strings.TrimSpace(out.stderr), "\n")
		require.Contains(t, lines, "task "+id+": running (attempt 1/1)", "stderr: %q", out.stderr)
		require.Regexp(t, "(?m)^task "+id+": [0-2]/2 seconds slept$", out.stderr, "the worker's progress, one plain line each")
		require.Equal(t, "task "+id+": completed (attempt 1/1)", lines[len(lines)-1], "stderr: %q", out.stderr)
		require.NotContains(t, out.stderr, "\r")
		require.NotContains(t, out.stderr, "\x1b")
		for i := 1; i < len(lines); i++ {
			require.NotEqual(t, lines[i-1], lines[i], "a state printed twice: %q", out.stderr)
		}

		// A finished task: wait answers at once; -q shows no progress.
		out = cli(t, "wait", id, "-q")
		require.NoError(t, out.err, out.all())
		require.Empty(t, out.stderr)
	})

	t.Run("wait timeout, cancel, cancel again", func(t *testing.T) {
		t.Parallel()
		out := cli(t, "submit", "sleep", "--params", `{"seconds": 60}`, "--retries", "0")
		require.NoError(t, out.err, out.all())
		id := idOf(t, taskOf(t, out))
		ids := strconv.FormatInt(id, 10)
		api.waitStatus(id, 20*time.Second, "running")

		start := time.Now()
		out = cli(t, "wait", ids, "--timeout", "1s")
		require.Error(t, out.err)
		require.Equal(t, 3, out.code, out.all())
		require.Less(t, time.Since(start), 10*time.Second)
		require.Contains(t, out.err.Error(), "task "+ids+" is still running after 1s")
		require.Equal(t, "running", taskOf(t, out)["status"], "the task as it was is printed")
		require.Contains(t, out.stderr, "task "+ids+": running (attempt 1/1)")

		out = cli(t, "cancel", ids)
		require.NoError(t, out.err, out.all())
		require.Contains(t, []any{"running", "cancelled"}, taskOf(t, out)["status"])

		out = cli(t, "wait", ids, "--timeout", "30s")
		require.Error(t, out.err)
		require.Equal(t, 1, out.code, out.all())
		require.Equal(t, "cancelled", taskOf(t, out)["status"])
		require.Contains(t, out.err.Error(), "task "+ids+" cancelled: task_cancelled")
		require.Contains(t, out.stderr, "task "+ids+": cancelled")

		out = cli(t, "cancel", ids)
		require.Error(t, out.err)
		require.Equal(t, 1, out.code)
		require.Empty(t, out.stdout)
		require.True(t, client.IsCode(out.err, "task_already_finished"), "%v", out.err)
		require.Equal(t, "task_already_finished: task "+ids+" already finished (cancelled)", out.err.Error())
	})

	t.Run("limits", func(t *testing.T) {
		t.Parallel()
		out := cli(t, "limits")
		require.NoError(t, out.err, out.all())
		limits := taskOf(t, out)
		require.EqualValues(t, 100000, limits["tasks_per_minute"])
		require.Equal(t, map[string]any{"name": "local", "tasks_per_minute": float64(99999), "max_running": float64(3),
			"callback_concurrency": float64(10), "artifact_mb_per_minute": float64(1024), "max_waiters": float64(250), "max_uploads": float64(4)},
			limits["tenant"], "the caller's own limits")
		require.EqualValues(t, 10, limits["callback_tenant_concurrency"])
		require.EqualValues(t, 86400, limits["callback_rotation_grace_seconds"])
		require.Contains(t, out.stdout, "\n  \"tenant\": {\n", "printed indented")

		out = cli(t, "limits", "extra")
		require.Error(t, out.err)
		require.Contains(t, out.err.Error(), "usage: taskrunner limits")
	})

	t.Run("get", func(t *testing.T) {
		t.Parallel()
		id := api.submit(map[string]any{"type": "echo", "params": map[string]any{"msg": "got"}, "max_retries": 0})
		api.waitStatus(id, 20*time.Second, "completed")
		out := cli(t, "get", strconv.FormatInt(id, 10))
		require.NoError(t, out.err, out.all())
		task := taskOf(t, out)
		require.Equal(t, map[string]any{"msg": "got"}, task["result"])
		require.Len(t, runsOf(t, task), 1)
		require.Contains(t, out.stdout, "\n  \"id\": "+strconv.FormatInt(id, 10)+",\n")

		out = cli(t, "get", "99999999")
		require.Error(t, out.err)
		require.Equal(t, 1, out.code)
		require.True(t, strings.HasPrefix(out.err.Error(), "not_found: "), out.err.Error())

		out = cli(t, "submit", "nosuchtype")
		require.Equal(t, 1, out.code)
		require.True(t, strings.HasPrefix(out.err.Error(), "unknown_task_type: "), out.err.Error())

		out = cli(t, "submit", "sleep", "--param", "seconds=-1")
		require.Equal(t, 1, out.code)
		require.True(t, strings.HasPrefix(out.err.Error(), "task_rejected_invalid_params: "), out.err.Error())
	})

	t.Run("search --wait", func(t *testing.T) {
		t.Parallel()
		out := cli(t, "search", "client", "test", "search", testenv.RandomName("q"), "--source", "brave", "--max-results", "5", "--wait")
		require.NoError(t, out.err, out.all())
		task := taskOf(t, out)
		require.Equal(t, "search", task["type"])
		require.Equal(t, "completed", task["status"])
		require.Contains(t, out.stdout, "https://riverqueue.com/")
		params := task["params"].(map[string]any)
		require.Equal(t, []any{"brave"}, params["sources"])
		require.EqualValues(t, 5, params["max_results"])
		require.NotContains(t, out.all(), searchtest.BraveKey)
	})

	t.Run("artifact put, get, meta", func(t *testing.T) {
		t.Parallel()
		id := api.submit(map[string]any{"type": "echo", "params": map[string]any{"msg": "files"}, "max_retries": 0})
		ids := strconv.FormatInt(id, 10)
		dir := t.TempDir()
		data := make([]byte, 300_000)
		_, _ = rand.Read(data)
		src := filepath.Join(dir, "report.json")
		require.NoError(t, os.WriteFile(src, data, 0o600))
		sum := sha256.Sum256(data)

		out := cli(t, "artifact", "put", ids, src, "--type", "report")
		require.NoError(t, out.err, out.all())
		var art map[string]any
		require.NoError(t, json.Unmarshal([]byte(out.stdout), &art), out.stdout)
		require.Equal(t, "report.json", art["name"], "the file's base name")
		require.Equal(t, "report", art["type"])
		require.Equal(t, "application/json", art["content_type"], "from the extension")
		require.EqualValues(t, len(data), art["size"])
		require.Equal(t, hex.EncodeToString(sum[:]), art["sha256"])
		aid := art["id"].(string)

		dst := filepath.Join(dir, "sub", "..", "copy.bin")
		out = cli(t, "artifact", "get", aid, "-o", dst)
		require.NoError(t, out.err, out.all())
		require.Empty(t, out.stdout)
		got, err := os.ReadFile(dst)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got), "the downloaded bytes differ")
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 2, "no temporary file is left: %v", entries)

		out = cli(t, "artifact", "get", aid)
		require.NoError(t, out.err)
		require.True(t, bytes.Equal(data, []byte(out.stdout)), "the bytes on stdout differ")

		out = cli(t, "artifact", "meta", aid)
		require.NoError(t, out.err, out.all())
		var meta map[string]any
		require.NoError(t, json.Unmarshal([]byte(out.stdout), &meta))
		require.Equal(t, art["sha256"], meta["sha256"])
		require.EqualValues(t, id, meta["task_id"])

		// Another name and content type; an empty file.
		empty := filepath.Join(dir, "empty")
		require.NoError(t, os.WriteFile(empty, nil, 0o600))
		out = cli(t, "artifact", "put", ids, empty, "--name", "notes.txt", "--content-type", "text/plain")
		require.NoError(t, out.err, out.all())
		require.NoError(t, json.Unmarshal([]byte(out.stdout), &art))
		require.Equal(t, "notes.txt", art["name"])
		require.Equal(t, "text/plain", art["content_type"])
		require.EqualValues(t, 0, art["size"])

		// The task's artifacts, oldest first, one line each, through pages.
		out = cli(t, "artifact", "ls", ids)
		require.NoError(t, out.err, out.all())
		lines := strings.Split(strings.TrimSpace(out.stdout), "\n")
		require.Len(t, lines, 2, out.stdout)
		require.True(t, strings.HasPrefix(lines[0], aid+"\t"), out.stdout)
		require.Contains(t, lines[1], "\tnotes.txt\tfile\t0\ttext/plain\t")
		out = cli(t, "artifact", "ls", ids, "--limit", "1")
		require.NoError(t, out.err, out.all())
		require.Equal(t, lines[0]+"\n", out.stdout)

		// A failed download leaves the file as it was.
		require.NoError(t, os.WriteFile(dst, []byte("before"), 0o600))
		out = cli(t, "artifact", "get", "00000000-0000-0000-0000-000000000000", "-o", dst)
		require.Equal(t, 1, out.code)
		require.True(t, strings.HasPrefix(out.err.Error(), "not_found: "), out.err.Error())
		got, err = os.ReadFile(dst)
		require.NoError(t, err)
		require.Equal(t, "before", string(got))

		out = cli(t, "artifact", "put", ids, filepath.Join(dir, "missing"))
		require.Equal(t, 1, out.code)
		require.ErrorIs(t, out.err, os.ErrNotExist)
	})

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		out := runClientCmd(t, "http://127.0.0.1:1", "", "get", "1")
		require.Equal(t, 1, out.code)
		require.Contains(t, out.err.Error(), "cannot reach the API at http://127.0.0.1:1 (TASKRUNNER_URL)")
	})

	t.Cleanup(func() {
		server.Signal(syscall.SIGTERM)
		require.Equal(t, 0, server.WaitExit(exitTimeout))
	})
}

// Acceptance: with API_KEYS set, a client without TASKRUNNER_API_KEY is
// refused and one with it is served; the key never shows.
func TestClientAPIKey(t *testing.T) {
	t.Parallel()
	const key = "ci-key-7c1d9e4b2a6f8035d4e1"
	env := with(baseEnv(testenv.NewDB(t).URL), "API_KEYS", "ci:"+key)
	server, api := startAPIProc(t, "serve", env, "serve")
	server.WaitEvent("workers_started", startTimeout, nil)

	var outputs []clientOut
	out := runClientCmd(t, api.base, "", "submit", "echo", "--param", "msg=hi")
	outputs = append(outputs, out)
	require.Equal(t, 1, out.code)
	require.True(t, client.IsCode(out.err, "unauthorized"), "%v", out.err)
	require.True(t, strings.HasPrefix(out.err.Error(), "unauthorized: "), out.err.Error())
	require.Contains(t, out.err.Error(), "(TASKRUNNER_API_KEY is not set)")
	require.Empty(t, out.stdout)

	const wrong = "not-the-key-0123456789abcdef"
	out = runClientCmd(t, api.base, wrong, "get", "1")
	outputs = append(outputs, out)
	require.Equal(t, 1, out.code)
	require.Contains(t, out.err.Error(), "unauthorized: ")
	require.Contains(t, out.err.Error(), "(the key in TASKRUNNER_API_KEY was refused)")
	require.NotContains(t, out.all(), wrong)

	out = runClientCmd(t, api.base, key, "submit", "echo", "--param", "msg=hi", "--wait")
	outputs = append(outputs, out)
	require.NoError(t, out.err, out.all())
	task := taskOf(t, out)
	require.Equal(t, "completed", task["status"])
	id := strconv.FormatInt(idOf(t, task), 10)
	for _, args := range [][]string{{"get", id}, {"wait", id}, {"cancel", id}} {
		out = runClientCmd(t, api.base, key, args...)
		outputs = append(outputs, out)
		if args[0] == "cancel" {
			require.True(t, client.IsCode(out.err, "task_already_finished"), "%v", out.err)
		} else {
			require.NoError(t, out.err, out.all())
		}
	}
	// A key a header cannot carry is refused without being shown.
	out = runClientCmd(t, api.base, "bad key\x01"+key, "get", id)
	outputs = append(outputs, out)
	require.Equal(t, 1, out.code)

	for _, o := range outputs {
		require.NotContains(t, o.all(), key, "the key leaked")
	}
	require.NotContains(t, server.Text(), key, "the key leaked into the server log")
}

// Client commands need none of the server's environment, and bad command
// lines exit with 2.
func TestClientUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"submit"}, "submit: want one task TYPE, got 0 arguments"},
		{[]string{"submit", "echo", "extra"}, "want one task TYPE, got 2 arguments"},
		{[]string{"submit", "echo", "--param", "novalue"}, `"novalue" is not k=v`},
		{[]string{"submit", "echo", "--param", "=v"}, `"=v" is not k=v`},
		{[]string{"submit", "echo", "--params", "[1]"}, "--params must be one JSON object"},
		{[]string{"submit", "echo", "--params", `{"a":1} {}`}, "--params must be one JSON object"},
		{[]string{"submit", "echo", "--retries", "many"}, "must be a whole number"},
		{[]string{"submit", "echo", "--timeout", "-3"}, "must be a positive number of seconds"},
		{[]string{"submit", "echo", "--run-at", "tomorrow"}, "RFC 3339"},
		{[]string{"submit", "echo", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"get"}, "want one task ID, got 0 arguments"},
		{[]string{"get", "abc"}, `"abc" is not a task id`},
		{[]string{"get", "0"}, `"0" is not a task id`},
		{[]string{"cancel", "1", "2"}, "want one task ID, got 2 arguments"},
		{[]string{"wait", "1", "--timeout", "soon"}, "must be a duration"},
		{[]string{"wait", "1", "--timeout", "0"}, "must be positive"},
		{[]string{"search"}, "a QUERY is required"},
		{[]string{"search", "--recency-days", "x", "q"}, "must be a whole number"},
		{[]string{"tasks"}, "want ls, cancel, retry or rm"},
		{[]string{"tasks", "purge"}, `unknown tasks command "purge"`},
		{[]string{"tasks", "cancel"}, "cancel without --filter acts on every task: say --all"},
		{[]string{"tasks", "rm", "--filter", "status="}, "rm without --filter acts on every task"},
		{[]string{"tasks", "ls", "--filter", "status=done"}, "--filter status must be one or more of"},
		{[]string{"tasks", "ls", "--filter", "sort=id"}, "--filter sort is not a filter field"},
		{[]string{"tasks", "ls", "--filter", "novalue"}, `"novalue" is not k=v`},
		{[]string{"tasks", "ls", "--limit", "0"}, "--limit must be positive"},
		{[]string{"tasks", "ls", "extra"}, `ls takes no arguments but flags, got "extra"`},
		{[]string{"artifact"}, "want put, get, meta or ls"},
		{[]string{"artifact", "list"}, `unknown artifact command "list"`},
		{[]string{"artifact", "ls"}, "ls wants one TASK_ID"},
		{[]string{"artifact", "ls", "1", "--limit", "0"}, "--limit must be positive"},
		{[]string{"artifact", "put", "1"}, "put wants TASK_ID FILE, got 1 arguments"},
		{[]string{"artifact", "put", "x", "f"}, `"x" is not a task id`},
		{[]string{"artifact", "get"}, "get wants one ARTIFACT_ID"},
		{[]string{"artifact", "meta"}, "meta wants one ARTIFACT_ID"},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			t.Parallel()
			// Nothing listens here: a usage error is found before any request.
			out := runClientCmd(t, "http://127.0.0.1:1", "", tc.args...)
			require.Error(t, out.err)
			require.Equal(t, 2, out.code, "exit code of %q", out.err)
			require.Contains(t, out.err.Error(), tc.want)
			require.Contains(t, out.err.Error(), "usage: taskrunner "+tc.args[0])
		})
	}

	t.Run("help", func(t *testing.T) {
		t.Parallel()
		out := runClientCmd(t, "http://127.0.0.1:1", "", "submit", "-h")
		require.NoError(t, out.err)
		require.Contains(t, out.stdout, "Usage: taskrunner submit TYPE")
		require.Contains(t, out.stdout, "-idempotency-key")

		out = runClientCmd(t, "http://127.0.0.1:1", "", "help")
		require.NoError(t, out.err)
		for _, cmd := range []string{"submit TYPE", "get ID", "wait ID", "cancel ID", "tasks ls", "tasks cancel|retry|rm", "search QUERY", "artifact put", "artifact get", "artifact meta"} {
			require.Contains(t, out.stdout, "taskrunner "+cmd)
		}
	})
	t.Run("bad URL", func(t *testing.T) {
		t.Parallel()
		for _, u := range []string{"ftp://host", "localhost:8000", "http://"} {
			out := runClientCmd(t, u, "", "get", "1")
			require.Equal(t, 1, out.code)
			require.Contains(t, out.err.Error(), "TASKRUNNER_URL")
		}
	})
}

const clientCallbackSecret = "client-test-callback-secret-0123"

type hookDelivery struct {
	header http.Header
	body   []byte
}

// hookReceiver is a callback receiver on 127.0.0.1 answering 200.
type hookReceiver struct {
	url  string
	port int
	got  chan hookDelivery
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	h := &hookReceiver{got: make(chan hookDelivery, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.got <- hookDelivery{header: r.Header.Clone(), body: body}
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	h.port, err = strconv.Atoi(u.Port())
	require.NoError(t, err)
	h.url = srv.URL + "/hook"
	return h
}

// next waits up to timeout for a delivery, checks its signature and that
// it is task id's event, and returns the task's view it carried.
func (h *hookReceiver) next(t *testing.T, timeout time.Duration, id int64, event string) map[string]any {
	t.Helper()
	var got hookDelivery
	select {
	case got = <-h.got:
	case <-time.After(timeout):
		t.Fatalf("no callback of task %d delivered in %s", id, timeout)
	}
	require.NoError(t, callback.Verify([]byte(clientCallbackSecret), got.header.Get(callback.HeaderSignature), got.body, time.Minute, time.Now()))
	require.Equal(t, event, got.header.Get(callback.HeaderEvent))
	var view map[string]any
	require.NoError(t, json.Unmarshal(got.body, &view))
	require.EqualValues(t, id, view["id"])
	return view
}
