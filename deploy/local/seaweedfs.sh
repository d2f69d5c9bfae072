#!/usr/bin/env bash
# SeaweedFS, the local S3-compatible server (Apache-2.0), built from its Go module: the uploads'
# object storage when STORAGE_BACKEND=s3 (docs/storage.md).
#   seaweedfs.sh build    build `weed` once into the cache, keyed by version (about 7 minutes on
#                         2 cores; later runs reuse it)
#   seaweedfs.sh prepare  build if missing, write the S3 identities file, create the data folder
#   seaweedfs.sh run      run the server in the foreground (the supervisor calls this)
#   seaweedfs.sh path     print the binary's path
#
# `weed mini` runs a master, a volume server, a filer and the S3 gateway in one process. Left
# to its defaults it binds every interface, takes 8888, 9333, 9340, 9101 (ours) and more,
# creates any bucket a put names, and reports usage to the project's telemetry server: here
# everything binds 127.0.0.1, the ports are set (each gRPC port is its HTTP port + 10000), the
# WebDAV, admin, Iceberg and Lance servers are off, and so are bucket creation on put and
# telemetry. Ports (env.sh): S3 8333, master 8340, volume 8341,
# filer 8342, and 18333, 18340-18342 for gRPC; mini's own admin server keeps 12535 and 22535.
#
# The cache sits outside .local/ (in .cache/, ignored by git) so that `make clean` does not throw
# away a 7-minute build. Everything the server stores goes under .local/s3/, never .local/storage/.
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/seaweedfs-lib.sh"

weed_path() { echo "$SEAWEEDFS_CACHE_DIR/weed"; }

build() {
    local weed
    weed=$(weed_path)
    if [ -x "$weed" ]; then return 0; fi
    if ! command -v go >/dev/null; then
        # Debian's go may be older than the module asks: GOTOOLCHAIN=auto below then fetches the
        # toolchain it names from the Go module proxy.
        echo "installing Go from Debian's packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q golang-go >/dev/null
    fi
    # An older go fetches the toolchain the module asks for from the Go module proxy.
    export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS="${GOFLAGS:--buildvcs=false}"
    local module="github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" info dir work
    echo "downloading $module through the Go module proxy"
    info=$(cd /tmp && go mod download -json "$module")
    dir=$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then
        echo "go mod download gave no source folder for $module:" >&2
        printf '%s\n' "$info" >&2
        exit 1
    fi
    # The module cache is read-only and `go install` refuses the module's replace directives,
    # so the build runs in a writable copy of the source.
    mkdir -p "$SEAWEEDFS_CACHE_DIR"
    work=$(mktemp -d "$SEAWEEDFS_CACHE_DIR/src.XXXXXX")
    cp -r "$dir/." "$work/"
    chmod -R u+w "$work"
    echo "building weed $SEAWEEDFS_VERSION into $weed (about 7 minutes on 2 cores)"
    (cd "$work" && go build -o "$weed.partial" ./weed)
    mv "$weed.partial" "$weed"
    rm -rf "$work"
}

path() { weed_path; }

prepare() {
    build
    mkdir -p "$SEAWEEDFS_DIR/data" "$LOG_DIR"
    seaweedfs_write_identities "$SEAWEEDFS_DIR/s3.json" "$S3_SECRET_ACCESS_KEY"
}

run() {
    seaweedfs_exec_mini "$(weed_path)" "$SEAWEEDFS_DIR/data" "$S3_HOST" "$SEAWEEDFS_DIR/s3.json"
}

"${1:?usage: seaweedfs.sh build|prepare|run|path}"
