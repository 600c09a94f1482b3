// Command taskrunner is a task runner with a REST API: tasks are River jobs
// in PostgreSQL, worked by typed workers. Run `taskrunner help` for its
// subcommands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "taskrunner:", err)
		os.Exit(exitCode(err))
	}
}
