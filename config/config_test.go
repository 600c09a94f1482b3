package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/config"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(nil))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8000", c.HTTPAddr)
	require.Equal(t, 600*time.Second, c.Limits.TaskMaxRuntime)
	require.Equal(t, 25, c.Limits.TaskMaxArtifactMB)
	require.Equal(t, 30, c.Limits.TasksPerMinute)
	require.Equal(t, []string{"brave"}, c.Limits.SearchSourceAllowlist)
	require.Equal(t, []string{"*"}, c.Limits.FetchDomainAllowlist)
	require.Equal(t, 50, c.Limits.MaxBatchSize)
	require.Equal(t, 16, c.Limits.MaxConcurrentUploads)
	require.Equal(t, "artifacts", c.MinIOBucket)
	require.Equal(t, 3600*time.Second, c.SearchCacheTTL)
	require.Equal(t, 7*24*time.Hour, c.TaskRetention)
	require.Equal(t, 660*time.Second, c.RescueAfter, "rescue waits a minute past the runtime cap")
	require.Equal(t, []string{"default"}, c.Queues)
	require.Equal(t, 30*time.Second, c.Limits.HTTPReadTimeout)
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"DATABASE_URL":              "postgresql+psycopg2://api:api@postgres:5432/api",
		"TASK_MAX_RUNTIME_SECONDS":  "5",
		"SEARCH_SOURCE_ALLOWLIST":   " Brave , searxng ,",
		"TASK_RETENTION":            "2d",
		"MINIO_SECURE":              "true",
		"QUEUES":                    "default,slow",
		"LOG_FORMAT":                "TEXT",
		"HTTP_READ_TIMEOUT_SECONDS": "1.5",
		"MAX_CONCURRENT_UPLOADS":    "3",
	}))
	require.NoError(t, err)
	require.Equal(t, "postgresql://api:api@postgres:5432/api", c.DatabaseURL, "the SQLAlchemy form of the URL is accepted")
	require.Equal(t, 5*time.Second, c.Limits.TaskMaxRuntime)
	require.Equal(t, 65*time.Second, c.RescueAfter)
	require.Equal(t, []string{"brave", "searxng"}, c.Limits.SearchSourceAllowlist)
	require.Equal(t, 48*time.Hour, c.TaskRetention)
	require.True(t, c.MinIOSecure)
	require.Equal(t, []string{"default", "slow"}, c.Queues)
	require.Equal(t, "text", c.LogFormat)
	require.Equal(t, 1500*time.Millisecond, c.Limits.HTTPReadTimeout)
	require.Equal(t, 3, c.Limits.MaxConcurrentUploads)
}

func TestBadValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"TASK_MAX_RUNTIME_SECONDS":  "-1",
		"TASKS_PER_MINUTE":          "many",
		"MAX_BATCH_SIZE":            "0",
		"MINIO_SECURE":              "perhaps",
		"TASK_RETENTION":            "xd",
		"WORKER_FETCH_COOLDOWN":     "fast",
		"LOG_LEVEL":                 "loud",
		"LOG_FORMAT":                "xml",
		"TASK_RESCUE_AFTER_SECONDS": "10", // not over the 600 s cap
		"QUEUES":                    "slow",
		"HTTP_READ_TIMEOUT_SECONDS": "0",
		"MAX_CONCURRENT_UPLOADS":    "0",
	}
	for name, val := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(env(map[string]string{name: val}))
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), name), "error %q does not name %s", err, name)
		})
	}
}

func TestSecretsAreNotInErrors(t *testing.T) {
	t.Parallel()
	_, err := config.Load(env(map[string]string{
		"DATABASE_URL":     "postgres://user:s3cr3t-pw@host:5432/db",
		"MINIO_ROOT_USER":  "admin",
		"TASKS_PER_MINUTE": "nope",
	}))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cr3t-pw")
}

func TestLimitsJSON(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(nil))
	require.NoError(t, err)
	b, err := c.Limits.MarshalJSON()
	require.NoError(t, err)
	require.JSONEq(t, `{"task_max_runtime_seconds":600,"task_max_artifact_mb":25,"tasks_per_minute":30,
		"search_source_allowlist":["brave"],"fetch_domain_allowlist":["*"],"max_batch_size":50,
		"max_request_body_bytes":1048576,"fetch_allowed_ports":[80,443],"http_read_timeout_seconds":30,
		"max_concurrent_uploads":16}`, string(b))
}

// FuzzLoad feeds arbitrary values to every kind of variable: Load never
// panics, and what it accepts is valid.
func FuzzLoad(f *testing.F) {
	f.Add("600", "30", "7d", "brave,searxng", "true", "5ms")
	f.Add("-1", "0", "1h", "", "nope", "0s")
	f.Add("1e400", "99999999999999999999", "9999999999d", ",,,", "1", "1ns")
	f.Fuzz(func(t *testing.T, runtime, perMinute, retention, allow, secure, cooldown string) {
		c, err := config.Load(env(map[string]string{
			"TASK_MAX_RUNTIME_SECONDS": runtime, "TASKS_PER_MINUTE": perMinute, "TASK_RETENTION": retention,
			"SEARCH_SOURCE_ALLOWLIST": allow, "MINIO_SECURE": secure, "WORKER_FETCH_COOLDOWN": cooldown,
		}))
		if err != nil {
			return
		}
		if c.Limits.TaskMaxRuntime <= 0 || c.Limits.TasksPerMinute <= 0 || c.TaskRetention <= 0 || c.RescueAfter <= c.Limits.TaskMaxRuntime {
			t.Fatalf("accepted invalid config: %+v", c)
		}
	})
}

// Fair share: on by default, with no cap on a tenant's running tasks; the
// tenants are the key names (each once), or the local tenant without keys;
// a TENANT_LIMITS override of max running wins over TENANT_MAX_RUNNING.
func TestTenantFairShareSettings(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(nil))
	require.NoError(t, err)
	require.True(t, c.TenantFairShare)
	require.Zero(t, c.Limits.TenantMaxRunning)
	require.Zero(t, c.Limits.MaxRunningFor("local"))
	require.Equal(t, []string{"local"}, c.Tenants())

	c, err = config.Load(env(map[string]string{
		"API_KEYS":           "bob:bbbbbbbbbbbbbbbbbbbb,alice:aaaaaaaaaaaaaaaaaaaa",
		"TENANT_MAX_RUNNING": "5",
		"TENANT_FAIR_SHARE":  "true",
	}))
	require.NoError(t, err)
	require.Equal(t, []string{"alice", "bob"}, c.Tenants())
	require.Equal(t, 5, c.Limits.TenantMaxRunning)
	c.Limits.Tenants = map[string]config.TenantLimits{"alice": {MaxRunning: 50}, "bob": {TasksPerMinute: 600}}
	require.Equal(t, 50, c.Limits.MaxRunningFor("alice"))
	require.Equal(t, 5, c.Limits.MaxRunningFor("bob"), "an override of another limit leaves the global cap")
	require.Equal(t, 5, c.Limits.MaxRunningFor("carol"))

	c, err = config.Load(env(map[string]string{"TENANT_FAIR_SHARE": "false"}))
	require.NoError(t, err)
	require.False(t, c.TenantFairShare)
}

// A cap that cannot hold, and a bad number, are refused naming the variable.
func TestTenantMaxRunningRefusals(t *testing.T) {
	t.Parallel()
	for name, vars := range map[string]map[string]string{
		"negative":           {"TENANT_MAX_RUNNING": "-1"},
		"not a number":       {"TENANT_MAX_RUNNING": "five"},
		"without fair share": {"TENANT_MAX_RUNNING": "5", "TENANT_FAIR_SHARE": "false"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(env(vars))
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "TENANT_MAX_RUNNING"), "error %q does not name TENANT_MAX_RUNNING", err)
		})
	}
	_, err := config.Load(env(map[string]string{"TENANT_FAIR_SHARE": "maybe"}))
	require.ErrorContains(t, err, "TENANT_FAIR_SHARE")
}

// FuzzTenantSettings: whatever TENANT_MAX_RUNNING and TENANT_FAIR_SHARE
// hold, Load never panics, and what it accepts is a cap that holds.
func FuzzTenantSettings(f *testing.F) {
	f.Add("5", "true")
	f.Add("-1", "false")
	f.Add("99999999999999999999", "1")
	f.Add("0", "")
	f.Fuzz(func(t *testing.T, maxRunning, fairShare string) {
		c, err := config.Load(env(map[string]string{"TENANT_MAX_RUNNING": maxRunning, "TENANT_FAIR_SHARE": fairShare}))
		if err != nil {
			return
		}
		if c.Limits.TenantMaxRunning < 0 || (c.Limits.TenantMaxRunning > 0 && !c.TenantFairShare) {
			t.Fatalf("accepted a cap that cannot hold: %d, fair share %v", c.Limits.TenantMaxRunning, c.TenantFairShare)
		}
	})
}
