/*
 * What is particular to the `uring` model: many connections on one ring, waits that ask for
 * many inputs at once and still answer a lone client at once, a slow reader whose
 * answer waits in order (1 MiB echoed back byte for byte), more input at once than the ring's
 * provided buffers hold, a client that resets while its answer is being sent; a daemon where
 * io_uring is denied (a seccomp filter) refuses the model with a 400 saying why; the systemd
 * unit allows the io_uring system calls.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "harness.h"

#define MIB (1024 * 1024)

/* An echo listener "u" under uring with one loop (one ring). Returns its port. */
static uint16_t create_uring_echo(const struct it_daemon *d, const char *extra)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"id\":\"u\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"uring\",\"workers\":1,\"max_connections\":5000%s}",
             extra);
    return it_listener_create_port(d, body);
}

static void test_uring_many_connections_on_one_ring_each_echoed(void **state)
{
    enum { N = 400 };
    const struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create_uring_echo(d, "");
    static int fds[N];

    for (int i = 0; i < N; i++) {
        fds[i] = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
        assert_true(fds[i] >= 0);
    }
    /* Every connection sends before any reads: the ring serves them all at once. */
    for (int i = 0; i < N; i++) {
        char msg[32];

        snprintf(msg, sizeof(msg), "conn %d\n", i);
        assert_int_equal(it_send_all(fds[i], msg, strlen(msg), IT_IO_TIMEOUT_MS), 0);
    }
    for (int i = 0; i < N; i++) {
        char want[32], got[32] = {0};

        snprintf(want, sizeof(want), "conn %d\n", i);
        assert_int_equal(it_recv_exact(fds[i], got, strlen(want), IT_IO_TIMEOUT_MS), 0);
        assert_string_equal(got, want);
    }
    it_assert_metric_eventually(d, "u", "connections_active", N, IT_WAIT_MS);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    it_assert_metric_eventually(d, "u", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_eventually(d, "u", "connections_total", N, IT_WAIT_MS);
    assert_int_equal(it_metric(d, "u", "errors"), 0);
}

/* Rounds in which 64 connections all send before any reads, so that the loop's waits ask for
 * many inputs at once (core/batch.h); then one connection alone, whose every message must still
 * be answered at once: the wait's window runs out, and it does not wait for inputs that will
 * not come (the next timer is the idle timeout, 30 s away). */
static void test_uring_batched_waits_still_answer_a_lone_client(void **state)
{
    enum { N = 64, ROUNDS = 60, LONE = 50 };
    const struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create_uring_echo(d, "");
    int fds[N];

    for (int i = 0; i < N; i++)
        fds[i] = it_tcp_connect_ok(port);
    for (int r = 0; r < ROUNDS; r++) {
        char msg[32], got[32];

        for (int i = 0; i < N; i++) {
            snprintf(msg, sizeof(msg), "c%02d r%02d\n", i, r);
            it_send_str_ok(fds[i], msg);
        }
        for (int i = 0; i < N; i++) {
            snprintf(msg, sizeof(msg), "c%02d r%02d\n", i, r);
            memset(got, 0, sizeof(got));
            assert_int_equal(it_recv_exact(fds[i], got, strlen(msg), IT_IO_TIMEOUT_MS), 0);
            assert_string_equal(got, msg);
        }
    }
    for (int m = 0; m < LONE; m++) {
        char msg[32];

        snprintf(msg, sizeof(msg), "lone %02d\n", m);
        assert_int_equal(it_echo_round_trip(fds[m % N], msg, strlen(msg), IT_IO_TIMEOUT_MS), 0);
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
    it_assert_metric_eventually(d, "u", "connections_active", 0, IT_WAIT_MS);
    assert_int_equal(it_metric(d, "u", "errors"), 0);
}

struct sender {
    int fd;
    const uint8_t *data;
    size_t len;
    int r;
};

static void *send_main(void *arg)
{
    struct sender *s = arg;

    s->r = it_send_all(s->fd, s->data, s->len, 60000);
    return NULL;
}

/* A client that sends 1 MiB and reads its echo slowly, in small reads with pauses (the pace of
 * a slow reader, not a synchronisation): the server's answer waits, and comes back in order. */
static void test_uring_slow_reader_gets_1mib_back_byte_exact(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create_uring_echo(d, "");
    size_t len = MIB, got = 0;
    uint8_t *data = it_pattern(len, 21), *back = malloc(len);
    struct sender s = {.data = data, .len = len};
    int rcvbuf = 4096;
    pthread_t t;

    assert_non_null(back);
    s.fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
    assert_true(s.fd >= 0);
    assert_int_equal(setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    assert_int_equal(pthread_create(&t, NULL, send_main, &s), 0);
    while (got < len) {
        struct pollfd p = {.fd = s.fd, .events = POLLIN};
        ssize_t n;

        assert_true(poll(&p, 1, IT_IO_TIMEOUT_MS) == 1);
        n = recv(s.fd, back + got, len - got < 2048 ? len - got : 2048, 0);
        if (n < 0 && errno == EAGAIN)
            continue;
        assert_true(n > 0);
        got += (size_t)n;
        if (got % (64 * 1024) < 2048)
            (void)poll(NULL, 0, 2); /* the reader's pace */
    }
    pthread_join(t, NULL);
    assert_int_equal(s.r, 0);
    assert_memory_equal(back, data, len);
    close(s.fd);
    it_assert_metric_eventually(d, "u", "connections_active", 0, IT_WAIT_MS);
    assert_int_equal(it_metric(d, "u", "bytes_in"), len);
    assert_int_equal(it_metric(d, "u", "bytes_out"), len);
    assert_int_equal(it_metric(d, "u", "errors"), 0);
    free(data);
    free(back);
}

/* More input at once than the ring's provided buffers hold (600 connections x 32 KiB against
 * 512 buffers): the receives that find none end and start again; everything is echoed. */
static void test_uring_provided_buffers_exhausted_all_echoed(void **state)
{
    enum { N = 600, LEN = 32 * 1024 };
    const struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create_uring_echo(d, "");
    static int fds[N];
    uint8_t *data = it_pattern(LEN, 5), *back = malloc(LEN);

    assert_non_null(back);
    for (int i = 0; i < N; i++) {
        fds[i] = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
        assert_true(fds[i] >= 0);
    }
    it_assert_metric_eventually(d, "u", "connections_active", N, IT_WAIT_MS);
    for (int i = 0; i < N; i++)
        assert_int_equal(it_send_all(fds[i], data, LEN, IT_IO_TIMEOUT_MS), 0);
    for (int i = 0; i < N; i++) {
        memset(back, 0, LEN);
        assert_int_equal(it_recv_exact(fds[i], back, LEN, IT_IO_TIMEOUT_MS), 0);
        assert_memory_equal(back, data, LEN);
        close(fds[i]);
    }
    it_assert_metric_eventually(d, "u", "connections_active", 0, IT_WAIT_MS);
    assert_int_equal(it_metric(d, "u", "bytes_out"), (uint64_t)N * LEN);
    assert_int_equal(it_metric(d, "u", "errors"), 0);
    free(data);
    free(back);
}

/* A client sends 4 MiB without reading (the answer waits, the input backs up) and resets: the
 * connection ends, uncounted as an error, and the listener serves the next one. */
static void test_uring_client_reset_mid_send_connection_ends(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create_uring_echo(d, "");
    size_t len = 4 * MIB, sent = 0;
    uint8_t *data = it_pattern(len, 9);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int64_t deadline = it_now_ms() + IT_IO_TIMEOUT_MS;
    int fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);

    assert_true(fd >= 0);
    /* Until the server stops reading (its answer cannot leave). */
    while (sent < len) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        ssize_t n;

        if (poll(&p, 1, 300) == 0)
            break;
        n = send(fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN)
            continue;
        assert_true(n > 0);
        sent += (size_t)n;
        assert_true(it_now_ms() < deadline);
    }
    assert_true(sent > 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
    it_assert_metric_eventually(d, "u", "connections_active", 0, IT_WAIT_MS);
    assert_int_equal(it_metric(d, "u", "errors"), 0);
    it_assert_tcp_echo("127.0.0.1", port, "after the reset\n", 16);
    it_assert_daemon_alive(d);
    free(data);
}

/* Under a seccomp filter that denies io_uring_setup(2), creating or changing a listener to
 * uring is refused with a 400 naming the model and saying why; other models run. */
static void test_uring_denied_by_seccomp_is_400_saying_why(void **state)
{
    struct it_fixture *f = *state;
    struct it_daemon d = {0};
    struct it_http r;
    const char *detail;
    json_t *l;

    it_daemon_start_ok(&d, &(struct it_daemon_opts){.dir = f->dir, .deny_io_uring = true});
    it_http(&d, "POST", "/api/v1/listeners",
            "{\"id\":\"u\",\"service\":\"echo\",\"port\":0,\"model\":\"uring\"}", &r);
    it_assert_problem(&r, 400, "model");
    detail = it_json_str(r.json, "detail");
    if (!strstr(detail, "model: 'uring' is not available: io_uring_setup: Operation not permitted"))
        fail_msg("detail: %s", detail);
    it_http_fini(&r);
    json_decref(it_listener_create(
        &d, "{\"id\":\"e\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
            "\"model\":\"event\"}"));
    it_http(&d, "PATCH", "/api/v1/listeners/e", "{\"model\":\"uring\"}", &r);
    it_assert_problem(&r, 400, "model");
    assert_non_null(strstr(it_json_str(r.json, "detail"), "io_uring_setup"));
    it_http_fini(&r);
    l = it_listener_get(&d, "e");
    it_assert_tcp_echo("127.0.0.1", it_bound_port(l), "still event\n", 12);
    json_decref(l);
    assert_int_equal(it_daemon_stop(&d, SIGTERM, IT_IO_TIMEOUT_MS, NULL, NULL), 0);
}

/* The unit's system call filter lets io_uring through (@system-service does not). */
static void test_uring_systemd_unit_allows_io_uring_syscalls(void **state)
{
    const char *root = getenv("SOCKSERV_SOURCE_ROOT");
    static const char *const calls[] = {"io_uring_setup", "io_uring_enter", "io_uring_register"};
    char path[512];
    char *unit;

    (void)state;
    assert_non_null(root);
    snprintf(path, sizeof(path), "%s/scripts/systemd/sockserv.service", root);
    unit = it_file_read(path, NULL);
    assert_non_null(unit);
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        bool allowed = false;

        for (char *line = unit; line && *line;
             line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            size_t n = strcspn(line, "\n");
            char one[512];

            snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) ? n : sizeof(one) - 1), line);
            if (strncmp(one, "SystemCallFilter=", 17) == 0 && one[17] != '~' &&
                strstr(one, calls[i]))
                allowed = true;
            if (strncmp(one, "SystemCallFilter=~", 18) == 0 && strstr(one, calls[i]))
                fail_msg("%s is denied: %s", calls[i], one);
        }
        if (!allowed)
            fail_msg("no SystemCallFilter= line allows %s", calls[i]);
    }
    free(unit);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_uring_many_connections_on_one_ring_each_echoed),
        T(test_uring_batched_waits_still_answer_a_lone_client),
        T(test_uring_slow_reader_gets_1mib_back_byte_exact),
        T(test_uring_provided_buffers_exhausted_all_echoed),
        T(test_uring_client_reset_mid_send_connection_ends),
        cmocka_unit_test_setup_teardown(test_uring_denied_by_seccomp_is_400_saying_why,
                                        it_fixture_setup_dir, it_fixture_teardown),
        cmocka_unit_test(test_uring_systemd_unit_allows_io_uring_syscalls),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
