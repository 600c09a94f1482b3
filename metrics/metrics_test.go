package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/metrics"
)

type testBundle struct {
	metrics *metrics.Metrics
	server  *httptest.Server // serves metrics.Handler
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	m := metrics.New()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return &testBundle{metrics: m, server: srv}
}

// scrape fetches the exposition and returns its samples, keyed by series
// as the text format writes it (`name{label="value",...}`, labels sorted).
func (b *testBundle) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(b.server.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	text, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(text)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, "sample line without a value: %q", line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, "line %q", line)
		samples[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return samples
}

// requireSamples checks that every series in want has its value.
func requireSamples(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		g, ok := got[series]
		require.True(t, ok, "series %s is not exposed", series)
		require.InDelta(t, v, g, 1e-9, "series %s", series)
	}
}

// requireNoSeries checks that no exposed series starts with prefix.
func requireNoSeries(t *testing.T, got map[string]float64, prefix string) {
	t.Helper()
	for series := range got {
		require.False(t, strings.HasPrefix(series, prefix), "series %s is exposed", series)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()

	t.Run("EachCountShowsUpWithItsLabels", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		m := b.metrics
		m.TaskEnqueued("echo", "local")
		m.TaskEnqueued("echo", "local")
		m.TaskEnqueued("sleep", "local")
		m.RunStarted("local")
		m.RunFinished("echo", "local", "completed", 250*time.Millisecond)
		m.RunStarted("local")
		m.RunFinished("echo", "local", "failed", time.Second)
		m.HTTPRequest("/tasks", http.MethodPost, http.StatusAccepted, 10*time.Millisecond)
		m.HTTPRequest("/tasks", http.MethodPost, http.StatusTooManyRequests, 20*time.Millisecond)
		m.HTTPRequest("/tasks/{id}", http.MethodGet, http.StatusOK, time.Millisecond)
		m.RateLimited()
		m.LimiterUnavailable()
		m.LimiterUnavailable()
		m.SearchCache("brave", "hit")
		m.SearchCache("brave", "miss")
		m.SearchCache("searxng", "error")
		m.ArtifactBytes("in", 1000)
		m.ArtifactBytes("out", 24)
		m.ArtifactBytes("out", 1)
		m.RunRecordDropped()

		requireSamples(t, b.scrape(t), map[string]float64{
			`taskrunner_tasks_enqueued_total{tenant="local",type="echo"}`:                   2,
			`taskrunner_tasks_enqueued_total{tenant="local",type="sleep"}`:                  1,
			`taskrunner_runs_finished_total{status="completed",tenant="local",type="echo"}`: 1,
			`taskrunner_runs_finished_total{status="failed",tenant="local",type="echo"}`:    1,
			`taskrunner_tasks_running{tenant="local"}`:                                      0,
			`taskrunner_run_duration_seconds_count{status="completed",type="echo"}`:         1,
			`taskrunner_run_duration_seconds_sum{status="completed",type="echo"}`:           0.25,
			`taskrunner_run_duration_seconds_sum{status="failed",type="echo"}`:              1,
			`taskrunner_http_requests_total{method="POST",route="/tasks",status="202"}`:     1,
			`taskrunner_http_requests_total{method="POST",route="/tasks",status="429"}`:     1,
			`taskrunner_http_requests_total{method="GET",route="/tasks/{id}",status="200"}`: 1,
			`taskrunner_http_request_duration_seconds_count{method="POST",route="/tasks"}`:  2,
			`taskrunner_http_request_duration_seconds_sum{method="POST",route="/tasks"}`:    0.03,
			`taskrunner_rate_limited_total`:                                                 1,
			`taskrunner_rate_limiter_unavailable_total`:                                     2,
			`taskrunner_search_cache_total{result="hit",source="brave"}`:                    1,
			`taskrunner_search_cache_total{result="miss",source="brave"}`:                   1,
			`taskrunner_search_cache_total{result="error",source="searxng"}`:                1,
			`taskrunner_artifact_bytes_total{direction="in"}`:                               1000,
			`taskrunner_artifact_bytes_total{direction="out"}`:                              25,
			`taskrunner_run_records_dropped_total`:                                          1,
		})
	})

	t.Run("ProcessCollectorsAreExposed", func(t *testing.T) {
		t.Parallel()
		got := setup(t).scrape(t)
		require.Contains(t, got, "go_goroutines")
	})

	t.Run("NothingIsCountedBeforeItHappens", func(t *testing.T) {
		t.Parallel()
		got := setup(t).scrape(t)
		requireNoSeries(t, got, "taskrunner_tasks_enqueued_total")
		requireNoSeries(t, got, "taskrunner_tasks{")
		requireSamples(t, got, map[string]float64{
			`taskrunner_rate_limited_total`:        0,
			`taskrunner_run_records_dropped_total`: 0,
		})
	})

	t.Run("ArtifactBytesCountsOnlyBytes", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.metrics.ArtifactBytes("in", 0)
		b.metrics.ArtifactBytes("out", -5)
		requireNoSeries(t, b.scrape(t), "taskrunner_artifact_bytes_total")
	})

	t.Run("MethodLabelsAreBounded", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
			http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace} {
			require.Equal(t, method, metrics.MethodLabel(method))
		}
		for _, method := range []string{"BREW", "get", "PROPFIND", "", strings.Repeat("X", 1000)} {
			require.Equal(t, "OTHER", metrics.MethodLabel(method), "method %q", method)
			b.metrics.HTTPRequest("unmatched", method, http.StatusMethodNotAllowed, time.Millisecond)
		}
		got := b.scrape(t)
		requireSamples(t, got, map[string]float64{
			`taskrunner_http_requests_total{method="OTHER",route="unmatched",status="405"}`:    5,
			`taskrunner_http_request_duration_seconds_count{method="OTHER",route="unmatched"}`: 5,
		})
		n := 0
		for series := range got {
			if strings.HasPrefix(series, "taskrunner_http_requests_total{") {
				n++
			}
		}
		require.Equal(t, 1, n, "made-up methods made series of their own")
	})

	t.Run("ByTenantTheLabelIsBoundedByTheConfiguredNames", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		m := b.metrics
		m.SetTenants([]string{"alice", "bob"})
		m.TaskEnqueued("echo", "alice")
		m.TaskEnqueued("echo", "alice")
		m.TaskEnqueued("echo", "bob")
		for i := range 50 {
			m.TaskEnqueued("echo", fmt.Sprintf("removed-key-%d", i))
		}
		m.RunStarted("alice")
		m.RunStarted("alice")
		m.RunStarted("bob")
		m.RunStarted("")
		m.RunFinished("echo", "alice", "completed", time.Millisecond)
		m.RunFinished("echo", "bob", "failed", time.Millisecond)
		m.RunFinished("retention", "", "completed", time.Millisecond)
		m.RunStarted("gone")
		m.RunFinished("echo", "gone", "completed", time.Millisecond)

		got := b.scrape(t)
		requireSamples(t, got, map[string]float64{
			`taskrunner_tasks_enqueued_total{tenant="alice",type="echo"}`:                         2,
			`taskrunner_tasks_enqueued_total{tenant="bob",type="echo"}`:                           1,
			`taskrunner_tasks_enqueued_total{tenant="other",type="echo"}`:                         50,
			`taskrunner_tasks_running{tenant="alice"}`:                                            1,
			`taskrunner_tasks_running{tenant="bob"}`:                                              0,
			`taskrunner_tasks_running{tenant="system"}`:                                           0,
			`taskrunner_tasks_running{tenant="other"}`:                                            0,
			`taskrunner_runs_finished_total{status="completed",tenant="alice",type="echo"}`:       1,
			`taskrunner_runs_finished_total{status="failed",tenant="bob",type="echo"}`:            1,
			`taskrunner_runs_finished_total{status="completed",tenant="system",type="retention"}`: 1,
			`taskrunner_runs_finished_total{status="completed",tenant="other",type="echo"}`:       1,
		})
		for series := range got {
			require.NotContains(t, series, "removed-key", "an unconfigured owner made a series of its own")
		}
		require.Equal(t, "local", m.TenantLabel("local"), "local, the tenant without keys, is always a label")
	})

	t.Run("NilMetricsCountsNothingAndDoesNotPanic", func(t *testing.T) {
		t.Parallel()
		var m *metrics.Metrics
		require.NotPanics(t, func() {
			m.TaskEnqueued("echo", "alice")
			m.RunStarted("alice")
			m.RunFinished("echo", "alice", "completed", time.Second)
			m.SetTenants([]string{"alice"})
			m.HTTPRequest("/tasks", http.MethodPost, http.StatusAccepted, time.Millisecond)
			m.RateLimited()
			m.LimiterUnavailable()
			m.SearchCache("brave", "hit")
			m.ArtifactBytes("in", 10)
			m.RunRecordDropped()
			m.WatchQueueDepth(func(context.Context) (map[string]int64, error) {
				panic("a nil Metrics asked for the queue depth")
			}, time.Second)
		})
		rec := httptest.NewRecorder()
		require.NotPanics(t, func() { m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil)) })
		require.Equal(t, http.StatusNotFound, rec.Code)
	})
}

// depthSource is a QueueDepthFunc whose answers the test sets, counting
// the calls.
type depthSource struct {
	mu         sync.Mutex
	calls      int
	counts     map[string]int64
	err        error
	noDeadline bool // a call came without a deadline
}

func (d *depthSource) set(counts map[string]int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts, d.err = counts, err
}

func (d *depthSource) count(ctx context.Context) (map[string]int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if _, ok := ctx.Deadline(); !ok {
		d.noDeadline = true
	}
	return d.counts, d.err
}

func (d *depthSource) callCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

func TestWatchQueueDepth(t *testing.T) {
	t.Parallel()

	t.Run("AsksAtMostOncePerInterval", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		src := &depthSource{}
		src.set(map[string]int64{"available": 3, "running": 1}, nil)
		b.metrics.WatchQueueDepth(src.count, time.Hour)

		for range 5 {
			requireSamples(t, b.scrape(t), map[string]float64{
				`taskrunner_tasks{state="available"}`: 3,
				`taskrunner_tasks{state="running"}`:   1,
			})
		}
		require.Equal(t, 1, src.callCount(), "five scrapes within the interval asked more than once")
		require.False(t, src.noDeadline, "the count was asked without a deadline")
	})

	t.Run("AsksAgainOnceTheIntervalHasPassed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		src := &depthSource{}
		src.set(map[string]int64{"available": 3}, nil)
		b.metrics.WatchQueueDepth(src.count, 0) // every scrape is an interval later
		requireSamples(t, b.scrape(t), map[string]float64{`taskrunner_tasks{state="available"}`: 3})
		src.set(map[string]int64{"available": 7}, nil)
		requireSamples(t, b.scrape(t), map[string]float64{`taskrunner_tasks{state="available"}`: 7})
		require.Equal(t, 2, src.callCount())
	})

	t.Run("KeepsTheLastGoodCountsWhenCountingFails", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		src := &depthSource{}
		src.set(map[string]int64{"available": 3, "retryable": 2}, nil)
		b.metrics.WatchQueueDepth(src.count, 0)
		requireSamples(t, b.scrape(t), map[string]float64{`taskrunner_tasks{state="available"}`: 3})

		src.set(nil, errors.New("database down"))
		for range 2 {
			requireSamples(t, b.scrape(t), map[string]float64{
				`taskrunner_tasks{state="available"}`: 3,
				`taskrunner_tasks{state="retryable"}`: 2,
			})
		}
		require.Equal(t, 3, src.callCount())

		src.set(map[string]int64{"available": 4}, nil)
		got := b.scrape(t)
		requireSamples(t, got, map[string]float64{`taskrunner_tasks{state="available"}`: 4})
		require.NotContains(t, got, `taskrunner_tasks{state="retryable"}`, "a state no longer counted is still exposed")
	})

	t.Run("AFailureIsAskedAgainAtTheNextScrape", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		src := &depthSource{}
		src.set(nil, errors.New("database down"))
		b.metrics.WatchQueueDepth(src.count, time.Hour)
		requireNoSeries(t, b.scrape(t), "taskrunner_tasks{")

		src.set(map[string]int64{"available": 1}, nil)
		requireSamples(t, b.scrape(t), map[string]float64{`taskrunner_tasks{state="available"}`: 1})
		require.Equal(t, 2, src.callCount(), "a failed count waited an interval to be asked again")
	})
}
