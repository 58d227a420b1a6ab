"""RFC 6455 closing (5.5.1, 7.1, 7.4; the Autobahn testsuite's 7.x), on raw sockets.

A client's close is answered with a close (echoing the code, or 1000), and then the server
closes the TCP connection first (7.1.1): the client here never closes its socket before it
reads EOF. A close with an invalid code or a 1-byte payload fails with 1002, an invalid UTF-8
reason with 1007. Nothing sent after a close is processed. PROTOCOL.md: shutdown sends 1001.

Where libwebsockets 4.1.6 (whose parser the server cannot change) fails the connection without
the close frame, the case asserts only the failure (expect_failed, test_rfc6455_framing.py);
the close frame is required in strict_rfc6455.py (`make test-rfc-strict`; README.md).
"""

import signal
import unittest

import harness
import rawws
from rawws import OP_CLOSE, OP_PING, OP_TEXT
from test_rfc6455_framing import expect_failed

# 7.4.1 and the IANA registry: codes a client may send. 3000-4999 are the applications'.
VALID_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999)
# 7.4.1, 7.4.2: 0-999 unused; 1004 reserved; 1005, 1006 and 1015 never on the wire; the rest
# of 1000-2999 reserved for this protocol's future revisions (1012-1014 were registered since,
# so they are left out).
INVALID_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999)


def ping(ref):
    return rawws.dumps({"type": "ping", "ref": ref}).encode()


class Close(harness.SharedDaemonTestCase):
    DEMO = True

    def conn(self, daemon=None):
        c = rawws.opened((daemon or self.daemon).port)
        self.addCleanup(c.close)
        return c

    def assertNothingProcessed(self, before):
        self.assertEqual([m for m in before if b"pong" in m.payload], [],
                         "a message sent after (or with) the close was processed")

    def test_close_echoed_then_server_closes_tcp(self):
        c = self.conn()
        c.send_close(1000)
        # expect_close does not answer (we sent ours) and requires EOF from the server, not a
        # reset, within the deadline, while our socket stays open.
        reason, before = c.expect_close(1000)
        self.assertEqual(before, [])

    def test_close_without_payload(self):
        # 5.5.1: the answer may carry no code, or 1000; never an error code.
        c = self.conn()
        c.send_close()
        c.expect_close((None, 1000))

    def test_close_with_reason(self):
        c = self.conn()
        c.send_close(1000, "bye now")
        c.expect_close(1000)

    def test_close_with_longest_reason(self):
        # 125 bytes of payload: the code and 123 bytes of UTF-8 (two-byte characters).
        c = self.conn()
        c.send_close(1000, "é" * 61 + "x")
        c.expect_close(1000)

    def test_valid_codes(self):
        # 5.5.1: "typically echos the status code it received"; 1000 is also a fair answer.
        for code in VALID_CODES:
            with self.subTest(code=code):
                c = self.conn()
                c.send_close(code, "r")
                c.expect_close((code, 1000))

    def test_invalid_codes(self):
        for code in INVALID_CODES:
            with self.subTest(code=code):
                c = self.conn()
                c.send_close(code)
                c.expect_close(1002)

    def test_codes_above_4999(self):
        # 7.4.2 defines code ranges up to 4999 only; nothing above may be sent.
        for code in (5000, 65535):
            with self.subTest(code=code):
                c = self.conn()
                c.send_close(code)
                c.expect_close(1002)

    def test_one_byte_payload(self):
        # 5.5.1: a body, if any, starts with a two-byte code.
        c = self.conn()
        c.send_close(payload=b"\x03")
        c.expect_close(1002)

    def test_payload_of_126_bytes(self):
        # 5.5: control frames hold at most 125 bytes; the connection is failed (1002).
        # libwebsockets 4.1.6 closes TCP without the close frame, which 7.1.7 asks for with a
        # SHOULD: here the connection must end (close 1002, or a bare TCP close) and the
        # application ping sent right after is never answered; the close frame is required in
        # strict_rfc6455.py.
        c = self.conn()
        c.send(rawws.encode_frame(OP_CLOSE, rawws.close_payload(1000, "x" * 124)) +
               rawws.encode_frame(OP_TEXT, ping(99)))
        c.sent_close = True
        self.assertNothingProcessed(expect_failed(c, 1002))

    def test_invalid_utf8_reason(self):
        # 5.5.1, 8.1: a close reason that is not UTF-8 fails the connection (1007).
        # libwebsockets 4.1.6 finds these bytes itself and closes TCP without the close frame,
        # which 7.1.7 asks for with a SHOULD: here the connection must end (close 1007, or a
        # bare TCP close) and the application ping sent right after is never answered; the
        # close frame is required in strict_rfc6455.py.
        for bad in (b"\xff", b"\xed\xa0\x80", b"ok\xc0\xaf"):
            with self.subTest(bad.hex()):
                c = self.conn()
                c.send(rawws.encode_frame(OP_CLOSE, rawws.close_payload(1000, bad)) +
                       rawws.encode_frame(OP_TEXT, ping(99)))
                c.sent_close = True
                self.assertNothingProcessed(expect_failed(c, 1007))

    def test_truncated_utf8_reason(self):
        # A reason cut inside a UTF-8 sequence passes lws's own check; the server's check
        # fails it with the close frame (5.5.1, 8.1: 1007).
        c = self.conn()
        c.send_close(1000, b"\xce")
        c.expect_close(1007)

    def test_text_after_close_not_processed(self):
        c = self.conn()
        c.send(rawws.encode_frame(OP_CLOSE, rawws.close_payload(1000)) +
               rawws.encode_frame(OP_TEXT, ping(99)))
        c.sent_close = True
        _, before = c.expect_close(1000)
        self.assertNothingProcessed(before)

    def test_ping_after_close_not_answered(self):
        # A pong after the server's close would be bytes after its close frame: rawws fails
        # on those; a pong before it would answer a frame sent after our close.
        c = self.conn()
        c.send(rawws.encode_frame(OP_CLOSE, rawws.close_payload(1000)) +
               rawws.encode_frame(OP_PING, b"late"))
        c.sent_close = True
        m = c.recv_message()
        self.assertEqual((m.opcode, m.close_code()), (OP_CLOSE, 1000), "pong to a late ping")
        c.expect_tcp_close()

    def test_close_in_pieces(self):
        c = self.conn()
        c.send_pieces(rawws.encode_frame(OP_CLOSE, rawws.close_payload(1000, "slow")), 1)
        c.sent_close = True
        c.expect_close(1000)

    def test_shutdown_closes_with_1001(self):
        # PROTOCOL.md, Closing: 1001 when the server shuts down; then it exits with 0.
        d = harness.Daemon(demo=True).start()
        try:
            c = self.conn(d)
            d.send_signal(signal.SIGTERM)
            c.expect_close(1001)
            self.assertEqual(d.wait(), 0)
            d.check_log()
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
