#include "cli/common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

int cli_sink_open(struct cli_sink *s, const char *verb, const char *target, bool chosen)
{
    const char *slash;
    struct stat st;

    memset(s, 0, sizeof(*s));
    s->fd = -1;
    if (strcmp(target, "-") == 0) {
        s->is_stdout = true;
        s->fd = STDOUT_FILENO;
        return 0;
    }
    if (!chosen && lstat(target, &st) == 0)
        return cli_fail(verb, "%s exists here; choose where to write with -o FILE", target);
    if (snprintf(s->path, sizeof(s->path), "%s", target) >= (int)sizeof(s->path))
        return cli_fail(verb, "%s: path too long", target);
    slash = strrchr(s->path, '/');
    snprintf(s->tmp, sizeof(s->tmp), "%.*s.%s.XXXXXX", slash ? (int)(slash - s->path + 1) : 0,
             s->path, slash ? slash + 1 : s->path);
    s->fd = mkostemp(s->tmp, O_CLOEXEC);
    if (s->fd < 0) {
        s->tmp[0] = '\0';
        return cli_fail(verb, "cannot create a file beside %s: %s", s->path, strerror(errno));
    }
    return 0;
}

int cli_sink_write(struct cli_sink *s, const char *verb, const void *p, size_t n)
{
    const char *b = p;

    while (n > 0) {
        ssize_t w = write(s->fd, b, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return cli_fail(verb, "writing %s: %s", s->is_stdout ? "standard output" : s->path,
                            strerror(errno));
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int cli_sink_commit(struct cli_sink *s, const char *verb)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(s->path, '/');
    mode_t mask;
    int dfd;

    if (s->is_stdout)
        return 0;
    mask = umask(0);
    (void)umask(mask);
    if (fchmod(s->fd, 0666 & ~mask) < 0 || fsync(s->fd) < 0 || close(s->fd) < 0) {
        s->fd = -1;
        return cli_fail(verb, "writing %s: %s", s->path, strerror(errno));
    }
    s->fd = -1;
    if (rename(s->tmp, s->path) < 0)
        return cli_fail(verb, "cannot rename to %s: %s", s->path, strerror(errno));
    s->tmp[0] = '\0';
    snprintf(dir, sizeof(dir), "%.*s", slash ? (slash == s->path ? 1 : (int)(slash - s->path)) : 1,
             slash ? s->path : ".");
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

void cli_sink_abort(struct cli_sink *s)
{
    if (s->is_stdout)
        return;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->tmp[0])
        (void)unlink(s->tmp);
    s->tmp[0] = '\0';
}
