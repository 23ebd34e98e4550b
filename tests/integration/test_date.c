/*
 * date over real sockets: UDP requests ("date", "iso", "unix") over 127.0.0.1 and ::1 held to
 * what the `date` command prints for the same second and zone, silence and exact counters for
 * everything else, daytime over TCP (the line, then the server's close), the listener options,
 * the `sockserv date` client as a user runs it, and the embedded defaults on port 1313.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define DATE_DEFAULT_PORT 1313
#define DATE_DEFAULT_FORMAT "%a %b %e %H:%M:%S %Z %Y"
#define REPLY_CAP 4096
/* How long a request that must get no answer is watched for one. */
#define SILENCE_MS 300
/* The `sockserv date --timeout` of the tests where nothing answers. */
#define CLI_TIMEOUT_MS 300
/* How late past its timeout the client may exit on a loaded machine. */
#define CLI_EXIT_SLACK_MS 2500
#define RUN_TIMEOUT_MS 20000
/* A zone with a negative, non-whole-hour offset and summer time, unlike the machine's. */
#define ODD_ZONE "America/St_Johns"
/* Every conversion the format option documents but %n and %t, with the flags. */
#define RICH_FORMAT                                                                                \
    "%F %T %:z %z %Z|%-d|%_H|%e|%j|%s|%%|%c|%V %G %g %u %w %U %W|%I %l %p %P %r|%R %D %x %X|%C "   \
    "%y %h %B %A %k %-j %0e"

static int64_t wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

static uint16_t create_date(const struct it_daemon *d, const char *id, const char *transport,
                            const char *model, const char *options)
{
    char body[1024];
    int n;

    n = snprintf(body, sizeof(body),
                 "{\"id\":\"%s\",\"service\":\"date\",\"transport\":\"%s\",\"port\":0%s%s%s,"
                 "\"options\":%s}",
                 id, transport, model ? ",\"model\":\"" : "", model ? model : "", model ? "\"" : "",
                 options ? options : "{}");
    assert_true(n > 0 && (size_t)n < sizeof(body));
    return it_listener_create_port(d, body);
}

/* ---- what `date` prints ---- */

/*
 * What `LC_ALL=C [TZ=zone] date [-d @at] [arg]` prints. zone NULL: the test's environment,
 * which the daemon inherited (its "local" zone); at < 0: now. Asserts date exits 0. Returns a
 * malloc'd string.
 */
static char *date_cmd(const char *zone, int64_t at, const char *arg)
{
    char tz_env[128], at_arg[32];
    const char *argv[8];
    struct it_proc p;
    size_t n = 0;
    char *out;

    argv[n++] = "/usr/bin/env";
    argv[n++] = "LC_ALL=C";
    if (zone) {
        snprintf(tz_env, sizeof(tz_env), "TZ=%s", zone);
        argv[n++] = tz_env;
    }
    argv[n++] = "date";
    if (at >= 0) {
        snprintf(at_arg, sizeof(at_arg), "@%lld", (long long)at);
        argv[n++] = "-d";
        argv[n++] = at_arg;
    }
    if (arg)
        argv[n++] = arg;
    argv[n] = NULL;
    it_run(argv, NULL, 0, RUN_TIMEOUT_MS, &p);
    if (it_proc_exit_code(&p) != 0)
        fail_msg("date (TZ=%s, %s): %s: %s", zone ? zone : "inherited", arg ? arg : "no format",
                 p.timed_out ? "timed out" : it_status_str(p.status), p.err);
    out = p.out;
    p.out = NULL;
    it_proc_fini(&p);
    return out;
}

/*
 * The `date` outputs that bracket one exchange with the server: its answer must be what date
 * prints for one of the seconds the exchange spanned.
 */
struct around {
    const char *zone, *arg;
    int64_t t0, t1;
    char *before, *after;
};

static void around_begin(struct around *a, const char *zone, const char *arg)
{
    *a = (struct around){.zone = zone, .arg = arg};
    a->t0 = wall_s();
    a->before = date_cmd(zone, -1, arg);
}

static void around_end(struct around *a)
{
    a->after = date_cmd(a->zone, -1, a->arg);
    a->t1 = wall_s();
}

static bool same_text(const char *want, const char *got, size_t got_len)
{
    return strlen(want) == got_len && memcmp(want, got, got_len) == 0;
}

/*
 * Asserts that got is what date printed just before or just after the exchange. When the
 * clock crossed more than one second meanwhile (a loaded machine), what date prints for any
 * second in between is accepted too. Frees what a holds.
 */
static void assert_around(struct around *a, const char *what, const char *got, size_t got_len)
{
    bool ok = same_text(a->before, got, got_len) || same_text(a->after, got, got_len);

    for (int64_t t = a->t0; !ok && a->t1 - a->t0 > 1 && t <= a->t1; t++) {
        char *at = date_cmd(a->zone, t, a->arg);

        ok = same_text(at, got, got_len);
        free(at);
    }
    if (!ok) {
        fprintf(stderr,
                "# %s: got %zu bytes '%.*s'\n#   date (TZ=%s, %s) printed '%s' just before and "
                "'%s' just after\n",
                what, got_len, (int)got_len, got, a->zone ? a->zone : "inherited",
                a->arg ? a->arg : "no format", a->before, a->after);
        free(a->before);
        free(a->after);
        fail_msg("%s: the reply is not what date prints for that second", what);
    }
    free(a->before);
    free(a->after);
}

/* Asserts text is exactly one line, ended by its only newline. */
static void assert_one_line(const char *what, const char *text, size_t len)
{
    const char *nl = memchr(text, '\n', len);

    if (len == 0 || !nl || nl != text + len - 1 || memchr(text, '\0', len))
        fail_msg("%s: '%.*s' (%zu bytes) is not one newline-terminated line", what, (int)len, text,
                 len);
}

/* ---- UDP ---- */

/* One request datagram and its reply into buf (NUL-terminated); asserts a reply came. */
static size_t udp_ask(const char *host, uint16_t port, const void *req, size_t req_len, char *buf)
{
    ssize_t n = it_udp_exchange(host, port, req, req_len, buf, REPLY_CAP - 1, IT_IO_TIMEOUT_MS);

    if (n < 0)
        fail_msg("UDP %s port %u, request '%.*s': %s", host, port, (int)req_len, (const char *)req,
                 strerror((int)-n));
    buf[n] = '\0';
    return (size_t)n;
}

/*
 * Asks host:port with req and asserts the reply is what `date [arg]` prints in zone for that
 * second, as one line. Returns the reply's length.
 */
static size_t assert_udp_like_date(const char *host, uint16_t port, const char *req, size_t req_len,
                                   const char *zone, const char *arg)
{
    char what[160], buf[REPLY_CAP];
    struct around a;
    size_t n;

    snprintf(what, sizeof(what), "UDP %s port %u, request '%.*s', TZ=%s", host, port,
             (int)strcspn(req, "\r\n"), req, zone ? zone : "inherited");
    around_begin(&a, zone, arg);
    n = udp_ask(host, port, req, req_len, buf);
    around_end(&a);
    assert_one_line(what, buf, n);
    assert_around(&a, what, buf, n);
    return n;
}

/* A non-blocking UDP socket connected to host:port: it sees replies from there only. */
static int udp_connected(const char *host, uint16_t port)
{
    struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    bool v4 = inet_pton(AF_INET, host, &in4.sin_addr) == 1;
    int fd;

    if (!v4)
        assert_int_equal(inet_pton(AF_INET6, host, &in6.sin6_addr), 1);
    fd = socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    if (v4)
        assert_int_equal(connect(fd, (struct sockaddr *)&in4, sizeof(in4)), 0);
    else
        assert_int_equal(connect(fd, (struct sockaddr *)&in6, sizeof(in6)), 0);
    return fd;
}

/* One datagram within timeout_ms: its length (buf NUL-terminated), or -ETIMEDOUT. */
static ssize_t recv_within(int fd, char *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - it_now_ms();
        ssize_t n = recv(fd, buf, cap - 1, 0);

        if (n >= 0) {
            buf[n] = '\0';
            return n;
        }
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        if (left <= 0)
            return -ETIMEDOUT;
        (void)poll(&pfd, 1, (int)left);
    }
}

static void send_dgram(int fd, const void *msg, size_t len)
{
    assert_int_equal(send(fd, msg, len, 0), (ssize_t)len);
}

/* The zone tests: "date" in every accepted spelling over both families, and the counters. */
static void run_udp_zone(const struct it_daemon *d, const char *options, const char *zone)
{
    static const struct {
        const char *host, *req;
    } reqs[] = {
        {"127.0.0.1", "date"},
        {"::1", "date\n"},
        {"127.0.0.1", "DATE\r\n"},
        {"::1", "Date \t "},
    };
    uint64_t in = 0, out = 0;
    uint16_t port;
    json_t *res;

    port = create_date(d, "d1", "udp", NULL, options);
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        in += strlen(reqs[i].req);
        out +=
            assert_udp_like_date(reqs[i].host, port, reqs[i].req, strlen(reqs[i].req), zone, NULL);
    }
    res = it_listener_get(d, "d1");
    assert_string_equal(it_json_str(res, "options.format"), DATE_DEFAULT_FORMAT);
    json_decref(res);

    it_assert_metric_now(d, "d1", "service.requests_date", 4);
    it_assert_metric_now(d, "d1", "datagrams_in", 4);
    it_assert_metric_now(d, "d1", "bytes_in", in);
    it_assert_metric_eventually(d, "d1", "datagrams_out", 4, IT_WAIT_MS);
    it_assert_metric_eventually(d, "d1", "bytes_out", out, IT_WAIT_MS);
    it_assert_metric_now(d, "d1", "datagrams_dropped", 0);
    it_assert_metric_now(d, "d1", "service.requests_iso", 0);
    it_assert_metric_now(d, "d1", "service.requests_unix", 0);
    it_assert_metric_now(d, "d1", "errors", 0);
}

static void test_date_udp_local_zone_matches_date_command(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    json_t *res;

    run_udp_zone(d, NULL, NULL);
    res = it_listener_get(d, "d1");
    assert_string_equal(it_json_str(res, "options.timezone"), "local");
    json_decref(res);
}

static void test_date_udp_europe_rome_matches_date_command(void **state)
{
    run_udp_zone(it_daemon_of(state), "{\"timezone\":\"Europe/Rome\"}", "Europe/Rome");
}

static void test_date_udp_utc_matches_date_command(void **state)
{
    run_udp_zone(it_daemon_of(state), "{\"timezone\":\"UTC\"}", "UTC");
}

/* The daemon of this test runs with TZ=ODD_ZONE: "local" is that zone, not the machine's. */
static int setup_daemon_in_odd_zone(void **state)
{
    return it_fixture_setup_opts(
        state, (struct it_daemon_opts){.env = (const char *const[]){"TZ=" ODD_ZONE, NULL}});
}

/* Checks "YYYY-MM-DDTHH:MM:SS+HH:MM\n" and returns the instant it names. */
static int64_t parse_iso(const char *what, const char *s, size_t len, char ret_offset[7])
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd+dd:dd\n";
    struct tm tm = {0};
    int off;

    if (len != strlen(shape))
        fail_msg("%s: '%s' is not YYYY-MM-DDTHH:MM:SS+HH:MM and a newline", what, s);
    for (size_t i = 0; i < len; i++) {
        bool ok = shape[i] == 'd'   ? s[i] >= '0' && s[i] <= '9'
                  : shape[i] == '+' ? s[i] == '+' || s[i] == '-'
                                    : s[i] == shape[i];

        if (!ok)
            fail_msg("%s: '%s' is not YYYY-MM-DDTHH:MM:SS+HH:MM (byte %zu)", what, s, i);
    }
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = atoi(s + 5) - 1;
    tm.tm_mday = atoi(s + 8);
    tm.tm_hour = atoi(s + 11);
    tm.tm_min = atoi(s + 14);
    tm.tm_sec = atoi(s + 17);
    off = atoi(s + 20) * 3600 + atoi(s + 23) * 60;
    if (s[19] == '-')
        off = -off;
    memcpy(ret_offset, s + 19, 6);
    ret_offset[6] = '\0';
    return (int64_t)timegm(&tm) - off;
}

/* Asserts t lies in the exchange's window [t0, t1], give or take a second. */
static void assert_now(const char *what, int64_t t, int64_t t0, int64_t t1)
{
    if (t < t0 - 1 || t > t1 + 1)
        fail_msg("%s: %lld is not now (the exchange ran from %lld to %lld)", what, (long long)t,
                 (long long)t0, (long long)t1);
}

/*
 * iso and unix requests in their accepted spellings, each checked twice: for its shape and
 * instant, then against date. dates is how many "date" requests the listener answered before.
 * Returns the ISO offset last seen.
 */
static void run_iso_unix(const struct it_daemon *d, const char *id, uint16_t port, const char *zone,
                         uint64_t dates, char ret_offset[7])
{
    static const struct {
        const char *host, *req;
        bool iso;
    } reqs[] = {
        {"127.0.0.1", "iso", true},
        {"::1", "ISO\n", true},
        {"::1", "unix", false},
        {"127.0.0.1", "Unix\r\n", false},
    };

    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        char what[128], buf[REPLY_CAP];
        int64_t t0, t1, t;
        size_t n;

        snprintf(what, sizeof(what), "UDP %s, request '%.*s'", reqs[i].host,
                 (int)strcspn(reqs[i].req, "\r\n"), reqs[i].req);
        t0 = wall_s();
        n = udp_ask(reqs[i].host, port, reqs[i].req, strlen(reqs[i].req), buf);
        t1 = wall_s();
        if (reqs[i].iso) {
            t = parse_iso(what, buf, n, ret_offset);
        } else {
            char *end;

            if (n < 2 || buf[0] < '0' || buf[0] > '9' || buf[n - 1] != '\n')
                fail_msg("%s: '%s' is not a number of seconds and a newline", what, buf);
            t = strtoll(buf, &end, 10);
            if (end != buf + n - 1)
                fail_msg("%s: '%s' is not a number of seconds and a newline", what, buf);
        }
        assert_now(what, t, t0, t1);
        /* The same instant as date prints it, offset included. */
        assert_udp_like_date(reqs[i].host, port, reqs[i].req, strlen(reqs[i].req), zone,
                             reqs[i].iso ? "-Iseconds" : "+%s");
    }
    it_assert_metric_now(d, id, "service.requests_iso", 4);
    it_assert_metric_now(d, id, "service.requests_unix", 4);
    it_assert_metric_now(d, id, "service.requests_date", dates);
    it_assert_metric_now(d, id, "datagrams_dropped", 0);
    it_assert_metric_eventually(d, id, "datagrams_out", 8 + dates, IT_WAIT_MS);
}

static void test_date_udp_iso_and_unix_are_now(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char offset[7];
    uint16_t port;

    port = create_date(d, "d1", "udp", NULL, "{\"timezone\":\"Europe/Rome\"}");
    run_iso_unix(d, "d1", port, "Europe/Rome", 0, offset);
    if (strcmp(offset, "+01:00") != 0 && strcmp(offset, "+02:00") != 0)
        fail_msg("Europe/Rome's offset is %s, want +01:00 or +02:00", offset);
}

static void test_date_udp_local_zone_follows_daemon_tz(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char offset[7];
    uint16_t port;

    /* The daemon alone runs with TZ=ODD_ZONE: its "local" is that zone, not the test's. */
    port = create_date(d, "d1", "udp", NULL, NULL);
    assert_udp_like_date("127.0.0.1", port, "date", 4, ODD_ZONE, NULL);
    assert_udp_like_date("::1", port, "date", 4, ODD_ZONE, NULL);
    it_assert_metric_eventually(d, "d1", "datagrams_out", 2, IT_WAIT_MS);

    port = create_date(d, "d2", "udp", NULL, "{\"timezone\":\"local\"}");
    run_iso_unix(d, "d2", port, ODD_ZONE, 0, offset);
    if (strcmp(offset, "-03:30") != 0 && strcmp(offset, "-02:30") != 0)
        fail_msg("the daemon runs with TZ=%s, yet its offset is %s", ODD_ZONE, offset);
}

/* ---- anything else: no reply at all ---- */

static void test_date_udp_anything_else_gets_no_reply_and_is_counted(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char x200[200], date65[65], date64[64], buf[REPLY_CAP];
    static const char date_line[] = "Wed Nov 25 10:02:45 UTC 2026\n";
    uint64_t in_bytes = 0, out_bytes = 0;
    struct around a;
    uint16_t port;
    ssize_t n;
    int fd4, fd6;

    memset(x200, 'x', sizeof(x200));
    memcpy(date65, "date", 4);
    memset(date65 + 4, ' ', sizeof(date65) - 4);
    memcpy(date64, "date", 4);
    memset(date64 + 4, ' ', sizeof(date64) - 4);

    port = create_date(d, "d1", "udp", NULL, "{\"timezone\":\"UTC\"}");
    fd4 = udp_connected("127.0.0.1", port);
    fd6 = udp_connected("::1", port);

    /* Unknown requests: 5. */
    send_dgram(fd4, "hello", 5);
    send_dgram(fd4, "date please", 11);
    send_dgram(fd6, "dat", 3);
    send_dgram(fd6, "date\0", 5);
    /* What a date server answers: two date services never bounce datagrams at each other. */
    send_dgram(fd6, date_line, strlen(date_line));
    /* Empty, or nothing but white space: 2. */
    send_dgram(fd4, "", 0);
    send_dgram(fd6, " \r\n\t", 4);
    /* Over 64 bytes, even a request word padded with blanks: 2. */
    send_dgram(fd4, x200, sizeof(x200));
    send_dgram(fd6, date65, sizeof(date65));
    in_bytes = 5 + 11 + 3 + 5 + strlen(date_line) + 0 + 4 + sizeof(x200) + sizeof(date65);

    /* Every one has been handled (and any reply to it sent) once it is counted. */
    it_assert_metric_eventually(d, "d1", "datagrams_dropped", 9, IT_WAIT_MS);
    /*
     * The assertion is the silence itself: no datagram arrives within SILENCE_MS after the
     * server handled them all, on either socket. A bounded wait is the only way to see
     * "nothing"; a reply would have been sent right after its request was counted.
     */
    n = recv_within(fd4, buf, sizeof(buf), SILENCE_MS);
    if (n != -ETIMEDOUT)
        fail_msg("over IPv4 a bad request got a reply: %zd bytes '%s'", n, n > 0 ? buf : "");
    n = recv_within(fd6, buf, sizeof(buf), SILENCE_MS);
    if (n != -ETIMEDOUT)
        fail_msg("over IPv6 a bad request got a reply: %zd bytes '%s'", n, n > 0 ? buf : "");

    it_assert_metric_now(d, "d1", "datagrams_in", 9);
    it_assert_metric_now(d, "d1", "bytes_in", in_bytes);
    it_assert_metric_now(d, "d1", "service.dropped_unknown_request", 5);
    it_assert_metric_now(d, "d1", "service.dropped_empty", 2);
    it_assert_metric_now(d, "d1", "service.dropped_too_long", 2);
    it_assert_metric_now(d, "d1", "service.requests_date", 0);
    it_assert_metric_now(d, "d1", "datagrams_out", 0);
    it_assert_metric_now(d, "d1", "bytes_out", 0);
    it_assert_metric_now(d, "d1", "errors", 0);

    /* The same sockets still get answers, and the first datagram each sees is its answer:
     * 64 bytes (the request word padded to the limit) is still a request. */
    around_begin(&a, "UTC", NULL);
    send_dgram(fd4, date64, sizeof(date64));
    n = recv_within(fd4, buf, sizeof(buf), IT_IO_TIMEOUT_MS);
    around_end(&a);
    if (n < 0)
        fail_msg("a 64-byte request got no reply: %s", strerror((int)-n));
    assert_one_line("IPv4 after the bad ones", buf, (size_t)n);
    assert_around(&a, "IPv4 after the bad ones", buf, (size_t)n);
    out_bytes += (size_t)n;

    around_begin(&a, "UTC", NULL);
    send_dgram(fd6, "date", 4);
    n = recv_within(fd6, buf, sizeof(buf), IT_IO_TIMEOUT_MS);
    around_end(&a);
    if (n < 0)
        fail_msg("a request got no reply: %s", strerror((int)-n));
    assert_around(&a, "IPv6 after the bad ones", buf, (size_t)n);
    out_bytes += (size_t)n;
    close(fd4);
    close(fd6);

    it_assert_metric_eventually(d, "d1", "datagrams_out", 2, IT_WAIT_MS);
    it_assert_metric_eventually(d, "d1", "bytes_out", out_bytes, IT_WAIT_MS);
    it_assert_metric_now(d, "d1", "datagrams_in", 11);
    it_assert_metric_now(d, "d1", "bytes_in", in_bytes + sizeof(date64) + 4);
    it_assert_metric_now(d, "d1", "service.requests_date", 2);
    it_assert_metric_now(d, "d1", "datagrams_dropped", 9);
    it_assert_metric_now(d, "d1", "service.dropped_unknown_request", 5);
    it_assert_metric_now(d, "d1", "service.dropped_empty", 2);
    it_assert_metric_now(d, "d1", "service.dropped_too_long", 2);
    it_assert_metric_now(d, "d1", "errors", 0);
}

/* ---- TCP daytime ---- */

/* Connects, sends nothing, and asserts the server sends the date line and closes. Returns the
 * line's length. */
static size_t assert_daytime(const char *host, uint16_t port, const char *zone, const char *arg)
{
    char what[128], *line = NULL;
    struct around a;
    size_t len = 0;
    int r;

    snprintf(what, sizeof(what), "daytime %s port %u", host, port);
    around_begin(&a, zone, arg);
    r = it_daytime(host, port, &line, &len);
    around_end(&a);
    if (r != 0) {
        fprintf(stderr, "# %s: read %zu bytes '%s'\n", what, len, line ? line : "");
        free(line);
        fail_msg("%s: %s, want the date line and an orderly close (end of stream)", what,
                 strerror(-r));
    }
    assert_one_line(what, line, len);
    assert_around(&a, what, line, len);
    free(line);
    return len;
}

static void run_daytime(const struct it_daemon *d, const char *model)
{
    uint64_t out = 0;
    uint16_t port;

    port = create_date(d, "t1", "tcp", model, "{\"timezone\":\"Europe/Rome\"}");
    out += assert_daytime("127.0.0.1", port, "Europe/Rome", NULL);
    out += assert_daytime("::1", port, "Europe/Rome", NULL);

    it_assert_metric_eventually(d, "t1", "connections_active", 0, IT_WAIT_MS);
    it_assert_metric_eventually(d, "t1", "bytes_out", out, IT_WAIT_MS);
    it_assert_metric_now(d, "t1", "connections_total", 2);
    it_assert_metric_now(d, "t1", "service.requests_date", 2);
    it_assert_metric_now(d, "t1", "bytes_in", 0);
    it_assert_metric_now(d, "t1", "errors", 0);
}

static void test_date_tcp_daytime_sequential_sends_line_and_closes(void **state)
{
    run_daytime(it_daemon_of(state), "sequential");
}

static void test_date_tcp_daytime_thread_sends_line_and_closes(void **state)
{
    run_daytime(it_daemon_of(state), "thread");
}

static void test_date_tcp_daytime_uring_sends_line_and_closes(void **state)
{
    run_daytime(it_daemon_of(state), "uring");
}

/* ---- options ---- */

static void assert_create_refused(const struct it_daemon *d, const char *transport,
                                  const char *options, const char *field)
{
    char body[1024];
    struct it_http r;
    json_t *j;
    int n;

    n = snprintf(body, sizeof(body),
                 "{\"id\":\"bad\",\"service\":\"date\",\"transport\":\"%s\",\"port\":0,"
                 "\"options\":%s}",
                 transport, options);
    assert_true(n > 0 && (size_t)n < sizeof(body));
    it_http(d, "POST", "/api/v1/listeners", body, &r);
    if (r.status != 400)
        fprintf(stderr, "# POST %s\n", body);
    it_assert_problem(&r, 400, field);
    it_http_fini(&r);
    /* Nothing was created. */
    j = it_http_expect(d, "GET", "/api/v1/listeners/bad", NULL, 404);
    json_decref(j);
}

static void test_date_options_bad_timezone_is_400_naming_it(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const bad[] = {
        "\"Mars/Olympus_Mons\"", "\"Europe\"", /* a directory */
        "\"zone.tab\"",                        /* a file that is no zone */
        "\"../../etc/passwd\"",                /* outside the zone directory */
        "\"/etc/localtime\"",    "\"\"",       "\"utc\"", "42", "null", "[\"UTC\"]",
    };
    struct it_http r;
    json_t *res;
    uint16_t port;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char options[128];

        snprintf(options, sizeof(options), "{\"timezone\":%s}", bad[i]);
        assert_create_refused(d, i % 2 ? "tcp" : "udp", options, "options.timezone");
    }
    assert_create_refused(d, "udp", "{\"zone\":\"UTC\"}", "options.zone");

    /* A patch with a bad zone changes nothing: the listener keeps its zone and answers. */
    port = create_date(d, "p1", "udp", NULL, "{\"timezone\":\"Europe/Rome\"}");
    it_http(d, "PATCH", "/api/v1/listeners/p1", "{\"options\":{\"timezone\":\"Nowhere/Land\"}}",
            &r);
    it_assert_problem(&r, 400, "options.timezone");
    it_http_fini(&r);
    res = it_listener_get(d, "p1");
    assert_string_equal(it_json_str(res, "options.timezone"), "Europe/Rome");
    assert_string_equal(it_json_str(res, "status.state"), "running");
    port = it_bound_port(res);
    json_decref(res);
    assert_udp_like_date("127.0.0.1", port, "date", 4, "Europe/Rome", NULL);
}

static void test_date_options_bad_format_is_400_naming_it(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const bad[] = {
        "\"%Q\"",    /* unknown conversion */
        "\"%Y%\"",   /* a lone % at the end */
        "\"%\"",     /* nothing but it */
        "\"%:H\"",   /* the colon is for %z only */
        "\"%-a\"",   /* flags are for numbers only */
        "\"%Ey\"",   /* locale modifiers are not supported */
        "\"%Y\\n\"", /* a control character (%n is the way) */
        "\"a\\tb\"", /* another */
        "\"\"",      /* empty */
        "7",         /* not a string */
    };
    char options[512], pct[129 * 2 + 1];
    struct it_http r;
    json_t *res;
    uint16_t port;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(options, sizeof(options), "{\"format\":%s}", bad[i]);
        assert_create_refused(d, i % 2 ? "udp" : "tcp", options, "options.format");
    }
    /* 129 bytes is one too many; 128 is the limit, and "%%" prints "%". */
    memset(pct, 'x', 129);
    pct[129] = '\0';
    snprintf(options, sizeof(options), "{\"format\":\"%s\"}", pct);
    assert_create_refused(d, "udp", options, "options.format");
    for (int i = 0; i < 64; i++)
        memcpy(pct + 2 * i, "%%", 2);
    pct[128] = '\0';
    snprintf(options, sizeof(options), "{\"format\":\"%s\"}", pct);
    port = create_date(d, "f128", "udp", NULL, options);
    {
        char buf[REPLY_CAP], want[66];
        size_t n = udp_ask("::1", port, "date", 4, buf);

        memset(want, '%', 64);
        want[64] = '\n';
        want[65] = '\0';
        assert_int_equal(n, 65);
        assert_string_equal(buf, want);
    }

    /* A patch with a bad format changes nothing. */
    port = create_date(d, "p1", "udp", NULL, "{\"timezone\":\"UTC\"}");
    it_http(d, "PATCH", "/api/v1/listeners/p1", "{\"options\":{\"format\":\"%Q\"}}", &r);
    it_assert_problem(&r, 400, "options.format");
    it_http_fini(&r);
    res = it_listener_get(d, "p1");
    assert_string_equal(it_json_str(res, "options.format"), DATE_DEFAULT_FORMAT);
    json_decref(res);
    assert_udp_like_date("127.0.0.1", port, "date", 4, "UTC", NULL);
}

static void test_date_options_format_is_honoured(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char options[256], arg[160];
    char offset[7];
    json_t *res;
    uint16_t port;

    port = create_date(d, "y", "udp", NULL, "{\"timezone\":\"UTC\",\"format\":\"%Y\"}");
    assert_udp_like_date("127.0.0.1", port, "date", 4, "UTC", "+%Y");
    assert_udp_like_date("::1", port, "date", 4, "UTC", "+%Y");

    /* Every conversion against date's own, in a zone with an odd offset. */
    snprintf(options, sizeof(options), "{\"timezone\":\"%s\",\"format\":\"%s\"}", ODD_ZONE,
             RICH_FORMAT);
    snprintf(arg, sizeof(arg), "+%s", RICH_FORMAT);
    port = create_date(d, "rich", "udp", NULL, options);
    assert_udp_like_date("127.0.0.1", port, "date", 4, ODD_ZONE, arg);
    /* The format is for "date" only: iso and unix keep theirs. */
    run_iso_unix(d, "rich", port, ODD_ZONE, 1, offset);

    /* And for the TCP line. */
    port = create_date(d, "trich", "tcp", "thread", options);
    assert_daytime("::1", port, ODD_ZONE, arg);

    /* A patched format applies to the next request. */
    res = it_http_expect(d, "PATCH", "/api/v1/listeners/y",
                         "{\"options\":{\"format\":\"%H:%M:%S %:z\"}}", 200);
    assert_non_null(res);
    assert_string_equal(it_json_str(res, "options.format"), "%H:%M:%S %:z");
    assert_string_equal(it_json_str(res, "options.timezone"), "UTC");
    assert_string_equal(it_json_str(res, "status.state"), "running");
    port = it_bound_port(res);
    json_decref(res);
    assert_udp_like_date("127.0.0.1", port, "date", 4, "UTC", "+%H:%M:%S %:z");
}

/* ---- the sockserv date client ---- */

static void run_cli(const char *const *args, struct it_proc *p, int64_t *ret_ms)
{
    int64_t t0 = it_now_ms();

    it_run_verb("date", args, NULL, 0, RUN_TIMEOUT_MS, p);
    if (ret_ms)
        *ret_ms = it_now_ms() - t0;
}

/* Runs the client and asserts it prints what `date [arg]` prints in zone, and exits 0. */
static void assert_cli_like_date(const char *const *args, const char *zone, const char *arg)
{
    struct around a;
    struct it_proc p;

    around_begin(&a, zone, arg);
    run_cli(args, &p, NULL);
    around_end(&a);
    if (it_proc_exit_code(&p) != 0) {
        free(a.before);
        free(a.after);
        fail_msg("sockserv date exited with %s, want 0: %s",
                 p.timed_out ? "a timeout" : it_status_str(p.status), p.err);
    }
    assert_int_equal(p.err_len, 0);
    assert_one_line("sockserv date's output", p.out, p.out_len);
    assert_around(&a, "sockserv date's output", p.out, p.out_len);
    it_proc_fini(&p);
}

static void test_date_cli_prints_server_date(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char uport[8], tport[8];

    snprintf(uport, sizeof(uport), "%u",
             create_date(d, "u1", "udp", NULL, "{\"timezone\":\"Europe/Rome\"}"));
    snprintf(tport, sizeof(tport), "%u",
             create_date(d, "t1", "tcp", NULL, "{\"timezone\":\"Europe/Rome\"}"));

    assert_cli_like_date((const char *const[]){"127.0.0.1", uport, NULL}, "Europe/Rome", NULL);
    assert_cli_like_date((const char *const[]){"::1", uport, NULL}, "Europe/Rome", NULL);
    assert_cli_like_date((const char *const[]){"--tcp", "127.0.0.1", tport, NULL}, "Europe/Rome",
                         NULL);
    assert_cli_like_date((const char *const[]){"::1", tport, "--tcp", NULL}, "Europe/Rome", NULL);
    assert_cli_like_date((const char *const[]){"--iso", "127.0.0.1", uport, NULL}, "Europe/Rome",
                         "-Iseconds");
    assert_cli_like_date((const char *const[]){"--unix", "--timeout", "3000", "::1", uport, NULL},
                         "Europe/Rome", "+%s");

    /* Each was one request, answered by these listeners. */
    it_assert_metric_now(d, "u1", "service.requests_date", 2);
    it_assert_metric_now(d, "u1", "service.requests_iso", 1);
    it_assert_metric_now(d, "u1", "service.requests_unix", 1);
    it_assert_metric_now(d, "u1", "datagrams_dropped", 0);
    it_assert_metric_now(d, "t1", "service.requests_date", 2);
    it_assert_metric_eventually(d, "t1", "connections_total", 2, IT_WAIT_MS);
}

/* Asserts the client exited 1 after about CLI_TIMEOUT_MS, saying nothing answered. */
static void assert_cli_no_reply(const struct it_proc *p, int64_t ms, const char *peer)
{
    char want[128];

    snprintf(want, sizeof(want), "no reply from %s within %d ms", peer, CLI_TIMEOUT_MS);
    assert_int_equal(it_proc_exit_code(p), 1);
    assert_int_equal(p->out_len, 0);
    if (!strstr(p->err, want))
        fail_msg("stderr '%s' does not say '%s'", p->err, want);
    if (ms < CLI_TIMEOUT_MS - 5 || ms > CLI_TIMEOUT_MS + CLI_EXIT_SLACK_MS)
        fail_msg("it exited after %lld ms, want about %d", (long long)ms, CLI_TIMEOUT_MS);
}

static void test_date_cli_nothing_answers_exits_1(void **state)
{
    char port[8], peer[64], timeout[16], buf[REPLY_CAP];
    struct it_proc p;
    uint16_t up;
    int64_t ms;
    ssize_t n;
    int fd;

    (void)state;
    snprintf(timeout, sizeof(timeout), "%d", CLI_TIMEOUT_MS);

    /* A UDP socket that receives and never answers, over IPv4 and IPv6. */
    for (int v6 = 0; v6 < 2; v6++) {
        const char *host = v6 ? "::1" : "127.0.0.1";

        fd = it_bind(SOCK_DGRAM, host, 0, &up);
        assert_true(fd >= 0);
        snprintf(port, sizeof(port), "%u", up);
        snprintf(peer, sizeof(peer), v6 ? "[%s]:%s" : "%s:%s", host, port);
        run_cli((const char *const[]){"--timeout", timeout, host, port, NULL}, &p, &ms);
        assert_cli_no_reply(&p, ms, peer);
        it_proc_fini(&p);
        /* The request did reach it. */
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        assert_int_equal(n, 4);
        assert_memory_equal(buf, "date", 4);
        close(fd);
    }

    /* A TCP port that accepts (the kernel's backlog) and never sends. */
    fd = it_bind(SOCK_STREAM, "127.0.0.1", 0, &up);
    assert_true(fd >= 0);
    snprintf(port, sizeof(port), "%u", up);
    snprintf(peer, sizeof(peer), "127.0.0.1:%s", port);
    run_cli((const char *const[]){"--tcp", "--timeout", timeout, "127.0.0.1", port, NULL}, &p, &ms);
    assert_cli_no_reply(&p, ms, peer);
    it_proc_fini(&p);
    close(fd);

    /* A closed TCP port (bound, not listening): refused, at once. */
    {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof(sa);
        char want[96];

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        snprintf(port, sizeof(port), "%u", ntohs(sa.sin_port));
        run_cli((const char *const[]){"--tcp", "--timeout", timeout, "127.0.0.1", port, NULL}, &p,
                &ms);
        assert_int_equal(it_proc_exit_code(&p), 1);
        assert_int_equal(p.out_len, 0);
        snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%s", port);
        if (!strstr(p.err, want) || !strstr(p.err, "refused"))
            fail_msg("stderr '%s' does not say '%s: ... refused'", p.err, want);
        if (ms > CLI_TIMEOUT_MS + CLI_EXIT_SLACK_MS)
            fail_msg("a refused connection took %lld ms to report", (long long)ms);
        it_proc_fini(&p);
        close(fd);
    }

    /* A UDP port nothing listens on: the ICMP refusal is reported. */
    fd = it_bind(SOCK_DGRAM, "127.0.0.1", 0, &up);
    assert_true(fd >= 0);
    close(fd);
    snprintf(port, sizeof(port), "%u", up);
    run_cli((const char *const[]){"--timeout", "3000", "127.0.0.1", port, NULL}, &p, &ms);
    assert_int_equal(it_proc_exit_code(&p), 1);
    assert_int_equal(p.out_len, 0);
    if (!strstr(p.err, "nothing listens there"))
        fail_msg("stderr '%s' does not say that nothing listens there", p.err);
    it_proc_fini(&p);
}

static void test_date_cli_bad_usage_exits_2(void **state)
{
    const char *const *const cases[] = {
        (const char *const[]){NULL},
        (const char *const[]){"", "1313", NULL},
        (const char *const[]){"127.0.0.1", "notaport", NULL},
        (const char *const[]){"127.0.0.1", "0", NULL},
        (const char *const[]){"127.0.0.1", "65536", NULL},
        (const char *const[]){"127.0.0.1", "-5", NULL},
        (const char *const[]){"127.0.0.1", "1313", "extra", NULL},
        (const char *const[]){"--bogus", "127.0.0.1", NULL},
        (const char *const[]){"--timeout", "soon", "127.0.0.1", NULL},
        (const char *const[]){"--timeout", "0", "127.0.0.1", NULL},
        (const char *const[]){"127.0.0.1", "--timeout", NULL},
        (const char *const[]){"--tcp", "--iso", "127.0.0.1", NULL},
        (const char *const[]){"--unix", "--tcp", "127.0.0.1", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct it_proc p;

        run_cli(cases[i], &p, NULL);
        assert_int_equal(it_proc_exit_code(&p), 2);
        assert_int_equal(p.out_len, 0);
        assert_non_null(strstr(p.err, "sockserv date: "));
        assert_non_null(strstr(p.err, "--help"));
        it_proc_fini(&p);
    }
}

static void test_date_cli_help_exits_0(void **state)
{
    struct it_proc p;

    (void)state;
    run_cli((const char *const[]){"--help", NULL}, &p, NULL);
    assert_int_equal(it_proc_exit_code(&p), 0);
    assert_non_null(strstr(p.out, "sockserv date"));
    assert_non_null(strstr(p.out, "--tcp"));
    assert_non_null(strstr(p.out, "--iso"));
    assert_non_null(strstr(p.out, "--unix"));
    assert_non_null(strstr(p.out, "--timeout"));
    assert_non_null(strstr(p.out, "1313"));
    it_proc_fini(&p);
}

/* ---- the embedded defaults ---- */

static bool port_free(int type)
{
    uint16_t p;
    int fd = it_bind(type, "::", DATE_DEFAULT_PORT, &p);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/*
 * Whether the default listener of this transport may be held to answering: it must run when
 * port 1313 was free before the daemon started, unless something else took it meanwhile.
 */
static bool default_serves(const json_t *res, bool was_free, int type)
{
    const char *st = it_json_str(res, "status.state");

    if (strcmp(st, "running") == 0)
        return true;
    if (was_free && port_free(type)) {
        char *text = json_dumps(res, JSON_COMPACT);

        fprintf(stderr, "# %s\n", text ? text : "");
        free(text);
        fail_msg("%s is %s with port %d free", it_json_str(res, "id"), st, DATE_DEFAULT_PORT);
    }
    fprintf(stderr,
            "# SKIPPED: port %d (%s) is in use by another program on this machine; %s is %s, "
            "not checking that it answers\n",
            DATE_DEFAULT_PORT, type == SOCK_STREAM ? "TCP" : "UDP", it_json_str(res, "id"), st);
    return false;
}

static void test_date_defaults_on_1313_exist_and_answer(void **state)
{
    struct it_fixture *f = *state;
    struct it_daemon *d = &f->d;
    bool tcp_free = port_free(SOCK_STREAM), udp_free = port_free(SOCK_DGRAM);
    bool tcp_serves, udp_serves;
    json_t *t, *u;

    it_daemon_start_ok(d, &(struct it_daemon_opts){.dir = f->dir, .defaults = true});
    t = it_listener_get(d, "date-tcp");
    u = it_listener_get(d, "date-udp");
    assert_string_equal(it_json_str(t, "service"), "date");
    assert_string_equal(it_json_str(t, "transport"), "tcp");
    assert_string_equal(it_json_str(t, "address"), "::");
    assert_int_equal(it_json_int(t, "port"), DATE_DEFAULT_PORT);
    assert_true(it_json_bool(t, "enabled"));
    assert_string_equal(it_json_str(t, "options.timezone"), "local");
    assert_string_equal(it_json_str(u, "service"), "date");
    assert_string_equal(it_json_str(u, "transport"), "udp");
    assert_string_equal(it_json_str(u, "address"), "::");
    assert_int_equal(it_json_int(u, "port"), DATE_DEFAULT_PORT);
    assert_true(it_json_bool(u, "enabled"));
    assert_string_equal(it_json_str(u, "options.timezone"), "local");
    tcp_serves = default_serves(t, tcp_free, SOCK_STREAM);
    udp_serves = default_serves(u, udp_free, SOCK_DGRAM);
    json_decref(t);
    json_decref(u);

    if (udp_serves) {
        assert_udp_like_date("127.0.0.1", DATE_DEFAULT_PORT, "date", 4, NULL, NULL);
        assert_udp_like_date("::1", DATE_DEFAULT_PORT, "date", 4, NULL, NULL);
        /* The client's default port is the service's. */
        assert_cli_like_date((const char *const[]){"127.0.0.1", NULL}, NULL, NULL);
        /* These listeners answered, not another program's. */
        it_assert_metric_now(d, "date-udp", "service.requests_date", 3);
    }
    if (tcp_serves) {
        assert_daytime("127.0.0.1", DATE_DEFAULT_PORT, NULL, NULL);
        assert_cli_like_date((const char *const[]){"--tcp", "::1", NULL}, NULL, NULL);
        it_assert_metric_now(d, "date-tcp", "service.requests_date", 2);
    }
    if (!tcp_serves || !udp_serves)
        skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
        T(test_date_udp_local_zone_matches_date_command),
        T(test_date_udp_europe_rome_matches_date_command),
        T(test_date_udp_utc_matches_date_command),
        cmocka_unit_test_setup_teardown(test_date_udp_local_zone_follows_daemon_tz,
                                        setup_daemon_in_odd_zone, it_fixture_teardown),
        T(test_date_udp_iso_and_unix_are_now),
        T(test_date_udp_anything_else_gets_no_reply_and_is_counted),
        T(test_date_tcp_daytime_sequential_sends_line_and_closes),
        T(test_date_tcp_daytime_thread_sends_line_and_closes),
        T(test_date_tcp_daytime_uring_sends_line_and_closes),
        T(test_date_options_bad_timezone_is_400_naming_it),
        T(test_date_options_bad_format_is_400_naming_it),
        T(test_date_options_format_is_honoured),
        T(test_date_cli_prints_server_date),
        T(test_date_cli_nothing_answers_exits_1),
        T(test_date_cli_bad_usage_exits_2),
        T(test_date_cli_help_exits_0),
        cmocka_unit_test_setup_teardown(test_date_defaults_on_1313_exist_and_answer,
                                        it_fixture_setup_dir, it_fixture_teardown),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
