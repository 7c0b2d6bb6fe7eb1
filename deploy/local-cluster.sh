#!/usr/bin/env bash
# The reference deployment on one machine, for tests and benchmarks: HAProxy in front of three
# Linli instances on one PostgreSQL database and one MQTT broker (shared subscription).
#
#   deploy/local-cluster.sh start            fresh database, three instances, broker, HAProxy
#   deploy/local-cluster.sh status           processes, HAProxy's view of the instances
#   deploy/local-cluster.sh rolling-restart  restart a, b, c one at a time, drained first
#   deploy/local-cluster.sh stop             stop everything this script started
#   deploy/local-cluster.sh clean            stop, drop the database, remove the run directory
#
# Everything listens on 127.0.0.1 only:
#   18080 HAProxy (the address to use)   18081-18083 instances a, b, c   18089 HAProxy stats
#   18883 Mosquitto (when the script starts its own)
#
# Environment (all optional):
#   LINLI_BIN            the linli binary (default: $CARGO_TARGET_DIR/debug/linli,
#                        /var/tmp/linli-target/debug/linli, target/debug/linli, then PATH)
#   LINLI_CLUSTER_DIR    run directory: config, pid files, logs, shared data_dir
#                        (default /tmp/linli-cluster)
#   LINLI_CLUSTER_DB     database name, dropped and created at start (default linli_cluster)
#   LINLI_CLUSTER_PG     an admin URL of the PostgreSQL server
#                        (default postgres://postgres@127.0.0.1:5432/postgres)
#   LINLI_CLUSTER_MQTT   "own" (default): start Mosquitto on 127.0.0.1:18883 with the settings of
#                        deploy/mosquitto/mosquitto.conf; or mqtt://host:port of a running broker
#   LINLI_CLUSTER_MQTT_GROUP  the instances' shared-subscription group (default linli)
#   LINLI_CLUSTER_PORT   HAProxy's port; the instances use the next three (default 18080)
#   LINLI_CLUSTER_DEMO   1 (default): seed the demo district (on instance a only); 0: empty
#   LINLI_DRAIN_TIMEOUT  rolling restart: seconds to wait for an instance's requests to finish
#                        after it stopped getting new ones (default 30)
#   LINLI_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 20)
#
# Needs: haproxy (2.4+), psql, curl, python3; mosquitto when LINLI_CLUSTER_MQTT=own.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${LINLI_CLUSTER_DIR:-/tmp/linli-cluster}
DB=${LINLI_CLUSTER_DB:-linli_cluster}
PG_ADMIN=${LINLI_CLUSTER_PG:-postgres://postgres@127.0.0.1:5432/postgres}
MQTT=${LINLI_CLUSTER_MQTT:-own}
MQTT_GROUP=${LINLI_CLUSTER_MQTT_GROUP:-linli}
LB_PORT=${LINLI_CLUSTER_PORT:-18080}
DEMO=${LINLI_CLUSTER_DEMO:-1}
DRAIN_TIMEOUT=${LINLI_DRAIN_TIMEOUT:-30}
STOP_TIMEOUT=${LINLI_STOP_TIMEOUT:-20}
HOST=127.0.0.1
INSTANCES=(a b c)
STATS_PORT=$((LB_PORT + 9))
MQTT_PORT=$((LB_PORT + 803))
SOCK="$DIR/haproxy.sock"
MARKER="$DIR/.linli-local-cluster"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }

port_of() { # instance name -> its port
  case "$1" in a) echo $((LB_PORT + 1)) ;; b) echo $((LB_PORT + 2)) ;; c) echo $((LB_PORT + 3)) ;; *) die "no instance $1" ;; esac
}

find_bin() {
  if [ -n "${LINLI_BIN:-}" ]; then echo "$LINLI_BIN"; return; fi
  local c
  for c in ${CARGO_TARGET_DIR:+"$CARGO_TARGET_DIR/debug/linli"} /var/tmp/linli-target/debug/linli \
    "$HERE/../target/debug/linli"; do
    if [ -x "$c" ]; then echo "$c"; return; fi
  done
  command -v linli || die "no linli binary: build it (cargo build) or set LINLI_BIN"
}

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  case "$1" in
    haproxy) die "haproxy is not installed: apt-get install -y haproxy (Debian/Ubuntu; 2.4 or newer)" ;;
    mosquitto) die "mosquitto is not installed: apt-get install -y mosquitto, or set LINLI_CLUSTER_MQTT=mqtt://host:port" ;;
    psql) die "psql is not installed: apt-get install -y postgresql-client" ;;
    *) die "$1 is not installed" ;;
  esac
}

pid_alive() { # pid file -> 0 when its process runs
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# HAProxy's runtime API over its UNIX socket: socat when installed, else python3.
hap() {
  if command -v socat >/dev/null 2>&1; then
    printf '%s\n' "$*" | socat -t 5 - "UNIX-CONNECT:$SOCK"
    return
  fi
  python3 - "$SOCK" "$*" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode(errors="replace"))
PY
}

# One field of `show stat` for backend/server, e.g. stat_field linli a scur.
stat_field() {
  hap "show stat" | awk -F, -v b="$1" -v s="$2" -v f="$3" '
    NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == b && $2 == s { print $col[f]; exit }'
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f\n", b - a }'; }

# A runtime API command that answers nothing when it worked.
hap_set() {
  local out
  out=$(hap "$@")
  [ -z "${out//[[:space:]]/}" ] || die "HAProxy refused '$*': $out"
}

http_code() { # url -> HTTP status (000 when no answer)
  curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true
}

wait_ready() { # url, seconds
  local url=$1 secs=$2 i
  for ((i = 0; i < secs * 5; i++)); do
    [ "$(http_code "$url")" = 200 ] && return 0
    sleep 0.2
  done
  return 1
}

stop_pid() { # pid file, name: SIGTERM, then SIGKILL after STOP_TIMEOUT
  local f=$1 name=$2 pid i
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
    sleep 0.1
  done
  log "$name (pid $pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

start_instance() { # name [extra serve flags]
  local name=$1; shift
  local bin port
  bin=$(cat "$DIR/bin")
  port=$(port_of "$name")
  # Per instance: its address and its stable id (MQTT client linli-<id>, persistent session).
  # Everything else comes from the shared linli.toml, as with /etc/linli/<name>.env and
  # /etc/linli/linli.toml under systemd.
  (
    cd "$DIR"
    NO_COLOR=1 LINLI_INSTANCE_ID=$name LINLI_LISTEN="$HOST:$port" \
      nohup "$bin" --config "$DIR/linli.toml" serve "$@" >>"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
  )
}

start_mosquitto() {
  need mosquitto
  mkdir -p "$DIR/mosquitto"
  # The broker-wide settings of the reference file, then a local listener and paths.
  {
    echo "# Generated by deploy/local-cluster.sh from deploy/mosquitto/mosquitto.conf"
    sed -n '/^# ---- BEGIN broker-wide settings ----$/,/^# ---- END broker-wide settings ----$/p' \
      "$HERE/mosquitto/mosquitto.conf"
    echo "user $(id -un)"
    echo "persistence_location $DIR/mosquitto/"
    echo "log_dest file $DIR/mosquitto.log"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "listener $MQTT_PORT $HOST"
    echo "allow_anonymous true"
    echo "acl_file $DIR/mosquitto/internal.acl"
  } >"$DIR/mosquitto/mosquitto.conf"
  grep -q '^max_inflight_messages' "$DIR/mosquitto/mosquitto.conf" ||
    die "could not take the settings from deploy/mosquitto/mosquitto.conf"
  # The internal listener's ACL from the reference file (anonymous = Linli reads device
  # topics), plus writing them: locally, simulators and benchmarks publish on this listener too.
  printf 'topic read linli/+/telemetry\ntopic read linli/+/event\ntopic write linli/+/telemetry\ntopic write linli/+/event\n' \
    >"$DIR/mosquitto/internal.acl"
  nohup mosquitto -c "$DIR/mosquitto/mosquitto.conf" >>"$DIR/mosquitto.log" 2>&1 &
  echo $! >"$DIR/mosquitto.pid"
  local i
  for ((i = 0; i < 50; i++)); do
    (echo >"/dev/tcp/$HOST/$MQTT_PORT") 2>/dev/null && return 0
    pid_alive "$DIR/mosquitto.pid" || break
    sleep 0.1
  done
  tail -n 20 "$DIR/mosquitto.log" >&2 || true
  die "Mosquitto did not start on $HOST:$MQTT_PORT"
}

start_haproxy() {
  # The reference configuration; addresses from the environment (see its header).
  local lb_env=(LB_LOCAL=1 LB_BIND="$HOST:$LB_PORT" LB_STATS="$HOST:$STATS_PORT" LB_SOCKET="$SOCK"
    LB_MAXCONN=2000 LB_LOG=stderr
    LB_A="$HOST:$(port_of a)" LB_B="$HOST:$(port_of b)" LB_C="$HOST:$(port_of c)")
  env "${lb_env[@]}" haproxy -c -q -f "$HERE/haproxy/haproxy.cfg" >"$DIR/haproxy-check.log" 2>&1 ||
    { cat "$DIR/haproxy-check.log" >&2; die "haproxy.cfg does not pass haproxy -c"; }
  (
    cd "$DIR"
    env "${lb_env[@]}" nohup haproxy -db -f "$HERE/haproxy/haproxy.cfg" >>"$DIR/haproxy.log" 2>&1 &
    echo $! >"$DIR/haproxy.pid"
  )
}

wait_up() { # instance, seconds: HAProxy's check marked it UP
  local name=$1 secs=$2 i st
  for ((i = 0; i < secs * 5; i++)); do
    st=$(stat_field linli "$name" status 2>/dev/null || true)
    # Exactly UP ("UP 1/2" is a server half-way to DOWN).
    [ "$st" = UP ] && return 0
    sleep 0.2
  done
  return 1
}

cmd_start() {
  local bin name url started
  need haproxy; need psql; need curl; need python3
  bin=$(find_bin)
  [ -x "$bin" ] || die "$bin is not executable"
  for name in "${INSTANCES[@]}" haproxy mosquitto; do
    pid_alive "$DIR/$name.pid" && die "already running ($DIR/$name.pid): run stop first"
  done
  [[ "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "LINLI_CLUSTER_DB must be a plain lower-case name"
  case "$MQTT" in own | mqtt://*) ;; *) die "LINLI_CLUSTER_MQTT must be own or mqtt://host:port" ;; esac
  [[ "$MQTT_GROUP" =~ ^[A-Za-z0-9_-]+$ ]] || die "LINLI_CLUSTER_MQTT_GROUP: letters, digits, - and _ only"
  # A fresh run directory; only one this script made (or an empty one) is emptied.
  if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ] && [ ! -f "$MARKER" ]; then
    die "$DIR exists and was not made by this script; set LINLI_CLUSTER_DIR"
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR/data"
  chmod 700 "$DIR"
  touch "$MARKER"
  echo "$bin" >"$DIR/bin"
  started=$(date +%s)

  log "PostgreSQL: fresh database $DB"
  PGOPTIONS='-c client_min_messages=warning' psql "$PG_ADMIN" -qX -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
    -c "CREATE DATABASE $DB" >/dev/null
  local db_url="${PG_ADMIN%/*}/$DB"

  local mqtt_url=$MQTT
  if [ "$MQTT" = own ]; then
    log "Mosquitto on $HOST:$MQTT_PORT"
    start_mosquitto
    mqtt_url="mqtt://$HOST:$MQTT_PORT"
  fi

  # One master key for all instances (they share the database); 64 hex characters.
  local key
  key=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  cat >"$DIR/linli.toml" <<EOF
# Generated by deploy/local-cluster.sh: shared by instances a, b and c (the production
# equivalent is /etc/linli/linli.toml; per-instance LINLI_LISTEN and LINLI_INSTANCE_ID come from
# the environment).
database_url = "$db_url"
master_key = "$key"
time_zone = "Asia/Shanghai"
# Shared by all instances: uploads (report photos, import files) must be visible to each.
data_dir = "$DIR/data"
demo_password = "linli-demo"
# The external broker and the shared-subscription group; no embedded broker.
mqtt_url = "$mqtt_url"
mqtt_group = "$MQTT_GROUP"
mqtt_listen = ""
# HAProxy connects from 127.0.0.1; believe its X-Forwarded-For.
trusted_proxies = ["127.0.0.1"]
log = "info"
EOF
  chmod 600 "$DIR/linli.toml"

  # Instance a first, seeding the demo district; then b and c (seeding is idempotent and
  # locked, but one seeder keeps the logs readable).
  if [ "$DEMO" = 1 ]; then
    log "instance a on $HOST:$(port_of a) (seeding the demo district)"
    start_instance a --demo
  else
    log "instance a on $HOST:$(port_of a)"
    start_instance a
  fi
  wait_ready "http://$HOST:$(port_of a)/readyz" 300 ||
    { tail -n 30 "$DIR/a.log" >&2; die "instance a did not become ready (log: $DIR/a.log)"; }
  for name in b c; do
    log "instance $name on $HOST:$(port_of "$name")"
    start_instance "$name"
  done
  for name in b c; do
    wait_ready "http://$HOST:$(port_of "$name")/readyz" 120 ||
      { tail -n 30 "$DIR/$name.log" >&2; die "instance $name did not become ready (log: $DIR/$name.log)"; }
  done

  log "HAProxy on $HOST:$LB_PORT (stats http://$HOST:$STATS_PORT/)"
  start_haproxy
  url="http://$HOST:$LB_PORT"
  wait_ready "$url/readyz" 30 || { tail -n 20 "$DIR/haproxy.log" >&2; die "no answer through HAProxy"; }
  for name in "${INSTANCES[@]}"; do
    wait_up "$name" 30 || die "HAProxy does not see instance $name UP"
  done
  log "ready in $(($(date +%s) - started)) s: $url/ (demo: admin / linli-demo); logs in $DIR"
  echo "$url"
}

cmd_status() {
  local name rc=0
  [ -f "$DIR/bin" ] || { echo "not started ($DIR)"; return 1; }
  for name in "${INSTANCES[@]}" haproxy mosquitto; do
    [ -f "$DIR/$name.pid" ] || [ "$name" != mosquitto ] || continue
    if pid_alive "$DIR/$name.pid"; then
      printf '%-10s running (pid %s)\n' "$name" "$(cat "$DIR/$name.pid")"
    else
      printf '%-10s stopped\n' "$name"; rc=1
    fi
  done
  if pid_alive "$DIR/haproxy.pid"; then
    echo
    hap "show stat" | python3 -c '
import csv, sys
rows = [l for l in sys.stdin.read().splitlines() if l.strip()]
head = rows[0].lstrip("# ").split(",")
print("%-14s %-7s %-12s %5s %8s %6s" % ("backend", "server", "status", "cur", "total", "5xx"))
for row in csv.reader(rows[1:]):
    r = dict(zip(head, row))
    if r["pxname"].startswith("linli") and r["svname"] not in ("FRONTEND",):
        print("%-14s %-7s %-12s %5s %8s %6s" % (r["pxname"], r["svname"], r["status"], r["scur"], r["stot"], r.get("hrsp_5xx", "")))
'
    echo
    printf 'through HAProxy: /readyz %s\n' "$(http_code "http://$HOST:$LB_PORT/readyz")"
  fi
  return $rc
}

cmd_stop() {
  local name
  [ -d "$DIR" ] || return 0
  # The door first, then the instances (SIGTERM: graceful), then the broker.
  stop_pid "$DIR/haproxy.pid" haproxy
  for name in "${INSTANCES[@]}"; do stop_pid "$DIR/$name.pid" "$name" & done
  wait
  stop_pid "$DIR/mosquitto.pid" mosquitto
  [ "${1:-}" = quiet ] || log "stopped (logs and database kept: $DIR, $DB; 'clean' removes them)"
}

cmd_clean() {
  cmd_stop quiet
  if command -v psql >/dev/null 2>&1; then
    PGOPTIONS="-c client_min_messages=warning" psql "$PG_ADMIN" -qX -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
  fi
  if [ -f "$MARKER" ]; then rm -rf "$DIR"; fi
  log "stopped; database $DB and $DIR removed"
}

# Restart the instances one at a time so that no request fails:
#  1. drain: HAProxy sends the instance no new requests (health checks go on);
#  2. wait until its requests in flight are answered (LINLI_DRAIN_TIMEOUT);
#  3. cut its live-update streams (browsers reconnect to another instance) and put it in
#     maintenance;
#  4. SIGTERM (graceful: nothing in flight by now), SIGKILL after LINLI_STOP_TIMEOUT;
#  5. start it again, wait for its own /readyz;
#  6. ready: HAProxy checks it and, once UP, ramps its share up (slowstart).
cmd_rolling_restart() {
  local name port t0 t i cur drained stopped ready
  pid_alive "$DIR/haproxy.pid" || die "not running: start first"
  for name in "${INSTANCES[@]}"; do
    wait_up "$name" 30 || die "instance $name is not UP before its restart; not restarting"
  done
  for name in "${INSTANCES[@]}"; do
    port=$(port_of "$name")
    t0=$(now)
    hap_set "set server linli/$name state drain"
    hap_set "set server linli_events/$name state drain"
    cur=0
    for ((i = 0; i < DRAIN_TIMEOUT * 10; i++)); do
      cur=$(stat_field linli "$name" scur)
      [ "${cur:-0}" = 0 ] && break
      sleep 0.1
    done
    [ "${cur:-0}" = 0 ] || log "$name: $cur requests still open after ${DRAIN_TIMEOUT}s; going on"
    drained=$(since "$t0")
    hap_set "shutdown sessions server linli_events/$name"
    hap_set "set server linli/$name state maint"
    hap_set "set server linli_events/$name state maint"
    t=$(now)
    stop_pid "$DIR/$name.pid" "$name"
    stopped=$(since "$t")
    t=$(now)
    start_instance "$name"
    wait_ready "http://$HOST:$port/readyz" 120 ||
      { tail -n 30 "$DIR/$name.log" >&2; die "instance $name did not come back (log: $DIR/$name.log); it stays in maintenance"; }
    ready=$(since "$t")
    t=$(now)
    hap_set "set server linli/$name state ready"
    hap_set "set server linli_events/$name state ready"
    wait_up "$name" 30 || die "HAProxy does not see instance $name UP again"
    log "$name restarted in $(since "$t0") s (drained $drained s, stopped $stopped s, ready $ready s, UP in HAProxy $(since "$t") s)"
  done
}

case "${1:-}" in
  start) cmd_start ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  clean) cmd_clean ;;
  rolling-restart) cmd_rolling_restart ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
