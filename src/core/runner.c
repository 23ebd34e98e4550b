/*
 * The runner base: what every runner shares (its configuration and service, the listening
 * socket, the stop and drain handshake, the thread list, accepting with the fd reserve and
 * admitting by source and max_connections), so that a runner file holds only its own I/O.
 */
#include "core/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fdbudget.h"
#include "core/log.h"
#include "core/thread.h"
#include "core/tls.h"

/*
 * The fds a listener's accepting threads keep in reserve (on /dev/null) to refuse connections
 * once the daemon is out of fds, one per accepting thread, shared by them: any thread may use
 * any of them, under the reserve's lock, which every accept4() of accept_spare() also takes
 * (shared), so that no thread of the listener can take the fd another one gives up for a
 * moment. A reserve fd lost all the same (to another part of the daemon) is opened again by
 * the next accept_spare() that finds an fd free.
 */
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

/* A reserve of n fds, or -ENOMEM. They are opened by the first accept (accept_spare()): a
 * listener that no one connects to holds none, and a change creating hundreds opens none. */
static int fd_reserve_new(unsigned n, struct core_fd_reserve **ret)
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
    atomic_init(&res->missing, n);
    *ret = res;
    return 0;
}

/* Closes the reserve's fds and frees it, once no thread uses it. Accepts NULL. */
static void fd_reserve_free(struct core_fd_reserve *res)
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

static void reject_max(struct core_metrics *m)
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

/*
 * accept4(lfd) with SOCK_CLOEXEC | SOCK_NONBLOCK. Returns the connection's fd, or: -EAGAIN when
 * none is waiting (or it vanished, or a signal came); -ECONNREFUSED when one was refused for
 * lack of fds with a fd of res (counted in connections_rejected and rejected_resources);
 * another negative errno for a failure to back off from (out of fds with no fd left in res,
 * counted in errors; or a lack of memory, counted in rejected_resources).
 */
static int accept_spare(int lfd, struct core_fd_reserve *res, struct core_metrics *m)
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
    case -EINVAL:
        /* The socket was shut down by a change that moved the listener, which told the runner
         * to drain first: nothing to accept, and nothing to back off from. */
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

static void reject(struct core_metrics *m, enum core_counter reason)
{
    core_metrics_add(m, CORE_CTR_CONNECTIONS_REJECTED, 1);
    core_metrics_add(m, reason, 1);
}

/*
 * Admits connection fd by its peer's address against cfg's per-source limits, counting it
 * among its source's open connections (whatever the limits). Returns 0 with *ret, or refused
 * and counted: -EAGAIN (rejected_rate), -EUSERS (rejected_per_source), -ENOMEM
 * (rejected_resources); the caller closes fd. With sources NULL, or a peer already gone, it is
 * admitted uncounted.
 */
static int admit(struct core_sources *sources, const struct core_listener_cfg *cfg,
                 struct core_metrics *m, int fd, uint64_t now_ns, struct core_admission *ret)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct core_admission a = {0};
    int r;

    if (sources && getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
        core_source_from_sockaddr((struct sockaddr *)&ss, &a.src, NULL)) {
        r = core_sources_admit(sources, &a.src, cfg->max_connections_per_source,
                               cfg->connection_rate_per_source, now_ns);
        switch (r) {
        case 0:
            a.counted = true;
            break;
        case -EAGAIN:
            reject(m, CORE_CTR_REJECTED_RATE);
            return r;
        case -EUSERS:
            reject(m, CORE_CTR_REJECTED_PER_SOURCE);
            return r;
        default:
            reject(m, CORE_CTR_REJECTED_RESOURCES);
            return r;
        }
    }
    *ret = a;
    return 0;
}

/* The connection admitted as *a has ended. Accepts an uncounted one. */
static void release(struct core_sources *sources, struct core_admission *a)
{
    if (sources && a->counted)
        core_sources_release(sources, &a->src);
    a->counted = false;
}

/* ---- the base ---- */

/* Says when the descriptor budget leaves cfg's listener fewer connections than it asks. */
static void warn_capped(const struct core_listener_cfg *cfg)
{
    char note[256];
    uint64_t effective;

    if (core_fdbudget_cap(cfg->max_connections, &effective, note, sizeof(note)))
        core_log_warn("listener %s: %s", cfg->id, note);
}

void core_runner_signal(int fd)
{
    uint64_t one = 1;

    (void)!write(fd, &one, sizeof(one));
}

static void base_drain(struct core_runner *r)
{
    atomic_store(&r->draining, true);
    core_runner_signal(r->drain_fd);
}

static bool base_is_drained(struct core_runner *r)
{
    return atomic_load(&r->n_accepting) == 0 && atomic_load(&r->n_conns) == 0;
}

int core_runner_new(size_t size, const struct core_runner_ctx *ctx,
                    const struct core_runner_spec *spec, struct core_runner **ret,
                    struct core_err *err)
{
    struct core_runner *r = calloc(1, size);
    int e;

    if (!r) {
        close(ctx->fd);
        return core_err_set(err, -ENOMEM, NULL, "cannot start the runner: out of memory");
    }
    r->svc = ctx->svc;
    r->inst = ctx->inst;
    r->m = ctx->metrics;
    r->sources = ctx->sources;
    r->own = ctx->own;
    r->emitter = ctx->emitter;
    r->pool = ctx->threads;
    r->lfd = ctx->fd;
    r->wake_fd = -1;
    r->drain_fd = -1;
    atomic_init(&r->n_accepting, spec->accepting);
    atomic_init(&r->draining, false);
    atomic_init(&r->n_conns, 0);
    e = core_listener_cfg_copy(ctx->cfg, &r->cfg);
    if (e < 0)
        goto out_abort;
    if (ctx->cfg->transport == CORE_TCP && json_object_get(ctx->cfg->options, CORE_TLS_OPTION)) {
        e = core_tls_new(json_object_get(ctx->cfg->options, CORE_TLS_OPTION), &r->tls, err);
        if (e < 0) {
            core_runner_stop(r);
            return e;
        }
    }
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wake_fd < 0) {
        e = -errno;
        goto out_abort;
    }
    if (spec->drains) {
        r->drain_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->drain_fd < 0) {
            e = -errno;
            goto out_abort;
        }
        r->drain = base_drain;
        r->is_drained = base_is_drained;
    }
    if (ctx->cfg->transport == CORE_TCP)
        warn_capped(&r->cfg);
    if (spec->accepting) {
        e = fd_reserve_new(spec->accepting, &r->reserve);
        if (e < 0)
            goto out_abort;
    }
    r->threads = calloc(spec->threads ? spec->threads : 1, sizeof(*r->threads));
    if (!r->threads) {
        e = -ENOMEM;
        goto out_abort;
    }
    r->max_threads = spec->threads;
    r->destroy = spec->destroy; /* from here on, the runner's own part is its to free */
    *ret = r;
    return 0;

out_abort:
    return core_runner_abort(r, e, "runner", err);
}

int core_runner_spawn(struct core_runner *r, void *(*fn)(void *), void *arg, const char *role)
{
    char name[CORE_THREAD_NAME_MAX + 1];
    int e;

    if (r->n_threads == r->max_threads)
        return -EAGAIN;
    core_thread_name_listener(name, r->cfg.id, role);
    e = core_threads_run(r->pool, fn, arg, name, CORE_THREAD_STACK_SIZE, &r->threads[r->n_threads]);
    if (e < 0)
        return e;
    r->n_threads++;
    return 0;
}

void core_runner_stop(struct core_runner *r)
{
    if (!r)
        return;
    if (r->wake_fd >= 0)
        core_runner_signal(r->wake_fd);
    for (unsigned i = 0; i < r->n_threads; i++)
        core_threads_join(r->threads[i]);
    if (r->destroy)
        r->destroy(r);
    if (r->lfd >= 0)
        close(r->lfd);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    if (r->drain_fd >= 0)
        close(r->drain_fd);
    fd_reserve_free(r->reserve);
    core_tls_free(r->tls);
    core_listener_cfg_fini(&r->cfg);
    free(r->threads);
    free(r);
}

int core_runner_abort(struct core_runner *r, int error, const char *what, struct core_err *err)
{
    core_runner_stop(r);
    return core_err_set(err, error, NULL, "cannot start the %s: %s", what, strerror(-error));
}

unsigned core_runner_wait(struct core_runner *r, int fd, int extra)
{
    struct pollfd p[4] = {
        {.fd = r->wake_fd, .events = POLLIN},
        {.fd = r->drain_fd, .events = POLLIN},
        {.fd = fd, .events = POLLIN},
        {.fd = extra, .events = POLLIN},
    };
    unsigned ret = 0;

    if (poll(p, 4, -1) < 0) {
        if (errno == EINTR)
            return 0;
        core_log_error("listener %s: poll: %s", r->cfg.id, strerror(errno));
        return CORE_RUNNER_WAIT_END;
    }
    if (p[0].revents || p[1].revents)
        ret |= CORE_RUNNER_WAIT_END;
    if (p[2].revents)
        ret |= CORE_RUNNER_WAIT_FD;
    if (p[3].revents)
        ret |= CORE_RUNNER_WAIT_EXTRA;
    return ret;
}

bool core_runner_backoff(struct core_runner *r)
{
    struct pollfd p = {.fd = r->wake_fd, .events = POLLIN};

    return poll(&p, 1, CORE_RUNNER_BACKOFF_MS) > 0;
}

int core_runner_accept_conn(struct core_runner *r, int lfd, bool *warned, struct core_accepted *ret)
{
    struct core_accepted a;

    a.fd = accept_spare(lfd, r->reserve, r->m);
    if (a.fd == -EAGAIN || a.fd == -ECONNREFUSED)
        return a.fd;
    if (a.fd < 0) {
        /* Out of fds or memory: the caller waits a little instead of spinning. */
        if (!*warned)
            core_log_warn("listener %s: accept: %s (backing off)", r->cfg.id, strerror(-a.fd));
        *warned = true;
        return a.fd;
    }
    *warned = false;
    return core_runner_admit_conn(r, a.fd, core_now_ns(), ret);
}

int core_runner_admit_conn(struct core_runner *r, int fd, uint64_t accepted_ns,
                           struct core_accepted *ret)
{
    struct core_accepted a = {.fd = fd, .accepted_ns = accepted_ns};

    if (admit(r->sources, &r->cfg, r->m, a.fd, a.accepted_ns, &a.adm) < 0) {
        close(a.fd);
        return -ECONNREFUSED;
    }
    if (atomic_fetch_add(&r->n_conns, 1) >= r->cfg.max_connections) {
        atomic_fetch_sub(&r->n_conns, 1);
        release(r->sources, &a.adm);
        reject_max(r->m);
        close(a.fd);
        return -ECONNREFUSED;
    }
    /* Every listener's connections together stay out of the daemon's descriptor reserve. */
    if (!core_fdbudget_conn_take()) {
        atomic_fetch_sub(&r->n_conns, 1);
        release(r->sources, &a.adm);
        reject(r->m, CORE_CTR_REJECTED_FD_BUDGET);
        close(a.fd);
        return -ECONNREFUSED;
    }
    *ret = a;
    return 0;
}

void core_runner_conn_begin(struct core_runner *r)
{
    core_metrics_add(r->m, CORE_CTR_CONNECTIONS_TOTAL, 1);
    core_metrics_add(r->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
}

void core_runner_conn_end(struct core_runner *r, struct core_admission *adm)
{
    release(r->sources, adm);
    core_fdbudget_conn_end();
    core_metrics_sub(r->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
    atomic_fetch_sub(&r->n_conns, 1);
}

void core_runner_conn_refuse(struct core_runner *r, int fd, struct core_admission *adm)
{
    if (fd >= 0)
        close(fd);
    release(r->sources, adm);
    core_fdbudget_conn_end();
    atomic_fetch_sub(&r->n_conns, 1);
    reject_resources(r->m);
}

void core_runner_accepting_ended(struct core_runner *r)
{
    atomic_fetch_sub(&r->n_accepting, 1);
}

bool core_runner_accepting_resume(struct core_runner *r)
{
    /* Counted first, then the drain looked at: a drain either sees the count (and waits for
     * the thread, whose wait ends at the drain before it accepts) or is seen here. */
    atomic_fetch_add(&r->n_accepting, 1);
    if (!atomic_load(&r->draining))
        return true;
    atomic_fetch_sub(&r->n_accepting, 1);
    return false;
}

size_t core_runners_wait_not_accepting(struct core_runner *const *rs, size_t n, int timeout_ms)
{
    int64_t deadline = core_now_ms() + timeout_ms;
    size_t left;

    /* The runners' threads need the CPU to see their drain: this one sleeps between looks. */
    for (;;) {
        left = 0;
        for (size_t i = 0; i < n; i++)
            left += atomic_load(&rs[i]->n_accepting) > 0;
        if (left == 0 || core_now_ms() >= deadline)
            return left;
        (void)nanosleep(&(struct timespec){.tv_nsec = 100 * 1000}, NULL);
    }
}

struct core_conn_ctx core_runner_conn_ctx(const struct core_runner *r)
{
    return (struct core_conn_ctx){.svc = r->svc,
                                  .inst = r->inst,
                                  .m = r->m,
                                  .idle_timeout_ms = r->cfg.idle_timeout_ms,
                                  .wake_fd = r->wake_fd,
                                  .tls = r->tls};
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
    case CORE_MODEL_URING:
        return core_runner_uring_start(ctx, ret, err);
    default:
        close(ctx->fd);
        return core_err_set(err, -EINVAL, "model", "model: '%s' is not available",
                            core_model_name(ctx->cfg->model));
    }
}
