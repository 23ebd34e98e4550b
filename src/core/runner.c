#include "core/runner.h"

#include <errno.h>
#include <unistd.h>

int core_runner_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                      struct core_err *err)
{
    if (ctx->cfg->transport == CORE_UDP)
        return core_runner_udp_start(ctx, ret, err);
    switch (ctx->cfg->model) {
    case CORE_MODEL_SEQUENTIAL:
    case CORE_MODEL_THREAD:
        return core_runner_tcp_start(ctx, ret, err);
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
