/*
 * Live reconfiguration (thread -> process -> pool -> thread): a PATCH that changes the model,
 * the workers or the limits of a running TCP listener applies without closing its socket.
 * Established connections go on with the runner they started on (it drains), new ones are
 * served by the new model, the port never refuses a connection meanwhile, and the drained
 * runners' threads end with their last client.
 */

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define N_CLIENTS 4
#define MSG_LEN 256

/* The daemon's threads now. */
static int count_threads(const struct it_daemon *d)
{
    struct it_resources now;

    it_resources_take(d, &now);
    return now.threads;
}

/* A client on one established connection, echoing in a loop until told to stop. */
struct client {
    uint16_t port;
    int fd;
    atomic_bool *stop;
    atomic_uint round_trips;
    atomic_int failure; /* first failure: a negative errno, -EBADMSG for a wrong answer */
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    char msg[MSG_LEN];
    unsigned seed = (unsigned)c->fd;

    while (!atomic_load(c->stop)) {
        int r;

        seed = it_pattern_fill(msg, sizeof(msg), seed);
        r = it_echo_round_trip(c->fd, msg, sizeof(msg), IT_IO_TIMEOUT_MS);
        if (r < 0) {
            atomic_store(&c->failure, r);
            return NULL;
        }
        atomic_fetch_add(&c->round_trips, 1);
    }
    return NULL;
}

/* New connections in a loop: each one must be accepted and answered. */
struct connector {
    uint16_t port;
    atomic_bool *stop;
    atomic_uint served;
    atomic_uint failed;
    int first_failure;
};

static void *connector_main(void *arg)
{
    struct connector *c = arg;

    while (!atomic_load(c->stop)) {
        char *got = NULL;
        size_t len = 0;
        int r = it_tcp_exchange("127.0.0.1", c->port, "x", 1, true, IT_IO_TIMEOUT_MS, &got, &len);

        if (r == 0 && (len != 1 || got[0] != 'x'))
            r = -EBADMSG;
        free(got);
        if (r < 0) {
            if (atomic_fetch_add(&c->failed, 1) == 0)
                c->first_failure = r;
        } else {
            atomic_fetch_add(&c->served, 1);
        }
    }
    return NULL;
}

static void patch(const struct it_daemon *d, const char *body, uint16_t port)
{
    json_t *j = it_listener_patch(d, "rc", body);

    assert_string_equal(it_json_str(j, "status.state"), "running");
    /* The same socket: the ephemeral port did not change. */
    assert_int_equal(it_bound_port(j), port);
    json_decref(j);
}

/* Every client made a few round trips since the counts were zeroed. */
static bool all_progressed(void *arg)
{
    struct client *c = arg;

    for (unsigned i = 0; i < N_CLIENTS; i++)
        if (atomic_load(&c[i].failure) == 0 && atomic_load(&c[i].round_trips) < 3)
            return false;
    return true;
}

static void wait_progress(struct client *c)
{
    for (unsigned i = 0; i < N_CLIENTS; i++)
        atomic_store(&c[i].round_trips, 0);
    assert_true(it_wait_until(IT_WAIT_MS, all_progressed, c));
    for (unsigned i = 0; i < N_CLIENTS; i++)
        assert_int_equal(atomic_load(&c[i].failure), 0);
}

static bool one_progressed(void *arg)
{
    struct client *c = arg;

    return atomic_load(&c->failure) != 0 || atomic_load(&c->round_trips) >= 3;
}

static void wait_progress_one(struct client *c)
{
    atomic_store(&c->round_trips, 0);
    assert_true(it_wait_until(IT_WAIT_MS, one_progressed, c));
    assert_int_equal(atomic_load(&c->failure), 0);
}

static void test_reconfigure_model_workers_limits_keep_connections(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = it_listener_create_port(
        d, "{\"id\":\"rc\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
           "\"model\":\"thread\",\"max_connections\":100,\"options\":{\"mode\":\"stream\"}}");
    int threads0 = count_threads(d), fd;
    atomic_bool stop = false;
    struct client c[N_CLIENTS];
    struct connector conn = {.port = port, .stop = &stop};
    pthread_t tc[N_CLIENTS], tn;
    json_t *res;

    for (unsigned i = 0; i < N_CLIENTS; i++) {
        c[i] = (struct client){.port = port, .stop = &stop};
        c[i].fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
        assert_true(c[i].fd >= 0);
        assert_int_equal(pthread_create(&tc[i], NULL, client_main, &c[i]), 0);
    }
    assert_int_equal(pthread_create(&tn, NULL, connector_main, &conn), 0);
    wait_progress(c);

    /* thread -> process: new connections get a child process, the old ones stay threads. */
    patch(d, "{\"model\":\"process\"}", port);
    wait_progress(c);
    fd = it_connect_echoed("127.0.0.1", port, "ping");
    assert_true(it_children(d, NULL, 0) >= 1);
    close(fd);

    /* process -> pool -> thread, with a new limit; then new workers. */
    patch(d, "{\"model\":\"pool\",\"workers\":2}", port);
    wait_progress(c);
    fd = it_connect_echoed("127.0.0.1", port, "ping");
    /* The child of the connection made under `process` exits once it is closed. */
    it_assert_children_eventually(d, 0);
    close(fd);
    patch(d, "{\"model\":\"thread\",\"max_connections\":50}", port);
    wait_progress(c);
    patch(d, "{\"workers\":3,\"idle_timeout_ms\":60000}", port);
    wait_progress(c);
    res = it_listener_get(d, "rc");
    assert_int_equal(it_json_int(res, "max_connections"), 50);
    assert_int_equal(it_json_int(res, "workers"), 3);
    json_decref(res);

    atomic_store(&stop, true);
    pthread_join(tn, NULL);
    for (unsigned i = 0; i < N_CLIENTS; i++) {
        pthread_join(tc[i], NULL);
        assert_int_equal(atomic_load(&c[i].failure), 0);
        close(c[i].fd);
    }
    if (atomic_load(&conn.failed) != 0)
        fail_msg("%u new connections failed (first: %s)", atomic_load(&conn.failed),
                 strerror(-conn.first_failure));
    assert_true(atomic_load(&conn.served) > 0);
    assert_int_equal(it_metric(d, "rc", "connections_rejected"), 0);

    /* The drained runners' threads end with their clients: back to one acceptor. The
     * registry reaps the finished ones within a second. */
    patch(d, "{\"idle_timeout_ms\":50000}", port);
    it_assert_threads_at_most_eventually(d, threads0, IT_WAIT_MS);
    it_assert_metric_eventually(d, "rc", "connections_active", 0, IT_WAIT_MS);
    assert_int_equal(it_children(d, NULL, 0), 0);
}

static void test_reconfigure_stop_cuts_draining_connections(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = it_listener_create_port(
        d, "{\"id\":\"rc\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
           "\"model\":\"process\",\"options\":{\"mode\":\"stream\"}}");
    int threads0 = count_threads(d);
    int held = it_connect_echoed("127.0.0.1", port, "ping"), held2;
    int64_t t0;
    char *rest = NULL;

    patch(d, "{\"model\":\"thread\"}", port);
    held2 = it_connect_echoed("127.0.0.1", port, "ping");
    /* Both runners hold a connection; a stop cuts both within a second. */
    t0 = it_now_ms();
    json_decref(it_listener_patch(d, "rc", "{\"enabled\":false}"));
    assert_true(it_now_ms() - t0 < 1000);
    assert_int_equal(it_children(d, NULL, 0), 0);
    assert_true(it_read_to_eof(held, IT_IO_TIMEOUT_MS, &rest, NULL) != -ETIMEDOUT);
    free(rest);
    rest = NULL;
    assert_true(it_read_to_eof(held2, IT_IO_TIMEOUT_MS, &rest, NULL) != -ETIMEDOUT);
    free(rest);
    close(held);
    close(held2);
    assert_true(it_tcp_is_refused("127.0.0.1", port));
    /* No acceptor left at all. */
    it_assert_threads_at_most_eventually(d, threads0 - 1, IT_WAIT_MS);
}

static bool client_failed(void *arg)
{
    struct client *c = arg;

    return atomic_load(&c->failure) != 0;
}

/* A drained runner's connections are cut at its deadline (drain_timeout_ms) even when no
 * other change comes: a client that never idles does not keep the old runner alive. */
static void test_reconfigure_drain_deadline_cuts_busy_connection(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = it_listener_create_port(
        d, "{\"id\":\"rc\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
           "\"model\":\"thread\",\"drain_timeout_ms\":1500,\"options\":{\"mode\":\"stream\"}}");
    int threads0 = count_threads(d);
    atomic_bool stop = false;
    struct client c = {.port = port, .stop = &stop};
    pthread_t tc;
    int64_t t0, cut_after;
    int fd;

    c.fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
    assert_true(c.fd >= 0);
    assert_int_equal(pthread_create(&tc, NULL, client_main, &c), 0);
    wait_progress_one(&c);

    t0 = it_now_ms();
    patch(d, "{\"max_connections\":99}", port);
    /* The busy client goes on with the draining runner until the deadline, then is cut. */
    if (!it_wait_until(10000, client_failed, &c))
        fail_msg("the draining connection was still served 10 s after the change");
    cut_after = it_now_ms() - t0;
    assert_true(cut_after >= 1000);
    atomic_store(&stop, true);
    pthread_join(tc, NULL);
    close(c.fd);
    /* The old runner is joined without another change; new connections are served. */
    it_assert_threads_at_most_eventually(d, threads0, IT_WAIT_MS);
    fd = it_connect_echoed("127.0.0.1", port, "ping");
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
        T(test_reconfigure_model_workers_limits_keep_connections),
        T(test_reconfigure_stop_cuts_draining_connections),
        T(test_reconfigure_drain_deadline_cuts_busy_connection),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
