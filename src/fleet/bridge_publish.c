/*
 * The bridge's outgoing side, on the bus thread: events wrapped and published (reliable ones
 * through the outbox), replies to requesters, the core event bus drained, the view's pings.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge_internal.h"
#include "core/log.h"
#include "fleet/view.h"

#define VIEW_PINGS_MAX 64

/* ---- publishing ------------------------------------------------------------------------- */

/* Wraps data (taken) in an envelope of kind; reliable kinds get the next seq and go to the
 * outbox; unreliable ones are published now if possible, else counted dropped. */
void bridge_publish_event(struct fleet_bridge *b, const char *kind, json_t *data)
{
    bool reliable = fleet_kind_is_reliable(kind);
    int64_t now = fleet_now_ms();
    uint64_t seq = reliable ? b->seq + 1 : 0;
    char rk[FLEET_KEY_MAX], mid[FLEET_MESSAGE_ID_MAX];
    json_t *env;
    char *text;

    if (!reliable && (!b->connected || b->pub_blocked)) {
        json_decref(data);
        bridge_count_dropped(b, b->pub_blocked);
        return;
    }
    env = fleet_envelope(b->node, b->boot, seq, now, kind, data);
    text = env ? json_dumps(env, JSON_COMPACT) : NULL;
    json_decref(env);
    if (!text || fleet_routing_key(rk, sizeof(rk), b->node, kind) < 0 ||
        fleet_message_id(mid, sizeof(mid), b->node, b->boot, seq, now) < 0) {
        free(text);
        core_log_warn("fleet: event %s not published: out of memory", kind);
        return;
    }
    if (reliable) {
        const struct fleet_outbox_msg m = {.routing_key = rk,
                                           .kind = kind,
                                           .message_id = mid,
                                           .seq = seq,
                                           .timestamp = now / 1000,
                                           .body = text,
                                           .body_len = strlen(text)};

        if (fleet_outbox_push(b->outbox, &m) >= 0)
            b->seq = seq;
    } else {
        char events[FLEET_KEY_MAX];
        struct core_err err = {0};
        const struct fleet_amqp_msg m = {.exchange = events,
                                         .routing_key = rk,
                                         .body = text,
                                         .len = strlen(text),
                                         .type = kind,
                                         .message_id = mid,
                                         .expiration = FLEET_TICK_EXPIRATION,
                                         .timestamp_s = now / 1000};

        (void)fleet_name(events, sizeof(events), b->prefix, "events");
        if (fleet_amqp_publish(b->pub, FLEET_AMQP_CHANNEL, &m, &err) < 0) {
            free(text);
            bridge_session_fail(b, err.msg);
            return;
        }
        b->pub_tag++;
        b->unreliable_published++;
    }
    free(text);
}

void bridge_push_node_event(struct fleet_bridge *b, const char *kind, json_t *data)
{
    bridge_publish_event(b, kind, data ? data : json_object());
}

/* Publishes what the outbox holds unsent (not while blocked). */
void bridge_flush_outbox(struct fleet_bridge *b)
{
    char events[FLEET_KEY_MAX];
    const struct fleet_outbox_msg *m;

    (void)fleet_name(events, sizeof(events), b->prefix, "events");
    while (b->connected && !b->pub_blocked && (m = fleet_outbox_next_unsent(b->outbox))) {
        struct core_err err = {0};
        const struct fleet_amqp_msg am = {.exchange = events,
                                          .routing_key = m->routing_key,
                                          .body = m->body,
                                          .len = m->body_len,
                                          .persistent = true,
                                          .type = m->kind,
                                          .message_id = m->message_id,
                                          .timestamp_s = m->timestamp};

        if (fleet_amqp_publish(b->pub, FLEET_AMQP_CHANNEL, &am, &err) < 0) {
            bridge_session_fail(b, err.msg);
            return;
        }
        (void)fleet_outbox_sent(b->outbox, ++b->pub_tag);
    }
}

/* A reply on the consume connection's rpc channel (direct reply-to, default exchange). */
void bridge_send_reply(struct fleet_bridge *b, const char *reply_to, const char *correlation_id,
                       json_t *body)
{
    struct core_err err = {0};
    char *text;

    if (!reply_to || !reply_to[0] || !b->connected || b->con_blocked || !body)
        return;
    text = json_dumps(body, JSON_COMPACT);
    if (!text)
        return;
    const struct fleet_amqp_msg m = {.exchange = "",
                                     .routing_key = reply_to,
                                     .body = text,
                                     .len = strlen(text),
                                     .correlation_id = correlation_id[0] ? correlation_id : NULL,
                                     .timestamp_s = fleet_now_ms() / 1000};
    if (fleet_amqp_publish(b->con, BRIDGE_CH_RPC, &m, &err) < 0)
        bridge_session_fail(b, err.msg);
    free(text);
}

/* ---- the core event bus ------------------------------------------------------------------- */

void bridge_on_core_events(void *ctx)
{
    struct fleet_bridge *b = ctx;
    uint64_t one = 1;

    (void)!write(b->efd, &one, sizeof(one));
}

void bridge_drain_core_events(struct fleet_bridge *b)
{
    struct core_event *ev;
    int r;

    while ((r = core_events_next(b->sub, &ev)) == 1) {
        const struct fleet_kind *k = fleet_kind_of_event(ev->type);
        int64_t now = core_now_ms();
        json_t *data = NULL;
        const char *text;
        size_t len;

        if (k && (k->reliable || now - b->last_tick_ms >= 1000)) {
            if (core_event_data(ev, &text, &len) == 0)
                data = json_loadb(text, len, 0, NULL);
            if (!k->reliable)
                b->last_tick_ms = now;
            if (data)
                bridge_publish_event(b, k->kind, data);
        }
        core_event_unref(ev);
    }
    if (r == -EPIPE) {
        bool caught_up;

        /* Overrun: what was missed is lost to the fleet (the seq stays gap-free). */
        core_events_unsubscribe(b->sub);
        b->sub = NULL;
        b->overruns++;
        core_log_warn("fleet: events overran the bridge; some were not published");
        if (core_events_subscribe(b->events, 0, bridge_on_core_events, b, &b->sub, &caught_up) < 0)
            core_log_error("fleet: cannot subscribe to the events again");
    }
}

/* ---- the view ------------------------------------------------------------------------------ */

void bridge_view_pings(struct fleet_bridge *b)
{
    char nodes[VIEW_PINGS_MAX][64];
    char rpc[FLEET_KEY_MAX], key[FLEET_KEY_MAX];
    bool all = false;
    size_t n;
    json_t *req;
    char *text;

    if (!b->view || !b->connected || b->con_blocked)
        return;
    n = fleet_view_wants_ping(b->view, nodes, VIEW_PINGS_MAX, &all, fleet_now_ms());
    if (n == 0 && !all)
        return;
    req = fleet_ping_request();
    text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text)
        return;
    (void)fleet_name(rpc, sizeof(rpc), b->prefix, "rpc");
    for (size_t i = 0; i < (all ? 1 : n); i++) {
        struct core_err err = {0};
        char corr[FLEET_RECORD_ID_MAX];

        if (fleet_rpc_key(key, sizeof(key), all ? NULL : nodes[i]) < 0)
            continue;
        snprintf(corr, sizeof(corr), "%s:%s:ping", b->node, b->boot);
        const struct fleet_amqp_msg m = {.exchange = rpc,
                                         .routing_key = key,
                                         .body = text,
                                         .len = strlen(text),
                                         .correlation_id = corr,
                                         .reply_to = FLEET_REPLY_TO,
                                         .expiration = FLEET_RPC_EXPIRATION,
                                         .timestamp_s = fleet_now_ms() / 1000};
        if (fleet_amqp_publish(b->con, BRIDGE_CH_RPC, &m, &err) < 0) {
            bridge_session_fail(b, err.msg);
            break;
        }
    }
    free(text);
}
