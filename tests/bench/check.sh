#!/usr/bin/env bash
# tests/bench/check.sh: the benchmark scripts' own failure paths, in under a minute.
#
#   tests/bench/check.sh [BUILD_DIR]
#
# - a server that answers nothing (BENCH_FAULT=noanswer: the epoll reference on a closed port)
#   makes `bench/run.sh --quick` exit non-zero, with the failed round in its table;
# - a figure that cannot be read (BENCH_FAULT=nocpu) makes it exit non-zero with "missing";
# - a run where everything answers exits 0, every figure produced;
# - a tree with uncommitted changes is refused without --quick, and measured with --allow-dirty,
#   the results saying so;
# - bench/backup.sh fails on a failed transfer (BENCH_FAULT=noanswer) and says which.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
TMP=$(mktemp -d /tmp/sockserv-benchcheck.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok - $*"; }
not_ok() {
    echo "not ok - $*"
    fails=$((fails + 1))
}
# a quick run of the TCP echo on the event model and the references only, 50 connections
small() {
    BENCH_MODELS=event BENCH_CONNS=50 BENCH_DURATION=0.2 "$ROOT/bench/run.sh" --quick --build "$BUILD" "$@"
}

# 1. a server that answers nothing: a failed round, counted, and the run fails
rc=0
BENCH_FAULT=noanswer small --only tcp --out "$TMP/noanswer.md" >/dev/null 2>"$TMP/noanswer.err" || rc=$?
if [ "$rc" != 0 ] && grep -q '^| ref | missing' "$TMP/noanswer.md" &&
    grep -q 'FAILED: 1 of 1 round(s) failed' "$TMP/noanswer.md" &&
    grep -q 'failed: TCP ref 50×64 B round 1' "$TMP/noanswer.md"; then
    ok "run.sh: a server that answers nothing fails the comparison and the run (exit $rc)"
else
    not_ok "run.sh: BENCH_FAULT=noanswer: exit $rc"
    cat "$TMP/noanswer.md" "$TMP/noanswer.err" 2>/dev/null | tail -n 30 || true
fi

# 2. a figure that cannot be read: missing, and the run fails
rc=0
BENCH_FAULT=nocpu small --only tcp --out "$TMP/nocpu.md" >/dev/null 2>"$TMP/nocpu.err" || rc=$?
if [ "$rc" != 0 ] && grep -q 'missing: TCP event 50×64 B round 1: CPU time' "$TMP/nocpu.md" &&
    grep -q '| every measurement answered and every figure produced | .* | FAILED' "$TMP/nocpu.md"; then
    ok "run.sh: a CPU reading that fails is missing and fails the run (exit $rc)"
else
    not_ok "run.sh: BENCH_FAULT=nocpu: exit $rc"
    cat "$TMP/nocpu.md" "$TMP/nocpu.err" 2>/dev/null | tail -n 30 || true
fi

# 3. everything answers: exit 0, every figure there (rate, CPU, syscalls beside each rate)
rc=0
small --only tcp,udp --out "$TMP/good.md" >/dev/null 2>"$TMP/good.err" || rc=$?
if [ "$rc" = 0 ] && ! grep -q '^- missing: \|^- failed: \| missing |\|FAILED' "$TMP/good.md" &&
    grep -Eq '^\| event \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \|' "$TMP/good.md" &&
    grep -Eq '^\| 64 \| sockserv \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \|' "$TMP/good.md" &&
    grep -q '| every measurement answered and every figure produced | 0 missing, 0 failed | | met |' "$TMP/good.md"; then
    ok "run.sh: a run where everything answers exits 0 with every figure"
else
    not_ok "run.sh: a good run: exit $rc"
    cat "$TMP/good.md" "$TMP/good.err" 2>/dev/null | tail -n 30 || true
fi

# 4. a dirty tree: refused without --quick; --allow-dirty measures it and says so
git clone -q "$ROOT" "$TMP/repo"
cp "$ROOT/bench/run.sh" "$TMP/repo/bench/run.sh" # the script under test, committed there
git -C "$TMP/repo" -c user.name=check -c user.email=check@localhost commit -qam "run.sh under test" || true
echo change >"$TMP/repo/uncommitted.txt"
rc=0
"$TMP/repo/bench/run.sh" --build "$BUILD" --out "$TMP/dirty.md" >/dev/null 2>"$TMP/dirty.err" || rc=$?
if [ "$rc" = 2 ] && [ ! -e "$TMP/dirty.md" ] && grep -q 'refusing to measure a tree with uncommitted changes' "$TMP/dirty.err"; then
    ok "run.sh: a dirty tree is refused (exit 2, nothing written)"
else
    not_ok "run.sh: a dirty tree: exit $rc"
    tail -n 10 "$TMP/dirty.err" || true
fi
rc=0
BENCH_MODELS=event BENCH_CONNS=1 BENCH_DURATION=0.2 BENCH_REPS=1 "$TMP/repo/bench/run.sh" --allow-dirty \
    --only tcp --build "$BUILD" --out "$TMP/dirty.md" >/dev/null 2>"$TMP/dirty.err" || rc=$?
if [ "$rc" = 0 ] && grep -q '^- commit: [0-9a-f]* with uncommitted changes (NOT the committed tree, --allow-dirty)' "$TMP/dirty.md"; then
    ok "run.sh --allow-dirty: measured, and the results say the tree was dirty"
else
    not_ok "run.sh --allow-dirty: exit $rc"
    cat "$TMP/dirty.md" "$TMP/dirty.err" 2>/dev/null | tail -n 20 || true
fi

# 5. backup.sh: a failed transfer is a failed round, and the script fails
rc=0
BENCH_FAULT=noanswer "$ROOT/bench/backup.sh" --build "$BUILD" --size 1048576 --rounds 1 --no-tls \
    --budget 30 >"$TMP/backup.md" 2>"$TMP/backup.err" || rc=$?
if [ "$rc" != 0 ] && grep -q '^| get | missing | missing | missing | missing | missing | 1 of 1 |' "$TMP/backup.md" &&
    grep -q 'FAILED: get: 1 of 1 round(s) failed' "$TMP/backup.md"; then
    ok "backup.sh: a failed transfer fails the script (exit $rc)"
else
    not_ok "backup.sh: BENCH_FAULT=noanswer: exit $rc"
    cat "$TMP/backup.md" "$TMP/backup.err" 2>/dev/null | tail -n 20 || true
fi

[ "$fails" = 0 ] || { echo "tests/bench/check.sh: $fails check(s) failed" >&2; exit 1; }
echo "tests/bench/check.sh: every check passed"
