#ifndef CORE_REGISTRY_H
#define CORE_REGISTRY_H

/*
 * The listener registry: the set of listeners by id, the one place that creates, changes,
 * starts, stops and deletes them, and persists the set (and its revisions) after every change.
 *
 * Thread rules: every function may be called from any thread. Changes are serialised by one
 * lock held across the change (binding and joining included); reads take only a short lock
 * and never wait for a change to finish its I/O.
 *
 * Errors: 0 on success or a negative errno with err filled:
 *   -EINVAL      bad input (err->field names the field)
 *   -ENOENT      no listener with that id (or no such revision)
 *   -EEXIST      the id is taken
 *   -EADDRINUSE  the port is in use (nothing was changed)
 *   -ENOSPC      the registry holds its maximum number of listeners
 *   -ESTALE      an If-Match that does not match (nothing was changed)
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
 * the defaults. The history of revisions is read from its file beside the state file; when
 * there is none, or the set it ends with is not the one loaded, a revision records the set
 * loaded (source "defaults" or "state file"). A history that cannot be read starts again.
 */
int core_registry_load(struct core_registry *r, const char *defaults, struct core_err *err);

/*
 * How a change is asked for, and what it did. Every change of the listener set (the functions
 * below that take one) is applied atomically: every listener it creates, changes or deletes, or
 * none; on a failure half-way what was applied is rolled back to the state before (the
 * listeners it did not touch are never stopped). Each applied change that changes some
 * configuration gets the next revision (core/revisions.h); one that changes nothing makes none.
 * "listener.created", "listener.changed" and "listener.deleted" events are published for each
 * listener it touched once it is applied, then a "config.revision" event {revision, source,
 * summary}.
 *
 * ETags are "r<revision>": the whole configuration's is its revision's, a listener's the one of
 * the revision that last created or changed it.
 */
struct core_change {
    /* in */
    bool dry_run; /* validate, check that the new sockets can be bound, answer the diff: change
                   * nothing (no revision) */
    /* An If-Match header value, or NULL for no precondition: "*" (what the change is about must
     * exist) or a list of entity tags, one of which must be the current ETag of what it is
     * about (the listener, or the whole configuration); else -ESTALE and nothing changes. */
    const char *if_match;
    const char *source; /* what asks, for the revision: "PUT /api/v1/config"; NULL: "api" */
    /* out, on success */
    uint64_t revision; /* the configuration's revision after the change (the current one for a
                        * dry run or a change of nothing) */
    uint64_t etag;     /* the revision of the ETag of what *ret is; 0: none. On -ESTALE: of the
                        * current ETag */
    json_t *diff;      /* the diff applied, or that a dry run would apply (core/diff.h); new
                        * reference, released by core_change_fini() */
    /* out, on failure: the listener at fault, "" when none */
    char listener[CORE_ID_MAX];
};

/* Releases what a change's answer holds. Accepts a zeroed one. */
void core_change_fini(struct core_change *ch);

/*
 * Creates a listener from a JSON object (see core_listener_cfg_from_json(); "id" may be absent,
 * one is made up). Starts it when enabled; if it cannot start, nothing is created. Returns
 * the new resource in *ret (new reference) on success; nothing for a dry run. An If-Match is
 * never met (-ESTALE): there is no listener yet.
 */
int core_registry_create(struct core_registry *r, const json_t *body, struct core_change *ch,
                         json_t **ret, struct core_err *err);

/*
 * PUT: replaces listener id's whole configuration with body (its "id", if present, must be
 * id), or creates it (*ret_created true). A running listener takes the new configuration as
 * core_listener_prepare() says (live, bind before close, or restart); a listener that should
 * run and does not (failed) is started again even when the configuration is the same. If that
 * fails, nothing changes.
 */
int core_registry_replace(struct core_registry *r, const char *id, const json_t *body,
                          struct core_change *ch, json_t **ret, bool *ret_created,
                          struct core_err *err);

/* PATCH: applies an RFC 7396 merge patch to listener id's configuration, then as replace. */
int core_registry_patch(struct core_registry *r, const char *id, const json_t *patch,
                        struct core_change *ch, json_t **ret, struct core_err *err);

/* Stops and removes listener id. */
int core_registry_delete(struct core_registry *r, const char *id, struct core_change *ch,
                         struct core_err *err);

/* Sets enabled and starts (again, if it failed), or clears it and stops, listener id; *ret is
 * the resource after (nothing for a dry run). */
int core_registry_start(struct core_registry *r, const char *id, struct core_change *ch,
                        json_t **ret, struct core_err *err);
int core_registry_stop(struct core_registry *r, const char *id, struct core_change *ch,
                       json_t **ret, struct core_err *err);

/* The whole configuration: {"revision": N, "listeners": [configurations, without status and
 * metrics, sorted by id]} (new reference), as of the last applied change. 0 or -ENOMEM. */
int core_registry_config(struct core_registry *r, json_t **ret);

/*
 * Replaces the whole listener set with body {"listeners": [...]} ("revision" and each
 * listener's "status" and "metrics" are ignored, so a GET's body can be sent back): listeners
 * absent are deleted, new ones created, changed ones changed, unchanged ones not touched. Each
 * listener is validated as by POST; a bad one is -EINVAL with err->field "listeners[I].FIELD"
 * (I its index in body) and ch->listener its id; ids must be present and unique. A failure to
 * apply names the listener in ch->listener (-EADDRINUSE with err->field
 * "listeners[I].port" when its port is in use). *ret: {"revision", "diff", "listeners":
 * [resources]} (nothing for a dry run).
 */
int core_registry_config_replace(struct core_registry *r, const json_t *body,
                                 struct core_change *ch, json_t **ret, struct core_err *err);

/* The newest revisions first, at most limit: {"revisions": [...]} (see
 * core_revisions_list()). 0 or -ENOMEM. */
int core_registry_revisions(struct core_registry *r, size_t limit, json_t **ret);

/* Revision n with its listener set (core_revisions_get()), or -ENOENT when it is not kept. */
int core_registry_revision(struct core_registry *r, uint64_t n, json_t **ret);

/* Applies revision n's listener set as core_registry_config_replace() does, as a new revision
 * ("restore of revision N"). -ENOENT when it is not kept. */
int core_registry_restore(struct core_registry *r, uint64_t n, struct core_change *ch, json_t **ret,
                          struct core_err *err);

/* One resource with its metrics (new reference), or -ENOENT; *ret_etag (may be NULL) gets the
 * revision of its ETag. */
int core_registry_get(struct core_registry *r, const char *id, json_t **ret, uint64_t *ret_etag);

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

/* Whether the history of revisions was found damaged at load (core_revisions_problem()): then
 * true with what, in buf (len bytes). Any thread. */
bool core_registry_history_problem(struct core_registry *r, char *buf, size_t len);

#endif
