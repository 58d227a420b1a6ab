#!/usr/bin/python3
"""Handshakes per second against transportsd: auth.mode "path" against "jwt" with HS256 and
ES256 tokens (issue 13), in one run, printing the ratios.

Each handshake: TCP connect, the upgrade request (with `Authorization: Bearer` in jwt mode),
the 101 and the first frame (hello, the tenant's snapshot, synced), then the socket is closed.
Client threads keep the daemon busy; the figure that matters is the daemon's CPU per
handshake (utime + stime from /proc), which the client's speed does not change; the wall rate
is printed too. Tokens are made with PyJWT (python3-jwt), keys with python3-cryptography.

    bench/handshake_bench.py [--count N] [--threads T] [--build DIR]

Figures, not a test: it never fails on a slow machine.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SECRET = "k" * 48


def start(build, cfg, env, tmp, name):
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    log = open(os.path.join(tmp, name + ".log"), "wb")
    p = subprocess.Popen([os.path.join(build, "transportsd"), "--config", path, "--listen",
                          "127.0.0.1:0", "--log-level", "warn"], stdout=log, stderr=log,
                         env=env)
    # --log-level warn drops the listening line: find the port from the process instead.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "pid=%d," % p.pid in line:
                return p, int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        if p.poll() is not None:
            sys.exit("transportsd exited: see %s" % log.name)
        time.sleep(0.05)
    p.kill()
    sys.exit("transportsd did not listen")


def cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handshake(port, token):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET /ws/alice HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: transports.v1\r\n" % key)
    if token:
        req += "Authorization: Bearer %s\r\n" % token
    s.sendall((req + "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the response")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("refused: %r" % head[:40])
    while len(rest) < 2:  # the first frame (hello...) has begun
        rest += s.recv(65536)
    s.close()


def run(port, pid, token, count, threads):
    for _ in range(100):  # warm up
        handshake(port, token)
    per = count // threads
    errors = []

    def worker():
        try:
            for _ in range(per):
                handshake(port, token)
        except Exception as e:  # reported below
            errors.append(e)
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    c0, w0 = cpu(pid), time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall, used = time.monotonic() - w0, cpu(pid) - c0
    if errors:
        sys.exit("handshake failed: %s" % errors[0])
    n = per * threads
    return n / wall, used / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tp-hsbench-")
    procs = []
    try:
        es = ec.generate_private_key(ec.SECP256R1())
        with open(os.path.join(tmp, "es.pem"), "wb") as f:
            f.write(es.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
        base = {"storage": {"memory": True},
                "schemas": {"D": {"type": "object", "properties": {"title": {"type": "string"}}}},
                "tenants": {"alice": {"models": {"n": {"schema": "D", "value": {"title": "a"}}}}},
                "limits": {"max_connections_per_address": 100000}}
        env = dict(os.environ, TP_BENCH_HS=SECRET)
        path_cfg = dict(base)
        jwt_cfg = dict(base, auth={"mode": "jwt", "audience": "bench", "keys": [
            {"alg": "HS256", "secret_env": "TP_BENCH_HS"},
            {"alg": "ES256", "public_key_file": os.path.join(tmp, "es.pem")}]})
        exp = int(time.time()) + 3600
        hs = jwt.encode({"sub": "alice", "aud": "bench", "exp": exp}, SECRET, "HS256")
        es256 = jwt.encode({"sub": "alice", "aud": "bench", "exp": exp}, es, "ES256")
        p1, port1 = start(a.build, path_cfg, env, tmp, "path")
        procs.append(p1)
        p2, port2 = start(a.build, jwt_cfg, env, tmp, "jwt")
        procs.append(p2)
        rows = [("path (no token)", p1, port1, None), ("jwt HS256", p2, port2, hs),
                ("jwt ES256", p2, port2, es256)]
        print("handshakes: %d per row, %d client threads; daemon CPU from /proc" %
              (a.count, a.threads))
        print("%-18s %14s %18s %22s %10s" % ("auth", "handshakes/s", "daemon CPU µs each",
                                             "per daemon CPU second", "vs path"))
        base_us = None
        for name, p, port, token in rows:
            rate, us = run(port, p.pid, token, a.count, a.threads)
            base_us = base_us or us
            print("%-18s %14.0f %18.1f %22.0f %9.2fx" % (name, rate, us, 1e6 / us,
                                                          us / base_us))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
