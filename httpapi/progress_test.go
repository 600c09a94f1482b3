package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/client"
	"github.com/taskrunner/taskrunner/jobs"
)

// progressEvents are the data of a stream's progress events, in order.
func progressEvents(t *testing.T, events []event) []client.Progress {
	t.Helper()
	var out []client.Progress
	for _, e := range events {
		if e.name == "progress" {
			out = append(out, decode[client.Progress](t, e.data))
		}
	}
	return out
}

func TestSleepStreamsProgressThenItsFinalState(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})
	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 3}})

	events := b.readEvents(t, id)
	progress := progressEvents(t, events)
	require.GreaterOrEqual(t, len(progress), 2, "events: %v", events)
	for i, p := range progress {
		require.Equal(t, int64(3), p.Total)
		require.Equal(t, "seconds slept", p.Message)
		require.Equal(t, 1, p.Attempt)
		if i > 0 {
			require.Greater(t, p.Seq, progress[i-1].Seq)
			require.GreaterOrEqual(t, p.Done, progress[i-1].Done)
		}
	}
	require.Greater(t, progress[len(progress)-1].Done, progress[0].Done, "the seconds slept grew: %v", progress)

	// The final state comes after the progress, then the end; each
	// progress event's id is new (a state event before it may share it,
	// holding the same progress in its task).
	n := len(events)
	require.Equal(t, "state", events[n-2].name)
	require.Equal(t, taskrunner.StatusCompleted, decode[taskView](t, events[n-2].data).Status)
	require.Equal(t, "end", events[n-1].name)
	ids := map[string]bool{}
	for _, e := range events {
		if e.name == "progress" {
			require.False(t, ids[e.id], "progress id %s sent twice", e.id)
			ids[e.id] = true
		}
	}
	require.Equal(t, fmt.Sprintf("1-%d-completed", progress[len(progress)-1].Seq), events[n-1].id)

	// The task view keeps the latest progress.
	view := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil).task(t)
	require.NotNil(t, view.Progress)
	require.Equal(t, progress[len(progress)-1].Seq, view.Progress.Seq)
}

func TestEventStreamResumesFromLastEventID(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})
	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 1}})
	events := b.readEvents(t, id)
	require.Equal(t, "end", events[len(events)-1].name)

	// From any id of the stream, even its last, a finished task's final
	// state comes at once, then the end.
	for _, from := range []string{events[0].id, events[len(events)-2].id, events[len(events)-1].id, "not-an-id"} {
		resumed := b.readEvents(t, id, from)
		require.Len(t, resumed, 2, "from %s: %v", from, resumed)
		require.Equal(t, "state", resumed[0].name)
		require.Equal(t, taskrunner.StatusCompleted, decode[taskView](t, resumed[0].data).Status)
		require.Equal(t, "end", resumed[1].name)
		require.Equal(t, events[len(events)-1].id, resumed[1].id)
	}
}

func TestEventStreamResumesARunningTaskWithoutRepeats(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})
	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 30}})
	b.waitStatus(t, id, "running")
	var last event
	require.Eventually(t, func() bool {
		last = b.firstEvents(t, id, 1, "")[0]
		return last.name == "state" && decode[taskView](t, last.data).Progress != nil
	}, 10*time.Second, 50*time.Millisecond)
	// Resuming from the id of a state that already had the progress: the
	// next event is a newer progress, never the one already had.
	seen := decode[taskView](t, last.data).Progress.Seq
	next := b.firstEvents(t, id, 1, fmt.Sprintf("%d-%d-running", 1, seen))[0]
	require.Equal(t, "progress", next.name)
	require.Greater(t, decode[client.Progress](t, next.data).Seq, seen)
	require.Equal(t, http.StatusAccepted, b.do(t, http.MethodPost, fmt.Sprintf("/tasks/%d/cancel", id), nil).status)
}

func TestFetchReportsGrowingByteCounts(t *testing.T) {
	t.Parallel()
	const size = 4 << 20
	f := setupFetchWith(t, 8<<20)

	id := f.submit(t, map[string]any{"type": "fetch", "params": map[string]any{"url": f.url("allowed.test", "/large")}})
	events := f.readEvents(t, id)
	require.Equal(t, taskrunner.StatusCompleted, decode[taskView](t, events[len(events)-2].data).Status)
	progress := progressEvents(t, events)
	require.GreaterOrEqual(t, len(progress), 2, "events: %v", events)
	for i, p := range progress {
		require.Equal(t, int64(size), p.Total)
		require.Equal(t, "bytes received", p.Message)
		require.LessOrEqual(t, p.Done, int64(size))
		if i > 0 {
			require.Greater(t, p.Done, progress[i-1].Done)
		}
	}

	// Throttled: the body comes in over a hundred reads, but reports are
	// stored at most once per jobs.ProgressEvery.
	view := f.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil).task(t)
	require.NotNil(t, view.Progress)
	run := view.run(t, 0)
	require.NotNil(t, run.FinishedAt)
	took := run.FinishedAt.Sub(run.StartedAt)
	require.LessOrEqual(t, view.Progress.Seq, int64(took/jobs.ProgressEvery)+1, "%d reports stored in %s", view.Progress.Seq, took)
}

func TestEchoWritesNoProgress(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{work: true})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	view := b.waitStatus(t, id, "completed").task(t)
	require.Nil(t, view.Progress)
	var has bool
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), "SELECT metadata ? 'progress' FROM river_job WHERE id = $1", id).Scan(&has))
	require.False(t, has, "an echo task stores no progress")
	for _, e := range b.readEvents(t, id) {
		require.NotEqual(t, "progress", e.name)
	}
}
