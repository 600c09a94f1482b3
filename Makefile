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

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## build ./bin/taskrunner
	go build -o bin/taskrunner ./cmd/taskrunner

.PHONY: run
run: build minio ## start MinIO, create and migrate the database, serve on HTTP_ADDR
	@scripts/run.sh

.PHONY: init-db
init-db: build ## create the database if missing and apply every migration
	bin/taskrunner migrate up

.PHONY: minio
minio: ## install the pinned MinIO server into ./bin
	@scripts/minio.sh install

.PHONY: test
test: minio ## start the services, then run every test (verify, vet, race, fuzz seed corpora)
	@scripts/test.sh

.PHONY: generate
generate: ## regenerate River's schema for sqlc and the sqlc code
	go generate ./db
	go tool sqlc generate

.PHONY: verify
verify: ## fail when generated code, go.mod or formatting is stale
	@scripts/verify.sh

.PHONY: lint
lint: ## go vet and gofmt
	go vet ./...
	@scripts/verify.sh

.PHONY: smoke
smoke: ## run the seed's curl flow against a running server (TASKRUNNER_URL; SMOKE_SEARCH=1 adds a cached search)
	@TASKRUNNER_URL=$(TASKRUNNER_URL) scripts/smoke.sh

.PHONY: fake-search
fake-search: ## serve fake Brave and SearXNG APIs on 127.0.0.1:8090 (prints the settings to use)
	go run ./internal/cmd/fakesearch -addr 127.0.0.1:8090

.PHONY: bench
bench: build minio ## measure taskrunner against bare River on this machine
	@scripts/bench.sh
