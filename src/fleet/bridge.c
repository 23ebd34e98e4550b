/*
 * The bus thread: owns the bridge's two AMQP connections (publish with confirms; consume),
 * services both at least every heartbeat/2 (frames read with a zero timeout until none is left,
 * so that the library's heartbeats run and a silent broker is noticed), and moves messages
 * between the core event bus, the apply worker and the broker (what goes out is
 * bridge_publish.c's). Any error on either connection
 * drops both (no graceful close on a dead socket) and schedules a reconnect with backoff.
 */
#include "fleet/bridge.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bridge_internal.h"
#include "core/log.h"
#include "core/thread.h"
#include "fleet/view.h"

/* ---- state and counters ---------------------------------------------------------------- */

static void set_state(struct fleet_bridge *b, enum bridge_state s, const char *error)
{
    pthread_mutex_lock(&b->lock);
    if (b->st.state != s)
        b->st.since_ms = fleet_now_ms();
    b->st.state = s;
    if (error)
        snprintf(b->st.last_error, sizeof(b->st.last_error), "%s", error);
    pthread_mutex_unlock(&b->lock);
}

/* Copies the outbox's counters into the shared stats. */
static void sync_stats(struct fleet_bridge *b)
{
    struct fleet_outbox_stats os;

    fleet_outbox_stats(b->outbox, &os);
    pthread_mutex_lock(&b->lock);
    b->st.published = os.published + b->unreliable_published;
    b->st.confirmed = os.confirmed;
    b->st.nacked = os.nacked;
    b->st.dropped_full = os.dropped_full;
    b->st.outbox = os.depth;
    pthread_mutex_unlock(&b->lock);
}

void bridge_count_dropped(struct fleet_bridge *b, bool blocked)
{
    pthread_mutex_lock(&b->lock);
    if (blocked)
        b->st.dropped_blocked++;
    else
        b->st.dropped_down++;
    pthread_mutex_unlock(&b->lock);
}

/* ---- connections ------------------------------------------------------------------------ */

static void session_close(struct fleet_bridge *b, bool graceful)
{
    if (b->view && b->connected)
        fleet_view_set_connected(b->view, false);
    fleet_amqp_close(b->pub, graceful);
    fleet_amqp_close(b->con, graceful);
    b->pub = NULL;
    b->con = NULL;
    b->connected = false;
    b->pub_blocked = false;
    b->con_blocked = false;
    b->pub_tag = 0;
    fleet_outbox_reset(b->outbox);
}

/* The next attempt after a failure: backoff doubling from FLEET_BRIDGE_BACKOFF_MIN_MS to
 * FLEET_BRIDGE_BACKOFF_MAX_MS, with jitter (75-100% of it). */
static void schedule_retry(struct fleet_bridge *b)
{
    uint32_t rnd = 0;
    int64_t wait;

    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)core_now_ms();
    wait = b->backoff_ms - (int64_t)(rnd % (uint32_t)(b->backoff_ms / 4 + 1));
    b->next_retry_ms = core_now_ms() + wait;
    b->backoff_ms *= 2;
    if (b->backoff_ms > FLEET_BRIDGE_BACKOFF_MAX_MS)
        b->backoff_ms = FLEET_BRIDGE_BACKOFF_MAX_MS;
}

void bridge_session_fail(struct fleet_bridge *b, const char *why)
{
    core_log_warn("fleet: connection to %s lost: %s", b->amqp.display, why);
    session_close(b, false);
    set_state(b, BRIDGE_DOWN, why);
    schedule_retry(b);
}

static int consume(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, bool no_ack,
                   uint16_t prefetch, enum fleet_amqp_from from, uint64_t offset, char *tag,
                   struct core_err *err)
{
    struct fleet_amqp_consume_opts o = {
        .no_ack = no_ack, .prefetch = prefetch, .from = from, .offset = offset};

    return fleet_amqp_consume(c, ch, queue, &o, tag, 128, err);
}

static int open_channel(amqp_connection_state_t c, amqp_channel_t ch, struct core_err *err)
{
    amqp_channel_open(c, ch);
    return fleet_amqp_reply_check(amqp_get_rpc_reply(c), "channel open", err);
}

/* Opens both connections, declares the topology and the consumers. */
static int session_open(struct fleet_bridge *b, struct core_err *err)
{
    char desired[FLEET_KEY_MAX], nodes[FLEET_KEY_MAX], queue[FLEET_KEY_MAX];
    int r;

    r = fleet_amqp_open(&b->amqp, &b->pub, err);
    if (r < 0)
        return r;
    amqp_confirm_select(b->pub, FLEET_AMQP_CHANNEL);
    r = fleet_amqp_reply_check(amqp_get_rpc_reply(b->pub), "confirm.select", err);
    if (r == 0)
        r = fleet_amqp_declare(b->pub, FLEET_AMQP_CHANNEL, b->prefix, err);
    if (r < 0)
        return r;
    r = fleet_amqp_open(&b->amqp, &b->con, err);
    if (r < 0)
        return r;
    (void)fleet_name(desired, sizeof(desired), b->prefix, "desired");
    (void)fleet_name(nodes, sizeof(nodes), b->prefix, "nodes");
    (void)fleet_node_queue(queue, sizeof(queue), b->prefix, b->node);

    /* The rpc inbox first: a node name held by another daemon refuses the whole session. */
    r = open_channel(b->con, BRIDGE_CH_RPC, err);
    if (r == 0)
        r = fleet_amqp_declare_node_queue(b->con, BRIDGE_CH_RPC, b->prefix, b->node, err);
    if (r == -EBUSY)
        return core_err_set(err, -EBUSY, NULL, "node name %s is taken by another daemon", b->node);
    if (r == 0)
        r = consume(b->con, BRIDGE_CH_RPC, queue, true, 0, FLEET_AMQP_FROM_NONE, 0, b->rpc_tag,
                    err);
    if (r == 0 && b->view)
        r = consume(b->con, BRIDGE_CH_RPC, FLEET_REPLY_TO, true, 0, FLEET_AMQP_FROM_NONE, 0,
                    b->reply_tag, err);
    if (r < 0)
        return r;
    r = consume(b->con, FLEET_AMQP_CHANNEL, desired, false, FLEET_DESIRED_PREFETCH,
                b->has_mark ? FLEET_AMQP_FROM_OFFSET : FLEET_AMQP_FROM_FIRST,
                b->has_mark ? b->mark + 1 : 0, b->desired_tag, err);
    if (r < 0)
        return r;
    if (b->view) {
        const char *const all[] = {"ev.#"};
        char vq[FLEET_KEY_MAX];

        r = open_channel(b->con, BRIDGE_CH_VIEW, err);
        if (r == 0)
            r = fleet_amqp_declare_viewer_queue(b->con, BRIDGE_CH_VIEW, b->prefix, all, 1, vq,
                                                sizeof(vq), err);
        if (r == 0)
            r = consume(b->con, BRIDGE_CH_VIEW, vq, true, 0, FLEET_AMQP_FROM_NONE, 0, b->events_tag,
                        err);
        if (r == 0)
            r = consume(b->con, BRIDGE_CH_VIEW, nodes, false, FLEET_DESIRED_PREFETCH,
                        FLEET_AMQP_FROM_FIRST, 0, b->nodes_tag, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static void try_connect(struct fleet_bridge *b)
{
    struct core_err err = {0};
    int r;

    set_state(b, b->st.state == BRIDGE_REFUSED ? BRIDGE_REFUSED : BRIDGE_CONNECTING, NULL);
    r = session_open(b, &err);
    if (r < 0) {
        enum bridge_state s = r == -EBUSY ? BRIDGE_REFUSED : BRIDGE_DOWN;

        session_close(b, false);
        if (s == BRIDGE_REFUSED)
            core_log_warn("fleet: not joining: %s", err.msg);
        else
            core_log_warn("fleet: cannot connect: %s", err.msg);
        set_state(b, s, err.msg);
        schedule_retry(b);
        return;
    }
    b->connected = true;
    b->backoff_ms = FLEET_BRIDGE_BACKOFF_MIN_MS;
    pthread_mutex_lock(&b->lock);
    if (b->ever_connected)
        b->st.reconnects++;
    b->st.last_error[0] = '\0';
    pthread_mutex_unlock(&b->lock);
    b->ever_connected = true;
    set_state(b, BRIDGE_CONNECTED, NULL);
    core_log_info("fleet: node %s connected to %s (heartbeat %ds)", b->node, b->amqp.display,
                  amqp_get_heartbeat(b->pub));
    bridge_push_node_event(b, "node.hello", bridge_pong_json(b));
    b->next_status_ms = core_now_ms() + b->status_interval_ms;
    if (b->view)
        fleet_view_set_connected(b->view, true);
}

/* ---- what the broker delivers ------------------------------------------------------------- */

static void on_rpc(struct fleet_bridge *b, const amqp_message_t *msg, const char *body, size_t len)
{
    char op[32], reply_to[FLEET_KEY_MAX] = "", corr[FLEET_RECORD_ID_MAX] = "";
    const amqp_basic_properties_t *p = &msg->properties;
    struct core_err err = {0};
    json_t *answer;

    if (p->_flags & AMQP_BASIC_REPLY_TO_FLAG)
        fleet_amqp_bytes_str(p->reply_to, reply_to, sizeof(reply_to));
    if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        fleet_amqp_bytes_str(p->correlation_id, corr, sizeof(corr));
    if (fleet_rpc_op(body, len, op, sizeof(op), &err) < 0)
        answer = json_pack("{s:s, s:s}", "node", b->node, "error", err.msg);
    else if (strcmp(op, "ping") == 0)
        answer = bridge_pong_json(b);
    else
        answer = fleet_rpc_error(b->node, op);
    bridge_send_reply(b, reply_to, corr, answer);
    json_decref(answer);
}

static void on_desired(struct fleet_bridge *b, const amqp_message_t *msg, const char *body,
                       size_t len)
{
    const amqp_basic_properties_t *p = &msg->properties;
    struct fleet_record rec;
    struct core_err err = {0};
    enum fleet_verdict v;
    int64_t off;
    int pr;

    if (!fleet_amqp_header_int(p, "x-stream-offset", &off) || off < 0)
        return;
    if (b->has_mark && (uint64_t)off <= b->mark)
        return;
    pr = fleet_record_parse(body, len, &rec, &err);
    v = fleet_record_decide((uint64_t)off, b->has_mark, b->mark, pr, &rec, b->node, &b->labels);
    b->has_mark = true;
    b->mark = (uint64_t)off;
    if (pr < 0) {
        pthread_mutex_lock(&b->lock);
        b->st.records_invalid++;
        pthread_mutex_unlock(&b->lock);
    }
    if (v == FLEET_VERDICT_APPLY || v == FLEET_VERDICT_REJECT) {
        struct bridge_job *j = &b->pending;
        const char *im;

        /* The newest record for this node supersedes one not handed to the worker yet. */
        bridge_job_fini(j);
        b->has_pending = true;
        j->offset = (uint64_t)off;
        if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
            fleet_amqp_bytes_str(p->message_id, j->record_id, sizeof(j->record_id));
        if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
            fleet_amqp_bytes_str(p->correlation_id, j->correlation_id, sizeof(j->correlation_id));
        if (p->_flags & AMQP_BASIC_REPLY_TO_FLAG)
            fleet_amqp_bytes_str(p->reply_to, j->reply_to, sizeof(j->reply_to));
        if (v == FLEET_VERDICT_REJECT) {
            j->reject = true;
            j->problem = core_err_problem_json(400, NULL, err.msg, err.field);
        } else {
            j->config = json_incref(rec.config);
            im = fleet_record_if_match(&rec, b->node);
            if (im) {
                j->has_if_match = true;
                snprintf(j->if_match, sizeof(j->if_match), "%s", im);
            }
        }
        pthread_mutex_lock(&b->lock);
        b->st.has_desired_offset = true;
        b->st.desired_offset = (uint64_t)off;
        pthread_mutex_unlock(&b->lock);
    }
    fleet_record_fini(&rec);
}

/* Hands the pending record to the worker when it is free. */
static void hand_pending(struct fleet_bridge *b)
{
    if (!b->has_pending)
        return;
    pthread_mutex_lock(&b->lock);
    if (!b->job_ready && !b->busy && !b->result_ready) {
        b->job = b->pending;
        memset(&b->pending, 0, sizeof(b->pending));
        b->has_pending = false;
        b->job_ready = true;
        pthread_cond_signal(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
}

/* Takes the worker's answer: reply to the requester, event to the fleet. */
static void take_result(struct fleet_bridge *b)
{
    struct bridge_result res;
    char kind[FLEET_KIND_MAX];
    json_t *j;

    pthread_mutex_lock(&b->lock);
    if (!b->result_ready) {
        pthread_mutex_unlock(&b->lock);
        return;
    }
    res = b->result;
    memset(&b->result, 0, sizeof(b->result));
    b->result_ready = false;
    pthread_mutex_unlock(&b->lock);

    j = fleet_reply_json(&res.reply);
    core_log_info("fleet: record at offset %" PRIu64 ": %s", res.reply.offset,
                  fleet_result_name(res.reply.result));
    if (j) {
        json_decref(b->last_result);
        b->last_result = json_incref(j);
        bridge_send_reply(b, res.reply_to, res.correlation_id, j);
        snprintf(kind, sizeof(kind), "config.%s", fleet_result_name(res.reply.result));
        bridge_publish_event(b, kind, j);
    }
    fleet_reply_fini(&res.reply);
}

static void on_deliver(struct fleet_bridge *b, amqp_channel_t ch, const amqp_basic_deliver_t *d,
                       const amqp_message_t *msg)
{
    const char *body = msg->body.bytes;
    size_t len = msg->body.len;
    char tag[128];
    int64_t now = fleet_now_ms();

    fleet_amqp_bytes_str(d->consumer_tag, tag, sizeof(tag));
    if (strcmp(tag, b->desired_tag) == 0)
        on_desired(b, msg, body, len);
    else if (strcmp(tag, b->rpc_tag) == 0)
        on_rpc(b, msg, body, len);
    else if (b->view && strcmp(tag, b->reply_tag) == 0)
        fleet_view_on_pong(b->view, body, len, now);
    else if (b->view && (strcmp(tag, b->events_tag) == 0 || strcmp(tag, b->nodes_tag) == 0))
        fleet_view_on_event(b->view, body, len, now);
    /* Streams need acks as credit. */
    if (b->connected && (strcmp(tag, b->desired_tag) == 0 || strcmp(tag, b->nodes_tag) == 0)) {
        int r = amqp_basic_ack(b->con, ch, d->delivery_tag, 0);
        if (r != AMQP_STATUS_OK)
            bridge_session_fail(b, amqp_error_string2(r));
    }
}

/* Handles one frame of connection c (is_pub: the publishing one). Returns 0, or -1 when the
 * session failed (closed). */
static int on_frame(struct fleet_bridge *b, amqp_connection_state_t c, bool is_pub,
                    const amqp_frame_t *f)
{
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0;
    switch (f->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *a = f->payload.method.decoded;
        if (is_pub)
            (void)fleet_outbox_ack(b->outbox, a->delivery_tag, a->multiple);
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *n = f->payload.method.decoded;
        if (is_pub)
            (void)fleet_outbox_nack(b->outbox, n->delivery_tag, n->multiple);
        return 0;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_message_t m;
        amqp_rpc_reply_t r = amqp_read_message(c, f->channel, &m, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            bridge_session_fail(b, "cannot read a returned message");
            return -1;
        }
        amqp_destroy_message(&m);
        pthread_mutex_lock(&b->lock);
        b->st.returned++;
        pthread_mutex_unlock(&b->lock);
        return 0;
    }
    case AMQP_BASIC_DELIVER_METHOD: {
        amqp_basic_deliver_t d = *(const amqp_basic_deliver_t *)f->payload.method.decoded;
        char tag[128];
        amqp_message_t m;
        amqp_rpc_reply_t r;

        /* The deliver method is in the connection's pool: keep its tag before reading on. */
        fleet_amqp_bytes_str(d.consumer_tag, tag, sizeof(tag));
        d.consumer_tag = amqp_cstring_bytes(tag);
        r = amqp_read_message(c, f->channel, &m, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            bridge_session_fail(b, "cannot read a delivered message");
            return -1;
        }
        on_deliver(b, f->channel, &d, &m);
        amqp_destroy_message(&m);
        return b->connected ? 0 : -1;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
        if (is_pub)
            b->pub_blocked = true;
        else
            b->con_blocked = true;
        set_state(b, BRIDGE_BLOCKED, "the broker blocks publishing (resource alarm)");
        core_log_warn("fleet: the broker blocks publishing (resource alarm)");
        return 0;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        if (is_pub)
            b->pub_blocked = false;
        else
            b->con_blocked = false;
        if (!b->pub_blocked && !b->con_blocked) {
            set_state(b, BRIDGE_CONNECTED, NULL);
            core_log_info("fleet: the broker unblocked publishing");
        }
        return 0;
    case AMQP_BASIC_CANCEL_METHOD:
        bridge_session_fail(b, "the broker cancelled a consumer (queue deleted?)");
        return -1;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        const amqp_channel_close_t *m = f->payload.method.decoded;
        char why[256];
        snprintf(why, sizeof(why), "channel closed by the broker: %.*s", (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        bridge_session_fail(b, why);
        return -1;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        const amqp_connection_close_t *m = f->payload.method.decoded;
        amqp_connection_close_ok_t ok = {0};
        char why[256];
        snprintf(why, sizeof(why), "connection closed by the broker: %.*s", (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        (void)amqp_send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        bridge_session_fail(b, why);
        return -1;
    }
    default:
        return 0;
    }
}

/* Reads every frame connection c has now (zero timeout), servicing its heartbeats. Returns 0, or
 * -1 when the session failed. */
static int service(struct fleet_bridge *b, bool is_pub)
{
    for (;;) {
        amqp_connection_state_t c = is_pub ? b->pub : b->con;
        struct timeval zero = {0, 0};
        amqp_frame_t f;
        int r;

        if (!b->connected)
            return -1;
        r = amqp_simple_wait_frame_noblock(c, &f, &zero);
        if (r == AMQP_STATUS_TIMEOUT)
            break;
        if (r != AMQP_STATUS_OK) {
            struct core_err err = {0};
            (void)fleet_amqp_status_check(r, is_pub ? "publish connection" : "consume connection",
                                          &err);
            bridge_session_fail(b, err.msg);
            return -1;
        }
        if (on_frame(b, c, is_pub, &f) < 0)
            return -1;
    }
    amqp_maybe_release_buffers(is_pub ? b->pub : b->con);
    return 0;
}

static int service_all(struct fleet_bridge *b)
{
    if (!b->connected)
        return -1;
    if (service(b, true) < 0 || service(b, false) < 0)
        return -1;
    return 0;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static int poll_timeout(struct fleet_bridge *b, int64_t now)
{
    int64_t t = 1000;

    if (b->connected) {
        int hb = amqp_get_heartbeat(b->pub);
        if (hb > 0 && hb * 500 < t)
            t = hb * 500;
        if (b->next_status_ms - now < t)
            t = b->next_status_ms - now;
    } else if (b->next_retry_ms - now < t) {
        t = b->next_retry_ms - now;
    }
    return t < 0 ? 0 : (int)t;
}

/* node.bye, then up to FLEET_BRIDGE_BYE_WAIT_MS for the broker to confirm the outbox. Returns
 * whether it did (the broker answers: a graceful close will not hang). */
static bool say_bye(struct fleet_bridge *b)
{
    int64_t deadline = core_now_ms() + FLEET_BRIDGE_BYE_WAIT_MS;

    if (!b->connected || b->pub_blocked)
        return false;
    bridge_push_node_event(b, "node.bye", json_object());
    bridge_flush_outbox(b);
    while (b->connected && fleet_outbox_depth(b->outbox) > 0) {
        int64_t left = deadline - core_now_ms();
        struct pollfd p = {.fd = amqp_get_sockfd(b->pub), .events = POLLIN};

        if (left <= 0)
            break;
        if (!amqp_frames_enqueued(b->pub) && !amqp_data_in_buffer(b->pub))
            (void)poll(&p, 1, (int)(left < 100 ? left : 100));
        if (service(b, true) < 0)
            break;
    }
    return b->connected && fleet_outbox_depth(b->outbox) == 0;
}

static void *bus_main(void *arg)
{
    struct fleet_bridge *b = arg;
    bool graceful;

    b->backoff_ms = FLEET_BRIDGE_BACKOFF_MIN_MS;
    b->next_retry_ms = core_now_ms();
    while (!atomic_load(&b->stopping)) {
        int64_t now = core_now_ms();
        struct pollfd fds[3] = {{.fd = b->efd, .events = POLLIN}, {.fd = -1}, {.fd = -1}};
        uint64_t count;
        bool buffered = false;

        if (!b->connected && now >= b->next_retry_ms)
            try_connect(b);
        if (b->connected) {
            fds[1] = (struct pollfd){.fd = amqp_get_sockfd(b->pub), .events = POLLIN};
            fds[2] = (struct pollfd){.fd = amqp_get_sockfd(b->con), .events = POLLIN};
            buffered = amqp_frames_enqueued(b->pub) || amqp_data_in_buffer(b->pub) ||
                       amqp_frames_enqueued(b->con) || amqp_data_in_buffer(b->con);
        }
        sync_stats(b);
        if (poll(fds, 3, buffered ? 0 : poll_timeout(b, core_now_ms())) < 0 && errno != EINTR)
            break;
        if (fds[0].revents & POLLIN)
            (void)!read(b->efd, &count, sizeof(count));
        if (atomic_load(&b->stopping))
            break;
        (void)service_all(b);
        bridge_drain_core_events(b);
        take_result(b);
        hand_pending(b);
        now = core_now_ms();
        if (b->connected && now >= b->next_status_ms) {
            b->next_status_ms = now + b->status_interval_ms;
            bridge_publish_event(b, "node.status", bridge_pong_json(b));
        }
        bridge_view_pings(b);
        if (b->connected && service(b, true) == 0)
            bridge_flush_outbox(b);
    }
    take_result(b);
    if (b->connected)
        (void)service_all(b);
    /* A broker that did not confirm the bye may be frozen: no close handshake then. */
    graceful = say_bye(b) && !b->con_blocked;
    session_close(b, graceful);
    sync_stats(b);
    return NULL;
}

/* ---- start and stop ---------------------------------------------------------------------- */

static void bridge_free(struct fleet_bridge *b)
{
    core_events_unsubscribe(b->sub);
    fleet_outbox_free(b->outbox);
    bridge_job_fini(&b->pending);
    bridge_job_fini(&b->job);
    fleet_reply_fini(&b->result.reply);
    json_decref(b->last_result);
    if (b->efd >= 0)
        close(b->efd);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    memset(&b->amqp, 0, sizeof(b->amqp));
    free(b);
}

int fleet_bridge_start(const struct fleet_bridge_opts *opts, struct fleet_bridge **ret,
                       struct core_err *err)
{
    struct fleet_bridge *b = calloc(1, sizeof(*b));
    bool caught_up;
    uint64_t stored;
    bool has;
    int r;

    if (!b)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    b->efd = -1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->registry = opts->registry;
    b->events = opts->events;
    snprintf(b->node, sizeof(b->node), "%s", opts->node);
    if (opts->labels)
        b->labels = *opts->labels;
    snprintf(b->prefix, sizeof(b->prefix), "%s",
             opts->prefix ? opts->prefix : FLEET_PREFIX_DEFAULT);
    b->amqp = *opts->amqp;
    snprintf(b->amqp.connection_name, sizeof(b->amqp.connection_name), "sockserv %s", b->node);
    b->status_interval_ms =
        opts->status_interval_ms > 0 ? opts->status_interval_ms : FLEET_BRIDGE_STATUS_INTERVAL_MS;
    b->view = opts->view;
    fleet_boot_id(b->boot);
    b->started_ms = fleet_now_ms();
    b->st.state = BRIDGE_CONNECTING;
    b->st.since_ms = b->started_ms;
    core_registry_fleet_offset(b->registry, &has, &stored);
    b->has_mark = has;
    b->mark = stored;
    core_registry_fleet_applied(b->registry, &has, &stored);
    b->st.has_applied_offset = has;
    b->st.applied_offset = stored;

    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0) {
        r = core_err_set(err, -errno, NULL, "eventfd: %s", strerror(errno));
        goto out_free;
    }
    r = fleet_outbox_new(FLEET_OUTBOX_CAPACITY, &b->outbox);
    if (r == 0)
        r = core_events_subscribe(b->events, 0, bridge_on_core_events, b, &b->sub, &caught_up);
    if (r < 0) {
        core_err_set(err, r, NULL, "out of memory");
        goto out_free;
    }
    r = -pthread_create(&b->worker, NULL, bridge_worker_main, b);
    if (r < 0) {
        core_err_set(err, r, NULL, "cannot start the apply worker: %s", strerror(-r));
        goto out_free;
    }
    b->worker_started = true;
    core_thread_name(b->worker, "ss-fleet");
    r = -pthread_create(&b->bus, NULL, bus_main, b);
    if (r < 0) {
        core_err_set(err, r, NULL, "cannot start the bus thread: %s", strerror(-r));
        goto out_stop;
    }
    b->bus_started = true;
    core_thread_name(b->bus, "ss-bus");
    *ret = b;
    return 0;

out_stop:
    fleet_bridge_stop(b);
    return r;
out_free:
    bridge_free(b);
    return r;
}

void fleet_bridge_stop(struct fleet_bridge *b)
{
    uint64_t one = 1;

    if (!b)
        return;
    atomic_store(&b->stopping, true);
    (void)!write(b->efd, &one, sizeof(one));
    if (b->bus_started)
        pthread_join(b->bus, NULL);
    pthread_mutex_lock(&b->lock);
    b->worker_stop = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    if (b->worker_started)
        pthread_join(b->worker, NULL);
    bridge_free(b);
}
