package db

import (
	"context"
	"fmt"
	"time"

	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

// DeleteFinishedInternalJobs deletes up to limit of taskrunner's own jobs
// (kinds starting with taskrunner_) finished more than retention ago, by
// the database's clock, oldest first, and returns how many it deleted.
func DeleteFinishedInternalJobs(ctx context.Context, ex Executor, retention time.Duration, limit int) (int64, error) {
	n, err := queries.InternalJobsDeleteFinished(ctx, ex, dbsqlc.InternalJobsDeleteFinishedParams{
		RetentionSeconds: retention.Seconds(), MaxRows: int32(limit)})
	if err != nil {
		return n, fmt.Errorf("delete finished internal jobs: %w", err)
	}
	return n, nil
}
