package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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
// attempt's record fills in the lost one as abandoned. Close it when done.
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
	ErrorCode  string // empty for none
	Error      string // empty for none
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
	var ab dbsqlc.RunsAbandonEarlierParams
	var mt dbsqlc.RunMetricsUpsertManyParams
	var nt dbsqlc.RunNotesInsertManyParams
	for _, r := range recs {
		up.TaskIds = append(up.TaskIds, r.TaskID)
		up.Attempts = append(up.Attempts, int32(r.Attempt))
		up.Keys = append(up.Keys, r.Key)
		up.TaskTypes = append(up.TaskTypes, r.TaskType)
		up.Statuses = append(up.Statuses, r.Status)
		up.ErrorCodes = append(up.ErrorCodes, r.ErrorCode)
		up.Errors = append(up.Errors, r.Error)
		up.Workers = append(up.Workers, r.Worker)
		up.StartedAts = append(up.StartedAts, r.StartedAt)
		up.FinishedAts = append(up.FinishedAts, r.FinishedAt)
		up.DurationsMs = append(up.DurationsMs, float64(r.Duration)/float64(time.Millisecond))
		if r.CloseEarlier && r.Attempt > 1 {
			ab.TaskIds = append(ab.TaskIds, r.TaskID)
			ab.Attempts = append(ab.Attempts, int32(r.Attempt))
			ab.Keys = append(ab.Keys, r.Key)
			ab.TaskTypes = append(ab.TaskTypes, r.TaskType)
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
		if err := queries.RunsUpsert(ctx, pool, up); err != nil {
			return fmt.Errorf("record %d runs: %w", len(recs), err)
		}
		return nil
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if len(ab.TaskIds) > 0 {
			if err := queries.RunsAbandonEarlier(ctx, tx, ab); err != nil {
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
