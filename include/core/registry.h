#ifndef CORE_REGISTRY_H
#define CORE_REGISTRY_H

/*
 * The listener registry: the set of listeners by id, the one place that creates, changes,
 * starts, stops and deletes them, and persists the set after every change.
 *
 * Thread rules: every function may be called from any thread. Changes are serialised by one
 * lock held across the change (binding and joining included); reads take only a short lock
 * and never wait for a change to finish its I/O.
 *
 * Errors: 0 on success or a negative errno with err filled:
 *   -EINVAL      bad input (err->field names the field)
 *   -ENOENT      no listener with that id
 *   -EEXIST      the id is taken
 *   -EADDRINUSE  the port is in use (nothing was changed)
 *   -ENOSPC      the registry holds its maximum number of listeners
 *   other        the system failed (bind permissions, memory, persisting the state)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/config.h"
#include "core/err.h"
#include "core/events.h"
#include "core/metrics.h"
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

/* Creates an empty registry (and, with opts->events, its metrics ticker thread). Returns 0 or
 * a negative errno. Free with core_registry_free(). */
int core_registry_new(const struct core_registry_opts *opts, struct core_registry **ret);

/* Stops every listener (joining their threads), then frees the registry. Accepts NULL. Does
 * not persist: the state file already holds the last change. */
void core_registry_free(struct core_registry *r);

/*
 * Fills an empty registry at start-up: from the state file if there is one, else from
 * defaults (a JSON text in the state file's format; NULL for none). Each listener is started
 * if enabled; one that cannot start stays in state failed with the reason and the others go
 * on. A state file that cannot be read or parsed is -EINVAL (or the errno) with err naming
 * the file and the problem; nothing is started then. Writes the state file when it came from
 * the defaults.
 */
int core_registry_load(struct core_registry *r, const char *defaults, struct core_err *err);

/*
 * Creates a listener from a JSON object (see core_listener_cfg_from_json(); "id" may be absent,
 * one is made up). Starts it when enabled; if it cannot start, nothing is created. Returns
 * the new resource in *ret (new reference) on success.
 */
int core_registry_create(struct core_registry *r, const json_t *body, json_t **ret,
                         struct core_err *err);

/*
 * PUT: replaces listener id's whole configuration with body (its "id", if present, must be
 * id), or creates it (*ret_created true). A running listener is restarted with the new
 * configuration; if that fails it is brought back with the old one and nothing changes.
 */
int core_registry_replace(struct core_registry *r, const char *id, const json_t *body, json_t **ret,
                          bool *ret_created, struct core_err *err);

/* PATCH: applies an RFC 7396 merge patch to listener id's configuration, then as replace. */
int core_registry_patch(struct core_registry *r, const char *id, const json_t *patch, json_t **ret,
                        struct core_err *err);

/* Stops and removes listener id. */
int core_registry_delete(struct core_registry *r, const char *id, struct core_err *err);

/* Sets enabled and starts, or clears it and stops, listener id; *ret is the resource after. */
int core_registry_start(struct core_registry *r, const char *id, json_t **ret,
                        struct core_err *err);
int core_registry_stop(struct core_registry *r, const char *id, json_t **ret, struct core_err *err);

/* One resource with its metrics (new reference), or -ENOENT. */
int core_registry_get(struct core_registry *r, const char *id, json_t **ret);

/* Every resource, ordered by id, as a JSON array (new reference). */
int core_registry_list(struct core_registry *r, json_t **ret);

/* One listener's metrics object, or -ENOENT. */
int core_registry_metrics(struct core_registry *r, const char *id, json_t **ret);

/* Every listener's metrics as an object keyed by id (new reference). */
int core_registry_metrics_all(struct core_registry *r, json_t **ret);

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

#endif
