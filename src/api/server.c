#include "api/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "api/events.h"
#include "api/handlers.h"
#include "api/reply.h"
#include "api/routes.h"
#include "core/addr.h"
#include "core/buf.h"
#include "core/log.h"

#define BODY_MAX_DEFAULT (1024 * 1024)
#define CONNECTION_LIMIT 256
#define PER_IP_CONNECTION_LIMIT 64
#define CONNECTION_TIMEOUT_S 30
#define CONNECTION_MEMORY_LIMIT (64 * 1024)
#define LISTEN_BACKLOG 128
/* A refused upload is read and dropped (so that the client sees the answer) up to this many
 * times body_max; past that the connection is cut. */
#define DISCARD_FACTOR 16

struct api_server {
    struct MHD_Daemon *daemon;
    struct core_registry *registry; /* borrowed */
    struct api_events *events;      /* the event streams; NULL without a bus */
    size_t body_max;
    uint16_t port;
    struct timespec started; /* CLOCK_MONOTONIC */
};

/* One request's state, in libmicrohttpd's *req_cls from its first call to its completion. */
struct request {
    struct api_match match;
    char *id;     /* copy of the {id} segment, or NULL */
    char *name;   /* copy of the {name} segment, or NULL */
    bool decided; /* reply is final before the body is read (404, 405, 413, 415) */
    struct api_reply reply;
    struct core_buf body; /* the body read so far (routes that take one) */
    size_t seen;          /* body bytes received, kept or not */
};

static void request_free(struct request *q)
{
    if (!q)
        return;
    api_reply_fini(&q->reply);
    free(q->id);
    free(q->name);
    core_buf_fini(&q->body);
    free(q);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    (void)cls;
    (void)vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* A client that went away (an event stream's tab closed, a download cancelled) is news
     * only when debugging. */
    if (strncmp(line, "Failed to send", 14) == 0)
        core_log_debug("api: libmicrohttpd: %s", line);
    else
        core_log_warn("api: libmicrohttpd: %s", line);
}

static uint64_t uptime_seconds(const struct api_server *s)
{
    struct timespec now;

    if (clock_gettime(CLOCK_MONOTONIC, &now) < 0 || now.tv_sec < s->started.tv_sec)
        return 0;
    return (uint64_t)(now.tv_sec - s->started.tv_sec);
}

/*
 * What can be said from the request line and headers alone: the route (404, 405), a declared
 * body over the limit (413), a body of the wrong type (415). Sets q->decided with q->reply on
 * a refusal. Returns 0, or -ENOMEM.
 */
static int request_prepare(struct api_server *s, struct request *q, struct MHD_Connection *conn,
                           const char *method, const char *url)
{
    const char *ctype, *clen;
    char allow[API_ALLOW_MAX];
    int r;

    r = api_route_match(method, url, &q->match);
    if (r == -ENOENT) {
        api_reply_problem(&q->reply, MHD_HTTP_NOT_FOUND, NULL, "no such resource: %s", url);
        q->decided = true;
        return 0;
    }
    if (r == -EOPNOTSUPP) {
        (void)api_methods_format(q->match.allow, allow, sizeof(allow));
        api_reply_method_not_allowed(&q->reply, method, url, allow);
        q->decided = true;
        return 0;
    }

    clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    r = api_body_length_check(clen, s->body_max);
    if (r == -EFBIG) {
        api_reply_problem(&q->reply, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                          "the request body is %s bytes; the limit is %zu", clen, s->body_max);
        q->decided = true;
        return 0;
    }

    ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!api_body_type_is_accepted(q->match.route->body, ctype)) {
        api_reply_problem(
            &q->reply, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NULL,
            "the body must be application/json%s; got %s",
            q->match.route->body == API_BODY_MERGE_PATCH ? " or application/merge-patch+json" : "",
            ctype ? ctype : "no Content-Type");
        q->decided = true;
        return 0;
    }

    if (q->match.captures.id.at) {
        q->id = strndup(q->match.captures.id.at, q->match.captures.id.len);
        if (!q->id)
            return -ENOMEM;
    }
    if (q->match.captures.name.at) {
        q->name = strndup(q->match.captures.name.at, q->match.captures.name.len);
        if (!q->name)
            return -ENOMEM;
    }
    return 0;
}

/*
 * Takes a piece of the body. Returns false when the connection should be cut (a client that
 * goes on sending long after its upload was refused).
 */
static bool request_take(struct api_server *s, struct request *q, const char *data, size_t len)
{
    size_t discard_max = s->body_max * DISCARD_FACTOR;

    q->seen = len > SIZE_MAX - q->seen ? SIZE_MAX : q->seen + len;
    if (q->decided)
        return q->seen <= discard_max;
    if (q->seen > s->body_max) {
        api_reply_problem(&q->reply, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                          "the request body is over the limit of %zu bytes", s->body_max);
        q->decided = true;
        core_buf_fini(&q->body);
        return true;
    }
    if (q->match.route->body == API_BODY_NONE)
        return true;
    if (core_buf_append(&q->body, data, len) < 0) {
        api_reply_error(&q->reply, -ENOMEM, NULL);
        q->decided = true;
        core_buf_fini(&q->body);
    }
    return true;
}

/* api_query_fn over the connection's query arguments ("?key" has a NULL value in them). */
static const char *query_value(const struct api_request *req, const char *key)
{
    const char *value = NULL;
    size_t len = 0;

    if (MHD_lookup_connection_value_n(req->query_ctx, MHD_GET_ARGUMENT_KIND, key, strlen(key),
                                      &value, &len) != MHD_YES)
        return NULL;
    return value ? value : "";
}

/* The whole request is in: runs its handler into q->reply. */
static void request_dispatch(struct api_server *s, struct request *q, struct MHD_Connection *conn,
                             const char *url)
{
    struct api_request req = {
        .registry = s->registry,
        .events = s->events,
        .path = url,
        .id = q->id,
        .name = q->name,
        .if_none_match =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH),
        .last_event_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID"),
        .uptime_seconds = uptime_seconds(s),
        .query = query_value,
        .query_ctx = conn,
    };
    json_t *body = NULL;

    if (q->match.route->body != API_BODY_NONE) {
        struct core_err err = {0};
        int r = api_body_parse(q->body.data ? (const char *)q->body.data : "", q->body.len, &body,
                               &err);

        if (r < 0) {
            api_reply_error(&q->reply, r, &err);
            return;
        }
        req.body = body;
    }
    q->match.route->handler(&req, &q->reply);
    json_decref(body);
}

static enum MHD_Result send_reply(struct request *q, struct MHD_Connection *conn,
                                  const char *method, const char *url)
{
    if (q->reply.status >= 500)
        core_log_error("api: %s %s: %u %s", method, url, q->reply.status,
                       q->reply.is_problem ? q->reply.detail : "");
    else
        core_log_debug("api: %s %s: %u", method, url, q->reply.status);
    return api_reply_send(conn, &q->reply);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct api_server *s = cls;
    struct request *q = *req_cls;

    (void)version;
    if (!q) {
        q = calloc(1, sizeof(*q));
        if (!q)
            return MHD_NO;
        api_reply_init(&q->reply);
        *req_cls = q;
        if (request_prepare(s, q, conn, method, url) < 0) {
            api_reply_error(&q->reply, -ENOMEM, NULL);
            q->decided = true;
        }
        /*
         * A refused request whose declared body is over the limit is answered at once, without
         * reading the body (a client that sent "Expect: 100-continue" never sends it). Other
         * refusals wait for the body to be read, so that the answer is not lost to a reset.
         */
        if (q->decided &&
            api_body_length_check(
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH),
                s->body_max) == -EFBIG)
            return send_reply(q, conn, method, url);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        bool keep = request_take(s, q, upload_data, *upload_data_size);

        *upload_data_size = 0;
        return keep ? MHD_YES : MHD_NO;
    }
    if (!q->decided)
        request_dispatch(s, q, conn, url);
    return send_reply(q, conn, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    request_free(*req_cls);
    *req_cls = NULL;
}

/* A listening socket bound to sa (CLOEXEC, non-blocking). Returns the fd or -errno. */
static int listen_socket(const struct sockaddr_storage *sa, socklen_t len, struct core_err *err)
{
    const int on = 1, off = 0;
    int fd, r;

    fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "socket: %s", strerror(-r));
        return r;
    }
    /* A restarted daemon binds again while connections of the last one are in TIME_WAIT. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "SO_REUSEADDR: %s", strerror(-r));
        goto out_close_fd;
    }
    /* "::" is dual-stack, whatever the system's default. */
    if (sa->ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "IPV6_V6ONLY: %s", strerror(-r));
        goto out_close_fd;
    }
    if (bind(fd, (const struct sockaddr *)sa, len) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "bind: %s", strerror(-r));
        goto out_close_fd;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "listen: %s", strerror(-r));
        goto out_close_fd;
    }
    return fd;

out_close_fd:
    close(fd);
    return r;
}

/* The port fd is bound to, 0 when unknown. */
static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    return core_addr_port((const struct sockaddr *)&ss);
}

/*
 * Whether fd still is the socket st describes: after a failed MHD_start_daemon() the fd may
 * have been closed by libmicrohttpd, and its number taken by another thread's new file.
 */
static bool fd_is(int fd, const struct stat *st)
{
    struct stat now;

    return fstat(fd, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino;
}

int api_server_start(const struct api_server_opts *opts, struct api_server **ret,
                     struct core_err *err)
{
    /* Event streams suspend their connection while they have nothing to send. */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    const union MHD_DaemonInfo *info;
    struct api_server *s;
    struct sockaddr_storage ss;
    socklen_t ss_len;
    struct stat st;
    int fd, r;

    if (!opts || !opts->host || !opts->registry || !ret) {
        (void)core_err_set(err, -EINVAL, NULL, "api: host and registry are required");
        return -EINVAL;
    }
    if (core_addr_parse(opts->host, opts->port, &ss, &ss_len) < 0) {
        (void)core_err_set(err, -EINVAL, "host", "%s: not a numeric IPv4 or IPv6 address",
                           opts->host);
        return -EINVAL;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;

    s = calloc(1, sizeof(*s));
    if (!s) {
        (void)core_err_set(err, -ENOMEM, NULL, "out of memory");
        return -ENOMEM;
    }
    s->registry = opts->registry;
    s->body_max = opts->body_max ? opts->body_max : BODY_MAX_DEFAULT;
    if (clock_gettime(CLOCK_MONOTONIC, &s->started) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "clock_gettime: %s", strerror(-r));
        goto out_free;
    }

    if (opts->events) {
        /* Each stream writes within the keep-alive interval, so that only a client that stops
         * reading is cut by the connection timeout. */
        unsigned keepalive = opts->keepalive_ms ? opts->keepalive_ms : API_EVENTS_KEEPALIVE_MS;

        if (keepalive > CONNECTION_TIMEOUT_S * 1000 / 2)
            keepalive = CONNECTION_TIMEOUT_S * 1000 / 2;
        r = api_events_new(opts->events, opts->registry, keepalive, &s->events);
        if (r < 0) {
            (void)core_err_set(err, r, NULL, "api: event streams: %s", strerror(-r));
            goto out_free;
        }
    }

    fd = listen_socket(&ss, ss_len, err);
    if (fd < 0) {
        r = fd;
        goto out_free;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "fstat: %s", strerror(-r));
        close(fd);
        goto out_free;
    }
    s->port = bound_port(fd);

    /* On success the daemon owns fd and closes it in MHD_stop_daemon(). */
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)PER_IP_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONNECTION_MEMORY_LIMIT, MHD_OPTION_END);
    if (!s->daemon) {
        if (fd_is(fd, &st))
            close(fd);
        r = -EIO;
        (void)core_err_set(err, r, NULL, "api: libmicrohttpd could not start on %s port %u",
                           opts->host, (unsigned)s->port);
        goto out_free;
    }

    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info && info->port)
        s->port = info->port;
    *ret = s;
    return 0;

out_free:
    api_events_free(s->events);
    free(s);
    return r;
}

uint16_t api_server_port(const struct api_server *s)
{
    return s->port;
}

void api_server_stop(struct api_server *s)
{
    if (!s)
        return;
    /* Streams end first: libmicrohttpd must not be stopped with a connection suspended. */
    api_events_shutdown(s->events);
    MHD_stop_daemon(s->daemon);
    api_events_free(s->events);
    free(s);
}
