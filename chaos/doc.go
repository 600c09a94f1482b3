// Package chaos is taskrunner's fault and scale suite (`make chaos`). Its
// tests start real processes (taskrunner api and worker processes, and a
// PostgreSQL cluster, a Redis and a MinIO of their own on spare loopback
// ports, in temporary folders) and, under a steady stream of submitted
// tasks, kill workers and stop and restart each dependency, then check in
// the database that nothing accepted was lost, and that a receiver of the
// suite's own got a signed callback for every finished task that asked
// for one.
//
// The tests carry the build tag chaos, so `go test ./...` skips them:
//
//	go test -tags chaos -count=1 -timeout 10m -v ./chaos
//
// The schedule soak (`make soak`) carries the tag soak as well: it loads
// the machine for minutes and is run on its own.
//
// CHAOS_TASKRUNNER_BIN and CHAOS_MINIO_BIN name the binaries to run (by
// default taskrunner is built into a temporary folder, and MinIO is
// ./bin/minio from `make minio`); CHAOS_PG_BIN the folder of initdb and
// postgres (default: the newest /usr/lib/postgresql/*/bin, or pg_config's);
// CHAOS_LOG_DIR, when set, keeps every process's log there.
package chaos
