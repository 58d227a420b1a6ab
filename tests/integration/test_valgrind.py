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
            # A dropped connection, then a resume with a resent write.
            a1.abort()
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
