package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// The poster sends the whole request, keeps its connections alive, opens a
// new one when the server closes one, and fails on an unexpected status
// with the answer in the error.
func TestPoster(t *testing.T) {
	var conns, requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/tasks" || r.Header.Get("Content-Type") != "application/json" ||
			string(body) != echoBody || err != nil {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		if requests.Add(1) == 3 {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":1}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	p := newPoster(addr, "/tasks", []byte(echoBody), http.StatusAccepted, 1)
	defer p.close()
	for range 5 {
		require.NoError(t, p.post(context.Background()))
	}
	require.EqualValues(t, 5, requests.Load())
	require.EqualValues(t, 2, conns.Load(), "one connection, and one more after the server closed it")

	wrong := newPoster(addr, "/tasks", []byte(`{}`), http.StatusAccepted, 1)
	defer wrong.close()
	require.ErrorContains(t, wrong.post(context.Background()), "POST /tasks: status 400: unexpected request")
}
