"""examples/serve.c served for real: the guide's setup over WebSocket.

The example binary ($TP_BUILD_DIR/examples/example_serve) is started on
127.0.0.1:0; the port is read from the "listening on 127.0.0.1:PORT" line it
prints on stdout. Clients of Debian's python3-websockets (through harness.Client,
which flattens batches) check what the guide promises: each tenant's snapshots,
a shared write echoed to its writer with an ack and to the other subscriber,
READ access refused with forbidden, the host thread's changes published by the
autosync tick through tp_server_post. SIGTERM and SIGINT stop it: every client
gets a close with 1001 and the process exits 0.
"""

import asyncio
import os
import re
import select
import signal
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Client

BUILD_DIR = os.environ.get("TP_BUILD_DIR", "")
EXAMPLE = os.path.join(BUILD_DIR, "examples", "example_serve")
LISTENING_RE = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$")


class ExampleServe(unittest.TestCase):
    def setUp(self):
        if not os.access(EXAMPLE, os.X_OK):
            self.fail("TP_BUILD_DIR must hold examples/example_serve (got %r)" % EXAMPLE)
        # stderr (the hub's log) goes to a file, never a pipe the example could block on.
        self.log = tempfile.TemporaryFile()
        self.addCleanup(self.log.close)
        self.proc = subprocess.Popen([EXAMPLE, "127.0.0.1:0"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log,
                                     env=harness.sanitizer_env())
        self.addCleanup(self.reap)
        line = self.read_line()
        m = LISTENING_RE.match(line)
        self.assertIsNotNone(m, "first line must be 'listening on 127.0.0.1:PORT', got %r\n%s"
                             % (line, self.log_text()))
        self.port = int(m.group(1))

    def read_line(self):
        """The next stdout line, waiting on the pipe itself (never a sleep)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], harness.TIMEOUT)
        if not ready:
            self.fail("example_serve printed nothing within %.0f s\n%s"
                      % (harness.TIMEOUT, self.log_text()))
        return self.proc.stdout.readline().decode().rstrip("\n")

    def log_text(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def reap(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

    def url(self, tenant):
        return "ws://127.0.0.1:%d/ws/%s" % (self.port, tenant)

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 6 * harness.TIMEOUT))

    async def stop(self, sig, clients):
        """Sends sig; every client must get a close with 1001. Returns their close codes."""
        self.proc.send_signal(sig)
        return [await c.wait_closed() for c in clients]

    def check_stopped(self, codes, clients):
        """1001 for every client, exit code 0, 'stopped' printed, no sanitizer report."""
        self.assertEqual(codes, [1001] * clients)
        code = self.proc.wait(harness.TIMEOUT)
        log = self.log_text()
        self.assertEqual(code, 0, log)
        self.assertEqual(self.proc.stdout.read().decode(), "stopped\n")
        for mark in harness.SANITIZER_MARKS:
            self.assertNotIn(mark, log)

    def test_the_guide_served(self):
        async def scenario():
            alice = await Client.connect(self.url("alice"))
            hello, snaps = await alice.open()
            self.assertEqual(alice.subprotocol, harness.SUBPROTOCOL)
            self.assertEqual((hello["protocol"], hello["tenant"], hello["tick_ms"]),
                             (1, "alice", 50))
            self.assertEqual(set(snaps), {("private", "notes"), ("shared", "roadmap"),
                                          ("shared", "status")})
            self.assertEqual(snaps[("private", "notes")]["value"],
                             {"title": "Alice notes", "body": ""})
            self.assertEqual(snaps[("shared", "roadmap")]["access"], "write")
            self.assertEqual(snaps[("shared", "status")]["access"], "read")

            bob = await Client.connect(self.url("bob"))
            _, bob_snaps = await bob.open()
            self.assertEqual(bob_snaps[("private", "notes")]["value"]["title"], "Bob notes")
            self.assertEqual(bob_snaps[("shared", "roadmap")]["access"], "read")

            # A shared write: the writer gets the merged patch, then the ack naming its rev.
            await alice.send({"type": "write", "scope": "shared", "id": "roadmap", "ref": 1,
                              "patch": {"body": "Q1: ship the server"}})
            patch, _ = await alice.wait_for(
                lambda m: m.get("type") == "patch" and m.get("id") == "roadmap")
            self.assertEqual((patch["origin"], patch["patch"]),
                             (hello["conn"], {"body": "Q1: ship the server"}))
            ack, _ = await alice.wait_type("ack")
            self.assertEqual((ack["ref"], ack["id"], ack["rev"]), (1, "roadmap", patch["rev"]))
            # ... and every other subscriber gets the same patch.
            seen, _ = await bob.wait_for(
                lambda m: m.get("type") == "patch" and m.get("id") == "roadmap")
            self.assertEqual(seen, patch)

            # bob may only read the roadmap.
            await bob.send({"type": "write", "scope": "shared", "id": "roadmap", "ref": 1,
                            "patch": {"body": "Bob was here"}})
            error, _ = await bob.wait_type("error")
            self.assertEqual((error["ref"], error["code"]), (1, "forbidden"))

            # The host thread's change, posted to the loop, published by autosync.
            host, _ = await bob.wait_for(
                lambda m: m.get("type") == "patch" and m.get("id") == "status")
            self.assertEqual(host["origin"], "host")
            self.assertRegex(host["patch"]["body"], r"^up \d+ s$")
            return await self.stop(signal.SIGTERM, [alice, bob])

        self.check_stopped(self.run_async(scenario()), 2)
        # The hub's log lines reach stderr through the example's log function.
        log = self.log_text()
        self.assertIn("connect tenant=alice", log)
        self.assertRegex(log, r"tenant=bob .*forbidden")

    def test_sigint_stops_it_too(self):
        async def scenario():
            alice = await Client.connect(self.url("alice"))
            await alice.open()
            return await self.stop(signal.SIGINT, [alice])

        self.check_stopped(self.run_async(scenario()), 1)


if __name__ == "__main__":
    unittest.main()
