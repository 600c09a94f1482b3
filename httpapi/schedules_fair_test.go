package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/jobs"
)

// One tenant's backlog of ticks never delays another tenant's: each
// tenant's ticks wait in a queue of their own. alice has 20,000 ticks
// waiting; bob's every-second schedule still enqueues its task within 2 s
// of its tick, while alice's ticks are still being worked off.
func TestTickBacklogOfOneTenantLeavesAnothersTicks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{work: true, apiKeys: tenantKeys, tenantLimits: map[string]config.TenantLimits{
		"alice": {TasksPerMinute: 60}, "bob": {TasksPerMinute: 60}}})
	// The ticks of a schedule of alice's that is gone: each still is a job
	// and a transaction to work, in the queue alice's ticks go to.
	_, err := b.db.Pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, priority, queue, state)
		SELECT jsonb_build_object('owner', 'alice', 'name', 'gone', 'tick', now() - g * interval '1 s'),
		       'taskrunner_schedule_tick', $1, $2, $3, 'available'
		FROM generate_series(1, 20000) g`, jobs.ScheduleTickMaxAttempts, jobs.ScheduleTickPriority, jobs.ScheduleTickQueueFor("alice"))
	require.NoError(t, err)

	r := b.doAs(t, bobKey, http.MethodPost, "/schedules", map[string]any{"name": "tick", "every": "1s", "task": echoTask})
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	var late float64
	require.Eventually(t, func() bool {
		err := b.db.Pool.QueryRow(ctx, `
			SELECT EXTRACT(EPOCH FROM created_at - (metadata ->> 'schedule_tick')::timestamptz) FROM river_job
			WHERE metadata ->> 'owner' = 'bob' AND metadata ->> 'schedule' = 'tick' ORDER BY id LIMIT 1`).Scan(&late)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "bob's schedule enqueued nothing")
	var waiting int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job
		WHERE kind = 'taskrunner_schedule_tick' AND args ->> 'owner' = 'alice' AND state = 'available'`).Scan(&waiting))
	require.Positive(t, waiting, "alice's backlog was worked off before bob's tick: the test shows nothing")
	require.Less(t, late, 2.0, "bob's task came %.3f s after its tick, behind alice's %d waiting ticks", late, waiting)
}
