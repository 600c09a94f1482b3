package cache_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/cache"
)

// go-redis's own messages, through LibraryLogger, are JSON warn lines with
// event redis_log on the logger given, not text on stderr.
func TestLibraryLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := cache.LibraryLogger{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, "connection refused")

	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
	require.Equal(t, "redis_log", line["event"])
	require.Equal(t, "WARN", line["level"])
	require.Equal(t, "redis: connection pool: failed to dial after 5 attempts: connection refused", line["msg"])
}
