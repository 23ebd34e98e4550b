#!/usr/bin/env bash
# Installs what is missing, builds sockserv, and runs every test suite: formatting, unit and
# integration tests and the replay of the fuzz inputs, then the same under
# AddressSanitizer+UndefinedBehaviorSanitizer and under ThreadSanitizer; then each libFuzzer
# target for FUZZ_SECONDS (default 20: about 3 minutes with the build, of a budget of 15 for
# the whole script); then the dashboard in headless Chromium and the API against its OpenAPI
# contract (scripts/e2e.sh).
#
# After each build's tests it prints how many ran, skipped (and why) and failed
# (scripts/test_report.py). A skipped test is not a pass: with CI=true, a skip that
# tests/skips.txt does not allow (for that build, under a condition that holds here) fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test

# The run's broker: this script runs again under scripts/broker.sh run, which stops the broker
# when it ends, whatever its end.
if [ -z "${SOCKSERV_TEST_BROKER:-}" ]; then
    echo "== broker (scripts/broker.sh run)"
    exec scripts/broker.sh run scripts/test.sh "$@"
fi

echo "== format (clang-format --dry-run --Werror)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

run_suite() { # BUILD_DIR MESON_OPTIONS... (SUITE_ARGS: more arguments of meson test)
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" -Dtests=true "$@" >/dev/null
    else
        meson setup "$dir" -Dtests=true "$@" >/dev/null
    fi
    meson compile -C "$dir"
    local rc=0
    # shellcheck disable=SC2086 # SUITE_ARGS is words
    meson test -C "$dir" --print-errorlogs --num-processes 2 ${SUITE_ARGS:-} || rc=$?
    scripts/test_report.py meson "$dir" || rc=1
    return "$rc"
}

echo "== tests"
# -Dman=enabled: the manual pages are built, so the suite docs (pages, --help, install) runs
run_suite build -Dman=enabled

echo "== tests under ASan+UBSan"
# The suite docs checks files, not code: the plain build's run is enough.
SUITE_ARGS="--no-suite docs" \
    ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_suite build-asan -Db_sanitize=address,undefined -Dbuildtype=debug

echo "== tests under TSan"
SUITE_ARGS="--no-suite docs" TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    run_suite build-tsan -Db_sanitize=thread -Dbuildtype=debug

echo "== fuzzing (scripts/fuzz.sh, ${FUZZ_SECONDS:-20} s per target)"
FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh

echo "== browser and contract tests"
SOCKSERV_BIN="$PWD/build/sockserv" SOCKSERV_BUILD_DIR="$PWD/build" scripts/e2e.sh

echo "== benchmark smoke run (bench/run.sh --quick: fails unless every figure is produced; figures in build/bench)"
bench/run.sh --quick --build "$PWD/build"

echo "== benchmark scripts' failure paths (tests/bench/check.sh)"
tests/bench/check.sh "$PWD/build"

echo "all suites passed"
