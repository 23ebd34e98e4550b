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

#include <jansson.h>

#include "api/assets.h"
#include "api/events.h"
#include "api/handlers.h"
#include "api/prometheus.h"
#include "api/reply.h"
#include "api/routes.h"
#include "api/upload.h"
#include "core/buf.h"

/* Matches method and path, expecting a route; returns it. */
static const struct api_route *match_ok(const char *method, const char *path, struct api_match *m)
{
    assert_int_equal(api_route_match(method, path, m), 0);
    assert_non_null(m->route);
    return m->route;
}

static void test_routes_listener_path_captures_id(void **state)
{
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("GET", "/api/v1/listeners/echo-tcp", &m)->handler,
                     api_handle_listener_get);
    assert_int_equal(m.captures.id.len, strlen("echo-tcp"));
    assert_memory_equal(m.captures.id.at, "echo-tcp", m.captures.id.len);
    assert_null(m.captures.name.at);
}

static void test_routes_each_method_of_listener_selects_its_handler(void **state)
{
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("PUT", "/api/v1/listeners/e1", &m)->handler,
                     api_handle_listener_replace);
    assert_int_equal(m.route->body, API_BODY_JSON);
    assert_ptr_equal(match_ok("PATCH", "/api/v1/listeners/e1", &m)->handler,
                     api_handle_listener_patch);
    assert_int_equal(m.route->body, API_BODY_MERGE_PATCH);
    assert_ptr_equal(match_ok("DELETE", "/api/v1/listeners/e1", &m)->handler,
                     api_handle_listener_delete);
    assert_ptr_equal(match_ok("POST", "/api/v1/listeners", &m)->handler,
                     api_handle_listener_create);
    assert_int_equal(m.route->body, API_BODY_JSON);
    assert_null(m.captures.id.at);
    assert_ptr_equal(match_ok("GET", "/api/v1/listeners", &m)->handler, api_handle_listeners_list);
    assert_ptr_equal(match_ok("GET", "/api/v1/health", &m)->handler, api_handle_health);
    assert_ptr_equal(match_ok("GET", "/api/v1/metrics", &m)->handler, api_handle_metrics);
}

static void test_routes_sub_resources_capture_id(void **state)
{
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("POST", "/api/v1/listeners/a.b_c-1/start", &m)->handler,
                     api_handle_listener_start);
    assert_memory_equal(m.captures.id.at, "a.b_c-1", m.captures.id.len);
    assert_int_equal(m.route->body, API_BODY_NONE);
    assert_ptr_equal(match_ok("POST", "/api/v1/listeners/x/stop", &m)->handler,
                     api_handle_listener_stop);
    assert_memory_equal(m.captures.id.at, "x", m.captures.id.len);
    assert_int_equal(m.captures.id.len, 1);
    assert_ptr_equal(match_ok("GET", "/api/v1/listeners/y/metrics", &m)->handler,
                     api_handle_listener_metrics);
    assert_memory_equal(m.captures.id.at, "y", m.captures.id.len);
}

static void test_routes_unknown_path_is_enoent(void **state)
{
    static const char *const paths[] = {
        "/nope",
        "/api/v1",
        "/api/v1/",
        "/api/v1/listeners/",       /* empty id */
        "/api/v1/listeners//start", /* empty id */
        "/api/v1/listeners/e1/",
        "/api/v1/listeners/e1/restart",
        "/api/v1/listeners/e1/start/now",
        "/api/v2/listeners",
        "/api/v1/listenersX",
        "/api/v1/config/",
        "/api/v1/config/revisions/",
        "/api/v1/config/revisions//restore",
        "/api/v1/config/revisions/1/",
        "/api/v1/config/revisions/1/restore/now",
        "/api/v1/config/revision/1",
        "//api/v1/listeners",
        "api/v1/listeners",
        "",
    };
    struct api_match m;

    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int r = api_route_match("GET", paths[i], &m);

        if (r != -ENOENT)
            fail_msg("GET '%s': %d, expected -ENOENT", paths[i], r);
    }
}

static void test_routes_wrong_method_is_eopnotsupp_with_allow(void **state)
{
    struct api_match m;
    char allow[API_ALLOW_MAX];

    (void)state;
    assert_int_equal(api_route_match("DELETE", "/api/v1/listeners", &m), -EOPNOTSUPP);
    assert_int_equal(api_methods_format(m.allow, allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, HEAD, POST");

    assert_int_equal(api_route_match("POST", "/api/v1/listeners/e1", &m), -EOPNOTSUPP);
    assert_int_equal(api_methods_format(m.allow, allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, HEAD, PUT, PATCH, DELETE");

    assert_int_equal(api_route_match("GET", "/api/v1/listeners/e1/start", &m), -EOPNOTSUPP);
    assert_int_equal(api_methods_format(m.allow, allow, sizeof(allow)), 0);
    assert_string_equal(allow, "POST");

    assert_int_equal(api_route_match("PUT", "/api/v1/health", &m), -EOPNOTSUPP);
    assert_int_equal(api_methods_format(m.allow, allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, HEAD");
}

static void test_routes_unknown_or_lowercase_method_is_eopnotsupp(void **state)
{
    struct api_match m;

    (void)state;
    assert_int_equal(api_route_match("get", "/api/v1/health", &m), -EOPNOTSUPP);
    assert_int_equal(api_route_match("OPTIONS", "/api/v1/listeners", &m), -EOPNOTSUPP);
    assert_int_equal(api_route_match("BREW", "/api/v1/listeners/e1", &m), -EOPNOTSUPP);
    assert_int_equal(api_method_from_name("OPTIONS"), API_METHOD_OTHER);
}

static void test_routes_head_runs_the_get_handler(void **state)
{
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("HEAD", "/api/v1/listeners/e1", &m)->handler,
                     api_handle_listener_get);
    assert_ptr_equal(match_ok("HEAD", "/api/v1/health", &m)->handler, api_handle_health);
    assert_int_equal(api_route_match("HEAD", "/api/v1/listeners/e1/stop", &m), -EOPNOTSUPP);
}

static void test_routes_assets_match_get_and_head_only(void **state)
{
    struct api_match m;
    char allow[API_ALLOW_MAX];

    (void)state;
    assert_ptr_equal(match_ok("GET", "/", &m)->handler, api_handle_asset);
    assert_ptr_equal(match_ok("GET", "/index.html", &m)->handler, api_handle_asset);
    assert_ptr_equal(match_ok("HEAD", "/openapi.yaml", &m)->handler, api_handle_asset);
    assert_int_equal(api_route_match("POST", "/", &m), -EOPNOTSUPP);
    assert_int_equal(api_methods_format(m.allow, allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(api_route_match("GET", "/missing.js", &m), -ENOENT);
}

static void test_assets_root_is_index_and_types_are_right(void **state)
{
    const struct api_asset *index = api_asset_find("/index.html");
    const struct api_asset *doc = api_asset_find("/openapi.yaml");

    (void)state;
    assert_non_null(index);
    assert_ptr_equal(api_asset_find("/"), index);
    assert_string_equal(index->content_type, "text/html; charset=utf-8");
    assert_true(index->len > 0);
    assert_non_null(doc);
    assert_string_equal(doc->content_type, "application/yaml");
    assert_true(doc->len > 0 && memcmp(doc->data, "openapi: 3.1", 12) == 0);
    assert_true(doc->etag[0] == '"' && doc->etag[strlen(doc->etag) - 1] == '"');
    assert_null(api_asset_find("/web/index.html"));
    assert_null(api_asset_find(""));
}

static void test_methods_format_small_buffer_is_enospc(void **state)
{
    char buf[8] = "junk";
    unsigned all = API_METHOD_BIT(API_METHOD_GET) | API_METHOD_BIT(API_METHOD_HEAD) |
                   API_METHOD_BIT(API_METHOD_DELETE);

    (void)state;
    assert_int_equal(api_methods_format(all, buf, sizeof(buf)), -ENOSPC);
    assert_string_equal(buf, "");
    assert_int_equal(api_methods_format(0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
}

static void test_status_from_errno_maps_each_code(void **state)
{
    static const struct {
        int code;
        unsigned status;
    } cases[] = {
        {-EINVAL, 400}, {-ENOENT, 404}, {-EEXIST, 409}, {-EADDRINUSE, 409}, {-EADDRNOTAVAIL, 409},
        {-EACCES, 403}, {-EPERM, 403},  {-EBUSY, 409},  {-EMLINK, 409},     {-ENOSPC, 507},
        {-EDQUOT, 507}, {-ESTALE, 412}, {-E2BIG, 413},  {-EFBIG, 413},      {-ENOMEM, 500},
        {-EIO, 500},    {-EROFS, 500},  {0, 500},       {EINVAL, 500},      {ESTALE, 500},
        {-EMFILE, 503}, {-ENFILE, 503},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (api_status_from_errno(cases[i].code) != cases[i].status)
            fail_msg("errno %d: %u, expected %u", cases[i].code,
                     api_status_from_errno(cases[i].code), cases[i].status);
}

static void test_status_title_is_the_reason_phrase(void **state)
{
    (void)state;
    assert_string_equal(api_status_title(400), "Bad Request");
    assert_string_equal(api_status_title(404), "Not Found");
    assert_string_equal(api_status_title(405), "Method Not Allowed");
    assert_string_equal(api_status_title(409), "Conflict");
    assert_string_equal(api_status_title(413), "Content Too Large");
    assert_string_equal(api_status_title(415), "Unsupported Media Type");
    assert_string_equal(api_status_title(500), "Internal Server Error");
}

static void test_problem_with_field_names_it(void **state)
{
    json_t *p = api_problem_new(400, "port: must be an integer from 0 to 65535", "port");
    char *text;

    (void)state;
    assert_non_null(p);
    text = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"detail\":\"port: must be an integer from 0 to 65535\","
                              "\"field\":\"port\",\"status\":400,\"title\":\"Bad Request\","
                              "\"type\":\"about:blank\"}");
    free(text);
    json_decref(p);
}

static void test_problem_without_field_has_no_field_member(void **state)
{
    json_t *p = api_problem_new(404, "no listener with id 'x'", "");

    (void)state;
    assert_non_null(p);
    assert_null(json_object_get(p, "field"));
    assert_string_equal(json_string_value(json_object_get(p, "title")), "Not Found");
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 404);
    json_decref(p);
    p = api_problem_new(409, "taken", NULL);
    assert_null(json_object_get(p, "field"));
    json_decref(p);
}

static void test_problem_with_invalid_utf8_replaces_bad_bytes(void **state)
{
    /* A path's raw bytes, and a message cut in the middle of "é" (0xc3 0xa9). */
    json_t *p = api_problem_new(404, "no such resource: /\xff\xfeok", "caf\xc3");

    (void)state;
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "detail")), "no such resource: /??ok");
    assert_string_equal(json_string_value(json_object_get(p, "field")), "caf?");
    json_decref(p);
    p = api_problem_new(400, "caf\xc3\xa9 \xe2\x82\xac \xed\xa0\x80 \xf0\x9f\x98\x80", NULL);
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "detail")),
                        "caf\xc3\xa9 \xe2\x82\xac ??? \xf0\x9f\x98\x80");
    json_decref(p);
}

static void test_reply_error_uses_err_message_and_field(void **state)
{
    struct api_reply r;
    struct core_err err = {.msg = "port 7007 is in use", .field = ""};
    struct core_err bad = {.msg = "options.mode: must be stream or once", .field = "options.mode"};

    (void)state;
    api_reply_init(&r);
    api_reply_error(&r, -EADDRINUSE, &err);
    assert_int_equal(r.status, 409);
    assert_true(r.is_problem);
    assert_string_equal(r.detail, "port 7007 is in use");
    assert_string_equal(r.field, "");

    api_reply_error(&r, -EINVAL, &bad);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.field, "options.mode");

    api_reply_error(&r, -ENOSPC, NULL);
    assert_int_equal(r.status, 507);
    assert_string_equal(r.detail, strerror(ENOSPC));
    api_reply_fini(&r);
}

static void test_reply_json_null_body_is_500(void **state)
{
    struct api_reply r;

    (void)state;
    api_reply_init(&r);
    api_reply_json(&r, 200, NULL);
    assert_int_equal(r.status, 500);
    assert_true(r.is_problem);
    api_reply_fini(&r);
}

static void test_body_type_json_with_parameters_is_accepted(void **state)
{
    (void)state;
    assert_true(api_body_type_is_accepted(API_BODY_JSON, "application/json"));
    assert_true(api_body_type_is_accepted(API_BODY_JSON, "application/json; charset=utf-8"));
    assert_true(api_body_type_is_accepted(API_BODY_JSON, "Application/JSON;charset=UTF-8"));
    assert_true(api_body_type_is_accepted(API_BODY_JSON, " application/json "));
    assert_true(api_body_type_is_accepted(API_BODY_MERGE_PATCH, "application/json"));
    assert_true(api_body_type_is_accepted(API_BODY_MERGE_PATCH, "application/merge-patch+json"));
    assert_true(api_body_type_is_accepted(API_BODY_NONE, NULL));
    assert_true(api_body_type_is_accepted(API_BODY_NONE, "text/plain"));
}

static void test_body_type_other_or_absent_is_refused(void **state)
{
    (void)state;
    assert_false(api_body_type_is_accepted(API_BODY_JSON, NULL));
    assert_false(api_body_type_is_accepted(API_BODY_JSON, ""));
    assert_false(api_body_type_is_accepted(API_BODY_JSON, "text/plain"));
    assert_false(api_body_type_is_accepted(API_BODY_JSON, "application/x-www-form-urlencoded"));
    assert_false(api_body_type_is_accepted(API_BODY_JSON, "application/jsonx"));
    assert_false(api_body_type_is_accepted(API_BODY_JSON, "application/merge-patch+json"));
    assert_false(api_body_type_is_accepted(API_BODY_MERGE_PATCH, "text/json"));
    assert_false(api_body_type_is_accepted(API_BODY_MERGE_PATCH, NULL));
}

static void test_body_length_over_limit_is_efbig(void **state)
{
    (void)state;
    assert_int_equal(api_body_length_check(NULL, 1024), 0);
    assert_int_equal(api_body_length_check("0", 1024), 0);
    assert_int_equal(api_body_length_check("1024", 1024), 0);
    assert_int_equal(api_body_length_check("1025", 1024), -EFBIG);
    assert_int_equal(api_body_length_check("99999999999999999999999", 1024), -EFBIG);
    assert_int_equal(api_body_length_check("-1", 1024), -EINVAL);
    assert_int_equal(api_body_length_check("12abc", 1024), -EINVAL);
    assert_int_equal(api_body_length_check("", 1024), -EINVAL);
}

static void test_body_parse_malformed_json_says_where(void **state)
{
    struct core_err err = {0};
    json_t *j = NULL;
    const char text[] = "{\"port\": 7007,}";

    (void)state;
    assert_int_equal(api_body_parse(text, strlen(text), &j, &err), -EINVAL);
    assert_null(j);
    assert_non_null(strstr(err.msg, "malformed JSON"));
    assert_non_null(strstr(err.msg, "line 1, column 15, position 15"));
    assert_string_equal(err.field, "");
}

static void test_body_parse_non_object_is_einval(void **state)
{
    struct core_err err = {0};
    json_t *j = NULL;

    (void)state;
    assert_int_equal(api_body_parse("[1,2]", 5, &j, &err), -EINVAL);
    assert_string_equal(err.msg, "the body must be a JSON object");
    assert_int_equal(api_body_parse("", 0, &j, &err), -EINVAL);
    assert_null(j);
}

static void test_body_parse_object_is_returned(void **state)
{
    struct core_err err = {0};
    json_t *j = NULL;
    const char text[] = "{\"service\":\"echo\",\"port\":0}";

    (void)state;
    assert_int_equal(api_body_parse(text, strlen(text), &j, &err), 0);
    assert_string_equal(json_string_value(json_object_get(j, "service")), "echo");
    json_decref(j);
}

static void test_etag_matches_exact_weak_list_and_star(void **state)
{
    const char *etag = "\"abc123\"";

    (void)state;
    assert_true(api_etag_matches("\"abc123\"", etag));
    assert_true(api_etag_matches("W/\"abc123\"", etag));
    assert_true(api_etag_matches("\"zzz\", \"abc123\"", etag));
    assert_true(api_etag_matches("*", etag));
    assert_false(api_etag_matches("\"abc12\"", etag));
    assert_false(api_etag_matches("\"abc1234\"", etag));
    assert_false(api_etag_matches("abc123", etag));
    assert_false(api_etag_matches("", etag));
    assert_false(api_etag_matches("\"abc123", etag));
}

/* Asserts that capture c of a match holds text. */
static void assert_capture(const struct api_segment *c, const char *text)
{
    assert_non_null(c->at);
    if (c->len != strlen(text) || memcmp(c->at, text, c->len) != 0)
        fail_msg("captured '%.*s', expected '%s'", (int)c->len, c->at, text);
}

static void test_routes_file_path_captures_id_and_name(void **state)
{
    const char *path = "/api/v1/listeners/backup-tcp/files/report 2026.tar.gz";
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("GET", path, &m)->handler, api_handle_listener_file_get);
    assert_capture(&m.captures.id, "backup-tcp");
    assert_capture(&m.captures.name, "report 2026.tar.gz");
    /* The captures point into the path itself. */
    assert_ptr_equal(m.captures.id.at, path + strlen("/api/v1/listeners/"));
    assert_ptr_equal(match_ok("HEAD", "/api/v1/listeners/b/files/x", &m)->handler,
                     api_handle_listener_file_get);
    assert_capture(&m.captures.name, "x");
}

static void test_routes_files_list_captures_id_only(void **state)
{
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("GET", "/api/v1/listeners/b1/files", &m)->handler,
                     api_handle_listener_files);
    assert_capture(&m.captures.id, "b1");
    assert_null(m.captures.name.at);
    assert_int_equal(m.captures.name.len, 0);
}

static void test_routes_file_name_must_be_one_nonempty_segment(void **state)
{
    static const char *const paths[] = {
        "/api/v1/listeners/b1/files/",    /* empty name */
        "/api/v1/listeners/b1/files/a/b", /* a name with '/' once decoded */
        "/api/v1/listeners//files/x",     /* empty id */
        "/api/v1/listeners/b1/files/x/",  /* trailing slash */
        "/api/v1/listeners/b1/file/x",    /* not the files collection */
        "/api/v1/listeners/b1/files/x/versions",
    };
    struct api_match m;

    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int r = api_route_match("GET", paths[i], &m);

        if (r != -ENOENT)
            fail_msg("GET '%s': %d, expected -ENOENT", paths[i], r);
    }
}

static void test_routes_files_are_read_and_put_events_get_only(void **state)
{
    struct api_match m;
    char allow[API_ALLOW_MAX];

    (void)state;
    assert_int_equal(api_route_match("DELETE", "/api/v1/listeners/b1/files/x", &m), -EOPNOTSUPP);
    assert_int_equal(api_methods_format(m.allow, allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, HEAD, PUT");
    assert_ptr_equal(match_ok("PUT", "/api/v1/listeners/b1/files/x", &m)->handler,
                     api_handle_listener_file_put);
    assert_int_equal(m.route->body, API_BODY_OCTETS);
    assert_int_equal(api_route_match("POST", "/api/v1/listeners/b1/files", &m), -EOPNOTSUPP);
    assert_int_equal(api_methods_format(m.allow, allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, HEAD");
    assert_ptr_equal(match_ok("GET", "/api/v1/events", &m)->handler, api_handle_events);
    assert_null(m.captures.id.at);
    assert_int_equal(api_route_match("POST", "/api/v1/events", &m), -EOPNOTSUPP);
    assert_int_equal(api_route_match("GET", "/api/v1/events/1", &m), -ENOENT);
}

static void test_digest_parse_takes_sha256_among_others(void **state)
{
    static const char empty_hex[] =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    uint8_t sha[API_UPLOAD_SHA256_LEN];
    char text[64];

    (void)state;
    assert_int_equal(
        api_digest_parse("sha-512=:AAAA:, sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
                         sha),
        1);
    assert_int_equal(sha[0], 0xe3);
    assert_int_equal(sha[31], 0x55);
    assert_int_equal(api_digest_parse("md5=:AAAA:", sha), 0);
    assert_int_equal(api_digest_parse("", sha), 0);
    assert_int_equal(api_digest_parse("sha-256=:abc:", sha), -EINVAL);
    assert_int_equal(api_digest_parse("sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", sha),
                     -EINVAL);
    assert_int_equal(
        api_digest_parse("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hS!FU=:", sha), -EINVAL);
    assert_int_equal(api_digest_format(empty_hex, text, sizeof(text)), 0);
    assert_string_equal(text, "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
    assert_int_equal(api_digest_format("zz", text, sizeof(text)), -EINVAL);
}

static void test_version_parse_accepts_digits_only(void **state)
{
    static const char *const bad[] = {"",    "-1",   "+1",  " 1",         "1 ",
                                      "1.0", "0x10", "abc", "4294967296", "99999999999999999999"};
    unsigned v = 77;

    (void)state;
    assert_int_equal(api_version_parse(NULL, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(api_version_parse("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(api_version_parse("1", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(api_version_parse("4294967295", &v), 0);
    assert_int_equal(v, 4294967295u);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 77;
        if (api_version_parse(bad[i], &v) != -EINVAL || v != 77)
            fail_msg("version '%s' was accepted (%u)", bad[i], v);
    }
}

static void test_content_disposition_plain_name_is_both_forms(void **state)
{
    char buf[API_DISPOSITION_MAX];

    (void)state;
    assert_int_equal(api_content_disposition("notes-1.txt", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "attachment; filename=\"notes-1.txt\"; filename*=UTF-8''notes-1.txt");
}

static void test_content_disposition_unsafe_bytes_are_encoded_and_replaced(void **state)
{
    char buf[API_DISPOSITION_MAX];

    (void)state;
    /* A space, quotes, a backslash, a percent sign, a semicolon, CR LF and UTF-8 "è". */
    assert_int_equal(api_content_disposition("a b\"c\\d%e;f\r\ng\xc3\xa8.txt", buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "attachment; filename=\"a b_c_d_e;f__g__.txt\"; "
                             "filename*=UTF-8''a%20b%22c%5Cd%25e%3Bf%0D%0Ag%C3%A8.txt");
}

static void test_content_disposition_longest_name_fits(void **state)
{
    char name[256], buf[API_DISPOSITION_MAX];

    (void)state;
    memset(name, ' ', 255); /* every byte percent-encoded: the longest value */
    name[255] = '\0';
    assert_int_equal(api_content_disposition(name, buf, sizeof(buf)), 0);
    assert_int_equal(strlen(buf), strlen("attachment; filename=\"\"; filename*=UTF-8''") + 255 * 4);
    assert_int_equal(api_content_disposition(name, buf, 100), -ENOSPC);
    assert_string_equal(buf, "");
}

static void test_reply_file_fini_closes_an_unsent_fd(void **state)
{
    struct api_reply r;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    (void)state;
    assert_true(fd >= 0);
    api_reply_init(&r);
    assert_int_equal(r.fd, -1);
    api_reply_file(&r, fd, 0, "x.bin");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.fd, fd);
    assert_true(r.no_store);
    assert_string_equal(r.disposition, "attachment; filename=\"x.bin\"; filename*=UTF-8''x.bin");
    api_reply_fini(&r);
    assert_int_equal(r.fd, -1);
    assert_int_equal(fcntl(fd, F_GETFD), -1); /* closed */
    api_reply_fini(&r);                       /* twice is harmless */
}

static void test_reply_problem_after_file_closes_the_fd(void **state)
{
    struct api_reply r;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    (void)state;
    api_reply_init(&r);
    api_reply_file(&r, fd, 0, "x.bin");
    api_reply_problem(&r, 404, NULL, "gone");
    assert_int_equal(r.fd, -1);
    assert_false(r.no_store);
    assert_string_equal(r.disposition, "");
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    api_reply_fini(&r);
}

/* A query that knows one parameter, "version", whose value is the request's path. */
static const char *query_version_is_path(const struct api_request *req, const char *key)
{
    return strcmp(key, "version") == 0 ? req->path : NULL;
}

static void test_handle_file_get_bad_version_is_400_naming_version(void **state)
{
    static const char *const bad[] = {"", "-1", "one", "1.5"};
    struct api_reply r;

    (void)state;
    api_reply_init(&r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* The registry is never reached: the version is checked first. */
        const struct api_request req = {
            .path = bad[i], .id = "b1", .name = "f", .query = query_version_is_path};

        api_handle_listener_file_get(&req, &r);
        assert_int_equal(r.status, 400);
        assert_true(r.is_problem);
        assert_string_equal(r.field, "version");
    }
    api_reply_fini(&r);
}

static void test_handle_events_without_bus_is_503(void **state)
{
    const struct api_request req = {.path = "/api/v1/events"};
    struct api_reply r;

    (void)state;
    api_reply_init(&r);
    api_handle_events(&req, &r);
    assert_int_equal(r.status, 503);
    assert_true(r.is_problem);
    assert_string_equal(r.detail, "event stream unavailable");
    assert_null(r.stream);
    api_reply_fini(&r);
}

static void test_event_id_parse_decimal_with_blanks(void **state)
{
    static const char *const bad[] = {"",   " ",   "-1",  "+1",
                                      "1a", "0x1", "1 2", "18446744073709551616"};
    uint64_t id = 5;

    (void)state;
    assert_int_equal(api_event_id_parse("42", &id), 0);
    assert_int_equal(id, 42);
    assert_int_equal(api_event_id_parse(" 7\t", &id), 0);
    assert_int_equal(id, 7);
    assert_int_equal(api_event_id_parse("18446744073709551615", &id), 0);
    assert_true(id == UINT64_MAX);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        id = 5;
        if (api_event_id_parse(bad[i], &id) != -EINVAL || id != 5)
            fail_msg("event id '%s' was accepted", bad[i]);
    }
}

/* api_event_append() of data into a fresh buffer, NUL-terminated; free() it. */
static char *event_text(uint64_t id, const char *type, const char *data)
{
    struct core_buf b = {0};
    char *text;

    assert_int_equal(api_event_append(&b, id, type, data, strlen(data)), 0);
    text = strndup((const char *)b.data, b.len);
    core_buf_fini(&b);
    assert_non_null(text);
    return text;
}

static void test_event_append_is_id_event_data_blank_line(void **state)
{
    char *text = event_text(12, "listener.deleted", "{\"id\":\"e1\"}");

    (void)state;
    assert_string_equal(text, "id: 12\nevent: listener.deleted\ndata: {\"id\":\"e1\"}\n\n");
    free(text);
}

static void test_event_append_multiline_data_gets_a_data_line_each(void **state)
{
    char *text = event_text(1, "x", "a\nb\r\nc\rd");

    (void)state;
    assert_string_equal(text, "id: 1\nevent: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    free(text);
    text = event_text(2, "x", "");
    assert_string_equal(text, "id: 2\nevent: x\ndata: \n\n");
    free(text);
    text = event_text(3, "x", "end\n");
    assert_string_equal(text, "id: 3\nevent: x\ndata: end\ndata: \n\n");
    free(text);
}

static void test_event_append_adds_to_what_is_there(void **state)
{
    struct core_buf b = {0};

    (void)state;
    assert_int_equal(core_buf_append(&b, "retry: 2000\n\n", 13), 0);
    assert_int_equal(api_event_append(&b, 9, "metrics", "{}", 2), 0);
    assert_int_equal(b.len, strlen("retry: 2000\n\nid: 9\nevent: metrics\ndata: {}\n\n"));
    assert_memory_equal(b.data, "retry: 2000\n\nid: 9\nevent: metrics\ndata: {}\n\n", b.len);
    core_buf_fini(&b);
}

static void test_routes_prometheus_metrics_is_get_only(void **state)
{
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("GET", "/metrics", &m)->handler, api_handle_prometheus);
    assert_ptr_equal(match_ok("HEAD", "/metrics", &m)->handler, api_handle_prometheus);
    assert_int_equal(api_route_match("POST", "/metrics", &m), -EOPNOTSUPP);
    assert_int_equal(api_route_match("GET", "/metrics/x", &m), -ENOENT);
}

static void test_reply_text_owns_its_body_and_sets_type(void **state)
{
    struct api_reply r;
    char *text = strdup("a 1\n");

    (void)state;
    assert_non_null(text);
    api_reply_init(&r);
    api_reply_text(&r, 200, API_PROM_CONTENT_TYPE, text, strlen(text));
    assert_int_equal(r.status, 200);
    assert_ptr_equal(r.text, text);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_true(r.no_store);
    api_reply_problem(&r, 500, NULL, "x"); /* frees the text (the sanitizer would see a leak) */
    assert_null(r.text);
    assert_null(r.content_type);
    api_reply_fini(&r);
}

/* Times the exposition of one listener observed. */
static uint64_t times_seen(const char *text, const char *needle)
{
    uint64_t n = 0;

    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The exposition of ls as a NUL-terminated string; free() it. */
static char *render(const struct api_prom_listener *ls, size_t n)
{
    struct core_buf b = {0};
    char *text;

    assert_int_equal(api_prom_render(ls, n, "1.2.3", 42, &b), 0);
    text = strndup((const char *)b.data, b.len);
    core_buf_fini(&b);
    assert_non_null(text);
    return text;
}

static void test_prom_cumulative_counts_only_buckets_wholly_below(void **state)
{
    struct core_metrics m;
    struct core_metrics_snapshot s;

    (void)state;
    core_metrics_init(&m);
    core_metrics_record_latency(&m, 8000);    /* [7168, 8192): under 10 us */
    core_metrics_record_latency(&m, 10000);   /* [8192, 10240): crosses 10 us, so above it */
    core_metrics_record_latency(&m, 1000000); /* [917504, 1048576): crosses 1 ms */
    core_metrics_snapshot(&m, &s);
    assert_int_equal(api_prom_cumulative(&s, 10000), 1);
    assert_int_equal(api_prom_cumulative(&s, 25000), 2);
    assert_int_equal(api_prom_cumulative(&s, 1000000), 2);
    assert_int_equal(api_prom_cumulative(&s, 2500000), 3);
    assert_int_equal(api_prom_cumulative(&s, 0), 0);
    for (unsigned i = 1; i < API_PROM_LE_COUNT; i++)
        assert_true(api_prom_le_ns[i] > api_prom_le_ns[i - 1]);
}

static void test_prom_render_families_once_labels_escaped_histogram_cumulative(void **state)
{
    static const char *const echo_names[] = {"dropped_too_long"};
    static const char *const other_names[] = {"dropped_too_long", "files.stored"};
    struct core_metrics m1, m2;
    struct core_metrics_snapshot s1, s2;
    struct api_prom_listener ls[2] = {
        {.id = "e1",
         .service = "echo",
         .transport = "tcp",
         .up = true,
         .m = &s1,
         .svc_names = echo_names,
         .n_svc = 1},
        {.id = "we\\ird\"id\n",
         .service = "backup",
         .transport = "tcp",
         .up = false,
         .m = &s2,
         .svc_names = other_names,
         .n_svc = 2},
    };
    char *text;

    (void)state;
    core_metrics_init(&m1);
    core_metrics_init(&m2);
    core_metrics_add(&m1, CORE_CTR_BYTES_IN, 120);
    core_metrics_add(&m1, CORE_CTR_CONNECTIONS_TOTAL, 3);
    core_metrics_add(&m1, CORE_CTR_CONNECTIONS_ACTIVE, 1);
    core_metrics_svc_add(&m1, 0, 4);
    core_metrics_svc_add(&m2, 1, 9);
    core_metrics_record_latency(&m1, 8000);
    core_metrics_record_latency(&m1, 10000);
    core_metrics_snapshot(&m1, &s1);
    core_metrics_snapshot(&m2, &s2);
    text = render(ls, 2);

    assert_non_null(strstr(text, "# HELP sockserv_bytes_in_total "));
    assert_non_null(strstr(text, "\n# TYPE sockserv_bytes_in_total counter\n"
                                 "sockserv_bytes_in_total{listener=\"e1\",service=\"echo\","
                                 "transport=\"tcp\"} 120\n"));
    assert_non_null(strstr(text, "\nsockserv_connections_total{listener=\"e1\",service=\"echo\","
                                 "transport=\"tcp\"} 3\n"));
    assert_non_null(strstr(text, "\n# TYPE sockserv_connections_active gauge\n"
                                 "sockserv_connections_active{listener=\"e1\",service=\"echo\","
                                 "transport=\"tcp\"} 1\n"));
    assert_non_null(strstr(text, "\nsockserv_listener_up{listener=\"e1\",service=\"echo\","
                                 "transport=\"tcp\"} 1\n"));
    assert_non_null(strstr(text, "\nsockserv_listener_up{listener=\"we\\\\ird\\\"id\\n\","
                                 "service=\"backup\",transport=\"tcp\"} 0\n"));
    /* One family per service counter name, shared by the listeners that have it. */
    assert_int_equal(times_seen(text, "# TYPE sockserv_service_dropped_too_long_total counter\n"),
                     1);
    assert_int_equal(times_seen(text, "sockserv_service_dropped_too_long_total{"), 2);
    assert_non_null(strstr(text, "\nsockserv_service_files_stored_total{listener=\"we\\\\ird"
                                 "\\\"id\\n\",service=\"backup\",transport=\"tcp\"} 9\n"));
    /* Every family's HELP and TYPE once. */
    assert_int_equal(times_seen(text, "# TYPE sockserv_service_time_seconds histogram\n"), 1);
    assert_int_equal(times_seen(text, "# HELP sockserv_service_time_seconds "), 1);
    assert_int_equal(times_seen(text, "# TYPE sockserv_bytes_in_total "), 1);
    assert_int_equal(times_seen(text, "# TYPE "), times_seen(text, "# HELP "));
    /* The histogram: cumulative buckets, +Inf equal to the count, the sum in seconds. */
    assert_non_null(strstr(text, "\nsockserv_service_time_seconds_bucket{listener=\"e1\","
                                 "service=\"echo\",transport=\"tcp\",le=\"1e-05\"} 1\n"));
    assert_non_null(strstr(text, "\nsockserv_service_time_seconds_bucket{listener=\"e1\","
                                 "service=\"echo\",transport=\"tcp\",le=\"2.5e-05\"} 2\n"));
    assert_non_null(strstr(text, "\nsockserv_service_time_seconds_bucket{listener=\"e1\","
                                 "service=\"echo\",transport=\"tcp\",le=\"10\"} 2\n"));
    assert_non_null(strstr(text, "\nsockserv_service_time_seconds_bucket{listener=\"e1\","
                                 "service=\"echo\",transport=\"tcp\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(text, "\nsockserv_service_time_seconds_sum{listener=\"e1\","
                                 "service=\"echo\",transport=\"tcp\"} 0.000018000\n"));
    assert_non_null(strstr(text, "\nsockserv_service_time_seconds_count{listener=\"e1\","
                                 "service=\"echo\",transport=\"tcp\"} 2\n"));
    assert_int_equal(times_seen(text, "sockserv_service_time_seconds_bucket{"),
                     2 * (API_PROM_LE_COUNT + 1));
    assert_non_null(strstr(text, "\nsockserv_build_info{version=\"1.2.3\"} 1\n"));
    assert_non_null(strstr(text, "\nsockserv_uptime_seconds 42\n"));
    assert_null(strstr(text, "_total_total"));
    free(text);
}

static void test_prom_render_no_listeners_has_build_info_and_uptime(void **state)
{
    char *text = render(NULL, 0);

    (void)state;
    assert_non_null(strstr(text, "sockserv_build_info{version=\"1.2.3\"} 1\n"));
    assert_non_null(strstr(text, "\nsockserv_uptime_seconds 42\n"));
    assert_null(strstr(text, "listener=\""));
    free(text);
}

static void test_routes_config_and_revisions_select_their_handlers(void **state)
{
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("GET", "/api/v1/config", &m)->handler, api_handle_config_get);
    assert_ptr_equal(match_ok("HEAD", "/api/v1/config", &m)->handler, api_handle_config_get);
    assert_ptr_equal(match_ok("PUT", "/api/v1/config", &m)->handler, api_handle_config_replace);
    assert_int_equal(m.route->body, API_BODY_JSON);
    assert_ptr_equal(match_ok("GET", "/api/v1/config/revisions", &m)->handler,
                     api_handle_revisions_list);
    assert_null(m.captures.n.at);
    assert_ptr_equal(match_ok("GET", "/api/v1/config/revisions/12", &m)->handler,
                     api_handle_revision_get);
    assert_capture(&m.captures.n, "12");
    assert_null(m.captures.id.at);
    assert_ptr_equal(match_ok("POST", "/api/v1/config/revisions/3/restore", &m)->handler,
                     api_handle_revision_restore);
    assert_capture(&m.captures.n, "3");
    assert_int_equal(m.route->body, API_BODY_NONE);
}

static void test_routes_config_wrong_method_is_eopnotsupp_with_allow(void **state)
{
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"POST", "/api/v1/config", "GET, HEAD, PUT"},
        {"PATCH", "/api/v1/config", "GET, HEAD, PUT"},
        {"DELETE", "/api/v1/config/revisions", "GET, HEAD"},
        {"PUT", "/api/v1/config/revisions/1", "GET, HEAD"},
        {"DELETE", "/api/v1/config/revisions/x", "GET, HEAD"},
        {"GET", "/api/v1/config/revisions/1/restore", "POST"},
    };
    struct api_match m;
    char allow[API_ALLOW_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(api_route_match(cases[i].method, cases[i].path, &m), -EOPNOTSUPP);
        assert_int_equal(api_methods_format(m.allow, allow, sizeof(allow)), 0);
        if (strcmp(allow, cases[i].allow) != 0)
            fail_msg("%s %s: Allow '%s', expected '%s'", cases[i].method, cases[i].path, allow,
                     cases[i].allow);
    }
}

static void test_dry_run_parse_accepts_true_false_1_0_only(void **state)
{
    static const char *const bad[] = {"", "yes", "no", "TRUE", "True", "2", "01", " 1", "true "};
    bool v = true;

    (void)state;
    assert_int_equal(api_dry_run_parse(NULL, &v), 0);
    assert_false(v);
    assert_int_equal(api_dry_run_parse("true", &v), 0);
    assert_true(v);
    assert_int_equal(api_dry_run_parse("false", &v), 0);
    assert_false(v);
    assert_int_equal(api_dry_run_parse("1", &v), 0);
    assert_true(v);
    assert_int_equal(api_dry_run_parse("0", &v), 0);
    assert_false(v);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (api_dry_run_parse(bad[i], &v) != -EINVAL)
            fail_msg("dry_run '%s' was accepted", bad[i]);
}

static void test_limit_parse_is_1_to_100_default_20(void **state)
{
    static const char *const bad[] = {"",   "0",  "101", "-1", "+5",
                                      " 5", "5 ", "1e2", "x",  "99999999999999999999999"};
    size_t v = 7;

    (void)state;
    assert_int_equal(
        api_limit_parse(NULL, API_REVISIONS_LIMIT_DEFAULT, API_REVISIONS_LIMIT_MAX, &v), 0);
    assert_int_equal(v, 20);
    assert_int_equal(api_limit_parse("1", API_REVISIONS_LIMIT_DEFAULT, API_REVISIONS_LIMIT_MAX, &v),
                     0);
    assert_int_equal(v, 1);
    assert_int_equal(
        api_limit_parse("100", API_REVISIONS_LIMIT_DEFAULT, API_REVISIONS_LIMIT_MAX, &v), 0);
    assert_int_equal(v, 100);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 7;
        if (api_limit_parse(bad[i], API_REVISIONS_LIMIT_DEFAULT, API_REVISIONS_LIMIT_MAX, &v) !=
                -EINVAL ||
            v != 7)
            fail_msg("limit '%s' was accepted", bad[i]);
    }
}

static void test_revision_parse_positive_decimal_only(void **state)
{
    static const char *const bad[] = {
        "", "0", "-1", "+1", " 1", "1 ", "1.0", "0x1", "r1", "abc", "18446744073709551616"};
    uint64_t v = 9;

    (void)state;
    assert_int_equal(api_revision_parse("1", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(api_revision_parse("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(api_revision_parse("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 9;
        if (api_revision_parse(bad[i], &v) != -EINVAL || v != 9)
            fail_msg("revision '%s' was accepted", bad[i]);
    }
}

/* A query whose every parameter has the value the request's name member holds. */
static const char *query_is_name(const struct api_request *req, const char *key)
{
    (void)key;
    return req->name;
}

static void test_handle_changes_bad_dry_run_is_400_naming_dry_run(void **state)
{
    static const api_handler_fn handlers[] = {
        api_handle_listener_create, api_handle_listener_replace, api_handle_listener_patch,
        api_handle_listener_delete, api_handle_listener_start,   api_handle_listener_stop,
        api_handle_config_replace,  api_handle_revision_restore,
    };
    /* The registry is never reached: the query is checked first. */
    const struct api_request req = {.path = "/api/v1/config/revisions/2/restore",
                                    .id = "e1",
                                    .name = "yes",
                                    .query = query_is_name};
    struct api_reply r;

    (void)state;
    api_reply_init(&r);
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        handlers[i](&req, &r);
        assert_int_equal(r.status, 400);
        assert_true(r.is_problem);
        assert_string_equal(r.field, "dry_run");
        assert_string_equal(r.etag, "");
    }
    api_reply_fini(&r);
}

static void test_handle_revisions_bad_limit_is_400_naming_limit(void **state)
{
    const struct api_request req = {
        .path = "/api/v1/config/revisions", .name = "101", .query = query_is_name};
    struct api_reply r;

    (void)state;
    api_reply_init(&r);
    api_handle_revisions_list(&req, &r);
    assert_int_equal(r.status, 400);
    assert_true(r.is_problem);
    assert_string_equal(r.field, "limit");
    assert_string_equal(r.detail, "limit: must be a number from 1 to 100");
    api_reply_fini(&r);
}

static void test_handle_revision_bad_number_is_400_naming_n(void **state)
{
    static const char *const paths[] = {
        "/api/v1/config/revisions/0",
        "/api/v1/config/revisions/abc",
        "/api/v1/config/revisions/-1",
        "/api/v1/config/revisions/99999999999999999999999999999",
        "/api/v1/config/revisions/0/restore",
        "/api/v1/config/revisions/r3/restore",
    };
    struct api_reply r;

    (void)state;
    api_reply_init(&r);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        /* The registry is never reached: the number is checked first. */
        const struct api_request req = {.path = paths[i]};

        if (strstr(paths[i], "/restore"))
            api_handle_revision_restore(&req, &r);
        else
            api_handle_revision_get(&req, &r);
        if (r.status != 400 || strcmp(r.field, "n") != 0)
            fail_msg("%s: %u field '%s', expected 400 naming n", paths[i], r.status, r.field);
        assert_non_null(strstr(r.detail, "is not a revision number"));
    }
    api_reply_fini(&r);
}

static void test_reply_etag_is_quoted_revision_and_setters_clear_it(void **state)
{
    struct api_reply r;

    (void)state;
    api_reply_init(&r);
    api_reply_json(&r, 200, json_object());
    api_reply_etag(&r, 12);
    assert_string_equal(r.etag, "\"r12\"");
    api_reply_etag(&r, UINT64_MAX);
    assert_string_equal(r.etag, "\"r18446744073709551615\"");
    api_reply_etag(&r, 0);
    assert_string_equal(r.etag, "");
    api_reply_etag(&r, 3);
    api_reply_problem(&r, 412, NULL, "precondition failed");
    assert_string_equal(r.etag, "");
    assert_string_equal(r.listener, "");
    api_reply_fini(&r);
}

/*
 * The operations of openapi/openapi.yaml: "METHOD /path" for every method under every path of
 * its "paths" object, read line by line (two spaces before a path, four before a method).
 */
struct spec_ops {
    char op[64][112];
    size_t n;
};

static void spec_ops_read(struct spec_ops *ret)
{
    static const char *const methods[] = {"get", "put", "post", "patch", "delete", "head"};
    const char *root = getenv("SOCKSERV_SOURCE_ROOT");
    char path[4096], line[512], current[96] = "";
    bool in_paths = false;
    FILE *f;

    assert_non_null(root);
    snprintf(path, sizeof(path), "%s/openapi/openapi.yaml", root);
    f = fopen(path, "r");
    assert_non_null(f);
    ret->n = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != ' ' && line[0] != '\0' && line[0] != '#')
            in_paths = strcmp(line, "paths:") == 0;
        if (!in_paths)
            continue;
        if (strncmp(line, "  /", 3) == 0 && line[strlen(line) - 1] == ':') {
            snprintf(current, sizeof(current), "%.*s", (int)strlen(line) - 3, line + 2);
            continue;
        }
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
            char want[32];

            snprintf(want, sizeof(want), "    %s:", methods[i]);
            if (strcmp(line, want) == 0 && current[0]) {
                char upper[8];

                for (size_t k = 0; k <= strlen(methods[i]); k++)
                    upper[k] = (char)(methods[i][k] >= 'a' ? methods[i][k] - 32 : methods[i][k]);
                assert_true(ret->n < sizeof(ret->op) / sizeof(ret->op[0]));
                snprintf(ret->op[ret->n++], sizeof(ret->op[0]), "%s %s", upper, current);
            }
        }
    }
    fclose(f);
    assert_true(ret->n > 0);
}

static bool spec_has(const struct spec_ops *ops, const char *method, const char *path)
{
    char want[128];

    snprintf(want, sizeof(want), "%s %s", method, path);
    for (size_t i = 0; i < ops->n; i++)
        if (strcmp(ops->op[i], want) == 0)
            return true;
    return false;
}

static void test_route_table_every_route_in_spec(void **state)
{
    struct spec_ops ops;
    size_t n;
    const struct api_route *r = api_routes(&n);

    (void)state;
    spec_ops_read(&ops);
    for (size_t i = 0; i < n; i++) {
        const char *m = api_method_name(r[i].method);

        if (strcmp(r[i].pattern, "{asset}") != 0) {
            if (!spec_has(&ops, m, r[i].pattern))
                fail_msg("route %s %s is not in openapi/openapi.yaml", m, r[i].pattern);
            continue;
        }
        /* Every embedded file: "/" for the page, its own path, or the dashboard's "/{file}". */
        for (size_t k = 0; k < api_assets_count; k++) {
            const char *p = api_assets[k].path;

            if (!spec_has(&ops, m, p) &&
                !(strchr(p + 1, '/') == NULL && spec_has(&ops, m, "/{file}")))
                fail_msg("file %s is not in openapi/openapi.yaml", p);
        }
        if (!spec_has(&ops, m, "/"))
            fail_msg("the dashboard at / is not in openapi/openapi.yaml");
    }
}

static void test_route_table_every_spec_operation_routed(void **state)
{
    struct spec_ops ops;

    (void)state;
    spec_ops_read(&ops);
    for (size_t i = 0; i < ops.n; i++) {
        char method[16], path[96];
        struct api_match match;
        int r;

        assert_int_equal(sscanf(ops.op[i], "%15s %95s", method, path), 2);
        /* Fill the templates with values the route table matches. */
        if (strcmp(path, "/{file}") == 0)
            snprintf(path, sizeof(path), "/index.html");
        else if (strchr(path, '{')) {
            char filled[96];
            size_t n = 0;

            for (const char *p = path; *p && n + 8 < sizeof(filled);) {
                if (strncmp(p, "{id}", 4) == 0) {
                    n += (size_t)snprintf(filled + n, sizeof(filled) - n, "e1");
                    p += 4;
                } else if (strncmp(p, "{name}", 6) == 0) {
                    n += (size_t)snprintf(filled + n, sizeof(filled) - n, "f.txt");
                    p += 6;
                } else if (strncmp(p, "{n}", 3) == 0) {
                    n += (size_t)snprintf(filled + n, sizeof(filled) - n, "7");
                    p += 3;
                } else {
                    filled[n++] = *p++;
                }
            }
            filled[n] = '\0';
            memcpy(path, filled, n + 1);
        }
        r = api_route_match(method, path, &match);
        if (r != 0)
            fail_msg("%s is in openapi/openapi.yaml but the daemon does not route it (%d)",
                     ops.op[i], r);
    }
}

static void test_routes_encoded_slash_stays_in_its_segment(void **state)
{
    struct api_match m;
    char *id = NULL;

    (void)state;
    /* "a%2Fstop" is one id; "a/stop" is the stop action on "a". */
    assert_int_equal(api_route_match("POST", "/api/v1/listeners/a%2Fstop", &m), -EOPNOTSUPP);
    assert_ptr_equal(match_ok("GET", "/api/v1/listeners/a%2Fstop", &m)->handler,
                     api_handle_listener_get);
    assert_int_equal(api_segment_decode(m.captures.id.at, m.captures.id.len, &id), 0);
    assert_string_equal(id, "a/stop");
    free(id);
    assert_int_equal(api_route_match("GET", "/api/v1/listeners/a%2fmetrics/x", &m), -ENOENT);
}

static void test_routes_literal_segments_match_decoded(void **state)
{
    struct api_match m;

    (void)state;
    assert_ptr_equal(match_ok("GET", "/api/v1/listener%73/e1/%6Detrics", &m)->handler,
                     api_handle_listener_metrics);
    assert_memory_equal(m.captures.id.at, "e1", 2);
    /* An encoded separator is not one, even where a literal would follow. */
    assert_int_equal(api_route_match("GET", "/api%2Fv1/health", &m), -ENOENT);
    assert_ptr_equal(match_ok("GET", "/%69ndex.html", &m)->handler, api_handle_asset);
}

static void test_routes_segment_decode_keeps_bad_escapes_and_refuses_nul(void **state)
{
    char *out = NULL;

    (void)state;
    assert_int_equal(api_segment_decode("a%20b%zz%4", 10, &out), 0);
    assert_string_equal(out, "a b%zz%4");
    free(out);
    assert_int_equal(api_segment_decode("a%00b", 5, &out), -EINVAL);
    assert_true(api_uri_has_nul("/api/v1/listeners/a%00x"));
    assert_true(api_uri_has_nul("/api/v1/config/revisions?limit=%00"));
    assert_true(api_uri_has_nul("/x%%00"));
    assert_false(api_uri_has_nul("/x%2500"));
    assert_false(api_uri_has_nul("/x%0"));
    assert_false(api_uri_has_nul("/api/v1/listeners/a?dry_run=0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_listener_path_captures_id),
        cmocka_unit_test(test_routes_encoded_slash_stays_in_its_segment),
        cmocka_unit_test(test_routes_literal_segments_match_decoded),
        cmocka_unit_test(test_routes_segment_decode_keeps_bad_escapes_and_refuses_nul),
        cmocka_unit_test(test_routes_each_method_of_listener_selects_its_handler),
        cmocka_unit_test(test_routes_sub_resources_capture_id),
        cmocka_unit_test(test_routes_unknown_path_is_enoent),
        cmocka_unit_test(test_routes_wrong_method_is_eopnotsupp_with_allow),
        cmocka_unit_test(test_routes_unknown_or_lowercase_method_is_eopnotsupp),
        cmocka_unit_test(test_routes_head_runs_the_get_handler),
        cmocka_unit_test(test_routes_assets_match_get_and_head_only),
        cmocka_unit_test(test_assets_root_is_index_and_types_are_right),
        cmocka_unit_test(test_methods_format_small_buffer_is_enospc),
        cmocka_unit_test(test_status_from_errno_maps_each_code),
        cmocka_unit_test(test_status_title_is_the_reason_phrase),
        cmocka_unit_test(test_problem_with_field_names_it),
        cmocka_unit_test(test_problem_without_field_has_no_field_member),
        cmocka_unit_test(test_problem_with_invalid_utf8_replaces_bad_bytes),
        cmocka_unit_test(test_reply_error_uses_err_message_and_field),
        cmocka_unit_test(test_reply_json_null_body_is_500),
        cmocka_unit_test(test_body_type_json_with_parameters_is_accepted),
        cmocka_unit_test(test_body_type_other_or_absent_is_refused),
        cmocka_unit_test(test_body_length_over_limit_is_efbig),
        cmocka_unit_test(test_body_parse_malformed_json_says_where),
        cmocka_unit_test(test_body_parse_non_object_is_einval),
        cmocka_unit_test(test_body_parse_object_is_returned),
        cmocka_unit_test(test_etag_matches_exact_weak_list_and_star),
        cmocka_unit_test(test_routes_file_path_captures_id_and_name),
        cmocka_unit_test(test_routes_files_list_captures_id_only),
        cmocka_unit_test(test_routes_file_name_must_be_one_nonempty_segment),
        cmocka_unit_test(test_routes_files_are_read_and_put_events_get_only),
        cmocka_unit_test(test_digest_parse_takes_sha256_among_others),
        cmocka_unit_test(test_version_parse_accepts_digits_only),
        cmocka_unit_test(test_content_disposition_plain_name_is_both_forms),
        cmocka_unit_test(test_content_disposition_unsafe_bytes_are_encoded_and_replaced),
        cmocka_unit_test(test_content_disposition_longest_name_fits),
        cmocka_unit_test(test_reply_file_fini_closes_an_unsent_fd),
        cmocka_unit_test(test_reply_problem_after_file_closes_the_fd),
        cmocka_unit_test(test_handle_file_get_bad_version_is_400_naming_version),
        cmocka_unit_test(test_handle_events_without_bus_is_503),
        cmocka_unit_test(test_event_id_parse_decimal_with_blanks),
        cmocka_unit_test(test_event_append_is_id_event_data_blank_line),
        cmocka_unit_test(test_event_append_multiline_data_gets_a_data_line_each),
        cmocka_unit_test(test_event_append_adds_to_what_is_there),
        cmocka_unit_test(test_routes_prometheus_metrics_is_get_only),
        cmocka_unit_test(test_reply_text_owns_its_body_and_sets_type),
        cmocka_unit_test(test_prom_cumulative_counts_only_buckets_wholly_below),
        cmocka_unit_test(test_prom_render_families_once_labels_escaped_histogram_cumulative),
        cmocka_unit_test(test_prom_render_no_listeners_has_build_info_and_uptime),
        cmocka_unit_test(test_routes_config_and_revisions_select_their_handlers),
        cmocka_unit_test(test_routes_config_wrong_method_is_eopnotsupp_with_allow),
        cmocka_unit_test(test_dry_run_parse_accepts_true_false_1_0_only),
        cmocka_unit_test(test_limit_parse_is_1_to_100_default_20),
        cmocka_unit_test(test_revision_parse_positive_decimal_only),
        cmocka_unit_test(test_handle_changes_bad_dry_run_is_400_naming_dry_run),
        cmocka_unit_test(test_handle_revisions_bad_limit_is_400_naming_limit),
        cmocka_unit_test(test_handle_revision_bad_number_is_400_naming_n),
        cmocka_unit_test(test_reply_etag_is_quoted_revision_and_setters_clear_it),
        cmocka_unit_test(test_route_table_every_route_in_spec),
        cmocka_unit_test(test_route_table_every_spec_operation_routed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
