#ifndef FLEET_OUTBOX_H
#define FLEET_OUTBOX_H

/*
 * The confirm bookkeeping of reliable events: a bounded FIFO of messages kept until the broker
 * confirms them (publisher confirms). The owner publishes the oldest unsent message, tells the
 * outbox the delivery tag the channel gave it, and feeds it the broker's basic.ack / basic.nack;
 * a nacked message, or one in flight when the connection is lost, is published again. When the
 * outbox is full, pushing drops the oldest message (confirmed or not) and counts it.
 *
 * Delivery tags are the channel's: 1, 2, ... per channel in confirm mode, counting every publish
 * on it (also those that are not in the outbox). Tags given to fleet_outbox_sent() must increase
 * until fleet_outbox_reset(). Acks and nacks for tags the outbox does not hold are ignored.
 *
 * Thread rules: not thread-safe. One thread (the daemon's bus thread) owns an outbox and is the
 * only one to call these functions on it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A message as pushed and as handed back for publishing. */
struct fleet_outbox_msg {
    const char *routing_key; /* "ev.n1.listener.state" */
    const char *kind;        /* the AMQP "type" property, "listener.state" */
    const char *message_id;  /* "n1:<boot>:12" */
    uint64_t seq;            /* the envelope's seq */
    int64_t timestamp;       /* seconds since the epoch (AMQP "timestamp") */
    const void *body;        /* the envelope, compact JSON (handed back NUL-terminated) */
    size_t body_len;
};

struct fleet_outbox_stats {
    uint64_t published;    /* fleet_outbox_sent() calls (republishes included) */
    uint64_t confirmed;    /* messages removed by an ack */
    uint64_t nacked;       /* messages a nack made unsent again */
    uint64_t dropped_full; /* messages dropped because the outbox was full */
    size_t depth;          /* messages held (unsent + in flight) */
    size_t unsent;         /* of which waiting to be published */
};

struct fleet_outbox;

/* Creates an outbox of capacity (>= 1) messages. Returns 0, -EINVAL (capacity 0) or -ENOMEM.
 * Free with fleet_outbox_free(). */
int fleet_outbox_new(size_t capacity, struct fleet_outbox **ret);

/* Frees the outbox and every message it holds. Accepts NULL. */
void fleet_outbox_free(struct fleet_outbox *o);

/*
 * Appends a copy of msg (strings and body are copied; msg is borrowed), unsent. When the outbox
 * is full, the oldest message is dropped first (counted dropped_full). Returns 0 when stored,
 * 1 when stored and the oldest was dropped, -EINVAL (a NULL string, or body NULL with
 * body_len > 0), -ENOMEM (outbox unchanged).
 */
int fleet_outbox_push(struct fleet_outbox *o, const struct fleet_outbox_msg *msg);

/*
 * The oldest message not published on the current connection, or NULL. Borrowed: valid until
 * the next call that changes the outbox (push, sent, ack, nack, reset, free).
 */
const struct fleet_outbox_msg *fleet_outbox_next_unsent(const struct fleet_outbox *o);

/*
 * Marks the message fleet_outbox_next_unsent() returns as published with delivery tag tag.
 * Returns 0, -ENOENT (nothing unsent), -EINVAL (tag 0, or not above the last tag given since
 * the last reset).
 */
int fleet_outbox_sent(struct fleet_outbox *o, uint64_t tag);

/*
 * basic.ack: removes the message published with tag, or with multiple every message published
 * with a tag <= tag. Returns the number removed (counted confirmed).
 */
size_t fleet_outbox_ack(struct fleet_outbox *o, uint64_t tag, bool multiple);

/*
 * basic.nack: makes the message published with tag (with multiple: every one with a tag <= tag)
 * unsent again, to be published again in FIFO order. Returns the number (counted nacked).
 */
size_t fleet_outbox_nack(struct fleet_outbox *o, uint64_t tag, bool multiple);

/* A new connection (or channel): every message in flight becomes unsent again, and tags start
 * again (the next tag given to fleet_outbox_sent() may be 1). */
void fleet_outbox_reset(struct fleet_outbox *o);

/* Messages held (unsent + in flight). */
size_t fleet_outbox_depth(const struct fleet_outbox *o);

/* The counters and depths now. */
void fleet_outbox_stats(const struct fleet_outbox *o, struct fleet_outbox_stats *ret);

#endif
