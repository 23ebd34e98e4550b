/*
 * The broker's faults, as the daemons of a fleet meet them, on a broker private to this test
 * binary (scripts/broker.sh on free ports; the run's shared broker serves the suites beside and
 * must not be stopped, frozen or alarmed): a broker that is not running when a daemon starts;
 * a broker stopped and started again on the same data (persistent events published before and
 * while it was down all arrive, gap-free; the desired-state stream is intact; the daemons come
 * back and converge); every connection closed by the broker; a broker frozen with SIGSTOP (the
 * daemon sees it within two heartbeats, its API keeps its latency, echo keeps working, SIGTERM
 * stops it in bounded time: no thread stuck in the library); a memory alarm (the connection
 * blocked: the API is fine, metric ticks are counted as dropped, reliable events wait and are
 * delivered once the alarm clears).
 *
 * Every test polls with a deadline. Daemons use --amqp-heartbeat 2.
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define NODES_MAX 3
#define HEARTBEAT_MS 2000
#define JOIN_MS 30000       /* a daemon joins a running broker within this */
#define REJOIN_MS 90000     /* a broker started again, and the daemon's backoff (30 s at most) */
#define EVENT_MS 15000      /* an event reaches a queue within this */
#define QUIET_MS 1500       /* how long "nothing more comes" is watched */
#define CLI_MS 60000        /* one `sockserv fleet` run */
#define API_LATENCY_MS 200  /* every health request while the broker misbehaves */
#define STOP_BOUND_MS 10000 /* SIGTERM to exit while the broker is frozen */

#define CONFIG_F1 "{\"listeners\":[{\"id\":\"f1\",\"service\":\"echo\",\"port\":0}]}"

/* The group's broker. */
struct group {
    char *dir;
    struct it_broker b;
};

struct faults {
    struct group *g;
    char *dir;
    char prefix[64];
    char events[96];
    struct it_daemon d[NODES_MAX];
    struct it_amqp *peer;
    bool alarm; /* the memory watermark was lowered: put it back */
};

static int group_setup(void **state)
{
    struct group *g = calloc(1, sizeof(*g));

    assert_non_null(g);
    *state = g;
    if (!it_have_rabbitmq())
        return 0;
    g->dir = it_tmpdir_new();
    if (it_broker_private_start(&g->b, g->dir) < 0) {
        fprintf(stderr, "# the private broker did not start\n");
        return -1;
    }
    fprintf(stderr, "# private broker %s in %s\n", g->b.url, g->b.dir);
    return 0;
}

static int group_teardown(void **state)
{
    struct group *g = *state;

    if (g->dir) {
        it_broker_private_stop(&g->b);
        it_tmpdir_remove(g->dir);
    }
    free(g);
    return 0;
}

static int faults_setup(void **state)
{
    struct faults *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->g = *state;
    f->dir = it_tmpdir_new();
    it_fleet_prefix(f->prefix, sizeof(f->prefix));
    snprintf(f->events, sizeof(f->events), "%s.events", f->prefix);
    *state = f;
    return 0;
}

static int faults_teardown(void **state)
{
    struct faults *f = *state;
    struct group *g = f->g;
    pid_t bp = g->dir ? it_broker_pid(&g->b) : 0;

    if (bp > 0)
        (void)kill(bp, SIGCONT);
    if (f->alarm) {
        const char *const args[] = {"-q", "set_vm_memory_high_watermark", "0.4", NULL};

        (void)it_broker_ctl_at(&g->b, args);
    }
    it_amqp_close(f->peer);
    it_daemons_stop_all(f->d, NODES_MAX);
    it_tmpdir_remove(f->dir);
    *state = g;
    free(f);
    return 0;
}

/* The fixture, with the broker running; skips without RabbitMQ (a skip fails CI). */
static struct faults *faults_of(void **state)
{
    struct faults *f = *state;

    if (!it_have_rabbitmq()) {
        fprintf(stderr, "# SKIPPED: rabbitmq-server is not installed (scripts/deps.sh test)\n");
        skip();
    }
    if (it_broker_pid(&f->g->b) == 0)
        assert_int_equal(it_broker_private_restart(&f->g->b), 0);
    return f;
}

static struct it_daemon *node_start(struct faults *f, int i, const char *name)
{
    it_fleet_node_start(&f->d[i],
                        &(struct it_fleet_node_opts){
                            .dir = f->dir, .url = f->g->b.url, .prefix = f->prefix, .node = name});
    return &f->d[i];
}

static json_int_t health_int(const struct it_daemon *d, const char *path)
{
    json_t *h = it_fleet_health(d);
    json_int_t v = it_json_int(h, path);

    json_decref(h);
    return v;
}

static void assert_echo(uint16_t port)
{
    static const char msg[] = "echo while the broker misbehaves";

    it_assert_tcp_echo("127.0.0.1", port, msg, sizeof(msg) - 1);
}

/* `sockserv fleet apply -f FILE --node NODE --json` against the private broker: the node's
 * result, into buf; the exit code. */
static int apply_one(struct faults *f, const char *file, const char *node, char *result, size_t cap,
                     json_int_t *ret_offset)
{
    const char *const args[] = {"apply", "-f", file, "--node", node, "--json", NULL};
    struct it_proc p;
    json_t *rows, *row;
    int code;

    it_fleet_cli(f->g->b.url, f->prefix, args, CLI_MS, &p);
    rows = json_loads(p.out, 0, NULL);
    row = json_array_get(rows, 0);
    if (!row)
        fail_msg("fleet apply printed no row (%s): %s %s", it_status_str(p.status), p.out, p.err);
    snprintf(result, cap, "%s", it_json_str(row, "result"));
    if (ret_offset)
        *ret_offset = json_integer_value(json_object_get(row, "offset"));
    code = it_proc_exit_code(&p);
    json_decref(rows);
    it_proc_fini(&p);
    return code;
}

static char *file_in(struct faults *f, const char *name, const char *text)
{
    char *path = it_path_in(f->dir, name);

    assert_int_equal(it_file_write(path, text, strlen(text)), 0);
    return path;
}

/* The reliable events a queue holds (or gets within EVENT_MS, then QUIET_MS of nothing): their
 * seq, deduplicated, must run without a gap; returns how many distinct, and the last seq. Every
 * kind in want (NULL-terminated) must be among them. */
static int drain_reliable(struct it_amqp *a, const char *const *want, json_int_t *ret_last)
{
    bool seen[4096] = {false}, got[8] = {false};
    json_int_t first = 0, last = 0;
    int64_t deadline = it_now_ms() + EVENT_MS;
    int distinct = 0, dup = 0;
    char boot[32] = "";

    for (;;) {
        struct it_amqp_msg m;
        int left = (int)(deadline - it_now_ms());
        int r = it_amqp_next(a, left > 0 ? left : 0, &m);
        const json_t *seq;
        bool all = true;

        if (r == -ETIMEDOUT)
            break;
        assert_int_equal(r, 0);
        assert_non_null(m.json);
        seq = json_object_get(m.json, "seq");
        if (!boot[0])
            snprintf(boot, sizeof(boot), "%s", it_json_str(m.json, "boot"));
        assert_string_equal(it_json_str(m.json, "boot"), boot);
        if (json_is_integer(seq)) {
            json_int_t s = json_integer_value(seq);

            assert_true(s > 0 && s < 4096);
            if (seen[s]) {
                dup++;
            } else {
                seen[s] = true;
                distinct++;
                if (!first || s < first)
                    first = s;
                if (s > last)
                    last = s;
            }
        }
        for (int i = 0; want && want[i]; i++) {
            if (strcmp(it_json_str(m.json, "kind"), want[i]) == 0)
                got[i] = true;
            all = all && got[i];
        }
        if (all)
            deadline = it_now_ms() + QUIET_MS;
        it_amqp_msg_fini(&m);
    }
    fprintf(stderr, "# reliable events: seq %lld..%lld, %d distinct, %d again (republished)\n",
            (long long)first, (long long)last, distinct, dup);
    for (int i = 0; want && want[i]; i++)
        if (!got[i])
            fail_msg("no %s event arrived", want[i]);
    for (json_int_t s = first; s <= last; s++)
        if (!seen[s])
            fail_msg("seq %lld is missing (a persistent event lost)", (long long)s);
    *ret_last = last;
    return distinct;
}

struct not_connected {
    const struct it_daemon *d;
    char state[32];
};

static bool is_not_connected(void *arg)
{
    struct not_connected *w = arg;

    it_fleet_state(w->d, w->state, sizeof(w->state));
    return strcmp(w->state, "connected") != 0;
}

/* Waits until the bridge says it is not connected (connecting or down), within 10 s. */
static void wait_not_connected(const struct it_daemon *d)
{
    struct not_connected w = {.d = d};

    if (!it_wait_until(10000, is_not_connected, &w))
        fail_msg("the bridge still says connected");
    fprintf(stderr, "# broker gone: %s\n", w.state);
}

/* ---- the broker not running when the daemon starts ---- */

static void test_fleet_faults_broker_down_at_start_daemon_joins_later(void **state)
{
    struct faults *f = faults_of(state);
    struct it_daemon *n1;
    uint16_t port;
    json_t *h;

    it_broker_private_stop(&f->g->b);
    n1 = node_start(f, 0, "n1");
    it_assert_daemon_alive(n1);
    port = it_listener_create_port(n1, "{\"id\":\"e\",\"service\":\"echo\",\"port\":0}");
    assert_echo(port);
    {
        int64_t deadline = it_now_ms() + 10000;

        for (;;) {
            h = it_fleet_health(n1);
            if (json_is_string(json_object_get(h, "last_error")))
                break;
            json_decref(h);
            if (it_now_ms() >= deadline)
                fail_msg("no last_error while the broker is down");
            (void)poll(NULL, 0, 100);
        }
    }
    fprintf(stderr, "# broker down: %s, %s\n", it_json_str(h, "state"),
            it_json_str(h, "last_error"));
    assert_string_not_equal(it_json_str(h, "state"), "connected");
    json_decref(h);

    assert_int_equal(it_broker_private_restart(&f->g->b), 0);
    it_fleet_assert_state(n1, "connected", REJOIN_MS);
    assert_echo(port);
}

/* ---- stopped and started again on the same data ---- */

static void test_fleet_faults_broker_restart_keeps_events_and_stream(void **state)
{
    struct faults *f = faults_of(state);
    const char *const pattern[] = {"ev.n1.#", NULL};
    const char *const want[] = {"listener.created", "listener.deleted", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1");
    char queue[128], desired[128], result[32], *fa = file_in(f, "a.json", CONFIG_F1), *fb, *q;
    json_int_t offset_a, last;
    struct it_amqp *a;
    struct it_amqp_msg m;
    json_t *j;

    it_fleet_assert_state(n1, "connected", JOIN_MS);
    /* a durable queue of the test's: it keeps what comes while the broker restarts */
    snprintf(queue, sizeof(queue), "%s.keep", f->prefix);
    a = it_amqp_open_ok(f->g->b.url);
    it_amqp_exchange(a, f->events);
    q = it_amqp_queue_bind(a, queue, f->events, pattern);
    free(q);
    it_amqp_close(a);

    assert_int_equal(apply_one(f, fa, "n1", result, sizeof(result), &offset_a), 0);
    assert_string_equal(result, "applied");
    it_listener_create_port(n1, "{\"id\":\"before\",\"service\":\"echo\",\"port\":0}");

    it_broker_private_stop(&f->g->b);
    /* while it is down: the API works, events wait in the outbox */
    wait_not_connected(n1);
    assert_echo(it_listener_create_port(n1, "{\"id\":\"during\",\"service\":\"echo\",\"port\":0}"));
    j = it_http_expect(n1, "DELETE", "/api/v1/listeners/before", NULL, 204);
    json_decref(j);
    assert_true(health_int(n1, "outbox") > 0);

    assert_int_equal(it_broker_private_restart(&f->g->b), 0);
    it_fleet_assert_state(n1, "connected", REJOIN_MS);

    /* every persistent event, gap-free */
    f->peer = it_amqp_open_ok(f->g->b.url);
    it_amqp_consume(f->peer, queue);
    drain_reliable(f->peer, want, &last);
    it_amqp_close(f->peer);
    f->peer = NULL;

    /* the desired stream holds the record */
    snprintf(desired, sizeof(desired), "%s.desired", f->prefix);
    f->peer = it_amqp_open_ok(f->g->b.url);
    it_amqp_stream(f->peer, desired, -1);
    assert_int_equal(it_amqp_next(f->peer, EVENT_MS, &m), 0);
    assert_int_equal(m.stream_offset, offset_a);
    assert_non_null(m.json);
    assert_non_null(it_json_path(m.json, "config.listeners"));
    it_amqp_msg_fini(&m);

    /* and the daemon converges: a record after the restart applies (not the old one again) */
    fb = file_in(f, "b.json", "{\"listeners\":[{\"id\":\"g1\",\"service\":\"echo\",\"port\":0}]}");
    assert_int_equal(apply_one(f, fb, "n1", result, sizeof(result), NULL), 0);
    assert_string_equal(result, "applied");
    free(fa);
    free(fb);
}

/* ---- every connection closed by the broker ---- */

static void test_fleet_faults_connections_closed_daemon_reconnects(void **state)
{
    struct faults *f = faults_of(state);
    const char *const pattern[] = {"ev.n1.node.hello", NULL};
    const char *const close_all[] = {"-q", "close_all_connections", "closed by the test", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1");
    char queue[128], result[32], *fa = file_in(f, "a.json", CONFIG_F1), *q;
    json_int_t reconnects;
    struct it_amqp *a;
    struct it_amqp_msg m;

    it_fleet_assert_state(n1, "connected", JOIN_MS);
    assert_int_equal(apply_one(f, fa, "n1", result, sizeof(result), NULL), 0);
    assert_string_equal(result, "applied");
    snprintf(queue, sizeof(queue), "%s.hello", f->prefix);
    a = it_amqp_open_ok(f->g->b.url);
    it_amqp_exchange(a, f->events);
    q = it_amqp_queue_bind(a, queue, f->events, pattern);
    free(q);
    it_amqp_close(a);
    reconnects = health_int(n1, "reconnects");

    assert_int_equal(it_broker_ctl_at(&f->g->b, close_all), 0);
    {
        int64_t deadline = it_now_ms() + JOIN_MS;

        while (health_int(n1, "reconnects") <= reconnects) {
            if (it_now_ms() >= deadline)
                fail_msg("the daemon did not reconnect");
            (void)poll(NULL, 0, 50);
        }
    }
    it_fleet_assert_state(n1, "connected", JOIN_MS);

    /* hello again, and the stored offset kept: the record is not applied twice */
    f->peer = it_amqp_open_ok(f->g->b.url);
    it_amqp_consume(f->peer, queue);
    assert_int_equal(it_amqp_next(f->peer, EVENT_MS, &m), 0);
    assert_string_equal(m.routing_key, "ev.n1.node.hello");
    it_amqp_msg_fini(&m);
    assert_int_equal(apply_one(f, fa, "n1", result, sizeof(result), NULL), 0);
    assert_string_equal(result, "unchanged");
    free(fa);
}

/* ---- the broker frozen ---- */

struct latency {
    int requests;
    int64_t worst_ms;
};

/* One health request, timed; asserts it answered within API_LATENCY_MS. Returns the state. */
static const char *timed_state(const struct it_daemon *d, struct latency *l, char *buf, size_t cap)
{
    int64_t t0 = it_now_ms(), ms;

    it_fleet_state(d, buf, cap);
    ms = it_now_ms() - t0;
    l->requests++;
    if (ms > l->worst_ms)
        l->worst_ms = ms;
    if (ms > API_LATENCY_MS)
        fail_msg("GET /api/v1/health took %lld ms while the broker is frozen", (long long)ms);
    return buf;
}

static void test_fleet_faults_frozen_broker_detected_api_unaffected(void **state)
{
    struct faults *f = faults_of(state);
    struct it_daemon *n1 = node_start(f, 0, "n1"), *n2 = node_start(f, 1, "n2");
    pid_t bp = it_broker_pid(&f->g->b);
    struct latency lat = {0};
    char st[32], result[32], *fa = file_in(f, "a.json", CONFIG_F1);
    int64_t t0, detected_ms, stop_ms;
    uint16_t port;
    int status;

    it_fleet_assert_state(n1, "connected", JOIN_MS);
    it_fleet_assert_state(n2, "connected", JOIN_MS);
    port = it_listener_create_port(n1, "{\"id\":\"e\",\"service\":\"echo\",\"port\":0}");
    assert_true(bp > 0);

    assert_int_equal(kill(bp, SIGSTOP), 0);
    t0 = it_now_ms();
    while (strcmp(timed_state(n1, &lat, st, sizeof(st)), "connected") == 0) {
        if (it_now_ms() - t0 > 4 * HEARTBEAT_MS)
            fail_msg("the frozen broker was not noticed within %d ms", 4 * HEARTBEAT_MS);
        (void)poll(NULL, 0, 50);
    }
    detected_ms = it_now_ms() - t0;
    fprintf(stderr, "# frozen broker noticed after %lld ms (heartbeat %d ms): %s\n",
            (long long)detected_ms, HEARTBEAT_MS, st);
    /* two heartbeats, and the half heartbeat between two services of the connection */
    assert_true(detected_ms <= 2 * HEARTBEAT_MS + HEARTBEAT_MS / 2 + 500);

    /* a while more: the API and echo as usual */
    for (int64_t end = it_now_ms() + 2 * HEARTBEAT_MS; it_now_ms() < end;) {
        timed_state(n1, &lat, st, sizeof(st));
        assert_echo(port);
        (void)poll(NULL, 0, 50);
    }
    fprintf(stderr, "# %d health requests while frozen, the slowest %lld ms\n", lat.requests,
            (long long)lat.worst_ms);

    /* no thread stuck in the library: SIGTERM ends n1 in bounded time */
    assert_int_equal(it_daemon_stop(n1, SIGTERM, STOP_BOUND_MS, &status, &stop_ms), 0);
    fprintf(stderr, "# SIGTERM with the broker frozen: %s in %lld ms\n", it_status_str(status),
            (long long)stop_ms);
    assert_true(it_status_is_exit0(status));
    it_assert_no_sanitizer_report(n1);

    /* thawed: n2 comes back and applies */
    assert_int_equal(kill(bp, SIGCONT), 0);
    it_fleet_assert_state(n2, "connected", REJOIN_MS);
    assert_int_equal(apply_one(f, fa, "n2", result, sizeof(result), NULL), 0);
    assert_string_equal(result, "applied");
    free(fa);
}

/* ---- a memory alarm ---- */

static bool metrics_have(const struct it_daemon *d, const char *line)
{
    struct it_http r;
    bool has;

    it_http(d, "GET", "/metrics", NULL, &r);
    has = r.status == 200 && strstr(r.body, line);
    it_http_fini(&r);
    return has;
}

static void test_fleet_faults_memory_alarm_blocks_then_recovers(void **state)
{
    struct faults *f = faults_of(state);
    const char *const pattern[] = {"ev.n1.listener.#", NULL};
    const char *const low[] = {"-q", "set_vm_memory_high_watermark", "absolute", "1", NULL};
    const char *const back[] = {"-q", "set_vm_memory_high_watermark", "0.4", NULL};
    struct it_daemon *n1 = node_start(f, 0, "n1");
    struct latency lat = {0};
    json_int_t dropped;
    char st[32], *q;
    struct it_amqp_msg m;
    int64_t t0;

    it_fleet_assert_state(n1, "connected", JOIN_MS);
    f->peer = it_amqp_open_ok(f->g->b.url);
    it_amqp_exchange(f->peer, f->events);
    q = it_amqp_subscribe(f->peer, NULL, f->events, pattern);
    free(q);

    f->alarm = true;
    assert_int_equal(it_broker_ctl_at(&f->g->b, low), 0);
    t0 = it_now_ms();
    while (strcmp(timed_state(n1, &lat, st, sizeof(st)), "blocked") != 0) {
        if (it_now_ms() - t0 > EVENT_MS)
            fail_msg("the daemon did not say blocked within %d ms (state %s)", EVENT_MS, st);
        (void)poll(NULL, 0, 50);
    }
    fprintf(stderr, "# blocked after %lld ms\n", (long long)(it_now_ms() - t0));
    assert_true(metrics_have(n1, "sockserv_amqp_blocked 1"));

    /* blocked: the API answers, a reliable event waits, ticks are dropped and counted */
    it_listener_create_port(n1, "{\"id\":\"while-blocked\",\"service\":\"echo\",\"port\":0}");
    dropped = health_int(n1, "dropped.blocked");
    t0 = it_now_ms();
    while (health_int(n1, "dropped.blocked") <= dropped) {
        timed_state(n1, &lat, st, sizeof(st));
        if (it_now_ms() - t0 > 5000)
            fail_msg("no event counted as dropped while blocked");
        (void)poll(NULL, 0, 100);
    }
    assert_int_equal(it_amqp_next(f->peer, 1000, &m), -ETIMEDOUT);

    assert_int_equal(it_broker_ctl_at(&f->g->b, back), 0);
    f->alarm = false;
    it_fleet_assert_state(n1, "connected", JOIN_MS);
    assert_true(metrics_have(n1, "sockserv_amqp_blocked 0"));
    /* the reliable events went out once the alarm cleared */
    for (int64_t deadline = it_now_ms() + EVENT_MS;;) {
        int left = (int)(deadline - it_now_ms());

        if (it_amqp_next_matching(f->peer, "ev.n1.listener.created", left > 0 ? left : 0, &m) < 0)
            fail_msg("listener.created of while-blocked never arrived");
        if (strcmp(it_json_str(m.json, "data.id"), "while-blocked") == 0) {
            it_amqp_msg_fini(&m);
            break;
        }
        it_amqp_msg_fini(&m);
    }
    fprintf(stderr, "# %d health requests while blocked, the slowest %lld ms\n", lat.requests,
            (long long)lat.worst_ms);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, faults_setup, faults_teardown)
    const struct CMUnitTest tests[] = {
        T(test_fleet_faults_memory_alarm_blocks_then_recovers),
        T(test_fleet_faults_frozen_broker_detected_api_unaffected),
        T(test_fleet_faults_connections_closed_daemon_reconnects),
        T(test_fleet_faults_broker_restart_keeps_events_and_stream),
        T(test_fleet_faults_broker_down_at_start_daemon_joins_later),
    };
#undef T
    /* SOCKSERV_TEST_FILTER=PATTERN runs the tests whose name matches (by hand) */
    if (getenv("SOCKSERV_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SOCKSERV_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
