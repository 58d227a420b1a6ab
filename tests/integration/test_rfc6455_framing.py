"""RFC 6455 framing as a strict client sees it, on raw sockets (rawws.py).

Groups, after the Autobahn testsuite's: framing and lengths (1.x), WebSocket ping/pong (2.x),
reserved bits (3.x), opcodes (4.x), fragmentation (5.x), masking (RFC 6455 5.1, 5.3). Every
case runs on a fresh connection to /ws/alice of `transportsd --demo` (one daemon per group)
that has read hello, the snapshots and synced; message limits use a daemon with a small
max_message_bytes.

Where libwebsockets 4.1.6 (Debian 12's, whose parser the server cannot change) fails a
connection without the close frame, the case asserts only what RFC 6455 requires (see
expect_failed); where it does not fail the connection at all, the case is only in
strict_rfc6455.py (`make test-rfc-strict`, not run by ctest; README.md).
"""

import json
import time
import unittest

import harness
import rawws
from rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT

# The limits daemon: one tenant, a small message limit. Models must fit in the limit less
# 1 KiB (docs/api.md, Limits), so 4096 leaves room for alice's notes.
LIMIT = 4096
SMALL_CONFIG = {
    "schemas": {"Document": {"title": "Document", "type": "object",
                             "properties": {"title": {"type": "string"}},
                             "required": ["title"]}},
    "tenants": {"alice": {"models": {"notes": {"schema": "Document",
                                               "value": {"title": "Alice notes"}}}}},
    "limits": {"max_message_bytes": LIMIT},
}


def ping(ref):
    return rawws.dumps({"type": "ping", "ref": ref}).encode()


def expect_failed(c, code, timeout=None):
    """The connection is failed (RFC 6455 7.1.7): within the deadline, either a close frame
    with code (or one of a tuple of codes), then the close handshake as expect_close checks it,
    or a TCP close (EOF or reset) with no data frame at all. The close frame itself is a SHOULD
    of 7.1.7 ("SHOULD send a Close frame"), which libwebsockets 4.1.6 skips in some cases;
    strict_rfc6455.py requires it. Returns the data messages before the close frame (none on a
    bare close), for the caller to check that nothing sent with or after the bad frame was
    answered."""
    until = c._until(timeout)
    before = []
    while True:
        try:
            m = c.recv_message(until - time.monotonic())
        except rawws.ConnectionClosed as e:
            if before:
                raise AssertionError("data frames before a bare TCP close: %r (%s)" % (before, e))
            return before
        except rawws.TimedOut as e:
            raise AssertionError("the connection was not failed: no close frame (expected %r) "
                                 "and no TCP close; messages before: %r: %s" % (code, before, e))
        if m.opcode == OP_CLOSE:
            break
        if m.opcode in (OP_TEXT, OP_BINARY):
            before.append(m)
    got = m.close_code()
    if got not in (code if isinstance(code, tuple) else (code,)):
        raise AssertionError("expected close %r (or a bare TCP close), got close %r %r "
                             "(messages before: %r)" % (code, got, m.payload[2:], before))
    answered = not c.sent_close
    if answered:
        c.send_close_quietly(got)
    c.expect_tcp_close(until - time.monotonic(), reset_ok=answered)
    return before


def padded_ping(ref, n):
    """An application ping of exactly n bytes: JSON allows whitespace after the value."""
    b = ping(ref)
    assert len(b) <= n
    return b + b" " * (n - len(b))


class Case(harness.SharedDaemonTestCase):
    """One daemon per group: a crash fails the test that caused it (the harness checks the
    daemon after every test) and spares the other groups."""

    DEMO = True

    def conn(self):
        c = rawws.opened(self.daemon.port)
        self.addCleanup(c.close)
        return c

    def assertNoPong(self, before, ref=99):
        """The refused frame was not processed: no pong for its ref came before the close."""
        for m in before:
            if m.opcode == OP_TEXT and b'"pong"' in m.payload:
                v = json.loads(m.payload)
                for x in (v if isinstance(v, list) else [v]):
                    self.assertNotEqual(x, {"type": "pong", "ref": ref},
                                        "a refused frame was processed")

    def assertFails(self, data, code, **kw):
        """Sends raw bytes on a fresh connection; the server must fail it with code."""
        c = self.conn()
        c.send(data)
        _, before = c.expect_close(code, **kw)
        self.assertNoPong(before)
        return before


class Framing(Case):
    """RFC 6455 5.2: payload lengths in the 7-, 16- and 64-bit forms; frames cut anywhere
    by TCP; the application ping of PROTOCOL.md."""

    def test_application_ping_answered(self):
        c = self.conn()
        c.send_json({"type": "ping", "ref": 1})
        self.assertEqual(c.recv_json(), {"type": "pong", "ref": 1})

    def test_length_boundaries(self):
        # 125: the largest 7-bit length; 126: the smallest 16-bit; 65535: the largest 16-bit;
        # 65536: the smallest 64-bit (5.2).
        c = self.conn()
        for ref, n in enumerate((125, 126, 127, 65535, 65536, 200000), start=1):
            with self.subTest(length=n):
                c.send_text(padded_ping(ref, n))
                c.expect_pong(ref)

    def test_empty_text_frame(self):
        # A valid frame whose payload is not JSON: the protocol's bad_request, not a close.
        c = self.conn()
        c.send_text(b"")
        m = c.recv_json()
        self.assertEqual((m.get("type"), m.get("code")), ("error", "bad_request"), m)
        c.assert_open()

    def test_frame_written_byte_by_byte(self):
        c = self.conn()
        c.send_pieces(rawws.encode_frame(OP_TEXT, padded_ping(7, 300)), 1)
        c.expect_pong(7)

    def test_frame_cut_inside_length_and_mask(self):
        # Cuts after byte 1 (inside the 64-bit length), after byte 11 (inside the mask key),
        # and inside the payload.
        c = self.conn()
        f = rawws.encode_frame(OP_TEXT, padded_ping(8, 70000))
        for piece in (f[:1], f[1:5], f[5:11], f[11:13], f[13:5000], f[5000:]):
            c.send(piece)
        c.expect_pong(8)

    def test_two_frames_in_one_write(self):
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, ping(1)) + rawws.encode_frame(OP_TEXT, ping(2)))
        c.expect_pong(1)
        c.expect_pong(2)

    def test_non_minimal_length_accepted_or_refused_cleanly(self):
        # RFC 5.2 requires the minimal length encoding of senders but names no reaction for
        # receivers; what the server does must be one of: process it, or fail with 1002.
        c = self.conn()
        c.send_text(ping(3), length_bytes=2)
        m = c.recv_message()
        if m.opcode == OP_CLOSE:
            self.assertEqual(m.close_code(), 1002)
        else:
            self.assertEqual(json.loads(m.payload), {"type": "pong", "ref": 3})

    def test_64bit_length_with_top_bit_set_fails(self):
        # 5.2: "the most significant bit MUST be 0": a malformed frame (1002); as a length it
        # is also past any limit (1009). Either way the server fails at once, never waiting
        # for the payload. libwebsockets 4.1.6 closes TCP without the close frame, which 7.1.7
        # asks for with a SHOULD: here the connection must end (close 1002/1009, or a bare TCP
        # close); the close frame is required in strict_rfc6455.py. No message can follow:
        # every byte after this header is its payload.
        c = self.conn()
        c.send(bytes([0x81, 0x80 | 127]) + (1 << 63 | 20).to_bytes(8, "big") + b"\0\0\0\0")
        expect_failed(c, (1002, 1009))


class MessageLimit(Case):
    """PROTOCOL.md, limits: a frame over max_message_bytes gets too_large and close 1009."""

    DEMO = False
    CONFIG = SMALL_CONFIG

    def test_hello_announces_limit(self):
        c = self.conn()
        self.assertEqual(c.hello.get("max_message_bytes"), LIMIT)

    def test_message_of_exactly_the_limit(self):
        c = self.conn()
        c.send_text(padded_ping(5, LIMIT))
        c.expect_pong(5)

    def test_message_over_the_limit(self):
        c = self.conn()
        c.send_text(padded_ping(99, LIMIT + 1))
        _, before = c.expect_close(1009)
        self.assertNoPong(before)
        errors = [json.loads(m.payload) for m in before if m.opcode == OP_TEXT]
        self.assertIn("too_large", json.dumps(errors), "the too_large error precedes 1009")

    def test_fragmented_message_over_the_limit(self):
        # Every fragment is under the limit; the message is not (RFC 6455 7.4.1, 1009).
        c = self.conn()
        body = padded_ping(99, 3 * 1500)
        c.send_fragments(OP_TEXT, [body[:1500], body[1500:3000], body[3000:]])
        _, before = c.expect_close(1009)
        self.assertNoPong(before)

    def test_endless_frame_fails_at_the_limit(self):
        # A header announcing 2^40 bytes, then limit + 1 of them: the server must fail once
        # the limit is passed (RFC 6455 10.4), not wait for (or buffer) the rest.
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, padded_ping(99, LIMIT + 1), declared_length=1 << 40))
        _, before = c.expect_close(1009)
        self.assertNoPong(before)

    def test_declared_length_over_the_limit_fails_early(self):
        # The header already says the frame is too big: after its first payload bytes the
        # server knows, and fails without waiting for the other 2^40.
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, b"{" * 16, declared_length=1 << 40))
        c.expect_close(1009)


class Ping(Case):
    """RFC 6455 5.5.2, 5.5.3: a ping is answered by a pong with the same payload; an
    unsolicited pong is ignored; a control frame holds at most 125 bytes (5.5). Several pings
    in one write, the last one answered (5.5.3), are only in strict_rfc6455.py:
    libwebsockets 4.1.6 answers the first and drops the others."""

    def test_ping_with_payload(self):
        c = self.conn()
        c.send_ping(b"hello")
        pong, before = c.expect_control(OP_PONG)
        self.assertEqual(pong.payload, b"hello")
        self.assertEqual(before, [])

    def test_empty_ping(self):
        c = self.conn()
        c.send_ping(b"")
        pong, _ = c.expect_control(OP_PONG)
        self.assertEqual(pong.payload, b"")

    def test_ping_of_125_binary_bytes(self):
        payload = bytes(range(256))[-125:]  # not UTF-8: a ping carries application data
        c = self.conn()
        c.send_ping(payload)
        pong, _ = c.expect_control(OP_PONG)
        self.assertEqual(pong.payload, payload)

    def test_ping_of_126_bytes_fails(self):
        # 5.5: control frames hold at most 125 bytes; the connection is failed (1002).
        # libwebsockets 4.1.6 closes TCP without the close frame (a SHOULD of 7.1.7): here the
        # connection must end (close 1002, or a bare TCP close) and the application ping sent
        # right after is never answered; the close frame is required in strict_rfc6455.py.
        c = self.conn()
        c.send(rawws.encode_frame(OP_PING, b"x" * 126) + rawws.encode_frame(OP_TEXT, ping(99)))
        self.assertNoPong(expect_failed(c, 1002))

    def test_ping_written_byte_by_byte(self):
        c = self.conn()
        c.send_pieces(rawws.encode_frame(OP_PING, b"slow"), 1)
        pong, _ = c.expect_control(OP_PONG)
        self.assertEqual(pong.payload, b"slow")

    def test_unsolicited_pong_ignored(self):
        c = self.conn()
        c.send_frame(OP_PONG, b"unsolicited")
        c.send_frame(OP_PONG, b"")
        c.send_json({"type": "ping", "ref": 4})
        m = c.recv_message()
        self.assertEqual((m.opcode, json.loads(m.payload)), (OP_TEXT, {"type": "pong", "ref": 4}),
                         "nothing answers a pong")


class ReservedBits(Case):
    """RFC 6455 5.2: RSV1-3 set with no extension negotiated fails the connection (1002)."""

    def test_rsv_on_text_frame(self):
        for rsv in (4, 2, 1, 7):
            with self.subTest(rsv=rsv):
                self.assertFails(rawws.encode_frame(OP_TEXT, ping(99), rsv=rsv), 1002)

    def test_rsv_on_ping(self):
        for rsv in (4, 2, 1):
            with self.subTest(rsv=rsv):
                before = self.assertFails(rawws.encode_frame(OP_PING, b"x", rsv=rsv), 1002)
                self.assertEqual(before, [])

    def test_rsv_on_continuation(self):
        body = ping(99)
        data = rawws.encode_frame(OP_TEXT, body[:5], fin=False) + \
            rawws.encode_frame(OP_CONT, body[5:], rsv=2)
        self.assertFails(data, 1002)

    def test_rsv_after_a_valid_frame(self):
        # The valid frame is answered; the bad one, in the same write, is not.
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, ping(1)) + rawws.encode_frame(OP_TEXT, ping(99), rsv=4))
        _, before = c.expect_close(1002)
        self.assertNoPong(before)


class Opcodes(Case):
    """RFC 6455 5.2: reserved opcodes fail the connection (1002); PROTOCOL.md: a binary
    frame closes with 1003."""

    def test_reserved_data_opcodes(self):
        for op in (3, 4, 5, 6, 7):
            with self.subTest(opcode=op):
                self.assertFails(rawws.encode_frame(op, ping(99)), 1002)

    def test_reserved_control_opcodes(self):
        for op in (0xB, 0xC, 0xD, 0xE, 0xF):
            with self.subTest(opcode=op):
                self.assertFails(rawws.encode_frame(op, b"x"), 1002)

    def test_reserved_opcode_after_valid_frame(self):
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, ping(1)) + rawws.encode_frame(5, b""))
        c.expect_close(1002)

    def test_binary_frame(self):
        self.assertFails(rawws.encode_frame(OP_BINARY, ping(99)), 1003)

    def test_empty_binary_frame(self):
        self.assertFails(rawws.encode_frame(OP_BINARY, b""), 1003)

    def test_fragmented_binary_message(self):
        body = ping(99)
        self.assertFails(rawws.encode_frame(OP_BINARY, body[:4], fin=False) +
                         rawws.encode_frame(OP_CONT, body[4:]), 1003)


class Fragmentation(Case):
    """RFC 6455 5.4: messages in fragments are reassembled; control frames may come between
    fragments and are answered at once; a continuation needs an open message, a new data
    frame needs none open; control frames are never fragmented (1002 otherwise)."""

    def test_three_fragments(self):
        body = ping(1)
        c = self.conn()
        c.send_fragments(OP_TEXT, [body[:3], body[3:10], body[10:]])
        c.expect_pong(1)

    def test_one_byte_fragments(self):
        body = ping(2)
        c = self.conn()
        c.send_fragments(OP_TEXT, [body[i:i + 1] for i in range(len(body))])
        c.expect_pong(2)

    def test_empty_fragments(self):
        body = ping(3)
        c = self.conn()
        c.send_fragments(OP_TEXT, [b"", body[:6], b"", body[6:], b""])
        c.expect_pong(3)

    def test_large_fragments(self):
        body = padded_ping(4, 150000)
        c = self.conn()
        c.send_fragments(OP_TEXT, [body[:70000], body[70000:70100], body[70100:]])
        c.expect_pong(4)

    def test_ping_between_fragments_answered_at_once(self):
        body = ping(5)
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, body[:6], fin=False))
        c.send_ping(b"mid")
        # The pong comes before the message is complete: control frames are not held back.
        pong, before = c.expect_control(OP_PONG)
        self.assertEqual((pong.payload, before), (b"mid", []))
        c.send(rawws.encode_frame(OP_CONT, body[6:12], fin=False) +
               rawws.encode_frame(OP_PING, b"mid2") +
               rawws.encode_frame(OP_CONT, body[12:]))
        # The ping and the end of the message in one read: the ping came first, so its pong
        # comes before the answer to the message (the Autobahn testsuite's 5.6 and 5.8).
        pong, before = c.expect_control(OP_PONG)
        self.assertEqual((pong.payload, before), (b"mid2", []))
        c.expect_pong(5)

    def test_pings_between_fragments_with_pauses(self):
        # The Autobahn testsuite's 5.19: five fragments, a ping after the second and the
        # fourth, a pause after each ping. Each pong comes before the message's answer.
        body = ping(7)
        parts = [body[i * 4:(i + 1) * 4] for i in range(4)] + [body[16:]]
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, parts[0], fin=False) +
               rawws.encode_frame(OP_CONT, parts[1], fin=False) +
               rawws.encode_frame(OP_PING, b"p1"))
        pong, before = c.expect_control(OP_PONG)
        self.assertEqual((pong.payload, before), (b"p1", []))
        time.sleep(0.2)
        c.send(rawws.encode_frame(OP_CONT, parts[2], fin=False) +
               rawws.encode_frame(OP_CONT, parts[3], fin=False) +
               rawws.encode_frame(OP_PING, b"p2") +
               rawws.encode_frame(OP_CONT, parts[4]))
        pong, before = c.expect_control(OP_PONG)
        self.assertEqual((pong.payload, before), (b"p2", []))
        c.expect_pong(7)

    def test_pong_between_fragments(self):
        body = ping(6)
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, body[:6], fin=False) +
               rawws.encode_frame(OP_PONG, b"x") +
               rawws.encode_frame(OP_CONT, body[6:]))
        c.expect_pong(6)

    def test_close_between_fragments(self):
        body = ping(99)
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, body[:6], fin=False))
        c.send_close(1000)
        _, before = c.expect_close(1000)
        self.assertNoPong(before)

    def test_continuation_without_start(self):
        self.assertFails(rawws.encode_frame(OP_CONT, ping(99)), 1002)

    def test_continuation_without_start_not_final(self):
        self.assertFails(rawws.encode_frame(OP_CONT, ping(99), fin=False), 1002)

    def test_continuation_after_a_complete_message(self):
        c = self.conn()
        c.send_json({"type": "ping", "ref": 1})
        c.expect_pong(1)
        c.send_frame(OP_CONT, ping(99))
        c.expect_close(1002)

    def test_new_text_frame_while_fragmented_open(self):
        body = ping(99)
        self.assertFails(rawws.encode_frame(OP_TEXT, body[:6], fin=False) +
                         rawws.encode_frame(OP_TEXT, ping(98)), 1002)

    def test_new_fragmented_text_while_fragmented_open(self):
        body = ping(99)
        self.assertFails(rawws.encode_frame(OP_TEXT, body[:6], fin=False) +
                         rawws.encode_frame(OP_TEXT, body[:6], fin=False) +
                         rawws.encode_frame(OP_CONT, body[6:]), 1002)

    def test_fragmented_ping(self):
        self.assertFails(rawws.encode_frame(OP_PING, b"ab", fin=False) +
                         rawws.encode_frame(OP_CONT, b"cd"), 1002)

    def test_fragmented_pong(self):
        self.assertFails(rawws.encode_frame(OP_PONG, b"ab", fin=False) +
                         rawws.encode_frame(OP_CONT, b"cd"), 1002)

    def test_fragmented_close(self):
        self.assertFails(rawws.encode_frame(OP_CLOSE, rawws.close_payload(1000), fin=False) +
                         rawws.encode_frame(OP_CONT, b""), 1002)


class Masking(Case):
    """RFC 6455 5.1, 5.3: any masking key is a key, and the server never masks its own frames
    (rawws checks every frame it reads). A server MUST also close a connection whose client
    frame is not masked (5.1; close 1002): those cases are only in strict_rfc6455.py,
    libwebsockets 4.1.6 accepts unmasked frames."""

    def test_zero_masking_key(self):
        # A key of four zero bytes is a key like any other (5.3).
        c = self.conn()
        c.send_text(ping(1), mask_key=b"\0\0\0\0")
        c.expect_pong(1)

    def test_server_frames_not_masked(self):
        # Every frame rawws reads is checked: hello and the snapshots (read by conn()), a pong
        # frame, a text frame of each length form.
        c = self.conn()
        c.send_ping(b"m")
        self.assertEqual(c.expect_control(OP_PONG)[0].payload, b"m")
        c.send_json({"type": "ping", "ref": 1})
        c.expect_pong(1)


if __name__ == "__main__":
    unittest.main()
