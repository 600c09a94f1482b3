package jobs

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/metrics"
)

// sample is the value of one series of m ("" when it is not exposed).
func sample(t *testing.T, m *metrics.Metrics, series string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// The run recorder learns a task's tenant from its metadata's owner: the
// running gauge and the finished count are by tenant (taskrunner's own
// jobs as system, an owner not configured as other), and every run event
// names the tenant.
func TestRunRecorderCountsAndLogsByTenant(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	logger, logs := testenv.Logger(t)
	m := metrics.New()
	m.SetTenants([]string{"alice", "bob"})
	rr, err := NewRunRecorder(RunRecorderConfig{Pool: tdb.Pool, Logger: logger, WorkerName: "test", Metrics: m})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, rr.Close(ctx))
	})
	workKind := func(id int64, kind, metadata string, inner func(context.Context) error) error {
		job := &rivertype.JobRow{ID: id, Attempt: 1, MaxAttempts: 1, Kind: kind, EncodedArgs: []byte(`{"msg":"x"}`), Metadata: []byte(metadata)}
		return rr.Work(context.Background(), job, inner)
	}
	work := func(id int64, metadata string, inner func(context.Context) error) error {
		return workKind(id, "echo", metadata, inner)
	}

	require.NoError(t, work(1, `{"timeout_seconds":5,"owner":"alice"}`, func(context.Context) error {
		require.Equal(t, "1", sample(t, m, `taskrunner_tasks_running{tenant="alice"}`), "alice's task runs")
		return nil
	}))
	require.Error(t, work(2, `{"owner":"bob"}`, func(context.Context) error { return errors.New("no") }))
	require.NoError(t, work(3, `{}`, func(context.Context) error { return nil }))
	require.NoError(t, work(4, `{"owner":"mallory"}`, func(context.Context) error { return nil }))
	require.NoError(t, workKind(5, "taskrunner_retention", `{}`, func(context.Context) error { return nil }))

	require.Equal(t, "0", sample(t, m, `taskrunner_tasks_running{tenant="alice"}`), "nothing runs any more")
	require.Equal(t, "1", sample(t, m, `taskrunner_runs_finished_total{status="completed",tenant="alice",type="echo"}`))
	require.Equal(t, "1", sample(t, m, `taskrunner_runs_finished_total{status="failed",tenant="bob",type="echo"}`))
	require.Equal(t, "1", sample(t, m, `taskrunner_runs_finished_total{status="completed",tenant="local",type="echo"}`), "a task without an owner is local's")
	require.Equal(t, "1", sample(t, m, `taskrunner_runs_finished_total{status="completed",tenant="system",type="taskrunner_retention"}`), "taskrunner's own job")
	require.Equal(t, "1", sample(t, m, `taskrunner_runs_finished_total{status="completed",tenant="other",type="echo"}`))

	tenants := func(event string) []any {
		var out []any
		for _, e := range logs.Events(event) {
			out = append(out, e["tenant"])
		}
		return out
	}
	require.Equal(t, []any{"alice", "bob", "local", "mallory", "system"}, tenants("task_started"))
	require.Equal(t, []any{"alice", "local", "mallory", "system"}, tenants("task_completed"))
	require.Equal(t, []any{"bob"}, tenants("task_failed"))
}
