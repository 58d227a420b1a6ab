"""redis_server.py, the tests' real Redis (issue 18), tested on its own: one server with the
durable settings, SIGKILLed after acknowledged writes and started again from its AOF, and a
three-master Redis Cluster whose hash tags spread keys over the masters, one master killed
and restarted. No transportsd here.

A SIGKILL leaves the page cache alone, so it cannot tell `appendfsync always` from `no`
(an OS crash or a power cut would): the settings are checked with CONFIG GET, and the kill
shows that what Redis acknowledged is in the AOF it reloads, not in its memory only.
"""

import os
import unittest

import redis

from redis_server import RedisCluster, RedisServer, require_redis


class OneServer(unittest.TestCase):

    def setUp(self):
        require_redis(self)

    def test_durable_settings_and_acked_writes_survive_sigkill(self):
        r = RedisServer()
        self.addCleanup(r.cleanup)
        r.start()
        c = r.client()
        cfg = c.config_get("*")
        self.assertEqual((cfg["appendonly"], cfg["appendfsync"], cfg["save"], cfg["bind"]),
                         ("yes", "always", "", "127.0.0.1"))
        self.assertEqual(cfg["dir"], r.dir)
        for i in range(200):
            self.assertTrue(c.set("k%d" % i, "v%d" % i))
        self.assertEqual(c.incrby("counter", 7), 7)
        self.assertEqual(c.rpush("list", "a", "b"), 2)
        c.close()
        port = r.port
        r.kill()
        with self.assertRaises(redis.ConnectionError):
            r.client(socket_timeout=1.0).ping()
        # Nothing but the AOF to load from: no RDB file was ever written.
        self.assertFalse(os.path.exists(os.path.join(r.dir, "dump.rdb")))
        self.assertTrue(os.listdir(os.path.join(r.dir, "appendonlydir")))
        r.restart()
        self.assertEqual(r.port, port)
        c = r.client()
        self.assertEqual(c.mget(["k%d" % i for i in range(200)]),
                         [b"v%d" % i for i in range(200)])
        self.assertEqual(c.get("counter"), b"7")
        self.assertEqual(c.lrange("list", 0, -1), [b"a", b"b"])
        self.assertEqual(c.dbsize(), 202)
        # A second kill right after a write, and the write is there again.
        self.assertEqual(c.incr("counter"), 8)
        c.close()
        r.kill()
        r.restart()
        self.assertEqual(r.client().get("counter"), b"8")
        self.assertEqual(r.stop(), 0)

    def test_two_servers_get_two_ports_and_two_directories(self):
        with RedisServer() as a, RedisServer() as b:
            self.assertNotEqual(a.port, b.port)
            self.assertNotEqual(a.dir, b.dir)
            a.client().set("x", "a")
            self.assertIsNone(b.client().get("x"))


class Cluster(unittest.TestCase):

    def setUp(self):
        require_redis(self)

    def test_three_masters_spread_hash_tags_and_survive_a_master_s_sigkill(self):
        rc = RedisCluster(masters=3)
        self.addCleanup(rc.cleanup)
        rc.start()
        c0 = rc.nodes[0].client()
        nodes = c0.cluster("nodes")   # redis-py parses CLUSTER NODES: address -> fields
        self.assertEqual(sorted(int(a.split("@")[0].split(":")[1]) for a in nodes),
                         sorted(n.port for n in rc.nodes), nodes)
        self.assertTrue(all("master" in f["flags"].split(",") and f["connected"]
                            for f in nodes.values()), nodes)
        info = c0.cluster("info")
        self.assertEqual((info["cluster_state"], int(info["cluster_slots_assigned"]),
                          int(info["cluster_known_nodes"]), int(info["cluster_size"])),
                         ("ok", 16384, 3, 3))

        # Hash tags (the issue's `{tenant}` and `{shared:id}` forms) on three masters.
        tags = {}
        for name in ["{alice}", "{bob}", "{shared:board}"] + [
                "{tenant%d}" % i for i in range(200)]:
            owner = rc.owner(name + ":rev")
            tags.setdefault(owner.name, name)
            if len(tags) == 3:
                break
        self.assertEqual(len(tags), 3, tags)
        cc = rc.client()
        for owner, tag in tags.items():
            for suffix in (":rev", ":log", ":clients"):
                self.assertTrue(cc.set(tag + suffix, owner))
        # Each master holds exactly its tag's keys (one slot per tag: the tag decides).
        for n in rc.nodes:
            keys = sorted(k.decode() for k in n.client().keys("*"))
            tag = tags[n.name]
            self.assertEqual(keys, sorted(tag + s for s in (":clients", ":log", ":rev")),
                             "node %s" % n.name)
            self.assertEqual(len({c0.cluster("keyslot", k) for k in keys}), 1)
        # A key of another master's slot is redirected, not stored here.
        other = tags[rc.nodes[1].name]
        with self.assertRaises(redis.ResponseError) as e:
            rc.nodes[0].client().set(other + ":x", "1")
        self.assertIn("MOVED", str(e.exception))

        # SIGKILL one master right after acknowledged writes; back from its AOF and
        # nodes.conf, on its port, the cluster is ok again and nothing is lost.
        victim = rc.nodes[2]
        tag = tags[victim.name]
        self.assertEqual(cc.incr(tag + ":n"), 1)
        cc.close()
        rc.kill(2)
        rc.restart(2)
        cc = rc.client()
        self.assertEqual(cc.get(tag + ":n"), b"1")
        for owner, t in tags.items():
            self.assertEqual(cc.get(t + ":rev"), owner.encode())
        self.assertEqual(rc.owner(tag + ":n").name, victim.name)
        cc.close()
        rc.stop()


if __name__ == "__main__":
    unittest.main()
