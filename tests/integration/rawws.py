"""rawws: a minimal WebSocket client on a raw socket, written from RFC 6455.

It hides nothing: the handshake request is built by hand, frames are encoded with full control
of FIN, RSV, opcode, mask and the length encoding (7, 16 or 64 bits, even a declared length that
differs from the payload), and bytes can go out in pieces (one TCP write per piece). What the
server sends is read strictly: a frame that breaks RFC 6455 raises ServerViolation, an
AssertionError, so a test fails on it rather than erroring. The checks on every server frame:

- not masked (5.1: "A server MUST NOT mask any frames that it sends to the client");
- RSV1-3 zero, no extension is ever negotiated here (5.2);
- a known opcode (5.2), control frames final and at most 125 bytes (5.5);
- the minimal length encoding (5.2: "the minimal number of bytes MUST be used"), the
  64-bit length's most significant bit zero;
- continuation frames only inside a fragmented message, no new data frame inside one (5.4);
- text messages valid UTF-8 as a whole (5.6, 8.1);
- a close payload of 0 or at least 2 bytes, a code an endpoint may send, a UTF-8 reason (5.5.1,
  7.4); nothing after the close frame (5.5.1).

Deadlines are failure deadlines only: a read waits on the socket with a timeout, nothing sleeps
to wait for an event. Stdlib only.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

SUBPROTOCOL = "transports.v1"

_SANITIZE = os.environ.get("TP_SANITIZE", "0").lower() in ("1", "on", "true", "yes")
# One step's failure deadline (a response, a frame, a close). Generous: a loaded 2-core machine
# and the ASan build are slow; nothing waits this long when the server behaves.
DEADLINE = 10.0 * (3.0 if _SANITIZE else 1.0)


class ServerViolation(AssertionError):
    """The server sent something RFC 6455 forbids."""


class TimedOut(AssertionError):
    """Nothing (or not enough) arrived before the deadline."""


class ConnectionClosed(AssertionError):
    """The TCP connection closed (EOF, or a reset when reset is True)."""

    def __init__(self, msg, reset=False):
        super().__init__(msg)
        self.reset = reset


class UnexpectedClose(AssertionError):
    """A close frame arrived where a message was expected."""

    def __init__(self, code, reason):
        super().__init__("the server closed with %r %r" % (code, reason))
        self.code = code
        self.reason = reason


# -- encoding ----------------------------------------------------------------

def accept_for(key):
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (4.2.2, item 5.4)."""
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode("ascii")


def new_key():
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64 (4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def mask_bytes(data, key):
    """XORs data with the 4-byte masking key (5.3)."""
    n = len(data)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None,
                 length_bytes=None, declared_length=None):
    """One frame's bytes.

    rsv: the three RSV bits as a number 0-7 (4 = RSV1, 2 = RSV2, 1 = RSV3). mask: whether the
    MASK bit is set and the payload masked (clients must, 5.1). length_bytes: 0, 2 or 8 extra
    length bytes (None: the minimal encoding). declared_length: the length written in the header
    when it must differ from len(payload) (a frame whose payload never fully arrives).
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if declared_length is None else declared_length
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    mbit = 0x80 if mask else 0
    if length_bytes == 0:
        if n > 125:
            raise ValueError("a 7-bit length holds at most 125")
        head = struct.pack("!BB", b0, mbit | n)
    elif length_bytes == 2:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    elif length_bytes == 8:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    else:
        raise ValueError("length_bytes is 0, 2 or 8")
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    return head + key + mask_bytes(payload, key)


def close_payload(code=None, reason=b""):
    """A close frame's payload: a 2-byte code then a UTF-8 reason (5.5.1)."""
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def dumps(msg):
    return json.dumps(msg, separators=(",", ":"))


# A close code an endpoint may put in a close frame (7.4.1, 7.4.2 and the IANA registry of
# 11.7: 1012-1014 were registered after the RFC). 1004-1006 and 1015 never go on the wire.
def sendable_close_code(code):
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) \
        or 3000 <= code <= 4999


# -- reading -------------------------------------------------------------------

class Frame:
    __slots__ = ("fin", "rsv", "opcode", "payload")

    def __init__(self, fin, rsv, opcode, payload):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.payload = payload

    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def close_reason(self):
        return self.payload[2:].decode("utf-8")

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return "Frame(fin=%d rsv=%d op=%#x len=%d %r)" % (self.fin, self.rsv, self.opcode,
                                                          len(self.payload), p)


class HttpResponse:
    def __init__(self, status_line, headers):
        self.status_line = status_line
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ServerViolation("not an HTTP status line: %r" % status_line)
        self.version = parts[0]
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = headers  # [(name, value)] in order

    def header(self, name):
        """The values of a header (case-insensitive), joined with ', '; None when absent."""
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(vals) if vals else None

    def tokens(self, name):
        """A comma-separated header's tokens, lowercased."""
        v = self.header(name)
        return [t.strip().lower() for t in v.split(",")] if v else []

    def __repr__(self):
        return "HttpResponse(%r, %r)" % (self.status_line, self.headers)


class Client:
    """One raw TCP connection to the server."""

    def __init__(self, port, host="127.0.0.1", deadline=DEADLINE, source=None):
        self.deadline = deadline
        # source: the local address to connect from (another loopback address, 127.0.0.2,
        # is another client to the server).
        self.sock = socket.create_connection((host, port), timeout=deadline,
                                             source_address=(source, 0) if source else None)
        # One send() is one TCP segment: pieces stay pieces.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = port
        self.host = host
        self.buf = bytearray()
        self.key = None
        self.response = None
        self.in_message = None      # opcode of the fragmented message being read, if any
        self.parts = []
        self.json_queue = []        # messages read, batches flattened, not yet taken
        self.close_frame = None     # the server's close frame, once read
        self.sent_close = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending

    def send(self, data):
        self.sock.sendall(data)

    def send_pieces(self, data, size=1):
        """Sends data in TCP writes of size bytes each."""
        for i in range(0, len(data), size):
            self.sock.sendall(data[i:i + size])

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(encode_frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text, **kw)

    def send_json(self, msg, **kw):
        self.send_text(dumps(msg), **kw)

    def send_fragments(self, opcode, chunks, **kw):
        """One message in len(chunks) frames: opcode, then continuations, the last final."""
        data = b""
        for i, chunk in enumerate(chunks):
            data += encode_frame(opcode if i == 0 else OP_CONT, chunk,
                                 fin=(i == len(chunks) - 1), **kw)
        self.send(data)

    def send_ping(self, payload=b"", **kw):
        self.send_frame(OP_PING, payload, **kw)

    def send_close(self, code=None, reason=b"", payload=None, **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason) if payload is None else payload,
                        **kw)
        self.sent_close = True

    def send_close_quietly(self, code=None):
        """Answers the server's close (5.5.1); the server may have closed TCP already."""
        try:
            self.send_close(code)
        except OSError:
            pass

    # -- receiving bytes

    def _until(self, timeout):
        return time.monotonic() + (self.deadline if timeout is None else timeout)

    def _recv_some(self, until, what):
        left = until - time.monotonic()
        if left <= 0:
            raise TimedOut("timed out waiting for %s; buffered %r" % (what, bytes(self.buf[:200])))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimedOut("timed out waiting for %s; buffered %r" % (what, bytes(self.buf[:200])))
        except ConnectionResetError:
            raise ConnectionClosed("connection reset while waiting for %s" % what, reset=True)
        if not data:
            raise ConnectionClosed("TCP closed while waiting for %s; buffered %r"
                                   % (what, bytes(self.buf[:200])))
        self.buf += data

    def _need(self, n, until, what):
        while len(self.buf) < n:
            self._recv_some(until, what)

    # -- the handshake

    def request_bytes(self, path="/ws/alice", protocols=(SUBPROTOCOL,), key=None, version="13",
                      method="GET", headers=(), omit=(), http_version="HTTP/1.1"):
        """The opening handshake request (4.1), built by hand. headers: extra (name, value)
        pairs; omit: names of default headers to leave out."""
        self.key = new_key() if key is None else key
        default = [("Host", "%s:%d" % (self.host, self.port)),
                   ("Upgrade", "websocket"),
                   ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", self.key),
                   ("Sec-WebSocket-Version", version)]
        if protocols:
            default.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
        omit = {o.lower() for o in omit}
        lines = ["%s %s %s" % (method, path, http_version)]
        lines += ["%s: %s" % (k, v) for k, v in default if k.lower() not in omit]
        lines += ["%s: %s" % (k, v) for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def read_response(self, timeout=None, limit=65536):
        """Reads an HTTP response head; what follows it stays buffered (frames)."""
        until = self._until(timeout)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > limit:
                raise ServerViolation("no end of the HTTP response head in %d bytes" % limit)
            self._recv_some(until, "the HTTP response")
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ServerViolation("bad header line %r in %r" % (line, head))
            headers.append((name, value.strip()))
        self.response = HttpResponse(lines[0], headers)
        return self.response

    def handshake(self, path="/ws/alice", timeout=None, **kw):
        """Sends the handshake request and reads the response head (any status)."""
        self.send(self.request_bytes(path, **kw))
        return self.read_response(timeout)

    def upgrade(self, path="/ws/alice", protocols=(SUBPROTOCOL,), timeout=None, **kw):
        """A handshake that must succeed: checks the 101 response as a client must (4.1)."""
        r = self.handshake(path, protocols=protocols, timeout=timeout, **kw)
        check_upgrade(r, self.key, protocols)
        return r

    # -- frames

    def recv_frame(self, timeout=None):
        """The next frame, checked strictly; control frames and fragments as they come."""
        until = self._until(timeout)
        if self.close_frame is not None:
            self._need(1, until, "anything after the close frame")
            raise ServerViolation("bytes after the server's close frame: %r"
                                  % bytes(self.buf[:100]))
        self._need(2, until, "a frame header")
        b0, b1 = self.buf[0], self.buf[1]
        fin, rsv, opcode = b0 >> 7, (b0 >> 4) & 7, b0 & 0x0F
        masked, n = b1 >> 7, b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4, until, "a 16-bit length")
            n = struct.unpack("!H", bytes(self.buf[2:4]))[0]
            off = 4
            if n < 126:
                raise ServerViolation("length %d in the 16-bit form: not minimal (5.2)" % n)
        elif n == 127:
            self._need(10, until, "a 64-bit length")
            n = struct.unpack("!Q", bytes(self.buf[2:10]))[0]
            off = 10
            if n >> 63:
                raise ServerViolation("64-bit length with the most significant bit set (5.2)")
            if n < 65536:
                raise ServerViolation("length %d in the 64-bit form: not minimal (5.2)" % n)
        head = bytes(self.buf[:off])
        if masked:
            raise ServerViolation("a masked server frame (5.1): %r" % head)
        if rsv:
            raise ServerViolation("RSV bits %d set with no extension negotiated (5.2): %r"
                                  % (rsv, head))
        if opcode not in DATA_OPCODES + CONTROL_OPCODES:
            raise ServerViolation("reserved opcode %#x (5.2)" % opcode)
        if opcode in CONTROL_OPCODES and (not fin or n > 125):
            raise ServerViolation("control frame %#x fin=%d length %d (5.5)" % (opcode, fin, n))
        self._need(off + n, until, "a %d-byte payload" % n)
        payload = bytes(self.buf[off:off + n])
        del self.buf[:off + n]
        f = Frame(fin, rsv, opcode, payload)
        if opcode == OP_CONT and self.in_message is None:
            raise ServerViolation("continuation frame outside a fragmented message (5.4): %r" % f)
        if opcode in (OP_TEXT, OP_BINARY) and self.in_message is not None:
            raise ServerViolation("new data frame inside a fragmented message (5.4): %r" % f)
        if opcode == OP_CLOSE:
            check_close_payload(payload)
            self.close_frame = f
        return f

    def recv_message(self, timeout=None):
        """The next message: a control frame, or a whole data message (fragments joined)
        as a Frame with fin=1."""
        until = self._until(timeout)
        while True:
            f = self.recv_frame(until - time.monotonic())
            if f.opcode in CONTROL_OPCODES:
                return f
            if f.opcode != OP_CONT:
                self.in_message = f.opcode
                self.parts = []
            self.parts.append(f.payload)
            if f.fin:
                op, self.in_message = self.in_message, None
                payload = b"".join(self.parts)
                self.parts = []
                if op == OP_TEXT:
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise ServerViolation("text message not UTF-8 (8.1): %s" % e)
                return Frame(1, 0, op, payload)

    def recv_json(self, timeout=None):
        """The next JSON message (batches flattened). Server pings are answered; a close
        raises UnexpectedClose; a binary message is a violation of PROTOCOL.md."""
        until = self._until(timeout)
        while not self.json_queue:
            m = self.recv_message(until - time.monotonic())
            if m.opcode == OP_PING:
                self.send_frame(OP_PONG, m.payload)
                continue
            if m.opcode == OP_PONG:
                continue
            if m.opcode == OP_CLOSE:
                raise UnexpectedClose(m.close_code(), m.close_reason())
            if m.opcode != OP_TEXT:
                raise ServerViolation("the server sent a binary message: %r" % m)
            v = json.loads(m.payload.decode("utf-8"))
            if isinstance(v, list):
                if not v or not all(isinstance(x, dict) for x in v):
                    raise ServerViolation("a batch must be a non-empty array of objects: %r" % v)
                self.json_queue.extend(v)
            elif isinstance(v, dict):
                self.json_queue.append(v)
            else:
                raise ServerViolation("a message must be an object or array: %r" % v)
        return self.json_queue.pop(0)

    def wait_json(self, pred, timeout=None):
        """Messages up to the first matching pred: returns (match, skipped)."""
        until = self._until(timeout)
        skipped = []
        while True:
            m = self.recv_json(until - time.monotonic())
            if pred(m):
                return m, skipped
            skipped.append(m)

    def open(self, path="/ws/alice", timeout=None, **kw):
        """Upgrades and reads hello, the snapshots and synced; returns hello."""
        self.upgrade(path, timeout=timeout, **kw)
        hello = self.recv_json(timeout)
        if hello.get("type") != "hello":
            raise AssertionError("the first message must be hello: %r" % hello)
        self.hello = hello
        self.wait_json(lambda m: m.get("type") == "synced", timeout)
        return hello

    def ping_json(self, ref=1, timeout=None):
        """Sends an application ping and waits for its pong; returns the messages before it."""
        self.send_json({"type": "ping", "ref": ref})
        return self.expect_pong(ref, timeout)

    def expect_pong(self, ref, timeout=None):
        """Waits for {"type":"pong","ref":ref}; other messages must not be errors."""
        m, before = self.wait_json(lambda m: m.get("type") in ("pong", "error"), timeout)
        if m != {"type": "pong", "ref": ref}:
            raise AssertionError("expected pong ref %r, got %r" % (ref, m))
        return before

    def expect_pongs(self, ref, payload, timeout=None):
        """Waits for both the WebSocket pong carrying payload and {"type":"pong","ref":ref}, in
        either order: when a ping and the fragment completing a message arrive in one read,
        RFC 6455 does not order the pong against the answer to the message (5.5.2: "as soon
        as is practical"); each must come, once. Other data messages must not be errors."""
        until = self._until(timeout)
        got_control = got_json = False
        while not (got_control and got_json):
            m = self.recv_message(until - time.monotonic())
            if m.opcode == OP_CLOSE:
                raise UnexpectedClose(m.close_code(), m.close_reason())
            if m.opcode == OP_PONG:
                if m.payload != payload or got_control:
                    raise AssertionError("unexpected pong %r" % (m.payload,))
                got_control = True
                continue
            if m.opcode != OP_TEXT:
                continue
            v = json.loads(m.payload)
            for x in (v if isinstance(v, list) else [v]):
                if x.get("type") == "error":
                    raise AssertionError("unexpected error %r" % (x,))
                if x == {"type": "pong", "ref": ref}:
                    if got_json:
                        raise AssertionError("pong ref %r twice" % (ref,))
                    got_json = True

    def expect_control(self, opcode, timeout=None):
        """The next control frame, which must have this opcode; data messages before it are
        returned alongside (as Frames)."""
        until = self._until(timeout)
        before = []
        while True:
            m = self.recv_message(until - time.monotonic())
            if m.opcode == opcode:
                return m, before
            if m.opcode == OP_CLOSE:
                raise UnexpectedClose(m.close_code(), m.close_reason())
            before.append(m)

    def expect_close(self, code, timeout=None, answer=True):
        """Reads up to the server's close frame, which must carry code (None: no payload; a
        tuple: one of those);
        then answers it (unless answer is False) and waits for the server to close TCP (7.1.1:
        the server closes first). Returns (reason, data messages before the close)."""
        until = self._until(timeout)
        before = []
        while True:
            try:
                m = self.recv_message(until - time.monotonic())
            except ConnectionClosed as e:
                raise AssertionError("TCP closed without a close frame (expected close %r; "
                                     "messages before: %r): %s" % (code, before, e))
            except TimedOut as e:
                raise AssertionError("no close frame (expected close %r; messages before: "
                                     "%r): %s" % (code, before, e))
            if m.opcode == OP_CLOSE:
                break
            if m.opcode in (OP_TEXT, OP_BINARY):
                before.append(m)
        got = m.close_code()
        if got not in (code if isinstance(code, tuple) else (code,)):
            raise AssertionError("expected close %r, got close %r %r (messages before: %r)"
                                 % (code, got, m.payload[2:], before))
        answered = answer and not self.sent_close
        if answered:
            self.send_close_quietly(got)
        self.expect_tcp_close(until - time.monotonic(), reset_ok=answered)
        return m.close_reason(), before

    def expect_tcp_close(self, timeout=None, reset_ok=False):
        """Waits for the server to close TCP: EOF with nothing more on the wire. A reset is
        accepted only when reset_ok (our close answer may reach a socket already closed)."""
        until = self._until(timeout)
        try:
            while True:
                if self.buf:
                    raise ServerViolation("bytes after the server's close frame: %r"
                                          % bytes(self.buf[:100]))
                self._recv_some(until, "the server to close TCP")
        except ConnectionClosed as e:
            if e.reset and not reset_ok:
                raise AssertionError("the server reset the connection instead of closing it")
        except TimedOut:
            raise AssertionError("the server did not close the TCP connection after the close "
                                 "handshake (7.1.1: the server closes it first)")

    def assert_open(self, ref=424242, timeout=None):
        """The connection still works: an application ping is answered."""
        self.ping_json(ref, timeout)


def check_upgrade(r, key, protocols=(SUBPROTOCOL,)):
    """What a client must check in the server's handshake answer (4.1, 4.2.2)."""
    if r.status != 101:
        raise AssertionError("expected 101 Switching Protocols, got %r" % r)
    if r.tokens("Upgrade") != ["websocket"]:
        raise ServerViolation("Upgrade must be websocket (4.2.2): %r" % r)
    if "upgrade" not in r.tokens("Connection"):
        raise ServerViolation("Connection must hold Upgrade (4.2.2): %r" % r)
    if r.header("Sec-WebSocket-Accept") != accept_for(key):
        raise ServerViolation("Sec-WebSocket-Accept %r, expected %r (4.2.2)"
                              % (r.header("Sec-WebSocket-Accept"), accept_for(key)))
    proto = r.header("Sec-WebSocket-Protocol")
    if proto is not None and proto not in (protocols or ()):
        raise ServerViolation("subprotocol %r selected, not offered (4.1)" % proto)
    if r.header("Sec-WebSocket-Extensions") is not None:
        raise ServerViolation("extension selected though none was offered (4.1): %r" % r)


def check_close_payload(payload):
    if len(payload) == 1:
        raise ServerViolation("a 1-byte close payload (5.5.1)")
    if len(payload) >= 2:
        code = struct.unpack("!H", payload[:2])[0]
        if not sendable_close_code(code):
            raise ServerViolation("close code %d may not be sent (7.4)" % code)
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ServerViolation("close reason not UTF-8 (5.5.1): %r" % payload)


def connect(port, **kw):
    return Client(port, **kw)


def opened(port, path="/ws/alice", **kw):
    """A connection through the handshake and the opening messages."""
    c = Client(port)
    try:
        c.open(path, **kw)
    except BaseException:
        c.close()
        raise
    return c
