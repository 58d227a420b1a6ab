"""Issue 19: merge strategies in Lua ("merges" in the config), over the real daemon.

The three examples of examples/lua/ over the wire (a counter whose concurrent increments
add up, an append-only list, a field only the host may change), values as Lua sees them
and back, every sandbox escape attempt, state smuggled between calls, an endless loop,
a memory bomb, a time bomb, runtime errors and wrong return values, determinism across
two daemons, the host API sharing by a Lua strategy's name, and the config's refusals.
"""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import (TIMEOUT, Daemon, DaemonError, DaemonTestCase, TRANSPORTSD, open_client,
                     require_daemon, sanitizer_env)
from test_host_api import Api

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples", "lua")
TOKEN = "t0ken-for-the-lua-merge-tests-0123456789"

# A schema that takes anything: what a probe returns reaches the client as it is.
ANY = {"title": "Any", "type": "object", "properties": {"title": {"type": "string"}}}


def write(ref, sid, patch):
    return {"type": "write", "scope": "shared", "id": sid, "ref": ref, "patch": patch}


def example(name):
    with open(os.path.join(EXAMPLES, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def start_example(tc, name, env=None):
    """An example's config as shipped, its script beside it in the daemon's directory."""
    require_daemon(tc)
    d = Daemon(config=example(name), env=env)
    tc.addCleanup(tc._finish_daemon, d)
    shutil.copy(os.path.join(EXAMPLES, name + ".lua"), d.dir)
    d.start()
    return d


async def outcome(c, ref, sid, patch):
    """Sends a write and returns its ack or error."""
    await c.send(write(ref, sid, patch))
    m, _ = await c.wait_for(lambda m: m.get("ref") == ref and m.get("type") in ("ack", "error"))
    return m


async def value_of(d, sid, tenant="alice"):
    c, _, snaps = await open_client(d, tenant)
    await c.close()
    return snaps[("shared", sid)]["value"]


class Counter(DaemonTestCase):

    def test_concurrent_increments_add_up(self):
        d = start_example(self, "counter")

        async def main():
            a, _, _ = await open_client(d, "alice")
            b, _, _ = await open_client(d, "bob")
            # Both send without waiting: with lww the last "count" would win; here
            # every increment counts.
            for i in range(1, 31):
                await a.send(write(i, "visits", {"increment": 2}))
                await b.send(write(i, "visits", {"increment": 3}))
            for c in (a, b):
                for i in range(1, 31):
                    m, _ = await c.wait_for(lambda m, i=i: m.get("ref") == i)
                    self.assertEqual(m["type"], "ack", m)
            self.assertEqual(await value_of(d, "visits"), {"count": 150})
            e = await outcome(a, 100, "visits", {"count": 7})
            self.assertEqual((e["type"], e["code"]), ("error", "rejected"))
            self.assertEqual(e["message"], "count: only increment may be sent")
            e = await outcome(a, 101, "visits", {"increment": 1.5})
            self.assertEqual((e["code"], e["message"]),
                             ("rejected", "increment: expected an integer"))
            self.assertEqual(await value_of(d, "visits", "bob"), {"count": 150})
            await a.close()
            await b.close()
        self.run_async(main())


class AppendOnly(DaemonTestCase):

    def test_appends_from_two_writers_all_kept_in_order(self):
        d = start_example(self, "append_only")

        async def main():
            a, _, _ = await open_client(d, "alice")
            b, _, _ = await open_client(d, "bob")
            for i in range(1, 11):
                await a.send(write(i, "journal", {"append": ["a%d" % i]}))
                await b.send(write(i, "journal", {"append": ["b%d" % i, "b%d+" % i]}))
            for c in (a, b):
                for i in range(1, 11):
                    m, _ = await c.wait_for(lambda m, i=i: m.get("ref") == i)
                    self.assertEqual(m["type"], "ack", m)
            entries = (await value_of(d, "journal"))["entries"]
            self.assertEqual(len(entries), 30)
            self.assertEqual([e for e in entries if e.startswith("a")],
                             ["a%d" % i for i in range(1, 11)])
            self.assertEqual([e for e in entries if e.startswith("b")],
                             [x for i in range(1, 11) for x in ("b%d" % i, "b%d+" % i)])
            # No rewrite, no removal.
            e = await outcome(a, 50, "journal", {"entries": []})
            self.assertEqual(e["code"], "rejected")
            self.assertIn("append-only", e["message"])
            e = await outcome(a, 51, "journal", {"append": "x"})
            self.assertEqual((e["code"], e["message"]),
                             ("rejected", "append: expected an array of entries"))
            # The result goes through the schema: an entry over maxLength is invalid.
            e = await outcome(a, 52, "journal", {"append": ["x" * 201]})
            self.assertEqual(e["code"], "invalid", e)
            self.assertIn("entries[30]", e["message"])
            self.assertEqual(len((await value_of(d, "journal"))["entries"]), 30)
            await a.close()
            await b.close()
        self.run_async(main())


class HostField(DaemonTestCase):

    def test_only_the_host_changes_status(self):
        d = start_example(self, "host_field", env=dict(os.environ, TRANSPORTS_ADMIN_TOKEN=TOKEN))
        api = Api(d.port, token=TOKEN)
        self.addCleanup(api.close)

        async def main():
            a, _, snaps = await open_client(d, "alice")
            self.assertEqual(snaps[("shared", "ticket")]["value"],
                             {"title": "Printer on fire", "body": "", "status": "open"})
            e = await outcome(a, 1, "ticket", {"status": "closed"})
            self.assertEqual((e["code"], e["message"]),
                             ("rejected", "status: only the host may change it (tenant alice)"))
            self.assertEqual((await outcome(a, 2, "ticket", {"body": "smoke"}))["type"], "ack")
            st, _, got = api.call("PATCH", "/v1/shared/ticket?sync=1", {"status": "approved"})
            self.assertEqual(st, 200, got)
            self.assertEqual(got["value"]["status"], "approved")
            m, _ = await a.wait_for(lambda m: m.get("type") == "patch" and
                                    m.get("origin") == "host")
            self.assertEqual(m["patch"], {"status": "approved"})
            # The host too goes through the schema.
            st, _, got = api.call("PATCH", "/v1/shared/ticket?sync=1", {"status": "bogus"})
            self.assertEqual(st, 422, got)
            self.assertEqual(await value_of(d, "ticket"),
                             {"title": "Printer on fire", "body": "smoke", "status": "approved"})
            await a.close()
        self.run_async(main())

    def test_host_api_shares_a_model_by_the_strategy_name(self):
        d = start_example(self, "host_field", env=dict(os.environ, TRANSPORTS_ADMIN_TOKEN=TOKEN))
        api = Api(d.port, token=TOKEN)
        self.addCleanup(api.close)
        st, _, got = api.call("PUT", "/v1/shared/t2", {"schema": "Ticket", "merge": "host-status",
                                                       "value": {"title": "Second"}})
        self.assertEqual(st, 201, got)
        st, _, got = api.call("GET", "/v1/shared/t2")
        self.assertEqual(got["merge"], "host-status")
        st, _, got = api.call("PUT", "/v1/shared/t3", {"schema": "Ticket", "merge": "nope"})
        self.assertEqual(st, 422, got)
        self.assertIn("merge: no merge strategy \"nope\"", got["error"]["message"])
        self.assertEqual(api.call("PUT", "/v1/shared/t2/subscribers/carol",
                                  {"access": "write"})[0], 200)

        async def main():
            c, _, _ = await open_client(d, "carol")
            e = await outcome(c, 1, "t2", {"status": "closed"})
            self.assertEqual(e["code"], "rejected")
            self.assertEqual((await outcome(c, 2, "t2", {"body": "ok"}))["type"], "ack")
            await c.close()
        self.run_async(main())


# ---- probes: one shared model per script, each written by alice ----------

def probe_config(scripts, **extra):
    merges, shared = {}, {}
    for name, code in scripts.items():
        merges[name] = dict({"lua": code}, **extra.get(name, {}))
        shared[name] = {"schema": "Any", "merge": name, "value": {"title": name},
                        "subscribers": {"alice": "write"}}
    return {"storage": {"memory": True}, "schemas": {"Any": ANY}, "merges": merges,
            "shared": shared}


# Each tries one way out of the sandbox inside pcall and reports what happened.
ESCAPES = {
    "io": "io.open('/etc/passwd')",
    "os_execute": "os.execute('touch /tmp/tp-lua-escaped')",
    "os_time": "return os.time()",
    "os_clock": "return os.clock()",
    "require": "require('io')",
    "package": "return package.loaded.io",
    "load": "load('return 1')",
    "load_bytecode": "load(string.dump(function() end))",
    "loadstring": "loadstring('return 1')",
    "dofile": "dofile('/etc/passwd')",
    "loadfile": "loadfile('/etc/passwd')",
    "debug": "debug.getregistry()",
    "collectgarbage": "collectgarbage('stop')",
    "string_dump": "string.dump(merge)",
    "method_dump": "('x'):dump()",
    "math_random": "return math.random()",
    "math_randomseed": "math.randomseed(1)",
    "setmetatable_gc": "setmetatable({}, {__gc = function() while true do end end})",
    "string_metatable": "getmetatable('').__index.rep = nil",
    "string_lib_write": "string.rep = nil",
    "math_lib_write": "math.pi = 3",
    "rawset_lib": "rawset(string, 'x', 1)",
    "patterns": "return ('x'):rep(30):find('.-.-.-.-.-.-.-y')",
    "gsub": "return string.gsub('x', 'x', 'y')",
    "gmatch": "return string.gmatch('x', '.')",
    "coroutine": "coroutine.create(function() end)",
    "table_move": "table.move({}, 1, math.maxinteger - 1, 2)",
    "print": "print('x')",
    "next": "return next({})",
    "format_p": "return string.format('%p', {})",
    "object_metatable": "getmetatable(current).x = 1",
}


def escape_script(attempt):
    return ("function merge(current, patch, origin)\n"
            "  local ok, err = pcall(function() %s end)\n"
            "  return object{title = ok and 'open' or ('blocked: ' .. tostring(err))}\n"
            "end\n" % attempt)


class Sandbox(DaemonTestCase):

    def run_probes(self, d, names, patch=None):
        async def main():
            a, _, _ = await open_client(d, "alice")
            got = {}
            for i, name in enumerate(names, 1):
                got[name] = await outcome(a, i, name, patch or {"go": 1})
            c, _, snaps = await open_client(d, "alice")
            await c.close()
            await a.close()
            return got, {n: snaps[("shared", n)]["value"] for n in names}
        return self.run_async(main(), timeout=TIMEOUT * 3)

    def test_every_escape_attempt_is_blocked(self):
        d = self.start_daemon(probe_config({n: escape_script(a) for n, a in ESCAPES.items()}))
        got, values = self.run_probes(d, list(ESCAPES))
        for name in ESCAPES:
            with self.subTest(name):
                self.assertEqual(got[name]["type"], "ack", got[name])
                self.assertTrue(values[name]["title"].startswith("blocked: "), values[name])
        self.assertFalse(os.path.exists("/tmp/tp-lua-escaped"))
        self.assertIn("read-only", values["string_lib_write"]["title"])
        self.assertIn("%p", values["format_p"]["title"])

    def test_empty_rep_is_not_a_stall(self):
        # string.rep loops n times even with nothing to copy, outside the count.
        d = self.start_daemon(probe_config({"rep": (
            "function merge(c, p, o)\n"
            "  return object{title = 'len ' .. #string.rep('', math.maxinteger) ..\n"
            "                        #('x'):rep(3, '')}\n"
            "end\n")}))
        t0 = time.monotonic()
        got, values = self.run_probes(d, ["rep"])
        self.assertLess(time.monotonic() - t0, TIMEOUT)
        self.assertEqual(values["rep"]["title"], "len 03")

    def test_no_state_survives_a_call(self):
        script = (
            "hits = (hits or 0) + 1          -- a global of the script\n"
            "local calls = 0                 -- an upvalue of merge\n"
            "function merge(current, patch, origin)\n"
            "  calls = calls + 1\n"
            "  _G.seen = (_G.seen or 0) + 1\n"
            "  local lib = pcall(function() string.kept = (string.kept or 0) + 1 end)\n"
            "  local meta = pcall(function() getmetatable('').kept = 1 end)\n"
            "  local arr = pcall(function() getmetatable(patch).kept = 1 end)\n"
            "  return object{title = current.title, hits = hits, calls = calls, seen = seen,\n"
            "                kept = string.kept or 0, lib = lib, meta = meta, arr = arr,\n"
            "                before = current.calls or 0}\n"
            "end\n")
        d = self.start_daemon(probe_config({"smuggle": script}))

        async def main():
            a, _, _ = await open_client(d, "alice")
            for ref in (1, 2, 3):
                self.assertEqual((await outcome(a, ref, "smuggle", {"x": ref}))["type"], "ack")
            await a.close()
            return await value_of(d, "smuggle")
        v = self.run_async(main())
        # Three calls, and each saw a fresh script: counts of 1, the last call's
        # `before` is the previous result's (state flows only through the model).
        self.assertEqual(v, {"title": "smuggle", "hits": 1, "calls": 1, "seen": 1, "kept": 0,
                             "lib": False, "meta": False, "arr": False, "before": 1})

    def test_values_as_lua_sees_them_and_back(self):
        script = (
            "function merge(current, patch, origin)\n"
            "  local r = object()\n"
            "  r.title = current.title\n"
            "  r.kinds = math.type(patch.i) .. ',' .. math.type(patch.f) .. ',' ..\n"
            "            tostring(isarray(patch.a)) .. ',' .. tostring(isobject(patch.o)) .. ',' ..\n"
            "            tostring(isarray(patch.o)) .. ',' .. getmetatable(patch.a) .. ',' ..\n"
            "            tostring(patch.n == null) .. ',' .. #patch.s .. ',' .. type(origin)\n"
            "  r.a, r.o, r.i, r.f, r.s, r.n = patch.a, patch.o, patch.i, patch.f, patch.s, patch.n\n"
            "  r.made = {1, 2.5, 'x'}          -- keys 1..n: an array\n"
            "  r.empty = array()               -- marked: stays an array\n"
            "  r.plain = {}                    -- unmarked and empty: an object\n"
            "  r.big = math.maxinteger\n"
            "  r.tenant, r.conn = origin.tenant, origin.conn\n"
            "  return r\n"
            "end\n")
        d = self.start_daemon(probe_config({"values": script}))

        async def main():
            a, hello, _ = await open_client(d, "alice")
            patch = {"i": 7, "f": 7.0, "a": [], "o": {}, "n": None, "s": "\u00e9t\u00e9"}
            # A null in a patch reaches merge as `null` (RFC 7396 deletion is the
            # strategy's business); the result's nulls are stripped like any merge's.
            self.assertEqual((await outcome(a, 1, "values", patch))["type"], "ack")
            await a.close()
            return hello, await value_of(d, "values")
        hello, v = self.run_async(main())
        self.assertEqual(v["kinds"], "integer,float,true,true,false,array,true,5,table")
        self.assertEqual(v["a"], [])
        self.assertEqual(v["o"], {})
        self.assertEqual(v["i"], 7)
        self.assertIsInstance(v["f"], float)
        self.assertEqual(v["s"], "\u00e9t\u00e9")
        self.assertEqual(v["made"], [1, 2.5, "x"])
        self.assertEqual(v["empty"], [])
        self.assertEqual(v["plain"], {})
        self.assertEqual(v["big"], 2**63 - 1)
        self.assertEqual((v["tenant"], v["conn"]), ("alice", hello["conn"]))
        self.assertNotIn("n", v)


# Each breaks a write in its own way; kind is the code the writer gets.
BREAKERS = {
    # name: (script body of merge, extra config, code, words in the message or log)
    "loop": ("while true do end", {}, "rejected", "instruction budget exceeded (1000000)"),
    "loop_pcall": ("while true do pcall(function() while true do end end) end", {},
                   "rejected", "instruction budget exceeded"),
    "loop_xpcall": ("while true do xpcall(function() while true do end end,\n"
                    "  function() while true do end end) end", {},
                    "rejected", "instruction budget exceeded"),
    # A generous time budget for the bombs: the memory budget is what must stop them,
    # even in a slow (sanitizer) build.
    "bomb_rep": ("local s = string.rep('x', 100 * 1024 * 1024)", {"max_ms": 30000},
                 "rejected", "memory budget exceeded (8388608 bytes)"),
    "bomb_table": ("local t = {}\n  for i = 1, math.maxinteger do t[i] = {i, i, i, i} end",
                   {"max_ms": 30000},
                   "rejected", "memory budget exceeded"),
    "bomb_pcall": ("while true do pcall(string.rep, 'x', 64 * 1024 * 1024) end\n"
                   "  return object{title = 'survived'}", {"max_ms": 30000},
                   "rejected", "memory budget exceeded"),
    "slow_compare": ("local a = string.rep('x', 3000000)\n"
                     "  local b = string.rep('x', 2999999) .. 'x'\n"
                     "  local n = 0\n"
                     "  while a == b do n = n + 1 end",
                     {"max_memory_bytes": 32 * 1024 * 1024, "max_ms": 50},
                     "rejected", "time budget exceeded (50 ms)"),
    "runtime": ("local t = nil\n  return t.x", {}, "internal", "merges.b-runtime.lua:3: attempt to index a nil value"),
    "raise": ("error('deliberate')", {}, "internal", "merges.b-raise.lua:2: deliberate"),
    "number": ("return 42", {}, "internal", "returned a number"),
    "string": ("return 'x'", {}, "internal", "returned a string"),
    "nan": ("return object{title = 'x', v = 0/0}", {}, "internal", "result.v: NaN"),
    "inf": ("return object{title = 'x', v = math.huge}", {}, "internal", "result.v: NaN"),
    "mixed": ("return {title = 'x', 1, 2}", {}, "internal", "mixed table"),
    "holes": ("return object{title = 'x', v = {[1] = 1, [3] = 3}}", {}, "internal", "holes"),
    "cycle": ("local t = object{title = 'x'}\n  t.self = t\n  return t", {}, "internal",
              "result.self: a table that contains itself"),
    "deep": ("local t = object{title = 'x'}\n  local c = t\n"
             "  for i = 1, 100 do c.d = object() c = c.d end\n  return t", {}, "internal",
             "nested deeper than 64"),
    "key": ("return object{title = 'x', [true] = 1}", {}, "internal", "a key of type boolean"),
    "function": ("return object{title = 'x', f = print or type}", {}, "internal",
                 "result.f: a function"),
    "utf8": ("return object{title = '\\255'}", {}, "internal", "not valid UTF-8"),
    "refuse": ("return nil, 'not today'", {}, "rejected", "not today"),
    "refuse_bare": ("return nil", {}, "rejected", "the merge strategy refused the write"),
    "schema": ("return object{title = 42}", {}, "invalid", "title"),
}


class Breakers(DaemonTestCase):

    def test_each_failure_refuses_the_write_and_the_server_goes_on(self):
        scripts, extra = {}, {}
        for name, (body, cfg, _, _) in BREAKERS.items():
            scripts["b-" + name] = ("function merge(current, patch, origin)\n  %s\nend\n"
                                    % body)
            extra["b-" + name] = cfg
        scripts["ok"] = ("function merge(current, patch, origin)\n"
                         "  return object{title = current.title, n = (current.n or 0) + 1}\n"
                         "end\n")
        d = self.start_daemon(probe_config(scripts, **extra))

        async def main():
            a, _, _ = await open_client(d, "alice")
            ref = 0
            for name, (_, _, code, words) in BREAKERS.items():
                sid = "b-" + name
                for attempt in range(2):  # the state is usable after an abort
                    ref += 1
                    t0 = time.monotonic()
                    e = await outcome(a, ref, sid, {"go": attempt})
                    took = time.monotonic() - t0
                    with self.subTest(name=name, attempt=attempt):
                        self.assertEqual((e["type"], e["code"]), ("error", code), e)
                        self.assertLess(took, TIMEOUT / 2)
                        if code == "internal":
                            # The client learns the strategy failed; the log says where.
                            self.assertIn("merge strategy \"%s\"" % sid, e["message"])
                            self.assertIn(words, d.log())
                        else:
                            self.assertIn(words, e["message"])
                    # Another model's write goes through at once after each one.
                    ref += 1
                    self.assertEqual((await outcome(a, ref, "ok", {"go": 1}))["type"], "ack")
                    self.assertEqual((await value_of(d, sid))["title"], sid)
            self.assertEqual((await value_of(d, "ok"))["n"], 2 * len(BREAKERS))
            await a.close()
        self.run_async(main(), timeout=TIMEOUT * 6)


class Determinism(DaemonTestCase):

    SCRIPT = (
        "function merge(current, patch, origin)\n"
        "  local keys = array()\n"
        "  for k, v in pairs(patch) do keys[#keys + 1] = k .. '=' .. tostring(v) end\n"
        "  local nums = {}\n"
        "  for k in pairs({[3] = 1, [1] = 1, [2.5] = 1, x = 1, [true] = 1}) do\n"
        "    nums[#nums + 1] = tostring(k)\n"
        "  end\n"
        "  return object{title = table.concat(keys, ','), order = table.concat(nums, ','),\n"
        "                shown = tostring({}) .. string.format('%s', merge),\n"
        "                sum = 0.1 + 0.2, div = 7 // 2, fdiv = 7 / 2}\n"
        "end\n")

    def test_same_inputs_same_output_in_two_daemons(self):
        patch = {"k%02d" % i: i for i in range(60)}
        patch["obj"] = {"z": 1}
        results = []
        for _ in range(2):
            d = self.start_daemon(probe_config({"det": self.SCRIPT}))

            async def main(d=d):
                a, _, _ = await open_client(d, "alice")
                self.assertEqual((await outcome(a, 1, "det", patch))["type"], "ack")
                await a.close()
                return await value_of(d, "det")
            results.append(self.run_async(main()))
            d.stop()
        self.assertEqual(results[0], results[1])
        # pairs goes in key order, and nothing prints an address.
        self.assertEqual(results[0]["title"],
                         ",".join("k%02d=%d" % (i, i) for i in range(60)) + ",obj=table")
        self.assertEqual(results[0]["order"], "1,2.5,3,x,true")
        self.assertEqual(results[0]["shown"], "tablefunction")
        self.assertEqual((results[0]["div"], results[0]["fdiv"]), (3, 3.5))


class Restart(DaemonTestCase):

    def test_a_stored_model_keeps_its_lua_strategy(self):
        cfg = example("counter")
        cfg["storage"] = {"sqlite": "state.db"}
        require_daemon(self)
        d = Daemon(config=cfg)
        self.addCleanup(self._finish_daemon, d)
        shutil.copy(os.path.join(EXAMPLES, "counter.lua"), d.dir)
        d.start()

        async def bump(ref):
            a, _, _ = await open_client(d, "alice")
            self.assertEqual((await outcome(a, ref, "visits", {"increment": 5}))["type"], "ack")
            await a.close()
        self.run_async(bump(1))
        d.stop()
        d.restart()
        self.run_async(bump(2))
        self.assertEqual(self.run_async(value_of(d, "visits")), {"count": 10})
        # The stored model names its strategy: a config without it is refused.
        d.stop()
        d.config = dict(cfg, merges={}, shared={})
        with self.assertRaises(DaemonError) as e:
            d.restart()
        self.assertIn("store: shared model \"visits\" is merged by \"add-up\": no such strategy",
                      str(e.exception))


class ConfigErrors(unittest.TestCase):
    """A bad strategy refuses the start: exit 2, one line naming the file and the field."""

    def setUp(self):
        require_daemon(self)
        self.tmp = tempfile.TemporaryDirectory(prefix="tp-lua-cfg-")
        self.addCleanup(self.tmp.cleanup)
        os.mkdir(os.path.join(self.tmp.name, "conf"))

    def refused(self, merges, files=None, shared_merge="m"):
        cfg = probe_config({})
        cfg["merges"] = merges
        cfg["shared"] = {"s": {"schema": "Any", "merge": shared_merge}}
        for name, data in (files or {}).items():
            with open(os.path.join(self.tmp.name, "conf", name), "wb") as f:
                f.write(data)
        with open(os.path.join(self.tmp.name, "conf", "config.json"), "w") as f:
            json.dump(cfg, f)
        try:
            p = subprocess.run([TRANSPORTSD, "--config", "conf/config.json", "--listen",
                                "127.0.0.1:0"], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=TIMEOUT, env=sanitizer_env(), cwd=self.tmp.name)
        except subprocess.TimeoutExpired:
            self.fail("transportsd started with a bad merge: %r" % merges)
        err = p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 2, err)
        self.assertNotIn("listening", err)
        return err

    def test_refusals_name_the_field(self):
        good = "function merge(c, p, o) return c end"
        cases = [
            ({"m": {"lua": "function merge(c, p, o)\n  return c +\nend\n"}},
             None, "conf/config.json: merges.m.lua: merges.m.lua:3: unexpected symbol near 'end'"),
            ({"m": {"lua": "function marge(c, p, o) return c end"}}, None,
             "merges.m.lua: the script defines no function merge(current, patch, origin)"),
            ({"m": {"lua": "local x = nil\nx.y = 1\nfunction merge() end"}}, None,
             "merges.m.lua: merges.m.lua:2: attempt to index a nil value"),
            ({"m": {"lua": "while true do end"}}, None,
             "merges.m.lua: merge strategy \"m\": instruction budget exceeded"),
            ({"m": {"lua": good, "lua_file": "m.lua"}}, None,
             "merges.m: set lua (the script) or lua_file (its file), not both"),
            ({"m": {}}, None, "merges.m: needs lua (the script) or lua_file"),
            ({"m": {"lua": good, "timeout": 5}}, None, "merges.m.timeout: unknown key"),
            ({"m": {"lua": 5}}, None, "merges.m.lua: expected a string, got integer"),
            ({"m": {"lua": ""}}, None, "merges.m.lua: expected a Lua script, got an empty"),
            ({"m": {"lua": good, "max_instructions": 10}}, None,
             "merges.m.max_instructions:"),
            ({"m": {"lua": good, "max_memory_bytes": 1024}}, None,
             "merges.m.max_memory_bytes:"),
            ({"m": {"lua_file": "missing.lua"}}, None,
             "merges.m.lua_file: cannot open conf/missing.lua: No such file or directory"),
            ({"m": {"lua_file": "m.lua"}}, {"m.lua": b"function merge(c)\n\n  x = = 1\nend\n"},
             "merges.m.lua_file: m.lua:3: unexpected symbol near '='"),
            ({"m": {"lua_file": "m.luac"}}, {"m.luac": b"\x1bLuaT\x00\x19\x93\r\n\x1a\n"},
             "merges.m.lua_file: m.luac: a binary chunk (bytecode) is refused"),
            ({"lww": {"lua": good}}, None, "merges.lww: \"lww\" is a built-in strategy"),
            ({"m": {"lua": good}}, None, None),  # shared_merge "nope" below
            ("nope", None, "merges: expected an object"),
        ]
        for merges, files, words in cases:
            with self.subTest(merges=merges):
                if words is None:
                    err = self.refused(merges, shared_merge="nope")
                    self.assertIn("shared.s.merge: unknown merge strategy \"nope\" (expected "
                                  "\"lww\", \"lww-map\" or a name in merges)", err)
                    continue
                err = self.refused(merges, files)
                self.assertIn(words, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)


if __name__ == "__main__":
    unittest.main()
