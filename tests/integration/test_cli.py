"""The `transports` command-line tool (issue 6), the real binary against the real daemon.

`transports get` prints a model's value as the server's snapshot holds it; `write` prints the
rev of its ack, and a refused write exits 1 with the server's code on one stderr line; an
unreachable server exits 3 quickly, a refused handshake 1, a bad command line 2; `watch`
prints snapshots and patches (as text or JSON lines) until SIGTERM, exit 0, and reconnects
by itself when the daemon restarts.

The binary is $TRANSPORTS_CLI, else $TP_BUILD_DIR/transports. Under TP_SANITIZE its stderr
must hold no sanitizer report (LeakSanitizer included: it runs at the tool's exit)."""

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (BUILD_DIR, SANITIZER_MARKS, SLOW, TIMEOUT, DaemonTestCase,
                     SharedDaemonTestCase, close_all, doc_config, open_client, sanitizer_env)

CLI = os.path.abspath(os.environ.get("TRANSPORTS_CLI") or os.path.join(BUILD_DIR, "transports"))


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def require_cli(testcase):
    if not os.access(CLI, os.X_OK):
        testcase.fail("the transports binary is not at %r (set TP_BUILD_DIR or TRANSPORTS_CLI)"
                      % CLI)


def free_port():
    """A loopback port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class CliMixin:
    """Runs the tool: run() to completion, watch() in the background."""

    def cli(self, *args, timeout=None):
        """Runs `transports ARGS`; returns (exit code, stdout, stderr) and checks stderr for
        sanitizer reports."""
        require_cli(self)
        try:
            p = subprocess.run([CLI] + list(args), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout or 3 * TIMEOUT,
                               env=sanitizer_env())
        except subprocess.TimeoutExpired as e:
            self.fail("transports %s did not exit: stdout %r stderr %r"
                      % (" ".join(args), e.stdout, e.stderr))
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        self.no_sanitizer_report(err)
        return p.returncode, out, err

    def no_sanitizer_report(self, err):
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err, "sanitizer report from transports:\n" + err)

    def assert_one_error_line(self, err, prefix):
        """stderr is exactly one line, starting with prefix."""
        self.assertTrue(err.endswith("\n"), repr(err))
        self.assertEqual(err.count("\n"), 1, "one line expected on stderr:\n" + err)
        self.assertTrue(err.startswith(prefix), "expected %r..., got %r" % (prefix, err))

    def watch(self, *args):
        require_cli(self)
        w = Watch([CLI, "watch"] + list(args))
        self.addCleanup(w.kill)
        return w


class Watch:
    """`transports watch` in the background; its stdout and stderr read by threads, line by
    line, so that the test waits on lines with a deadline."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=sanitizer_env())
        self.out = queue.Queue()
        self.err_lines = []
        self.out_lines = []
        self._err_cv = threading.Condition()
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self):
        for line in self.proc.stdout:
            line = line.decode("utf-8", "replace").rstrip("\n")
            self.out_lines.append(line)
            self.out.put(line)
        self.out.put(None)

    def _read_err(self):
        for line in self.proc.stderr:
            with self._err_cv:
                self.err_lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                self._err_cv.notify_all()

    def line(self, pred, what, timeout=None):
        """The next stdout line matching pred (skipping others); fails at the deadline."""
        deadline = time.monotonic() + (timeout or TIMEOUT)
        skipped = []
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise queue.Empty
                line = self.out.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no stdout line %s within the deadline; got %r; stderr %r"
                                     % (what, skipped, self.err_lines))
            if line is None:
                raise AssertionError("watch exited (%s) before a line %s; got %r; stderr %r"
                                     % (self.proc.wait(), what, skipped, self.err_lines))
            if pred(line):
                return line
            skipped.append(line)

    def json_event(self, pred, what, timeout=None):
        line = self.line(lambda ln: pred(json.loads(ln)), what, timeout)
        return json.loads(line)

    def err_line(self, pattern, timeout=None):
        """Waits for a stderr line matching the regex."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + (timeout or TIMEOUT)
        with self._err_cv:
            while True:
                for ln in self.err_lines:
                    if rx.search(ln):
                        return ln
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self._threads[1].is_alive():
                    raise AssertionError("no stderr line matching %r; stderr %r"
                                         % (pattern, self.err_lines))
                self._err_cv.wait(left)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signals, waits for the exit; returns (code, all stderr)."""
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout or TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("watch did not exit on %s; stderr %r" % (sig, self.err_lines))
        for t in self._threads:
            t.join(TIMEOUT)
        return code, "\n".join(self.err_lines)

    def wait(self, timeout=None):
        try:
            code = self.proc.wait(timeout or TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("watch did not exit; stderr %r" % self.err_lines)
        for t in self._threads:
            t.join(TIMEOUT)
        return code, "\n".join(self.err_lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


class OneShot(CliMixin, SharedDaemonTestCase):
    """get and write against `transportsd --demo`."""

    DEMO = True

    def url(self, tenant="alice"):
        return self.daemon.url("/ws/" + tenant)

    def snapshots(self, tenant):
        async def run():
            c, _, snaps = await open_client(self.daemon, tenant)
            await close_all([c])
            return snaps
        return self.run_async(run())

    def test_get_prints_the_snapshot_value(self):
        for tenant in ("alice", "bob"):
            snaps = self.snapshots(tenant)
            for (scope, id_), snap in snaps.items():
                code, out, err = self.cli("get", self.url(tenant), "%s/%s" % (scope, id_))
                self.assertEqual((code, err), (0, ""), (tenant, scope, id_))
                self.assertEqual(out, compact(snap["value"]) + "\n")
                self.assertEqual(json.loads(out), snap["value"])

    def test_write_then_get(self):
        before = self.snapshots("alice")[("private", "notes")]
        code, out, err = self.cli("write", self.url(), "private/notes", '{"body":"from the CLI"}')
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, "rev %d\n" % (before["rev"] + 1))
        code, out, err = self.cli("get", self.url(), "private/notes")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out), dict(before["value"], body="from the CLI"))
        after = self.snapshots("alice")[("private", "notes")]
        self.assertEqual(after["rev"], before["rev"] + 1)
        self.assertEqual(after["value"]["body"], "from the CLI")
        # bob's notes are another model: untouched.
        self.assertNotEqual(self.snapshots("bob")[("private", "notes")]["value"].get("body"),
                            "from the CLI")

        # A shared write, and a field removed with null (RFC 7396).
        rev = self.snapshots("alice")[("shared", "roadmap")]["rev"]
        code, out, err = self.cli("write", self.url(), "shared/roadmap",
                                  '{"body":"Q1: ship the CLI"}', "--timeout", "20")
        self.assertEqual((code, out, err), (0, "rev %d\n" % (rev + 1), ""))
        code, out, err = self.cli("get", self.url("bob"), "shared/roadmap")
        self.assertEqual(json.loads(out)["body"], "Q1: ship the CLI")
        code, out, err = self.cli("write", self.url(), "private/notes", '{"body":null}')
        self.assertEqual((code, err), (0, ""))
        code, out, err = self.cli("get", self.url(), "private/notes")
        self.assertNotIn("body", json.loads(out))

    def test_write_forbidden(self):
        before = self.snapshots("bob")[("shared", "roadmap")]
        code, out, err = self.cli("write", self.url("bob"), "shared/roadmap", '{"body":"bob"}')
        self.assertEqual((code, out), (1, ""), err)
        self.assert_one_error_line(err, "transports: write shared/roadmap: forbidden: ")
        self.assertEqual(self.snapshots("bob")[("shared", "roadmap")], before)

    def test_write_invalid_names_the_field(self):
        before = self.snapshots("alice")[("private", "notes")]
        code, out, err = self.cli("write", self.url(), "private/notes", '{"title":42}')
        self.assertEqual((code, out), (1, ""), err)
        self.assert_one_error_line(err, "transports: write private/notes: invalid: ")
        self.assertIn("title", err)
        self.assertEqual(self.snapshots("alice")[("private", "notes")], before)

    def test_not_found(self):
        code, out, err = self.cli("get", self.url(), "private/nope")
        self.assertEqual((code, out), (1, ""), err)
        self.assert_one_error_line(err, "transports: get private/nope: not_found: ")
        code, out, err = self.cli("write", self.url(), "shared/nope", '{"title":"x"}')
        self.assertEqual((code, out), (1, ""), err)
        self.assert_one_error_line(err, "transports: write shared/nope: not_found: ")
        # carol exists for no one: she sees nothing, not even the roadmap.
        code, out, err = self.cli("get", self.url("carol"), "shared/roadmap")
        self.assertEqual((code, out), (1, ""), err)
        self.assert_one_error_line(err, "transports: get shared/roadmap: not_found: ")

    def test_refused_handshake_404(self):
        url = self.daemon.url("/nope/alice")
        for args in (("get", url, "private/notes"), ("write", url, "private/notes", "{}")):
            code, out, err = self.cli(*args)
            self.assertEqual((code, out), (1, ""), err)
            self.assert_one_error_line(err, "transports: %s: " % url)
            self.assertIn("404", err)

    def test_watch_refused_handshake_exits_1(self):
        url = self.daemon.url("/nope/alice")
        w = self.watch(url)
        code, err = w.wait()
        self.assertEqual(code, 1, err)
        self.no_sanitizer_report(err)
        self.assertIn("transports: %s: " % url, err)
        self.assertIn("404", err)

    def test_usage_errors_exit_2(self):
        url = self.url()
        cases = [
            (),
            ("frob",),
            ("--frobnicate",),
            ("get",),
            ("get", url),
            ("get", url, "notes"),
            ("get", url, "private/"),
            ("get", url, "public/notes"),
            ("get", url, "private/notes", "extra"),
            ("get", url, "private/notes", "--timeout", "0"),
            ("get", url, "private/notes", "--timeout", "soon"),
            ("get", url, "private/notes", "--timeout"),
            ("get", url, "private/notes", "--json"),
            ("get", url, "private/notes", "--insecure=yes"),
            ("get", "http://127.0.0.1:1/ws/alice", "private/notes"),
            ("get", "", "private/notes"),
            ("write", url, "private/notes"),
            ("write", url, "private/notes", "not json"),
            ("write", url, "private/notes", "[1]"),
            ("write", url, "private/notes", '"x"'),
            ("watch",),
            ("watch", url, "--timeout", "3"),
            ("watch", url, "--token"),
        ]
        for args in cases:
            code, out, err = self.cli(*args)
            self.assertEqual((code, out), (2, ""), (args, err))
            self.assert_one_error_line(err, "transports: ")
        code, out, err = self.cli("write", url, "private/notes", "[1]")
        self.assertIn("JSON object", err)
        code, out, err = self.cli("get", url, "private/notes", "--timeout", "soon")
        self.assertIn("--timeout", err)

    def test_help_and_version(self):
        code, out, err = self.cli("--help")
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith("usage: transports watch URL"), out)
        for word in ("watch", "get", "write", "Exit status", "--token", "--timeout", "--json"):
            self.assertIn(word, out)
        for n in range(5):
            self.assertRegex(out, r"\n  %d  " % n)
        for cmd in ("watch", "get", "write"):
            for args in ((cmd, "--help"), (cmd, self.url(), "--help"), ("--help", cmd)):
                code, out, err = self.cli(*args)
                self.assertEqual((code, err), (0, ""), args)
                self.assertTrue(out.startswith("usage: transports %s URL" % cmd), (args, out))
                self.assertIn("Exit status", out)
        code, out, err = self.cli("--version")
        self.assertEqual((code, err), (0, ""))
        self.assertRegex(out, r"^transports \d+\.\d+\.\d+\n$")


class Unreachable(CliMixin, unittest.TestCase):
    """No daemon at all: exit 3, fast, one line."""

    def test_connection_refused_exits_3_fast(self):
        url = "ws://127.0.0.1:%d/ws/alice" % free_port()
        for args in (("get", url, "private/notes"), ("write", url, "private/notes", "{}")):
            t0 = time.monotonic()
            code, out, err = self.cli(*(args + ("--timeout", "5")))
            elapsed = time.monotonic() - t0
            self.assertEqual((code, out), (3, ""), err)
            self.assert_one_error_line(err, "transports: cannot connect to %s: " % url)
            self.assertLess(elapsed, 4 * SLOW, "no retry: it must fail at once")

    def test_connection_refused_says_so(self):
        # tp_client_callbacks.state documents reasons "for humans" such as "connection
        # refused"; the tool prints the library's reason after the URL.
        url = "ws://127.0.0.1:%d/ws/alice" % free_port()
        code, out, err = self.cli("get", url, "private/notes", "--timeout", "5")
        self.assertEqual(code, 3, err)
        self.assertRegex(err, r"^transports: cannot connect to %s: .*connection refused"
                         % re.escape(url))

    def test_watch_retries_until_sigterm(self):
        url = "ws://127.0.0.1:%d/ws/alice" % free_port()
        w = self.watch(url)
        w.err_line(r"^transports: cannot connect to %s: .*; retrying$" % re.escape(url))
        code, err = w.stop()
        self.assertEqual(code, 0, err)
        self.no_sanitizer_report(err)
        self.assertEqual(w.out_lines, [])

    def test_silent_server_times_out_with_3(self):
        # A listener that never answers the handshake: the timeout decides.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        self.addCleanup(s.close)
        url = "ws://127.0.0.1:%d/ws/alice" % s.getsockname()[1]
        t0 = time.monotonic()
        code, out, err = self.cli("get", url, "private/notes", "--timeout", "1")
        elapsed = time.monotonic() - t0
        self.assertEqual((code, out), (3, ""), err)
        self.assert_one_error_line(err, "transports: ")
        self.assertIn(url, err)
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 1 + 4 * SLOW)

    def test_unknown_host_exits_3(self):
        url = "ws://no-such-host.invalid:8080/ws/alice"
        code, out, err = self.cli("get", url, "private/notes", "--timeout", "5")
        self.assertEqual((code, out), (3, ""), err)
        self.assert_one_error_line(err, "transports: cannot connect to %s: " % url)


class FakeServer:
    """A loopback listener that answers every request with a fixed HTTP status, keeping
    the request heads it read (to see what the tool sends)."""

    def __init__(self, status="401 Unauthorized"):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.status = status
        self.requests = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(TIMEOUT)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    self.requests.append(data.decode("latin-1"))
                    conn.sendall(("HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close"
                                  "\r\n\r\n" % self.status).encode())
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class Handshakes(CliMixin, DaemonTestCase):
    """What the tool sends and how it reads refusals: a token, 401, 503."""

    def fake(self, status):
        f = FakeServer(status)
        self.addCleanup(f.close)
        return f

    def test_token_is_sent_and_401_is_refused(self):
        f = self.fake("401 Unauthorized")
        url = "ws://127.0.0.1:%d/ws/alice" % f.port
        code, out, err = self.cli("get", url, "private/notes", "--token", "s3cret")
        self.assertEqual((code, out), (1, ""), err)
        self.assert_one_error_line(err, "transports: %s: " % url)
        self.assertIn("401", err)
        self.assertRegex(f.requests[0], r"(?im)^Authorization: Bearer s3cret\r$")
        self.assertRegex(f.requests[0], r"(?im)^Sec-WebSocket-Protocol: transports\.v1\r$")
        # $TRANSPORTS_TOKEN when there is no --token.
        env = dict(os.environ, TRANSPORTS_TOKEN="from-env")
        p = subprocess.run([CLI, "write", url, "private/notes", "{}"], capture_output=True,
                           timeout=3 * TIMEOUT, env=sanitizer_env(env))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(f.requests[-1], r"(?im)^Authorization: Bearer from-env\r$")

    def test_503_is_unreachable(self):
        d = self.start_daemon(doc_config(limits={"max_connections_per_tenant": 1},
                                         storage={"memory": True}))

        async def hold_and_try():
            c, _, _ = await open_client(d, "alice")
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    None, lambda: self.cli("get", d.url("/ws/alice"), "private/notes"))
            finally:
                await close_all([c])
        code, out, err = self.run_async(hold_and_try())
        self.assertEqual((code, out), (3, ""), err)
        self.assert_one_error_line(err, "transports: cannot connect to %s: " % d.url("/ws/alice"))
        self.assertIn("503", err)

    def test_patch_from_stdin_and_too_large(self):
        d = self.start_daemon(doc_config(storage={"memory": True}))
        url = d.url("/ws/alice")

        def write_stdin(data):
            p = subprocess.run([CLI, "write", url, "private/notes", "-"], input=data,
                               capture_output=True, timeout=3 * TIMEOUT, env=sanitizer_env())
            err = p.stderr.decode()
            self.no_sanitizer_report(err)
            return p.returncode, p.stdout.decode(), err

        self.assertEqual(write_stdin(b'{"body": "from stdin"}\n'), (0, "rev 2\n", ""))
        code, out, err = self.cli("get", url, "private/notes")
        self.assertEqual(json.loads(out), {"title": "Alice notes", "body": "from stdin"})
        big = json.dumps({"body": "x" * (1 << 20)}).encode()
        code, out, err = write_stdin(big)
        self.assertEqual((code, out), (1, ""), err)
        self.assert_one_error_line(err, "transports: write private/notes: too_large: ")
        code, out, err = write_stdin(b"[1]")
        self.assertEqual((code, out), (2, ""), err)
        self.assert_one_error_line(err, "transports: write: PATCH must be a JSON object")


class Watching(CliMixin, DaemonTestCase):
    """watch against a daemon of its own (the reconnect test restarts it)."""

    def test_watch_json(self):
        d = self.start_daemon(demo=True)
        w = self.watch(d.url("/ws/alice"), "--json")
        snaps = {}
        for _ in range(2):
            ev = w.json_event(lambda e: e["event"] == "snapshot", "snapshot")
            self.assertEqual(set(ev), {"event", "scope", "id", "rev", "access", "value"})
            snaps[(ev["scope"], ev["id"])] = ev
        self.assertEqual(set(snaps), {("private", "notes"), ("shared", "roadmap")})
        self.assertEqual(snaps[("private", "notes")]["value"], {"title": "Alice notes",
                                                                "body": ""})
        self.assertEqual(snaps[("shared", "roadmap")]["access"], "write")
        w.json_event(lambda e: e["event"] == "state" and e["state"] == "live", "state live")

        # The CLI's own write (another connection of alice) reaches the watcher as a patch.
        rev = snaps[("shared", "roadmap")]["rev"]
        code, out, err = self.cli("write", d.url("/ws/alice"), "shared/roadmap",
                                  '{"body":"Q1"}')
        self.assertEqual((code, out, err), (0, "rev %d\n" % (rev + 1), ""))
        ev = w.json_event(lambda e: e["event"] == "patch", "patch")
        self.assertEqual({k: ev[k] for k in ("scope", "id", "from", "rev", "patch")},
                         {"scope": "shared", "id": "roadmap", "from": rev, "rev": rev + 1,
                          "patch": {"body": "Q1"}})
        self.assertIsInstance(ev["origin"], str)
        self.assertEqual(ev["value"], {"title": "Roadmap", "body": "Q1"})

        # A Python client's private write: a patch too, with its conn as origin.
        async def py_write():
            c, hello, s = await open_client(d, "alice")
            await c.send({"type": "write", "scope": "private", "id": "notes", "ref": 1,
                          "patch": {"body": "from python"}})
            ack = await c.recv()
            await close_all([c])
            return hello["conn"], s[("private", "notes")]["rev"], ack
        conn, nrev, ack = self.run_async(py_write())
        self.assertEqual(ack["type"], "ack")
        ev = w.json_event(lambda e: e["event"] == "patch", "patch")
        self.assertEqual(ev, {"event": "patch", "scope": "private", "id": "notes",
                              "from": nrev, "rev": nrev + 1, "patch": {"body": "from python"},
                              "origin": conn,
                              "value": {"title": "Alice notes", "body": "from python"}})

        code, err = w.stop(signal.SIGTERM)
        self.assertEqual(code, 0, err)
        self.no_sanitizer_report(err)
        for line in w.out_lines:
            self.assertIsInstance(json.loads(line), dict, line)  # every line is one object

    def test_watch_human(self):
        d = self.start_daemon(demo=True)
        w = self.watch(d.url("/ws/bob"))
        lines = {w.line(lambda ln: " snapshot " in ln, "snapshot") for _ in range(2)}
        self.assertEqual(lines, {
            'private/notes rev 1 snapshot (write): {"title":"Bob notes","body":""}',
            'shared/roadmap rev 1 snapshot (read): {"title":"Roadmap","body":""}'})
        w.err_line(r"^transports: live$")
        code, out, err = self.cli("write", d.url("/ws/alice"), "shared/roadmap",
                                  '{"body":"Q1: ship"}')
        self.assertEqual((code, err), (0, ""))
        line = w.line(lambda ln: " by " in ln, "patch")
        self.assertRegex(line, r'^shared/roadmap rev 2 by \S+: \{"body":"Q1: ship"\}$')
        code, err = w.stop(signal.SIGINT)
        self.assertEqual(code, 0, err)
        self.no_sanitizer_report(err)
        self.assertIn("transports: connecting to %s" % d.url("/ws/bob"), err)

    def test_watch_shows_presence(self):
        """Issue 17: presence lines, text and --json, from a Python client's presence on
        the shared roadmap (read by bob) and on alice's private notes (never shown to
        bob), with a line when it leaves."""
        d = self.start_daemon(demo=True)
        wj = self.watch(d.url("/ws/alice"), "--json")
        wt = self.watch(d.url("/ws/bob"))
        wj.json_event(lambda e: e["event"] == "state" and e["state"] == "live", "live")
        wt.err_line(r"^transports: live$")

        async def py():
            c, hello, _ = await open_client(d, "alice")
            await c.send({"type": "presence", "scope": "private", "id": "notes",
                          "state": {"sel": 1}})
            await c.send({"type": "presence", "scope": "shared", "id": "roadmap",
                          "state": {"name": "Py", "cursor": 2}})
            return c, hello["conn"]
        loop = asyncio.new_event_loop()
        try:
            c, conn = loop.run_until_complete(py())
            ev = wj.json_event(lambda e: e["event"] == "presence" and e["id"] == "roadmap",
                               "presence")
            self.assertEqual(ev, {"event": "presence", "scope": "shared", "id": "roadmap",
                                  "conn": conn, "state": {"name": "Py", "cursor": 2}})
            ev = wj.json_event(lambda e: e["event"] == "presence" and e["id"] == "notes",
                               "presence")
            self.assertEqual(ev["state"], {"sel": 1})
            line = wt.line(lambda ln: " presence " in ln, "presence")
            self.assertEqual(line, 'shared/roadmap presence %s: {"name":"Py","cursor":2}'
                             % conn)
            loop.run_until_complete(close_all([c]))
        finally:
            loop.close()
        line = wt.line(lambda ln: " presence " in ln, "presence left")
        self.assertEqual(line, "shared/roadmap presence %s left" % conn)
        ev = wj.json_event(lambda e: e["event"] == "presence" and e["state"] is None, "left")
        self.assertEqual(ev["conn"], conn)
        for w in (wt, wj):
            code, err = w.stop(signal.SIGTERM)
            self.assertEqual(code, 0, err)
            self.no_sanitizer_report(err)
        self.assertFalse([ln for ln in wt.out_lines if "notes presence" in ln],
                         "alice's private presence never reaches bob")

    def test_watch_reconnects_after_a_restart(self):
        d = self.start_daemon(demo=True)
        w = self.watch(d.url("/ws/alice"), "--json")
        w.json_event(lambda e: e["event"] == "state" and e["state"] == "live", "live")
        d.stop()  # SIGTERM: the daemon closes with 1001
        w.err_line(r"^transports: disconnected \(.*\); reconnecting$")
        d.restart(same_port=True)
        w.json_event(lambda e: e["event"] == "state" and e["state"] == "live", "live again",
                     timeout=3 * TIMEOUT)
        code, out, err = self.cli("write", d.url("/ws/alice"), "private/notes",
                                  '{"body":"after the restart"}')
        self.assertEqual((code, out, err), (0, "rev 2\n", ""))
        ev = w.json_event(lambda e: e["event"] == "patch", "patch after the restart")
        self.assertEqual((ev["id"], ev["rev"], ev["patch"]),
                         ("notes", 2, {"body": "after the restart"}))
        code, err = w.stop()
        self.assertEqual(code, 0, err)
        self.no_sanitizer_report(err)


if __name__ == "__main__":
    unittest.main()
