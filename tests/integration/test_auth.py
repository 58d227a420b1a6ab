"""auth.mode "jwt" against the real daemon (issue 13): every algorithm over the wire, the
RFC 8725 refusals, clock skew at the leeway's edges, a JWKS with two kids, the token as a
header or in the query, 401 and 403 before any upgrade, expiry closing with 4401 and the
`auth` message renewing it, and no token in any log line.

Keys are made at run time (authkit.py) and tokens signed by PyJWT.
"""
import asyncio
import json
import os
import re
import subprocess
import time
import unittest

import websockets

import authkit
from harness import (SLOW, TIMEOUT, Client, Daemon, DaemonTestCase, close_all, doc_config,
                     require_daemon, TRANSPORTSD)


def jwt_config(keys, **extra):
    cfg = doc_config(storage={"memory": True}, **extra)
    cfg["auth"] = {"mode": "jwt", "tenant_claim": "sub", "audience": authkit.AUDIENCE,
                   "issuer": authkit.ISSUER, "leeway_s": authkit.LEEWAY, "keys": keys}
    return cfg


def start_jwt_daemon(kit, **extra):
    """A daemon with every key of kit; its key files are written before it starts."""
    d = Daemon(config={}, env=kit.env())
    d.config = jwt_config(kit.write(d.dir), **extra)
    try:
        d.start()
    except BaseException:
        d.cleanup()
        raise
    return d


async def status_of(url, **kw):
    """The HTTP status a handshake is refused with, or 101."""
    try:
        c = await Client.connect(url, **kw)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await c.close()
    return 101


def bearer(token):
    return {"Authorization": "Bearer " + token}


class Jwt(DaemonTestCase):
    """One daemon for the class, trusting every algorithm."""

    @classmethod
    def setUpClass(cls):
        require_daemon()
        cls.kit = authkit.Keys()
        cls.daemon = start_jwt_daemon(cls.kit)
        cls.tokens = []  # every token sent: none may reach the log

    @classmethod
    def tearDownClass(cls):
        try:
            cls.daemon.stop()
        finally:
            cls.daemon.cleanup()

    def tearDown(self):
        self.assertTrue(self.daemon.running(), self.daemon.log())
        self.daemon.check_log()

    def tok(self, *a, **kw):
        t = self.kit.token(*a, **kw)
        self.tokens.append(t)
        return t

    def url(self, path="/ws/alice"):
        return self.daemon.url(path)

    def status(self, token=None, path="/ws/alice", query=False):
        if token is not None:
            self.tokens.append(token)
        if token is not None and query:
            return self.run_async(status_of(self.url(path + "?token=" + token)))
        headers = bearer(token) if token is not None else None
        return self.run_async(status_of(self.url(path), extra_headers=headers))

    def hello(self, token, path="/ws/alice", query=False):
        async def go():
            url = self.url(path + ("?token=" + token if query else ""))
            c = await Client.connect(url, extra_headers=None if query else bearer(token))
            hello, snaps = await c.open()
            await c.close()
            return hello, snaps
        self.tokens.append(token)
        return self.run_async(go())

    # -- every algorithm ---------------------------------------------------

    def test_every_algorithm_is_accepted(self):
        for alg in ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256",
                    "ES384", "EdDSA"):
            with self.subTest(alg=alg):
                hello, snaps = self.hello(self.tok(alg))
                self.assertEqual(hello["tenant"], "alice")
                self.assertEqual(snaps[("private", "notes")]["value"]["title"], "Alice notes")

    def test_the_tenant_is_the_tokens_whatever_the_path_names(self):
        # A token for bob on bob's path gets bob's data, never alice's.
        hello, snaps = self.hello(self.tok("ES256", sub="bob"), "/ws/bob")
        self.assertEqual(hello["tenant"], "bob")
        self.assertEqual(snaps[("private", "notes")]["value"]["title"], "Bob notes")

    def test_a_path_of_another_tenant_is_403(self):
        t = self.tok("ES256", sub="alice")
        for path in ("/ws/bob", "/ws/mallory", "/ws/Alice", "/ws/alice%20", "/ws/al%C3%ADce",
                     "/ws/%D0%B0lice"):
            with self.subTest(path=path):
                self.assertEqual(self.status(t, path), 403)
        self.assertNotIn("connect tenant=bob", self.daemon.log())

    def test_the_token_in_the_query(self):
        hello, _ = self.hello(self.tok("HS256"), query=True)
        self.assertEqual(hello["tenant"], "alice")
        # resume=1 after a long token still counts.
        async def go():
            t = self.tok("RS512")
            c = await Client.connect(self.url("/ws/alice?token=%s&resume=1" % t))
            hello = await c.recv()
            await c.send({"type": "resume", "models": []})
            msgs = await c.wait_type("synced")
            await c.close()
            return hello
        self.assertEqual(self.run_async(go())["type"], "hello")

    def test_header_and_query_at_once_is_400(self):
        t = self.tok("HS256")
        self.tokens.append(t)
        st = self.run_async(status_of(self.url("/ws/alice?token=" + t),
                                      extra_headers=bearer(t)))
        self.assertEqual(st, 400)

    # -- refusals: 401 before any upgrade -----------------------------------

    def test_no_token_is_401_with_a_challenge(self):
        import rawws
        with rawws.Client(self.daemon.port) as c:
            r = c.handshake("/ws/alice")
            self.assertEqual(r.status, 401)
            self.assertIn("Bearer", r.header("WWW-Authenticate") or "")
            self.assertIsNone(r.header("Upgrade"))

    def test_not_bearer_is_401(self):
        t = self.tok("HS256")
        st = self.run_async(status_of(self.url(), extra_headers={"Authorization": "Basic " + t}))
        self.assertEqual(st, 401)

    def test_rfc8725_refusals(self):
        kit = self.kit
        rsa_pem = authkit.pem_public(kit.rsa)
        good = self.tok("ES256")
        h, b, s = good.split(".")
        cases = {
            "alg none": authkit.unsigned_token("none"),
            "alg NONE": authkit.unsigned_token("NONE"),
            "alg nOnE": authkit.unsigned_token("nOnE"),
            "HS256 keyed with the RSA public key": authkit.hmac_token(rsa_pem),
            "RS256 header, ES256 key's signature": swap_alg(self.tok("ES256"), "RS256"),
            "PS256 header, RS256 signature": swap_alg(self.tok("RS256"), "PS256"),
            "RS256 header, PS256 signature": swap_alg(self.tok("PS256"), "RS256"),
            "HS512 header, HS256 signature": swap_alg(self.tok("HS256"), "HS512"),
            "an algorithm no key has": self.tok("ES512", key=ec_p521()),
            "signed by a stranger": self.tok("ES256", key=kit.stranger),
            "a kid nobody has": self.tok("ES256", key=kit.k1, headers={"kid": "k9"}),
            "k1's signature under kid k2": self.tok("ES256", key=kit.k1, headers={"kid": "k2"}),
            "claims changed after signing": "%s.%s.%s" % (
                h, authkit.b64u(json.dumps({"sub": "bob", "aud": authkit.AUDIENCE,
                                            "iss": authkit.ISSUER,
                                            "exp": int(time.time()) + 600}).encode()), s),
            "no exp": self.tok("ES256", exp_in=None),
            "wrong audience": self.tok("ES256", aud="another-app"),
            "no audience": self.tok("ES256", aud=None),
            "wrong issuer": self.tok("ES256", iss="https://evil.test"),
            "no tenant claim": self.tok("ES256", sub=None),
            "a number as tenant": self.tok("ES256", sub=42),
            "expired": self.tok("ES256", exp_in=-authkit.LEEWAY - 60),
            "not yet valid": self.tok("ES256", nbf=int(time.time()) + authkit.LEEWAY + 60),
            "two segments": "%s.%s" % (h, b),
            "padding": good + "==",
            "garbage": "not-a-token",
            "typ of another kind": self.tok("ES256", headers={"typ": "JOSE+JSON"}),
            "crit": self.tok("ES256", headers={"crit": ["exp"], "exp": 1}),
        }
        for name, token in cases.items():
            with self.subTest(case=name):
                self.assertEqual(self.status(token), 401, name)
                self.assertEqual(self.status(token, query=True), 401, name)
        self.assertNotIn("connect tenant=bob", self.daemon.log())

    # -- clock skew ----------------------------------------------------------

    def test_exp_and_nbf_at_the_leeway_edges(self):
        L = authkit.LEEWAY
        # Two seconds of margin either side: the daemon and the test read the clock a few
        # milliseconds apart, and a second boundary may fall in between.
        self.assertEqual(self.status(self.tok("HS256", exp_in=-L + 2)), 101)
        self.assertEqual(self.status(self.tok("HS256", exp_in=-L - 1)), 401)
        now = int(time.time())
        self.assertEqual(self.status(self.tok("HS256", nbf=now + L - 2)), 101)
        self.assertEqual(self.status(self.tok("HS256", nbf=now + L + 2)), 401)

    # -- JWKS: two keys, kid -------------------------------------------------

    def test_jwks_two_keys_by_kid(self):
        for kid, key in (("k1", self.kit.k1), ("k2", self.kit.k2)):
            with self.subTest(kid=kid):
                hello, _ = self.hello(self.tok("ES256", key=key, headers={"kid": kid}))
                self.assertEqual(hello["tenant"], "alice")

    # -- expiry and renewal over a live connection ---------------------------

    def test_expiry_closes_with_4401(self):
        async def go():
            t = self.tok("HS256", exp_in=-authkit.LEEWAY + 2)  # expires 2 s from now
            c = await Client.connect(self.url(), extra_headers=bearer(t))
            await c.open()
            t0 = time.monotonic()
            await c.wait_closed(timeout=TIMEOUT)
            return c.close_code, time.monotonic() - t0
        code, took = self.run_async(go())
        self.assertEqual(code, 4401)
        self.assertLess(took, 3.5 * SLOW)
        self.assertIn("code=4401", self.daemon.log())

    def test_auth_renews_before_expiry(self):
        async def go():
            t = self.tok("ES256", exp_in=-authkit.LEEWAY + 2)
            c = await Client.connect(self.url(), extra_headers=bearer(t))
            await c.open()
            fresh = self.tok("EdDSA", exp_in=600)
            await c.send({"type": "auth", "token": fresh, "ref": 7})
            ack, _ = await c.wait_type("ack")
            self.assertEqual(ack, {"type": "ack", "ref": 7})
            await asyncio.sleep(3.0)  # past the first token's expiry: still open
            await c.send({"type": "ping", "ref": 8})
            pong, _ = await c.wait_type("pong")
            self.assertEqual(pong["ref"], 8)
            await c.close()
        self.run_async(go())

    def test_auth_refusals_leave_the_connection_as_it_was(self):
        async def go():
            t = self.tok("ES256", exp_in=-authkit.LEEWAY + 3)
            c = await Client.connect(self.url(), extra_headers=bearer(t))
            await c.open()
            cases = [
                ("another tenant", self.tok("ES256", sub="bob"), "forbidden"),
                ("expired", self.tok("ES256", exp_in=-authkit.LEEWAY - 10), "forbidden"),
                ("bad signature", self.tok("ES256", key=self.kit.stranger), "forbidden"),
                ("alg none", authkit.unsigned_token(), "forbidden"),
            ]
            for i, (name, token, code) in enumerate(cases):
                self.tokens.append(token)
                await c.send({"type": "auth", "token": token, "ref": 100 + i})
                err, _ = await c.wait_type("error")
                self.assertEqual((err["ref"], err["code"]), (100 + i, code), name)
                self.assertNotIn(token, json.dumps(err))
                self.assertNotIn("bob", err["message"])
            await c.send({"type": "auth", "ref": 200})
            err, _ = await c.wait_type("error")
            self.assertEqual((err["ref"], err["code"]), (200, "bad_request"))
            self.assertIn("token", err["message"])
            # None of them extended it: it still closes with 4401.
            await c.wait_closed(timeout=TIMEOUT)
            return c.close_code
        self.assertEqual(self.run_async(go()), 4401)

    # -- no token in any log line ------------------------------------------

    def test_zz_no_token_reaches_the_log(self):
        # Runs last (zz): every token the other tests sent, accepted or refused, as a
        # header or in the query; the daemon logs at debug level.
        self.status(self.tok("HS256"), "/ws/alice", query=True)
        self.status(self.tok("HS256"), "/ws/bob", query=True)
        log = self.daemon.log()
        self.assertGreater(len(self.tokens), 30)
        for t in self.tokens:
            for part in set(t.split(".")):
                if len(part) >= 16:
                    self.assertNotIn(part, log)
        self.assertIsNone(re.search(r"token=[A-Za-z0-9_-]", log))


def swap_alg(token, alg):
    """The same signature under another header alg (RFC 8725 2.1: the key decides)."""
    h, b, s = token.split(".")
    header = json.loads(authkit.base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))
    header["alg"] = alg
    return "%s.%s.%s" % (authkit.b64u(json.dumps(header).encode()), b, s)


def ec_p521():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP521R1())


CLI = os.path.abspath(os.environ.get("TRANSPORTS_CLI") or
                      os.path.join(os.environ.get("TP_BUILD_DIR", ""), "transports"))


class TokenRenewal(DaemonTestCase):
    """The CLI's --token-file (the C client's token source): read before connecting and
    again before the token expires, sent in an `auth` message; the connection outlives
    the first token."""

    def test_watch_renews_its_token_from_the_file(self):
        self.assertTrue(os.access(CLI, os.X_OK), "the transports binary is not at %r" % CLI)
        kit = authkit.Keys()
        d = Daemon(config={}, env=kit.env())
        d.config = jwt_config(kit.write(d.dir))
        self.addCleanup(self._finish_daemon, d)
        d.start()
        tf = os.path.join(d.dir, "token")
        with open(tf, "w") as f:  # expires 4 s from now (exp + leeway)
            f.write(kit.token("ES256", exp_in=-authkit.LEEWAY + 4) + "\n")
        p = subprocess.Popen([CLI, "watch", d.url("/ws/alice"), "--token-file", tf, "--json"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        d.wait_log(r"connect tenant=alice")
        fresh = kit.token("EdDSA", exp_in=600)
        with open(tf, "w") as f:
            f.write(fresh + "\n")
        d.wait_log(r"auth renewed tenant=alice conn=\S+ expires_in_s=(59\d|60\d)")
        time.sleep(3.0)  # past the first token's expiry
        self.assertIsNone(p.poll())
        log = d.log()
        self.assertNotIn("code=4401", log)
        self.assertEqual(log.count("connect tenant=alice"), 1, log)
        self.assertNotIn(fresh.split(".")[2], log)
        p.terminate()
        _, err = p.communicate(timeout=TIMEOUT)
        for mark in ("ERROR: AddressSanitizer", "runtime error:"):
            self.assertNotIn(mark, err.decode())

    def test_without_a_source_an_expired_connection_gets_4401_then_401(self):
        self.assertTrue(os.access(CLI, os.X_OK))
        kit = authkit.Keys()
        d = Daemon(config={}, env=kit.env())
        d.config = jwt_config(kit.write(d.dir))
        self.addCleanup(self._finish_daemon, d)
        d.start()
        t = kit.token("ES256", exp_in=-authkit.LEEWAY + 2)
        p = subprocess.run([CLI, "watch", d.url("/ws/alice"), "--token", t, "--json"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30 * SLOW)
        log = d.log()
        self.assertIn("code=4401", log)
        self.assertIn("status=401", log)  # the reconnect with the same token
        self.assertNotEqual(p.returncode, 0)


class JwksRotation(DaemonTestCase):
    """A JWKS rotated by the identity provider: k2 added beside k1, then k1 withdrawn;
    the daemon reads the file at start (a restart picks the rotation up)."""

    def test_two_keys_then_the_old_one_withdrawn(self):
        kit = authkit.Keys()
        d = Daemon(config={}, env=kit.env())
        d.config = jwt_config(kit.write(d.dir))
        self.addCleanup(self._finish_daemon, d)
        d.start()
        t1 = kit.token("ES256", key=kit.k1, headers={"kid": "k1"})
        t2 = kit.token("ES256", key=kit.k2, headers={"kid": "k2"})
        for t in (t1, t2):
            self.assertEqual(self.run_async(status_of(d.url("/ws/alice"),
                                                      extra_headers=bearer(t))), 101)
        with open(os.path.join(d.dir, "jwks.json"), "w") as f:
            json.dump({"keys": [authkit.jwk_ec(kit.k2, "k2")]}, f)
        d.stop()
        d.restart()
        self.assertEqual(self.run_async(status_of(d.url("/ws/alice"),
                                                  extra_headers=bearer(t1))), 401)
        self.assertEqual(self.run_async(status_of(d.url("/ws/alice"),
                                                  extra_headers=bearer(t2))), 101)
        # k1's kid is gone; the one ES256 key without a kid (p256.pem) is still tried, and
        # its signature check fails.
        self.assertIn("token bad_signature", d.log())


class JwksReload(DaemonTestCase):
    """SIGHUP rebuilds the key set from the same config, live: a rotated JWKS is taken
    without a restart, and a broken one is refused with the old keys kept."""

    def test_sighup_takes_a_rotated_jwks(self):
        import signal
        kit = authkit.Keys()
        d = Daemon(config={}, env=kit.env())
        d.config = jwt_config(kit.write(d.dir))
        self.addCleanup(self._finish_daemon, d)
        d.start()
        from cryptography.hazmat.primitives.asymmetric import ec
        k3 = ec.generate_private_key(ec.SECP256R1())
        t3 = kit.token("ES256", key=k3, headers={"kid": "k3"})
        st = lambda t: self.run_async(status_of(d.url("/ws/alice"), extra_headers=bearer(t)))
        self.assertEqual(st(t3), 401)

        with open(os.path.join(d.dir, "jwks.json"), "w") as f:
            json.dump({"keys": [authkit.jwk_ec(kit.k2, "k2"), authkit.jwk_ec(k3, "k3")]}, f)
        mark = len(d.log())
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"auth keys reloaded keys=12 ", start=mark)
        self.assertEqual(st(t3), 101)
        # A broken file: refused, the set before it stays.
        with open(os.path.join(d.dir, "jwks.json"), "w") as f:
            f.write("{not json")
        mark = len(d.log())
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"auth keys reload failed, the old keys stay: auth.keys\[10\]", start=mark)
        self.assertEqual(st(t3), 101)
        self.assertTrue(d.running())


class JwtMetrics(DaemonTestCase):
    """/metrics counts handshakes by reason, never by tenant; metrics_token_env."""

    def test_metrics_name_no_tenant_and_need_the_token(self):
        kit = authkit.Keys()
        env = kit.env()
        env["TP_TEST_METRICS"] = "m" * 24
        d = Daemon(config={}, env=env)
        d.config = jwt_config(kit.write(d.dir), metrics_token_env="TP_TEST_METRICS")
        self.addCleanup(self._finish_daemon, d)
        d.start()
        self.assertEqual(self.run_async(status_of(
            d.url("/ws/alice"), extra_headers=bearer(kit.token("HS256", sub="alice")))), 101)
        self.assertEqual(self.run_async(status_of(
            d.url("/ws/bob"), extra_headers=bearer(kit.token("HS256", sub="alice")))), 403)
        self.assertEqual(self.run_async(status_of(d.url("/ws/secret-tenant-x"))), 401)
        status, headers, _ = d.http_get("/metrics")
        self.assertEqual(status, 401)
        self.assertIn("Bearer", headers.get("www-authenticate", ""))
        status, _, _ = d.http_get("/metrics", {"Authorization": "Bearer " + "m" * 23 + "n"})
        self.assertEqual(status, 401)
        status, _, body = d.http_get("/metrics", {"Authorization": "Bearer " + "m" * 24})
        self.assertEqual(status, 200)
        self.assertIn('transports_auth_refused_total{reason="tenant_mismatch"} 1', body)
        self.assertIn('transports_auth_refused_total{reason="missing"} 1', body)
        self.assertIn("transports_auth_accepted_total 1", body)
        for tenant in ("alice", "bob", "secret-tenant-x", "carol"):
            self.assertNotIn(tenant, body)
        self.assertNotIn("m" * 24, d.log())
        # /healthz stays open to the load balancer.
        self.assertEqual(d.http_get("/healthz")[0], 200)


class Config(DaemonTestCase):
    """Config refusals of auth, tls and the listen address, with exit code 2."""

    def run_config(self, cfg, env=None, listen="127.0.0.1:0", files=None):
        d = Daemon(config=cfg, listen=listen, env=env)
        self.addCleanup(d.cleanup)
        for name, data in (files or {}).items():
            with open(os.path.join(d.dir, name), "wb") as f:
                f.write(data)
        cmd = d.command()
        p = subprocess.run(cmd, cwd=d.dir, env=dict(env or os.environ), capture_output=True,
                           timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        return p.returncode, p.stderr.decode()

    def test_path_mode_on_a_non_loopback_address_is_refused(self):
        for listen in ("0.0.0.0:0", "[::]:0", "192.0.2.1:0"):
            with self.subTest(listen=listen):
                code, err = self.run_config(doc_config(storage={"memory": True}), listen=listen)
                self.assertEqual(code, 2, err)
                self.assertIn("not a loopback address", err)
                self.assertIn("allow_unauthenticated", err)

    def test_allow_unauthenticated_only_for_path(self):
        cfg = doc_config(storage={"memory": True})
        cfg["auth"] = {"mode": "jwt", "allow_unauthenticated": True,
                       "keys": [{"alg": "HS256", "secret_env": "X"}]}
        code, err = self.run_config(cfg)
        self.assertEqual(code, 2, err)
        self.assertIn("auth.allow_unauthenticated", err)

    def test_jwt_needs_keys_and_names_a_bad_one(self):
        cfg = doc_config(storage={"memory": True})
        cfg["auth"] = {"mode": "jwt"}
        code, err = self.run_config(cfg)
        self.assertEqual(code, 2, err)
        self.assertIn("auth.keys", err)
        cfg["auth"] = {"mode": "jwt", "keys": [{"alg": "RS256", "public_key_file": "nope.pem"}]}
        code, err = self.run_config(cfg)
        self.assertEqual(code, 2, err)
        self.assertIn("auth.keys[0].public_key_file", err)
        cfg["auth"] = {"mode": "jwt", "keys": [{"alg": "HS256", "secret_env": "TP_UNSET_X"}]}
        code, err = self.run_config(cfg)
        self.assertEqual(code, 2, err)
        self.assertIn("TP_UNSET_X", err)

    def test_metrics_token_env_must_be_set(self):
        code, err = self.run_config(doc_config(storage={"memory": True},
                                               metrics_token_env="TP_UNSET_METRICS"))
        self.assertEqual(code, 2, err)
        self.assertIn("metrics_token_env", err)

    def test_a_route_without_tenant_is_fine_with_jwt(self):
        kit = authkit.Keys()
        d = Daemon(config={}, env=kit.env())
        d.config = jwt_config(kit.write(d.dir), route="/sync")
        self.addCleanup(self._finish_daemon, d)
        d.start()
        self.assertIn("warn auth.mode \"jwt\" with no origins allowlist", d.log())
        async def go():
            c = await Client.connect(d.url("/sync"),
                                     extra_headers=bearer(kit.token("ES384", sub="bob")))
            hello, _ = await c.open()
            await c.close()
            return hello["tenant"]
        self.assertEqual(self.run_async(go()), "bob")


if __name__ == "__main__":
    unittest.main()
