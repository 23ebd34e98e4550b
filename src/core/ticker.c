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

/* The metrics tick: every listener's counters with their rates since the previous tick. */
static void tick(struct core_ticker *t, json_t *prev, double dt)
{
    static const char *const rated[] = {"bytes_in", "bytes_out", "connections_total",
                                        "datagrams_in", "datagrams_out"};
    static const char *const rate_names[] = {"bytes_in", "bytes_out", "connections", "datagrams_in",
                                             "datagrams_out"};
    struct timespec now;
    char when[40];
    struct tm tm;
    const char *id;
    json_t *all = NULL, *m;

    if (core_registry_metrics_all(t->registry, &all) < 0)
        return;
    json_object_foreach(all, id, m)
    {
        json_t *before = json_object_get(prev, id), *rates = json_object();

        for (size_t i = 0; i < sizeof(rated) / sizeof(rated[0]); i++) {
            json_int_t cur = json_integer_value(json_object_get(m, rated[i]));
            json_t *old = json_object_get(before, rated[i]);
            double rate = old && dt > 0 && cur >= json_integer_value(old)
                              ? (double)(cur - json_integer_value(old)) / dt
                              : 0.0;

            json_object_set_new(rates, rate_names[i], json_real(rate));
        }
        json_object_set_new(m, "rates", rates);
    }
    json_object_clear(prev);
    json_object_update(prev, all);
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
            tick(t, prev,
                 last.tv_sec ? (double)(now.tv_sec - last.tv_sec) +
                                   (double)(now.tv_nsec - last.tv_nsec) / 1e9
                             : 0.0);
            last = now;
        } else {
            last.tv_sec = 0;
            json_object_clear(prev);
        }
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
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
