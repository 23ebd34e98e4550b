/*
 * The broker connection helpers without a broker: the checks of the URL, the credentials file
 * and the TLS files (clear messages, never the password), the text of librabbitmq's statuses,
 * a refused connection told as such, and the stream offset header read back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fleet/amqp.h"

struct fx {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/sockserv-test-amqp-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/creds", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    (void)unlink(f->path);
    (void)rmdir(f->dir);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_amqp_opts_default_url_is_localhost_default_vhost(void **state)
{
    struct fleet_amqp_opts o = {0};
    struct fleet_amqp_conf c;
    struct core_err err = {0};

    (void)state;
    assert_int_equal(fleet_amqp_opts_check(&o, &c, &err), 0);
    assert_false(c.tls);
    assert_string_equal(c.host, "localhost");
    assert_int_equal(c.port, 5672);
    assert_string_equal(c.vhost, "/");
    assert_int_equal(c.heartbeat_s, FLEET_AMQP_HEARTBEAT_DEFAULT);
    assert_int_equal(c.timeout_ms, FLEET_AMQP_TIMEOUT_DEFAULT_MS);

    o.url = "amqps://u:pw@broker.example:5999/fleet";
    assert_int_equal(fleet_amqp_opts_check(&o, &c, &err), 0);
    assert_true(c.tls);
    assert_int_equal(c.port, 5999);
    assert_string_equal(c.vhost, "fleet");
    assert_string_equal(c.user, "u");
    assert_string_equal(c.password, "pw");
    assert_string_equal(c.display, "amqps://u@broker.example:5999/fleet");
}

static void test_amqp_opts_bad_url_heartbeat_tls_is_einval(void **state)
{
    struct fleet_amqp_conf c;
    struct core_err err = {0};

    (void)state;
    assert_int_equal(fleet_amqp_opts_check(&(struct fleet_amqp_opts){.url = "http://h/"}, &c, &err),
                     -EINVAL);
    assert_string_equal(err.msg, "--amqp: expected an amqp:// or amqps:// URL");
    assert_string_equal(err.field, "amqp");
    assert_int_equal(
        fleet_amqp_opts_check(&(struct fleet_amqp_opts){.url = "amqp://h:99999/"}, &c, &err),
        -EINVAL);
    assert_int_equal(fleet_amqp_opts_check(&(struct fleet_amqp_opts){.heartbeat_s = 61}, &c, &err),
                     -EINVAL);
    assert_string_equal(err.field, "amqp-heartbeat");
    assert_int_equal(
        fleet_amqp_opts_check(&(struct fleet_amqp_opts){.cacert = "/etc/hostname"}, &c, &err),
        -EINVAL);
    assert_string_equal(err.msg, "--amqp: TLS files need an amqps:// URL");
    assert_int_equal(
        fleet_amqp_opts_check(
            &(struct fleet_amqp_opts){.url = "amqps://h/", .cert = "/etc/hostname"}, &c, &err),
        -EINVAL);
    assert_string_equal(err.msg, "--amqp-cert and --amqp-key go together");
    assert_int_equal(
        fleet_amqp_opts_check(
            &(struct fleet_amqp_opts){.url = "amqps://h/", .cacert = "/nonexistent"}, &c, &err),
        -ENOENT);
    assert_non_null(strstr(err.msg, "--amqp-cacert /nonexistent"));
}

static void test_amqp_opts_credentials_file_overrides_never_shown(void **state)
{
    struct fx *f = *state;
    struct fleet_amqp_opts o = {.url = "amqp://guest:guest@h/", .credentials_file = f->path};
    struct fleet_amqp_conf c;
    struct core_err err = {0};

    write_file(f->path, "fleet:s3cret-pass\n");
    assert_int_equal(fleet_amqp_opts_check(&o, &c, &err), 0);
    assert_string_equal(c.user, "fleet");
    assert_string_equal(c.password, "s3cret-pass");
    assert_null(strstr(c.display, "s3cret"));

    write_file(f->path, "s3cret-without-user\n");
    assert_int_equal(fleet_amqp_opts_check(&o, &c, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "expected one line USER:PASSWORD"));
    assert_null(strstr(err.msg, "s3cret"));
    assert_string_equal(err.field, "amqp-credentials");

    write_file(f->path, "a:b\nc:d\n");
    assert_int_equal(fleet_amqp_opts_check(&o, &c, &err), -EINVAL);

    (void)unlink(f->path);
    assert_int_equal(fleet_amqp_opts_check(&o, &c, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "--amqp-credentials"));
}

static void test_amqp_status_texts_and_errnos(void **state)
{
    struct core_err err = {0};

    (void)state;
    assert_int_equal(fleet_amqp_status_check(AMQP_STATUS_OK, "x", &err), 0);
    assert_int_equal(fleet_amqp_status_check(AMQP_STATUS_TIMEOUT, "open", &err), -ETIMEDOUT);
    assert_string_equal(err.msg, "open: timed out");
    assert_int_equal(fleet_amqp_status_check(AMQP_STATUS_HEARTBEAT_TIMEOUT, NULL, &err),
                     -ECONNRESET);
    assert_non_null(strstr(err.msg, "heartbeat"));
    assert_int_equal(fleet_amqp_status_check(AMQP_STATUS_SSL_PEER_VERIFY_FAILED, "b", &err),
                     -EPROTO);
    assert_non_null(strstr(err.msg, "b: TLS: "));
}

static void test_amqp_open_refused_says_connection_refused(void **state)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char url[64];
    struct fleet_amqp_conf c;
    struct core_err err = {0};
    amqp_connection_state_t conn = NULL;

    (void)state;
    /* A port that was just free: bound, never listened on. */
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(url, sizeof(url), "amqp://127.0.0.1:%u/", (unsigned)ntohs(sa.sin_port));
    assert_int_equal(fleet_amqp_opts_check(&(struct fleet_amqp_opts){.url = url}, &c, &err), 0);
    assert_int_equal(fleet_amqp_open(&c, &conn, &err), -ECONNREFUSED);
    assert_null(conn);
    assert_non_null(strstr(err.msg, "connection refused"));
    close(fd);
}

static void test_amqp_header_int_reads_any_integer(void **state)
{
    amqp_table_entry_t e[2] = {{.key = amqp_cstring_bytes("x-other")},
                               {.key = amqp_cstring_bytes("x-stream-offset")}};
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG,
                                 .headers = {.num_entries = 2, .entries = e}};
    int64_t v = -1;

    (void)state;
    e[0].value.kind = AMQP_FIELD_KIND_UTF8;
    e[0].value.value.bytes = amqp_cstring_bytes("x");
    e[1].value.kind = AMQP_FIELD_KIND_I64;
    e[1].value.value.i64 = 42;
    assert_true(fleet_amqp_header_int(&p, "x-stream-offset", &v));
    assert_int_equal(v, 42);
    e[1].value.kind = AMQP_FIELD_KIND_U8;
    e[1].value.value.u8 = 7;
    assert_true(fleet_amqp_header_int(&p, "x-stream-offset", &v));
    assert_int_equal(v, 7);
    assert_false(fleet_amqp_header_int(&p, "x-other", &v));
    assert_false(fleet_amqp_header_int(&p, "absent", &v));
    p._flags = 0;
    assert_false(fleet_amqp_header_int(&p, "x-stream-offset", &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_amqp_opts_default_url_is_localhost_default_vhost),
        cmocka_unit_test(test_amqp_opts_bad_url_heartbeat_tls_is_einval),
        cmocka_unit_test_setup_teardown(test_amqp_opts_credentials_file_overrides_never_shown,
                                        setup, teardown),
        cmocka_unit_test(test_amqp_status_texts_and_errnos),
        cmocka_unit_test(test_amqp_open_refused_says_connection_refused),
        cmocka_unit_test(test_amqp_header_int_reads_any_integer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
