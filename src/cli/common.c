#include "cli/common.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void vsay(const char *verb, const char *fmt, va_list ap)
{
    fprintf(stderr, "sockserv %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *verb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsay(verb, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'sockserv %s --help'.\n", verb);
    return 2;
}

int cli_fail(const char *verb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsay(verb, fmt, ap);
    va_end(ap);
    return 1;
}

int64_t cli_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_remaining_ms(int64_t deadline)
{
    int64_t left = deadline - cli_now_ms();

    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

bool cli_parse_ulong(const char *text, unsigned long min, unsigned long max, unsigned long *ret)
{
    unsigned long v;
    char *end;

    if (text[0] < '0' || text[0] > '9')
        return false;
    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *ret = v;
    return true;
}

int cli_resolve(const char *verb, const char *host, const char *port, int socktype,
                struct addrinfo **ret)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = socktype,
        .ai_flags = AI_NUMERICSERV,
    };
    int r;

    r = getaddrinfo(host, port, &hints, ret);
    if (r != 0)
        return cli_fail(verb, "cannot resolve %s: %s", host,
                        r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
    return 0;
}

int cli_tcp_connect(const struct addrinfo *list, int64_t deadline)
{
    int err = ENOENT;

    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        struct pollfd pfd;
        socklen_t len = sizeof(err);
        int fd, r;

        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return fd;
        if (errno != EINPROGRESS) {
            err = errno;
            close(fd);
            continue;
        }
        pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
        do {
            r = poll(&pfd, 1, cli_remaining_ms(deadline));
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            close(fd);
            return -ETIMEDOUT;
        }
        if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0)
            return fd;
        close(fd);
    }
    return -err;
}
