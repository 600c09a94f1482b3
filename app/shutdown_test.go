package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

// When the process stops for another reason than its context (here its
// HTTP server failed), shutdown still ends the goroutines run started, the
// task watcher and the schedules' syncer, and waits for them before it
// closes the connections they use.
func TestShutdownWaitsForItsGoroutines(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	env := map[string]string{
		"DATABASE_URL": tdb.URL, "REDIS_URL": testenv.RedisURL(), "REDIS_KEY_PREFIX": testenv.RandomName("app-test:") + ":",
		"HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug", "MINIO_ENDPOINT": "127.0.0.1:1", "MINIO_BUCKET": "taskrunner-app-test",
		"SHUTDOWN_GRACE_SECONDS": "5", "DB_MAX_CONNS": "8",
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	require.NoError(t, err)
	logger, logs := testenv.Logger(t)
	// Never cancelled: nothing but shutdown may stop them.
	ctx := context.Background()
	s, err := New(ctx, Options{Config: cfg, Logger: logger})
	require.NoError(t, err)
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	require.Eventually(t, func() bool { return len(logs.Events("workers_started")) == 1 }, 20*time.Second, 10*time.Millisecond)

	s.serveErr <- errors.New("the listener failed")
	select {
	case err := <-ran:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its HTTP server failed")
	}
	s.Shutdown(ctx)
	stopped := map[string]bool{}
	for _, e := range logs.Events("background_stopped") {
		stopped[e["part"].(string)] = true
	}
	require.Equal(t, map[string]bool{"task watcher": true, "schedule syncer": true}, stopped,
		"shutdown returned before the goroutines run started had stopped")
}
