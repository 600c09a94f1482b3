//go:build chaos

package chaos

// TestChaos: one api and two worker processes under a steady stream of
// submitted tasks, while, one after another, a worker is killed with
// SIGKILL, a worker is stopped with SIGTERM, PostgreSQL is restarted, and
// Redis and MinIO are stopped and started again. Afterwards every task that
// got a 2xx must be finished, with one run row per attempt, nothing left
// running; every finished task that asked for a callback (a quarter of
// the stream, of both tenants) reached the test's receiver, signed, at
// least once; while a dependency was down the API answered 503 (never
// 500, never a hang) and it recovered by itself.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The suite's pace and bounds.
const (
	submitInterval = 50 * time.Millisecond // 20 tasks a second
	submitTimeout  = 5 * time.Second       // an answer slower than this is a hang
	maxInFlight    = 64
	maxSubmits     = 10_000
	steadyFor      = 8 * time.Second
	downFor        = 5 * time.Second
	recoverTimeout = 30 * time.Second
	drainTimeout   = 150 * time.Second
	// probeTimeout bounds /ready and the other probes while a dependency is
	// down: a slower answer is a hang. minioProbeTimeout bounds uploads and
	// downloads with MinIO down, which take 4 to 10 s today: minio-go
	// retries each request (10 times by default), and a refused upload
	// also retries the DELETE of its object.
	probeTimeout      = 15 * time.Second
	minioProbeTimeout = 25 * time.Second
	recoveringGrace   = 3 * time.Second // after the first 2xx, a 503 still counts as refused while down
)

// phases in which a 503 dependency_unavailable is the right answer to a
// submit: PostgreSQL is down or coming back.
var refusalPhases = []string{"postgres-down", "postgres-recovering"}

// chaosTenants are the tenants whose tasks the stream alternates between,
// and chaosAdmin the key the probes use (it sees both tenants' tasks).
var (
	chaosTenants = map[string]string{"alpha": "k" + randomHex(12), "beta": "k" + randomHex(12)}
	chaosAdmin   = "k" + randomHex(12)
)

// chaosEnv is the workers' and api's environment: short runtime cap and
// rescue, quick shutdown and polling, a limit the stream never reaches,
// two client tenants and an admin, and callbacks to rc.
func chaosEnv(s *services, rc *callbackReceiver) map[string]string {
	keys := []string{"ops:" + chaosAdmin + ":admin"}
	for name, key := range chaosTenants {
		keys = append(keys, name+":"+key)
	}
	env := map[string]string{
		"API_KEYS":                   strings.Join(keys, ","),
		"TASK_MAX_RUNTIME_SECONDS":   "5",
		"TASK_RESCUE_AFTER_SECONDS":  "6",
		"SHUTDOWN_GRACE_SECONDS":     "1",
		"WORKER_FETCH_POLL_INTERVAL": "200ms",
		"WORKER_CONCURRENCY":         "20",
		"TASKS_PER_MINUTE":           "1000000",
		"DB_MAX_CONNS":               "10",
		"REDIS_KEY_PREFIX":           "chaos:",
	}
	maps.Copy(env, rc.env())
	return s.env(env)
}

func TestChaos(t *testing.T) {
	began := time.Now()
	s := startServices(t)
	rc := startCallbackReceiver(t)
	env := chaosEnv(s, rc)
	pool := s.pool()

	workers := []*proc{startWorker(t, s.logs, "worker-1", env), startWorker(t, s.logs, "worker-2", env)}
	apiProc, anon := startAPI(t, s.logs, "api", env)
	api := anon.withKey(chaosAdmin)
	progress(t, "api %s (pid %d), workers pid %d and %d", api.base, apiProc.Pid(), workers[0].Pid(), workers[1].Pid())
	nextWorker := 3
	newWorker := func() *proc {
		w := startWorker(t, s.logs, "worker-"+strconv.Itoa(nextWorker), env)
		nextWorker++
		return w
	}
	alive := func(when string) {
		t.Helper()
		for _, p := range append([]*proc{apiProc}, workers...) {
			if !p.Running() {
				t.Fatalf("%s: %s exited (%s) by itself; its log:\n%s", when, p.Name(), p.ExitDescription(), p.Digest(20, 30))
			}
		}
	}

	sub := newSubmitter(rc.url(), anon.withKey(chaosTenants["alpha"]), anon.withKey(chaosTenants["beta"]))
	go sub.run()
	stopped := false
	stopSubmitting := func() {
		if !stopped {
			stopped = true
			sub.stopAndWait()
		}
	}
	t.Cleanup(stopSubmitting)

	// After each fault: the tasks finished so far have one run per attempt
	// and none left running.
	checkSoFar := func(phase string) {
		t.Helper()
		ids := sub.acceptedIDs()
		if p := runProblems(t, pool, ids, true); len(p) > 0 {
			t.Fatalf("%s: %s", phase, p[0])
		}
		n := mustInt(t, pool, "SELECT count(*) FROM river_job WHERE id = ANY($1) AND state IN ('completed', 'discarded', 'cancelled')", ids)
		progress(t, "%s: %d of %d accepted tasks finished so far, each with one run per attempt", phase, n, len(ids))
	}

	// ---- steady state ----
	sub.setPhase("steady")
	time.Sleep(steadyFor)
	alive("steady state")
	sub.requireAllAccepted(t, "steady")
	progress(t, "steady: %s", sub.phaseSummary("steady"))
	checkSoFar("steady")

	// ---- SIGKILL a worker mid-task ----
	sub.setPhase("sigkill")
	victim := workers[0]
	if n := waitRunningRuns(pool, victim, 2, 10*time.Second); n == 0 {
		t.Fatalf("%s never had a task running", victim.Name())
	}
	victim.Signal(syscall.SIGKILL)
	if code := victim.WaitExit(procExitTimeout); code != -1 {
		t.Fatalf("%s exit code %d after SIGKILL, want -1 (killed)", victim.Name(), code)
	}
	killedRuns := runningRunsOf(t, pool, victim, true)
	if len(killedRuns) == 0 {
		t.Fatalf("%s had no task run in progress when it was killed", victim.Name())
	}
	progress(t, "sigkill: killed %s (pid %d) with %d attempts in progress: %v", victim.Name(), victim.Pid(), len(killedRuns), killedRuns)
	workers[0] = newWorker()
	time.Sleep(steadyFor)
	alive("after SIGKILL")
	sub.requireAllAccepted(t, "sigkill")
	progress(t, "sigkill: %s; replacement %s (pid %d) working", sub.phaseSummary("sigkill"), workers[0].Name(), workers[0].Pid())
	checkSoFar("sigkill")

	// ---- SIGTERM a worker mid-task ----
	sub.setPhase("sigterm")
	victim = workers[1]
	// Tasks longer than the grace period, until the victim runs one: its
	// shutdown must interrupt it and give it back to the queue.
	var long []int64
	if !waitFor(10*time.Second, 300*time.Millisecond, func() bool {
		for range 2 {
			if id := sub.submitNow(map[string]any{"type": "sleep", "params": map[string]any{"seconds": 3}, "max_retries": 3}).id(); id > 0 {
				long = append(long, id)
			}
		}
		time.Sleep(200 * time.Millisecond)
		n, _ := queryInt(pool, "SELECT count(*) FROM river_job WHERE "+inProgress+" AND id = ANY($2)", clientID(t, victim), long)
		return n > 0
	}) {
		t.Fatalf("%s never ran one of the long tasks %v", victim.Name(), long)
	}
	termAt := time.Now()
	victim.Signal(syscall.SIGTERM)
	if code := victim.WaitExit(procExitTimeout); code != 0 {
		t.Fatalf("%s exit code %d after SIGTERM, want 0; its log:\n%s", victim.Name(), code, victim.Digest(20, 30))
	}
	termTook := time.Since(termAt)
	if len(victim.Events("shutdown_complete", nil)) != 1 || len(victim.Events("shutdown_incomplete", nil)) != 0 {
		t.Fatalf("%s did not shut down cleanly; its log:\n%s", victim.Name(), victim.Digest(20, 30))
	}
	if left := runningRunsOf(t, pool, victim, false); len(left) > 0 {
		t.Fatalf("%s exited after SIGTERM with attempts still running: %v", victim.Name(), left)
	}
	interrupted := len(victim.Events("task_interrupted", nil))
	if interrupted == 0 {
		t.Fatalf("%s was stopped during a 3 s task with a 1 s grace period, but interrupted nothing; its log:\n%s", victim.Name(), victim.Digest(20, 30))
	}
	progress(t, "sigterm: %s exited 0 in %s, %d tasks interrupted and returned to the queue, none left running",
		victim.Name(), termTook.Round(time.Millisecond), interrupted)
	workers[1] = newWorker()
	time.Sleep(steadyFor)
	alive("after SIGTERM")
	sub.requireAllAccepted(t, "sigterm")
	progress(t, "sigterm: %s", sub.phaseSummary("sigterm"))
	checkSoFar("sigterm")

	someID := sub.acceptedIDs()[0]

	// ---- restart PostgreSQL ----
	sub.setPhase("postgres-down")
	pgStop := time.Now()
	s.pg.stop()
	progress(t, "postgres: stopped (fast shutdown) in %s", time.Since(pgStop).Round(time.Millisecond))
	ready := api.get("/ready", probeTimeout)
	requireDown(t, "GET /ready with postgres down", ready, "postgres")
	for _, path := range []string{"/tasks/" + strconv.FormatInt(someID, 10), "/tasks?limit=5"} {
		r := api.get(path, probeTimeout)
		if r.err != nil || r.status != http.StatusServiceUnavailable || r.code != "dependency_unavailable" {
			t.Fatalf("GET %s with postgres down: %s; want 503 dependency_unavailable", path, r)
		}
	}
	time.Sleep(time.Until(pgStop.Add(downFor)))
	pgStart := time.Now()
	s.pg.start()
	sub.setPhase("postgres-recovering")
	progress(t, "postgres: down %s, started again in %s", pgStart.Sub(pgStop).Round(time.Millisecond), time.Since(pgStart).Round(time.Millisecond))
	firstOK, ok := sub.waitAccepted(pgStart, recoverTimeout)
	if !ok {
		t.Fatalf("postgres: no submit accepted within %s of the restart; the api did not recover by itself (%s)",
			recoverTimeout, sub.phaseSummary("postgres-recovering"))
	}
	readyAfter := waitReady(t, api, recoverTimeout)
	time.Sleep(time.Until(firstOK.Add(recoveringGrace)))
	sub.setPhase("postgres-after")
	time.Sleep(steadyFor)
	alive("after the postgres restart")
	if sub.count("postgres-down", func(r response) bool { return r.status == http.StatusServiceUnavailable }) == 0 {
		t.Fatalf("postgres: no submit was refused with 503 while it was down (%s)", sub.phaseSummary("postgres-down"))
	}
	sub.requireAllAccepted(t, "postgres-after")
	// End to end after the restart: a new task is worked, and a long poll
	// on it answers.
	if id := sub.submitNow(taskOf(1)).id(); id == 0 {
		t.Fatalf("postgres: a submit after the restart was not accepted")
	} else if r := api.get("/tasks/"+strconv.FormatInt(id, 10)+"?wait=20s", 30*time.Second); r.status != http.StatusOK || r.body["status"] != "completed" {
		t.Fatalf("postgres: task %d submitted after the restart: GET ?wait=20s: %s; want 200 and completed", id, r)
	}
	progress(t, "postgres: down: %s; recovering: %s; first 2xx %s after the start, /ready ok after %s; after: %s",
		sub.phaseSummary("postgres-down"), sub.phaseSummary("postgres-recovering"), firstOK.Sub(pgStart).Round(time.Millisecond),
		readyAfter.Sub(pgStart).Round(time.Millisecond), sub.phaseSummary("postgres-after"))
	checkSoFar("postgres")

	// ---- stop and restart Redis ----
	sub.setPhase("redis-down")
	redisStop := time.Now()
	s.redis.stop()
	requireDown(t, "GET /ready with redis down", api.get("/ready", probeTimeout), "redis")
	time.Sleep(time.Until(redisStop.Add(downFor)))
	s.redis.start()
	redisStart := time.Now()
	sub.setPhase("redis-after")
	readyAfter = waitReady(t, api, recoverTimeout)
	time.Sleep(steadyFor / 2)
	alive("after the redis restart")
	if sub.count("redis-down", nil) == 0 {
		t.Fatalf("redis: nothing was submitted while it was down")
	}
	sub.requireAllAccepted(t, "redis-down")
	sub.requireAllAccepted(t, "redis-after")
	progress(t, "redis: down %s: %s (the limiter failed open); /ready ok %s after the start; after: %s",
		redisStart.Sub(redisStop).Round(time.Millisecond), sub.phaseSummary("redis-down"),
		readyAfter.Sub(redisStart).Round(time.Millisecond), sub.phaseSummary("redis-after"))
	checkSoFar("redis")

	// ---- stop and restart MinIO ----
	sub.setPhase("minio-down")
	uploads := 0
	upload := func() response {
		path := fmt.Sprintf("/tasks/%d/artifacts/chaos-%d.txt", someID, uploads)
		return api.do(http.MethodPut, path, "text/plain", []byte("chaos artifact "+strconv.Itoa(uploads)), minioProbeTimeout)
	}
	first := upload()
	if first.status != http.StatusCreated {
		t.Fatalf("upload with minio up: %s", first)
	}
	artifactID, _ := first.body["id"].(string)
	uploads++
	minioStop := time.Now()
	s.minio.stop()
	r := upload()
	if r.err != nil || r.status != http.StatusServiceUnavailable || r.code != "dependency_unavailable" {
		t.Fatalf("upload with minio down: %s; want 503 dependency_unavailable", r)
	}
	downUpload := r.took
	if r = api.get("/artifacts/"+artifactID, minioProbeTimeout); r.err != nil || r.status != http.StatusServiceUnavailable || r.code != "dependency_unavailable" {
		t.Fatalf("download with minio down: %s; want 503 dependency_unavailable", r)
	}
	downDownload := r.took
	requireDown(t, "GET /ready with minio down", api.get("/ready", probeTimeout), "minio")
	time.Sleep(time.Until(minioStop.Add(downFor)))
	s.minio.start()
	minioStart := time.Now()
	sub.setPhase("minio-after")
	var upAgain time.Time
	waitFor(recoverTimeout, 500*time.Millisecond, func() bool {
		r = upload()
		if r.status == http.StatusCreated {
			uploads++
			upAgain = time.Now()
			return true
		}
		return false
	})
	if upAgain.IsZero() {
		t.Fatalf("minio: uploads still fail %s after it started again: %s", recoverTimeout, r)
	}
	readyAfter = waitReady(t, api, recoverTimeout)
	time.Sleep(steadyFor / 2)
	alive("after the minio restart")
	sub.requireAllAccepted(t, "minio-down")
	sub.requireAllAccepted(t, "minio-after")
	if r = api.get("/artifacts/"+artifactID, probeTimeout); r.status != http.StatusOK {
		t.Fatalf("download after minio came back: %s", r)
	}
	progress(t, "minio: down %s: upload refused 503 in %s, download in %s, submits %s; uploads work %s after the start, /ready ok after %s",
		minioStart.Sub(minioStop).Round(time.Millisecond), downUpload.Round(time.Millisecond), downDownload.Round(time.Millisecond), sub.phaseSummary("minio-down"),
		upAgain.Sub(minioStart).Round(time.Millisecond), readyAfter.Sub(minioStart).Round(time.Millisecond))
	checkSoFar("minio")

	// ---- drain ----
	stopSubmitting()
	ids := sub.acceptedIDs()
	progress(t, "stream stopped: %d submitted, %d accepted; waiting up to %s for every accepted task to finish",
		sub.total(), len(ids), drainTimeout)
	drainStart := time.Now()
	lastReport := drainStart
	var unfinished int64
	waitFor(drainTimeout, time.Second, func() bool {
		n, err := queryInt(pool, `SELECT count(*) FROM unnest($1::bigint[]) a(id)
			WHERE NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = a.id AND j.state IN ('completed', 'discarded', 'cancelled'))`, ids)
		if err != nil {
			return false
		}
		unfinished = n
		if time.Since(lastReport) >= 10*time.Second {
			lastReport = time.Now()
			progress(t, "drain: %d of %d not finished yet after %s", n, len(ids), time.Since(drainStart).Round(time.Second))
		}
		return n == 0
	})
	progress(t, "drain: %d not finished after %s", unfinished, time.Since(drainStart).Round(time.Second))
	alive("after the drain")

	// ---- the checks ----
	res := checkRecords(t, pool, ids, killedRuns)
	byTenant := tasksByOwner(t, pool, ids)
	progress(t, "tenants: accepted tasks by owner %v", byTenant)
	for name := range chaosTenants {
		if byTenant[name] == 0 {
			t.Errorf("no accepted task of tenant %s: %v", name, byTenant)
		}
	}
	if len(byTenant) != len(chaosTenants) {
		t.Errorf("accepted tasks belong to %v, not just the stream's tenants", byTenant)
	}
	res.uploads = uploads
	res.checkArtifacts(t, pool, s)
	callbacks, callbackProblems := checkCallbacks(t, pool, rc, sub.callbackIDs())
	tot := sub.totals()
	summary := fmt.Sprintf("chaos: submitted %d, accepted %d, finished %d, lost %d, refused-while-down %d, server errors %d; %s",
		tot.submitted, tot.accepted, res.finished, res.lost, tot.refused, tot.serverErrors, callbacks)
	progress(t, "records: %s", res.detail())
	progress(t, "answers: %s", tot.detail())
	progress(t, "took %s", time.Since(began).Round(time.Second))
	fmt.Println(summary)
	t.Log(summary)

	if tot.accepted != len(ids) {
		t.Errorf("accepted %d answers but %d ids", tot.accepted, len(ids))
	}
	if res.lost > 0 {
		t.Errorf("%d accepted tasks lost (not finished, or missing): %v", res.lost, res.lostIDs)
	}
	if tot.serverErrors > 0 {
		t.Errorf("%d server errors (5xx other than 503, or no answer within %s): %v", tot.serverErrors, submitTimeout, tot.examples)
	}
	if tot.unexpected > 0 {
		t.Errorf("%d unexpected answers (a 503 while nothing was down, a 503 without dependency_unavailable, a 4xx): %v", tot.unexpected, tot.examples)
	}
	for _, p := range append(res.problems, callbackProblems...) {
		t.Error(p)
	}
}

// requireDown checks a GET /ready answer while dep is down: 503
// dependency_unavailable naming it.
func requireDown(t *testing.T, what string, r response, dep string) {
	t.Helper()
	if r.err != nil || r.status != http.StatusServiceUnavailable || r.code != "dependency_unavailable" || r.readyChecks()[dep] != "down" {
		t.Fatalf("%s: %s; want 503 dependency_unavailable with checks.%s down", what, r, dep)
	}
	msg := ""
	if e, ok := r.body["error"].(map[string]any); ok {
		msg, _ = e["message"].(string)
	}
	if !strings.Contains(msg, dep) {
		t.Fatalf("%s: the error message %q does not name %s", what, msg, dep)
	}
}

// waitReady waits until GET /ready answers 200 and returns when it did.
func waitReady(t *testing.T, api *apiClient, timeout time.Duration) time.Time {
	t.Helper()
	var r response
	if !waitFor(timeout, 250*time.Millisecond, func() bool {
		r = api.get("/ready", probeTimeout)
		return r.status == http.StatusOK
	}) {
		t.Fatalf("GET /ready still not ok %s after the dependency came back: %s", timeout, r)
	}
	return time.Now()
}

// waitRunningRuns waits until p has at least n task attempts in progress
// and returns how many.
func waitRunningRuns(pool *pgxpool.Pool, p *proc, n int64, timeout time.Duration) int64 {
	var got int64
	id := p.clientID()
	waitFor(timeout, 20*time.Millisecond, func() bool {
		got, _ = queryInt(pool, "SELECT count(*) FROM river_job WHERE "+inProgress+notCallbacks, id)
		return got >= n
	})
	return got
}

// attempt is one attempt of a task.
type attempt struct {
	TaskID  int64
	Attempt int
}

func (a attempt) String() string { return fmt.Sprintf("%d#%d", a.TaskID, a.Attempt) }

// inProgress selects, in river_job, the attempts the process whose client
// id is $1 has in progress: River's running jobs it fetched last whose
// attempt has no run row yet (a row is written when an attempt ends; an
// attempt that ended just before its worker was killed may still be
// running in river_job until River's completer marks it, and is then run
// again).
const inProgress = "state = 'running' AND attempted_by[array_upper(attempted_by, 1)] = $1" +
	" AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.task_id = river_job.id AND r.attempt = river_job.attempt)"

// notCallbacks leaves out of a query on river_job the attempts of callback
// deliveries, which are River jobs with runs of their own, but not tasks:
// checkCallbacks checks that they reach the receiver.
const notCallbacks = " AND kind <> 'taskrunner_callback'"

// clientID is the River client id p logged when its workers started: the
// id River records in attempted_by for each attempt p runs.
func clientID(t *testing.T, p *proc) string {
	t.Helper()
	id := p.clientID()
	if id == "" {
		t.Fatalf("%s logged no client_id in workers_started", p.Name())
	}
	return id
}

func (p *proc) clientID() string {
	for _, e := range p.Events("workers_started", nil) {
		if id, ok := e["client_id"].(string); ok {
			return id
		}
	}
	return ""
}

// runningRunsOf returns the attempts p has in progress (see inProgress),
// with tasksOnly those of tasks, not of callback deliveries.
func runningRunsOf(t *testing.T, pool *pgxpool.Pool, p *proc, tasksOnly bool) []attempt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := "SELECT id, attempt FROM river_job WHERE " + inProgress
	if tasksOnly {
		q += notCallbacks
	}
	rows, err := pool.Query(ctx, q+" ORDER BY id", clientID(t, p))
	if err != nil {
		t.Fatalf("runs of %s: %v", p.Name(), err)
	}
	defer rows.Close()
	var out []attempt
	for rows.Next() {
		var a attempt
		if err := rows.Scan(&a.TaskID, &a.Attempt); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ---- the submitter ----

type sample struct {
	phase    string
	sent     time.Time
	resp     response
	callback bool // the task asked for a callback
}

// submitter posts a steady stream of short tasks, a share of them asking
// for a callback, recording every answer with the phase it was sent in.
type submitter struct {
	apis        []*apiClient // the i-th submit goes through apis[i%len(apis)]: one key a tenant
	callbackURL string
	stop        chan struct{}
	done        chan struct{}

	mu      sync.Mutex
	phase   string
	changes []phaseChange // every setPhase, in order
	samples []sample
	skipped int // ticks skipped because maxInFlight requests were waiting
}

func newSubmitter(callbackURL string, apis ...*apiClient) *submitter {
	return &submitter{apis: apis, callbackURL: callbackURL, stop: make(chan struct{}), done: make(chan struct{}), phase: "start"}
}

// taskOf is the i-th task of the stream: echoes, and every third a short
// sleep, each with retries left for an attempt a fault cuts short.
func taskOf(i int) map[string]any {
	if i%3 == 0 {
		return map[string]any{"type": "sleep", "params": map[string]any{"seconds": 0.2 + float64(i%5)*0.2}, "max_retries": 3}
	}
	return map[string]any{"type": "echo", "params": map[string]any{"msg": "chaos " + strconv.Itoa(i)}, "max_retries": 3}
}

func (s *submitter) run() {
	defer close(s.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(submitInterval)
	defer tick.Stop()
	inFlight := make(chan struct{}, maxInFlight)
	for i := range maxSubmits {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		select {
		case inFlight <- struct{}{}:
		default:
			s.mu.Lock()
			s.skipped++
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		phase := s.phase
		s.mu.Unlock()
		task := taskOf(i)
		if withCallback(i) {
			task["callback_url"] = s.callbackURL
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-inFlight }()
			s.submit(s.apis[i%len(s.apis)], phase, task)
		}()
	}
}

// submitNow submits task at once, recording the answer like the stream's.
func (s *submitter) submitNow(task map[string]any) response {
	s.mu.Lock()
	phase := s.phase
	s.mu.Unlock()
	return s.submit(s.apis[0], phase, task)
}

// submit posts task through api and records the answer with phase.
func (s *submitter) submit(api *apiClient, phase string, task map[string]any) response {
	sent := time.Now()
	r := api.postJSON("/tasks", task, submitTimeout)
	_, cb := task["callback_url"]
	s.mu.Lock()
	s.samples = append(s.samples, sample{phase: phase, sent: sent, resp: r, callback: cb})
	s.mu.Unlock()
	return r
}

func (s *submitter) stopAndWait() {
	close(s.stop)
	<-s.done
}

type phaseChange struct {
	phase string
	at    time.Time
}

func (s *submitter) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.changes = append(s.changes, phaseChange{p, time.Now()})
	s.mu.Unlock()
}

// refusalDuring reports whether a request sent at sent and answered after
// took overlapped a phase in which PostgreSQL was down or recovering: a
// request sent just before the stop can be answered while it is down.
func (s *submitter) refusalDuring(x sample) bool {
	if slices.Contains(refusalPhases, x.phase) {
		return true
	}
	answered := x.sent.Add(x.resp.took)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.changes {
		if c.at.After(x.sent) && !c.at.After(answered) && slices.Contains(refusalPhases, c.phase) {
			return true
		}
	}
	return false
}

func (s *submitter) snapshot() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

func (s *submitter) total() int { return len(s.snapshot()) }

// count counts the answers to submits sent in phase that match (all
// when match is nil).
func (s *submitter) count(phase string, match func(response) bool) int {
	n := 0
	for _, x := range s.snapshot() {
		if x.phase == phase && (match == nil || match(x.resp)) {
			n++
		}
	}
	return n
}

func (s *submitter) acceptedIDs() []int64 { return s.accepted(false) }

// callbackIDs are the accepted tasks that asked for a callback.
func (s *submitter) callbackIDs() []int64 { return s.accepted(true) }

// accepted returns the ids of the accepted tasks, with callbackOnly of
// those that asked for a callback.
func (s *submitter) accepted(callbackOnly bool) []int64 {
	var ids []int64
	for _, x := range s.snapshot() {
		if id := x.resp.id(); id > 0 && (x.callback || !callbackOnly) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// waitAccepted waits for a 2xx to a submit sent after since and returns
// when it was sent.
func (s *submitter) waitAccepted(since time.Time, timeout time.Duration) (time.Time, bool) {
	var at time.Time
	ok := waitFor(timeout, 50*time.Millisecond, func() bool {
		for _, x := range s.snapshot() {
			if x.sent.After(since) && x.resp.id() > 0 && (at.IsZero() || x.sent.Before(at)) {
				at = x.sent
			}
		}
		return !at.IsZero()
	})
	return at, ok
}

// phaseSummary counts a phase's answers by status, with the slowest.
func (s *submitter) phaseSummary(phase string) string {
	by := map[string]int{}
	var slowest time.Duration
	n := 0
	for _, x := range s.snapshot() {
		if x.phase != phase {
			continue
		}
		n++
		key := "no answer"
		if x.resp.err == nil {
			key = strconv.Itoa(x.resp.status)
			if x.resp.code != "" {
				key += " " + x.resp.code
			}
		}
		by[key]++
		slowest = max(slowest, x.resp.took)
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", by[k], k)
	}
	return fmt.Sprintf("%d submits (%s), slowest %s", n, strings.Join(parts, ", "), slowest.Round(time.Millisecond))
}

// requireAllAccepted fails the test unless every submit sent in phase got
// a 2xx (nothing was down, or only what submits do not need).
func (s *submitter) requireAllAccepted(t *testing.T, phase string) {
	t.Helper()
	var bad []string
	for _, x := range s.snapshot() {
		if x.phase == phase && x.resp.id() == 0 {
			bad = append(bad, x.resp.String())
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%s: %d submits not accepted: %v", phase, len(bad), bad[:min(len(bad), 10)])
	}
}

type totals struct {
	submitted, accepted, refused, serverErrors, unexpected, skipped int
	slowest                                                         time.Duration
	examples                                                        []string
}

func (s *submitter) totals() totals {
	var tot totals
	s.mu.Lock()
	tot.skipped = s.skipped
	s.mu.Unlock()
	for _, x := range s.snapshot() {
		r := x.resp
		tot.submitted++
		tot.slowest = max(tot.slowest, r.took)
		bad := ""
		switch {
		case r.id() > 0:
			tot.accepted++
		case r.err != nil || (r.status >= 500 && r.status != http.StatusServiceUnavailable):
			tot.serverErrors++
			bad = r.String()
		case r.status == http.StatusServiceUnavailable && r.code == "dependency_unavailable" && s.refusalDuring(x):
			tot.refused++
		default:
			tot.unexpected++
			bad = r.String()
		}
		if bad != "" && len(tot.examples) < 10 {
			tot.examples = append(tot.examples, x.phase+": "+bad)
		}
	}
	return tot
}

func (t totals) detail() string {
	return fmt.Sprintf("%d submitted, %d accepted, %d refused with 503 while postgres was down, %d server errors, %d unexpected, slowest answer %s, %d ticks skipped with %d requests waiting",
		t.submitted, t.accepted, t.refused, t.serverErrors, t.unexpected, t.slowest.Round(time.Millisecond), t.skipped, maxInFlight)
}

// ---- the records ----

type records struct {
	finished, lost       int
	lostIDs              []int64
	states               map[string]int
	runs, abandoned      int
	interrupted          int
	retried              int
	retriedRuns          []string
	uploads              int
	artifactRows, object int
	problems             []string
}

func (r *records) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func (r *records) detail() string {
	states := make([]string, 0, len(r.states))
	for k, v := range r.states {
		states = append(states, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(states)
	return fmt.Sprintf("tasks %s; %d runs, %d abandoned by a killed worker, %d interrupted by a shutdown, %d tasks took more than one attempt %v; %d uploads, %d artifact rows, %d objects",
		strings.Join(states, ", "), r.runs, r.abandoned, r.interrupted, r.retried, r.retriedRuns, r.uploads, r.artifactRows, r.object)
}

// checkRecords checks, in the database, every accepted task and its runs.
func checkRecords(t *testing.T, pool *pgxpool.Pool, ids []int64, killed []attempt) *records {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := &records{states: map[string]int{}}

	// Lost: no river_job row, or not in a final state.
	rows, err := pool.Query(ctx, `SELECT a.id, coalesce(j.state::text, 'missing') FROM unnest($1::bigint[]) a(id)
		LEFT JOIN river_job j ON j.id = a.id`, ids)
	if err != nil {
		t.Fatalf("task states: %v", err)
	}
	for rows.Next() {
		var id int64
		var state string
		if err := rows.Scan(&id, &state); err != nil {
			t.Fatal(err)
		}
		res.states[state]++
		switch state {
		case "completed", "discarded", "cancelled":
			res.finished++
		default:
			res.lost++
			if len(res.lostIDs) < 20 {
				res.lostIDs = append(res.lostIDs, id)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n := res.states["discarded"] + res.states["cancelled"]; n > 0 {
		res.problem("%d tasks ended discarded or cancelled; every task had retries left and should have completed", n)
	}

	// Callback deliveries are not tasks: the last tasks' may still be in
	// flight; checkCallbacks waits for them. Nor are the leader's periodic
	// jobs (retention, the run sweep), which may be running now.
	if n := mustInt(t, pool, "SELECT count(*) FROM river_job WHERE state = 'running' AND kind NOT IN ('taskrunner_callback', 'taskrunner_retention', 'taskrunner_run_sweep')"); n > 0 {
		res.problem("%d tasks still running after the drain", n)
	}

	// Exactly one run row per attempt 1..attempt, none left running; a
	// completed task's last run completed.
	for _, p := range runProblems(t, pool, ids, false) {
		res.problem("%s", p)
	}

	// The attempts a SIGKILL cut short were closed as abandoned.
	for _, a := range killed {
		var status string
		var taskState string
		var taskAttempt int
		err := pool.QueryRow(ctx, `SELECT r.status, j.state::text, j.attempt FROM runs r JOIN river_job j ON j.id = r.task_id
			WHERE r.task_id = $1 AND r.attempt = $2`, a.TaskID, a.Attempt).Scan(&status, &taskState, &taskAttempt)
		if err != nil {
			res.problem("attempt %s of the killed worker: %v", a, err)
			continue
		}
		if status != "abandoned" || taskState != "completed" || taskAttempt <= a.Attempt {
			res.problem("attempt %s of the killed worker: run %s, task %s at attempt %d; want abandoned, and the task completed by a later attempt",
				a, status, taskState, taskAttempt)
		}
	}

	res.runs = int(mustInt(t, pool, "SELECT count(*) FROM runs WHERE task_id = ANY($1)", ids))
	res.abandoned = int(mustInt(t, pool, "SELECT count(*) FROM runs WHERE task_id = ANY($1) AND status = 'abandoned'", ids))
	res.interrupted = int(mustInt(t, pool, "SELECT coalesce(sum(interruptions), 0) + count(*) FILTER (WHERE status = 'interrupted') FROM runs WHERE task_id = ANY($1)", ids))
	res.retried = int(mustInt(t, pool, "SELECT count(*) FROM river_job WHERE id = ANY($1) AND attempt > 1", ids))
	retried, err := pool.Query(ctx, `SELECT j.id, j.state::text, string_agg(r.attempt || ':' || r.status || coalesce('(' || r.error_code || ')', ''), ' ' ORDER BY r.attempt)
		FROM river_job j JOIN runs r ON r.task_id = j.id WHERE j.id = ANY($1) AND j.attempt > 1 GROUP BY j.id ORDER BY j.id LIMIT 20`, ids)
	if err != nil {
		t.Fatalf("retried tasks: %v", err)
	}
	for retried.Next() {
		var id int64
		var state, runs string
		if err := retried.Scan(&id, &state, &runs); err != nil {
			t.Fatal(err)
		}
		res.retriedRuns = append(res.retriedRuns, fmt.Sprintf("%d %s [%s]", id, state, runs))
	}
	retried.Close()
	return res
}

// runProblems checks the runs of the tasks ids (with finishedOnly, of
// those finished so far): exactly one row per attempt 1..attempt, none
// left running, and a completed task's last run completed.
func runProblems(t *testing.T, pool *pgxpool.Pool, ids []int64, finishedOnly bool) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	states := []string{"available", "scheduled", "retryable", "running", "pending", "completed", "discarded", "cancelled"}
	if finishedOnly {
		states = []string{"completed", "discarded", "cancelled"}
	}
	rows, err := pool.Query(ctx, `SELECT j.id, j.state::text, j.attempt,
			coalesce(string_agg(r.attempt || ':' || r.status, ' ' ORDER BY r.attempt), '')
		FROM river_job j LEFT JOIN runs r ON r.task_id = j.id
		WHERE j.id = ANY($1) AND j.state::text = ANY($2)
		GROUP BY j.id
		HAVING count(r.id) <> j.attempt OR coalesce(min(r.attempt), 0) <> least(j.attempt, 1)
		    OR coalesce(max(r.attempt), 0) <> j.attempt OR count(r.id) FILTER (WHERE r.status = 'running') > 0
		    OR (j.state = 'completed' AND count(r.id) FILTER (WHERE r.attempt = j.attempt AND r.status = 'completed') <> 1)
		ORDER BY j.id`, ids, states)
	if err != nil {
		t.Fatalf("runs per attempt: %v", err)
	}
	defer rows.Close()
	var bad []string
	for rows.Next() {
		var id, attempts int64
		var state, runs string
		if err := rows.Scan(&id, &state, &attempts, &runs); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, fmt.Sprintf("task %d (%s, attempt %d): runs [%s]", id, state, attempts, runs))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(bad) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d tasks without exactly one run per attempt, with a run left running, or completed by a run that did not: %v",
		len(bad), bad[:min(len(bad), 20)])}
}

// checkArtifacts: one row per upload that succeeded, one object per row:
// the refused uploads left nothing behind.
func (r *records) checkArtifacts(t *testing.T, pool *pgxpool.Pool, s *services) {
	t.Helper()
	r.artifactRows = int(mustInt(t, pool, "SELECT count(*) FROM artifacts"))
	client, err := minio.New(s.minio.addr(), &minio.Options{Creds: credentials.NewStaticV4(s.minio.user, s.minio.password, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for obj := range client.ListObjects(ctx, "chaos", minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("list objects: %v", obj.Err)
		}
		r.object++
	}
	if r.artifactRows != r.uploads || r.object != r.uploads {
		r.problem("%d uploads succeeded, but there are %d artifact rows and %d objects", r.uploads, r.artifactRows, r.object)
	}
}

// tasksByOwner counts the tasks of ids by owner, as the tasks view shows it.
func tasksByOwner(t *testing.T, pool *pgxpool.Pool, ids []int64) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT owner, count(*) FROM tasks WHERE id = ANY($1) GROUP BY owner", ids)
	if err != nil {
		t.Fatalf("count tasks by owner: %v", err)
	}
	out := map[string]int{}
	for rows.Next() {
		var owner string
		var n int
		if err := rows.Scan(&owner, &n); err != nil {
			t.Fatalf("count tasks by owner: %v", err)
		}
		out[owner] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("count tasks by owner: %v", err)
	}
	return out
}
