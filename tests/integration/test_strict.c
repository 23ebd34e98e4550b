/*
 * Strict HTTP where libmicrohttpd is lax (docs/security.md, the control API): requests spoken by
 * hand over a socket, as a client that is wrong or hostile would send them, and the answers a
 * user reads off the wire.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define LISTENER                                                                                   \
    "{\"id\":\"a\",\"service\":\"echo\",\"transport\":\"tcp\",\"address\":\"127.0.0.1\","          \
    "\"port\":0}"

/* Asserts w is an RFC 9457 problem of status (naming field unless NULL). */
static void assert_wire_problem(const struct it_wire *w, long status, const char *field)
{
    if (w->http.status != status)
        fprintf(stderr, "# want a %ld problem, got:\n%s\n", status, w->raw);
    it_assert_problem(&w->http, status, field);
}

static void test_strict_nul_in_path_is_400_and_deletes_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_wire w;
    json_t *j;

    json_decref(it_listener_create(d, LISTENER));
    it_wire_exchange(
        d, "DELETE /api/v1/listeners/a%00x HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
        &w);
    assert_wire_problem(&w, 400, NULL);
    it_wire_fini(&w);
    j = it_listener_get(d, "a");
    assert_string_equal(it_json_str(j, "status.state"), "running");
    json_decref(j);
}

static void test_strict_nul_in_query_is_400(void **state)
{
    struct it_wire w;

    it_wire_exchange(it_daemon_of(state),
                     "GET /api/v1/config/revisions?limit=2%00 HTTP/1.1\r\nHost: HOST\r\n"
                     "Connection: close\r\n\r\n",
                     &w);
    assert_wire_problem(&w, 400, NULL);
    it_wire_fini(&w);
}

static void test_strict_encoded_slash_stays_in_its_segment(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_wire w;
    json_t *j;

    json_decref(it_listener_create(d, LISTENER));
    /* "a%2Fstop" is one id, not the stop action on "a". */
    it_wire_exchange(
        d,
        "POST /api/v1/listeners/a%2Fstop HTTP/1.1\r\nHost: HOST\r\n"
        "Content-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        &w);
    assert_wire_problem(&w, 405, NULL);
    it_wire_fini(&w);
    it_wire_exchange(
        d, "GET /api/v1/listeners/a%2Fmetrics HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
        &w);
    assert_wire_problem(&w, 404, NULL);
    it_wire_fini(&w);
    /* A revision number with an encoded slash is not the number before it. */
    it_wire_exchange(
        d, "GET /api/v1/config/revisions/1%2F2 HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
        &w);
    assert_wire_problem(&w, 400, "n");
    it_wire_fini(&w);
    j = it_listener_get(d, "a");
    assert_string_equal(it_json_str(j, "status.state"), "running");
    json_decref(j);
    /* Other escapes are decoded within their segment as before. */
    it_wire_exchange(
        d, "GET /api/v1/listener%73/%61 HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n", &w);
    assert_int_equal(w.http.status, 200);
    assert_string_equal(json_string_value(json_object_get(w.http.json, "id")), "a");
    it_wire_fini(&w);
}

static void test_strict_two_content_lengths_are_400_and_closed(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_wire w;

    /* No "Connection: close": the daemon closes on its own. */
    it_wire_exchange(
        d,
        "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\nContent-Length: 80\r\n\r\n{}",
        &w);
    assert_wire_problem(&w, 400, NULL);
    assert_true(w.closed);
    it_wire_fini(&w);
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200));
}

static void test_strict_length_and_chunked_are_400_and_closed(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_wire w;
    json_t *j;

    it_wire_exchange(
        d,
        "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        "4c\r\n" LISTENER "\r\n0\r\n\r\n",
        &w);
    assert_wire_problem(&w, 400, NULL);
    assert_true(w.closed);
    it_wire_fini(&w);
    /* Nothing was created from the smuggled body. */
    j = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "listeners")), 0);
    json_decref(j);
}

static void test_strict_unknown_transfer_coding_is_501_at_once(void **state)
{
    struct it_wire w;

    it_wire_exchange(
        it_daemon_of(state),
        "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: gzip\r\n\r\n",
        &w);
    assert_wire_problem(&w, 501, NULL);
    assert_true(w.closed);
    /* At once, not when a deadline cuts the connection. */
    assert_true(w.ms < 2000);
    it_wire_fini(&w);
    it_wire_exchange(
        it_daemon_of(state),
        "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n",
        &w);
    assert_wire_problem(&w, 501, NULL);
    it_wire_fini(&w);
}

static void test_strict_chunked_body_still_works(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_wire w;

    it_wire_exchange(
        d,
        "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "4c\r\n" LISTENER "\r\n0\r\n\r\n",
        &w);
    assert_int_equal(w.http.status, 201);
    it_wire_fini(&w);
}

static void test_strict_two_hosts_are_400(void **state)
{
    struct it_wire w;

    it_wire_exchange(
        it_daemon_of(state),
        "GET /api/v1/health HTTP/1.1\r\nHost: HOST\r\nHost: HOST\r\nConnection: close\r\n\r\n", &w);
    assert_wire_problem(&w, 400, NULL);
    it_wire_fini(&w);
}

static void test_strict_repeated_query_parameter_is_400_naming_it(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_wire w;

    json_decref(it_listener_create(d, LISTENER));
    /* The first says dry run, the second does it: neither is guessed. */
    it_wire_exchange(
        d,
        "DELETE /api/v1/listeners/a?dry_run=true&dry_run=false HTTP/1.1\r\nHost: HOST\r\n"
        "Connection: close\r\n\r\n",
        &w);
    assert_wire_problem(&w, 400, "dry_run");
    it_wire_fini(&w);
    json_decref(it_listener_get(d, "a"));
    it_wire_exchange(d,
                     "GET /api/v1/config/revisions?limit=1&limit=2 HTTP/1.1\r\nHost: HOST\r\n"
                     "Connection: close\r\n\r\n",
                     &w);
    assert_wire_problem(&w, 400, "limit");
    it_wire_fini(&w);
    it_wire_exchange(
        d,
        "GET /api/v1/listeners/a/files/x?version=1&version=2 HTTP/1.1\r\nHost: HOST\r\n"
        "Connection: close\r\n\r\n",
        &w);
    assert_wire_problem(&w, 400, "version");
    it_wire_fini(&w);
}

static void test_strict_if_match_headers_combine(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char etag[32], request[512];
    struct it_wire w;
    json_t *j;

    json_decref(it_listener_create(d, LISTENER));
    j = it_http_expect(d, "GET", "/api/v1/config", NULL, 200);
    snprintf(etag, sizeof(etag), "\"r%lld\"",
             (long long)json_integer_value(json_object_get(j, "revision")));
    json_decref(j);
    /* The current ETag in the second header: the list as a whole matches. */
    snprintf(request, sizeof(request),
             "PUT /api/v1/config HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
             "If-Match: \"r999\"\r\nIf-Match: %s\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n{\"listeners\":[%s]}",
             etag, strlen(LISTENER) + 16, LISTENER);
    it_wire_exchange(d, request, &w);
    if (w.http.status != 200)
        fprintf(stderr, "# %s\n", w.raw);
    assert_int_equal(w.http.status, 200);
    it_wire_fini(&w);
    /* Neither header matches: 412. */
    it_wire_exchange(
        d,
        "PUT /api/v1/config HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
        "If-Match: \"r998\"\r\nIf-Match: \"r999\"\r\nContent-Length: 16\r\n"
        "Connection: close\r\n\r\n{\"listeners\":[]}",
        &w);
    assert_wire_problem(&w, 412, NULL);
    it_wire_fini(&w);
}

static void test_strict_if_none_match_headers_combine(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char etag[64], request[512];
    struct it_wire w;

    it_wire_exchange(d, "GET /index.html HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n", &w);
    assert_int_equal(w.http.status, 200);
    assert_non_null(it_http_header(&w.http, "ETag", etag, sizeof(etag)));
    it_wire_fini(&w);
    /* The current ETag in the second header: not modified. */
    snprintf(request, sizeof(request),
             "GET /index.html HTTP/1.1\r\nHost: HOST\r\nIf-None-Match: \"old\"\r\n"
             "If-None-Match: %s\r\nConnection: close\r\n\r\n",
             etag);
    it_wire_exchange(d, request, &w);
    assert_int_equal(w.http.status, 304);
    it_wire_fini(&w);
}

/* What a peer gets libmicrohttpd to warn about cannot flood the daemon's log. */
static void test_strict_library_warnings_are_bounded(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *log, *p;
    int lines = 0;

    for (int i = 0; i < 40; i++) {
        struct it_wire w;

        it_wire_exchange(d, "GET /api/v1/health HTTP/2.0\r\nHost: localhost\r\n\r\n", &w);
        assert_int_equal(w.http.status, 505);
        it_wire_fini(&w);
    }
    it_assert_daemon_alive(d);
    log = it_daemon_stderr(d);
    for (p = log; (p = strstr(p, "warn: api: libmicrohttpd:")); p++)
        lines++;
    free(log);
    assert_true(lines >= 1);
    assert_true(lines <= 10);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_strict_nul_in_path_is_400_and_deletes_nothing),
        T(test_strict_nul_in_query_is_400),
        T(test_strict_encoded_slash_stays_in_its_segment),
        T(test_strict_two_content_lengths_are_400_and_closed),
        T(test_strict_length_and_chunked_are_400_and_closed),
        T(test_strict_unknown_transfer_coding_is_501_at_once),
        T(test_strict_chunked_body_still_works),
        T(test_strict_two_hosts_are_400),
        T(test_strict_repeated_query_parameter_is_400_naming_it),
        T(test_strict_if_match_headers_combine),
        T(test_strict_if_none_match_headers_combine),
        T(test_strict_library_warnings_are_bounded),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
