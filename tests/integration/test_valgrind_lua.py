"""Lua merges (issue 19) under valgrind memcheck: the counter example, a refusal, an
endless loop, a memory bomb, a runtime error, a bad return value and an escape attempt,
then SIGTERM; no memcheck error and no leak. Registered only in the plain build."""

import os
import shutil
import unittest

from harness import Daemon, DaemonTestCase, open_client, require_daemon
from test_lua_merges import EXAMPLES, example, probe_config
from test_valgrind import SLOW_TIMEOUT, VALGRIND


class ValgrindLua(DaemonTestCase):

    def test_lua_merges_under_memcheck(self):
        self.assertIsNotNone(shutil.which("valgrind"), "valgrind is required for this test")
        require_daemon(self)
        cfg = example("counter")
        probes = probe_config({
            "loop": "function merge(c, p, o) while true do end end",
            "bomb": "function merge(c, p, o) local t = {} "
                    "for i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end end",
            "runtime": "function merge(c, p, o)\n  return c.x.y\nend",
            "number": "function merge(c, p, o) return 42 end",
            "escape": "function merge(c, p, o) return object{title = tostring(io)} end",
        }, bomb={"max_ms": 60000})
        cfg["schemas"].update(probes["schemas"])
        cfg["merges"].update(probes["merges"])
        cfg["shared"].update(probes["shared"])
        d = Daemon(config=cfg, wrapper=VALGRIND, start_timeout=SLOW_TIMEOUT,
                   stop_timeout=SLOW_TIMEOUT)
        self.addCleanup(self._finish_daemon, d)
        shutil.copy(os.path.join(EXAMPLES, "counter.lua"), d.dir)
        d.start()
        T = SLOW_TIMEOUT

        async def run():
            a, _, _ = await open_client(d, "alice", timeout=T)
            b, _, _ = await open_client(d, "bob", timeout=T)
            for i in range(1, 6):
                await a.send({"type": "write", "scope": "shared", "id": "visits", "ref": i,
                              "patch": {"increment": 1}})
                await b.send({"type": "write", "scope": "shared", "id": "visits", "ref": i,
                              "patch": {"increment": 10}})
            for c in (a, b):
                for i in range(1, 6):
                    m, _ = await c.wait_for(lambda m, i=i: m.get("ref") == i, T)
                    self.assertEqual(m["type"], "ack", m)
            e = await outcome_t(a, 10, "visits", {"count": 1}, T)
            self.assertEqual(e["code"], "rejected")
            for ref, sid, code in ((11, "loop", "rejected"), (12, "bomb", "rejected"),
                                   (13, "runtime", "internal"), (14, "number", "internal"),
                                   (15, "escape", None)):
                e = await outcome_t(a, ref, sid, {"go": 1}, T)
                if code is None:
                    self.assertEqual(e["type"], "ack", e)
                else:
                    self.assertEqual((e["type"], e["code"]), ("error", code), e)
            c, _, snaps = await open_client(d, "carol", timeout=T)
            await c.close()
            a2, _, snaps = await open_client(d, "alice", timeout=T)
            self.assertEqual(snaps[("shared", "visits")]["value"], {"count": 55})
            self.assertEqual(snaps[("shared", "escape")]["value"], {"title": "nil"})
            for x in (a, b, a2):
                await x.close()
        self.run_async(run(), timeout=10 * T)


async def outcome_t(c, ref, sid, patch, timeout):
    await c.send({"type": "write", "scope": "shared", "id": sid, "ref": ref, "patch": patch})
    m, _ = await c.wait_for(lambda m: m.get("ref") == ref and m.get("type") in ("ack", "error"),
                            timeout)
    return m


if __name__ == "__main__":
    unittest.main()
