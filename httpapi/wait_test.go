package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

func TestLongPollReturnsWhenTheTaskFinishes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})
	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 1}})

	start := time.Now()
	resp := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=20s", id), nil)
	took := time.Since(start)
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	require.Equal(t, taskrunner.StatusCompleted, resp.task(t).Status)
	require.Less(t, took, 15*time.Second, "woken by the state change, not by the end of the wait")

	// A finished task answers at once; a wait that ends first returns the
	// task as it is.
	require.Equal(t, taskrunner.StatusCompleted, b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=30", id), nil).task(t).Status)
	long := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 30}})
	resp = b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=300ms", long), nil)
	require.Equal(t, http.StatusOK, resp.status)
	require.Contains(t, []taskrunner.Status{taskrunner.StatusAvailable, taskrunner.StatusRunning}, resp.task(t).Status)
	require.Zero(t, b.waiting(t), "every waiter let go")

	for _, bad := range []string{"forever", "-1s", "61s", "NaN"} {
		r := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=%s", id, bad), nil)
		require.Equal(t, http.StatusBadRequest, r.status, bad)
	}
}

func (b *bundle) waiting(t *testing.T) int {
	t.Helper()
	require.NotNil(t, b.watcher)
	return b.watcher.Waiting()
}

// event is one server-sent event: "state" has the task as data,
// "progress" the worker's latest report, "end" its last status.
type event struct {
	name string
	id   string
	data json.RawMessage
}

// endEvent is the data of an "end" event.
type endEvent struct {
	Status string `json:"status"`
}

// readEvents reads a task's event stream to its end; lastEventID, when
// given, is sent as Last-Event-ID.
func (b *bundle) readEvents(t *testing.T, id int64, lastEventID ...string) []event {
	t.Helper()
	return b.firstEvents(t, id, 0, lastEventID...)
}

// firstEvents reads a task's event stream until n events came (to its end
// when n is 0); lastEventID, when given, is sent as Last-Event-ID.
func (b *bundle) firstEvents(t *testing.T, id int64, n int, lastEventID ...string) []event {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/tasks/%d/events", b.server.URL, id), nil)
	require.NoError(t, err)
	for _, v := range lastEventID {
		if v != "" {
			req.Header.Set("Last-Event-ID", v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var events []event
	var cur event
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = json.RawMessage(strings.TrimPrefix(line, "data: "))
			require.True(t, json.Valid(cur.data), "event data: %s", cur.data)
		case line == "" && cur.name != "":
			require.NotEmpty(t, cur.id, "event %s has an id", cur.name)
			events = append(events, cur)
			cur = event{}
			if len(events) == n {
				return events
			}
		}
	}
	return events
}

func TestEventStreamFollowsTheTaskToItsEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})
	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 1}})

	events := b.readEvents(t, id)
	require.GreaterOrEqual(t, len(events), 2)
	var states []taskrunner.Status
	for _, e := range events[:len(events)-1] {
		require.Contains(t, []string{"state", "progress"}, e.name)
		if e.name == "state" {
			states = append(states, decode[taskView](t, e.data).Status)
		}
	}
	require.Equal(t, taskrunner.StatusCompleted, states[len(states)-1])
	require.Contains(t, states, taskrunner.StatusRunning, "the stream showed the task running: %v", states)
	last := events[len(events)-1]
	require.Equal(t, "end", last.name)
	require.Equal(t, "completed", decode[endEvent](t, last.data).Status)

	// A finished task: its state, then the end.
	events = b.readEvents(t, id)
	require.Len(t, events, 2)
	require.Equal(t, "end", events[1].name)
}

func TestWaitersAreBoundedPerProcess(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{maxWaiters: 1}) // nothing works the tasks
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})

	first := make(chan response, 1)
	go func() { first <- b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=3s", id), nil) }()
	require.Eventually(t, func() bool { return b.waiting(t) == 1 }, 5*time.Second, 10*time.Millisecond)

	second := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=3s", id), nil)
	require.Equal(t, http.StatusServiceUnavailable, second.status)
	require.Equal(t, taskrunner.CodeTooManyWaiters, errorCode(t, second))
	events, err := http.Get(fmt.Sprintf("%s/tasks/%d/events", b.server.URL, id))
	require.NoError(t, err)
	events.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, events.StatusCode)
	// Without a wait a read is never refused.
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil).status)

	require.Equal(t, http.StatusOK, (<-first).status)
	require.Zero(t, b.waiting(t))
}
