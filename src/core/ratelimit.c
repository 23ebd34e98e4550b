#include "core/ratelimit.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NS_PER_S 1000000000ull
#define WAYS 8       /* places per set of a core_srctable */
#define STRIPES 64   /* locks of a table; set i takes lock i % STRIPES */
#define HEADS 1024   /* chains of core_sources' connection counts */
#define LOCAL_MAX 64 /* addresses of this host kept by core_endpoints */
#define PORT_WORDS (65536 / 64)

/* ---- source addresses ---- */

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool core_source_from_sockaddr(const struct sockaddr *sa, struct core_source *ret,
                               uint16_t *ret_port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        memcpy(ret->addr, v4_mapped, sizeof(v4_mapped));
        memcpy(ret->addr + 12, &in->sin_addr, 4);
        if (ret_port)
            *ret_port = ntohs(in->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        memcpy(ret->addr, &in6->sin6_addr, 16);
        if (ret_port)
            *ret_port = ntohs(in6->sin6_port);
        return true;
    }
    return false;
}

static bool is_v4(const struct core_source *s)
{
    return memcmp(s->addr, v4_mapped, sizeof(v4_mapped)) == 0;
}

bool core_source_is_loopback(const struct core_source *s)
{
    static const uint8_t v6_loopback[16] = {[15] = 1};

    if (is_v4(s))
        return s->addr[12] == 127;
    return memcmp(s->addr, v6_loopback, 16) == 0;
}

static bool is_wildcard(const struct core_source *s)
{
    static const uint8_t zero[16];

    return memcmp(s->addr, zero, 16) == 0 || (is_v4(s) && memcmp(s->addr + 12, zero, 4) == 0);
}

static bool source_equal(const struct core_source *a, const struct core_source *b)
{
    return memcmp(a->addr, b->addr, 16) == 0;
}

bool core_port_is_reflector(uint16_t port)
{
    switch (port) {
    case 0:     /* no sender uses it: forged */
    case 7:     /* echo */
    case 9:     /* discard */
    case 13:    /* daytime */
    case 17:    /* quote of the day */
    case 19:    /* chargen */
    case 37:    /* time */
    case 53:    /* DNS */
    case 69:    /* TFTP */
    case 111:   /* portmapper */
    case 123:   /* NTP */
    case 137:   /* NetBIOS name service */
    case 161:   /* SNMP */
    case 177:   /* XDMCP */
    case 389:   /* CLDAP */
    case 427:   /* SLP */
    case 520:   /* RIP */
    case 623:   /* IPMI (RMCP) */
    case 1434:  /* MS SQL browser */
    case 1900:  /* SSDP */
    case 3283:  /* Apple Remote Desktop */
    case 3702:  /* WS-Discovery */
    case 5351:  /* NAT-PMP */
    case 5353:  /* multicast DNS */
    case 5683:  /* CoAP */
    case 10001: /* Ubiquiti discovery */
    case 11211: /* memcached */
        return true;
    default:
        return false;
    }
}

/* A 64-bit hash of a source, keyed by seed. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t source_hash(const struct core_source *s, const uint64_t seed[2])
{
    uint64_t lo, hi;

    memcpy(&lo, s->addr, 8);
    memcpy(&hi, s->addr + 8, 8);
    return mix(mix(lo ^ seed[0]) ^ hi ^ seed[1]);
}

/* The process's key, from getrandom() once; every table's seed is derived from it. */
static uint64_t seed_key[2];
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t seed_count;

static void seed_key_init(void)
{
    struct timespec ts;

    if (getrandom(seed_key, sizeof(seed_key), GRND_NONBLOCK) == (ssize_t)sizeof(seed_key))
        return;
    /* No entropy yet (early boot): still unpredictable enough to a remote sender. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed_key[0] = mix((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&ts);
    seed_key[1] = mix((uint64_t)ts.tv_sec ^ seed_key[0]);
}

/* A seed of its own for a table: the secret key mixed with a count (no system call per table:
 * a change of hundreds of listeners makes as many). */
static void seed_init(uint64_t seed[2], const void *salt)
{
    uint64_t n = atomic_fetch_add_explicit(&seed_count, 1, memory_order_relaxed);

    pthread_once(&seed_once, seed_key_init);
    seed[0] = mix(seed_key[0] ^ mix(n ^ (uint64_t)(uintptr_t)salt));
    seed[1] = mix(seed_key[1] ^ seed[0]);
}

/* ---- token buckets (GCRA) ---- */

/*
 * A bucket of rate tokens per second holding at most burst is the time *tat its next token is
 * due: a token is there at now when *tat - now <= (burst - 1) * interval; taking it moves *tat
 * one interval on from max(*tat, now).
 */
static bool gcra_take(uint64_t *tat, uint32_t rate, uint32_t burst, uint64_t now)
{
    uint64_t interval = (NS_PER_S + rate - 1) / rate;
    uint64_t tolerance = (uint64_t)(burst > 1 ? burst - 1 : 0) * interval;
    uint64_t next = *tat > now ? *tat : now;

    if (next - now > tolerance)
        return false;
    *tat = next + interval;
    return true;
}

void core_bucket_init(struct core_bucket *b)
{
    atomic_init(&b->tat, 0);
}

bool core_bucket_take(struct core_bucket *b, uint32_t rate, uint32_t burst, uint64_t now_ns)
{
    uint64_t old, tat;

    if (rate == 0)
        return true;
    old = atomic_load_explicit(&b->tat, memory_order_relaxed);
    do {
        tat = old;
        if (!gcra_take(&tat, rate, burst, now_ns))
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&b->tat, &old, tat, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

/* ---- a token bucket per source ---- */

/* A lock padded to a cache line's size, so that neighbouring locks share few lines. */
struct stripe {
    pthread_mutex_t lock;
    char pad[64 - sizeof(pthread_mutex_t) % 64];
};

struct place {
    struct core_source key;
    uint64_t tat; /* 0: free (a bucket that was ever taken from has a later time) */
};

struct core_srctable {
    uint64_t seed[2];
    size_t set_mask; /* sets - 1 */
    struct stripe stripes[STRIPES];
    struct place *places; /* guarded by the stripes: set i by stripes[i % STRIPES] */
};

int core_srctable_new(unsigned capacity, struct core_srctable **ret)
{
    struct core_srctable *t = calloc(1, sizeof(*t));
    size_t sets = 1;

    if (!t)
        return -ENOMEM;
    while (sets * WAYS < capacity)
        sets *= 2;
    t->places = calloc(sets * WAYS, sizeof(*t->places));
    if (!t->places) {
        free(t);
        return -ENOMEM;
    }
    t->set_mask = sets - 1;
    seed_init(t->seed, t);
    for (unsigned i = 0; i < STRIPES; i++)
        pthread_mutex_init(&t->stripes[i].lock, NULL);
    *ret = t;
    return 0;
}

void core_srctable_free(struct core_srctable *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&t->stripes[i].lock);
    free(t->places);
    free(t);
}

bool core_srctable_take(struct core_srctable *t, const struct core_source *src, uint32_t rate,
                        uint32_t burst, uint64_t now_ns)
{
    size_t set;
    struct place *p, *found = NULL, *fullest;
    pthread_mutex_t *lock;
    bool ok;

    if (rate == 0)
        return true;
    set = source_hash(src, t->seed) & t->set_mask;
    lock = &t->stripes[set % STRIPES].lock;
    p = &t->places[set * WAYS];
    fullest = p;
    pthread_mutex_lock(lock);
    for (unsigned i = 0; i < WAYS && !found; i++) {
        if (p[i].tat && source_equal(&p[i].key, src))
            found = &p[i];
        else if (p[i].tat < fullest->tat)
            fullest = &p[i];
    }
    if (!found) {
        /* The place whose bucket is closest to full: a free one, else the one that loses least. */
        found = fullest;
        found->key = *src;
        found->tat = 0;
    }
    ok = gcra_take(&found->tat, rate, burst, now_ns);
    pthread_mutex_unlock(lock);
    return ok;
}

size_t core_srctable_count(struct core_srctable *t)
{
    size_t n = 0;

    for (size_t set = 0; set <= t->set_mask; set++) {
        pthread_mutex_t *lock = &t->stripes[set % STRIPES].lock;

        pthread_mutex_lock(lock);
        for (unsigned i = 0; i < WAYS; i++)
            n += t->places[set * WAYS + i].tat != 0;
        pthread_mutex_unlock(lock);
    }
    return n;
}

/* ---- a TCP listener's sources ---- */

struct count {
    struct core_source key;
    uint32_t open;
    struct count *next;
};

/* A listener's open connections by source: made at its first connection. */
struct counts {
    struct stripe stripes[STRIPES];
    struct count *heads[HEADS]; /* head i guarded by stripes[i % STRIPES] */
};

struct core_sources {
    /* Made at the first connection that a rate limits (128 KiB a listener that has none
     * would carry and clear for nothing); published once, then only read. */
    _Atomic(void *) rate; /* struct core_srctable */
    /* Made at the first connection admitted (12 KiB a listener created and never connected to
     * would carry: a change creating hundreds would clear them for nothing); published once,
     * then only read. */
    _Atomic(void *) counts; /* struct counts */
    uint64_t seed[2];
};

int core_sources_new(struct core_sources **ret)
{
    struct core_sources *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    atomic_init(&s->rate, NULL);
    atomic_init(&s->counts, NULL);
    seed_init(s->seed, s);
    *ret = s;
    return 0;
}

static void counts_free(struct counts *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < HEADS; i++) {
        while (t->heads[i]) {
            struct count *c = t->heads[i];

            t->heads[i] = c->next;
            free(c);
        }
    }
    for (unsigned i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&t->stripes[i].lock);
    free(t);
}

void core_sources_free(struct core_sources *s)
{
    if (!s)
        return;
    counts_free(atomic_load_explicit(&s->counts, memory_order_acquire));
    core_srctable_free(atomic_load_explicit(&s->rate, memory_order_acquire));
    free(s);
}

/* The table in *slot, made by make() by the first call that finds none and published once:
 * of two threads that race, the first to publish wins and the other frees its own with drop().
 * NULL: out of memory. */
static void *publish_once(_Atomic(void *) *slot, void *(*make)(void), void (*drop)(void *))
{
    void *t = atomic_load_explicit(slot, memory_order_acquire), *none = NULL;

    if (t)
        return t;
    if (!(t = make()))
        return NULL;
    if (!atomic_compare_exchange_strong_explicit(slot, &none, t, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        drop(t);
        t = none;
    }
    return t;
}

static void *counts_make(void)
{
    struct counts *t = calloc(1, sizeof(*t));

    for (unsigned i = 0; t && i < STRIPES; i++)
        pthread_mutex_init(&t->stripes[i].lock, NULL);
    return t;
}

static void counts_drop(void *t)
{
    counts_free(t);
}

/* The counts of s, made by the first caller with make. NULL on ENOMEM, or when none were made
 * and !make. */
static struct counts *counts_of(struct core_sources *s, bool make)
{
    return make ? publish_once(&s->counts, counts_make, counts_drop)
                : atomic_load_explicit(&s->counts, memory_order_acquire);
}

/* src's chain in t (the counts of s); its lock in *ret_lock. */
static struct count **chain_of(struct core_sources *s, struct counts *t,
                               const struct core_source *src, pthread_mutex_t **ret_lock)
{
    size_t h = source_hash(src, s->seed) % HEADS;

    *ret_lock = &t->stripes[h % STRIPES].lock;
    return &t->heads[h];
}

/* The link that points at src's count (or at NULL, the chain's end). Under its lock. */
static struct count **find_count(struct count **head, const struct core_source *src)
{
    struct count **p = head;

    while (*p && !source_equal(&(*p)->key, src))
        p = &(*p)->next;
    return p;
}

static void *rate_make(void)
{
    struct core_srctable *t;

    return core_srctable_new(CORE_SRCTABLE_CAPACITY, &t) < 0 ? NULL : t;
}

static void rate_drop(void *t)
{
    core_srctable_free(t);
}

/* The rate table of s, made by the first caller; NULL on ENOMEM. */
static struct core_srctable *rate_table(struct core_sources *s)
{
    return publish_once(&s->rate, rate_make, rate_drop);
}

int core_sources_admit(struct core_sources *s, const struct core_source *src, uint32_t max,
                       uint32_t rate, uint64_t now_ns)
{
    pthread_mutex_t *lock;
    struct counts *counts = counts_of(s, true);
    struct count **head, **p, *c;
    struct core_srctable *t = rate ? rate_table(s) : NULL;

    if (!counts || (rate && !t))
        return -ENOMEM;
    head = chain_of(s, counts, src, &lock);
    if (t && !core_srctable_take(t, src, rate, rate, now_ns))
        return -EAGAIN;
    pthread_mutex_lock(lock);
    p = find_count(head, src);
    c = *p;
    if (c && max && c->open >= max) {
        pthread_mutex_unlock(lock);
        return -EUSERS;
    }
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c) {
            pthread_mutex_unlock(lock);
            return -ENOMEM;
        }
        c->key = *src;
        *p = c;
    }
    c->open++;
    pthread_mutex_unlock(lock);
    return 0;
}

void core_sources_release(struct core_sources *s, const struct core_source *src)
{
    pthread_mutex_t *lock;
    struct counts *counts = counts_of(s, false);
    struct count **head, **p, *c = NULL;

    if (!counts)
        return; /* nothing was counted */
    head = chain_of(s, counts, src, &lock);
    pthread_mutex_lock(lock);
    p = find_count(head, src);
    if (*p && --(*p)->open == 0) {
        c = *p;
        *p = c->next;
    }
    pthread_mutex_unlock(lock);
    free(c);
}

uint32_t core_sources_open(struct core_sources *s, const struct core_source *src)
{
    pthread_mutex_t *lock;
    struct counts *counts = counts_of(s, false);
    struct count **head, *c;
    uint32_t n;

    if (!counts)
        return 0;
    head = chain_of(s, counts, src, &lock);
    pthread_mutex_lock(lock);
    c = *find_count(head, src);
    n = c ? c->open : 0;
    pthread_mutex_unlock(lock);
    return n;
}

/* ---- this daemon's endpoints ---- */

struct endpoint {
    const void *owner;
    struct core_source addr;
    bool wildcard;
    uint16_t port;
};

struct core_endpoints {
    /* Bit p set while some endpoint has port p: a source port that is no endpoint's is told
     * apart without the lock. Written under lock. */
    _Atomic uint64_t ports[PORT_WORDS];
    pthread_mutex_t lock;
    struct endpoint *list;               /* guarded by lock */
    size_t n, cap;                       /* guarded by lock */
    struct core_source local[LOCAL_MAX]; /* guarded by lock: this host's addresses */
    size_t n_local;                      /* guarded by lock */
};

int core_endpoints_new(struct core_endpoints **ret)
{
    struct core_endpoints *e = calloc(1, sizeof(*e));

    if (!e)
        return -ENOMEM;
    for (unsigned i = 0; i < PORT_WORDS; i++)
        atomic_init(&e->ports[i], 0);
    pthread_mutex_init(&e->lock, NULL);
    *ret = e;
    return 0;
}

void core_endpoints_free(struct core_endpoints *e)
{
    if (!e)
        return;
    pthread_mutex_destroy(&e->lock);
    free(e->list);
    free(e);
}

/* This host's addresses now, into local (at most LOCAL_MAX); their number, or -1. */
static int read_local(struct core_source *local)
{
    struct ifaddrs *ifs, *i;
    int n = 0;

    if (getifaddrs(&ifs) < 0)
        return -1;
    for (i = ifs; i && n < LOCAL_MAX; i = i->ifa_next)
        if (i->ifa_addr && core_source_from_sockaddr(i->ifa_addr, &local[n], NULL))
            n++;
    freeifaddrs(ifs);
    return n;
}

/* Sets or clears port's bit from the list. Under lock. */
static void port_bit_update(struct core_endpoints *e, uint16_t port)
{
    uint64_t bit = 1ull << (port % 64);
    bool used = false;

    for (size_t i = 0; i < e->n && !used; i++)
        used = e->list[i].port == port;
    if (used)
        atomic_fetch_or_explicit(&e->ports[port / 64], bit, memory_order_relaxed);
    else
        atomic_fetch_and_explicit(&e->ports[port / 64], ~bit, memory_order_relaxed);
}

/* Removes owner's entry. Under lock. */
static void remove_locked(struct core_endpoints *e, const void *owner)
{
    for (size_t i = 0; i < e->n; i++) {
        if (e->list[i].owner == owner) {
            uint16_t port = e->list[i].port;

            e->list[i] = e->list[--e->n];
            port_bit_update(e, port);
            return;
        }
    }
}

int core_endpoints_add(struct core_endpoints *e, const void *owner,
                       const struct sockaddr_storage *bound)
{
    struct core_source local[LOCAL_MAX];
    struct endpoint ep = {.owner = owner};
    int n_local = -1;

    if (!e)
        return 0;
    if (!core_source_from_sockaddr((const struct sockaddr *)bound, &ep.addr, &ep.port))
        return -EAFNOSUPPORT;
    ep.wildcard = is_wildcard(&ep.addr);
    if (ep.wildcard)
        n_local = read_local(local);
    pthread_mutex_lock(&e->lock);
    remove_locked(e, owner);
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        struct endpoint *list = realloc(e->list, cap * sizeof(*list));

        if (!list) {
            pthread_mutex_unlock(&e->lock);
            return -ENOMEM;
        }
        e->list = list;
        e->cap = cap;
    }
    e->list[e->n++] = ep;
    port_bit_update(e, ep.port);
    if (n_local >= 0) {
        memcpy(e->local, local, (size_t)n_local * sizeof(local[0]));
        e->n_local = (size_t)n_local;
    }
    pthread_mutex_unlock(&e->lock);
    return 0;
}

void core_endpoints_remove(struct core_endpoints *e, const void *owner)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    remove_locked(e, owner);
    pthread_mutex_unlock(&e->lock);
}

bool core_endpoints_match(struct core_endpoints *e, const struct core_source *src, uint16_t port)
{
    bool match = false, local = false;

    if (!e ||
        !(atomic_load_explicit(&e->ports[port / 64], memory_order_relaxed) & (1ull << (port % 64))))
        return false;
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < e->n_local && !local; i++)
        local = source_equal(&e->local[i], src);
    local = local || core_source_is_loopback(src);
    for (size_t i = 0; i < e->n && !match; i++) {
        const struct endpoint *ep = &e->list[i];

        if (ep->port == port)
            match = core_source_is_loopback(src) ||
                    (ep->wildcard ? local : source_equal(&ep->addr, src));
    }
    pthread_mutex_unlock(&e->lock);
    return match;
}
