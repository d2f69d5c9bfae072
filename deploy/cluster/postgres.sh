#!/usr/bin/env bash
# PostgreSQL (Debian's) as a primary and a synchronous hot standby, TLS only, for `make cluster`.
#   postgres.sh prepare          create node 1 (the primary at start) once
#   postgres.sh run N            run node N in the foreground (the supervisor calls this; it never
#                                restarts PostgreSQL by itself). Refuses a node that is not the
#                                recorded primary and has no standby.signal: an old primary
#                                starts again only as a standby (rebuild-standby)
#   postgres.sh roles            roles, databases and grants, once the primary answers
#   postgres.sh rebuild-standby  the node that is not the primary, copied afresh from the primary
#                                (pg_basebackup) and started as its synchronous standby
#   postgres.sh failover         fence the primary, promote the standby (pg_ctl promote), clear
#                                its synchronous_standby_names: the cluster then runs unprotected
#                                until rebuild-standby
#   postgres.sh primary          the number of the node that is the primary now
#   postgres.sh data-dir N       node N's data folder
#   postgres.sh grant-rows       the runtime role's rights on every table (after a migration)
#
# Node-specific settings (port, socket folder, cluster_name, which is the standby's
# application_name) are given on the command line, so postgresql.conf is the same on both nodes
# and survives pg_basebackup. synchronous_standby_names is set by ALTER SYSTEM only while a
# standby streams: a commit on a primary that waits for a standby that never comes hangs.
set -euo pipefail
source "$(dirname "$0")/env.sh"

SYNC_NAMES="ANY 1 (postgres_1, postgres_2)"

pg_root() {
    pg_reachable_root "$CLUSTER_DIR/pg" "/var/lib/postgresql/achievements-cluster-$(pg_node_port 1)"
}

ROOT=$(pg_root)
PRIMARY_FILE="$ROOT/primary"
# HOME too: libpq looks for a client certificate in ~/.postgresql, which root's would refuse.
as_postgres() {
    setpriv --reuid=postgres --regid=postgres --init-groups env HOME=/var/lib/postgresql "$@"
}
data_dir() { echo "$ROOT/node-$1/data"; }
socket_dir() { echo "$ROOT/node-$1"; }
primary() { cat "$PRIMARY_FILE"; }
standby() { if [ "$(primary)" = 1 ]; then echo 2; else echo 1; fi; }

psql_node() {  # node psql-arguments...
    local node=$1
    shift
    as_postgres "$(pg_bin)/psql" -h "$(socket_dir "$node")" -p "$(pg_node_port "$node")" \
        -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

wait_ready() {  # node seconds
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        psql_node "$1" -d postgres -c 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "postgres-$1 did not answer; its log:" >&2
    tail -n 30 "$CLUSTER_LOG_DIR/postgres-$1.log" >&2 || true
    return 1
}

# The server's certificate, key and the CA, readable by the server only; the replication
# password in a passfile the standby's walreceiver reads.
install_tls() {
    mkdir -p "$ROOT/tls"
    cp "$TLS_DIR/server.crt" "$TLS_DIR/server.key" "$CA_FILE" "$ROOT/tls/"
    (umask 077 && echo "$CLUSTER_HOST:*:replication:$PG_REPLICATOR:$(secret "pg-$PG_REPLICATOR")" \
        > "$ROOT/tls/pgpass")
    chown -R postgres:postgres "$ROOT/tls"
    chmod 700 "$ROOT/tls"
    chmod 600 "$ROOT/tls/server.key" "$ROOT/tls/pgpass"
}

prepare() {
    "$REPO_ROOT/deploy/local/postgres.sh" install
    "$CLUSTER_HERE/certs.sh"
    mkdir -p "$ROOT" "$CLUSTER_LOG_DIR"
    chown postgres:postgres "$ROOT"
    install_tls
    local data
    data=$(data_dir 1)
    if [ -f "$data/PG_VERSION" ]; then return 0; fi
    echo "creating the PostgreSQL primary in $data"
    mkdir -p "$(socket_dir 1)" "$(socket_dir 2)"
    chown postgres:postgres "$(socket_dir 1)" "$(socket_dir 2)"
    as_postgres "$(pg_bin)/initdb" -D "$data" -U postgres --auth-local=peer \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '$CLUSTER_HOST'
max_connections = 200
shared_buffers = 256MB
password_encryption = scram-sha-256
ssl = on
ssl_cert_file = '$ROOT/tls/server.crt'
ssl_key_file = '$ROOT/tls/server.key'
ssl_ca_file = '$ROOT/tls/ca.crt'
ssl_min_protocol_version = 'TLSv1.2'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = 1GB
hot_standby = on
fsync = on
synchronous_commit = on
logging_collector = off
CONF
    # TLS only over TCP; the unix socket only for the postgres user's own administration.
    cat > "$data/pg_hba.conf" <<HBA
local   all          postgres                         peer
hostssl replication  $PG_REPLICATOR  $CLUSTER_HOST/32  scram-sha-256
hostssl all          all             $CLUSTER_HOST/32  scram-sha-256
HBA
    chown postgres:postgres "$data/pg_hba.conf"
    echo 1 > "$PRIMARY_FILE"
}

# After a SIGKILL of the postmaster alone its backends live on for a while; the local stack's
# script waits for them (and kills the last ones) before a new postmaster may start.
end_leftover_backends() {  # node
    local data pids proc i
    data=$(readlink -f "$(data_dir "$1")")
    for ((i = 0; i < 50; i++)); do
        pids=""
        for proc in /proc/[0-9]*; do
            if [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$data" ]; then pids="$pids ${proc#/proc/}"; fi
        done
        if [ -z "$pids" ]; then return 0; fi
        # shellcheck disable=SC2086
        if [ $i -eq 20 ]; then kill -KILL $pids 2>/dev/null || true; fi
        sleep 0.1
    done
}

run() {  # node
    local node=${1:?usage: postgres.sh run N} data
    data=$(data_dir "$node")
    if [ "$node" != "$(primary)" ] && [ ! -f "$data/standby.signal" ]; then
        echo "postgres.sh: postgres-$node is not the primary (postgres-$(primary) is) and is no" \
            "standby: it does not start as a second primary; rebuild it as a standby with" \
            "\`make cluster-rebuild-standby\`" >&2
        exit 1
    fi
    end_leftover_backends "$node"
    exec setpriv --reuid=postgres --regid=postgres --init-groups env HOME=/var/lib/postgresql \
        "$(pg_bin)/postgres" -D "$data" \
        -p "$(pg_node_port "$node")" -k "$(socket_dir "$node")" -c cluster_name="postgres_$node"
}

roles() {
    local node PG_MIGRATOR PG_RUNTIME
    node=$(primary)
    PG_MIGRATOR=$(topology role migration)
    PG_RUNTIME=$(topology role runtime)
    wait_ready "$node" 60
    local role
    for role in "$PG_MIGRATOR" "$PG_RUNTIME" "$PG_STANDIN_ROLE" "$PG_REPLICATOR"; do
        if [ "$(psql_node "$node" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]; then
            psql_node "$node" -d postgres -c "CREATE ROLE $role LOGIN PASSWORD '$(secret "pg-$role")'"
        fi
    done
    psql_node "$node" -d postgres -c "ALTER ROLE $PG_REPLICATOR REPLICATION"
    if [ "$(psql_node "$node" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$CLUSTER_DATABASE'")" != 1 ]; then
        psql_node "$node" -d postgres -c "CREATE DATABASE $CLUSTER_DATABASE OWNER $PG_MIGRATOR"
    fi
    if [ "$(psql_node "$node" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$CLUSTER_STANDIN_DATABASE'")" != 1 ]; then
        psql_node "$node" -d postgres -c "CREATE DATABASE $CLUSTER_STANDIN_DATABASE OWNER $PG_STANDIN_ROLE"
    fi
    psql_node "$node" -d "$CLUSTER_STANDIN_DATABASE" -c "ALTER SCHEMA public OWNER TO $PG_STANDIN_ROLE"
    # The migration role owns the schema and everything in it; the runtime role reads and writes
    # rows (and its own temporary tables), and can create or alter nothing.
    psql_node "$node" -d "$CLUSTER_DATABASE" <<SQL
ALTER SCHEMA public OWNER TO $PG_MIGRATOR;
REVOKE ALL ON DATABASE $CLUSTER_DATABASE FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE $CLUSTER_DATABASE TO $PG_RUNTIME;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO $PG_RUNTIME;
ALTER DEFAULT PRIVILEGES FOR ROLE $PG_MIGRATOR IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO $PG_RUNTIME;
ALTER DEFAULT PRIVILEGES FOR ROLE $PG_MIGRATOR IN SCHEMA public
    GRANT USAGE ON SEQUENCES TO $PG_RUNTIME;
SQL
}

# Rows of tables made before the default privileges existed; run after every migration.
grant_rows() {
    local PG_RUNTIME
    PG_RUNTIME=$(topology role runtime)
    psql_node "$(primary)" -d "$CLUSTER_DATABASE" <<SQL
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO $PG_RUNTIME;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO $PG_RUNTIME;
SQL
}

node_running() {  # node
    cluster_ctl status "postgres-$1" 2>/dev/null | grep -q RUNNING
}

# The standby node, copied afresh from the primary and started; then the primary waits for it
# at every commit again.
rebuild_standby() {
    local node primary_node data conninfo
    primary_node=$(primary)
    node=$(standby)
    data=$(data_dir "$node")
    wait_ready "$primary_node" 60
    if node_running "$node"; then
        if [ -f "$data/standby.signal" ]; then
            echo "postgres-$node already runs as the standby"
        else
            echo "postgres-$node runs as a primary beside postgres-$primary_node: stop it first" >&2
            exit 1
        fi
    else
        cluster_ctl stop "postgres-$node" >/dev/null 2>&1 || true
        echo "rebuilding postgres-$node as the standby of postgres-$primary_node"
        rm -rf "$data"
        conninfo="host=$CLUSTER_HOST port=$(pg_node_port "$primary_node") user=$PG_REPLICATOR passfile=$ROOT/tls/pgpass sslmode=verify-full sslrootcert=$ROOT/tls/ca.crt"
        as_postgres "$(pg_bin)/pg_basebackup" -d "$conninfo" -D "$data" -X stream -c fast
        # The copy carries the primary's postgresql.auto.conf: its own conninfo goes last.
        sed -i '/^primary_conninfo/d' "$data/postgresql.auto.conf"
        echo "primary_conninfo = '$conninfo'" >> "$data/postgresql.auto.conf"
        as_postgres touch "$data/standby.signal"
        cluster_ctl start "postgres-$node" >/dev/null
    fi
    wait_ready "$node" 60
    local i
    for ((i = 0; i < 150; i++)); do
        if [ "$(psql_node "$primary_node" -d postgres -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'postgres_$node' AND state = 'streaming'")" = 1 ]; then
            psql_node "$primary_node" -d postgres \
                -c "ALTER SYSTEM SET synchronous_standby_names = '$SYNC_NAMES'" -c "SELECT pg_reload_conf()" >/dev/null
            echo "postgres-$node streams from postgres-$primary_node, synchronously"
            return 0
        fi
        sleep 0.2
    done
    echo "postgres-$node does not stream from postgres-$primary_node" >&2
    exit 1
}

# What an operator or Patroni does when the primary is lost: fence it, promote the standby.
failover() {
    local old new
    old=$(primary)
    new=$(standby)
    if [ ! -f "$(data_dir "$new")/standby.signal" ]; then
        echo "postgres-$new is no standby: nothing to promote (rebuild it first)" >&2
        exit 1
    fi
    # Fencing: the old primary must not take writes again, whatever state it is in.
    cluster_ctl stop "postgres-$old" >/dev/null 2>&1 || true
    echo "$new" > "$PRIMARY_FILE"
    as_postgres "$(pg_bin)/pg_ctl" promote -w -t 60 -D "$(data_dir "$new")" >/dev/null
    # No standby is left to confirm commits: waiting for one would stop every write.
    psql_node "$new" -d postgres -c "ALTER SYSTEM SET synchronous_standby_names = ''" \
        -c "SELECT pg_reload_conf()" >/dev/null
    echo "postgres-$new is the primary; the cluster runs without a standby until" \
        "\`make cluster-rebuild-standby\` rebuilds postgres-$old"
}

case "${1:?usage: postgres.sh prepare|run N|roles|grant-rows|rebuild-standby|failover|primary|data-dir N}" in
    prepare) prepare ;;
    run) run "${2:-}" ;;
    roles) roles ;;
    grant-rows) grant_rows ;;
    rebuild-standby) rebuild_standby ;;
    failover) failover ;;
    primary) primary ;;
    data-dir) data_dir "${2:?usage: postgres.sh data-dir N}" ;;
    *) echo "unknown command $1" >&2; exit 2 ;;
esac
