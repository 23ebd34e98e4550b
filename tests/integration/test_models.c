/*
 * The concurrency models over real sockets: every service (echo stream and once, daytime, backup
 * through the `sockserv backup` command) under every TCP model the daemon offers, the daemon's
 * end of a connection with TCP_NODELAY under each, many clients
 * at once against `pool` and `event`, max_connections refused and counted by reason, the idle
 * timeout of `event`, a stop under load that returns within a second and leaves no thread and no
 * fd behind, and the service time histogram filled by the traffic.
 */

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define N_CONCURRENT 50
#define N_LOAD 8
#define STOP_LIMIT_MS 1000
#define CLI_TIMEOUT_MS 30000

static const char *dir_of(void **state)
{
    return ((struct it_fixture *)*state)->dir;
}

static void delete_listener(const struct it_daemon *d, const char *id)
{
    char path[128];
    json_t *j;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s", id);
    j = it_http_expect(d, "DELETE", path, NULL, 204);
    json_decref(j);
}

/* metrics.latency.count of listener id; -1 when the metrics carry none. */
static int64_t latency_count(const struct it_daemon *d, const char *id)
{
    char path[128];
    json_t *j, *count;
    int64_t n = -1;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s/metrics", id);
    j = it_http_expect(d, "GET", path, NULL, 200);
    count = it_json_path(j, "latency.count");
    if (count && json_is_integer(count))
        n = json_integer_value(count);
    json_decref(j);
    return n;
}

static void assert_latency_recorded(const struct it_daemon *d, const char *id)
{
    int64_t n = latency_count(d, id);

    if (n < 0)
        fail_msg("listener %s: the metrics carry no latency.count", id);
    if (n == 0)
        fail_msg("listener %s: latency.count is 0 after answered requests", id);
}

/* ---- every service under one model ---- */

static void check_echo(const struct it_daemon *d, const char *model, const char *mode)
{
    char body[512], id[32];
    size_t len = 200 * 1000;
    char *msg = it_pattern(len, 7), *reply = NULL;
    size_t reply_len = 0;
    uint16_t port;
    int r;

    snprintf(id, sizeof(id), "echo-%s", mode);
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":2,\"options\":{\"mode\":\"%s\"}}",
             id, model, mode);
    port = it_listener_create_port(d, body);
    if (strcmp(mode, "stream") == 0) {
        int fd, theirs, nodelay = 0;
        socklen_t optlen = sizeof(nodelay);

        it_assert_tcp_echo("127.0.0.1", port, msg, len);
        it_assert_tcp_echo("127.0.0.1", port, "x", 1);
        fd = it_tcp_connect_ok(port);
        /* Small answers leave at once: the daemon's end has TCP_NODELAY (else Nagle holds an
         * answer until the client acknowledges the one before, up to a delayed ACK's 40 ms). */
        assert_int_equal(it_echo_round_trip(fd, "nagle\n", 6, IT_IO_TIMEOUT_MS), 0);
        theirs = it_daemon_socket_of(d, fd);
        if (theirs < 0)
            fail_msg("echo under %s: the daemon's end of the connection was not found", model);
        assert_int_equal(getsockopt(theirs, IPPROTO_TCP, TCP_NODELAY, &nodelay, &optlen), 0);
        if (!nodelay)
            fail_msg("echo under %s: the daemon's end of a connection has no TCP_NODELAY", model);
        close(theirs);
        close(fd);
    } else {
        /* once: the first message read comes back, then the server closes. */
        r = it_tcp_exchange("127.0.0.1", port, "hello, once\n", 12, false, IT_IO_TIMEOUT_MS, &reply,
                            &reply_len);
        if (r != 0)
            fail_msg("echo once under %s: %s", model, strerror(-r));
        assert_int_equal(reply_len, 12);
        assert_memory_equal(reply, "hello, once\n", 12);
        free(reply);
    }
    it_assert_metric_eventually(d, id, "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, id, "errors", 0);
    assert_latency_recorded(d, id);
    delete_listener(d, id);
    free(msg);
}

/* Now, in whole seconds of CLOCK_REALTIME. */
static time_t realtime_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

/* The daytime line: what `date` prints in UTC at some second between before and after. */
static void check_date(const struct it_daemon *d, const char *model)
{
    char body[512], *line = NULL, want[64];
    size_t len = 0;
    time_t before, after;
    bool matched = false;
    uint16_t port;
    int r;

    snprintf(body, sizeof(body),
             "{\"id\":\"daytime\",\"service\":\"date\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"options\":{\"timezone\":\"UTC\"}}",
             model);
    port = it_listener_create_port(d, body);
    /* The daemon reads CLOCK_REALTIME; time() may read the coarse clock, a tick behind. */
    before = realtime_s();
    r = it_daytime("127.0.0.1", port, &line, &len);
    after = realtime_s();
    if (r != 0)
        fail_msg("daytime under %s: %s after '%s'", model, strerror(-r), line ? line : "");
    for (time_t t = before; t <= after && !matched; t++) {
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(want, sizeof(want), "%a %b %e %H:%M:%S UTC %Y\n", &tm);
        matched = len == strlen(want) && memcmp(line, want, len) == 0;
    }
    if (!matched)
        fail_msg("daytime under %s: got '%s', want a line like '%s'", model, line, want);
    free(line);
    it_assert_metric_eventually(d, "daytime", "connections_active", 0, IT_WAIT_MS);
    assert_latency_recorded(d, "daytime");
    delete_listener(d, "daytime");
}

static void run_backup(struct it_proc *p, const char *a1, const char *a2, const char *a3,
                       const char *a4, const char *a5, const char *a6)
{
    it_run_verb("backup", (const char *const[]){a1, a2, a3, a4, a5, a6, NULL}, NULL, 0,
                CLI_TIMEOUT_MS, p);
    if (p->timed_out || it_proc_exit_code(p) != 0)
        fail_msg("sockserv backup %s: %s\nstdout: %s\nstderr: %s", a1, it_status_str(p->status),
                 p->out, p->err);
}

/* Upload with the CLI (SHA-256 in the header, checked by the server) and restore. */
static void check_backup(const struct it_daemon *d, const char *dir, const char *model)
{
    char body[1024], store[IT_PATH_MAX], src[IT_PATH_MAX], out[IT_PATH_MAX], ps[8];
    size_t len = 3 * 1024 * 1024 + 17, got_len = 0;
    char *data = it_pattern(len, 11), *got;
    struct it_proc p;
    uint16_t port;

    snprintf(store, sizeof(store), "%s/files-%s", dir, model);
    snprintf(src, sizeof(src), "%s/src-%s.bin", dir, model);
    snprintf(out, sizeof(out), "%s/restored-%s.bin", dir, model);
    snprintf(body, sizeof(body),
             "{\"id\":\"bk\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"options\":{\"directory\":\"%s\"}}",
             model, store);
    port = it_listener_create_port(d, body);
    snprintf(ps, sizeof(ps), "%u", port);
    assert_int_equal(it_file_write(src, data, len), 0);

    run_backup(&p, "put", src, "--name", "data.bin", "127.0.0.1", ps);
    if (!strstr(p.out, "stored data.bin version 1 ("))
        fail_msg("backup put under %s: stdout '%s'", model, p.out);
    it_proc_fini(&p);
    {
        const char *argv[] = {it_bin(), "backup",    "get", "data.bin", "-o",
                              out,      "127.0.0.1", ps,    NULL};

        it_run(argv, NULL, 0, CLI_TIMEOUT_MS, &p);
        if (it_proc_exit_code(&p) != 0)
            fail_msg("backup get under %s: %s", model, p.err);
        it_proc_fini(&p);
    }
    got = it_file_read(out, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    it_assert_metric_eventually(d, "bk", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, "bk", "errors", 0);
    assert_latency_recorded(d, "bk");
    delete_listener(d, "bk");
    free(got);
    free(data);
}

/* Every service runs under every TCP model, backup under `process` included (its quota and
 * version numbers are shared with the forked children). */
static void run_every_service(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);

    check_echo(d, model, "stream");
    check_echo(d, model, "once");
    check_date(d, model);
    check_backup(d, dir_of(state), model);
}

static void test_models_sequential_serves_every_service(void **state)
{
    run_every_service(state, "sequential");
}

static void test_models_thread_serves_every_service(void **state)
{
    run_every_service(state, "thread");
}

static void test_models_pool_serves_every_service(void **state)
{
    run_every_service(state, "pool");
}

static void test_models_event_serves_every_service(void **state)
{
    run_every_service(state, "event");
}

static void test_models_process_serves_every_service(void **state)
{
    run_every_service(state, "process");
}

static void test_models_uring_serves_every_service(void **state)
{
    run_every_service(state, "uring");
}

static void test_models_udp_records_latency(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    uint16_t port;

    port = it_listener_create_port(d, "{\"id\":\"u\",\"service\":\"echo\",\"transport\":\"udp\","
                                      "\"address\":\"127.0.0.1\",\"port\":0,\"workers\":2}");
    it_assert_udp_echo("127.0.0.1", port, "ping", 4);
    it_assert_metric_eventually(d, "u", "datagrams_out", 1, IT_WAIT_MS);
    assert_latency_recorded(d, "u");
}

/* ---- many clients at once ---- */

struct client {
    uint16_t port;
    unsigned seed;
    pthread_barrier_t *start;
    int result; /* 0: the exact bytes came back */
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    size_t len = 16 * 1024 + c->seed, got_len = 0;
    char *msg = malloc(len), *got = NULL;

    if (msg)
        (void)it_pattern_fill(msg, len, c->seed);
    (void)pthread_barrier_wait(c->start);
    if (!msg) {
        c->result = -ENOMEM;
        return NULL;
    }
    c->result = it_tcp_exchange("127.0.0.1", c->port, msg, len, true, 20000, &got, &got_len);
    if (c->result == 0 && (got_len != len || memcmp(got, msg, len) != 0))
        c->result = -EBADMSG;
    free(got);
    free(msg);
    return NULL;
}

static void run_concurrent(const struct it_daemon *d, const char *model, unsigned workers)
{
    struct client c[N_CONCURRENT];
    pthread_t t[N_CONCURRENT];
    pthread_barrier_t start;
    char body[256];
    uint16_t port;
    unsigned failed = 0;

    snprintf(body, sizeof(body),
             "{\"id\":\"many\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":%u}",
             model, workers);
    port = it_listener_create_port(d, body);
    assert_int_equal(pthread_barrier_init(&start, NULL, N_CONCURRENT), 0);
    for (unsigned i = 0; i < N_CONCURRENT; i++) {
        c[i] = (struct client){.port = port, .seed = i + 1, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
    }
    for (unsigned i = 0; i < N_CONCURRENT; i++) {
        pthread_join(t[i], NULL);
        if (c[i].result != 0) {
            fprintf(stderr, "# client %u: %s\n", i, strerror(-c[i].result));
            failed++;
        }
    }
    pthread_barrier_destroy(&start);
    if (failed)
        fail_msg("%s: %u of %d clients did not get their bytes back", model, failed, N_CONCURRENT);
    it_assert_metric_eventually(d, "many", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, "many", "connections_total", N_CONCURRENT);
    it_assert_metric_now(d, "many", "connections_rejected", 0);
    it_assert_metric_now(d, "many", "errors", 0);
}

static void test_models_pool_50_clients_at_once_all_echoed(void **state)
{
    run_concurrent(it_daemon_of(state), "pool", 4);
}

static void test_models_event_50_clients_at_once_all_echoed(void **state)
{
    run_concurrent(it_daemon_of(state), "event", 2);
}

static void test_models_uring_50_clients_at_once_all_echoed(void **state)
{
    run_concurrent(it_daemon_of(state), "uring", 2);
}

/* ---- limits ---- */

static void run_max_connections(const struct it_daemon *d, const char *model)
{
    char body[256];
    uint16_t port;
    int a, b, c, r;

    snprintf(body, sizeof(body),
             "{\"id\":\"lim\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":4,\"max_connections\":2}",
             model);
    port = it_listener_create_port(d, body);
    a = it_connect_echoed("127.0.0.1", port, "one");
    b = it_connect_echoed("127.0.0.1", port, "two");
    /* The third is accepted and closed at once, before any byte. */
    c = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
    assert_true(c >= 0);
    r = it_read_to_eof(c, IT_IO_TIMEOUT_MS, NULL, NULL);
    if (r != 0 && r != -ECONNRESET)
        fail_msg("%s: the connection over max_connections was not closed: %s", model, strerror(-r));
    close(c);
    it_assert_metric_eventually(d, "lim", "connections_rejected", 1, IT_WAIT_MS);
    it_assert_metric_now(d, "lim", "rejected_max_connections", 1);
    it_assert_metric_now(d, "lim", "rejected_resources", 0);
    it_assert_metric_now(d, "lim", "connections_active", 2);
    /* A place freed is a place taken again. */
    close(a);
    it_assert_metric_eventually(d, "lim", "connections_active", 1, IT_WAIT_MS);
    a = it_connect_echoed("127.0.0.1", port, "three");
    close(a);
    close(b);
    it_assert_metric_eventually(d, "lim", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, "lim", "connections_total", 3);
    it_assert_metric_now(d, "lim", "connections_rejected", 1);
}

static void test_models_pool_over_max_connections_refused_and_counted(void **state)
{
    run_max_connections(it_daemon_of(state), "pool");
}

static void test_models_event_over_max_connections_refused_and_counted(void **state)
{
    run_max_connections(it_daemon_of(state), "event");
}

static void test_models_uring_over_max_connections_refused_and_counted(void **state)
{
    run_max_connections(it_daemon_of(state), "uring");
}

static void run_idle_timeout(const struct it_daemon *d, const char *model)
{
    char body[256];
    int64_t t0;
    uint16_t port;
    int fd, r;

    snprintf(body, sizeof(body),
             "{\"id\":\"idle\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":2,\"idle_timeout_ms\":300}",
             model);
    port = it_listener_create_port(d, body);
    /* Every activity the daemon sees comes after t0: a close sooner than the timeout after it
     * is early, however late this process gets to read the echo. */
    t0 = it_now_ms();
    fd = it_connect_echoed("127.0.0.1", port, "hello");
    r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, NULL, NULL);
    close(fd);
    if (r != 0 && r != -ECONNRESET)
        fail_msg("the idle connection was not closed: %s", strerror(-r));
    if (it_now_ms() - t0 < 250)
        fail_msg("closed after %lld ms, before the idle timeout of 300 ms",
                 (long long)(it_now_ms() - t0));
    it_assert_metric_eventually(d, "idle", "idle_timeouts", 1, IT_WAIT_MS);
    it_assert_metric_eventually(d, "idle", "connections_active", 0, IT_WAIT_MS);
}

static void test_models_event_idle_connection_closed_after_timeout(void **state)
{
    run_idle_timeout(it_daemon_of(state), "event");
}

static void test_models_uring_idle_connection_closed_after_timeout(void **state)
{
    run_idle_timeout(it_daemon_of(state), "uring");
}

/* ---- live changes ---- */

static void assert_still_echoes(int fd, const char *msg)
{
    int r = it_echo_round_trip(fd, msg, strlen(msg), IT_IO_TIMEOUT_MS);

    if (r != 0)
        fail_msg("an established connection was dropped by the change: %s", strerror(-r));
}

/* Established connections survive a change of workers and limits; new ones get the new
 * configuration. */
static void run_live_change(const struct it_daemon *d, const char *model, const char *change)
{
    char body[256];
    uint16_t port;
    int a, b, c;

    snprintf(body, sizeof(body),
             "{\"id\":\"live\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":3}",
             model);
    port = it_listener_create_port(d, body);
    a = it_connect_echoed("127.0.0.1", port, "a1");
    b = it_connect_echoed("127.0.0.1", port, "b1");
    json_decref(it_listener_patch(d, "live", change));
    assert_still_echoes(a, "a2");
    assert_still_echoes(b, "b2");
    c = it_connect_echoed("127.0.0.1", port, "c1");
    assert_still_echoes(a, "a3");
    close(a);
    close(b);
    close(c);
    it_assert_metric_eventually(d, "live", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, "live", "connections_total", 3);
    it_assert_metric_now(d, "live", "connections_rejected", 0);
    it_assert_metric_now(d, "live", "errors", 0);
}

static void test_models_pool_live_change_keeps_connections(void **state)
{
    run_live_change(it_daemon_of(state), "pool", "{\"workers\":4,\"max_connections\":10}");
}

static void test_models_event_live_change_keeps_connections(void **state)
{
    run_live_change(it_daemon_of(state), "event", "{\"workers\":2,\"idle_timeout_ms\":20000}");
}

static void test_models_uring_live_change_keeps_connections(void **state)
{
    run_live_change(it_daemon_of(state), "uring", "{\"workers\":2,\"idle_timeout_ms\":20000}");
}

static void test_models_event_to_uring_change_keeps_connections(void **state)
{
    run_live_change(it_daemon_of(state), "event", "{\"model\":\"uring\"}");
}

static void test_models_pool_to_thread_change_keeps_connections(void **state)
{
    run_live_change(it_daemon_of(state), "pool", "{\"model\":\"thread\"}");
}

/* ---- stop under load ---- */

struct loader {
    uint16_t port;
    atomic_bool *quit;
    atomic_uint *exchanged;
};

/* Connects and echoes 1 KiB at a time until told to quit or the connection ends. */
static void *loader_main(void *arg)
{
    struct loader *l = arg;
    char msg[1024];
    int fd = it_tcp_connect("127.0.0.1", l->port, IT_IO_TIMEOUT_MS);

    memset(msg, 'L', sizeof(msg));
    while (fd >= 0 && !atomic_load(l->quit)) {
        if (it_echo_round_trip(fd, msg, sizeof(msg), 2000) < 0)
            break;
        atomic_fetch_add(l->exchanged, 1);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static bool some_exchanged(void *arg)
{
    return atomic_load((atomic_uint *)arg) >= 4 * N_LOAD;
}

static void run_stop_under_load(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base;
    struct loader l[N_LOAD];
    pthread_t t[N_LOAD];
    atomic_bool quit;
    atomic_uint exchanged;
    char body[256];
    int64_t t0, took;
    json_t *j;
    uint16_t port;

    atomic_init(&quit, false);
    atomic_init(&exchanged, 0);
    it_resources_settle(d, &base);
    snprintf(body, sizeof(body),
             "{\"id\":\"load\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":4}",
             model);
    port = it_listener_create_port(d, body);
    for (unsigned i = 0; i < N_LOAD; i++) {
        l[i] = (struct loader){.port = port, .quit = &quit, .exchanged = &exchanged};
        assert_int_equal(pthread_create(&t[i], NULL, loader_main, &l[i]), 0);
    }
    if (!it_wait_until(IT_WAIT_MS, some_exchanged, &exchanged))
        fail_msg("%s: the load did not flow (%u exchanges)", model, atomic_load(&exchanged));

    t0 = it_now_ms();
    j = it_http_expect(d, "POST", "/api/v1/listeners/load/stop", NULL, 200);
    took = it_now_ms() - t0;
    json_decref(j);
    if (took > STOP_LIMIT_MS)
        fail_msg("%s: stop under load took %lld ms", model, (long long)took);
    fprintf(stderr, "# %s: stop under load took %lld ms after %u exchanges\n", model,
            (long long)took, atomic_load(&exchanged));
    assert_true(it_tcp_is_refused("127.0.0.1", port));
    /* Back to the threads and fds from before the listener (a failure names the model in the
     * line above). */
    it_assert_resources_back(d, &base, IT_WAIT_MS);

    atomic_store(&quit, true);
    for (unsigned i = 0; i < N_LOAD; i++)
        pthread_join(t[i], NULL);
}

static void test_models_sequential_stop_under_load_releases_everything(void **state)
{
    run_stop_under_load(state, "sequential");
}

static void test_models_thread_stop_under_load_releases_everything(void **state)
{
    run_stop_under_load(state, "thread");
}

static void test_models_pool_stop_under_load_releases_everything(void **state)
{
    run_stop_under_load(state, "pool");
}

static void test_models_event_stop_under_load_releases_everything(void **state)
{
    run_stop_under_load(state, "event");
}

static void test_models_process_stop_under_load_releases_everything(void **state)
{
    run_stop_under_load(state, "process");
}

static void test_models_uring_stop_under_load_releases_everything(void **state)
{
    run_stop_under_load(state, "uring");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_models_sequential_serves_every_service),
        T(test_models_thread_serves_every_service),
        T(test_models_pool_serves_every_service),
        T(test_models_event_serves_every_service),
        T(test_models_process_serves_every_service),
        T(test_models_uring_serves_every_service),
        T(test_models_udp_records_latency),
        T(test_models_pool_50_clients_at_once_all_echoed),
        T(test_models_event_50_clients_at_once_all_echoed),
        T(test_models_uring_50_clients_at_once_all_echoed),
        T(test_models_pool_over_max_connections_refused_and_counted),
        T(test_models_event_over_max_connections_refused_and_counted),
        T(test_models_uring_over_max_connections_refused_and_counted),
        T(test_models_event_idle_connection_closed_after_timeout),
        T(test_models_uring_idle_connection_closed_after_timeout),
        T(test_models_pool_live_change_keeps_connections),
        T(test_models_event_live_change_keeps_connections),
        T(test_models_uring_live_change_keeps_connections),
        T(test_models_event_to_uring_change_keeps_connections),
        T(test_models_pool_to_thread_change_keeps_connections),
        T(test_models_sequential_stop_under_load_releases_everything),
        T(test_models_thread_stop_under_load_releases_everything),
        T(test_models_pool_stop_under_load_releases_everything),
        T(test_models_event_stop_under_load_releases_everything),
        T(test_models_process_stop_under_load_releases_everything),
        T(test_models_uring_stop_under_load_releases_everything),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
