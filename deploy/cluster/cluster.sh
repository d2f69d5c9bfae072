#!/usr/bin/env bash
# `make cluster`: the production shape on one machine (docs/deploy.md, "make cluster").
#   cluster.sh up               install what is missing, make the CA, certificates and secrets,
#                               start PostgreSQL (primary + synchronous standby), migrate as the
#                               migration role, start 3 Kafka nodes, ACLs and topics, then the
#                               services, nginx and Prometheus, all with DEPLOYMENT_MODE=production
#   cluster.sh down             stop everything, supervisord last
#   cluster.sh status           what runs
#   cluster.sh failover         promote the standby (make cluster-failover)
#   cluster.sh rebuild-standby  rebuild the old primary as the new standby
#   cluster.sh running          exit 0 while the cluster's supervisor runs
#
# State in $LOCAL_DIR/cluster/ (LOCAL_DIR defaults to .local), PID files in $LOCAL_DIR/run/.
# Never runs beside the local stack (`make up`): each refuses to start while the other runs.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"
export REPO_ROOT RUN_DIR VENV CLUSTER_DIR CLUSTER_LOG_DIR

cluster_running() {
    [ -S "$CLUSTER_SOCKET" ] && cluster_ctl pid >/dev/null 2>&1
}

local_stack_running() {
    [ -S "$LOCAL_SOCKET" ] && "$VENV/bin/supervisorctl" -c "$REPO_ROOT/deploy/local/supervisord.conf" \
        pid >/dev/null 2>&1
}

install_packages() {
    local missing=()
    command -v openssl >/dev/null || missing+=(openssl)
    [ -x /usr/sbin/nginx ] || missing+=(nginx)
    [ -x /usr/bin/prometheus ] || missing+=(prometheus)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} from Debian's packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        # Without the recommended node exporter, which would take port 9100 (the validator's).
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# What every service reads (services.env) and what each role adds ($SECRETS_DIR/ROLE.env);
# written at every start, from the secrets made at the first.
write_settings() {
    local runtime migration app_dsn migrator_dsn standin_dsn retention_key grant_token admin_token
    runtime=$(topology role runtime)
    migration=$(topology role migration)
    app_dsn=$(cluster_dsn "$runtime" "$(secret "pg-$runtime")" "$CLUSTER_DATABASE")
    migrator_dsn=$(cluster_dsn "$migration" "$(secret "pg-$migration")" "$CLUSTER_DATABASE")
    standin_dsn=$(cluster_dsn "$PG_STANDIN_ROLE" "$(secret "pg-$PG_STANDIN_ROLE")" "$CLUSTER_STANDIN_DATABASE")
    # 48 random bytes: above the 32 bytes production asks of the retention key.
    retention_key=$(secret retention-key 48)
    grant_token=$(secret grant-token)
    admin_token=$(secret grant-standin-admin-token)
    cat > "$CLUSTER_DIR/services.env" <<ENV
export DEPLOYMENT_MODE=production
export KAFKA_BOOTSTRAP_SERVERS=$(kafka_bootstrap)
export KAFKA_SECURITY_PROTOCOL=SASL_SSL
export KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export KAFKA_SSL_CA_FILE=$CA_FILE
export KAFKA_REPLICATION_FACTOR=3
export KAFKA_MIN_INSYNC_REPLICAS=2
export KAFKA_CREATE_TOPICS=false
export GRANT_BRIDGE_MIGRATE_ON_START=false
export PGSSLROOTCERT=$CA_FILE
export STORAGE_ROOT=$CLUSTER_DIR/storage
# Uploads in S3 (SeaweedFS, deploy/cluster/s3.sh), over TLS with the cluster's CA.
export STORAGE_BACKEND=s3
export STORAGE_S3_ENDPOINT=https://$CLUSTER_HOST:$S3_PORT
export STORAGE_S3_BUCKET=$S3_BUCKET
export STORAGE_S3_CA_FILE=$CA_FILE
export GRANT_BRIDGE_GRANT_API_URL=https://$CLUSTER_HOST:$STANDIN_PORT
# The grant API's certificate is the cluster CA's (Python's ssl reads SSL_CERT_FILE).
export SSL_CERT_FILE=$CA_FILE
export LOG_LEVEL=\${LOG_LEVEL:-INFO}
# Two days unless \`make cluster\` is given a shorter window (the tests and the smoke check).
export GRANT_BRIDGE_AMENDMENT_WINDOW_S=${GRANT_BRIDGE_AMENDMENT_WINDOW_S:-172800}
ENV
    # role of supervisord.conf -> process of deploy/topology.yaml (its Kafka principal).
    local -A processes=([gateway]=upload-gateway [validator]=validator [grant-bridge]=grant-bridge
        [purge]=achievements-purge [ops]=operator [ops-exporter]=ops-exporter)
    local role principal
    (
        umask 077
        for role in "${!processes[@]}"; do
            principal=$(topology principal "${processes[$role]}")
            cat > "$SECRETS_DIR/$role.env" <<ENV
export KAFKA_SASL_USERNAME=$principal
export KAFKA_SASL_PASSWORD=$(secret "kafka-$principal")
export DATABASE_URL='$app_dsn'
export RETENTION_KEY_SECRET=$retention_key
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$(secret s3-secret-key)
ENV
        done
        echo "export GRANT_BRIDGE_TOKEN=$grant_token" >> "$SECRETS_DIR/grant-bridge.env"
        # The purge runs as the cluster's operator (an operator command), once `migrate` made it.
        if [ -s "$SECRETS_DIR/operator-token" ]; then
            echo "export ACHIEVEMENTS_OPERATOR_TOKEN=$(< "$SECRETS_DIR/operator-token")" >> "$SECRETS_DIR/purge.env"
        fi
        cat > "$SECRETS_DIR/grant-standin.env" <<ENV
export GRANT_STANDIN_DATABASE_URL='$standin_dsn'
export GRANT_STANDIN_HOST=$CLUSTER_HOST
export GRANT_STANDIN_PORT=$STANDIN_PORT
export GRANT_STANDIN_TOKEN=$grant_token
export GRANT_STANDIN_ADMIN_TOKEN=$admin_token
export GRANT_STANDIN_TLS_CERT_FILE=$TLS_DIR/server.crt
export GRANT_STANDIN_TLS_KEY_FILE=$TLS_DIR/server.key
ENV
        # `source .local/cluster/env.sh`: what `achievements` run in a shell needs (the
        # operator's Kafka user and the runtime role; the migration role's URL apart).
        cat > "$CLUSTER_DIR/env.sh" <<ENV
# The cluster's settings for a shell (written by deploy/cluster/cluster.sh): source it.
source "$CLUSTER_DIR/services.env"
source "$SECRETS_DIR/ops.env"
export MIGRATION_DATABASE_URL='$migrator_dsn'
export GRANT_BRIDGE_TOKEN=$grant_token
export GRANT_STANDIN_ADMIN_TOKEN=$admin_token
export ACHIEVEMENTS_GATEWAY_URL=https://$CLUSTER_HOST:$NGINX_PORT
ENV
    )
    mkdir -p "$CLUSTER_DIR/storage"
}

settings_digest() {
    # Nothing yet at the first start.
    { cat "$CLUSTER_DIR/services.env" "$SECRETS_DIR"/*.env 2>/dev/null || true; } | sha256sum
}

# nginx in front of the two gateways, as the Ingress: TLS, bodies up to 202 MB streamed to the
# gateway as they come (no request buffering), 300 s to read an answer.
write_nginx() {
    local dir="$CLUSTER_DIR/nginx" port servers=""
    mkdir -p "$dir/tmp" "$dir/logs"
    chown www-data "$dir/tmp" 2>/dev/null || true
    for port in "${GATEWAY_PORTS[@]}"; do servers+="        server $CLUSTER_HOST:$port max_fails=1 fail_timeout=5s;"$'\n'; done
    cat > "$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
user www-data;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # No idle connections kept to the gateways: a connection to one is an upload or a request
    # in flight (tests/cluster/test_cluster_gateway.py counts them).
    upstream gateways {
$servers    }
    server {
        listen $CLUSTER_HOST:$NGINX_PORT ssl;
        ssl_certificate $TLS_DIR/server.crt;
        ssl_certificate_key $TLS_DIR/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        add_header Strict-Transport-Security "max-age=31536000" always;
        client_max_body_size 202m;
        proxy_request_buffering off;
        proxy_read_timeout 300s;
        proxy_send_timeout 300s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        location /v1/ { proxy_pass http://gateways; }
        location /ato { proxy_pass http://gateways; }
        location = /healthz { proxy_pass http://gateways; }
        location / { return 404; }
    }
}
CONF
}

# The project's alert rules; CLUSTER_ALERT_SCALE (a factor, e.g. 0.05) scales their `for:` times
# and range windows down (deploy/tools/scale_alerts.py), so that a fault fires in seconds.
write_prometheus() {
    local dir="$CLUSTER_DIR/prometheus" scale="${CLUSTER_ALERT_SCALE:-1}"
    mkdir -p "$dir/data"
    if [ "$scale" = 1 ]; then
        cp "$REPO_ROOT/deploy/prometheus/alerts.yaml" "$dir/alerts.yaml"
    else
        (cd "$REPO_ROOT" && "$VENV/bin/python" deploy/tools/scale_alerts.py --factor "$scale") \
            > "$dir/alerts.yaml"
    fi
    list() { local p out=(); for p in "$@"; do out+=("\"$CLUSTER_HOST:$p\""); done; (IFS=,; echo "${out[*]}"); }
    cat > "$dir/prometheus.yml" <<CONF
# Written by deploy/cluster/cluster.sh: every service of \`make cluster\`, by job.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $dir/alerts.yaml
scrape_configs:
  - job_name: achievements-gateway
    static_configs:
      - targets: [$(list "${GATEWAY_PORTS[@]}")]
        labels: { pipeline: achievements }
  - job_name: achievements-validator
    static_configs:
      - targets: [$(list "${VALIDATOR_PORTS[@]}")]
        labels: { pipeline: achievements }
  - job_name: achievements-grant-bridge
    static_configs:
      - targets: [$(list "${BRIDGE_PORTS[@]}")]
        labels: { pipeline: achievements }
  - job_name: achievements-ops-exporter
    static_configs:
      - targets: [$(list "$LAG_EXPORTER_PORT")]
        labels: { pipeline: achievements }
  - job_name: prometheus
    static_configs:
      - targets: [$(list "$PROMETHEUS_PORT")]
CONF
}

start_supervisor() {
    mkdir -p "$RUN_DIR" "$CLUSTER_LOG_DIR"
    if ! cluster_running; then
        "$VENV/bin/supervisord" -c "$HERE/supervisord.conf"
        for _ in $(seq 50); do cluster_running && return 0; sleep 0.1; done
        echo "the cluster's supervisord did not start" >&2; exit 1
    fi
    # A supervisord started by an earlier version of the config takes in the new one (programs
    # added, changed ones stopped; each is started below).
    cluster_ctl reread >/dev/null
    cluster_ctl update >/dev/null
}

start_program() {  # name port seconds
    local name=$1 port=$2 seconds=$3
    cluster_ctl start "$name" >/dev/null 2>&1 || true
    if ! wait_for_port "$CLUSTER_HOST" "$port" "$seconds"; then
        echo "$name did not answer on $CLUSTER_HOST:$port; its log:" >&2
        tail -n 30 "$CLUSTER_LOG_DIR/$name.log" >&2 || true
        exit 1
    fi
}

# The migration as its own step, with the migration role (as the Kubernetes Job), then the
# runtime role's rights on what it made, and the reference data.
migrate() {
    (
        source "$CLUSTER_DIR/env.sh"
        DATABASE_URL=$MIGRATION_DATABASE_URL "$VENV/bin/achievements" admin migrate
    )
    "$HERE/postgres.sh" grant-rows
    (source "$CLUSTER_DIR/env.sh" && "$VENV/bin/achievements" reference load)
    ensure_operator
}

# The purge is an operator command: on a new database the bootstrap creates the cluster's
# operator, its token kept in $SECRETS_DIR/operator-token (mode 600) and given to the purge only
# (its purge.env), as Kubernetes gives it the achievements-purge-operator secret.
ensure_operator() {
    [ -s "$SECRETS_DIR/operator-token" ] && return 0
    local created
    if ! created=$(source "$CLUSTER_DIR/env.sh" && "$VENV/bin/achievements" operator create cluster-purge --json); then
        echo "no operator token in $SECRETS_DIR/operator-token and none could be created: $created" >&2
        return 0
    fi
    (
        umask 077
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["token"])' \
            <<<"$created" > "$SECRETS_DIR/operator-token"
        echo "export ACHIEVEMENTS_OPERATOR_TOKEN=$(< "$SECRETS_DIR/operator-token")" >> "$SECRETS_DIR/purge.env"
    )
}

# The S3 server answers before its bucket exists: waits until the storage check every service
# runs at start passes (the bucket there, the credentials taken), as the local stack does.
wait_for_bucket() {
    local i
    for ((i = 0; i < 60; i++)); do
        if (source "$CLUSTER_DIR/env.sh" && "$VENV/bin/python" -c 'import asyncio, sys
import services.core.storage as s
async def check():
    storage = await s.start_storage(s.StorageSettings(), "cluster")
    sys.exit(0 if await storage.ready(5) else 1)
asyncio.run(check())') >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    echo "the S3 server has no bucket $S3_BUCKET; its log:" >&2
    tail -n 30 "$CLUSTER_LOG_DIR/s3.log" >&2 || true
    exit 1
}

start_postgres() {
    local primary standby
    primary=$("$HERE/postgres.sh" primary)
    standby=$((3 - primary))
    start_program "postgres-$primary" "$(pg_node_port "$primary")" 60
    if [ -f "$("$HERE/postgres.sh" data-dir "$standby")/standby.signal" ]; then
        start_program "postgres-$standby" "$(pg_node_port "$standby")" 60
        "$HERE/postgres.sh" roles
    elif [ ! -d "$("$HERE/postgres.sh" data-dir "$standby")" ]; then
        "$HERE/postgres.sh" roles
        "$HERE/postgres.sh" rebuild-standby
    else
        "$HERE/postgres.sh" roles
        echo "postgres-$standby was the primary before a failover and is not rebuilt: the" \
            "cluster runs without a standby until \`make cluster-rebuild-standby\`" >&2
    fi
}

up() {
    if local_stack_running; then
        echo "the local stack (make up) is running: stop it with \`make down\` before \`make cluster\`" >&2
        exit 1
    fi
    install_packages
    local settings_before
    settings_before=$(settings_digest)
    "$HERE/certs.sh"
    "$HERE/postgres.sh" prepare
    "$HERE/kafka.sh" prepare
    "$HERE/s3.sh" prepare
    write_settings
    write_nginx
    write_prometheus
    start_supervisor
    start_program s3 "$S3_PORT" 120
    wait_for_bucket
    start_postgres
    migrate
    local node
    for node in "${KAFKA_NODES[@]}"; do cluster_ctl start "kafka-$node" >/dev/null 2>&1 || true; done
    for node in "${KAFKA_NODES[@]}"; do start_program "kafka-$node" "$(kafka_client_port "$node")" 120; done
    "$HERE/kafka.sh" access
    "$HERE/kafka.sh" topics
    if [ "$settings_before" != "$(settings_digest)" ]; then
        # Services read their settings at start: those started with others start again.
        cluster_ctl stop services:* >/dev/null 2>&1 || true
    fi
    cluster_ctl start services:* >/dev/null || true
    wait_for_port "$CLUSTER_HOST" "$STANDIN_PORT" 60 || { tail -n 30 "$CLUSTER_LOG_DIR/grant-standin.log" >&2; exit 1; }
    local port
    for port in "${GATEWAY_PORTS[@]}"; do
        wait_for_port "$CLUSTER_HOST" "$port" 60 || { tail -n 30 "$CLUSTER_LOG_DIR"/gateway-*.log >&2; exit 1; }
    done
    start_program nginx "$NGINX_PORT" 20
    start_program prometheus "$PROMETHEUS_PORT" 30
    # One that ran already takes in the rules written now (CLUSTER_ALERT_SCALE may differ).
    "$VENV/bin/python" -c 'import sys, urllib.request as r
r.urlopen(r.Request(sys.argv[1], method="POST"), timeout=30)' \
        "http://$CLUSTER_HOST:$PROMETHEUS_PORT/-/reload"
    cluster_ctl status
    echo "the cluster runs: https://$CLUSTER_HOST:$NGINX_PORT (CA $CA_FILE); \`source $CLUSTER_DIR/env.sh\` for achievements"
}

down() {
    local pids pid
    if ! cluster_running; then return 0; fi
    # Every process the cluster started, supervisord included, read before they go.
    pids="$(cat "$RUN_DIR"/cluster-supervisord.pid 2>/dev/null || true)"
    for pid in "$RUN_DIR"/*.pid; do
        [ -f "$pid" ] && pids="$pids $(cat "$pid")"
    done
    cluster_ctl stop services:* nginx prometheus s3 >/dev/null 2>&1 || true
    # All brokers at once: one by one, the last would wait for a controller quorum that its
    # peers took away, until it is killed.
    cluster_ctl signal TERM kafka-1 kafka-2 kafka-3 >/dev/null 2>&1 || true
    cluster_ctl stop kafka-1 kafka-2 kafka-3 >/dev/null 2>&1 || true
    # The standby first: a primary's shutdown then waits for no WAL sender.
    local primary
    primary=$("$HERE/postgres.sh" primary 2>/dev/null || echo 1)
    cluster_ctl stop "postgres-$((3 - primary))" >/dev/null 2>&1 || true
    cluster_ctl stop "postgres-$primary" >/dev/null 2>&1 || true
    cluster_ctl shutdown >/dev/null 2>&1 || true
    for pid in $pids; do
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    done
    rm -f "$RUN_DIR"/*.pid
}

status() {
    if cluster_running; then
        echo "make cluster (primary: postgres-$("$HERE/postgres.sh" primary 2>/dev/null || echo '?')):"
        cluster_ctl status || true
    else
        echo "the cluster is not running"
    fi
}

case "${1:?usage: cluster.sh up|down|status|failover|rebuild-standby|running}" in
    up) up ;;
    down) down ;;
    status) status ;;
    failover) "$HERE/postgres.sh" failover ;;
    rebuild-standby) "$HERE/postgres.sh" rebuild-standby ;;
    running) cluster_running ;;
    *) echo "unknown command $1" >&2; exit 2 ;;
esac
