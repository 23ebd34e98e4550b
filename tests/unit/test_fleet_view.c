#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fleet/view.h"

#define INTERVAL 10000
#define T0 1796558400000LL /* 2026-12-06T12:00:00Z */
#define BOOT_A "00112233445566aa"
#define BOOT_B "00112233445566bb"

#define PONG_FMT                                                                                   \
    "{\"node\":\"%s\",\"boot\":\"%s\",\"version\":\"0.1.0\",\"labels\":{\"role\":\"edge\"},"       \
    "\"started\":\"2026-12-06T11:00:00.000Z\",\"time\":\"2026-12-06T12:00:00.000Z\","              \
    "\"revision\":3,\"etag\":\"\\\"r3\\\"\",\"applied_offset\":%s,\"desired_offset\":%s,"          \
    "\"last_result\":%s,\"listeners\":[{\"id\":\"e1\",\"service\":\"echo\",\"transport\":"         \
    "\"tcp\",\"port\":7001,\"state\":\"running\",\"enabled\":true}],"                              \
    "\"bridge\":{\"state\":\"connected\"}}"

/* A whole pong (what node.hello and node.status carry) of node with boot and labels (JSON). */
#define HELLO(node, boot, labels)                                                                  \
    "{\"node\":\"" node "\",\"boot\":\"" boot "\",\"version\":\"0.1.0\",\"labels\":" labels        \
    ",\"started\":\"2026-12-06T11:00:00.000Z\",\"time\":\"2026-12-06T11:00:00.000Z\","             \
    "\"revision\":1,\"etag\":\"\\\"r1\\\"\",\"applied_offset\":null,\"desired_offset\":null,"      \
    "\"last_result\":null,\"listeners\":[]}"

static void pong(struct fleet_view *v, const char *node, const char *boot, const char *applied,
                 const char *desired, const char *last_result, int64_t now)
{
    char buf[2048];
    int len = snprintf(buf, sizeof(buf), PONG_FMT, node, boot, applied, desired, last_result);

    fleet_view_on_pong(v, buf, (size_t)len, now);
}

/* An envelope of kind with data (JSON text), time t, seq (NULL: null). */
static void event(struct fleet_view *v, const char *node, const char *boot, const char *seq,
                  int64_t t, const char *kind, const char *data, int64_t now)
{
    char buf[4096], when[40];
    time_t sec = (time_t)(t / 1000);
    struct tm tm;
    int len;

    gmtime_r(&sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    len = snprintf(buf, sizeof(buf),
                   "{\"node\":\"%s\",\"boot\":\"%s\",\"seq\":%s,\"time\":\"%s.%03dZ\","
                   "\"kind\":\"%s\",\"data\":%s}",
                   node, boot, seq ? seq : "null", when, (int)(t % 1000), kind, data);
    fleet_view_on_event(v, buf, (size_t)len, now);
}

/* The view's JSON (kept in *state's slot for freeing) and its node named name, or NULL. */
static json_t *node_of(json_t *view, const char *name)
{
    size_t i;
    json_t *n;

    json_array_foreach(json_object_get(view, "nodes"), i, n)
    {
        if (strcmp(json_string_value(json_object_get(n, "node")), name) == 0)
            return n;
    }
    return NULL;
}

static const char *state_at(struct fleet_view *v, const char *name, int64_t now)
{
    static char state[16];
    json_t *j = fleet_view_json(v, now), *n = node_of(j, name);

    snprintf(state, sizeof(state), "%s",
             n ? json_string_value(json_object_get(n, "state")) : "(none)");
    json_decref(j);
    return state;
}

static int setup(void **state)
{
    struct fleet_view *v;

    if (fleet_view_new(INTERVAL, &v) < 0)
        return -1;
    *state = v;
    return 0;
}

static int teardown(void **state)
{
    fleet_view_free(*state);
    return 0;
}

static void test_fleet_view_new_bad_interval_fails(void **state)
{
    struct fleet_view *v = NULL;

    (void)state;
    assert_int_equal(fleet_view_new(0, &v), -EINVAL);
    assert_null(v);
}

static void test_fleet_view_pong_node_synced_with_snapshot(void **state)
{
    struct fleet_view *v = *state;
    json_t *j, *n, *l;

    pong(v, "n1", BOOT_A, "4", "4",
         "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\",\"result\":\"applied\",\"offset\":4,"
         "\"revision\":3,\"etag\":\"\\\"r3\\\"\",\"problem\":null}",
         T0);
    j = fleet_view_json(v, T0 + 1000);
    n = node_of(j, "n1");
    assert_non_null(n);
    assert_string_equal(json_string_value(json_object_get(n, "state")), "SYNCED");
    assert_string_equal(json_string_value(json_object_get(n, "boot")), BOOT_A);
    assert_string_equal(json_string_value(json_object_get(json_object_get(n, "labels"), "role")),
                        "edge");
    assert_int_equal(json_integer_value(json_object_get(n, "revision")), 3);
    assert_string_equal(json_string_value(json_object_get(n, "etag")), "\"r3\"");
    assert_int_equal(json_integer_value(json_object_get(n, "applied_offset")), 4);
    assert_string_equal(json_string_value(json_object_get(n, "last_seen")),
                        "2026-12-06T12:00:00.000Z");
    assert_true(json_is_true(json_object_get(n, "online")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(n, "bridge"), "state")),
                        "connected");
    l = json_array_get(json_object_get(n, "listeners"), 0);
    assert_string_equal(json_string_value(json_object_get(l, "id")), "e1");
    assert_string_equal(json_string_value(json_object_get(l, "state")), "running");
    assert_int_equal(json_integer_value(json_object_get(l, "port")), 7001);
    assert_true(json_is_null(json_object_get(l, "rates")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "counts"), "SYNCED")),
                     1);
    json_decref(j);
}

static void test_fleet_view_never_targeted_is_synced(void **state)
{
    pong(*state, "n1", BOOT_A, "null", "null", "null", T0);
    assert_string_equal(state_at(*state, "n1", T0), "SYNCED");
}

static void test_fleet_view_json_shape_sorted_with_counts(void **state)
{
    struct fleet_view *v = *state;
    json_t *j, *c;

    pong(v, "zeta", BOOT_A, "null", "null", "null", T0);
    pong(v, "alpha", BOOT_B, "null", "null", "null", T0);
    pong(v, "mid", BOOT_B, "null", "null", "null", T0);
    j = fleet_view_json(v, T0);
    assert_true(json_is_false(json_object_get(j, "connected")));
    assert_string_equal(json_string_value(json_object_get(j, "updated")),
                        "2026-12-06T12:00:00.000Z");
    assert_int_equal(json_array_size(json_object_get(j, "nodes")), 3);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "nodes"), 0), "node")),
        "alpha");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "nodes"), 2), "node")),
        "zeta");
    c = json_object_get(j, "counts");
    assert_int_equal(json_object_size(c), 5);
    assert_int_equal(json_integer_value(json_object_get(c, "SYNCED")), 3);
    assert_int_equal(json_integer_value(json_object_get(c, "OFFLINE")), 0);
    json_decref(j);
}

static void test_fleet_view_rejected_result_is_error_with_problem(void **state)
{
    struct fleet_view *v = *state;
    json_t *j, *n, *problem;

    pong(v, "n1", BOOT_A, "4", "4", "null", T0);
    event(v, "n1", BOOT_A, "7", T0 + 1000, "config.rejected",
          "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\",\"result\":\"rejected\",\"offset\":9,"
          "\"record\":\"x\",\"revision\":3,\"etag\":\"\\\"r3\\\"\",\"applied_offset\":4,"
          "\"problem\":{\"type\":\"about:blank\",\"title\":\"Conflict\",\"status\":409,"
          "\"detail\":\"port 7001 is in use\",\"field\":\"listeners[0].port\"}}",
          T0 + 1000);
    j = fleet_view_json(v, T0 + 1000);
    n = node_of(j, "n1");
    assert_string_equal(json_string_value(json_object_get(n, "state")), "ERROR");
    assert_int_equal(json_integer_value(json_object_get(n, "desired_offset")), 9);
    assert_int_equal(json_integer_value(json_object_get(n, "applied_offset")), 4);
    problem = json_object_get(json_object_get(n, "last_result"), "problem");
    assert_string_equal(json_string_value(json_object_get(problem, "detail")),
                        "port 7001 is in use");
    assert_string_equal(json_string_value(json_object_get(problem, "field")), "listeners[0].port");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "counts"), "ERROR")), 1);
    json_decref(j);
}

static void test_fleet_view_newer_record_pending_then_applied_synced(void **state)
{
    struct fleet_view *v = *state;

    pong(v, "n1", BOOT_A, "4", "7",
         "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\",\"result\":\"applied\",\"offset\":4,"
         "\"revision\":3,\"etag\":\"\\\"r3\\\"\",\"problem\":null}",
         T0);
    assert_string_equal(state_at(v, "n1", T0), "PENDING");
    event(v, "n1", BOOT_A, "3", T0 + 500, "config.applied",
          "{\"node\":\"n1\",\"result\":\"applied\",\"offset\":7,\"revision\":4,"
          "\"etag\":\"\\\"r4\\\"\",\"applied_offset\":7,\"problem\":null}",
          T0 + 500);
    assert_string_equal(state_at(v, "n1", T0 + 500), "SYNCED");
}

static void test_fleet_view_conflict_then_newer_record_pending(void **state)
{
    struct fleet_view *v = *state;

    pong(v, "n1", BOOT_A, "4", "5",
         "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\",\"result\":\"conflict\",\"offset\":5,"
         "\"revision\":3,\"etag\":\"\\\"r3\\\"\",\"problem\":{\"detail\":\"x\"}}",
         T0);
    assert_string_equal(state_at(v, "n1", T0), "ERROR");
    pong(v, "n1", BOOT_A, "4", "6",
         "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\",\"result\":\"conflict\",\"offset\":5,"
         "\"revision\":3,\"etag\":\"\\\"r3\\\"\",\"problem\":{\"detail\":\"x\"}}",
         T0 + 100);
    assert_string_equal(state_at(v, "n1", T0 + 100), "PENDING");
}

static void test_fleet_view_quiet_three_intervals_stale_then_offline(void **state)
{
    struct fleet_view *v = *state;
    char names[4][64];
    bool all = true;

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    assert_string_equal(state_at(v, "n1", T0 + 3 * INTERVAL), "SYNCED");
    assert_string_equal(state_at(v, "n1", T0 + 3 * INTERVAL + 1), "STALE");
    /* a stale node is pinged; no answer in the ping timeout: OFFLINE */
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0 + 3 * INTERVAL + 1), 1);
    assert_false(all);
    assert_string_equal(names[0], "n1");
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0 + 3 * INTERVAL + 2), 0);
    assert_string_equal(state_at(v, "n1", T0 + 3 * INTERVAL + 4999), "STALE");
    assert_string_equal(state_at(v, "n1", T0 + 3 * INTERVAL + 5001), "OFFLINE");
    /* it speaks again: live */
    event(v, "n1", BOOT_A, NULL, T0 + 40000, "node.status",
          "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\",\"applied_offset\":null,"
          "\"desired_offset\":null,\"last_result\":null}",
          T0 + 40000);
    assert_string_equal(state_at(v, "n1", T0 + 40000), "SYNCED");
}

static void test_fleet_view_repeated_asks_keep_unanswered_ping_offline(void **state)
{
    struct fleet_view *v;
    char names[4][64];
    bool all = true;

    (void)state;
    assert_int_equal(fleet_view_new(1000, &v), 0);
    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0 + 3001), 1);
    assert_string_equal(state_at(v, "n1", T0 + 3001), "STALE");
    /* the bus asks again and again: the outstanding ping is not sent again */
    for (int64_t t = T0 + 3101; t < T0 + 6000; t += 100)
        assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, t), 0);
    assert_string_equal(state_at(v, "n1", T0 + 6000), "OFFLINE");
    fleet_view_free(v);
}

static void test_fleet_view_status_keeps_node_fresh(void **state)
{
    struct fleet_view *v = *state;

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    for (int i = 1; i <= 5; i++)
        event(v, "n1", BOOT_A, NULL, T0 + i * INTERVAL, "node.status",
              "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\"}", T0 + i * INTERVAL);
    assert_string_equal(state_at(v, "n1", T0 + 7 * INTERVAL), "SYNCED");
}

static void test_fleet_view_bye_offline(void **state)
{
    struct fleet_view *v = *state;
    json_t *j;

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    event(v, "n1", BOOT_A, "5", T0 + 100, "node.bye", "{}", T0 + 100);
    j = fleet_view_json(v, T0 + 200);
    assert_string_equal(json_string_value(json_object_get(node_of(j, "n1"), "state")), "OFFLINE");
    assert_true(json_is_false(json_object_get(node_of(j, "n1"), "online")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "counts"), "OFFLINE")),
                     1);
    json_decref(j);
}

/* A bye read back seconds later (fleet ls reading the nodes stream) is as old as the bye. */
static void test_fleet_view_bye_read_late_last_seen_is_the_bye(void **state)
{
    struct fleet_view *v = *state;
    json_t *j, *n;

    event(v, "n1", BOOT_A, "1", T0 - 9000, "node.hello",
          "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\"}", T0);
    event(v, "n1", BOOT_A, "2", T0 - 5000, "node.bye", "{}", T0);
    j = fleet_view_json(v, T0 + 100);
    n = node_of(j, "n1");
    assert_string_equal(json_string_value(json_object_get(n, "state")), "OFFLINE");
    assert_string_equal(json_string_value(json_object_get(n, "last_seen")),
                        "2026-12-06T11:59:55.000Z");
    json_decref(j);
}

static void test_fleet_view_seq_gap_wants_ping(void **state)
{
    struct fleet_view *v = *state;
    char names[4][64];
    bool all = true;

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    event(v, "n1", BOOT_A, "1", T0, "backup.stored", "{}", T0);
    event(v, "n1", BOOT_A, "2", T0, "backup.stored", "{}", T0);
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 0);
    event(v, "n1", BOOT_A, "2", T0, "backup.stored", "{}", T0); /* duplicate: no gap */
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 0);
    event(v, "n1", BOOT_A, NULL, T0, "metrics.tick", "{\"listeners\":{}}", T0); /* no seq */
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 0);
    event(v, "n1", BOOT_A, "4", T0, "backup.stored", "{}", T0); /* 3 is missing */
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 1);
    assert_string_equal(names[0], "n1");
    assert_false(all);
}

static void test_fleet_view_new_boot_wants_ping(void **state)
{
    struct fleet_view *v = *state;
    char names[4][64];
    bool all = true;
    json_t *j;

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    event(v, "n1", BOOT_A, "8", T0, "backup.stored", "{}", T0);
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 0);
    event(v, "n1", BOOT_B, "1", T0 + 1000, "listener.state",
          "{\"id\":\"e1\",\"state\":\"stopped\"}", T0 + 1000);
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0 + 1000), 1);
    assert_string_equal(names[0], "n1");
    j = fleet_view_json(v, T0 + 1000);
    assert_string_equal(json_string_value(json_object_get(node_of(j, "n1"), "boot")), BOOT_B);
    json_decref(j);
}

static void test_fleet_view_hello_wants_ping(void **state)
{
    struct fleet_view *v = *state;
    char names[4][64];
    bool all = true;

    event(v, "n2", BOOT_A, "1", T0, "node.hello",
          "{\"node\":\"n2\",\"boot\":\"" BOOT_A "\",\"labels\":{\"zone\":\"a\"},"
          "\"applied_offset\":null,\"desired_offset\":null,\"last_result\":null,"
          "\"listeners\":[]}",
          T0);
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 1);
    assert_string_equal(names[0], "n2");
    assert_string_equal(state_at(v, "n2", T0), "SYNCED");
}

static void test_fleet_view_connected_pings_all(void **state)
{
    struct fleet_view *v = *state;
    char names[4][64];
    bool all = false;
    json_t *j;

    fleet_view_set_connected(v, true);
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 0);
    assert_true(all);
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 0);
    assert_false(all);
    j = fleet_view_json(v, T0);
    assert_true(json_is_true(json_object_get(j, "connected")));
    assert_true(json_is_string(json_object_get(j, "since")));
    json_decref(j);
    fleet_view_set_connected(v, false);
    j = fleet_view_json(v, T0);
    assert_true(json_is_false(json_object_get(j, "connected")));
    json_decref(j);
}

static void test_fleet_view_more_wanted_than_max_pings_all(void **state)
{
    struct fleet_view *v = *state;
    char names[1][64];
    bool all = false;

    event(v, "a", BOOT_A, "1", T0, "node.hello", "{}", T0);
    event(v, "b", BOOT_A, "1", T0, "node.hello", "{}", T0);
    assert_int_equal(fleet_view_wants_ping(v, names, 1, &all, T0), 0);
    assert_true(all);
}

static void test_fleet_view_history_known_offline_with_last_seen(void **state)
{
    struct fleet_view *v = *state;
    char names[4][64];
    bool all = true;
    json_t *j, *n;

    /* nodes stream records of an hour ago: hello then a rejected result */
    event(v, "old", BOOT_A, "1", T0 - 3600000, "node.hello",
          HELLO("old", BOOT_A, "{\"role\":\"db\"}"), T0);
    event(v, "old", BOOT_A, "2", T0 - 3500000, "config.rejected",
          "{\"node\":\"old\",\"result\":\"rejected\",\"offset\":3,\"problem\":{\"detail\":\"d\"}}",
          T0);
    assert_int_equal(fleet_view_wants_ping(v, names, 4, &all, T0), 0);
    j = fleet_view_json(v, T0);
    n = node_of(j, "old");
    assert_string_equal(json_string_value(json_object_get(n, "state")), "OFFLINE");
    assert_string_equal(json_string_value(json_object_get(n, "last_seen")),
                        "2026-12-06T11:01:40.000Z");
    assert_string_equal(json_string_value(json_object_get(json_object_get(n, "labels"), "role")),
                        "db");
    json_decref(j);
    /* an older record coming late changes nothing */
    event(v, "old", BOOT_A, "1", T0 - 3600000, "node.hello",
          "{\"node\":\"old\",\"labels\":{\"role\":\"web\"}}", T0);
    j = fleet_view_json(v, T0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(node_of(j, "old"), "labels"), "role")),
        "db");
    json_decref(j);
}

static void test_fleet_view_history_after_live_changes_nothing(void **state)
{
    struct fleet_view *v = *state;

    pong(v, "n1", BOOT_B, "null", "null", "null", T0);
    event(v, "n1", BOOT_A, "1", T0 - 3600000, "node.bye", "{}", T0);
    assert_string_equal(state_at(v, "n1", T0), "SYNCED");
}

#define BOOT_CLI "00112233445566cc"
#define HELLO_N2 HELLO("n2", BOOT_B, "{\"role\":\"db\"}")

static void test_fleet_view_forgotten_removes_then_hello_readds(void **state)
{
    struct fleet_view *v = *state;
    json_t *j;

    /* the nodes stream: n2 joined and left an hour ago, n1 is live */
    event(v, "n2", BOOT_B, "1", T0 - 3600000, "node.hello", HELLO_N2, T0);
    event(v, "n2", BOOT_B, "2", T0 - 3500000, "node.bye", "{}", T0);
    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    assert_string_equal(state_at(v, "n2", T0), "OFFLINE");
    /* an operator forgets n2 */
    event(v, "n2", BOOT_CLI, NULL, T0 + 100, "node.forgotten", "{\"by\":\"root@h\"}", T0 + 100);
    j = fleet_view_json(v, T0 + 200);
    assert_int_equal(json_array_size(json_object_get(j, "nodes")), 1);
    assert_null(node_of(j, "n2"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "counts"), "OFFLINE")),
                     0);
    json_decref(j);
    assert_string_equal(state_at(v, "n1", T0 + 200), "SYNCED");
    /* its old records, replayed late, do not bring it back */
    event(v, "n2", BOOT_B, "1", T0 - 3600000, "node.hello", HELLO_N2, T0 + 300);
    assert_string_equal(state_at(v, "n2", T0 + 300), "(none)");
    /* it joins again: a new node, live */
    event(v, "n2", "00112233445566dd", "1", T0 + 1000, "node.hello",
          "{\"node\":\"n2\",\"boot\":\"00112233445566dd\",\"labels\":{}}", T0 + 1000);
    j = fleet_view_json(v, T0 + 1000);
    assert_non_null(node_of(j, "n2"));
    assert_true(json_is_true(json_object_get(node_of(j, "n2"), "online")));
    assert_int_equal(json_object_size(json_object_get(node_of(j, "n2"), "labels")), 0);
    json_decref(j);
}

static void test_fleet_view_forgotten_before_last_word_keeps_node(void **state)
{
    struct fleet_view *v = *state;

    /* a pong after the forget's time: the node spoke since, it stays */
    pong(v, "n1", BOOT_A, "null", "null", "null", T0 + 500);
    event(v, "n1", BOOT_CLI, NULL, T0, "node.forgotten", "{}", T0 + 600);
    assert_string_equal(state_at(v, "n1", T0 + 600), "SYNCED");
    /* forgotten unknown node: nothing to remove, nothing counted as unreadable */
    event(v, "n9", BOOT_CLI, NULL, T0, "node.forgotten", "{}", T0 + 600);
    assert_string_equal(state_at(v, "n9", T0 + 600), "(none)");
}

static void test_fleet_view_forgotten_after_recent_records_read_late_removes(void **state)
{
    struct fleet_view *v = *state;

    /* the nodes stream read now: n2's hello and bye of seconds ago, then its forget */
    event(v, "n2", BOOT_B, "1", T0, "node.hello", HELLO_N2, T0 + 5000);
    event(v, "n2", BOOT_B, "2", T0 + 100, "node.bye", "{}", T0 + 5000);
    event(v, "n2", BOOT_CLI, NULL, T0 + 200, "node.forgotten", "{}", T0 + 5000);
    assert_string_equal(state_at(v, "n2", T0 + 5000), "(none)");
}

static void test_fleet_view_forgotten_then_pong_readds(void **state)
{
    struct fleet_view *v = *state;

    event(v, "n2", BOOT_B, "1", T0 - 3600000, "node.hello", HELLO_N2, T0);
    event(v, "n2", BOOT_CLI, NULL, T0 + 100, "node.forgotten", "{}", T0 + 100);
    assert_string_equal(state_at(v, "n2", T0 + 100), "(none)");
    pong(v, "n2", BOOT_B, "null", "null", "null", T0 + 200);
    assert_string_equal(state_at(v, "n2", T0 + 200), "SYNCED");
}

static void test_fleet_view_published_offline_node_pending(void **state)
{
    struct fleet_view *v = *state;

    event(v, "n9", BOOT_A, "1", T0 - 3600000, "node.hello", "{}", T0);
    assert_string_equal(state_at(v, "n9", T0), "OFFLINE");
    fleet_view_note_published(v, "n9", 12);
    assert_string_equal(state_at(v, "n9", T0), "PENDING");
    fleet_view_note_published(v, "never-seen", 12);
    assert_string_equal(state_at(v, "never-seen", T0), "PENDING");
}

static void test_fleet_view_unanswered_ping_offline(void **state)
{
    struct fleet_view *v = *state;

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    pong(v, "n2", BOOT_A, "null", "null", "null", T0);
    fleet_view_set_ping_timeout(v, 2000);
    fleet_view_ping_sent(v, NULL, T0 + 100);
    pong(v, "n1", BOOT_A, "null", "null", "null", T0 + 300);
    assert_string_equal(state_at(v, "n1", T0 + 2100), "SYNCED");
    assert_string_equal(state_at(v, "n2", T0 + 2000), "SYNCED");
    assert_string_equal(state_at(v, "n2", T0 + 2100), "OFFLINE");
}

static void test_fleet_view_tick_rates_and_listener_events(void **state)
{
    struct fleet_view *v = *state;
    json_t *j, *ls, *l;

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    event(v, "n1", BOOT_A, "1", T0, "listener.created",
          "{\"id\":\"u1\",\"service\":\"date\",\"transport\":\"udp\",\"port\":0,"
          "\"enabled\":true,\"status\":{\"state\":\"starting\",\"bound\":[]}}",
          T0);
    event(v, "n1", BOOT_A, "2", T0, "listener.state",
          "{\"id\":\"u1\",\"state\":\"running\",\"previous\":\"starting\","
          "\"bound\":[\"127.0.0.1:40123\"]}",
          T0);
    event(v, "n1", BOOT_A, NULL, T0 + 1000, "metrics.tick",
          "{\"time\":\"x\",\"interval_ms\":1000,\"listeners\":{\"e1\":{\"bytes_in\":100,"
          "\"rates\":{\"bytes_in\":12.5,\"connections\":1.0}}}}",
          T0 + 1000);
    j = fleet_view_json(v, T0 + 1000);
    ls = json_object_get(node_of(j, "n1"), "listeners");
    assert_int_equal(json_array_size(ls), 2);
    l = json_array_get(ls, 0);
    assert_string_equal(json_string_value(json_object_get(l, "id")), "e1");
    assert_true(json_real_value(json_object_get(json_object_get(l, "rates"), "bytes_in")) == 12.5);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(l, "counters"), "bytes_in")), 100);
    l = json_array_get(ls, 1);
    assert_string_equal(json_string_value(json_object_get(l, "id")), "u1");
    assert_string_equal(json_string_value(json_object_get(l, "state")), "running");
    assert_string_equal(json_string_value(json_object_get(l, "transport")), "udp");
    assert_int_equal(json_integer_value(json_object_get(l, "port")), 40123);
    json_decref(j);
    event(v, "n1", BOOT_A, "3", T0 + 1000, "listener.deleted", "{\"id\":\"e1\"}", T0 + 1000);
    j = fleet_view_json(v, T0 + 1000);
    ls = json_object_get(node_of(j, "n1"), "listeners");
    assert_int_equal(json_array_size(ls), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ls, 0), "id")), "u1");
    json_decref(j);
}

static void test_fleet_view_pong_keeps_bound_port_of_port_0(void **state)
{
    struct fleet_view *v = *state;
    static const char body[] =
        "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\",\"version\":\"0.1.0\",\"labels\":{},"
        "\"started\":\"2026-12-06T11:00:00.000Z\",\"time\":\"2026-12-06T12:00:00.000Z\","
        "\"revision\":1,\"etag\":\"\\\"r1\\\"\",\"applied_offset\":null,"
        "\"desired_offset\":null,\"last_result\":null,\"listeners\":[{\"id\":\"u1\","
        "\"service\":\"echo\",\"transport\":\"tcp\",\"port\":0,\"state\":\"running\","
        "\"enabled\":true}]}";
    json_t *j, *l;

    event(v, "n1", BOOT_A, "1", T0, "listener.created",
          "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"tcp\",\"port\":0,"
          "\"enabled\":true,\"status\":{\"state\":\"starting\",\"bound\":[]}}",
          T0);
    event(v, "n1", BOOT_A, "2", T0, "listener.state",
          "{\"id\":\"u1\",\"state\":\"running\",\"bound\":[\"[::1]:40999\"]}", T0);
    fleet_view_on_pong(v, body, strlen(body), T0 + 10);
    j = fleet_view_json(v, T0 + 10);
    l = json_array_get(json_object_get(node_of(j, "n1"), "listeners"), 0);
    assert_string_equal(json_string_value(json_object_get(l, "id")), "u1");
    assert_int_equal(json_integer_value(json_object_get(l, "port")), 40999);
    json_decref(j);
}

static void test_fleet_view_pong_bound_port_of_port_0(void **state)
{
    struct fleet_view *v = *state;
    static const char body[] =
        "{\"node\":\"n1\",\"boot\":\"" BOOT_A "\",\"version\":\"0.1.0\",\"labels\":{},"
        "\"started\":\"2026-12-06T11:00:00.000Z\",\"time\":\"2026-12-06T12:00:00.000Z\","
        "\"revision\":1,\"etag\":\"\\\"r1\\\"\",\"applied_offset\":null,"
        "\"desired_offset\":null,\"last_result\":null,\"listeners\":[{\"id\":\"u1\","
        "\"service\":\"echo\",\"transport\":\"tcp\",\"port\":0,\"state\":\"running\","
        "\"enabled\":true,\"bound\":[\"127.0.0.1:40555\"]}]}";
    json_t *j;

    fleet_view_on_pong(v, body, strlen(body), T0);
    j = fleet_view_json(v, T0);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(node_of(j, "n1"), "listeners"), 0), "port")),
        40555);
    json_decref(j);
}

static void test_fleet_view_config_revision_updates_revision(void **state)
{
    struct fleet_view *v = *state;
    json_t *j, *n;

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    event(v, "n1", BOOT_A, "1", T0, "config.revision",
          "{\"revision\":9,\"source\":\"api\",\"summary\":\"\"}", T0);
    j = fleet_view_json(v, T0);
    n = node_of(j, "n1");
    assert_int_equal(json_integer_value(json_object_get(n, "revision")), 9);
    assert_string_equal(json_string_value(json_object_get(n, "etag")), "\"r9\"");
    json_decref(j);
}

static void test_fleet_view_garbage_ignored_and_counted(void **state)
{
    struct fleet_view *v = *state;
    static const char *const bad[] = {
        "not json",
        "[1,2]",
        "{\"kind\":\"node.hello\"}",
        "{\"node\":\"Bad.Name\",\"kind\":\"node.hello\"}",
        "{\"node\":\"n1\",\"seq\":\"x\",\"kind\":\"node.hello\"}",
        "{\"node\":\"n1\"}",
    };
    static const char unknown_op[] = "{\"node\":\"n1\",\"error\":\"unknown op x\"}";
    static const char not_pong[] =
        "{\"node\":\"n7\",\"boot\":\"" BOOT_A "\",\"labels\":{\"a b\":\"c\"},"
        "\"listeners\":[]}";
    json_t *j;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        fleet_view_on_event(v, bad[i], strlen(bad[i]), T0);
    fleet_view_on_pong(v, unknown_op, strlen(unknown_op), T0); /* an answer, not garbage */
    fleet_view_on_pong(v, "{", 1, T0);
    /* not a pong (the wire's reading): no revision, a bad label; no node comes of it */
    fleet_view_on_pong(v, not_pong, strlen(not_pong), T0);
    fleet_view_on_event(v, NULL, 0, T0);
    j = fleet_view_json(v, T0);
    assert_int_equal(json_integer_value(json_object_get(j, "ignored")), 9);
    assert_int_equal(json_array_size(json_object_get(j, "nodes")), 0);
    json_decref(j);
}

static void test_fleet_view_counts_match_json(void **state)
{
    struct fleet_view *v = *state;
    size_t counts[FLEET_VIEW_STATE_COUNT];

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    pong(v, "n2", BOOT_A, "null", "7", "null", T0);
    event(v, "n3", BOOT_A, "1", T0 - 3600000, "node.hello", "{}", T0);
    fleet_view_counts(v, T0, counts);
    assert_int_equal(counts[FLEET_VIEW_SYNCED], 1);
    assert_int_equal(counts[FLEET_VIEW_PENDING], 1);
    assert_int_equal(counts[FLEET_VIEW_OFFLINE], 1);
    assert_int_equal(counts[FLEET_VIEW_ERROR], 0);
    assert_string_equal(fleet_view_state_name(FLEET_VIEW_STALE), "STALE");
}

static void test_fleet_view_prometheus_every_state(void **state)
{
    struct fleet_view *v = *state;
    struct core_buf out = {0};

    pong(v, "n1", BOOT_A, "null", "null", "null", T0);
    pong(v, "n2", BOOT_A, "null", "null", "null", T0);
    event(v, "n3", BOOT_A, "1", T0 - 3600000, "node.hello", "{}", T0);
    assert_int_equal(fleet_view_prometheus(v, T0, &out), 0);
    assert_int_equal(core_buf_append(&out, "", 1), 0);
    assert_non_null(strstr((char *)out.data, "# TYPE sockserv_fleet_nodes gauge\n"));
    assert_non_null(strstr((char *)out.data, "sockserv_fleet_nodes{state=\"SYNCED\"} 2\n"));
    assert_non_null(strstr((char *)out.data, "sockserv_fleet_nodes{state=\"OFFLINE\"} 1\n"));
    assert_non_null(strstr((char *)out.data, "sockserv_fleet_nodes{state=\"ERROR\"} 0\n"));
    core_buf_fini(&out);
}

static void *feed_thread(void *arg)
{
    struct fleet_view *v = arg;
    char seq[16];

    for (int i = 1; i <= 200; i++) {
        snprintf(seq, sizeof(seq), "%d", i);
        event(v, "n1", BOOT_A, seq, T0 + i, "backup.stored", "{}", T0 + i);
        pong(v, "n2", BOOT_B, "null", "null", "null", T0 + i);
    }
    return NULL;
}

static void test_fleet_view_threads_feed_and_read(void **state)
{
    struct fleet_view *v = *state;
    char names[4][64];
    pthread_t t;
    bool all;

    assert_int_equal(pthread_create(&t, NULL, feed_thread, v), 0);
    for (int i = 0; i < 200; i++) {
        json_t *j = fleet_view_json(v, T0 + i);

        assert_non_null(j);
        json_decref(j);
        (void)fleet_view_wants_ping(v, names, 4, &all, T0 + i);
        fleet_view_set_connected(v, i % 2 == 0);
    }
    pthread_join(t, NULL);
    assert_string_equal(state_at(v, "n1", T0 + 200), "SYNCED");
    assert_string_equal(state_at(v, "n2", T0 + 200), "SYNCED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_view_new_bad_interval_fails),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_fleet_view_pong_node_synced_with_snapshot),
        T(test_fleet_view_never_targeted_is_synced),
        T(test_fleet_view_json_shape_sorted_with_counts),
        T(test_fleet_view_rejected_result_is_error_with_problem),
        T(test_fleet_view_newer_record_pending_then_applied_synced),
        T(test_fleet_view_conflict_then_newer_record_pending),
        T(test_fleet_view_quiet_three_intervals_stale_then_offline),
        cmocka_unit_test(test_fleet_view_repeated_asks_keep_unanswered_ping_offline),
        T(test_fleet_view_status_keeps_node_fresh),
        T(test_fleet_view_bye_offline),
        T(test_fleet_view_bye_read_late_last_seen_is_the_bye),
        T(test_fleet_view_seq_gap_wants_ping),
        T(test_fleet_view_new_boot_wants_ping),
        T(test_fleet_view_hello_wants_ping),
        T(test_fleet_view_connected_pings_all),
        T(test_fleet_view_more_wanted_than_max_pings_all),
        T(test_fleet_view_history_known_offline_with_last_seen),
        T(test_fleet_view_history_after_live_changes_nothing),
        T(test_fleet_view_forgotten_removes_then_hello_readds),
        T(test_fleet_view_forgotten_before_last_word_keeps_node),
        T(test_fleet_view_forgotten_after_recent_records_read_late_removes),
        T(test_fleet_view_forgotten_then_pong_readds),
        T(test_fleet_view_published_offline_node_pending),
        T(test_fleet_view_unanswered_ping_offline),
        T(test_fleet_view_tick_rates_and_listener_events),
        T(test_fleet_view_pong_keeps_bound_port_of_port_0),
        T(test_fleet_view_pong_bound_port_of_port_0),
        T(test_fleet_view_config_revision_updates_revision),
        T(test_fleet_view_garbage_ignored_and_counted),
        T(test_fleet_view_counts_match_json),
        T(test_fleet_view_prometheus_every_state),
        T(test_fleet_view_threads_feed_and_read),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
