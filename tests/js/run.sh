#!/bin/sh
# make test's JavaScript tests (ctest entries js_client_unit, js_client_size and js_client_e2e):
#   run.sh unit  node --test: the client's own tests and the replay of tests/cases/proto
#   run.sh size  the minified and gzipped size of the client (esbuild); fails over 8 KiB gzipped
#   run.sh e2e   node --test: the client in Node (ws) against transportsd --demo, and the
#                demo page in Chromium (playwright-core)
# A missing node (20 or later), npm package or Chromium fails the test: it never skips.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
fail() {
    echo "tests/js/run.sh: $*" >&2
    exit 1
}
command -v node >/dev/null 2>&1 ||
    fail "node is missing: scripts/install-deps.sh installs Debian's nodejs"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "node $(node --version) is too old: the client's tests need Node 20 or later"
cd "$root/clients/js"
for p in ws esbuild playwright-core; do
    [ -f "node_modules/$p/package.json" ] ||
        fail "clients/js/node_modules/$p is missing: run scripts/install-deps.sh (npm ci)"
done
case "${1:-}" in
unit) exec node --test test/client.test.js test/cases.test.js ;;
size) exec node bench/size.js --check ;;
e2e)
    chromium=${CHROMIUM:-/usr/bin/chromium}
    [ -x "$chromium" ] || fail "Chromium is missing at $chromium: scripts/install-deps.sh installs Debian's chromium"
    [ -n "${TRANSPORTSD:-}" ] || fail "TRANSPORTSD must name the daemon"
    exec node --test --test-timeout=180000 test/daemon.test.js test/e2e.test.js
    ;;
*) fail "usage: run.sh unit|size|e2e" ;;
esac
