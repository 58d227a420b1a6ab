"""Issue 18's faults of a cluster (docs/cluster.md), against real redis-server processes and
real daemons on loopback, with python3-websockets clients, each recorded in a history.py
history and checked (no acked write lost, nothing applied twice, no rev going back on a
connection, every node and replica equal):

- a node SIGKILLed under writes: its writers (stable client ids, writes to private and shared
  models, one field of their own per write) reconnect to another node with `resume=1`, send
  `resume` with their client id and revs, and resend every write they have no answer for
  (same ref); Redis is read at the kill to tell, for each write in flight, whether it was in
  its model's log and whether its outcome was recorded (docs/internals/order.md's open point:
  a shared write appended without its outcome is applied again when resent elsewhere);
- a node cut from Redis by a TCP proxy the test controls (Proxy: it forwards the node's Redis
  connections and can cut them, refuse new ones, or drop Redis's replies, and later let them
  through again): a write waits while the link is down and goes through when it is back
  within 5 s, and is answered `internal` after 5 s otherwise; reads on the node still work
  (a new connection gets hello, snapshots, synced), the other nodes go on acking; once let
  through, the node reconnects, catches up with what the others wrote meanwhile (same revs,
  same values), and its writes are acked again;
- a node whose Redis connections lose Redis's replies (the commands still run: a cut in one
  direction, or a connection lost between Redis running a script and its answer): its writes
  are answered `internal` once the link's command timeout drops the connection, and resent
  (as the protocol says) they must not be applied a second time;
- the two ways the first test finds a moved writer's history broken, each alone and
  deterministic (Moving): a shared write whose node dies after its append ran in Redis and
  before it put the write's outcome, resent to another node after someone else wrote the
  model; a writer resuming on a node where its private model is dormant while that node's
  read of the log is slow (protocol.md, "Servers in a cluster": patches at or below the
  client's rev may follow, which it ignores; history.py reports them as revs going back, so
  this file's checks accept exactly those: resume_repeats);
- a Redis Cluster of three masters: private models of six tenants and four shared models,
  whose keys (cluster-log.md) land on all three masters; two writers on every node; every
  ack rev distinct per model, every node converges, each model's rev in Redis, on the master
  that owns its slot, is the nodes' final rev, and no command is redirected (MOVED, ASK)
  once the nodes have started.

Redis SIGKILLed and restarted from its AOF is test_cluster.py's.
TP_FAULTS_SEED picks the moment of the kill; the writers' choices follow TP_HISTORY_SEED
(test_history_single_node's); both are printed.
"""

import asyncio
import contextlib
import os
import random
import re
import selectors
import socket
import sys
import tempfile
import threading
import time
import unittest

import history
from harness import (DOC_SCHEMA, SLOW, TIMEOUT, Daemon, close_all, connect, open_client,
                     require_daemon, run_async)
from redis_server import RedisCluster, RedisServer

import test_cluster as tc
import test_history_single_node as single

SEED = int(os.environ.get("TP_FAULTS_SEED") or random.SystemRandom().randrange(1 << 31))
# docs/internals/order.md: a write waits for Redis at most TP__ORDER_WAIT_MS.
ORDER_WAIT = 5.0
# docs/internals/cluster-redis.md: a command with no reply for command_timeout_ms drops its
# connection.
COMMAND_TIMEOUT = 5.0


# -- a TCP proxy the test controls ------------------------------------------------------

class Proxy:
    """Forwards connections from a free loopback port to 127.0.0.1:target, in a thread of its
    own (the daemons talk to Redis all the time, not only while the test's loop runs).

    - cut(): closes every connection it carries and closes new ones as soon as they are
      accepted (the node sees its connections end, and its attempts fail);
    - mute(): goes on forwarding what the node sends, and drops what Redis answers (the
      commands run, the node never hears of it: a cut in one direction);
    - hold(): goes on forwarding what the node sends, and keeps what Redis answers until
      heal() (Redis slow to answer: nothing lost);
    - heal(): forwards again: what hold() kept first; the muted connections are closed (what
      they dropped cannot be taken back: Redis's stream of replies on them is broken), as a
      cut would."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.mode = "pass"
        self.accepted = 0
        self.refused = 0
        self.dropped_bytes = 0
        self.pairs = {}    # socket -> (peer socket, direction "up" (to Redis) or "down")
        self.muted = set()  # down sockets whose data is dropped
        self.held = {}      # down socket -> [data kept until heal()]
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.sel.register(self.lsock, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.orders = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self.thread.start()

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def _order(self, what):
        done = threading.Event()
        with self.lock:
            self.orders.append((what, done))
        self.wake_w.send(b"x")
        if not done.wait(TIMEOUT):
            raise AssertionError("the proxy did not take the order %r" % what)

    def cut(self):
        self._order("cut")

    def mute(self):
        self._order("mute")

    def hold(self):
        self._order("hold")

    def heal(self):
        self._order("pass")

    def close(self):
        if not self.stopping:
            self._order("stop")
            self.thread.join(TIMEOUT)

    def _drop(self, s):
        peer = self.pairs.pop(s, (None, None))[0]
        for x in (s, peer):
            if x is None:
                continue
            self.pairs.pop(x, None)
            self.muted.discard(x)
            self.held.pop(x, None)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(x)
            x.close()

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(1.0):
                if key.data == "wake":
                    self.wake_r.recv(4096)
                    with self.lock:
                        orders, self.orders = self.orders, []
                    for what, done in orders:
                        if what in ("cut", "stop"):
                            for s in list(self.pairs):
                                if s in self.pairs:
                                    self._drop(s)
                        if what == "pass":
                            for s in list(self.muted):
                                if s in self.pairs:
                                    self._drop(s)
                            for s, kept in list(self.held.items()):
                                try:
                                    self.pairs[s][0].sendall(b"".join(kept))
                                except OSError:
                                    self._drop(s)
                            self.held.clear()
                        if what == "hold":
                            for s, (_, d) in self.pairs.items():
                                if d == "down":
                                    self.held.setdefault(s, [])
                        if what == "mute":
                            self.muted.update(s for s, (_, d) in self.pairs.items()
                                              if d == "down")
                        if what == "stop":
                            self.stopping = True
                            self.lsock.close()
                        else:
                            self.mode = what
                        done.set()
                elif key.data == "accept":
                    try:
                        s, _ = self.lsock.accept()
                    except BlockingIOError:
                        continue
                    self.accepted += 1
                    if self.mode == "cut":
                        self.refused += 1
                        s.close()
                        continue
                    try:
                        up = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                    except OSError:
                        s.close()
                        continue
                    for x in (s, up):
                        x.setblocking(True)
                        x.settimeout(None)
                    self.pairs[s] = (up, "up")
                    self.pairs[up] = (s, "down")
                    if self.mode == "mute":
                        self.muted.add(up)
                    if self.mode == "hold":
                        self.held[up] = []
                    self.sel.register(s, selectors.EVENT_READ, "data")
                    self.sel.register(up, selectors.EVENT_READ, "data")
                else:
                    s = key.fileobj
                    if s not in self.pairs:
                        continue
                    try:
                        data = s.recv(1 << 16)
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(s)
                        continue
                    if s in self.muted:
                        self.dropped_bytes += len(data)
                        continue
                    if s in self.held:
                        self.held[s].append(data)
                        continue
                    try:
                        self.pairs[s][0].sendall(data)
                    except OSError:
                        self._drop(s)
        for s in list(self.pairs):
            if s in self.pairs:
                self._drop(s)
        self.wake_r.close()
        self.wake_w.close()


# -- Redis, read directly -----------------------------------------------------------------

def redis_ports_of(pid, redis_port):
    """The local ports of process pid's TCP connections to redis_port (its sockets in
    /proc/PID/fd, matched in /proc/net/tcp)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    with open("/proc/net/tcp", encoding="ascii") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], parts[9]
            if inode in inodes and int(remote.split(":")[1], 16) == redis_port:
                ports.add(int(local.split(":")[1], 16))
    return ports


def wait_redis_dropped(r, ports):
    """Waits until Redis no longer lists a client connection from one of these local ports:
    Redis frees a client after it has run every command the client's socket brought it, so
    whatever a dead node sent Redis has run (or never will)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        left = [c["addr"] for c in r.client_list()
                if int(c["addr"].rsplit(":", 1)[1]) in ports]
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError("Redis still lists the dead node's connections %r" % left)
        time.sleep(0.005)


def log_writers(r, key):
    """{(client id, ref): rev} of the writers in a model's log (cluster-log.md: an element is
    '1' kind rev ':' L client ref ':' entry)."""
    out = {}
    for e in r.lrange(key, 0, -1):
        if e[:1] != b"1":
            raise AssertionError("a log element of %s that is not version 1: %r" % (key, e[:40]))
        colon = e.index(b":", 2)
        rev = int(e[2:colon])
        n = e[colon + 1]
        if n:
            client = e[colon + 2:colon + 2 + n].decode()
            end = e.index(b":", colon + 2 + n)
            out[(client, int(e[colon + 2 + n:end]))] = rev
    return out


def rejected_calls(rc):
    """{(master, command): calls Redis refused} over a RedisCluster's masters (a MOVED or ASK
    is one: INFO commandstats, rejected_calls)."""
    out = {}
    for n in rc.nodes:
        for k, v in n.client().info("commandstats").items():
            if v.get("rejected_calls"):
                out[(n.name, k)] = v["rejected_calls"]
    return out


def model_keys(tenant, scope, id):
    """(hash key, log key) of a model (cluster-log.md, "Key layout"; these names need no
    escapes)."""
    if scope == "shared":
        return "tp:{shared:%s}:m" % id, "tp:{shared:%s}:l" % id
    return "tp:{%s}:m:%s" % (tenant, id), "tp:{%s}:l:%s" % (tenant, id)


# -- clients --------------------------------------------------------------------------------



async def settled(ds, tenants):
    for t in tenants:
        await tc.settled(ds, t)


class Recorder:
    """One client, step by step (the proxy tests), recorded in a History: its connections,
    what it was sent and its writes. Each write sets its own field `<client>_<ref>` (the
    mark) and `last`."""

    def __init__(self, h, tenant, client):
        self.h = h
        self.tenant = tenant
        self.client = client
        self.revs = {}
        self.wids = {}   # ref -> wid
        self.msgs = {}   # ref -> the write
        self.answers = {}  # ref -> its answer, not yet taken by answer()
        self.c = None
        self.node = None
        self.conn = None

    async def open(self, d, node, resume=False):
        c = await connect(d, self.tenant, query="resume=1" if resume else "")
        hello = await c.recv()
        assert hello["type"] == "hello", hello
        self.c, self.node, self.conn = c, node, hello["conn"]
        self.h.connect(self.client, node, self.conn, resume=resume)
        if resume:
            await c.send({"type": "resume", "client": self.client, "models": [
                {"scope": k[0], "id": k[1], "rev": r} for k, r in self.revs.items()]})
        else:
            await c.send({"type": "ping", "ref": 0, "client": self.client})
        while True:
            m = await c.recv()
            if m["type"] == "synced":
                return self
            self.apply(m)

    def key(self, scope, id):
        return single.key_of(self.tenant, scope, id)

    async def send(self, ref, scope, id, extra=None):
        """Sends write `ref` (again, when it was sent before: same message)."""
        if ref in self.msgs:
            self.h.resend(self.wids[ref], self.node, self.conn)
        else:
            mark = "%s_%d" % (self.client, ref)
            patch = {mark: ref, "last": mark}
            patch.update(extra or {})
            self.msgs[ref] = {"type": "write", "ref": ref, "scope": scope, "id": id,
                              "patch": patch}
            self.wids[ref] = self.h.invoke(self.client, self.node, self.conn,
                                           self.key(scope, id), ref, patch, {mark: ref})
        self.answers.pop(ref, None)
        await self.c.send(self.msgs[ref])

    async def answer(self, ref, timeout=None):
        """The ack or error of write ref (everything before it applied): (answer, seconds
        waited)."""
        t0 = time.monotonic()
        if ref not in self.answers:
            m, before = await self.c.wait_for(
                lambda m: m.get("ref") == ref and m.get("type") in ("ack", "error"), timeout)
            for x in before:
                self.apply(x)
            self.apply(m)
        return self.answers.pop(ref), time.monotonic() - t0

    async def write(self, ref, scope, id):
        await self.send(ref, scope, id)
        m, _ = await self.answer(ref)
        if m["type"] != "ack":
            raise AssertionError("%s: write %d refused: %r" % (self.client, ref, m))
        return m

    async def drain(self):
        for m in await self.c.barrier():
            self.apply(m)

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
                             m["rev"], m["patch"], m.get("origin"))
                if m["from"] == self.revs.get(k):
                    self.revs[k] = m["rev"]
        elif t == "ack":
            self.answers[m["ref"]] = m
            k = (m["scope"], m["id"])
            self.h.ok(self.wids[m["ref"]], m["rev"], m.get("from"))
            if m.get("from") is not None and m["from"] == self.revs.get(k):
                self.revs[k] = m["rev"]
        elif t == "error" and m.get("ref") in self.wids:
            self.answers[m["ref"]] = m
            self.h.fail(self.wids[m["ref"]], m["code"], m.get("message", ""))
        elif t not in ("pong", "presence_snapshot", "presence"):
            raise AssertionError("%s: unexpected message %r" % (self.client, m))


def resume_repeats(h, anomalies):
    """Splits the anomalies into (repeats, the others). A repeat is a patch at or below the rev
    its client held (history.py's rev-back) on a connection that opened with `resume`, carrying
    exactly the change the log has at that rev (another client was published the same patch,
    or the write acked at that rev was this patch from the same rev). protocol.md, "Servers in
    a cluster": a node that has not applied the rev a resuming client holds sends nothing for
    that model at once, "then the patches up to and past your rev: ignore those at or below
    your rev". history.py assumes a resume as a connection opens repeats nothing (true of one
    node), so it reports them."""
    resumed = {ev["conn"] for ev in h.events if ev["type"] == "connect" and ev["resume"]}
    published = h.published()
    invoked = {ev["wid"]: ev for ev in h.events if ev["type"] == "invoke"}
    acked = {}
    for ev in h.events:
        if ev["type"] == "ok" and ev.get("from") is not None:
            acked.setdefault((ev["model"], ev["rev"]), []).append(ev)
    repeats, rest = [], []
    for a in anomalies:
        ev = h.events[a.events[0]] if a.kind == "rev-back" and a.events else None
        ok = ev is not None and ev["type"] == "patch" and ev["conn"] in resumed and (
            any(p["i"] != ev["i"] and (p["from"], p["patch"]) == (ev["from"], ev["patch"])
                for p in published.get((ev["model"], ev["rev"]), []))
            or any((k["from"], invoked[k["wid"]]["patch"]) == (ev["from"], ev["patch"])
                   for k in acked.get((ev["model"], ev["rev"]), [])))
        (repeats if ok else rest).append(a)
    return repeats, rest


def check_history(testcase, h, what):
    """history.check_all, failing with the anomalies (the history kept in a file) but the
    repeats protocol.md allows after a resume on another node (resume_repeats). Returns
    (history.summary, the number of those repeats)."""
    repeats, anomalies = resume_repeats(h, history.check_all(h))
    if anomalies:
        path = os.path.join(tempfile.mkdtemp(prefix="tp-cluster-faults-"), "history.jsonl")
        h.dump(path)
        testcase.fail("TP_FAULTS_SEED=%d %s: %d anomalies (history kept in %s):\n%s"
                      % (SEED, what, len(anomalies), path,
                         "\n".join(str(a) for a in anomalies[:40])))
    return history.summary(h), len(repeats)


class FaultCase(unittest.TestCase):

    def setUp(self):
        require_daemon(self)
        self.stack = contextlib.ExitStack()
        self.addCleanup(self.stack.close)

    def node(self, cfg, crashes=False, models=4):
        """A daemon of the cluster, synced with Redis (it logs `listening` after that), stopped
        at the end with SIGTERM (exit 0), unless it crashes (then its log is checked)."""
        d = Daemon(config=cfg)
        if crashes:
            self.addCleanup(d.finish)
            d.start()
        else:
            self.stack.enter_context(d)
        d.wait_log(r"cluster node=%s redis=127\.0\.0\.1:\d+ synced models=%d"
                   % (cfg["cluster"]["node"], models), start=d.log_start)
        return d

    def run_async(self, coro, timeout=None):
        return run_async(coro, timeout)


# -- 1. a node SIGKILLed under writes --------------------------------------------------------

class NodeKilled(FaultCase):
    """Four writers (two per tenant) on node n1, two more on n3 the whole time; n1 SIGKILLed
    under writes; its writers resume on n2 and resend what was not answered."""

    def test_a_node_killed_under_writes_its_writers_resume_on_another_node(self):
        print("\ntest_cluster_faults: TP_FAULTS_SEED=%d (writers: TP_HISTORY_SEED=%d)"
              % (SEED, single.SEED), file=sys.stderr, flush=True)
        redis = self.stack.enter_context(RedisServer())
        r = redis.client()
        n1 = self.node(tc.config(redis, "n1"), crashes=True)
        n2 = self.node(tc.config(redis, "n2"))
        n3 = self.node(tc.config(redis, "n3"))
        h = history.History()
        rng = random.Random(SEED)
        place = {"movers": [("n1", n1.port)]}
        movers = [tc.Writer(h, lambda: place["movers"], w, t) for w, t in single.WRITERS]
        stayers = [tc.Writer(h, lambda: [("n3", n3.port)], w, t)
                   for w, t in ((4, "alice"), (5, "bob"))]
        writers = movers + stayers
        at_kill = {}   # (client, ref) -> {"model", "tenant", "in_log", "outcome"}

        def kill_n1():
            """n1 SIGKILLed; Redis read once it has run everything n1 sent; the movers sent
            to n2. No await: no writer runs meanwhile."""
            ports = redis_ports_of(n1.proc.pid, redis.port)
            self.assertTrue(ports, "n1 has no connection to Redis")
            n1.crash()
            wait_redis_dropped(r, ports)
            for wr in movers:
                for ref, (msg, _) in sorted(wr.pending.items()):
                    hkey, lkey = model_keys(wr.tenant, msg["scope"], msg["id"])
                    at_kill[(wr.client, ref)] = {
                        "model": "%s %s" % (msg["scope"], msg["id"]), "tenant": wr.tenant,
                        "in_log": log_writers(r, lkey).get((wr.client, ref)),
                        "outcome": r.hget("tp:{%s}:c:%s" % (wr.tenant, wr.client),
                                          "o%d" % ref)}
            place["movers"] = [("n2", n2.port)]

        async def run():
            await tc.reads(n2, "n2", tc.TENANTS, lambda k, s: h.initial(k, s["rev"], s["value"]))
            tasks = [asyncio.ensure_future(wr.run()) for wr in writers]

            try:
                # Mid-stream: the movers have had writes answered, and have some in flight.
                deadline = asyncio.get_running_loop().time() + TIMEOUT
                while sum(wr.ref - len(wr.pending) for wr in movers) < 60 + rng.randrange(60):
                    tc.raise_failed(tasks)
                    self.assertLess(asyncio.get_running_loop().time(), deadline,
                                    "the writers on n1 are not getting answers")
                    await asyncio.sleep(0.01)
                kill_n1()
                await asyncio.sleep(1.0 * SLOW)
                tc.raise_failed(tasks)
                for wr in writers:
                    wr.stopping = True
                done, _ = await asyncio.wait(tasks, timeout=6 * TIMEOUT)
                tc.raise_failed(tasks)
                if len(done) != len(tasks):
                    self.fail("writers still running at the end: %r"
                              % [(wr.w, wr.node, sorted(wr.pending)) for wr in writers])
                for wr in writers:
                    for m in await wr.c.barrier():
                        wr.apply(m)
                await close_all([wr.c for wr in writers])
            finally:
                for task in tasks:
                    task.cancel()
            await settled([n2, n3], tc.TENANTS)

        self.run_async(run(), timeout=60 * SLOW)
        # n1 again, on the same Redis: it reads everything back, and all three converge.
        n1.restart()
        n1.wait_log(r"cluster node=n1 redis=\S+ synced models=4", start=n1.log_start)

        async def finals():
            await settled([n1, n2, n3], tc.TENANTS)
            for name, d in (("n1", n1), ("n2", n2), ("n3", n3)):
                await tc.reads(d, name, tc.TENANTS,
                            lambda k, s, n=name: h.final(n, k, s["rev"], s["value"]))
        self.run_async(finals())
        n1.stop()

        kinds = {"in the log with its outcome": [], "in the log without its outcome": [],
                 "not in the log": []}
        for (client, ref), w in sorted(at_kill.items()):
            kind = ("not in the log" if w["in_log"] is None else
                    "in the log with its outcome" if w["outcome"] is not None else
                    "in the log without its outcome")
            kinds[kind].append("%s#%d (%s of %s, rev %s)" % (client, ref, w["model"],
                                                             w["tenant"], w["in_log"]))
        found = "; ".join("%d %s" % (len(v), k) for k, v in kinds.items())
        s = history.summary(h)
        print("test_cluster_faults (node killed): writes in flight on n1 at the kill: %d (%s); "
              "%d writes: %d acked, %d refused, %d unknown; %d resent (%d answered twice)"
              % (len(at_kill), found, s["writes"], s["ok"], s["fail"], s["info"], s["resends"],
                 sum(wr.repeated for wr in writers)), file=sys.stderr, flush=True)
        # A private write's outcome is recorded by the append's own script: never one without
        # the other.
        private_gap = [x for x in kinds["in the log without its outcome"] if "(private" in x]
        self.assertEqual(private_gap, [], "private writes in the log without their outcome")
        repeats, anomalies = resume_repeats(h, history.check_all(h))
        print("test_cluster_faults (node killed): %d patches repeated after a resume on n2, at "
              "or below the rev the client held (protocol.md, \"Servers in a cluster\")"
              % len(repeats), file=sys.stderr, flush=True)
        if anomalies:
            path = os.path.join(tempfile.mkdtemp(prefix="tp-cluster-faults-"), "history.jsonl")
            h.dump(path)
            window = kinds["in the log without its outcome"]
            window_wids = {x.split(" ")[0] for x in window}
            # What the anomalies are, to tell the known cause from anything else.
            # (A resend of such a write that merges to no change, an lww-map field lost to
            # a newer stamp, is acked at the current rev, another write's: ack-rev-shared.)
            twice = [a for a in anomalies
                     if a.kind in ("duplicate", "wrong-ack-rev", "ack-rev-shared")
                     and any(re.search(re.escape(w) + r"\b", a.detail) for w in window_wids)]
            final_counts = [a for a in anomalies if a.kind == "duplicate"
                            and "final read" in a.detail and window]
            other = [a for a in anomalies if a not in twice and a not in final_counts]
            self.fail(
                "TP_FAULTS_SEED=%d TP_HISTORY_SEED=%d: %d anomalies after n1 was killed (history "
                "kept in %s). At the kill: %s.\n"
                "- %d anomalies about the %d shared writes appended by n1 whose outcome it "
                "never put, applied again when resent to n2 (the open point of "
                "docs/internals/order.md, \"Exactly once\"; test_a_shared_write_whose_node_"
                "dies_before_its_outcome_... reproduces it): %s;\n"
                "- %d others.\n%s"
                % (SEED, single.SEED, len(anomalies), path, found, len(twice) + len(final_counts),
                   len(window), ", ".join(window) or "none", len(other),
                   "\n".join(str(a) for a in (other + twice + final_counts)[:40])))
        self.assertGreater(len(at_kill), 0, "no write was in flight on n1 when it was killed")
        self.assertGreater(s["resends"], 0, "no write was resent to n2")
        self.assertEqual(s["info"], 0, "every write is answered in the end")
        resumed = {ev["client"] for ev in h.events
                   if ev["type"] == "connect" and ev["node"] == "n2" and ev["resume"]}
        self.assertEqual(resumed, {wr.client for wr in movers},
                         "every writer of n1 resumed on n2")


# -- 2. a node cut from Redis -----------------------------------------------------------------

class NodeCut(FaultCase):

    def setUp(self):
        super().setUp()
        self.redis = self.stack.enter_context(RedisServer())
        self.proxy = Proxy(self.redis.port)
        self.addCleanup(self.proxy.close)
        cfg = tc.config(self.redis, "n1")
        cfg["cluster"]["redis"] = self.proxy.url() + "/0"
        self.n1 = self.node(cfg)
        self.n2 = self.node(tc.config(self.redis, "n2"))

    async def cut(self, how="cut"):
        """Cuts n1 from Redis (or mutes Redis's replies to it); returns the offset of n1's log
        where its `down` line is to be looked for."""
        start = len(self.n1.log())
        await asyncio.to_thread(getattr(self.proxy, how))
        if how == "cut":
            m = await asyncio.to_thread(self.n1.wait_log, r"cluster node=n1 redis=\S+ down",
                                        None, start)
            return m.end()
        return start

    async def heal(self, since):
        await asyncio.to_thread(self.proxy.heal)
        # Attempts back off up to 5 s (with jitter), per connection.
        for what in ("up", "resubscribed"):
            await asyncio.to_thread(self.n1.wait_log, r"cluster node=n1 redis=\S+ %s" % what,
                                    20 * SLOW, since)

    def test_a_node_cut_from_redis_holds_writes_back_serves_reads_and_recovers(self):
        n1, n2 = self.n1, self.n2
        n3 = self.node(tc.config(self.redis, "n3"))
        h = history.History()
        a1 = Recorder(h, "alice", "cut-a1")    # writes through n1
        w1 = Recorder(h, "bob", "cut-w1")      # only watches, on n1, the whole time
        b2 = Recorder(h, "bob", "cut-b2")      # writes through n2
        a3 = Recorder(h, "alice", "cut-a3")    # writes through n3
        out = {}

        async def run():
            await tc.reads(n2, "n2", tc.TENANTS, lambda k, s: h.initial(k, s["rev"], s["value"]))
            await a1.open(n1, "n1")
            await w1.open(n1, "n1")
            await b2.open(n2, "n2")
            await a3.open(n3, "n3")
            for rec in (a1, b2, a3):
                await rec.write(1, "private", "p")
                await rec.write(2, "shared", "board")

            # A short cut: a write waits for Redis, and is acked once the node is back
            # (within the 5 s a write waits).
            down = await self.cut()
            await a1.send(3, "shared", "tally")
            await a1.send(4, "private", "p")
            await asyncio.sleep(1.0)
            for m in await a1.c.barrier():
                self.assertNotIn(m.get("ref"), (3, 4), "a write answered while n1 is cut: %r"
                                 % m)
                a1.apply(m)
            t_heal = time.monotonic()
            await self.heal(down)
            for ref in (3, 4):
                m, _ = await a1.answer(ref, timeout=ORDER_WAIT + TIMEOUT)
                self.assertEqual(m["type"], "ack", "write %d, waiting for Redis while n1 was "
                                 "cut, then let through within %.0f s: %r" % (ref, ORDER_WAIT, m))
            out["short"] = time.monotonic() - t_heal

            # A long cut: writes on n1 wait 5 s, then are refused with `internal`; reads work
            # on n1; n2 and n3 go on acking.
            down = await self.cut()
            refused = out["refused"] = {}
            t0 = time.monotonic()
            await a1.send(5, "private", "p")
            await a1.send(6, "shared", "board")

            async def waiting():
                for ref in (5, 6):
                    m, _ = await a1.answer(ref, timeout=ORDER_WAIT + TIMEOUT)
                    refused[ref] = (m, time.monotonic() - t0)

            async def others():
                acks = []
                for i in range(3):
                    for rec in (b2, a3):
                        for ref, scope, id in ((10 + 3 * i, "private", "p"),
                                               (11 + 3 * i, "shared", "board"),
                                               (12 + 3 * i, "shared", "tally")):
                            t = time.monotonic()
                            m = await rec.write(ref, scope, id)
                            acks.append((rec.client, ref, m["rev"], time.monotonic() - t))
                return acks

            async def reading():
                # A new connection on n1 is served from what n1 holds: hello, snapshots,
                # synced, without waiting for Redis.
                got = {}
                for t in tc.TENANTS:
                    t1 = time.monotonic()
                    c, _, snaps = await open_client(n1, t)
                    got[t] = (time.monotonic() - t1, sorted(snaps))
                    await close_all([c])
                # And a connection open since before the cut answers a ping at once.
                t1 = time.monotonic()
                await w1.drain()
                got["ping"] = time.monotonic() - t1
                return got
            _, acks, got = await asyncio.gather(waiting(), others(), reading())
            out["acks"] = acks
            for t in tc.TENANTS:
                self.assertEqual(got[t][1], [("private", "p"), ("shared", "board"),
                                             ("shared", "tally")], "n1's snapshots while cut")
                self.assertLess(got[t][0], 2.0 * SLOW, "a new connection on n1 waited for Redis")
            self.assertLess(got["ping"], 2.0 * SLOW)
            for ref in (5, 6):
                m, waited = refused[ref]
                self.assertEqual((m["type"], m.get("code")), ("error", "internal"),
                                 "write %d on n1 while cut from Redis: %r" % (ref, m))
                self.assertTrue(m["message"].startswith("cluster: "), m)
                self.assertGreaterEqual(waited, ORDER_WAIT - 0.3,
                                        "write %d refused before it waited 5 s for Redis" % ref)
                self.assertLess(waited, ORDER_WAIT + 3.0 * SLOW)
            self.assertEqual(len(acks), 18)
            await self.heal(down)

            # n1 caught up: a new connection there sees what n2 and n3 wrote meanwhile, at the
            # same revs and values as on n2.
            await settled([n1, n2, n3], tc.TENANTS)
            board = (await tc.snapshots(n1, "alice"))[("shared", "board")]
            for client, ref, rev, _ in acks:
                if ref % 3 == 11 % 3:
                    self.assertIn("%s_%d" % (client, ref), board[1])
                    self.assertGreaterEqual(board[0], rev)
            # The refused writes, resent with their refs, are acked now.
            for ref in (5, 6):
                await a1.send(ref, *(("private", "p") if ref == 5 else ("shared", "board")))
                m, _ = await a1.answer(ref)
                self.assertEqual(m["type"], "ack", m)
            # And n1 acks new writes, to every kind of model.
            await a1.write(20, "shared", "tally")
            await a1.write(21, "private", "p")
            for rec in (a1, w1, b2, a3):
                await rec.drain()
            await close_all([rec.c for rec in (a1, w1, b2, a3)])
            await settled([n1, n2, n3], tc.TENANTS)
            for name, d in (("n1", n1), ("n2", n2), ("n3", n3)):
                await tc.reads(d, name, tc.TENANTS,
                            lambda k, s, n=name: h.final(n, k, s["rev"], s["value"]))
        self.run_async(run(), timeout=90 * SLOW)
        refused, acks = out["refused"], out["acks"]
        print("test_cluster_faults (cut): writes held 1 s while cut, acked %.2f s after the "
              "proxy let n1 through; in a long cut n1 refused its writes after %.2f and "
              "%.2f s; n2 and n3 acked 18 writes meanwhile, the slowest in %.3f s"
              % (out["short"], refused[5][1], refused[6][1], max(a[3] for a in acks)),
              file=sys.stderr, flush=True)
        s, _ = check_history(self, h, "(node cut)")
        self.assertEqual(s["info"], 0)
        # w1 stayed on n1 throughout: it got n2's and n3's writes made during the cut.
        seen = {ev["patch"].get("last") for ev in h.events if ev["type"] == "patch"
                and ev["client"] == "cut-w1" and isinstance(ev["patch"], dict)}
        for client, ref, _, _ in acks:
            if ref % 3 != 10 % 3 or client == "cut-b2":   # alice's private p is not bob's
                self.assertIn("%s_%d" % (client, ref), seen,
                              "n1's watcher missed a write made while n1 was cut")

    def test_writes_whose_replies_redis_never_sent_are_not_applied_twice(self):
        # The proxy forwards n1's commands to Redis and drops Redis's answers: the appends
        # run, n1 never hears of them. After the link's command timeout n1 drops the
        # connection, the writes are answered `internal`, and the writer resends them (the
        # protocol's answer to `internal`): once n1 is back, they must be answered as what
        # they were (applied once), not applied again.
        n1, n2 = self.n1, self.n2
        h = history.History()
        a1 = Recorder(h, "alice", "mute-a1")
        b2 = Recorder(h, "bob", "mute-b2")
        r = self.redis.client()
        out = {}

        async def run():
            await tc.reads(n2, "n2", tc.TENANTS, lambda k, s: h.initial(k, s["rev"], s["value"]))
            await a1.open(n1, "n1")
            await b2.open(n2, "n2")
            await a1.write(1, "private", "p")
            await a1.write(2, "shared", "board")
            since = await self.cut("mute")
            t0 = time.monotonic()
            await a1.send(3, "private", "p")
            await a1.send(4, "shared", "board")
            got = out["got"] = {}
            for ref in (3, 4):
                m, _ = await a1.answer(ref, timeout=COMMAND_TIMEOUT + ORDER_WAIT + TIMEOUT)
                got[ref] = (m, time.monotonic() - t0)
            in_log = out["in_log"] = {
                ref: log_writers(r, model_keys("alice", *k)[1]).get(("mute-a1", ref))
                for ref, k in ((3, ("private", "p")), (4, ("shared", "board")))}
            outcomes = out["outcomes"] = {
                ref: r.hget("tp:{alice}:c:mute-a1", "o%d" % ref) for ref in (3, 4)}
            for ref in (3, 4):
                m, _ = got[ref]
                self.assertEqual((m["type"], m.get("code")), ("error", "internal"), m)
                self.assertIsNotNone(in_log[ref], "write %d never reached Redis's log" % ref)
            self.assertIsNotNone(outcomes[3],
                                 "a private write's outcome is in its append's script")
            await self.heal(since)
            # Resent as the protocol says: the answer must be the write's (applied once).
            for ref in (3, 4):
                await a1.send(ref, *(("private", "p") if ref == 3 else ("shared", "board")))
                m, _ = await a1.answer(ref)
                out.setdefault("resent", {})[ref] = m
                self.assertEqual(m["type"], "ack", m)
            await a1.write(5, "shared", "board")
            await b2.write(1, "shared", "board")
            for rec in (a1, b2):
                await rec.drain()
            await close_all([a1.c, b2.c])
            await settled([n1, n2], tc.TENANTS)
            for name, d in (("n1", n1), ("n2", n2)):
                await tc.reads(d, name, tc.TENANTS,
                            lambda k, s, n=name: h.final(n, k, s["rev"], s["value"]))
        try:
            self.run_async(run(), timeout=90 * SLOW)
        finally:
            if "got" in out:
                print("test_cluster_faults (replies lost): answers %s; in the log at revs %s; "
                      "outcomes in Redis: %s; resent: %s; %d bytes of replies dropped"
                      % ({ref: (m.get("code") or m["type"], round(t, 2))
                          for ref, (m, t) in out["got"].items()},
                         out.get("in_log"),
                         {k: v is not None for k, v in out.get("outcomes", {}).items()},
                         {k: (m["type"], m.get("rev")) for k, m in out.get("resent", {}).items()},
                         self.proxy.dropped_bytes), file=sys.stderr, flush=True)
        check_history(self, h, "(replies lost, writes resent after `internal`)")


# -- the two causes test 1 meets, each alone ----------------------------------------------------

class Moving(FaultCase):
    """Deterministic reproductions of what NodeKilled's history can show: one client, one
    write at a time."""

    def test_a_shared_write_whose_node_dies_before_its_answer_is_not_applied_again(self):
        # n1 talks to Redis through the proxy, muted: n1's append of a shared write runs in
        # Redis, its answer never reaches n1. On one Redis the append's script records the
        # write's outcome with the change (docs/internals/order.md, "Exactly once"), so when n1
        # is then SIGKILLed the outcome is in Redis already. (On a Redis Cluster it would be a
        # second command after the answer: the open point order.md names.) The client resumes
        # on n2 and resends it with its ref: the original ack, not a second application.
        redis = self.stack.enter_context(RedisServer())
        proxy = Proxy(redis.port)
        self.addCleanup(proxy.close)
        cfg = tc.config(redis, "n1")
        cfg["cluster"]["redis"] = proxy.url() + "/0"
        n1 = self.node(cfg, crashes=True)
        n2 = self.node(tc.config(redis, "n2"))
        r = redis.client()
        h = history.History()
        a = Recorder(h, "alice", "window-a")
        b = Recorder(h, "bob", "window-b")
        out = {}

        async def run():
            await tc.reads(n2, "n2", tc.TENANTS, lambda k, s: h.initial(k, s["rev"], s["value"]))
            await a.open(n1, "n1")
            await a.write(1, "shared", "board")
            await asyncio.to_thread(proxy.mute)
            await a.send(2, "shared", "board")
            deadline = time.monotonic() + TIMEOUT
            while ("window-a", 2) not in log_writers(r, "tp:{shared:board}:l"):
                self.assertLess(time.monotonic(), deadline, "the append never reached Redis")
                await asyncio.sleep(0.01)
            out["in_log"] = log_writers(r, "tp:{shared:board}:l")[("window-a", 2)]
            await asyncio.to_thread(n1.crash)
            out["outcome"] = r.hget("tp:{alice}:c:window-a", "o2")
            with contextlib.suppress(Exception):
                await a.c.recv(timeout=TIMEOUT)
            h.info(a.wids[2], "n1 killed")
            # Someone else writes the board meanwhile: a second application of the write
            # would change the model again (its `last`), so it cannot pass for a no-op.
            await b.open(n2, "n2")
            await b.write(1, "shared", "board")
            await a.open(n2, "n2", resume=True)
            await a.send(2, "shared", "board")
            m, _ = await a.answer(2)
            out["resent"] = m
            for rec in (a, b):
                await rec.drain()
            await close_all([a.c, b.c])
            await tc.reads(n2, "n2", tc.TENANTS, lambda k, s: h.final("n2", k, s["rev"], s["value"]))
        self.run_async(run())
        self.assertIsNotNone(out["outcome"],
                             "one Redis: the shared write's outcome is stored with its change")
        m = out["resent"]
        _, anomalies = resume_repeats(h, history.check_all(h))
        self.assertEqual(
            (m["type"], m.get("rev")), ("ack", out["in_log"]),
            "a shared write appended at rev %d by n1, which died before its answer, resent to "
            "n2 with its ref, was answered %r: applied a second time "
            "(docs/internals/order.md, \"Exactly once\"); the history: %s"
            % (out["in_log"], m, "; ".join(str(x) for x in anomalies)))
        self.assertEqual(anomalies, [])

    def test_a_resume_on_a_node_where_the_model_is_dormant_goes_on_from_the_clients_rev(self):
        # alice writes her private model five times through n1; n2 has never had a
        # connection of alice, so her model there is dormant, at the rev n2 read at its start
        # (docs/internals/order.md, "Messages from the log"). Her connection drops and she
        # resumes on n2 with the revs she holds, while Redis is slow to answer n2 (the proxy
        # holds its replies for a moment, as a busy node or Redis would: NodeKilled meets it
        # under load). protocol.md, "Servers in a cluster": n2 sends nothing for that model at
        # once, then the patches up to and past her rev (those at or below it she ignores),
        # never a snapshot older than her rev; her next write is acked from her rev.
        redis = self.stack.enter_context(RedisServer())
        proxy = Proxy(redis.port)
        self.addCleanup(proxy.close)
        n1 = self.node(tc.config(redis, "n1"))
        cfg = tc.config(redis, "n2")
        cfg["cluster"]["redis"] = proxy.url() + "/0"
        n2 = self.node(cfg)
        h = history.History()
        a = Recorder(h, "alice", "dormant-a")
        out = {}

        async def run():
            await tc.reads(n1, "n1", tc.TENANTS, lambda k, s: h.initial(k, s["rev"], s["value"]))
            await a.open(n1, "n1")
            for ref in range(1, 6):
                await a.write(ref, "private", "p")
            out["held"] = a.revs[("private", "p")]
            a.c.abort()
            await asyncio.to_thread(proxy.hold)
            await a.open(n2, "n2", resume=True)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(proxy.heal)
            out["ack"] = await a.write(6, "private", "p")
            await a.drain()
            out["conn"] = a.conn
            await close_all([a.c])
            await settled([n1, n2], tc.TENANTS)
            for name, d in (("n1", n1), ("n2", n2)):
                await tc.reads(d, name, tc.TENANTS,
                            lambda k, s, n=name: h.final(n, k, s["rev"], s["value"]))
        self.run_async(run())
        held = out["held"]
        on_n2 = [ev for ev in h.events if ev.get("conn") == out["conn"]
                 and ev.get("model") == "private/alice/p" and ev["type"] in ("snapshot", "patch")]
        for ev in on_n2:
            self.assertFalse(ev["type"] == "snapshot" and ev["rev"] < held,
                             "a snapshot at rev %d after a resume at rev %d" % (ev["rev"], held))
        patches = [(ev["from"], ev["rev"]) for ev in on_n2 if ev["type"] == "patch"]
        for (f, r), (f2, r2) in zip(patches, patches[1:]):
            self.assertEqual(f2, r, "the patches after the resume skip a rev: %r" % patches)
        if patches:
            self.assertGreaterEqual(patches[-1][1], held, patches)
        self.assertEqual((out["ack"]["from"], out["ack"]["rev"]), (held, held + 1))
        _, repeats = check_history(self, h, "(resume where the model is dormant)")
        print("test_cluster_faults (dormant): resumed at rev %d; n2 then sent the patches %r "
              "(%d at or below that rev, which the client ignores)" % (held, patches, repeats),
              file=sys.stderr, flush=True)


# -- 3. a Redis Cluster of three masters ---------------------------------------------------------

CT_TENANTS = tuple("t%d" % i for i in range(6))
CT_SHARED = ("board", "tally", "s2", "s3")


def cluster_config(url, node):
    everyone = {t: "write" for t in CT_TENANTS}
    return {
        "autosync_ms": 50,
        "cluster": {"redis": url, "node": node},
        "schemas": {"Doc": DOC_SCHEMA},
        "tenants": {t: {"models": {"p": {"schema": "Doc", "value": {"title": t}}}}
                    for t in CT_TENANTS},
        "shared": {s: {"schema": "Doc", "merge": "lww-map" if i % 2 == 0 else "lww",
                       "value": {"title": s}, "subscribers": dict(everyone)}
                   for i, s in enumerate(CT_SHARED)},
        "limits": {"writes_per_second": 1000000},
    }


class ThreeMasters(FaultCase):

    DURATION = 2.5

    def test_nodes_on_a_three_master_redis_cluster_converge(self):
        rc = self.stack.enter_context(RedisCluster(masters=3))
        keys = {}
        for t in CT_TENANTS:
            keys[single.key_of(t, "private", "p")] = model_keys(t, "private", "p")[0]
        for s in CT_SHARED:
            keys[single.key_of(None, "shared", s)] = model_keys(None, "shared", s)[0]
        owners = {k: rc.owner(key) for k, key in keys.items()}
        masters = {o.port for o in owners.values()}
        # The names are fixed and `redis-cli --cluster create` splits the slots evenly: the
        # models' keys land on the three masters.
        self.assertEqual(len(masters), 3, "the models' keys are on %d master(s) only"
                         % len(masters))
        # Each node names another master as its seed.
        models = len(CT_TENANTS) + len(CT_SHARED)
        ns = [self.node(cluster_config(rc.nodes[i].url() + "/0", "n%d" % (i + 1)),
                        models=models) for i in range(3)]
        h = history.History()
        up = [("n%d" % (i + 1), d.port) for i, d in enumerate(ns)]
        writers = []
        for i in range(6):
            wr = tc.Writer(h, lambda i=i: [up[i % 3]], i, CT_TENANTS[i])
            wr.targets = [("private", "p")] + [("shared", s) for s in CT_SHARED]
            writers.append(wr)

        out = {}

        async def run():
            await tc.reads(ns[0], "n1", CT_TENANTS, lambda k, s: h.initial(k, s["rev"], s["value"]))
            out["rejected"] = await asyncio.to_thread(rejected_calls, rc)
            tasks = [asyncio.ensure_future(wr.run()) for wr in writers]

            try:
                await asyncio.sleep(self.DURATION)
                tc.raise_failed(tasks)
                for wr in writers:
                    wr.stopping = True
                done, _ = await asyncio.wait(tasks, timeout=6 * TIMEOUT)
                tc.raise_failed(tasks)
                self.assertEqual(len(done), len(tasks), "writers still running at the end")
                for wr in writers:
                    for m in await wr.c.barrier():
                        wr.apply(m)
                await close_all([wr.c for wr in writers])
            finally:
                for task in tasks:
                    task.cancel()
            await settled(ns, CT_TENANTS)
            for name, d in zip(("n1", "n2", "n3"), ns):
                await tc.reads(d, name, CT_TENANTS,
                            lambda k, s, n=name: h.final(n, k, s["rev"], s["value"]))
        self.run_async(run(), timeout=60 * SLOW)
        s, _ = check_history(self, h, "(three masters)")
        self.assertEqual(history.check_distinct_ack_revs(h), [])
        self.assertGreater(s["ok"], 60)
        self.assertEqual(s["info"], 0)
        # Each model's state in Redis is on the master of its slot, at the nodes' final rev.
        finals = h.finals()
        written = {ev["model"] for ev in h.events if ev["type"] == "ok"}
        for k, key in sorted(keys.items()):
            rev = owners[k].client().hget(key, "rev")
            self.assertIsNotNone(rev, "%s (%s) not on its master %s" % (k, key, owners[k].name))
            self.assertEqual(int(rev), finals[k]["n1"]["rev"], k)
        self.assertEqual(written, set(keys), "a model nobody wrote")
        spread = {}
        for k in keys:
            spread.setdefault(owners[k].name, []).append(k)
        # Every command of the writes went to the master of its key's slot: none was
        # refused with MOVED or ASK (Redis counts them as rejected calls).
        self.assertEqual(rejected_calls(rc), out["rejected"],
                         "commands sent to a master that does not own their slot while the "
                         "nodes wrote")
        start_redirects = sum(out["rejected"].values())
        print("test_cluster_faults (three masters): models per master %s; %d writes: %d acked, "
              "%d refused; %d commands redirected while the nodes started, none after"
              % ({n: len(v) for n, v in sorted(spread.items())}, s["writes"], s["ok"], s["fail"],
                 start_redirects), file=sys.stderr, flush=True)


if __name__ == "__main__":
    unittest.main()
