#!/usr/bin/env bash
# bench/cluster.sh: issue 18's benchmark, transportsd nodes on one Redis (bench/README.md,
# "Nodes on one Redis: bench/cluster.sh").
#
#   bench/cluster.sh              W1 (1000 subscribers at 50 writes/s and in closed loop, 100
#                                 subscribers in closed loop) with the connections spread over 1,
#                                 2 and 3 nodes, and W2 (200 tenants, 5 writes/s per connection)
#                                 on 1 and 3 nodes, and on 3 with each tenant's two connections on
#                                 one node; each case also on one node without `cluster`,
#                                 in memory and on SQLite FULL (the baselines), in the same run;
#                                 then the table (about 3 minutes)
#   bench/cluster.sh --quick      W1 (1000 subscribers, 50 writes/s) and W2, 3 s windows
#   bench/cluster.sh --baselines  the baselines alone (no Redis, no cluster)
#
# Each case starts its own redis-server (Debian's, appendonly yes, appendfsync always, no RDB,
# loopback, a temp dir, a free port) and N nodes with one config (the workload's models and
# `cluster`, a node name each), waits for each node's "cluster node=nK ... synced" line, runs
# loadgen with the connections spread round robin over the nodes (--ports), their CPU read per
# node (--server-pids) and Redis's counters over the window (--redis-port), then stops them all.
#
# Environment: BUILD_DIR (default ./build; built here when something is missing), TRANSPORTSD
# (default $BUILD_DIR/transportsd), DURATION and WARMUP (seconds), W1_CASES (subscribers:rate
# pairs, rate a number or max: "1000:50 1000:max 100:max"), W2_TENANTS (200), W1_NODES ("1 2 3")
# and W2_NODES ("1 3"; empty: no cluster), W2_STICKY_NODES ("3"), NODE_CPU (0: every node and the
# baselines' server, where bench/run.sh pins its server), REDIS_CPU (1), LOADGEN_CPU (1),
# REDIS_FSYNC (always; everysec to see what it costs), CLIENT_IDS (1: every writer names itself
# with a client id, as the clients do for exactly once, so each write's outcome is recorded: in
# Redis, for a shared write, by a command after its append; 0: no client ids, no records).
# Prints the table; writes every row to bench/results/cluster-<UTC timestamp>.json. Exits 1 when
# a run lost, reordered or refused anything, or a node or Redis did not start.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
QUICK=0
CLUSTER=1
for a in "$@"; do
    case $a in
    --quick) QUICK=1 ;;
    --baselines) CLUSTER=0 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
if [ $QUICK = 1 ]; then
    DURATION=${DURATION:-3}
    W1_CASES=${W1_CASES-1000:50}
else
    DURATION=${DURATION:-5}
    W1_CASES=${W1_CASES-1000:50 1000:max 100:max}
fi
WARMUP=${WARMUP:-1}
W2_TENANTS=${W2_TENANTS:-200}
W1_NODES=${W1_NODES-1 2 3}
W2_NODES=${W2_NODES-1 3}
W2_STICKY_NODES=${W2_STICKY_NODES-3}
NODE_CPU=${NODE_CPU:-0}
REDIS_CPU=${REDIS_CPU:-1}
LOADGEN_CPU=${LOADGEN_CPU:-1}
REDIS_FSYNC=${REDIS_FSYNC:-always}
CLIENT_IDS=${CLIENT_IDS:-1}

LG=$BUILD_DIR/bench/loadgen
TPD=${TRANSPORTSD:-$BUILD_DIR/transportsd}
REDIS_SERVER=${TP_REDIS_SERVER:-/usr/bin/redis-server}
REDIS_CLI=${TP_REDIS_CLI:-/usr/bin/redis-cli}

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_BUILD_BENCH=ON \
        >/dev/null || exit 2
fi
cmake --build "$BUILD_DIR" -j 2 --target transportsd loadgen >/dev/null || exit 2

command -v taskset >/dev/null || { echo "cluster.sh: taskset is missing (util-linux)" >&2; exit 2; }
if [ $CLUSTER = 1 ]; then
    for tool in "$REDIS_SERVER" "$REDIS_CLI"; do
        [ -x "$tool" ] || {
            echo "cluster.sh: $tool is missing (redis-server, scripts/install-deps.sh)" >&2
            exit 2
        }
    done
    # The table counts as round trips the commands a node sends (loadgen's report.c); a script
    # that called one of them through redis.call would be miscounted.
    if grep -qiE "redis\.p?call\('(HMGET|HGETALL)'" "$ROOT/src/cluster/clog.c"; then
        echo "cluster.sh: a script in src/cluster/clog.c calls HMGET or HGETALL: the table's" \
            "round trips (report.c, node_cmds) count it as one" >&2
    fi
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "cluster.sh: one CPU only: servers, Redis and loadgen share it" >&2
fi

TMP=$(mktemp -d)
ROWS=$TMP/rows.jsonl
: >"$ROWS"
PIDS=()
PORTS=()
REDIS_PID=
REDIS_PORT=
stop_all() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    PIDS=()
    PORTS=()
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
        REDIS_PID=
    fi
}
cleanup() {
    stop_all
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
FAILED=0

# start_redis: a fresh redis-server in $TMP/redis; sets REDIS_PID and REDIS_PORT.
start_redis() {
    local dir=$TMP/redis
    for _ in 1 2 3 4 5; do
        rm -rf "$dir"
        mkdir -p "$dir"
        REDIS_PORT=$("$LG" --free-port) || return 1
        taskset -c "$REDIS_CPU" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 \
            --dir "$dir" --logfile "$dir/redis.log" --daemonize no --save "" \
            --appendonly yes --appendfsync "$REDIS_FSYNC" --latency-monitor-threshold 1 \
            >/dev/null 2>&1 &
        REDIS_PID=$!
        for _ in $(seq 1 200); do
            if ! kill -0 "$REDIS_PID" 2>/dev/null; then
                wait "$REDIS_PID" 2>/dev/null
                REDIS_PID=
                break
            fi
            [ "$("$REDIS_CLI" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
            sleep 0.05
        done
        if [ -n "$REDIS_PID" ]; then
            echo "cluster.sh: redis-server did not answer PING within 10 s" >&2
            cat "$dir/redis.log" >&2
            return 1
        fi
        # Another process took the port between --free-port and the bind: try another.
        grep -q "Address already in use" "$dir/redis.log" 2>/dev/null || break
    done
    echo "cluster.sh: redis-server did not start:" >&2
    cat "$dir/redis.log" >&2
    return 1
}

# wait_log PID FILE REGEX: until the process logs a line matching REGEX (30 s at most).
wait_log() {
    local pid=$1 log=$2 re=$3
    for _ in $(seq 1 600); do
        grep -qE "$re" "$log" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "cluster.sh: the server ($log) exited:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "cluster.sh: no line matching '$re' in $log after 30 s:" >&2
    cat "$log" >&2
    return 1
}

# start_servers SYSTEM WORKLOAD [shape options]: the system's servers (SYSTEM transports,
# transports+sqlite-full, or transports+cluster-N: Redis and N nodes), each on NODE_CPU; sets
# PIDS and PORTS once every one is ready.
start_servers() {
    local sys=$1
    shift
    local n=1 k cfg
    local opts=()
    case $sys in
    transports+cluster-*)
        n=${sys#transports+cluster-}
        n=${n%%/*}
        start_redis || return 1
        ;;
    transports+sqlite-*)
        rm -f "$TMP"/bench.db*
        opts=(--storage "$TMP/bench.db" --sync "${sys#transports+sqlite-}")
        ;;
    esac
    for k in $(seq 1 "$n"); do
        [ -n "$REDIS_PID" ] &&
            opts=(--cluster "redis://127.0.0.1:$REDIS_PORT/0" --node "n$k")
        cfg=$TMP/node$k.json
        "$LG" --print-config "$@" "${opts[@]}" >"$cfg" || return 1
        PORTS+=("$("$LG" --free-port)") || return 1
        # Log level info: the cluster's "synced" line is one. Connections are logged too, but
        # while loadgen connects, not in the measured window.
        taskset -c "$NODE_CPU" "$TPD" --config "$cfg" --listen "127.0.0.1:${PORTS[k - 1]}" \
            --log-level info 2>"$TMP/node$k.log" &
        PIDS+=($!)
    done
    for k in $(seq 1 "$n"); do
        if [ -n "$REDIS_PID" ]; then
            wait_log "${PIDS[k - 1]}" "$TMP/node$k.log" "cluster node=n$k .*synced" || return 1
        fi
        wait_log "${PIDS[k - 1]}" "$TMP/node$k.log" "listening addr=" || return 1
    done
}

# case_ SYSTEM WORKLOAD [loadgen options]: the system's servers, one loadgen run, one row.
case_() {
    local sys=$1 wl=$2
    shift 2
    if ! start_servers "$sys" "$wl" "$@"; then
        echo "cluster.sh: $sys $wl $*: the servers did not start" >&2
        FAILED=1
        stop_all
        return
    fi
    local target=(--port "${PORTS[0]}" --server-pid "${PIDS[0]}")
    if [ -n "$REDIS_PID" ]; then
        local IFS=,
        target=(--ports "${PORTS[*]}" --server-pids "${PIDS[*]}" --redis-port "$REDIS_PORT")
        "$REDIS_CLI" -p "$REDIS_PORT" latency reset >/dev/null
        unset IFS
        [ "${sys%/tenant}" != "$sys" ] && target+=(--spread tenant)
    fi
    if ! "$LG" --workload "$wl" --system "$sys" "${target[@]}" --cpu "$LOADGEN_CPU" \
        --client-ids "$CLIENT_IDS" \
        --warmup "$WARMUP" --duration "$DURATION" "$@" >>"$ROWS"; then
        FAILED=1
        echo "cluster.sh: $sys $wl $*: FAILED (see its row's problems)" >&2
    fi
    # Redis's slowest events of the run past 1 ms (latency-monitor-threshold): with appendfsync
    # always, aof-fsync-always is the fsync each write waits for.
    [ -n "$REDIS_PID" ] && "$REDIS_CLI" -p "$REDIS_PORT" latency latest 2>/dev/null |
        awk 'NR % 4 == 1 { e = $0 } NR % 4 == 0 { s = s " " e " " $0 " ms" }
             END { print "redis: the slowest event of each kind past 1 ms:" (s ? s : " none") }' >&2
    stop_all
    # Each node's own count of its calls to Redis, over its whole life (start-up reads too).
    local k
    for k in $(seq 1 9); do
        [ -f "$TMP/node$k.log" ] || break
        grep -o "cluster node=.* stats .*" "$TMP/node$k.log" >&2
        rm -f "$TMP/node$k.log"
    done
}

# systems NODES [STICKY]: the baselines, then a cluster of each size in NODES, connections round
# robin, then of each size in STICKY, a tenant's connections on one node ("/tenant").
systems() {
    local n
    echo transports transports+sqlite-full
    if [ $CLUSTER = 1 ]; then
        for n in $1; do
            echo "transports+cluster-$n"
        done
        for n in ${2:-}; do
            echo "transports+cluster-$n/tenant"
        done
    fi
}

echo "cluster.sh: ${DURATION}s windows after ${WARMUP}s of warm-up; servers on CPU $NODE_CPU," \
    "Redis on CPU $REDIS_CPU (appendfsync $REDIS_FSYNC), loadgen on CPU $LOADGEN_CPU;" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# Case by case, every system in turn: a case's ratios compare runs a minute apart at most.
for c in $W1_CASES; do
    rate=${c##*:}
    rate_opt=()
    [ "$rate" != max ] && rate_opt=(--rate "$rate")
    for sys in $(systems "$W1_NODES"); do
        case_ "$sys" W1 --subs "${c%%:*}" "${rate_opt[@]}"
    done
done
for sys in $(systems "$W2_NODES" "$W2_STICKY_NODES"); do
    case_ "$sys" W2 --tenants "$W2_TENANTS" --rate 5
done

mkdir -p "$ROOT/bench/results"
OUT=$ROOT/bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ).json
{
    echo '['
    sed '$!s/$/,/' "$ROWS"
    echo ']'
} >"$OUT"
echo
"$LG" --report-cluster "$OUT"
echo
echo "cluster.sh: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cluster.sh: rows written to ${OUT#"$ROOT"/}"
[ $FAILED = 0 ] || echo "cluster.sh: some runs FAILED: see above, and the rows marked NO" >&2
exit $FAILED
