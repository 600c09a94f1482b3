package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskrunner/taskrunner/app"
	"github.com/taskrunner/taskrunner/cache"
	"github.com/taskrunner/taskrunner/search/searchtest"
	"github.com/taskrunner/taskrunner/tasktype"
)

const (
	// searchBody is the POST /search body of the cached-search figure: one
	// source, so a cached search is one Redis lookup.
	searchBody = `{"query":"taskrunner bench cached search","sources":["brave"]}`
	// searchSources is how many sources searchBody asks: the cache_hits
	// every cached run must record.
	searchSources = 1
	// searchHits is how many results the fake Brave returns (the request
	// keeps SEARCH_MAX_RESULTS of them).
	searchHits = 20
	// searchCacheTTLCap caps the cache entries' TTL, so that an interrupted
	// bench leaves nothing in Redis for long; the keys are deleted at the
	// end of every round anyway.
	searchCacheTTLCap = 10 * time.Minute
)

// searchResult is one round of the cached-search figure.
type searchResult struct {
	server []time.Duration // runs.duration_ms of the cached searches
	finish []time.Duration // their tasks' finished_at - created_at
}

// cachedSearch measures taskrunner answering searches whose every source is
// a cache hit. It serves a fake Brave Search API on loopback, builds the
// aggregator as `taskrunner serve` does (real Redis cache, under a key
// prefix of this round's own), starts a working taskrunner client with
// taskrunner's configured concurrency and fetch settings and the API on it
// (as `taskrunner serve` shares one client), warms the cache with one
// POST /search, then submits opts.searchTasks identical searches through
// POST /search from opts.searchClients clients and waits for them all.
// The fake must have been asked exactly once, and every measured run must
// record a cache hit for its source. Server time is each run's duration_ms
// in runs: the worker's time from the aggregator's Redis lookups to
// RecordOutput.
func (e *env) cachedSearch(ctx context.Context, opts *options) (searchResult, error) {
	if err := e.reset(ctx); err != nil {
		return searchResult{}, err
	}
	rdb, err := cache.NewClient(e.cfg.RedisURL)
	if err != nil {
		return searchResult{}, fmt.Errorf("cached search: %w", err)
	}
	defer rdb.Close()
	if err := cache.Ping(ctx, rdb); err != nil {
		return searchResult{}, fmt.Errorf("cached search needs Redis at REDIS_URL (-search-tasks 0 skips the figure): %w", err)
	}
	prefix, err := benchKeyPrefix()
	if err != nil {
		return searchResult{}, err
	}
	defer e.deleteKeys(rdb, prefix)

	fake := searchtest.NewBraveHandler()
	hits := make([]searchtest.Hit, searchHits)
	for i := range hits {
		hits[i] = searchtest.Hit{
			Title:   fmt.Sprintf("Result %d about task runners", i+1),
			URL:     fmt.Sprintf("https://example.com/task-runners/%d?utm_source=bench", i+1),
			Snippet: "A snippet long enough to look like one a search engine returns for a page about task runners on PostgreSQL.",
		}
	}
	fake.SetHits(hits...)
	fake.Server = httptest.NewServer(fake.Handler) // 127.0.0.1
	defer fake.Server.Close()

	cfg := *e.cfg
	cfg.BraveAPIURL = fake.BraveEndpoint()
	cfg.BraveAPIKey = searchtest.BraveKey
	cfg.RedisKeyPrefix = prefix
	cfg.SearchCacheTTL = min(cfg.SearchCacheTTL, searchCacheTTLCap)
	cfg.Limits.SearchSourceAllowlist = []string{"brave"}
	types, err := tasktype.NewRegistry(app.Builtins(&cfg)...)
	if err != nil {
		return searchResult{}, err
	}
	ccfg := e.clientConfig()
	ccfg.Work = true
	ccfg.Types, ccfg.Services.Redis = types, rdb
	client, err := e.taskrunnerClient(ccfg)
	if err != nil {
		return searchResult{}, err
	}
	svc, err := e.taskService(client, types, nil)
	if err != nil {
		return searchResult{}, err
	}
	addr, stopAPI, err := e.serveAPI(svc)
	if err != nil {
		return searchResult{}, err
	}
	defer stopAPI()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := client.Start(runCtx); err != nil {
		return searchResult{}, fmt.Errorf("cached search: start client: %w", err)
	}
	defer stopClient(client)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = opts.searchClients
	transport.MaxIdleConnsPerHost = opts.searchClients
	defer transport.CloseIdleConnections()
	post := &searchPoster{client: &http.Client{Transport: transport, Timeout: 30 * time.Second}, url: "http://" + addr + "/search"}

	// Warm the cache: the one search that asks the fake Brave.
	e.p.linef("cached search: warming the cache (Redis key prefix %s) with one POST /search ...", prefix)
	warmID, err := post.submit(ctx)
	if err != nil {
		return searchResult{}, err
	}
	if err := e.waitSearches(ctx, opts, "warm-up", 1); err != nil {
		return searchResult{}, err
	}
	if n := fake.Calls(); n != 1 {
		return searchResult{}, fmt.Errorf("cached search: the warm-up asked the fake Brave %d times, want 1", n)
	}
	e.p.linef("cached search: cache warm (task %d completed, fake Brave asked once)", warmID)

	e.p.linef("cached search: submitting %d identical searches through POST /search from %d clients ...", opts.searchTasks, opts.searchClients)
	start := time.Now()
	if err := post.submitMany(ctx, opts.searchTasks, opts.searchClients); err != nil {
		return searchResult{}, err
	}
	took := time.Since(start)
	e.p.linef("cached search: %d submitted in %s (%s); waiting for them ...",
		opts.searchTasks, took.Round(time.Millisecond), formatRate(float64(opts.searchTasks)/took.Seconds()))
	if err := e.waitSearches(ctx, opts, "cached searches", 1+opts.searchTasks); err != nil {
		return searchResult{}, err
	}
	if n := fake.Calls(); n != 1 {
		return searchResult{}, fmt.Errorf("cached search: the fake Brave was asked %d times, want once (the cache did not answer)", n)
	}
	r, err := e.searchRuns(ctx, warmID, opts.searchTasks)
	if err != nil {
		return r, err
	}
	// As the table shows them (rounded up), so its medians are among these.
	e.p.linef("cached search: %d runs checked (all completed, all cache hits, fake Brave asked once); server time p50 %s, p99 %s; enqueue -> finished p50 %s, p99 %s",
		len(r.server), formatTableLatency(percentile(r.server, 0.50)), formatTableLatency(percentile(r.server, 0.99)),
		formatTableLatency(percentile(r.finish, 0.50)), formatTableLatency(percentile(r.finish, 0.99)))
	return r, nil
}

// benchKeyPrefix is a Redis key prefix no other run uses.
func benchKeyPrefix() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random key prefix: %w", err)
	}
	return "taskrunner-bench-" + hex.EncodeToString(b) + ":", nil
}

// deleteKeys deletes every Redis key under prefix (the prefix is hex and
// a colon: no glob characters).
func (e *env) deleteKeys(rdb *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var deleted int64
	iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		n, err := rdb.Del(ctx, iter.Val()).Result()
		if err != nil {
			e.p.linef("cached search: delete Redis key %s: %v", iter.Val(), err)
			return
		}
		deleted += n
	}
	if err := iter.Err(); err != nil {
		e.p.linef("cached search: list Redis keys %s*: %v (they expire within %s)", prefix, err, searchCacheTTLCap)
		return
	}
	e.p.linef("cached search: %d Redis key(s) under %s deleted", deleted, prefix)
}

// searchPoster submits searchBody to POST /search.
type searchPoster struct {
	client *http.Client
	url    string
}

// submit posts one search and returns its task id.
func (s *searchPoster) submit(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader([]byte(searchBody)))
	if err != nil {
		return 0, fmt.Errorf("build POST /search: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST /search: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("POST /search: read response: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("POST /search: status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	var view struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(body, &view); err != nil || view.ID <= 0 {
		return 0, fmt.Errorf("POST /search: no task id in %s", bytes.TrimSpace(body))
	}
	return view.ID, nil
}

// submitMany posts n searches from clients goroutines; the first error
// stops them all and is returned.
func (s *searchPoster) submitMany(ctx context.Context, n, clients int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range min(clients, n) {
		wg.Go(func() {
			for ctx.Err() == nil && left.Add(-1) >= 0 {
				if _, err := s.submit(ctx); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// waitSearches polls until n jobs are completed, failing at once when one
// failed (retryable, discarded or cancelled), with a progress line every
// second.
func (e *env) waitSearches(ctx context.Context, opts *options, label string, n int) error {
	ticker := time.NewTicker(opts.pollEvery)
	defer ticker.Stop()
	start := time.Now()
	lastLine := start
	for {
		var done, failed int
		err := e.conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'),
			count(*) FILTER (WHERE state IN ('retryable', 'discarded', 'cancelled')) FROM river_job WHERE `+
			fmt.Sprintf(ownJobs, "kind")).Scan(&done, &failed)
		if err != nil {
			return fmt.Errorf("cached search: count jobs: %w", err)
		}
		now := time.Now()
		switch {
		case failed > 0:
			var msg *string
			_ = e.conn.QueryRow(ctx, `SELECT error FROM tasks WHERE status IN ('retryable', 'discarded', 'cancelled') ORDER BY id LIMIT 1`).Scan(&msg)
			text := "no error recorded"
			if msg != nil {
				text = *msg
			}
			return fmt.Errorf("cached search: %s: %d search task(s) failed, e.g.: %s", label, failed, text)
		case done >= n:
			return nil
		case now.Sub(start) > opts.e2eTimeout:
			return fmt.Errorf("cached search: %s: only %d of %d tasks completed after %s", label, done, n, opts.e2eTimeout)
		}
		if now.Sub(lastLine) >= time.Second {
			e.p.linef("cached search: %s: %d of %d completed", label, done, n)
			lastLine = now
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// searchRuns reads the runs of the n searches after the warm-up one,
// checking that each task ran once, completed, and had every source from
// the cache.
func (e *env) searchRuns(ctx context.Context, warmID int64, n int) (searchResult, error) {
	rows, err := e.conn.Query(ctx, `
		SELECT r.duration_ms,
		       extract(epoch FROM t.finished_at - t.created_at) * 1000,
		       coalesce(h.value, -1), coalesce(m.value, -1)
		FROM runs r
		JOIN tasks t ON t.id = r.task_id
		LEFT JOIN run_metrics h ON h.task_id = r.task_id AND h.attempt = r.attempt AND h.name = 'cache_hits'
		LEFT JOIN run_metrics m ON m.task_id = r.task_id AND m.attempt = r.attempt AND m.name = 'cache_misses'
		WHERE r.task_id <> $1 AND r.status = 'completed' AND t.type = 'search'
		ORDER BY r.id`, warmID)
	if err != nil {
		return searchResult{}, fmt.Errorf("cached search: read runs: %w", err)
	}
	defer rows.Close()
	var r searchResult
	for rows.Next() {
		var durationMS, finishMS, hits, misses float64
		if err := rows.Scan(&durationMS, &finishMS, &hits, &misses); err != nil {
			return r, fmt.Errorf("cached search: read runs: %w", err)
		}
		if hits != searchSources || misses != 0 {
			return r, fmt.Errorf("cached search: a run recorded cache_hits %v, cache_misses %v; want %d and 0", hits, misses, searchSources)
		}
		r.server = append(r.server, msDuration(durationMS))
		r.finish = append(r.finish, msDuration(finishMS))
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("cached search: read runs: %w", err)
	}
	total, completed, err := e.countRuns(ctx)
	if err != nil {
		return r, err
	}
	if len(r.server) != n || total != n+1 || completed != n+1 {
		return r, fmt.Errorf("cached search: %d cached runs read, %d runs in all (%d completed); want %d cached of %d, all completed",
			len(r.server), total, completed, n, n+1)
	}
	return r, nil
}

// msDuration is a number of milliseconds as a duration.
func msDuration(ms float64) time.Duration {
	return time.Duration(ms * float64(time.Millisecond))
}
