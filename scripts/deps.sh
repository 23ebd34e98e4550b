#!/usr/bin/env bash
# Installs the Debian packages sockserv needs that are missing. Sourced or run by run.sh and
# test.sh. Usage: scripts/deps.sh [build|test]
set -euo pipefail

# librabbitmq-dev: the fleet's broker connections (rabbitmq-c); liburing-dev: the uring model;
# libjemalloc-dev: the daemon's malloc (meson option allocator); scdoc: the manual pages (doc/)
build_pkgs=(gcc meson ninja-build pkg-config python3 libmicrohttpd-dev libjansson-dev
    libcurl4-openssl-dev libssl-dev librabbitmq-dev liburing-dev libjemalloc-dev tzdata scdoc)
# prometheus: promtool checks GET /metrics; socat, curl, iproute2: the benchmark smoke run;
# clang, libclang-rt-14-dev: the libFuzzer targets; strace: fault injection in test_faults;
# openssl: the certificates the HTTPS tests make; rabbitmq-server, amqp-tools, python3-pika: the
# private broker of the fleet tests (scripts/broker.sh), a peer that publishes by hand, and the
# subscriber example (scripts/fleet-subscribe.py); man-db: the docs suite renders each manual page
test_pkgs=(libcmocka-dev clang-format prometheus socat curl iproute2 clang libclang-rt-14-dev strace
    openssl rabbitmq-server amqp-tools python3-pika man-db)

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
    # The tests run private brokers (scripts/broker.sh): no system broker is to be started by the
    # package's install script (without systemd or a runlevel none is; elsewhere a policy-rc.d
    # that refuses every start keeps it so for the install).
    policy=/usr/sbin/policy-rc.d
    added_policy=false
    if [[ " ${missing[*]} " == *" rabbitmq-server "* ]] && [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        added_policy=true
        trap '"${sudo[@]}" rm -f "$policy"' EXIT
    fi
    "${sudo[@]}" apt-get update </dev/null
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
    if "$added_policy"; then
        "${sudo[@]}" rm -f "$policy"
        trap - EXIT
    fi
fi
