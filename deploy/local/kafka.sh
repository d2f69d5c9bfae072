#!/usr/bin/env bash
# Apache Kafka from Maven Central's jars: one KRaft node (broker + controller), no Docker.
#   kafka.sh fetch    download kafka_2.13 and its runtime dependencies into the cache (once)
#   kafka.sh prepare  write server.properties and format the storage (once)
#   kafka.sh run      run the broker in the foreground (the supervisor calls this)
set -euo pipefail
source "$(dirname "$0")/env.sh"

fetch() {
    if [ -f "$KAFKA_CACHE_DIR/.complete" ]; then return 0; fi
    if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
        echo "installing Java 17 and Maven from Debian's packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q openjdk-17-jre-headless maven >/dev/null
    fi
    local work
    work=$(mktemp -d)
    cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.stack</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
    echo "fetching Kafka $KAFKA_VERSION jars with Maven into $KAFKA_CACHE_DIR"
    mkdir -p "$KAFKA_CACHE_DIR/libs"
    (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$KAFKA_CACHE_DIR/libs")
    rm -rf "$work"
    touch "$KAFKA_CACHE_DIR/.complete"
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
    cat > "$KAFKA_DIR/log4j.properties" <<'LOG4J'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
LOG4J
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
        local cluster_id
        cluster_id=$(java -cp "$KAFKA_CACHE_DIR/libs/*" -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
            kafka.tools.StorageTool random-uuid)
        java -cp "$KAFKA_CACHE_DIR/libs/*" -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
            kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >/dev/null
    fi
}

run() {
    # shellcheck disable=SC2086
    exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
        -cp "$KAFKA_CACHE_DIR/libs/*" kafka.Kafka "$KAFKA_DIR/server.properties"
}

"${1:?usage: kafka.sh fetch|prepare|run}"
