//go:build chaos && soak

package chaos

// TestScheduleSoak: one tenant, its tasks_per_minute raised to 60,000 so
// that the tick bound allows it, keeps 1000 every-second schedules with
// 64 KiB tasks for soakDuration, on one api and two worker processes.
// Then river_job and runs hold no more of taskrunner's own jobs than
// INTERNAL_JOB_RETENTION allows, and no run record of a tick that
// succeeded; every process's RSS stays flat across the schedules' syncs
// (every 30 s); and another tenant's echo tasks, submitted all along,
// start within 100 ms at p99.

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	soakDuration  = 2 * time.Minute
	soakSchedules = 1000
	// soakTaskBytes is the schedules' stored task size: the default
	// SCHEDULE_MAX_TASK_BYTES, less room for the rest of the task.
	soakTaskBytes = 64<<10 - 64
	soakEchoes    = 200
	// soakRetention is INTERNAL_JOB_RETENTION: short, so the soak sees
	// finished ticks deleted; they are checked every soakRetention too.
	soakRetention = 20 * time.Second
	// soakRetentionSlack is how late past retention and its interval a
	// finished tick may still be there: a pass that deletes it, its
	// batches, and the leader's clock.
	soakRetentionSlack = 15 * time.Second
	// soakRSSSample is how often each process's RSS is read.
	soakRSSSample = 2 * time.Second
	// soakRSSAllowance bounds how far the late RSS samples may rise above
	// the early ones: by half, plus 32 MiB for the heap's own swings.
	soakRSSGrowth = 1.5
	soakRSSSlack  = 32 << 20
	// soakEchoP99 is how long the quiet tenant's echo may wait to start, at
	// p99.
	soakEchoP99 = 100 * time.Millisecond
)

// rss is a process's resident set size, read from /proc/<pid>/status.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func TestScheduleSoak(t *testing.T) {
	s := startServices(t)
	pool := s.pool()
	heavyKey, quietKey := "k"+randomHex(12), "k"+randomHex(12)
	env := s.env(map[string]string{
		"API_KEYS": "heavy:" + heavyKey + ",quiet:" + quietKey,
		// quiet submits soakEchoes over the soak, above the default 30 a
		// minute.
		// heavy's own tasks run at most 5 at once per worker, as an
		// operator who raised its rate would set: 1000 tasks a second of
		// 64 KiB each are more than two cores can work, and unbounded they
		// wait, 64 KiB of args and 64 KiB of output each, in River's
		// completer (2.3 GiB per worker measured). Its ticks are not
		// bounded by it.
		"TENANT_LIMITS":          "heavy:tasks_per_minute=60000:max_running=5,quiet:tasks_per_minute=600",
		"INTERNAL_JOB_RETENTION": soakRetention.String(),
		"REDIS_KEY_PREFIX":       "soak:",
	})
	w1 := startWorker(t, s.logs, "worker-1", env)
	w2 := startWorker(t, s.logs, "worker-2", env)
	apiProc, api := startAPI(t, s.logs, "api", env)
	procs := []*proc{apiProc, w1, w2}
	heavy, quiet := api.withKey(heavyKey), api.withKey(quietKey)

	// ---- 1000 every-second schedules of 64 KiB tasks ----
	msg := strings.Repeat("x", soakTaskBytes-64)
	created := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, soakSchedules)
	names := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range names {
				r := heavy.postJSON("/schedules", map[string]any{"name": fmt.Sprintf("s%04d", i), "every": "1s",
					"task": map[string]any{"type": "echo", "params": map[string]any{"msg": msg}}}, 30*time.Second)
				if r.status != http.StatusCreated {
					errs <- fmt.Sprintf("schedule %d: %s", i, r)
				}
			}
		})
	}
	for i := range soakSchedules {
		names <- i
	}
	close(names)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	// The tenant is at its cap of schedules, and at its tick bound: 1000
	// ticks a second are its 60,000 a minute.
	over := heavy.postJSON("/schedules", map[string]any{"name": "over", "every": "1s", "task": echoTask("over", 0)}, 30*time.Second)
	if over.status != http.StatusConflict || over.code != "too_many_schedules" {
		t.Fatalf("the 1001st schedule: %s; want 409 too_many_schedules", over)
	}
	progress(t, "%d every-second schedules of %d KiB tasks created in %s", soakSchedules, soakTaskBytes>>10, time.Since(created).Round(time.Millisecond))

	// ---- soak: RSS samples and the quiet tenant's echoes ----
	start := time.Now()
	end := start.Add(soakDuration)
	samples := make([][]int64, len(procs))
	var sampling sync.WaitGroup
	sampling.Go(func() {
		for now := time.Now(); now.Before(end); now = time.Now() {
			for i, p := range procs {
				if n, err := rss(p.Pid()); err == nil {
					samples[i] = append(samples[i], n)
				}
			}
			time.Sleep(soakRSSSample)
		}
	})
	var echoIDs []int64
	for i := range soakEchoes {
		time.Sleep(time.Until(start.Add(time.Duration(i) * soakDuration / soakEchoes)))
		r := quiet.postJSON("/tasks", echoTask("quiet", i), submitTimeout)
		if r.status != http.StatusAccepted {
			t.Fatalf("quiet echo %d: %s", i, r)
		}
		echoIDs = append(echoIDs, r.id())
	}
	time.Sleep(time.Until(end))
	sampling.Wait()
	for _, p := range procs {
		if !p.Running() {
			t.Fatalf("%s exited during the soak: %s", p.Name(), p.ExitDescription())
		}
	}

	// ---- what the soak left ----
	ticks := mustInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'taskrunner_schedule_tick'`)
	finishedTicks := mustInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'taskrunner_schedule_tick' AND finalized_at IS NOT NULL`)
	heavyTasks := mustInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'echo' AND metadata ->> 'owner' = 'heavy'`)
	stale := mustInt(t, pool, `SELECT count(*) FROM river_job WHERE starts_with(kind, 'taskrunner_') AND finalized_at < now() - $1::interval`,
		(2*soakRetention + soakRetentionSlack).String())
	internalRuns := mustInt(t, pool, `SELECT count(*) FROM runs WHERE starts_with(task_type, 'taskrunner_') AND status = 'completed'`)
	failedInternalRuns := mustInt(t, pool, `SELECT count(*) FROM runs WHERE starts_with(task_type, 'taskrunner_') AND status <> 'completed'`)
	runs := mustInt(t, pool, `SELECT count(*) FROM runs`)
	taskAttempts := mustInt(t, pool, `SELECT coalesce(sum(attempt), 0)::bigint FROM river_job WHERE NOT starts_with(kind, 'taskrunner_')`)
	skipped := mustInt(t, pool, `SELECT coalesce(sum(skipped_ticks), 0)::bigint FROM schedules`)
	progress(t, "after %s: %d tick jobs in river_job (%d finished; at most %s of finished ticks are kept), %d heavy tasks, %d ticks skipped by the limit; runs: %d in all for %d task attempts, %d of internal jobs that completed, %d of internal jobs that failed",
		soakDuration, ticks, finishedTicks, 2*soakRetention+soakRetentionSlack, heavyTasks, skipped, runs, taskAttempts, internalRuns, failedInternalRuns)
	if stale != 0 {
		t.Errorf("%d internal jobs finished more than %s ago are still in river_job: INTERNAL_JOB_RETENTION is %s", stale, 2*soakRetention+soakRetentionSlack, soakRetention)
	}
	if internalRuns != 0 {
		t.Errorf("%d run records of internal jobs that completed: they leave none", internalRuns)
	}
	if runs > taskAttempts+failedInternalRuns {
		t.Errorf("runs holds %d rows, more than the %d task attempts and %d failed internal attempts", runs, taskAttempts, failedInternalRuns)
	}

	// ---- RSS: flat across the syncs ----
	for i, p := range procs {
		ss := samples[i]
		if len(ss) < 8 {
			t.Fatalf("%s: only %d RSS samples", p.Name(), len(ss))
		}
		q := len(ss) / 4
		early, late := slices.Max(ss[:q]), slices.Max(ss[len(ss)-q:])
		progress(t, "%s RSS: first quarter max %d MiB, last quarter max %d MiB (all samples, MiB: %v)", p.Name(), early>>20, late>>20, mib(ss))
		if float64(late) > soakRSSGrowth*float64(early)+soakRSSSlack {
			t.Errorf("%s RSS grew from %d MiB to %d MiB across the soak", p.Name(), early>>20, late>>20)
		}
	}

	// ---- the quiet tenant's echoes ----
	rows, err := pool.Query(t.Context(), `SELECT EXTRACT(EPOCH FROM attempted_at - created_at) * 1000 FROM river_job
		WHERE id = ANY($1) AND attempted_at IS NOT NULL`, echoIDs)
	if err != nil {
		t.Fatal(err)
	}
	var waits []float64
	for rows.Next() {
		var ms float64
		if err := rows.Scan(&ms); err != nil {
			t.Fatal(err)
		}
		waits = append(waits, ms)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(waits) != len(echoIDs) {
		t.Fatalf("%d of %d quiet echoes started", len(waits), len(echoIDs))
	}
	slices.Sort(waits)
	p50, p99 := waits[len(waits)/2], waits[len(waits)*99/100-1]
	progress(t, "quiet tenant's echo, created -> started: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d echoes)", p50, p99, waits[len(waits)-1], len(waits))
	if p99 > float64(soakEchoP99.Milliseconds()) {
		t.Errorf("the quiet tenant's echo waited %.1f ms at p99 to start; want at most %s", p99, soakEchoP99)
	}
}

// mib is samples in MiB, for the log.
func mib(samples []int64) []int64 {
	out := make([]int64, len(samples))
	for i, n := range samples {
		out[i] = n >> 20
	}
	return out
}
