#!/usr/bin/env bash
# Check that a rolling restart of the local cluster fails no request: steady traffic through
# HAProxy (deploy/rolling-load.py: reads, a write, a live-update stream) and, with
# mosquitto_pub installed, QoS 1 telemetry through the broker, while
# `local-cluster.sh rolling-restart` restarts a, b and c one after the other. Prints the load's
# summary and HAProxy's counters; exits 1 when any request failed or any telemetry message is
# missing (one stored twice is reported, not failed: QoS 1 means at least once).
#
#   deploy/check-rolling-restart.sh
#
# Starts the cluster when it is not running (and stops it again at the end); the same
# environment as local-cluster.sh applies (LINLI_BIN, LINLI_CLUSTER_DIR, …). Traffic goes to
# 127.0.0.1 only and stops by itself (LINLI_CHECK_MAX_SECONDS, default 600; at most
# LINLI_CHECK_MAX_REQUESTS, default 500000). LINLI_CHECK_WORKERS: parallel clients (default 4);
# LINLI_CHECK_MIX=writes: every other request a write (default: mostly reads, as a page);
# LINLI_CHECK_MQTT=0: no telemetry; LINLI_CHECK_MQTT_RATE: messages per second (default 100).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER="$HERE/local-cluster.sh"
DIR=${LINLI_CLUSTER_DIR:-/tmp/linli-cluster}
PORT=${LINLI_CLUSTER_PORT:-18080}
WORKERS=${LINLI_CHECK_WORKERS:-4}
MAX_SECONDS=${LINLI_CHECK_MAX_SECONDS:-600}
MAX_REQUESTS=${LINLI_CHECK_MAX_REQUESTS:-500000}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

started_here=0
if ! "$CLUSTER" status >/dev/null 2>&1; then
  log "starting the local cluster"
  "$CLUSTER" start >/dev/null
  started_here=1
fi

stop_file="$DIR/check.stop"
out="$DIR/check-load.json"
rm -f "$stop_file" "$out"
load_pid=
cleanup() {
  touch "$stop_file" 2>/dev/null || true
  if [ -n "$load_pid" ]; then wait "$load_pid" 2>/dev/null || true; fi
  if [ "$started_here" = 1 ]; then "$CLUSTER" stop || true; fi
}
trap cleanup EXIT

# Telemetry through the broker too, when mosquitto_pub is there (LINLI_CHECK_MQTT=0: not).
mqtt_args=()
broker=$(sed -n 's|^mqtt_url = "mqtt://\(.*\)"$|\1|p' "$DIR/linli.toml" 2>/dev/null || true)
if [ "${LINLI_CHECK_MQTT:-1}" = 1 ] && [ -n "$broker" ] && command -v mosquitto_pub >/dev/null; then
  mqtt_args=(--mqtt "$broker" --mqtt-rate "${LINLI_CHECK_MQTT_RATE:-100}")
else
  log "no telemetry check (needs mosquitto_pub from mosquitto-clients, and mqtt_url)"
fi

python3 "$HERE/rolling-load.py" --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" \
  --max-seconds "$MAX_SECONDS" --max-requests "$MAX_REQUESTS" --stop-file "$stop_file" \
  --mix "${LINLI_CHECK_MIX:-default}" "${mqtt_args[@]}" >"$out" &
load_pid=$!

# Traffic before, during and after the restart.
sleep 3
log "rolling restart under load"
restart_rc=0
"$CLUSTER" rolling-restart || restart_rc=$?
sleep 3
touch "$stop_file"
load_rc=0
wait "$load_pid" || load_rc=$?
load_pid=

echo "load: $(cat "$out")"
"$CLUSTER" status || true

python3 - "$out" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"\n{s['requests']} requests in {s['seconds']} s ({s['per_second']}/s), "
      f"{s['failures']} failed; p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms, "
      f"max {s['latency_ms']['max']} ms; live-update stream cut {s['event_stream']['cuts']}x, "
      f"reconnected {s['event_stream']['reconnects']}x")
for f in s["first_failures"]:
    print("  failed:", f)
m = s.get("mqtt")
if m:
    print(f"telemetry over MQTT (QoS 1, shared subscription): {m['published']} published, "
          f"{m['published'] - m['missing']} stored, {m['missing']} missing, {m['doubled']} stored twice")
PY

if [ "$restart_rc" != 0 ]; then log "rolling restart failed ($restart_rc)"; exit 1; fi
if [ "$load_rc" != 0 ]; then log "requests failed during the rolling restart"; exit 1; fi
log "no request failed"
