/*
 * The files routes of the REST API over real HTTP: GET /api/v1/listeners/{id}/files and
 * GET|HEAD /api/v1/listeners/{id}/files/{name}[?version=N]. Files are stored with the
 * `sockserv backup put` command and downloaded through the API; what is checked is the HTTP
 * shape: bodies byte for byte, the download headers, and every refusal.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define CLI_TIMEOUT_MS 30000

/* ---- HTTP with every header kept ---- */

/* method (GET or HEAD) of path; asserts that an answer came. Release with it_http_fini(). */
static void request(const struct it_daemon *d, const char *method, const char *path,
                    struct it_http *r)
{
    if (it_http_request(d, &(struct it_req){.method = method, .path = path}, r) < 0)
        fail_msg("%s %s: no answer (%s)", method, path, r->error);
}

/* Asserts r is a problem+json with status and field (NULL: none), whose detail says
 * detail_part (NULL: anything). */
static void assert_problem(const struct it_http *r, long status, const char *field,
                           const char *detail_part)
{
    it_assert_problem(r, status, field);
    if (!field)
        assert_null(json_object_get(r->json, "field"));
    if (detail_part && !strstr(it_json_str(r->json, "detail"), detail_part))
        fail_msg("detail '%s' does not say '%s'", it_json_str(r->json, "detail"), detail_part);
}

/* ---- storing files with the command line ---- */

/* A backup listener on 127.0.0.1, port 0; returns its port. */
static uint16_t backup_listener(const struct it_daemon *d, const char *id)
{
    char body[256];

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0}", id);
    return it_listener_create_port(d, body);
}

/* Stores content as name with `sockserv backup put`; asserts it exits 0. */
static void put(void **state, uint16_t port, const char *name, const void *content, size_t len)
{
    char src[IT_PATH_MAX], ps[8];
    struct it_proc p;

    snprintf(src, sizeof(src), "%s/upload", ((struct it_fixture *)*state)->dir);
    snprintf(ps, sizeof(ps), "%u", port);
    assert_int_equal(it_file_write(src, content, len), 0);
    it_run((const char *const[]){it_bin(), "backup", "put", src, "--name", name, "127.0.0.1", ps,
                                 NULL},
           NULL, 0, CLI_TIMEOUT_MS, &p);
    if (it_proc_exit_code(&p) != 0)
        fail_msg("sockserv backup put %s: %s\n%s", name, it_status_str(p.status), p.err);
    it_proc_fini(&p);
}

/* ---- tests ---- */

static void test_files_download_is_the_bytes_with_attachment_headers(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    size_t len = 300 * 1024 + 7;
    char *data = it_pattern(len, 1), cl[32];
    uint16_t port = backup_listener(d, "b1");
    struct it_http r;

    put(state, port, "data.bin", data, len);
    request(d, "GET", "/api/v1/listeners/b1/files/data.bin", &r);
    assert_int_equal(r.status, 200);
    it_assert_header(&r, "Content-Type", "application/octet-stream");
    it_assert_header(&r, "Cache-Control", "no-store");
    it_assert_header(&r, "Content-Disposition",
                     "attachment; filename=\"data.bin\"; filename*=UTF-8''data.bin");
    snprintf(cl, sizeof(cl), "%zu", len);
    it_assert_header(&r, "Content-Length", cl);
    assert_int_equal(r.body_len, len);
    assert_memory_equal(r.body, data, len);
    it_http_fini(&r);
    free(data);
}

static void test_files_head_has_the_headers_and_no_body(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(d, "b1");
    struct it_http r;

    put(state, port, "notes.txt", "twelve bytes", 12);
    request(d, "HEAD", "/api/v1/listeners/b1/files/notes.txt", &r);
    assert_int_equal(r.status, 200);
    it_assert_header(&r, "Content-Length", "12");
    it_assert_header(&r, "Content-Type", "application/octet-stream");
    it_assert_header(&r, "Cache-Control", "no-store");
    assert_int_equal(r.body_len, 0);
    it_http_fini(&r);
}

static void test_files_name_with_unsafe_bytes_is_encoded_in_disposition(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(d, "b1");
    struct it_http r;

    /* "my "report"; è%.txt": a space, quotes, a semicolon, UTF-8 and a percent sign. */
    put(state, port, "my \"report\"; \xc3\xa8%.txt", "x", 1);
    request(d, "GET", "/api/v1/listeners/b1/files/my%20%22report%22%3B%20%C3%A8%25.txt", &r);
    assert_int_equal(r.status, 200);
    it_assert_header(&r, "Content-Disposition",
                     "attachment; filename=\"my _report_; ___.txt\"; "
                     "filename*=UTF-8''my%20%22report%22%3B%20%C3%A8%25.txt");
    assert_int_equal(r.body_len, 1);
    it_http_fini(&r);
}

static void test_files_version_1_is_the_older_copy(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(d, "b1");
    static const char first[] = "the first copy", second[] = "the second, longer copy";
    struct it_http r;

    put(state, port, "app.conf", first, sizeof(first) - 1);
    put(state, port, "app.conf", second, sizeof(second) - 1);

    request(d, "GET", "/api/v1/listeners/b1/files/app.conf?version=1", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, sizeof(first) - 1);
    assert_memory_equal(r.body, first, sizeof(first) - 1);
    it_assert_header(&r, "Content-Disposition",
                     "attachment; filename=\"app.conf\"; filename*=UTF-8''app.conf");
    it_http_fini(&r);
    /* absent and 0 are the current copy */
    request(d, "GET", "/api/v1/listeners/b1/files/app.conf", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, second);
    it_http_fini(&r);
    request(d, "GET", "/api/v1/listeners/b1/files/app.conf?version=0", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, second);
    it_http_fini(&r);
    /* a version that was never stored */
    request(d, "GET", "/api/v1/listeners/b1/files/app.conf?version=7", &r);
    assert_problem(&r, 404, NULL, "7");
    it_http_fini(&r);
}

static void test_files_bad_version_is_400_naming_version(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const bad[] = {"?version=",    "?version",     "?version=-1",
                                      "?version=one", "?version=1.5", "?version=99999999999"};
    uint16_t port = backup_listener(d, "b1");
    char path[128];
    struct it_http r;

    put(state, port, "f", "x", 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/api/v1/listeners/b1/files/f%s", bad[i]);
        request(d, "GET", path, &r);
        assert_problem(&r, 400, "version", "version");
        it_http_fini(&r);
    }
}

static void test_files_unknown_file_or_listener_is_404(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;

    backup_listener(d, "b1");
    request(d, "GET", "/api/v1/listeners/b1/files/missing.txt", &r);
    assert_problem(&r, 404, NULL, "missing.txt");
    it_http_fini(&r);
    request(d, "GET", "/api/v1/listeners/nope/files/x", &r);
    assert_problem(&r, 404, NULL, "nope");
    it_http_fini(&r);
    request(d, "GET", "/api/v1/listeners/nope/files", &r);
    assert_problem(&r, 404, NULL, "nope");
    it_http_fini(&r);
    /* a '/' in the name (%2F) is part of the name, never a separator, and no name holds one */
    request(d, "GET", "/api/v1/listeners/b1/files/a%2Fb", &r);
    assert_problem(&r, 400, "name", NULL);
    it_http_fini(&r);
}

static void test_files_bad_name_is_400_naming_name(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const bad[] = {"..", ".", "a%01b", "a%7Fb"};
    char path[128];
    struct it_http r;

    backup_listener(d, "b1");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/api/v1/listeners/b1/files/%s", bad[i]);
        request(d, "GET", path, &r);
        assert_problem(&r, 400, "name", NULL);
        it_http_fini(&r);
    }
}

static void test_files_service_without_files_is_404(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;

    json_decref(it_listener_create(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}"));
    request(d, "GET", "/api/v1/listeners/e1/files", &r);
    assert_problem(&r, 404, NULL, "keeps no files");
    it_http_fini(&r);
    request(d, "GET", "/api/v1/listeners/e1/files/x", &r);
    assert_problem(&r, 404, NULL, "keeps no files");
    it_http_fini(&r);
}

static void test_files_list_wraps_the_entries(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(d, "b1");
    json_t *j, *files, *f;

    j = it_http_expect(d, "GET", "/api/v1/listeners/b1/files", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "files")), 0);
    json_decref(j);

    put(state, port, "a.txt", "one", 3);
    put(state, port, "a.txt", "three", 5);
    j = it_http_expect(d, "GET", "/api/v1/listeners/b1/files", NULL, 200);
    assert_int_equal(json_object_size(j), 1);
    files = json_object_get(j, "files");
    assert_int_equal(json_array_size(files), 1);
    f = json_array_get(files, 0);
    assert_string_equal(it_json_str(f, "name"), "a.txt");
    assert_int_equal(it_json_int(f, "size"), 5);
    assert_int_equal(strlen(it_json_str(f, "sha256")), 64);
    assert_true(strlen(it_json_str(f, "stored")) > 0);
    assert_true(it_json_bool(f, "verified"));
    assert_int_equal(json_array_size(json_object_get(f, "versions")), 1);
    assert_int_equal(it_json_int(f, "versions.0.size"), 3);
    json_decref(j);
}

static void test_files_file_route_is_get_head_and_put(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char allow[64];
    struct it_http r;

    backup_listener(d, "b1");
    request(d, "DELETE", "/api/v1/listeners/b1/files/x", &r);
    assert_problem(&r, 405, NULL, NULL);
    assert_string_equal(it_http_header(&r, "Allow", allow, sizeof(allow)), "GET, HEAD, PUT");
    it_http_fini(&r);
    request(d, "POST", "/api/v1/listeners/b1/files", &r);
    assert_problem(&r, 405, NULL, NULL);
    assert_string_equal(it_http_header(&r, "Allow", allow, sizeof(allow)), "GET, HEAD");
    it_http_fini(&r);
}

/* POST .../files/{name}/ticket as the dashboard sends it (with the token): asserts status and
 * returns the answer's "url" (malloc'd) on 201, else NULL. */
static char *ticket(const struct it_daemon *d, const char *path, long status)
{
    json_t *j = it_http_expect(d, "POST", path, NULL, status);
    char *url = status == 201 ? strdup(it_json_str(j, "url")) : NULL;

    if (status == 201)
        assert_int_equal(it_json_int(j, "expires_in_s"), 60);
    json_decref(j);
    return url;
}

static void test_files_ticket_lets_one_get_through_without_the_token(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(d, "b1");
    struct it_http r;
    char *url, *other;

    put(state, port, "my file.txt", "first", 5);
    put(state, port, "my file.txt", "second!", 7);
    put(state, port, "b.txt", "bee", 3);

    url = ticket(d, "/api/v1/listeners/b1/files/my%20file.txt/ticket", 201);
    assert_non_null(strstr(url, "/api/v1/listeners/b1/files/my%20file.txt?ticket="));
    assert_int_equal(it_http_request(d, &(struct it_req){.path = url, .no_token = true}, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 7);
    assert_memory_equal(r.body, "second!", 7);
    it_http_fini(&r);
    /* Used up. */
    assert_int_equal(it_http_request(d, &(struct it_req){.path = url, .no_token = true}, &r), 0);
    assert_problem(&r, 401, NULL, NULL);
    it_http_fini(&r);
    free(url);

    /* Bound to its file and version. */
    url = ticket(d, "/api/v1/listeners/b1/files/my%20file.txt/ticket?version=1", 201);
    assert_non_null(strstr(url, "&version=1"));
    other = strdup(url);
    memcpy(strstr(other, "my%20file.txt"), "b.txt?", 6);
    memmove(strstr(other, "b.txt?") + 5, strstr(other, "?ticket"),
            strlen(strstr(other, "?ticket")) + 1);
    assert_int_equal(it_http_request(d, &(struct it_req){.path = other, .no_token = true}, &r), 0);
    assert_problem(&r, 401, NULL, NULL);
    it_http_fini(&r);
    assert_int_equal(it_http_request(d, &(struct it_req){.path = url, .no_token = true}, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "first", 5);
    it_http_fini(&r);
    free(other);
    free(url);

    /* No ticket for a file that is not there; a made-up ticket is no token. */
    assert_null(ticket(d, "/api/v1/listeners/b1/files/missing/ticket", 404));
    assert_int_equal(
        it_http_request(d,
                        &(struct it_req){.path =
                                             "/api/v1/listeners/b1/files/b.txt"
                                             "?ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                         .no_token = true},
                        &r),
        0);
    assert_problem(&r, 401, NULL, NULL);
    it_http_fini(&r);
}

static int setup_token(void **state)
{
    return it_fixture_setup_opts(state, (struct it_daemon_opts){.token = "files-token-123"});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_files_ticket_lets_one_get_through_without_the_token,
                                        setup_token, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_download_is_the_bytes_with_attachment_headers,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_head_has_the_headers_and_no_body,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_name_with_unsafe_bytes_is_encoded_in_disposition,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_version_1_is_the_older_copy, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_bad_version_is_400_naming_version,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_unknown_file_or_listener_is_404,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_bad_name_is_400_naming_name, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_service_without_files_is_404, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_list_wraps_the_entries, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_file_route_is_get_head_and_put, it_fixture_setup,
                                        it_fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
