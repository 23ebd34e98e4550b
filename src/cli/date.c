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

#define usage_error(...) cli_usage_error("date", __VA_ARGS__)
#define fail(...) cli_fail("date", __VA_ARGS__)

#define DATE_PORT_DEFAULT "1313"
#define DATE_TIMEOUT_DEFAULT_MS 3000
#define DATE_TIMEOUT_MAX_MS 86400000L
#define DATE_RESEND_MS 1000 /* a lost datagram is asked again this often */
#define DATE_REPLY_MAX 65536

struct date_args {
    bool tcp;
    const char *request; /* "date", "iso" or "unix" */
    int timeout_ms;
    const char *host;
    const char *port;
    char peer[320]; /* "HOST:PORT" or "[V6]:PORT", for messages */
};

void cli_date_usage(void)
{
    fputs("Usage: sockserv date [--tcp] [--iso | --unix] [--timeout MS] HOST [PORT]\n"
          "\n"
          "The date client: asks the date service at HOST PORT for the current date and\n"
          "prints it, as the `date` command prints it in the server's time zone.\n"
          "\n"
          "  HOST          an IPv4 or IPv6 address or a host name (every address is tried)\n"
          "  PORT          1-65535 (default 1313)\n"
          "  --tcp         connect over TCP (daytime, RFC 867) and print the line the server\n"
          "                sends, instead of sending a \"date\" datagram over UDP\n"
          "  --iso         ask for RFC 3339 with the offset (2026-11-25T11:02:45+01:00)\n"
          "  --unix        ask for the seconds since the epoch\n"
          "                (--iso and --unix are UDP requests)\n"
          "  --timeout MS  how long to wait for the reply (default 3000)\n"
          "  --help, -h    show this help\n"
          "\n"
          "Over UDP the request is sent again every second until a reply arrives.\n"
          "\n"
          "Exit status: 0 the date was printed; 1 the server cannot be reached or did not\n"
          "answer in time; 2 usage error.\n",
          stdout);
}

static int parse_args(int argc, char **argv, struct date_args *a, bool *ret_help)
{
    const char *pos[2];
    int npos = 0;
    bool options_done = false;
    unsigned long v;

    a->tcp = false;
    a->request = "date";
    a->timeout_ms = DATE_TIMEOUT_DEFAULT_MS;
    *ret_help = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *timeout = NULL;

        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (npos == 2)
                return usage_error("too many arguments (from '%s')", arg);
            pos[npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *ret_help = true;
            return 0;
        } else if (strcmp(arg, "--tcp") == 0) {
            a->tcp = true;
        } else if (strcmp(arg, "--udp") == 0 || strcmp(arg, "-u") == 0) {
            a->tcp = false;
        } else if (strcmp(arg, "--iso") == 0) {
            a->request = "iso";
        } else if (strcmp(arg, "--unix") == 0) {
            a->request = "unix";
        } else if (strcmp(arg, "--timeout") == 0 || strcmp(arg, "-t") == 0) {
            if (i + 1 == argc)
                return usage_error("%s needs a value in milliseconds", arg);
            timeout = argv[++i];
        } else if (strncmp(arg, "--timeout=", 10) == 0) {
            timeout = arg + 10;
        } else {
            return usage_error("unknown option '%s'", arg);
        }
        if (timeout) {
            if (!cli_parse_ulong(timeout, 1, DATE_TIMEOUT_MAX_MS, &v))
                return usage_error("--timeout: '%s' is not a number of milliseconds from 1 to %ld",
                                   timeout, DATE_TIMEOUT_MAX_MS);
            a->timeout_ms = (int)v;
        }
    }
    if (npos < 1)
        return usage_error("missing HOST");
    if (a->tcp && strcmp(a->request, "date") != 0)
        return usage_error("--%s asks over UDP; over TCP the server sends its date line",
                           a->request);
    a->host = pos[0];
    a->port = npos == 2 ? pos[1] : DATE_PORT_DEFAULT;
    if (a->host[0] == '\0')
        return usage_error("HOST is empty");
    if (!cli_parse_ulong(a->port, 1, 65535, &v))
        return usage_error("PORT: '%s' is not a port number from 1 to 65535", a->port);
    snprintf(a->peer, sizeof(a->peer), strchr(a->host, ':') ? "[%s]:%s" : "%s:%s", a->host,
             a->port);
    return 0;
}

static int resolve(const struct date_args *a, struct addrinfo **ret)
{
    return cli_resolve("date", a->host, a->port, a->tcp ? SOCK_STREAM : SOCK_DGRAM, ret);
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
    return fail("no reply from %s within %d ms", a->peer, a->timeout_ms);
}

/* Connects to the first address that accepts within the deadline. Returns the connected,
 * non-blocking socket, or -1 after printing why. */
static int tcp_connect(const struct date_args *a, const struct addrinfo *list, int64_t deadline)
{
    int fd = cli_tcp_connect(list, deadline);

    if (fd == -ETIMEDOUT)
        no_reply(a);
    else if (fd < 0)
        fail("cannot connect to %s: %s", a->peer, strerror(-fd));
    return fd < 0 ? -1 : fd;
}

/* Daytime: connect, read everything until the server closes, print it. */
static int run_tcp(const struct date_args *a, const struct addrinfo *list)
{
    static char buf[DATE_REPLY_MAX];
    int64_t deadline = cli_now_ms() + a->timeout_ms;
    size_t len = 0;
    int fd, r = 0;

    fd = tcp_connect(a, list, deadline);
    if (fd < 0)
        return 1;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t k;

        r = poll(&pfd, 1, cli_remaining_ms(deadline));
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
        k = recv(fd, buf + len, sizeof(buf) - len, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k < 0 && !(errno == ECONNRESET && len > 0)) {
            r = fail("connection to %s failed: %s", a->peer, strerror(errno));
            goto out_close;
        }
        if (k <= 0)
            break;
        len += (size_t)k;
        if (len == sizeof(buf)) {
            r = fail("%s sent more than %d bytes without closing: not a date service", a->peer,
                     DATE_REPLY_MAX);
            goto out_close;
        }
    }
    if (len == 0)
        r = fail("%s closed the connection without sending a date", a->peer);
    else
        r = print_reply(buf, len);
out_close:
    close(fd);
    return r;
}

/* Waits for a datagram on fd until the deadline, sending the request again every second.
 * Returns the reply's length, 0 on timeout, or a negative errno (-ECONNREFUSED: nothing
 * listens at that address). */
static ssize_t udp_ask(const struct date_args *a, int fd, int64_t deadline, char *buf, size_t cap)
{
    size_t req_len = strlen(a->request);

    for (;;) {
        int64_t resend = cli_now_ms() + DATE_RESEND_MS;
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
    int64_t deadline = cli_now_ms() + a->timeout_ms;
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
        return fail("no reply from %s: %s (nothing listens there)", a->peer, strerror(err));
    return fail("no reply from %s: %s", a->peer, strerror(err));
}

int cli_date_main(int argc, char **argv)
{
    struct date_args a = {0};
    struct addrinfo *list = NULL;
    bool help;
    int r;

    r = parse_args(argc, argv, &a, &help);
    if (r != 0)
        return r;
    if (help) {
        cli_date_usage();
        return 0;
    }
    r = resolve(&a, &list);
    if (r != 0)
        return r;
    r = a.tcp ? run_tcp(&a, list) : run_udp(&a, list);
    freeaddrinfo(list);
    return r;
}
