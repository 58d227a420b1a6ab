"""Issue 11, exactly-once records as a disk bomb, against the real daemon: one tenant
cycling client ids (a new id per connection, writes under each) keeps at most
`client_record_bytes` of client records and outcomes in its SQLite file; the newest
client's resend is still answered from memory after a restart; another tenant is
answered meanwhile, and loading the tenant after a restart is quick.

TP_LIMITS_STRESS=1 (make test-limits-stress) runs the issue's figures: 1024 client ids
(the client_records default) with 256 writes each, under the default 1 MiB."""

import asyncio
import os
import sqlite3
import time
import unittest

from harness import SLOW, DaemonTestCase, close_all, connect, doc_config, open_client

DB = "state.db"
STRESS = os.environ.get("TP_LIMITS_STRESS", "0") == "1"
CAP = 1024 * 1024 if STRESS else 64 * 1024
IDS, WRITES = (1024, 256) if STRESS else (80, 60)


def stored_client_bytes(path, tenant):
    """What the store keeps of a tenant's client records, counted as the hub counts it."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        # docs/api.md, client_record_bytes: 64 plus the id per record, 16 plus the
        # message per outcome (an outcome's body is its ref, a space, the message).
        outcomes = db.execute(
            "SELECT coalesce(sum(16 + length(body) - instr(body, ' ')), 0) FROM outcomes "
            "WHERE k1 = ?", (tenant,)).fetchone()[0]
        clients = db.execute("SELECT coalesce(sum(64 + length(k2)), 0) FROM clients "
                             "WHERE k1 = ?", (tenant,)).fetchone()[0]
        return outcomes + clients
    finally:
        db.close()


def write(ref, n):
    return {"type": "write", "scope": "private", "id": "notes", "ref": ref, "patch": {"n": n}}


class ClientRecordsBound(DaemonTestCase):

    async def ping_rtt(self, c):
        t = time.monotonic()
        await c.send({"type": "ping", "ref": 77})
        await c.wait_for(lambda m: m.get("type") == "pong")
        return time.monotonic() - t

    def test_cycling_client_ids_stays_within_the_bytes(self):
        cfg = doc_config({"client_record_bytes": CAP, "writes_per_second": 100000})
        cfg["storage"] = {"sqlite": DB, "synchronous": "off"}
        d = self.start_daemon(cfg)

        async def run():
            bob, _, _ = await open_client(d, "bob")
            worst = 0.0
            for k in range(IDS):
                c, _, _ = await open_client(d, "alice")
                await c.send({"type": "ping", "ref": 0, "client": "cycler-%d" % k})
                await c.recv()
                # The writes in one batch frame: about 100 bytes of outcome each.
                await c.send_text("[" + ",".join(
                    '{"type":"write","scope":"private","id":"notes","ref":%d,'
                    '"patch":{"n":%d}}' % (i, k * WRITES + i) for i in range(1, WRITES + 1)) + "]")
                acks = await c.recv_n(WRITES)
                self.assertTrue(all(a["type"] == "ack" for a in acks), acks[:2])
                await close_all([c])
                t = time.monotonic()
                await bob.barrier()
                worst = max(worst, time.monotonic() - t)
            await close_all([bob])
            self.assertLess(worst, 1.0 * SLOW, "bob waited %.3f s" % worst)
        self.run_async(run(), timeout=(600 if STRESS else 120) * SLOW)

        # 80 ids x 60 outcomes would be ~500 KB (1024 x 256: ~27 MB): the store keeps the
        # cap. Read once the daemon stopped: the tables then hold everything its log held.
        d.stop()
        self.assertFalse(os.path.exists(d.path(DB + "-log-wal")), "the log was folded and closed")
        log = sqlite3.connect("file:%s?mode=ro" % d.path(DB + "-log"), uri=True)
        try:
            self.assertEqual(log.execute("SELECT count(*) FROM log").fetchone()[0], 0)
        finally:
            log.close()
        stored = stored_client_bytes(d.path(DB), "alice")
        self.assertLessEqual(stored, CAP, "stored %d bytes" % stored)
        self.assertGreater(stored, CAP // 2)

        # After a restart, the newest client's last write is answered from memory.
        d.restart()

        async def again():
            bob, _, _ = await open_client(d, "bob")
            # Loading alice (her client records included) while bob waits for a pong.
            t = time.monotonic()
            opening = asyncio.ensure_future(open_client(d, "alice"))
            rtt = await self.ping_rtt(bob)
            c, _, snaps = await opening
            self.assertLess(time.monotonic() - t, 1.0 * SLOW)
            self.assertLess(rtt, 1.0 * SLOW, "bob waited %.3f s" % rtt)
            await close_all([bob])
            rev = snaps[("private", "notes")]["rev"]
            await c.send({"type": "ping", "ref": 0, "client": "cycler-%d" % (IDS - 1)})
            await c.recv()
            await c.send(write(WRITES, IDS * WRITES))
            ack = await c.recv()
            self.assertEqual((ack["type"], ack["rev"]), ("ack", rev), "not applied again")
            self.assertEqual(await c.barrier(), [])
            await close_all([c])
        self.run_async(again())


if __name__ == "__main__":
    unittest.main()
