/*
 * UDP runner: `workers` threads receive on the one bound socket, in batches (recvmmsg), hand
 * each datagram to the service, and send the answers back to their senders in batches
 * (sendmmsg).
 *
 * Before the service sees a datagram, a guard decides whether it may be answered at all: not
 * when it comes from one of this daemon's own endpoints (two listeners would bounce it forever),
 * nor from port 0 or a well-known service's port (a spoofed request would make us a reflector or
 * start a loop with that service), nor past its source's reply budget (reply_rate_per_source)
 * or the listener's (reply_rate). Each refusal is counted in datagrams_dropped and by reason.
 * The guard costs a switch, an atomic load, one lookup under a striped lock and a
 * compare-and-swap: no allocation, no system call.
 */
#include "core/runner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/log.h"

#define BATCH 16
#define DGRAM_MAX 65536

struct udp_runner {
    struct core_runner base;          /* lfd: the bound socket; own: the loop guard's */
    struct core_srctable *per_source; /* reply budgets per source; NULL without one */
    struct core_bucket all;           /* the listener's reply budget */
};

struct batch {
    struct mmsghdr in[BATCH];
    struct iovec in_iov[BATCH];
    struct sockaddr_storage from[BATCH];
    uint8_t *bufs; /* BATCH * DGRAM_MAX */
    struct mmsghdr out[BATCH];
    struct iovec out_iov[BATCH];
    struct core_buf replies[BATCH];
};

/* Sends the n replies; each one sent records its service time, from received_ns (when
 * recvmmsg returned) to when sendmmsg returned. */
static void send_replies(struct udp_runner *rn, struct batch *b, unsigned n, uint64_t received_ns)
{
    unsigned done = 0;

    while (done < n) {
        int sent = sendmmsg(rn->base.lfd, b->out + done, n - done, MSG_DONTWAIT);
        uint64_t now;

        if (sent < 0) {
            if (errno == EINTR)
                continue;
            /* This one cannot go (unreachable sender, full buffer): count it, go on. */
            core_metrics_add(rn->base.m, CORE_CTR_ERRORS, 1);
            done++;
            continue;
        }
        now = core_now_ns();
        for (int i = 0; i < sent; i++) {
            core_metrics_record_latency(rn->base.m, now - received_ns);
            core_metrics_add(rn->base.m, CORE_CTR_DATAGRAMS_OUT, 1);
            core_metrics_add(rn->base.m, CORE_CTR_BYTES_OUT, b->out[done + (unsigned)i].msg_len);
        }
        done += (unsigned)sent;
    }
}

/* Why a datagram from `from` must get no answer (a datagrams_dropped_ counter), or
 * CORE_CTR_COUNT when it may have one. Takes a token from the budgets it passes. */
static enum core_counter guard(struct udp_runner *rn, const struct sockaddr *from, uint64_t now)
{
    const struct core_listener_cfg *cfg = &rn->base.cfg;
    struct core_source src;
    uint16_t port;

    if (!core_source_from_sockaddr(from, &src, &port))
        return CORE_CTR_COUNT;
    if (core_endpoints_match(rn->base.own, &src, port))
        return CORE_CTR_DATAGRAMS_DROPPED_LOOP;
    if (core_port_is_reflector(port))
        return CORE_CTR_DATAGRAMS_DROPPED_REFLECTION;
    /* The source's budget first: one over it must not spend the listener's. */
    if (rn->per_source && !core_srctable_take(rn->per_source, &src, cfg->reply_rate_per_source,
                                              cfg->reply_rate_per_source, now))
        return CORE_CTR_DATAGRAMS_DROPPED_RATE_SOURCE;
    if (!core_bucket_take(&rn->all, cfg->reply_rate, cfg->reply_rate, now))
        return CORE_CTR_DATAGRAMS_DROPPED_RATE;
    return CORE_CTR_COUNT;
}

static void handle_batch(struct udp_runner *rn, struct batch *b, int n, uint64_t received_ns)
{
    unsigned n_out = 0;

    for (int i = 0; i < n; i++) {
        struct core_buf *reply = &b->replies[n_out];
        size_t len = b->in[i].msg_len;
        enum core_counter reason;
        int r;

        core_metrics_add(rn->base.m, CORE_CTR_DATAGRAMS_IN, 1);
        core_metrics_add(rn->base.m, CORE_CTR_BYTES_IN, len);
        reason = guard(rn, (const struct sockaddr *)&b->from[i], received_ns);
        if (reason != CORE_CTR_COUNT) {
            core_metrics_add(rn->base.m, CORE_CTR_DATAGRAMS_DROPPED, 1);
            core_metrics_add(rn->base.m, reason, 1);
            continue;
        }
        reply->len = 0;
        r = rn->base.svc->datagram(rn->base.inst, b->in_iov[i].iov_base, len, reply);
        if (r < 0) {
            core_metrics_add(rn->base.m, CORE_CTR_ERRORS, 1);
            continue;
        }
        if (r == 0) {
            core_metrics_add(rn->base.m, CORE_CTR_DATAGRAMS_DROPPED, 1);
            continue;
        }
        b->out_iov[n_out] = (struct iovec){.iov_base = reply->data, .iov_len = reply->len};
        b->out[n_out].msg_hdr = (struct msghdr){
            .msg_name = &b->from[i],
            .msg_namelen = b->in[i].msg_hdr.msg_namelen,
            .msg_iov = &b->out_iov[n_out],
            .msg_iovlen = 1,
        };
        n_out++;
    }
    if (n_out)
        send_replies(rn, b, n_out, received_ns);
}

static void *worker_main(void *arg)
{
    struct udp_runner *rn = arg;
    struct core_runner *base = &rn->base;
    struct batch *b = calloc(1, sizeof(*b));

    if (b)
        b->bufs = malloc((size_t)BATCH * DGRAM_MAX);
    if (!b || !b->bufs) {
        core_log_error("listener %s: out of memory for a UDP worker", base->cfg.id);
        goto out;
    }
    for (;;) {
        unsigned ev = core_runner_wait(base, base->lfd, -1);
        int n;

        if (ev & CORE_RUNNER_WAIT_END)
            break;
        if (!(ev & CORE_RUNNER_WAIT_FD))
            continue;
        for (unsigned i = 0; i < BATCH; i++) {
            b->in_iov[i] =
                (struct iovec){.iov_base = b->bufs + (size_t)i * DGRAM_MAX, .iov_len = DGRAM_MAX};
            b->in[i].msg_hdr = (struct msghdr){
                .msg_name = &b->from[i],
                .msg_namelen = sizeof(b->from[i]),
                .msg_iov = &b->in_iov[i],
                .msg_iovlen = 1,
            };
        }
        n = recvmmsg(base->lfd, b->in, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                core_metrics_add(base->m, CORE_CTR_ERRORS, 1);
            continue;
        }
        handle_batch(rn, b, n, core_now_ns());
    }
out:
    if (b) {
        for (unsigned i = 0; i < BATCH; i++)
            core_buf_fini(&b->replies[i]);
        free(b->bufs);
    }
    free(b);
    return NULL;
}

static void udp_runner_destroy(struct core_runner *base)
{
    core_srctable_free(((struct udp_runner *)base)->per_source);
}

int core_runner_udp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err)
{
    const struct core_runner_spec spec = {.destroy = udp_runner_destroy,
                                          .threads = ctx->cfg->workers};
    struct udp_runner *rn;
    struct core_runner *b;
    int r;

    r = core_runner_new(sizeof(*rn), ctx, &spec, &b, err);
    if (r < 0)
        return r;
    rn = (struct udp_runner *)b;
    core_bucket_init(&rn->all);
    if (b->cfg.reply_rate_per_source) {
        r = core_srctable_new(CORE_SRCTABLE_CAPACITY, &rn->per_source);
        if (r < 0)
            return core_runner_abort(b, r, "UDP runner", err);
    }
    for (unsigned i = 0; i < b->cfg.workers; i++) {
        char role[16];

        snprintf(role, sizeof(role), "udp%u", i);
        r = core_runner_spawn(b, worker_main, rn, role);
        if (r < 0)
            return core_runner_abort(b, r, "UDP runner", err);
    }
    *ret = b;
    return 0;
}
