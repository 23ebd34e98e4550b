#include "core/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int core_runner_prepare_socket(const struct core_listener_cfg *cfg, int fd)
{
    int one = 1;

    if (cfg->transport == CORE_TCP && cfg->model == CORE_MODEL_EVENT &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        return -errno;
    return 0;
}

uint64_t core_runner_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct core_fd_reserve {
    /* Shared: an accept4() that may take a free fd; exclusive: giving up or opening a reserve
     * fd, so that no accept4() of the listener takes the fd given up for a refusal. */
    pthread_rwlock_t lock;
    atomic_uint missing; /* slots without an fd, read without the lock */
    unsigned n;
    int fd[]; /* guarded by lock; -1: missing */
};

static int spare_open(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    return fd < 0 ? -1 : fd;
}

/* Opens the missing reserve fds while fds are free. Under the lock, exclusive. */
static void refill(struct core_fd_reserve *res)
{
    unsigned missing = 0;

    for (unsigned i = 0; i < res->n; i++) {
        if (res->fd[i] >= 0)
            continue;
        if (!missing)
            res->fd[i] = spare_open();
        if (res->fd[i] < 0)
            missing++;
    }
    atomic_store_explicit(&res->missing, missing, memory_order_relaxed);
}

int core_fd_reserve_new(unsigned n, struct core_fd_reserve **ret)
{
    struct core_fd_reserve *res = calloc(1, sizeof(*res) + n * sizeof(res->fd[0]));
    pthread_rwlockattr_t attr;

    if (!res)
        return -ENOMEM;
    pthread_rwlockattr_init(&attr);
    /* A refusal does not wait behind a stream of accepts. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&res->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    res->n = n;
    for (unsigned i = 0; i < n; i++)
        res->fd[i] = -1;
    refill(res);
    *ret = res;
    return 0;
}

void core_fd_reserve_free(struct core_fd_reserve *res)
{
    if (!res)
        return;
    for (unsigned i = 0; i < res->n; i++)
        if (res->fd[i] >= 0)
            close(res->fd[i]);
    pthread_rwlock_destroy(&res->lock);
    free(res);
}

static void reject_resources(struct core_metrics *m)
{
    core_metrics_add(m, CORE_CTR_CONNECTIONS_REJECTED, 1);
    core_metrics_add(m, CORE_CTR_REJECTED_RESOURCES, 1);
}

void core_runner_reject_max(struct core_metrics *m)
{
    core_metrics_add(m, CORE_CTR_CONNECTIONS_REJECTED, 1);
    core_metrics_add(m, CORE_CTR_REJECTED_MAX_CONNECTIONS, 1);
}

/*
 * Out of fds: refuses the next connection on lfd with a reserve fd, which takes the
 * connection's place at once (a dup of another reserve fd over the connection's fd closes the
 * connection and holds its fd in one step), or is opened again after it. Returns whether res
 * had an fd to give up; *ret_fd is what accept4() returned.
 */
static bool refuse(int lfd, struct core_fd_reserve *res, struct core_metrics *m, int *ret_fd)
{
    unsigned i, j;
    int fd;

    pthread_rwlock_wrlock(&res->lock);
    if (atomic_load_explicit(&res->missing, memory_order_relaxed))
        refill(res);
    for (i = 0; i < res->n && res->fd[i] < 0; i++)
        ;
    if (i == res->n) {
        pthread_rwlock_unlock(&res->lock);
        return false;
    }
    close(res->fd[i]);
    res->fd[i] = -1;
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        for (j = 0; j < res->n && res->fd[j] < 0; j++)
            ;
        if (j < res->n && dup3(res->fd[j], fd, O_CLOEXEC) == fd) {
            res->fd[i] = fd;
        } else {
            close(fd);
            res->fd[i] = spare_open();
        }
        reject_resources(m);
    } else {
        res->fd[i] = spare_open();
    }
    if (res->fd[i] < 0)
        atomic_fetch_add_explicit(&res->missing, 1, memory_order_relaxed);
    pthread_rwlock_unlock(&res->lock);
    *ret_fd = fd;
    return true;
}

int core_runner_accept(int lfd, struct core_fd_reserve *res, struct core_metrics *m)
{
    int fd, r = 0;

    /* A reserve fd lost once fds ran out: take it again as soon as one is free. */
    if (atomic_load_explicit(&res->missing, memory_order_relaxed)) {
        pthread_rwlock_wrlock(&res->lock);
        refill(res);
        pthread_rwlock_unlock(&res->lock);
    }
    pthread_rwlock_rdlock(&res->lock);
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        r = -errno;
    pthread_rwlock_unlock(&res->lock);
    if (fd >= 0)
        return fd;
    switch (r) {
    case -EAGAIN:
    case -EINTR:
    case -ECONNABORTED:
        return -EAGAIN;
    case -EMFILE:
    case -ENFILE:
        /* Out of fds: the connection would wait in the backlog until the client gives up.
         * Refuse it instead, with an fd kept in reserve for that. */
        if (refuse(lfd, res, m, &fd))
            return fd >= 0 ? -ECONNREFUSED : -EAGAIN;
        break;
    case -ENOBUFS:
    case -ENOMEM:
        reject_resources(m);
        return r;
    default:
        break;
    }
    core_metrics_add(m, CORE_CTR_ERRORS, 1);
    return r;
}

int core_runner_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                      struct core_err *err)
{
    if (ctx->cfg->transport == CORE_UDP)
        return core_runner_udp_start(ctx, ret, err);
    switch (ctx->cfg->model) {
    case CORE_MODEL_SEQUENTIAL:
    case CORE_MODEL_THREAD:
    case CORE_MODEL_POOL:
        return core_runner_tcp_start(ctx, ret, err);
    case CORE_MODEL_EVENT:
        return core_runner_event_start(ctx, ret, err);
    case CORE_MODEL_PROCESS:
        return core_runner_process_start(ctx, ret, err);
    default:
        close(ctx->fd);
        return core_err_set(err, -EINVAL, "model", "model: '%s' is not available",
                            core_model_name(ctx->cfg->model));
    }
}

void core_runner_stop(struct core_runner *r)
{
    if (r)
        r->stop(r);
}
