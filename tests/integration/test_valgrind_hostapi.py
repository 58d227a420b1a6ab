"""The host API and webhooks under valgrind memcheck: every kind of call, a few hostile
requests, webhook deliveries with a retry, then SIGTERM; no memcheck error and no leak.
Registered only in the plain build (test_valgrind*)."""

import shutil
import unittest

from harness import DaemonTestCase, open_client
from test_host_api import Api
from test_valgrind import SLOW_TIMEOUT, VALGRIND
from test_webhooks import ENV, Receiver, hook_config


class ValgrindHostApi(DaemonTestCase):

    def test_host_api_and_webhooks_under_memcheck(self):
        self.assertIsNotNone(shutil.which("valgrind"), "valgrind is required for this test")
        r = Receiver()
        self.addCleanup(r.close)
        r.plan = lambda ev, n: 500 if n == 0 else 200
        d = self.start_daemon(hook_config(r.port), env=ENV, wrapper=VALGRIND,
                              start_timeout=SLOW_TIMEOUT, stop_timeout=SLOW_TIMEOUT)
        api = Api(d.port)
        api.conn.timeout = SLOW_TIMEOUT
        self.addCleanup(api.close)
        calls = [
            ("PUT", "/v1/schemas/Other", {"title": "O", "type": "object"}, 201),
            ("PUT", "/v1/tenants/carol/models/m", {"schema": "Doc", "value": {"title": "a"}}, 201),
            ("PATCH", "/v1/tenants/carol/models/m", {"n": 2}, 200),
            ("PATCH", "/v1/tenants/carol/models/m", {"n": -2}, 422),
            ("PUT", "/v1/shared/s", {"schema": "Doc", "merge": "lww-map",
                                     "value": {"title": "s"}}, 201),
            ("PUT", "/v1/shared/s/subscribers/carol", {"access": "write"}, 200),
            ("GET", "/v1/shared/s/subscribers", None, 200),
            ("GET", "/v1/tenants?limit=1", None, 200),
            ("GET", "/v1/tenants/carol", None, 200),
            ("GET", "/v1/tenants/carol/connections", None, 200),
            ("POST", "/v1/sync", None, 200),
            ("PUT", "/v1/shared/s", {"schema": "Doc", "value": {"title": "t"}}, 200),
            ("DELETE", "/v1/shared/s/subscribers/carol", None, 204),
            ("DELETE", "/v1/shared/s", None, 204),
            ("DELETE", "/v1/tenants/carol/models/m", None, 204),
            ("PUT", "/v1/tenants/carol/models/m", {"schema": "Doc", "extra": 1}, 400),
            ("GET", "/v1/openapi.json", None, 200),
            ("DELETE", "/v1/tenants/carol", None, 204),
        ]
        for method, path, body, status in calls:
            st, _, got = api.call(method, path, body)
            self.assertEqual(st, status, (method, path, got))
        self.assertEqual(api.call("PUT", "/v1/shared/x", raw=b"{nope",
                                  headers={"Content-Type": "application/json"})[0], 400)

        async def main():
            c, _, _ = await open_client(d, "bob", timeout=SLOW_TIMEOUT)
            await c.close()
        self.run_async(main(), timeout=5 * SLOW_TIMEOUT)
        r.wait(lambda evs: len({e[2]["id"] for e in evs}) >= 3 and len(evs) >= 4,
               timeout=SLOW_TIMEOUT)


if __name__ == "__main__":
    unittest.main()
