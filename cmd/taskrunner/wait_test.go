package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
)

// Acceptance: a long poll and an event stream on an api process end when
// the task finishes in a worker process: the api learns of it through
// PostgreSQL notifications, not from events of its own.
func TestLongPollAndEventsFollowATaskWorkedElsewhere(t *testing.T) {
	t.Parallel()
	env := baseEnv(testenv.NewDB(t).URL)
	w := startWorker(t, "worker", env)
	a, api := startAPIProc(t, "api", env, "api")

	// Long poll.
	id := api.submit(map[string]any{"type": "sleep", "params": map[string]any{"seconds": 1}})
	start := time.Now()
	status, body := api.do(http.MethodGet, fmt.Sprintf("/tasks/%d?wait=30s", id), nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "completed", body["status"], "the wait ended before the task finished: %v", body)
	require.Less(t, time.Since(start), 20*time.Second)
	w.WaitEvent("task_completed", 5*time.Second, forTask(id))

	// Event stream, with the progress the worker process reports.
	id = api.submit(map[string]any{"type": "sleep", "params": map[string]any{"seconds": 3}})
	resp, err := http.Get(fmt.Sprintf("%s/tasks/%d/events", api.base, id))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var names, states []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	deadline := time.AfterFunc(30*time.Second, func() { resp.Body.Close() })
	defer deadline.Stop()
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			names = append(names, name)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok && names[len(names)-1] == "state" {
			var task map[string]any
			require.NoError(t, json.Unmarshal([]byte(data), &task))
			states = append(states, task["status"].(string))
		}
	}
	require.NotEmpty(t, names)
	require.Equal(t, "end", names[len(names)-1], "the stream did not end with the task: %v", names)
	require.Equal(t, "completed", states[len(states)-1])
	require.Contains(t, states, "running", "states seen: %v", states)
	var progress int
	for _, n := range names {
		if n == "progress" {
			progress++
		}
	}
	require.GreaterOrEqual(t, progress, 2, "progress from the worker process: %v", names)
	require.Empty(t, a.Events("task_completed", nil), "the api process worked a task")
}
