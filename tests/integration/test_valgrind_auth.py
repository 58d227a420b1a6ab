"""auth.mode "jwt" and TLS under valgrind memcheck (issue 13): https, wss with tokens of
three algorithms, refusals (401 missing, 401 refused, 403 another tenant), the `auth`
message accepted and refused, a 4401 on expiry, a SIGHUP certificate reload, then SIGTERM:
exit 0, no memcheck error, no leak. Registered only in the plain build."""
import re
import shutil
import signal
import ssl
import urllib.request

import authkit
from harness import Client, Daemon, DaemonTestCase, doc_config, require_daemon
from test_valgrind import SLOW_TIMEOUT, VALGRIND


def ctx(cafile):
    c = ssl.create_default_context(cafile=cafile)
    c.check_hostname = False
    return c


class ValgrindAuth(DaemonTestCase):

    def test_jwt_and_tls_under_memcheck(self):
        require_daemon(self)
        self.assertIsNotNone(shutil.which("valgrind"), "valgrind is required for this test")
        kit = authkit.Keys()
        d = Daemon(config={}, env=kit.env(), wrapper=VALGRIND, start_timeout=SLOW_TIMEOUT,
                   stop_timeout=SLOW_TIMEOUT)
        self.addCleanup(d.cleanup)
        cert, _ = authkit.make_cert(d.dir, "server")
        cfg = doc_config(storage={"memory": True},
                         tls={"cert_file": "server.crt", "key_file": "server.key"})
        cfg["auth"] = {"mode": "jwt", "audience": authkit.AUDIENCE, "issuer": authkit.ISSUER,
                       "leeway_s": authkit.LEEWAY, "keys": kit.write(d.dir)}
        d.config = cfg
        d.start()
        T = SLOW_TIMEOUT
        url = "wss://127.0.0.1:%d" % d.port
        with urllib.request.urlopen("https://127.0.0.1:%d/healthz" % d.port, timeout=T,
                                    context=ctx(cert)) as r:
            self.assertEqual(r.status, 200)

        async def status(path, token=None):
            import websockets
            try:
                c = await Client.connect(url + path, ssl=ctx(cert), timeout=T,
                                         extra_headers={"Authorization": "Bearer " + token}
                                         if token else None)
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code
            await c.close()
            return 101

        async def scenario():
            self.assertEqual(await status("/ws/alice"), 401)
            self.assertEqual(await status("/ws/alice", kit.token("ES256", key=kit.stranger)),
                             401)
            self.assertEqual(await status("/ws/bob", kit.token("RS256")), 403)
            for alg in ("HS256", "PS256", "EdDSA"):
                self.assertEqual(await status("/ws/alice", kit.token(alg)), 101)
            c = await Client.connect(url + "/ws/alice", ssl=ctx(cert), timeout=T,
                                     extra_headers={"Authorization": "Bearer " +
                                                    kit.token("ES256", exp_in=-authkit.LEEWAY + 8)})
            await c.open(T)
            await c.send({"type": "auth", "token": kit.token("ES384", sub="bob"), "ref": 1})
            err, _ = await c.wait_type("error", T)
            self.assertEqual(err["code"], "forbidden")
            await c.send({"type": "auth", "token": kit.token("ES256", exp_in=-authkit.LEEWAY + 12),
                          "ref": 2})
            ack, _ = await c.wait_type("ack", T)
            self.assertEqual(ack["ref"], 2)
            await c.wait_closed(T)
            self.assertEqual(c.close_code, 4401)
        self.run_async(scenario(), timeout=4 * T)
        authkit.make_cert(d.dir, "server")
        mark = len(d.log())
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"tls reloaded", timeout=T, start=mark)
        self.assertEqual(self.run_async(status("/ws/alice", kit.token("HS512")), timeout=T), 101)
        d.send_signal(signal.SIGTERM)
        code = d.wait()
        log = d.log()
        self.assertEqual(code, 0, log)
        self.assertIn("Memcheck", log)
        self.assertRegex(log, r"ERROR SUMMARY: 0 errors from 0 contexts", log)
        for kind in ("definitely", "indirectly", "possibly"):
            m = re.search(kind + r" lost: ([\d,]+) bytes", log)
            if m:
                self.assertEqual(m.group(1), "0", log)
        d.check_log()


if __name__ == "__main__":
    import unittest
    unittest.main()
