package task

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
)

// The attempt a task is running now is added to its runs, once: after
// the ended ones, over an interrupted row of the same attempt (it runs
// again), and not over a row it has already written.
func TestWithRunningAttempt(t *testing.T) {
	t.Parallel()
	now := time.Now()
	code := taskrunner.CodeTaskInterrupted
	running := taskrunner.Run{TaskID: 1, Attempt: 2, Status: db.RunRunning, Worker: "w2", StartedAt: now}
	failed := taskrunner.Run{ID: 10, TaskID: 1, Attempt: 1, Status: db.RunFailed}

	require.Equal(t, []taskrunner.Run{running}, withRunningAttempt(nil, running), "the first attempt")
	require.Equal(t, []taskrunner.Run{failed, running}, withRunningAttempt([]taskrunner.Run{failed}, running), "after an ended one")

	interrupted := taskrunner.Run{ID: 11, TaskID: 1, Attempt: 2, Status: db.RunInterrupted, ErrorCode: &code, Interruptions: 1, StartedAt: now.Add(-time.Minute)}
	got := withRunningAttempt([]taskrunner.Run{failed, interrupted}, running)
	want := running
	want.ID, want.Interruptions = 11, 2
	require.Equal(t, []taskrunner.Run{failed, want}, got, "running again after an interruption")

	completed := taskrunner.Run{ID: 12, TaskID: 1, Attempt: 2, Status: db.RunCompleted}
	require.Equal(t, []taskrunner.Run{failed, completed}, withRunningAttempt([]taskrunner.Run{failed, completed}, running),
		"ended; River has yet to mark the task")
}
