#!/usr/bin/env bash
# bench/fleet.sh: a fleet of sockserv daemons on one private RabbitMQ broker, measured in one run:
#   - convergence: `sockserv fleet apply --all` moving every node's two listeners to new ports,
#     from the record reaching the broker (and from the command's start) to the last node's
#     answer, p50 / p99 / max over the rounds, with the CPU the nodes and the broker spent on it;
#   - the REST API's latency (GET /api/v1/health, open loop) of a node whose bridge publishes a
#     stream of events (backup.stored, one per upload) beside the same daemon without --amqp
#     under the same load, and the events per second the bridge published, with CPU per operation.
# Writes (or replaces) the "Fleet" section of bench/RESULTS.md.
#
#   bench/fleet.sh [--build DIR] [--nodes N] [--rounds R] [--out FILE]
#
# --build   the meson build directory holding sockserv and bench/loadgen (default build/)
# --nodes   fleet size (default 50)
# --rounds  rounds (default 12, at least 5); each round runs the variants (an apply, the API with
#           the bridge, the API without it) in a random order
# --out     the results file (default bench/RESULTS.md)
#
# Environment: FLEET_API_SECONDS (each API measurement, default 4), FLEET_API_RATE (requests/s,
# default 200), FLEET_EVENT_RATE (uploads/s while the API is measured, default 200).
#
# Everything listens on 127.0.0.1; the broker runs from a temporary directory on free ports
# (scripts/broker.sh). The run stops by itself within 5 minutes and stops every daemon and the
# broker it started, however it ends. All the fleet's listeners use the `event` model, whose
# sockets are SO_REUSEPORT, so that 50 daemons on one machine can all take the same ports.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
NODES=50
ROUNDS=12
OUT=$ROOT/bench/RESULTS.md
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=$2; shift ;;
    --nodes) NODES=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fleet.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

for t in curl ss timeout; do
    command -v "$t" >/dev/null || { echo "fleet.sh: $t is needed" >&2; exit 1; }
done
# Debian's python3-pika is installed for the system's interpreter.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
"$PY" -c 'import pika' 2>/dev/null || { echo "fleet.sh: python3-pika is needed" >&2; exit 1; }
if [ ! -x "$BUILD/sockserv" ] || [ ! -x "$BUILD/bench/loadgen" ]; then
    [ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" >/dev/null
    meson compile -C "$BUILD" >/dev/null
fi
BROKER=$ROOT/scripts/broker.sh
[ -x "$BROKER" ] || { echo "fleet.sh: $BROKER is missing" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d /tmp/sockserv-fleet-bench.XXXXXX)
# The API pair keeps its state (and its uploads) in memory when it can: the comparison is of
# the bridge, not of the disk's fsync times, which other work on the machine makes erratic.
SHM=""
[ -d /dev/shm ] && [ -w /dev/shm ] && SHM=$(mktemp -d /dev/shm/sockserv-fleet-bench.XXXXXX)
BPORT=""
PYPID=""
cleanup() {
    local st=$?
    trap - EXIT INT TERM
    # The orchestrator stops its daemons itself; if it was killed, its list is in the pid file.
    if [ -n "$PYPID" ]; then
        kill -TERM "$PYPID" 2>/dev/null || true
        wait "$PYPID" 2>/dev/null || true
    fi
    if [ -s "$TMP/pids" ]; then
        while read -r p; do kill -KILL "$p" 2>/dev/null || true; done <"$TMP/pids"
    fi
    if [ -n "$BPORT" ]; then
        "$BROKER" stop "$TMP/broker" "$BPORT" >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
    [ -z "$SHM" ] || rm -rf "$SHM"
    exit "$st"
}
trap cleanup EXIT INT TERM

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BPORT=$("$BROKER" free-port)
T0=$SECONDS
"$BROKER" start "$TMP/broker" "$BPORT" >"$TMP/broker.log" 2>&1 ||
    { echo "fleet.sh: the broker did not start" >&2; cat "$TMP/broker.log" >&2; exit 1; }
BROKER_PID=$("$BROKER" pid "$TMP/broker" "$BPORT")
echo "fleet.sh: broker on 127.0.0.1:$BPORT ready in $((SECONDS - T0)) s" >&2

export FLEET_ROOT=$ROOT FLEET_BUILD=$BUILD FLEET_TMP=$TMP FLEET_NODES=$NODES FLEET_ROUNDS=$ROUNDS
export FLEET_OUT=$OUT FLEET_BROKER_PID=$BROKER_PID FLEET_LOAD_BEFORE=$LOAD_BEFORE
export FLEET_PAIR_DIR=${SHM:-$TMP}
export FLEET_AMQP="amqp://guest:guest@127.0.0.1:$BPORT/"
# A hard bound on the whole measurement (the broker's start is before it).
timeout -k 5 270 "$PY" - <<'PY' &
import hashlib, json, os, random, signal, socket, statistics, subprocess, sys, threading, time
import urllib.request

import pika

E = os.environ
ROOT, BUILD, TMP = E["FLEET_ROOT"], E["FLEET_BUILD"], E["FLEET_TMP"]
N, ROUNDS = int(E["FLEET_NODES"]), int(E["FLEET_ROUNDS"])
AMQP, BROKER_PID = E["FLEET_AMQP"], int(E["FLEET_BROKER_PID"])
API_S = float(E.get("FLEET_API_SECONDS", "4"))
API_RATE = int(E.get("FLEET_API_RATE", "200"))
EVENT_RATE = int(E.get("FLEET_EVENT_RATE", "200"))
SOCKSERV, LOADGEN = f"{BUILD}/sockserv", f"{BUILD}/bench/loadgen"
PREFIX = f"bench{os.getpid()}"
TICK = os.sysconf("SC_CLK_TCK")
START = time.monotonic()
DEADLINE = START + 240  # rounds stop here; stopping the daemons takes the rest

procs = []  # every daemon started, to stop


def log(*a):
    print("fleet.sh:", *a, file=sys.stderr, flush=True)


def cpu_s(pid):
    """utime + stime of pid, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def http_json(url, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=body,
                                 headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def start_daemon(name, amqp, prefix, labels=(), base=TMP):
    state = f"{base}/{name}"
    os.makedirs(state)
    rfd, wfd = os.pipe()
    args = [SOCKSERV, "daemon", "--api", "127.0.0.1:0", "--state-dir", state, "--no-defaults",
            "--ready-fd", str(wfd)]
    if amqp:
        args += ["--amqp", AMQP, "--node", name, "--amqp-prefix", prefix]
        for l in labels:
            args += ["--label", l]
    log_f = open(f"{state}.log", "wb")
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_f, stderr=log_f,
                         pass_fds=(wfd,), start_new_session=True)
    os.close(wfd)
    procs.append(p)
    with open(f"{TMP}/pids", "a") as f:
        f.write(f"{p.pid}\n")
    return p, rfd


def read_ready(p, rfd, timeout=30):
    buf, end = b"", time.monotonic() + timeout
    os.set_blocking(rfd, False)
    while b"\n" not in buf:
        if time.monotonic() > end or p.poll() is not None:
            raise SystemExit(f"a daemon did not become ready (pid {p.pid})")
        try:
            chunk = os.read(rfd, 256)
            if not chunk:
                time.sleep(0.02)
            buf += chunk
        except BlockingIOError:
            time.sleep(0.02)
    os.close(rfd)
    return buf.split(b"\n")[0].decode().strip()


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(-(-q * len(v) // 1)) - 1))]


def free_port_pairs(n):
    """n pairs of TCP ports free on 127.0.0.1 now, from a random base."""
    pairs, port = [], random.randrange(10000, 20000, 2)  # below the ephemeral ports
    while len(pairs) < n:
        ok = True
        for q in (port, port + 1):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            s.close()
        if ok:
            pairs.append((port, port + 1))
        port += 2
    return pairs


def config(ports):
    return {"listeners": [
        {"id": "echo", "service": "echo", "address": "127.0.0.1", "port": ports[0],
         "model": "event"},
        {"id": "daytime", "service": "date", "address": "127.0.0.1", "port": ports[1],
         "model": "event"},
    ]}


class Watcher:
    """Follows the fleet's config.* events and the desired stream on its own connection."""

    def __init__(self):
        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP))
        ch = self.ch = self.conn.channel()
        ch.exchange_declare(f"{PREFIX}.events", "topic", durable=True)
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, f"{PREFIX}.events", "ev.*.config.*")
        ch.basic_consume(q, self.on_event, auto_ack=True)
        ch.basic_qos(prefetch_count=64)
        self.records, self.replies = {}, {}  # offset -> arrival; offset -> {node: (t, result)}
        ch.basic_consume(f"{PREFIX}.desired", self.on_record,
                         arguments={"x-stream-offset": "next"})

    def on_event(self, ch, m, props, body):
        ev = json.loads(body)
        d = ev.get("data") or {}
        if d.get("offset") is not None:
            self.replies.setdefault(d["offset"], {})[ev["node"]] = (time.monotonic(),
                                                                    d.get("result"))

    def on_record(self, ch, m, props, body):
        off = (props.headers or {}).get("x-stream-offset")
        if off is not None:
            self.records.setdefault(off, time.monotonic())
        ch.basic_ack(m.delivery_tag)

    def pump(self, seconds):
        self.conn.process_data_events(time_limit=seconds)


def fleet_cpu(pids):
    return sum(cpu_s(p) for p in pids) + cpu_s(BROKER_PID)


def apply_round(w, ports, pids):
    path = f"{TMP}/cfg.json"
    with open(path, "w") as f:
        json.dump(config(ports), f)
    known = set(w.records)
    cpu0, t0 = fleet_cpu(pids), time.monotonic()
    cli = subprocess.Popen([SOCKSERV, "fleet", "--amqp", AMQP, "--amqp-prefix", PREFIX, "apply",
                            "-f", path, "--all", "--json", "--wait", "15s"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    off, end = None, t0 + 20
    while time.monotonic() < end:
        w.pump(0.01)
        if off is None:
            new = [o for o in w.records if o not in known]
            off = max(new) if new else None
        if off is not None and len(w.replies.get(off, {})) >= N and cli.poll() is not None:
            break
    out, err = cli.communicate(timeout=20)
    t_cli = time.monotonic() - t0
    cpu = fleet_cpu(pids) - cpu0
    got = w.replies.get(off, {}) if off is not None else {}
    if off is None or len(got) < N:
        log(f"apply: {len(got)} of {N} answers (exit {cli.returncode}): {err.decode()[-300:]}")
        return None
    last = max(t for t, _ in got.values())
    results = sorted({r for _, r in got.values()})
    return {"from_record": last - w.records[off], "from_start": last - t0, "cli": t_cli,
            "exit": cli.returncode, "results": results, "cpu": cpu}


def uploads(port, rate, seconds, stop, counter):
    """Stores small files through the backup protocol at rate per second (one connection)."""
    content = b"x" * 64
    sha = hashlib.sha256(content).hexdigest()
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    t, i = time.monotonic(), 0
    while not stop.is_set():
        s.sendall(f"PUT e{i % 64} 64 {sha}\n".encode() + content)
        if not f.readline().startswith(b"OK") or not f.readline().startswith(b"STORED"):
            break
        counter[0] += 1
        i += 1
        t += 1.0 / rate
        d = t - time.monotonic()
        if d > 0:
            time.sleep(d)
    s.close()


def health(api):
    return http_json(f"{api}/api/v1/health")


def api_round(name, d):
    """GET /api/v1/health at API_RATE for API_S seconds while uploads make events."""
    stop, counter = threading.Event(), [0]
    pub0 = (health(d["api"]).get("fleet") or {}).get("published")
    cpu0 = cpu_s(d["pid"])
    th = threading.Thread(target=uploads, args=(d["backup"], EVENT_RATE, API_S, stop, counter),
                          daemon=True)
    t0 = time.monotonic()
    th.start()
    lg = subprocess.run([LOADGEN, "http", "-r", str(API_RATE), "-d", str(API_S), "--tag", name,
                         f"{d['api']}/api/v1/health"], capture_output=True, timeout=60)
    stop.set()
    th.join()
    dt = time.monotonic() - t0
    cpu = cpu_s(d["pid"]) - cpu0
    pub1 = (health(d["api"]).get("fleet") or {}).get("published")
    r = json.loads(lg.stdout.decode().strip().splitlines()[-1])
    return {"p50": r["lat_us"]["p50"], "p99": r["lat_us"]["p99"], "max": r["lat_us"]["max"],
            "requests": r["requests"], "errors": r["errors"], "uploads": counter[0], "dt": dt,
            "published": None if pub0 is None else pub1 - pub0, "cpu": cpu}


def main():
    log(f"starting {N} daemons")
    started = [start_daemon(f"n{i:02d}", True, PREFIX, ("role=bench", f"zone={'ab'[i % 2]}"))
               for i in range(N)]
    apis = [read_ready(p, fd) for p, fd in started]
    pids = [p.pid for p, _ in started]
    end = time.monotonic() + 60
    while True:
        states = [(health(a).get("fleet") or {}).get("state") for a in apis]
        if all(s == "connected" for s in states):
            break
        if time.monotonic() > end:
            raise SystemExit(f"nodes not connected after 60 s: {states}")
        time.sleep(0.2)
    log(f"{N} nodes connected after {time.monotonic() - START:.1f} s")

    # The API pair: the same daemon with a bridge (a fleet of its own on the same broker) and
    # without; each with a backup listener whose uploads are events.
    pair = {}
    for name, amqp in (("bridge", True), ("plain", False)):
        p, fd = start_daemon(f"api-{name}", amqp, PREFIX + "-api", ("role=api",),
                             E["FLEET_PAIR_DIR"])
        api = read_ready(p, fd)
        res = http_json(f"{api}/api/v1/listeners", "POST", json.dumps(
            {"id": "bk", "service": "backup", "address": "127.0.0.1", "port": 0,
             "model": "thread"}).encode())
        port = int(res["status"]["bound"][0].rsplit(":", 1)[1])
        pair[name] = {"api": api, "pid": p.pid, "backup": port}

    w = Watcher()
    w.pump(0.2)
    pairs = free_port_pairs(ROUNDS + 1)
    warm = apply_round(w, pairs[0], pids)  # creates the listeners: not counted
    if warm is None:
        raise SystemExit("the warm-up apply did not converge")
    applies, api = [], {"bridge": [], "plain": []}
    for r in range(ROUNDS):
        if time.monotonic() > DEADLINE:
            log(f"time is up after {r} rounds")
            break
        variants = ["apply", "bridge", "plain"]
        random.shuffle(variants)
        for v in variants:
            if v == "apply":
                a = apply_round(w, pairs[r + 1], pids)
                if a:
                    applies.append(a)
                    log(f"round {r + 1}: apply converged in {a['from_record'] * 1000:.0f} ms "
                        f"({a['results']}, exit {a['exit']})")
            else:
                a = api_round(v, pair[v])
                api[v].append(a)
                log(f"round {r + 1}: API {v}: p99 {a['p99']:.0f} us, {a['uploads']} uploads, "
                    f"published {a['published']}")
    w.conn.close()
    report(applies, api)


def report(applies, api):
    L = []
    L.append("## Fleet over RabbitMQ (bench/fleet.sh)")
    L.append("")
    L.append(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit: "
             + subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip())
    end_load = " ".join(open("/proc/loadavg").read().split()[:3])
    L.append(f"- machine: {os.cpu_count()} CPUs; load average {E['FLEET_LOAD_BEFORE']} at the "
             f"start, {end_load} at the end (other work shares the machine: read the figures "
             "with it)")
    L.append(f"- fleet: {N} daemons (`--no-defaults`, `--amqp`, own node names, labels "
             "`role=bench`, `zone=a|b`), one private RabbitMQ 3.10 broker; two listeners per "
             "node (`echo` and `date`, TCP, model `event`: SO_REUSEPORT lets every node take "
             "the same ports); nothing pinned")
    L.append(f"- method: {len(applies)} rounds, each running the variants (an apply, the API "
             "with the bridge, the API without it) in a random order; the API pair keeps its "
             "state in " + ("memory (/dev/shm)" if E["FLEET_PAIR_DIR"].startswith("/dev/shm")
                            else "/tmp"))
    L.append("")
    if applies:
        fr = [a["from_record"] * 1000 for a in applies]
        fs = [a["from_start"] * 1000 for a in applies]
        cl = [a["cli"] * 1000 for a in applies]
        cpu = statistics.median(a["cpu"] for a in applies)
        L.append("### `sockserv fleet apply --all`: every node moves its two listeners")
        L.append("")
        L.append("| measured | p50 ms | p99 ms | max ms |")
        L.append("|---|---:|---:|---:|")
        L.append(f"| record on the broker → last node's answer | {pct(fr, .5):.0f} | "
                 f"{pct(fr, .99):.0f} | {max(fr):.0f} |")
        L.append(f"| command started → last node's answer | {pct(fs, .5):.0f} | "
                 f"{pct(fs, .99):.0f} | {max(fs):.0f} |")
        L.append(f"| the command's run (connect, find the nodes, publish, wait, print) | "
                 f"{pct(cl, .5):.0f} | {pct(cl, .99):.0f} | {max(cl):.0f} |")
        L.append("")
        L.append(f"Results: {sorted({r for a in applies for r in a['results']})}; exit codes "
                 f"{sorted({a['exit'] for a in applies})}. CPU per apply, the {N} nodes and the "
                 f"broker together: {cpu * 1000:.0f} ms (median), {cpu * 1000 / N:.1f} ms per "
                 f"node. Goal: under 2 s: **{'met' if max(fr) < 2000 else 'not met'}** "
                 f"(max {max(fr):.0f} ms from the record).")
        L.append("")
    if api["bridge"] and api["plain"]:
        L.append(f"### REST API beside the bridge: GET /api/v1/health at {API_RATE}/s, open "
                 f"loop, {API_S:g} s per round, with {EVENT_RATE} uploads/s to a backup "
                 "listener (one `backup.stored` event each)")
        L.append("")
        L.append("| daemon | p50 us | p99 us | max us | requests | errors | uploads/s | "
                 "events published/s | CPU ms/s | CPU us per upload |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        med = {}
        for v, label in (("bridge", "with `--amqp` (the bridge publishes)"),
                         ("plain", "without `--amqp`")):
            rs = api[v]
            m = {k: statistics.median(r[k] for r in rs) for k in
                 ("p50", "p99", "max", "requests", "errors")}
            up = statistics.median(r["uploads"] / r["dt"] for r in rs)
            pub = ("-" if rs[0]["published"] is None else
                   f"{statistics.median(r['published'] / r['dt'] for r in rs):.0f}")
            cps = statistics.median(r["cpu"] / r["dt"] for r in rs)
            cpu_up = statistics.median(r["cpu"] / max(1, r["uploads"]) for r in rs)
            med[v] = m["p99"]
            L.append(f"| {label} | {m['p50']:.0f} | {m['p99']:.0f} | {m['max']:.0f} | "
                     f"{m['requests']:.0f} | {m['errors']:.0f} | {up:.0f} | {pub} | "
                     f"{cps * 1000:.0f} | {cpu_up * 1e6:.0f} |")
        ratios = [b["p99"] / p["p99"] for b, p in zip(api["bridge"], api["plain"]) if p["p99"]]
        per_event = [(b["cpu"] / max(1, b["uploads"]) - p["cpu"] / max(1, p["uploads"])) * 1e6
                     for b, p in zip(api["bridge"], api["plain"])]
        L.append("")
        L.append(f"Medians over the rounds; p99 with the bridge ÷ without, median of the "
                 f"per-round ratios: **{statistics.median(ratios):.2f}** "
                 f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}); p50 with ÷ without: "
                 f"{statistics.median(b['p50'] / p['p50'] for b, p in zip(api['bridge'], api['plain'])):.2f}. "
                 "The events per second are the bridge's `published` counter (health), which "
                 "the broker confirmed as it went. The bridge's CPU per event (CPU per upload "
                 f"with − without, median of the rounds): {statistics.median(per_event):.0f} us.")
        load = float(E["FLEET_LOAD_BEFORE"].split()[0])
        if load > (os.cpu_count() or 1):
            L.append("")
            L.append(f"The machine was busy with other work (load average {load:.1f} on "
                     f"{os.cpu_count()} CPUs): a p99 then measures the scheduler's delays more "
                     "than the daemon, and the per-round ratios scatter both ways; judge \"the "
                     "bridge costs the API no latency\" on the p50s and on a quiet machine.")
        L.append("")
    text = "\n".join(L) + "\n"
    out = E["FLEET_OUT"]
    old = open(out).read() if os.path.exists(out) else ""
    head = "## Fleet over RabbitMQ (bench/fleet.sh)"
    if head in old:
        before, rest = old.split(head, 1)
        nxt = rest.find("\n## ")
        old = before + (rest[nxt + 1:] if nxt >= 0 else "")
    with open(out, "w") as f:
        f.write(old.rstrip("\n") + "\n\n" + text if old.strip() else text)
    print(text)


def on_term(*_):
    raise SystemExit("stopped")


signal.signal(signal.SIGTERM, on_term)
try:
    main()
finally:
    stop_all()
PY
PYPID=$!
st=0
wait "$PYPID" || st=$?
PYPID=""
echo "fleet.sh: done in $((SECONDS - T0)) s (exit $st)" >&2
exit "$st"
