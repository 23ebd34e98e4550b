#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan+UBSan) and, for each target, first
# replays its committed inputs (tests/fuzz/corpus/<target>/ and tests/fuzz/regressions/<target>/),
# then fuzzes it for a bounded time. New inputs go to a scratch corpus under the build directory,
# never into the repository. Exits non-zero, naming the input, at the first failure.
#
# Usage: scripts/fuzz.sh [TARGET...]          (default: every target)
# Environment:
#   FUZZ_SECONDS    seconds of fuzzing per target (default 20; 0: replay only)
#   FUZZ_BUILD_DIR  the build directory (default build-fuzz, configured if missing)
#   FUZZ_ARGS       more libFuzzer options, e.g. "-jobs=2" or "-only_ascii=1"
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

seconds=${FUZZ_SECONDS:-20}
build=${FUZZ_BUILD_DIR:-build-fuzz}
read -r -a extra <<<"${FUZZ_ARGS:-}"
all_targets=(fuzz_backup_header fuzz_backup_session fuzz_config fuzz_datagram fuzz_fleet fuzz_guard fuzz_routes fuzz_tzif)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

for t in "${targets[@]}"; do
    [ -f "tests/fuzz/$t.c" ] || { echo "fuzz: no target $t (tests/fuzz/$t.c)" >&2; exit 2; }
done

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$src" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debug -Doptimization=1 >/dev/null
fi
meson compile -C "$build" "${targets[@]}"

# Sanitizer findings must stop the run (UBSan only reports by default).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# An input runs in a millisecond or so; -timeout is OSS-Fuzz's 25 s, so that a machine shared
# with other jobs (a process descheduled for seconds) does not pass for a hang. A hang still
# fails, and a slow input is reported (-report_slow_units, 10 s) in the log.
common=(-timeout=25 -rss_limit_mb=1024 -print_final_stats=1)

# The input of a failed run, from libFuzzer's log: the artifact it wrote, else the file it ran.
failed_input() { # LOG
    local unit
    unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$1" | tail -n 1)
    [ -n "$unit" ] || unit=$(sed -n 's/^Running: \(.*\)$/\1/p' "$1" | tail -n 1)
    echo "${unit:-unknown}"
}

fail() { # TARGET LOG WHAT
    echo "fuzz: $1: $3 failed; log: $2" >&2
    tail -n 40 "$2" >&2
    echo "fuzz: $1: failing input: $(failed_input "$2")" >&2
    echo "fuzz: reproduce with: $build/tests/fuzz/$1 $(failed_input "$2")" >&2
    exit 1
}

for t in "${targets[@]}"; do
    exe="$build/tests/fuzz/$t"
    work="$build/fuzz/$t"
    mkdir -p "$work/corpus" "$work/artifacts"
    dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    dirs=()
    for d in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do
        [ -d "$d" ] && dirs+=("$d")
    done

    # Every committed input, one run each.
    mapfile -t inputs < <(find "${dirs[@]}" -type f ! -name '.*' ! -name 'README*' | sort)
    echo "== $t: replaying ${#inputs[@]} committed inputs"
    if [ ${#inputs[@]} -gt 0 ] &&
        ! "$exe" "${common[@]}" -artifact_prefix="$work/artifacts/" "${dict[@]}" "${inputs[@]}" \
            >"$work/replay.log" 2>&1; then
        fail "$t" "$work/replay.log" "replay"
    fi

    [ "$seconds" -gt 0 ] || continue
    echo "== $t: fuzzing for ${seconds}s"
    if ! "$exe" "${common[@]}" -max_total_time="$seconds" -artifact_prefix="$work/artifacts/" \
        "${dict[@]}" "${extra[@]}" "$work/corpus" "${dirs[@]}" >"$work/fuzz.log" 2>&1; then
        fail "$t" "$work/fuzz.log" "fuzzing"
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$work/fuzz.log" | tail -n 1 | sed "s|^|   $t: |" || true
done
echo "fuzz: ${#targets[@]} targets passed (src: $src, build: $build)"
