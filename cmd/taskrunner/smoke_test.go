package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/search/searchtest"
)

// TestSmokeScript runs `make smoke`'s script, search included, against a
// real serve process whose search provider is a fake Brave, so the script
// that proves a deployment cannot rot unnoticed.
func TestSmokeScript(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the smoke script needs %s", tool)
	}
	bucket := testenv.NewBucket(t, "smoke-")
	brave := searchtest.NewBrave(t)
	brave.SetHits(searchtest.Hit{Title: "River", URL: "https://riverqueue.com/"}, searchtest.Hit{Title: "pgx", URL: "https://github.com/jackc/pgx"})

	env := with(baseEnv(testenv.NewDB(t).URL),
		"MINIO_ENDPOINT", bucket.Endpoint, "MINIO_ROOT_USER", bucket.User, "MINIO_ROOT_PASSWORD", bucket.Password,
		"MINIO_BUCKET", bucket.Name,
		"BRAVE_API_URL", brave.BraveEndpoint(), "BRAVE_API_KEY", searchtest.BraveKey,
		"LOG_LEVEL", "info", "TASK_MAX_RUNTIME_SECONDS", "600", "TASKS_PER_MINUTE", "40")
	server, api := startAPIProc(t, "serve", env, "serve")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../scripts/smoke.sh")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TASKRUNNER_URL=" + api.base, "SMOKE_SEARCH=1"}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "smoke failed:\n%s\nserver log:\n%s", out, server.Text())
	require.Contains(t, string(out), "smoke: passed")
	require.Contains(t, string(out), "every source from the cache")
	require.Contains(t, string(out), "stored from base64 and downloaded")
	require.Contains(t, string(out), "downloaded whole and by range")
	require.Contains(t, string(out), "then was deleted")
	require.Contains(t, string(out), "batch of 3 enqueued")
	require.Contains(t, string(out), "callbacks off: GET /callbacks/secret is callbacks_disabled")
	require.Contains(t, string(out), "429 rate_limit_exceeded, Retry-After")
	require.Equal(t, 1, brave.Calls(), "the second search made no provider call")
	require.False(t, strings.Contains(string(out)+server.Text(), searchtest.BraveKey), "the key leaked")

	server.Signal(syscall.SIGTERM)
	require.Equal(t, 0, server.WaitExit(exitTimeout))
}
