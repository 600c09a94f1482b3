package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/fetch"
)

// names resolves the test's host names to loopback, standing in for DNS.
type names map[string]netip.Addr

func (n names) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := n[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

type fetchBundle struct {
	*bundle
	site *httptest.Server
	port string
}

// setupFetch serves a small site on loopback as allowed.test and
// evil.test, and lets the fetcher reach it (private networks allowed, its
// port allowed, allowed.test only on the allowlist).
func setupFetch(t *testing.T) fetchBundle {
	t.Helper()
	return setupFetchWith(t, testMaxArtifactBytes)
}

// setupFetchWith is setupFetch with maxBytes as the fetch and artifact
// size limit. Its site also serves /large: 4 MiB with a Content-Length,
// sent in 256 KiB pieces 100 ms apart.
func setupFetchWith(t *testing.T, maxBytes int64) fetchBundle {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) {
		const piece, pieces = 256 << 10, 16
		w.Header().Set("Content-Length", strconv.Itoa(piece*pieces))
		w.Header().Set("Content-Type", "application/octet-stream")
		for range pieces {
			if _, err := w.Write(make([]byte, piece)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<h1>hello from the fetch test</h1>")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, testMaxArtifactBytes+10)) //nolint:errcheck
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/odd-type", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=\xff\xfe")
		fmt.Fprint(w, "odd")
	})
	site := httptest.NewServer(mux)
	t.Cleanup(site.Close)
	_, port, _ := net.SplitHostPort(site.Listener.Addr().String())
	mux.HandleFunc("/to-evil", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://evil.test:"+port+"/page.html", http.StatusFound)
	})
	mux.HandleFunc("/to-page", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/page.html", http.StatusFound)
	})
	p, _ := strconv.Atoi(port)
	cfg := fetch.Config{
		Allowlist: []string{"allowed.test"}, AllowedPorts: []int{p}, AllowPrivateNetworks: true,
		MaxBytes: maxBytes,
		Resolver: names{"allowed.test": netip.MustParseAddr("127.0.0.1"), "evil.test": netip.MustParseAddr("127.0.0.1")},
	}
	b := setup(t, setupOpts{work: true, fetch: &cfg, maxArtifactBytes: maxBytes})
	return fetchBundle{bundle: b, site: site, port: port}
}

// fetchResult is a fetch task's result.
type fetchResult struct {
	FinalURL    string `json:"final_url"`
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	ArtifactID  string `json:"artifact_id"`
}

func (f fetchBundle) url(host, path string) string { return "http://" + host + ":" + f.port + path }

func TestFetchStoresThePageAsAnArtifact(t *testing.T) {
	t.Parallel()
	f := setupFetch(t)

	id := f.submit(t, map[string]any{"type": "fetch", "params": map[string]any{"url": f.url("allowed.test", "/to-page")}})
	done := f.waitStatus(t, id, "completed").task(t)
	var result fetchResult
	require.NoError(t, json.Unmarshal(done.Result, &result), "result: %s", done.Result)
	require.Equal(t, f.url("allowed.test", "/page.html"), result.FinalURL)
	require.Equal(t, 200, result.Status)
	require.Equal(t, "text/html; charset=utf-8", result.ContentType)
	artifactID := result.ArtifactID
	require.Equal(t, []string{artifactID}, done.ArtifactIDs)

	resp, body := f.raw(t, http.MethodGet, "/artifacts/"+artifactID, "", nil, 0)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "<h1>hello from the fetch test</h1>", string(body))
	meta := f.do(t, http.MethodGet, "/artifacts/"+artifactID+"/meta", nil)
	require.Equal(t, "page.html", meta.artifact(t).Name)
	require.Equal(t, "fetch", meta.artifact(t).Type)
}

func TestFetchRefusesDomainsOutsideTheAllowlist(t *testing.T) {
	t.Parallel()
	f := setupFetch(t)

	// At submit: nothing is enqueued.
	for _, u := range []string{f.url("evil.test", "/page.html"), "http://169.254.169.254/latest/meta-data/", "ftp://allowed.test/x", "http://user:pw@allowed.test:" + f.port + "/"} {
		resp := f.do(t, http.MethodPost, "/tasks", map[string]any{"type": "fetch", "params": map[string]any{"url": u}})
		require.Equal(t, http.StatusBadRequest, resp.status, "%s: %s", u, resp.raw)
		require.Equal(t, "params.url", resp.apiError(t).Field)
	}
	resp := f.do(t, http.MethodPost, "/tasks", map[string]any{"type": "fetch", "params": map[string]any{"url": f.url("evil.test", "/")}})
	require.Equal(t, taskrunner.CodeDomainNotAllowed, errorCode(t, resp))
	require.Zero(t, f.jobCount(t))

	// On a redirect: the task fails, not retried, and nothing is stored.
	id := f.submit(t, map[string]any{"type": "fetch", "params": map[string]any{"url": f.url("allowed.test", "/to-evil")}, "max_retries": 2})
	done := f.waitStatus(t, id, "cancelled", "discarded").task(t)
	require.Equal(t, taskrunner.StatusDiscarded, done.Status, "a failure no retry can fix is not a cancel")
	taskErr := done.failure(t)
	require.Equal(t, taskrunner.CodeDomainNotAllowed, taskErr.Code)
	require.NotContains(t, taskErr.Message, "evil.test", "host names stay in the log")
	require.Len(t, f.logs.Events("task_failed"), 1)
	require.Contains(t, f.logs.Events("task_failed")[0]["error"], "evil.test")
	require.Equal(t, 1, done.Attempt)
	require.Zero(t, f.artifactRows(t))
}

func TestFetchOversizedBodyStoresNothing(t *testing.T) {
	t.Parallel()
	f := setupFetch(t)
	id := f.submit(t, map[string]any{"type": "fetch", "params": map[string]any{"url": f.url("allowed.test", "/big")}, "max_retries": 2})
	done := f.waitStatus(t, id, "cancelled", "discarded").task(t)
	require.Equal(t, taskrunner.StatusDiscarded, done.Status)
	require.Equal(t, taskrunner.CodeArtifactSizeExceeded, done.failure(t).Code)
	require.Equal(t, 1, done.Attempt, "an oversized body is not retried")
	require.Zero(t, f.artifactRows(t))
	require.Zero(t, f.objectCount(t))
}

func TestFetchSlowServerHitsTheTimeout(t *testing.T) {
	t.Parallel()
	f := setupFetch(t)
	start := time.Now()
	id := f.submit(t, map[string]any{"type": "fetch", "params": map[string]any{"url": f.url("allowed.test", "/slow")}, "timeout_seconds": 0.5, "max_retries": 0})
	done := f.waitStatus(t, id, "discarded").task(t)
	require.Less(t, time.Since(start), 8*time.Second)
	require.Equal(t, taskrunner.CodeTaskRuntimeExceeded, done.failure(t).Code)
	require.Equal(t, "killed", done.run(t, 0).Status)
}

func TestFetchClientErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	f := setupFetch(t)
	id := f.submit(t, map[string]any{"type": "fetch", "params": map[string]any{"url": f.url("allowed.test", "/missing")}, "max_retries": 2})
	done := f.waitStatus(t, id, "cancelled", "discarded").task(t)
	require.Equal(t, taskrunner.StatusDiscarded, done.Status)
	taskErr := done.failure(t)
	require.Equal(t, taskrunner.CodeFetchHTTPError, taskErr.Code)
	require.True(t, strings.Contains(taskErr.Message, "404"), taskErr.Message)
	require.Equal(t, 1, done.Attempt)
}

// A header PostgreSQL cannot store (bytes that are not UTF-8 in the
// Content-Type) does not fail the fetch: the artifact and the result get
// a storable content type.
func TestFetchWithAnUnstorableContentTypeCompletes(t *testing.T) {
	t.Parallel()
	f := setupFetch(t)
	id := f.submit(t, map[string]any{"type": "fetch", "params": map[string]any{"url": f.url("allowed.test", "/odd-type")}, "max_retries": 0})
	resp := f.waitStatus(t, id, "completed", "discarded")
	done := resp.task(t)
	require.Equal(t, taskrunner.StatusCompleted, done.Status, "body: %s", resp.raw)
	var result fetchResult
	require.NoError(t, json.Unmarshal(done.Result, &result), "result: %s", done.Result)
	require.Equal(t, "application/octet-stream", result.ContentType)
	require.Equal(t, 1, f.artifactRows(t))
}
