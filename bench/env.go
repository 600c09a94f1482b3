package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner/app"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/tasktype"
)

// env is what every measurement shares: the bench database, one pgx pool
// on it used by both sides in turn, a separate connection for bookkeeping
// (truncating, counting) so it never takes a pool connection from the side
// being measured, and the taskrunner configuration.
type env struct {
	cfg    *config.Config
	url    string // the bench database
	admin  string // the server's "postgres" database, to drop and create it
	name   string
	pool   *pgxpool.Pool
	conn   *pgx.Conn
	logger *slog.Logger
	p      *progress
	// types are the built-in task types, configured by cfg.
	types *tasktype.Registry
	// recorders are the run recorders of working clients, closed at the end.
	recorders []*jobs.RunRecorder
	// keep, when above 0, is the last id of the queued fill of the scale
	// figures: reset keeps the jobs up to it.
	keep int64
	// emptyParts is what each of sizedTables and each of their indexes
	// take empty, by name (the scale figures).
	emptyParts map[string]int64
	// noCheckpoint: this role may not CHECKPOINT (checkpoint).
	noCheckpoint bool
	// riverOnlyNow: river_job is as River alone has it, without
	// taskrunner's triggers and ownIndexes (riverOnly).
	riverOnlyNow bool
	ownIndexes   map[string]string // taskrunner's indexes on river_job: name -> definition
}

// openEnv drops and recreates the bench database, migrates it and opens
// the pool and the bookkeeping connection.
func openEnv(ctx context.Context, cfg *config.Config, opts *options, logger *slog.Logger, p *progress) (*env, error) {
	benchURL, adminURL, err := benchURLs(cfg.DatabaseURL, opts.dbName)
	if err != nil {
		return nil, err
	}
	types, err := tasktype.NewRegistry(app.Builtins(cfg)...)
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, types: types, url: benchURL, admin: adminURL, name: opts.dbName, logger: logger, p: p}

	p.linef("database: dropping and recreating %s", opts.dbName)
	if err := e.drop(ctx); err != nil {
		return nil, err
	}
	if _, err := db.EnsureDatabase(ctx, benchURL); err != nil {
		return nil, fmt.Errorf("create bench database %s: %w", opts.dbName, err)
	}
	e.pool, err = db.NewPool(ctx, db.PoolConfig{URL: benchURL, MaxConns: int32(opts.dbMaxConns), AppName: "taskrunner-bench"})
	if err != nil {
		return nil, fmt.Errorf("bench database %s: %w", opts.dbName, err)
	}
	m, err := db.NewMigrator(e.pool, slog.New(slog.DiscardHandler))
	if err != nil {
		e.close(true)
		return nil, fmt.Errorf("migrate bench database: %w", err)
	}
	applied, err := m.Up(ctx)
	_ = m.Close()
	if err != nil {
		e.close(true)
		return nil, fmt.Errorf("migrate bench database: %w", err)
	}
	p.linef("database: %s migrated (%d migrations)", opts.dbName, len(applied))
	e.conn, err = pgx.Connect(ctx, benchURL)
	if err != nil {
		e.close(true)
		return nil, fmt.Errorf("connect to bench database: %w", err)
	}
	// Open the pool's connections now, so the first measurement does not
	// pay for them.
	if err := warmPool(ctx, e.pool, opts.dbMaxConns); err != nil {
		e.close(true)
		return nil, err
	}
	return e, nil
}

// benchURLs returns the URL of database name on the server databaseURL
// names, and of that server's "postgres" database.
func benchURLs(databaseURL, name string) (bench, admin string, err error) {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", errors.New("DATABASE_URL must be a postgres:// URL for the bench")
	}
	b, a := *u, *u
	b.Path, b.RawPath = "/"+name, ""
	a.Path, a.RawPath = "/postgres", ""
	return b.String(), a.String(), nil
}

// drop removes the bench database if it exists, closing any connection to
// it (a bench interrupted earlier may have left one).
func (e *env) drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, e.admin)
	if err != nil {
		return fmt.Errorf("connect to the postgres database to drop %s: %w", e.name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{e.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop bench database %s: %w", e.name, err)
	}
	return nil
}

// close releases the connections and, unless keep, drops the database.
func (e *env) close(keep bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range e.recorders {
		_ = r.Close(ctx)
	}
	if keep && e.conn != nil {
		if err := e.riverOnly(ctx, false); err != nil {
			e.p.linef("database: %v", err)
		}
	}
	if e.conn != nil {
		_ = e.conn.Close(ctx)
	}
	if e.pool != nil {
		e.pool.Close()
	}
	if keep {
		e.p.linef("database: %s kept", e.name)
		return
	}
	if err := e.drop(ctx); err != nil {
		e.p.linef("database: %v", err)
		return
	}
	e.p.linef("database: %s dropped", e.name)
}

// reset empties the job and run tables, so a measurement starts clean;
// with a queued fill (keep), it deletes only the jobs after it and
// vacuums river_job, so the fill stays as it was.
func (e *env) reset(ctx context.Context) error {
	if e.keep == 0 {
		if _, err := e.conn.Exec(ctx, "TRUNCATE river_job, runs, run_metrics, run_notes, callback_attempts RESTART IDENTITY"); err != nil {
			return fmt.Errorf("empty the job and run tables: %w", err)
		}
		return nil
	}
	if _, err := e.conn.Exec(ctx, "TRUNCATE runs, run_metrics, run_notes, callback_attempts"); err != nil {
		return fmt.Errorf("empty the run tables: %w", err)
	}
	if _, err := e.conn.Exec(ctx, "DELETE FROM river_job WHERE id > $1", e.keep); err != nil {
		return fmt.Errorf("delete the jobs after the queued fill: %w", err)
	}
	if _, err := e.conn.Exec(ctx, "VACUUM river_job"); err != nil {
		return fmt.Errorf("vacuum river_job: %w", err)
	}
	return nil
}

// checkpoint has PostgreSQL write a checkpoint now, so each side of a
// figure starts from one: after a checkpoint, the first change to each
// page writes the whole page to the WAL, and a checkpoint that fell inside
// one side's measurement (the last side's WAL reaching max_wal_size, or
// the timer) would charge that side alone. It needs superuser or
// pg_checkpoint; without either, the figures go on with a note.
func (e *env) checkpoint(ctx context.Context) error {
	if e.noCheckpoint {
		return nil
	}
	if _, err := e.conn.Exec(ctx, "CHECKPOINT"); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
			e.noCheckpoint = true
			e.p.linef("checkpoint: not allowed for this role (%s); figures go on without a checkpoint before each side", pgErr.Message)
			return nil
		}
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// ownJobs leaves out taskrunner's own jobs (the run sweep, retention,
// callbacks, schedule ticks: kinds starting with taskrunner_), which a
// working client runs beside the measured tasks as `taskrunner serve`
// does; bare River's jobs never match it.
const ownJobs = "NOT starts_with(%s, 'taskrunner_')"

// countCompleted returns how many jobs, taskrunner's own left out, are
// completed.
func (e *env) countCompleted(ctx context.Context) (int, error) {
	var n int
	if err := e.conn.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE state = 'completed' AND "+fmt.Sprintf(ownJobs, "kind")).Scan(&n); err != nil {
		return 0, fmt.Errorf("count completed jobs: %w", err)
	}
	return n, nil
}

// countRuns returns how many runs of tasks (taskrunner's own jobs left
// out) there are and how many completed.
func (e *env) countRuns(ctx context.Context) (total, completed int, err error) {
	err = e.conn.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM runs WHERE "+
		fmt.Sprintf(ownJobs, "task_type")).Scan(&total, &completed)
	if err != nil {
		return 0, 0, fmt.Errorf("count runs: %w", err)
	}
	return total, completed, nil
}

// warmPool opens n of the pool's connections at once and gives them back.
func warmPool(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("open the pool's connections: %w", err)
		}
		conns = append(conns, c)
	}
	return nil
}

// progress writes timestamped progress lines for the person waiting.
type progress struct {
	w     io.Writer
	start time.Time
}

func newProgress(w io.Writer) *progress { return &progress{w: w, start: time.Now()} }

// linef writes one line, prefixed by the time since the bench started.
func (p *progress) linef(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), msg)
}

// riverOnly makes river_job what River alone has (on: taskrunner's
// triggers on it disabled and its indexes on it dropped, their definitions
// kept) or what taskrunner has (off: the triggers enabled and the indexes
// built again), so bare River's figures do not pay for taskrunner's schema
// in the bench's one database. It does nothing when river_job already is
// so.
func (e *env) riverOnly(ctx context.Context, on bool) error {
	if e.riverOnlyNow == on {
		return nil
	}
	if on {
		rows, err := e.conn.Query(ctx, `
			SELECT indexname::text, indexdef FROM pg_indexes
			WHERE schemaname = current_schema() AND tablename = 'river_job' AND indexname LIKE 'taskrunner\_%'`)
		if err != nil {
			return fmt.Errorf("taskrunner's indexes on river_job: %w", err)
		}
		e.ownIndexes = map[string]string{}
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				return err
			}
			e.ownIndexes[name] = def
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	trigger, as, start := "ENABLE", "taskrunner has it", time.Now()
	if on {
		trigger, as = "DISABLE", "River alone has it"
	}
	err := pgx.BeginFunc(ctx, e.conn, func(tx pgx.Tx) error {
		var triggers []string
		rows, err := tx.Query(ctx, `SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'river_job'::regclass AND NOT tgisinternal AND tgname LIKE 'taskrunner\_%'`)
		if err == nil {
			triggers, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			return fmt.Errorf("taskrunner's triggers on river_job: %w", err)
		}
		for _, t := range triggers {
			if _, err := tx.Exec(ctx, "ALTER TABLE river_job "+trigger+" TRIGGER "+pgx.Identifier{t}.Sanitize()); err != nil {
				return err
			}
		}
		for name, def := range e.ownIndexes {
			sql := def
			if on {
				sql = "DROP INDEX " + pgx.Identifier{name}.Sanitize()
			}
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("river_job as %s: %w", as, err)
	}
	e.riverOnlyNow = on
	if !on && time.Since(start) > time.Second {
		e.p.linef("schema: taskrunner's indexes on river_job built again in %s", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
