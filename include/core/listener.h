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
 * Creates a stopped listener with a copy of cfg. state_dir and events (NULL for none: then no
 * event is published) are borrowed for the listener's life. Every state change publishes a
 * "listener.state" event. Returns 0 or -ENOMEM.
 */
int core_listener_new(const struct core_listener_cfg *cfg, const char *state_dir,
                      struct core_events *events, struct core_listener **ret);

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
 * Applies a new configuration (same id); enabled decides whether it runs afterwards.
 *
 * Live path: when a TCP listener runs and stays enabled with the same address, port, transport
 * and service, and its runner can drain (models thread and process), the listening socket is
 * kept: a new runner starts on a dup of it (with a new service instance when the options
 * changed), then the old runner stops accepting and drains: its established connections go on
 * until they end or a deadline passes (the idle timeout, at most 30 s). The port never refuses
 * a connection meanwhile. Draining runners that are done or past their deadline are reaped at
 * each change and about once a second (core_listener_reap_drained()); stop and
 * free cut and join all of them. A "listener.state" running event (previous: running) says the
 * new configuration applies.
 *
 * Otherwise a running listener is stopped and started again when the configuration differs.
 * When the new configuration cannot start, the old one is put back (and started again if it
 * was enabled, or still runs on the live path) and the error is returned with err; the state
 * then shows what the listener really does.
 */
int core_listener_reconfigure(struct core_listener *l, const struct core_listener_cfg *cfg,
                              struct core_err *err);

/*
 * Stops the draining runners whose connections have all ended or whose deadline has passed
 * (cutting what is left), and joins them. Only the changing thread (the registry's ops
 * holder) calls it; the registry does so about once a second, so a deadline holds to within a
 * second even when no other change comes.
 */
void core_listener_reap_drained(struct core_listener *l);

/* Stops the listener if needed and frees it. Accepts NULL. */
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
 * The resource as the API shows it: the configuration, "status" (state, bound, since, error)
 * and, when with_metrics, "metrics". Any thread. Returns a new reference or NULL on ENOMEM.
 */
json_t *core_listener_to_json(struct core_listener *l, bool with_metrics);

/* The metrics object alone (see core_metrics_to_json()). Any thread. New reference. */
json_t *core_listener_metrics_json(struct core_listener *l);

#endif
