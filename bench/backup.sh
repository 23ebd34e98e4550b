#!/usr/bin/env bash
# bench/backup.sh: the backup service's upload and restore side by side with socat moving the
# same bytes, in one run; order randomised per round, every round printed and counted, a failed
# round failing the script.
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
#   get        sockserv backup get NAME -o FILE         (verified, O_DIRECT, fsynced, renamed into place)
#   socat-get  socat -b 1048576 the stored file -> TCP -> file, then fsync of that file
#   put-tls, socat-put-tls, get-tls, socat-get-tls: the same over TLS (a listener with
#              options.tls, `--tls --cacert`; socat OPENSSL-LISTEN/OPENSSL), unless --no-tls
# The daemon (and socat's server side) run on CPU 0, the clients on CPU 1 (taskset). Around
# each transfer `perf stat -e raw_syscalls:sys_enter,task-clock` watches the server side (the
# daemon, or socat's listening process): its CPU time and syscalls per GiB sit beside every
# rate. Beside it the client side's CPU time (user + system of the processes the transfer ran
# on CPU 1: the command, or socat's client and the fsync after it), from the shell's `times`.
# Before every get the stored copy both sides read is read once, untimed, so that each finds
# it in the page cache whatever ran before it (a put writes it past the cache).
# A transfer that fails (an error, wrong bytes) is a failed round and fails the script;
# so does a missing figure. It prints one markdown section on stdout, its progress on stderr.
# BENCH_FAULT=noanswer points the `get` transfers at a closed port (proves the failure path).
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
for t in socat taskset curl python3 ss sha256sum openssl perf shuf; do
    command -v "$t" >/dev/null || { echo "backup.sh: $t is needed" >&2; exit 1; }
done
[ -d "$BUILD" ] || { echo "backup.sh: no build directory $BUILD" >&2; exit 1; }
BUILD=$(cd "$BUILD" && pwd) # absolute: the TLS listener wants absolute paths
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
    [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null || true
    [ -n "$SRVPID" ] && kill "$SRVPID" 2>/dev/null || true
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need=$((SIZE / 1024 * 8 + 1048576)) # KiB: the file, two copies per listener, socat's, two out
avail=$(df -Pk "$TMP" | awk 'NR == 2 { print $4 }')
[ "$avail" -gt "$need" ] || { echo "backup.sh: $TMP needs $need KiB free, has $avail" >&2; exit 1; }

free_port() { # a port nothing listens on, below the ephemeral range
    local p
    for _ in $(seq 1 100); do
        p=$((10000 + RANDOM % 22000))
        ss -Htan "sport = :$p" | grep -q . || { echo "$p"; return 0; }
    done
    return 1
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
PERF_PID=""
PERF_FDS=""
PF=""
# perf_begin PID: counts PID's syscalls and CPU time (its threads and children too) from now
perf_begin() {
    rm -f "$TMP/pctl" "$TMP/pack" "$TMP/perf.out"
    mkfifo "$TMP/pctl" "$TMP/pack"
    : >"$TMP/perf.err"
    perf stat -e raw_syscalls:sys_enter,task-clock -x, -p "$1" --control "fifo:$TMP/pctl,$TMP/pack" \
        -D -1 -o "$TMP/perf.out" 2>"$TMP/perf.err" &
    PERF_PID=$!
    wait_for 10 grep -q 'Events disabled' "$TMP/perf.err" || return 0
    exec 7>"$TMP/pctl" 8<"$TMP/pack"
    PERF_FDS=1
    (echo enable >&7) 2>/dev/null && read -r -t 2 -u 8 _ || true
}
# perf_end: stops counting; sets PF to "SYSCALLS CPU_MS" ("-" for a figure perf did not give).
# perf stops by itself when the process it watches ends (socat's server side): the writes go
# through a subshell, which a closed fifo's SIGPIPE ends instead of this script.
perf_end() {
    local sc cpu
    if [ -n "$PERF_FDS" ]; then
        (echo disable >&7) 2>/dev/null && read -r -t 2 -u 8 _ || true
        exec 7>&- 8<&-
        PERF_FDS=""
    fi
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
    sc=$(awk -F, '$3 == "raw_syscalls:sys_enter" && $1 ~ /^[0-9]+$/ { print $1 }' "$TMP/perf.out" 2>/dev/null)
    cpu=$(awk -F, '$3 == "task-clock" && $1 ~ /^[0-9.]+$/ { print $1 }' "$TMP/perf.out" 2>/dev/null)
    PF="${sc:--} ${cpu:--}"
}
# ccpu: sets CCPU to the CPU time (ms, user + system) of the children the script has waited for
# so far; `times` runs in this shell (in a subshell it would count the subshell's children)
CCPU=0
ccpu() {
    local u s t sec
    times >"$TMP/times"
    { read -r _ _; read -r u s; } <"$TMP/times"
    CCPU=0
    for t in "$u" "$s"; do # 1m2.345s
        t=${t%s}
        sec=${t#*m}
        CCPU=$((CCPU + 10#${t%%m*} * 60000 + 10#${sec%.*} * 1000 + 10#${sec#*.}))
    done
}
# fsync of one file (coreutils' sync FILE: fsync(2)); not python, whose start (a second and
# more on a busy machine) would be timed on socat's side
fsync_file() { sync "$1"; }

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
# socat_server ARGS...: socat's server side on CPU 0, listening (SRVPID) before it returns
socat_server() {
    taskset -c "$SRV_CPU" socat "$@" &
    SRVPID=$!
    wait_for 5 listening "$p"
}
# transfer KIND: the transfer itself, timed from t0 to t1, its client side's CPU ms in CL_MS;
# non-zero when it failed
transfer() {
    local kind=$1 dst=$TMP/out.bin c0
    ccpu
    c0=$CCPU
    case "$kind" in
    put)
        t0=$(now_ns)
        $CL "$SOCKSERV" backup put "$SRC" --name bench.bin 127.0.0.1 "$PORT" >/dev/null || return 1
        t1=$(now_ns) ;;
    put-tls)
        t0=$(now_ns)
        # shellcheck disable=SC2086
        $CL "$SOCKSERV" backup put "$SRC" --name bench.bin $TLSARGS 127.0.0.1 "$TPORT" >/dev/null || return 1
        t1=$(now_ns) ;;
    get)
        t0=$(now_ns)
        $CL "$SOCKSERV" backup get bench.bin -o "$dst" 127.0.0.1 "$PORT" >/dev/null || return 1
        t1=$(now_ns) ;;
    get-tls)
        t0=$(now_ns)
        # shellcheck disable=SC2086
        $CL "$SOCKSERV" backup get bench.bin -o "$dst" $TLSARGS 127.0.0.1 "$TPORT" >/dev/null || return 1
        t1=$(now_ns) ;;
    socat-put | socat-put-tls)
        t0=$(now_ns)
        if [ "$kind" = socat-put ]; then
            $CL socat -u -b 1048576 "OPEN:$SRC" "TCP:127.0.0.1:$p" || return 1
        else
            $CL socat -u -b 1048576 "OPEN:$SRC" "OPENSSL:127.0.0.1:$p,cafile=$TMP/cert.pem" || return 1
        fi
        ccpu
        CL_MS=$((CCPU - c0))
        wait "$SRVPID" || return 1 # socat's server side: not the client's CPU
        SRVPID=""
        ccpu
        c0=$CCPU
        fsync_file "$TMP/socat.bin" || return 1
        t1=$(now_ns)
        ccpu
        CL_MS=$((CL_MS + CCPU - c0))
        return 0 ;;
    socat-get | socat-get-tls)
        t0=$(now_ns)
        if [ "$kind" = socat-get ]; then
            $CL socat -u -b 1048576 "TCP:127.0.0.1:$p" "CREATE:$dst" || return 1
        else
            $CL socat -u -b 1048576 "OPENSSL:127.0.0.1:$p,cafile=$TMP/cert.pem" "CREATE:$dst" || return 1
        fi
        fsync_file "$dst" || return 1
        t1=$(now_ns)
        ccpu
        CL_MS=$((CCPU - c0))
        wait "$SRVPID" || return 1
        SRVPID=""
        return 0 ;;
    esac
    ccpu
    CL_MS=$((CCPU - c0))
}
# run KIND ROUND: one transfer; its milliseconds and the server side's syscalls and CPU
# milliseconds (perf) to $RES, or "failed" when it failed (never dropped)
run() {
    local kind=$1 round=$2 srv=$DPID ok=1 port_saved=""
    sync
    case "$kind" in
    get | socat-get) cat "$STORED" >/dev/null ;;
    get-tls | socat-get-tls) cat "$TSTORED" >/dev/null ;;
    esac
    p=""
    case "$kind" in
    socat-put)
        p=$(free_port)
        socat_server -u -b 1048576 "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr" "CREATE:$TMP/socat.bin" || ok=0 ;;
    socat-put-tls)
        p=$(free_port)
        socat_server -u -b 1048576 \
            "OPENSSL-LISTEN:$p,bind=127.0.0.1,reuseaddr,cert=$TMP/cert.pem,key=$TMP/key.pem,verify=0" \
            "CREATE:$TMP/socat.bin" || ok=0 ;;
    socat-get)
        p=$(free_port)
        socat_server -u -b 1048576 "OPEN:$STORED" "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr" || ok=0 ;;
    socat-get-tls)
        p=$(free_port)
        socat_server -u -b 1048576 "OPEN:$TSTORED" \
            "OPENSSL-LISTEN:$p,bind=127.0.0.1,reuseaddr,cert=$TMP/cert.pem,key=$TMP/key.pem,verify=0" || ok=0 ;;
    esac
    [ -n "$p" ] && srv=$SRVPID
    if [ "${BENCH_FAULT:-}" = noanswer ] && [ "$kind" = get ]; then
        port_saved=$PORT # prove the failure path: nothing listens there
        PORT=$(free_port)
    fi
    perf_begin "$srv"
    if [ "$ok" = 1 ] && ! transfer "$kind"; then
        ok=0
    fi
    perf_end
    [ -n "$port_saved" ] && PORT=$port_saved
    if [ -n "$SRVPID" ]; then
        kill "$SRVPID" 2>/dev/null || true
        wait "$SRVPID" 2>/dev/null || true
        SRVPID=""
    fi
    if [ "$ok" = 1 ] && [ "${kind#*get}" != "$kind" ] &&
        [ "$(sha256sum "$TMP/out.bin" | cut -d' ' -f1)" != "$SHA" ]; then
        echo "backup.sh: $kind: wrong bytes" >&2
        ok=0
    fi
    if [ "$ok" = 0 ]; then
        echo "$round $kind failed - - -" >>"$RES"
        printf 'round %d  %-13s FAILED\n' "$round" "$kind" >&2
        return 0
    fi
    echo "$round $kind $(((t1 - t0) / 1000000)) $PF $CL_MS" >>"$RES"
    printf 'round %d  %-13s %6d ms  server syscalls, CPU ms: %s  client CPU ms: %s\n' "$round" "$kind" \
        $(((t1 - t0) / 1000000)) "$PF" "$CL_MS" >&2
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

python3 - "$RES" "$SIZE" "$LOAD0" "$LOAD1" "$done_rounds" "$KINDS" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import sys, statistics
res, size, load0, load1, rounds, kinds, commit = (sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4],
                                                  int(sys.argv[5]), sys.argv[6].split(), sys.argv[7])
rows = {}
for line in open(res):
    r, kind, ms, sc, cpu, ccpu = line.split()
    rows.setdefault(kind, []).append(None if ms == "failed" else
                                     (int(ms), None if sc == "-" else int(sc), None if cpu == "-" else float(cpu),
                                      int(ccpu)))
gib = size / (1 << 30)
mib = size / (1 << 20)

def rng(xs, spec):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "missing"
    m = format(statistics.median(xs), spec)
    return m if len(xs) == 1 else "%s (%s–%s)" % (m, format(min(xs), spec), format(max(xs), spec))

print("## Backup at disk speed (bench/backup.sh)\n")
print("%d bytes per transfer, %d round(s), the transfers of a round in a random order; commit %s; "
      "load average %s before, %s after. Server side: the daemon, or socat's listening process "
      "(`-b 1048576`); its CPU time and syscalls from `perf stat -e raw_syscalls:sys_enter,task-clock` "
      "over the transfer. Client side: the processes the transfer ran on CPU 1 (the command, or socat's "
      "client and the fsync after it), their CPU time from the shell's `times`. "
      "Every figure: median (per-round range).\n" % (size, rounds, commit, load0, load1))
print("| transfer | ms | MiB/s | server CPU s/GiB | server syscalls/MiB | client CPU s/GiB | rounds failed |")
print("|---|---:|---:|---:|---:|---:|---:|")
med = {}
missing, failed = [], []
for kind in ("put", "socat-put", "get", "socat-get", "put-tls", "socat-put-tls", "get-tls", "socat-get-tls"):
    if kind not in kinds:
        continue
    v = rows.get(kind, [])
    ok = [x for x in v if x]
    nf = len(v) - len(ok)
    if nf or len(v) != rounds:
        failed.append("%s: %d of %d round(s) failed or did not run" % (kind, rounds - len(ok), rounds))
    if ok:
        med[kind] = statistics.median([x[0] for x in ok])
    for i, name in ((1, "syscalls"), (2, "CPU time")):
        if any(x[i] is None for x in ok):
            missing.append("%s: %s" % (kind, name))
    print("| %s | %s | %s | %s | %s | %s | %s |" % (
        kind, rng([m for m, _, _, _ in ok], ".0f"),
        rng([mib / (m / 1000) if m else None for m, _, _, _ in ok], ".0f"),
        rng([c / 1000 / gib if c is not None else None for _, _, c, _ in ok], ".2f"),
        rng([s / mib if s is not None else None for _, s, _, _ in ok], ".1f"),
        rng([cc / 1000 / gib for _, _, _, cc in ok], ".2f"),
        "%d of %d" % (nf, len(v))))
print()

def cmp(a, b, label, target):
    if a in med and b in med and med[a]:
        print("- %s: %.2fx%s" % (label, med[b] / med[a], " (target ≥ %s)" % target if target else ""))

cmp("put", "socat-put", "put speed ÷ socat + fsync", "0.8")
cmp("get", "socat-get", "get speed ÷ socat", "0.9")
cmp("put-tls", "socat-put-tls", "TLS put ÷ socat + fsync over TLS", None)
cmp("get-tls", "socat-get-tls", "TLS get ÷ socat over TLS", None)
for x in failed:
    print("- FAILED: %s" % x)
for x in missing:
    print("- MISSING: %s" % x)
if rounds == 0 or failed or missing:
    sys.stderr.write("backup.sh: failed: %s\n" % ", ".join(failed + missing or ["no round ran"]))
    sys.exit(1)
PY
