// Package metrics is taskrunner's Prometheus instrumentation. One Metrics
// is made per process and handed to the parts that count; every method is
// safe on a nil *Metrics, which counts nothing (tests that don't care).
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the process's collectors on a registry of its own.
type Metrics struct {
	registry *prometheus.Registry

	tasksEnqueued      *prometheus.CounterVec
	runsFinished       *prometheus.CounterVec
	runDuration        *prometheus.HistogramVec
	httpRequests       *prometheus.CounterVec
	httpDuration       *prometheus.HistogramVec
	rateLimited        prometheus.Counter
	limiterUnavailable prometheus.Counter
	searchCache        *prometheus.CounterVec
	artifactBytes      *prometheus.CounterVec
	runRecordsDropped  prometheus.Counter
	tasksRunning       *prometheus.GaugeVec

	// tenants are the names the tenant label may hold (see TenantLabel).
	tenants atomic.Pointer[map[string]bool]
}

// Values of the tenant label besides the configured tenants' names.
const (
	// TenantSystem is the tenant label of taskrunner's own jobs (retention),
	// which have no owner.
	TenantSystem = "system"
	// TenantOther is the tenant label of an owner that is not configured
	// (a key since removed), so the label's values stay bounded.
	TenantOther = "other"
)

// localTenant is the owner of everything without API keys; it is always a
// label of its own.
const localTenant = "local"

// SetTenants sets the tenant names the tenant label may hold: those of
// API_KEYS and TENANT_LIMITS. Call it once at start-up.
func (m *Metrics) SetTenants(names []string) {
	if m == nil {
		return
	}
	set := map[string]bool{localTenant: true}
	for _, n := range names {
		set[n] = true
	}
	m.tenants.Store(&set)
}

// TenantLabel is owner as the tenant label holds it: a configured name,
// TenantSystem for no owner, TenantOther for any other.
func (m *Metrics) TenantLabel(owner string) string {
	switch {
	case owner == "":
		return TenantSystem
	case owner == localTenant:
		return owner
	}
	if m != nil {
		if set := m.tenants.Load(); set != nil && (*set)[owner] {
			return owner
		}
	}
	return TenantOther
}

// New returns the metrics of one process, with Go and process collectors.
func New() *Metrics {
	m := &Metrics{registry: prometheus.NewRegistry()}
	m.tasksEnqueued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskrunner_tasks_enqueued_total", Help: "Tasks enqueued, by type and tenant.",
	}, []string{"type", "tenant"})
	m.runsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskrunner_runs_finished_total", Help: "Attempts finished by this process's workers, by task type, tenant and run status (completed, failed, killed, cancelled, interrupted).",
	}, []string{"type", "tenant", "status"})
	m.tasksRunning = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "taskrunner_tasks_running", Help: "Tasks running in this process's workers, by tenant (sum over the worker processes for the whole).",
	}, []string{"tenant"})
	m.runDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "taskrunner_run_duration_seconds", Help: "Duration of attempts, by task type and run status.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 12),
	}, []string{"type", "status"})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskrunner_http_requests_total", Help: "HTTP requests, by route, method and status.",
	}, []string{"route", "method", "status"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "taskrunner_http_request_duration_seconds", Help: "HTTP request latency, by route and method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 3, 12),
	}, []string{"route", "method"})
	m.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "taskrunner_rate_limited_total", Help: "Enqueues refused by the per-minute limit: requests answered 429, and schedule ticks skipped.",
	})
	m.limiterUnavailable = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "taskrunner_rate_limiter_unavailable_total", Help: "Enqueue requests, uploads and schedule ticks let through because the limiter's Redis was unavailable.",
	})
	m.searchCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskrunner_search_cache_total", Help: "Search cache lookups, by source and result (hit, miss, error).",
	}, []string{"source", "result"})
	m.artifactBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskrunner_artifact_bytes_total", Help: "Artifact bytes stored (in) and served (out).",
	}, []string{"direction"})
	m.runRecordsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "taskrunner_run_records_dropped_total", Help: "Run records not written: refused by the database, or over the backlog while it was down.",
	})
	m.registry.MustRegister(
		m.tasksEnqueued, m.runsFinished, m.runDuration, m.httpRequests, m.httpDuration,
		m.rateLimited, m.limiterUnavailable, m.searchCache, m.artifactBytes, m.runRecordsDropped, m.tasksRunning,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the metrics in Prometheus's format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler() // nothing is counted, so there is nothing to serve
	}
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// TaskEnqueued counts a task enqueued for tenant (its owner).
func (m *Metrics) TaskEnqueued(taskType, tenant string) { m.TasksEnqueued(taskType, tenant, 1) }

// TasksEnqueued counts n tasks of one type enqueued for tenant (their
// owner): a batch's with one look-up of the labels.
func (m *Metrics) TasksEnqueued(taskType, tenant string, n int) {
	if m != nil && n > 0 {
		m.tasksEnqueued.WithLabelValues(taskType, m.TenantLabel(tenant)).Add(float64(n))
	}
}

// RunStarted counts a task of tenant (its owner; "" for taskrunner's own)
// as running until RunFinished.
func (m *Metrics) RunStarted(tenant string) {
	if m != nil {
		m.tasksRunning.WithLabelValues(m.TenantLabel(tenant)).Inc()
	}
}

// RunFinished counts a finished attempt of a task of tenant, and its
// duration, and ends its RunStarted.
func (m *Metrics) RunFinished(taskType, tenant, status string, took time.Duration) {
	if m != nil {
		label := m.TenantLabel(tenant)
		m.tasksRunning.WithLabelValues(label).Dec()
		m.runsFinished.WithLabelValues(taskType, label, status).Inc()
		m.runDuration.WithLabelValues(taskType, status).Observe(took.Seconds())
	}
}

// HTTPRequest counts a request to route (its pattern, or "unmatched":
// never its path). A method other than the standard ones counts as OTHER,
// so clients cannot add series by making methods up.
func (m *Metrics) HTTPRequest(route, method string, status int, took time.Duration) {
	if m != nil {
		method = MethodLabel(method)
		m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		m.httpDuration.WithLabelValues(route, method).Observe(took.Seconds())
	}
}

// MethodLabel is method as the method label holds it: one of the standard
// methods, or OTHER.
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "OTHER"
}

// RateLimited counts an enqueue refused by the limit: a request answered
// 429, or a schedule tick skipped.
func (m *Metrics) RateLimited() {
	if m != nil {
		m.rateLimited.Inc()
	}
}

// LimiterUnavailable counts a request or a schedule's tick let through
// without the limiter.
func (m *Metrics) LimiterUnavailable() {
	if m != nil {
		m.limiterUnavailable.Inc()
	}
}

// SearchCache counts a cache lookup: result is "hit", "miss" or "error".
func (m *Metrics) SearchCache(source, result string) {
	if m != nil {
		m.searchCache.WithLabelValues(source, result).Inc()
	}
}

// ArtifactBytes counts artifact bytes: direction is "in" or "out".
func (m *Metrics) ArtifactBytes(direction string, n int64) {
	if m != nil && n > 0 {
		m.artifactBytes.WithLabelValues(direction).Add(float64(n))
	}
}

// RunRecordDropped counts a run record that was not written.
func (m *Metrics) RunRecordDropped() {
	if m != nil {
		m.runRecordsDropped.Inc()
	}
}

// QueueDepthFunc counts tasks by state (a query of river_job).
type QueueDepthFunc func(ctx context.Context) (map[string]int64, error)

// WatchQueueDepth exports taskrunner_tasks{state} from count, asked at
// most once per interval whatever the scrape rate.
func (m *Metrics) WatchQueueDepth(count QueueDepthFunc, interval time.Duration) {
	if m == nil {
		return
	}
	m.registry.MustRegister(&depthCollector{count: count, interval: interval,
		desc: prometheus.NewDesc("taskrunner_tasks", "Tasks in river_job, by state.", []string{"state"}, nil)})
}

type depthCollector struct {
	count    QueueDepthFunc
	interval time.Duration
	desc     *prometheus.Desc

	mu     sync.Mutex
	at     time.Time
	counts map[string]int64
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= c.interval {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		counts, err := c.count(ctx)
		cancel()
		if err == nil {
			c.counts, c.at = counts, time.Now()
		}
	}
	for state, n := range c.counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}
