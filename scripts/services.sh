#!/usr/bin/env bash
# Local services for sessionize's integration tests and local runs:
# PostgreSQL, Redis and a single-node Apache Kafka broker (KRaft), all on 127.0.0.1.
#
#   scripts/services.sh up     [pg|redis|kafka ...]   install if missing, start, wait until ready
#   scripts/services.sh down   [pg|redis|kafka ...]   stop (by PID only)
#   scripts/services.sh status [pg|redis|kafka ...]   one line per service
#   scripts/services.sh env                           export lines for the tests
#
# Environment (defaults in brackets):
#   SESSIONIZE_SERVICES_DIR [<repo>/.services]   data, logs, pidfiles
#   SESSIONIZE_PG_PORT [55432]  SESSIONIZE_REDIS_PORT [56379]
#   SESSIONIZE_KAFKA_PORT [59092]  SESSIONIZE_KAFKA_CONTROLLER_PORT [59093]
#   SESSIONIZE_SERVICES_TIMEOUT [90]  seconds to wait for each service to be ready
#   SESSIONIZE_KAFKA_HEAP [512m]      broker -Xmx
# See docs/operations-services.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVC_DIR=${SESSIONIZE_SERVICES_DIR:-$ROOT/.services}
[[ $SVC_DIR == /* ]] || SVC_DIR=$PWD/$SVC_DIR # absolute: used by other users and the JVM
PG_PORT=${SESSIONIZE_PG_PORT:-55432}
REDIS_PORT=${SESSIONIZE_REDIS_PORT:-56379}
KAFKA_PORT=${SESSIONIZE_KAFKA_PORT:-59092}
KAFKA_CONTROLLER_PORT=${SESSIONIZE_KAFKA_CONTROLLER_PORT:-59093}
TIMEOUT=${SESSIONIZE_SERVICES_TIMEOUT:-90}
KAFKA_HEAP=${SESSIONIZE_KAFKA_HEAP:-512m}
STOP_TIMEOUT=30

PG_DB=sessionize
KAFKA_TOOLS=$ROOT/tools/kafka
KAFKA_LIB=$KAFKA_TOOLS/lib
ALL_SERVICES=(pg redis kafka)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a log file to stderr, for failure reports.
tail_log() {
    local file=$1
    if [[ -f $file ]]; then
        printf -- '----- last 40 lines of %s -----\n' "$file" >&2
        tail -n 40 "$file" >&2 || true
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        printf '(no log file at %s)\n' "$file" >&2
    fi
}

check_port_var() {
    local name=$1 value=$2
    if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "$name=$value is not a TCP port"
    fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# True when $1 is a live process whose command line contains $2 (guards against PID reuse).
pid_is() {
    local pid=$1 token=$2
    local cmdline
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$token"* ]]
}

read_pidfile() { [[ -f $1 ]] && head -n 1 "$1" | tr -dc '0-9' || true; }

# Send SIGTERM to one PID, wait, then SIGKILL after STOP_TIMEOUT seconds.
stop_pid() {
    local name=$1 pid=$2 waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            log "$name (pid $pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# ---------------------------------------------------------------- installing

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    if ((EUID != 0)); then die "need root to apt-get install $*"; fi
    local apt_log=$SVC_DIR/apt.log
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$apt_log" 2>&1 ||
            { tail_log "$apt_log"; die "apt-get update failed"; }
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$apt_log" 2>&1 ||
        { tail_log "$apt_log"; die "apt-get install $* failed"; }
}

# Directory of the newest installed PostgreSQL server binaries (Debian layout).
pg_bindir() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $found ]] && dirname "$found"
}

ensure_pg_installed() {
    if [[ -z $(pg_bindir) ]]; then apt_install postgresql; fi
    PG_BIN=$(pg_bindir) || die "postgresql installed but no /usr/lib/postgresql/*/bin/postgres"
}

ensure_redis_installed() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server redis-tools
    fi
}

ensure_java_maven_installed() {
    local pkgs=()
    command -v java >/dev/null || pkgs+=(default-jre-headless)
    command -v mvn >/dev/null || pkgs+=(maven)
    if ((${#pkgs[@]})); then apt_install "${pkgs[@]}"; fi
}

# Fetch the broker's jars into tools/kafka/lib with Maven, once per pom.xml version.
ensure_kafka_jars() {
    ensure_java_maven_installed
    local stamp=$KAFKA_LIB/.pom.sha256 want
    want=$(sha256sum "$KAFKA_TOOLS/pom.xml" | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return 0; fi
    log "fetching Kafka jars with Maven into ${KAFKA_LIB#"$ROOT"/} (first run only)"
    rm -rf "$KAFKA_LIB"
    local mvn_log=$SVC_DIR/kafka/maven.log
    # -XX:-UsePerfData: no /tmp/hsperfdata_* from Maven's own JVM
    if ! MAVEN_OPTS="${MAVEN_OPTS:-} -XX:-UsePerfData" mvn -B -q -Dstyle.color=never -f "$KAFKA_TOOLS/pom.xml" dependency:copy-dependencies >"$mvn_log" 2>&1; then
        tail_log "$mvn_log"
        die "mvn dependency:copy-dependencies failed"
    fi
    local n_slf4j
    n_slf4j=$(find "$KAFKA_LIB" -maxdepth 1 -name 'slf4j-api-*.jar' | wc -l)
    [[ -n $(find "$KAFKA_LIB" -maxdepth 1 -name 'kafka_2.13-*.jar') ]] || die "no kafka_2.13 jar in $KAFKA_LIB"
    [[ -n $(find "$KAFKA_LIB" -maxdepth 1 -name 'log4j-slf4j-impl-*.jar') ]] || die "no log4j-slf4j-impl jar in $KAFKA_LIB"
    ((n_slf4j == 1)) || die "expected exactly one slf4j-api jar in $KAFKA_LIB, found $n_slf4j"
    echo "$want" >"$stamp"
}

# ---------------------------------------------------------------- PostgreSQL

PG_DIR=$SVC_DIR/pg
PG_DATA=$PG_DIR/data
PG_LOG=$PG_DIR/postgres.log
PG_SOCK=$PG_DIR/run

# Run a command as the cluster owner: the `postgres` system user when we are root
# (PostgreSQL refuses to run as root), else ourselves.
# Runs from / so that postgres never warns about a cwd it cannot enter.
as_pg() {
    if ((EUID == 0)); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_pid() {
    local pid
    pid=$(read_pidfile "$PG_DATA/postmaster.pid")
    if [[ -n $pid ]] && pid_is "$pid" postgres; then echo "$pid"; fi
}

pg_ready() {
    "${PG_BIN:-$(pg_bindir)}/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres -t 2
}

pg_up() {
    ensure_pg_installed
    local pid
    pid=$(pg_pid)
    if [[ -n $pid ]]; then
        pg_ready || { tail_log "$PG_LOG"; die "postgres (pid $pid) is running but not ready on port $PG_PORT"; }
        log "pg: already running (pid $pid, port $PG_PORT)"
        pg_create_db
        return 0
    fi
    port_open "$PG_PORT" && die "pg: port $PG_PORT on 127.0.0.1 is taken by another program (set SESSIONIZE_PG_PORT)"

    mkdir -p "$PG_DIR"
    if ((EUID == 0)); then
        id -u postgres >/dev/null 2>&1 || die "no 'postgres' system user (is the postgresql package installed?)"
        chown postgres:postgres "$PG_DIR"
        runuser -u postgres -- test -w "$PG_DIR" ||
            die "user postgres cannot reach $PG_DIR: every parent folder needs o+x (set SESSIONIZE_SERVICES_DIR elsewhere)"
    fi
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "pg: initdb into $PG_DATA"
        rm -rf "$PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
            >"$PG_DIR/initdb.log" 2>&1 || { tail_log "$PG_DIR/initdb.log"; die "initdb failed"; }
        # Settings that change with the environment live in sessionize.conf, rewritten at every up.
        as_pg sh -c 'cat >>"$1"' _ "$PG_DATA/postgresql.conf" <<'EOF'

# added by scripts/services.sh
include = 'sessionize.conf'
EOF
    fi
    # Unix sockets have a ~107-byte path limit; fall back to TCP only for deep folders.
    local sock_dir=''
    if ((${#PG_SOCK} + 20 < 100)); then
        sock_dir=$PG_SOCK
        as_pg mkdir -p "$PG_SOCK"
    fi
    as_pg sh -c 'cat >"$1"' _ "$PG_DATA/sessionize.conf" <<EOF
# Written by scripts/services.sh at every 'up'; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock_dir'
# a throwaway test cluster: no fsync (survives a process crash, not an OS crash)
fsync = off
logging_collector = off
EOF
    log "pg: starting on 127.0.0.1:$PG_PORT"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" start >/dev/null 9>&-; then
        tail_log "$PG_LOG"
        die "postgres did not start within ${TIMEOUT}s"
    fi
    local waited=0
    until pg_ready; do
        ((waited++ < TIMEOUT)) || { tail_log "$PG_LOG"; die "postgres not ready on port $PG_PORT after ${TIMEOUT}s"; }
        sleep 1
    done
    pg_create_db
    log "pg: ready (pid $(pg_pid), postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB)"
}

pg_create_db() {
    local exists
    exists=$("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XtAq \
        -c "select 1 from pg_database where datname = '$PG_DB'")
    if [[ $exists != 1 ]]; then
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB"
        log "pg: created database $PG_DB"
    fi
}

pg_down() {
    local pid
    pid=$(pg_pid)
    if [[ -z $pid ]]; then log "pg: not running"; return 0; fi
    PG_BIN=$(pg_bindir)
    log "pg: stopping (pid $pid)"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null; then
        log "pg: fast shutdown timed out; immediate shutdown"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null || true
        if pid_is "$pid" postgres; then stop_pid pg "$pid"; fi
    fi
    log "pg: stopped"
}

pg_status() { svc_line pg "$(pg_pid)" "$PG_PORT"; }

# ---------------------------------------------------------------- Redis

REDIS_DIR=$SVC_DIR/redis
REDIS_PIDFILE=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log

redis_pid() {
    local pid
    pid=$(read_pidfile "$REDIS_PIDFILE")
    if [[ -n $pid ]] && pid_is "$pid" redis-server; then echo "$pid"; fi
}

redis_ready() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_up() {
    ensure_redis_installed
    local pid
    pid=$(redis_pid)
    if [[ -n $pid ]]; then
        redis_ready || { tail_log "$REDIS_LOG"; die "redis (pid $pid) is running but does not answer PING on port $REDIS_PORT"; }
        log "redis: already running (pid $pid, port $REDIS_PORT)"
        return 0
    fi
    port_open "$REDIS_PORT" && die "redis: port $REDIS_PORT on 127.0.0.1 is taken by another program (set SESSIONIZE_REDIS_PORT)"
    mkdir -p "$REDIS_DIR"
    rm -f "$REDIS_PIDFILE"
    log "redis: starting on 127.0.0.1:$REDIS_PORT"
    # No config file: every setting is on the command line.
    if ! redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --save '' --appendonly no --dir "$REDIS_DIR" \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" >>"$REDIS_LOG" 2>&1 9>&-; then
        tail_log "$REDIS_LOG"
        die "redis-server failed to start"
    fi
    local waited=0
    until redis_ready; do
        ((waited++ < TIMEOUT * 10)) || { tail_log "$REDIS_LOG"; die "redis not answering PING on port $REDIS_PORT after ${TIMEOUT}s"; }
        sleep 0.1
    done
    # The pidfile is written right after daemonizing; give it a moment.
    waited=0
    until [[ -n $(redis_pid) ]]; do
        ((waited++ < 50)) || die "redis answers PING but $REDIS_PIDFILE has no live redis-server PID"
        sleep 0.1
    done
    log "redis: ready (pid $(redis_pid), redis://127.0.0.1:$REDIS_PORT/0)"
}

redis_down() {
    local pid
    pid=$(redis_pid)
    if [[ -z $pid ]]; then log "redis: not running"; rm -f "$REDIS_PIDFILE"; return 0; fi
    log "redis: stopping (pid $pid)"
    stop_pid redis "$pid"
    rm -f "$REDIS_PIDFILE"
    log "redis: stopped"
}

redis_status() { svc_line redis "$(redis_pid)" "$REDIS_PORT"; }

# ---------------------------------------------------------------- Kafka

KAFKA_DIR=$SVC_DIR/kafka
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
KAFKA_LOG=$KAFKA_DIR/kafka.log
KAFKA_PROPS=$KAFKA_DIR/server.properties
KAFKA_FORMATTED=$KAFKA_DIR/formatted-controller-port
KAFKA_MAIN=kafka.Kafka

kafka_pid() {
    local pid
    pid=$(read_pidfile "$KAFKA_PIDFILE")
    if [[ -n $pid ]] && pid_is "$pid" "$KAFKA_MAIN"; then echo "$pid"; fi
}

# JVM flags shared by the storage tool and the broker. -XX:-UsePerfData and
# java.io.tmpdir keep the JVM from writing under /tmp.
kafka_jvm_flags() {
    printf '%s\n' -XX:-UsePerfData -Djava.awt.headless=true \
        "-Djava.io.tmpdir=$KAFKA_DIR/tmp" \
        "-Dlog4j2.configurationFile=$KAFKA_TOOLS/log4j2.properties" \
        "-Dkafka.logs.dir=$KAFKA_DIR" \
        -cp "$KAFKA_LIB/*"
}

# 16 random bytes, URL-safe base64 without padding: the form of Kafka's Uuid.toString.
kafka_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id != -* ]] && break # Kafka avoids ids starting with '-' (CLI parsing)
    done
    echo "$id"
}

kafka_render_config() {
    local tpl
    tpl=$(<"$KAFKA_TOOLS/server.properties.in")
    tpl=${tpl//@KAFKA_PORT@/"$KAFKA_PORT"}
    tpl=${tpl//@CONTROLLER_PORT@/"$KAFKA_CONTROLLER_PORT"}
    tpl=${tpl//@LOG_DIRS@/"$KAFKA_DATA"}
    printf '%s\n' "$tpl" >"$KAFKA_PROPS"
}

# With --standalone the controller's host:port is written into the metadata log,
# so a data dir formatted for another controller port is wiped and formatted again.
kafka_format() {
    if [[ -f $KAFKA_DATA/meta.properties && -f $KAFKA_FORMATTED &&
        $(cat "$KAFKA_FORMATTED") == "$KAFKA_CONTROLLER_PORT" ]]; then
        return 0
    fi
    if [[ -e $KAFKA_DATA ]]; then
        log "kafka: data dir not formatted for controller port $KAFKA_CONTROLLER_PORT: wiping it"
    fi
    rm -rf "$KAFKA_DATA" "$KAFKA_FORMATTED"
    local flags=()
    mapfile -t flags < <(kafka_jvm_flags)
    log "kafka: formatting $KAFKA_DATA"
    if ! java -Xmx256m "${flags[@]}" kafka.tools.StorageTool format --standalone --ignore-formatted \
        -t "$(kafka_cluster_id)" -c "$KAFKA_PROPS" >"$KAFKA_DIR/format.log" 2>&1; then
        tail_log "$KAFKA_DIR/format.log"
        die "kafka storage format failed"
    fi
    echo "$KAFKA_CONTROLLER_PORT" >"$KAFKA_FORMATTED"
}

kafka_up() {
    mkdir -p "$KAFKA_DIR"
    local pid
    pid=$(kafka_pid)
    if [[ -n $pid ]]; then
        port_open "$KAFKA_PORT" || { tail_log "$KAFKA_LOG"; die "kafka (pid $pid) is running but port $KAFKA_PORT is closed"; }
        log "kafka: already running (pid $pid, port $KAFKA_PORT)"
        return 0
    fi
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        port_open "$p" && die "kafka: port $p on 127.0.0.1 is taken by another program (set SESSIONIZE_KAFKA_PORT / SESSIONIZE_KAFKA_CONTROLLER_PORT)"
    done
    ((KAFKA_PORT != KAFKA_CONTROLLER_PORT)) || die "kafka: broker and controller ports must differ"
    ensure_kafka_jars
    mkdir -p "$KAFKA_DIR/tmp"
    kafka_render_config
    kafka_format

    local flags=()
    mapfile -t flags < <(kafka_jvm_flags)
    [[ -f $KAFKA_LOG ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
    rm -f "$KAFKA_PIDFILE"
    log "kafka: starting on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
    # setsid: own session, so the broker outlives this script and its process group.
    # The inner shell writes its own PID and then becomes java (exec), so the pidfile holds java's PID.
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PIDFILE" \
        java "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        "${flags[@]}" "$KAFKA_MAIN" "$KAFKA_PROPS" \
        </dev/null >"$KAFKA_LOG" 2>&1 9>&- &

    local waited=0 deadline=$((TIMEOUT * 5))
    while :; do
        pid=$(read_pidfile "$KAFKA_PIDFILE")
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            tail_log "$KAFKA_LOG"
            die "kafka exited during startup"
        fi
        if [[ -n $pid ]] && grep -q 'Kafka Server started' "$KAFKA_LOG" 2>/dev/null && port_open "$KAFKA_PORT"; then
            break
        fi
        if ((waited++ >= deadline)); then
            tail_log "$KAFKA_LOG"
            if [[ -n $pid ]]; then stop_pid kafka "$pid"; fi
            die "kafka not ready on port $KAFKA_PORT after ${TIMEOUT}s (no 'Kafka Server started' line or port closed)"
        fi
        sleep 0.2
    done
    log "kafka: ready (pid $pid, bootstrap 127.0.0.1:$KAFKA_PORT)"
}

kafka_down() {
    local pid
    pid=$(kafka_pid)
    if [[ -z $pid ]]; then log "kafka: not running"; rm -f "$KAFKA_PIDFILE"; return 0; fi
    log "kafka: stopping (pid $pid)"
    stop_pid kafka "$pid"
    rm -f "$KAFKA_PIDFILE"
    log "kafka: stopped"
}

kafka_status() { svc_line kafka "$(kafka_pid)" "$KAFKA_PORT"; }

# ---------------------------------------------------------------- commands

svc_line() {
    local name=$1 pid=$2 port=$3
    if [[ -n $pid ]]; then
        printf '%-6s running  port=%s pid=%s\n' "$name" "$port" "$pid"
    else
        printf '%-6s stopped  port=%s pid=-\n' "$name" "$port"
    fi
}

# Serialise concurrent up/down calls on the same services folder. Daemons are
# started with 9>&- so they do not inherit (and hold) the lock.
take_lock() {
    mkdir -p "$SVC_DIR"
    exec 9>"$SVC_DIR/.lock"
    flock -w 600 9 || die "could not lock $SVC_DIR/.lock"
}

selected_services() {
    local s
    if (($# == 0)); then printf '%s\n' "${ALL_SERVICES[@]}"; return; fi
    for s in "$@"; do
        case $s in
            pg | postgres | postgresql) echo pg ;;
            redis) echo redis ;;
            kafka) echo kafka ;;
            *) die "unknown service '$s' (expected: pg redis kafka)" ;;
        esac
    done
}

usage() {
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    (($#)) && shift
    check_port_var SESSIONIZE_PG_PORT "$PG_PORT"
    check_port_var SESSIONIZE_REDIS_PORT "$REDIS_PORT"
    check_port_var SESSIONIZE_KAFKA_PORT "$KAFKA_PORT"
    check_port_var SESSIONIZE_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
    local services=() s
    case $cmd in
        up | down | status)
            mapfile -t services < <(selected_services "$@")
            ((${#services[@]})) || exit 1
            ;;
    esac
    case $cmd in
        up)
            take_lock
            for s in "${services[@]}"; do "${s}_up"; done
            ;;
        down)
            take_lock
            # reverse order: kafka, redis, pg
            for ((i = ${#services[@]} - 1; i >= 0; i--)); do "${services[i]}_down"; done
            ;;
        status)
            for s in "${services[@]}"; do "${s}_status"; done
            ;;
        env)
            echo "export SESSIONIZE_TEST_PG=postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB"
            echo "export SESSIONIZE_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT/0"
            echo "export SESSIONIZE_TEST_KAFKA=127.0.0.1:$KAFKA_PORT"
            ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
