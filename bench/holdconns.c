/*
 * holdconns: opens N TCP connections to HOST:PORT (loopback), each from a source address of
 * its own range (127.0.0.2, 127.0.0.3, ... PER_SOURCE connections each, so the ephemeral ports
 * of one source address are never the limit), checks each one is served (one echo round trip
 * of MSG), holds them until SIGTERM or SIGINT, then closes them.
 *
 * Usage: holdconns [-n N] [-p PER_SOURCE] [-c CONCURRENT] [-t TIMEOUT_S] HOST PORT
 * Prints on stdout "held N" once N connections are established and echoed (or "failed K of N:
 * REASON" and exits 1), then, when it ends, "released N". Diagnostics on stderr. It needs N
 * + a few fds: it raises its soft RLIMIT_NOFILE to the hard one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG "h\n"
#define MSG_LEN 2

enum conn_state { CONNECTING, ECHOING, HELD };

struct conn {
    int fd;
    enum conn_state state;
    unsigned got;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(void)
{
    fprintf(stderr, "usage: holdconns [-n N] [-p PER_SOURCE] [-c CONCURRENT] [-t TIMEOUT_S] "
                    "HOST PORT\n");
    exit(2);
}

/* A non-blocking connection to dst from source address 127.0.0.(2 + src_index), started. */
static int open_conn(const struct sockaddr_in *dst, unsigned src_index)
{
    struct sockaddr_in src = {.sin_family = AF_INET};
    int one = 1, fd;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* The port is chosen at connect(), by the whole 4-tuple: each source address has the
     * ephemeral range to itself. */
    (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    src.sin_addr.s_addr = htonl(0x7f000002u + src_index);
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS)) {
        int e = -errno;

        close(fd);
        return e;
    }
    return fd;
}

int main(int argc, char **argv)
{
    unsigned n = 1000, per_source = 10000, concurrent = 512, timeout_s = 60;
    unsigned started = 0, inflight = 0, held = 0;
    struct sockaddr_in dst = {.sin_family = AF_INET};
    struct epoll_event evs[256];
    struct conn *conns;
    struct rlimit rl;
    int ep, sfd, opt;
    int64_t t0, deadline;
    sigset_t mask;

    while ((opt = getopt(argc, argv, "n:p:c:t:")) != -1) {
        switch (opt) {
        case 'n':
            n = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'p':
            per_source = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            concurrent = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            timeout_s = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (argc - optind != 2 || !n || !per_source || !concurrent ||
        inet_pton(AF_INET, argv[optind], &dst.sin_addr) != 1)
        usage();
    dst.sin_port = htons((uint16_t)strtoul(argv[optind + 1], NULL, 10));
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)n + 16) {
            printf("failed 0 of %u: RLIMIT_NOFILE %llu is too low\n", n,
                   (unsigned long long)rl.rlim_cur);
            return 1;
        }
    }
    conns = calloc(n, sizeof(*conns));
    ep = epoll_create1(EPOLL_CLOEXEC);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (!conns || ep < 0 || sfd < 0) {
        printf("failed 0 of %u: %s\n", n, strerror(errno));
        return 1;
    }
    t0 = now_ms();
    deadline = t0 + (int64_t)timeout_s * 1000;
    while (held < n) {
        int k;

        while (started < n && inflight < concurrent) {
            struct conn *c = &conns[started];
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = started};
            int fd = open_conn(&dst, started / per_source);

            if (fd < 0) {
                printf("failed %u of %u: connect from 127.0.0.%u: %s\n", n - held, n,
                       2 + started / per_source, strerror(-fd));
                return 1;
            }
            c->fd = fd;
            c->state = CONNECTING;
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                printf("failed %u of %u: epoll_ctl: %s\n", n - held, n, strerror(errno));
                return 1;
            }
            started++;
            inflight++;
        }
        if (now_ms() > deadline) {
            printf("failed %u of %u: not all established and echoed within %u s\n", n - held, n,
                   timeout_s);
            return 1;
        }
        k = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < k; i++) {
            struct conn *c = &conns[evs[i].data.u32];
            char buf[16];
            ssize_t r;

            if (c->state == CONNECTING) {
                int err = 0;
                socklen_t len = sizeof(err);
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};

                (void)getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err || send(c->fd, MSG, MSG_LEN, MSG_NOSIGNAL) != MSG_LEN) {
                    printf("failed %u of %u: connection %u: %s\n", n - held, n, evs[i].data.u32,
                           strerror(err ? err : errno));
                    return 1;
                }
                c->state = ECHOING;
                (void)epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            r = recv(c->fd, buf, sizeof(buf), 0);
            if (r <= 0 || (c->got += (unsigned)r) > MSG_LEN) {
                printf("failed %u of %u: connection %u %s\n", n - held, n, evs[i].data.u32,
                       r == 0  ? "closed by the server"
                       : r < 0 ? strerror(errno)
                               : "got extra");
                return 1;
            }
            if (c->got == MSG_LEN) {
                c->state = HELD;
                (void)epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                held++;
                inflight--;
            }
        }
    }
    printf("held %u\n", held);
    fflush(stdout);
    fprintf(stderr, "holdconns: %u connections from %u source addresses in %lld ms\n", held,
            (n + per_source - 1) / per_source, (long long)(now_ms() - t0));
    {
        struct pollfd p = {.fd = sfd, .events = POLLIN};

        while (poll(&p, 1, -1) < 0 && errno == EINTR)
            ;
    }
    for (unsigned i = 0; i < n; i++)
        close(conns[i].fd);
    printf("released %u\n", held);
    free(conns);
    return 0;
}
