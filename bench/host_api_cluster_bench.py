#!/usr/bin/python3
"""The host HTTP API on a cluster (issue 18), against build/transportsd:

PATCH calls on one keep-alive connection, each sent once the previous one was answered, and
their latency (p50, p99), through:

1. one node without `cluster`, in memory (the baseline, same run);
2. one node without `cluster`, SQLite FULL (the default storage);
3. node 1 of two on one Redis (appendfsync always), the model made through node 1;
4. node 2 of the same two: each PATCH through node 2 then a GET through node 1, the pair
   timed (a host behind a load balancer that reads its write through another node).

And, for the cluster cases, the Redis round trips per call (the commands the nodes send, from
INFO commandstats over the run; a script's own commands are not counted).
Usage: bench/host_api_cluster_bench.py [--calls N]. Prints figures; never fails on a slow
machine. Run from the repository root with Debian's /usr/bin/python3 (redis-server needed)."""

import argparse
import contextlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("TRANSPORTSD", os.path.join(ROOT, "build", "transportsd"))

from harness import Daemon  # noqa: E402
from redis_server import RedisServer  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef"
SCHEMA = {"title": "Doc", "type": "object",
          "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
          "required": ["title"]}


class Api:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None):
        h = {"Authorization": "Bearer " + TOKEN}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        self.c.request(method, path, body=data, headers=h)
        r = self.c.getresponse()
        text = r.read()
        if r.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, text[:200]))
        return json.loads(text) if text else None


def config(**extra):
    c = {"admin_token_env": "BENCH_ADMIN", "schemas": {"Doc": SCHEMA}, "autosync_ms": 0}
    c.update(extra)
    return c


def timed(n, one):
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        one(i)
        lat.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    lat.sort()
    return {"calls_per_s": n / wall, "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


# The commands a node sends itself (a script's own commands are counted apart by Redis: they
# are not round trips).
TOP = ("evalsha", "eval", "get", "hmget", "hgetall")


def redis_calls(redis):
    """Round trips so far: the calls of the commands a node sends (INFO commandstats)."""
    import socket
    s = socket.create_connection(("127.0.0.1", redis.port))
    s.sendall(b"INFO commandstats\r\n")
    buf = b""
    while True:
        buf += s.recv(65536)
        if buf.startswith(b"$"):
            n = int(buf[1:buf.index(b"\r\n")])
            if len(buf) >= buf.index(b"\r\n") + 2 + n:
                break
    s.close()
    total = 0
    for line in buf.decode().splitlines():
        name = line.split(":")[0][len("cmdstat_"):]
        if line.startswith("cmdstat_") and name in TOP:
            total += int(line.split("calls=")[1].split(",")[0])
    return total


def patch_loop(api, path):
    return lambda i: api.call("PATCH", path, {"n": i})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=500)
    args = ap.parse_args()
    env = dict(os.environ, BENCH_ADMIN=TOKEN)
    rows = []
    body = {"schema": "Doc", "value": {"title": "bench"}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in (("one node, memory", config()),
                          ("one node, SQLite FULL",
                           config(storage={"sqlite": os.path.join(tmp, "b.db")}))):
            with Daemon(config=cfg, env=env, log_level="info") as d:
                a = Api(d.port)
                a.call("PUT", "/v1/tenants/t/models/m", body)
                rows.append((name, timed(args.calls, patch_loop(a, "/v1/tenants/t/models/m")),
                             None))
    with contextlib.ExitStack() as st:
        redis = st.enter_context(RedisServer())
        nodes = []
        for n in ("n1", "n2"):
            cfg = config(cluster={"redis": redis.url() + "/0", "node": n})
            d = st.enter_context(Daemon(config=cfg, env=env, log_level="info"))
            d.wait_log(r"synced", start=d.log_start)
            nodes.append(Api(d.port))
        a, b = nodes
        a.call("PUT", "/v1/tenants/t/models/m", body)
        before = redis_calls(redis)
        r = timed(args.calls, patch_loop(a, "/v1/tenants/t/models/m"))
        rows.append(("cluster: PATCH through node 1", r,
                     (redis_calls(redis) - before - 1) / args.calls))
        before = redis_calls(redis)

        def across(i):
            b.call("PATCH", "/v1/tenants/t/models/m", {"n": -i})
            got = a.call("GET", "/v1/tenants/t/models/m")
            if got["value"]["n"] != -i:
                raise RuntimeError("node 1 read %r after node 2 wrote %d" % (got, -i))
        r = timed(args.calls, across)
        rows.append(("cluster: PATCH through node 2, then GET through node 1", r,
                     (redis_calls(redis) - before - 1) / args.calls))
    print("host API, %d calls each, one keep-alive connection per node" % args.calls)
    print("%-58s %10s %9s %9s %14s" % ("case", "calls/s", "p50 ms", "p99 ms", "round trips"))
    for name, r, cmds in rows:
        print("%-58s %10.0f %9.2f %9.2f %14s" % (name, r["calls_per_s"], r["p50_ms"], r["p99_ms"],
                                                "" if cmds is None else "%.2f" % cmds))


if __name__ == "__main__":
    main()
