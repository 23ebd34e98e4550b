/* ref_epoll_echo: the reference TCP echo server of the benchmarks, as small as an epoll echo
 * server can be: THREADS threads, each with its own SO_REUSEPORT listening socket and its own
 * epoll loop; non-blocking sockets, level-triggered, read then write back.
 *
 *   ref_epoll_echo [-a ADDRESS] [-t THREADS] PORT
 *
 * PORT 0 lets the kernel pick one. Once every socket listens it prints "PORT\n" on standard
 * output. It runs until killed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

struct conn {
    int fd;
    size_t off, len; /* bytes of buf still to write back */
    unsigned char buf[BUF_SIZE];
};

struct loop {
    int lfd;
    pthread_t tid;
};

static int listen_on(const struct sockaddr_in *sa)
{
    int fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 || listen(fd, 4096) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static void conn_close(int ep, struct conn *c)
{
    (void)epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

static void set_events(int ep, struct conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};

    (void)epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes back what is pending; returns false when the connection is gone. */
static bool flush(int ep, struct conn *c)
{
    while (c->len > 0) {
        ssize_t n = write(c->fd, c->buf + c->off, c->len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                set_events(ep, c, EPOLLOUT);
                return true;
            }
            return false;
        }
        c->off += (size_t)n;
        c->len -= (size_t)n;
    }
    return true;
}

static void on_data(int ep, struct conn *c, unsigned events)
{
    if (events & EPOLLOUT) {
        if (!flush(ep, c)) {
            conn_close(ep, c);
            return;
        }
        if (c->len > 0)
            return;
        set_events(ep, c, EPOLLIN);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        ssize_t n = read(c->fd, c->buf, BUF_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            conn_close(ep, c);
            return;
        }
        c->off = 0;
        c->len = (size_t)n;
        if (!flush(ep, c)) {
            conn_close(ep, c);
            return;
        }
        if (c->len > 0 || (size_t)n < BUF_SIZE)
            return;
    }
}

static void *run(void *arg)
{
    struct loop *l = arg;
    struct epoll_event evs[256], ev = {.events = EPOLLIN, .data.ptr = NULL};
    int ep = epoll_create1(EPOLL_CLOEXEC);

    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l->lfd, &ev) < 0) {
        perror("ref_epoll_echo: epoll");
        exit(1);
    }
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c) {
                on_data(ep, c, evs[i].events);
                continue;
            }
            for (;;) {
                int one = 1, fd = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c = malloc(sizeof(*c));
                if (!c) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                c->off = c->len = 0;
                ev.events = EPOLLIN;
                ev.data.ptr = c;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                    close(fd);
                    free(c);
                }
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    const char *addr = "127.0.0.1";
    struct loop *loops;
    int threads = 1, ch;

    while ((ch = getopt(argc, argv, "a:t:")) != -1) {
        if (ch == 'a')
            addr = optarg;
        else if (ch == 't')
            threads = atoi(optarg);
        else
            return 2;
    }
    if (argc - optind != 1 || threads < 1 || threads > 256 ||
        inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "usage: ref_epoll_echo [-a IPV4] [-t THREADS] PORT\n");
        return 2;
    }
    sa.sin_port = htons((uint16_t)atoi(argv[optind]));
    loops = calloc((size_t)threads, sizeof(*loops));
    if (!loops)
        return 1;
    for (int i = 0; i < threads; i++) {
        loops[i].lfd = listen_on(&sa);
        if (loops[i].lfd < 0) {
            fprintf(stderr, "ref_epoll_echo: listen: %s\n", strerror(-loops[i].lfd));
            return 1;
        }
        if (i == 0 && getsockname(loops[0].lfd, (struct sockaddr *)&sa, &len) < 0)
            return 1;
    }
    printf("%u\n", ntohs(sa.sin_port));
    fflush(stdout);
    for (int i = 1; i < threads; i++)
        pthread_create(&loops[i].tid, NULL, run, &loops[i]);
    run(&loops[0]);
    return 0;
}
