"""RFC 6455 UTF-8 handling (5.6, 8.1; the Autobahn testsuite's 6.x), on raw sockets.

A text message that is not valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
above U+10FFFF) fails the connection with 1007. Inside a fragmented message the server fails
as soon as the bytes so far cannot begin valid UTF-8, before the message ends. Valid UTF-8 cut
anywhere by fragment boundaries is accepted. The bytes sit inside the `client` string of an
application ping, so a server that skipped the check would answer the ping instead.

When frames follow the invalid one in separate TCP writes, libwebsockets 4.1.6 (whose parser
the server cannot change) sometimes fails the connection without the close frame: those cases
assert only the failure (expect_failed, test_rfc6455_framing.py), and the close frame is
required in strict_rfc6455.py (`make test-rfc-strict`; README.md).
"""

import unittest

import harness
import rawws
from rawws import OP_CONT, OP_TEXT
from test_rfc6455_framing import expect_failed

HEAD = b'{"type":"ping","ref":1,"client":"'
TAIL = b'"}'

# (name, bytes): each invalid in any position.
INVALID = [
    ("ff", b"\xff"),
    ("fe", b"\xfe"),
    ("lone continuation", b"\x80"),
    ("continuation run", b"\x80\xbf\x80"),
    ("overlong slash 2 bytes", b"\xc0\xaf"),
    ("overlong c1", b"\xc1\xbf"),
    ("overlong slash 3 bytes", b"\xe0\x80\xaf"),
    ("overlong U+07FF in 3 bytes", b"\xe0\x9f\xbf"),
    ("overlong slash 4 bytes", b"\xf0\x80\x80\xaf"),
    ("overlong U+FFFF in 4 bytes", b"\xf0\x8f\xbf\xbf"),
    ("surrogate U+D800", b"\xed\xa0\x80"),
    ("surrogate U+DBFF", b"\xed\xaf\xbf"),
    ("surrogate U+DC00", b"\xed\xb0\x80"),
    ("surrogate U+DFFF", b"\xed\xbf\xbf"),
    ("surrogate pair (CESU-8)", b"\xed\xa0\x80\xed\xb0\x80"),
    ("U+110000", b"\xf4\x90\x80\x80"),
    ("f5 lead", b"\xf5\x80\x80\x80"),
    ("f7 lead", b"\xf7\xbf\xbf\xbf"),
    ("5 bytes", b"\xf8\x88\x80\x80\x80"),
    ("6 bytes", b"\xfc\x84\x80\x80\x80\x80"),
    ("2-byte lead then ascii", b"\xce" + b"a"),
    ("3-byte lead cut", b"\xe2\x82" + b"a"),
    ("4-byte lead cut", b"\xf0\x9d\x84" + b"a"),
    ("valid then invalid", "κόσμε".encode() + b"\xed\xa0\x80" + b"edited"),
]

# Valid, at the edges of each encoding length and around the surrogates.
VALID = [
    ("ascii", "hello"),
    ("U+007F", "\u007f"),
    ("U+0080", "\u0080"),
    ("U+07FF", "\u07ff"),
    ("U+0800", "\u0800"),
    ("U+D7FF", "\ud7ff"),
    ("U+E000", "\ue000"),
    ("U+FEFF", "\ufeff"),
    ("U+FFFD", "\ufffd"),
    ("U+FFFF", "\uffff"),
    ("U+10000", "\U00010000"),
    ("U+10FFFF", "\U0010ffff"),
    ("greek", "κόσμε"),
    ("mixed", "Hello-µ@ßöäüàá-UTF-8!! \U0001d11e"),
]


def send_writes(c, writes):
    """One TCP write each; once the server has failed the connection, a write may fail."""
    for data in writes:
        try:
            c.send(data)
        except OSError:
            return


class Utf8(harness.SharedDaemonTestCase):
    DEMO = True

    def conn(self):
        c = rawws.opened(self.daemon.port)
        self.addCleanup(c.close)
        return c

    def assertNotAnswered(self, before):
        self.assertEqual([m for m in before if b"pong" in m.payload], [],
                         "a message with invalid UTF-8 was processed")

    def test_invalid_in_one_frame(self):
        for name, bad in INVALID:
            with self.subTest(name):
                c = self.conn()
                c.send_text(HEAD + bad + TAIL)
                _, before = c.expect_close(1007)
                self.assertNotAnswered(before)

    def test_invalid_in_one_byte_fragments(self):
        for name, bad in INVALID[::3]:
            with self.subTest(name):
                body = HEAD + bad + TAIL
                c = self.conn()
                c.send_fragments(OP_TEXT, [body[i:i + 1] for i in range(len(body))])
                _, before = c.expect_close(1007)
                self.assertNotAnswered(before)

    def test_truncated_at_message_end(self):
        # Each prefix is a sequence that can only be completed by bytes that never come.
        for bad in (b"\xce", b"\xe2\x82", b"\xf0\x9d\x84"):
            with self.subTest(bad.hex()):
                c = self.conn()
                c.send_text(HEAD + b"x" + TAIL + bad)
                c.expect_close(1007)
            with self.subTest(bad.hex() + " fragmented"):
                c = self.conn()
                c.send_fragments(OP_TEXT, [HEAD, b"x" + TAIL + bad[:1], bad[1:]])
                c.expect_close(1007)

    def test_fail_fast_inside_fragmented_message(self):
        # The message is never finished: the server must fail on the fragment holding the
        # invalid bytes (8.1 with 5.6: a receiver fails as soon as it knows).
        cases = [
            ("surrogate in second fragment",
             [HEAD + "κόσμε".encode(), b"\xed\xa0\x80edited"]),
            ("above U+10FFFF, lead in its own fragment",
             [HEAD + "κόσμε".encode(), b"\xf4", b"\x90", b"\x80\x80edited"]),
            ("overlong across fragments", [HEAD, b"\xc0", b"\xafabc"]),
            ("ff alone", [HEAD, b"\xff"]),
        ]
        for name, chunks in cases:
            frames = [rawws.encode_frame(OP_TEXT if i == 0 else OP_CONT, chunk, fin=False)
                      for i, chunk in enumerate(chunks)]
            # The server must not care how TCP cut the bytes: each frame in its own write,
            # and all in one. With a write per frame, libwebsockets 4.1.6 sometimes closes TCP
            # without the close frame when frames follow the invalid one; 7.1.7 asks for it
            # with a SHOULD, so here the connection must end (close 1007, or a bare TCP close)
            # with the message never answered; strict_rfc6455.py requires the close frame.
            with self.subTest(name, writes="one per frame"):
                c = self.conn()
                send_writes(c, frames)
                self.assertNotAnswered(expect_failed(c, 1007))
            with self.subTest(name, writes="one"):
                c = self.conn()
                c.send(b"".join(frames))
                _, before = c.expect_close(1007)
                self.assertNotAnswered(before)

    def test_fail_fast_inside_one_byte_fragments(self):
        # Byte by byte, a write per frame, never finished. First the whole surrogate and one
        # more byte; then (stricter, as a validating state machine knows) up to the \xa0 after
        # \xed, the first byte that cannot be part of valid UTF-8.
        body = HEAD + "κόσμε".encode()
        with self.subTest("whole sequence"):
            # Frames follow the invalid one: libwebsockets 4.1.6 sometimes closes TCP without
            # the close frame (a SHOULD of 7.1.7): here the connection must end (close 1007,
            # or a bare TCP close); strict_rfc6455.py requires the close frame.
            c = self.conn()
            data = body + b"\xed\xa0\x80a"
            send_writes(c, [rawws.encode_frame(OP_TEXT if i == 0 else OP_CONT, data[i:i + 1],
                                               fin=False) for i in range(len(data))])
            expect_failed(c, 1007)
        with self.subTest("first bad byte"):
            c = self.conn()
            data = body + b"\xed\xa0"
            for i in range(len(data)):
                c.send_frame(OP_TEXT if i == 0 else OP_CONT, data[i:i + 1], fin=False)
            c.expect_close(1007)

    def test_valid(self):
        for name, text in VALID:
            with self.subTest(name):
                c = self.conn()
                c.send_text(HEAD + text.encode() + TAIL)
                c.expect_pong(1)

    def test_valid_split_across_fragments(self):
        # Every cut inside every multi-byte sequence of the text.
        text = "κ\U0001d11e€".encode()
        for cut in range(1, len(text)):
            with self.subTest(cut=cut):
                c = self.conn()
                c.send_fragments(OP_TEXT, [HEAD + text[:cut], text[cut:] + TAIL])
                c.expect_pong(1)

    def test_valid_in_one_byte_fragments(self):
        body = HEAD + "κόσμε \U0001d11e\U0010ffff".encode() + TAIL
        c = self.conn()
        c.send_fragments(OP_TEXT, [body[i:i + 1] for i in range(len(body))])
        c.expect_pong(1)

    def test_valid_split_across_fragments_with_control_frames_between(self):
        text = "\U0001d11e".encode()
        c = self.conn()
        c.send(rawws.encode_frame(OP_TEXT, HEAD + text[:2], fin=False) +
               rawws.encode_frame(rawws.OP_PING, b"p") +
               rawws.encode_frame(OP_CONT, text[2:] + TAIL))
        # The ping and the end of the message in one read: the pong first, then the answer.
        pong, before = c.expect_control(rawws.OP_PONG)
        self.assertEqual((pong.payload, before), (b"p", []))
        c.expect_pong(1)


if __name__ == "__main__":
    unittest.main()
