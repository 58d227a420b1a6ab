"""GET /healthz and GET /metrics (Prometheus text format) on the WebSocket listener;
metric families move with connections and writes."""

import asyncio
import re
import unittest

import websockets

from harness import (Client, SharedDaemonTestCase, TIMEOUT, close_all, doc_config,
                     open_client)

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)( \d+)?$")


def parse(text):
    """{(name, labels-string): float}; checks the text format line by line."""
    samples = {}
    types = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        assert not line.startswith("#"), "unknown comment line %r" % line
        m = SAMPLE_RE.match(line)
        assert m, "not a Prometheus sample line: %r" % line
        samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples, types


def value(samples, name, **labels):
    """The sample of name whose labels include these (summed when several match)."""
    total = None
    for (n, ls), v in samples.items():
        if n != name:
            continue
        if all('%s="%s"' % (k, val) in ls for k, val in labels.items()):
            total = (total or 0) + v
    return total


class Metrics(SharedDaemonTestCase):
    CONFIG = doc_config()

    def metrics(self):
        status, headers, body = self.daemon.http_get("/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain"), headers)
        return parse(body)

    def test_healthz(self):
        status, _, body = self.daemon.http_get("/healthz")
        self.assertEqual(status, 200, body)

    def test_unknown_http_path_404(self):
        status, _, _ = self.daemon.http_get("/nothing-here")
        self.assertEqual(status, 404)

    def test_metrics_move_with_connections_and_writes(self):
        s0, types = self.metrics()
        for name, typ in (("transports_connections", "gauge"),
                          ("transports_connections_opened_total", "counter"),
                          ("transports_writes_accepted_total", "counter"),
                          ("transports_refused_total", "counter"),
                          ("transports_deliveries_total", "counter"),
                          ("transports_closes_total", "counter"),
                          ("transports_handshakes_refused_total", "counter"),
                          ("transports_sync_tick_seconds", "histogram")):
            self.assertEqual(types.get(name), typ, name)
        self.assertEqual(value(s0, "transports_models", scope="private"), 2)
        self.assertEqual(value(s0, "transports_models", scope="shared"), 2)

        async def run():
            # Earlier tests' connections may still be closing: start from none.
            s0 = await self.poll("transports_connections", 0)
            conns0 = 0
            opened0 = value(s0, "transports_connections_opened_total")
            a, _, _ = await open_client(self.daemon, "alice")
            b, _, _ = await open_client(self.daemon, "bob")
            try:
                s1, _ = self.metrics()
                self.assertEqual(value(s1, "transports_connections"), conns0 + 2)
                self.assertEqual(value(s1, "transports_connections_opened_total"), opened0 + 2)
                await a.send({"type": "write", "scope": "private", "id": "notes", "ref": 1,
                              "patch": {"n": 1}})
                self.assertEqual((await a.recv())["type"], "ack")
                await a.send({"type": "write", "scope": "shared", "id": "roadmap", "ref": 2,
                              "patch": {"n": 2}})
                await a.recv_n(2)
                self.assertEqual((await b.recv())["type"], "patch")
                await b.send({"type": "write", "scope": "shared", "id": "roadmap", "ref": 3,
                              "patch": {"n": 3}})
                self.assertEqual((await b.recv())["code"], "forbidden")
                await b.send({"type": "write", "scope": "private", "id": "notes", "ref": 4,
                              "patch": {"n": -1}})
                self.assertEqual((await b.recv())["code"], "invalid")
                s2, _ = self.metrics()
                self.assertEqual(value(s2, "transports_writes_accepted_total"),
                                 value(s0, "transports_writes_accepted_total") + 2)
                for code in ("forbidden", "invalid"):
                    self.assertEqual(value(s2, "transports_refused_total", code=code),
                                     value(s0, "transports_refused_total", code=code) + 1,
                                     code)
                self.assertEqual(value(s2, "transports_refused_total", code="not_found"),
                                 value(s0, "transports_refused_total", code="not_found"))
                # ack, patch + ack, patch, error, error: at least six deliveries.
                self.assertGreaterEqual(value(s2, "transports_deliveries_total"),
                                        value(s0, "transports_deliveries_total") + 6)
                await a.ws.send(b"binary")
                self.assertEqual(await a.wait_closed(), 1003)
            finally:
                await close_all([a, b])
            # The server counts a close when it has seen it: poll with a deadline.
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while True:
                s3, _ = self.metrics()
                if value(s3, "transports_connections") == conns0:
                    break
                self.assertLess(asyncio.get_running_loop().time(), deadline,
                                "connections never went back to %s" % conns0)
                await asyncio.sleep(0.02)
            self.assertEqual(value(s3, "transports_closes_total", code="1003"),
                             value(s0, "transports_closes_total", code="1003") + 1)
            self.assertEqual(value(s3, "transports_closes_total", code="1000"),
                             value(s0, "transports_closes_total", code="1000") + 1)
        self.run_async(run())

    def test_refused_handshakes_are_counted(self):
        s0, _ = self.metrics()

        async def run():
            with self.assertRaises(websockets.InvalidStatusCode):
                await Client.connect(self.daemon.url("/nope/alice"))
            with self.assertRaises(websockets.InvalidStatusCode):
                await Client.connect(self.daemon.url("/ws/alice"), subprotocols=("x",))
        self.run_async(run())
        s1, _ = self.metrics()
        for status in ("404", "400"):
            self.assertEqual(value(s1, "transports_handshakes_refused_total", status=status),
                             value(s0, "transports_handshakes_refused_total",
                                   status=status) + 1, status)

    async def poll(self, name, want, **labels):
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            s, _ = self.metrics()
            if value(s, name, **labels) == want:
                return s
            self.assertLess(asyncio.get_running_loop().time(), deadline,
                            "%s%r stayed %s, expected %s" % (name, labels,
                                                              value(s, name, **labels), want))
            await asyncio.sleep(0.02)

    def test_sessions_made_by_connections_are_freed(self):
        # Tenants that only connections created (no models) go with their last
        # connection: a client cannot grow the server by spraying tenant names.
        s0, _ = self.metrics()
        tenants0 = value(s0, "transports_tenants")

        async def run():
            clients = []
            for i in range(20):
                c, h, snaps = await open_client(self.daemon, "spray%d" % i)
                self.assertEqual(snaps, {})
                clients.append(c)
            s1, _ = self.metrics()
            self.assertEqual(value(s1, "transports_tenants"), tenants0 + 20)
            await close_all(clients)
            await self.poll("transports_tenants", tenants0)
            await self.poll("transports_outbox_bytes", 0)
        self.run_async(run())

    def test_sync_tick_histogram_is_consistent(self):
        s, _ = self.metrics()
        buckets = sorted(((float(ls.split('"')[1]), v) for (n, ls), v in s.items()
                          if n == "transports_sync_tick_seconds_bucket"))
        self.assertTrue(buckets)
        self.assertEqual(buckets[-1][0], float("inf"))
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts), "buckets are cumulative")
        self.assertEqual(counts[-1], value(s, "transports_sync_tick_seconds_count"))
        self.assertIsNotNone(value(s, "transports_sync_tick_seconds_sum"))


if __name__ == "__main__":
    unittest.main()
