package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
)

// envScreenshotDir names a folder where TestRiverUIBrowser keeps its
// screenshot; by default it goes to the test's temporary folder, which is
// removed when the test ends.
const envScreenshotDir = "TASKRUNNER_SCREENSHOT_DIR"

// browserTimeout bounds the whole browser part of TestRiverUIBrowser:
// starting Chromium, loading River UI and its API calls, the screenshot.
const browserTimeout = 60 * time.Second

// TestRiverUIBrowser logs into River UI with an API key in headless
// Chromium and sees on the job's page a task the test submitted, and saves
// a screenshot of that page. It needs Debian's chromium package
// (`make test` installs it); without it the test fails rather than skips.
func TestRiverUIBrowser(t *testing.T) {
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	require.NoError(t, err, "the River UI browser test needs Chromium: `make test` installs it (scripts/chromium.sh)")

	bucket := testenv.NewBucket(t, "riverui-")
	key := randomKeyHex(t, 16) // 32 characters
	env := with(baseEnv(testenv.NewDB(t).URL),
		"API_KEYS", "ui:"+key+":admin",
		"MINIO_ENDPOINT", bucket.Endpoint, "MINIO_ROOT_USER", bucket.User, "MINIO_ROOT_PASSWORD", bucket.Password,
		"MINIO_BUCKET", bucket.Name)
	server, api := startAPIProc(t, "serve", env, "serve")
	bearer := "Bearer " + key
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ui:"+key))

	// River UI is behind the key: without one, or with a wrong one, it is
	// refused and asks for basic auth; with the key as the basic-auth
	// password it is served.
	status, hdr := keyedGet(t, api.base+"/riverui/", "")
	require.Equal(t, http.StatusUnauthorized, status, "River UI without a key")
	require.Contains(t, hdr.Get("WWW-Authenticate"), "Basic", "River UI without a key")
	wrong := "Basic " + base64.StdEncoding.EncodeToString([]byte("ui:"+randomKeyHex(t, 16)))
	status, _ = keyedGet(t, api.base+"/riverui/", wrong)
	require.Equal(t, http.StatusUnauthorized, status, "River UI with a wrong key")
	status, _ = keyedGet(t, api.base+"/riverui/", basic)
	require.Equal(t, http.StatusOK, status, "River UI with the key as basic-auth password")

	// The task the browser must see: an echo with a message of its own,
	// finished so its page no longer changes.
	msg := "riverui-browser-test-" + randomKeyHex(t, 6)
	id := keyedSubmit(t, api.base, bearer, map[string]any{"type": "echo", "params": map[string]any{"msg": msg}, "max_retries": 0})
	keyedWaitStatus(t, api.base, bearer, id, 30*time.Second, "completed")

	var browserOut syncBuffer
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		// Headless as root on a machine without internet: no sandbox, no
		// GPU, and nothing that calls Google. chromedp gives the browser a
		// new empty --user-data-dir of its own and removes it afterwards.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&browserOut),
	)...)
	defer cancelAlloc()
	timeoutCtx, cancelTimeout := context.WithTimeout(allocCtx, browserTimeout)
	defer cancelTimeout()
	ctx, cancelBrowser := chromedp.NewContext(timeoutCtx)
	defer cancelBrowser()
	defer func() {
		if t.Failed() && browserOut.String() != "" {
			t.Logf("chromium output:\n%s", browserOut.String())
		}
	}()

	// Every answer the page gets, River UI's API calls included.
	var (
		mu        sync.Mutex
		responses []string
		refused   []string
	)
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventResponseReceived); ok && ev.Response != nil {
			mu.Lock()
			defer mu.Unlock()
			line := fmt.Sprintf("%d %s", ev.Response.Status, ev.Response.URL)
			responses = append(responses, line)
			if ev.Response.Status >= 400 {
				refused = append(refused, line)
			}
		}
	}), "start chromium")

	// The key goes with every request of the page as a basic-auth header:
	// the document, its scripts and River UI's calls to /riverui/api/.
	_, err = chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err, "Network.enable")
	_, err = chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": basic},
	})
	require.NoError(t, err, "Network.setExtraHTTPHeaders")

	pageURL := api.base + "/riverui/jobs/" + strconv.FormatInt(id, 10)
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(pageURL))
	require.NoError(t, err, "open %s", pageURL)
	require.Equal(t, int64(http.StatusOK), resp.Status, "%s", pageURL)

	// River UI renders in the browser from its API: wait until the job's
	// kind and message are on the page.
	_, err = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`document.body && document.body.innerText.includes(%q) && document.body.innerText.includes("echo")`, msg),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	text, textErr := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	mu.Lock()
	seen := strings.Join(responses, "\n")
	mu.Unlock()
	require.NoError(t, err, "River UI did not show job %d (%s) in time; page text:\n%s\nresponses:\n%s", id, msg, text, seen)
	require.NoError(t, textErr)
	t.Logf("River UI page text:\n%s", text)

	for _, want := range []string{"Job Details", "echo", "ID: " + strconv.FormatInt(id, 10), msg, "Completed"} {
		require.Contains(t, text, want, "the job page")
	}
	mu.Lock()
	require.Empty(t, refused, "River UI got refusals; responses:\n%s", seen)
	require.True(t, strings.Contains(seen, "/riverui/api/"), "River UI made no API call; responses:\n%s", seen)
	mu.Unlock()

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	require.NoError(t, err, "screenshot")
	require.True(t, bytes.HasPrefix(shot, []byte("\x89PNG\r\n\x1a\n")), "the screenshot is not a PNG")
	dir := os.Getenv(envScreenshotDir)
	if dir == "" {
		dir = t.TempDir()
	} else {
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	path := filepath.Join(dir, "riverui-job-"+strconv.FormatInt(id, 10)+".png")
	require.NoError(t, os.WriteFile(path, shot, 0o644))
	t.Logf("screenshot of %s: %s (%d bytes; set %s to keep it)", pageURL, path, len(shot), envScreenshotDir)

	// A state-changing call of River UI's API: refused when a page of
	// another site makes it (localhost is another site than 127.0.0.1), as
	// a forged form would, and carried out from River UI's own page.
	other := fmt.Sprintf("/tasks/%d", keyedSubmit(t, api.base, bearer, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}, "run_at": "2100-01-01T00:00:00Z"}))
	deleteJS := `fetch(%q, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: %q}).then(r => r.type + " " + r.status)`
	deleteBody := fmt.Sprintf(`{"ids":[%q]}`, strings.TrimPrefix(other, "/tasks/"))
	otherSite := strings.Replace(api.base, "127.0.0.1", "localhost", 1)
	require.NotEqual(t, otherSite, api.base, "the API does not listen on 127.0.0.1")
	_, err = chromedp.Run(ctx, chromedp.NavigateResponse(otherSite+"/health"))
	require.NoError(t, err, "open %s/health", otherSite)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(deleteJS, api.base+"/riverui/api/jobs/delete", deleteBody), chromedp.EvalAwaitPromise))
	require.NoError(t, err, "cross-site delete")
	t.Logf("cross-site delete from %s: %s", otherSite, got)
	status, _, raw := keyedRequest(t, http.MethodGet, api.base+other, bearer, nil)
	require.Equal(t, http.StatusOK, status, "a cross-site page deleted %s: %s", other, raw)
	mu.Lock()
	require.Contains(t, strings.Join(responses, "\n"), "403 "+api.base+"/riverui/api/jobs/delete", "the cross-site delete was not refused")
	mu.Unlock()

	_, err = chromedp.Run(ctx, chromedp.NavigateResponse(pageURL))
	require.NoError(t, err, "open %s", pageURL)
	got, err = chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(deleteJS, "/riverui/api/jobs/delete", deleteBody), chromedp.EvalAwaitPromise))
	require.NoError(t, err, "same-origin delete")
	require.Equal(t, "basic 200", got, "River UI's own page could not delete a job")
	status, _, raw = keyedRequest(t, http.MethodGet, api.base+other, bearer, nil)
	require.Equal(t, http.StatusNotFound, status, "River UI's own page did not delete %s: %s", other, raw)

	require.NoError(t, chromedp.Cancel(ctx), "close chromium")
	server.Signal(syscall.SIGTERM)
	require.Equal(t, 0, server.WaitExit(exitTimeout))
}

// randomKeyHex returns n random bytes in hex (2n characters).
func randomKeyHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// keyedRequest sends a request with the Authorization header auth (none
// when empty) and a JSON body (when body is not nil), and returns the
// status, the headers and the body.
func keyedRequest(t *testing.T, method, url, auth string, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(buf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err, "%s %s", method, url)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, raw
}

// keyedGet is a GET with the Authorization header auth (none when empty).
func keyedGet(t *testing.T, url, auth string) (int, http.Header) {
	t.Helper()
	status, hdr, _ := keyedRequest(t, http.MethodGet, url, auth, nil)
	return status, hdr
}

// keyedSubmit posts a task with the Authorization header auth and returns
// its id, requiring 202.
func keyedSubmit(t *testing.T, base, auth string, task map[string]any) int64 {
	t.Helper()
	status, _, raw := keyedRequest(t, http.MethodPost, base+"/tasks", auth, task)
	require.Equal(t, http.StatusAccepted, status, "POST /tasks: %s", raw)
	var body struct {
		ID int64 `json:"id"`
	}
	require.NoError(t, json.Unmarshal(raw, &body), "POST /tasks: %s", raw)
	require.NotZero(t, body.ID, "POST /tasks without id: %s", raw)
	return body.ID
}

// keyedWaitStatus polls GET /tasks/{id} with the Authorization header auth
// until the task's status is want, for up to timeout.
func keyedWaitStatus(t *testing.T, base, auth string, id int64, timeout time.Duration, want string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		status, _, raw := keyedRequest(t, http.MethodGet, base+"/tasks/"+strconv.FormatInt(id, 10), auth, nil)
		require.Equal(t, http.StatusOK, status, "GET /tasks/%d: %s", id, raw)
		var body struct {
			Status string `json:"status"`
		}
		require.NoError(t, json.Unmarshal(raw, &body), "GET /tasks/%d: %s", id, raw)
		if body.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d: status %q after %s, want %q: %s", id, body.Status, timeout, want, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
