package httpapi_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/metrics"
)

// hostileKey is the API key of these tests.
const hostileKey = "hostile-test-key-0123456789"

var hostileKeys = []config.APIKey{{Name: "ci", Key: hostileKey, Admin: true}}

// scrape returns /metrics.
func (b *bundle) scrape(t *testing.T) string {
	t.Helper()
	resp, out := b.raw(t, http.MethodGet, "/metrics", "", nil, 0, "Authorization", "Bearer "+hostileKey)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	return string(out)
}

// metricLines counts the series of the HTTP request metrics in /metrics.
func (b *bundle) metricLines(t *testing.T) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(b.scrape(t), "\n") {
		if strings.HasPrefix(line, "taskrunner_http_request") {
			n++
		}
	}
	return n
}

// Made-up methods on made-up paths add no series: they count as OTHER on
// route "unmatched".
func TestMadeUpMethodsAddNoMetricSeries(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{metrics: metrics.New(), apiKeys: hostileKeys})
	send := func(method, path string) {
		req, err := http.NewRequest(method, b.server.URL+path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s", method, path)
	}
	// Once each of what the 500 below do, and two scrapes, so that every
	// series they can touch exists before counting.
	send("M0", "/warm-up")
	b.metricLines(t)
	before := b.metricLines(t)
	for i := 1; i <= 500; i++ {
		send("M"+strconv.Itoa(i), fmt.Sprintf("/%x/%d", rand.Uint64(), i))
	}
	after := b.metricLines(t)
	require.Equal(t, before, after, "made-up methods added series")

	text := b.scrape(t)
	require.Contains(t, text, `taskrunner_http_requests_total{method="OTHER",route="unmatched",status="401"} 501`)
	require.NotContains(t, text, `method="M1"`)
}

// dialServer opens a raw TCP connection to the test server.
func (b *bundle) dialServer(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", b.server.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readUntilClosed reads what the server sends until it closes the
// connection, failing the test when it has not after wait. It returns
// what was read and when the connection closed.
func readUntilClosed(t *testing.T, conn net.Conn, wait time.Duration) ([]byte, time.Time) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
	var got bytes.Buffer
	_, err := io.Copy(&got, conn)
	closed := time.Now()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %s; it sent: %q", wait, got.String())
	}
	return got.Bytes(), closed
}

// statusOf is the status code of the first response in raw.
func statusOf(t *testing.T, raw []byte) int {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	require.NoError(t, err, "no response in %q", raw)
	defer resp.Body.Close()
	return resp.StatusCode
}

// A body that stalls is cut at HTTP_READ_TIMEOUT_SECONDS: the connection is
// closed, whether the request had a key (the handler reads the body) or
// not (it is refused first).
func TestStalledBodyIsCutAtTheReadTimeout(t *testing.T) {
	t.Parallel()
	const readTimeout = time.Second
	b := setup(t, setupOpts{apiKeys: hostileKeys, readTimeout: readTimeout})
	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"with key", "Authorization: Bearer " + hostileKey + "\r\n", http.StatusBadRequest},
		{"without key", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn := b.dialServer(t)
			_, err := io.WriteString(conn, "POST /tasks HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n"+
				"Content-Length: 100\r\n"+tc.auth+"\r\n{")
			require.NoError(t, err)
			start := time.Now()
			got, closed := readUntilClosed(t, conn, 10*readTimeout)
			t.Logf("stalled body (%s): connection closed %s after the first byte, HTTP_READ_TIMEOUT_SECONDS=%s",
				tc.name, closed.Sub(start).Round(10*time.Millisecond), readTimeout)
			require.Equal(t, tc.status, statusOf(t, got), "%s", got)
		})
	}
}

// Long polls and event streams outlive the read timeout: they send no body.
func TestLongPollAndEventStreamOutliveTheReadTimeout(t *testing.T) {
	t.Parallel()
	const readTimeout = time.Second
	b := setup(t, setupOpts{work: true, readTimeout: readTimeout})

	id := b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 2.5}})
	start := time.Now()
	resp := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d?wait=30s", id), nil)
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.raw)
	require.Equal(t, taskrunner.StatusCompleted, resp.task(t).Status)
	require.Greater(t, time.Since(start), 2*readTimeout, "the long poll did not outlast the read timeout")

	id = b.submit(t, map[string]any{"type": "sleep", "params": map[string]any{"seconds": 2.5}})
	start = time.Now()
	events := b.readEvents(t, id)
	require.Greater(t, time.Since(start), 2*readTimeout, "the stream did not outlast the read timeout")
	require.NotEmpty(t, events)
	last := events[len(events)-1]
	require.Equal(t, "end", last.name)
	require.Equal(t, "completed", decode[endEvent](t, last.data).Status)
}

// The http.Server carries the read deadlines, and /limits shows the read
// timeout.
func TestReadTimeoutIsShownAndSet(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{readTimeout: 1500 * time.Millisecond})
	limits := b.do(t, http.MethodGet, "/limits", nil)
	require.Equal(t, http.StatusOK, limits.status)
	require.Equal(t, 1.5, decode[limitsView](t, limits.raw).HTTPReadTimeoutSeconds)
	srv := b.server.Config
	require.Equal(t, 1500*time.Millisecond, srv.ReadTimeout)
	require.Equal(t, 1500*time.Millisecond, srv.ReadHeaderTimeout)
	require.NotZero(t, srv.IdleTimeout)
	require.Zero(t, srv.WriteTimeout, "long polls and event streams write for long")
}

var freshRequestID = regexp.MustCompile(`^[^ ]+/[A-Za-z0-9]+-\d{6,}$`)

// A client's X-Request-Id is kept only when it is a short token.
func TestClientRequestIDKeptOnlyWhenAShortToken(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: hostileKeys})
	for _, tc := range []struct {
		given string
		kept  bool
	}{
		{"abc-123.X_y", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"two words", false},
		{`{"event":"forged"}`, false},
		{"caf\u00e9", false},
		{strings.Repeat("x", 8000), false},
	} {
		resp := b.doAs(t, "", http.MethodGet, "/limits", nil, "X-Request-Id", tc.given)
		require.Equal(t, http.StatusUnauthorized, resp.status)
		id := resp.apiError(t).RequestID
		if tc.kept {
			require.Equal(t, tc.given, id)
		} else {
			require.NotEqual(t, tc.given, id)
			require.Regexp(t, freshRequestID, id, "given %.40q", tc.given)
		}
		var logged []string
		for _, line := range b.logs.Events("http_error") {
			logged = append(logged, line["request_id"].(string))
		}
		require.Contains(t, logged, id, "the log line has the id the client got")
		if !tc.kept {
			require.NotContains(t, b.logs.String(), tc.given[:min(len(tc.given), 70)], "the refused id reached the log")
		}
	}
}

// Logged paths are cut to 256 bytes, control characters escaped; the
// error message does the same.
func TestLoggedPathsAreCappedAndEscaped(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: hostileKeys})
	long := "/" + strings.Repeat("a", 100_000) + "%0A%1B%00tail"
	for _, tc := range []struct{ name, key, path string }{
		{"401", "", long},
		{"404", hostileKey, long},
		{"control characters", "", "/x%0A{%22event%22:%22forged%22}%1B[31m%00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := b.doAs(t, tc.key, http.MethodGet, tc.path, nil)
			require.Contains(t, []int{http.StatusUnauthorized, http.StatusNotFound}, resp.status)
			apiErr := resp.apiError(t)
			reqID := apiErr.RequestID
			require.Less(t, len(apiErr.Message), 400, "the message echoes the whole path")
			var line map[string]any
			for _, l := range b.logs.Events("http_error") {
				if l["request_id"] == reqID {
					line = l
				}
			}
			require.NotNil(t, line, "no http_error line for %v", reqID)
			path := line["path"].(string)
			require.LessOrEqual(t, len(path), 256, "logged path: %.300q", path)
			for _, r := range path {
				require.True(t, r >= 0x20 && r < 0x7f, "logged path has %q: %q", r, path)
			}
			if len(tc.path) > 256 {
				require.True(t, strings.HasPrefix(path, "/aaaa"), path)
				require.Contains(t, path, "bytes]", "the cut is marked")
			} else {
				require.Equal(t, `/x\n{"event":"forged"}\x1b[31m\x00`, path)
			}
		})
	}
	// Every line of the log is one JSON object: nothing a path held broke one.
	for _, line := range strings.Split(strings.TrimSpace(b.logs.String()), "\n") {
		require.True(t, strings.HasPrefix(line, "{") && strings.HasSuffix(line, "}"), "%.200s", line)
		require.Less(t, len(line), 2000, "a log line of %d bytes", len(line))
	}
}

// State-changing requests a browser sends from another site are refused
// with 403 and not carried out; the same without browser headers, or from
// the same origin, work.
func TestCrossOriginBrowserRequestsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: hostileKeys, riverUI: true})
	echo := map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}}

	jobs := b.jobCount(t)
	resp := b.doAs(t, hostileKey, http.MethodPost, "/tasks", echo, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, resp.status, "body: %s", resp.raw)
	require.Equal(t, taskrunner.CodeCrossOriginRequest, errorCode(t, resp))
	resp = b.doAs(t, hostileKey, http.MethodPost, "/tasks", echo, "Origin", "http://evil.example") // an old browser
	require.Equal(t, http.StatusForbidden, resp.status, "body: %s", resp.raw)
	require.Equal(t, jobs, b.jobCount(t), "a refused request enqueued")
	// Not a browser, or the same origin: carried out.
	require.Equal(t, http.StatusAccepted, b.doAs(t, hostileKey, http.MethodPost, "/tasks", echo).status)
	require.Equal(t, http.StatusAccepted, b.doAs(t, hostileKey, http.MethodPost, "/tasks", echo, "Sec-Fetch-Site", "same-origin").status)
	require.Equal(t, http.StatusAccepted, b.doAs(t, hostileKey, http.MethodPost, "/tasks", echo, "Origin", b.server.URL).status)
	// Reading is not refused.
	require.Equal(t, http.StatusOK, b.doAs(t, hostileKey, http.MethodGet, "/limits", nil, "Sec-Fetch-Site", "cross-site").status)

	// River UI's delete, as a form on another site would post it.
	id := b.submitAs(t, hostileKey, echo)
	del := fmt.Sprintf(`{"ids":["%d"]}`, id)
	status, raw := riverUIPost(t, b, "/riverui/api/jobs/delete", del, "Origin", "http://evil.example", "Content-Type", "text/plain")
	require.Equal(t, http.StatusForbidden, status, "%s", raw)
	require.Equal(t, taskrunner.CodeCrossOriginRequest, decode[errorBody](t, raw).Error.Code)
	require.Equal(t, http.StatusOK, b.doAs(t, hostileKey, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil).status, "the job was deleted")
	// The same from River UI's own page is carried out.
	status, raw = riverUIPost(t, b, "/riverui/api/jobs/delete", del, "Origin", b.server.URL, "Content-Type", "application/json")
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.Equal(t, http.StatusNotFound, b.doAs(t, hostileKey, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil).status, "the job was not deleted")
}

// submitAs posts a task with the key and returns its id, requiring 202.
func (b *bundle) submitAs(t *testing.T, key string, req map[string]any) int64 {
	t.Helper()
	resp := b.doAs(t, key, http.MethodPost, "/tasks", req)
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	return resp.task(t).ID
}

// riverUIPost posts body to River UI with the key as basic auth.
func riverUIPost(t *testing.T, b *bundle, path, body string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.server.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.SetBasicAuth("ui", hostileKey)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// River UI's API reads no body over MAX_REQUEST_BODY_BYTES.
func TestRiverUIBodiesAreLimited(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: hostileKeys, riverUI: true})
	id := b.submitAs(t, hostileKey, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	// Valid JSON, a little over 1 MiB: the delete of the task, padded.
	pad := strings.Repeat(" ", config.DefaultMaxRequestBodyBytes)
	big := fmt.Sprintf(`{"ids":["%d"]}%s`, id, pad)

	status, raw := riverUIPost(t, b, "/riverui/api/jobs/delete", big, "Content-Type", "application/json")
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", raw)
	require.Equal(t, taskrunner.CodeBodyTooLarge, decode[errorBody](t, raw).Error.Code)

	// Chunked, so no length is declared: it fails while read.
	req, err := http.NewRequest(http.MethodPost, b.server.URL+"/riverui/api/jobs/delete", io.MultiReader(strings.NewReader(big)))
	require.NoError(t, err)
	req.SetBasicAuth("ui", hostileKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	raw, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%s", raw)
	require.Equal(t, http.StatusOK, b.doAs(t, hostileKey, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil).status, "the job was deleted")

	// Under the limit it is read.
	status, raw = riverUIPost(t, b, "/riverui/api/jobs/delete", fmt.Sprintf(`{"ids":["%d"]}`, id), "Content-Type", "application/json")
	require.Equal(t, http.StatusOK, status, "%s", raw)
}

// A client that writes its whole oversized body before it reads gets the
// 413, not a reset connection: at once, or paced over longer than net/http
// waits before it closes a connection it stopped reading (half a second).
func TestOversizedBodyWrittenWholeStillGets413(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{maxArtifactBytes: 1 << 20})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	for _, route := range []struct {
		name, head string
		code       string
	}{
		{"POST /tasks", "POST /tasks HTTP/1.1\r\nContent-Type: application/json\r\n", "body_too_large"},
		{"PUT artifact", fmt.Sprintf("PUT /tasks/%d/artifacts/big.bin HTTP/1.1\r\nContent-Type: application/octet-stream\r\n", id), "artifact_size_exceeded"},
	} {
		for _, pace := range []time.Duration{0, 20 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s, 64 KiB every %s", route.name, pace), func(t *testing.T) {
				t.Parallel()
				const size = 2 << 20
				conn := b.dialServer(t)
				require.NoError(t, conn.SetWriteDeadline(time.Now().Add(30*time.Second)))
				start := time.Now()
				_, err := io.WriteString(conn, route.head+"Host: api.test\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
				require.NoError(t, err)
				chunk := bytes.Repeat([]byte("x"), 64<<10)
				for range size / len(chunk) {
					time.Sleep(pace)
					_, err = conn.Write(chunk)
					require.NoError(t, err, "writing the body")
				}
				written := time.Now()

				require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				require.NoError(t, err, "reading the answer")
				raw, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err, "reading the answer's body")
				read := time.Now()
				require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%s", raw)
				e := decode[errorBody](t, raw)
				require.Equal(t, taskrunner.Code(route.code), e.Error.Code)
				require.NotEmpty(t, e.Error.Message)
				require.NotEmpty(t, e.Error.RequestID)

				drain := drainOf(t, b, e.Error.RequestID)
				require.Equal(t, true, drain["complete"], "%v", drain)
				t.Logf("%s: %d bytes written whole in %s, the 413 read %s after the last byte; %.0f bytes drained in %v ms",
					route.name, size, written.Sub(start).Round(time.Millisecond), read.Sub(written).Round(time.Millisecond),
					drain["bytes"], drain["took_ms"])
			})
		}
	}
}

// drainOf is the http_body_drained log line of a request.
func drainOf(t *testing.T, b *bundle, requestID string) map[string]any {
	t.Helper()
	var line map[string]any
	require.Eventually(t, func() bool {
		for _, l := range b.logs.Events("http_body_drained") {
			if l["request_id"] == requestID {
				line = l
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "no http_body_drained line for %s", requestID)
	return line
}

// What is left of a refused body is read for a bounded time and a bounded
// number of bytes; past either the connection is closed.
func TestDrainIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}) // HTTP_READ_TIMEOUT_SECONDS is 30: the drain's own bounds end it
	head := "POST /tasks HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"

	t.Run("time", func(t *testing.T) {
		t.Parallel()
		conn := b.dialServer(t)
		// Declares 100 MiB, sends 64 KiB, then stalls.
		_, err := io.WriteString(conn, head)
		require.NoError(t, err)
		_, err = conn.Write(make([]byte, 64<<10))
		require.NoError(t, err)
		start := time.Now()
		got, closed := readUntilClosed(t, conn, 20*time.Second)
		require.Equal(t, http.StatusRequestEntityTooLarge, statusOf(t, got), "%s", got)
		t.Logf("stalled oversized body: answered and closed %s after its last byte", closed.Sub(start).Round(10*time.Millisecond))
	})
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		conn := b.dialServer(t)
		// Declares 100 MiB and sends as much as the server takes.
		go func() {
			if _, err := io.WriteString(conn, head); err != nil {
				return
			}
			chunk := make([]byte, 64<<10)
			for range 100 << 20 / len(chunk) {
				if _, err := conn.Write(chunk); err != nil {
					return
				}
			}
		}()
		readUntilClosed(t, conn, 20*time.Second)
		var lines []map[string]any
		require.Eventually(t, func() bool {
			lines = b.logs.Events("http_body_drained")
			for _, l := range lines {
				if l["complete"] == false && l["bytes"] == float64(4<<20) {
					return true
				}
			}
			return false
		}, 5*time.Second, 10*time.Millisecond, "no drain stopped at 4 MiB: %v", lines)
	})
}
