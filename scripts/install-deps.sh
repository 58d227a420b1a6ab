#!/usr/bin/env bash
# Installs the Debian packages transports needs to build, test and run.
# Idempotent: packages already present are left alone, and nothing is installed
# when everything is there already.
set -euo pipefail

packages=(
    build-essential cmake pkg-config
    libjansson-dev libsqlite3-dev libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libssl-dev
    libcriterion-dev
    valgrind
    python3-websockets openssl
    python3-jwt python3-cryptography
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
