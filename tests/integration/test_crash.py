"""Issue 5, crash: writers under load, the daemon killed with SIGKILL at random moments and
started again on the same SQLite database each time.

Six writers (two per tenant, each a connection with its own client id and increasing refs)
write without pause, up to WINDOW writes in flight each, to their own private model and to
two shared models (`board`, lww-map, and `tally`, lww) that every tenant writes. Writer w's
n-th write to a model sets the field `w<w>` of that model to n, so:

- a model's field `w<w>` is the number of w's writes to it that were applied (they apply in
  order, so the applied ones are always the first n), and every write changes the model:
  its rev minus its initial rev must equal the sum of its `w<w>` fields. A write applied
  twice where it shows (after another one, resent after a crash) makes that sum fall behind
  the rev, or the field go back; a lost transaction whose successor survived makes a gap.

After each SIGKILL, before the restart, `PRAGMA integrity_check` of the database (its WAL
included, on a copy) must be `ok`. After each restart, before the writers come back, a fresh
connection per tenant checks every model: each write a client saw acked is there (`w<w>` at
least the highest acked n), nothing that was never sent is, the rev is not below any rev an
ack, patch or snapshot showed, and the rev accounting above holds.

Then the writers reconnect with `resume=1`, their held revs and their client id, check that
the answer continues what they hold (patches from their revs, or snapshots not behind
them), and resend every write that was not acked, with its ref: a write the checkpoint
shows applied must get its original outcome (an ack naming a rev not after the
checkpoint's), one it shows missing is applied now (an ack after it). At the end the
writers stop, every write is acked exactly once, every model holds every write, every
writer's replica equals a fresh snapshot, and a graceful stop and start changes nothing.

The daemon is also killed while it starts (opening the database, storing the config's
initial state or restoring it), three times in a row on one directory: the file stays
whole, and the next start says `new` or `restored` and serves exactly the initial state.

TP_CRASH_SEED picks the seed (printed; the kill moments and the writers' choices follow
from it, the scheduling does not), TP_CRASH_KILLS the number of kills (8; `make
test-crash-stress` runs 200).
"""

import asyncio
import os
import random
import subprocess
import sys
import time
import unittest

import websockets

from harness import (Client, Closed, Daemon, DaemonTestCase, DOC_SCHEMA, SLOW, TIMEOUT, close_all,
                     connect, merge_patch, sanitizer_env, sqlite_integrity)

DB = "state.db"
KILLS = int(os.environ.get("TP_CRASH_KILLS", "8"))
SEED = int(os.environ.get("TP_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))
WINDOW = 8                  # writes in flight per writer
TENANTS = ("alice", "bob", "carol")
WRITERS = [(w, TENANTS[w // 2]) for w in range(6)]   # (writer, tenant)
SHARED = [("shared", "board"), ("shared", "tally")]

# A connection may fail in these ways when the daemon dies under it.
DROPS = (Closed, OSError, EOFError, asyncio.IncompleteReadError,
         websockets.WebSocketException)


def config():
    tenants = {t: {"models": {}} for t in TENANTS}
    for w, t in WRITERS:
        tenants[t]["models"]["w%d" % w] = {"schema": "Doc", "value": {"title": "w%d" % w}}
    everyone = {t: "write" for t in TENANTS}
    return {
        "autosync_ms": 50,
        "storage": {"sqlite": DB},
        "schemas": {"Doc": DOC_SCHEMA},
        "tenants": tenants,
        "shared": {
            "board": {"schema": "Doc", "merge": "lww-map", "value": {"title": "Board"},
                      "subscribers": dict(everyone)},
            "tally": {"schema": "Doc", "merge": "lww", "value": {"title": "Tally"},
                      "subscribers": dict(everyone)},
        },
        "limits": {"writes_per_second": 1000000},
    }


def models_of(w):
    return [("private", "w%d" % w)] + SHARED


def writers_of(key):
    if key[0] == "private":
        return [int(key[1][1:])]
    return [w for w, _ in WRITERS]


class State:
    """What every task shares: generations of the daemon, what clients saw."""

    def __init__(self):
        self.gen = 0
        self.started = {}    # gen -> Event: that daemon runs and was checked
        self.killed = {}     # gen -> Event: that daemon is being killed
        self.stopping = False
        self.dead = False    # the test is over: writers return
        self.maxrev = {}     # key -> the highest rev any client saw in an ack/patch/snapshot
        self.initial = {}    # key -> rev at the first start
        self.checkpoint = {}  # gen -> {key: snapshot} taken before the writers came back
        self.port = None     # the daemon's port (the same in every generation)

    def event(self, table, gen):
        e = table.setdefault(gen, asyncio.Event())
        if self.dead:
            e.set()
        return e

    def saw(self, key, rev):
        if rev > self.maxrev.get(key, 0):
            self.maxrev[key] = rev


class Writer:

    def __init__(self, d, state, w, tenant):
        self.d = d
        self.state = state
        self.w = w
        self.field = "w%d" % w
        self.tenant = tenant
        self.client = "crash-w%d-%d" % (w, SEED)
        self.rng = random.Random(SEED * 31 + w)
        self.models = models_of(w)
        self.ref = 0
        self.pending = {}     # ref -> (message, key, n), in ref order
        self.resent = set()   # refs resent in this session
        self.sent = {k: 0 for k in self.models}
        self.acked = {k: 0 for k in self.models}
        self.held = None      # key -> {"value", "rev"}: this writer's replicas
        self.conn = None
        self.gen = 0          # the generation of the daemon this session talks to
        self.acks = 0
        self.replays = 0
        self.sessions = 0

    def fail(self, msg):
        raise AssertionError("writer %d (%s), daemon generation %d: %s"
                             % (self.w, self.tenant, self.gen, msg))

    async def run(self):
        gen = 0
        while True:
            gen = max(gen, self.state.gen)
            await self.state.event(self.state.started, gen).wait()
            if self.state.dead:
                return
            if gen != self.state.gen:
                continue
            if await self.session(gen):
                return
            # Only a kill may drop a connection.
            try:
                await asyncio.wait_for(self.state.event(self.state.killed, gen).wait(),
                                       TIMEOUT)
            except asyncio.TimeoutError:
                self.fail("the connection dropped while the daemon ran\n--- log ---\n%s"
                          % self.d.log()[-4000:])
            if self.state.dead:
                return
            gen += 1

    def stale(self, gen):
        return self.state.gen != gen or self.state.event(self.state.killed, gen).is_set()

    async def session(self, gen):
        """One connection: True when the writer finished, False when it was dropped."""
        c = None
        self.gen = gen
        url = "ws://127.0.0.1:%d/ws/%s" % (self.state.port, self.tenant)
        try:
            # Never to a daemon of another generation (the port is the same): a connection
            # made while the checkpoint is taken is closed at once, before anything is sent.
            # The kill and the restart happen in one step of the loop, so a connection
            # completed while its generation is still current is to that daemon.
            if self.stale(gen):
                return False
            c = await Client.connect(url + ("?resume=1" if self.held is not None else ""))
            if self.stale(gen):
                c.abort()
                return False
            if self.held is None:
                _, snaps = await c.open()
                self.held = {}
                for key, s in snaps.items():
                    self.held[key] = {"value": s["value"], "rev": s["rev"]}
                    self.state.saw(key, s["rev"])
                await c.send({"type": "ping", "ref": 0, "client": self.client})
            else:
                hello = await c.recv()
                if hello.get("type") != "hello":
                    self.fail("first message %r" % hello)
                await c.send({"type": "resume", "client": self.client, "models": [
                    {"scope": k[0], "id": k[1], "rev": v["rev"]} for k, v in self.held.items()]})
                while True:
                    m = await c.recv()
                    if m["type"] == "synced":
                        break
                    self.apply(m, resuming=True)
            self.conn = c
            self.sessions += 1
            # Every write not acked, again, with its ref.
            self.resent = set(self.pending)
            for ref in sorted(self.pending):
                await c.send(self.pending[ref][0])
            while True:
                while len(self.pending) < WINDOW and not self.state.stopping:
                    await self.new_write(c)
                if not self.pending and self.state.stopping:
                    return True
                try:
                    m = await c.recv()
                except asyncio.TimeoutError:
                    if self.state.event(self.state.killed, gen).is_set():
                        return False
                    self.fail("no answer within %.0f s; pending refs %r"
                              % (TIMEOUT, sorted(self.pending)))
                self.apply(m)
        except DROPS:
            if c is not None:
                c.abort()
            self.conn = None
            return False

    async def new_write(self, c):
        key = self.rng.choice(self.models)
        self.ref += 1
        self.sent[key] += 1
        n = self.sent[key]
        msg = {"type": "write", "scope": key[0], "id": key[1], "ref": self.ref,
               "patch": {self.field: n}}
        self.pending[self.ref] = (msg, key, n)
        await c.send(msg)

    def apply(self, m, resuming=False):
        t = m.get("type")
        key = (m.get("scope"), m.get("id"))
        if t == "patch":
            held = self.held.get(key)
            if held is None or m["from"] != held["rev"] or m["rev"] <= m["from"]:
                self.fail("a patch from %s to %s while holding %s: %r"
                          % (m["from"], m["rev"], held and held["rev"], m))
            held["value"] = merge_patch(held["value"], m["patch"])
            held["rev"] = m["rev"]
            self.state.saw(key, m["rev"])
        elif t == "snapshot" and resuming:
            held = self.held.get(key)
            if held is not None and m["rev"] < held["rev"]:
                self.fail("resumed with a snapshot at rev %d, behind the held %d"
                          % (m["rev"], held["rev"]))
            self.held[key] = {"value": m["value"], "rev": m["rev"]}
            self.state.saw(key, m["rev"])
        elif t == "ack":
            self.on_ack(m, key)
        elif t == "pong" and not resuming:
            pass
        else:
            self.fail("unexpected message%s: %r" % (" in the resume" if resuming else "", m))

    def on_ack(self, m, key):
        ref = m["ref"]
        if ref not in self.pending:
            self.fail("an ack for a ref not in flight: %r" % m)
        msg, wkey, n = self.pending.pop(ref)
        if key != wkey:
            self.fail("an ack for %r answers a write to %r" % (key, wkey))
        held = self.held[key]
        if m["rev"] > held["rev"]:
            # Applied now: a private write's ack continues the replica; a shared write's
            # patch comes before its ack, so its ack never names a rev not yet held.
            if key[0] == "shared" or m.get("from") != held["rev"]:
                self.fail("an ack (from %s) to rev %d while holding %d: %r"
                          % (m.get("from"), m["rev"], held["rev"], m))
            held["value"] = merge_patch(held["value"], msg["patch"])
            held["rev"] = m["rev"]
        elif key[0] == "private" and ref not in self.resent:
            self.fail("a write sent once was answered without a new rev: %r" % m)
        if ref in self.resent:
            # The checkpoint says whether the write was applied before the crash.
            snap = self.state.checkpoint[self.gen][key]
            had = snap["value"].get(self.field, 0)
            if had >= n and m["rev"] > snap["rev"]:
                self.fail("write %d (ref %d) was stored before the crash (%s=%d at rev %d) "
                          "and applied again when resent: %r"
                          % (n, ref, self.field, had, snap["rev"], m))
            if had < n and m["rev"] <= snap["rev"]:
                self.fail("write %d (ref %d) was missing after the crash (%s=%d at rev %d) "
                          "but its resend was answered as done: %r"
                          % (n, ref, self.field, had, snap["rev"], m))
            if had >= n:
                self.replays += 1
        if n > self.acked[key]:
            self.acked[key] = n
        self.acks += 1
        self.state.saw(key, m["rev"])


class Crash(DaemonTestCase):

    async def opening(self, d):
        """{key: snapshot} of every model, from a fresh connection per tenant."""
        out = {}
        for t in TENANTS:
            c = await connect(d, t)
            try:
                _, snaps = await c.open()
            finally:
                await close_all([c])
            out.update(snaps)
        return out

    def check_models(self, snaps, writers, state, when, final=False):
        """The checks of the module's docstring, on one set of snapshots."""
        for w, t in WRITERS:
            for key in models_of(w):
                if key not in snaps:
                    self.fail("%s: %r is gone" % (when, key))
        for key, s in snaps.items():
            value, rev = s["value"], s["rev"]
            if rev < state.maxrev.get(key, 0):
                self.fail("%s: %r is at rev %d, behind rev %d that a client saw"
                          % (when, key, rev, state.maxrev[key]))
            total = 0
            for w in writers_of(key):
                got = value.get("w%d" % w, 0)
                total += got
                wr = writers[w]
                if got < wr.acked[key]:
                    self.fail("%s: acked write lost: %r has w%d=%d, but writer %d saw write "
                              "%d acked" % (when, key, w, got, w, wr.acked[key]))
                if got > wr.sent[key]:
                    self.fail("%s: %r has w%d=%d, but writer %d sent only %d writes to it"
                              % (when, key, w, got, w, wr.sent[key]))
                if final and got != wr.sent[key]:
                    self.fail("%s: %r has w%d=%d, writer %d sent (and saw acked) %d"
                              % (when, key, w, got, w, wr.sent[key]))
            if rev - state.initial[key] != total:
                self.fail("%s: %r is at rev %d, %d past its initial %d, but holds %d writes "
                          "(%s): a write applied twice, or a lost one with later ones kept"
                          % (when, key, rev, rev - state.initial[key], state.initial[key],
                             total, value))

    def test_sigkill_under_load_loses_no_acked_write_and_applies_none_twice(self):
        print("\ntest_crash: TP_CRASH_SEED=%d TP_CRASH_KILLS=%d" % (SEED, KILLS),
              file=sys.stderr, flush=True)
        d = self.start_daemon(config())
        d.wait_log(r"storage sqlite=%s new" % DB)
        state = State()
        rng = random.Random(SEED)
        writers = {w: Writer(d, state, w, t) for w, t in WRITERS}

        async def run():
            snaps = await self.opening(d)
            state.initial = {k: s["rev"] for k, s in snaps.items()}
            state.checkpoint[0] = snaps
            state.port = d.port
            tasks = [asyncio.ensure_future(wr.run()) for wr in writers.values()]

            def check_tasks():
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()

            try:
                state.event(state.started, 0).set()
                for kill in range(1, KILLS + 1):
                    # The kill moment: at once (the writers still connecting, resuming or
                    # resending) or after a while of writing.
                    r = rng.random()
                    delay = 0.0 if r < 0.1 else rng.uniform(0.0, 0.05 if r < 0.3 else 0.4)
                    await asyncio.sleep(delay * SLOW)
                    check_tasks()
                    # Crash and restart block the loop (the daemon must be started from
                    # this thread: it dies with the thread that started it).
                    state.event(state.killed, state.gen).set()
                    d.crash()
                    check = sqlite_integrity(d.path(DB))
                    if check != "ok":
                        self.fail("kill %d: PRAGMA integrity_check after SIGKILL: %s"
                                  % (kill, check))
                    # On the same port: clients come back to the address they knew.
                    d.restart(same_port=True)
                    if d.port != state.port:
                        self.fail("kill %d: restarted on port %d, not %d"
                                  % (kill, d.port, state.port))
                    d.wait_log(r"storage sqlite=%s restored" % DB, start=d.log_start)
                    state.gen += 1
                    snaps = await self.opening(d)
                    self.check_models(snaps, writers, state, "after kill %d" % kill)
                    for key, s in snaps.items():
                        state.saw(key, s["rev"])
                    state.checkpoint[state.gen] = snaps
                    state.event(state.started, state.gen).set()
                # The end: a last while of writing, then every writer drains.
                await asyncio.sleep(0.2 * SLOW)
                state.stopping = True
                done, _ = await asyncio.wait(tasks, timeout=12 * TIMEOUT)
                check_tasks()
                if len(done) != len(tasks):
                    self.fail("writers still running at the end: %r"
                              % [(wr.w, sorted(wr.pending)) for wr in writers.values()])
                snaps = await self.opening(d)
                self.check_models(snaps, writers, state, "at the end", final=True)
                # Every replica equals a fresh snapshot (after a barrier: nothing in flight).
                for wr in writers.values():
                    for m in await wr.conn.barrier():
                        wr.apply(m)
                    self.assertEqual(wr.held, {k: {"value": s["value"], "rev": s["rev"]}
                                               for k, s in snaps.items() if k in wr.held},
                                     "writer %d's replica" % wr.w)
                await close_all([wr.conn for wr in writers.values()])
                return snaps
            finally:
                state.dead = True
                for e in list(state.started.values()) + list(state.killed.values()):
                    e.set()
                for task in tasks:
                    task.cancel()

        try:
            final = self.run_async(run(), timeout=max(120, KILLS * 3) * SLOW)
        except Exception as e:
            raise AssertionError("TP_CRASH_SEED=%d TP_CRASH_KILLS=%d: %s: %s"
                                 % (SEED, KILLS, type(e).__name__, e)) from e
        # A graceful stop and start change nothing.
        d.stop()
        self.assertEqual(sqlite_integrity(d.path(DB)), "ok")
        d.restart()
        self.assertEqual(self.run_async(self.opening(d)), final)
        acks = sum(wr.acks for wr in writers.values())
        print("test_crash: %d kills, %d writes acked, %d resends answered from the record, "
              "%d sessions" % (KILLS, acks, sum(wr.replays for wr in writers.values()),
                               sum(wr.sessions for wr in writers.values())),
              file=sys.stderr, flush=True)
        self.assertGreater(acks, KILLS, "the writers hardly wrote")

    def test_sigkill_while_starting(self):
        # Killed while it opens the database, stores the config's initial state (first
        # start) or restores it (later ones): the file stays whole, and the start after
        # says `new` or `restored` and serves exactly the initial state.
        print("\ntest_crash: TP_CRASH_SEED=%d" % SEED, file=sys.stderr, flush=True)
        rng = random.Random(SEED)
        ref = self.start_daemon(config())
        want = self.run_async(self.opening(ref))
        said = {}
        for attempt in range(12):
            d = Daemon(config())
            self.addCleanup(self._finish_daemon, d)
            for kill in range(3):
                with open(d.log_path, "ab") as log:
                    p = subprocess.Popen(d.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=d.dir, env=sanitizer_env())
                    try:
                        time.sleep(rng.uniform(0.0, 0.02) * SLOW)
                    finally:
                        p.kill()
                        p.wait()
                if os.path.exists(d.path(DB)):
                    check = sqlite_integrity(d.path(DB))
                    self.assertEqual(check, "ok", "TP_CRASH_SEED=%d attempt %d kill %d"
                                     % (SEED, attempt, kill))
            d.start()
            m = d.wait_log(r"storage sqlite=%s (new|restored)" % DB, start=d.log_start)
            said[m.group(1)] = said.get(m.group(1), 0) + 1
            self.assertEqual(self.run_async(self.opening(d)), want,
                             "TP_CRASH_SEED=%d attempt %d (%s)" % (SEED, attempt, m.group(1)))
            d.stop()
        print("test_crash: the start after the kills said %r" % said, file=sys.stderr,
              flush=True)


if __name__ == "__main__":
    unittest.main()
