#!/usr/bin/env bash
# SeaweedFS, the uploads' S3 server of `make cluster`: the local stack's build
# (deploy/local/seaweedfs.sh, from the Go module proxy, cached in .cache/), served over TLS with
# the cluster's certificate, one identity whose secret is made at the first start.
#   s3.sh prepare   build weed if missing, write the identities file
#   s3.sh run       the server in the foreground (the supervisor calls this)
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$REPO_ROOT/deploy/local/seaweedfs-lib.sh"

S3_DIR="$CLUSTER_DIR/s3"

prepare() {
    "$REPO_ROOT/deploy/local/seaweedfs.sh" build
    mkdir -p "$S3_DIR/data"
    seaweedfs_write_identities "$S3_DIR/s3.json" "$(secret s3-secret-key)"
}

run() {
    seaweedfs_exec_mini "$("$REPO_ROOT/deploy/local/seaweedfs.sh" path)" \
        "$S3_DIR/data" "$CLUSTER_HOST" "$S3_DIR/s3.json" \
        -s3.cert.file="$TLS_DIR/server.crt" -s3.key.file="$TLS_DIR/server.key"
}

case "${1:?usage: s3.sh prepare|run}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "unknown command $1" >&2; exit 2 ;;
esac
