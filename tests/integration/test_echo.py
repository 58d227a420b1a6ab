"""PROTOCOL.md over real sockets: every echo rule, every error code a client can reach,
batches, ping, close codes and refused handshakes.

Not reachable from a client of the daemon: `rejected` (needs a custom merge strategy,
which the daemon's config cannot name; tests/cases/proto covers it in the core) and
`internal` (needs a failing server)."""

import asyncio
import json
import signal
import time
import unittest

import websockets

from harness import (Client, DaemonTestCase, SharedDaemonTestCase, SUBPROTOCOL, TIMEOUT,
                     close_all, connect, doc_config, open_client, raw_handshake,
                     raw_read_frames)


def write(ref, scope, id, patch, **kw):
    m = {"type": "write", "scope": scope, "id": id, "ref": ref, "patch": patch}
    m.update(kw)
    return m


class EchoRules(SharedDaemonTestCase):
    CONFIG = doc_config()

    def test_private_write_acks_the_writer_and_patches_the_tenants_other_connections(self):
        async def run():
            a1, h1, s1 = await open_client(self.daemon, "alice")
            a2, h2, s2 = await open_client(self.daemon, "alice")
            b, hb, sb = await open_client(self.daemon, "bob")
            try:
                rev = s1[("private", "notes")]["rev"]
                self.assertEqual(rev, s2[("private", "notes")]["rev"])
                await a1.send(write(1, "private", "notes", {"body": "hello"}))
                ack = await a1.recv()
                self.assertEqual(ack, {"type": "ack", "ref": 1, "scope": "private",
                                       "id": "notes", "rev": rev + 1, "from": rev})
                patch = await a2.recv()
                self.assertEqual(patch, {"type": "patch", "scope": "private", "id": "notes",
                                         "from": rev, "rev": rev + 1,
                                         "patch": {"body": "hello"}, "origin": h1["conn"]})
                # Nothing more for anyone: the writer gets no patch, bob learns nothing.
                self.assertEqual(await a1.barrier(), [])
                self.assertEqual(await a2.barrier(), [])
                self.assertEqual(await b.barrier(), [])

                # The other way round, with a member deleted.
                await a2.send(write(2, "private", "notes", {"n": 4, "body": None}))
                self.assertEqual(await a2.recv(),
                                 {"type": "ack", "ref": 2, "scope": "private", "id": "notes",
                                  "rev": rev + 2, "from": rev + 1})
                self.assertEqual(await a1.recv(),
                                 {"type": "patch", "scope": "private", "id": "notes",
                                  "from": rev + 1, "rev": rev + 2,
                                  "patch": {"n": 4, "body": None}, "origin": h2["conn"]})
                self.assertEqual(await b.barrier(), [])

                # A fresh connection of each tenant sees the stored values.
                f, _, sf = await open_client(self.daemon, "alice")
                notes = sf[("private", "notes")]
                self.assertEqual(notes["rev"], rev + 2)
                self.assertEqual(notes["value"].get("n"), 4)
                self.assertNotIn("body", notes["value"])
                g, _, sg = await open_client(self.daemon, "bob")
                self.assertEqual(sg[("private", "notes")]["value"]["title"], "Bob notes")
                self.assertNotEqual(sg[("private", "notes")]["value"].get("body"), "hello")
                await close_all([f, g])
            finally:
                await close_all([a1, a2, b])
        self.run_async(run())

    def test_shared_write_reaches_every_subscriber_and_the_writer_gets_patch_then_ack(self):
        async def run():
            a1, h1, s1 = await open_client(self.daemon, "alice")
            a2, _, _ = await open_client(self.daemon, "alice")
            b, _, sb = await open_client(self.daemon, "bob")
            c, _, sc = await open_client(self.daemon, "carol")
            try:
                self.assertEqual(sc, {}, "carol sees nothing")
                self.assertEqual(sb[("shared", "roadmap")]["access"], "read")
                self.assertEqual(s1[("shared", "roadmap")]["access"], "write")
                rev = s1[("shared", "roadmap")]["rev"]
                for x in (a1, a2, b):
                    x.keep_raw = True
                await a1.send(write(7, "shared", "roadmap", {"body": "Q1: ship"}))
                expected = {"type": "patch", "scope": "shared", "id": "roadmap", "from": rev,
                            "rev": rev + 1, "patch": {"body": "Q1: ship"},
                            "origin": h1["conn"]}
                self.assertEqual(await a1.recv_n(2),
                                 [expected, {"type": "ack", "ref": 7, "scope": "shared",
                                             "id": "roadmap", "rev": rev + 1}])
                self.assertEqual(await a2.recv(), expected)
                self.assertEqual(await b.recv(), expected)
                # The bytes of a patch are identical for every recipient.
                def unbatch(text):
                    text = text.strip()
                    return text[1:-1] if text.startswith("[") else text
                self.assertEqual(len(a2.raw_frames), 1)
                patch_text = unbatch(a2.raw_frames[0])
                self.assertEqual(unbatch(b.raw_frames[0]), patch_text)
                self.assertIn(patch_text, "".join(a1.raw_frames))
                for x in (a1, a2, b, c):
                    self.assertEqual(await x.barrier(), [])
            finally:
                await close_all([a1, a2, b, c])
        self.run_async(run())

    def test_lww_map_write_by_the_other_tenant(self):
        async def run():
            a, ha, sa = await open_client(self.daemon, "alice")
            b, hb, sb = await open_client(self.daemon, "bob")
            try:
                rev = sb[("shared", "board")]["rev"]
                await b.send(write(1, "shared", "board", {"body": "from bob"}))
                expected = {"type": "patch", "scope": "shared", "id": "board", "from": rev,
                            "rev": rev + 1, "patch": {"body": "from bob"},
                            "origin": hb["conn"]}
                self.assertEqual(await b.recv_n(2),
                                 [expected, {"type": "ack", "ref": 1, "scope": "shared",
                                             "id": "board", "rev": rev + 1}])
                self.assertEqual(await a.recv(), expected)
                # An older ts loses the field: no patch, the ack names the current rev.
                await a.send(write(1, "shared", "board", {"body": "too old"},
                                   ts={"wall": 1000, "count": 0}))
                self.assertEqual(await a.recv(), {"type": "ack", "ref": 1, "scope": "shared",
                                                  "id": "board", "rev": rev + 1})
                self.assertEqual(await b.barrier(), [])
                self.assertEqual(await a.barrier(), [])
            finally:
                await close_all([a, b])
        self.run_async(run())

    def test_lww_map_clamps_a_future_ts_and_server_stamps_win_after_it(self):
        async def run():
            a, ha, sa = await open_client(self.daemon, "alice")
            b, hb, _ = await open_client(self.daemon, "bob")
            try:
                now = int(time.time() * 1000)
                # A day ahead: clamped to the server's clock plus the skew (60 s).
                await a.send(write(1, "shared", "board", {"clock1": "future"},
                                   ts={"wall": now + 86400000, "count": 0}))
                p, ack = await a.recv_n(2)
                self.assertEqual((p["patch"], ack["type"]), ({"clock1": "future"}, "ack"))
                self.assertEqual(await b.recv(), p)
                # The server's clock moved past it: bob's unstamped write wins.
                await b.send(write(2, "shared", "board", {"clock1": "later"}))
                p2, ack2 = await b.recv_n(2)
                self.assertEqual((p2["type"], p2["patch"], p2["from"]),
                                 ("patch", {"clock1": "later"}, p["rev"]), p2)
                self.assertEqual(ack2["rev"], p2["rev"])
                self.assertEqual(await a.recv(), p2)
                # A ts of "now" is behind the server's stamp (past the clamped future one):
                # it loses, so no patch, and the ack names the current rev.
                await a.send(write(3, "shared", "board", {"clock1": "stale"},
                                   ts={"wall": now, "count": 5}))
                self.assertEqual(await a.recv(), {"type": "ack", "ref": 3, "scope": "shared",
                                                  "id": "board", "rev": p2["rev"]})
                self.assertEqual(await b.barrier(), [])
            finally:
                await close_all([a, b])
        self.run_async(run())

    def test_lww_map_same_stamp_loses(self):
        async def run():
            a, _, _ = await open_client(self.daemon, "alice")
            try:
                ts = {"wall": int(time.time() * 1000) + 10000, "count": 0}
                await a.send(write(1, "shared", "board", {"tie1": "first"}, ts=ts))
                p, ack = await a.recv_n(2)
                self.assertEqual(p["patch"], {"tie1": "first"})
                await a.send(write(2, "shared", "board", {"tie1": "second"}, ts=ts))
                self.assertEqual(await a.recv(), {"type": "ack", "ref": 2, "scope": "shared",
                                                  "id": "board", "rev": p["rev"]})
                await a.send(write(3, "shared", "board", {"tie1": "third"},
                                   ts={"wall": ts["wall"], "count": 1}))
                p3, _ = await a.recv_n(2)
                self.assertEqual((p3["patch"], p3["from"]), ({"tie1": "third"}, p["rev"]))
            finally:
                await close_all([a])
        self.run_async(run())

    def test_write_that_changes_nothing_publishes_nothing(self):
        async def run():
            a1, _, s1 = await open_client(self.daemon, "alice")
            a2, _, _ = await open_client(self.daemon, "alice")
            b, _, _ = await open_client(self.daemon, "bob")
            try:
                notes = s1[("private", "notes")]
                roadmap = s1[("shared", "roadmap")]
                await a1.send(write(1, "private", "notes",
                                    {"title": notes["value"]["title"]}))
                self.assertEqual(await a1.recv(), {"type": "ack", "ref": 1, "scope": "private",
                                                   "id": "notes", "rev": notes["rev"]})
                await a1.send(write(2, "shared", "roadmap", {"zz": None}))
                self.assertEqual(await a1.recv(), {"type": "ack", "ref": 2, "scope": "shared",
                                                   "id": "roadmap", "rev": roadmap["rev"]})
                await a1.send(write(3, "private", "notes", {}))
                self.assertEqual(await a1.recv(), {"type": "ack", "ref": 3, "scope": "private",
                                                   "id": "notes", "rev": notes["rev"]})
                for x in (a1, a2, b):
                    self.assertEqual(await x.barrier(), [])
            finally:
                await close_all([a1, a2, b])
        self.run_async(run())

    def test_batches_both_ways(self):
        async def run():
            a1, h1, s1 = await open_client(self.daemon, "alice")
            a2, _, _ = await open_client(self.daemon, "alice")
            try:
                a1.keep_raw = True
                rev = s1[("private", "notes")]["rev"]
                batch = [{"type": "ping", "ref": 1},
                         write(2, "private", "notes", {"n": 1}),
                         7,
                         write(3, "private", "todo", {}),
                         {"type": "fly", "ref": 4},
                         write(5, "private", "notes", {"n": -1}),
                         write(6, "private", "notes", {"n": 2})]
                await a1.send(batch)
                got = await a1.recv_n(7)
                self.assertEqual(got[0], {"type": "pong", "ref": 1})
                self.assertEqual(got[1], {"type": "ack", "ref": 2, "scope": "private",
                                          "id": "notes", "rev": rev + 1, "from": rev})
                self.assertEqual((got[2]["type"], got[2]["code"], "ref" in got[2]),
                                 ("error", "bad_request", False))
                self.assertTrue(got[2]["message"].startswith("[2]"), got[2])
                self.assertEqual((got[3]["type"], got[3]["ref"], got[3]["code"]),
                                 ("error", 3, "not_found"))
                self.assertEqual((got[4]["type"], got[4]["ref"], got[4]["code"]),
                                 ("error", 4, "bad_request"))
                self.assertEqual((got[5]["type"], got[5]["ref"], got[5]["code"]),
                                 ("error", 5, "invalid"))
                self.assertEqual(got[6], {"type": "ack", "ref": 6, "scope": "private",
                                          "id": "notes", "rev": rev + 2, "from": rev + 1})
                # The server batches what it has for a connection at the end of each loop
                # iteration. The pong reveals nothing and may leave at once; the answers from
                # the first ack on wait for the iteration's commit (on the commit thread) and
                # come in one array frame.
                self.assertLessEqual(len(a1.raw_frames), 2, a1.raw_frames)
                self.assertTrue(a1.raw_frames[-1].lstrip().startswith("["), a1.raw_frames)
                self.assertEqual(await a2.recv_n(2), [
                    {"type": "patch", "scope": "private", "id": "notes", "from": rev,
                     "rev": rev + 1, "patch": {"n": 1}, "origin": h1["conn"]},
                    {"type": "patch", "scope": "private", "id": "notes", "from": rev + 1,
                     "rev": rev + 2, "patch": {"n": 2}, "origin": h1["conn"]}])
                self.assertEqual(await a2.barrier(), [])
            finally:
                await close_all([a1, a2])
        self.run_async(run())

    def test_server_batches_are_at_most_64_kib(self):
        async def run():
            a1, h1, s1 = await open_client(self.daemon, "alice")
            a2, _, _ = await open_client(self.daemon, "alice")
            try:
                a2.keep_raw = True
                rev = s1[("private", "notes")]["rev"]
                # 100 patches of 2 KB reach a2 in one loop iteration: 200 KB to batch.
                await a1.send([write(i, "private", "notes", {"body": "%04d" % i + "x" * 2000})
                               for i in range(1, 101)])
                acks = await a1.recv_n(100)
                self.assertEqual(acks[-1]["rev"], rev + 100)
                # Client checks every batch's size. Patches may be coalesced, but the
                # revs stay continuous.
                patches, held = [], rev
                while held < rev + 100:
                    p = await a2.recv()
                    self.assertEqual((p["type"], p["from"]), ("patch", held), p)
                    held = p["rev"]
                    patches.append(p)
                self.assertEqual(held, rev + 100)
                if len(patches) == 100:
                    self.assertGreater(len(a2.raw_frames), 3)
                    self.assertLess(len(a2.raw_frames), 100, "the patches were batched")
            finally:
                await close_all([a1, a2])
        self.run_async(run())

    def test_hello_announces_the_config(self):
        async def run():
            a, h, _ = await open_client(self.daemon, "alice")
            self.assertEqual(h["tick_ms"], 50)
            self.assertEqual(h["max_message_bytes"], 1048576)
            self.assertEqual(h["protocol"], 1)
            await close_all([a])
        self.run_async(run())

    def test_a_large_snapshot_is_one_message(self):
        # A single message may exceed the 64 KiB batch bound (up to max_message_bytes):
        # a 300 KB model's snapshot arrives whole, never in a batch over 64 KiB (Client
        # checks the bound on every frame).
        async def run():
            a, _, s = await open_client(self.daemon, "bob")
            try:
                big = "y" * 300000
                await a.send(write(1, "private", "notes", {"body": big}))
                ack = await a.recv()
                self.assertEqual(ack["type"], "ack")
                f, _, sf = await open_client(self.daemon, "bob")
                self.assertEqual(sf[("private", "notes")]["value"]["body"], big)
                self.assertEqual(sf[("private", "notes")]["rev"], ack["rev"])
                await f.send(write(2, "private", "notes", {"body": ""}))
                self.assertEqual((await f.recv())["type"], "ack")
                self.assertEqual((await a.recv())["patch"], {"body": ""})
                await close_all([f])
            finally:
                await close_all([a])
        self.run_async(run())

    def test_ping_pong(self):
        async def run():
            a, _, _ = await open_client(self.daemon, "alice")
            try:
                await a.send({"type": "ping", "ref": 9})
                self.assertEqual(await a.recv(), {"type": "pong", "ref": 9})
                await a.send({"type": "ping", "ref": 0, "client": "k7Qx2"})
                self.assertEqual(await a.recv(), {"type": "pong", "ref": 0})
                await a.send({"type": "ping", "ref": -3, "extra": "ignored"})
                self.assertEqual(await a.recv(), {"type": "pong", "ref": -3})
                await a.send({"type": "ping", "ref": 10, "client": "other"})
                e = await a.recv()
                self.assertEqual((e["type"], e["ref"], e["code"]), ("error", 10, "bad_request"))
                self.assertTrue(e["message"].startswith("client"), e)
                await a.send({"type": "ping"})
                e = await a.recv()
                self.assertEqual((e["type"], e["code"], "ref" in e), ("error", "bad_request",
                                                                      False))
                self.assertTrue(e["message"].startswith("ref"), e)
            finally:
                await close_all([a])
        self.run_async(run())

    def test_exactly_once_resend_on_the_same_connection(self):
        async def run():
            a1, _, s1 = await open_client(self.daemon, "alice")
            a2, _, _ = await open_client(self.daemon, "alice")
            try:
                rev = s1[("private", "notes")]["rev"]
                await a1.send({"type": "ping", "ref": 0, "client": "echo-once-1"})
                self.assertEqual(await a1.recv(), {"type": "pong", "ref": 0})
                await a1.send(write(1, "private", "notes", {"n": 11}))
                ack = await a1.recv()
                self.assertEqual(ack, {"type": "ack", "ref": 1, "scope": "private",
                                       "id": "notes", "rev": rev + 1, "from": rev})
                await a1.send(write(2, "private", "notes", {"n": -1}))
                err = await a1.recv()
                self.assertEqual((err["code"], err["ref"]), ("invalid", 2))
                self.assertEqual(len(await a2.barrier()), 1)
                # Resent (even with another patch): the original outcomes, nothing applied.
                await a1.send([write(1, "private", "notes", {"n": 99}),
                               write(2, "private", "notes", {"n": 98})])
                self.assertEqual(await a1.recv_n(2), [ack, err])
                self.assertEqual(await a2.barrier(), [])
                f, _, sf = await open_client(self.daemon, "alice")
                self.assertEqual(sf[("private", "notes")]["rev"], rev + 1)
                self.assertEqual(sf[("private", "notes")]["value"]["n"], 11)
                await close_all([f])
            finally:
                await close_all([a1, a2])
        self.run_async(run())

    def test_duplicate_when_the_outcome_is_forgotten(self):
        async def run():
            a, _, s = await open_client(self.daemon, "alice")
            try:
                await a.send({"type": "ping", "ref": 0, "client": "echo-dup-1"})
                self.assertEqual(await a.recv(), {"type": "pong", "ref": 0})
                # 300 writes: the server remembers at least the last 256 outcomes.
                await a.send([write(i, "private", "notes", {"n": 5}) for i in range(1, 301)])
                acks = await a.recv_n(300)
                self.assertEqual([m["ref"] for m in acks], list(range(1, 301)))
                self.assertTrue(all(m["type"] == "ack" for m in acks), acks[:3])
                await a.send(write(300, "private", "notes", {"n": 9}))
                self.assertEqual(await a.recv(), acks[299])
                await a.send(write(45, "private", "notes", {"n": 9}))
                self.assertEqual(await a.recv(), acks[44])
                await a.send(write(1, "private", "notes", {"n": 9}))
                e = await a.recv()
                self.assertEqual((e["type"], e["ref"], e["code"]), ("error", 1, "duplicate"))
                f, _, sf = await open_client(self.daemon, "alice")
                self.assertEqual(sf[("private", "notes")]["value"]["n"], 5)
                self.assertEqual(sf[("private", "notes")]["rev"], acks[299]["rev"])
                await close_all([f])
            finally:
                await close_all([a])
        self.run_async(run())


class Errors(SharedDaemonTestCase):
    CONFIG = doc_config()

    def assert_error(self, m, code, ref=None, field=None):
        self.assertEqual(m.get("type"), "error", m)
        self.assertEqual(m.get("code"), code, m)
        if ref is None:
            self.assertNotIn("ref", m)
        else:
            self.assertEqual(m.get("ref"), ref, m)
        self.assertIsInstance(m.get("message"), str, m)
        if field is not None:
            self.assertTrue(m["message"].startswith(field), "message must name %r: %r"
                            % (field, m))

    def test_bad_request_frames(self):
        async def run():
            a, _, _ = await open_client(self.daemon, "alice")
            try:
                for text in ['{"type":', "not json at all", "42", '"ping"', "null",
                             '{"type":"ping","type":"ping","ref":1}', "[1]", "[[]]"]:
                    await a.send_text(text)
                    m = await a.recv()
                    self.assert_error(m, "bad_request")
                    self.assertEqual(await a.barrier(), [], text)
            finally:
                await close_all([a])
        self.run_async(run())

    def test_bad_request_fields(self):
        cases = [
            ({"ref": 1}, 1, "type"),
            ({"type": 5, "ref": 2}, 2, "type"),
            ({"type": "fly", "ref": 3}, 3, "type"),
            ({"type": "fly"}, None, "type"),
            ({"type": "write", "scope": "private", "id": "notes", "patch": {"n": 1}}, None, "ref"),
            (write("4", "private", "notes", {"n": 1}), None, "ref"),
            (write(4.5, "private", "notes", {"n": 1}), None, "ref"),
            (write(5, "public", "notes", {"n": 1}), 5, "scope"),
            ({"type": "write", "ref": 6, "id": "notes", "patch": {"n": 1}}, 6, "scope"),
            (write(7, "private", 7, {"n": 1}), 7, "id"),
            (write(8, "private", "", {"n": 1}), 8, "id"),
            (write(9, "private", "notes", [1]), 9, "patch"),
            ({"type": "write", "ref": 10, "scope": "private", "id": "notes"}, 10, "patch"),
            (write(11, "private", "notes", None), 11, "patch"),
            (write(12, "private", "notes", {"n": 1}, ts=5), 12, "ts"),
            (write(13, "private", "notes", {"n": 1}, ts={"wall": 1}), 13, "ts"),
            (write(14, "private", "notes", {"n": 1}, ts={"wall": 1, "count": -1}), 14, "ts"),
            ({"type": "ping"}, None, "ref"),
            ({"type": "ping", "ref": "a"}, None, "ref"),
            ({"type": "ping", "ref": 15, "client": ""}, 15, "client"),
            ({"type": "ping", "ref": 16, "client": "x" * 65}, 16, "client"),
            ({"type": "resume", "models": {}}, None, "models"),
            ({"type": "resume", "models": [{"scope": "private", "id": "notes"}]}, None,
             "models[0].rev"),
            ({"type": "resume", "models": [7]}, None, "models[0]"),
        ]

        async def run():
            a, _, s = await open_client(self.daemon, "alice")
            a2, _, _ = await open_client(self.daemon, "alice")
            try:
                for msg, ref, field in cases:
                    await a.send(msg)
                    m = await a.recv()
                    with self.subTest(msg=msg):
                        self.assert_error(m, "bad_request", ref, field)
                self.assertEqual(await a.barrier(), [])
                self.assertEqual(await a2.barrier(), [])
                f, _, sf = await open_client(self.daemon, "alice")
                self.assertEqual(sf[("private", "notes")], s[("private", "notes")])
                await close_all([f])
            finally:
                await close_all([a, a2])
        self.run_async(run())

    def test_not_found_cannot_tell_unseen_from_missing(self):
        async def run():
            c, _, _ = await open_client(self.daemon, "carol")
            a, _, _ = await open_client(self.daemon, "alice")
            b, _, _ = await open_client(self.daemon, "bob")
            try:
                await c.send(write(1, "shared", "roadmap", {"n": 1}))
                unseen = await c.recv()
                self.assert_error(unseen, "not_found", 1, "id")
                await c.send(write(2, "shared", "nosuchsid", {"n": 1}))
                missing = await c.recv()
                self.assert_error(missing, "not_found", 2, "id")
                self.assertEqual(unseen["message"].replace("roadmap", "X"),
                                 missing["message"].replace("nosuchsid", "X"))
                # Private ids are per tenant: carol has no notes, alice has no todo.
                await c.send(write(3, "private", "notes", {"n": 1}))
                self.assert_error(await c.recv(), "not_found", 3, "id")
                await a.send(write(4, "private", "todo", {"n": 1}))
                self.assert_error(await a.recv(), "not_found", 4, "id")
                await a.send(write(5, "private", "roadmap", {"n": 1}))
                self.assert_error(await a.recv(), "not_found", 5, "id")
                await a.send(write(6, "shared", "notes", {"n": 1}))
                self.assert_error(await a.recv(), "not_found", 6, "id")
                for x in (a, b, c):
                    self.assertEqual(await x.barrier(), [])
            finally:
                await close_all([a, b, c])
        self.run_async(run())

    def test_forbidden_for_read_access(self):
        async def run():
            b, _, sb = await open_client(self.daemon, "bob")
            a, _, _ = await open_client(self.daemon, "alice")
            try:
                for ref, patch in ((1, {"body": "x"}), (2, {}), (3, {"n": -5})):
                    await b.send(write(ref, "shared", "roadmap", patch))
                    self.assert_error(await b.recv(), "forbidden", ref)
                self.assertEqual(await a.barrier(), [])
                self.assertEqual(await b.barrier(), [])
                f, _, sf = await open_client(self.daemon, "bob")
                self.assertEqual(sf[("shared", "roadmap")], sb[("shared", "roadmap")])
                await close_all([f])
            finally:
                await close_all([a, b])
        self.run_async(run())

    def test_invalid_names_the_field_and_changes_nothing(self):
        cases = [({"n": -1}, "n"), ({"title": None}, "title"), ({"body": 5}, "body"),
                 ({"title": "x" * 21}, "title"), ({"body": "fine", "n": "many"}, "n"),
                 ({"n": 1.5}, "n")]

        async def run():
            a1, _, s = await open_client(self.daemon, "alice")
            a2, _, _ = await open_client(self.daemon, "alice")
            b, _, _ = await open_client(self.daemon, "bob")
            try:
                ref = 0
                for scope, id in (("private", "notes"), ("shared", "roadmap"),
                                  ("shared", "board")):
                    for patch, field in cases:
                        ref += 1
                        await a1.send(write(ref, scope, id, patch))
                        with self.subTest(scope=scope, patch=patch):
                            self.assert_error(await a1.recv(), "invalid", ref, field)
                for x in (a1, a2, b):
                    self.assertEqual(await x.barrier(), [])
                f, _, sf = await open_client(self.daemon, "alice")
                self.assertEqual(sf, s)
                await close_all([f])
            finally:
                await close_all([a1, a2, b])
        self.run_async(run())


class Limits(DaemonTestCase):

    def test_too_large_closes_1009(self):
        d = self.start_daemon(doc_config(limits={"max_message_bytes": 300}))

        async def run():
            a1, h, s = await open_client(d, "alice")
            a2, _, _ = await open_client(d, "alice")
            try:
                self.assertEqual(h["max_message_bytes"], 300)
                ping = json.dumps({"type": "ping", "ref": 1})
                await a1.send_text(ping + " " * (300 - len(ping)))
                self.assertEqual(await a1.recv(), {"type": "pong", "ref": 1})
                w = json.dumps(write(2, "private", "notes", {"n": 1}))
                await a1.send_text(w + " " * (301 - len(w)))
                e = await a1.recv()
                self.assertEqual((e["type"], e["code"]), ("error", "too_large"))
                self.assertEqual(await a1.wait_closed(), 1009)
                # Nothing was applied; the other connection goes on.
                await a2.send(write(4, "private", "notes", {"n": 2}))
                rev = s[("private", "notes")]["rev"]
                self.assertEqual(await a2.recv(), {"type": "ack", "ref": 4, "scope": "private",
                                                   "id": "notes", "rev": rev + 1, "from": rev})
            finally:
                await close_all([a1, a2])
        self.run_async(run())

    def test_model_size_bounded_by_max_message_bytes(self):
        # No model may outgrow max_message_bytes less 1 KiB: such a write is invalid.
        d = self.start_daemon(doc_config(limits={"max_message_bytes": 4096}))

        async def run():
            a, _, s = await open_client(d, "alice")
            try:
                await a.send(write(1, "private", "notes", {"body": "z" * 3500}))
                e = await a.recv()
                self.assertEqual((e["type"], e["ref"], e["code"]), ("error", 1, "invalid"))
                self.assertTrue(e["message"].startswith("(root)"), e)
                await a.send(write(2, "shared", "board", {"body": "z" * 3500}))
                e = await a.recv()
                self.assertEqual((e["type"], e["ref"], e["code"]), ("error", 2, "invalid"))
                await a.send(write(3, "private", "notes", {"body": "z" * 2000}))
                self.assertEqual((await a.recv())["type"], "ack")
                self.assertEqual(await a.barrier(), [])
            finally:
                await close_all([a])
        self.run_async(run())

    def test_rate_limited_is_not_recorded(self):
        d = self.start_daemon(doc_config(limits={"writes_per_second": 3}))

        async def run():
            a, _, s = await open_client(d, "alice")
            try:
                rev = s[("private", "notes")]["rev"]
                await a.send({"type": "ping", "ref": 0, "client": "rl-1"})
                self.assertEqual(await a.recv(), {"type": "pong", "ref": 0})
                # The bucket starts full with one second's worth (3); one frame of 6.
                await a.send([write(i, "private", "notes", {"n": i}) for i in range(1, 7)])
                got = await a.recv_n(6)
                self.assertEqual([m["type"] for m in got[:3]], ["ack"] * 3, got)
                self.assertEqual(got[2]["rev"], rev + 3)
                for m in got[3:]:
                    self.assertEqual((m["type"], m["code"]), ("error", "rate_limited"), got)
                # Not recorded: the same ref is processed once a token comes back.
                deadline = asyncio.get_running_loop().time() + TIMEOUT
                while True:
                    await a.send(write(4, "private", "notes", {"n": 4}))
                    m = await a.recv()
                    if m["type"] == "ack":
                        break
                    self.assertEqual(m["code"], "rate_limited", m)
                    self.assertLess(asyncio.get_running_loop().time(), deadline)
                    await asyncio.sleep(0.1)  # a token per 1/3 s: time is the event here
                self.assertEqual(m, {"type": "ack", "ref": 4, "scope": "private",
                                     "id": "notes", "rev": rev + 4, "from": rev + 3})
            finally:
                await close_all([a])
        self.run_async(run())

    def test_slow_reader_closed_with_1013(self):
        d = self.start_daemon(doc_config(limits={"max_outbox_bytes": 65536,
                                                 "writes_per_second": 100000}))

        async def run():
            # A raw socket with a small receive buffer that never reads.
            sock, status, hdrs, rest = raw_handshake(d.port, "/ws/alice", rcvbuf=4096)
            self.assertEqual(status, 101)
            w, _, s = await open_client(d, "alice")
            try:
                rev = s[("private", "notes")]["rev"]
                # Each write changes the body: ~16 KB per patch to the silent reader (each
                # patch below the 64 KiB outbox limit). The kernel buffers take a few MB;
                # 1200 patches (19 MB) surely pass the limit.
                big = "x" * 16000
                n, per_frame = 1200, 20
                for i in range(0, n, per_frame):
                    await w.send([write(j + 1, "private", "notes",
                                        {"body": big if j % 2 == 0 else big + "y"})
                                  for j in range(i, i + per_frame)])
                    acks = await w.recv_n(per_frame)
                    self.assertEqual([(m["type"], m["ref"]) for m in acks],
                                     [("ack", j + 1) for j in range(i, i + per_frame)])
                self.assertEqual(acks[-1]["rev"], rev + n)
                frames, code = await asyncio.get_running_loop().run_in_executor(
                    None, raw_read_frames, sock, rest)
                self.assertEqual(code, 1013, "close frames: %r"
                                 % [f for f in frames if f[0] == 8])
                # What it got before the drop is whole frames of messages, in order.
                got = []
                for op, payload in frames[:-1]:
                    self.assertEqual(op, 1)
                    v = json.loads(payload)
                    got += v if isinstance(v, list) else [v]
                self.assertEqual(got[0]["type"], "hello")
                held = rev
                for m in got:
                    if m["type"] == "patch":
                        self.assertEqual(m["from"], held)
                        held = m["rev"]
                self.assertLess(held, rev + n, "the slow reader must have missed patches")
                # It reconnects and resumes: the history cannot hold 20 MB, so a snapshot.
                r = await connect(d, "alice", query="resume=1")
                self.assertEqual((await r.recv())["type"], "hello")
                await r.send({"type": "resume", "models": [
                    {"scope": "private", "id": "notes", "rev": held}]})
                _, answer = await r.wait_type("synced")
                notes = [m for m in answer if m.get("id") == "notes"]
                if notes and notes[0]["type"] == "snapshot":
                    self.assertEqual(notes[0]["rev"], rev + n)
                else:
                    self.assertEqual(notes[-1]["rev"], rev + n, answer)
                await close_all([r])
            finally:
                sock.close()
                await close_all([w])
        self.run_async(run())

    def test_a_model_larger_than_the_outbox_limit_reaches_a_prompt_reader(self):
        # 1013 is for a connection that "fell too far behind (the bytes the server holds
        # for it, not yet taken by the socket, passed the limit)". A fresh connection that
        # reads promptly has fallen behind nothing, even when one snapshot is larger than
        # max_outbox_bytes: the socket takes it.
        cfg = doc_config(limits={"max_outbox_bytes": 65536})
        cfg["tenants"]["alice"]["models"]["notes"]["value"]["body"] = "x" * 100000
        d = self.start_daemon(cfg)

        async def run():
            c = await connect(d, "alice")
            try:
                hello, snaps = await c.open()
                self.assertEqual(len(snaps[("private", "notes")]["value"]["body"]), 100000)
            except Exception as e:
                self.fail("a prompt reader was refused its 100 KB snapshot with "
                          "max_outbox_bytes 65536: %r" % e)
            await close_all([c])
        self.run_async(run())

    def test_connections_per_tenant_503(self):
        d = self.start_daemon(doc_config(limits={"max_connections_per_tenant": 2}))

        async def run():
            a1, _, _ = await open_client(d, "alice")
            a2, _, _ = await open_client(d, "alice")
            try:
                with self.assertRaises(websockets.InvalidStatusCode) as cm:
                    await connect(d, "alice")
                self.assertEqual(cm.exception.status_code, 503)
                b, _, _ = await open_client(d, "bob")  # another tenant is fine
                await close_all([b])
                await a2.close()
                await a2.ws.wait_closed()
                # The slot comes back once the server has seen the close.
                deadline = asyncio.get_running_loop().time() + TIMEOUT
                while True:
                    try:
                        a3, _, _ = await open_client(d, "alice")
                        break
                    except websockets.InvalidStatusCode as e:
                        self.assertEqual(e.status_code, 503)
                        self.assertLess(asyncio.get_running_loop().time(), deadline)
                        await asyncio.sleep(0.05)
                await close_all([a3])
            finally:
                await close_all([a1, a2])
        self.run_async(run())

    def test_connections_per_tenant_under_a_connect_storm(self):
        d = self.start_daemon(doc_config(limits={"max_connections_per_tenant": 10}))

        async def one():
            try:
                c = await connect(d, "alice")
                await c.open()
                return c
            except websockets.InvalidStatusCode as e:
                return e.status_code

        async def run():
            got = await asyncio.gather(*(one() for _ in range(40)))
            clients = [c for c in got if isinstance(c, Client)]
            self.assertEqual(len(clients), 10, got)
            self.assertEqual(sorted(c for c in got if not isinstance(c, Client)), [503] * 30)
            await close_all(clients)
        self.run_async(run())

    def test_origin_not_allowed_403(self):
        d = self.start_daemon(doc_config(origins=["http://good.example"]))

        async def run():
            with self.assertRaises(websockets.InvalidStatusCode) as cm:
                await connect(d, "alice", origin="http://evil.example")
            self.assertEqual(cm.exception.status_code, 403)
            a, h, _ = await open_client(d, "alice", origin="http://good.example")
            self.assertEqual(h["tenant"], "alice")
            await close_all([a])
        self.run_async(run())


class Handshake(SharedDaemonTestCase):
    CONFIG = doc_config()

    def test_subprotocol_selected_when_offered(self):
        async def run():
            a = await connect(self.daemon, "alice")
            self.assertEqual(a.subprotocol, SUBPROTOCOL)
            hello, _ = await a.open()
            self.assertEqual(hello["tenant"], "alice")
            b = await connect(self.daemon, "alice", subprotocols=("chat.v2", SUBPROTOCOL))
            self.assertEqual(b.subprotocol, SUBPROTOCOL)
            await b.open()
            await close_all([a, b])
        self.run_async(run())

    def test_no_subprotocol_is_accepted(self):
        async def run():
            a = await connect(self.daemon, "alice", subprotocols=())
            self.assertIsNone(a.subprotocol)
            hello, snaps = await a.open()
            self.assertEqual(hello["protocol"], 1)
            self.assertIn(("private", "notes"), snaps)
            await close_all([a])
        self.run_async(run())

    def test_only_other_subprotocols_400(self):
        async def run():
            with self.assertRaises(websockets.InvalidStatusCode) as cm:
                await connect(self.daemon, "alice", subprotocols=("chat.v2",))
            self.assertEqual(cm.exception.status_code, 400)
        self.run_async(run())

    def test_no_route_404(self):
        async def run():
            for path in ("/nope/alice", "/ws", "/ws/alice/extra", "/"):
                with self.subTest(path=path):
                    with self.assertRaises(websockets.InvalidStatusCode) as cm:
                        await Client.connect(self.daemon.url(path))
                    self.assertEqual(cm.exception.status_code, 404)
        self.run_async(run())

    def test_bad_tenant_keys_are_refused_at_the_handshake(self):
        # PROTOCOL.md: refusals happen at the handshake (HTTP, before any upgrade), never
        # after it. A key the hub cannot take (over 256 bytes, not UTF-8, a NUL) must not
        # be upgraded and then dropped (1011 would tell the client to reconnect).
        for path in ("/ws/" + "a" * 300, "/ws/%ff"):
            with self.subTest(path=path[:20]):
                sock, status, _, rest = raw_handshake(self.daemon.port, path)
                sock.close()
                self.assertIn(status, (400, 403, 404), "status %s, then %r" % (status, rest))
        # A NUL in the request line: libwebsockets' HTTP parser gives up on the request and
        # closes the TCP connection without a response (docs/internals/server.md). Never
        # upgraded, nothing opened: the connection ends with no status at all.
        sock, status, _, rest = raw_handshake(self.daemon.port, "/ws/x%00y")
        sock.close()
        self.assertEqual((status, rest), (0, b""))
        self.assertNotIn("tenant=x", self.daemon.log())

    def test_not_a_websocket_handshake_400(self):
        sock, status, _, _ = raw_handshake(self.daemon.port, "/ws/alice",
                                           headers={"Sec-WebSocket-Key": None})
        sock.close()
        self.assertEqual(status, 400)

    def test_binary_frame_closes_1003(self):
        async def run():
            a, _, _ = await open_client(self.daemon, "alice")
            b, _, _ = await open_client(self.daemon, "alice")
            await a.ws.send(b'{"type":"ping","ref":1}')
            self.assertEqual(await a.wait_closed(), 1003)
            self.assertEqual(await b.barrier(), [])  # the others go on
            await close_all([b])
        self.run_async(run())

    def test_query_after_the_route_is_fine(self):
        async def run():
            a = await connect(self.daemon, "alice", query="x=1")
            hello, _ = await a.open()
            self.assertEqual(hello["tenant"], "alice")
            await close_all([a])
        self.run_async(run())


class Logs(DaemonTestCase):
    """One stderr line per event, with tenant and conn: connect, disconnect with its close
    code, refused handshake, refused write."""

    def test_events_are_logged(self):
        d = self.start_daemon(doc_config())

        async def run():
            a, h, _ = await open_client(d, "alice")
            conn = h["conn"]
            d.wait_log(r"connect tenant=alice conn=%s\b" % conn)
            await a.send(write(1, "shared", "roadmap", {"n": -1}))
            self.assertEqual((await a.recv())["code"], "invalid")
            d.wait_log(r"tenant=alice conn=%s ref=1 code=invalid" % conn)
            with self.assertRaises(websockets.InvalidStatusCode):
                await Client.connect(d.url("/zz/alice"))
            d.wait_log(r"refused status=404 path=/zz/alice")
            await a.ws.send(b"binary")
            self.assertEqual(await a.wait_closed(), 1003)
            d.wait_log(r"disconnect tenant=alice conn=%s code=1003" % conn)
            # A client cannot forge log lines: control characters are replaced.
            b, hb, _ = await open_client(d, "bob")
            await b.send({"type": "fly\n2026-01-01T00:00:00.000Z info forged", "ref": 9})
            self.assertEqual((await b.recv())["code"], "bad_request")
            d.wait_log(r"conn=%s ref=9 code=bad_request" % hb["conn"])
            self.assertNotRegex(d.log(), r"\ninfo forged|\n2026-01-01T00:00:00.000Z")
            await close_all([b])
        self.run_async(run())


class Shutdown(DaemonTestCase):

    def test_sigterm_closes_every_connection_with_1001(self):
        d = self.start_daemon(doc_config())

        async def run():
            clients = []
            for t in ("alice", "alice", "bob", "carol"):
                c, _, _ = await open_client(d, t)
                clients.append(c)
            await clients[0].send(write(1, "private", "notes", {"n": 3}))
            self.assertEqual((await clients[0].recv())["type"], "ack")
            d.send_signal(signal.SIGTERM)
            codes = [await c.wait_closed() for c in clients]
            self.assertEqual(codes, [1001] * len(clients))
        self.run_async(run())
        self.assertEqual(d.wait(), 0, d.log())
        d.check_log()

    def test_sigint_stops_gracefully_too(self):
        d = self.start_daemon(doc_config())

        async def run():
            a, _, _ = await open_client(d, "alice")
            d.send_signal(signal.SIGINT)
            self.assertEqual(await a.wait_closed(), 1001)
        self.run_async(run())
        self.assertEqual(d.wait(), 0, d.log())
        d.check_log()


if __name__ == "__main__":
    unittest.main()
