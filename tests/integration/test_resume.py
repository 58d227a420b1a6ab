"""Resume after a dropped connection: a connection loses its TCP connection (no close
handshake) while others write; it reconnects with ?resume=1, names its held revs and its
client id, gets the missed patches (not snapshots) and `synced`, and a resent unacked
write gets its original outcome without being applied twice."""

import unittest

from harness import (DaemonTestCase, close_all, connect, doc_config, merge_patch,
                     open_client)


def write(ref, scope, id, patch):
    return {"type": "write", "scope": scope, "id": id, "ref": ref, "patch": patch}


class Resume(DaemonTestCase):

    def test_dropped_connection_resumes_with_missed_patches_and_resent_write(self):
        d = self.start_daemon(doc_config())

        async def run():
            a1, h1, s1 = await open_client(d, "alice")
            a2, h2, _ = await open_client(d, "alice")
            b, hb, _ = await open_client(d, "bob")
            held = {k: {"value": s["value"], "rev": s["rev"]} for k, s in s1.items()}
            try:
                await a1.send({"type": "ping", "ref": 0, "client": "resume-phone-1"})
                self.assertEqual(await a1.recv(), {"type": "pong", "ref": 0})
                # a1's write 1 is acked and seen; write 2 is applied but a1 drops before
                # reading its ack.
                await a1.send(write(1, "private", "notes", {"n": 1}))
                ack1 = await a1.recv()
                self.assertEqual(ack1["type"], "ack")
                held[("private", "notes")] = {
                    "value": merge_patch(held[("private", "notes")]["value"], {"n": 1}),
                    "rev": ack1["rev"]}
                self.assertEqual((await a2.recv())["rev"], ack1["rev"])
                await a1.send(write(2, "private", "notes", {"body": "unacked"}))
                seen = await a2.recv()   # the write is applied: a2 got its patch
                self.assertEqual(seen["patch"], {"body": "unacked"})
                self.assertEqual(seen["origin"], h1["conn"])
                a1.abort()

                # Others write while a1 is away.
                await a2.send(write(1, "private", "notes", {"n": 2}))
                ack_a2 = await a2.recv()
                self.assertEqual(ack_a2["from"], seen["rev"])
                await a2.send(write(2, "shared", "roadmap", {"body": "Q2"}))
                p1, ack_r = await a2.recv_n(2)
                self.assertEqual((p1["type"], ack_r["type"]), ("patch", "ack"))
                await a2.send(write(3, "shared", "board", {"body": "from a2"}))
                p2, _ = await a2.recv_n(2)
                await b.send(write(1, "shared", "board", {"n": 7}))
                _, before = await b.wait_type("ack")
                p3 = before[-1]
                self.assertEqual((p3["type"], p3["origin"]), ("patch", hb["conn"]))
                self.assertEqual(len(await a2.barrier()), 1)  # bob's board patch

                # Reconnect with resume=1: hello, then (after resume) only what was missed.
                r = await connect(d, "alice", query="resume=1")
                hello = await r.recv()
                self.assertEqual(hello["type"], "hello")
                self.assertEqual(hello["tenant"], "alice")
                self.assertNotEqual(hello["conn"], h1["conn"])
                await r.send({"type": "resume", "client": "resume-phone-1", "models": [
                    {"scope": s, "id": i, "rev": held[(s, i)]["rev"]}
                    for (s, i) in [("private", "notes"), ("shared", "roadmap"),
                                   ("shared", "board")]]})
                _, got = await r.wait_type("synced")
                # Only patches: no snapshot, neither before the resume nor in its answer.
                self.assertEqual([m["type"] for m in got], ["patch"] * 5,
                                 "missed patches, no snapshot: %r" % got)
                # Per model, oldest first and continuous from the held rev.
                for key in held:
                    for m in got:
                        if (m["scope"], m["id"]) == key:
                            self.assertEqual(m["from"], held[key]["rev"], m)
                            held[key]["value"] = merge_patch(held[key]["value"], m["patch"])
                            held[key]["rev"] = m["rev"]
                notes = [m for m in got if m["id"] == "notes"]
                self.assertEqual(notes[0]["patch"], {"body": "unacked"})
                self.assertEqual(notes[0]["origin"], h1["conn"])
                self.assertIn(p1, got)
                self.assertIn(p2, got)
                self.assertIn(p3, got)

                # The unacked write, resent with the same ref: its original ack, once.
                await r.send(write(2, "private", "notes", {"body": "unacked"}))
                ack2 = await r.recv()
                self.assertEqual(ack2, {"type": "ack", "ref": 2, "scope": "private",
                                        "id": "notes", "rev": seen["rev"],
                                        "from": seen["from"]})
                await r.send(write(1, "private", "notes", {"n": 1}))
                self.assertEqual(await r.recv(), ack1)
                self.assertEqual(await r.barrier(), [])
                self.assertEqual(await a2.barrier(), [], "the resend published nothing")
                self.assertEqual(await b.barrier(), [])

                # The replica built by resuming equals what a fresh connection gets.
                f, _, sf = await open_client(d, "alice")
                self.assertEqual({k: {"value": s["value"], "rev": s["rev"]}
                                  for k, s in sf.items()}, held)
                self.assertEqual(sf[("private", "notes")]["value"]["n"], 2)
                await close_all([f, r])
            finally:
                await close_all([a2, b])
        self.run_async(run())

    def test_unacked_shared_write_resent_after_a_drop(self):
        d = self.start_daemon(doc_config())

        async def run():
            a, ha, sa = await open_client(d, "alice")
            b, _, _ = await open_client(d, "bob")
            await a.send({"type": "ping", "ref": 0, "client": "resume-tab-2"})
            self.assertEqual(await a.recv(), {"type": "pong", "ref": 0})
            rev = sa[("shared", "board")]["rev"]
            await a.send(write(10, "shared", "board", {"body": "once"}))
            seen = await b.recv()   # applied: bob got the patch
            self.assertEqual((seen["type"], seen["origin"], seen["rev"]),
                             ("patch", ha["conn"], rev + 1))
            a.abort()
            r = await connect(d, "alice", query="resume=1")
            self.assertEqual((await r.recv())["type"], "hello")
            await r.send({"type": "resume", "client": "resume-tab-2", "models": [
                {"scope": k[0], "id": k[1], "rev": v["rev"]} for k, v in sa.items()]})
            _, got = await r.wait_type("synced")
            self.assertEqual(got, [seen])
            await r.send(write(10, "shared", "board", {"body": "once"}))
            self.assertEqual(await r.recv(), {"type": "ack", "ref": 10, "scope": "shared",
                                              "id": "board", "rev": rev + 1})
            self.assertEqual(await r.barrier(), [])
            self.assertEqual(await b.barrier(), [], "applied once")
            # The next ref is new.
            await r.send(write(11, "shared", "board", {"body": "twice"}))
            p, ack = await r.recv_n(2)
            self.assertEqual((p["from"], p["rev"], ack["rev"]), (rev + 1, rev + 2, rev + 2))
            await close_all([r, b])
        self.run_async(run())

    def test_snapshot_when_the_history_is_gone(self):
        d = self.start_daemon(doc_config())

        async def run():
            a, _, sa = await open_client(d, "alice")
            w, _, _ = await open_client(d, "alice")
            held = sa[("private", "notes")]["rev"]
            a.abort()
            # 300 patches: more than the 256 kept per model for resume.
            await w.send([write(i, "private", "notes", {"n": i}) for i in range(1, 301)])
            acks = await w.recv_n(300)
            self.assertEqual(acks[-1]["rev"], held + 300)
            r = await connect(d, "alice", query="resume=1")
            self.assertEqual((await r.recv())["type"], "hello")
            await r.send({"type": "resume", "models": [
                {"scope": k[0], "id": k[1], "rev": v["rev"]} for k, v in sa.items()]})
            _, got = await r.wait_type("synced")
            self.assertEqual(len(got), 1, got)
            self.assertEqual((got[0]["type"], got[0]["id"], got[0]["rev"]),
                             ("snapshot", "notes", held + 300))
            self.assertEqual(got[0]["value"]["n"], 300)
            await close_all([r, w])
        self.run_async(run())

    def test_resume_answers_revs_it_cannot_continue(self):
        # A rev the model never had (ahead, or 0) gets a snapshot; a model that is not
        # there (or not visible) gets `removed`.
        d = self.start_daemon(doc_config())

        async def run():
            for listed, answer in (
                    ({"scope": "private", "id": "notes", "rev": 999}, "snapshot"),
                    ({"scope": "private", "id": "notes", "rev": 0}, "snapshot"),
                    ({"scope": "shared", "id": "roadmap", "rev": 5}, "snapshot"),
                    ({"scope": "private", "id": "ghost", "rev": 3}, "removed"),
                    ({"scope": "shared", "id": "notes", "rev": 1}, "removed")):
                r = await connect(d, "alice", query="resume=1")
                self.assertEqual((await r.recv())["type"], "hello")
                await r.send({"type": "resume", "models": [listed]})
                _, got = await r.wait_type("synced")
                mine = [m for m in got if (m["scope"], m["id"]) == (listed["scope"],
                                                                    listed["id"])]
                self.assertEqual([m["type"] for m in mine], [answer], (listed, got))
                if answer == "snapshot":
                    self.assertEqual(mine[0]["rev"], 1)
                else:
                    self.assertEqual(mine[0], {"type": "removed", "scope": listed["scope"],
                                               "id": listed["id"]})
                # The visible models not listed come as snapshots.
                others = {(m["scope"], m["id"]) for m in got if m not in mine}
                self.assertEqual(others, {("private", "notes"), ("shared", "roadmap"),
                                          ("shared", "board")} - {(listed["scope"],
                                                                   listed["id"])})
                await close_all([r])
        self.run_async(run())

    def test_resume_snapshots_unlisted_models(self):
        d = self.start_daemon(doc_config())

        async def run():
            a, _, s = await open_client(d, "alice")
            await a.send(write(1, "shared", "roadmap", {"n": 3}))
            await a.recv_n(2)
            r = await connect(d, "alice", query="resume=1")
            self.assertEqual((await r.recv())["type"], "hello")
            await r.send({"type": "resume", "models": [
                {"scope": "private", "id": "notes", "rev": s[("private", "notes")]["rev"]}]})
            _, got = await r.wait_type("synced")
            self.assertEqual(sorted((m["type"], m["id"]) for m in got),
                             [("snapshot", "board"), ("snapshot", "roadmap")], got)
            road = [m for m in got if m["id"] == "roadmap"][0]
            self.assertEqual(road["value"]["n"], 3)
            await close_all([a, r])
        self.run_async(run())

    def test_first_message_not_resume_counts_as_empty_resume(self):
        d = self.start_daemon(doc_config())

        async def run():
            r = await connect(d, "alice", query="resume=1")
            self.assertEqual((await r.recv())["type"], "hello")
            await r.send({"type": "ping", "ref": 5})
            _, got = await r.wait_type("pong")
            self.assertEqual([m["type"] for m in got], ["snapshot"] * 3 + ["synced"], got)
            await close_all([r])
        self.run_async(run())


if __name__ == "__main__":
    unittest.main()
