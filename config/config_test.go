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

func TestAPIKeysRolesAndRotation(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{"API_KEYS": " alice:alice-key-0123456789 , alice:alice-key-rotated-01," +
		"ops:ops-key-0123456789abc:admin,bob:bob-key-0123456789:client, bob:bob:colon-key-0123:client"}))
	require.NoError(t, err)
	require.Equal(t, []config.APIKey{
		{Name: "alice", Key: "alice-key-0123456789"},
		{Name: "alice", Key: "alice-key-rotated-01"},
		{Name: "ops", Key: "ops-key-0123456789abc", Admin: true},
		{Name: "bob", Key: "bob-key-0123456789"},
		{Name: "bob", Key: "bob:colon-key-0123"},
	}, c.APIKeys, "a name may have several keys; a key may hold a colon when the role is given")
}

func TestAPIKeysRefusals(t *testing.T) {
	t.Parallel()
	const k = "0123456789abcdef-key"
	for entries, want := range map[string]string{
		"alice:" + k + ",alice:other-" + k + ":admin": `the keys of "alice" must all have the same role`,
		"ops:" + k + ":root":                          `the role of "ops" is not client or admin`,
		"local:" + k + ":admin":                       `"local" is reserved`,
		"Alice:" + k:                                  "entry 1: a name is 1 to 32 of a-z, 0-9, _ and -",
		"a.b:" + k:                                    "entry 1: a name is 1 to 32",
		strings.Repeat("a", 33) + ":" + k:             "entry 1: a name is 1 to 32",
		"alice:" + k + ",bob:" + k:                    "entry 2 repeats a key given before",
		"alice:short":                                 `a key of "alice" is shorter than 16`,
		"alice":                                       "entry 1 is not name:key or name:key:admin",
		"alice::admin":                                "entry 1 is not name:key",
	} {
		t.Run(entries, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(env(map[string]string{"API_KEYS": entries}))
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "API_KEYS: "), "%v", err)
			require.Contains(t, err.Error(), want)
			require.NotContains(t, err.Error(), k, "errors never repeat a key")
		})
	}
}

func TestValidTenantName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "alice", "team_7-b", strings.Repeat("z", 32), "local"} {
		require.True(t, config.ValidTenantName(ok), ok)
	}
	for _, bad := range []string{"", "Alice", "a b", "a:b", "a/b", "é", strings.Repeat("z", 33)} {
		require.False(t, config.ValidTenantName(bad), bad)
	}
}

// FuzzAPIKeys: whatever API_KEYS holds, Load never panics, and what it
// accepts follows the rules: valid names, none reserved, long keys, one
// role per name, no key twice.
func FuzzAPIKeys(f *testing.F) {
	f.Add("alice:0123456789abcdef,alice:fedcba9876543210:client,ops:0123456789abcdefg:admin")
	f.Add("a:b:c:d,::,local:0123456789abcdef")
	f.Add(",,, x : 0123456789abcdef : admin ")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := config.Load(env(map[string]string{"API_KEYS": v}))
		if err != nil {
			return
		}
		admin, keys := map[string]bool{}, map[string]bool{}
		for _, k := range c.APIKeys {
			require.True(t, config.ValidTenantName(k.Name) && k.Name != "local", "name %q", k.Name)
			require.GreaterOrEqual(t, len(k.Key), 16)
			if was, ok := admin[k.Name]; ok {
				require.Equal(t, was, k.Admin, "one role per name")
			}
			admin[k.Name] = k.Admin
			require.False(t, keys[k.Key], "a key twice")
			keys[k.Key] = true
		}
	})
}
