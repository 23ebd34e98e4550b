#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/ratelimit.h"

#define MS 1000000ull
#define S 1000000000ull
#define T0 (1000 * S) /* a monotonic clock is far from 0 */

static struct core_source src_of(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct core_source s;

    if (strchr(text, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;

        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    assert_true(core_source_from_sockaddr((struct sockaddr *)&ss, &s, NULL));
    return s;
}

/* ---- token buckets ---- */

static unsigned take_n(struct core_bucket *b, unsigned n, uint32_t rate, uint32_t burst,
                       uint64_t now)
{
    unsigned ok = 0;

    for (unsigned i = 0; i < n; i++)
        ok += core_bucket_take(b, rate, burst, now);
    return ok;
}

static void test_bucket_full_burst_then_one_per_interval(void **state)
{
    struct core_bucket b;

    (void)state;
    core_bucket_init(&b);
    assert_int_equal(take_n(&b, 15, 10, 10, T0), 10);
    /* 10 per second: one token every 100 ms, not before. */
    assert_false(core_bucket_take(&b, 10, 10, T0 + 99 * MS));
    assert_true(core_bucket_take(&b, 10, 10, T0 + 100 * MS));
    assert_false(core_bucket_take(&b, 10, 10, T0 + 150 * MS));
    /* Idle for long: full again, never more than the burst. */
    assert_int_equal(take_n(&b, 30, 10, 10, T0 + 60 * S), 10);
}

static void test_bucket_rate_zero_is_no_limit(void **state)
{
    struct core_bucket b;

    (void)state;
    core_bucket_init(&b);
    assert_int_equal(take_n(&b, 100000, 0, 0, T0), 100000);
}

static void test_bucket_burst_zero_counts_as_one(void **state)
{
    struct core_bucket b;

    (void)state;
    core_bucket_init(&b);
    assert_int_equal(take_n(&b, 5, 1000, 0, T0), 1);
    assert_true(core_bucket_take(&b, 1000, 0, T0 + 1 * MS));
}

static void test_bucket_long_run_holds_the_rate(void **state)
{
    struct core_bucket b;
    unsigned ok = 0;

    (void)state;
    core_bucket_init(&b);
    /* A sender trying every 100 µs for 10 s against 1000/s, burst 1000: 1000 + 10 * 1000. */
    for (uint64_t t = 0; t < 10 * S; t += 100000)
        ok += core_bucket_take(&b, 1000, 1000, T0 + t);
    assert_in_range(ok, 10999, 11001);
}

static void test_bucket_odd_rate_never_exceeds(void **state)
{
    struct core_bucket b;
    unsigned ok = 0;

    (void)state;
    core_bucket_init(&b);
    /* 3 per second does not divide a second in whole nanoseconds: over 100 s, the burst and
     * 300 more at most (and no fewer: a token taken late is not lost while the bucket has room). */
    for (uint64_t t = 0; t < 100 * S; t += 10 * MS)
        ok += core_bucket_take(&b, 3, 3, T0 + t);
    assert_in_range(ok, 300, 303);
}

struct race {
    struct core_bucket *b;
    struct core_srctable *t;
    struct core_source src;
    atomic_uint ok;
};

static void *bucket_racer(void *arg)
{
    struct race *r = arg;

    for (unsigned i = 0; i < 20000; i++)
        if (core_bucket_take(r->b, 1000, 5000, T0))
            atomic_fetch_add(&r->ok, 1);
    return NULL;
}

static void test_bucket_threads_take_exactly_the_burst(void **state)
{
    struct core_bucket b;
    struct race r = {.b = &b};
    pthread_t t[4];

    (void)state;
    core_bucket_init(&b);
    atomic_init(&r.ok, 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, bucket_racer, &r), 0);
    for (unsigned i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.ok), 5000);
}

/* ---- a bucket per source ---- */

static void test_srctable_sources_have_their_own_budgets(void **state)
{
    struct core_srctable *t;
    struct core_source a = src_of("192.0.2.1"), b = src_of("192.0.2.2");
    unsigned ok = 0;

    (void)state;
    assert_int_equal(core_srctable_new(64, &t), 0);
    for (unsigned i = 0; i < 50; i++)
        ok += core_srctable_take(t, &a, 20, 20, T0);
    assert_int_equal(ok, 20);
    /* a is over its budget; b is not starved by it. */
    ok = 0;
    for (unsigned i = 0; i < 50; i++)
        ok += core_srctable_take(t, &b, 20, 20, T0);
    assert_int_equal(ok, 20);
    assert_false(core_srctable_take(t, &a, 20, 20, T0 + 10 * MS));
    assert_true(core_srctable_take(t, &a, 20, 20, T0 + 50 * MS));
    assert_int_equal(core_srctable_count(t), 2);
    core_srctable_free(t);
}

static void test_srctable_ipv4_and_mapped_ipv6_are_one_source(void **state)
{
    struct core_srctable *t;
    struct core_source v4 = src_of("198.51.100.7"), mapped = src_of("::ffff:198.51.100.7");

    (void)state;
    assert_memory_equal(&v4, &mapped, sizeof(v4));
    assert_int_equal(core_srctable_new(64, &t), 0);
    assert_true(core_srctable_take(t, &v4, 1, 2, T0));
    assert_true(core_srctable_take(t, &mapped, 1, 2, T0));
    assert_false(core_srctable_take(t, &v4, 1, 2, T0));
    assert_int_equal(core_srctable_count(t), 1);
    core_srctable_free(t);
}

static void test_srctable_rate_zero_keeps_nothing(void **state)
{
    struct core_srctable *t;
    struct core_source a = src_of("2001:db8::1");

    (void)state;
    assert_int_equal(core_srctable_new(64, &t), 0);
    for (unsigned i = 0; i < 1000; i++)
        assert_true(core_srctable_take(t, &a, 0, 0, T0));
    assert_int_equal(core_srctable_count(t), 0);
    core_srctable_free(t);
}

static void test_srctable_flood_of_sources_stays_bounded(void **state)
{
    struct core_srctable *t;
    struct core_source heavy = src_of("203.0.113.9");
    unsigned ok = 0;

    (void)state;
    assert_int_equal(core_srctable_new(256, &t), 0);
    /* 100000 spoofed sources, each one datagram: the table never holds more than its places. */
    for (uint32_t i = 0; i < 100000; i++) {
        struct core_source s = src_of("10.0.0.0");

        memcpy(s.addr + 12, &i, 4);
        assert_true(core_srctable_take(t, &s, 10, 10, T0 + i));
        if (i % 1000 == 0)
            assert_true(core_srctable_count(t) <= 256);
    }
    assert_int_equal(core_srctable_count(t), 256);
    /* A source that keeps over its budget amid the flood is still held to it: the places whose
     * buckets are full go first. */
    for (unsigned i = 0; i < 100; i++)
        ok += core_srctable_take(t, &heavy, 10, 10, T0 + 100000);
    assert_int_equal(ok, 10);
    for (uint32_t i = 0; i < 1000; i++) {
        struct core_source s = src_of("10.1.0.0");

        memcpy(s.addr + 12, &i, 4);
        (void)core_srctable_take(t, &s, 10, 10, T0 + 200 * MS + i);
    }
    assert_false(core_srctable_take(t, &heavy, 10, 10, T0 + 1000000));
    core_srctable_free(t);
}

static void *srctable_racer(void *arg)
{
    struct race *r = arg;

    for (unsigned i = 0; i < 20000; i++)
        if (core_srctable_take(r->t, &r->src, 100, 3000, T0))
            atomic_fetch_add(&r->ok, 1);
    return NULL;
}

static void test_srctable_threads_take_exactly_the_burst(void **state)
{
    struct race r = {.src = src_of("::1")};
    pthread_t t[4];

    (void)state;
    atomic_init(&r.ok, 0);
    assert_int_equal(core_srctable_new(64, &r.t), 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, srctable_racer, &r), 0);
    for (unsigned i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.ok), 3000);
    core_srctable_free(r.t);
}

/* ---- a TCP listener's sources ---- */

static void test_sources_max_per_source_refuses_until_one_closes(void **state)
{
    struct core_sources *s;
    struct core_source a = src_of("127.0.0.1"), b = src_of("127.0.0.2");

    (void)state;
    assert_int_equal(core_sources_new(&s), 0);
    assert_int_equal(core_sources_admit(s, &a, 2, 0, T0), 0);
    assert_int_equal(core_sources_admit(s, &a, 2, 0, T0), 0);
    assert_int_equal(core_sources_admit(s, &a, 2, 0, T0), -EUSERS);
    assert_int_equal(core_sources_admit(s, &b, 2, 0, T0), 0);
    assert_int_equal(core_sources_open(s, &a), 2);
    /* A limit raised later counts what is open; one lowered refuses until enough close. */
    assert_int_equal(core_sources_admit(s, &a, 3, 0, T0), 0);
    assert_int_equal(core_sources_admit(s, &a, 1, 0, T0), -EUSERS);
    core_sources_release(s, &a);
    core_sources_release(s, &a);
    assert_int_equal(core_sources_admit(s, &a, 1, 0, T0), -EUSERS);
    core_sources_release(s, &a);
    assert_int_equal(core_sources_open(s, &a), 0);
    assert_int_equal(core_sources_admit(s, &a, 1, 0, T0), 0);
    core_sources_release(s, &a);
    core_sources_release(s, &b);
    assert_int_equal(core_sources_open(s, &a), 0);
    assert_int_equal(core_sources_open(s, &b), 0);
    core_sources_free(s);
}

static void test_sources_no_limit_still_counts(void **state)
{
    struct core_sources *s;
    struct core_source a = src_of("::ffff:10.9.8.7");

    (void)state;
    assert_int_equal(core_sources_new(&s), 0);
    for (unsigned i = 0; i < 1000; i++)
        assert_int_equal(core_sources_admit(s, &a, 0, 0, T0), 0);
    assert_int_equal(core_sources_open(s, &a), 1000);
    for (unsigned i = 0; i < 1000; i++)
        core_sources_release(s, &a);
    assert_int_equal(core_sources_open(s, &a), 0);
    /* Left open at free: freed with it (the sanitizer build sees a leak otherwise). */
    assert_int_equal(core_sources_admit(s, &a, 0, 0, T0), 0);
    core_sources_free(s);
}

static void test_sources_connection_rate_refuses_then_refills(void **state)
{
    struct core_sources *s;
    struct core_source a = src_of("127.0.0.1"), b = src_of("::1");

    (void)state;
    assert_int_equal(core_sources_new(&s), 0);
    assert_int_equal(core_sources_admit(s, &a, 0, 2, T0), 0);
    assert_int_equal(core_sources_admit(s, &a, 0, 2, T0), 0);
    assert_int_equal(core_sources_admit(s, &a, 0, 2, T0 + 1 * MS), -EAGAIN);
    assert_int_equal(core_sources_admit(s, &b, 0, 2, T0 + 1 * MS), 0);
    assert_int_equal(core_sources_admit(s, &a, 0, 2, T0 + 500 * MS), 0);
    /* A refused connection is not counted open. */
    assert_int_equal(core_sources_open(s, &a), 3);
    for (unsigned i = 0; i < 3; i++)
        core_sources_release(s, &a);
    core_sources_release(s, &b);
    core_sources_free(s);
}

/* ---- reflectors, loopback ---- */

static void test_port_is_reflector_lists_the_small_services(void **state)
{
    static const uint16_t yes[] = {0,   7,   9,   13,  17,  19,   37,   53,
                                   111, 123, 137, 161, 389, 1900, 11211};
    static const uint16_t no[] = {1, 1024, 1313, 7007, 8080, 32400, 32768, 40000, 60999, 65535};

    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!core_port_is_reflector(yes[i]))
            fail_msg("port %u should be refused", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (core_port_is_reflector(no[i]))
            fail_msg("port %u should be answered", no[i]);
}

static void test_source_is_loopback(void **state)
{
    struct core_source a = src_of("127.0.0.1"), b = src_of("127.255.0.9"),
                       c = src_of("::ffff:127.0.0.2"), d = src_of("::1"), e = src_of("128.0.0.1"),
                       f = src_of("::2"), g = src_of("::");

    (void)state;
    assert_true(core_source_is_loopback(&a));
    assert_true(core_source_is_loopback(&b));
    assert_true(core_source_is_loopback(&c));
    assert_true(core_source_is_loopback(&d));
    assert_false(core_source_is_loopback(&e));
    assert_false(core_source_is_loopback(&f));
    assert_false(core_source_is_loopback(&g));
}

/* ---- this daemon's endpoints ---- */

/* Where fd is bound, as core_endpoints_add() takes it (a static copy: one call per use). */
static const struct sockaddr_storage *bound_of(int fd)
{
    static struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return &ss;
}

static int udp_bound(int family, const char *host, uint16_t *ret_port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    int fd, off = 0;

    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;

        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, host, &in->sin_addr), 1);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, host, &in6->sin6_addr), 1);
        len = sizeof(*in6);
    }
    fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (family == AF_INET6)
        assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    len = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    *ret_port = family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                  : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

/* A non-loopback address of this host, if it has one. */
static bool some_local_address(struct core_source *ret)
{
    struct ifaddrs *ifs;
    bool found = false;

    if (getifaddrs(&ifs) < 0)
        return false;
    for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next)
        found = i->ifa_addr && core_source_from_sockaddr(i->ifa_addr, ret, NULL) &&
                !core_source_is_loopback(ret);
    freeifaddrs(ifs);
    return found;
}

static void test_endpoints_match_own_address_and_loopback(void **state)
{
    struct core_endpoints *e;
    struct core_source lo = src_of("127.0.0.1"), lo2 = src_of("127.0.0.2"),
                       far = src_of("192.0.2.1"), mapped = src_of("::ffff:127.0.0.1");
    uint16_t port;
    int fd;

    (void)state;
    assert_int_equal(core_endpoints_new(&e), 0);
    fd = udp_bound(AF_INET, "127.0.0.1", &port);
    assert_false(core_endpoints_match(e, &lo, port));
    assert_int_equal(core_endpoints_add(e, &fd, bound_of(fd)), 0);
    assert_true(core_endpoints_match(e, &lo, port));
    assert_true(core_endpoints_match(e, &mapped, port));
    assert_true(core_endpoints_match(e, &lo2, port));
    assert_false(core_endpoints_match(e, &lo, (uint16_t)(port + 1)));
    /* Another host with that port is a client like any other. */
    assert_false(core_endpoints_match(e, &far, port));
    core_endpoints_remove(e, &fd);
    assert_false(core_endpoints_match(e, &lo, port));
    close(fd);
    core_endpoints_free(e);
}

static void test_endpoints_wildcard_matches_every_local_address(void **state)
{
    struct core_endpoints *e;
    struct core_source lo6 = src_of("::1"), lo4 = src_of("127.0.0.1"), far = src_of("192.0.2.1"),
                       local;
    uint16_t port, port2;
    int fd, fd2;

    (void)state;
    assert_int_equal(core_endpoints_new(&e), 0);
    fd = udp_bound(AF_INET6, "::", &port);
    fd2 = udp_bound(AF_INET, "127.0.0.1", &port2);
    assert_int_equal(core_endpoints_add(e, &fd, bound_of(fd)), 0);
    assert_int_equal(core_endpoints_add(e, &fd2, bound_of(fd2)), 0);
    assert_true(core_endpoints_match(e, &lo6, port));
    assert_true(core_endpoints_match(e, &lo4, port));
    assert_true(core_endpoints_match(e, &lo4, port2));
    assert_false(core_endpoints_match(e, &far, port));
    if (some_local_address(&local))
        assert_true(core_endpoints_match(e, &local, port));
    /* Two owners of one port: the port stays known until both are gone. */
    core_endpoints_remove(e, &fd2);
    assert_false(core_endpoints_match(e, &lo4, port2));
    assert_true(core_endpoints_match(e, &lo4, port));
    /* Adding again replaces the owner's endpoint. */
    assert_int_equal(core_endpoints_add(e, &fd, bound_of(fd2)), 0);
    assert_false(core_endpoints_match(e, &lo4, port));
    assert_true(core_endpoints_match(e, &lo4, port2));
    core_endpoints_remove(e, &fd);
    assert_false(core_endpoints_match(e, &lo4, port2));
    core_endpoints_remove(e, &fd);
    assert_false(core_endpoints_match(NULL, &lo4, port2));
    assert_int_equal(core_endpoints_add(NULL, &fd, bound_of(fd)), 0);
    close(fd);
    close(fd2);
    core_endpoints_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_full_burst_then_one_per_interval),
        cmocka_unit_test(test_bucket_rate_zero_is_no_limit),
        cmocka_unit_test(test_bucket_burst_zero_counts_as_one),
        cmocka_unit_test(test_bucket_long_run_holds_the_rate),
        cmocka_unit_test(test_bucket_odd_rate_never_exceeds),
        cmocka_unit_test(test_bucket_threads_take_exactly_the_burst),
        cmocka_unit_test(test_srctable_sources_have_their_own_budgets),
        cmocka_unit_test(test_srctable_ipv4_and_mapped_ipv6_are_one_source),
        cmocka_unit_test(test_srctable_rate_zero_keeps_nothing),
        cmocka_unit_test(test_srctable_flood_of_sources_stays_bounded),
        cmocka_unit_test(test_srctable_threads_take_exactly_the_burst),
        cmocka_unit_test(test_sources_max_per_source_refuses_until_one_closes),
        cmocka_unit_test(test_sources_no_limit_still_counts),
        cmocka_unit_test(test_sources_connection_rate_refuses_then_refills),
        cmocka_unit_test(test_port_is_reflector_lists_the_small_services),
        cmocka_unit_test(test_source_is_loopback),
        cmocka_unit_test(test_endpoints_match_own_address_and_loopback),
        cmocka_unit_test(test_endpoints_wildcard_matches_every_local_address),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
