/*
 * The `process` model: a forked child per connection. Echo and date served byte-exact, many
 * clients at once, the children visible while they serve and reaped after, the counters the
 * children add seen live through the API, and a stop under load that is prompt and leaves no
 * child, fd or thread behind.
 */

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
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

#define N_CLIENTS 20
#define N_HELD 10

static struct it_daemon *daemon_of(void **state)
{
    return &((struct it_fixture *)*state)->d;
}

static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len ? len : 1);

    assert_non_null(p);
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (char)(seed >> 16);
    }
    return p;
}

/* Entries of a /proc directory, without . and .. */
static int count_dir(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *e;
    int n = 0;

    if (!dir)
        return -1;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

static int count_fds(pid_t pid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    return count_dir(path);
}

static int count_threads(pid_t pid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    return count_dir(path);
}

/* The daemon's child processes, from every thread's children list. */
static int count_children(pid_t pid)
{
    char path[512], *text;
    DIR *dir;
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    dir = opendir(path);
    if (!dir)
        return -1;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)pid, e->d_name);
        text = it_file_read(path, NULL);
        if (!text)
            continue;
        for (char *tok = strtok(text, " \n"); tok; tok = strtok(NULL, " \n"))
            n++;
        free(text);
    }
    closedir(dir);
    return n;
}

struct count_want {
    pid_t pid;
    int (*count)(pid_t pid);
    int want;
    bool at_most; /* <= want: the API's own connections come and go */
};

static bool count_is(void *arg)
{
    struct count_want *c = arg;
    int n = c->count(c->pid);

    return c->at_most ? n >= 0 && n <= c->want : n == c->want;
}

static void assert_count_eventually(pid_t pid, int (*count)(pid_t), int want, const char *what)
{
    struct count_want c = {.pid = pid, .count = count, .want = want};

    if (!it_wait_until(IT_WAIT_MS, count_is, &c))
        fail_msg("%s: %d, want %d", what, count(pid), want);
}

static void assert_count_at_most_eventually(pid_t pid, int (*count)(pid_t), int want,
                                            const char *what)
{
    struct count_want c = {.pid = pid, .count = count, .want = want, .at_most = true};

    if (!it_wait_until(IT_WAIT_MS, count_is, &c))
        fail_msg("%s: %d, want at most %d", what, count(pid), want);
}

static uint16_t create(const struct it_daemon *d, const char *id, const char *svc,
                       const char *options)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"%s\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"process\",\"max_connections\":100%s%s}",
             id, svc, options ? ",\"options\":" : "", options ? options : "");
    return it_listener_create_port(d, body);
}

/* A connection that completed one round trip, so that its child serves it. */
static int connect_echoed(uint16_t port)
{
    char buf[4];
    int fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);

    assert_true(fd >= 0);
    assert_int_equal(it_send_all(fd, "ping", 4, IT_IO_TIMEOUT_MS), 0);
    assert_int_equal(it_recv_exact(fd, buf, 4, IT_IO_TIMEOUT_MS), 0);
    assert_memory_equal(buf, "ping", 4);
    return fd;
}

static void test_process_echo_and_date_served_exactly(void **state)
{
    struct it_daemon *d = daemon_of(state);
    size_t big_len = 1 << 20, len;
    char *big = pattern(big_len, 7), *reply;
    uint16_t echo = create(d, "pe", "echo", "{\"mode\":\"stream\"}");
    uint16_t date = create(d, "pd", "date", NULL);

    it_assert_tcp_echo("127.0.0.1", echo, "hello\n", 6);
    it_assert_tcp_echo("127.0.0.1", echo, big, big_len);
    it_assert_metric_eventually(d, "pe", "bytes_in", 6 + big_len, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pe", "bytes_out", 6 + big_len, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pe", "connections_total", 2, IT_WAIT_MS);

    assert_int_equal(
        it_tcp_exchange("127.0.0.1", date, NULL, 0, false, IT_IO_TIMEOUT_MS, &reply, &len), 0);
    /* One line of text: a date of this century. */
    assert_true(len > 10);
    assert_int_equal(reply[len - 1], '\n');
    assert_non_null(strstr(reply, "20"));
    free(reply);
    it_assert_metric_eventually(d, "pd", "connections_total", 1, IT_WAIT_MS);
    assert_count_eventually(d->pid, count_children, 0, "children");
    free(big);
}

struct client {
    uint16_t port;
    unsigned seed;
    int result;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    size_t len = 64 * 1024, got_len = 0;
    char *msg = malloc(len), *got = NULL;
    unsigned seed = c->seed;

    for (size_t i = 0; msg && i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        msg[i] = (char)(seed >> 16);
    }
    c->result = msg ? it_tcp_exchange("127.0.0.1", c->port, msg, len, true, IT_IO_TIMEOUT_MS * 2,
                                      &got, &got_len)
                    : -ENOMEM;
    if (c->result == 0 && (got_len != len || memcmp(got, msg, len) != 0))
        c->result = -EBADMSG;
    free(got);
    free(msg);
    return NULL;
}

static void test_process_concurrent_clients_served_and_reaped(void **state)
{
    struct it_daemon *d = daemon_of(state);
    uint16_t port = create(d, "pc", "echo", "{\"mode\":\"stream\"}");
    struct client c[N_CLIENTS];
    pthread_t t[N_CLIENTS];

    for (unsigned i = 0; i < N_CLIENTS; i++) {
        c[i] = (struct client){.port = port, .seed = i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
    }
    for (unsigned i = 0; i < N_CLIENTS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].result, 0);
    }
    it_assert_metric_eventually(d, "pc", "connections_total", N_CLIENTS, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pc", "bytes_in", N_CLIENTS * 64 * 1024, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pc", "connections_active", 0, IT_WAIT_MS);
    assert_count_eventually(d->pid, count_children, 0, "children");
    assert_int_equal(it_metric(d, "pc", "errors"), 0);
}

static void test_process_open_connection_counted_live(void **state)
{
    struct it_daemon *d = daemon_of(state);
    uint16_t port = create(d, "pl", "echo", "{\"mode\":\"stream\"}");
    int fd = connect_echoed(port);

    /* The child added the bytes in shared memory; the daemon sees them while it serves. */
    assert_int_equal(it_metric(d, "pl", "connections_active"), 1);
    it_assert_metric_eventually(d, "pl", "bytes_in", 4, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pl", "bytes_out", 4, IT_WAIT_MS);
    assert_int_equal(count_children(d->pid), 1);
    close(fd);
    it_assert_metric_eventually(d, "pl", "connections_active", 0, IT_WAIT_MS);
    assert_count_eventually(d->pid, count_children, 0, "children");
}

static void test_process_over_limit_rejected(void **state)
{
    struct it_daemon *d = daemon_of(state);
    uint16_t port = it_listener_create_port(
        d, "{\"id\":\"pm\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
           "\"model\":\"process\",\"max_connections\":1,\"options\":{\"mode\":\"stream\"}}");
    int held = connect_echoed(port), fd;
    char *rest = NULL;

    fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
    assert_true(fd >= 0);
    /* Closed at once, without an answer. */
    assert_true(it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &rest, NULL) <= 0);
    free(rest);
    close(fd);
    it_assert_metric_eventually(d, "pm", "connections_rejected", 1, IT_WAIT_MS);
    close(held);
}

static void test_process_stop_under_load_prompt_and_clean(void **state)
{
    struct it_daemon *d = daemon_of(state);
    int fds0 = count_fds(d->pid), threads0 = count_threads(d->pid), held[N_HELD];
    uint16_t port = create(d, "ps", "echo", "{\"mode\":\"stream\"}");
    struct it_http r;
    int64_t t0;

    for (unsigned i = 0; i < N_HELD; i++)
        held[i] = connect_echoed(port);
    assert_int_equal(count_children(d->pid), N_HELD);
    t0 = it_now_ms();
    assert_int_equal(it_http_raw(d, "PATCH", "/api/v1/listeners/ps", "{\"enabled\":false}", 17,
                                 "application/merge-patch+json", &r),
                     0);
    assert_int_equal(r.status, 200);
    it_http_fini(&r);
    assert_true(it_now_ms() - t0 < 1000);
    /* Reaped before the stop returned. */
    assert_int_equal(count_children(d->pid), 0);
    assert_int_equal(it_metric(d, "ps", "connections_active"), 0);
    for (unsigned i = 0; i < N_HELD; i++) {
        char *rest = NULL;

        assert_true(it_read_to_eof(held[i], IT_IO_TIMEOUT_MS, &rest, NULL) != -ETIMEDOUT);
        free(rest);
        close(held[i]);
    }
    /* Back to what the daemon had before the listener existed (the API's own keep-alive
     * connections may have closed meanwhile, hence "at most"). */
    assert_count_at_most_eventually(d->pid, count_fds, fds0, "fds");
    assert_count_at_most_eventually(d->pid, count_threads, threads0, "threads");
}

static void test_process_backup_refused(void **state)
{
    struct it_daemon *d = daemon_of(state);
    struct it_http r;
    static const char body[] = "{\"id\":\"pb\",\"service\":\"backup\",\"address\":\"127.0.0.1\","
                               "\"port\":0,\"model\":\"process\"}";

    it_http(d, "POST", "/api/v1/listeners", body, &r);
    /* backup's instance (quota, version numbers) is shared by its sessions: not across
     * processes. */
    it_assert_problem(&r, 400, "model");
    assert_non_null(strstr(it_json_str(r.json, "detail"), "not available for backup"));
    it_http_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
        T(test_process_echo_and_date_served_exactly),
        T(test_process_concurrent_clients_served_and_reaped),
        T(test_process_open_connection_counted_live),
        T(test_process_over_limit_rejected),
        T(test_process_stop_under_load_prompt_and_clean),
        T(test_process_backup_refused),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
