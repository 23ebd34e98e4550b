/*
 * The daemon's fleet bridge against a real broker: events reach an independent consumer in
 * order with a gap-free seq; a desired-state record published to the stream is applied (the
 * REST API shows it, the state file holds its offset, the requester gets the reply), answered
 * unchanged, rejected and conflict as the contract says; the health's fleet member; a second
 * daemon with the same node name refuses to join; the connections closed by the broker come
 * back (a private broker, so that the suites beside are not disturbed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

struct fx {
    char *dir;
    struct it_daemon d;
    char prefix[64];
    char node[64];
    char url[128];
    struct it_broker priv;
    bool has_priv;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->dir = it_tmpdir_new();
    *state = f;
    return 0;
}

/* SIGTERM: a clean exit 0 within IT_EXIT_TIMEOUT_MS, no sanitizer report in its log. */
static void stop_clean(struct it_daemon *d)
{
    int status;
    int64_t ms;

    assert_int_equal(it_daemon_stop(d, 15, IT_EXIT_TIMEOUT_MS, &status, &ms), 0);
    if (!it_status_is_exit0(status)) {
        it_daemon_dump_stderr(d);
        fail_msg("the daemon ended with %s", it_status_str(status));
    }
    it_assert_no_sanitizer_report(d);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    it_daemons_stop_all(&f->d, 1);
    if (f->has_priv)
        it_broker_private_stop(&f->priv);
    it_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* The shared broker's URL, a prefix and a node name of the test's own; skips without one. */
static void fx_fleet(struct fx *f)
{
    const char *url = it_amqp_url();

    if (!url)
        skip();
    snprintf(f->url, sizeof(f->url), "%s", url);
    it_fleet_prefix(f->prefix, sizeof(f->prefix));
    snprintf(f->node, sizeof(f->node), "n%s", f->prefix + 1);
}

static void start_daemon(struct fx *f, struct it_daemon *d, const char *state_dir)
{
    const char *const args[] = {"--amqp",           f->url,    "--node",  f->node,
                                "--amqp-prefix",    f->prefix, "--label", "role=edge",
                                "--amqp-heartbeat", "2",       NULL};
    struct it_daemon_opts o = {.dir = f->dir, .state_dir = state_dir, .extra_args = args};

    it_daemon_start_ok(d, &o);
}

struct health_want {
    const struct it_daemon *d;
    const char *state;
    json_int_t reconnects; /* -1: any */
};

static bool health_is(void *arg)
{
    struct health_want *w = arg;
    struct it_http r;
    bool ok;

    it_http(w->d, "GET", "/api/v1/health", NULL, &r);
    ok = r.status == 200 && r.json &&
         strcmp(it_json_str(r.json, "fleet.state") ? it_json_str(r.json, "fleet.state") : "",
                w->state) == 0 &&
         (w->reconnects < 0 || it_json_int(r.json, "fleet.reconnects") >= w->reconnects);
    it_http_fini(&r);
    return ok;
}

static void wait_state(const struct it_daemon *d, const char *state, json_int_t reconnects)
{
    struct health_want w = {d, state, reconnects};

    if (!it_wait_until(15000, health_is, &w)) {
        it_daemon_dump_stderr(d);
        fail_msg("the bridge did not reach state %s", state);
    }
}

static void test_fleet_bridge_events_in_order_with_gapless_seq(void **state)
{
    struct fx *f = *state;
    struct it_amqp *peer;
    char events[128], pattern[128];
    uint64_t want = 1;
    bool saw_created = false, saw_hello = false;
    char *q;
    json_t *j;

    fx_fleet(f);
    snprintf(events, sizeof(events), "%s.events", f->prefix);
    snprintf(pattern, sizeof(pattern), "ev.%s.#", f->node);
    peer = it_amqp_open_ok(f->url);
    it_amqp_exchange(peer, events);
    q = it_amqp_subscribe(peer, NULL, events, (const char *const[]){pattern, NULL});
    free(q);
    start_daemon(f, &f->d, NULL);
    wait_state(&f->d, "connected", -1);

    j = it_http_expect(&f->d, "POST", "/api/v1/listeners",
                       "{\"id\":\"e1\",\"service\":\"echo\",\"transport\":\"tcp\","
                       "\"address\":\"127.0.0.1\",\"port\":0}",
                       201);
    json_decref(j);

    /* Reliable events: seq 1, 2, 3, ... in publish order, node.hello first. */
    while (!saw_created) {
        struct it_amqp_msg m;
        json_t *seq;

        assert_int_equal(it_amqp_next(peer, 10000, &m), 0);
        assert_non_null(m.json);
        assert_string_equal(m.content_type, "application/json");
        assert_string_equal(it_json_str(m.json, "node"), f->node);
        seq = json_object_get(m.json, "seq");
        if (json_is_null(seq)) {
            assert_int_equal(m.delivery_mode, 1);
            it_amqp_msg_fini(&m);
            continue;
        }
        assert_int_equal(json_integer_value(seq), want);
        assert_int_equal(m.delivery_mode, 2);
        assert_string_equal(m.type, it_json_str(m.json, "kind"));
        {
            char mid[256];
            snprintf(mid, sizeof(mid), "%s:%s:%llu", f->node, it_json_str(m.json, "boot"),
                     (unsigned long long)want);
            assert_string_equal(m.message_id, mid);
        }
        if (want == 1) {
            assert_string_equal(it_json_str(m.json, "kind"), "node.hello");
            assert_string_equal(it_json_str(m.json, "data.labels.role"), "edge");
            saw_hello = true;
        }
        if (strcmp(it_json_str(m.json, "kind"), "listener.created") == 0) {
            assert_string_equal(it_json_str(m.json, "data.id"), "e1");
            saw_created = true;
        }
        want++;
        it_amqp_msg_fini(&m);
    }
    assert_true(saw_hello);
    it_amqp_close(peer);
    stop_clean(&f->d);
}

/* Publishes a record to PREFIX.desired with reply_to, and returns the node's reply (asserts). */
static json_t *apply(struct fx *f, struct it_amqp *peer, const char *record, const char *id)
{
    char desired[128];
    const struct it_amqp_pub p = {.content_type = "application/json",
                                  .message_id = id,
                                  .correlation_id = id,
                                  .reply_to = "amq.rabbitmq.reply-to",
                                  .delivery_mode = 2,
                                  .mandatory = true};

    snprintf(desired, sizeof(desired), "%s.desired", f->prefix);
    assert_int_equal(it_amqp_publish(peer, "", desired, record, strlen(record), &p), 0);
    for (;;) {
        struct it_amqp_msg m;
        json_t *j;

        if (it_amqp_next(peer, 10000, &m) < 0) {
            it_daemon_dump_stderr(&f->d);
            fail_msg("no reply to record %s", id);
        }
        if (strcmp(m.correlation_id, id) != 0) {
            it_amqp_msg_fini(&m);
            continue;
        }
        assert_non_null(m.json);
        j = json_incref(m.json);
        it_amqp_msg_fini(&m);
        return j;
    }
}

static void test_fleet_bridge_desired_record_applied_unchanged_rejected_conflict(void **state)
{
    struct fx *f = *state;
    struct it_amqp *peer;
    char record[1024], state_dir[IT_PATH_MAX], *text;
    json_t *rep, *conf, *st;
    struct it_http r;

    fx_fleet(f);
    start_daemon(f, &f->d, NULL);
    wait_state(&f->d, "connected", -1);
    peer = it_amqp_open_ok(f->url);
    it_amqp_reply_to(peer);

    snprintf(record, sizeof(record),
             "{\"target\":{\"selector\":\"role=edge\"},\"config\":{\"listeners\":[{\"id\":\"f1\","
             "\"service\":\"echo\",\"transport\":\"tcp\",\"address\":\"127.0.0.1\",\"port\":0}]},"
             "\"issued_by\":\"test\"}");
    rep = apply(f, peer, record, "rec-1");
    assert_string_equal(it_json_str(rep, "result"), "applied");
    assert_string_equal(it_json_str(rep, "node"), f->node);
    assert_int_equal(it_json_int(rep, "offset"), 0);
    assert_int_equal(it_json_int(rep, "applied_offset"), 0);
    assert_string_equal(it_json_str(rep, "record"), "rec-1");
    assert_true(json_is_null(json_object_get(rep, "problem")));
    json_decref(rep);

    /* The REST API shows it, with the fleet as the source; the state file holds the offset. */
    conf = it_http_expect(&f->d, "GET", "/api/v1/config", NULL, 200);
    assert_string_equal(it_json_str(conf, "listeners.0.id"), "f1");
    json_decref(conf);
    conf = it_http_expect(&f->d, "GET", "/api/v1/config/revisions", NULL, 200);
    assert_string_equal(it_json_str(conf, "revisions.0.source"),
                        "fleet: replace configuration (offset 0)");
    json_decref(conf);
    text = it_file_read(f->d.state_file, NULL);
    assert_non_null(text);
    st = json_loads(text, 0, NULL);
    free(text);
    assert_int_equal(json_integer_value(json_object_get(st, "fleet_offset")), 0);
    json_decref(st);

    /* The same again: unchanged, and the offset moves on. */
    rep = apply(f, peer, record, "rec-2");
    assert_string_equal(it_json_str(rep, "result"), "unchanged");
    assert_int_equal(it_json_int(rep, "offset"), 1);
    assert_int_equal(it_json_int(rep, "applied_offset"), 1);
    json_decref(rep);

    /* A bad configuration: rejected with the problem the REST API gives, nothing changed. */
    rep = apply(f, peer,
                "{\"target\":{\"all\":true},\"config\":{\"listeners\":[{\"id\":\"f2\","
                "\"service\":\"echo\",\"transport\":\"tcp\",\"port\":70000}]}}",
                "rec-3");
    assert_string_equal(it_json_str(rep, "result"), "rejected");
    assert_int_equal(it_json_int(rep, "problem.status"), 400);
    assert_string_equal(it_json_str(rep, "problem.title"), "Bad Request");
    assert_string_equal(it_json_str(rep, "problem.field"), "listeners[0].port");
    assert_int_equal(it_json_int(rep, "applied_offset"), 1);
    json_decref(rep);
    it_http(&f->d, "PUT", "/api/v1/config",
            "{\"listeners\":[{\"id\":\"f2\",\"service\":\"echo\",\"transport\":\"tcp\","
            "\"port\":70000}]}",
            &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(it_json_str(r.json, "field"), "listeners[0].port");
    it_http_fini(&r);

    /* A stale if_match: conflict, nothing changed. */
    snprintf(record, sizeof(record),
             "{\"target\":{\"nodes\":[\"%s\"]},\"config\":{\"listeners\":[]},"
             "\"if_match\":{\"%s\":\"\\\"r999\\\"\"}}",
             f->node, f->node);
    rep = apply(f, peer, record, "rec-4");
    assert_string_equal(it_json_str(rep, "result"), "conflict");
    assert_int_equal(it_json_int(rep, "problem.status"), 412);
    json_decref(rep);
    conf = it_http_expect(&f->d, "GET", "/api/v1/config", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(conf, "listeners")), 1);
    json_decref(conf);

    /* A body that is not JSON: every node rejects it, counted. */
    rep = apply(f, peer, "not json", "rec-5");
    assert_string_equal(it_json_str(rep, "result"), "rejected");
    json_decref(rep);
    conf = it_http_expect(&f->d, "GET", "/api/v1/health", NULL, 200);
    assert_int_equal(it_json_int(conf, "fleet.records_invalid"), 1);
    assert_int_equal(it_json_int(conf, "fleet.desired_offset"), 4);
    assert_int_equal(it_json_int(conf, "fleet.applied_offset"), 1);
    assert_string_equal(it_json_str(conf, "fleet.prefix"), f->prefix);
    json_decref(conf);
    text = it_file_read(f->d.state_file, NULL);
    st = json_loads(text, 0, NULL);
    free(text);
    assert_int_equal(json_integer_value(json_object_get(st, "fleet_offset")), 4);
    json_decref(st);

    /* A restart resumes after the stored offset: nothing is answered twice (the replies
     * would come to this connection), the next record is the first answer. */
    snprintf(state_dir, sizeof(state_dir), "%s", f->d.state_dir);
    stop_clean(&f->d);
    start_daemon(f, &f->d, state_dir);
    wait_state(&f->d, "connected", -1);
    {
        char desired[128];
        const struct it_amqp_pub p = {
            .correlation_id = "rec-6", .reply_to = "amq.rabbitmq.reply-to", .delivery_mode = 2};
        struct it_amqp_msg m;

        snprintf(desired, sizeof(desired), "%s.desired", f->prefix);
        snprintf(record, sizeof(record), "{\"target\":{\"nodes\":[\"%s\"]},\"config\":{}}",
                 f->node);
        assert_int_equal(it_amqp_publish(peer, "", desired, record, strlen(record), &p), 0);
        assert_int_equal(it_amqp_next(peer, 10000, &m), 0);
        assert_string_equal(m.correlation_id, "rec-6");
        assert_string_equal(it_json_str(m.json, "result"), "rejected");
        assert_int_equal(it_json_int(m.json, "offset"), 5);
        assert_string_equal(it_json_str(m.json, "problem.field"), "config.listeners");
        /* The configuration that runs is still the one of the record at offset 1. */
        assert_int_equal(it_json_int(m.json, "applied_offset"), 1);
        it_amqp_msg_fini(&m);
    }
    it_amqp_close(peer);
    stop_clean(&f->d);
}

static void test_fleet_bridge_ping_answers_pong(void **state)
{
    struct fx *f = *state;
    struct it_amqp *peer;
    char rpc[128], key[128];
    struct it_amqp_msg m;
    const struct it_amqp_pub p = {.correlation_id = "ping-1",
                                  .reply_to = "amq.rabbitmq.reply-to",
                                  .expiration = "30000",
                                  .delivery_mode = 1};

    fx_fleet(f);
    start_daemon(f, &f->d, NULL);
    wait_state(&f->d, "connected", -1);
    peer = it_amqp_open_ok(f->url);
    it_amqp_reply_to(peer);
    snprintf(rpc, sizeof(rpc), "%s.rpc", f->prefix);
    snprintf(key, sizeof(key), "rpc.%s", f->node);
    assert_int_equal(it_amqp_publish(peer, rpc, key, "{\"op\":\"ping\"}", 13, &p), 0);
    assert_int_equal(it_amqp_next(peer, 10000, &m), 0);
    assert_string_equal(m.correlation_id, "ping-1");
    assert_string_equal(it_json_str(m.json, "node"), f->node);
    assert_string_equal(it_json_str(m.json, "labels.role"), "edge");
    assert_string_equal(it_json_str(m.json, "bridge.state"), "connected");
    assert_non_null(json_object_get(m.json, "listeners"));
    it_amqp_msg_fini(&m);
    assert_int_equal(it_amqp_publish(peer, rpc, "rpc.all", "{\"op\":\"jump\"}", 13, &p), 0);
    assert_int_equal(it_amqp_next(peer, 10000, &m), 0);
    assert_string_equal(it_json_str(m.json, "error"), "unknown op jump");
    it_amqp_msg_fini(&m);
    it_amqp_close(peer);
    stop_clean(&f->d);
}

static void test_fleet_bridge_same_node_name_is_refused(void **state)
{
    struct fx *f = *state;
    struct it_daemon second = {0};
    char dir2[IT_PATH_MAX];
    struct it_http r;

    fx_fleet(f);
    start_daemon(f, &f->d, NULL);
    wait_state(&f->d, "connected", -1);
    snprintf(dir2, sizeof(dir2), "%s/second", f->dir);
    start_daemon(f, &second, dir2);
    wait_state(&second, "refused", -1);
    it_http(&second, "GET", "/api/v1/health", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(it_json_str(r.json, "fleet.last_error"), "is taken by another"));
    it_http_fini(&r);
    /* The first one is gone: the second joins. */
    stop_clean(&f->d);
    wait_state(&second, "connected", -1);
    stop_clean(&second);
}

static void test_fleet_bridge_reconnects_after_the_broker_closes_it(void **state)
{
    struct fx *f = *state;
    const char *const close_all[] = {"close_all_connections", "test", NULL};
    char nodes[128];
    struct it_amqp *peer;
    int hellos = 0;

    fx_fleet(f);
    assert_int_equal(it_broker_private_start(&f->priv, f->dir), 0);
    f->has_priv = true;
    snprintf(f->url, sizeof(f->url), "%s", f->priv.url);
    start_daemon(f, &f->d, NULL);
    wait_state(&f->d, "connected", -1);
    assert_int_equal(it_broker_ctl_at(&f->priv, close_all), 0);
    wait_state(&f->d, "connected", 1);

    /* Two node.hello in the nodes stream, one per connection. */
    snprintf(nodes, sizeof(nodes), "%s.nodes", f->prefix);
    peer = it_amqp_open_ok(f->url);
    it_amqp_stream(peer, nodes, -1);
    while (hellos < 2) {
        struct it_amqp_msg m;

        assert_int_equal(it_amqp_next(peer, 10000, &m), 0);
        if (strcmp(it_json_str(m.json, "kind"), "node.hello") == 0)
            hellos++;
        it_amqp_msg_fini(&m);
    }
    it_amqp_close(peer);
    stop_clean(&f->d);
}

/* Bad fleet flags: a message naming the flag, exit 2, nothing started (no broker needed). */
static void test_fleet_bridge_bad_flags_exit_2(void **state)
{
    struct fx *f = *state;
    char creds[IT_PATH_MAX], sd[IT_PATH_MAX];
    static const struct {
        const char *flag, *value, *needle;
    } cases[] = {
        {"--amqp", "http://broker/", "--amqp: expected an amqp:// or amqps:// URL"},
        {"--node", "Bad.Name", "--node: 'Bad.Name' is not a node name"},
        {"--label", "role", "--label:"},
        {"--amqp-heartbeat", "0", "--amqp-heartbeat: '0' is not 1 to 60 seconds"},
        {"--amqp-prefix", "-x", "--amqp-prefix: '-x' is not a prefix"},
        {"--amqp-credentials", NULL, "expected one line USER:PASSWORD"},
        {"--fleet-status-interval", "soon", "--fleet-status-interval"},
    };

    snprintf(creds, sizeof(creds), "%s/creds", f->dir);
    snprintf(sd, sizeof(sd), "%s/state", f->dir);
    assert_int_equal(it_file_write(creds, "no-colon-secret\n", 16), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[] = {it_bin(),
                              "daemon",
                              "--api",
                              "127.0.0.1:0",
                              "--state-dir",
                              sd,
                              "--no-defaults",
                              "--amqp",
                              strcmp(cases[i].flag, "--amqp") == 0 ? cases[i].value
                                                                   : "amqp://127.0.0.1:1/",
                              cases[i].flag,
                              cases[i].value ? cases[i].value : creds,
                              NULL};
        struct it_proc p;

        if (strcmp(cases[i].flag, "--amqp") == 0)
            argv[9] = NULL;
        it_run(argv, NULL, 0, 10000, &p);
        if (it_proc_exit_code(&p) != 2 || !strstr(p.err, cases[i].needle))
            fail_msg("%s %s: exit %d, stderr: %s", cases[i].flag,
                     cases[i].value ? cases[i].value : "", it_proc_exit_code(&p), p.err);
        assert_null(strstr(p.err, "secret"));
        it_proc_fini(&p);
    }
    /* A fleet flag without --amqp is a usage error too. */
    {
        const char *argv[] = {it_bin(), "daemon", "--api", "127.0.0.1:0", "--state-dir",
                              sd,       "--node", "n1",    NULL};
        struct it_proc p;

        it_run(argv, NULL, 0, 10000, &p);
        assert_int_equal(it_proc_exit_code(&p), 2);
        assert_non_null(strstr(p.err, "--node needs --amqp URL"));
        it_proc_fini(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fleet_bridge_bad_flags_exit_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_bridge_events_in_order_with_gapless_seq, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_fleet_bridge_desired_record_applied_unchanged_rejected_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_bridge_ping_answers_pong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_bridge_same_node_name_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fleet_bridge_reconnects_after_the_broker_closes_it,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
