/*
 * HTTPS for the control API (docs/security.md): a certificate made by the test with openssl,
 * the daemon serving it, clients that trust it (libcurl, `sockserv ctl --cacert`), old TLS
 * refused, bad files named before anything is bound, and the rule that an address others can
 * reach needs TLS or the operator's explicit word.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define TOKEN "7d3c1a9f5e2b4c8d0a6f3e1b9c7d5a2e"

struct tls_fixture {
    struct it_fixture f; /* first: it_fixture_teardown() frees the whole */
    char cert[IT_PATH_MAX], key[IT_PATH_MAX], other_key[IT_PATH_MAX], token[IT_PATH_MAX];
};

/* The common fixture (first, so that it_fixture_teardown() frees the whole) and the files. */
static int setup(void **state)
{
    struct tls_fixture *t = calloc(1, sizeof(*t));
    char other_cert[IT_PATH_MAX + 16];
    void *inner = NULL;

    assert_non_null(t);
    assert_int_equal(it_fixture_setup_dir(&inner), 0);
    t->f = *(struct it_fixture *)inner;
    free(inner);
    /* Where it_daemon_start() looks for the certificate of a daemon started with TLS. */
    snprintf(t->cert, sizeof(t->cert), "%s/api-cert.pem", t->f.dir);
    snprintf(t->key, sizeof(t->key), "%s/api-key.pem", t->f.dir);
    snprintf(t->other_key, sizeof(t->other_key), "%s/other-key.pem", t->f.dir);
    snprintf(t->token, sizeof(t->token), "%s/token", t->f.dir);
    snprintf(other_cert, sizeof(other_cert), "%s/other-cert.pem", t->f.dir);
    it_make_certificate(t->cert, t->key);
    it_make_certificate(other_cert, t->other_key);
    assert_int_equal(it_file_write(t->token, TOKEN "\n", strlen(TOKEN) + 1), 0);
    assert_int_equal(chmod(t->token, 0600), 0);
    *state = t;
    return 0;
}

/* Starts the daemon on 127.0.0.1 with the certificate and the token. */
static void start_tls(struct tls_fixture *t)
{
    it_daemon_start_ok(&t->f.d,
                       &(struct it_daemon_opts){.dir = t->f.dir, .tls = true, .token = TOKEN});
    assert_string_equal(t->f.d.cacert, t->cert);
}

/*
 * GET url, trusting cacert (NULL: the system's CAs), TLS versions tls_min..tls_max (10 to 13;
 * 0: libcurl's default), with the token or none. Returns 0 with *ret (release with
 * it_http_fini()) or -EIO when no HTTP answer came (ret->error says why).
 */
static int get(const char *url, const char *cacert, int tls_min, int tls_max, bool with_token,
               struct it_http *ret)
{
    return it_http_request(NULL,
                           &(struct it_req){.url = url,
                                            .cacert = cacert,
                                            .tls_min = tls_min,
                                            .tls_max = tls_max,
                                            .token = with_token ? TOKEN : NULL,
                                            .timeout_ms = IT_IO_TIMEOUT_MS,
                                            .quiet = true},
                           ret);
}

/* get() that asserts an answer with status came, in *r (release with it_http_fini()). */
static void get_ok(const char *url, const char *cacert, int tls_min, int tls_max, bool with_token,
                   long status, struct it_http *r)
{
    if (get(url, cacert, tls_min, tls_max, with_token, r) < 0)
        fail_msg("GET %s: no answer (%s)", url, r->error);
    assert_int_equal(r->status, status);
}

static void test_tls_api_serves_https_and_says_so(void **state)
{
    struct tls_fixture *t = *state;
    char url[256];
    struct it_http a;

    start_tls(t);
    assert_int_equal(strncmp(t->f.d.url, "https://127.0.0.1:", 18), 0);
    /* The harness's own client: the daemon's certificate trusted, the token sent. */
    json_decref(it_http_expect(&t->f.d, "GET", "/api/v1/listeners", NULL, 200));
    snprintf(url, sizeof(url), "%s/api/v1/listeners", t->f.d.url);
    get_ok(url, t->cert, 0, 0, true, 200, &a);
    assert_non_null(strstr(a.body, "\"listeners\""));
    it_http_fini(&a);
    /* By name too: the certificate names localhost. */
    snprintf(url, sizeof(url), "https://localhost:%u/", (unsigned)t->f.d.api_port);
    get_ok(url, t->cert, 0, 0, false, 200, &a);
    assert_non_null(strstr(a.body, "<title>sockserv dashboard</title>"));
    it_http_fini(&a);
    /* A client that does not trust the certificate is refused by its own check. */
    snprintf(url, sizeof(url), "%s/api/v1/health", t->f.d.url);
    assert_int_equal(get(url, NULL, 0, 0, false, &a), -EIO);
    fprintf(stderr, "# untrusted: %s\n", a.error);
    assert_true(a.tls_unverified);
    /* Plain HTTP on the port gets no HTTP answer. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/v1/health", (unsigned)t->f.d.api_port);
    assert_int_equal(get(url, NULL, 0, 0, false, &a), -EIO);
    assert_int_equal(a.status, 0);
}

static void test_tls_versions_before_1_2_are_refused(void **state)
{
    struct tls_fixture *t = *state;
    char url[256];
    struct it_http a;

    start_tls(t);
    snprintf(url, sizeof(url), "%s/api/v1/health", t->f.d.url);
    if (get(url, t->cert, 11, 11, false, &a) == 0) {
        fprintf(stderr, "# TLS 1.1 was accepted\n");
        it_http_fini(&a);
        fail_msg("TLS 1.1 was accepted");
    }
    assert_int_equal(a.status, 0);
    assert_int_equal(get(url, t->cert, 10, 10, false, &a), -EIO);
    /* The same client, allowed 1.2, gets in: the refusal was the daemon's. */
    get_ok(url, t->cert, 11, 12, false, 200, &a);
    it_http_fini(&a);
    get_ok(url, t->cert, 13, 13, false, 200, &a);
    it_http_fini(&a);
}

/* Runs `sockserv ctl ARGS` with env (NULL-terminated "NAME=VALUE", may be NULL) set. */
static void run_ctl(const char *const *args, struct it_proc *ret)
{
    const char *argv[16] = {it_bin(), "ctl"};
    size_t n = 2;

    for (; *args; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    it_run(argv, NULL, 0, 20000, ret);
}

static void test_tls_ctl_trusts_the_cacert_given(void **state)
{
    struct tls_fixture *t = *state;
    struct it_proc p;

    start_tls(t);
    run_ctl((const char *const[]){"--api", t->f.d.url, "--token-file", t->token, "--cacert",
                                  t->cert, "ls", NULL},
            &p);
    if (it_proc_exit_code(&p) != 0)
        fprintf(stderr, "# ctl ls: %s", p.err);
    assert_int_equal(it_proc_exit_code(&p), 0);
    it_proc_fini(&p);
    /* Without it, the message says what to do. */
    run_ctl((const char *const[]){"--api", t->f.d.url, "--token-file", t->token, "ls", NULL}, &p);
    assert_int_equal(it_proc_exit_code(&p), 1);
    assert_non_null(strstr(p.err, "--cacert"));
    it_proc_fini(&p);
    /* A CA file that is not there is named. */
    run_ctl(
        (const char *const[]){"--api", t->f.d.url, "--cacert", "/nonexistent/ca.pem", "ls", NULL},
        &p);
    assert_int_equal(it_proc_exit_code(&p), 1);
    assert_non_null(strstr(p.err, "/nonexistent/ca.pem"));
    it_proc_fini(&p);
}

static void test_tls_ctl_reads_sockserv_cacert(void **state)
{
    struct tls_fixture *t = *state;
    struct it_proc p;

    start_tls(t);
    assert_int_equal(setenv("SOCKSERV_CACERT", t->cert, 1), 0);
    run_ctl((const char *const[]){"--api", t->f.d.url, "--token-file", t->token, "ls", NULL}, &p);
    unsetenv("SOCKSERV_CACERT");
    if (it_proc_exit_code(&p) != 0)
        fprintf(stderr, "# ctl ls: %s", p.err);
    assert_int_equal(it_proc_exit_code(&p), 0);
    it_proc_fini(&p);
}

/* Runs the daemon with args (after "daemon --state-dir DIR/never"); asserts it exits 2 before
 * making its state directory, with a message holding want. */
static void assert_refused_before_binding(struct tls_fixture *t, const char *const *args,
                                          const char *want)
{
    char never[IT_PATH_MAX];
    const char *argv[20] = {it_bin(), "daemon", "--state-dir", never};
    size_t n = 4;
    struct it_proc p;
    struct stat st;

    snprintf(never, sizeof(never), "%s/never", t->f.dir);
    for (; *args; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    it_run(argv, NULL, 0, IT_EXIT_TIMEOUT_MS, &p);
    fprintf(stderr, "# %s: %s", it_status_str(p.status), p.err);
    assert_int_equal(it_proc_exit_code(&p), 2);
    assert_non_null(strstr(p.err, want));
    it_proc_fini(&p);
    assert_int_equal(stat(never, &st), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_tls_bad_files_are_named_before_binding(void **state)
{
    struct tls_fixture *t = *state;
    char missing[IT_PATH_MAX + 16];

    snprintf(missing, sizeof(missing), "%s/missing.pem", t->f.dir);
    assert_refused_before_binding(t,
                                  (const char *const[]){"--api", "127.0.0.1:0", "--api-tls-cert",
                                                        missing, "--api-tls-key", t->key, NULL},
                                  missing);
    /* A key where the certificate should be. */
    assert_refused_before_binding(t,
                                  (const char *const[]){"--api", "127.0.0.1:0", "--api-tls-cert",
                                                        t->key, "--api-tls-key", t->key, NULL},
                                  t->key);
    /* A certificate where the key should be. */
    assert_refused_before_binding(t,
                                  (const char *const[]){"--api", "127.0.0.1:0", "--api-tls-cert",
                                                        t->cert, "--api-tls-key", t->cert, NULL},
                                  "--api-tls-key");
    /* Another certificate's key. */
    assert_refused_before_binding(t,
                                  (const char *const[]){"--api", "127.0.0.1:0", "--api-tls-cert",
                                                        t->cert, "--api-tls-key", t->other_key,
                                                        NULL},
                                  t->other_key);
    /* One without the other. */
    assert_refused_before_binding(
        t, (const char *const[]){"--api", "127.0.0.1:0", "--api-tls-cert", t->cert, NULL},
        "--api-tls-key");
    /* A Unix socket has no TLS. */
    snprintf(missing, sizeof(missing), "unix:%s/api.sock", t->f.dir);
    assert_refused_before_binding(t,
                                  (const char *const[]){"--api", missing, "--api-tls-cert", t->cert,
                                                        "--api-tls-key", t->key, NULL},
                                  "--api HOST:PORT only");
}

static void test_tls_open_address_needs_tls_or_the_operators_word(void **state)
{
    struct tls_fixture *t = *state;
    char never[IT_PATH_MAX];
    struct it_proc p;

    /* A token alone is not enough: it would cross the network in clear. */
    assert_refused_before_binding(
        t, (const char *const[]){"--api", "0.0.0.0:0", "--token-file", t->token, NULL},
        "--api-tls-cert");
    assert_refused_before_binding(
        t, (const char *const[]){"--api", "[::]:0", "--token-file", t->token, NULL},
        "--api-insecure-plain-http");
    /*
     * With TLS, or with --api-insecure-plain-http, the policy lets it go on: it fails only at
     * the bind of an address this machine does not have (TEST-NET-1).
     */
    snprintf(never, sizeof(never), "%s/state", t->f.dir);
    for (int i = 0; i < 2; i++) {
        const char *const argv[] = {it_bin(),
                                    "daemon",
                                    "--state-dir",
                                    never,
                                    "--no-defaults",
                                    "--api",
                                    "192.0.2.1:0",
                                    "--token-file",
                                    t->token,
                                    i == 0 ? "--api-insecure-plain-http" : "--api-tls-cert",
                                    i == 0 ? NULL : t->cert,
                                    "--api-tls-key",
                                    t->key,
                                    NULL};

        it_run(argv, NULL, 0, IT_EXIT_TIMEOUT_MS, &p);
        fprintf(stderr, "# %s: %s", it_status_str(p.status), p.err);
        assert_int_not_equal(it_proc_exit_code(&p), 0);
        assert_non_null(strstr(p.err, "cannot serve the API on 192.0.2.1:0"));
        it_proc_fini(&p);
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_tls_api_serves_https_and_says_so),
        T(test_tls_versions_before_1_2_are_refused),
        T(test_tls_ctl_trusts_the_cacert_given),
        T(test_tls_ctl_reads_sockserv_cacert),
        T(test_tls_bad_files_are_named_before_binding),
        T(test_tls_open_address_needs_tls_or_the_operators_word),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
