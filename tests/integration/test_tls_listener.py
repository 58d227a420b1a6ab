"""tls: {cert_file, key_file} on the daemon's listener (issue 13): wss:// and https://
with a certificate made by `openssl` in the test, TLS 1.2 or newer only, and SIGHUP
reading a renewed certificate without dropping a connection."""
import asyncio
import hashlib
import warnings
import signal
import socket
import ssl
import urllib.request

import authkit
from harness import TIMEOUT, Client, Daemon, DaemonTestCase, doc_config


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # the certificate names 127.0.0.1 as an IP SAN
    return ctx


def peer_cert_digest(port, cafile):
    ctx = client_context(cafile)
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        with ctx.wrap_socket(s) as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest(), t.version()


def file_digest(cert):
    with open(cert) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


class TlsListener(DaemonTestCase):

    def start_tls(self):
        d = Daemon(config={})
        cert, key = authkit.make_cert(d.dir, "server")
        d.config = doc_config(storage={"memory": True},
                              tls={"cert_file": "server.crt", "key_file": "server.key"})
        self.addCleanup(self._finish_daemon, d)
        d.start()
        self.assertIn("tls=1", d.log())
        return d, cert, key

    def https_get(self, d, path, cafile):
        req = urllib.request.Request("https://127.0.0.1:%d%s" % (d.port, path))
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=client_context(cafile)) as r:
            return r.status, r.read().decode()

    def test_wss_and_https(self):
        d, cert, _ = self.start_tls()
        status, body = self.https_get(d, "/healthz", cert)
        self.assertEqual(status, 200)
        self.assertIn('"status":"ok"', body)
        status, body = self.https_get(d, "/metrics", cert)
        self.assertIn("transports_connections", body)

        async def go():
            c = await Client.connect("wss://127.0.0.1:%d/ws/alice" % d.port,
                                     ssl=client_context(cert))
            hello, snaps = await c.open()
            await c.close()
            return hello, snaps
        hello, snaps = self.run_async(go())
        self.assertEqual(hello["tenant"], "alice")
        self.assertEqual(snaps[("private", "notes")]["value"]["title"], "Alice notes")
        # A plain connection to the TLS port gets nothing it can use.
        with self.assertRaises(Exception):
            urllib.request.urlopen("http://127.0.0.1:%d/healthz" % d.port, timeout=TIMEOUT)

    def test_tls_1_1_is_refused_1_2_accepted(self):
        d, cert, _ = self.start_tls()
        old = client_context(cert)
        old.verify_mode = ssl.CERT_NONE
        warnings.simplefilter("ignore", DeprecationWarning)  # the point of the test
        try:
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            old.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as e:
            self.fail("this Python cannot offer TLS 1.1 to test the refusal: %s" % e)
        with socket.create_connection(("127.0.0.1", d.port), timeout=TIMEOUT) as s:
            with self.assertRaises((ssl.SSLError, ConnectionResetError)):
                with old.wrap_socket(s):
                    pass
        v12 = client_context(cert)
        v12.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", d.port), timeout=TIMEOUT) as s:
            with v12.wrap_socket(s) as t:
                self.assertEqual(t.version(), "TLSv1.2")

    def test_sighup_reloads_the_certificate_and_keeps_connections(self):
        d, cert, key = self.start_tls()
        first = file_digest(cert)
        self.assertEqual(peer_cert_digest(d.port, cert)[0], first)

        async def go():
            ctx = client_context(cert)
            c = await Client.connect("wss://127.0.0.1:%d/ws/alice" % d.port, ssl=ctx)
            await c.open()
            # A renewal: a new pair written over the old files.
            authkit.make_cert(d.dir, "server")
            second = file_digest(cert)
            self.assertNotEqual(first, second)
            mark = len(d.log())
            d.send_signal(signal.SIGHUP)
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: d.wait_log(r"tls reloaded", start=mark))
            # The old connection still works.
            await c.send({"type": "ping", "ref": 1})
            pong, _ = await c.wait_type("pong")
            self.assertEqual(pong["ref"], 1)
            # New connections get the new certificate, and verify against it.
            self.assertEqual(peer_cert_digest(d.port, cert)[0], second)
            c2 = await Client.connect("wss://127.0.0.1:%d/ws/bob" % d.port,
                                      ssl=client_context(cert))
            hello, _ = await c2.open()
            self.assertEqual(hello["tenant"], "bob")
            await c2.close()
            await c.close()
        self.run_async(go())

    def test_a_bad_reload_keeps_the_old_certificate(self):
        d, cert, key = self.start_tls()
        first = file_digest(cert)
        # A key that is not the certificate's.
        import subprocess
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", key], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mark = len(d.log())
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"tls reload failed, the old certificate stays: tls.key_file", start=mark)
        self.assertEqual(peer_cert_digest(d.port, cert)[0], first)
        self.assertEqual(self.https_get(d, "/healthz", cert)[0], 200)

    def test_config_refusals(self):
        import subprocess
        for tls, what in (({"cert_file": "x.crt"}, "tls.key_file: required"),
                          ({"cert_file": "nope.crt", "key_file": "nope.key"},
                           "tls.cert_file: cannot read")):
            d = Daemon(config=doc_config(storage={"memory": True}, tls=tls))
            self.addCleanup(d.cleanup)
            p = subprocess.run(d.command(), cwd=d.dir, capture_output=True, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(what, p.stderr.decode())
