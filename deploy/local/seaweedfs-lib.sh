# SeaweedFS's S3 server, shared by the local stack (seaweedfs.sh) and `make cluster`
# (deploy/cluster/s3.sh); sourced after env.sh (S3_ACCESS_KEY_ID, S3_PORT, S3_BUCKET, the
# SEAWEEDFS_*_PORT variables). What its settings mean: seaweedfs.sh's header.

# seaweedfs_write_identities FILE SECRET_KEY: the one identity (S3_ACCESS_KEY_ID), allowed
# everything in its buckets; readable by its owner only, the secret never leaving this file and
# the environment of the processes that reach the server.
seaweedfs_write_identities() {
    local file="$1" secret_key="$2"
    (
        umask 077
        cat > "$file" <<JSON
{
  "identities": [
    {
      "name": "achievements",
      "credentials": [{"accessKey": "$S3_ACCESS_KEY_ID", "secretKey": "$secret_key"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
JSON
    )
}

# seaweedfs_exec_mini WEED DATA_DIR HOST IDENTITIES_FILE [FLAG...]: replaces the shell with
# `weed mini` serving S3 on HOST only, with FLAGs added (the cluster's TLS certificate).
# `-filer.maxMB=1`: objects are stored in chunks of 1 MB (4 by default). SeaweedFS stores text
# compressed and answers a range GET by fetching and inflating every chunk the range touches:
# a chunk task's range (about 2 MB) then inflates 2 or 3 MB instead of 4 to 8, which halves
# the server's CPU for the validators' reads (docs/storage.md).
seaweedfs_exec_mini() {
    local weed="$1" data_dir="$2" host="$3" identities="$4"
    shift 4
    exec "$weed" mini \
        -dir="$data_dir" \
        -ip="$host" -ip.bind="$host" \
        -s3.port="$S3_PORT" -s3.config="$identities" -bucket="$S3_BUCKET" \
        "$@" \
        -s3.port.iceberg=0 -s3.port.lance=0 -s3.iam=false -s3.autoCreateBucket=false \
        -master.port="$SEAWEEDFS_MASTER_PORT" -volume.port="$SEAWEEDFS_VOLUME_PORT" \
        -filer.port="$SEAWEEDFS_FILER_PORT" -filer.maxMB=1 \
        -webdav=false -admin.ui=false -admin.port.legacy=0 -master.telemetry=false
}
