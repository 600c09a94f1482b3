# syntax=docker/dockerfile:1
#
# taskrunner's images, for docker-compose.yml (see the README, "Running with
# Docker"). Two targets:
#
#   taskrunner (the default, last): the one binary on Alpine, run as a
#     non-root user. ENTRYPOINT is the binary; CMD picks the subcommand
#     (serve, api, worker, migrate up). curl, jq and bash are in it for the
#     health check and `docker compose exec -T api curl ...`
#     and `make smoke DOCKER=1`.
#   minio: the MinIO server, built from source at the version `make run`
#     uses (scripts/minio.sh). MinIO's community edition is published as
#     source only, so we build our own image.
#
#   docker build -t taskrunner .
#   docker build --target minio -t taskrunner-minio .

# Go's minor version: go.mod's `go` line (deploy/compose_test.go checks).
ARG GO_VERSION=1.26
# Must equal MINIO_VERSION in scripts/minio.sh (deploy/compose_test.go checks).
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
ARG ALPINE_VERSION=3.23

# ---- build: the static binary, cross-compiled on the build machine ----
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ARG TARGETOS TARGETARCH
# The source is bind-mounted, not copied; modules and the build cache live
# in cache mounts, so a rebuild after a code change compiles only that.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,target=. \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/taskrunner ./cmd/taskrunner

# ---- minio-build: MinIO from source (a few minutes the first time) ----
FROM golang:${GO_VERSION} AS minio-build
ARG MINIO_VERSION
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOBIN=/out \
    go install -trimpath -ldflags="-s -w" "github.com/minio/minio@${MINIO_VERSION}"

# ---- minio: the object store's image ----
FROM alpine:${ALPINE_VERSION} AS minio
# A fresh named volume takes /data's owner from the image: minio. A host
# directory mounted there instead must be writable by uid 10002.
RUN addgroup -S -g 10002 minio \
 && adduser -S -D -u 10002 -G minio -h /home/minio minio \
 && mkdir -p /data && chown minio:minio /data
COPY --from=minio-build /out/minio /usr/local/bin/minio
ENV MINIO_BROWSER=off MINIO_UPDATE=off
USER 10002:10002
EXPOSE 9000
# The health check uses busybox's wget.
ENTRYPOINT ["/usr/local/bin/minio"]
CMD ["server", "--quiet", "--address", ":9000", "/data"]

# ---- taskrunner: the application's image (default target) ----
FROM alpine:${ALPINE_VERSION} AS taskrunner
RUN apk add --no-cache ca-certificates tzdata curl jq bash \
 && addgroup -S -g 10001 taskrunner \
 && adduser -S -D -H -u 10001 -G taskrunner -h /tmp taskrunner
COPY --from=build /out/taskrunner /usr/local/bin/taskrunner
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/taskrunner"]
CMD ["serve"]
