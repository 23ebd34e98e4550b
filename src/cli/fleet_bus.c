/*
 * The broker session of `sockserv fleet`: one connection read by one loop (FLEET.md §1.5 on a
 * small scale). rabbitmq-c 0.11 serves heartbeats only inside its calls and its
 * amqp_consume_message() gives up at the first frame that is not a delivery, so the loop reads
 * frames itself: amqp_simple_wait_frame_noblock() with a zero timeout until none is left, then
 * poll(2) on the socket for at most half a heartbeat, up to the caller's deadline.
 */
#include "cli/fleet.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "core/clock.h"
#include "fleet/amqp.h"

#define CHANNELS 3 /* 1 and 2 are used; 0 is the connection's */
#define STREAM_PREFETCH 500

/* A message being assembled from its method, header and body frames. */
struct assembly {
    bool active;
    bool returned; /* basic.return, not basic.deliver */
    uint64_t delivery_tag;
    char routing_key[256];
    char correlation_id[256];
    bool has_offset;
    int64_t offset;
    bool have_header;
    size_t size, got;
    char *body;
};

struct cli_fleet_bus {
    amqp_connection_state_t c;
    int heartbeat_s;
    bool sound;   /* no error seen: close gracefully */
    bool blocked; /* the broker blocks publishers (connection.blocked) */
    char blocked_reason[128];
    bool channel2_open;        /* channel 2 was opened */
    bool manual_ack[CHANNELS]; /* deliveries on the channel are acknowledged once handled */
    bool confirming;           /* channel 1 is in confirm mode */
    uint64_t published;        /* the last delivery tag given on channel 1 */
    uint64_t await_tag;        /* run() returns once this one is settled; 0: none */
    uint64_t acked_upto;       /* tags up to this one were acked (multiple) */
    uint64_t acked[16];        /* single acks above acked_upto (a small ring) */
    uint64_t nacked;           /* the last nacked tag (settles the awaited one negatively) */
    bool returned;             /* a mandatory message came back (before its ack) */
    uint64_t returned_tag;     /* the tag that was awaited when it came back */
    char returned_text[256];   /* "312 NO_ROUTE" */
    struct assembly asm_[CHANNELS];
};

static void assembly_reset(struct assembly *a)
{
    free(a->body);
    memset(a, 0, sizeof(*a));
}

int cli_fleet_bus_open(const struct fleet_amqp_conf *conf, const char *prefix,
                       struct cli_fleet_bus **ret, struct core_err *err)
{
    struct cli_fleet_bus *b = calloc(1, sizeof(*b));
    int r;

    if (!b)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    r = fleet_amqp_open(conf, &b->c, err);
    if (r < 0) {
        free(b);
        return r;
    }
    b->heartbeat_s = amqp_get_heartbeat(b->c);
    b->sound = true;
    r = fleet_amqp_declare(b->c, FLEET_AMQP_CHANNEL, prefix, err);
    if (r < 0) {
        b->sound = false;
        cli_fleet_bus_free(b);
        return r;
    }
    *ret = b;
    return 0;
}

void cli_fleet_bus_free(struct cli_fleet_bus *b)
{
    if (!b)
        return;
    /* a blocked connection is not read by the broker: its close handshake would time out */
    if (b->blocked)
        b->sound = false;
    if (b->c && b->sound && b->channel2_open)
        (void)amqp_channel_close(b->c, 2, AMQP_REPLY_SUCCESS);
    fleet_amqp_close(b->c, b->sound);
    for (int i = 0; i < CHANNELS; i++)
        assembly_reset(&b->asm_[i]);
    free(b);
}

int cli_fleet_bus_consume(struct cli_fleet_bus *b, int channel, const char *queue, bool from_first,
                          struct core_err *err)
{
    struct fleet_amqp_consume_opts o = {.no_ack = !from_first};
    int r;

    if (channel < 1 || channel >= CHANNELS)
        return core_err_set(err, -EINVAL, NULL, "no channel %d", channel);
    if (channel == 2 && !b->channel2_open) {
        (void)amqp_channel_open(b->c, 2);
        r = fleet_amqp_reply_check(amqp_get_rpc_reply(b->c), "open a channel", err);
        if (r < 0) {
            b->sound = false;
            return r;
        }
        b->channel2_open = true;
    }
    if (from_first) {
        o.prefetch = STREAM_PREFETCH;
        o.from = FLEET_AMQP_FROM_FIRST;
    }
    r = fleet_amqp_consume(b->c, (amqp_channel_t)channel, queue, &o, NULL, 0, err);
    if (r < 0) {
        b->sound = false;
        return r;
    }
    b->manual_ack[channel] = from_first;
    return 0;
}

int cli_fleet_bus_watch(struct cli_fleet_bus *b, const char *prefix, const char *pattern,
                        struct core_err *err)
{
    const char *const patterns[] = {pattern};
    char name[256];
    int r;

    r = fleet_amqp_declare_viewer_queue(b->c, FLEET_AMQP_CHANNEL, prefix, patterns, 1, name,
                                        sizeof(name), err);
    if (r < 0) {
        b->sound = false;
        return r;
    }
    return cli_fleet_bus_consume(b, 1, name, false, err);
}

int cli_fleet_bus_confirm_select(struct cli_fleet_bus *b, struct core_err *err)
{
    int r;

    (void)amqp_confirm_select(b->c, FLEET_AMQP_CHANNEL);
    r = fleet_amqp_reply_check(amqp_get_rpc_reply(b->c), "confirm.select", err);
    if (r < 0) {
        b->sound = false;
        return r;
    }
    b->confirming = true;
    return 0;
}

int cli_fleet_bus_publish(struct cli_fleet_bus *b, const struct fleet_amqp_msg *m,
                          uint64_t *ret_tag, struct core_err *err)
{
    int r = fleet_amqp_publish(b->c, FLEET_AMQP_CHANNEL, m, err);

    if (r < 0) {
        b->sound = false;
        return r;
    }
    if (b->confirming) {
        b->published++;
        if (ret_tag)
            *ret_tag = b->published;
    }
    return 0;
}

void cli_fleet_bus_await(struct cli_fleet_bus *b, uint64_t tag)
{
    b->await_tag = tag;
}

static bool is_acked(const struct cli_fleet_bus *b, uint64_t tag)
{
    if (tag <= b->acked_upto)
        return true;
    for (size_t i = 0; i < sizeof(b->acked) / sizeof(b->acked[0]); i++)
        if (b->acked[i] == tag)
            return true;
    return false;
}

int cli_fleet_bus_settled(const struct cli_fleet_bus *b, uint64_t tag, struct core_err *err)
{
    if (b->nacked == tag && tag != 0)
        return core_err_set(err, -EPROTO, NULL, "the broker refused it (basic.nack)");
    if (!is_acked(b, tag))
        return 0;
    if (b->returned && b->returned_tag == tag)
        return core_err_set(err, -ENOENT, NULL, "the broker returned it: %s", b->returned_text);
    return 1;
}

bool cli_fleet_bus_blocked(const struct cli_fleet_bus *b, char *reason, size_t len)
{
    if (b->blocked)
        snprintf(reason, len, "%s", b->blocked_reason[0] ? b->blocked_reason : "no reason given");
    return b->blocked;
}

/* ---- frames ---- */

/* Settles tags on basic.ack / basic.nack. */
static void on_confirm(struct cli_fleet_bus *b, uint64_t tag, bool multiple, bool ack)
{
    if (!ack) {
        if (b->await_tag && (b->await_tag == tag || (multiple && b->await_tag <= tag)))
            b->nacked = b->await_tag;
        else
            b->nacked = tag;
    }
    if (multiple) {
        if (tag > b->acked_upto)
            b->acked_upto = tag;
    } else {
        memmove(b->acked + 1, b->acked, sizeof(b->acked) - sizeof(b->acked[0]));
        b->acked[0] = tag;
    }
}

static bool await_done(const struct cli_fleet_bus *b)
{
    return b->await_tag && (is_acked(b, b->await_tag) || b->nacked == b->await_tag);
}

/* Hands a complete message over; acknowledges a stream's delivery. */
static int deliver(struct cli_fleet_bus *b, int ch, cli_fleet_msg_fn fn, void *ctx,
                   struct core_err *err)
{
    struct assembly *a = &b->asm_[ch];
    const struct cli_fleet_msg m = {
        .channel = ch,
        .routing_key = a->routing_key,
        .correlation_id = a->correlation_id,
        .has_offset = a->has_offset,
        .offset = a->offset,
        .body = a->body ? a->body : "",
        .len = a->got,
    };
    int r = 0;

    if (a->returned) {
        b->returned = true;
        b->returned_tag = b->await_tag;
    } else if (fn) {
        r = fn(ctx, &m);
        if (r < 0)
            core_err_set(err, r, NULL, "%s", strerror(-r));
    }
    if (!a->returned && b->manual_ack[ch] &&
        amqp_basic_ack(b->c, (amqp_channel_t)ch, a->delivery_tag, 0) != AMQP_STATUS_OK) {
        b->sound = false;
        r = core_err_set(err, -ECONNRESET, NULL, "the connection to the broker was lost");
    }
    assembly_reset(a);
    return r;
}

static int on_method(struct cli_fleet_bus *b, const amqp_frame_t *f, struct core_err *err)
{
    struct assembly *a = f->channel < CHANNELS ? &b->asm_[f->channel] : NULL;
    const amqp_method_t *m = &f->payload.method;

    switch (m->id) {
    case AMQP_BASIC_DELIVER_METHOD: {
        const amqp_basic_deliver_t *d = m->decoded;

        if (!a)
            return core_err_set(err, -EPROTO, NULL, "a delivery on channel %u", f->channel);
        assembly_reset(a);
        a->active = true;
        a->delivery_tag = d->delivery_tag;
        fleet_amqp_bytes_str(d->routing_key, a->routing_key, sizeof(a->routing_key));
        return 0;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        const amqp_basic_return_t *rt = m->decoded;
        char text[200];

        if (!a)
            return core_err_set(err, -EPROTO, NULL, "a return on channel %u", f->channel);
        assembly_reset(a);
        a->active = true;
        a->returned = true;
        fleet_amqp_bytes_str(rt->reply_text, text, sizeof(text));
        snprintf(b->returned_text, sizeof(b->returned_text), "%u %s", rt->reply_code, text);
        return 0;
    }
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *ack = m->decoded;

        on_confirm(b, ack->delivery_tag, ack->multiple, true);
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *nack = m->decoded;

        on_confirm(b, nack->delivery_tag, nack->multiple, false);
        return 0;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD: {
        const amqp_connection_blocked_t *bl = m->decoded;

        /* the command publishes at most twice: a blocked publish stays bounded by SO_SNDTIMEO */
        b->blocked = true;
        fleet_amqp_bytes_str(bl->reason, b->blocked_reason, sizeof(b->blocked_reason));
        return 0;
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        b->blocked = false;
        return 0;
    case AMQP_BASIC_CANCEL_METHOD:
        return core_err_set(err, -ECONNRESET, NULL,
                            "the broker cancelled the consumer (the queue was deleted)");
    case AMQP_CHANNEL_CLOSE_METHOD: {
        const amqp_channel_close_t *cl = m->decoded;
        amqp_channel_close_ok_t ok = {0};
        char text[200];

        fleet_amqp_bytes_str(cl->reply_text, text, sizeof(text));
        (void)amqp_send_method(b->c, f->channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        if (f->channel == 2)
            b->channel2_open = false;
        b->sound = false;
        return core_err_set(err, -EPROTO, NULL, "the broker closed channel %u: %u %s", f->channel,
                            cl->reply_code, text);
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        const amqp_connection_close_t *cl = m->decoded;
        amqp_connection_close_ok_t ok = {0};
        char text[200];

        fleet_amqp_bytes_str(cl->reply_text, text, sizeof(text));
        (void)amqp_send_method(b->c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        b->sound = false;
        return core_err_set(err, -ECONNRESET, NULL, "the broker closed the connection: %u %s",
                            cl->reply_code, text);
    }
    default:
        return 0;
    }
}

static int on_frame(struct cli_fleet_bus *b, const amqp_frame_t *f, cli_fleet_msg_fn fn, void *ctx,
                    struct core_err *err)
{
    struct assembly *a = f->channel < CHANNELS ? &b->asm_[f->channel] : NULL;

    if (f->frame_type == AMQP_FRAME_METHOD)
        return on_method(b, f, err);
    if (!a || !a->active)
        return 0; /* content of something not asked for */
    if (f->frame_type == AMQP_FRAME_HEADER) {
        const amqp_basic_properties_t *p = f->payload.properties.decoded;

        if (f->payload.properties.body_size > CLI_FLEET_BODY_MAX)
            return core_err_set(err, -E2BIG, NULL, "a message of %llu bytes (more than %u)",
                                (unsigned long long)f->payload.properties.body_size,
                                CLI_FLEET_BODY_MAX);
        a->have_header = true;
        a->size = (size_t)f->payload.properties.body_size;
        if (p && (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG))
            fleet_amqp_bytes_str(p->correlation_id, a->correlation_id, sizeof(a->correlation_id));
        if (p)
            a->has_offset = fleet_amqp_header_int(p, "x-stream-offset", &a->offset);
        if (a->size > 0) {
            a->body = malloc(a->size);
            if (!a->body)
                return core_err_set(err, -ENOMEM, NULL, "out of memory");
            return 0;
        }
        return deliver(b, f->channel, fn, ctx, err);
    }
    if (f->frame_type == AMQP_FRAME_BODY && a->have_header) {
        size_t n = f->payload.body_fragment.len;

        if (n > a->size - a->got)
            return core_err_set(err, -EPROTO, NULL, "a message body longer than announced");
        memcpy(a->body + a->got, f->payload.body_fragment.bytes, n);
        a->got += n;
        if (a->got == a->size)
            return deliver(b, f->channel, fn, ctx, err);
    }
    return 0;
}

int cli_fleet_bus_run(struct cli_fleet_bus *b, int64_t deadline, cli_fleet_msg_fn fn, void *ctx,
                      int stop_fd, struct core_err *err)
{
    const int slice = b->heartbeat_s > 0 ? b->heartbeat_s * 500 : 1000;

    for (;;) {
        struct pollfd pfd[2] = {{.fd = amqp_get_sockfd(b->c), .events = POLLIN},
                                {.fd = stop_fd, .events = POLLIN}};
        int wait, r;

        /* every frame there is now, then the buffers go back to the pools */
        for (;;) {
            struct timeval zero = {0, 0};
            amqp_frame_t f;

            r = amqp_simple_wait_frame_noblock(b->c, &f, &zero);
            if (r == AMQP_STATUS_TIMEOUT)
                break;
            if (r != AMQP_STATUS_OK) {
                b->sound = false;
                r = fleet_amqp_status_check(r, "the connection to the broker", err);
                return r < 0 ? r : -ECONNRESET;
            }
            r = on_frame(b, &f, fn, ctx, err);
            if (r != 0) {
                amqp_maybe_release_buffers(b->c);
                if (r < 0)
                    b->sound = false;
                return r < 0 ? r : 1;
            }
            if (await_done(b)) {
                amqp_maybe_release_buffers(b->c);
                return 1;
            }
        }
        amqp_maybe_release_buffers(b->c);
        if (core_now_ms() >= deadline)
            return 0;
        wait = cli_remaining_ms(deadline);
        if (wait > slice)
            wait = slice;
        r = poll(pfd, stop_fd >= 0 ? 2 : 1, wait);
        if (r < 0 && errno != EINTR)
            return core_err_set(err, -errno, NULL, "poll: %s", strerror(errno));
        if (r > 0 && stop_fd >= 0 && (pfd[1].revents & POLLIN))
            return 2;
    }
}
