#!/usr/bin/env bash
# Installs the Debian packages sockserv needs that are missing. Sourced or run by run.sh and
# test.sh. Usage: scripts/deps.sh [build|test]
set -euo pipefail

build_pkgs=(gcc meson ninja-build pkg-config python3 libmicrohttpd-dev libjansson-dev
    libcurl4-openssl-dev libssl-dev tzdata)
# prometheus: promtool checks GET /metrics; socat, curl, iproute2: the benchmark smoke run;
# clang, libclang-rt-14-dev: the libFuzzer targets; strace: fault injection in test_faults;
# openssl: the certificates the HTTPS tests make
test_pkgs=(libcmocka-dev clang-format prometheus socat curl iproute2 clang libclang-rt-14-dev strace
    openssl)

want=("${build_pkgs[@]}")
if [ "${1:-build}" = test ]; then
    want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "sockserv: installing ${missing[*]}" >&2
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "sockserv: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
