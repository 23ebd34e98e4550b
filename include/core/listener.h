#ifndef CORE_LISTENER_H
#define CORE_LISTENER_H

/*
 * A listener: one configured service on one address, port and transport, with the sockets and
 * worker threads of its runner (concurrency model) while it runs, its status and its metrics.
 *
 * Thread rules: new, start, stop and free are called by one thread at a time (the registry
 * serialises them); status and metrics may be read from any thread at any time.
 *
 * Changes to a listener's configuration are in core/listener_change.h (included below); its
 * sockets are bound through core/net.h.
 */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "core/addr.h"
#include "core/config.h"
#include "core/err.h"
#include "core/events.h"
#include "core/metrics.h"
#include "core/ratelimit.h"
#include "core/thread.h"

enum core_state {
    CORE_STATE_STOPPED,
    CORE_STATE_STARTING,
    CORE_STATE_RUNNING,
    CORE_STATE_STOPPING,
    CORE_STATE_FAILED,
    CORE_STATE_COUNT
};

struct core_listener;

const char *core_state_name(enum core_state s);

/*
 * Creates a stopped listener with a copy of cfg. state_dir, events (NULL for none: then no
 * event is published), own (NULL for none) and threads (the pool its runners' threads come
 * from, core/thread.h) are borrowed for the listener's life. Every state
 * change publishes a "listener.state" event ({"id", "state", "previous", "bound", "error",
 * "since", "draining"}). While it runs, its bound socket is in own (the
 * endpoints a UDP listener never answers) and its runners are handed own. Returns 0 or -ENOMEM.
 */
int core_listener_new(const struct core_listener_cfg *cfg, const char *state_dir,
                      struct core_events *events, struct core_endpoints *own,
                      struct core_threads *threads, struct core_listener **ret);

/*
 * Binds the sockets and starts the workers; returns once the listener is running (0), or with
 * the listener in state failed and a negative errno (-EADDRINUSE, -EACCES, ...) and err saying
 * why. Starting a running listener returns 0.
 */
int core_listener_start(struct core_listener *l, struct core_err *err);

/*
 * Stops accepting, closes every connection (of draining runners too), joins every worker, reaps
 * every child process and closes every fd. Returns when done; the listener is then stopped.
 * Stopping a stopped listener does nothing.
 */
void core_listener_stop(struct core_listener *l);

/* Tells the listener's runners (the draining ones too) to stop, without waiting for them: a
 * core_listener_stop() or core_listener_free() that follows finds them ending, so that many
 * listeners stop in the time of one. Only from the thread making changes. */
void core_listener_stop_begin(struct core_listener *l);

/*
 * Binds a socket as cfg would (address, port, transport, socket options) and closes it: 0
 * when cfg's socket can be bound now, or the negative errno (-EADDRINUSE, ...) with err set as
 * core_listener_start() would.
 */
int core_listener_probe(const struct core_listener_cfg *cfg, struct core_err *err);

/* The port the listener's socket is bound to while it runs, else 0. Only from the thread
 * making changes. */
uint16_t core_listener_bound_port(const struct core_listener *l);

/* Undoes a change under way, stops the listener if needed and frees it. Accepts NULL. */
void core_listener_free(struct core_listener *l);

/* The configuration; valid until the next reconfigure. Only from the thread making changes. */
const struct core_listener_cfg *core_listener_cfg(const struct core_listener *l);

/* A deep copy of the configuration into *ret (release with core_listener_cfg_fini()). Any
 * thread. Returns 0 or -ENOMEM. */
int core_listener_cfg_snapshot(struct core_listener *l, struct core_listener_cfg *ret);

/* The id; never changes, any thread. */
const char *core_listener_id(const struct core_listener *l);

/* The counters, in a MAP_SHARED mapping (the process model's children add to them); valid
 * until the listener is freed. */
struct core_metrics *core_listener_metrics(struct core_listener *l);

enum core_state core_listener_state(struct core_listener *l);

/*
 * The resource as the API shows it: the configuration, "status" (state, bound, since, error,
 * draining: [{"bound", "connections" (null when it cannot be told), "deadline"}]) and, when
 * with_metrics, "metrics". Any thread. Returns a new reference or NULL on ENOMEM.
 */
json_t *core_listener_to_json(struct core_listener *l, bool with_metrics);

/*
 * What core_listener_to_json() shows, copied at one instant (under the listener's lock) so that
 * the JSON can be made later and on another thread: a change publishes the resources of the
 * listeners it made or changed as such snapshots, and the event bus turns one into text only when
 * somebody reads it (core_events_publish_lazy()). Take: any thread, NULL on ENOMEM. Json: any
 * thread, as often as wanted; a new reference or NULL. Free: NULL is fine.
 */
struct core_listener_snapshot;
struct core_listener_snapshot *core_listener_snapshot_take(struct core_listener *l,
                                                           bool with_metrics);
json_t *core_listener_snapshot_json(const struct core_listener_snapshot *v);
void core_listener_snapshot_free(struct core_listener_snapshot *v);

/* The metrics object alone (see core_metrics_to_json()); ret_snap (may be NULL) gets the snapshot
 * it was made from. Any thread. New reference. */
json_t *core_listener_metrics_json(struct core_listener *l, struct core_metrics_snapshot *ret_snap);

/* Live reconfiguration, and the runners it leaves draining. */
#include "core/listener_change.h"

#endif
