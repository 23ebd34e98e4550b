/*
 * The service guards over real sockets: a UDP listener gives no answer to a datagram from one of
 * the daemon's own endpoints (a spoofed datagram between two echo listeners stops at once) or
 * from a reflector's port, and holds every source and the whole listener to their reply budgets;
 * TCP listeners refuse connections past max_connections_per_source and
 * connection_rate_per_source under every model, follow a PATCH of them live without dropping a
 * connection, and refuse connections while the daemon is out of fds, then serve again. After
 * each test the daemon answers, its threads and fds are back to what they were, and it printed
 * no sanitizer report.
 */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define QUIET_MS 500 /* how long counters must stay put to say an exchange stopped */
#define CPU_WINDOW_MS 1000
#define CPU_MAX_TICKS 30 /* of CPU_WINDOW_MS: 30% of one core at USER_HZ 100 */
#define FREE_FDS 8       /* fds left to the daemon under a lowered RLIMIT_NOFILE */
#define MAX_FILL 64

/* ---- the daemon as a process: fds, CPU time; after a test ---- */

static int highest_fd(pid_t pid)
{
    char path[64];
    struct dirent *e;
    int max = -1;
    DIR *dir;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    dir = opendir(path);
    assert_non_null(dir);
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.' && atoi(e->d_name) > max)
            max = atoi(e->d_name);
    closedir(dir);
    return max;
}

/* The daemon's fds and threads with no listener, at the start of a test, once they hold still
 * (the API's own connections come and go). */
static struct it_resources baseline(const struct it_daemon *d)
{
    struct it_resources base;

    it_resources_settle(d, &base);
    return base;
}

static void delete_every_listener(const struct it_daemon *d)
{
    json_t *all = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200);
    json_t *list = json_object_get(all, "listeners"), *l;
    size_t i;

    json_array_foreach(list, i, l)
    {
        char path[128];

        snprintf(path, sizeof(path), "/api/v1/listeners/%s", it_json_str(l, "id"));
        json_decref(it_http_expect(d, "DELETE", path, NULL, 204));
    }
    json_decref(all);
}

/*
 * After a fault: the daemon runs and answers health; once its listeners are deleted, its threads
 * and fds are what they were before the test; its log holds no sanitizer report.
 */
static void assert_recovered(const struct it_daemon *d, const struct it_resources *base)
{
    it_assert_daemon_alive(d);
    delete_every_listener(d);
    it_assert_resources_back(d, base, IT_WAIT_MS);
    it_assert_no_sanitizer_report(d);
}

/* ---- UDP ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/*
 * Sends one UDP datagram over IPv4 whose source is src:sport, whatever socket holds that
 * address (a raw socket writes the headers). Returns 0, or -EPERM without the privilege.
 */
static int send_spoofed(const char *src, uint16_t sport, const char *dst, uint16_t dport,
                        const char *payload)
{
    uint8_t pkt[28 + 64];
    size_t len = strlen(payload);
    struct sockaddr_in to = {.sin_family = AF_INET};
    int fd, r = 0;

    assert_true(len <= 64);
    memset(pkt, 0, sizeof(pkt));
    pkt[0] = 0x45; /* IPv4, 5 words of header */
    put16(pkt + 2, (uint16_t)(28 + len));
    pkt[8] = 64;          /* TTL */
    pkt[9] = IPPROTO_UDP; /* the id and the checksum are filled in by the kernel */
    assert_int_equal(inet_pton(AF_INET, src, pkt + 12), 1);
    assert_int_equal(inet_pton(AF_INET, dst, pkt + 16), 1);
    put16(pkt + 20, sport);
    put16(pkt + 22, dport);
    put16(pkt + 24, (uint16_t)(8 + len)); /* UDP checksum 0: none, allowed over IPv4 */
    memcpy(pkt + 28, payload, len);
    assert_int_equal(inet_pton(AF_INET, dst, &to.sin_addr), 1);
    fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0)
        return -errno;
    if (sendto(fd, pkt, 28 + len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
        r = -errno;
    close(fd);
    return r;
}

static void spoof_or_skip(const char *src, uint16_t sport, uint16_t dport, const char *payload)
{
    int r = send_spoofed(src, sport, "127.0.0.1", dport, payload);

    if (r == -EPERM || r == -EACCES) {
        fprintf(stderr, "# a raw socket needs CAP_NET_RAW: skipped\n");
        skip();
    }
    if (r < 0)
        fail_msg("sending a datagram from %s port %u: %s", src, sport, strerror(-r));
}

/* A UDP socket bound to src (port 0) and connected to 127.0.0.1:port. */
static int udp_client(const char *src, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    assert_true(fd >= 0);
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    to.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &to.sin_addr), 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
    return fd;
}

static void udp_send_n(int fd, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "datagram %u", i);

        if (send(fd, msg, (size_t)len, 0) != len)
            fail_msg("send: %s", strerror(errno));
    }
}

/* Receives datagrams until want came or timeout_ms passed; returns how many came. */
static unsigned udp_receive(int fd, unsigned want, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    unsigned got = 0;

    while (got < want) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - it_now_ms();
        char buf[256];

        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        while (recv(fd, buf, sizeof(buf), 0) >= 0)
            got++;
    }
    return got;
}

/* Whether a datagram arrives on fd within timeout_ms. */
static bool udp_something_arrives(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, timeout_ms) > 0;
}

struct udp_sum {
    const struct it_daemon *d;
    const char *id;
    uint64_t want; /* datagrams_out + datagrams_dropped */
};

static bool udp_all_handled(void *arg)
{
    struct udp_sum *s = arg;

    return it_metric(s->d, s->id, "datagrams_out") + it_metric(s->d, s->id, "datagrams_dropped") ==
           s->want;
}

/* Waits until listener id answered or dropped n datagrams in all. */
static void wait_handled(const struct it_daemon *d, const char *id, uint64_t n)
{
    struct udp_sum s = {.d = d, .id = id, .want = n};

    if (!it_wait_until(IT_WAIT_MS, udp_all_handled, &s))
        fail_msg("listener %s: %llu datagrams not all handled (in %llu, out %llu, dropped %llu)",
                 id, (unsigned long long)n, (unsigned long long)it_metric(d, id, "datagrams_in"),
                 (unsigned long long)it_metric(d, id, "datagrams_out"),
                 (unsigned long long)it_metric(d, id, "datagrams_dropped"));
}

/* The datagram counters of two listeners, to see whether anything still moves. */
struct traffic {
    const struct it_daemon *d;
    const char *a, *b;
    uint64_t seen[4];
};

static void traffic_read(struct traffic *t, uint64_t out[4])
{
    out[0] = it_metric(t->d, t->a, "datagrams_in");
    out[1] = it_metric(t->d, t->a, "datagrams_out");
    out[2] = it_metric(t->d, t->b, "datagrams_in");
    out[3] = it_metric(t->d, t->b, "datagrams_out");
}

static bool traffic_moved(void *arg)
{
    struct traffic *t = arg;
    uint64_t now[4];

    traffic_read(t, now);
    return memcmp(now, t->seen, sizeof(now)) != 0;
}

static void test_guard_udp_datagram_from_own_listener_gets_no_reply(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d);
    struct traffic t = {.d = d, .a = "a", .b = "b"};
    struct it_http r;
    uint16_t pa, pb, pc;
    char want[160];

    pa = it_listener_create_port(d, "{\"id\":\"a\",\"service\":\"echo\",\"transport\":\"udp\","
                                    "\"address\":\"127.0.0.1\",\"port\":0}");
    pb = it_listener_create_port(
        d, "{\"id\":\"b\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");
    pc = it_listener_create_port(d, "{\"id\":\"c\",\"service\":\"echo\",\"port\":0}");

    /* From B to A: answered, A's echo would go to B, and B's back to A, forever. */
    spoof_or_skip("127.0.0.1", pb, pa, "ping-pong");
    it_assert_metric_eventually(d, "a", "datagrams_dropped_loop", 1, IT_WAIT_MS);
    it_assert_metric_now(d, "a", "datagrams_in", 1);
    it_assert_metric_now(d, "a", "datagrams_dropped", 1);
    it_assert_metric_now(d, "a", "datagrams_out", 0);
    /* The exchange stopped within 2 packets: nothing moves over a while. */
    traffic_read(&t, t.seen);
    if (it_wait_until(QUIET_MS, traffic_moved, &t))
        fail_msg("datagrams still flow between a and b");
    assert_true(t.seen[0] + t.seen[2] <= 2);
    assert_int_equal(t.seen[2], 0);
    assert_int_equal(t.seen[3], 0);

    /* From another loopback address and from the port of a TCP listener: the same. */
    spoof_or_skip("127.0.0.2", pb, pa, "ping");
    spoof_or_skip("127.0.0.1", pc, pa, "ping");
    it_assert_metric_eventually(d, "a", "datagrams_dropped_loop", 3, IT_WAIT_MS);
    it_assert_metric_now(d, "a", "datagrams_out", 0);
    it_assert_metric_now(d, "b", "datagrams_in", 0);

    /* A client is answered as ever, and the counter is in the Prometheus text. */
    it_assert_udp_echo("127.0.0.1", pa, "hello", 5);
    it_assert_udp_echo("127.0.0.1", pb, "hello", 5);
    assert_int_equal(it_http_raw(d, "GET", "/metrics", NULL, 0, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    snprintf(want, sizeof(want),
             "sockserv_datagrams_dropped_loop_total{listener=\"a\",service=\"echo\","
             "transport=\"udp\"} 3\n");
    assert_non_null(strstr(r.body, want));
    it_http_fini(&r);
    assert_recovered(d, &base);
}

static void test_guard_udp_datagram_from_reflector_port_gets_no_reply(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d);
    static const uint16_t ports[] = {7, 19, 0, 123};
    int catcher[4];
    uint16_t pa, got;

    pa = it_listener_create_port(d, "{\"id\":\"a\",\"service\":\"echo\",\"transport\":\"udp\","
                                    "\"address\":\"127.0.0.1\",\"port\":0}");
    /* Where an answer would go, where the port can be had. */
    for (size_t i = 0; i < 4; i++)
        catcher[i] = ports[i] ? it_bind(SOCK_DGRAM, "127.0.0.1", ports[i], &got) : -1;
    for (size_t i = 0; i < 4; i++)
        spoof_or_skip("127.0.0.1", ports[i], pa, "reflect me");
    it_assert_metric_eventually(d, "a", "datagrams_dropped_reflection", 4, IT_WAIT_MS);
    it_assert_metric_now(d, "a", "datagrams_dropped", 4);
    it_assert_metric_now(d, "a", "datagrams_out", 0);
    it_assert_metric_now(d, "a", "datagrams_dropped_loop", 0);
    for (size_t i = 0; i < 4; i++) {
        if (catcher[i] < 0)
            continue;
        if (udp_something_arrives(catcher[i], i == 0 ? QUIET_MS : 0))
            fail_msg("an answer reached port %u", ports[i]);
        close(catcher[i]);
    }
    it_assert_udp_echo("127.0.0.1", pa, "client", 6);
    /* Counted after the reply is sent: the client may have it first. */
    it_assert_metric_eventually(d, "a", "datagrams_out", 1, IT_WAIT_MS);
    assert_recovered(d, &base);
}

static void test_guard_udp_source_over_budget_does_not_starve_others(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d);
    uint64_t out, dropped;
    unsigned got1, got2;
    int64_t t0, took;
    uint16_t port;
    int c1, c2;

    port = it_listener_create_port(d, "{\"id\":\"u\",\"service\":\"echo\",\"transport\":\"udp\","
                                      "\"address\":\"127.0.0.1\",\"port\":0,"
                                      "\"reply_rate_per_source\":20,\"reply_rate\":0}");
    c1 = udp_client("127.0.0.1", port);
    c2 = udp_client("127.0.0.2", port);
    t0 = it_now_ms();
    udp_send_n(c1, 60);
    /* The second source, right behind the first: its own budget is whole. */
    udp_send_n(c2, 10);
    wait_handled(d, "u", 70);
    took = it_now_ms() - t0;
    out = it_metric(d, "u", "datagrams_out");
    dropped = it_metric(d, "u", "datagrams_dropped_rate_source");
    got1 = udp_receive(c1, (unsigned)out, IT_IO_TIMEOUT_MS);
    got2 = udp_receive(c2, 10, IT_IO_TIMEOUT_MS);
    fprintf(stderr, "# 60 datagrams from one source in %lld ms: %u answered\n", (long long)took,
            got1);
    assert_int_equal(got2, 10);
    assert_int_equal(got1 + got2, out);
    /* About the budget: the burst (one second's worth), and what came back while they arrived. */
    assert_in_range(got1, 20, 20 + (unsigned)(20 * took / 1000) + 1);
    assert_int_equal(dropped, 60 - got1);
    it_assert_metric_now(d, "u", "datagrams_dropped", dropped);
    it_assert_metric_now(d, "u", "datagrams_dropped_rate", 0);
    close(c1);
    close(c2);
    assert_recovered(d, &base);
}

static void test_guard_udp_listener_budget_caps_every_source(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d);
    unsigned got1, got2;
    int64_t t0, took;
    uint64_t out;
    uint16_t port;
    int c1, c2;

    port = it_listener_create_port(d, "{\"id\":\"g\",\"service\":\"echo\",\"transport\":\"udp\","
                                      "\"address\":\"127.0.0.1\",\"port\":0,"
                                      "\"reply_rate_per_source\":0,\"reply_rate\":30}");
    c1 = udp_client("127.0.0.1", port);
    c2 = udp_client("127.0.0.2", port);
    t0 = it_now_ms();
    udp_send_n(c1, 40);
    udp_send_n(c2, 40);
    wait_handled(d, "g", 80);
    took = it_now_ms() - t0;
    out = it_metric(d, "g", "datagrams_out");
    got1 = udp_receive(c1, 40, 300);
    got2 = udp_receive(c2, 40, 300);
    assert_int_equal(got1 + got2, out);
    assert_in_range(out, 30, 30 + (unsigned)(30 * took / 1000) + 1);
    it_assert_metric_now(d, "g", "datagrams_dropped_rate", 80 - out);
    it_assert_metric_now(d, "g", "datagrams_dropped_rate_source", 0);
    close(c1);
    close(c2);
    assert_recovered(d, &base);
}

/* Sends n datagrams from src and returns how many were answered. */
static unsigned udp_round(const struct it_daemon *d, const char *id, uint16_t port, unsigned n)
{
    uint64_t before = it_metric(d, id, "datagrams_out") + it_metric(d, id, "datagrams_dropped");
    int fd = udp_client("127.0.0.1", port);
    unsigned got;

    udp_send_n(fd, n);
    wait_handled(d, id, before + n);
    got = udp_receive(fd, n, 300);
    close(fd);
    return got;
}

static void test_guard_udp_budget_patch_applies(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d);
    json_t *j;
    uint16_t port;
    unsigned got, got2;

    port = it_listener_create_port(d, "{\"id\":\"p\",\"service\":\"echo\",\"transport\":\"udp\","
                                      "\"address\":\"127.0.0.1\",\"port\":0,"
                                      "\"reply_rate_per_source\":10}");
    got = udp_round(d, "p", port, 30);
    assert_in_range(got, 10, 20);
    j = it_listener_patch(d, "p", "{\"reply_rate_per_source\":1000}");
    assert_int_equal(it_json_int(j, "reply_rate_per_source"), 1000);
    port = it_bound_port(j);
    json_decref(j);
    assert_int_equal(udp_round(d, "p", port, 30), 30);
    j = it_listener_patch(d, "p", "{\"reply_rate_per_source\":5,\"reply_rate\":null}");
    assert_int_equal(it_json_int(j, "reply_rate"), 10000);
    port = it_bound_port(j);
    json_decref(j);
    got2 = udp_round(d, "p", port, 30);
    assert_in_range(got2, 5, 10);
    it_assert_metric_now(d, "p", "datagrams_dropped_rate_source", (30 - got) + (30 - got2));
    assert_recovered(d, &base);
}

/* ---- TCP ---- */

/* A TCP connection from src (port 0) to 127.0.0.1:port; a non-blocking fd. */
static int tcp_connect_from(const char *src, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
    struct pollfd p;
    socklen_t elen = sizeof(int);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err = 0;

    assert_true(fd >= 0);
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    to.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &to.sin_addr), 1);
    if (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
        if (errno != EINPROGRESS)
            fail_msg("connect from %s to port %u: %s", src, port, strerror(errno));
        p = (struct pollfd){.fd = fd, .events = POLLOUT};
        assert_int_equal(poll(&p, 1, IT_IO_TIMEOUT_MS), 1);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen), 0);
        if (err)
            fail_msg("connect from %s to port %u: %s", src, port, strerror(err));
    }
    return fd;
}

/* One echo round trip on fd: 1 when echoed, 0 when the server closed it first. */
static int round_trip(int fd, const char *msg)
{
    int r = it_echo_round_trip(fd, msg, strlen(msg), IT_IO_TIMEOUT_MS);

    if (r == -EPIPE || r == -ECONNRESET)
        return 0;
    if (r < 0)
        fail_msg("no echo and no close within %d ms: %s", IT_IO_TIMEOUT_MS, strerror(-r));
    return 1;
}

/* A connection from src that was served one round trip (so it is accepted and counted). */
static int served_from(const char *src, uint16_t port, const char *msg)
{
    int fd = tcp_connect_from(src, port);

    if (!round_trip(fd, msg))
        fail_msg("a connection from %s to port %u was refused", src, port);
    return fd;
}

/* Whether a new connection from src is served (else: closed at once). */
static bool is_served_from(const char *src, uint16_t port)
{
    int fd = tcp_connect_from(src, port);
    bool served = round_trip(fd, "?") == 1;

    close(fd);
    return served;
}

/* A connection from src is accepted and closed at once, before any byte. */
static void assert_refused_from(const char *src, uint16_t port)
{
    int fd = tcp_connect_from(src, port);
    char *data = NULL;
    size_t len = 0;
    int r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &data, &len);

    close(fd);
    if ((r != 0 && r != -ECONNRESET) || len != 0)
        fail_msg("a connection from %s to port %u was not refused: %s, %zu bytes", src, port,
                 r ? strerror(-r) : "closed", len);
    free(data);
}

static void assert_still_echoes(int fd, const char *msg)
{
    if (!round_trip(fd, msg))
        fail_msg("an established connection was dropped");
}

struct served_arg {
    const char *src;
    uint16_t port;
};

static bool served_again(void *arg)
{
    struct served_arg *a = arg;

    return is_served_from(a->src, a->port);
}

/* connection_rate_per_source 1 (burst 1): a quick second connection is refused, another
 * source is not, and a second later the first is served again. */
static void check_connection_rate(const struct it_daemon *d, uint16_t port)
{
    struct served_arg again = {.src = "127.0.0.1", .port = port};
    unsigned served = 0, refused = 0;

    json_decref(it_listener_patch(
        d, "t", "{\"max_connections_per_source\":0,\"connection_rate_per_source\":1}"));
    for (unsigned i = 0; i < 4; i++) {
        if (is_served_from("127.0.0.1", port))
            served++;
        else
            refused++;
    }
    fprintf(stderr, "# 4 quick connections at 1 per second: %u served, %u refused\n", served,
            refused);
    assert_in_range(served, 1, 2);
    it_assert_metric_eventually(d, "t", "rejected_rate", refused, IT_WAIT_MS);
    assert_true(is_served_from("127.0.0.2", port));
    assert_true(it_wait_until(3000, served_again, &again));
}

/* A TCP listener's idle timeout changed live: a new silent connection is closed after it. */
static void check_idle_timeout(const struct it_daemon *d, uint16_t port)
{
    int64_t t0;
    int fd, r;

    json_decref(
        it_listener_patch(d, "t", "{\"connection_rate_per_source\":0,\"idle_timeout_ms\":300}"));
    fd = served_from("127.0.0.1", port, "idle");
    t0 = it_now_ms();
    r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, NULL, NULL);
    close(fd);
    if (r != 0 && r != -ECONNRESET)
        fail_msg("the idle connection was not closed: %s", strerror(-r));
    if (it_now_ms() - t0 < 250)
        fail_msg("closed after %lld ms, before the idle timeout of 300 ms",
                 (long long)(it_now_ms() - t0));
    it_assert_metric_eventually(d, "t", "idle_timeouts", 1, IT_WAIT_MS);
}

/* workers 6: a pool serves as many connections at once (the tests hold up to 4 and need one
 * more worker free to accept, and refuse). */
static uint16_t create_tcp(const struct it_daemon *d, const char *id, const char *model,
                           const char *extra)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":6%s}",
             id, model, extra);
    return it_listener_create_port(d, body);
}

static void run_per_source(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d);
    uint16_t port = create_tcp(d, "t", model, ",\"max_connections_per_source\":2");
    int a, b, e, x;

    a = served_from("127.0.0.1", port, "a1");
    b = served_from("127.0.0.1", port, "b1");
    assert_refused_from("127.0.0.1", port);
    it_assert_metric_eventually(d, "t", "rejected_per_source", 1, IT_WAIT_MS);
    it_assert_metric_now(d, "t", "connections_rejected", 1);
    it_assert_metric_now(d, "t", "rejected_rate", 0);
    it_assert_metric_now(d, "t", "rejected_max_connections", 0);
    /* Another source has its own count. */
    x = served_from("127.0.0.2", port, "x1");

    /* Raised live: the open connections go on, and count. */
    json_decref(it_listener_patch(d, "t", "{\"max_connections_per_source\":3}"));
    assert_still_echoes(a, "a2");
    assert_still_echoes(b, "b2");
    e = served_from("127.0.0.1", port, "e1");
    assert_refused_from("127.0.0.1", port);
    it_assert_metric_eventually(d, "t", "rejected_per_source", 2, IT_WAIT_MS);

    /* Lowered live: nothing open is cut; new ones wait until enough have closed. */
    json_decref(it_listener_patch(d, "t", "{\"max_connections_per_source\":1}"));
    assert_still_echoes(a, "a3");
    assert_still_echoes(b, "b3");
    assert_still_echoes(e, "e2");
    assert_still_echoes(x, "x2");
    assert_refused_from("127.0.0.1", port);
    it_assert_metric_eventually(d, "t", "rejected_per_source", 3, IT_WAIT_MS);
    close(a);
    close(b);
    close(e);
    close(x);
    it_assert_metric_eventually(d, "t", "connections_active", 0, IT_WAIT_MS);
    close(served_from("127.0.0.1", port, "again"));
    it_assert_metric_eventually(d, "t", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, "t", "connections_rejected", 3);
    it_assert_metric_now(d, "t", "errors", 0);

    check_connection_rate(d, port);
    check_idle_timeout(d, port);
    assert_recovered(d, &base);
}

/* sequential serves one connection at a time, so a source never holds two of one runner; the
 * limit counts across a live change, though: the old runner's connection holds the place. */
static void test_guard_tcp_sequential_per_source_limits_refuse_and_follow_patches(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d);
    uint16_t port = create_tcp(d, "t", "sequential", ",\"max_connections_per_source\":2");
    int a, e;

    a = served_from("127.0.0.1", port, "a1");
    json_decref(it_listener_patch(d, "t", "{\"max_connections_per_source\":1}"));
    assert_still_echoes(a, "a2");
    assert_refused_from("127.0.0.1", port);
    it_assert_metric_eventually(d, "t", "rejected_per_source", 1, IT_WAIT_MS);
    close(served_from("127.0.0.2", port, "x1"));
    json_decref(it_listener_patch(d, "t", "{\"max_connections_per_source\":2}"));
    assert_still_echoes(a, "a3");
    e = served_from("127.0.0.1", port, "e1");
    close(e);
    close(a);
    it_assert_metric_eventually(d, "t", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, "t", "connections_rejected", 1);
    it_assert_metric_now(d, "t", "errors", 0);

    check_connection_rate(d, port);
    check_idle_timeout(d, port);
    assert_recovered(d, &base);
}

static void test_guard_tcp_thread_per_source_limits_refuse_and_follow_patches(void **state)
{
    run_per_source(state, "thread");
}

static void test_guard_tcp_pool_per_source_limits_refuse_and_follow_patches(void **state)
{
    run_per_source(state, "pool");
}

static void test_guard_tcp_event_per_source_limits_refuse_and_follow_patches(void **state)
{
    run_per_source(state, "event");
}

static void test_guard_tcp_uring_per_source_limits_refuse_and_follow_patches(void **state)
{
    run_per_source(state, "uring");
}

static void test_guard_tcp_process_per_source_limits_refuse_and_follow_patches(void **state)
{
    run_per_source(state, "process");
}

/* ---- out of fds ---- */

static void set_nofile(pid_t pid, rlim_t soft, struct rlimit *ret_old)
{
    struct rlimit old, lim;

    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, NULL, &old), 0);
    lim = (struct rlimit){.rlim_cur = soft, .rlim_max = old.rlim_max};
    if (prlimit(pid, RLIMIT_NOFILE, &lim, NULL) < 0)
        fail_msg("prlimit(%d, RLIMIT_NOFILE, %llu): %s", (int)pid, (unsigned long long)soft,
                 strerror(errno));
    if (ret_old)
        *ret_old = old;
}

/* The fds the daemon keeps filled: its limit, and connections to a listener that take them. */
struct fds_fill {
    pid_t pid;
    int limit;      /* RLIMIT_NOFILE set on the daemon */
    uint16_t fport; /* the listener whose connections take the fds */
    int fd[MAX_FILL];
    unsigned n;
};

static bool is_out_of_fds(void *arg)
{
    const struct fds_fill *f = arg;

    return it_proc_fds(f->pid) >= f->limit;
}

/*
 * Until the daemon holds every fd its limit allows: connections to f->fport, each served and
 * kept, take the ones left, until one is refused. A refused connection is closed before its
 * listener takes its reserve fd back, and a connection made in that moment would take the
 * reserve's place (leaving that listener unable to refuse): so no connection is made until the
 * daemon's fds settle, and the daemon is out of them when /proc says so, not when a refusal
 * suggests it (an fd can also come free late: the API closing its last connection).
 */
static void exhaust_fds(struct fds_fill *f)
{
    for (unsigned round = 0; round < 8; round++) {
        if (it_wait_until(IT_WAIT_MS / 10, is_out_of_fds, f))
            return;
        for (;;) {
            int fd;

            if (f->n == MAX_FILL)
                fail_msg("%u connections and the daemon still had fds", f->n);
            fd = tcp_connect_from("127.0.0.1", f->fport);
            if (!round_trip(fd, "f")) {
                close(fd);
                break;
            }
            f->fd[f->n++] = fd;
        }
    }
    fail_msg("the daemon holds %d fds of %d after refusing", it_proc_fds(f->pid), f->limit);
}

/*
 * With the daemon out of fds, a connection to port is refused. Should one be served all the
 * same (an fd came free between two checks), it is ended, and once the daemon has closed its
 * side (its EOF, sent after its close()) the fds are taken again and another one tries.
 */
static void assert_refused_out_of_fds(uint16_t port, struct fds_fill *f)
{
    for (unsigned i = 0; i < 4; i++) {
        char *rest = NULL;
        size_t len = 0;
        int fd;

        exhaust_fds(f);
        fd = tcp_connect_from("127.0.0.1", port);
        if (!round_trip(fd, "x")) {
            close(fd);
            return;
        }
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        assert_int_equal(it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &rest, &len), 0);
        free(rest);
        close(fd);
    }
    fail_msg("port %u: 4 connections served while the daemon was out of fds", port);
}

static void run_out_of_fds(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d), c;
    struct served_arg again;
    struct rlimit old;
    unsigned long long t0;
    struct fds_fill f = {.pid = d->pid};
    uint16_t port;

    f.fport = create_tcp(d, "fill", "thread", ",\"max_connections\":100000");
    port = create_tcp(d, "t", model, "");
    assert_true(is_served_from("127.0.0.1", port));
    it_assert_metric_eventually(d, "t", "connections_active", 0, IT_WAIT_MS);

    /* A few fds left: connections to another listener take them all. No API call until they
     * are given back (the API needs fds too). */
    it_resources_settle(d, &c);
    f.limit = highest_fd(d->pid) + 1 + FREE_FDS;
    set_nofile(d->pid, (rlim_t)f.limit, &old);

    /* Refused, not left waiting, and without spinning. */
    assert_refused_out_of_fds(port, &f);
    t0 = it_cpu_ticks(d->pid);
    assert_refused_out_of_fds(port, &f);
    (void)poll(NULL, 0, CPU_WINDOW_MS); /* a measuring window, not a synchronisation */
    if (it_cpu_ticks(d->pid) - t0 > CPU_MAX_TICKS)
        fail_msg("%s: the daemon used %llu ticks of CPU in %d ms while out of fds", model,
                 it_cpu_ticks(d->pid) - t0, CPU_WINDOW_MS);
    assert_int_equal(kill(d->pid, 0), 0);

    /* fds given back: served again. */
    for (unsigned i = 0; i < f.n; i++)
        close(f.fd[i]);
    again = (struct served_arg){.src = "127.0.0.1", .port = port};
    if (!it_wait_until(IT_WAIT_MS, served_again, &again))
        fail_msg("%s: not served again once fds were given back", model);
    set_nofile(d->pid, old.rlim_cur, NULL);

    fprintf(stderr, "# %s: %u connections took the fds left; refused: %llu\n", model, f.n,
            (unsigned long long)it_metric(d, "t", "rejected_resources"));
    assert_true(it_metric(d, "t", "rejected_resources") >= 2);
    assert_int_equal(it_metric(d, "t", "connections_rejected"),
                     it_metric(d, "t", "rejected_resources"));
    assert_true(it_metric(d, "fill", "rejected_resources") >= 1);
    it_assert_metric_eventually(d, "t", "connections_active", 0, IT_WAIT_MS);
    assert_recovered(d, &base);
}

/* Waits for the server to close every connection of fds[0..n), without a byte, within
 * IT_IO_TIMEOUT_MS for them all; fails naming the first one left open (waiting in a backlog, or
 * accepted and served). Closes them. */
static void assert_all_refused(int *fds, unsigned n, const char *what)
{
    int64_t deadline = it_now_ms() + IT_IO_TIMEOUT_MS;
    unsigned bad = n;
    int bad_r = 0;

    for (unsigned i = 0; i < n; i++) {
        int64_t left = deadline - it_now_ms();
        char *data = NULL;
        size_t len = 0;
        int r = it_read_to_eof(fds[i], left > 0 ? (int)left : 0, &data, &len);

        if (bad == n && ((r != 0 && r != -ECONNRESET) || len != 0)) {
            bad = i;
            bad_r = r;
        }
        free(data);
        close(fds[i]);
    }
    if (bad < n)
        fail_msg("%s: connection %u of %u was not refused: %s", what, bad + 1, n,
                 bad_r ? strerror(-bad_r) : "bytes came");
}

/* served_again(), counting the connections refused before one is served. */
struct served_count {
    struct served_arg a;
    unsigned refused;
};

static bool served_again_counted(void *arg)
{
    struct served_count *c = arg;

    if (is_served_from(c->a.src, c->a.port))
        return true;
    c->refused++;
    return false;
}

#define BURST 16
#define BURST_ROUNDS 6
#define IN_A_ROW 32

/*
 * A listener with two accepting threads (two loops on two sockets for `event`, two threads on
 * one for `pool`) while the daemon is out of fds: bursts of connections, which both threads
 * refuse at once, and connections made one right after the other's refusal, which the thread
 * that did not refuse it may take; every one is refused at once, none waits in a backlog or is
 * served. Once fds are given back, served again.
 */
static void run_out_of_fds_two_threads(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base = baseline(d), c;
    struct served_count again;
    struct rlimit old;
    struct fds_fill f = {.pid = d->pid};
    int fds[BURST > IN_A_ROW ? BURST : IN_A_ROW];
    char body[256];
    uint16_t port;

    f.fport = create_tcp(d, "fill", "thread", ",\"max_connections\":100000");
    snprintf(body, sizeof(body),
             "{\"id\":\"t\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":2}",
             model);
    port = it_listener_create_port(d, body);
    assert_true(is_served_from("127.0.0.1", port));
    it_assert_metric_eventually(d, "t", "connections_active", 0, IT_WAIT_MS);

    it_resources_settle(d, &c);
    f.limit = highest_fd(d->pid) + 1 + FREE_FDS;
    set_nofile(d->pid, (rlim_t)f.limit, &old);

    for (unsigned round = 0; round < BURST_ROUNDS; round++) {
        exhaust_fds(&f);
        for (unsigned i = 0; i < BURST; i++)
            fds[i] = tcp_connect_from("127.0.0.1", port);
        assert_all_refused(fds, BURST, "a burst");
    }
    exhaust_fds(&f);
    for (unsigned i = 0; i < IN_A_ROW; i++) {
        fds[i] = tcp_connect_from("127.0.0.1", port);
        assert_all_refused(&fds[i], 1, "in a row");
    }

    for (unsigned i = 0; i < f.n; i++)
        close(f.fd[i]);
    /* (Refused until the daemon has closed enough of them.) */
    again = (struct served_count){.a = {.src = "127.0.0.1", .port = port}};
    if (!it_wait_until(IT_WAIT_MS, served_again_counted, &again))
        fail_msg("%s: not served again once fds were given back", model);
    set_nofile(d->pid, old.rlim_cur, NULL);

    it_assert_metric_eventually(d, "t", "rejected_resources",
                                BURST_ROUNDS * BURST + IN_A_ROW + again.refused, IT_WAIT_MS);
    it_assert_metric_now(d, "t", "connections_rejected",
                         BURST_ROUNDS * BURST + IN_A_ROW + again.refused);
    it_assert_metric_eventually(d, "t", "connections_active", 0, IT_WAIT_MS);
    assert_recovered(d, &base);
}

static void test_guard_tcp_event_two_loops_out_of_fds_refuse_every_connection(void **state)
{
    run_out_of_fds_two_threads(state, "event");
}

static void test_guard_tcp_uring_two_loops_out_of_fds_refuse_every_connection(void **state)
{
    run_out_of_fds_two_threads(state, "uring");
}

static void test_guard_tcp_pool_two_workers_out_of_fds_refuse_every_connection(void **state)
{
    run_out_of_fds_two_threads(state, "pool");
}

static void test_guard_tcp_sequential_out_of_fds_refuses_and_recovers(void **state)
{
    run_out_of_fds(state, "sequential");
}

static void test_guard_tcp_thread_out_of_fds_refuses_and_recovers(void **state)
{
    run_out_of_fds(state, "thread");
}

static void test_guard_tcp_pool_out_of_fds_refuses_and_recovers(void **state)
{
    run_out_of_fds(state, "pool");
}

static void test_guard_tcp_event_out_of_fds_refuses_and_recovers(void **state)
{
    run_out_of_fds(state, "event");
}

static void test_guard_tcp_uring_out_of_fds_refuses_and_recovers(void **state)
{
    run_out_of_fds(state, "uring");
}

static void test_guard_tcp_process_out_of_fds_refuses_and_recovers(void **state)
{
    run_out_of_fds(state, "process");
}

/* ---- the fields ---- */

static void test_guard_limits_have_defaults_are_checked_and_patchable(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    static const struct {
        const char *body;
        const char *field;
    } bad[] = {
        {"\"max_connections_per_source\":-1", "max_connections_per_source"},
        {"\"max_connections_per_source\":\"2\"", "max_connections_per_source"},
        {"\"connection_rate_per_source\":10000001", "connection_rate_per_source"},
        {"\"reply_rate_per_source\":1.5", "reply_rate_per_source"},
        {"\"reply_rate\":null", "reply_rate"},
        {"\"reply_rate\":true", "reply_rate"},
    };
    json_t *j;

    j = it_listener_create(d, "{\"id\":\"t\",\"service\":\"echo\",\"port\":0}");
    assert_int_equal(it_json_int(j, "max_connections_per_source"), 0);
    assert_int_equal(it_json_int(j, "connection_rate_per_source"), 0);
    assert_int_equal(it_json_int(j, "reply_rate_per_source"), 100);
    assert_int_equal(it_json_int(j, "reply_rate"), 10000);
    json_decref(j);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[256];
        struct it_http r;

        snprintf(body, sizeof(body), "{\"service\":\"echo\",\"transport\":\"udp\",\"port\":0,%s}",
                 bad[i].body);
        it_http(d, "POST", "/api/v1/listeners", body, &r);
        it_assert_problem(&r, 400, bad[i].field);
        it_http_fini(&r);
    }
    j = it_listener_patch(d, "t",
                          "{\"max_connections_per_source\":5,\"connection_rate_per_source\":7,"
                          "\"reply_rate_per_source\":0,\"reply_rate\":0}");
    assert_int_equal(it_json_int(j, "max_connections_per_source"), 5);
    assert_int_equal(it_json_int(j, "connection_rate_per_source"), 7);
    assert_int_equal(it_json_int(j, "reply_rate_per_source"), 0);
    assert_int_equal(it_json_int(j, "reply_rate"), 0);
    json_decref(j);
    j = it_listener_patch(d, "t", "{\"max_connections_per_source\":null,\"reply_rate\":null}");
    assert_int_equal(it_json_int(j, "max_connections_per_source"), 0);
    assert_int_equal(it_json_int(j, "reply_rate"), 10000);
    json_decref(j);
}

#define T(f) cmocka_unit_test_setup_teardown(f, it_fixture_setup, it_fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_guard_udp_datagram_from_own_listener_gets_no_reply),
        T(test_guard_udp_datagram_from_reflector_port_gets_no_reply),
        T(test_guard_udp_source_over_budget_does_not_starve_others),
        T(test_guard_udp_listener_budget_caps_every_source),
        T(test_guard_udp_budget_patch_applies),
        T(test_guard_tcp_sequential_per_source_limits_refuse_and_follow_patches),
        T(test_guard_tcp_thread_per_source_limits_refuse_and_follow_patches),
        T(test_guard_tcp_pool_per_source_limits_refuse_and_follow_patches),
        T(test_guard_tcp_event_per_source_limits_refuse_and_follow_patches),
        T(test_guard_tcp_uring_per_source_limits_refuse_and_follow_patches),
        T(test_guard_tcp_process_per_source_limits_refuse_and_follow_patches),
        T(test_guard_tcp_sequential_out_of_fds_refuses_and_recovers),
        T(test_guard_tcp_thread_out_of_fds_refuses_and_recovers),
        T(test_guard_tcp_pool_out_of_fds_refuses_and_recovers),
        T(test_guard_tcp_event_out_of_fds_refuses_and_recovers),
        T(test_guard_tcp_uring_out_of_fds_refuses_and_recovers),
        T(test_guard_tcp_process_out_of_fds_refuses_and_recovers),
        T(test_guard_tcp_event_two_loops_out_of_fds_refuse_every_connection),
        T(test_guard_tcp_uring_two_loops_out_of_fds_refuse_every_connection),
        T(test_guard_tcp_pool_two_workers_out_of_fds_refuse_every_connection),
        T(test_guard_limits_have_defaults_are_checked_and_patchable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
