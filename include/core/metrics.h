#ifndef CORE_METRICS_H
#define CORE_METRICS_H

/*
 * Per-listener counters. Workers add to them with relaxed atomics; anyone may read a snapshot
 * at any time without a lock. The struct holds no pointer, so it may live in memory shared
 * with child processes.
 */

#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

enum core_counter {
    CORE_CTR_CONNECTIONS_TOTAL,    /* TCP connections accepted and served */
    CORE_CTR_CONNECTIONS_ACTIVE,   /* gauge: TCP connections open now */
    CORE_CTR_CONNECTIONS_REJECTED, /* TCP connections closed at once: max_connections reached */
    CORE_CTR_BYTES_IN,             /* payload bytes received, TCP and UDP */
    CORE_CTR_BYTES_OUT,            /* payload bytes sent, TCP and UDP */
    CORE_CTR_DATAGRAMS_IN,
    CORE_CTR_DATAGRAMS_OUT,
    CORE_CTR_DATAGRAMS_DROPPED, /* received and not answered (the service said why) */
    CORE_CTR_IDLE_TIMEOUTS,     /* TCP connections closed for idling past idle_timeout_ms */
    CORE_CTR_ERRORS,            /* socket errors and service errors */
    CORE_CTR_COUNT
};

/* Service-defined counters per listener, named by struct core_service.counters. */
#define CORE_METRICS_SVC_MAX 16

/*
 * Service time histogram: log-linear buckets of nanoseconds, 4 per power of two (HDR-style:
 * every value lands in a bucket whose width is at most a quarter of its lower bound). Bucket i
 * holds [core_latency_bucket_low(i), core_latency_bucket_low(i + 1)).
 */
#define CORE_LATENCY_BUCKETS 256

struct core_metrics {
    _Atomic uint64_t c[CORE_CTR_COUNT];
    _Atomic uint64_t svc[CORE_METRICS_SVC_MAX];
    _Atomic uint64_t latency[CORE_LATENCY_BUCKETS];
    _Atomic uint64_t latency_sum_ns;
    _Atomic uint64_t latency_max_ns;
};

struct core_metrics_snapshot {
    uint64_t c[CORE_CTR_COUNT];
    uint64_t svc[CORE_METRICS_SVC_MAX];
    uint64_t latency[CORE_LATENCY_BUCKETS];
    uint64_t latency_sum_ns;
    uint64_t latency_max_ns;
};

/* The bucket of a value in nanoseconds. */
unsigned core_latency_bucket(uint64_t ns);

/* The lowest value of bucket i (i <= CORE_LATENCY_BUCKETS; for CORE_LATENCY_BUCKETS, UINT64_MAX).
 */
uint64_t core_latency_bucket_low(unsigned i);

/* Records one service time (a request answered: from its bytes' arrival to the answer sent).
 * Any thread, lock-free. */
void core_metrics_record_latency(struct core_metrics *m, uint64_t ns);

static inline void core_metrics_add(struct core_metrics *m, enum core_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&m->c[c], n, memory_order_relaxed);
}

static inline void core_metrics_sub(struct core_metrics *m, enum core_counter c, uint64_t n)
{
    atomic_fetch_sub_explicit(&m->c[c], n, memory_order_relaxed);
}

static inline void core_metrics_svc_add(struct core_metrics *m, unsigned idx, uint64_t n)
{
    atomic_fetch_add_explicit(&m->svc[idx], n, memory_order_relaxed);
}

/* The JSON name of a counter ("bytes_in"). */
const char *core_counter_name(enum core_counter c);

/* Zeroes every counter. Only while no worker runs. */
void core_metrics_init(struct core_metrics *m);

/* Reads every counter once (relaxed); any thread. */
void core_metrics_snapshot(const struct core_metrics *m, struct core_metrics_snapshot *ret);

/*
 * Renders a snapshot as a JSON object: every core counter by name, and a "service" object with
 * the n_names service counters (names[i] for svc[i]). Returns a new reference, NULL on ENOMEM.
 */
json_t *core_metrics_to_json(const struct core_metrics_snapshot *s, const char *const *names,
                             unsigned n_names);

#endif
