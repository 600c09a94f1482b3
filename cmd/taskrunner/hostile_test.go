package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
)

// An api process cuts a stalled body at HTTP_READ_TIMEOUT_SECONDS, and
// shows the setting in /limits, beside the callback settings (never the
// secret).
func TestAPIProcessCutsStalledBodies(t *testing.T) {
	t.Parallel()
	env := with(baseEnv(testenv.NewDB(t).URL), "HTTP_READ_TIMEOUT_SECONDS", "1", "CALLBACK_SECRET", clientCallbackSecret, "CALLBACK_MAX_ATTEMPTS", "5")
	_, api := startAPIProc(t, "api", env, "api")
	status, limits := api.do(http.MethodGet, "/limits", nil)
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, 1, limits["http_read_timeout_seconds"])
	require.Equal(t, true, limits["callbacks_enabled"])
	require.EqualValues(t, 5, limits["callback_max_attempts"])
	shown, err := json.Marshal(limits)
	require.NoError(t, err)
	require.NotContains(t, string(shown), clientCallbackSecret)

	conn, err := net.Dial("tcp", strings.TrimPrefix(api.base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /tasks HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(start.Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "no answer to the stalled body")
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was not closed")
	t.Logf("stalled body: answered %d and closed %s after it stalled (HTTP_READ_TIMEOUT_SECONDS=1)", resp.StatusCode, time.Since(start).Round(10*time.Millisecond))
}
