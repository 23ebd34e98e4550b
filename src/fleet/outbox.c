#include "fleet/outbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A ring of entries in push order. Each entry's strings and body live in one allocation. An
 * entry is unsent (tag 0) or in flight (the tag it was published with); tags are not ordered
 * along the ring once something was republished, so acks and nacks scan the ring (it is small,
 * and a broker acks in batches).
 */

struct entry {
    struct fleet_outbox_msg msg; /* strings and body point into data */
    char *data;
    uint64_t tag; /* 0: unsent */
};

struct fleet_outbox {
    struct entry *ring;
    size_t cap;
    size_t head; /* index of the oldest entry */
    size_t n;    /* entries held */
    size_t unsent;
    size_t sent_below; /* entries [0, sent_below) are all in flight: where the search starts */
    uint64_t last_tag; /* highest tag given since the last reset */
    uint64_t published;
    uint64_t confirmed;
    uint64_t nacked;
    uint64_t dropped_full;
};

static struct entry *at(const struct fleet_outbox *o, size_t i)
{
    return &o->ring[(o->head + i) % o->cap];
}

int fleet_outbox_new(size_t capacity, struct fleet_outbox **ret)
{
    struct fleet_outbox *o;

    if (capacity == 0)
        return -EINVAL;
    o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->ring = calloc(capacity, sizeof(*o->ring));
    if (!o->ring) {
        free(o);
        return -ENOMEM;
    }
    o->cap = capacity;
    *ret = o;
    return 0;
}

void fleet_outbox_free(struct fleet_outbox *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++)
        free(at(o, i)->data);
    free(o->ring);
    free(o);
}

static int entry_fill(struct entry *e, const struct fleet_outbox_msg *msg)
{
    size_t key_len = strlen(msg->routing_key) + 1;
    size_t kind_len = strlen(msg->kind) + 1;
    size_t id_len = strlen(msg->message_id) + 1;
    char *p = malloc(key_len + kind_len + id_len + msg->body_len + 1);

    if (!p)
        return -ENOMEM;
    e->data = p;
    e->msg = *msg;
    e->msg.routing_key = memcpy(p, msg->routing_key, key_len);
    p += key_len;
    e->msg.kind = memcpy(p, msg->kind, kind_len);
    p += kind_len;
    e->msg.message_id = memcpy(p, msg->message_id, id_len);
    p += id_len;
    if (msg->body_len > 0)
        memcpy(p, msg->body, msg->body_len);
    p[msg->body_len] = '\0'; /* a convenience for text bodies; not part of body_len */
    e->msg.body = p;
    e->tag = 0;
    return 0;
}

int fleet_outbox_push(struct fleet_outbox *o, const struct fleet_outbox_msg *msg)
{
    struct entry fresh;
    int dropped = 0;
    int r;

    if (!msg->routing_key || !msg->kind || !msg->message_id || (!msg->body && msg->body_len > 0))
        return -EINVAL;
    r = entry_fill(&fresh, msg);
    if (r < 0)
        return r;
    if (o->n == o->cap) {
        struct entry *oldest = at(o, 0);

        if (oldest->tag == 0)
            o->unsent--;
        free(oldest->data);
        o->head = (o->head + 1) % o->cap;
        o->n--;
        if (o->sent_below > 0)
            o->sent_below--;
        o->dropped_full++;
        dropped = 1;
    }
    *at(o, o->n) = fresh;
    o->n++;
    o->unsent++;
    return dropped;
}

static size_t first_unsent(const struct fleet_outbox *o)
{
    if (o->unsent == 0)
        return o->n;
    for (size_t i = o->sent_below; i < o->n; i++)
        if (at(o, i)->tag == 0)
            return i;
    return o->n;
}

const struct fleet_outbox_msg *fleet_outbox_next_unsent(const struct fleet_outbox *o)
{
    size_t i = first_unsent(o);

    return i < o->n ? &at(o, i)->msg : NULL;
}

int fleet_outbox_sent(struct fleet_outbox *o, uint64_t tag)
{
    size_t i;

    if (tag == 0 || tag <= o->last_tag)
        return -EINVAL;
    i = first_unsent(o);
    if (i == o->n)
        return -ENOENT;
    at(o, i)->tag = tag;
    o->sent_below = i + 1;
    o->last_tag = tag;
    o->unsent--;
    o->published++;
    return 0;
}

static bool covers(const struct entry *e, uint64_t tag, bool multiple)
{
    return e->tag != 0 && (multiple ? e->tag <= tag : e->tag == tag);
}

size_t fleet_outbox_ack(struct fleet_outbox *o, uint64_t tag, bool multiple)
{
    size_t kept = 0;
    size_t removed = 0;
    size_t sent_below = o->sent_below;

    for (size_t i = 0; i < o->n; i++) {
        struct entry *e = at(o, i);

        if (i == o->sent_below)
            sent_below = kept;
        if (covers(e, tag, multiple)) {
            free(e->data);
            removed++;
            continue;
        }
        if (kept != i)
            *at(o, kept) = *e;
        kept++;
    }
    if (o->sent_below >= o->n)
        sent_below = kept;
    o->sent_below = sent_below;
    o->n = kept;
    o->confirmed += removed;
    return removed;
}

size_t fleet_outbox_nack(struct fleet_outbox *o, uint64_t tag, bool multiple)
{
    size_t count = 0;

    for (size_t i = 0; i < o->n; i++) {
        struct entry *e = at(o, i);

        if (covers(e, tag, multiple)) {
            e->tag = 0;
            if (count == 0 && i < o->sent_below)
                o->sent_below = i;
            count++;
        }
    }
    o->unsent += count;
    o->nacked += count;
    return count;
}

void fleet_outbox_reset(struct fleet_outbox *o)
{
    for (size_t i = 0; i < o->n; i++)
        at(o, i)->tag = 0;
    o->unsent = o->n;
    o->sent_below = 0;
    o->last_tag = 0;
}

size_t fleet_outbox_depth(const struct fleet_outbox *o)
{
    return o->n;
}

void fleet_outbox_stats(const struct fleet_outbox *o, struct fleet_outbox_stats *ret)
{
    *ret = (struct fleet_outbox_stats){
        .published = o->published,
        .confirmed = o->confirmed,
        .nacked = o->nacked,
        .dropped_full = o->dropped_full,
        .depth = o->n,
        .unsent = o->unsent,
    };
}
