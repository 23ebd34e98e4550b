/*
 * HTTPS for the control API (README "Security"): a certificate made by the test with openssl,
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

#include <curl/curl.h>
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
    snprintf(t->cert, sizeof(t->cert), "%s/cert.pem", t->f.dir);
    snprintf(t->key, sizeof(t->key), "%s/key.pem", t->f.dir);
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

/* Starts the daemon on 127.0.0.1 with the certificate, the token and extra (may be NULL). */
static void start_tls(struct tls_fixture *t, const char *extra)
{
    const char *const args[] = {"--api-tls-cert", t->cert,  "--api-tls-key", t->key,
                                "--token-file",   t->token, extra,           NULL};

    it_daemon_start_ok(&t->f.d, &(struct it_daemon_opts){.dir = t->f.dir, .extra_args = args});
}

struct answer {
    CURLcode code;
    long status;
    char body[4096];
    size_t len;
};

static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n, room = sizeof(a->body) - 1 - a->len;

    memcpy(a->body + a->len, buf, len < room ? len : room);
    a->len += len < room ? len : room;
    a->body[a->len] = '\0';
    return len;
}

/* GET url with libcurl, trusting cacert (NULL: the system's CAs), TLS versions min..max. */
static void get(const char *url, const char *cacert, long ssl_version, bool with_token,
                struct answer *ret)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;

    memset(ret, 0, sizeof(*ret));
    assert_non_null(h);
    if (with_token)
        hdrs = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)IT_IO_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, ret);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
    if (ssl_version) {
        curl_easy_setopt(h, CURLOPT_SSLVERSION, ssl_version);
        /* The client's own policy must not be what refuses an old version. */
        curl_easy_setopt(h, CURLOPT_SSL_CIPHER_LIST, "DEFAULT:@SECLEVEL=0");
    }
    ret->code = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
}

static void test_tls_api_serves_https_and_says_so(void **state)
{
    struct tls_fixture *t = *state;
    char url[256];
    struct answer a;

    start_tls(t, NULL);
    assert_int_equal(strncmp(t->f.d.url, "https://127.0.0.1:", 18), 0);
    snprintf(url, sizeof(url), "%s/api/v1/listeners", t->f.d.url);
    get(url, t->cert, 0, true, &a);
    if (a.code != CURLE_OK)
        fprintf(stderr, "# %s: %s\n", url, curl_easy_strerror(a.code));
    assert_int_equal(a.code, CURLE_OK);
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.body, "\"listeners\""));
    /* By name too: the certificate names localhost. */
    snprintf(url, sizeof(url), "https://localhost:%u/", (unsigned)t->f.d.api_port);
    get(url, t->cert, 0, false, &a);
    assert_int_equal(a.code, CURLE_OK);
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.body, "<title>sockserv dashboard</title>"));
    /* A client that does not trust the certificate is refused by its own check. */
    snprintf(url, sizeof(url), "%s/api/v1/health", t->f.d.url);
    get(url, NULL, 0, false, &a);
    assert_int_equal(a.code, CURLE_PEER_FAILED_VERIFICATION);
    /* Plain HTTP on the port gets no HTTP answer. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/v1/health", (unsigned)t->f.d.api_port);
    get(url, NULL, 0, false, &a);
    assert_int_not_equal(a.code, CURLE_OK);
    assert_int_equal(a.status, 0);
}

static void test_tls_versions_before_1_2_are_refused(void **state)
{
    struct tls_fixture *t = *state;
    char url[256];
    struct answer a;

    start_tls(t, NULL);
    snprintf(url, sizeof(url), "%s/api/v1/health", t->f.d.url);
    get(url, t->cert, (long)(CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1), false, &a);
    if (a.code == CURLE_OK)
        fprintf(stderr, "# TLS 1.1 was accepted\n");
    assert_int_not_equal(a.code, CURLE_OK);
    assert_int_equal(a.status, 0);
    get(url, t->cert, (long)(CURL_SSLVERSION_TLSv1 | CURL_SSLVERSION_MAX_TLSv1_0), false, &a);
    assert_int_not_equal(a.code, CURLE_OK);
    /* The same client, allowed 1.2, gets in: the refusal was the daemon's. */
    get(url, t->cert, (long)(CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_2), false, &a);
    assert_int_equal(a.code, CURLE_OK);
    assert_int_equal(a.status, 200);
    get(url, t->cert, (long)(CURL_SSLVERSION_TLSv1_3 | CURL_SSLVERSION_MAX_TLSv1_3), false, &a);
    assert_int_equal(a.code, CURLE_OK);
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

    start_tls(t, NULL);
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

    start_tls(t, NULL);
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
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
