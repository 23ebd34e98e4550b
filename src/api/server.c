#include "api/server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "api/download.h"
#include "api/events.h"
#include "api/guard.h"
#include "api/handlers.h"
#include "api/priority.h"
#include "api/reply.h"
#include "api/routes.h"
#include "api/strict.h"
#include "api/ticket.h"
#include "api/tls.h"
#include "api/upload.h"
#include "core/clock.h"
#include "core/addr.h"
#include "core/buf.h"
#include "core/fdbudget.h"
#include "core/log.h"
#include "core/net.h"
#include "core/thread.h"

#define BODY_MAX_DEFAULT (1024 * 1024)
/* Room for a burst of connections while the thread is busy: a full queue drops a new client's
 * SYN, and the client waits a second or more to try again, whatever room admission keeps. */
#define LISTEN_BACKLOG 1024
/* A refused upload is read and dropped (so that the client sees the answer) up to this many
 * times body_max; past that the connection is cut. */
#define DISCARD_FACTOR 16
/* At most one warning a minute about the connections cut by their deadline. */
#define CUT_LOG_INTERVAL_MS 60000
/* libmicrohttpd warnings written a minute at the most (see on_mhd_log()). */
#define API_LOG_PER_MINUTE 10

/* libmicrohttpd's thread names itself this, and the server renames it API_THREAD_NAME. */
#define API_MHD_THREAD_NAME "MHD-single"
#define API_THREAD_NAME "ss-api"
/* How long the server looks for that thread at its start. */
#define API_MHD_THREAD_WAIT_MS 2000

/* A stalled response's socket is looked at this often. */
#define STALL_POLL_MS 500
/* Connections cut at once by the deadline thread before it lets go of its lock. */
#define CUT_BATCH 16

/*
 * What a connection is doing (see api/server.h, "Admission"). HEAD, BODY and IDLE are the
 * partial phases: they owe the server something, by a deadline. IDLE comes before HEAD and HEAD
 * before BODY in the order of eviction.
 */
enum phase {
    PHASE_IDLE,   /* kept alive after a response; owes the next head */
    PHASE_HEAD,   /* new; owes its first head */
    PHASE_BODY,   /* owes the body its head declared */
    PHASE_ANSWER, /* a response under way */
    PHASE_STREAM, /* an event stream: holds one of API_SERVER_STREAM_LIMIT */
};

/*
 * One connection, from libmicrohttpd's STARTED notification to its CLOSED one: its phase, the
 * deadline by which it must have delivered what it owes, and, while answering, how its socket's
 * send queue drains. libmicrohttpd calls CLOSED before it closes the socket, and an entry leaves
 * the list under watch_lock in that call; the server cuts a connection (shutdown(2)) or looks at
 * its socket only under that lock, so it never touches a descriptor libmicrohttpd has closed
 * and perhaps reused. The socket's identity (device, inode) is checked as well before a cut.
 */
struct watch {
    int fd;
    dev_t dev;
    ino_t ino;
    struct MHD_Connection *conn; /* libmicrohttpd's, valid until CLOSED */
    enum phase phase;            /* guarded by watch_lock */
    bool cut;                    /* guarded by watch_lock: shut down, closing */
    int64_t since_ms;            /* guarded by watch_lock: when the phase began */
    int64_t deadline_ms;         /* guarded by watch_lock: CLOCK_MONOTONIC, 0: none */
    int64_t progress_ms;         /* guarded by watch_lock: answering: the queue last drained */
    int outq;                    /* guarded by watch_lock: answering: the queue last seen */
    struct watch *prev, *next;   /* guarded by watch_lock */
};

/* Connections cut, by reason, not yet told in the log. */
struct cut_counts {
    unsigned deadline; /* a head or a body not sent in time */
    unsigned stalled;  /* a response not read */
    unsigned evicted;  /* room made for a new connection */
};

struct api_server {
    struct MHD_Daemon *daemon;
    struct core_registry *registry;            /* borrowed */
    const struct core_service_table *services; /* borrowed; may be NULL */
    struct api_events *events;                 /* the event streams; NULL without a bus */
    struct fleet_view *view;                   /* borrowed; NULL without --fleet-view */
    struct fleet_bridge *fleet;                /* borrowed; NULL without --amqp */
    struct api_guard *guard;
    struct api_priority *priority; /* libmicrohttpd's thread's scheduling */
    size_t body_max;
    uint16_t port;
    struct timespec started; /* CLOCK_MONOTONIC */
    char *unix_path;         /* the Unix socket file to remove at stop, or NULL */
    dev_t unix_dev;          /* its identity, so that only our own file is removed */
    ino_t unix_ino;

    pthread_mutex_t watch_lock;
    pthread_cond_t watch_wake; /* the deadline thread sleeps on it; CLOCK_MONOTONIC */
    struct watch *watches;     /* guarded by watch_lock: every open connection, newest first */
    int64_t watch_next_ms;     /* guarded by watch_lock: when the thread wakes next, or 0 */
    bool watch_stopping;       /* guarded by watch_lock */
    struct cut_counts cuts;    /* guarded by watch_lock */
    pthread_t watch_thread;
    bool has_watch_thread;
    int64_t cut_log_next_ms; /* the deadline thread's own */

    /* Changes of the listener set run on the change thread, not on libmicrohttpd's: they bind,
     * join threads and write the state to disk (fsync), any of which may take long, and the API
     * must go on answering meanwhile. A change's connection is suspended until it is done. */
    pthread_mutex_t changes_lock;
    pthread_cond_t changes_wake;  /* CLOCK_MONOTONIC */
    struct request *changes_head; /* guarded by changes_lock: waiting, oldest first */
    struct request *changes_tail; /* guarded by changes_lock */
    bool changes_stopping;        /* guarded by changes_lock */
    pthread_t changes_thread;
    bool has_changes_thread;

    /* The uploads' file work (api/upload.h); NULL once stopped. */
    struct api_uploads *uploads;
    /* The downloads' file reads (api/download.h). */
    struct api_downloads *downloads;
    struct api_tickets *tickets; /* the download tickets (api/ticket.h) */

    /* libmicrohttpd's warnings (a malformed request, a failed TLS handshake) are the peer's
     * doing: at most API_LOG_PER_MINUTE are written a minute, the rest counted. */
    pthread_mutex_t log_lock;
    int64_t log_window_ms; /* guarded by log_lock: when the minute being counted began */
    unsigned log_lines;    /* guarded by log_lock: written in it */
    unsigned log_held;     /* guarded by log_lock: held back in it */
};

/* One request's state, in libmicrohttpd's *req_cls from its first call to its completion. */
struct request {
    char *target; /* the request target as received (percent-encoded), then its path; or NULL */
    bool started; /* the access handler has seen the request's head */
    struct api_match match;
    char *id;            /* the {id} segment decoded, or NULL */
    char *name;          /* the {name} segment decoded, or NULL */
    char *n;             /* the {n} segment decoded, or NULL */
    char *if_match;      /* every If-Match header as one list, or NULL (none sent) */
    char *if_none_match; /* every If-None-Match header as one list, or NULL (none sent) */
    bool decided;        /* reply is final before the body is read (403, 404, 405, 413, 415) */
    bool refused;        /* the guard refused it: answered at once, the body never read */
    bool at_once;        /* its framing is refused: answered at once, the connection closed */
    enum api_guard_verdict verdict;
    struct api_reply reply;
    struct core_buf body; /* the body read so far (routes that take one) */
    size_t seen;          /* body bytes received, kept or not */
    /* A PUT of a file (API_BODY_OCTETS): the upload, its declared length, and whether a step
     * of it is with a worker (the connection suspended). */
    struct api_upload *up;
    uint64_t declared;
    bool up_waiting;
    /* A change handed to the change thread: its connection, suspended meanwhile, and its
     * path; done once its reply is ready. Guarded by the server's changes_lock. */
    struct MHD_Connection *conn;
    const char *url;
    struct request *next;
    bool queued;
    bool done;
    /* A file's GET handed to the download workers (api/download.h), which run its handler (the
     * file's open) while the connection is suspended. */
    struct api_download_job open_job;
    struct api_server *server;
    const char *open_url;
    bool opening;
};

static void request_free(struct request *q)
{
    if (!q)
        return;
    api_reply_fini(&q->reply);
    free(q->target);
    free(q->id);
    free(q->name);
    free(q->n);
    free(q->if_match);
    free(q->if_none_match);
    core_buf_fini(&q->body);
    api_upload_release(NULL, q->up);
    free(q);
}

/* A request's state, with a copy of its target as received (NULL: none is known). */
static struct request *request_new(const char *target)
{
    struct request *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    api_reply_init(&q->reply);
    if (target) {
        q->target = strdup(target);
        if (!q->target) {
            request_free(q);
            return NULL;
        }
    }
    return q;
}

/*
 * libmicrohttpd's URI log callback: the request target before it is decoded, which the routes
 * are matched on. What it returns becomes the request's *req_cls; NULL (out of memory) leaves
 * the access handler to make one without the target.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    return request_new(uri ? uri : "");
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct api_server *s = cls;
    unsigned held = 0;
    bool write;
    char line[512];
    int64_t now;
    size_t n;

    (void)vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* A client that went away (an event stream's tab closed, a download cancelled, a
     * connection cut by its deadline, by its stall or to make room) is news only when
     * debugging: the cuts are told once a minute. */
    if (strncmp(line, "Failed to send", 14) == 0 ||
        strncmp(line, "Connection socket is closed", 27) == 0 ||
        strncmp(line, "Connection was closed by remote side", 36) == 0) {
        core_log_debug("api: libmicrohttpd: %s", line);
        return;
    }
    now = core_now_ms();
    pthread_mutex_lock(&s->log_lock);
    if (now - s->log_window_ms >= 60000) {
        held = s->log_held;
        s->log_window_ms = now;
        s->log_lines = 0;
        s->log_held = 0;
    }
    write = s->log_lines < API_LOG_PER_MINUTE;
    if (write)
        s->log_lines++;
    else
        s->log_held++;
    pthread_mutex_unlock(&s->log_lock);
    if (held)
        core_log_warn("api: libmicrohttpd: %u more warnings in the last minute not shown", held);
    if (write)
        core_log_warn("api: libmicrohttpd: %s", line);
    else
        core_log_debug("api: libmicrohttpd: %s", line);
}

static uint64_t uptime_seconds(const struct api_server *s)
{
    struct timespec now;

    if (clock_gettime(CLOCK_MONOTONIC, &now) < 0 || now.tv_sec < s->started.tv_sec)
        return 0;
    return (uint64_t)(now.tv_sec - s->started.tv_sec);
}

/* ---- admission: phases, deadlines, shares ---- */

static bool phase_is_partial(enum phase p)
{
    return p == PHASE_IDLE || p == PHASE_HEAD || p == PHASE_BODY;
}

/* The watch of connection c, or NULL (none could be allocated). libmicrohttpd's thread. */
static struct watch *watch_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info ? info->socket_context : NULL;
}

/* Puts w in phase p, with seconds from now to deliver what it owes (0: no deadline). Called
 * with watch_lock held. */
static void watch_enter_locked(struct api_server *s, struct watch *w, enum phase p, int seconds)
{
    int64_t now = core_now_ms(), look;

    w->phase = p;
    w->since_ms = now;
    w->deadline_ms = seconds > 0 ? now + (int64_t)seconds * 1000 : 0;
    w->progress_ms = now;
    w->outq = -1;
    /* The thread wakes for an earlier deadline, and to watch a response drain. */
    look = phase_is_partial(p) ? w->deadline_ms : now + STALL_POLL_MS;
    if (look && (s->watch_next_ms == 0 || look < s->watch_next_ms))
        pthread_cond_signal(&s->watch_wake);
}

/* watch_enter_locked() under the lock; a response stays a stream when it is one. w may be
 * NULL. libmicrohttpd's thread. */
static void watch_enter(struct api_server *s, struct watch *w, enum phase p, int seconds)
{
    if (!w)
        return;
    pthread_mutex_lock(&s->watch_lock);
    if (!(p == PHASE_ANSWER && w->phase == PHASE_STREAM))
        watch_enter_locked(s, w, p, seconds);
    pthread_mutex_unlock(&s->watch_lock);
}

/* Cuts w's connection: libmicrohttpd sees the end of it and closes it. Called with watch_lock
 * held. Returns whether it did. */
static bool watch_cut(struct watch *w)
{
    struct stat st;

    w->deadline_ms = 0;
    if (w->cut)
        return false;
    w->cut = true;
    if (fstat(w->fd, &st) < 0 || st.st_dev != w->dev || st.st_ino != w->ino)
        return false;
    return shutdown(w->fd, SHUT_RDWR) == 0;
}

/* Bytes w's socket holds that its peer has not taken (not acknowledged on TCP, not read on a
 * Unix socket); 0 when that cannot be told. Called with watch_lock held. */
static int watch_outq(const struct watch *w)
{
    int n = 0;

    if (ioctl(w->fd, SIOCOUTQ, &n) < 0)
        return 0;
    return n;
}

/* API_SERVER_CONNECTION_LIMIT, or less: what the descriptor reserve keeps for the API. */
static unsigned connection_limit(void)
{
    unsigned budget = core_fdbudget_api_conns();

    return budget < API_SERVER_CONNECTION_LIMIT ? budget : API_SERVER_CONNECTION_LIMIT;
}

/*
 * Makes room for a connection that just started, when the partial ones are over their share or
 * all of them near the limit: cuts the oldest partial one (idle first, then head, then body)
 * or, near the limit with none partial, the response that has waited longest on its client.
 * Event streams are left to the stall check (a suspended one is ended by the deadline thread).
 * Called with watch_lock held, on libmicrohttpd's thread; only shutdown(2) is called.
 */
static void admit_locked(struct api_server *s)
{
    struct watch *oldest[PHASE_BODY + 1] = {0}, *stalled = NULL;
    unsigned partial = 0, total = 0;
    bool over_total;

    for (struct watch *w = s->watches; w; w = w->next) {
        if (w->cut)
            continue;
        total++;
        if (phase_is_partial(w->phase)) {
            partial++;
            /* The list runs newest first: the last one seen is the oldest. */
            if (!oldest[w->phase] || w->since_ms <= oldest[w->phase]->since_ms)
                oldest[w->phase] = w;
        }
    }
    over_total = total + API_SERVER_RESERVE > connection_limit();
    if (partial <= API_SERVER_PARTIAL_LIMIT && !over_total)
        return;
    for (int p = PHASE_IDLE; p <= PHASE_BODY; p++) {
        /* Never the connection that just came: it is the newest. */
        if (oldest[p] && oldest[p] != s->watches) {
            s->cuts.evicted += watch_cut(oldest[p]);
            return;
        }
    }
    if (!over_total)
        return;
    for (struct watch *w = s->watches; w; w = w->next)
        if (!w->cut && w->phase == PHASE_ANSWER && watch_outq(w) > 0 &&
            (!stalled || w->progress_ms <= stalled->progress_ms))
            stalled = w;
    if (stalled)
        s->cuts.evicted += watch_cut(stalled);
}

/*
 * Takes one of the event streams for w's connection: true, or false when all of
 * API_SERVER_STREAM_LIMIT are taken (or w is NULL: the stream could not be counted). Counted
 * under watch_lock over the open connections, so the count is exact. libmicrohttpd's thread.
 */
static bool stream_admit(struct api_server *s, struct watch *w)
{
    unsigned streams = 0;

    if (!w)
        return false;
    pthread_mutex_lock(&s->watch_lock);
    for (struct watch *x = s->watches; x; x = x->next)
        streams += x->phase == PHASE_STREAM;
    if (streams < API_SERVER_STREAM_LIMIT)
        watch_enter_locked(s, w, PHASE_STREAM, 0);
    pthread_mutex_unlock(&s->watch_lock);
    return streams < API_SERVER_STREAM_LIMIT;
}

/* libmicrohttpd's connection notifications: the watch list follows the open connections. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct api_server *s = cls;
    struct watch *w = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct stat st;

        if (!info || fstat(info->connect_fd, &st) < 0)
            return;
        w = calloc(1, sizeof(*w));
        if (!w) {
            core_log_warn("api: out of memory: a connection goes without a deadline");
            return;
        }
        w->fd = info->connect_fd;
        w->dev = st.st_dev;
        w->ino = st.st_ino;
        w->conn = c;
        pthread_mutex_lock(&s->watch_lock);
        w->next = s->watches;
        if (s->watches)
            s->watches->prev = w;
        s->watches = w;
        watch_enter_locked(s, w, PHASE_HEAD, API_SERVER_HEAD_TIMEOUT_S);
        admit_locked(s);
        pthread_mutex_unlock(&s->watch_lock);
        *socket_context = w;
        return;
    }
    if (!w)
        return;
    pthread_mutex_lock(&s->watch_lock);
    if (w->prev)
        w->prev->next = w->next;
    else
        s->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&s->watch_lock);
    free(w);
    *socket_context = NULL;
}

/*
 * One look at w, at now: cuts it when its deadline is over, or when it answers and its socket's
 * queue has not drained for API_SERVER_STALL_S. Returns when w wants to be looked at next (0:
 * never, until it changes phase). Called with watch_lock held.
 */
static int64_t watch_check(struct api_server *s, struct watch *w, int64_t now)
{
    int q;

    if (w->cut)
        return 0;
    if (phase_is_partial(w->phase)) {
        if (!w->deadline_ms)
            return 0;
        if (w->deadline_ms > now)
            return w->deadline_ms;
        s->cuts.deadline += watch_cut(w);
        return 0;
    }
    /* A queue that is empty, or shorter than at the last look, is a client that reads. */
    q = watch_outq(w);
    if (q == 0 || (w->outq >= 0 && q < w->outq))
        w->progress_ms = now;
    w->outq = q;
    if (now - w->progress_ms < (int64_t)API_SERVER_STALL_S * 1000)
        return now + STALL_POLL_MS;
    s->cuts.stalled += watch_cut(w);
    return 0;
}

/* Tells the cuts of the last minute, at most once a minute unless forced (at the end).
 * Called with watch_lock held; lets go of it to log. Returns whether it did (the list may have
 * changed meanwhile). */
static bool cuts_log(struct api_server *s, int64_t now, bool force)
{
    struct cut_counts n = s->cuts;

    if ((n.deadline == 0 && n.stalled == 0 && n.evicted == 0) ||
        (!force && now < s->cut_log_next_ms))
        return false;
    s->cuts = (struct cut_counts){0};
    s->cut_log_next_ms = now + CUT_LOG_INTERVAL_MS;
    pthread_mutex_unlock(&s->watch_lock);
    if (n.deadline)
        core_log_warn("api: closed %u connection(s) that did not send a complete request in "
                      "time (slow or stalled clients)",
                      n.deadline);
    if (n.stalled)
        core_log_warn("api: closed %u connection(s) whose client read nothing of the response "
                      "for %d s",
                      n.stalled, API_SERVER_STALL_S);
    if (n.evicted)
        core_log_warn("api: closed %u idle or unfinished connection(s) to make room for new "
                      "ones (over %d partial connections)",
                      n.evicted, API_SERVER_PARTIAL_LIMIT);
    pthread_mutex_lock(&s->watch_lock);
    return true;
}

/*
 * The deadline thread: sleeps until the earliest deadline (or the next look at a response),
 * cuts what is overdue or stalled. A stalled event stream is also told to end: one suspended
 * waiting for events would not see its socket shut down.
 */
static void *watch_main(void *arg)
{
    struct api_server *s = arg;

    pthread_mutex_lock(&s->watch_lock);
    while (!s->watch_stopping) {
        struct MHD_Connection *ended[CUT_BATCH];
        int64_t now = core_now_ms(), next = 0;
        size_t n_ended = 0;

        for (struct watch *w = s->watches; w && n_ended < CUT_BATCH; w = w->next) {
            bool was_cut = w->cut;
            int64_t at = watch_check(s, w, now);

            if (!was_cut && w->cut && w->phase == PHASE_STREAM)
                ended[n_ended++] = w->conn;
            if (at && (next == 0 || at < next))
                next = at;
        }
        if (n_ended > 0) {
            pthread_mutex_unlock(&s->watch_lock);
            for (size_t i = 0; i < n_ended; i++)
                api_events_cut(s->events, ended[i]);
            pthread_mutex_lock(&s->watch_lock);
            continue; /* the list may have changed meanwhile */
        }
        if (cuts_log(s, now, false))
            continue;
        /* Cuts not yet told are told when the minute is over, even if no other comes. */
        if ((s->cuts.deadline || s->cuts.stalled || s->cuts.evicted) &&
            (next == 0 || s->cut_log_next_ms < next))
            next = s->cut_log_next_ms;
        s->watch_next_ms = next;
        if (next == 0) {
            pthread_cond_wait(&s->watch_wake, &s->watch_lock);
        } else {
            struct timespec deadline = {.tv_sec = (time_t)(next / 1000),
                                        .tv_nsec = (long)(next % 1000) * 1000000};

            (void)pthread_cond_timedwait(&s->watch_wake, &s->watch_lock, &deadline);
        }
    }
    (void)cuts_log(s, core_now_ms(), true);
    pthread_mutex_unlock(&s->watch_lock);
    return NULL;
}

/* ---- requests ---- */

/* Routes that answer without a token: health, and the dashboard's files (which hold no secret;
 * serving them is what lets the page ask for the token). */
static bool route_is_public(const struct api_route *route)
{
    return route->handler == api_handle_health || route->handler == api_handle_asset;
}

/* Whether the guard lets the request through; when not, q is refused with the answer. */
static bool request_guard(struct api_server *s, struct request *q, struct MHD_Connection *conn,
                          const char *method, bool is_public)
{
    char detail[256];
    const struct api_guard_request req = {
        .method = method,
        .is_public = is_public,
        .host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
        .authorization =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"),
        .sec_fetch_site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site"),
        .sec_fetch_mode = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Mode"),
        .sec_fetch_dest = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Dest"),
    };
    enum api_guard_verdict v = api_guard_check(s->guard, &req, detail, sizeof(detail));

    if (v == API_GUARD_ALLOW)
        return true;
    api_reply_problem(&q->reply, api_guard_status(v), NULL, "%s", detail);
    q->decided = true;
    q->refused = true;
    q->verdict = v;
    return false;
}

/* A decoded copy of capture into *ret (NULL when the route has none). 0, or -ENOMEM. */
static int capture_copy(const struct api_segment *capture, char **ret)
{
    if (!capture->at)
        return 0;
    /* The target was refused earlier if it held an encoded NUL. */
    return api_segment_decode(capture->at, capture->len, ret) == -ENOMEM ? -ENOMEM : 0;
}

/*
 * Whether a file's GET carries a live download ticket for that file (api/ticket.h), which then
 * stands for the token; the ticket is used up.
 */
static bool ticket_admits(struct api_server *s, struct request *q, struct MHD_Connection *conn)
{
    const char *ticket = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ticket");
    const char *version_text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "version");
    char *id = NULL, *name = NULL;
    unsigned version;
    bool ok;

    if (!ticket || q->match.route->handler != api_handle_listener_file_get ||
        api_version_parse(version_text, &version) < 0)
        return false;
    if (capture_copy(&q->match.captures.id, &id) < 0 ||
        capture_copy(&q->match.captures.name, &name) < 0) {
        free(id);
        return false;
    }
    ok = id && name && api_ticket_redeem(s->tickets, ticket, id, name, version);
    free(id);
    free(name);
    return ok;
}

/*
 * The head of a PUT of a file: its length (411 without one), its digest (Repr-Digest or
 * Content-Digest, 400 when malformed or when they differ), then q->up for the upload. Sets
 * q->decided with q->reply on a refusal. Returns 0, or -ENOMEM.
 */
static int upload_prepare(struct api_server *s, struct request *q, struct MHD_Connection *conn,
                          const char *clen)
{
    static const char *const digests[] = {"Repr-Digest", "Content-Digest"};
    uint8_t sha[API_UPLOAD_SHA256_LEN], other[API_UPLOAD_SHA256_LEN];
    bool has_sha = false;
    char *end;

    (void)s;
    if (!clen || clen[strspn(clen, " \t")] < '0' || clen[strspn(clen, " \t")] > '9') {
        api_reply_problem(&q->reply, 411, NULL,
                          "an upload needs a Content-Length (its size); chunked bodies are not "
                          "taken");
        q->decided = true;
        return 0;
    }
    errno = 0;
    q->declared = strtoull(clen, &end, 10);
    if (errno == ERANGE || end[strspn(end, " \t")] != '\0') {
        api_reply_problem(&q->reply, 400, NULL, "Content-Length: not a number of bytes");
        q->decided = true;
        return 0;
    }
    for (size_t i = 0; i < sizeof(digests) / sizeof(digests[0]); i++) {
        const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, digests[i]);
        int r = v ? api_digest_parse(v, has_sha ? other : sha) : 0;

        if (r < 0 || (r > 0 && has_sha && memcmp(sha, other, sizeof(sha)) != 0)) {
            api_reply_problem(&q->reply, 400, digests[i],
                              r < 0 ? "%s: the sha-256 member must be 32 bytes of base64 between "
                                      "colons (RFC 9530)"
                                    : "%s: not the digest Repr-Digest gives",
                              digests[i]);
            q->decided = true;
            return 0;
        }
        has_sha = has_sha || r > 0;
    }
    if (capture_copy(&q->match.captures.id, &q->id) < 0 ||
        capture_copy(&q->match.captures.name, &q->name) < 0)
        return -ENOMEM;
    q->up = api_upload_new(s->registry, q->id, q->name, q->declared, has_sha ? sha : NULL);
    return q->up ? 0 : -ENOMEM;
}

/*
 * What can be said from the request line and headers alone: the guard (401, 403), the route
 * (404, 405), a declared body over the limit (413), a body of the wrong type (415). Sets
 * q->decided with q->reply on a refusal. Returns 0, or -ENOMEM.
 */
static int request_prepare(struct api_server *s, struct request *q, struct MHD_Connection *conn,
                           const char *method, const char *url)
{
    const char *ctype, *clen, *path = url;
    char allow[API_ALLOW_MAX];
    int r;

    r = api_strict_check(conn, q->target, &q->reply);
    if (r < 0) {
        q->decided = true;
        q->at_once = r == -EPROTO;
        return 0;
    }
    /* The routes are matched on the path as received, its segments decoded one by one. */
    if (q->target) {
        q->target[strcspn(q->target, "?")] = '\0';
        path = q->target;
    }
    r = api_route_match(method, path, &q->match);
    /* Before the route is told: without the token, an unknown path is a 401 like a known one. */
    if (!request_guard(s, q, conn, method,
                       r == 0 && (route_is_public(q->match.route) || ticket_admits(s, q, conn))))
        return 0;
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
    if (q->match.route->body == API_BODY_OCTETS)
        return upload_prepare(s, q, conn, clen);
    r = api_body_length_check(clen, s->body_max);
    if (r == -EFBIG) {
        api_reply_problem(&q->reply, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                          "the request body is %s bytes; the limit is %zu", clen, s->body_max);
        q->decided = true;
        return 0;
    }

    /* POST, PUT and PATCH carry a JSON type even without a body: a page of another site cannot
     * send one without asking first (CORS preflight), which this API never grants. */
    ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!api_body_type_is_accepted(q->match.route->body, ctype) ||
        !api_guard_media_type_ok(method, ctype)) {
        bool patch = q->match.route->body == API_BODY_MERGE_PATCH;

        api_reply_problem(&q->reply, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NULL,
                          "%s needs Content-Type application/json%s, even without a body; got %s",
                          method, patch ? " or application/merge-patch+json" : "",
                          ctype ? ctype : "no Content-Type");
        q->decided = true;
        return 0;
    }

    if (capture_copy(&q->match.captures.id, &q->id) < 0 ||
        capture_copy(&q->match.captures.name, &q->name) < 0 ||
        capture_copy(&q->match.captures.n, &q->n) < 0 ||
        api_strict_header_list(conn, MHD_HTTP_HEADER_IF_MATCH, &q->if_match) < 0 ||
        api_strict_header_list(conn, MHD_HTTP_HEADER_IF_NONE_MATCH, &q->if_none_match) < 0)
        return -ENOMEM;
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
    /* A refused upload's rest is dropped: its declared length bounds it. */
    if (q->decided)
        return q->up || q->seen <= discard_max;
    if (q->up)
        return true;
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
        .services = s->services,
        .events = s->events,
        .view = s->view,
        .fleet = s->fleet,
        .path = url,
        .id = q->id,
        .name = q->name,
        .n = q->n,
        .if_none_match = q->if_none_match,
        .if_match = q->if_match,
        .prefer = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Prefer"),
        .last_event_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID"),
        .uptime_seconds = uptime_seconds(s),
        .query = query_value,
        .query_ctx = conn,
        .upload = q->up ? api_upload_outcome(q->up) : NULL,
        .tickets = s->tickets,
        .priority = s->priority,
    };
    json_t *body = NULL;

    if (q->match.route->body == API_BODY_JSON || q->match.route->body == API_BODY_MERGE_PATCH) {
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

static enum MHD_Result send_reply(struct api_server *s, struct request *q,
                                  struct MHD_Connection *conn, const char *method, const char *url)
{
    /* From here the connection owes nothing until the response is out. */
    watch_enter(s, watch_of(conn), PHASE_ANSWER, 0);
    if (q->reply.status >= 500)
        core_log_error("api: %s %s: %u %s", method, url, q->reply.status,
                       q->reply.is_problem ? q->reply.detail : "");
    else
        core_log_debug("api: %s %s: %u", method, url, q->reply.status);
    /* A 401 carries the challenge RFC 6750 asks for ('error="invalid_token"' when a token was
     * sent and is not the right one). */
    if (q->refused && q->reply.status == MHD_HTTP_UNAUTHORIZED) {
        q->reply.authenticate = q->verdict == API_GUARD_BAD_TOKEN
                                    ? "Bearer realm=\"sockserv\", error=\"invalid_token\""
                                    : "Bearer realm=\"sockserv\"";
        q->reply.no_store = true;
    }
    q->reply.downloads = s->downloads;
    return api_reply_send(conn, &q->reply);
}

/* A 503 for an event stream over API_SERVER_STREAM_LIMIT, with Retry-After. */
static enum MHD_Result send_busy(struct api_server *s, struct request *q,
                                 struct MHD_Connection *conn, const char *method, const char *url)
{
    watch_enter(s, watch_of(conn), PHASE_ANSWER, 0);
    core_log_debug("api: %s %s: 503, %d event streams open", method, url, API_SERVER_STREAM_LIMIT);
    api_reply_problem(&q->reply, MHD_HTTP_SERVICE_UNAVAILABLE, NULL,
                      "%d event streams are open, the most the server keeps",
                      API_SERVER_STREAM_LIMIT);
    q->reply.retry_after = API_SERVER_STREAM_RETRY_S;
    q->reply.no_store = true;
    return api_reply_send(conn, &q->reply);
}

/* ---- a download's open, on the download workers ---- */

/* The job of a file's GET: its handler, which opens the file (the disk), on a worker. */
static void open_run(void *arg)
{
    struct request *q = arg;

    request_dispatch(q->server, q, q->open_job.conn, q->open_url);
}

/*
 * Hands q (a file's GET or HEAD) to the download workers, its connection suspended until its
 * handler ran there. When they stop, the handler runs here.
 */
static enum MHD_Result open_hand(struct api_server *s, struct request *q,
                                 struct MHD_Connection *conn, const char *method, const char *url)
{
    watch_enter(s, watch_of(conn), PHASE_ANSWER, 0);
    q->server = s;
    q->open_url = url;
    q->open_job = (struct api_download_job){.fn = open_run, .arg = q, .conn = conn};
    /* Suspended first: a worker may resume it as soon as it is handed. */
    MHD_suspend_connection(conn);
    if (api_downloads_run(s->downloads, &q->open_job) == 0) {
        q->opening = true;
        return MHD_YES;
    }
    MHD_resume_connection(conn);
    request_dispatch(s, q, conn, url);
    return send_reply(s, q, conn, method, url);
}

/* ---- the change thread ---- */

/* Whether the route changes the listener set (POST, PUT, PATCH, DELETE): the change thread's. */
static bool route_changes(const struct api_route *route)
{
    if (route->body == API_BODY_OCTETS)
        return false; /* an upload: its own workers (api/upload.h) */
    if (route->handler == api_handle_listener_file_ticket)
        return false; /* a read of the file set, as its GET */
    return route->method == API_METHOD_POST || route->method == API_METHOD_PUT ||
           route->method == API_METHOD_PATCH || route->method == API_METHOD_DELETE;
}

/*
 * Hands q, whose connection conn the caller (libmicrohttpd's thread, in the access handler)
 * has just suspended, to the change thread. -ESHUTDOWN when the server is stopping: then
 * nothing is queued.
 */
static int changes_enqueue(struct api_server *s, struct request *q, struct MHD_Connection *conn,
                           const char *url)
{
    int r = 0;

    pthread_mutex_lock(&s->changes_lock);
    if (s->changes_stopping || !s->has_changes_thread) {
        r = -ESHUTDOWN;
    } else {
        q->conn = conn;
        q->url = url;
        q->next = NULL;
        q->queued = true;
        if (s->changes_tail)
            s->changes_tail->next = q;
        else
            s->changes_head = q;
        s->changes_tail = q;
        pthread_cond_signal(&s->changes_wake);
    }
    pthread_mutex_unlock(&s->changes_lock);
    return r;
}

/* The answer to a change that came too late: the server stops. */
static void reply_stopping(struct request *q)
{
    api_reply_problem(&q->reply, MHD_HTTP_SERVICE_UNAVAILABLE, NULL,
                      "the daemon is stopping; the change was not made");
}

/* Whether q's change is done (its reply ready). */
static bool changes_done(struct api_server *s, const struct request *q)
{
    bool done;

    pthread_mutex_lock(&s->changes_lock);
    done = q->done;
    pthread_mutex_unlock(&s->changes_lock);
    return done;
}

/* When the change thread, idle, reaps what the last change left draining: once its runners
 * have had the CPU to end, and again later for the slower ones (the ticker's once a second
 * catches the rest). */
static const int64_t reap_after_ms[] = {10, 100};
#define REAP_STEPS (sizeof(reap_after_ms) / sizeof(reap_after_ms[0]))

/*
 * The change thread: runs each queued change in turn (the registry serialises them anyway),
 * then resumes its connection, whose access handler sends the reply. Once the server stops,
 * what is still queued is answered 503 without being run.
 *
 * The runners a change replaced end after its answer; the thread tells those the change muted
 * to drain (10 ms after it) and reaps them (joins, closes their descriptors) while no change is
 * waiting, so that neither the change nor the next one does that work before answering.
 */
static void *changes_main(void *arg)
{
    struct api_server *s = arg;
    size_t reaps = 0; /* reap_after_ms[] steps left */
    int64_t reap_at = 0;

    pthread_mutex_lock(&s->changes_lock);
    for (;;) {
        struct request *q;
        bool stopping;

        while (!s->changes_head && !s->changes_stopping) {
            struct timespec at = {.tv_sec = (time_t)(reap_at / 1000),
                                  .tv_nsec = (long)(reap_at % 1000) * 1000000};

            if (reaps == 0) {
                pthread_cond_wait(&s->changes_wake, &s->changes_lock);
            } else if (pthread_cond_timedwait(&s->changes_wake, &s->changes_lock, &at) ==
                       ETIMEDOUT) {
                pthread_mutex_unlock(&s->changes_lock);
                core_registry_reap_drained(s->registry);
                pthread_mutex_lock(&s->changes_lock);
                reaps--;
                if (reaps > 0)
                    reap_at = core_now_ms() + reap_after_ms[REAP_STEPS - reaps];
            }
        }
        q = s->changes_head;
        if (!q)
            break;
        s->changes_head = q->next;
        if (!s->changes_head)
            s->changes_tail = NULL;
        stopping = s->changes_stopping;
        pthread_mutex_unlock(&s->changes_lock);
        if (stopping)
            reply_stopping(q);
        else
            request_dispatch(s, q, q->conn, q->url);
        reaps = REAP_STEPS;
        reap_at = core_now_ms() + reap_after_ms[0];
        pthread_mutex_lock(&s->changes_lock);
        q->done = true;
        /* Under the lock: libmicrohttpd's thread reads done once resumed. */
        MHD_resume_connection(q->conn);
    }
    pthread_mutex_unlock(&s->changes_lock);
    return NULL;
}

/* Stops the change thread once the change it runs is done; the queued ones are answered 503. */
static void changes_stop(struct api_server *s)
{
    if (!s->has_changes_thread)
        return;
    pthread_mutex_lock(&s->changes_lock);
    s->changes_stopping = true;
    pthread_cond_signal(&s->changes_wake);
    pthread_mutex_unlock(&s->changes_lock);
    pthread_join(s->changes_thread, NULL);
    s->has_changes_thread = false;
}

/*
 * Hands the next step of q's upload to a worker (its beginning, or the body bytes gathered),
 * the connection suspended until the worker is done. When it cannot, q is refused: answered
 * now at the beginning, after the body otherwise.
 */
static enum MHD_Result upload_step(struct api_server *s, struct request *q,
                                   struct MHD_Connection *conn, const char *method, const char *url,
                                   bool begin)
{
    int r;

    /* Nothing is owed by the client meanwhile. */
    watch_enter(s, watch_of(conn), PHASE_ANSWER, 0);
    MHD_suspend_connection(conn);
    r = api_upload_step(s->uploads, q->up, conn, begin);
    if (r == 0) {
        q->up_waiting = true;
        return MHD_YES;
    }
    MHD_resume_connection(conn);
    if (r == -ESHUTDOWN)
        api_reply_problem(&q->reply, MHD_HTTP_SERVICE_UNAVAILABLE, NULL,
                          "the daemon is stopping; nothing was stored");
    else
        api_reply_error(&q->reply, r, NULL);
    q->decided = true;
    watch_enter(s, watch_of(conn), PHASE_BODY, API_SERVER_BODY_TIMEOUT_S);
    if (begin)
        return send_reply(s, q, conn, method, url);
    return MHD_YES;
}

/* The step of q's upload a worker did (its connection resumed): a refusal becomes q's
 * answer; otherwise the client owes the rest of the body, by a new deadline. */
static void upload_stepped(struct api_server *s, struct request *q, struct MHD_Connection *conn,
                           const char *url)
{
    if (!api_upload_step_done(s->uploads, q->up))
        return;
    q->up_waiting = false;
    watch_enter(s, watch_of(conn), PHASE_BODY, API_SERVER_BODY_TIMEOUT_S);
    if (api_upload_outcome(q->up)->code < 0) {
        request_dispatch(s, q, conn, url);
        q->decided = true;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct api_server *s = cls;
    struct request *q = *req_cls;

    (void)version;
    api_priority_account(s->priority);
    if (!q) {
        q = request_new(NULL);
        if (!q)
            return MHD_NO;
        *req_cls = q;
    }
    if (!q->started) {
        q->started = true;
        if (request_prepare(s, q, conn, method, url) < 0) {
            api_reply_error(&q->reply, -ENOMEM, NULL);
            q->decided = true;
        }
        /*
         * A request the guard refused, whose framing is refused, or whose declared body is over
         * the limit, is answered at once, without reading the body (a client that sent "Expect:
         * 100-continue" never sends it). Other refusals wait for the body to be read, so that the
         * answer is not lost to a reset.
         */
        if (q->refused || q->at_once ||
            (q->decided &&
             api_body_length_check(
                 MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH),
                 s->body_max) == -EFBIG))
            return send_reply(s, q, conn, method, url);
        /* The head is in; the body, if any, is owed next. */
        watch_enter(s, watch_of(conn), PHASE_BODY, API_SERVER_BODY_TIMEOUT_S);
        if (q->up && !q->decided)
            return upload_step(s, q, conn, method, url, true);
        return MHD_YES;
    }
    if (q->up_waiting) {
        upload_stepped(s, q, conn, url);
        /* Refused at its beginning (still in the head's phase): answered at once when the body
         * is more than is worth reading through. */
        if (q->decided && q->seen == 0 && q->declared > s->body_max)
            return send_reply(s, q, conn, method, url);
    }
    if (*upload_data_size > 0) {
        bool keep;

        if (q->up && !q->decided) {
            size_t len = *upload_data_size;
            int r = api_upload_take(q->up, upload_data, len);

            *upload_data_size = 0;
            q->seen += len;
            /* Each piece is progress: the client owes the rest by a new deadline. */
            watch_enter(s, watch_of(conn), PHASE_BODY, API_SERVER_BODY_TIMEOUT_S);
            if (r == 0)
                return MHD_YES;
            if (r < 0) {
                api_reply_error(&q->reply, r, NULL);
                q->decided = true;
                return MHD_YES;
            }
            return upload_step(s, q, conn, method, url, false);
        }
        keep = request_take(s, q, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return keep ? MHD_YES : MHD_NO;
    }
    /* An upload's body still owed: this is the call after its beginning was done. */
    if (q->up && q->seen < q->declared)
        return MHD_YES;
    /* Resumed by the change thread: the reply is ready. */
    if (q->queued && changes_done(s, q))
        return send_reply(s, q, conn, method, url);
    /* Resumed by a download worker: the file is open, the reply ready. */
    if (q->opening) {
        if (!api_download_job_done(s->downloads, &q->open_job))
            return MHD_YES;
        return send_reply(s, q, conn, method, url);
    }
    if (!q->decided && q->match.route->handler == api_handle_events &&
        !stream_admit(s, watch_of(conn)))
        return send_busy(s, q, conn, method, url);
    if (!q->decided && route_changes(q->match.route)) {
        /* Suspended first: the change thread may resume it as soon as it is queued. Nothing is
         * owed by the client meanwhile. */
        watch_enter(s, watch_of(conn), PHASE_ANSWER, 0);
        MHD_suspend_connection(conn);
        if (changes_enqueue(s, q, conn, url) == 0)
            return MHD_YES;
        MHD_resume_connection(conn);
        reply_stopping(q);
        return send_reply(s, q, conn, method, url);
    }
    if (!q->decided && q->match.route->handler == api_handle_listener_file_get)
        return open_hand(s, q, conn, method, url);
    if (!q->decided)
        request_dispatch(s, q, conn, url);
    return send_reply(s, q, conn, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct api_server *s = cls;

    (void)toe;
    api_priority_account(s->priority);
    if (*req_cls) {
        struct request *q = *req_cls;

        api_upload_release(s->uploads, q->up);
        q->up = NULL;
    }
    request_free(*req_cls);
    *req_cls = NULL;
    /* A kept-alive connection owes the next request's head, idle time included; an event
     * stream gives its place back. */
    watch_enter(s, watch_of(conn), PHASE_IDLE, API_SERVER_HEAD_TIMEOUT_S);
}

/* ---- listening sockets ---- */

/* Removes the server's Unix socket file if it still is the one it created. */
static void unix_remove(struct api_server *s)
{
    struct stat st;

    if (!s->unix_path)
        return;
    if (lstat(s->unix_path, &st) == 0 && st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
        (void)unlink(s->unix_path);
    free(s->unix_path);
    s->unix_path = NULL;
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

/* Stops the deadline thread; the connections it watched are closed by MHD_stop_daemon(). */
static void watch_stop(struct api_server *s)
{
    if (!s->has_watch_thread)
        return;
    pthread_mutex_lock(&s->watch_lock);
    s->watch_stopping = true;
    pthread_cond_signal(&s->watch_wake);
    pthread_mutex_unlock(&s->watch_lock);
    pthread_join(s->watch_thread, NULL);
    s->has_watch_thread = false;
}

static void server_free(struct api_server *s)
{
    changes_stop(s);
    api_uploads_free(s->uploads);
    api_downloads_free(s->downloads);
    api_tickets_free(s->tickets);
    watch_stop(s);
    unix_remove(s);
    api_events_free(s->events);
    api_guard_free(s->guard);
    api_priority_free(s->priority);
    pthread_cond_destroy(&s->watch_wake);
    pthread_mutex_destroy(&s->watch_lock);
    pthread_mutex_destroy(&s->log_lock);
    pthread_cond_destroy(&s->changes_wake);
    pthread_mutex_destroy(&s->changes_lock);
    free(s);
}

/* Opens the listening socket opts asks for; fills what the guard needs to know of it. */
static int open_listener(struct api_server *s, const struct api_server_opts *opts,
                         struct sockaddr_storage *ret_ss, struct stat *ret_st, struct core_err *err)
{
    struct sockaddr_storage ss;
    bool replaced = false;
    socklen_t ss_len;
    int fd;

    if (opts->unix_path) {
        s->unix_path = strdup(opts->unix_path);
        if (!s->unix_path)
            return core_err_set(err, -ENOMEM, NULL, "out of memory");
        fd = core_net_unix_listen(opts->unix_path,
                                  opts->unix_mode ? opts->unix_mode : API_SERVER_UNIX_MODE,
                                  CORE_NET_NONBLOCK, LISTEN_BACKLOG, ret_st, &replaced, err);
        if (fd < 0) {
            free(s->unix_path);
            s->unix_path = NULL;
            return fd;
        }
        if (replaced)
            core_log_info("api: replaced the stale socket %s", opts->unix_path);
        s->unix_dev = ret_st->st_dev;
        s->unix_ino = ret_st->st_ino;
        /* The identity libmicrohttpd's copy is checked against is the socket's, not the
         * file's. */
        if (fstat(fd, ret_st) < 0) {
            int r = -errno;

            close(fd);
            return core_err_set(err, r, NULL, "fstat: %s", strerror(-r));
        }
        return fd;
    }

    if (core_addr_parse(opts->host, opts->port, &ss, &ss_len) < 0)
        return core_err_set(err, -EINVAL, "host", "%s: not a numeric IPv4 or IPv6 address",
                            opts->host);
    if (!core_addr_is_loopback((const struct sockaddr *)&ss) && !opts->token)
        return core_err_set(err, -EPERM, "host",
                            "%s is not a loopback address: the API listens on one only with a "
                            "token",
                            opts->host);
    /* A restarted daemon binds again while connections of the last one are in TIME_WAIT;
     * "::" is dual-stack. */
    fd = core_net_bind(&ss, ss_len, SOCK_STREAM, CORE_NET_NONBLOCK, LISTEN_BACKLOG, ret_ss, err);
    if (fd < 0)
        return fd;
    if (fstat(fd, ret_st) < 0) {
        int r = -errno;

        close(fd);
        return core_err_set(err, r, NULL, "fstat: %s", strerror(-r));
    }
    s->port = core_addr_port((const struct sockaddr *)ret_ss);
    return fd;
}

/* Whether thread tid of this process is called name. */
static bool thread_is_named(pid_t tid, const char *name)
{
    char path[64], comm[32];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, comm, sizeof(comm) - 1);
    close(fd);
    if (n <= 0)
        return false;
    comm[n] = '\0';
    comm[strcspn(comm, "\n")] = '\0';
    return strcmp(comm, name) == 0;
}

/* The id of the thread of this process called name, or 0. */
static pid_t thread_find(const char *name)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    pid_t found = 0;

    if (!dir)
        return 0;
    while (!found && (e = readdir(dir))) {
        pid_t tid = (pid_t)atoi(e->d_name);

        if (tid > 0 && thread_is_named(tid, name))
            found = tid;
    }
    closedir(dir);
    return found;
}

/*
 * Names libmicrohttpd's thread and gives it its scheduling (api/priority.h). libmicrohttpd does
 * not tell which thread is its own; it names it API_MHD_THREAD_NAME as the thread begins, which
 * the server waits for (until API_MHD_THREAD_WAIT_MS), every other thread of the daemon having
 * a name of its own. Not found: the thread keeps its name and the default scheduling, and
 * health says so.
 */
static void setup_api_thread(struct api_server *s)
{
    const struct timespec pause = {.tv_nsec = 1000000};
    int64_t deadline = core_now_ms() + API_MHD_THREAD_WAIT_MS;
    pid_t tid;
    int fd;

    while (!(tid = thread_find(API_MHD_THREAD_NAME)) && core_now_ms() < deadline)
        nanosleep(&pause, NULL);
    if (!tid) {
        core_log_warn("api: libmicrohttpd's thread was not found: it keeps its name and the "
                      "default scheduling");
        return;
    }
    {
        char path[64];

        snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)!write(fd, API_THREAD_NAME, strlen(API_THREAD_NAME));
            close(fd);
        }
    }
    api_priority_apply(s->priority, tid);
}

/*
 * libmicrohttpd's limit of connections from one IP address: none on a Unix socket (its peers
 * have no address; the file's mode is the gate) or on loopback (every local client, ctl and the
 * dashboard included, comes from the same address, so a per-address limit would let any local
 * process take all of it: the shares of api/server.h bound them instead).
 */
static unsigned per_ip_limit(const struct api_server_opts *opts, const struct sockaddr_storage *ss)
{
    if (opts->unix_path || core_addr_is_loopback((const struct sockaddr *)ss))
        return 0;
    return API_SERVER_PER_IP_LIMIT;
}

int api_server_start(const struct api_server_opts *opts, struct api_server **ret,
                     struct core_err *err)
{
    /* Event streams suspend their connection while they have nothing to send. */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    struct api_server *s;
    struct sockaddr_storage ss = {0};
    struct MHD_OptionItem tls_options[4] = {{MHD_OPTION_END, 0, NULL}};
    pthread_condattr_t attr;
    struct stat st;
    int fd, r;

    if (!opts || (!opts->host && !opts->unix_path) || !opts->registry || !ret) {
        (void)core_err_set(err, -EINVAL, NULL, "api: an address and a registry are required");
        return -EINVAL;
    }
    if (!opts->tls_cert != !opts->tls_key || (opts->tls_cert && opts->unix_path)) {
        (void)core_err_set(err, -EINVAL, NULL,
                           "api: HTTPS needs a certificate and a key, and a TCP address");
        return -EINVAL;
    }

    s = calloc(1, sizeof(*s));
    if (!s) {
        (void)core_err_set(err, -ENOMEM, NULL, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&s->watch_lock, NULL);
    pthread_mutex_init(&s->log_lock, NULL);
    pthread_mutex_init(&s->changes_lock, NULL);
    s->log_window_ms = core_now_ms();
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changes_wake, &attr);
    pthread_cond_init(&s->watch_wake, &attr);
    pthread_condattr_destroy(&attr);
    s->registry = opts->registry;
    s->services = opts->services;
    s->view = opts->view;
    s->fleet = opts->fleet;
    s->body_max = opts->body_max ? opts->body_max : BODY_MAX_DEFAULT;
    /* libmicrohttpd (GnuTLS) loads the certificate and key in MHD_start_daemon(); it keeps no
     * use for the text after. */
    if (opts->tls_cert) {
        flags |= MHD_USE_TLS;
        tls_options[0] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)opts->tls_cert};
        tls_options[1] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)opts->tls_key};
        tls_options[2] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)API_TLS_PRIORITIES};
    }
    if (clock_gettime(CLOCK_MONOTONIC, &s->started) < 0) {
        r = -errno;
        (void)core_err_set(err, r, NULL, "clock_gettime: %s", strerror(-r));
        goto out_free;
    }

    if (opts->events) {
        /* Each stream writes within the keep-alive interval, so that only a client that stops
         * reading is cut by the connection timeout. */
        unsigned keepalive = opts->keepalive_ms ? opts->keepalive_ms : API_EVENTS_KEEPALIVE_MS;

        if (keepalive > API_SERVER_IDLE_TIMEOUT_S * 1000 / 2)
            keepalive = API_SERVER_IDLE_TIMEOUT_S * 1000 / 2;
        r = api_events_new(opts->events, opts->registry, keepalive, &s->events);
        if (r < 0) {
            (void)core_err_set(err, r, NULL, "api: event streams: %s", strerror(-r));
            goto out_free;
        }
    }

    fd = open_listener(s, opts, &ss, &st, err);
    if (fd < 0) {
        r = fd;
        goto out_free;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    r = api_guard_new(
        &(struct api_guard_opts){
            .token = opts->token,
            .token_len = opts->token_len,
            .listen = opts->unix_path ? NULL : (const struct sockaddr *)&ss,
            .names = opts->allow_hosts,
            .n_names = opts->n_allow_hosts,
        },
        &s->guard, err);
    if (r < 0) {
        close(fd);
        goto out_free;
    }
    r = -pthread_create(&s->watch_thread, NULL, watch_main, s);
    if (r < 0) {
        (void)core_err_set(err, r, NULL, "api: deadline thread: %s", strerror(-r));
        close(fd);
        goto out_free;
    }
    s->has_watch_thread = true;
    core_thread_name(s->watch_thread, "ss-watch");
    r = -pthread_create(&s->changes_thread, NULL, changes_main, s);
    if (r < 0) {
        (void)core_err_set(err, r, NULL, "api: change thread: %s", strerror(-r));
        close(fd);
        goto out_free;
    }
    s->has_changes_thread = true;
    core_thread_name(s->changes_thread, "ss-changes");
    r = api_tickets_new(&s->tickets);
    if (r == 0)
        r = api_priority_new(opts->priority, &s->priority);
    if (r == 0)
        r = api_uploads_start(&s->uploads);
    if (r == 0)
        r = api_downloads_start(&s->downloads);
    if (r < 0) {
        (void)core_err_set(err, r, NULL, "api: file workers: %s", strerror(-r));
        close(fd);
        goto out_free;
    }

    /* The limits, explicit (see per_ip_limit()). On success the daemon owns fd and closes it
     * in MHD_stop_daemon(). */
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_CONNECTION_LIMIT, connection_limit(), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        per_ip_limit(opts, &ss), MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_SERVER_IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_SERVER_MEMORY_LIMIT, MHD_OPTION_ARRAY,
        tls_options, MHD_OPTION_END);
    if (!s->daemon) {
        if (fd_is(fd, &st))
            close(fd);
        r = -EIO;
        if (opts->unix_path)
            (void)core_err_set(err, r, NULL, "api: libmicrohttpd could not start on %s",
                               opts->unix_path);
        else
            (void)core_err_set(err, r, NULL, "api: libmicrohttpd could not start on %s port %u",
                               opts->host, (unsigned)s->port);
        goto out_free;
    }
    setup_api_thread(s);
    *ret = s;
    return 0;

out_free:
    server_free(s);
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
    /* Streams end first, and the change under way: libmicrohttpd must not be stopped with a
     * connection suspended. */
    api_events_shutdown(s->events);
    changes_stop(s);
    api_uploads_stop(s->uploads);
    api_downloads_stop(s->downloads);
    watch_stop(s);
    MHD_stop_daemon(s->daemon);
    server_free(s);
}
