#!/usr/bin/env bash
# bench/run.sh: sockserv side by side with reference servers (epoll and recvmmsg echo servers,
# an io_uring one when built) and socat, in one run, in a random order per round; writes
# bench/RESULTS.md.
#
#   bench/run.sh [--quick] [--build DIR] [--out FILE] [--allow-dirty] [--only SECTIONS]
#
# --quick        a smoke run (one short round per comparison) that proves every figure is
#                produced; writes to the build directory (bench/RESULTS-quick.md) unless --out
#                says otherwise
# --build        the meson build directory holding sockserv and bench/ (default: build/; it is
#                set up and compiled when the programs are missing)
# --out          where to write the results (default: bench/RESULTS.md, --quick: see above)
# --allow-dirty  measure a tree with uncommitted changes (refused otherwise, except --quick);
#                the results then say so
# --only         a comma-separated subset of tcp,udp,upload,api,idle,backup,apply,conns
#
# Environment: BENCH_DURATION (seconds per measurement, default 1.5), BENCH_REPS (rounds per
# comparison, default 5), BENCH_UPLOAD_BYTES (default 268435456), BENCH_WORKERS (threads of the
# event model and of the references, default 1: the server has one core), BENCH_MODELS (the
# sockserv models to measure, default all), BENCH_CONNS (connection counts of the TCP echo,
# default "1 50 500", --quick "1 50"). BENCH_FAULT, to
# prove the failure paths: noanswer (the epoll reference's port is a closed one), nocpu (perf
# is not asked for the CPU time).
#
# The servers run on CPU 0, the load generator on CPU 1 (taskset). Everything listens on
# 127.0.0.1 only, and every process started here is stopped on exit. A measurement that failed
# or a figure that is missing fails the run (exit 1), after the results are written.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
BUILD=""
OUT=""
ALLOW_DIRTY=0
ONLY=tcp,udp,upload,api,idle,backup,apply,conns
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --build) BUILD=$2; shift ;;
    --out) OUT=$2; shift ;;
    --allow-dirty) ALLOW_DIRTY=1 ;;
    --only) ONLY=$2; shift ;;
    -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
BUILD=${BUILD:-$ROOT/build}
FAULT=${BENCH_FAULT:-}
case "$FAULT" in "" | noanswer | nocpu) ;; *) echo "run.sh: unknown BENCH_FAULT $FAULT" >&2; exit 2 ;; esac
for s in ${ONLY//,/ }; do
    case "$s" in tcp | udp | upload | api | idle | backup | apply | conns) ;;
    *) echo "run.sh: unknown section $s in --only" >&2; exit 2 ;; esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# ---- the tree measured ----
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 20 || true)
if [ -n "$DIRTY" ]; then
    if [ "$QUICK" = 0 ] && [ "$ALLOW_DIRTY" = 0 ]; then
        echo "run.sh: refusing to measure a tree with uncommitted changes (commit them, or pass --allow-dirty, which marks the results):" >&2
        echo "$DIRTY" >&2
        exit 2
    fi
    COMMIT="$COMMIT with uncommitted changes (NOT the committed tree$([ "$QUICK" = 1 ] && echo ", a quick run" || echo ", --allow-dirty"))"
fi

if [ "$QUICK" = 1 ]; then
    D=${BENCH_DURATION:-0.3}
    REPS=${BENCH_REPS:-1}
    CONNS_LIST="1 50"
    SIZES="64"
    UPLOAD_BYTES=${BENCH_UPLOAD_BYTES:-8388608}
    IDLE_CONNS=200
    IDLE_HOLD=1
    API_D=1
    API_REPS=$REPS
    OUT=${OUT:-$BUILD/bench/RESULTS-quick.md}
else
    D=${BENCH_DURATION:-1.5}
    REPS=${BENCH_REPS:-5}
    CONNS_LIST="1 50 500"
    SIZES="64 4096"
    UPLOAD_BYTES=${BENCH_UPLOAD_BYTES:-268435456}
    IDLE_CONNS=10000
    IDLE_HOLD=6
    # twice the rounds of half the length: the variants alternate more often, so that a slow
    # drift of the machine weighs less on the data plane's ratio
    API_D=2
    API_REPS=$((REPS * 2))
    OUT=${OUT:-$ROOT/bench/RESULTS.md}
fi
CONNS_LIST=${BENCH_CONNS:-$CONNS_LIST}
WORKERS=${BENCH_WORKERS:-1}
SRV_CPU=0
LG_CPU=1
if [ "$(nproc)" -lt 2 ]; then
    echo "run.sh: one CPU: servers and load generator share it (figures not comparable)" >&2
    LG_CPU=0
fi

# ---- tools ----
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
if ! command -v socat >/dev/null; then
    echo "run.sh: installing socat (a benchmark peer)" >&2
    $SUDO apt-get install -y socat >/dev/null
fi
if ! command -v perf >/dev/null; then
    echo "run.sh: installing linux-perf (syscall counts)" >&2
    $SUDO apt-get install -y linux-perf >/dev/null
fi
for t in taskset curl python3 ss shuf perf sed; do
    command -v "$t" >/dev/null || { echo "run.sh: $t is needed" >&2; exit 1; }
done
if ! perf stat -e raw_syscalls:sys_enter -x, -o /dev/null true 2>/dev/null; then
    echo "run.sh: perf cannot count raw_syscalls:sys_enter here (perf_event_paranoid, no tracefs?): syscall figures will be missing" >&2
fi
if [ ! -x "$BUILD/bench/loadgen" ] || [ ! -x "$BUILD/sockserv" ]; then
    [ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" >/dev/null
    meson compile -C "$BUILD" >/dev/null
fi
BUILD=$(cd "$BUILD" && pwd)
LOADGEN=$BUILD/bench/loadgen
SOCKSERV=$BUILD/sockserv
mkdir -p "$(dirname "$OUT")"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 1000)) ]; then
    echo "run.sh: open-file limit $(ulimit -n) is below $((IDLE_CONNS + 1000)); fewer idle connections" >&2
    IDLE_CONNS=$(($(ulimit -n) - 1000))
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d /tmp/sockserv-bench.XXXXXX)
RES=$TMP/results.jsonl
LOG=$TMP/loadgen.log
PGIDS=()
BG=() # load generators running in the background
FAILS=() # what failed outside the measurements (a section script, a teardown)
: >"$RES"

cleanup() {
    local st=$?
    for j in "${BG[@]}"; do
        kill -TERM "$j" 2>/dev/null || true
    done
    for g in "${PGIDS[@]}"; do
        kill -TERM -- "-$g" 2>/dev/null || true
    done
    sleep 0.2
    for g in "${PGIDS[@]}"; do
        kill -KILL -- "-$g" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$TMP"
    exit $st
}
trap cleanup EXIT INT TERM

# start_group VAR CMD...: runs CMD in its own process group (its pid is the group's id), pinned
# to CPU 0
start_group() {
    local __var=$1
    shift
    setsid taskset -c "$SRV_CPU" "$@" &
    PGIDS+=($!)
    printf -v "$__var" '%s' "$!"
}

wait_for() { # wait_for SECONDS CONDITION...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}

# free_port: a port nothing listens on, below the ephemeral range (no python: it starts slowly
# on a busy machine)
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((10000 + RANDOM % 22000))
        ss -Htan "sport = :$p" | grep -q . || { echo "$p"; return 0; }
    done
    return 1
}

listening() { ss -Hltn "sport = :$1" | grep -q .; }
has_line() { [ -s "$1" ] && grep -q . "$1"; }
# alone PGID: the group's leader is its only process (the children of a connection are gone)
alone() { [ "$(pgrep -g "$1" | wc -l)" -le 1 ]; }

# settle PGID WHAT: waits (20 s at most) until the server's per-connection processes are gone,
# so that the next measurement does not pay for this one's teardown
settle() {
    if ! wait_for 20 alone "$1"; then
        echo "run.sh: $2: its connection processes outlived the measurement by 20 s" >&2
        FAILS+=("$2: connection processes still alive 20 s after the measurement")
    fi
}

MEAS_N=0
# measure TAG PGID MODE ARGS...: one loadgen run against the server whose process group is
# PGID. perf stat watches every process of the group (and, inherited, every thread and child
# they start) for exactly loadgen's measurement window (loadgen enables and disables it through
# perf's control fifo): its syscalls (raw_syscalls:sys_enter) and CPU time (task-clock, which
# keeps the time of a process that ends within the window) go with loadgen's JSON line to the
# results. A run that failed is recorded as failed, never dropped.
measure() {
    local tag=$1 pg=$2 mode=$3 rc=0 line sc cpu d pf pids events=raw_syscalls:sys_enter,task-clock
    shift 3
    MEAS_N=$((MEAS_N + 1))
    d=$TMP/m$MEAS_N
    [ "$FAULT" = nocpu ] && events=raw_syscalls:sys_enter
    pids=$(pgrep -d, -g "$pg" || echo "$pg")
    mkdir "$d"
    mkfifo "$d/ctl" "$d/ack"
    : >"$d/perf.err"
    perf stat -e "$events" -x, -p "$pids" --control "fifo:$d/ctl,$d/ack" -D -1 \
        -o "$d/perf" >/dev/null 2>"$d/perf.err" &
    pf=$!
    # perf counts children forked after it attached, not before: let it attach first
    wait_for 10 grep -q 'Events disabled' "$d/perf.err" || echo "run.sh: $tag: perf stat did not start: $(head -c 300 "$d/perf.err")" >&2
    timeout 120 taskset -c "$LG_CPU" "$LOADGEN" "$mode" --tag "$tag" --perf-ctl "$d/ctl,$d/ack" "$@" \
        >"$d/out" 2>>"$LOG" || rc=$?
    kill -INT "$pf" 2>/dev/null || true
    wait "$pf" 2>/dev/null || true
    sc=$(awk -F, '$3 == "raw_syscalls:sys_enter" && $1 ~ /^[0-9]+$/ { print $1; exit }' "$d/perf" 2>/dev/null || true)
    cpu=$(awk -F, '$3 == "task-clock" && $1 ~ /^[0-9.]+$/ { printf "%.6f", $1 / 1000; exit }' "$d/perf" 2>/dev/null || true)
    line=$(grep '^{' "$d/out" | tail -n1 || true)
    line=${line/,\"cpu_s\":null/}
    if [ "$rc" != 0 ] || [ -z "$line" ]; then
        echo "run.sh: $tag: loadgen failed (exit $rc)" >&2
        echo "{\"tag\":\"$tag\",\"failed\":true,\"rc\":$rc}" >>"$RES"
    else
        echo "${line%\}},\"syscalls\":${sc:-null},\"cpu_s\":${cpu:-null}}" >>"$RES"
    fi
    rm -rf "$d"
}

# ---- the sections of other scripts ----
SECTIONS=()
section() { # section NAME SCRIPT ARGS...: runs a bench script that prints one markdown section
    local name=$1 out=$TMP/section-$1.md rc=0
    shift
    echo "run.sh: $name: $*" >&2
    "$@" >"$out" || rc=$?
    if [ "$rc" != 0 ]; then
        FAILS+=("$name: $(basename "$1") exited $rc")
        printf '\n**%s failed (exit %d): its figures are missing.**\n' "$name" "$rc" >>"$out"
    fi
    SECTIONS+=("$out")
}
QARG=()
[ "$QUICK" = 1 ] && QARG=(--quick)
# Applying configurations goes first, on the quiet machine: an apply of 25 ms moves by several
# ms with what else runs, and the echo sections' 500 processes and connections leave the machine
# busy for minutes after them (the first rounds of an apply section run after them were slower
# for both servers). The 19,000 connections go last: their setup and teardown leave the
# machine's load high for minutes (a 5-minute load average about 20).
if want apply && [ -x "$ROOT/bench/apply.sh" ]; then
    if [ "$QUICK" = 1 ]; then
        section apply "$ROOT/bench/apply.sh" --build "$BUILD" --quick
    else # 9 rounds: an apply of 25 ms moves by a few ms with the machine, a median of 5 with it
        section apply "$ROOT/bench/apply.sh" --build "$BUILD" --rounds 9 --budget 480
    fi
fi

# ---- the daemon ----
mkdir -p "$TMP/state"
start_group DPID "$SOCKSERV" daemon --api 127.0.0.1:0 --state-dir "$TMP/state" \
    --no-defaults --ready-fd 3 3>"$TMP/ready" 2>"$TMP/daemon.log"
wait_for 15 has_line "$TMP/ready" || { echo "run.sh: the daemon did not start" >&2; cat "$TMP/daemon.log" >&2; exit 1; }
API=$(head -n1 "$TMP/ready")

# create ID JSON: prints the bound port, or nothing when refused
create() {
    local body
    body=$(curl -s -X POST "$API/api/v1/listeners" -H 'Content-Type: application/json' -d "$2")
    # "bound":["127.0.0.1:PORT"...]
    sed -n 's/.*"bound":\["[^"]*:\([0-9][0-9]*\)".*/\1/p' <<<"$body" | head -n1
}

# the io_uring pair: only when its reference is built and the daemon offers the model
URING=0
if [ -x "$BUILD/bench/ref_uring_echo" ] && curl -s "$API/api/v1/services" | grep -q '"uring"'; then
    URING=1
fi

declare -A PORT
MODELS=()
CANDIDATES="thread pool event process sequential"
[ "$URING" = 1 ] && CANDIDATES="$CANDIDATES uring"
if [ -n "${BENCH_MODELS:-}" ]; then
    CANDIDATES=${BENCH_MODELS//,/ }
    [[ " $CANDIDATES " == *" uring "* ]] || URING=0
fi
for m in $CANDIDATES; do
    w=1
    [ "$m" = event ] || [ "$m" = uring ] && w=$WORKERS
    [ "$m" = pool ] && w=256 # a pool worker holds one connection: as many as allowed
    p=$(create "echo-$m" "{\"id\":\"echo-$m\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,\"model\":\"$m\",\"workers\":$w,\"max_connections\":20000,\"idle_timeout_ms\":0}")
    if [ -n "$p" ]; then
        PORT[$m]=$p
        MODELS+=("$m")
    else
        echo "run.sh: model $m is not available" >&2
        [ "$m" = uring ] && URING=0
    fi
done
# The UDP reply budgets are off: here one source address is the whole load, not an attacker.
PORT[udp]=$(create echo-udp "{\"id\":\"echo-udp\",\"service\":\"echo\",\"transport\":\"udp\",\"address\":\"127.0.0.1\",\"port\":0,\"workers\":$WORKERS,\"reply_rate_per_source\":0,\"reply_rate\":0}")
PORT[backup]=$(create backup "{\"id\":\"backup\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0,\"max_connections\":16,\"options\":{\"on_exists\":\"replace\"}}")

# ---- the references (each its own process group: its CPU time and syscalls are its own) ----
declare -A PG
for m in "${MODELS[@]}"; do PG[$m]=$DPID; done
PG[udp]=$DPID
start_group PG_ref "$BUILD/bench/ref_epoll_echo" -t "$WORKERS" 0 >"$TMP/ref.port"
start_group PG_uref "$BUILD/bench/ref_udp_echo" -t "$WORKERS" 0 >"$TMP/uref.port"
wait_for 5 has_line "$TMP/ref.port"
wait_for 5 has_line "$TMP/uref.port"
PORT[ref]=$(head -n1 "$TMP/ref.port")
PORT[uref]=$(head -n1 "$TMP/uref.port")
PG[ref]=$PG_ref
PG[uref]=$PG_uref
if [ "$URING" = 1 ]; then
    start_group PG_ref_uring "$BUILD/bench/ref_uring_echo" -t "$WORKERS" 0 >"$TMP/ref_uring.port"
    if wait_for 5 has_line "$TMP/ref_uring.port"; then
        PORT[ref_uring]=$(head -n1 "$TMP/ref_uring.port")
        PG[ref_uring]=$PG_ref_uring
    else
        FAILS+=("ref_uring_echo did not start")
    fi
    # the same reference waiting in batches, as the uring model does (-b: io_uring's min_wait)
    start_group PG_ref_uring_batch "$BUILD/bench/ref_uring_echo" -b -t "$WORKERS" 0 \
        >"$TMP/ref_uring_batch.port"
    if wait_for 5 has_line "$TMP/ref_uring_batch.port"; then
        PORT[ref_uring_batch]=$(head -n1 "$TMP/ref_uring_batch.port")
        PG[ref_uring_batch]=$PG_ref_uring_batch
    else
        FAILS+=("ref_uring_echo -b did not start")
    fi
fi
PORT[socat]=$(free_port)
# -b 65536: socat's default 8 KiB buffer would cripple it on 4 KiB messages and above
start_group PG_socat socat -b 65536 "TCP-LISTEN:${PORT[socat]},bind=127.0.0.1,fork,reuseaddr,backlog=1024" PIPE
PG[socat]=$PG_socat
wait_for 5 listening "${PORT[socat]}"
if [ "$FAULT" = noanswer ]; then
    PORT[ref]=$(free_port) # nothing listens there
    echo "run.sh: BENCH_FAULT=noanswer: the epoll reference is measured on closed port ${PORT[ref]}" >&2
fi

echo "run.sh: models: ${MODELS[*]:-none}; ${REPS} round(s) of ${D}s per comparison; sections $ONLY" >&2

# ---- TCP echo ----
if want tcp; then
    for size in $SIZES; do
        for conns in $CONNS_LIST; do
            servers=()
            for m in "${MODELS[@]}"; do
                [ "$m" = sequential ] && [ "$conns" != 1 ] && continue
                servers+=("$m")
            done
            servers+=(ref socat)
            [ -n "${PORT[ref_uring]:-}" ] && servers+=(ref_uring)
            [ -n "${PORT[ref_uring_batch]:-}" ] && servers+=(ref_uring_batch)
            for rep in $(seq 1 "$REPS"); do
                # a fresh random order every round
                for s in $(printf '%s\n' "${servers[@]}" | shuf); do
                    measure "tcp|$s|$conns|$size|$rep" "${PG[$s]}" echo -c "$conns" -s "$size" -d "$D" \
                        127.0.0.1 "${PORT[$s]}"
                    settle "${PG[$s]}" "tcp $s $conns×$size round $rep"
                done
            done
        done
    done
fi

# ---- UDP echo ----
if want udp; then
    for size in $SIZES; do
        for rep in $(seq 1 "$REPS"); do
            for s in $(printf '%s\n' sockserv ref | shuf); do
                k=udp
                [ "$s" = ref ] && k=uref
                measure "udp|$s|50|$size|$rep" "${PG[$k]}" echo --udp -c 50 -s "$size" -d "$D" \
                    127.0.0.1 "${PORT[$k]}"
            done
        done
    done
fi

# ---- backup upload vs socat writing the same bytes ----
if want upload; then
    for rep in $(seq 1 "$REPS"); do
        for s in $(printf '%s\n' sockserv socat | shuf); do
            if [ "$s" = sockserv ]; then
                measure "upload|sockserv|$rep" "$DPID" upload -n "$UPLOAD_BYTES" --name bench.bin \
                    127.0.0.1 "${PORT[backup]}"
                continue
            fi
            sp=$(free_port)
            rm -f "$TMP/socat.bin"
            # socat ends with the transfer: a shell that outlives it leads its group, so that
            # its CPU time and syscalls are still there to be read when the window closes
            start_group SU_PID sh -c 'socat "$@"; exec sleep 600' socat-upload -u -b 1048576 \
                "TCP-LISTEN:$sp,bind=127.0.0.1,reuseaddr" "CREATE:$TMP/socat.bin"
            wait_for 5 listening "$sp" || FAILS+=("upload round $rep: socat did not listen")
            measure "upload|socat|$rep" "$SU_PID" upload --raw -n "$UPLOAD_BYTES" 127.0.0.1 "$sp"
            kill -TERM -- "-$SU_PID" 2>/dev/null || true
            wait "$SU_PID" 2>/dev/null || true
            rm -f "$TMP/socat.bin"
        done
    done
fi

# ---- the control API while the data plane saturates the daemon's CPU ----
# The whole daemon is on CPU 0; the echo load on CPU 1 at nice 10 (loadgen --worker-nice), the
# API client in the same loadgen at the default priority, over exactly the echo's window.
SAT=event
[ -n "${PORT[event]:-}" ] || [ "$URING" = 0 ] || SAT=uring
# The measuring client at SCHED_FIFO 1 when it may be: its own wake-ups then do not wait behind
# the echo load on its CPU, and the latency it reports is the daemon's.
API_FIFO=()
API_FIFO_ON=0
if chrt -f 1 true 2>/dev/null; then
    API_FIFO=(--api-fifo)
    API_FIFO_ON=1
fi
if want api && [ -n "${PORT[$SAT]:-}" ]; then
    ROUTES="/api/v1/health /api/v1/listeners/echo-$SAT /api/v1/metrics"
    for route in $ROUTES; do
        lg_out=$(timeout 60 taskset -c "$LG_CPU" "$LOADGEN" http "${API_FIFO[@]}" -r 200 -d "$API_D" --tag "apiidle|$route" "$API$route" 2>>"$LOG") ||
            FAILS+=("API $route with the data plane idle: loadgen http failed")
        echo "$lg_out" | grep '^{' >>"$RES" || true
    done
    for rep in $(seq 1 "$API_REPS"); do
        for v in $(printf '%s\n' none $ROUTES hammer | shuf); do
            case "$v" in
            none) extra=() ;;
            hammer) extra=(--api "$API/api/v1/metrics" --api-conns 2 "${API_FIFO[@]}") ;;
            *) extra=(--api "$API$v" --api-rate 200 "${API_FIFO[@]}") ;;
            esac
            measure "api|$SAT|$v|$rep" "$DPID" echo -c 50 -s 64 -d "$API_D" --worker-nice 10 "${extra[@]}" \
                127.0.0.1 "${PORT[$SAT]}"
        done
    done
elif want api; then
    FAILS+=("control API: no event listener to saturate the daemon with")
fi

# ---- the sections of other scripts (the apply comparison ran first, above) ----
if want backup; then
    if [ "$QUICK" = 1 ]; then # 16 MiB, one round: proves every figure is produced
        section backup "$ROOT/bench/backup.sh" --build "$BUILD" --size 16777216 --rounds 1 --budget 60
    else
        section backup "$ROOT/bench/backup.sh" --build "$BUILD" --size "$UPLOAD_BYTES" --rounds "$REPS" --budget 300
    fi
fi
if want conns && [ -x "$ROOT/bench/conns.sh" ]; then
    section conns "$ROOT/bench/conns.sh" --build "$BUILD" "${QARG[@]}"
fi

# ---- idle connections held by one listener (bench/conns.sh measures this when it exists) ----
IDLE_MODEL=event
[ -n "${PORT[event]:-}" ] || IDLE_MODEL=${MODELS[0]}
if want idle && [ ! -x "$ROOT/bench/conns.sh" ]; then
    taskset -c "$LG_CPU" "$LOADGEN" idle -c "$IDLE_CONNS" -d "$IDLE_HOLD" --pid "$DPID" \
        --tag "idle|$IDLE_MODEL" 127.0.0.1 "${PORT[$IDLE_MODEL]}" >>"$RES" 2>>"$LOG" &
    IDLEJOB=$!
    BG+=("$IDLEJOB")
    deadline=$((SECONDS + 40))
    active=0
    while [ $SECONDS -lt $deadline ] && kill -0 "$IDLEJOB" 2>/dev/null; do
        a=$(curl -s "$API/api/v1/listeners/echo-$IDLE_MODEL/metrics" |
            sed -n 's/.*"connections_active":\([0-9][0-9]*\).*/\1/p' | head -n1)
        a=${a:-0}
        [ "$a" -gt "$active" ] && active=$a
        sleep 0.5
    done
    wait "$IDLEJOB" || FAILS+=("idle: loadgen idle failed")
    echo "{\"mode\":\"idle_server\",\"tag\":\"idle|$IDLE_MODEL\",\"connections_active_max\":$active}" >>"$RES"
fi

# ---- the report ----
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
MACHINE="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
printf '%s\n' "${FAILS[@]}" >"$TMP/fails"
report_rc=0
python3 - --res "$RES" --out "$OUT" --machine "$MACHINE" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --commit "$COMMIT" --load-before "$LOAD_BEFORE" \
    --load-after "$LOAD_AFTER" --duration "$D" --reps "$REPS" --upload-bytes "$UPLOAD_BYTES" \
    --workers "$WORKERS" --models "${MODELS[*]:-}" --quick "$QUICK" --sections "$ONLY" \
    --fails "$TMP/fails" --api-duration "$API_D" --api-fifo "$API_FIFO_ON" --sat "$SAT" <<'PY' || report_rc=$?
import argparse, json, statistics
from collections import defaultdict

ap = argparse.ArgumentParser()
for a in ("res", "out", "machine", "date", "commit", "load-before", "load-after", "duration",
          "reps", "upload-bytes", "workers", "models", "quick", "sections", "fails",
          "api-duration", "api-fifo", "sat"):
    ap.add_argument("--" + a, default="")
A = ap.parse_args()
quick = A.quick == "1"
sections = A.sections.split(",")

rows = []
for line in open(A.res):
    line = line.strip()
    if line.startswith("{"):
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
fails = [l.strip() for l in open(A.fails) if l.strip()]

def tag(r):
    return r.get("tag", "").split("|")

def num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None

def lat(r, k):
    l = r.get("lat_us")
    return num(l.get(k)) if isinstance(l, dict) and l.get("count") else None

# ---- the figures of one measurement; a figure that is missing is None, and listed ----
missing = []   # "what: which figure"
failed = []    # "what" of each failed measurement

def figures(r, what, unit="msg"):
    """rate, CPU us per unit, syscalls per unit of a measurement row (None when missing)."""
    if r.get("failed"):
        failed.append(what)
        return None
    if unit == "msg":
        n = num(r.get("msgs"))
        rate = num(r.get("msgs_per_s"))
    else:  # MB
        n = num(r.get("bytes"))
        n = n / 1e6 if n else None
        rate = num(r.get("mb_per_s"))
    cpu = num(r.get("cpu_s"))
    sc = num(r.get("syscalls"))
    f = {"rate": rate if rate else None,
         "cpu": cpu * 1e6 / n if cpu is not None and n else None,
         "sys": sc / n if sc is not None and n else None,
         "p50": lat(r, "p50"), "p99": lat(r, "p99"), "p999": lat(r, "p999"),
         "lost": num(r.get("lost")) or 0}
    names = {"rate": "rate", "cpu": "CPU time", "sys": "syscall count"}
    for k, nm in names.items():
        if f[k] is None:
            missing.append("%s: %s" % (what, nm))
    if unit == "msg" and f["p50"] is None:
        missing.append("%s: latency" % what)
    return f

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def rng(xs, spec):
    """median (min–max) of the rounds; 'missing' when none."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "missing"
    m = format(statistics.median(xs), spec)
    if len(xs) == 1:
        return m
    return "%s (%s–%s)" % (m, format(min(xs), spec), format(max(xs), spec))

def ratio(a, b):
    return a / b if a and b else None

L = []
L.append("# sockserv benchmarks\n")
L.append("Written by `bench/run.sh`%s.\n" % (" --quick (a smoke run: too short to judge by)" if quick else ""))
L.append("- commit: %s" % A.commit)
L.append("- date: %s" % A.date)
L.append("- load average (1, 5, 15 min): %s before, %s after" % (A.load_before, A.load_after))
L.append("- machine: %s" % A.machine)
L.append("- method: servers pinned to CPU 0, the load generator to CPU 1; each measurement %s s; "
         "%s round(s) per comparison, the servers in a fresh random order every round (`shuf`), "
         "and after the `process` model or socat the next measurement waits until their "
         "per-connection processes are gone; a ratio is the median of the per-round ratios; "
         "every figure is the median over the rounds with the per-round range in brackets" % (A.duration, A.reps))
L.append("- per message: `perf stat -e raw_syscalls:sys_enter,task-clock -p PIDS` on every process "
         "of the server's process group (threads and children started meanwhile included, inherited), "
         "enabled and disabled by loadgen at the start and end of its measurement window: the "
         "server's syscalls and CPU time over the window ÷ the messages echoed in it. Uploads: per "
         "MB (10^6 bytes)")
L.append("- models available: %s; event model and references with %s worker thread(s); pool "
         "with 256 workers (each holds one connection)" % (A.models or "none", A.workers))
L.append("- a measurement that failed (the server answered nothing, loadgen failed) fails its "
         "comparison; a figure that is missing fails the run\n")

targets = []  # (name, value, limit, op, per-round values, rounds failed, total rounds)

def add_target(name, per_round, limit, op, nfailed, total, value=None):
    vals = [x for x in per_round if x is not None]
    v = value if value is not None else med(vals)
    targets.append((name, v, limit, op, vals, nfailed, total))

# ---- TCP echo ----
tcp = defaultdict(lambda: defaultdict(dict))  # (conns, size) -> rep -> server -> row
for r in rows:
    t = tag(r)
    if t[0] == "tcp":
        tcp[(int(t[2]), int(t[3]))][int(t[4])][t[1]] = r
ORDER = ["uring", "event", "thread", "pool", "process", "sequential", "ref", "ref_uring",
         "ref_uring_batch", "socat"]
if "tcp" in sections:
    L.append("## TCP echo (closed loop)\n")
    if not tcp:
        failed.append("TCP echo: no measurement")
for (conns, size) in sorted(tcp, key=lambda k: (k[1], k[0])):
    reps_d = tcp[(conns, size)]
    servers = [s for s in ORDER if any(s in rep for rep in reps_d.values())]
    F = {}  # server -> rep -> figures (None: failed)
    for s in servers:
        F[s] = {}
        for rep, d in sorted(reps_d.items()):
            if s in d:
                F[s][rep] = figures(d[s], "TCP %s %d×%d B round %d" % (s, conns, size, rep))
    L.append("### %d connection(s), %d-byte messages\n" % (conns, size))
    L.append("| server | msgs/s | CPU µs/msg | syscalls/msg | p50 µs | p99 µs | p99.9 µs | lost | ÷ ref | ÷ socat | rounds failed |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def per_round(s, other, key="rate"):
        out = []
        for rep, f in F.get(s, {}).items():
            g = F.get(other, {}).get(rep)
            out.append(ratio(f[key], g[key]) if f and g else None)
        return out

    for s in servers:
        fs = list(F[s].values())
        ok = [f for f in fs if f]
        nf = len(fs) - len(ok)
        L.append("| %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |" % (
            s, rng([f["rate"] for f in ok], ".0f"), rng([f["cpu"] for f in ok], ".2f"),
            rng([f["sys"] for f in ok], ".2f"), rng([f["p50"] for f in ok], ".1f"),
            rng([f["p99"] for f in ok], ".1f"), rng([f["p999"] for f in ok], ".1f"),
            sum(f["lost"] for f in ok),
            rng(per_round(s, "ref"), ".2f") if s != "ref" else ("1" if ok else "missing"),
            rng(per_round(s, "socat"), ".2f") if s != "socat" else ("1" if ok else "missing"),
            "%d of %d" % (nf, len(fs)) if nf else "0"))

    def nfail(*ss):
        reps = set()
        for s in ss:
            reps |= {rep for rep, f in F.get(s, {}).items() if not f}
        return len(reps)
    total = len(reps_d)
    if "event" in F and conns in (50, 500):
        add_target("event ≥ 0.95× the epoll reference, %d conns × %d B" % (conns, size),
                   per_round("event", "ref"), 0.95, "ge", nfail("event", "ref"), total)
        add_target("event ≥ 1.5× socat -b 65536, %d conns × %d B" % (conns, size),
                   per_round("event", "socat"), 1.5, "ge", nfail("event", "socat"), total)
    if "uring" in F and size == 64:
        add_target("uring rate ≥ 1.0× the epoll reference, %d conns × %d B" % (conns, size),
                   per_round("uring", "ref"), 1.0, "ge", nfail("uring", "ref"), total)
        if "ref_uring" in F:
            add_target("uring rate ≥ 1.0× the io_uring reference, %d conns × %d B" % (conns, size),
                       per_round("uring", "ref_uring"), 1.0, "ge", nfail("uring", "ref_uring"), total)
            add_target("uring CPU/msg ≤ 1.0× the io_uring reference's, %d conns × %d B" % (conns, size),
                       per_round("uring", "ref_uring", "cpu"), 1.0, "le", nfail("uring", "ref_uring"), total)
        if conns == 50:
            add_target("uring CPU/msg ≤ 0.6× the epoll reference's, 50 conns × 64 B",
                       per_round("uring", "ref", "cpu"), 0.6, "le", nfail("uring", "ref"), total)
    L.append("")
if "tcp" in sections and not any("event" in rep for k in tcp for rep in tcp[k].values()):
    targets.append(("event ≥ 0.95× the epoll reference", None, 0.95, "ge", [], 0, 0))

# ---- UDP echo ----
udp = defaultdict(lambda: defaultdict(dict))
for r in rows:
    t = tag(r)
    if t[0] == "udp":
        udp[int(t[3])][int(t[4])][t[1]] = r
if "udp" in sections:
    L.append("## UDP echo (50 sockets, closed loop)\n")
    L.append("| size | server | msgs/s | CPU µs/msg | syscalls/msg | p50 µs | p99 µs | lost | ÷ ref | rounds failed |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    if not udp:
        failed.append("UDP echo: no measurement")
for size in sorted(udp):
    F = {s: {rep: figures(d[s], "UDP %s %d B round %d" % (s, size, rep))
             for rep, d in sorted(udp[size].items()) if s in d} for s in ("sockserv", "ref")}
    rr = [ratio(f["rate"], F["ref"].get(rep, {}) and F["ref"][rep]["rate"]) if f and F["ref"].get(rep) else None
          for rep, f in F["sockserv"].items()]
    for s in ("sockserv", "ref"):
        fs = list(F[s].values())
        ok = [f for f in fs if f]
        L.append("| %d | %s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
            size, s, rng([f["rate"] for f in ok], ".0f"), rng([f["cpu"] for f in ok], ".2f"),
            rng([f["sys"] for f in ok], ".2f"), rng([f["p50"] for f in ok], ".1f"),
            rng([f["p99"] for f in ok], ".1f"), sum(f["lost"] for f in ok),
            rng(rr, ".2f") if s == "sockserv" else "1", "%d of %d" % (len(fs) - len(ok), len(fs))))
    nf = len({rep for s in F for rep, f in F[s].items() if not f})
    add_target("UDP ≥ 0.95× the recvmmsg reference, %d B" % size, rr, 0.95, "ge", nf, len(udp[size]))
if "udp" in sections:
    L.append("")

# ---- upload ----
up = defaultdict(dict)
for r in rows:
    t = tag(r)
    if t[0] == "upload":
        up[int(t[2])][t[1]] = r
if "upload" in sections:
    L.append("## Backup upload, %d MiB (SHA-256 checked, fsync before STORED) vs `socat -u -b 1048576 … CREATE:file` (no fsync)\n" % (int(A.upload_bytes or 0) >> 20))
    L.append("| server | MB/s | CPU µs/MB | syscalls/MB | ÷ socat | rounds failed |")
    L.append("|---|---:|---:|---:|---:|---:|")
    if not up:
        failed.append("upload: no measurement")
if up:
    F = {s: {rep: figures(d[s], "upload %s round %d" % (s, rep), unit="MB")
             for rep, d in sorted(up.items()) if s in d} for s in ("sockserv", "socat")}
    rr = [ratio(f["rate"], F["socat"][rep]["rate"]) if f and F["socat"].get(rep) else None
          for rep, f in F["sockserv"].items()]
    for s in ("sockserv", "socat"):
        fs = list(F[s].values())
        ok = [f for f in fs if f]
        L.append("| %s | %s | %s | %s | %s | %s |" % (
            s, rng([f["rate"] for f in ok], ".1f"), rng([f["cpu"] for f in ok], ".0f"),
            rng([f["sys"] for f in ok], ".1f"), rng(rr, ".2f") if s == "sockserv" else "1",
            "%d of %d" % (len(fs) - len(ok), len(fs))))
    # Not a target: socat here leaves the bytes in the page cache, sockserv makes them durable
    # first. The upload's goal (≥ 0.8× socat plus an fsync of its file) is bench/backup.sh's.
    L.append("")
    L.append("The ratio is not a target: socat leaves the bytes in the page cache, sockserv has them "
             "on the disk before it answers. The upload's goal, against socat followed by an fsync "
             "of its file, is in [Backup at disk speed](#backup-at-disk-speed-benchbackupsh).")
    L.append("")

# ---- control API ----
apir = defaultdict(dict)  # variant -> rep -> row
for r in rows:
    t = tag(r)
    if t[0] == "api":
        apir[t[2]][int(t[3])] = r
idle_api = [r for r in rows if tag(r)[0] == "apiidle"]
if "api" in sections:
    L.append("## Control API while an `%s` listener saturates the daemon's CPU\n" % A.sat)
    L.append("The whole daemon on CPU 0; on CPU 1 one loadgen: 50 connections × 64 B closed loop "
             "at nice 10 against the listener, and in the same window (%s s) at the default "
             "priority either nothing, or one keep-alive connection sending GETs at a steady "
             "200/s open loop (latency from the intended send time: a late answer is charged to "
             "every request it held up), or 2 connections closed loop on the metrics (the "
             "hammer). %d rounds; the variants run in a random order every round. Data plane ÷ none: the "
             "echo rate of that window ÷ the rate of the same round's window with no API load. CPU and "
             "syscalls per message: the whole daemon's (the API's work included) ÷ echo messages. %s\n" % (A.api_duration, len(apir.get("none", {})),
                 "The API client's threads run at SCHED_FIFO 1 (loadgen --api-fifo), so that the echo load on their CPU does not delay the client that measures." if A.api_fifo == "1" else "The API client's threads could not run at SCHED_FIFO here: their own wake-ups wait behind the echo load on their CPU, and that wait is in the latency."))
    L.append("| API load | requests | errors | p50 ms | p99 ms | p99.9 ms | data plane msgs/s | CPU µs/msg | syscalls/msg | data plane ÷ none | rounds failed |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    if not apir:
        failed.append("control API: no measurement")
    for r in idle_api:
        if not (r.get("lat_us") or {}).get("count"):
            missing.append("API %s, data plane idle: latency" % tag(r)[1])
    base = {rep: figures(r, "API none round %d" % rep) for rep, r in sorted(apir.get("none", {}).items())}
    for v in ["none"] + sorted(k for k in apir if k not in ("none", "hammer")) + ["hammer"]:
        if v not in apir:
            continue
        F = base if v == "none" else {rep: figures(r, "API %s round %d" % (v, rep)) for rep, r in sorted(apir[v].items())}
        api_lat = defaultdict(list)
        reqs = errs = 0
        for rep, r in sorted(apir[v].items()):
            a = r.get("api")
            if v == "none" or r.get("failed"):
                continue
            if not isinstance(a, dict) or not (a.get("lat_us") or {}).get("count"):
                missing.append("API %s round %d: latency" % (v, rep))
                continue
            reqs += a.get("requests", 0)
            errs += a.get("errors", 0)
            for k in ("p50", "p99", "p999"):
                api_lat[k].append(a["lat_us"][k] / 1000.0)
        rr = [ratio(f["rate"], base[rep]["rate"]) if f and base.get(rep) else None for rep, f in F.items()]
        ok = [f for f in F.values() if f]
        nf = len({rep for rep, f in F.items() if not f} | {rep for rep, f in base.items() if not f})
        name = {"none": "none", "hammer": "hammer: 2 conns closed loop, `/api/v1/metrics`"}.get(v, "200/s `%s`" % v)
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, reqs if v != "none" else "", errs if v != "none" else "",
            rng(api_lat["p50"], ".3f") if v != "none" else "", rng(api_lat["p99"], ".3f") if v != "none" else "",
            rng(api_lat["p999"], ".3f") if v != "none" else "",
            rng([f["rate"] for f in ok], ".0f"), rng([f["cpu"] for f in ok], ".2f"), rng([f["sys"] for f in ok], ".2f"),
            rng(rr, ".2f") if v != "none" else "1", "%d of %d" % (len(F) - len(ok), len(F))))
        if v.startswith("/"):
            add_target("API p99 ≤ 1 ms at 200/s while saturated, `%s`" % v, api_lat["p99"], 1.0, "le", nf, len(F))
            add_target("data plane ≥ 0.95× its rate without API load, with 200/s `%s`" % v, rr, 0.95, "ge", nf, len(F))
    L.append("")
    if idle_api:
        L.append("For context, the same 200/s with the data plane idle:\n")
        L.append("| route | requests | errors | p50 ms | p99 ms | p99.9 ms |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for r in idle_api:
            l = r.get("lat_us") or {}
            L.append("| `%s` | %s | %s | %s | %s | %s |" % (
                tag(r)[1], r.get("requests", 0), r.get("errors", 0),
                *["%.3f" % (l[k] / 1000) if l.get("count") else "missing" for k in ("p50", "p99", "p999")]))
        L.append("")

# ---- idle connections ----
idle = [r for r in rows if r.get("mode") == "idle"]
isrv = [r for r in rows if r.get("mode") == "idle_server"]
if isrv and not idle:
    failed.append("idle connections: loadgen idle produced nothing")
if idle:
    r = idle[0]
    model = r["tag"].split("|")[1]
    L.append("## Idle connections held by one `%s` listener\n" % model)
    L.append("| asked | established | dropped while held | server's connections_active (max seen) | VmRSS before KiB | after KiB | bytes per connection |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|")
    rb, ra = r.get("rss_before_kib", -1), r.get("rss_after_kib", -1)
    bpc = r.get("bytes_per_conn", -1) if rb >= 0 and ra >= 0 else None
    if bpc is None:
        missing.append("idle connections: VmRSS")
    L.append("| %d | %d | %d | %s | %s | %s | %s |" % (r["conns"], r["established"], r["dropped"],
             isrv[0]["connections_active_max"] if isrv else "missing", rb if rb >= 0 else "missing",
             ra if ra >= 0 else "missing", "%.0f" % bpc if bpc is not None else "missing"))
    L.append("")
    held = r["established"] == r["conns"] and r["dropped"] == 0
    if not held:
        failed.append("idle connections: %d of %d held" % (r["established"] - r["dropped"], r["conns"]))
    if r["conns"] >= 10000:
        add_target("one event listener holds 10,000 idle connections, < 10 KiB each (÷ 10 KiB)",
                   [bpc / 10240 if bpc is not None else None], 1.0, "lt", 0 if held else 1, 1)

# ---- the targets ----
L.append("## Targets\n")
L.append("| target | figure (median) | per-round range | verdict |")
L.append("|---|---:|---|---|")
bad = False
notes = []
for name, v, lim, op, vals, nf, total in targets:
    spread = "%.2f–%.2f" % (min(vals), max(vals)) if vals else ""
    if nf:
        verdict = "FAILED: %d of %d round(s) failed" % (nf, total)
        bad = True
    elif v is None:
        verdict = "FAILED: missing"
        bad = True
    elif {"ge": v >= lim, "le": v <= lim, "lt": v < lim}[op]:
        verdict = "met"
    else:
        verdict = "missed by %.0f %%" % (abs(v / lim - 1) * 100)
    shown = "missing" if v is None else ("%.3f ms" % v if name.startswith("API p99") else "%.2f" % v)
    L.append("| %s | %s | %s | %s |" % (name, shown, spread, verdict))
    if verdict != "met":
        notes.append("- %s: %s%s." % (name, verdict, ", per round %s" % spread if spread else ""))
every = not (missing or failed or fails)
L.append("| every measurement answered and every figure produced | %s | | %s |" % (
    "%d missing, %d failed" % (len(missing), len(failed) + len(fails)),
    "met" if every else "FAILED: missing or failed (below)"))
L.append("")
L.append("## Closing note\n")
if not notes and every:
    L.append("Every target measured here is met.")
L.extend(notes)
for x in failed:
    L.append("- failed: %s" % x)
for x in fails:
    L.append("- failed: %s" % x)
for x in missing:
    L.append("- missing: %s" % x)
L.append("- The figures are only as quiet as the machine: the load average above counts every "
         "process on it; a wide per-round range says the machine was busy.")
L.append("")
open(A.out, "w").write("\n".join(L) + "\n")
if not every or bad:
    import sys
    sys.stderr.write("run.sh: %d failed, %d missing\n" % (len(failed) + len(fails), len(missing)))
    sys.exit(1)
PY
for s in "${SECTIONS[@]}"; do
    { echo; cat "$s"; } >>"$OUT"
done
echo "run.sh: wrote $OUT" >&2
cat "$OUT"
if [ "$report_rc" != 0 ]; then
    echo "run.sh: FAILED: a measurement failed or a figure is missing (see the Targets table)" >&2
    exit 1
fi
exit 0
