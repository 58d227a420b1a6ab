"""Issue 11: connection ids reveal nothing of how many connections the daemon had. Each
`hello` names its connection `c` and 16 hex digits, a keyed permutation of the count (the
key from getrandom, stored with the hub): no id repeats, across a restart too, and
consecutive connections get unrelated ids."""

import re
import unittest

from harness import DaemonTestCase, close_all, doc_config, open_client

ID = re.compile(r"^c[0-9a-f]{16}$")


class ConnIds(DaemonTestCase):

    def test_ids_are_opaque_and_never_reused(self):
        cfg = doc_config()
        cfg["storage"] = {"sqlite": "state.db", "synchronous": "off"}
        d = self.start_daemon(cfg)
        ids = []

        async def some(n):
            for _ in range(n):
                c, hello, _ = await open_client(d, "alice")
                ids.append(hello["conn"])
                await close_all([c])
        self.run_async(some(20))
        d.stop()
        d.restart()
        self.run_async(some(20))
        for i in ids:
            self.assertRegex(i, ID)
        self.assertEqual(len(set(ids)), len(ids), "an id used twice")
        nums = [int(i[1:], 16) for i in ids]
        # Not a counter: consecutive connections differ in about half their 64 bits.
        flips = [bin(a ^ b).count("1") for a, b in zip(nums, nums[1:])]
        self.assertGreater(sum(flips) / len(flips), 20, flips)
        self.assertFalse(any(b == a + 1 for a, b in zip(nums, nums[1:])), nums)

    def test_two_daemons_show_different_ids_for_the_same_count(self):
        # No store: each daemon draws its own key, so the first connection of each
        # (number 1 for both) gets a different id.
        first = []
        for _ in range(2):
            d = self.start_daemon(doc_config())

            async def one():
                c, hello, _ = await open_client(d, "alice")
                first.append(hello["conn"])
                await close_all([c])
            self.run_async(one())
            d.stop()
        self.assertRegex(first[0], ID)
        self.assertNotEqual(first[0], first[1])


if __name__ == "__main__":
    unittest.main()
