#!/usr/bin/env bash
# A project-owned PostgreSQL cluster from Debian's packages, on its own port and data folder.
#   postgres.sh install   install the server packages if missing
#   postgres.sh prepare   create the cluster (initdb as the postgres user) once
#   postgres.sh run       run the server in the foreground (the supervisor calls this)
#   postgres.sh databases create the role and databases once the server answers
set -euo pipefail
source "$(dirname "$0")/env.sh"

pg_root() { pg_reachable_root "$LOCAL_DIR/pg" "/var/lib/postgresql/achievements-$PG_PORT"; }

install() {
    if [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/postgres" ]; then return 0; fi
    echo "installing the PostgreSQL server from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q postgresql >/dev/null
}

prepare() {
    install
    local root data
    root=$(pg_root)
    data="$root/data"
    mkdir -p "$root"
    chown postgres:postgres "$root"
    if [ ! -f "$data/PG_VERSION" ]; then
        echo "creating the PostgreSQL cluster in $data"
        setpriv --reuid=postgres --regid=postgres --init-groups \
            "$(pg_bin)/initdb" -D "$data" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
            -E UTF8 --locale=C.UTF-8 >/dev/null
        cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$root'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
logging_collector = off
CONF
    fi
}

# The processes whose working folder is the data folder: a server's postmaster and backends
# (they all run there), never another cluster's. Zombies have no working folder left.
cluster_processes() {  # data folder
    local proc
    for proc in /proc/[0-9]*; do
        if [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$1" ]; then echo "${proc#/proc/}"; fi
    done
}

# After the postmaster alone was killed (SIGKILL, the OOM killer), its backends live on for a
# while, attached to its shared memory, and a new postmaster refuses to start ("pre-existing
# shared memory block is still in use") until they are gone. Each notices the postmaster's death
# only when it next waits, so a busy one can take long: they get a moment to exit, then are
# killed (the new postmaster runs crash recovery from the WAL either way). Nothing is done while
# the postmaster of postmaster.pid still runs: that server is left alone, and the new one
# refuses to start beside it.
end_leftover_backends() {  # data folder
    local data old pids i
    data=$(readlink -f "$1")
    old=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
    if [ -n "$old" ] && [ "$(readlink "/proc/$old/cwd" 2>/dev/null)" = "$data" ]; then
        return 0
    fi
    pids=$(cluster_processes "$data")
    if [ -z "$pids" ]; then return 0; fi
    echo "postgres.sh: waiting for the backends of a dead postmaster to exit: $(echo $pids)" >&2
    for ((i = 0; i < 50; i++)); do
        if [ $i -eq 20 ]; then
            pids=$(cluster_processes "$data")
            echo "postgres.sh: killing the leftover backends: $(echo $pids)" >&2
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
        fi
        if [ -z "$(cluster_processes "$data")" ]; then return 0; fi
        sleep 0.1
    done
    echo "postgres.sh: leftover backends still running: $(echo $(cluster_processes "$data"))" >&2
}

run() {
    local root
    root=$(pg_root)
    end_leftover_backends "$root/data"
    exec setpriv --reuid=postgres --regid=postgres --init-groups \
        "$(pg_bin)/postgres" -D "$root/data"
}

psql_admin() {
    setpriv --reuid=postgres --regid=postgres --init-groups \
        "$(pg_bin)/psql" -h "$(pg_root)" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

databases() {
    local i
    for ((i = 0; i < 150; i++)); do
        psql_admin -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.2
    done
    if [ "$(psql_admin -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
        psql_admin -d postgres -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
    fi
    # Tests and benchmarks drop their throwaway databases WITH (FORCE); an autovacuum worker
    # still on one can only be ended by a member of pg_signal_backend.
    psql_admin -d postgres -c "GRANT pg_signal_backend TO $PG_USER"
    for db in "$PG_DATABASE" "$PG_STANDIN_DATABASE"; do
        if [ "$(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
            psql_admin -d postgres -c "CREATE DATABASE $db OWNER $PG_USER"
        fi
    done
}

"${1:?usage: postgres.sh install|prepare|run|databases}"
