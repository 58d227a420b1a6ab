"""docs/host-api.md's Python backend, run as the page shows it (only its addresses changed):
it shares a model and subscribes alice through the API, then reacts to a signed webhook by
writing back; alice sees the backend's write as a patch with origin "host"."""

import os
import re
import socket
import subprocess
import sys
import time
import unittest

from harness import TIMEOUT, DaemonTestCase, doc_config, open_client
from test_host_api import TOKEN

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "host-api.md")
SECRET = "whsec-for-the-docs-test-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class PythonBackend(DaemonTestCase):

    def test_the_documented_backend(self):
        with open(DOC, encoding="utf-8") as f:
            text = f.read()
        code = text.split("## A backend in Python")[1].split("```python\n")[1].split("```")[0]
        hook_port = free_port()
        schema = {"title": "Document", "type": "object",
                  "properties": {"title": {"type": "string"},
                                 "body": {"type": "string", "default": ""}},
                  "required": ["title"]}
        cfg = doc_config(admin_token_env="TRANSPORTS_ADMIN_TOKEN",
                         webhooks=[{"url": "http://127.0.0.1:%d/hooks" % hook_port,
                                    "events": ["model.changed"],
                                    "secret_env": "TRANSPORTS_WEBHOOK_SECRET",
                                    "debounce_ms": 50, "max_delay_ms": 200}])
        cfg["schemas"]["Document"] = schema
        env = dict(os.environ, TRANSPORTS_ADMIN_TOKEN=TOKEN, TRANSPORTS_WEBHOOK_SECRET=SECRET)
        d = self.start_daemon(cfg, env=env)
        self.assertIn('"127.0.0.1:8080/v1"', code.replace("http://", ""))
        code = code.replace("127.0.0.1:8080", "127.0.0.1:%d" % d.port)
        code = code.replace('("127.0.0.1", 9000)', '("127.0.0.1", %d)' % hook_port)
        backend = subprocess.Popen([sys.executable, "-c", code], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (backend.kill(), backend.wait()))

        async def main():
            c, _, snaps = None, None, {}
            deadline = time.monotonic() + TIMEOUT
            while ("shared", "standup") not in snaps:  # the backend shares it at its start
                if c is not None:
                    await c.close()
                self.assertLess(time.monotonic(), deadline, backend.poll())
                c, _, snaps = await open_client(d, "alice")
            await c.send({"type": "write", "ref": 1, "scope": "shared", "id": "standup",
                          "patch": {"title": "Stand-up done"}})
            m, _ = await c.wait_for(lambda m: m.get("type") == "patch"
                                    and m.get("origin") == "host", timeout=3 * TIMEOUT)
            self.assertEqual(m["patch"], {"body": "closed by the backend"})
            await c.close()
        self.run_async(main())


if __name__ == "__main__":
    unittest.main()
