"""Issue 16, one database, one daemon: a second transportsd on the SQLite database another
one serves refuses to start, at once, with a message naming the database and the pid of the
daemon that holds it, and exits non-zero before listening; the first goes on serving, its
acknowledged writes intact. The lock is the kernel's (flock on `<db>-lock`): when the holder
is killed with SIGKILL it is gone with the process, and a new daemon starts on the database
and finds every acknowledged write there.
"""

import os
import re
import shutil
import tempfile
import time
import unittest

from harness import (DOC_SCHEMA, SLOW, Daemon, DaemonError, DaemonTestCase, open_client)


def config(db):
    return {
        "autosync_ms": 50,
        "storage": {"sqlite": db},
        "schemas": {"Doc": DOC_SCHEMA},
        "tenants": {"alice": {"models": {"notes": {"schema": "Doc",
                                                   "value": {"title": "Alice notes"}}}}},
    }


async def write_n(d, n):
    """Writes notes.n = n as alice; returns the ack."""
    c, _, _ = await open_client(d, "alice")
    await c.send({"type": "write", "scope": "private", "id": "notes", "ref": n,
                  "patch": {"n": n}})
    ack, _ = await c.wait_type("ack")
    await c.close()
    return ack


async def read_notes(d):
    c, _, snaps = await open_client(d, "alice")
    await c.close()
    return snaps[("private", "notes")]


class OneDatabaseOneDaemon(DaemonTestCase):

    def database(self):
        """An absolute path: each daemon runs in a directory of its own."""
        d = tempfile.mkdtemp(prefix="tp-int-db-")
        self.addCleanup(shutil.rmtree, d, True)
        return os.path.join(d, "state.db")

    def second_daemon(self, db):
        """Starts another daemon on db in a directory of its own; returns it after it
        exited, with how long that took."""
        d2 = Daemon(config=config(db))
        self.addCleanup(d2.cleanup)
        t0 = time.monotonic()
        with self.assertRaises(DaemonError):
            d2.start()
        return d2, time.monotonic() - t0

    def test_second_daemon_refuses_first_keeps_serving(self):
        db = self.database()
        d1 = self.start_daemon(config(db))
        self.assertEqual(self.run_async(write_n(d1, 1))["rev"], 2)

        d2, took = self.second_daemon(db)
        self.assertNotEqual(d2.exit_code, 0)
        self.assertLess(took, 5.0 * SLOW, "the refusal is not fast: %.1f s" % took)
        log = d2.log()
        self.assertIn("database %s is in use by another transportsd (pid %d)"
                      % (db, d1.proc.pid), log)
        self.assertNotIn("listening", log)
        # The refused daemon touched nothing: the first goes on, and its state is whole.
        self.assertTrue(d1.running())
        self.assertEqual(self.run_async(write_n(d1, 2))["rev"], 3)
        notes = self.run_async(read_notes(d1))
        self.assertEqual((notes["rev"], notes["value"]["n"]), (3, 2))
        with open(db + "-lock", encoding="ascii") as f:
            self.assertEqual(int(f.read().split()[0]), d1.proc.pid)

        # Stopped: the next daemon starts on the database and finds everything.
        d1.stop()
        d3 = self.start_daemon(config(db))
        notes = self.run_async(read_notes(d3))
        self.assertEqual((notes["rev"], notes["value"]["n"]), (3, 2))

    def test_daemon_starts_after_the_holder_was_killed(self):
        db = self.database()
        d1 = self.start_daemon(config(db))
        self.assertEqual(self.run_async(write_n(d1, 7))["rev"], 2)
        d1.crash()  # SIGKILL: no cleanup runs; the kernel drops the lock
        self.assertTrue(os.path.exists(db + "-lock"))

        d2 = self.start_daemon(config(db))
        notes = self.run_async(read_notes(d2))
        self.assertEqual((notes["rev"], notes["value"]["n"]), (2, 7))
        # And it holds the database now: a third is refused, naming it.
        d3, _ = self.second_daemon(db)
        self.assertRegex(d3.log(), re.escape("database %s is in use by another transportsd "
                                             "(pid %d)" % (db, d2.proc.pid)))


if __name__ == "__main__":
    unittest.main()
