/*
 * The history of the listener set (core/revisions.h) and the diff between two sets
 * (core/diff.h): numbering, the ETag rules, the file as a log that survives a torn last line
 * and is compacted, and the diff and summary a script reads.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/handlers.h"
#include "core/change.h"
#include "core/config.h"
#include "core/diff.h"
#include "core/revisions.h"
#include "core/store.h"
#include "svc/date.h"
#include "svc/echo.h"

static const struct core_service *const svcs[] = {&svc_echo, &svc_date};
static const struct core_service_table table = {.svcs = svcs, .n = 2};

static void cfg_of(const char *text, struct core_listener_cfg *cfg)
{
    struct core_err err = {0};
    json_t *j = json_loads(text, 0, NULL);

    assert_non_null(j);
    if (core_listener_cfg_from_json(j, &table, false, cfg, &err) < 0)
        fail_msg("%s: %s", text, err.msg);
    json_decref(j);
}

/* ---- diff ---- */

static void test_diff_sets_lists_create_change_delete_by_id(void **state)
{
    struct core_listener_cfg a1, b1, c1, a2, c2, d2;
    const struct core_listener_cfg *from[] = {&c1, &a1, &b1}, *to[] = {&d2, &a2, &c2};
    const bool running[] = {true, true, true};
    json_t *diff;
    char *text, *summary;

    (void)state;
    cfg_of("{\"id\":\"a\",\"service\":\"echo\",\"port\":7001}", &a1);
    cfg_of("{\"id\":\"b\",\"service\":\"echo\",\"port\":7002}", &b1);
    cfg_of("{\"id\":\"c\",\"service\":\"echo\",\"port\":7003}", &c1);
    cfg_of("{\"id\":\"a\",\"service\":\"echo\",\"port\":7011,\"options\":{\"mode\":\"once\"}}",
           &a2);
    cfg_of("{\"id\":\"c\",\"service\":\"echo\",\"port\":7003}", &c2);
    cfg_of("{\"id\":\"d\",\"service\":\"echo\",\"port\":7004}", &d2);
    assert_int_equal(core_diff_sets(from, 3, running, to, 3, &diff), 0);
    text = json_dumps(diff, JSON_COMPACT);
    assert_string_equal(text, "[{\"id\":\"a\",\"action\":\"change\",\"fields\":[\"port\","
                              "\"options.mode\"],\"live\":true},"
                              "{\"id\":\"b\",\"action\":\"delete\"},"
                              "{\"id\":\"d\",\"action\":\"create\"}]");
    summary = core_diff_summary(diff);
    assert_string_equal(summary, "created d; changed a (port, options.mode); deleted b");
    free(summary);
    free(text);
    json_decref(diff);

    /* The same set: an empty diff, "no change". */
    assert_int_equal(core_diff_sets(from, 3, running, from, 3, &diff), 0);
    assert_int_equal(json_array_size(diff), 0);
    summary = core_diff_summary(diff);
    assert_string_equal(summary, "no change");
    free(summary);
    json_decref(diff);
    core_listener_cfg_fini(&a1);
    core_listener_cfg_fini(&b1);
    core_listener_cfg_fini(&c1);
    core_listener_cfg_fini(&a2);
    core_listener_cfg_fini(&c2);
    core_listener_cfg_fini(&d2);
}

/* A set given in no order, each configuration with its own running flag: the diff is by id,
 * and each listener's "live" follows the flag given beside it, not another's. */
static void test_diff_sets_keeps_running_flags_with_their_listeners(void **state)
{
    enum { N = 200 };
    static struct core_listener_cfg a[N], b[N];
    const struct core_listener_cfg *from[N], *to[N];
    bool running[N];
    json_t *diff, *e;
    size_t i;

    (void)state;
    for (i = 0; i < N; i++) {
        char text[128];

        snprintf(text, sizeof(text), "{\"id\":\"l%03zu\",\"service\":\"echo\",\"port\":%zu}", i,
                 10000 + i);
        cfg_of(text, &a[i]);
        snprintf(text, sizeof(text), "{\"id\":\"l%03zu\",\"service\":\"echo\",\"port\":%zu}", i,
                 20000 + i);
        cfg_of(text, &b[i]);
    }
    /* from in a stride order (73 is prime to 200), to reversed; l<i> runs when i % 3 != 0. */
    for (i = 0; i < N; i++) {
        size_t k = (i * 73) % N;

        from[i] = &a[k];
        running[i] = k % 3 != 0;
        to[i] = &b[N - 1 - i];
    }
    assert_int_equal(core_diff_sets(from, N, running, to, N, &diff), 0);
    assert_int_equal(json_array_size(diff), N);
    json_array_foreach(diff, i, e)
    {
        char id[32];

        snprintf(id, sizeof(id), "l%03zu", i);
        assert_string_equal(json_string_value(json_object_get(e, "id")), id);
        assert_string_equal(json_string_value(json_object_get(e, "action")), "change");
        assert_int_equal(json_is_true(json_object_get(e, "live")), i % 3 != 0);
    }
    json_decref(diff);
    for (i = 0; i < N; i++) {
        core_listener_cfg_fini(&a[i]);
        core_listener_cfg_fini(&b[i]);
    }
}

static void test_diff_is_live_only_when_connections_can_stay(void **state)
{
    struct core_listener_cfg base, workers, moved, event, date, udp_moved, udp;

    (void)state;
    cfg_of("{\"id\":\"x\",\"service\":\"echo\",\"port\":7001}", &base);
    cfg_of("{\"id\":\"x\",\"service\":\"echo\",\"port\":7001,\"workers\":3}", &workers);
    cfg_of("{\"id\":\"x\",\"service\":\"echo\",\"port\":7002}", &moved);
    cfg_of("{\"id\":\"x\",\"service\":\"echo\",\"port\":7001,\"model\":\"event\"}", &event);
    cfg_of("{\"id\":\"x\",\"service\":\"date\",\"port\":7001}", &date);
    cfg_of("{\"id\":\"x\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":7001}", &udp);
    cfg_of("{\"id\":\"x\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":7002}", &udp_moved);
    assert_true(core_diff_is_live(&base, &workers, true));
    assert_true(core_diff_is_live(&base, &moved, true));
    assert_false(core_diff_is_live(&base, &workers, false)); /* nothing runs to keep */
    assert_false(core_diff_is_live(&base, &event, true));
    assert_false(core_diff_is_live(&base, &date, true));
    assert_false(core_diff_is_live(&base, &udp, true));
    /* a UDP socket that moves is bound before the old one closes */
    assert_true(core_diff_is_live(&udp, &udp_moved, true));
    core_listener_cfg_fini(&base);
    core_listener_cfg_fini(&workers);
    core_listener_cfg_fini(&moved);
    core_listener_cfg_fini(&event);
    core_listener_cfg_fini(&date);
    core_listener_cfg_fini(&udp);
    core_listener_cfg_fini(&udp_moved);
}

/* ---- ETags ---- */

/* Whether If-Match value v, as the API reads it, is met by something at rev. */
static bool if_match_met(const char *v, uint64_t rev, bool exists)
{
    struct core_expect e;

    assert_int_equal(api_if_match_parse(v, &e), 0);
    return core_expect_met(&e, rev, exists);
}

static void test_etag_matches_follows_rfc_9110(void **state)
{
    (void)state;
    assert_true(if_match_met(NULL, 7, false)); /* no If-Match: no precondition */
    assert_true(if_match_met("\"r7\"", 7, true));
    assert_true(if_match_met(" \"r1\", \"r7\" ", 7, true));
    assert_false(if_match_met("\"r7\"", 8, true));
    assert_false(if_match_met("\"r7\"", 7, false));
    assert_false(if_match_met("W/\"r7\"", 7, true)); /* weak tags never match */
    assert_true(if_match_met("W/\"r7\", \"r7\"", 7, true));
    assert_true(if_match_met("*", 3, true));
    assert_false(if_match_met("*", 0, false));
    assert_false(if_match_met("*, \"r3\"", 3, true)); /* "*" is alone or not at all */
    assert_false(if_match_met("r7", 7, true));        /* not a quoted tag */
    assert_false(if_match_met("\"r7", 7, true));
    assert_false(if_match_met("", 7, true));
    assert_false(if_match_met("\"r70\"", 7, true));
    assert_false(if_match_met("\"r07\"", 7, true));
    assert_false(if_match_met("\"x7\"", 7, true));
    assert_true(if_match_met("\"r0\"", 0, true)); /* a configuration never changed */
}

static void test_if_match_of_too_many_tags_refused(void **state)
{
    char v[512] = "";
    struct core_expect e;

    (void)state;
    for (int i = 1; i <= CORE_EXPECT_MAX; i++)
        snprintf(v + strlen(v), sizeof(v) - strlen(v), "%s\"r%d\"", i > 1 ? ", " : "", i);
    assert_int_equal(api_if_match_parse(v, &e), 0);
    assert_int_equal(e.kind, CORE_EXPECT_ONE_OF);
    assert_int_equal(e.n, CORE_EXPECT_MAX);
    assert_true(core_expect_met(&e, CORE_EXPECT_MAX, true));
    strcat(v, ", \"r99\"");
    assert_int_equal(api_if_match_parse(v, &e), -E2BIG);
    /* tags that are not revisions do not count */
    v[0] = '\0';
    for (int i = 0; i < 3 * CORE_EXPECT_MAX; i++)
        strcat(v, "W/\"r1\", ");
    strcat(v, "\"r5\"");
    assert_int_equal(api_if_match_parse(v, &e), 0);
    assert_true(core_expect_met(&e, 5, true));
}

/* Prefer: return=minimal among other preferences, in any case of the name, quoted or not. */
static void test_prefer_return_minimal_parsed(void **state)
{
    (void)state;
    assert_false(api_prefer_minimal(NULL));
    assert_false(api_prefer_minimal(""));
    assert_true(api_prefer_minimal("return=minimal"));
    assert_true(api_prefer_minimal("Return = minimal"));
    assert_true(api_prefer_minimal("respond-async, wait=10, return=minimal; foo=bar"));
    assert_true(api_prefer_minimal("return=\"minimal\""));
    assert_false(api_prefer_minimal("return=representation"));
    assert_false(api_prefer_minimal("return=minimalist"));
    assert_false(api_prefer_minimal("noreturn=minimal"));
    assert_false(api_prefer_minimal("return"));
    assert_false(api_prefer_minimal("handling=strict; return=minimal"));
}

/* The source of a revision, formatted once by core from what asked: no HTTP in it. */
static void test_change_source_formats_without_http(void **state)
{
    static const struct {
        struct core_change_source s;
        const char *text;
    } cases[] = {
        {{CORE_IFACE_API, CORE_CHANGE_REPLACE, "e1", 0, false, 0}, "api: replace listener e1"},
        {{CORE_IFACE_API, CORE_CHANGE_CONFIG_REPLACE, "", 0, false, 0},
         "api: replace configuration"},
        {{CORE_IFACE_API, CORE_CHANGE_RESTORE, "", 3, false, 0}, "api: restore of revision 3"},
        {{CORE_IFACE_STARTUP, CORE_CHANGE_LOAD_STATE, "", 0, false, 0}, "startup: state file"},
        {{CORE_IFACE_STARTUP, CORE_CHANGE_LOAD_DEFAULTS, "", 0, false, 0}, "startup: defaults"},
        {{CORE_IFACE_FLEET, CORE_CHANGE_DELETE, "b", 0, false, 0}, "fleet: delete listener b"},
        {{CORE_IFACE_FLEET, CORE_CHANGE_CONFIG_REPLACE, "", 0, true, 42},
         "fleet: replace configuration (offset 42)"},
    };
    char buf[CORE_SOURCE_MAX];
    json_t *o;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        core_change_source_format(&cases[i].s, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].text);
    }
    o = core_change_source_json(&cases[2].s);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "interface")), "api");
    assert_string_equal(json_string_value(json_object_get(o, "action")), "restore");
    assert_true(json_is_null(json_object_get(o, "listener")));
    assert_int_equal(json_integer_value(json_object_get(o, "restored")), 3);
    json_decref(o);
    o = core_change_source_json(&cases[5].s);
    assert_string_equal(json_string_value(json_object_get(o, "interface")), "fleet");
    assert_string_equal(json_string_value(json_object_get(o, "listener")), "b");
    assert_true(json_is_null(json_object_get(o, "restored")));
    json_decref(o);
}

/* ---- the history ---- */

struct fx {
    char dir[64];
    char path[128];
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/sockserv-rev-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, CORE_REVISIONS_FILE);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Appends a revision creating (or changing) id, with a one-listener set; every other one with
 * the set's text as a change gives it, the others dumped when written. */
static uint64_t append(struct core_revisions *rv, const char *id, const char *action)
{
    static unsigned calls;
    json_t *diff = json_pack("[{s:s, s:s}]", "id", id, "action", action);
    json_t *set = json_pack("[{s:s, s:s}]", "id", id, "service", "echo");
    char *text = calls++ % 2 ? json_dumps(set, JSON_COMPACT) : NULL;
    uint64_t n = 0;

    assert_int_equal(
        core_revisions_append(rv, "test",
                              json_pack("{s:s, s:s}", "interface", "api", "action", "replace"),
                              diff, set, text, false, &n),
        0);
    return n;
}

static size_t file_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    int c;

    assert_non_null(f);
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void test_revisions_numbered_listed_and_marked(void **state)
{
    struct fx *f = *state;
    struct core_revisions *rv;
    json_t *list, *one;

    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    assert_int_equal(core_revisions_last(rv), 0);
    assert_int_equal(append(rv, "a", "create"), 1);
    assert_int_equal(append(rv, "b", "create"), 2);
    assert_int_equal(append(rv, "a", "change"), 3);
    assert_int_equal(core_revisions_of(rv, "a"), 3);
    assert_int_equal(core_revisions_of(rv, "b"), 2);
    assert_int_equal(append(rv, "b", "delete"), 4);
    assert_int_equal(core_revisions_of(rv, "b"), 0);

    list = core_revisions_list(rv, 2);
    assert_int_equal(json_array_size(list), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "revision")), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "summary")),
                        "deleted b");
    assert_null(json_object_get(json_array_get(list, 0), "listeners"));
    json_decref(list);
    assert_int_equal(core_revisions_get(rv, 3, &one), 0);
    assert_true(json_is_array(json_object_get(one, "listeners")));
    json_decref(one);
    assert_int_equal(core_revisions_get(rv, 99, &one), -ENOENT);

    /* A revision taken back leaves the listeners' revisions as they were. */
    assert_int_equal(append(rv, "a", "change"), 5);
    core_revisions_drop_last(rv);
    assert_int_equal(core_revisions_last(rv), 4);
    assert_int_equal(core_revisions_of(rv, "a"), 3);
    core_revisions_free(rv);
}

static void test_revisions_file_round_trip_and_torn_last_line(void **state)
{
    struct fx *f = *state;
    struct core_revisions *rv, *again;
    struct core_err err = {0};
    json_t *a, *b;
    int fd;

    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    assert_int_equal(core_revisions_load(rv, &err), -ENOENT);
    for (int i = 0; i < 5; i++) {
        append(rv, i % 2 ? "odd" : "even", "change");
        assert_int_equal(core_revisions_save(rv, &err), 0);
    }
    assert_int_equal(file_lines(f->path), 5); /* one line a change */

    /* A crash in the middle of the next append leaves a line cut short. */
    fd = open(f->path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"revision\":6,\"ti", 17), 17);
    close(fd);

    assert_int_equal(core_revisions_new(f->path, &again), 0);
    assert_false(core_revisions_problem(again, NULL, 0));
    assert_int_equal(core_revisions_load(again, &err), 0);
    /* Dropped, and said. */
    {
        char problem[256];

        assert_true(core_revisions_problem(again, problem, sizeof(problem)));
        assert_non_null(strstr(problem, "line 6"));
    }
    assert_int_equal(core_revisions_last(again), 5);
    assert_int_equal(core_revisions_of(again, "even"), 5);
    assert_int_equal(core_revisions_of(again, "odd"), 4);
    a = core_revisions_list(rv, 10);
    b = core_revisions_list(again, 10);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    /* Each with its listeners, whether its line was written from their text or dumped. */
    for (uint64_t n = 1; n <= 5; n++) {
        assert_int_equal(core_revisions_get(rv, n, &a), 0);
        assert_int_equal(core_revisions_get(again, n, &b), 0);
        assert_int_equal(json_array_size(json_object_get(b, "listeners")), 1);
        assert_true(json_equal(a, b));
        json_decref(a);
        json_decref(b);
    }

    /* The next save writes the file whole: the torn line is gone, numbering goes on. */
    assert_int_equal(append(again, "odd", "change"), 6);
    assert_int_equal(core_revisions_save(again, &err), 0);
    assert_int_equal(file_lines(f->path), 6);
    core_revisions_free(again);
    assert_int_equal(core_revisions_new(f->path, &again), 0);
    assert_int_equal(core_revisions_load(again, &err), 0);
    assert_int_equal(core_revisions_last(again), 6);
    assert_false(core_revisions_problem(again, NULL, 0));
    core_revisions_free(again);
    core_revisions_free(rv);
}

static void test_revisions_floor_keeps_numbers_from_coming_back(void **state)
{
    struct fx *f = *state;
    struct core_revisions *rv;

    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    assert_int_equal(core_revisions_next(rv), 1);
    /* The history was lost but the state file says 7: the next is 7, never 1. */
    core_revisions_floor(rv, 7);
    assert_int_equal(core_revisions_next(rv), 7);
    assert_int_equal(append(rv, "a", "create"), 7);
    assert_int_equal(core_revisions_next(rv), 8);
    /* A lower floor changes nothing. */
    core_revisions_floor(rv, 3);
    assert_int_equal(append(rv, "a", "change"), 8);
    core_revisions_free(rv);
}

static void test_revisions_file_compacted_keeps_the_newest(void **state)
{
    struct fx *f = *state;
    struct core_revisions *rv;
    struct core_err err = {0};
    json_t *list;

    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    for (int i = 0; i < 3 * CORE_REVISIONS_KEEP; i++) {
        append(rv, "x", "change");
        assert_int_equal(core_revisions_save(rv, &err), 0);
        core_revisions_settle(rv); /* a rewrite it started is done */
        assert_true(file_lines(f->path) <= 2 * CORE_REVISIONS_KEEP);
    }
    core_revisions_free(rv);
    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    assert_int_equal(core_revisions_load(rv, &err), 0);
    assert_int_equal(core_revisions_last(rv), 3 * CORE_REVISIONS_KEEP);
    list = core_revisions_list(rv, 1000);
    assert_int_equal(json_array_size(list), CORE_REVISIONS_KEEP);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(list, CORE_REVISIONS_KEEP - 1), "revision")),
                     2 * CORE_REVISIONS_KEEP + 1);
    json_decref(list);
    core_revisions_free(rv);
}

/* Writing the file whole keeps each revision's line as it was: a line read from the file (here
 * with its members in another order and spaces, as another writer may have left it) is written
 * again byte for byte, not made anew from its parsed trees. */
static void test_revisions_file_written_whole_keeps_lines_as_read(void **state)
{
    struct fx *f = *state;
    struct core_revisions *rv;
    struct core_err err = {0};
    char *text = NULL, line[512], *p;
    size_t len;
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    for (int n = 1; n <= 2 * CORE_REVISIONS_KEEP; n++)
        fprintf(fp,
                "{\"version\": 1, \"revision\": %d, \"time\": \"2026-12-01T00:00:00.000Z\", "
                "\"source\": \"test\", \"summary\": \"change a\", "
                "\"diff\": [{\"id\": \"a\", \"action\": \"change\"}], "
                "\"listeners\": [{\"id\": \"a\", \"service\": \"echo\"}], "
                "\"listener_revisions\": {\"a\": %d}}\n",
                n, n);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    assert_int_equal(core_revisions_load(rv, &err), 0);
    assert_int_equal(core_revisions_last(rv), 2 * CORE_REVISIONS_KEEP);

    /* The file holds twice the revisions shown: the next save writes the newest whole. */
    append(rv, "a", "change");
    assert_int_equal(core_revisions_save(rv, &err), 0);
    core_revisions_settle(rv);
    assert_int_equal(file_lines(f->path), CORE_REVISIONS_KEEP);
    assert_int_equal(core_fs_read_file(f->path, 1 << 24, &text, &len), 0);
    p = text;
    for (int n = CORE_REVISIONS_KEEP + 2; n <= 2 * CORE_REVISIONS_KEEP; n++) {
        int k = snprintf(line, sizeof(line),
                         "{\"version\": 1, \"revision\": %d, \"time\": "
                         "\"2026-12-01T00:00:00.000Z\", \"source\": \"test\", \"summary\": "
                         "\"change a\", \"diff\": [{\"id\": \"a\", \"action\": \"change\"}], "
                         "\"listeners\": [{\"id\": \"a\", \"service\": \"echo\"}], "
                         "\"listener_revisions\": {\"a\": %d}}\n",
                         n, n);

        assert_memory_equal(p, line, (size_t)k);
        p += k;
    }
    assert_non_null(strstr(p, "\"revision\":201,")); /* the new one, as this daemon writes */
    free(text);
    core_revisions_free(rv);
}

/* Appends n revisions, each saved as it comes. */
static void append_saved(struct core_revisions *rv, int n)
{
    struct core_err err = {0};

    for (int i = 0; i < n; i++) {
        append(rv, "x", "change");
        assert_int_equal(core_revisions_save(rv, &err), 0);
    }
}

/* The file is written whole on a thread of its own while saves go on: the revisions saved
 * while it writes are in the file it puts in place, once each, in order, and nothing else
 * (the save that started it returned with its own line synced in the old file). */
static void test_revisions_saves_during_a_rewrite_kept(void **state)
{
    struct fx *f = *state;
    struct core_revisions *rv;
    struct core_err err = {0};
    char *text = NULL, *p;
    size_t len;
    int want = CORE_REVISIONS_KEEP + 1;

    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    append_saved(rv, 2 * CORE_REVISIONS_KEEP); /* the last one starts the rewrite */
    append_saved(rv, 5);
    core_revisions_settle(rv);
    assert_int_equal(file_lines(f->path), CORE_REVISIONS_KEEP + 5);
    assert_int_equal(core_fs_read_file(f->path, 1 << 24, &text, &len), 0);
    for (p = text; *p; want++) {
        char key[32];
        snprintf(key, sizeof(key), "\"revision\":%d,", want);
        assert_non_null(strstr(p, key));
        assert_true(strstr(p, key) < strchr(p, '\n'));
        p = strchr(p, '\n') + 1;
    }
    assert_int_equal(want, 2 * CORE_REVISIONS_KEEP + 6);
    free(text);
    core_revisions_free(rv);
    /* What was saved is what comes back. */
    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    assert_int_equal(core_revisions_load(rv, &err), 0);
    assert_int_equal(core_revisions_last(rv), 2 * CORE_REVISIONS_KEEP + 5);
    core_revisions_free(rv);
}

static void test_revisions_corrupt_line_in_the_middle_refused(void **state)
{
    struct fx *f = *state;
    struct core_revisions *rv;
    struct core_err err = {0};
    static const char text[] = "{\"version\":1,\"revision\":4,\"time\":\"t\",\"source\":\"s\","
                               "\"summary\":\"x\",\"diff\":[],\"listeners\":[],"
                               "\"listener_revisions\":{}}\nnot json\n{\"revision\":1}\n";
    char problem[256];
    int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    assert_int_equal(core_revisions_new(f->path, &rv), 0);
    assert_int_equal(core_revisions_load(rv, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "line 2"));
    assert_int_equal(core_revisions_last(rv), 0);
    assert_true(core_revisions_problem(rv, problem, sizeof(problem)));
    assert_non_null(strstr(problem, "line 2 is not a revision"));
    /* The revision read before the bad line keeps its number taken. */
    assert_int_equal(core_revisions_next(rv), 5);
    core_revisions_free(rv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff_sets_lists_create_change_delete_by_id),
        cmocka_unit_test(test_diff_sets_keeps_running_flags_with_their_listeners),
        cmocka_unit_test(test_diff_is_live_only_when_connections_can_stay),
        cmocka_unit_test(test_etag_matches_follows_rfc_9110),
        cmocka_unit_test(test_if_match_of_too_many_tags_refused),
        cmocka_unit_test(test_prefer_return_minimal_parsed),
        cmocka_unit_test(test_change_source_formats_without_http),
        cmocka_unit_test_setup_teardown(test_revisions_numbered_listed_and_marked, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_revisions_file_round_trip_and_torn_last_line, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_revisions_file_compacted_keeps_the_newest, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_revisions_saves_during_a_rewrite_kept, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_revisions_file_written_whole_keeps_lines_as_read,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revisions_corrupt_line_in_the_middle_refused, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_revisions_floor_keeps_numbers_from_coming_back,
                                        fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
