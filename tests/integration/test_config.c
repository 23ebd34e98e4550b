/*
 * Whole-configuration changes as a script drives them: GET/PUT /api/v1/config applied all or
 * nothing (a bind failure half-way puts every listener back as it was, sockets included),
 * ETags and If-Match (412 on a stale one), dry runs that change nothing, the history of
 * revisions and a restore, a port change under load without a failed round trip, and
 * `sockserv ctl` with the exit codes scripts rely on.
 */

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define MSG_LEN 64

/* An answer with the headers a script reads. */
struct answer {
    long status;
    char etag[64];
    json_t *json;
};

/* A request with an optional If-Match; asserts that an answer came. */
static void req(const struct it_daemon *d, const char *method, const char *path, const char *body,
                const char *if_match, struct answer *ret)
{
    char im[128];
    const char *const headers[] = {if_match ? im : NULL, NULL};
    struct it_http r;

    memset(ret, 0, sizeof(*ret));
    snprintf(im, sizeof(im), "If-Match: %s", if_match ? if_match : "");
    if (it_http_request(d,
                        &(struct it_req){.method = method,
                                         .path = path,
                                         .body = body,
                                         .body_len = body ? strlen(body) : 0,
                                         .content_type = "application/json",
                                         .headers = headers},
                        &r) < 0)
        fail_msg("%s %s: %s", method, path, r.error);
    ret->status = r.status;
    if (!it_http_header(&r, "ETag", ret->etag, sizeof(ret->etag)))
        ret->etag[0] = '\0';
    ret->json = json_incref(r.json);
    it_http_fini(&r);
}

static void answer_fini(struct answer *a)
{
    json_decref(a->json);
    a->json = NULL;
}

static void expect_status(const struct answer *a, long status, const char *what)
{
    if (a->status != status) {
        char *text = a->json ? json_dumps(a->json, JSON_COMPACT) : NULL;

        fail_msg("%s: status %ld, want %ld: %s", what, a->status, status, text ? text : "-");
    }
}

/* GET /api/v1/config: the body (new reference) and its ETag. */
static json_t *config_get(const struct it_daemon *d, char *etag, size_t cap)
{
    struct answer a;
    json_t *j;

    req(d, "GET", "/api/v1/config", NULL, NULL, &a);
    expect_status(&a, 200, "GET /api/v1/config");
    assert_true(json_is_array(json_object_get(a.json, "listeners")));
    assert_true(a.etag[0] == '"');
    if (etag)
        snprintf(etag, cap, "%s", a.etag);
    j = json_incref(a.json);
    answer_fini(&a);
    return j;
}

/* The status of a request without a body. */
static long http_status(const struct it_daemon *d, const char *method, const char *path)
{
    struct answer a;

    req(d, method, path, NULL, NULL, &a);
    answer_fini(&a);
    return a.status;
}

static json_int_t revision_now(const struct it_daemon *d)
{
    json_t *c = config_get(d, NULL, 0);
    json_int_t n = it_json_int(c, "revision");

    json_decref(c);
    return n;
}

/* The TCP port a process outside the daemon holds, kept bound (and listening) until closed. */
static int hold_port(uint16_t *ret_port)
{
    int fd = it_bind(SOCK_STREAM, "::", 0, ret_port);

    assert_true(fd >= 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

/* A port that nobody holds now (bound, then let go). */
static uint16_t free_port(void)
{
    uint16_t port;
    int fd = it_bind(SOCK_STREAM, "::", 0, &port);

    assert_true(fd >= 0);
    close(fd);
    return port;
}

static bool port_can_be_bound(uint16_t port)
{
    uint16_t got;
    int fd = it_bind(SOCK_STREAM, "::", port, &got);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* One echo round trip on an open connection. */
static bool round_trip(int fd, unsigned k)
{
    char out[MSG_LEN];

    memset(out, '.', sizeof(out));
    memcpy(out, &k, sizeof(k));
    return it_echo_round_trip(fd, out, sizeof(out), IT_IO_TIMEOUT_MS) == 0;
}

/* How many temporary files (NAME.tmp.*) are beside the file at path. */
static int tmp_files_beside(const char *path)
{
    char dir[PATH_MAX], prefix[PATH_MAX];
    const char *base = strrchr(path, '/');
    struct dirent *e;
    DIR *dp;
    int n = 0;

    assert_non_null(base);
    snprintf(dir, sizeof(dir), "%.*s", (int)(base - path), path);
    snprintf(prefix, sizeof(prefix), "%s.tmp.", base + 1);
    dp = opendir(dir);
    assert_non_null(dp);
    while ((e = readdir(dp)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(dp);
    return n;
}

static void test_config_put_bind_failure_half_way_rolls_everything_back(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t pa, pb, held, moved_to = free_port(), created_on = free_port();
    json_t *before, *after, *ra, *rb;
    char etag[64], etag_after[64], body[2048], *state_before, *state_after;
    struct answer a;
    int held_fd, conn;

    ra = it_listener_create(d, "{\"id\":\"a\",\"service\":\"echo\",\"port\":0}");
    rb = it_listener_create(d,
                            "{\"id\":\"b\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");
    pa = it_bound_port(ra);
    pb = it_bound_port(rb);
    json_decref(ra);
    json_decref(rb);
    conn = it_tcp_connect("127.0.0.1", pa, IT_IO_TIMEOUT_MS);
    assert_true(conn >= 0);
    assert_true(round_trip(conn, 0));
    before = config_get(d, etag, sizeof(etag));
    state_before = it_file_read(d->state_file, NULL);
    held_fd = hold_port(&held);

    /* a moves, b goes, c comes, then d cannot bind: its port is held outside the daemon. */
    snprintf(body, sizeof(body),
             "{\"listeners\":["
             "{\"id\":\"a\",\"service\":\"echo\",\"port\":%u},"
             "{\"id\":\"c\",\"service\":\"echo\",\"port\":%u},"
             "{\"id\":\"d\",\"service\":\"echo\",\"port\":%u}]}",
             moved_to, created_on, held);
    req(d, "PUT", "/api/v1/config", body, etag, &a);
    expect_status(&a, 409, "PUT with a port in use");
    assert_string_equal(it_json_str(a.json, "field"), "listeners[2].port");
    assert_string_equal(it_json_str(a.json, "listener"), "d");
    assert_non_null(strstr(it_json_str(a.json, "detail"), "in use"));
    answer_fini(&a);

    /* Exactly the previous state: configuration, revision, state file, sockets. */
    after = config_get(d, etag_after, sizeof(etag_after));
    assert_true(json_equal(before, after));
    assert_string_equal(etag, etag_after);
    state_after = it_file_read(d->state_file, NULL);
    assert_string_equal(state_before, state_after);
    /* The new state file, written while the listeners were bound, was dropped: nothing beside
     * the state file. */
    assert_int_equal(tmp_files_beside(d->state_file), 0);
    assert_true(round_trip(conn, 1)); /* a's connection was never closed */
    it_assert_tcp_echo("127.0.0.1", pa, "still a", 7);
    it_assert_udp_echo("127.0.0.1", pb, "still b", 7);
    assert_true(port_can_be_bound(moved_to));
    assert_true(port_can_be_bound(created_on));
    assert_int_equal(json_array_size(json_object_get(after, "listeners")), 2);
    {
        json_t *l = it_listener_get(d, "a");

        assert_string_equal(it_json_str(l, "status.state"), "running");
        assert_int_equal(it_bound_port(l), pa);
        json_decref(l);
    }

    /* Once the port is free the same change applies, all of it. */
    close(held_fd);
    req(d, "PUT", "/api/v1/config", body, etag, &a);
    expect_status(&a, 200, "PUT once the port is free");
    assert_int_equal(json_array_size(json_object_get(a.json, "listeners")), 3);
    assert_int_equal(json_array_size(json_object_get(a.json, "diff")), 4);
    assert_true(strcmp(a.etag, etag) != 0);
    answer_fini(&a);
    it_assert_tcp_echo("127.0.0.1", moved_to, "moved", 5);
    it_assert_tcp_echo("127.0.0.1", held, "d", 1);
    assert_true(round_trip(conn, 2)); /* a moved: its old connection drains, still served */
    assert_true(it_tcp_is_refused("127.0.0.1", pa));

    close(conn);
    free(state_before);
    free(state_after);
    json_decref(before);
    json_decref(after);
}

static void test_config_unchanged_listener_is_not_touched(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = it_listener_create_port(
        d, "{\"id\":\"keep\",\"service\":\"echo\",\"port\":0,\"model\":\"sequential\"}");
    json_t *cfg = config_get(d, NULL, 0), *set, *keep_before, *keep_after;
    char *text;
    struct answer a;
    int conn = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);

    assert_true(conn >= 0);
    assert_true(round_trip(conn, 0));
    keep_before = it_listener_get(d, "keep");
    /* The body of a GET, with one listener more, sent back. */
    set = json_object_get(cfg, "listeners");
    json_array_append_new(set,
                          json_pack("{s:s, s:s, s:i}", "id", "more", "service", "echo", "port", 0));
    text = json_dumps(cfg, JSON_COMPACT);
    req(d, "PUT", "/api/v1/config", text, NULL, &a);
    expect_status(&a, 200, "PUT with one more");
    assert_int_equal(json_array_size(json_object_get(a.json, "diff")), 1);
    assert_string_equal(it_json_str(json_array_get(json_object_get(a.json, "diff"), 0), "action"),
                        "create");
    answer_fini(&a);
    keep_after = it_listener_get(d, "keep");
    /* Not restarted: same since, and its one sequential connection is still served. */
    assert_string_equal(it_json_str(keep_before, "status.since"),
                        it_json_str(keep_after, "status.since"));
    assert_true(round_trip(conn, 1));

    /* The same set again is no change and no revision. */
    {
        json_int_t rev = revision_now(d);

        req(d, "PUT", "/api/v1/config", text, NULL, &a);
        expect_status(&a, 200, "PUT of the same set");
        assert_int_equal(json_array_size(json_object_get(a.json, "diff")), 0);
        answer_fini(&a);
        assert_int_equal(revision_now(d), rev);
    }
    close(conn);
    free(text);
    json_decref(cfg);
    json_decref(keep_before);
    json_decref(keep_after);
}

/*
 * Prefer: return=minimal (RFC 7240) on a whole configuration and on a restore: the answer is
 * the revision and the diff, without the listeners' resources, and says Preference-Applied;
 * the ETag is the new revision's. Without it, the resources are there.
 */
static void test_config_prefer_return_minimal_answers_revision_and_diff(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *const prefer[] = {"Prefer: handling=strict, return=minimal", NULL};
    const char *body = "{\"listeners\":[{\"id\":\"m\",\"service\":\"echo\",\"port\":0,"
                       "\"address\":\"127.0.0.1\"}]}";
    char applied[64], etag[64], want_etag[32], restore_path[64];
    json_t *j;
    struct it_http r;

    if (it_http_request(d,
                        &(struct it_req){.method = "PUT",
                                         .path = "/api/v1/config",
                                         .body = body,
                                         .body_len = strlen(body),
                                         .content_type = "application/json",
                                         .headers = prefer},
                        &r) < 0)
        fail_msg("PUT /api/v1/config: %s", r.error);
    assert_int_equal(r.status, 200);
    assert_non_null(r.json);
    assert_null(json_object_get(r.json, "listeners"));
    assert_int_equal(json_array_size(json_object_get(r.json, "diff")), 1);
    assert_string_equal(it_json_str(json_array_get(json_object_get(r.json, "diff"), 0), "action"),
                        "create");
    snprintf(want_etag, sizeof(want_etag), "\"r%lld\"", (long long)it_json_int(r.json, "revision"));
    snprintf(restore_path, sizeof(restore_path), "/api/v1/config/revisions/%lld/restore",
             (long long)it_json_int(r.json, "revision"));
    assert_non_null(it_http_header(&r, "ETag", etag, sizeof(etag)));
    assert_string_equal(etag, want_etag);
    assert_non_null(it_http_header(&r, "Preference-Applied", applied, sizeof(applied)));
    assert_string_equal(applied, "return=minimal");
    it_http_fini(&r);
    /* applied: the listener runs */
    j = it_listener_get(d, "m");
    assert_string_equal(it_json_str(j, "status.state"), "running");
    json_decref(j);

    /* A restore takes it too (of the revision just made: no change, still answered). */
    if (it_http_request(d,
                        &(struct it_req){.method = "POST",
                                         .path = restore_path,
                                         .content_type = "application/json",
                                         .headers = prefer},
                        &r) < 0)
        fail_msg("POST %s: %s", restore_path, r.error);
    assert_int_equal(r.status, 200);
    assert_null(json_object_get(r.json, "listeners"));
    assert_non_null(json_object_get(r.json, "diff"));
    assert_non_null(it_http_header(&r, "Preference-Applied", applied, sizeof(applied)));
    assert_string_equal(applied, "return=minimal");
    it_http_fini(&r);

    /* Without it: the whole set's resources, and no Preference-Applied. */
    if (it_http_request(d,
                        &(struct it_req){.method = "PUT",
                                         .path = "/api/v1/config",
                                         .body = body,
                                         .body_len = strlen(body),
                                         .content_type = "application/json"},
                        &r) < 0)
        fail_msg("PUT /api/v1/config: %s", r.error);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "listeners")), 1);
    assert_null(it_http_header(&r, "Preference-Applied", applied, sizeof(applied)));
    it_http_fini(&r);
}

static void test_config_stale_etag_gets_412_and_changes_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char etag[64], l_etag[64], body[256];
    json_t *cfg, *after;
    struct answer a;

    json_decref(it_listener_create(d, "{\"id\":\"e\",\"service\":\"echo\",\"port\":0}"));
    cfg = config_get(d, etag, sizeof(etag));
    req(d, "GET", "/api/v1/listeners/e", NULL, NULL, &a);
    expect_status(&a, 200, "GET e");
    snprintf(l_etag, sizeof(l_etag), "%s", a.etag);
    answer_fini(&a);

    /* Another writer changes e. */
    req(d, "PATCH", "/api/v1/listeners/e", "{\"workers\":2}", l_etag, &a);
    expect_status(&a, 200, "PATCH with the right ETag");
    assert_true(a.etag[0] && strcmp(a.etag, l_etag) != 0);
    answer_fini(&a);

    /* Then the first writer, with what it had read, is refused, whole set and listener. */
    snprintf(body, sizeof(body),
             "{\"listeners\":[{\"id\":\"e\",\"service\":\"echo\",\"port\":0,\"workers\":7}]}");
    req(d, "PUT", "/api/v1/config", body, etag, &a);
    expect_status(&a, 412, "PUT config with a stale ETag");
    assert_string_equal(it_json_str(a.json, "type"), "about:blank");
    /* The detail says what was asked and what is current. */
    assert_non_null(strstr(it_json_str(a.json, "detail"), etag));
    assert_non_null(strstr(it_json_str(a.json, "detail"), "read it again"));
    assert_true(a.etag[0] && strcmp(a.etag, etag) != 0); /* the current one, to read again */
    answer_fini(&a);
    req(d, "PATCH", "/api/v1/listeners/e", "{\"workers\":7}", l_etag, &a);
    expect_status(&a, 412, "PATCH with a stale ETag");
    answer_fini(&a);
    req(d, "DELETE", "/api/v1/listeners/e", NULL, l_etag, &a);
    expect_status(&a, 412, "DELETE with a stale ETag");
    answer_fini(&a);
    req(d, "POST", "/api/v1/listeners", "{\"id\":\"n\",\"service\":\"echo\",\"port\":0}", "*", &a);
    expect_status(&a, 412, "POST with If-Match: *");
    answer_fini(&a);
    after = it_listener_get(d, "e");
    assert_int_equal(it_json_int(after, "workers"), 2);
    json_decref(after);
    assert_int_equal(http_status(d, "GET", "/api/v1/listeners/n"), 404);

    /* If-Match: * on what exists passes. */
    req(d, "PATCH", "/api/v1/listeners/e", "{\"workers\":3}", "*", &a);
    expect_status(&a, 200, "PATCH with If-Match: *");
    answer_fini(&a);

    /* A list of more revisions than a precondition holds is refused as such: 400, no change. */
    req(d, "PATCH", "/api/v1/listeners/e", "{\"workers\":4}",
        "\"r1\",\"r2\",\"r3\",\"r4\",\"r5\",\"r6\",\"r7\",\"r8\",\"r9\",\"r10\",\"r11\",\"r12\","
        "\"r13\",\"r14\",\"r15\",\"r16\",\"r17\"",
        &a);
    expect_status(&a, 400, "PATCH with 17 entity tags");
    assert_non_null(strstr(it_json_str(a.json, "detail"), "If-Match"));
    answer_fini(&a);
    after = it_listener_get(d, "e");
    assert_int_equal(it_json_int(after, "workers"), 3);
    json_decref(after);
    json_decref(cfg);
}

static void test_config_dry_run_changes_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = free_port(), held;
    char etag[64], etag_after[64], body[512], *state_before, *state_after;
    json_t *before, *after, *diff;
    struct answer a;
    int held_fd;

    json_decref(it_listener_create(d, "{\"id\":\"x\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_listener_create(d, "{\"id\":\"y\",\"service\":\"echo\",\"port\":0}"));
    before = config_get(d, etag, sizeof(etag));
    state_before = it_file_read(d->state_file, NULL);

    snprintf(body, sizeof(body),
             "{\"listeners\":[{\"id\":\"x\",\"service\":\"echo\",\"port\":%u},"
             "{\"id\":\"z\",\"service\":\"echo\",\"port\":0}]}",
             port);
    req(d, "PUT", "/api/v1/config?dry_run=true", body, etag, &a);
    expect_status(&a, 200, "dry run");
    assert_true(json_is_true(json_object_get(a.json, "dry_run")));
    assert_int_equal(it_json_int(a.json, "revision"), it_json_int(before, "revision"));
    diff = json_object_get(a.json, "diff");
    assert_int_equal(json_array_size(diff), 3);
    assert_string_equal(it_json_str(json_array_get(diff, 0), "id"), "x");
    assert_string_equal(it_json_str(json_array_get(diff, 0), "action"), "change");
    assert_string_equal(it_json_str(json_array_get(diff, 0), "fields.0"), "port");
    assert_true(it_json_bool(json_array_get(diff, 0), "live"));
    assert_string_equal(it_json_str(json_array_get(diff, 1), "action"), "delete");
    assert_string_equal(it_json_str(json_array_get(diff, 2), "action"), "create");
    answer_fini(&a);

    /* Nothing happened: no z, x not moved, no revision, the state file as it was. */
    after = config_get(d, etag_after, sizeof(etag_after));
    assert_true(json_equal(before, after));
    assert_string_equal(etag, etag_after);
    state_after = it_file_read(d->state_file, NULL);
    assert_string_equal(state_before, state_after);
    assert_true(port_can_be_bound(port));
    assert_int_equal(http_status(d, "GET", "/api/v1/listeners/z"), 404);

    /* A dry run checks the ports too: a held one is the 409 the real change would get. */
    held_fd = hold_port(&held);
    snprintf(body, sizeof(body),
             "{\"listeners\":[{\"id\":\"x\",\"service\":\"echo\",\"port\":%u}]}", held);
    req(d, "PUT", "/api/v1/config?dry_run=true", body, NULL, &a);
    expect_status(&a, 409, "dry run onto a held port");
    assert_string_equal(it_json_str(a.json, "field"), "listeners[0].port");
    answer_fini(&a);
    close(held_fd);

    /* And on a single listener. */
    req(d, "PATCH", "/api/v1/listeners/y?dry_run=true", "{\"workers\":4}", NULL, &a);
    expect_status(&a, 200, "PATCH dry run");
    assert_string_equal(it_json_str(json_array_get(json_object_get(a.json, "diff"), 0), "fields.0"),
                        "workers");
    answer_fini(&a);
    req(d, "DELETE", "/api/v1/listeners/y?dry_run=true", NULL, NULL, &a);
    expect_status(&a, 200, "DELETE dry run");
    answer_fini(&a);
    after = (json_decref(after), it_listener_get(d, "y"));
    assert_int_equal(it_json_int(after, "workers"), 1);
    assert_string_equal(it_json_str(after, "status.state"), "running");

    free(state_before);
    free(state_after);
    json_decref(before);
    json_decref(after);
}

static void test_config_revisions_listed_and_restored(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_int_t r1, r2, r3;
    json_t *set1, *now, *list, *rev;
    char path[128];
    struct answer a;

    json_decref(it_listener_create(d, "{\"id\":\"p\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_listener_create(
        d, "{\"id\":\"q\",\"service\":\"date\",\"transport\":\"udp\",\"port\":0}"));
    set1 = config_get(d, NULL, 0);
    r1 = it_json_int(set1, "revision");
    json_decref(it_http_expect(d, "PATCH", "/api/v1/listeners/p", "{\"workers\":5}", 200));
    json_decref(it_http_expect(d, "DELETE", "/api/v1/listeners/q", NULL, 204));
    r2 = revision_now(d);
    assert_int_equal(r2, r1 + 2);

    req(d, "GET", "/api/v1/config/revisions?limit=2", NULL, NULL, &a);
    expect_status(&a, 200, "revisions");
    list = json_object_get(a.json, "revisions");
    assert_int_equal(json_array_size(list), 2);
    assert_int_equal(it_json_int(json_array_get(list, 0), "revision"), r2);
    assert_string_equal(it_json_str(json_array_get(list, 0), "source"), "api: delete listener q");
    assert_string_equal(it_json_str(json_array_get(list, 0), "origin.interface"), "api");
    assert_string_equal(it_json_str(json_array_get(list, 0), "origin.action"), "delete");
    assert_string_equal(it_json_str(json_array_get(list, 0), "origin.listener"), "q");
    assert_string_equal(it_json_str(json_array_get(list, 0), "summary"), "deleted q");
    assert_string_equal(it_json_str(json_array_get(list, 1), "summary"), "changed p (workers)");
    answer_fini(&a);

    snprintf(path, sizeof(path), "/api/v1/config/revisions/%lld", (long long)r1);
    rev = it_http_expect(d, "GET", path, NULL, 200);
    assert_true(json_equal(json_object_get(rev, "listeners"), json_object_get(set1, "listeners")));
    json_decref(rev);

    /* Back to r1, as a new revision: q again, p with 1 worker. */
    snprintf(path, sizeof(path), "/api/v1/config/revisions/%lld/restore", (long long)r1);
    req(d, "POST", path, NULL, NULL, &a);
    expect_status(&a, 200, "restore");
    r3 = it_json_int(a.json, "revision");
    assert_int_equal(r3, r2 + 1);
    answer_fini(&a);
    now = config_get(d, NULL, 0);
    assert_true(json_equal(json_object_get(now, "listeners"), json_object_get(set1, "listeners")));
    json_decref(now);
    now = it_listener_get(d, "q");
    assert_string_equal(it_json_str(now, "status.state"), "running");
    json_decref(now);
    req(d, "GET", "/api/v1/config/revisions?limit=1", NULL, NULL, &a);
    {
        char want[64];

        json_t *newest = json_array_get(json_object_get(a.json, "revisions"), 0);

        snprintf(want, sizeof(want), "api: restore of revision %lld", (long long)r1);
        assert_string_equal(it_json_str(newest, "source"), want);
        assert_string_equal(it_json_str(newest, "origin.action"), "restore");
        assert_int_equal(it_json_int(newest, "origin.restored"), r1);
    }
    answer_fini(&a);

    /* A revision that is not kept is 404. */
    assert_int_equal(http_status(d, "POST", "/api/v1/config/revisions/999999/restore"), 404);

    /* The history outlives a restart. */
    {
        int status;
        int64_t ms;

        assert_int_equal(it_daemon_stop(d, SIGTERM, 5000, &status, &ms), 0);
        assert_true(it_status_is_exit0(status));
    }
    it_daemon_start_ok(d, &(struct it_daemon_opts){.dir = ((struct it_fixture *)*state)->dir});
    assert_int_equal(revision_now(d), r3);
    req(d, "GET", "/api/v1/config/revisions?limit=100", NULL, NULL, &a);
    assert_true(json_array_size(json_object_get(a.json, "revisions")) >= 4);
    answer_fini(&a);
    json_decref(set1);
}

struct client {
    uint16_t port;
    atomic_bool *stop;
    atomic_uint done;
    atomic_uint failed;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    int fd = it_tcp_connect("127.0.0.1", c->port, IT_IO_TIMEOUT_MS);

    if (fd < 0) {
        atomic_fetch_add(&c->failed, 1);
        return NULL;
    }
    for (unsigned k = 0; !atomic_load(c->stop); k++) {
        if (!round_trip(fd, k)) {
            atomic_fetch_add(&c->failed, 1);
            break;
        }
        atomic_fetch_add(&c->done, 1);
    }
    close(fd);
    return NULL;
}

static bool clients_progressed(void *arg)
{
    struct client *c = arg;

    for (int i = 0; i < 4; i++)
        if (atomic_load(&c[i].done) < 20)
            return false;
    return true;
}

struct drained_arg {
    const struct it_daemon *d;
};

static bool drain_is_over(void *arg)
{
    struct drained_arg *a = arg;
    json_t *l = it_listener_get(a->d, "mv");
    bool over = json_array_size(it_json_path(l, "status.draining")) == 0;

    json_decref(l);
    return over;
}

static void test_config_port_change_under_load_no_failed_round_trip(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t old_port, new_port = free_port();
    struct client c[4];
    pthread_t t[4];
    atomic_bool stop = false;
    char body[256];
    json_t *l;
    unsigned failed = 0, at_change[4];

    old_port = it_listener_create_port(d, "{\"id\":\"mv\",\"service\":\"echo\",\"port\":0,"
                                          "\"drain_timeout_ms\":20000}");
    for (int i = 0; i < 4; i++) {
        c[i] = (struct client){.port = old_port, .stop = &stop};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
    }
    if (!it_wait_until(IT_WAIT_MS, clients_progressed, c))
        fail_msg("the echo clients made no progress");

    snprintf(body, sizeof(body), "{\"port\":%u}", new_port);
    json_decref(it_http_expect(d, "PATCH", "/api/v1/listeners/mv", body, 200));
    for (int i = 0; i < 4; i++)
        at_change[i] = atomic_load(&c[i].done);

    /* The new port serves at once, the old one refuses new connections, the old ones go on
     * and the drain shows in the status. */
    it_assert_tcp_echo("127.0.0.1", new_port, "new", 3);
    assert_true(it_tcp_is_refused("127.0.0.1", old_port));
    l = it_listener_get(d, "mv");
    assert_int_equal(it_bound_port(l), new_port);
    assert_int_equal(json_array_size(it_json_path(l, "status.draining")), 1);
    json_decref(l);
    for (int i = 0; i < 4; i++) {
        struct client *ci = &c[i];
        int64_t deadline = it_now_ms() + IT_WAIT_MS;

        while (atomic_load(&ci->done) < at_change[i] + 20 && it_now_ms() < deadline &&
               !atomic_load(&ci->failed))
            usleep(1000);
        assert_true(atomic_load(&ci->done) >= at_change[i] + 20);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        failed += atomic_load(&c[i].failed);
    }
    assert_int_equal(failed, 0);

    /* Once its last client is gone the drain ends, long before its deadline. */
    if (!it_wait_until(IT_WAIT_MS, drain_is_over, &(struct drained_arg){.d = d}))
        fail_msg("the old socket's runner still drains after its clients left");
}

#define MANY 250

/*
 * n distinct TCP ports free now (bound all at once, then let go), below the kernel's range of
 * ephemeral ports, so that the sockets other programs bind to port 0 or connect from do not
 * take them meanwhile.
 */
static void free_ports(uint16_t *ret, size_t n)
{
    int fds[MANY];
    size_t got = 0;
    uint16_t port = (uint16_t)(10000 + (unsigned)(it_now_ms() % 16) * 1000);

    assert_true(n <= MANY);
    for (; got < n && port < 30000; port++) {
        uint16_t p;
        int fd = it_bind(SOCK_STREAM, "127.0.0.1", port, &p);

        if (fd < 0)
            continue;
        fds[got] = fd;
        ret[got++] = p;
    }
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* PUT /api/v1/config of MANY echo listeners m0..m249 (model event) on ports. Returns its
 * status, and its diff in *ret_diff (new reference) when 200. */
static long put_many(const struct it_daemon *d, const uint16_t *ports, json_t **ret_diff)
{
    json_t *list = json_array(), *body;
    struct answer a;
    char *text;
    long status;

    for (size_t i = 0; i < MANY; i++) {
        char id[16];

        snprintf(id, sizeof(id), "m%zu", i);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:i, s:s, s:i}", "id", id, "service",
                                              "echo", "address", "127.0.0.1", "port", (int)ports[i],
                                              "model", "event", "drain_timeout_ms", 20000));
    }
    body = json_pack("{s:o}", "listeners", list);
    text = json_dumps(body, JSON_COMPACT);
    req(d, "PUT", "/api/v1/config", text, NULL, &a);
    status = a.status;
    if (status != 409)
        expect_status(&a, 200, "PUT /api/v1/config of 250 listeners");
    if (status == 200 && ret_diff)
        *ret_diff = json_incref(json_object_get(a.json, "diff"));
    answer_fini(&a);
    free(text);
    json_decref(body);
    return status;
}

/* put_many() on free ports (into ports), again on others when one of them was taken
 * meanwhile (409: nothing changed). */
static void put_many_free(const struct it_daemon *d, uint16_t *ports, json_t **ret_diff)
{
    for (int tries = 0; tries < 5; tries++) {
        free_ports(ports, MANY);
        if (put_many(d, ports, ret_diff) == 200)
            return;
    }
    fail_msg("PUT /api/v1/config of 250 listeners: a port in use five times over");
}

static void echo_line(int fd, const char *line)
{
    char buf[32];
    size_t len = strlen(line);

    assert_int_equal(it_send_all(fd, line, len, IT_WAIT_MS), 0);
    assert_int_equal(it_recv_exact(fd, buf, len, IT_WAIT_MS), 0);
    assert_memory_equal(buf, line, len);
}

static bool many_drains_over(void *arg)
{
    const struct it_daemon *d = arg;
    json_t *list = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200);
    json_t *l;
    size_t i;
    bool over = true;

    json_array_foreach(it_json_path(list, "listeners"), i, l) over =
        over && json_array_size(it_json_path(l, "status.draining")) == 0;
    json_decref(list);
    return over;
}

/*
 * One PUT moves 250 listeners to 250 new ports: every new port answers, every old one
 * refuses, a connection established before the change goes on with the old runner (counted in
 * status.draining) until it ends, and the move logs no accept() failure.
 */
static void test_config_move_of_250_listeners_keeps_connections(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t before[MANY], after[MANY];
    json_t *diff, *e, *l;
    char *log;
    size_t i;
    int fd;

    put_many_free(d, before, NULL);
    fd = it_tcp_connect("127.0.0.1", before[7], IT_WAIT_MS);
    assert_true(fd >= 0);
    echo_line(fd, "before\n");

    put_many_free(d, after, &diff);
    assert_int_equal(json_array_size(diff), MANY);
    json_array_foreach(diff, i, e)
    {
        assert_string_equal(it_json_str(e, "action"), "change");
        assert_true(it_json_bool(e, "live"));
    }
    json_decref(diff);

    /* The connection made before goes on, served by the old runner, and is counted. */
    echo_line(fd, "after\n");
    l = it_listener_get(d, "m7");
    assert_int_equal(it_bound_port(l), after[7]);
    assert_int_equal(json_array_size(it_json_path(l, "status.draining")), 1);
    assert_int_equal(
        it_json_int(json_array_get(it_json_path(l, "status.draining"), 0), "connections"), 1);
    json_decref(l);
    for (i = 0; i < MANY; i++) {
        char msg[16];
        int len = snprintf(msg, sizeof(msg), "p%zu\n", i);

        it_assert_tcp_echo("127.0.0.1", after[i], msg, (size_t)len);
    }
    for (i = 0; i < MANY; i += 25)
        assert_true(it_tcp_is_refused("127.0.0.1", before[i]));
    echo_line(fd, "still\n");
    close(fd);

    /* With its last connection gone, every old runner is reaped, long before its deadline. */
    if (!it_wait_until(IT_WAIT_MS, many_drains_over, d))
        fail_msg("old runners still drain after their connections ended");
    log = it_daemon_stderr(d);
    if (strstr(log, "accept:"))
        fail_msg("the move logged accept() failures:\n%.2000s", strstr(log, "accept:"));
    free(log);
}

/* ---- the command line ---- */

static int ctl(const struct it_daemon *d, const char *const *args, const char *in,
               struct it_proc *ret)
{
    const char *argv[32] = {it_bin(), "ctl", "--api", d->url};
    size_t n = 4;

    for (; *args; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    it_run(argv, in, in ? strlen(in) : 0, 20000, ret);
    return it_proc_exit_code(ret);
}

static void test_config_ctl_verbs_and_exit_codes(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_fixture *f = *state;
    char file[600], set[512];
    uint16_t held;
    struct it_proc p;
    json_t *j;
    int held_fd;

    snprintf(file, sizeof(file), "%s/set.json", f->dir);
    snprintf(set, sizeof(set),
             "{\"listeners\":[{\"id\":\"s1\",\"service\":\"echo\",\"port\":0},"
             "{\"id\":\"s2\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}]}");
    assert_int_equal(it_file_write(file, set, strlen(set)), 0);

    /* diff and a dry run change nothing. */
    assert_int_equal(ctl(d, (const char *[]){"diff", "-f", file, NULL}, NULL, &p), 0);
    assert_non_null(strstr(p.out, "s1"));
    it_proc_fini(&p);
    assert_int_equal(
        ctl(d, (const char *[]){"--json", "apply", "-f", file, "--dry-run", NULL}, NULL, &p), 0);
    j = json_loads(p.out, 0, NULL);
    assert_true(json_is_true(json_object_get(j, "dry_run")));
    json_decref(j);
    it_proc_fini(&p);
    assert_int_equal(http_status(d, "GET", "/api/v1/listeners/s1"), 404);

    /* apply from standard input, then wait for it. */
    assert_int_equal(ctl(d, (const char *[]){"apply", "-f", "-", NULL}, set, &p), 0);
    assert_non_null(strstr(p.out, "revision"));
    it_proc_fini(&p);
    assert_int_equal(
        ctl(d, (const char *[]){"wait", "s1", "--state", "running", "--timeout", "5s", NULL}, NULL,
            &p),
        0);
    it_proc_fini(&p);
    assert_int_equal(ctl(d, (const char *[]){"--json", "ls", NULL}, NULL, &p), 0);
    j = json_loads(p.out, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "listeners")), 2);
    json_decref(j);
    it_proc_fini(&p);

    /* Exit codes: 4 not found, 3 a stale ETag or a port in use, 2 usage, 1 a refused field. */
    assert_int_equal(ctl(d, (const char *[]){"get", "nope", NULL}, NULL, &p), 4);
    assert_non_null(strstr(p.err, "nope"));
    it_proc_fini(&p);
    assert_int_equal(ctl(d, (const char *[]){"patch", "s1", "--set", "workers=2", NULL}, NULL, &p),
                     0);
    it_proc_fini(&p);
    /* s1 was created at revision 1 and changed since */
    assert_int_equal(
        ctl(d, (const char *[]){"patch", "s1", "--set", "workers=3", "--if-match", "r1", NULL},
            NULL, &p),
        3);
    assert_non_null(strstr(p.err, "r1"));
    it_proc_fini(&p);
    held_fd = hold_port(&held);
    {
        char kv[32];

        snprintf(kv, sizeof(kv), "port=%u", held);
        assert_int_equal(ctl(d, (const char *[]){"patch", "s1", "--set", kv, NULL}, NULL, &p), 3);
        it_proc_fini(&p);
    }
    close(held_fd);
    assert_int_equal(ctl(d, (const char *[]){"patch", "s1", "--set", "workers=0", NULL}, NULL, &p),
                     1);
    assert_non_null(strstr(p.err, "workers"));
    it_proc_fini(&p);
    assert_int_equal(ctl(d, (const char *[]){"frobnicate", NULL}, NULL, &p), 2);
    it_proc_fini(&p);
    assert_int_equal(ctl(d, (const char *[]){"restore", "999999", NULL}, NULL, &p), 4);
    it_proc_fini(&p);

    /* --prune makes the set exactly the file's. */
    snprintf(set, sizeof(set), "[{\"id\":\"s1\",\"service\":\"echo\",\"port\":0}]");
    assert_int_equal(it_file_write(file, set, strlen(set)), 0);
    assert_int_equal(ctl(d, (const char *[]){"apply", "-f", file, "--prune", NULL}, NULL, &p), 0);
    it_proc_fini(&p);
    assert_int_equal(http_status(d, "GET", "/api/v1/listeners/s2"), 404);

    /* revisions and restore. */
    assert_int_equal(ctl(d, (const char *[]){"--json", "revisions", NULL}, NULL, &p), 0);
    j = json_loads(p.out, 0, NULL);
    assert_true(json_array_size(json_object_get(j, "revisions")) >= 2);
    {
        json_t *prev = json_array_get(json_object_get(j, "revisions"), 1);
        char n[32];

        snprintf(n, sizeof(n), "%lld", (long long)it_json_int(prev, "revision"));
        json_decref(j);
        it_proc_fini(&p);
        assert_int_equal(ctl(d, (const char *[]){"restore", n, NULL}, NULL, &p), 0);
        it_proc_fini(&p);
    }
    assert_int_equal(http_status(d, "GET", "/api/v1/listeners/s2"), 200);
}

/* What `ctl watch` wrote so far holds every one of want (NULL-ended). */
struct watch_out {
    const char *path;
    const char *const *want;
};

static bool watch_shows(void *arg)
{
    const struct watch_out *w = arg;
    char *text = it_file_read(w->path, NULL);
    bool all = text != NULL;

    for (const char *const *p = w->want; all && *p; p++)
        all = strstr(text, *p) != NULL;
    free(text);
    return all;
}

static void test_config_ctl_watch_recent_shows_what_happened_then_follows(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_fixture *f = *state;
    static const char *const before[] = {"listener.created w1", "listener.deleted w1", NULL};
    static const char *const after[] = {"listener.created w2", NULL};
    char out[600];
    struct watch_out w = {.path = out};
    struct it_proc p;
    int fd, status;
    char *text;
    pid_t pid;

    json_decref(it_listener_create(d, "{\"id\":\"w1\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_http_expect(d, "DELETE", "/api/v1/listeners/w1", NULL, 204));
    snprintf(out, sizeof(out), "%s/watch.out", f->dir);
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        execl(it_bin(), it_bin(), "ctl", "--api", d->url, "watch", "--recent", "10", (char *)NULL);
        _exit(127);
    }
    close(fd);
    /* What happened before it started, oldest first, then what happens now. */
    w.want = before;
    assert_true(it_wait_until(IT_WAIT_MS, watch_shows, &w));
    json_decref(it_listener_create(d, "{\"id\":\"w2\",\"service\":\"echo\",\"port\":0}"));
    w.want = after;
    assert_true(it_wait_until(IT_WAIT_MS, watch_shows, &w));
    kill(pid, SIGTERM);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    text = it_file_read(out, NULL);
    assert_non_null(text);
    assert_true(strstr(text, "listener.created w1") < strstr(text, "listener.deleted w1"));
    assert_null(strstr(text, "snapshot"));
    free(text);

    assert_int_equal(ctl(d, (const char *[]){"watch", "--recent", "0", NULL}, NULL, &p), 2);
    it_proc_fini(&p);
    assert_int_equal(
        ctl(d, (const char *[]){"watch", "--recent", "1", "--since", "5", NULL}, NULL, &p), 2);
    it_proc_fini(&p);
}

static void test_config_ctl_files_download_verified_and_atomic(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_fixture *f = *state;
    static const char content[] = "kept by the backup listener\n";
    char hdr[64], out[600], *got, *reply = NULL;
    size_t reply_len = 0, got_len = 0;
    uint16_t port = it_listener_create_port(d, "{\"id\":\"bk\",\"service\":\"backup\",\"port\":0}");
    struct it_proc p;
    int fd;

    /* The lecture's flow with a size: PUT, OK, content, STORED. */
    fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
    assert_true(fd >= 0);
    snprintf(hdr, sizeof(hdr), "PUT notes.txt %zu\n", sizeof(content) - 1);
    assert_int_equal(it_send_all(fd, hdr, strlen(hdr), IT_IO_TIMEOUT_MS), 0);
    assert_int_equal(it_send_all(fd, content, sizeof(content) - 1, IT_IO_TIMEOUT_MS), 0);
    assert_int_equal(it_send_all(fd, "QUIT\n", 5, IT_IO_TIMEOUT_MS), 0);
    assert_int_equal(it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &reply, &reply_len), 0);
    assert_non_null(strstr(reply, "STORED notes.txt 1 "));
    free(reply);
    close(fd);

    snprintf(out, sizeof(out), "%s/notes.copy", f->dir);
    assert_int_equal(
        ctl(d, (const char *[]){"files", "bk", "notes.txt", "-o", out, NULL}, NULL, &p), 0);
    assert_non_null(strstr(p.out, "verified"));
    it_proc_fini(&p);
    got = it_file_read(out, &got_len);
    assert_int_equal(got_len, sizeof(content) - 1);
    assert_memory_equal(got, content, got_len);
    free(got);
    /* No such file: 4, and nothing written. */
    snprintf(out, sizeof(out), "%s/none", f->dir);
    assert_int_equal(ctl(d, (const char *[]){"files", "bk", "nope.txt", "-o", out, NULL}, NULL, &p),
                     4);
    it_proc_fini(&p);
    assert_null(it_file_read(out, NULL));
}

/* ---- a history that cannot go back ---- */

/* GET /api/v1/health's "history" member: its status, and its problem into buf ("" if none). */
static void history_health(const struct it_daemon *d, char *status, char *problem, size_t cap)
{
    json_t *h = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);
    const char *p = json_string_value(it_json_path(h, "history.problem"));

    snprintf(status, cap, "%s", it_json_str(h, "history.status"));
    snprintf(problem, cap, "%s", p ? p : "");
    json_decref(h);
}

static void restart(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    int status;
    int64_t ms;

    assert_int_equal(it_daemon_stop(d, SIGTERM, 5000, &status, &ms), 0);
    assert_true(it_status_is_exit0(status));
    it_daemon_start_ok(d, &(struct it_daemon_opts){.dir = ((struct it_fixture *)*state)->dir});
}

/* Creates listener id (a TCP echo on port 0): one revision. */
static void create_echo(const struct it_daemon *d, const char *id)
{
    char body[128];

    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"service\":\"echo\",\"port\":0}", id);
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners", body, 201));
}

static void test_config_never_configured_has_etag_r0(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *body = "{\"listeners\":[{\"id\":\"e\",\"service\":\"echo\",\"port\":0}]}";
    char etag[64];
    struct answer a;
    json_t *c = config_get(d, etag, sizeof(etag));

    assert_int_equal(it_json_int(c, "revision"), 0);
    assert_string_equal(etag, "\"r0\"");
    json_decref(c);
    /* The first conditional write can be made... */
    req(d, "PUT", "/api/v1/config", body, "\"r0\"", &a);
    expect_status(&a, 200, "PUT config If-Match r0 on a daemon never configured");
    assert_string_equal(a.etag, "\"r1\"");
    answer_fini(&a);
    /* ...once: r0 is stale now, and the 412 says what is current. */
    req(d, "PUT", "/api/v1/config", "{\"listeners\":[]}", "\"r0\"", &a);
    expect_status(&a, 412, "PUT config with the stale r0");
    assert_string_equal(a.etag, "\"r1\"");
    answer_fini(&a);
    assert_int_equal(revision_now(d), 1);
}

static void test_config_emptied_history_never_reuses_a_revision(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char path[IT_PATH_MAX + 32], status[256], problem[256], etag[64];
    struct answer a;
    json_t *c;

    snprintf(path, sizeof(path), "%s/revisions.jsonl", d->state_dir);
    create_echo(d, "a");
    create_echo(d, "b");
    create_echo(d, "c");
    assert_int_equal(revision_now(d), 3);
    /* A clean restart: the history is whole. */
    restart(state);
    history_health(d, status, problem, sizeof(status));
    assert_string_equal(status, "ok");
    assert_string_equal(problem, "");
    assert_int_equal(revision_now(d), 3);

    /* Emptied: the numbers go on from the state file's, an old ETag never matches again. */
    assert_int_equal(it_file_write(path, "", 0), 0);
    restart(state);
    c = config_get(d, etag, sizeof(etag));
    assert_int_equal(it_json_int(c, "revision"), 3);
    assert_int_equal(json_array_size(json_object_get(c, "listeners")), 3);
    json_decref(c);
    assert_string_equal(etag, "\"r3\"");
    history_health(d, status, problem, sizeof(status));
    assert_string_equal(status, "damaged");
    assert_non_null(strstr(problem, "revisions.jsonl"));
    req(d, "PUT", "/api/v1/config", "{\"listeners\":[]}", "\"r1\"", &a);
    expect_status(&a, 412, "PUT config with r1 after the history was emptied");
    answer_fini(&a);
    create_echo(d, "d");
    assert_int_equal(revision_now(d), 4);

    /* Removed altogether: likewise. */
    assert_int_equal(unlink(path), 0);
    restart(state);
    assert_int_equal(revision_now(d), 4);
    history_health(d, status, problem, sizeof(status));
    assert_string_equal(status, "damaged");
    create_echo(d, "e");
    assert_int_equal(revision_now(d), 5);
    {
        char *log = it_daemon_stderr(d);

        assert_non_null(strstr(log, "history of revisions damaged"));
        free(log);
    }
}

static void test_config_damaged_history_is_reported(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char path[IT_PATH_MAX + 32], status[256], problem[256];
    size_t len = 0;
    char *text, *damaged;

    snprintf(path, sizeof(path), "%s/revisions.jsonl", d->state_dir);
    create_echo(d, "a");
    create_echo(d, "b");

    /* A last line cut short (a crash mid-append): dropped, and said. */
    text = it_file_read(path, &len);
    assert_non_null(text);
    assert_true(asprintf(&damaged, "%s{\"version\":1,\"revision\":3,\"ti", text) > 0);
    assert_int_equal(it_file_write(path, damaged, strlen(damaged)), 0);
    free(damaged);
    restart(state);
    history_health(d, status, problem, sizeof(status));
    assert_string_equal(status, "damaged");
    assert_non_null(strstr(problem, "line 3"));
    assert_int_equal(revision_now(d), 2);

    /* A line of garbage before the others: the history before it is lost, said, and the
     * numbers still go on. */
    assert_true(asprintf(&damaged, "garbage\n%s", text) > 0);
    assert_int_equal(it_file_write(path, damaged, strlen(damaged)), 0);
    free(damaged);
    free(text);
    restart(state);
    history_health(d, status, problem, sizeof(status));
    assert_string_equal(status, "damaged");
    assert_non_null(strstr(problem, "line 1 is not a revision"));
    assert_true(revision_now(d) >= 2);
    create_echo(d, "c");
    assert_true(revision_now(d) >= 3);
}

/* ---- the state directory cannot be written ---- */

/* The test's small file system for the state directory (tmpfs, 256 KiB). */
static char *small_state_dir(const struct it_fixture *f)
{
    char *dir = NULL;

    assert_true(asprintf(&dir, "%s/small", f->dir) > 0);
    assert_int_equal(mkdir(dir, 0700), 0);
    if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,mode=0700") < 0)
        fail_msg("mount tmpfs on %s: %s (the test needs root)", dir, strerror(errno));
    return dir;
}

/* Fills the file system of dir with file dir/filler until it is full. */
static void fill(const char *dir)
{
    static const char chunk[16384];
    char path[IT_PATH_MAX];
    int fd;

    snprintf(path, sizeof(path), "%s/filler", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    for (;;) {
        ssize_t n = write(fd, chunk, sizeof(chunk));

        if (n < 0) {
            assert_int_equal(errno, ENOSPC);
            break;
        }
    }
    close(fd);
}

/* Asserts a problem with status whose detail holds want. */
static void expect_problem(const struct answer *a, long status, const char *want, const char *what)
{
    const char *detail = json_string_value(json_object_get(a->json, "detail"));

    expect_status(a, status, what);
    assert_int_equal(json_integer_value(json_object_get(a->json, "status")), status);
    if (!detail || !strstr(detail, want))
        fail_msg("%s: detail '%s' lacks '%s'", what, detail ? detail : "-", want);
}

static void test_config_full_disk_is_507_read_only_500_and_nothing_changes(void **state)
{
    struct it_fixture *f = *state;
    struct it_daemon *d = &f->d;
    char *dir = small_state_dir(f), *before, *after, path[IT_PATH_MAX];
    size_t len_before = 0, len_after = 0;
    struct answer a;
    json_t *j;

    it_daemon_start_ok(d, &(struct it_daemon_opts){.dir = f->dir, .state_dir = dir});
    create_echo(d, "a");
    before = it_file_read(d->state_file, &len_before);
    assert_non_null(before);

    /* A full disk: 507, with the reason; nothing created, the state file as it was. */
    fill(dir);
    req(d, "POST", "/api/v1/listeners", "{\"id\":\"b\",\"service\":\"echo\",\"port\":0}", NULL, &a);
    expect_problem(&a, 507, "No space left on device", "POST on a full disk");
    assert_non_null(strstr(json_string_value(json_object_get(a.json, "detail")), "listeners.json"));
    answer_fini(&a);
    req(d, "PUT", "/api/v1/config", "{\"listeners\":[]}", NULL, &a);
    expect_problem(&a, 507, "No space left on device", "PUT config on a full disk");
    answer_fini(&a);
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/b", NULL, 404));
    j = it_listener_get(d, "a");
    assert_string_equal(it_json_str(j, "status.state"), "running");
    json_decref(j);
    assert_int_equal(revision_now(d), 1);
    after = it_file_read(d->state_file, &len_after);
    assert_non_null(after);
    assert_int_equal(len_after, len_before);
    assert_memory_equal(after, before, len_before);
    free(after);

    /* Read-only: the daemon's fault, 500 with the reason. */
    snprintf(path, sizeof(path), "%s/filler", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
    req(d, "POST", "/api/v1/listeners", "{\"id\":\"b\",\"service\":\"echo\",\"port\":0}", NULL, &a);
    expect_problem(&a, 500, "Read-only file system", "POST on a read-only state directory");
    answer_fini(&a);
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/b", NULL, 404));

    /* Room again: the same change goes through. */
    assert_int_equal(mount(NULL, dir, NULL, MS_REMOUNT, NULL), 0);
    create_echo(d, "b");
    assert_int_equal(revision_now(d), 2);

    {
        int status;
        int64_t ms;

        assert_int_equal(it_daemon_stop(d, SIGTERM, 5000, &status, &ms), 0);
        assert_true(it_status_is_exit0(status));
    }
    assert_int_equal(umount2(dir, 0), 0);
    free(before);
    free(dir);
}

/* Unmounts the small file system even when the test failed half-way, then as usual. */
static int teardown_small(void **state)
{
    struct it_fixture *f = *state;
    char dir[IT_PATH_MAX];

    it_daemon_kill(&f->d);
    snprintf(dir, sizeof(dir), "%s/small", f->dir);
    (void)umount2(dir, MNT_DETACH);
    return it_fixture_teardown(state);
}

/* The set of n echo listeners q0.. under model, with max_connections max, as a PUT body. */
static void quiet_set(char *body, size_t cap, const char *model, unsigned n, unsigned max)
{
    size_t len = (size_t)snprintf(body, cap, "{\"listeners\":[");

    for (unsigned i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"id\":\"q%u\",\"service\":\"echo\",\"transport\":\"tcp\","
                                "\"address\":\"127.0.0.1\",\"port\":0,\"model\":\"%s\","
                                "\"workers\":2,\"max_connections\":%u}",
                                i ? "," : "", i, model, max);
    snprintf(body + len, cap - len, "]}");
}

/*
 * A live change answers once none of the runners it replaced may accept a connection any more,
 * under every TCP model: a connection that comes after the answer is the new runner's, under
 * the new configuration. Under sequential and pool every worker is busy serving a connection
 * meanwhile: one that serves accepts nothing, and the change does not wait for it.
 */
static void test_config_live_change_answers_once_replaced_runners_accept_no_more(void **state)
{
    static const char *const models[] = {"sequential", "thread", "pool",
                                         "event",      "uring",  "process"};
    enum { N = 12, HELD = 2 };
    struct it_daemon *d = it_daemon_of(state);
    char body[N * 192 + 64];

    for (size_t m = 0; m < sizeof(models) / sizeof(models[0]); m++) {
        bool busy = strcmp(models[m], "sequential") == 0 || strcmp(models[m], "pool") == 0;
        int held[N][HELD];
        uint16_t port[N];
        json_t *j, *list;

        quiet_set(body, sizeof(body), models[m], N, 100);
        j = it_http_expect(d, "PUT", "/api/v1/config", body, 200);
        list = json_object_get(j, "listeners");
        assert_int_equal(json_array_size(list), N);
        for (unsigned i = 0; i < N; i++) {
            port[i] = it_bound_port(json_array_get(list, i));
            for (unsigned k = 0; k < HELD; k++) {
                held[i][k] = -1;
                if (!busy || (k > 0 && strcmp(models[m], "sequential") == 0))
                    continue;
                /* An answered line: a worker serves this connection. */
                held[i][k] = it_tcp_connect("127.0.0.1", port[i], IT_IO_TIMEOUT_MS);
                assert_true(held[i][k] >= 0);
                it_send_str_ok(held[i][k], "hold\n");
                it_expect_line(held[i][k], "hold");
            }
        }
        json_decref(j);

        quiet_set(body, sizeof(body), models[m], N, 101);
        j = it_http_expect(d, "PUT", "/api/v1/config", body, 200);
        list = json_object_get(j, "listeners");
        for (unsigned i = 0; i < N; i++) {
            json_t *l = json_array_get(list, i), *dr = it_json_path(l, "status.draining");

            assert_int_equal(it_json_int(l, "max_connections"), 101);
            assert_int_equal(json_array_size(dr), 1);
            if (!json_is_false(json_object_get(json_array_get(dr, 0), "accepting")))
                fail_msg("%s: q%u's replaced runner still accepts after the answer", models[m], i);
        }
        json_decref(j);
        for (unsigned i = 0; i < N; i++) {
            it_assert_tcp_echo("127.0.0.1", port[i], "new\n", 4);
            for (unsigned k = 0; k < HELD; k++)
                if (held[i][k] >= 0)
                    close(held[i][k]);
        }
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_config_put_bind_failure_half_way_rolls_everything_back),
        T(test_config_unchanged_listener_is_not_touched),
        T(test_config_live_change_answers_once_replaced_runners_accept_no_more),
        T(test_config_prefer_return_minimal_answers_revision_and_diff),
        T(test_config_stale_etag_gets_412_and_changes_nothing),
        T(test_config_dry_run_changes_nothing),
        T(test_config_revisions_listed_and_restored),
        T(test_config_port_change_under_load_no_failed_round_trip),
        T(test_config_move_of_250_listeners_keeps_connections),
        T(test_config_ctl_verbs_and_exit_codes),
        T(test_config_ctl_watch_recent_shows_what_happened_then_follows),
        T(test_config_ctl_files_download_verified_and_atomic),
        T(test_config_never_configured_has_etag_r0),
        T(test_config_emptied_history_never_reuses_a_revision),
        T(test_config_damaged_history_is_reported),
        cmocka_unit_test_setup_teardown(
            test_config_full_disk_is_507_read_only_500_and_nothing_changes, it_fixture_setup_dir,
            teardown_small),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
