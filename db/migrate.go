package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// appMigrationTable records which of the app's migrations are applied,
// beside River's own river_migration table.
const appMigrationTable = "taskrunner_migration"

// migrateLockKey serialises concurrent `migrate` runs across processes.
const migrateLockKey = 0x7461736b72756e // "taskrun"

// Migration is one migration's state, for `migrate status` and logs.
type Migration struct {
	Line    string // "river" or "app"
	Version int64
	Name    string
	Applied bool
}

// Migrator applies River's migrations and the app's, which build on
// River's tables: up runs River's then the app's; down undoes one step from
// the top (the app's newest first, then River's).
type Migrator struct {
	pool   *pgxpool.Pool
	river  *rivermigrate.Migrator[pgx.Tx]
	app    *goose.Provider
	sqlDB  *sql.DB
	logger *slog.Logger
}

// NewMigrator prepares both migration lines on pool.
func NewMigrator(pool *pgxpool.Pool, logger *slog.Logger) (*Migrator, error) {
	river, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logger.With(slog.String("event", "river_migrate"))})
	if err != nil {
		return nil, fmt.Errorf("river migrator: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	app, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub,
		goose.WithTableName(appMigrationTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("app migrator: %w", err)
	}
	return &Migrator{pool: pool, river: river, app: app, sqlDB: sqlDB, logger: logger}, nil
}

// Close releases the migrator's database handle (not the pool).
func (m *Migrator) Close() error { return m.sqlDB.Close() }

// Up applies every pending migration, River's first, and returns those it
// applied.
func (m *Migrator) Up(ctx context.Context) ([]Migration, error) {
	var applied []Migration
	err := m.locked(ctx, func() error {
		res, err := m.river.Migrate(ctx, rivermigrate.DirectionUp, nil)
		if err != nil {
			return fmt.Errorf("migrate river up: %w", err)
		}
		for _, v := range res.Versions {
			applied = append(applied, m.logged("up", Migration{Line: "river", Version: int64(v.Version), Name: v.Name, Applied: true}, v.Duration))
		}
		results, err := m.app.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate app up: %w", err)
		}
		for _, r := range results {
			applied = append(applied, m.logged("up", Migration{Line: "app", Version: r.Source.Version, Name: r.Source.Path, Applied: true}, r.Duration))
		}
		return nil
	})
	return applied, err
}

// Down undoes the newest migration: the app's if any is applied, River's
// otherwise. It returns nil when nothing is left to undo.
func (m *Migrator) Down(ctx context.Context) (*Migration, error) {
	var undone *Migration
	err := m.locked(ctx, func() error {
		current, err := m.app.GetDBVersion(ctx)
		if err != nil {
			return fmt.Errorf("app migration version: %w", err)
		}
		if current > 0 {
			r, err := m.app.Down(ctx)
			if err != nil {
				return fmt.Errorf("migrate app down: %w", err)
			}
			mig := m.logged("down", Migration{Line: "app", Version: r.Source.Version, Name: r.Source.Path}, r.Duration)
			undone = &mig
			return nil
		}
		existing, err := m.river.ExistingVersions(ctx)
		if err != nil || len(existing) == 0 {
			return nil //nolint:nilerr // no river_migration table: nothing to undo
		}
		res, err := m.river.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{MaxSteps: 1})
		if err != nil {
			return fmt.Errorf("migrate river down: %w", err)
		}
		for _, v := range res.Versions {
			mig := m.logged("down", Migration{Line: "river", Version: int64(v.Version), Name: v.Name}, v.Duration)
			undone = &mig
		}
		return nil
	})
	return undone, err
}

// Status lists every known migration, River's then the app's, and whether
// it is applied.
func (m *Migrator) Status(ctx context.Context) ([]Migration, error) {
	applied := map[int]bool{}
	if existing, err := m.river.ExistingVersions(ctx); err == nil {
		for _, e := range existing {
			applied[e.Version] = true
		}
	}
	var out []Migration
	for _, v := range m.river.AllVersions() {
		out = append(out, Migration{Line: "river", Version: int64(v.Version), Name: v.Name, Applied: applied[v.Version]})
	}
	statuses, err := m.app.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("app migration status: %w", err)
	}
	for _, s := range statuses {
		out = append(out, Migration{Line: "app", Version: s.Source.Version, Name: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}

// Pending reports whether any migration is not applied.
func (m *Migrator) Pending(ctx context.Context) (bool, error) {
	all, err := m.Status(ctx)
	if err != nil {
		return false, err
	}
	for _, mig := range all {
		if !mig.Applied {
			return true, nil
		}
	}
	return false, nil
}

func (m *Migrator) logged(direction string, mig Migration, took time.Duration) Migration {
	m.logger.Info("migration applied",
		slog.String("event", "migration_applied"),
		slog.String("direction", direction),
		slog.String("line", mig.Line),
		slog.Int64("version", mig.Version),
		slog.String("name", mig.Name),
		slog.Float64("took_ms", float64(took.Microseconds())/1000),
	)
	return mig
}

// locked runs fn holding a session advisory lock, so two processes
// migrating at once take turns.
func (m *Migrator) locked(ctx context.Context, fn func() error) error {
	conn, err := m.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection for migration lock: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLockKey)); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must be released even when ctx is done.
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(unlockCtx, "SELECT pg_advisory_unlock($1)", int64(migrateLockKey)); err != nil {
			conn.Conn().Close(unlockCtx) //nolint:errcheck // closing the session releases the lock
		}
	}()
	return fn()
}

// ErrMigrationsPending is returned by CheckMigrated when the schema is
// behind the binary.
var ErrMigrationsPending = errors.New("database migrations are pending: run `taskrunner migrate up`")

// CheckMigrated returns ErrMigrationsPending unless every migration is applied.
func (m *Migrator) CheckMigrated(ctx context.Context) error {
	pending, err := m.Pending(ctx)
	if err != nil {
		return err
	}
	if pending {
		return ErrMigrationsPending
	}
	return nil
}

// SchemaFingerprint identifies the full schema this binary migrates to:
// River's migrations and the app's, by content. Tests key their template
// databases on it.
func SchemaFingerprint() (string, error) {
	h := sha256.New()
	river, err := rivermigrate.New(riverpgxv5.New(nil), nil)
	if err != nil {
		return "", err
	}
	for _, v := range river.AllVersions() {
		fmt.Fprintf(h, "river %d %s\n", v.Version, v.SQLUp)
	}
	err = fs.WalkDir(migrationFiles, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := migrationFiles.ReadFile(path)
		fmt.Fprintf(h, "app %s %s\n", path, b)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
