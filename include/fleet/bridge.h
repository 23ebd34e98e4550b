#ifndef FLEET_BRIDGE_H
#define FLEET_BRIDGE_H

/*
 * The daemon's bridge to the fleet's broker. One bus thread owns every AMQP connection (one to
 * publish events with publisher confirms, one to consume: the desired-state stream, the node's
 * rpc inbox and, with a view, the events and the nodes stream). It takes the core event bus's
 * events (listeners, configuration revisions, backups, metrics ticks), wraps them in the
 * fleet's envelope and publishes them to PREFIX.events; it reads the desired-state records,
 * hands the newest one that targets this node to its apply worker (a thread of its own, which
 * runs the same all-or-nothing transaction as PUT /api/v1/config) and answers the record's
 * requester and the fleet with the result; it answers pings. The broker may come and go: the
 * bridge reconnects with backoff, keeps reliable events in a bounded outbox until the broker
 * confirms them, and never lets the data plane or the API wait on the broker.
 *
 * Thread rules: start and stop from the main thread; fleet_bridge_health_json() and
 * fleet_bridge_prometheus() from any thread (they read counters under a lock, never call the
 * broker library).
 */

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/events.h"
#include "core/registry.h"
#include "fleet/amqp.h"
#include "fleet/wire.h"

struct fleet_view;
struct fleet_bridge;

#define FLEET_BRIDGE_STATUS_INTERVAL_MS 10000
#define FLEET_BRIDGE_BACKOFF_MIN_MS 500
#define FLEET_BRIDGE_BACKOFF_MAX_MS 30000
#define FLEET_BRIDGE_BYE_WAIT_MS 2000

struct fleet_bridge_opts {
    struct core_registry *registry;     /* borrowed: outlives the bridge */
    struct core_events *events;         /* borrowed: outlives the bridge */
    const char *node;                   /* a valid node name (copied) */
    const struct fleet_labels *labels;  /* copied; NULL: none */
    const char *prefix;                 /* a valid prefix (copied); NULL: "sockserv" */
    const struct fleet_amqp_conf *amqp; /* checked settings (copied) */
    int64_t status_interval_ms;         /* node.status period; 0: 10 s */
    struct fleet_view *view; /* borrowed, may be NULL: fed from the broker (--fleet-view) */
};

/*
 * Starts the bus thread and the apply worker; the first connection is attempted from the bus
 * thread (an unreachable broker is not an error here: the bridge keeps retrying and the health
 * says why). Returns 0 with *ret, or a negative errno (-ENOMEM, a thread that could not start)
 * with err.
 */
int fleet_bridge_start(const struct fleet_bridge_opts *opts, struct fleet_bridge **ret,
                       struct core_err *err);

/*
 * Stops: when connected, publishes node.bye and waits for the broker's confirm of what is in
 * the outbox for at most FLEET_BRIDGE_BYE_WAIT_MS, closes the connections, lets an apply under
 * way finish, joins both threads, unsubscribes from the event bus and frees the bridge.
 * Accepts NULL.
 */
void fleet_bridge_stop(struct fleet_bridge *b);

/* The "fleet" member of GET /api/v1/health (see the contract): a new reference, NULL on ENOMEM. */
json_t *fleet_bridge_health_json(struct fleet_bridge *b);

/* Appends the sockserv_amqp_* families (and sockserv_fleet_applied_offset) in the Prometheus
 * text format to out. Returns 0 or -ENOMEM. */
int fleet_bridge_prometheus(struct fleet_bridge *b, struct core_buf *out);

#endif
