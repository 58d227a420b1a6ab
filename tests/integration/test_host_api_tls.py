"""The host HTTP API (/v1/) on a listener with `tls`: served over https with the admin
token (a PUT of a model, then a GET), still refused without the token, and plain http to the
TLS port gets no answer and changes nothing. The certificate is made by `openssl` in the
test (authkit.make_cert)."""
import http.client
import json
import os
import ssl

import authkit
from harness import TIMEOUT, Client, Daemon, DaemonTestCase, doc_config

TOKEN = "t0ken-for-the-host-api-tls-test-0123456789"


class HostApiOverTls(DaemonTestCase):

    def setUp(self):
        d = Daemon(config={}, env=dict(os.environ, TP_ADMIN=TOKEN))
        self.cert, _ = authkit.make_cert(d.dir, "server")
        d.config = doc_config(storage={"memory": True}, admin_token_env="TP_ADMIN",
                              tls={"cert_file": "server.crt", "key_file": "server.key"})
        self.addCleanup(self._finish_daemon, d)
        d.start()
        self.assertIn("tls=1", d.log())
        self.d = d

    def https(self, method, path, body=None, token=TOKEN):
        ctx = ssl.create_default_context(cafile=self.cert)  # verified against the test's own
        ctx.check_hostname = False  # the certificate names 127.0.0.1 as an IP SAN
        conn = http.client.HTTPSConnection("127.0.0.1", self.d.port, timeout=TIMEOUT, context=ctx)
        try:
            h = {"Authorization": "Bearer " + token} if token else {}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                h["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            text = r.read()
            return r.status, json.loads(text) if text else None
        finally:
            conn.close()

    def test_put_and_get_over_https_with_the_admin_token(self):
        async def main():
            c, _, snaps = await open_client_tls(self.d, self.cert, "carol")
            self.assertEqual(snaps, {})
            st, m = self.https("PUT", "/v1/tenants/carol/models/todo",
                               {"schema": "Doc", "value": {"title": "T"}})
            self.assertEqual(st, 201, m)
            self.assertEqual(m, {"id": "todo", "rev": 1, "value": {"title": "T", "body": ""}})
            # The wss connection of that tenant gets the model the API made.
            snap, _ = await c.wait_type("snapshot")
            self.assertEqual((snap["id"], snap["value"]["title"]), ("todo", "T"))
            await c.close()
        self.run_async(main())
        st, m = self.https("GET", "/v1/tenants/carol/models/todo")
        self.assertEqual((st, m["rev"], m["schema"], m["value"]), (200, 1, "Doc", {"title": "T", "body": ""}))
        # TLS does not stand in for the token.
        st, m = self.https("GET", "/v1/tenants/carol/models/todo", token=None)
        self.assertEqual(st, 401, m)
        st, m = self.https("GET", "/v1/tenants/carol/models/todo", token="not-the-admin-token-000")
        self.assertEqual(st, 401, m)

    def test_plain_http_to_the_tls_listener_gets_nothing_and_changes_nothing(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=TIMEOUT)
        body = json.dumps({"schema": "Doc", "value": {"title": "plain"}}).encode()
        with self.assertRaises((http.client.HTTPException, ConnectionError, OSError)):
            try:
                conn.request("PUT", "/v1/tenants/carol/models/plain", body=body,
                             headers={"Authorization": "Bearer " + TOKEN,
                                      "Content-Type": "application/json"})
                conn.getresponse().read()
            finally:
                conn.close()
        st, m = self.https("GET", "/v1/tenants/carol/models/plain")
        self.assertEqual(st, 404, m)
        # The daemon still serves https after it.
        st, m = self.https("PUT", "/v1/tenants/carol/models/plain", {"schema": "Doc", "value": {"title": "tls"}})
        self.assertEqual(st, 201, m)


async def open_client_tls(d, cert, tenant):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    c = await Client.connect("wss://127.0.0.1:%d/ws/%s" % (d.port, tenant), ssl=ctx)
    hello, snaps = await c.open()
    return c, hello, snaps
