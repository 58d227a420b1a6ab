"""Issue 18: several transportsd nodes on one Redis form one hub (docs/cluster.md).

Every test starts its own redis-server (redis_server.RedisServer: appendonly yes, appendfsync
always, on a free loopback port) and three daemons with the same config, `cluster` pointing at
it: tenants alice and bob, each with a private model `p`, and two shared models both tenants
write, `board` (lww-map) and `tally` (lww). Clients are python3-websockets speaking
docs/protocol.md, connected to different nodes:

- a write on node 1 reaches subscribers on node 3 as the same patch at the same rev, for a
  shared and for a private model;
- concurrent writers on every node to one shared model get distinct ack revs, and afterwards
  every node's snapshot (a fresh connection) is the same value at rev = initial + writes;
- a node started after writes were made starts from Redis's state, not from the config's
  values, and so does a whole cluster restarted on the same Redis;
- a start against a Redis that does not answer exits 1 with one line naming HOST:PORT and
  the bound, never the URL's password;
- the history checker (history.py) over writers spread on the three nodes, dropped and
  reconnecting now and then with `resume`: no acked write lost, nothing applied twice, no rev
  going back or published twice, no node or replica diverging.
"""

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

import history
from harness import (DOC_SCHEMA, SLOW, TIMEOUT, Client, Daemon, DaemonError, close_all,
                     connect, open_client, require_daemon, run_async, sanitizer_env)
from redis_server import RedisServer, _free_port

import test_history_single_node as single

TENANTS = ("alice", "bob")
SHARED = ("board", "tally")
NODES = ("n1", "n2", "n3")
SEED = int(os.environ.get("TP_CLUSTER_SEED") or random.SystemRandom().randrange(1 << 31))
ANY_NODE = os.environ.get("TP_CLUSTER_ANY_NODE", "") not in ("", "0")


def config(redis, node, title_suffix="", **cluster):
    everyone = {t: "write" for t in TENANTS}
    c = {"redis": redis.url() + "/0", "node": node}
    c.update(cluster)
    return {
        "autosync_ms": 50,
        "cluster": c,
        "schemas": {"Doc": DOC_SCHEMA},
        "tenants": {t: {"models": {"p": {"schema": "Doc", "value": {"title": t + title_suffix}}}}
                    for t in TENANTS},
        "shared": {
            "board": {"schema": "Doc", "merge": "lww-map",
                      "value": {"title": "Board" + title_suffix}, "subscribers": dict(everyone)},
            "tally": {"schema": "Doc", "merge": "lww",
                      "value": {"title": "Tally" + title_suffix}, "subscribers": dict(everyone)},
        },
        "limits": {"writes_per_second": 1000000},
    }


async def snapshots(d, tenant):
    """A fresh connection's snapshots on node d: {(scope, id): (rev, value)}."""
    c, _, snaps = await open_client(d, tenant)
    await close_all([c])
    return {k: (s["rev"], s["value"]) for k, s in snaps.items()}


async def settled(ds, tenant, want=None):
    """Fresh snapshots of every node in ds, read again until they are all equal (and, with
    want {(scope, id): rev}, at those revs): a node applies another node's change a moment
    after that node acked it (pub/sub). Returns {daemon: snapshots}."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        got = {d: await snapshots(d, tenant) for d in ds}
        first = got[ds[0]]
        if all(g == first for g in got.values()) and all(
                first[k][0] == rev for k, rev in (want or {}).items()):
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the nodes did not settle on one state%s: %r" % (
                " at %r" % want if want else "", list(got.values())))
        await asyncio.sleep(0.02)


async def write(c, ref, scope, id, patch):
    """Sends a write and returns (ack, messages before it)."""
    await c.send({"type": "write", "ref": ref, "scope": scope, "id": id, "patch": patch})
    m, before = await c.wait_for(lambda m: m.get("ref") == ref and m.get("type") in
                                 ("ack", "error"))
    if m["type"] != "ack":
        raise AssertionError("write %r refused: %r" % (patch, m))
    return m, before



def raise_failed(tasks):
    """Raises the exception of the first writer task that ended with one."""
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise task.exception()


async def reads(d, node, tenants, record):
    """A fresh connection per tenant on d: record(model key, snapshot) for each model, the
    shared ones once."""
    seen = set()
    for t in tenants:
        c = await connect(d, t)
        try:
            _, snaps = await c.open()
        finally:
            await close_all([c])
        for (scope, id), s in sorted(snaps.items()):
            k = single.key_of(t, scope, id)
            if k not in seen:
                seen.add(k)
                record(k, s)
    return seen

class ClusterTestCase(unittest.TestCase):

    def setUp(self):
        require_daemon(self)
        self.stack = contextlib.ExitStack()
        self.addCleanup(self.stack.close)
        self.redis = self.stack.enter_context(RedisServer())

    def node(self, name, crashes=False, **kw):
        """A daemon of the cluster, started (it logs `listening` once synced with Redis) and
        stopped at the end (SIGTERM, exit 0), unless it crashes (then only its log is
        checked)."""
        d = Daemon(config=config(self.redis, name, **kw))
        if crashes:
            self.addCleanup(d.finish)
            d.start()
        else:
            self.stack.enter_context(d)
        d.wait_log(r"cluster node=%s redis=127\.0\.0\.1:%d synced models=4"
                   % (name, self.redis.port), start=d.log_start)
        return d

    def nodes(self, n=3):
        return [self.node(NODES[i]) for i in range(n)]

    def run_async(self, coro, timeout=None):
        return run_async(coro, timeout)


class Fanout(ClusterTestCase):

    def test_a_write_on_node_1_reaches_node_3_at_the_same_rev(self):
        n1, n2, n3 = self.nodes()

        async def run():
            a1, _, s1 = await open_client(n1, "alice")
            b3, _, s3 = await open_client(n3, "bob")
            a3, _, t3 = await open_client(n3, "alice")
            # Every node shows the same state to start with.
            self.assertEqual(s1[("shared", "board")]["rev"], s3[("shared", "board")]["rev"])
            self.assertEqual(s1[("shared", "board")]["value"], s3[("shared", "board")]["value"])
            self.assertEqual(s1[("private", "p")]["rev"], t3[("private", "p")]["rev"])
            base = s1[("shared", "board")]["rev"]

            ack, before = await write(a1, 1, "shared", "board", {"body": "from n1"})
            patches = [m for m in before if m.get("type") == "patch"]
            self.assertEqual(len(patches), 1, before)
            self.assertEqual(ack["rev"], base + 1)
            self.assertNotIn("from", ack, "a shared write's ack has no from")
            own = patches[0]
            self.assertEqual((own["from"], own["rev"]), (base, base + 1))
            self.assertEqual(own["origin"], a1.hello["conn"])
            # Node 3: bob and alice get the very same patch (same revs, same bytes).
            for c in (b3, a3):
                m, _ = await c.wait_type("patch")
                self.assertEqual(m, own, "the patch on node 3 differs from node 1's")

            # A private write on node 1 reaches alice's other connection on node 3.
            prev = s1[("private", "p")]["rev"]
            ack, before = await write(a1, 2, "private", "p", {"body": "private n1"})
            self.assertEqual((ack["from"], ack["rev"]), (prev, prev + 1))
            m, _ = await a3.wait_type("patch")
            self.assertEqual((m["scope"], m["id"], m["from"], m["rev"]),
                             ("private", "p", prev, prev + 1))
            self.assertEqual(m["patch"], {"body": "private n1"})
            self.assertEqual(m["origin"], a1.hello["conn"])
            # Bob (another tenant) sees nothing of alice's private model.
            for m in await b3.barrier():
                self.assertNotEqual((m.get("scope"), m.get("id")), ("private", "p"), m)

            # And back: a write on node 3 reaches node 1.
            ack, _ = await write(b3, 1, "shared", "board", {"n": 7})
            self.assertEqual(ack["rev"], base + 2)
            m, _ = await a1.wait_type("patch")
            self.assertEqual((m["from"], m["rev"], m["patch"]), (base + 1, base + 2, {"n": 7}))
            await close_all([a1, b3, a3])

            # Node 2 had no connection: a fresh one sees everything (once it applied the
            # last change, published a moment ago).
            snaps = (await settled([n1, n2, n3], "alice", {("shared", "board"): base + 2}))[n2]
            self.assertEqual(snaps[("shared", "board")][0], base + 2)
            self.assertEqual(snaps[("shared", "board")][1]["body"], "from n1")
            self.assertEqual(snaps[("shared", "board")][1]["n"], 7)
            self.assertEqual(snaps[("private", "p")], (prev + 1, dict(
                t3[("private", "p")]["value"], body="private n1")))

        self.run_async(run())


class InRedis(ClusterTestCase):

    def test_history_bounds_each_log_and_private_outcomes_are_recorded(self):
        # cluster.history is the log's keep: 5 entries per model, whatever was written.
        d = self.node("n1", history=5)
        r = self.redis.client()

        async def run():
            a, _, _ = await open_client(d, "alice")
            await a.send({"type": "ping", "ref": 0, "client": "kept-1"})
            await a.wait_type("pong")
            for i in range(1, 21):
                await write(a, i, "shared", "board", {"f%d" % i: i})
            acks = []
            for i in range(21, 24):
                ack, _ = await write(a, i, "private", "p", {"body": "v%d" % i})
                acks.append(ack)
            await close_all([a])
            return acks
        acks = self.run_async(run())
        board = r.hgetall("tp:{shared:board}:m")
        self.assertEqual(r.llen("tp:{shared:board}:l"), 5)
        rev = int(board[b"rev"])
        # The newest 5 entries, in rev order: each a log element carrying its rev.
        revs = [int(e[2:e.index(b":")]) for e in r.lrange("tp:{shared:board}:l", 0, -1)]
        self.assertEqual(revs, list(range(rev - 4, rev + 1)))
        self.assertEqual(r.llen("tp:{alice}:l:p"), 4)  # the creation and three writes
        # A private write's ack is its recorded outcome, byte for byte what the client got.
        outcomes = r.hgetall("tp:{alice}:c:kept-1")
        for ack in acks:
            self.assertEqual(json.loads(outcomes[b"o%d" % ack["ref"]]), ack)
        self.assertEqual(int(outcomes[b"highest"]), 23)


class ExactlyOnce(ClusterTestCase):

    def test_writes_resent_to_another_node_after_a_crash_get_their_original_answers(self):
        n1, n2 = self.node("n1", crashes=True), self.node("n2")
        r = self.redis.client()
        client = "eo-%d" % SEED

        async def first():
            a, _, snaps = await open_client(n1, "alice")
            await a.send({"type": "ping", "ref": 0, "client": client})
            await a.wait_type("pong")
            acks = {}
            acks[1], _ = await write(a, 1, "private", "p", {"body": "once"})
            acks[2], _ = await write(a, 2, "shared", "board", {"once": 1})
            await a.send({"type": "write", "ref": 3, "scope": "shared", "id": "board",
                          "patch": {"n": -1}})   # refused by the schema: recorded too
            acks[3], _ = await a.wait_for(lambda m: m.get("ref") == 3)
            self.assertEqual(acks[3]["code"], "invalid")
            a.abort()
            return acks, {k: s["rev"] for k, s in snaps.items()}
        acks, revs = self.run_async(first())
        # The acks are in Redis (a shared write's a moment after the ack left): then node 1
        # dies, with nothing of the client's record anywhere but Redis. The refusal is not
        # (it never reached the log): resent, it is refused again, as the first time.
        key = "tp:{alice}:c:%s" % client
        deadline = time.monotonic() + TIMEOUT
        while not all(r.hexists(key, "o%d" % ref) for ref in (1, 2)):
            self.assertLess(time.monotonic(), deadline, r.hgetall(key))
            time.sleep(0.01)
        n1.crash()

        async def again():
            c = await connect(n2, "alice", query="resume=1")
            await c.recv()   # hello
            await c.send({"type": "resume", "client": client, "models": [
                {"scope": "private", "id": "p", "rev": revs[("private", "p")]},
                {"scope": "shared", "id": "board", "rev": revs[("shared", "board")]}]})
            await c.wait_type("synced")
            await c.send({"type": "write", "ref": 1, "scope": "private", "id": "p",
                          "patch": {"body": "once"}})
            await c.send({"type": "write", "ref": 2, "scope": "shared", "id": "board",
                          "patch": {"once": 1}})
            await c.send({"type": "write", "ref": 3, "scope": "shared", "id": "board",
                          "patch": {"n": -1}})
            got = {}
            while len(got) < 3:
                m, _ = await c.wait_for(lambda m: m.get("ref") in (1, 2, 3))
                got[m["ref"]] = m
            await close_all([c])
            return got
        got = self.run_async(again())
        self.assertEqual(got, acks, "the original answers, not new ones")
        snaps = self.run_async(snapshots(n2, "alice"))
        self.assertEqual(snaps[("private", "p")][0], acks[1]["rev"], "applied again")
        self.assertEqual(snaps[("shared", "board")][0], acks[2]["rev"], "applied again")


class Concurrent(ClusterTestCase):

    WRITERS_PER_NODE = 3
    WRITES = 40

    def test_concurrent_writers_on_every_node_get_distinct_revs_and_converge(self):
        ns = self.nodes()

        async def run():
            start = {}
            for d in ns:
                snaps = await snapshots(d, "alice")
                start[d] = snaps
            first = start[ns[0]]
            for d in ns[1:]:
                self.assertEqual(start[d], first, "the nodes disagree before any write")
            base = {m: first[("shared", m)][0] for m in SHARED}

            async def writer(d, tenant, w):
                c, _, _ = await open_client(d, tenant)
                acks = []
                try:
                    for i in range(self.WRITES):
                        model = SHARED[i % 2]
                        mark = "w%d_%d" % (w, i)
                        ack, _ = await write(c, i + 1, "shared", model, {mark: i, "last": mark})
                        acks.append((model, ack["rev"], mark))
                finally:
                    await close_all([c])
                return acks

            jobs = []
            w = 0
            for d in ns:
                for k in range(self.WRITERS_PER_NODE):
                    jobs.append(writer(d, TENANTS[k % 2], w))
                    w += 1
            results = await asyncio.gather(*jobs)
            acks = [a for r in results for a in r]
            for model in SHARED:
                revs = [rev for m, rev, _ in acks if m == model]
                self.assertEqual(len(revs), len(set(revs)),
                                 "%s: two writes acked at one rev: %r" % (model, sorted(revs)))
                # Every write changed the model (a field of its own): one rev each, and the
                # revs are exactly the ones after the start.
                self.assertEqual(sorted(revs), list(range(base[model] + 1,
                                                          base[model] + 1 + len(revs))))
            # After quiescence: every node's fresh snapshot is the same, at base + writes.
            finals = await settled(ns, "bob", {("shared", m): base[m] + len(
                [1 for a in acks if a[0] == m]) for m in SHARED})
            for model in SHARED:
                n = len([1 for m, _, _ in acks if m == model])
                for d in ns:
                    rev, value = finals[d][("shared", model)]
                    self.assertEqual(rev, base[model] + n, "%s on a node" % model)
                    self.assertEqual(value, finals[ns[0]][("shared", model)][1],
                                     "%s differs between nodes" % model)
            board = finals[ns[0]][("shared", "board")][1]
            for m, rev, mark in acks:
                if m == "board":
                    self.assertIn(mark, board, "an acked lww-map write is missing")
            # lww: the last write by rev wins the whole value on every node.
            last = max((rev, mark) for m, rev, mark in acks if m == "tally")[1]
            self.assertEqual(finals[ns[0]][("shared", "tally")][1].get("last"), last)

        self.run_async(run(), timeout=60 * SLOW)


class FromRedis(ClusterTestCase):

    def test_a_node_started_later_starts_from_redis_not_the_config(self):
        n1 = self.node("n1")

        async def before():
            a, _, _ = await open_client(n1, "alice")
            await write(a, 1, "shared", "board", {"body": "written before n2"})
            await write(a, 2, "private", "p", {"body": "alice's, before n2"})
            await write(a, 3, "shared", "tally", {"title": "Tally renamed"})
            await close_all([a])
            return await snapshots(n1, "alice")
        seen = self.run_async(before())

        # Node 2's config names other initial values: Redis holds the models, so they lose.
        n2 = self.stack.enter_context(Daemon(config=config(self.redis, "n2", " (n2 config)")))
        n2.wait_log(r"cluster node=n2 redis=127\.0\.0\.1:\d+ synced models=4")
        got = self.run_async(snapshots(n2, "alice"))
        self.assertEqual(got, seen)
        self.assertEqual(got[("shared", "tally")][1]["title"], "Tally renamed")
        self.assertEqual(got[("private", "p")][1]["body"], "alice's, before n2")
        # Bob's private model was never written: still the config's value of the node that
        # created it (n1), at the same rev.
        self.assertEqual(self.run_async(snapshots(n2, "bob"))[("private", "p")],
                         self.run_async(snapshots(n1, "bob"))[("private", "p")])

        # The whole cluster stopped and one node started again: nothing is on disk on the
        # node's side, everything comes back from Redis.
        n1.stop()
        n2.stop()
        n3 = self.stack.enter_context(Daemon(config=config(self.redis, "n3", " (n3 config)")))
        n3.wait_log(r"cluster node=n3 redis=127\.0\.0\.1:\d+ synced models=4")
        self.assertEqual(self.run_async(snapshots(n3, "alice")), seen)
        self.assertEqual(sorted(os.listdir(n3.dir)), ["config.json", "transportsd.log"],
                         "a cluster node keeps nothing on disk")

    def test_acked_writes_survive_redis_killed_and_restarted(self):
        n1, n2 = self.nodes(2)

        async def writes(first):
            a, _, _ = await open_client(n1, "alice")
            acks = []
            for i in range(20):
                ack, _ = await write(a, first + i, "shared", "board", {"k%d" % (first + i): i})
                acks.append(ack["rev"])
            await close_all([a])
            return acks
        acks = self.run_async(writes(1))

        async def caught_up(d, rev):
            # Node 2 gets node 1's changes through pub/sub, a moment after the acks.
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while (await snapshots(d, "alice"))[("shared", "board")][0] != rev:
                if asyncio.get_running_loop().time() > deadline:
                    self.fail("node 2 did not reach rev %d" % rev)
                await asyncio.sleep(0.02)
        self.run_async(caught_up(n2, acks[-1]))
        self.redis.kill()
        down = n1.wait_log(r"cluster node=n1 redis=127\.0\.0\.1:\d+ down")
        n2.wait_log(r"cluster node=n2 redis=127\.0\.0\.1:\d+ down")

        async def while_down():
            # What the node holds is still served (a new connection's snapshots), and a write
            # is refused at once with `internal`, which the client resends later.
            snaps = await snapshots(n2, "alice")
            self.assertEqual(snaps[("shared", "board")][0], acks[-1])
            a, _, _ = await open_client(n1, "alice")
            await a.send({"type": "write", "ref": 50, "scope": "shared", "id": "board",
                          "patch": {"while": "down"}})
            m, _ = await a.wait_for(lambda m: m.get("ref") == 50)
            self.assertEqual((m["type"], m["code"]), ("error", "internal"), m)
            self.assertTrue(m["message"].startswith("cluster: "), m)
            await close_all([a])
        self.run_async(while_down())
        self.redis.restart()
        # The nodes reconnect by themselves (backoff from 100 ms); then writes are acked
        # again, and every write acked before the kill is there, on both nodes.
        n1.wait_log(r"cluster node=n1 redis=127\.0\.0\.1:\d+ up", start=down.end())

        async def after():
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            a, _, _ = await open_client(n2, "bob")
            ref = 100
            while True:
                ref += 1
                await a.send({"type": "write", "ref": ref, "scope": "shared", "id": "board",
                              "patch": {"after": ref}})
                m, _ = await a.wait_for(lambda m: m.get("ref") == ref)
                if m["type"] == "ack":
                    break
                # Redis was away: the protocol's answer is internal, resend later.
                self.assertEqual(m.get("code"), "internal", m)
                if asyncio.get_running_loop().time() > deadline:
                    self.fail("no write acked after Redis came back: %r" % m)
                await asyncio.sleep(0.1)
            await close_all([a])
            return m["rev"]
        rev = self.run_async(after())
        self.assertGreater(rev, acks[-1])
        finals = self.run_async(settled([n1, n2], "alice", {("shared", "board"): rev}))
        for d in (n1, n2):
            board = finals[d][("shared", "board")]
            for i in range(20):
                self.assertEqual(board[1].get("k%d" % (i + 1)), i)
            self.assertNotIn("while", board[1], "a write refused with internal was applied")


class StartUp(ClusterTestCase):

    def test_redis_that_does_not_answer_exits_1_with_host_port(self):
        # A port nobody listens on (the Redis of setUp stopped on it).
        port = self.redis.port
        self.redis.stop()
        cfg = config(self.redis, "n1", connect_timeout_ms=700)
        cfg["cluster"]["redis"] = "redis://user:s3cret-pw@127.0.0.1:%d/0" % port
        d = Daemon(config=cfg)
        with self.assertRaises(DaemonError) as ctx:
            d.start()
        self.addCleanup(d.cleanup)
        self.assertEqual(d.exit_code, 1, ctx.exception)
        log = d.log()
        self.assertIn("transportsd: cluster: redis at 127.0.0.1:%d did not answer within "
                      "700 ms: " % port, log)
        self.assertNotIn("listening", log)
        self.assertNotIn("s3cret-pw", log, "the URL's password in the log")
        d.check_log()

    def test_start_waits_for_redis_within_the_bound(self):
        # Redis comes up while the node waits for it: the node syncs, then serves. A client
        # that connects meanwhile waits in the listen backlog and is served once it is synced.
        port = self.redis.port
        self.redis.stop()
        listen = _free_port()
        d = Daemon(config=config(self.redis, "n1", connect_timeout_ms=int(8000 * SLOW)),
                   listen="127.0.0.1:%d" % listen)
        self.addCleanup(d.cleanup)
        # Daemon.start() would block until `listening`: the daemon is started by hand (from
        # this thread, as PR_SET_PDEATHSIG wants), and Redis later.
        log = open(d.log_path, "ab")
        self.addCleanup(log.close)
        d.proc = subprocess.Popen(d.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  cwd=d.dir, env=sanitizer_env())
        d.wait_log(r"cluster node=n1 redis=127\.0\.0\.1:%d unreachable" % port)
        self.assertNotIn("listening", d.log(), "served before Redis answered")

        async def run():
            # The listener is bound (tp_server_new) but nothing accepts yet: the TCP
            # connection is made, its handshake is not answered while the node waits.
            early = asyncio.ensure_future(Client.connect("ws://127.0.0.1:%d/ws/alice" % listen,
                                                         timeout=4 * TIMEOUT))
            await asyncio.sleep(0.5 * SLOW)
            self.assertFalse(early.done(), "a handshake answered before the node synced")
            self.assertNotIn("listening", d.log())
            self.redis.restart()   # blocks this loop for a moment: the client just waits
            d.wait_log(r"cluster node=n1 redis=127\.0\.0\.1:%d synced models=4" % port,
                       timeout=10 * SLOW)
            c = await early
            hello, snaps = await c.open()
            self.assertEqual(snaps[("shared", "board")]["value"], {"title": "Board", "body": ""})
            await close_all([c])
        self.run_async(run())
        m = d.wait_log(r"listening addr=127\.0\.0\.1:(\d+)")
        self.assertEqual(int(m.group(1)), listen)
        self.assertLess(d.log().index("synced models=4"), d.log().index("listening"))
        d.stop()


class Writer(single.Writer):
    """test_history_single_node's writer, which also takes a write's answer a second time
    when it is the same message: a write in flight on the shared log when its connection
    dropped is answered, once the log has it, on the client's new connection (the hub holds
    the resend for it), and answered again when the resend comes after that (from the
    client's record). The two are counted (`repeated`), never recorded twice; any other
    answer to a write already answered fails the writer."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.answered = {}   # ref -> its first answer
        self.repeated = 0

    def apply(self, m):
        t, ref = m.get("type"), m.get("ref")
        if t in ("ack", "error") and ref not in self.pending and ref in self.answered:
            if m != self.answered[ref]:
                self.fail("write %d answered twice, differently: %r then %r"
                          % (ref, self.answered[ref], m))
            self.repeated += 1
            return
        pending = t in ("ack", "error") and ref in self.pending
        super().apply(m)
        if pending:
            self.answered[ref] = m


class HistoryAcrossNodes(ClusterTestCase):
    """history.py over three nodes: test_history_single_node's writers (four, two per tenant,
    private `p` and shared `board` and `tally`, one write in twelve refused by the schema),
    each on a node of its own (any node with TP_CLUSTER_ANY_NODE=1); now and then a writer's
    connection is dropped and it reconnects with `resume`, and resends what was not
    answered."""

    DURATION = 3.0
    DROPS = 6

    def test_history_of_writers_spread_over_three_nodes(self):
        ns = self.nodes()
        print("\ntest_cluster: TP_CLUSTER_SEED=%d TP_CLUSTER_ANY_NODE=%d" % (SEED, ANY_NODE),
              file=sys.stderr, flush=True)
        h = history.History()
        rng = random.Random(SEED)
        up = [(NODES[i], d.port) for i, d in enumerate(ns)]
        # Each writer's connections go to a node of its own (writers 0 and 3 on n1, 1 on n2,
        # 2 on n3): a write still on its way to Redis through one node, resent through another,
        # is applied twice (docs/cluster.md, "What it does not do yet"). TP_CLUSTER_ANY_NODE=1
        # lets every connection pick any node, to see it.
        if ANY_NODE:
            writers = [Writer(h, lambda: up, w, t) for w, t in single.WRITERS]
        else:
            writers = [Writer(h, lambda w=w: [up[w % len(up)]], w, t)
                       for w, t in single.WRITERS]

        async def run():
            await reads(ns[0], "n1", TENANTS, lambda k, s: h.initial(k, s["rev"], s["value"]))
            tasks = [asyncio.ensure_future(wr.run()) for wr in writers]

            try:
                for _ in range(self.DROPS):
                    await asyncio.sleep(rng.uniform(0.5, 1.0) * self.DURATION / self.DROPS)
                    raise_failed(tasks)
                    wr = rng.choice(writers)
                    if wr.c is not None:
                        wr.c.abort()   # the writer reconnects and resumes
                await asyncio.sleep(0.3 * SLOW)
                for wr in writers:
                    wr.stopping = True
                done, _ = await asyncio.wait(tasks, timeout=10 * TIMEOUT)
                raise_failed(tasks)
                if len(done) != len(tasks):
                    self.fail("writers still running at the end: %r"
                              % [(wr.w, sorted(wr.pending)) for wr in writers])
                for wr in writers:
                    for m in await wr.c.barrier():
                        wr.apply(m)
                await close_all([wr.c for wr in writers])
            finally:
                for task in tasks:
                    task.cancel()
            # The final reads, once every node applied the last changes (pub/sub).
            for t in TENANTS:
                await settled(ns, t)
            for i, d in enumerate(ns):
                await reads(d, NODES[i], TENANTS,
                            lambda k, s, n=NODES[i]: h.final(n, k, s["rev"], s["value"]))

        self.run_async(run(), timeout=120 * SLOW)
        anomalies = history.check_all(h)
        s = history.summary(h)
        print("test_cluster history: %d writes: %d acked, %d refused, %d unknown; %d resent "
              "(%d answered twice); %d sessions over %s"
              % (s["writes"], s["ok"], s["fail"], s["info"], s["resends"],
                 sum(wr.repeated for wr in writers), sum(wr.sessions for wr in writers),
                 s["nodes"]), file=sys.stderr, flush=True)
        if anomalies:
            path = os.path.join(tempfile.mkdtemp(prefix="tp-cluster-history-"), "history.jsonl")
            h.dump(path)
            self.fail("TP_CLUSTER_SEED=%d: %d anomalies (history kept in %s):\n%s"
                      % (SEED, len(anomalies), path,
                         "\n".join(str(a) for a in anomalies[:40])))
        self.assertEqual(s["nodes"], list(NODES))
        self.assertGreater(s["ok"], 40)
        self.assertGreater(s["fail"], 0)
        self.assertEqual(s["info"], 0, "every write is answered in the end")
        nodes_used = {ev["node"] for ev in h.events if ev["type"] == "connect"}
        self.assertEqual(nodes_used, set(NODES), "writers used every node")


if __name__ == "__main__":
    unittest.main()
