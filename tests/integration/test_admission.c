/*
 * The control API's admission (docs/security.md, api/server.h): a local process that opens
 * many connections from 127.0.0.1 (heads trickled a byte a second, event streams never read)
 * cannot keep health and `sockserv ctl` from being answered; the event streams are capped
 * (503 with Retry-After beyond); an unread stream and a trickled head are cut at their
 * deadlines; the oldest unfinished connections make room for new ones.
 */

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/events.h"
#include "api/server.h"
#include "harness.h"

/* The acceptance run: how many connections, for how long (SOCKSERV_ADMISSION_SECONDS). */
#define FLOOD_CONNECTIONS 250
#define FLOOD_SECONDS_DEFAULT 60
#define FLOOD_SECONDS_MIN 10
#define PROBE_INTERVAL_MS 200
/*
 * Each probe's answer within 1 s. Under a sanitizer, starting `ctl` alone takes 100 to 300 ms
 * and the daemon's every copy of memory is instrumented (several times slower): there the
 * bound is 3 s, the flood the same.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PROBE_MAX_MS 3000
#else
#define PROBE_MAX_MS 1000
#endif
/* Listeners whose resources make every snapshot and metrics event big. */
#define N_LISTENERS 40
/* The receive buffer the attacker asks for: its unread streams fill up fast. */
#define ATTACKER_RCVBUF 4096

/* ---- raw HTTP on loopback ---- */

/* A non-blocking TCP socket connecting to 127.0.0.1:port (rcvbuf > 0: that SO_RCVBUF first).
 * Returns the fd (the connection may still be under way) or -errno. */
static int connect_start(uint16_t port, int rcvbuf)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (rcvbuf > 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        int r = -errno;

        close(fd);
        return r;
    }
    return fd;
}

/* An event stream request (never read further than its head). */
static void stream_request(uint16_t port, char *buf, size_t cap)
{
    snprintf(buf, cap, "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", port);
}

/* Opens an event stream and returns its fd once the 200's head is read; asserts. */
static int stream_open(uint16_t port, int rcvbuf)
{
    char req[128], head[2048];
    int fd = connect_start(port, rcvbuf);

    assert_true(fd >= 0);
    stream_request(port, req, sizeof(req));
    assert_int_equal(it_send_all(fd, req, strlen(req), IT_IO_TIMEOUT_MS), 0);
    if (it_http_read_head(fd, head, sizeof(head), IT_IO_TIMEOUT_MS) != 200)
        fail_msg("an event stream was not opened: %s", head);
    return fd;
}

/* GET path on a new connection: the time to the 200's head, or -1 (no 200 in timeout_ms). */
static int64_t get_ms(uint16_t port, const char *path, int timeout_ms)
{
    char req[256], head[1024];
    int64_t t0 = it_now_ms();
    int fd = connect_start(port, 0), status;

    if (fd < 0)
        return -1;
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n",
             path, port);
    if (it_send_all(fd, req, strlen(req), timeout_ms) < 0) {
        close(fd);
        return -1;
    }
    status = it_http_read_head(fd, head, sizeof(head), timeout_ms - (int)(it_now_ms() - t0));
    close(fd);
    return status == 200 ? it_now_ms() - t0 : -1;
}

/* Whether the peer ended fd's connection (an end or a reset), without reading its data. */
static bool peer_closed(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};

    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Creates the listeners l0..l(n-1), which every snapshot and metrics event then carries. */
static void create_listeners(const struct it_daemon *d, int n)
{
    for (int i = 0; i < n; i++) {
        char body[256];

        snprintf(body, sizeof(body),
                 "{\"id\":\"l%d\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}", i);
        json_decref(it_listener_create(d, body));
    }
}

/* ---- the attacker: its own thread, so that its pace does not depend on the probes ---- */

enum bad_state { BAD_NONE, BAD_CONNECTING, BAD_OPEN };

struct bad {
    int fd;
    enum bad_state state;
    bool stream;      /* holds an event stream, or trickles a head */
    size_t sent;      /* trickler: head bytes sent */
    int64_t since_ms; /* when it opened */
};

struct attacker {
    uint16_t port;
    atomic_bool stop;
    pthread_t thread;
    struct bad bad[FLOOD_CONNECTIONS];
    /* the thread's own until it is joined: */
    unsigned long connects, samples, open_sum;
    unsigned open_min;
    unsigned patches_ok, patches;
};

static const char trickle_text[] =
    "GET /api/v1/health HTTP/1.1\r\nX-Slow: "
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void bad_close(struct bad *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    b->state = BAD_NONE;
}

/* One step of one connection: (re)connect, send, or notice its end. */
static void bad_step(struct attacker *a, struct bad *b, int64_t now, bool trickle_due)
{
    if (b->state == BAD_NONE) {
        b->fd = connect_start(a->port, ATTACKER_RCVBUF);
        if (b->fd >= 0) {
            b->state = BAD_CONNECTING;
            a->connects++;
        }
        return;
    }
    if (b->state == BAD_CONNECTING) {
        struct pollfd pfd = {.fd = b->fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof(err);

        if (poll(&pfd, 1, 0) != 1)
            return;
        if (getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            bad_close(b);
            return;
        }
        b->state = BAD_OPEN;
        b->since_ms = now;
        b->sent = 0;
        if (b->stream) {
            char req[128];

            stream_request(a->port, req, sizeof(req));
            if (send(b->fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
                bad_close(b);
        }
        return;
    }
    if (peer_closed(b->fd)) {
        bad_close(b);
        return;
    }
    if (b->stream) {
        /* A stream the server cut cannot tell it: the end waits behind the unread data. The
         * attacker holds each one past the stall deadline, then opens another. */
        if (now - b->since_ms > (API_SERVER_STALL_S + 2) * 1000)
            bad_close(b);
        return;
    }
    if (trickle_due && b->sent < sizeof(trickle_text) - 1 &&
        send(b->fd, trickle_text + b->sent, 1, MSG_NOSIGNAL) == 1)
        b->sent++;
}

/* A PATCH of listener l<i> on a new connection (events flow); true when it got a 200. */
static bool patch_listener(uint16_t port, int i, unsigned value)
{
    char body[96], req[512], head[4096];
    int fd = connect_start(port, 0), status;

    if (fd < 0)
        return false;
    snprintf(body, sizeof(body), "{\"max_connections_per_source\":%u}", value);
    snprintf(req, sizeof(req),
             "PATCH /api/v1/listeners/l%d HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n"
             "Content-Type: application/merge-patch+json\r\nContent-Length: %zu\r\n\r\n%s",
             i, port, strlen(body), body);
    status = it_send_all(fd, req, strlen(req), 1000) == 0
                 ? it_http_read_head(fd, head, sizeof(head), 1000)
                 : -EIO;
    close(fd);
    if (status != 200)
        fprintf(stderr, "# a PATCH failed: %d\n", status);
    return status == 200;
}

static void *attacker_main(void *arg)
{
    struct attacker *a = arg;
    int64_t next_trickle = 0;
    unsigned patch = 0;

    a->open_min = FLOOD_CONNECTIONS;
    while (!atomic_load(&a->stop)) {
        int64_t now = it_now_ms();
        bool trickle_due = now >= next_trickle;
        unsigned open = 0;

        for (int i = 0; i < FLOOD_CONNECTIONS; i++) {
            bad_step(a, &a->bad[i], now, trickle_due);
            open += a->bad[i].state == BAD_OPEN;
        }
        if (trickle_due)
            next_trickle = now + 1000;
        a->samples++;
        a->open_sum += open;
        if (a->samples > 20 && open < a->open_min)
            a->open_min = open;
        /* Events keep coming: the metrics of every listener each second, and a listener
         * changed every 20 rounds (a change is written to disk on the API's thread: more of
         * them would measure the disk rather than the admission). */
        if (a->samples % 20 == 0) {
            a->patches_ok += patch_listener(a->port, (int)(patch % N_LISTENERS), 1000 + patch % 7);
            patch++;
            a->patches++;
        }
        (void)poll(NULL, 0, 100); /* the attacker's pace */
    }
    for (int i = 0; i < FLOOD_CONNECTIONS; i++)
        bad_close(&a->bad[i]);
    return NULL;
}

static int flood_seconds(void)
{
    const char *v = getenv("SOCKSERV_ADMISSION_SECONDS");
    int n = v ? atoi(v) : 0;

    /* At least long enough for unread streams to be cut by their stall deadline. */
    if (n <= 0)
        return FLOOD_SECONDS_DEFAULT;
    return n < FLOOD_SECONDS_MIN ? FLOOD_SECONDS_MIN : n;
}

static void test_admission_local_flood_leaves_health_and_ctl_answering(void **state)
{
    struct it_fixture *f = *state;
    const int seconds = flood_seconds();
    const char *const ctl_argv[] = {it_bin(), "ctl", "--api", f->d.url, "ls", NULL};
    struct attacker *a = calloc(1, sizeof(*a));
    int64_t t0, end, worst_health = 0, worst_ctl = 0, worst_list = 0;
    unsigned n_health = 0, n_ctl = 0;
    unsigned long connects, open_avg;
    unsigned long long ticks;
    char failure[512] = "";
    struct it_resources base;
    char *log;

    assert_non_null(a);
    create_listeners(&f->d, N_LISTENERS);
    it_resources_settle(&f->d, &base);

    a->port = f->d.api_port;
    for (int i = 0; i < FLOOD_CONNECTIONS; i++)
        a->bad[i] = (struct bad){.fd = -1, .stream = i % 2 == 1};
    assert_int_equal(pthread_create(&a->thread, NULL, attacker_main, a), 0);
    /* The flood is on once the attacker has made its connections. */
    (void)poll(NULL, 0, 2000); /* lets the flood build up: not a synchronisation */

    t0 = it_now_ms();
    end = t0 + (int64_t)seconds * 1000;
    ticks = it_cpu_ticks(f->d.pid);
    for (int64_t next = t0; it_now_ms() < end && !failure[0]; next += PROBE_INTERVAL_MS) {
        struct it_proc p;
        int64_t ms, b;

        ms = get_ms(f->d.api_port, "/api/v1/health", 5000);
        if (ms < 0 || ms >= PROBE_MAX_MS) {
            snprintf(failure, sizeof(failure), "GET /api/v1/health: %s after %lld s of flood",
                     ms < 0 ? "no 200 within 5 s" : "too slow",
                     (long long)(it_now_ms() - t0) / 1000);
            break;
        }
        n_health++;
        if (ms > worst_health)
            worst_health = ms;

        /* What ctl asks, without starting a process: the daemon's part of ctl's time. */
        ms = get_ms(f->d.api_port, "/api/v1/listeners", 5000);
        if (ms < 0 || ms > worst_list)
            worst_list = ms < 0 ? 5000 : ms;

        b = it_now_ms();
        it_run(ctl_argv, NULL, 0, 5000, &p);
        ms = it_now_ms() - b;
        if (it_proc_exit_code(&p) != 0 || !strstr(p.out, "l0") || ms >= PROBE_MAX_MS)
            snprintf(
                failure, sizeof(failure),
                "sockserv ctl ls: exit %d after %lld ms, %lld s into the flood; it said: %.200s",
                it_proc_exit_code(&p), (long long)ms, (long long)(it_now_ms() - t0) / 1000, p.err);
        it_proc_fini(&p);
        if (failure[0])
            break;
        n_ctl++;
        if (ms > worst_ctl)
            worst_ctl = ms;

        if (next + PROBE_INTERVAL_MS > it_now_ms())
            (void)poll(NULL, 0, (int)(next + PROBE_INTERVAL_MS - it_now_ms())); /* pacing */
        else
            next = it_now_ms() - PROBE_INTERVAL_MS;
    }
    ticks = it_cpu_ticks(f->d.pid) - ticks;
    atomic_store(&a->stop, true);
    pthread_join(a->thread, NULL);

    fprintf(stderr,
            "# bound %d ms; %d s: %u health probes (slowest %lld ms), %u ctl ls (slowest %lld ms; "
            "its GET alone %lld ms); the "
            "attacker held %lu connections on average (at least %u), made %lu, %u patches "
            "of %u answered; the daemon used %.1f s of CPU\n",
            PROBE_MAX_MS, seconds, n_health, (long long)worst_health, n_ctl, (long long)worst_ctl,
            (long long)worst_list, a->samples ? a->open_sum / a->samples : 0, a->open_min,
            a->connects, a->patches_ok, a->patches, (double)ticks / (double)sysconf(_SC_CLK_TCK));
    connects = a->connects;
    open_avg = a->samples ? a->open_sum / a->samples : 0;
    free(a);
    if (failure[0])
        fail_msg("%s", failure);
    /* A probe every 200 ms, give or take the time ctl takes to start (much longer under a
     * sanitizer on a busy machine). */
    assert_true(n_health >= (unsigned)seconds * 1000 / PROBE_INTERVAL_MS / 3);
    assert_int_equal(n_ctl, n_health);
    /* The flood was a flood: its connections open all along, more than the shares of
     * unfinished connections and streams hold (the server sheds the oldest, and the attacker
     * opens new ones). */
    assert_true(connects >= FLOOD_CONNECTIONS);
    assert_true(open_avg >= FLOOD_CONNECTIONS / 2);

    /* Every connection of the flood is closed in the end, by the stall deadline at most. */
    it_assert_resources_back(&f->d, &base, (API_SERVER_STALL_S + API_SERVER_HEAD_TIMEOUT_S) * 1000);
    it_assert_daemon_alive(&f->d);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM, IT_EXIT_TIMEOUT_MS, &(int){0}, &(int64_t){0}),
                     0);
    log = it_daemon_stderr(&f->d);
    assert_non_null(strstr(log, "to make room for new ones"));
    assert_non_null(strstr(log, "read nothing of the response"));
    free(log);
    it_assert_no_sanitizer_report(&f->d);
}

/* ---- the cap of event streams ---- */

static void test_admission_stream_cap_is_503_with_retry_after(void **state)
{
    struct it_fixture *f = *state;
    const uint16_t port = f->d.api_port;
    int fds[API_SERVER_STREAM_LIMIT];
    char req[160], *text = NULL, *body;
    size_t len;
    json_t *problem;
    int fd, status = 0;
    int64_t deadline;

    for (int i = 0; i < API_SERVER_STREAM_LIMIT; i++)
        fds[i] = stream_open(port, 0);

    /* One more: 503, Retry-After, a problem. */
    fd = connect_start(port, 0);
    assert_true(fd >= 0);
    snprintf(req, sizeof(req),
             "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n",
             port);
    assert_int_equal(it_send_all(fd, req, strlen(req), IT_IO_TIMEOUT_MS), 0);
    assert_int_equal(it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &text, &len), 0);
    close(fd);
    fprintf(stderr, "# %s\n", text);
    assert_int_equal(strncmp(text, "HTTP/1.1 503 ", 13), 0);
    assert_non_null(strcasestr(text, "\r\nContent-Type: application/problem+json\r\n"));
    {
        char want[64];

        snprintf(want, sizeof(want), "\r\nRetry-After: %d\r\n", API_SERVER_STREAM_RETRY_S);
        assert_non_null(strcasestr(text, want));
    }
    body = strstr(text, "\r\n\r\n");
    assert_non_null(body);
    problem = json_loads(body + 4, 0, NULL);
    assert_non_null(problem);
    assert_int_equal(it_json_int(problem, "status"), 503);
    assert_non_null(strstr(it_json_str(problem, "detail"), "event streams"));
    assert_true(strlen(it_json_str(problem, "title")) > 0);
    json_decref(problem);
    free(text);

    /* Other requests are answered meanwhile. */
    json_decref(it_http_expect(&f->d, "GET", "/api/v1/health", NULL, 200));

    /* One stream closed: its place is free again once the server notices (at its next write:
     * a metrics event, or the keep-alive). */
    close(fds[0]);
    deadline = it_now_ms() + API_EVENTS_KEEPALIVE_MS + IT_WAIT_MS;
    while (it_now_ms() < deadline) {
        char head[2048];

        fd = connect_start(port, 0);
        assert_true(fd >= 0);
        stream_request(port, req, sizeof(req));
        assert_int_equal(it_send_all(fd, req, strlen(req), IT_IO_TIMEOUT_MS), 0);
        status = it_http_read_head(fd, head, sizeof(head), IT_IO_TIMEOUT_MS);
        if (status == 200)
            break;
        assert_int_equal(status, 503);
        close(fd);
        (void)poll(NULL, 0, 200); /* the client's retry pace */
    }
    assert_int_equal(status, 200);
    fds[0] = fd;
    for (int i = 0; i < API_SERVER_STREAM_LIMIT; i++)
        close(fds[i]);
}

/* ---- deadlines ---- */

/* The daemon's open fds now. */
static int daemon_fds(const struct it_daemon *d)
{
    struct it_resources r;

    it_resources_take(d, &r);
    return r.fds;
}

struct fds_at_most {
    const struct it_daemon *d;
    int max;
};

static bool fds_are_at_most(void *arg)
{
    const struct fds_at_most *x = arg;

    return daemon_fds(x->d) <= x->max;
}

static void test_admission_unread_stream_is_cut_reading_one_is_not(void **state)
{
    struct it_fixture *f = *state;
    const uint16_t port = f->d.api_port;
    struct it_resources base;
    struct it_http patched;
    int reader, unread;
    int64_t t0, took;
    char buf[65536];
    size_t got = 0;
    char *log;

    create_listeners(&f->d, N_LISTENERS);
    it_resources_settle(&f->d, &base);

    /* Both streams open; one reader keeps reading, the other never reads past its head. */
    reader = stream_open(port, 0);
    t0 = it_now_ms();
    unread = stream_open(port, ATTACKER_RCVBUF);

    /* The unread stream is cut: the daemon holds one connection (the reader's) again. */
    {
        struct fds_at_most x = {.d = &f->d, .max = base.fds + 1};

        while (!fds_are_at_most(&x) && it_now_ms() - t0 < (API_SERVER_STALL_S + 5) * 1000) {
            /* The reader reads all along. */
            ssize_t n = recv(reader, buf, sizeof(buf), MSG_DONTWAIT);

            if (n > 0)
                got += (size_t)n;
            (void)poll(NULL, 0, IT_POLL_INTERVAL_MS);
        }
        took = it_now_ms() - t0;
        fprintf(stderr, "# the unread stream was cut after %lld ms; the reader read %zu bytes\n",
                (long long)took, got);
        assert_true(fds_are_at_most(&x));
    }
    /* Not before its deadline, and within it (and a look). */
    assert_true(took >= API_SERVER_STALL_S * 1000 - 500);
    assert_true(took <= API_SERVER_STALL_S * 1000 + 3000);
    /* Its reader finds the end once it reads what was queued. */
    {
        int r = it_read_to_eof(unread, IT_IO_TIMEOUT_MS, NULL, NULL);

        assert_true(r == 0 || r == -ECONNRESET);
    }
    close(unread);

    /* The reading stream lives on past the deadline and still carries events. */
    t0 = it_now_ms();
    while (it_now_ms() - t0 < API_SERVER_STALL_S * 1000 + 2000) {
        ssize_t n = recv(reader, buf, sizeof(buf), MSG_DONTWAIT);

        if (n == 0)
            fail_msg("the reading stream was ended");
        if (n > 0)
            got += (size_t)n;
        (void)poll(NULL, 0, IT_POLL_INTERVAL_MS);
    }
    it_http(&f->d, "PATCH", "/api/v1/listeners/l0", "{\"max_connections_per_source\":3}", &patched);
    assert_int_equal(patched.status, 200);
    it_http_fini(&patched);
    {
        int64_t deadline = it_now_ms() + IT_IO_TIMEOUT_MS;
        bool seen = false;
        size_t have = 0;

        while (!seen && it_now_ms() < deadline) {
            struct pollfd pfd = {.fd = reader, .events = POLLIN};
            ssize_t n;

            if (poll(&pfd, 1, 100) <= 0)
                continue;
            n = recv(reader, buf + have, sizeof(buf) - 1 - have, 0);
            assert_true(n > 0);
            have += (size_t)n;
            buf[have] = '\0';
            seen = strstr(buf, "event: listener.changed") != NULL;
            if (have > sizeof(buf) / 2) {
                memmove(buf, buf + have - 1024, 1024);
                have = 1024;
            }
        }
        assert_true(seen);
    }
    close(reader);
    it_assert_resources_back(&f->d, &base, IT_WAIT_MS);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM, IT_EXIT_TIMEOUT_MS, &(int){0}, &(int64_t){0}),
                     0);
    log = it_daemon_stderr(&f->d);
    assert_non_null(strstr(log, "read nothing of the response"));
    free(log);
}

static void test_admission_trickled_head_is_cut_at_its_deadline(void **state)
{
    struct it_fixture *f = *state;
    int fd = it_tcp_connect("127.0.0.1", f->d.api_port, IT_IO_TIMEOUT_MS);
    int64_t t0 = it_now_ms(), took;
    size_t sent = 0;

    assert_true(fd >= 0);
    /* A byte every 200 ms: always something new, never a whole head. */
    while (!peer_closed(fd) && it_now_ms() - t0 < (API_SERVER_HEAD_TIMEOUT_S + 5) * 1000) {
        if (sent < sizeof(trickle_text) - 1 && send(fd, trickle_text + sent, 1, MSG_NOSIGNAL) == 1)
            sent++;
        (void)poll(NULL, 0, 200); /* the trickle's pace */
    }
    took = it_now_ms() - t0;
    fprintf(stderr, "# cut after %lld ms and %zu bytes\n", (long long)took, sent);
    assert_true(peer_closed(fd));
    assert_true(took >= API_SERVER_HEAD_TIMEOUT_S * 1000 - 500);
    assert_true(took <= API_SERVER_HEAD_TIMEOUT_S * 1000 + 1500);
    close(fd);
    it_assert_daemon_alive(&f->d);
}

/* ---- the share of unfinished connections ---- */

static void test_admission_oldest_unfinished_connections_make_room(void **state)
{
    struct it_fixture *f = *state;
    enum { EXTRA = 20, N = API_SERVER_PARTIAL_LIMIT + EXTRA };
    int fds[N];
    int64_t ms;
    int closed_old = 0, closed_new = 0;

    /* Connections that say nothing, accepted in the order they were made. */
    for (int i = 0; i < N; i++) {
        fds[i] = it_tcp_connect("127.0.0.1", f->d.api_port, IT_IO_TIMEOUT_MS);
        assert_true(fds[i] >= 0);
    }
    /* A new client is answered at once, the share full or not. */
    ms = get_ms(f->d.api_port, "/api/v1/health", 5000);
    fprintf(stderr, "# health answered in %lld ms\n", (long long)ms);
    assert_true(ms >= 0 && ms < PROBE_MAX_MS);

    /* The oldest ones made room; the newest are still open. */
    {
        int64_t deadline = it_now_ms() + IT_WAIT_MS;

        do {
            closed_old = 0;
            for (int i = 0; i < EXTRA; i++)
                closed_old += peer_closed(fds[i]);
            if (closed_old == EXTRA)
                break;
            (void)poll(NULL, 0, IT_POLL_INTERVAL_MS);
        } while (it_now_ms() < deadline);
    }
    for (int i = N - 32; i < N; i++)
        closed_new += peer_closed(fds[i]);
    fprintf(stderr, "# oldest %d closed of %d; newest closed: %d of 32\n", closed_old, EXTRA,
            closed_new);
    assert_int_equal(closed_old, EXTRA);
    assert_int_equal(closed_new, 0);
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
        T(test_admission_trickled_head_is_cut_at_its_deadline),
        T(test_admission_oldest_unfinished_connections_make_room),
        T(test_admission_stream_cap_is_503_with_retry_after),
        T(test_admission_unread_stream_is_cut_reading_one_is_not),
        T(test_admission_local_flood_leaves_health_and_ctl_answering),
#undef T
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
