"""The daemon's command line and config errors, through the real binary: a bad config is
refused with exit code 2 and one clear stderr line naming the file and the JSON path; it
never starts (nothing listens)."""

import json
import os
import re
import subprocess
import tempfile
import unittest

from harness import DOC_SCHEMA, TIMEOUT, TRANSPORTSD, require_daemon, sanitizer_env

GOOD = {
    "schemas": {"Doc": DOC_SCHEMA},
    "tenants": {"alice": {"models": {"notes": {"schema": "Doc", "value": {"title": "A"}}}}},
    "shared": {"roadmap": {"schema": "Doc", "merge": "lww-map", "value": {"title": "R"},
                           "subscribers": {"alice": "write"}}},
}


def variant(path, value, delete=False):
    """GOOD with the member at path (a list of keys) set to value (or deleted)."""
    cfg = json.loads(json.dumps(GOOD))
    node = cfg
    for k in path[:-1]:
        node = node.setdefault(k, {})
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


class ConfigErrors(unittest.TestCase):

    def setUp(self):
        require_daemon(self)
        self.tmp = tempfile.TemporaryDirectory(prefix="tp-cfg-")
        self.addCleanup(self.tmp.cleanup)

    def run_daemon(self, *args):
        # --listen 127.0.0.1:0 so that a config that wrongly starts cannot collide, and a
        # timeout so that it cannot hang the suite: a config error exits at once.
        try:
            p = subprocess.run([TRANSPORTSD] + list(args), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=TIMEOUT, env=sanitizer_env(),
                               cwd=self.tmp.name)
        except subprocess.TimeoutExpired as e:
            self.fail("transportsd %s did not exit (it started?): %r" % (args, e.stderr))
        return p.returncode, p.stdout.decode("utf-8", "replace"), \
            p.stderr.decode("utf-8", "replace")

    def write_config(self, cfg, name="config.json"):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w", encoding="utf-8") as f:
            if isinstance(cfg, str):
                f.write(cfg)
            else:
                json.dump(cfg, f, indent=2)
        return path

    def assert_refused(self, cfg, where=None, *needles, extra=()):
        """Exit 2, one stderr line `...FILE: WHERE...` holding every needle (WHERE: the
        JSON path, or None)."""
        path = self.write_config(cfg)
        code, out, err = self.run_daemon("--config", path, "--listen", "127.0.0.1:0", *extra)
        self.assertEqual(code, 2, "exit code; stderr: %r" % err)
        lines = err.strip("\n").split("\n")
        self.assertEqual(len(lines), 1, "one stderr line: %r" % err)
        self.assertIn(path, lines[0])
        if where is not None:
            self.assertIn("%s: %s:" % (path, where), lines[0])
        for n in needles:
            if isinstance(n, re.Pattern):
                self.assertRegex(lines[0], n)
            else:
                self.assertIn(n, lines[0])
        self.assertNotIn("listening", err)
        return lines[0]

    def test_good_config_is_accepted(self):
        # The base of every variant below must itself be fine: it starts and --check
        # is not assumed, so run it briefly through the harness instead.
        from harness import Daemon
        d = Daemon(config=GOOD)
        with d:
            self.assertGreater(d.port, 0)

    def test_unknown_top_level_key(self):
        self.assert_refused(variant(["lisen"], "127.0.0.1:1"), "lisen", "unknown")

    def test_unknown_nested_key(self):
        self.assert_refused(variant(["limits", "max_msg_bytes"], 5), "limits.max_msg_bytes")
        self.assert_refused(variant(["tenants", "alice", "models", "notes", "vlaue"], {}),
                            "tenants.alice.models.notes.vlaue")

    def test_bad_json_gives_line_and_column(self):
        text = '{\n  "schemas": {\n    "Doc": {"type": "object",, "title": "Doc"}\n  }\n}\n'
        line = self.assert_refused(text)
        # The error is on line 3, column 30: FILE:LINE:COLUMN.
        self.assertRegex(line, re.escape(os.path.join(self.tmp.name, "config.json"))
                         + r":3:(29|30|31): ")

    def test_not_an_object(self):
        self.assert_refused("[1, 2]\n")

    def test_missing_schemas(self):
        self.assert_refused({"tenants": {}}, "schemas")

    def test_bad_schema(self):
        self.assert_refused(variant(["schemas", "Bad"], {"type": "object", "properties": {
            "x": {"type": "strang"}}}), "schemas.Bad", "properties.x", "strang")
        self.assert_refused(variant(["schemas", "Bad"], {"type": "object", "properties": {
            "x": {"type": "string", "format": "email", "frobnicate": 1}}}), "schemas.Bad",
            "frobnicate")

    def test_unknown_schema_name(self):
        self.assert_refused(variant(["tenants", "alice", "models", "notes", "schema"], "Nope"),
                            "tenants.alice.models.notes.schema", "Nope")

    def test_invalid_model_value(self):
        self.assert_refused(variant(["tenants", "alice", "models", "notes", "value"],
                                    {"body": "no title"}),
                            "tenants.alice.models.notes.value", "title")
        self.assert_refused(variant(["shared", "roadmap", "value"], {"title": "R", "n": -1}),
                            "shared.roadmap.value", "n")

    def test_unknown_merge(self):
        self.assert_refused(variant(["shared", "roadmap", "merge"], "crdt"),
                            "shared.roadmap.merge", "crdt")

    def test_bad_access(self):
        self.assert_refused(variant(["shared", "roadmap", "subscribers", "alice"], "admin"),
                            "shared.roadmap.subscribers.alice", "admin")

    def test_bad_limit(self):
        self.assert_refused(variant(["limits", "max_message_bytes"], -1),
                            "limits.max_message_bytes")
        self.assert_refused(variant(["limits", "writes_per_second"], "many"),
                            "limits.writes_per_second")

    def test_bad_listen(self):
        for listen in ("nowhere", "127.0.0.1:99999", "127.0.0.1:", 5):
            with self.subTest(listen=listen):
                path = self.write_config(variant(["listen"], listen))
                code, out, err = self.run_daemon("--config", path)
                self.assertEqual(code, 2, err)
                lines = err.strip("\n").split("\n")
                self.assertEqual(len(lines), 1, err)
                self.assertIn("%s: listen:" % path, lines[0])

    def test_bad_route(self):
        self.assert_refused(variant(["route"], "no-slash/{tenant}"), "route")

    def test_bad_origins_auth_and_storage(self):
        self.assert_refused(variant(["origins"], "http://x.example"), "origins")
        self.assert_refused(variant(["auth", "mode"], "magic"), "auth.mode", "magic")
        self.assert_refused(variant(["storage", "redis"], "x"), "storage.redis")

    def test_bad_cluster(self):
        # Each refusal of "cluster" (docs/daemon.md), before anything is connected: none of
        # these reaches Redis, and the password of a URL never shows in the message.
        good = {"redis": "redis://127.0.0.1:6379/0", "node": "n1"}

        def cluster(**kw):
            c = dict(good)
            c.update(kw)
            return variant(["cluster"], {k: v for k, v in c.items() if v is not None})
        self.assert_refused(variant(["cluster"], "redis://127.0.0.1"), "cluster",
                            "expected an object")
        self.assert_refused(cluster(nodes=3), "cluster.nodes", "unknown key")
        self.assert_refused(cluster(redis=None), "cluster.redis", "required")
        self.assert_refused(cluster(redis=6379), "cluster.redis", "expected a string")
        line = self.assert_refused(cluster(redis="rediss://user:s3cret@127.0.0.1:6379"),
                                   "cluster.redis", "scheme")
        self.assertNotIn("s3cret", line)
        self.assert_refused(cluster(redis="redis://127.0.0.1:0"), "cluster.redis", "port")
        self.assert_refused(cluster(redis="redis://127.0.0.1/x"), "cluster.redis", "db")
        self.assert_refused(cluster(node=None), "cluster.node", "required")
        for bad in ("", "n 1", "n/1", "é", "n" * 65):
            with self.subTest(node=bad):
                self.assert_refused(cluster(node=bad), "cluster.node", "A-Z a-z 0-9 . _ -")
        self.assert_refused(cluster(history=0), "cluster.history", "out of range")
        self.assert_refused(cluster(history=100001), "cluster.history", "out of range")
        self.assert_refused(cluster(connect_timeout_ms=-1), "cluster.connect_timeout_ms",
                            "out of range")
        # Redis is the store of a cluster: a node keeps nothing on disk.
        for storage in ({"sqlite": "x.db"}, {"memory": True}):
            with self.subTest(storage=storage):
                cfg = cluster()
                cfg["storage"] = storage
                self.assert_refused(cfg, "storage", 'not with "cluster"')
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "x.db")))
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "transports.db")))

    def test_address_in_use_exits_1(self):
        # Exit 1 (the server cannot start), not 2: the config is fine.
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.addCleanup(s.close)
        path = self.write_config(GOOD)
        code, out, err = self.run_daemon("--config", path, "--listen",
                                         "127.0.0.1:%d" % s.getsockname()[1])
        self.assertEqual(code, 1, err)
        self.assertNotIn("listening", err)

    def test_missing_file(self):
        path = os.path.join(self.tmp.name, "nope.json")
        code, out, err = self.run_daemon("--config", path)
        self.assertEqual(code, 2, err)
        self.assertEqual(len(err.strip("\n").split("\n")), 1, err)
        self.assertIn(path, err)


class CommandLine(unittest.TestCase):

    def setUp(self):
        require_daemon(self)
        # Its own working directory: a daemon that got as far as its default storage
        # (transports.db) must not leave it in the source tree.
        self.tmp = tempfile.TemporaryDirectory(prefix="tp-cmdline-")
        self.addCleanup(self.tmp.cleanup)

    def run_daemon(self, *args):
        p = subprocess.run([TRANSPORTSD] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=TIMEOUT, env=sanitizer_env(),
                           cwd=self.tmp.name)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_help(self):
        code, out, err = self.run_daemon("--help")
        self.assertEqual(code, 0, err)
        for flag in ("--config", "--demo", "--listen", "--log-level", "--help", "--version"):
            self.assertIn(flag, out)

    def test_version(self):
        code, out, err = self.run_daemon("--version")
        self.assertEqual(code, 0, err)
        self.assertRegex(out.strip(), r"^transportsd \d+\.\d+")

    def test_unknown_flag(self):
        code, out, err = self.run_daemon("--frobnicate")
        self.assertEqual(code, 2)
        self.assertIn("--frobnicate", err)
        self.assertEqual(out, "")

    def test_no_config_nor_demo(self):
        code, out, err = self.run_daemon()
        self.assertEqual(code, 2, (out, err))
        self.assertNotEqual(err.strip(), "")

    def test_bad_log_level(self):
        code, out, err = self.run_daemon("--demo", "--listen", "127.0.0.1:0",
                                         "--log-level", "loud")
        self.assertEqual(code, 2, err)
        self.assertIn("log-level", err)


if __name__ == "__main__":
    unittest.main()
