package cli

// The types client subcommand: ls, get, put and rm of task types.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/taskrunner/taskrunner/client"
)

// maxSchemaFileBytes bounds the file types put reads; the server refuses
// a params_schema over 64 KiB anyway.
const maxSchemaFileBytes = 1 << 20

func cmdTypes(ctx context.Context, e *cliEnv, args []string) error {
	if len(args) == 0 {
		return cmdUsage("types", "want ls, get, put or rm")
	}
	switch args[0] {
	case "ls":
		return typesList(ctx, e, args[1:])
	case "get":
		name, err := e.oneTypeName("get", newFlags("types"), args[1:])
		if err != nil {
			return err
		}
		t, err := e.c.TaskType(ctx, name)
		if err != nil {
			return err
		}
		return printJSON(e.stdout, t.Raw)
	case "put":
		return typesPut(ctx, e, args[1:])
	case "rm":
		fs := newFlags("types")
		force := fs.Bool("force", false, "delete even while tasks of the type wait or run")
		name, err := e.oneTypeName("rm", fs, args[1:])
		if err != nil {
			return err
		}
		if err := e.c.DeleteTaskType(ctx, name, *force); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "task type %s deleted\n", name)
		return nil
	case "-h", "-help", "--help":
		fmt.Fprintf(e.stdout, "Usage: taskrunner %s\n", clientCommands["types"].synopsis)
		return nil
	default:
		return cmdUsage("types", "unknown types command %q; want ls, get, put or rm", args[0])
	}
}

// oneTypeName parses the arguments of a types command that takes one
// name and the flags of fs.
func (e *cliEnv) oneTypeName(what string, fs *flag.FlagSet, args []string) (string, error) {
	pos, err := e.parseArgs(fs, "types", args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", cmdUsage("types", "%s wants one type NAME, got %d arguments", what, len(pos))
	}
	return pos[0], nil
}

func typesPut(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("types")
	var req client.TaskTypeRequest
	fs.StringVar(&req.Mode, "mode", "", "how its tasks are worked: `pull` (workers claim them) or push (posted to --push-url)")
	schemaFile := fs.String("schema", "", "the JSON Schema of its params, from `FILE`")
	timeout := fs.Float64("timeout", 0, "the timeout of a task that gives none, in `SECONDS` (default: the server's)")
	retries := fs.Int("retries", -1, "the retries of a task that gives none, `N` (default 0)")
	fs.StringVar(&req.PushURL, "push-url", "", "where a push type's tasks are posted, `URL`")
	name, err := e.oneTypeName("put", fs, args)
	if err != nil {
		return err
	}
	if req.Mode == "" || *schemaFile == "" {
		return cmdUsage("types", "put wants --mode and --schema")
	}
	if req.ParamsSchema, err = readSchema(*schemaFile); err != nil {
		return err
	}
	if *timeout != 0 {
		req.TimeoutSeconds = timeout
	}
	if *retries >= 0 {
		req.MaxRetries = retries
	}
	t, err := e.c.PutTaskType(ctx, name, req)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, t.Raw)
}

// readSchema reads a params schema from the file path, which must hold
// JSON.
func readSchema(path string) (json.RawMessage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("types put: read --schema: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSchemaFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("types put: read --schema: %w", err)
	}
	if len(data) > maxSchemaFileBytes {
		return nil, cmdUsage("types", "--schema %s is over %d bytes", path, maxSchemaFileBytes)
	}
	if !json.Valid(data) {
		return nil, cmdUsage("types", "--schema %s does not hold JSON", path)
	}
	return data, nil
}

// typesList prints every task type, a line each.
func typesList(ctx context.Context, e *cliEnv, args []string) error {
	pos, err := e.parseArgs(newFlags("types"), "types", args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return cmdUsage("types", "ls takes no arguments")
	}
	types, err := e.c.TaskTypes(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tKIND\tTIMEOUT\tRETRIES\tPUSH URL\tUPDATED")
	for _, t := range types {
		kind := "builtin"
		if t.Mode != nil {
			kind = *t.Mode
		}
		timeout, retries := "-", "-"
		if t.TimeoutSeconds != nil {
			timeout = strconv.FormatFloat(*t.TimeoutSeconds, 'f', -1, 64) + "s"
		}
		if t.MaxRetries != nil {
			retries = strconv.Itoa(*t.MaxRetries)
		}
		push := deref(t.PushURL)
		if push == "" {
			push = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, kind, timeout, retries, push, timeOrDash(t.UpdatedAt))
	}
	return w.Flush()
}
