"""transportsd --demo under valgrind memcheck: a short guide scenario and a few bad
inputs, then SIGTERM; the daemon must exit 0 with no memcheck error and no leak
(definite, indirect or possible). Registered only in the plain build."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import (DaemonTestCase, TRANSPORTSD, connect, doc_config,
                     open_client, require_daemon)

VALGRIND = ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible", "--track-fds=no"]

# Valgrind runs the daemon 20 to 50 times slower: every wait is long.
SLOW_TIMEOUT = 60.0


def write(ref, scope, id, patch):
    return {"type": "write", "scope": scope, "id": id, "ref": ref, "patch": patch}


class Valgrind(DaemonTestCase):

    def test_demo_under_memcheck(self):
        self.assertIsNotNone(shutil.which("valgrind"), "valgrind is required for this test")
        d = self.start_daemon(demo=True, wrapper=VALGRIND, start_timeout=SLOW_TIMEOUT,
                              stop_timeout=SLOW_TIMEOUT)
        T = SLOW_TIMEOUT

        async def run():
            a1, h1, s1 = await open_client(d, "alice", timeout=T)
            a2, _, _ = await open_client(d, "alice", timeout=T)
            b, _, _ = await open_client(d, "bob", timeout=T)
            # The guide: a private write, a shared write, a refused one.
            await a1.send({"type": "ping", "ref": 0, "client": "vg-1"})
            self.assertEqual(await a1.recv(T), {"type": "pong", "ref": 0})
            await a1.send(write(1, "private", "notes", {"body": "x"}))
            self.assertEqual((await a1.recv(T))["type"], "ack")
            self.assertEqual((await a2.recv(T))["type"], "patch")
            await a1.send(write(2, "shared", "roadmap", {"body": "Q1"}))
            self.assertEqual([m["type"] for m in await a1.recv_n(2, T)], ["patch", "ack"])
            self.assertEqual((await b.recv(T))["type"], "patch")
            await b.send(write(1, "shared", "roadmap", {"body": "no"}))
            self.assertEqual((await b.recv(T))["code"], "forbidden")
            # Bad inputs: not JSON, a bad batch, a binary frame (1003).
            await b.send_text("{not json")
            self.assertEqual((await b.recv(T))["code"], "bad_request")
            await b.send([{"type": "fly", "ref": 2}, 7, write(3, "private", "nope", {})])
            self.assertEqual([m["code"] for m in await b.recv_n(3, T)],
                             ["bad_request", "bad_request", "not_found"])
            await a2.ws.send(b"\x00\x01binary")
            self.assertEqual(await a2.wait_closed(T), 1003)
            # Presence (issue 17): set, fanned out, refused over 4 KiB, gone with a
            # dropped connection.
            await b.send({"type": "presence", "scope": "shared", "id": "roadmap",
                          "state": {"name": "B"}})
            self.assertEqual((await a1.wait_type("presence", T))[0]["state"], {"name": "B"})
            await a1.send({"type": "presence", "scope": "shared", "id": "roadmap",
                           "state": {"name": "A"}})
            await b.wait_for(lambda m: m.get("type") == "presence"
                             and m.get("state") == {"name": "A"}, T)
            await b.send({"type": "presence", "scope": "shared", "id": "roadmap",
                          "state": {"s": "x" * 5000}})
            self.assertEqual((await b.wait_type("error", T))[0]["code"], "too_large")
            # A dropped connection (its presence leaves), then a resume with a resent
            # write.
            a1.abort()
            m, _ = await b.wait_for(lambda m: m.get("type") == "presence"
                                    and m.get("state") is None, T)
            self.assertEqual(m["conn"], h1["conn"])
            r = await connect(d, "alice", query="resume=1", timeout=T)
            self.assertEqual((await r.recv(T))["type"], "hello")
            await r.send({"type": "resume", "client": "vg-1", "models": [
                {"scope": "private", "id": "notes", "rev": 1}]})
            await r.wait_type("synced", T)
            await r.send(write(1, "private", "notes", {"body": "x"}))
            self.assertEqual((await r.recv(T))["type"], "ack")
            # Connections left open: SIGTERM must close them (1001) and free everything.
            d.send_signal(15)
            self.assertEqual(await r.wait_closed(T), 1001)
            self.assertEqual(await b.wait_closed(T), 1001)

        asyncio.run(asyncio.wait_for(run(), 10 * T))
        code = d.wait()
        log = d.log()
        self.assertEqual(code, 0, log)
        self.assertIn("Memcheck", log)
        self.assertRegex(log, r"ERROR SUMMARY: 0 errors from 0 contexts", log)
        for kind in ("definitely", "indirectly", "possibly"):
            m = re.search(kind + r" lost: ([\d,]+) bytes", log)
            if m:
                self.assertEqual(m.group(1), "0", log)
        d.check_log()


    def test_limits_under_memcheck(self):
        """Issue 11's refusals and closes under memcheck: an injected header line (400), an
        ambiguous key (400), a forged log field, per-address connections (429) and pending
        handshakes (closed at accept), a trusted proxy's header, an unfinished message past
        its deadline (1008) and past the server-wide bytes (1013)."""
        import socket
        import time
        import rawws
        self.assertIsNotNone(shutil.which("valgrind"), "valgrind is required for this test")
        cfg = doc_config(storage={"memory": True},
                         limits={"max_connections_per_address": 2,
                                 "max_pending_handshakes_per_address": 3,
                                 "message_timeout_ms": 4000, "max_unfinished_bytes": 8192},
                         trusted_proxies=["127.0.0.2"], client_address_header="X-Real-IP")
        d = self.start_daemon(cfg, wrapper=VALGRIND, start_timeout=SLOW_TIMEOUT,
                              stop_timeout=SLOW_TIMEOUT)
        T = SLOW_TIMEOUT
        for path in ("/ws/bob%0aOrigin:%20x", "/ws/%2562ob"):
            with rawws.Client(d.port, deadline=T) as c:
                self.assertEqual(c.handshake(path).status, 400)
        a = rawws.Client(d.port, deadline=T)
        a.open("/ws/alice%20tenant=bob")
        b = rawws.Client(d.port, deadline=T)
        b.open("/ws/alice")
        with rawws.Client(d.port, deadline=T) as c:
            self.assertEqual(c.handshake("/ws/bob").status, 429)
        with rawws.Client(d.port, deadline=T, source="127.0.0.2") as c:
            self.assertEqual(c.handshake("/ws/bob", headers=[("X-Real-IP", "203.0.113.9")])
                             .status, 101)
        held = [socket.create_connection(("127.0.0.1", d.port), timeout=T) for _ in range(3)]
        extra = socket.create_connection(("127.0.0.1", d.port), timeout=T)
        self.assertEqual(extra.recv(1), b"")
        extra.close()
        for s in held:
            s.close()
        # 8 KiB of unfinished messages at most: a's 4 KiB buffer, then b's does not fit.
        a.send_frame(rawws.OP_TEXT, b'{"type":"ping",' + b" " * 3000, fin=False)
        time.sleep(0.5)  # a's fragment is read first (well inside its 4 s)
        b.send_frame(rawws.OP_TEXT, b'{"type":' + b" " * 5000, fin=False)
        b.expect_close(1013, timeout=T)
        a.expect_close(1008, timeout=T)
        for c in (a, b):
            c.close()
        d.wait_log(r"disconnect tenant=\"alice tenant=bob\" conn=c[0-9a-f]+ code=1008", timeout=T)
        d.send_signal(15)
        code = d.wait()
        log = d.log()
        self.assertEqual(code, 0, log)
        self.assertIn("Memcheck", log)
        self.assertRegex(log, r"ERROR SUMMARY: 0 errors from 0 contexts", log)
        for kind in ("definitely", "indirectly", "possibly"):
            m = re.search(kind + r" lost: ([\d,]+) bytes", log)
            if m:
                self.assertEqual(m.group(1), "0", log)
        d.check_log()

    def test_config_error_under_memcheck(self):
        require_daemon(self)
        # A refused config frees what it built: exit 2 (99 would be a memcheck error).
        cfg = doc_config()
        cfg["shared"]["roadmap"]["value"] = {"title": "R", "n": -1}
        with tempfile.TemporaryDirectory(prefix="tp-vg-") as tmp:
            path = os.path.join(tmp, "config.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            p = subprocess.run(VALGRIND + [TRANSPORTSD, "--config", path], capture_output=True,
                               timeout=SLOW_TIMEOUT, stdin=subprocess.DEVNULL)
        err = p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 2, err)
        self.assertIn("shared.roadmap.value: n:", err)
        self.assertRegex(err, r"ERROR SUMMARY: 0 errors from 0 contexts", err)


if __name__ == "__main__":
    unittest.main()
