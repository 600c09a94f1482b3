package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/metrics"
)

// taskrunner's own jobs leave a run record only when an attempt fails: a
// tick or a delivery that succeeds writes no row (and logs at debug
// only), one that fails is recorded as a task's is. Whatever their
// metadata says, they count as no tenant's.
func TestRunRecorderRecordsInternalJobsOnlyWhenTheyFail(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	logger, logs := testenv.Logger(t)
	m := metrics.New()
	m.SetTenants([]string{"alice"})
	rr, err := NewRunRecorder(RunRecorderConfig{Pool: tdb.Pool, Logger: logger, WorkerName: "test", Metrics: m})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, rr.Close(ctx))
	})
	work := func(id int64, kind, metadata string, err error) {
		t.Helper()
		job := &rivertype.JobRow{ID: id, Attempt: 1, MaxAttempts: 5, Kind: kind, EncodedArgs: []byte(`{}`), Metadata: []byte(metadata)}
		got := rr.Work(context.Background(), job, func(context.Context) error { return err })
		require.Equal(t, err == nil, got == nil, "job %d: %v", id, got)
	}
	work(1, ScheduleTickArgs{}.Kind(), `{}`, nil)
	work(2, CallbackArgs{}.Kind(), `{"owner":"alice"}`, nil)
	work(3, CallbackArgs{}.Kind(), `{"owner":"alice"}`, errors.New("receiver said 500"))
	work(4, "echo", `{"owner":"alice"}`, nil)

	runs := func(id int64) []taskrunner.Run {
		t.Helper()
		r, err := db.RunsForTask(context.Background(), tdb.Pool, id)
		require.NoError(t, err)
		return r
	}
	require.Empty(t, runs(1), "a tick that succeeded leaves no run")
	require.Empty(t, runs(2), "a delivery that succeeded leaves no run")
	require.Len(t, runs(3), 1, "a delivery that failed is recorded")
	require.Equal(t, db.RunFailed, runs(3)[0].Status)
	require.Len(t, runs(4), 1, "a task is recorded")

	require.Equal(t, "1", sample(t, m, `taskrunner_runs_finished_total{status="completed",tenant="system",type="taskrunner_callback"}`),
		"a delivery is no tenant's, whatever its metadata says")
	require.Equal(t, "1", sample(t, m, `taskrunner_runs_finished_total{status="failed",tenant="system",type="taskrunner_callback"}`))
	require.Equal(t, "1", sample(t, m, `taskrunner_runs_finished_total{status="completed",tenant="alice",type="echo"}`))
	for _, e := range logs.Events("task_completed") {
		if e["task_id"] != float64(4) {
			require.Equal(t, "DEBUG", e["level"], "an internal job's success is logged at debug: %v", e)
		}
	}
}
