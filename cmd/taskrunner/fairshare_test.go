package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
)

// tenantEnv is a serve process's environment with two client keys, a and
// b, WORKER_CONCURRENCY 20 and TENANT_FAIR_SHARE as given; it returns
// each tenant's Authorization header.
func tenantEnv(t *testing.T, tdb *testenv.DB, fairShare bool, kv ...string) (env map[string]string, authA, authB string) {
	t.Helper()
	keyA, keyB := randomKeyHex(t, 16), randomKeyHex(t, 16)
	env = with(baseEnv(tdb.URL), append([]string{
		"API_KEYS", "a:" + keyA + ",b:" + keyB,
		"WORKER_CONCURRENCY", "20",
		"TENANT_FAIR_SHARE", strconv.FormatBool(fairShare),
		"DB_MAX_CONNS", "16",
		"LOG_LEVEL", "info",
	}, kv...)...)
	return env, "Bearer " + keyA, "Bearer " + keyB
}

// submitSleepBatches has the tenant of auth submit n sleep tasks of
// seconds through POST /tasks/batch, 50 a request, and returns their ids.
func submitSleepBatches(t *testing.T, base, auth string, n int, seconds float64) []int64 {
	t.Helper()
	var ids []int64
	for len(ids) < n {
		var reqs []map[string]any
		for range min(50, n-len(ids)) {
			reqs = append(reqs, map[string]any{"type": "sleep", "params": map[string]any{"seconds": seconds}, "max_retries": 0})
		}
		status, _, raw := keyedRequest(t, http.MethodPost, base+"/tasks/batch", auth, map[string]any{"tasks": reqs})
		require.Equal(t, http.StatusAccepted, status, "POST /tasks/batch: %s", raw)
		var body struct {
			Tasks []struct {
				ID int64 `json:"id"`
			} `json:"tasks"`
		}
		require.NoError(t, json.Unmarshal(raw, &body))
		require.Len(t, body.Tasks, len(reqs))
		for _, tk := range body.Tasks {
			ids = append(ids, tk.ID)
		}
	}
	return ids
}

// jobTimes is what river_job holds of one job's progress: attempted and
// finalized are nil until the job has started and finished.
type jobTimes struct {
	queue                string
	created              time.Time
	attempted, finalized *time.Time
}

func readJobTimes(t *testing.T, tdb *testenv.DB, id int64) jobTimes {
	t.Helper()
	var j jobTimes
	require.NoError(t, tdb.Pool.QueryRow(context.Background(),
		"SELECT queue, created_at, attempted_at, finalized_at FROM river_job WHERE id = $1", id).
		Scan(&j.queue, &j.created, &j.attempted, &j.finalized))
	return j
}

// Done when 3 of the tenants issue, on a real serve process: with
// WORKER_CONCURRENCY=20, tenant a holds a backlog of 400 sleep tasks of
// 0.5 s (10 s for the pool). With fair share on, tenant b's one echo task
// completes within 2 s, while most of a's backlog is still waiting; with
// fair share off, the same task waits behind all of a's tasks, so this
// test fails when fair share does not work.
func TestFairShareAcrossTenants(t *testing.T) {
	t.Parallel()
	for _, fairShare := range []bool{true, false} {
		t.Run("fair share "+map[bool]string{true: "on", false: "off"}[fairShare], func(t *testing.T) {
			t.Parallel()
			tdb := testenv.NewDB(t)
			env, authA, authB := tenantEnv(t, tdb, fairShare)
			srv, api := startAPIProc(t, "serve", env, "serve")
			srv.WaitEvent("workers_started", startTimeout, nil)

			aIDs := submitSleepBatches(t, api.base, authA, 400, 0.5)
			// a's backlog is being worked: the pool is full.
			var running, waiting int
			countA := func() {
				require.NoError(t, tdb.Pool.QueryRow(context.Background(), `
					SELECT count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'available')
					FROM river_job WHERE id = ANY($1)`, aIDs).Scan(&running, &waiting))
			}
			require.Eventually(t, func() bool { countA(); return running == 20 }, 30*time.Second, 10*time.Millisecond,
				"a's tasks never filled the pool of 20: %d running", running)
			t.Logf("a: %d running, %d waiting when b submits", running, waiting)

			bID := keyedSubmit(t, api.base, authB, map[string]any{"type": "echo", "params": map[string]any{"msg": "quiet"}, "max_retries": 0})
			keyedWaitStatus(t, api.base, authB, bID, 60*time.Second, "completed")
			b := readJobTimes(t, tdb, bID)
			require.NotNil(t, b.finalized, "b's task completed but has no finalized_at")
			took := b.finalized.Sub(b.created)
			// a's tasks not yet started when b's task was picked up.
			var aBehind int
			require.NoError(t, tdb.Pool.QueryRow(context.Background(), `
				SELECT count(*) FROM river_job WHERE id = ANY($1) AND (attempted_at IS NULL OR attempted_at > $2)`,
				aIDs, b.attempted).Scan(&aBehind))
			t.Logf("b's task: queue %s, enqueued -> completed in %s; %d of a's 400 tasks still waiting when it was picked up",
				b.queue, took.Round(time.Millisecond), aBehind)

			_, _, raw := keyedRequest(t, http.MethodGet, api.base+"/tasks/"+strconv.FormatInt(bID, 10), authB, nil)
			var view struct {
				Queue string `json:"queue"`
			}
			require.NoError(t, json.Unmarshal(raw, &view))
			require.Equal(t, "default", view.Queue, "the task view shows the queue asked for")

			if fairShare {
				require.Equal(t, "default-tenant-b", b.queue)
				require.Equal(t, "default-tenant-a", readJobTimes(t, tdb, aIDs[0]).queue)
				require.LessOrEqual(t, took, 2*time.Second, "b's task waited behind a's backlog")
				require.GreaterOrEqual(t, aBehind, 200, "b's task was not picked up while a's backlog waited")
				return
			}
			require.Equal(t, "default", b.queue)
			require.Zero(t, aBehind, "with one shared queue, b's task should wait behind all of a's")
			require.Greater(t, took, 2*time.Second, "with one shared queue, b's task should wait behind a's backlog")
		})
	}
}

// Done when 4 of the tenants issue: with TENANT_MAX_RUNNING=5 and a pool
// of 20, no more than 5 of a tenant's tasks are ever running at once,
// sampled in SQL every 20 ms while a backlog of 30 sleep tasks drains; and
// the cap is reached, so it is the cap that holds them back.
//
// River frees a worker's slot when the task returns and writes the
// completion to river_job in batches (every 50 ms), so river_job alone may
// show a task as running for a moment after its worker is done and the
// next one has started. A task's run record is written before its slot is
// freed, so the count leaves out running rows whose attempt has finished
// in runs; the raw river_job count is logged beside it.
func TestTenantMaxRunningCapsRunningTasks(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	env, authA, _ := tenantEnv(t, tdb, true, "TENANT_MAX_RUNNING", "5")
	srv, api := startAPIProc(t, "serve", env, "serve")
	srv.WaitEvent("workers_started", startTimeout, nil)

	ids := submitSleepBatches(t, api.base, authA, 30, 0.3)
	const queue = "default-tenant-a"
	var inQueue int
	require.NoError(t, tdb.Pool.QueryRow(context.Background(), "SELECT count(*) FROM river_job WHERE id = ANY($1) AND queue = $2", ids, queue).Scan(&inQueue))
	require.Equal(t, len(ids), inQueue, "a's tasks are not in a's queue")

	maxRunning, maxRaw, samples := 0, 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		var running, raw, finished int
		require.NoError(t, tdb.Pool.QueryRow(context.Background(), `
			SELECT
				count(*) FILTER (WHERE j.state = 'running' AND NOT EXISTS (
					SELECT 1 FROM runs r WHERE r.task_id = j.id AND r.attempt = j.attempt AND r.finished_at IS NOT NULL)),
				count(*) FILTER (WHERE j.state = 'running'),
				count(*) FILTER (WHERE j.finalized_at IS NOT NULL)
			FROM river_job j WHERE j.queue = $1`, queue).Scan(&running, &raw, &finished))
		samples++
		maxRunning, maxRaw = max(maxRunning, running), max(maxRaw, raw)
		require.LessOrEqual(t, running, 5, "more than TENANT_MAX_RUNNING of a's tasks running at once")
		if finished == len(ids) {
			break
		}
		require.True(t, time.Now().Before(deadline), "a's backlog did not drain: %d of %d finished", finished, len(ids))
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d samples: at most %d running (%d in river_job alone, completions not yet written included)", samples, maxRunning, maxRaw)
	require.Equal(t, 5, maxRunning, "the cap was never reached")
	var completed int
	require.NoError(t, tdb.Pool.QueryRow(context.Background(), "SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'completed'", ids).Scan(&completed))
	require.Equal(t, len(ids), completed)
}
