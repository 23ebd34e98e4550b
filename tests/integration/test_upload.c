/*
 * PUT /api/v1/listeners/{id}/files/{name} over real HTTP: the body stored by the running backup
 * listener under every TCP model, the same bytes through GET and the wire protocol's LIST, the
 * Repr-Digest checked before anything is kept, the service's refusals as problems, a body far
 * larger than any buffer without the daemon's memory growing by it, and a listener stopped
 * under an upload.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define MIB (1024 * 1024)

/* A backup listener on 127.0.0.1, port 0, with more JSON members (may be ""); its port. */
static uint16_t backup_listener(const struct it_daemon *d, const char *id, const char *more)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0%s%s}", id,
             more[0] ? "," : "", more);
    return it_listener_create_port(d, body);
}

/* "sha-256=:BASE64:" of the n bytes at p. */
static void repr_digest(const void *p, size_t n, char out[64])
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char hex[65], b64[48];
    uint8_t b[32];
    size_t k = 0;

    it_sha256_hex(p, n, hex);
    for (int i = 0; i < 32; i++) {
        unsigned v;

        sscanf(hex + 2 * i, "%2x", &v);
        b[i] = (uint8_t)v;
    }
    for (int i = 0; i < 32; i += 3) {
        unsigned v = (unsigned)b[i] << 16 | (i + 1 < 32 ? (unsigned)b[i + 1] << 8 : 0) |
                     (i + 2 < 32 ? b[i + 2] : 0);

        b64[k++] = digits[(v >> 18) & 63];
        b64[k++] = digits[(v >> 12) & 63];
        b64[k++] = i + 1 < 32 ? digits[(v >> 6) & 63] : '=';
        b64[k++] = i + 2 < 32 ? digits[v & 63] : '=';
    }
    b64[k] = '\0';
    snprintf(out, 64, "sha-256=:%s:", b64);
}

/* PUT of n bytes at p as name (path-encoded already) on listener id, with header (NULL: none);
 * asserts an answer came. Release with it_http_fini(). */
static void put(const struct it_daemon *d, const char *id, const char *name, const void *p,
                size_t n, const char *header, struct it_http *r)
{
    const char *headers[] = {header, NULL};
    char path[512];

    snprintf(path, sizeof(path), "/api/v1/listeners/%s/files/%s", id, name);
    if (it_http_request(d,
                        &(struct it_req){.method = "PUT",
                                         .path = path,
                                         .body = p,
                                         .body_len = n,
                                         .content_type = "application/octet-stream",
                                         .headers = header ? headers : NULL,
                                         .timeout_ms = 120000},
                        r) < 0)
        fail_msg("PUT %s: no answer (%s)", path, r->error);
}

/* Asserts listener id keeps no file. */
static void assert_no_files(const struct it_daemon *d, const char *id)
{
    char path[128];
    json_t *j;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s/files", id);
    j = it_http_expect(d, "GET", path, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "files")), 0);
    json_decref(j);
}

/* Uploads 1 MiB + 3 bytes through the API to a listener of model, then reads it back through
 * GET and the wire protocol. */
static void upload_round_trip(void **state, const char *model)
{
    struct it_daemon *d = it_daemon_of(state);
    size_t len = MIB + 3, got_len = 0;
    uint8_t *data = it_pattern(len, 7);
    char more[64], digest[64], header[96], hex[65], got_digest[96], *listing;
    struct it_http r, g;
    uint16_t port;
    void *got;

    snprintf(more, sizeof(more), "\"model\":\"%s\"", model);
    port = backup_listener(d, "b1", more);
    repr_digest(data, len, digest);
    snprintf(header, sizeof(header), "Repr-Digest: %s", digest);
    it_sha256_hex(data, len, hex);

    put(d, "b1", "big%20report.bin", data, len, header, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(it_json_str(r.json, "name"), "big report.bin");
    assert_int_equal(it_json_int(r.json, "version"), 1);
    assert_int_equal(it_json_int(r.json, "size"), (json_int_t)len);
    assert_string_equal(it_json_str(r.json, "sha256"), hex);
    assert_true(strlen(it_json_str(r.json, "stored")) == 20);
    assert_string_equal(it_http_header(&r, "Repr-Digest", got_digest, sizeof(got_digest)), digest);
    it_http_fini(&r);

    assert_int_equal(it_http_request(d,
                                     &(struct it_req){.path = "/api/v1/listeners/b1/files/"
                                                              "big%20report.bin"},
                                     &g),
                     0);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.body_len, len);
    assert_memory_equal(g.body, data, len);
    it_http_fini(&g);

    got = it_backup_get(port, "big%20report.bin", 0, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
    listing = it_backup_list(port, NULL);
    assert_non_null(strstr(listing, "big%20report.bin 1 1048579 "));
    assert_non_null(strstr(listing, hex));
    free(listing);
    it_assert_metric_now(d, "b1", "service.uploads_stored", 1);

    /* A second upload of the name is its version 2. */
    put(d, "b1", "big%20report.bin", "v2", 2, NULL, &r);
    assert_int_equal(r.status, 201);
    assert_int_equal(it_json_int(r.json, "version"), 2);
    it_http_fini(&r);
    free(data);
}

static void test_upload_thread_model_is_stored_byte_for_byte(void **state)
{
    upload_round_trip(state, "thread");
}

static void test_upload_event_model_is_stored_byte_for_byte(void **state)
{
    upload_round_trip(state, "event");
}

static void test_upload_uring_model_is_stored_byte_for_byte(void **state)
{
    upload_round_trip(state, "uring");
}

static void test_upload_process_model_is_stored_byte_for_byte(void **state)
{
    upload_round_trip(state, "process");
}

static void test_upload_digest_mismatch_keeps_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char digest[64], header[96];
    struct it_http r;

    backup_listener(d, "b1", "");
    repr_digest("other", 5, digest);
    snprintf(header, sizeof(header), "Repr-Digest: %s", digest);
    put(d, "b1", "a.txt", "content", 7, header, &r);
    it_assert_problem(&r, 400, "Repr-Digest");
    assert_non_null(strstr(it_json_str(r.json, "detail"), "nothing kept"));
    it_http_fini(&r);
    put(d, "b1", "a.txt", "content", 7, "Repr-Digest: sha-256=:abc:", &r);
    it_assert_problem(&r, 400, "Repr-Digest");
    it_http_fini(&r);
    assert_no_files(d, "b1");
    it_assert_metric_now(d, "b1", "service.uploads_stored", 0);
}

static void test_upload_refusals_are_problems(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char big[4096];
    struct it_http r;

    memset(big, 'x', sizeof(big));
    backup_listener(d, "b1", "\"options\":{\"max_file_size\":1000,\"on_exists\":\"reject\"}");
    backup_listener(d, "q1", "\"options\":{\"quota_bytes\":100}");

    put(d, "b1", ".hidden", "x", 1, NULL, &r);
    it_assert_problem(&r, 400, "name");
    it_http_fini(&r);
    put(d, "b1", "big", big, sizeof(big), NULL, &r);
    it_assert_problem(&r, 413, NULL);
    it_http_fini(&r);
    put(d, "q1", "big", big, 200, NULL, &r);
    it_assert_problem(&r, 507, NULL);
    it_http_fini(&r);
    put(d, "b1", "once", "1", 1, NULL, &r);
    assert_int_equal(r.status, 201);
    it_http_fini(&r);
    put(d, "b1", "once", "2", 1, NULL, &r);
    it_assert_problem(&r, 409, NULL);
    it_http_fini(&r);

    /* Not a backup listener; no such listener. */
    it_listener_create_port(
        d, "{\"id\":\"e1\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}");
    put(d, "e1", "a", "x", 1, NULL, &r);
    it_assert_problem(&r, 404, NULL);
    it_http_fini(&r);
    put(d, "nope", "a", "x", 1, NULL, &r);
    it_assert_problem(&r, 404, NULL);
    it_http_fini(&r);

    /* A stopped listener. */
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/b1/stop", NULL, 200));
    put(d, "b1", "a", "x", 1, NULL, &r);
    it_assert_problem(&r, 409, NULL);
    assert_non_null(strstr(it_json_str(r.json, "detail"), "not running"));
    it_http_fini(&r);
}

static void test_upload_without_length_is_411(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_wire w;

    backup_listener(d, "b1", "");
    it_wire_exchange(d,
                     "PUT /api/v1/listeners/b1/files/a HTTP/1.1\r\nHost: HOST\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                     &w);
    it_assert_problem(&w.http, 411, NULL);
    it_wire_fini(&w);
    assert_no_files(d, "b1");
}

/* A peak of the daemon's resident memory, in kB. */
static long vm_hwm_kb(pid_t pid)
{
    char path[64], *text, *p;
    long kb = -1;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    text = it_file_read(path, NULL);
    assert_non_null(text);
    p = strstr(text, "VmHWM:");
    if (p)
        kb = strtol(p + 6, NULL, 10);
    free(text);
    return kb;
}

static void test_upload_64_mib_does_not_grow_the_daemon_by_its_size(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    size_t len = 64 * MIB;
    uint8_t *data = it_pattern(len, 11);
    char digest[64], header[96];
    long before, after;
    struct it_http r;

    backup_listener(d, "b1", "");
    repr_digest(data, len, digest);
    snprintf(header, sizeof(header), "Repr-Digest: %s", digest);
    before = vm_hwm_kb(d->pid);
    put(d, "b1", "huge", data, len, header, &r);
    assert_int_equal(r.status, 201);
    assert_int_equal(it_json_int(r.json, "size"), (json_int_t)len);
    it_http_fini(&r);
    after = vm_hwm_kb(d->pid);
    /* The body went through in pieces: the peak moved by far less than the file's 64 MiB (about
     * 5 MiB: the writer's buffers; a sanitizer's shadow of them multiplies that). */
    if (after - before > 32 * 1024)
        fail_msg("the daemon's peak memory grew by %ld kB for a 64 MiB upload", after - before);
    free(data);
}

static void test_upload_needs_the_token_and_the_same_site(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;
    char path[] = "/api/v1/listeners/b1/files/a";

    backup_listener(d, "b1", "");
    assert_int_equal(
        it_http_request(
            d,
            &(struct it_req){
                .method = "PUT", .path = path, .body = "x", .body_len = 1, .no_token = true},
            &r),
        0);
    it_assert_problem(&r, 401, NULL);
    it_http_fini(&r);
    /* Another site's page is refused, token or not. */
    put(d, "b1", "a", "x", 1, "Origin: http://elsewhere.example", &r);
    it_assert_problem(&r, 403, NULL);
    it_http_fini(&r);
    put(d, "b1", "a", "x", 1, "Sec-Fetch-Site: cross-site", &r);
    it_assert_problem(&r, 403, NULL);
    it_http_fini(&r);
    assert_no_files(d, "b1");
    put(d, "b1", "a", "x", 1, NULL, &r);
    assert_int_equal(r.status, 201);
    it_http_fini(&r);
}

/* A listener stopped while an upload's body is still owed: the stop is not held up, the upload
 * is answered 409 and nothing is kept. */
static void test_upload_cut_by_a_stop_keeps_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char head[512], buf[4096];
    int64_t t0;
    int fd, status;

    backup_listener(d, "b1", "");
    fd = it_tcp_connect("127.0.0.1", d->api_port, 5000);
    assert_true(fd >= 0);
    snprintf(head, sizeof(head),
             "PUT /api/v1/listeners/b1/files/cut HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Content-Length: 2000\r\nConnection: close\r\n\r\n",
             (unsigned)d->api_port);
    it_send_ok(fd, head, strlen(head));
    memset(buf, 'a', 1000);
    it_send_ok(fd, buf, 1000);
    /* The upload is under way on the instance the stop or change lets go. */
    it_assert_metric_eventually(d, "b1", "service.uploads_started", 1, 10000);
    t0 = it_now_ms();
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/b1/stop", NULL, 200));
    assert_true(it_now_ms() - t0 < 5000);
    it_send_ok(fd, buf, 1000);
    status = it_http_read_head(fd, buf, sizeof(buf), 10000);
    assert_int_equal(status, 409);
    close(fd);
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/b1/start", NULL, 200));
    assert_no_files(d, "b1");
}

/* A live change of the listener while an upload's body is still owed: the upload keeps nothing
 * (409), the change is not held up. */
static void test_upload_cut_by_a_live_change_keeps_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char head[512], buf[4096];
    struct it_http r;
    int64_t t0;
    int fd, status;

    backup_listener(d, "b1", "");
    fd = it_tcp_connect("127.0.0.1", d->api_port, 5000);
    assert_true(fd >= 0);
    snprintf(head, sizeof(head),
             "PUT /api/v1/listeners/b1/files/changed HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Content-Length: 2000\r\nConnection: close\r\n\r\n",
             (unsigned)d->api_port);
    it_send_ok(fd, head, strlen(head));
    memset(buf, 'a', 1000);
    it_send_ok(fd, buf, 1000);
    /* The upload is under way on the instance the stop or change lets go. */
    it_assert_metric_eventually(d, "b1", "service.uploads_started", 1, 10000);
    t0 = it_now_ms();
    assert_int_equal(
        it_http_request(
            d,
            &(struct it_req){.method = "PATCH",
                             .path = "/api/v1/listeners/b1",
                             .body = "{\"options\":{\"max_file_size\":5000000}}",
                             .body_len = strlen("{\"options\":{\"max_file_size\":5000000}}"),
                             .content_type = "application/merge-patch+json"},
            &r),
        0);
    assert_int_equal(r.status, 200);
    it_http_fini(&r);
    assert_true(it_now_ms() - t0 < 5000);
    it_send_ok(fd, buf, 1000);
    status = it_http_read_head(fd, buf, sizeof(buf), 10000);
    assert_int_equal(status, 409);
    close(fd);
    assert_no_files(d, "b1");
}

static int setup_token(void **state)
{
    return it_fixture_setup_opts(state, (struct it_daemon_opts){.token = "upload-secret-token"});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upload_thread_model_is_stored_byte_for_byte,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_event_model_is_stored_byte_for_byte,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_uring_model_is_stored_byte_for_byte,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_process_model_is_stored_byte_for_byte,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_digest_mismatch_keeps_nothing, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_refusals_are_problems, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_without_length_is_411, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_64_mib_does_not_grow_the_daemon_by_its_size,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_needs_the_token_and_the_same_site, setup_token,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_cut_by_a_stop_keeps_nothing, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upload_cut_by_a_live_change_keeps_nothing,
                                        it_fixture_setup, it_fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
