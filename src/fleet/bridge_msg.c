/*
 * The bridge's messages and counters: the pong (rpc ping's answer, node.hello and node.status
 * data), the "fleet" member of the health, and the Prometheus families.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bridge_internal.h"
#include "core/buf.h"
#include "sockserv-config.h"

static const char *const state_names[BRIDGE_STATE_COUNT] = {
    [BRIDGE_CONNECTING] = "connecting", [BRIDGE_CONNECTED] = "connected",
    [BRIDGE_BLOCKED] = "blocked",       [BRIDGE_DOWN] = "down",
    [BRIDGE_REFUSED] = "refused",
};

const char *bridge_state_name(enum bridge_state s)
{
    return s < BRIDGE_STATE_COUNT ? state_names[s] : "unknown";
}

static json_t *offset_json(bool has, uint64_t v)
{
    return has ? json_integer((json_int_t)v) : json_null();
}

static json_t *health_locked(struct fleet_bridge *b)
{
    char since[FLEET_TIME_LEN];
    const struct bridge_stats *st = &b->st;

    fleet_time_format(since, sizeof(since), st->since_ms);
    return json_pack(
        "{s:s, s:o, s:s, s:s, s:o, s:s, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:I, s:I, s:o, "
        "s:o, s:I, s:b}",
        "node", b->node, "labels", fleet_labels_json(&b->labels), "prefix", b->prefix, "state",
        bridge_state_name(st->state), "last_error",
        st->last_error[0] ? json_string(st->last_error) : json_null(), "since", since, "published",
        (json_int_t)st->published, "confirmed", (json_int_t)st->confirmed, "nacked",
        (json_int_t)st->nacked, "returned", (json_int_t)st->returned, "dropped", "outbox_full",
        (json_int_t)st->dropped_full, "down", (json_int_t)st->dropped_down, "blocked",
        (json_int_t)st->dropped_blocked, "reconnects", (json_int_t)st->reconnects, "outbox",
        (json_int_t)st->outbox, "applied_offset",
        offset_json(st->has_applied_offset, st->applied_offset), "desired_offset",
        offset_json(st->has_desired_offset, st->desired_offset), "records_invalid",
        (json_int_t)st->records_invalid, "view", b->view != NULL);
}

json_t *fleet_bridge_health_json(struct fleet_bridge *b)
{
    json_t *j;

    pthread_mutex_lock(&b->lock);
    j = health_locked(b);
    pthread_mutex_unlock(&b->lock);
    return j;
}

int fleet_bridge_prometheus(struct fleet_bridge *b, struct core_buf *out)
{
    struct bridge_stats st;
    static const char *const reasons[] = {"outbox_full", "down", "blocked"};
    uint64_t dropped[3];
    int r = 0;

    pthread_mutex_lock(&b->lock);
    st = b->st;
    pthread_mutex_unlock(&b->lock);
    dropped[0] = st.dropped_full;
    dropped[1] = st.dropped_down;
    dropped[2] = st.dropped_blocked;

#define FAMILY(name, type, help)                                                                   \
    core_buf_printf(out, "# HELP " name " " help "\n# TYPE " name " " type "\n")
    r |= FAMILY("sockserv_amqp_connected", "gauge", "Whether the fleet bridge is connected.");
    r |= core_buf_printf(out, "sockserv_amqp_connected %d\n",
                         st.state == BRIDGE_CONNECTED || st.state == BRIDGE_BLOCKED);
    r |= FAMILY("sockserv_amqp_blocked", "gauge",
                "Whether the broker blocks the bridge's publishing (an alarm).");
    r |= core_buf_printf(out, "sockserv_amqp_blocked %d\n", st.state == BRIDGE_BLOCKED);
    r |= FAMILY("sockserv_amqp_published_total", "counter", "Events published to the broker.");
    r |= core_buf_printf(out, "sockserv_amqp_published_total %" PRIu64 "\n", st.published);
    r |=
        FAMILY("sockserv_amqp_confirmed_total", "counter", "Reliable events the broker confirmed.");
    r |= core_buf_printf(out, "sockserv_amqp_confirmed_total %" PRIu64 "\n", st.confirmed);
    r |= FAMILY("sockserv_amqp_nacked_total", "counter",
                "Reliable events the broker refused (published again).");
    r |= core_buf_printf(out, "sockserv_amqp_nacked_total %" PRIu64 "\n", st.nacked);
    r |= FAMILY("sockserv_amqp_dropped_total", "counter", "Events dropped, by reason.");
    for (size_t i = 0; i < 3; i++)
        r |= core_buf_printf(out, "sockserv_amqp_dropped_total{reason=\"%s\"} %" PRIu64 "\n",
                             reasons[i], dropped[i]);
    r |= FAMILY("sockserv_amqp_reconnects_total", "counter",
                "Connections to the broker made again after a loss.");
    r |= core_buf_printf(out, "sockserv_amqp_reconnects_total %" PRIu64 "\n", st.reconnects);
    r |= FAMILY("sockserv_amqp_outbox", "gauge", "Reliable events waiting for the broker.");
    r |= core_buf_printf(out, "sockserv_amqp_outbox %" PRIu64 "\n", st.outbox);
    if (st.has_applied_offset) {
        r |= FAMILY("sockserv_fleet_applied_offset", "gauge",
                    "Offset of the desired-state record whose configuration runs.");
        r |= core_buf_printf(out, "sockserv_fleet_applied_offset %" PRIu64 "\n", st.applied_offset);
    }
#undef FAMILY
    return r < 0 ? -ENOMEM : 0;
}

/* {"id","service","transport","port","state","enabled","bound"} of each listener resource
 * ("bound": the addresses it is bound to, which tell the port the kernel picked for port 0). */
static json_t *listener_summaries(struct core_registry *r)
{
    json_t *list = NULL, *out = json_array(), *l;
    size_t i;

    if (!out || core_registry_list(r, &list) < 0) {
        json_decref(out);
        return NULL;
    }
    json_array_foreach(list, i, l)
    {
        json_t *status = json_object_get(l, "status");
        json_t *s = json_pack(
            "{s:O*, s:O*, s:O*, s:O*, s:O*, s:O*, s:O*}", "id", json_object_get(l, "id"), "service",
            json_object_get(l, "service"), "transport", json_object_get(l, "transport"), "port",
            json_object_get(l, "port"), "state", json_object_get(status, "state"), "enabled",
            json_object_get(l, "enabled"), "bound", json_object_get(status, "bound"));
        if (!s || json_array_append_new(out, s) < 0) {
            json_decref(list);
            json_decref(out);
            return NULL;
        }
    }
    json_decref(list);
    return out;
}

json_t *bridge_pong_json(struct fleet_bridge *b)
{
    char started[FLEET_TIME_LEN], now[FLEET_TIME_LEN], etag[FLEET_ETAG_MAX];
    json_t *conf = NULL, *health, *j;
    uint64_t rev = 0;
    bool has_applied, has_desired;
    uint64_t applied, desired;

    if (core_registry_config(b->registry, &conf) == 0)
        rev = (uint64_t)json_integer_value(json_object_get(conf, "revision"));
    json_decref(conf);
    bridge_etag(etag, sizeof(etag), rev);
    fleet_time_format(started, sizeof(started), b->started_ms);
    fleet_time_format(now, sizeof(now), fleet_now_ms());
    pthread_mutex_lock(&b->lock);
    health = health_locked(b);
    has_applied = b->st.has_applied_offset;
    applied = b->st.applied_offset;
    has_desired = b->st.has_desired_offset;
    desired = b->st.desired_offset;
    pthread_mutex_unlock(&b->lock);
    j = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:I, s:s, s:o, s:o, s:O*, s:o*, s:o*}", "node",
                  b->node, "boot", b->boot, "version", SOCKSERV_VERSION, "labels",
                  fleet_labels_json(&b->labels), "started", started, "time", now, "revision",
                  (json_int_t)rev, "etag", etag, "applied_offset",
                  offset_json(has_applied, applied), "desired_offset",
                  offset_json(has_desired, desired), "last_result", b->last_result, "listeners",
                  listener_summaries(b->registry), "bridge", health);
    if (j && !json_object_get(j, "last_result"))
        (void)json_object_set_new(j, "last_result", json_null());
    return j;
}
