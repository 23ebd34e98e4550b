#include "api/events.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/thread.h"

/* How much a stream asks libmicrohttpd to take at a time (advisory). */
#define STREAM_BLOCK (16 * 1024)
/* How long a shutdown waits for the streams to finish their responses. */
#define DRAIN_MS 500

static const char keepalive_text[] = ": keepalive\n\n";

/*
 * Locks, always taken in this order: the hub's lock, then a stream's lock, then (inside
 * MHD_resume_connection() and MHD_suspend_connection()) libmicrohttpd's own. The bus calls
 * on_bus() under its lock, so the bus's lock comes before a stream's; a stream's lock is never
 * held while calling into the bus.
 */
struct api_events {
    struct core_events *bus;        /* borrowed */
    struct core_registry *registry; /* borrowed */
    unsigned keepalive_ms;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* the keep-alive thread sleeps on it; CLOCK_MONOTONIC */
    pthread_cond_t drained;     /* signalled when the last stream is freed; CLOCK_MONOTONIC */
    struct api_stream *streams; /* guarded by lock: every open stream */
    bool stopping;              /* guarded by lock */
    pthread_t keepalive_thread;
    bool has_thread;
};

struct api_stream {
    struct api_events *hub;
    struct core_events_sub *sub;
    /* libmicrohttpd's thread only (the handler, then the content reader): */
    struct core_buf out; /* text not yet handed to libmicrohttpd */
    bool ended;          /* overrun by the bus: end once out is sent */

    pthread_mutex_t lock;
    struct MHD_Connection *conn; /* guarded by lock; set before the response is queued */
    bool suspended;        /* guarded by lock: the reader suspended conn; nobody resumed it since */
    bool notified;         /* guarded by lock: the bus queued something since the reader looked */
    bool keepalive_due;    /* guarded by lock: nothing was sent for the keep-alive interval */
    bool stopping;         /* guarded by lock: the server stops; end the stream */
    bool cut;              /* guarded by lock: the server cut the connection; end at once */
    int64_t last_write_ms; /* guarded by lock: CLOCK_MONOTONIC when text was last handed over */

    struct api_stream *prev, *next; /* guarded by hub->lock */
};

/* Lets a suspended stream's reader run again. Called with s->lock held. */
static void wake_locked(struct api_stream *s)
{
    if (!s->suspended)
        return;
    s->suspended = false;
    MHD_resume_connection(s->conn);
}

/* The bus queued an event for s, or overran it. Called under the bus's lock, any thread. */
static void on_bus(void *ctx)
{
    struct api_stream *s = ctx;

    pthread_mutex_lock(&s->lock);
    s->notified = true;
    wake_locked(s);
    pthread_mutex_unlock(&s->lock);
}

/* Marks the streams that sent nothing for the keep-alive interval and wakes them. */
static void *keepalive_main(void *arg)
{
    struct api_events *h = arg;

    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        int64_t now = core_now_ms(), next = now + h->keepalive_ms;
        struct timespec deadline;

        for (struct api_stream *s = h->streams; s; s = s->next) {
            pthread_mutex_lock(&s->lock);
            if (!s->keepalive_due) {
                int64_t due = s->last_write_ms + h->keepalive_ms;

                if (due <= now) {
                    s->keepalive_due = true;
                    wake_locked(s);
                } else if (due < next) {
                    next = due;
                }
            }
            pthread_mutex_unlock(&s->lock);
        }
        deadline.tv_sec = (time_t)(next / 1000);
        deadline.tv_nsec = (long)(next % 1000) * 1000000;
        (void)pthread_cond_timedwait(&h->wake, &h->lock, &deadline);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

int api_events_new(struct core_events *bus, struct core_registry *registry, unsigned keepalive_ms,
                   struct api_events **ret)
{
    struct api_events *h;
    pthread_condattr_t attr;
    int r;

    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->bus = bus;
    h->registry = registry;
    h->keepalive_ms = keepalive_ms ? keepalive_ms : API_EVENTS_KEEPALIVE_MS;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &attr);
    pthread_cond_init(&h->drained, &attr);
    pthread_condattr_destroy(&attr);
    r = -pthread_create(&h->keepalive_thread, NULL, keepalive_main, h);
    if (r < 0) {
        api_events_free(h);
        return r;
    }
    h->has_thread = true;
    core_thread_name(h->keepalive_thread, "ss-keepalive");
    *ret = h;
    return 0;
}

void api_events_shutdown(struct api_events *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->stopping = true;
    for (struct api_stream *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        wake_locked(s);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    if (h->has_thread) {
        pthread_join(h->keepalive_thread, NULL);
        h->has_thread = false;
    }

    /* Give the streams a moment to send their end (the last chunk), so that clients see a
     * finished response rather than a cut one; one that cannot write is cut by the daemon's
     * stop. */
    {
        int64_t end = core_now_ms() + DRAIN_MS;
        struct timespec deadline = {.tv_sec = (time_t)(end / 1000),
                                    .tv_nsec = (long)(end % 1000) * 1000000};

        pthread_mutex_lock(&h->lock);
        while (h->streams && pthread_cond_timedwait(&h->drained, &h->lock, &deadline) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(&h->lock);
    }
}

void api_events_cut(struct api_events *h, const struct MHD_Connection *c)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    for (struct api_stream *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (s->conn == c) {
            s->cut = true;
            wake_locked(s);
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

void api_events_free(struct api_events *h)
{
    if (!h)
        return;
    api_events_shutdown(h);
    /* Every stream belongs to a response, and the stopped daemon destroyed them all. */
    if (h->streams)
        core_log_error("api: event streams left open at shutdown");
    pthread_cond_destroy(&h->wake);
    pthread_cond_destroy(&h->drained);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

int api_events_recent(struct api_events *h, size_t max, json_t **ret)
{
    return core_events_recent(h->bus, max, ret);
}

int api_event_id_parse(const char *text, uint64_t *ret)
{
    const char *p = text;
    uint64_t v = 0;
    bool digits = false;

    p += strspn(p, " \t");
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');

        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
        digits = true;
    }
    p += strspn(p, " \t");
    if (!digits || *p != '\0')
        return -EINVAL;
    *ret = v;
    return 0;
}

int api_event_append(struct core_buf *b, uint64_t id, const char *type, const char *data,
                     size_t len)
{
    size_t mark = b->len;
    size_t i = 0;

    if (core_buf_printf(b, "id: %llu\nevent: %s\n", (unsigned long long)id, type) < 0)
        goto out_nomem;
    /* One "data:" line per line of data; CR, LF and CRLF end a line, as in the SSE format. */
    for (;;) {
        size_t n = 0;

        while (i + n < len && data[i + n] != '\n' && data[i + n] != '\r')
            n++;
        if (core_buf_append(b, "data: ", 6) < 0 || core_buf_append(b, data + i, n) < 0 ||
            core_buf_append(b, "\n", 1) < 0)
            goto out_nomem;
        i += n;
        if (i < len && data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
        if (i == len)
            break;
        i++;
    }
    if (core_buf_append(b, "\n", 1) < 0)
        goto out_nomem;
    return 0;

out_nomem:
    b->len = mark;
    return -ENOMEM;
}

/* The snapshot event: {"listeners": [...]} as GET /api/v1/listeners, with the id given. */
static int append_snapshot(struct api_stream *s, uint64_t id)
{
    json_t *list = NULL, *j;
    char *text;
    int r;

    r = core_registry_list(s->hub->registry, &list);
    if (r < 0)
        return r;
    j = json_object();
    if (!j || json_object_set_new(j, "listeners", list) < 0) {
        json_decref(j);
        return -ENOMEM;
    }
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return -ENOMEM;
    r = api_event_append(&s->out, id, "snapshot", text, strlen(text));
    free(text);
    return r;
}

int api_stream_open(struct api_events *h, const char *last_event_id, struct api_stream **ret)
{
    struct api_stream *s;
    uint64_t last = 0, before;
    bool caught_up = false;
    int r;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->hub = h;
    pthread_mutex_init(&s->lock, NULL);
    s->last_write_ms = core_now_ms();

    pthread_mutex_lock(&h->lock);
    if (h->stopping) {
        pthread_mutex_unlock(&h->lock);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return -ESHUTDOWN;
    }
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    pthread_mutex_unlock(&h->lock);

    if (!last_event_id || api_event_id_parse(last_event_id, &last) < 0)
        last = 0;
    /* The snapshot carries the id of the last event before the subscription: every later one
     * is queued, and those that raced with the snapshot arrive after it, which is harmless. */
    before = core_events_last_id(h->bus);
    r = core_events_subscribe(h->bus, last, on_bus, s, &s->sub, &caught_up);
    if (r < 0)
        goto out_free;
    r = core_buf_printf(&s->out, "retry: %u\n\n", (unsigned)API_EVENTS_RETRY_MS);
    if (r < 0)
        goto out_free;
    if (!caught_up) {
        r = append_snapshot(s, before);
        if (r < 0)
            goto out_free;
    }
    *ret = s;
    return 0;

out_free:
    api_stream_free(s);
    return r;
}

void api_stream_free(struct api_stream *s)
{
    struct api_events *h;

    if (!s)
        return;
    h = s->hub;
    /* After this the bus no longer calls on_bus() for s. */
    core_events_unsubscribe(s->sub);
    pthread_mutex_lock(&h->lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (!h->streams)
        pthread_cond_broadcast(&h->drained);
    pthread_mutex_unlock(&h->lock);
    core_buf_fini(&s->out);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Takes what the bus queued for s into s->out, up to about max bytes. Returns 0 or -ENOMEM. */
static int fill(struct api_stream *s, size_t max)
{
    while (s->out.len < max) {
        struct core_event *ev = NULL;
        const char *data;
        size_t len;
        int r = core_events_next(s->sub, &ev);

        if (r == 0)
            return 0;
        if (r == -EPIPE) {
            s->ended = true; /* overrun: the client catches up with Last-Event-ID */
            return 0;
        }
        r = core_event_data(ev, &data, &len);
        if (r == 0)
            r = api_event_append(&s->out, ev->id, ev->type, data, len);
        core_event_unref(ev);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Copies the head of s->out into buf. */
static ssize_t hand_over(struct api_stream *s, char *buf, size_t max)
{
    size_t n = s->out.len < max ? s->out.len : max;

    memcpy(buf, s->out.data, n);
    core_buf_consume(&s->out, n);
    pthread_mutex_lock(&s->lock);
    s->last_write_ms = core_now_ms();
    s->keepalive_due = false;
    pthread_mutex_unlock(&s->lock);
    return (ssize_t)n;
}

/*
 * libmicrohttpd's content reader: the next bytes of the stream. With nothing to send it
 * suspends the connection and returns 0 (returning 0 without suspending would make the daemon's
 * thread call it again at once); on_bus(), the keep-alive thread or the shutdown resume it.
 */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct api_stream *s = cls;

    (void)pos;
    if (max == 0)
        return 0;
    for (;;) {
        bool keepalive, cut;

        pthread_mutex_lock(&s->lock);
        cut = s->cut;
        pthread_mutex_unlock(&s->lock);
        if (cut) /* the socket is shut down: whatever is sent now is lost */
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (s->out.len > 0)
            return hand_over(s, buf, max);
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;

        pthread_mutex_lock(&s->lock);
        if (s->stopping) {
            pthread_mutex_unlock(&s->lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        s->notified = false; /* before looking at the queue: a later event sets it again */
        pthread_mutex_unlock(&s->lock);

        if (fill(s, max) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->out.len > 0 || s->ended)
            continue;

        pthread_mutex_lock(&s->lock);
        if (s->notified || s->stopping) {
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        keepalive = s->keepalive_due;
        if (!keepalive) {
            s->suspended = true;
            MHD_suspend_connection(s->conn);
        }
        pthread_mutex_unlock(&s->lock);
        if (!keepalive)
            return 0;
        if (core_buf_append(&s->out, keepalive_text, sizeof(keepalive_text) - 1) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_release(void *cls)
{
    api_stream_free(cls);
}

struct MHD_Response *api_stream_response(struct api_stream *s, struct MHD_Connection *c)
{
    struct MHD_Response *resp;

    pthread_mutex_lock(&s->lock);
    s->conn = c;
    pthread_mutex_unlock(&s->lock);
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, s,
                                             stream_release);
    if (!resp) {
        api_stream_free(s);
        return NULL;
    }
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") !=
            MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
        MHD_add_response_header(resp, "X-Accel-Buffering", "no") != MHD_YES) {
        MHD_destroy_response(resp); /* frees s */
        return NULL;
    }
    return resp;
}
