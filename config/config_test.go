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
	require.Equal(t, 0, c.Limits.TenantMaxRunning, "no cap beyond the worker pool")
	require.Equal(t, 1024, c.Limits.ArtifactMBPerMinute)
	require.Equal(t, 250, c.Limits.TenantMaxWaiters, "a quarter of MAX_WAITERS")
	require.Equal(t, 4, c.Limits.TenantMaxUploads, "a quarter of MAX_CONCURRENT_UPLOADS")
	require.Equal(t, 10*time.Second, c.Limits.UploadIdleTimeout)
	require.Equal(t, 1000, c.Limits.TaskMaxArtifacts)
	require.Equal(t, 10, c.Limits.CallbackTenantConcurrency)
	require.Equal(t, 24*time.Hour, c.Callback.RotationGrace)
	require.Empty(t, c.Limits.Tenants)
}

func TestTenantLimits(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"API_KEYS":                    "alice:alice-key-0123456789,bob:bob-key-0123456789,carol:carol-key-0123456789",
		"TENANT_LIMITS":               " alice:tasks_per_minute=600:max_running=50:max_uploads=6 , bob:max_running=5:callback_concurrency=2,",
		"MAX_CONCURRENT_UPLOADS":      "8",
		"CALLBACK_TENANT_CONCURRENCY": "4",
		"CALLBACK_ROTATION_GRACE":     "2d",
		"TENANT_MAX_RUNNING":          "20",
		"TASKS_PER_MINUTE":            "40",
		"ARTIFACT_MB_PER_MINUTE":      "100",
		"MAX_WAITERS":                 "10",
	}))
	require.NoError(t, err)
	require.Equal(t, map[string]config.TenantLimits{
		"alice": {TasksPerMinute: 600, MaxRunning: 50, MaxUploads: 6},
		"bob":   {MaxRunning: 5, CallbackConcurrency: 2},
	}, c.Limits.Tenants)
	require.Equal(t, 4, c.Limits.CallbackConcurrencyFor("alice"))
	require.Equal(t, 2, c.Limits.CallbackConcurrencyFor("bob"))
	require.Equal(t, 48*time.Hour, c.Callback.RotationGrace)
	require.Equal(t, 600, c.Limits.TasksPerMinuteFor("alice"))
	require.Equal(t, 40, c.Limits.TasksPerMinuteFor("bob"), "bob keeps the global rate")
	require.Equal(t, 40, c.Limits.TasksPerMinuteFor("carol"))
	require.Equal(t, 50, c.Limits.MaxRunningFor("alice"))
	require.Equal(t, 5, c.Limits.MaxRunningFor("bob"))
	require.Equal(t, 20, c.Limits.MaxRunningFor("carol"), "no override: TENANT_MAX_RUNNING")
	require.Equal(t, 100, c.Limits.ArtifactMBPerMinute)
	require.Equal(t, 2, c.Limits.TenantMaxWaiters, "a quarter of MAX_WAITERS by default")
	require.Equal(t, 6, c.Limits.MaxUploadsFor("alice"))
	require.Equal(t, 2, c.Limits.MaxUploadsFor("bob"), "a quarter of MAX_CONCURRENT_UPLOADS by default")

	c, err = config.Load(env(map[string]string{"TENANT_LIMITS": "local:tasks_per_minute=5", "TENANT_MAX_WAITERS": "7"}))
	require.NoError(t, err)
	require.Equal(t, 5, c.Limits.TasksPerMinuteFor("local"), "without keys the one tenant is local")
	require.Equal(t, 7, c.Limits.TenantMaxWaiters)
}

func TestBadTenantLimitsNameTheEntry(t *testing.T) {
	t.Parallel()
	keys := "alice:alice-key-0123456789,bob:bob-key-0123456789"
	cases := map[string]struct{ limits, want string }{
		"unknown tenant":  {"alice:max_running=2,mallory:max_running=1", `entry 2 ("mallory:max_running=1")`},
		"bad name":        {"Alice:max_running=2", `entry 1 ("Alice:max_running=2")`},
		"twice":           {"bob:max_running=2,bob:tasks_per_minute=3", `entry 2 ("bob:tasks_per_minute=3"): "bob" appears twice`},
		"no settings":     {"alice", `entry 1 ("alice"): no limits`},
		"unknown setting": {"alice:max_waiters=3", `unknown setting "max_waiters"`},
		"zero callbacks":  {"alice:callback_concurrency=0", `"callback_concurrency=0" is not setting=N`},
		"not a number":    {"alice:max_running=lots", `"max_running=lots" is not setting=N`},
		"zero":            {"alice:tasks_per_minute=0", `"tasks_per_minute=0" is not setting=N`},
		"no equals":       {"alice:max_running", `"max_running" is not setting=N`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(env(map[string]string{"API_KEYS": keys, "TENANT_LIMITS": tc.limits}))
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "TENANT_LIMITS: "), err.Error())
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "key-0123456789", "no key in the error")
		})
	}
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"DATABASE_URL":               "postgresql+psycopg2://api:api@postgres:5432/api",
		"TASK_MAX_RUNTIME_SECONDS":   "5",
		"SEARCH_SOURCE_ALLOWLIST":    " Brave , searxng ,",
		"TASK_RETENTION":             "2d",
		"MINIO_SECURE":               "true",
		"QUEUES":                     "default,slow",
		"LOG_FORMAT":                 "TEXT",
		"HTTP_READ_TIMEOUT_SECONDS":  "1.5",
		"MAX_CONCURRENT_UPLOADS":     "3",
		"SCHEDULE_MAX_TASK_BYTES":    "1024",
		"INTERNAL_JOB_RETENTION":     "30s",
		"SEARCH_CACHE_SHARED":        "true",
		"BULK_MAX_CONCURRENT":        "4",
		"BULK_COUNT_TIMEOUT_SECONDS": "0.25",
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
	require.Equal(t, 1024, c.Limits.ScheduleMaxTaskBytes)
	require.Equal(t, 30*time.Second, c.Limits.InternalJobRetention)
	require.True(t, c.Limits.SearchCacheShared)
	require.Equal(t, 4, c.Limits.BulkMaxConcurrent)
	require.Equal(t, 250*time.Millisecond, c.Limits.BulkCountTimeout)
}

func TestBadValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"TASK_MAX_RUNTIME_SECONDS":    "-1",
		"TASKS_PER_MINUTE":            "many",
		"MAX_BATCH_SIZE":              "0",
		"MINIO_SECURE":                "perhaps",
		"TASK_RETENTION":              "xd",
		"WORKER_FETCH_COOLDOWN":       "fast",
		"LOG_LEVEL":                   "loud",
		"LOG_FORMAT":                  "xml",
		"TASK_RESCUE_AFTER_SECONDS":   "10", // not over the 600 s cap
		"QUEUES":                      "slow",
		"HTTP_READ_TIMEOUT_SECONDS":   "0",
		"MAX_CONCURRENT_UPLOADS":      "0",
		"SCHEDULE_MAX_TASK_BYTES":     "0",
		"INTERNAL_JOB_RETENTION":      "-1h",
		"SEARCH_CACHE_SHARED":         "sometimes",
		"BULK_MAX_CONCURRENT":         "0",
		"BULK_COUNT_TIMEOUT_SECONDS":  "-2",
		"TENANT_MAX_RUNNING":          "-1",
		"ARTIFACT_MB_PER_MINUTE":      "10", // under the 25 MB artifact cap
		"TENANT_MAX_WAITERS":          "0",
		"TENANT_MAX_UPLOADS":          "17", // over the 16 uploads of the process
		"UPLOAD_IDLE_TIMEOUT_SECONDS": "0",
		"TASK_MAX_ARTIFACTS":          "0",
		"TENANT_LIMITS":               "nobody:max_running=1",
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
	require.JSONEq(t, `{"task_max_runtime_seconds":600,"task_max_artifact_mb":25,"task_max_artifacts":1000,"tasks_per_minute":30,
		"search_source_allowlist":["brave"],"search_cache_shared":false,"fetch_domain_allowlist":["*"],"max_batch_size":50,
		"max_request_body_bytes":1048576,"schedule_max_task_bytes":65536,"internal_job_retention_seconds":3600,
		"bulk_max_concurrent":2,"bulk_count_timeout_seconds":5,"fetch_allowed_ports":[80,443],"http_read_timeout_seconds":30,
		"max_concurrent_uploads":16,"tenant_max_uploads":4,"upload_idle_timeout_seconds":10,"tenant_max_running":0,
		"callback_tenant_concurrency":10,"artifact_mb_per_minute":1024,"artifact_upload_min_cost_kib":64,"tenant_max_waiters":250}`, string(b))
}

// FuzzLoad feeds arbitrary values to every kind of variable: Load never
// panics, and what it accepts is valid.
func FuzzLoad(f *testing.F) {
	f.Add("600", "30", "7d", "brave,searxng", "true", "5ms", "alice:tasks_per_minute=600:max_running=50,bob:max_running=5", "3", "1024", "10")
	f.Add("-1", "0", "1h", "", "nope", "0s", "alice", "-1", "0", "0")
	f.Add("1e400", "99999999999999999999", "9999999999d", ",,,", "1", "1ns", "alice:max_running=99999999999999999999999", "x", "1", "")
	f.Add("600", "30", "7d", "brave", "true", "5ms", ":=:,alice:=,bob::", "", "", "")
	f.Add("600", "30", "7d", "brave", "true", "5ms", "alice:max_uploads=3,bob:max_uploads=99:max_running=1", "", "", "")
	f.Add("600", "30", "7d", "brave", "true", "5ms", "alice:callback_concurrency=3,bob:callback_concurrency=-2", "", "", "")
	f.Fuzz(func(t *testing.T, runtime, perMinute, retention, allow, secure, cooldown, tenantLimits, maxRunning, artifactMB, tenantWaiters string) {
		c, err := config.Load(env(map[string]string{
			"TASK_MAX_RUNTIME_SECONDS": runtime, "TASKS_PER_MINUTE": perMinute, "TASK_RETENTION": retention,
			"SEARCH_SOURCE_ALLOWLIST": allow, "MINIO_SECURE": secure, "WORKER_FETCH_COOLDOWN": cooldown,
			"API_KEYS": "alice:alice-key-0123456789,bob:bob-key-0123456789", "TENANT_LIMITS": tenantLimits,
			"TENANT_MAX_RUNNING": maxRunning, "ARTIFACT_MB_PER_MINUTE": artifactMB, "TENANT_MAX_WAITERS": tenantWaiters,
		}))
		if err != nil {
			if strings.Contains(err.Error(), "key-0123456789") {
				t.Fatalf("error shows a key: %v", err)
			}
			return
		}
		if c.Limits.TaskMaxRuntime <= 0 || c.Limits.TasksPerMinute <= 0 || c.TaskRetention <= 0 || c.RescueAfter <= c.Limits.TaskMaxRuntime {
			t.Fatalf("accepted invalid config: %+v", c)
		}
		if c.Limits.TenantMaxRunning < 0 || c.Limits.ArtifactMBPerMinute < c.Limits.TaskMaxArtifactMB || c.Limits.TenantMaxWaiters <= 0 {
			t.Fatalf("accepted invalid tenant limits: %+v", c.Limits)
		}
		for name, tl := range c.Limits.Tenants {
			if (name != "alice" && name != "bob") || tl.TasksPerMinute < 0 || tl.MaxRunning < 0 || tl.MaxUploads < 0 ||
				tl.CallbackConcurrency < 0 || tl == (config.TenantLimits{}) {
				t.Fatalf("accepted invalid TENANT_LIMITS entry %q: %+v", name, tl)
			}
			if c.Limits.TasksPerMinuteFor(name) <= 0 || c.Limits.MaxRunningFor(name) < 0 || c.Limits.CallbackConcurrencyFor(name) <= 0 ||
				c.Limits.MaxUploadsFor(name) <= 0 || c.Limits.MaxUploadsFor(name) > c.Limits.MaxConcurrentUploads {
				t.Fatalf("effective limits of %q out of range", name)
			}
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

func TestCallbackSettings(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(nil))
	require.NoError(t, err)
	require.Equal(t, config.Callback{DomainAllowlist: []string{"*"}, Timeout: 10 * time.Second, MaxAttempts: 12, RotationGrace: 24 * time.Hour}, c.Callback,
		"callbacks are off without a secret; any public host, ports 80 and 443")

	c, err = config.Load(env(map[string]string{
		"CALLBACK_SECRET":                 "0123456789abcdef-secret",
		"CALLBACK_DOMAIN_ALLOWLIST":       "hooks.example.com,*.example.org",
		"CALLBACK_ALLOWED_PORTS":          "8443,9000",
		"CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
		"CALLBACK_TIMEOUT_SECONDS":        "2",
		"CALLBACK_MAX_ATTEMPTS":           "3",
	}))
	require.NoError(t, err)
	require.Equal(t, config.Callback{
		Secret: "0123456789abcdef-secret", DomainAllowlist: []string{"hooks.example.com", "*.example.org"},
		AllowedPorts: []int{8443, 9000}, AllowPrivateNetworks: true, Timeout: 2 * time.Second, MaxAttempts: 3,
		RotationGrace: config.DefaultCallbackRotationGrace,
	}, c.Callback)
}

func TestBadCallbackSettingsNameTheVariable(t *testing.T) {
	t.Parallel()
	for name, vars := range map[string]map[string]string{
		"CALLBACK_SECRET":                 {"CALLBACK_SECRET": "short-s3cret"},
		"CALLBACK_TIMEOUT_SECONDS":        {"CALLBACK_TIMEOUT_SECONDS": "0"},
		"CALLBACK_MAX_ATTEMPTS":           {"CALLBACK_MAX_ATTEMPTS": "101"},
		"CALLBACK_ALLOWED_PORTS":          {"CALLBACK_ALLOWED_PORTS": "70000"},
		"CALLBACK_ALLOW_PRIVATE_NETWORKS": {"CALLBACK_ALLOW_PRIVATE_NETWORKS": "maybe"},
		"CALLBACK_ROTATION_GRACE":         {"CALLBACK_ROTATION_GRACE": "0s"},
		"CALLBACK_TENANT_CONCURRENCY":     {"CALLBACK_TENANT_CONCURRENCY": "0"},
	} {
		_, err := config.Load(env(vars))
		require.ErrorContains(t, err, name)
		require.NotContains(t, err.Error(), "short-s3cret", "the secret is never echoed")
	}
	_, err := config.Load(env(map[string]string{"CALLBACK_MAX_ATTEMPTS": "0"}))
	require.ErrorContains(t, err, "CALLBACK_MAX_ATTEMPTS")
}
