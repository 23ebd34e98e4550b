#ifndef CORE_REVISIONS_H
#define CORE_REVISIONS_H

/*
 * The revisions of the listener set: each applied change gets the next number (from 1), with
 * its time, its source (a line for humans, core_change_source_format(): "api: replace
 * configuration", "startup: state file") and its origin (the same as a JSON object,
 * core_change_source_json(); absent from revisions older than it), its diff (core/diff.h), a
 * one-line summary and the whole listener set after it. The last CORE_REVISIONS_KEEP are kept, in
 * memory and in a file beside the state file: one JSON line per revision (with every listener's
 * revision after it), appended and synced at each save, the file written whole (atomically, on
 * a thread of its own, "ss-compact", while saves go on appending) when it holds twice as many as
 * are kept. A last line cut short by a crash is dropped at load. Besides, the revision that last
 * changed each listener.
 *
 * Thread rules: every function may be called from any thread (one internal lock, never held
 * across I/O but a save's append and a rewrite's last step: the lines appended meanwhile and
 * the rename). Changes (append, drop, save) come from one thread at a time
 * (the registry's ops holder).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"

#define CORE_REVISIONS_FILE "revisions.jsonl"
#define CORE_REVISIONS_KEEP 100

struct core_revisions;

/* An empty history whose file is path (copied). Returns 0 or -ENOMEM. Free with
 * core_revisions_free(). */
int core_revisions_new(const char *path, struct core_revisions **ret);

/* Accepts NULL. */
void core_revisions_free(struct core_revisions *rv);

/*
 * Reads the file into an empty history. Returns 0; -ENOENT when there is no file; -EINVAL or
 * another negative errno with err naming the file and the problem (the history stays empty,
 * but the numbers it held stay taken). A last line cut short or damaged is dropped (returns 0).
 * Either damage is kept for core_revisions_problem().
 */
int core_revisions_load(struct core_revisions *rv, struct core_err *err);

/* The number the next revision appended takes: above the newest's and at least the floor. */
uint64_t core_revisions_next(struct core_revisions *rv);

/*
 * No revision appended from now on takes a number below n (the state file's revision, when the
 * history lost revisions: a number once given never names another set).
 */
void core_revisions_floor(struct core_revisions *rv, uint64_t n);

/* Records what is wrong with the history's file (printf-style; replaces an earlier report). */
void core_revisions_report(struct core_revisions *rv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Whether the file was found damaged at load (a torn or damaged line dropped, a line that is
 * not a revision, revisions missing): then true with what, in buf (len bytes). */
bool core_revisions_problem(struct core_revisions *rv, char *buf, size_t len);

/* The newest revision's number; 0 when there is none. */
uint64_t core_revisions_last(struct core_revisions *rv);

/* A copy of the newest revision's listener set (a JSON array of configurations sorted by id),
 * with its number in *ret_n; NULL when there is none (or ENOMEM). */
json_t *core_revisions_last_listeners(struct core_revisions *rv, uint64_t *ret_n);

/* The revision that last created or changed listener id; 0 when unknown. */
uint64_t core_revisions_of(struct core_revisions *rv, const char *id);

/*
 * Appends the next revision: now, source (copied), origin, diff and listeners (the set after it,
 * sorted by id; the three taken, also on failure), with listeners_text (taken, may be NULL) the
 * compact JSON text of listeners when the caller has it, for the file's line: NULL, listeners
 * are dumped when the line is written. Every listener the diff creates or changes gets
 * it as its revision, one it deletes loses its own; with all_listeners, every listener of the set
 * gets it (a history started afresh). In memory only: core_revisions_save() writes it. Returns
 * 0 with *ret its number, or -ENOMEM.
 */
int core_revisions_append(struct core_revisions *rv, const char *source, json_t *origin,
                          json_t *diff, json_t *listeners, char *listeners_text, bool all_listeners,
                          uint64_t *ret);

/* Takes back the newest revision appended (when what it records could not be persisted),
 * with the listeners' revisions as they were. Only right after core_revisions_append(). */
void core_revisions_drop_last(struct core_revisions *rv);

/* Writes the revisions the file lacks to it (see above), synced before it returns; the file's
 * rewrite whole it may start goes on after. Returns 0 or a negative errno with err set; the
 * file then holds what it held, or a torn last line dropped at the next load. */
int core_revisions_save(struct core_revisions *rv, struct core_err *err);

/* Waits until a rewrite of the file whole that a save started is done (or failed). */
void core_revisions_settle(struct core_revisions *rv);

/* The newest revisions first, at most limit, each {"revision","time","source","origin",
 * "summary","diff"} ("origin" absent when not recorded): a JSON array (new reference), NULL on
 * ENOMEM. */
json_t *core_revisions_list(struct core_revisions *rv, size_t limit);

/* Revision n as {"revision","time","source","origin","summary","diff","listeners"} (new reference):
 * 0, -ENOENT when it is not kept, or -ENOMEM. */
int core_revisions_get(struct core_revisions *rv, uint64_t n, json_t **ret);

#endif
