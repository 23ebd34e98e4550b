/*
 * core/tls.c: options.tls checked against real files (made with the OpenSSL API in a temporary
 * directory), the status it shows, and a server connection driven non-blocking over a
 * socketpair against an OpenSSL client: the handshake, bytes both ways, what TLS holds unread,
 * the client's close_notify read as the end of input, and failures counted by reason.
 */
#include "core/tls.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

struct fx {
    char dir[64];
    char cert[128], key[128], other_key[128], junk[128];
};

/* A self-signed P-256 certificate for CN=localhost into cert, its key into key. */
static void make_cert(const char *cert, const char *key)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f;

    assert_non_null(k);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 30);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    if (cert) {
        f = fopen(cert, "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_X509(f, x), 1);
        fclose(f);
    }
    f = fopen(key, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    FILE *j;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/sockserv-tls-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/key.pem", f->dir);
    snprintf(f->other_key, sizeof(f->other_key), "%s/other.key", f->dir);
    snprintf(f->junk, sizeof(f->junk), "%s/junk.pem", f->dir);
    make_cert(f->cert, f->key);
    make_cert(NULL, f->other_key);
    j = fopen(f->junk, "w");
    assert_non_null(j);
    fputs("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n", j);
    fclose(j);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    unlink(f->cert);
    unlink(f->key);
    unlink(f->other_key);
    unlink(f->junk);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Checks {"cert_file": cert, "key_file": key[, "client_ca_file": ca]}. */
static int check(const char *cert, const char *key, const char *ca, struct core_err *err)
{
    json_t *v = json_pack("{s:s, s:s}", "cert_file", cert, "key_file", key);
    int r;

    if (ca)
        json_object_set_new(v, "client_ca_file", json_string(ca));
    r = core_tls_options_check(v, err);
    json_decref(v);
    return r;
}

static void test_tls_options_files_checked_name_the_field(void **state)
{
    const struct fx *f = *state;
    struct core_err err = {0};

    assert_int_equal(check(f->cert, f->key, NULL, &err), 0);
    assert_int_equal(check(f->cert, f->key, f->cert, &err), 0);

    assert_int_equal(check(f->cert, f->other_key, NULL, &err), -EINVAL);
    assert_string_equal(err.field, "options.tls.key_file");
    assert_non_null(strstr(err.msg, "not the key of the certificate"));

    assert_int_equal(check(f->junk, f->key, NULL, &err), -EINVAL);
    assert_string_equal(err.field, "options.tls.cert_file");

    assert_int_equal(check(f->cert, f->junk, NULL, &err), -EINVAL);
    assert_string_equal(err.field, "options.tls.key_file");

    assert_int_equal(check(f->cert, f->key, f->junk, &err), -EINVAL);
    assert_string_equal(err.field, "options.tls.client_ca_file");

    assert_int_equal(check(f->cert, f->key, f->dir, &err), -EINVAL); /* a directory */
    assert_string_equal(err.field, "options.tls.client_ca_file");
}

static void test_tls_status_shows_the_certificate(void **state)
{
    const struct fx *f = *state;
    json_t *v = json_pack("{s:s, s:s}", "cert_file", f->cert, "key_file", f->key);
    json_t *st = core_tls_status_json(v), *none = core_tls_status_json(NULL);

    assert_true(json_is_true(json_object_get(st, "enabled")));
    assert_true(json_is_false(json_object_get(st, "client_auth")));
    assert_string_equal(json_string_value(json_object_get(st, "subject")), "CN=localhost");
    assert_int_equal(strlen(json_string_value(json_object_get(st, "not_after"))), 20);
    assert_true(json_is_null(none));
    json_decref(st);
    json_decref(none);
    json_decref(v);
}

/* A client on fd trusting nothing (the test's server is self-signed: no verification). */
static SSL *client_new(SSL_CTX **ret_ctx, int fd)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;

    assert_non_null(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    SSL_set_connect_state(ssl);
    *ret_ctx = ctx;
    return ssl;
}

/* Steps both handshakes until the server's is done (the client's too, with TLS 1.3's
 * order). Returns the server's last result. */
static int handshake_both(struct core_tls_conn *s, SSL *c, struct core_metrics *m)
{
    int r = -EAGAIN;

    for (int i = 0; i < 100 && r == -EAGAIN; i++) {
        (void)SSL_do_handshake(c);
        r = core_tls_handshake(s, m);
    }
    for (int i = 0; i < 100 && SSL_do_handshake(c) != 1; i++)
        ;
    return r;
}

static void test_tls_conn_bytes_pending_and_close_notify(void **state)
{
    const struct fx *f = *state;
    json_t *v = json_pack("{s:s, s:s}", "cert_file", f->cert, "key_file", f->key);
    struct core_metrics m;
    struct core_tls_conn *s;
    struct core_tls *t;
    struct core_err err;
    SSL_CTX *cctx;
    SSL *c;
    char big[40000], got[64 * 1024];
    size_t have = 0;
    int sv[2];

    core_metrics_init(&m);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(core_tls_new(v, &t, &err), 0);
    assert_int_equal(core_tls_conn_new(t, sv[0], &s), 0);
    c = client_new(&cctx, sv[1]);

    /* Nothing yet: the handshake waits for the client's hello. */
    assert_int_equal(core_tls_handshake(s, &m), -EAGAIN);
    assert_int_equal(core_tls_conn_events(s), POLLIN);
    assert_int_equal(handshake_both(s, c, &m), 0);
    assert_int_equal(m.c[CORE_CTR_TLS_HANDSHAKES], 1);

    /* Three records, then close_notify: every byte, then the end, without waiting. */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(SSL_write(c, big, sizeof(big)), (int)sizeof(big));
    assert_int_equal(SSL_shutdown(c), 0);
    while (have < sizeof(big)) {
        ssize_t n = core_tls_read(s, got + have, sizeof(got) - have);

        assert_true(n > 0);
        have += (size_t)n;
        if (have < sizeof(big))
            assert_true(core_tls_conn_pending(s));
    }
    assert_memory_equal(got, big, sizeof(big));
    /* The close_notify came with the bytes: told by the next read, and pending till then. */
    assert_true(core_tls_conn_pending(s));
    assert_int_equal(core_tls_read(s, got, sizeof(got)), 0);
    assert_false(core_tls_conn_pending(s));

    /* The server may still answer after the client's close_notify (a half close). */
    assert_int_equal(core_tls_write(s, "bye", 3), 3);
    memset(got, 0, 4);
    assert_int_equal(SSL_read(c, got, sizeof(got)), 3);
    assert_memory_equal(got, "bye", 3);
    core_tls_conn_free(s); /* with its close_notify */
    assert_true(SSL_read(c, got, sizeof(got)) <= 0);
    assert_int_equal(SSL_get_error(c, 0), SSL_ERROR_ZERO_RETURN);

    SSL_free(c);
    SSL_CTX_free(cctx);
    close(sv[0]);
    close(sv[1]);
    core_tls_free(t);
    json_decref(v);
}

static void test_tls_conn_not_tls_counted_as_protocol(void **state)
{
    const struct fx *f = *state;
    json_t *v = json_pack("{s:s, s:s}", "cert_file", f->cert, "key_file", f->key);
    struct core_metrics m;
    struct core_tls_conn *s;
    struct core_tls *t;
    struct core_err err;
    const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    int sv[2];

    core_metrics_init(&m);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(core_tls_new(v, &t, &err), 0);
    assert_int_equal(core_tls_conn_new(t, sv[0], &s), 0);
    assert_int_equal(write(sv[1], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    assert_true(core_tls_handshake(s, &m) < 0);
    assert_int_equal(m.c[CORE_CTR_TLS_HANDSHAKE_FAILURES], 1);
    assert_int_equal(m.c[CORE_CTR_TLS_FAILURES_PROTOCOL], 1);
    core_tls_handshake_cut(&m, -ETIMEDOUT);
    core_tls_handshake_cut(&m, -ECANCELED);
    assert_int_equal(m.c[CORE_CTR_TLS_HANDSHAKE_FAILURES], 2);
    assert_int_equal(m.c[CORE_CTR_TLS_FAILURES_TIMEOUT], 1);
    core_tls_conn_free(s);
    close(sv[0]);
    close(sv[1]);
    core_tls_free(t);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_options_files_checked_name_the_field, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_status_shows_the_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_conn_bytes_pending_and_close_notify, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_conn_not_tls_counted_as_protocol, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
