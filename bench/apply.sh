#!/usr/bin/env bash
# bench/apply.sh: applying a whole configuration, sockserv (PUT /api/v1/config) side by side
# with Caddy 2 (POST /load), in one run; the order is random in every round, every round is
# printed, and any figure missing fails the run.
#
#   bench/apply.sh [--build DIR] [--quick] [--rounds N] [--budget SECONDS]
#
# --build   the meson build directory holding sockserv (default: build/)
# --quick   one round, N = 20 instead of 100 and 250 (a smoke run, <= 60 s)
# --rounds  rounds (default 5)
# --budget  stop starting rounds after this many seconds (default 240)
#
# Rows (each a sockserv apply and a Caddy apply of the same shape):
#   move-N     N listeners move to N new ports (sockserv: echo, TCP, model event, one loop each;
#              Caddy: N servers, one listener each, a static_response route); the set of N was
#              applied before, untimed
#   create-N   N listeners from an empty set
#   field-N    one field of one listener changes in a set of N (sockserv: PUT of the whole
#              configuration with that listener's max_connections changed; Caddy: /load of the
#              N servers with one static_response body changed)
#   field-1    the same in a set of 1: the cost of a change should follow what changes, not the set
# The time is the client's, from the request to the last byte of the answer (the daemon answers
# once the state file is written and synced; sockserv is sent `Prefer: return=minimal`, so it
# answers the revision and the diff without every listener's resource, as Caddy answers
# nothing), 0.3 s after the untimed apply that sets the case up. After every apply every new
# port is checked to answer (an echo line; an HTTP 200). The servers run on CPU 0, the client
# on CPU 1. Each case runs twice per round: timed with no profiler attached, then again for
# the server's CPU per apply, the task-clock of every thread of the server over the request
# (`perf stat -e task-clock -p PID`, enabled and disabled around it through perf's control
# fifo; threads that start or end meanwhile included), a median over rounds. Caddy is
# installed from Debian when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
ROUNDS=5
BUDGET=240
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=$2; shift ;;
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "apply.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$QUICK" = 1 ] && { ROUNDS=1; BUDGET=45; }
if ! command -v caddy >/dev/null; then
    echo "apply.sh: installing caddy (Debian)" >&2
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends caddy >&2
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends caddy >&2
    fi
fi
for t in caddy taskset python3 perf; do
    command -v "$t" >/dev/null || { echo "apply.sh: $t is needed" >&2; exit 1; }
done
SOCKSERV=$BUILD/sockserv
[ -x "$SOCKSERV" ] || { echo "apply.sh: no $SOCKSERV (meson compile -C $BUILD)" >&2; exit 1; }
if ! perf stat -e task-clock -x, -o /dev/null true 2>/dev/null; then
    echo "apply.sh: perf cannot count task-clock here (perf_event_paranoid?)" >&2
    exit 1
fi
mkdir -p "$BUILD/bench"
TMP=$(mktemp -d "$BUILD/bench/apply.XXXXXX")
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (uncommitted changes)" || true)
export APPLY_SOCKSERV=$SOCKSERV APPLY_TMP=$TMP APPLY_ROUNDS=$ROUNDS APPLY_BUDGET=$BUDGET
export APPLY_QUICK=$QUICK APPLY_COMMIT="$COMMIT$DIRTY" APPLY_CADDY_VERSION="$(caddy version | cut -d' ' -f1)"

python3 - <<'PY'
import http.client, json, os, random, signal, socket, statistics, subprocess, sys, time

SOCKSERV = os.environ["APPLY_SOCKSERV"]
TMP = os.environ["APPLY_TMP"]
ROUNDS = int(os.environ["APPLY_ROUNDS"])
BUDGET = float(os.environ["APPLY_BUDGET"])
QUICK = os.environ["APPLY_QUICK"] == "1"
SIZES = [20] if QUICK else [100, 250]
BIG = SIZES[-1]
SRV_CPU, CL_CPU = (0, 1) if os.cpu_count() >= 2 else (0, 0)
if SRV_CPU == CL_CPU:
    print("apply.sh: one CPU: figures not comparable", file=sys.stderr)
procs = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def uptime():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class CpuWindow:
    """perf stat -e task-clock on every thread of pid, counting only between enable() and
    disable() (perf's control fifo), the threads started meanwhile included."""
    seq = 0

    def __init__(self, pid):
        CpuWindow.seq += 1
        d = os.path.join(TMP, f"perf{CpuWindow.seq}")
        os.makedirs(d)
        self.ctl, self.ack, self.out = (os.path.join(d, n) for n in ("ctl", "ack", "out"))
        os.mkfifo(self.ctl)
        os.mkfifo(self.ack)
        self.err = os.path.join(d, "err")
        self.proc = subprocess.Popen(
            ["perf", "stat", "-e", "task-clock", "-x,", "-p", str(pid), "--control",
             f"fifo:{self.ctl},{self.ack}", "-D", "-1", "-o", self.out],
            stdout=subprocess.DEVNULL, stderr=open(self.err, "w"))
        # perf counts the threads started after it attached: let it attach first
        deadline_poll("perf stat did not start", lambda: "Events disabled" in open(self.err).read())
        self.ctl_f = open(self.ctl, "w")
        self.ack_f = open(self.ack, "r")

    def _say(self, what):
        self.ctl_f.write(what + "\n")
        self.ctl_f.flush()
        # perf answers "ack\n" with its terminating NUL, which the next line starts with
        if self.ack_f.readline().strip("\0 \n") != "ack":
            raise SystemExit(f"apply.sh: perf stat did not acknowledge {what}")

    def enable(self):
        self._say("enable")

    def disable(self):
        self._say("disable")

    def ms(self):
        """Stops perf; the task-clock counted, in ms."""
        self.ctl_f.close()
        self.ack_f.close()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=20)
        with open(self.out) as f:
            for line in f:
                v = line.split(",")
                if len(v) > 2 and v[2] == "task-clock":
                    return float(v[0])
        raise SystemExit("apply.sh: perf stat counted no task-clock")


def free_ports(n):
    """n distinct ports the kernel gives now (bound all at once, then let go)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def request(port, method, path, body=None, timeout=30, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(headers or {})
        if data is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        text = r.read()
        return r.status, text
    finally:
        c.close()


def deadline_poll(what, fn, seconds=15):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if fn():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"apply.sh: {what}")


# ---- the servers, on CPU 0 ----
def start_sockserv():
    state = os.path.join(TMP, "state")
    os.makedirs(state)
    r, w = os.pipe()
    p = subprocess.Popen(["taskset", "-c", str(SRV_CPU), SOCKSERV, "daemon", "--api", "127.0.0.1:0",
                          "--state-dir", state, "--no-defaults", "--ready-fd", str(w)],
                         pass_fds=(w,), stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(TMP, "sockserv.log"), "w"))
    procs.append(p)
    os.close(w)
    line = b""
    end = time.monotonic() + 15
    while not line.endswith(b"\n") and time.monotonic() < end:
        chunk = os.read(r, 256)
        if not chunk:
            break
        line += chunk
    os.close(r)
    if not line.startswith(b"http://"):
        raise SystemExit("apply.sh: sockserv did not start")
    return p, int(line.decode().strip().rsplit(":", 1)[1].rstrip("/"))


def caddy_config(admin, servers):
    return {
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "storage": {"module": "file_system", "root": os.path.join(TMP, "caddy-storage")},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "apps": {"http": {"servers": {
            f"s{i}": {"listen": [f"127.0.0.1:{port}"],
                      "automatic_https": {"disable": True},
                      "routes": [{"handle": [{"handler": "static_response", "body": body}]}]}
            for i, (port, body) in enumerate(servers)}}},
    }


def start_caddy():
    admin = free_ports(1)[0]
    home = os.path.join(TMP, "caddy-home")
    os.makedirs(home)
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, "config"),
               XDG_DATA_HOME=os.path.join(home, "data"), XDG_CACHE_HOME=os.path.join(home, "cache"))
    cfg = os.path.join(TMP, "caddy.json")
    with open(cfg, "w") as f:
        json.dump(caddy_config(admin, []), f)
    p = subprocess.Popen(["taskset", "-c", str(SRV_CPU), "caddy", "run", "--config", cfg],
                         env=env, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(TMP, "caddy.log"), "w"))
    procs.append(p)
    deadline_poll("caddy did not start", lambda: request(admin, "GET", "/config/")[0] == 200)
    return p, admin


# ---- the two ways to apply a set ----
def ss_listener(i, port, max_conn=1024):
    return {"id": f"e{i}", "service": "echo", "transport": "tcp", "address": "127.0.0.1",
            "port": port, "model": "event", "workers": 1, "max_connections": max_conn}


class Sockserv:
    name = "sockserv"

    def __init__(self):
        self.proc, self.api = start_sockserv()

    def apply(self, items):
        """items: [(port, variant)]"""
        body = {"listeners": [ss_listener(i, port, 1024 + v) for i, (port, v) in enumerate(items)]}
        # Caddy's /load answers nothing; sockserv is asked for the revision and the diff alone
        st, text = request(self.api, "PUT", "/api/v1/config", body,
                           headers={"Prefer": "return=minimal"})
        if st != 200:
            raise SystemExit(f"apply.sh: sockserv PUT /api/v1/config: {st} {text[:300]!r}")

    def answers(self, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"ping\n")
            got = b""
            while not got.endswith(b"\n"):
                chunk = s.recv(64)
                if not chunk:
                    break
                got += chunk
            return got == b"ping\n"


class Caddy:
    name = "caddy"

    def __init__(self):
        self.proc, self.admin = start_caddy()

    def apply(self, items):
        cfg = caddy_config(self.admin, [(port, f"ok{v}") for port, v in items])
        st, text = request(self.admin, "POST", "/load", cfg)
        if st != 200:
            raise SystemExit(f"apply.sh: caddy POST /load: {st} {text[:300]!r}")

    def answers(self, port):
        st, _ = request(port, "GET", "/", timeout=5)
        return st == 200


def check_all(server, ports):
    # A port may take a moment after the answer for Caddy (its servers start listening as
    # the new config is loaded, before the answer); poll, with a deadline.
    for port in ports:
        deadline_poll(f"{server.name}: port {port} does not answer after the apply",
                      lambda: server.answers(port), 10)


# After the untimed set-up apply, both servers get this long before the measured one: what an
# apply leaves to do after its answer (old runners or servers ending, a collector) is its own,
# not the next apply's.
SETTLE_S = 0.3


def setup(server, kind, n):
    """Applies the set before (untimed); returns the set the measured apply makes."""
    if kind == "move":
        server.apply([(p, 0) for p in free_ports(n)])
        after = [(p, 0) for p in free_ports(n)]
    elif kind == "create":
        server.apply([])
        after = [(p, 0) for p in free_ports(n)]
    else:  # field
        before = [(p, 0) for p in free_ports(n)]
        server.apply(before)
        after = list(before)
        after[n // 2] = (after[n // 2][0], 1)
    time.sleep(SETTLE_S)
    return after


def case(server, kind, n):
    """The case twice: timed with no profiler attached (perf's counters on every thread make
    each context switch dearer, more so for a server of many threads), then the same again
    with perf stat counting the server's CPU; the ports are checked after each."""
    after = setup(server, kind, n)
    t0 = time.perf_counter()
    server.apply(after)
    ms = (time.perf_counter() - t0) * 1000.0
    check_all(server, [p for p, _ in after])
    after = setup(server, kind, n)
    cpu = CpuWindow(server.proc.pid)
    time.sleep(SETTLE_S)
    cpu.enable()
    server.apply(after)
    cpu.disable()
    check_all(server, [p for p, _ in after])
    return ms, cpu.ms()


def main():
    os.sched_setaffinity(0, {CL_CPU})
    load0 = uptime()
    servers = [Sockserv(), Caddy()]
    cases = [("move", n) for n in SIZES] + [("create", BIG), ("field", BIG), ("field", 1)]
    res = {}  # (kind, n, server) -> [(ms, cpu)]
    lines = []
    t_start = time.monotonic()
    rounds = 0
    for rnd in range(1, ROUNDS + 1):
        if rnd > 1 and time.monotonic() - t_start > BUDGET:
            log(f"apply.sh: budget spent after {rnd - 1} rounds")
            break
        tasks = [(k, n, s) for k, n in cases for s in servers]
        random.shuffle(tasks)
        for k, n, s in tasks:
            ms, cpu = case(s, k, n)
            res.setdefault((k, n, s.name), []).append((ms, cpu))
            lines.append(f"| {rnd} | {k}-{n} | {s.name} | {ms:.1f} | {cpu:.1f} |")
            log(f"round {rnd}: {k}-{n} {s.name}: {ms:.1f} ms, cpu {cpu:.1f} ms")
        rounds += 1
    for s in servers:
        s.proc.send_signal(signal.SIGTERM)
    for s in servers:
        try:
            s.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
    load1 = uptime()

    out = []
    out.append("## Applying a configuration: sockserv PUT /api/v1/config vs Caddy POST /load")
    out.append("")
    out.append(f"Commit {os.environ['APPLY_COMMIT']}; Caddy {os.environ['APPLY_CADDY_VERSION']}; "
               f"{rounds} round(s), order random per round; servers on CPU {SRV_CPU}, client on "
               f"CPU {CL_CPU}; load average before {load0}, after {load1}. sockserv listeners: "
               "echo, TCP, model `event` (one loop); Caddy: one server per listener with a "
               "`static_response` route. Times are the client's (request to answer, 0.3 s after "
               "the untimed apply that sets the case up, no profiler attached; sockserv "
               "answers once the state file is synced, with `Prefer: return=minimal`: the "
               "revision and the diff, as Caddy answers nothing); CPU is the server's per apply "
               "in a second, identical apply (perf stat task-clock of all its threads over the "
               "request).")
    out.append("")
    out.append("| case | sockserv ms (median, range) | Caddy ms (median, range) | sockserv / Caddy "
               "| sockserv CPU ms | Caddy CPU ms |")
    out.append("|---|---|---|---|---|---|")
    missing = False
    for k, n in cases:
        row = [f"{k}-{n}"]
        meds = {}
        cpus = {}
        for s in ("sockserv", "caddy"):
            v = res.get((k, n, s), [])
            if len(v) != rounds or rounds == 0:
                missing = True
                row.append("missing")
                continue
            ms = [a for a, _ in v]
            meds[s] = statistics.median(ms)
            cpus[s] = statistics.median([c for _, c in v])
            row.append(f"{meds[s]:.1f} ({min(ms):.1f}–{max(ms):.1f})")
        row.append(f"{meds['sockserv'] / meds['caddy']:.2f}x" if len(meds) == 2 else "missing")
        row += [f"{cpus[s]:.1f}" if s in cpus else "missing" for s in ("sockserv", "caddy")]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("<details><summary>every round</summary>")
    out.append("")
    out.append("| round | case | server | ms | CPU ms |")
    out.append("|---|---|---|---|---|")
    out += lines
    out.append("")
    out.append("</details>")
    print("\n".join(out))
    if missing:
        log("apply.sh: a figure is missing")
        sys.exit(1)


try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
PY
