#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "svc/echo.h"

static const struct core_service *const svcs[] = {&svc_echo};
static const struct core_service_table table = {.svcs = svcs, .n = 1};

static int parse(const char *text, struct core_listener_cfg *cfg, struct core_err *err)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    int r;

    assert_non_null(j);
    memset(err, 0, sizeof(*err));
    r = core_listener_cfg_from_json(j, &table, false, cfg, err);
    json_decref(j);
    return r;
}

static void test_cfg_minimal_gets_defaults(void **state)
{
    struct core_listener_cfg c;
    struct core_err err;

    (void)state;
    assert_int_equal(parse("{\"id\":\"e\",\"service\":\"echo\",\"port\":0}", &c, &err), 0);
    assert_string_equal(c.id, "e");
    assert_ptr_equal(c.svc, &svc_echo);
    assert_int_equal(c.transport, CORE_TCP);
    assert_string_equal(c.address, "::");
    assert_int_equal(c.port, 0);
    assert_int_equal(c.model, CORE_MODEL_THREAD);
    assert_int_equal(c.workers, 1);
    assert_int_equal(c.max_connections, 1024);
    assert_int_equal(c.idle_timeout_ms, 30000);
    assert_int_equal(c.max_connections_per_source, 0);
    assert_int_equal(c.connection_rate_per_source, 0);
    assert_int_equal(c.reply_rate_per_source, 100);
    assert_int_equal(c.reply_rate, 10000);
    assert_true(c.enabled);
    assert_string_equal(json_string_value(json_object_get(c.options, "mode")), "stream");
    core_listener_cfg_fini(&c);
}

static void test_cfg_limits_are_read_and_rendered(void **state)
{
    struct core_listener_cfg c;
    struct core_err err;
    json_t *j;

    (void)state;
    assert_int_equal(parse("{\"id\":\"e\",\"service\":\"echo\",\"port\":0,"
                           "\"max_connections_per_source\":1000000,"
                           "\"connection_rate_per_source\":10000000,"
                           "\"reply_rate_per_source\":0,\"reply_rate\":1}",
                           &c, &err),
                     0);
    assert_int_equal(c.max_connections_per_source, 1000000);
    assert_int_equal(c.connection_rate_per_source, 10000000);
    assert_int_equal(c.reply_rate_per_source, 0);
    assert_int_equal(c.reply_rate, 1);
    j = core_listener_cfg_to_json(&c);
    assert_int_equal(json_integer_value(json_object_get(j, "max_connections_per_source")), 1000000);
    assert_int_equal(json_integer_value(json_object_get(j, "connection_rate_per_source")),
                     10000000);
    assert_int_equal(json_integer_value(json_object_get(j, "reply_rate_per_source")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "reply_rate")), 1);
    json_decref(j);
    core_listener_cfg_fini(&c);
}

/* As max_connections on a UDP listener: a field of the other transport is checked, kept and
 * rendered, and has no effect. */
static void test_cfg_limits_of_the_other_transport_are_kept(void **state)
{
    struct core_listener_cfg c;
    struct core_err err;

    (void)state;
    assert_int_equal(parse("{\"id\":\"u\",\"service\":\"echo\",\"transport\":\"udp\","
                           "\"port\":0,\"max_connections_per_source\":3,"
                           "\"connection_rate_per_source\":4}",
                           &c, &err),
                     0);
    assert_int_equal(c.max_connections_per_source, 3);
    assert_int_equal(c.connection_rate_per_source, 4);
    core_listener_cfg_fini(&c);
    assert_int_equal(parse("{\"id\":\"t\",\"service\":\"echo\",\"port\":0,"
                           "\"reply_rate_per_source\":5,\"reply_rate\":6}",
                           &c, &err),
                     0);
    assert_int_equal(c.reply_rate_per_source, 5);
    assert_int_equal(c.reply_rate, 6);
    core_listener_cfg_fini(&c);
    assert_int_equal(parse("{\"id\":\"t\",\"service\":\"echo\",\"port\":0,"
                           "\"reply_rate\":-6}",
                           &c, &err),
                     -EINVAL);
    assert_string_equal(err.field, "reply_rate");
}

static void test_cfg_udp_defaults_to_sequential(void **state)
{
    struct core_listener_cfg c;
    struct core_err err;

    (void)state;
    assert_int_equal(
        parse("{\"id\":\"u\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":7}", &c, &err), 0);
    assert_int_equal(c.transport, CORE_UDP);
    assert_int_equal(c.model, CORE_MODEL_SEQUENTIAL);
    assert_int_equal(json_integer_value(json_object_get(c.options, "max_datagram")), 65507);
    core_listener_cfg_fini(&c);
}

static void test_cfg_tcp_pool_and_event_are_accepted(void **state)
{
    static const char *const models[] = {"pool", "event"};
    static const enum core_model expected[] = {CORE_MODEL_POOL, CORE_MODEL_EVENT};
    char text[128];

    (void)state;
    for (unsigned i = 0; i < 2; i++) {
        struct core_listener_cfg c;
        struct core_err err;

        snprintf(text, sizeof(text),
                 "{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"model\":\"%s\",\"workers\":3}",
                 models[i]);
        assert_int_equal(parse(text, &c, &err), 0);
        assert_int_equal(c.model, expected[i]);
        assert_int_equal(c.workers, 3);
        assert_true(core_model_is_available(expected[i], CORE_TCP));
        assert_false(core_model_is_available(expected[i], CORE_UDP));
        core_listener_cfg_fini(&c);
    }
}

/* uring: TCP only, named "uring", bound with SO_REUSEPORT like event (io_uring is usable on the
 * machines the tests run on; a kernel that refuses it is tested in tests/integration). */
static void test_cfg_tcp_uring_is_accepted_udp_refused(void **state)
{
    struct core_listener_cfg c;
    struct core_err err;

    (void)state;
    assert_int_equal(core_model_from_name("uring"), CORE_MODEL_URING);
    assert_string_equal(core_model_name(CORE_MODEL_URING), "uring");
    assert_int_equal(parse("{\"id\":\"u\",\"service\":\"echo\",\"port\":1,\"model\":\"uring\","
                           "\"workers\":2}",
                           &c, &err),
                     0);
    assert_int_equal(c.model, CORE_MODEL_URING);
    core_listener_cfg_fini(&c);
    assert_int_equal(parse("{\"id\":\"u\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":1,"
                           "\"model\":\"uring\"}",
                           &c, &err),
                     -EINVAL);
    assert_string_equal(err.field, "model");
    assert_true(core_model_has_reuseport(CORE_MODEL_URING));
    assert_true(core_model_has_reuseport(CORE_MODEL_EVENT));
    assert_false(core_model_has_reuseport(CORE_MODEL_POOL));
}

/* Each bad input names the field at fault. */
static const struct {
    const char *json;
    const char *field;
} bad[] = {
    {"{\"service\":\"echo\",\"port\":1}", "id"},
    {"{\"id\":\"\",\"service\":\"echo\",\"port\":1}", "id"},
    {"{\"id\":\"-x\",\"service\":\"echo\",\"port\":1}", "id"},
    {"{\"id\":\"a/b\",\"service\":\"echo\",\"port\":1}", "id"},
    {"{\"id\":7,\"service\":\"echo\",\"port\":1}", "id"},
    {"{\"id\":\"e\",\"port\":1}", "service"},
    {"{\"id\":\"e\",\"service\":\"gopher\",\"port\":1}", "service"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"transport\":\"sctp\",\"port\":1}", "transport"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"address\":\"example.com\",\"port\":1}", "address"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"address\":4,\"port\":1}", "address"},
    {"{\"id\":\"e\",\"service\":\"echo\"}", "port"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":65536}", "port"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":-1}", "port"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":\"7007\"}", "port"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":7.5}", "port"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"model\":\"fork\"}", "model"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":1,\"model\":\"pool\"}",
     "model"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":1,\"model\":\"event\"}",
     "model"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":1,\"model\":\"thread\"}",
     "model"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"workers\":0}", "workers"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"workers\":257}", "workers"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"max_connections\":0}", "max_connections"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"idle_timeout_ms\":true}", "idle_timeout_ms"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"enabled\":\"yes\"}", "enabled"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"options\":[]}", "options"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"options\":{\"mode\":\"twice\"}}",
     "options.mode"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"options\":{\"colour\":1}}", "options.colour"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":1,"
     "\"options\":{\"mode\":\"once\"}}",
     "options.mode"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"colour\":\"red\"}", "colour"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"max_connections_per_source\":-1}",
     "max_connections_per_source"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"max_connections_per_source\":1000001}",
     "max_connections_per_source"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"connection_rate_per_source\":\"5\"}",
     "connection_rate_per_source"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"port\":1,\"connection_rate_per_source\":10000001}",
     "connection_rate_per_source"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":1,"
     "\"reply_rate_per_source\":0.5}",
     "reply_rate_per_source"},
    {"{\"id\":\"e\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":1,"
     "\"reply_rate\":null}",
     "reply_rate"},
};

static void test_cfg_bad_input_names_field(void **state)
{
    struct core_listener_cfg c;
    struct core_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&c, 0x5a, sizeof(c));
        if (parse(bad[i].json, &c, &err) != -EINVAL || strcmp(err.field, bad[i].field) != 0)
            fail_msg("%s: expected -EINVAL naming %s, got field '%s' (%s)", bad[i].json,
                     bad[i].field, err.field, err.msg);
        assert_true(strstr(err.msg, bad[i].field) != NULL);
        assert_int_equal(c.port, 0x5a5a);
    }
}

static void test_cfg_read_only_members_ignored(void **state)
{
    struct core_listener_cfg c;
    struct core_err err;

    (void)state;
    assert_int_equal(parse("{\"id\":\"e\",\"service\":\"echo\",\"port\":9,"
                           "\"status\":{\"state\":\"running\"},\"metrics\":{}}",
                           &c, &err),
                     0);
    core_listener_cfg_fini(&c);
}

static void test_cfg_round_trip_is_equal(void **state)
{
    struct core_listener_cfg a, b;
    struct core_err err;
    json_t *j;

    (void)state;
    assert_int_equal(parse("{\"id\":\"e.1\",\"service\":\"echo\",\"address\":\"127.0.0.1\","
                           "\"port\":9,\"model\":\"sequential\",\"workers\":3,"
                           "\"max_connections\":5,\"idle_timeout_ms\":0,\"enabled\":false,"
                           "\"max_connections_per_source\":2,\"connection_rate_per_source\":3,"
                           "\"reply_rate_per_source\":4,\"reply_rate\":5,"
                           "\"options\":{\"mode\":\"once\"}}",
                           &a, &err),
                     0);
    j = core_listener_cfg_to_json(&a);
    assert_int_equal(core_listener_cfg_from_json(j, &table, false, &b, &err), 0);
    assert_true(core_listener_cfg_equal(&a, &b));
    b.port = 10;
    assert_false(core_listener_cfg_equal(&a, &b));
    b.port = a.port;
    b.max_connections_per_source = 7;
    assert_false(core_listener_cfg_equal(&a, &b));
    b.max_connections_per_source = a.max_connections_per_source;
    b.connection_rate_per_source = 7;
    assert_false(core_listener_cfg_equal(&a, &b));
    b.connection_rate_per_source = a.connection_rate_per_source;
    b.reply_rate_per_source = 7;
    assert_false(core_listener_cfg_equal(&a, &b));
    b.reply_rate_per_source = a.reply_rate_per_source;
    b.reply_rate = 7;
    assert_false(core_listener_cfg_equal(&a, &b));
    b.reply_rate = a.reply_rate;
    assert_true(core_listener_cfg_equal(&a, &b));
    json_decref(j);
    core_listener_cfg_fini(&a);
    core_listener_cfg_fini(&b);
}

static void test_merge_patch_rfc7396_examples(void **state)
{
    /* From RFC 7396, appendix A. */
    static const char *const cases[][3] = {
        {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
        {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
        {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
        {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
        {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
        {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
        {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
        {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
        {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
        {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *t = json_loads(cases[i][0], JSON_DECODE_ANY, NULL);
        json_t *p = json_loads(cases[i][1], JSON_DECODE_ANY, NULL);
        json_t *want = json_loads(cases[i][2], JSON_DECODE_ANY, NULL);
        json_t *got = core_json_merge_patch(t, p);

        if (!json_equal(got, want))
            fail_msg("case %zu: %s + %s", i, cases[i][0], cases[i][1]);
        json_decref(t);
        json_decref(p);
        json_decref(want);
        json_decref(got);
    }
}

/* A set's texts joined: head, each rendering's compact text after its separator, tail; a
 * rendered configuration and one not rendered alike, and the whole parses back to both. */
static void test_cfg_texts_join_lays_out_the_renderings(void **state)
{
    struct core_listener_cfg a, b;
    const struct core_listener_cfg *set[2] = {&a, &b};
    struct core_cfg_texts t;
    struct core_err err;
    char *text, *want, *ta, *tb;
    json_t *j;

    (void)state;
    assert_int_equal(parse("{\"id\":\"a\",\"service\":\"echo\",\"port\":7}", &a, &err), 0);
    assert_int_equal(parse("{\"id\":\"b\",\"service\":\"echo\",\"port\":8}", &b, &err), 0);
    assert_int_equal(core_listener_cfg_render(&a), 0);
    assert_int_equal(core_cfg_texts_join(set, 2, "[", "\n", ",\n", "]", &t), 0);
    assert_int_equal(t.n_iov, 6);
    text = core_cfg_texts_string(&t);
    assert_non_null(text);
    assert_int_equal(strlen(text), t.len);
    j = core_listener_cfg_to_json(&a);
    ta = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    j = core_listener_cfg_to_json(&b);
    tb = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    want = malloc(strlen(ta) + strlen(tb) + 8);
    assert_non_null(want);
    sprintf(want, "[\n%s,\n%s]", ta, tb);
    assert_string_equal(text, want);
    j = json_loads(text, 0, NULL);
    assert_true(json_is_array(j) && json_array_size(j) == 2);
    json_decref(j);
    core_cfg_texts_release(&t);
    assert_int_equal(core_cfg_texts_join(set, 0, "[", "", ",", "]", &t), 0);
    free(text);
    text = core_cfg_texts_string(&t);
    assert_string_equal(text, "[]");
    core_cfg_texts_release(&t);
    free(text);
    free(want);
    free(ta);
    free(tb);
    core_listener_cfg_fini(&a);
    core_listener_cfg_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cfg_minimal_gets_defaults),
        cmocka_unit_test(test_cfg_limits_are_read_and_rendered),
        cmocka_unit_test(test_cfg_limits_of_the_other_transport_are_kept),
        cmocka_unit_test(test_cfg_udp_defaults_to_sequential),
        cmocka_unit_test(test_cfg_tcp_pool_and_event_are_accepted),
        cmocka_unit_test(test_cfg_tcp_uring_is_accepted_udp_refused),
        cmocka_unit_test(test_cfg_bad_input_names_field),
        cmocka_unit_test(test_cfg_read_only_members_ignored),
        cmocka_unit_test(test_cfg_round_trip_is_equal),
        cmocka_unit_test(test_merge_patch_rfc7396_examples),
        cmocka_unit_test(test_cfg_texts_join_lays_out_the_renderings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
