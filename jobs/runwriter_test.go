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
	"github.com/taskrunner/taskrunner/storable"
	"github.com/taskrunner/taskrunner/tasktype"
)

func testRecord(taskID int64, notes ...string) db.RunRecord {
	now := time.Now()
	return db.RunRecord{
		TaskID: taskID, Attempt: 1, Key: "echo:test", TaskType: "echo", Worker: "test", Status: db.RunCompleted,
		StartedAt: now, FinishedAt: now, Metrics: map[string]float64{"n": 1}, Notes: notes,
	}
}

// storedRuns maps the task ids that have a run to its notes.
func storedRuns(t *testing.T, tdb *testenv.DB) map[int64][]string {
	t.Helper()
	rows, err := tdb.Pool.Query(context.Background(),
		`SELECT r.task_id, coalesce(array_agg(n.note ORDER BY n.id) FILTER (WHERE n.note IS NOT NULL), '{}')
		 FROM runs r LEFT JOIN run_notes n ON n.task_id = r.task_id AND n.attempt = r.attempt GROUP BY r.task_id`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[int64][]string{}
	for rows.Next() {
		var id int64
		var notes []string
		require.NoError(t, rows.Scan(&id, &notes))
		out[id] = notes
	}
	require.NoError(t, rows.Err())
	return out
}

// A batch holding records the database refuses (a note with a raw NUL, as
// if sanitising had been bypassed; a status the runs table's check
// refuses) is written record by record: the others are stored, the refused
// ones are dropped, logged and counted, their waiters told, and the writer
// goes on working.
func TestRunWriterDropsWhatTheDatabaseRefusesAndGoesOn(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	logger, logs := testenv.Logger(t)
	m := metrics.New()
	w := newRunWriter(tdb.Pool, logger, m)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, w.close(ctx))
	})

	badStatus := testRecord(4, "fine")
	badStatus.Status = "exploded"
	recs := []db.RunRecord{testRecord(1, "one"), testRecord(2, "a\x00b"), testRecord(3), badStatus, testRecord(5, "five", "\xff")}
	batch := make([]*pendingRun, len(recs))
	waits := make([]chan error, len(recs))
	for i, r := range recs {
		waits[i] = make(chan error, 1)
		batch[i] = &pendingRun{rec: r, waiters: []chan error{waits[i]}}
	}
	require.Error(t, w.write(batch), "the batch as a whole is refused")
	require.NoError(t, w.flush(batch))

	for i, want := range []error{nil, errRunDropped, nil, errRunDropped, errRunDropped} {
		select {
		case err := <-waits[i]:
			require.ErrorIs(t, err, want, "record %d", i+1)
			if want == nil {
				require.NoError(t, err, "record %d", i+1)
			}
		default:
			t.Fatalf("record %d: its waiter was not told", i+1)
		}
	}
	require.Equal(t, map[int64][]string{1: {"one"}, 3: {}}, storedRuns(t, tdb))
	dropped := logs.Events("run_record_dropped")
	require.Len(t, dropped, 3)
	for i, id := range []float64{2, 4, 5} {
		require.Equal(t, id, dropped[i]["task_id"])
		require.Equal(t, "refused", dropped[i]["reason"])
	}
	require.Equal(t, "3", sample(t, m, "taskrunner_run_records_dropped_total"))

	// The writer itself: a refused record, then a good one.
	require.ErrorIs(t, <-w.record(testRecord(6, "x\x00")), errRunDropped)
	require.NoError(t, <-w.record(testRecord(7, "seven")))
	runs := storedRuns(t, tdb)
	require.Contains(t, runs, int64(7))
	require.NotContains(t, runs, int64(6))
	require.Equal(t, "4", sample(t, m, "taskrunner_run_records_dropped_total"))
}

// The run recorder makes what a worker attaches storable (a NUL in a note,
// bytes that are not UTF-8 in a metric name or an error), records only the
// public message of the error, and marks a NotRetried failure final so
// River discards the task rather than retrying or cancelling it.
func TestRunRecorderStoresSafeTextAndEndsNotRetriedTasks(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	logger, logs := testenv.Logger(t)
	rr, err := NewRunRecorder(RunRecorderConfig{Pool: tdb.Pool, Logger: logger, WorkerName: "test"})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, rr.Close(ctx))
	})

	job := &rivertype.JobRow{ID: 11, Attempt: 1, MaxAttempts: 4, Kind: "echo", EncodedArgs: []byte(`{"msg":"x"}`)}
	cause := errors.New("api.internal.example:8443 said \x00 no (*pgconn.PgError)")
	err = rr.Work(context.Background(), job, func(ctx context.Context) error {
		tasktype.AddNote(ctx, "provider said a\x00b")
		tasktype.RecordMetric(ctx, "bad\xffname", 2)
		return tasktype.NotRetried(&taskrunner.Error{Code: "widget_failed", Err: cause})
	})
	require.Error(t, err)
	require.Empty(t, storable.CheckText(err.Error()), "River keeps the error in jsonb: %q", err.Error())
	require.Contains(t, err.Error(), "api.internal.example", "operators (River UI) see the whole error")
	var cancelErr *rivertype.JobCancelError
	require.False(t, errors.As(err, &cancelErr), "a worker's refusal does not cancel the task")
	require.Equal(t, 1, job.MaxAttempts, "the attempt is the last: River discards the task")

	runs, err := db.RunsForTask(context.Background(), tdb.Pool, 11)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, db.RunFailed, runs[0].Status)
	require.Equal(t, taskrunner.Code("widget_failed"), *runs[0].ErrorCode)
	require.Equal(t, taskrunner.PublicMessage(taskrunner.CodeTaskFailed, nil), *runs[0].Error, "a code without a message of its own gets the fixed one")
	notes, err := db.RunNotes(context.Background(), tdb.Pool, runs[0].TaskID, runs[0].Attempt)
	require.NoError(t, err)
	require.Equal(t, []string{"provider said a\uFFFDb"}, notes)
	metricsOf, err := db.RunMetrics(context.Background(), tdb.Pool, runs[0].TaskID, runs[0].Attempt)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"bad\uFFFDname": 2}, metricsOf)
	failed := logs.Events("task_failed")
	require.Len(t, failed, 1)
	require.Contains(t, failed[0]["error"], "api.internal.example", "the log has the whole error")

	// A plain failure with attempts left is retried: MaxAttempts untouched,
	// and a public message of the worker's own is what clients see.
	job = &rivertype.JobRow{ID: 12, Attempt: 1, MaxAttempts: 4, Kind: "echo", EncodedArgs: []byte(`{}`)}
	err = rr.Work(context.Background(), job, func(ctx context.Context) error {
		return &taskrunner.Error{Code: "widget_failed", Message: "the widget is busy", Err: cause}
	})
	require.Error(t, err)
	require.Equal(t, 4, job.MaxAttempts)
	runs, err = db.RunsForTask(context.Background(), tdb.Pool, 12)
	require.NoError(t, err)
	require.Equal(t, "the widget is busy", *runs[0].Error)
}
