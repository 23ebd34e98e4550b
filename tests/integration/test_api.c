/*
 * The REST API through real HTTP: every route, every answer a user can get, and every bad input
 * of the contract (docs/api.md, its routes and "Errors"), against the daemon as a child process.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define ONE_MIB (1024 * 1024)

/* Asserts that GET /api/v1/listeners lists exactly ids, in this order. */
static void assert_ids(const struct it_daemon *d, const char *const *ids, size_t n)
{
    json_t *j = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200);
    json_t *list = json_object_get(j, "listeners");
    size_t i;

    assert_true(json_is_array(list));
    if (json_array_size(list) != n) {
        char *text = json_dumps(j, JSON_COMPACT);

        fprintf(stderr, "# want %zu listeners, got: %s\n", n, text);
        free(text);
    }
    assert_int_equal(json_array_size(list), n);
    for (i = 0; i < n; i++)
        assert_string_equal(it_json_str(json_array_get(list, i), "id"), ids[i]);
    json_decref(j);
}

static void assert_state(const json_t *resource, const char *want)
{
    assert_string_equal(it_json_str(resource, "status.state"), want);
}

/* Whether the comma-separated Allow header lists method. */
static bool allow_has(const char *allow, const char *method)
{
    char buf[256], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", allow);
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
        if (strcmp(tok, method) == 0)
            return true;
    return false;
}

static void assert_405(const struct it_daemon *d, const char *method, const char *path,
                       const char *const *allowed, const char *const *not_allowed)
{
    struct it_http r;

    it_http(d, method, path, NULL, &r);
    fprintf(stderr, "# %s %s -> %ld, Allow: %s\n", method, path, r.status, r.allow);
    it_assert_problem(&r, 405, NULL);
    for (size_t i = 0; allowed[i]; i++)
        assert_true(allow_has(r.allow, allowed[i]));
    for (size_t i = 0; not_allowed[i]; i++)
        assert_false(allow_has(r.allow, not_allowed[i]));
    it_http_fini(&r);
}

/* Sends two messages on one connection and reads each echo back: only stream mode does it. */
static void assert_stream_mode(const char *host, uint16_t port)
{
    char buf[8];
    int fd = it_tcp_connect(host, port, IT_IO_TIMEOUT_MS);

    assert_true(fd >= 0);
    assert_int_equal(it_send_all(fd, "first", 5, IT_IO_TIMEOUT_MS), 0);
    assert_int_equal(it_recv_exact(fd, buf, 5, IT_IO_TIMEOUT_MS), 0);
    assert_memory_equal(buf, "first", 5);
    assert_int_equal(it_send_all(fd, "again", 5, IT_IO_TIMEOUT_MS), 0);
    assert_int_equal(it_recv_exact(fd, buf, 5, IT_IO_TIMEOUT_MS), 0);
    assert_memory_equal(buf, "again", 5);
    close(fd);
}

/* Sends one message without closing: the once mode echoes it and closes. */
static void assert_once_mode(const char *host, uint16_t port)
{
    char *reply = NULL;
    size_t len = 0;
    int r;

    r = it_tcp_exchange(host, port, "only", 4, false, IT_IO_TIMEOUT_MS, &reply, &len);
    if (r < 0)
        fail_msg("once mode on %s port %u: %s (want the echo, then the server closing)", host, port,
                 strerror(-r));
    assert_int_equal(len, 4);
    assert_memory_equal(reply, "only", 4);
    free(reply);
}

/* ---- health, documents ---- */

static void test_api_health_get_returns_ok(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_t *j, *uptime;

    j = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);
    assert_string_equal(it_json_str(j, "status"), "ok");
    assert_true(strlen(it_json_str(j, "version")) > 0);
    uptime = json_object_get(j, "uptime_seconds");
    assert_true(json_is_number(uptime));
    assert_true(json_number_value(uptime) >= 0);
    assert_int_equal(it_json_int(j, "listeners"), 0);
    json_decref(j);

    json_decref(it_listener_create(d, "{\"id\":\"h1\",\"service\":\"echo\",\"port\":0}"));
    j = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);
    assert_int_equal(it_json_int(j, "listeners"), 1);
    json_decref(j);
}

static void test_api_documents_served(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;

    it_http(d, "GET", "/openapi.yaml", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "openapi:"));
    assert_non_null(strstr(r.body, "/api/v1/listeners"));
    it_http_fini(&r);

    it_http(d, "GET", "/", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(strncasecmp(r.content_type, "text/html", 9) == 0);
    it_http_fini(&r);
}

/* ---- create, list, get ---- */

static void test_api_list_empty_returns_empty_array(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_t *j = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200);

    assert_true(json_is_array(json_object_get(j, "listeners")));
    assert_int_equal(json_array_size(json_object_get(j, "listeners")), 0);
    json_decref(j);
}

static void test_api_create_tcp_port0_returns_201_with_bound_port(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *body = "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}";
    struct it_http r;
    json_t *j, *g;
    uint16_t port;

    it_http(d, "POST", "/api/v1/listeners", body, &r);
    if (r.status != 201)
        fprintf(stderr, "# POST %s -> %ld %s\n", body, r.status, r.body);
    assert_int_equal(r.status, 201);
    assert_true(strncasecmp(r.content_type, "application/json", 16) == 0);
    assert_string_equal(r.location, "/api/v1/listeners/e1");
    assert_non_null(r.json);
    j = json_incref(r.json);
    it_http_fini(&r);

    /* Every default of the table in docs/api.md. */
    assert_string_equal(it_json_str(j, "id"), "e1");
    assert_string_equal(it_json_str(j, "service"), "echo");
    assert_string_equal(it_json_str(j, "transport"), "tcp");
    assert_string_equal(it_json_str(j, "address"), "::");
    assert_int_equal(it_json_int(j, "port"), 0);
    assert_string_equal(it_json_str(j, "model"), "thread");
    assert_int_equal(it_json_int(j, "workers"), 1);
    assert_int_equal(it_json_int(j, "max_connections"), 1024);
    assert_int_equal(it_json_int(j, "idle_timeout_ms"), 30000);
    assert_true(it_json_bool(j, "enabled"));
    assert_string_equal(it_json_str(j, "options.mode"), "stream");
    assert_state(j, "running");
    assert_true(json_is_null(it_json_path(j, "status.error")));
    assert_true(strlen(it_json_str(j, "status.since")) > 0);
    assert_true(strncmp(it_json_str(j, "status.bound.0"), "[::]:", 5) == 0);
    assert_int_equal(it_json_int(j, "metrics.connections_total"), 0);
    port = it_bound_port(j);
    assert_true(port != 0);

    it_assert_tcp_echo("127.0.0.1", port, "hello v4\n", 9);
    it_assert_tcp_echo("::1", port, "hello v6\n", 9);

    g = it_listener_get(d, "e1");
    assert_string_equal(it_json_str(g, "status.bound.0"), it_json_str(j, "status.bound.0"));
    assert_string_equal(it_json_str(g, "model"), "thread");
    assert_state(g, "running");
    json_decref(g);
    json_decref(j);
}

static void test_api_create_udp_and_address_returns_resource(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_t *j;
    uint16_t port;

    j = it_listener_create(d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\","
                              "\"address\":\"127.0.0.1\",\"port\":0}");
    assert_string_equal(it_json_str(j, "transport"), "udp");
    assert_string_equal(it_json_str(j, "model"), "sequential");
    assert_string_equal(it_json_str(j, "address"), "127.0.0.1");
    assert_state(j, "running");
    assert_true(strncmp(it_json_str(j, "status.bound.0"), "127.0.0.1:", 10) == 0);
    port = it_bound_port(j);
    it_assert_udp_echo("127.0.0.1", port, "datagram", 8);
    json_decref(j);

    /* "localhost" is accepted and means 127.0.0.1. */
    j = it_listener_create(d, "{\"id\":\"l1\",\"service\":\"echo\",\"address\":\"localhost\","
                              "\"port\":0}");
    assert_state(j, "running");
    it_assert_tcp_echo("127.0.0.1", it_bound_port(j), "lo", 2);
    json_decref(j);
}

static void test_api_create_without_id_makes_one_up(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *body = "{\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}";
    char want_location[256], id1[64];
    struct it_http r;
    json_t *j;

    it_http(d, "POST", "/api/v1/listeners", body, &r);
    assert_int_equal(r.status, 201);
    assert_non_null(r.json);
    snprintf(id1, sizeof(id1), "%s", it_json_str(r.json, "id"));
    assert_true(strlen(id1) > 0 && strlen(id1) < 64);
    assert_int_equal(strspn(id1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789._-"),
                     strlen(id1));
    snprintf(want_location, sizeof(want_location), "/api/v1/listeners/%s", id1);
    assert_string_equal(r.location, want_location);
    it_http_fini(&r);

    j = it_listener_create(d, body);
    assert_string_not_equal(it_json_str(j, "id"), id1);
    json_decref(j);

    json_decref(it_listener_get(d, id1));
}

static void test_api_list_orders_by_id(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const ids[] = {"a1", "b2", "c3"};

    json_decref(it_listener_create(d, "{\"id\":\"b2\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_listener_create(d, "{\"id\":\"c3\",\"service\":\"echo\",\"port\":0,"
                                      "\"transport\":\"udp\"}"));
    json_decref(it_listener_create(d, "{\"id\":\"a1\",\"service\":\"echo\",\"port\":0}"));
    assert_ids(d, ids, 3);
}

/* ---- bad input: 400 naming the field, nothing changes ---- */

static const struct {
    const char *body;
    const char *field; /* NULL: no single field (the body as a whole is wrong) */
} bad_bodies[] = {
    {"{\"id\":\"bad\",\"service\":\"echo\",", NULL},
    {"not json at all", NULL},
    {"[1,2,3]", NULL},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":\"7007\"}", "port"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":7.5}", "port"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":65536}", "port"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":-1}", "port"},
    {"{\"id\":\"bad\",\"service\":\"echo\"}", "port"},
    {"{\"id\":\"bad\",\"port\":0}", "service"},
    {"{\"id\":\"bad\",\"service\":\"nope\",\"port\":0}", "service"},
    {"{\"id\":\"bad\",\"service\":7,\"port\":0}", "service"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"transport\":\"sctp\"}", "transport"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"transport\":true}", "transport"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"model\":\"fancy\"}", "model"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"transport\":\"udp\",\"model\":\"pool\"}",
     "model"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"transport\":\"udp\",\"model\":\"event\"}",
     "model"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"transport\":\"udp\",\"model\":\"thread\"}",
     "model"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"bogus\":true}", "bogus"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"enabled\":\"yes\"}", "enabled"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"workers\":0}", "workers"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"workers\":257}", "workers"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"max_connections\":0}", "max_connections"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"idle_timeout_ms\":-5}", "idle_timeout_ms"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"address\":\"example.org\"}", "address"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"address\":\"10.0.0.999\"}", "address"},
    {"{\"id\":\"-bad\",\"service\":\"echo\",\"port\":0}", "id"},
    {"{\"id\":\"bad/x\",\"service\":\"echo\",\"port\":0}", "id"},
    {"{\"id\":\"\",\"service\":\"echo\",\"port\":0}", "id"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"options\":\"stream\"}", "options"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"options\":{\"mode\":\"loud\"}}",
     "options.mode"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"port\":0,\"options\":{\"volume\":3}}",
     "options.volume"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0,"
     "\"options\":{\"mode\":\"once\"}}",
     "options.mode"},
    {"{\"id\":\"bad\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0,"
     "\"options\":{\"max_datagram\":70000}}",
     "options.max_datagram"},
};

static void test_api_create_bad_input_returns_400_naming_field(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const ids[] = {"keep"};
    char *before, *after;
    uint16_t port;

    port = it_listener_create_port(d, "{\"id\":\"keep\",\"service\":\"echo\",\"port\":0}");
    before = it_file_read(d->state_file, NULL);
    assert_non_null(before);

    for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(bad_bodies[0]); i++) {
        struct it_http r;

        fprintf(stderr, "# POST %s (want 400, field %s)\n", bad_bodies[i].body,
                bad_bodies[i].field ? bad_bodies[i].field : "-");
        it_http_raw(d, "POST", "/api/v1/listeners", bad_bodies[i].body, strlen(bad_bodies[i].body),
                    "application/json", &r);
        it_assert_problem(&r, 400, bad_bodies[i].field);
        it_http_fini(&r);
    }

    /* Nothing changed: the same set, the same state file, the listener still serving. */
    assert_ids(d, ids, 1);
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/bad", NULL, 404));
    after = it_file_read(d->state_file, NULL);
    assert_non_null(after);
    assert_string_equal(before, after);
    it_assert_tcp_echo("127.0.0.1", port, "still here", 10);
    free(before);
    free(after);
}

/* ---- conflicts ---- */

static void test_api_create_taken_id_returns_409(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;
    json_t *j;
    uint16_t port;

    port = it_listener_create_port(
        d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0,\"options\":{\"mode\":\"once\"}}");
    it_http(d, "POST", "/api/v1/listeners",
            "{\"id\":\"e1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}", &r);
    it_assert_problem(&r, 409, NULL);
    it_http_fini(&r);

    j = it_listener_get(d, "e1");
    assert_string_equal(it_json_str(j, "transport"), "tcp");
    assert_string_equal(it_json_str(j, "options.mode"), "once");
    assert_int_equal(it_bound_port(j), port);
    assert_state(j, "running");
    json_decref(j);
    assert_once_mode("127.0.0.1", port);
}

/* Asserts a 409 whose detail gives the reason (the port, or that it is in use). */
static void assert_port_conflict(const struct it_daemon *d, const char *body, uint16_t port)
{
    char port_text[8];
    const char *detail;
    struct it_http r;

    it_http(d, "POST", "/api/v1/listeners", body, &r);
    fprintf(stderr, "# POST %s -> %ld %s\n", body, r.status, r.body);
    it_assert_problem(&r, 409, NULL);
    snprintf(port_text, sizeof(port_text), "%u", port);
    detail = it_json_str(r.json, "detail");
    assert_true(strcasestr(detail, "in use") || strstr(detail, port_text));
    it_http_fini(&r);
}

static void test_api_create_port_used_by_listener_returns_409(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const ids[] = {"e1", "keep", "u1"};
    char body[256];
    uint16_t port, uport, keep;

    port = it_listener_create_port(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}");
    uport = it_listener_create_port(
        d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");
    keep = it_listener_create_port(d, "{\"id\":\"keep\",\"service\":\"echo\",\"port\":0}");

    snprintf(body, sizeof(body), "{\"id\":\"e2\",\"service\":\"echo\",\"port\":%u}", port);
    assert_port_conflict(d, body, port);
    snprintf(body, sizeof(body),
             "{\"id\":\"u2\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":%u}", uport);
    assert_port_conflict(d, body, uport);

    /* Nothing was created and every other listener runs on. */
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/e2", NULL, 404));
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/u2", NULL, 404));
    assert_ids(d, ids, 3);
    it_assert_tcp_echo("127.0.0.1", port, "e1 v4", 5);
    it_assert_tcp_echo("::1", port, "e1 v6", 5);
    it_assert_udp_echo("::1", uport, "u1", 2);
    it_assert_tcp_echo("::1", keep, "keep", 4);
}

static void test_api_create_port_used_by_other_socket_returns_409(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const ids[] = {"keep"};
    char body[256];
    uint16_t port, uport, keep;
    int tfd, ufd;

    keep = it_listener_create_port(
        d, "{\"id\":\"keep\",\"service\":\"echo\",\"port\":0,\"model\":\"sequential\"}");
    tfd = it_bind(SOCK_STREAM, "::", 0, &port);
    assert_true(tfd >= 0);
    ufd = it_bind(SOCK_DGRAM, "::", 0, &uport);
    assert_true(ufd >= 0);

    snprintf(body, sizeof(body), "{\"id\":\"t2\",\"service\":\"echo\",\"port\":%u}", port);
    assert_port_conflict(d, body, port);
    snprintf(body, sizeof(body),
             "{\"id\":\"u2\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":%u}", uport);
    assert_port_conflict(d, body, uport);
    /* The same over PUT. */
    snprintf(body, sizeof(body), "{\"service\":\"echo\",\"port\":%u}", port);
    {
        struct it_http r;

        it_http(d, "PUT", "/api/v1/listeners/t3", body, &r);
        it_assert_problem(&r, 409, NULL);
        it_http_fini(&r);
    }

    assert_ids(d, ids, 1);
    it_assert_tcp_echo("127.0.0.1", keep, "keep", 4);
    close(tfd);
    close(ufd);
}

/* ---- routes and methods ---- */

static void test_api_unknown_route_returns_404(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const struct {
        const char *method, *path;
    } cases[] = {
        {"GET", "/api/v1/nope"},
        {"GET", "/api/v2/listeners"},
        {"GET", "/nope"},
        {"GET", "/api/v1/listeners/missing"},
        {"DELETE", "/api/v1/listeners/missing"},
        {"POST", "/api/v1/listeners/missing/start"},
        {"POST", "/api/v1/listeners/missing/stop"},
        {"GET", "/api/v1/listeners/missing/metrics"},
        {"GET", "/api/v1/listeners/e1/bogus"},
        {"GET", "/api/v1/listeners/e1/metrics/extra"},
    };

    json_decref(it_listener_create(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}"));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct it_http r;

        fprintf(stderr, "# %s %s (want 404)\n", cases[i].method, cases[i].path);
        it_http(d, cases[i].method, cases[i].path, NULL, &r);
        it_assert_problem(&r, 404, NULL);
        it_http_fini(&r);
    }
    {
        struct it_http r;

        it_http(d, "PATCH", "/api/v1/listeners/missing", "{\"port\":0}", &r);
        it_assert_problem(&r, 404, NULL);
        it_http_fini(&r);
    }
}

static void test_api_wrong_method_returns_405_with_allow(void **state)
{
    struct it_daemon *d = it_daemon_of(state);

    json_decref(it_listener_create(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}"));
    assert_405(d, "DELETE", "/api/v1/listeners", (const char *const[]){"GET", "POST", NULL},
               (const char *const[]){"DELETE", NULL});
    assert_405(d, "PUT", "/api/v1/listeners", (const char *const[]){"GET", "POST", NULL},
               (const char *const[]){"PUT", NULL});
    assert_405(d, "POST", "/api/v1/listeners/e1",
               (const char *const[]){"GET", "PUT", "PATCH", "DELETE", NULL},
               (const char *const[]){"POST", NULL});
    assert_405(d, "GET", "/api/v1/listeners/e1/start", (const char *const[]){"POST", NULL},
               (const char *const[]){"GET", NULL});
    assert_405(d, "DELETE", "/api/v1/listeners/e1/stop", (const char *const[]){"POST", NULL},
               (const char *const[]){"DELETE", NULL});
    assert_405(d, "POST", "/api/v1/listeners/e1/metrics", (const char *const[]){"GET", NULL},
               (const char *const[]){"POST", NULL});
    assert_405(d, "POST", "/api/v1/health", (const char *const[]){"GET", NULL},
               (const char *const[]){"POST", NULL});
    assert_405(d, "DELETE", "/api/v1/metrics", (const char *const[]){"GET", NULL},
               (const char *const[]){"DELETE", NULL});
}

static char *padded_body(size_t total)
{
    static const char head[] = "{\"id\":\"big\",\"service\":\"echo\",\"port\":0,\"pad\":\"";
    static const char tail[] = "\"}";
    char *b = malloc(total + 1);

    assert_non_null(b);
    assert_true(total > sizeof(head) + sizeof(tail));
    memcpy(b, head, sizeof(head) - 1);
    memset(b + sizeof(head) - 1, 'x', total - (sizeof(head) - 1) - (sizeof(tail) - 1));
    memcpy(b + total - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
    b[total] = '\0';
    return b;
}

static void test_api_body_over_1mib_returns_413(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *body;
    struct it_http r;

    /* Exactly 1 MiB is read (and refused for its unknown field)... */
    body = padded_body(ONE_MIB);
    assert_int_equal(
        it_http_raw(d, "POST", "/api/v1/listeners", body, ONE_MIB, "application/json", &r), 0);
    it_assert_problem(&r, 400, "pad");
    it_http_fini(&r);
    free(body);

    /* ...one byte more is too large. */
    body = padded_body(ONE_MIB + 1);
    assert_int_equal(
        it_http_raw(d, "POST", "/api/v1/listeners", body, ONE_MIB + 1, "application/json", &r), 0);
    it_assert_problem(&r, 413, NULL);
    it_http_fini(&r);

    /* A PUT too, and much larger. */
    free(body);
    body = padded_body(4 * ONE_MIB);
    assert_int_equal(
        it_http_raw(d, "PUT", "/api/v1/listeners/big", body, 4 * ONE_MIB, "application/json", &r),
        0);
    it_assert_problem(&r, 413, NULL);
    it_http_fini(&r);
    free(body);

    assert_ids(d, NULL, 0);
    /* The daemon serves on. */
    json_decref(it_http_expect(d, "GET", "/api/v1/health", NULL, 200));
}

static void test_api_non_json_body_returns_415(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *body = "{\"id\":\"t1\",\"service\":\"echo\",\"port\":0}";
    static const char *const ids[] = {"t1"};
    struct it_http r;

    it_http_raw(d, "POST", "/api/v1/listeners", body, strlen(body), "text/plain", &r);
    it_assert_problem(&r, 415, NULL);
    it_http_fini(&r);
    it_http_raw(d, "PUT", "/api/v1/listeners/t1", body, strlen(body),
                "application/x-www-form-urlencoded", &r);
    it_assert_problem(&r, 415, NULL);
    it_http_fini(&r);
    assert_ids(d, NULL, 0);

    /* A charset parameter is still JSON. */
    it_http_raw(d, "POST", "/api/v1/listeners", body, strlen(body),
                "application/json; charset=utf-8", &r);
    assert_int_equal(r.status, 201);
    it_http_fini(&r);

    it_http_raw(d, "PATCH", "/api/v1/listeners/t1", "{\"workers\":2}", 13, "text/plain", &r);
    it_assert_problem(&r, 415, NULL);
    it_http_fini(&r);
    assert_ids(d, ids, 1);
}

/* ---- PUT ---- */

static void test_api_put_replaces_and_restarts(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_t *j, *g;
    char *text;
    uint16_t port;
    struct it_http r;

    json_decref(it_listener_create(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0,"
                                      "\"max_connections\":7}"));

    j = it_http_expect(d, "PUT", "/api/v1/listeners/e1",
                       "{\"service\":\"echo\",\"port\":0,\"idle_timeout_ms\":5000,"
                       "\"options\":{\"mode\":\"once\"}}",
                       200);
    assert_string_equal(it_json_str(j, "id"), "e1");
    assert_string_equal(it_json_str(j, "options.mode"), "once");
    assert_int_equal(it_json_int(j, "idle_timeout_ms"), 5000);
    /* A replacement: what the body leaves out takes its default. */
    assert_int_equal(it_json_int(j, "max_connections"), 1024);
    assert_state(j, "running");
    port = it_bound_port(j);
    json_decref(j);
    assert_once_mode("127.0.0.1", port);
    assert_once_mode("::1", port);

    /* A GET's body sent back as is: status and metrics are ignored. */
    g = it_listener_get(d, "e1");
    text = json_dumps(g, JSON_COMPACT);
    j = it_http_expect(d, "PUT", "/api/v1/listeners/e1", text, 200);
    assert_string_equal(it_json_str(j, "options.mode"), "once");
    assert_state(j, "running");
    json_decref(j);
    free(text);
    json_decref(g);

    /* A body naming another id, or a bad field, changes nothing. */
    it_http(d, "PUT", "/api/v1/listeners/e1", "{\"id\":\"other\",\"service\":\"echo\",\"port\":0}",
            &r);
    it_assert_problem(&r, 400, "id");
    it_http_fini(&r);
    it_http(d, "PUT", "/api/v1/listeners/e1", "{\"service\":\"echo\",\"port\":0,\"workers\":0}",
            &r);
    it_assert_problem(&r, 400, "workers");
    it_http_fini(&r);
    j = it_listener_get(d, "e1");
    assert_string_equal(it_json_str(j, "options.mode"), "once");
    assert_state(j, "running");
    port = it_bound_port(j);
    json_decref(j);
    assert_once_mode("127.0.0.1", port);
}

static void test_api_put_unknown_id_creates_201(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const ids[] = {"p1"};
    struct it_http r;
    json_t *j;

    it_http(d, "PUT", "/api/v1/listeners/p1",
            "{\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}", &r);
    if (r.status != 201)
        fprintf(stderr, "# PUT create -> %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 201);
    assert_non_null(r.json);
    assert_string_equal(it_json_str(r.json, "id"), "p1");
    assert_string_equal(it_json_str(r.json, "status.state"), "running");
    it_assert_udp_echo("127.0.0.1", it_bound_port(r.json), "put", 3);
    it_http_fini(&r);

    j = it_listener_get(d, "p1");
    assert_string_equal(it_json_str(j, "transport"), "udp");
    json_decref(j);
    assert_ids(d, ids, 1);
}

/* ---- PATCH ---- */

static void test_api_patch_merges_and_null_restores_default(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;
    json_t *j;
    uint16_t port;
    static const char patch_ct[] = "application/merge-patch+json";
    static const char p1[] = "{\"idle_timeout_ms\":1000}";
    static const char p2[] = "{\"options\":{\"mode\":null}}";

    json_decref(it_listener_create(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0,"
                                      "\"idle_timeout_ms\":5000,\"max_connections\":10,"
                                      "\"options\":{\"mode\":\"once\"}}"));

    it_http_raw(d, "PATCH", "/api/v1/listeners/e1", p1, strlen(p1), patch_ct, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(r.json);
    assert_int_equal(it_json_int(r.json, "idle_timeout_ms"), 1000);
    assert_int_equal(it_json_int(r.json, "max_connections"), 10);
    assert_string_equal(it_json_str(r.json, "options.mode"), "once");
    assert_string_equal(it_json_str(r.json, "status.state"), "running");
    assert_once_mode("127.0.0.1", it_bound_port(r.json));
    it_http_fini(&r);

    /* null removes the option: back to its default, stream. */
    it_http_raw(d, "PATCH", "/api/v1/listeners/e1", p2, strlen(p2), patch_ct, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(r.json);
    assert_string_equal(it_json_str(r.json, "options.mode"), "stream");
    assert_int_equal(it_json_int(r.json, "idle_timeout_ms"), 1000);
    it_http_fini(&r);

    /* A top-level null as well, and application/json is accepted for a patch too. */
    j = it_http_expect(d, "PATCH", "/api/v1/listeners/e1", "{\"max_connections\":null}", 200);
    assert_int_equal(it_json_int(j, "max_connections"), 1024);
    assert_string_equal(it_json_str(j, "options.mode"), "stream");
    port = it_bound_port(j);
    json_decref(j);
    assert_stream_mode("127.0.0.1", port);
    assert_stream_mode("::1", port);

    /* A bad patch changes nothing. */
    it_http(d, "PATCH", "/api/v1/listeners/e1", "{\"port\":\"x\"}", &r);
    it_assert_problem(&r, 400, "port");
    it_http_fini(&r);
    it_http(d, "PATCH", "/api/v1/listeners/e1", "{\"id\":\"zz\"}", &r);
    it_assert_problem(&r, 400, "id");
    it_http_fini(&r);
    it_http(d, "PATCH", "/api/v1/listeners/e1", "{\"idle_timeout_ms\":", &r);
    it_assert_problem(&r, 400, NULL);
    it_http_fini(&r);
    j = it_listener_get(d, "e1");
    assert_int_equal(it_json_int(j, "idle_timeout_ms"), 1000);
    assert_int_equal(it_bound_port(j), port);
    assert_state(j, "running");
    json_decref(j);
    assert_stream_mode("127.0.0.1", port);
}

/* ---- DELETE ---- */

static void test_api_delete_returns_204_then_404(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_http r;
    char buf[16];
    uint16_t port, uport;

    port = it_listener_create_port(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}");
    uport = it_listener_create_port(
        d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");

    it_http(d, "DELETE", "/api/v1/listeners/e1", NULL, &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    it_http_fini(&r);
    it_http(d, "GET", "/api/v1/listeners/e1", NULL, &r);
    it_assert_problem(&r, 404, NULL);
    it_http_fini(&r);
    it_http(d, "DELETE", "/api/v1/listeners/e1", NULL, &r);
    it_assert_problem(&r, 404, NULL);
    it_http_fini(&r);
    /* The port is closed once the answer came. */
    assert_true(it_tcp_is_refused("127.0.0.1", port));
    assert_true(it_tcp_is_refused("::1", port));

    it_http(d, "DELETE", "/api/v1/listeners/u1", NULL, &r);
    assert_int_equal(r.status, 204);
    it_http_fini(&r);
    assert_int_equal(it_udp_exchange("127.0.0.1", uport, "x", 1, buf, sizeof(buf), 2000),
                     -ECONNREFUSED);
    assert_ids(d, NULL, 0);
}

/* ---- start, stop ---- */

static void test_api_stop_start_changes_state_and_port(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char buf[16];
    json_t *j;
    uint16_t port, uport;

    port = it_listener_create_port(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}");
    uport = it_listener_create_port(
        d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");

    j = it_http_expect(d, "POST", "/api/v1/listeners/e1/stop", NULL, 200);
    assert_state(j, "stopped");
    assert_false(it_json_bool(j, "enabled"));
    json_decref(j);
    assert_true(it_tcp_is_refused("127.0.0.1", port));
    assert_true(it_tcp_is_refused("::1", port));
    j = it_listener_get(d, "e1");
    assert_state(j, "stopped");
    json_decref(j);
    /* Stopping a stopped listener is not an error. */
    j = it_http_expect(d, "POST", "/api/v1/listeners/e1/stop", NULL, 200);
    assert_state(j, "stopped");
    json_decref(j);

    j = it_http_expect(d, "POST", "/api/v1/listeners/e1/start", NULL, 200);
    assert_state(j, "running");
    assert_true(it_json_bool(j, "enabled"));
    port = it_bound_port(j);
    json_decref(j);
    it_assert_tcp_echo("127.0.0.1", port, "back", 4);
    it_assert_tcp_echo("::1", port, "back", 4);

    j = it_http_expect(d, "POST", "/api/v1/listeners/u1/stop", NULL, 200);
    assert_state(j, "stopped");
    json_decref(j);
    assert_int_equal(it_udp_exchange("127.0.0.1", uport, "x", 1, buf, sizeof(buf), 2000),
                     -ECONNREFUSED);
    j = it_http_expect(d, "POST", "/api/v1/listeners/u1/start", NULL, 200);
    assert_state(j, "running");
    it_assert_udp_echo("::1", it_bound_port(j), "udp back", 8);
    json_decref(j);
}

static void test_api_create_disabled_then_start(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_t *j;

    j = it_listener_create(d, "{\"id\":\"off\",\"service\":\"echo\",\"port\":0,"
                              "\"enabled\":false}");
    assert_false(it_json_bool(j, "enabled"));
    assert_state(j, "stopped");
    json_decref(j);

    j = it_http_expect(d, "POST", "/api/v1/listeners/off/start", NULL, 200);
    assert_state(j, "running");
    it_assert_tcp_echo("127.0.0.1", it_bound_port(j), "on", 2);
    json_decref(j);
}

/* ---- metrics ---- */

static const char *const counter_names[] = {
    "connections_total", "connections_active", "connections_rejected", "bytes_in",      "bytes_out",
    "datagrams_in",      "datagrams_out",      "datagrams_dropped",    "idle_timeouts", "errors",
};

static void assert_metrics_object(const json_t *m)
{
    assert_true(json_is_object(m));
    for (size_t i = 0; i < sizeof(counter_names) / sizeof(counter_names[0]); i++)
        (void)it_json_int(m, counter_names[i]);
    assert_true(json_is_object(json_object_get(m, "service")));
}

static void test_api_metrics_routes_report_every_counter(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_t *j, *all;
    uint16_t port, uport;

    port = it_listener_create_port(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}");
    uport = it_listener_create_port(
        d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");

    j = it_http_expect(d, "GET", "/api/v1/listeners/e1/metrics", NULL, 200);
    assert_metrics_object(j);
    assert_int_equal(it_json_int(j, "bytes_in"), 0);
    json_decref(j);

    it_assert_tcp_echo("127.0.0.1", port, "12345", 5);
    it_assert_udp_echo("127.0.0.1", uport, "123", 3);
    it_assert_metric_eventually(d, "e1", "bytes_out", 5, IT_WAIT_MS);
    it_assert_metric_eventually(d, "u1", "datagrams_out", 1, IT_WAIT_MS);

    all = it_http_expect(d, "GET", "/api/v1/metrics", NULL, 200);
    j = json_object_get(all, "listeners");
    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), 2);
    assert_metrics_object(json_object_get(j, "e1"));
    assert_metrics_object(json_object_get(j, "u1"));
    assert_int_equal(it_json_int(j, "e1.bytes_in"), 5);
    assert_int_equal(it_json_int(j, "e1.connections_total"), 1);
    assert_int_equal(it_json_int(j, "u1.bytes_in"), 3);
    assert_int_equal(it_json_int(j, "u1.datagrams_in"), 1);
    json_decref(all);

    /* The resource carries them too. */
    j = it_listener_get(d, "u1");
    assert_metrics_object(json_object_get(j, "metrics"));
    assert_int_equal(it_json_int(j, "metrics.bytes_out"), 3);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
        T(test_api_health_get_returns_ok),
        T(test_api_documents_served),
        T(test_api_list_empty_returns_empty_array),
        T(test_api_create_tcp_port0_returns_201_with_bound_port),
        T(test_api_create_udp_and_address_returns_resource),
        T(test_api_create_without_id_makes_one_up),
        T(test_api_list_orders_by_id),
        T(test_api_create_bad_input_returns_400_naming_field),
        T(test_api_create_taken_id_returns_409),
        T(test_api_create_port_used_by_listener_returns_409),
        T(test_api_create_port_used_by_other_socket_returns_409),
        T(test_api_unknown_route_returns_404),
        T(test_api_wrong_method_returns_405_with_allow),
        T(test_api_body_over_1mib_returns_413),
        T(test_api_non_json_body_returns_415),
        T(test_api_put_replaces_and_restarts),
        T(test_api_put_unknown_id_creates_201),
        T(test_api_patch_merges_and_null_restores_default),
        T(test_api_delete_returns_204_then_404),
        T(test_api_stop_start_changes_state_and_port),
        T(test_api_create_disabled_then_start),
        T(test_api_metrics_routes_report_every_counter),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
