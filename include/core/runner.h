#ifndef CORE_RUNNER_H
#define CORE_RUNNER_H

/*
 * Runners: the sockets and worker threads that drive a service (the concurrency models).
 * Used by the listener only. A runner is started on sockets the listener has bound and is
 * stopped by the listener: stop wakes every worker, cuts every connection, joins every thread,
 * closes every fd and frees the runner.
 *
 * Thread rules: start and stop from the thread making listener changes.
 */

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "core/service.h"

struct core_runner;

struct core_runner_ctx {
    const struct core_listener_cfg *cfg; /* copied by the runner */
    const struct core_service *svc;
    void *inst;                   /* the service instance; outlives the runner */
    struct core_metrics *metrics; /* outlives the runner */
    int fd;                       /* the bound socket (listening, for TCP); ownership taken */
};

/*
 * Starts the runner for ctx->cfg's transport and model. Takes ownership of ctx->fd, also when
 * it fails (then it is closed). Returns 0 or a negative errno with err set.
 */
int core_runner_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                      struct core_err *err);

/* Stops and frees the runner (see above). Accepts NULL. */
void core_runner_stop(struct core_runner *r);

/* The TCP and UDP halves, for core_runner_start(). */
int core_runner_tcp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err);
int core_runner_udp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err);

/* Every runner starts with this header, which says how to stop it. */
struct core_runner {
    void (*stop)(struct core_runner *r);
};

#endif
