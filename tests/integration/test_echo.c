/*
 * Echo over real sockets: TCP (stream and once modes, sequential and thread models) and UDP
 * listeners on ephemeral ports, reached over 127.0.0.1 and ::1 (the default address :: is
 * dual-stack), their exact counters, their limits, and the `sockserv echo` client as a user runs
 * it.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define N_CLIENTS 8

/* ---- TCP stream ---- */

static void run_stream(const struct it_daemon *d, const char *model)
{
    const size_t big_len = 200000;
    char body[256], id[32];
    char *big = it_pattern(big_len, 7);
    uint16_t port;

    snprintf(id, sizeof(id), "stream-%s", model);
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"echo\",\"port\":0,\"model\":\"%s\","
             "\"options\":{\"mode\":\"stream\"}}",
             id, model);
    port = it_listener_create_port(d, body);

    it_assert_tcp_echo("127.0.0.1", port, "hello\n", 6);
    /* Larger than every socket buffer: the server must read and write as it goes. */
    it_assert_tcp_echo("::1", port, big, big_len);
    it_assert_tcp_echo("::1", port, "", 0);

    it_assert_metric_eventually(d, id, "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_eventually(d, id, "bytes_out", 6 + big_len, IT_WAIT_MS);
    it_assert_metric_now(d, id, "bytes_in", 6 + big_len);
    it_assert_metric_now(d, id, "connections_total", 3);
    it_assert_metric_now(d, id, "connections_rejected", 0);
    it_assert_metric_now(d, id, "datagrams_in", 0);
    it_assert_metric_now(d, id, "datagrams_out", 0);
    it_assert_metric_now(d, id, "errors", 0);
    free(big);
}

static void test_echo_tcp_stream_sequential_echoes_v4_v6_with_exact_counts(void **state)
{
    run_stream(it_daemon_of(state), "sequential");
}

static void test_echo_tcp_stream_thread_echoes_v4_v6_with_exact_counts(void **state)
{
    run_stream(it_daemon_of(state), "thread");
}

static void test_echo_tcp_stream_uring_echoes_v4_v6_with_exact_counts(void **state)
{
    run_stream(it_daemon_of(state), "uring");
}

/* ---- TCP once ---- */

static void run_once(const struct it_daemon *d, const char *model)
{
    char body[256], id[32], *reply;
    size_t len;
    uint16_t port;
    int r;

    snprintf(id, sizeof(id), "once-%s", model);
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"echo\",\"port\":0,\"model\":\"%s\","
             "\"options\":{\"mode\":\"once\"}}",
             id, model);
    port = it_listener_create_port(d, body);

    /* The lecture's client: send, then wait; the server echoes and closes. */
    r = it_tcp_exchange("127.0.0.1", port, "ciao", 4, false, IT_IO_TIMEOUT_MS, &reply, &len);
    if (r < 0)
        fail_msg("once over IPv4: %s (want the echo, then the server closing)", strerror(-r));
    assert_int_equal(len, 4);
    assert_memory_equal(reply, "ciao", 4);
    free(reply);
    r = it_tcp_exchange("::1", port, "hello", 5, false, IT_IO_TIMEOUT_MS, &reply, &len);
    if (r < 0)
        fail_msg("once over IPv6: %s (want the echo, then the server closing)", strerror(-r));
    assert_int_equal(len, 5);
    assert_memory_equal(reply, "hello", 5);
    free(reply);
    /* A client that closes its side after the message gets the same. */
    it_assert_tcp_echo("127.0.0.1", port, "bye", 3);

    it_assert_metric_eventually(d, id, "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_eventually(d, id, "bytes_out", 12, IT_WAIT_MS);
    it_assert_metric_now(d, id, "bytes_in", 12);
    it_assert_metric_now(d, id, "connections_total", 3);
    it_assert_metric_now(d, id, "errors", 0);
}

static void test_echo_tcp_once_sequential_echoes_then_closes(void **state)
{
    run_once(it_daemon_of(state), "sequential");
}

static void test_echo_tcp_once_thread_echoes_then_closes(void **state)
{
    run_once(it_daemon_of(state), "thread");
}

static void test_echo_tcp_once_uring_echoes_then_closes(void **state)
{
    run_once(it_daemon_of(state), "uring");
}

/* ---- UDP ---- */

static void test_echo_udp_echoes_v4_v6_with_exact_counts(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const size_t max = 65507;
    char *big = it_pattern(max, 3), *mid = it_pattern(1200, 5);
    uint16_t port;

    port = it_listener_create_port(
        d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}");
    it_assert_udp_echo("127.0.0.1", port, "ping", 4);
    it_assert_udp_echo("::1", port, "pong6", 5);
    it_assert_udp_echo("::1", port, mid, 1200);
    it_assert_udp_echo("127.0.0.1", port, big, max);

    it_assert_metric_eventually(d, "u1", "datagrams_out", 4, IT_WAIT_MS);
    it_assert_metric_eventually(d, "u1", "bytes_out", 4 + 5 + 1200 + max, IT_WAIT_MS);
    it_assert_metric_now(d, "u1", "datagrams_in", 4);
    it_assert_metric_now(d, "u1", "bytes_in", 4 + 5 + 1200 + max);
    it_assert_metric_now(d, "u1", "datagrams_dropped", 0);
    it_assert_metric_now(d, "u1", "connections_total", 0);
    it_assert_metric_now(d, "u1", "errors", 0);
    free(big);
    free(mid);
}

static void test_echo_udp_longer_than_max_datagram_is_dropped(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char buf[64];
    uint16_t port;
    ssize_t n;
    int fd;

    port = it_listener_create_port(d, "{\"id\":\"u8\",\"service\":\"echo\",\"transport\":\"udp\","
                                      "\"port\":0,\"options\":{\"max_datagram\":8}}");
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

    assert_int_equal(send(fd, "123456789", 9, 0), 9);
    it_assert_metric_eventually(d, "u8", "datagrams_dropped", 1, IT_WAIT_MS);
    assert_int_equal(send(fd, "12345678", 8, 0), 8);
    /* The first reply is the short one's: the long one was not answered. */
    {
        struct timeval tv = {.tv_sec = IT_IO_TIMEOUT_MS / 1000};

        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    }
    n = recv(fd, buf, sizeof(buf), 0);
    assert_int_equal(n, 8);
    assert_memory_equal(buf, "12345678", 8);
    close(fd);
    it_assert_metric_eventually(d, "u8", "datagrams_out", 1, IT_WAIT_MS);
    it_assert_metric_now(d, "u8", "datagrams_in", 2);
}

/* ---- connections: active, concurrent, limited, idle ---- */

static void test_echo_connections_active_rises_and_falls(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port;
    int c1, c2;

    port = it_listener_create_port(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}");
    it_assert_metric_now(d, "e1", "connections_active", 0);

    c1 = it_connect_echoed("127.0.0.1", port, "one");
    it_assert_metric_eventually(d, "e1", "connections_active", 1, IT_WAIT_MS);
    c2 = it_connect_echoed("::1", port, "two");
    it_assert_metric_eventually(d, "e1", "connections_active", 2, IT_WAIT_MS);

    close(c1);
    it_assert_metric_eventually(d, "e1", "connections_active", 1, IT_WAIT_MS);
    close(c2);
    it_assert_metric_eventually(d, "e1", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, "e1", "connections_total", 2);
    it_assert_metric_now(d, "e1", "bytes_in", 6);
}

struct client {
    uint16_t port;
    int index;
    pthread_barrier_t *connected, *served;
    int result; /* 0, or a negative errno with step saying where */
    const char *step;
};

/* One client on its own thread: every client connects, then each is served while all are
 * still open. No cmocka asserts here: they may only run on the test's thread. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    char msg[64], buf[64];
    size_t len;
    int fd;

    len = (size_t)snprintf(msg, sizeof(msg), "client %d says hello", c->index);
    fd = it_tcp_connect(c->index % 2 ? "::1" : "127.0.0.1", c->port, IT_IO_TIMEOUT_MS);
    (void)pthread_barrier_wait(c->connected);
    if (fd < 0) {
        c->result = fd;
        c->step = "connect";
        (void)pthread_barrier_wait(c->served);
        return NULL;
    }
    c->result = it_send_all(fd, msg, len, IT_IO_TIMEOUT_MS);
    c->step = "send";
    if (c->result == 0) {
        c->result = it_recv_exact(fd, buf, len, IT_IO_TIMEOUT_MS);
        c->step = "receive the echo while every client is connected";
    }
    if (c->result == 0 && memcmp(buf, msg, len) != 0) {
        c->result = -EBADMSG;
        c->step = "compare";
    }
    (void)pthread_barrier_wait(c->served);
    close(fd);
    return NULL;
}

static void test_echo_thread_model_serves_concurrent_clients(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    pthread_barrier_t connected, served;
    struct client c[N_CLIENTS];
    pthread_t t[N_CLIENTS];
    uint16_t port;

    port = it_listener_create_port(
        d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0,\"model\":\"thread\"}");
    assert_int_equal(pthread_barrier_init(&connected, NULL, N_CLIENTS), 0);
    assert_int_equal(pthread_barrier_init(&served, NULL, N_CLIENTS), 0);
    for (int i = 0; i < N_CLIENTS; i++) {
        c[i] = (struct client){
            .port = port, .index = i, .connected = &connected, .served = &served, .step = ""};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
    }
    for (int i = 0; i < N_CLIENTS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    (void)pthread_barrier_destroy(&connected);
    (void)pthread_barrier_destroy(&served);
    for (int i = 0; i < N_CLIENTS; i++)
        if (c[i].result != 0)
            fail_msg("client %d: %s: %s", i, c[i].step, strerror(-c[i].result));

    it_assert_metric_eventually(d, "e1", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_now(d, "e1", "connections_total", N_CLIENTS);
    it_assert_metric_now(d, "e1", "connections_rejected", 0);
}

static void test_echo_sequential_model_serves_one_at_a_time(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char buf[8];
    uint16_t port;
    int c1, c2;

    port = it_listener_create_port(
        d, "{\"id\":\"s1\",\"service\":\"echo\",\"port\":0,\"model\":\"sequential\"}");
    c1 = it_connect_echoed("127.0.0.1", port, "first");
    c2 = it_tcp_connect("::1", port, IT_IO_TIMEOUT_MS);
    assert_true(c2 >= 0);
    assert_int_equal(it_send_all(c2, "second", 6, IT_IO_TIMEOUT_MS), 0);
    /* The lecture's loop: the second client waits while the first is served. */
    assert_int_equal(it_recv_exact(c2, buf, 6, 300), -ETIMEDOUT);
    close(c1);
    assert_int_equal(it_recv_exact(c2, buf, 6, IT_IO_TIMEOUT_MS), 0);
    assert_memory_equal(buf, "second", 6);
    close(c2);
    it_assert_metric_eventually(d, "s1", "connections_total", 2, IT_WAIT_MS);
    it_assert_metric_eventually(d, "s1", "connections_active", 0, IT_WAIT_MS);
}

static void test_echo_max_connections_closes_extra_and_counts_it(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *extra = NULL;
    size_t extra_len = 0;
    uint16_t port;
    int c1, c2, r;

    port = it_listener_create_port(d, "{\"id\":\"m1\",\"service\":\"echo\",\"port\":0,"
                                      "\"model\":\"thread\",\"max_connections\":1}");
    c1 = it_connect_echoed("127.0.0.1", port, "holder");
    it_assert_metric_eventually(d, "m1", "connections_active", 1, IT_WAIT_MS);

    /* The second is accepted by the kernel, then closed at once by the daemon. */
    c2 = it_tcp_connect("::1", port, IT_IO_TIMEOUT_MS);
    assert_true(c2 >= 0);
    r = it_read_to_eof(c2, IT_IO_TIMEOUT_MS, &extra, &extra_len);
    if (r != 0 && r != -ECONNRESET)
        fail_msg("the connection past max_connections: %s (want it closed at once)", strerror(-r));
    assert_int_equal(extra_len, 0);
    free(extra);
    close(c2);
    it_assert_metric_eventually(d, "m1", "connections_rejected", 1, IT_WAIT_MS);

    /* The first one is still served; once it leaves, a new one is. */
    assert_int_equal(it_send_all(c1, "more", 4, IT_IO_TIMEOUT_MS), 0);
    {
        char buf[4];

        assert_int_equal(it_recv_exact(c1, buf, 4, IT_IO_TIMEOUT_MS), 0);
        assert_memory_equal(buf, "more", 4);
    }
    close(c1);
    it_assert_metric_eventually(d, "m1", "connections_active", 0, IT_WAIT_MS);
    it_assert_tcp_echo("127.0.0.1", port, "next", 4);
    it_assert_metric_eventually(d, "m1", "connections_total", 2, IT_WAIT_MS);
    it_assert_metric_now(d, "m1", "connections_rejected", 1);
}

static void run_idle(const struct it_daemon *d, const char *model)
{
    char body[256], id[32], buf[12];
    int64_t t0, took;
    uint16_t port;
    int fd, r;

    snprintf(id, sizeof(id), "idle-%s", model);
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"echo\",\"port\":0,\"model\":\"%s\","
             "\"idle_timeout_ms\":200}",
             id, model);
    port = it_listener_create_port(d, body);
    fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
    assert_true(fd >= 0);
    /* The server's last activity comes after this moment, so it may not close before
     * t0 + 200 ms (give or take a coarse clock's tick). */
    t0 = it_now_ms();
    assert_int_equal(it_send_all(fd, "then silence", 12, IT_IO_TIMEOUT_MS), 0);
    assert_int_equal(it_recv_exact(fd, buf, 12, IT_IO_TIMEOUT_MS), 0);
    r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, NULL, NULL);
    took = it_now_ms() - t0;
    close(fd);
    if (r != 0 && r != -ECONNRESET)
        fail_msg("%s: an idle connection was not closed within %d ms: %s", model, IT_IO_TIMEOUT_MS,
                 strerror(-r));
    if (took < 190)
        fail_msg("%s: the idle connection was closed after %lld ms, before 200 ms", model,
                 (long long)took);
    fprintf(stderr, "# %s: closed after %lld ms of silence\n", model, (long long)took);
    it_assert_metric_eventually(d, id, "idle_timeouts", 1, IT_WAIT_MS);
    it_assert_metric_eventually(d, id, "connections_active", 0, IT_WAIT_MS);
    /* The listener serves the next client. */
    it_assert_tcp_echo("::1", port, "next", 4);
}

static void test_echo_idle_connection_closed_after_timeout_thread(void **state)
{
    run_idle(it_daemon_of(state), "thread");
}

static void test_echo_idle_connection_closed_after_timeout_uring(void **state)
{
    run_idle(it_daemon_of(state), "uring");
}

static void test_echo_idle_connection_closed_after_timeout_sequential(void **state)
{
    run_idle(it_daemon_of(state), "sequential");
}

/* ---- the sockserv echo client ---- */

static void run_echo(const char *const *args, const void *in, size_t in_len, struct it_proc *p)
{
    it_run_verb("echo", args, in, in_len, 20000, p);
}

static void assert_cli_reply(const char *const *args, const void *in, size_t in_len,
                             const void *want, size_t want_len)
{
    struct it_proc p;

    run_echo(args, in, in_len, &p);
    assert_int_equal(it_proc_exit_code(&p), 0);
    assert_int_equal(p.out_len, want_len);
    assert_memory_equal(p.out, want, want_len);
    it_proc_fini(&p);
}

static void test_echo_cli_tcp_message_prints_reply(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char port[8], oport[8];

    snprintf(port, sizeof(port), "%u",
             it_listener_create_port(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}"));
    snprintf(oport, sizeof(oport), "%u",
             it_listener_create_port(d, "{\"id\":\"o1\",\"service\":\"echo\",\"port\":0,"
                                        "\"options\":{\"mode\":\"once\"}}"));

    /* Standard output is a pipe here: the reply is printed as it is, no newline added. */
    assert_cli_reply((const char *const[]){"127.0.0.1", port, "ciao", NULL}, NULL, 0, "ciao", 4);
    assert_cli_reply((const char *const[]){"::1", port, "ciao mondo", NULL}, NULL, 0, "ciao mondo",
                     10);
    assert_cli_reply((const char *const[]){"localhost", port, "by name", NULL}, NULL, 0, "by name",
                     7);
    assert_cli_reply((const char *const[]){"--timeout", "3000", "127.0.0.1", oport, "once", NULL},
                     NULL, 0, "once", 4);
    assert_cli_reply((const char *const[]){"::1", oport, "--", "-dash", NULL}, NULL, 0, "-dash", 5);
    it_assert_metric_eventually(d, "e1", "bytes_in", 4 + 10 + 7, IT_WAIT_MS);
}

static void test_echo_cli_tcp_stdin_prints_reply(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const size_t big_len = 300000;
    char *big = it_pattern(big_len, 11);
    char port[8];

    snprintf(port, sizeof(port), "%u",
             it_listener_create_port(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}"));
    assert_cli_reply((const char *const[]){"127.0.0.1", port, NULL}, "line one\nline two\n", 18,
                     "line one\nline two\n", 18);
    assert_cli_reply((const char *const[]){"::1", port, NULL}, big, big_len, big, big_len);
    /* Empty standard input: an empty message and an empty reply. */
    assert_cli_reply((const char *const[]){"127.0.0.1", port, NULL}, "", 0, "", 0);
    free(big);
}

static void test_echo_cli_udp_prints_reply(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char port[8];

    snprintf(port, sizeof(port), "%u",
             it_listener_create_port(
                 d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}"));
    assert_cli_reply((const char *const[]){"--udp", "127.0.0.1", port, "ciao", NULL}, NULL, 0,
                     "ciao", 4);
    assert_cli_reply((const char *const[]){"::1", port, "--udp", "v6", NULL}, NULL, 0, "v6", 2);
    assert_cli_reply((const char *const[]){"--udp", "::1", port, NULL}, "from stdin\n", 11,
                     "from stdin\n", 11);
    it_assert_metric_eventually(d, "u1", "datagrams_in", 3, IT_WAIT_MS);
    it_assert_metric_now(d, "u1", "bytes_in", 4 + 2 + 11);
}

static void test_echo_cli_terminal_prompts_for_message(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *shown;
    char port[8];
    struct it_proc p;

    snprintf(port, sizeof(port), "%u",
             it_listener_create_port(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}"));
    /* The lecture's client asks for the message, sends the line without its newline, and
     * prints the reply: on a terminal, ended with a newline. */
    it_run_pty((const char *const[]){it_bin(), "echo", "127.0.0.1", port, NULL},
               "Message to echo: ", "ciao\n", 20000, &p);
    fprintf(stderr, "# on a terminal -> %s, it showed: %s\n",
            p.timed_out ? "timed out" : it_status_str(p.status), p.out);
    assert_int_equal(it_proc_exit_code(&p), 0);
    shown = strstr(p.out, "Message to echo: ");
    assert_non_null(shown);
    assert_true(p.out_len >= 6);
    assert_string_equal(p.out + p.out_len - 6, "ciao\r\n");
    it_proc_fini(&p);
    it_assert_metric_eventually(d, "e1", "bytes_in", 4, IT_WAIT_MS);

    snprintf(port, sizeof(port), "%u",
             it_listener_create_port(
                 d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}"));
    it_run_pty((const char *const[]){it_bin(), "echo", "--udp", "::1", port, NULL},
               "Message to echo: ", "udp line\n", 20000, &p);
    assert_int_equal(it_proc_exit_code(&p), 0);
    assert_true(p.out_len >= 10);
    assert_string_equal(p.out + p.out_len - 10, "udp line\r\n");
    it_proc_fini(&p);
    it_assert_metric_eventually(d, "u1", "bytes_in", 8, IT_WAIT_MS);
}

static void test_echo_cli_unreachable_exits_1(void **state)
{
    struct it_proc p;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    char port[8], uport[8], want[128];
    uint16_t up;
    int64_t t0;
    int tfd, ufd;

    (void)state;
    /* A TCP port bound but not listening: connections to it are refused. */
    tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(tfd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(tfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(tfd, (struct sockaddr *)&sa, &len), 0);
    snprintf(port, sizeof(port), "%u", ntohs(sa.sin_port));

    run_echo((const char *const[]){"127.0.0.1", port, "hello", NULL}, NULL, 0, &p);
    assert_int_equal(it_proc_exit_code(&p), 1);
    assert_int_equal(p.out_len, 0);
    assert_non_null(strstr(p.err, "refused"));
    it_proc_fini(&p);

    /* A UDP socket that never answers: the timeout. */
    ufd = it_bind(SOCK_DGRAM, "127.0.0.1", 0, &up);
    assert_true(ufd >= 0);
    snprintf(uport, sizeof(uport), "%u", up);
    t0 = it_now_ms();
    run_echo((const char *const[]){"--udp", "--timeout", "300", "127.0.0.1", uport, "hello", NULL},
             NULL, 0, &p);
    assert_int_equal(it_proc_exit_code(&p), 1);
    assert_true(it_now_ms() - t0 >= 250);
    snprintf(want, sizeof(want), "no reply from 127.0.0.1:%s within 300 ms", uport);
    assert_non_null(strstr(p.err, want));
    assert_int_equal(p.out_len, 0);
    it_proc_fini(&p);

    /* UDP to a closed port: refused (or silent), exit 1 either way. */
    close(ufd);
    run_echo((const char *const[]){"--udp", "--timeout", "1000", "127.0.0.1", uport, "x", NULL},
             NULL, 0, &p);
    assert_int_equal(it_proc_exit_code(&p), 1);
    assert_true(p.err_len > 0);
    it_proc_fini(&p);
    close(tfd);
}

static void test_echo_cli_bad_usage_exits_2(void **state)
{
    const char *const *const cases[] = {
        (const char *const[]){NULL},
        (const char *const[]){"127.0.0.1", NULL},
        (const char *const[]){"127.0.0.1", "notaport", "x", NULL},
        (const char *const[]){"127.0.0.1", "0", "x", NULL},
        (const char *const[]){"127.0.0.1", "70000", "x", NULL},
        (const char *const[]){"127.0.0.1", "-5", "x", NULL},
        (const char *const[]){"--bogus", "127.0.0.1", "7", "x", NULL},
        (const char *const[]){"--timeout", "soon", "127.0.0.1", "7", "x", NULL},
        (const char *const[]){"--timeout", "0", "127.0.0.1", "7", "x", NULL},
        (const char *const[]){"127.0.0.1", "7", "x", "--timeout", NULL},
        (const char *const[]){"127.0.0.1", "7", "one", "two", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct it_proc p;

        run_echo(cases[i], NULL, 0, &p);
        assert_int_equal(it_proc_exit_code(&p), 2);
        assert_int_equal(p.out_len, 0);
        assert_non_null(strstr(p.err, "--help"));
        it_proc_fini(&p);
    }
}

static void test_echo_cli_help_exits_0(void **state)
{
    struct it_proc p;

    (void)state;
    run_echo((const char *const[]){"--help", NULL}, NULL, 0, &p);
    assert_int_equal(it_proc_exit_code(&p), 0);
    assert_non_null(strstr(p.out, "sockserv echo"));
    assert_non_null(strstr(p.out, "--udp"));
    assert_non_null(strstr(p.out, "--timeout"));
    it_proc_fini(&p);

    /* The command's own help names every verb. */
    it_run((const char *const[]){it_bin(), "--help", NULL}, NULL, 0, 20000, &p);
    assert_int_equal(it_proc_exit_code(&p), 0);
    assert_non_null(strstr(p.out, "daemon"));
    assert_non_null(strstr(p.out, "echo"));
    it_proc_fini(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
        T(test_echo_tcp_stream_sequential_echoes_v4_v6_with_exact_counts),
        T(test_echo_tcp_stream_thread_echoes_v4_v6_with_exact_counts),
        T(test_echo_tcp_stream_uring_echoes_v4_v6_with_exact_counts),
        T(test_echo_tcp_once_sequential_echoes_then_closes),
        T(test_echo_tcp_once_thread_echoes_then_closes),
        T(test_echo_tcp_once_uring_echoes_then_closes),
        T(test_echo_udp_echoes_v4_v6_with_exact_counts),
        T(test_echo_udp_longer_than_max_datagram_is_dropped),
        T(test_echo_connections_active_rises_and_falls),
        T(test_echo_thread_model_serves_concurrent_clients),
        T(test_echo_sequential_model_serves_one_at_a_time),
        T(test_echo_max_connections_closes_extra_and_counts_it),
        T(test_echo_idle_connection_closed_after_timeout_thread),
        T(test_echo_idle_connection_closed_after_timeout_uring),
        T(test_echo_idle_connection_closed_after_timeout_sequential),
        T(test_echo_cli_tcp_message_prints_reply),
        T(test_echo_cli_tcp_stdin_prints_reply),
        T(test_echo_cli_udp_prints_reply),
        T(test_echo_cli_terminal_prompts_for_message),
        T(test_echo_cli_unreachable_exits_1),
        T(test_echo_cli_bad_usage_exits_2),
        T(test_echo_cli_help_exits_0),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
