#include "fleet/view.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/err.h"
#include "fleet/wire.h"

#define PING_TIMEOUT_CAP_MS 5000
#define LISTENERS_MAX 1024 /* listeners kept per node */

/* One node of the fleet, as far as the view knows it. Every field is guarded by the view's
 * lock. */
struct node {
    char name[FLEET_NAME_MAX];
    char boot[FLEET_BOOT_LEN];
    int64_t boot_time_ms;         /* the newest event time seen of this boot (0: none) */
    struct fleet_seq_track track; /* the live events' sequence */
    char version[32];
    char started[40];
    json_t *labels;      /* object, owned */
    int64_t revision;    /* -1: unknown */
    char etag[40];       /* "": unknown */
    int64_t applied;     /* applied_offset, -1: null */
    int64_t desired;     /* desired_offset, -1: null */
    int64_t noted;       /* an offset just published for it (fleet_view_note_published), -1 */
    json_t *last_result; /* object or NULL, owned */
    json_t *bridge;      /* object or NULL, owned */
    json_t *listeners;   /* array of {id, service, transport, port, state, enabled}, owned */
    json_t *metrics;     /* object: listener id -> its entry of the latest metrics.tick */
    bool live;           /* heard live since its last bye (history alone is not live) */
    bool want_ping;
    int64_t last_seen_ms; /* 0: never */
    int64_t word_ms;      /* the newest time it spoke at: event "time", pong received; 0: never */
    int64_t ping_sent_ms; /* the latest ping asked of it; 0: none */
    enum fleet_view_state state;
    int64_t since_ms; /* when state last changed */
};

struct fleet_view {
    pthread_mutex_t lock;
    int64_t interval_ms;     /* immutable */
    int64_t ping_timeout_ms; /* guarded by lock */
    bool connected;          /* guarded by lock */
    int64_t connected_since; /* guarded by lock; 0: never changed */
    bool ping_all;           /* guarded by lock: everyone wants a ping */
    struct node **nodes;     /* guarded by lock; sorted by name */
    size_t n, cap;
    uint64_t ignored;  /* guarded by lock: bodies that could not be read */
    json_t *forgotten; /* guarded by lock: node -> time (ms) of its node.forgotten */
};

static const char *const state_names[FLEET_VIEW_STATE_COUNT] = {
    [FLEET_VIEW_SYNCED] = "SYNCED", [FLEET_VIEW_PENDING] = "PENDING", [FLEET_VIEW_ERROR] = "ERROR",
    [FLEET_VIEW_STALE] = "STALE",   [FLEET_VIEW_OFFLINE] = "OFFLINE",
};

const char *fleet_view_state_name(enum fleet_view_state s)
{
    return (unsigned)s < FLEET_VIEW_STATE_COUNT ? state_names[s] : "";
}

/* ---- small helpers ---- */

static json_t *time_or_null(int64_t ms)
{
    char buf[40];

    if (ms <= 0)
        return json_null();
    fleet_time_format(buf, sizeof(buf), ms);
    return json_string(buf);
}

static json_t *offset_or_null(int64_t o)
{
    return o >= 0 ? json_integer(o) : json_null();
}

/* An offset member: a non-negative integer, or -1 for null, absent or anything else. */
static int64_t get_offset(const json_t *obj, const char *key)
{
    const json_t *j = json_object_get(obj, key);

    return json_is_integer(j) && json_integer_value(j) >= 0 ? json_integer_value(j) : -1;
}

static void copy_string(char *dst, size_t len, const json_t *j)
{
    if (json_is_string(j))
        snprintf(dst, len, "%s", json_string_value(j));
}

/* ---- the node table ---- */

static void node_free(struct node *n)
{
    if (!n)
        return;
    json_decref(n->labels);
    json_decref(n->last_result);
    json_decref(n->bridge);
    json_decref(n->listeners);
    json_decref(n->metrics);
    free(n);
}

static struct node *node_find_locked(struct fleet_view *v, const char *name, size_t *ret_pos)
{
    size_t lo = 0, hi = v->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(v->nodes[mid]->name, name);

        if (c == 0)
            return v->nodes[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (ret_pos)
        *ret_pos = lo;
    return NULL;
}

/* The node of that name, added when unknown; NULL when the name is invalid, the table is full
 * or memory is short. */
static struct node *node_get_locked(struct fleet_view *v, const char *name)
{
    struct node *n;
    size_t pos = 0;

    if (!name || !fleet_node_name_valid(name))
        return NULL;
    n = node_find_locked(v, name, &pos);
    if (n)
        return n;
    if (v->n == FLEET_VIEW_NODES_MAX)
        return NULL;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        struct node **a = realloc(v->nodes, cap * sizeof(*a));

        if (!a)
            return NULL;
        v->nodes = a;
        v->cap = cap;
    }
    n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->labels = json_object();
    n->listeners = json_array();
    n->metrics = json_object();
    if (!n->labels || !n->listeners || !n->metrics) {
        node_free(n);
        return NULL;
    }
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->revision = -1;
    n->applied = n->desired = n->noted = -1;
    n->state = FLEET_VIEW_OFFLINE;
    memmove(v->nodes + pos + 1, v->nodes + pos, (v->n - pos) * sizeof(*v->nodes));
    v->nodes[pos] = n;
    v->n++;
    return n;
}

/* ---- states ---- */

static enum fleet_view_state state_of(const struct fleet_view *v, const struct node *n, int64_t now)
{
    const char *result = json_string_value(json_object_get(n->last_result, "result"));
    int64_t answered = n->last_result ? get_offset(n->last_result, "offset") : -1;
    int64_t desired = n->desired > n->noted ? n->desired : n->noted;
    bool failed = result && (strcmp(result, "rejected") == 0 || strcmp(result, "conflict") == 0);
    bool unanswered_ping = n->ping_sent_ms > 0 && n->last_seen_ms < n->ping_sent_ms &&
                           now - n->ping_sent_ms >= v->ping_timeout_ms;

    if (!n->live || unanswered_ping)
        return n->noted > answered ? FLEET_VIEW_PENDING : FLEET_VIEW_OFFLINE;
    if (now - n->last_seen_ms > FLEET_VIEW_STALE_INTERVALS * v->interval_ms)
        return FLEET_VIEW_STALE;
    if (failed && desired <= answered)
        return FLEET_VIEW_ERROR;
    if (desired >= 0 && desired > answered)
        return FLEET_VIEW_PENDING;
    return FLEET_VIEW_SYNCED;
}

static void refresh_locked(struct fleet_view *v, struct node *n, int64_t now)
{
    enum fleet_view_state s = state_of(v, n, now);

    if (s != n->state || n->since_ms == 0) {
        n->state = s;
        n->since_ms = now;
    }
}

static void refresh_all_locked(struct fleet_view *v, int64_t now)
{
    for (size_t i = 0; i < v->n; i++)
        refresh_locked(v, v->nodes[i], now);
}

/* ---- listeners ---- */

/* The port a listener is reached on: its configured one, or, for 0, the one it is bound to
 * ("127.0.0.1:34567" or "[::1]:34567" in status.bound or bound). */
static json_int_t listener_port(const json_t *l, const json_t *status)
{
    json_int_t port = json_integer_value(json_object_get(l, "port"));
    const json_t *bound = json_object_get(status ? status : l, "bound");
    const char *text = json_string_value(json_array_get(bound, 0));
    const char *colon = text ? strrchr(text, ':') : NULL;

    if (port == 0 && colon)
        port = strtol(colon + 1, NULL, 10);
    return port;
}

static json_t *listener_entry(const json_t *l)
{
    const json_t *status = json_object_get(l, "status");
    const json_t *state = status ? json_object_get(status, "state") : json_object_get(l, "state");
    const json_t *enabled = json_object_get(l, "enabled");

    return json_pack(
        "{s:O, s:O, s:O, s:I, s:O, s:b}", "id", json_object_get(l, "id"), "service",
        json_object_get(l, "service") ? json_object_get(l, "service") : json_null(), "transport",
        json_object_get(l, "transport") ? json_object_get(l, "transport") : json_null(), "port",
        listener_port(l, status), "state", state ? state : json_null(), "enabled",
        enabled ? json_is_true(enabled) : 1);
}

static ssize_t listener_index(const json_t *list, const char *id)
{
    size_t i;
    json_t *l;

    json_array_foreach(list, i, l)
    {
        const char *lid = json_string_value(json_object_get(l, "id"));

        if (lid && strcmp(lid, id) == 0)
            return (ssize_t)i;
    }
    return -1;
}

static void listener_upsert(struct node *n, const json_t *data)
{
    const char *id = json_string_value(json_object_get(data, "id"));
    json_t *e;
    ssize_t i;

    if (!id)
        return;
    e = listener_entry(data);
    if (!e)
        return;
    i = listener_index(n->listeners, id);
    if (i >= 0)
        json_array_set_new(n->listeners, (size_t)i, e);
    else if (json_array_size(n->listeners) < LISTENERS_MAX)
        json_array_append_new(n->listeners, e);
    else
        json_decref(e);
}

static void listener_state(struct node *n, const json_t *data)
{
    const char *id = json_string_value(json_object_get(data, "id"));
    const json_t *state = json_object_get(data, "state");
    json_t *l;
    ssize_t i;

    if (!id || !json_is_string(state) || (i = listener_index(n->listeners, id)) < 0)
        return;
    l = json_array_get(n->listeners, (size_t)i);
    json_object_set(l, "state", (json_t *)state);
    if (json_integer_value(json_object_get(l, "port")) == 0)
        json_object_set_new(l, "port", json_integer(listener_port(l, data)));
}

static void listener_delete(struct node *n, const json_t *data)
{
    const char *id = json_string_value(json_object_get(data, "id"));
    ssize_t i;

    if (!id)
        return;
    i = listener_index(n->listeners, id);
    if (i >= 0)
        json_array_remove(n->listeners, (size_t)i);
    json_object_del(n->metrics, id);
}

static void metrics_tick(struct node *n, const json_t *data)
{
    const json_t *all = json_object_get(data, "listeners");

    json_t *copy = json_is_object(all) ? json_deep_copy(all) : NULL;

    if (copy) {
        json_decref(n->metrics);
        n->metrics = copy;
    }
}

/* ---- snapshots and results ---- */

static void set_owned(json_t **slot, const json_t *value)
{
    json_t *copy = json_is_object(value) ? json_deep_copy(value) : NULL;

    json_decref(*slot);
    *slot = copy;
}

static void apply_result(struct node *n, const json_t *r)
{
    int64_t offset = get_offset(r, "offset");
    const json_t *rev = json_object_get(r, "revision");

    if (!json_is_string(json_object_get(r, "result")))
        return;
    set_owned(&n->last_result, r);
    if (json_is_integer(rev)) {
        n->revision = json_integer_value(rev);
        copy_string(n->etag, sizeof(n->etag), json_object_get(r, "etag"));
    }
    if (get_offset(r, "applied_offset") >= 0)
        n->applied = get_offset(r, "applied_offset");
    if (offset > n->desired)
        n->desired = offset;
}

/* What a pong (or a hello/status's data), read by the wire (fleet_pong_from_json()), says of
 * node n; result is the pong's "last_result" as the node wrote it (its problem is shown whole). */
static void apply_pong(struct node *n, const struct fleet_pong *pong, const json_t *result)
{
    const json_t *listeners = pong->listeners;
    json_t *labels;
    size_t i;
    json_t *l;

    snprintf(n->version, sizeof(n->version), "%s", pong->version);
    snprintf(n->started, sizeof(n->started), "%s", pong->started);
    labels = fleet_labels_json(&pong->labels);
    if (labels) {
        json_decref(n->labels);
        n->labels = labels;
    }
    if (!n->labels)
        n->labels = json_object();
    n->revision = pong->revision <= INT64_MAX ? (int64_t)pong->revision : -1;
    snprintf(n->etag, sizeof(n->etag), "%s", pong->etag);
    n->applied = pong->has_applied_offset && pong->applied_offset <= INT64_MAX
                     ? (int64_t)pong->applied_offset
                     : -1;
    n->desired = pong->has_desired_offset && pong->desired_offset <= INT64_MAX
                     ? (int64_t)pong->desired_offset
                     : -1;
    if (pong->has_last_result)
        set_owned(&n->last_result, result);
    else {
        json_decref(n->last_result);
        n->last_result = NULL;
    }
    if (pong->bridge)
        set_owned(&n->bridge, pong->bridge);
    if (json_is_array(listeners)) {
        json_t *before = n->listeners, *now = json_array();

        if (!now)
            return;
        json_array_foreach(listeners, i, l)
        {
            const char *id = json_string_value(json_object_get(l, "id"));
            json_t *e = id && i < LISTENERS_MAX ? listener_entry(l) : NULL;
            ssize_t k = id ? listener_index(before, id) : -1;

            if (!e)
                continue;
            /* a pong gives the configured port: 0 for one the kernel picked, whose bound port
             * the listener's events told */
            if (json_integer_value(json_object_get(e, "port")) == 0 && k >= 0)
                json_object_set(e, "port",
                                json_object_get(json_array_get(before, (size_t)k), "port"));
            json_array_append_new(now, e);
        }
        json_decref(before);
        n->listeners = now;
    }
}

/* Reads p as a pong and applies it to n. Returns false, changing nothing, when it is not one. */
static bool apply_pong_json(struct node *n, const json_t *p)
{
    struct core_err err = {0};
    struct fleet_pong pong;

    if (fleet_pong_from_json(p, &pong, &err) < 0)
        return false;
    apply_pong(n, &pong, json_object_get(p, "last_result"));
    fleet_pong_fini(&pong);
    return true;
}

/* Adopts boot (and its time) when it is the node's first or a newer one. Returns false when
 * the message belongs to an older boot than the one known (a replayed record). */
static bool adopt_boot(struct node *n, const char *boot, int64_t time_ms, bool *ret_new)
{
    *ret_new = false;
    if (!boot || strlen(boot) >= FLEET_BOOT_LEN)
        return true;
    if (strcmp(n->boot, boot) == 0) {
        if (time_ms > n->boot_time_ms)
            n->boot_time_ms = time_ms;
        return true;
    }
    if (n->boot[0] && time_ms && n->boot_time_ms && time_ms < n->boot_time_ms)
        return false;
    *ret_new = n->boot[0] != '\0';
    snprintf(n->boot, sizeof(n->boot), "%s", boot);
    n->boot_time_ms = time_ms;
    return true;
}

/* ---- public ---- */

int fleet_view_new(int64_t status_interval_ms, struct fleet_view **ret)
{
    struct fleet_view *v;

    if (status_interval_ms <= 0)
        return -EINVAL;
    v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->forgotten = json_object();
    if (!v->forgotten) {
        free(v);
        return -ENOMEM;
    }
    pthread_mutex_init(&v->lock, NULL);
    v->interval_ms = status_interval_ms;
    v->ping_timeout_ms =
        status_interval_ms < PING_TIMEOUT_CAP_MS ? status_interval_ms : PING_TIMEOUT_CAP_MS;
    *ret = v;
    return 0;
}

void fleet_view_free(struct fleet_view *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++)
        node_free(v->nodes[i]);
    free(v->nodes);
    json_decref(v->forgotten);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

/* The body as a JSON object naming a valid node, or NULL (counted). Under lock. */
static json_t *parse_body_locked(struct fleet_view *v, const char *body, size_t len)
{
    json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;

    if (!json_is_object(j) || !json_is_string(json_object_get(j, "node")) ||
        !fleet_node_name_valid(json_string_value(json_object_get(j, "node")))) {
        json_decref(j);
        v->ignored++;
        return NULL;
    }
    return j;
}

/* What an event of kind does to node n: its data d. */
static void apply_kind(struct node *n, const char *kind, const json_t *d, bool history)
{
    if (strcmp(kind, "node.hello") == 0 || strcmp(kind, "node.status") == 0) {
        (void)apply_pong_json(n, d);
        if (!history && strcmp(kind, "node.hello") == 0)
            n->want_ping = true;
    } else if (strcmp(kind, "node.bye") == 0) {
        n->live = false;
        n->want_ping = false;
    } else if (strcmp(kind, "listener.created") == 0 || strcmp(kind, "listener.changed") == 0) {
        listener_upsert(n, d);
    } else if (strcmp(kind, "listener.deleted") == 0) {
        listener_delete(n, d);
    } else if (strcmp(kind, "listener.state") == 0) {
        listener_state(n, d);
    } else if (strcmp(kind, "config.revision") == 0) {
        const json_t *rev = json_object_get(d, "revision");

        if (json_is_integer(rev)) {
            n->revision = json_integer_value(rev);
            snprintf(n->etag, sizeof(n->etag), "\"r%lld\"", (long long)n->revision);
        }
    } else if (strncmp(kind, "config.", 7) == 0) {
        apply_result(n, d);
    } else if (strcmp(kind, "metrics.tick") == 0) {
        metrics_tick(n, d);
    }
}

/* Removes the node named name from the table (if there). Under lock. */
static void node_remove_locked(struct fleet_view *v, const char *name)
{
    struct node *n = node_find_locked(v, name, NULL);
    size_t pos = 0;

    if (!n)
        return;
    while (v->nodes[pos] != n)
        pos++;
    node_free(n);
    memmove(v->nodes + pos, v->nodes + pos + 1, (v->n - pos - 1) * sizeof(*v->nodes));
    v->n--;
}

/*
 * node.forgotten (an operator's `sockserv fleet forget`, at forgot_ms): the node leaves the
 * table unless it spoke after that time; what it said before, arriving later (a replay of the
 * nodes stream), is dropped (see forgotten_before_locked()). Under lock.
 */
static void forget_locked(struct fleet_view *v, const char *name, int64_t forgot_ms)
{
    const struct node *n = node_find_locked(v, name, NULL);
    json_int_t known = json_integer_value(json_object_get(v->forgotten, name));

    if (n && n->word_ms > forgot_ms)
        return; /* it spoke since: it is back */
    node_remove_locked(v, name);
    /* the marks are bounded as the table is: past that, late old messages may re-add a node */
    if (forgot_ms > known && (known || json_object_size(v->forgotten) < FLEET_VIEW_NODES_MAX))
        json_object_set_new(v->forgotten, name, json_integer(forgot_ms));
}

/* Whether a message of node name from time_ms predates the node's being forgotten: it is
 * dropped. A newer one clears the mark (the node is back, as a new node). Under lock. */
static bool forgotten_before_locked(struct fleet_view *v, const char *name, int64_t time_ms)
{
    const json_t *at = json_object_get(v->forgotten, name);

    if (!at)
        return false;
    if (time_ms <= json_integer_value(at))
        return true;
    json_object_del(v->forgotten, name);
    return false;
}

void fleet_view_on_event(struct fleet_view *v, const char *body, size_t len, int64_t now_ms)
{
    struct fleet_envelope e = {0};
    struct core_err err = {0};
    enum fleet_seq_verdict verdict;
    int64_t seen;
    struct node *n;
    bool history, new_boot;

    pthread_mutex_lock(&v->lock);
    if (!body || fleet_envelope_parse(body, len, &e, &err) < 0 || !fleet_node_name_valid(e.node)) {
        v->ignored++;
        goto out;
    }
    if (strcmp(e.kind, "node.forgotten") == 0) {
        forget_locked(v, e.node, e.time_ms);
        goto out;
    }
    if (forgotten_before_locked(v, e.node, e.time_ms))
        goto out;
    if (!(n = node_get_locked(v, e.node))) {
        v->ignored++;
        goto out;
    }
    if (e.time_ms > n->word_ms)
        n->word_ms = e.time_ms;
    history = now_ms - e.time_ms > FLEET_VIEW_STALE_INTERVALS * v->interval_ms;
    if (history) {
        /* A record of the past: the node is known; what it says counts only when nothing
         * newer is known of the node. */
        if (e.time_ms > n->last_seen_ms && adopt_boot(n, e.boot, e.time_ms, &new_boot)) {
            if (strcmp(n->track.boot, e.boot) != 0 || e.seq > n->track.last)
                (void)fleet_seq_check(&n->track, e.boot, e.seq);
            apply_kind(n, e.kind, e.data, true);
            n->last_seen_ms = e.time_ms;
        }
        goto out_refresh;
    }
    if (!adopt_boot(n, e.boot, e.time_ms, &new_boot))
        goto out_refresh; /* a late record of an older boot */
    verdict = fleet_seq_check(&n->track, e.boot, e.seq);
    /* Seen when it spoke (its own clock, never later than now), not when the view read it: a
     * bye read back from the nodes stream is as old as the bye. */
    seen = e.time_ms < now_ms ? e.time_ms : now_ms;
    if (verdict == FLEET_SEQ_DUPLICATE) {
        /* it came both live and from the stream */
        if (seen > n->last_seen_ms)
            n->last_seen_ms = seen;
        goto out_refresh;
    }
    if (verdict == FLEET_SEQ_GAP || new_boot || !n->live)
        n->want_ping = true;
    n->live = true;
    apply_kind(n, e.kind, e.data, false);
    if (seen > n->last_seen_ms)
        n->last_seen_ms = seen;
out_refresh:
    refresh_locked(v, n, now_ms);
out:
    fleet_envelope_fini(&e);
    pthread_mutex_unlock(&v->lock);
}

void fleet_view_on_pong(struct fleet_view *v, const char *body, size_t len, int64_t now_ms)
{
    struct core_err err = {0};
    struct fleet_pong pong;
    struct node *n;
    bool new_boot;
    json_t *j;

    pthread_mutex_lock(&v->lock);
    j = parse_body_locked(v, body, len);
    if (!j)
        goto out;
    if (json_object_get(j, "error")) {
        json_decref(j);
        goto out;
    }
    if (fleet_pong_from_json(j, &pong, &err) < 0) {
        v->ignored++;
        goto out_free;
    }
    /* a live answer: a node forgotten is back */
    json_object_del(v->forgotten, pong.node);
    n = node_get_locked(v, pong.node);
    if (!n) {
        v->ignored++;
        goto out_pong;
    }
    (void)adopt_boot(n, pong.boot, 0, &new_boot);
    apply_pong(n, &pong, json_object_get(j, "last_result"));
    n->live = true;
    n->want_ping = false;
    if (now_ms > n->last_seen_ms)
        n->last_seen_ms = now_ms;
    if (now_ms > n->word_ms)
        n->word_ms = now_ms;
    refresh_locked(v, n, now_ms);
out_pong:
    fleet_pong_fini(&pong);
out_free:
    json_decref(j);
out:
    pthread_mutex_unlock(&v->lock);
}

/* Whether n is live but silent for 3 intervals, with no ping of ours outstanding (one that goes
 * unanswered makes it OFFLINE; it is pinged again only once it spoke). */
static bool is_quiet(const struct fleet_view *v, const struct node *n, int64_t now_ms)
{
    return n->live && now_ms - n->last_seen_ms > FLEET_VIEW_STALE_INTERVALS * v->interval_ms &&
           n->ping_sent_ms <= n->last_seen_ms;
}

size_t fleet_view_wants_ping(struct fleet_view *v, char (*nodes)[64], size_t max, bool *all,
                             int64_t now_ms)
{
    size_t count = 0, wanted = 0;

    pthread_mutex_lock(&v->lock);
    for (size_t i = 0; i < v->n; i++) {
        struct node *n = v->nodes[i];
        bool quiet = is_quiet(v, n, now_ms);

        if (n->want_ping || quiet)
            wanted++;
    }
    *all = v->ping_all || wanted > max;
    for (size_t i = 0; i < v->n; i++) {
        struct node *n = v->nodes[i];
        bool quiet = is_quiet(v, n, now_ms);

        if (*all) {
            n->want_ping = false;
            n->ping_sent_ms = now_ms;
        } else if (n->want_ping || quiet) {
            snprintf(nodes[count++], 64, "%s", n->name);
            n->want_ping = false;
            n->ping_sent_ms = now_ms;
        }
    }
    v->ping_all = false;
    pthread_mutex_unlock(&v->lock);
    return count;
}

void fleet_view_ping_sent(struct fleet_view *v, const char *node, int64_t now_ms)
{
    pthread_mutex_lock(&v->lock);
    for (size_t i = 0; i < v->n; i++)
        if (!node || strcmp(v->nodes[i]->name, node) == 0)
            v->nodes[i]->ping_sent_ms = now_ms;
    pthread_mutex_unlock(&v->lock);
}

void fleet_view_set_ping_timeout(struct fleet_view *v, int64_t timeout_ms)
{
    if (timeout_ms <= 0)
        return;
    pthread_mutex_lock(&v->lock);
    v->ping_timeout_ms = timeout_ms;
    pthread_mutex_unlock(&v->lock);
}

void fleet_view_note_published(struct fleet_view *v, const char *node, int64_t offset)
{
    struct node *n;

    pthread_mutex_lock(&v->lock);
    n = node_get_locked(v, node);
    if (n && offset > n->noted)
        n->noted = offset;
    pthread_mutex_unlock(&v->lock);
}

void fleet_view_set_connected(struct fleet_view *v, bool connected)
{
    pthread_mutex_lock(&v->lock);
    if (connected != v->connected || v->connected_since == 0) {
        v->connected = connected;
        v->connected_since = fleet_view_now_ms();
    }
    if (connected)
        v->ping_all = true;
    pthread_mutex_unlock(&v->lock);
}

static json_t *listeners_json(const struct node *n)
{
    json_t *a = json_array(), *l;
    size_t i;

    json_array_foreach(n->listeners, i, l)
    {
        json_t *e = json_deep_copy(l);
        const json_t *m = json_object_get(n->metrics, json_string_value(json_object_get(l, "id")));
        json_t *counters = json_is_object(m) ? json_deep_copy(m) : NULL;

        if (!e)
            continue;
        if (counters)
            json_object_del(counters, "rates");
        json_object_set_new(e, "rates",
                            json_is_object(json_object_get(m, "rates"))
                                ? json_deep_copy(json_object_get(m, "rates"))
                                : json_null());
        json_object_set_new(e, "counters", counters ? counters : json_null());
        json_array_append_new(a, e);
    }
    return a;
}

static json_t *node_json(const struct node *n)
{
    int64_t desired = n->desired > n->noted ? n->desired : n->noted;

    return json_pack(
        "{s:s, s:s?, s:o, s:s, s:o, s:o, s:b, s:s?, s:s?, s:o, s:s?, s:o, s:o, s:o, s:o, s:o}",
        "node", n->name, "boot", n->boot[0] ? n->boot : NULL, "labels", json_deep_copy(n->labels),
        "state", state_names[n->state], "since", time_or_null(n->since_ms), "last_seen",
        time_or_null(n->last_seen_ms), "online",
        n->state != FLEET_VIEW_OFFLINE && n->state != FLEET_VIEW_STALE, "version",
        n->version[0] ? n->version : NULL, "started", n->started[0] ? n->started : NULL, "revision",
        n->revision >= 0 ? json_integer(n->revision) : json_null(), "etag",
        n->etag[0] ? n->etag : NULL, "applied_offset", offset_or_null(n->applied), "desired_offset",
        offset_or_null(desired), "last_result",
        n->last_result ? json_deep_copy(n->last_result) : json_null(), "bridge",
        n->bridge ? json_deep_copy(n->bridge) : json_null(), "listeners", listeners_json(n));
}

json_t *fleet_view_json(struct fleet_view *v, int64_t now_ms)
{
    size_t counts[FLEET_VIEW_STATE_COUNT] = {0};
    json_t *nodes = json_array(), *c = json_object(), *j = NULL;

    pthread_mutex_lock(&v->lock);
    if (!nodes || !c)
        goto out;
    refresh_all_locked(v, now_ms);
    for (size_t i = 0; i < v->n; i++) {
        json_t *e = node_json(v->nodes[i]);

        counts[v->nodes[i]->state]++;
        if (!e || json_array_append_new(nodes, e) < 0)
            goto out;
    }
    for (unsigned s = 0; s < FLEET_VIEW_STATE_COUNT; s++)
        json_object_set_new(c, state_names[s], json_integer((json_int_t)counts[s]));
    j = json_pack("{s:b, s:o, s:o, s:I, s:O, s:O, s:I}", "connected", v->connected, "since",
                  time_or_null(v->connected_since), "updated", time_or_null(now_ms),
                  "status_interval_ms", (json_int_t)v->interval_ms, "nodes", nodes, "counts", c,
                  "ignored", (json_int_t)v->ignored);
out:
    pthread_mutex_unlock(&v->lock);
    json_decref(nodes);
    json_decref(c);
    return j;
}

void fleet_view_counts(struct fleet_view *v, int64_t now_ms,
                       size_t ret_counts[FLEET_VIEW_STATE_COUNT])
{
    memset(ret_counts, 0, FLEET_VIEW_STATE_COUNT * sizeof(*ret_counts));
    pthread_mutex_lock(&v->lock);
    refresh_all_locked(v, now_ms);
    for (size_t i = 0; i < v->n; i++)
        ret_counts[v->nodes[i]->state]++;
    pthread_mutex_unlock(&v->lock);
}

int fleet_view_prometheus(struct fleet_view *v, int64_t now_ms, struct core_buf *out)
{
    size_t counts[FLEET_VIEW_STATE_COUNT];
    int r;

    fleet_view_counts(v, now_ms, counts);
    r = core_buf_printf(out, "# HELP sockserv_fleet_nodes Nodes of the fleet in each state, as "
                             "this daemon's fleet view sees them.\n"
                             "# TYPE sockserv_fleet_nodes gauge\n");
    for (unsigned s = 0; s < FLEET_VIEW_STATE_COUNT && r >= 0; s++)
        r = core_buf_printf(out, "sockserv_fleet_nodes{state=\"%s\"} %zu\n", state_names[s],
                            counts[s]);
    return r < 0 ? -ENOMEM : 0;
}
