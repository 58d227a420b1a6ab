"""The guide's scenario, served for real: `transportsd --demo` hosts alice's and bob's
private `notes` and shares `roadmap` (lww-map) with alice (write) and bob (read).

The guide's host-side change (`hub.set_shared(...)` published on sync) needs the host:
the daemon has no admin API yet, so it is not tested here (tests/cases/proto covers it
in the core)."""

import unittest

from harness import SharedDaemonTestCase, close_all, open_client


def write(ref, scope, id, patch):
    return {"type": "write", "scope": scope, "id": id, "ref": ref, "patch": patch}


class Guide(SharedDaemonTestCase):
    DEMO = True

    def test_1_hello_then_snapshots_then_synced(self):
        async def run():
            a, ha, sa = await open_client(self.daemon, "alice")
            b, hb, sb = await open_client(self.daemon, "bob")
            try:
                for h, tenant in ((ha, "alice"), (hb, "bob")):
                    self.assertEqual(set(h), {"type", "protocol", "tenant", "conn", "tick_ms",
                                              "max_message_bytes"})
                    self.assertEqual(h["protocol"], 1)
                    self.assertEqual(h["tenant"], tenant)
                    self.assertIsInstance(h["conn"], str)
                    self.assertTrue(h["conn"])
                    self.assertIsInstance(h["tick_ms"], int)
                    self.assertEqual(h["max_message_bytes"], 1048576)
                self.assertNotEqual(ha["conn"], hb["conn"])
                self.assertEqual(set(sa), {("private", "notes"), ("shared", "roadmap")})
                self.assertEqual(set(sb), {("private", "notes"), ("shared", "roadmap")})
                for s in list(sa.values()) + list(sb.values()):
                    self.assertEqual(set(s), {"type", "scope", "id", "schema", "rev", "access",
                                              "value"})
                    self.assertGreaterEqual(s["rev"], 1)
                self.assertEqual(sa[("private", "notes")]["value"]["title"], "Alice notes")
                self.assertEqual(sb[("private", "notes")]["value"]["title"], "Bob notes")
                self.assertEqual(sa[("private", "notes")]["access"], "write")
                self.assertEqual(sb[("private", "notes")]["access"], "write")
                self.assertEqual(sa[("shared", "roadmap")]["value"]["title"], "Roadmap")
                self.assertEqual(sa[("shared", "roadmap")]["access"], "write")
                self.assertEqual(sb[("shared", "roadmap")]["access"], "read")
                self.assertEqual(sa[("shared", "roadmap")]["value"],
                                 sb[("shared", "roadmap")]["value"])
                self.assertEqual(sa[("shared", "roadmap")]["schema"],
                                 sa[("private", "notes")]["schema"])
            finally:
                await close_all([a, b])
        self.run_async(run())

    def test_2_private_writes_stay_in_the_tenant(self):
        async def run():
            a1, h1, s1 = await open_client(self.daemon, "alice")
            a2, _, _ = await open_client(self.daemon, "alice")
            b, _, sb = await open_client(self.daemon, "bob")
            try:
                rev = s1[("private", "notes")]["rev"]
                await a1.send(write(1, "private", "notes", {"body": "alice's secret"}))
                self.assertEqual(await a1.recv(), {"type": "ack", "ref": 1, "scope": "private",
                                                   "id": "notes", "rev": rev + 1, "from": rev})
                self.assertEqual(await a2.recv(), {
                    "type": "patch", "scope": "private", "id": "notes", "from": rev,
                    "rev": rev + 1, "patch": {"body": "alice's secret"}, "origin": h1["conn"]})
                self.assertEqual(await b.barrier(), [], "bob learns nothing")
                self.assertEqual(await a1.barrier(), [], "the writer gets no patch")
                b2, _, sb2 = await open_client(self.daemon, "bob")
                self.assertEqual(sb2[("private", "notes")], sb[("private", "notes")])
                self.assertNotIn("alice's secret", str(sb2))
                await close_all([b2])
            finally:
                await close_all([a1, a2, b])
        self.run_async(run())

    def test_3_shared_write_reaches_both_tenants(self):
        async def run():
            a, ha, sa = await open_client(self.daemon, "alice")
            b, _, _ = await open_client(self.daemon, "bob")
            try:
                rev = sa[("shared", "roadmap")]["rev"]
                await a.send(write(1, "shared", "roadmap", {"body": "Q1: ship the C edition"}))
                patch = {"type": "patch", "scope": "shared", "id": "roadmap", "from": rev,
                         "rev": rev + 1, "patch": {"body": "Q1: ship the C edition"},
                         "origin": ha["conn"]}
                self.assertEqual(await a.recv_n(2), [patch, {
                    "type": "ack", "ref": 1, "scope": "shared", "id": "roadmap",
                    "rev": rev + 1}])
                self.assertEqual(await b.recv(), patch)
                self.assertEqual(await b.barrier(), [])
            finally:
                await close_all([a, b])
        self.run_async(run())

    def test_4_bob_cannot_write_the_roadmap(self):
        async def run():
            a, _, sa = await open_client(self.daemon, "alice")
            b, _, _ = await open_client(self.daemon, "bob")
            try:
                await b.send(write(1, "shared", "roadmap", {"body": "bob was here"}))
                e = await b.recv()
                self.assertEqual((e["type"], e["ref"], e["code"]), ("error", 1, "forbidden"))
                self.assertEqual(await a.barrier(), [])
                self.assertEqual(await b.barrier(), [])
                a2, _, sa2 = await open_client(self.daemon, "alice")
                self.assertEqual(sa2[("shared", "roadmap")], sa[("shared", "roadmap")])
                await close_all([a2])
            finally:
                await close_all([a, b])
        self.run_async(run())

    def test_5_bob_writes_his_own_notes(self):
        async def run():
            a, _, _ = await open_client(self.daemon, "alice")
            b, _, sb = await open_client(self.daemon, "bob")
            try:
                rev = sb[("private", "notes")]["rev"]
                await b.send(write(1, "private", "notes", {"body": "bob's own"}))
                self.assertEqual(await b.recv(), {"type": "ack", "ref": 1, "scope": "private",
                                                  "id": "notes", "rev": rev + 1, "from": rev})
                self.assertEqual(await a.barrier(), [])
            finally:
                await close_all([a, b])
        self.run_async(run())


if __name__ == "__main__":
    unittest.main()
