"""The client over TLS (wss://), through the real `transports` binary (issue 6: "TLS verification").

transportsd has no TLS of its own yet, so the server here is Python's websockets (Debian's
python3-websockets) behind Python's ssl module, with a certificate made by `openssl` for this
test, speaking the server side of protocol.md just far enough for `get` and `write`: hello,
one snapshot, synced, ack. What is checked is the client's side of TLS:

- with the test's certificate as `--ca-file`, the certificate is verified and `get` works;
- without it, the certificate is not trusted (the system's CAs do not know it): the tool fails
  with exit 3 and nothing is printed on stdout;
- `--insecure` skips verification: `get` works again;
- a certificate issued for another name is refused even with `--ca-file`, and accepted with
  `--insecure`;
- `write` over TLS gets its ack."""

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import unittest

import websockets

from test_cli import CLI, CliMixin, require_cli

VALUE = {"title": "Notes over TLS", "body": ""}


def make_cert(directory, name, san):
    """A self-signed certificate and key for `san` (e.g. "IP:127.0.0.1")."""
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=transports-test",
                    "-addext", "subjectAltName=" + san],
                   check=True, capture_output=True)
    return cert, key


class TlsServer:
    """A minimal transports server over wss:// on a thread of its own."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.writes = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the TLS server did not start")

    async def handler(self, ws, path=None):
        rev = 1
        await ws.send(json.dumps([
            {"type": "hello", "protocol": 1, "tenant": "alice", "conn": "c1", "tick_ms": 0,
             "max_message_bytes": 1048576},
            {"type": "snapshot", "scope": "private", "id": "notes", "schema": "Document",
             "rev": rev, "access": "write", "value": VALUE},
            {"type": "synced"}]))
        try:
            await self.serve_messages(ws, rev)
        except websockets.ConnectionClosed:
            pass  # the client is done

    async def serve_messages(self, ws, rev):
        async for text in ws:
            msgs = json.loads(text)
            for m in msgs if isinstance(msgs, list) else [msgs]:
                if m.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "ref": m.get("ref")}))
                elif m.get("type") == "write":
                    self.writes.append(m)
                    await ws.send(json.dumps({"type": "ack", "ref": m["ref"], "scope": m["scope"],
                                              "id": m["id"], "rev": rev + 1, "from": rev}))
                    rev += 1
                elif m.get("type") == "resume":
                    pass

    def run(self):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.server = await websockets.serve(self.handler, "127.0.0.1", 0, ssl=self.ctx,
                                                 subprotocols=["transports.v1"])
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ClientTls(CliMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise AssertionError("openssl is not installed (scripts/install-deps.sh installs it)")
        cls.dir = tempfile.mkdtemp(prefix="tp-tls-")
        cls.cert, cls.key = make_cert(cls.dir, "good", "IP:127.0.0.1")
        cls.other, cls.other_key = make_cert(cls.dir, "other", "DNS:elsewhere.example")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        require_cli(self)

    def serve(self, cert, key):
        server = TlsServer(cert, key)
        self.addCleanup(server.close)
        return server

    def test_verified_with_the_servers_ca(self):
        s = self.serve(self.cert, self.key)
        url = "wss://127.0.0.1:%d/ws/alice" % s.port
        code, out, err = self.cli("get", url, "private/notes", "--ca-file", self.cert)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out), VALUE)

    def test_an_unknown_certificate_is_refused(self):
        s = self.serve(self.cert, self.key)
        url = "wss://127.0.0.1:%d/ws/alice" % s.port
        code, out, err = self.cli("get", url, "private/notes", "--timeout", "5")
        self.assertEqual(code, 3, err)
        self.assertEqual(out, "")
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertTrue(err.startswith("transports: "), err)

    def test_insecure_skips_verification(self):
        s = self.serve(self.cert, self.key)
        url = "wss://127.0.0.1:%d/ws/alice" % s.port
        code, out, err = self.cli("get", url, "private/notes", "--insecure")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out), VALUE)

    def test_a_certificate_for_another_name_is_refused(self):
        s = self.serve(self.other, self.other_key)
        url = "wss://127.0.0.1:%d/ws/alice" % s.port
        code, out, err = self.cli("get", url, "private/notes", "--ca-file", self.other,
                                  "--timeout", "5")
        self.assertEqual(code, 3, err)
        self.assertEqual(out, "")
        code, out, err = self.cli("get", url, "private/notes", "--insecure")
        self.assertEqual((code, err), (0, ""))

    def test_write_over_tls_is_acked(self):
        s = self.serve(self.cert, self.key)
        url = "wss://127.0.0.1:%d/ws/alice" % s.port
        code, out, err = self.cli("write", url, "private/notes", '{"body":"sealed"}',
                                  "--ca-file", self.cert)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, "rev 2\n")
        self.assertEqual([w["patch"] for w in s.writes], [{"body": "sealed"}])


if __name__ == "__main__":
    unittest.main()
