"""Issue 14's two start-up bugs: a refused config leaves no database behind (so the next
start, corrected, builds the config's state instead of restoring an empty store), and a
config that differs from the stored state says so in one warning line."""

import copy
import os
import unittest

from harness import Daemon, DaemonError, DaemonTestCase, doc_config, open_client


def stored_config():
    return doc_config(storage={"sqlite": "state.db"})


class ConfigState(DaemonTestCase):

    def test_refused_config_leaves_nothing_and_the_corrected_one_is_built(self):
        bad = stored_config()
        bad["tenants"]["alice"]["models"]["notes"]["value"] = {"title": 5}
        d = Daemon(config=bad)
        self.addCleanup(d.cleanup)
        with self.assertRaises(DaemonError):
            d.start()
        self.assertEqual(d.exit_code, 2)
        self.assertIn("tenants.alice.models.notes.value", d.log())
        for suffix in ("", "-wal", "-shm", "-journal", "-log", "-log-wal", "-log-shm"):
            self.assertFalse(os.path.exists(d.path("state.db" + suffix)), suffix)
        # corrected, in the same directory: the config's state is built and served
        d.config = stored_config()
        d.start()
        self.assertIn("new (the config's state is stored)", d.log())

        async def main():
            c, _, snaps = await open_client(d, "alice")
            self.assertEqual(snaps[("private", "notes")]["value"]["title"], "Alice notes")
            await c.close()
        self.run_async(main())
        d.stop()

    def test_refused_config_keeps_an_existing_database(self):
        d = self.start_daemon(stored_config())
        d.stop()
        bad = stored_config()
        bad["shared"]["roadmap"]["value"] = {"title": 7}
        d.config = bad
        with self.assertRaises(DaemonError):
            d.start()
        self.assertTrue(os.path.exists(d.path("state.db")))
        d.config = stored_config()
        d.start()

    def test_a_config_that_differs_says_so_once(self):
        d = self.start_daemon(stored_config())
        d.stop()
        self.assertNotIn("differs", d.log())
        changed = copy.deepcopy(stored_config())
        changed["tenants"]["carol"] = {"models": {"todo": {"schema": "Doc",
                                                           "value": {"title": "T"}}}}
        changed["shared"]["roadmap"]["subscribers"]["bob"] = "write"
        del changed["shared"]["board"]
        d.config = changed
        d.restart()
        lines = [l for l in d.log()[d.log_start:].splitlines() if "differs" in l]
        self.assertEqual(len(lines), 1, d.log())
        line = lines[0]
        self.assertIn(" warn ", line)
        for word in ("tenant carol", "subscription bob.roadmap", "shared board",
                     "stored state wins", "host API"):
            self.assertIn(word, line)
        # and the stored state is what is served
        async def main():
            c, _, snaps = await open_client(d, "bob")
            self.assertEqual(snaps[("shared", "roadmap")]["access"], "read")
            self.assertIn(("shared", "board"), snaps)
            await c.close()
        self.run_async(main())
        # unchanged config: no warning
        d.stop()
        d.config = stored_config()
        d.restart()
        self.assertNotIn("differs", d.log()[d.log_start:])


if __name__ == "__main__":
    unittest.main()
