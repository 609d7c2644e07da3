#!/usr/bin/env bash
# Start/stop real Kafka (KRaft, single node) and ClickHouse on loopback for tests and development,
# and, on request, a Kafka cluster of several brokers (the replication tests').
#
#   services.sh up     [kafka|clickhouse|cluster]  start (no-op when already running and healthy)
#   services.sh down   [kafka|clickhouse|cluster]  stop: SIGTERM, SIGKILL after a bounded wait; data kept
#                                          (without a service: all of them, the cluster too)
#   services.sh status [kafka|clickhouse|cluster]  print state (exit 0: it only reports; 1 on a usage error)
#   services.sh ready  [kafka|clickhouse|cluster]  print state; exit 0 iff all (selected) are up (for scripts)
#   services.sh env    [cluster]           print shell exports (eval "$(services.sh env)")
#   services.sh reset  [kafka|clickhouse|cluster]  down + delete data, config and logs
#   services.sh node-down N [kill]         stop broker N (1..) of the cluster: SIGTERM (controlled
#                                          shutdown), or SIGKILL with "kill"; its data is kept
#   services.sh node-up N                  start broker N of the cluster again and wait until it is back
#   services.sh kafka-tool CLASS [ARGS]    run a Kafka CLI class from the cached jars, e.g.
#                                          org.apache.kafka.tools.TopicCommand --bootstrap-server ... --list
#
# "all" (no service named) is kafka and clickhouse for up, status, ready and reset; the cluster
# only starts when asked for by name: services.sh up cluster. Each of its brokers is a combined
# KRaft controller and broker with its own ports and data under $ENGAGE_SERVICES_DIR/kafka-nodeN;
# the internal topics (consumer offsets, transactions) are replicated on all of them (at most 3)
# and min.insync.replicas is one less, so the cluster keeps working with one broker down.
#
# Environment (all optional):
#   ENGAGE_SERVICES_DIR  state dir: data, pid files, logs  (default: <repo>/.services)
#   ENGAGE_CACHE_DIR     Kafka jar cache                   (default: ${XDG_CACHE_HOME:-~/.cache}/openengage)
#   ENGAGE_KAFKA_PORT=19092  ENGAGE_KAFKA_CONTROLLER_PORT=19093  ENGAGE_KAFKA_HEAP=512m
#   ENGAGE_KAFKA_VERSION=4.4.0
#   ENGAGE_KAFKA_RETENTION_CHECK_MS=300000  how often the broker applies retention (Kafka's default;
#                        tests of retention start a broker of their own with it small)
#   ENGAGE_CLICKHOUSE_PORT=19000 (native)  ENGAGE_CLICKHOUSE_HTTP_PORT=18123
#   ENGAGE_SERVICES_TIMEOUT=90   seconds to wait for a service to become ready
#   The cluster: ENGAGE_KAFKA_CLUSTER_NODES=3  ENGAGE_KAFKA_CLUSTER_HEAP=256m (each broker)
#   ENGAGE_KAFKA_CLUSTER_PORTS=19192,19193,19194  ENGAGE_KAFKA_CLUSTER_CONTROLLER_PORTS=19292,19293,19294
#                        (one per broker; generated as base+i from the first when only one is given)
#   ENGAGE_KAFKA_CLUSTER_SESSION_TIMEOUT_MS=9000  how long the controllers wait for a broker that
#                        stopped heart-beating (one killed) before fencing it and moving its partitions
#
# Secure listeners (off unless both of these are set; the shared instance runs without them):
#   ENGAGE_TLS_DIR          a folder with ca.pem, server.pem and server-key.pem (PKCS#8, unencrypted),
#                           the server certificate valid for 127.0.0.1 and localhost
#   ENGAGE_SECURE_PASSWORD  the password of the user "engage" on both services ([A-Za-z0-9._-]+)
#   ENGAGE_KAFKA_SASL_SSL_PORT=19094        the single broker also listens SASL_SSL here: SASL over
#                           TLS, mechanisms SCRAM-SHA-512 (credential stored at format time with
#                           kafka-storage format --add-scram) and PLAIN (the listener's JAAS config).
#                           The PLAINTEXT listener stays on loopback for the controller and
#                           inter-broker traffic and for the tools; the cluster has no SASL_SSL.
#                           A data folder formatted without the SCRAM user keeps none: reset first.
#   ENGAGE_CLICKHOUSE_SECURE_PORT=19440 (native over TLS)  ENGAGE_CLICKHOUSE_HTTPS_PORT=18443
#                           with the same certificate; user "engage" (that password, as SHA-256)
#                           may do everything; "default" keeps working on the plain ports.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPLOY_DIR=$(dirname "$SCRIPT_DIR")
REPO=$(dirname "$DEPLOY_DIR")
STATE=$(realpath -m "${ENGAGE_SERVICES_DIR:-$REPO/.services}")
CACHE=$(realpath -m "${ENGAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/openengage}")
HOST=127.0.0.1
KAFKA_VERSION=${ENGAGE_KAFKA_VERSION:-4.4.0}
KAFKA_PORT=${ENGAGE_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${ENGAGE_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_HEAP=${ENGAGE_KAFKA_HEAP:-512m}
KAFKA_RETENTION_CHECK_MS=${ENGAGE_KAFKA_RETENTION_CHECK_MS:-300000}
[[ $KAFKA_RETENTION_CHECK_MS =~ ^[1-9][0-9]*$ ]] || { echo "ENGAGE_KAFKA_RETENTION_CHECK_MS=$KAFKA_RETENTION_CHECK_MS: give milliseconds, e.g. 300000" >&2; exit 2; }
KAFKA_HOME=$CACHE/kafka-$KAFKA_VERSION
CH_PORT=${ENGAGE_CLICKHOUSE_PORT:-19000}
CH_HTTP_PORT=${ENGAGE_CLICKHOUSE_HTTP_PORT:-18123}
READY_TIMEOUT=${ENGAGE_SERVICES_TIMEOUT:-90}
TLS_DIR=${ENGAGE_TLS_DIR:-}
SECURE_PASSWORD=${ENGAGE_SECURE_PASSWORD:-}
SECURE_USER=engage
KAFKA_SASL_SSL_PORT=${ENGAGE_KAFKA_SASL_SSL_PORT:-19094}
CH_SECURE_PORT=${ENGAGE_CLICKHOUSE_SECURE_PORT:-19440}
CH_HTTPS_PORT=${ENGAGE_CLICKHOUSE_HTTPS_PORT:-18443}
SECURE=0
if [[ -n $TLS_DIR || -n $SECURE_PASSWORD ]]; then
  [[ -n $TLS_DIR && -n $SECURE_PASSWORD ]] \
    || { echo "secure listeners: set both ENGAGE_TLS_DIR and ENGAGE_SECURE_PASSWORD (or neither)" >&2; exit 2; }
  [[ $SECURE_PASSWORD =~ ^[A-Za-z0-9._-]+$ ]] \
    || { echo "ENGAGE_SECURE_PASSWORD: use only letters, digits, '.', '_' and '-' (it goes into Kafka's JAAS and SCRAM settings unquoted)" >&2; exit 2; }
  TLS_DIR=$(realpath -m "$TLS_DIR")
  for f in ca.pem server.pem server-key.pem; do
    [[ -r $TLS_DIR/$f ]] || { echo "ENGAGE_TLS_DIR=$TLS_DIR: no readable $f there (need ca.pem, server.pem, server-key.pem)" >&2; exit 2; }
  done
  SECURE=1
fi
STOP_TIMEOUT=30

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- generic helpers
as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

apt_install() {
  log "installing Debian packages: $* (first use only)"
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  as_root "${install[@]}" >&2 || { as_root apt-get update -q >&2 && as_root "${install[@]}" >&2; } \
    || die "apt-get install $* failed"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

ensure_port_free() { # port env-var-name
  port_open "$1" || return 0
  local who=""
  command -v ss >/dev/null && who=$(ss -ltnpH "sport = :$1" 2>/dev/null | head -n1)
  die "port $HOST:$1 is already in use by another process${who:+ ($who)}; stop it or set $2"
}

svc_dir() { echo "$STATE/$1"; }
pid_file() { echo "$STATE/$1/$1.pid"; }
# A string only our process of that service has on its command line (guards against pid reuse).
svc_marker() {
  case $1 in
    kafka) echo "kafka.Kafka $STATE/kafka/server.properties" ;;
    clickhouse) echo "--config-file=$STATE/clickhouse/config.xml" ;;
    kafka-node*) echo "kafka.Kafka $STATE/$1/server.properties" ;;
  esac
}

cmdline_has() { # pid marker
  local args=()
  mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 1
  [[ " ${args[*]} " == *"$2"* ]]
}

# Prints the pid of our running instance of $1; cleans stale pid files, adopts orphans.
pid_of() {
  local svc=$1 pf marker pid d
  pf=$(pid_file "$svc"); marker=$(svc_marker "$svc")
  if [[ -f $pf ]]; then
    pid=$(<"$pf")
    if [[ $pid =~ ^[0-9]+$ ]] && cmdline_has "$pid" "$marker"; then echo "$pid"; return 0; fi
    log "$svc: removing stale pid file ($pid)"; rm -f "$pf"
  fi
  for d in /proc/[0-9]*; do   # pid file lost but process alive (e.g. started by hand)
    pid=${d#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if cmdline_has "$pid" "$marker"; then echo "$pid" >"$pf"; echo "$pid"; return 0; fi
  done
  return 1
}

# Launch "$@" detached in its own session; records the pid. $1=svc $2=stdout log, rest=command.
launch() {
  local svc=$1 out=$2; shift 2
  setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
  echo $! >"$(pid_file "$svc")"
}

rotate_logs() { local f; for f in "$@"; do [[ -f $f ]] && mv -f "$f" "$f.prev"; done; return 0; }

show_logs() { # files...: print the tail of each non-empty log
  local f
  for f in "$@"; do [[ -s $f ]] && { log "--- last lines of $f"; tail -n 30 "$f" >&2; }; done; return 0
}

# wait_ready svc check-function logfiles...
wait_ready() {
  local svc=$1 check=$2 deadline=$((SECONDS + READY_TIMEOUT)); shift 2
  while ((SECONDS < deadline)); do
    pid_of "$svc" >/dev/null || { show_logs "$@"; die "$svc exited during startup"; }
    "$check" && return 0
    sleep 1
  done
  show_logs "$@"
  die "$svc not ready after ${READY_TIMEOUT}s (left running; see '$0 down $svc')"
}

stop_svc() {
  local svc=$1 pid i
  if ! pid=$(pid_of "$svc"); then log "$svc: not running"; return 0; fi
  log "$svc: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$svc: still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$(pid_file "$svc")"
  log "$svc: stopped"
}

# ---------------------------------------------------------------- Kafka
ensure_java() { command -v java >/dev/null || apt_install openjdk-17-jre-headless; }

kafka_fetch() { # download jars once into $KAFKA_HOME/libs; reused while the pom is unchanged
  local pom=$DEPLOY_DIR/kafka/pom.xml stamp
  stamp="$KAFKA_VERSION $(sha256sum <"$pom" | cut -c1-16)"
  [[ -f $KAFKA_HOME/.complete && $(<"$KAFKA_HOME/.complete") == "$stamp" ]] && return 0
  command -v mvn >/dev/null || apt_install maven
  log "fetching Kafka $KAFKA_VERSION jars with Maven into $KAFKA_HOME (first use only)"
  rm -rf "$KAFKA_HOME.tmp"; mkdir -p "$KAFKA_HOME.tmp"
  mvn -B -q -Dstyle.color=never -f "$pom" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$KAFKA_HOME.tmp/libs" 2>&1 \
    | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2 \
    || die "maven could not fetch Kafka $KAFKA_VERSION (see output above)"
  rm -rf "$KAFKA_HOME"; mv "$KAFKA_HOME.tmp" "$KAFKA_HOME"; echo "$stamp" >"$KAFKA_HOME/.complete"
}

kafka_java() { java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$KAFKA_HOME/libs/*" "$@"; }

kafka_write_config() {
  local d; d=$(svc_dir kafka)
  cat >"$d/server.properties" <<EOF
# Generated by deploy/services/services.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT$( ((SECURE)) && echo ",SASL_SSL://$HOST:$KAFKA_SASL_SSL_PORT")
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT$( ((SECURE)) && echo ",SASL_SSL://$HOST:$KAFKA_SASL_SSL_PORT")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT$( ((SECURE)) && echo ",SASL_SSL:SASL_SSL")
log.dirs=$d/data
num.partitions=8
# auto.create.topics.enable stays at Kafka's default (true).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.check.interval.ms=$KAFKA_RETENTION_CHECK_MS
# The first retention check comes after this delay (Kafka's default: 30 s), or sooner when checks are frequent.
log.initial.task.delay.ms=$((KAFKA_RETENTION_CHECK_MS < 30000 ? KAFKA_RETENTION_CHECK_MS : 30000))
EOF
  ((SECURE)) || return 0
  # The key file holds the private key (PKCS#8) and then the certificate: a PEM "keystore".
  cat "$TLS_DIR/server-key.pem" "$TLS_DIR/server.pem" >"$d/keystore.pem"
  chmod 600 "$d/keystore.pem"
  cat >>"$d/server.properties" <<EOF
# SASL_SSL: TLS with the certificate of $TLS_DIR; user $SECURE_USER by SCRAM-SHA-512 (stored at
# format time) or PLAIN (listed in the JAAS config below). No client certificates asked for.
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$d/keystore.pem
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SECURE_USER="$SECURE_PASSWORD";
EOF
}

kafka_ready() { # broker accepts connections and answers a metadata request
  port_open "$KAFKA_PORT" && timeout 20 java -Xmx128m -XX:TieredStopAtLevel=1 -cp "$KAFKA_HOME/libs/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" --list >/dev/null 2>&1
}

kafka_up() {
  local d pid; d=$(svc_dir kafka)
  if pid=$(pid_of kafka); then
    port_open "$KAFKA_PORT" && { log "kafka: already running (pid $pid) on $HOST:$KAFKA_PORT"; return 0; }
    log "kafka: process $pid alive but not answering yet; waiting"
    ensure_java; wait_ready kafka kafka_ready "$d/logs/kafka.out" "$d/logs/server.log"; return 0
  fi
  ensure_port_free "$KAFKA_PORT" ENGAGE_KAFKA_PORT
  ensure_port_free "$KAFKA_CONTROLLER_PORT" ENGAGE_KAFKA_CONTROLLER_PORT
  ((SECURE)) && ensure_port_free "$KAFKA_SASL_SSL_PORT" ENGAGE_KAFKA_SASL_SSL_PORT
  ensure_java; kafka_fetch
  mkdir -p "$d/data" "$d/logs"
  kafka_write_config
  if [[ ! -f $d/data/meta.properties ]]; then
    # A Kafka cluster id is 16 random bytes in URL-safe base64. One that
    # starts with "-" reads as an option to the storage tool (1 start in
    # 64 failed so): draw again until it does not.
    local cluster_id=-
    while [ "${cluster_id#-}" != "$cluster_id" ]; do
      cluster_id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    log "kafka: formatting KRaft storage in $d/data (cluster id $cluster_id)"
    local scram=()
    ((SECURE)) && scram=(--add-scram "SCRAM-SHA-512=[name=$SECURE_USER,password=$SECURE_PASSWORD]")
    kafka_java -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$d/logs" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$d/server.properties" "${scram[@]}" >>"$d/logs/format.log" 2>&1 \
      || { tail -n 20 "$d/logs/format.log" >&2; die "kafka storage format failed"; }
  fi
  rotate_logs "$d/logs/kafka.out" "$d/logs/server.log"
  log "kafka: starting $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT$( ((SECURE)) && echo ", SASL_SSL $KAFKA_SASL_SSL_PORT"))"
  launch kafka "$d/logs/kafka.out" java -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$d/logs" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$d/server.properties"
  wait_ready kafka kafka_ready "$d/logs/kafka.out" "$d/logs/server.log"
  log "kafka: ready on $HOST:$KAFKA_PORT (pid $(<"$(pid_file kafka)"))"
}

# ---------------------------------------------------------------- Kafka cluster (several brokers)
# Node i (1..N) is the service kafka-node$i: its own folder, ports, pid file and log, started and
# stopped as the single broker is. All nodes are formatted with one cluster id, kept in
# $STATE/kafka-cluster.id; the quorum's voters are all of them (a majority must be up to start).
CLUSTER_NODES=${ENGAGE_KAFKA_CLUSTER_NODES:-3}
[[ $CLUSTER_NODES =~ ^[1-9]$ ]] || { echo "ENGAGE_KAFKA_CLUSTER_NODES=$CLUSTER_NODES: give 1 to 9" >&2; exit 2; }
CLUSTER_HEAP=${ENGAGE_KAFKA_CLUSTER_HEAP:-256m}
CLUSTER_SESSION_TIMEOUT_MS=${ENGAGE_KAFKA_CLUSTER_SESSION_TIMEOUT_MS:-9000}
[[ $CLUSTER_SESSION_TIMEOUT_MS =~ ^[1-9][0-9]*$ ]] || { echo "ENGAGE_KAFKA_CLUSTER_SESSION_TIMEOUT_MS=$CLUSTER_SESSION_TIMEOUT_MS: give milliseconds" >&2; exit 2; }

cluster_ports() { # list-from-env default-base: prints N ports, one a line
  local list=$1 base=$2 i ports=()
  IFS=, read -r -a ports <<<"$list"
  if ((${#ports[@]} == 0)); then ports=("$base"); fi
  if ((${#ports[@]} == 1)); then for ((i = 1; i < CLUSTER_NODES; i++)); do ports+=($((ports[0] + i))); done; fi
  ((${#ports[@]} == CLUSTER_NODES)) || { echo "give $CLUSTER_NODES ports, not '$list'" >&2; exit 2; }
  for i in "${ports[@]}"; do [[ $i =~ ^[0-9]+$ ]] || { echo "port '$i' is not a number" >&2; exit 2; }; echo "$i"; done
}
mapfile -t CLUSTER_PORTS < <(cluster_ports "${ENGAGE_KAFKA_CLUSTER_PORTS:-}" 19192)
mapfile -t CLUSTER_CONTROLLER_PORTS < <(cluster_ports "${ENGAGE_KAFKA_CLUSTER_CONTROLLER_PORTS:-}" 19292)
((${#CLUSTER_PORTS[@]} == CLUSTER_NODES && ${#CLUSTER_CONTROLLER_PORTS[@]} == CLUSTER_NODES)) \
  || { echo "ENGAGE_KAFKA_CLUSTER_PORTS and ENGAGE_KAFKA_CLUSTER_CONTROLLER_PORTS: give $CLUSTER_NODES ports each (or one, the first)" >&2; exit 2; }

node_port() { echo "${CLUSTER_PORTS[$(($1 - 1))]}"; }
node_controller_port() { echo "${CLUSTER_CONTROLLER_PORTS[$(($1 - 1))]}"; }
cluster_bootstrap() { local i out=(); for ((i = 1; i <= CLUSTER_NODES; i++)); do out+=("$HOST:$(node_port "$i")"); done; (IFS=,; echo "${out[*]}"); }
check_node() { [[ $1 =~ ^[1-9]$ ]] && (($1 <= CLUSTER_NODES)) || die "no broker '$1' in a cluster of $CLUSTER_NODES (1..$CLUSTER_NODES)"; }

node_write_config() { # i
  local i=$1 d voters="" j repl min_isr
  d=$(svc_dir "kafka-node$i")
  for ((j = 1; j <= CLUSTER_NODES; j++)); do voters+="${voters:+,}$j@$HOST:$(node_controller_port "$j")"; done
  repl=$((CLUSTER_NODES < 3 ? CLUSTER_NODES : 3))
  min_isr=$((repl > 1 ? repl - 1 : 1))
  cat >"$d/server.properties" <<EOC
# Generated by deploy/services/services.sh on every start; edit the script, not this file.
# Broker $i of a cluster of $CLUSTER_NODES, each a combined KRaft controller and broker.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(node_port "$i"),CONTROLLER://$HOST:$(node_controller_port "$i")
advertised.listeners=PLAINTEXT://$HOST:$(node_port "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$d/data
num.partitions=8
# Internal topics replicated on $repl brokers, writes to them acknowledged by $min_isr: the group
# coordinator and its committed offsets survive one broker down.
offsets.topic.replication.factor=$repl
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$repl
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$repl
share.coordinator.state.topic.min.isr=$min_isr
# For topics created without these settings (engage topics sets them on its own).
default.replication.factor=$repl
min.insync.replicas=$min_isr
unclean.leader.election.enable=false
broker.session.timeout.ms=$CLUSTER_SESSION_TIMEOUT_MS
broker.heartbeat.interval.ms=$((CLUSTER_SESSION_TIMEOUT_MS / 4 < 2000 ? CLUSTER_SESSION_TIMEOUT_MS / 4 : 2000))
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.retention.check.interval.ms=$KAFKA_RETENTION_CHECK_MS
log.initial.task.delay.ms=$((KAFKA_RETENTION_CHECK_MS < 30000 ? KAFKA_RETENTION_CHECK_MS : 30000))
EOC
}

# node_registered i: node i answers, and its metadata lists every broker of the cluster.
node_registered() {
  local n
  port_open "$(node_port "$1")" || return 1
  n=$(timeout 30 java -Xmx128m -XX:TieredStopAtLevel=1 -cp "$KAFKA_HOME/libs/*" \
    org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$HOST:$(node_port "$1")" 2>/dev/null \
    | grep -c ' (id: ' || true)
  [[ $n == "$CLUSTER_NODES" ]]
}

# node_start i: format its storage on first use, write its config and launch it (no wait).
node_start() {
  local i=$1 svc=kafka-node$1 d pid cluster_id
  d=$(svc_dir "$svc")
  if pid=$(pid_of "$svc"); then log "$svc: already running (pid $pid) on $HOST:$(node_port "$i")"; return 0; fi
  ensure_port_free "$(node_port "$i")" ENGAGE_KAFKA_CLUSTER_PORTS
  ensure_port_free "$(node_controller_port "$i")" ENGAGE_KAFKA_CLUSTER_CONTROLLER_PORTS
  mkdir -p "$d/data" "$d/logs"
  node_write_config "$i"
  if [[ ! -f $d/data/meta.properties ]]; then
    cluster_id=$(<"$STATE/kafka-cluster.id")
    log "$svc: formatting KRaft storage in $d/data (cluster id $cluster_id)"
    kafka_java -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$d/logs" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$d/server.properties" >>"$d/logs/format.log" 2>&1 \
      || { tail -n 20 "$d/logs/format.log" >&2; die "$svc: kafka storage format failed"; }
  fi
  rotate_logs "$d/logs/kafka.out" "$d/logs/server.log"
  log "$svc: starting on $HOST:$(node_port "$i") (controller $(node_controller_port "$i"))"
  launch "$svc" "$d/logs/kafka.out" java -Xmx"$CLUSTER_HEAP" -Xms64m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:TieredStopAtLevel=1 -XX:ParallelGCThreads=1 -XX:ConcGCThreads=1 -XX:CICompilerCount=1 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$d/logs" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$d/server.properties"
}

# nodes_wait i...: wait until each node answers with every broker registered.
nodes_wait() {
  local deadline=$((SECONDS + READY_TIMEOUT)) i left=("$@") still d
  while ((${#left[@]} > 0)); do
    still=()
    for i in "${left[@]}"; do
      d=$(svc_dir "kafka-node$i")
      pid_of "kafka-node$i" >/dev/null || { show_logs "$d/logs/kafka.out" "$d/logs/server.log"; die "kafka-node$i exited during startup"; }
      node_registered "$i" || still+=("$i")
    done
    left=("${still[@]}")
    ((${#left[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      for i in "${left[@]}"; do d=$(svc_dir "kafka-node$i"); show_logs "$d/logs/kafka.out" "$d/logs/server.log"; done
      die "cluster: broker(s) ${left[*]} not ready after ${READY_TIMEOUT}s (left running; see '$0 down cluster')"
    fi
    sleep 1
  done
}

cluster_up() {
  local i
  ensure_java; kafka_fetch
  mkdir -p "$STATE"
  if [[ ! -f $STATE/kafka-cluster.id ]]; then
    local cluster_id=-   # as kafka_up: an id starting with "-" reads as an option
    while [ "${cluster_id#-}" != "$cluster_id" ]; do
      cluster_id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    echo "$cluster_id" >"$STATE/kafka-cluster.id"
  fi
  for ((i = 1; i <= CLUSTER_NODES; i++)); do node_start "$i"; done
  local all=(); for ((i = 1; i <= CLUSTER_NODES; i++)); do all+=("$i"); done
  nodes_wait "${all[@]}"
  log "cluster: $CLUSTER_NODES brokers ready on $(cluster_bootstrap)"
}

# cluster_down: SIGTERM to every broker at once (one after the other, the last ones would wait for
# a quorum that is gone), SIGKILL to those still alive after 15 s (what they wrote is in the page
# cache: a killed process loses nothing the kernel has).
cluster_down() {
  local i pid pids=() deadline
  for ((i = 1; i <= CLUSTER_NODES; i++)); do
    if pid=$(pid_of "kafka-node$i"); then
      log "kafka-node$i: stopping (pid $pid)"; kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid")
    fi
    rm -f "$(pid_file "kafka-node$i")"
  done
  ((${#pids[@]} > 0)) || { log "cluster: not running"; return 0; }
  deadline=$((SECONDS + 15))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      log "cluster: pid $pid still alive after 15s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  done
  log "cluster: stopped"
}

# node_down i [kill]: SIGTERM lets the broker hand its leaderships over (controlled shutdown);
# SIGKILL is a crash, which the controllers notice after the session timeout.
node_down() {
  local i=$1 how=${2:-term} pid
  check_node "$i"
  case $how in
    term) stop_svc "kafka-node$i" ;;
    kill)
      if ! pid=$(pid_of "kafka-node$i"); then log "kafka-node$i: not running"; return 0; fi
      log "kafka-node$i: killing (pid $pid)"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      rm -f "$(pid_file "kafka-node$i")"
      log "kafka-node$i: killed" ;;
    *) die "node-down $i $how: say nothing (SIGTERM) or kill (SIGKILL)" ;;
  esac
}

node_up() { check_node "$1"; ensure_java; kafka_fetch; node_start "$1"; nodes_wait "$1"; log "kafka-node$1: ready on $HOST:$(node_port "$1")"; }

cluster_running() { local i; for ((i = 1; i <= CLUSTER_NODES; i++)); do pid_of "kafka-node$i" >/dev/null && return 0; done; return 1; }

status_cluster() {
  local i rc=0 pid
  for ((i = 1; i <= CLUSTER_NODES; i++)); do
    if pid=$(pid_of "kafka-node$i"); then
      if port_open "$(node_port "$i")"; then echo "kafka-node$i: up (pid $pid, $HOST:$(node_port "$i"))"
      else echo "kafka-node$i: starting or unhealthy (pid $pid alive, $HOST:$(node_port "$i") not answering)"; rc=1; fi
    else echo "kafka-node$i: down"; rc=1; fi
  done
  return $rc
}

# ---------------------------------------------------------------- ClickHouse
CH_SERVER=""
ensure_clickhouse() {
  CH_SERVER=$(command -v clickhouse-server || true)
  [[ -z $CH_SERVER && -x /usr/sbin/clickhouse-server ]] && CH_SERVER=/usr/sbin/clickhouse-server
  if [[ -z $CH_SERVER ]] || ! command -v clickhouse-client >/dev/null; then
    apt_install clickhouse-server clickhouse-client
    CH_SERVER=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)
  fi
}

ch_ready() { timeout 5 clickhouse-client --host "$HOST" --port "$CH_PORT" -q 'SELECT 1' >/dev/null 2>&1; }

ch_up() {
  local d pid t; d=$(svc_dir clickhouse)
  if pid=$(pid_of clickhouse); then
    port_open "$CH_PORT" && { log "clickhouse: already running (pid $pid) on $HOST:$CH_PORT"; return 0; }
    log "clickhouse: process $pid alive but not answering yet; waiting"
    wait_ready clickhouse ch_ready "$d/logs/stdout.log" "$d/logs/clickhouse-server.err.log"; return 0
  fi
  ensure_port_free "$CH_PORT" ENGAGE_CLICKHOUSE_PORT
  ensure_port_free "$CH_HTTP_PORT" ENGAGE_CLICKHOUSE_HTTP_PORT
  if ((SECURE)); then
    ensure_port_free "$CH_SECURE_PORT" ENGAGE_CLICKHOUSE_SECURE_PORT
    ensure_port_free "$CH_HTTPS_PORT" ENGAGE_CLICKHOUSE_HTTPS_PORT
  fi
  ensure_clickhouse
  mkdir -p "$d/data" "$d/logs"
  # The lines between <!-- secure:begin --> and <!-- secure:end --> in the templates are kept only
  # with the secure listeners on.
  local keep_secure='/<!-- secure:begin -->/,/<!-- secure:end -->/d' hash=""
  if ((SECURE)); then
    keep_secure='/<!-- secure:\(begin\|end\) -->/d'
    hash=$(printf '%s' "$SECURE_PASSWORD" | sha256sum | cut -c1-64)
  fi
  for t in config.xml users.xml; do
    sed -e "$keep_secure" -e "s#@DATA_DIR@#$d/data#g; s#@LOG_DIR@#$d/logs#g" \
      -e "s#@TCP_PORT@#$CH_PORT#g; s#@HTTP_PORT@#$CH_HTTP_PORT#g" \
      -e "s#@TCP_PORT_SECURE@#$CH_SECURE_PORT#g; s#@HTTPS_PORT@#$CH_HTTPS_PORT#g; s#@TLS_DIR@#$TLS_DIR#g" \
      -e "s#@SECURE_USER@#$SECURE_USER#g; s#@SECURE_PASSWORD_SHA256@#$hash#g" \
      "$DEPLOY_DIR/clickhouse/$t" >"$d/$t"
  done
  rotate_logs "$d/logs/stdout.log" "$d/logs/clickhouse-server.log" "$d/logs/clickhouse-server.err.log"
  log "clickhouse: starting $CH_SERVER on $HOST:$CH_PORT (http $CH_HTTP_PORT)"
  launch clickhouse "$d/logs/stdout.log" "$CH_SERVER" --config-file="$d/config.xml"
  wait_ready clickhouse ch_ready "$d/logs/stdout.log" "$d/logs/clickhouse-server.err.log"
  log "clickhouse: ready on $HOST:$CH_PORT (pid $(<"$(pid_file clickhouse)"), version $(
    clickhouse-client --host "$HOST" --port "$CH_PORT" -q 'SELECT version()' 2>/dev/null || echo '?'))"
}

# ---------------------------------------------------------------- commands
svc_port() { case $1 in kafka) echo "$KAFKA_PORT" ;; clickhouse) echo "$CH_PORT" ;; esac; }

status_one() {
  local svc=$1 port pid; port=$(svc_port "$svc")
  if pid=$(pid_of "$svc"); then
    if port_open "$port"; then echo "$svc: up (pid $pid, $HOST:$port)"; return 0; fi
    echo "$svc: starting or unhealthy (pid $pid alive, $HOST:$port not answering)"; return 1
  fi
  if port_open "$port"; then echo "$svc: down ($HOST:$port is used by another process)"; else echo "$svc: down"; fi
  return 1
}

lock() { mkdir -p "$STATE"; exec 9>"$STATE/.lock"; flock -w 300 9 || die "another services.sh holds $STATE/.lock"; }

main() {
  local cmd=${1:-} target=${2:-all} svcs rc=0 s i
  if [[ $cmd == kafka-tool ]]; then
    shift; [[ $# -gt 0 ]] || die "usage: $0 kafka-tool CLASS [ARGS...]"
    ensure_java; kafka_fetch; kafka_java "$@"; return
  fi
  case $cmd in
    node-down) [[ $# -ge 2 ]] || die "usage: $0 node-down N [kill]"; lock; node_down "$2" "${3:-term}"; return ;;
    node-up) [[ $# -ge 2 ]] || die "usage: $0 node-up N"; lock; node_up "$2"; return ;;
  esac
  case $target in all) svcs=(kafka clickhouse) ;; kafka | clickhouse | cluster) svcs=("$target") ;;
    *) die "unknown service '$target' (kafka|clickhouse|cluster)" ;; esac
  case $cmd in
    up) lock; for s in "${svcs[@]}"; do case $s in kafka) kafka_up ;; clickhouse) ch_up ;; cluster) cluster_up ;; esac; done ;;
    down)
      lock
      for s in "${svcs[@]}"; do case $s in cluster) cluster_down ;; *) stop_svc "$s" ;; esac; done
      # Without a service named, the cluster stops too, when it runs.
      if [[ $target == all ]] && cluster_running; then cluster_down; fi ;;
    status)
      for s in "${svcs[@]}"; do case $s in cluster) status_cluster || true ;; *) status_one "$s" || true ;; esac; done
      if [[ $target == all ]] && cluster_running; then status_cluster || true; fi ;;
    ready) for s in "${svcs[@]}"; do case $s in cluster) status_cluster || rc=1 ;; *) status_one "$s" || rc=1 ;; esac; done; return $rc ;;
    env)
      if [[ $target == cluster ]]; then echo "export ENGAGE_KAFKA_BROKERS=$(cluster_bootstrap)"; return; fi
      echo "export ENGAGE_KAFKA_BROKERS=$HOST:$KAFKA_PORT"
      echo "export ENGAGE_CLICKHOUSE_ADDR=$HOST:$CH_PORT"
      echo "export ENGAGE_CLICKHOUSE_HTTP_ADDR=$HOST:$CH_HTTP_PORT"
      if ((SECURE)); then
        echo "export ENGAGE_SECURE_KAFKA_BROKERS=$HOST:$KAFKA_SASL_SSL_PORT"
        echo "export ENGAGE_SECURE_CLICKHOUSE_ADDR=$HOST:$CH_SECURE_PORT"
        echo "export ENGAGE_SECURE_CLICKHOUSE_HTTPS_ADDR=$HOST:$CH_HTTPS_PORT"
        echo "export ENGAGE_SECURE_CA=$TLS_DIR/ca.pem"
        echo "export ENGAGE_SECURE_USER=$SECURE_USER"
      fi ;;
    reset)
      lock
      [[ -n $STATE && $STATE != / ]] || die "refusing to delete under '$STATE'"
      for s in "${svcs[@]}"; do
        if [[ $s == cluster ]]; then
          cluster_down
          for ((i = 1; i <= CLUSTER_NODES; i++)); do rm -rf "${STATE:?}/kafka-node$i"; done
          rm -f "${STATE:?}/kafka-cluster.id"; log "cluster: data deleted"
          continue
        fi
        stop_svc "$s"
        rm -rf "${STATE:?}/$s"; log "$s: data deleted"
      done ;;
    *) sed -n '2,51p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
