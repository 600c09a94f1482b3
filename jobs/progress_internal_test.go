package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Nothing is stored in an attempt's first ProgressEvery, so a task done
// sooner (a cached search answering 1 of 1 at once) costs no write; a
// report after it is stored.
func TestProgressIsNotStoredInAnAttemptsFirstInterval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	logger, _ := testenv.Logger(t)
	var id int64
	require.NoError(t, tdb.Pool.QueryRow(ctx,
		`INSERT INTO river_job (kind, args, queue, priority, max_attempts, state, attempt, attempted_at)
		 VALUES ('search', '{}', 'default', 1, 1, 'running', 1, now()) RETURNING id`).Scan(&id))
	stored := func() bool {
		var has bool
		require.NoError(t, tdb.Pool.QueryRow(ctx, "SELECT metadata ? 'progress' FROM river_job WHERE id = $1", id).Scan(&has))
		return has
	}

	r := &recorder{progress: progressState{pool: tdb.Pool, logger: logger, taskID: id, attempt: 1, last: time.Now()}}
	rctx := tasktype.WithReporter(ctx, r)
	tasktype.ReportProgress(rctx, 1, 1, "sources answered")
	require.False(t, stored(), "a report in the attempt's first ProgressEvery is stored")

	r.mu.Lock()
	r.progress.last = time.Now().Add(-ProgressEvery)
	r.mu.Unlock()
	tasktype.ReportProgress(rctx, 1, 1, "sources answered")
	require.True(t, stored(), "a report after the attempt's first ProgressEvery is not stored")
}
