"""Issue 5, restart: a scripted mix of writes on every kind of model, a graceful stop
(SIGTERM), a start on the same SQLite database, and nothing differs.

The script: private models of three tenants (one with two), a shared `lww` model and a
shared `lww-map` model (a field deleted, so a tombstone; a field stamped in the future),
written from five connections of three tenants, two of them with a client id (one named in
a `ping`, one in a `resume`), with refused writes (`invalid`, `forbidden`) and a write that
changes nothing among them. Host-side changes are not in it: the daemon's config cannot make
any (there is no admin API yet), so autosync never has anything to publish.

After the restart:

- every model's snapshot is the same, byte for byte (each snapshot message's own bytes,
  not only its parsed JSON), rev and access included, and no model appears or disappears;
- a client that held the revs from before the script reconnects with `resume=1` and gets
  `patch`es only (the history is stored), continuous from its revs, ending at the stored
  values;
- every write resent with its client id and ref gets its original outcome (the same `ack`,
  the same `error`) and is not applied again: no patch for anyone, revs unchanged;
- an `lww-map` write stamped older than the stored stamp of a field loses: against a field
  stamped in the future before the restart, and against the deleted field's tombstone; an
  unstamped write still wins (the server's clock is past every stamp it stored);
- new writes continue the revs, and survive a second restart too.

With a history of 3 patches per model, `resume` from every rev a client may hold, for every
model, is answered the same (the same patches, origins included, or a snapshot) before and
after a restart.

The same script runs with `synchronous` left out (`full`), `normal` and `off`: a graceful
stop loses nothing at any level; and once more with every tenant evicted from memory (idle,
`evict_idle_ms` 1) before the restart, and loaded back from the store, unchanged. The
config's state is only the initial state: changed between two starts, what is stored wins.
"""

import json
import re
import time
import unittest

from harness import (DaemonTestCase, DOC_SCHEMA, close_all, connect, merge_patch,
                     model_key, sqlite_integrity)

DB = "state.db"
TENANTS = ("alice", "bob", "carol")


def config(synchronous=None, **storage_options):
    storage = {"sqlite": DB}
    if synchronous is not None:
        storage["synchronous"] = synchronous
    storage.update(storage_options)
    return {
        "autosync_ms": 50,
        "storage": storage,
        "schemas": {"Doc": DOC_SCHEMA},
        "tenants": {
            "alice": {"models": {
                "notes": {"schema": "Doc", "value": {"title": "Alice notes"}},
                "drafts": {"schema": "Doc", "value": {"title": "Drafts", "n": 0}}}},
            "bob": {"models": {"notes": {"schema": "Doc", "value": {"title": "Bob notes"}}}},
            "carol": {"models": {"todo": {"schema": "Doc", "value": {"title": "Todo"}}}},
        },
        "shared": {
            "roadmap": {"schema": "Doc", "merge": "lww", "value": {"title": "Roadmap"},
                        "subscribers": {"alice": "write", "bob": "read"}},
            "board": {"schema": "Doc", "merge": "lww-map", "value": {"title": "Board"},
                      "subscribers": {"alice": "write", "bob": "write", "carol": "read"}},
        },
    }


def write(ref, scope, id, patch, **kw):
    m = {"type": "write", "scope": scope, "id": id, "ref": ref, "patch": patch}
    m.update(kw)
    return m


def raw_messages(frames):
    """The exact text of every message in these frames (a batch split into its members)."""
    dec = json.JSONDecoder()
    out = []
    for text in frames:
        text = text.strip()
        if not text.startswith("["):
            out.append(text)
            continue
        i = 1
        while True:
            while text[i] in " \t\r\n,":
                i += 1
            if text[i] == "]":
                break
            _, end = dec.raw_decode(text, i)
            out.append(text[i:end])
            i = end
    return out


async def opening(d, tenant):
    """A fresh connection's opening: ({key: snapshot}, {key: the snapshot's exact text})."""
    c = await connect(d, tenant)
    c.keep_raw = True
    try:
        _, snaps = await c.open()
    finally:
        await close_all([c])
    raws = {}
    for text in raw_messages(c.raw_frames):
        m = json.loads(text)
        if m["type"] == "snapshot":
            raws[(m["scope"], m["id"])] = text
    assert set(raws) == set(snaps), (raws, snaps)
    return snaps, raws


async def everything(d):
    """{tenant: (snapshots, their texts)} for every tenant of the config."""
    return {t: await opening(d, t) for t in TENANTS}


async def answer(c, ref):
    """The ack or error answering ref, and the messages before it."""
    return await c.wait_for(lambda m: m.get("type") in ("ack", "error") and m.get("ref") == ref)


class Restart(DaemonTestCase):

    def start_fresh(self, cfg):
        d = self.start_daemon(cfg)
        d.wait_log(r"storage sqlite=%s new" % DB, start=d.log_start)
        return d

    def restart(self, d, same_port=False):
        """SIGTERM (exit 0), the file whole, start again on it: it says restored."""
        d.stop()
        self.assertEqual(sqlite_integrity(d.path(DB)), "ok")
        port = d.port
        d.restart(same_port=same_port)
        if same_port:
            self.assertEqual(d.port, port)
        d.wait_log(r"storage sqlite=%s restored" % DB, start=d.log_start)

    def assert_same(self, before, after, when):
        for t in TENANTS:
            snaps0, raws0 = before[t]
            snaps1, raws1 = after[t]
            self.assertEqual(snaps1, snaps0, "%s: %s's snapshots differ" % (when, t))
            for key in raws0:
                self.assertEqual(raws1[key], raws0[key],
                                 "%s: %s's snapshot of %r differs in its bytes"
                                 % (when, t, key))

    def wait_evicted(self, d, n):
        """Waits until the daemon has evicted n idle tenants since it started."""
        start = d.log_start
        while True:
            start = d.wait_log(r"evicted tenants=\d+", start=start).end()
            _, _, body = d.http_get("/metrics")
            m = re.search(r"^transports_tenants_evicted_total (\d+)$", body, re.M)
            self.assertIsNotNone(m, body)
            if int(m.group(1)) >= n:
                return

    def script(self, d, synchronous, evict=False):
        """Runs the script, restarts, checks: see the module's docstring. evict: the
        tenants leave memory between the script and the restart (evict_idle_ms is 1), and
        come back from the store."""
        outcomes = {}   # (client id, ref) -> (the write, its answer)

        async def before_restart():
            # Connections that hold the initial revs and drop: they resume after the restart.
            early = {}
            for t in TENANTS:
                e = await connect(d, t)
                _, snaps = await e.open()
                early[t] = {k: {"value": s["value"], "rev": s["rev"]} for k, s in snaps.items()}
                e.abort()

            a1 = await connect(d, "alice")
            await a1.open()
            await a1.send({"type": "ping", "ref": 0, "client": "alice-phone"})
            self.assertEqual(await a1.recv(), {"type": "pong", "ref": 0})
            a2 = await connect(d, "alice")
            await a2.open()
            b1 = await connect(d, "bob", query="resume=1")
            self.assertEqual((await b1.recv())["type"], "hello")
            await b1.send({"type": "resume", "client": "bob-laptop", "models": []})
            _, got = await b1.wait_type("synced")
            self.assertEqual(sorted(m["type"] for m in got), ["snapshot"] * 3)
            b2 = await connect(d, "bob")
            await b2.open()
            c1 = await connect(d, "carol")
            await c1.open()
            conns = [a1, a2, b1, b2, c1]
            clients = {a1: "alice-phone", b1: "bob-laptop"}
            refs = {}
            t_start = int(time.time() * 1000)
            future = t_start + 30000   # within the 60 s skew: kept as stamped

            async def w(c, scope, id, patch, expect="ack", **kw):
                ref = refs[c] = refs.get(c, 0) + 1
                msg = write(ref, scope, id, patch, **kw)
                await c.send(msg)
                ans, _ = await answer(c, ref)
                self.assertEqual(ans["type"] if ans["type"] == "ack" else ans["code"], expect,
                                 (msg, ans))
                if c in clients:
                    outcomes[(clients[c], ref)] = (msg, ans)
                return ans

            await w(a1, "private", "notes", {"body": "first", "n": 1})
            await w(a1, "private", "drafts",
                    {"body": "caf\u00e9 \u2713 \"quoted\"\nnext line \\ tab\t", "n": 1})
            await w(a2, "private", "notes", {"n": 2, "tags": ["x", None, 3, {"y": [1.5]}]})
            await w(a1, "shared", "roadmap", {"body": "Q1"})
            await w(a2, "shared", "roadmap", {"n": 5, "extra": {"deep": {"x": 1, "z": "z"}}})
            await w(a1, "shared", "roadmap", {"extra": {"deep": {"y": 2, "x": None}}})
            await w(b1, "private", "notes", {"body": "bob's"})
            await w(b1, "shared", "roadmap", {"body": "no"}, expect="forbidden")
            await w(b1, "shared", "board", {"k1": "bob", "k2": {"a": 1}, "n": 3})
            await w(a1, "shared", "board", {"k3": "alice"})
            await w(a1, "shared", "board", {"k1": None})        # a tombstone
            await w(b2, "shared", "board", {"k2": {"b": 2}})     # replaced whole, not merged
            await w(b1, "shared", "board", {"k4": "future"},
                    ts={"wall": future, "count": 3})
            await w(a1, "private", "notes", {"n": -1}, expect="invalid")
            nothing = await w(a1, "private", "notes", {"title": "Alice notes"})
            self.assertNotIn("from", nothing, "a write that changes nothing has no from")
            await w(c1, "private", "todo", {"body": "carol's", "done": [True, False]})
            await w(c1, "shared", "board", {"k5": 1}, expect="forbidden")
            await w(b2, "private", "notes", {"body": None, "n": 7})
            for i in range(20):   # some history depth
                await w(a2 if i % 2 else a1, "private", "drafts", {"n": i + 2, "body": "v%d" % i})
            await w(a2, "shared", "board", {"k3": {"nested": [None, {"a": None}]}})
            await w(a1, "shared", "board", {"title": "Board 2", "body": None})
            for c in conns:
                await c.barrier()
            await close_all(conns)
            return early, future

        early, future = self.run_async(before_restart())
        before = self.run_async(everything(d))
        if evict:
            # Every tenant is idle (no connection): evicted, then loaded again by the
            # connections of everything(), they are what they were.
            self.wait_evicted(d, 3)
            self.assert_same(before, self.run_async(everything(d)), "after an eviction")
        # The script did reach every model.
        for t, (snaps, _) in before.items():
            for key, s in snaps.items():
                self.assertGreater(s["rev"], early[t][key]["rev"], (t, key))
        self.assertEqual(before["alice"][0][("shared", "board")]["value"].get("k2"), {"b": 2})
        self.assertNotIn("k1", before["alice"][0][("shared", "board")]["value"])

        self.restart(d)
        after = self.run_async(everything(d))
        self.assert_same(before, after, "after the restart (synchronous %s)" % synchronous)

        async def after_restart():
            # Resume from the initial revs: patches only, ending at the stored values.
            resumers = {}
            for t in TENANTS:
                r = await connect(d, t, query="resume=1")
                self.assertEqual((await r.recv())["type"], "hello")
                resume = {"type": "resume", "models": [
                    {"scope": k[0], "id": k[1], "rev": v["rev"]} for k, v in early[t].items()]}
                if t != "carol":
                    resume["client"] = {"alice": "alice-phone", "bob": "bob-laptop"}[t]
                await r.send(resume)
                _, got = await r.wait_type("synced")
                held = {k: dict(v) for k, v in early[t].items()}
                for m in got:
                    self.assertEqual(m["type"], "patch",
                                     "%s resumed with the history: patches, not %r" % (t, m))
                    key = (m["scope"], m["id"])
                    self.assertEqual(m["from"], held[key]["rev"], m)
                    held[key] = {"value": merge_patch(held[key]["value"], m["patch"]),
                                 "rev": m["rev"]}
                self.assertEqual(held, {k: {"value": s["value"], "rev": s["rev"]}
                                        for k, s in after[t][0].items()}, t)
                resumers[t] = r

            # Every write of a client id, resent: its original outcome, applied once.
            watchers = []
            for t in TENANTS:
                c = await connect(d, t)
                await c.open()
                watchers.append(c)
            for (client, ref), (msg, ans) in sorted(outcomes.items()):
                r = resumers["alice" if client == "alice-phone" else "bob"]
                await r.send(msg)
                got, skipped = await answer(r, ref)
                self.assertEqual((got, skipped), (ans, []),
                                 "%s ref %d resent after the restart" % (client, ref))
            for c in list(resumers.values()) + watchers:
                self.assertEqual(await c.barrier(), [], "a resent write published something")
            self.assertEqual(await everything(d), after, "a resent write changed something")

            # lww-map stamps survived: older stamps lose, an unstamped write wins.
            a, b = resumers["alice"], resumers["bob"]
            board = after["alice"][0][("shared", "board")]["rev"]
            await a.send(write(1000, "shared", "board", {"k4": "stale"},
                               ts={"wall": future, "count": 2}))
            self.assertEqual(await a.recv(), {"type": "ack", "ref": 1000, "scope": "shared",
                                              "id": "board", "rev": board},
                             "an older stamp than the stored one loses")
            await b.send(write(1000, "shared", "board", {"k1": "revived"},
                               ts={"wall": int(time.time() * 1000) - 600000, "count": 0}))
            self.assertEqual(await b.recv(), {"type": "ack", "ref": 1000, "scope": "shared",
                                              "id": "board", "rev": board},
                             "a stamp older than the tombstone loses")
            for c in list(resumers.values()) + watchers:
                self.assertEqual(await c.barrier(), [], "a losing write published something")
            await a.send(write(1001, "shared", "board", {"k4": "now"}))
            p, ack = await a.recv_n(2)
            self.assertEqual((p["type"], p["from"], p["rev"], p["patch"]),
                             ("patch", board, board + 1, {"k4": "now"}),
                             "the server's clock is past the stored stamps")
            self.assertEqual(ack, {"type": "ack", "ref": 1001, "scope": "shared",
                                   "id": "board", "rev": board + 1})

            # New writes continue the revs.
            notes = after["alice"][0][("private", "notes")]["rev"]
            await a.send(write(1002, "private", "notes", {"n": 99}))
            self.assertEqual(await a.recv(), {"type": "ack", "ref": 1002, "scope": "private",
                                              "id": "notes", "rev": notes + 1, "from": notes})
            roadmap = after["alice"][0][("shared", "roadmap")]["rev"]
            await b.send(write(1001, "shared", "roadmap", {"n": 1}))
            self.assertEqual((await answer(b, 1001))[0].get("code"), "forbidden",
                             "bob's read access was stored")
            await a.send(write(1003, "shared", "roadmap", {"n": 6}))
            p, ack = await a.recv_n(2)
            self.assertEqual((p["from"], p["rev"], ack["rev"]), (roadmap, roadmap + 1,
                                                                  roadmap + 1))
            for c in list(resumers.values()) + watchers:
                await c.barrier()
            await close_all(list(resumers.values()) + watchers)

        self.run_async(after_restart())
        again = self.run_async(everything(d))
        self.restart(d, same_port=True)   # clients reconnect to the address they knew
        self.assert_same(again, self.run_async(everything(d)),
                         "after a second restart (synchronous %s)" % synchronous)

    def test_script_survives_a_restart_synchronous_default(self):
        d = self.start_fresh(config())
        self.script(d, "full (default)")

    def test_script_survives_a_restart_synchronous_normal(self):
        d = self.start_fresh(config("normal"))
        self.script(d, "normal")

    def test_script_survives_a_restart_synchronous_off(self):
        d = self.start_fresh(config("off"))
        self.script(d, "off")

    def test_script_survives_an_eviction_and_a_restart(self):
        d = self.start_fresh(config(evict_idle_ms=1))
        self.script(d, "full (default), tenants evicted", evict=True)

    def test_resume_answers_are_the_same_after_a_restart(self):
        # A short history (3 patches per model): for every model and every rev a client
        # may hold (0 to one past the current), `resume` is answered after the restart
        # exactly as before it: the same patches (origins included), or a snapshot where
        # the history no longer reaches.
        cfg = config()
        cfg["limits"] = {"history_patches": 3}
        d = self.start_fresh(cfg)

        async def writes():
            a = await connect(d, "alice")
            await a.open()
            b = await connect(d, "bob")
            await b.open()
            ref = 0
            for c, scope, id, n in ((a, "private", "notes", 5), (a, "private", "drafts", 2),
                                    (a, "shared", "board", 2), (b, "shared", "board", 2),
                                    (a, "shared", "roadmap", 1), (b, "private", "notes", 3)):
                for i in range(n):
                    ref += 1
                    await c.send(write(ref, scope, id, {"n": ref}))
                    await answer(c, ref)
            await close_all([a, b])
        self.run_async(writes())

        async def answers():
            out = {}
            for t in TENANTS:
                snaps, _ = await opening(d, t)
                for key, s in sorted(snaps.items()):
                    for rev in range(0, s["rev"] + 2):
                        r = await connect(d, t, query="resume=1")
                        self.assertEqual((await r.recv())["type"], "hello")
                        await r.send({"type": "resume", "models": [
                            {"scope": key[0], "id": key[1], "rev": rev}]})
                        _, got = await r.wait_type("synced")
                        await close_all([r])
                        # The listed model's answer in order; the snapshots of the others
                        # (their order is not the protocol's) by model.
                        out[(t, key, rev)] = (
                            [m for m in got if model_key(m) == key],
                            sorted((m for m in got if model_key(m) != key), key=model_key))
            return out

        before = self.run_async(answers())
        kinds = {m["type"] for mine, _ in before.values() for m in mine}
        self.assertEqual(kinds, {"patch", "snapshot"})
        self.restart(d)
        after = self.run_async(answers())
        for k in before:
            self.assertEqual(after[k], before[k], "resume of %r" % (k,))

    def test_stored_state_wins_over_the_config(self):
        d = self.start_fresh(config())

        async def change():
            a = await connect(d, "alice")
            await a.open()
            await a.send(write(1, "private", "notes", {"body": "stored"}))
            self.assertEqual((await a.recv())["type"], "ack")
            await close_all([a])
        self.run_async(change())
        before = self.run_async(everything(d))
        # The config changes between the two starts: other initial values, a tenant and a
        # shared model more, bob's access to the roadmap raised. The stored state wins.
        cfg = config()
        cfg["tenants"]["alice"]["models"]["notes"]["value"] = {"title": "Changed"}
        cfg["tenants"]["dave"] = {"models": {"notes": {"schema": "Doc",
                                                       "value": {"title": "Dave"}}}}
        cfg["shared"]["roadmap"]["subscribers"]["bob"] = "write"
        cfg["shared"]["extra"] = {"schema": "Doc", "value": {"title": "Extra"},
                                  "subscribers": {"alice": "write"}}
        d.config = cfg
        self.restart(d)
        self.assert_same(before, self.run_async(everything(d)), "with a changed config")

        async def dave():
            c = await connect(d, "dave")
            _, snaps = await c.open()
            await close_all([c])
            return snaps
        self.assertEqual(self.run_async(dave()), {}, "dave was not in the stored state")


if __name__ == "__main__":
    unittest.main()
