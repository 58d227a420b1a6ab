"""Nothing a client sends can crash the server, leak or touch what it may not (issue 3): a
seeded storm of hostile input over real sockets against `transportsd --demo` (under ASan in
the sanitizer build, where any report fails the test), while a well-behaved client stays
connected and must see nothing but its own tenant's traffic, correct and in order.

Each hostile connection gets one of: random bytes instead of an HTTP request; a handshake then
random bytes; frames with random opcodes, reserved bits and lengths; text frames of invalid
UTF-8; mutated protocol messages (wrong types, missing and extra fields, huge numbers, deep
nesting, models that do not exist, another tenant's ids); fragments left unfinished. Then the
socket is dropped, closed halfway, or left to the server's own close.
"""
import asyncio
import json
import os
import random
import socket
import unittest

from harness import (DaemonTestCase, open_client, raw_frame, raw_handshake)

SEED = int(os.environ.get("TP_GARBAGE_SEED", "20261126"))
CONNECTIONS = 150

VALID = [
    {"type": "write", "scope": "private", "id": "notes", "ref": 1, "patch": {"body": "x"}},
    {"type": "write", "scope": "shared", "id": "roadmap", "ref": 2, "patch": {"title": "t"}},
    {"type": "resume", "models": [{"scope": "private", "id": "notes", "rev": 1}],
     "client": "c"},
    {"type": "ping", "ref": 3},
]

ODD_VALUES = [None, True, -1, 0, 2 ** 63, -2 ** 63, 1e308, "", "x" * 300, [], {}, [[[[[]]]]],
              {"a": {"b": {"c": {}}}}, "\u0000", "\ud7ff", "notes", "roadmap", "bob", 1.5]


def mutate(rng, msg):
    m = json.loads(json.dumps(msg))
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        keys = list(m.keys())
        if op < 0.3 and keys:
            m[rng.choice(keys)] = rng.choice(ODD_VALUES)
        elif op < 0.5 and keys:
            del m[rng.choice(keys)]
        elif op < 0.7:
            m[rng.choice(["type", "scope", "id", "ref", "patch", "ts", "models", "client",
                          "extra"])] = rng.choice(ODD_VALUES)
        elif op < 0.85:
            m["patch"] = {rng.choice(["title", "body", "zzz", ""]): rng.choice(ODD_VALUES)}
        else:
            m["ts"] = {"wall": rng.choice(ODD_VALUES), "count": rng.choice(ODD_VALUES)}
    return m


def deep(n):
    return "[" * n + "]" * n


def hostile_payloads(rng):
    """A list of bytes to send after a successful handshake."""
    out = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.randrange(8)
        if kind == 0:
            out.append(os.urandom(rng.randint(1, 300)))
        elif kind == 1:
            op = rng.choice([0, 1, 2, 3, 7, 8, 9, 10, 11, 15])
            payload = os.urandom(rng.randint(0, 200))
            fr = bytearray(raw_frame(op, payload, fin=rng.random() < 0.7))
            if rng.random() < 0.3:
                fr[0] |= rng.choice([0x10, 0x20, 0x40])
            out.append(bytes(fr))
        elif kind == 2:
            bad = rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                              b"{\"type\":\"ping\",\"ref\":1,\"x\":\"\xe2\x82\"}"])
            out.append(raw_frame(1, bad))
        elif kind == 3:
            text = json.dumps(mutate(rng, rng.choice(VALID))).encode()
            out.append(raw_frame(1, text))
        elif kind == 4:
            batch = [mutate(rng, rng.choice(VALID)) for _ in range(rng.randint(1, 20))]
            batch.append(rng.choice(ODD_VALUES))
            out.append(raw_frame(1, json.dumps(batch).encode()))
        elif kind == 5:
            out.append(raw_frame(1, deep(rng.choice([100, 5000, 100000])).encode()))
        elif kind == 6:
            text = json.dumps(rng.choice(VALID)).encode()
            cut = rng.randint(1, len(text) - 1)
            out.append(raw_frame(1, text[:cut], fin=False))  # never finished
        else:
            # A header announcing more than will ever come.
            out.append(bytes([0x81, 0xFF]) + (2 ** rng.randint(20, 62)).to_bytes(8, "big")
                       + os.urandom(4) + os.urandom(rng.randint(0, 64)))
    return out


def storm(port, rng):
    for _ in range(CONNECTIONS):
        tenant = rng.choice(["alice", "bob", "mallory"])
        try:
            if rng.random() < 0.1:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(rng.choice([os.urandom(rng.randint(1, 2000)),
                                      b"GET /ws/alice HTTP/1.1\r\nHost: x\r\n" + os.urandom(100),
                                      b"GET " + b"/a" * 3000 + b" HTTP/1.1\r\n\r\n"]))
            else:
                s, status, _, _ = raw_handshake(port, "/ws/" + tenant, timeout=5)
                if status != 101:
                    s.close()
                    continue
                for chunk in hostile_payloads(rng):
                    s.sendall(chunk)
            s.settimeout(0.05)
            try:
                s.recv(65536)
            except OSError:
                pass
            if rng.random() < 0.5:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        except OSError:
            pass  # the server may close first: that is allowed


class Garbage(DaemonTestCase):

    def test_hostile_storm_leaves_the_server_and_other_tenants_intact(self):
        d = self.start_daemon(demo=True)
        rng = random.Random(SEED)

        async def run():
            # bob's witness: read-only on the roadmap, his own private notes.
            bob, _, _ = await open_client(d, "bob")
            await asyncio.get_running_loop().run_in_executor(None, storm, d.port, rng)
            # The server is alive and serves bob correctly.
            await bob.send({"type": "write", "scope": "private", "id": "notes", "ref": 1,
                            "patch": {"body": "still here"}})
            msgs = await bob.barrier()
            acks = [m for m in msgs if m.get("type") == "ack"]
            self.assertEqual(len(acks), 1, "seed %d: %r" % (SEED, msgs))
            # Nothing of alice's (private) reached bob; every patch bob saw is of a
            # model he can see, in rev order.
            for m in msgs:
                if m.get("type") == "patch":
                    self.assertIn((m["scope"], m["id"]), {("shared", "roadmap"),
                                                          ("private", "notes")}, m)
            # A fresh connection sees valid models: every title is still a string.
            fresh, _, snaps2 = await open_client(d, "alice")
            self.assertEqual(set(snaps2), {("private", "notes"), ("shared", "roadmap")})
            for s in snaps2.values():
                self.assertIsInstance(s["value"].get("title"), str, "seed %d: %r" % (SEED, s))
            for c in (bob, fresh):
                await c.close()
            # The storm reached the paths it was meant for.
            status, _, text = d.http_get("/metrics")
            self.assertEqual(status, 200)
            metrics = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    metrics[name] = float(value)
            refused = sum(v for k, v in metrics.items() if k.startswith("transports_refused_total"))
            failed = sum(metrics.get('transports_closes_total{code="%d"}' % c, 0)
                         for c in (1002, 1003, 1007, 1009))
            self.assertGreater(metrics["transports_connections_opened_total"], 100, text)
            self.assertGreater(refused, 10, text)
            self.assertGreater(failed, 10, text)

        self.run_async(run(), timeout=120)


if __name__ == "__main__":
    unittest.main()
