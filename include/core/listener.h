#ifndef CORE_LISTENER_H
#define CORE_LISTENER_H

/*
 * A listener: one configured service on one address, port and transport, with the sockets and
 * worker threads of its runner (concurrency model) while it runs, its status and its metrics.
 *
 * Thread rules: new, start, stop and free are called by one thread at a time (the registry
 * serialises them); status and metrics may be read from any thread at any time.
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
 * event is published) and own (NULL for none) are borrowed for the listener's life. Every state
 * change publishes a "listener.state" event ({"id", "state", "previous", "bound", "error",
 * "since", "draining"}). While it runs, its bound socket is in own (the
 * endpoints a UDP listener never answers) and its runners are handed own. Returns 0 or -ENOMEM.
 */
int core_listener_new(const struct core_listener_cfg *cfg, const char *state_dir,
                      struct core_events *events, struct core_endpoints *own,
                      struct core_listener **ret);

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

/*
 * The first half of a change to cfg (same id), which core_listener_commit() completes or
 * core_listener_abort() undoes. Until one of them is called, no other change may be made.
 *
 * - Live path: when a TCP listener runs and stays enabled with the same address, port (or the
 *   port the kernel gave it for 0), transport and service, and does not move into `event`
 *   (whose sockets need SO_REUSEPORT before they are bound), the listening socket is kept: a
 *   new runner starts on a dup of it (with a new service instance when the options changed).
 *   Until the commit the old runner accepts too.
 * - Bind before close: when a running listener stays enabled with the same transport and
 *   service but another address or port, the new socket is bound and a new runner started on
 *   it; until the commit the old runner still serves its socket. A new address that takes in
 *   the old one on the same port (127.0.0.1 to ::), which cannot be bound beside it, restarts.
 * - Otherwise the listener is stopped and started again (when enabled); when that fails, the
 *   old configuration is put back at once, as it was (running again, failed with its old
 *   reason, or stopped), and the error is returned.
 *
 * Returns 0 (also when cfg changes nothing: commit and abort then do nothing), or a negative
 * errno with err set and the listener as it was: -EADDRINUSE (err->field "port") when a new
 * socket cannot be bound, -EBUSY when a change is already under way.
 */
int core_listener_prepare(struct core_listener *l, const struct core_listener_cfg *cfg,
                          struct core_err *err);

/* Whether the change prepared keeps the established connections (live path, bind before
 * close). */
bool core_listener_prepared_live(const struct core_listener *l);

/*
 * Completes the change prepared: the old runner of the live path or of a moved TCP socket
 * stops accepting (a moved socket is closed: its port refuses at once) and drains: its
 * established connections go on until they end or the new configuration's drain_timeout_ms
 * passes. A moved UDP socket's old runner is stopped. A "listener.state" running event
 * (previous: running) says the new configuration applies, with the drain in "draining".
 * Draining runners that are done or past their deadline are reaped at each change and about
 * once a second (core_listener_reap_drained()); stop and free cut and join all of them.
 */
void core_listener_commit(struct core_listener *l);

/* Undoes the change prepared: the new runner is stopped (and its socket closed), the old one
 * goes on as if nothing happened; a restart is undone as when it fails. */
void core_listener_abort(struct core_listener *l);

/* core_listener_prepare() then, on success, core_listener_commit(). */
int core_listener_reconfigure(struct core_listener *l, const struct core_listener_cfg *cfg,
                              struct core_err *err);

/* What a listener is, to put it back after a change that was committed. */
struct core_listener_saved {
    struct core_listener_cfg cfg;
    enum core_state state;
    char error[sizeof(((struct core_err *)0)->msg)];
};

/* A copy of the configuration, state and error into *ret (release with
 * core_listener_saved_fini()). Returns 0 or -ENOMEM. */
int core_listener_save(struct core_listener *l, struct core_listener_saved *ret);
void core_listener_saved_fini(struct core_listener_saved *s);

/*
 * Puts back what s says, as a change that is committed at once: the configuration, running
 * when it ran (with a socket bound again if the one it had was closed), stopped, or failed with
 * its old reason (not started again). Best effort: when it cannot run, its state says why.
 */
void core_listener_restore(struct core_listener *l, const struct core_listener_saved *s);

/*
 * Binds a socket as cfg would (address, port, transport, socket options) and closes it: 0
 * when cfg's socket can be bound now, or the negative errno (-EADDRINUSE, ...) with err set as
 * core_listener_start() would.
 */
int core_listener_probe(const struct core_listener_cfg *cfg, struct core_err *err);

/* The port the listener's socket is bound to while it runs, else 0. Only from the thread
 * making changes. */
uint16_t core_listener_bound_port(const struct core_listener *l);

/*
 * Stops the draining runners whose connections have all ended or whose deadline has passed
 * (cutting what is left), and joins them; a "listener.state" event (state unchanged) then
 * shows the drains left. Only the changing thread (the registry's ops holder) calls it; the
 * registry does so about once a second, so a deadline holds to within a second even when no
 * other change comes.
 */
void core_listener_reap_drained(struct core_listener *l);

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

/* The metrics object alone (see core_metrics_to_json()). Any thread. New reference. */
json_t *core_listener_metrics_json(struct core_listener *l);

#endif
