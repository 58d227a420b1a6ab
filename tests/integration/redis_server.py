"""A real redis-server for the tests (issue 18): Debian's /usr/bin/redis-server on a free
loopback port in a temp directory, durable as the cluster docs ask (`--appendonly yes
--appendfsync always`, no RDB snapshots), that a test can SIGKILL and start again from its
AOF; and a three-master Redis Cluster of them.

    with RedisServer() as r:            # started; stopped and its directory removed at exit
        c = r.client()                  # a redis.Redis (python3-redis)
        c.set("k", "v")
        r.kill()                        # SIGKILL: no shutdown, no flush
        r.restart()                     # the same port, directory and AOF
        assert r.client().get("k") == b"v"

    with RedisCluster(masters=3) as rc:  # created with redis-cli --cluster create, state ok
        rc.client()                      # a redis.cluster.RedisCluster
        rc.owner("{alice}x")             # the RedisServer holding the key's slot
        rc.kill(1); rc.restart(1)        # one master, back from its AOF and nodes.conf

The port is found by binding port 0 and closing (redis-server cannot report a port it
chose), so another process may take it first: start() then tries another one. A restart
keeps the port a daemon configured with it knows. Like harness.Daemon, each server dies with
the thread that started it (PR_SET_PDEATHSIG), so start and restart it from the test's
thread. TP_KEEP_LOGS=1 keeps the directories and prints their paths.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis
import redis.cluster

from harness import SLOW, Managed, _die_with_parent

REDIS_SERVER = os.environ.get("TP_REDIS_SERVER", "/usr/bin/redis-server")
REDIS_CLI = os.environ.get("TP_REDIS_CLI", "/usr/bin/redis-cli")
START_TIMEOUT = 10.0 * SLOW

_running = []


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def require_redis(testcase=None):
    """Fails (not skips) when redis-server or redis-cli is missing: scripts/install-deps.sh
    installs them."""
    for path in (REDIS_SERVER, REDIS_CLI):
        if not os.access(path, os.X_OK):
            msg = ("%s is missing: install redis-server (scripts/install-deps.sh)" % path)
            if testcase is not None:
                testcase.fail(msg)
            raise AssertionError(msg)


class RedisError(AssertionError):
    pass


class RedisServer(Managed):
    """One redis-server process. extra: more arguments (RedisCluster adds its own)."""

    def __init__(self, extra=(), dir=None, name="redis"):
        require_redis()
        self.extra = list(extra)
        self.own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="tp-redis-")
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.log_path = os.path.join(self.dir, "redis.log")
        self.port = None
        self.cluster_port = None
        self.proc = None
        self.exit_code = None

    def command(self):
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", self.dir, "--logfile", self.log_path, "--daemonize", "no",
               "--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        if self.cluster_port is not None:
            cmd += ["--cluster-port", str(self.cluster_port)]
        return cmd + self.extra

    def start(self, port=None):
        """Starts on `port` (a restart: the cluster bus port stays too), else on a free one,
        trying others if one is taken meanwhile."""
        fixed = port is not None
        cluster = "--cluster-enabled" in self.extra
        for attempt in range(5):
            self.port = port if fixed else _free_port()
            if cluster and not (fixed and self.cluster_port is not None):
                self.cluster_port = _free_port()
            if self._launch():
                return self
            if fixed:
                break
        raise RedisError("redis-server did not start\ncommand: %s\n--- log ---\n%s"
                         % (" ".join(self.command()), self.log()))

    def _launch(self):
        self.log_start = len(self.log())
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=self.dir, preexec_fn=_die_with_parent)
        _running.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.005
        while True:
            if self.proc.poll() is not None:
                self._reap()
                if "Address already in use" in self.log()[self.log_start:]:
                    return False
                raise RedisError("redis-server exited with %s\ncommand: %s\n--- log ---\n%s"
                                 % (self.exit_code, " ".join(self.command()), self.log()))
            try:
                # Up and loaded: PING answers PONG only once the AOF is read (LOADING
                # errors before that).
                if self.client(socket_timeout=1.0).ping():
                    return True
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                self._reap()
                raise RedisError("redis-server did not answer PING within %.0f s\n--- log ---\n%s"
                                 % (START_TIMEOUT, self.log()))
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _reap(self):
        self.exit_code = self.proc.wait()
        if self in _running:
            _running.remove(self)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: Redis dies at once, with no shutdown and no flush of anything it has not
        written already (with appendfsync always, every acknowledged write is in the AOF)."""
        if not self.running():
            raise RedisError("kill: redis-server is not running (exit %s)" % self.exit_code)
        self.proc.send_signal(signal.SIGKILL)
        self._reap()
        if self.exit_code != -signal.SIGKILL:
            raise RedisError("redis-server exited with %s before the SIGKILL\n--- log ---\n%s"
                             % (self.exit_code, self.log()))

    def restart(self):
        """Starts it again on the same port and directory: it loads its AOF (and, in a
        cluster, its nodes.conf)."""
        if self.running():
            raise RedisError("restart: redis-server is still running")
        port = self.port
        self.proc = None
        self.exit_code = None
        return self.start(port=port)

    def stop(self):
        """SIGTERM (Redis shuts down cleanly, its AOF fsynced); exit code 0."""
        if not self.running():
            return self.exit_code
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self._reap()
            raise RedisError("redis-server did not stop within %.0f s" % START_TIMEOUT)
        self._reap()
        if self.exit_code != 0:
            raise RedisError("redis-server exited with %s\n--- log ---\n%s"
                             % (self.exit_code, self.log()))
        return 0

    def cleanup(self):
        if self.running():
            self.proc.kill()
            self._reap()
        if os.environ.get("TP_KEEP_LOGS"):
            print("redis-server directory kept: %s" % self.dir)
        elif self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, **kw):
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def url(self):
        return "redis://127.0.0.1:%d" % self.port


class RedisCluster(Managed):
    """A Redis Cluster of `masters` RedisServers (no replicas), each with its own directory
    under one temp directory, created with `redis-cli --cluster create ... --cluster-replicas
    0 --cluster-yes`; start() returns when every node says cluster_state:ok."""

    def __init__(self, masters=3, node_timeout_ms=2000):
        require_redis()
        self.dir = tempfile.mkdtemp(prefix="tp-redis-cluster-")
        self.nodes = [RedisServer(extra=["--cluster-enabled", "yes",
                                         "--cluster-config-file", "nodes.conf",
                                         "--cluster-node-timeout", str(node_timeout_ms)],
                                  dir=os.path.join(self.dir, "n%d" % i), name="n%d" % i)
                      for i in range(masters)]

    def start(self):
        for n in self.nodes:
            n.start()
        cmd = [REDIS_CLI, "--cluster", "create"] + [
            "127.0.0.1:%d" % n.port for n in self.nodes] + [
            "--cluster-replicas", "0", "--cluster-yes"]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=6 * START_TIMEOUT)
        if r.returncode != 0:
            raise RedisError("redis-cli --cluster create failed (%d)\n%s\n%s"
                             % (r.returncode, r.stdout, r.stderr))
        self.wait_ok()
        return self

    def wait_ok(self, timeout=None):
        """Waits until every node says cluster_state:ok and sees every slot assigned."""
        deadline = time.monotonic() + (timeout or 6 * START_TIMEOUT)
        delay = 0.01
        while True:
            states = {}
            for n in self.nodes:
                try:
                    info = n.client(socket_timeout=1.0).cluster("info")
                    states[n.name] = (info.get("cluster_state"),
                                      int(info.get("cluster_slots_assigned", 0)))
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as e:
                    states[n.name] = (repr(e), 0)
            if all(s == ("ok", 16384) for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise RedisError("the cluster is not ok: %r" % states)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def log(self):
        """Every node's log, one after the other."""
        return "".join(n.log() for n in self.nodes)

    def client(self, **kw):
        return redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode("127.0.0.1", n.port) for n in self.nodes],
            **kw)

    def owner(self, key):
        """The node whose slots hold `key` (by CLUSTER KEYSLOT and CLUSTER SLOTS)."""
        c = self.nodes[0].client()
        slot = c.cluster("keyslot", key)
        for start, end, master, *_ in c.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                port = master[1]
                for n in self.nodes:
                    if n.port == port:
                        return n
        raise RedisError("no node holds slot %d of %r" % (slot, key))

    def kill(self, i):
        self.nodes[i].kill()

    def restart(self, i):
        """One node again, from its AOF and nodes.conf, on its port; waits for the
        cluster to be ok."""
        self.nodes[i].restart()
        self.wait_ok()

    def stop(self):
        for n in self.nodes:
            n.stop()

    def cleanup(self):
        for n in self.nodes:
            n.cleanup()
        if os.environ.get("TP_KEEP_LOGS"):
            print("redis cluster directory kept: %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def _kill_running():
    for r in list(_running):
        if r.proc is not None and r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


atexit.register(_kill_running)
