package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
)

// rawBulk posts a bulk action as key without failing the test (it runs
// in goroutines), and answers its status and body.
func rawBulk(b *bundle, key, action string, filter any, dryRun bool) (int, []byte, error) {
	body, err := json.Marshal(map[string]any{"filter": filter, "dry_run": dryRun})
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, b.server.URL+"/tasks/"+action, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

type bulkAnswer struct {
	status int
	body   []byte
	err    error
}

// goBulk runs rawBulk in a goroutine.
func goBulk(b *bundle, key, action string, filter any, dryRun bool) <-chan bulkAnswer {
	done := make(chan bulkAnswer, 1)
	go func() {
		status, body, err := rawBulk(b, key, action, filter, dryRun)
		done <- bulkAnswer{status, body, err}
	}()
	return done
}

// lockTasks holds river_job in ACCESS EXCLUSIVE mode until the returned
// function is called: every statement that counts or finds tasks waits,
// as it would on a table too large to read within its time. The lock is
// held on a connection of its own, outside the test's small pool.
func lockTasks(t *testing.T, b *bundle) (unlock func()) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), b.db.URL)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(context.Background())
	require.NoError(t, err)
	_, err = tx.Exec(context.Background(), "LOCK TABLE river_job IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			if err := tx.Commit(context.Background()); err != nil {
				t.Errorf("unlock river_job: %v", err)
			}
		})
	}
	t.Cleanup(unlock)
	// Should a statement not be bounded as it must, it waits for this
	// release: the test then fails rather than hangs.
	time.AfterFunc(10*time.Second, unlock)
	return unlock
}

// heldBulkSlots is how many bulk action slots are held in the test's
// database (advisory locks are per database).
func heldBulkSlots(t *testing.T, b *bundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `
		SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 2 AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n))
	return n
}

func waitBulkSlots(t *testing.T, b *bundle, want int) {
	t.Helper()
	require.Eventually(t, func() bool { return heldBulkSlots(t, b) == want }, 10*time.Second, 10*time.Millisecond,
		"bulk action slots held: want %d", want)
}

// requireTooManyBulkActions: the answer is a 429 with a Retry-After.
func requireTooManyBulkActions(t *testing.T, r response) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, r.status, "%s", r.raw)
	require.Equal(t, taskrunner.CodeTooManyBulkActions, errorCode(t, r))
	require.Equal(t, "5", r.header.Get("Retry-After"))
}

// TestBulkActionsAreBoundedPerTenant: a tenant runs at most
// BULK_MAX_CONCURRENT bulk actions at once, dry runs included; one more
// is refused with 429 while another tenant's goes through. The slots are
// the database's, so a slot held from another connection (another API
// process) counts.
func TestBulkActionsAreBoundedPerTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: tenantKeys, bulkMaxConcurrent: 2, bulkCountTimeout: time.Minute})
	for _, key := range []string{aliceKey, aliceKey, bobKey} {
		b.submitAs(t, key, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	}
	dry := map[string]any{}

	t.Run("in this process", func(t *testing.T) {
		unlock := lockTasks(t, b)
		first, second := goBulk(b, aliceKey, "cancel", dry, true), goBulk(b, aliceKey, "retry", dry, false)
		waitBulkSlots(t, b, 2)
		requireTooManyBulkActions(t, b.doAs(t, aliceKey, http.MethodPost, "/tasks/cancel", map[string]any{"filter": dry, "dry_run": true}))
		bob := goBulk(b, bobKey, "cancel", dry, true)
		waitBulkSlots(t, b, 3) // bob's is running, not refused
		unlock()
		for _, want := range []struct {
			ch   <-chan bulkAnswer
			body string
		}{{first, `{"matched":2}`}, {second, `{"matched":0,"affected":0}`}, {bob, `{"matched":1}`}} {
			got := <-want.ch
			require.NoError(t, got.err)
			require.Equal(t, http.StatusOK, got.status, "%s", got.body)
			require.JSONEq(t, want.body, string(got.body))
		}
		waitBulkSlots(t, b, 0)
		require.Equal(t, int64(2), b.bulk(t, aliceKey, "cancel", dry, true).Matched, "her slots are free again")
	})

	t.Run("held by another process", func(t *testing.T) {
		ctx := context.Background()
		var held []*db.BulkSlot
		for range 2 {
			slot, err := db.AcquireBulkSlot(ctx, b.db.Pool, "alice", 2)
			require.NoError(t, err)
			require.NotNil(t, slot)
			t.Cleanup(slot.Release)
			held = append(held, slot)
		}
		third, err := db.AcquireBulkSlot(ctx, b.db.Pool, "alice", 2)
		require.NoError(t, err)
		require.Nil(t, third, "alice has two slots")
		requireTooManyBulkActions(t, b.doAs(t, aliceKey, http.MethodPost, "/tasks/cancel", map[string]any{"filter": dry, "dry_run": true}))
		require.Equal(t, int64(1), b.bulk(t, bobKey, "cancel", dry, true).Matched)
		held[0].Release()
		require.Equal(t, int64(2), b.bulk(t, aliceKey, "cancel", dry, true).Matched)
		held[1].Release()
		require.Len(t, b.logs.Events("bulk_action"), 8, "one line per call, refused ones included")
	})
}

// TestBulkCountTimeout: a statement that counts or finds a bulk action's
// tasks and takes longer than BULK_COUNT_TIMEOUT_SECONDS ends the action
// with bulk_count_timeout, having changed nothing, and frees its slot.
func TestBulkCountTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: tenantKeys, bulkCountTimeout: 200 * time.Millisecond})
	ids := []int64{
		b.submitAs(t, aliceKey, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}}),
		b.submitAs(t, aliceKey, map[string]any{"type": "echo", "params": map[string]any{"msg": "y"}}),
	}
	filter := map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}}

	unlock := lockTasks(t, b)
	for _, dryRun := range []bool{true, false} {
		r := b.doAs(t, aliceKey, http.MethodPost, "/tasks/cancel", map[string]any{"filter": filter, "dry_run": dryRun})
		require.Equal(t, http.StatusUnprocessableEntity, r.status, "dry run %t: %s", dryRun, r.raw)
		e := r.apiError(t)
		require.Equal(t, taskrunner.CodeBulkCountTimeout, e.Code)
		require.Contains(t, e.Message, "BULK_COUNT_TIMEOUT_SECONDS")
	}
	require.Zero(t, heldBulkSlots(t, b), "the slots are free")
	unlock()

	for _, id := range ids {
		var state string
		require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT state FROM river_job WHERE id = $1", id).Scan(&state))
		require.Equal(t, "available", state, "nothing was cancelled")
	}
	failed := b.logs.Events("bulk_action")
	require.Len(t, failed, 2)
	require.Equal(t, string(taskrunner.CodeBulkCountTimeout), failed[0]["error_code"])
	res := b.bulk(t, aliceKey, "cancel", filter, false)
	require.Equal(t, int64(1), res.Matched, "without the lock it is quick")
	require.Equal(t, int64(1), *res.Affected)
}
