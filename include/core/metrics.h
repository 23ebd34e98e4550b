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
    CORE_CTR_CONNECTIONS_REJECTED, /* TCP connections closed at once (the reasons below) */
    CORE_CTR_BYTES_IN,             /* payload bytes received, TCP and UDP */
    CORE_CTR_BYTES_OUT,            /* payload bytes sent, TCP and UDP */
    CORE_CTR_DATAGRAMS_IN,
    CORE_CTR_DATAGRAMS_OUT,
    CORE_CTR_DATAGRAMS_DROPPED, /* received and not answered: the service's choice, or a guard
                                   (the datagrams_dropped_ reasons below) */
    CORE_CTR_IDLE_TIMEOUTS,     /* TCP connections closed for idling past idle_timeout_ms */
    CORE_CTR_ERRORS,            /* socket errors and service errors */
    CORE_CTR_REJECTED_MAX_CONNECTIONS, /* of connections_rejected: max_connections reached */
    CORE_CTR_REJECTED_RESOURCES,       /* of connections_rejected: no thread, fd or memory */
    CORE_CTR_REJECTED_PER_SOURCE, /* of connections_rejected: max_connections_per_source reached */
    CORE_CTR_REJECTED_RATE,       /* of connections_rejected: connection_rate_per_source passed */
    CORE_CTR_DATAGRAMS_DROPPED_LOOP,        /* of datagrams_dropped: from this daemon's endpoint */
    CORE_CTR_DATAGRAMS_DROPPED_REFLECTION,  /* of datagrams_dropped: from port 0 or a reflector's */
    CORE_CTR_DATAGRAMS_DROPPED_RATE_SOURCE, /* of datagrams_dropped: reply_rate_per_source passed */
    CORE_CTR_DATAGRAMS_DROPPED_RATE,        /* of datagrams_dropped: reply_rate passed */
    CORE_CTR_EVENTS_DROPPED, /* events of the service's sessions lost on their way to the bus */
    CORE_CTR_TLS_HANDSHAKES, /* TLS handshakes completed (options.tls) */
    CORE_CTR_TLS_HANDSHAKE_FAILURES,       /* TLS handshakes that failed (the reasons below) */
    CORE_CTR_TLS_FAILURES_NO_CLIENT_CERT,  /* of tls_handshake_failures: no client certificate */
    CORE_CTR_TLS_FAILURES_BAD_CERTIFICATE, /* of tls_handshake_failures: a certificate refused */
    CORE_CTR_TLS_FAILURES_PROTOCOL, /* of tls_handshake_failures: not TLS, an old version, ... */
    CORE_CTR_TLS_FAILURES_TIMEOUT,  /* of tls_handshake_failures: past idle_timeout_ms */
    CORE_CTR_TLS_FAILURES_OTHER,    /* of tls_handshake_failures: the client left, ... */
    CORE_CTR_REJECTED_FD_BUDGET, /* of connections_rejected: the listeners' descriptors used up */
    CORE_CTR_COUNT
};

/* Service-defined counters per listener, named by struct core_service.counters. */
#define CORE_METRICS_SVC_MAX 32

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

/*
 * A histogram's summary. A percentile is the highest value of the bucket that holds its rank
 * (rank = ceil(q * count), at least 1), clamped to max_ns: it overstates the true value by at
 * most a quarter. Every member is 0 when count is 0.
 */
struct core_latency_summary {
    uint64_t count; /* the sum of the buckets */
    uint64_t sum_ns;
    uint64_t p50_ns;
    uint64_t p90_ns;
    uint64_t p99_ns;
    uint64_t p999_ns;
    uint64_t max_ns;
};

/*
 * The percentile permille/1000 (500 for p50, 999 for p99.9; 1 to 1000) of the histogram
 * buckets (CORE_LATENCY_BUCKETS of them) whose values sum to count, clamped to max_ns; 0 when
 * count is 0. Pure.
 */
uint64_t core_latency_percentile(const uint64_t *buckets, uint64_t count, uint64_t max_ns,
                                 unsigned permille);

/* The summary of a snapshot's histogram. Pure. */
void core_latency_summarize(const struct core_metrics_snapshot *s,
                            struct core_latency_summary *ret);

/*
 * The summary of the requests recorded between two snapshots of one histogram: before's
 * buckets and sum (CORE_LATENCY_BUCKETS + 1 values: the buckets, then sum_ns) subtracted from
 * now's. max_ns is the top of the highest bucket that grew, clamped to now's max_ns. When a
 * bucket shrank (the histogram was replaced), now's whole histogram counts. Pure.
 */
void core_latency_summarize_since(const uint64_t *before, const struct core_metrics_snapshot *now,
                                  struct core_latency_summary *ret);

/* A summary as JSON: {"count", "sum_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"}.
 * New reference, NULL on ENOMEM. */
json_t *core_latency_summary_json(const struct core_latency_summary *sum);

/* The JSON name of a counter ("bytes_in"). */
const char *core_counter_name(enum core_counter c);

/* Zeroes every counter. Only while no worker runs. */
void core_metrics_init(struct core_metrics *m);

/*
 * A listener's counters, zeroed, in memory shared with the children the daemon forks after
 * (MAP_SHARED: the process model's children count into it). Carved from slabs that are never
 * unmapped, so that creating and deleting listeners costs no mmap or munmap of its own. NULL
 * on ENOMEM. Give it back with core_metrics_release() once no worker or child uses it. Any
 * thread.
 */
struct core_metrics *core_metrics_alloc(void);

/* Accepts NULL. */
void core_metrics_release(struct core_metrics *m);

/* Reads every counter once (relaxed); any thread. */
void core_metrics_snapshot(const struct core_metrics *m, struct core_metrics_snapshot *ret);

/*
 * Renders a snapshot as a JSON object: every core counter by name, a "service" object with the
 * n_names service counters (names[i] for svc[i]), and a "latency" object: the summary's members
 * ("count", "sum_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"). Returns a new
 * reference, NULL on ENOMEM.
 */
json_t *core_metrics_to_json(const struct core_metrics_snapshot *s, const char *const *names,
                             unsigned n_names);

/* A sentence saying what counter c counts (Prometheus HELP text); never NULL. */
const char *core_counter_help(enum core_counter c);

#endif
