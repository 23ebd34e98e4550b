#ifndef CORE_EMITTER_H
#define CORE_EMITTER_H

/*
 * How a service session reports an event (core_svc_emit(), core/service.h) under every model.
 * In the daemon the event goes on the event bus at once. In a child of the TCP `process` model,
 * which shares no memory with the daemon but the MAP_SHARED counters, it goes as one message
 * over its runner's channel: a SOCK_SEQPACKET socket pair, so that a message is never split
 * nor mixed with another child's; the runner's accepting thread reads the channel and
 * publishes what came. A child never blocks on the channel and takes no lock of the daemon's:
 * when the channel is full, the event is dropped and counted in the listener's events_dropped.
 * A message is "TYPE\0JSON", at most CORE_EMIT_MAX bytes.
 */

#include <stdint.h>
#include <sys/types.h>

#include "core/events.h"
#include "core/metrics.h"
#include "core/service.h"

#define CORE_EMIT_MAX 4096    /* bytes of one event over a channel; larger ones are dropped */
#define CORE_EMIT_TYPE_MAX 31 /* bytes of an event type */

/*
 * A listener's emitter, in the listener's memory (caller storage: core_emitter_init(), nothing
 * to free). Read-only once initialised, except in a forked child, whose own copy
 * core_emitter_child() points at its runner's channel.
 */
struct core_emitter {
    struct core_events *events; /* borrowed; NULL: events go nowhere */
    const char *listener_id;    /* borrowed: added to every event's data as "listener" */
    struct core_metrics *m;     /* borrowed; may be NULL: where drops are counted */
    pid_t pid;                  /* the daemon's: the process that initialised it */
    int child_fd;               /* only in a forked child: the channel's sending end; else -1 */
};

/* Sets up em for the listener listener_id: events go to bus events (may be NULL), drops are
 * counted in m (may be NULL; memory the listener shares with its children). The daemon. */
void core_emitter_init(struct core_emitter *em, struct core_events *events, const char *listener_id,
                       struct core_metrics *m);

/*
 * Makes a channel for a process runner: ret_fds[0] the receiving end, kept by the daemon;
 * ret_fds[1] the sending end, kept by the children. Both close-on-exec and non-blocking.
 * Returns 0 or a negative errno. Any thread.
 */
int core_emitter_channel(int ret_fds[2]);

/* In a forked child only (it has one thread), before its session: the events of its copy of
 * em go to fd, the channel's sending end, which the child keeps open. */
void core_emitter_child(struct core_emitter *em, int fd);

/*
 * Reads at most max messages waiting on fd (a channel's receiving end, non-blocking) and
 * publishes each on em's bus; a malformed or truncated one is dropped and counted. Returns how
 * many messages were read (0: none was waiting). Only the thread that owns fd.
 */
unsigned core_emitter_pump(struct core_emitter *em, int fd, unsigned max);

#endif
