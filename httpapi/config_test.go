package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/internal/testenv"
)

// Config: a missing dependency is an error naming it, not a nil-pointer
// panic on the first request, and the limits left at 0 get config's
// defaults, which GET /limits shows.
func TestConfig(t *testing.T) {
	t.Parallel()
	logger, _ := testenv.Logger(t)
	tasks, artifacts := offlineServices(t, logger)

	for _, tc := range []struct {
		name  string
		cfg   httpapi.Config
		field string
	}{
		{"no tasks", httpapi.Config{Artifacts: artifacts}, "Tasks"},
		{"no artifacts", httpapi.Config{Tasks: tasks}, "Artifacts"},
		{"a check without a function", httpapi.Config{Tasks: tasks, Artifacts: artifacts, Checks: []httpapi.Check{{Name: "postgres"}}}, "Checks[0]"},
		{"negative batch size", httpapi.Config{Tasks: tasks, Artifacts: artifacts, Limits: config.Limits{MaxBatchSize: -1}}, "MaxBatchSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, err := httpapi.New(tc.cfg)
			require.ErrorContains(t, err, tc.field)
			require.Nil(t, api)
		})
	}

	t.Run("defaults", func(t *testing.T) {
		api, err := httpapi.New(httpapi.Config{Tasks: tasks, Artifacts: artifacts})
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/limits", nil))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var got struct {
			MaxBatchSize         int     `json:"max_batch_size"`
			MaxRequestBodyBytes  int64   `json:"max_request_body_bytes"`
			HTTPReadTimeout      float64 `json:"http_read_timeout_seconds"`
			MaxConcurrentUploads int     `json:"max_concurrent_uploads"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		require.Equal(t, config.DefaultMaxBatchSize, got.MaxBatchSize)
		require.Equal(t, int64(config.DefaultMaxRequestBodyBytes), got.MaxRequestBodyBytes)
		require.Equal(t, config.DefaultHTTPReadTimeout.Seconds(), got.HTTPReadTimeout)
		require.Equal(t, config.DefaultMaxConcurrentUploads, got.MaxConcurrentUploads)
	})
}
