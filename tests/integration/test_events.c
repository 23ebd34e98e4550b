/*
 * GET /api/v1/events, the server-sent event stream, through real HTTP: what a client reads
 * first (retry, snapshot), the listener events in order, the metrics ticks, reconnection with
 * Last-Event-ID, a client that stops reading, and stopping with streams open; a service's own
 * events (backup.stored, backup.failed) under every TCP model. Most tests drive
 * the daemon as a child process; the keep-alive and wake-up tests run the API server in this
 * process, over a bus whose metrics ticks are an hour apart, so that a stream can be idle.
 */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/server.h"
#include "core/events.h"
#include "core/registry.h"
#include "core/service.h"
#include "harness.h"
#include "svc/echo.h"

#define TICK_MS 1000                /* the daemon's metrics interval */
#define SIGTERM_EXIT_MS 2000        /* the daemon exits within this on SIGTERM with streams open */
#define CONNECTION_TIMEOUT_MS 30000 /* the API's idle connection timeout */

/* ---- an event stream client over the harness's streamed response ---- */

struct sse_event {
    uint64_t id;
    bool has_id;
    char type[64];
    char *data;    /* the data lines joined with '\n'; NULL when the event had none */
    int64_t at_ms; /* it_now_ms() when it was read */
};

struct sse {
    struct it_stream *st;
    long retry_ms; /* the last "retry:" field; -1 before any */
    unsigned keepalives;
};

static void sse_event_fini(struct sse_event *ev)
{
    free(ev->data);
    memset(ev, 0, sizeof(*ev));
}

static bool sse_ended(const struct sse *s)
{
    return it_stream_end(s->st) != -EINPROGRESS;
}

/* Starts a stream from base (an http:// URL) with Last-Event-ID last_id (NULL: none) and waits
 * for the status line; asserts it came. */
static void sse_open_url(struct sse *s, const char *base, const char *last_id)
{
    char url[256], hdr[128];
    const char *const headers[] = {"Accept: text/event-stream", last_id ? hdr : NULL, NULL};

    memset(s, 0, sizeof(*s));
    s->retry_ms = -1;
    snprintf(url, sizeof(url), "%s/api/v1/events", base);
    snprintf(hdr, sizeof(hdr), "Last-Event-ID: %s", last_id ? last_id : "");
    s->st = it_stream_open(NULL, &(struct it_req){.url = url, .headers = headers});
    if (it_stream_head(s->st)->status == 503)
        fail_msg("GET %s: 503: the daemon serves no event stream (it must give its event bus to "
                 "api_server_start())",
                 url);
}

static void sse_open(struct sse *s, const struct it_daemon *d, const char *last_id)
{
    sse_open_url(s, d->url, last_id);
}

static void sse_close(struct sse *s)
{
    it_stream_close(s->st);
    memset(s, 0, sizeof(*s));
}

/* Appends line (n bytes) to ev->data, joining lines with '\n'. */
static void data_add(struct sse_event *ev, const char *line, size_t n)
{
    size_t old = ev->data ? strlen(ev->data) : 0;
    char *d = realloc(ev->data, old + (ev->data ? 1 : 0) + n + 1);

    assert_non_null(d);
    if (ev->data)
        d[old++] = '\n';
    memcpy(d + old, line, n);
    d[old + n] = '\0';
    ev->data = d;
}

/* Parses the blocks received so far; returns true with *ev at the first one that is an event
 * (a block of comments or "retry:" only is counted and skipped). */
static bool sse_parse(struct sse *s, struct sse_event *ev)
{
    for (;;) {
        size_t len;
        char *buf = it_stream_data(s->st, &len);
        char *end = buf ? strstr(buf, "\n\n") : NULL;
        char *p;
        bool is_event = false;

        if (!end)
            return false;
        memset(ev, 0, sizeof(*ev));
        for (p = buf; p < end + 1;) {
            char *nl = memchr(p, '\n', (size_t)(end + 1 - p));
            size_t n = (size_t)(nl - p);

            if (n > 0 && p[0] == ':') {
                if (n == strlen(": keepalive") && strncmp(p, ": keepalive", n) == 0)
                    s->keepalives++;
            } else if (n > 7 && strncmp(p, "retry: ", 7) == 0) {
                s->retry_ms = strtol(p + 7, NULL, 10);
            } else if (n > 4 && strncmp(p, "id: ", 4) == 0) {
                ev->id = strtoull(p + 4, NULL, 10);
                ev->has_id = true;
                is_event = true;
            } else if (n > 7 && strncmp(p, "event: ", 7) == 0) {
                snprintf(ev->type, sizeof(ev->type), "%.*s", (int)(n - 7), p + 7);
                is_event = true;
            } else if (n >= 5 && strncmp(p, "data:", 5) == 0) {
                size_t skip = n > 5 && p[5] == ' ' ? 6 : 5;

                data_add(ev, p + skip, n - skip);
                is_event = true;
            } else if (n > 0) {
                fail_msg("unexpected line in the event stream: '%.*s'", (int)n, p);
            }
            p = nl + 1;
        }
        it_stream_consume(s->st, (size_t)(end + 2 - buf));
        if (is_event) {
            ev->at_ms = it_now_ms();
            return true;
        }
        sse_event_fini(ev);
    }
}

/* At most a second, at least 0, until deadline. */
static int left(int64_t deadline)
{
    int64_t l = deadline - it_now_ms();

    return l <= 0 ? 0 : l > 1000 ? 1000 : (int)l;
}

/* The next event within timeout_ms: 0, -ETIMEDOUT, or -EPIPE when the stream ended. */
static int sse_next(struct sse *s, int timeout_ms, struct sse_event *ev)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    bool came = true; /* the last look at the socket brought bytes (or there was none yet) */

    for (;;) {
        size_t before, after;

        if (sse_parse(s, ev))
            return 0;
        if (sse_ended(s))
            return -EPIPE;
        /* Past the deadline, what the socket already holds is still read. */
        if (it_now_ms() >= deadline && !came)
            return -ETIMEDOUT;
        (void)it_stream_data(s->st, &before);
        it_stream_pump(s->st, left(deadline));
        (void)it_stream_data(s->st, &after);
        came = after != before;
    }
}

/* As sse_next(), asserting that an event came. */
static void sse_next_ok(struct sse *s, int timeout_ms, struct sse_event *ev)
{
    int r = sse_next(s, timeout_ms, ev);

    if (r < 0)
        fail_msg("no event within %d ms: %s", timeout_ms,
                 r == -EPIPE ? it_stream_error(s->st) : "timed out");
}

/* The next event that is not a metrics tick; asserts it comes within timeout_ms. */
static void sse_next_change(struct sse *s, int timeout_ms, struct sse_event *ev)
{
    int64_t deadline = it_now_ms() + timeout_ms;

    for (;;) {
        int r = sse_next(s, left(deadline) > 0 ? (int)(deadline - it_now_ms()) : 0, ev);

        if (r < 0)
            fail_msg("no listener event within %d ms", timeout_ms);
        if (strcmp(ev->type, "metrics") != 0)
            return;
        sse_event_fini(ev);
    }
}

/* The next event of type; asserts it comes within timeout_ms. */
static void sse_next_type(struct sse *s, const char *type, int timeout_ms, struct sse_event *ev)
{
    int64_t deadline = it_now_ms() + timeout_ms;

    for (;;) {
        int r = sse_next(s, (int)(deadline > it_now_ms() ? deadline - it_now_ms() : 0), ev);

        if (r < 0)
            fail_msg("no '%s' event within %d ms", type, timeout_ms);
        if (strcmp(ev->type, type) == 0)
            return;
        sse_event_fini(ev);
    }
}

/* Reads until the stream ends, for at most timeout_ms; returns 0 with how it ended (see
 * it_stream_end()) in *ret_end, or -ETIMEDOUT if it did not. */
static int sse_wait_end(struct sse *s, int timeout_ms, int *ret_end)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    struct sse_event ev;

    for (;;) {
        int r = sse_next(s, (int)(deadline > it_now_ms() ? deadline - it_now_ms() : 0), &ev);

        if (r == -EPIPE) {
            *ret_end = it_stream_end(s->st);
            return 0;
        }
        if (r < 0)
            return r;
        sse_event_fini(&ev);
    }
}

/* The event's data as JSON (new reference); asserts it parses. */
static json_t *event_json(const struct sse_event *ev)
{
    json_error_t jerr;
    json_t *j;

    assert_non_null(ev->data);
    j = json_loads(ev->data, 0, &jerr);
    if (!j)
        fail_msg("event %s data is not JSON (%s): %s", ev->type, jerr.text, ev->data);
    return j;
}

/* Asserts that s answered 200 with the event stream's headers. */
static void assert_stream_headers(const struct sse *s)
{
    const struct it_http *h = it_stream_head(s->st);

    assert_int_equal(h->status, 200);
    it_assert_header(h, "Content-Type", "text/event-stream");
    it_assert_header(h, "Cache-Control", "no-store");
    it_assert_header(h, "X-Accel-Buffering", "no");
}

/* Reads the snapshot that opens a stream; returns its data (new reference). */
static json_t *expect_snapshot(struct sse *s, uint64_t *ret_id)
{
    struct sse_event ev;
    json_t *j;

    sse_next_ok(s, IT_IO_TIMEOUT_MS, &ev);
    if (strcmp(ev.type, "snapshot") != 0)
        fail_msg("the first event is '%s', not snapshot", ev.type);
    assert_true(ev.has_id);
    assert_int_equal(s->retry_ms, 2000); /* "retry:" came before it */
    j = event_json(&ev);
    assert_true(json_is_array(json_object_get(j, "listeners")));
    if (ret_id)
        *ret_id = ev.id;
    sse_event_fini(&ev);
    return j;
}

/* ---- what a stream starts with ---- */

static void test_events_stream_starts_with_retry_and_snapshot(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct sse s;
    json_t *snap, *l;

    json_decref(it_listener_create(d, "{\"id\":\"s1\",\"service\":\"echo\",\"port\":0}"));
    sse_open(&s, d, NULL);
    assert_stream_headers(&s);
    snap = expect_snapshot(&s, NULL);
    assert_int_equal(json_array_size(json_object_get(snap, "listeners")), 1);
    l = json_array_get(json_object_get(snap, "listeners"), 0);
    /* The same resource as GET /api/v1/listeners: with status and metrics. */
    assert_string_equal(it_json_str(l, "id"), "s1");
    assert_string_equal(it_json_str(l, "status.state"), "running");
    assert_true(it_bound_port(l) > 0);
    assert_int_equal(it_json_int(l, "metrics.connections_total"), 0);
    json_decref(snap);
    sse_close(&s);
}

/* ---- listener events ---- */

/* Reads listener events until type arrives; asserts that it is about listener id. */
static json_t *expect_change(struct sse *s, const char *type, const char *id)
{
    struct sse_event ev;
    json_t *j;

    sse_next_type(s, type, IT_IO_TIMEOUT_MS, &ev);
    j = event_json(&ev);
    assert_string_equal(it_json_str(j, "id"), id);
    sse_event_fini(&ev);
    return j;
}

/* Reads listener events up to the listener.state that reaches state; returns its data. */
static json_t *expect_state(struct sse *s, const char *id, const char *state)
{
    for (;;) {
        json_t *j = expect_change(s, "listener.state", id);

        if (strcmp(it_json_str(j, "state"), state) == 0)
            return j;
        json_decref(j);
    }
}

static void test_events_listener_lifecycle_arrives_in_order(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *seen[64];
    size_t n = 0, revisions = 0;
    struct sse s;
    json_t *j;

    sse_open(&s, d, NULL);
    json_decref(expect_snapshot(&s, NULL));

    json_decref(it_listener_create(d, "{\"id\":\"o1\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_http_expect(d, "PATCH", "/api/v1/listeners/o1", "{\"workers\":3}", 200));
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/o1/stop", NULL, 200));
    json_decref(it_http_expect(d, "DELETE", "/api/v1/listeners/o1", NULL, 204));

    /* Every listener event, metrics aside, up to the deletion; ids strictly increase. */
    for (uint64_t last = 0;;) {
        struct sse_event ev;

        sse_next_change(&s, IT_IO_TIMEOUT_MS, &ev);
        assert_true(ev.has_id);
        assert_true(ev.id > last);
        last = ev.id;
        j = event_json(&ev);
        if (strcmp(ev.type, "config.revision") == 0) {
            /* each change of the set is a revision, announced after its listener's events */
            assert_true(it_json_int(j, "revision") > 0);
            assert_non_null(strstr(it_json_str(j, "summary"), "o1"));
            revisions++;
            json_decref(j);
            sse_event_fini(&ev);
            continue;
        }
        assert_string_equal(it_json_str(j, "id"), "o1");
        assert_true(n < sizeof(seen) / sizeof(seen[0]));
        if (strcmp(ev.type, "listener.state") == 0) {
            seen[n++] = strcmp(it_json_str(j, "state"), "running") == 0   ? "running"
                        : strcmp(it_json_str(j, "state"), "stopped") == 0 ? "stopped"
                                                                          : "state";
            assert_true(json_is_null(json_object_get(j, "error")));
            assert_non_null(json_object_get(j, "previous"));
            assert_true(json_is_array(json_object_get(j, "bound")));
            assert_true(strlen(it_json_str(j, "since")) > 0);
        } else if (strcmp(ev.type, "listener.created") == 0) {
            seen[n++] = "created";
            assert_string_equal(it_json_str(j, "status.state"), "running");
            /* The whole resource, as GET shows it (made from a copy when the stream reads it). */
            assert_true(json_is_array(json_object_get(json_object_get(j, "status"), "draining")));
            assert_true(json_is_array(json_object_get(json_object_get(j, "status"), "bound")));
            assert_true(json_is_null(json_object_get(json_object_get(j, "status"), "tls")));
            assert_true(it_json_int(j, "status.max_connections_effective") > 0);
            assert_true(it_json_int(j, "metrics.connections_total") >= 0);
            assert_non_null(json_object_get(json_object_get(j, "metrics"), "latency"));
        } else if (strcmp(ev.type, "listener.changed") == 0) {
            seen[n++] = it_json_bool(j, "enabled") ? "changed" : "changed-stopped";
            assert_int_equal(it_json_int(j, "workers"), 3);
        } else if (strcmp(ev.type, "listener.deleted") == 0) {
            seen[n++] = "deleted";
            assert_int_equal(json_object_size(j), 1);
        } else {
            fail_msg("unexpected event '%s'", ev.type);
        }
        json_decref(j);
        if (strcmp(ev.type, "listener.deleted") == 0) {
            sse_event_fini(&ev);
            break;
        }
        sse_event_fini(&ev);
    }

    /* created (after its start), changed (after the restart), stopped, changed, deleted. */
    {
        static const char *const want[] = {"running", "created",         "running", "changed",
                                           "stopped", "changed-stopped", "deleted"};
        size_t k = 0;

        for (size_t i = 0; i < n && k < sizeof(want) / sizeof(want[0]); i++)
            if (strcmp(seen[i], want[k]) == 0)
                k++;
        if (k != sizeof(want) / sizeof(want[0])) {
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, "# event %zu: %s\n", i, seen[i]);
            fail_msg("listener events out of order: matched %zu of %zu", k,
                     sizeof(want) / sizeof(want[0]));
        }
    }
    /* create, patch and stop were revisions announced before the deletion */
    assert_int_equal(revisions, 3);
    sse_close(&s);
}

static void test_events_failed_start_reports_state_with_error(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char body[160];
    uint16_t port;
    struct sse s;
    json_t *j;
    int held = it_bind(SOCK_STREAM, "::", 0, &port);

    assert_true(held >= 0);
    sse_open(&s, d, NULL);
    json_decref(expect_snapshot(&s, NULL));
    snprintf(body, sizeof(body),
             "{\"id\":\"busy\",\"service\":\"echo\",\"port\":%u,\"enabled\":false}", port);
    json_decref(it_listener_create(d, body));
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/busy/start", NULL, 409));

    j = expect_state(&s, "busy", "failed");
    assert_true(json_is_string(json_object_get(j, "error")));
    assert_non_null(strstr(it_json_str(j, "error"), "in use"));
    assert_int_equal(json_array_size(json_object_get(j, "bound")), 0);
    json_decref(j);

    /* The refusal itself: what asked, the listener and field at fault, and why. */
    {
        struct sse_event ev;

        sse_next_type(&s, "change.refused", IT_IO_TIMEOUT_MS, &ev);
        j = event_json(&ev);
        assert_string_equal(it_json_str(j, "source"), "api: start listener busy");
        assert_string_equal(it_json_str(j, "origin.action"), "start");
        assert_string_equal(it_json_str(j, "listener"), "busy");
        assert_string_equal(it_json_str(j, "field"), "port");
        assert_non_null(strstr(it_json_str(j, "detail"), "in use"));
        json_decref(j);
        sse_event_fini(&ev);
    }
    /* A dry run that would be refused publishes nothing: the next event is a later one. */
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/busy/start?dry_run=true", NULL, 409));
    json_decref(it_http_expect(d, "DELETE", "/api/v1/listeners/busy", NULL, 204));
    {
        struct sse_event ev;

        sse_next_change(&s, IT_IO_TIMEOUT_MS, &ev);
        assert_string_not_equal(ev.type, "change.refused");
        sse_event_fini(&ev);
    }
    sse_close(&s);
    close(held);
}

/* ---- metrics ticks ---- */

static void test_events_metrics_tick_every_second_and_counters_rise(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char msg[] = "0123456789abcdef0123456789abcdef";
    int64_t prev_at = 0;
    uint16_t port;
    struct sse s;
    bool rose = false;

    port = it_listener_create_port(d, "{\"id\":\"m1\",\"service\":\"echo\",\"port\":0}");
    sse_open(&s, d, NULL);
    json_decref(expect_snapshot(&s, NULL));

    /* Four ticks about a second apart, each with every listener's counters and rates. */
    for (int i = 0; i < 4; i++) {
        struct sse_event ev;
        json_t *j, *m;

        sse_next_type(&s, "metrics", 3 * TICK_MS, &ev);
        j = event_json(&ev);
        assert_int_equal(it_json_int(j, "interval_ms"), TICK_MS);
        assert_int_equal(strlen(it_json_str(j, "time")), strlen("2026-11-25T10:02:45.123Z"));
        m = it_json_path(j, "listeners.m1");
        assert_non_null(m);
        assert_true(json_is_integer(json_object_get(m, "bytes_in")));
        assert_true(json_is_number(it_json_path(m, "rates.bytes_in")));
        assert_true(json_is_number(it_json_path(m, "rates.connections")));
        if (prev_at) {
            int64_t gap = ev.at_ms - prev_at;

            if (gap < TICK_MS / 2 || gap > TICK_MS * 2)
                fail_msg("metrics ticks %lld ms apart", (long long)gap);
        }
        prev_at = ev.at_ms;
        json_decref(j);
        sse_event_fini(&ev);
    }

    /* Echo traffic shows in the next ticks: counters and a rate above zero. */
    it_assert_tcp_echo("127.0.0.1", port, msg, sizeof(msg) - 1);
    for (int i = 0; i < 4 && !rose; i++) {
        struct sse_event ev;
        json_t *j;

        sse_next_type(&s, "metrics", 3 * TICK_MS, &ev);
        j = event_json(&ev);
        if (it_json_int(j, "listeners.m1.bytes_in") == (json_int_t)(sizeof(msg) - 1)) {
            assert_int_equal(it_json_int(j, "listeners.m1.bytes_out"), sizeof(msg) - 1);
            assert_int_equal(it_json_int(j, "listeners.m1.connections_total"), 1);
            assert_true(json_number_value(it_json_path(j, "listeners.m1.rates.bytes_in")) > 0);
            rose = true;
        }
        json_decref(j);
        sse_event_fini(&ev);
    }
    assert_true(rose);
    sse_close(&s);
}

/* A tick's latency_interval for listener id comes within a few ticks: with requests when
 * want_requests, else with none. Returns its p99_ns. */
static json_int_t wait_latency_interval(struct sse *s, const char *id, bool want_requests)
{
    char path[96];

    snprintf(path, sizeof(path), "listeners.%s.latency_interval", id);
    for (int i = 0; i < 6; i++) {
        struct sse_event ev;
        json_t *j, *w;
        json_int_t count, p99 = -1;

        sse_next_type(s, "metrics", 3 * TICK_MS, &ev);
        j = event_json(&ev);
        w = it_json_path(j, path);
        if (w) {
            count = it_json_int(w, "count");
            if (want_requests ? count > 0 : count == 0) {
                p99 = it_json_int(w, "p99_ns");
                assert_true(it_json_int(w, "p50_ns") <= p99);
                assert_true(p99 <= it_json_int(w, "p999_ns"));
                assert_true(it_json_int(w, "p999_ns") <= it_json_int(w, "max_ns"));
            }
        }
        json_decref(j);
        sse_event_fini(&ev);
        if (p99 >= 0)
            return p99;
    }
    fail_msg("no metrics tick with a latency_interval of %s", want_requests ? "requests" : "none");
    return -1;
}

static void test_events_metrics_tick_latency_interval_counts_the_last_second(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char msg[] = "latency";
    uint16_t port = it_listener_create_port(d, "{\"id\":\"lat\",\"service\":\"echo\",\"port\":0}");
    struct sse s;

    struct sse_event first;

    sse_open(&s, d, NULL);
    json_decref(expect_snapshot(&s, NULL));
    /* The first tick sees the listener (nothing to subtract yet); requests after it show in a
     * later tick's interval with their percentiles... */
    sse_next_type(&s, "metrics", 3 * TICK_MS, &first);
    sse_event_fini(&first);
    it_assert_tcp_echo("127.0.0.1", port, msg, sizeof(msg) - 1);
    assert_true(wait_latency_interval(&s, "lat", true) > 0);
    /* ...and a later quiet second shows none, while the cumulative count keeps them. */
    assert_int_equal(wait_latency_interval(&s, "lat", false), 0);
    assert_true(it_metric(d, "lat", "latency.count") >= 1);
    sse_close(&s);
}

/* ---- the recent events ---- */

static void test_events_recent_lists_the_last_events_newest_first(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const bad[] = {"0", "101", "x", ""};
    json_t *j, *list, *first;
    struct it_http r;
    bool created = false, deleted = false;
    char path[64];

    json_decref(it_listener_create(d, "{\"id\":\"r1\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_http_expect(d, "DELETE", "/api/v1/listeners/r1", NULL, 204));

    j = it_http_expect(d, "GET", "/api/v1/events/recent", NULL, 200);
    list = json_object_get(j, "events");
    assert_true(json_array_size(list) >= 3);
    first = json_array_get(list, 0);
    assert_string_equal(it_json_str(first, "event"), "config.revision");
    assert_int_equal(strlen(it_json_str(first, "time")), strlen("2026-11-25T10:02:45.123Z"));
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *ev = json_array_get(list, i);

        assert_string_not_equal(it_json_str(ev, "event"), "metrics");
        if (i > 0)
            assert_true(it_json_int(ev, "id") < it_json_int(json_array_get(list, i - 1), "id"));
        created |= strcmp(it_json_str(ev, "event"), "listener.created") == 0;
        deleted |= strcmp(it_json_str(ev, "event"), "listener.deleted") == 0 &&
                   strcmp(it_json_str(ev, "data.id"), "r1") == 0;
    }
    assert_true(created);
    assert_true(deleted);
    json_decref(j);

    j = it_http_expect(d, "GET", "/api/v1/events/recent?limit=1", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/api/v1/events/recent?limit=%s", bad[i]);
        it_http(d, "GET", path, NULL, &r);
        it_assert_problem(&r, 400, "limit");
        it_http_fini(&r);
    }
}

/* ---- reconnection ---- */

/* Events seen by a stream, in order. */
struct log {
    struct sse_event ev[512];
    size_t n;
};

static void log_fini(struct log *l)
{
    for (size_t i = 0; i < l->n; i++)
        sse_event_fini(&l->ev[i]);
    l->n = 0;
}

/* Reads into l until an event of type about id arrives (included). */
static void log_until(struct sse *s, struct log *l, const char *type, const char *id)
{
    for (;;) {
        struct sse_event *ev = &l->ev[l->n];
        bool found;
        json_t *j;

        assert_true(l->n < sizeof(l->ev) / sizeof(l->ev[0]));
        sse_next_ok(s, IT_IO_TIMEOUT_MS, ev);
        l->n++;
        if (strcmp(ev->type, type) != 0)
            continue;
        j = event_json(ev);
        found = strcmp(it_json_str(j, "id"), id) == 0;
        json_decref(j);
        if (found)
            return;
    }
}

static void test_events_last_event_id_replays_exactly_the_missed_events(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct log *witness = calloc(1, sizeof(*witness)), *replay = calloc(1, sizeof(*replay));
    struct sse w, a, b;
    struct sse_event ev;
    uint64_t last_seen;
    char id_text[32];
    size_t from;

    assert_non_null(witness);
    assert_non_null(replay);
    /* The witness stays connected throughout and sees every event. */
    sse_open(&w, d, NULL);
    json_decref(expect_snapshot(&w, NULL));
    sse_open(&a, d, NULL);
    json_decref(expect_snapshot(&a, NULL));

    json_decref(it_listener_create(d, "{\"id\":\"r1\",\"service\":\"echo\",\"port\":0}"));
    sse_next_type(&a, "listener.created", IT_IO_TIMEOUT_MS, &ev);
    last_seen = ev.id;
    sse_event_fini(&ev);
    sse_close(&a);

    /* What a missed while away. */
    json_decref(it_http_expect(d, "PATCH", "/api/v1/listeners/r1", "{\"workers\":2}", 200));
    json_decref(it_listener_create(d, "{\"id\":\"r2\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_http_expect(d, "DELETE", "/api/v1/listeners/r1", NULL, 204));
    log_until(&w, witness, "listener.deleted", "r1");

    snprintf(id_text, sizeof(id_text), "%llu", (unsigned long long)last_seen);
    sse_open(&b, d, id_text);
    assert_stream_headers(&b);
    log_until(&b, replay, "listener.deleted", "r1");
    assert_int_equal(b.retry_ms, 2000);

    /* b got exactly what the witness saw after last_seen: same ids, types and data. */
    for (from = 0; from < witness->n && witness->ev[from].id <= last_seen; from++)
        ;
    assert_true(from < witness->n);
    assert_int_equal(replay->ev[0].id, last_seen + 1);
    if (replay->n != witness->n - from)
        fail_msg("replayed %zu events, the witness saw %zu after id %llu", replay->n,
                 witness->n - from, (unsigned long long)last_seen);
    for (size_t i = 0; i < replay->n; i++) {
        const struct sse_event *x = &replay->ev[i], *y = &witness->ev[from + i];

        assert_true(x->id == y->id);
        assert_string_equal(x->type, y->type);
        assert_string_equal(x->data, y->data);
        assert_string_not_equal(x->type, "snapshot");
    }
    log_fini(witness);
    log_fini(replay);
    free(witness);
    free(replay);
    sse_close(&w);
    sse_close(&b);
}

static void test_events_unknown_last_event_id_gets_a_snapshot(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char *const ids[] = {"999999999", "not-a-number", ""};
    struct sse s;

    json_decref(it_listener_create(d, "{\"id\":\"u1\",\"service\":\"echo\",\"port\":0}"));
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        json_t *snap;

        sse_open(&s, d, ids[i]);
        snap = expect_snapshot(&s, NULL);
        assert_int_equal(json_array_size(json_object_get(snap, "listeners")), 1);
        json_decref(snap);
        sse_close(&s);
    }
}

static void test_events_last_event_id_out_of_the_ring_gets_a_snapshot(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct sse w, s;
    struct sse_event ev;
    uint64_t first;
    char id_text[32];
    json_t *snap;

    sse_open(&w, d, NULL);
    json_decref(expect_snapshot(&w, NULL));
    json_decref(it_listener_create(d, "{\"id\":\"g1\",\"service\":\"echo\",\"port\":0}"));
    sse_next_type(&w, "listener.created", IT_IO_TIMEOUT_MS, &ev);
    first = ev.id;
    sse_event_fini(&ev);
    /* Each change of a running listener is at least two events (changed, and a state event):
     * push "first" out of the ring without waiting for metrics ticks to do it. */
    for (int i = 0; i < CORE_EVENTS_RING / 2 + 10; i++) {
        char body[64];

        snprintf(body, sizeof(body), "{\"idle_timeout_ms\":%d}", 1000 + i);
        json_decref(it_http_expect(d, "PATCH", "/api/v1/listeners/g1", body, 200));
    }
    for (;;) {
        bool past;

        sse_next_ok(&w, IT_IO_TIMEOUT_MS, &ev);
        past = ev.id > first + CORE_EVENTS_RING;
        sse_event_fini(&ev);
        if (past)
            break;
    }

    snprintf(id_text, sizeof(id_text), "%llu", (unsigned long long)first);
    sse_open(&s, d, id_text);
    snap = expect_snapshot(&s, NULL);
    assert_int_equal(json_array_size(json_object_get(snap, "listeners")), 1);
    json_decref(snap);
    sse_close(&s);
    sse_close(&w);
}

/* ---- a client that stops reading ---- */

/* A connection to the API that asks for the stream and then never reads, with a small receive
 * buffer. Returns the fd; its local port in *ret_port. */
static int stalled_client(uint16_t api_port, uint16_t *ret_port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(api_port)};
    socklen_t len = sizeof(sa);
    int small = 2048;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char req[160];

    /* The Host names the API's address and port, as the guard wants. */
    snprintf(req, sizeof(req),
             "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Accept: text/event-stream\r\n\r\n",
             api_port);

    assert_true(fd >= 0);
    /* Before connect(), so that the window it advertises stays small. */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *ret_port = ntohs(sa.sin_port);
    return fd;
}

/*
 * The daemon's side of the loopback connection from peer_port to api_port, from /proc/net/tcp:
 * returns 0 with its TCP state (1 is ESTABLISHED) and send queue, or -ENOENT when it is gone.
 */
static int server_side(uint16_t api_port, uint16_t peer_port, unsigned *ret_state,
                       unsigned long *ret_txq)
{
    char line[512];
    FILE *f = fopen("/proc/net/tcp", "r");
    int r = -ENOENT;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        unsigned local_port, rem_port, st;
        unsigned long txq, rxq;

        if (sscanf(line, " %*u: %*x:%x %*x:%x %x %lx:%lx", &local_port, &rem_port, &st, &txq,
                   &rxq) != 5)
            continue;
        if (local_port == api_port && rem_port == peer_port) {
            *ret_state = st;
            *ret_txq = txq;
            r = 0;
            break;
        }
    }
    fclose(f);
    return r;
}

/*
 * Changes listener id (each change is several events) until the stalled client's connection
 * is jammed: the daemon's send queue toward it holds data the client does not take, and stops
 * growing although events go on (libmicrohttpd can write no more). Asserts it happens.
 */
static void jam(const struct it_daemon *d, const char *id, uint16_t peer_port, struct sse *witness)
{
    char path[128], body[64];
    unsigned st = 0, still = 0;
    unsigned long txq = 0, before = 0;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s", id);
    for (int i = 0; i < 20000; i++) {
        snprintf(body, sizeof(body), "{\"idle_timeout_ms\":%d}", 1000 + i % 2);
        json_decref(it_http_expect(d, "PATCH", path, body, 200));
        if (i % 10 != 9)
            continue;
        /* A reading client keeps up meanwhile (it would be overrun otherwise). */
        if (witness) {
            struct sse_event ev;

            while (sse_next(witness, 0, &ev) == 0)
                sse_event_fini(&ev);
            assert_false(sse_ended(witness));
        }
        assert_int_equal(server_side(d->api_port, peer_port, &st, &txq), 0);
        still = txq > 0 && txq == before ? still + 1 : 0;
        before = txq;
        if (still == 5) {
            fprintf(stderr, "# jammed after %d changes: %lu bytes queued toward the client\n",
                    i + 1, txq);
            return;
        }
    }
    fail_msg("the stalled client's connection never filled (state %u, send queue %lu)", st, txq);
}

struct tick_check {
    struct sse *s;
    int64_t last_at;
    int64_t worst_gap;     /* between two ticks' arrivals */
    int64_t worst_latency; /* from a tick's "time" to its arrival */
    unsigned ticks;
};

/* CLOCK_REALTIME in milliseconds. */
static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The "time" of a metrics tick ("2026-11-25T10:02:45.123Z") in milliseconds since the epoch. */
static int64_t tick_time_ms(const json_t *tick)
{
    struct tm tm = {0};
    int ms = 0;
    const char *text = it_json_str(tick, "time");

    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        fail_msg("metrics time '%s' is not YYYY-MM-DDTHH:MM:SS.mmmZ", text);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Reads the witness stream's pending events, measuring how the metrics ticks arrive. */
static void tick_check_read(struct tick_check *t, int wait_ms)
{
    struct sse_event ev;

    while (sse_next(t->s, wait_ms, &ev) == 0) {
        if (strcmp(ev.type, "metrics") == 0) {
            json_t *j = event_json(&ev);
            int64_t latency = wall_ms() - tick_time_ms(j);

            json_decref(j);
            if (latency > t->worst_latency)
                t->worst_latency = latency;
            if (t->last_at && ev.at_ms - t->last_at > t->worst_gap)
                t->worst_gap = ev.at_ms - t->last_at;
            t->last_at = ev.at_ms;
            t->ticks++;
            wait_ms = 0; /* then only what is pending; other events do not end the wait */
        }
        sse_event_fini(&ev);
    }
}

static void test_events_stalled_client_delays_no_one(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    static const char msg[] = "still echoing";
    struct tick_check t = {0};
    uint16_t echo_port, peer_port;
    unsigned st;
    unsigned long txq;
    struct sse w;
    int64_t t0;
    int stalled;

    echo_port = it_listener_create_port(d, "{\"id\":\"x0\",\"service\":\"echo\",\"port\":0}");
    json_decref(it_listener_create(d, "{\"id\":\"x1\",\"service\":\"echo\",\"port\":0}"));
    sse_open(&w, d, NULL);
    json_decref(expect_snapshot(&w, NULL));
    t.s = &w;
    stalled = stalled_client(d->api_port, &peer_port);
    jam(d, "x1", peer_port, &w);
    /* The witness has read everything up to now once it sees this. */
    json_decref(it_listener_create(d, "{\"id\":\"x2\",\"service\":\"echo\",\"port\":0}"));
    json_decref(expect_change(&w, "listener.created", "x2"));
    /* And has caught up once a tick arrives fresh (within a tenth of the interval). */
    for (t.worst_latency = TICK_MS; t.worst_latency > TICK_MS / 10;) {
        t.worst_latency = 0;
        t.ticks = 0;
        tick_check_read(&t, 3 * TICK_MS);
        assert_true(t.ticks > 0);
    }
    t = (struct tick_check){.s = &w};

    /* For four seconds: the other stream's ticks keep coming, the API and echo answer. */
    t0 = it_now_ms();
    while (it_now_ms() - t0 < 4 * TICK_MS) {
        int64_t a = it_now_ms();
        json_t *h = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);

        json_decref(h);
        assert_true(it_now_ms() - a < 500);
        a = it_now_ms();
        it_assert_tcp_echo("127.0.0.1", echo_port, msg, sizeof(msg) - 1);
        assert_true(it_now_ms() - a < 500);
        tick_check_read(&t, 200);
    }
    fprintf(stderr, "# %u ticks in 4 s, worst gap %lld ms, worst delivery %lld ms\n", t.ticks,
            (long long)t.worst_gap, (long long)t.worst_latency);
    assert_true(t.ticks >= 3);
    assert_true(t.worst_gap < 2 * TICK_MS);
    assert_true(t.worst_latency < 500);

    /* The stalled connection is still jammed, not served in the meantime. */
    assert_int_equal(server_side(d->api_port, peer_port, &st, &txq), 0);
    assert_true(txq > 0);
    close(stalled);
    sse_close(&w);
}

static void test_events_stalled_client_is_cut_by_the_timeout(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t peer_port;
    unsigned st = 0;
    unsigned long txq = 0;
    int64_t t0, deadline;
    int stalled;

    json_decref(it_listener_create(d, "{\"id\":\"c1\",\"service\":\"echo\",\"port\":0}"));
    stalled = stalled_client(d->api_port, &peer_port);
    jam(d, "c1", peer_port, NULL);
    t0 = it_now_ms();
    deadline = t0 + CONNECTION_TIMEOUT_MS + 15000;
    /* The daemon closes its side: the socket leaves ESTABLISHED (FIN_WAIT, or gone). */
    while (it_now_ms() < deadline) {
        if (server_side(d->api_port, peer_port, &st, &txq) < 0 || st != 1)
            break;
        (void)poll(NULL, 0, 200);
    }
    fprintf(stderr, "# the stalled stream was cut after %lld ms (state %u)\n",
            (long long)(it_now_ms() - t0), st);
    assert_true(it_now_ms() < deadline);
    close(stalled);
}

/* ---- stopping with streams open ---- */

static void test_events_sigterm_with_two_streams_exits_0_within_2s(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct sse a, b;
    int ra, rb;
    int status;
    int64_t ms;

    sse_open(&a, d, NULL);
    sse_open(&b, d, NULL);
    json_decref(expect_snapshot(&a, NULL));
    json_decref(expect_snapshot(&b, NULL));
    assert_int_equal(it_daemon_stop(d, SIGTERM, 5000, &status, &ms), 0);
    fprintf(stderr, "# exited in %lld ms: %s\n", (long long)ms, it_status_str(status));
    assert_true(it_status_is_exit0(status));
    assert_true(ms < SIGTERM_EXIT_MS);
    /* Both streams ended; the daemon finished them rather than cutting them. */
    assert_int_equal(sse_wait_end(&a, IT_IO_TIMEOUT_MS, &ra), 0);
    assert_int_equal(sse_wait_end(&b, IT_IO_TIMEOUT_MS, &rb), 0);
    assert_int_equal(ra, 0);
    assert_int_equal(rb, 0);
    sse_close(&a);
    sse_close(&b);
}

/* ---- the server in this process: idle streams ---- */

#define KEEPALIVE_MS 300

struct inproc {
    char *dir;
    struct core_events *bus;
    struct core_registry *registry;
    struct api_server *server;
    char url[64];
};

static const struct core_service *const inproc_services[] = {&svc_echo};
static const struct core_service_table inproc_table = {.svcs = inproc_services, .n = 1};

static int inproc_setup(void **state)
{
    struct inproc *p = calloc(1, sizeof(*p));
    struct core_err err = {0};

    if (!p)
        return -1;
    *state = p;
    p->dir = it_tmpdir_new();
    if (core_events_new(&p->bus) < 0)
        return -1;
    /* Metrics ticks an hour apart: the streams stay idle. */
    if (core_registry_new(&(struct core_registry_opts){.services = &inproc_table,
                                                       .state_dir = p->dir,
                                                       .events = p->bus,
                                                       .metrics_interval_ms = 3600 * 1000},
                          &p->registry) < 0)
        return -1;
    if (api_server_start(&(struct api_server_opts){.host = "127.0.0.1",
                                                   .registry = p->registry,
                                                   .events = p->bus,
                                                   .keepalive_ms = KEEPALIVE_MS},
                         &p->server, &err) < 0) {
        fprintf(stderr, "# api_server_start: %s\n", err.msg);
        return -1;
    }
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%u", api_server_port(p->server));
    return 0;
}

static struct inproc *inproc_of(void **state)
{
    return *state;
}

static int inproc_teardown(void **state)
{
    struct inproc *p = *state;

    if (!p)
        return 0;
    api_server_stop(p->server);
    core_registry_free(p->registry);
    core_events_free(p->bus);
    it_tmpdir_remove(p->dir);
    free(p);
    *state = NULL;
    return 0;
}

static void test_events_idle_stream_gets_keepalive_comments(void **state)
{
    struct inproc *p = inproc_of(state);
    struct sse s;
    struct sse_event ev;
    int64_t t0;

    sse_open_url(&s, p->url, NULL);
    json_decref(expect_snapshot(&s, NULL));
    t0 = it_now_ms();
    /* Nothing happens for a few intervals: comments only, no event. */
    assert_int_equal(sse_next(&s, 4 * KEEPALIVE_MS + KEEPALIVE_MS / 2, &ev), -ETIMEDOUT);
    fprintf(stderr, "# %u keep-alives in %lld ms\n", s.keepalives, (long long)(it_now_ms() - t0));
    assert_true(s.keepalives >= 3 && s.keepalives <= 5);
    sse_close(&s);
}

static void test_events_published_event_wakes_an_idle_stream_at_once(void **state)
{
    struct inproc *p = inproc_of(state);
    struct sse s;

    sse_open_url(&s, p->url, NULL);
    json_decref(expect_snapshot(&s, NULL));
    for (int i = 0; i < 5; i++) {
        unsigned seen = s.keepalives;
        struct sse_event ev;
        int64_t t0;
        json_t *j;

        /* A keep-alive came and went: the stream is idle (its connection suspended) now. */
        while (s.keepalives == seen) {
            assert_int_equal(sse_next(&s, 2 * KEEPALIVE_MS, &ev), -ETIMEDOUT);
        }
        t0 = it_now_ms();
        core_events_publish(p->bus, "test.ping", json_pack("{s:i}", "n", i));
        sse_next_ok(&s, IT_IO_TIMEOUT_MS, &ev);
        assert_string_equal(ev.type, "test.ping");
        j = event_json(&ev);
        assert_int_equal(it_json_int(j, "n"), i);
        json_decref(j);
        fprintf(stderr, "# woken in %lld ms\n", (long long)(ev.at_ms - t0));
        assert_true(ev.at_ms - t0 < KEEPALIVE_MS / 2);
        sse_event_fini(&ev);
    }
    sse_close(&s);
}

static void test_events_server_stop_with_streams_returns_promptly(void **state)
{
    struct inproc *p = inproc_of(state);
    char big[8192];
    struct sse a, b;
    int ra, rb;
    uint16_t peer_port;
    int64_t t0;
    int stalled;

    sse_open_url(&a, p->url, NULL);
    sse_open_url(&b, p->url, NULL);
    json_decref(expect_snapshot(&a, NULL));
    json_decref(expect_snapshot(&b, NULL));
    /* And one client that stopped reading, with a full connection. */
    stalled = stalled_client(api_server_port(p->server), &peer_port);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 200; i++) {
        core_events_publish(p->bus, "test.bulk", json_pack("{s:s}", "pad", big));
        if (i % 50 == 49) {
            tick_check_read(&(struct tick_check){.s = &a}, 0);
            tick_check_read(&(struct tick_check){.s = &b}, 0);
        }
    }

    t0 = it_now_ms();
    api_server_stop(p->server);
    p->server = NULL;
    fprintf(stderr, "# api_server_stop took %lld ms\n", (long long)(it_now_ms() - t0));
    assert_true(it_now_ms() - t0 < 1000);
    assert_int_equal(sse_wait_end(&a, IT_IO_TIMEOUT_MS, &ra), 0);
    assert_int_equal(sse_wait_end(&b, IT_IO_TIMEOUT_MS, &rb), 0);
    assert_int_equal(ra, 0);
    assert_int_equal(rb, 0);
    /* Every subscription ended with its stream. */
    assert_false(core_events_has_subscribers(p->bus));
    close(stalled);
    sse_close(&a);
    sse_close(&b);
}

struct draining_check {
    const struct it_daemon *d;
    const char *id;
};

static bool nothing_draining(void *arg)
{
    const struct draining_check *c = arg;
    json_t *j = it_listener_get(c->d, c->id);
    bool none = json_array_size(it_json_path(j, "status.draining")) == 0;

    json_decref(j);
    return none;
}

/* The runner a move replaced, with no connection to wait for, is reaped by the change thread
 * soon after the answer: here the ticker, which reaps too, ticks an hour apart. */
static void test_events_moved_runner_is_reaped_after_the_answer(void **state)
{
    struct inproc *p = inproc_of(state);
    struct it_daemon d = {.api_port = api_server_port(p->server)};
    char body[128];
    uint16_t to;
    json_t *j;
    int fd;

    snprintf(d.url, sizeof(d.url), "%s", p->url);
    json_decref(it_listener_create(&d, "{\"id\":\"mv\",\"service\":\"echo\","
                                       "\"transport\":\"tcp\",\"address\":\"127.0.0.1\","
                                       "\"port\":0,\"model\":\"event\"}"));
    fd = it_bind(SOCK_STREAM, "127.0.0.1", 0, &to);
    assert_true(fd >= 0);
    close(fd);
    snprintf(body, sizeof(body), "{\"port\":%u}", to);
    j = it_http_expect(&d, "PATCH", "/api/v1/listeners/mv", body, 200);
    assert_int_equal(it_bound_port(j), to);
    json_decref(j);
    assert_true(it_wait_until(5000, nothing_draining, &(struct draining_check){&d, "mv"}));
    it_assert_tcp_echo("127.0.0.1", to, "hi\n", 3);
}

/* A whole-configuration move wakes none of the runners it replaces before it answers: each is
 * muted (its socket leaves its loop's set, then is shut down) and told to drain by the change
 * thread after the answer. The old port refuses from the answer on, a connection held on it is
 * still served, and once that ends its runner is reaped: told, or it would wait out its 30 s
 * deadline (the ticker, which reaps too, ticks an hour apart here). */
static void test_events_config_move_drains_the_replaced_runner_after_the_answer(void **state)
{
    struct inproc *p = inproc_of(state);
    struct it_daemon d = {.api_port = api_server_port(p->server)};
    static const char fmt[] = "{\"listeners\":[{\"id\":\"cm\",\"service\":\"echo\","
                              "\"transport\":\"tcp\",\"address\":\"127.0.0.1\","
                              "\"port\":%u,\"model\":\"event\"}]}";
    char body[256];
    uint16_t from, to;
    json_t *j, *dr;
    int fd, held;

    snprintf(d.url, sizeof(d.url), "%s", p->url);
    snprintf(body, sizeof(body), fmt, 0u);
    j = it_http_expect(&d, "PUT", "/api/v1/config", body, 200);
    from = it_bound_port(json_array_get(json_object_get(j, "listeners"), 0));
    json_decref(j);
    held = it_tcp_connect("127.0.0.1", from, IT_IO_TIMEOUT_MS);
    assert_true(held >= 0);
    it_send_str_ok(held, "before\n");
    it_expect_line(held, "before");
    fd = it_bind(SOCK_STREAM, "127.0.0.1", 0, &to);
    assert_true(fd >= 0);
    close(fd);

    snprintf(body, sizeof(body), fmt, (unsigned)to);
    j = it_http_expect(&d, "PUT", "/api/v1/config", body, 200);
    assert_int_equal(it_bound_port(json_array_get(json_object_get(j, "listeners"), 0)), to);
    dr = it_json_path(json_array_get(json_object_get(j, "listeners"), 0), "status.draining");
    assert_int_equal(json_array_size(dr), 1);
    assert_true(json_is_false(json_object_get(json_array_get(dr, 0), "accepting")));
    assert_int_equal(it_json_int(json_array_get(dr, 0), "connections"), 1);
    json_decref(j);
    assert_true(it_tcp_is_refused("127.0.0.1", from));
    it_send_str_ok(held, "after\n");
    it_expect_line(held, "after");
    it_assert_tcp_echo("127.0.0.1", to, "new\n", 4);

    close(held);
    assert_true(it_wait_until(5000, nothing_draining, &(struct draining_check){&d, "cm"}));
}

/* ---- service events: backup.stored and backup.failed, under every TCP model ---- */

#define BACKUP_CONTENT "the quick brown fox jumps over the lazy dog\n"
#define BACKUP_SHA256 "1153a4080f1fcb04425aa0b841c2b14606fe6df25d9076d2a1face2d5af57129"

/* A backup listener "bk" on port 0 under model, keeping its files in DIR/files-MODEL; extra is
 * more options members (",\"max_file_size\":100") or "". Returns its port. */
static uint16_t backup_listener(void **state, const char *model, const char *extra)
{
    struct it_fixture *f = *state;
    char body[1024], name[64], *files;

    snprintf(name, sizeof(name), "files-%s", model);
    files = it_path_in(f->dir, name);

    snprintf(body, sizeof(body),
             "{\"id\":\"bk\",\"service\":\"backup\",\"port\":0,\"model\":\"%s\","
             "\"options\":{\"directory\":\"%s\"%s}}",
             model, files, extra);
    free(files);
    return it_listener_create_port(&f->d, body);
}

/* `sockserv backup put DIR/NAME --name NAME 127.0.0.1 PORT` of BACKUP_CONTENT; asserts exit 0. */
static void backup_put(void **state, uint16_t port, const char *name)
{
    struct it_fixture *f = *state;
    char ps[8], *src = it_path_in(f->dir, name);
    const char *args[8] = {"put", src, "--name", name, "127.0.0.1", ps, NULL};
    struct it_proc p;

    snprintf(ps, sizeof(ps), "%u", port);
    assert_int_equal(it_file_write(src, BACKUP_CONTENT, strlen(BACKUP_CONTENT)), 0);
    it_run_verb("backup", args, NULL, 0, IT_IO_TIMEOUT_MS, &p);
    if (p.timed_out || it_proc_exit_code(&p) != 0)
        fail_msg("sockserv backup put %s: %s\n%s", name, it_status_str(p.status), p.err);
    it_proc_fini(&p);
    free(src);
}

/* The next backup.* event: asserts it is type, about listener "bk" and name. Returns its data. */
static json_t *expect_backup_event(struct sse *s, const char *type, const char *name)
{
    struct sse_event ev;
    json_t *j;

    for (;;) {
        sse_next_change(s, IT_IO_TIMEOUT_MS, &ev);
        if (strncmp(ev.type, "backup.", 7) == 0)
            break;
        sse_event_fini(&ev);
    }
    if (strcmp(ev.type, type) != 0)
        fail_msg("event '%s' (%s), want '%s'", ev.type, ev.data, type);
    j = event_json(&ev);
    assert_string_equal(it_json_str(j, "listener"), "bk");
    assert_string_equal(it_json_str(j, "name"), name);
    sse_event_fini(&ev);
    return j;
}

/* A file stored through the backup client under model shows as backup.stored, version by
 * version, with what the client stored; nothing is dropped on the way. */
static void assert_backup_stored_under(void **state, const char *model)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(state, model, "");
    struct sse s;
    json_t *j;

    sse_open(&s, d, NULL);
    json_decref(expect_snapshot(&s, NULL));
    for (int version = 1; version <= 2; version++) {
        const char *t;

        backup_put(state, port, "report.txt");
        j = expect_backup_event(&s, "backup.stored", "report.txt");
        assert_int_equal(it_json_int(j, "version"), version);
        assert_int_equal(it_json_int(j, "size"), strlen(BACKUP_CONTENT));
        assert_string_equal(it_json_str(j, "sha256"), BACKUP_SHA256);
        assert_true(it_json_bool(j, "verified"));
        t = it_json_str(j, "time"); /* as the files listing shows "stored" */
        assert_int_equal(strlen(t), strlen("2026-11-25T10:02:45Z"));
        assert_int_equal(t[10], 'T');
        assert_int_equal(t[19], 'Z');
        json_decref(j);
    }
    assert_int_equal(it_metric(d, "bk", "events_dropped"), 0);
    sse_close(&s);
}

static void test_events_backup_stored_under_thread(void **state)
{
    assert_backup_stored_under(state, "thread");
}

static void test_events_backup_stored_under_event(void **state)
{
    assert_backup_stored_under(state, "event");
}

static void test_events_backup_stored_under_uring(void **state)
{
    assert_backup_stored_under(state, "uring");
}

static void test_events_backup_stored_under_process(void **state)
{
    assert_backup_stored_under(state, "process");
}

static void test_events_backup_stored_under_pool_and_sequential(void **state)
{
    assert_backup_stored_under(state, "pool");
    json_decref(it_http_expect(it_daemon_of(state), "DELETE", "/api/v1/listeners/bk", NULL, 204));
    assert_backup_stored_under(state, "sequential");
}

/* Sends line (and content) on fd and asserts the answer starts with want. */
static void backup_exchange(int fd, const char *line, const char *want)
{
    char got[512];

    it_send_str_ok(fd, line);
    it_recv_line(fd, got, sizeof(got));
    if (strncmp(got, want, strlen(want)) != 0)
        fail_msg("answer to '%s': '%s', want '%s...'", line, got, want);
}

/*
 * Asserts that the daemon's one child holds no fd of the daemon's beyond its own: from 3 up,
 * its connection (a socket), the runner's wake eventfd, the sending end of the event channel
 * (a socket), and what its session opened itself in the backup directory files_dir.
 */
static void assert_child_fds_are_its_own(const struct it_daemon *d, const char *files_dir)
{
    char path[64], link[512], seen[2048] = "";
    int sockets = 0, eventfds = 0, others = 0;
    struct dirent *e;
    pid_t child;
    DIR *dp;

    assert_int_equal(it_children(d, &child, 1), 1);
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)child);
    dp = opendir(path);
    assert_non_null(dp);
    while ((e = readdir(dp))) {
        char fd_path[64 + 256];
        ssize_t n;

        if (e->d_name[0] == '.' || atoi(e->d_name) < 3 || atoi(e->d_name) == dirfd(dp))
            continue;
        snprintf(fd_path, sizeof(fd_path), "%s/%s", path, e->d_name);
        n = readlink(fd_path, link, sizeof(link) - 1);
        if (n < 0)
            continue;
        link[n] = '\0';
        snprintf(seen + strlen(seen), sizeof(seen) - strlen(seen), " %s:%s", e->d_name, link);
        if (strncmp(link, "socket:", 7) == 0)
            sockets++;
        else if (strcmp(link, "anon_inode:[eventfd]") == 0)
            eventfds++;
        else if (strncmp(link, files_dir, strlen(files_dir)) != 0)
            others++;
    }
    closedir(dp);
    if (sockets != 2 || eventfds != 1 || others != 0)
        fail_msg("the child holds more than its connection, wake fd and event channel:%s", seen);
}

/*
 * Under `process`, where every connection is a child: an upload that fails reports
 * backup.failed with the reason of its ERR line; a connection repeating a refused PUT reports
 * at most 8 of them (the counters count every one); a client that closes mid-upload too.
 */
static void test_events_backup_failed_under_process_is_reported_and_bounded(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = backup_listener(state, "process", ",\"max_file_size\":1000");
    struct sse s;
    json_t *j;
    int fd;

    sse_open(&s, d, NULL);
    json_decref(expect_snapshot(&s, NULL));

    /* a checksum that does not match */
    fd = it_tcp_connect_ok(port);
    backup_exchange(fd, "PUT bad.txt 4 " BACKUP_SHA256 "\n", "OK");
    backup_exchange(fd, "abcd", "ERR checksum-mismatch ");
    j = expect_backup_event(&s, "backup.failed", "bad.txt");
    assert_string_equal(it_json_str(j, "reason"), "checksum-mismatch");
    assert_non_null(strstr(it_json_str(j, "detail"), "nothing kept"));
    json_decref(j);
    close(fd);

    /* twelve refusals on one connection: eight events */
    fd = it_tcp_connect_ok(port);
    for (int i = 0; i < 12; i++)
        backup_exchange(fd, "PUT big.bin 5000\n", "ERR too-large ");
    close(fd);
    backup_put(state, port, "after.txt");
    for (int i = 0; i < 8; i++) {
        j = expect_backup_event(&s, "backup.failed", "big.bin");
        assert_string_equal(it_json_str(j, "reason"), "too-large");
        json_decref(j);
    }
    json_decref(expect_backup_event(&s, "backup.stored", "after.txt"));
    it_assert_metric_eventually(d, "bk", "service.uploads_rejected_too_large", 12, IT_WAIT_MS);

    /* the client leaves in the middle of its upload */
    fd = it_tcp_connect_ok(port);
    backup_exchange(fd, "PUT half.txt 10\n", "OK");
    {
        struct it_fixture *f = *state;
        char *files = it_path_in(f->dir, "files-process");

        assert_child_fds_are_its_own(d, files);
        free(files);
    }
    it_send_str_ok(fd, "abc");
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    j = expect_backup_event(&s, "backup.failed", "half.txt");
    assert_string_equal(it_json_str(j, "reason"), "size-mismatch");
    assert_non_null(strstr(it_json_str(j, "detail"), "3 of 10 bytes"));
    json_decref(j);
    close(fd);
    assert_int_equal(it_metric(d, "bk", "events_dropped"), 0);
    sse_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_events_stream_starts_with_retry_and_snapshot,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_listener_lifecycle_arrives_in_order,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_failed_start_reports_state_with_error,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_metrics_tick_every_second_and_counters_rise,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_events_metrics_tick_latency_interval_counts_the_last_second, it_fixture_setup,
            it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_recent_lists_the_last_events_newest_first,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_last_event_id_replays_exactly_the_missed_events,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_unknown_last_event_id_gets_a_snapshot,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_last_event_id_out_of_the_ring_gets_a_snapshot,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_stalled_client_delays_no_one, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_stalled_client_is_cut_by_the_timeout,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_sigterm_with_two_streams_exits_0_within_2s,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_backup_stored_under_thread, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_backup_stored_under_event, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_backup_stored_under_uring, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_backup_stored_under_process, it_fixture_setup,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_backup_stored_under_pool_and_sequential,
                                        it_fixture_setup, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_events_backup_failed_under_process_is_reported_and_bounded, it_fixture_setup,
            it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_events_idle_stream_gets_keepalive_comments,
                                        inproc_setup, inproc_teardown),
        cmocka_unit_test_setup_teardown(test_events_published_event_wakes_an_idle_stream_at_once,
                                        inproc_setup, inproc_teardown),
        cmocka_unit_test_setup_teardown(test_events_server_stop_with_streams_returns_promptly,
                                        inproc_setup, inproc_teardown),
        cmocka_unit_test_setup_teardown(test_events_moved_runner_is_reaped_after_the_answer,
                                        inproc_setup, inproc_teardown),
        cmocka_unit_test_setup_teardown(
            test_events_config_move_drains_the_replaced_runner_after_the_answer, inproc_setup,
            inproc_teardown),
    };

    (void)signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
