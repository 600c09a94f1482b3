package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

func TestHostBackoff(t *testing.T) {
	t.Parallel()
	b := newHostBackoff()
	now := time.Unix(1_700_000_000, 0)
	require.Zero(t, b.wait("a:80", now), "an unknown host: go")

	b.done("a:80", true, now)
	require.Equal(t, hostBackoffBase, b.wait("a:80", now), "after a failure: wait")
	require.Zero(t, b.wait("b:80", now), "other hosts are not held")
	b.done("a:80", true, now.Add(time.Millisecond))
	require.Equal(t, hostBackoffBase-time.Millisecond, b.wait("a:80", now.Add(time.Millisecond)),
		"a failure of one already under way does not lengthen the wait")

	// After the wait, one delivery tries again while the others wait.
	later := now.Add(hostBackoffBase)
	require.Zero(t, b.wait("a:80", later), "the probe goes")
	require.Equal(t, hostBackoffProbeWait, b.wait("a:80", later), "the others wait for it")
	b.done("a:80", true, later)
	require.Equal(t, 2*hostBackoffBase, b.wait("a:80", later), "its failure doubles the wait")

	// The wait grows to its cap, never beyond.
	at := later
	for range 20 {
		at = at.Add(b.wait("a:80", at))
		require.Zero(t, b.wait("a:80", at))
		b.done("a:80", true, at)
	}
	require.Equal(t, hostBackoffCap, b.wait("a:80", at))

	// An answer forgets the host.
	at = at.Add(hostBackoffCap)
	require.Zero(t, b.wait("a:80", at))
	b.done("a:80", false, at)
	require.Zero(t, b.wait("a:80", at))
	require.Zero(t, b.len())
}

// A probe that never reports (its worker died mid-delivery) holds the
// host's other deliveries for hostBackoffCap at most, not for good.
func TestHostBackoffForgetsAProbeThatNeverReports(t *testing.T) {
	t.Parallel()
	b := newHostBackoff()
	now := time.Unix(1_700_000_000, 0)
	b.done("a:80", true, now)
	probe := now.Add(hostBackoffBase)
	require.Zero(t, b.wait("a:80", probe), "the probe goes, and is never heard of again")
	require.Equal(t, hostBackoffProbeWait, b.wait("a:80", probe.Add(time.Second)), "the others wait for the probe")
	require.Zero(t, b.wait("a:80", probe.Add(hostBackoffCap+time.Second)), "past the cap, deliveries go again")
}

func TestHostBackoffIsBounded(t *testing.T) {
	t.Parallel()
	b := newHostBackoff()
	now := time.Unix(1_700_000_000, 0)
	for i := range 3 * maxBackoffHosts {
		b.done(fmt.Sprintf("h%d:80", i), true, now)
		require.LessOrEqual(t, b.len(), maxBackoffHosts)
	}
	// Hosts whose wait is over go first.
	b.done("late:80", true, now.Add(time.Hour))
	require.Equal(t, 1, b.len())
}

// A delivery to a host that just timed out waits (a snooze, which uses
// no attempt) without dialling it, while deliveries to other hosts, and
// other tenants' deliveries, go on.
func TestCallbackToAHostThatTimedOutWaits(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	var hits atomic.Int64
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // then a closed connection ends the request
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(hang.CloseClientConnections)
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(ok.Close)
	port := func(s *httptest.Server) int {
		u, err := url.Parse(s.URL)
		require.NoError(t, err)
		p, err := strconv.Atoi(u.Port())
		require.NoError(t, err)
		return p
	}
	dial := fetch.Config{Allowlist: []string{"*"}, AllowlistSetting: "CALLBACK_DOMAIN_ALLOWLIST",
		AllowedPorts: []int{port(hang), port(ok)}, AllowPrivateNetworks: true, MaxRedirects: -1}
	urls := map[int64]string{1: hang.URL + "/hook", 2: hang.URL + "/hook", 3: ok.URL + "/hook", 4: hang.URL + "/other"}
	owners := map[int64]string{1: "alice", 2: "alice", 3: "alice", 4: "bob"}
	w := newCallbackWorker(tdb.Pool, &CallbackDeps{
		Secret: []byte("callback-test-secret-0123456789"), Poster: fetch.New(dial), Timeout: 200 * time.Millisecond,
		Task: func(_ context.Context, id int64) (CallbackTask, error) {
			return CallbackTask{Body: []byte(`{}`), URL: urls[id], Owner: owners[id]}, nil
		},
	})
	work := func(id int64) error {
		return w.Work(context.Background(), &river.Job[CallbackArgs]{
			JobRow: &rivertype.JobRow{ID: id, Attempt: 1},
			Args:   CallbackArgs{TaskID: id, Event: "task.completed", DeliveryID: uuid.New()},
		})
	}
	attempts := func() int {
		var n int
		require.NoError(t, tdb.Pool.QueryRow(context.Background(), "SELECT count(*) FROM callback_attempts").Scan(&n))
		return n
	}

	err := work(1)
	require.ErrorContains(t, err, "fetch_timeout")
	require.EqualValues(t, 1, hits.Load())
	require.Equal(t, 1, attempts())

	err = work(2)
	var snooze *river.JobSnoozeError
	require.True(t, errors.As(err, &snooze), "want a snooze, got %v", err)
	require.Greater(t, snooze.Duration, time.Duration(0))
	require.LessOrEqual(t, snooze.Duration, hostBackoffBase+hostBackoffBase/10)
	require.EqualValues(t, 1, hits.Load(), "the host is not dialled again")
	require.Equal(t, 1, attempts(), "a wait is no attempt")

	require.NoError(t, work(3), "another host is not held")
	require.Equal(t, 2, attempts())

	// Another tenant's deliveries to that host are not held by alice's
	// wait: hers may hang on a path of her choosing.
	err = work(4)
	require.ErrorContains(t, err, "fetch_timeout", "bob's delivery is tried")
	require.EqualValues(t, 2, hits.Load())
	require.Equal(t, 3, attempts())
}
