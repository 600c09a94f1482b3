package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/db"
)

func runMigrate(ctx context.Context, cfg *config.Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return &usageError{"migrate needs one of: up, down, status"}
	}
	if args[0] == "up" {
		created, err := db.EnsureDatabase(ctx, cfg.DatabaseURL)
		if err != nil {
			return err
		}
		if created {
			logger.Info("database created", slog.String("event", "database_created"))
		}
	}
	pool, err := db.NewPool(ctx, db.PoolConfig{URL: cfg.DatabaseURL, MaxConns: 4, AppName: "taskrunner-migrate"})
	if err != nil {
		return err
	}
	defer pool.Close()
	m, err := db.NewMigrator(pool, logger)
	if err != nil {
		return err
	}
	defer m.Close()

	switch args[0] {
	case "up":
		applied, err := m.Up(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "applied %d migration(s)\n", len(applied))
		for _, a := range applied {
			fmt.Fprintf(stdout, "  up    %-5s %03d %s\n", a.Line, a.Version, a.Name)
		}
		return nil
	case "down":
		undone, err := m.Down(ctx)
		if err != nil {
			return err
		}
		if undone == nil {
			fmt.Fprintln(stdout, "nothing to undo")
			return nil
		}
		fmt.Fprintf(stdout, "  down  %-5s %03d %s\n", undone.Line, undone.Version, undone.Name)
		return nil
	case "status":
		all, err := m.Status(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LINE\tVERSION\tNAME\tSTATE")
		for _, s := range all {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			fmt.Fprintf(tw, "%s\t%03d\t%s\t%s\n", s.Line, s.Version, s.Name, state)
		}
		return tw.Flush()
	default:
		return &usageError{fmt.Sprintf("unknown migrate command %q: want up, down or status", args[0])}
	}
}
