#ifndef CORE_EVENTS_H
#define CORE_EVENTS_H

/*
 * The event bus: what happened to the listeners (created, changed, deleted, state changes) and
 * the metrics ticks, numbered in one increasing sequence and fanned out to subscribers (the
 * API's server-sent event streams). The bus keeps the most recent events in a ring so that a
 * subscriber that comes back with the last id it saw gets what it missed.
 *
 * Thread rules: every function may be called from any thread. Publishing never blocks on a
 * subscriber: each has a bounded queue, and one that falls too far behind is marked overrun
 * (its stream should end; the client reconnects and catches up from the ring).
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CORE_EVENTS_RING 256       /* recent events kept for reconnecting subscribers */
#define CORE_EVENTS_QUEUE_MAX 1024 /* events queued for one subscriber before it is overrun */
#define CORE_EVENTS_RECENT 100     /* events other than metrics ticks kept for a listing */

struct core_events;
struct core_events_sub;

/*
 * One event, shared by the subscribers that hold it; read-only once published but for its
 * text, which the first reader makes (core_event_data()): a change of hundreds of listeners
 * publishes hundreds of events that, with nobody subscribed, leave the ring unread.
 */
struct core_event {
    _Atomic unsigned refs;
    uint64_t id;
    char type[32];   /* "listener.created", "metrics", ... */
    int64_t time_ms; /* CLOCK_REALTIME when published, in milliseconds */
    /* private: made by core_event_data() */
    json_t *json; /* the data until its text is made */
    /* or what the data is made of (core_events_publish_lazy()) */
    void *obj;
    json_t *(*make)(const void *obj);
    void (*drop)(void *obj);
    _Atomic(char *) text; /* compact JSON, NUL-terminated */
    size_t text_len;
};

/* Called (under the bus's lock: it must not call back into the bus) when events were queued
 * for a subscriber, or when it was overrun. */
typedef void (*core_events_notify_fn)(void *ctx);

/* Creates a bus. Returns 0 or -ENOMEM. Free with core_events_free() after every subscriber
 * unsubscribed. */
int core_events_new(struct core_events **ret);
void core_events_free(struct core_events *e);

/* Publishes an event of type with data (ownership of data is taken, also on failure). data
 * must be the caller's alone, nothing in it referenced from elsewhere: the event's first
 * reader turns it into text and frees it, on its own thread. Events that nobody can see (no
 * subscriber) still get an id and go into the ring. */
void core_events_publish(struct core_events *e, const char *type, json_t *data);

/*
 * Publishes an event of type whose data make(obj) makes, when and if somebody reads it, on the
 * reader's thread; drop(obj) frees obj once it is no longer needed (ownership of obj is taken,
 * also on failure). obj must not change after this and make must only read it. A change of
 * hundreds of listeners publishes as many resources, which nobody may ever read: the cost of
 * their JSON trees (and of freeing them when the ring drops them) is then never paid.
 */
void core_events_publish_lazy(struct core_events *e, const char *type, void *obj,
                              json_t *(*make)(const void *obj), void (*drop)(void *obj));

/* Whether anyone subscribes now (so that costly events can be skipped). */
bool core_events_has_subscribers(struct core_events *e);

/*
 * Subscribes. With last_id > 0 and that event still in the ring, every later event is queued at
 * once and *ret_caught_up is true; otherwise nothing is replayed and *ret_caught_up is false
 * (the caller should send a snapshot first; events from now on are queued). notify(ctx) tells
 * of new events. Returns 0 or -ENOMEM.
 */
int core_events_subscribe(struct core_events *e, uint64_t last_id, core_events_notify_fn notify,
                          void *ctx, struct core_events_sub **ret, bool *ret_caught_up);

/*
 * Takes the oldest queued event: returns 1 with *ret (a reference: release it with
 * core_event_unref()), 0 when none is queued, or -EPIPE when the subscriber was overrun.
 */
int core_events_next(struct core_events_sub *s, struct core_event **ret);

/* The id of the newest event published so far. Ids go on from the wall clock at the bus's
 * creation (in microseconds), so that ids of an earlier run of the daemon are not taken for
 * this run's; before any event it is that starting point. */
uint64_t core_events_last_id(struct core_events *e);

/*
 * The newest events of this run other than the "metrics" ticks (the bus keeps the last
 * CORE_EVENTS_RECENT of them, apart from the ring), newest first, at most max: a new array of
 * {"id", "event", "time" (RFC 3339 UTC, milliseconds), "data" (the event's JSON)}. 0 or -ENOMEM.
 */
int core_events_recent(struct core_events *e, size_t max, json_t **ret);

/* Unsubscribes and frees s, dropping what was queued. After it returns, notify is not called
 * for s again. Accepts NULL. */
void core_events_unsubscribe(struct core_events_sub *s);

/* The event's data as compact JSON text (NUL-terminated, as long as ev is held): 0, or
 * -ENOMEM. Any thread. */
int core_event_data(struct core_event *ev, const char **ret, size_t *ret_len);

void core_event_unref(struct core_event *ev);

#endif
