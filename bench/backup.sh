#!/usr/bin/env bash
# bench/backup.sh: the backup service's upload and restore side by side with socat moving the
# same bytes, in one run; order randomised per round, every round printed and counted.
#
#   bench/backup.sh [--build DIR] [--size BYTES] [--rounds N] [--budget SECONDS] [--dir DIR]
#
# --build   the meson build directory holding sockserv (default: build/)
# --size    bytes of the random test file (default 1073741824: 1 GiB)
# --rounds  rounds; each runs the four transfers once, in a random order (default 5)
# --budget  stop starting rounds after this many seconds (default 300)
# --no-tls  leave the TLS rows out
# --dir     where the file, the daemon's state and socat's copies go: one file system for all
#           (default: a temporary directory beneath the build directory)
#
# Rows:
#   put        sockserv backup put FILE                 (hash while sending, STORED once durable)
#   socat-put  socat -b 1048576 FILE -> TCP -> file, then fsync of that file
#   get        sockserv backup get NAME -o FILE         (verified, fsynced, renamed into place)
#   socat-get  socat -b 1048576 the stored file -> TCP -> file, then fsync of that file
#   put-tls, socat-put-tls, get-tls, socat-get-tls: the same over TLS (a listener with
#              options.tls, `--tls --cacert`; socat OPENSSL-LISTEN/OPENSSL), unless --no-tls
# The daemon (and socat's server side) run on CPU 0, the clients on CPU 1 (taskset). The
# daemon's CPU time per GiB comes from /proc/PID/stat (utime + stime) around each transfer.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
SIZE=1073741824
ROUNDS=5
BUDGET=300
DIR=""
TLS=1
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --dir) DIR=$2; shift ;;
    --no-tls) TLS=0 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "backup.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for t in socat taskset curl python3 ss sha256sum openssl; do
    command -v "$t" >/dev/null || { echo "backup.sh: $t is needed" >&2; exit 1; }
done
SOCKSERV=$BUILD/sockserv
[ -x "$SOCKSERV" ] || { echo "backup.sh: no $SOCKSERV (meson compile -C $BUILD)" >&2; exit 1; }
SRV_CPU=0
CL_CPU=1
[ "$(nproc)" -ge 2 ] || { echo "backup.sh: one CPU: figures not comparable" >&2; CL_CPU=0; }
if [ -z "$DIR" ]; then
    mkdir -p "$BUILD/bench"
    TMP=$(mktemp -d "$BUILD/bench/backup.XXXXXX")
else
    mkdir -p "$DIR"
    TMP=$(mktemp -d "$DIR/backup.XXXXXX")
fi
DPID=""
SRVPID=""
cleanup() {
    [ -n "$SRVPID" ] && kill "$SRVPID" 2>/dev/null || true
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need=$((SIZE / 1024 * 8 + 1048576)) # KiB: the file, two copies per listener, socat's, two out
avail=$(df -Pk "$TMP" | awk 'NR == 2 { print $4 }')
[ "$avail" -gt "$need" ] || { echo "backup.sh: $TMP needs $need KiB free, has $avail" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
listening() { ss -Hltn "sport = :$1" | grep -q .; }
wait_for() { # wait_for SECONDS CONDITION...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.02
    done
}
now_ns() { date +%s%N; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$DPID/stat"; }
fsync_file() { python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$1"; }

# ---- the file, in the page cache ----
SRC=$TMP/src.bin
head -c "$SIZE" /dev/urandom >"$SRC"
SHA=$(sha256sum "$SRC" | cut -d' ' -f1)
cat "$SRC" >/dev/null

# ---- the daemon ----
mkdir -p "$TMP/state"
taskset -c "$SRV_CPU" "$SOCKSERV" daemon --api 127.0.0.1:0 --state-dir "$TMP/state" \
    --no-defaults --ready-fd 3 3>"$TMP/ready" 2>"$TMP/daemon.log" &
DPID=$!
wait_for 15 test -s "$TMP/ready" || { echo "backup.sh: the daemon did not start" >&2; cat "$TMP/daemon.log" >&2; exit 1; }
API=$(head -n1 "$TMP/ready")
body=$(curl -s -X POST "$API/api/v1/listeners" -H 'Content-Type: application/json' \
    -d '{"id":"bk","service":"backup","address":"127.0.0.1","port":0,"options":{"on_exists":"replace"}}')
PORT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"]["bound"][0].rsplit(":",1)[1])' "$body")
STORED=$TMP/state/backup/bk/bench.bin
CL="taskset -c $CL_CPU"
KINDS="put socat-put get socat-get"

# A first upload, not counted: the stored copy the gets read. Every transfer then replaces an
# earlier 1 GiB copy, as a backup does (on_exists replace drops the older one; socat's CREATE
# truncates its earlier file, and every get replaces the earlier output), within its timing.
$CL "$SOCKSERV" backup put "$SRC" --name bench.bin 127.0.0.1 "$PORT" >/dev/null
if [ "$TLS" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    body=$(curl -s -X POST "$API/api/v1/listeners" -H 'Content-Type: application/json' \
        -d "{\"id\":\"bkt\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0,\"options\":{\"on_exists\":\"replace\",\"tls\":{\"cert_file\":\"$TMP/cert.pem\",\"key_file\":\"$TMP/key.pem\"}}}")
    TPORT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"]["bound"][0].rsplit(":",1)[1])' "$body")
    TSTORED=$TMP/state/backup/bkt/bench.bin
    TLSARGS="--tls --cacert $TMP/cert.pem"
    # shellcheck disable=SC2086
    $CL "$SOCKSERV" backup put "$SRC" --name bench.bin $TLSARGS 127.0.0.1 "$TPORT" >/dev/null
    KINDS="$KINDS put-tls socat-put-tls get-tls socat-get-tls"
fi

cp "$SRC" "$TMP/socat.bin"
cp "$SRC" "$TMP/out.bin"
RES=$TMP/results
: >"$RES"
# run KIND ROUND: one transfer, its seconds (and the daemon's CPU seconds) to $RES
run() {
    local kind=$1 round=$2 t0 t1 c0 c1 p dst=$TMP/out.bin
    sync
    c0=$(cpu_ticks)
    case "$kind" in
    put)
        t0=$(now_ns)
        $CL "$SOCKSERV" backup put "$SRC" --name bench.bin 127.0.0.1 "$PORT" >/dev/null
        t1=$(now_ns)
        ;;
    socat-put)
        p=$(free_port)
        taskset -c "$SRV_CPU" socat -u -b 1048576 "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr" \
            "CREATE:$TMP/socat.bin" &
        SRVPID=$!
        wait_for 5 listening "$p"
        t0=$(now_ns)
        $CL socat -u -b 1048576 "OPEN:$SRC" "TCP:127.0.0.1:$p"
        wait "$SRVPID"
        SRVPID=""
        fsync_file "$TMP/socat.bin"
        t1=$(now_ns)
        ;;
    get)
        t0=$(now_ns)
        $CL "$SOCKSERV" backup get bench.bin -o "$dst" 127.0.0.1 "$PORT" >/dev/null
        t1=$(now_ns)
        ;;
    put-tls)
        t0=$(now_ns)
        # shellcheck disable=SC2086
        $CL "$SOCKSERV" backup put "$SRC" --name bench.bin $TLSARGS 127.0.0.1 "$TPORT" >/dev/null
        t1=$(now_ns)
        ;;
    socat-put-tls)
        p=$(free_port)
        taskset -c "$SRV_CPU" socat -u -b 1048576 \
            "OPENSSL-LISTEN:$p,bind=127.0.0.1,reuseaddr,cert=$TMP/cert.pem,key=$TMP/key.pem,verify=0" \
            "CREATE:$TMP/socat.bin" &
        SRVPID=$!
        wait_for 5 listening "$p"
        t0=$(now_ns)
        $CL socat -u -b 1048576 "OPEN:$SRC" "OPENSSL:127.0.0.1:$p,cafile=$TMP/cert.pem"
        wait "$SRVPID"
        SRVPID=""
        fsync_file "$TMP/socat.bin"
        t1=$(now_ns)
        ;;
    get-tls)
        t0=$(now_ns)
        # shellcheck disable=SC2086
        $CL "$SOCKSERV" backup get bench.bin -o "$dst" $TLSARGS 127.0.0.1 "$TPORT" >/dev/null
        t1=$(now_ns)
        ;;
    socat-get-tls)
        p=$(free_port)
        taskset -c "$SRV_CPU" socat -u -b 1048576 "OPEN:$TSTORED" \
            "OPENSSL-LISTEN:$p,bind=127.0.0.1,reuseaddr,cert=$TMP/cert.pem,key=$TMP/key.pem,verify=0" &
        SRVPID=$!
        wait_for 5 listening "$p"
        t0=$(now_ns)
        $CL socat -u -b 1048576 "OPENSSL:127.0.0.1:$p,cafile=$TMP/cert.pem" "CREATE:$dst"
        fsync_file "$dst"
        t1=$(now_ns)
        wait "$SRVPID"
        SRVPID=""
        ;;
    socat-get)
        p=$(free_port)
        taskset -c "$SRV_CPU" socat -u -b 1048576 "OPEN:$STORED" \
            "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr" &
        SRVPID=$!
        wait_for 5 listening "$p"
        t0=$(now_ns)
        $CL socat -u -b 1048576 "TCP:127.0.0.1:$p" "CREATE:$dst"
        fsync_file "$dst"
        t1=$(now_ns)
        wait "$SRVPID"
        SRVPID=""
        ;;
    esac
    c1=$(cpu_ticks)
    if [ "${kind#*get}" != "$kind" ]; then
        [ "$(sha256sum "$dst" | cut -d' ' -f1)" = "$SHA" ] || { echo "backup.sh: $kind: wrong bytes" >&2; exit 1; }
    fi
    echo "$round $kind $(((t1 - t0) / 1000000)) $((c1 - c0))" >>"$RES"
    printf 'round %d  %-9s %6d ms  daemon cpu %d ticks\n' "$round" "$kind" $(((t1 - t0) / 1000000)) $((c1 - c0)) >&2
}

echo "backup.sh: $SIZE bytes, up to $ROUNDS rounds within ${BUDGET}s; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
start=$SECONDS
done_rounds=0
for round in $(seq 1 "$ROUNDS"); do
    [ $((SECONDS - start)) -lt "$BUDGET" ] || { echo "backup.sh: time budget spent after $done_rounds rounds" >&2; break; }
    for kind in $(printf '%s\n' $KINDS | shuf); do
        run "$kind" "$round"
    done
    done_rounds=$round
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RES" "$SIZE" "$(getconf CLK_TCK)" "$LOAD0" "$LOAD1" "$done_rounds" "$KINDS" <<'EOF'
import sys, statistics
res, size, hz, load0, load1, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
kinds = sys.argv[7].split()
rows = {}
for line in open(res):
    r, kind, ms, ticks = line.split()
    rows.setdefault(kind, []).append((int(ms), int(ticks)))
gib = size / (1 << 30)
print(f"| {size} bytes, {rounds} rounds | median ms | min..max ms | MiB/s (median) | daemon CPU s/GiB |")
print("|---|---|---|---|---|")
med = {}
for kind in ("put", "socat-put", "get", "socat-get", "put-tls", "socat-put-tls", "get-tls", "socat-get-tls"):
    v = rows.get(kind, [])
    if not v:
        continue
    ms = [m for m, _ in v]
    med[kind] = statistics.median(ms)
    cpu = statistics.median([t for _, t in v]) / hz / gib if not kind.startswith("socat") else None
    print(f"| {kind} | {med[kind]:.0f} | {min(ms)}..{max(ms)} | {size / (1 << 20) / (med[kind] / 1000):.0f} |"
          f" {'%.2f' % cpu if cpu is not None else '-'} |")
print()
if "put" in med and "socat-put" in med:
    print(f"put speed vs socat+fsync: {med['socat-put'] / med['put']:.2f}x (target >= 0.8)")
if "get" in med and "socat-get" in med:
    print(f"get speed vs socat: {med['socat-get'] / med['get']:.2f}x (target >= 0.9)")
if "put-tls" in med and "socat-put-tls" in med:
    print(f"TLS put vs socat+fsync over TLS: {med['socat-put-tls'] / med['put-tls']:.2f}x")
if "get-tls" in med and "socat-get-tls" in med:
    print(f"TLS get vs socat over TLS: {med['socat-get-tls'] / med['get-tls']:.2f}x")
print(f"load average: {load0} before, {load1} after")
# A figure that could not be produced is a failure, not a blank.
missing = [k for k in kinds if len(rows.get(k, [])) != int(rounds)]
if int(rounds) == 0 or missing:
    sys.stderr.write("backup.sh: figures missing: %s\n" % (", ".join(missing) or "no round ran"))
    sys.exit(1)
EOF
