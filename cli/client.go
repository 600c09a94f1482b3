package cli

// The client subcommands: submit, get, wait, cancel, tasks, search, artifact
// and schedules (schedules.go) talk to a running API at TASKRUNNER_URL with
// TASKRUNNER_API_KEY. They need nothing of the server's configuration.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/client"
)

// Client environment.
const (
	envURL        = "TASKRUNNER_URL"
	envAPIKey     = "TASKRUNNER_API_KEY"
	defaultAPIURL = "http://127.0.0.1:8000"
)

// exitWaitTimeout is the exit status of a wait whose --timeout passed
// before the task finished.
const exitWaitTimeout = 3

// exitError ends the program with a given exit status and message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// clientCommand is one client subcommand.
type clientCommand struct {
	synopsis string // after "taskrunner "
	run      func(ctx context.Context, e *cliEnv, args []string) error
}

var clientCommands map[string]clientCommand

func init() {
	clientCommands = map[string]clientCommand{
		"submit":    {"submit TYPE [--param k=v ...] [--params JSON] [--timeout SECONDS] [--retries N] [--priority N] [--queue Q] [--run-at RFC3339] [--idempotency-key K] [--callback-url URL] [--wait] [-q]", cmdSubmit},
		"get":       {"get ID", cmdGet},
		"wait":      {"wait ID [--timeout DURATION] [-q]", cmdWait},
		"cancel":    {"cancel ID", cmdCancel},
		"limits":    {"limits", cmdLimits},
		"search":    {"search QUERY... [--source S ...] [--recency-days N] [--max-results N] [--idempotency-key K] [--callback-url URL] [--wait] [-q]", cmdSearch},
		"schedules": {"schedules add NAME (--every DURATION | --cron EXPR [--tz ZONE]) [--missed run_once|skip] TYPE [--param k=v ...] [--params JSON] [--timeout SECONDS] [--retries N] [--priority N] [--queue Q] [--callback-url URL] | ls | get NAME | pause NAME | resume NAME | rm NAME", cmdSchedules},
		"tasks":     {tasksSynopsis, cmdTasks},
		"artifact":  {"artifact put TASK_ID FILE [--name N] [--type T] [--content-type CT] | get ARTIFACT_ID [-o FILE] | meta ARTIFACT_ID | ls TASK_ID [--limit N]", cmdArtifact},
		"callbacks": {"callbacks secret | rotate", cmdCallbacks},
		"types":     {"types ls | get NAME | put NAME --mode pull|push --schema FILE [--timeout SECONDS] [--retries N] [--push-url URL] | rm NAME [--force]", cmdTypes},
	}
}

// cliEnv is what a client subcommand works with.
type cliEnv struct {
	c      *client.Client
	keySet bool
	stdout io.Writer
	stderr io.Writer
	// live forces the progress display's mode in tests; nil: decided by
	// whether stderr is a terminal.
	live *bool
}

// runClient runs a client subcommand against the API at TASKRUNNER_URL.
func runClient(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	base := getenv(envURL)
	if base == "" {
		base = defaultAPIURL
	}
	key := strings.TrimSpace(getenv(envAPIKey))
	c, err := client.New(base, key, nil)
	if errors.Is(err, client.ErrInvalidAPIKey) {
		return fmt.Errorf("%s: %w", envAPIKey, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", envURL, err)
	}
	c.UserAgent = "taskrunner-cli"
	e := &cliEnv{c: c, keySet: key != "", stdout: stdout, stderr: stderr}
	err = clientCommands[cmd].run(ctx, e, args)
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return e.explain(err)
}

// explain adds what the user can do about an error: which URL was
// unreachable, whether a key was sent.
func (e *cliEnv) explain(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && apiErr.Code == "unauthorized" {
		if e.keySet {
			return fmt.Errorf("%w (the key in %s was refused)", err, envAPIKey)
		}
		return fmt.Errorf("%w (%s is not set)", err, envAPIKey)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return fmt.Errorf("cannot reach the API at %s (%s): %w", e.c.BaseURL(), envURL, err)
	}
	return err
}

// newFlags is a subcommand's flag set; its errors become usage errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseArgs parses flags anywhere among the positional arguments (Go's
// flag package stops at the first positional one) and returns the
// positional ones; "--" ends the flags. -h prints the subcommand's help
// and returns errHelpShown.
func (e *cliEnv) parseArgs(fs *flag.FlagSet, cmd string, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				e.printHelp(fs, cmd)
				return nil, errHelpShown
			}
			return nil, cmdUsage(cmd, "%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// errHelpShown ends a subcommand whose help was asked for: nothing failed.
var errHelpShown = errors.New("help shown")

func (e *cliEnv) printHelp(fs *flag.FlagSet, cmd string) {
	fmt.Fprintf(e.stdout, "Usage: taskrunner %s\n", clientCommands[cmd].synopsis)
	fs.SetOutput(e.stdout)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// cmdUsage is a usage error of a client subcommand, with its synopsis.
func cmdUsage(cmd, format string, args ...any) error {
	return &usageError{fmt.Sprintf("%s: %s\nusage: taskrunner %s", cmd, fmt.Sprintf(format, args...), clientCommands[cmd].synopsis)}
}

// parseTaskID reads a task id argument.
func parseTaskID(cmd, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, cmdUsage(cmd, "%q is not a task id (a positive whole number)", s)
	}
	return id, nil
}

// printJSON writes raw JSON indented, with a final newline.
func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// ---- submit ----

func cmdSubmit(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("submit")
	var req client.SubmitRequest
	setParams := taskFlags(fs, &req)
	fs.Func("run-at", "when to run, as an `RFC3339` time", func(s string) error {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return errors.New("must be an RFC 3339 time such as 2030-01-01T09:00:00Z")
		}
		req.RunAt = &t
		return nil
	})
	fs.StringVar(&req.IdempotencyKey, "idempotency-key", "", "a `key` that makes a repeated submission return the first task")
	wait := fs.Bool("wait", false, "wait until the task finishes and print it then")
	quiet := fs.Bool("q", false, "with --wait, show no progress")
	pos, err := e.parseArgs(fs, "submit", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cmdUsage("submit", "want one task TYPE, got %d arguments", len(pos))
	}
	req.Type = pos[0]
	if err := setParams(); err != nil {
		return cmdUsage("submit", "%v", err)
	}
	t, err := e.c.Submit(ctx, req)
	if err != nil {
		return err
	}
	if !*wait {
		return printJSON(e.stdout, t.Raw)
	}
	return e.waitAndPrint(ctx, t.ID, 0, *quiet)
}

// taskFlags defines on fs the flags of a task request that submit and
// schedules add share; the function it returns sets req.Params from them
// once fs is parsed.
func taskFlags(fs *flag.FlagSet, req *client.SubmitRequest) func() error {
	params := paramFlags{}
	fs.Var(&params, "param", "a param `k=v` (repeatable); numbers and true/false are sent as such, anything else as a string")
	paramsJSON := fs.String("params", "", "params as a JSON `object`; --param values are set on top")
	fs.Func("timeout", "the task's timeout in `SECONDS` (default: the server's cap)", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			return errors.New("must be a positive number of seconds")
		}
		req.TimeoutSeconds = &v
		return nil
	})
	intFlag(fs, &req.MaxRetries, "retries", "further attempts after a failure (`N`)")
	intFlag(fs, &req.Priority, "priority", "`N` from 1 (first) to 4 (last)")
	fs.StringVar(&req.Queue, "queue", "", "the `queue` to run on")
	fs.StringVar(&req.CallbackURL, "callback-url", "", "a `URL` that gets a signed POST of the task when it finishes")
	return func() (err error) {
		req.Params, err = buildParams(*paramsJSON, params)
		return err
	}
}

// intFlag defines an int flag that stays nil unless given.
func intFlag(fs *flag.FlagSet, p **int, name, usage string) {
	fs.Func(name, usage, func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("must be a whole number")
		}
		*p = &v
		return nil
	})
}

// paramFlags collects --param k=v in order.
type paramFlags [][2]string

func (p *paramFlags) String() string { return "" }

func (p *paramFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not k=v", s)
	}
	*p = append(*p, [2]string{k, v})
	return nil
}

// jsonNumber is JSON's number grammar.
var jsonNumber = regexp.MustCompile(`^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$`)

// paramValue is a --param value as JSON: a JSON number or true/false as
// such, anything else as a string.
func paramValue(v string) json.RawMessage {
	if v == "true" || v == "false" || jsonNumber.MatchString(v) {
		return json.RawMessage(v)
	}
	s, _ := json.Marshal(v)
	return s
}

// buildParams merges --params (a JSON object) and --param pairs, in that
// order, into the params object; nil when neither was given.
func buildParams(paramsJSON string, pairs paramFlags) (json.RawMessage, error) {
	if paramsJSON == "" && len(pairs) == 0 {
		return nil, nil
	}
	obj := map[string]json.RawMessage{}
	if paramsJSON != "" {
		dec := json.NewDecoder(strings.NewReader(paramsJSON))
		if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
			return nil, errors.New("--params must be one JSON object")
		}
	}
	for _, kv := range pairs {
		obj[kv[0]] = paramValue(kv[1])
	}
	return json.Marshal(obj)
}

// ---- get, cancel, wait ----

func cmdGet(ctx context.Context, e *cliEnv, args []string) error {
	id, err := e.oneTaskID("get", args)
	if err != nil {
		return err
	}
	t, err := e.c.Get(ctx, id)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, t.Raw)
}

// cmdLimits prints the server's limits and the caller's own (under
// "tenant").
func cmdLimits(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("limits")
	rest, err := e.parseArgs(fs, "limits", args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return cmdUsage("limits", "limits takes no arguments")
	}
	raw, err := e.c.Limits(ctx)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, raw)
}

func cmdCancel(ctx context.Context, e *cliEnv, args []string) error {
	id, err := e.oneTaskID("cancel", args)
	if err != nil {
		return err
	}
	t, err := e.c.Cancel(ctx, id)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, t.Raw)
}

// oneTaskID parses the arguments of a subcommand that takes one task id
// and no flags.
func (e *cliEnv) oneTaskID(cmd string, args []string) (int64, error) {
	pos, err := e.parseArgs(newFlags(cmd), cmd, args)
	if err != nil {
		return 0, err
	}
	if len(pos) != 1 {
		return 0, cmdUsage(cmd, "want one task ID, got %d arguments", len(pos))
	}
	return parseTaskID(cmd, pos[0])
}

func cmdWait(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("wait")
	var timeout time.Duration
	fs.Func("timeout", "give up after this `DURATION` (30s, 5m, or seconds), exiting with status 3; default: no limit", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			secs, nerr := strconv.ParseFloat(s, 64)
			if nerr != nil {
				return errors.New(`must be a duration such as "30s" or a number of seconds`)
			}
			d = time.Duration(secs * float64(time.Second))
		}
		if d <= 0 {
			return errors.New("must be positive")
		}
		timeout = d
		return nil
	})
	quiet := fs.Bool("q", false, "show no progress")
	pos, err := e.parseArgs(fs, "wait", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cmdUsage("wait", "want one task ID, got %d arguments", len(pos))
	}
	id, err := parseTaskID("wait", pos[0])
	if err != nil {
		return err
	}
	return e.waitAndPrint(ctx, id, timeout, *quiet)
}

// errWaitTimeout is the cause of a wait's context ending at its --timeout.
var errWaitTimeout = errors.New("wait timeout")

// waitAndPrint waits for task id (up to timeout, when > 0) with progress on
// stderr, prints the task, and returns nil if it completed, an exit 1 if it
// was cancelled or discarded, and an exit 3 if the timeout came first.
func (e *cliEnv) waitAndPrint(ctx context.Context, id int64, timeout time.Duration, quiet bool) error {
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeoutCause(ctx, timeout, errWaitTimeout)
		defer cancel()
	}
	var onState func(*client.Task)
	var onProgress func(client.Progress)
	var p *progress
	if !quiet {
		live := isTerminal(e.stderr)
		if e.live != nil {
			live = *e.live
		}
		p = newProgress(e.stderr, id, live)
		onState, onProgress = p.update, p.progressed
	}
	t, err := e.c.WaitProgress(wctx, id, onState, onProgress)
	if p != nil {
		p.stop()
	}
	if err != nil {
		if ctx.Err() == nil && errors.Is(context.Cause(wctx), errWaitTimeout) {
			status := "not seen"
			if t != nil {
				status = string(t.Status)
				if perr := printJSON(e.stdout, t.Raw); perr != nil {
					return perr
				}
			}
			return &exitError{code: exitWaitTimeout, msg: fmt.Sprintf("task %d is still %s after %s", id, status, timeout)}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped waiting for task %d: %w", id, ctx.Err())
		}
		return err
	}
	if err := printJSON(e.stdout, t.Raw); err != nil {
		return err
	}
	if t.Status == taskrunner.StatusCompleted {
		return nil
	}
	msg := fmt.Sprintf("task %d %s", id, t.Status)
	if t.Error != nil {
		msg += ": " + string(t.Error.Code) + ": " + t.Error.Message
	}
	return &exitError{code: 1, msg: msg}
}

// ---- search ----

func cmdSearch(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("search")
	var req client.SearchRequest
	fs.Func("source", "a `source` to ask (repeatable, or comma-separated); default: every allowed one", func(s string) error {
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				req.Sources = append(req.Sources, part)
			}
		}
		return nil
	})
	intFlag(fs, &req.RecencyDays, "recency-days", "only results from the last `N` days (0: any time)")
	intFlag(fs, &req.MaxResults, "max-results", "at most `N` results")
	fs.StringVar(&req.IdempotencyKey, "idempotency-key", "", "a `key` that makes a repeated search return the first task")
	fs.StringVar(&req.CallbackURL, "callback-url", "", "a `URL` that gets a signed POST of the task when it finishes")
	wait := fs.Bool("wait", false, "wait until the search finishes and print the task then")
	quiet := fs.Bool("q", false, "with --wait, show no progress")
	pos, err := e.parseArgs(fs, "search", args)
	if err != nil {
		return err
	}
	req.Query = strings.TrimSpace(strings.Join(pos, " "))
	if req.Query == "" {
		return cmdUsage("search", "a QUERY is required")
	}
	t, err := e.c.Search(ctx, req)
	if err != nil {
		return err
	}
	if !*wait {
		return printJSON(e.stdout, t.Raw)
	}
	return e.waitAndPrint(ctx, t.ID, 0, *quiet)
}

// ---- artifact ----

func cmdArtifact(ctx context.Context, e *cliEnv, args []string) error {
	if len(args) == 0 {
		return cmdUsage("artifact", "want put, get, meta or ls")
	}
	switch args[0] {
	case "put":
		return artifactPut(ctx, e, args[1:])
	case "ls":
		return artifactList(ctx, e, args[1:])
	case "get":
		return artifactGet(ctx, e, args[1:])
	case "meta":
		pos, err := e.parseArgs(newFlags("artifact"), "artifact", args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return cmdUsage("artifact", "meta wants one ARTIFACT_ID, got %d arguments", len(pos))
		}
		a, err := e.c.ArtifactMeta(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(e.stdout, a.Raw)
	case "-h", "-help", "--help":
		fmt.Fprintf(e.stdout, "Usage: taskrunner %s\n", clientCommands["artifact"].synopsis)
		return nil
	default:
		return cmdUsage("artifact", "unknown artifact command %q; want put, get, meta or ls", args[0])
	}
}

// artifactList prints up to --limit of a task's artifacts, oldest first,
// one line each, following the pages.
func artifactList(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("artifact")
	limit := fs.Int("limit", client.MaxArtifactPage, "list at most `N` artifacts, oldest first")
	pos, err := e.parseArgs(fs, "artifact", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cmdUsage("artifact", "ls wants one TASK_ID, got %d arguments", len(pos))
	}
	if *limit <= 0 {
		return cmdUsage("artifact", "--limit must be positive")
	}
	taskID, err := parseTaskID("artifact", pos[0])
	if err != nil {
		return err
	}
	for cursor, left := "", *limit; left > 0; {
		page, err := e.c.TaskArtifacts(ctx, taskID, cursor, min(left, client.MaxArtifactPage))
		if err != nil {
			return err
		}
		for _, a := range page.Artifacts {
			fmt.Fprintf(e.stdout, "%s\t%s\t%s\t%d\t%s\t%s\n", a.ID, a.Name, a.Type, a.Size, a.ContentType,
				a.CreatedAt.UTC().Format(time.RFC3339))
		}
		left -= len(page.Artifacts)
		if page.NextCursor == "" {
			return nil
		}
		cursor = page.NextCursor
	}
	return nil
}

func artifactPut(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("artifact")
	name := fs.String("name", "", "the artifact's `name` (default: the file's base name)")
	typ := fs.String("type", "", "the artifact's `type`, e.g. report")
	contentType := fs.String("content-type", "", "its `media type` (default: from the file's extension, else application/octet-stream)")
	pos, err := e.parseArgs(fs, "artifact", args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return cmdUsage("artifact", "put wants TASK_ID FILE, got %d arguments", len(pos))
	}
	taskID, err := parseTaskID("artifact", pos[0])
	if err != nil {
		return err
	}
	path := pos[1]
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if *name == "" {
		*name = filepath.Base(path)
	}
	if *contentType == "" {
		*contentType = contentTypeOf(path)
	}
	a, err := e.c.PutArtifact(ctx, taskID, *name, f, fi.Size(), client.PutArtifactOptions{Type: *typ, ContentType: *contentType})
	if err != nil {
		return err
	}
	return printJSON(e.stdout, a.Raw)
}

// contentTypeOf guesses a file's media type from its extension.
func contentTypeOf(path string) string {
	if ct := mime.TypeByExtension(filepath.Ext(path)); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

func artifactGet(ctx context.Context, e *cliEnv, args []string) error {
	fs := newFlags("artifact")
	out := fs.String("o", "", "write to `FILE` instead of stdout")
	pos, err := e.parseArgs(fs, "artifact", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cmdUsage("artifact", "get wants one ARTIFACT_ID, got %d arguments", len(pos))
	}
	if *out == "" || *out == "-" {
		_, err := e.c.GetArtifact(ctx, pos[0], e.stdout)
		return err
	}
	return downloadTo(ctx, e.c, pos[0], *out)
}

// downloadTo writes an artifact to path through a temporary file beside it,
// so path is either the whole artifact or as it was before.
func downloadTo(ctx context.Context, c *client.Client, id, path string) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := c.GetArtifact(ctx, id, tmp); err != nil {
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	done = true
	return nil
}

// ---- progress ----

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

var spinner = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

// progressTick is how often the live line is redrawn.
const progressTick = 100 * time.Millisecond

// progress shows a wait's progress on w: on a terminal, one line redrawn
// in place with a spinner, a bar of the worker's progress when it reports
// any, and the time waited; elsewhere, one plain line per change of state
// and per progress report.
type progress struct {
	w     io.Writer
	id    int64
	live  bool
	start time.Time

	mu       sync.Mutex
	task     *client.Task
	reported *client.Progress // the current attempt's latest, if any
	frame    int
	quit     chan struct{}
	done     chan struct{}
}

func newProgress(w io.Writer, id int64, live bool) *progress {
	p := &progress{w: w, id: id, live: live, start: time.Now()}
	if live {
		p.quit, p.done = make(chan struct{}), make(chan struct{})
		p.draw()
		go p.loop()
	}
	return p
}

func (p *progress) loop() {
	defer close(p.done)
	tick := time.NewTicker(progressTick)
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-tick.C:
			p.draw()
		}
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := renderLive(p.id, p.task, p.reported, p.frame, time.Since(p.start))
	p.frame++
	fmt.Fprint(p.w, "\r"+line+"\x1b[K")
}

// update takes a new state of the task.
func (p *progress) update(t *client.Task) {
	if !p.live {
		fmt.Fprintln(p.w, renderPlain(t))
		return
	}
	p.mu.Lock()
	p.task = t
	p.mu.Unlock()
	p.draw()
}

// progressed takes a progress report of the task's worker.
func (p *progress) progressed(r client.Progress) {
	if !p.live {
		fmt.Fprintf(p.w, "task %d: %s\n", p.id, renderProgress(r))
		return
	}
	p.mu.Lock()
	p.reported = &r
	p.mu.Unlock()
	p.draw()
}

// stop ends the display, clearing the live line.
func (p *progress) stop() {
	if !p.live {
		return
	}
	close(p.quit)
	<-p.done
	fmt.Fprint(p.w, "\r\x1b[K")
}

// progressBarWidth is the number of cells of the live progress bar.
const progressBarWidth = 20

// renderProgress is a progress report as text: "3/10 seconds slept", or
// "4096 bytes received" when the total is not known.
func renderProgress(r client.Progress) string {
	if r.Total > 0 {
		return fmt.Sprintf("%d/%d %s", r.Done, r.Total, r.Message)
	}
	return fmt.Sprintf("%d %s", r.Done, r.Message)
}

// renderBar is a progress bar of done out of total, or "" when the total
// is not known.
func renderBar(r client.Progress) string {
	if r.Total <= 0 {
		return ""
	}
	filled := int(min(max(r.Done, 0), r.Total) * progressBarWidth / r.Total)
	return "[" + strings.Repeat("█", filled) + strings.Repeat("░", progressBarWidth-filled) +
		fmt.Sprintf("] %3d%%", min(max(r.Done, 0), r.Total)*100/r.Total)
}

// renderLive is the live status line (without the carriage return); r is
// the latest progress report of t's current attempt, if any.
func renderLive(id int64, t *client.Task, r *client.Progress, frame int, elapsed time.Duration) string {
	var b strings.Builder
	b.WriteString(string(spinner[frame%len(spinner)]))
	fmt.Fprintf(&b, " task %d", id)
	if t != nil {
		fmt.Fprintf(&b, " %s %s", t.Type, statusWord(t))
		if t.Attempt > 0 {
			fmt.Fprintf(&b, "  attempt %d/%d", t.Attempt, t.MaxAttempts)
		}
		if t.Error != nil && !t.Finished() {
			fmt.Fprintf(&b, "  %s", t.Error.Code)
		}
		if r != nil && r.Attempt == t.Attempt && !t.Finished() {
			if bar := renderBar(*r); bar != "" {
				b.WriteString("  " + bar)
			}
			b.WriteString("  " + renderProgress(*r))
		}
	}
	fmt.Fprintf(&b, "  %s", formatElapsed(elapsed))
	return b.String()
}

// formatElapsed is 12.3s under a minute, 1m23s from then on.
func formatElapsed(d time.Duration) string {
	if d < time.Minute-50*time.Millisecond {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// renderPlain is the line logged for a change of state.
func renderPlain(t *client.Task) string {
	var b strings.Builder
	fmt.Fprintf(&b, "task %d: %s", t.ID, statusWord(t))
	if t.Attempt > 0 {
		fmt.Fprintf(&b, " (attempt %d/%d)", t.Attempt, t.MaxAttempts)
	}
	if t.Status == taskrunner.StatusScheduled && t.Attempt == 0 {
		fmt.Fprintf(&b, " for %s", t.ScheduledAt.UTC().Format(time.RFC3339))
	}
	if t.Error != nil {
		fmt.Fprintf(&b, ": %s: %s", t.Error.Code, t.Error.Message)
	}
	return b.String()
}

// statusWord is the task's status, saying when a cancel is on its way.
func statusWord(t *client.Task) string {
	if t.CancelRequested && !t.Finished() {
		return string(t.Status) + " (cancelling)"
	}
	return string(t.Status)
}

// ---- tasks ls, cancel, retry, rm ----

// tasksSynopsis is the synopsis of `taskrunner tasks`.
const tasksSynopsis = "tasks ls|cancel|retry|rm [--filter k=v ...] [--limit N] [--dry-run] [--all]"

// tasksActions are the bulk subcommands of `taskrunner tasks` and the
// bulk actions they call.
var tasksActions = map[string]string{"cancel": client.BulkCancel, "retry": client.BulkRetry, "rm": client.BulkDelete}

// filterFlags collects --filter k=v, the fields of GET /tasks's query
// string: status may repeat and hold comma-separated statuses, params is
// a JSON object.
type filterFlags url.Values

func (f filterFlags) String() string { return "" }

func (f filterFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not k=v", s)
	}
	url.Values(f).Add(strings.TrimSpace(k), v)
	return nil
}

// cmdTasks lists tasks (ls) or cancels, retries or deletes (rm) those a
// filter matches. The filter is checked here as the server checks it, so
// a mistyped field fails before anything is sent. A bulk action without
// a filter needs --all, so that a forgotten --filter acts on nothing.
func cmdTasks(ctx context.Context, e *cliEnv, args []string) error {
	if len(args) == 0 {
		return cmdUsage("tasks", "want ls, cancel, retry or rm")
	}
	sub := args[0]
	if sub == "-h" || sub == "-help" || sub == "--help" {
		sub = "ls"
		args = []string{"ls", "-h"}
	}
	action, bulk := tasksActions[sub]
	if !bulk && sub != "ls" {
		return cmdUsage("tasks", "unknown tasks command %q; want ls, cancel, retry or rm", sub)
	}
	fs := newFlags("tasks")
	filters := filterFlags{}
	fs.Var(filters, "filter", "a filter field `k=v` (repeatable): type, status, owner, created_after, created_before, error_code, queue, params (a JSON object)")
	limit := fs.Int("limit", client.DefaultListLimit, "ls: list at most `N` tasks, newest first")
	dryRun := fs.Bool("dry-run", false, "cancel, retry, rm: only count the tasks the action would touch")
	all := fs.Bool("all", false, "cancel, retry, rm: act without a filter, on every task the action applies to")
	pos, err := e.parseArgs(fs, "tasks", args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cmdUsage("tasks", "%s takes no arguments but flags, got %q", sub, pos[0])
	}
	f, err := taskrunner.ParseFilter(url.Values(filters))
	if err != nil {
		return cmdUsage("tasks", "--filter %s", taskrunner.ErrorMessage(err))
	}
	if !bulk {
		if *limit <= 0 {
			return cmdUsage("tasks", "--limit must be positive")
		}
		return e.listTasks(ctx, f, *limit)
	}
	if f.IsZero() && !*all && !*dryRun {
		return cmdUsage("tasks", "%s without --filter acts on every task: say --all if that is what you mean", sub)
	}
	res, err := e.c.Bulk(ctx, action, f, *dryRun)
	if err != nil {
		return err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, out)
}

// listTasks prints up to limit tasks f matches, newest first, one line
// each, following the pages.
func (e *cliEnv) listTasks(ctx context.Context, f taskrunner.Filter, limit int) error {
	for cursor := ""; limit > 0; {
		page, err := e.c.List(ctx, f, cursor, min(limit, client.MaxListPage))
		if err != nil {
			return err
		}
		for i := range page.Tasks {
			t := &page.Tasks[i]
			code := "-"
			if t.Error != nil {
				code = string(t.Error.Code)
			}
			fmt.Fprintf(e.stdout, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Type, t.Status, t.Owner, t.Queue,
				t.CreatedAt.UTC().Format(time.RFC3339), code)
		}
		limit -= len(page.Tasks)
		if page.NextCursor == "" {
			return nil
		}
		cursor = page.NextCursor
	}
	return nil
}
