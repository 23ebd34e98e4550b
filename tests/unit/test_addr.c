#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "core/addr.h"

static void test_addr_parse_ipv4_formats_back(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[CORE_ADDR_STRLEN];

    (void)state;
    assert_int_equal(core_addr_parse("127.0.0.1", 7007, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_string_equal(core_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)),
                        "127.0.0.1:7007");
    assert_int_equal(core_addr_port((struct sockaddr *)&ss), 7007);
    assert_true(core_addr_is_loopback((struct sockaddr *)&ss));
}

static void test_addr_parse_ipv6_formats_bracketed(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[CORE_ADDR_STRLEN];

    (void)state;
    assert_int_equal(core_addr_parse("::", 0, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_string_equal(core_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), "[::]:0");
    assert_false(core_addr_is_loopback((struct sockaddr *)&ss));
    assert_int_equal(core_addr_parse("::1", 65535, &ss, &len), 0);
    assert_string_equal(core_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), "[::1]:65535");
    assert_true(core_addr_is_loopback((struct sockaddr *)&ss));
}

static void test_addr_parse_localhost_is_ipv4_loopback(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;

    (void)state;
    assert_int_equal(core_addr_parse("localhost", 1, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
}

static void test_addr_parse_names_and_junk_fail(void **state)
{
    static const char *const bad[] = {"",          "example.com", "1.2.3",      "1.2.3.4.5", ":::",
                                      "256.1.1.1", "::1%lo",      " 127.0.0.1", "127.0.0.1 "};
    struct sockaddr_storage ss;
    socklen_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(core_addr_parse(bad[i], 0, &ss, &len), -EINVAL);
        assert_false(core_addr_is_valid_host(bad[i]));
    }
    assert_int_equal(core_addr_parse(NULL, 0, &ss, &len), -EINVAL);
}

static void test_hostport_parse_accepts_v4_and_bracketed_v6(void **state)
{
    char host[CORE_ADDR_STRLEN];
    uint16_t port = 1;

    (void)state;
    assert_int_equal(core_hostport_parse("127.0.0.1:8400", host, sizeof(host), &port, NULL), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8400);
    assert_int_equal(core_hostport_parse("[::1]:0", host, sizeof(host), &port, NULL), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
}

static void test_hostport_parse_bad_input_fails_with_message(void **state)
{
    static const char *const bad[] = {
        "",       "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
        "::1:80", "[::1]80",   "[::1]:x",    "host.example:80", ":80"};
    struct core_err err;
    char host[CORE_ADDR_STRLEN];
    uint16_t port = 7;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(core_hostport_parse(bad[i], host, sizeof(host), &port, &err), -EINVAL);
        assert_true(err.msg[0] != '\0');
        assert_int_equal(port, 7);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse_ipv4_formats_back),
        cmocka_unit_test(test_addr_parse_ipv6_formats_bracketed),
        cmocka_unit_test(test_addr_parse_localhost_is_ipv4_loopback),
        cmocka_unit_test(test_addr_parse_names_and_junk_fail),
        cmocka_unit_test(test_hostport_parse_accepts_v4_and_bracketed_v6),
        cmocka_unit_test(test_hostport_parse_bad_input_fails_with_message),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
