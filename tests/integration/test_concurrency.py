"""200 connections over 10 tenants writing concurrently to shared lww-map and lww models
and to their tenants' private models. At the end:

- every write got exactly one answer (ack or error), and nothing else answers a ref;
- every connection's replica, built only from snapshots, patches and its own acked
  private writes (RFC 7396), equals what a fresh connection of its tenant is sent;
- revs are continuous for every connection: each patch's `from` is the rev it held, each
  private ack's `from` too, and a shared ack names the rev the writer already holds.
"""

import asyncio
import random
import unittest

from harness import (DaemonTestCase, DOC_SCHEMA, TIMEOUT, close_all, connect, merge_patch,
                     open_client)

TENANTS = ["t%d" % i for i in range(10)]
PER_TENANT = 20           # 200 connections
WRITES = 6                # per connection
CHAOS = 20                # connections that write and drop, and half handshakes
READ_ONLY = "t9"          # subscribed to `counter` with read access only


def config():
    return {
        "autosync_ms": 50,
        "schemas": {"Doc": DOC_SCHEMA},
        "tenants": {t: {"models": {"notes": {"schema": "Doc", "value": {"title": t}}}}
                    for t in TENANTS},
        "shared": {
            "board": {"schema": "Doc", "merge": "lww-map", "value": {"title": "Board"},
                      "subscribers": {t: "write" for t in TENANTS}},
            "counter": {"schema": "Doc", "merge": "lww", "value": {"title": "Counter"},
                        "subscribers": {t: ("read" if t == READ_ONLY else "write")
                                        for t in TENANTS}},
        },
    }


class Conn:
    """One connection's view: replicas, what it sent, what answered."""

    def __init__(self, tenant, client, hello, snaps):
        self.tenant = tenant
        self.client = client
        self.conn = hello["conn"]
        self.models = {k: {"value": s["value"], "rev": s["rev"]} for k, s in snaps.items()}
        self.sent = {}       # ref -> (scope, id, patch)
        self.answers = {}    # ref -> [messages]
        self.problems = []

    def apply(self, m):
        t = m.get("type")
        if t == "patch":
            key = (m["scope"], m["id"])
            held = self.models.get(key)
            if held is None:
                self.problems.append("patch for a model never seen: %r" % m)
                return
            if m["from"] != held["rev"] or m["rev"] <= m["from"]:
                self.problems.append("patch from %s to %s while holding %s: %r"
                                     % (m["from"], m["rev"], held["rev"], m))
            held["value"] = merge_patch(held["value"], m["patch"])
            held["rev"] = m["rev"]
        elif t in ("ack", "error"):
            ref = m.get("ref")
            if ref not in self.sent:
                self.problems.append("answer to a ref never sent: %r" % m)
                return
            self.answers.setdefault(ref, []).append(m)
            if t == "error":
                return
            scope, id, patch = self.sent[ref]
            if (m["scope"], m["id"]) != (scope, id):
                self.problems.append("ack for another model: %r, sent %r" % (m, self.sent[ref]))
                return
            held = self.models[(scope, id)]
            if "from" in m:
                if scope != "private":
                    self.problems.append("a shared ack carries from: %r" % m)
                if m["from"] != held["rev"] or m["rev"] <= m["from"]:
                    self.problems.append("ack from %s to %s while holding %s: %r"
                                         % (m["from"], m["rev"], held["rev"], m))
                held["value"] = merge_patch(held["value"], patch)
                held["rev"] = m["rev"]
            elif m["rev"] != held["rev"]:
                self.problems.append("ack names rev %s while holding %s: %r"
                                     % (m["rev"], held["rev"], m))
        elif t == "pong":
            pass
        else:
            self.problems.append("unexpected message: %r" % m)


def plan(rng, tenant):
    """The writes of one connection: (scope, id, patch, ts or None, expected code or None)."""
    out = []
    for _ in range(WRITES):
        r = rng.random()
        if r < 0.30:
            patch = rng.choice([{"n": rng.randrange(100)}, {"body": "b%d" % rng.randrange(10)},
                                {"body": None}, {"x": {"y": rng.randrange(5)}}])
            out.append(("private", "notes", patch, None, None))
        elif r < 0.60:
            field = "f%d" % rng.randrange(12)
            value = rng.choice([rng.randrange(1000), None, {"k": rng.randrange(3)}])
            ts = None
            if rng.random() < 0.3:
                # An explicit HLC reading, sometimes far in the past: it may lose.
                ts = {"wall": rng.choice([1000, 1700000000000 + rng.randrange(10 ** 6)]),
                      "count": rng.randrange(3)}
            out.append(("shared", "board", {field: value}, ts, None))
        elif r < 0.90:
            code = "forbidden" if tenant == READ_ONLY else None
            out.append(("shared", "counter", {"n": rng.randrange(1000)}, None, code))
        else:
            id = rng.choice(["notes", "board", "counter"])
            out.append(("shared" if id != "notes" else "private", id, {"n": -1}, None,
                        "forbidden" if (tenant == READ_ONLY and id == "counter")
                        else "invalid"))
    return out


class Concurrency(DaemonTestCase):

    def test_200_connections_converge_with_continuous_revs(self):
        d = self.start_daemon(config())
        rng = random.Random(20261126)

        async def run():
            conns = []
            for t in TENANTS:
                for _ in range(PER_TENANT):
                    c, hello, snaps = await open_client(d, t)
                    self.assertEqual(set(snaps), {("private", "notes"), ("shared", "board"),
                                                  ("shared", "counter")})
                    conns.append(Conn(t, c, hello, snaps))
            self.assertEqual(len({c.conn for c in conns}), len(conns), "conn ids are unique")
            # Chaos besides: connections that write and drop without reading, and TCP
            # connections that drop in the middle of a handshake.
            chaos = [await connect(d, TENANTS[i % len(TENANTS)]) for i in range(CHAOS)]
            expected = {}

            async def chaos_writer(i, c):
                await c.send([{"type": "write", "scope": "shared", "id": "board", "ref": 1,
                               "patch": {"f%d" % (i % 12): "chaos%d" % i}},
                              {"type": "write", "scope": "private", "id": "notes", "ref": 2,
                               "patch": {"body": "chaos%d" % i}}])
                c.abort()

            async def half_handshake(i):
                r, w = await asyncio.open_connection("127.0.0.1", d.port)
                w.write(b"GET /ws/t%d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" % i)
                await w.drain()
                w.transport.abort()

            async def writer(c):
                ws = plan(rng, c.tenant)
                # Everyone writes at once: all writes leave before any answer is read.
                for i, (scope, id, patch, ts, code) in enumerate(ws):
                    ref = i + 1
                    c.sent[ref] = (scope, id, patch)
                    expected[(c.conn, ref)] = code
                    msg = {"type": "write", "scope": scope, "id": id, "ref": ref,
                           "patch": patch}
                    if ts is not None:
                        msg["ts"] = ts
                    await c.client.send(msg)

            async def reader(c):
                while len(c.answers) < WRITES:
                    c.apply(await c.client.recv(4 * TIMEOUT))

            await asyncio.gather(*(writer(c) for c in conns),
                                 *(chaos_writer(i, c) for i, c in enumerate(chaos)),
                                 *(half_handshake(i) for i in range(CHAOS)))
            await asyncio.gather(*(reader(c) for c in conns))
            # Every write is answered, so every patch is in every outbox: a ping barrier
            # per connection brings the rest in.
            async def settle(c):
                for m in await c.client.barrier(4 * TIMEOUT):
                    c.apply(m)
            await asyncio.gather(*(settle(c) for c in conns))

            problems = []
            for c in conns:
                problems += ["%s/%s: %s" % (c.tenant, c.conn, p) for p in c.problems]
                for ref in c.sent:
                    answers = c.answers.get(ref, [])
                    if len(answers) != 1:
                        problems.append("%s ref %d: %d answers %r" % (c.conn, ref,
                                                                      len(answers), answers))
                        continue
                    a = answers[0]
                    code = expected[(c.conn, ref)]
                    if code is None and a["type"] != "ack":
                        problems.append("%s ref %d: expected an ack, got %r" % (c.conn, ref, a))
                    if code is not None and (a["type"], a.get("code")) != ("error", code):
                        problems.append("%s ref %d: expected %s, got %r" % (c.conn, ref,
                                                                            code, a))
            self.assertEqual(problems[:20], [], "%d problems" % len(problems))

            # The truth: what fresh connections are sent.
            fresh = {}
            for t in TENANTS:
                f, _, snaps = await open_client(d, t)
                fresh[t] = {k: {"value": s["value"], "rev": s["rev"]} for k, s in snaps.items()}
                await close_all([f])
            self.assertEqual(fresh["t0"][("shared", "board")], fresh["t9"][("shared", "board")])
            self.assertGreater(fresh["t0"][("shared", "board")]["rev"], 100)
            self.assertGreater(fresh["t0"][("shared", "counter")]["rev"], 100)
            for c in conns:
                self.assertEqual(c.models, fresh[c.tenant], "replica of %s/%s"
                                 % (c.tenant, c.conn))
            await close_all([c.client for c in conns])

        self.run_async(run(), timeout=40 * TIMEOUT)


if __name__ == "__main__":
    unittest.main()
