/*
 * Strict HTTP where libmicrohttpd is lax (README "Security", control API): requests spoken by
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

static struct it_daemon *daemon_of(void **state)
{
    return &((struct it_fixture *)*state)->d;
}

/* An answer read off the wire. */
struct wire {
    long status;
    char content_type[128];
    json_t *json; /* the body as JSON, or NULL */
    bool closed;  /* the daemon closed the connection after it */
    int64_t ms;   /* from the request sent to the answer's end */
    char *raw;    /* everything received */
};

static void wire_fini(struct wire *w)
{
    json_decref(w->json);
    free(w->raw);
}

/*
 * Sends request (in which "HOST" stands for the daemon's address and port) on a new connection
 * and reads what comes back until the daemon closes it or IT_IO_TIMEOUT_MS passes. Asserts an
 * answer came.
 */
static void exchange(const struct it_daemon *d, const char *request, struct wire *ret)
{
    char host[64], *text, *at;
    const char *body;
    size_t len = 0, cap;
    int64_t t0;
    int fd, r;

    memset(ret, 0, sizeof(*ret));
    snprintf(host, sizeof(host), "127.0.0.1:%u", (unsigned)d->api_port);
    cap = strlen(request) + 64;
    text = malloc(cap);
    assert_non_null(text);
    text[0] = '\0';
    for (const char *p = request; (at = strstr(p, "HOST")); p = at + 4) {
        len += (size_t)snprintf(text + len, cap - len, "%.*s%s", (int)(at - p), p, host);
        request = at + 4;
    }
    len += (size_t)snprintf(text + len, cap - len, "%s", request);

    fd = it_tcp_connect("127.0.0.1", d->api_port, IT_IO_TIMEOUT_MS);
    assert_true(fd >= 0);
    t0 = it_now_ms();
    assert_int_equal(it_send_all(fd, text, len, IT_IO_TIMEOUT_MS), 0);
    free(text);
    r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &ret->raw, &len);
    ret->ms = it_now_ms() - t0;
    close(fd);
    ret->closed = r == 0 || r == -ECONNRESET;
    assert_non_null(ret->raw);
    if (sscanf(ret->raw, "HTTP/1.1 %ld", &ret->status) != 1) {
        fprintf(stderr, "# no answer: '%s' (%d)\n", ret->raw, r);
        fail();
    }
    at = strcasestr(ret->raw, "\r\nContent-Type:");
    if (at) {
        at += strlen("\r\nContent-Type:");
        at += strspn(at, " ");
        snprintf(ret->content_type, sizeof(ret->content_type), "%.*s", (int)strcspn(at, "\r"), at);
    }
    body = strstr(ret->raw, "\r\n\r\n");
    if (body)
        ret->json = json_loads(body + 4, 0, NULL);
}

/* Asserts w is an RFC 9457 problem of status (naming field unless NULL). */
static void assert_wire_problem(const struct wire *w, long status, const char *field)
{
    if (w->status != status || strcmp(w->content_type, "application/problem+json") != 0) {
        fprintf(stderr, "# want a %ld problem, got:\n%s\n", status, w->raw);
        fail();
    }
    assert_non_null(w->json);
    assert_int_equal(json_integer_value(json_object_get(w->json, "status")), status);
    assert_true(json_is_string(json_object_get(w->json, "detail")));
    if (field)
        assert_string_equal(json_string_value(json_object_get(w->json, "field")), field);
}

static void test_strict_nul_in_path_is_400_and_deletes_nothing(void **state)
{
    struct it_daemon *d = daemon_of(state);
    struct wire w;
    json_t *j;

    json_decref(it_listener_create(d, LISTENER));
    exchange(d,
             "DELETE /api/v1/listeners/a%00x HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
             &w);
    assert_wire_problem(&w, 400, NULL);
    wire_fini(&w);
    j = it_listener_get(d, "a");
    assert_string_equal(it_json_str(j, "status.state"), "running");
    json_decref(j);
}

static void test_strict_nul_in_query_is_400(void **state)
{
    struct wire w;

    exchange(daemon_of(state),
             "GET /api/v1/config/revisions?limit=2%00 HTTP/1.1\r\nHost: HOST\r\n"
             "Connection: close\r\n\r\n",
             &w);
    assert_wire_problem(&w, 400, NULL);
    wire_fini(&w);
}

static void test_strict_encoded_slash_stays_in_its_segment(void **state)
{
    struct it_daemon *d = daemon_of(state);
    struct wire w;
    json_t *j;

    json_decref(it_listener_create(d, LISTENER));
    /* "a%2Fstop" is one id, not the stop action on "a". */
    exchange(d,
             "POST /api/v1/listeners/a%2Fstop HTTP/1.1\r\nHost: HOST\r\n"
             "Content-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             &w);
    assert_wire_problem(&w, 405, NULL);
    wire_fini(&w);
    exchange(
        d, "GET /api/v1/listeners/a%2Fmetrics HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
        &w);
    assert_wire_problem(&w, 404, NULL);
    wire_fini(&w);
    /* A revision number with an encoded slash is not the number before it. */
    exchange(
        d, "GET /api/v1/config/revisions/1%2F2 HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
        &w);
    assert_wire_problem(&w, 400, "n");
    wire_fini(&w);
    j = it_listener_get(d, "a");
    assert_string_equal(it_json_str(j, "status.state"), "running");
    json_decref(j);
    /* Other escapes are decoded within their segment as before. */
    exchange(d, "GET /api/v1/listener%73/%61 HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
             &w);
    assert_int_equal(w.status, 200);
    assert_string_equal(json_string_value(json_object_get(w.json, "id")), "a");
    wire_fini(&w);
}

static void test_strict_two_content_lengths_are_400_and_closed(void **state)
{
    struct it_daemon *d = daemon_of(state);
    struct wire w;

    /* No "Connection: close": the daemon closes on its own. */
    exchange(d,
             "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
             "Content-Length: 2\r\nContent-Length: 80\r\n\r\n{}",
             &w);
    assert_wire_problem(&w, 400, NULL);
    assert_true(w.closed);
    wire_fini(&w);
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200));
}

static void test_strict_length_and_chunked_are_400_and_closed(void **state)
{
    struct it_daemon *d = daemon_of(state);
    struct wire w;
    json_t *j;

    exchange(d,
             "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
             "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
             "4c\r\n" LISTENER "\r\n0\r\n\r\n",
             &w);
    assert_wire_problem(&w, 400, NULL);
    assert_true(w.closed);
    wire_fini(&w);
    /* Nothing was created from the smuggled body. */
    j = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "listeners")), 0);
    json_decref(j);
}

static void test_strict_unknown_transfer_coding_is_501_at_once(void **state)
{
    struct wire w;

    exchange(daemon_of(state),
             "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
             "Transfer-Encoding: gzip\r\n\r\n",
             &w);
    assert_wire_problem(&w, 501, NULL);
    assert_true(w.closed);
    /* At once, not when a deadline cuts the connection. */
    assert_true(w.ms < 2000);
    wire_fini(&w);
    exchange(daemon_of(state),
             "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
             "Transfer-Encoding: gzip, chunked\r\n\r\n",
             &w);
    assert_wire_problem(&w, 501, NULL);
    wire_fini(&w);
}

static void test_strict_chunked_body_still_works(void **state)
{
    struct it_daemon *d = daemon_of(state);
    struct wire w;

    exchange(d,
             "POST /api/v1/listeners HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
             "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
             "4c\r\n" LISTENER "\r\n0\r\n\r\n",
             &w);
    assert_int_equal(w.status, 201);
    wire_fini(&w);
}

static void test_strict_two_hosts_are_400(void **state)
{
    struct wire w;

    exchange(daemon_of(state),
             "GET /api/v1/health HTTP/1.1\r\nHost: HOST\r\nHost: HOST\r\nConnection: close\r\n\r\n",
             &w);
    assert_wire_problem(&w, 400, NULL);
    wire_fini(&w);
}

static void test_strict_repeated_query_parameter_is_400_naming_it(void **state)
{
    struct it_daemon *d = daemon_of(state);
    struct wire w;

    json_decref(it_listener_create(d, LISTENER));
    /* The first says dry run, the second does it: neither is guessed. */
    exchange(d,
             "DELETE /api/v1/listeners/a?dry_run=true&dry_run=false HTTP/1.1\r\nHost: HOST\r\n"
             "Connection: close\r\n\r\n",
             &w);
    assert_wire_problem(&w, 400, "dry_run");
    wire_fini(&w);
    json_decref(it_listener_get(d, "a"));
    exchange(d,
             "GET /api/v1/config/revisions?limit=1&limit=2 HTTP/1.1\r\nHost: HOST\r\n"
             "Connection: close\r\n\r\n",
             &w);
    assert_wire_problem(&w, 400, "limit");
    wire_fini(&w);
    exchange(d,
             "GET /api/v1/listeners/a/files/x?version=1&version=2 HTTP/1.1\r\nHost: HOST\r\n"
             "Connection: close\r\n\r\n",
             &w);
    assert_wire_problem(&w, 400, "version");
    wire_fini(&w);
}

static void test_strict_if_match_headers_combine(void **state)
{
    struct it_daemon *d = daemon_of(state);
    char etag[32], request[512];
    struct wire w;
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
    exchange(d, request, &w);
    if (w.status != 200)
        fprintf(stderr, "# %s\n", w.raw);
    assert_int_equal(w.status, 200);
    wire_fini(&w);
    /* Neither header matches: 412. */
    exchange(d,
             "PUT /api/v1/config HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"
             "If-Match: \"r998\"\r\nIf-Match: \"r999\"\r\nContent-Length: 16\r\n"
             "Connection: close\r\n\r\n{\"listeners\":[]}",
             &w);
    assert_wire_problem(&w, 412, NULL);
    wire_fini(&w);
}

static void test_strict_if_none_match_headers_combine(void **state)
{
    struct it_daemon *d = daemon_of(state);
    char etag[64], request[512];
    const char *at;
    struct wire w;

    exchange(d, "GET /index.html HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n", &w);
    assert_int_equal(w.status, 200);
    at = strcasestr(w.raw, "\r\nETag:");
    assert_non_null(at);
    at += strlen("\r\nETag:");
    at += strspn(at, " ");
    snprintf(etag, sizeof(etag), "%.*s", (int)strcspn(at, "\r"), at);
    wire_fini(&w);
    /* The current ETag in the second header: not modified. */
    snprintf(request, sizeof(request),
             "GET /index.html HTTP/1.1\r\nHost: HOST\r\nIf-None-Match: \"old\"\r\n"
             "If-None-Match: %s\r\nConnection: close\r\n\r\n",
             etag);
    exchange(d, request, &w);
    assert_int_equal(w.status, 304);
    wire_fini(&w);
}

/* What a peer gets libmicrohttpd to warn about cannot flood the daemon's log. */
static void test_strict_library_warnings_are_bounded(void **state)
{
    struct it_daemon *d = daemon_of(state);
    char *log, *p;
    int lines = 0;

    for (int i = 0; i < 40; i++) {
        struct wire w;

        exchange(d, "GET /api/v1/health HTTP/2.0\r\nHost: localhost\r\n\r\n", &w);
        assert_int_equal(w.status, 505);
        wire_fini(&w);
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
