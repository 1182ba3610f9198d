#!/usr/bin/env bash
# Apache Kafka's broker (KRaft), resolved from Maven Central with Maven: no tarball, no image.
#
#   .ci/apache-kafka.sh            prints the directory (APACHE_KAFKA_HOME) on its last line
#
# The directory holds
#   libs/                       kafka_2.13 and its runtime dependencies, plus a log4j2 binding
#   config/log4j2.properties    INFO to stdout (override with -Dlog4j2.configurationFile)
#   bin/kafka-run-class CLASS   java -cp 'libs/*' CLASS ..., like Kafka's own script of that name
# e.g.  $home/bin/kafka-run-class kafka.tools.StorageTool format -t <uuid> -c server.properties --standalone
#       $home/bin/kafka-run-class kafka.Kafka server.properties
#
# The testkit's `CASESTUDIES_TEST_KAFKA=apache` backend looks for it in the default place below
# (or APACHE_KAFKA_HOME). Nothing is fetched when the directory is complete for this version.
set -euo pipefail

version=${APACHE_KAFKA_VERSION:-4.4.0}
log4j=2.25.5
home=${APACHE_KAFKA_HOME:-$HOME/.cache/casestudies/apache-kafka-$version}

if [ -f "$home/.complete" ] && [ "$(cat "$home/.complete")" = "$version" ]; then
  echo "$home"
  exit 0
fi

command -v mvn >/dev/null || { echo "apache-kafka.sh: Maven (mvn) is needed to fetch Apache Kafka $version" >&2; exit 1; }
command -v java >/dev/null || { echo "apache-kafka.sh: a Java 17+ runtime is needed to run Apache Kafka $version" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>casestudies</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>$version</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$version</version>
    </dependency>
    <!-- The broker logs through SLF4J 1.x; this routes it to log4j2 (already a dependency). -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$log4j</version>
    </dependency>
  </dependencies>
</project>
EOF

rm -rf "$home"
mkdir -p "$home/bin" "$home/config"
mvn -q -B -Dstyle.color=never -f "$work/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$home/libs" -DincludeScope=runtime >&2

cat >"$home/config/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${env:KAFKA_LOG_LEVEL:-INFO}
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = ${env:KAFKA_LOG_LEVEL:-INFO}
logger.state.name = state.change.logger
logger.state.level = WARN
EOF

cat >"$home/bin/kafka-run-class" <<'EOF'
#!/usr/bin/env bash
# java -cp "<home>/libs/*" CLASS ARGS...; KAFKA_HEAP_OPTS and KAFKA_OPTS as in Kafka's own scripts.
home=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC2086 # the options are word lists
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$home/config/log4j2.properties" ${KAFKA_OPTS:-} \
  -cp "$home/libs/*" "$@"
EOF
chmod 755 "$home/bin/kafka-run-class"

echo "$version" >"$home/.complete"
echo "fetched Apache Kafka $version into $home ($(ls "$home/libs" | wc -l) jars)" >&2
echo "$home"
