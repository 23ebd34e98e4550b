/*
 * The pure parts of `sockserv ctl`: durations, exit statuses, problem lines, If-Match values,
 * --set, the desired-state file and its merge with the current set, diffs, "key: value" text,
 * tables, byte counts, and the server-sent events parser fed in every possible split.
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

#include <jansson.h>

#include "cli/ctl.h"

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

    if (!j)
        fail_msg("bad JSON in the test: %s: %s", text, jerr.text);
    return j;
}

/* Asserts that a and b (JSON texts or values) are equal. */
static void assert_json_equal(const json_t *got, const char *want_text)
{
    json_t *want = parse(want_text);

    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);

        fprintf(stderr, "# want %s\n#  got %s\n", want_text, g ? g : "(null)");
        free(g);
        json_decref(want);
        fail_msg("JSON differs");
    }
    json_decref(want);
}

/* ---- durations ---- */

static void test_duration_parse_units_and_bare_seconds(void **state)
{
    int64_t ms = 0;

    (void)state;
    assert_int_equal(cli_ctl_duration_parse("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(cli_ctl_duration_parse("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(cli_ctl_duration_parse("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(cli_ctl_duration_parse("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(cli_ctl_duration_parse("7", &ms), 0);
    assert_int_equal(ms, 7000);
    assert_int_equal(cli_ctl_duration_parse("24h", &ms), 0);
    assert_int_equal(ms, CLI_CTL_DURATION_MAX_MS);
}

static void test_duration_parse_rejects_junk_zero_and_too_long(void **state)
{
    static const char *const bad[] = {
        "",   "s",   "10x",   "-1s",  "1.5s", "0",   "0ms",
        "0s", "25h", "1441m", " 10s", "10s ", "10S", "99999999999999999999"};
    int64_t ms = 42;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cli_ctl_duration_parse(bad[i], &ms) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(ms, 42);
    }
}

static void test_duration_format_picks_the_largest_whole_unit(void **state)
{
    char buf[32];

    (void)state;
    cli_ctl_duration_format(10000, buf, sizeof(buf));
    assert_string_equal(buf, "10s");
    cli_ctl_duration_format(120000, buf, sizeof(buf));
    assert_string_equal(buf, "2m");
    cli_ctl_duration_format(1500, buf, sizeof(buf));
    assert_string_equal(buf, "1500ms");
    cli_ctl_duration_format(7200000, buf, sizeof(buf));
    assert_string_equal(buf, "2h");
}

/* ---- statuses, problems, If-Match ---- */

static void test_exit_from_status_documented_codes(void **state)
{
    (void)state;
    assert_int_equal(cli_ctl_exit_from_status(200), 0);
    assert_int_equal(cli_ctl_exit_from_status(201), 0);
    assert_int_equal(cli_ctl_exit_from_status(204), 0);
    assert_int_equal(cli_ctl_exit_from_status(400), 1);
    assert_int_equal(cli_ctl_exit_from_status(401), 1);
    assert_int_equal(cli_ctl_exit_from_status(403), 1);
    assert_int_equal(cli_ctl_exit_from_status(404), 4);
    assert_int_equal(cli_ctl_exit_from_status(409), 3);
    assert_int_equal(cli_ctl_exit_from_status(412), 3);
    assert_int_equal(cli_ctl_exit_from_status(413), 1);
    assert_int_equal(cli_ctl_exit_from_status(500), 1);
    assert_int_equal(cli_ctl_exit_from_status(503), 1);
}

static void test_problem_format_detail_field_and_listener(void **state)
{
    json_t *p = parse("{\"type\":\"about:blank\",\"title\":\"Bad Request\",\"status\":400,"
                      "\"detail\":\"port: must be an integer from 0 to 65535\",\"field\":"
                      "\"listeners[1].port\",\"listener\":\"e2\"}");
    char buf[256];

    (void)state;
    cli_ctl_problem_format(400, p, buf, sizeof(buf));
    assert_string_equal(buf, "port: must be an integer from 0 to 65535 (field: "
                             "listeners[1].port) (listener: e2)");
    json_decref(p);
}

static void test_problem_format_without_detail_or_body(void **state)
{
    json_t *p = parse("{\"title\":\"Internal Server Error\",\"status\":500}");
    char buf[256], small[8];

    (void)state;
    cli_ctl_problem_format(500, p, buf, sizeof(buf));
    assert_string_equal(buf, "Internal Server Error (HTTP 500)");
    cli_ctl_problem_format(502, NULL, buf, sizeof(buf));
    assert_string_equal(buf, "HTTP 502");
    cli_ctl_problem_format(502, NULL, small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    json_decref(p);
}

static void test_if_match_bare_tags_quoted_others_kept(void **state)
{
    char buf[128];

    (void)state;
    assert_int_equal(cli_ctl_if_match_normalize("r12", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "\"r12\"");
    assert_int_equal(cli_ctl_if_match_normalize("\"r12\"", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "\"r12\"");
    assert_int_equal(cli_ctl_if_match_normalize("*", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "*");
    assert_int_equal(cli_ctl_if_match_normalize("W/\"x\"", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "W/\"x\"");
    assert_int_equal(cli_ctl_if_match_normalize("r1, \"r2\",r3", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "\"r1\", \"r2\", \"r3\"");
}

static void test_if_match_rejects_empty_quotes_inside_and_control(void **state)
{
    static const char *const bad[] = {"", " ", ",", "r1,,r2", "a\"b", "\"r1", "r 1", "r\n1"};
    char buf[128], tiny[4];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cli_ctl_if_match_normalize(bad[i], buf, sizeof(buf)) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
    assert_int_equal(cli_ctl_if_match_normalize("r12345", tiny, sizeof(tiny)), -ENOSPC);
}

/* ---- --set ---- */

static void test_set_values_parse_as_json_else_string(void **state)
{
    json_t *o = json_object();
    struct core_err err = {0};

    (void)state;
    assert_int_equal(cli_ctl_set_apply(o, "port=7000", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "enabled=false", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "model=event", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "address=::1", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "id=\"07\"", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "note=07", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "empty=", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "eq=a=b", &err), 0);
    assert_json_equal(o, "{\"port\":7000,\"enabled\":false,\"model\":\"event\",\"address\":\"::1\","
                         "\"id\":\"07\",\"note\":\"07\",\"empty\":\"\",\"eq\":\"a=b\"}");
    json_decref(o);
}

static void test_set_dotted_key_reaches_into_objects_and_null_stays(void **state)
{
    json_t *o = parse("{\"options\":{\"mode\":\"stream\",\"keep\":1}}");
    struct core_err err = {0};

    (void)state;
    assert_int_equal(cli_ctl_set_apply(o, "options.mode=once", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "options.max_datagram=null", &err), 0);
    assert_int_equal(cli_ctl_set_apply(o, "a.b.c=[1,2]", &err), 0);
    assert_json_equal(o, "{\"options\":{\"mode\":\"once\",\"keep\":1,\"max_datagram\":null},"
                         "\"a\":{\"b\":{\"c\":[1,2]}}}");
    json_decref(o);
}

static void test_set_bad_assignments_are_einval_with_a_message(void **state)
{
    static const char *const bad[] = {"port", "=1", ".a=1", "a..b=1", "a.=1", "port.x=1"};
    json_t *o = parse("{\"port\":1}");

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct core_err err = {0};

        if (cli_ctl_set_apply(o, bad[i], &err) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(strlen(err.msg) > 0);
    }
    assert_json_equal(o, "{\"port\":1}");
    json_decref(o);
}

/* ---- the desired set ---- */

static void test_desired_parse_object_or_bare_array(void **state)
{
    json_t *doc = parse("{\"listeners\":[{\"id\":\"a\"},{\"id\":\"b\"}]}"), *list = NULL;
    json_t *bare = parse("[{\"id\":\"c\"}]");
    json_t *empty = parse("{\"listeners\":[]}");
    struct core_err err = {0};

    (void)state;
    assert_int_equal(cli_ctl_desired_parse(doc, &list, &err), 0);
    assert_json_equal(list, "[{\"id\":\"a\"},{\"id\":\"b\"}]");
    json_decref(list);
    assert_int_equal(cli_ctl_desired_parse(bare, &list, &err), 0);
    assert_json_equal(list, "[{\"id\":\"c\"}]");
    json_decref(list);
    assert_int_equal(cli_ctl_desired_parse(empty, &list, &err), 0);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    json_decref(doc);
    json_decref(bare);
    json_decref(empty);
}

static void test_desired_parse_names_the_bad_place(void **state)
{
    static const struct {
        const char *doc;
        const char *field;
    } cases[] = {
        {"{\"listener\":[]}", "listeners"},
        {"{\"listeners\":{}}", "listeners"},
        {"[{\"id\":\"a\"}, 3]", "[1]"},
        {"{\"listeners\":[{\"service\":\"echo\"}]}", "listeners[0].id"},
        {"{\"listeners\":[{\"id\":\"\"}]}", "listeners[0].id"},
        {"{\"listeners\":[{\"id\":7}]}", "listeners[0].id"},
        {"{\"listeners\":[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"a\"}]}", "listeners[2].id"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *doc = parse(cases[i].doc), *list = NULL;
        struct core_err err = {0};

        assert_int_equal(cli_ctl_desired_parse(doc, &list, &err), -EINVAL);
        assert_null(list);
        assert_string_equal(err.field, cases[i].field);
        assert_true(strlen(err.msg) > 0);
        json_decref(doc);
    }
    {
        json_t *n = parse("42"), *list = NULL;
        struct core_err err = {0};

        assert_int_equal(cli_ctl_desired_parse(n, &list, &err), -EINVAL);
        json_decref(n);
    }
}

static void test_desired_merge_replaces_by_id_adds_new_keeps_others(void **state)
{
    json_t *cur = parse("[{\"id\":\"a\",\"port\":1,\"status\":{\"state\":\"running\"},"
                        "\"metrics\":{}},"
                        "{\"id\":\"b\",\"port\":2,\"options\":{\"mode\":\"once\"}},"
                        "{\"id\":\"c\",\"port\":3}]");
    json_t *file = parse("[{\"id\":\"z\",\"port\":26},{\"id\":\"b\",\"port\":20}]");
    json_t *merged = cli_ctl_desired_merge(cur, file);

    (void)state;
    /* b is replaced whole (its options go), a loses what the API reports, z comes last */
    assert_json_equal(merged, "[{\"id\":\"a\",\"port\":1},{\"id\":\"b\",\"port\":20},"
                              "{\"id\":\"c\",\"port\":3},{\"id\":\"z\",\"port\":26}]");
    /* the inputs are untouched */
    assert_non_null(json_object_get(json_array_get(cur, 0), "status"));
    json_decref(merged);
    json_decref(cur);
    json_decref(file);
}

static void test_desired_merge_of_empty_sets(void **state)
{
    json_t *none = json_array(), *one = parse("[{\"id\":\"a\"}]");
    json_t *m1 = cli_ctl_desired_merge(none, one), *m2 = cli_ctl_desired_merge(one, none);

    (void)state;
    assert_json_equal(m1, "[{\"id\":\"a\"}]");
    assert_json_equal(m2, "[{\"id\":\"a\"}]");
    json_decref(m1);
    json_decref(m2);
    json_decref(none);
    json_decref(one);
}

/* ---- rendering ---- */

static void test_diff_render_create_change_delete(void **state)
{
    json_t *d = parse("[{\"id\":\"x\",\"action\":\"create\"},"
                      "{\"id\":\"y\",\"action\":\"change\",\"fields\":[\"port\",\"options.mode\"],"
                      "\"live\":false},"
                      "{\"id\":\"w\",\"action\":\"change\",\"fields\":[\"model\"],\"live\":true},"
                      "{\"id\":\"v\",\"action\":\"change\",\"fields\":[\"workers\"]},"
                      "{\"id\":\"z\",\"action\":\"delete\"},"
                      "{\"id\":\"q\",\"action\":\"rename\"}]");
    char *text = cli_ctl_diff_render(d);

    (void)state;
    assert_string_equal(text, "+ x (create)\n"
                              "~ y: port, options.mode (restart)\n"
                              "~ w: model (live)\n"
                              "~ v: workers\n"
                              "- z (delete)\n"
                              "? q (rename)\n");
    free(text);
    json_decref(d);
}

static void test_diff_render_empty_or_absent_is_no_changes(void **state)
{
    json_t *empty = json_array();
    char *a = cli_ctl_diff_render(empty), *b = cli_ctl_diff_render(NULL);

    (void)state;
    assert_string_equal(a, "no changes\n");
    assert_string_equal(b, "no changes\n");
    free(a);
    free(b);
    json_decref(empty);
}

static void test_kv_render_flattens_and_shows_null_and_arrays(void **state)
{
    json_t *o = parse("{\"id\":\"e1\",\"port\":7007,\"enabled\":true,\"ratio\":0.5,"
                      "\"options\":{\"mode\":\"once\"},\"empty\":{},"
                      "\"status\":{\"state\":\"running\",\"bound\":[\"[::]:7007\",\"x\"],"
                      "\"error\":null,\"draining\":[]},"
                      "\"files\":[{\"a\":1}]}");
    char *text = cli_ctl_kv_render(o, "  ");

    (void)state;
    assert_string_equal(text, "  id: e1\n"
                              "  port: 7007\n"
                              "  enabled: true\n"
                              "  ratio: 0.5\n"
                              "  options.mode: once\n"
                              "  empty: -\n"
                              "  status.state: running\n"
                              "  status.bound: [::]:7007, x\n"
                              "  status.error: -\n"
                              "  status.draining: -\n"
                              "  files: [{\"a\":1}]\n");
    free(text);
    json_decref(o);
}

static void test_bytes_format_units(void **state)
{
    char buf[32];

    (void)state;
    cli_ctl_bytes_format(0, buf, sizeof(buf));
    assert_string_equal(buf, "0 B");
    cli_ctl_bytes_format(1023, buf, sizeof(buf));
    assert_string_equal(buf, "1023 B");
    cli_ctl_bytes_format(1536, buf, sizeof(buf));
    assert_string_equal(buf, "1.5 KiB");
    cli_ctl_bytes_format(12u * 1024 * 1024, buf, sizeof(buf));
    assert_string_equal(buf, "12.0 MiB");
    cli_ctl_bytes_format(UINT64_MAX, buf, sizeof(buf));
    assert_string_equal(buf, "16.0 EiB");
}

static void test_table_aligns_columns_right_numbers_no_trailing_blanks(void **state)
{
    static const char *const headers[] = {"ID", "CONNS", "STATE"};
    static const char *const row1[] = {"echo-tcp", "12", "running"};
    static const char *const row2[] = {"b", "3", NULL};
    struct cli_ctl_table t;
    char *text;

    (void)state;
    assert_int_equal(cli_ctl_table_init(&t, 3, headers), 0);
    t.right = 1u << 1;
    assert_int_equal(cli_ctl_table_add(&t, row1), 0);
    assert_int_equal(cli_ctl_table_add(&t, row2), 0);
    text = cli_ctl_table_render(&t);
    assert_string_equal(text, "ID        CONNS  STATE\n"
                              "echo-tcp     12  running\n"
                              "b             3  -\n");
    free(text);
    cli_ctl_table_fini(&t);
}

/* ---- server-sent events ---- */

struct seen {
    char log[4096];
};

static int record(void *ctx, const char *id, const char *event, const char *data)
{
    struct seen *s = ctx;
    size_t n = strlen(s->log);

    snprintf(s->log + n, sizeof(s->log) - n, "[%s|%s|%s]", id, event, data);
    return 0;
}

static const char stream[] = "retry: 2000\r\n"
                             "\r\n"
                             ": keepalive\n"
                             "\n"
                             "id: 7\n"
                             "event: listener.created\n"
                             "data: {\"id\":\"e1\"}\n"
                             "\n"
                             "id: 8\r"
                             "event: two\r"
                             "data: a\r"
                             "data:b\r"
                             "data\r"
                             "\r"
                             "data: no name\n"
                             "\n"
                             "id: 9\n"
                             "event: unfinished\n"
                             "data: x\n";

static const char want_log[] = "[7|listener.created|{\"id\":\"e1\"}]"
                               "[8|two|a\nb\n]"
                               "[8|message|no name]";

static void test_sse_parses_every_line_ending_and_field(void **state)
{
    struct cli_ctl_sse p;
    struct seen s = {{0}};

    (void)state;
    cli_ctl_sse_init(&p, record, &s);
    assert_int_equal(cli_ctl_sse_feed(&p, stream, strlen(stream)), 0);
    assert_string_equal(s.log, want_log);
    /* the unfinished event is not dispatched, but its id is the last one seen */
    assert_string_equal(p.last_id, "9");
    assert_int_equal(p.retry_ms, 2000);
    cli_ctl_sse_fini(&p);
}

static void test_sse_same_events_whatever_the_chunking(void **state)
{
    size_t len = strlen(stream);

    (void)state;
    /* every split into two chunks, and byte by byte */
    for (size_t cut = 0; cut <= len; cut++) {
        struct cli_ctl_sse p;
        struct seen s = {{0}};

        cli_ctl_sse_init(&p, record, &s);
        assert_int_equal(cli_ctl_sse_feed(&p, stream, cut), 0);
        assert_int_equal(cli_ctl_sse_feed(&p, stream + cut, len - cut), 0);
        if (strcmp(s.log, want_log) != 0)
            fail_msg("split at %zu: got %s", cut, s.log);
        cli_ctl_sse_fini(&p);
    }
    {
        struct cli_ctl_sse p;
        struct seen s = {{0}};

        cli_ctl_sse_init(&p, record, &s);
        for (size_t i = 0; i < len; i++)
            assert_int_equal(cli_ctl_sse_feed(&p, stream + i, 1), 0);
        assert_string_equal(s.log, want_log);
        cli_ctl_sse_fini(&p);
    }
}

static void feed_text(struct cli_ctl_sse *p, const char *text)
{
    assert_int_equal(cli_ctl_sse_feed(p, text, strlen(text)), 0);
}

static int stop_after_first(void *ctx, const char *id, const char *event, const char *data)
{
    (void)id;
    (void)event;
    (void)data;
    ++*(int *)ctx;
    return 7;
}

static void test_sse_callback_return_stops_feed(void **state)
{
    struct cli_ctl_sse p;
    int calls = 0;

    (void)state;
    cli_ctl_sse_init(&p, stop_after_first, &calls);
    assert_int_equal(
        cli_ctl_sse_feed(&p, "data: 1\n\ndata: 2\n\n", strlen("data: 1\n\ndata: 2\n\n")), 7);
    assert_int_equal(calls, 1);
    cli_ctl_sse_fini(&p);
}

static void test_sse_reset_forgets_partial_event_keeps_last_id(void **state)
{
    struct cli_ctl_sse p;
    struct seen s = {{0}};

    (void)state;
    cli_ctl_sse_init(&p, record, &s);
    feed_text(&p, "id: 41\nevent: a\ndata: 1\n\nid: 42\nevent: b\ndata: 2");
    cli_ctl_sse_reset(&p);
    feed_text(&p, "\n\ndata: 3\n\n");
    assert_string_equal(s.log, "[41|a|1][42|message|3]");
    assert_string_equal(p.last_id, "42");
    cli_ctl_sse_fini(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_parse_units_and_bare_seconds),
        cmocka_unit_test(test_duration_parse_rejects_junk_zero_and_too_long),
        cmocka_unit_test(test_duration_format_picks_the_largest_whole_unit),
        cmocka_unit_test(test_exit_from_status_documented_codes),
        cmocka_unit_test(test_problem_format_detail_field_and_listener),
        cmocka_unit_test(test_problem_format_without_detail_or_body),
        cmocka_unit_test(test_if_match_bare_tags_quoted_others_kept),
        cmocka_unit_test(test_if_match_rejects_empty_quotes_inside_and_control),
        cmocka_unit_test(test_set_values_parse_as_json_else_string),
        cmocka_unit_test(test_set_dotted_key_reaches_into_objects_and_null_stays),
        cmocka_unit_test(test_set_bad_assignments_are_einval_with_a_message),
        cmocka_unit_test(test_desired_parse_object_or_bare_array),
        cmocka_unit_test(test_desired_parse_names_the_bad_place),
        cmocka_unit_test(test_desired_merge_replaces_by_id_adds_new_keeps_others),
        cmocka_unit_test(test_desired_merge_of_empty_sets),
        cmocka_unit_test(test_diff_render_create_change_delete),
        cmocka_unit_test(test_diff_render_empty_or_absent_is_no_changes),
        cmocka_unit_test(test_kv_render_flattens_and_shows_null_and_arrays),
        cmocka_unit_test(test_bytes_format_units),
        cmocka_unit_test(test_table_aligns_columns_right_numbers_no_trailing_blanks),
        cmocka_unit_test(test_sse_parses_every_line_ending_and_field),
        cmocka_unit_test(test_sse_same_events_whatever_the_chunking),
        cmocka_unit_test(test_sse_callback_return_stops_feed),
        cmocka_unit_test(test_sse_reset_forgets_partial_event_keeps_last_id),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
