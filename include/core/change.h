#ifndef CORE_CHANGE_H
#define CORE_CHANGE_H

/*
 * The change engine: every change of the listener set goes through it, whoever asks (the REST
 * API, the start-up load, a fleet bridge). A change is planned against the listeners there are
 * (what to create, change, delete, keep), checked (the services' environment and claims), for
 * a dry run probed (can each new socket be bound), else applied, persisted (the state file)
 * and committed (a new revision, core/revisions.h, and the events); a failure half-way rolls
 * back what was applied, and the listeners it did not touch are never stopped.
 *
 * Nothing here knows HTTP: the precondition is an expected revision (struct core_expect), the
 * asker a structured value (struct core_change_source); the API turns If-Match headers into
 * the one and its routes into the other.
 *
 * Thread rules: every function may be called from any thread. Changes are serialised by the
 * registry's change lock, held across the change (binding and joining included); reads
 * (core/registry.h) never wait for a change's I/O.
 *
 * Errors: 0 on success or a negative errno with err filled (err->field naming the field of a
 * bad input), and nothing changed:
 *   -EINVAL      bad input
 *   -ENOENT      no listener with that id (or no such revision)
 *   -EEXIST      the id is taken
 *   -EADDRINUSE  the port is in use; -EADDRNOTAVAIL the address is not this host's
 *   -EACCES, -EPERM  the daemon may not bind there (a privileged port)
 *   -EBUSY       another listener claims what it claims (a backup directory)
 *   -EMLINK      the registry would hold more than its maximum number of listeners
 *   -ESTALE      the expected revision is not the current one
 *   -ENOMEM      out of memory
 *   other        the system failed; with ch->persist_failed, writing the state file failed
 *                and the errno is the system's (-ENOSPC or -EDQUOT: the disk is full)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/config.h"
#include "core/err.h"

struct core_registry;

/*
 * What a change expects of what it is about (a listener, or the whole configuration, whose
 * revisions are core/revisions.h's): nothing; that it exists; or that its revision is one of
 * revisions[0..n). ONE_OF with n == 0 is never met (asked for a version that cannot be).
 */
enum core_expect_kind {
    CORE_EXPECT_NONE,
    CORE_EXPECT_EXISTS,
    CORE_EXPECT_ONE_OF,
    CORE_EXPECT_KIND_COUNT,
};

#define CORE_EXPECT_MAX 16

struct core_expect {
    enum core_expect_kind kind;
    uint64_t revisions[CORE_EXPECT_MAX];
    size_t n;
};

/* Whether e is met by something at revision (exists false: there is no such thing). */
bool core_expect_met(const struct core_expect *e, uint64_t revision, bool exists);

/* Who asks for a change. */
enum core_iface {
    CORE_IFACE_API,     /* the REST API */
    CORE_IFACE_STARTUP, /* the daemon's start (core_registry_load()) */
    CORE_IFACE_FLEET,   /* a fleet bridge */
    CORE_IFACE_COUNT,
};

/* What the change does; the registry function called sets it. */
enum core_change_kind {
    CORE_CHANGE_CREATE,
    CORE_CHANGE_REPLACE,
    CORE_CHANGE_PATCH,
    CORE_CHANGE_DELETE,
    CORE_CHANGE_START,
    CORE_CHANGE_STOP,
    CORE_CHANGE_CONFIG_REPLACE,
    CORE_CHANGE_RESTORE,
    CORE_CHANGE_LOAD_DEFAULTS,
    CORE_CHANGE_LOAD_STATE,
    CORE_CHANGE_KIND_COUNT,
};

#define CORE_SOURCE_MAX 128

/* The source of a change, as its revision records it. */
struct core_change_source {
    enum core_iface iface;
    enum core_change_kind kind;
    char listener[CORE_ID_MAX]; /* the listener a one-listener change is about; "" for none */
    uint64_t restored;          /* the revision a restore applies; 0 for none */
    bool has_fleet_offset;      /* a fleet change: the record it applies */
    uint64_t fleet_offset;
};

/* The interface's and the kind's names in a revision's "origin": "api", "replace". */
const char *core_iface_name(enum core_iface iface);
const char *core_change_kind_name(enum core_change_kind kind);

/*
 * The human source of a revision, formatted from s into buf (len bytes, CORE_SOURCE_MAX is
 * enough): "api: replace listener e1", "api: replace configuration", "api: restore of
 * revision 3", "startup: state file", "fleet: delete listener b".
 */
void core_change_source_format(const struct core_change_source *s, char *buf, size_t len);

/* A revision's "origin": {"interface","action","listener","restored"} ("listener" and
 * "restored" null when none). New reference, NULL on ENOMEM. */
json_t *core_change_source_json(const struct core_change_source *s);

/*
 * How a change is asked for, and what it did. Each applied change that changes some
 * configuration gets the next revision; one that changes nothing makes none.
 * "listener.created", "listener.changed" and "listener.deleted" events are published for each
 * listener it touched once it is applied, then a "config.revision" event {revision, source,
 * origin, summary}.
 *
 * A listener's revision is the one that last created or changed it; the whole
 * configuration's, its newest.
 */
struct core_change {
    /* in */
    bool dry_run; /* validate, check that the new sockets can be bound, answer the diff: change
                   * nothing (no revision) */
    bool minimal; /* a whole configuration's answer without the listeners' resources (the
                   * client asked Prefer: return=minimal): what it costs follows what changed */
    struct core_expect expect; /* about the listener, or the whole configuration; a create
                                * with any expectation is -ESTALE (there is nothing yet) */
    enum core_iface iface;     /* who asks */
    /* A fleet change (iface CORE_IFACE_FLEET): the offset of the desired-state record it
     * applies. It is stored in the state file in the same atomic write as the configuration,
     * also when the change changes nothing (then the write holds only the new offset), and
     * named in the revision's source. */
    bool has_fleet_offset;
    uint64_t fleet_offset;
    /* out: what the change was (set by the function called, also on failure) */
    struct core_change_source source;
    /* out, on success */
    uint64_t revision; /* the configuration's revision after the change (the current one for a
                        * dry run or a change of nothing) */
    uint64_t etag;     /* the revision of what *ret is; 0: none. On -ESTALE: the current one
                        * (0 when it does not exist) */
    json_t *diff;      /* the diff applied, or that a dry run would apply (core/diff.h); new
                        * reference, released by core_change_fini() */
    /* out, on failure */
    char listener[CORE_ID_MAX]; /* the listener at fault, "" when none */
    bool persist_failed;        /* the state file could not be written (the daemon's fault) */
};

/* Releases what a change's answer holds. Accepts a zeroed one. */
void core_change_fini(struct core_change *ch);

/*
 * Fills an empty registry at start-up: from the state file if there is one, else from
 * defaults (a JSON text in the state file's format; NULL for none). Each listener is started
 * if enabled; one that cannot start stays in state failed with the reason and the others go
 * on. A state file that cannot be read or parsed is -EINVAL (or the errno) with err naming
 * the file and the problem; nothing is started then. Writes the state file when it came from
 * the defaults. The history of revisions is read from its file beside the state file; when
 * there is none, or the set it ends with is not the one loaded, a revision records the set
 * loaded (source "startup: defaults" or "startup: state file"). A history that cannot be read
 * starts again.
 */
int core_registry_load(struct core_registry *r, const char *defaults, struct core_err *err);

/*
 * Creates a listener from a JSON object (see core_listener_cfg_from_json(); "id" may be absent,
 * one is made up). Starts it when enabled; if it cannot start, nothing is created. Returns
 * the new resource in *ret (new reference) on success; nothing for a dry run.
 */
int core_registry_create(struct core_registry *r, const json_t *body, struct core_change *ch,
                         json_t **ret, struct core_err *err);

/*
 * Replaces listener id's whole configuration with body (its "id", if present, must be id), or
 * creates it (*ret_created true). A running listener takes the new configuration as
 * core_listener_prepare() says (live, bind before close, or restart); a listener that should
 * run and does not (failed) is started again even when the configuration is the same. If that
 * fails, nothing changes.
 */
int core_registry_replace(struct core_registry *r, const char *id, const json_t *body,
                          struct core_change *ch, json_t **ret, bool *ret_created,
                          struct core_err *err);

/* Applies an RFC 7396 merge patch to listener id's configuration, then as replace. */
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

/*
 * Replaces the whole listener set with body {"listeners": [...]} ("revision" and each
 * listener's "status" and "metrics" are ignored, so a GET's body can be sent back): listeners
 * absent are deleted, new ones created, changed ones changed, unchanged ones not touched. Each
 * listener is validated as by create; a bad one is -EINVAL with err->field "listeners[I].FIELD"
 * (I its index in body) and ch->listener its id; ids must be present and unique. A failure to
 * apply names the listener in ch->listener (-EADDRINUSE with err->field
 * "listeners[I].port" when its port is in use). *ret: {"revision", "diff", "listeners":
 * [resources]} (nothing for a dry run).
 */
int core_registry_config_replace(struct core_registry *r, const json_t *body,
                                 struct core_change *ch, json_t **ret, struct core_err *err);

/* Applies revision n's listener set as core_registry_config_replace() does, as a new revision
 * ("restore of revision N"). -ENOENT when it is not kept. */
int core_registry_restore(struct core_registry *r, uint64_t n, struct core_change *ch, json_t **ret,
                          struct core_err *err);

/*
 * Records that the fleet record at offset was answered without a change of the configuration
 * (rejected or conflict): a write of the state file with the listener set as it is and the new
 * offset, under the change lock, so that a restart resumes the stream after it. Without a state
 * file (persist off) only the offset in memory. Returns 0 or the write's errno with err.
 */
int core_registry_fleet_mark(struct core_registry *r, uint64_t offset, struct core_err *err);

/* The offset of the newest fleet record answered (as stored in the state file): *ret_has false
 * when none. */
void core_registry_fleet_offset(struct core_registry *r, bool *ret_has, uint64_t *ret_offset);

/* The offset of the fleet record whose configuration runs (the last one applied or answered
 * unchanged, kept in the state file): *ret_has false when none. */
void core_registry_fleet_applied(struct core_registry *r, bool *ret_has, uint64_t *ret_offset);

#endif
