#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/guard.h"

#define TOKEN "s3cret-Token_0123456789"

struct fixture {
    struct sockaddr_storage ss;
    struct api_guard *g;
};

/* A guard for a TCP API on host:port with the given token (NULL: none) and names. */
static struct api_guard *guard_tcp(struct fixture *f, const char *host, unsigned port,
                                   const char *token, const char *const *names, size_t n_names)
{
    struct api_guard_opts o = {
        .token = token, .token_len = token ? strlen(token) : 0, .names = names, .n_names = n_names};
    struct core_err err = {0};

    memset(&f->ss, 0, sizeof(f->ss));
    if (strchr(host, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&f->ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, host, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&f->ss;

        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, host, &in->sin_addr), 1);
    }
    o.listen = (const struct sockaddr *)&f->ss;
    assert_int_equal(api_guard_new(&o, &f->g, &err), 0);
    return f->g;
}

static struct api_guard *guard_unix(struct fixture *f, const char *token, const char *const *names,
                                    size_t n_names)
{
    struct api_guard_opts o = {
        .token = token, .token_len = token ? strlen(token) : 0, .names = names, .n_names = n_names};
    struct core_err err = {0};

    assert_int_equal(api_guard_new(&o, &f->g, &err), 0);
    return f->g;
}

static int setup(void **state)
{
    *state = calloc(1, sizeof(struct fixture));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    api_guard_free(f->g);
    free(f);
    return 0;
}

/* The verdict on a GET with this Host and nothing else. */
static enum api_guard_verdict get_with_host(const struct api_guard *g, const char *host)
{
    char detail[256];
    const struct api_guard_request req = {.method = "GET", .host = host, .is_public = true};

    return api_guard_check(g, &req, detail, sizeof(detail));
}

static void test_guard_host_loopback_v4_accepts_address_and_localhost_with_port(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, NULL, NULL, 0);
    static const char *const good[] = {"127.0.0.1:8400", "localhost:8400", "LocalHost:8400"};
    static const char *const bad[] = {
        "evil.example:8400", "evil.example",        "127.0.0.1",        "127.0.0.1:8401",
        "localhost",         "127.0.0.2:8400",      "[::1]:8400",       "127.1:8400",
        "localhost.:8400",   "user@127.0.0.1:8400", "127.0.0.1:8400/x", "",
        " 127.0.0.1:8400",   "127.0.0.1:",          "127.0.0.1:99999",  ":8400",
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(get_with_host(g, good[i]), API_GUARD_ALLOW);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (get_with_host(g, bad[i]) != API_GUARD_BAD_HOST)
            fail_msg("Host '%s' was accepted", bad[i]);
    }
    assert_int_equal(get_with_host(g, NULL), API_GUARD_BAD_HOST);
}

static void test_guard_host_loopback_v6_accepts_bracketed_literal_any_spelling(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "::1", 9000, NULL, NULL, 0);

    assert_int_equal(get_with_host(g, "[::1]:9000"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "[0:0:0:0:0:0:0:1]:9000"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "localhost:9000"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "::1:9000"), API_GUARD_BAD_HOST);
    assert_int_equal(get_with_host(g, "[::1]"), API_GUARD_BAD_HOST);
    assert_int_equal(get_with_host(g, "127.0.0.1:9000"), API_GUARD_BAD_HOST);
    assert_int_equal(get_with_host(g, "[::1:9000"), API_GUARD_BAD_HOST);
}

static void test_guard_host_port_80_may_be_left_out(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 80, NULL, NULL, 0);

    assert_int_equal(get_with_host(g, "127.0.0.1"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "localhost"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "127.0.0.1:80"), API_GUARD_ALLOW);
}

static void test_guard_host_wildcard_accepts_any_ip_literal_with_port_no_name(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "0.0.0.0", 8400, TOKEN, NULL, 0);

    assert_int_equal(get_with_host(g, "192.0.2.7:8400"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "[2001:db8::1]:8400"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "localhost:8400"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "192.0.2.7:8401"), API_GUARD_BAD_HOST);
    /* A name is what DNS rebinding needs: only configured names pass. */
    assert_int_equal(get_with_host(g, "rebind.example:8400"), API_GUARD_BAD_HOST);
}

static void test_guard_host_extra_names_match_any_port_case_insensitively(void **state)
{
    static const char *const names[] = {"Ctl.Example.org", "10.1.2.3"};
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, TOKEN, names, 2);

    assert_int_equal(get_with_host(g, "ctl.example.org"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "CTL.EXAMPLE.ORG:443"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "10.1.2.3:8400"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "example.org"), API_GUARD_BAD_HOST);
    assert_int_equal(get_with_host(g, "xctl.example.org"), API_GUARD_BAD_HOST);
}

static void test_guard_host_unix_socket_accepts_any_or_none(void **state)
{
    const struct api_guard *g = guard_unix(*state, NULL, NULL, 0);

    assert_int_equal(get_with_host(g, "localhost"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, "anything.example:1"), API_GUARD_ALLOW);
    assert_int_equal(get_with_host(g, NULL), API_GUARD_ALLOW);
}

static void test_guard_bad_host_detail_quotes_host_printably(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, NULL, NULL, 0);
    const struct api_guard_request req = {.method = "GET", .host = "evil.example\x01:8400"};
    char detail[256];

    assert_int_equal(api_guard_check(g, &req, detail, sizeof(detail)), API_GUARD_BAD_HOST);
    assert_non_null(strstr(detail, "'evil.example?:8400'"));
    assert_non_null(strstr(detail, "--allow-host"));
}

/* The verdict on method with Origin and Sec-Fetch-* (NULL: absent), Host 127.0.0.1:8400. */
static enum api_guard_verdict cross(const struct api_guard *g, const char *method,
                                    const char *origin, const char *site, const char *mode,
                                    const char *dest)
{
    char detail[256];
    const struct api_guard_request req = {
        .method = method,
        .host = "127.0.0.1:8400",
        .origin = origin,
        .sec_fetch_site = site,
        .sec_fetch_mode = mode,
        .sec_fetch_dest = dest,
    };

    return api_guard_check(g, &req, detail, sizeof(detail));
}

static void test_guard_origin_own_passes_other_and_null_are_refused(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, NULL, NULL, 0);
    static const char *const methods[] = {"POST", "PUT", "PATCH", "DELETE", "GET"};

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        const char *m = methods[i];

        assert_int_equal(cross(g, m, NULL, NULL, NULL, NULL), API_GUARD_ALLOW);
        assert_int_equal(cross(g, m, "http://127.0.0.1:8400", NULL, NULL, NULL), API_GUARD_ALLOW);
        assert_int_equal(cross(g, m, "http://localhost:8400", NULL, NULL, NULL), API_GUARD_ALLOW);
        assert_int_equal(cross(g, m, "HTTP://127.0.0.1:8400", NULL, NULL, NULL), API_GUARD_ALLOW);
        assert_int_equal(cross(g, m, "null", NULL, NULL, NULL), API_GUARD_CROSS_SITE);
        assert_int_equal(cross(g, m, "http://evil.example", NULL, NULL, NULL),
                         API_GUARD_CROSS_SITE);
        /* Another port of the same host is another origin (and the same site). */
        assert_int_equal(cross(g, m, "http://127.0.0.1:3000", NULL, NULL, NULL),
                         API_GUARD_CROSS_SITE);
        assert_int_equal(cross(g, m, "http://localhost", NULL, NULL, NULL), API_GUARD_CROSS_SITE);
        assert_int_equal(cross(g, m, "file://", NULL, NULL, NULL), API_GUARD_CROSS_SITE);
        assert_int_equal(cross(g, m, "http://127.0.0.1:8400/", NULL, NULL, NULL),
                         API_GUARD_CROSS_SITE);
        assert_int_equal(cross(g, m, "", NULL, NULL, NULL), API_GUARD_CROSS_SITE);
    }
}

static void test_guard_origin_https_of_extra_name_passes(void **state)
{
    static const char *const names[] = {"ctl.example.org"};
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, NULL, names, 1);

    assert_int_equal(cross(g, "POST", "https://ctl.example.org", NULL, NULL, NULL),
                     API_GUARD_ALLOW);
    assert_int_equal(cross(g, "POST", "https://evil.example.org", NULL, NULL, NULL),
                     API_GUARD_CROSS_SITE);
}

static void test_guard_origin_over_unix_socket_only_extra_names(void **state)
{
    static const char *const names[] = {"proxy.example"};
    const struct api_guard *g = guard_unix(*state, NULL, names, 1);

    assert_int_equal(cross(g, "POST", NULL, "same-origin", NULL, NULL), API_GUARD_ALLOW);
    assert_int_equal(cross(g, "POST", "https://proxy.example", NULL, NULL, NULL), API_GUARD_ALLOW);
    assert_int_equal(cross(g, "POST", "http://localhost", NULL, NULL, NULL), API_GUARD_CROSS_SITE);
}

static void test_guard_fetch_site_mutation_only_same_origin_or_none(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, NULL, NULL, 0);
    static const char *const methods[] = {"POST", "PUT", "PATCH", "DELETE"};

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        const char *m = methods[i];

        assert_int_equal(cross(g, m, NULL, "same-origin", "cors", "empty"), API_GUARD_ALLOW);
        assert_int_equal(cross(g, m, NULL, "none", "navigate", "document"), API_GUARD_ALLOW);
        /* Another port on localhost is the same site, and still not this origin. */
        assert_int_equal(cross(g, m, NULL, "same-site", "cors", "empty"), API_GUARD_CROSS_SITE);
        assert_int_equal(cross(g, m, NULL, "cross-site", "navigate", "document"),
                         API_GUARD_CROSS_SITE);
        assert_int_equal(cross(g, m, NULL, "something-new", NULL, NULL), API_GUARD_CROSS_SITE);
    }
}

static void test_guard_fetch_site_get_allows_navigation_refuses_frames_and_fetches(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, NULL, NULL, 0);

    assert_int_equal(cross(g, "GET", NULL, "cross-site", "navigate", "document"), API_GUARD_ALLOW);
    assert_int_equal(cross(g, "HEAD", NULL, "same-site", "navigate", "document"), API_GUARD_ALLOW);
    assert_int_equal(cross(g, "GET", NULL, "cross-site", "navigate", "iframe"),
                     API_GUARD_CROSS_SITE);
    assert_int_equal(cross(g, "GET", NULL, "cross-site", "no-cors", "image"), API_GUARD_CROSS_SITE);
    assert_int_equal(cross(g, "GET", NULL, "same-site", "cors", "empty"), API_GUARD_CROSS_SITE);
    assert_int_equal(cross(g, "GET", NULL, "cross-site", NULL, NULL), API_GUARD_CROSS_SITE);
}

/* The verdict on a GET carrying authorization (NULL: none), public or not. */
static enum api_guard_verdict with_auth(const struct api_guard *g, const char *authorization,
                                        bool is_public, char *detail, size_t len)
{
    const struct api_guard_request req = {
        .method = "GET",
        .host = "127.0.0.1:8400",
        .authorization = authorization,
        .is_public = is_public,
    };

    return api_guard_check(g, &req, detail, len);
}

static void test_guard_token_right_one_passes_others_are_401(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, TOKEN, NULL, 0);
    char detail[256];

    assert_true(api_guard_has_token(g));
    assert_int_equal(with_auth(g, "Bearer " TOKEN, false, detail, sizeof(detail)), API_GUARD_ALLOW);
    assert_int_equal(with_auth(g, "bearer   " TOKEN "  ", false, detail, sizeof(detail)),
                     API_GUARD_ALLOW);
    assert_int_equal(with_auth(g, NULL, false, detail, sizeof(detail)), API_GUARD_NO_TOKEN);
    assert_int_equal(with_auth(g, "Basic dXNlcjpwYXNz", false, detail, sizeof(detail)),
                     API_GUARD_NO_TOKEN);
    assert_int_equal(with_auth(g, "Bearer", false, detail, sizeof(detail)), API_GUARD_NO_TOKEN);
    assert_int_equal(with_auth(g, "Bearer ", false, detail, sizeof(detail)), API_GUARD_NO_TOKEN);
    assert_int_equal(with_auth(g, "Bearer" TOKEN, false, detail, sizeof(detail)),
                     API_GUARD_NO_TOKEN);
    assert_int_equal(with_auth(g, "Bearer " TOKEN "x", false, detail, sizeof(detail)),
                     API_GUARD_BAD_TOKEN);
    assert_int_equal(with_auth(g, "Bearer s3cret", false, detail, sizeof(detail)),
                     API_GUARD_BAD_TOKEN);
    assert_int_equal(with_auth(g, "Bearer S3CRET-TOKEN_0123456789", false, detail, sizeof(detail)),
                     API_GUARD_BAD_TOKEN);
    /* The detail never repeats what was sent as a token. */
    assert_null(strstr(detail, "S3CRET"));
    assert_int_equal(api_guard_status(API_GUARD_BAD_TOKEN), 401);
    assert_int_equal(api_guard_status(API_GUARD_NO_TOKEN), 401);
}

static void test_guard_token_public_routes_need_none(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, TOKEN, NULL, 0);
    char detail[256];

    assert_int_equal(with_auth(g, NULL, true, detail, sizeof(detail)), API_GUARD_ALLOW);
    assert_int_equal(with_auth(g, "Bearer wrong", true, detail, sizeof(detail)), API_GUARD_ALLOW);
}

static void test_guard_without_token_no_authorization_needed(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, NULL, NULL, 0);
    char detail[256];

    assert_false(api_guard_has_token(g));
    assert_int_equal(with_auth(g, NULL, false, detail, sizeof(detail)), API_GUARD_ALLOW);
    assert_int_equal(with_auth(g, "Bearer anything", false, detail, sizeof(detail)),
                     API_GUARD_ALLOW);
}

static void test_guard_order_host_then_origin_then_token(void **state)
{
    const struct api_guard *g = guard_tcp(*state, "127.0.0.1", 8400, TOKEN, NULL, 0);
    char detail[256];
    struct api_guard_request req = {
        .method = "POST", .host = "evil.example:8400", .origin = "http://evil.example:8400"};

    assert_int_equal(api_guard_check(g, &req, detail, sizeof(detail)), API_GUARD_BAD_HOST);
    assert_int_equal(api_guard_status(API_GUARD_BAD_HOST), 403);
    req.host = "127.0.0.1:8400";
    assert_int_equal(api_guard_check(g, &req, detail, sizeof(detail)), API_GUARD_CROSS_SITE);
    assert_non_null(strstr(detail, "Origin 'http://evil.example:8400'"));
    assert_int_equal(api_guard_status(API_GUARD_CROSS_SITE), 403);
    req.origin = NULL;
    assert_int_equal(api_guard_check(g, &req, detail, sizeof(detail)), API_GUARD_NO_TOKEN);
    req.authorization = "Bearer " TOKEN;
    assert_int_equal(api_guard_check(g, &req, detail, sizeof(detail)), API_GUARD_ALLOW);
}

static void test_guard_media_type_json_required_on_post_put_patch(void **state)
{
    (void)state;
    assert_true(api_guard_media_type_ok("POST", "application/json"));
    assert_true(api_guard_media_type_ok("POST", "Application/JSON; charset=utf-8"));
    assert_true(api_guard_media_type_ok("PUT", " application/json ;charset=UTF-8"));
    assert_true(api_guard_media_type_ok("PATCH", "application/merge-patch+json"));
    assert_true(api_guard_media_type_ok("PATCH", "application/json"));
    assert_false(api_guard_media_type_ok("POST", NULL));
    assert_false(api_guard_media_type_ok("POST", "text/plain"));
    assert_false(api_guard_media_type_ok("POST", "application/x-www-form-urlencoded"));
    assert_false(api_guard_media_type_ok("POST", "multipart/form-data; boundary=x"));
    assert_false(api_guard_media_type_ok("POST", "application/merge-patch+json"));
    assert_false(api_guard_media_type_ok("PUT", "application/jsonx"));
    assert_false(api_guard_media_type_ok("PATCH", "text/plain"));
    assert_true(api_guard_media_type_ok("DELETE", NULL));
    assert_true(api_guard_media_type_ok("GET", "text/plain"));
}

static void test_guard_new_refuses_bad_token_and_names(void **state)
{
    struct core_err err = {0};
    struct api_guard *g = NULL;
    static const char *const bad_names[] = {"has space"};
    static const char *const long_name[] = {NULL};
    char name[API_GUARD_NAME_MAX + 2];
    char token[API_GUARD_TOKEN_MAX + 1];

    (void)state;
    assert_int_equal(
        api_guard_new(&(struct api_guard_opts){.token = "a b", .token_len = 3}, &g, &err), -EINVAL);
    assert_string_equal(err.field, "token");
    assert_int_equal(api_guard_new(&(struct api_guard_opts){.token = "", .token_len = 0}, &g, &err),
                     -EINVAL);
    assert_int_equal(
        api_guard_new(&(struct api_guard_opts){.token = "tab\t", .token_len = 4}, &g, &err),
        -EINVAL);
    memset(token, 'x', sizeof(token));
    assert_false(api_guard_token_is_valid(token, sizeof(token)));
    assert_true(api_guard_token_is_valid(token, sizeof(token) - 1));
    assert_int_equal(
        api_guard_new(&(struct api_guard_opts){.names = bad_names, .n_names = 1}, &g, &err),
        -EINVAL);
    assert_string_equal(err.field, "names");
    assert_int_equal(
        api_guard_new(&(struct api_guard_opts){.names = long_name, .n_names = 1}, &g, &err),
        -EINVAL);
    memset(name, 'a', sizeof(name));
    name[sizeof(name) - 1] = '\0';
    assert_false(api_guard_name_is_valid(name));
    name[sizeof(name) - 2] = '\0';
    assert_true(api_guard_name_is_valid(name));
    assert_false(api_guard_name_is_valid("a/b"));
    assert_false(api_guard_name_is_valid(""));
    assert_true(api_guard_name_is_valid("192.0.2.1"));
    assert_null(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_guard_host_loopback_v4_accepts_address_and_localhost_with_port),
        T(test_guard_host_loopback_v6_accepts_bracketed_literal_any_spelling),
        T(test_guard_host_port_80_may_be_left_out),
        T(test_guard_host_wildcard_accepts_any_ip_literal_with_port_no_name),
        T(test_guard_host_extra_names_match_any_port_case_insensitively),
        T(test_guard_host_unix_socket_accepts_any_or_none),
        T(test_guard_bad_host_detail_quotes_host_printably),
        T(test_guard_origin_own_passes_other_and_null_are_refused),
        T(test_guard_origin_https_of_extra_name_passes),
        T(test_guard_origin_over_unix_socket_only_extra_names),
        T(test_guard_fetch_site_mutation_only_same_origin_or_none),
        T(test_guard_fetch_site_get_allows_navigation_refuses_frames_and_fetches),
        T(test_guard_token_right_one_passes_others_are_401),
        T(test_guard_token_public_routes_need_none),
        T(test_guard_without_token_no_authorization_needed),
        T(test_guard_order_host_then_origin_then_token),
        T(test_guard_media_type_json_required_on_post_put_patch),
        T(test_guard_new_refuses_bad_token_and_names),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
