"""Issue 18's history checker (history.py) on what a real transportsd did: concurrent writers
on SQLite with `synchronous` full, the daemon SIGKILLed under writes and started again on the
same database several times, the writers reconnecting and resuming. Every write, every
answer and everything each client was sent goes into a History; at the end the checker must
find nothing: no acked write lost, no refused write applied, nothing applied twice, no rev
going back or published as two changes, no replica differing from the final read, no two
writes acked at one rev.

Four writers (two per tenant, alice and bob; python3-websockets speaking docs/protocol.md,
independent of the C client), each with its own client id and increasing refs, up to WINDOW
writes in flight, each write to its tenant's private model `p` or to one of two shared
models every tenant writes (`board`, lww-map, and `tally`, lww). Write `ref` of writer w sets
its own field `w<w>_<ref>` (the mark the checker looks for) and the field `last`, so every
write changes its model, and one applied twice where it shows would change `last` again.
About one write in twelve also sets `n` to -1, which the schema refuses (`invalid`): its
mark must never appear.

When the daemon dies, every write in flight is recorded as unknown (`info`); the writer
reconnects with `resume=1`, sends `resume` with its client id and the revs it holds, and
resends those writes with their refs: the answers (the original `ack` from the exactly-once
record, or a new one when the write was not stored) complete them. After the kills the
writers finish their writes, the daemon is killed once more, and the final reads are a fresh
connection's snapshots on the restarted daemon.

Nothing here is tied to one daemon but the daemon itself: a Writer takes the list of nodes
up and picks one per connection (recording which), and final reads are recorded per node, so
a cluster test can drive the same writers over three daemons.

TP_HISTORY_SEED picks the seed (printed: the kill moments and the writers' choices follow
from it, the scheduling does not), TP_HISTORY_KILLS the number of kills under writes (4),
Writers write until the end (at most TP_HISTORY_WRITES each, 20000; each at most BOARD_CAP
to `board`, whose lww-map fields are bounded to 4096). A failing run keeps the history as
JSON lines (its path is printed) for `history.History.load`. `make test-history-stress`
runs 60 kills.
"""

import asyncio
import os
import random
import sys
import tempfile
import unittest

import websockets

import history
from harness import Client, Closed, DaemonTestCase, DOC_SCHEMA, SLOW, TIMEOUT, close_all, connect

DB = "state.db"
KILLS = int(os.environ.get("TP_HISTORY_KILLS", "4"))
WRITES = int(os.environ.get("TP_HISTORY_WRITES", "20000"))
BOARD_CAP = 900   # 4 writers: at most 3600 of board's 4096 lww-map fields
SEED = int(os.environ.get("TP_HISTORY_SEED") or random.SystemRandom().randrange(1 << 31))
WINDOW = 4
TENANTS = ("alice", "bob")
WRITERS = [(0, "alice"), (1, "alice"), (2, "bob"), (3, "bob")]
SHARED = ("board", "tally")
NODE = "n1"

# A connection may fail in these ways when the daemon dies under it.
DROPS = (Closed, OSError, EOFError, asyncio.IncompleteReadError,
         websockets.WebSocketException)


def config():
    everyone = {t: "write" for t in TENANTS}
    return {
        "autosync_ms": 50,
        "storage": {"sqlite": DB, "synchronous": "full"},
        "schemas": {"Doc": DOC_SCHEMA},
        "tenants": {t: {"models": {"p": {"schema": "Doc", "value": {"title": t}}}}
                    for t in TENANTS},
        "shared": {
            "board": {"schema": "Doc", "merge": "lww-map", "value": {"title": "Board"},
                      "subscribers": dict(everyone)},
            "tally": {"schema": "Doc", "merge": "lww", "value": {"title": "Tally"},
                      "subscribers": dict(everyone)},
        },
        "limits": {"writes_per_second": 1000000},
    }


def key_of(tenant, scope, id):
    return history.model_key(scope, id, tenant)


class Writer:

    def __init__(self, h, nodes, w, tenant):
        """nodes: a function returning [(node name, port)] of the daemons up now; each
        session picks one (one node today: a cluster test passes its three)."""
        self.h = h
        self.nodes = nodes
        self.node = None
        self.w = w
        self.tenant = tenant
        self.client = "hist-w%d-%d" % (w, SEED)
        self.rng = random.Random(SEED * 7 + w)
        self.node_rng = random.Random(SEED * 13 + w)   # apart: retries vary per run
        self.targets = [("private", "p")] + [("shared", s) for s in SHARED]
        self.board = 0        # writes to board
        self.ref = 0
        self.pending = {}     # ref -> (message, wid)
        self.sent_here = set()  # refs sent on the current connection
        self.resent = set()     # refs resent on the current connection
        self.resumed = {}       # (scope, id) -> the rev held when it resumed
        self.from_record = 0    # resends answered as stored before the kill
        self.after_kill = 0     # resends applied after the kill (missing before)
        self.revs = {}        # (scope, id) -> the rev held
        self.conn = None
        self.c = None
        self.stopping = False
        self.sessions = 0
        self.drops = 0

    def fail(self, msg):
        raise AssertionError("writer %d (%s): %s" % (self.w, self.tenant, msg))

    def key(self, scope, id):
        return key_of(self.tenant, scope, id)

    async def run(self):
        while True:
            if await self.session():
                return
            self.drops += 1
            # Unknown: the writes sent on the connection that died, not yet answered.
            for ref in sorted(self.sent_here & set(self.pending)):
                self.h.info(self.pending[ref][1], "connection lost")
            self.sent_here.clear()

    async def connect(self, query):
        # The daemon is down between a kill and its restart (the test restarts it in the
        # same step of the loop as the kill, so that window is short): retry until it is up.
        deadline = asyncio.get_running_loop().time() + 3 * TIMEOUT
        while True:
            self.node, port = self.node_rng.choice(self.nodes())
            try:
                return await Client.connect("ws://127.0.0.1:%d/ws/%s%s"
                                            % (port, self.tenant, query))
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.02)

    async def session(self):
        """One connection: True when the writer finished, False when it was dropped."""
        c = None
        try:
            resume = bool(self.revs)
            c = await self.connect("?resume=1" if resume else "")
            hello = await c.recv()
            if hello.get("type") != "hello":
                self.fail("first message %r" % hello)
            self.conn = hello["conn"]
            self.h.connect(self.client, self.node, self.conn, resume=resume)
            if resume:
                await c.send({"type": "resume", "client": self.client, "models": [
                    {"scope": k[0], "id": k[1], "rev": r} for k, r in self.revs.items()]})
            else:
                await c.send({"type": "ping", "ref": -1, "client": self.client})
            while True:
                m = await c.recv()
                if m["type"] == "synced":
                    break
                self.apply(m)
            self.c = c
            self.sessions += 1
            # Every write not answered, again, with its ref.
            self.resumed = dict(self.revs)
            self.resent = set(self.pending)
            for ref in sorted(self.pending):
                msg, wid = self.pending[ref]
                self.h.resend(wid, self.node, self.conn)
                self.sent_here.add(ref)
                await c.send(msg)
            while True:
                while (len(self.pending) < WINDOW and not self.stopping
                       and self.ref < WRITES):
                    await self.new_write(c)
                if not self.pending and (self.stopping or self.ref >= WRITES):
                    # Nothing in flight: a barrier takes what the others' writes still
                    # bring, so the replica ends at the final rev.
                    if self.stopping:
                        for m in await c.barrier():
                            self.apply(m)
                        return True
                try:
                    m = await c.recv(timeout=0.05 if not self.pending else TIMEOUT)
                except asyncio.TimeoutError:
                    if self.pending:
                        self.fail("no answer within %.0f s; pending refs %r"
                                  % (TIMEOUT, sorted(self.pending)))
                    continue
                self.apply(m)
        except DROPS:
            if c is not None:
                c.abort()
            self.c = None
            return False

    async def new_write(self, c):
        targets = self.targets if self.board < BOARD_CAP else [
            t for t in self.targets if t[1] != "board"]
        scope, id = self.rng.choice(targets)
        self.board += id == "board"
        self.ref += 1
        mark = "w%d_%d" % (self.w, self.ref)
        patch = {mark: self.ref, "last": mark}
        if self.rng.random() < 1.0 / 12:
            patch["n"] = -1   # refused by the schema: `invalid`
        msg = {"type": "write", "scope": scope, "id": id, "ref": self.ref, "patch": patch}
        wid = self.h.invoke(self.client, self.node, self.conn, self.key(scope, id), self.ref,
                            patch, {mark: self.ref})
        self.pending[self.ref] = (msg, wid)
        self.sent_here.add(self.ref)
        await c.send(msg)

    def apply(self, m):
        t = m.get("type")
        if t in ("snapshot", "patch"):
            k = (m["scope"], m["id"])
            if t == "snapshot":
                self.h.snapshot(self.client, self.node, self.conn, self.key(*k), m["rev"],
                                m["value"])
                self.revs[k] = m["rev"]
            else:
                self.h.patch(self.client, self.node, self.conn, self.key(*k), m["from"],
                             m["rev"],
                             m["patch"], m.get("origin"))
                if m["from"] == self.revs.get(k):
                    self.revs[k] = m["rev"]
        elif t in ("ack", "error") and m.get("ref") in self.pending:
            _, wid = self.pending.pop(m["ref"])
            if t == "ack":
                k = (m["scope"], m["id"])
                self.h.ok(wid, m["rev"], m.get("from"))
                if m["ref"] in self.resent:
                    if m["rev"] <= self.resumed.get(k, 0):
                        self.from_record += 1
                    else:
                        self.after_kill += 1
                if m.get("from") is not None and m["from"] == self.revs.get(k):
                    self.revs[k] = m["rev"]
            elif m["code"] in ("rate_limited", "internal"):
                # Not applied and not recorded: the protocol says resend with the same ref.
                self.h.fail(wid, m["code"], m.get("message", ""))
                self.fail("unexpected %s: %r" % (m["code"], m))
            else:
                self.h.fail(wid, m["code"], m.get("message", ""))
                if m["code"] != "invalid":
                    self.fail("unexpected refusal %r" % m)
        elif t == "pong":
            pass
        else:
            self.fail("unexpected message %r" % m)


class HistorySingleNode(DaemonTestCase):

    async def reads(self, d, h, record):
        """A fresh connection per tenant: its snapshots, recorded with record(model key,
        snapshot). The shared models once (from the first tenant)."""
        seen = set()
        for t in TENANTS:
            c = await connect(d, t)
            try:
                _, snaps = await c.open()
            finally:
                await close_all([c])
            for (scope, id), s in sorted(snaps.items()):
                k = key_of(t, scope, id)
                if k not in seen:
                    seen.add(k)
                    record(k, s)
        return seen

    def test_sigkill_under_writes_then_the_checker_finds_nothing(self):
        print("\ntest_history_single_node: TP_HISTORY_SEED=%d TP_HISTORY_KILLS=%d "
              "TP_HISTORY_WRITES=%d" % (SEED, KILLS, WRITES), file=sys.stderr, flush=True)
        d = self.start_daemon(config())
        d.wait_log(r"storage sqlite=%s new" % DB)
        h = history.History()
        rng = random.Random(SEED)
        port = d.port
        writers = [Writer(h, lambda: [(NODE, port)], w, t) for w, t in WRITERS]
        inflight = []   # writes in flight at each kill under writes

        async def run():
            models = await self.reads(d, h, lambda k, s: h.initial(k, s["rev"], s["value"]))
            self.assertEqual(len(models), len(TENANTS) + len(SHARED))
            tasks = [asyncio.ensure_future(wr.run()) for wr in writers]

            def check_tasks():
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()
            try:
                for kill in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.1, 0.5) * SLOW)
                    check_tasks()
                    inflight.append(sum(len(wr.pending) for wr in writers))
                    # Kill and restart in one step of the loop: no writer runs in between.
                    d.crash()
                    d.restart(same_port=True)
                    self.assertEqual(d.port, port)
                    d.wait_log(r"storage sqlite=%s restored" % DB, start=d.log_start)
                await asyncio.sleep(0.2 * SLOW)
                for wr in writers:
                    wr.stopping = True
                done, _ = await asyncio.wait(tasks, timeout=10 * TIMEOUT)
                check_tasks()
                if len(done) != len(tasks):
                    self.fail("writers still running at the end: %r"
                              % [(wr.w, sorted(wr.pending)) for wr in writers])
                # Nobody writes now: a barrier brings each replica to the final revs, so
                # the checker compares every replica with the final read.
                for wr in writers:
                    for m in await wr.c.barrier():
                        wr.apply(m)
                await close_all([wr.c for wr in writers])
            finally:
                for task in tasks:
                    task.cancel()

        self.run_async(run(), timeout=max(60, 10 * KILLS) * SLOW)
        # Once more with nothing in flight: every ack must have been durable.
        d.crash()
        d.restart()
        d.wait_log(r"storage sqlite=%s restored" % DB, start=d.log_start)
        self.run_async(self.reads(d, h, lambda k, s: h.final(NODE, k, s["rev"], s["value"])))

        if os.environ.get("TP_HISTORY_DUMP"):
            h.dump(os.environ["TP_HISTORY_DUMP"])
        anomalies = history.check_all(h)
        s = history.summary(h)
        print("test_history_single_node: %d kills (writes in flight at each: %s, then 0); "
              "%d writes: %d acked, %d refused, %d unknown; %d resent (%d acked as stored "
              "before the kill, %d applied after it); %d sessions; %d events"
              % (KILLS + 1, inflight, s["writes"], s["ok"], s["fail"], s["info"],
                 s["resends"], sum(wr.from_record for wr in writers),
                 sum(wr.after_kill for wr in writers), sum(wr.sessions for wr in writers),
                 s["events"]),
              file=sys.stderr, flush=True)
        if anomalies:
            path = os.path.join(tempfile.mkdtemp(prefix="tp-history-"), "history.jsonl")
            h.dump(path)
            self.fail("TP_HISTORY_SEED=%d: %d anomalies (history kept in %s):\n%s"
                      % (SEED, len(anomalies), path,
                         "\n".join(str(a) for a in anomalies[:40])))
        # The run did what it is for: writes acked and refused, and kills that caught
        # writes in flight, answered after a resume.
        self.assertGreater(s["ok"], 10 * KILLS)
        self.assertGreater(s["fail"], 0)
        self.assertGreater(sum(inflight), 0, "no kill caught a write in flight")
        self.assertGreater(s["resends"], 0, "no write was resent after a kill")
        self.assertEqual(s["info"], 0, "every write is answered in the end")


if __name__ == "__main__":
    unittest.main()
