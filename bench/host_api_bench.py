#!/usr/bin/python3
"""The host HTTP API's figures (issue 14), against build/transportsd on SQLite:

1. host PATCH calls per second on one keep-alive connection (each answered after its
   commit), and the server's CPU per call (utime + stime from /proc);
2. beside it, the WebSocket write path: one connection writing and waiting for each ack,
   the same model, the same storage, the same figures;
3. a webhook burst: 10 000 model changes (one per model, so debouncing merges none), and the
   time until the receiver got every event.

Usage: bench/host_api_bench.py [--calls N] [--burst N] [--sync full|normal|off]
Prints figures; never fails on a slow machine. Run from the repository root (needs
python3-websockets, Debian's /usr/bin/python3)."""

import argparse
import asyncio
import http.client
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMON = os.environ.get("TRANSPORTSD", os.path.join(ROOT, "build", "transportsd"))
TOKEN = "bench-admin-token-0123456789abcdef"
SECRET = "bench-webhook-secret-0123456789"
TICKS = os.sysconf("SC_CLK_TCK")
SCHEMA = {"title": "Doc", "type": "object",
          "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
          "required": ["title"]}


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(cfg, workdir):
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    log = open(os.path.join(workdir, "log.txt"), "wb")
    env = dict(os.environ, BENCH_ADMIN=TOKEN, BENCH_SECRET=SECRET)
    p = subprocess.Popen([DAEMON, "--config", path, "--listen", "127.0.0.1:0",
                          "--log-level", "warn"], cwd=workdir, stdout=log, stderr=log, env=env)
    # --log-level warn hides "listening": read the port from /proc instead.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        port = listening_port(p.pid)
        if port:
            return p, port
        time.sleep(0.05)
    raise SystemExit("transportsd did not start")


def listening_port(pid):
    try:
        inodes = {os.readlink("/proc/%d/fd/%s" % (pid, fd))
                  for fd in os.listdir("/proc/%d/fd" % pid)}
    except OSError:
        return None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and "socket:[%s]" % parts[9] in inodes:
                return int(parts[1].split(":")[1], 16)
    return None


def stop(p):
    p.terminate()
    p.wait(30)


def patches(port, n):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    h = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    for i in range(n):
        conn.request("PATCH", "/v1/tenants/alice/models/m0", body=json.dumps({"n": i}), headers=h)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
    conn.close()


async def ws_writes(port, n):
    async with websockets.connect("ws://127.0.0.1:%d/ws/alice" % port,
                                  subprotocols=["transports.v1"], max_size=None) as ws:
        while True:
            m = json.loads(await ws.recv())
            if isinstance(m, dict) and m.get("type") == "synced":
                break
            if isinstance(m, list) and any(x.get("type") == "synced" for x in m):
                break
        for i in range(1, n + 1):
            await ws.send(json.dumps({"type": "write", "ref": i, "scope": "private",
                                      "id": "m0", "patch": {"n": i}}))
            while True:
                m = json.loads(await ws.recv())
                ms = m if isinstance(m, list) else [m]
                if any(x.get("type") == "ack" and x.get("ref") == i for x in ms):
                    break


def measure(label, p, fn, n):
    c0, t0 = cpu_seconds(p.pid), time.monotonic()
    fn()
    t1, c1 = time.monotonic(), cpu_seconds(p.pid)
    print("%-44s %8.0f calls/s   server CPU %6.1f us/call   (%d calls, %.2f s)"
          % (label, n / (t1 - t0), (c1 - c0) / n * 1e6, n, t1 - t0))


class Receiver:
    def __init__(self):
        self.count = 0
        self.last = 0.0
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.count += 1
                    outer.last = time.monotonic()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--burst", type=int, default=10000)
    ap.add_argument("--sync", default="normal")
    a = ap.parse_args()
    storage = {"sqlite": "bench.db", "synchronous": a.sync}

    with tempfile.TemporaryDirectory() as wd:
        cfg = {"schemas": {"Doc": SCHEMA}, "admin_token_env": "BENCH_ADMIN", "storage": storage,
               "tenants": {"alice": {"models": {"m0": {"schema": "Doc",
                                                      "value": {"title": "t"}}}}},
               "limits": {"writes_per_second": 1000000}}
        p, port = start(cfg, wd)
        print("storage sqlite synchronous=%s, one connection, one write at a time" % a.sync)
        measure("host API: PATCH, keep-alive, 2xx after commit", p,
                lambda: patches(port, a.calls), a.calls)
        measure("WebSocket: write, wait for its ack", p,
                lambda: asyncio.run(ws_writes(port, a.calls)), a.calls)
        stop(p)

    with tempfile.TemporaryDirectory() as wd:
        r = Receiver()
        models = {"m%d" % i: {"schema": "Doc", "value": {"title": "t"}} for i in range(a.burst)}
        cfg = {"schemas": {"Doc": SCHEMA}, "admin_token_env": "BENCH_ADMIN", "storage": storage,
               "tenants": {"alice": {"models": models}},
               "limits": {"writes_per_second": 1000000},
               "webhooks": [{"url": "http://127.0.0.1:%d/h" % r.port,
                             "events": ["model.changed"], "secret_env": "BENCH_SECRET",
                             "debounce_ms": 0, "max_delay_ms": 0}]}
        p, port = start(cfg, wd)

        async def burst():
            async with websockets.connect("ws://127.0.0.1:%d/ws/alice" % port,
                                          subprotocols=["transports.v1"], max_size=None) as ws:
                got_synced = False
                while not got_synced:
                    m = json.loads(await ws.recv())
                    ms = m if isinstance(m, list) else [m]
                    got_synced = any(x.get("type") == "synced" for x in ms)
                t0 = time.monotonic()
                batch = [{"type": "write", "ref": i + 1, "scope": "private", "id": "m%d" % i,
                          "patch": {"n": 1}} for i in range(a.burst)]
                for k in range(0, a.burst, 500):
                    await ws.send(json.dumps(batch[k:k + 500]))
                acks = 0
                while acks < a.burst:
                    m = json.loads(await ws.recv())
                    ms = m if isinstance(m, list) else [m]
                    acks += sum(1 for x in ms if x.get("type") == "ack")
                return t0, time.monotonic()
        c0 = cpu_seconds(p.pid)
        t0, t_acked = asyncio.run(burst())
        deadline = time.monotonic() + 300
        while r.count < a.burst and time.monotonic() < deadline:
            time.sleep(0.01)
        c1 = cpu_seconds(p.pid)
        print("webhook burst: %d model changes (one per model) acked in %.2f s; all %d events "
              "delivered %.2f s after the first change (%.0f events/s); server CPU %.1f us per "
              "change, delivery included" % (a.burst, t_acked - t0, r.count, r.last - t0,
                                             r.count / (r.last - t0), (c1 - c0) / a.burst * 1e6))
        stop(p)
        r.server.shutdown()


if __name__ == "__main__":
    main()
