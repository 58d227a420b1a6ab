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


if __name__ == "__main__":
    unittest.main()
