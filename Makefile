# taskrunner: `make run` serves on 127.0.0.1:8000; `make test` runs every test.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

export DATABASE_URL ?= postgres://127.0.0.1:5432/taskrunner?sslmode=disable
export REDIS_URL ?= redis://127.0.0.1:6379/0
export HTTP_ADDR ?= 127.0.0.1:8000
# Local development credentials for the MinIO that `make run` starts on
# loopback; set your own for anything else.
export MINIO_ROOT_USER ?= minioadmin
export MINIO_ROOT_PASSWORD ?= minioadmin
export MINIO_ENDPOINT ?= 127.0.0.1:9000
TASKRUNNER_URL ?= http://$(HTTP_ADDR)

# Docker (docker-compose.yml, secrets in .env; README, "Running with Docker"):
# `make start`, `make stop`, and DOCKER=1 runs init-db and smoke in the stack.
# docker compose prefers the environment over .env, so the local defaults
# exported above are hidden from it (unless they came from the user).
DOCKER ?=
COMPOSE ?= docker compose
DOCKER_COMPOSE = env $(foreach v,DATABASE_URL REDIS_URL HTTP_ADDR MINIO_ROOT_USER MINIO_ROOT_PASSWORD MINIO_ENDPOINT,$(if $(filter file,$(origin $(v))),-u $(v))) $(COMPOSE)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build ./bin/taskrunner
	go build -o bin/taskrunner ./cmd/taskrunner

.PHONY: run
run: build minio ## start MinIO, create and migrate the database, serve on HTTP_ADDR
	@scripts/run.sh

.PHONY: init-db
init-db: $(if $(filter 1,$(DOCKER)),,build) ## create the database if missing and apply every migration (DOCKER=1: in the Docker stack)
ifeq ($(DOCKER),1)
	$(DOCKER_COMPOSE) run --rm migrate
else
	bin/taskrunner migrate up
endif

.PHONY: minio
minio: ## install the pinned MinIO server into ./bin
	@scripts/minio.sh install

.PHONY: test
test: minio ## start the services, then run every test (verify, vet, race, fuzz seed corpora)
	@scripts/test.sh

.PHONY: generate
generate: ## regenerate River's schema for sqlc, the sqlc code, and the task types in openapi.yaml and the README
	go generate ./db
	go tool sqlc generate
	go test ./builtin -run TestTaskTypesAreDocumented -count=1 -update

.PHONY: verify
verify: ## fail when generated code, go.mod or formatting is stale
	@scripts/verify.sh

.PHONY: lint
lint: ## go vet and gofmt
	go vet ./...
	@scripts/verify.sh

.PHONY: smoke
smoke: ## run the curl tour against a running server (TASKRUNNER_URL; SMOKE_SEARCH=1 adds a cached search; DOCKER=1: inside the api container)
ifeq ($(DOCKER),1)
	@$(DOCKER_COMPOSE) exec -T -e SMOKE_SEARCH=$(SMOKE_SEARCH) -e SMOKE_SEARCH_SOURCES=$(SMOKE_SEARCH_SOURCES) api \
	  bash -c 'k=$${API_KEYS%%,*}; k=$${k#*:}; k=$${k%:admin}; TASKRUNNER_API_KEY=$${k%:client} TASKRUNNER_URL=http://127.0.0.1:8000 exec bash -s' <scripts/smoke.sh
else
	@TASKRUNNER_URL=$(TASKRUNNER_URL) scripts/smoke.sh
endif

.PHONY: fake-search
fake-search: ## serve fake Brave and SearXNG APIs on 127.0.0.1:8090 (prints the settings to use)
	go run ./internal/cmd/fakesearch -addr 127.0.0.1:8090

.PHONY: bench
bench: build minio ## measure taskrunner against bare River on this machine
	@scripts/bench.sh

# The scale figures beside the empty-queue ones they are held to; the
# other figures are left out to keep the run to about ten minutes.
BENCH_SCALE_FLAGS = -scale 1000000 -rounds 3 -fair-tasks 0 -callback-tasks 0 -search-tasks 0 -artifact-mb 0

.PHONY: bench-scale
bench-scale: minio ## measure taskrunner against bare River with 1,000,000 tasks queued, bytes per task, and pickup during retention
	@scripts/bench.sh $(BENCH_SCALE_FLAGS)

.PHONY: chaos
chaos: build minio ## fault and scale suite: real processes under load while workers die and PostgreSQL, Redis, MinIO restart (a few minutes)
	CHAOS_TASKRUNNER_BIN=$(CURDIR)/bin/taskrunner CHAOS_MINIO_BIN=$(CURDIR)/bin/minio \
	  go test -tags chaos -count=1 -timeout 10m -v ./chaos

.PHONY: soak
soak: build minio ## one tenant's 1000 every-second schedules of 64 KiB tasks for two minutes: rows kept, RSS, another tenant's pickup
	CHAOS_TASKRUNNER_BIN=$(CURDIR)/bin/taskrunner CHAOS_MINIO_BIN=$(CURDIR)/bin/minio \
	  go test -tags 'chaos soak' -count=1 -timeout 10m -v -run TestScheduleSoak ./chaos

.PHONY: start
start: ## Docker: build the images, start the stack of docker-compose.yml and wait until it is healthy
	@test -f .env || { echo 'start: no .env: cp .env.example .env, then set its secrets' >&2; exit 1; }
	@if grep -qE '^[^#]*change-me' .env; then echo 'start: .env still holds change-me placeholders: set real secrets' >&2; exit 1; fi
	$(DOCKER_COMPOSE) up -d --build --wait

.PHONY: stop
stop: ## Docker: stop and remove the stack's containers (the data volumes stay)
	$(DOCKER_COMPOSE) down
