# Settings of `make cluster`, the production shape on one machine; sourced by its scripts after
# the local stack's (deploy/local/env.sh: LOCAL_DIR, the Kafka version and cache, pg_bin,
# wait_for_port). Its state lives in $LOCAL_DIR/cluster/, its PID files in $LOCAL_DIR/run/ as the
# local stack's do (the two never run at once), named by role and number.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../local/env.sh"
CLUSTER_HERE="$REPO_ROOT/deploy/cluster"
CLUSTER_DIR="$LOCAL_DIR/cluster"
CLUSTER_LOG_DIR="$CLUSTER_DIR/log"
TLS_DIR="$CLUSTER_DIR/tls"
SECRETS_DIR="$CLUSTER_DIR/secrets"
CA_FILE="$CLUSTER_DIR/ca.crt"
CLUSTER_SOCKET="$RUN_DIR/cluster-supervisor.sock"
LOCAL_SOCKET="$RUN_DIR/supervisor.sock"

# The port table of docs/deploy.md.
CLUSTER_HOST=127.0.0.1
KAFKA_NODES=(1 2 3)
kafka_client_port() { echo $((9092 + 100 * $1)); }      # SASL_SSL: 9192, 9292, 9392
kafka_internal_port() { echo $((9093 + 100 * $1)); }    # TLS between brokers: 9193, ...
kafka_controller_port() { echo $((9094 + 100 * $1)); }  # the controller quorum: 9194, ...
PG_NODES=(1 2)
pg_node_port() { echo $((55432 + $1)); }                # 55433 (postgres-1), 55434 (postgres-2)
NGINX_PORT=8443
GATEWAY_PORTS=(8181 8182)
VALIDATOR_PORTS=(9111 9112 9113 9114)
BRIDGE_PORTS=(9121 9122)
STANDIN_PORT=8091
PURGE_METRICS_PORT=9131
LAG_EXPORTER_PORT=9141
PROMETHEUS_PORT=9090
S3_PORT=8333
SEAWEEDFS_MASTER_PORT=19333
SEAWEEDFS_VOLUME_PORT=18080
SEAWEEDFS_FILER_PORT=18888
S3_BUCKET=achievements-uploads
S3_ACCESS_KEY_ID=achievements-cluster

# Topics, Kafka principals and their ACLs, and the PostgreSQL roles come from
# deploy/topology.yaml (through topology.py); the replication and stand-in roles are the
# cluster's own (a managed PostgreSQL and the real grant API have theirs).
topology() { (cd "$REPO_ROOT" && "$VENV/bin/python" deploy/cluster/topology.py "$@"); }
CLUSTER_DATABASE=achievements
CLUSTER_STANDIN_DATABASE=grant_standin
PG_REPLICATOR=replicator
PG_STANDIN_ROLE=grant_standin
# The SCRAM super user that creates the topics and ACLs (the brokers' own principal is their
# certificate's).
KAFKA_ADMIN_USER=admin

# A secret made once at first start, kept in $SECRETS_DIR (0600).
secret() {  # name [bytes]
    local file="$SECRETS_DIR/$1"
    if [ ! -s "$file" ]; then
        mkdir -p "$SECRETS_DIR"
        chmod 700 "$SECRETS_DIR"
        (umask 077 && openssl rand -hex "${2:-24}" > "$file.new" && mv "$file.new" "$file")
    fi
    cat "$file"
}

kafka_bootstrap() {
    local node servers=()
    for node in "${KAFKA_NODES[@]}"; do servers+=("$CLUSTER_HOST:$(kafka_client_port "$node")"); done
    (IFS=,; echo "${servers[*]}")
}

# The multi-host DSN every service uses: whichever node takes writes now.
cluster_dsn() {  # user password database
    echo "postgresql://$1:$2@$CLUSTER_HOST:$(pg_node_port 1),$CLUSTER_HOST:$(pg_node_port 2)/$3?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=$CA_FILE"
}

# The cluster's supervisor (its own config and socket beside the local stack's).
cluster_ctl() {
    env REPO_ROOT="$REPO_ROOT" RUN_DIR="$RUN_DIR" VENV="$VENV" CLUSTER_DIR="$CLUSTER_DIR" \
        CLUSTER_LOG_DIR="$CLUSTER_LOG_DIR" \
        "$VENV/bin/supervisorctl" -c "$CLUSTER_HERE/supervisord.conf" "$@"
}

# Three brokers and the services share 2 cores here: a smaller heap than the local stack's one.
KAFKA_HEAP_OPTS="${CLUSTER_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
