#!/usr/bin/env bash
# The local stack: Kafka and PostgreSQL, then the pipeline's services, under supervisord.
#   stack.sh infra     install what is missing, start Kafka and PostgreSQL, migrate, create topics
#                      and, the first time, the local operator (its token in .local/operator-token)
#                      (with STORAGE_BACKEND=s3 also the local S3 server, deploy/local/seaweedfs.sh)
#   stack.sh up        infra + the services (gateway, 2 validators, bridge, grant stand-in, portal
#                      stand-in on 127.0.0.1:8070, where the demo ATO's people sign in to the pages)
#   stack.sh down      stop everything, supervisord last
#   stack.sh status    what runs, and where the uploads are stored
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"
export REPO_ROOT RUN_DIR LOG_DIR VENV
CTL=("$VENV/bin/supervisorctl" -c "$HERE/supervisord.conf")

supervisor_running() {
    [ -S "$RUN_DIR/supervisor.sock" ] && "${CTL[@]}" pid >/dev/null 2>&1
}

start_supervisor() {
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$STORAGE_ROOT"
    if ! supervisor_running; then
        "$VENV/bin/supervisord" -c "$HERE/supervisord.conf"
        for _ in $(seq 50); do supervisor_running && return 0; sleep 0.1; done
        echo "supervisord did not start" >&2; exit 1
    fi
}

start_program() {  # name host port seconds
    local name=$1 host=$2 port=$3 seconds=$4
    "${CTL[@]}" start "$name" >/dev/null 2>&1 || true
    if ! wait_for_port "$host" "$port" "$seconds"; then
        echo "$name did not answer on $host:$port; its log:" >&2
        tail -n 30 "$LOG_DIR/$name.log" >&2 || true
        exit 1
    fi
}

# The S3 server answers on its port before its bucket exists: waits until the storage check
# that every service runs at start passes (the bucket there, the credentials taken).
wait_for_bucket() {
    local i
    for ((i = 0; i < 60; i++)); do
        if "$VENV/bin/python" -c 'import asyncio, sys, services.core.storage as s
async def check():
    storage = await s.start_storage(s.StorageSettings(), "stack")
    sys.exit(0 if await storage.ready(5) else 1)
asyncio.run(check())' >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    echo "the S3 server has no bucket $STORAGE_S3_BUCKET; its log:" >&2
    tail -n 30 "$LOG_DIR/s3.log" >&2 || true
    exit 1
}

# `make cluster` and the local stack never run at once (2 cores; one `make down` for both).
refuse_beside_cluster() {
    if "$REPO_ROOT/deploy/cluster/cluster.sh" running; then
        echo "make cluster is running: stop it with \`make down\` before starting the local stack" >&2
        exit 1
    fi
}

# The scheduled purge is an operator command: it runs as the local stack's operator, created here
# the first time (the bootstrap, while no operator exists; or by the operator whose token is in
# ACHIEVEMENTS_OPERATOR_TOKEN), its token kept in $OPERATOR_TOKEN_FILE, mode 600.
ensure_operator() {
    [ -s "$OPERATOR_TOKEN_FILE" ] && return 0
    local created
    if ! created=$("$VENV/bin/achievements" operator create local-stack --json); then
        echo "no operator token in $OPERATOR_TOKEN_FILE, and none could be created: $created" >&2
        echo "the purge will not run until an operator's token is written there (mode 600):" \
            "ACHIEVEMENTS_OPERATOR_TOKEN=... achievements operator create NAME --json" >&2
        return 0
    fi
    (
        umask 077
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["token"])' \
            <<<"$created" > "$OPERATOR_TOKEN_FILE.new"
    )
    mv "$OPERATOR_TOKEN_FILE.new" "$OPERATOR_TOKEN_FILE"
    echo "local operator local-stack created; its token is in $OPERATOR_TOKEN_FILE"
}

# The ATO whose people sign in through the portal stand-in: created once (as the local operator),
# its id kept in $PORTAL_ATO_FILE. The gateway is told to take the stand-in's hand-off here,
# for the local stack only (make cluster, in production mode, reads keys over https alone).
PORTAL_ATO_FILE="$LOCAL_DIR/portal-ato"
ensure_portal_ato() {
    if [ ! -s "$PORTAL_ATO_FILE" ]; then
        local created
        if ! created=$("$HERE/with-operator-token" "$VENV/bin/achievements" ato create \
            "Demo Training Ltd" --json); then
            echo "the portal stand-in's ATO could not be created: $created" >&2
            return 0
        fi
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["ato_id"])' \
            <<<"$created" > "$PORTAL_ATO_FILE"
        echo "the portal stand-in's ATO $(< "$PORTAL_ATO_FILE") (Demo Training Ltd) created"
    fi
    export PORTAL_STANDIN_ATO_ID="${PORTAL_STANDIN_ATO_ID:-$(< "$PORTAL_ATO_FILE")}"
}

portal_settings() {
    local portal="http://127.0.0.1:${PORTAL_STANDIN_PORT:-8070}"
    export PORTAL_STANDIN_ISSUER="${PORTAL_STANDIN_ISSUER:-$portal}"
    export PORTAL_STANDIN_KEY_FILE="${PORTAL_STANDIN_KEY_FILE:-$LOCAL_DIR/portal-standin/signing-key.pem}"
    export PORTAL_STANDIN_HAND_OFF_URL="${PORTAL_STANDIN_HAND_OFF_URL:-http://127.0.0.1:${GATEWAY_PORT:-8080}/ato/sign-in/portal}"
    export GATEWAY_PORTAL_JWKS_URL="${GATEWAY_PORTAL_JWKS_URL:-$portal/.well-known/jwks.json}"
    export GATEWAY_PORTAL_ISSUER="${GATEWAY_PORTAL_ISSUER:-$PORTAL_STANDIN_ISSUER}"
    export GATEWAY_PORTAL_SIGN_IN_URL="${GATEWAY_PORTAL_SIGN_IN_URL:-$portal/sign-in}"
}

infra() {
    refuse_beside_cluster
    "$HERE/postgres.sh" prepare
    "$HERE/kafka.sh" prepare
    if [ "$STORAGE_BACKEND" = s3 ]; then "$HERE/seaweedfs.sh" prepare; fi
    start_supervisor
    start_program postgres "$PG_HOST" "$PG_PORT" 60
    start_program kafka "$KAFKA_HOST" "$KAFKA_PORT" 90
    if [ "$STORAGE_BACKEND" = s3 ]; then
        start_program s3 "$S3_HOST" "$S3_PORT" 120
        wait_for_bucket
    fi
    "$HERE/postgres.sh" databases
    "$VENV/bin/achievements" admin migrate
    "$VENV/bin/achievements" admin topics
    "$VENV/bin/achievements" reference load
    ensure_operator
}

# The services read their settings from this file at every (re)start, so what is set in the
# environment of `make up` reaches them even when supervisord was started earlier.
write_service_env() {
    local file="$RUN_DIR/services.env" name
    : > "$file.new"
    for name in $(compgen -e | grep -E '^(GATEWAY_|VALIDATOR_|GRANT_BRIDGE_|GRANT_STANDIN_|PORTAL_STANDIN_|RETENTION_|KAFKA_|STORAGE_|AWS_|DATABASE_URL$|DB_|LOG_LEVEL$|DEPLOYMENT_MODE$)' | sort); do
        printf 'export %s=%q\n' "$name" "${!name}" >> "$file.new"
    done
    if cmp -s "$file.new" "$file"; then
        rm "$file.new"
        return 1
    fi
    mv "$file.new" "$file"
}

up() {
    infra
    ensure_portal_ato
    portal_settings
    if write_service_env; then
        "${CTL[@]}" stop services:* >/dev/null 2>&1 || true
    fi
    "${CTL[@]}" start services:* >/dev/null
    wait_for_port 127.0.0.1 8090 30 || { tail -n 30 "$LOG_DIR/grant-standin.log" >&2; exit 1; }
    wait_for_port 127.0.0.1 "${PORTAL_STANDIN_PORT:-8070}" 30 \
        || { tail -n 30 "$LOG_DIR/portal-standin.log" >&2; exit 1; }
    wait_for_port 127.0.0.1 8080 30 || { tail -n 30 "$LOG_DIR/gateway.log" >&2; exit 1; }
    # supervisorctl exits 3 when any program is not running: the S3 server is one, stopped
    # unless STORAGE_BACKEND=s3. The ports waited for above are what says the stack is up.
    "${CTL[@]}" status || true
}

down() {
    # Every process the stack started, supervisord included, read before they go.
    local pids pid
    pids=$(cat "$RUN_DIR"/*.pid 2>/dev/null || true)
    if supervisor_running; then
        "${CTL[@]}" stop services:* >/dev/null 2>&1 || true
        "${CTL[@]}" stop kafka >/dev/null 2>&1 || true
        "${CTL[@]}" stop s3 >/dev/null 2>&1 || true
        "${CTL[@]}" stop postgres >/dev/null 2>&1 || true
        "${CTL[@]}" shutdown >/dev/null 2>&1 || true
    fi
    # Returns only once all of them have exited.
    for pid in $pids; do
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    done
    rm -f "$RUN_DIR"/*.pid
}

status() {
    if supervisor_running; then "${CTL[@]}" status || true; else echo "the local stack is not running"; fi
    # Where the running services store uploads: what they were started with (services.env).
    local backend="$STORAGE_BACKEND" endpoint="${STORAGE_S3_ENDPOINT:-}" bucket="${STORAGE_S3_BUCKET:-}"
    local key_id="${AWS_ACCESS_KEY_ID:-}"
    if [ -f "$RUN_DIR/services.env" ]; then
        # shellcheck disable=SC1091
        eval "$(source "$RUN_DIR/services.env"; printf 'backend=%q endpoint=%q bucket=%q key_id=%q' \
            "${STORAGE_BACKEND:-folder}" "${STORAGE_S3_ENDPOINT:-}" "${STORAGE_S3_BUCKET:-}" \
            "${AWS_ACCESS_KEY_ID:-}")"
    fi
    if [ "$backend" = s3 ]; then
        # Never the secret.
        echo "storage: s3 endpoint=$endpoint bucket=$bucket access_key_id=${key_id:-(from the platform)}"
    else
        echo "storage: folder $STORAGE_ROOT"
    fi
}

"${1:?usage: stack.sh infra|up|down|status}"
