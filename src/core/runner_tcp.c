/*
 * TCP runners: `sequential` (the acceptor thread serves each connection itself, one after the
 * other, as the lecture's first server), `thread` (one thread per connection) and `pool`
 * (`workers` threads share the listening socket; each accepts and serves one connection at a
 * time, and connections beyond the pool wait in the backlog). Sockets are non-blocking and every
 * wait is a poll(2) that also watches the runner's wake eventfd, so a stop reaches every thread
 * at once.
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

#include "core/log.h"

#define CONN_STACK_SIZE (256 * 1024)
#define ACCEPT_BACKOFF_MS 100

struct tcp_runner;

struct conn {
    struct tcp_runner *rn;
    int fd;
    uint64_t accepted_ns;
    struct core_admission adm;
    pthread_t thread;
    struct conn *next; /* in tcp_runner.active or .finished; guarded by tcp_runner.lock */
};

struct tcp_runner {
    struct core_runner base;
    struct core_listener_cfg cfg;
    const struct core_service *svc;
    void *inst;
    struct core_metrics *m;
    struct core_sources *sources;    /* borrowed; may be NULL */
    struct core_fd_reserve *reserve; /* one fd per accepting thread, for core_runner_accept() */
    int lfd;
    int wake_fd;           /* readable once the runner stops: every wait watches it */
    int reap_fd;           /* a connection thread finished and waits to be joined */
    int drain_fd;          /* readable once the runner drains: accepting ends */
    atomic_uint accepting; /* threads still in their accept loop */
    pthread_t *workers;    /* the acceptor (sequential, thread) or the pool's workers */
    unsigned n_workers;    /* started */

    pthread_mutex_t lock;
    pthread_cond_t cond;   /* signalled when a connection thread finishes */
    struct conn *active;   /* guarded by lock: connection threads running */
    struct conn *finished; /* guarded by lock: connection threads ended, not joined */
    unsigned n_active;     /* guarded by lock */
};

/* Serves one admitted connection to its end and counts it; closes fd and gives back adm (before
 * the gauge falls: whoever sees the gauge fall sees its source's place free). */
static void serve(struct tcp_runner *rn, int fd, uint64_t accepted_ns, struct core_admission *adm)
{
    const struct core_conn_ctx c = {.svc = rn->svc,
                                    .inst = rn->inst,
                                    .m = rn->m,
                                    .idle_timeout_ms = rn->cfg.idle_timeout_ms,
                                    .wake_fd = rn->wake_fd};

    core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_TOTAL, 1);
    core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
    core_runner_serve_conn(&c, fd, accepted_ns);
    core_runner_release(rn->sources, adm);
    core_metrics_sub(rn->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct tcp_runner *rn = c->rn;
    uint64_t one = 1;

    serve(rn, c->fd, c->accepted_ns, &c->adm);
    pthread_mutex_lock(&rn->lock);
    for (struct conn **p = &rn->active; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    c->next = rn->finished;
    rn->finished = c;
    rn->n_active--;
    /* Still under the lock: once active is empty, stop may close reap_fd. */
    (void)!write(rn->reap_fd, &one, sizeof(one));
    pthread_cond_broadcast(&rn->cond);
    pthread_mutex_unlock(&rn->lock);
    return NULL;
}

/* Joins the connection threads that finished. */
static void reap(struct tcp_runner *rn)
{
    struct conn *list;

    pthread_mutex_lock(&rn->lock);
    list = rn->finished;
    rn->finished = NULL;
    pthread_mutex_unlock(&rn->lock);
    while (list) {
        struct conn *next = list->next;

        pthread_join(list->thread, NULL);
        free(list);
        list = next;
    }
}

static void reject_resources(struct tcp_runner *rn, int fd)
{
    core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_REJECTED, 1);
    core_metrics_add(rn->m, CORE_CTR_REJECTED_RESOURCES, 1);
    close(fd);
}

/* Hands an admitted connection to a new thread, or refuses it (giving back adm). */
static void spawn(struct tcp_runner *rn, int fd, uint64_t accepted_ns, struct core_admission *adm)
{
    pthread_attr_t attr;
    struct conn *c;
    int r;

    pthread_mutex_lock(&rn->lock);
    if (rn->n_active >= rn->cfg.max_connections) {
        pthread_mutex_unlock(&rn->lock);
        core_runner_release(rn->sources, adm);
        core_runner_reject_max(rn->m);
        close(fd);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        pthread_mutex_unlock(&rn->lock);
        core_runner_release(rn->sources, adm);
        reject_resources(rn, fd);
        return;
    }
    c->rn = rn;
    c->fd = fd;
    c->accepted_ns = accepted_ns;
    c->adm = *adm;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, CONN_STACK_SIZE);
    r = pthread_create(&c->thread, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        pthread_mutex_unlock(&rn->lock);
        free(c);
        core_runner_release(rn->sources, adm);
        reject_resources(rn, fd);
        return;
    }
    c->next = rn->active;
    rn->active = c;
    rn->n_active++;
    pthread_mutex_unlock(&rn->lock);
}

/* Waits up to ACCEPT_BACKOFF_MS unless the runner stops; returns whether it stops. */
static bool backoff(struct tcp_runner *rn)
{
    struct pollfd p = {.fd = rn->wake_fd, .events = POLLIN};

    return poll(&p, 1, ACCEPT_BACKOFF_MS) > 0;
}

static void warn_accept(struct tcp_runner *rn, int r, bool *warned)
{
    if (!*warned)
        core_log_warn("listener %s: accept: %s (backing off)", rn->cfg.id, strerror(-r));
    *warned = true;
}

/* sequential and thread: one thread accepts; it serves each connection itself or hands it to
 * a new thread. */
static void *acceptor_main(void *arg)
{
    struct tcp_runner *rn = arg;
    bool warned = false;

    for (;;) {
        struct pollfd p[4] = {
            {.fd = rn->lfd, .events = POLLIN},
            {.fd = rn->wake_fd, .events = POLLIN},
            {.fd = rn->reap_fd, .events = POLLIN},
            {.fd = rn->drain_fd, .events = POLLIN},
        };
        struct core_admission adm;
        uint64_t count, now;
        int fd;

        if (poll(p, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            core_log_error("listener %s: poll: %s", rn->cfg.id, strerror(errno));
            break;
        }
        if (p[1].revents || p[3].revents)
            break;
        if (p[2].revents) {
            (void)!read(rn->reap_fd, &count, sizeof(count));
            reap(rn);
        }
        if (!p[0].revents)
            continue;
        fd = core_runner_accept(rn->lfd, rn->reserve, rn->m);
        if (fd == -EAGAIN || fd == -ECONNREFUSED)
            continue;
        if (fd < 0) {
            /* Out of fds or memory: wait a little instead of spinning, still stoppable. */
            warn_accept(rn, fd, &warned);
            if (backoff(rn))
                break;
            continue;
        }
        warned = false;
        now = core_runner_now_ns();
        if (core_runner_admit(rn->sources, &rn->cfg, rn->m, fd, now, &adm) < 0) {
            close(fd);
            continue;
        }
        if (rn->cfg.model == CORE_MODEL_SEQUENTIAL)
            serve(rn, fd, now, &adm);
        else
            spawn(rn, fd, now, &adm);
    }
    atomic_fetch_sub(&rn->accepting, 1);
    return NULL;
}

/* pool: each worker accepts and serves one connection at a time. */
static void *pool_main(void *arg)
{
    struct tcp_runner *rn = arg;
    bool warned = false;

    for (;;) {
        struct core_admission adm;
        uint64_t accepted_ns;
        bool full;
        int fd;

        struct pollfd p[3] = {
            {.fd = rn->lfd, .events = POLLIN},
            {.fd = rn->wake_fd, .events = POLLIN},
            {.fd = rn->drain_fd, .events = POLLIN},
        };

        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            core_log_error("listener %s: poll: %s", rn->cfg.id, strerror(errno));
            break;
        }
        if (p[1].revents || p[2].revents)
            break;
        fd = core_runner_accept(rn->lfd, rn->reserve, rn->m);
        if (fd == -EAGAIN || fd == -ECONNREFUSED)
            continue; /* another worker took it */
        if (fd < 0) {
            warn_accept(rn, fd, &warned);
            if (backoff(rn))
                break;
            continue;
        }
        warned = false;
        accepted_ns = core_runner_now_ns();
        if (core_runner_admit(rn->sources, &rn->cfg, rn->m, fd, accepted_ns, &adm) < 0) {
            close(fd);
            continue;
        }
        pthread_mutex_lock(&rn->lock);
        full = rn->n_active >= rn->cfg.max_connections;
        if (!full)
            rn->n_active++;
        pthread_mutex_unlock(&rn->lock);
        if (full) {
            core_runner_release(rn->sources, &adm);
            core_runner_reject_max(rn->m);
            close(fd);
            continue;
        }
        serve(rn, fd, accepted_ns, &adm);
        pthread_mutex_lock(&rn->lock);
        rn->n_active--;
        pthread_mutex_unlock(&rn->lock);
    }
    atomic_fetch_sub(&rn->accepting, 1);
    return NULL;
}

static void tcp_runner_free(struct tcp_runner *rn)
{
    if (rn->lfd >= 0)
        close(rn->lfd);
    if (rn->wake_fd >= 0)
        close(rn->wake_fd);
    if (rn->reap_fd >= 0)
        close(rn->reap_fd);
    if (rn->drain_fd >= 0)
        close(rn->drain_fd);
    core_fd_reserve_free(rn->reserve);
    pthread_cond_destroy(&rn->cond);
    pthread_mutex_destroy(&rn->lock);
    core_listener_cfg_fini(&rn->cfg);
    free(rn->workers);
    free(rn);
}

static void tcp_runner_stop(struct core_runner *base)
{
    struct tcp_runner *rn = (struct tcp_runner *)base;
    uint64_t one = 1;

    (void)!write(rn->wake_fd, &one, sizeof(one));
    for (unsigned i = 0; i < rn->n_workers; i++)
        pthread_join(rn->workers[i], NULL);
    /* Every connection thread sees the wake fd and ends; join them all. */
    pthread_mutex_lock(&rn->lock);
    while (rn->active)
        pthread_cond_wait(&rn->cond, &rn->lock);
    pthread_mutex_unlock(&rn->lock);
    reap(rn);
    tcp_runner_free(rn);
}

/* Live reconfiguration: every accepting thread stops accepting and ends (sequential: once its
 * connection ends); the connections being served go on until they end, or until stop. */
static void tcp_runner_drain(struct core_runner *base)
{
    struct tcp_runner *rn = (struct tcp_runner *)base;
    uint64_t one = 1;

    (void)!write(rn->drain_fd, &one, sizeof(one));
}

static bool tcp_runner_is_drained(struct core_runner *base)
{
    struct tcp_runner *rn = (struct tcp_runner *)base;
    bool drained;

    pthread_mutex_lock(&rn->lock);
    drained = atomic_load(&rn->accepting) == 0 && rn->n_active == 0;
    pthread_mutex_unlock(&rn->lock);
    return drained;
}

int core_runner_tcp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err)
{
    struct tcp_runner *rn;
    unsigned n;
    int r;

    rn = calloc(1, sizeof(*rn));
    if (!rn) {
        close(ctx->fd);
        return -ENOMEM;
    }
    rn->base.stop = tcp_runner_stop;
    rn->base.drain = tcp_runner_drain;
    rn->base.is_drained = tcp_runner_is_drained;
    rn->svc = ctx->svc;
    rn->inst = ctx->inst;
    rn->m = ctx->metrics;
    rn->sources = ctx->sources;
    rn->lfd = ctx->fd;
    rn->wake_fd = -1;
    rn->reap_fd = -1;
    rn->drain_fd = -1;
    atomic_init(&rn->accepting, 0);
    pthread_mutex_init(&rn->lock, NULL);
    pthread_cond_init(&rn->cond, NULL);
    r = core_listener_cfg_copy(ctx->cfg, &rn->cfg);
    if (r < 0)
        goto out_free;
    if (fcntl(rn->lfd, F_SETFL, fcntl(rn->lfd, F_GETFL) | O_NONBLOCK) < 0) {
        r = -errno;
        goto out_free;
    }
    rn->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rn->reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rn->drain_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rn->wake_fd < 0 || rn->reap_fd < 0 || rn->drain_fd < 0) {
        r = -errno;
        goto out_free;
    }
    n = rn->cfg.model == CORE_MODEL_POOL ? rn->cfg.workers : 1;
    r = core_fd_reserve_new(n, &rn->reserve);
    if (r < 0)
        goto out_free;
    rn->workers = calloc(n, sizeof(*rn->workers));
    if (!rn->workers) {
        r = -ENOMEM;
        goto out_free;
    }
    for (; rn->n_workers < n; rn->n_workers++) {
        atomic_fetch_add(&rn->accepting, 1);
        r = -pthread_create(&rn->workers[rn->n_workers], NULL,
                            rn->cfg.model == CORE_MODEL_POOL ? pool_main : acceptor_main, rn);
        if (r < 0) {
            atomic_fetch_sub(&rn->accepting, 1);
            tcp_runner_stop(&rn->base);
            return core_err_set(err, r, NULL, "cannot start a TCP worker: %s", strerror(-r));
        }
    }
    *ret = &rn->base;
    return 0;

out_free:
    tcp_runner_free(rn);
    return core_err_set(err, r, NULL, "cannot start the TCP runner: %s", strerror(-r));
}
