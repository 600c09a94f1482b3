// Command taskrunner is a task runner with a REST API: tasks are River jobs
// in PostgreSQL, worked by typed workers. Run `taskrunner help` for its
// subcommands.
package main

import (
	"context"
	"io"

	"github.com/taskrunner/taskrunner/app"
	"github.com/taskrunner/taskrunner/cli"
)

func main() { cli.Main(app.Builtins) }

// run is the program with the built-in task types, for the tests that run
// it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return cli.Run(ctx, app.Builtins, args, getenv, stdout, stderr)
}
