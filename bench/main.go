// Command bench is `make bench`: it measures taskrunner against bare River
// on this machine, in one run and (but for the artifact figures' server)
// one process, and prints every figure side by side with its bare River
// counterpart and the ratio between them (taskrunner / bare River; for
// pickup latency, where lower is better, bare River's p50 / taskrunner's,
// so that there too 1 is parity and above 1 is taskrunner ahead), as
// DESIGN.md's "Performance" section asks; a figure with no counterpart
// (cached search, the server's peak RSS) shows "-" there. For the
// artifact figures the bare column is minio-go's.
//
// Figures:
//
//   - single enqueue with -clients concurrent clients: River's
//     client.Insert on an insert-only client against POST /tasks (an echo
//     task) served over loopback HTTP by the real API, wired as
//     `taskrunner serve` wires it but with no enqueue limiter;
//   - batch enqueue of -batch-size (50) with as many clients: River's
//     client.InsertMany of that many no-op jobs per call on an insert-only
//     client against POST /tasks/batch of that many echo tasks (one
//     transaction: ValidateBatch, then SubmitBatch's InsertManyTx) through
//     the same API, its MAX_BATCH_SIZE raised to the batch size if below
//     it; in jobs (tasks inserted) per second. Every enqueue figure checks
//     afterwards that river_job holds exactly the jobs of the calls that
//     succeeded;
//   - end-to-end echo: jobs inserted up front with InsertManyFast (timed
//     apart), then the time for a started client to complete them all,
//     River's no-op worker against taskrunner's echo worker with its run
//     records;
//   - pickup latency enqueue -> running: into an otherwise idle working
//     client, tasks enqueued one at a time at -pickup-rate (50/s), first
//     -pickup-warmup's worth not counted, then -pickup-tasks measured; once
//     all completed, each measured task's river_job.attempted_at -
//     created_at (River sets created_at as it inserts, attempted_at as a
//     worker fetches the job), p50 against the goal and p99. taskrunner:
//     POST /tasks to the API on the working client jobs.NewClient builds
//     from the configuration, as `taskrunner serve` shares one (its
//     WORKER_CONCURRENCY, WORKER_FETCH_COOLDOWN and
//     WORKER_FETCH_POLL_INTERVAL, its run recorder; no retention job),
//     every task checked to have its completed run record; bare River:
//     client.Insert on a working client with the no-op worker at the
//     end-to-end figure's settings (-workers, -fetch-cooldown, -fetch-poll).
//     Each task must have completed on its first attempt;
//   - fair share across tenants: a busy tenant enqueues -fair-backlog's
//     worth of sleep tasks of -fair-sleep for the pool (WORKER_CONCURRENCY)
//     before the workers start, then a quiet tenant enqueues -fair-tasks
//     echo tasks one at a time at -fair-rate through the task service;
//     the quiet tenant's pickup latency (attempted_at - created_at) p50
//     and p99, with one shared queue (TENANT_FAIR_SHARE=false, in the
//     bare River column) against a queue per tenant (taskrunner column),
//     p99 against -fair-goal, and beside them the quiet tenant alone with
//     no backlog. It fails if the backlog drained before the quiet
//     tenant's last task was enqueued;
//   - callback latency finished -> received, which has no bare River
//     counterpart (River has no callbacks): echo tasks with a callback_url
//     submitted one at a time at -callback-rate (50/s) through POST /tasks,
//     first -callback-warmup's worth not counted, then -callback-tasks
//     measured, to a working client wired as `taskrunner serve` wires it
//     (its WORKER_* settings, run recorder) with callbacks on (a random
//     CALLBACK_SECRET, CALLBACK_ALLOW_PRIVATE_NETWORKS=true and
//     CALLBACK_ALLOWED_PORTS the port of a receiver on loopback, which
//     checks every delivery's signature and notes when it arrived); the
//     arrival of each measured task's delivery - its finished_at in the
//     delivered body (River's finalized_at), p50 against -callback-goal
//     and p99. Every measured task must be delivered as task.completed;
//   - cached search, which has no bare River counterpart: the server time
//     (runs.duration_ms, the worker's time from the aggregator's Redis
//     lookups to RecordOutput) of -search-tasks identical searches whose
//     one source (a fake Brave Search API on loopback) is a Redis cache
//     hit, submitted through POST /search to a working taskrunner client
//     wired as `taskrunner serve` wires it (its own WORKER_CONCURRENCY and
//     fetch settings), after one search that warmed the cache; p50 against
//     the goal and p99, with enqueue -> finished (tasks.finished_at -
//     created_at) beside it for information. The cache entries live under a
//     Redis key prefix of their own, deleted at the end of each round;
//   - artifact upload and download of an -artifact-mb MiB random body (25
//     MiB: 26,214,400 bytes), in MB/s (10^6 bytes/s): bare minio-go's
//     PutObject with a known size and the options the artifact service
//     uses (DisableMultipart) and GetObject copied to io.Discard, against
//     PUT /tasks/{id}/artifacts/{name} with a Content-Length and GET
//     /artifacts/{id} served by a `taskrunner serve` process of its own
//     (-taskrunner-bin, started afresh every round with the bench database,
//     the bench's MinIO, TASK_MAX_ARTIFACT_MB one above -artifact-mb and a
//     port the kernel picks, read from its api_listening log line, and
//     stopped with SIGTERM). An upload of unknown length (multipart with
//     5 MiB parts, as the service does; chunked HTTP) is shown for
//     information. Each kind starts with one transfer per side that is not
//     counted, then the sides alternate transfer by transfer,
//     -artifact-reps times each. The server's peak RSS is its VmHWM from
//     /proc after the transfers; the table shows the largest across rounds
//     against the -rss-goal-mb ceiling. The MinIO is the bench's own, named
//     by BENCH_MINIO_ENDPOINT, BENCH_MINIO_USER and BENCH_MINIO_PASSWORD:
//     scripts/bench.sh starts one on a spare loopback port with a temporary
//     data folder and random credentials, and stops it at the end. The
//     round's objects are removed at its end.
//   - the server's peak RSS while -base64-uploads clients (8) each POST
//     /artifacts the same body base64-encoded in JSON at once, in a serve
//     process of its own per round (MAX_CONCURRENT_UPLOADS as many), against
//     the -base64-rss-goal-mb ceiling (200 MB).
//
// The scale figures, with -scale N (`make bench-scale`: 1,000,000), are
// measured in every round right after the empty-queue figures they are
// held to (so a busy spell of the machine weighs on both alike), but for
// the retention figure, which comes after the rounds; both sides run on
// the one bench database, so each is a ratio measured in one run:
//
//   - the single-enqueue, batch-enqueue, end-to-end and pickup figures
//     again, measured as above, with N echo tasks already queued: copies,
//     made with INSERT ... SELECT generate_series, of one echo task as
//     POST /tasks enqueues it, in state scheduled an hour ahead so they
//     wait in river_job through every figure, followed by VACUUM ANALYZE
//     so the figures see the steady state, not a table fresh from a bulk
//     insert; made afresh every round and dropped at its end. Between
//     measurements only the jobs after the fill are deleted (the run
//     tables emptied) and river_job vacuumed. Each throughput row's goal
//     is on taskrunner's rate with the fill / its rate on an empty queue
//     (each the median of the rounds):
//     -scale-goal (0.8); pickup's, as above, p50 within -pickup-goal;
//   - bytes on disk per finished task: after each side's end-to-end run
//     on an empty queue, VACUUM FULL (the rows at rest), then
//     pg_total_relation_size (indexes and TOAST included) of river_job,
//     runs, run_metrics and run_notes, less what they take empty, / jobs:
//     echo tasks with their run records against bare River's no-op jobs.
//     The ratio is taskrunner / bare River, lower is better, within
//     -bytes-goal (1.5);
//   - pickup latency during a retention pass over N finished tasks: N
//     jobs completed longer ago than TASK_RETENTION and
//     ARTIFACT_RETENTION filled with SQL (taskrunner: echo tasks with
//     their completed run records; bare River: no-op jobs), VACUUM
//     ANALYZE, then a working client started and tasks enqueued one at a
//     time at -pickup-rate, as the pickup figure does, until the pass has
//     deleted them all and at least -pickup-tasks were measured after
//     -pickup-warmup. Bare River: its job cleaner at TASK_RETENTION;
//     taskrunner: as `taskrunner serve` runs retention, River's job
//     cleaner at TASK_RETENTION and taskrunner's retention job
//     (jobs/retention.go, enqueued as the client becomes leader) deleting
//     the runs past ARTIFACT_RETENTION. Goal: taskrunner's p99 within
//     -retention-goal (100 ms); -retention-rounds rounds (1), as each
//     fills N rows per side.
//
// The bench owns a database of its own (-db, default taskrunner_bench) on
// the server DATABASE_URL names; it drops and recreates it at the start,
// migrates it like `taskrunner migrate up`, and empties the job and run
// tables before every measurement so each one starts clean.
//
// Every figure is measured -rounds times (5), alternating which side goes
// first, and the table shows each side's median and the ratio of the
// medians; for the latency figures, the median across rounds
// of each round's p50 and of each round's p99 (each side apart); for the
// server's peak RSS, the largest of the rounds. A second table shows every
// figure's value in each round, in order, and their spread (min, median,
// max): the round's ratio to bare River, counted as in the first table;
// where the goal is on p99, taskrunner's p99; for a latency with no bare
// counterpart, its p50; for a peak RSS, the peak. A figure's size flag at 0
// skips it: -batch-size, -pickup-tasks, -callback-tasks, -fair-tasks,
// -search-tasks, -artifact-mb or -artifact-reps. The machine's load average
// is printed with it: on a busy machine the figures say more about the
// neighbours than about taskrunner.
//
// Progress goes to stderr while it runs; the final table goes to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner/config"
)

// options are the bench's command-line flags.
type options struct {
	dbName        string
	dbMaxConns    int
	keepDB        bool
	logLevel      string
	rounds        int
	breakdown     bool
	clients       int
	enqueueWarm   time.Duration
	enqueueDur    time.Duration
	e2eJobs       int
	workers       int
	fetchCool     time.Duration
	fetchPoll     time.Duration
	pollEvery     time.Duration
	e2eTimeout    time.Duration
	insertBatch   int
	enqueueGoal   float64
	endToEndGoal  float64
	batchSize     int
	batchGoal     float64
	pickupTasks   int
	pickupRate    float64
	pickupWarm    time.Duration
	pickupGoal    time.Duration
	cbTasks       int
	cbRate        float64
	cbWarm        time.Duration
	cbGoal        time.Duration
	fairTasks     int
	fairRate      float64
	fairBacklog   time.Duration
	fairSleep     time.Duration
	fairGoal      time.Duration
	searchTasks   int
	searchClients int
	searchGoal    time.Duration
	artifactMB    int
	artifactReps  int
	chunked       bool
	artifactGoal  float64
	rssGoalMB     float64
	base64Uploads int
	base64GoalMB  float64
	taskrunnerBin string
	serverWorkers int
	serverConns   int
	cpuProfile    string
	scale         int
	scaleGoal     float64
	bytesGoal     float64
	retentionGoal time.Duration
	retentionMax  time.Duration
	retRounds     int
}

// batch reports whether the batch-enqueue figure is measured.
func (o *options) batch() bool { return o.batchSize > 0 }

// pickup reports whether the pickup-latency figure is measured.
func (o *options) pickup() bool { return o.pickupTasks > 0 }

// callbacks reports whether the callback-latency figure is measured.
func (o *options) callbacks() bool { return o.cbTasks > 0 }

// fair reports whether the fair-share figure is measured.
func (o *options) fair() bool { return o.fairTasks > 0 }

// scaled reports whether the scale figures are measured.
func (o *options) scaled() bool { return o.scale > 0 }

// artifacts reports whether the artifact figures are measured.
func (o *options) artifacts() bool { return o.artifactMB > 0 && o.artifactReps > 0 }

// parseOptions reads the flags in args (without the program name).
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dbName, "db", "taskrunner_bench", "database the bench drops, recreates and uses, on DATABASE_URL's server")
	fs.IntVar(&o.dbMaxConns, "db-max-conns", 0, "size of the pgx pool both sides share (0: DB_MAX_CONNS, default 40, as in taskrunner serve)")
	fs.BoolVar(&o.keepDB, "keep-db", false, "leave the bench database in place at the end, for inspection")
	fs.StringVar(&o.logLevel, "log-level", "warn", "level of the JSON log lines taskrunner and River write to stderr (debug, info, warn, error)")
	fs.IntVar(&o.rounds, "rounds", 5, "measure every figure this many times, alternating which side goes first, and report each side's median")
	fs.BoolVar(&o.breakdown, "breakdown", false, "also measure where taskrunner's time goes: Service.Submit without HTTP, echo without the run recorder")
	fs.IntVar(&o.clients, "clients", 16, "concurrent clients of the single-enqueue figure")
	fs.DurationVar(&o.enqueueWarm, "enqueue-warmup", time.Second, "load before each single-enqueue measurement that is not counted")
	fs.DurationVar(&o.enqueueDur, "enqueue-duration", 5*time.Second, "length of each single-enqueue measurement")
	fs.IntVar(&o.e2eJobs, "e2e-jobs", 200000, "jobs of the end-to-end figure: enough for at least 10 s of work a side")
	fs.IntVar(&o.workers, "workers", 1000, "River MaxWorkers (taskrunner: WORKER_CONCURRENCY) of the end-to-end figure")
	fs.DurationVar(&o.fetchCool, "fetch-cooldown", 5*time.Millisecond, "River FetchCooldown of the end-to-end figure, both sides")
	fs.DurationVar(&o.fetchPoll, "fetch-poll", 50*time.Millisecond, "River FetchPollInterval of the end-to-end figure, both sides")
	fs.DurationVar(&o.pollEvery, "poll", 20*time.Millisecond, "how often the end-to-end figure counts completed jobs")
	fs.DurationVar(&o.e2eTimeout, "e2e-timeout", 2*time.Minute, "give up on an end-to-end, pickup or cached-search run after this long")
	fs.IntVar(&o.insertBatch, "insert-batch", 5000, "jobs per InsertManyFast call when the end-to-end jobs are inserted")
	fs.Float64Var(&o.enqueueGoal, "enqueue-goal", 0.85, "ratio the single-enqueue figure should reach")
	fs.Float64Var(&o.endToEndGoal, "e2e-goal", 0.8, "ratio the end-to-end figure should reach")
	fs.IntVar(&o.batchSize, "batch-size", 50, "jobs per InsertMany call and tasks per POST /tasks/batch of the batch-enqueue figure, from -clients clients for -enqueue-duration after -enqueue-warmup (0: skip the figure)")
	fs.Float64Var(&o.batchGoal, "batch-goal", 0.9, "ratio the batch-enqueue figure should reach")
	fs.IntVar(&o.pickupTasks, "pickup-tasks", 250, "tasks per side and round whose pickup latency (created_at -> attempted_at) is measured (0: skip the figure)")
	fs.Float64Var(&o.pickupRate, "pickup-rate", 50, "tasks per second the pickup-latency figure enqueues, one at a time")
	fs.DurationVar(&o.pickupWarm, "pickup-warmup", time.Second, "enqueueing at -pickup-rate before the measured tasks of the pickup-latency figure, not counted")
	fs.DurationVar(&o.pickupGoal, "pickup-goal", 20*time.Millisecond, "p50 pickup latency taskrunner should stay within")
	fs.IntVar(&o.cbTasks, "callback-tasks", 500, "tasks per round whose latency from finished (finished_at) to callback received is measured (0: skip the figure)")
	fs.Float64Var(&o.cbRate, "callback-rate", 50, "tasks per second with a callback_url the callback-latency figure enqueues, one at a time")
	fs.DurationVar(&o.cbWarm, "callback-warmup", time.Second, "enqueueing at -callback-rate before the measured tasks of the callback-latency figure, not counted")
	fs.DurationVar(&o.cbGoal, "callback-goal", 50*time.Millisecond, "p50 latency from finished to callback received taskrunner should stay within")
	fs.IntVar(&o.fairTasks, "fair-tasks", 100, "quiet tenant's tasks per side and round whose pickup latency is measured while another tenant holds a backlog (0: skip the figure)")
	fs.Float64Var(&o.fairRate, "fair-rate", 20, "tasks per second the quiet tenant enqueues, one at a time")
	fs.DurationVar(&o.fairBacklog, "fair-backlog", 10*time.Second, "the busy tenant's backlog, in time for the whole pool (WORKER_CONCURRENCY) to work it")
	fs.DurationVar(&o.fairSleep, "fair-sleep", 500*time.Millisecond, "length of each of the busy tenant's sleep tasks")
	fs.DurationVar(&o.fairGoal, "fair-goal", 100*time.Millisecond, "p99 pickup latency of the quiet tenant under another's backlog, with fair share, should stay within")
	fs.IntVar(&o.searchTasks, "search-tasks", 2000, "cached searches measured per round, after one that warms the cache (0: skip the figure)")
	fs.IntVar(&o.searchClients, "search-clients", 4, "concurrent POST /search clients submitting the cached searches")
	fs.DurationVar(&o.searchGoal, "search-goal", 2*time.Millisecond, "p50 server time the cached-search figure should stay within")
	fs.IntVar(&o.artifactMB, "artifact-mb", 25, "size in MiB of the artifact uploaded and downloaded (0: skip the artifact figures)")
	fs.IntVar(&o.artifactReps, "artifact-reps", 5, "uploads and downloads of each kind per side per round, after one of each not counted (0: skip the artifact figures)")
	fs.BoolVar(&o.chunked, "artifact-chunked", true, "also measure an upload of unknown length (chunked HTTP; multipart in MinIO), for information")
	fs.Float64Var(&o.artifactGoal, "artifact-goal", 0.8, "ratio the artifact upload and download figures should reach")
	fs.Float64Var(&o.rssGoalMB, "rss-goal-mb", 100, "peak RSS (VmHWM) in MB (10^6 bytes) the taskrunner server should stay under")
	fs.IntVar(&o.base64Uploads, "base64-uploads", 8, "concurrent POST /artifacts of an -artifact-mb MiB body in base64 whose server peak RSS is measured, in a serve process of its own (0: skip the figure)")
	fs.Float64Var(&o.base64GoalMB, "base64-rss-goal-mb", 200, "peak RSS (VmHWM) in MB the server should stay under while receiving the concurrent base64 uploads")
	fs.StringVar(&o.taskrunnerBin, "taskrunner-bin", "./bin/taskrunner", "taskrunner binary the artifact figures start as a serve process")
	fs.IntVar(&o.serverWorkers, "server-workers", 4, "WORKER_CONCURRENCY of that serve process")
	fs.IntVar(&o.serverConns, "server-db-conns", 10, "DB_MAX_CONNS of that serve process")
	fs.IntVar(&o.scale, "scale", 0, "also measure the scale figures (`make bench-scale`): enqueue, batch, end-to-end and pickup with this many tasks queued, "+
		"bytes on disk per finished task, and pickup latency while a retention pass deletes this many finished tasks (0: skip them)")
	fs.Float64Var(&o.scaleGoal, "scale-goal", 0.8, "share of its empty-queue figure each taskrunner throughput figure should keep with -scale tasks queued")
	fs.Float64Var(&o.bytesGoal, "bytes-goal", 1.5, "ceiling on taskrunner's bytes on disk per finished echo task / bare River's per finished job")
	fs.DurationVar(&o.retentionGoal, "retention-goal", 100*time.Millisecond, "p99 pickup latency taskrunner should stay within while a retention pass runs")
	fs.IntVar(&o.retRounds, "retention-rounds", 1, "rounds of the retention figure (each fills -scale finished tasks per side)")
	fs.DurationVar(&o.retentionMax, "retention-timeout", 10*time.Minute, "give up on a retention pass after this long")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole bench (both sides) to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case o.rounds < 1, o.clients < 1, o.e2eJobs < 1, o.workers < 1, o.insertBatch < 1, o.searchClients < 1:
		return nil, errors.New("-rounds, -clients, -e2e-jobs, -workers, -insert-batch and -search-clients must be at least 1")
	case o.fairTasks < 0 || !(o.fairRate > 0) || o.fairRate > maxPickupRate || o.fairBacklog <= 0 || o.fairSleep <= 0:
		return nil, fmt.Errorf("-fair-tasks must not be negative; -fair-rate above 0 and at most %d; -fair-backlog and -fair-sleep positive", maxPickupRate)
	case o.cbTasks < 0 || o.cbWarm < 0 || o.cbGoal < 0 || !(o.cbRate > 0) || o.cbRate > maxPickupRate:
		return nil, fmt.Errorf("-callback-tasks, -callback-warmup and -callback-goal must not be negative; -callback-rate above 0 and at most %d", maxPickupRate)
	case o.searchTasks < 0 || o.searchGoal < 0:
		return nil, errors.New("-search-tasks and -search-goal must not be negative")
	case o.batchSize < 0:
		return nil, errors.New("-batch-size must not be negative")
	case o.pickupTasks < 0 || o.pickupWarm < 0 || o.pickupGoal < 0:
		return nil, errors.New("-pickup-tasks, -pickup-warmup and -pickup-goal must not be negative")
	case !(o.pickupRate > 0) || o.pickupRate > maxPickupRate:
		return nil, fmt.Errorf("-pickup-rate must be above 0 and at most %d", maxPickupRate)
	case o.artifactMB < 0 || o.artifactReps < 0 || o.base64Uploads < 0:
		return nil, errors.New("-artifact-mb, -artifact-reps and -base64-uploads must not be negative")
	case o.artifactMB > maxArtifactMB:
		return nil, fmt.Errorf("-artifact-mb must be at most %d", maxArtifactMB)
	case o.serverWorkers < 1 || o.serverConns < 1:
		return nil, errors.New("-server-workers and -server-db-conns must be at least 1")
	case o.enqueueDur <= 0 || o.enqueueWarm < 0 || o.pollEvery <= 0:
		return nil, errors.New("-enqueue-duration and -poll must be positive, -enqueue-warmup not negative")
	case o.dbMaxConns < 0:
		return nil, errors.New("-db-max-conns must not be negative")
	case o.scale < 0 || o.scaleGoal < 0 || o.bytesGoal < 0 || o.retentionGoal < 0 || o.retentionMax <= 0 || o.retRounds < 1:
		return nil, errors.New("-scale, -scale-goal, -bytes-goal and -retention-goal must not be negative; -retention-timeout positive; -retention-rounds at least 1")
	}
	return o, nil
}

func main() { os.Exit(benchMain()) }

// benchMain runs the bench and returns the exit code: 2 for bad flags, 1
// for a failed run.
func benchMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if opts.cpuProfile != "" {
		stopProfile, err := startCPUProfile(opts.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer stopProfile()
	}
	if err := run(ctx, opts, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// startCPUProfile starts writing a CPU profile to path and returns the
// function that finishes it.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// run is the whole bench: set up the database, measure every figure
// opts.rounds times, and print the table on stdout.
func run(ctx context.Context, opts *options, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if opts.dbMaxConns == 0 {
		opts.dbMaxConns = cfg.DBMaxConns
	}
	// Echo tasks submitted without a queue go to River's default queue:
	// that is the one queue measured, whatever QUEUES says.
	cfg.Queues = []string{river.QueueDefault}
	// The batch figure's requests must fit MAX_BATCH_SIZE (an API with 0
	// would refuse every batch).
	cfg.Limits.MaxBatchSize = max(cfg.Limits.MaxBatchSize, opts.batchSize)
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	p := newProgress(stderr)

	env, err := openEnv(ctx, cfg, opts, logger, p)
	if err != nil {
		return err
	}
	defer env.close(opts.keepDB)

	header := fmt.Sprintf("taskrunner bench: %d CPUs (GOMAXPROCS %d), %s, database %s (pool of %d), taskrunner log level %s (JSON on stderr), median of %d round(s)",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), riverVersion(), opts.dbName, opts.dbMaxConns, strings.ToLower(level.String()), opts.rounds)
	p.linef("%s", header)
	loadBefore := loadAverage()
	p.linef("load average (1 min) at start: %s", loadBefore)

	// Check what the artifact figures need now, not after the others.
	var artifacts *artifactBench
	if opts.artifacts() {
		if artifacts, err = newArtifactBench(ctx, env, opts, getenv); err != nil {
			return err
		}
	}

	figs := newFigures(opts)
	if opts.scaled() {
		if err := env.measureEmptyBytes(ctx); err != nil {
			return err
		}
	}
	for round := range opts.rounds {
		// Alternate which side goes first, so neither always runs on the
		// warmer (or more fragmented) database.
		bareFirst := round%2 == 0
		first := "bare River"
		if !bareFirst {
			first = "taskrunner"
		}
		p.linef("round %d of %d (%s first)", round+1, opts.rounds, first)
		if err := measureQueueFigures(ctx, env, opts, figs, bareFirst); err != nil {
			return err
		}
		if opts.fair() {
			if err := measureFairShare(ctx, env, opts, figs, bareFirst); err != nil {
				return err
			}
		}
		if opts.callbacks() {
			r, err := env.callbackLatency(ctx, opts)
			if err != nil {
				return err
			}
			figs.callback.add(r.latencies)
		}
		if opts.searchTasks > 0 {
			r, err := env.cachedSearch(ctx, opts)
			if err != nil {
				return err
			}
			figs.searchServer.add(r.server)
			figs.searchFinish.add(r.finish)
		}
		if artifacts != nil {
			if err := artifacts.measure(ctx, figs, bareFirst); err != nil {
				return err
			}
		}
		if opts.scaled() {
			// In the same round as the empty-queue figures they are held
			// to, so a busy spell of the machine weighs on both alike.
			p.linef("round %d of %d: %s queued", round+1, opts.rounds, countLabel(opts.scale))
			if err := measureQueued(ctx, env, opts.scale, figs.atScale, bareFirst); err != nil {
				return err
			}
		}
	}

	if opts.scaled() {
		if err := measureRetention(ctx, env, opts, figs); err != nil {
			return err
		}
	}

	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, header)
	fmt.Fprintf(stdout, "enqueue settings: %d clients, %s warm-up then %s measured per side and round\n", opts.clients, opts.enqueueWarm, opts.enqueueDur)
	if opts.batch() {
		fmt.Fprintf(stdout, "batch-enqueue settings: %d jobs per request (bare River InsertMany on an insert-only client; taskrunner POST /tasks/batch of echo tasks, MAX_BATCH_SIZE %d), rates in jobs/s\n",
			opts.batchSize, env.cfg.Limits.MaxBatchSize)
	}
	fmt.Fprintf(stdout, "end-to-end settings: %d workers, FetchCooldown %s, FetchPollInterval %s; completions counted every %s\n",
		opts.workers, opts.fetchCool, opts.fetchPoll, opts.pollEvery)
	if opts.pickup() {
		fmt.Fprintf(stdout, "pickup settings: %d tasks per side and round measured after %s not counted, enqueued one at a time at %s/s; latency is river_job.attempted_at - created_at; "+
			"bare River: client.Insert on its working client, no-op worker, %d workers, FetchCooldown %s, FetchPollInterval %s (the end-to-end settings); "+
			"taskrunner: POST /tasks on the working client as `taskrunner serve` builds it (run records), %d workers, FetchCooldown %s, FetchPollInterval %s; "+
			"ratio is bare River's p50 / taskrunner's p50 (above 1: taskrunner picks up sooner)\n",
			opts.pickupTasks, opts.pickupWarm, formatPerSecond(opts.pickupRate), opts.workers, opts.fetchCool, opts.fetchPoll,
			env.cfg.WorkerConcurrency, env.cfg.WorkerFetchCooldown, env.cfg.WorkerFetchPoll)
	}
	if opts.fair() {
		fmt.Fprintf(stdout, "fair-share settings: the quiet tenant enqueues %d echo tasks per side and round one at a time at %s/s while the busy tenant holds %s of sleep tasks of %s "+
			"(%s for %d workers) enqueued before the workers start; latency is river_job.attempted_at - created_at of the quiet tenant's tasks; "+
			"\"bare River\" column: one shared queue (TENANT_FAIR_SHARE=false); taskrunner column: a queue per tenant (TENANT_FAIR_SHARE=true); "+
			"the line below it: the quiet tenant alone, no backlog\n",
			opts.fairTasks, formatPerSecond(opts.fairRate), countLabel(fairBacklogTasks(opts, env.cfg.WorkerConcurrency)), opts.fairSleep, opts.fairBacklog, env.cfg.WorkerConcurrency)
	}
	if opts.callbacks() {
		fmt.Fprintf(stdout, "callback settings: %d echo tasks per round with a callback_url measured after %s not counted, submitted one at a time at %s/s through POST /tasks "+
			"to the working client as `taskrunner serve` builds it (run records, callbacks on: CALLBACK_SECRET, CALLBACK_ALLOW_PRIVATE_NETWORKS=true, CALLBACK_ALLOWED_PORTS the receiver's), "+
			"%d workers, FetchCooldown %s, FetchPollInterval %s; latency is the signed delivery's arrival at a receiver on loopback - the task's finished_at in its body (River's finalized_at); "+
			"bare River has no callbacks: no counterpart\n",
			opts.cbTasks, opts.cbWarm, formatPerSecond(opts.cbRate), env.cfg.WorkerConcurrency, env.cfg.WorkerFetchCooldown, env.cfg.WorkerFetchPoll)
	}
	if opts.searchTasks > 0 {
		fmt.Fprintf(stdout, "cached-search settings: %d searches per round through POST /search from %d clients, one source (fake Brave on loopback) answered from Redis; "+
			"taskrunner's worker settings: %d workers, FetchCooldown %s, FetchPollInterval %s; server time is runs.duration_ms\n",
			opts.searchTasks, opts.searchClients, env.cfg.WorkerConcurrency, env.cfg.WorkerFetchCooldown, env.cfg.WorkerFetchPoll)
	}
	if artifacts != nil {
		fmt.Fprintln(stdout, artifacts.settings())
	}
	if opts.scaled() {
		fmt.Fprintf(stdout, "scale settings: the rows marked \"%s queued\" are the figures above measured again with %s echo tasks (as POST /tasks enqueues them) scheduled an hour ahead, "+
			"so they wait in river_job, both sides on that one table, filled afresh in every round right after the empty-queue figures, "+
			"VACUUM ANALYZE after the fill and VACUUM river_job after each measurement's own jobs are deleted; "+
			"their goal is on taskrunner's rate with the fill / its rate on an empty queue (medians of the rounds); "+
			"bytes on disk per finished task: the end-to-end figure's finished jobs on an empty queue, after VACUUM FULL, as pg_total_relation_size of %s (indexes and TOAST included) "+
			"less the empty tables, / jobs; there the ratio is taskrunner / bare River, lower is better; "+
			"pickup during retention: %s jobs completed %s ago filled with SQL (taskrunner: echo tasks with their completed run records) and VACUUM ANALYZE, then pickup latency as above "+
			"while the pass deletes them, measured until it is done (at least %d tasks after %s not counted), median of %d round(s): bare River's job cleaner at TASK_RETENTION (%s); "+
			"taskrunner's as `taskrunner serve` runs it, River's job cleaner at TASK_RETENTION and taskrunner's retention job at ARTIFACT_RETENTION (%s) enqueued as the client becomes leader; "+
			"its goal is on taskrunner's p99\n",
			countLabel(opts.scale), countLabel(opts.scale), sizedTables, countLabel(opts.scale), env.retentionAge(), opts.pickupTasks, opts.pickupWarm, opts.retRounds,
			env.cfg.TaskRetention, env.cfg.ArtifactRetention)
	}
	fmt.Fprintf(stdout, "load average (1 min): %s at start, %s at end (%d CPUs)\n\n", loadBefore, loadAverage(), runtime.NumCPU())
	rows := figs.rows()
	if err := writeTable(stdout, rows); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\neach round, in order, and the spread: the ratio to bare River as the table counts it; where the goal is on p99, taskrunner's p99; "+
		"a latency without a bare counterpart, its p50; a peak RSS, its peak\n")
	return writeRounds(stdout, rows)
}

// measureQueueFigures measures the enqueue, batch-enqueue, end-to-end
// and pickup figures once, into figs.
func measureQueueFigures(ctx context.Context, env *env, opts *options, figs *figures, bareFirst bool) error {
	if err := measureEnqueue(ctx, env, opts, figs, bareFirst); err != nil {
		return err
	}
	if opts.batch() {
		if err := measureBatch(ctx, env, opts, figs, bareFirst); err != nil {
			return err
		}
	}
	if err := measureEndToEnd(ctx, env, opts, figs, bareFirst); err != nil {
		return err
	}
	if opts.pickup() {
		return measurePickup(ctx, env, opts, figs, bareFirst)
	}
	return nil
}

// measureQueued measures the figures of atScale (figures.atScale) once
// with n tasks queued, then drops them.
func measureQueued(ctx context.Context, env *env, n int, atScale *figures, bareFirst bool) error {
	if err := env.fillQueued(ctx, n); err != nil {
		return err
	}
	if err := measureQueueFigures(ctx, env, atScale.opts, atScale, bareFirst); err != nil {
		return err
	}
	return env.dropQueued(ctx)
}

// measureRetention measures pickup during a retention pass,
// -retention-rounds times.
func measureRetention(ctx context.Context, env *env, opts *options, figs *figures) error {
	for round := range opts.retRounds {
		env.p.linef("retention round %d of %d: %s finished", round+1, opts.retRounds, countLabel(opts.scale))
		if err := latencySides(ctx, env, opts, figs.retention, round%2 == 0, env.retentionBare, env.retentionTaskrunner); err != nil {
			return err
		}
	}
	return env.reset(ctx)
}

// runSides runs a figure's bare River and taskrunner sides, bare first or
// not, then any breakdown sides; bare River's on river_job as River alone
// has it (riverOnly), taskrunner's on its own schema.
func (e *env) runSides(ctx context.Context, bareFirst bool, bare, taskrunner func() error, breakdown ...func() error) error {
	asBare := func() error {
		if err := e.riverOnly(ctx, true); err != nil {
			return err
		}
		return bare()
	}
	asTaskrunner := func(side func() error) func() error {
		return func() error {
			if err := e.riverOnly(ctx, false); err != nil {
				return err
			}
			return side()
		}
	}
	for i, side := range breakdown {
		breakdown[i] = asTaskrunner(side)
	}
	if err := runSides(bareFirst, asBare, asTaskrunner(taskrunner), breakdown...); err != nil {
		return err
	}
	// Every figure that is not run this way (callbacks, search, fair
	// share) is taskrunner's alone, on its schema.
	return e.riverOnly(ctx, false)
}

// runSides runs two sides of a figure, the first one first or not, then
// any breakdown sides.
func runSides(bareFirst bool, bare, taskrunner func() error, breakdown ...func() error) error {
	sides := []func() error{bare, taskrunner}
	if !bareFirst {
		sides[0], sides[1] = taskrunner, bare
	}
	for _, side := range append(sides, breakdown...) {
		if err := side(); err != nil {
			return err
		}
	}
	return nil
}

// measureEnqueue measures the single-enqueue figure once, and its
// breakdown when asked.
func measureEnqueue(ctx context.Context, env *env, opts *options, figs *figures, bareFirst bool) error {
	var breakdown []func() error
	if opts.breakdown {
		breakdown = append(breakdown, func() error {
			r, err := env.enqueueService(ctx, opts)
			figs.enqueueService.addTaskrunner(r.rate())
			return err
		}, func() error {
			r, err := env.enqueueHTTPAlone(ctx, opts)
			figs.enqueueAlone.addTaskrunner(r.rate())
			return err
		})
	}
	err := env.runSides(ctx, bareFirst,
		func() error {
			r, err := env.enqueueBare(ctx, opts)
			figs.enqueue.addBare(r.rate())
			return err
		},
		func() error {
			r, err := env.enqueueHTTP(ctx, opts)
			figs.enqueue.addTaskrunner(r.rate())
			return err
		},
		breakdown...)
	figs.enqueueService.bare = figs.enqueue.bare
	figs.enqueueAlone.bare = figs.enqueue.bare
	return err
}

// measureBatch measures the batch-enqueue figure once.
func measureBatch(ctx context.Context, env *env, opts *options, figs *figures, bareFirst bool) error {
	perRequest := float64(opts.batchSize)
	return env.runSides(ctx, bareFirst,
		func() error {
			r, err := env.enqueueBatchBare(ctx, opts)
			figs.batch.addBare(r.rate() * perRequest)
			return err
		},
		func() error {
			r, err := env.enqueueBatchHTTP(ctx, opts)
			figs.batch.addTaskrunner(r.rate() * perRequest)
			return err
		})
}

// measurePickup measures the pickup-latency figure once.
func measurePickup(ctx context.Context, env *env, opts *options, figs *figures, bareFirst bool) error {
	return latencySides(ctx, env, opts, figs.pickup, bareFirst, env.pickupBare, env.pickupTaskrunner)
}

// latencySides measures a latency figure's two sides once, bare first or
// not, and adds what each measured to fig.
func latencySides(ctx context.Context, env *env, opts *options, fig *latencyFigure, bareFirst bool, bare, taskrunner func(context.Context, *options) ([]time.Duration, error)) error {
	return env.runSides(ctx, bareFirst,
		func() error {
			ds, err := bare(ctx, opts)
			if err == nil {
				fig.addBare(ds)
			}
			return err
		},
		func() error {
			ds, err := taskrunner(ctx, opts)
			if err == nil {
				fig.add(ds)
			}
			return err
		})
}

// measureEndToEnd measures the end-to-end figure once, and its breakdown
// when asked.
func measureEndToEnd(ctx context.Context, env *env, opts *options, figs *figures, bareFirst bool) error {
	var breakdown []func() error
	if opts.breakdown {
		breakdown = append(breakdown, func() error {
			r, err := env.endToEndNoRecorder(ctx, opts)
			figs.endToEndNoRecorder.addTaskrunner(r.rate())
			return err
		})
	}
	// With the scale figures, each side's finished jobs are then sized.
	sized := func(r e2eResult, err error, bare bool, add func(float64)) error {
		if err != nil || figs.bytes == nil {
			return err
		}
		b, err := env.bytesPerTask(ctx, r.jobs, bare)
		add(b)
		return err
	}
	err := env.runSides(ctx, bareFirst,
		func() error {
			r, err := env.endToEndBare(ctx, opts)
			figs.endToEnd.addBare(r.rate())
			return sized(r, err, true, func(b float64) { figs.bytes.addBare(b) })
		},
		func() error {
			r, err := env.endToEndTaskrunner(ctx, opts)
			figs.endToEnd.addTaskrunner(r.rate())
			return sized(r, err, false, func(b float64) { figs.bytes.addTaskrunner(b) })
		},
		breakdown...)
	figs.endToEndNoRecorder.bare = figs.endToEnd.bare
	return err
}

// figures collects every figure's measurements across rounds.
type figures struct {
	opts               *options
	enqueue            *figure
	batch              *figure // rates in jobs per second
	endToEnd           *figure
	enqueueService     *figure // breakdown only
	enqueueAlone       *figure // breakdown only
	endToEndNoRecorder *figure // breakdown only
	pickup             *latencyFigure
	fair               *latencyFigure // bare column: one shared queue
	callback           *latencyFigure // no bare counterpart
	fairIdle           *latencyFigure // for information: no backlog
	searchServer       *latencyFigure
	searchFinish       *latencyFigure // for information: no goal
	artifactPut        *figure
	artifactGet        *figure
	artifactChunked    *figure // for information: no goal
	serverRSS          *peakFigure
	base64RSS          *peakFigure
	// The scale figures (-scale), nil without: the throughput and pickup
	// figures with the queued fill, bytes per task, and pickup during a
	// retention pass.
	atScale   *figures
	bytes     *bytesFigure
	retention *latencyFigure
}

func newFigures(opts *options) *figures {
	f := &figures{
		opts:               opts,
		enqueue:            &figure{name: fmt.Sprintf("single enqueue (%d clients)", opts.clients), goal: opts.enqueueGoal},
		batch:              &figure{name: fmt.Sprintf("batch enqueue of %d (%d clients)", opts.batchSize, opts.clients), goal: opts.batchGoal},
		endToEnd:           &figure{name: fmt.Sprintf("end-to-end echo (%s)", countLabel(opts.e2eJobs)), goal: opts.endToEndGoal},
		enqueueService:     &figure{name: "  breakdown: Service.Submit, no HTTP"},
		enqueueAlone:       &figure{name: "  breakdown: POST /tasks, each its own insert"},
		endToEndNoRecorder: &figure{name: "  breakdown: echo, no RunRecorder"},
		pickup:             &latencyFigure{name: fmt.Sprintf("pickup latency enqueue -> running (%s/s)", formatPerSecond(opts.pickupRate)), maxP50: opts.pickupGoal, withBare: true},
		fair: &latencyFigure{name: fmt.Sprintf("quiet tenant's pickup under a %s backlog (%s/s)", opts.fairBacklog, formatPerSecond(opts.fairRate)),
			maxP99: opts.fairGoal, withBare: true},
		fairIdle:        &latencyFigure{name: "  quiet tenant's pickup, no backlog"},
		callback:        &latencyFigure{name: fmt.Sprintf("callback latency finished -> received (%s/s)", formatPerSecond(opts.cbRate)), maxP50: opts.cbGoal},
		searchServer:    &latencyFigure{name: fmt.Sprintf("cached search (%s): server time", countLabel(opts.searchTasks)), maxP50: opts.searchGoal},
		searchFinish:    &latencyFigure{name: "  cached search: enqueue -> finished"},
		artifactPut:     &figure{name: fmt.Sprintf("artifact upload (%d MiB)", opts.artifactMB), unit: unitBytes, goal: opts.artifactGoal},
		artifactGet:     &figure{name: fmt.Sprintf("artifact download (%d MiB)", opts.artifactMB), unit: unitBytes, goal: opts.artifactGoal},
		artifactChunked: &figure{name: "  artifact upload, unknown length", unit: unitBytes},
		serverRSS:       &peakFigure{name: "  server peak RSS (VmHWM)", limit: int64(opts.rssGoalMB * 1e6)},
		base64RSS: &peakFigure{name: fmt.Sprintf("%d concurrent %d MiB base64 uploads: server peak RSS", opts.base64Uploads, opts.artifactMB),
			limit: int64(opts.base64GoalMB * 1e6)},
	}
	if opts.scaled() {
		f.scaleFigures()
	}
	return f
}

// scaleFigures adds the scale figures: the same throughput and pickup
// figures (measured with the options but without breakdown), named for
// the queued fill and held to f.opts.scaleGoal of the empty-queue ones.
func (f *figures) scaleFigures() {
	o := *f.opts
	o.scale, o.breakdown = 0, false
	queued := ", " + countLabel(f.opts.scale) + " queued"
	s := newFigures(&o)
	for _, fig := range []*figure{s.enqueue, s.batch, s.endToEnd} {
		fig.name += queued
		fig.goal = f.opts.scaleGoal
	}
	s.pickup.name += queued
	f.atScale = s
	f.bytes = &bytesFigure{name: "bytes on disk per finished task", maxRatio: f.opts.bytesGoal}
	f.retention = &latencyFigure{name: fmt.Sprintf("pickup during retention of %s finished (%s/s)", countLabel(f.opts.scale), formatPerSecond(f.opts.pickupRate)),
		maxP99: f.opts.retentionGoal, withBare: true}
}

// rows returns the table's rows in DESIGN.md's order: the figures
// compared with bare River (each followed by its breakdown when asked),
// the callback figure, cached search, then the artifact figures.
func (f *figures) rows() []row {
	rows := []row{f.enqueue.row()}
	if f.opts.breakdown {
		rows = append(rows, f.enqueueService.row(), f.enqueueAlone.row())
	}
	if f.opts.batch() {
		rows = append(rows, f.batch.row())
	}
	rows = append(rows, f.endToEnd.row())
	if f.opts.breakdown {
		rows = append(rows, f.endToEndNoRecorder.row())
	}
	if f.opts.pickup() {
		rows = append(rows, f.pickup.row())
	}
	if f.opts.fair() {
		rows = append(rows, f.fair.row(), f.fairIdle.row())
	}
	if f.opts.callbacks() {
		rows = append(rows, f.callback.row())
	}
	if f.opts.searchTasks > 0 {
		rows = append(rows, f.searchServer.row(), f.searchFinish.row())
	}
	if f.opts.artifacts() {
		rows = append(rows, f.artifactPut.row(), f.artifactGet.row())
		if f.opts.chunked {
			rows = append(rows, f.artifactChunked.row())
		}
		rows = append(rows, f.serverRSS.row())
		if f.opts.base64Uploads > 0 {
			rows = append(rows, f.base64RSS.row())
		}
	}
	if f.atScale == nil {
		return rows
	}
	// The throughput figures with the fill, each beside bare River's and
	// held to a share of taskrunner's own on an empty queue.
	s := f.atScale
	pairs := [][2]*figure{{s.enqueue, f.enqueue}, {s.endToEnd, f.endToEnd}}
	if f.opts.batch() {
		pairs = slices.Insert(pairs, 1, [2]*figure{s.batch, f.batch})
	}
	for _, p := range pairs {
		r := p[0].row()
		r.vsEmpty, r.ofEmpty = true, median(p[1].taskrunner)
		rows = append(rows, r)
	}
	if f.opts.pickup() {
		rows = append(rows, s.pickup.row())
	}
	return append(rows, f.bytes.row(), f.retention.row())
}

// bytesFigure is the bytes-per-task line: each side's bytes on disk per
// finished task in every round.
type bytesFigure struct {
	name             string
	maxRatio         float64
	bare, taskrunner []float64
}

func (f *bytesFigure) addBare(b float64)       { f.bare = append(f.bare, b) }
func (f *bytesFigure) addTaskrunner(b float64) { f.taskrunner = append(f.taskrunner, b) }

// row is each side's median across rounds.
func (f *bytesFigure) row() row {
	b := &bytesRow{bare: -1, taskrunner: -1, maxRatio: f.maxRatio}
	if len(f.bare) > 0 {
		b.bare = median(f.bare)
	}
	if len(f.taskrunner) > 0 {
		b.taskrunner = median(f.taskrunner)
	}
	return row{name: f.name, bytes: b, rounds: &spread{values: ratios(f.taskrunner, f.bare), format: formatRatioUp}}
}

// figure is one line of the table: each side's rate in every round.
type figure struct {
	name       string
	unit       rateUnit
	goal       float64 // 0: no goal (a breakdown line)
	bare       []float64
	taskrunner []float64
}

func (f *figure) addBare(rate float64)       { f.bare = append(f.bare, rate) }
func (f *figure) addTaskrunner(rate float64) { f.taskrunner = append(f.taskrunner, rate) }

func (f *figure) row() row {
	return row{name: f.name, bare: median(f.bare), taskrunner: median(f.taskrunner), unit: f.unit, goal: f.goal,
		rounds: &spread{values: ratios(f.taskrunner, f.bare), format: formatRatio}}
}

// peakFigure is a memory line of the table with no bare counterpart: the
// peak of every round.
type peakFigure struct {
	name  string
	limit int64   // bytes; 0: no goal
	peaks []int64 // bytes, one per round
}

func (f *peakFigure) add(peak int64) { f.peaks = append(f.peaks, peak) }

// row is the largest peak across rounds: a ceiling holds only if every
// round stayed under it.
func (f *peakFigure) row() row {
	m := &memoryRow{peak: -1, limit: f.limit}
	rounds := &spread{format: func(b float64) string { return formatMB(int64(b)) }}
	if len(f.peaks) > 0 {
		m.peak = slices.Max(f.peaks)
	}
	for _, p := range f.peaks {
		rounds.values = append(rounds.values, float64(p))
	}
	return row{name: f.name, memory: m, rounds: rounds}
}

// latencyFigure is a latency line of the table: taskrunner's p50 and p99
// of every round and, when withBare, bare River's beside them.
type latencyFigure struct {
	name             string
	maxP50           time.Duration // 0: no goal
	maxP99           time.Duration // 0: no goal on p99
	withBare         bool          // false: no bare River counterpart
	p50, p99         []float64     // nanoseconds, one per round
	bareP50, bareP99 []float64     // as p50 and p99, of bare River
}

// add adds taskrunner's latencies of one round.
func (f *latencyFigure) add(ds []time.Duration) {
	f.p50 = append(f.p50, float64(percentile(ds, 0.50)))
	f.p99 = append(f.p99, float64(percentile(ds, 0.99)))
}

// addBare adds bare River's latencies of one round.
func (f *latencyFigure) addBare(ds []time.Duration) {
	f.bareP50 = append(f.bareP50, float64(percentile(ds, 0.50)))
	f.bareP99 = append(f.bareP99, float64(percentile(ds, 0.99)))
}

// row is the median across rounds of the p50s and of the p99s, each side
// apart.
func (f *latencyFigure) row() row {
	l := &latencyRow{p50: -1, p99: -1, maxP50: f.maxP50, maxP99: f.maxP99, hasBare: f.withBare, bareP50: -1, bareP99: -1}
	if len(f.p50) > 0 {
		l.p50, l.p99 = time.Duration(median(f.p50)), time.Duration(median(f.p99))
	}
	if f.withBare && len(f.bareP50) > 0 {
		l.bareP50, l.bareP99 = time.Duration(median(f.bareP50)), time.Duration(median(f.bareP99))
	}
	// Each round's ratio of the p50s where there is a bare counterpart,
	// else its p50; with the goal on p99, its p99.
	rounds := &spread{values: f.p50, format: formatMillis}
	switch {
	case f.maxP99 > 0:
		rounds.values = f.p99
	case f.withBare:
		rounds = &spread{values: ratios(f.bareP50, f.p50), format: formatRatio}
	}
	return row{name: f.name, latency: l, rounds: rounds}
}

// loadAverage is the machine's one-minute load average, or "unknown" where
// /proc/loadavg does not exist.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if fields := strings.Fields(string(b)); len(fields) > 0 {
		return fields[0]
	}
	return "unknown"
}

// riverVersion is the River module version this binary was built with.
func riverVersion() string { return "River " + moduleVersion("github.com/riverqueue/river") }

// moduleVersion is the version of the module at path this binary was
// built with.
func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == path {
				return dep.Version
			}
		}
	}
	return "(version unknown)"
}
