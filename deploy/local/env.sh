# Shared settings of the local stack; sourced by the other scripts. Override any of them in the
# environment of `make up` / `make test`.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL_DIR="${LOCAL_DIR:-$REPO_ROOT/.local}"
RUN_DIR="$LOCAL_DIR/run"
LOG_DIR="$LOCAL_DIR/log"
VENV="${VENV:-$REPO_ROOT/.venv}"
# The token of the local stack's operator, which the scheduled purge runs as (mode 600; written
# by `stack.sh infra` when it creates the operator, read by deploy/local/with-operator-token).
OPERATOR_TOKEN_FILE="${OPERATOR_TOKEN_FILE:-$LOCAL_DIR/operator-token}"

KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
KAFKA_HOST="${KAFKA_HOST:-127.0.0.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_CACHE_DIR="${KAFKA_CACHE_DIR:-$LOCAL_DIR/cache/kafka-$KAFKA_VERSION}"
KAFKA_DIR="$LOCAL_DIR/kafka"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"

# SeaweedFS, the local S3 server (deploy/local/seaweedfs.sh): its build is cached outside .local/
# so that `make clean` keeps it. Its ports clash with nothing of ours (docs/storage.md).
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
SEAWEEDFS_CACHE_DIR="${SEAWEEDFS_CACHE_DIR:-$REPO_ROOT/.cache/seaweedfs-$SEAWEEDFS_VERSION}"
SEAWEEDFS_DIR="$LOCAL_DIR/s3"
S3_HOST="${S3_HOST:-127.0.0.1}"
S3_PORT="${S3_PORT:-8333}"
SEAWEEDFS_MASTER_PORT="${SEAWEEDFS_MASTER_PORT:-8340}"
SEAWEEDFS_VOLUME_PORT="${SEAWEEDFS_VOLUME_PORT:-8341}"
SEAWEEDFS_FILER_PORT="${SEAWEEDFS_FILER_PORT:-8342}"
S3_BUCKET="${S3_BUCKET:-achievements-uploads}"
# The local server's development key pair, like the local database password.
S3_ACCESS_KEY_ID="${S3_ACCESS_KEY_ID:-achievements-local}"
S3_SECRET_ACCESS_KEY="${S3_SECRET_ACCESS_KEY:-achievements-local-secret}"

PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-55432}"
PG_USER="${PG_USER:-achievements}"
PG_PASSWORD="${PG_PASSWORD:-achievements}"
PG_DATABASE="${PG_DATABASE:-achievements}"
PG_STANDIN_DATABASE="${PG_STANDIN_DATABASE:-grant_standin}"

# The local stack is a development stack: its well-known password and tokens are accepted only in
# this mode; every service refuses them (and a missing secret) in any other.
export DEPLOYMENT_MODE="${DEPLOYMENT_MODE:-local}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-$KAFKA_HOST:$KAFKA_PORT}"
export DATABASE_URL="${DATABASE_URL:-postgresql://$PG_USER:$PG_PASSWORD@$PG_HOST:$PG_PORT/$PG_DATABASE}"
export GRANT_STANDIN_DATABASE_URL="${GRANT_STANDIN_DATABASE_URL:-postgresql://$PG_USER:$PG_PASSWORD@$PG_HOST:$PG_PORT/$PG_STANDIN_DATABASE}"
export STORAGE_ROOT="${STORAGE_ROOT:-$LOCAL_DIR/storage}"
# STORAGE_BACKEND=s3 runs the services on the local S3 server (deploy/local/seaweedfs.sh).
export STORAGE_BACKEND="${STORAGE_BACKEND:-folder}"
if [ "$STORAGE_BACKEND" = s3 ]; then
    export STORAGE_S3_ENDPOINT="${STORAGE_S3_ENDPOINT:-http://$S3_HOST:$S3_PORT}"
    export STORAGE_S3_BUCKET="${STORAGE_S3_BUCKET:-$S3_BUCKET}"
    export STORAGE_S3_ALLOW_HTTP="${STORAGE_S3_ALLOW_HTTP:-true}"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-$S3_ACCESS_KEY_ID}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-$S3_SECRET_ACCESS_KEY}"
fi
# One development token for both sides of the grant API, unless set.
export GRANT_STANDIN_TOKEN="${GRANT_STANDIN_TOKEN:-dev-grant-token}"
export GRANT_BRIDGE_TOKEN="${GRANT_BRIDGE_TOKEN:-$GRANT_STANDIN_TOKEN}"
# The stand-in's admin endpoints (/admin/faults) take their own token.
export GRANT_STANDIN_ADMIN_TOKEN="${GRANT_STANDIN_ADMIN_TOKEN:-dev-standin-admin-token}"
export GRANT_BRIDGE_GRANT_API_URL="${GRANT_BRIDGE_GRANT_API_URL:-http://127.0.0.1:8090}"

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    echo "$dir"
}

# initdb refuses root and the server runs as `postgres`, which must be able to reach its folder;
# a checkout under a private home folder cannot be reached, so the data then lives elsewhere.
pg_reachable_root() {  # wanted elsewhere
    mkdir -p "$1"
    if setpriv --reuid=postgres --regid=postgres --init-groups test -x "$1" 2>/dev/null; then
        echo "$1"
    else
        echo "$2"
    fi
}

wait_for_port() {  # host port seconds
    local host=$1 port=$2 seconds=$3 i
    for ((i = 0; i < seconds * 5; i++)); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}
