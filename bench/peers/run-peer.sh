#!/usr/bin/env bash
# Runs one peer (ws | y-websocket | hocuspocus) through one workload (W1 | W2 | W3 | all) and
# prints one JSON result row per point on stdout; progress and diagnostics go to stderr.
#
#   bench/peers/run-peer.sh <peer> <workload> [key=value ...]
#
# A value may be a comma-separated list: every combination is one point, and every point gets a
# fresh server (pinned to CPU 0) and a fresh load client (pinned to CPU 1). Without keys a
# workload runs the issue's points:
#   W1  subs=100,1000 rate=200,2000,max    (rate=max: closed loop; add subs=5000 by hand)
#   W2  tenants=200,2000
#   W3  conns=2000,10000
# Other keys are passed to client.js (duration=, warmup=, lag=, procs=, conc=, ...).
# Workload `check` prints no rows: it checks the load client's protocol against the peer's own
# client (WebsocketProvider, HocuspocusProvider) with check-providers.js.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

usage() { echo "usage: $0 ws|y-websocket|hocuspocus W1|W2|W3|all|check [key=value[,value...] ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
peer=$1 workload=$2
shift 2
case $peer in
  ws) server=server-ws.js ;;
  y-websocket) server=server-yws.js ;;
  hocuspocus) server=server-hocuspocus.js ;;
  *) usage ;;
esac
case $workload in
  W1|W2|W3) workloads=$workload ;;
  all) workloads="W1 W2 W3" ;;
  check) workloads=check ;;
  *) usage ;;
esac

if [ ! -d node_modules ]; then
  echo "run-peer: npm ci in $here" >&2
  npm ci --no-audit --no-fund >&2
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
clk_tck=$(getconf CLK_TCK)
pin0=() pin1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin0=(taskset -c 0) pin1=(taskset -c 1)
else
  echo "run-peer: taskset or a second CPU missing: server and client are not pinned" >&2
fi

srv_pid=
tmp=$(mktemp -d)
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

start_server() {
  : > "$tmp/out"
  "${pin0[@]}" node "$server" 0 > "$tmp/out" 2> >(sed -u 's/^/[server] /' >&2) &
  srv_pid=$!
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening addr=127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/out")
    [ -n "$port" ] && return 0
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run-peer: $server did not start" >&2
  return 1
}

# the points: the cartesian product of the comma lists
defaults() {
  case $1 in
    W1) echo "subs=100,1000 rate=200,2000,max" ;;
    W2) echo "tenants=200,2000" ;;
    W3) echo "conns=2000,10000" ;;
  esac
}
expand() { # expand "k=a,b" "j=c" ... -> one line per combination
  if [ $# -eq 0 ]; then echo; return; fi
  local first=$1; shift
  local key=${first%%=*} vals=${first#*=} rest v
  while IFS= read -r rest; do
    IFS=, read -ra vs <<< "$vals"
    for v in "${vs[@]}"; do echo "$key=$v${rest:+ $rest}"; done
  done < <(expand "$@")
}

status=0
if [ "$workloads" = check ]; then
  if [ "$peer" = ws ]; then echo "run-peer: ws has no client of its own to check against" >&2; exit 0; fi
  start_server || exit 1
  node check-providers.js "peer=$peer" "port=$port" || status=1
  stop_server
  exit $status
fi
for wl in $workloads; do
  given=" $* "
  kv=()
  for d in $(defaults "$wl"); do
    case $given in *" ${d%%=*}="*) ;; *) kv+=("$d") ;; esac
  done
  kv+=("$@")
  while IFS= read -r point; do
    read -ra pargs <<< "$point"
    echo "run-peer: $peer $wl ${pargs[*]}" >&2
    start_server || { status=1; continue; }
    if ! "${pin1[@]}" node client.js "peer=$peer" "workload=$wl" "port=$port" "server_pid=$srv_pid" \
        "clk_tck=$clk_tck" "${pargs[@]}"; then
      echo "run-peer: the client failed on $peer $wl ${pargs[*]}" >&2
      status=1
    fi
    stop_server
  done < <(expand "${kv[@]}")
done
exit $status
