"""RFC 6455 opening handshake (4.1, 4.2, 4.4) and handshake limits, on raw sockets.

A valid request is upgraded (101, the right Sec-WebSocket-Accept, `transports.v1` selected when
offered, no extension selected). An invalid one gets an HTTP error status and never 101:
PROTOCOL.md's Refused handshakes (400 not a valid handshake or only other subprotocols, 404 no
route), RFC 6455 4.2.2 (an unsupported version: 426 or 400 with Sec-WebSocket-Version). A
request that never completes is closed after limits.handshake_timeout_ms; a huge header is
refused with a 4xx status (RFC 7230 3.2.5).

Where libwebsockets 4.1.6 (whose HTTP parser the server cannot change) closes TCP without any
response, the case asserts only that no WebSocket connection comes of the request
(refused_or_closed: an error status or a bare close, never 101); the error status is required in
strict_rfc6455.py (`make test-rfc-strict`; README.md), as is refusing HTTP/1.0, which lws
upgrades.
"""

import time
import unittest

import harness
import rawws
from rawws import SUBPROTOCOL

HANDSHAKE_TIMEOUT_MS = 1000
SLOW_CONFIG = {
    "schemas": {"Document": {"title": "Document", "type": "object",
                             "properties": {"title": {"type": "string"}},
                             "required": ["title"]}},
    "tenants": {"alice": {"models": {"notes": {"schema": "Document",
                                               "value": {"title": "Alice notes"}}}}},
    "limits": {"handshake_timeout_ms": HANDSHAKE_TIMEOUT_MS},
}


class Case(harness.SharedDaemonTestCase):
    DEMO = True

    def client(self):
        c = rawws.Client(self.daemon.port)
        self.addCleanup(c.close)
        return c

    def refused(self, statuses, path="/ws/alice", **kw):
        """Sends a handshake that must be refused with one of statuses; returns the response."""
        c = self.client()
        r = c.handshake(path, **kw)
        self.assertIn(r.status, statuses, "refused handshake: %r" % r)
        self.assertIsNone(r.header("Sec-WebSocket-Accept"), r)
        return r

    def refused_or_closed(self, statuses, **kw):
        """Sends a handshake that must not open a WebSocket connection: within the deadline,
        either an HTTP response with one of statuses and no Sec-WebSocket-Accept (as refused()
        checks), or the TCP connection closed (EOF or reset) with no byte sent. Returns the
        response, or None on a bare close."""
        c = self.client()
        try:
            c.send(c.request_bytes(**kw))
        except OSError:
            pass  # the server may stop reading; its answer (or its close) is still due
        try:
            r = c.read_response()
        except rawws.ConnectionClosed as e:
            self.assertEqual(bytes(c.buf), b"", "TCP closed inside a response: %s" % e)
            return None
        except rawws.TimedOut as e:
            self.fail("the request was neither refused nor closed: %s" % e)
        self.assertIn(r.status, statuses, "refused handshake: %r" % r)
        self.assertIsNone(r.header("Sec-WebSocket-Accept"), r)
        return r


class Handshake(Case):
    """RFC 6455 4.1, 4.2.1, 4.2.2; PROTOCOL.md, Transport and Refused handshakes. An HTTP/1.0
    request (4.2.1 item 1: HTTP/1.1 or higher) is only in strict_rfc6455.py: libwebsockets
    4.1.6 upgrades it."""

    def test_upgrade_selects_transports_v1(self):
        c = self.client()
        r = c.upgrade()
        self.assertEqual(r.header("Sec-WebSocket-Protocol"), SUBPROTOCOL)
        self.assertEqual(c.recv_json().get("type"), "hello")

    def test_transports_v1_among_others(self):
        c = self.client()
        r = c.upgrade(protocols=("chat", SUBPROTOCOL, "superchat"))
        self.assertEqual(r.header("Sec-WebSocket-Protocol"), SUBPROTOCOL)

    def test_transports_v1_in_a_second_header_line(self):
        # 11.3.4: the header may be repeated, which means the same as one joined value.
        c = self.client()
        r = c.handshake(protocols=("chat",),
                        headers=[("Sec-WebSocket-Protocol", SUBPROTOCOL)])
        rawws.check_upgrade(r, c.key, ("chat", SUBPROTOCOL))
        self.assertEqual(r.header("Sec-WebSocket-Protocol"), SUBPROTOCOL)

    def test_no_subprotocol_accepted(self):
        # PROTOCOL.md: a client that offers none is accepted; 4.2.2: then none is named.
        c = self.client()
        r = c.upgrade(protocols=())
        self.assertIsNone(r.header("Sec-WebSocket-Protocol"))
        c.recv_json()
        c.wait_json(lambda m: m.get("type") == "synced")
        c.ping_json(1)

    def test_only_other_subprotocols_refused(self):
        self.refused((400,), protocols=("chat", "superchat"))

    def test_unknown_extension_not_selected(self):
        # 4.2.2: the server selects only extensions it supports; check_upgrade fails on any.
        c = self.client()
        c.upgrade(headers=[("Sec-WebSocket-Extensions", "x-no-such-extension")])

    def test_case_insensitive_headers(self):
        # 4.2.1: Upgrade's value is compared case-insensitively; Connection is a token list
        # (browsers send "keep-alive, Upgrade"); header names are case-insensitive (RFC 7230).
        c = self.client()
        c.key = rawws.new_key()
        data = ("GET /ws/alice HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nupgrade: WebSocket\r\n"
                "connection: keep-alive, Upgrade\r\nsec-websocket-key: %s\r\n"
                "sec-websocket-version: 13\r\nsec-websocket-protocol: %s\r\n\r\n"
                % (c.port, c.key, SUBPROTOCOL))
        c.send(data.encode())
        rawws.check_upgrade(c.read_response(), c.key)
        self.assertEqual(c.recv_json().get("type"), "hello")

    def test_request_in_pieces(self):
        c = self.client()
        c.send_pieces(c.request_bytes(), 7)
        rawws.check_upgrade(c.read_response(), c.key)
        self.assertEqual(c.recv_json().get("type"), "hello")

    def test_missing_key(self):
        self.refused((400,), omit=("Sec-WebSocket-Key",))

    def test_key_not_16_bytes(self):
        # 4.2.1 item 5: the key decodes to 16 bytes ("dGVzdA==" is 4).
        self.refused((400,), key="dGVzdA==")

    def test_missing_version(self):
        self.refused((400, 426), omit=("Sec-WebSocket-Version",))

    def test_unsupported_version(self):
        # 4.2.2 item 4 / 4.4: an error status and the versions the server understands.
        for v in ("8", "12", "14", "abc"):
            with self.subTest(version=v):
                r = self.refused((400, 426), version=v)
                self.assertIn("13", r.tokens("Sec-WebSocket-Version"), r)

    def test_not_get(self):
        # 4.1 item 2, 4.2.1 item 1: the method must be GET.
        for method in ("POST", "PUT", "HEAD"):
            with self.subTest(method=method):
                c = self.client()
                r = c.handshake(method=method)
                self.assertTrue(400 <= r.status < 500, r)
                self.assertIsNone(r.header("Sec-WebSocket-Accept"), r)

    def test_missing_upgrade(self):
        self.refused((400, 426), omit=("Upgrade",))

    # 4.2.1 items 3 and 4: Upgrade must hold websocket, Connection must hold Upgrade.
    # libwebsockets 4.1.6 closes TCP without any HTTP response, where 4.2.1 says the server
    # "MUST ... return an HTTP response with an appropriate error code (such as 400 Bad
    # Request)": here only that no WebSocket connection comes of it (an error status or a bare
    # close, never 101, no byte before the close); strict_rfc6455.py requires the status.

    def test_upgrade_not_websocket(self):
        self.refused_or_closed((400, 426), omit=("Upgrade",), headers=[("Upgrade", "h2c")])

    def test_missing_connection_upgrade(self):
        self.refused_or_closed((400, 426), omit=("Connection",),
                               headers=[("Connection", "keep-alive")])

    def test_missing_host(self):
        # 4.2.1 item 2; RFC 7230 5.4: a request without Host gets 400.
        self.refused((400,), omit=("Host",))

    def test_path_without_route(self):
        for path in ("/nope", "/ws", "/ws/alice/extra", "/wsx/alice"):
            with self.subTest(path=path):
                self.refused((404,), path=path)

    def test_accept_key_is_rfc_example(self):
        # The example of 1.3 / 4.2.2, which pins the GUID and the hashing.
        c = self.client()
        c.upgrade(key="dGhlIHNhbXBsZSBub25jZQ==")
        self.assertEqual(c.response.header("Sec-WebSocket-Accept"),
                         "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")


def read_to_eof(c, until):
    """Everything the server sends until it closes TCP; (bytes, closed)."""
    data = b""
    try:
        while True:
            c._recv_some(until, "the server to close the connection")
            data += bytes(c.buf)
            c.buf.clear()
    except rawws.ConnectionClosed:
        return data, True
    except rawws.TimedOut:
        return data, False


class Limits(Case):
    """limits.handshake_timeout_ms bounds the whole HTTP request (slow-loris); a huge
    header is refused with a 4xx status."""

    DEMO = False
    CONFIG = SLOW_CONFIG

    def assertClosedAfterTimeout(self, t0, data, closed):
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, "still open %.1f s after a %d ms handshake timeout"
                        % (elapsed, HANDSHAKE_TIMEOUT_MS))
        self.assertGreaterEqual(elapsed, HANDSHAKE_TIMEOUT_MS / 1000.0 * 0.5,
                                "closed at once, not after the timeout")
        if data:
            status = data.split(b"\r\n", 1)[0]
            self.assertRegex(status, rb"^HTTP/1\.1 4\d\d ", "only an error status may precede "
                             "the close: %r" % data[:200])

    def test_request_never_finished(self):
        c = self.client()
        t0 = time.monotonic()
        c.send(b"GET /ws/alice HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        data, closed = read_to_eof(c, t0 + HANDSHAKE_TIMEOUT_MS / 1000.0 + rawws.DEADLINE)
        self.assertClosedAfterTimeout(t0, data, closed)

    def test_connect_and_send_nothing(self):
        c = self.client()
        t0 = time.monotonic()
        data, closed = read_to_eof(c, t0 + HANDSHAKE_TIMEOUT_MS / 1000.0 + rawws.DEADLINE)
        self.assertClosedAfterTimeout(t0, data, closed)

    def test_request_trickled(self):
        # A byte every 100 ms keeps the connection busy but the request never ends: the
        # timeout bounds the whole request, not the silence between bytes.
        c = self.client()
        t0 = time.monotonic()
        until = t0 + HANDSHAKE_TIMEOUT_MS / 1000.0 + rawws.DEADLINE
        c.send(b"GET /ws/alice HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        data, closed = b"", False
        while not closed and time.monotonic() < until:
            try:
                c.send(b"a")
            except OSError:
                closed = True
                break
            # Waits on the close itself; the 100 ms only paces the trickle.
            more, closed = read_to_eof(c, min(until, time.monotonic() + 0.1))
            data += more
        self.assertClosedAfterTimeout(t0, data, closed)

    def test_huge_header_refused(self):
        # RFC 7230 3.2.5: a server that will not process a header this large "MUST respond
        # with an appropriate 4xx (Client Error) status code". libwebsockets 4.1.6 closes TCP
        # without any response instead: here only that no WebSocket connection comes of it (a
        # 4xx status or a bare close, never 101, no byte before the close); strict_rfc6455.py
        # requires the 4xx.
        for name, extra in (("one 32 KiB header", [("X-Big", "a" * 32768)]),
                            ("1000 headers", [("X-H%d" % i, "v" * 20) for i in range(1000)])):
            with self.subTest(name):
                self.refused_or_closed(range(400, 500), headers=extra)

    def test_completed_handshake_not_timed_out(self):
        # The handshake timeout ends with the upgrade: an open connection outlives it.
        c = rawws.opened(self.daemon.port)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        # A ping every 200 ms across twice the timeout, each answered.
        ref = 0
        while time.monotonic() - t0 < 2 * HANDSHAKE_TIMEOUT_MS / 1000.0:
            ref += 1
            c.ping_json(ref)
            try:
                c.recv_message(0.2)
                self.fail("unexpected frame")
            except rawws.TimedOut:
                pass


if __name__ == "__main__":
    unittest.main()
