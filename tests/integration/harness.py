"""Integration test harness: the real transportsd on a free loopback port.

Daemon starts `$TRANSPORTSD` with a config (a dict, written to a temp JSON file) or
`--demo`, always with `--listen 127.0.0.1:0 --log-level debug`, its stderr going to a
temp log file (never a pipe, so the daemon can never block on it). It waits for the log
line `listening addr=127.0.0.1:PORT` and stops the daemon with SIGTERM, asserting exit
code 0. On stop it fails if the log holds a sanitizer report.

Client is a small asyncio client on python3-websockets: it flattens batches (a frame is
a JSON object or an array of them) into one message queue, and waits on messages with a
deadline, never sleeping for an event.

Deadlines are failure deadlines only; they scale with TP_SANITIZE and with a wrapper
(valgrind) because those make the daemon slow.
"""

import asyncio
import atexit
import base64
import ctypes
import json
import os
import re
import shutil
import signal as _signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import websockets

TRANSPORTSD = os.environ.get("TRANSPORTSD", "")
SANITIZE = os.environ.get("TP_SANITIZE", "0").lower() in ("1", "on", "true", "yes")
BUILD_DIR = os.environ.get("TP_BUILD_DIR", "")

SUBPROTOCOL = "transports.v1"
MAX_BATCH_BYTES = 65536

# A failure deadline for one step (a message, a start, a stop). Generous: the
# ASan build is several times slower than the plain one, valgrind far more.
SLOW = 3.0 if SANITIZE else 1.0
TIMEOUT = 10.0 * SLOW

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

LISTENING_RE = re.compile(r"listening addr=127\.0\.0\.1:(\d+)")


def require_daemon(testcase=None):
    """Fails (not skips) when TRANSPORTSD does not name an executable."""
    if not TRANSPORTSD or not os.access(TRANSPORTSD, os.X_OK):
        msg = "TRANSPORTSD must name the transportsd binary (got %r)" % TRANSPORTSD
        if testcase is not None:
            testcase.fail(msg)
        raise AssertionError(msg)


def sanitizer_env(env=None):
    """The environment for a daemon: sanitizer reports go to stderr (the log)."""
    env = dict(os.environ if env is None else env)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=0")
    return env


class DaemonError(AssertionError):
    pass


_running = []


def _kill_running():
    for d in list(_running):
        d.kill()


atexit.register(_kill_running)


def _die_with_parent():
    """In the child: SIGKILL when the test process dies (a ctest timeout, a crash), so
    that no daemon outlives its test."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, _signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Managed:
    """A process a test runs (Daemon, RedisServer, RedisCluster): its log at log_path, and a
    `with` block: start() on entry, and cleanup() when that fails; stop() when the block
    ends cleanly, then finish() however it ends (cleanup() unless the class says more)."""

    def finish(self):
        self.cleanup()

    def log(self):
        """The process's log so far (log_path), or "" before it has one."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.stop()
        finally:
            self.finish()


class Daemon(Managed):
    """One transportsd process.

    config: a dict (written as JSON to a temp file, passed with --config), or None with
    demo=True for --demo. args: extra arguments. wrapper: a command list the daemon runs
    under (valgrind ...). listen: overrides 127.0.0.1:0 (None: the default).
    """

    def __init__(self, config=None, demo=False, args=(), wrapper=None,
                 start_timeout=None, stop_timeout=None, listen="127.0.0.1:0",
                 log_level="debug", env=None):
        require_daemon()
        if (config is None) == (not demo):
            raise ValueError("give a config or demo=True, not both")
        self.config = config
        self.demo = demo
        self.args = list(args)
        self.wrapper = list(wrapper or [])
        slow = SLOW * (10.0 if self.wrapper else 1.0)
        self.start_timeout = start_timeout or max(30.0 if self.wrapper else 10.0, 10.0 * slow)
        self.stop_timeout = stop_timeout or max(30.0 if self.wrapper else 10.0, 10.0 * slow)
        self.listen = listen
        self.log_level = log_level
        self.env = env
        self.proc = None
        self.port = None
        self.exit_code = None
        self.dir = tempfile.mkdtemp(prefix="tp-int-")
        self.log_path = os.path.join(self.dir, "transportsd.log")
        self.config_path = None
        self.log_start = 0

    # -- life cycle -------------------------------------------------------

    def command(self):
        cmd = self.wrapper + [TRANSPORTSD]
        if self.demo:
            cmd.append("--demo")
        else:
            self.config_path = os.path.join(self.dir, "config.json")
            with open(self.config_path, "w", encoding="utf-8") as f:
                json.dump(self.config, f, indent=1)
            cmd += ["--config", self.config_path]
        if self.listen is not None:
            cmd += ["--listen", self.listen]
        if self.log_level is not None:
            cmd += ["--log-level", self.log_level]
        return cmd + self.args

    def start(self):
        cmd = self.command()
        # The log continues across restarts; this start's lines begin at log_start.
        self.log_start = len(self.log())
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=self._log_file,
                                     cwd=self.dir, env=sanitizer_env(self.env),
                                     preexec_fn=_die_with_parent)
        _running.append(self)
        deadline = time.monotonic() + self.start_timeout
        delay = 0.002
        while True:
            m = LISTENING_RE.search(self.log(), self.log_start)
            if m:
                self.port = int(m.group(1))
                return self
            code = self.proc.poll()
            if code is not None:
                self.exit_code = code
                self._close_log()
                raise DaemonError("transportsd exited with %d before listening\ncommand: %s\n"
                                  "--- log ---\n%s" % (code, " ".join(cmd), self.log()))
            if time.monotonic() > deadline:
                self.kill()
                raise DaemonError("transportsd did not log 'listening addr=' within %.0f s\n"
                                  "command: %s\n--- log ---\n%s"
                                  % (self.start_timeout, " ".join(cmd), self.log()))
            # Polling a file: nothing to wait on but the file itself.
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=None):
        """Waits for the process to exit; returns its exit code (fails on timeout)."""
        try:
            self.exit_code = self.proc.wait(timeout=timeout or self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DaemonError("transportsd did not exit within %.0f s\n--- log ---\n%s"
                              % (timeout or self.stop_timeout, self.log()))
        if self in _running:
            _running.remove(self)
        self._close_log()
        return self.exit_code

    def stop(self, sig=_signal.SIGTERM, expect_code=0):
        """SIGTERM, then the exit code must be expect_code within the stop deadline."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.wait()
        if expect_code is not None and code != expect_code:
            raise DaemonError("transportsd exited with %d, expected %d\n--- log ---\n%s"
                              % (code, expect_code, self.log()))
        self.check_log()
        return code

    def crash(self):
        """SIGKILL: the daemon dies at once, with no flush and no cleanup. Fails if it had
        already exited; returns the exit code (-SIGKILL). The log is still checked."""
        if self.proc is None or self.proc.poll() is not None:
            raise DaemonError("crash: transportsd is not running (exit %s)\n--- log ---\n%s"
                              % (self.proc and self.proc.returncode, self.log()))
        self.proc.send_signal(_signal.SIGKILL)
        code = self.wait()
        if code != -_signal.SIGKILL:
            raise DaemonError("transportsd exited with %d before the SIGKILL\n--- log ---\n%s"
                              % (code, self.log()))
        self.check_log()
        return code

    def restart(self, same_port=False):
        """Starts the daemon again after a stop or a crash, with the same command in the
        same directory, so the files it left there (a database) are what it finds. The log
        continues in the same file (from log_start). same_port: listen on the port it had,
        else on a free one (then .port and .url() change). Like start(), call it from the
        thread that runs the test: the daemon is killed when the thread that started it
        ends (PR_SET_PDEATHSIG), so never from an executor's thread."""
        if self.running():
            raise DaemonError("restart: transportsd is still running")
        if same_port and self.port:
            self.listen = "127.0.0.1:%d" % self.port
        self.proc = None
        self.port = None
        self.exit_code = None
        return self.start()

    def path(self, name):
        """A file in the daemon's directory (its working directory)."""
        return os.path.join(self.dir, name)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self in _running:
            _running.remove(self)
        self._close_log()

    def _close_log(self):
        f = getattr(self, "_log_file", None)
        if f is not None and not f.closed:
            f.close()

    def cleanup(self):
        self.kill()
        if os.environ.get("TP_KEEP_LOGS"):
            print("transportsd log kept: %s" % self.log_path)
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    def finish(self):
        """What a `with` block ends with, however it ends (Managed)."""
        self.kill()
        self.check_log()
        self.cleanup()

    # -- observation ------------------------------------------------------

    def check_log(self):
        """Fails if the log holds a sanitizer (or valgrind-independent) report."""
        text = self.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                raise DaemonError("sanitizer report in the daemon's log (%r)\n--- log ---\n%s"
                                  % (mark, text))

    def wait_log(self, pattern, timeout=None, start=0):
        """Waits until the log (from offset start) matches the regex; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + (timeout or TIMEOUT)
        delay = 0.002
        while True:
            m = rx.search(self.log(), start)
            if m:
                return m
            if self.proc.poll() is not None:
                raise DaemonError("transportsd exited (%s) while waiting for %r\n--- log ---\n%s"
                                  % (self.proc.returncode, pattern, self.log()))
            if time.monotonic() > deadline:
                raise DaemonError("no log line matching %r\n--- log ---\n%s"
                                  % (pattern, self.log()))
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def url(self, path="/ws/alice", scheme="ws"):
        if not path.startswith("/"):
            path = "/" + path
        return "%s://127.0.0.1:%d%s" % (scheme, self.port, path)

    def http_get(self, path, headers=None, timeout=None):
        """GET path; returns (status, headers dict lowercased, body str)."""
        req = urllib.request.Request(self.url(path, "http"), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout or TIMEOUT) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, \
                    r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, \
                e.read().decode("utf-8", "replace")


class DaemonTestCase(unittest.TestCase):
    """A TestCase with start_daemon(): the daemon is stopped (SIGTERM, exit 0) and its
    log checked for sanitizer reports when the test ends, and the log is printed when the
    test failed."""

    def start_daemon(self, config=None, **kw):
        require_daemon(self)
        d = Daemon(config=config, **kw)
        self.addCleanup(self._finish_daemon, d)
        d.start()
        return d

    def _finish_daemon(self, d):
        try:
            if d.proc is not None and d.exit_code is None:
                d.stop()
            else:
                d.check_log()
        finally:
            d.cleanup()

    def run_async(self, coro, timeout=None):
        """Runs coro with a deadline; connections it left open are then dropped, so
        that a failed test cannot leave the daemon waiting on a dead client."""
        return run_async(coro, timeout)


class SharedDaemonTestCase(DaemonTestCase):
    """One daemon for the whole class (CONFIG, or DEMO = True). Each test must close the
    connections it opens; every test checks that the daemon is still alive at its end."""

    CONFIG = None
    DEMO = False
    DAEMON_ARGS = ()

    @classmethod
    def setUpClass(cls):
        require_daemon()
        cls.daemon = Daemon(config=cls.CONFIG, demo=cls.DEMO, args=cls.DAEMON_ARGS)
        try:
            cls.daemon.start()
        except BaseException:
            cls.daemon.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.daemon.stop()
        finally:
            cls.daemon.cleanup()

    def tearDown(self):
        if not self.daemon.running():
            self.fail("transportsd died during the test (exit %s)\n--- log ---\n%s"
                      % (self.daemon.proc.returncode, self.daemon.log()))
        self.daemon.check_log()


# -- the common setup: the worked session of docs/protocol.md --------------

DOC_SCHEMA = {
    "title": "Doc",
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 20},
        "body": {"type": "string", "default": ""},
        "n": {"type": "integer", "minimum": 0},
    },
    "required": ["title"],
}


def doc_config(limits=None, **extra):
    """Schema Doc; alice and bob with a private `notes`; `roadmap` (lww) subscribed by
    alice (write) and bob (read); `board` (lww-map) written by alice and bob; carol sees
    nothing."""
    cfg = {
        "autosync_ms": 50,
        "schemas": {"Doc": DOC_SCHEMA},
        "tenants": {
            "alice": {"models": {"notes": {"schema": "Doc", "value": {"title": "Alice notes"}}}},
            "bob": {"models": {"notes": {"schema": "Doc", "value": {"title": "Bob notes"}}}},
        },
        "shared": {
            "roadmap": {"schema": "Doc", "merge": "lww", "value": {"title": "Roadmap"},
                        "subscribers": {"alice": "write", "bob": "read"}},
            "board": {"schema": "Doc", "merge": "lww-map", "value": {"title": "Board"},
                      "subscribers": {"alice": "write", "bob": "write"}},
        },
    }
    if limits:
        cfg["limits"] = dict(limits)
    cfg.update(extra)
    return cfg


# -- a small asyncio client -------------------------------------------------

class Closed(Exception):
    """The connection closed while a message was awaited."""

    def __init__(self, code, reason=""):
        super().__init__("connection closed with %s %s" % (code, reason))
        self.code = code
        self.reason = reason


_open_clients = []


def run_async(coro, timeout=None):
    """asyncio.run(coro) with a deadline; clients left open are aborted at the end."""
    async def main():
        try:
            return await asyncio.wait_for(coro, timeout or 12 * TIMEOUT)
        finally:
            while _open_clients:
                c = _open_clients.pop()
                if c.ws.transport is not None and not c.ws.transport.is_closing():
                    c.abort()
    return asyncio.run(main())


class Client:
    """A WebSocket client that sees messages, not frames: batches are flattened."""

    def __init__(self, ws):
        _open_clients.append(self)
        self.ws = ws
        self.queue = []      # messages received, not yet taken
        self.frames = 0      # frames received
        self.raw_frames = []  # the text of every frame, when keep_raw
        self.keep_raw = False
        self.hello = None
        self.subprotocol = ws.subprotocol

    @classmethod
    async def connect(cls, url, subprotocols=(SUBPROTOCOL,), max_size=None,
                      timeout=None, **kw):
        ws = await asyncio.wait_for(
            websockets.connect(url, subprotocols=list(subprotocols) if subprotocols else None,
                               max_size=max_size, ping_interval=None, **kw),
            timeout or TIMEOUT)
        return cls(ws)

    @property
    def close_code(self):
        return self.ws.close_code

    async def send(self, msg):
        await self.ws.send(json.dumps(msg, separators=(",", ":")))

    async def send_text(self, text):
        await self.ws.send(text)

    async def _fill(self, timeout):
        try:
            data = await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed:
            raise Closed(self.ws.close_code, self.ws.close_reason)
        self.frames += 1
        if self.keep_raw:
            self.raw_frames.append(data)
        if isinstance(data, bytes):
            raise AssertionError("the server sent a binary frame: %r" % data[:100])
        v = json.loads(data)
        if isinstance(v, dict):
            self.queue.append(v)
        elif isinstance(v, list) and v and all(isinstance(m, dict) for m in v):
            # PROTOCOL.md: a frame that batches several messages is at most 64 KiB.
            if len(v) > 1 and len(data.encode("utf-8")) > MAX_BATCH_BYTES:
                raise AssertionError("a batch frame of %d messages takes %d bytes, over "
                                     "64 KiB" % (len(v), len(data.encode("utf-8"))))
            self.queue.extend(v)
        else:
            raise AssertionError("a frame must be a JSON object or a non-empty array of "
                                 "objects: %r" % data[:200])

    async def recv(self, timeout=None):
        """The next message (batches flattened); Closed when the connection closes;
        asyncio.TimeoutError past the deadline."""
        if not self.queue:
            await self._fill(timeout or TIMEOUT)
        return self.queue.pop(0)

    async def recv_n(self, n, timeout=None):
        return [await self.recv(timeout) for _ in range(n)]

    async def wait_for(self, pred, timeout=None):
        """Messages up to and including the first one matching pred: returns
        (match, skipped messages). Fails at the deadline."""
        deadline = asyncio.get_running_loop().time() + (timeout or TIMEOUT)
        skipped = []
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError("no matching message within the deadline; got %r"
                                     % skipped)
            try:
                m = await self.recv(left)
            except asyncio.TimeoutError:
                raise AssertionError("no matching message within the deadline; got %r"
                                     % skipped)
            if pred(m):
                return m, skipped
            skipped.append(m)

    async def wait_type(self, typ, timeout=None):
        return await self.wait_for(lambda m: m.get("type") == typ, timeout)

    _barrier_ref = -1000000

    async def barrier(self, timeout=None):
        """Everything the server sent before answering a fresh ping: the server answers
        a connection's frames in order, so this is 'all there is for now'."""
        Client._barrier_ref -= 1
        ref = Client._barrier_ref
        await self.send({"type": "ping", "ref": ref})
        _, before = await self.wait_for(
            lambda m: m.get("type") == "pong" and m.get("ref") == ref, timeout)
        return before

    async def open(self, timeout=None):
        """Reads hello, the snapshots (and their presence_snapshots, kept in
        self.presence) and synced: returns (hello, {(scope, id): snapshot})."""
        hello = await self.recv(timeout)
        assert hello.get("type") == "hello", "first message must be hello: %r" % hello
        self.hello = hello
        snaps = {}
        self.presence = {}  # (scope, id) -> the presence_snapshot's peers, when one came
        while True:
            m = await self.recv(timeout)
            if m.get("type") == "synced":
                return hello, snaps
            if m.get("type") == "presence_snapshot":
                key = (m["scope"], m["id"])
                assert key in snaps, "presence_snapshot before its snapshot: %r" % m
                self.presence[key] = m["peers"]
                continue
            assert m.get("type") == "snapshot", "expected snapshot or synced: %r" % m
            key = (m["scope"], m["id"])
            assert key not in snaps, "two snapshots of %r" % (key,)
            snaps[key] = m

    async def wait_closed(self, timeout=None):
        """Waits for the close (reading and dropping messages); returns the close code."""
        try:
            while True:
                await self._fill(timeout or TIMEOUT)
        except Closed:
            pass
        await asyncio.wait_for(self.ws.wait_closed(), timeout or TIMEOUT)
        return self.ws.close_code

    async def close(self, code=1000):
        await self.ws.close(code)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        if self.ws.transport is not None and not self.ws.transport.is_closing():
            self.abort()

    def abort(self):
        """Drops the TCP connection without a close handshake."""
        self.ws.transport.abort()


async def connect(daemon, tenant="alice", query="", route="/ws/%s", **kw):
    """Connects to the daemon's route for a tenant."""
    path = route % tenant
    if query:
        path += ("&" if "?" in path else "?") + query
    return await Client.connect(daemon.url(path), **kw)


async def open_client(daemon, tenant="alice", **kw):
    """Connects and reads the opening: returns (client, hello, snapshots)."""
    c = await connect(daemon, tenant, **kw)
    hello, snaps = await c.open()
    return c, hello, snaps


# -- RFC 7396 --------------------------------------------------------------

def merge_patch(target, patch):
    """RFC 7396 MergePatch(target, patch)."""
    if isinstance(patch, dict):
        result = dict(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if v is None:
                result.pop(k, None)
            else:
                result[k] = merge_patch(result.get(k), v)
        return result
    return patch


# -- SQLite files left by a daemon ---------------------------------------------

def sqlite_integrity(db_path):
    """`PRAGMA integrity_check` of the database a stopped (or killed) daemon left, its WAL
    included, and of its log (`-log`, when there is one): run on copies of each file and its
    -wal (not -shm, which SQLite rebuilds), so that opening them (which recovers and
    checkpoints the WAL) leaves the daemon's own files as the daemon left them. Returns the
    rows joined by newlines: "ok" when the files are whole."""
    import sqlite3
    tmp = tempfile.mkdtemp(prefix="tp-sqlite-")
    try:
        rows = []
        for path in (db_path, db_path + "-log"):
            if path != db_path and not os.path.exists(path):
                continue
            copy = os.path.join(tmp, os.path.basename(path))
            shutil.copyfile(path, copy)
            if os.path.exists(path + "-wal"):
                shutil.copyfile(path + "-wal", copy + "-wal")
            con = sqlite3.connect(copy)
            try:
                rows += [str(r[0]) for r in con.execute("PRAGMA integrity_check")]
            finally:
                con.close()
        return "ok" if rows and all(r == "ok" for r in rows) else "\n".join(rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- raw sockets: a handshake and frames without a WebSocket library ----------

def raw_handshake(port, path, headers=None, rcvbuf=None, timeout=None):
    """Opens a TCP connection, sends an upgrade request; returns (sock, status, headers,
    leftover bytes after the response head). rcvbuf sets SO_RCVBUF before connecting."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout or TIMEOUT)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    h = {"Host": "127.0.0.1:%d" % port, "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Protocol": SUBPROTOCOL}
    h.update(headers or {})
    req = "GET %s HTTP/1.1\r\n" % path + "".join(
        "%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None) + "\r\n"
    s.sendall(req.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return s, status, hdrs, rest


def raw_frame(opcode, payload, fin=True):
    """A masked client frame."""
    mask = os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def raw_read_frames(sock, data=b"", timeout=None):
    """Reads server frames until a close frame or EOF: returns ([(opcode, payload)],
    close code or None)."""
    sock.settimeout(timeout or TIMEOUT)
    frames = []
    buf = bytearray(data)
    while True:
        while True:
            if len(buf) < 2:
                break
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n = struct.unpack("!H", bytes(buf[2:4]))[0]
                off = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n = struct.unpack("!Q", bytes(buf[2:10]))[0]
                off = 10
            if len(buf) < off + n:
                break
            payload = bytes(buf[off:off + n])
            del buf[:off + n]
            op = b0 & 0x0F
            frames.append((op, payload))
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return frames, code
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return frames, None
        buf += chunk


async def close_all(clients, timeout=None):
    """Closes every client gracefully (close handshake), aborting those that hang."""
    for c in clients:
        try:
            await asyncio.wait_for(c.ws.close(), timeout or TIMEOUT)
        except Exception:
            c.abort()


def model_key(m):
    return (m["scope"], m["id"])
