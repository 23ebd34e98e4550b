#ifndef CORE_REGISTRY_INTERNAL_H
#define CORE_REGISTRY_INTERNAL_H

/*
 * What the registry's two halves share, and nothing outside src/core sees: the registry itself
 * (core/registry.c, the listener set and its reads) and the helpers the change engine
 * (core/change.c) uses on it.
 *
 * Locks: ops serialises the changes and is held across their binds and joins; lock guards
 * list and n and is never held across I/O. The holder of ops may read list and n without
 * lock; it writes them with both held.
 */

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/config.h"
#include "core/events.h"
#include "core/listener.h"
#include "core/revisions.h"
#include "core/service.h"
#include "core/ticker.h"

struct core_registry {
    const struct core_service_table *services;
    char *state_dir;
    char state_path[PATH_MAX];
    bool persist;
    size_t max_listeners;
    struct core_events *events; /* borrowed, may be NULL */
    struct core_endpoints *own; /* every running listener's bound socket */
    struct core_revisions *revisions;
    struct core_ticker *ticker;
    struct core_threads *threads; /* the pool of the runners' threads */

    pthread_mutex_t ops;         /* serialises changes, held across their binds and joins */
    pthread_mutex_t lock;        /* guards list and n; never held across I/O */
    struct core_listener **list; /* sorted by id; the ops holder may read it without lock */
    size_t n;
    /* The fleet record offset the state file holds; written with ops and lock held, read with
     * either. */
    bool has_fleet_offset;
    uint64_t fleet_offset;
    bool has_fleet_applied; /* the record whose configuration this is; same locks */
    uint64_t fleet_applied;
};

/* Listener id, or NULL. Called with ops or lock held. */
struct core_listener *core_registry_lookup(const struct core_registry *r, const char *id);

/* Adds l to the sorted list, or takes it out. Called with ops and lock held. */
void core_registry_insert_locked(struct core_registry *r, struct core_listener *l);
void core_registry_take_out_locked(struct core_registry *r, struct core_listener *l);

/* Publishes event type with data (taken) on the registry's events, if any. */
void core_registry_publish(struct core_registry *r, const char *type, json_t *data);

/* core_registry_list() with the resources made (an object by id; may be NULL), new
 * references to them: each listener's as made, the others' made now. */
int core_registry_list_made(struct core_registry *r, const json_t *made, json_t **ret);

/* Listener l's resource with its metrics (new reference). 0 or -ENOMEM. */
int core_registry_resource(struct core_registry *r, struct core_listener *l, json_t **ret);

/* Publishes an event of type whose data is l's resource with its metrics, as it is now; the
 * JSON is made by the event's first reader, if any (core_events_publish_lazy()). When ret is
 * not NULL, *ret gets the same resource (new reference), for an answer. 0 or -ENOMEM. */
int core_registry_publish_resource(struct core_registry *r, const char *type,
                                   struct core_listener *l, json_t **ret);

/* The place listener id runs in, as its service's hooks see it. */
struct core_svc_env core_registry_svc_env(const struct core_registry *r, const char *id);

/* qsort() comparators of configurations, and of pointers to them, by id. */
int core_cfg_cmp_id(const void *a, const void *b);
int core_cfg_ptr_cmp_id(const void *a, const void *b);

/* The configurations of set (n of them) as a JSON array sorted by id (new reference), NULL on
 * ENOMEM. */
json_t *core_cfgs_set_json(const struct core_listener_cfg *const *set, size_t n);

/*
 * Reads a JSON array of listener configurations (a revision's set) into *ret (n of them;
 * release with core_cfgs_free()). -EINVAL with err when one is not valid any more, -ENOMEM.
 */
int core_cfgs_from_json(struct core_registry *r, const json_t *a, struct core_listener_cfg **ret,
                        size_t *ret_n, struct core_err *err);

/* Releases n configurations and their array. Accepts NULL. */
void core_cfgs_free(struct core_listener_cfg *cfgs, size_t n);

#endif
