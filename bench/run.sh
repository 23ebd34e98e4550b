#!/usr/bin/env bash
# bench/run.sh: sockserv side by side with a reference epoll echo server, a recvmmsg UDP echo
# server and socat, in one run, interleaved and repeated; writes bench/RESULTS.md.
#
#   bench/run.sh [--quick] [--build DIR] [--out FILE]
#
# --quick   a smoke run of a few seconds (one short pair per comparison); writes its table to
#           the build directory (bench/RESULTS-quick.md) unless --out says otherwise
# --build   the meson build directory holding sockserv and bench/ (default: build/; it is set
#           up and compiled when the programs are missing)
# --out     where to write the results (default: bench/RESULTS.md, --quick: see above)
#
# Environment: BENCH_DURATION (seconds per measurement, default 1.5), BENCH_REPS (pairs per
# comparison, default 5), BENCH_UPLOAD_BYTES (default 268435456), BENCH_WORKERS (threads of
# the event model and of the references, default 1: the server has one core).
#
# The servers run on CPU 0, the load generator on CPU 1 (taskset). Everything listens on
# 127.0.0.1 only, and every process started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
BUILD=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --build) BUILD=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
BUILD=${BUILD:-$ROOT/build}

if [ "$QUICK" = 1 ]; then
    D=${BENCH_DURATION:-0.3}
    REPS=${BENCH_REPS:-1}
    CONNS_LIST="1 50"
    SIZES="64"
    UPLOAD_BYTES=${BENCH_UPLOAD_BYTES:-8388608}
    IDLE_CONNS=200
    IDLE_HOLD=1
    API_D=1
    OUT=${OUT:-$BUILD/bench/RESULTS-quick.md}
else
    D=${BENCH_DURATION:-1.5}
    REPS=${BENCH_REPS:-5}
    CONNS_LIST="1 50 500"
    SIZES="64 4096"
    UPLOAD_BYTES=${BENCH_UPLOAD_BYTES:-268435456}
    IDLE_CONNS=10000
    IDLE_HOLD=6
    API_D=4
    OUT=${OUT:-$ROOT/bench/RESULTS.md}
fi
WORKERS=${BENCH_WORKERS:-1}
SRV_CPU=0
LG_CPU=1
if [ "$(nproc)" -lt 2 ]; then
    echo "run.sh: one CPU: servers and load generator share it (figures not comparable)" >&2
    LG_CPU=0
fi

# ---- tools ----
if ! command -v socat >/dev/null; then
    echo "run.sh: installing socat (a benchmark peer)" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y socat >/dev/null
fi
for t in taskset curl python3 ss; do
    command -v "$t" >/dev/null || { echo "run.sh: $t is needed" >&2; exit 1; }
done
if [ ! -x "$BUILD/bench/loadgen" ] || [ ! -x "$BUILD/sockserv" ]; then
    [ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" >/dev/null
    meson compile -C "$BUILD" >/dev/null
fi
LOADGEN=$BUILD/bench/loadgen
SOCKSERV=$BUILD/sockserv

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

# start_group VAR CMD...: runs CMD in its own process group, pinned to CPU 0
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

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

listening() { ss -Hltn "sport = :$1" | grep -q .; }
has_line() { [ -s "$1" ] && grep -q . "$1"; }

lg_http() { # lg_http ARGS...: the HTTP client, at a real-time priority when allowed
    if chrt -f 10 true 2>/dev/null; then
        timeout 120 chrt -f 10 taskset -c "$LG_CPU" "$LOADGEN" http "$@" >>"$RES" 2>>"$LOG" || echo "run.sh: loadgen http $* failed" >&2
    else
        lg http "$@"
    fi
}

lg() { # lg ARGS...: the load generator on CPU 1; its JSON line goes to the results
    timeout 120 taskset -c "$LG_CPU" "$LOADGEN" "$@" >>"$RES" 2>>"$LOG" || echo "run.sh: loadgen $* failed" >&2
}

# ---- the daemon ----
mkdir -p "$TMP/state"
start_group DPID_GROUP "$SOCKSERV" daemon --api 127.0.0.1:0 --state-dir "$TMP/state" \
    --no-defaults --ready-fd 3 3>"$TMP/ready" 2>"$TMP/daemon.log"
wait_for 15 has_line "$TMP/ready" || { echo "run.sh: the daemon did not start" >&2; cat "$TMP/daemon.log" >&2; exit 1; }
API=$(head -n1 "$TMP/ready")
DPID=$(pgrep -g "$DPID_GROUP" -x sockserv | head -n1)

# create ID JSON: prints the bound port, or nothing when refused
create() {
    local body
    body=$(curl -s -X POST "$API/api/v1/listeners" -H 'Content-Type: application/json' -d "$2")
    python3 -c 'import json,sys
d=json.loads(sys.argv[1])
b=d.get("status",{}).get("bound") or []
print(b[0].rsplit(":",1)[1] if b else "")' "$body" 2>/dev/null || true
}

declare -A PORT
MODELS=()
for m in thread pool event process sequential; do
    w=1
    [ "$m" = event ] && w=$WORKERS
    [ "$m" = pool ] && w=256 # a pool worker holds one connection: as many as allowed
    p=$(create "echo-$m" "{\"id\":\"echo-$m\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,\"model\":\"$m\",\"workers\":$w,\"max_connections\":20000,\"idle_timeout_ms\":0}")
    if [ -n "$p" ]; then
        PORT[$m]=$p
        MODELS+=("$m")
    else
        echo "run.sh: model $m is not available" >&2
    fi
done
# The UDP reply budgets are off: here one source address is the whole load, not an attacker.
PORT[udp]=$(create echo-udp "{\"id\":\"echo-udp\",\"service\":\"echo\",\"transport\":\"udp\",\"address\":\"127.0.0.1\",\"port\":0,\"workers\":$WORKERS,\"reply_rate_per_source\":0,\"reply_rate\":0}")
PORT[backup]=$(create backup "{\"id\":\"backup\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0,\"max_connections\":16,\"options\":{\"on_exists\":\"replace\"}}")

# ---- the references ----
start_group REF_PID "$BUILD/bench/ref_epoll_echo" -t "$WORKERS" 0 >"$TMP/ref.port"
start_group UREF_PID "$BUILD/bench/ref_udp_echo" -t "$WORKERS" 0 >"$TMP/uref.port"
wait_for 5 has_line "$TMP/ref.port"
wait_for 5 has_line "$TMP/uref.port"
PORT[ref]=$(head -n1 "$TMP/ref.port")
PORT[uref]=$(head -n1 "$TMP/uref.port")
PORT[socat]=$(free_port)
start_group SOCAT_PID socat "TCP-LISTEN:${PORT[socat]},bind=127.0.0.1,fork,reuseaddr,backlog=1024" PIPE
wait_for 5 listening "${PORT[socat]}"

echo "run.sh: models: ${MODELS[*]:-none}; ${REPS} pair(s) of ${D}s per comparison" >&2

# ---- TCP echo ----
for size in $SIZES; do
    for conns in $CONNS_LIST; do
        servers=()
        for m in "${MODELS[@]}"; do
            [ "$m" = sequential ] && [ "$conns" != 1 ] && continue
            servers+=("$m")
        done
        servers+=(ref socat)
        n=${#servers[@]}
        for rep in $(seq 1 "$REPS"); do
            for k in $(seq 0 $((n - 1))); do # the order turns each round
                s=${servers[$(((k + rep) % n))]}
                lg echo -c "$conns" -s "$size" -d "$D" --tag "tcp|$s|$conns|$size|$rep" 127.0.0.1 "${PORT[$s]}"
            done
        done
    done
done

# ---- UDP echo ----
for size in $SIZES; do
    for rep in $(seq 1 "$REPS"); do
        lg echo --udp -c 50 -s "$size" -d "$D" --tag "udp|sockserv|50|$size|$rep" 127.0.0.1 "${PORT[udp]}"
        lg echo --udp -c 50 -s "$size" -d "$D" --tag "udp|ref|50|$size|$rep" 127.0.0.1 "${PORT[uref]}"
    done
done

# ---- backup upload vs socat writing the same bytes ----
for rep in $(seq 1 "$REPS"); do
    lg upload -n "$UPLOAD_BYTES" --name bench.bin --tag "upload|sockserv|$rep" 127.0.0.1 "${PORT[backup]}"
    sp=$(free_port)
    rm -f "$TMP/socat.bin"
    start_group SU_PID socat -u "TCP-LISTEN:$sp,bind=127.0.0.1,reuseaddr" "CREATE:$TMP/socat.bin"
    wait_for 5 listening "$sp"
    lg upload --raw -n "$UPLOAD_BYTES" --tag "upload|socat|$rep" 127.0.0.1 "$sp"
    wait "$SU_PID" 2>/dev/null || true
    rm -f "$TMP/socat.bin"
done

# ---- the control API while the data plane is saturated ----
SAT=event
[ -n "${PORT[event]:-}" ] || SAT=${MODELS[0]}
lg_http -r 200 -d "$API_D" --tag "api|idle|/api/v1/metrics" "$API/api/v1/metrics"
# a control: CPU 0 saturated by the reference server, not by the daemon
nice -n 10 taskset -c "$LG_CPU" "$LOADGEN" echo -c 50 -s 64 -d $((API_D + 2)) --tag "satref|ref|50|64|1" \
    127.0.0.1 "${PORT[ref]}" >>"$RES" 2>>"$LOG" &
SATJOB=$!
BG+=("$SATJOB")
sleep 1
lg_http -r 200 -d "$API_D" --tag "api|CPU 0 saturated by the reference server|/api/v1/metrics" "$API/api/v1/metrics"
wait "$SATJOB" || true
nice -n 10 taskset -c "$LG_CPU" "$LOADGEN" echo -c 50 -s 64 -d $((2 * API_D + 2)) --tag "sat|$SAT|50|64|1" \
    127.0.0.1 "${PORT[$SAT]}" >>"$RES" 2>>"$LOG" &
SATJOB=$!
BG+=("$SATJOB")
sleep 1
lg_http -r 200 -d "$API_D" --tag "api|saturated|/api/v1/metrics" "$API/api/v1/metrics"
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/metrics")" = 200 ]; then
    lg_http -r 200 -d "$API_D" --tag "api|saturated|/metrics" "$API/metrics"
fi
wait "$SATJOB" || true

# ---- idle connections held by one listener ----
IDLE_MODEL=event
[ -n "${PORT[event]:-}" ] || IDLE_MODEL=${MODELS[0]}
taskset -c "$LG_CPU" "$LOADGEN" idle -c "$IDLE_CONNS" -d "$IDLE_HOLD" --pid "$DPID" \
    --tag "idle|$IDLE_MODEL" 127.0.0.1 "${PORT[$IDLE_MODEL]}" >>"$RES" 2>>"$LOG" &
IDLEJOB=$!
BG+=("$IDLEJOB")
deadline=$((SECONDS + 40))
active=0
while [ $SECONDS -lt $deadline ] && kill -0 "$IDLEJOB" 2>/dev/null; do
    a=$(curl -s "$API/api/v1/listeners/echo-$IDLE_MODEL/metrics" |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("connections_active",0))' 2>/dev/null || echo 0)
    [ "$a" -gt "$active" ] && active=$a
    sleep 0.5
done
wait "$IDLEJOB" || true
echo "{\"mode\":\"idle_server\",\"tag\":\"idle|$IDLE_MODEL\",\"connections_active_max\":$active}" >>"$RES"

# ---- the report ----
MACHINE="load average $LOAD_BEFORE at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then COMMIT="$COMMIT (with uncommitted changes)"; fi
report_rc=0
python3 - "$RES" "$OUT" "$MACHINE" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$COMMIT" "$D" "$REPS" \
    "$UPLOAD_BYTES" "$WORKERS" "${MODELS[*]:-}" "$QUICK" <<'PY' || report_rc=$?
import json, statistics, sys
from collections import defaultdict

(res, out, machine, date, commit, dur, reps, upload_bytes, workers, models,
 quick) = sys.argv[1:12]
rows = []
for line in open(res):
    line = line.strip()
    if line.startswith("{"):
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass

# A measurement without latency data (no lat_us, or no sample in it) is a failed run, never a
# figure of 0 that meets a target: the report is written, then run.sh exits 1.
no_latency = []
for r in rows:
    if r.get("tag", "").split("|")[0] in ("tcp", "udp", "api"):
        lat = r.get("lat_us")
        if not isinstance(lat, dict) or not lat.get("count") or not all(
                isinstance(lat.get(k), (int, float)) for k in ("p50", "p90", "p99", "p999", "max")):
            no_latency.append(r.get("tag"))

def lat(r, k):
    """A latency figure of row r, or None (shown n/a) when it has none."""
    l = r.get("lat_us")
    return l.get(k) if isinstance(l, dict) and l.get("count") else None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, spec=".0f"):
    return "n/a" if x is None else format(x, spec)

def ratio(a, b):
    return a / b if a and b else None

L = []
L.append("# sockserv benchmarks\n")
L.append("Written by `bench/run.sh`%s.\n" % (" --quick (a smoke run: too short to judge by)" if quick == "1" else ""))
L.append("- machine: %s" % machine)
L.append("- date: %s" % date)
L.append("- commit: %s" % commit)
L.append("- method: servers pinned to CPU 0, the load generator to CPU 1; each measurement %s s; "
         "%s interleaved round(s) per comparison (the order of the servers turns each round); a "
         "ratio is the median of the per-round ratios; absolute figures are medians too" % (dur, reps))
L.append("- models available: %s; event model and references with %s worker thread(s); pool "
         "with 256 workers (each holds one connection)" % (models or "none", workers))
L.append("- loadgen: closed loop (each connection sends, waits for the whole echo, sends again); "
         "latency in microseconds; `lost` counts messages sent in the window and never answered "
         "within 1 s after it\n")

targets = []

# TCP echo
tcp = defaultdict(lambda: defaultdict(dict))  # (conns,size) -> rep -> server -> row
for r in rows:
    t = r.get("tag", "").split("|")
    if t[0] == "tcp" and r.get("mode") == "echo":
        tcp[(int(t[2]), int(t[3]))][int(t[4])][t[1]] = r
L.append("## TCP echo (msgs/s, closed loop)\n")
for (conns, size) in sorted(tcp, key=lambda k: (k[1], k[0])):
    reps_d = tcp[(conns, size)]
    servers = []
    for rep in reps_d.values():
        for s in rep:
            if s not in servers:
                servers.append(s)
    order = [s for s in ["event", "thread", "pool", "process", "sequential", "ref", "socat"] if s in servers]
    L.append("### %d connection(s), %d-byte messages\n" % (conns, size))
    L.append("| server | msgs/s | MB/s | p50 us | p99 us | p99.9 us | lost | ÷ ref | ÷ socat |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in order:
        runs = [rep[s] for rep in reps_d.values() if s in rep]
        rr = [ratio(rep[s]["msgs_per_s"], rep.get("ref", {}).get("msgs_per_s")) for rep in reps_d.values() if s in rep]
        rs = [ratio(rep[s]["msgs_per_s"], rep.get("socat", {}).get("msgs_per_s")) for rep in reps_d.values() if s in rep]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            s, fmt(med([x["msgs_per_s"] for x in runs])), fmt(med([x["mb_per_s"] for x in runs]), ".2f"),
            fmt(med([lat(x, "p50") for x in runs]), ".1f"), fmt(med([lat(x, "p99") for x in runs]), ".1f"),
            fmt(med([lat(x, "p999") for x in runs]), ".1f"), sum(x.get("lost", 0) for x in runs),
            fmt(med(rr), ".2f"), fmt(med(rs), ".2f")))
        if s == "event" and conns in (50, 500):
            targets.append(("event ≥ 0.95× reference epoll echo, %d conns, %d B" % (conns, size), med(rr), 0.95, "ge", None, rr))
            targets.append(("event ≥ 1.5× socat, %d conns, %d B" % (conns, size), med(rs), 1.5, "ge", None, rs))
    L.append("")
if not any(s == "event" for k in tcp for rep in tcp[k].values() for s in rep):
    targets.append(("event ≥ 0.95× reference / ≥ 1.5× socat", None, 0.95, "ge", "missed: the event model is not available"))

# UDP echo
udp = defaultdict(lambda: defaultdict(dict))
for r in rows:
    t = r.get("tag", "").split("|")
    if t[0] == "udp":
        udp[int(t[3])][int(t[4])][t[1]] = r
if udp:
    L.append("## UDP echo (50 sockets, closed loop)\n")
    L.append("| size | server | msgs/s | p50 us | p99 us | lost | ÷ ref |")
    L.append("|---:|---|---:|---:|---:|---:|---:|")
    for size in sorted(udp):
        for s in ["sockserv", "ref"]:
            runs = [rep[s] for rep in udp[size].values() if s in rep]
            rr = [ratio(rep[s]["msgs_per_s"], rep.get("ref", {}).get("msgs_per_s")) for rep in udp[size].values() if s in rep]
            L.append("| %d | %s | %s | %s | %s | %s | %s |" % (
                size, s, fmt(med([x["msgs_per_s"] for x in runs])), fmt(med([lat(x, "p50") for x in runs]), ".1f"),
                fmt(med([lat(x, "p99") for x in runs]), ".1f"), sum(x.get("lost", 0) for x in runs), fmt(med(rr), ".2f")))
            if s == "sockserv":
                targets.append(("UDP ≥ 0.95× recvmmsg reference, %d B" % size, med(rr), 0.95, "ge", None, rr))
    L.append("")

# upload
up = defaultdict(dict)
for r in rows:
    t = r.get("tag", "").split("|")
    if t[0] == "upload":
        up[int(t[2])][t[1]] = r
if up:
    L.append("## Backup upload, %d MiB (SHA-256 checked, fsync before STORED) vs socat -u … CREATE:file (no fsync)\n" % (int(upload_bytes) >> 20))
    L.append("| server | MB/s | seconds | ÷ socat |")
    L.append("|---|---:|---:|---:|")
    for s in ["sockserv", "socat"]:
        runs = [rep[s] for rep in up.values() if s in rep]
        rr = [ratio(rep[s]["mb_per_s"], rep.get("socat", {}).get("mb_per_s")) for rep in up.values() if s in rep]
        L.append("| %s | %s | %s | %s |" % (s, fmt(med([x["mb_per_s"] for x in runs]), ".1f"),
                 fmt(med([x["seconds"] for x in runs]), ".3f"), fmt(med(rr), ".2f")))
        if s == "sockserv":
            targets.append(("backup ≥ 0.8× socat writing the same file", med(rr), 0.8, "ge", None, rr))
    L.append("")

# API
api = [r for r in rows if r.get("tag", "").startswith("api|")]
sat = [r for r in rows if r.get("tag", "").startswith("sat|")]
if api:
    L.append("## Control API latency (one keep-alive connection, 200 requests/s, open loop: from the intended send time)\n")
    if sat:
        L.append("The data plane meanwhile: %s echo, 50 connections, 64 B, closed loop: %s msgs/s.\n" % (
            sat[0]["tag"].split("|")[1], fmt(sat[0]["msgs_per_s"])))
    L.append("| data plane | route | requests | errors | p50 ms | p90 ms | p99 ms | max ms |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in api:
        t = r["tag"].split("|")
        ms = {k: lat(r, k) / 1000 if lat(r, k) is not None else None for k in ("p50", "p90", "p99", "max")}
        L.append("| %s | `%s` | %d | %d | %s | %s | %s | %s |" % (
            t[1], t[2], r["requests"], r["errors"], fmt(ms["p50"], ".2f"), fmt(ms["p90"], ".2f"),
            fmt(ms["p99"], ".2f"), fmt(ms["max"], ".2f")))
        if t[1] == "saturated":
            targets.append(("control API p99 < 5 ms while saturated, `%s`" % t[2],
                            ms["p99"] if r["requests"] and not r["errors"] else None, 5.0, "lt"))
    L.append("")

# idle
idle = [r for r in rows if r.get("mode") == "idle"]
isrv = [r for r in rows if r.get("mode") == "idle_server"]
if idle:
    r = idle[0]
    model = r["tag"].split("|")[1]
    L.append("## Idle connections held by one `%s` listener\n" % model)
    L.append("| asked | established | dropped while held | server's connections_active (max seen) | VmRSS before KiB | after KiB | bytes per connection |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|")
    L.append("| %d | %d | %d | %s | %d | %d | %.0f |" % (r["conns"], r["established"], r["dropped"],
             isrv[0]["connections_active_max"] if isrv else "n/a", r["rss_before_kib"], r["rss_after_kib"], r["bytes_per_conn"]))
    L.append("")
    held = r["established"] == r["conns"] and r["dropped"] == 0 and r["conns"] >= 10000
    why = None
    if r["conns"] < 10000:
        why = "not measured: %d connections only (quick run or open-file limit)" % r["conns"]
    elif model != "event":
        why = "not measured: the event model is not available"
    elif not held:
        why = "missed: %d of %d held" % (r["established"] - r["dropped"], r["conns"])
    targets.append(("one event listener holds 10,000 idle connections, < 10 KiB each (%d held by %s, %.0f B each)" % (
        r["established"] - r["dropped"], model, r["bytes_per_conn"]),
        r["bytes_per_conn"] / 10240 if why is None else None, 1.0, "lt", why))

L.append("## Targets\n")
L.append("| target | figure | per-round range | verdict |")
L.append("|---|---:|---|---|")
missed = []
for t in targets:
    name, val, lim = t[0], t[1], t[2]
    lt = len(t) > 3 and t[3] == "lt"
    rounds = [x for x in (t[5] if len(t) > 5 else []) if x is not None]
    spread = "%.2f–%.2f" % (min(rounds), max(rounds)) if rounds else ""
    if val is None:
        verdict = t[4] if len(t) > 4 and t[4] else "missed: not measured (model unavailable or run failed)"
    elif (val < lim) if lt else (val >= lim):
        verdict = "met"
    else:
        verdict = "missed by %.0f %%" % (abs(val / lim - 1) * 100)
    shown = "n/a" if val is None else ("%.2f ms" % val if "API" in name else "%.2f" % val)
    if "idle" in name and val is not None:
        shown = "%.2f× the 10 KiB limit" % val
    L.append("| %s | %s | %s | %s |" % (name, shown, spread, verdict))
    if verdict != "met":
        missed.append((name, verdict, spread))
L.append("")
L.append("## Closing note\n")
if not missed:
    L.append("Every target measured here is met.")
for name, verdict, spread in missed:
    L.append("- %s: %s%s." % (name, verdict, ", per-round ratios %s" % spread if spread else ""))
L.append("- The figures are only as quiet as the machine: the load average above counts every "
         "process on it, not only these; a wide per-round range says the machine was busy.")
L.append("")
if no_latency:
    L.append("- No latency data (a failed measurement): %s." % ", ".join("`%s`" % t for t in no_latency))
if not any(r.get("tag", "").startswith("api|") for r in rows):
    no_latency.append("the control API (no api| row)")
open(out, "w").write("\n".join(L) + "\n")
if no_latency:
    sys.stderr.write("run.sh: no latency data for %s\n" % ", ".join(no_latency))
    sys.exit(1)
PY
echo "run.sh: wrote $OUT" >&2
cat "$OUT"
if [ "$QUICK" = 1 ]; then
    # The backup comparison (bench/backup.sh) on 16 MiB, one round: proves it produces every figure.
    "$(dirname "$0")/backup.sh" --build "$BUILD" --size 16777216 --rounds 1 --budget 60 || report_rc=1
fi
exit "$report_rc"
