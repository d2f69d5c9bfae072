#!/usr/bin/env bash
# Apache Kafka from Maven Central's jars: one KRaft node (broker + controller), no Docker.
#   kafka.sh fetch    download kafka_2.13 and its runtime dependencies into the cache (once)
#   kafka.sh prepare  write server.properties and format the storage (once)
#   kafka.sh run      run the broker in the foreground (the supervisor calls this)
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/kafka-lib.sh"

fetch() {
    kafka_fetch
}

prepare() {
    fetch
    mkdir -p "$KAFKA_DIR/data" "$LOG_DIR"
    cat > "$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
PROPS
    kafka_write_log4j "$KAFKA_DIR/log4j.properties"
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
        local cluster_id
        cluster_id=$(kafka_java "$KAFKA_DIR/log4j.properties" kafka.tools.StorageTool random-uuid)
        kafka_java "$KAFKA_DIR/log4j.properties" kafka.tools.StorageTool format -t "$cluster_id" \
            -c "$KAFKA_DIR/server.properties" >/dev/null
    fi
}

run() {
    # shellcheck disable=SC2086
    exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
        -cp "$KAFKA_CACHE_DIR/libs/*" kafka.Kafka "$KAFKA_DIR/server.properties"
}

"${1:?usage: kafka.sh fetch|prepare|run}"
