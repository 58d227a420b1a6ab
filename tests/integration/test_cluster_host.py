"""Issue 18: the host HTTP API (docs/host-api.md) on a cluster (docs/cluster.md) works on every
node: what a backend makes, changes or deletes through one node is what every node serves.

Every test starts its own redis-server and three daemons, A, B and C, with one config (the
`cluster` section pointing at that Redis, an admin token, schemas Doc and Note, a private model
`p` for alice and bob and a shared `tally` both write). The host API is called over real HTTP
connections (test_host_api.Api), clients are python3-websockets (harness.Client), and "the
other nodes see it" is polled for up to EVENTUAL seconds (a node applies another node's change a
moment after it was answered), never slept for:

- a schema named through A is known to B at once (B hosts a model with it);
- a private model PUT on A: B and C serve it (same rev, value, schema), and alice's client on B
  gets its snapshot; deleted on A: the client gets `removed`, B and C answer 404;
- a host PATCH on A is answered with the next rev and goes through Redis: B serves it and
  alice's client on B gets it; host PATCHes alternating between A and B while a client writes
  on C get distinct increasing revs, and the three nodes end equal;
- a shared model PUT on A, bob subscribed through B, bob's client on C gets the snapshot,
  bob's write on C shows on A, C lists the subscriber, and the unsubscription on A sends bob's
  client on C `removed`;
- a model replaced on A by one of another schema: B serves the new one, its client ends
  holding it;
- a tenant deleted on A: its connections on B close with 4404, B forgets it; its connections
  closed on A: those on B and C close with 4403;
- a node started after all of this on the same Redis serves the same schemas, models, revs,
  values and subscriptions (and not what was deleted);
- Redis away, a node cut from it (test_cluster_faults.Proxy) or Redis SIGSTOPped: a PATCH or a
  PUT through that node is answered 503 `unavailable` or 500 `internal` naming the cluster
  within 10 s; a read is still answered. A node whose link was down before the calls changes
  nothing anywhere; with Redis stopped under the calls each change ends whole on every node
  or nowhere (a command may have reached Redis, a structure change made on the node is kept,
  cluster.md), never on one node only; then the same calls succeed;
- a 2xx means Redis has it: A SIGKILLed right after a 2xx PATCH, B and A restarted serve it.
"""

import asyncio
import contextlib
import re
import signal
import threading
import time
import unittest

from harness import (DOC_SCHEMA, SLOW, TIMEOUT, Daemon, close_all, merge_patch,
                     open_client, require_daemon, run_async)
from redis_server import RedisServer
from test_cluster_faults import Proxy
from test_host_api import ENV, Api

# How long a change made through one node may take to show on another (pub/sub).
EVENTUAL = 5.0 * SLOW
# docs/cluster.md: a write waits for Redis 5 s, then fails; the host API's answer comes then.
CUT_ANSWER = 10.0 * SLOW

NOTE_SCHEMA = {
    "title": "Note",
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "default": []},
    },
    "required": ["text"],
}

CARD_SCHEMA = {
    "title": "Card",
    "type": "object",
    "properties": {
        "front": {"type": "string"},
        "back": {"type": "string", "default": ""},
    },
    "required": ["front"],
}

NODES = ("A", "B", "C")


def config(redis_url, node):
    return {
        "autosync_ms": 50,
        "admin_token_env": "TP_ADMIN",
        "cluster": {"redis": redis_url + "/0", "node": node},
        "schemas": {"Doc": DOC_SCHEMA, "Note": NOTE_SCHEMA},
        "tenants": {t: {"models": {"p": {"schema": "Doc", "value": {"title": t}}}}
                    for t in ("alice", "bob")},
        "shared": {"tally": {"schema": "Doc", "merge": "lww", "value": {"title": "Tally"},
                             "subscribers": {"alice": "write", "bob": "write"}}},
        "limits": {"writes_per_second": 1000000},
    }


class Held:
    """What a client holds, from its opening snapshots and every message after: {(scope, id):
    {"rev", "value", "schema"}}. A patch at or below the held rev is ignored (protocol.md,
    "Servers in a cluster"); one that does not start at the held rev is a gap, a failure."""

    def __init__(self, snaps):
        self.models = {k: {"rev": s["rev"], "value": s["value"], "schema": s["schema"]}
                       for k, s in snaps.items()}
        self.seen = []

    def apply(self, m):
        self.seen.append(m)
        key = (m.get("scope"), m.get("id"))
        t = m.get("type")
        if t == "snapshot":
            self.models[key] = {"rev": m["rev"], "value": m["value"], "schema": m["schema"]}
        elif t == "patch":
            held = self.models.get(key)
            if held is None:
                raise AssertionError("a patch of a model the client does not hold: %r" % m)
            if m["rev"] <= held["rev"]:
                return
            if m["from"] != held["rev"]:
                raise AssertionError("a patch from rev %d to a client holding rev %d: %r "
                                     "(after %r)" % (m["from"], held["rev"], m, self.seen))
            held["rev"] = m["rev"]
            held["value"] = merge_patch(held["value"], m["patch"])
        elif t == "removed":
            self.models.pop(key, None)

    async def until(self, c, pred, what, timeout=None):
        """Reads c's messages, applying each, until pred(self.models) holds."""
        deadline = asyncio.get_running_loop().time() + (timeout or EVENTUAL)
        while not pred(self.models):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError("the client never held %s; it holds %r after %r"
                                     % (what, self.models, self.seen))
            try:
                m = await c.recv(left)
            except asyncio.TimeoutError:
                continue
            self.apply(m)


def model_path(scope, id, tenant="alice"):
    if scope == "shared":
        return "/v1/shared/%s" % id
    return "/v1/tenants/%s/models/%s" % (tenant, id)


async def closed(c, what):
    """The close code of c, closed by the server within EVENTUAL seconds."""
    try:
        return await c.wait_closed(EVENTUAL)
    except asyncio.TimeoutError:
        raise AssertionError("%s was not closed within %.0f s" % (what, EVENTUAL)) from None


class ClusterHostCase(unittest.TestCase):

    def setUp(self):
        require_daemon(self)
        self.stack = contextlib.ExitStack()
        self.addCleanup(self.stack.close)
        self.redis = self.stack.enter_context(RedisServer())
        self.apis = {}

    def node(self, name, redis_url=None, crashes=False):
        """A daemon of the cluster, synced with Redis, stopped at the end with SIGTERM (exit
        0) unless it crashes; its host API is self.api(d)."""
        d = Daemon(config=config(redis_url or self.redis.url(), name), env=ENV)
        if crashes:
            self.addCleanup(d.finish)
            d.start()
        else:
            self.stack.enter_context(d)
        d.wait_log(r"cluster node=%s redis=127\.0\.0\.1:\d+ synced models=\d+" % name,
                   start=d.log_start)
        return d

    def nodes(self):
        return [self.node(n) for n in NODES]

    def api(self, d):
        """One keep-alive connection to d's host API (a new one after a restart)."""
        got = self.apis.get(d)
        if got is None or got.port != d.port:
            got = self.apis[d] = Api(d.port)
            self.addCleanup(got.close)
        return got

    def call(self, d, method, path, body=None, want=None, **kw):
        st, h, b = self.api(d).call(method, path, body, **kw)
        if want is not None:
            self.assertEqual(st, want, "%s %s on %s: %r" % (method, path, self.name_of(d), b))
        return st, h, b

    def name_of(self, d):
        return d.config["cluster"]["node"]

    def eventually(self, d, method, path, pred, what):
        """Calls until pred(status, body) holds, for up to EVENTUAL seconds; returns the last
        (status, body)."""
        deadline = time.monotonic() + EVENTUAL
        while True:
            st, _, b = self.api(d).call(method, path)
            if pred(st, b):
                return st, b
            if time.monotonic() > deadline:
                self.fail("%s %s on %s never showed %s; last answer %d %r"
                          % (method, path, self.name_of(d), what, st, b))
            time.sleep(0.02)

    def same_model(self, d, path, want, what):
        """GET path on d until it answers 200 with want's rev and value (and schema when
        want has one)."""
        def ok(st, b):
            return st == 200 and all(b.get(k) == v for k, v in want.items())
        return self.eventually(d, "GET", path, ok, "%s (%r)" % (what, want))[1]

    def gone(self, d, path, what):
        self.eventually(d, "GET", path, lambda st, b: st == 404, "%s gone (404)" % what)

    def run_async(self, coro, timeout=None):
        return run_async(coro, timeout or 12 * TIMEOUT)


class Catalog(ClusterHostCase):
    """Schemas, models and subscriptions made through one node are every node's."""

    def test_a_schema_named_on_a_is_known_to_b(self):
        a, b, _ = self.nodes()
        st, _, body = self.call(a, "PUT", "/v1/schemas/Card", CARD_SCHEMA)
        self.assertIn(st, (200, 201), body)
        # B knows it at once: a backend's next call may reach any node.
        st, _, m = self.call(b, "PUT", "/v1/tenants/alice/models/card",
                             {"schema": "Card", "value": {"front": "Q"}})
        self.assertEqual(st, 201, "B does not know the schema named on A: %r" % m)
        self.assertEqual(m["value"], {"front": "Q", "back": ""})
        st, _, doc = self.call(b, "GET", "/v1/schemas/Card", want=200)
        self.assertEqual(doc, CARD_SCHEMA)
        # The same name with another document is a conflict on every node.
        other = dict(CARD_SCHEMA, required=["front", "back"])
        for d in (a, b):
            st, _, body = self.call(d, "PUT", "/v1/schemas/Card", other)
            self.assertEqual((st, body["error"]["code"]), (409, "conflict"), body)

    def test_a_private_model_put_and_deleted_on_a_is_seen_by_b_and_c(self):
        a, b, c = self.nodes()

        async def run():
            cl, _, snaps = await open_client(b, "alice")
            held = Held(snaps)
            self.assertNotIn(("private", "notes"), held.models)
            st, h, m = self.call(a, "PUT", "/v1/tenants/alice/models/notes",
                                 {"schema": "Doc", "value": {"title": "Notes", "n": 1}})
            self.assertEqual(st, 201, m)
            self.assertEqual(m["value"], {"title": "Notes", "body": "", "n": 1})
            want = {"rev": m["rev"], "value": m["value"], "schema": "Doc"}
            for d in (b, c):
                self.same_model(d, "/v1/tenants/alice/models/notes", want,
                                "the model PUT on A")
            # Alice's client on B, connected before, gets its snapshot.
            await held.until(cl, lambda ms: ms.get(("private", "notes")) == want,
                             "the snapshot of the model PUT on A")
            self.assertTrue(any(x.get("type") == "snapshot" and x.get("id") == "notes"
                                for x in held.seen), held.seen)
            # B and C list it in alice's models.
            for d in (b, c):
                self.eventually(
                    d, "GET", "/v1/tenants/alice",
                    lambda st, t: st == 200 and {"id": "notes", "schema": "Doc",
                                                 "rev": m["rev"]} in t["models"],
                    "notes in alice's models")

            # Deleted on A: 204, removed on B's client, 404 on B and C.
            st, _, body = self.call(a, "DELETE", "/v1/tenants/alice/models/notes")
            self.assertEqual((st, body), (204, None))
            await held.until(cl, lambda ms: ("private", "notes") not in ms,
                             "no notes (removed)")
            self.assertEqual(held.seen[-1], {"type": "removed", "scope": "private",
                                             "id": "notes"})
            for d in (a, b, c):
                self.gone(d, "/v1/tenants/alice/models/notes", "the model deleted on A")
            # The rest of what the client holds is untouched.
            self.assertIn(("private", "p"), held.models)
            await close_all([cl])

        self.run_async(run())

    def test_a_shared_model_and_its_subscribers_across_nodes(self):
        a, b, c = self.nodes()

        async def run():
            bob, _, snaps = await open_client(c, "bob")
            held = Held(snaps)
            st, _, m = self.call(a, "PUT", "/v1/shared/board",
                                 {"schema": "Doc", "merge": "lww-map",
                                  "value": {"title": "Board"}})
            self.assertEqual(st, 201, m)
            st, _, body = self.call(b, "PUT", "/v1/shared/board/subscribers/bob",
                                    {"access": "write"})
            self.assertEqual(st, 200, "subscribing bob through B to the model shared on A: %r"
                             % body)
            # Bob's client on C gets the snapshot.
            await held.until(bob, lambda ms: ("shared", "board") in ms,
                             "the snapshot of board")
            snap = [x for x in held.seen if x.get("type") == "snapshot"][-1]
            self.assertEqual((snap["scope"], snap["id"], snap["access"], snap["value"]),
                             ("shared", "board", "write", {"title": "Board", "body": ""}))
            # Bob writes on C; A serves it.
            await bob.send({"type": "write", "ref": 1, "scope": "shared", "id": "board",
                            "patch": {"body": "from bob on C"}})
            ack, before = await bob.wait_for(lambda x: x.get("ref") == 1)
            for x in before:
                held.apply(x)
            self.assertEqual(ack["type"], "ack", ack)
            got = self.same_model(a, "/v1/shared/board",
                                  {"rev": ack["rev"], "schema": "Doc", "merge": "lww-map"},
                                  "bob's write on C")
            self.assertEqual(got["value"], {"title": "Board", "body": "from bob on C"})
            # C lists the subscriber made through B.
            self.eventually(c, "GET", "/v1/shared/board/subscribers",
                            lambda st, lst: st == 200 and lst["items"] == [
                                {"tenant": "bob", "access": "write"}],
                            "bob subscribed")
            # Unsubscribed on A: bob's client on C gets removed.
            st, _, body = self.call(a, "DELETE", "/v1/shared/board/subscribers/bob")
            self.assertEqual((st, body), (204, None))
            await held.until(bob, lambda ms: ("shared", "board") not in ms,
                             "no board (removed)")
            self.assertEqual(held.seen[-1], {"type": "removed", "scope": "shared",
                                             "id": "board"})
            self.eventually(b, "GET", "/v1/shared/board/subscribers",
                            lambda st, lst: st == 200 and lst["items"] == [],
                            "no subscriber")
            await close_all([bob])

        self.run_async(run())

    def test_a_model_replaced_with_another_schema_on_a(self):
        a, b, _ = self.nodes()

        async def run():
            self.call(a, "PUT", "/v1/tenants/alice/models/notes",
                      {"schema": "Doc", "value": {"title": "Old"}}, want=201)
            cl, _, snaps = await open_client(b, "alice")
            held = Held(snaps)
            await held.until(cl, lambda ms: ("private", "notes") in ms, "notes (Doc)")
            st, _, m = self.call(a, "PUT", "/v1/tenants/alice/models/notes",
                                 {"schema": "Note", "value": {"text": "new"}})
            self.assertEqual(st, 200, m)
            want = {"rev": m["rev"], "schema": "Note", "value": {"text": "new", "tags": []}}
            self.assertEqual(m["value"], want["value"])
            self.same_model(b, "/v1/tenants/alice/models/notes", want, "the replacement")
            await held.until(cl, lambda ms: ms.get(("private", "notes")) == want,
                             "the replacement %r" % want)
            await close_all([cl])

        self.run_async(run())


class HostWrites(ClusterHostCase):
    """A host PATCH goes through Redis like a client's write."""

    def test_a_patch_on_a_reaches_b_and_its_clients(self):
        a, b, c = self.nodes()

        async def run():
            cl, _, snaps = await open_client(b, "alice")
            held = Held(snaps)
            st, _, before = self.call(a, "GET", "/v1/tenants/alice/models/p", want=200)
            st, h, m = self.call(a, "PATCH", "/v1/tenants/alice/models/p",
                                 {"body": "from the host on A"})
            self.assertEqual(st, 200, m)
            self.assertEqual(m["rev"], before["rev"] + 1)
            self.assertEqual(m["value"], merge_patch(before["value"],
                                                     {"body": "from the host on A"}))
            self.assertEqual(h["etag"], '"%d"' % m["rev"])
            want = {"rev": m["rev"], "value": m["value"]}
            for d in (b, c):
                self.same_model(d, "/v1/tenants/alice/models/p", want, "A's PATCH")
            await held.until(cl, lambda ms: {k: ms[("private", "p")][k] for k in want}
                             == want, "A's PATCH")
            # It came as a patch from the host, or as a snapshot.
            came = [x for x in held.seen if x.get("id") == "p"]
            self.assertTrue(came, held.seen)
            if came[-1]["type"] == "patch":
                self.assertEqual(came[-1]["origin"], "host")
            await close_all([cl])

        self.run_async(run())

    def test_patches_alternating_between_nodes_and_a_client_writing_get_one_order(self):
        self.alternate("shared", "tally")

    def test_private_patches_alternating_between_nodes_and_a_client_get_one_order(self):
        # Alice has no connection on A nor B: their copies of `p` are followed only while
        # they write it (cluster.md, "Every node fans out").
        self.alternate("private", "p")

    def alternate(self, scope, id):
        a, b, c = self.nodes()
        HOST, CLIENT = 12, 12
        path = model_path(scope, id)

        async def run():
            st, _, before = self.call(a, "GET", path, want=200)
            base = before["rev"]
            # Each thread its own HTTP connections: they run while the client writes.
            apis = {d: Api(d.port) for d in (a, b)}
            host_revs = []

            def host():
                try:
                    for i in range(HOST):
                        d = (a, b)[i % 2]
                        st, _, m = apis[d].call("PATCH", path,
                                                {"h%d" % i: self.name_of(d), "last": "h%d" % i})
                        if st != 200:
                            raise AssertionError("host PATCH %d on %s: %d %r"
                                                 % (i, self.name_of(d), st, m))
                        host_revs.append(m["rev"])
                finally:
                    for api in apis.values():
                        api.close()

            async def client():
                cl, _, _ = await open_client(c, "alice")
                revs = []
                for i in range(CLIENT):
                    await cl.send({"type": "write", "ref": i + 1, "scope": scope, "id": id,
                                   "patch": {"c%d" % i: i, "last": "c%d" % i}})
                    m, _ = await cl.wait_for(lambda x, r=i + 1: x.get("ref") == r)
                    self.assertEqual(m["type"], "ack", m)
                    revs.append(m["rev"])
                await close_all([cl])
                return revs

            hosting = asyncio.ensure_future(asyncio.to_thread(host))
            client_revs = await client()
            await hosting
            return base, host_revs, client_revs

        base, host_revs, client_revs = self.run_async(run())
        self.assertEqual(host_revs, sorted(set(host_revs)), "host PATCHes' revs: %r" % host_revs)
        self.assertEqual(client_revs, sorted(set(client_revs)), client_revs)
        both = host_revs + client_revs
        self.assertEqual(len(set(both)), len(both),
                         "two writes answered with one rev: host %r, client %r"
                         % (host_revs, client_revs))
        final = base + HOST + CLIENT
        self.assertEqual(max(both), final, "revs: host %r, client %r" % (host_revs, client_revs))
        got = {}
        for d in (a, b, c):
            got[d] = self.same_model(d, path, {"rev": final}, "every write")
        for d in (b, c):
            self.assertEqual(got[d]["value"], got[a]["value"], "the nodes disagree")
        v = got[a]["value"]
        for i in range(HOST):
            self.assertIn("h%d" % i, v)
        for i in range(CLIENT):
            self.assertEqual(v.get("c%d" % i), i)

    def test_a_2xx_patch_is_in_redis_before_its_node_dies(self):
        a = self.node("A", crashes=True)
        b = self.node("B")
        st, _, before = self.call(b, "GET", "/v1/tenants/alice/models/p", want=200)
        st, _, m = self.call(a, "PATCH", "/v1/tenants/alice/models/p", {"body": "then killed"})
        a.crash()
        self.assertEqual((st, m["rev"]), (200, before["rev"] + 1), m)
        want = {"rev": m["rev"], "value": m["value"]}
        self.same_model(b, "/v1/tenants/alice/models/p", want, "the PATCH acked by A")
        a.restart()
        a.wait_log(r"cluster node=A redis=127\.0\.0\.1:\d+ synced models=\d+", start=a.log_start)
        st, _, got = self.call(a, "GET", "/v1/tenants/alice/models/p", want=200)
        self.assertEqual((got["rev"], got["value"]), (want["rev"], want["value"]))

        # A shared model's PATCH too, then A killed again.
        st, _, before = self.call(a, "GET", "/v1/shared/tally", want=200)
        st, _, m = self.call(a, "PATCH", "/v1/shared/tally", {"body": "killed again"})
        a.crash()
        self.assertEqual((st, m["rev"]), (200, before["rev"] + 1), m)
        self.same_model(b, "/v1/shared/tally", {"rev": m["rev"], "value": m["value"]},
                        "the shared PATCH acked by A")
        a.restart()
        a.wait_log(r"cluster node=A redis=127\.0\.0\.1:\d+ synced models=\d+", start=a.log_start)
        st, _, got = self.call(a, "GET", "/v1/shared/tally", want=200)
        self.assertEqual((got["rev"], got["value"]), (m["rev"], m["value"]))


class Tenants(ClusterHostCase):

    def test_a_tenant_deleted_on_a_is_closed_and_gone_on_b(self):
        # What the config made (alice's `p`, her subscription to `tally`) is on every node
        # without the API: only the deletion has to travel.
        a, b, _ = self.nodes()

        async def run():
            al, _, snaps = await open_client(b, "alice")
            self.assertEqual(set(snaps), {("private", "p"), ("shared", "tally")})
            bob, _, _ = await open_client(b, "bob")
            st, _, body = self.call(a, "DELETE", "/v1/tenants/alice")
            self.assertEqual((st, body), (204, None))
            self.assertEqual(await closed(al, "alice's connection on B"), 4404)
            # Bob, on the same node, is served as before.
            await bob.send({"type": "write", "ref": 1, "scope": "private", "id": "p",
                            "patch": {"body": "still here"}})
            m, _ = await bob.wait_for(lambda x: x.get("ref") == 1)
            self.assertEqual(m["type"], "ack", m)
            await close_all([bob])

        self.run_async(run())

        # B forgets alice: 404, or (as one node answers after a delete) a tenant with no
        # model, no subscription and no connection.
        def forgotten(st, t):
            return st == 404 or (st == 200 and t["models"] == [] and t["shared"] == []
                                 and t["connections"] == 0)
        for d in (a, b):
            self.eventually(d, "GET", "/v1/tenants/alice", forgotten, "alice deleted")
            self.eventually(
                d, "GET", "/v1/tenants",
                lambda st, lst: st == 200 and all(
                    t["id"] != "alice" or (t["models"] == 0 and t["connections"] == 0)
                    for t in lst["items"]),
                "alice no longer listed with models")
            self.gone(d, "/v1/tenants/alice/models/p", "alice's p")
            self.eventually(d, "GET", "/v1/shared/tally/subscribers",
                            lambda st, lst: st == 200 and lst["items"] == [
                                {"tenant": "bob", "access": "write"}],
                            "alice unsubscribed from tally")

    def test_connections_closed_on_a_close_those_on_b_and_c_with_4403(self):
        a, b, c = self.nodes()

        async def run():
            on_a, _, _ = await open_client(a, "alice")
            on_b, _, _ = await open_client(b, "alice")
            on_c, _, _ = await open_client(c, "alice")
            bob, _, _ = await open_client(c, "bob")
            # 200 {"closed": N}: N is not checked (A may count only its own connections).
            st, _, body = self.call(a, "DELETE", "/v1/tenants/alice/connections")
            self.assertEqual(st, 200, body)
            codes = await asyncio.gather(closed(on_a, "alice's connection on A"),
                                         closed(on_b, "alice's connection on B"),
                                         closed(on_c, "alice's connection on C"))
            self.assertEqual(codes, [4403, 4403, 4403])
            # Bob stays connected.
            for m in await bob.barrier():
                self.assertNotIn(m.get("type"), ("removed",), m)
            await close_all([bob])

        self.run_async(run())


class LateNode(ClusterHostCase):

    def test_a_node_started_later_serves_what_the_api_made(self):
        a, b, _ = self.nodes()
        self.call(a, "PUT", "/v1/schemas/Card", CARD_SCHEMA, want=201)
        self.call(b, "PUT", "/v1/tenants/alice/models/card",
                  {"schema": "Card", "value": {"front": "Q"}}, want=201)
        self.call(a, "PATCH", "/v1/tenants/alice/models/card", {"back": "A"}, want=200)
        self.call(a, "PUT", "/v1/tenants/carol/models/chores",
                  {"schema": "Note", "value": {"text": "t"}}, want=201)
        self.call(b, "PUT", "/v1/tenants/carol/models/gone",
                  {"schema": "Doc", "value": {"title": "x"}}, want=201)
        self.call(a, "DELETE", "/v1/tenants/carol/models/gone", want=204)
        self.call(a, "PUT", "/v1/shared/board",
                  {"schema": "Doc", "merge": "lww-map", "value": {"title": "Board"}}, want=201)
        self.call(b, "PUT", "/v1/shared/board/subscribers/bob", {"access": "write"}, want=200)
        self.call(a, "PUT", "/v1/shared/board/subscribers/carol", {"access": "read"}, want=200)
        self.call(b, "PATCH", "/v1/shared/board", {"body": "b"}, want=200)
        self.call(a, "PATCH", "/v1/tenants/alice/models/p", {"n": 5}, want=200)
        # Each model as the node that changed it last serves it (the other may not have
        # applied it yet), and A and B agreeing on it before the late node starts.
        last = {"/v1/tenants/alice/models/card": a, "/v1/tenants/carol/models/chores": a,
                "/v1/shared/board": b, "/v1/tenants/alice/models/p": a, "/v1/shared/tally": a}
        want = {p: self.call(d, "GET", p, want=200)[2] for p, d in last.items()}
        for p in last:
            self.same_model(a, p, want[p], "the last change")
            self.same_model(b, p, want[p], "the last change")
        subs = {"items": [{"tenant": "bob", "access": "write"},
                          {"tenant": "carol", "access": "read"}], "next": None}
        for d in (a, b):
            self.eventually(d, "GET", "/v1/shared/board/subscribers",
                            lambda st, lst: (st, lst) == (200, subs), "bob and carol")
        paths = list(last)

        late = self.node("D")
        st, _, doc = self.call(late, "GET", "/v1/schemas/Card")
        self.assertEqual((st, doc), (200, CARD_SCHEMA))
        for p in paths:
            st, _, got = self.call(late, "GET", p)
            self.assertEqual((st, got), (200, want[p]), "GET %s on the late node" % p)
        self.assertEqual(self.call(late, "GET", "/v1/shared/board/subscribers")[2], subs)
        self.assertEqual(self.call(late, "GET", "/v1/tenants/carol/models/gone")[0], 404)

        async def run():
            # Bob's and carol's clients on the late node get board, alice's the models.
            bob, _, snaps = await open_client(late, "bob")
            self.assertIn(("shared", "board"), snaps)
            self.assertEqual((snaps[("shared", "board")]["rev"],
                              snaps[("shared", "board")]["access"]),
                             (want["/v1/shared/board"]["rev"], "write"))
            carol, _, csnaps = await open_client(late, "carol")
            self.assertEqual(set(csnaps), {("private", "chores"), ("shared", "board")})
            self.assertEqual(csnaps[("shared", "board")]["access"], "read")
            al, _, asnaps = await open_client(late, "alice")
            self.assertEqual(asnaps[("private", "card")]["value"], {"front": "Q", "back": "A"})
            await close_all([bob, carol, al])

        self.run_async(run())


class RedisAway(ClusterHostCase):
    """Redis away (a node cut from it, or Redis stopped): a change through the host API is
    refused in time, naming the cluster, and a read is still answered. A node whose link is
    already down changes nothing (cluster.md, "The host API on any node"). A change under way
    when Redis stops answering may have reached Redis, and a structure change already made on
    the node is kept and announced once Redis is back: either way every node ends with the
    same, never a change on one node only, never part of one. Then the same calls succeed."""

    # what: (method, path, body, the model once made)
    STRUCTURE = {
        "PUT new": ("PUT", "/v1/tenants/alice/models/away",
                    {"schema": "Doc", "value": {"title": "away"}},
                    {"schema": "Doc", "value": {"title": "away", "body": ""}}),
        "PUT replace": ("PUT", "/v1/tenants/bob/models/p",
                        {"schema": "Note", "value": {"text": "away"}},
                        {"schema": "Note", "value": {"text": "away", "tags": []}}),
        "PUT shared": ("PUT", "/v1/shared/awayboard",
                       {"schema": "Doc", "merge": "lww-map", "value": {"title": "away"}},
                       {"schema": "Doc", "merge": "lww-map",
                        "value": {"title": "away", "body": ""}}),
    }
    PATH = "/v1/tenants/alice/models/p"
    PATCH = {"body": "while away"}

    def changes(self):
        calls = {"PATCH": ("PATCH", self.PATH, self.PATCH)}
        calls.update({w: c[:3] for w, c in self.STRUCTURE.items()})
        return calls

    def states(self, a):
        """What A serves of every path the changes touch: {path: (status, body)}."""
        paths = [self.PATH] + [c[1] for c in self.STRUCTURE.values()]
        return {p: self.call(a, "GET", p)[::2] for p in paths}

    def after(self, a, b, before, may_apply):
        """Once Redis is back: A and B serve the same for every path; each change applied
        nowhere (its path as in before), or, when may_apply, whole; then every call again
        succeeds, and B serves what A answered."""
        deadline = time.monotonic() + EVENTUAL
        while True:
            got = [self.states(d) for d in (a, b)]
            if got[0] == got[1]:
                break
            if time.monotonic() > deadline:
                self.fail("A and B disagree once Redis is back: %r" % (got,))
            time.sleep(0.02)
        got = got[0]
        patched = merge_patch(before[self.PATH][1]["value"], self.PATCH)
        st, m = got[self.PATH]
        old = before[self.PATH][1]
        ok = [(old["rev"], old["value"])]
        if may_apply:
            ok.append((old["rev"] + 1, patched))
        self.assertIn((st, (m["rev"], m["value"])), [(200, x) for x in ok],
                      "the refused PATCH once Redis is back")
        for what, (_, path, _, want) in self.STRUCTURE.items():
            st, m = got[path]
            applied = st == 200 and all(m.get(k) == v for k, v in want.items())
            if not (got[path] == before[path] or (may_apply and applied)):
                self.fail("%s refused while Redis was away: %s serves %r, before %r"
                          % (what, path, got[path], before[path]))

        st, _, m = self.call(a, "PATCH", self.PATH, self.PATCH, want=200)
        self.assertEqual(m["value"], patched)
        self.same_model(b, self.PATH, {"rev": m["rev"], "value": patched}, "the PATCH again")
        for what, (method, path, body, want) in self.STRUCTURE.items():
            st, _, m = self.call(a, method, path, body)
            self.assertIn(st, (200, 201), "%s again: %r" % (what, m))
            self.assertEqual(m["value"], want["value"])
            self.same_model(b, path, dict(want, rev=m["rev"]), "%s again" % what)

    def test_a_node_cut_from_redis_refuses_changes_and_changes_nothing(self):
        proxy = Proxy(self.redis.port)
        self.addCleanup(proxy.close)
        a = self.node("A", redis_url=proxy.url())
        b = self.node("B")
        before = self.states(a)
        self.assertEqual(before, self.states(b))

        start = len(a.log())
        proxy.cut()
        a.wait_log(r"cluster node=A redis=\S+ down", start=start)
        answers = self.call_at_once(a, self.changes())
        self.assert_refused(answers)
        # Reads are still served meanwhile, and show nothing of the refused changes.
        self.assertEqual(self.states(a), before)
        self.assertEqual(self.states(b), before)

        start = len(a.log())
        proxy.heal()
        for what in ("up", "resubscribed"):
            a.wait_log(r"cluster node=A redis=\S+ %s" % what, 20 * SLOW, start)
        # A's link was down before the calls: nothing changed anywhere.
        self.after(a, b, before, may_apply=False)

    def test_redis_stopped_changes_refused_in_time_whole_or_nowhere(self):
        # Redis SIGSTOPped: its connections stay open and nothing answers, until the link's
        # command timeout (5 s) drops them. A command sent before that may still run once
        # Redis is back (cluster.md: "did not answer, resend"), and a structure change made on
        # the node before Redis stopped answering is kept: each change ends whole on every
        # node, or nowhere.
        a, b, _ = self.nodes()
        before = self.states(a)
        self.assertEqual(before, self.states(b))
        start = len(a.log())
        self.redis.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(self.resume_redis)
        answers = self.call_at_once(a, self.changes())
        self.resume_redis()
        self.assert_refused(answers)
        down = re.compile(r"cluster node=A redis=\S+ down").search(a.log(), start)
        if down:
            a.wait_log(r"cluster node=A redis=\S+ up", 20 * SLOW, down.end())
        self.after(a, b, before, may_apply=True)

    def test_redis_stopped_a_read_is_still_answered(self):
        # cluster.md: while the link is down a node serves what it holds. A read that comes
        # while Redis hangs is answered too: what the node holds, or 503 naming the cluster,
        # once the link gives up on Redis (its 5 s command timeout), not left without answer.
        a, b, _ = self.nodes()
        before = self.call(a, "GET", "/v1/shared/tally", want=200)[2]
        self.redis.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(self.resume_redis)
        answers = self.call_at_once(a, {"GET": ("GET", "/v1/shared/tally", None),
                                        "GET tenants": ("GET", "/v1/tenants", None)})
        self.resume_redis()
        for what, (st, body, took) in answers.items():
            self.assertIn(st, (200, 503), "%s with Redis stopped: %s %r after %.1f s"
                          % (what, st, body, took))
            if st == 503:
                self.assertEqual(body["error"]["code"], "unavailable", body)
                self.assertIn("cluster", body["error"]["message"], body)
            self.assertLess(took, CUT_ANSWER, "%s answered after %.1f s" % (what, took))
        if answers["GET"][0] == 200:
            self.assertEqual(answers["GET"][1], before)

    def resume_redis(self):
        if self.redis.running():
            self.redis.proc.send_signal(signal.SIGCONT)

    def call_at_once(self, d, calls):
        """Makes every call of calls {what: (method, path, body)} on d at once, each on its own
        connection; returns {what: (status, body, seconds)}."""
        answers = {}

        def one(what, method, p, body):
            api = Api(d.port)
            # Longer than the answer may take, so that a late answer shows as late.
            api.conn.timeout = CUT_ANSWER + TIMEOUT
            t0 = time.monotonic()
            try:
                st, _, b2 = api.call(method, p, body)
                answers[what] = (st, b2, time.monotonic() - t0)
            except Exception as e:   # reported by the test's thread
                answers[what] = (None, repr(e), time.monotonic() - t0)
            finally:
                api.close()

        threads = [threading.Thread(target=one, args=(w,) + c) for w, c in calls.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CUT_ANSWER + 2 * TIMEOUT)
        for what in calls:
            self.assertIn(what, answers, "%s on %s: no answer" % (what, self.name_of(d)))
        return answers

    def assert_refused(self, answers):
        """Each answer a 500 `internal` or 503 `unavailable` naming the cluster, within
        CUT_ANSWER seconds (cluster.md: 503 after 5 s; a Redis that stopped answering is
        noticed after the link's 5 s command timeout)."""
        for what, (st, body, took) in answers.items():
            self.assertIn(st, (500, 503), "%s with Redis away: %s %r after %.1f s"
                          % (what, st, body, took))
            self.assertEqual(body["error"]["code"], {500: "internal", 503: "unavailable"}[st],
                             body)
            self.assertIn("cluster", body["error"]["message"], body)
            self.assertLess(took, CUT_ANSWER, "%s answered after %.1f s" % (what, took))

if __name__ == "__main__":
    unittest.main()
