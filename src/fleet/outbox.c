#include "fleet/outbox.h"

#include <errno.h>
#include <string.h>

/* Placeholder bodies: the module's contract is in the header. */

int fleet_outbox_new(size_t capacity, struct fleet_outbox **ret)
{
    (void)capacity, (void)ret;
    return -ENOSYS;
}

void fleet_outbox_free(struct fleet_outbox *o)
{
    (void)o;
}

int fleet_outbox_push(struct fleet_outbox *o, const struct fleet_outbox_msg *msg)
{
    (void)o, (void)msg;
    return -ENOSYS;
}

const struct fleet_outbox_msg *fleet_outbox_next_unsent(const struct fleet_outbox *o)
{
    (void)o;
    return NULL;
}

int fleet_outbox_sent(struct fleet_outbox *o, uint64_t tag)
{
    (void)o, (void)tag;
    return -ENOSYS;
}

size_t fleet_outbox_ack(struct fleet_outbox *o, uint64_t tag, bool multiple)
{
    (void)o, (void)tag, (void)multiple;
    return 0;
}

size_t fleet_outbox_nack(struct fleet_outbox *o, uint64_t tag, bool multiple)
{
    (void)o, (void)tag, (void)multiple;
    return 0;
}

void fleet_outbox_reset(struct fleet_outbox *o)
{
    (void)o;
}

size_t fleet_outbox_depth(const struct fleet_outbox *o)
{
    (void)o;
    return 0;
}

void fleet_outbox_stats(const struct fleet_outbox *o, struct fleet_outbox_stats *ret)
{
    (void)o;
    memset(ret, 0, sizeof(*ret));
}
