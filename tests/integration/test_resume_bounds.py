"""Issue 11, resume amplification, against the real daemon: a `resume` that lists the same
large model many times is answered with one snapshot (the daemon's memory and the bytes it
sends stay bounded, and another tenant's ping is answered meanwhile); a resume that lists
more models than the tenant can see (and 256 more) is refused with `bad_request`; a
resume on a live connection takes a write token.

TP_LIMITS_STRESS=1 (make test-limits-stress) repeats the attack on many connections
at once."""

import collections
import os
import time
import unittest

from harness import DaemonTestCase, SLOW, close_all, connect, doc_config, open_client

BIG = 900 * 1024
STRESS = os.environ.get("TP_LIMITS_STRESS", "0") == "1"


def rss_bytes(pid):
    with open("/proc/%d/status" % pid, encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def big_config(limits=None):
    cfg = doc_config(limits)
    cfg["tenants"]["alice"]["models"]["big"] = {
        "schema": "Doc", "value": {"title": "big", "body": "x" * BIG}}
    return cfg


def resume_listing(entries, ref=None):
    msg = {"type": "resume", "models": entries}
    if ref is not None:
        msg["ref"] = ref
    return msg


class ResumeBounds(DaemonTestCase):

    async def ping_rtt(self, c, ref):
        t = time.monotonic()
        await c.send({"type": "ping", "ref": ref})
        await c.wait_for(lambda m: m.get("type") == "pong" and m.get("ref") == ref)
        return time.monotonic() - t

    def test_a_model_listed_many_times_is_answered_once(self):
        d = self.start_daemon(big_config({"writes_per_second": 20}))
        pid = d.proc.pid

        async def run():
            bob, _, _ = await open_client(d, "bob")
            # alice sees notes, big, roadmap and board: 4 + 256 entries may be listed.
            entries = []
            for i in range(250):
                entries.append([{"scope": "private", "id": "big", "rev": 0},
                                {"scope": "shared", "id": "roadmap", "rev": 0},
                                {"scope": "private", "id": "gone", "rev": 3}][i % 3])
            conns = 8 if STRESS else 1
            before = rss_bytes(pid)
            rs = []
            for _ in range(conns):
                r = await connect(d, "alice", query="resume=1", max_size=None)
                r.keep_raw = True
                self.assertEqual((await r.recv())["type"], "hello")
                rs.append(r)
            try:
                for r in rs:
                    await r.send(resume_listing(entries, ref=1))
                # Another tenant is answered while the resumes are handled.
                rtt = await self.ping_rtt(bob, 1)
                for r in rs:
                    _, got = await r.wait_type("synced", timeout=30 * SLOW)
                    sent = sum(len(f.encode("utf-8")) for f in r.raw_frames)
                    types = [m["type"] for m in got]
                    self.assertEqual(types.count("snapshot"), 4,
                                     "big, roadmap, then notes and board: %r" % collections.Counter(types))
                    self.assertEqual(types.count("removed"), 1, types)
                    self.assertEqual(
                        sum(1 for m in got if m.get("id") == "big"), 1, "big once")
                    # One snapshot of big and a few small ones; before, 84 of big (75 MB).
                    self.assertLess(sent, BIG + 64 * 1024, "bytes sent: %d" % sent)
                grown = rss_bytes(pid) - before
                self.assertLess(grown, conns * 8 * BIG + 32 * 1024 * 1024,
                                "the daemon grew by %d bytes" % grown)
                self.assertLess(rtt, 1.0 * SLOW, "bob's ping took %.3f s" % rtt)
            finally:
                await close_all(rs + [bob])
        self.run_async(run(), timeout=120 * SLOW)

    def test_more_models_than_visible_is_refused(self):
        d = self.start_daemon(big_config({"writes_per_second": 20}))

        async def run():
            r = await connect(d, "alice", query="resume=1")
            self.assertEqual((await r.recv())["type"], "hello")
            entries = [{"scope": "private", "id": "x%d" % i, "rev": 1}
                       for i in range(4 + 256 + 1)]
            await r.send(resume_listing(entries, ref=9))
            err = await r.recv()
            self.assertEqual(err, {
                "type": "error", "ref": 9, "code": "bad_request",
                "message": "models: 261 entries, more than the 4 models this tenant can see "
                           "and 256 more"})
            # Then handled as an empty resume: every snapshot, synced, no removed.
            _, got = await r.wait_type("synced")
            self.assertEqual(sorted(m["type"] for m in got), ["snapshot"] * 4)
            # 4 + 256 entries are allowed: a removed for each (no x is visible).
            await r.send(resume_listing(entries[:-1], ref=10))
            got = await r.barrier()
            self.assertEqual(sum(1 for m in got if m["type"] == "removed"), 260)
            await close_all([r])
        self.run_async(run())

    def test_later_resumes_take_a_write_token(self):
        d = self.start_daemon(big_config({"writes_per_second": 20}))

        async def run():
            a, _, _ = await open_client(d, "alice")
            # Each asks for a snapshot: at most the bucket's 20 are answered.
            for i in range(60):
                await a.send(resume_listing([{"scope": "private", "id": "notes", "rev": 0}],
                                            ref=100 + i))
            got = await a.barrier(timeout=30 * SLOW)
            snaps = sum(1 for m in got if m["type"] == "snapshot")
            limited = [m for m in got if m["type"] == "error"]
            self.assertTrue(all(m["code"] == "rate_limited" for m in limited), limited[:3])
            self.assertEqual(snaps + len(limited), 60)
            self.assertLessEqual(snaps, 25, "the bucket holds 20 (and refills a little)")
            self.assertGreaterEqual(len(limited), 35)
            await close_all([a])
        self.run_async(run(), timeout=60 * SLOW)


if __name__ == "__main__":
    unittest.main()
