#include "cli/date.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "cli/common.h"

#define fail(...) cli_fail("date", __VA_ARGS__)

#define DATE_PORT_DEFAULT "1313"
#define DATE_TIMEOUT_DEFAULT_MS 3000
#define DATE_TIMEOUT_MAX_MS 86400000L
#define DATE_RESEND_MS 1000 /* a lost datagram is asked again this often */
#define DATE_REPLY_MAX 65536

enum { OPT_TCP, OPT_UDP, OPT_ISO, OPT_UNIX, OPT_TIMEOUT, OPT_TLS };

static const struct cli_opt date_opts[] = {
    [OPT_TCP] = {"tcp", 0, NULL,
                 "connect over TCP (daytime, RFC 867) and print the line the server sends, "
                 "instead of sending a \"date\" datagram over UDP"},
    [OPT_UDP] = {"udp", 'u', NULL, "ask over UDP (the default)"},
    [OPT_ISO] = {"iso", 0, NULL,
                 "ask for RFC 3339 with the offset (2026-11-25T11:02:45+01:00); over UDP"},
    [OPT_UNIX] = {"unix", 0, NULL, "ask for the seconds since the epoch; over UDP"},
    [OPT_TIMEOUT] = {"timeout", 't', "DURATION",
                     "how long to wait for the reply: 500ms, 3s, 2m; a bare number is "
                     "milliseconds (default 3s)"},
    [OPT_TLS] = CLI_TLS_OPTS(0),
};

static const char *const date_arg_help[] = {
    "HOST", "an IPv4 or IPv6 address or a host name (every address is tried)",
    "PORT", "1-65535 (default 1313)",
    NULL,
};

const struct cli_command cli_date_command = {
    .name = "date",
    .self =
        {
            .synopsis = "[--tcp [--tls [--cacert FILE] [--cert FILE --key FILE]] | --iso | "
                        "--unix] [--timeout DURATION] HOST [PORT]",
            .brief = "ask a date server for the current date and print it",
            .summary = "The date is printed as the `date` command prints it, in the server's time "
                       "zone.",
            .min_args = 1,
            .max_args = 2,
            .arg_names = {"HOST", "PORT"},
        },
    .arg_help = date_arg_help,
    .opts = date_opts,
    .nopts = sizeof(date_opts) / sizeof(date_opts[0]),
    .epilog = "Over UDP the request is sent again every second until a reply arrives.\n"
              "\n"
              "Exit status: 0 the date was printed; 1 the server cannot be reached or did not\n"
              "answer in time; 2 usage error.\n",
};

struct date_args {
    bool tcp;
    const char *request; /* "date", "iso" or "unix" */
    int timeout_ms;
    struct cli_tls_opts tls; /* --tls implies --tcp */
    struct cli_peer peer;
};

void cli_date_usage(void)
{
    cli_help_print(&cli_date_command, -1);
}

/* Returns CLI_ARGS_GO_ON with *a filled, else the exit status (0 after the help). */
static int parse_args(int argc, char **argv, struct date_args *a)
{
    const struct cli_command *cmd = &cli_date_command;
    struct cli_args args;
    int64_t ms = DATE_TIMEOUT_DEFAULT_MS;
    int r;

    r = cli_args_parse(cmd, argc, argv, &args);
    if (r != CLI_ARGS_GO_ON)
        return r;
    r = cli_args_duration(cmd, &args, OPT_TIMEOUT, 1, DATE_TIMEOUT_MAX_MS, &ms);
    if (r != 0)
        return r;
    a->timeout_ms = (int)ms;
    r = cli_tls_args(cmd, -1, &args, OPT_TLS, &a->tls);
    if (r != 0)
        return r;
    if (a->tls.on && args.seen[OPT_UDP])
        return cli_args_usage_error(cmd, -1, "--tls is for TCP, not with --udp");
    a->tcp = args.seen[OPT_TCP] || a->tls.on;
    a->request = args.seen[OPT_UNIX] ? "unix" : args.seen[OPT_ISO] ? "iso" : "date";
    if (args.seen[OPT_ISO] && args.seen[OPT_UNIX])
        return cli_args_usage_error(cmd, -1, "--iso and --unix ask for different replies");
    if (args.seen[OPT_TCP] && args.seen[OPT_UDP])
        return cli_args_usage_error(cmd, -1, "--tcp and --udp: one or the other");
    if (a->tcp && strcmp(a->request, "date") != 0)
        return cli_args_usage_error(
            cmd, -1, "--%s asks over UDP; over TCP the server sends its date line", a->request);
    r = cli_peer_parse(cmd, -1, args.pos[0], args.npos == 2 ? args.pos[1] : DATE_PORT_DEFAULT,
                       &a->peer);
    return r == 0 ? CLI_ARGS_GO_ON : r;
}

static int resolve(const struct date_args *a, struct addrinfo **ret)
{
    return cli_resolve("date", a->peer.host, a->peer.port, a->tcp ? SOCK_STREAM : SOCK_DGRAM, ret);
}

/* Prints the reply as it came, ending it with a newline if the server did not. */
static int print_reply(const char *buf, size_t len)
{
    if (fwrite(buf, 1, len, stdout) != len || (buf[len - 1] != '\n' && putchar('\n') == EOF) ||
        fflush(stdout) != 0)
        return fail("cannot write to standard output: %s", strerror(errno));
    return 0;
}

static int no_reply(const struct date_args *a)
{
    return fail("no reply from %s within %d ms", a->peer.name, a->timeout_ms);
}

/* Daytime: connect, read everything until the server closes, print it. */
static int run_tcp(const struct date_args *a, const struct addrinfo *list)
{
    static char buf[DATE_REPLY_MAX];
    int64_t deadline = core_now_ms() + a->timeout_ms;
    size_t len = 0;
    struct cli_stream st;
    int r = 0;

    r = cli_stream_connect(&st, "date", &a->peer, list, &a->tls, deadline);
    if (r != 0)
        return r;
    for (;;) {
        struct pollfd pfd = {.fd = st.fd, .events = cli_stream_events(&st, POLLIN)};
        ssize_t k;

        /* Bytes TLS already decrypted are not in the socket any more. */
        r = cli_stream_pending(&st) ? 1 : poll(&pfd, 1, cli_remaining_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            r = fail("poll: %s", strerror(errno));
            goto out_close;
        }
        if (r == 0) {
            r = no_reply(a);
            goto out_close;
        }
        k = cli_stream_read(&st, buf + len, sizeof(buf) - len);
        if (k == -EAGAIN)
            continue;
        if (k < 0 && !(k == -ECONNRESET && len > 0)) {
            r = fail("connection to %s failed: %s", a->peer.name, cli_stream_strerror(&st, (int)k));
            goto out_close;
        }
        if (k <= 0)
            break;
        len += (size_t)k;
        if (len == sizeof(buf)) {
            r = fail("%s sent more than %d bytes without closing: not a date service", a->peer.name,
                     DATE_REPLY_MAX);
            goto out_close;
        }
    }
    if (len == 0)
        r = fail("%s closed the connection without sending a date", a->peer.name);
    else
        r = print_reply(buf, len);
out_close:
    cli_stream_close(&st);
    return r;
}

/* Waits for a datagram on fd until the deadline, sending the request again every second.
 * Returns the reply's length, 0 on timeout, or a negative errno (-ECONNREFUSED: nothing
 * listens at that address). */
static ssize_t udp_ask(const struct date_args *a, int fd, int64_t deadline, char *buf, size_t cap)
{
    size_t req_len = strlen(a->request);

    for (;;) {
        int64_t resend = core_now_ms() + DATE_RESEND_MS;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r;

        if (send(fd, a->request, req_len, MSG_NOSIGNAL) < 0 && errno != EINTR)
            return -errno;
        do {
            r = poll(&pfd, 1, cli_remaining_ms(resend < deadline ? resend : deadline));
        } while (r < 0 && errno == EINTR);
        if (r < 0)
            return -errno;
        if (r > 0) {
            ssize_t k;

            do {
                k = recv(fd, buf, cap, 0);
            } while (k < 0 && errno == EINTR);
            if (k < 0)
                return -errno;
            if (k > 0)
                return k;
            continue; /* an empty datagram is no answer */
        }
        if (cli_remaining_ms(deadline) == 0)
            return 0;
    }
}

/* The request to each address in turn until one answers; a refusal (ICMP port unreachable)
 * moves on to the next address, all within one deadline. */
static int run_udp(const struct date_args *a, const struct addrinfo *list)
{
    static char buf[DATE_REPLY_MAX];
    int64_t deadline = core_now_ms() + a->timeout_ms;
    int err = ENOENT;

    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        ssize_t k;
        int fd;

        fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* A connected UDP socket takes replies from this peer only and reports refusals. */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno;
            close(fd);
            continue;
        }
        k = udp_ask(a, fd, deadline, buf, sizeof(buf));
        close(fd);
        if (k > 0)
            return print_reply(buf, (size_t)k);
        if (k == 0)
            return no_reply(a);
        err = (int)-k;
    }
    if (err == ECONNREFUSED)
        return fail("no reply from %s: %s (nothing listens there)", a->peer.name, strerror(err));
    return fail("no reply from %s: %s", a->peer.name, strerror(err));
}

int cli_date_main(int argc, char **argv)
{
    struct date_args a = {0};
    struct addrinfo *list = NULL;
    int r;

    r = parse_args(argc, argv, &a);
    if (r != CLI_ARGS_GO_ON)
        return r;
    r = resolve(&a, &list);
    if (r != 0)
        return r;
    r = a.tcp ? run_tcp(&a, list) : run_udp(&a, list);
    freeaddrinfo(list);
    return r;
}
