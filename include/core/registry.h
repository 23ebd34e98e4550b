#ifndef CORE_REGISTRY_H
#define CORE_REGISTRY_H

/*
 * The listener registry: the set of listeners by id and what can be read of it (resources,
 * metrics, views, stored files, the configuration and its revisions). Every change of the set
 * goes through the change engine (core/change.h, included here); the metrics ticker and the
 * drain reaper run on their own thread (core/ticker.h).
 *
 * Thread rules: every function may be called from any thread. Reads take only a short lock
 * and never wait for a change to finish its I/O.
 *
 * Errors: 0 on success or a negative errno (err filled where the function takes one):
 *   -ENOENT      no listener with that id (or no such revision, or file)
 *   -ENOTSUP     the listener's service keeps no files
 *   -EINVAL      a bad file name
 *   -ENOMEM      out of memory
 * The changes' errors are core/change.h's.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/change.h"
#include "core/config.h"
#include "core/err.h"
#include "core/events.h"
#include "core/metrics.h"
#include "core/revisions.h"
#include "core/service.h"

struct core_registry;

struct core_registry_opts {
    const struct core_service_table *services; /* borrowed for the registry's life */
    const char *state_dir;                     /* copied; the state file lives here */
    bool persist;                              /* write the state file after every change */
    size_t max_listeners;                      /* 0: 256 */
    /* Borrowed, may be NULL: where changes are published, and metrics ticks every
     * metrics_interval_ms (0: 1000) while anyone subscribes. */
    struct core_events *events;
    unsigned metrics_interval_ms;
};

/* Creates an empty registry and its ticker thread (core/ticker.h). Returns 0 or
 * a negative errno. Free with core_registry_free(). */
int core_registry_new(const struct core_registry_opts *opts, struct core_registry **ret);

/* Stops every listener (joining their threads), then frees the registry. Accepts NULL. Does
 * not persist: the state file already holds the last change. */
void core_registry_free(struct core_registry *r);

/* The whole configuration: {"revision": N, "listeners": [configurations, without status and
 * metrics, sorted by id]} (new reference), as of the last applied change. 0 or -ENOMEM. */
int core_registry_config(struct core_registry *r, json_t **ret);

/* The newest revisions first, at most limit: {"revisions": [...]} (see
 * core_revisions_list()). 0 or -ENOMEM. */
int core_registry_revisions(struct core_registry *r, size_t limit, json_t **ret);

/* Revision n with its listener set (core_revisions_get()), or -ENOENT when it is not kept. */
int core_registry_revision(struct core_registry *r, uint64_t n, json_t **ret);

/* One resource with its metrics (new reference), or -ENOENT; *ret_etag (may be NULL) gets the
 * revision that last created or changed it (the API's ETag). */
int core_registry_get(struct core_registry *r, const char *id, json_t **ret, uint64_t *ret_etag);

/* Every resource, ordered by id, as a JSON array (new reference). */
int core_registry_list(struct core_registry *r, json_t **ret);

/* One listener's metrics object, or -ENOENT. */
int core_registry_metrics(struct core_registry *r, const char *id, json_t **ret);

/* Called for each listener by core_registry_metrics_all() with its metrics object (fn may add
 * members) and the snapshot it was made from, under the registry's lock: fn must not call into
 * the registry. */
typedef void (*core_registry_metrics_fn)(void *ctx, const char *id, json_t *metrics,
                                         const struct core_metrics_snapshot *s);

/* Every listener's metrics as an object keyed by id (new reference); fn (may be NULL) sees each
 * one as it is made. */
int core_registry_metrics_all(struct core_registry *r, core_registry_metrics_fn fn, void *ctx,
                              json_t **ret);

/*
 * The files listener id keeps (backup): *ret is a JSON array (new reference). -ENOENT when
 * there is no such listener, -ENOTSUP when its service keeps no files.
 */
int core_registry_files(struct core_registry *r, const char *id, json_t **ret,
                        struct core_err *err);

/*
 * Opens stored file name of listener id for reading (version 0: the current one): *ret_fd
 * (the caller closes it) and *ret_size. -ENOENT for no such listener or file, -ENOTSUP when
 * its service keeps no files, -EINVAL for a bad name.
 */
int core_registry_file_open(struct core_registry *r, const char *id, const char *name,
                            unsigned version, int *ret_fd, uint64_t *ret_size,
                            struct core_err *err);

/* One listener as a reader of its counters sees it (see core_registry_views()). */
struct core_listener_view {
    char id[CORE_ID_MAX];
    const struct core_service *svc;
    enum core_transport transport;
    bool running;
    struct core_metrics_snapshot metrics;
};

/* Every listener, ordered by id, with a snapshot of its counters: *ret is an array of *ret_n
 * views (free() it). 0 or -ENOMEM. */
int core_registry_views(struct core_registry *r, struct core_listener_view **ret, size_t *ret_n);

/* Number of listeners. */
size_t core_registry_count(struct core_registry *r);

/* Whether the history of revisions was found damaged at load (core_revisions_problem()): then
 * true with what, in buf (len bytes). Any thread. */
bool core_registry_history_problem(struct core_registry *r, char *buf, size_t len);

/* Ends the live reconfigurations' draining runners that are done or past their deadline
 * (core_listener_reap_drained()), and tells those a whole-set change muted to drain
 * (core_listener_commit_all()). Does nothing while a change is under way: the change reaps
 * them itself. For the ticker (core/ticker.h), and for whoever made a change once it has
 * answered (the API's change thread, the fleet's apply worker); any thread. */
void core_registry_reap_drained(struct core_registry *r);

#endif
