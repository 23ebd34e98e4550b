/* ref_uring_echo: the io_uring reference TCP echo server of the benchmarks, as small as one can
 * be: THREADS threads, each with its own SO_REUSEPORT listening socket and its own ring; one
 * multishot accept, one multishot receive per connection into a ring of provided buffers, one
 * send per message straight from the buffer it arrived in (given back when the send is done),
 * one io_uring_enter per turn of the loop.
 *
 * -b: waits in batches as the `uring` model does (core/batch.h): once a turn brought 4 or more
 * messages, the next io_uring_enter asks for about as many within a 50 us window (io_uring's
 * min_wait, kernel 6.12), so that a batch costs one wake-up. The reference for that technique.
 *
 *   ref_uring_echo [-a ADDRESS] [-t THREADS] [-b] PORT
 *
 * PORT 0 lets the kernel pick one. Once every socket listens it prints "PORT\n" on standard
 * output. It runs until killed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/batch.h"

#define BUF_SIZE (16 * 1024)
#define BUF_COUNT 1024
#define BGID 0

enum { OP_ACCEPT, OP_RECV, OP_SEND };

struct loop {
    int lfd;
    pthread_t tid;
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    unsigned char *bufs;
    unsigned conns;          /* open connections */
    unsigned sends;          /* sends queued since the last wait */
    struct core_batch batch; /* -b: messages the next wait asks for */
};

static bool batch; /* -b */

static int listen_on(const struct sockaddr_in *sa)
{
    int fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

/* user_data: the fd, the buffer id and the operation. */
static uint64_t ud(int fd, unsigned bid, unsigned op)
{
    return (uint64_t)(uint32_t)fd << 32 | (uint64_t)bid << 8 | op;
}

static struct io_uring_sqe *sqe_get(struct loop *l)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

    while (!sqe) {
        io_uring_submit(&l->ring);
        sqe = io_uring_get_sqe(&l->ring);
    }
    return sqe;
}

static void arm_accept(struct loop *l)
{
    struct io_uring_sqe *sqe = sqe_get(l);

    io_uring_prep_multishot_accept(sqe, l->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud(l->lfd, 0, OP_ACCEPT));
}

static void arm_recv(struct loop *l, int fd)
{
    struct io_uring_sqe *sqe = sqe_get(l);

    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud(fd, 0, OP_RECV));
}

static void recycle(struct loop *l, unsigned bid)
{
    io_uring_buf_ring_add(l->br, l->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(l->br, 1);
}

static void on_cqe(struct loop *l, const struct io_uring_cqe *cqe)
{
    uint64_t d = io_uring_cqe_get_data64(cqe);
    int fd = (int)(d >> 32);
    unsigned op = d & 0xff, bid = (unsigned)(d >> 8) & 0xffffff;

    switch (op) {
    case OP_ACCEPT:
        if (cqe->res >= 0) {
            int one = 1;

            (void)setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            arm_recv(l, cqe->res);
            l->conns++;
        }
        if (!(cqe->flags & IORING_CQE_F_MORE))
            arm_accept(l);
        return;
    case OP_RECV:
        if (cqe->res > 0) {
            struct io_uring_sqe *sqe = sqe_get(l);

            bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            io_uring_prep_send(sqe, fd, l->bufs + (size_t)bid * BUF_SIZE, (size_t)cqe->res,
                               MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, ud(fd, bid, OP_SEND));
            l->sends++;
            if (!(cqe->flags & IORING_CQE_F_MORE))
                arm_recv(l, fd);
            return;
        }
        if (cqe->res == -ENOBUFS) {
            arm_recv(l, fd);
            return;
        }
        if (!(cqe->flags & IORING_CQE_F_MORE)) {
            close(fd);
            l->conns--;
        }
        return;
    case OP_SEND:
    default:
        recycle(l, bid);
        return;
    }
}

static void *run(void *arg)
{
    struct loop *l = arg;
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_CQSIZE,
                                .cq_entries = 8192};
    struct io_uring_buf_reg reg = {.ring_entries = BUF_COUNT, .bgid = BGID};
    size_t br_size = BUF_COUNT * sizeof(struct io_uring_buf);

    if (io_uring_queue_init_params(1024, &l->ring, &p) < 0) {
        p.flags = IORING_SETUP_CQSIZE;
        if (io_uring_queue_init_params(1024, &l->ring, &p) < 0) {
            fprintf(stderr, "ref_uring_echo: io_uring_queue_init failed\n");
            exit(1);
        }
    }
    l->br = mmap(NULL, br_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    l->bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
    if (l->br == MAP_FAILED || !l->bufs) {
        fprintf(stderr, "ref_uring_echo: out of memory\n");
        exit(1);
    }
    reg.ring_addr = (uint64_t)(uintptr_t)l->br;
    if (io_uring_register_buf_ring(&l->ring, &reg, 0) < 0) {
        fprintf(stderr, "ref_uring_echo: io_uring_register_buf_ring failed\n");
        exit(1);
    }
    io_uring_buf_ring_init(l->br);
    for (unsigned i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(l->br, l->bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BUF_COUNT), (int)i);
    io_uring_buf_ring_advance(l->br, BUF_COUNT);
    arm_accept(l);
    if (batch && !(p.features & IORING_FEAT_MIN_TIMEOUT)) {
        fprintf(stderr, "ref_uring_echo: -b: the kernel has no min_wait (6.12)\n");
        exit(1);
    }
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0, n_in = 0;

        /* -EINTR: see what came */
        if (l->batch.want > 1)
            (void)core_batch_submit_and_wait(&l->ring, l->sends + l->batch.want, NULL);
        else
            (void)io_uring_submit_and_wait(&l->ring, 1);
        l->sends = 0;
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            unsigned op = io_uring_cqe_get_data64(cqe) & 0xff;

            n_in += op == OP_ACCEPT || op == OP_RECV;
            on_cqe(l, cqe);
            n++;
        }
        io_uring_cq_advance(&l->ring, n);
        if (batch)
            core_batch_turned(&l->batch, n_in, core_batch_max(l->conns));
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

    while ((ch = getopt(argc, argv, "a:bt:")) != -1) {
        if (ch == 'b')
            batch = true;
        else if (ch == 'a')
            addr = optarg;
        else if (ch == 't')
            threads = atoi(optarg);
        else
            return 2;
    }
    if (argc - optind != 1 || threads < 1 || threads > 256 ||
        inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "usage: ref_uring_echo [-a IPV4] [-t THREADS] [-b] PORT\n");
        return 2;
    }
    sa.sin_port = htons((uint16_t)atoi(argv[optind]));
    loops = calloc((size_t)threads, sizeof(*loops));
    if (!loops)
        return 1;
    for (int i = 0; i < threads; i++) {
        loops[i].lfd = listen_on(&sa);
        if (loops[i].lfd < 0) {
            fprintf(stderr, "ref_uring_echo: listen: %s\n", strerror(-loops[i].lfd));
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
