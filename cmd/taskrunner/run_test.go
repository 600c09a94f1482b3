package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/cli"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

// exitOf is the exit code main uses for err.
func exitOf(err error) int {
	if err == nil {
		return 0
	}
	return cli.ExitCode(err)
}

// Acceptance: a command line that makes no sense exits with 2 and shows
// the usage.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewEmptyDB(t)
	env := migrateEnv(tdb.URL)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no subcommand"},
		{[]string{"bogus"}, `unknown subcommand "bogus"`},
		{[]string{"migrate"}, "migrate needs one of"},
		{[]string{"migrate", "up", "extra"}, "migrate needs one of"},
		{[]string{"migrate", "sideways"}, `unknown migrate command "sideways"`},
	} {
		t.Run(strings.Join(append([]string{"args"}, tc.args...), "_"), func(t *testing.T) {
			out := runCmd(t, env, tc.args...)
			require.Error(t, out.err)
			require.Equal(t, 2, exitOf(out.err), "exit code of %q", out.err)
			require.Contains(t, out.err.Error(), tc.want)
			require.Contains(t, out.err.Error(), "Usage:")
		})
	}

	out := runCmd(t, env, "help")
	require.NoError(t, out.err)
	require.Contains(t, out.stdout, "Usage:")
	require.Contains(t, out.stdout, "taskrunner migrate up")
}

// Acceptance: a bad setting is refused at start, naming its variable.
func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value, wantVar string }{
		{"TASK_MAX_RUNTIME_SECONDS", "-1", "TASK_MAX_RUNTIME_SECONDS"},
		{"TASK_MAX_RUNTIME_SECONDS", "ten", "TASK_MAX_RUNTIME_SECONDS"},
		{"SHUTDOWN_GRACE_SECONDS", "0", "SHUTDOWN_GRACE_SECONDS"},
		{"WORKER_CONCURRENCY", "-5", "WORKER_CONCURRENCY"},
		{"WORKER_FETCH_POLL_INTERVAL", "soon", "WORKER_FETCH_POLL_INTERVAL"},
		{"LOG_LEVEL", "loud", "LOG_LEVEL"},
		{"MINIO_SECURE", "maybe", "MINIO_SECURE"},
		{"TASK_RESCUE_AFTER_SECONDS", "60", "TASK_RESCUE_AFTER_SECONDS"}, // not above the 600 s cap
		{"QUEUES", "other", "QUEUES"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			for _, cmd := range []string{"serve", "api", "worker", "migrate"} {
				args := []string{cmd}
				if cmd == "migrate" {
					args = append(args, "up")
				}
				// No database: the configuration is refused before any is needed.
				env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none?sslmode=disable", tc.name: tc.value}
				out := runCmd(t, env, args...)
				require.Error(t, out.err, "%s with %s=%s", cmd, tc.name, tc.value)
				require.Contains(t, out.err.Error(), tc.wantVar)
				require.Equal(t, 1, exitOf(out.err))
			}
		})
	}
}

// The real process: exit codes and messages on stderr.
func TestProcessExitCodes(t *testing.T) {
	t.Parallel()
	empty := testenv.NewEmptyDB(t)

	t.Run("unknown subcommand", func(t *testing.T) {
		t.Parallel()
		p := startProc(t, "taskrunner-bogus", map[string]string{}, "bogus")
		require.Equal(t, 2, p.WaitExit(exitTimeout))
		require.Contains(t, p.Text(), `taskrunner: unknown subcommand "bogus"`)
		require.Contains(t, p.Text(), "Usage:")
	})
	t.Run("bad variable", func(t *testing.T) {
		t.Parallel()
		p := startProc(t, "taskrunner-badvar", map[string]string{"TASK_MAX_RUNTIME_SECONDS": "-1"}, "serve")
		require.Equal(t, 1, p.WaitExit(exitTimeout))
		require.Contains(t, p.Text(), "taskrunner: TASK_MAX_RUNTIME_SECONDS")
	})
	// Acceptance: serve against an unmigrated database tells the user what
	// to run.
	t.Run("serve unmigrated", func(t *testing.T) {
		t.Parallel()
		p := startProc(t, "serve", baseEnv(empty.URL), "serve")
		require.Equal(t, 1, p.WaitExit(exitTimeout))
		require.Contains(t, p.Text(), "run `taskrunner migrate up`")
		require.Empty(t, p.Events("api_listening", nil), "serve listened on an unmigrated database")
	})
	for _, cmd := range []string{"api", "worker"} {
		t.Run(cmd+" unmigrated in-process", func(t *testing.T) {
			t.Parallel()
			out := runCmd(t, baseEnv(empty.URL), cmd)
			require.Error(t, out.err)
			require.Contains(t, out.err.Error(), "run `taskrunner migrate up`")
			require.Equal(t, 1, exitOf(out.err))
		})
	}
}
