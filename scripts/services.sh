#!/usr/bin/env bash
# Local infrastructure for development, tests and CI, without Docker:
#   - Apache Kafka 4.x (single KRaft node, broker+controller), run from the
#     Maven Central jars listed in scripts/kafka/pom.xml
#   - PostgreSQL 15 (Debian's cluster 15/main) with role/database "webhooks"
#
#   - optionally, a three-node Kafka KRaft cluster (replication factor 3, min ISR 2) for
#     the failover tests: `up kafka-cluster`; never started by a bare `up`
#
# Usage: scripts/services.sh <command> [kafka|kafka-cluster|postgres]
#   up [svc]        install what is missing, start, wait until it answers (idempotent)
#   down [svc]      stop (Kafka: SIGTERM, SIGKILL after $KAFKA_STOP_TIMEOUT s; data is kept)
#   restart [svc]   down + up
#   kill [svc]      hard stop (Kafka: SIGKILL; PostgreSQL: immediate shutdown) to simulate a crash
#   kill kafka-cluster [N...]   SIGKILL cluster nodes N (default: all); `down kafka-cluster N` is SIGTERM
#   start kafka-cluster N...    start cluster nodes N and wait until they run (nodes that must
#                   form a controller majority again have to be started in one call)
#   status          print whether each service is up (exit 0 only if all are)
#   logs [svc] [N]  print the last N (default 100) lines of the service logs
#   env             print the export lines (same as scripts/env.sh)
#   kafka-start / kafka-stop / postgres-start / postgres-stop   aliases of up/down <svc>
#   kafka-tool CLASS [ARGS...]   run a Kafka CLI class from the jars, e.g.
#       scripts/services.sh kafka-tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#   kafka-topics [ARGS...]       shortcut for TopicCommand with --bootstrap-server preset
#
# Environment (all optional):
#   SERVICES_HOME         cache/state folder, default ~/.cache/webhooks-services (outside the repo)
#   KAFKA_PORT            PLAINTEXT listener, default 9092
#   KAFKA_SECURE_PORT     SASL_SSL listener (TLS from a local test CA, SCRAM-SHA-512 user
#                         $KAFKA_SCRAM_USER), as managed brokers offer, default 9094
#   KAFKA_CONTROLLER_PORT KRaft controller listener, default 9093
#   KAFKA_HEAP_OPTS       default "-Xms256m -Xmx512m"
#   KAFKA_START_TIMEOUT   seconds to wait for the broker to answer, default 90
#   KAFKA_STOP_TIMEOUT    seconds to wait after SIGTERM before SIGKILL, default 60
#   KAFKA_AUTO_CREATE_TOPICS  default false (the application creates its topics)
#   KAFKA_CLUSTER_PORT_BASE   cluster node N listens on BASE+N, its controller on BASE+100+N;
#                             default 29090 (clients on 29091-29093)
#   KAFKA_CLUSTER_HEAP_OPTS   per cluster node, default "-Xms128m -Xmx384m"
#   KAFKA_CLUSTER_START_TIMEOUT  seconds to wait for a cluster node to start, default 180
#   PG_VERSION / PG_CLUSTER   default 15 / main
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"

SERVICES_HOME="${SERVICES_HOME:-${HOME:-/root}/.cache/webhooks-services}"
CACHE="$SERVICES_HOME"
LIBS="$CACHE/libs"
KAFKA_DIR="$CACHE/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_LOG4J="$KAFKA_DIR/log4j2.properties"
KAFKA_TOOLS_LOG4J="$KAFKA_DIR/tools-log4j2.properties"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$CACHE/kafka.log"

KAFKA_HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
KAFKA_AUTO_CREATE_TOPICS="${KAFKA_AUTO_CREATE_TOPICS:-false}"
KAFKA_BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
KAFKA_SECURE_PORT="${KAFKA_SECURE_PORT:-9094}"
KAFKA_TLS_DIR="$KAFKA_DIR/tls"
# Test credentials of a test broker on loopback, like PG_PASSWORD below.
KAFKA_SCRAM_USER=webhooks
KAFKA_SCRAM_PASSWORD=webhooks-scram
KAFKA_KEYSTORE_PASSWORD=webhooks-keystore

PG_VERSION="${PG_VERSION:-15}"
PG_CLUSTER="${PG_CLUSTER:-main}"
PG_HOST=127.0.0.1
PG_USER=webhooks
PG_PASSWORD=webhooks
PG_DB=webhooks
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

mkdir -p "$CACHE"

# Serialise state-changing commands (two `up`s at once must not race).
# Every daemon started below gets `9>&-`, or it would inherit fd 9 and hold the
# lock for as long as it runs.
take_lock() {
  exec 9>"$CACHE/.lock"
  if ! flock -w 300 9; then
    die "could not take $CACHE/.lock within 300s (another services.sh running? holders: $(fuser "$CACHE/.lock" 2>/dev/null || echo '?'))"
  fi
}

port_open() { # host port
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

need_root_for() {
  if [ "$(id -u)" -ne 0 ]; then die "$1 needs root (apt-get); run as root or install it by hand"; fi
}

APT_UPDATED=0
apt_install() {
  need_root_for "installing $*"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 9>&-
}

# A CA of our own and a certificate from it naming localhost and 127.0.0.1, as a managed
# service presents one: issue_test_cert DIR CA_NAME LEAF makes DIR/ca.{key,crt} and
# DIR/LEAF.{key,crt}.
issue_test_cert() {
  local d="$1" ca_name="$2" leaf="$3"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$ca_name" \
    -keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$d/$leaf.key" -out "$d/$leaf.csr" >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/san.ext"
  openssl x509 -req -in "$d/$leaf.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
    -CAcreateserial -days 3650 -extfile "$d/san.ext" -out "$d/$leaf.crt" >/dev/null 2>&1
}

# ---------------------------------------------------------------- Kafka

ensure_java() {
  local v
  if command -v java >/dev/null 2>&1; then
    v="$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')"
    if [ "${v%%.*}" -ge 17 ] 2>/dev/null; then return 0; fi
    log "java $v is too old for Kafka 4 (needs 17+)"
  fi
  apt_install openjdk-17-jre-headless
}

ensure_maven() {
  command -v mvn >/dev/null 2>&1 || apt_install maven
}

pom_stamp() { sha256sum "$POM" | cut -d' ' -f1; }

kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1
}

ensure_kafka_libs() {
  local stamp
  stamp="$(pom_stamp)"
  if [ -f "$LIBS/.stamp" ] && [ "$(cat "$LIBS/.stamp")" = "$stamp" ]; then
    return 0
  fi
  ensure_maven
  log "fetching Kafka $(kafka_version) jars from Maven Central into $LIBS (once)"
  local tmp="$CACHE/libs.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -B -ntp -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" -DincludeScope=runtime >"$CACHE/mvn.log" 2>&1; then
    tail -n 40 "$CACHE/mvn.log" >&2 || true
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed (full output: $CACHE/mvn.log)"
  fi
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DIR" "$KAFKA_DATA"
  cat >"$KAFKA_PROPS.tmp" <<EOF
# Generated by scripts/services.sh -- edits are overwritten on every start.
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SECURE_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SECURE_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$KAFKA_DATA

# The managed-broker listener: TLS with a certificate from the local test CA, SCRAM users.
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$KAFKA_KEYSTORE_PASSWORD

num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=$KAFKA_AUTO_CREATE_TOPICS
delete.topic.enable=true

# internal topics: one replica, fewer partitions than the default 50 so the
# first consumer group / transaction in a test does not wait for 50 partitions
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# modest resources for a 2-core test machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=33554432
log.retention.hours=168
log.segment.bytes=268435456
EOF
  mv "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
  write_kafka_log4j
}

# Logging configs for brokers and CLI tools, shared by the single broker and the cluster.
write_kafka_log4j() {
  mkdir -p "$KAFKA_DIR"
  cat >"$KAFKA_LOG4J" <<'EOF'
# Broker logging (stdout, redirected by services.sh into kafka.log)
status = warn
name = kafka-broker
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.netclient.name = org.apache.kafka.clients.NetworkClient
logger.netclient.level = WARN
EOF

  cat >"$KAFKA_TOOLS_LOG4J" <<'EOF'
# CLI tools: only warnings, on stderr
status = warn
name = kafka-tools
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
}

# Run a Kafka class (CLI tool) from the jars: kafka_tool CLASS ARGS...
kafka_tool_cmd() {
  KAFKA_TOOL_CMD=(java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" -cp "$LIBS/*")
}
kafka_tool() {
  kafka_tool_cmd
  "${KAFKA_TOOL_CMD[@]}" "$@"
}

ensure_kafka_formatted() {
  if [ -f "$KAFKA_DATA/meta.properties" ]; then return 0; fi
  local cluster_id
  cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid | tail -n1)"
  [ -n "$cluster_id" ] || die "kafka.tools.StorageTool random-uuid printed nothing"
  log "formatting KRaft storage in $KAFKA_DATA (cluster id $cluster_id)"
  kafka_tool kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$KAFKA_PROPS" >&2 \
    || die "kafka.tools.StorageTool format failed"
}

# Starts a broker in the background: launch_kafka PIDFILE PROPS LOG LOGSDIR HEAP_OPTS
launch_kafka() {
  # setsid + nohup: the broker outlives this script and its process group;
  # the inner bash writes its own pid and then execs java, so the pid file is java's.
  # shellcheck disable=SC2086,SC2016  # word-split heap opts; inner script is literal
  setsid nohup bash -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; echo $$ >"$0"; exec "$@"' "$1" \
    java $5 -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:MaxDirectMemorySize=256m -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$4" \
    -cp "$LIBS/*" kafka.Kafka "$2" </dev/null >>"$3" 2>&1 9>&- &
}

# pid of a broker if it is alive, else empty: java_pid_of PIDFILE
java_pid_of() {
  local pid
  [ -f "$1" ] || return 0
  pid="$(cat "$1" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka'; then
    echo "$pid"
  fi
}

kafka_pid() { java_pid_of "$KAFKA_PID"; }

kafka_answers() { # metadata round trip (list topics), not just an open port
  kafka_tool_cmd
  timeout 30 "${KAFKA_TOOL_CMD[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$KAFKA_BOOTSTRAP" --list >/dev/null 2>&1
}

# A CA of our own and the broker's certificate from it, in a PKCS12 keystore, as a managed
# broker presents one: clients verify with the CA (scripts/env.sh: KAFKA_TEST_CA). Made once;
# the certificate names localhost and 127.0.0.1.
ensure_kafka_tls() {
  local d="$KAFKA_TLS_DIR"
  [ -f "$d/broker.p12" ] && return 0
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  log "creating a test CA and a broker certificate for Kafka in $d"
  rm -rf "$d.tmp"
  mkdir -p "$d.tmp"
  issue_test_cert "$d.tmp" "webhooks Kafka test CA" broker
  openssl pkcs12 -export -in "$d.tmp/broker.crt" -inkey "$d.tmp/broker.key" -certfile "$d.tmp/ca.crt" \
    -name broker -passout "pass:$KAFKA_KEYSTORE_PASSWORD" -out "$d.tmp/broker.p12" \
    || die "openssl pkcs12 -export failed"
  chmod 600 "$d.tmp/ca.key" "$d.tmp/broker.key"
  rm -rf "$d"
  mv "$d.tmp" "$d"
}

# The SCRAM user of the SASL_SSL listener, set through the plaintext listener once per
# cluster id (a re-formatted data directory forgets it).
ensure_kafka_scram_user() {
  local stamp="$KAFKA_DIR/scram-user.stamp" id
  id="$(sed -n 's/^cluster.id=//p' "$KAFKA_DATA/meta.properties" 2>/dev/null || true)"
  if [ -n "$id" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$id" ]; then return 0; fi
  log "creating the SCRAM-SHA-512 user $KAFKA_SCRAM_USER"
  kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --alter \
    --add-config "SCRAM-SHA-512=[iterations=4096,password=$KAFKA_SCRAM_PASSWORD]" \
    --entity-type users --entity-name "$KAFKA_SCRAM_USER" >&2 \
    || die "could not create the SCRAM user $KAFKA_SCRAM_USER"
  echo "$id" >"$stamp"
}

kafka_up() {
  local pid start
  pid="$(kafka_pid)"
  if [ -n "$pid" ] && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    if port_open "$KAFKA_HOST" "$KAFKA_SECURE_PORT"; then
      ensure_kafka_scram_user
      log "kafka already running (pid $pid) on $KAFKA_BOOTSTRAP and $KAFKA_HOST:$KAFKA_SECURE_PORT (SASL_SSL)"
      return 0
    fi
    # Started by an older version of this script: only a restart adds the listener.
    log "kafka (pid $pid) runs without the SASL_SSL listener on $KAFKA_SECURE_PORT; restarting it with it"
    kafka_down
    pid=""
  fi
  start=$SECONDS
  ensure_java
  ensure_kafka_libs
  ensure_kafka_tls
  write_kafka_config

  if [ -z "$pid" ]; then
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      if kafka_answers; then
        log "a Kafka broker not started by this script already answers on $KAFKA_BOOTSTRAP; using it"
        return 0
      fi
      die "port $KAFKA_PORT is taken by something that is not Kafka"
    fi
    ensure_kafka_formatted
    # keep the log from growing forever
    if [ -f "$KAFKA_LOG" ] && [ "$(stat -c %s "$KAFKA_LOG")" -gt 52428800 ]; then
      mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
    fi
    printf '\n===== %s services.sh: starting Kafka %s =====\n' "$(date -Is)" "$(kafka_version)" >>"$KAFKA_LOG"
    launch_kafka "$KAFKA_PID" "$KAFKA_PROPS" "$KAFKA_LOG" "$KAFKA_DIR" "$KAFKA_HEAP_OPTS"
    log "kafka starting, log: $KAFKA_LOG"
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
      pid="$(kafka_pid)"; [ -n "$pid" ] && break; sleep 0.2
    done
  else
    log "kafka process $pid is running but not answering yet; waiting"
  fi

  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while :; do
    if [ -z "$(kafka_pid)" ]; then
      log "kafka exited during startup; last lines of $KAFKA_LOG:"
      tail -n 60 "$KAFKA_LOG" >&2 || true
      die "kafka failed to start"
    fi
    if port_open "$KAFKA_HOST" "$KAFKA_PORT" && port_open "$KAFKA_HOST" "$KAFKA_SECURE_PORT" && kafka_answers; then
      break
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "kafka did not answer on $KAFKA_BOOTSTRAP within ${KAFKA_START_TIMEOUT}s; last lines of $KAFKA_LOG:"
      tail -n 60 "$KAFKA_LOG" >&2 || true
      die "kafka start timed out (process $(kafka_pid) left running; 'scripts/services.sh down kafka' stops it)"
    fi
    sleep 1
  done
  ensure_kafka_scram_user
  log "kafka $(kafka_version) up on $KAFKA_BOOTSTRAP and $KAFKA_HOST:$KAFKA_SECURE_PORT (SASL_SSL) (pid $(kafka_pid), $((SECONDS - start))s)"
}

# Stops a broker and waits until its port is free: stop_broker NAME PIDFILE PORT SIGNAL
stop_broker() {
  local name="$1" pidfile="$2" port="$3" sig="$4" pid
  pid="$(java_pid_of "$pidfile")"
  if [ -z "$pid" ]; then
    rm -f "$pidfile"
    log "$name is not running"
    return 0
  fi
  log "stopping $name (pid $pid, SIG$sig)"
  kill -"$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      log "$name still running after ${KAFKA_STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  # the listener socket closes with the process; wait briefly so an immediate `up` can bind
  local i=0
  while port_open "$KAFKA_HOST" "$port" && [ $i -lt 25 ]; do sleep 0.2; i=$((i + 1)); done
  rm -f "$pidfile"
  log "$name stopped"
}

kafka_down() { stop_broker kafka "$KAFKA_PID" "$KAFKA_PORT" "${1:-TERM}"; }

kafka_status() {
  local pid
  pid="$(kafka_pid)"
  if [ -n "$pid" ] && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    echo "kafka:    up      $KAFKA_BOOTSTRAP (pid $pid, Kafka $(kafka_version), data $KAFKA_DATA, log $KAFKA_LOG)"
    return 0
  elif [ -n "$pid" ]; then
    echo "kafka:    starting/not answering (pid $pid, log $KAFKA_LOG)"
  elif port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    echo "kafka:    port $KAFKA_PORT open but not managed by this script"
    return 0
  else
    echo "kafka:    down"
  fi
  return 1
}

# ---------------------------------------------------------------- Kafka cluster
# Three combined broker+controller KRaft nodes on 127.0.0.1, the shape users run in
# production (replication factor 3, min.insync.replicas 2), for the failover tests.
# Node N listens on $KAFKA_CLUSTER_PORT_BASE+N (clients) and +100+N (controller).

KAFKA_CLUSTER_DIR="$CACHE/kafka-cluster"
KAFKA_CLUSTER_NODES=3
KAFKA_CLUSTER_PORT_BASE="${KAFKA_CLUSTER_PORT_BASE:-29090}"
KAFKA_CLUSTER_HEAP_OPTS="${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx384m}"
# Three JVMs starting together on a busy 2-core machine took up to 77 s for one node.
KAFKA_CLUSTER_START_TIMEOUT="${KAFKA_CLUSTER_START_TIMEOUT:-180}"

node_port() { echo $((KAFKA_CLUSTER_PORT_BASE + $1)); }
node_controller_port() { echo $((KAFKA_CLUSTER_PORT_BASE + 100 + $1)); }
node_dir() { echo "$KAFKA_CLUSTER_DIR/node-$1"; }
node_pidfile() { echo "$(node_dir "$1")/kafka.pid"; }
node_log() { echo "$CACHE/kafka-cluster-$1.log"; }
node_pid() { java_pid_of "$(node_pidfile "$1")"; }

cluster_nodes() { seq 1 "$KAFKA_CLUSTER_NODES"; }

cluster_bootstrap() {
  local n out=""
  for n in $(cluster_nodes); do out="${out:+$out,}$KAFKA_HOST:$(node_port "$n")"; done
  echo "$out"
}

cluster_voters() {
  local n out=""
  for n in $(cluster_nodes); do out="${out:+$out,}$n@$KAFKA_HOST:$(node_controller_port "$n")"; done
  echo "$out"
}

check_node_numbers() { # N...
  local n
  for n in "$@"; do
    case "$n" in
      [1-9]) [ "$n" -le "$KAFKA_CLUSTER_NODES" ] || die "no cluster node $n (1..$KAFKA_CLUSTER_NODES)" ;;
      *) die "cluster node must be a number 1..$KAFKA_CLUSTER_NODES, not '$n'" ;;
    esac
  done
}

write_cluster_node_config() { # N
  local n="$1" dir
  dir="$(node_dir "$n")"
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/services.sh -- edits are overwritten on every start.
# Node $n of a three-node KRaft cluster; every node is both broker and controller.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(cluster_voters)
listeners=PLAINTEXT://$KAFKA_HOST:$(node_port "$n"),CONTROLLER://$KAFKA_HOST:$(node_controller_port "$n")
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$(node_port "$n")
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data

# What users run: every write on three brokers, acknowledged once two have it, and a
# replica that fell behind never becomes leader (it could have lost acknowledged writes).
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0

# A killed node is fenced, and its partitions get new leaders, after 6 s instead of 9:
# failover tests then spend less time waiting, at the price of more heartbeats.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000

# three of these share 2 cores with everything else
num.network.threads=1
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
log.retention.hours=168
log.segment.bytes=268435456
EOF
}

ensure_cluster_formatted() { # N
  local n="$1" dir id_file="$KAFKA_CLUSTER_DIR/cluster.id"
  dir="$(node_dir "$n")"
  if [ -f "$dir/data/meta.properties" ]; then return 0; fi
  if [ ! -s "$id_file" ]; then
    kafka_tool kafka.tools.StorageTool random-uuid | tail -n1 >"$id_file"
    [ -s "$id_file" ] || die "kafka.tools.StorageTool random-uuid printed nothing"
  fi
  log "formatting KRaft storage of cluster node $n in $dir/data (cluster id $(cat "$id_file"))"
  kafka_tool kafka.tools.StorageTool format --ignore-formatted -t "$(cat "$id_file")" -c "$dir/server.properties" >&2 \
    || die "kafka.tools.StorageTool format failed for cluster node $n"
}

# Starts node N unless it runs; prints the line of its log where this start begins.
cluster_node_launch() { # N
  local n="$1" log_file
  log_file="$(node_log "$n")"
  touch "$log_file"
  if [ -n "$(node_pid "$n")" ]; then echo 0; return 0; fi
  write_cluster_node_config "$n"
  ensure_cluster_formatted "$n"
  if [ "$(stat -c %s "$log_file")" -gt 52428800 ]; then mv -f "$log_file" "$log_file.1"; touch "$log_file"; fi
  wc -l <"$log_file"
  printf '\n===== %s services.sh: starting cluster node %s =====\n' "$(date -Is)" "$n" >>"$log_file"
  launch_kafka "$(node_pidfile "$n")" "$(node_dir "$n")/server.properties" "$log_file" "$(node_dir "$n")" "$KAFKA_CLUSTER_HEAP_OPTS"
  log "cluster node $n starting on $KAFKA_HOST:$(node_port "$n"), log: $log_file"
}

# Waits until node N says it started (after log line FROM) and its port answers. A node can
# only finish starting once a majority of controllers runs, so nodes start together.
cluster_node_wait() { # N FROM
  local n="$1" from="$2" deadline=$((SECONDS + KAFKA_CLUSTER_START_TIMEOUT)) log_file
  log_file="$(node_log "$n")"
  sleep 0.5
  # awk, not `tail | grep -q`: grep quitting early would fail the pipe (pipefail, SIGPIPE)
  until awk -v from="$from" 'NR > from && /Kafka Server started/ { found = 1; exit } END { exit !found }' "$log_file" \
      && port_open "$KAFKA_HOST" "$(node_port "$n")"; do
    if [ -z "$(node_pid "$n")" ]; then
      tail -n 40 "$log_file" >&2 || true
      die "cluster node $n exited during startup (log $log_file)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$log_file" >&2 || true
      die "cluster node $n did not start within ${KAFKA_CLUSTER_START_TIMEOUT}s (log $log_file)"
    fi
    sleep 0.5
  done
}

cluster_start() { # N...
  local n from=() i=0
  ensure_java
  ensure_kafka_libs
  write_kafka_log4j
  for n in "$@"; do from+=("$(cluster_node_launch "$n")"); done
  for n in "$@"; do cluster_node_wait "$n" "${from[$i]}"; i=$((i + 1)); done
  log "cluster nodes $* up"
}

kafka_cluster_up() {
  local start=$SECONDS
  # shellcheck disable=SC2046  # one word per node number
  cluster_start $(cluster_nodes)
  KAFKA_BOOTSTRAP="$(cluster_bootstrap)" kafka_answers || die "the cluster does not answer a metadata request on $(cluster_bootstrap)"
  log "kafka cluster up on $(cluster_bootstrap) ($((SECONDS - start))s)"
}

cluster_stop() { # SIGNAL N...
  local sig="$1" n
  shift
  for n in "$@"; do stop_broker "cluster node $n" "$(node_pidfile "$n")" "$(node_port "$n")" "$sig"; done
}

# All nodes at once: stopped one after another, the last one has lost its controller quorum
# and cannot finish a controlled shutdown, so it would wait out KAFKA_STOP_TIMEOUT.
kafka_cluster_down() {
  local n
  for n in $(cluster_nodes); do cluster_stop "${1:-TERM}" "$n" & done
  wait
}

kafka_cluster_status() {
  local n pid rc=0
  for n in $(cluster_nodes); do
    pid="$(node_pid "$n")"
    if [ -n "$pid" ] && port_open "$KAFKA_HOST" "$(node_port "$n")"; then
      echo "kafka-cluster node $n: up      $KAFKA_HOST:$(node_port "$n") (pid $pid, log $(node_log "$n"))"
    else
      echo "kafka-cluster node $n: down"
      rc=1
    fi
  done
  return $rc
}

# ---------------------------------------------------------------- PostgreSQL

pg_field() { # column of `pg_lsclusters -h` for our cluster: 3=port 4=status 6=datadir 7=logfile
  pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" -v f="$1" '$1==v && $2==c {print $f}'
}

pg_port() { local p; p="$(pg_field 3 2>/dev/null || true)"; echo "${p:-5432}"; }

pg_url() { echo "postgres://$PG_USER:$PG_PASSWORD@$PG_HOST:$(pg_port)/$PG_DB"; }

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    sudo -n -u postgres "$@"
  fi
}

ensure_postgres_installed() {
  if [ -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ] && command -v pg_ctlcluster >/dev/null 2>&1 \
      && command -v psql >/dev/null 2>&1; then
    return 0
  fi
  apt_install "postgresql-$PG_VERSION" postgresql-client-common || apt_install postgresql
}

ensure_postgres_cluster() {
  if [ -n "$(pg_field 1)" ]; then return 0; fi
  need_root_for "creating PostgreSQL cluster $PG_VERSION/$PG_CLUSTER"
  log "creating PostgreSQL cluster $PG_VERSION/$PG_CLUSTER"
  pg_createcluster "$PG_VERSION" "$PG_CLUSTER" >&2 9>&-
}

ensure_postgres_conf() {
  # Tests create a database per test and may run in parallel: allow more connections
  # than the default 100. Applied at (re)start of the server.
  local dir="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/conf.d"
  local f="$dir/50-webhooks.conf"
  [ -d "$dir" ] || return 0
  [ -f "$f" ] && return 0
  [ -w "$dir" ] || return 0
  cat >"$f" <<'EOF'
# Written by scripts/services.sh (webhooks project): local test server settings
listen_addresses = 'localhost'
max_connections = 200
EOF
}

# TLS from a CA of our own, as a managed PostgreSQL presents one: the CA's certificate is
# what clients verify with (sslmode=verify-full&sslrootcert=...; scripts/env.sh exports its
# path as TEST_DATABASE_CA). Made once; the server certificate names localhost and 127.0.0.1.
PG_TLS_DIR="${PG_TLS_DIR:-/etc/postgresql/$PG_VERSION/$PG_CLUSTER/webhooks-tls}"
ensure_postgres_tls() {
  local conf="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/conf.d/60-webhooks-tls.conf"
  [ -d "$(dirname "$conf")" ] || return 0
  if [ ! -f "$PG_TLS_DIR/server.crt" ]; then
    need_root_for "creating a test CA and server certificate for PostgreSQL"
    log "creating a test CA and a server certificate for PostgreSQL in $PG_TLS_DIR"
    mkdir -p "$PG_TLS_DIR"
    issue_test_cert "$PG_TLS_DIR" "webhooks test CA" server
    chown postgres:postgres "$PG_TLS_DIR/server.key" "$PG_TLS_DIR/server.crt"
    chmod 600 "$PG_TLS_DIR/server.key" "$PG_TLS_DIR/ca.key"
    chmod 644 "$PG_TLS_DIR/ca.crt" "$PG_TLS_DIR/server.crt"
    chmod 755 "$PG_TLS_DIR"
  fi
  if [ ! -f "$conf" ]; then
    printf "# Written by scripts/services.sh (webhooks project): TLS from the test CA in %s\nssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" \
      "$PG_TLS_DIR" "$PG_TLS_DIR/server.crt" "$PG_TLS_DIR/server.key" >"$conf"
    # Only the certificate changed: a reload is enough when the server runs.
    if [ "$(pg_field 4)" = "online" ]; then pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" reload >&2 9>&- || true; fi
  fi
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$(pg_port)" -t 2 >/dev/null 2>&1; }

ensure_postgres_role() {
  # fast path: the role can log in over TCP with its password and may create databases
  if [ "$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -h "$PG_HOST" -p "$(pg_port)" -U "$PG_USER" -d "$PG_DB" \
        -tAc 'select rolcreatedb from pg_roles where rolname = current_user' 2>/dev/null || true)" = "t" ]; then
    return 0
  fi
  log "creating role $PG_USER and database $PG_DB"
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$(pg_port)" -d postgres >&2 <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
ALTER DATABASE $PG_DB OWNER TO $PG_USER;
EOF
  PGPASSWORD="$PG_PASSWORD" psql -X -q -h "$PG_HOST" -p "$(pg_port)" -U "$PG_USER" -d "$PG_DB" -tAc 'select 1' >/dev/null \
    || die "password login as $PG_USER over TCP ($PG_HOST) failed; check pg_hba.conf"
}

postgres_up() {
  local start=$SECONDS
  ensure_postgres_installed
  ensure_postgres_cluster
  ensure_postgres_conf
  ensure_postgres_tls
  if [ "$(pg_field 4)" != "online" ]; then
    log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
    if ! pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start >&2 9>&-; then
      tail -n 40 "$(pg_field 7)" >&2 2>/dev/null || true
      die "pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed"
    fi
  fi
  local deadline=$((SECONDS + PG_START_TIMEOUT))
  until pg_ready; do
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$(pg_field 7)" >&2 2>/dev/null || true
      die "PostgreSQL did not become ready on $PG_HOST:$(pg_port) within ${PG_START_TIMEOUT}s"
    fi
    sleep 0.3
  done
  ensure_postgres_role
  log "postgres up: $(pg_url) ($((SECONDS - start))s)"
}

postgres_down() { # [mode]
  local mode="${1:-fast}"
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_field 1)" ]; then
    log "postgres is not installed/created"
    return 0
  fi
  if [ "$(pg_field 4)" = "online" ]; then
    log "stopping PostgreSQL $PG_VERSION/$PG_CLUSTER (mode $mode)"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m "$mode" >&2
  else
    log "postgres is not running"
  fi
}

postgres_status() {
  if command -v pg_isready >/dev/null 2>&1 && pg_ready; then
    echo "postgres: up      $(pg_url)"
    return 0
  fi
  echo "postgres: down"
  return 1
}

# ---------------------------------------------------------------- commands

print_env() {
  echo "export KAFKA_TEST_BROKERS=$KAFKA_BOOTSTRAP"
  echo "export KAFKA_SECURE_TEST_BROKERS=$KAFKA_HOST:$KAFKA_SECURE_PORT"
  echo "export KAFKA_TEST_CA=$KAFKA_TLS_DIR/ca.crt"
  echo "export KAFKA_TEST_SASL_USERNAME=$KAFKA_SCRAM_USER"
  echo "export KAFKA_TEST_SASL_PASSWORD=$KAFKA_SCRAM_PASSWORD"
  echo "export KAFKA_CLUSTER_TEST_BROKERS=$(cluster_bootstrap)"
  echo "export TEST_DATABASE_URL=$(pg_url)"
}

usage() { # [exit code]
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

services_for() { # [svc] -> list
  case "${1:-all}" in
    all | "") echo "postgres kafka" ;;
    kafka) echo kafka ;;
    kafka-cluster) echo kafka_cluster ;;
    postgres | postgresql | pg) echo postgres ;;
    *) die "unknown service '$1' (kafka | kafka-cluster | postgres)" ;;
  esac
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  kafka-start) cmd=up; set -- kafka ;;
  kafka-stop) cmd=down; set -- kafka ;;
  postgres-start) cmd=up; set -- postgres ;;
  postgres-stop) cmd=down; set -- postgres ;;
esac

case "$cmd" in
  up)
    take_lock
    for s in $(services_for "${1:-}"); do "${s}_up"; done
    if [ -z "${1:-}" ] || [ "$(services_for "$1")" = kafka ]; then log "kafka log: $KAFKA_LOG"; fi
    print_env
    ;;
  down)
    take_lock
    # everything: stop Kafka first (reverse order of up)
    case "$(services_for "${1:-}")" in
      kafka) kafka_down ;;
      kafka_cluster) shift; check_node_numbers "$@"; if [ $# -gt 0 ]; then cluster_stop TERM "$@"; else kafka_cluster_down TERM; fi ;;
      postgres) postgres_down ;;
      *) kafka_down; postgres_down ;;
    esac
    ;;
  restart)
    take_lock
    for s in $(services_for "${1:-}"); do "${s}_down"; "${s}_up"; done
    ;;
  kill)
    take_lock
    case "$(services_for "${1:-}")" in
      kafka) kafka_down KILL ;;
      kafka_cluster) shift; check_node_numbers "$@"; if [ $# -gt 0 ]; then cluster_stop KILL "$@"; else kafka_cluster_down KILL; fi ;;
      postgres) postgres_down immediate ;;
      *) kafka_down KILL; postgres_down immediate ;;
    esac
    ;;
  start)
    [ "${1:-}" = kafka-cluster ] && [ $# -ge 2 ] || die "usage: $0 start kafka-cluster N [N...]"
    shift
    check_node_numbers "$@"
    take_lock
    cluster_start "$@"
    ;;
  status)
    rc=0
    postgres_status || rc=1
    kafka_status || rc=1
    # optional: reported, but its absence does not fail the default services' status
    if [ -d "$KAFKA_CLUSTER_DIR" ]; then kafka_cluster_status || true; fi
    exit $rc
    ;;
  logs)
    svc=all; n=100
    for a in "$@"; do
      case "$a" in
        '' ) ;;
        *[!0-9]*) svc="$a" ;;
        *) n="$a" ;;
      esac
    done
    for s in $(services_for "$svc"); do
      case "$s" in
        kafka)
          echo "===== Kafka log: $KAFKA_LOG (last $n lines) ====="
          tail -n "$n" "$KAFKA_LOG" 2>/dev/null || echo "(no Kafka log yet)"
          ;;
        kafka_cluster)
          for node in $(cluster_nodes); do
            echo "===== Kafka cluster node $node log: $(node_log "$node") (last $n lines) ====="
            tail -n "$n" "$(node_log "$node")" 2>/dev/null || echo "(no log yet)"
          done
          ;;
        postgres)
          f="$( (command -v pg_lsclusters >/dev/null 2>&1 && pg_field 7) || true)"
          f="${f:-/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log}"
          echo "===== PostgreSQL log: $f (last $n lines) ====="
          tail -n "$n" "$f" 2>/dev/null || echo "(no PostgreSQL log readable)"
          ;;
      esac
    done
    ;;
  env)
    print_env
    ;;
  kafka-tool)
    [ $# -ge 1 ] || die "usage: $0 kafka-tool CLASS [ARGS...]"
    ensure_java; ensure_kafka_libs
    [ -f "$KAFKA_TOOLS_LOG4J" ] || write_kafka_config
    kafka_tool "$@"
    ;;
  kafka-topics)
    ensure_java; ensure_kafka_libs
    [ -f "$KAFKA_TOOLS_LOG4J" ] || write_kafka_config
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" "$@"
    ;;
  -h | --help | help) usage 0 ;;
  "") usage ;;
  *) log "unknown command '$cmd'"; usage ;;
esac
