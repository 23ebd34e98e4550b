#include "core/listener_int.h"

/* The runners a committed change replaced: their deadlines, their end, their part of the
 * status. */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/net.h"

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
        v[n].moved = d->moved;
        v[n].addr = d->addr;
        v[n].deadline = d->deadline;
    }
    *ret_n = n;
    return v;
}

/*
 * The "draining" array of the status: {"bound", "connections", "deadline"} per draining runner.
 * "connections" is counted for a moved socket; it is null for a drain on the socket the
 * listener still listens on, whose connections cannot be told from the new runner's.
 */
json_t *core_listener_draining_json(const struct drain_view *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        char deadline[40];
        int count = v[i].moved ? core_net_count_connections(&v[i].addr) : -1;

        format_ms(&v[i].deadline, deadline, sizeof(deadline));
        if (json_array_append_new(a,
                                  json_pack("{s:s, s:o, s:s}", "bound", v[i].bound, "connections",
                                            count >= 0 ? json_integer(count) : json_null(),
                                            "deadline", deadline)) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* Stops the draining runners that are done (all of them when all), and frees them. Returns
 * whether it stopped any. */
bool core_listener_drain_reap(struct core_listener *l, bool all)
{
    struct draining *done = NULL;
    int64_t now = core_now_ms();

    pthread_mutex_lock(&l->lock);
    for (struct draining **p = &l->draining; *p;) {
        struct draining *d = *p;

        if (!all && now < d->deadline_ms && !d->runner->is_drained(d->runner)) {
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
    while (done) {
        struct draining *d = done;

        done = d->next;
        core_runner_stop(d->runner);
        core_listener_inst_unref(d->inst);
        free(d);
    }
    return true;
}

void core_listener_reap_drained(struct core_listener *l)
{
    if (l->draining && core_listener_drain_reap(l, false))
        core_listener_publish_draining(l);
}

/* Puts runner (already told to drain) among the draining ones, with the listener's deadline. */
void core_listener_drain_add(struct core_listener *l, struct core_runner *runner,
                             struct inst_ref *inst, const char *bound,
                             const struct sockaddr_storage *moved_addr)
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
    if (moved_addr) {
        d->moved = true;
        d->addr = *moved_addr;
    }
    pthread_mutex_lock(&l->lock);
    d->next = l->draining;
    l->draining = d;
    pthread_mutex_unlock(&l->lock);
}
