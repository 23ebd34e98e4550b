/*
 * File work off the event loop: a backup listener under `event` with one loop, one upload held
 * in its commit by the directory's commit lock (taken here, by the test, as a second writer on
 * the directory would: an flock on DIR/.sockserv), while other connections on the same loop are
 * served; the upload is stored once the lock is released. A stop while the commit waits returns
 * as soon as it is released, with every thread joined and every fd closed. Many uploads and
 * restores at once on one loop come back byte for byte.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define BIG_SIZE (256 * 1024)
#define PROMPT_MS 2000     /* "served promptly": a LIST and a small GET, under a sanitizer too */
#define STOP_LIMIT_MS 1000 /* a stop once the lock is released */
#define N_CLIENTS 8
#define MAX_OFFLOAD_THREADS 16 /* a runner's worker threads at most (docs/api.md) */
#define CLIENT_SIZE (1024 * 1024)

static const char *dir_of(void **state)
{
    return ((struct it_fixture *)*state)->dir;
}

/* A backup listener "bk" under model (`event` or `uring`) with one loop, keeping its files in
 * DIR/store. Returns the bound port; *ret_store is the directory (malloc'd). */
static uint16_t loop_backup(const struct it_daemon *d, const char *dir, const char *model,
                            char **ret_store)
{
    char body[1024];
    char *store = it_path_in(dir, "store");

    snprintf(body, sizeof(body),
             "{\"id\":\"bk\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"workers\":1,\"options\":{\"directory\":\"%s\"}}",
             model, store);
    *ret_store = store;
    return it_listener_create_port(d, body);
}

/* Takes the commit lock of the store at dir, as every store on it does before a commit;
 * returns the fd that holds it. */
static int commit_lock_take(const char *store)
{
    char *meta = it_path_in(store, ".sockserv");
    int fd = open(meta, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        fail_msg("open %s: %s", meta, strerror(errno));
    if (flock(fd, LOCK_EX) < 0)
        fail_msg("flock %s: %s", meta, strerror(errno));
    free(meta);
    return fd;
}

/*
 * Starts an upload of content (BIG_SIZE bytes) as big.bin on a new connection and returns it
 * once the daemon has read all of it: the session's last feed, which commits, has been called
 * (bytes_in counts input before the service is fed), so it now waits for the commit lock.
 */
static int upload_until_commit(const struct it_daemon *d, uint16_t port, const void *content)
{
    char line[256];
    uint64_t want;
    int fd = it_tcp_connect_ok(port);

    snprintf(line, sizeof(line), "PUT big.bin %d\n", BIG_SIZE);
    want = it_metric(d, "bk", "bytes_in") + strlen(line) + BIG_SIZE;
    it_send_str_ok(fd, line);
    it_expect_line(fd, "OK");
    it_send_ok(fd, content, BIG_SIZE);
    it_assert_metric_reaches(d, "bk", "bytes_in", want, IT_WAIT_MS);
    return fd;
}

/* Asserts fd has nothing to read now (the upload's answer has not come). */
static void assert_no_answer_yet(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    if (poll(&p, 1, 0) != 0)
        fail_msg("the upload was answered while its commit waits for the lock");
}

/* Reads the upload's STORED line, within IT_IO_TIMEOUT_MS. */
static void expect_stored(int fd, const void *content)
{
    char line[512], want[256], hex[65];

    it_sha256_hex(content, BIG_SIZE, hex);
    snprintf(want, sizeof(want), "STORED big.bin 1 %d %s", BIG_SIZE, hex);
    it_recv_line(fd, line, sizeof(line));
    assert_string_equal(line, want);
}

static void assert_stored_file(const char *store, const void *content)
{
    char *path = it_path_in(store, "big.bin");
    size_t len = 0;
    char *got = it_file_read(path, &len);

    if (!got)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(len, BIG_SIZE);
    assert_memory_equal(got, content, BIG_SIZE);
    free(got);
    free(path);
}

/* ---- another connection on the same loop is served while a commit waits ---- */

static void run_commit_waiting_on_lock_other_connections_served(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);
    void *content = it_pattern(BIG_SIZE, 14);
    char line[256], want[256], hex[65], small[5];
    char *store;
    uint16_t port = loop_backup(d, dir_of(state), model, &store);
    int lock, up, fd;
    int64_t t0, took;

    it_backup_put_ok(port, "small.txt", "hello", 5, 1);
    lock = commit_lock_take(store);
    up = upload_until_commit(d, port, content);

    /* A LIST and a small GET on another connection of the same (only) loop. */
    t0 = it_now_ms();
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "LIST\nGET small.txt\n");
    assert_int_equal(it_read_line(fd, line, sizeof(line), PROMPT_MS), 0);
    assert_string_equal(line, "OK 1");
    assert_int_equal(it_read_line(fd, line, sizeof(line), PROMPT_MS), 0);
    assert_true(strncmp(line, "small.txt 1 5 ", 14) == 0);
    assert_int_equal(it_read_line(fd, line, sizeof(line), PROMPT_MS), 0);
    assert_string_equal(line, "END");
    assert_int_equal(it_read_line(fd, line, sizeof(line), PROMPT_MS), 0);
    it_sha256_hex("hello", 5, hex);
    snprintf(want, sizeof(want), "OK 5 %s 1", hex);
    assert_string_equal(line, want);
    assert_int_equal(it_recv_exact(fd, small, sizeof(small), PROMPT_MS), 0);
    assert_memory_equal(small, "hello", 5);
    took = it_now_ms() - t0;
    fprintf(stderr, "# LIST and GET answered in %lld ms while a commit waits\n", (long long)took);
    assert_true(took < PROMPT_MS);
    close(fd);

    /* The upload still waits, and is stored once the lock is released. */
    assert_no_answer_yet(up);
    close(lock);
    expect_stored(up, content);
    assert_stored_file(store, content);
    it_send_str_ok(up, "QUIT\n");
    it_expect_line(up, "BYE");
    close(up);
    it_assert_metric_eventually(d, "bk", "service.uploads_stored", 2, IT_WAIT_MS);
    free(store);
    free(content);
}

/* ---- a stop while a commit waits ---- */

struct stopper {
    const struct it_daemon *d;
    atomic_bool done;
    long status;
    int64_t ended_ms;
};

static void *stopper_main(void *arg)
{
    struct stopper *s = arg;
    struct it_http h;

    /* The request waits for the stop (the change thread answers once it is done). */
    if (it_http_raw(s->d, "POST", "/api/v1/listeners/bk/stop", NULL, 0, "application/json", &h) ==
        0) {
        s->status = h.status;
        it_http_fini(&h);
    }
    s->ended_ms = it_now_ms();
    atomic_store(&s->done, true);
    return NULL;
}

static bool is_stopping(void *arg)
{
    json_t *l = it_listener_get(arg, "bk");
    const char *st = it_json_str(l, "status.state");
    bool yes = st && strcmp(st, "stopping") == 0;

    json_decref(l);
    return yes;
}

static bool is_done(void *arg)
{
    return atomic_load(&((struct stopper *)arg)->done);
}

static void run_stop_while_commit_waits_returns_once_released(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);
    void *content = it_pattern(BIG_SIZE, 41);
    struct it_resources base;
    struct stopper s = {.d = d};
    char *store, *rest = NULL;
    size_t rest_len = 0;
    pthread_t t;
    uint16_t port;
    int lock, up;
    int64_t released;

    atomic_init(&s.done, false);
    it_resources_settle(d, &base);
    port = loop_backup(d, dir_of(state), model, &store);
    lock = commit_lock_take(store);
    up = upload_until_commit(d, port, content);

    assert_int_equal(pthread_create(&t, NULL, stopper_main, &s), 0);
    if (!it_wait_until(IT_WAIT_MS, is_stopping, (void *)d))
        fail_msg("the listener is not stopping (the stop answered %ld)", s.status);
    /* The stop waits for the callback that waits for the lock. */
    assert_false(atomic_load(&s.done));
    assert_no_answer_yet(up);

    released = it_now_ms();
    close(lock);
    if (!it_wait_until(STOP_LIMIT_MS + 4000, is_done, &s))
        fail_msg("the stop did not return after the lock was released");
    pthread_join(t, NULL);
    assert_int_equal(s.status, 200);
    fprintf(stderr, "# the stop returned %lld ms after the lock was released\n",
            (long long)(s.ended_ms - released));
    assert_true(s.ended_ms - released < STOP_LIMIT_MS);

    /* The commit that was under way finished and was answered, then the connection was cut. */
    expect_stored(up, content);
    assert_int_equal(it_read_to_eof(up, IT_IO_TIMEOUT_MS, &rest, &rest_len), 0);
    assert_int_equal(rest_len, 0);
    free(rest);
    close(up);
    assert_stored_file(store, content);
    assert_true(it_tcp_is_refused("127.0.0.1", port));
    it_assert_resources_back(d, &base, IT_WAIT_MS);
    free(store);
    free(content);
}

/* ---- many sessions at once on one loop ---- */

struct client {
    uint16_t port;
    unsigned seed;
    char error[512];
};

/* PUT name (with its SHA-256) and GET it back on one connection, comparing byte for byte. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    void *content = it_pattern(CLIENT_SIZE, c->seed);
    char *back = malloc(CLIENT_SIZE);
    char name[32], line[512], want[256], hex[65];
    int fd = it_tcp_connect("127.0.0.1", c->port, IT_IO_TIMEOUT_MS);

    snprintf(name, sizeof(name), "c%u.bin", c->seed);
    it_sha256_hex(content, CLIENT_SIZE, hex);
    if (fd < 0 || !back) {
        snprintf(c->error, sizeof(c->error), "connect: %s", strerror(fd < 0 ? -fd : ENOMEM));
        goto out;
    }
    snprintf(line, sizeof(line), "PUT %s %d %s\n", name, CLIENT_SIZE, hex);
    if (it_send_all(fd, line, strlen(line), IT_IO_TIMEOUT_MS) < 0 ||
        it_read_line(fd, line, sizeof(line), IT_IO_TIMEOUT_MS) < 0 || strcmp(line, "OK") != 0 ||
        it_send_all(fd, content, CLIENT_SIZE, IT_IO_TIMEOUT_MS) < 0 ||
        it_read_line(fd, line, sizeof(line), IT_IO_TIMEOUT_MS) < 0) {
        snprintf(c->error, sizeof(c->error), "%s: upload failed: %.200s", name, line);
        goto out;
    }
    snprintf(want, sizeof(want), "STORED %s 1 %d %s", name, CLIENT_SIZE, hex);
    if (strcmp(line, want) != 0) {
        snprintf(c->error, sizeof(c->error), "%s: %.200s", name, line);
        goto out;
    }
    snprintf(line, sizeof(line), "GET %s\n", name);
    snprintf(want, sizeof(want), "OK %d %s 1", CLIENT_SIZE, hex);
    if (it_send_all(fd, line, strlen(line), IT_IO_TIMEOUT_MS) < 0 ||
        it_read_line(fd, line, sizeof(line), IT_IO_TIMEOUT_MS) < 0 || strcmp(line, want) != 0 ||
        it_recv_exact(fd, back, CLIENT_SIZE, IT_IO_TIMEOUT_MS) < 0 ||
        memcmp(back, content, CLIENT_SIZE) != 0) {
        snprintf(c->error, sizeof(c->error), "%s: restore failed or differs: %.200s", name, line);
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    free(back);
    free(content);
    return NULL;
}

static void run_many_sessions_one_loop_byte_for_byte(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base, now;
    struct client c[N_CLIENTS];
    pthread_t t[N_CLIENTS];
    char *store;
    uint16_t port;

    it_resources_settle(d, &base);
    port = loop_backup(d, dir_of(state), model, &store);

    for (unsigned i = 0; i < N_CLIENTS; i++) {
        c[i] = (struct client){.port = port, .seed = i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
    }
    for (unsigned i = 0; i < N_CLIENTS; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < N_CLIENTS; i++)
        if (c[i].error[0])
            fail_msg("client %u: %s", i, c[i].error);
    it_assert_metric_eventually(d, "bk", "service.uploads_stored", N_CLIENTS, IT_WAIT_MS);
    it_assert_metric_eventually(d, "bk", "connections_active", 0, IT_WAIT_MS);
    /* The loop and its worker threads, bounded. */
    it_resources_take(d, &now);
    if (now.threads - base.threads < 2 || now.threads - base.threads > 1 + MAX_OFFLOAD_THREADS)
        fail_msg("%d threads for one loop and its workers", now.threads - base.threads);
    free(store);
}

/* ---- a live change: the old runner drains its sessions through its own workers ---- */

static void expect_empty_list(int fd)
{
    it_send_str_ok(fd, "LIST\n");
    it_expect_line(fd, "OK 0");
    it_expect_line(fd, "END");
}

static bool is_not_draining(void *arg)
{
    json_t *l = it_listener_get(arg, "bk");
    json_t *dr = it_json_path(l, "status.draining");
    bool yes = json_is_array(dr) && json_array_size(dr) == 0;

    json_decref(l);
    return yes;
}

static void run_live_change_old_sessions_served_then_released(void **state, const char *model)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base;
    char *store, path[64];
    uint16_t port;
    int a, b;
    json_t *j;

    it_resources_settle(d, &base);
    port = loop_backup(d, dir_of(state), model, &store);
    a = it_tcp_connect_ok(port);
    expect_empty_list(a);
    json_decref(it_listener_patch(d, "bk", "{\"idle_timeout_ms\":20000}"));
    /* a is the draining runner's now, b the new one's. */
    expect_empty_list(a);
    b = it_tcp_connect_ok(port);
    expect_empty_list(b);
    expect_empty_list(a);
    it_send_str_ok(a, "QUIT\n");
    it_expect_line(a, "BYE");
    close(a);
    if (!it_wait_until(IT_WAIT_MS, is_not_draining, (void *)d))
        fail_msg("the old runner still drains with no connection left");
    expect_empty_list(b);
    close(b);
    snprintf(path, sizeof(path), "/api/v1/listeners/bk");
    j = it_http_expect(d, "DELETE", path, NULL, 204);
    json_decref(j);
    it_assert_resources_back(d, &base, IT_WAIT_MS);
    free(store);
}

/* ---- a service that only computes keeps to the loop ---- */

static void test_offload_event_echo_runs_on_its_loops_alone(void **state)
{
    const struct it_daemon *d = it_daemon_of(state);
    struct it_resources base, now;
    uint16_t port;
    int fd;

    it_resources_settle(d, &base);
    port =
        it_listener_create_port(d, "{\"id\":\"e\",\"service\":\"echo\",\"address\":"
                                   "\"127.0.0.1\",\"port\":0,\"model\":\"event\",\"workers\":2}");
    fd = it_connect_echoed("127.0.0.1", port, "probe");
    it_resources_settle(d, &now);
    /* Two loops; no worker thread (and a connection's fd). */
    assert_int_equal(now.threads - base.threads, 2);
    close(fd);
}

static void test_offload_event_commit_waiting_on_lock_other_connections_served(void **state)
{
    run_commit_waiting_on_lock_other_connections_served(state, "event");
}

static void test_offload_uring_commit_waiting_on_lock_other_connections_served(void **state)
{
    run_commit_waiting_on_lock_other_connections_served(state, "uring");
}

static void test_offload_event_stop_while_commit_waits_returns_once_released(void **state)
{
    run_stop_while_commit_waits_returns_once_released(state, "event");
}

static void test_offload_uring_stop_while_commit_waits_returns_once_released(void **state)
{
    run_stop_while_commit_waits_returns_once_released(state, "uring");
}

static void test_offload_event_many_sessions_one_loop_byte_for_byte(void **state)
{
    run_many_sessions_one_loop_byte_for_byte(state, "event");
}

static void test_offload_uring_many_sessions_one_loop_byte_for_byte(void **state)
{
    run_many_sessions_one_loop_byte_for_byte(state, "uring");
}

static void test_offload_event_live_change_old_sessions_served_then_released(void **state)
{
    run_live_change_old_sessions_served_then_released(state, "event");
}

static void test_offload_uring_live_change_old_sessions_served_then_released(void **state)
{
    run_live_change_old_sessions_served_then_released(state, "uring");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_offload_event_commit_waiting_on_lock_other_connections_served),
        T(test_offload_uring_commit_waiting_on_lock_other_connections_served),
        T(test_offload_event_stop_while_commit_waits_returns_once_released),
        T(test_offload_uring_stop_while_commit_waits_returns_once_released),
        T(test_offload_event_many_sessions_one_loop_byte_for_byte),
        T(test_offload_uring_many_sessions_one_loop_byte_for_byte),
        T(test_offload_event_live_change_old_sessions_served_then_released),
        T(test_offload_uring_live_change_old_sessions_served_then_released),
        T(test_offload_event_echo_runs_on_its_loops_alone),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
