/*
 * The fleet's messages (fleet/wire.h): names and routing keys, labels and selectors with their
 * error messages, envelopes and sequence verdicts, desired-state records (each bad field named),
 * the decisions a node takes on a record and on a burst, replies, exit codes and pongs.
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

#include "fleet/wire.h"

/* ---- names and keys ---- */

static void test_node_name_valid_rules(void **state)
{
    char long_name[80];

    (void)state;
    assert_true(fleet_node_name_valid("n1"));
    assert_true(fleet_node_name_valid("edge-01_a"));
    assert_true(fleet_node_name_valid("0"));
    assert_false(fleet_node_name_valid(NULL));
    assert_false(fleet_node_name_valid(""));
    assert_false(fleet_node_name_valid("-n1"));
    assert_false(fleet_node_name_valid("_n1"));
    assert_false(fleet_node_name_valid("N1"));
    assert_false(fleet_node_name_valid("n.1"));
    assert_false(fleet_node_name_valid("n*"));
    assert_false(fleet_node_name_valid("n#"));
    assert_false(fleet_node_name_valid("n 1"));
    memset(long_name, 'a', 63);
    long_name[63] = '\0';
    assert_true(fleet_node_name_valid(long_name));
    long_name[63] = 'a';
    long_name[64] = '\0';
    assert_false(fleet_node_name_valid(long_name));
}

static void test_prefix_valid_allows_dots(void **state)
{
    (void)state;
    assert_true(fleet_prefix_valid("sockserv"));
    assert_true(fleet_prefix_valid("t123-4"));
    assert_true(fleet_prefix_valid("prod.eu"));
    assert_false(fleet_prefix_valid(".prod"));
    assert_false(fleet_prefix_valid("Prod"));
    assert_false(fleet_prefix_valid(""));
    assert_false(fleet_prefix_valid("a/b"));
}

static void test_node_name_from_text_cleans_host(void **state)
{
    char buf[FLEET_NAME_MAX];
    char small[4];
    char host[200];

    (void)state;
    assert_int_equal(fleet_node_name_from_text("Web01.Example.COM", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "web01-example-com");
    assert_int_equal(fleet_node_name_from_text("--_x y", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "x-y");
    assert_int_equal(fleet_node_name_from_text("", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "node");
    assert_int_equal(fleet_node_name_from_text("...", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "node");
    memset(host, 'h', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    assert_int_equal(fleet_node_name_from_text(host, buf, sizeof(buf)), 0);
    assert_int_equal(strlen(buf), 63);
    assert_true(fleet_node_name_valid(buf));
    assert_int_equal(fleet_node_name_from_text("abcdef", small, sizeof(small)), 0);
    assert_string_equal(small, "abc");
    assert_int_equal(fleet_node_name_from_text("abc", small, 1), -ENOSPC);
}

static void test_node_name_from_host_is_valid(void **state)
{
    char buf[FLEET_NAME_MAX];

    (void)state;
    assert_int_equal(fleet_node_name_from_host(buf, sizeof(buf)), 0);
    assert_true(fleet_node_name_valid(buf));
}

static void test_names_and_queues(void **state)
{
    char buf[FLEET_KEY_MAX];
    char tiny[8];

    (void)state;
    assert_int_equal(fleet_name(buf, sizeof(buf), "sockserv", "events"), 15);
    assert_string_equal(buf, "sockserv.events");
    assert_int_equal(fleet_name(buf, sizeof(buf), "t1-2", "desired"), 12);
    assert_string_equal(buf, "t1-2.desired");
    assert_int_equal(fleet_name(buf, sizeof(buf), "Bad", "rpc"), -EINVAL);
    assert_int_equal(fleet_name(buf, sizeof(buf), "sockserv", ""), -EINVAL);
    assert_int_equal(fleet_name(tiny, sizeof(tiny), "sockserv", "nodes"), -ENOSPC);
    assert_true(fleet_node_queue(buf, sizeof(buf), "sockserv", "n1") > 0);
    assert_string_equal(buf, "sockserv.node.n1");
    assert_int_equal(fleet_node_queue(buf, sizeof(buf), "sockserv", "n.1"), -EINVAL);
}

static void test_nodes_bindings_list(void **state)
{
    (void)state;
    assert_string_equal(fleet_nodes_binding(0), "ev.*.node.hello");
    assert_string_equal(fleet_nodes_binding(1), "ev.*.node.bye");
    assert_string_equal(fleet_nodes_binding(2), "ev.*.config.applied");
    assert_string_equal(fleet_nodes_binding(3), "ev.*.config.unchanged");
    assert_string_equal(fleet_nodes_binding(4), "ev.*.config.rejected");
    assert_string_equal(fleet_nodes_binding(5), "ev.*.config.conflict");
    assert_string_equal(fleet_nodes_binding(6), "ev.*.node.forgotten");
    assert_null(fleet_nodes_binding(7));
}

static void test_kind_of_event_maps_core_types(void **state)
{
    const struct fleet_kind *k;

    (void)state;
    k = fleet_kind_of_event("metrics");
    assert_non_null(k);
    assert_string_equal(k->kind, "metrics.tick");
    assert_false(k->reliable);
    static const char *const reliable[] = {
        "listener.created", "listener.changed", "listener.deleted", "listener.state",
        "config.revision",  "backup.stored",    "backup.failed",    "backup.pruned"};
    for (size_t i = 0; i < sizeof(reliable) / sizeof(reliable[0]); i++) {
        k = fleet_kind_of_event(reliable[i]);
        assert_non_null(k);
        assert_string_equal(k->kind, reliable[i]);
        assert_true(k->reliable);
    }
    assert_null(fleet_kind_of_event("session.opened"));
    assert_null(fleet_kind_of_event(""));
    assert_null(fleet_kind_of_event(NULL));
}

static void test_kind_rules(void **state)
{
    (void)state;
    assert_true(fleet_kind_valid("node.hello"));
    assert_true(fleet_kind_valid("metrics.tick"));
    assert_false(fleet_kind_valid("metrics"));
    assert_false(fleet_kind_valid("a.b.c"));
    assert_false(fleet_kind_valid(".b"));
    assert_false(fleet_kind_valid("a."));
    assert_false(fleet_kind_valid("A.b"));
    assert_false(fleet_kind_valid("a.#"));
    assert_true(fleet_kind_is_reliable("config.applied"));
    assert_true(fleet_kind_is_reliable("node.hello"));
    assert_false(fleet_kind_is_reliable("node.status"));
    assert_false(fleet_kind_is_reliable("metrics.tick"));
}

static void test_routing_keys(void **state)
{
    char buf[FLEET_KEY_MAX];
    char node[FLEET_NAME_MAX];
    char kind[FLEET_KIND_MAX];

    (void)state;
    assert_int_equal(fleet_routing_key(buf, sizeof(buf), "n1", "listener.state"), 20);
    assert_string_equal(buf, "ev.n1.listener.state");
    assert_int_equal(fleet_routing_key(buf, sizeof(buf), "n.1", "listener.state"), -EINVAL);
    assert_int_equal(fleet_routing_key(buf, sizeof(buf), "n1", "listener"), -EINVAL);
    assert_int_equal(fleet_routing_key(buf, 10, "n1", "listener.state"), -ENOSPC);
    assert_int_equal(fleet_rpc_key(buf, sizeof(buf), NULL), 7);
    assert_string_equal(buf, "rpc.all");
    assert_int_equal(fleet_rpc_key(buf, sizeof(buf), "edge-2"), 10);
    assert_string_equal(buf, "rpc.edge-2");
    assert_int_equal(fleet_rpc_key(buf, sizeof(buf), "#"), -EINVAL);

    assert_int_equal(fleet_routing_key_parse("ev.n1.config.applied", node, kind), 0);
    assert_string_equal(node, "n1");
    assert_string_equal(kind, "config.applied");
    strcpy(node, "keep");
    assert_int_equal(fleet_routing_key_parse("rpc.n1", node, kind), -EINVAL);
    assert_int_equal(fleet_routing_key_parse("ev.n1.metrics", node, kind), -EINVAL);
    assert_int_equal(fleet_routing_key_parse("ev..metrics.tick", node, kind), -EINVAL);
    assert_int_equal(fleet_routing_key_parse("ev.N1.metrics.tick", node, kind), -EINVAL);
    assert_string_equal(node, "keep");
}

static void test_pattern_valid(void **state)
{
    (void)state;
    assert_true(fleet_pattern_valid("ev.#"));
    assert_true(fleet_pattern_valid("#"));
    assert_true(fleet_pattern_valid("ev.*.listener.#"));
    assert_true(fleet_pattern_valid("ev.n1.config.applied"));
    assert_false(fleet_pattern_valid(""));
    assert_false(fleet_pattern_valid(NULL));
    assert_false(fleet_pattern_valid("ev..x"));
    assert_false(fleet_pattern_valid("ev."));
    assert_false(fleet_pattern_valid(".ev"));
    assert_false(fleet_pattern_valid("ev.n*"));
    assert_false(fleet_pattern_valid("ev.*n"));
    assert_false(fleet_pattern_valid("ev.**"));
    assert_false(fleet_pattern_valid("ev.N1.#"));
    assert_false(fleet_pattern_valid("ev n1"));
}

/* ---- time, ids ---- */

static void test_time_format_and_parse(void **state)
{
    char buf[FLEET_TIME_LEN];
    int64_t ms = 0;

    (void)state;
    fleet_time_format(buf, sizeof(buf), 1796558400123LL);
    assert_string_equal(buf, "2026-12-06T12:00:00.123Z");
    fleet_time_format(buf, sizeof(buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    fleet_time_format(buf, sizeof(buf), -1);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");

    assert_int_equal(fleet_time_parse("2026-12-06T12:00:00.123Z", &ms), 0);
    assert_int_equal(ms, 1796558400123LL);
    assert_int_equal(fleet_time_parse("2026-12-06T12:00:00Z", &ms), 0);
    assert_int_equal(ms, 1796558400000LL);
    assert_int_equal(fleet_time_parse("2026-12-06T13:00:00.5+01:00", &ms), 0);
    assert_int_equal(ms, 1796558400500LL);
    ms = 42;
    assert_int_equal(fleet_time_parse("2026-12-06 12:00:00", &ms), -EINVAL);
    assert_int_equal(fleet_time_parse("2026-13-06T12:00:00Z", &ms), -EINVAL);
    assert_int_equal(fleet_time_parse("2026-12-06T12:00:00.Z", &ms), -EINVAL);
    assert_int_equal(fleet_time_parse("2026-12-06T12:00:00Zjunk", &ms), -EINVAL);
    assert_int_equal(fleet_time_parse("", &ms), -EINVAL);
    /* an offset must not carry the instant past a four-digit year: it could not be written back */
    assert_int_equal(fleet_time_parse("0000-01-01T00:00:00+01:00", &ms), -EINVAL);
    assert_int_equal(fleet_time_parse("9999-12-31T23:59:59-00:01", &ms), -EINVAL);
    assert_int_equal(fleet_time_parse("9999-12-31T23:59:60Z", &ms), -EINVAL);
    assert_int_equal(ms, 42);
    assert_int_equal(fleet_time_parse("0000-01-01T01:00:00+01:00", &ms), 0);
    fleet_time_format(buf, sizeof(buf), ms);
    assert_string_equal(buf, "0000-01-01T00:00:00.000Z");
    assert_int_equal(fleet_time_parse("9999-12-31T23:59:59.999Z", &ms), 0);
    fleet_time_format(buf, sizeof(buf), ms);
    assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
    assert_true(fleet_now_ms() > 1700000000000LL);
}

static void test_boot_id_is_16_hex_and_fresh(void **state)
{
    char a[FLEET_BOOT_LEN], b[FLEET_BOOT_LEN];

    (void)state;
    fleet_boot_id(a);
    fleet_boot_id(b);
    assert_int_equal(strlen(a), 16);
    assert_int_equal(strspn(a, "0123456789abcdef"), 16);
    assert_string_not_equal(a, b);
}

static void test_uuid_is_version_4(void **state)
{
    char a[FLEET_UUID_LEN], b[FLEET_UUID_LEN];

    (void)state;
    fleet_uuid(a);
    fleet_uuid(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
}

static void test_message_ids(void **state)
{
    char buf[FLEET_MESSAGE_ID_MAX];

    (void)state;
    assert_true(fleet_message_id(buf, sizeof(buf), "n1", "00112233aabbccdd", 12, 5) > 0);
    assert_string_equal(buf, "n1:00112233aabbccdd:12");
    assert_true(fleet_message_id(buf, sizeof(buf), "n1", "00112233aabbccdd", 0, 1796558400123LL) >
                0);
    assert_string_equal(buf, "n1:00112233aabbccdd:t1796558400123");
    assert_int_equal(fleet_message_id(buf, 8, "n1", "00112233aabbccdd", 1, 0), -ENOSPC);
}

/* ---- labels ---- */

static void test_labels_add_and_errors(void **state)
{
    struct fleet_labels l;
    struct core_err err = {0};
    char buf[128];

    (void)state;
    fleet_labels_init(&l);
    assert_int_equal(fleet_labels_add(&l, "role=edge", &err), 0);
    assert_int_equal(fleet_labels_add(&l, "zone=eu-1.a", &err), 0);
    assert_string_equal(fleet_labels_get(&l, "role"), "edge");
    assert_null(fleet_labels_get(&l, "nope"));
    assert_int_equal(fleet_labels_format(&l, buf, sizeof(buf)), 21);
    assert_string_equal(buf, "role=edge,zone=eu-1.a");
    assert_int_equal(fleet_labels_format(&l, buf, 5), -ENOSPC);

    assert_int_equal(fleet_labels_add(&l, "role=core", &err), -EINVAL);
    assert_string_equal(err.msg, "label key 'role' is given twice");
    assert_int_equal(fleet_labels_add(&l, "role", &err), -EINVAL);
    assert_string_equal(err.msg, "label 'role' is not KEY=VALUE");
    assert_int_equal(fleet_labels_add(&l, "=x", &err), -EINVAL);
    assert_string_equal(err.msg, "label '=x' is not KEY=VALUE");
    assert_int_equal(fleet_labels_add(&l, "k=", &err), -EINVAL);
    assert_int_equal(fleet_labels_add(&l, "k!=v", &err), -EINVAL);
    assert_string_equal(err.msg, "label 'k!=v' has an invalid key (want [A-Za-z0-9_.-]{1,63})");
    assert_int_equal(fleet_labels_add(&l, "k=v=w", &err), -EINVAL);
    assert_string_equal(err.msg, "label 'k=v=w' has an invalid value (want [A-Za-z0-9_.-]{1,63})");
    assert_int_equal(l.n, 2);

    for (int i = 2; i < FLEET_LABELS_MAX; i++) {
        char kv[16];

        snprintf(kv, sizeof(kv), "k%d=v", i);
        assert_int_equal(fleet_labels_add(&l, kv, &err), 0);
    }
    assert_int_equal(fleet_labels_add(&l, "one=more", &err), -EINVAL);
    assert_string_equal(err.msg, "at most 16 labels");
    assert_int_equal(l.n, FLEET_LABELS_MAX);
}

static void test_labels_json_round_trip(void **state)
{
    struct fleet_labels l = {0}, back;
    struct core_err err = {0};
    json_t *j;

    (void)state;
    assert_int_equal(fleet_labels_add(&l, "role=edge", NULL), 0);
    assert_int_equal(fleet_labels_add(&l, "zone=a", NULL), 0);
    j = fleet_labels_json(&l);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(text, "{\"role\":\"edge\",\"zone\":\"a\"}");
    free(text);
    assert_int_equal(fleet_labels_from_json(j, &back, &err), 0);
    assert_int_equal(back.n, 2);
    assert_string_equal(fleet_labels_get(&back, "zone"), "a");
    json_decref(j);

    j = json_pack("{s:i}", "role", 1);
    assert_int_equal(fleet_labels_from_json(j, &back, &err), -EINVAL);
    assert_string_equal(err.field, "labels.role");
    json_decref(j);
    j = json_pack("{s:s}", "ro le", "x");
    assert_int_equal(fleet_labels_from_json(j, &back, &err), -EINVAL);
    assert_string_equal(err.field, "labels.ro le");
    json_decref(j);
    j = json_array();
    assert_int_equal(fleet_labels_from_json(j, &back, &err), -EINVAL);
    assert_string_equal(err.field, "labels");
    json_decref(j);
}

/* ---- selectors ---- */

static void expect_selector_error(const char *text, const char *msg)
{
    struct fleet_selector sel;
    struct core_err err = {0};

    sel.terms.n = 99;
    assert_int_equal(fleet_selector_parse(text, &sel, &err), -EINVAL);
    assert_string_equal(err.msg, msg);
    assert_int_equal(sel.terms.n, 99); /* untouched */
}

static void test_selector_edge_cases(void **state)
{
    (void)state;
    expect_selector_error("", "selector is empty");
    expect_selector_error(NULL, "selector is empty");
    expect_selector_error("x", "selector term 'x' is not KEY=VALUE");
    expect_selector_error("a=", "selector term 'a=' is not KEY=VALUE");
    expect_selector_error("=b", "selector term '=b' is not KEY=VALUE");
    expect_selector_error("a=b,,c=d", "selector term '' is not KEY=VALUE");
    expect_selector_error("a=b,", "selector term '' is not KEY=VALUE");
    expect_selector_error("a=1,a=2", "selector key 'a' is given twice");
    expect_selector_error("role=edge, zone=a",
                          "selector term ' zone=a' has an invalid key (want [A-Za-z0-9_.-]{1,63})");
    expect_selector_error("k=v*",
                          "selector term 'k=v*' has an invalid value (want [A-Za-z0-9_.-]{1,63})");
    expect_selector_error("a=1,b=1,c=1,d=1,e=1,f=1,g=1,h=1,i=1,j=1,k=1,l=1,m=1,n=1,o=1,p=1,q=1",
                          "selector has more than 16 terms");
}

static void test_selector_sixteen_terms_parse(void **state)
{
    struct fleet_selector sel;

    (void)state;
    assert_int_equal(
        fleet_selector_parse("a=1,b=1,c=1,d=1,e=1,f=1,g=1,h=1,i=1,j=1,k=1,l=1,m=1,n=1,o=1,p=1",
                             &sel, NULL),
        0);
    assert_int_equal(sel.terms.n, 16);
}

static void test_selector_match_and_format(void **state)
{
    struct fleet_selector sel;
    struct fleet_labels l = {0};
    char buf[64];

    (void)state;
    assert_int_equal(fleet_labels_add(&l, "role=edge", NULL), 0);
    assert_int_equal(fleet_labels_add(&l, "zone=a", NULL), 0);
    assert_int_equal(fleet_selector_parse("zone=a,role=edge", &sel, NULL), 0);
    assert_true(fleet_selector_match(&sel, &l));
    assert_int_equal(fleet_selector_format(&sel, buf, sizeof(buf)), 16);
    assert_string_equal(buf, "zone=a,role=edge");
    assert_int_equal(fleet_selector_parse("role=edge,zone=b", &sel, NULL), 0);
    assert_false(fleet_selector_match(&sel, &l));
    assert_int_equal(fleet_selector_parse("rack=1", &sel, NULL), 0);
    assert_false(fleet_selector_match(&sel, &l));
    assert_false(fleet_selector_match(&sel, NULL));
    assert_int_equal(fleet_selector_parse("Role=edge", &sel, NULL), 0);
    assert_false(fleet_selector_match(&sel, &l)); /* keys are case-sensitive */
}

/* ---- envelopes and sequences ---- */

static void test_envelope_round_trip(void **state)
{
    struct fleet_envelope e;
    struct core_err err = {0};
    json_t *j;
    char *text;

    (void)state;
    j = fleet_envelope("n1", "00112233aabbccdd", 12, 1796558400123LL, "listener.state",
                       json_pack("{s:s,s:s}", "id", "e1", "state", "running"));
    assert_non_null(j);
    text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(text, "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"seq\":12,"
                              "\"time\":\"2026-12-06T12:00:00.123Z\",\"kind\":\"listener.state\","
                              "\"data\":{\"id\":\"e1\",\"state\":\"running\"}}");
    assert_int_equal(fleet_envelope_parse(text, strlen(text), &e, &err), 0);
    assert_string_equal(e.node, "n1");
    assert_string_equal(e.boot, "00112233aabbccdd");
    assert_int_equal(e.seq, 12);
    assert_int_equal(e.time_ms, 1796558400123LL);
    assert_string_equal(e.kind, "listener.state");
    assert_string_equal(json_string_value(json_object_get(e.data, "state")), "running");
    fleet_envelope_fini(&e);
    free(text);
    json_decref(j);

    j = fleet_envelope("n1", "00112233aabbccdd", 0, 0, "metrics.tick", NULL);
    text = json_dumps(j, JSON_COMPACT);
    assert_non_null(strstr(text, "\"seq\":null"));
    assert_non_null(strstr(text, "\"data\":{}"));
    assert_int_equal(fleet_envelope_parse(text, strlen(text), &e, &err), 0);
    assert_int_equal(e.seq, 0);
    fleet_envelope_fini(&e);
    free(text);
    json_decref(j);
}

static void expect_envelope_error(const char *body, const char *field)
{
    struct fleet_envelope e = {0};
    struct core_err err = {0};

    assert_int_equal(fleet_envelope_parse(body, strlen(body), &e, &err), -EINVAL);
    assert_string_equal(err.field, field);
    assert_true(err.msg[0] != '\0');
    assert_null(e.data);
}

static void test_envelope_parse_names_bad_member(void **state)
{
    (void)state;
    expect_envelope_error("not json", "");
    expect_envelope_error("[]", "");
    expect_envelope_error("{\"boot\":\"00112233aabbccdd\",\"seq\":1,\"time\":\"2026-12-06T12:00:"
                          "00Z\",\"kind\":\"a.b\",\"data\":{}}",
                          "node");
    expect_envelope_error("{\"node\":\"n1\",\"boot\":\"xyz\",\"seq\":1,\"time\":\"2026-12-06T12:"
                          "00:00Z\",\"kind\":\"a.b\",\"data\":{}}",
                          "boot");
    expect_envelope_error("{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"seq\":-1,\"time\":"
                          "\"2026-12-06T12:00:00Z\",\"kind\":\"a.b\",\"data\":{}}",
                          "seq");
    expect_envelope_error("{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"seq\":0,\"time\":"
                          "\"2026-12-06T12:00:00Z\",\"kind\":\"a.b\",\"data\":{}}",
                          "seq");
    expect_envelope_error("{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"seq\":1,\"time\":"
                          "\"yesterday\",\"kind\":\"a.b\",\"data\":{}}",
                          "time");
    expect_envelope_error("{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"seq\":1,\"time\":"
                          "\"2026-12-06T12:00:00Z\",\"kind\":\"ab\",\"data\":{}}",
                          "kind");
    expect_envelope_error("{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"seq\":1,\"time\":"
                          "\"2026-12-06T12:00:00Z\",\"kind\":\"a.b\"}",
                          "data");
}

static void test_seq_verdicts(void **state)
{
    struct fleet_seq_track t = {0};

    (void)state;
    assert_int_equal(fleet_seq_check(&t, "aaaaaaaaaaaaaaaa", 5), FLEET_SEQ_NEW_BOOT);
    assert_int_equal(fleet_seq_check(&t, "aaaaaaaaaaaaaaaa", 6), FLEET_SEQ_NEXT);
    assert_int_equal(fleet_seq_check(&t, "aaaaaaaaaaaaaaaa", 6), FLEET_SEQ_DUPLICATE);
    assert_int_equal(fleet_seq_check(&t, "aaaaaaaaaaaaaaaa", 3), FLEET_SEQ_DUPLICATE);
    assert_int_equal(fleet_seq_check(&t, "aaaaaaaaaaaaaaaa", 0), FLEET_SEQ_UNTRACKED);
    assert_int_equal(fleet_seq_check(&t, "aaaaaaaaaaaaaaaa", 9), FLEET_SEQ_GAP);
    assert_int_equal(t.last, 9);
    assert_int_equal(fleet_seq_check(&t, "aaaaaaaaaaaaaaaa", 10), FLEET_SEQ_NEXT);
    assert_int_equal(fleet_seq_check(&t, "bbbbbbbbbbbbbbbb", 1), FLEET_SEQ_NEW_BOOT);
    assert_string_equal(t.boot, "bbbbbbbbbbbbbbbb");
    assert_int_equal(fleet_seq_check(&t, "bbbbbbbbbbbbbbbb", 2), FLEET_SEQ_NEXT);
    /* an unreliable event of a new boot: tracked from 0 */
    assert_int_equal(fleet_seq_check(&t, "cccccccccccccccc", 0), FLEET_SEQ_NEW_BOOT);
    assert_int_equal(fleet_seq_check(&t, "cccccccccccccccc", 1), FLEET_SEQ_NEXT);
    assert_string_equal(fleet_seq_verdict_name(FLEET_SEQ_GAP), "gap");
    assert_string_equal(fleet_seq_verdict_name(FLEET_SEQ_NEW_BOOT), "new_boot");
}

/* ---- records ---- */

#define CFG "\"config\":{\"listeners\":[]}"

static void test_record_parse_full(void **state)
{
    static const char body[] =
        "{\"target\":{\"nodes\":[\"n1\",\"n3\"],\"selector\":\"role=edge,zone=a\"}," CFG
        ",\"if_match\":{\"n1\":\"\\\"17\\\"\"},\"issued_by\":\"root@host\","
        "\"issued_at\":\"2026-12-06T12:00:00Z\"}";
    struct fleet_record r;
    struct core_err err = {0};

    (void)state;
    assert_int_equal(fleet_record_parse(body, strlen(body), &r, &err), 0);
    assert_true(r.target_valid);
    assert_int_equal(r.n_nodes, 2);
    assert_string_equal(r.nodes[1], "n3");
    assert_true(r.has_selector);
    assert_int_equal(r.selector.terms.n, 2);
    assert_false(r.all);
    assert_true(json_is_array(json_object_get(r.config, "listeners")));
    assert_string_equal(fleet_record_if_match(&r, "n1"), "\"17\"");
    assert_null(fleet_record_if_match(&r, "n3"));
    assert_string_equal(r.issued_by, "root@host");
    assert_string_equal(r.issued_at, "2026-12-06T12:00:00Z");
    fleet_record_fini(&r);
    assert_null(r.nodes);
    fleet_record_fini(&r); /* twice is harmless */
}

static void expect_record_error(const char *body, const char *field, const char *msg,
                                bool target_valid)
{
    struct fleet_record r;
    struct core_err err = {0};

    assert_int_equal(fleet_record_parse(body, strlen(body), &r, &err), -EINVAL);
    assert_string_equal(err.field, field);
    if (msg)
        assert_string_equal(err.msg, msg);
    assert_int_equal(r.target_valid, target_valid);
    assert_null(r.config);
    fleet_record_fini(&r);
}

/* "rpc.all" is every node's key: no node may be named all, and no host name makes one. */
static void test_node_name_all_is_reserved(void **state)
{
    char buf[FLEET_NAME_MAX];
    char key[FLEET_KEY_MAX];
    char small[4];
    char nine[9];
    struct core_err err = {0};
    struct fleet_envelope e = {0};
    const char *env = "{\"node\":\"all\",\"boot\":\"0123456789abcdef\",\"seq\":1,"
                      "\"time\":\"2026-12-06T12:00:00.000Z\",\"kind\":\"node.bye\",\"data\":{}}";

    (void)state;
    assert_false(fleet_node_name_valid("all"));
    assert_true(fleet_node_name_valid("all-node"));
    assert_true(fleet_node_name_valid("all1"));
    assert_true(fleet_node_name_valid("al"));
    assert_true(fleet_node_name_valid("xall"));
    assert_int_equal(fleet_rpc_key(key, sizeof(key), "all"), -EINVAL);
    assert_int_equal(fleet_node_queue(key, sizeof(key), "sockserv", "all"), -EINVAL);
    assert_int_equal(fleet_routing_key(key, sizeof(key), "all", "node.hello"), -EINVAL);
    assert_int_equal(fleet_envelope_parse(env, strlen(env), &e, &err), -EINVAL);
    assert_string_equal(err.field, "node");
    expect_record_error("{\"target\":{\"nodes\":[\"all\"]}," CFG "}", "target.nodes[0]",
                        "target.nodes[0] is not a node name ([a-z0-9][a-z0-9_-]{0,62}, not 'all')",
                        false);

    assert_int_equal(fleet_node_name_from_text("all", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "all-node");
    assert_int_equal(fleet_node_name_from_text("ALL", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "all-node");
    assert_int_equal(fleet_node_name_from_text("_-All", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "all-node");
    assert_int_equal(fleet_node_name_from_text("all.example", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "all-example");
    assert_int_equal(fleet_node_name_from_text("all", nine, sizeof(nine)), 0);
    assert_string_equal(nine, "all-node");
    /* cut to "all" by a short buffer: the "node" fallback, cut too */
    assert_int_equal(fleet_node_name_from_text("allegro", small, sizeof(small)), 0);
    assert_string_equal(small, "nod");
    assert_true(fleet_node_name_valid(small));
    assert_int_equal(fleet_node_name_from_text("all", nine, sizeof(nine) - 1), 0);
    assert_string_equal(nine, "node");
}

static void test_record_parse_names_each_bad_field(void **state)
{
    (void)state;
    expect_record_error("{\"target\":", "", NULL, false);
    expect_record_error("[1,2]", "", "record is not a JSON object", false);
    expect_record_error("{" CFG "}", "target", "record has no target", false);
    expect_record_error("{\"target\":[]," CFG "}", "target",
                        "target must be an object with nodes, selector or all", false);
    expect_record_error("{\"target\":{}," CFG "}", "target", "target needs nodes, selector or all",
                        false);
    expect_record_error("{\"target\":{\"node\":[\"n1\"]}," CFG "}", "target.node",
                        "unknown member 'node' in target", false);
    expect_record_error("{\"target\":{\"nodes\":[]}," CFG "}", "target.nodes",
                        "target.nodes must be an array of 1-1024 node names", false);
    expect_record_error("{\"target\":{\"nodes\":\"n1\"}," CFG "}", "target.nodes", NULL, false);
    expect_record_error("{\"target\":{\"nodes\":[\"n1\",\"N2\"]}," CFG "}", "target.nodes[1]",
                        "target.nodes[1] is not a node name ([a-z0-9][a-z0-9_-]{0,62}, not 'all')",
                        false);
    expect_record_error("{\"target\":{\"selector\":\"role\"}," CFG "}", "target.selector",
                        "selector term 'role' is not KEY=VALUE", false);
    expect_record_error("{\"target\":{\"selector\":7}," CFG "}", "target.selector", NULL, false);
    expect_record_error("{\"target\":{\"all\":false}," CFG "}", "target.all",
                        "target.all must be true", false);
    expect_record_error("{\"target\":{\"all\":true,\"nodes\":[\"n1\"]}," CFG "}", "target",
                        "target.all cannot be combined with nodes or selector", false);
    /* the target is known: only the targeted nodes answer */
    expect_record_error("{\"target\":{\"all\":true}," CFG ",\"\":1}", "\"\"",
                        "unknown member '' in record", true);
    expect_record_error("{\"target\":{\"all\":true}}", "config",
                        "config must be an object (the body of PUT /api/v1/config)", true);
    expect_record_error("{\"target\":{\"all\":true},\"config\":[]}", "config", NULL, true);
    expect_record_error("{\"target\":{\"all\":true},\"config\":{}}", "config.listeners",
                        "config.listeners must be an array", true);
    expect_record_error("{\"target\":{\"all\":true}," CFG ",\"colour\":1}", "colour",
                        "unknown member 'colour' in record", true);
    expect_record_error("{\"target\":{\"all\":true}," CFG ",\"if_match\":\"x\"}", "if_match", NULL,
                        true);
    expect_record_error("{\"target\":{\"all\":true}," CFG ",\"if_match\":{\"n1\":17}}",
                        "if_match.n1", "if_match.n1 must be an ETag string", true);
    expect_record_error("{\"target\":{\"all\":true}," CFG ",\"if_match\":{\"N1\":\"x\"}}",
                        "if_match.N1", NULL, true);
    expect_record_error("{\"target\":{\"all\":true}," CFG ",\"issued_by\":1}", "issued_by", NULL,
                        true);
    expect_record_error("{\"target\":{\"all\":true}," CFG ",\"issued_at\":\"now\"}", "issued_at",
                        "issued_at must be an RFC 3339 time", true);
}

static void test_record_parse_bad_field_keeps_target(void **state)
{
    static const char body[] = "{\"target\":{\"nodes\":[\"n1\"]},\"config\":{}}";
    struct fleet_record r;
    struct fleet_labels none = {0};

    (void)state;
    assert_int_equal(fleet_record_parse(body, strlen(body), &r, NULL), -EINVAL);
    assert_true(fleet_record_targets(&r, "n1", &none));
    assert_false(fleet_record_targets(&r, "n2", &none));
    fleet_record_fini(&r);
}

static void parse_ok(const char *body, struct fleet_record *r)
{
    struct core_err err = {0};

    if (fleet_record_parse(body, strlen(body), r, &err) < 0)
        fail_msg("%s: %s (%s)", body, err.msg, err.field);
}

static void test_record_targets(void **state)
{
    struct fleet_record r;
    struct fleet_labels edge_a = {0}, edge_b = {0}, none = {0};

    (void)state;
    assert_int_equal(fleet_labels_add(&edge_a, "role=edge", NULL), 0);
    assert_int_equal(fleet_labels_add(&edge_a, "zone=a", NULL), 0);
    assert_int_equal(fleet_labels_add(&edge_b, "role=edge", NULL), 0);
    assert_int_equal(fleet_labels_add(&edge_b, "zone=b", NULL), 0);

    parse_ok("{\"target\":{\"nodes\":[\"n1\",\"n3\"]}," CFG "}", &r);
    assert_true(fleet_record_targets(&r, "n1", &none));
    assert_true(fleet_record_targets(&r, "n3", &edge_a));
    assert_false(fleet_record_targets(&r, "n2", &edge_a));
    fleet_record_fini(&r);

    parse_ok("{\"target\":{\"selector\":\"role=edge,zone=a\"}," CFG "}", &r);
    assert_true(fleet_record_targets(&r, "n9", &edge_a));
    assert_false(fleet_record_targets(&r, "n9", &edge_b));
    assert_false(fleet_record_targets(&r, "n9", &none));
    fleet_record_fini(&r);

    parse_ok("{\"target\":{\"all\":true}," CFG "}", &r);
    assert_true(fleet_record_targets(&r, "anyone", &none));
    fleet_record_fini(&r);

    /* named OR matching */
    parse_ok("{\"target\":{\"nodes\":[\"n2\"],\"selector\":\"zone=a\"}," CFG "}", &r);
    assert_true(fleet_record_targets(&r, "n2", &edge_b));
    assert_true(fleet_record_targets(&r, "n7", &edge_a));
    assert_false(fleet_record_targets(&r, "n7", &edge_b));
    fleet_record_fini(&r);
}

static void test_record_build_round_trip_and_errors(void **state)
{
    const char *nodes[] = {"n1", "n2"};
    json_t *config = json_pack("{s:[]}", "listeners");
    json_t *if_match = json_pack("{s:s}", "n1", "\"3\"");
    struct fleet_record r;
    struct core_err err = {0};
    json_t *j = NULL;
    char *text;

    (void)state;
    assert_int_equal(fleet_record_build(nodes, 2, "role=edge", false, config, if_match, "root@host",
                                        1796558400123LL, &j, &err),
                     0);
    text = json_dumps(j, JSON_COMPACT);
    parse_ok(text, &r);
    assert_int_equal(r.n_nodes, 2);
    assert_true(r.has_selector);
    assert_string_equal(fleet_record_if_match(&r, "n1"), "\"3\"");
    assert_string_equal(r.issued_by, "root@host");
    assert_string_equal(r.issued_at, "2026-12-06T12:00:00.123Z");
    fleet_record_fini(&r);
    free(text);
    json_decref(j);

    j = NULL;
    assert_int_equal(fleet_record_build(NULL, 0, NULL, true, config, NULL, "me", 0, &j, &err), 0);
    text = json_dumps(json_object_get(j, "target"), JSON_COMPACT);
    assert_string_equal(text, "{\"all\":true}");
    free(text);
    json_decref(j);

    j = NULL;
    assert_int_equal(fleet_record_build(NULL, 0, "role", false, config, NULL, "me", 0, &j, &err),
                     -EINVAL);
    assert_string_equal(err.field, "target.selector");
    assert_string_equal(err.msg, "selector term 'role' is not KEY=VALUE");
    assert_int_equal(fleet_record_build(NULL, 0, NULL, false, config, NULL, "me", 0, &j, &err),
                     -EINVAL);
    assert_string_equal(err.field, "target");
    assert_int_equal(fleet_record_build(nodes, 2, NULL, false, if_match, NULL, "me", 0, &j, &err),
                     -EINVAL);
    assert_string_equal(err.field, "config.listeners");
    assert_null(j);
    json_decref(config);
    json_decref(if_match);
}

/* ---- decisions ---- */

static void test_record_decide(void **state)
{
    struct fleet_record r;
    struct fleet_labels edge = {0}, none = {0};
    const char *bad_target = "{\"target\":{\"selector\":\"x\"}," CFG "}";
    const char *bad_config = "{\"target\":{\"nodes\":[\"n1\"]},\"config\":7}";
    int pr;

    (void)state;
    assert_int_equal(fleet_labels_add(&edge, "role=edge", NULL), 0);
    parse_ok("{\"target\":{\"selector\":\"role=edge\"}," CFG "}", &r);
    assert_int_equal(fleet_record_decide(10, false, 0, 0, &r, "n1", &edge), FLEET_VERDICT_APPLY);
    assert_int_equal(fleet_record_decide(10, true, 9, 0, &r, "n1", &edge), FLEET_VERDICT_APPLY);
    assert_int_equal(fleet_record_decide(10, true, 10, 0, &r, "n1", &edge), FLEET_VERDICT_SKIP_OLD);
    assert_int_equal(fleet_record_decide(3, true, 10, 0, &r, "n1", &edge), FLEET_VERDICT_SKIP_OLD);
    assert_int_equal(fleet_record_decide(0, false, 0, 0, &r, "n1", &none),
                     FLEET_VERDICT_NOT_TARGETED);
    fleet_record_fini(&r);

    /* a bad target: every node rejects */
    pr = fleet_record_parse(bad_target, strlen(bad_target), &r, NULL);
    assert_int_equal(pr, -EINVAL);
    assert_int_equal(fleet_record_decide(11, true, 10, pr, &r, "n2", &none), FLEET_VERDICT_REJECT);
    assert_int_equal(fleet_record_decide(10, true, 10, pr, &r, "n2", &none),
                     FLEET_VERDICT_SKIP_OLD);
    fleet_record_fini(&r);
    /* not a JSON object at all: every node rejects */
    pr = fleet_record_parse("garbage", 7, &r, NULL);
    assert_int_equal(fleet_record_decide(11, false, 0, pr, &r, "n2", &none), FLEET_VERDICT_REJECT);
    assert_int_equal(fleet_record_decide(11, false, 0, pr, NULL, "n2", &none),
                     FLEET_VERDICT_REJECT);
    fleet_record_fini(&r);
    /* a bad field with a known target: the targeted node rejects, the others ignore it */
    pr = fleet_record_parse(bad_config, strlen(bad_config), &r, NULL);
    assert_int_equal(fleet_record_decide(12, false, 0, pr, &r, "n1", &none), FLEET_VERDICT_REJECT);
    assert_int_equal(fleet_record_decide(12, false, 0, pr, &r, "n2", &none),
                     FLEET_VERDICT_NOT_TARGETED);
    fleet_record_fini(&r);
    assert_string_equal(fleet_verdict_name(FLEET_VERDICT_NOT_TARGETED), "not_targeted");
}

static void test_burst_keeps_newest_targeting(void **state)
{
    const enum fleet_verdict burst[] = {FLEET_VERDICT_SKIP_OLD, FLEET_VERDICT_APPLY,
                                        FLEET_VERDICT_APPLY,    FLEET_VERDICT_NOT_TARGETED,
                                        FLEET_VERDICT_APPLY,    FLEET_VERDICT_NOT_TARGETED};
    const enum fleet_verdict rejected_last[] = {FLEET_VERDICT_APPLY, FLEET_VERDICT_REJECT,
                                                FLEET_VERDICT_NOT_TARGETED};
    const enum fleet_verdict nothing[] = {FLEET_VERDICT_SKIP_OLD, FLEET_VERDICT_NOT_TARGETED};

    (void)state;
    assert_int_equal(fleet_burst_pick(burst, 6), 4);
    assert_int_equal(fleet_burst_pick(burst, 3), 2);
    assert_int_equal(fleet_burst_pick(rejected_last, 3), 1);
    assert_int_equal(fleet_burst_pick(nothing, 2), 2);
    assert_int_equal(fleet_burst_pick(NULL, 0), 0);
}

/* ---- results, replies, exit codes ---- */

static void test_result_names(void **state)
{
    enum fleet_result r;

    (void)state;
    for (int i = 0; i < FLEET_RESULT_COUNT; i++) {
        assert_int_equal(fleet_result_from_name(fleet_result_name((enum fleet_result)i), &r), 0);
        assert_int_equal(r, i);
    }
    assert_string_equal(fleet_result_name(FLEET_RESULT_CONFLICT), "conflict");
    assert_int_equal(fleet_result_from_name("ok", &r), -EINVAL);
    assert_int_equal(fleet_result_from_name(NULL, &r), -EINVAL);
}

static void test_reply_round_trip(void **state)
{
    struct fleet_reply rep = {
        .node = "n1",
        .boot = "00112233aabbccdd",
        .result = FLEET_RESULT_REJECTED,
        .offset = 42,
        .record = "5b3c8a2e-0000-4000-8000-000000000001",
        .revision = 7,
        .etag = "\"7\"",
        .has_applied_offset = true,
        .applied_offset = 40,
    };
    struct fleet_reply back;
    struct core_err err = {0};
    json_t *j;
    char *text;

    (void)state;
    rep.problem =
        json_pack("{s:s,s:s,s:i,s:s,s:s}", "type", "about:blank", "title", "Bad Request", "status",
                  400, "detail", "port 7 is taken", "field", "listeners[0].port");
    j = fleet_reply_json(&rep);
    text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(
        text, "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"result\":\"rejected\","
              "\"offset\":42,\"record\":\"5b3c8a2e-0000-4000-8000-000000000001\",\"revision\":7,"
              "\"etag\":\"\\\"7\\\"\",\"applied_offset\":40,\"problem\":{\"type\":\"about:blank\","
              "\"title\":\"Bad Request\",\"status\":400,\"detail\":\"port 7 is taken\","
              "\"field\":\"listeners[0].port\"}}");
    assert_int_equal(fleet_reply_parse(text, strlen(text), &back, &err), 0);
    assert_string_equal(back.node, "n1");
    assert_int_equal(back.result, FLEET_RESULT_REJECTED);
    assert_int_equal(back.offset, 42);
    assert_string_equal(back.record, rep.record);
    assert_int_equal(back.revision, 7);
    assert_string_equal(back.etag, "\"7\"");
    assert_true(back.has_applied_offset);
    assert_int_equal(back.applied_offset, 40);
    assert_string_equal(json_string_value(json_object_get(back.problem, "detail")),
                        "port 7 is taken");
    fleet_reply_fini(&back);
    free(text);
    json_decref(j);
    fleet_reply_fini(&rep);

    rep.result = FLEET_RESULT_APPLIED;
    rep.has_applied_offset = false;
    rep.record[0] = '\0';
    j = fleet_reply_json(&rep);
    text = json_dumps(j, JSON_COMPACT);
    assert_non_null(strstr(text, "\"applied_offset\":null,\"problem\":null"));
    assert_non_null(strstr(text, "\"record\":null"));
    assert_int_equal(fleet_reply_parse(text, strlen(text), &back, &err), 0);
    assert_false(back.has_applied_offset);
    assert_null(back.problem);
    fleet_reply_fini(&back);
    free(text);
    json_decref(j);
}

static void test_reply_parse_errors(void **state)
{
    struct fleet_reply back;
    struct core_err err = {0};
    const char *bad_result = "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"result\":\"ok\","
                             "\"offset\":1,\"revision\":1,\"etag\":\"\\\"1\\\"\"}";
    const char *bad_offset = "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"result\":"
                             "\"applied\",\"offset\":\"1\",\"revision\":1,\"etag\":\"x\"}";

    (void)state;
    assert_int_equal(fleet_reply_parse(bad_result, strlen(bad_result), &back, &err), -EINVAL);
    assert_string_equal(err.field, "result");
    assert_int_equal(fleet_reply_parse(bad_offset, strlen(bad_offset), &back, &err), -EINVAL);
    assert_string_equal(err.field, "offset");
    assert_string_equal(err.msg, "offset must be a non-negative integer");
    assert_int_equal(fleet_reply_parse("{}", 2, &back, &err), -EINVAL);
    assert_string_equal(err.field, "node");
}

static void test_exit_codes(void **state)
{
    const enum fleet_result ok[] = {FLEET_RESULT_APPLIED, FLEET_RESULT_UNCHANGED};
    const enum fleet_result conflict[] = {FLEET_RESULT_APPLIED, FLEET_RESULT_CONFLICT};
    const enum fleet_result both[] = {FLEET_RESULT_CONFLICT, FLEET_RESULT_REJECTED};

    (void)state;
    assert_int_equal(fleet_exit_code(ok, 2, 0), 0);
    assert_int_equal(fleet_exit_code(NULL, 0, 0), 0);
    assert_int_equal(fleet_exit_code(ok, 2, 1), 5);
    assert_int_equal(fleet_exit_code(NULL, 0, 3), 5);
    assert_int_equal(fleet_exit_code(conflict, 2, 0), 3);
    assert_int_equal(fleet_exit_code(conflict, 2, 1), 3);
    assert_int_equal(fleet_exit_code(both, 2, 0), 1);
    assert_int_equal(fleet_exit_code(both, 2, 4), 1);
}

/* ---- rpc and pongs ---- */

static void test_rpc_request_and_error(void **state)
{
    char op[16];
    struct core_err err = {0};
    json_t *j = fleet_ping_request();
    char *text = json_dumps(j, JSON_COMPACT);

    (void)state;
    assert_string_equal(text, "{\"op\":\"ping\"}");
    assert_int_equal(fleet_rpc_op(text, strlen(text), op, sizeof(op), &err), 0);
    assert_string_equal(op, "ping");
    free(text);
    json_decref(j);
    assert_int_equal(fleet_rpc_op("{\"op\":1}", 8, op, sizeof(op), &err), -EINVAL);
    assert_string_equal(err.field, "op");
    assert_int_equal(fleet_rpc_op("nope", 4, op, sizeof(op), &err), -EINVAL);
    assert_int_equal(fleet_rpc_op("{\"op\":\"a-very-long-operation\"}", 30, op, sizeof(op), &err),
                     -ENOSPC);

    j = fleet_rpc_error("n1", "reboot");
    text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(text, "{\"node\":\"n1\",\"error\":\"unknown op reboot\"}");
    {
        struct fleet_pong p;

        assert_int_equal(fleet_pong_parse(text, strlen(text), &p, &err), -EINVAL);
        assert_string_equal(err.field, "error");
        assert_string_equal(err.msg, "node n1: unknown op reboot");
    }
    free(text);
    json_decref(j);
}

#define PONG_HEAD                                                                                  \
    "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"version\":\"0.1.0\","                        \
    "\"labels\":{\"role\":\"edge\"},\"started\":\"2026-12-06T11:00:00.000Z\","                     \
    "\"time\":\"2026-12-06T12:00:00.123Z\",\"revision\":7,\"etag\":\"\\\"7\\\"\","

static void test_pong_parse(void **state)
{
    static const char full[] =
        PONG_HEAD "\"applied_offset\":42,\"desired_offset\":43,"
                  "\"last_result\":{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"result\":"
                  "\"conflict\",\"offset\":43,\"record\":\"r1\",\"revision\":7,\"etag\":"
                  "\"\\\"7\\\"\",\"applied_offset\":42,\"problem\":{\"status\":412}},"
                  "\"listeners\":[{\"id\":\"e1\"},{\"id\":\"d1\"}],\"bridge\":{\"state\":"
                  "\"connected\"}}";
    static const char fresh[] = PONG_HEAD "\"applied_offset\":null,\"desired_offset\":null,"
                                          "\"last_result\":null,\"listeners\":[]}";
    static const char bad_last[] =
        PONG_HEAD "\"applied_offset\":null,\"desired_offset\":null,"
                  "\"last_result\":{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"result\":"
                  "\"applied\",\"offset\":-4,\"revision\":7,\"etag\":\"x\"},\"listeners\":[]}";
    static const char bad_labels[] =
        "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"version\":\"0.1.0\","
        "\"labels\":{\"role\":\"\"},\"listeners\":[]}";
    struct fleet_pong p;
    struct core_err err = {0};

    (void)state;
    assert_int_equal(fleet_pong_parse(full, strlen(full), &p, &err), 0);
    assert_string_equal(p.node, "n1");
    assert_string_equal(p.version, "0.1.0");
    assert_string_equal(fleet_labels_get(&p.labels, "role"), "edge");
    assert_int_equal(p.time_ms, 1796558400123LL);
    assert_int_equal(p.revision, 7);
    assert_string_equal(p.etag, "\"7\"");
    assert_true(p.has_applied_offset);
    assert_int_equal(p.applied_offset, 42);
    assert_true(p.has_desired_offset);
    assert_int_equal(p.desired_offset, 43);
    assert_true(p.has_last_result);
    assert_int_equal(p.last_result.result, FLEET_RESULT_CONFLICT);
    assert_int_equal(p.last_result.offset, 43);
    assert_int_equal(json_integer_value(json_object_get(p.last_result.problem, "status")), 412);
    assert_int_equal(p.n_listeners, 2);
    assert_string_equal(json_string_value(json_object_get(p.bridge, "state")), "connected");
    fleet_pong_fini(&p);

    assert_int_equal(fleet_pong_parse(fresh, strlen(fresh), &p, &err), 0);
    assert_false(p.has_applied_offset);
    assert_false(p.has_desired_offset);
    assert_false(p.has_last_result);
    assert_int_equal(p.n_listeners, 0);
    assert_null(p.bridge);
    fleet_pong_fini(&p);

    assert_int_equal(fleet_pong_parse(bad_last, strlen(bad_last), &p, &err), -EINVAL);
    assert_string_equal(err.field, "last_result.offset");
    assert_int_equal(fleet_pong_parse(bad_labels, strlen(bad_labels), &p, &err), -EINVAL);
    assert_string_equal(err.field, "labels.role");
}

static void test_pong_missing_members_named(void **state)
{
    static const char no_listeners[] = PONG_HEAD "\"applied_offset\":1}";
    static const char no_labels[] =
        "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"version\":\"0.1.0\"}";
    struct fleet_pong p;
    struct core_err err = {0};

    (void)state;
    assert_int_equal(fleet_pong_parse(no_listeners, strlen(no_listeners), &p, &err), -EINVAL);
    assert_string_equal(err.field, "listeners");
    assert_int_equal(fleet_pong_parse(no_labels, strlen(no_labels), &p, &err), -EINVAL);
    assert_string_equal(err.field, "labels");
}

/* Every prefix of valid bodies, and each with one byte changed, is rejected cleanly or parsed
 * (no crash, no leak under ASan), and a rejection always says why. */
static void test_parsers_survive_truncated_and_mangled_bodies(void **state)
{
    static const char *const bodies[] = {
        "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"seq\":3,\"time\":\"2026-12-06T12:00:"
        "00.123Z\",\"kind\":\"listener.state\",\"data\":{\"id\":\"e1\"}}",
        "{\"target\":{\"nodes\":[\"n1\"],\"selector\":\"role=edge\"}," CFG
        ",\"if_match\":{\"n1\":\"\\\"1\\\"\"},\"issued_by\":\"a@b\",\"issued_at\":\"2026-12-"
        "06T12:00:00Z\"}",
        PONG_HEAD "\"applied_offset\":1,\"desired_offset\":2,\"last_result\":{\"node\":\"n1\","
                  "\"boot\":\"00112233aabbccdd\",\"result\":\"applied\",\"offset\":2,\"revision\":"
                  "3,\"etag\":\"x\",\"applied_offset\":2,\"problem\":null},\"listeners\":[]}",
    };
    static const char mangle[] = {'\0', '"', '{', '}', ',', 'x', '9', '-', '.', '\\'};

    (void)state;
    for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
        size_t len = strlen(bodies[b]);
        char *copy = malloc(len + 1);

        assert_non_null(copy);
        for (size_t cut = 0; cut <= len; cut++) {
            for (size_t m = 0; m <= sizeof(mangle); m++) {
                struct core_err err = {0};
                struct fleet_envelope e;
                struct fleet_record rec;
                struct fleet_reply rep;
                struct fleet_pong p;
                size_t n = m == 0 ? cut : len;
                char op[16];

                memcpy(copy, bodies[b], len + 1);
                if (m > 0 && cut < len)
                    copy[cut] = mangle[m - 1];
                else if (m > 0)
                    continue;
                if (fleet_envelope_parse(copy, n, &e, &err) == 0)
                    fleet_envelope_fini(&e);
                else
                    assert_true(err.msg[0] != '\0');
                if (fleet_record_parse(copy, n, &rec, &err) < 0)
                    assert_true(err.msg[0] != '\0');
                fleet_record_fini(&rec);
                if (fleet_reply_parse(copy, n, &rep, &err) == 0)
                    fleet_reply_fini(&rep);
                if (fleet_pong_parse(copy, n, &p, &err) == 0)
                    fleet_pong_fini(&p);
                else
                    assert_true(err.msg[0] != '\0');
                (void)fleet_rpc_op(copy, n, op, sizeof(op), &err);
            }
        }
        free(copy);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_name_valid_rules),
        cmocka_unit_test(test_prefix_valid_allows_dots),
        cmocka_unit_test(test_node_name_from_text_cleans_host),
        cmocka_unit_test(test_node_name_from_host_is_valid),
        cmocka_unit_test(test_names_and_queues),
        cmocka_unit_test(test_nodes_bindings_list),
        cmocka_unit_test(test_kind_of_event_maps_core_types),
        cmocka_unit_test(test_kind_rules),
        cmocka_unit_test(test_routing_keys),
        cmocka_unit_test(test_pattern_valid),
        cmocka_unit_test(test_time_format_and_parse),
        cmocka_unit_test(test_boot_id_is_16_hex_and_fresh),
        cmocka_unit_test(test_uuid_is_version_4),
        cmocka_unit_test(test_message_ids),
        cmocka_unit_test(test_labels_add_and_errors),
        cmocka_unit_test(test_labels_json_round_trip),
        cmocka_unit_test(test_selector_edge_cases),
        cmocka_unit_test(test_selector_sixteen_terms_parse),
        cmocka_unit_test(test_selector_match_and_format),
        cmocka_unit_test(test_envelope_round_trip),
        cmocka_unit_test(test_envelope_parse_names_bad_member),
        cmocka_unit_test(test_seq_verdicts),
        cmocka_unit_test(test_record_parse_full),
        cmocka_unit_test(test_record_parse_names_each_bad_field),
        cmocka_unit_test(test_node_name_all_is_reserved),
        cmocka_unit_test(test_record_parse_bad_field_keeps_target),
        cmocka_unit_test(test_record_targets),
        cmocka_unit_test(test_record_build_round_trip_and_errors),
        cmocka_unit_test(test_record_decide),
        cmocka_unit_test(test_burst_keeps_newest_targeting),
        cmocka_unit_test(test_result_names),
        cmocka_unit_test(test_reply_round_trip),
        cmocka_unit_test(test_reply_parse_errors),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_rpc_request_and_error),
        cmocka_unit_test(test_pong_parse),
        cmocka_unit_test(test_pong_missing_members_named),
        cmocka_unit_test(test_parsers_survive_truncated_and_mangled_bodies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
