/*
 * The descriptor budget over real sockets, with the daemon started under a low RLIMIT_NOFILE:
 * it raises its soft limit to the hard one; the listeners' connections together never take the
 * reserve (a flood past the limit, on an `event` or a `uring` listener, is refused, closed and
 * counted in rejected_fd_budget, and the API still answers health and creates a listener; two
 * listeners share one count); a max_connections larger than what the
 * limit leaves is capped, and the listener's status and the log say so; health reports the
 * limit, the reserve and the fds open.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define LIMIT 512   /* the daemon's RLIMIT_NOFILE */
#define RESERVE 256 /* what the budget keeps of it: half, below 1536 */
#define FLOOD 700   /* connections: more than the daemon's every fd */
#define MSG "ping\n"

/* This process holds the flood's client ends: its soft limit up to its hard one. */
static void raise_own_limit(void)
{
    struct rlimit rl;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < FLOOD + 64)
        fail_msg("RLIMIT_NOFILE hard limit %llu: the test needs %d fds",
                 (unsigned long long)rl.rlim_cur, FLOOD + 64);
}

static int setup_low_limit(void **state)
{
    raise_own_limit();
    return it_fixture_setup_opts(
        state, (struct it_daemon_opts){.nofile_soft = LIMIT / 2, .nofile_hard = LIMIT});
}

/* Opens n connections to 127.0.0.1:port into fds; asserts each one was made. */
static void flood(uint16_t port, int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        fds[i] = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
        if (fds[i] < 0)
            fail_msg("connection %d of %d: %s", i, n, strerror(-fds[i]));
    }
}

/* How many of the n connections still echo; the others must have been closed by the daemon
 * (end of stream or reset), which is asserted. */
static int count_served(const int *fds, int n)
{
    int served = 0;

    for (int i = 0; i < n; i++) {
        int r = it_echo_round_trip(fds[i], MSG, strlen(MSG), IT_IO_TIMEOUT_MS);

        if (r == 0)
            served++;
        else if (r != -EPIPE && r != -ECONNRESET)
            fail_msg("connection %d: neither served nor closed: %s", i, strerror(-r));
    }
    return served;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* The "fds" member of health; asserts 200 and its shape. */
static void health_fds(const struct it_daemon *d, json_int_t *limit, json_int_t *reserve,
                       json_int_t *open_fds)
{
    json_t *j = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);

    *limit = it_json_int(j, "fds.limit");
    *reserve = it_json_int(j, "fds.reserve");
    *open_fds = it_json_int(j, "fds.open");
    json_decref(j);
}

/* The soft limit of the daemon's "Max open files" in /proc/PID/limits, and its hard one. */
static void proc_limits(pid_t pid, unsigned long *soft, unsigned long *hard)
{
    char path[64], *text, *line;

    (void)snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
    text = it_file_read(path, NULL);
    assert_non_null(text);
    line = strstr(text, "Max open files");
    assert_non_null(line);
    assert_int_equal(sscanf(line + strlen("Max open files"), "%lu %lu", soft, hard), 2);
    free(text);
}

static void test_fds_soft_limit_raised_to_hard_and_reported(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_int_t limit, reserve, open_fds;
    unsigned long soft, hard;
    char *log;

    proc_limits(d->pid, &soft, &hard);
    assert_int_equal(hard, LIMIT);
    assert_int_equal(soft, LIMIT);
    health_fds(d, &limit, &reserve, &open_fds);
    assert_int_equal(limit, LIMIT);
    assert_int_equal(reserve, RESERVE);
    assert_true(open_fds > 3 && open_fds < RESERVE);
    log = it_daemon_stderr(d);
    assert_non_null(strstr(log, "descriptors: limit 512 (soft limit raised to the hard one)"));
    free(log);
}

static void test_fds_max_connections_capped_and_said(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_t *big = it_listener_create(
        d, "{\"id\": \"big\", \"service\": \"echo\", \"transport\": \"tcp\", \"port\": 0, "
           "\"address\": \"127.0.0.1\", \"model\": \"event\", \"max_connections\": 1000}");
    json_t *small = it_listener_create(
        d, "{\"id\": \"small\", \"service\": \"echo\", \"transport\": \"tcp\", \"port\": 0, "
           "\"address\": \"127.0.0.1\", \"model\": \"event\", \"max_connections\": 100}");
    const char *note;
    char *log;

    assert_int_equal(it_json_int(big, "max_connections"), 1000);
    assert_int_equal(it_json_int(big, "status.max_connections_effective"), LIMIT - RESERVE);
    note = it_json_str(big, "status.max_connections_note");
    assert_non_null(strstr(note, "max_connections 1000 is capped to 256"));
    assert_int_equal(it_json_int(small, "status.max_connections_effective"), 100);
    assert_true(json_is_null(it_json_path(small, "status.max_connections_note")));
    log = it_daemon_stderr(d);
    assert_non_null(strstr(log, "listener big: max_connections 1000 is capped to 256"));
    assert_null(strstr(log, "listener small: max_connections"));
    free(log);
    json_decref(big);
    json_decref(small);
}

static void flood_past_limit(void **state, const char *model)
{
    struct it_daemon *d = it_daemon_of(state);
    char body[256];
    uint16_t port;
    json_int_t limit, reserve, open_fds;
    int *fds = calloc(FLOOD, sizeof(*fds)), fd;
    uint16_t more;
    json_t *j;

    (void)snprintf(body, sizeof(body),
                   "{\"id\": \"e\", \"service\": \"echo\", \"transport\": \"tcp\", \"port\": 0, "
                   "\"address\": \"127.0.0.1\", \"model\": \"%s\", \"idle_timeout_ms\": 0}",
                   model);
    port = it_listener_create_port(d, body);
    assert_non_null(fds);
    flood(port, fds, FLOOD);
    it_assert_metric_eventually(d, "e", "connections_active", LIMIT - RESERVE, IT_WAIT_MS);
    it_assert_metric_eventually(d, "e", "rejected_fd_budget", FLOOD - (LIMIT - RESERVE),
                                IT_WAIT_MS);
    it_assert_metric_now(d, "e", "connections_rejected", FLOOD - (LIMIT - RESERVE));
    it_assert_metric_now(d, "e", "rejected_resources", 0);
    assert_int_equal(count_served(fds, FLOOD), LIMIT - RESERVE);

    /* The API answers, and has fds to spare for a new listener (whose connections wait for
     * the budget, as every listener's). */
    health_fds(d, &limit, &reserve, &open_fds);
    assert_int_equal(limit, LIMIT);
    assert_true(open_fds >= LIMIT - RESERVE && open_fds < LIMIT);
    j = it_listener_create(d, "{\"id\": \"more\", \"service\": \"echo\", \"transport\": \"tcp\", "
                              "\"port\": 0, \"address\": \"127.0.0.1\"}");
    more = it_bound_port(j);
    json_decref(j);
    fd = it_tcp_connect("127.0.0.1", more, IT_IO_TIMEOUT_MS);
    assert_true(fd >= 0);
    assert_int_equal(count_served(&fd, 1), 0);
    close(fd);
    it_assert_metric_eventually(d, "more", "rejected_fd_budget", 1, IT_WAIT_MS);

    /* Once they end, the budget is free again. */
    close_all(fds, FLOOD);
    it_assert_metric_eventually(d, "e", "connections_active", 0, IT_WAIT_MS);
    it_assert_tcp_echo("127.0.0.1", port, MSG, strlen(MSG));
    it_assert_tcp_echo("127.0.0.1", more, MSG, strlen(MSG));
    free(fds);
}

static void test_fds_event_flood_past_limit_is_refused_and_api_answers(void **state)
{
    flood_past_limit(state, "event");
}

static void test_fds_uring_flood_past_limit_is_refused_and_api_answers(void **state)
{
    flood_past_limit(state, "uring");
}

static void test_fds_budget_is_shared_by_listeners(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t a = it_listener_create_port(
        d, "{\"id\": \"a\", \"service\": \"echo\", \"transport\": \"tcp\", \"port\": 0, "
           "\"address\": \"127.0.0.1\", \"model\": \"event\", \"idle_timeout_ms\": 0}");
    uint16_t b = it_listener_create_port(
        d, "{\"id\": \"b\", \"service\": \"echo\", \"transport\": \"tcp\", \"port\": 0, "
           "\"address\": \"127.0.0.1\", \"model\": \"uring\", \"idle_timeout_ms\": 0}");
    enum { NA = 200, NB = 100 };
    int fa[NA], fb[NB];

    flood(a, fa, NA);
    it_assert_metric_eventually(d, "a", "connections_active", NA, IT_WAIT_MS);
    flood(b, fb, NB);
    it_assert_metric_eventually(d, "b", "rejected_fd_budget", NA + NB - (LIMIT - RESERVE),
                                IT_WAIT_MS);
    it_assert_metric_eventually(d, "b", "connections_active", LIMIT - RESERVE - NA, IT_WAIT_MS);
    assert_int_equal(count_served(fb, NB), LIMIT - RESERVE - NA);
    it_assert_metric_now(d, "a", "rejected_fd_budget", 0);
    close_all(fa, NA);
    close_all(fb, NB);
}

/* A whole configuration of n echo listeners on address addr (port 0: any), as JSON text (free()
 * it). */
static char *config_of(int n, const char *addr)
{
    json_t *list = json_array(), *cfg;
    char id[16], *text;

    for (int i = 0; i < n; i++) {
        (void)snprintf(id, sizeof(id), "m%d", i);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:i}", "id", id,
                                              "service", "echo", "transport", "tcp", "address",
                                              addr, "port", 0, "model", "event", "workers", 1));
    }
    cfg = json_pack("{s:o}", "listeners", list);
    text = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    assert_non_null(text);
    return text;
}

static bool open_fds_at_most(void *arg)
{
    const struct it_daemon *d = ((const void *const *)arg)[0];
    json_int_t max = *(const json_int_t *)((const void *const *)arg)[1];
    json_t *j = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);
    bool ok = it_json_int(j, "fds.open") <= max;

    json_decref(j);
    return ok;
}

/*
 * Whole configurations that move every listener, one right after the other, faster than the
 * once-a-second reap: each move leaves the old runners draining (their sockets, epoll and
 * eventfds open) until reaped. The changes reap what earlier ones left and is done, so a
 * series of them never runs the daemon out of descriptors: every one is applied (the 8 sets
 * of 25 runners would take some 1000 descriptors of the 512), every listener echoes on its
 * new address, and the descriptors come back.
 */
static void test_fds_config_moves_in_a_row_do_not_run_out(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    enum { N = 25, CHANGES = 8 };
    json_int_t limit, reserve, base, after;
    const void *arg[2] = {d, &after};

    health_fds(d, &limit, &reserve, &base);
    for (int c = 0; c < CHANGES; c++) {
        char *cfg = config_of(N, c % 2 ? "127.0.0.2" : "127.0.0.1");
        json_t *j = it_http_expect(d, "PUT", "/api/v1/config", cfg, 200);

        json_decref(j);
        free(cfg);
    }
    for (int i = 0; i < N; i++) {
        char id[16];
        json_t *l;

        (void)snprintf(id, sizeof(id), "m%d", i);
        l = it_listener_get(d, id);
        assert_string_equal(it_json_str(l, "status.state"), "running");
        it_assert_tcp_echo("127.0.0.2", it_bound_port(l), MSG, strlen(MSG));
        json_decref(l);
    }
    /* The last set's runners and at most one set still draining until the next reap. */
    after = base + 2 * N * 6;
    if (!it_wait_until(IT_WAIT_MS, open_fds_at_most, arg))
        fail_msg("the daemon holds more than %lld descriptors", (long long)after);
}

/*
 * Out of descriptors for real (the listeners' connections hold their whole budget, and a new
 * configuration wants 60 more listeners): the change is refused whole with a 503 that says so
 * and when to ask again, nothing of it applied; once the connections end, the same change
 * succeeds.
 */
static void test_fds_change_out_of_descriptors_is_503_then_succeeds(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    enum { MORE = 60 };
    uint16_t port = it_listener_create_port(
        d, "{\"id\": \"a\", \"service\": \"echo\", \"transport\": \"tcp\", \"port\": 0, "
           "\"address\": \"127.0.0.1\", \"model\": \"event\", \"idle_timeout_ms\": 0}");
    int fds[LIMIT - RESERVE];
    json_t *list = json_array(), *cfg, *j;
    char id[16], *text;
    struct it_http r;

    flood(port, fds, LIMIT - RESERVE);
    it_assert_metric_eventually(d, "a", "connections_active", LIMIT - RESERVE, IT_WAIT_MS);
    json_array_append_new(list,
                          json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:i}", "id", "a", "service",
                                    "echo", "transport", "tcp", "address", "127.0.0.1", "port",
                                    port, "model", "event", "idle_timeout_ms", 0));
    for (int i = 0; i < MORE; i++) {
        (void)snprintf(id, sizeof(id), "n%d", i);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "id", id, "service",
                                              "echo", "transport", "tcp", "address", "127.0.0.1",
                                              "port", 0, "model", "event"));
    }
    cfg = json_pack("{s:o}", "listeners", list);
    text = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    assert_non_null(text);

    it_http(d, "PUT", "/api/v1/config", text, &r);
    it_assert_problem(&r, 503, NULL);
    assert_non_null(
        strstr(json_string_value(json_object_get(r.json, "detail")), "Too many open files"));
    it_assert_header(&r, "Retry-After", "1");
    it_http_fini(&r);
    j = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "listeners")), 1);
    json_decref(j);

    close_all(fds, LIMIT - RESERVE);
    it_assert_metric_eventually(d, "a", "connections_active", 0, IT_WAIT_MS);
    j = it_http_expect(d, "PUT", "/api/v1/config", text, 200);
    json_decref(j);
    j = it_listener_get(d, "n59");
    assert_string_equal(it_json_str(j, "status.state"), "running");
    it_assert_tcp_echo("127.0.0.1", it_bound_port(j), MSG, strlen(MSG));
    json_decref(j);
    free(text);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_low_limit, it_fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_fds_soft_limit_raised_to_hard_and_reported),
        T(test_fds_max_connections_capped_and_said),
        T(test_fds_event_flood_past_limit_is_refused_and_api_answers),
        T(test_fds_uring_flood_past_limit_is_refused_and_api_answers),
        T(test_fds_budget_is_shared_by_listeners),
        T(test_fds_config_moves_in_a_row_do_not_run_out),
        T(test_fds_change_out_of_descriptors_is_503_then_succeeds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
