#include "core/listener_int.h"

/* The runners a committed change replaced: their deadlines, their end, their part of the
 * status. */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

static void format_ms(const struct timespec *ts, char *buf, size_t len)
{
    struct tm tm;
    size_t n;

    gmtime_r(&ts->tv_sec, &tm);
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts->tv_nsec / 1000000);
}

/* A copy of the draining runners for the status. Under lock. */
struct drain_view *core_listener_drain_views_locked(const struct core_listener *l, size_t *ret_n)
{
    struct drain_view *v;
    size_t n = 0;

    for (const struct draining *d = l->draining; d; d = d->next)
        n++;
    *ret_n = 0;
    if (n == 0)
        return NULL;
    v = calloc(n, sizeof(*v));
    if (!v)
        return NULL;
    n = 0;
    for (const struct draining *d = l->draining; d; d = d->next, n++) {
        memcpy(v[n].bound, d->bound, sizeof(v[n].bound));
        /* The runner's own count: the connections it admitted and still serves (no question
         * to the kernel, which would cost a socket dump per listener and per event). */
        v[n].connections = d->moved ? (int)atomic_load(&d->runner->n_conns) : -1;
        /* A muted runner's socket is shut down: it cannot accept, told or not. */
        v[n].accepting = !d->muted && atomic_load(&d->runner->n_accepting) > 0;
        v[n].deadline = d->deadline;
    }
    *ret_n = n;
    return v;
}

/*
 * The "draining" array of the status: {"bound", "connections", "accepting", "deadline"} per
 * draining runner. "connections" is counted for a moved socket; it is null for a drain on the
 * socket the listener still listens on, whose connections cannot be told from the new
 * runner's. "accepting" is whether one of its threads may still accept a connection (a change
 * answers once none may, unless that took over a second).
 */
json_t *core_listener_draining_json(const struct drain_view *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        char deadline[40];
        int count = v[i].connections;

        format_ms(&v[i].deadline, deadline, sizeof(deadline));
        if (json_array_append_new(
                a, json_pack("{s:s, s:o, s:b, s:s}", "bound", v[i].bound, "connections",
                             count >= 0 ? json_integer(count) : json_null(), "accepting",
                             v[i].accepting, "deadline", deadline)) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* Whether draining runner d is to be stopped at now (ms) under what: every one (REAP_ALL),
 * one whose deadline passed (REAP_EXPIRED), or that or one whose connections ended
 * (REAP_DONE). Once true, it stays true (a draining runner accepts no more). */
static bool is_due(struct draining *d, enum reap what, int64_t now)
{
    switch (what) {
    case REAP_ALL:
        return true;
    case REAP_DONE:
        return now >= d->deadline_ms || d->runner->is_drained(d->runner);
    case REAP_EXPIRED:
        break;
    }
    return now >= d->deadline_ms;
}

/* Tells the muted runners to drain, but for a change's own reap (REAP_EXPIRED), which leaves
 * them for after its answer. Under l->lock. */
static void tell_muted_locked(struct core_listener *l, enum reap what)
{
    if (what == REAP_EXPIRED)
        return;
    for (struct draining *d = l->draining; d; d = d->next) {
        if (d->muted) {
            d->runner->drain(d->runner);
            d->muted = false;
        }
    }
}

void core_listener_drain_wake(struct core_listener *l, enum reap what)
{
    int64_t now = core_now_ms();

    pthread_mutex_lock(&l->lock);
    tell_muted_locked(l, what);
    for (struct draining *d = l->draining; d; d = d->next)
        if (is_due(d, what, now))
            core_runner_signal(d->runner->wake_fd);
    pthread_mutex_unlock(&l->lock);
}

/* core_listener_drain_reap() by what. */
static bool drain_reap(struct core_listener *l, enum reap what)
{
    struct draining *done = NULL;
    int64_t now = core_now_ms();

    pthread_mutex_lock(&l->lock);
    tell_muted_locked(l, what);
    for (struct draining **p = &l->draining; *p;) {
        struct draining *d = *p;

        if (!is_due(d, what, now)) {
            p = &d->next;
            continue;
        }
        *p = d->next;
        d->next = done;
        done = d;
    }
    pthread_mutex_unlock(&l->lock);
    if (!done)
        return false;
    for (struct draining *d = done; d; d = d->next)
        core_runner_signal(d->runner->wake_fd);
    while (done) {
        struct draining *d = done;

        done = d->next;
        core_runner_stop(d->runner);
        core_listener_inst_unref(d->inst);
        free(d);
    }
    return true;
}

bool core_listener_drain_reap(struct core_listener *l, bool all)
{
    return drain_reap(l, all ? REAP_ALL : REAP_DONE);
}

/* Reaps l's draining runners by what; a "listener.state" event when any ended. */
static void reap_publish(struct core_listener *l, enum reap what)
{
    if (l->draining && drain_reap(l, what))
        core_listener_publish_draining(l);
}

void core_listener_reap_drained(struct core_listener *l)
{
    reap_publish(l, REAP_DONE);
}

void core_listener_reap_many(struct core_listener *const *ls, size_t n, enum reap what)
{
    /* Told together, the runners end together: the joins then find them ended, instead of
     * waiting for each thread in turn to be scheduled. */
    for (size_t i = 0; i < n; i++)
        if (ls[i]->draining)
            core_listener_drain_wake(ls[i], what);
    for (size_t i = 0; i < n; i++)
        reap_publish(ls[i], what);
}

void core_listener_reap_drained_all(struct core_listener *const *ls, size_t n)
{
    core_listener_reap_many(ls, n, REAP_DONE);
}

/* Puts runner (already told to drain, or muted) among the draining ones, with the listener's
 * deadline. */
void core_listener_drain_add(struct core_listener *l, struct core_runner *runner,
                             struct inst_ref *inst, const char *bound,
                             const struct sockaddr_storage *moved_addr, bool muted)
{
    struct draining *d = calloc(1, sizeof(*d));
    struct timespec now;

    if (!d) {
        /* Nothing to keep it by: it ends now. */
        core_runner_stop(runner);
        core_listener_inst_unref(inst);
        return;
    }
    d->runner = runner;
    d->inst = inst;
    d->deadline_ms = core_now_ms() + l->cfg.drain_timeout_ms;
    clock_gettime(CLOCK_REALTIME, &now);
    d->deadline.tv_sec = now.tv_sec + l->cfg.drain_timeout_ms / 1000;
    d->deadline.tv_nsec = now.tv_nsec + (long)(l->cfg.drain_timeout_ms % 1000) * 1000000;
    if (d->deadline.tv_nsec >= 1000000000) {
        d->deadline.tv_sec++;
        d->deadline.tv_nsec -= 1000000000;
    }
    snprintf(d->bound, sizeof(d->bound), "%s", bound);
    d->moved = moved_addr != NULL;
    d->muted = muted;
    pthread_mutex_lock(&l->lock);
    d->next = l->draining;
    l->draining = d;
    pthread_mutex_unlock(&l->lock);
}
