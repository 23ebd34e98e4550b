/*
 * The daemon's life: graceful exits on SIGTERM and SIGINT, the listener set kept across
 * restarts in the state file, refusing a corrupt state file, the embedded defaults on a first
 * start, and failing clearly when its API port is taken.
 */

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define GRACEFUL_MS 2000

static struct it_fixture *fixture_of(void **state)
{
    return *state;
}

static void start_daemon(struct it_fixture *f, bool defaults)
{
    it_daemon_start_ok(&f->d, &(struct it_daemon_opts){.dir = f->dir, .defaults = defaults});
}

/* Sends sig and asserts a clean exit within GRACEFUL_MS. */
static void stop_gracefully(struct it_fixture *f, int sig)
{
    int status, r;
    int64_t ms;

    r = it_daemon_stop(&f->d, sig, IT_EXIT_TIMEOUT_MS, &status, &ms);
    if (r < 0) {
        it_daemon_dump_stderr(&f->d);
        fail_msg("the daemon did not exit on %s within %d ms", strsignal(sig), IT_EXIT_TIMEOUT_MS);
    }
    if (!it_status_is_exit0(status) || ms > GRACEFUL_MS) {
        it_daemon_dump_stderr(&f->d);
        fail_msg("on %s the daemon ended with %s after %lld ms; want exit 0 within %d ms",
                 strsignal(sig), it_status_str(status), (long long)ms, GRACEFUL_MS);
    }
    fprintf(stderr, "# %s: exit 0 after %lld ms\n", strsignal(sig), (long long)ms);
}

/* Starts a daemon that must refuse to start; returns its stderr (free it). */
static char *start_must_fail(struct it_fixture *f, const struct it_daemon_opts *opts)
{
    int r = it_daemon_start(&f->d, opts);
    char *err;

    if (r == 0) {
        it_daemon_dump_stderr(&f->d);
        fail_msg("the daemon started (%s); want it to refuse", f->d.url);
    }
    if (r != -ECHILD)
        fail_msg("the daemon neither started nor exited: %s", strerror(-r));
    err = it_daemon_stderr(&f->d);
    fprintf(stderr, "# the daemon refused with %s: %s\n", it_status_str(f->d.status), err);
    assert_true(WIFEXITED(f->d.status));
    assert_int_not_equal(WEXITSTATUS(f->d.status), 0);
    return err;
}

/*
 * The listener array of a state file, asserting the one format the daemon writes (see
 * sockserv-state(5)): {"version": 1, "revision": N, "listeners": [{"id": ...}, ...]}, nothing more.
 * Borrowed from root.
 */
static json_t *state_listeners(json_t *root)
{
    json_t *l = json_object_get(root, "listeners");

    if (!json_is_object(root) || json_object_size(root) != 3 || !json_is_array(l) ||
        !json_is_integer(json_object_get(root, "version")) ||
        json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_integer(json_object_get(root, "revision"))) {
        char *text = json_dumps(root, JSON_COMPACT);

        fprintf(stderr, "# the state file: %s\n", text ? text : "(not printable)");
        free(text);
        fail_msg("the state file is not {\"version\": 1, \"revision\": N, \"listeners\": [...]}");
    }
    return l;
}

/* The listener id in the array listeners, or NULL. Borrowed. */
static json_t *state_find(json_t *listeners, const char *id)
{
    size_t i;
    json_t *v;

    json_array_foreach(listeners, i, v)
    {
        const json_t *vid = json_object_get(v, "id");

        assert_true(json_is_string(vid));
        if (strcmp(json_string_value(vid), id) == 0)
            return v;
    }
    return NULL;
}

/* Loads the state file and asserts it is valid JSON holding exactly ids (n of them). Returns
 * the root (new reference). */
static json_t *assert_state_file(const struct it_daemon *d, const char *const *ids, size_t n)
{
    json_error_t e;
    json_t *root, *l;

    root = json_load_file(d->state_file, 0, &e);
    if (!root) {
        char *text = it_file_read(d->state_file, NULL);

        fprintf(stderr, "# %s: %s (line %d): %s\n", d->state_file, e.text, e.line,
                text ? text : "(unreadable)");
        free(text);
        fail_msg("the state file is not valid JSON");
    }
    l = state_listeners(root);
    if (json_array_size(l) != n) {
        char *text = json_dumps(root, JSON_COMPACT);

        fprintf(stderr, "# want %zu listeners in %s: %s\n", n, d->state_file, text);
        free(text);
        fail_msg("the state file does not hold the listener set");
    }
    for (size_t i = 0; i < n; i++)
        if (!state_find(l, ids[i]))
            fail_msg("the state file lacks listener %s", ids[i]);
    return root;
}

/* No temporary file of an atomic write is left beside the state file. */
static void assert_no_temp_files(const struct it_daemon *d)
{
    DIR *dir = opendir(d->state_dir);
    struct dirent *e;

    assert_non_null(dir);
    while ((e = readdir(dir))) {
        if (strcmp(e->d_name, "listeners.json") == 0)
            continue;
        if (strncmp(e->d_name, "listeners.json", 14) == 0 || strstr(e->d_name, "tmp"))
            fail_msg("a temporary file is left in the state directory: %s", e->d_name);
    }
    closedir(dir);
}

/* The listeners of GET /api/v1/listeners without status and metrics, keyed by id. */
static json_t *configs(const struct it_daemon *d)
{
    json_t *j = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200);
    json_t *out = json_object(), *v;
    size_t i;

    json_array_foreach(json_object_get(j, "listeners"), i, v)
    {
        json_t *c = json_deep_copy(v);

        json_object_del(c, "status");
        json_object_del(c, "metrics");
        json_object_set_new(out, it_json_str(v, "id"), c);
    }
    json_decref(j);
    return out;
}

/* ---- signals ---- */

static void run_signal(void **state, int sig)
{
    static const char *const ids[] = {"e1", "s1", "u1"};
    struct it_fixture *f = fixture_of(state);
    uint16_t tport, sport, uport;
    int c[4], r;
    char buf[8];

    start_daemon(f, false);
    tport = it_listener_create_port(&f->d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}");
    sport = it_listener_create_port(
        &f->d, "{\"id\":\"s1\",\"service\":\"echo\",\"port\":0,\"model\":\"sequential\"}");
    uport = it_listener_create_port(
        &f->d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");

    /* Open connections: served and idle on both models, and one with a message in flight. */
    for (int i = 0; i < 3; i++) {
        c[i] =
            it_tcp_connect(i == 2 ? "::1" : "127.0.0.1", i == 2 ? sport : tport, IT_IO_TIMEOUT_MS);
        assert_true(c[i] >= 0);
        assert_int_equal(it_send_all(c[i], "open", 4, IT_IO_TIMEOUT_MS), 0);
        assert_int_equal(it_recv_exact(c[i], buf, 4, IT_IO_TIMEOUT_MS), 0);
    }
    c[3] = it_tcp_connect("127.0.0.1", tport, IT_IO_TIMEOUT_MS);
    assert_true(c[3] >= 0);
    assert_int_equal(it_send_all(c[3], "x", 1, IT_IO_TIMEOUT_MS), 0);
    it_assert_metric_eventually(&f->d, "e1", "connections_active", 3, IT_WAIT_MS);
    it_assert_udp_echo("127.0.0.1", uport, "udp", 3);

    stop_gracefully(f, sig);

    /* Every connection was closed. */
    for (int i = 0; i < 4; i++) {
        r = it_read_to_eof(c[i], IT_IO_TIMEOUT_MS, NULL, NULL);
        assert_true(r == 0 || r == -ECONNRESET);
        close(c[i]);
    }
    assert_true(it_tcp_is_refused("127.0.0.1", tport));
    /* And the set was kept. */
    json_decref(assert_state_file(&f->d, ids, 3));
}

static void test_lifecycle_sigterm_with_open_connections_exits_0_within_2s(void **state)
{
    run_signal(state, SIGTERM);
}

static void test_lifecycle_sigint_with_open_connections_exits_0_within_2s(void **state)
{
    run_signal(state, SIGINT);
}

/* ---- the state file ---- */

static void test_lifecycle_restart_restores_listener_set(void **state)
{
    static const char *const ids[] = {"a-tcp", "b-udp", "c-off", "e-patched"};
    struct it_fixture *f = fixture_of(state);
    json_t *before, *after, *j, *list, *v;
    char *tb, *ta;
    size_t i;

    start_daemon(f, false);
    json_decref(it_listener_create(
        &f->d, "{\"id\":\"a-tcp\",\"service\":\"echo\",\"port\":0,\"model\":\"sequential\","
               "\"idle_timeout_ms\":1234,\"max_connections\":77,"
               "\"options\":{\"mode\":\"once\"}}"));
    json_decref(it_listener_create(
        &f->d, "{\"id\":\"b-udp\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0,"
               "\"address\":\"::1\",\"workers\":2,\"options\":{\"max_datagram\":512}}"));
    json_decref(it_listener_create(&f->d, "{\"id\":\"c-off\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_http_expect(&f->d, "POST", "/api/v1/listeners/c-off/stop", NULL, 200));
    json_decref(it_listener_create(&f->d, "{\"id\":\"d-gone\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_http_expect(&f->d, "DELETE", "/api/v1/listeners/d-gone", NULL, 204));
    json_decref(
        it_listener_create(&f->d, "{\"id\":\"e-patched\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_http_expect(&f->d, "PATCH", "/api/v1/listeners/e-patched",
                               "{\"idle_timeout_ms\":999,\"address\":\"127.0.0.1\"}", 200));
    before = configs(&f->d);
    stop_gracefully(f, SIGTERM);

    /* Without --no-defaults: a state file exists, so the defaults must not come back. */
    start_daemon(f, true);
    after = configs(&f->d);
    tb = json_dumps(before, JSON_COMPACT | JSON_SORT_KEYS);
    ta = json_dumps(after, JSON_COMPACT | JSON_SORT_KEYS);
    if (!json_equal(before, after))
        fail_msg("the restored set differs:\n#   before %s\n#   after  %s", tb, ta);
    free(tb);
    free(ta);
    json_decref(before);
    json_decref(after);

    j = it_http_expect(&f->d, "GET", "/api/v1/listeners", NULL, 200);
    list = json_object_get(j, "listeners");
    assert_int_equal(json_array_size(list), 4);
    json_array_foreach(list, i, v)
    {
        assert_string_equal(it_json_str(v, "id"), ids[i]);
        assert_string_equal(it_json_str(v, "status.state"), i == 2 ? "stopped" : "running");
    }
    /* Each restored listener serves the way it was configured. */
    {
        char *reply = NULL;
        size_t len = 0;
        uint16_t port = it_bound_port(json_array_get(list, 0));

        assert_int_equal(
            it_tcp_exchange("127.0.0.1", port, "once", 4, false, IT_IO_TIMEOUT_MS, &reply, &len),
            0);
        assert_int_equal(len, 4);
        free(reply);
        it_assert_udp_echo("::1", it_bound_port(json_array_get(list, 1)), "udp", 3);
        it_assert_tcp_echo("127.0.0.1", it_bound_port(json_array_get(list, 3)), "patched", 7);
    }
    json_decref(j);
}

static void test_lifecycle_state_file_valid_json_after_each_change(void **state)
{
    struct it_fixture *f = fixture_of(state);
    struct it_daemon *d = &f->d;
    json_t *root, *x;

    start_daemon(f, false);
    json_decref(it_listener_create(d, "{\"id\":\"x\",\"service\":\"echo\",\"port\":0}"));
    json_decref(assert_state_file(d, (const char *const[]){"x"}, 1));

    json_decref(it_listener_create(
        d, "{\"id\":\"y\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}"));
    json_decref(assert_state_file(d, (const char *const[]){"x", "y"}, 2));

    json_decref(
        it_http_expect(d, "PATCH", "/api/v1/listeners/x", "{\"idle_timeout_ms\":4321}", 200));
    root = assert_state_file(d, (const char *const[]){"x", "y"}, 2);
    x = state_find(state_listeners(root), "x");
    assert_int_equal(it_json_int(x, "idle_timeout_ms"), 4321);
    json_decref(root);

    json_decref(it_http_expect(d, "PUT", "/api/v1/listeners/y",
                               "{\"service\":\"echo\",\"transport\":\"udp\",\"port\":0,"
                               "\"workers\":3}",
                               200));
    root = assert_state_file(d, (const char *const[]){"x", "y"}, 2);
    assert_int_equal(it_json_int(state_find(state_listeners(root), "y"), "workers"), 3);
    json_decref(root);

    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/x/stop", NULL, 200));
    root = assert_state_file(d, (const char *const[]){"x", "y"}, 2);
    assert_false(it_json_bool(state_find(state_listeners(root), "x"), "enabled"));
    json_decref(root);

    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/x/start", NULL, 200));
    root = assert_state_file(d, (const char *const[]){"x", "y"}, 2);
    x = json_object_get(state_find(state_listeners(root), "x"), "enabled");
    assert_true(x == NULL || json_is_true(x));
    json_decref(root);

    json_decref(it_http_expect(d, "DELETE", "/api/v1/listeners/y", NULL, 204));
    json_decref(assert_state_file(d, (const char *const[]){"x"}, 1));
    assert_no_temp_files(d);
}

/* Writes text over the state file, starts the daemon, and asserts it refuses with a message
 * naming the file, leaving the file as it was. */
static void assert_refuses_state(struct it_fixture *f, const char *text)
{
    char path[IT_PATH_MAX], *err, *after;

    snprintf(path, sizeof(path), "%s/state/listeners.json", f->dir);
    assert_int_equal(it_file_write(path, text, strlen(text)), 0);
    err = start_must_fail(f, &(struct it_daemon_opts){.dir = f->dir});
    assert_non_null(strstr(err, "listeners.json"));
    free(err);
    after = it_file_read(path, NULL);
    assert_non_null(after);
    assert_string_equal(after, text);
    free(after);
}

static void test_lifecycle_corrupt_state_file_refuses_to_start(void **state)
{
    struct it_fixture *f = fixture_of(state);
    char *good, *half;
    json_t *root, *bad;
    size_t len;

    /* A real state file to spoil. */
    start_daemon(f, false);
    json_decref(it_listener_create(&f->d, "{\"id\":\"good\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_listener_create(&f->d, "{\"id\":\"bad\",\"service\":\"echo\",\"port\":0}"));
    stop_gracefully(f, SIGTERM);
    good = it_file_read(f->d.state_file, &len);
    assert_non_null(good);

    assert_refuses_state(f, "garbage, not JSON {");
    /* A write cut in half. */
    half = strndup(good, len / 2);
    assert_non_null(half);
    assert_refuses_state(f, half);
    free(half);

    /* Valid JSON, one listener invalid: an unknown service, then a port out of range. */
    root = json_loads(good, 0, NULL);
    assert_non_null(root);
    bad = state_find(state_listeners(root), "bad");
    assert_non_null(bad);
    json_object_set_new(bad, "service", json_string("nope"));
    {
        char *text = json_dumps(root, JSON_INDENT(2));

        assert_refuses_state(f, text);
        free(text);
    }
    json_object_set_new(bad, "service", json_string("echo"));
    json_object_set_new(bad, "port", json_integer(70000));
    {
        char *text = json_dumps(root, JSON_INDENT(2));

        assert_refuses_state(f, text);
        free(text);
    }
    json_decref(root);

    /* The file restored, the daemon starts with both. */
    assert_int_equal(it_file_write(f->d.state_file, good, len), 0);
    start_daemon(f, false);
    json_decref(it_listener_get(&f->d, "good"));
    json_decref(it_listener_get(&f->d, "bad"));
    free(good);
}

static void test_lifecycle_restart_with_port_taken_keeps_listener_failed(void **state)
{
    struct it_fixture *f = fixture_of(state);
    char body[128];
    json_t *j;
    uint16_t port, other;
    int fd;

    start_daemon(f, false);
    port = it_listener_create_port(&f->d, "{\"id\":\"fixed\",\"service\":\"echo\",\"port\":0}");
    /* Pin the port the kernel gave, so that it is asked for again after the restart. */
    snprintf(body, sizeof(body), "{\"port\":%u}", port);
    j = it_http_expect(&f->d, "PATCH", "/api/v1/listeners/fixed", body, 200);
    assert_int_equal(it_json_int(j, "port"), port);
    assert_int_equal(it_bound_port(j), port);
    json_decref(j);
    json_decref(it_listener_create(&f->d, "{\"id\":\"other\",\"service\":\"echo\",\"port\":0}"));
    stop_gracefully(f, SIGTERM);

    fd = it_bind(SOCK_STREAM, "::", port, &port);
    if (fd < 0)
        fail_msg("could not take port %u for the test: %s", port, strerror(-fd));
    start_daemon(f, false);
    j = it_listener_get(&f->d, "fixed");
    assert_string_equal(it_json_str(j, "status.state"), "failed");
    assert_true(strlen(it_json_str(j, "status.error")) > 0);
    assert_true(it_json_bool(j, "enabled"));
    json_decref(j);
    j = it_listener_get(&f->d, "other");
    assert_string_equal(it_json_str(j, "status.state"), "running");
    other = it_bound_port(j);
    json_decref(j);
    it_assert_tcp_echo("127.0.0.1", other, "other", 5);

    /* Once the port is free, start brings it up. */
    close(fd);
    j = it_http_expect(&f->d, "POST", "/api/v1/listeners/fixed/start", NULL, 200);
    assert_string_equal(it_json_str(j, "status.state"), "running");
    json_decref(j);
    it_assert_tcp_echo("::1", port, "fixed", 5);
}

/* ---- defaults ---- */

static bool port_7007_free(void)
{
    uint16_t p;
    int t = it_bind(SOCK_STREAM, "::", 7007, &p);
    int u = it_bind(SOCK_DGRAM, "::", 7007, &p);
    bool free_ = t >= 0 && u >= 0;

    if (t >= 0)
        close(t);
    if (u >= 0)
        close(u);
    return free_;
}

static void test_lifecycle_defaults_on_first_start(void **state)
{
    struct it_fixture *f = fixture_of(state);
    bool is_free = port_7007_free();
    json_t *t, *u;

    start_daemon(f, true);
    t = it_listener_get(&f->d, "echo-tcp");
    u = it_listener_get(&f->d, "echo-udp");
    assert_string_equal(it_json_str(t, "service"), "echo");
    assert_string_equal(it_json_str(t, "transport"), "tcp");
    assert_string_equal(it_json_str(t, "address"), "::");
    assert_int_equal(it_json_int(t, "port"), 7007);
    assert_string_equal(it_json_str(t, "options.mode"), "stream");
    assert_true(it_json_bool(t, "enabled"));
    assert_string_equal(it_json_str(u, "service"), "echo");
    assert_string_equal(it_json_str(u, "transport"), "udp");
    assert_string_equal(it_json_str(u, "address"), "::");
    assert_int_equal(it_json_int(u, "port"), 7007);
    assert_true(it_json_bool(u, "enabled"));

    if (is_free) {
        assert_string_equal(it_json_str(t, "status.state"), "running");
        assert_string_equal(it_json_str(u, "status.state"), "running");
        it_assert_tcp_echo("127.0.0.1", 7007, "default v4", 10);
        it_assert_tcp_echo("::1", 7007, "default v6", 10);
        it_assert_udp_echo("127.0.0.1", 7007, "default v4", 10);
        it_assert_udp_echo("::1", 7007, "default v6", 10);
    } else {
        fprintf(stderr, "# SKIPPED: port 7007 is already in use on this machine; not checking "
                        "that the default listeners serve on it\n");
    }
    json_decref(t);
    json_decref(u);
    /* The defaults are written down as the state. */
    {
        json_t *root = json_load_file(f->d.state_file, 0, NULL);

        assert_non_null(root);
        assert_non_null(state_find(state_listeners(root), "echo-tcp"));
        assert_non_null(state_find(state_listeners(root), "echo-udp"));
        json_decref(root);
    }
}

/* ---- start-up failures ---- */

static void test_lifecycle_api_port_taken_exits_nonzero(void **state)
{
    struct it_fixture *f = fixture_of(state);
    char api[64], port_text[8], *err;
    uint16_t port;
    int fd;

    fd = it_bind(SOCK_STREAM, "127.0.0.1", 0, &port);
    assert_true(fd >= 0);
    snprintf(api, sizeof(api), "127.0.0.1:%u", port);
    snprintf(port_text, sizeof(port_text), "%u", port);
    err = start_must_fail(f, &(struct it_daemon_opts){.dir = f->dir, .api = api});
    assert_true(strcasestr(err, "in use") || strstr(err, port_text));
    free(err);
    close(fd);
}

static void test_lifecycle_daemon_help_exits_0(void **state)
{
    struct it_proc p;

    (void)state;
    it_run((const char *const[]){it_bin(), "daemon", "--help", NULL}, NULL, 0, 20000, &p);
    assert_int_equal(it_proc_exit_code(&p), 0);
    assert_non_null(strstr(p.out, "--api"));
    assert_non_null(strstr(p.out, "--state-dir"));
    assert_non_null(strstr(p.out, "--no-defaults"));
    assert_non_null(strstr(p.out, "--ready-fd"));
    it_proc_fini(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup_dir, it_fixture_teardown)
        T(test_lifecycle_sigterm_with_open_connections_exits_0_within_2s),
        T(test_lifecycle_sigint_with_open_connections_exits_0_within_2s),
        T(test_lifecycle_restart_restores_listener_set),
        T(test_lifecycle_state_file_valid_json_after_each_change),
        T(test_lifecycle_corrupt_state_file_refuses_to_start),
        T(test_lifecycle_restart_with_port_taken_keeps_listener_failed),
        T(test_lifecycle_defaults_on_first_start),
        T(test_lifecycle_api_port_taken_exits_nonzero),
        T(test_lifecycle_daemon_help_exits_0),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
