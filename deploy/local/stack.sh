#!/usr/bin/env bash
# The local stack: Kafka and PostgreSQL, then the pipeline's services, under supervisord.
#   stack.sh infra     install what is missing, start Kafka and PostgreSQL, migrate, create topics
#   stack.sh up        infra + the services (gateway, 2 validators, bridge, grant stand-in)
#   stack.sh down      stop everything, supervisord last
#   stack.sh status    what runs
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

# `make cluster` and the local stack never run at once (2 cores; one `make down` for both).
refuse_beside_cluster() {
    if "$REPO_ROOT/deploy/cluster/cluster.sh" running; then
        echo "make cluster is running: stop it with \`make down\` before starting the local stack" >&2
        exit 1
    fi
}

infra() {
    refuse_beside_cluster
    "$HERE/postgres.sh" prepare
    "$HERE/kafka.sh" prepare
    start_supervisor
    start_program postgres "$PG_HOST" "$PG_PORT" 60
    start_program kafka "$KAFKA_HOST" "$KAFKA_PORT" 90
    "$HERE/postgres.sh" databases
    "$VENV/bin/achievements" admin migrate
    "$VENV/bin/achievements" admin topics
    "$VENV/bin/achievements" reference load
}

# The services read their settings from this file at every (re)start, so what is set in the
# environment of `make up` reaches them even when supervisord was started earlier.
write_service_env() {
    local file="$RUN_DIR/services.env" name
    : > "$file.new"
    for name in $(compgen -e | grep -E '^(GATEWAY_|VALIDATOR_|GRANT_BRIDGE_|GRANT_STANDIN_|RETENTION_|KAFKA_|STORAGE_|DATABASE_URL$|DB_|LOG_LEVEL$|DEPLOYMENT_MODE$)' | sort); do
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
    if write_service_env; then
        "${CTL[@]}" stop services:* >/dev/null 2>&1 || true
    fi
    "${CTL[@]}" start services:* >/dev/null
    wait_for_port 127.0.0.1 8090 30 || { tail -n 30 "$LOG_DIR/grant-standin.log" >&2; exit 1; }
    wait_for_port 127.0.0.1 8080 30 || { tail -n 30 "$LOG_DIR/gateway.log" >&2; exit 1; }
    "${CTL[@]}" status
}

down() {
    # Every process the stack started, supervisord included, read before they go.
    local pids pid
    pids=$(cat "$RUN_DIR"/*.pid 2>/dev/null || true)
    if supervisor_running; then
        "${CTL[@]}" stop services:* >/dev/null 2>&1 || true
        "${CTL[@]}" stop kafka >/dev/null 2>&1 || true
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
    if supervisor_running; then "${CTL[@]}" status; else echo "the local stack is not running"; fi
}

"${1:?usage: stack.sh infra|up|down|status}"
