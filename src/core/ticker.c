#include "core/ticker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/events.h"
#include "core/registry.h"
#include "core/thread.h"

struct core_ticker {
    struct core_registry *registry; /* borrowed */
    struct core_events *events;     /* borrowed, may be NULL */
    unsigned interval_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping; /* guarded by lock */
};

/* A listener's latency histogram as of the previous tick: its buckets, then its sum. */
struct window {
    char *id;
    uint64_t before[CORE_LATENCY_BUCKETS + 1];
    bool seen; /* in this tick */
};

/* The ticker thread's own: the previous tick's histograms. */
struct windows {
    struct window *w;
    size_t n, cap;
};

/* The window of listener id, made (with *ret_known false) when there is none yet. NULL on
 * ENOMEM. */
static struct window *window_of(struct windows *ws, const char *id, bool *ret_known)
{
    *ret_known = true;
    for (size_t i = 0; i < ws->n; i++)
        if (strcmp(ws->w[i].id, id) == 0)
            return &ws->w[i];
    *ret_known = false;
    if (ws->n == ws->cap) {
        size_t cap = ws->cap ? ws->cap * 2 : 16;
        struct window *w = realloc(ws->w, cap * sizeof(*w));

        if (!w)
            return NULL;
        ws->w = w;
        ws->cap = cap;
    }
    ws->w[ws->n].id = strdup(id);
    if (!ws->w[ws->n].id)
        return NULL;
    ws->w[ws->n].seen = false;
    return &ws->w[ws->n++];
}

/* Forgets the histograms of the listeners not seen in this tick (all when all is true). */
static void windows_sweep(struct windows *ws, bool all)
{
    size_t kept = 0;

    for (size_t i = 0; i < ws->n; i++) {
        if (ws->w[i].seen && !all) {
            ws->w[i].seen = false;
            ws->w[kept++] = ws->w[i];
        } else {
            free(ws->w[i].id);
        }
    }
    ws->n = kept;
}

/*
 * Adds "latency_interval" (the requests since the previous tick) to a listener's metrics m,
 * made from snapshot s, and keeps its histogram for the next tick. The first tick that sees a
 * listener has nothing to subtract: it adds nothing.
 */
static void on_latency(void *ctx, const char *id, json_t *m, const struct core_metrics_snapshot *s)
{
    struct windows *ws = ctx;
    bool known;
    struct window *w = window_of(ws, id, &known);

    if (!w)
        return;
    if (known) {
        struct core_latency_summary sum;

        core_latency_summarize_since(w->before, s, &sum);
        json_object_set_new(m, "latency_interval", core_latency_summary_json(&sum));
    }
    memcpy(w->before, s->latency, sizeof(s->latency));
    w->before[CORE_LATENCY_BUCKETS] = s->latency_sum_ns;
    w->seen = true;
}

/* The metrics tick: every listener's counters with their rates and latency since the previous
 * tick. prev holds, by listener, the rated counters of the previous tick: copies, as the
 * published event's tree goes to another thread (its first reader turns it into text and frees
 * it), which nothing here may share. */
static void tick(struct core_ticker *t, json_t *prev, struct windows *ws, double dt)
{
    static const char *const rated[] = {"bytes_in", "bytes_out", "connections_total",
                                        "datagrams_in", "datagrams_out"};
    static const char *const rate_names[] = {"bytes_in", "bytes_out", "connections", "datagrams_in",
                                             "datagrams_out"};
    struct timespec now;
    char when[40];
    struct tm tm;
    const char *id;
    json_t *all = NULL, *m, *next = json_object();

    if (!next || core_registry_metrics_all(t->registry, on_latency, ws, &all) < 0) {
        json_decref(next);
        return;
    }
    windows_sweep(ws, false);
    json_object_foreach(all, id, m)
    {
        json_t *before = json_object_get(prev, id), *rates = json_object(), *kept = json_object();

        for (size_t i = 0; i < sizeof(rated) / sizeof(rated[0]); i++) {
            json_int_t cur = json_integer_value(json_object_get(m, rated[i]));
            json_t *old = json_object_get(before, rated[i]);
            double rate = old && dt > 0 && cur >= json_integer_value(old)
                              ? (double)(cur - json_integer_value(old)) / dt
                              : 0.0;

            json_object_set_new(rates, rate_names[i], json_real(rate));
            json_object_set_new(kept, rated[i], json_integer(cur));
        }
        json_object_set_new(m, "rates", rates);
        json_object_set_new(next, id, kept);
    }
    json_object_clear(prev);
    json_object_update(prev, next);
    json_decref(next);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03ldZ", now.tv_nsec / 1000000);
    core_events_publish(t->events, "metrics",
                        json_pack("{s:s, s:I, s:o}", "time", when, "interval_ms",
                                  (json_int_t)t->interval_ms, "listeners", all));
}

static void *ticker_main(void *arg)
{
    struct core_ticker *t = arg;
    struct timespec deadline, last = {0}, now;
    struct windows ws = {0};
    json_t *prev = json_object();

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    pthread_mutex_lock(&t->lock);
    while (!t->stopping) {
        deadline.tv_sec += t->interval_ms / 1000;
        deadline.tv_nsec += (long)(t->interval_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
        while (!t->stopping && pthread_cond_timedwait(&t->cond, &t->lock, &deadline) != ETIMEDOUT)
            ;
        if (t->stopping)
            break;
        pthread_mutex_unlock(&t->lock);
        core_registry_reap_drained(t->registry);
        if (t->events && core_events_has_subscribers(t->events)) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            tick(t, prev, &ws,
                 last.tv_sec ? (double)(now.tv_sec - last.tv_sec) +
                                   (double)(now.tv_nsec - last.tv_nsec) / 1e9
                             : 0.0);
            last = now;
        } else {
            last.tv_sec = 0;
            json_object_clear(prev);
            windows_sweep(&ws, true);
        }
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    windows_sweep(&ws, true);
    free(ws.w);
    json_decref(prev);
    return NULL;
}

int core_ticker_start(struct core_registry *r, struct core_events *events, unsigned interval_ms,
                      struct core_ticker **ret)
{
    struct core_ticker *t = calloc(1, sizeof(*t));
    pthread_condattr_t attr;
    int rc;

    if (!t)
        return -ENOMEM;
    t->registry = r;
    t->events = events;
    t->interval_ms = interval_ms ? interval_ms : 1000;
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &attr);
    pthread_condattr_destroy(&attr);
    rc = -pthread_create(&t->thread, NULL, ticker_main, t);
    if (rc < 0) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return rc;
    }
    core_thread_name(t->thread, "ss-tick");
    *ret = t;
    return 0;
}

void core_ticker_stop(struct core_ticker *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
