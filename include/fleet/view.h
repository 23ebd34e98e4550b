#ifndef FLEET_VIEW_H
#define FLEET_VIEW_H

/*
 * The fleet view: one table of the fleet's nodes, built from what the broker carries (events
 * from PREFIX.events bound with ev.#, records of the PREFIX.nodes stream, pongs to rpc pings),
 * and the one place where a node's state (SYNCED, PENDING, ERROR, STALE, OFFLINE) is decided.
 * The daemon's --fleet-view feeds it from the bus thread and serves it as GET /api/v1/fleet;
 * `sockserv fleet ls` feeds it the nodes stream and the pongs, then prints its JSON.
 *
 * The view never touches the broker: it is fed bodies (the bytes of a message, not
 * necessarily NUL-terminated) and says which nodes it wants pinged; its owner sends the pings.
 * Bodies it cannot read are ignored (a view must survive whatever is on the exchange).
 *
 * Times: every now_ms is the wall clock (CLOCK_REALTIME) in milliseconds since the epoch, as
 * fleet_view_now_ms() gives; the view renders times ("since", "last_seen", "updated") from it.
 *
 * States (see fleet_view_state_name()), per node:
 * - OFFLINE: its last word was node.bye, or it was seen only in history (nodes stream records
 *   older than 3 status intervals) or went quiet, and a ping asked of it was not answered in
 *   the ping timeout. An OFFLINE node a just-published record targets
 *   (fleet_view_note_published()) is PENDING.
 * - STALE: it was live, but nothing (status, pong, event) came for 3 status intervals.
 * - ERROR: its last result (for its desired offset, or newer) was rejected or conflict.
 * - PENDING: a record targets it that it has not answered (desired_offset > last result's).
 * - SYNCED: otherwise.
 *
 * Thread rules: every function may be called from any thread (one mutex inside, held with no
 * I/O and no callbacks). Errors: fleet_view_new() returns 0 or -EINVAL/-ENOMEM; the feeding
 * functions return nothing (bad input is dropped, counted in "ignored").
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "core/buf.h"

enum fleet_view_state {
    FLEET_VIEW_SYNCED,
    FLEET_VIEW_PENDING,
    FLEET_VIEW_ERROR,
    FLEET_VIEW_STALE,
    FLEET_VIEW_OFFLINE,
    FLEET_VIEW_STATE_COUNT
};

#define FLEET_VIEW_NODES_MAX 4096 /* nodes kept; more are ignored (counted) */
#define FLEET_VIEW_STALE_INTERVALS 3

struct fleet_view; /* thread-safe: locks inside */

/* The wall clock in milliseconds since the epoch: the view's now_ms. */
static inline int64_t fleet_view_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "SYNCED", "PENDING", "ERROR", "STALE", "OFFLINE". */
const char *fleet_view_state_name(enum fleet_view_state s);

/*
 * Creates an empty view. status_interval_ms (> 0) is the nodes' status interval (the
 * daemon's --fleet-status-interval): 3 of them without a word make a node STALE. The ping
 * timeout starts equal to it (capped at 5 s). The view starts not connected. Returns 0 with
 * *ret, -EINVAL, or -ENOMEM. Free with fleet_view_free().
 */
int fleet_view_new(int64_t status_interval_ms, struct fleet_view **ret);

/* Frees the view. Accepts NULL. */
void fleet_view_free(struct fleet_view *v);

/*
 * An event from PREFIX.events (bound ev.#) or a record from the PREFIX.nodes stream: the
 * envelope {"node","boot","seq","time","kind","data"}. Duplicates (the same boot and a seq
 * already seen: a record that came both live and from the stream) change nothing but
 * last_seen. A seq gap or a new boot makes the node want a ping; so does node.hello.
 * node.bye makes it OFFLINE. Records whose "time" is older than 3 status intervals are
 * history: they make the node known (with that last_seen) but not live. node.forgotten (sent
 * by `sockserv fleet forget`) removes the node from the table unless it was heard after the
 * event's time; its messages older than that time, arriving later, are dropped; a newer event
 * or a pong brings it back, as a new node.
 */
void fleet_view_on_event(struct fleet_view *v, const char *body, size_t len, int64_t now_ms);

/* A pong (the reply to {"op":"ping"}): replaces the node's snapshot; the node is live. */
void fleet_view_on_pong(struct fleet_view *v, const char *body, size_t len, int64_t now_ms);

/*
 * Nodes that need a (re)snapshot ping (gap, new boot, hello; a STALE node once, until it speaks
 * again: a ping it leaves unanswered for the ping timeout makes it OFFLINE), at most max names
 * copied into nodes (NUL-terminated); returns how many. *all is set true when everyone should be
 * pinged (the view just connected, or more nodes want one than max), else false. Each node is
 * returned once per request: the caller is expected to send the pings now (rpc.<node>, or
 * rpc.all when *all), and the ping timeout runs from now_ms.
 */
size_t fleet_view_wants_ping(struct fleet_view *v, char (*nodes)[64], size_t max, bool *all,
                             int64_t now_ms);

/*
 * Records that a ping went to node (NULL: rpc.all, every known node) at now_ms without going
 * through fleet_view_wants_ping() (the CLI pings rpc.all itself). A node that does not answer
 * within the ping timeout, and has no fresher word, is OFFLINE.
 */
void fleet_view_ping_sent(struct fleet_view *v, const char *node, int64_t now_ms);

/* Sets the ping timeout (> 0; the CLI's --wait). */
void fleet_view_set_ping_timeout(struct fleet_view *v, int64_t timeout_ms);

/*
 * Records that a desired-state record at offset targets node (the CLI after its apply was
 * confirmed): the node is known, and PENDING until it answers that offset, even when offline.
 */
void fleet_view_note_published(struct fleet_view *v, const char *node, int64_t offset);

/* Whether the view's own broker connection is up ("connected" in the JSON; "since" is when it
 * last changed, on the wall clock). Going up makes every node wanted for a ping. */
void fleet_view_set_connected(struct fleet_view *v, bool connected);

/*
 * GET /api/v1/fleet's body, a new reference (json_decref() it):
 * {"connected": bool, "since": time|null, "updated": time, "status_interval_ms": n,
 *  "nodes": [{"node","boot","labels":{},"state","since","last_seen","online","version",
 *             "revision","etag","applied_offset","desired_offset","last_result":{..}|null,
 *             "bridge":{..}|null,"listeners":[{"id","service","transport","port","state",
 *             "enabled","rates":{..}|null,"counters":{..}|null}]}, ...] (sorted by node),
 *  "counts": {"SYNCED": n, "PENDING": n, "ERROR": n, "STALE": n, "OFFLINE": n},
 *  "ignored": n}
 * Returns NULL only when out of memory.
 */
json_t *fleet_view_json(struct fleet_view *v, int64_t now_ms);

/* The number of nodes in each state now (for sockserv_fleet_nodes{state}). */
void fleet_view_counts(struct fleet_view *v, int64_t now_ms,
                       size_t ret_counts[FLEET_VIEW_STATE_COUNT]);

/* Appends the gauge family sockserv_fleet_nodes{state="..."} (every state, 0 included) in the
 * Prometheus text format to out. Returns 0 or -ENOMEM. */
int fleet_view_prometheus(struct fleet_view *v, int64_t now_ms, struct core_buf *out);

#endif
