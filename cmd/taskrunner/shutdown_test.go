package main

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
	cfg, err := config.Load(getenvOf(baseEnv(tdb.URL)))
	require.NoError(t, err)
	logger, logs := testenv.Logger(t)
	// Never cancelled: nothing but shutdown may stop them.
	ctx := context.Background()
	s, err := build(ctx, cfg, logger, roleServe)
	require.NoError(t, err)
	ran := make(chan error, 1)
	go func() { ran <- s.run(ctx) }()
	require.Eventually(t, func() bool { return len(logs.Events("workers_started")) == 1 }, 20*time.Second, 10*time.Millisecond)

	s.serveErr <- errors.New("the listener failed")
	select {
	case err := <-ran:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its HTTP server failed")
	}
	s.shutdown(ctx)
	stopped := map[string]bool{}
	for _, e := range logs.Events("background_stopped") {
		stopped[e["part"].(string)] = true
	}
	require.Equal(t, map[string]bool{"task watcher": true, "schedule syncer": true}, stopped,
		"shutdown returned before the goroutines run started had stopped")
}
