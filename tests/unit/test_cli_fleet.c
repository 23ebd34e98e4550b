/*
 * `sockserv fleet` without a broker: --if-match values, apply's rows, table
 * and exit status, ls's table, watch's lines, the nodes apply waits for; and the command as a
 * user runs it ($SOCKSERV_BIN): its help, its usage errors and bad files (exit 2), and a broker
 * that cannot be reached (exit 4, one line).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/fleet.h"
#include "run_bin.h"
#include "fleet/wire.h"

extern char **environ;

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

    if (!j)
        fail_msg("bad JSON in the test: %s: %s", text, jerr.text);
    return j;
}

static void assert_text(char *got, const char *want)
{
    assert_non_null(got);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "# want:\n%s\n# got:\n%s\n", want, got);
        free(got);
        fail_msg("text differs");
    }
    free(got);
}

/* ---- --if-match ---- */

static void test_if_match_bare_and_quoted_etags_kept_quoted(void **state)
{
    json_t *m = json_object(), *want = parse("{\"n1\":\"\\\"7\\\"\",\"n2\":\"\\\"r12\\\"\"}");
    struct core_err err = {0};

    (void)state;
    assert_int_equal(cli_fleet_if_match_add(m, "n1=7", &err), 0);
    assert_int_equal(cli_fleet_if_match_add(m, "n2=\"r12\"", &err), 0);
    assert_true(json_equal(m, want));
    json_decref(m);
    json_decref(want);
}

static void test_if_match_bad_values_named(void **state)
{
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"n1", "not NODE=ETAG"},        {"=7", "is not a node name"},
        {"N1=7", "is not a node name"}, {"n.1=7", "is not a node name"},
        {"n1=", "strong ETag"},         {"n1=W/\"7\"", "strong ETag"},
        {"n1=\"7", "malformed"},        {"n1=\"7\"x\"", "malformed"},
        {"n1=a b", "malformed"},        {"n1=7,8", "malformed"},
    };
    struct core_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *m = json_object();

        memset(&err, 0, sizeof(err));
        if (cli_fleet_if_match_add(m, bad[i].text, &err) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i].text);
        if (!strstr(err.msg, bad[i].msg) || !strstr(err.msg, "--if-match"))
            fail_msg("'%s': message '%s' does not say '%s'", bad[i].text, err.msg, bad[i].msg);
        assert_int_equal(json_object_size(m), 0);
        json_decref(m);
    }
}

static void test_if_match_node_twice_refused(void **state)
{
    json_t *m = json_object();
    struct core_err err = {0};

    (void)state;
    assert_int_equal(cli_fleet_if_match_add(m, "n1=7", &err), 0);
    assert_int_equal(cli_fleet_if_match_add(m, "n1=8", &err), -EINVAL);
    assert_non_null(strstr(err.msg, "node n1 given twice"));
    assert_string_equal(json_string_value(json_object_get(m, "n1")), "\"7\"");
    json_decref(m);
}

/* ---- apply ---- */

static const char replies_text[] =
    "{\"n3\":{\"node\":\"n3\",\"boot\":\"00112233aabbccdd\",\"result\":\"rejected\","
    "\"offset\":42,\"record\":\"r\",\"revision\":4,\"etag\":\"\\\"4\\\"\","
    "\"applied_offset\":40,\"problem\":{\"type\":\"about:blank\",\"title\":\"Conflict\","
    "\"status\":409,\"detail\":\"port 7100 is in use\",\"field\":\"listeners[0].port\"}},"
    " \"n1\":{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"result\":\"applied\","
    "\"offset\":42,\"record\":\"r\",\"revision\":17,\"etag\":\"\\\"17\\\"\","
    "\"applied_offset\":42,\"problem\":null}}";

static void test_apply_rows_sorted_with_pending_ones(void **state)
{
    json_t *replies = parse(replies_text), *rows;
    const char *const expected[] = {"n1", "n2", "n3", "a0"};

    (void)state;
    rows = cli_fleet_apply_rows(replies, expected, 4, 15000);
    assert_non_null(rows);
    assert_int_equal(json_array_size(rows), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "node")), "a0");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "result")),
                        "pending");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "detail")),
                        "did not answer in 15s (offline?)");
    assert_true(json_equal(json_array_get(rows, 1), json_object_get(replies, "n1")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 2), "node")), "n2");
    assert_true(json_equal(json_array_get(rows, 3), json_object_get(replies, "n3")));
    json_decref(rows);
    json_decref(replies);
}

/* A node that answered without being expected (never seen before) has its row too. */
static void test_apply_rows_unexpected_answer_kept(void **state)
{
    json_t *replies = parse(replies_text), *rows;

    (void)state;
    rows = cli_fleet_apply_rows(replies, NULL, 0, 500);
    assert_int_equal(json_array_size(rows), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "node")), "n1");
    json_decref(rows);
    rows =
        cli_fleet_apply_rows(json_object_get(replies, "none"), (const char *const[]){"n9"}, 1, 500);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "detail")),
                        "did not answer in 500ms (offline?)");
    json_decref(rows);
    json_decref(replies);
}

static void test_apply_table_columns_and_detail(void **state)
{
    json_t *replies = parse(replies_text), *rows;

    (void)state;
    rows = cli_fleet_apply_rows(replies, (const char *const[]){"n2"}, 1, 15000);
    assert_text(cli_fleet_apply_render(rows),
                "NODE  RESULT    OFFSET  REVISION  DETAIL\n"
                "n1    APPLIED       42        17  -\n"
                "n2    PENDING        -         -  did not answer in 15s (offline?)\n"
                "n3    REJECTED      42         4  port 7100 is in use (field: "
                "listeners[0].port)\n");
    json_decref(rows);
    json_decref(replies);
}

static void test_apply_exit_status_by_worst_result(void **state)
{
    static const struct {
        const char *rows;
        int want;
    } cases[] = {
        {"[]", 0},
        {"[{\"result\":\"applied\"},{\"result\":\"unchanged\"}]", 0},
        {"[{\"result\":\"applied\"},{\"result\":\"pending\"}]", 5},
        {"[{\"result\":\"conflict\"},{\"result\":\"pending\"}]", 3},
        {"[{\"result\":\"conflict\"},{\"result\":\"rejected\"},{\"result\":\"pending\"}]", 1},
        {"[{\"result\":\"applied\"},{\"error\":\"unknown op x\"}]", 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *rows = parse(cases[i].rows);

        if (cli_fleet_apply_exit(rows) != cases[i].want)
            fail_msg("%s: exit %d, want %d", cases[i].rows, cli_fleet_apply_exit(rows),
                     cases[i].want);
        json_decref(rows);
    }
}

/* ---- ls ---- */

static void test_ls_table_from_the_view(void **state)
{
    json_t *view = parse(
        "{\"connected\":true,\"nodes\":["
        "{\"node\":\"n1\",\"state\":\"SYNCED\",\"labels\":{\"zone\":\"a\",\"role\":\"edge\"},"
        "\"revision\":7,\"applied_offset\":42,\"desired_offset\":42,"
        "\"last_seen\":\"2026-12-06T12:00:00.123Z\",\"listeners\":["
        "{\"id\":\"e\",\"state\":\"running\"},{\"id\":\"d\",\"state\":\"stopped\"}]},"
        "{\"node\":\"n2\",\"state\":\"OFFLINE\",\"labels\":{},\"revision\":null,"
        "\"applied_offset\":null,\"desired_offset\":43,\"last_seen\":\"2026-12-05T08:00:00.000Z\","
        "\"listeners\":null},"
        "{\"node\":\"n3\",\"state\":\"ERROR\",\"labels\":{},\"revision\":2,\"applied_offset\":40,"
        "\"desired_offset\":42,\"last_seen\":\"2026-12-06T12:00:01.000Z\",\"listeners\":[],"
        "\"last_result\":{\"result\":\"rejected\",\"offset\":42,\"problem\":{\"detail\":\"port "
        "7100 is in use\",\"field\":\"listeners[0].port\"}}}]}");

    (void)state;
    assert_text(cli_fleet_ls_render(view),
                "NODE  STATE    LABELS            REVISION  OFFSET  LISTENERS  LAST-SEEN\n"
                "n1    SYNCED   role=edge,zone=a         7      42        1/2  "
                "2026-12-06T12:00:00.123Z\n"
                "n2    OFFLINE  -                        -    -/43          -  "
                "2026-12-05T08:00:00.000Z\n"
                "n3    ERROR    -                        2   40/42        0/0  "
                "2026-12-06T12:00:01.000Z\n"
                "n3: rejected offset 42: port 7100 is in use (field: listeners[0].port)\n");
    json_decref(view);
    view = parse("{\"connected\":true,\"nodes\":[]}");
    assert_text(cli_fleet_ls_render(view), "no nodes\n");
    json_decref(view);
}

/* ---- watch ---- */

static void test_watch_line_per_kind(void **state)
{
    static const struct {
        const char *kind, *data, *want;
    } cases[] = {
        {"listener.state",
         "{\"id\":\"e1\",\"state\":\"failed\",\"previous\":\"starting\",\"error\":\"port in use\"}",
         "e1: starting -> failed: port in use"},
        {"listener.deleted", "{\"id\":\"e1\"}", "e1"},
        {"config.revision",
         "{\"revision\":7,\"source\":\"fleet: replace configuration (offset 3)\","
         "\"summary\":\"created a\"}",
         "revision 7: created a (fleet: replace configuration (offset 3))"},
        {"config.applied",
         "{\"node\":\"n1\",\"result\":\"applied\",\"offset\":3,\"revision\":7,"
         "\"problem\":null}",
         "offset 3, revision 7"},
        {"config.rejected",
         "{\"result\":\"rejected\",\"offset\":4,\"revision\":7,\"problem\":{\"detail\":\"bad "
         "port\",\"field\":\"listeners[0].port\"}}",
         "offset 4, revision 7: bad port (field: listeners[0].port)"},
        {"node.hello",
         "{\"revision\":7,\"applied_offset\":3,\"labels\":{\"role\":\"edge\"},\"listeners\":[{}]}",
         "revision 7, offset 3, 1 listener, labels role=edge"},
        {"node.bye", "{}", "left the fleet"},
        {"node.forgotten", "{\"by\":\"root@host\"}", "forgotten by root@host"},
        {"metrics.tick",
         "{\"listeners\":{\"a\":{\"connections_active\":2},\"b\":{\"connections_active\":1}}}",
         "2 listeners, 3 active connections"},
        {"backup.stored", "{\"id\":\"b1\",\"name\":\"f\"}", "{\"id\":\"b1\",\"name\":\"f\"}"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[1024], want[1024];

        snprintf(body, sizeof(body),
                 "{\"node\":\"n1\",\"boot\":\"00112233aabbccdd\",\"seq\":5,"
                 "\"time\":\"2026-12-06T12:00:00.123Z\",\"kind\":\"%s\",\"data\":%s}",
                 cases[i].kind, cases[i].data);
        snprintf(want, sizeof(want), "2026-12-06T12:00:00.123Z n1 %s %s", cases[i].kind,
                 cases[i].want);
        assert_text(cli_fleet_watch_line("ev.n1.x.y", body, strlen(body)), want);
    }
}

static void test_watch_line_not_an_envelope_shown_raw(void **state)
{
    static const char body[] = "hello\nworld";

    (void)state;
    assert_text(cli_fleet_watch_line("ev.x.y.z", body, sizeof(body) - 1), "- - ev.x.y.z hello");
    assert_text(cli_fleet_watch_line("ev.x.y.z", "{\"node\":1}", 10), "- - ev.x.y.z {\"node\":1}");
}

/* ---- the expected set ---- */

static void test_expected_names_and_matching_known_nodes(void **state)
{
    json_t *view = parse("{\"nodes\":["
                         "{\"node\":\"n3\",\"labels\":{\"role\":\"edge\",\"zone\":\"a\"}},"
                         "{\"node\":\"n1\",\"labels\":{\"role\":\"edge\"}},"
                         "{\"node\":\"n2\",\"labels\":{\"role\":\"core\"}},"
                         "{\"node\":\"n4\",\"labels\":null}]}");
    json_t *got, *want;
    struct fleet_selector sel;
    struct core_err err = {0};

    (void)state;
    assert_int_equal(fleet_selector_parse("role=edge", &sel, &err), 0);
    got = cli_fleet_expected(view, (const char *const[]){"n9", "n1", "n9"}, 3, &sel, false);
    want = parse("[\"n1\",\"n3\",\"n9\"]");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);

    got = cli_fleet_expected(view, NULL, 0, NULL, true);
    want = parse("[\"n1\",\"n2\",\"n3\",\"n4\"]");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);

    got = cli_fleet_expected(NULL, (const char *const[]){"n2"}, 1, NULL, false);
    want = parse("[\"n2\"]");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    json_decref(view);
}

/* ---- the command ---- */

#define RUN(r, ...) ut_run_bin("/dev/null", (const char *const[]){__VA_ARGS__, NULL}, r)

/* Asserts exit status and that stderr has want (stdout empty). */
static void assert_fails(const struct ut_run *r, int status, const char *want)
{
    if (r->status != status || !strstr(r->err, want) || r->out_len != 0)
        fail_msg("exit %d (want %d); stderr '%s' (want '%s'); stdout '%s'", r->status, status,
                 r->err, want, r->out);
}

/* A file in the test's temporary directory with content. */
static void write_file(char *path, size_t len, const char *name, const char *content)
{
    FILE *f;

    snprintf(path, len, "/tmp/test_cli_fleet.%d.%s", (int)getpid(), name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void test_command_help_lists_verbs_and_exit_codes(void **state)
{
    static struct ut_run r;

    (void)state;
    RUN(&r, "fleet", "--help");
    assert_int_equal(r.status, 0);
    assert_int_equal(strncmp(r.out, "Usage: sockserv fleet [OPTIONS] VERB [ARGS]\n", 44), 0);
    assert_non_null(strstr(r.out, "\n  apply "));
    assert_non_null(strstr(r.out, "\n  ls "));
    assert_non_null(strstr(r.out, "\n  watch [PATTERN] "));
    assert_non_null(strstr(r.out, "\n  forget NODE "));
    assert_non_null(strstr(r.out, "\n      --amqp URL "));
    assert_non_null(strstr(r.out, "  5  apply: a targeted node did not answer within --wait"));
    RUN(&r, "fleet", "apply", "-h");
    assert_int_equal(r.status, 0);
    assert_int_equal(strncmp(r.out, "Usage: sockserv fleet apply -f FILE|-", 37), 0);
    assert_non_null(strstr(r.out, "\n      --if-match NODE=ETAG "));
    assert_null(strstr(r.out, "--count"));
    RUN(&r, "fleet", "forget", "--help");
    assert_int_equal(r.status, 0);
    assert_int_equal(strncmp(r.out, "Usage: sockserv fleet forget NODE... [--force]\n", 47), 0);
    assert_non_null(strstr(r.out, "\n      --force "));
    RUN(&r, "--help");
    assert_non_null(strstr(r.out, "\n  fleet "));
}

static void test_command_usage_errors_exit_2(void **state)
{
    static const struct {
        const char *args[8], *want;
    } cases[] = {
        {{"fleet"}, "missing verb (apply, ls, watch, forget)"},
        {{"fleet", "frob"}, "unknown verb 'frob'"},
        {{"fleet", "apply", "--node", "n1"}, "missing -f FILE"},
        {{"fleet", "apply", "-f", "x.json"}, "say which nodes: --node NAME, --selector"},
        {{"fleet", "apply", "-f", "x", "--all", "--node", "n1"}, "--all targets every node"},
        {{"fleet", "apply", "-f", "x", "--node", "N1"}, "--node 'N1': a node name is"},
        {{"fleet", "apply", "-f", "x", "--selector", "role"}, "--selector: selector term 'role'"},
        {{"fleet", "apply", "-f", "x", "--all", "--if-match", "n1"}, "--if-match 'n1'"},
        {{"fleet", "apply", "-f", "x", "--all", "--wait", "0"}, "--wait"},
        {{"fleet", "ls", "--wait", "2x"}, "--wait"},
        {{"fleet", "ls", "--count", "2"}, "--count does not apply to ls"},
        {{"fleet", "watch", "ev..#"}, "PATTERN 'ev..#'"},
        {{"fleet", "watch", "--count", "0"}, "--count '0'"},
        {{"fleet", "watch", "a", "b"}, "unexpected argument 'b'"},
        {{"fleet", "forget"}, "missing NODE"},
        {{"fleet", "forget", "n1", "N2"}, "NODE 'N2': a node name is"},
        {{"fleet", "forget", "all"}, "NODE 'all': a node name is"},
        {{"fleet", "ls", "--force"}, "--force does not apply to ls"},
        {{"fleet", "--amqp-prefix", "Bad!", "ls"}, "--amqp-prefix 'Bad!'"},
        {{"fleet", "--amqp", "http://x/", "ls"}, "--amqp"},
        {{"fleet", "--amqp-credentials", "/nonexistent/creds", "ls"}, "--amqp-credentials"},
    };
    static struct ut_run r;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ut_run_bin("/dev/null", cases[i].args, &r);
        if (r.status != 2 || !strstr(r.err, cases[i].want) || !strstr(r.err, "sockserv fleet"))
            fail_msg("%s %s: exit %d, stderr '%s' (want 2 and '%s')", cases[i].args[1],
                     cases[i].args[2] ? cases[i].args[2] : "", r.status, r.err, cases[i].want);
    }
}

static void test_command_bad_file_named_exit_2(void **state)
{
    static struct ut_run r;
    char path[256], missing[256];

    (void)state;
    write_file(path, sizeof(path), "bad.json", "{\"listeners\": [}\n");
    RUN(&r, "fleet", "--amqp", "amqp://127.0.0.1:1/", "apply", "-f", path, "--all");
    assert_fails(&r, 2, path);
    assert_non_null(strstr(r.err, "line 1"));
    unlink(path);

    write_file(path, sizeof(path), "array.json", "[]\n");
    RUN(&r, "fleet", "--amqp", "amqp://127.0.0.1:1/", "apply", "-f", path, "--all");
    assert_fails(&r, 2, "not a JSON object");
    unlink(path);

    write_file(path, sizeof(path), "nolisteners.json", "{\"listener\": []}\n");
    RUN(&r, "fleet", "--amqp", "amqp://127.0.0.1:1/", "apply", "-f", path, "--all");
    assert_fails(&r, 2, path);
    assert_non_null(strstr(r.err, "config"));
    unlink(path);

    {
        char *big = malloc(CLI_FLEET_FILE_MAX + 64);

        assert_non_null(big);
        memset(big, ' ', CLI_FLEET_FILE_MAX + 63);
        memcpy(big, "{\"listeners\": []}", 16);
        big[CLI_FLEET_FILE_MAX + 63] = '\0';
        write_file(path, sizeof(path), "big.json", big);
        free(big);
        RUN(&r, "fleet", "--amqp", "amqp://127.0.0.1:1/", "apply", "-f", path, "--all");
        assert_fails(&r, 2, "larger than 1048576 bytes");
        unlink(path);
    }

    snprintf(missing, sizeof(missing), "/tmp/test_cli_fleet.%d.missing", (int)getpid());
    RUN(&r, "fleet", "--amqp", "amqp://127.0.0.1:1/", "apply", "-f", missing, "--all");
    assert_fails(&r, 2, missing);

    write_file(path, sizeof(path), "stdin.json", "nope");
    ut_run_bin(path,
               (const char *const[]){"fleet", "--amqp", "amqp://127.0.0.1:1/", "apply", "-f", "-",
                                     "--node", "n1", NULL},
               &r);
    assert_fails(&r, 2, "standard input");
    unlink(path);
}

/* A loopback port nobody listens on: bound, never listened (connect is refused). */
static int closed_port(int *ret_fd)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *ret_fd = fd;
    return ntohs(sa.sin_port);
}

static void test_command_broker_unreachable_exit_4(void **state)
{
    static struct ut_run r;
    char url[64], path[256];
    int fd, port = closed_port(&fd);

    (void)state;
    snprintf(url, sizeof(url), "amqp://guest:secret@127.0.0.1:%d/", port);
    write_file(path, sizeof(path), "ok.json", "{\"listeners\": []}\n");
    RUN(&r, "fleet", "--amqp", url, "apply", "-f", path, "--node", "n1");
    assert_fails(&r, 4, "refused");
    assert_null(strstr(r.err, "secret"));
    assert_non_null(strchr(r.err, '\n'));
    assert_int_equal(strchr(r.err, '\n')[1], '\0'); /* one line */
    RUN(&r, "fleet", "--amqp", url, "ls");
    assert_fails(&r, 4, "refused");
    RUN(&r, "fleet", "--amqp", url, "watch", "ev.*.listener.#");
    assert_fails(&r, 4, "refused");

    /* the URL from the environment */
    setenv("SOCKSERV_AMQP", url, 1);
    RUN(&r, "fleet", "ls");
    assert_fails(&r, 4, "refused");
    unsetenv("SOCKSERV_AMQP");
    unlink(path);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_if_match_bare_and_quoted_etags_kept_quoted),
        cmocka_unit_test(test_if_match_bad_values_named),
        cmocka_unit_test(test_if_match_node_twice_refused),
        cmocka_unit_test(test_apply_rows_sorted_with_pending_ones),
        cmocka_unit_test(test_apply_rows_unexpected_answer_kept),
        cmocka_unit_test(test_apply_table_columns_and_detail),
        cmocka_unit_test(test_apply_exit_status_by_worst_result),
        cmocka_unit_test(test_ls_table_from_the_view),
        cmocka_unit_test(test_watch_line_per_kind),
        cmocka_unit_test(test_watch_line_not_an_envelope_shown_raw),
        cmocka_unit_test(test_expected_names_and_matching_known_nodes),
        cmocka_unit_test(test_command_help_lists_verbs_and_exit_codes),
        cmocka_unit_test(test_command_usage_errors_exit_2),
        cmocka_unit_test(test_command_bad_file_named_exit_2),
        cmocka_unit_test(test_command_broker_unreachable_exit_4),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
