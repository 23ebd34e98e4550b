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

#define fail(...) cli_fail("echo", __VA_ARGS__)

#define ECHO_TIMEOUT_DEFAULT_MS 5000
#define ECHO_TIMEOUT_MAX_MS 86400000L
#define ECHO_UDP_MAX 65507 /* the largest UDP payload over IPv4 */
#define ECHO_BUF_SIZE 65536

enum { OPT_UDP, OPT_TIMEOUT, OPT_TLS };

static const struct cli_opt echo_opts[] = {
    [OPT_UDP] = {"udp", 'u', NULL,
                 "send one datagram over UDP (at most 65507 bytes) instead of TCP"},
    [OPT_TIMEOUT] = {"timeout", 't', "DURATION",
                     "how long to wait for the connection and for the reply: 500ms, 5s, 2m; a "
                     "bare number is milliseconds (default 5s)"},
    [OPT_TLS] = CLI_TLS_OPTS(0),
};

static const char *const echo_arg_help[] = {
    "HOST",    "an IPv4 or IPv6 address or a host name (every address is tried)",
    "PORT",    "1-65535",
    "MESSAGE", "what to send; without it standard input (on a terminal, one line asked for)",
    NULL,
};

const struct cli_command cli_echo_command = {
    .name = "echo",
    .self =
        {
            .synopsis = "[--udp | --tls [--cacert FILE] [--cert FILE --key FILE]] "
                        "[--timeout DURATION] HOST PORT [MESSAGE]",
            .brief = "send a message to an echo server and print the reply",
            .min_args = 2,
            .max_args = 3,
            .arg_names = {"HOST", "PORT", "MESSAGE"},
        },
    .arg_help = echo_arg_help,
    .opts = echo_opts,
    .nopts = sizeof(echo_opts) / sizeof(echo_opts[0]),
    .epilog = "Over TCP the message is sent, the sending side is shut down, and everything the\n"
              "server sends until it closes is printed as it is.\n"
              "\n"
              "Exit status: 0 a reply was printed; 1 the server cannot be reached or did not\n"
              "answer in time; 2 usage error.\n",
};

struct echo_args {
    bool udp;
    int timeout_ms;
    struct cli_tls_opts tls;
    struct cli_peer peer;
    const char *message; /* NULL: standard input */
};

/* Where the reply goes: standard output, with a final newline added on a terminal only. */
struct echo_out {
    bool is_tty;
    bool any;
    char last;
};

void cli_echo_usage(void)
{
    cli_help_print(&cli_echo_command, -1);
}

/* Returns CLI_ARGS_GO_ON with *a filled, else the exit status (0 after the help). */
static int parse_args(int argc, char **argv, struct echo_args *a)
{
    const struct cli_command *cmd = &cli_echo_command;
    struct cli_args args;
    int64_t ms = ECHO_TIMEOUT_DEFAULT_MS;
    int r;

    r = cli_args_parse(cmd, argc, argv, &args);
    if (r != CLI_ARGS_GO_ON)
        return r;
    r = cli_args_duration(cmd, &args, OPT_TIMEOUT, 1, ECHO_TIMEOUT_MAX_MS, &ms);
    if (r != 0)
        return r;
    a->udp = args.seen[OPT_UDP];
    a->timeout_ms = (int)ms;
    r = cli_tls_args(cmd, -1, &args, OPT_TLS, &a->tls);
    if (r != 0)
        return r;
    if (a->udp && a->tls.on)
        return cli_args_usage_error(cmd, -1, "--tls is for TCP, not with --udp");
    a->message = args.npos == 3 ? args.pos[2] : NULL;
    r = cli_peer_parse(cmd, -1, args.pos[0], args.pos[1], &a->peer);
    return r == 0 ? CLI_ARGS_GO_ON : r;
}

static int resolve(const struct echo_args *a, struct addrinfo **ret)
{
    return cli_resolve("echo", a->peer.host, a->peer.port, a->udp ? SOCK_DGRAM : SOCK_STREAM, ret);
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

/*
 * Sends the message (msg, or standard input streamed when msg is NULL) while reading the reply,
 * shuts down the sending side once everything is sent, and prints what arrives until the server
 * closes. The timeout bounds every wait on the server.
 */
static int tcp_exchange(const struct echo_args *a, struct cli_stream *st, const char *msg,
                        size_t msg_len, struct echo_out *out)
{
    char *inbuf, *rbuf = malloc(2 * ECHO_BUF_SIZE);
    const char *pending = msg;
    size_t pending_len = msg_len;
    bool from_stdin = msg == NULL, in_eof = msg != NULL, send_done = false;
    bool received = false;
    int64_t deadline = core_now_ms() + a->timeout_ms;
    int ret;

    if (!rbuf)
        return fail("out of memory");
    inbuf = rbuf + ECHO_BUF_SIZE;
    for (;;) {
        struct pollfd pfd[2];
        nfds_t n = 1;
        int timeout, r;

        if (!send_done && pending_len == 0 && in_eof) {
            cli_stream_shutdown(st);
            send_done = true;
        }
        pfd[0] = (struct pollfd){.fd = st->fd, .events = cli_stream_events(st, POLLIN)};
        if (!send_done && pending_len > 0)
            pfd[0].events |= POLLOUT;
        if (from_stdin && !in_eof && pending_len == 0)
            pfd[n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        /* While the next move is the user's, the server is not late. */
        timeout = n == 2 ? -1 : cli_remaining_ms(deadline);
        /* Bytes TLS already decrypted are not in the socket any more. */
        if (cli_stream_pending(st))
            timeout = 0;

        r = poll(pfd, n, timeout);
        if (r == 0 && cli_stream_pending(st)) {
            pfd[0].revents = POLLIN;
            r = 1;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = fail("poll: %s", strerror(errno));
            goto out;
        }
        if (r == 0) {
            ret = fail("no reply from %s within %d ms", a->peer.name, a->timeout_ms);
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
            deadline = core_now_ms() + a->timeout_ms;
        }
        if (pfd[0].revents & POLLOUT) {
            ssize_t k = cli_stream_write(st, pending, pending_len);

            if (k >= 0) {
                pending += k;
                pending_len -= (size_t)k;
                deadline = core_now_ms() + a->timeout_ms;
            } else if (k == -EPIPE || k == -ECONNRESET) {
                /* The server closed (the lecture's once mode): read what it sent. */
                send_done = true;
                pending_len = 0;
            } else if (k != -EAGAIN) {
                ret = fail("cannot send to %s: %s", a->peer.name, cli_stream_strerror(st, (int)k));
                goto out;
            }
        }
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t k = cli_stream_read(st, rbuf, ECHO_BUF_SIZE);

            if (k == 0)
                break;
            if (k < 0) {
                if (k == -EAGAIN)
                    continue;
                if (k == -ECONNRESET && received)
                    break;
                ret = fail("connection to %s failed: %s", a->peer.name,
                           cli_stream_strerror(st, (int)k));
                goto out;
            }
            received = true;
            ret = out_write(out, rbuf, (size_t)k);
            if (ret != 0)
                goto out;
            deadline = core_now_ms() + a->timeout_ms;
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
    struct cli_stream st;
    int r;

    r = cli_stream_connect(&st, "echo", &a->peer, list, &a->tls, core_now_ms() + a->timeout_ms);
    if (r != 0)
        return r;
    r = tcp_exchange(a, &st, msg, len, out);
    cli_stream_close(&st);
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
        int64_t deadline = core_now_ms() + a->timeout_ms;
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
            ret = fail("no reply from %s within %d ms", a->peer.name, a->timeout_ms);
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
    ret = fail("no reply from %s: %s", a->peer.name, strerror(err));
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
    int r;

    r = parse_args(argc, argv, &a);
    if (r != CLI_ARGS_GO_ON)
        return r;

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
