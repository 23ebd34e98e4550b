/*
 * The daemon's threads as `ps -L` shows them: each has a name of its own ("ss-api" for the API,
 * "l:<id>/<role>" for a listener's), and none is left with libmicrohttpd's "MHD-single" or the
 * process's "sockserv" but the main thread. The API thread runs at SCHED_FIFO 1 when the daemon
 * may (root here), and no thread it starts inherits that; health reports it. Without the right
 * (RLIMIT_RTPRIO 0 and no CAP_SYS_NICE) it falls back to plain SCHED_OTHER, says so in the log
 * and in health, and serves as usual; --api-priority nice gives it nice -10 instead, off nothing.
 */

#include <dirent.h>
#include <errno.h>
#include <sched.h>
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

/* Threads a sanitizer's runtime starts in the daemon (it is built like this test). */
#if defined(__SANITIZE_THREAD__)
#define SANITIZER_THREADS 1
#else
#define SANITIZER_THREADS 0
#endif

/* A closed-loop hammer of the metrics lasts at most this long before its budget must show. */
#define HAMMER_MS 20000

/* What thread_named() looks for, and what it found. */
struct name_search {
    const char *name;
    pid_t found;
    int count;
    pid_t *ids; /* NULL, or where the first max of their ids go */
    size_t max, n;
};

static void match_name(void *ctx, pid_t tid, const char *comm)
{
    struct name_search *q = ctx;

    if (comm && strcmp(comm, q->name) == 0) {
        q->count++;
        if (!q->found)
            q->found = tid;
        if (q->ids && q->n < q->max)
            q->ids[q->n++] = tid;
    }
}

/* The id of d's thread called name, or 0. With ret_count: how many have that name. */
static pid_t thread_named(const struct it_daemon *d, const char *name, int *ret_count)
{
    struct name_search q = {.name = name};

    assert_int_equal(it_threads_each(d->pid, match_name, &q), 0);
    if (ret_count)
        *ret_count = q.count;
    return q.found;
}

struct named {
    const struct it_daemon *d;
    const char *name;
};

static bool has_thread(void *arg)
{
    const struct named *n = arg;

    return thread_named(n->d, n->name, NULL) > 0;
}

/* Asserts that d has a thread called name (within IT_WAIT_MS); returns its id. */
static pid_t assert_thread(const struct it_daemon *d, const char *name)
{
    struct named n = {d, name};

    if (!it_wait_until(IT_WAIT_MS, has_thread, &n)) {
        char cmd[64];

        snprintf(cmd, sizeof(cmd), "ps -L -o tid,comm -p %d >&2", (int)d->pid);
        (void)!system(cmd);
        fail_msg("no thread of the daemon is called '%s'", name);
    }
    return thread_named(d, name, NULL);
}

static json_t *api_thread_of(const struct it_daemon *d)
{
    json_t *health = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);
    json_t *t = json_incref(json_object_get(health, "api_thread"));

    json_decref(health);
    assert_non_null(t);
    return t;
}

static bool log_has(const struct it_daemon *d, const char *text)
{
    char *log = it_daemon_stderr(d);
    bool has = strstr(log, text) != NULL;

    free(log);
    return has;
}

/* Whether this process may give a thread SCHED_FIFO (it runs the daemon as itself). */
static bool may_fifo(void)
{
    struct rlimit rl;

    return geteuid() == 0 || (getrlimit(RLIMIT_RTPRIO, &rl) == 0 && rl.rlim_cur >= 1);
}

static void test_threads_daemon_and_listeners_named_by_role(void **state)
{
    struct it_fixture *f = *state;
    const struct it_daemon *d = &f->d;
    static const char *const daemon_threads[] = {
        "ss-api", "ss-changes", "ss-watch",   "ss-tick",      "ss-upload0",
        "ss-dl0", "ss-dl1",     "ss-upload1", "ss-keepalive",
    };
    static const char *const listener_threads[] = {
        "l:ev/ev0", "l:ev/ev1", "l:th/acc",  "l:po/w0",   "l:po/w1",
        "l:sq/acc", "l:pr/acc", "l:ud/udp0", "l:bk/off0", "l:a-listene/ev0",
    };
    uint16_t th_port;
    int fd, count;

    (void)it_listener_create_port(d, "{\"id\":\"ev\",\"service\":\"echo\",\"address\":"
                                     "\"127.0.0.1\",\"port\":0,\"model\":\"event\",\"workers\":2}");
    th_port = it_listener_create_port(
        d, "{\"id\":\"th\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
           "\"model\":\"thread\"}");
    (void)it_listener_create_port(d, "{\"id\":\"po\",\"service\":\"echo\",\"address\":"
                                     "\"127.0.0.1\",\"port\":0,\"model\":\"pool\",\"workers\":2}");
    (void)it_listener_create_port(d, "{\"id\":\"sq\",\"service\":\"echo\",\"address\":"
                                     "\"127.0.0.1\",\"port\":0,\"model\":\"sequential\"}");
    (void)it_listener_create_port(d, "{\"id\":\"pr\",\"service\":\"echo\",\"address\":"
                                     "\"127.0.0.1\",\"port\":0,\"model\":\"process\"}");
    (void)it_listener_create_port(d, "{\"id\":\"ud\",\"service\":\"echo\",\"transport\":\"udp\","
                                     "\"address\":\"127.0.0.1\",\"port\":0}");
    (void)it_listener_create_port(d, "{\"id\":\"bk\",\"service\":\"backup\",\"address\":"
                                     "\"127.0.0.1\",\"port\":0,\"model\":\"event\","
                                     "\"workers\":1}");
    (void)it_listener_create_port(d, "{\"id\":\"a-listener-with-a-long-id\",\"service\":\"echo\","
                                     "\"address\":\"127.0.0.1\",\"port\":0,\"model\":\"event\","
                                     "\"workers\":1}");
    /* A connection of the thread model has a thread of its own while it lasts. */
    fd = it_tcp_connect_ok(th_port);
    it_send_str_ok(fd, "x\n");
    it_expect_line(fd, "x");
    (void)assert_thread(d, "l:th/conn");
    close(fd);

    for (size_t i = 0; i < sizeof(daemon_threads) / sizeof(daemon_threads[0]); i++)
        (void)assert_thread(d, daemon_threads[i]);
    for (size_t i = 0; i < sizeof(listener_threads) / sizeof(listener_threads[0]); i++)
        (void)assert_thread(d, listener_threads[i]);
    assert_int_equal(thread_named(d, "MHD-single", NULL), 0);
    /* The main thread keeps the process's name; no other thread of the daemon's shares it
     * (ThreadSanitizer's runtime adds one of its own, started by the main thread). */
    assert_int_equal(thread_named(d, "sockserv", &count), d->pid);
    assert_int_equal(count, SANITIZER_THREADS + 1);
}

/* Whether thread tid of d is called name. */
static bool thread_is(const struct it_daemon *d, pid_t tid, const char *name)
{
    char path[64];
    char *comm;
    bool is;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)d->pid, (int)tid);
    comm = it_file_read(path, NULL);
    if (!comm)
        return false;
    comm[strcspn(comm, "\n")] = '\0';
    is = strcmp(comm, name) == 0;
    free(comm);
    return is;
}

struct tid_named {
    const struct it_daemon *d;
    pid_t tid;
    const char *name;
};

static bool tid_is_named(void *arg)
{
    const struct tid_named *t = arg;

    return thread_is(t->d, t->tid, t->name);
}

/* The ids of d's threads called name (at most max of them) into ret; returns how many. */
static size_t threads_named(const struct it_daemon *d, const char *name, pid_t *ret, size_t max)
{
    struct name_search q = {.name = name, .ids = ret, .max = max};

    assert_int_equal(it_threads_each(d->pid, match_name, &q), 0);
    return q.n;
}

static bool tid_is_batch(void *arg)
{
    return sched_getscheduler(*(const pid_t *)arg) == SCHED_BATCH;
}

/*
 * A runner's thread is not ended with its runner but parked ("ss-idle" in `ps -L`), and the
 * next runner to start runs on a parked thread: a change starts no thread when one is parked.
 */
static void test_threads_runner_thread_parked_then_reused(void **state)
{
    struct it_fixture *f = *state;
    const struct it_daemon *d = &f->d;
    pid_t first, second, third, parked[64];
    size_t n_parked;
    bool reused = false;
    uint16_t port;

    /* drain_timeout_ms 0: a replaced runner ends at the change's commit. */
    port = it_listener_create_port(d, "{\"id\":\"mv\",\"service\":\"echo\",\"address\":"
                                      "\"127.0.0.1\",\"port\":0,\"model\":\"event\","
                                      "\"workers\":1,\"drain_timeout_ms\":0}");
    first = assert_thread(d, "l:mv/ev0");
    json_decref(
        it_http_expect(d, "PATCH", "/api/v1/listeners/mv", "{\"max_connections\":100}", 200));
    if (!it_wait_until(IT_WAIT_MS, tid_is_named, &(struct tid_named){d, first, "ss-idle"}))
        fail_msg("the replaced runner's thread %d is not parked as ss-idle", (int)first);
    second = assert_thread(d, "l:mv/ev0");
    assert_int_not_equal(second, first);
    it_assert_tcp_echo("127.0.0.1", port, "a\n", 2);

    n_parked = threads_named(d, "ss-idle", parked, 64);
    assert_true(n_parked >= 1);
    json_decref(
        it_http_expect(d, "PATCH", "/api/v1/listeners/mv", "{\"max_connections\":101}", 200));
    /* The one it replaced is parked in turn; the new runner took a thread parked before. */
    if (!it_wait_until(IT_WAIT_MS, tid_is_named, &(struct tid_named){d, second, "ss-idle"}))
        fail_msg("the replaced runner's thread %d is not parked as ss-idle", (int)second);
    third = assert_thread(d, "l:mv/ev0");
    for (size_t i = 0; i < n_parked; i++)
        reused = reused || parked[i] == third;
    if (!reused)
        fail_msg("the new runner runs on thread %d, which was not parked", (int)third);
    it_assert_tcp_echo("127.0.0.1", port, "b\n", 2);
    /* Parked, a thread waits at SCHED_BATCH (`ps -L -o cls` shows B); running a runner, it is
     * SCHED_OTHER (TS) again. */
    if (!it_wait_until(IT_WAIT_MS, tid_is_batch, &second))
        fail_msg("the parked thread %d is not at SCHED_BATCH (policy %d)", (int)second,
                 sched_getscheduler(second));
    assert_int_equal(sched_getscheduler(third), SCHED_OTHER);
}

static void test_threads_api_thread_fifo_reported_in_health(void **state)
{
    struct it_fixture *f = *state;
    const struct it_daemon *d = &f->d;
    struct sched_param sp;
    json_t *t;
    pid_t api, ev;

    if (!may_fifo())
        skip(); /* not root and no RLIMIT_RTPRIO: the fallback tests cover this case */
    api = assert_thread(d, "ss-api");
    assert_int_equal(sched_getscheduler(api) & ~SCHED_RESET_ON_FORK, SCHED_FIFO);
    assert_int_equal(sched_getparam(api, &sp), 0);
    assert_int_equal(sp.sched_priority, 1);
    t = api_thread_of(d);
    assert_string_equal(it_json_str(t, "requested"), "fifo");
    assert_string_equal(it_json_str(t, "policy"), "fifo");
    assert_int_equal(it_json_int(t, "priority"), 1);
    json_decref(t);
    assert_true(log_has(d, "the API thread runs at SCHED_FIFO priority 1"));

    /* A listener made through the API runs at the ordinary policy, whichever thread made it. */
    (void)it_listener_create_port(d, "{\"id\":\"ev\",\"service\":\"echo\",\"address\":"
                                     "\"127.0.0.1\",\"port\":0,\"model\":\"event\",\"workers\":1}");
    ev = assert_thread(d, "l:ev/ev0");
    assert_int_equal(sched_getscheduler(ev) & ~SCHED_RESET_ON_FORK, SCHED_OTHER);
    assert_int_equal(sched_getscheduler(assert_thread(d, "ss-changes")), SCHED_OTHER);
}

/* Starts the daemon without CAP_SYS_NICE and with RLIMIT_RTPRIO 0 (RLIMIT_NICE is 0 already
 * unless raised: no nice value below the one it starts with). */
static void start_unprivileged(struct it_fixture *f)
{
    const char *const wrapper[] = {
        "prlimit", "--rtprio=0", "--nice=0", "setpriv", "--bounding-set", "-sys_nice", NULL,
    };
    int r;

    r = it_daemon_start_wrapped(&f->d, &(struct it_daemon_opts){.dir = f->dir}, wrapper, NULL);
    if (r < 0) {
        it_daemon_dump_stderr(&f->d);
        fail_msg("the daemon did not start under prlimit and setpriv: %s", strerror(-r));
    }
}

/* This process's nice value: the daemon's threads start with it. */
static int own_nice(void)
{
    return getpriority(PRIO_PROCESS, 0);
}

/* The daemon serves: a listener is made and echoes. */
static void assert_serves(const struct it_daemon *d)
{
    uint16_t port = it_listener_create_port(
        d, "{\"id\":\"e\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
           "\"model\":\"event\",\"workers\":1}");

    it_assert_tcp_echo("127.0.0.1", port, "hello\n", 6);
    assert_int_equal(sched_getscheduler(assert_thread(d, "l:e/ev0")) & ~SCHED_RESET_ON_FORK,
                     SCHED_OTHER);
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)assert_thread(d, "l:e/ev0")), own_nice());
}

static void test_threads_priority_nice_lowers_the_api_threads_nice(void **state)
{
    struct it_fixture *f = *state;
    const char *const args[] = {"--api-priority", "nice", NULL};
    json_t *t;
    pid_t api;

    if (!may_fifo())
        skip(); /* not root: no nice value below the one it starts with */
    it_daemon_start_ok(&f->d, &(struct it_daemon_opts){.dir = f->dir, .extra_args = args});
    api = assert_thread(&f->d, "ss-api");
    assert_int_equal(sched_getscheduler(api) & ~SCHED_RESET_ON_FORK, SCHED_OTHER);
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)api), -10);
    t = api_thread_of(&f->d);
    assert_string_equal(it_json_str(t, "requested"), "nice");
    assert_string_equal(it_json_str(t, "policy"), "other");
    assert_int_equal(it_json_int(t, "priority"), 0);
    assert_int_equal(it_json_int(t, "nice"), -10);
    json_decref(t);
    assert_true(log_has(&f->d, "the API thread runs at nice -10"));
    /* Threads it starts do not inherit the nice value. */
    assert_serves(&f->d);
}

static void test_threads_nothing_permitted_runs_plain_and_serves(void **state)
{
    struct it_fixture *f = *state;
    json_t *t;
    pid_t api;

    start_unprivileged(f);
    api = assert_thread(&f->d, "ss-api");
    assert_int_equal(sched_getscheduler(api) & ~SCHED_RESET_ON_FORK, SCHED_OTHER);
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)api), own_nice());
    t = api_thread_of(&f->d);
    assert_string_equal(it_json_str(t, "requested"), "fifo");
    assert_string_equal(it_json_str(t, "policy"), "other");
    assert_int_equal(it_json_int(t, "priority"), 0);
    assert_int_equal(it_json_int(t, "nice"), own_nice());
    json_decref(t);
    assert_true(log_has(&f->d, "SCHED_FIFO is not permitted"));
    assert_true(log_has(&f->d, "the API thread runs at SCHED_OTHER like the listeners"));
    assert_serves(&f->d);
}

static void test_threads_priority_off_leaves_the_api_thread_alone(void **state)
{
    struct it_fixture *f = *state;
    const char *const args[] = {"--api-priority", "off", NULL};
    json_t *t;

    it_daemon_start_ok(&f->d, &(struct it_daemon_opts){.dir = f->dir, .extra_args = args});
    assert_int_equal(sched_getscheduler(assert_thread(&f->d, "ss-api")), SCHED_OTHER);
    t = api_thread_of(&f->d);
    assert_string_equal(it_json_str(t, "requested"), "off");
    assert_string_equal(it_json_str(t, "policy"), "other");
    json_decref(t);
}

static void test_threads_priority_unknown_is_usage_error(void **state)
{
    struct it_fixture *f = *state;
    const char *const args[] = {"--api-priority", "realtime", NULL};
    int r;

    r = it_daemon_start(&f->d, &(struct it_daemon_opts){.dir = f->dir, .extra_args = args});
    assert_int_equal(r, -ECHILD);
    assert_false(it_status_is_exit0(f->d.status));
    assert_true(log_has(&f->d, "--api-priority: 'realtime' is not fifo, nice or off"));
}

struct hammer {
    const struct it_daemon *d;
};

/* A round of closed-loop requests for the metrics; true once the budget dropped the API
 * thread at least once. */
static bool hammered_until_demoted(void *arg)
{
    const struct hammer *h = arg;
    json_t *t;
    bool demoted;

    for (int i = 0; i < 50; i++) {
        struct it_http r;

        assert_int_equal(it_http_request(h->d, &(struct it_req){.path = "/api/v1/metrics"}, &r), 0);
        assert_int_equal(r.status, 200);
        it_http_fini(&r);
    }
    t = api_thread_of(h->d);
    demoted = it_json_int(t, "demotions") > 0;
    json_decref(t);
    return demoted;
}

static void test_threads_busy_api_dropped_by_its_budget(void **state)
{
    struct it_fixture *f = *state;
    struct hammer h = {&f->d};
    json_t *t;

    if (!may_fifo())
        skip();
    for (int i = 0; i < 64; i++) {
        char body[160];

        snprintf(body, sizeof(body),
                 "{\"id\":\"e%d\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
                 "\"model\":\"event\",\"workers\":1}",
                 i);
        (void)it_listener_create_port(&f->d, body);
    }
    assert_true(it_wait_until(HAMMER_MS, hammered_until_demoted, &h));
    /* Raised again in a later window: still reported as what it was given. */
    t = api_thread_of(&f->d);
    assert_string_equal(it_json_str(t, "policy"), "fifo");
    json_decref(t);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
#define T_DIR(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup_dir, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_threads_daemon_and_listeners_named_by_role),
        T(test_threads_runner_thread_parked_then_reused),
        T(test_threads_api_thread_fifo_reported_in_health),
        T_DIR(test_threads_priority_nice_lowers_the_api_threads_nice),
        T_DIR(test_threads_nothing_permitted_runs_plain_and_serves),
        T_DIR(test_threads_priority_off_leaves_the_api_thread_alone),
        T_DIR(test_threads_priority_unknown_is_usage_error),
        T(test_threads_busy_api_dropped_by_its_budget),
    };
#undef T
#undef T_DIR

    return cmocka_run_group_tests(tests, NULL, NULL);
}
