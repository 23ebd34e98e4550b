#ifndef FLEET_BRIDGE_INTERNAL_H
#define FLEET_BRIDGE_INTERNAL_H

/*
 * What the bridge's modules share: the bridge itself (bridge.c: the bus thread, its
 * connections, what the broker delivers, the loop), what goes out (bridge_publish.c: events,
 * outbox, replies, the core event bus, the view's pings), the apply worker (bridge_apply.c) and
 * the messages and counters (bridge_msg.c: pong, health, Prometheus).
 *
 * Locks: lock guards the members marked "lock" (counters and state the API thread reads, the
 * apply worker's hand-off); everything else belongs to the bus thread.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <amqp.h>
#include <jansson.h>

#include "core/clock.h"
#include "core/events.h"
#include "core/registry.h"
#include "fleet/amqp.h"
#include "fleet/bridge.h"
#include "fleet/outbox.h"
#include "fleet/wire.h"

enum bridge_state {
    BRIDGE_CONNECTING,
    BRIDGE_CONNECTED,
    BRIDGE_BLOCKED,
    BRIDGE_DOWN,
    BRIDGE_REFUSED,
    BRIDGE_STATE_COUNT,
};

/* A record handed to the apply worker. */
struct bridge_job {
    uint64_t offset;
    char record_id[FLEET_RECORD_ID_MAX];
    char correlation_id[FLEET_RECORD_ID_MAX];
    char reply_to[FLEET_KEY_MAX];
    bool reject;     /* the record is invalid: answer rejected with problem */
    json_t *problem; /* reject: the problem+json (owned) */
    json_t *config;  /* apply: the configuration (owned) */
    bool has_if_match;
    char if_match[FLEET_ETAG_MAX];
};

/* What the apply worker answers. */
struct bridge_result {
    char correlation_id[FLEET_RECORD_ID_MAX];
    char reply_to[FLEET_KEY_MAX];
    struct fleet_reply reply; /* owns its problem */
};

/* Counters and state the API thread reads (under lock). */
struct bridge_stats {
    enum bridge_state state;
    char last_error[256]; /* "" for none */
    int64_t since_ms;
    uint64_t published, confirmed, nacked, returned;
    uint64_t dropped_full, dropped_down, dropped_blocked;
    uint64_t reconnects;
    uint64_t outbox;
    bool has_applied_offset;
    uint64_t applied_offset;
    bool has_desired_offset;
    uint64_t desired_offset;
    uint64_t records_invalid;
};

struct fleet_bridge {
    /* settings, read-only after start */
    struct core_registry *registry;
    struct core_events *events;
    char node[FLEET_NAME_MAX];
    struct fleet_labels labels;
    char prefix[FLEET_NAME_MAX];
    struct fleet_amqp_conf amqp;
    int64_t status_interval_ms;
    struct fleet_view *view;
    char boot[FLEET_BOOT_LEN];
    int64_t started_ms;
    int efd; /* eventfd: wakes the bus thread */

    pthread_t bus, worker;
    bool bus_started, worker_started;
    atomic_bool stopping;

    pthread_mutex_t lock;
    pthread_cond_t cond;         /* the worker waits on it for a job or the stop (lock) */
    struct bridge_stats st;      /* lock */
    bool job_ready;              /* lock: job holds a record for the worker */
    struct bridge_job job;       /* lock */
    bool busy;                   /* lock: the worker holds a job */
    bool result_ready;           /* lock: result holds the worker's answer */
    struct bridge_result result; /* lock */
    bool worker_stop;            /* lock */

    /* the bus thread's */
    struct core_events_sub *sub;
    struct fleet_outbox *outbox;
    uint64_t seq;         /* last reliable seq given */
    int64_t last_tick_ms; /* last metrics.tick published */
    uint64_t unreliable_published;
    uint64_t overruns;
    amqp_connection_state_t pub, con;
    bool connected, pub_blocked, con_blocked;
    uint64_t pub_tag; /* last delivery tag on the confirm channel */
    char desired_tag[128], rpc_tag[128], reply_tag[128], events_tag[128], nodes_tag[128];
    bool has_mark;
    uint64_t mark; /* highest desired offset taken (skip what is at or below) */
    bool has_pending;
    struct bridge_job pending; /* newest record for the worker, not handed yet */
    json_t *last_result;       /* the last reply object, or NULL */
    int64_t next_retry_ms, backoff_ms, next_status_ms;
    bool ever_connected;
};

/* Channels of the consume connection. */
#define BRIDGE_CH_DESIRED 1
#define BRIDGE_CH_RPC 2
#define BRIDGE_CH_VIEW 3

/* Releases what a job owns and zeroes it. */
void bridge_job_fini(struct bridge_job *j);

/* The configuration ETag of revision, "\"r7\"" (as the REST API writes it). */
void bridge_etag(char *buf, size_t len, uint64_t revision);

/* The apply worker's thread function (bridge_apply.c). */
void *bridge_worker_main(void *arg);

/* The pong object (bus thread): a new reference, NULL on ENOMEM. */
json_t *bridge_pong_json(struct fleet_bridge *b);

/* Drops both connections after an error (no close handshake) and schedules a reconnect;
 * why goes to the log and the health (bridge.c). */
void bridge_session_fail(struct fleet_bridge *b, const char *why);

/* Counts an unreliable event dropped: blocked, or down (bridge.c). */
void bridge_count_dropped(struct fleet_bridge *b, bool blocked);

/* bridge_publish.c, all on the bus thread: */

/* Wraps data (taken) in an envelope of kind: reliable kinds get the next seq and go to the
 * outbox; unreliable ones are published now if possible, else counted dropped. */
void bridge_publish_event(struct fleet_bridge *b, const char *kind, json_t *data);

/* bridge_publish_event() with data NULL meaning {}. */
void bridge_push_node_event(struct fleet_bridge *b, const char *kind, json_t *data);

/* Publishes what the outbox holds unsent (not while blocked). */
void bridge_flush_outbox(struct fleet_bridge *b);

/* A reply (body borrowed) to reply_to with correlation_id, by direct reply-to on the consume
 * connection's rpc channel; nothing when disconnected or blocked. */
void bridge_send_reply(struct fleet_bridge *b, const char *reply_to, const char *correlation_id,
                       json_t *body);

/* The core event bus's notify: wakes the bus thread (any thread, under the bus's lock). */
void bridge_on_core_events(void *ctx);

/* Takes every queued core event and publishes it; resubscribes after an overrun. */
void bridge_drain_core_events(struct fleet_bridge *b);

/* Sends the pings the view asks for (rpc.NODE or rpc.all, replies by direct reply-to). */
void bridge_view_pings(struct fleet_bridge *b);

/* The state's name: "connected", ... */
const char *bridge_state_name(enum bridge_state s);

#endif
