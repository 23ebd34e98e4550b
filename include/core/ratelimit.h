#ifndef CORE_RATELIMIT_H
#define CORE_RATELIMIT_H

/*
 * What one source, or everyone, may draw from a listener, and the endpoints a datagram must
 * never come from:
 *
 * - core_bucket: a token bucket (rate per second, burst), kept as the time its next token is
 *   due (GCRA): one atomic word, lock-free.
 * - core_srctable: a token bucket per source IP address in a table of fixed capacity. A source
 *   it does not hold has a full bucket; when its place is taken, the entry closest to full is
 *   replaced (an entry that is full is worth nothing), so a flood of spoofed sources cannot grow
 *   memory. Its places are chosen by a hash keyed with a random seed, so a sender cannot aim at
 *   another source's place.
 * - core_sources: a TCP listener's sources: the connections each source IP has open (exact; an
 *   entry lives while its source has one open, so memory is bounded by the open connections)
 *   and a connection-rate bucket per source (a core_srctable). One per listener, shared by the
 *   runners a live reconfiguration leaves draining and the new one.
 * - core_endpoints: this daemon's listening endpoints (UDP and TCP), so that a UDP listener
 *   never answers a datagram that comes from one of them (two services bouncing datagrams at
 *   each other forever).
 *
 * Time is CLOCK_MONOTONIC in nanoseconds, passed in, so that tests drive it. Source addresses
 * are keys of 16 bytes: IPv6, IPv4 (and IPv4-mapped IPv6) as ::ffff:a.b.c.d, so one IPv4
 * client is one source whether it reaches an IPv4 or a dual-stack socket.
 *
 * Thread rules: every function may be called from any thread at any time, except new and free
 * (no other call may run on the object then). No function allocates or makes a system call but
 * new, free, core_sources_admit() (a source's first open connection) and core_endpoints_add().
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The places of a core_srctable made by core_sources_new() (the UDP runner sizes its own). */
#define CORE_SRCTABLE_CAPACITY 4096

/* ---- source addresses ---- */

struct core_source {
    uint8_t addr[16]; /* IPv6; IPv4 as ::ffff:a.b.c.d */
};

/*
 * The source of sa (AF_INET or AF_INET6) into *ret, and its port (host order) into *ret_port
 * (may be NULL). Returns false, writing nothing, for another family.
 */
bool core_source_from_sockaddr(const struct sockaddr *sa, struct core_source *ret,
                               uint16_t *ret_port);

/* Whether s is a loopback address: 127.0.0.0/8 or ::1. */
bool core_source_is_loopback(const struct core_source *s);

/*
 * Whether a datagram from source port port must get no answer: port 0, or the port of a
 * well-known UDP service that answers whatever reaches it (echo, chargen, daytime, DNS, NTP,
 * SNMP, SSDP, memcached, ...), which a spoofed request would turn into a reflector or a loop.
 * The list is in ratelimit.c and docs/api.md.
 */
bool core_port_is_reflector(uint16_t port);

/* ---- token buckets ---- */

/* The time (ns) the next token is due; 0: full. */
struct core_bucket {
    _Atomic uint64_t tat;
};

/* A full bucket. */
void core_bucket_init(struct core_bucket *b);

/*
 * Takes one token at now_ns from a bucket that gains rate tokens per second and holds at most
 * burst (0 counts as 1). Returns whether there was one. rate 0: no limit, always true. Lock-free.
 */
bool core_bucket_take(struct core_bucket *b, uint32_t rate, uint32_t burst, uint64_t now_ns);

/* ---- a token bucket per source ---- */

struct core_srctable;

/* A table of at least capacity places (rounded up to a power of two, at least 8). Returns 0 or
 * -ENOMEM. Free with core_srctable_free(). */
int core_srctable_new(unsigned capacity, struct core_srctable **ret);

/* Accepts NULL. */
void core_srctable_free(struct core_srctable *t);

/* As core_bucket_take() for src's bucket. rate 0: true, and the table is not touched. */
bool core_srctable_take(struct core_srctable *t, const struct core_source *src, uint32_t rate,
                        uint32_t burst, uint64_t now_ns);

/* The places in use (for tests and diagnostics). */
size_t core_srctable_count(struct core_srctable *t);

/* ---- a TCP listener's sources ---- */

struct core_sources;

/* Returns 0 or -ENOMEM. Free with core_sources_free() once no runner uses it. */
int core_sources_new(struct core_sources **ret);

/* Accepts NULL. */
void core_sources_free(struct core_sources *s);

/*
 * A new connection from src: takes a token from its connection-rate bucket (rate per second,
 * burst one second's worth; 0: no limit), then counts it among src's open connections unless
 * src has max open already (0: no limit). Returns 0 when admitted (release it with
 * core_sources_release() when it closes), -EAGAIN over the rate, -EUSERS at max, -ENOMEM.
 */
int core_sources_admit(struct core_sources *s, const struct core_source *src, uint32_t max,
                       uint32_t rate, uint64_t now_ns);

/* One connection admitted from src has closed. */
void core_sources_release(struct core_sources *s, const struct core_source *src);

/* The connections src has open. */
uint32_t core_sources_open(struct core_sources *s, const struct core_source *src);

/* ---- this daemon's endpoints ---- */

struct core_endpoints;

/* An empty set. Returns 0 or -ENOMEM. Free with core_endpoints_free(). */
int core_endpoints_new(struct core_endpoints **ret);

/* Accepts NULL. */
void core_endpoints_free(struct core_endpoints *e);

/*
 * Records bound, the address a socket of owner's is bound to (as getsockname() gave it), as
 * owner's endpoint (replacing owner's earlier one). When it is a wildcard address (0.0.0.0,
 * ::), every address of this host counts, as the host has them now (read again at each add).
 * e NULL: does nothing. Returns 0 or a negative errno (-ENOMEM, -EAFNOSUPPORT).
 */
int core_endpoints_add(struct core_endpoints *e, const void *owner,
                       const struct sockaddr_storage *bound);

/* Forgets owner's endpoint, if any. Accepts e NULL. */
void core_endpoints_remove(struct core_endpoints *e, const void *owner);

/*
 * Whether src:port is (or could be) one of the endpoints: port is an endpoint's port and src
 * is a loopback address, the endpoint's own address, or, for a wildcard endpoint, an address of
 * this host. e NULL: false. A source whose port is no endpoint's is answered without a lock.
 */
bool core_endpoints_match(struct core_endpoints *e, const struct core_source *src, uint16_t port);

#endif
