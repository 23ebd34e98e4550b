/*
 * The fleet over AMQP with TLS (amqps), on a broker private to this test binary with a TLS
 * listener (scripts/broker.sh, BROKER_TLS_DIR): a CA of the test's own signs the broker's
 * certificate for DNS:localhost. A daemon given that CA (and a client certificate of that CA,
 * which the broker verifies) joins over amqps and its events reach a plain-TCP consumer of the
 * same broker; a daemon given another CA never connects, its health says why (TLS) and its API
 * and services are fine; `sockserv fleet ls` over amqps lists the node with the right CA and
 * exits 4 with a TLS message with the wrong one, or with the broker named by 127.0.0.1 (not a
 * name of its certificate).
 *
 * Every test polls with a deadline.
 */

#include <errno.h>
#include <poll.h>
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

#define NODES_MAX 2
#define JOIN_MS 30000    /* a daemon joins a running broker within this */
#define EVENT_MS 15000   /* an event reaches a queue within this */
#define REFUSED_MS 15000 /* a daemon with the wrong CA says why within this */
#define CLI_MS 60000     /* one `sockserv fleet` run */

/* The group's certificates and broker. */
struct group {
    char *dir;
    char tls_dir[IT_PATH_MAX];
    char ca[IT_PATH_MAX + 16];    /* the CA that signed the broker's certificate */
    char other[IT_PATH_MAX + 16]; /* a CA that did not */
    char cert[IT_PATH_MAX + 16];  /* a client certificate signed by ca */
    char key[IT_PATH_MAX + 16];   /* its key */
    char url[160];                /* amqps://guest:guest@localhost:TLSPORT/ */
    struct it_broker b;
};

struct tls {
    struct group *g;
    char *dir;
    char prefix[64];
    char events[96];
    struct it_daemon d[NODES_MAX];
    struct it_amqp *peer;
};

/* In dir: ca.pem (a CA), server.pem/server.key (signed by it, for DNS:localhost), client.pem/
 * client.key (signed by it), other.pem (another CA); with openssl(1). Asserts. */
static void make_certificates(const char *dir)
{
    static const char script[] =
        "set -e; cd \"$1\"\n"
        "ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
        "for ca in ca other; do\n"
        "  openssl req -x509 $ec -days 2 -subj /CN=sockserv-test-$ca -keyout $ca.key -out $ca.pem"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign\n"
        "done\n"
        "printf 'subjectAltName=DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext\n"
        "printf 'extendedKeyUsage=clientAuth\\n' > client.ext\n"
        "for who in server client; do\n"
        "  cn=localhost; [ $who = server ] || cn=sockserv-test-client\n"
        "  openssl req -new $ec -subj /CN=$cn -keyout $who.key -out $who.csr\n"
        "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile $who.ext -out $who.pem\n"
        "done\n"
        "chmod 600 *.key\n";
    struct it_proc p;

    it_run((const char *const[]){"/bin/sh", "-c", script, "make-certificates", dir, NULL}, NULL, 0,
           60000, &p);
    if (it_proc_exit_code(&p) != 0)
        fprintf(stderr, "# openssl: %s%s\n", p.out, p.err);
    assert_int_equal(it_proc_exit_code(&p), 0);
    it_proc_fini(&p);
}

static int group_setup(void **state)
{
    struct group *g = calloc(1, sizeof(*g));

    assert_non_null(g);
    *state = g;
    if (!it_have_rabbitmq())
        return 0;
    g->dir = it_tmpdir_new();
    snprintf(g->tls_dir, sizeof(g->tls_dir), "%s/tls", g->dir);
    assert_int_equal(mkdir(g->tls_dir, 0700), 0);
    make_certificates(g->tls_dir);
    snprintf(g->ca, sizeof(g->ca), "%s/ca.pem", g->tls_dir);
    snprintf(g->other, sizeof(g->other), "%s/other.pem", g->tls_dir);
    snprintf(g->cert, sizeof(g->cert), "%s/client.pem", g->tls_dir);
    snprintf(g->key, sizeof(g->key), "%s/client.key", g->tls_dir);
    if (it_broker_private_start_tls(&g->b, g->dir, g->tls_dir) < 0) {
        fprintf(stderr, "# the private broker did not start\n");
        return -1;
    }
    snprintf(g->url, sizeof(g->url), "amqps://guest:guest@localhost:%u/", (unsigned)g->b.tls_port);
    fprintf(stderr, "# private broker %s and %s in %s\n", g->b.url, g->url, g->b.dir);
    return 0;
}

static int group_teardown(void **state)
{
    struct group *g = *state;

    if (g->dir) {
        it_broker_private_stop(&g->b);
        it_tmpdir_remove(g->dir);
    }
    free(g);
    return 0;
}

static int tls_setup(void **state)
{
    struct tls *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    t->g = *state;
    t->dir = it_tmpdir_new();
    it_fleet_prefix(t->prefix, sizeof(t->prefix));
    snprintf(t->events, sizeof(t->events), "%s.events", t->prefix);
    *state = t;
    return 0;
}

static int tls_teardown(void **state)
{
    struct tls *t = *state;
    struct group *g = t->g;

    it_amqp_close(t->peer);
    it_daemons_stop_all(t->d, NODES_MAX);
    it_tmpdir_remove(t->dir);
    *state = g;
    free(t);
    return 0;
}

/* The fixture, with the broker running; skips without RabbitMQ (a skip fails CI). */
static struct tls *tls_of(void **state)
{
    struct tls *t = *state;

    if (!it_have_rabbitmq()) {
        fprintf(stderr, "# SKIPPED: rabbitmq-server is not installed (scripts/deps.sh test)\n");
        skip();
    }
    if (it_broker_pid(&t->g->b) == 0)
        assert_int_equal(it_broker_private_restart(&t->g->b), 0);
    return t;
}

/* Starts node i as name over amqps, trusting cacert; with client_cert, presenting the group's
 * client certificate (which the broker verifies). */
static struct it_daemon *node_start(struct tls *t, int i, const char *name, const char *cacert,
                                    bool client_cert)
{
    const char *const extra[] = {
        "--amqp-cacert", cacert, client_cert ? "--amqp-cert" : NULL, t->g->cert, "--amqp-key",
        t->g->key,       NULL};

    it_fleet_node_start(&t->d[i], &(struct it_fleet_node_opts){.dir = t->dir,
                                                               .url = t->g->url,
                                                               .prefix = t->prefix,
                                                               .node = name,
                                                               .extra_args = extra});
    return &t->d[i];
}

/* Polls the daemon's health until its fleet member has a last_error, for at most timeout_ms;
 * returns that member (new reference), failing when none came or the bridge said connected. */
static json_t *wait_last_error(const struct it_daemon *d, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    json_t *h;

    for (;;) {
        h = it_fleet_health(d);
        assert_non_null(h);
        assert_string_not_equal(it_json_str(h, "state"), "connected");
        if (json_is_string(json_object_get(h, "last_error")))
            return h;
        json_decref(h);
        if (it_now_ms() >= deadline)
            fail_msg("no last_error within %d ms", timeout_ms);
        (void)poll(NULL, 0, 100);
    }
}

/* ---- the right CA (and a client certificate): the daemon joins, its events reach a plain-TCP
 * consumer ---- */

static void test_fleet_tls_daemon_joins_over_amqps(void **state)
{
    struct tls *t = tls_of(state);
    const char *const pattern[] = {"ev.n1.#", NULL};
    struct it_daemon *n1;
    struct it_amqp_msg m;
    json_t *h;
    char *q, *text;

    /* the consumer: plain TCP on the same broker */
    t->peer = it_amqp_open_ok(t->g->b.url);
    it_amqp_exchange(t->peer, t->events);
    q = it_amqp_subscribe(t->peer, NULL, t->events, pattern);
    free(q);

    n1 = node_start(t, 0, "n1", t->g->ca, true);
    it_fleet_assert_state(n1, "connected", JOIN_MS);
    h = it_fleet_health(n1);
    text = json_dumps(h, JSON_COMPACT);
    fprintf(stderr, "# n1 over amqps: %s\n", text ? text : "");
    free(text);
    assert_true(json_object_get(h, "last_error") == NULL ||
                json_is_null(json_object_get(h, "last_error")));
    json_decref(h);

    (void)it_listener_create_port(n1, "{\"id\":\"e\",\"service\":\"echo\",\"port\":0}");
    assert_int_equal(it_amqp_next_matching(t->peer, "ev.n1.listener.created", EVENT_MS, &m), 0);
    assert_non_null(m.json);
    fprintf(stderr, "# over amqps, then TCP: %s %s\n", m.routing_key, m.body);
    it_amqp_msg_fini(&m);
    it_fleet_assert_state(n1, "connected", 1000);
}

/* ---- the wrong CA: never connects, says why, the API and services are fine ---- */

static void test_fleet_tls_wrong_ca_refused_api_fine(void **state)
{
    struct tls *t = tls_of(state);
    static const char msg[] = "echo while the broker is not trusted";
    struct it_daemon *n2 = node_start(t, 0, "n2", t->g->other, false);
    const char *err;
    uint16_t port;
    json_t *h;

    it_assert_daemon_alive(n2);
    port = it_listener_create_port(n2, "{\"id\":\"e\",\"service\":\"echo\",\"port\":0}");
    h = wait_last_error(n2, REFUSED_MS);
    err = it_json_str(h, "last_error");
    fprintf(stderr, "# wrong CA: %s, %s\n", it_json_str(h, "state"), err);
    assert_non_null(strstr(err, "TLS"));
    json_decref(h);
    /* it keeps trying and keeps failing: a second look, after another attempt's worth, still
     * not connected */
    assert_false(it_fleet_wait_state(n2, "connected", 3000));
    it_assert_tcp_echo("127.0.0.1", port, msg, sizeof(msg) - 1);
    it_assert_daemon_alive(n2);
}

/* ---- sockserv fleet ls over amqps: the CA and the host name verified ---- */

static void test_fleet_tls_cli_ls_right_and_wrong_ca(void **state)
{
    struct tls *t = tls_of(state);
    struct it_daemon *n3 = node_start(t, 0, "n3", t->g->ca, false);
    struct it_proc p;
    char url[160];

    it_fleet_assert_state(n3, "connected", JOIN_MS);
    it_fleet_cli(t->g->url, t->prefix,
                 (const char *const[]){"--amqp-cacert", t->g->ca, "ls", "--wait", "5s", NULL},
                 CLI_MS, &p);
    if (it_proc_exit_code(&p) != 0)
        fail_msg("fleet ls (%s): %s %s", it_status_str(p.status), p.out, p.err);
    assert_non_null(strstr(p.out, "\nn3 "));
    it_proc_fini(&p);

    it_fleet_cli(t->g->url, t->prefix,
                 (const char *const[]){"--amqp-cacert", t->g->other, "ls", NULL}, CLI_MS, &p);
    fprintf(stderr, "# fleet ls, wrong CA: %s: %s\n", it_status_str(p.status), p.err);
    assert_int_equal(it_proc_exit_code(&p), 4);
    assert_non_null(strstr(p.err, "TLS"));
    assert_null(strstr(p.out, "n3"));
    it_proc_fini(&p);

    /* the right CA, but the broker named by an address its certificate does not name */
    snprintf(url, sizeof(url), "amqps://guest:guest@127.0.0.1:%u/", (unsigned)t->g->b.tls_port);
    it_fleet_cli(url, t->prefix, (const char *const[]){"--amqp-cacert", t->g->ca, "ls", NULL},
                 CLI_MS, &p);
    fprintf(stderr, "# fleet ls, by address: %s: %s\n", it_status_str(p.status), p.err);
    assert_int_equal(it_proc_exit_code(&p), 4);
    assert_non_null(strstr(p.err, "TLS"));
    it_proc_fini(&p);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, tls_setup, tls_teardown)
    const struct CMUnitTest tests[] = {
        T(test_fleet_tls_daemon_joins_over_amqps),
        T(test_fleet_tls_wrong_ca_refused_api_fine),
        T(test_fleet_tls_cli_ls_right_and_wrong_ca),
    };
#undef T
    /* SOCKSERV_TEST_FILTER=PATTERN runs the tests whose name matches (by hand) */
    if (getenv("SOCKSERV_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SOCKSERV_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
