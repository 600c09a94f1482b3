package cli

import (
	"context"
	"fmt"
)

// cmdCallbacks reads or rotates the caller's callback signing secret.
func cmdCallbacks(ctx context.Context, e *cliEnv, args []string) error {
	if len(args) == 0 {
		return cmdUsage("callbacks", "want secret or rotate")
	}
	call := e.c.CallbackSecret
	switch args[0] {
	case "secret":
	case "rotate":
		call = e.c.RotateCallbackSecret
	case "-h", "-help", "--help":
		fmt.Fprintf(e.stdout, "Usage: taskrunner %s\n", clientCommands["callbacks"].synopsis)
		return nil
	default:
		return cmdUsage("callbacks", "unknown callbacks command %q; want secret or rotate", args[0])
	}
	rest, err := e.parseArgs(newFlags("callbacks "+args[0]), "callbacks", args[1:])
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return cmdUsage("callbacks", "callbacks %s takes no arguments", args[0])
	}
	s, err := call(ctx)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, s.Raw)
}
