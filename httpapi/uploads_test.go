package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/config"
)

// openUpload starts a PUT of a 100-byte artifact as key with Expect:
// 100-continue, sending no byte of its body, and returns the connection
// and the server's first answer: 100 Continue once the handler holds an
// upload slot and reads the body, or the refusal.
func (b *bundle) openUpload(t *testing.T, key string, taskID int64, name string) (net.Conn, *http.Response, []byte) {
	t.Helper()
	conn := b.dialServer(t)
	require.NoError(t, conn.SetDeadline(time.Now().Add(time.Minute)))
	_, err := fmt.Fprintf(conn, "PUT /tasks/%d/artifacts/%s HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n", taskID, name, key)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return conn, resp, out
}

// 16 trickled uploads from alice (the process's MAX_CONCURRENT_UPLOADS)
// hold only her share of the slots, TENANT_MAX_UPLOADS (a quarter): the
// others are refused with 503 too_many_uploads, and bob's upload is
// accepted. bob's own share is his TENANT_LIMITS max_uploads.
func TestTrickledUploadsOfOneTenantLeaveTheOthersSlots(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: limitsTenantKeys, tenantLimits: map[string]config.TenantLimits{"bob": {MaxUploads: 1}}})
	aliceTask := b.submitAs(t, limitsAliceKey, echoTask)
	bobTask := b.submitAs(t, limitsBobKey, echoTask)

	var held []net.Conn
	refused := 0
	for i := range config.DefaultMaxConcurrentUploads {
		conn, resp, out := b.openUpload(t, limitsAliceKey, aliceTask, fmt.Sprintf("slow-%d.bin", i))
		if resp.StatusCode == http.StatusContinue {
			_, err := conn.Write([]byte("a")) // a byte now and then
			require.NoError(t, err)
			held = append(held, conn)
			continue
		}
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", out)
		require.Contains(t, string(out), `"too_many_uploads"`)
		require.Contains(t, string(out), "TENANT_MAX_UPLOADS")
		require.Equal(t, "1", resp.Header.Get("Retry-After"))
		refused++
	}
	for _, conn := range held {
		_, err := conn.Write([]byte("b"))
		require.NoError(t, err)
	}

	resp, out := b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/bob.bin", bobTask), "application/octet-stream",
		[]byte("bob's bytes"), 11, "Authorization", "Bearer "+limitsBobKey)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "bob's upload while alice trickles: %s", out)
	share := config.DefaultMaxConcurrentUploads / config.DefaultTenantUploadsShare
	require.Len(t, held, share, "alice holds her share")
	require.Equal(t, config.DefaultMaxConcurrentUploads-share, refused)

	// bob's override: one upload at a time.
	_, first, out := b.openUpload(t, limitsBobKey, bobTask, "bob-slow.bin")
	require.Equal(t, http.StatusContinue, first.StatusCode, "%s", out)
	_, second, out := b.openUpload(t, limitsBobKey, bobTask, "bob-second.bin")
	require.Equal(t, http.StatusServiceUnavailable, second.StatusCode, "%s", out)
	require.Contains(t, string(out), "at most 1 uploads at once (TENANT_MAX_UPLOADS)")

	lim := decode[map[string]any](t, b.doAs(t, limitsBobKey, http.MethodGet, "/limits", nil).raw)
	require.EqualValues(t, 4, lim["tenant_max_uploads"])
	require.EqualValues(t, 1, lim["tenant"].(map[string]any)["max_uploads"])
	require.EqualValues(t, config.DefaultUploadIdleTimeout.Seconds(), lim["upload_idle_timeout_seconds"])
}

// An upload whose body sends nothing for UPLOAD_IDLE_TIMEOUT_SECONDS is
// cut then, not at HTTP_READ_TIMEOUT_SECONDS (a minute here; the test
// gives up long before), in either form: 408 upload_stalled, and nothing
// is stored.
func TestUploadThatSendsNothingIsCut(t *testing.T) {
	t.Parallel()
	const idle, readTimeout = time.Second, time.Minute
	b := setup(t, setupOpts{uploadIdleTimeout: idle, readTimeout: readTimeout})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	for name, req := range map[string]string{
		"raw": fmt.Sprintf("PUT /tasks/%d/artifacts/stalled.bin HTTP/1.1\r\nHost: api.test\r\nContent-Length: 100\r\n\r\n0123456789", id),
		"json": fmt.Sprintf("POST /artifacts HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"+
			`{"task_id":%d,"name":"stalled.bin","data_base64":"aGVsbG8g`, id),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			conn := b.dialServer(t)
			_, err := io.WriteString(conn, req)
			require.NoError(t, err)
			start := time.Now()
			got, closed := readUntilClosed(t, conn, 10*idle)
			t.Logf("%s upload stalled: answered %s after its last byte, UPLOAD_IDLE_TIMEOUT_SECONDS=%s", name,
				closed.Sub(start).Round(10*time.Millisecond), idle)
			require.Equal(t, http.StatusRequestTimeout, statusOf(t, got), "%s", got)
			require.Contains(t, string(got), `"code":"upload_stalled"`)
		})
	}
	t.Cleanup(func() {
		require.Equal(t, 0, b.artifactRows(t))
		require.Equal(t, 0, b.objectCount(t), "a stalled upload left an object or a part")
	})
}

// A body that keeps sending, however slowly, is not cut by the idle
// timeout: each byte moves the deadline on.
func TestUploadThatTricklesWithinTheIdleTimeoutIsStored(t *testing.T) {
	t.Parallel()
	const idle = 2 * time.Second
	b := setup(t, setupOpts{uploadIdleTimeout: idle, readTimeout: 20 * time.Second})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	body := "0123456789"
	pr, pw := io.Pipe()
	go func() {
		for i := range body {
			time.Sleep(idle / 5) // together longer than the idle timeout
			if _, err := pw.Write([]byte{body[i]}); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/tasks/%d/artifacts/slow.txt", b.server.URL, id), pr)
	require.NoError(t, err)
	req.ContentLength = int64(len(body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", out)
	require.Equal(t, 1, b.objectCount(t))
}

// Every upload costs at least 64 KiB of the tenant's
// ARTIFACT_MB_PER_MINUTE, empty ones included: a MiB a minute allows 16
// of them, in either form, and then 429; another tenant's are not held
// back.
func TestEmptyUploadsRunOutTheByteAllowance(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{perMinute: 100, artifactMBPerMinute: 1, apiKeys: limitsTenantKeys})
	aliceTask := b.submitAs(t, limitsAliceKey, echoTask)
	bobTask := b.submitAs(t, limitsBobKey, echoTask)
	const tries = 40
	stored := 0
	for i := range tries {
		resp, out := b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/empty-%d", aliceTask, i), "", nil, 0,
			"Authorization", "Bearer "+limitsAliceKey)
		if resp.StatusCode == http.StatusCreated {
			stored++
			continue
		}
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "%s", out)
		require.Contains(t, string(out), "ARTIFACT_MB_PER_MINUTE")
		break
	}
	// 1 MiB is 16 uploads of 64 KiB; the minute refills about 1 KiB in 60 ms.
	require.GreaterOrEqual(t, stored, 16)
	require.Less(t, stored, tries, "empty uploads never ran out the allowance")

	r := b.doAs(t, limitsAliceKey, http.MethodPost, "/artifacts", fmt.Sprintf(`{"task_id":%d,"type":"log"}`, aliceTask))
	require.Equal(t, http.StatusTooManyRequests, r.status, "%s", r.raw)
	require.Equal(t, stored, b.artifactRows(t))

	resp, out := b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/empty", bobTask), "", nil, 0,
		"Authorization", "Bearer "+limitsBobKey)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "bob has his own allowance: %s", out)
	require.True(t, strings.Contains(string(out), `"size":0`), "%s", out)
}

// An upload refused before its body is read costs only the minimum, not
// what it declared: a MiB refused for a task at TASK_MAX_ARTIFACTS leaves
// the tenant most of its minute's MiB.
func TestRefusedUploadCostsOnlyTheMinimum(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	b := setup(t, setupOpts{perMinute: 100, artifactMBPerMinute: 1, maxArtifactBytes: mib, maxArtifactsPerTask: 1,
		apiKeys: limitsTenantKeys})
	id := b.submitAs(t, limitsAliceKey, echoTask)
	put := func(name string, body []byte) (*http.Response, []byte) {
		return b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/%s", id, name), "application/octet-stream", body,
			int64(len(body)), "Authorization", "Bearer "+limitsAliceKey)
	}
	resp, out := put("first", []byte("x"))
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", out)
	resp, out = put("second", randomBytes(t, mib))
	require.Equal(t, http.StatusConflict, resp.StatusCode, "%s", out)
	require.Contains(t, string(out), `"too_many_artifacts"`)
	resp, out = put("first", randomBytes(t, mib/2))
	require.Equal(t, http.StatusCreated, resp.StatusCode, "the refused MiB was not counted: %s", out)
}
