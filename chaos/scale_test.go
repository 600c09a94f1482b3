//go:build chaos

package chaos

// TestScaleTwoByTwo: two api and two worker processes on one database,
// under load. Every task is worked once, the enqueue limit is one limit
// across both APIs, and one worker holds leadership, handing it to the
// other when it stops.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	scaleTasks      = 3000
	scaleLoadKeys   = 150 // the load's API keys: 20 tasks each, under the limit
	scalePerMinute  = 30  // TASKS_PER_MINUTE
	scaleSubmitters = 16
)

func TestScaleTwoByTwo(t *testing.T) {
	began := time.Now()
	s := startServices(t)
	pool := s.pool()

	keys := map[string]string{}
	var pairs []string
	for i := range scaleLoadKeys {
		keys["load"+strconv.Itoa(i)] = "k" + randomHex(12)
	}
	keys["limit"] = "k" + randomHex(12)
	for name, key := range keys {
		pairs = append(pairs, name+":"+key)
	}
	env := s.env(map[string]string{
		"TASKS_PER_MINUTE":           strconv.Itoa(scalePerMinute),
		"API_KEYS":                   strings.Join(pairs, ","),
		"WORKER_CONCURRENCY":         "10",
		"WORKER_FETCH_POLL_INTERVAL": "200ms",
		"DB_MAX_CONNS":               "10",
		"SHUTDOWN_GRACE_SECONDS":     "5",
		"REDIS_KEY_PREFIX":           "scale:",
	})

	w1 := startWorker(t, s.logs, "worker-1", env)
	w2 := startWorker(t, s.logs, "worker-2", env)
	a1p, a1 := startAPI(t, s.logs, "api-1", env)
	a2p, a2 := startAPI(t, s.logs, "api-2", env)
	procs := []*proc{w1, w2, a1p, a2p}
	apis := []*apiClient{a1, a2}
	progress(t, "2 workers (pid %d, %d) and 2 apis (%s, %s) on one database", w1.Pid(), w2.Pid(), a1.base, a2.base)

	// ---- leadership: one leader, a worker ----
	var leaderID string
	if !waitFor(30*time.Second, 100*time.Millisecond, func() bool {
		leaderID, _ = currentLeader(pool)
		return leaderID != ""
	}) {
		t.Fatalf("no leader elected within 30s")
	}
	leader := procOfClientID(t, leaderID, procs)
	if leader != w1 && leader != w2 {
		t.Fatalf("leader %q is %s, not a worker", leaderID, leader.Name())
	}
	progress(t, "leader: %s (%s)", leader.Name(), leaderID)
	watch := watchLeadership(pool)

	// ---- the enqueue limit is shared ----
	limit := []*apiClient{a1.withKey(keys["limit"]), a2.withKey(keys["limit"])}
	var ids []int64
	limitStart := time.Now()
	for i := range scalePerMinute {
		r := limit[i%2].postJSON("/tasks", echoTask("limit", i), submitTimeout)
		if r.status != http.StatusAccepted {
			t.Fatalf("limit: submit %d of %d (to api-%d): %s; want 202", i+1, scalePerMinute, i%2+1, r)
		}
		ids = append(ids, r.id())
	}
	elapsed := time.Since(limitStart)
	// GCRA refills one every 60/N s: allow for those refilled meanwhile.
	refilled := int(elapsed / (time.Minute / scalePerMinute))
	var refused response
	refusedBy, extra := -1, 0
	for i := scalePerMinute; i <= scalePerMinute+refilled; i++ {
		r := limit[i%2].postJSON("/tasks", echoTask("limit", i), submitTimeout)
		if r.status == http.StatusTooManyRequests {
			refused, refusedBy = r, i%2
			break
		}
		if r.status != http.StatusAccepted {
			t.Fatalf("limit: submit %d: %s; want 202 or 429", i+1, r)
		}
		ids = append(ids, r.id())
		extra++
	}
	if refusedBy < 0 {
		t.Fatalf("limit: %d submits with one key, alternating between the apis in %s, all accepted: the limit of %d a minute is not shared",
			scalePerMinute+extra, elapsed.Round(time.Millisecond), scalePerMinute)
	}
	if refused.code != "rate_limit_exceeded" || refused.header.Get("Retry-After") == "" {
		t.Fatalf("limit: the refusal %s lacks code rate_limit_exceeded or Retry-After", refused)
	}
	other := limit[1-refusedBy].postJSON("/tasks", echoTask("limit", 999), submitTimeout)
	if other.status != http.StatusTooManyRequests {
		t.Fatalf("limit: api-%d refused, but api-%d then answered %s; want 429 too", refusedBy+1, 2-refusedBy, other)
	}
	progress(t, "limit: %d submits with one key alternating between both apis in %s were accepted (%d refilled meanwhile); then api-%d and api-%d both answered 429 (Retry-After %ss)",
		scalePerMinute+extra, elapsed.Round(time.Millisecond), extra, refusedBy+1, 2-refusedBy, refused.header.Get("Retry-After"))

	// ---- load: every task worked once ----
	loadStart := time.Now()
	loadIDs := make([]int64, scaleTasks)
	var failures []string
	var mu sync.Mutex
	next := make(chan int)
	var wg sync.WaitGroup
	for range scaleSubmitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				api := apis[i%2].withKey(keys["load"+strconv.Itoa(i%scaleLoadKeys)])
				task := echoTask("load", i)
				if i%10 == 0 {
					task = map[string]any{"type": "sleep", "params": map[string]any{"seconds": 0.2}, "max_retries": 3}
				}
				r := api.postJSON("/tasks", task, submitTimeout)
				mu.Lock()
				if r.status == http.StatusAccepted {
					loadIDs[i] = r.id()
				} else if len(failures) < 10 {
					failures = append(failures, fmt.Sprintf("task %d via api-%d: %s", i, i%2+1, r))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range scaleTasks {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("load: submits not accepted: %v", failures)
	}
	submitted := time.Since(loadStart)
	ids = append(ids, loadIDs...)
	var done int64
	if !waitFor(90*time.Second, 250*time.Millisecond, func() bool {
		done, _ = queryInt(pool, "SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'completed'", ids)
		return done == int64(len(ids))
	}) {
		t.Fatalf("load: %d of %d tasks completed within 90s", done, len(ids))
	}
	progress(t, "load: %d tasks submitted through both apis in %s, all %d completed %s after the first submit",
		scaleTasks, submitted.Round(time.Millisecond), len(ids), time.Since(loadStart).Round(time.Millisecond))
	checkWorkedOnce(t, pool, ids, w1, w2, a1p, a2p)

	seen := watch.stop()
	if len(seen.ids) != 1 || seen.ids[0] != leaderID || seen.maxRows != 1 || seen.errors > 0 {
		t.Fatalf("leadership during the load: leaders %v (want only %s), at most %d leader rows, %d failed reads", seen.ids, leaderID, seen.maxRows, seen.errors)
	}
	progress(t, "leadership: %s held it alone through the load (%d reads)", leader.Name(), seen.reads)

	// ---- the leader stops: the other worker takes over ----
	follower := w1
	if leader == w1 {
		follower = w2
	}
	stopAt := time.Now()
	leader.Signal(syscall.SIGTERM)
	if code := leader.WaitExit(procExitTimeout); code != 0 {
		t.Fatalf("%s exit code %d after SIGTERM", leader.Name(), code)
	}
	var newID string
	if !waitFor(30*time.Second, 100*time.Millisecond, func() bool {
		newID, _ = currentLeader(pool)
		return newID != "" && newID != leaderID
	}) {
		t.Fatalf("no new leader within 30s of %s stopping (leader now %q)", leader.Name(), newID)
	}
	if p := procOfClientID(t, newID, procs); p != follower {
		t.Fatalf("new leader %q is %s, want %s", newID, p.Name(), follower.Name())
	}
	handover := time.Since(stopAt)
	// And it works alone.
	after := a2.withKey(keys["load0"]).postJSON("/tasks", echoTask("after", 0), submitTimeout)
	if after.status != http.StatusAccepted {
		t.Fatalf("submit after the leader stopped: %s", after)
	}
	if r := a1.withKey(keys["load0"]).get("/tasks/"+strconv.FormatInt(after.id(), 10)+"?wait=20s", 30*time.Second); r.body["status"] != "completed" {
		t.Fatalf("task after the leader stopped: %s", r)
	}
	progress(t, "leadership: %s stopped; %s leader %s later (%s)", leader.Name(), follower.Name(), handover.Round(time.Millisecond), newID)
	progress(t, "scale: took %s", time.Since(began).Round(time.Second))
}

func echoTask(prefix string, i int) map[string]any {
	return map[string]any{"type": "echo", "params": map[string]any{"msg": prefix + " " + strconv.Itoa(i)}, "max_retries": 3}
}

// checkWorkedOnce: each task completed at its first attempt, with one run
// row by one of the two workers, and one task_completed line in their logs;
// both workers did some.
func checkWorkedOnce(t *testing.T, pool *pgxpool.Pool, ids []int64, w1, w2, a1, a2 *proc) {
	t.Helper()
	if n := mustInt(t, pool, `SELECT count(*) FROM river_job WHERE id = ANY($1)
		AND (state <> 'completed' OR attempt <> 1 OR coalesce(array_length(attempted_by, 1), 0) <> 1)`, ids); n > 0 {
		t.Fatalf("%d tasks not completed at their first and only attempt", n)
	}
	if n := mustInt(t, pool, `SELECT count(*) FROM unnest($1::bigint[]) a(id) WHERE
		(SELECT count(*) FROM runs r WHERE r.task_id = a.id) <> 1 OR NOT EXISTS
		(SELECT 1 FROM runs r WHERE r.task_id = a.id AND r.attempt = 1 AND r.status = 'completed' AND r.worker IN ($2, $3))`,
		ids, w1.WorkerName(), w2.WorkerName()); n > 0 {
		t.Fatalf("%d tasks without exactly one completed run of attempt 1 by one of the workers", n)
	}
	by := map[string]int64{}
	for _, w := range []*proc{w1, w2} {
		by[w.Name()] = mustInt(t, pool, "SELECT count(*) FROM runs WHERE task_id = ANY($1) AND worker = $2", ids, w.WorkerName())
		if by[w.Name()] == 0 {
			t.Fatalf("%s worked none of the %d tasks", w.Name(), len(ids))
		}
	}
	// The logs agree: one task_completed per task, only in the workers.
	completed := map[int64]int{}
	for _, w := range []*proc{w1, w2} {
		for _, ev := range w.Events("task_completed", nil) {
			if f, ok := ev["task_id"].(float64); ok {
				completed[int64(f)]++
			}
		}
	}
	for _, id := range ids {
		if completed[id] != 1 {
			t.Fatalf("task %d: %d task_completed lines in the workers' logs, want 1", id, completed[id])
		}
	}
	for _, a := range []*proc{a1, a2} {
		if n := len(a.Events("task_completed", nil)); n > 0 {
			t.Fatalf("%s worked %d tasks", a.Name(), n)
		}
	}
	progress(t, "worked once: every one of the %d tasks has one completed run at attempt 1 and one task_completed line; %s worked %d, %s %d",
		len(ids), w1.Name(), by[w1.Name()], w2.Name(), by[w2.Name()])
}

func currentLeader(pool *pgxpool.Pool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var id string
	err := pool.QueryRow(ctx, "SELECT leader_id FROM river_leader WHERE expires_at > now()").Scan(&id)
	return id, err
}

// procOfClientID finds the process whose River client has id: a worker's
// client id is its worker name (host/pid-<random>), the name its runs carry.
func procOfClientID(t *testing.T, id string, procs []*proc) *proc {
	t.Helper()
	for _, p := range procs {
		if p.WorkerName() == id {
			return p
		}
	}
	t.Fatalf("client id %q belongs to none of the processes", id)
	return nil
}

type leadership struct {
	ids            []string
	maxRows        int64
	reads, errors  int
	stopC, stopped chan struct{}
}

// watchLeadership reads river_leader every 100 ms until stopped.
func watchLeadership(pool *pgxpool.Pool) *leadership {
	l := &leadership{stopC: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(l.stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-l.stopC:
				return
			case <-tick.C:
			}
			l.reads++
			rows, err := queryInt(pool, "SELECT count(*) FROM river_leader")
			id, err2 := currentLeader(pool)
			if err != nil || err2 != nil {
				l.errors++
				continue
			}
			l.maxRows = max(l.maxRows, rows)
			if len(l.ids) == 0 || l.ids[len(l.ids)-1] != id {
				l.ids = append(l.ids, id)
			}
		}
	}()
	return l
}

func (l *leadership) stop() *leadership {
	close(l.stopC)
	<-l.stopped
	return l
}
