/*
 * The backup service's retention over real sockets: keep_versions and keep_days applied after
 * each commit, at start and when the options change live, under the thread and process models;
 * what LIST, the REST files listing, the directory, the counters, the event stream and the
 * quota show afterwards; and a restore of a version that retention removes while it is being
 * read, which still delivers the whole copy.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define MIB (1024 * 1024)
#define LINE_CAP 2048
#define DAY_S (24 * 3600)
#define RESTORE_SIZE (16 * MIB) /* far more than the socket buffers hold (4 MiB) */
#define RESTORE_HEAD (64 * 1024)
#define RESTORE_TIMEOUT_MS 60000

static struct it_fixture *fix(void **state)
{
    return *state;
}

/* A backup listener id on port 0 under model, its files in DIR/id; extra is more options
 * members (",\"keep_versions\":2") or "". Returns the bound port. */
static uint16_t backup_listener(void **state, const char *id, const char *model, const char *extra)
{
    char body[1024], *dir = it_path_in(fix(state)->dir, id);
    uint16_t port;

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"backup\",\"port\":0,\"model\":\"%s\","
             "\"options\":{\"directory\":\"%s\",\"min_rate_bytes_per_s\":0%s}}",
             id, model, dir, extra);
    port = it_listener_create_port(&fix(state)->d, body);
    free(dir);
    return port;
}

/* metrics.service.NAME of listener id. */
static uint64_t svc_metric(const struct it_daemon *d, const char *id, const char *name)
{
    char path[128];

    snprintf(path, sizeof(path), "service.%s", name);
    return it_metric(d, id, path);
}

/* Whether DIR/id/rel exists. */
static bool stored_entry(void **state, const char *id, const char *rel)
{
    char path[IT_PATH_MAX];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s/%s", fix(state)->dir, id, rel);
    return lstat(path, &st) == 0;
}

/* The versions of name that LIST shows, newest first, the current one starred: "4* 3". */
static char *list_versions(uint16_t port, const char *name)
{
    char *all = it_backup_list(port, NULL), *out = calloc(1, 512);
    size_t len = 0;

    assert_non_null(out);
    for (char *p = all; p && *p;) {
        char *nl = strchr(p, '\n'), lname[300], cur[16];
        unsigned version;

        *nl = '\0';
        if (sscanf(p, "%299s %u %*s %*s %*s %*s %15s", lname, &version, cur) == 3 &&
            strcmp(lname, name) == 0)
            len += (size_t)snprintf(out + len, 512 - len, "%s%u%s", len ? " " : "", version,
                                    strcmp(cur, "current") == 0 ? "*" : "");
        p = nl + 1;
    }
    free(all);
    return out;
}

static void assert_listed(uint16_t port, const char *name, const char *want)
{
    char *got = list_versions(port, name);

    if (strcmp(got, want) != 0)
        fail_msg("LIST shows versions \"%s\" of %s, want \"%s\"", got, name, want);
    free(got);
}

/* The versions of name that GET /api/v1/listeners/ID/files shows, as list_versions() does. */
static void assert_rest_listed(const struct it_daemon *d, const char *id, const char *name,
                               const char *want)
{
    char path[128], got[512] = "";
    json_t *body, *v, *file = NULL;
    size_t i, len = 0;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s/files", id);
    body = it_http_expect(d, "GET", path, NULL, 200);
    json_array_foreach(json_object_get(body, "files"), i, v)
    {
        if (strcmp(it_json_str(v, "name"), name) == 0)
            file = v;
    }
    if (file) {
        len += (size_t)snprintf(got, sizeof(got), "%lld*", (long long)it_json_int(file, "version"));
        json_array_foreach(json_object_get(file, "versions"), i, v)
        {
            len += (size_t)snprintf(got + len, sizeof(got) - len, " %lld",
                                    (long long)it_json_int(v, "version"));
        }
    }
    if (strcmp(got, want) != 0)
        fail_msg("%s shows versions \"%s\" of %s, want \"%s\"", path, got, name, want);
    json_decref(body);
}

/* PUT name of n bytes of pattern seed; asserts it is STORED as version. */
static void put_pattern(uint16_t port, const char *name, size_t n, unsigned seed, unsigned version)
{
    void *p = it_pattern(n, seed);

    it_backup_put_ok(port, name, p, n, version);
    free(p);
}

/* The next event of type on the stream (skipping others); returns its data (new reference). */
static json_t *next_event(struct it_stream *st, const char *type)
{
    int64_t deadline = it_now_ms() + IT_WAIT_MS;
    char needle[64];

    snprintf(needle, sizeof(needle), "\nevent: %s\ndata: ", type);
    for (;;) {
        size_t len;
        char *buf = it_stream_data(st, &len), *end;

        while (buf && (end = strstr(buf, "\n\n"))) {
            char *at = strstr(buf, needle);
            json_t *j = NULL;

            if (at && at < end) {
                at += strlen(needle);
                j = json_loadb(at, strcspn(at, "\n"), 0, NULL);
                assert_non_null(j);
            }
            it_stream_consume(st, (size_t)(end + 2 - buf));
            if (j)
                return j;
            buf = it_stream_data(st, &len);
        }
        if (it_now_ms() > deadline)
            fail_msg("no %s event within %d ms", type, IT_WAIT_MS);
        if (it_stream_end(st) != -EINPROGRESS)
            fail_msg("the event stream ended: %s", it_stream_error(st));
        it_stream_pump(st, 200);
    }
}

static struct it_stream *events_open(const struct it_daemon *d)
{
    static const char *const headers[] = {"Accept: text/event-stream", NULL};

    return it_stream_open(d, &(struct it_req){.path = "/api/v1/events", .headers = headers});
}

static void assert_pruned_event(json_t *j, const char *id, const char *name, unsigned versions,
                                uint64_t bytes)
{
    assert_string_equal(it_json_str(j, "listener"), id);
    assert_string_equal(it_json_str(j, "name"), name);
    assert_int_equal(it_json_int(j, "versions"), versions);
    assert_int_equal(it_json_int(j, "bytes"), bytes);
    json_decref(j);
}

/* Makes copy version of name in listener id's directory read as stored days_ago days ago:
 * its record's "stored" time is rewritten (as a clock set back at the time would have made
 * it). */
static void age_copy(void **state, const char *id, const char *name, unsigned version, int days_ago)
{
    char path[IT_PATH_MAX], when[32], *text;
    time_t t = time(NULL) - (time_t)days_ago * DAY_S;
    json_t *j;
    struct tm tm;

    snprintf(path, sizeof(path), "%s/%s/.sockserv/%s/%u.json", fix(state)->dir, id, name, version);
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    j = json_load_file(path, 0, NULL);
    if (!j)
        fail_msg("%s cannot be read", path);
    assert_int_equal(json_object_set_new(j, "stored", json_string(when)), 0);
    text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    assert_int_equal(it_file_write(path, text, strlen(text)), 0);
    free(text);
    json_decref(j);
}

/* Asserts that a PUT of 31 bytes is refused by quota_bytes 100 with used bytes stored: the
 * quota's usage as the listener counts it. */
static void expect_quota_refusal(uint16_t port, unsigned used)
{
    char line[LINE_CAP], want[LINE_CAP];
    int fd = it_tcp_connect_ok(port);

    it_send_str_ok(fd, "PUT probe 31\n");
    it_recv_line(fd, line, sizeof(line));
    close(fd);
    snprintf(want, sizeof(want),
             "ERR quota 31 bytes would exceed quota_bytes 100 (%u stored, 0 in progress)", used);
    assert_string_equal(line, want);
}

/* ---- after each commit ---- */

/*
 * keep_versions 2 under model: each commit keeps the current copy and one older version; the
 * listings, the directory, the counters and the events say so, and the quota's usage falls
 * with what went (an upload that fits only then is stored; the next refusal says how much is
 * stored).
 */
static void assert_keep_versions_after_each_commit(void **state, const char *model)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(state, "kv", model, ",\"keep_versions\":2,\"quota_bytes\":100");
    struct it_stream *ev = events_open(d);

    put_pattern(port, "a", 30, 1, 1);
    put_pattern(port, "a", 30, 2, 2);
    assert_listed(port, "a", "2* 1");
    it_assert_metric_now(d, "kv", "service.versions_pruned", 0);
    put_pattern(port, "a", 30, 3, 3);
    /* counted before STORED was sent */
    it_assert_metric_now(d, "kv", "service.versions_pruned", 1);
    it_assert_metric_now(d, "kv", "service.bytes_pruned", 30);
    assert_pruned_event(next_event(ev, "backup.pruned"), "kv", "a", 1, 30);
    assert_listed(port, "a", "3* 2");
    assert_rest_listed(d, "kv", "a", "3* 2");
    assert_false(stored_entry(state, "kv", ".sockserv/a/1"));
    assert_false(stored_entry(state, "kv", ".sockserv/a/1.json"));
    assert_true(stored_entry(state, "kv", ".sockserv/a/2"));

    /* 60 bytes stored: 40 more fit in quota_bytes 100, which the 90 of three copies left no
     * room for */
    put_pattern(port, "b", 40, 4, 1);
    expect_quota_refusal(port, 100);
    /* an empty copy of a drops version 2: 30 bytes free again */
    it_backup_put_ok(port, "a", "", 0, 4);
    assert_pruned_event(next_event(ev, "backup.pruned"), "kv", "a", 1, 30);
    assert_listed(port, "a", "4* 3");
    assert_listed(port, "b", "1*");
    assert_rest_listed(d, "kv", "a", "4* 3");
    expect_quota_refusal(port, 70);
    put_pattern(port, "c", 30, 5, 1);
    expect_quota_refusal(port, 100);
    assert_int_equal(svc_metric(d, "kv", "versions_pruned"), 2);
    assert_int_equal(svc_metric(d, "kv", "bytes_pruned"), 60);
    assert_int_equal(svc_metric(d, "kv", "uploads_stored"), 6);
    it_stream_close(ev);
}

static void test_retention_keep_versions_after_each_commit_thread(void **state)
{
    assert_keep_versions_after_each_commit(state, "thread");
}

static void test_retention_keep_versions_after_each_commit_process(void **state)
{
    assert_keep_versions_after_each_commit(state, "process");
}

/* ---- at start, and when the options change live ---- */

static void test_retention_applied_at_start_after_options_changed_while_stopped(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(state, "st", "thread", "");
    struct it_stream *ev;
    json_t *res, *j;

    for (unsigned v = 1; v <= 4; v++)
        put_pattern(port, "a", 10 * v, v, v);
    put_pattern(port, "b", 7, 9, 1);
    put_pattern(port, "b", 8, 10, 2);
    put_pattern(port, "c", 5, 11, 1);
    assert_listed(port, "a", "4* 3 2 1");
    json_decref(it_listener_patch(d, "st", "{\"enabled\":false}"));
    res = it_listener_patch(d, "st", "{\"options\":{\"keep_versions\":2}}");
    assert_int_equal(it_json_int(res, "options.keep_versions"), 2);
    json_decref(res);
    /* stopped: nothing happens yet */
    assert_true(stored_entry(state, "st", ".sockserv/a/1"));
    assert_rest_listed(d, "st", "a", "4* 3 2 1");

    ev = events_open(d);
    res = it_listener_patch(d, "st", "{\"enabled\":true}");
    port = it_bound_port(res);
    json_decref(res);
    /* every name, by the time the start is answered */
    assert_rest_listed(d, "st", "a", "4* 3");
    assert_rest_listed(d, "st", "b", "2* 1");
    assert_rest_listed(d, "st", "c", "1*");
    assert_listed(port, "a", "4* 3");
    assert_false(stored_entry(state, "st", ".sockserv/a/1"));
    assert_false(stored_entry(state, "st", ".sockserv/a/2"));
    assert_int_equal(svc_metric(d, "st", "versions_pruned"), 2);
    assert_int_equal(svc_metric(d, "st", "bytes_pruned"), 10 + 20);
    j = next_event(ev, "backup.pruned");
    assert_pruned_event(j, "st", "a", 2, 30);
    it_stream_close(ev);
    /* the numbers go on */
    put_pattern(port, "a", 3, 12, 5);
    assert_listed(port, "a", "5* 4");
}

static void test_retention_applied_when_options_change_live(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(state, "lv", "thread", ",\"keep_versions\":3");
    json_t *res;

    for (unsigned v = 1; v <= 4; v++)
        put_pattern(port, "a", 100, v, v);
    assert_listed(port, "a", "4* 3 2");
    res = it_listener_patch(d, "lv", "{\"options\":{\"keep_versions\":1}}");
    assert_string_equal(it_json_str(res, "status.state"), "running");
    assert_int_equal(it_bound_port(res), port);
    json_decref(res);
    assert_listed(port, "a", "4*");
    assert_int_equal(svc_metric(d, "lv", "versions_pruned"), 1 + 2);
    /* 0: unlimited again, nothing more goes */
    json_decref(it_listener_patch(d, "lv", "{\"options\":{\"keep_versions\":0}}"));
    put_pattern(port, "a", 100, 5, 5);
    put_pattern(port, "a", 100, 6, 6);
    assert_listed(port, "a", "6* 5 4");
    assert_int_equal(svc_metric(d, "lv", "versions_pruned"), 3);
}

/*
 * keep_days counts from when a copy was replaced: of three copies stored 10 days ago, 9 days
 * ago and now, the first (replaced 9 days ago) goes and the second (stored 9 days ago, replaced
 * now) stays. The newest copy stays whatever its age.
 */
static void test_retention_keep_days_drops_versions_replaced_long_ago(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(state, "kd", "thread", "");

    put_pattern(port, "a", 11, 1, 1);
    put_pattern(port, "a", 12, 2, 2);
    put_pattern(port, "a", 13, 3, 3);
    put_pattern(port, "old", 21, 4, 1);
    put_pattern(port, "old", 22, 5, 2);
    age_copy(state, "kd", "a", 1, 10);
    age_copy(state, "kd", "a", 2, 9);
    age_copy(state, "kd", "old", 1, 30);
    age_copy(state, "kd", "old", 2, 20);
    json_decref(it_listener_patch(d, "kd", "{\"options\":{\"keep_days\":7}}"));
    assert_listed(port, "a", "3* 2");
    assert_listed(port, "old", "2*");
    assert_rest_listed(d, "kd", "old", "2*");
    assert_true(stored_entry(state, "kd", "old"));
    assert_false(stored_entry(state, "kd", ".sockserv/old/1"));
    assert_int_equal(svc_metric(d, "kd", "versions_pruned"), 2);
    assert_int_equal(svc_metric(d, "kd", "bytes_pruned"), 11 + 21);
    /* a commit now: a's version 2 was replaced just now, it stays */
    put_pattern(port, "a", 14, 6, 4);
    assert_listed(port, "a", "4* 3 2");
}

static void test_retention_options_out_of_range_refused(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const struct {
        const char *options, *field;
    } bad[] = {
        {"{\"keep_versions\":-1}", "options.keep_versions"},
        {"{\"keep_versions\":\"all\"}", "options.keep_versions"},
        {"{\"keep_versions\":1000001}", "options.keep_versions"},
        {"{\"keep_days\":-1}", "options.keep_days"},
        {"{\"keep_days\":36501}", "options.keep_days"},
        {"{\"keep_days\":1.5}", "options.keep_days"},
    };
    char body[256];
    json_t *res;

    backup_listener(state, "rg", "thread", "");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct it_http r;

        snprintf(body, sizeof(body), "{\"options\":%s}", bad[i].options);
        it_http(d, "PATCH", "/api/v1/listeners/rg", body, &r);
        it_assert_problem(&r, 400, bad[i].field);
        it_http_fini(&r);
    }
    res = it_listener_get(d, "rg");
    assert_int_equal(it_json_int(res, "options.keep_versions"), 0);
    assert_int_equal(it_json_int(res, "options.keep_days"), 0);
    json_decref(res);
}

/* ---- a restore in progress ---- */

/*
 * A GET of version 1 reads its first bytes; another upload makes retention (keep_versions 2)
 * remove version 1 from the directory; the GET still delivers every byte, the SHA-256 the OK
 * line announced. The server had sent only part of the copy when it went, so the rest came
 * from the removed file's open descriptor.
 */
static void assert_restore_survives_prune(void **state, const char *model)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(state, "rs", model, ",\"keep_versions\":2");
    uint8_t *data = it_pattern(RESTORE_SIZE, 21), *got = malloc(RESTORE_SIZE);
    char line[LINE_CAP], want[LINE_CAP], hex[65], got_hex[65];
    int small = 16 * 1024, fd, r;
    uint64_t sent;

    assert_non_null(got);
    it_backup_put_ok(port, "disk.img", data, RESTORE_SIZE, 1);
    it_backup_put_ok(port, "disk.img", "small", 5, 2);
    it_sha256_hex(data, RESTORE_SIZE, hex);

    fd = it_tcp_connect_ok(port);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    it_send_str_ok(fd, "GET disk.img 1\n");
    it_recv_line(fd, line, sizeof(line));
    snprintf(want, sizeof(want), "OK %d %s 1", RESTORE_SIZE, hex);
    assert_string_equal(line, want);
    assert_int_equal(it_recv_exact(fd, got, RESTORE_HEAD, IT_IO_TIMEOUT_MS), 0);

    it_backup_put_ok(port, "disk.img", "newer", 5, 3);
    assert_listed(port, "disk.img", "3* 2");
    assert_false(stored_entry(state, "rs", ".sockserv/disk.img/1"));
    assert_int_equal(svc_metric(d, "rs", "bytes_pruned"), RESTORE_SIZE);
    sent = svc_metric(d, "rs", "bytes_restored");
    if (sent >= RESTORE_SIZE)
        fail_msg("the whole copy (%llu bytes) was read before it was removed: the test proves "
                 "nothing",
                 (unsigned long long)sent);

    r = it_recv_exact(fd, got + RESTORE_HEAD, RESTORE_SIZE - RESTORE_HEAD, RESTORE_TIMEOUT_MS);
    if (r < 0)
        fail_msg("the rest of the restore after %llu bytes sent at the removal: %s",
                 (unsigned long long)sent, strerror(-r));
    it_sha256_hex(got, RESTORE_SIZE, got_hex);
    assert_string_equal(got_hex, hex);
    assert_memory_equal(got, data, RESTORE_SIZE);
    it_send_str_ok(fd, "QUIT\n");
    it_expect_line(fd, "BYE");
    close(fd);
    assert_int_equal(svc_metric(d, "rs", "bytes_restored"), RESTORE_SIZE);
    free(got);
    free(data);
}

static void test_retention_restore_in_progress_delivers_whole_copy_thread(void **state)
{
    assert_restore_survives_prune(state, "thread");
}

static void test_retention_restore_in_progress_delivers_whole_copy_process(void **state)
{
    assert_restore_survives_prune(state, "process");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_retention_keep_versions_after_each_commit_thread),
        T(test_retention_keep_versions_after_each_commit_process),
        T(test_retention_applied_at_start_after_options_changed_while_stopped),
        T(test_retention_applied_when_options_change_live),
        T(test_retention_keep_days_drops_versions_replaced_long_ago),
        T(test_retention_options_out_of_range_refused),
        T(test_retention_restore_in_progress_delivers_whole_copy_thread),
        T(test_retention_restore_in_progress_delivers_whole_copy_process),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
