#!/usr/bin/env bash
# A project-owned PostgreSQL cluster from Debian's packages, on its own port and data folder.
#   postgres.sh install   install the server packages if missing
#   postgres.sh prepare   create the cluster (initdb as the postgres user) once
#   postgres.sh run       run the server in the foreground (the supervisor calls this)
#   postgres.sh databases create the role and databases once the server answers
set -euo pipefail
source "$(dirname "$0")/env.sh"

# initdb refuses root and the server runs as `postgres`, which must be able to reach its folder;
# a checkout under a private home folder cannot be reached, so the cluster then lives elsewhere.
pg_root() {
    local wanted="$LOCAL_DIR/pg"
    mkdir -p "$wanted"
    if setpriv --reuid=postgres --regid=postgres --init-groups test -x "$wanted" 2>/dev/null; then
        echo "$wanted"
    else
        echo "/var/lib/postgresql/achievements-$PG_PORT"
    fi
}

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

run() {
    local root
    root=$(pg_root)
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
