package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
)

// River's rescuer takes every running job past RescueStuckJobsAfter,
// whatever its queue, and discards one whose kind no worker of the client
// knows: a task of a type defined at run time, claimed by a worker over
// HTTP, would end discarded if it stayed running that long. What pull
// workers rely on, pinned here so that a River upgrade that changes it
// fails this test: their leases must end (and be swept) well before the
// rescue horizon, which every attempt's timeout is below.
func TestRiverDiscardsAStuckJobOfAnUnknownKind(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	ctx := context.Background()
	var id int64
	require.NoError(t, tdb.Pool.QueryRow(ctx,
		`INSERT INTO river_job (kind, args, queue, priority, max_attempts, attempt, state, attempted_at, attempted_by)
		 VALUES ('resize', '{}', 'external', 1, 5, 1, 'running', now() - interval '1 hour', '{elsewhere}')
		 RETURNING id`).Scan(&id))
	// Its working client: RescueAfter is 2 minutes, the job an hour old.
	startWorking(t, tdb, jobs.ClientConfig{})
	var state string
	require.Eventually(t, func() bool {
		require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT state FROM river_job WHERE id = $1", id).Scan(&state))
		return state != "running"
	}, 30*time.Second, 100*time.Millisecond, "River's rescuer left the stuck job running")
	require.Equal(t, "discarded", state, "River's rescuer no longer discards a stuck job of an unknown kind: the pull workers' lease expiry must be revisited")
}
