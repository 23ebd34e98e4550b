/*
 * TCP runners: `sequential` (the acceptor thread serves each connection itself, one after the
 * other, as the lecture's first server), `thread` (one thread per connection) and `pool`
 * (`workers` threads share the listening socket; each accepts and serves one connection at a
 * time, and connections beyond the pool wait in the backlog). Connections are served by the
 * blocking driver, core_runner_serve_conn(), whose waits also watch the runner's wake eventfd,
 * so a stop reaches every thread at once.
 */
#include "core/runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/thread.h"

struct tcp_runner;

struct conn {
    struct tcp_runner *rn;
    struct core_accepted a;
    pthread_t thread;
    struct conn *next; /* in tcp_runner.active or .finished; guarded by tcp_runner.lock */
};

struct tcp_runner {
    struct core_runner base;
    int reap_fd; /* a connection thread finished and waits to be joined */
    char conn_name[CORE_THREAD_NAME_MAX + 1]; /* each connection thread's: "l:<id>/conn" */

    pthread_mutex_t lock;
    pthread_cond_t cond;   /* signalled when a connection thread finishes */
    struct conn *active;   /* guarded by lock: connection threads running */
    struct conn *finished; /* guarded by lock: connection threads ended, not joined */
};

/* Serves one admitted connection to its end and counts it; closes its fd. */
static void serve(struct tcp_runner *rn, struct core_accepted *a)
{
    const struct core_conn_ctx c = core_runner_conn_ctx(&rn->base);

    core_runner_conn_begin(&rn->base);
    core_runner_serve_conn(&c, a->fd, a->accepted_ns);
    core_runner_conn_end(&rn->base, &a->adm);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct tcp_runner *rn = c->rn;

    core_thread_name(pthread_self(), rn->conn_name);
    serve(rn, &c->a);
    pthread_mutex_lock(&rn->lock);
    for (struct conn **p = &rn->active; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    c->next = rn->finished;
    rn->finished = c;
    /* Still under the lock: once active is empty, stop may close reap_fd. */
    core_runner_signal(rn->reap_fd);
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

/* Hands an admitted connection to a new thread, or refuses it. */
static void spawn(struct tcp_runner *rn, struct core_accepted *a)
{
    pthread_attr_t attr;
    struct conn *c = calloc(1, sizeof(*c));
    int r;

    if (!c) {
        core_runner_conn_refuse(&rn->base, a->fd, &a->adm);
        return;
    }
    c->rn = rn;
    c->a = *a;
    pthread_mutex_lock(&rn->lock);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, CORE_THREAD_STACK_SIZE);
    r = pthread_create(&c->thread, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        pthread_mutex_unlock(&rn->lock);
        free(c);
        core_runner_conn_refuse(&rn->base, a->fd, &a->adm);
        return;
    }
    c->next = rn->active;
    rn->active = c;
    pthread_mutex_unlock(&rn->lock);
}

/* sequential and thread: one thread accepts; it serves each connection itself or hands it to
 * a new thread. pool: each worker accepts and serves one connection at a time. */
static void *acceptor_main(void *arg)
{
    struct tcp_runner *rn = arg;
    struct core_runner *b = &rn->base;
    bool warned = false;

    for (;;) {
        unsigned ev = core_runner_wait(b, b->lfd, rn->reap_fd);
        struct core_accepted a;
        int r;

        if (ev & CORE_RUNNER_WAIT_END)
            break;
        if (ev & CORE_RUNNER_WAIT_EXTRA) {
            uint64_t count;

            (void)!read(rn->reap_fd, &count, sizeof(count));
            reap(rn);
        }
        if (!(ev & CORE_RUNNER_WAIT_FD))
            continue;
        r = core_runner_accept_conn(b, b->lfd, &warned, &a);
        if (r == -EAGAIN || r == -ECONNREFUSED)
            continue; /* pool: another worker took it */
        if (r < 0) {
            if (core_runner_backoff(b))
                break;
            continue;
        }
        if (b->cfg.model == CORE_MODEL_THREAD) {
            spawn(rn, &a);
            continue;
        }
        /* A drain told while this thread serves finds it not accepting: it does not wait
         * for the connection to end. */
        core_runner_accepting_ended(b);
        serve(rn, &a);
        if (!core_runner_accepting_resume(b))
            return NULL;
    }
    core_runner_accepting_ended(b);
    return NULL;
}

/* After the accepting threads are joined: every connection thread sees the wake fd and ends;
 * join them all. */
static void tcp_runner_destroy(struct core_runner *base)
{
    struct tcp_runner *rn = (struct tcp_runner *)base;

    pthread_mutex_lock(&rn->lock);
    while (rn->active)
        pthread_cond_wait(&rn->cond, &rn->lock);
    pthread_mutex_unlock(&rn->lock);
    reap(rn);
    if (rn->reap_fd >= 0)
        close(rn->reap_fd);
    pthread_cond_destroy(&rn->cond);
    pthread_mutex_destroy(&rn->lock);
}

int core_runner_tcp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err)
{
    unsigned n = ctx->cfg->model == CORE_MODEL_POOL ? ctx->cfg->workers : 1;
    const struct core_runner_spec spec = {
        .destroy = tcp_runner_destroy, .threads = n, .accepting = n, .drains = true};
    struct core_runner *b;
    struct tcp_runner *rn;
    int r;

    r = core_runner_new(sizeof(*rn), ctx, &spec, &b, err);
    if (r < 0)
        return r;
    rn = (struct tcp_runner *)b;
    pthread_mutex_init(&rn->lock, NULL);
    pthread_cond_init(&rn->cond, NULL);
    core_thread_name_listener(rn->conn_name, b->cfg.id, "conn");
    rn->reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rn->reap_fd < 0)
        return core_runner_abort(b, -errno, "TCP runner", err);
    for (unsigned i = 0; i < n; i++) {
        char role[16] = "acc";

        if (ctx->cfg->model == CORE_MODEL_POOL)
            snprintf(role, sizeof(role), "w%u", i);
        r = core_runner_spawn(b, acceptor_main, rn, role);
        if (r < 0)
            return core_runner_abort(b, r, "TCP runner", err);
    }
    *ret = b;
    return 0;
}
