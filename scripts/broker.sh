#!/usr/bin/env bash
# A private RabbitMQ broker for the tests: its own data directory, node name, Erlang cookie and
# epmd, every socket on 127.0.0.1, no plugins. It never touches the system broker
# (/etc/rabbitmq, /var/lib/rabbitmq, epmd on 4369, AMQP on 5672).
#
#   scripts/broker.sh start DIR PORT      start one (AMQP on PORT; PORT..PORT+14 must be free) and
#                                         wait until it accepts connections; the data in DIR is
#                                         kept, so a restart with the same DIR and PORT keeps its
#                                         queues and streams. With BROKER_TLS_DIR=TDIR (holding
#                                         ca.pem, server.pem, server.key), also AMQP over TLS
#                                         (amqps) on PORT+14, client certificates verified when
#                                         given but not required
#   scripts/broker.sh stop DIR PORT       stop it (rabbitmqctl shutdown, else SIGKILL) and its
#                                         epmd; exit 0 when none ran
#   scripts/broker.sh ctl DIR PORT ARGS   rabbitmqctl ARGS with the broker's environment
#   scripts/broker.sh pid DIR PORT        the broker's process id (exit 1 when none runs)
#   scripts/broker.sh free-port [FROM [TO]]  the first PORT in FROM..TO (default 26000..29900, by
#                                         steps of 20) with PORT..PORT+14 free on 127.0.0.1
#   scripts/broker.sh run CMD [ARGS...]   starts one on free ports (from $BROKER_PORT_FROM, default
#                                         26000) with its data in a
#                                         new temporary directory, runs CMD with
#                                         SOCKSERV_TEST_AMQP=amqp://guest:guest@127.0.0.1:PORT/ and
#                                         SOCKSERV_TEST_BROKER="DIR PORT" in its environment, then
#                                         stops it and removes the directory, also when CMD fails
#                                         or is interrupted; exits with CMD's status (scripts/test.sh
#                                         runs itself so)
#
# Ports: AMQP PORT, Erlang distribution PORT+1, epmd PORT+2, the command-line tools PORT+3..+13,
# amqps PORT+14.
# With BROKER_OWNER_PID set, start also leaves a watcher that stops the broker once that process
# has ended (a test binary that owns a private broker and may be killed).
# What the server prints goes to DIR/server.out; its tail is printed when something fails.
set -euo pipefail

RMQ=${RABBITMQ_BIN_DIR:-/usr/lib/rabbitmq/bin}
script=$(readlink -f "$0")

usage() {
    echo "usage: broker.sh start|stop|pid DIR PORT | ctl DIR PORT ARGS... | free-port [FROM [TO]] | run CMD [ARGS...]" >&2
    exit 2
}

port_free() { # PORT: nothing listens on it (TCP) on any address
    ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

range_free() { # PORT: PORT..PORT+14 free
    local p
    for ((p = $1; p <= $1 + 14; p++)); do
        port_free "$p" || return 1
    done
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift

if [ "$cmd" = free-port ]; then
    from=${1:-26000} to=${2:-29900}
    for ((p = from; p <= to; p += 20)); do
        if range_free "$p"; then
            echo "$p"
            exit 0
        fi
    done
    echo "broker.sh: no free port range in $from..$to" >&2
    exit 1
fi

if [ "$cmd" = run ]; then
    [ $# -ge 1 ] || usage
    run_dir=$(mktemp -d "${TMPDIR:-/tmp}/sockserv-broker-XXXXXX")
    run_port=
    run_stop() {
        local rc=$?
        trap - EXIT INT TERM
        if [ -n "$run_port" ]; then
            if [ "$rc" -ne 0 ] && [ -s "$run_dir/server.out" ]; then
                echo "== the broker's log (last lines of $run_dir/server.out)" >&2
                tail -20 "$run_dir/server.out" >&2 || true
            fi
            "$script" stop "$run_dir" "$run_port" || true
        fi
        rm -rf "$run_dir"
        exit "$rc"
    }
    trap run_stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # Another run may take the free range between the look-up and the start: then the next one.
    from=${BROKER_PORT_FROM:-26000}
    for attempt in 1 2 3; do
        run_port=$("$script" free-port "$from" "$((from + 1980))")
        if "$script" start "$run_dir" "$run_port"; then
            break
        fi
        [ "$attempt" -lt 3 ] || exit 1
        from=$((run_port + 20))
    done
    echo "broker.sh: a broker on 127.0.0.1:$run_port, data in $run_dir" >&2
    export SOCKSERV_TEST_AMQP="amqp://guest:guest@127.0.0.1:$run_port/"
    export SOCKSERV_TEST_BROKER="$run_dir $run_port"
    rc=0
    "$@" || rc=$?
    exit "$rc"
fi

[ $# -ge 2 ] || usage
dir=$1 port=$2
shift 2
case $port in
'' | *[!0-9]*) usage ;;
esac
[ "$port" -ge 1024 ] && [ "$port" -le 65000 ] || { echo "broker.sh: port $port out of 1024..65000" >&2; exit 2; }
[ "$port" -ne 5672 ] || { echo "broker.sh: 5672 is the system broker's port" >&2; exit 2; }
mkdir -p "$dir"
dir=$(readlink -f "$dir")

env_for() {
    export HOME=$dir RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
    export RABBITMQ_NODENAME=sockserv-test@localhost
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((port + 1))
    export ERL_EPMD_PORT=$((port + 2)) ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_CTL_DIST_PORT_MIN=$((port + 3)) RABBITMQ_CTL_DIST_PORT_MAX=$((port + 13))
    # the command-line tools' own distribution port, on loopback too
    export RABBITMQ_CTL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
    export RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log RABBITMQ_LOGS=-
    export RABBITMQ_PID_FILE=$dir/rabbit.pid RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
    export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
    unset RABBITMQ_ADVANCED_CONFIG_FILE RABBITMQ_CONFIG_FILES
}

server_pid() { # prints the running broker's pid
    local pid
    [ -s "$dir/rabbit.pid" ] || return 1
    pid=$(cat "$dir/rabbit.pid")
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    # The pid file may be stale and its number reused: the process must use this data directory.
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-home $dir " || return 1
    echo "$pid"
}

tail_log() {
    echo "broker.sh: last lines of $dir/server.out:" >&2
    tail -40 "$dir/server.out" >&2 2>/dev/null || true
}

do_stop() {
    local pid deadline
    env_for
    if pid=$(server_pid); then
        kill -CONT "$pid" 2>/dev/null || true # a frozen broker (SIGSTOP) cannot shut down
        if ! timeout 40 "$RMQ/rabbitmqctl" -q shutdown --timeout 30 >/dev/null 2>&1; then
            echo "broker.sh: rabbitmqctl shutdown failed; killing $pid" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        # shutdown waits for the node's exit; after a SIGKILL, wait for the process to go.
        deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            # a SIGSTOPped node cannot exit
            kill -CONT "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.1
        done
    fi
    rm -f "$dir/rabbit.pid"
    # The private epmd (ERL_EPMD_PORT), which the node or any command-line call started.
    epmd -kill >/dev/null 2>&1 || true
}

case $cmd in
start)
    env_for
    if server_pid >/dev/null; then
        echo "broker.sh: a broker already runs in $dir" >&2
        exit 1
    fi
    range_free "$port" || { echo "broker.sh: a port in $port..$((port + 14)) is taken" >&2; exit 1; }
    tls_dir=
    if [ -n "${BROKER_TLS_DIR:-}" ]; then
        tls_dir=$(readlink -f "$BROKER_TLS_DIR")
        for f in ca.pem server.pem server.key; do
            [ -r "$tls_dir/$f" ] || { echo "broker.sh: $tls_dir/$f is missing" >&2; exit 2; }
        done
    fi
    : > "$dir/rabbitmq-env.conf"
    echo '[].' > "$dir/enabled_plugins"
    if [ ! -s "$dir/.erlang.cookie" ]; then
        (umask 077; head -c 20 /dev/urandom | base64 > "$dir/.erlang.cookie")
        chmod 400 "$dir/.erlang.cookie"
    fi
    cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
distribution.listener.interface = 127.0.0.1
vm_memory_high_watermark.absolute = 512MiB
disk_free_limit.absolute = 50MB
log.console.level = warning
CONF
    if [ -n "$tls_dir" ]; then
        cat >> "$dir/rabbitmq.conf" <<CONF
listeners.ssl.default = 127.0.0.1:$((port + 14))
ssl_options.cacertfile = $tls_dir/ca.pem
ssl_options.certfile = $tls_dir/server.pem
ssl_options.keyfile = $tls_dir/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
CONF
    fi
    rm -f "$dir/rabbit.pid"
    # Its own session: a Ctrl-C at the terminal goes to the tests, whose trap stops it cleanly.
    setsid "$RMQ/rabbitmq-server" >> "$dir/server.out" 2>&1 < /dev/null &
    if ! timeout 100 "$RMQ/rabbitmqctl" -q wait --timeout 90 "$dir/rabbit.pid" >/dev/null 2>&1; then
        echo "broker.sh: the broker did not start" >&2
        tail_log
        do_stop
        exit 1
    fi
    if ! "$RMQ/rabbitmq-diagnostics" -q check_port_connectivity >/dev/null 2>&1 ||
        ! "$RMQ/rabbitmq-diagnostics" -q check_local_alarms >/dev/null 2>&1; then
        echo "broker.sh: the broker does not accept connections or has an alarm" >&2
        "$RMQ/rabbitmq-diagnostics" -q check_local_alarms >&2 || true
        tail_log
        do_stop
        exit 1
    fi
    if [ -n "${BROKER_OWNER_PID:-}" ]; then
        owner=$BROKER_OWNER_PID
        # The watcher polls once a second; it ends with the broker or stops it.
        setsid bash -c 'while kill -0 "$1" 2>/dev/null && "$2" pid "$3" "$4" >/dev/null; do sleep 1; done
            kill -0 "$1" 2>/dev/null || "$2" stop "$3" "$4"' broker-watch "$owner" "$script" "$dir" "$port" \
            > /dev/null 2>&1 < /dev/null &
    fi
    ;;
stop)
    do_stop
    ;;
pid)
    env_for
    server_pid
    ;;
ctl)
    env_for
    "$RMQ/rabbitmqctl" "$@"
    ;;
*)
    usage
    ;;
esac
