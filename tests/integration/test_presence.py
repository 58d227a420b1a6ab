"""Presence (issue 17) over the real daemon, with several tenants, on python3-websockets:
fan-out to the connections that see the model only, private presence inside its tenant,
no tenant key on the wire, the tick's coalescing, leaving (dropped connection, state null,
unsubscribed through the host API), presence_snapshot on connect and after resume, the
4 KiB limit, the write rate, and nothing stored (no rev, nothing after a restart)."""

import asyncio
import json
import os
import time
import urllib.request

from harness import (DaemonTestCase, TIMEOUT, close_all, connect, doc_config, open_client)

TOKEN = "t0ken-for-the-presence-tests-0123456789"


def presence(scope, id, state, **kw):
    m = {"type": "presence", "scope": scope, "id": id, "state": state}
    m.update(kw)
    return m


def config(**extra):
    cfg = doc_config(admin_token_env="TP_PRESENCE_ADMIN", storage={"sqlite": "state.db"},
                     **extra)
    # carol sees roadmap too (read), and has a private notes of her own.
    cfg["shared"]["roadmap"]["subscribers"]["carol"] = "read"
    cfg["tenants"]["carol"] = {"models": {"notes": {"schema": "Doc",
                                                    "value": {"title": "Carol notes"}}}}
    cfg["tenants"]["dave"] = {"models": {"notes": {"schema": "Doc",
                                                   "value": {"title": "Dave notes"}}}}
    return cfg


def is_presence(conn, state=None):
    return lambda m: (m.get("type") == "presence" and m.get("conn") == conn
                      and (state is None or m.get("state") == state))


class Presence(DaemonTestCase):

    def start(self, **extra):
        env = dict(os.environ, TP_PRESENCE_ADMIN=TOKEN)
        return self.start_daemon(config(**extra), env=env)

    def api(self, d, method, path):
        req = urllib.request.Request(d.url(path, scheme="http"), method=method,
                                     headers={"Authorization": "Bearer " + TOKEN})
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status

    def test_fan_out_to_viewers_only_and_no_tenant_key(self):
        d = self.start()

        async def run():
            a1, ha1, _ = await open_client(d, "alice")
            a2, ha2, _ = await open_client(d, "alice")
            b, hb, _ = await open_client(d, "bob")
            c, hc, _ = await open_client(d, "carol")
            dv, _, _ = await open_client(d, "dave")
            for cl in (a1, a2, b, c):
                cl.keep_raw = True
            try:
                # bob reads roadmap only: READ access is enough to set presence.
                await b.send(presence("shared", "roadmap", {"name": "B", "cursor": 4}))
                want = {"type": "presence", "scope": "shared", "id": "roadmap",
                        "conn": hb["conn"], "state": {"name": "B", "cursor": 4}}
                for cl in (a1, a2, c):
                    m, skipped = await cl.wait_for(is_presence(hb["conn"]))
                    self.assertEqual((m, skipped), (want, []))
                self.assertEqual(await b.barrier(), [], "no echo to the setter")
                self.assertEqual(await dv.barrier(), [], "dave does not see roadmap")
                # Private presence stays inside the tenant.
                await a1.send(presence("private", "notes", {"sel": [1, 2]}))
                m, _ = await a2.wait_for(is_presence(ha1["conn"]))
                self.assertEqual(m["scope"], "private")
                for cl in (b, c, dv):
                    self.assertEqual(await cl.barrier(), [])
                # No frame anyone got names another tenant.
                for cl, own in ((a1, "alice"), (a2, "alice"), (b, "bob"), (c, "carol")):
                    for raw in cl.raw_frames:
                        for other in ("alice", "bob", "carol"):
                            if other != own:
                                self.assertNotIn('"%s"' % other, raw)
                # A connection opened now gets presence_snapshot with its snapshots.
                a3, _, _ = await open_client(d, "alice")
                self.assertEqual(a3.presence[("shared", "roadmap")],
                                 [{"conn": hb["conn"], "state": {"name": "B", "cursor": 4}}])
                self.assertEqual(a3.presence[("private", "notes")],
                                 [{"conn": ha1["conn"], "state": {"sel": [1, 2]}}])
                c2, _, _ = await open_client(d, "carol")
                self.assertEqual(list(c2.presence), [("shared", "roadmap")])
                await close_all([a3, c2])
            finally:
                await close_all([a1, a2, b, c, dv])
        self.run_async(run())

    def test_coalesced_to_the_tick_latest_wins(self):
        d = self.start()

        async def run():
            a, ha, _ = await open_client(d, "alice")
            b, _, _ = await open_client(d, "bob")
            try:
                self.assertEqual(a.hello["tick_ms"], 50)
                # 30 states in one frame: all set within one tick, one delivery.
                await a.send([presence("shared", "roadmap", {"x": i}) for i in range(30)])
                m, skipped = await b.wait_for(is_presence(ha["conn"]))
                self.assertEqual((m["state"], skipped), ({"x": 29}, []))
                # A stream over 1 s: at most one delivery per tick (50 ms), the last one
                # the latest state.
                got = []
                t0 = time.monotonic()
                for i in range(100):
                    await a.send(presence("shared", "roadmap", {"y": i}))
                    await asyncio.sleep(0.01)
                    got += await b.barrier() if i % 10 == 9 else []
                elapsed = time.monotonic() - t0
                while not got or got[-1]["state"] != {"y": 99}:
                    m, skipped = await b.wait_for(is_presence(ha["conn"]))
                    got += skipped + [m]
                self.assertTrue(all(g["type"] == "presence" for g in got), got)
                ys = [g["state"]["y"] for g in got]
                self.assertEqual(ys, sorted(ys), "in order")
                self.assertLessEqual(len(got), elapsed / 0.05 + 2,
                                     "%d deliveries in %.2f s" % (len(got), elapsed))
                self.assertLess(len(got), 100, "coalesced")
            finally:
                await close_all([a, b])
        self.run_async(run())

    def test_leave_on_drop_null_and_unsubscribe(self):
        d = self.start()

        async def run():
            a, ha, _ = await open_client(d, "alice")
            b, hb, _ = await open_client(d, "bob")
            c, hc, _ = await open_client(d, "carol")
            try:
                for cl in (a, b, c):
                    await cl.send(presence("shared", "roadmap", {"who": cl.hello["tenant"]}))
                for cl, others in ((a, (hb, hc)), (b, (ha, hc)), (c, (ha, hb))):
                    seen = set()
                    while seen != {h["conn"] for h in others}:
                        m, _ = await cl.wait_type("presence")
                        seen.add(m["conn"])
                # A dropped TCP connection (no close frame): the others hear it leave.
                b.abort()
                for cl in (a, c):
                    m, _ = await cl.wait_for(is_presence(hb["conn"]))
                    self.assertIsNone(m["state"])
                # state null: leaving a model.
                await a.send(presence("shared", "roadmap", None))
                m, _ = await c.wait_for(is_presence(ha["conn"]))
                self.assertIsNone(m["state"])
                # Access withdrawn through the host API: carol leaves roadmap.
                self.assertEqual(self.api(d, "DELETE", "/v1/shared/roadmap/subscribers/carol"),
                                 204)
                rm, _ = await c.wait_type("removed")
                self.assertEqual(rm["id"], "roadmap")
                m, _ = await a.wait_for(is_presence(hc["conn"]))
                self.assertIsNone(m["state"])
                await c.send(presence("shared", "roadmap", {"who": "carol"}, ref=3))
                err, _ = await c.wait_type("error")
                self.assertEqual(err, {"type": "error", "code": "not_found",
                                       "message": 'id: no model "roadmap" in scope "shared"'})
                self.assertEqual(await a.barrier(), [])
            finally:
                await close_all([a, c])
        self.run_async(run())

    def test_limits_rate_and_nothing_stored(self):
        d = self.start(limits={"writes_per_second": 20})

        async def run():
            a, ha, sa = await open_client(d, "alice")
            b, _, _ = await open_client(d, "bob")
            rev = sa[("shared", "roadmap")]["rev"]
            try:
                await a.send(presence("shared", "roadmap", {"s": "x" * 4089}))
                err, _ = await a.wait_type("error")
                self.assertEqual((err["code"], err["message"]),
                                 ("too_large", "state: 4097 bytes, over the limit of 4096"))
                await a.send(presence("shared", "roadmap", {"s": "x" * 4088}))
                m, _ = await b.wait_for(is_presence(ha["conn"]))
                self.assertEqual(len(m["state"]["s"]), 4088)
                self.assertIsNone(a.ws.close_code)
                # The write rate: 25 presence messages at 20 per second.
                await a.send([presence("shared", "roadmap", {"i": i}) for i in range(25)])
                errs = [m for m in await a.barrier() if m.get("type") == "error"]
                self.assertGreaterEqual(len(errs), 4)
                self.assertTrue(all(e["code"] == "rate_limited" for e in errs), errs)
                await asyncio.sleep(0.5)  # a token bucket refills with time, not events
                # Resume: presence_snapshot after the answer, no presence in patches.
                a.abort()
                await b.wait_for(is_presence(ha["conn"], None))
                await b.send(presence("shared", "roadmap", {"b": 1}))
                r = await connect(d, "alice", query="resume=1")
                hello = await r.recv()
                self.assertEqual(hello["type"], "hello")
                await r.send({"type": "resume", "models": [
                    {"scope": "shared", "id": "roadmap", "rev": rev}]})
                got = []
                while not got or got[-1].get("type") != "synced":
                    got.append(await r.recv())
                ps = [m for m in got if m["type"] == "presence_snapshot"
                      and m["id"] == "roadmap"]
                self.assertEqual(len(ps), 1, got)
                self.assertEqual([p["state"] for p in ps[0]["peers"]], [{"b": 1}])
                self.assertFalse([m for m in got if m["type"] == "patch"], got)
                await close_all([r])
            finally:
                await close_all([b])
        self.run_async(run())
        # Nothing stored: the same database after a restart has roadmap at the same rev
        # and no presence.
        d.stop()
        d.restart()

        async def after():
            a, _, sa = await open_client(d, "alice")
            try:
                self.assertEqual(sa[("shared", "roadmap")]["rev"], 1)
                self.assertEqual(a.presence, {})
            finally:
                await close_all([a])
        self.run_async(after())
