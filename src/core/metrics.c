#include "core/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

static const char *const counter_names[CORE_CTR_COUNT] = {
    [CORE_CTR_CONNECTIONS_TOTAL] = "connections_total",
    [CORE_CTR_CONNECTIONS_ACTIVE] = "connections_active",
    [CORE_CTR_CONNECTIONS_REJECTED] = "connections_rejected",
    [CORE_CTR_BYTES_IN] = "bytes_in",
    [CORE_CTR_BYTES_OUT] = "bytes_out",
    [CORE_CTR_DATAGRAMS_IN] = "datagrams_in",
    [CORE_CTR_DATAGRAMS_OUT] = "datagrams_out",
    [CORE_CTR_DATAGRAMS_DROPPED] = "datagrams_dropped",
    [CORE_CTR_IDLE_TIMEOUTS] = "idle_timeouts",
    [CORE_CTR_ERRORS] = "errors",
    [CORE_CTR_REJECTED_MAX_CONNECTIONS] = "rejected_max_connections",
    [CORE_CTR_REJECTED_RESOURCES] = "rejected_resources",
    [CORE_CTR_REJECTED_PER_SOURCE] = "rejected_per_source",
    [CORE_CTR_REJECTED_RATE] = "rejected_rate",
    [CORE_CTR_DATAGRAMS_DROPPED_LOOP] = "datagrams_dropped_loop",
    [CORE_CTR_DATAGRAMS_DROPPED_REFLECTION] = "datagrams_dropped_reflection",
    [CORE_CTR_DATAGRAMS_DROPPED_RATE_SOURCE] = "datagrams_dropped_rate_source",
    [CORE_CTR_DATAGRAMS_DROPPED_RATE] = "datagrams_dropped_rate",
    [CORE_CTR_EVENTS_DROPPED] = "events_dropped",
    [CORE_CTR_TLS_HANDSHAKES] = "tls_handshakes",
    [CORE_CTR_TLS_HANDSHAKE_FAILURES] = "tls_handshake_failures",
    [CORE_CTR_TLS_FAILURES_NO_CLIENT_CERT] = "tls_failures_no_client_cert",
    [CORE_CTR_TLS_FAILURES_BAD_CERTIFICATE] = "tls_failures_bad_certificate",
    [CORE_CTR_TLS_FAILURES_PROTOCOL] = "tls_failures_protocol",
    [CORE_CTR_TLS_FAILURES_TIMEOUT] = "tls_failures_timeout",
    [CORE_CTR_TLS_FAILURES_OTHER] = "tls_failures_other",
    [CORE_CTR_REJECTED_FD_BUDGET] = "rejected_fd_budget",
};

static const char *const counter_help[CORE_CTR_COUNT] = {
    [CORE_CTR_CONNECTIONS_TOTAL] = "TCP connections accepted and served.",
    [CORE_CTR_CONNECTIONS_ACTIVE] = "TCP connections open now.",
    [CORE_CTR_CONNECTIONS_REJECTED] = "TCP connections closed at once, for any reason.",
    [CORE_CTR_BYTES_IN] = "Payload bytes received, TCP and UDP.",
    [CORE_CTR_BYTES_OUT] = "Payload bytes sent, TCP and UDP.",
    [CORE_CTR_DATAGRAMS_IN] = "UDP datagrams received.",
    [CORE_CTR_DATAGRAMS_OUT] = "UDP datagrams sent.",
    [CORE_CTR_DATAGRAMS_DROPPED] = "UDP datagrams received and not answered.",
    [CORE_CTR_IDLE_TIMEOUTS] = "TCP connections closed for idling past idle_timeout_ms.",
    [CORE_CTR_ERRORS] = "Socket errors and service errors.",
    [CORE_CTR_REJECTED_MAX_CONNECTIONS] = "TCP connections refused: max_connections reached.",
    [CORE_CTR_REJECTED_RESOURCES] = "TCP connections refused: no thread, fd or memory.",
    [CORE_CTR_REJECTED_PER_SOURCE] = "TCP connections refused: max_connections_per_source reached.",
    [CORE_CTR_REJECTED_RATE] = "TCP connections refused: connection_rate_per_source passed.",
    [CORE_CTR_DATAGRAMS_DROPPED_LOOP] =
        "UDP datagrams not answered: they came from one of this daemon's endpoints.",
    [CORE_CTR_DATAGRAMS_DROPPED_REFLECTION] =
        "UDP datagrams not answered: they came from port 0 or a well-known service port.",
    [CORE_CTR_DATAGRAMS_DROPPED_RATE_SOURCE] =
        "UDP datagrams not answered: their source passed reply_rate_per_source.",
    [CORE_CTR_DATAGRAMS_DROPPED_RATE] =
        "UDP datagrams not answered: the listener passed reply_rate.",
    [CORE_CTR_EVENTS_DROPPED] =
        "Session events dropped on the way to the event stream: a child's channel was full.",
    [CORE_CTR_TLS_HANDSHAKES] = "TLS handshakes completed.",
    [CORE_CTR_TLS_HANDSHAKE_FAILURES] = "TLS handshakes that failed, for any reason.",
    [CORE_CTR_TLS_FAILURES_NO_CLIENT_CERT] =
        "TLS handshakes failed: the client sent no certificate (client_ca_file set).",
    [CORE_CTR_TLS_FAILURES_BAD_CERTIFICATE] =
        "TLS handshakes failed: a certificate was refused (unknown CA, expired, bad).",
    [CORE_CTR_TLS_FAILURES_PROTOCOL] =
        "TLS handshakes failed: not TLS, a version older than 1.2, no shared cipher.",
    [CORE_CTR_TLS_FAILURES_TIMEOUT] = "TLS handshakes not done within idle_timeout_ms.",
    [CORE_CTR_TLS_FAILURES_OTHER] = "TLS handshakes failed otherwise: the client left, ...",
    [CORE_CTR_REJECTED_FD_BUDGET] =
        "TCP connections refused: the listeners' share of the descriptors is in use.",
};

const char *core_counter_help(enum core_counter c)
{
    if (c < CORE_CTR_COUNT && counter_help[c])
        return counter_help[c];
    if (c < CORE_CTR_COUNT && counter_names[c] && strncmp(counter_names[c], "rejected_", 9) == 0)
        return "TCP connections refused, by reason.";
    return "A counter of the listener.";
}

const char *core_counter_name(enum core_counter c)
{
    return c < CORE_CTR_COUNT ? counter_names[c] : "unknown";
}

void core_metrics_init(struct core_metrics *m)
{
    for (unsigned i = 0; i < CORE_CTR_COUNT; i++)
        atomic_init(&m->c[i], 0);
    for (unsigned i = 0; i < CORE_METRICS_SVC_MAX; i++)
        atomic_init(&m->svc[i], 0);
    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS; i++)
        atomic_init(&m->latency[i], 0);
    atomic_init(&m->latency_sum_ns, 0);
    atomic_init(&m->latency_max_ns, 0);
}

/* ---- shared blocks ---- */

#define SLAB_SIZE (256u * 1024u)
/* A block per listener, a whole number of cache lines: two listeners' workers do not write
 * into one line. */
#define BLOCK_SIZE ((sizeof(struct core_metrics) + 63u) & ~(size_t)63u)

/* A block given back, until it is handed out again. */
struct free_block {
    struct free_block *next;
};

static struct {
    pthread_mutex_t lock;
    struct free_block *free; /* guarded by lock */
    char *slab;              /* guarded by lock: the newest slab, carved from slab_used on */
    size_t slab_used;        /* guarded by lock */
} blocks = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct core_metrics *core_metrics_alloc(void)
{
    struct core_metrics *m = NULL;

    pthread_mutex_lock(&blocks.lock);
    if (blocks.free) {
        m = (struct core_metrics *)blocks.free;
        blocks.free = blocks.free->next;
    } else {
        if (!blocks.slab || blocks.slab_used + BLOCK_SIZE > SLAB_SIZE) {
            void *slab =
                mmap(NULL, SLAB_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

            if (slab != MAP_FAILED) {
                blocks.slab = slab; /* the last one's rest is left unused */
                blocks.slab_used = 0;
            }
        }
        if (blocks.slab && blocks.slab_used + BLOCK_SIZE <= SLAB_SIZE) {
            m = (struct core_metrics *)(blocks.slab + blocks.slab_used);
            blocks.slab_used += BLOCK_SIZE;
        }
    }
    pthread_mutex_unlock(&blocks.lock);
    if (m)
        core_metrics_init(m);
    return m;
}

void core_metrics_release(struct core_metrics *m)
{
    struct free_block *b = (struct free_block *)m;

    if (!m)
        return;
    pthread_mutex_lock(&blocks.lock);
    b->next = blocks.free;
    blocks.free = b;
    pthread_mutex_unlock(&blocks.lock);
}

unsigned core_latency_bucket(uint64_t ns)
{
    unsigned e;

    if (ns < 4)
        return (unsigned)ns;
    e = 63u - (unsigned)__builtin_clzll(ns);
    return 4 * (e - 1) + (unsigned)((ns >> (e - 2)) & 3);
}

uint64_t core_latency_bucket_low(unsigned i)
{
    unsigned e;

    if (i > core_latency_bucket(UINT64_MAX))
        return UINT64_MAX; /* past the last bucket used */
    if (i < 4)
        return i;
    e = i / 4 + 1;
    return (uint64_t)(4 + (i & 3)) << (e - 2);
}

void core_metrics_record_latency(struct core_metrics *m, uint64_t ns)
{
    uint64_t max = atomic_load_explicit(&m->latency_max_ns, memory_order_relaxed);
    /* The max is at least 1 once anything was recorded (a time of 0 counts as 1 there): a
     * snapshot tells an empty histogram by it, without reading the buckets. */
    uint64_t top = ns ? ns : 1;

    atomic_fetch_add_explicit(&m->latency[core_latency_bucket(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_ns, ns, memory_order_relaxed);
    while (top > max &&
           !atomic_compare_exchange_weak_explicit(&m->latency_max_ns, &max, top,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void core_metrics_snapshot(const struct core_metrics *m, struct core_metrics_snapshot *ret)
{
    for (unsigned i = 0; i < CORE_CTR_COUNT; i++)
        ret->c[i] = atomic_load_explicit(&m->c[i], memory_order_relaxed);
    for (unsigned i = 0; i < CORE_METRICS_SVC_MAX; i++)
        ret->svc[i] = atomic_load_explicit(&m->svc[i], memory_order_relaxed);
    /* No time recorded yet (a listener just created): the 2 KiB of buckets are not read. */
    ret->latency_max_ns = atomic_load_explicit(&m->latency_max_ns, memory_order_relaxed);
    if (ret->latency_max_ns == 0) {
        memset(ret->latency, 0, sizeof(ret->latency));
        ret->latency_sum_ns = 0;
        return;
    }
    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS; i++)
        ret->latency[i] = atomic_load_explicit(&m->latency[i], memory_order_relaxed);
    ret->latency_sum_ns = atomic_load_explicit(&m->latency_sum_ns, memory_order_relaxed);
}

uint64_t core_latency_percentile(const uint64_t *buckets, uint64_t count, uint64_t max_ns,
                                 unsigned permille)
{
    uint64_t rank, seen = 0;

    if (count == 0)
        return 0;
    if (permille > 1000)
        permille = 1000;
    /* ceil(count * permille / 1000) without overflow */
    rank = count / 1000 * permille + ((count % 1000) * permille + 999) / 1000;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS; i++) {
        seen += buckets[i];
        if (seen >= rank) {
            uint64_t high = core_latency_bucket_low(i + 1);

            if (high != UINT64_MAX)
                high--;
            return high < max_ns ? high : max_ns;
        }
    }
    return max_ns; /* count was more than the buckets hold */
}

void core_latency_summarize(const struct core_metrics_snapshot *s, struct core_latency_summary *ret)
{
    uint64_t count = 0;

    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS; i++)
        count += s->latency[i];
    memset(ret, 0, sizeof(*ret));
    if (count == 0)
        return;
    ret->count = count;
    ret->sum_ns = s->latency_sum_ns;
    ret->max_ns = s->latency_max_ns;
    ret->p50_ns = core_latency_percentile(s->latency, count, s->latency_max_ns, 500);
    ret->p90_ns = core_latency_percentile(s->latency, count, s->latency_max_ns, 900);
    ret->p99_ns = core_latency_percentile(s->latency, count, s->latency_max_ns, 990);
    ret->p999_ns = core_latency_percentile(s->latency, count, s->latency_max_ns, 999);
}

void core_latency_summarize_since(const uint64_t *before, const struct core_metrics_snapshot *now,
                                  struct core_latency_summary *ret)
{
    uint64_t diff[CORE_LATENCY_BUCKETS], count = 0, top = 0;
    bool replaced = now->latency_sum_ns < before[CORE_LATENCY_BUCKETS];

    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS && !replaced; i++)
        replaced = now->latency[i] < before[i];
    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS; i++) {
        diff[i] = now->latency[i] - (replaced ? 0 : before[i]);
        count += diff[i];
        if (diff[i] > 0)
            top = core_latency_bucket_low(i + 1) - 1;
    }
    memset(ret, 0, sizeof(*ret));
    if (count == 0)
        return;
    if (top > now->latency_max_ns)
        top = now->latency_max_ns;
    ret->count = count;
    ret->sum_ns = now->latency_sum_ns - (replaced ? 0 : before[CORE_LATENCY_BUCKETS]);
    ret->max_ns = top;
    ret->p50_ns = core_latency_percentile(diff, count, top, 500);
    ret->p90_ns = core_latency_percentile(diff, count, top, 900);
    ret->p99_ns = core_latency_percentile(diff, count, top, 990);
    ret->p999_ns = core_latency_percentile(diff, count, top, 999);
}

json_t *core_latency_summary_json(const struct core_latency_summary *sum)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "count", (json_int_t)sum->count,
                     "sum_ns", (json_int_t)sum->sum_ns, "p50_ns", (json_int_t)sum->p50_ns, "p90_ns",
                     (json_int_t)sum->p90_ns, "p99_ns", (json_int_t)sum->p99_ns, "p999_ns",
                     (json_int_t)sum->p999_ns, "max_ns", (json_int_t)sum->max_ns);
}

/* The "latency" member of the JSON metrics. NULL on ENOMEM. */
static json_t *latency_to_json(const struct core_metrics_snapshot *s)
{
    struct core_latency_summary sum;

    core_latency_summarize(s, &sum);
    return core_latency_summary_json(&sum);
}

json_t *core_metrics_to_json(const struct core_metrics_snapshot *s, const char *const *names,
                             unsigned n_names)
{
    json_t *o = json_object(), *svc = json_object();

    if (!o || !svc)
        goto out_fail;
    for (unsigned i = 0; i < CORE_CTR_COUNT; i++)
        if (json_object_set_new(o, counter_names[i], json_integer((json_int_t)s->c[i])) < 0)
            goto out_fail;
    for (unsigned i = 0; i < n_names && i < CORE_METRICS_SVC_MAX; i++)
        if (json_object_set_new(svc, names[i], json_integer((json_int_t)s->svc[i])) < 0)
            goto out_fail;
    if (json_object_set_new(o, "service", svc) < 0) {
        svc = NULL;
        goto out_fail;
    }
    if (json_object_set_new(o, "latency", latency_to_json(s)) < 0)
        goto out_fail_o;
    return o;

out_fail_o:
    json_decref(o);
    return NULL;

out_fail:
    json_decref(svc);
    json_decref(o);
    return NULL;
}
