"""static_dir and --demo's page: GET serves a directory's files with their content types;
paths that could leave the directory, hidden files, other kinds of files, directories and
files over 256 KiB are refused; a static_dir that is not a directory stops the start."""

import http.client
import os
import subprocess
import tempfile
import unittest

from harness import TRANSPORTSD, Daemon, DaemonTestCase, doc_config, require_daemon

MAX = 256 * 1024


def raw_get(port, path, method="GET"):
    """One request with the path exactly as given (no client-side normalization)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        c.close()


class StaticDir(DaemonTestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="tp-static-")
        self.dir = os.path.join(self.root, "site")
        os.makedirs(os.path.join(self.dir, "sub"))
        os.makedirs(os.path.join(self.dir, ".git"))
        files = {
            "index.html": b"<!doctype html><p>home</p>",
            "app.js": b"export const x = 1;\n",
            "style.css": b"body{}",
            "sub/data.json": b"{\"a\":1}",
            ".git/config.txt": b"secret",
            ".hidden.js": b"secret",
            "notes.db": b"secret",
            "big.js": b"/" * (MAX + 1),
            "edge.js": b"/" * MAX,
            "dir.js/inner.js": b"1",
        }
        for name, body in files.items():
            path = os.path.join(self.dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
        # Outside the directory: must never be served.
        with open(os.path.join(self.root, "outside.js"), "wb") as f:
            f.write(b"secret")
        self.d = self.start_daemon(doc_config(static_dir=self.dir))

    def get(self, path):
        return raw_get(self.d.port, path)

    def test_files_with_their_types(self):
        for path, ctype, body in [
            ("/", "text/html; charset=utf-8", b"<!doctype html><p>home</p>"),
            ("/index.html", "text/html; charset=utf-8", b"<!doctype html><p>home</p>"),
            ("/app.js", "text/javascript; charset=utf-8", b"export const x = 1;\n"),
            ("/style.css", "text/css; charset=utf-8", b"body{}"),
            ("/sub/data.json", "application/json", b"{\"a\":1}"),
            ("/app.js?v=2", "text/javascript; charset=utf-8", b"export const x = 1;\n"),
        ]:
            with self.subTest(path=path):
                self.assertEqual(self.get(path), (200, ctype, body))

    def test_size_bound(self):
        status, _, body = self.get("/edge.js")
        self.assertEqual((status, len(body)), (200, MAX))
        status, _, body = self.get("/big.js")
        self.assertEqual(status, 404)
        self.assertNotIn(b"//////", body)
        self.d.wait_log(r"static file over 262144 bytes: big\.js")

    def test_traversal_and_hidden_refused(self):
        for path in ["/../outside.js", "/sub/../../outside.js", "/%2e%2e/outside.js",
                     "/..%2foutside.js", "/sub/..%2F..%2Foutside.js", "//etc/passwd",
                     "/.git/config.txt", "/.hidden.js", "/sub/.hidden.js",
                     "/notes.db", "/nope.js", "/dir.js", "/sub/", "/sub", "/app.js%00.html",
                     "/app%20.js", "/" + "a" * 300 + ".js", "/%5c..%5coutside.js"]:
            with self.subTest(path=path):
                try:
                    status, _, body = self.get(path)
                except http.client.RemoteDisconnected:
                    continue  # lws itself refuses some (an encoded NUL): closed unanswered
                self.assertIn(status, (400, 404), path)
                self.assertNotIn(b"secret", body)

    def test_double_slashes_stay_inside(self):
        # lws merges "//" before the server sees the path: the same file, inside.
        self.assertEqual(self.get("/sub//data.json")[0], 200)

    def test_only_get(self):
        status, _, _ = raw_get(self.d.port, "/app.js", method="POST")
        self.assertEqual(status, 405)

    def test_endpoints_and_route_still_win(self):
        with open(os.path.join(self.dir, "healthz"), "wb") as f:
            f.write(b"shadow")
        status, ctype, _ = self.get("/healthz")
        self.assertEqual((status, ctype), (200, "application/json"))
        status, _, _ = self.get("/ws/alice")
        self.assertEqual(status, 400)


class StaticDirRefusals(unittest.TestCase):
    def run_daemon(self, config=None, args=()):
        require_daemon(self)
        d = Daemon(config=config, demo=config is None, args=args)
        cmd = d.command()
        p = subprocess.run(cmd, cwd=d.dir, capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stderr

    def test_not_a_directory(self):
        code, err = self.run_daemon(doc_config(static_dir="/nonexistent/site"))
        self.assertEqual(code, 2, err)
        self.assertIn("static_dir: \"/nonexistent/site\" is not a directory", err)

    def test_mistyped(self):
        for value, why in [(3, "static_dir: expected a string"), ("", "static_dir: expected a directory")]:
            with self.subTest(value=value):
                code, err = self.run_daemon(doc_config(static_dir=value))
                self.assertEqual(code, 2, err)
                self.assertIn(why, err)

    def test_flag_needs_a_value(self):
        code, err = self.run_daemon(args=["--static-dir", ""])
        self.assertEqual(code, 2, err)
        self.assertIn("--static-dir needs a directory", err)


class DemoPage(DaemonTestCase):
    def test_demo_serves_the_page_and_the_client(self):
        d = self.start_daemon(demo=True)
        status, ctype, body = raw_get(d.port, "/")
        self.assertEqual((status, ctype), (200, "text/html; charset=utf-8"))
        self.assertIn(b"app.js", body)
        status, ctype, body = raw_get(d.port, "/transports-client.js")
        self.assertEqual((status, ctype), (200, "text/javascript; charset=utf-8"))
        self.assertIn(b"export class Client", body)
        d.wait_log(r"static dir=\S+ page=http://127\.0\.0\.1:%d/" % d.port)

    def test_flag_overrides_the_demo_page(self):
        other = tempfile.mkdtemp(prefix="tp-static-")
        with open(os.path.join(other, "index.html"), "wb") as f:
            f.write(b"mine")
        d = self.start_daemon(demo=True, args=["--static-dir", other])
        self.assertEqual(raw_get(d.port, "/")[2], b"mine")


if __name__ == "__main__":
    unittest.main()
