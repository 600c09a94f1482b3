//go:build chaos

package chaos

// The callback receiver of TestChaos: a share of the stream's tasks ask
// for a callback to it, and every one of them that finished must reach it
// at least once, signed, whatever the faults did to its delivery.

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/callback"
)

// callbackWait bounds the wait, after the drain, for the callbacks of the
// finished tasks. A delivery is normally made within a second of the
// task's end; one cut short by a fault is retried by River with the
// callback worker's backoff: 30 s (plus up to a tenth) after a failed
// attempt, and an attempt whose worker was killed, or whose outcome could
// not be written while PostgreSQL was down, first waits to be rescued
// (TASK_RESCUE_AFTER_SECONDS, 6 s, plus up to the rescuer's 30 s
// interval) and for the scheduler (5 s): at most about 75 s for one
// retry. The last fault ends before the drain starts, so two minutes
// after it leave room for that retry and a second one for a delivery the
// PostgreSQL restart cut short.
const callbackWait = 2 * time.Minute

// callbackShare: the i-th task of the stream asks for a callback when
// i%callbackShare.n < callbackShare.of; consecutive submits alternate the
// tenants, so both tenants' tasks ask for them, a quarter of the stream.
var callbackShare = struct{ n, of int }{8, 2}

func withCallback(i int) bool { return i%callbackShare.n < callbackShare.of }

// finalStates are River's final states, which a task's callback reports.
var finalStates = []string{"completed", "discarded", "cancelled"}

// received is what the receiver got for one task.
type received struct {
	count      int             // verified deliveries, retries included
	deliveries map[string]bool // their Taskrunner-Delivery ids
	events     map[string]bool // their Taskrunner-Event values
}

// callbackReceiver is a local receiver on 127.0.0.1: it verifies each
// request's signature with the secret of the tenant it names (derived
// from the processes' CALLBACK_SECRET, as no tenant rotates here), checks
// that the body names the same owner, answers 204, and counts
// the verified deliveries by task id. A request it cannot verify, or
// whose body is not a finished task's view matching its event, it answers
// 400 and records as bad.
type callbackReceiver struct {
	srv    *httptest.Server
	port   int
	secret string

	mu     sync.Mutex
	byTask map[int64]*received
	bad    []string
}

func startCallbackReceiver(t *testing.T) *callbackReceiver {
	t.Helper()
	rc := &callbackReceiver{secret: "cb" + randomHex(16), byTask: map[int64]*received{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	u, err := url.Parse(rc.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if rc.port, err = strconv.Atoi(u.Port()); err != nil {
		t.Fatal(err)
	}
	return rc
}

// env is what the processes need to deliver to the receiver.
func (rc *callbackReceiver) env() map[string]string {
	return map[string]string{
		"CALLBACK_SECRET":                 rc.secret,
		"CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
		"CALLBACK_ALLOWED_PORTS":          strconv.Itoa(rc.port),
		"CALLBACK_TIMEOUT_SECONDS":        "2",
	}
}

func (rc *callbackReceiver) url() string { return rc.srv.URL + "/callbacks" }

func (rc *callbackReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	tenant := r.Header.Get(callback.HeaderTenant)
	secret := callback.DeriveSecret([]byte(rc.secret), tenant, 0)
	if tenant == taskrunner.LocalTenant {
		secret = []byte(rc.secret)
	}
	if err == nil {
		err = callback.Verify(secret, r.Header.Get(callback.HeaderSignature), body, 0, time.Now())
	}
	var view struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
		Owner  string `json:"owner"`
	}
	if err == nil {
		err = json.Unmarshal(body, &view)
	}
	event, delivery := r.Header.Get(callback.HeaderEvent), r.Header.Get(callback.HeaderDelivery)
	switch {
	case err != nil:
	case r.Method != http.MethodPost:
		err = fmt.Errorf("method %s", r.Method)
	case view.ID <= 0:
		err = fmt.Errorf("no task id in the body")
	case view.Owner != tenant:
		err = fmt.Errorf("task %d of %q delivered as %q's", view.ID, view.Owner, tenant)
	case !slices.Contains(finalStates, view.Status):
		err = fmt.Errorf("task %d delivered in state %q, not a final state", view.ID, view.Status)
	case event != "task."+view.Status:
		err = fmt.Errorf("task %d in state %s delivered with event %q", view.ID, view.Status, event)
	case delivery == "":
		err = fmt.Errorf("task %d delivered without %s", view.ID, callback.HeaderDelivery)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil {
		rc.bad = append(rc.bad, fmt.Sprintf("delivery %q: %v", delivery, err))
		http.Error(w, "refused", http.StatusBadRequest)
		return
	}
	got := rc.byTask[view.ID]
	if got == nil {
		got = &received{deliveries: map[string]bool{}, events: map[string]bool{}}
		rc.byTask[view.ID] = got
	}
	got.count++
	got.deliveries[delivery] = true
	got.events[event] = true
	w.WriteHeader(http.StatusNoContent)
}

// missing returns the ids of want without a verified delivery.
func (rc *callbackReceiver) missing(want []int64) []int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []int64
	for _, id := range want {
		if rc.byTask[id] == nil {
			out = append(out, id)
		}
	}
	return out
}

// callbackCounts are the callback figures of the summary.
type callbackCounts struct {
	expected, delivered, duplicates, missing int
}

func (c callbackCounts) String() string {
	return fmt.Sprintf("callbacks: expected %d, delivered %d, duplicates %d, missing %d", c.expected, c.delivered, c.duplicates, c.missing)
}

// checkCallbacks waits up to callbackWait for a verified delivery of
// every task of ids (the accepted tasks that asked for a callback) that
// reached a final state (the first 100 missing are listed), then checks what the receiver got: nothing it
// could not verify, no delivery for another task, one delivery id and
// one event a task, the event its final state. It returns the counts
// and the problems found.
func checkCallbacks(t *testing.T, pool *pgxpool.Pool, rc *callbackReceiver, ids []int64) (callbackCounts, []string) {
	t.Helper()
	final := finalStatesOf(t, pool, ids)
	want := make([]int64, 0, len(final))
	for id := range final {
		want = append(want, id)
	}
	slices.Sort(want)
	progress(t, "callbacks: %d accepted tasks asked for one, %d of them finished; waiting up to %s for their deliveries",
		len(ids), len(want), callbackWait)
	start, lastReport := time.Now(), time.Now()
	waitFor(callbackWait, 250*time.Millisecond, func() bool {
		n := len(rc.missing(want))
		if time.Since(lastReport) >= 10*time.Second {
			lastReport = time.Now()
			progress(t, "callbacks: %d of %d not delivered yet after %s", n, len(want), time.Since(start).Round(time.Second))
		}
		return n == 0
	})
	missing := rc.missing(want)
	progress(t, "callbacks: %d not delivered after %s", len(missing), time.Since(start).Round(time.Millisecond))

	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d finished tasks that asked for a callback got no verified delivery within %s: %v",
			len(missing), callbackWait, missing[:min(len(missing), 100)]))
	}
	counts := callbackCounts{expected: len(want), missing: len(missing), delivered: len(want) - len(missing)}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		problems = append(problems, fmt.Sprintf("%d callback requests refused by the receiver (bad signature, or not a finished task's view): %s",
			len(rc.bad), strings.Join(rc.bad[:min(len(rc.bad), 10)], "; ")))
	}
	var unexpected, several []string
	for _, id := range slices.Sorted(maps.Keys(rc.byTask)) {
		got := rc.byTask[id]
		counts.duplicates += got.count - 1
		state, ok := final[id]
		if !ok {
			unexpected = append(unexpected, fmt.Sprintf("%d (%d deliveries)", id, got.count))
			continue
		}
		if len(got.deliveries) != 1 || len(got.events) != 1 || !got.events["task."+state] {
			several = append(several, fmt.Sprintf("%d %s: delivery ids %v, events %v", id, state, slices.Sorted(maps.Keys(got.deliveries)), slices.Sorted(maps.Keys(got.events))))
		}
	}
	if len(unexpected) > 0 {
		problems = append(problems, fmt.Sprintf("%d tasks got a callback but did not ask for one, were never accepted, or did not finish: %v",
			len(unexpected), unexpected[:min(len(unexpected), 20)]))
	}
	if len(several) > 0 {
		problems = append(problems, fmt.Sprintf("%d tasks got more than one delivery id or event, or an event not their final state: %s",
			len(several), strings.Join(several[:min(len(several), 20)], "; ")))
	}
	return counts, problems
}

// finalStatesOf returns the final state of each task of ids that has one.
func finalStatesOf(t *testing.T, pool *pgxpool.Pool, ids []int64) map[int64]string {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT id, state::text FROM river_job WHERE id = ANY($1) AND state::text = ANY($2)", ids, finalStates)
	if err != nil {
		t.Fatalf("final states: %v", err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var state string
		if err := rows.Scan(&id, &state); err != nil {
			t.Fatal(err)
		}
		out[id] = state
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("final states: %v", err)
	}
	return out
}
