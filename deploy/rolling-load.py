#!/usr/bin/env python3
"""Steady requests against the local cluster's HAProxy, counting every failure.

Used by deploy/check-rolling-restart.sh while `local-cluster.sh rolling-restart` runs. Only the
standard library; only loopback addresses; bounded in time and count.

Each worker signs in once (demo admin) and then loops over a mix of reads and one write:
  GET /readyz, GET /login (page), GET /api/v1/auth/me, GET /api/v1/inbox/unread-count,
  GET /api/v1/reports?limit=10, POST /api/v1/inbox/read-all (a write HAProxy never replays);
with --mix writes, POST /api/v1/inbox/read-all and GET /api/v1/reports?limit=50 in turn.
One more thread keeps a live-update stream (GET /events) open, as a staff page does, and
reconnects when it ends; a reconnect that fails is a failure too.

With --mqtt host:port, a device's telemetry also flows: QoS 1 messages for one demo device are
published through the broker (mosquitto_pub) at --mqtt-rate per second while the load runs;
afterwards every one of them must be in the device's history (GET /api/v1/iot/devices/{id}/
telemetry), stored once. A message missing is a failure.

A failure is: no answer (connection refused/reset/timeout), a 5xx, or any status other than
the one the request expects. The summary is one JSON line on stdout; exit status 1 on failures.
"""

import argparse
import http.client
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time

# --mix default: what a staff page does, mostly reads.
MIX = [
    ("GET", "/readyz", None, (200,)),
    ("GET", "/login", None, (200,)),
    ("GET", "/api/v1/auth/me", None, (200,)),
    ("GET", "/api/v1/inbox/unread-count", None, (200,)),
    ("GET", "/api/v1/reports?limit=10", None, (200,)),
    ("POST", "/api/v1/inbox/read-all", b"", (200, 204)),
]
# --mix writes: every other request a write, the requests HAProxy cannot resend.
WRITES = [
    ("POST", "/api/v1/inbox/read-all", b"", (200, 204)),
    ("GET", "/api/v1/reports?limit=50", None, (200,)),
]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.failures = 0
        self.by_status = {}
        self.errors = {}
        self.samples = []  # first failures, for the report
        self.latencies = []
        self.stream_cuts = 0
        self.stream_reconnects = 0

    def record(self, what, ok, status, latency):
        with self.lock:
            self.total += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1
            self.latencies.append(latency)
            if not ok:
                self.failures += 1
                if len(self.samples) < 20:
                    self.samples.append(f"{time.strftime('%H:%M:%S')} {what} -> {status}")

    def error(self, what, exc, latency):
        name = type(exc).__name__
        with self.lock:
            self.errors[name] = self.errors.get(name, 0) + 1
        self.record(what, False, f"error:{name}", latency)


def sign_in(host, port, login, password):
    c = http.client.HTTPConnection(host, port, timeout=30)
    body = json.dumps({"login": login, "password": password})
    c.request("POST", "/api/v1/auth/login", body, {"content-type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"sign-in failed: {r.status} {data[:200]!r}")
    cookie = r.getheader("set-cookie", "").split(";", 1)[0]
    csrf = json.loads(data)["csrf_token"]
    c.close()
    return cookie, csrf


def worker(args, stats, stop, deadline, budget):
    cookie, csrf = sign_in(args.host, args.port, args.login, args.password)
    headers = {"cookie": cookie, "accept": "application/json"}
    conn = None
    i = 0
    while not stop.is_set() and time.time() < deadline:
        with budget["lock"]:
            if budget["left"] <= 0:
                return
            budget["left"] -= 1
        mix = WRITES if args.mix == "writes" else MIX
        method, path, body, expect = mix[i % len(mix)]
        i += 1
        h = dict(headers)
        if method == "POST":
            h["x-csrf-token"] = csrf
            h["content-length"] = "0"
        what = f"{method} {path}"
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(args.host, args.port, timeout=30)
            conn.request(method, path, body, h)
            r = conn.getresponse()
            r.read()
            stats.record(what, r.status in expect, r.status, time.perf_counter() - t0)
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # noqa: BLE001 - every failure counts
            stats.error(what, e, time.perf_counter() - t0)
            if conn is not None:
                conn.close()
            conn = None
        if args.pause:
            time.sleep(args.pause)
    if conn is not None:
        conn.close()


def streamer(args, stats, stop, deadline):
    """Holds GET /events open like a live page; counts cuts and reconnects."""
    cookie, _ = sign_in(args.host, args.port, args.login, args.password)
    first = True
    while not stop.is_set() and time.time() < deadline:
        t0 = time.perf_counter()
        try:
            # Linli sends a keep-alive comment every 15 s: 20 s of silence is a stalled stream.
            c = http.client.HTTPConnection(args.host, args.port, timeout=20)
            c.request("GET", "/events", None, {"cookie": cookie, "accept": "text/event-stream"})
            r = c.getresponse()
            ok = r.status == 200
            stats.record("GET /events", ok, r.status, time.perf_counter() - t0)
            if not first and ok:
                with stats.lock:
                    stats.stream_reconnects += 1
            first = False
            if not ok:
                r.read()
                c.close()
                time.sleep(0.5)
                continue
            # Read until the stream ends (its instance restarted) or we are told to stop;
            # HTTPResponse.readline() understands the chunked encoding and returns b"" at the end.
            while not stop.is_set():
                if not r.readline():
                    break
            if not stop.is_set():
                with stats.lock:
                    stats.stream_cuts += 1
            c.close()
        except Exception as e:  # noqa: BLE001
            stats.error("GET /events", e, time.perf_counter() - t0)
            time.sleep(0.5)
        # A browser's EventSource waits about 3 s before reconnecting; be quicker.
        time.sleep(0.2)


def api_get(args, cookie, path):
    c = http.client.HTTPConnection(args.host, args.port, timeout=30)
    c.request("GET", path, None, {"cookie": cookie, "accept": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"GET {path}: {r.status} {data[:200]!r}")
    return json.loads(data)


class Telemetry:
    """Publishes numbered QoS 1 telemetry for one device through the broker, then checks that
    Linli stored each message exactly once."""

    MAX = 9000  # the history API answers at most 10,000 points

    def __init__(self, args):
        self.args = args
        self.cookie, _ = sign_in(args.host, args.port, args.login, args.password)
        devices = api_get(args, self.cookie, "/api/v1/iot/devices?limit=1")
        if not devices:
            raise SystemExit("--mqtt: no device (start the cluster with the demo)")
        self.device = devices[0]["id"]
        self.t0 = int(time.time() * 1000)
        self.sent = 0
        self.rc = None
        host, port = args.mqtt.rsplit(":", 1)
        if not ipaddress.ip_address(host).is_loopback:
            raise SystemExit("loopback addresses only")
        self.proc = subprocess.Popen(
            ["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-i", f"rolling-load-{os.getpid()}",
             "-t", f"linli/{self.device}/telemetry", "-l"],
            stdin=subprocess.PIPE, text=True)

    def run(self, stop, deadline):
        gap = 1.0 / self.args.mqtt_rate
        nxt = time.time()
        while not stop.is_set() and time.time() < deadline and self.sent < self.MAX:
            # ts: distinct and increasing, so each message is one point of the history.
            msg = {"ts": self.t0 + self.sent, "values": {"seq": self.sent}}
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            self.sent += 1
            nxt += gap
            time.sleep(max(0.0, nxt - time.time()))
        self.proc.stdin.close()  # mosquitto_pub exits once every message is acknowledged
        self.rc = self.proc.wait(timeout=60)

    def verify(self, wait_seconds=30):
        """Seconds until all arrived, and what is missing or doubled."""
        end = time.time() + wait_seconds
        while True:
            points = api_get(
                self.args, self.cookie,
                f"/api/v1/iot/devices/{self.device}/telemetry?from={self.t0}&to={self.t0 + self.MAX}&limit=10000")
            seqs = [p["values"].get("seq") for p in points]
            stored = set(seqs)
            missing = self.sent - len(stored & set(range(self.sent)))
            if missing == 0 or time.time() > end:
                return {"device": self.device, "published": self.sent, "stored": len(seqs),
                        "missing": missing, "doubled": len(seqs) - len(stored),
                        "mosquitto_pub_exit": self.rc}
            time.sleep(0.5)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18080)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--max-requests", type=int, default=500_000)
    p.add_argument("--mix", choices=["default", "writes"], default="default")
    p.add_argument("--pause", type=float, default=0.0, help="seconds between a worker's requests")
    p.add_argument("--stop-file", help="stop as soon as this file exists")
    p.add_argument("--login", default="admin")
    p.add_argument("--password", default="linli-demo")
    p.add_argument("--no-stream", action="store_true", help="no GET /events client")
    p.add_argument("--mqtt", help="host:port of the broker: also publish telemetry and check it")
    p.add_argument("--mqtt-rate", type=float, default=100.0, help="telemetry messages per second")
    args = p.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        raise SystemExit("loopback addresses only")

    stats = Stats()
    stop = threading.Event()
    started = time.time()
    deadline = started + args.max_seconds
    budget = {"left": args.max_requests, "lock": threading.Lock()}
    threads = [
        threading.Thread(target=worker, args=(args, stats, stop, deadline, budget), daemon=True)
        for _ in range(args.workers)
    ]
    telemetry = Telemetry(args) if args.mqtt else None
    if telemetry:
        threads.append(threading.Thread(target=telemetry.run, args=(stop, deadline), daemon=True))
    if not args.no_stream:
        threads.append(threading.Thread(target=streamer, args=(args, stats, stop, deadline), daemon=True))
    for t in threads:
        t.start()
    print(f"load: {args.workers} workers against {args.host}:{args.port}", file=sys.stderr, flush=True)
    while time.time() < deadline and any(t.is_alive() for t in threads[: args.workers]):
        if args.stop_file and os.path.exists(args.stop_file):
            break
        time.sleep(0.1)
    stop.set()
    elapsed = time.time() - started
    for t in threads[: args.workers + (1 if telemetry else 0)]:
        t.join(timeout=65)
    # The stream reader may sit in a read until the next keep-alive comment (daemon thread).
    for t in threads[args.workers :]:
        t.join(timeout=1)

    lat = sorted(stats.latencies)

    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None

    summary = {
        "seconds": round(elapsed, 1),
        "requests": stats.total,
        "per_second": round(stats.total / elapsed, 1) if elapsed else 0,
        "failures": stats.failures,
        "by_status": {str(k): v for k, v in sorted(stats.by_status.items(), key=lambda kv: str(kv[0]))},
        "errors": stats.errors,
        "latency_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": pct(1.0)},
        "event_stream": {"cuts": stats.stream_cuts, "reconnects": stats.stream_reconnects},
        "first_failures": stats.samples,
    }
    lost = 0
    if telemetry:
        summary["mqtt"] = telemetry.verify()
        lost = summary["mqtt"]["missing"] + (1 if summary["mqtt"]["mosquitto_pub_exit"] else 0)
    print(json.dumps(summary), flush=True)
    sys.exit(1 if stats.failures or lost else 0)


if __name__ == "__main__":
    main()
