/* ref_udp_echo: the reference UDP echo server of the benchmarks: THREADS threads, each with
 * its own SO_REUSEPORT socket, doing per batch what sockserv's UDP workers do: poll for the
 * socket to be readable, receive up to 16 datagrams (of up to 64 KiB each) with one
 * non-blocking recvmmsg, and send them back with one sendmmsg. The same syscalls and the same
 * buffers, without the rest (budgets, counters, the stop signal).
 *
 *   ref_udp_echo [-a ADDRESS] [-t THREADS] PORT
 *
 * PORT 0 lets the kernel pick one. Once every socket is bound it prints "PORT\n" on standard
 * output. It runs until killed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 16 /* as sockserv's UDP runner */
#define DGRAM 65536

struct loop {
    int fd;
    pthread_t tid;
};

static void *run(void *arg)
{
    struct loop *l = arg;
    static _Thread_local unsigned char bufs[BATCH][DGRAM];
    struct sockaddr_storage peers[BATCH];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];

    for (;;) {
        int n;

        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = DGRAM;
            memset(&msgs[i], 0, sizeof(msgs[i]));
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &peers[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
        }
        struct pollfd p = {.fd = l->fd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR) {
            perror("ref_udp_echo: poll");
            exit(1);
        }
        n = recvmmsg(l->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            perror("ref_udp_echo: recvmmsg");
            exit(1);
        }
        for (int i = 0; i < n; i++)
            iov[i].iov_len = msgs[i].msg_len;
        for (int sent = 0; sent < n;) {
            int k = sendmmsg(l->fd, msgs + sent, (unsigned)(n - sent), MSG_DONTWAIT);
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                break; /* a datagram that cannot be sent is dropped, as UDP may */
            }
            sent += k;
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
    int threads = 1, ch, one = 1;

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
        fprintf(stderr, "usage: ref_udp_echo [-a IPV4] [-t THREADS] PORT\n");
        return 2;
    }
    sa.sin_port = htons((uint16_t)atoi(argv[optind]));
    loops = calloc((size_t)threads, sizeof(*loops));
    if (!loops)
        return 1;
    for (int i = 0; i < threads; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            perror("ref_udp_echo: bind");
            return 1;
        }
        if (i == 0 && getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
            return 1;
        loops[i].fd = fd;
    }
    printf("%u\n", ntohs(sa.sin_port));
    fflush(stdout);
    for (int i = 1; i < threads; i++)
        pthread_create(&loops[i].tid, NULL, run, &loops[i]);
    run(&loops[0]);
    return 0;
}
