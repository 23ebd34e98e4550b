/*
 * TLS on the listeners (options.tls): echo under every model, date and backup over TLS through
 * the command's own clients (--tls), client certificates required and missing, handshake
 * failures counted by reason, bad certificate files refused with the field, and openssl
 * s_client talking to an echo listener. The certificates (a CA, the server's for localhost and
 * 127.0.0.1, a client's, and a stranger's signed by another CA) are made at the start of each
 * test with openssl(1).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/metrics.h"
#include "core/tls.h"
#include "harness.h"

#define CLI_TIMEOUT_MS 20000

struct tls_fx {
    struct it_fixture *fx;
    char openssl[IT_PATH_MAX];
    char ca[IT_PATH_MAX], cert[IT_PATH_MAX], key[IT_PATH_MAX];
    char client_cert[IT_PATH_MAX], client_key[IT_PATH_MAX];
    char other_cert[IT_PATH_MAX], other_key[IT_PATH_MAX]; /* signed by another CA */
};

/* Runs openssl with args (NULL-terminated), in dir; asserts it succeeded. */
static void openssl_run(const struct tls_fx *t, const char *const *args)
{
    const char *argv[32] = {t->openssl};
    struct it_proc p;
    size_t n = 1;

    for (; args[n - 1]; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    it_run(argv, NULL, 0, 30000, &p);
    if (it_proc_exit_code(&p) != 0)
        fail_msg("openssl %s: %s", args[0], p.err);
    it_proc_fini(&p);
}

/* dir/name into buf. */
static void path_of(char *buf, const char *dir, const char *name)
{
    snprintf(buf, IT_PATH_MAX, "%s/%s", dir, name);
}

/* A CA (ca.pem, ca.key) and a certificate it signed for cn, with extensions ext (a file). */
static void make_ca(const struct tls_fx *t, const char *ca, const char *ca_key, const char *cn)
{
    char subj[64];

    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    openssl_run(t, (const char *const[]){"req", "-x509", "-newkey", "ec", "-pkeyopt",
                                         "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key,
                                         "-out", ca, "-days", "30", "-subj", subj, NULL});
}

static void make_signed(const struct tls_fx *t, const char *dir, const char *ca, const char *ca_key,
                        const char *cn, const char *cert, const char *key, const char *ext)
{
    char csr[IT_PATH_MAX], subj[64], serial[IT_PATH_MAX];

    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    snprintf(csr, sizeof(csr), "%s/%s.csr", dir, cn);
    snprintf(serial, sizeof(serial), "%s/%s.srl", dir, cn);
    openssl_run(t,
                (const char *const[]){"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                      "-nodes", "-keyout", key, "-out", csr, "-subj", subj, NULL});
    if (ext)
        openssl_run(t, (const char *const[]){"x509", "-req", "-in", csr, "-CA", ca, "-CAkey",
                                             ca_key, "-CAserial", serial, "-CAcreateserial", "-out",
                                             cert, "-days", "30", "-extfile", ext, NULL});
    else
        openssl_run(t, (const char *const[]){"x509", "-req", "-in", csr, "-CA", ca, "-CAkey",
                                             ca_key, "-CAserial", serial, "-CAcreateserial", "-out",
                                             cert, "-days", "30", NULL});
}

static int setup(void **state)
{
    struct tls_fx *t = calloc(1, sizeof(*t));
    void *inner = NULL;
    char ca_key[IT_PATH_MAX], other_ca[IT_PATH_MAX], other_ca_key[IT_PATH_MAX];
    char ext[IT_PATH_MAX];
    const char *dir;
    int r;

    assert_non_null(t);
    r = it_fixture_setup(&inner);
    if (r != 0)
        return r;
    t->fx = inner;
    dir = t->fx->dir;
    assert_true(it_which("openssl", t->openssl, sizeof(t->openssl)));
    path_of(t->ca, dir, "ca.pem");
    path_of(ca_key, dir, "ca.key");
    path_of(t->cert, dir, "server.pem");
    path_of(t->key, dir, "server.key");
    path_of(t->client_cert, dir, "client.pem");
    path_of(t->client_key, dir, "client.key");
    path_of(other_ca, dir, "other-ca.pem");
    path_of(other_ca_key, dir, "other-ca.key");
    path_of(t->other_cert, dir, "other.pem");
    path_of(t->other_key, dir, "other.key");
    path_of(ext, dir, "server.ext");
    assert_int_equal(it_file_write(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n",
                                   strlen("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")),
                     0);
    make_ca(t, t->ca, ca_key, "test-ca");
    make_signed(t, dir, t->ca, ca_key, "localhost", t->cert, t->key, ext);
    make_signed(t, dir, t->ca, ca_key, "client", t->client_cert, t->client_key, NULL);
    make_ca(t, other_ca, other_ca_key, "other-ca");
    make_signed(t, dir, other_ca, other_ca_key, "stranger", t->other_cert, t->other_key, NULL);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tls_fx *t = *state;
    void *inner = t->fx;
    int r = it_fixture_teardown(&inner);

    free(t);
    return r;
}

/* The "tls" option of t, with the client CA when client_auth. */
static void tls_option(const struct tls_fx *t, bool client_auth, char *buf, size_t len)
{
    if (client_auth)
        snprintf(buf, len, "{\"cert_file\":\"%s\",\"key_file\":\"%s\",\"client_ca_file\":\"%s\"}",
                 t->cert, t->key, t->ca);
    else
        snprintf(buf, len, "{\"cert_file\":\"%s\",\"key_file\":\"%s\"}", t->cert, t->key);
}

/* Creates listener id of service svc under model with TLS (and extra options, "" or ",..."),
 * and returns its port. */
static uint16_t create_tls(const struct tls_fx *t, const char *id, const char *svc,
                           const char *model, bool client_auth, const char *extra)
{
    char body[4096], tls[2048];

    tls_option(t, client_auth, tls, sizeof(tls));
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"%s\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"%s\",\"options\":{\"tls\":%s%s}}",
             id, svc, model, tls, extra);
    return it_listener_create_port(&t->fx->d, body);
}

/* Runs `sockserv ARGS` (NULL-terminated) with in as its standard input. */
static void run_cli(const char *const *args, const void *in, size_t in_len, struct it_proc *p)
{
    const char *argv[32] = {it_bin()};
    size_t n = 1;

    for (; args[n - 1]; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    it_run(argv, in, in_len, CLI_TIMEOUT_MS, p);
}

static void assert_exit(const struct it_proc *p, int code, const char *what)
{
    if (it_proc_exit_code(p) != code)
        fail_msg("%s: exit %d, want %d; stdout '%s' stderr '%s'", what, it_proc_exit_code(p), code,
                 p->out, p->err);
}

/* The uring model drives plain connections only: TLS with it is refused naming options.tls,
 * on a create and on a change of model or options. */
static void test_listener_tls_with_uring_is_400_naming_options_tls(void **state)
{
    const struct tls_fx *t = *state;
    const struct it_daemon *d = &t->fx->d;
    char body[4096], tls[2048];
    struct it_http r;

    tls_option(t, false, tls, sizeof(tls));
    snprintf(body, sizeof(body),
             "{\"id\":\"u\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"uring\",\"options\":{\"tls\":%s}}",
             tls);
    it_http(d, "POST", "/api/v1/listeners", body, &r);
    it_assert_problem(&r, 400, "options.tls");
    assert_non_null(strstr(it_json_str(r.json, "detail"), "'uring'"));
    it_http_fini(&r);
    (void)create_tls(t, "e", "echo", "event", false, "");
    it_http(d, "PATCH", "/api/v1/listeners/e", "{\"model\":\"uring\"}", &r);
    it_assert_problem(&r, 400, "options.tls");
    it_http_fini(&r);
    json_decref(it_listener_create(d, "{\"id\":\"p\",\"service\":\"echo\",\"address\":"
                                      "\"127.0.0.1\",\"port\":0,\"model\":\"uring\"}"));
    snprintf(body, sizeof(body), "{\"options\":{\"tls\":%s}}", tls);
    it_http(d, "PATCH", "/api/v1/listeners/p", body, &r);
    it_assert_problem(&r, 400, "options.tls");
    it_http_fini(&r);
}

static void test_listener_tls_echo_every_model_answers(void **state)
{
    static const char *const models[] = {"sequential", "thread", "pool", "event", "process"};
    const struct tls_fx *t = *state;
    const struct it_daemon *d = &t->fx->d;
    const size_t big_len = 300000;
    char *big = it_pattern(big_len, 3);

    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        char id[32], port[8], msg[64];
        struct it_proc p;
        json_t *l;

        snprintf(id, sizeof(id), "e-%s", models[i]);
        snprintf(port, sizeof(port), "%u", create_tls(t, id, "echo", models[i], false, ""));
        snprintf(msg, sizeof(msg), "hello over TLS under %s", models[i]);
        run_cli(
            (const char *const[]){"echo", "--tls", "--cacert", t->ca, "127.0.0.1", port, msg, NULL},
            NULL, 0, &p);
        assert_exit(&p, 0, models[i]);
        assert_string_equal(p.out, msg);
        it_proc_fini(&p);
        /* Larger than any TLS record and socket buffer, by name (the certificate's DNS name). */
        run_cli((const char *const[]){"echo", "--tls", "--cacert", t->ca, "localhost", port, NULL},
                big, big_len, &p);
        assert_exit(&p, 0, models[i]);
        assert_int_equal(p.out_len, big_len);
        assert_memory_equal(p.out, big, big_len);
        it_proc_fini(&p);

        it_assert_metric_eventually(d, id, "tls_handshakes", 2, IT_WAIT_MS);
        it_assert_metric_eventually(d, id, "bytes_in", strlen(msg) + big_len, IT_WAIT_MS);
        it_assert_metric_eventually(d, id, "connections_active", 0, IT_WAIT_MS);
        assert_int_equal(it_metric(d, id, "tls_handshake_failures"), 0);
        assert_int_equal(it_metric(d, id, "errors"), 0);

        l = it_listener_get(d, id);
        assert_true(it_json_bool(l, "status.tls.enabled"));
        assert_false(it_json_bool(l, "status.tls.client_auth"));
        assert_string_equal(it_json_str(l, "status.tls.subject"), "CN=localhost");
        assert_int_equal(strlen(it_json_str(l, "status.tls.not_after")), 20);
        json_decref(l);
    }
    free(big);
}

/* Polls fd for events until deadline (it_now_ms() time); asserts it came. */
static void wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int r;

    do {
        r = poll(&pfd, 1, (int)(deadline > it_now_ms() ? deadline - it_now_ms() : 0));
    } while (r < 0 && errno == EINTR);
    assert_int_equal(r, 1);
}

/*
 * A server that sends three TLS records at once and then waits, to the echo client with its
 * input still open: the client reads the three from the socket at once (it reads ahead) and
 * prints every byte, while the socket has nothing more to say: records read ahead and not yet
 * decrypted are read before the client waits for the socket.
 */
static void test_listener_tls_client_prints_records_read_ahead_without_waiting(void **state)
{
    const struct tls_fx *t = *state;
    const size_t len = 40000; /* three records */
    char *msg = it_pattern(len, 5), *got = malloc(len), port[8], opt[2048];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), fd, in[2], out[2], status, r;
    int64_t deadline = it_now_ms() + CLI_TIMEOUT_MS / 2;
    struct core_tls_conn *c;
    struct core_metrics m;
    struct core_tls *tls;
    struct core_err err;
    size_t have = 0;
    json_t *v;
    pid_t pid;

    tls_option(t, false, opt, sizeof(opt));
    v = json_loads(opt, 0, NULL);
    assert_int_equal(core_tls_new(v, &tls, &err), 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(port, sizeof(port), "%u", ntohs(sa.sin_port));
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        execl(it_bin(), it_bin(), "echo", "--tls", "--cacert", t->ca, "127.0.0.1", port,
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    wait_fd(lfd, POLLIN, deadline);
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(fd >= 0);
    core_metrics_init(&m);
    assert_int_equal(core_tls_conn_new(tls, fd, &c), 0);
    while ((r = core_tls_handshake(c, &m)) == -EAGAIN)
        wait_fd(fd, core_tls_conn_events(c), deadline);
    assert_int_equal(r, 0);
    while (have < len) { /* three records, sent while the client waits (a partial write each) */
        ssize_t n = core_tls_write(c, msg + have, len - have);

        assert_true(n > 0);
        have += (size_t)n;
    }
    have = 0;
    while (have < len) {
        ssize_t n;

        wait_fd(out[0], POLLIN, deadline); /* fails when the client waits for the socket */
        n = read(out[0], got + have, len - have);
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(got, msg, len);
    close(in[1]); /* the user is done; the server closes in turn */
    core_tls_conn_free(c);
    close(fd);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(out[0]);
    close(lfd);
    core_tls_free(tls);
    json_decref(v);
    free(got);
    free(msg);
}

static void test_listener_tls_date_and_backup_over_tls(void **state)
{
    const struct tls_fx *t = *state;
    const struct it_daemon *d = &t->fx->d;
    const size_t len = 3 * 1024 * 1024 + 17;
    char *data = it_pattern(len, 11);
    char port[8], file[IT_PATH_MAX], back[IT_PATH_MAX];
    struct it_proc p;
    size_t got_len = 0;
    char *got;

    snprintf(port, sizeof(port), "%u", create_tls(t, "d1", "date", "thread", false, ""));
    run_cli((const char *const[]){"date", "--tls", "--cacert", t->ca, "127.0.0.1", port, NULL},
            NULL, 0, &p);
    assert_exit(&p, 0, "date --tls");
    assert_true(p.out_len > 10); /* a date line */
    it_proc_fini(&p);
    it_assert_metric_eventually(d, "d1", "tls_handshakes", 1, IT_WAIT_MS);

    snprintf(port, sizeof(port), "%u", create_tls(t, "b1", "backup", "event", false, ""));
    snprintf(file, sizeof(file), "%s/data.bin", t->fx->dir);
    snprintf(back, sizeof(back), "%s/back.bin", t->fx->dir);
    assert_int_equal(it_file_write(file, data, len), 0);
    run_cli((const char *const[]){"backup", "put", file, "--tls", "--cacert", t->ca, "localhost",
                                  port, NULL},
            NULL, 0, &p);
    assert_exit(&p, 0, "backup put --tls");
    assert_non_null(strstr(p.out, "stored data.bin version 1"));
    it_proc_fini(&p);
    run_cli(
        (const char *const[]){"backup", "ls", "--tls", "--cacert", t->ca, "localhost", port, NULL},
        NULL, 0, &p);
    assert_exit(&p, 0, "backup ls --tls");
    assert_non_null(strstr(p.out, "data.bin"));
    it_proc_fini(&p);
    run_cli((const char *const[]){"backup", "get", "data.bin", "-o", back, "--tls", "--cacert",
                                  t->ca, "127.0.0.1", port, NULL},
            NULL, 0, &p);
    assert_exit(&p, 0, "backup get --tls");
    it_proc_fini(&p);
    got = it_file_read(back, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
    free(data);
    it_assert_metric_eventually(d, "b1", "tls_handshakes", 3, IT_WAIT_MS);
}

static void test_listener_tls_client_cert_required_missing_fails(void **state)
{
    const struct tls_fx *t = *state;
    const struct it_daemon *d = &t->fx->d;
    char port[8];
    struct it_proc p;
    json_t *l;

    snprintf(port, sizeof(port), "%u", create_tls(t, "mtls", "echo", "event", true, ""));
    l = it_listener_get(d, "mtls");
    assert_true(it_json_bool(l, "status.tls.client_auth"));
    json_decref(l);

    run_cli((const char *const[]){"echo", "--tls", "--cacert", t->ca, "127.0.0.1", port, "x", NULL},
            NULL, 0, &p);
    assert_exit(&p, 1, "echo --tls without --cert");
    assert_string_equal(p.out, "");
    it_proc_fini(&p);
    it_assert_metric_eventually(d, "mtls", "tls_failures_no_client_cert", 1, IT_WAIT_MS);

    run_cli((const char *const[]){"echo", "--tls", "--cacert", t->ca, "--cert", t->other_cert,
                                  "--key", t->other_key, "127.0.0.1", port, "x", NULL},
            NULL, 0, &p);
    assert_exit(&p, 1, "echo --tls with a stranger's certificate");
    it_proc_fini(&p);
    it_assert_metric_eventually(d, "mtls", "tls_failures_bad_certificate", 1, IT_WAIT_MS);

    run_cli((const char *const[]){"echo", "--tls", "--cacert", t->ca, "--cert", t->client_cert,
                                  "--key", t->client_key, "127.0.0.1", port, "with a cert", NULL},
            NULL, 0, &p);
    assert_exit(&p, 0, "echo --tls --cert");
    assert_string_equal(p.out, "with a cert");
    it_proc_fini(&p);
    it_assert_metric_eventually(d, "mtls", "tls_handshakes", 1, IT_WAIT_MS);
    assert_int_equal(it_metric(d, "mtls", "tls_handshake_failures"), 2);
}

static void test_listener_tls_plain_client_and_silence_counted(void **state)
{
    const struct tls_fx *t = *state;
    const struct it_daemon *d = &t->fx->d;
    uint16_t port = create_tls(t, "e1", "echo", "thread", false, "");
    uint16_t port2;
    char *reply = NULL;
    int fd;

    /* Not TLS: the server answers with an alert and closes. */
    (void)it_tcp_exchange("127.0.0.1", port, "hello\r\n\r\n", 9, true, IT_IO_TIMEOUT_MS, &reply,
                          NULL);
    free(reply);
    it_assert_metric_eventually(d, "e1", "tls_failures_protocol", 1, IT_WAIT_MS);
    it_assert_metric_eventually(d, "e1", "tls_handshake_failures", 1, IT_WAIT_MS);

    /* Silent past idle_timeout_ms: the handshake times out. */
    {
        char body[4096], tls[2048];

        tls_option(t, false, tls, sizeof(tls));
        snprintf(body, sizeof(body),
                 "{\"id\":\"e2\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
                 "\"model\":\"event\",\"idle_timeout_ms\":300,\"options\":{\"tls\":%s}}",
                 tls);
        port2 = it_listener_create_port(d, body);
    }
    fd = it_tcp_connect("127.0.0.1", port2, IT_IO_TIMEOUT_MS);
    assert_true(fd >= 0);
    assert_int_equal(it_read_to_eof(fd, IT_IO_TIMEOUT_MS, NULL, NULL), 0);
    close(fd);
    it_assert_metric_eventually(d, "e2", "tls_failures_timeout", 1, IT_WAIT_MS);
    assert_int_equal(it_metric(d, "e2", "tls_handshakes"), 0);
}

static void test_listener_tls_bad_files_400_with_field(void **state)
{
    const struct tls_fx *t = *state;
    const struct it_daemon *d = &t->fx->d;
    char body[4096], junk[IT_PATH_MAX];
    json_t *j, *opts;
    struct it_http r;
    bool found = false;

    path_of(junk, t->fx->dir, "junk.pem");
    assert_int_equal(it_file_write(junk, "not a certificate\n", 18), 0);
    struct {
        const char *cert, *key, *ca;
        const char *field;
    } cases[] = {
        {"/nonexistent/server.pem", t->key, NULL, "options.tls.cert_file"},
        {junk, t->key, NULL, "options.tls.cert_file"},
        {t->cert, junk, NULL, "options.tls.key_file"},
        {t->cert, t->client_key, NULL, "options.tls.key_file"}, /* not its key */
        {t->cert, t->key, junk, "options.tls.client_ca_file"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char ca[IT_PATH_MAX + 32] = "";

        if (cases[i].ca)
            snprintf(ca, sizeof(ca), ",\"client_ca_file\":\"%s\"", cases[i].ca);
        snprintf(body, sizeof(body),
                 "{\"id\":\"bad\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
                 "\"options\":{\"tls\":{\"cert_file\":\"%s\",\"key_file\":\"%s\"%s}}}",
                 cases[i].cert, cases[i].key, ca);
        it_http(d, "POST", "/api/v1/listeners", body, &r);
        it_assert_problem(&r, 400, cases[i].field);
        it_http_fini(&r);
    }
    /* UDP has no TLS. */
    snprintf(body, sizeof(body),
             "{\"id\":\"bad\",\"service\":\"echo\",\"transport\":\"udp\",\"address\":\"127.0.0.1\","
             "\"port\":0,\"options\":{\"tls\":{\"cert_file\":\"%s\",\"key_file\":\"%s\"}}}",
             t->cert, t->key);
    it_http(d, "POST", "/api/v1/listeners", body, &r);
    it_assert_problem(&r, 400, "options.tls");
    it_http_fini(&r);
    /* A patch of a running listener is checked the same way, and changes nothing. */
    create_tls(t, "p1", "echo", "pool", false, "");
    snprintf(body, sizeof(body),
             "{\"options\":{\"tls\":{\"cert_file\":\"%s\",\"key_file\":\"%s\"}}}", t->cert,
             t->client_key);
    it_http(d, "PATCH", "/api/v1/listeners/p1", body, &r);
    it_assert_problem(&r, 400, "options.tls.key_file");
    it_http_fini(&r);

    /* Every TCP service lists the option. */
    j = it_http_expect(d, "GET", "/api/v1/services/backup", NULL, 200);
    opts = json_object_get(j, "options");
    for (size_t i = 0; i < json_array_size(opts); i++) {
        json_t *o = json_array_get(opts, i);

        if (strcmp(json_string_value(json_object_get(o, "name")), "tls") == 0) {
            assert_string_equal(json_string_value(json_object_get(o, "type")), "object");
            found = true;
        }
    }
    assert_true(found);
    json_decref(j);
}

static void test_listener_tls_openssl_s_client_talks_to_echo(void **state)
{
    const struct tls_fx *t = *state;
    char connect[64];
    struct it_proc p;
    uint16_t port = create_tls(t, "once", "echo", "event", false, ",\"mode\":\"once\"");

    snprintf(connect, sizeof(connect), "127.0.0.1:%u", port);
    /* once: one message echoed, then the server closes (s_client -quiet waits for that). */
    it_run((const char *const[]){t->openssl, "s_client", "-connect", connect, "-CAfile", t->ca,
                                 "-verify_return_error", "-quiet", NULL},
           "ping over s_client\n", 19, CLI_TIMEOUT_MS, &p);
    if (!strstr(p.out, "ping over s_client"))
        fail_msg("s_client: exit %d, stdout '%s', stderr '%s'", it_proc_exit_code(&p), p.out,
                 p.err);
    it_proc_fini(&p);
    it_assert_metric_eventually(&t->fx->d, "once", "tls_handshakes", 1, IT_WAIT_MS);
}

static void test_listener_tls_cli_bad_ca_exit_1(void **state)
{
    const struct tls_fx *t = *state;
    char port[8], junk[IT_PATH_MAX];
    struct it_proc p;

    snprintf(port, sizeof(port), "%u", create_tls(t, "e3", "echo", "thread", false, ""));
    path_of(junk, t->fx->dir, "junk-ca.pem");
    assert_int_equal(it_file_write(junk, "junk\n", 5), 0);
    run_cli((const char *const[]){"echo", "--tls", "--cacert", junk, "127.0.0.1", port, "x", NULL},
            NULL, 0, &p);
    assert_exit(&p, 1, "echo --cacert junk");
    assert_non_null(strstr(p.err, "--cacert"));
    it_proc_fini(&p);
    /* A CA that did not sign the server's certificate. */
    run_cli((const char *const[]){"echo", "--tls", "--cacert", t->other_cert, "127.0.0.1", port,
                                  "x", NULL},
            NULL, 0, &p);
    assert_exit(&p, 1, "echo --cacert of another CA");
    assert_non_null(strstr(p.err, "certificate verify failed"));
    it_proc_fini(&p);
    /* --cacert alone is a usage error. */
    run_cli((const char *const[]){"date", "--cacert", t->ca, "127.0.0.1", port, NULL}, NULL, 0, &p);
    assert_exit(&p, 2, "date --cacert without --tls");
    it_proc_fini(&p);
}

static void test_listener_tls_prometheus_counts(void **state)
{
    const struct tls_fx *t = *state;
    const struct it_daemon *d = &t->fx->d;
    char port[8];
    struct it_proc p;
    struct it_http r;

    snprintf(port, sizeof(port), "%u", create_tls(t, "pm", "echo", "sequential", false, ""));
    run_cli((const char *const[]){"echo", "--tls", "--cacert", t->ca, "127.0.0.1", port, "x", NULL},
            NULL, 0, &p);
    assert_exit(&p, 0, "echo --tls");
    it_proc_fini(&p);
    it_assert_metric_eventually(d, "pm", "tls_handshakes", 1, IT_WAIT_MS);
    it_http(d, "GET", "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "sockserv_tls_handshakes_total{listener=\"pm\""));
    assert_non_null(strstr(r.body, "sockserv_tls_failures_no_client_cert_total"));
    it_http_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_listener_tls_echo_every_model_answers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listener_tls_with_uring_is_400_naming_options_tls,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_listener_tls_client_prints_records_read_ahead_without_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_tls_date_and_backup_over_tls, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listener_tls_client_cert_required_missing_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listener_tls_plain_client_and_silence_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listener_tls_bad_files_400_with_field, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listener_tls_openssl_s_client_talks_to_echo, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listener_tls_cli_bad_ca_exit_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_tls_prometheus_counts, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
