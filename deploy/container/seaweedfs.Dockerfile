# The project's S3 server for compose: SeaweedFS (Apache-2.0) built from its Go module at the
# version deploy/local/env.sh pins, as deploy/local/seaweedfs.sh builds it locally. `go install`
# refuses the module's replace directives, so `./weed` is built inside a writable copy of the
# downloaded module.
#   docker build -f deploy/container/seaweedfs.Dockerfile .
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
ARG SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
RUN dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@${SEAWEEDFS_VERSION}" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') \
    && cp -r "$dir" /src && chmod -R u+w /src \
    && cd /src && go build -o /weed ./weed

FROM ${RUNTIME_IMAGE}
RUN groupadd --system --gid 10002 seaweedfs \
    && useradd --system --uid 10002 --gid seaweedfs --home-dir /data --shell /usr/sbin/nologin seaweedfs \
    && mkdir -p /data && chown seaweedfs:seaweedfs /data
COPY --from=build /weed /usr/local/bin/weed
USER 10002
ENTRYPOINT ["weed"]
