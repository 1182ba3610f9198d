#!/usr/bin/env bash
# Builds a local Docker image that plays the official `apache/kafka` image's role, without
# pulling anything: a root filesystem made from this machine's files — a Java runtime cut down
# with `jlink`, the broker jars `.ci/apache-kafka.sh` resolved from Maven Central, bash and a few
# coreutils with the shared libraries they link — `docker import`ed.
#
#   .ci/apache-kafka-image.sh [IMAGE]      default IMAGE: casestudies/apache-kafka:<version>
#
# Like `apache/kafka`, the image takes its configuration from `KAFKA_*` environment variables
# (KAFKA_ADVERTISED_LISTENERS -> advertised.listeners; `__` -> `_`, `___` -> `-`), formats its
# storage with CLUSTER_ID, runs `/etc/kafka/docker/run`, and logs "Kafka Server started" when
# ready, so testcontainers' Kafka module (`testcontainers_modules::kafka::apache`) runs it as is.
# Rebuilt only when its inputs change (their hash is kept as a label).
set -euo pipefail
cd "$(dirname "$0")/.."

version=${APACHE_KAFKA_VERSION:-4.4.0}
image=${1:-casestudies/apache-kafka:$version}
home=$(.ci/apache-kafka.sh | tail -n 1)
java_home=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
jlink_bin="$java_home/bin/jlink"
[ -x "$jlink_bin" ] || jlink_bin=$(command -v jlink)

tools=(bash dash env sleep chmod mkdir cat rm ls tail)
inputs=$(
  {
    sha256sum "$0"
    cat "$home/.complete"
    "$java_home/bin/java" -version 2>&1
    for tool in "${tools[@]}"; do sha256sum "$(command -v "$tool")"; done
  } | sha256sum | cut -d' ' -f1
)
if [ "$(docker image inspect -f '{{ index .Config.Labels "casestudies.inputs" }}' "$image" 2>/dev/null)" = "$inputs" ]; then
  echo "image $image is up to date"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/tmp" "$root/bin" "$root/usr/bin" "$root/etc/kafka/docker" "$root/var/lib/kafka/data" "$root/opt"
chmod 1777 "$root/tmp"

# A Java runtime with the modules the broker uses (about 60 MB instead of the JDK's 260 MB).
"$jlink_bin" --add-modules java.base,java.compiler,java.desktop,java.instrument,java.logging,java.management,java.management.rmi,java.naming,java.net.http,java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,java.xml,jdk.crypto.ec,jdk.jfr,jdk.management,jdk.naming.dns,jdk.net,jdk.security.auth,jdk.unsupported,jdk.zipfs \
  --strip-debug --no-man-pages --no-header-files --output "$root/opt/java"
cp -r "$home" "$root/opt/kafka"
rm -f "$root/opt/kafka/bin/kafka-run-class"

for tool in "${tools[@]}"; do cp -L "$(command -v "$tool")" "$root/usr/bin/$tool"; done
ln -s /usr/bin/dash "$root/bin/sh"
ln -s /usr/bin/bash "$root/bin/bash"
# The dynamic loader and every library the tools and the Java runtime link, at the same paths.
{
  for tool in "${tools[@]}"; do ldd "$root/usr/bin/$tool"; done
  find "$root/opt/java" -type f \( -name '*.so' -o -perm -u+x \) -exec ldd {} \; 2>/dev/null
} | grep -o '/[^ ]*' | grep -v "^$root" | sort -u | while read -r lib; do
  [ -e "$lib" ] && cp --parents -L "$lib" "$root"
done
printf 'root:x:0:0:root:/root:/bin/bash\nappuser:x:1000:1000::/home/appuser:/bin/bash\n' >"$root/etc/passwd"
printf 'root:x:0:\nappuser:x:1000:\n' >"$root/etc/group"

cat >"$root/etc/kafka/docker/run" <<'EOF'
#!/bin/bash
# KAFKA_* environment variables -> server.properties (as the official apache/kafka image does),
# storage formatted with CLUSTER_ID, then the broker in the foreground.
set -euo pipefail
props=/opt/kafka/config/server.properties
declare -A config=(
  [process.roles]=broker,controller
  [node.id]=1
  [listeners]=PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093
  [advertised.listeners]=PLAINTEXT://localhost:9092
  [controller.listener.names]=CONTROLLER
  [listener.security.protocol.map]=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  [controller.quorum.bootstrap.servers]=localhost:9093
  [log.dirs]=/var/lib/kafka/data
  [group.initial.rebalance.delay.ms]=0
  [offsets.topic.replication.factor]=1
  [transaction.state.log.replication.factor]=1
  [transaction.state.log.min.isr]=1
  [share.coordinator.state.topic.replication.factor]=1
  [share.coordinator.state.topic.min.isr]=1
)
for var in $(compgen -e); do
  case $var in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_LOG_LEVEL) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  name=${var#KAFKA_}
  name=${name,,}
  name=${name//___/-}
  name=${name//__/@}
  name=${name//_/.}
  name=${name//@/_}
  config[$name]=${!var}
done
# KRaft names the node node.id; testcontainers' module still sets KAFKA_BROKER_ID.
if [ -n "${config[broker.id]:-}" ]; then
  config[node.id]=${config[broker.id]}
  unset 'config[broker.id]'
fi
# A static quorum (controller.quorum.voters) or a dynamic one bootstrapped by this node.
standalone=(--standalone)
if [ -n "${config[controller.quorum.voters]:-}" ]; then
  unset 'config[controller.quorum.bootstrap.servers]'
  standalone=()
fi
: >"$props"
for name in "${!config[@]}"; do printf '%s=%s\n' "$name" "${config[$name]}" >>"$props"; done

java=(/opt/java/bin/java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*')
if [ ! -e "${config[log.dirs]}/meta.properties" ]; then
  "${java[@]}" kafka.tools.StorageTool format --cluster-id "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" \
    --config "$props" "${standalone[@]}" --ignore-formatted
fi
exec "${java[@]}" kafka.Kafka "$props"
EOF
chmod 755 "$root/etc/kafka/docker/run"

tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/etc/kafka/docker/run"]' \
  --change 'EXPOSE 9092' \
  --change "LABEL casestudies.inputs=$inputs" \
  --change "LABEL org.apache.kafka.version=$version" \
  --change 'ENV PATH=/opt/java/bin:/usr/bin:/bin' \
  - "$image" >/dev/null
echo "built $image ($(docker image inspect -f '{{ .Size }}' "$image" | awk '{ printf "%d MB", $1 / 1e6 }'))"
