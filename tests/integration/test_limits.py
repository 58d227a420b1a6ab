"""Resource bounds and the handshake's hygiene (issue 11), against the real daemon: what one
unauthenticated client can make the server hold or believe, each limit tried and passed.

Fast variants only: the expensive ones (thousands of connections, hundreds of MB) are
test_limits_stress.py, run by `make test-limits-stress`.

Raw requests go through rawws.py (our own RFC 6455 client, which builds the request line by
hand), well-formed ones through python3-websockets too.
"""
import asyncio
import json
import socket
import unittest

import websockets

import rawws
from harness import (TIMEOUT, DaemonTestCase, SharedDaemonTestCase, close_all, connect,
                     doc_config, open_client)


def refused(port, path, **kw):
    """A raw handshake: (status, body line)."""
    with rawws.Client(port) as c:
        r = c.handshake(path, **kw)
        n = int(r.header("Content-Length") or 0)
        until = c._until(None)
        while len(c.buf) < n:
            c._recv_some(until, "the body")
        return r.status, bytes(c.buf[:n]).decode()


class PathAndRequestLine(SharedDaemonTestCase):
    """Items 4 and 5: a path parameter is decoded exactly once, and an encoded CR or LF in
    the request line is refused before any header is looked at."""

    CONFIG = doc_config(origins=["https://good.example"])

    def test_a_tenant_key_is_decoded_once(self):
        # lws decodes %25 to '%'; the route used to decode "%62" again into "b".
        status, body = refused(self.daemon.port, "/ws/%2562ob")
        self.assertEqual(status, 400, body)
        self.assertIn("ambiguous", body)
        self.assertNotIn("connect tenant=bob", self.daemon.log())

    def test_an_encoded_question_mark_is_ambiguous(self):
        status, body = refused(self.daemon.port, "/ws/a%3Fb")
        self.assertEqual(status, 400, body)

    def test_a_key_with_control_characters_is_refused(self):
        for path in ("/ws/bo%01b", "/ws/bob%7f", "/ws/%09bob", "/ws/bob?resume=%1b1"):
            status, body = refused(self.daemon.port, path)
            self.assertEqual(status, 400, (path, body))

    def test_an_encoded_lf_injects_no_header(self):
        # Before: lws ended the request line at the decoded LF and parsed the rest as an
        # Origin header (403 "Origin: not allowed"). Now: 400, before any header check.
        for path in ("/ws/bob%0aOrigin:%20https://evil.example",
                     "/ws/bob%0AOrigin:%20https://evil.example",
                     "/ws/bob%0d%0aOrigin:%20https://evil.example",
                     "/ws/bob%0dx",
                     "/ws/bob?x=%0aOrigin:%20https://evil.example"):
            status, body = refused(self.daemon.port, path)
            self.assertEqual(status, 400, (path, body))
            self.assertIn("control character", body)
        # A header injected into a plain GET is refused the same way.
        status, body = refused(self.daemon.port, "/healthz%0aX-Y:%20z")
        self.assertEqual(status, 400, body)

    def test_the_real_origin_is_still_checked(self):
        status, body = refused(self.daemon.port, "/ws/bob",
                               headers=[("Origin", "https://evil.example")])
        self.assertEqual(status, 403, body)
        with rawws.Client(self.daemon.port) as c:
            c.upgrade("/ws/bob", headers=[("Origin", "https://good.example")])

    def test_http_1_0_is_no_websocket_handshake(self):
        status, body = refused(self.daemon.port, "/ws/bob", http_version="HTTP/1.0")
        self.assertEqual(status, 400, body)

    def test_python_websockets_sees_the_same(self):
        async def run():
            for path in ("/ws/%2562ob", "/ws/bob%0aOrigin:%20https://evil.example"):
                with self.assertRaises(websockets.InvalidStatusCode) as cm:
                    await websockets.connect("ws://127.0.0.1:%d%s" % (self.daemon.port, path),
                                             subprotocols=["transports.v1"])
                self.assertEqual(cm.exception.status_code, 400, path)
            # A plain key with an escape that decodes to itself is fine: "b%6Fb" is bob.
            c = await connect(self.daemon, "b%6Fb")
            hello, _ = await c.open()
            self.assertEqual(hello["type"], "hello")
            await close_all([c])
        self.run_async(run())


def write(ref, scope, mid, patch):
    return {"type": "write", "ref": ref, "scope": scope, "id": mid, "patch": patch}


def metric(daemon, name):
    status, _, text = daemon.http_get("/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no %s in /metrics" % name)


class LogsAndHealth(DaemonTestCase):
    """Item 7: log values cannot forge fields; /healthz tells the store's state; a reader
    closed for falling behind is logged and counted as 1013."""

    def test_a_tenant_key_cannot_forge_log_fields(self):
        d = self.start_daemon(doc_config())

        async def run():
            c = await connect(d, "alice%20tenant=bob%20conn=c1")
            await c.open()
            await c.send({"type": "ping", "ref": "x"})  # refused: logged with the tenant
            await c.recv()
            await close_all([c])
        self.run_async(run())
        d.wait_log(r'disconnect tenant="alice tenant=bob conn=c1" conn=c\d+ code=1000')
        log = d.log()
        self.assertIn('connect tenant="alice tenant=bob conn=c1" conn=', log)
        self.assertIn('refused tenant="alice tenant=bob conn=c1" conn=', log)
        self.assertNotRegex(log, r"tenant=alice tenant=bob")
        # Quotes and backslashes are escaped, so a quoted value cannot be closed early.
        async def run2():
            c = await connect(d, 'a%22%20b%5C')
            await c.open()
            await close_all([c])
        self.run_async(run2())
        d.wait_log(r'connect tenant="a\\" b\\\\" conn=')

    def test_healthz_in_memory(self):
        d = self.start_daemon(doc_config(storage={"memory": True}))
        status, _, body = d.http_get("/healthz")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok", "storage": "memory"}))

    def test_full_disk_healthz_503_reads_go_on_writes_internal_resend_acked_once(self):
        import resource
        d = self.start_daemon(doc_config(storage={"sqlite": "t.db"}))
        status, _, body = d.http_get("/healthz")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok", "storage": "ok"}))

        async def run():
            a, _, s = await open_client(d, "alice")
            b, _, _ = await open_client(d, "bob")
            rev = s[("private", "notes")]["rev"]
            await a.send(write(1, "private", "notes", {"body": "before"}))
            self.assertEqual((await a.recv())["type"], "ack")
            # The disk is full: every file write past 1 KiB fails (EFBIG, SIGXFSZ ignored).
            # The daemon's log is a file too: its lines are lost meanwhile.
            # Only the soft limit: raising it back needs no privilege.
            resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
            try:
                await a.send(write(2, "private", "notes", {"body": "during"}))
                m = await a.recv()
                self.assertEqual((m["type"], m["ref"], m["code"]), ("error", 2, "internal"), m)
                status, _, body = d.http_get("/healthz")
                self.assertEqual((status, json.loads(body)),
                                 (503, {"status": "failing", "storage": "failing"}))
                self.assertGreaterEqual(metric(d, "transports_store_commit_failures_total"), 1)
                # Reads go on: bob connects and reads his notes, alice's connection lives.
                b2, _, sb = await open_client(d, "bob")
                self.assertEqual(sb[("private", "notes")]["value"]["title"], "Bob notes")
                await close_all([b2])
                await a.send({"type": "ping", "ref": 3})
                self.assertEqual(await a.recv(), {"type": "pong", "ref": 3})
            finally:
                resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                                 (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            # Space is back: the resend of ref 2 is acked, applied once.
            await a.send(write(2, "private", "notes", {"body": "during"}))
            m = await a.recv()
            self.assertEqual((m["type"], m["ref"], m["rev"]), ("ack", 2, rev + 2), m)
            await a.send(write(2, "private", "notes", {"body": "during"}))
            m = await a.recv()
            self.assertEqual((m["type"], m["ref"], m["rev"]), ("ack", 2, rev + 2), m)
            self.assertEqual(await a.barrier(), [])
            status, _, body = d.http_get("/healthz")
            self.assertEqual((status, json.loads(body)), (200, {"status": "ok", "storage": "ok"}))
            await close_all([a, b])
        self.run_async(run())
        # What was acked survives a restart.
        d.stop()
        d.start()

        async def read_notes():
            a, _, s = await open_client(d, "alice")
            await close_all([a])
            return s[("private", "notes")]
        self.assertEqual(self.run_async(read_notes())["value"]["body"], "during")

    def test_a_slow_reader_is_logged_and_counted_1013(self):
        d = self.start_daemon(doc_config(limits={"max_outbox_bytes": 65536,
                                                 "writes_per_second": 100000,
                                                 "ping_timeout_ms": 1000}))

        async def run():
            with rawws.Client(d.port) as slow:
                slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                slow.upgrade("/ws/alice")
                w, _, _ = await open_client(d, "alice")
                big = "x" * 16000
                for i in range(0, 600, 20):
                    await w.send([write(j + 1, "private", "notes",
                                        {"body": big if j % 2 == 0 else big + "y"})
                                  for j in range(i, i + 20)])
                    await w.recv_n(20)
                # The slow reader never reads: it is dropped once ping_timeout_ms passes
                # without progress, and logged with the code it was closed for.
                m = d.wait_log(r"disconnect tenant=alice conn=(c\d+) code=(\d+)", timeout=TIMEOUT)
                self.assertEqual(m.group(2), "1013", d.log()[-2000:])
                await close_all([w])
        self.run_async(run())
        status, _, text = d.http_get("/metrics")
        self.assertIn('transports_closes_total{code="1013"} 1', text)
        self.assertIn('transports_closes_total{code="1006"} 0', text)


if __name__ == "__main__":
    unittest.main()
