package deploy_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/config"
)

// root is the repository's root, where the deployment files live.
const root = ".."

const (
	composeFile = "docker-compose.yml"
	portsFile   = "docker-compose.ports.yml"
	envExample  = ".env.example"
)

// requiredVars are the secrets docker-compose.yml refuses to start without.
var requiredVars = []string{"POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "API_KEYS"}

// appServices run the taskrunner image.
var appServices = []string{"migrate", "api", "worker"}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	require.NoError(t, err)
	return string(b)
}

// exampleEnv is .env.example as docker compose reads a .env.
func exampleEnv(t *testing.T) map[string]string {
	t.Helper()
	env, err := dotenv.GetEnvFromFile(map[string]string{}, []string{filepath.Join(root, envExample)})
	require.NoError(t, err)
	return env
}

// load loads the compose files as `docker compose` would with env as its
// environment and .env, but never reads a .env of the machine's own: the
// services' env_file is left unresolved.
func load(t *testing.T, env map[string]string, files ...string) (*types.Project, error) {
	t.Helper()
	if len(files) == 0 {
		files = []string{composeFile}
	}
	var paths, list []string
	for _, f := range files {
		paths = append(paths, filepath.Join(root, f))
	}
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(root),
		cli.WithEnv(list),
		cli.WithoutEnvironmentResolution,
	)
	require.NoError(t, err)
	return opts.LoadProject(context.Background())
}

// project is docker-compose.yml loaded with .env.example as its .env.
func project(t *testing.T, files ...string) *types.Project {
	t.Helper()
	p, err := load(t, exampleEnv(t), files...)
	require.NoError(t, err)
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	require.NoError(t, err, "service %s", name)
	return s
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := project(t)
	require.Equal(t, "taskrunner", p.Name)
	rootDir, err := filepath.Abs(root)
	require.NoError(t, err)

	tests := []struct {
		name        string
		image       string // a public image, or "" for one built here
		target      string // the Dockerfile's target when built here
		command     []string
		restart     string
		healthcheck string // a word the health check's command must hold; "" for none
		networks    []string
	}{
		{name: "postgres", image: "postgres:17-alpine", healthcheck: "pg_isready", restart: "unless-stopped", networks: []string{"private"}},
		{name: "redis", image: "redis:7.4-alpine", healthcheck: "redis-cli ping", restart: "unless-stopped", networks: []string{"private"}},
		{name: "minio", target: "minio", healthcheck: "/minio/health/live", restart: "unless-stopped", networks: []string{"private"}},
		{name: "migrate", target: "taskrunner", command: []string{"migrate", "up"}, restart: "no", networks: []string{"private"}},
		{name: "api", target: "taskrunner", command: []string{"api"}, healthcheck: "http://127.0.0.1:8000/health", restart: "unless-stopped", networks: []string{"private"}},
		{name: "worker", target: "taskrunner", command: []string{"worker"}, restart: "unless-stopped", networks: []string{"private", "egress"}},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, tt.name)
	}
	require.ElementsMatch(t, names, p.ServiceNames(), "the stack's services")

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := service(t, p, tt.name)
			if tt.target != "" {
				require.NotNil(t, s.Build, "built from the Dockerfile")
				require.Equal(t, rootDir, s.Build.Context)
				require.Equal(t, "Dockerfile", s.Build.Dockerfile)
				require.Equal(t, tt.target, s.Build.Target)
				require.NotEmpty(t, s.Image, "named, so every service of the target shares one image")
			} else {
				require.Nil(t, s.Build)
				require.Equal(t, tt.image, s.Image)
			}
			if tt.command != nil {
				require.Equal(t, tt.command, []string(s.Command))
			}
			require.Equal(t, tt.restart, s.Restart)
			if tt.healthcheck == "" {
				require.Nil(t, s.HealthCheck)
			} else {
				require.NotNil(t, s.HealthCheck, "health check")
				require.False(t, s.HealthCheck.Disable)
				require.Contains(t, strings.Join(s.HealthCheck.Test, " "), tt.healthcheck)
				require.NotNil(t, s.HealthCheck.Interval)
				require.NotNil(t, s.HealthCheck.Retries)
			}
			require.ElementsMatch(t, tt.networks, slices.Collect(maps.Keys(s.Networks)), "networks")
			require.Empty(t, s.Ports, "publishes nothing on the host")
			require.Empty(t, s.NetworkMode, "no host networking")
			require.NotNil(t, s.Logging, "log rotation")
		})
	}

	t.Run("one image for every app service", func(t *testing.T) {
		t.Parallel()
		image := service(t, p, "api").Image
		for _, name := range appServices {
			require.Equal(t, image, service(t, p, name).Image, name)
		}
	})
}

func TestComposeDependsOn(t *testing.T) {
	t.Parallel()
	p := project(t)
	tests := []struct {
		service, on, condition string
	}{
		{"migrate", "postgres", types.ServiceConditionHealthy},
		{"api", "migrate", types.ServiceConditionCompletedSuccessfully},
		{"api", "postgres", types.ServiceConditionHealthy},
		{"api", "redis", types.ServiceConditionHealthy},
		{"api", "minio", types.ServiceConditionHealthy},
		{"worker", "migrate", types.ServiceConditionCompletedSuccessfully},
		{"worker", "postgres", types.ServiceConditionHealthy},
		{"worker", "redis", types.ServiceConditionHealthy},
		{"worker", "minio", types.ServiceConditionHealthy},
	}
	for _, tt := range tests {
		t.Run(tt.service+" on "+tt.on, func(t *testing.T) {
			t.Parallel()
			dep, ok := service(t, p, tt.service).DependsOn[tt.on]
			require.True(t, ok, "%s depends on %s", tt.service, tt.on)
			require.Equal(t, tt.condition, dep.Condition)
		})
	}
}

func TestComposeNetworksAndVolumes(t *testing.T) {
	t.Parallel()
	p := project(t)

	t.Run("private is internal, egress is not", func(t *testing.T) {
		t.Parallel()
		require.ElementsMatch(t, []string{"private", "egress"}, slices.Collect(maps.Keys(p.Networks)))
		require.True(t, p.Networks["private"].Internal)
		require.False(t, p.Networks["egress"].Internal)
		for _, s := range p.Services {
			require.Contains(t, s.Networks, "private", "%s is on the private network", s.Name)
		}
	})

	tests := []struct {
		service, volume, target string
	}{
		{"postgres", "postgres-data", "/var/lib/postgresql/data"},
		{"minio", "minio-data", "/data"},
	}
	for _, tt := range tests {
		t.Run(tt.volume, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, p.Volumes, tt.volume)
			s := service(t, p, tt.service)
			i := slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == tt.target })
			require.GreaterOrEqual(t, i, 0, "%s mounts its data at %s", tt.service, tt.target)
			require.Equal(t, types.VolumeTypeVolume, s.Volumes[i].Type)
			require.Equal(t, tt.volume, s.Volumes[i].Source)
		})
	}

	t.Run("host directories instead", func(t *testing.T) {
		t.Parallel()
		env := exampleEnv(t)
		env["POSTGRES_DATA"] = "/mnt/data/postgres"
		env["MINIO_DATA"] = "/mnt/data/minio"
		p, err := load(t, env)
		require.NoError(t, err)
		for name, dir := range map[string]string{"postgres": "/mnt/data/postgres", "minio": "/mnt/data/minio"} {
			v := service(t, p, name).Volumes
			require.Len(t, v, 1)
			require.Equal(t, types.VolumeTypeBind, v[0].Type, name)
			require.Equal(t, dir, v[0].Source, name)
		}
	})

	t.Run("redis keeps nothing", func(t *testing.T) {
		t.Parallel()
		s := service(t, p, "redis")
		require.Empty(t, s.Volumes)
		require.Contains(t, s.Tmpfs, "/data")
		require.Contains(t, strings.Join(s.Command, " "), `--save  --appendonly no`)
	})
}

func TestComposeScalableWorker(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"worker", "api", "migrate"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := service(t, project(t), name)
			require.Empty(t, s.ContainerName, "--scale needs compose to name the containers")
			require.Empty(t, s.Ports)
			require.Empty(t, s.Hostname)
		})
	}
}

// TestComposeAppEnvironment loads each app service's environment, as its
// container gets it (.env under the compose file's environment), with
// taskrunner's own config.Load.
func TestComposeAppEnvironment(t *testing.T) {
	t.Parallel()
	p := project(t)
	ex := exampleEnv(t)
	containerEnv := func(t *testing.T, name string, dotEnv map[string]string) map[string]string {
		t.Helper()
		s := service(t, p, name)
		require.Len(t, s.EnvFiles, 1, "%s gets .env whole", name)
		require.Equal(t, ".env", filepath.Base(s.EnvFiles[0].Path))
		env := maps.Clone(dotEnv)
		for k, v := range s.Environment {
			require.NotNil(t, v, "%s: %s has a value in the compose file", name, k)
			env[k] = *v
		}
		return env
	}

	for _, name := range appServices {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := containerEnv(t, name, ex)
			require.Equal(t, "postgres://taskrunner:"+ex["POSTGRES_PASSWORD"]+"@postgres:5432/taskrunner?sslmode=disable", env["DATABASE_URL"])
			require.Equal(t, "redis://redis:6379/0", env["REDIS_URL"])
			require.Equal(t, "minio:9000", env["MINIO_ENDPOINT"])
			cfg, err := config.Load(func(k string) string { return env[k] })
			require.NoError(t, err)
			require.Equal(t, ex["MINIO_ROOT_PASSWORD"], cfg.MinIOPassword)

			s := service(t, p, name)
			require.True(t, s.ReadOnly, "read-only root file system")
			require.Contains(t, s.Tmpfs, "/tmp")
			require.Equal(t, []string{"ALL"}, s.CapDrop)
			if name != "migrate" {
				require.NotNil(t, s.StopGracePeriod)
				require.Greater(t, time.Duration(*s.StopGracePeriod), config.DefaultShutdownGrace,
					"%s: Docker's SIGKILL must come after SHUTDOWN_GRACE_SECONDS", name)
			}
		})
	}

	t.Run("api listens on the private network with keys", func(t *testing.T) {
		t.Parallel()
		env := containerEnv(t, "api", ex)
		cfg, err := config.Load(func(k string) string { return env[k] })
		require.NoError(t, err)
		require.Equal(t, "0.0.0.0:8000", cfg.HTTPAddr)
		require.NotEmpty(t, cfg.APIKeys)
		require.Contains(t, service(t, p, "api").Expose, "8000")
	})

	t.Run("api refuses empty API_KEYS unless API_ALLOW_NO_KEYS", func(t *testing.T) {
		t.Parallel()
		dotEnv := maps.Clone(ex)
		dotEnv["API_KEYS"] = ""
		p, err := load(t, dotEnv)
		require.NoError(t, err, "an empty API_KEYS is a deliberate choice compose allows")
		s := service(t, p, "api")
		env := maps.Clone(dotEnv)
		for k, v := range s.Environment {
			env[k] = *v
		}
		_, err = config.Load(func(k string) string { return env[k] })
		require.ErrorContains(t, err, "API_KEYS")
		env["API_ALLOW_NO_KEYS"] = "true"
		_, err = config.Load(func(k string) string { return env[k] })
		require.NoError(t, err)
	})
}

func TestComposeRequiresSecrets(t *testing.T) {
	t.Parallel()
	raw := readFile(t, composeFile)
	ex := exampleEnv(t)

	t.Run("the required variables", func(t *testing.T) {
		t.Parallel()
		found := map[string]bool{}
		for line := range strings.Lines(raw) {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+):?\?`).FindAllStringSubmatch(line, -1) {
				found[m[1]] = true
			}
		}
		require.ElementsMatch(t, requiredVars, slices.Collect(maps.Keys(found)))
	})

	for _, name := range requiredVars {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := ex[name]
			require.NotEmpty(t, v, "%s has a placeholder in %s", name, envExample)
			require.Contains(t, v, "change-me", "make start refuses a .env with change-me placeholders")
			require.NotContains(t, raw, v, "the compose file does not hard-code %s", name)

			env := maps.Clone(ex)
			delete(env, name)
			_, err := load(t, env)
			require.Error(t, err, "loading without %s fails", name)
			require.ErrorContains(t, err, name)
		})
	}

	t.Run("credentials only from the environment", func(t *testing.T) {
		t.Parallel()
		require.NotContains(t, raw, "minioadmin")
		creds := regexp.MustCompile(`(?m)^\s*([A-Z_]*(?:PASSWORD|USER|KEYS?))\s*:\s*(.*)$`).FindAllStringSubmatch(raw, -1)
		require.NotEmpty(t, creds)
		for _, m := range creds {
			require.True(t, strings.HasPrefix(m[2], "${"), "%s: %q is not from the environment", m[1], m[2])
		}
	})

	t.Run(".env stays out of git and the image", func(t *testing.T) {
		t.Parallel()
		require.Contains(t, strings.Fields(readFile(t, ".gitignore")), "/.env")
		ignored := strings.Fields(readFile(t, ".dockerignore"))
		for _, p := range []string{".env", ".git", "bin", ".data"} {
			require.Contains(t, ignored, p)
		}
	})
}

func TestComposePortsOverride(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		publish string // API_PUBLISH; "" for the default
		hostIP  string
		port    string
	}{
		{"default: this machine only", "", "127.0.0.1", "8000"},
		{"another port", "127.0.0.1:18000", "127.0.0.1", "18000"},
		{"every interface", "0.0.0.0:8000", "0.0.0.0", "8000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := exampleEnv(t)
			if tt.publish != "" {
				env["API_PUBLISH"] = tt.publish
			}
			p, err := load(t, env, composeFile, portsFile)
			require.NoError(t, err)
			for _, s := range p.Services {
				if s.Name != "api" {
					require.Empty(t, s.Ports, "%s publishes nothing", s.Name)
				}
			}
			api := service(t, p, "api")
			require.Len(t, api.Ports, 1)
			require.Equal(t, tt.hostIP, api.Ports[0].HostIP)
			require.Equal(t, tt.port, api.Ports[0].Published)
			require.EqualValues(t, 8000, api.Ports[0].Target)
			require.ElementsMatch(t, []string{"private", "egress"}, slices.Collect(maps.Keys(api.Networks)),
				"a container on internal networks alone has no published ports")
		})
	}
}

// TestEnvExampleListsEveryVariable: every variable taskrunner reads is in
// .env.example, set or commented out, but those the compose file sets.
func TestEnvExampleListsEveryVariable(t *testing.T) {
	t.Parallel()
	src := readFile(t, "config/config.go")
	example := readFile(t, envExample)
	setByCompose := map[string]bool{"DATABASE_URL": true, "REDIS_URL": true, "MINIO_ENDPOINT": true, "HTTP_ADDR": true}
	vars := regexp.MustCompile(`\(\s*"([A-Z][A-Z0-9_]+)"`).FindAllStringSubmatch(src, -1)
	require.NotEmpty(t, vars)
	var missing []string
	for _, m := range vars {
		name := m[1]
		if !setByCompose[name] && !regexp.MustCompile(`(?m)^(# )?`+name+`=`).MatchString(example) {
			missing = append(missing, name)
		}
	}
	require.Empty(t, missing, "config/config.go reads these: list each in %s, as NAME=value or # NAME=default", envExample)
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	src := readFile(t, "Dockerfile")
	stages := dockerStages(src)
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage")

	t.Run("builds ./cmd/taskrunner statically from go.mod's Go", func(t *testing.T) {
		t.Parallel()
		build, ok := stages.get("build")
		require.True(t, ok)
		require.Regexp(t, `(?m)^FROM .*golang:\$\{GO_VERSION\} AS build$`, build.from)
		goMod := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(readFile(t, "go.mod"))
		require.NotNil(t, goMod)
		require.Regexp(t, `(?m)^ARG GO_VERSION=`+regexp.QuoteMeta(goMod[1])+`$`, src, "the Dockerfile's Go is go.mod's")
		for _, want := range []string{"CGO_ENABLED=0", "go build -trimpath", `-ldflags="-s -w"`, "-o /out/taskrunner ./cmd/taskrunner", "type=cache,target=/go/pkg/mod", "type=cache,target=/root/.cache/go-build"} {
			require.Contains(t, build.body, want)
		}
	})

	t.Run("MinIO is the version make run uses", func(t *testing.T) {
		t.Parallel()
		script := regexp.MustCompile(`(?m)^MINIO_VERSION=(\S+)$`).FindStringSubmatch(readFile(t, "scripts/minio.sh"))
		require.NotNil(t, script)
		require.Regexp(t, `(?m)^ARG MINIO_VERSION=`+regexp.QuoteMeta(script[1])+`$`, src)
	})

	// Every target the compose file builds, and the default (last) one, runs
	// as a user that is not root.
	targets := map[string]bool{}
	for _, s := range project(t).Services {
		if s.Build != nil {
			targets[s.Build.Target] = true
		}
	}
	last := stages[len(stages)-1].name
	require.Equal(t, "taskrunner", last, "the default target is the application")
	targets[last] = true
	for target := range targets {
		t.Run("stage "+target, func(t *testing.T) {
			t.Parallel()
			st, ok := stages.get(target)
			require.True(t, ok, "the Dockerfile has a stage %s", target)
			users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(st.body, -1)
			require.NotEmpty(t, users, "stage %s sets USER", target)
			user := users[len(users)-1][1]
			name, _, _ := strings.Cut(user, ":")
			require.NotContains(t, []string{"root", "0"}, name, "stage %s runs as non-root", target)
		})
	}

	t.Run("the application's entry point", func(t *testing.T) {
		t.Parallel()
		st, ok := stages.get("taskrunner")
		require.True(t, ok)
		app := st.body
		require.Contains(t, app, `ENTRYPOINT ["/usr/local/bin/taskrunner"]`)
		require.Contains(t, app, `CMD ["serve"]`)
		require.Contains(t, app, "COPY --from=build /out/taskrunner /usr/local/bin/taskrunner")
		for _, tool := range []string{"curl", "jq", "bash"} { // health check, make smoke DOCKER=1
			require.Regexp(t, `apk add --no-cache .*\b`+tool+`\b`, app)
		}
	})
}

// stage is one stage of a Dockerfile: its FROM line and what follows.
type stage struct{ name, from, body string }

type stageList []stage

func (l stageList) get(name string) (stage, bool) {
	i := slices.IndexFunc(l, func(s stage) bool { return s.name == name })
	if i < 0 {
		return stage{}, false
	}
	return l[i], true
}

// dockerStages splits a Dockerfile at its FROM lines.
func dockerStages(src string) stageList {
	var stages stageList
	fromRE := regexp.MustCompile(`(?i)^FROM\s.*?(?:\s+AS\s+(\S+))?$`)
	for line := range strings.Lines(src) {
		line = strings.TrimRight(line, "\n")
		if m := fromRE.FindStringSubmatch(line); m != nil {
			stages = append(stages, stage{name: m[1], from: line})
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].body += line + "\n"
		}
	}
	return stages
}
