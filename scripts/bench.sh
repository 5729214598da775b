#!/usr/bin/env bash
# The numbers of DESIGN.md §6 over loopback: builds release, starts the server with
# configs/bench.toml in a temporary data dir and a bare TCP echo server beside it (the floor),
# and drives both with the project's load generator (crates/loadgen):
#
#   - ping-pong latency over one FIX session (one order at a time, HDR histogram), and the same
#     against the echo server with messages of the order's size; first with the client and both
#     servers on one CPU (the software path: no cross-CPU wake-up), then with the client on
#     another CPU. The server's background threads (journal, audit log) go to the other CPU,
#     where a deployment puts them too (journal.pin_cpu in configs/dev.toml): they are not on
#     the path of an acknowledgement under fsync = "never", and their batch every few ms would
#     otherwise land between round trips;
#   - open-loop floods with coordinated-omission correction, stepping the rate up until p99
#     stays at or above 1 ms: the highest rate that keeps p99 < 1 ms, for 1 and 16 sessions,
#     FIX and echo;
#   - the 16-session floods again with a client that batches (a write per session every
#     200 µs carrying the orders due meanwhile);
#   - the server's memory per idle session (resident size with 16 sessions logged on, less
#     with 1, over 15; the first session's one-time costs apart);
#   - the same ping-pong and floods over the WebSocket API (ws:// on loopback, session.logon with
#     the bench key, then order.place LIMIT GTC ACK), connections as sessions.
#
# Then prints one table, FIX against the echo floor, with the targets. Takes about 5 minutes.
#
#   scripts/bench.sh                   the loopback benchmark
#   scripts/bench.sh --criterion [F]   also the criterion benchmarks afterwards (reports in
#                                      target/criterion/), only those matching F if given
#   scripts/bench.sh --fsync always    the journal's fsync policy (configs/bench.toml: never;
#                                      always | never | interval_ms=N)
#   scripts/bench.sh --threading dedicated
#                                      where the core loop runs (configs/bench.toml: shared;
#                                      dedicated | shared, see core.threading in configs/dev.toml)
#
# Results (JSON per run, the server's log, the table) are kept in target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."

CRITERION=0
CRITERION_ARGS=()
FSYNC='"never"'
THREADING=""
while [ $# -gt 0 ]; do
    case "$1" in
        --criterion) CRITERION=1 ;;
        --fsync)
            shift
            case "${1:-}" in
                always | never) FSYNC="\"$1\"" ;;
                interval_ms=[0-9]*) FSYNC="{ interval_ms = ${1#interval_ms=} }" ;;
                *)
                    echo "bench.sh: --fsync always|never|interval_ms=N" >&2
                    exit 2
                    ;;
            esac
            ;;
        --threading)
            shift
            case "${1:-}" in
                dedicated | shared) THREADING="$1" ;;
                *)
                    echo "bench.sh: --threading dedicated|shared" >&2
                    exit 2
                    ;;
            esac
            ;;
        -h | --help)
            sed -n '2,/^[^#]/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            if [ "$CRITERION" = 1 ]; then
                CRITERION_ARGS+=("$1")
            else
                echo "bench.sh: unknown argument $1 (see --help)" >&2
                exit 2
            fi
            ;;
    esac
    shift
done

step() { printf '\n==> %s\n' "$*" >&2; }

# --- The machine ---------------------------------------------------------------------------
NCPU=$(nproc)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "machine: ${NCPU} CPUs, ${CPU_MODEL:-unknown CPU}, $(uname -sr), load average ${LOAD_BEFORE}"
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: other processes are using the CPUs (load average ${LOAD_BEFORE%% *}): the numbers will be noisy" >&2
fi

# --- Build ---------------------------------------------------------------------------------
step "cargo build --release -p portcullis -p portcullis-loadgen"
cargo build --release -p portcullis -p portcullis-loadgen
BIN="$(pwd)/target/release/portcullis"
LG="$(pwd)/target/release/portcullis-loadgen"

# --- Server and echo server ----------------------------------------------------------------
OUT="target/bench"
rm -rf "$OUT"
mkdir -p "$OUT"
TMP=$(mktemp -d)
SERVER_PID=""
ECHO_PID=""
cleanup() {
    # Only the processes this script started.
    if [ -n "$ECHO_PID" ]; then kill "$ECHO_PID" 2>/dev/null || true; fi
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    cp "$TMP/server.log" "$OUT/server.log" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# The bench config with the temporary data dir and any free port (printed by the server).
sed -e "s|^data_dir = .*|data_dir = \"$TMP/data\"|" \
    -e 's|^bind = "127.0.0.1:[0-9]*"|bind = "127.0.0.1:0"|' \
    -e "s|^fsync = .*|fsync = $FSYNC|" \
    configs/bench.toml >"$TMP/bench.toml"
if [ -n "$THREADING" ]; then
    sed -i -e "s|^threading = .*|threading = \"$THREADING\"|" "$TMP/bench.toml"
fi
"$BIN" check-config --config "$TMP/bench.toml" >&2

# When the server has API keys, sessions authenticate: a fresh master key and vault, one key
# for the bench account; the load generator signs its Logons with it.
KEY_ARGS=()
if "$BIN" keys --help >/dev/null 2>&1; then
    PORTCULLIS_MASTER_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    export PORTCULLIS_MASTER_KEY
    "$BIN" keys create --config "$TMP/bench.toml" --account BENCH-ACC --scopes trade --json \
        >"$TMP/key.json"
    KEY_ARGS=(--key-file "$TMP/key.json")
fi

# Waits until FILE has a line starting with PREFIX and prints its last word (the address).
wait_for_addr() {
    local file=$1 prefix=$2 pid=$3
    for _ in $(seq 1 100); do
        if grep -q "^$prefix" "$file" 2>/dev/null; then
            grep -m1 "^$prefix" "$file" | awk '{print $NF}'
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "bench.sh: no \"$prefix\" line from pid $pid; its output:" >&2
    cat "$file" "$TMP"/*.log >&2 2>/dev/null || true
    return 1
}

step "starting the server (configs/bench.toml) and the echo server"
# Warnings only: per-connection info lines would be noise; nothing is logged per message.
RUST_LOG=warn "$BIN" serve --config "$TMP/bench.toml" >"$TMP/server.out" 2>"$TMP/server.log" &
SERVER_PID=$!
FIX_ADDR=$(wait_for_addr "$TMP/server.out" "listening: fix FIX.4.4 tcp" "$SERVER_PID")
# The WebSocket API listener (ws://HOST:PORT/ws-api/v3): the load generator wants HOST:PORT.
WS_ADDR=$(wait_for_addr "$TMP/server.out" "listening: ws tcp" "$SERVER_PID")
WS_ADDR=${WS_ADDR%/ws-api/v3}
"$LG" echo --bind 127.0.0.1:0 >"$TMP/echo.out" 2>"$TMP/echo.log" &
ECHO_PID=$!
ECHO_ADDR=$(wait_for_addr "$TMP/echo.out" "listening: echo" "$ECHO_PID")
echo "server: FIX 4.4 on $FIX_ADDR, WebSocket API on $WS_ADDR; echo server on $ECHO_ADDR" >&2

# The FIX options; the echo runs take the same ones, so their messages have the order's size.
FIX_ARGS=(--begin FIX.4.4 --sender 'LG{n}' --target BENCH --account BENCH-ACC
    --symbol BTC-PERP --side buy --qty 1 --price 1000 --tif gtc "${KEY_ARGS[@]}")

# --- Memory per idle session ----------------------------------------------------------------
# The server's resident size with one bench session logged on and idle, then with all 16: the
# difference over 15 is what each further session costs. The first session also brings one-time
# costs (lazily built tables, a thread for its store's disk calls), shown apart. Measured first,
# while the heap holds nothing of the runs below; the server runs without transparent huge
# pages, so the resident size moves in 4 KiB pages.
step "memory per idle session: 1, then 16 FIX sessions logged on, idle"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_line() { # wait_line PATTERN: until the idle client printed it (or exited)
    for _ in $(seq 1 100); do
        if grep -q "$1" "$TMP/idle.out" 2>/dev/null || ! kill -0 "$IDLE_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
}
RSS_BEFORE=$(rss_kib "$SERVER_PID")
"$LG" idle --addr "$FIX_ADDR" --sessions 16 --first-alone-secs 1.5 --hold-secs 2 "${FIX_ARGS[@]}" \
    >"$TMP/idle.out" 2>"$TMP/idle.log" &
IDLE_PID=$!
wait_line '^idle: 1 session'
sleep 0.5
RSS_FIRST=$(rss_kib "$SERVER_PID")
wait_line '^idle: 16 sessions'
sleep 0.5
RSS_AFTER=$(rss_kib "$SERVER_PID")
if wait "$IDLE_PID" && grep -q '^idle: 16 sessions' "$TMP/idle.out"; then
    echo "{\"sessions\": 16, \"rss_before_kib\": $RSS_BEFORE, \"rss_first_kib\": $RSS_FIRST, \"rss_after_kib\": $RSS_AFTER}" >"$OUT/idle.json"
else
    echo "bench.sh: the idle sessions did not log on:" >&2
    cat "$TMP/idle.log" >&2
fi

# The WebSocket API runs (session.logon with the key, then order.place) need the key.
WS=0
if [ ${#KEY_ARGS[@]} -gt 0 ]; then WS=1; fi
WS_ARGS=(--ws --symbol BTC-PERP --side buy --qty 1 --price 1000 --tif gtc "${KEY_ARGS[@]}")

# --- Ping-pong -----------------------------------------------------------------------------
PP=(--warmup 2000 --count 20000)
pin() { # pin CPULIST PID...: every thread of each process onto CPULIST
    local cpus=$1
    shift
    for p in "$@"; do taskset -a -p -c "$cpus" "$p" >/dev/null; done
}
BACKGROUND="not pinned"
pin_background() { # pin CPU PID: the journal, snapshot and audit threads of the server onto CPU
    local t
    for t in /proc/"$2"/task/*; do
        case "$(cat "$t/comm" 2>/dev/null)" in
        portcullis-jour* | portcullis-snap* | audit-fsync*)
            taskset -p -c "$1" "${t##*/}" >/dev/null
            ;;
        esac
    done
    BACKGROUND="on CPU $1"
}
if command -v taskset >/dev/null; then
    step "ping-pong, client and servers on CPU 0"
    pin 0 "$SERVER_PID" "$ECHO_PID"
    if [ "$NCPU" -ge 2 ]; then pin_background 1 "$SERVER_PID"; fi
    taskset -c 0 "$LG" pingpong --addr "$ECHO_ADDR" --echo "${FIX_ARGS[@]}" "${PP[@]}" --json >"$OUT/pingpong-echo.json"
    taskset -c 0 "$LG" pingpong --addr "$FIX_ADDR" "${FIX_ARGS[@]}" "${PP[@]}" --json >"$OUT/pingpong-fix.json"
    if [ "$WS" = 1 ]; then
        taskset -c 0 "$LG" pingpong --addr "$WS_ADDR" "${WS_ARGS[@]}" "${PP[@]}" --json >"$OUT/pingpong-ws.json"
    fi
    if [ "$NCPU" -ge 2 ]; then
        step "ping-pong, client on CPU 1, servers on CPU 0"
        taskset -c 1 "$LG" pingpong --addr "$ECHO_ADDR" --echo "${FIX_ARGS[@]}" "${PP[@]}" --json >"$OUT/pingpong-echo-xcpu.json"
        taskset -c 1 "$LG" pingpong --addr "$FIX_ADDR" "${FIX_ARGS[@]}" "${PP[@]}" --json >"$OUT/pingpong-fix-xcpu.json"
    fi
    pin "0-$((NCPU - 1))" "$SERVER_PID" "$ECHO_PID"
else
    step "ping-pong (taskset not found: not pinned)"
    "$LG" pingpong --addr "$ECHO_ADDR" --echo "${FIX_ARGS[@]}" "${PP[@]}" --json >"$OUT/pingpong-echo.json"
    "$LG" pingpong --addr "$FIX_ADDR" "${FIX_ARGS[@]}" "${PP[@]}" --json >"$OUT/pingpong-fix.json"
    if [ "$WS" = 1 ]; then
        "$LG" pingpong --addr "$WS_ADDR" "${WS_ARGS[@]}" "${PP[@]}" --json >"$OUT/pingpong-ws.json"
    fi
fi

# --- Floods --------------------------------------------------------------------------------
# Each step: 0.5 s warm-up, 2 s measured. A step passes if one of two runs has p99 < 1 ms at
# >= 95 % of the rate with every order answered and none refused; the search ends after two
# failed steps in a row (a shared VM stalls now and then, at low rates too), and the highest
# passing rate counts.
FLOOD=(--find-max --duration 2 --warmup-secs 0.5 --drain-secs 2 --attempts 2 --patience 2)
# The WebSocket API: lower first steps, and one failed step ends the search (keeps the run short).
WS_FLOOD=(--find-max --duration 2 --warmup-secs 0.5 --drain-secs 2 --attempts 2 --patience 1
    --steps 2000,5000,10000,25000,35000,50000,75000,100000,150000,200000)
for sessions in 1 16; do
    step "flood, $sessions session(s): highest rate with p99 < 1 ms, FIX"
    "$LG" flood --addr "$FIX_ADDR" --sessions "$sessions" "${FIX_ARGS[@]}" "${FLOOD[@]}" --json \
        >"$OUT/flood-fix-$sessions.json"
    if [ "$WS" = 1 ]; then
        step "flood, $sessions connection(s): highest rate with p99 < 1 ms, WebSocket API"
        "$LG" flood --addr "$WS_ADDR" --sessions "$sessions" "${WS_ARGS[@]}" "${WS_FLOOD[@]}" --json \
            >"$OUT/flood-ws-$sessions.json"
    fi
    step "flood, $sessions session(s): highest rate with p99 < 1 ms, echo"
    "$LG" flood --addr "$ECHO_ADDR" --sessions "$sessions" --echo "${FIX_ARGS[@]}" "${FLOOD[@]}" --json \
        >"$OUT/flood-echo-$sessions.json"
done

# The 16-session flood once more with a client that batches: the pacer wakes every 200 µs and
# sends what fell due meanwhile in one write per session (the wait counts in the latency), as a
# market maker sends a burst of quotes. Both ends then share their per-write costs.
BATCHED=(--tick-us 200)
step "flood, 16 sessions writing every ${BATCHED[1]} µs: highest rate with p99 < 1 ms, FIX"
"$LG" flood --addr "$FIX_ADDR" --sessions 16 "${FIX_ARGS[@]}" "${FLOOD[@]}" "${BATCHED[@]}" --json \
    >"$OUT/flood-fix-16-batched.json"
step "flood, 16 sessions writing every ${BATCHED[1]} µs: highest rate with p99 < 1 ms, echo"
"$LG" flood --addr "$ECHO_ADDR" --sessions 16 --echo "${FIX_ARGS[@]}" "${FLOOD[@]}" "${BATCHED[@]}" \
    --json >"$OUT/flood-echo-16-batched.json"

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "bench.sh: the server died during the benchmark; its log:" >&2
    cat "$TMP/server.log" >&2
    exit 1
fi

# --- The table -----------------------------------------------------------------------------
{
    echo
    echo "machine: ${NCPU} CPUs, ${CPU_MODEL:-unknown CPU}; load average before the run ${LOAD_BEFORE}"
    echo "journal fsync: $(grep -m1 '^fsync' "$TMP/bench.toml" | cut -d= -f2-)"
    echo "core threading: $(grep -m1 '^threading' "$TMP/bench.toml" | cut -d= -f2-)"
    echo "ping-pong: ${PP[*]}; the server's journal and audit threads ${BACKGROUND}; floods: ${FLOOD[*]}; batching floods add ${BATCHED[*]}"
    if [ "$WS" = 1 ]; then echo "ws floods: ${WS_FLOOD[*]}"; fi
    echo
    "$LG" table --dir "$OUT"
} | tee "$OUT/table.txt"
echo "(results: $OUT/)" >&2

# --- Criterion -----------------------------------------------------------------------------
if [ "$CRITERION" = 1 ]; then
    step "cargo bench --workspace ${CRITERION_ARGS[*]}"
    cargo bench --workspace "${CRITERION_ARGS[@]}"
fi
