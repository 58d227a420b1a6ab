"""The history checker of history.py on hand-built histories (no daemon): for each anomaly
kind, a history that has it is reported, by the check meant for it and with the write or
rev at fault named, and the same history without the fault is not. The histories are
synthetic on purpose: these test the checker's logic; test_history_single_node.py runs it
on what a real daemon did."""

import os
import tempfile
import unittest

import history
from history import History, check_all, model_key

M = model_key("private", "p", "alice")
S = model_key("shared", "board")


class Builder:
    """A clean history on one node (n1) or several: alice's clients a1 and a2 write the
    private model M and the shared model S; every write sets its own mark `<wid>` and the
    field `last`; one write is refused, one is answered only after a reconnect."""

    def __init__(self, nodes=("n1",)):
        self.h = History()
        self.nodes = nodes
        self.m = {"title": "M"}
        self.s = {"title": "S"}

    def build(self, *, a1_3_acks=True, final_m=None, final_s=None, extra=None,
              skip_final=(), before_final=None):
        h = self.h
        h.initial(M, 1, dict(self.m))
        h.initial(S, 1, dict(self.s))
        h.connect("a1", "n1", "c1")
        h.snapshot("a1", "n1", "c1", M, 1, dict(self.m))
        h.snapshot("a1", "n1", "c1", S, 1, dict(self.s))
        h.connect("a2", "n1", "c2")
        h.snapshot("a2", "n1", "c2", M, 1, dict(self.m))
        h.snapshot("a2", "n1", "c2", S, 1, dict(self.s))
        # a1#1 on M: acked at rev 2 (with from), a2 sees the patch.
        p = {"a1#1": 1, "last": "a1#1"}
        h.invoke("a1", "n1", "c1", M, 1, p, {"a1#1": 1})
        h.ok("a1#1", 2, 1)
        h.patch("a2", "n1", "c2", M, 1, 2, p, "c1")
        self.m = history.merge_patch(self.m, p)
        # a2#1 on S: both see the patch, a2 gets the ack after it.
        p = {"a2#1": 1, "last": "a2#1"}
        h.invoke("a2", "n1", "c2", S, 1, p, {"a2#1": 1})
        h.patch("a1", "n1", "c1", S, 1, 2, p, "c2")
        h.patch("a2", "n1", "c2", S, 1, 2, p, "c2")
        h.ok("a2#1", 2)
        self.s = history.merge_patch(self.s, p)
        # a1#2 refused: never applied.
        h.invoke("a1", "n1", "c1", M, 2, {"a1#2": 1, "n": -1}, {"a1#2": 1})
        h.fail("a1#2", "invalid", "n: -1 is less than the minimum 0")
        # a1#3: the connection dies before the answer; resent on a resumed connection.
        p = {"a1#3": 1, "last": "a1#3"}
        h.invoke("a1", "n1", "c1", M, 3, p, {"a1#3": 1})
        h.info("a1#3", "connection closed")
        h.connect("a1", "n1", "c3", resume=True)
        if a1_3_acks:
            h.resend("a1#3", "n1", "c3")
            h.ok("a1#3", 3, 2)
            h.patch("a2", "n1", "c2", M, 2, 3, p, "c3")
            self.m = history.merge_patch(self.m, p)
        if extra:
            extra(h)
        if before_final:
            before_final(self)
        for node in self.nodes:
            if (node, M) not in skip_final:
                fm = final_m(node) if final_m else (3 if a1_3_acks else 2, self.m)
                h.final(node, M, fm[0], fm[1])
            if (node, S) not in skip_final:
                fs = final_s(node) if final_s else (2, self.s)
                h.final(node, S, fs[0], fs[1])
        return h


def kinds(anomalies):
    return sorted({a.kind for a in anomalies})


class Clean(unittest.TestCase):

    def test_a_clean_history_has_no_anomaly(self):
        h = Builder().build()
        self.assertEqual(check_all(h), [])
        s = history.summary(h)
        self.assertEqual((s["writes"], s["ok"], s["fail"], s["info"], s["resends"]),
                         (4, 3, 1, 0, 1))

    def test_three_nodes_that_agree_have_no_anomaly(self):
        self.assertEqual(check_all(Builder(nodes=("n1", "n2", "n3")).build()), [])

    def test_an_unknown_write_may_be_absent(self):
        # a1#3 never answered and absent: fine (the final rev accounts for what is there).
        h = Builder().build(a1_3_acks=False)
        self.assertEqual(check_all(h), [])
        self.assertEqual(h.writes()["a1#3"]["status"], "info")

    def test_an_unknown_write_may_be_present(self):
        # a1#3 applied but its answer lost for good: present, one rev for it, no anomaly.
        def applied(b):
            p = {"a1#3": 1, "last": "a1#3"}
            b.h.patch("a2", "n1", "c2", M, 2, 3, p, "c1")
            b.m = history.merge_patch(b.m, p)
        b = Builder()
        h = b.build(a1_3_acks=False, before_final=applied, final_m=lambda n: (3, b.m))
        self.assertEqual(check_all(h), [])

    def test_a_resend_answered_with_its_original_ack_is_no_duplicate(self):
        def again(h):
            h.resend("a1#3", "n1", "c3")
            h.ok("a1#3", 3, 2)
        self.assertEqual(check_all(Builder().build(extra=again)), [])

    def test_a_new_subscription_may_start_lower(self):
        # A fresh connection (no resume) is a new subscription: its snapshot is not
        # compared with the old one's revs (a one-node restart from a snapshot taken
        # earlier is caught by the other checks).
        def fresh(h):
            h.connect("a2", "n1", "c9", resume=False)
            h.snapshot("a2", "n1", "c9", M, 2, {"title": "M", "a1#1": 1, "last": "a1#1"})
        self.assertEqual(check_all(Builder().build(extra=fresh)), [])

    def test_dump_and_load_give_the_same_verdict(self):
        h = Builder().build(final_m=lambda n: (3, {"title": "M"}))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "h.jsonl")
            h.dump(path)
            again = History.load(path)
        self.assertEqual([str(a) for a in check_all(again)], [str(a) for a in check_all(h)])
        self.assertTrue(check_all(again))


class Lost(unittest.TestCase):

    def test_an_acked_write_missing_from_the_final_value(self):
        def drop(b):
            b.m = {k: v for k, v in b.m.items() if k != "a1#1"}
        h = Builder().build(before_final=drop)
        found = history.check_lost(h)
        self.assertEqual(kinds(found), ["lost"])
        self.assertIn("a1#1", str(found))
        self.assertIn("lacks", str(found))

    def test_an_acked_write_past_the_final_rev(self):
        # The final read went back to rev 2: a1#3's ack at rev 3 is lost.
        h = Builder().build(final_m=lambda n: (2, {"title": "M", "a1#1": 1, "last": "a1#1"}))
        found = history.check_lost(h)
        self.assertIn("lost", kinds(found))
        self.assertTrue(any("a1#3" in a.detail and "rev 2" in a.detail for a in found), found)

    def test_lost_on_one_node_only(self):
        def final_m(node):
            v = {"title": "M", "a1#1": 1, "last": "a1#3", "a1#3": 1}
            if node == "n2":
                v = {"title": "M", "a1#1": 1, "last": "a1#3"}
            return 3, v
        found = history.check_lost(Builder(nodes=("n1", "n2", "n3")).build(final_m=final_m))
        self.assertEqual([(a.kind, "node n2" in a.detail) for a in found], [("lost", True)])

    def test_a_refused_write_present(self):
        def sneak(b):
            b.m = dict(b.m, **{"a1#2": 1})
        found = history.check_lost(Builder().build(before_final=sneak))
        self.assertEqual(kinds(found), ["failed-applied"])
        self.assertIn("a1#2", str(found))
        self.assertIn("invalid", str(found))

    def test_a_refused_write_in_a_patch(self):
        def leak(h):
            h.patch("a2", "n1", "c2", M, 3, 4, {"a1#2": 1}, "c1")
        found = history.check_lost(Builder().build(extra=leak))
        self.assertIn("failed-applied", kinds(found))

    def test_an_ack_naming_another_write_s_rev(self):
        # a2 saw rev 2 carry someone else's change, though a1#1 was acked at rev 2.
        h = History()
        h.invoke("a1", "n1", "c1", M, 1, {"a1#1": 1}, {"a1#1": 1})
        h.patch("a2", "n1", "c2", M, 1, 2, {"zz": 1}, "c7")
        h.ok("a1#1", 2, 1)
        h.final("n1", M, 2, {"a1#1": 1, "zz": 1})
        found = history.check_lost(h)
        self.assertEqual(kinds(found), ["wrong-ack-rev"])

    def test_an_acked_write_of_a_model_never_read(self):
        found = history.check_lost(Builder().build(skip_final=(("n1", M),)))
        self.assertEqual(kinds(found), ["incomplete"])

    def test_a_refusal_after_an_unknown_attempt_is_definite_but_duplicate_is_not(self):
        h = History()
        h.invoke("a1", "n1", "c1", M, 1, {"x": 1}, {"x": 1})
        h.info("a1#1", "closed")
        h.resend("a1#1", "n1", "c2")
        h.fail("a1#1", "internal")
        h.invoke("a1", "n1", "c2", M, 2, {"y": 1}, {"y": 1})
        h.info("a1#2", "closed")
        h.resend("a1#2", "n1", "c3")
        h.fail("a1#2", "duplicate")
        h.invoke("a1", "n1", "c3", M, 3, {"z": 1}, {"z": 1})
        h.fail("a1#3", "rate_limited")
        h.resend("a1#3", "n1", "c3")   # never answered
        ws = h.writes()
        self.assertEqual([ws[w]["status"] for w in ("a1#1", "a1#2", "a1#3")],
                         ["fail", "info", "info"])
        h.final("n1", M, 3, {"x": 1, "y": 1, "z": 1})
        found = history.check_lost(h)
        self.assertEqual([(a.kind, a.detail.split()[1]) for a in found],
                         [("failed-applied", "a1#1")])


class Duplicates(unittest.TestCase):

    def test_a_resend_applied_again(self):
        # The resend of a1#3 got a new ack at rev 4 instead of its original rev 3.
        def again(h):
            h.resend("a1#3", "n1", "c3")
            h.ok("a1#3", 4, 3)
        found = history.check_duplicates(Builder().build(extra=again))
        self.assertIn("duplicate", kinds(found))
        self.assertTrue(any("a1#3" in a.detail and "[3, 4]" in a.detail for a in found),
                        found)

    def test_a_write_s_mark_set_at_two_revs(self):
        def twice(b):
            p = {"a1#1": 1, "last": "a1#1"}
            b.h.patch("a2", "n1", "c2", M, 3, 4, p, "c3")
            b.m = history.merge_patch(b.m, p)
        b = Builder()
        h = b.build(before_final=twice, final_m=lambda n: (4, b.m))
        found = history.check_duplicates(h)
        self.assertEqual(kinds(found), ["duplicate"])
        details = " ".join(a.detail for a in found)
        self.assertIn("revs [2, 4]", details)
        self.assertIn("a1#1", details)

    def test_a_resend_applied_again_whose_first_ack_was_lost(self):
        # a1#1's first ack was lost with the connection; its resend was applied again: the
        # marks were already there, so the new patch only moves `last`, at rev 4, and the
        # resend's ack names rev 4 instead of rev 2.
        def again(b):
            b.h.resend("a1#1", "n1", "c3")
            b.h.patch("a2", "n1", "c2", M, 3, 4, {"last": "a1#1"}, "c3")
            b.h.ok("a1#1", 4, 3)
            b.m = history.merge_patch(b.m, {"last": "a1#1"})
        b = Builder()
        h = b.build(before_final=again, final_m=lambda n: (4, b.m))
        found = history.check_duplicates(h)
        self.assertIn("duplicate", kinds(found))
        self.assertTrue(any("set by the patch of rev 2, but its ack names rev 4" in a.detail
                            for a in found), found)

    def test_rev_accounting_shows_an_invisible_second_application(self):
        # Nobody saw rev 4's patch, but the model went one rev further than its writes.
        b = Builder()
        h = b.build(final_m=lambda n: (4, b.m))
        found = history.check_duplicates(h)
        self.assertEqual(kinds(found), ["duplicate"])
        self.assertIn("rev 4, 3 past the initial rev 1, but holds 2 writes", found[0].detail)


class Revs(unittest.TestCase):

    def test_a_repeated_rev_on_one_subscription(self):
        def repeat(h):
            h.patch("a2", "n1", "c2", M, 1, 2, {"a1#1": 1, "last": "a1#1"}, "c1")
        found = history.check_revs(Builder().build(extra=repeat))
        self.assertEqual(kinds(found), ["rev-back"])
        self.assertIn("client a2", found[0].detail)

    def test_a_resume_answered_with_an_older_snapshot(self):
        # a1 resumed holding rev 3 of M and was sent a snapshot at rev 2.
        def older(h):
            h.connect("a1", "n2", "c8", resume=True)
            h.snapshot("a1", "n2", "c8", M, 2, {"title": "M", "a1#1": 1, "last": "a1#1"})
        found = history.check_revs(Builder().build(extra=older))
        self.assertEqual(kinds(found), ["rev-back"])
        self.assertIn("snapshot at rev 2 after holding rev 3", found[0].detail)
        self.assertIn("on n2", found[0].detail)

    def test_patches_a_resumed_client_holds_are_not_rev_back(self):
        # protocol.md: a resume's answer may repeat patches the client holds (a cluster node
        # behind the client's rev catches up); only a fresh, non-resumed stream may not.
        def repeat_after_resume(h):
            h.connect("a2", "n2", "c9", resume=True)
            h.patch("a2", "n2", "c9", M, 1, 2, {"a1#1": 1, "last": "a1#1"}, "c1")
        found = history.check_revs(Builder().build(extra=repeat_after_resume))
        self.assertEqual(kinds(found), [])

    def test_a_gap_on_a_live_stream(self):
        def gap(h):
            h.patch("a2", "n1", "c2", S, 3, 4, {"zz": 2}, "c5")
        found = history.check_revs(Builder().build(extra=gap))
        self.assertEqual(kinds(found), ["gap"])
        self.assertIn("from rev 3 while holding rev 2", found[0].detail)

    def test_an_ack_ahead_of_the_stream(self):
        def ahead(h):
            h.invoke("a2", "n1", "c2", S, 2, {"a2#2": 1}, {"a2#2": 1})
            h.ok("a2#2", 5)
        found = history.check_revs(Builder().build(extra=ahead))
        self.assertEqual(kinds(found), ["gap"])

    def test_one_rev_published_as_two_changes(self):
        # After a crash a node reused rev 3 of M for another write: a2 saw one, a3 the
        # other (each stream is continuous on its own).
        def reuse(h):
            h.connect("a3", "n1", "c6")
            h.snapshot("a3", "n1", "c6", M, 2, {"title": "M", "a1#1": 1, "last": "a1#1"})
            h.patch("a3", "n1", "c6", M, 2, 3, {"b#9": 1, "last": "b#9"}, "c4")
        found = history.check_revs(Builder().build(extra=reuse))
        self.assertEqual(kinds(found), ["rev-reuse"])
        self.assertIn("rev 3 was published as 2 different changes", found[0].detail)


class Divergence(unittest.TestCase):

    def test_nodes_that_disagree(self):
        def final_s(node):
            v = {"title": "S", "a2#1": 1, "last": "a2#1"}
            return (2, v) if node != "n3" else (2, dict(v, last="other"))
        found = history.check_divergence(Builder(nodes=("n1", "n2", "n3")).build(
            final_s=final_s))
        self.assertIn("divergence", kinds(found))
        self.assertTrue(any("node n3" in a.detail for a in found), found)

    def test_a_node_at_another_rev(self):
        def final_s(node):
            v = {"title": "S", "a2#1": 1, "last": "a2#1"}
            return (2, v) if node == "n1" else (1, {"title": "S"})
        found = history.check_divergence(Builder(nodes=("n1", "n2")).build(final_s=final_s))
        self.assertIn("divergence", kinds(found))

    def test_a_node_that_does_not_have_a_model(self):
        found = history.check_divergence(
            Builder(nodes=("n1", "n2")).build(skip_final=(("n2", S),)))
        self.assertEqual(kinds(found), ["divergence"])
        self.assertIn("no final read from node(s) n2", found[0].detail)

    def test_two_replicas_at_one_rev_that_differ(self):
        # a2 was sent a different patch content for the same change (from, rev) than a1's
        # own patch: their replicas at rev 2 differ (the final read agrees with a1).
        h = History()
        h.connect("a1", "n1", "c1")
        h.snapshot("a1", "n1", "c1", M, 1, {})
        h.connect("a2", "n1", "c2")
        h.snapshot("a2", "n1", "c2", M, 1, {})
        h.invoke("a1", "n1", "c1", M, 1, {"x": 1}, {"x": 1})
        h.ok("a1#1", 2, 1)
        h.patch("a2", "n1", "c2", M, 1, 2, {"x": 2}, "c1")
        h.final("n1", M, 2, {"x": 1})
        found = history.check_divergence(h)
        self.assertEqual(kinds(found), ["divergence"])
        self.assertIn("at rev 2", found[0].detail)
        # check_lost sees it too: the patch at a1#1's ack rev does not carry a1#1's mark.
        self.assertEqual(kinds(history.check_lost(h)), ["wrong-ack-rev"])


    def test_a_replica_holding_true_where_the_node_holds_1(self):
        # Python's 1 == True: the checker compares JSON, where they differ.
        h = History()
        h.connect("a2", "n1", "c2")
        h.snapshot("a2", "n1", "c2", M, 1, {})
        h.patch("a2", "n1", "c2", M, 1, 2, {"x": True}, "c1")
        h.final("n1", M, 2, {"x": 1})
        found = history.check_divergence(h)
        self.assertEqual(kinds(found), ["divergence"])
        self.assertIn("x: true vs 1", found[0].detail)


class DistinctAckRevs(unittest.TestCase):

    def test_two_writes_acked_at_one_rev(self):
        def shared_rev(h):
            h.invoke("a2", "n1", "c2", M, 2, {"a2#2": 1}, {"a2#2": 1})
            h.ok("a2#2", 3, 2)
        found = history.check_distinct_ack_revs(Builder().build(extra=shared_rev))
        self.assertEqual(kinds(found), ["ack-rev-shared"])
        self.assertIn("a1#3, a2#2", found[0].detail)

    def test_writes_on_different_models_may_share_a_rev(self):
        # a1#1 (M) and a2#1 (S) are both at rev 2 in the clean history.
        self.assertEqual(history.check_distinct_ack_revs(Builder().build()), [])


if __name__ == "__main__":
    unittest.main()
