"""Issue 14: GET /v1/openapi.json is a valid OpenAPI 3.1 document (checked by the npm
validator pinned in tests/openapi/), the very bytes of src/net/openapi.json, and it lists
every route the server serves, with every method: each API path shape the router could
know is probed (OPTIONS: a known path answers 405 with its `Allow`), and each served
(path, method) must be in the document; each documented one must be served."""

import itertools
import json
import os
import re
import subprocess
import tempfile
import unittest

from harness import DaemonTestCase, doc_config
from test_host_api import ENV, Api

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OPENAPI_DIR = os.path.join(ROOT, "tests", "openapi")
VALIDATOR = os.path.join(OPENAPI_DIR, "node_modules", ".bin", "validate-api")
WORDS = ["tenants", "shared", "schemas", "sync", "openapi.json", "models", "connections",
         "subscribers", "x"]


def validator():
    if not os.access(VALIDATOR, os.X_OK):
        # make deps installs it; a test run on its own installs the pinned lockfile.
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OPENAPI_DIR, check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
    return VALIDATOR


class OpenApi(DaemonTestCase):

    def setUp(self):
        self.d = self.start_daemon(doc_config(admin_token_env="TP_ADMIN"), env=ENV)
        self.api = Api(self.d.port)
        self.addCleanup(self.api.close)

    def document(self):
        noauth = Api(self.d.port, token=None)
        st, h, doc = noauth.call("GET", "/v1/openapi.json")
        noauth.close()
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("application/json"))
        return doc

    def test_valid_openapi_31_and_the_source_file(self):
        doc = self.document()
        with open(os.path.join(ROOT, "src", "net", "openapi.json"), encoding="utf-8") as f:
            self.assertEqual(doc, json.load(f))
        self.assertEqual(doc["openapi"], "3.1.0")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(doc, f)
            path = f.name
        try:
            r = subprocess.run([validator(), path], capture_output=True, text=True, timeout=120)
        finally:
            os.unlink(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(json.loads(r.stdout)["valid"], r.stdout)
        # the validator does refuse a broken document
        broken = dict(doc, paths={"/v1/x": {"get": {"responses": 5}}})
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(broken, f)
            path = f.name
        try:
            r = subprocess.run([validator(), path], capture_output=True, text=True, timeout=120)
        finally:
            os.unlink(path)
        self.assertFalse(json.loads(r.stdout)["valid"])

    def test_every_served_route_is_documented_and_every_documented_one_served(self):
        doc = self.document()
        documented = {}
        for p, item in doc["paths"].items():
            rx = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p.replace(".", r"\.")) + "$")
            methods = {m.upper() for m in item if m != "parameters"}
            documented[p] = (rx, methods)
        served = {}
        for depth in range(1, 5):
            for words in itertools.product(WORDS, repeat=depth):
                path = "/v1/" + "/".join(words)
                st, h, body = self.api.call("OPTIONS", path)
                if st == 404:
                    self.assertEqual(body["error"]["message"], "path: no such API path", path)
                    continue
                self.assertEqual(st, 405, (path, body))
                served[path] = {m.strip() for m in h["allow"].split(",")}
        self.assertGreater(len(served), 5)
        for path, methods in served.items():
            hits = [p for p, (rx, _) in documented.items() if rx.match(path)]
            self.assertTrue(hits, "%s is served but not documented" % path)
            doc_methods = set().union(*(documented[p][1] for p in hits))
            self.assertLessEqual(methods, doc_methods, "%s: %s served, %s documented"
                                 % (path, methods, doc_methods))
        for p, (rx, methods) in documented.items():
            if p == "/v1/openapi.json":
                continue
            concrete = re.sub(r"\{[^}]+\}", "x", p)
            self.assertIn(concrete, served, "%s is documented but not served" % p)
            self.assertEqual(served[concrete], methods, p)


if __name__ == "__main__":
    unittest.main()
