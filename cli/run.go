// Package cli is the taskrunner command: the server roles (serve, api,
// worker), migrations, and the client commands against a running API.
// cmd/taskrunner is Main with the built-in task types; a program that adds
// its own types (examples/embed) is Main with those as well.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/taskrunner/taskrunner/app"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/tasktype"
)

const usage = `taskrunner: a task runner with a REST API, on PostgreSQL and River.

Usage:
  taskrunner serve              API and workers in one process
  taskrunner api                API only (inserts and cancels, never works)
  taskrunner worker             workers only
  taskrunner migrate up         apply River's and the app's migrations
  taskrunner migrate down       undo the newest migration (one step)
  taskrunner migrate status     list migrations and whether each is applied
  taskrunner help               this text

Client commands, against a running API at TASKRUNNER_URL (default
http://127.0.0.1:8000) with the key in TASKRUNNER_API_KEY:
  taskrunner submit TYPE [--param k=v ...] [--params JSON] [--timeout SECONDS]
                    [--retries N] [--priority N] [--queue Q] [--run-at RFC3339]
                    [--idempotency-key K] [--callback-url URL] [--wait]
                                submit a task and print it (--wait: when finished)
  taskrunner get ID             print a task
  taskrunner wait ID [--timeout DURATION]
                                wait for a task to finish, showing its progress;
                                exit 0 completed, 1 cancelled or discarded,
                                3 still unfinished at the timeout
  taskrunner cancel ID          cancel a queued or running task
  taskrunner tasks ls [--filter k=v ...] [--limit N]
                                list tasks, newest first: id, type, status,
                                owner, queue, created_at, error code
  taskrunner tasks cancel|retry|rm [--filter k=v ...] [--dry-run] [--all]
                                cancel, retry or delete (with their artifacts)
                                every task the filter matches; --dry-run
                                counts them; no filter needs --all
  taskrunner limits             print the server's limits and the caller's own
  taskrunner search QUERY... [--source S ...] [--recency-days N]
                    [--max-results N] [--wait]
                                enqueue a search task
  taskrunner artifact put TASK_ID FILE [--name N] [--type T] [--content-type CT]
  taskrunner artifact get ARTIFACT_ID [-o FILE]
  taskrunner artifact meta ARTIFACT_ID
  taskrunner schedules add NAME (--every DURATION | --cron EXPR [--tz ZONE])
                    [--missed run_once|skip] TYPE [--param k=v ...] [...]
                                enqueue a task at each tick (submit's task flags)
  taskrunner schedules ls|get NAME|pause NAME|resume NAME|rm NAME
  taskrunner COMMAND -h         a client command's flags

Server configuration is read from the environment; see the README.
`

// usageError is a command line that makes no sense; it exits with 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg + "\n\n" + usage }

// ExitCode is the process's exit status for the error Run returned: 2 for
// a command line that makes no sense, a client command's own status, else 1.
func ExitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	return 1
}

// Types are the task types a server process serves, given its
// configuration: app.Builtins, or those and a program's own.
type Types func(*config.Config) []tasktype.Type

// Main runs the command with the process's arguments, environment and
// output until SIGINT or SIGTERM, and exits with its status.
func Main(types Types) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, types, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "taskrunner:", err)
		os.Exit(ExitCode(err))
	}
}

// Run is the whole program: Main only supplies the process's context,
// arguments, environment and output, so tests run it in-process.
func Run(ctx context.Context, types Types, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{"no subcommand given"}
	}
	cmd, rest := args[0], args[1:]
	if cmd == "help" || cmd == "-h" || cmd == "--help" {
		_, err := io.WriteString(stdout, usage)
		return err
	}
	if _, ok := clientCommands[cmd]; ok {
		// Clients of a running API: none of the server's configuration.
		return runClient(ctx, cmd, rest, getenv, stdout, stderr)
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	logger, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	switch cmd {
	case "serve", "api", "worker":
		return app.Run(ctx, app.Options{Config: cfg, Role: app.Role(cmd), Types: types(cfg), Logger: logger})
	case "migrate":
		return runMigrate(ctx, cfg, logger, rest, stdout)
	default:
		return &usageError{fmt.Sprintf("unknown subcommand %q", cmd)}
	}
}

// newLogger returns the process's logger: JSON (or text) lines on w.
func newLogger(cfg *config.Config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel))); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With(slog.Int("pid", os.Getpid())), nil
}
