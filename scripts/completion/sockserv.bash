# bash completion for sockserv                                  -*- shell-script -*-
#
# Install: copy to /usr/share/bash-completion/completions/sockserv (or source it from
# ~/.bashrc). Completes the commands, their options, the `ctl` verbs and flags, listener ids
# (asked of the daemon with `sockserv ctl ls --json`, quietly and with a short timeout, using
# the --api, --token-file and --cacert already on the line), the `fleet` verbs and flags, node
# names (asked of the broker with `sockserv fleet ls --json --wait 1s`, with the --amqp options
# already on the line), and file names where a file is expected.

_sockserv_ctl_ids()
{
    local cmd=$1 api=$2 token=$3 cacert=$4
    local -a args=(ctl ls --json --timeout 2s)
    [[ -n $api ]] && args+=(--api "$api")
    [[ -n $token ]] && args+=(--token-file "$token")
    [[ -n $cacert ]] && args+=(--cacert "$cacert")
    # ids are [A-Za-z0-9._-]: pick them out of the JSON without a JSON tool
    "$cmd" "${args[@]}" 2>/dev/null |
        sed -n 's/^ *"id": "\([A-Za-z0-9._-]*\)",\{0,1\}$/\1/p'
}

_sockserv_ctl()
{
    local cur=$1 prev=$2 cword=$3
    local verbs="ls get create patch delete start stop metrics files watch wait apply diff revisions restore"
    local common="--api --token-file --cacert --json --timeout --help --version"
    local verb="" api="" token="" cacert="" i w nargs=0

    # the verb, the --api and --token-file given so far, and the verb's positional count
    for ((i = 2; i < cword; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
        --api | --token-file | --cacert | --timeout | -t | -f | --file | --if-match | --set | --id | --service | \
            --transport | --address | --port | --model | --workers | --version | -o | --output | \
            --since | --state | --limit)
            [[ $w == --api ]] && api=${COMP_WORDS[i + 1]}
            [[ $w == --token-file ]] && token=${COMP_WORDS[i + 1]}
            [[ $w == --cacert ]] && cacert=${COMP_WORDS[i + 1]}
            ((i++))
            ;;
        --api=*) api=${w#--api=} ;;
        --token-file=*) token=${w#--token-file=} ;;
        --cacert=*) cacert=${w#--cacert=} ;;
        -*) ;;
        *)
            if [[ -z $verb ]]; then
                verb=$w
            else
                ((nargs++))
            fi
            ;;
        esac
    done
    [[ -z $token ]] && token=${SOCKSERV_TOKEN_FILE:-}
    [[ -z $cacert ]] && cacert=${SOCKSERV_CACERT:-}

    case $prev in
    -f | --file | --token-file | --cacert | -o | --output)
        COMPREPLY=($(compgen -f -- "$cur"))
        compopt -o filenames 2>/dev/null
        return
        ;;
    --api)
        COMPREPLY=($(compgen -W "http://127.0.0.1:8400 https:// unix:" -- "$cur"))
        compopt -o nospace 2>/dev/null
        return
        ;;
    --timeout)
        COMPREPLY=($(compgen -W "500ms 2s 10s 30s 1m" -- "$cur"))
        return
        ;;
    --state)
        COMPREPLY=($(compgen -W "starting running stopping stopped failed" -- "$cur"))
        return
        ;;
    --service)
        COMPREPLY=($(compgen -W "echo date backup" -- "$cur"))
        return
        ;;
    --transport)
        COMPREPLY=($(compgen -W "tcp udp" -- "$cur"))
        return
        ;;
    --model)
        COMPREPLY=($(compgen -W "sequential thread pool event process" -- "$cur"))
        return
        ;;
    --if-match | --set | --id | --address | --port | --workers | --version | --since | --limit)
        return
        ;;
    esac

    if [[ -z $verb ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$common" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
        fi
        return
    fi

    local flags=""
    case $verb in
    create) flags="-f --id --service --transport --address --port --model --workers --disabled --set --dry-run --if-match" ;;
    patch) flags="-f --set --dry-run --if-match" ;;
    delete | start | stop) flags="--dry-run --if-match" ;;
    files) flags="--version -o" ;;
    watch) flags="--recent --since --once --metrics" ;;
    wait) flags="--state" ;;
    apply) flags="-f --prune --dry-run --if-match" ;;
    diff) flags="-f --prune" ;;
    revisions) flags="--limit" ;;
    restore) flags="--dry-run --if-match" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags $common" -- "$cur"))
        return
    fi
    case $verb in
    get | patch | delete | start | stop | metrics | files | wait)
        if ((nargs == 0)); then
            COMPREPLY=($(compgen -W "$(_sockserv_ctl_ids "${COMP_WORDS[0]}" "$api" "$token" "$cacert")" -- "$cur"))
        fi
        ;;
    esac
}

_sockserv_fleet_nodes()
{
    local cmd=$1
    shift
    # node names are [a-z0-9_-]: pick them out of the JSON without a JSON tool
    "$cmd" fleet "$@" ls --json --wait 1s 2>/dev/null |
        sed -n 's/^ *"node": "\([a-z0-9_-]*\)",\{0,1\}$/\1/p'
}

_sockserv_fleet()
{
    local cur=$1 prev=$2 cword=$3
    local verbs="apply ls watch forget"
    local common="--amqp --amqp-credentials --amqp-cacert --amqp-cert --amqp-key --amqp-prefix --json --help --version"
    local verb="" i w
    local -a conn=()

    for ((i = 2; i < cword; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
        --amqp | --amqp-credentials | --amqp-cacert | --amqp-cert | --amqp-key | --amqp-prefix)
            conn+=("$w" "${COMP_WORDS[i + 1]}")
            ((i++))
            ;;
        -f | --file | --node | --selector | --if-match | --wait | --count) ((i++)) ;;
        --amqp=* | --amqp-credentials=* | --amqp-cacert=* | --amqp-cert=* | --amqp-key=* | --amqp-prefix=*)
            conn+=("$w")
            ;;
        -*) ;;
        *) [[ -z $verb ]] && verb=$w ;;
        esac
    done

    case $prev in
    -f | --file | --amqp-credentials | --amqp-cacert | --amqp-cert | --amqp-key)
        COMPREPLY=($(compgen -f -- "$cur"))
        compopt -o filenames 2>/dev/null
        return
        ;;
    --amqp)
        COMPREPLY=($(compgen -W "amqp:// amqps://" -- "$cur"))
        compopt -o nospace 2>/dev/null
        return
        ;;
    --wait)
        COMPREPLY=($(compgen -W "500ms 2s 15s 1m" -- "$cur"))
        return
        ;;
    --node)
        COMPREPLY=($(compgen -W "$(_sockserv_fleet_nodes "${COMP_WORDS[0]}" "${conn[@]}")" -- "$cur"))
        return
        ;;
    --amqp-prefix | --selector | --if-match | --count)
        return
        ;;
    esac

    if [[ -z $verb ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$common" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
        fi
        return
    fi
    local flags=""
    case $verb in
    apply) flags="-f --node --selector --all --if-match --wait" ;;
    ls) flags="--wait" ;;
    watch) flags="--count" ;;
    forget) flags="--force" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags $common" -- "$cur"))
    elif [[ $verb == watch ]]; then
        COMPREPLY=($(compgen -W "ev.# ev.*.listener.# ev.*.config.# ev.*.node.#" -- "$cur"))
    elif [[ $verb == forget ]]; then
        COMPREPLY=($(compgen -W "$(_sockserv_fleet_nodes "${COMP_WORDS[0]}" "${conn[@]}")" -- "$cur"))
    fi
}

_sockserv()
{
    local cur prev cword
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    cword=$COMP_CWORD
    COMPREPLY=()

    if ((cword == 1)); then
        COMPREPLY=($(compgen -W "daemon echo date backup ctl fleet --help --version" -- "$cur"))
        return
    fi
    case ${COMP_WORDS[1]} in
    ctl)
        _sockserv_ctl "$cur" "$prev" "$cword"
        ;;
    fleet)
        _sockserv_fleet "$cur" "$prev" "$cword"
        ;;
    daemon)
        case $prev in
        --state-dir) COMPREPLY=($(compgen -d -- "$cur")) ;;
        --token-file | --api-tls-cert | --api-tls-key | --amqp-credentials | --amqp-cacert | --amqp-cert | --amqp-key) COMPREPLY=($(compgen -f -- "$cur")) ;;
        --log-level) COMPREPLY=($(compgen -W "error warn info debug" -- "$cur")) ;;
        --api | --ready-fd | --api-mode | --allow-host | --amqp | --node | --label | --amqp-prefix | --amqp-heartbeat | --fleet-status-interval) ;;
        *) COMPREPLY=($(compgen -W "--api --api-mode --state-dir --no-defaults --ready-fd --token-file --api-tls-cert --api-tls-key --api-insecure-plain-http --allow-host --log-level --amqp --amqp-credentials --amqp-cacert --amqp-cert --amqp-key --node --label --amqp-prefix --amqp-heartbeat --fleet-status-interval --fleet-view --help --version" -- "$cur")) ;;
        esac
        ;;
    echo)
        COMPREPLY=($(compgen -W "--udp --timeout --help --version" -- "$cur"))
        ;;
    date)
        COMPREPLY=($(compgen -W "--tcp --udp --iso --unix --timeout --help --version" -- "$cur"))
        ;;
    backup)
        if ((cword == 2)); then
            COMPREPLY=($(compgen -W "put get ls --help --version" -- "$cur"))
        elif [[ ${COMP_WORDS[2]} == put && $cur != -* ]]; then
            COMPREPLY=($(compgen -f -- "$cur"))
        else
            COMPREPLY=($(compgen -W "--name --version -o --output --timeout --help" -- "$cur"))
        fi
        ;;
    esac
}

complete -F _sockserv sockserv
