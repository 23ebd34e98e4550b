#include "cli/cli.h"

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
#include "core/store.h"

#define usage_error(...) cli_usage_error("echo", __VA_ARGS__)
#define fail(...) cli_fail("echo", __VA_ARGS__)

#define ECHO_TIMEOUT_DEFAULT_MS 5000
#define ECHO_TIMEOUT_MAX_MS 86400000L
#define ECHO_UDP_MAX 65507 /* the largest UDP payload over IPv4 */
#define ECHO_BUF_SIZE 65536

struct echo_args {
    bool udp;
    int timeout_ms;
    const char *host;
    const char *port;
    const char *message; /* NULL: standard input */
    char peer[320];      /* "HOST:PORT" or "[V6]:PORT", for messages */
};

/* Where the reply goes: standard output, with a final newline added on a terminal only. */
struct echo_out {
    bool is_tty;
    bool any;
    char last;
};

void cli_echo_usage(void)
{
    fputs("Usage: sockserv echo [--udp] [--timeout MS] HOST PORT [MESSAGE]\n"
          "\n"
          "The echo client: sends MESSAGE to the echo service at HOST PORT and prints the\n"
          "reply. Without MESSAGE it sends standard input; on a terminal it asks for the\n"
          "message (one line).\n"
          "\n"
          "  HOST          an IPv4 or IPv6 address or a host name (every address is tried)\n"
          "  PORT          1-65535\n"
          "  --udp, -u     send one datagram over UDP (at most 65507 bytes) instead of TCP\n"
          "  --timeout MS  how long to wait for the connection and for the reply\n"
          "                (default 5000)\n"
          "  --help, -h    show this help\n"
          "\n"
          "Over TCP the message is sent, the sending side is shut down, and everything the\n"
          "server sends until it closes is printed as it is.\n"
          "\n"
          "Exit status: 0 a reply was printed; 1 the server cannot be reached or did not\n"
          "answer in time; 2 usage error.\n",
          stdout);
}

static int parse_args(int argc, char **argv, struct echo_args *a, bool *ret_help)
{
    const char *pos[3];
    int npos = 0;
    bool options_done = false;
    unsigned long v;

    a->udp = false;
    a->timeout_ms = ECHO_TIMEOUT_DEFAULT_MS;
    *ret_help = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *timeout = NULL;

        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (npos == 3)
                return usage_error("too many arguments (from '%s'); quote the message", arg);
            pos[npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *ret_help = true;
            return 0;
        } else if (strcmp(arg, "--udp") == 0 || strcmp(arg, "-u") == 0) {
            a->udp = true;
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
            if (!cli_parse_ulong(timeout, 1, ECHO_TIMEOUT_MAX_MS, &v))
                return usage_error("--timeout: '%s' is not a number of milliseconds from 1 to %ld",
                                   timeout, ECHO_TIMEOUT_MAX_MS);
            a->timeout_ms = (int)v;
        }
    }
    if (npos < 2)
        return usage_error("missing %s", npos == 0 ? "HOST and PORT" : "PORT");
    a->host = pos[0];
    a->port = pos[1];
    a->message = npos == 3 ? pos[2] : NULL;
    if (a->host[0] == '\0')
        return usage_error("HOST is empty");
    if (!cli_parse_ulong(a->port, 1, 65535, &v))
        return usage_error("PORT: '%s' is not a port number from 1 to 65535", a->port);
    snprintf(a->peer, sizeof(a->peer), strchr(a->host, ':') ? "[%s]:%s" : "%s:%s", a->host,
             a->port);
    return 0;
}

static int resolve(const struct echo_args *a, struct addrinfo **ret)
{
    return cli_resolve("echo", a->host, a->port, a->udp ? SOCK_DGRAM : SOCK_STREAM, ret);
}

static int out_write(struct echo_out *o, const void *buf, size_t len)
{
    int r;

    if (len == 0)
        return 0;
    r = core_fs_write_all(STDOUT_FILENO, buf, len);
    if (r < 0)
        return fail("cannot write the reply to standard output: %s", strerror(-r));
    o->any = true;
    o->last = ((const char *)buf)[len - 1];
    return 0;
}

static int out_finish(struct echo_out *o)
{
    if (o->is_tty && o->any && o->last != '\n')
        return out_write(o, "\n", 1);
    return 0;
}

/* Asks for one line on a terminal, as the lecture's client does with input(); the line is sent
 * without its newline. Returns 0 with *ret (free it) or the exit status. */
static int prompt_line(char **ret, size_t *ret_len)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    fputs("Message to echo: ", stderr);
    fflush(stderr);
    n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        fputc('\n', stderr);
        return fail("no message given");
    }
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    *ret = line;
    *ret_len = (size_t)n;
    return 0;
}

/* Reads all of standard input, at most max bytes. Returns 0 with *ret (free it) or the exit
 * status. */
static int read_stdin(size_t max, char **ret, size_t *ret_len)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);

    if (!buf)
        return fail("out of memory");
    for (;;) {
        ssize_t n;

        if (len == cap) {
            char *nbuf;

            cap *= 2;
            nbuf = realloc(buf, cap);
            if (!nbuf) {
                free(buf);
                return fail("out of memory");
            }
            buf = nbuf;
        }
        n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return fail("cannot read standard input: %s", strerror(errno));
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            free(buf);
            return fail("the message is longer than %zu bytes, the most one datagram carries", max);
        }
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

/* Connects to the first address that answers within the deadline. Returns the connected,
 * non-blocking socket, or -1 after printing why. */
static int tcp_connect(const struct echo_args *a, const struct addrinfo *list)
{
    int fd = cli_tcp_connect(list, cli_now_ms() + a->timeout_ms);

    if (fd == -ETIMEDOUT)
        fail("cannot connect to %s: no answer within %d ms", a->peer, a->timeout_ms);
    else if (fd < 0)
        fail("cannot connect to %s: %s", a->peer, strerror(-fd));
    return fd < 0 ? -1 : fd;
}

/*
 * Sends the message (msg, or standard input streamed when msg is NULL) while reading the reply,
 * shuts down the sending side once everything is sent, and prints what arrives until the server
 * closes. The timeout bounds every wait on the server.
 */
static int tcp_exchange(const struct echo_args *a, int fd, const char *msg, size_t msg_len,
                        struct echo_out *out)
{
    char *inbuf, *rbuf = malloc(2 * ECHO_BUF_SIZE);
    const char *pending = msg;
    size_t pending_len = msg_len;
    bool from_stdin = msg == NULL, in_eof = msg != NULL, send_done = false;
    bool received = false;
    int64_t deadline = cli_now_ms() + a->timeout_ms;
    int ret;

    if (!rbuf)
        return fail("out of memory");
    inbuf = rbuf + ECHO_BUF_SIZE;
    for (;;) {
        struct pollfd pfd[2];
        nfds_t n = 1;
        int timeout, r;

        if (!send_done && pending_len == 0 && in_eof) {
            (void)shutdown(fd, SHUT_WR);
            send_done = true;
        }
        pfd[0] = (struct pollfd){.fd = fd, .events = POLLIN};
        if (!send_done && pending_len > 0)
            pfd[0].events |= POLLOUT;
        if (from_stdin && !in_eof && pending_len == 0)
            pfd[n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        /* While the next move is the user's, the server is not late. */
        timeout = n == 2 ? -1 : cli_remaining_ms(deadline);

        r = poll(pfd, n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = fail("poll: %s", strerror(errno));
            goto out;
        }
        if (r == 0) {
            ret = fail("no reply from %s within %d ms", a->peer, a->timeout_ms);
            goto out;
        }

        if (n == 2 && pfd[1].revents) {
            ssize_t k = read(STDIN_FILENO, inbuf, ECHO_BUF_SIZE);

            if (k < 0 && errno != EINTR && errno != EAGAIN) {
                ret = fail("cannot read standard input: %s", strerror(errno));
                goto out;
            }
            if (k == 0)
                in_eof = true;
            if (k > 0) {
                pending = inbuf;
                pending_len = (size_t)k;
            }
            deadline = cli_now_ms() + a->timeout_ms;
        }
        if (pfd[0].revents & POLLOUT) {
            ssize_t k = send(fd, pending, pending_len, MSG_NOSIGNAL);

            if (k >= 0) {
                pending += k;
                pending_len -= (size_t)k;
                deadline = cli_now_ms() + a->timeout_ms;
            } else if (errno == EPIPE || errno == ECONNRESET) {
                /* The server closed (the lecture's once mode): read what it sent. */
                send_done = true;
                pending_len = 0;
            } else if (errno != EINTR && errno != EAGAIN) {
                ret = fail("cannot send to %s: %s", a->peer, strerror(errno));
                goto out;
            }
        }
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t k = recv(fd, rbuf, ECHO_BUF_SIZE, 0);

            if (k == 0)
                break;
            if (k < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                if (errno == ECONNRESET && received)
                    break;
                ret = fail("connection to %s failed: %s", a->peer, strerror(errno));
                goto out;
            }
            received = true;
            ret = out_write(out, rbuf, (size_t)k);
            if (ret != 0)
                goto out;
            deadline = cli_now_ms() + a->timeout_ms;
        }
    }
    ret = out_finish(out);
out:
    free(rbuf);
    return ret;
}

static int run_tcp(const struct echo_args *a, const struct addrinfo *list, const char *msg,
                   size_t len, struct echo_out *out)
{
    int fd, r;

    fd = tcp_connect(a, list);
    if (fd < 0)
        return 1;
    r = tcp_exchange(a, fd, msg, len, out);
    close(fd);
    return r;
}

/* One datagram to each address in turn until one answers; a refusal (ICMP port unreachable)
 * moves on to the next address, silence ends the attempt. */
static int run_udp(const struct echo_args *a, const struct addrinfo *list, const char *msg,
                   size_t len, struct echo_out *out)
{
    char *rbuf = malloc(ECHO_BUF_SIZE);
    int err = ENOENT, ret;

    if (!rbuf)
        return fail("out of memory");

    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        int64_t deadline = cli_now_ms() + a->timeout_ms;
        struct pollfd pfd;
        ssize_t k;
        int fd, r;

        fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* A connected UDP socket takes replies from this peer only and reports refusals. */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 || send(fd, msg, len, MSG_NOSIGNAL) < 0) {
            err = errno;
            close(fd);
            continue;
        }
        pfd = (struct pollfd){.fd = fd, .events = POLLIN};
        for (;;) {
            r = poll(&pfd, 1, cli_remaining_ms(deadline));
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        if (r == 0) {
            close(fd);
            ret = fail("no reply from %s within %d ms", a->peer, a->timeout_ms);
            goto out;
        }
        do {
            k = recv(fd, rbuf, ECHO_BUF_SIZE, 0);
        } while (k < 0 && errno == EINTR);
        if (k < 0) {
            err = errno;
            close(fd);
            continue;
        }
        close(fd);
        ret = out_write(out, rbuf, (size_t)k);
        if (ret == 0)
            ret = out_finish(out);
        goto out;
    }
    ret = fail("no reply from %s: %s", a->peer, strerror(err));
out:
    free(rbuf);
    return ret;
}

int cli_echo_main(int argc, char **argv)
{
    struct echo_args a = {0};
    struct echo_out out = {.is_tty = isatty(STDOUT_FILENO) == 1};
    struct addrinfo *list = NULL;
    char *owned = NULL;
    const char *msg = NULL;
    size_t len = 0;
    bool help;
    int r;

    r = parse_args(argc, argv, &a, &help);
    if (r != 0)
        return r;
    if (help) {
        cli_echo_usage();
        return 0;
    }

    if (a.message) {
        msg = a.message;
        len = strlen(msg);
        if (a.udp && len > ECHO_UDP_MAX)
            return fail("the message is longer than %d bytes, the most one datagram carries",
                        ECHO_UDP_MAX);
    } else if (isatty(STDIN_FILENO) == 1) {
        r = prompt_line(&owned, &len);
        if (r != 0)
            return r;
        msg = owned;
        if (a.udp && len > ECHO_UDP_MAX) {
            free(owned);
            return fail("the message is longer than %d bytes, the most one datagram carries",
                        ECHO_UDP_MAX);
        }
    } else if (a.udp) {
        r = read_stdin(ECHO_UDP_MAX, &owned, &len);
        if (r != 0)
            return r;
        msg = owned;
    }
    /* TCP without a message streams standard input (msg stays NULL). */

    r = resolve(&a, &list);
    if (r != 0)
        goto out_free;
    if (a.udp)
        r = run_udp(&a, list, msg, len, &out);
    else
        r = run_tcp(&a, list, msg, len, &out);
    freeaddrinfo(list);
out_free:
    free(owned);
    return r;
}
