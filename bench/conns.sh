#!/usr/bin/env bash
# bench/conns.sh: an echo listener holding N concurrent TCP connections (bench/holdconns, from
# source addresses 127.0.0.2, 127.0.0.3, ...), per concurrency model (`event`, and `uring` when
# the daemon offers it): the daemon's memory per connection, the kernel's share, and the API's
# latency while they are held against before.
#
#   bench/conns.sh [--build DIR] [--quick] [-n N]
#
# --build   the meson build directory holding sockserv and bench/holdconns (default: build/)
# --quick   2,000 connections (default 19,000)
# -n N      N connections
#
# Figures, per model:
#   held             connections established, echoed once and counted by the daemon
#                    (connections_active)
#   user B/conn      the daemon's VmRSS and VmHWM after minus before (the peak reset before
#                    each model), divided by N
#   kernel B/conn    /proc/slabinfo (active objects x object size) after minus before, over the
#                    caches a connection uses (TCP, TCPv6, request_sock_TCP, sock_inode_cache,
#                    dentry, filp, eventpoll_epi, eventpoll_pwq, skbuff_head_cache,
#                    kmalloc-*), divided by N: both ends of each connection live on this host,
#                    so the server's share is about half. Needs root to read.
#   health p50/p99   GET /api/v1/health, 200 sequential requests on one keep-alive connection,
#                    before the connections and while they are held
# One markdown section on stdout, diagnostics on stderr; exits non-zero when a figure is
# missing. The daemon runs on CPU 0, holdconns and the API client on CPU 1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
N=19000
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=$2; shift ;;
    --quick) N=2000 ;;
    -n) N=$2; shift ;;
    -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "conns.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for t in taskset curl python3; do
    command -v "$t" >/dev/null || { echo "conns.sh: $t is needed" >&2; exit 1; }
done
SOCKSERV=$BUILD/sockserv
HOLD=$BUILD/bench/holdconns
[ -x "$SOCKSERV" ] && [ -x "$HOLD" ] || { echo "conns.sh: no $SOCKSERV or $HOLD (meson compile -C $BUILD)" >&2; exit 1; }
[ -r /proc/slabinfo ] && [ "$(wc -l </proc/slabinfo)" -gt 2 ] || { echo "conns.sh: /proc/slabinfo cannot be read (root needed)" >&2; exit 1; }
SRV_CPU=0
CL_CPU=1
[ "$(nproc)" -ge 2 ] || { echo "conns.sh: one CPU: figures not comparable" >&2; CL_CPU=0; }
mkdir -p "$BUILD/bench"
TMP=$(mktemp -d "$BUILD/bench/conns.XXXXXX")
DPID=""
HPID=""
cleanup() {
    [ -n "$HPID" ] && kill "$HPID" 2>/dev/null && wait "$HPID" 2>/dev/null || true
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # wait_for SECONDS CONDITION...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}
status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DPID/status"; }
# The bytes of the caches a connection uses, now.
slab_bytes() {
    awk '$1 ~ /^(TCP|TCPv6|request_sock_TCP|sock_inode_cache|dentry|filp|eventpoll_epi|eventpoll_pwq|skbuff_head_cache|kmalloc-[0-9k]+)$/ { s += $2 * $4 } END { printf "%d\n", s }' /proc/slabinfo
}
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); exec("for k in sys.argv[1].split(\".\"):\n d = d[int(k)] if isinstance(d, list) else d[k]"); print(d if isinstance(d, (str, int)) else json.dumps(d, separators=(",", ":")))' "$1"; }
metric() { curl -sf "$API/api/v1/listeners/$1/metrics" | json "$2"; }
idle() { [ "$(metric "$1" connections_active)" = 0 ]; }
# p50 and p99 of GET /api/v1/health, in microseconds, 200 sequential requests on one connection.
health_latency() {
    taskset -c "$CL_CPU" python3 - "$API" <<'EOF'
import http.client, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
lat = []
for i in range(220):
    t = time.perf_counter()
    c.request("GET", "/api/v1/health")
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit("health: %d" % r.status)
    if i >= 20:
        lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
print("%.0f %.0f" % (lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]))
EOF
}

mkdir -p "$TMP/state"
taskset -c "$SRV_CPU" "$SOCKSERV" daemon --api 127.0.0.1:0 --state-dir "$TMP/state" \
    --no-defaults --ready-fd 3 3>"$TMP/ready" 2>"$TMP/daemon.log" &
DPID=$!
wait_for 15 test -s "$TMP/ready" || { echo "conns.sh: the daemon did not start" >&2; cat "$TMP/daemon.log" >&2; exit 1; }
API=$(head -n1 "$TMP/ready")
FDS=$(curl -sf "$API/api/v1/health" | json fds)
MODELS="event"
if curl -sf "$API/api/v1/services" | grep -q '"uring"'; then
    MODELS="event uring"
fi
echo "conns.sh: $N connections per model ($MODELS); health fds $FDS; $(uptime)" >&2

missing=0
rows=""
for model in $MODELS; do
    body=$(curl -sf -X POST "$API/api/v1/listeners" -H 'Content-Type: application/json' \
        -d "{\"id\":\"c-$model\",\"service\":\"echo\",\"transport\":\"tcp\",\"address\":\"127.0.0.1\",\"port\":0,\"model\":\"$model\",\"max_connections\":$((N + 100)),\"idle_timeout_ms\":0}") ||
        { echo "conns.sh: cannot create the $model listener" >&2; missing=1; continue; }
    port=$(echo "$body" | json status.bound.0 | sed 's/.*://')
    # A first round trip so that the listener's threads have their buffers before the baseline.
    taskset -c "$CL_CPU" "$HOLD" -n 10 -t 10 127.0.0.1 "$port" >"$TMP/warm" 2>/dev/null &
    HPID=$!
    wait_for 15 grep -q '^held' "$TMP/warm" || true
    kill "$HPID" 2>/dev/null; wait "$HPID" 2>/dev/null || true
    HPID=""
    wait_for 10 idle "c-$model" || true
    before_lat=$(health_latency) || before_lat=""
    # VmHWM from here: the peak of an earlier model's run is forgotten (proc(5), clear_refs 5).
    echo 5 >"/proc/$DPID/clear_refs" 2>/dev/null || echo "conns.sh: cannot reset VmHWM" >&2
    rss0=$(status_kib VmRSS)
    hwm0=$(status_kib VmHWM)
    slab0=$(slab_bytes)
    t0=$SECONDS
    taskset -c "$CL_CPU" "$HOLD" -n "$N" -t 120 127.0.0.1 "$port" >"$TMP/hold" 2>"$TMP/hold.err" &
    HPID=$!
    if ! wait_for 130 grep -q '^\(held\|failed\)' "$TMP/hold" || ! grep -q '^held' "$TMP/hold"; then
        echo "conns.sh: $model: holdconns: $(cat "$TMP/hold" "$TMP/hold.err")" >&2
        missing=1
    fi
    setup_s=$((SECONDS - t0))
    active=$(metric "c-$model" connections_active || echo "")
    slab1=$(slab_bytes)
    rss1=$(status_kib VmRSS)
    hwm1=$(status_kib VmHWM)
    held_lat=$(health_latency) || held_lat=""
    open_fds=$(curl -sf "$API/api/v1/health" | json fds.open || echo "")
    kill "$HPID" 2>/dev/null; wait "$HPID" 2>/dev/null || true
    HPID=""
    wait_for 60 idle "c-$model" ||
        echo "conns.sh: $model: connections still open after the client left" >&2
    curl -sf -X DELETE "$API/api/v1/listeners/c-$model" >/dev/null || true
    if [ "$active" != "$N" ] || [ -z "$before_lat" ] || [ -z "$held_lat" ]; then
        echo "conns.sh: $model: held ${active:-?} of $N, latency before '${before_lat}' held '${held_lat}'" >&2
        missing=1
        continue
    fi
    user_rss=$(((rss1 - rss0) * 1024 / N))
    user_hwm=$(((hwm1 - hwm0) * 1024 / N))
    kernel=$(((slab1 - slab0) / N))
    rows+="| $model | $active | $open_fds | $user_rss | $user_hwm | $kernel | ${before_lat% *} / ${before_lat#* } | ${held_lat% *} / ${held_lat#* } | $setup_s |"$'\n'
done

echo "## Connections held ($N per model)"
echo
echo "Commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); health fds $FDS;" \
    "load before/after: $(cut -d' ' -f1-3 /proc/loadavg). One echo listener per model holds" \
    "$N connections from bench/holdconns (source addresses 127.0.0.2 and up), each echoed once." \
    "User: the daemon's VmRSS (VmHWM) growth per connection. Kernel: slab growth per connection" \
    "(both ends on this host). Health: p50 / p99 in µs of 200 sequential requests."
echo
echo "| model | held | fds open | user B/conn (RSS) | user B/conn (HWM) | kernel B/conn (slab, both ends) | health before p50/p99 µs | health held p50/p99 µs | setup s |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s' "$rows"
[ "$missing" = 0 ] && [ -n "$rows" ] || { echo "conns.sh: a figure is missing" >&2; exit 1; }
