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

#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "core/ratelimit.h"
#include "core/service.h"

struct core_runner;

struct core_runner_ctx {
    const struct core_listener_cfg *cfg; /* copied by the runner */
    const struct core_service *svc;
    void *inst;                   /* the service instance; outlives the runner */
    struct core_metrics *metrics; /* outlives the runner */
    int fd;                       /* the bound socket (listening, for TCP); ownership taken */
    /* Borrowed, outlive the runner; NULL: none (no per-source limit, no loop guard). */
    struct core_sources *sources; /* TCP: the listener's sources, shared with its other runners */
    struct core_endpoints *own;   /* UDP: this daemon's listening endpoints */
};

/*
 * Starts the runner for ctx->cfg's transport and model. Takes ownership of ctx->fd, also when
 * it fails (then it is closed). Returns 0 or a negative errno with err set.
 */
int core_runner_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                      struct core_err *err);

/* Stops and frees the runner (see above). Accepts NULL. */
void core_runner_stop(struct core_runner *r);

/*
 * Sets the socket options model cfg->model needs on a new socket fd, before it is bound: for
 * `event`, SO_REUSEPORT, so that the runner can bind one more socket per worker to the same
 * address. The listener calls it on every socket it binds. Returns 0 or a negative errno.
 */
int core_runner_prepare_socket(const struct core_listener_cfg *cfg, int fd);

/* The halves, for core_runner_start(): TCP `sequential`, `thread` and `pool`; TCP `event`;
 * UDP. */
int core_runner_tcp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err);
int core_runner_event_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                            struct core_err *err);
int core_runner_udp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err);
/* The `process` model (runner_process.c). -EINVAL for services with stored files (backup):
 * their instance holds state that the sessions of one listener share. */
int core_runner_process_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                              struct core_err *err);

/* ---- shared by the runners; any thread ---- */

/* CLOCK_MONOTONIC in nanoseconds, for latency records. */
uint64_t core_runner_now_ns(void);

/*
 * The fds a listener's accepting threads keep in reserve (on /dev/null) to refuse connections
 * once the daemon is out of fds, one per accepting thread, shared by them: any thread may use
 * any of them, under the reserve's lock, which every accept4() of core_runner_accept() also
 * takes (shared), so that no thread of the listener can take the fd another one gives up for a
 * moment. A reserve fd lost all the same (to another part of the daemon) is opened again by
 * the next core_runner_accept() that finds an fd free.
 */
struct core_fd_reserve;

/* A reserve of n fds in *ret (those that cannot be opened now are opened later), or -ENOMEM.
 * Free with core_fd_reserve_free(). */
int core_fd_reserve_new(unsigned n, struct core_fd_reserve **ret);

/* Closes the reserve's fds and frees it, once no thread uses it. Accepts NULL. */
void core_fd_reserve_free(struct core_fd_reserve *res);

/*
 * accept4(lfd) with SOCK_CLOEXEC | SOCK_NONBLOCK. Returns the connection's fd, or: -EAGAIN when
 * none is waiting (or it vanished, or a signal came); -ECONNREFUSED when one was refused for
 * lack of resources (counted in connections_rejected and rejected_resources): out of fds, a
 * fd of res is closed to accept the connection, which is closed at once, and res gets the fd
 * back; another negative errno for a failure the caller should back off from (out of fds with
 * no fd left in res, counted in errors; or a lack of memory, counted in rejected_resources).
 * Any accepting thread of the listener that owns res.
 */
int core_runner_accept(int lfd, struct core_fd_reserve *res, struct core_metrics *m);

/* Counts one connection refused because max_connections is reached. */
void core_runner_reject_max(struct core_metrics *m);

/* What an admitted connection holds in its listener's sources (see core_runner_admit()). */
struct core_admission {
    struct core_source src;
    bool counted; /* one of src's open connections in the sources */
};

/*
 * Admits connection fd, just accepted, by its peer's address against cfg's
 * connection_rate_per_source and max_connections_per_source, counting it among its source's
 * open connections in sources (every connection is counted, whatever the limits, so that a
 * limit set later sees the connections already open). Returns 0 with *ret to give back to
 * core_runner_release() when the connection ends; or, refused and counted in m
 * (connections_rejected and the reason): -EAGAIN (rejected_rate), -EUSERS (rejected_per_source),
 * -ENOMEM (rejected_resources). The caller closes fd. With sources NULL, or a peer already gone,
 * it is admitted uncounted. Any thread.
 */
int core_runner_admit(struct core_sources *sources, const struct core_listener_cfg *cfg,
                      struct core_metrics *m, int fd, uint64_t now_ns, struct core_admission *ret);

/* The connection admitted as *a has ended. Accepts an uncounted one. Any thread. */
void core_runner_release(struct core_sources *sources, struct core_admission *a);

/* What serving one connection with blocking-style waits needs. */
struct core_conn_ctx {
    const struct core_service *svc;
    void *inst;
    struct core_metrics *m;
    uint32_t idle_timeout_ms; /* 0: never */
    int wake_fd;              /* readable once the runner stops: the connection is cut */
};

/*
 * Serves one accepted connection to its end (the service's session from open to close, idle
 * timeout, a lingering close after the service closes) and closes fd. Counts bytes, errors,
 * idle timeouts and service times (a greeting's from accepted_ns); the connection totals and
 * gauge are the caller's. Any thread, or a forked child.
 */
void core_runner_serve_conn(const struct core_conn_ctx *c, int fd, uint64_t accepted_ns);

/* Every runner starts with this header, which says how to stop it. */
struct core_runner {
    void (*stop)(struct core_runner *r);
    /*
     * Optional (NULL: the model cannot drain; the listener stops and restarts instead). Stops
     * accepting at once and returns; the established connections go on until they end (or a
     * deadline of the runner's choice passes). The listening socket is not closed before stop.
     * stop() must still be called and cuts what remains. Same thread rules as stop.
     */
    void (*drain)(struct core_runner *r);
    /* With drain: whether every connection of a draining runner has ended. Any thread. */
    bool (*is_drained)(struct core_runner *r);
};

#endif
