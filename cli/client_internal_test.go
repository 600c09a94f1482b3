package cli

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/client"
)

func TestParamParsing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		params string
		pairs  []string
		want   string // JSON; "" for no params
	}{
		{"none", "", nil, ""},
		{"integer", "", []string{"seconds=10"}, `{"seconds":10}`},
		{"negative float", "", []string{"x=-1.5"}, `{"x":-1.5}`},
		{"exponent", "", []string{"x=1e3"}, `{"x":1e3}`},
		{"bools", "", []string{"a=true", "b=false"}, `{"a":true,"b":false}`},
		{"string", "", []string{"msg=hello world"}, `{"msg":"hello world"}`},
		{"empty value", "", []string{"msg="}, `{"msg":""}`},
		{"value with =", "", []string{"q=a=b"}, `{"q":"a=b"}`},
		{"leading zero stays a string", "", []string{"zip=01234"}, `{"zip":"01234"}`},
		{"spaces stay a string", "", []string{"n= 1"}, `{"n":" 1"}`},
		{"capitalised bool stays a string", "", []string{"b=True"}, `{"b":"True"}`},
		{"null stays a string", "", []string{"v=null"}, `{"v":"null"}`},
		{"JSON-looking stays a string", "", []string{`v=["a"]`}, `{"v":"[\"a\"]"}`},
		{"NaN stays a string", "", []string{"v=NaN"}, `{"v":"NaN"}`},
		{"unicode", "", []string{"msg=héllo ✓"}, `{"msg":"héllo ✓"}`},
		{"last wins", "", []string{"n=1", "n=2"}, `{"n":2}`},
		{"params", `{"sources":["brave"],"query":"x"}`, nil, `{"query":"x","sources":["brave"]}`},
		{"param over params", `{"seconds":1,"keep":true}`, []string{"seconds=5"}, `{"keep":true,"seconds":5}`},
		{"empty params", `{}`, nil, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var pairs paramFlags
			for _, p := range tc.pairs {
				require.NoError(t, pairs.Set(p))
			}
			got, err := buildParams(tc.params, pairs)
			require.NoError(t, err)
			if tc.want == "" {
				require.Nil(t, got)
				return
			}
			require.JSONEq(t, tc.want, string(got))
		})
	}
	for _, bad := range []string{"novalue", "=x", " =x", ""} {
		var pairs paramFlags
		require.Error(t, pairs.Set(bad), "--param %q", bad)
	}
	for _, bad := range []string{"[]", "null", "1", `"s"`, "{", `{"a":1}x`, `{"a":1}{"b":2}`} {
		_, err := buildParams(bad, nil)
		require.Error(t, err, "--params %q", bad)
	}
}

func TestProgressRendering(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		task      *client.Task
		frame     int
		elapsed   time.Duration
		live      string
		plain     string
		plainOnly bool
	}{
		{
			name: "not seen yet", task: nil, frame: 0, elapsed: 50 * time.Millisecond,
			live: "⠋ task 42  0.1s",
		},
		{
			name: "available", task: &client.Task{ID: 42, Type: "sleep", Status: "available", MaxAttempts: 1},
			frame: 1, elapsed: 1200 * time.Millisecond,
			live: "⠙ task 42 sleep available  1.2s", plain: "task 42: available",
		},
		{
			name: "running", task: &client.Task{ID: 42, Type: "sleep", Status: "running", Attempt: 1, MaxAttempts: 1},
			frame: 10, elapsed: 12345 * time.Millisecond,
			live: "⠋ task 42 sleep running  attempt 1/1  12.3s", plain: "task 42: running (attempt 1/1)",
		},
		{
			name: "long wait", task: &client.Task{ID: 42, Type: "sleep", Status: "running", Attempt: 2, MaxAttempts: 4},
			frame: 3, elapsed: 83 * time.Second,
			live: "⠸ task 42 sleep running  attempt 2/4  1m23s", plain: "task 42: running (attempt 2/4)",
		},
		{
			name: "retryable",
			task: &client.Task{ID: 7, Type: "search", Status: "retryable", Attempt: 1, MaxAttempts: 4,
				Error: &client.TaskError{Code: "search_failed", Message: "every source failed"}},
			frame: 2, elapsed: 3 * time.Second,
			live:  "⠹ task 7 search retryable  attempt 1/4  search_failed  3.0s",
			plain: "task 7: retryable (attempt 1/4): search_failed: every source failed",
		},
		{
			name:  "cancelling",
			task:  &client.Task{ID: 9, Type: "sleep", Status: "running", Attempt: 1, MaxAttempts: 1, CancelRequested: true},
			frame: 4, elapsed: time.Second,
			live: "⠼ task 9 sleep running (cancelling)  attempt 1/1  1.0s", plain: "task 9: running (cancelling) (attempt 1/1)",
		},
		{
			name: "scheduled", task: &client.Task{ID: 5, Type: "echo", Status: "scheduled", MaxAttempts: 1, ScheduledAt: at},
			plain: "task 5: scheduled for 2030-01-01T09:00:00Z", plainOnly: true,
		},
		{
			name: "completed", task: &client.Task{ID: 42, Type: "echo", Status: "completed", Attempt: 1, MaxAttempts: 1},
			plain: "task 42: completed (attempt 1/1)", plainOnly: true,
		},
		{
			name: "cancelled",
			task: &client.Task{ID: 42, Type: "sleep", Status: "cancelled", Attempt: 1, MaxAttempts: 1, CancelRequested: true,
				Error: &client.TaskError{Code: "task_cancelled", Message: "cancelled"}},
			frame: 0, elapsed: 0,
			live:  "⠋ task 42 sleep cancelled  attempt 1/1  0.0s",
			plain: "task 42: cancelled (attempt 1/1): task_cancelled: cancelled",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !tc.plainOnly {
				require.Equal(t, tc.live, renderLive(idOrDefault(tc.task, 42), tc.task, nil, tc.frame, tc.elapsed))
			}
			if tc.task != nil {
				require.Equal(t, tc.plain, renderPlain(tc.task))
			}
		})
	}
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	running := &client.Task{ID: 42, Type: "fetch", Status: "running", Attempt: 1, MaxAttempts: 3}
	r := &client.Progress{Done: 1 << 20, Total: 4 << 20, Message: "bytes received", Attempt: 1, Seq: 2}
	require.Equal(t, "⠋ task 42 fetch running  attempt 1/3  [█████░░░░░░░░░░░░░░░]  25%  1048576/4194304 bytes received  2.0s",
		renderLive(42, running, r, 0, 2*time.Second))
	// An earlier attempt's report, or one of a finished task, is not drawn.
	again := *running
	again.Attempt = 2
	require.Equal(t, "⠋ task 42 fetch running  attempt 2/3  2.0s", renderLive(42, &again, r, 0, 2*time.Second))
	// Without a total: a count, no bar.
	require.Equal(t, "⠋ task 42 fetch running  attempt 1/3  4096 bytes received  2.0s",
		renderLive(42, running, &client.Progress{Done: 4096, Message: "bytes received", Attempt: 1}, 0, 2*time.Second))
	require.Equal(t, "[████████████████████] 100%", renderBar(client.Progress{Done: 7, Total: 5}))
	require.Equal(t, "3/3 seconds slept", renderProgress(client.Progress{Done: 3, Total: 3, Message: "seconds slept"}))
}

func idOrDefault(t *client.Task, id int64) int64 {
	if t == nil {
		return id
	}
	return t.ID
}

func TestProgressElapsed(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0.0s", 149 * time.Millisecond: "0.1s", 12340 * time.Millisecond: "12.3s", 59940 * time.Millisecond: "59.9s",
		59960 * time.Millisecond: "1m0s", 83 * time.Second: "1m23s", 2*time.Hour + 3*time.Second: "2h0m3s",
	} {
		require.Equal(t, want, formatElapsed(d), "%s", d)
	}
}

// The live display redraws one line in place and clears it at the end; the
// plain one writes a line per state.
func TestProgressDisplay(t *testing.T) {
	t.Parallel()
	running := &client.Task{ID: 42, Type: "sleep", Status: "running", Attempt: 1, MaxAttempts: 1}
	done := &client.Task{ID: 42, Type: "sleep", Status: "completed", Attempt: 1, MaxAttempts: 1}

	t.Run("terminal", func(t *testing.T) {
		t.Parallel()
		var buf lockedBuffer
		p := newProgress(&buf, 42, true)
		p.update(running)
		time.Sleep(3 * progressTick)
		p.update(done)
		p.stop()
		out := buf.String()
		require.NotContains(t, out, "\n", "a live display never starts a new line")
		require.True(t, strings.HasPrefix(out, "\r⠋ task 42  "), "%q", out)
		require.Regexp(t, "\r[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] task 42 sleep running  attempt 1/1  [0-9]+\\.[0-9]s\x1b\\[K", out)
		require.Contains(t, out, "sleep completed  attempt 1/1")
		require.GreaterOrEqual(t, strings.Count(out, "\r"), 5, "redrawn while waiting: %q", out)
		require.True(t, strings.HasSuffix(out, "\x1b[K\r\x1b[K"), "cleared at the end: %q", out)
	})
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		var buf lockedBuffer
		p := newProgress(&buf, 42, false)
		p.update(running)
		time.Sleep(2 * progressTick)
		p.update(done)
		p.stop()
		require.Equal(t, "task 42: running (attempt 1/1)\ntask 42: completed (attempt 1/1)\n", buf.String())
	})
	t.Run("not a terminal", func(t *testing.T) {
		t.Parallel()
		require.False(t, isTerminal(&bytes.Buffer{}))
		f, err := os.CreateTemp(t.TempDir(), "out")
		require.NoError(t, err)
		defer f.Close()
		require.False(t, isTerminal(f))
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			defer tty.Close()
			require.True(t, isTerminal(tty))
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
