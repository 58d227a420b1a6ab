#!/usr/bin/env bash
# Installs the Debian packages transports needs to build, test and run.
# Idempotent: packages already present are left alone, and nothing is installed
# when everything is there already.
set -euo pipefail

packages=(
    build-essential cmake pkg-config
    libjansson-dev libpcre2-dev libsqlite3-dev libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libssl-dev
    libcriterion-dev
    valgrind
    python3-websockets openssl
    chromium
    libcurl4-openssl-dev
    python3-jwt python3-cryptography
    liblua5.4-dev
    # The Redis link (src/cluster/) and its tests, C and Python (python3-redis): the tests start
    # redis-server themselves on free loopback ports; the Debian service, if the package starts
    # one, is never used.
    libhiredis-dev redis-server python3-redis
)
# Node.js for the JavaScript client's tests (clients/js) and the OpenAPI validator of the
# host API's document (tests/openapi/): Debian's nodejs and npm, unless a node is there
# already (a newer one from elsewhere, such as NodeSource's, which carries npm, is left alone).
if ! command -v node >/dev/null 2>&1; then
    packages+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
    packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    echo "install-deps: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The JavaScript client's development packages (ws, esbuild, playwright-core),
# pinned by clients/js/package-lock.json; npm ci only when the lockfile changed.
# playwright-core drives Debian's chromium: it never downloads a browser.
js=$(cd "$(dirname "$0")/../clients/js" && pwd)
if [ ! -f "$js/node_modules/.package-lock.json" ] ||
    [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
    echo "install-deps: npm ci in clients/js" >&2
    (cd "$js" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
