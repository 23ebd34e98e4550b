/*
 * GET /metrics, the Prometheus exposition, after real echo traffic over TCP and UDP: its content
 * type, the exact byte and datagram counts, the service time histogram's count against the
 * round trips made, and promtool's verdict on the whole text.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define PROMTOOL "/usr/bin/promtool"
#define TCP_ROUND_TRIPS 7
#define UDP_ROUND_TRIPS 5

/* GET /metrics, asserting 200; *ret holds the answer (it_http_fini() it). */
static void get_metrics(const struct it_daemon *d, struct it_http *ret)
{
    assert_int_equal(it_http_raw(d, "GET", "/metrics", NULL, 0, NULL, ret), 0);
    if (ret->status != 200)
        fail_msg("GET /metrics: %ld %s", ret->status, ret->body);
}

/*
 * The value of the sample whose name and labels are exactly series ("name{a=\"b\"}"), or -1
 * when the text has no such line.
 */
static long long sample_value(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');

        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtoll(line + n + 1, NULL, 10);
        line = end ? end + 1 : NULL;
    }
    return -1;
}

static long long series_value(const char *text, const char *name, const char *id,
                              const char *transport, const char *le)
{
    char series[256];

    if (le)
        (void)snprintf(series, sizeof(series),
                       "%s{listener=\"%s\",service=\"echo\",transport=\"%s\",le=\"%s\"}", name, id,
                       transport, le);
    else
        (void)snprintf(series, sizeof(series),
                       "%s{listener=\"%s\",service=\"echo\",transport=\"%s\"}", name, id,
                       transport);
    return sample_value(text, series);
}

static void assert_series(const char *text, const char *name, const char *id, const char *transport,
                          long long want)
{
    long long got = series_value(text, name, id, transport, NULL);

    if (got != want)
        fail_msg("%s of %s: %lld, want %lld\n%s", name, id, got, want, text);
}

struct count_wait {
    const struct it_daemon *d;
    const char *id;
    const char *transport;
    long long want;
    long long last;
};

static bool histogram_count_reached(void *arg)
{
    struct count_wait *w = arg;
    struct it_http r;

    get_metrics(w->d, &r);
    w->last =
        series_value(r.body, "sockserv_service_time_seconds_count", w->id, w->transport, NULL);
    it_http_fini(&r);
    return w->last >= w->want;
}

/* Echo traffic: TCP_ROUND_TRIPS round trips of 10 bytes on one TCP connection, and
 * UDP_ROUND_TRIPS datagrams of 6 bytes. */
static void make_traffic(const struct it_daemon *d, uint16_t tcp_port, uint16_t udp_port)
{
    char buf[16];
    int fd = it_tcp_connect("127.0.0.1", tcp_port, IT_IO_TIMEOUT_MS);

    assert_true(fd >= 0);
    for (int i = 0; i < TCP_ROUND_TRIPS; i++) {
        char msg[11];

        (void)snprintf(msg, sizeof(msg), "round-%04d", i);
        assert_int_equal(it_send_all(fd, msg, 10, IT_IO_TIMEOUT_MS), 0);
        assert_int_equal(it_recv_exact(fd, buf, 10, IT_IO_TIMEOUT_MS), 0);
        assert_memory_equal(buf, msg, 10);
    }
    close(fd);
    for (int i = 0; i < UDP_ROUND_TRIPS; i++)
        it_assert_udp_echo("127.0.0.1", udp_port, "dgram!", 6);
    it_assert_metric_eventually(d, "t1", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_eventually(d, "u1", "datagrams_out", UDP_ROUND_TRIPS, IT_WAIT_MS);
}

static void test_prometheus_after_echo_traffic_counts_exact_bytes_and_round_trips(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct count_wait w = {.d = d};
    struct it_http r;
    uint16_t tcp_port, udp_port;

    tcp_port = it_listener_create_port(d, "{\"id\":\"t1\",\"service\":\"echo\",\"port\":0}");
    udp_port = it_listener_create_port(
        d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");
    make_traffic(d, tcp_port, udp_port);

    /* The runners record one service time per answer, after sending it: poll for them. */
    w.id = "t1";
    w.transport = "tcp";
    w.want = TCP_ROUND_TRIPS;
    if (!it_wait_until(IT_WAIT_MS, histogram_count_reached, &w) || w.last != TCP_ROUND_TRIPS)
        fail_msg("t1's histogram count is %lld, want %d round trips", w.last, TCP_ROUND_TRIPS);

    w.id = "u1";
    w.transport = "udp";
    w.want = UDP_ROUND_TRIPS;
    if (!it_wait_until(IT_WAIT_MS, histogram_count_reached, &w) || w.last != UDP_ROUND_TRIPS)
        fail_msg("u1's histogram count is %lld, want %d round trips", w.last, UDP_ROUND_TRIPS);

    get_metrics(d, &r);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_series(r.body, "sockserv_bytes_in_total", "t1", "tcp", 10 * TCP_ROUND_TRIPS);
    assert_series(r.body, "sockserv_bytes_out_total", "t1", "tcp", 10 * TCP_ROUND_TRIPS);
    assert_series(r.body, "sockserv_connections_total", "t1", "tcp", 1);
    assert_series(r.body, "sockserv_connections_active", "t1", "tcp", 0);
    assert_series(r.body, "sockserv_listener_up", "t1", "tcp", 1);
    assert_series(r.body, "sockserv_errors_total", "t1", "tcp", 0);
    assert_series(r.body, "sockserv_bytes_in_total", "u1", "udp", 6 * UDP_ROUND_TRIPS);
    assert_series(r.body, "sockserv_bytes_out_total", "u1", "udp", 6 * UDP_ROUND_TRIPS);
    assert_series(r.body, "sockserv_datagrams_in_total", "u1", "udp", UDP_ROUND_TRIPS);
    assert_series(r.body, "sockserv_datagrams_out_total", "u1", "udp", UDP_ROUND_TRIPS);
    assert_series(r.body, "sockserv_service_time_seconds_count", "t1", "tcp", TCP_ROUND_TRIPS);
    assert_series(r.body, "sockserv_service_time_seconds_count", "u1", "udp", UDP_ROUND_TRIPS);
    if (series_value(r.body, "sockserv_service_time_seconds_bucket", "t1", "tcp", "+Inf") !=
        TCP_ROUND_TRIPS)
        fail_msg("t1's +Inf bucket is not the count\n%s", r.body);
    assert_non_null(strstr(r.body, "\nsockserv_build_info{version=\""));
    assert_non_null(strstr(r.body, "\nsockserv_uptime_seconds "));
    it_http_fini(&r);
}

static void test_prometheus_stopped_listener_is_down(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;

    json_decref(it_listener_create(d, "{\"id\":\"s1\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/s1/stop", NULL, 200));
    get_metrics(d, &r);
    assert_series(r.body, "sockserv_listener_up", "s1", "tcp", 0);
    it_http_fini(&r);
}

/* Runs promtool check metrics with text on its standard input; asserts it found no problem. */
static void assert_promtool_accepts(const char *text, size_t len)
{
    const char *const argv[] = {PROMTOOL, "check", "metrics", NULL};
    struct it_proc p;

    it_run(argv, text, len, 30000, &p);
    if (it_proc_exit_code(&p) != 0 || p.out_len > 0)
        fail_msg("promtool check metrics: %s\nstdout:\n%s\nstderr:\n%s\ntext:\n%s",
                 it_status_str(p.status), p.out, p.err, text);
    it_proc_fini(&p);
}

static void test_prometheus_promtool_accepts_the_exposition(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;
    uint16_t tcp_port, udp_port;

    if (access(PROMTOOL, X_OK) != 0) {
        print_message("skipped: " PROMTOOL " is absent (Debian package prometheus)\n");
        skip();
    }
    /* Also a backup and a date listener: their service counters are other families. */
    tcp_port = it_listener_create_port(d, "{\"id\":\"t1\",\"service\":\"echo\",\"port\":0}");
    udp_port = it_listener_create_port(
        d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");
    json_decref(it_listener_create(d, "{\"id\":\"b1\",\"service\":\"backup\",\"port\":0}"));
    json_decref(it_listener_create(d, "{\"id\":\"d1\",\"service\":\"date\",\"port\":0}"));
    make_traffic(d, tcp_port, udp_port);
    get_metrics(d, &r);
    assert_promtool_accepts(r.body, r.body_len);
    it_http_fini(&r);
}

/* The checker itself: promtool reports a broken exposition, so the test above can fail. */
static void test_prometheus_promtool_rejects_a_counter_without_total(void **state)
{
    static const char bad[] = "# HELP x_bytes x\n# TYPE x_bytes counter\nx_bytes 1\n";
    const char *const argv[] = {PROMTOOL, "check", "metrics", NULL};
    struct it_proc p;

    (void)state;
    if (access(PROMTOOL, X_OK) != 0) {
        print_message("skipped: " PROMTOOL " is absent (Debian package prometheus)\n");
        skip();
    }
    it_run(argv, bad, sizeof(bad) - 1, 30000, &p);
    assert_true(it_proc_exit_code(&p) != 0 || p.out_len > 0);
    it_proc_fini(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_prometheus_after_echo_traffic_counts_exact_bytes_and_round_trips, it_fixture_setup,
            it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_stopped_listener_is_down, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_promtool_accepts_the_exposition,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test(test_prometheus_promtool_rejects_a_counter_without_total),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
