#!/usr/bin/env bash
# Installs what is missing, builds sockserv, and runs the daemon with its embedded defaults.
# Arguments go to `sockserv daemon` (e.g. --api 127.0.0.1:8400 --state-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
[ -f build/build.ninja ] || meson setup build -Dtests=false
meson compile -C build sockserv:executable
exec build/sockserv daemon "$@"
