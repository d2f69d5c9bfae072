# Apache Kafka from Maven Central's jars, shared by the local stack (kafka.sh) and `make cluster`
# (deploy/cluster/kafka.sh); sourced after env.sh (KAFKA_VERSION, KAFKA_CACHE_DIR).

# Downloads kafka_2.13 and its runtime dependencies into the cache, once per version.
kafka_fetch() {
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

# A class of the cached jars (a tool or the server), with a log4j configuration.
kafka_java() {  # log4j.properties class args...
    local log4j=$1
    shift
    java -cp "$KAFKA_CACHE_DIR/libs/*" -Dlog4j.configuration="file:$log4j" "$@"
}

# The log4j configuration of a server: warnings, and the start and stop lines.
kafka_write_log4j() {  # file
    cat > "$1" <<'LOG4J'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
LOG4J
}
