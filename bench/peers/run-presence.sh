#!/usr/bin/env bash
# W5, presence (issue 17): transportsd's presence and y-websocket's Yjs awareness on the same
# workload, `conns` connections on one shared document each moving its cursor `hz` times a
# second. Prints one JSON row per system on stdout; progress on stderr.
#
#   bench/peers/run-presence.sh [transports|y-websocket|both] [conns=100] [hz=20]
#                               [duration=5] [warmup=1] [tick_ms=50]
#
# transportsd (BUILD_DIR, default ./build) runs a config of its own: `conns` tenants, each
# subscribed (write) to the shared model `doc`, autosync_ms = tick_ms (the presence tick),
# storage in memory. Each server is pinned to CPU 0, the load client (presence.js) to CPU 1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$root/build}
which=${1:-both}
[ $# -gt 0 ] && shift
case $which in transports|y-websocket|both) ;; *) echo "usage: $0 [transports|y-websocket|both] [key=value ...]" >&2; exit 2 ;; esac
conns=100 tick=50
for a in "$@"; do
  case $a in
    conns=*) conns=${a#conns=} ;;
    tick_ms=*) tick=${a#tick_ms=} ;;
  esac
done

cd "$here"
if [ ! -d node_modules ]; then
  echo "run-presence: npm ci in $here" >&2
  npm ci --no-audit --no-fund >&2
fi
clk_tck=$(getconf CLK_TCK)
pin0=() pin1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin0=(taskset -c 0) pin1=(taskset -c 1)
fi

tmp=$(mktemp -d)
srv_pid=
stop_server() {
  if [ -n "$srv_pid" ]; then
    kill "$srv_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=
  fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

wait_port() { # $1: the file the server logs its "listening addr=" line to
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" | head -1)
    [ -n "$port" ] && return 0
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run-presence: the server did not start:" >&2
  cat "$1" >&2
  return 1
}

run_transports() {
  [ -x "$BUILD_DIR/transportsd" ] || { echo "run-presence: $BUILD_DIR/transportsd is missing" >&2; return 1; }
  node -e '
    const n = Number(process.argv[1]), tick = Number(process.argv[2])
    const subs = {}, tenants = {}
    for (let i = 0; i < n; i++) { subs["t" + i] = "write"; tenants["t" + i] = {} }
    process.stdout.write(JSON.stringify({
      autosync_ms: tick, storage: { memory: true },
      schemas: { Doc: { title: "Doc", type: "object", properties: { title: { type: "string" } } } },
      tenants,
      shared: { doc: { schema: "Doc", merge: "lww", value: { title: "W5" }, subscribers: subs } }
    }))' "$conns" "$tick" > "$tmp/config.json"
  : > "$tmp/log"
  "${pin0[@]}" "$BUILD_DIR/transportsd" --config "$tmp/config.json" --listen 127.0.0.1:0 \
    --log-level info 2> "$tmp/log" &
  srv_pid=$!
  wait_port "$tmp/log" || return 1
  "${pin1[@]}" node presence.js peer=transports "port=$port" "server_pid=$srv_pid" \
    "clk_tck=$clk_tck" "$@"
  stop_server
}

run_yws() {
  : > "$tmp/out"
  "${pin0[@]}" node server-yws.js 0 > "$tmp/out" 2> >(sed -u 's/^/[server] /' >&2) &
  srv_pid=$!
  wait_port "$tmp/out" || return 1
  "${pin1[@]}" node presence.js peer=y-websocket "port=$port" "server_pid=$srv_pid" \
    "clk_tck=$clk_tck" "$@"
  stop_server
}

status=0
if [ "$which" = transports ] || [ "$which" = both ]; then run_transports "$@" || status=1; fi
if [ "$which" = y-websocket ] || [ "$which" = both ]; then run_yws "$@" || status=1; fi
exit $status
