#include "core/events.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct core_events_sub {
    struct core_events *bus;
    core_events_notify_fn notify;
    void *ctx;
    struct core_event *queue[CORE_EVENTS_QUEUE_MAX]; /* guarded by bus->lock; a ring */
    size_t head, len;                                /* guarded by bus->lock */
    bool overrun;                                    /* guarded by bus->lock */
    struct core_events_sub *next;                    /* guarded by bus->lock */
};

struct core_events {
    pthread_mutex_t lock;
    uint64_t first_id;                         /* the id before this run's first event */
    uint64_t last_id;                          /* guarded by lock */
    struct core_event *ring[CORE_EVENTS_RING]; /* guarded by lock; ring[id % RING] */
    /* guarded by lock: the last events but the metrics ticks, recent[n_recent % RECENT] next */
    struct core_event *recent[CORE_EVENTS_RECENT];
    uint64_t n_recent;
    struct core_events_sub *subs; /* guarded by lock */
    _Atomic unsigned n_subs;
};

static struct core_event *event_ref(struct core_event *ev)
{
    atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
    return ev;
}

void core_event_unref(struct core_event *ev)
{
    if (!ev || atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) != 1)
        return;
    json_decref(ev->json);
    if (ev->obj)
        ev->drop(ev->obj);
    free(atomic_load_explicit(&ev->text, memory_order_relaxed));
    free(ev);
}

/* Serialises the making of events' texts: readers on two threads (a stream, the fleet's
 * bridge) may ask for the same event's at once. */
static pthread_mutex_t text_lock = PTHREAD_MUTEX_INITIALIZER;

/* Makes ev's text from its data, then frees the data. Called with text_lock held. */
static char *make_text_locked(struct core_event *ev)
{
    json_t *data = ev->obj ? ev->make(ev->obj) : ev->json;
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;

    if (data != ev->json)
        json_decref(data);
    if (!text)
        return NULL;
    ev->text_len = strlen(text);
    json_decref(ev->json);
    ev->json = NULL;
    if (ev->obj)
        ev->drop(ev->obj);
    ev->obj = NULL;
    atomic_store_explicit(&ev->text, text, memory_order_release);
    return text;
}

int core_event_data(struct core_event *ev, const char **ret, size_t *ret_len)
{
    char *text = atomic_load_explicit(&ev->text, memory_order_acquire);

    if (!text) {
        pthread_mutex_lock(&text_lock);
        text = atomic_load_explicit(&ev->text, memory_order_relaxed);
        if (!text)
            text = make_text_locked(ev);
        pthread_mutex_unlock(&text_lock);
        if (!text)
            return -ENOMEM;
    }
    *ret = text;
    *ret_len = ev->text_len;
    return 0;
}

/*
 * Ids go on from the wall clock (microseconds, below 2^53 so that JavaScript holds them
 * exactly): a client that comes back after a restart with an id of the previous run is not
 * mistaken for one that missed a few events of this run.
 */
static uint64_t clock_id(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int core_events_new(struct core_events **ret)
{
    struct core_events *e = calloc(1, sizeof(*e));

    if (!e)
        return -ENOMEM;
    pthread_mutex_init(&e->lock, NULL);
    atomic_init(&e->n_subs, 0);
    e->first_id = clock_id();
    e->last_id = e->first_id;
    *ret = e;
    return 0;
}

void core_events_free(struct core_events *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < CORE_EVENTS_RING; i++)
        core_event_unref(e->ring[i]);
    for (size_t i = 0; i < CORE_EVENTS_RECENT; i++)
        core_event_unref(e->recent[i]);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

/* Queues ev for s; marks s overrun when its queue is full. Called with the bus lock held. */
static void enqueue(struct core_events_sub *s, struct core_event *ev)
{
    if (s->overrun)
        return;
    if (s->len == CORE_EVENTS_QUEUE_MAX) {
        s->overrun = true;
        return;
    }
    s->queue[(s->head + s->len) % CORE_EVENTS_QUEUE_MAX] = event_ref(ev);
    s->len++;
}

/* Publishes ev (taken): gives it its id and time, keeps it, queues it for the subscribers. */
static void publish(struct core_events *e, struct core_event *ev, const char *type)
{
    struct timespec now;

    atomic_init(&ev->refs, 1);
    atomic_init(&ev->text, NULL);
    snprintf(ev->type, sizeof(ev->type), "%s", type);
    clock_gettime(CLOCK_REALTIME, &now);
    ev->time_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;

    pthread_mutex_lock(&e->lock);
    ev->id = ++e->last_id;
    core_event_unref(e->ring[ev->id % CORE_EVENTS_RING]);
    e->ring[ev->id % CORE_EVENTS_RING] = ev; /* the ring keeps the publisher's reference */
    if (strcmp(ev->type, "metrics") != 0) {
        size_t slot = e->n_recent++ % CORE_EVENTS_RECENT;

        core_event_unref(e->recent[slot]);
        e->recent[slot] = event_ref(ev);
    }
    for (struct core_events_sub *s = e->subs; s; s = s->next) {
        enqueue(s, ev);
        s->notify(s->ctx);
    }
    pthread_mutex_unlock(&e->lock);
}

void core_events_publish(struct core_events *e, const char *type, json_t *data)
{
    struct core_event *ev = e && data ? calloc(1, sizeof(*ev)) : NULL;

    if (!ev) {
        json_decref(data);
        return;
    }
    ev->json = data; /* its text is made by the first reader */
    publish(e, ev, type);
}

void core_events_publish_lazy(struct core_events *e, const char *type, void *obj,
                              json_t *(*make)(const void *obj), void (*drop)(void *obj))
{
    struct core_event *ev = e && obj ? calloc(1, sizeof(*ev)) : NULL;

    if (!ev) {
        if (obj)
            drop(obj);
        return;
    }
    ev->obj = obj; /* made into data, then text, by the first reader */
    ev->make = make;
    ev->drop = drop;
    publish(e, ev, type);
}

bool core_events_has_subscribers(struct core_events *e)
{
    return e && atomic_load_explicit(&e->n_subs, memory_order_relaxed) > 0;
}

int core_events_subscribe(struct core_events *e, uint64_t last_id, core_events_notify_fn notify,
                          void *ctx, struct core_events_sub **ret, bool *ret_caught_up)
{
    struct core_events_sub *s = calloc(1, sizeof(*s));
    bool caught_up = false;

    if (!s)
        return -ENOMEM;
    s->bus = e;
    s->notify = notify;
    s->ctx = ctx;
    pthread_mutex_lock(&e->lock);
    /* last_id is still in the ring when every event after it is: the oldest kept is
     * last_id - RING + 1 or later. */
    if (last_id >= e->first_id && last_id <= e->last_id &&
        e->last_id - last_id < CORE_EVENTS_RING) {
        caught_up = true;
        for (uint64_t id = last_id + 1; id <= e->last_id; id++)
            enqueue(s, e->ring[id % CORE_EVENTS_RING]);
    }
    s->next = e->subs;
    e->subs = s;
    atomic_fetch_add_explicit(&e->n_subs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&e->lock);
    *ret = s;
    *ret_caught_up = caught_up;
    return 0;
}

int core_events_next(struct core_events_sub *s, struct core_event **ret)
{
    struct core_events *e = s->bus;
    int r = 0;

    pthread_mutex_lock(&e->lock);
    if (s->len > 0) {
        *ret = s->queue[s->head];
        s->head = (s->head + 1) % CORE_EVENTS_QUEUE_MAX;
        s->len--;
        r = 1;
    } else if (s->overrun) {
        r = -EPIPE;
    }
    pthread_mutex_unlock(&e->lock);
    return r;
}

/* One listed event: {"id", "event", "time", "data"}, or NULL on ENOMEM. */
static json_t *recent_json(struct core_event *ev)
{
    time_t sec = (time_t)(ev->time_ms / 1000);
    char when[40];
    struct tm tm;
    const char *text;
    size_t len;
    json_t *data = core_event_data(ev, &text, &len) == 0 ? json_loadb(text, len, 0, NULL) : NULL;

    gmtime_r(&sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03dZ", (int)(ev->time_ms % 1000));
    return data ? json_pack("{s:I, s:s, s:s, s:o}", "id", (json_int_t)ev->id, "event", ev->type,
                            "time", when, "data", data)
                : NULL;
}

int core_events_recent(struct core_events *e, size_t max, json_t **ret)
{
    struct core_event *evs[CORE_EVENTS_RECENT];
    json_t *list = json_array();
    size_t n = 0;
    int r = 0;

    if (!list)
        return -ENOMEM;
    /* Only references are taken under the lock: the JSON is made outside it. */
    pthread_mutex_lock(&e->lock);
    for (uint64_t i = e->n_recent; i > 0 && n < max && n < CORE_EVENTS_RECENT; i--)
        evs[n++] = event_ref(e->recent[(i - 1) % CORE_EVENTS_RECENT]);
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; i < n; i++) {
        if (r == 0 && json_array_append_new(list, recent_json(evs[i])) < 0)
            r = -ENOMEM;
        core_event_unref(evs[i]);
    }
    if (r < 0) {
        json_decref(list);
        return r;
    }
    *ret = list;
    return 0;
}

uint64_t core_events_last_id(struct core_events *e)
{
    uint64_t id;

    pthread_mutex_lock(&e->lock);
    id = e->last_id;
    pthread_mutex_unlock(&e->lock);
    return id;
}

void core_events_unsubscribe(struct core_events_sub *s)
{
    struct core_events *e;

    if (!s)
        return;
    e = s->bus;
    pthread_mutex_lock(&e->lock);
    for (struct core_events_sub **p = &e->subs; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    atomic_fetch_sub_explicit(&e->n_subs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&e->lock);
    while (s->len > 0) {
        core_event_unref(s->queue[s->head]);
        s->head = (s->head + 1) % CORE_EVENTS_QUEUE_MAX;
        s->len--;
    }
    free(s);
}
