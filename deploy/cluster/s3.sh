#!/usr/bin/env bash
# SeaweedFS, the uploads' S3 server of `make cluster`: the local stack's build
# (deploy/local/seaweedfs.sh, from the Go module proxy, cached in .cache/), served over TLS with
# the cluster's certificate, one identity whose secret is made at the first start.
#   s3.sh prepare   build weed if missing, write the identities file
#   s3.sh run       the server in the foreground (the supervisor calls this)
set -euo pipefail
source "$(dirname "$0")/env.sh"

S3_DIR="$CLUSTER_DIR/s3"

prepare() {
    "$REPO_ROOT/deploy/local/seaweedfs.sh" build
    mkdir -p "$S3_DIR/data"
    (
        umask 077
        cat > "$S3_DIR/s3.json" <<JSON
{
  "identities": [
    {
      "name": "achievements",
      "credentials": [{"accessKey": "$S3_ACCESS_KEY_ID", "secretKey": "$(secret s3-secret-key)"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
JSON
    )
}

run() {
    exec "$("$REPO_ROOT/deploy/local/seaweedfs.sh" path)" mini \
        -dir="$S3_DIR/data" \
        -ip="$CLUSTER_HOST" -ip.bind="$CLUSTER_HOST" \
        -s3.port="$S3_PORT" -s3.config="$S3_DIR/s3.json" -bucket="$S3_BUCKET" \
        -s3.cert.file="$TLS_DIR/server.crt" -s3.key.file="$TLS_DIR/server.key" \
        -s3.port.iceberg=0 -s3.port.lance=0 -s3.iam=false -s3.autoCreateBucket=false \
        -master.port="$SEAWEEDFS_MASTER_PORT" -volume.port="$SEAWEEDFS_VOLUME_PORT" \
        -filer.port="$SEAWEEDFS_FILER_PORT" \
        -webdav=false -admin.ui=false -admin.port.legacy=0 -master.telemetry=false
}

case "${1:?usage: s3.sh prepare|run}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "unknown command $1" >&2; exit 2 ;;
esac
