package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

// NewRunPool returns a pool of at most two connections to pool's database
// for RecordRuns, whose transactions commit without waiting for their WAL
// to reach disk (synchronous_commit off). That loses nothing a caller
// relies on: a run is written before its worker returns, so River's
// completion of the task commits after it, and PostgreSQL flushes WAL in
// order: the synchronous commit of the completion makes the run durable
// too. If PostgreSQL crashes first, both are lost: the task is still
// running in river_job, River's rescuer gives it another attempt, and that
// attempt's record fills in the lost one as abandoned (or, when it has no
// attempt left and the rescuer discards it, the run sweep does:
// RecordAbandoned). Close it when done.
func NewRunPool(pool *pgxpool.Pool) (*pgxpool.Pool, error) {
	cfg := pool.Config()
	cfg.MaxConns, cfg.MinConns = 2, 0
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	runs, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("pool for run records: %w", err)
	}
	return runs, nil
}

// RunRecord is one attempt to record, when it has ended: one row, written
// once.
type RunRecord struct {
	TaskID     int64
	Attempt    int
	Key        string // scope-prefixed, e.g. "search:5f1c..."
	TaskType   string
	Worker     string
	Status     string
	ErrorCode  taskrunner.Code // empty for none
	Error      string          // empty for none
	StartedAt  time.Time
	FinishedAt time.Time
	Duration   time.Duration
	// CloseEarlier (any attempt after the first): earlier attempts of the
	// task whose worker died before it could write their row are recorded
	// as abandoned: those with no row, those still marked interrupted (they
	// ran again), and rows still marked running, which earlier versions of
	// taskrunner wrote when an attempt started.
	CloseEarlier bool
	Metrics      map[string]float64
	Notes        []string
}

// RecordRuns writes many attempts' records in one transaction, on a pool
// from NewRunPool: earlier attempts abandoned by a dead worker filled in,
// then every record upserted (one row per task and attempt), then metrics
// and notes. Records without any of those are one statement: one round
// trip.
func RecordRuns(ctx context.Context, pool *pgxpool.Pool, recs []RunRecord) error {
	if len(recs) == 0 {
		return nil
	}
	var up dbsqlc.RunsUpsertParams
	var ab abandoned
	var mt dbsqlc.RunMetricsUpsertManyParams
	var nt dbsqlc.RunNotesInsertManyParams
	for _, r := range recs {
		up.TaskIds = append(up.TaskIds, r.TaskID)
		up.Attempts = append(up.Attempts, int32(r.Attempt))
		up.Keys = append(up.Keys, r.Key)
		up.TaskTypes = append(up.TaskTypes, r.TaskType)
		up.Statuses = append(up.Statuses, r.Status)
		up.ErrorCodes = append(up.ErrorCodes, string(r.ErrorCode))
		up.Errors = append(up.Errors, r.Error)
		up.Workers = append(up.Workers, r.Worker)
		up.StartedAts = append(up.StartedAts, r.StartedAt)
		up.FinishedAts = append(up.FinishedAts, r.FinishedAt)
		up.DurationsMs = append(up.DurationsMs, float64(r.Duration)/float64(time.Millisecond))
		if r.CloseEarlier && r.Attempt > 1 {
			ab.add(r.TaskID, r.Attempt-1, r.Key, r.TaskType)
		}
		for name, v := range r.Metrics {
			mt.TaskIds = append(mt.TaskIds, r.TaskID)
			mt.Attempts = append(mt.Attempts, int32(r.Attempt))
			mt.Names = append(mt.Names, name)
			mt.MetricValues = append(mt.MetricValues, v)
		}
		for _, n := range r.Notes {
			nt.TaskIds = append(nt.TaskIds, r.TaskID)
			nt.Attempts = append(nt.Attempts, int32(r.Attempt))
			nt.Notes = append(nt.Notes, n)
		}
	}
	if len(ab.TaskIds) == 0 && len(mt.TaskIds) == 0 && len(nt.TaskIds) == 0 {
		// Most batches are first records of their attempts: a plain
		// insert, and the upsert only when one of them had a row.
		err := queries.RunsInsert(ctx, pool, dbsqlc.RunsInsertParams(up))
		if isUniqueViolation(err) {
			err = queries.RunsUpsert(ctx, pool, up)
		}
		if err != nil {
			return fmt.Errorf("record %d runs: %w", len(recs), err)
		}
		return nil
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if len(ab.TaskIds) > 0 {
			if err := queries.RunsAbandonEarlier(ctx, tx, dbsqlc.RunsAbandonEarlierParams(ab)); err != nil {
				return err
			}
		}
		if err := queries.RunsUpsert(ctx, tx, up); err != nil {
			return err
		}
		if len(mt.TaskIds) > 0 {
			if err := queries.RunMetricsUpsertMany(ctx, tx, mt); err != nil {
				return err
			}
		}
		if len(nt.TaskIds) > 0 {
			return queries.RunNotesInsertMany(ctx, tx, nt)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d runs: %w", len(recs), err)
	}
	return nil
}

// abandoned collects the attempts RunsAbandonEarlier fills in: each task's
// attempts up to and including through.
type abandoned dbsqlc.RunsAbandonEarlierParams

func (a *abandoned) add(taskID int64, through int, key, taskType string) {
	a.TaskIds = append(a.TaskIds, taskID)
	a.Throughs = append(a.Throughs, int32(through))
	a.Keys = append(a.Keys, key)
	a.TaskTypes = append(a.TaskTypes, taskType)
}

// UnrecordedTask is a finalized task whose last attempt has no ended row in
// runs (UnrecordedFinalized).
type UnrecordedTask struct {
	TaskID      int64
	Attempt     int // its last attempt
	Kind        string
	Args        []byte
	FinalizedAt time.Time
}

// UnrecordedFinalized returns up to max tasks finalized (completed,
// discarded, cancelled) after since whose last attempt has no row, or only
// one still marked running or interrupted: its worker died before writing
// it and River's rescuer then discarded the task, or the task was
// finalized without it. Oldest finalized first, after the keyset (afterAt,
// afterID): pass the last task returned to read on. A task still running
// is never among them.
func UnrecordedFinalized(ctx context.Context, ex Executor, since, afterAt time.Time, afterID int64, max int) ([]UnrecordedTask, error) {
	rows, err := queries.RunsUnrecordedFinalized(ctx, ex, dbsqlc.RunsUnrecordedFinalizedParams{
		Since: since, AfterAt: afterAt, AfterID: afterID, MaxRows: int32(max),
	})
	if err != nil {
		return nil, fmt.Errorf("finalized tasks without their last run: %w", err)
	}
	out := make([]UnrecordedTask, len(rows))
	for i, r := range rows {
		out[i] = UnrecordedTask{TaskID: r.ID, Attempt: int(r.Attempt), Kind: r.Kind, Args: r.Args, FinalizedAt: r.FinalizedAt}
	}
	return out, nil
}

// Abandoned is a finalized task whose attempts up to and including Through
// are recorded as abandoned where they have no ended row; Key and TaskType
// as the run recorder computes them.
type Abandoned struct {
	TaskID   int64
	Through  int
	Key      string
	TaskType string
}

// RecordAbandoned fills in, for each task, its attempts up to and
// including Through that have no row, or one still marked running or
// interrupted, as abandoned (error code worker_lost), as RecordRuns does
// for the attempts before the one it records. A row written later by the
// attempt's own worker replaces the abandoned one.
func RecordAbandoned(ctx context.Context, ex Executor, tasks []Abandoned) error {
	if len(tasks) == 0 {
		return nil
	}
	var ab abandoned
	for _, t := range tasks {
		ab.add(t.TaskID, t.Through, t.Key, t.TaskType)
	}
	if err := queries.RunsAbandonEarlier(ctx, ex, dbsqlc.RunsAbandonEarlierParams(ab)); err != nil {
		return fmt.Errorf("record %d tasks' lost attempts as abandoned: %w", len(tasks), err)
	}
	return nil
}

// RunSweepMark returns how far the newest completed run sweep, a River
// job of kind, swept (the swept_through of its output); ok is false when
// none has.
func RunSweepMark(ctx context.Context, ex Executor, kind string) (through time.Time, ok bool, err error) {
	rows, err := queries.RunSweepLastThrough(ctx, ex, kind)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("last run sweep: %w", err)
	}
	if len(rows) == 0 {
		return time.Time{}, false, nil
	}
	return rows[0], true, nil
}

// Now returns the database's clock, which River's finalized_at is taken
// from.
func Now(ctx context.Context, ex Executor) (time.Time, error) {
	now, err := queries.DatabaseNow(ctx, ex)
	if err != nil {
		return time.Time{}, fmt.Errorf("database clock: %w", err)
	}
	return now, nil
}
