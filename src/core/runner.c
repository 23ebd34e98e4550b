#include "core/runner.h"

#include <errno.h>
#include <fcntl.h>
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

int core_runner_spare_open(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    return fd < 0 ? -errno : fd;
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

int core_runner_accept(int lfd, int *spare, struct core_metrics *m)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    int r;

    if (fd >= 0)
        return fd;
    r = -errno;
    switch (r) {
    case -EAGAIN:
    case -EINTR:
    case -ECONNABORTED:
        return -EAGAIN;
    case -EMFILE:
    case -ENFILE:
        /* Out of fds: the connection would wait in the backlog until the client gives up.
         * Refuse it instead, with the fd kept in reserve for that. */
        if (*spare < 0)
            break;
        close(*spare);
        *spare = -1;
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            reject_resources(m);
        }
        *spare = core_runner_spare_open();
        return fd >= 0 ? -ECONNREFUSED : -EAGAIN;
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
