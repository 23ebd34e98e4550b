#!/usr/bin/env bash
# Runs the dashboard's end-to-end tests (tests/e2e/*.test.mjs) in headless Chromium, driven by
# playwright-core from package-lock.json. Installs what is missing first: Debian's nodejs, npm,
# chromium and a font, then `npm ci` when node_modules is missing or older than the lock file.
#
# Prints how many tests ran, skipped (and why) and failed (scripts/test_report.py): with CI=true
# a skip that tests/skips.txt does not allow fails the run, as in scripts/test.sh.
#
# SOCKSERV_BIN     the daemon to test (default build/sockserv)
# SOCKSERV_BUILD_DIR  where e2e-screenshots/ goes (default build)
# SOCKSERV_TEST_AMQP, SOCKSERV_TEST_BROKER  the broker of the fleet's pages (scripts/test.sh's;
#                  when they are not set, a private one runs for this script: scripts/broker.sh run)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SOCKSERV_TEST_BROKER:-}" ] && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    exec scripts/broker.sh run scripts/e2e.sh "$@"
fi
root=$PWD

export SOCKSERV_BIN="${SOCKSERV_BIN:-$root/build/sockserv}"
export SOCKSERV_BUILD_DIR="${SOCKSERV_BUILD_DIR:-$root/build}"
chromium_bin=/usr/bin/chromium

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -x "$chromium_bin" ] || missing+=(chromium)
installed fonts-dejavu-core || missing+=(fonts-dejavu-core)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "sockserv e2e: installing ${missing[*]}" >&2
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "sockserv e2e: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update </dev/null
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
    echo "sockserv e2e: Node.js 18 or later is needed, found $(node --version)" >&2
    exit 1
fi

export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "sockserv e2e: npm ci" >&2
    npm ci --no-audit --no-fund </dev/null
fi

if [ ! -x "$SOCKSERV_BIN" ]; then
    echo "sockserv e2e: no daemon at $SOCKSERV_BIN (build it first, or set SOCKSERV_BIN)" >&2
    exit 1
fi

mkdir -p "$SOCKSERV_BUILD_DIR/e2e-screenshots"
echo "== end-to-end tests of the dashboard (headless Chromium; screenshots in $SOCKSERV_BUILD_DIR/e2e-screenshots) and the OpenAPI contract"
tap="$SOCKSERV_BUILD_DIR/e2e-tap.txt"
rc=0
node --test --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    tests/e2e/*.test.mjs tests/contract/*.test.mjs </dev/null || rc=$?
scripts/test_report.py tap e2e "$tap" || rc=1
exit "$rc"
