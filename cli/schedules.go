package cli

// The schedules client subcommand: add, ls, get, pause, resume and rm.

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/taskrunner/taskrunner/client"
)

func cmdSchedules(ctx context.Context, e *cliEnv, args []string) error {
	if len(args) == 0 {
		return cmdUsage("schedules", "want add, ls, get, pause, resume or rm")
	}
	one := func(what string, call func(context.Context, string) (*client.Schedule, error)) error {
		name, err := e.oneScheduleName(what, args[1:])
		if err != nil {
			return err
		}
		s, err := call(ctx, name)
		if err != nil {
			return err
		}
		return printJSON(e.stdout, s.Raw)
	}
	switch args[0] {
	case "add":
		return schedulesAdd(ctx, e, args[1:])
	case "ls":
		return schedulesList(ctx, e, args[1:])
	case "get":
		return one("get", e.c.Schedule)
	case "pause":
		return one("pause", e.c.PauseSchedule)
	case "resume":
		return one("resume", e.c.ResumeSchedule)
	case "rm":
		name, err := e.oneScheduleName("rm", args[1:])
		if err != nil {
			return err
		}
		if err := e.c.DeleteSchedule(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "schedule %s deleted\n", name)
		return nil
	case "-h", "-help", "--help":
		fmt.Fprintf(e.stdout, "Usage: taskrunner %s\n", clientCommands["schedules"].synopsis)
		return nil
	default:
		return cmdUsage("schedules", "unknown schedules command %q; want add, ls, get, pause, resume or rm", args[0])
	}
}

// oneScheduleName parses the arguments of a schedules command that takes
// one name and no flags.
func (e *cliEnv) oneScheduleName(what string, args []string) (string, error) {
	pos, err := e.parseArgs(newFlags("schedules"), "schedules", args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", cmdUsage("schedules", "%s wants one schedule NAME, got %d arguments", what, len(pos))
	}
	return pos[0], nil
}

func schedulesAdd(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("schedules")
	var req client.ScheduleRequest
	fs.StringVar(&req.Every, "every", "", "tick every `DURATION` (30s, 5m, 1h; whole seconds, at least 1s)")
	fs.StringVar(&req.Cron, "cron", "", "tick on the five-field cron `EXPR` (\"*/5 * * * *\")")
	fs.StringVar(&req.TimeZone, "tz", "", "the IANA time `ZONE` of --cron (default UTC)")
	fs.StringVar(&req.Missed, "missed", "", "what a tick missed while nothing ran becomes: `run_once` (default) or skip")
	setParams := taskFlags(fs, &req.Task)
	pos, err := e.parseArgs(fs, "schedules", args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return cmdUsage("schedules", "add wants a schedule NAME and a task TYPE, got %d arguments", len(pos))
	}
	req.Name, req.Task.Type = pos[0], pos[1]
	if err := setParams(); err != nil {
		return cmdUsage("schedules", "%v", err)
	}
	s, err := e.c.CreateSchedule(ctx, req)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, s.Raw)
}

// schedulesList prints every schedule the caller sees, a line each.
func schedulesList(ctx context.Context, e *cliEnv, args []string) error {
	pos, err := e.parseArgs(newFlags("schedules"), "schedules", args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return cmdUsage("schedules", "ls takes no arguments")
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tOWNER\tWHEN\tMISSED\tSTATE\tNEXT RUN\tLAST TICK\tSKIPPED")
	cursor := ""
	for {
		page, err := e.c.Schedules(ctx, cursor)
		if err != nil {
			return err
		}
		for _, s := range page.Schedules {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s.Name, s.Owner, scheduleWhen(&s), s.Missed, scheduleState(&s),
				timeOrDash(first(s.NextRuns)), timeOrDash(s.LastTickAt), s.SkippedTicks)
		}
		if page.NextCursor == nil {
			return w.Flush()
		}
		cursor = *page.NextCursor
	}
}

func scheduleWhen(s *client.Schedule) string {
	if s.Every != nil {
		return "every " + *s.Every
	}
	when := "cron " + strings.TrimSpace(deref(s.Cron))
	if tz := deref(s.TimeZone); tz != "" && tz != "UTC" {
		when += " (" + tz + ")"
	}
	return when
}

func scheduleState(s *client.Schedule) string {
	if s.Paused {
		return "paused"
	}
	return "active"
}

func first(ts []time.Time) *time.Time {
	if len(ts) == 0 {
		return nil
	}
	return &ts[0]
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// deref is *p, or "" when p is nil.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
