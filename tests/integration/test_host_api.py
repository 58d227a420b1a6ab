"""Issue 14: the host HTTP API (HOST-API.md) against the real daemon.

Every call and its error statuses, the admin token rules, commit-before-2xx (a 2xx change
survives SIGKILL), live connections seeing every change (snapshot, patch with origin
"host", access, removed, 4404, 4403), ETag/If-Match, lists, sync, and hostile input: each
refusal is a JSON error with the protocol's code and a message naming the field, and a
WebSocket client is served all along.
"""

import asyncio
import http.client
import json
import os
import socket
import time
import unittest

from harness import (DOC_SCHEMA, TIMEOUT, Closed, Daemon, DaemonError, DaemonTestCase,
                     connect, doc_config, open_client, run_async)

TOKEN = "t0ken-for-the-host-api-tests-0123456789"
ENV = dict(os.environ, TP_ADMIN=TOKEN)


def api_config(**extra):
    cfg = doc_config(admin_token_env="TP_ADMIN", storage={"sqlite": "state.db"}, **extra)
    return cfg


class Api:
    """One keep-alive HTTP connection to the daemon."""

    def __init__(self, port, token=TOKEN):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)

    def call(self, method, path, body=None, headers=None, raw=None, token=True):
        h = {}
        if token and self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                text = r.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed a connection it would not keep (after an error
                # whose body it did not read): a new one.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
                if attempt:
                    raise
        if r.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        v = json.loads(text) if text else None
        return r.status, {k.lower(): v2 for k, v2 in r.getheaders()}, v

    def close(self):
        self.conn.close()


class HostApiTestCase(DaemonTestCase):

    def setUp(self):
        self.d = self.start_daemon(api_config(), env=ENV)
        self.api = Api(self.d.port)
        self.addCleanup(self.api.close)

    def assertError(self, got, status, code, *words):
        st, _, body = got
        self.assertEqual(st, status, body)
        self.assertIsInstance(body, dict, body)
        self.assertEqual(set(body), {"error"})
        self.assertEqual(body["error"]["code"], code, body)
        for w in words:
            self.assertIn(w, body["error"]["message"])


class TokenRules(HostApiTestCase):

    def test_missing_and_wrong_token_401_with_www_authenticate(self):
        for tok in (None, "wrong", TOKEN + "x", TOKEN[:-1], ""):
            api = Api(self.d.port, token=tok)
            got = api.call("GET", "/v1/tenants")
            self.assertError(got, 401, "unauthorized", "Authorization")
            self.assertTrue(got[1]["www-authenticate"].startswith("Bearer"))
            api.close()
        st, _, body = self.api.call("GET", "/v1/tenants")
        self.assertEqual(st, 200)
        self.assertNotIn(TOKEN, self.d.log())
        st, _, metrics = self.d.http_get("/metrics")
        self.assertRegex(metrics, r"(?m)^transports_api_unauthorized_total 5$")
        self.assertRegex(metrics, r'(?m)^transports_api_answers_total\{class="2xx"\} [1-9]')

    def test_wrong_token_many_times_while_clients_are_served(self):
        async def main():
            c, _, _ = await open_client(self.d, "alice")
            api = Api(self.d.port, token="nope")
            for i in range(300):
                self.assertEqual(api.call("PATCH", "/v1/tenants/alice/models/notes",
                                          {"body": "x"})[0], 401)
                if i % 50 == 0:
                    await c.send({"type": "write", "ref": i + 1, "scope": "private",
                                  "id": "notes", "patch": {"n": i}})
                    ack, _ = await c.wait_type("ack")
                    self.assertEqual(ack["ref"], i + 1)
            api.close()
            await c.close()
        self.run_async(main())
        # nothing the wrong token tried got in
        st, _, m = self.api.call("GET", "/v1/tenants/alice/models/notes")
        self.assertEqual(m["value"]["body"], "")

    def test_openapi_needs_no_token(self):
        api = Api(self.d.port, token=None)
        st, h, doc = api.call("GET", "/v1/openapi.json")
        self.assertEqual(st, 200)
        self.assertEqual(doc["openapi"][:3], "3.1")


class NoToken(DaemonTestCase):

    def test_no_admin_token_no_api(self):
        d = self.start_daemon(doc_config())
        api = Api(d.port)
        for method, path in (("GET", "/v1/tenants"), ("POST", "/v1/sync"),
                             ("GET", "/v1/shared/roadmap"), ("GET", "/v1/openapi.json")):
            st, _, body = api.call(method, path)
            self.assertEqual(st, 404, (method, path))
            self.assertEqual(body["error"]["code"], "not_found")
        api.close()

    def test_admin_token_env_unset_refuses_to_start(self):
        env = dict(os.environ)
        env.pop("TP_ADMIN", None)
        d = Daemon(config=api_config(), env=env)
        with self.assertRaises(DaemonError) as cm:
            d.start()
        self.assertEqual(d.exit_code, 2)
        self.assertIn("TP_ADMIN", str(cm.exception))
        d.cleanup()


class Models(HostApiTestCase):

    def test_private_model_calls_and_live_connections(self):
        async def main():
            c, _, snaps = await open_client(self.d, "carol")
            self.assertEqual(snaps, {})
            # PUT: 201, defaults filled, the connection gets the snapshot
            st, h, m = self.api.call("PUT", "/v1/tenants/carol/models/todo",
                                     {"schema": "Doc", "value": {"title": "T"}})
            self.assertEqual(st, 201, m)
            self.assertEqual(m, {"id": "todo", "rev": 1, "value": {"title": "T", "body": ""}})
            self.assertEqual(h["etag"], '"1"')
            snap, _ = await c.wait_type("snapshot")
            self.assertEqual((snap["id"], snap["value"]["title"]), ("todo", "T"))
            # PATCH: the client write path, origin host
            st, h, m = self.api.call("PATCH", "/v1/tenants/carol/models/todo",
                                     {"n": 3, "body": None},
                                     headers={"Content-Type": "application/merge-patch+json"})
            self.assertEqual((st, m["rev"], m["value"]), (200, 2, {"title": "T", "n": 3}))
            self.assertEqual(h["etag"], '"2"')
            p, _ = await c.wait_type("patch")
            self.assertEqual((p["origin"], p["rev"], p["patch"]),
                             ("host", 2, {"n": 3, "body": None}))
            # refused by the schema: 422 naming the field, nothing changed
            got = self.api.call("PATCH", "/v1/tenants/carol/models/todo", {"n": -1})
            self.assertError(got, 422, "invalid", "n")
            got = self.api.call("PATCH", "/v1/tenants/carol/models/todo", {"title": "x" * 30})
            self.assertError(got, 422, "invalid", "title")
            st, h, m = self.api.call("GET", "/v1/tenants/carol/models/todo")
            self.assertEqual((st, m["rev"], m["schema"], m["value"]["n"]), (200, 2, "Doc", 3))
            # PUT again: replaced (200), the connection gets the new snapshot
            st, _, m = self.api.call("PUT", "/v1/tenants/carol/models/todo",
                                     {"schema": "Doc", "value": {"title": "New"}})
            self.assertEqual(st, 200, m)
            snap, _ = await c.wait_for(lambda x: x.get("type") == "snapshot"
                                       and x["value"]["title"] == "New")
            # the tenant lists it
            st, _, t = self.api.call("GET", "/v1/tenants/carol")
            self.assertEqual(t["models"], [{"id": "todo", "schema": "Doc", "rev": m["rev"]}])
            self.assertEqual(t["connections"], 1)
            # DELETE: 204, removed
            st, _, body = self.api.call("DELETE", "/v1/tenants/carol/models/todo")
            self.assertEqual((st, body), (204, None))
            rm, _ = await c.wait_type("removed")
            self.assertEqual(rm["id"], "todo")
            self.assertError(self.api.call("GET", "/v1/tenants/carol/models/todo"), 404,
                             "not_found", "todo")
            self.assertError(self.api.call("DELETE", "/v1/tenants/carol/models/todo"), 404,
                             "not_found")
            await c.close()
        self.run_async(main())

    def test_shared_model_subscriptions_and_access(self):
        async def main():
            c, _, snaps = await open_client(self.d, "carol")
            st, _, m = self.api.call("PUT", "/v1/shared/plan",
                                     {"schema": "Doc", "merge": "lww-map",
                                      "value": {"title": "Plan"}})
            self.assertEqual((st, m["rev"]), (201, 1))
            st, _, m = self.api.call("GET", "/v1/shared/plan")
            self.assertEqual((m["merge"], m["schema"]), ("lww-map", "Doc"))
            # subscribe: a snapshot
            st, _, b = self.api.call("PUT", "/v1/shared/plan/subscribers/carol",
                                     {"access": "read"})
            self.assertEqual(st, 200, b)
            snap, _ = await c.wait_type("snapshot")
            self.assertEqual((snap["scope"], snap["id"], snap["access"]),
                             ("shared", "plan", "read"))
            # change of access: `access`
            self.assertEqual(self.api.call("PUT", "/v1/shared/plan/subscribers/carol",
                                           {"access": "write"})[0], 200)
            acc, _ = await c.wait_type("access")
            self.assertEqual(acc["access"], "write")
            st, _, lst = self.api.call("GET", "/v1/shared/plan/subscribers")
            self.assertEqual(lst, {"items": [{"tenant": "carol", "access": "write"}],
                                   "next": None})
            # set_shared through the merge strategy
            st, _, m = self.api.call("PATCH", "/v1/shared/plan", {"n": 1})
            self.assertEqual((st, m["rev"], m["value"]["n"]), (200, 2, 1))
            p, _ = await c.wait_type("patch")
            self.assertEqual(p["origin"], "host")
            # unsubscribe: removed
            self.assertEqual(self.api.call("DELETE", "/v1/shared/plan/subscribers/carol")[0],
                             204)
            rm, _ = await c.wait_type("removed")
            self.assertEqual(rm["id"], "plan")
            self.assertError(self.api.call("DELETE", "/v1/shared/plan/subscribers/carol"), 404,
                             "not_found", "carol")
            # unshare: subscribers get removed
            self.api.call("PUT", "/v1/shared/plan/subscribers/carol", {"access": "read"})
            await c.wait_type("snapshot")
            self.assertEqual(self.api.call("DELETE", "/v1/shared/plan")[0], 204)
            await c.wait_type("removed")
            self.assertError(self.api.call("GET", "/v1/shared/plan"), 404, "not_found")
            await c.close()
        self.run_async(main())

    def test_tenant_delete_closes_4404_and_connections_delete_4403(self):
        async def main():
            a, _, _ = await open_client(self.d, "alice")
            b, _, _ = await open_client(self.d, "bob")
            st, _, lst = self.api.call("GET", "/v1/tenants/bob/connections")
            self.assertEqual(st, 200)
            self.assertEqual(len(lst["items"]), 1)
            self.assertEqual(set(lst["items"][0]), {"conn", "peer", "since"})
            self.assertEqual(lst["items"][0]["conn"], b.hello["conn"])
            st, _, body = self.api.call("DELETE", "/v1/tenants/bob/connections")
            self.assertEqual((st, body), (200, {"closed": 1}))
            self.assertEqual(await b.wait_closed(), 4403)
            self.assertEqual(self.api.call("DELETE", "/v1/tenants/alice")[0], 204)
            self.assertEqual(await a.wait_closed(), 4404)
            st, _, t = self.api.call("GET", "/v1/tenants/alice")
            self.assertFalse(st == 200 and (t["models"] or t["shared"]), t)
            st, _, lst = self.api.call("GET", "/v1/shared/roadmap/subscribers")
            self.assertEqual([i["tenant"] for i in lst["items"]], ["bob"])
            self.assertError(self.api.call("DELETE", "/v1/tenants/nobody"), 404, "not_found",
                             "nobody")
        self.run_async(main())

    def test_if_match_412_changes_nothing(self):
        st, h, m = self.api.call("GET", "/v1/tenants/alice/models/notes")
        etag = h["etag"]
        got = self.api.call("PATCH", "/v1/tenants/alice/models/notes", {"n": 1},
                            headers={"If-Match": etag})
        self.assertEqual(got[0], 200)
        got = self.api.call("PATCH", "/v1/tenants/alice/models/notes", {"n": 2},
                            headers={"If-Match": etag})
        self.assertError(got, 412, "precondition_failed", "If-Match")
        got = self.api.call("PUT", "/v1/tenants/alice/models/notes",
                            {"schema": "Doc", "value": {"title": "z"}},
                            headers={"If-Match": etag})
        self.assertError(got, 412, "precondition_failed")
        st, h, m = self.api.call("GET", "/v1/tenants/alice/models/notes")
        self.assertEqual((m["rev"], m["value"]["n"], m["value"]["title"]), (2, 1, "Alice notes"))
        self.assertError(self.api.call("PATCH", "/v1/tenants/alice/models/notes", {"n": 3},
                                       headers={"If-Match": "2"}), 400, "bad_request",
                         "If-Match")

    def test_lists_limit_and_after(self):
        for i in range(7):
            self.assertEqual(self.api.call("PUT", "/v1/tenants/t%d/models/m" % i,
                                           {"schema": "Doc", "value": {"title": "x"}})[0], 201)
        seen, after, pages = [], None, 0
        while True:
            q = "/v1/tenants?limit=3" + ("&after=" + after if after else "")
            st, _, page = self.api.call("GET", q)
            self.assertEqual(st, 200)
            self.assertLessEqual(len(page["items"]), 3)
            seen += [t["id"] for t in page["items"]]
            pages += 1
            after = page["next"]
            if after is None:
                break
        self.assertEqual(seen, sorted(set(seen)))
        self.assertEqual(set(seen), {"alice", "bob"} | {"t%d" % i for i in range(7)})
        self.assertEqual(pages, 3)
        for bad in ("0", "1001", "x", "-1", "1e3"):
            self.assertError(self.api.call("GET", "/v1/tenants?limit=" + bad), 400,
                             "bad_request", "limit")

    def test_sync_and_sync_query(self):
        st, _, b = self.api.call("POST", "/v1/sync")
        self.assertEqual((st, b), (200, {"published": 0}))
        st, _, m = self.api.call("PATCH", "/v1/shared/roadmap?sync=1", {"n": 5})
        self.assertEqual((st, m["value"]["n"]), (200, 5))

    def test_schemas(self):
        schema = dict(DOC_SCHEMA, title="Other")
        st, _, b = self.api.call("PUT", "/v1/schemas/Other", schema)
        self.assertEqual(st, 201, b)
        self.assertEqual(self.api.call("PUT", "/v1/schemas/Other", schema)[0], 200)
        self.assertEqual(self.api.call("PUT", "/v1/schemas/Doc", DOC_SCHEMA)[0], 200)
        self.assertError(self.api.call("PUT", "/v1/schemas/Other", DOC_SCHEMA), 409,
                         "conflict", "Other")
        st, _, doc = self.api.call("GET", "/v1/schemas/Other")
        self.assertEqual((st, doc["title"]), (200, "Other"))
        self.assertError(self.api.call("GET", "/v1/schemas/Nope"), 404, "not_found", "Nope")
        self.assertError(self.api.call("PUT", "/v1/schemas/Bad", {"type": "object",
                                                                   "frobnicate": 1}),
                         422, "invalid")
        st, _, m = self.api.call("PUT", "/v1/tenants/dan/models/x",
                                 {"schema": "Other", "value": {"title": "hi"}})
        self.assertEqual(st, 201)
        # names and models outlive a restart
        self.d.stop()
        self.d.restart()
        self.api = Api(self.d.port)
        self.addCleanup(self.api.close)
        st, _, doc = self.api.call("GET", "/v1/schemas/Other")
        self.assertEqual((st, doc["title"]), (200, "Other"))
        st, _, m = self.api.call("GET", "/v1/tenants/dan/models/x")
        self.assertEqual((st, m["schema"]), (200, "Other"))


class Durability(HostApiTestCase):

    def test_a_2xx_change_survives_sigkill(self):
        done = []
        for i in range(20):
            st, _, m = self.api.call("PATCH", "/v1/tenants/alice/models/notes", {"n": i})
            self.assertEqual(st, 200)
            done.append(m["rev"])
        st, _, m = self.api.call("PUT", "/v1/shared/fresh", {"schema": "Doc",
                                                            "value": {"title": "F"}})
        self.assertEqual(st, 201)
        st, _, _ = self.api.call("PUT", "/v1/shared/fresh/subscribers/zed", {"access": "write"})
        self.assertEqual(st, 200)
        self.d.crash()
        self.d.restart()
        api = Api(self.d.port)
        self.addCleanup(api.close)
        st, _, m = api.call("GET", "/v1/tenants/alice/models/notes")
        self.assertEqual((m["rev"], m["value"]["n"]), (done[-1], 19))
        st, _, lst = api.call("GET", "/v1/shared/fresh/subscribers")
        self.assertEqual(lst["items"], [{"tenant": "zed", "access": "write"}])


    def test_storage_failing_answers_503_then_stores_the_change(self):
        # Issue 16: a failed commit changes nothing in memory. The change is kept and stored
        # once the store recovers (a retried PATCH converges); further changes are refused
        # with 503 while the store fails.
        import resource
        st, _, before = self.api.call("GET", "/v1/tenants/alice/models/notes")
        resource.prlimit(self.d.proc.pid, resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
        try:
            got = self.api.call("PATCH", "/v1/tenants/alice/models/notes", {"n": 42})
            self.assertError(got, 503, "unavailable", "storage")
            self.assertIn("retry-after", got[1])
            got = self.api.call("PATCH", "/v1/tenants/alice/models/notes", {"n": 43})
            self.assertError(got, 503, "unavailable", "storage")
        finally:
            resource.prlimit(self.d.proc.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        deadline = time.monotonic() + 10
        while self.d.http_get("/healthz")[0] != 200:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        st, _, after = self.api.call("GET", "/v1/tenants/alice/models/notes")
        self.assertEqual((after["rev"], after["value"].get("n")), (before["rev"] + 1, 42))
        st, _, m = self.api.call("PATCH", "/v1/tenants/alice/models/notes", {"n": 42})
        self.assertEqual((st, m["rev"]), (200, before["rev"] + 1), "the retry converges")


class BadInput(HostApiTestCase):

    def test_bodies(self):
        p = "/v1/tenants/alice/models/x"
        cases = [
            ({"schema": "Doc", "value": {"title": "a"}, "extra": 1}, 400, "bad_request", "extra"),
            ({"schema": 5, "value": {}}, 400, "bad_request", "schema"),
            ({"value": {"title": "a"}}, 400, "bad_request", "schema"),
            ({"schema": "Doc", "value": []}, 400, "bad_request", "value"),
            ({"schema": "Nope", "value": {}}, 422, "invalid", "schema"),
            ({"schema": "Doc", "value": {}}, 422, "invalid", "title"),
            ([1, 2], 400, "bad_request", "body"),
        ]
        for body, status, code, word in cases:
            self.assertError(self.api.call("PUT", p, body), status, code, word)
        self.assertError(self.api.call("PUT", p, raw=b"{not json", headers={
            "Content-Type": "application/json"}), 400, "bad_request", "JSON")
        self.assertError(self.api.call("PUT", p, raw=b'{"a":1,"a":2}', headers={
            "Content-Type": "application/json"}), 400, "bad_request")
        self.assertError(self.api.call("PUT", p, raw=b"{}", headers={
            "Content-Type": "text/plain"}), 400, "bad_request", "Content-Type")
        self.assertError(self.api.call("PUT", "/v1/shared/roadmap/subscribers/carol",
                                       {"access": "admin"}), 400, "bad_request", "access")
        self.assertError(self.api.call("PUT", "/v1/shared/s", {"schema": "Doc",
                                                              "merge": "crdt9"}),
                         422, "invalid", "merge")
        self.assertError(self.api.call("PATCH", "/v1/tenants/alice/models/notes", [1]), 400,
                         "bad_request", "body")
        self.assertError(self.api.call("PUT", p), 400, "bad_request", "body")
        # nothing partial was stored
        self.assertError(self.api.call("GET", p), 404, "not_found")

    def test_paths(self):
        self.assertError(self.api.call("GET", "/v1/tenants/" + "a" * 257), 400, "bad_request",
                         "tenant")
        self.assertError(self.api.call("GET", "/v1/shared/" + "s" * 257), 400, "bad_request",
                         "id")
        self.assertError(self.api.call("GET", "/v1/tenants/%2561lice"), 400, "bad_request",
                         "path")
        self.assertError(self.api.call("GET", "/v1/tenants/%3Fx"), 400, "bad_request")
        self.assertError(self.api.call("GET", "/v1/nothing"), 404, "not_found")
        self.assertError(self.api.call("GET", "/v1/tenants/alice/models/notes/more/x"), 404,
                         "not_found")
        self.assertError(self.api.call("GET", "/v1/tenants/alice/"), 404, "not_found")
        st, h, _ = self.api.call("POST", "/v1/tenants")
        self.assertEqual(st, 405)
        self.assertIn("GET", h["allow"])
        # percent-decoded once: %61 is "a"
        st, _, t = self.api.call("GET", "/v1/tenants/%61lice")
        self.assertEqual((st, t["id"]), (200, "alice"))

    def test_huge_chunked_and_slow_bodies(self):
        # over max_message_bytes: 413 from Content-Length alone, before the body
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=TIMEOUT)
        s.sendall(b"PUT /v1/shared/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 999999999\r\n\r\n")
        head = s.recv(4096).decode()
        self.assertIn(" 413 ", head.split("\r\n")[0])
        self.assertIn("too_large", head)
        s.close()
        # chunked: 411
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=TIMEOUT)
        s.sendall(b"PUT /v1/shared/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        head = s.recv(4096).decode()
        self.assertIn(" 411 ", head.split("\r\n")[0])
        s.close()
        # a slow sender that never finishes its body is dropped (the handshake timeout)
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=30)
        s.sendall(b"PATCH /v1/tenants/alice/models/notes HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + TOKEN.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"n\"")
        t0 = time.monotonic()
        data = s.recv(4096)
        self.assertEqual(data, b"")  # closed without an answer
        self.assertLess(time.monotonic() - t0, 25)
        s.close()
        st, _, m = self.api.call("GET", "/v1/tenants/alice/models/notes")
        self.assertNotIn("n", m["value"])

    def test_storm(self):
        """A hostile storm on /v1/ while a WebSocket client keeps writing."""
        import random
        rnd = random.Random(14)
        junk = [b"", b"{", b"null", b"[]", b'{"schema":1}', b'{"access":5}', b"\xff\xfe",
                b'{"a":' * 200 + b"1" + b"}" * 200, json.dumps({"x" * 300: 1}).encode()]
        paths = ["/v1/tenants/alice/models/notes", "/v1/shared/roadmap",
                 "/v1/shared/roadmap/subscribers/bob", "/v1/schemas/x", "/v1/tenants/%00",
                 "/v1/tenants/" + "z" * 300, "/v1/sync", "/v1/tenants/alice/connections",
                 "/v1/tenants/a%2Fb/models/c", "/v1/shared/%25"]

        async def main():
            c, _, _ = await open_client(self.d, "bob")
            loop = asyncio.get_running_loop()

            def storm():
                api = Api(self.d.port)
                for i in range(400):
                    m = rnd.choice(["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD"])
                    p = rnd.choice(paths)
                    try:
                        st, _, body = api.call(m, p, raw=rnd.choice(junk),
                                               headers={"Content-Type": "application/json"},
                                               token=rnd.random() < 0.8)
                    except (http.client.HTTPException, OSError):
                        api.close()
                        api = Api(self.d.port)
                        continue
                    if m != "HEAD" and st >= 400:
                        assert body["error"]["code"], body
                    assert st < 500, (m, p, st, body)
                api.close()
            fut = loop.run_in_executor(None, storm)
            ref = 0
            while not fut.done():
                ref += 1
                await c.send({"type": "write", "ref": ref, "scope": "private", "id": "notes",
                              "patch": {"n": ref}})
                ack, _ = await c.wait_for(lambda m: m.get("type") in ("ack", "error")
                                          and m.get("ref") == ref)
                await asyncio.sleep(0.01)
            await fut
            await c.close()
            self.assertGreater(ref, 0)
        self.run_async(main(), timeout=120)
        st, _, m = self.api.call("GET", "/v1/tenants/bob/models/notes")
        self.assertEqual(st, 200)


if __name__ == "__main__":
    unittest.main()
