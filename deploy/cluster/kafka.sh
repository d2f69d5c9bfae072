#!/usr/bin/env bash
# Three KRaft nodes, each broker and controller (a 3-voter quorum), from the local stack's jars.
#   kafka.sh prepare      write each node's properties and format its storage with the SCRAM
#                         users (once)
#   kafka.sh run N        run node N in the foreground (the supervisor calls this)
#   kafka.sh access       every principal's SCRAM user and ACLs (once the brokers answer)
#   kafka.sh topics       the topics (once the brokers answer; existing ones are left alone)
#
# Listeners: CLIENT (SASL_SSL, SCRAM-SHA-512) for the services, INTERNAL (TLS, client
# certificates) between brokers, CONTROLLER (TLS, client certificates) for the quorum. The
# brokers authenticate each other by certificate as User:CN=kafka-broker, a super user with
# the SCRAM `admin`; every other principal (deploy/topology.yaml) has only its ACLs.
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$REPO_ROOT/deploy/local/kafka-lib.sh"

KAFKA_ROOT="$CLUSTER_DIR/kafka"
LOG4J="$KAFKA_ROOT/log4j.properties"

node_dir() { echo "$KAFKA_ROOT/node-$1"; }

voters() {
    local node out=()
    for node in "${KAFKA_NODES[@]}"; do
        out+=("$node@$CLUSTER_HOST:$(kafka_controller_port "$node")")
    done
    (IFS=,; echo "${out[*]}")
}

write_properties() {  # node
    local node=$1 dir
    dir=$(node_dir "$node")
    mkdir -p "$dir/data"
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$(voters)
listeners=CLIENT://$CLUSTER_HOST:$(kafka_client_port "$node"),INTERNAL://$CLUSTER_HOST:$(kafka_internal_port "$node"),CONTROLLER://$CLUSTER_HOST:$(kafka_controller_port "$node")
advertised.listeners=CLIENT://$CLUSTER_HOST:$(kafka_client_port "$node"),INTERNAL://$CLUSTER_HOST:$(kafka_internal_port "$node")
listener.security.protocol.map=CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL

ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/kafka-broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$CA_FILE
listener.name.internal.ssl.client.auth=required
listener.name.controller.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:CN=kafka-broker;User:$KAFKA_ADMIN_USER

log.dirs=$dir/data
num.partitions=4
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
PROPS
}

prepare() {
    kafka_fetch
    "$CLUSTER_HERE/certs.sh"
    mkdir -p "$KAFKA_ROOT" "$CLUSTER_LOG_DIR"
    kafka_write_log4j "$LOG4J"
    local node scram=() user cluster_id_file="$KAFKA_ROOT/cluster-id" cluster_id formatted=""
    # SCRAM credentials are records of the cluster's first metadata: every node is formatted
    # with the same ones.
    scram+=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_ADMIN_USER,password=$(secret "kafka-$KAFKA_ADMIN_USER")]")
    for user in $(topology principals); do
        scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(secret "kafka-$user")]")
    done
    if [ ! -s "$cluster_id_file" ]; then
        kafka_java "$LOG4J" kafka.tools.StorageTool random-uuid > "$cluster_id_file"
    fi
    cluster_id=$(cat "$cluster_id_file")
    for node in "${KAFKA_NODES[@]}"; do
        write_properties "$node"
        if [ ! -f "$(node_dir "$node")/data/meta.properties" ]; then
            kafka_java "$LOG4J" kafka.tools.StorageTool format -t "$cluster_id" \
                -c "$(node_dir "$node")/server.properties" "${scram[@]}" >/dev/null
            formatted=1
        fi
    done
    if [ -n "$formatted" ]; then topology principals > "$KAFKA_ROOT/scram-users"; fi
    admin_config > /dev/null
}

run() {  # node
    local node=${1:?usage: kafka.sh run N}
    # shellcheck disable=SC2086
    exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$LOG4J" \
        -cp "$KAFKA_CACHE_DIR/libs/*" kafka.Kafka "$(node_dir "$node")/server.properties"
}

# The properties of a client that speaks as `user` (the Java tools' --command-config).
client_config() {  # user
    local file="$SECRETS_DIR/kafka-$1.properties"
    (umask 077 && cat > "$file" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$1" password="$(secret "kafka-$1")";
ssl.truststore.type=PEM
ssl.truststore.location=$CA_FILE
PROPS
    )
    echo "$file"
}

admin_config() { client_config "$KAFKA_ADMIN_USER"; }

# Each principal's SCRAM user and ACLs as deploy/topology.yaml declares them (as Strimzi's
# KafkaUser grants them); no ACL means no access. Creating topics is the admin's: no service has
# Create. Users formatted into the storage are recorded; one the topology adds later is created
# through the brokers; ACLs are added again whenever the topology's change (adding is
# idempotent; an ACL the topology drops stays until removed by hand: kafka.admin.AclCommand).
access() {
    local acls_file="$KAFKA_ROOT/acls-applied" users_file="$KAFKA_ROOT/scram-users" user
    local -a arguments
    touch "$users_file"
    for user in $(topology principals); do
        if ! grep -qx "$user" "$users_file"; then
            kafka_java "$LOG4J" kafka.admin.ConfigCommand --bootstrap-server "$(kafka_bootstrap)" \
                --command-config "$(admin_config)" --alter --entity-type users --entity-name "$user" \
                --add-config "SCRAM-SHA-512=[password=$(secret "kafka-$user")]" >/dev/null
            echo "$user" >> "$users_file"
        fi
    done
    local wanted
    wanted=$(topology acl-commands)
    if [ -f "$acls_file" ] && [ "$wanted" = "$(cat "$acls_file")" ]; then return 0; fi
    while IFS=$'\t' read -r -a arguments; do
        kafka_java "$LOG4J" kafka.admin.AclCommand --bootstrap-server "$(kafka_bootstrap)" \
            --command-config "$(admin_config)" --add --force "${arguments[@]}" >/dev/null
    done <<< "$wanted"
    echo "$wanted" > "$acls_file"
}

# The topics of deploy/topology.yaml (partitions, replication factor 3, configs), made by the
# admin user: the services create none (KAFKA_CREATE_TOPICS=false).
topics() {
    (
        export DEPLOYMENT_MODE=production KAFKA_BOOTSTRAP_SERVERS="$(kafka_bootstrap)" \
            KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \
            KAFKA_SASL_USERNAME="$KAFKA_ADMIN_USER" \
            KAFKA_SASL_PASSWORD="$(secret "kafka-$KAFKA_ADMIN_USER")" KAFKA_SSL_CA_FILE="$CA_FILE"
        topology create-topics
    )
}

case "${1:?usage: kafka.sh prepare|run N|access|topics}" in
    prepare) prepare ;;
    run) run "${2:-}" ;;
    access) access ;;
    topics) topics ;;
    *) echo "unknown command $1" >&2; exit 2 ;;
esac
