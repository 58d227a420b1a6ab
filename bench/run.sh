#!/usr/bin/env bash
# bench/run.sh: the benchmark of issue 4, all of it (bench/README.md).
#
#   bench/run.sh            every workload, transportsd and the floor (W1 to W3), then the
#                           Node peers
#   bench/run.sh --quick    W1 at 100 and 1000 subscribers, W2 at 2000 tenants and W3 at 2000
#                           connections, a few seconds each (what `make bench` runs after
#                           core_bench)
#   bench/run.sh --storage  the cost of durability (issues 5 and 16): W1 (1000 subscribers,
#                           2000 writes/s and closed loop), W2 (T = 200 and 2000 at 5/s) and
#                           W2 closed loop (T = 200, 8 unacked writes per connection: the most
#                           durable writes/s) on transportsd in memory and on SQLite at each
#                           level (rows "transports+sqlite-LEVEL"), case by case; then the
#                           storage table: the loop thread's and the whole process's CPU per
#                           write, p99, writes/s, and each one's ratio to memory
#   bench/run.sh --presence W5, presence (issue 17): 100 connections on one shared model, each
#                           moving its cursor 20 times a second, transportsd's presence beside
#                           y-websocket's Yjs awareness (bench/peers/run-presence.sh); prints
#                           their JSON rows and exits
#
# STORAGE_LEVELS (default "off normal full") picks the SQLite levels of --storage.
# Environment: BUILD_DIR (default ./build; built here when something is missing),
# DURATION and WARMUP (seconds of each measured window and of its warm-up), PEERS=0 to skip
# the Node peers. Each server runs pinned to CPU 0 (taskset), loadgen pins itself to CPU 1.
# Prints a table; writes every row to bench/results/<UTC timestamp>.json. Exits 1 when a run
# lost, reordered or refused anything (its row says what), 0 otherwise.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
QUICK=0
STORAGE=0
for a in "$@"; do
    case $a in
    --quick) QUICK=1 ;;
    --storage) STORAGE=1 ;;
    --presence)
        # W5 has a runner of its own: one server per system, the Node load client.
        cmake --build "${BUILD_DIR:-$ROOT/build}" -j 2 --target transportsd >/dev/null || exit 2
        BUILD_DIR=${BUILD_DIR:-$ROOT/build} exec "$ROOT/bench/peers/run-presence.sh" both \
            "duration=${DURATION:-5}" "warmup=${WARMUP:-1}"
        ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
if [ $QUICK = 1 ]; then
    DURATION=${DURATION:-3}
    WARMUP=${WARMUP:-1}
else
    DURATION=${DURATION:-5}
    WARMUP=${WARMUP:-1}
fi

LG=$BUILD_DIR/bench/loadgen
FLOOR=$BUILD_DIR/bench/floor_relay
TPD=$BUILD_DIR/transportsd

# Build what is missing; an existing build dir is brought up to date.
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_BUILD_BENCH=ON \
        >/dev/null || exit 2
fi
cmake --build "$BUILD_DIR" -j 2 --target transportsd loadgen floor_relay >/dev/null || exit 2

for tool in taskset; do
    command -v $tool >/dev/null || { echo "run.sh: $tool is missing (util-linux)" >&2; exit 2; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "run.sh: one CPU only: server and loadgen will share it, figures are not comparable" >&2
fi

TMP=$(mktemp -d)
ROWS=$TMP/rows.jsonl
: >"$ROWS"
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
FAILED=0

# start_server floor|transports WORKLOAD [shape options]: sets SERVER_PID and PORT.
start_server() {
    local sys=$1
    shift
    PORT=$("$LG" --free-port) || return 1
    if [ "$sys" = floor ]; then
        taskset -c 0 "$FLOOR" --port "$PORT" >"$TMP/server.log" 2>&1 &
    else
        local storage=()
        if [ "${sys#transports+sqlite-}" != "$sys" ]; then
            rm -f "$TMP/bench.db" "$TMP/bench.db-wal" "$TMP/bench.db-shm" "$TMP/bench.db-lock"
            storage=(--storage "$TMP/bench.db" --sync "${sys#transports+sqlite-}")
        fi
        "$LG" --print-config "$@" "${storage[@]}" >"$TMP/config.json" || return 1
        taskset -c 0 "$TPD" --config "$TMP/config.json" --listen "127.0.0.1:$PORT" \
            --log-level warn 2>"$TMP/server.log" &
    fi
    SERVER_PID=$!
    # Ready once the port accepts (the server binds only when everything is built).
    local i
    for i in $(seq 1 400); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "run.sh: $sys did not start:" >&2
            cat "$TMP/server.log" >&2
            SERVER_PID=
            return 1
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "run.sh: $sys is not listening on $PORT after 20 s" >&2
    return 1
}

stop_server() {
    [ -z "$SERVER_PID" ] && return
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

# case SYSTEM WORKLOAD [loadgen options]: one server, one loadgen run, one row.
case_() {
    local sys=$1 wl=$2
    shift 2
    local sysopt=(--system "$sys")
    [ "$sys" = floor ] && sysopt=(--raw)
    if ! start_server "$sys" "$wl" "$@"; then
        FAILED=1
        return
    fi
    if ! "$LG" --workload "$wl" "${sysopt[@]}" --port "$PORT" --server-pid "$SERVER_PID" --cpu 1 \
        --warmup "$WARMUP" --duration "$DURATION" "$@" >>"$ROWS"; then
        FAILED=1
        echo "run.sh: $sys $wl $*: FAILED (see its row's problems)" >&2
    fi
    stop_server
}

# peer_case PEER WORKLOAD key=value...: the Node peers' rows (bench/peers/).
PEER_RUNNER=$ROOT/bench/peers/run-peer.sh
peer_case() {
    "$PEER_RUNNER" "$@" >"$TMP/peer.out" 2>"$TMP/peer.err"
    local rc=$?
    grep '^{' "$TMP/peer.out" >>"$ROWS"
    if [ $rc != 0 ]; then
        echo "run.sh: peer $*: exit status $rc" >&2
        tail -3 "$TMP/peer.err" >&2
    fi
}

if [ $QUICK = 1 ]; then
    W1_CASES="100:200 1000:max"
    W2_TENANTS="2000"
    PEER_W2_TENANTS= # the peers' quick set stays W1 and W3, as before
    W3_CONNS="2000"
    W4=0
else
    W1_CASES="100:200 100:2000 100:max 1000:200 1000:2000 1000:max 5000:200 5000:2000 5000:max"
    W2_TENANTS="200 2000"
    PEER_W2_TENANTS=$W2_TENANTS
    W3_CONNS="2000 10000"
    W4=1
fi

echo "run.sh: ${DURATION}s windows after ${WARMUP}s of warm-up; server on CPU 0, loadgen on CPU 1" >&2
if [ $STORAGE = 1 ]; then
    # Durability's cost: the same runs in memory and on SQLite at each level.
    # Case by case, every system in turn: the ratios compare runs minutes apart at most.
    W1_CASES= W2_TENANTS= W3_CONNS= W4=0 PEERS=0
    SYSTEMS=transports
    for level in ${STORAGE_LEVELS:-off normal full}; do
        SYSTEMS="$SYSTEMS transports+sqlite-$level"
    done
    for c in "W1 --subs 1000 --rate 2000" "W1 --subs 1000" "W2 --tenants 200 --rate 5" \
        "W2 --tenants 2000 --rate 5" "W2 --tenants 200 --rate max --window 8"; do
        for sys in $SYSTEMS; do
            # shellcheck disable=SC2086
            case_ "$sys" $c
        done
    done
fi
for c in $W1_CASES; do
    subs=${c%%:*}
    rate=${c##*:}
    rate_opt=()
    [ "$rate" != max ] && rate_opt=(--rate "$rate")
    case_ transports W1 --subs "$subs" "${rate_opt[@]}"
    case_ floor W1 --subs "$subs" "${rate_opt[@]}"
done
for t in $W2_TENANTS; do
    case_ transports W2 --tenants "$t" --rate 5
    case_ floor W2 --tenants "$t" --rate 5
done
for n in $W3_CONNS; do
    case_ transports W3 --conns "$n"
    case_ floor W3 --conns "$n"
done
if [ $W4 = 1 ]; then
    case_ transports W4 --writers 50 --subs 500 --fields 100
fi

# The Node peers: same workloads, same row schema, params as key=value.
if [ "${PEERS:-1}" = 0 ]; then
    echo "run.sh: PEERS=0: the Node peers are skipped" >&2
elif [ ! -x "$PEER_RUNNER" ]; then
    echo "run.sh: $PEER_RUNNER not found: the Node peers are skipped" >&2
else
    for peer in ws y-websocket hocuspocus; do
        for c in $W1_CASES; do
            peer_case "$peer" W1 "subs=${c%%:*}" "rate=${c##*:}" "duration=$DURATION" \
                "warmup=$WARMUP"
        done
        for t in $PEER_W2_TENANTS; do
            peer_case "$peer" W2 "tenants=$t" rate=5 "duration=$DURATION" "warmup=$WARMUP"
        done
        for n in $W3_CONNS; do
            peer_case "$peer" W3 "conns=$n"
        done
    done
fi

mkdir -p "$ROOT/bench/results"
OUT=$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ).json
{
    echo '['
    sed '$!s/$/,/' "$ROWS"
    echo ']'
} >"$OUT"
echo
"$LG" --report "$OUT"
echo
if [ $STORAGE = 1 ]; then
    "$LG" --report-storage "$OUT"
    echo
fi
echo "run.sh: rows written to ${OUT#$ROOT/}"
[ $FAILED = 0 ] || echo "run.sh: some runs FAILED: see the rows marked NO" >&2
exit $FAILED
