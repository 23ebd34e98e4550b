#include "core/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/ratelimit.h"
#include "core/runner.h"

#define TCP_BACKLOG 511

/* A service instance shared by the current runner and draining ones. Only the changing
 * thread touches it. */
struct inst_ref {
    const struct core_service *svc;
    void *inst;
    unsigned refs;
};

/* A runner replaced by a live reconfiguration: it accepts no more and lets its established
 * connections end, until its deadline. */
struct draining {
    struct core_runner *runner;
    struct inst_ref *inst;
    int64_t deadline_ms;      /* CLOCK_MONOTONIC */
    struct timespec deadline; /* the same, CLOCK_REALTIME, for the status */
    char bound[CORE_ADDR_STRLEN];
    bool moved;                   /* its own socket, closed: its connections are told by addr */
    struct sockaddr_storage addr; /* moved: the address that socket was bound to */
    struct draining *next;
};

/* What the status shows of a draining runner (a copy, read outside the lock). */
struct drain_view {
    char bound[CORE_ADDR_STRLEN];
    bool moved;
    struct sockaddr_storage addr;
    struct timespec deadline;
};

enum pending_kind {
    PENDING_NONE,
    PENDING_LIVE,    /* a new runner on the same socket; the old one still accepts */
    PENDING_MOVE,    /* a new runner on a new socket; the old one still accepts on its own */
    PENDING_RESTART, /* stopped and started again with the new configuration */
};

/* A change between core_listener_prepare() and its commit or abort: what puts it back. */
struct pending {
    enum pending_kind kind;
    struct core_listener_cfg old_cfg;
    struct core_runner *old_runner; /* LIVE, MOVE: still running */
    struct inst_ref *old_inst;
    int old_lfd; /* MOVE */
    char old_bound[CORE_ADDR_STRLEN];
    struct sockaddr_storage old_addr;
    char bound[CORE_ADDR_STRLEN]; /* MOVE: the new socket's */
    struct sockaddr_storage addr;
    int udp_fd;                                          /* MOVE, UDP: a dup of the new socket */
    enum core_state old_state;                           /* RESTART */
    char old_error[sizeof(((struct core_err *)0)->msg)]; /* RESTART */
};

struct core_listener {
    char id[CORE_ID_MAX];         /* never changes: readable without a lock */
    struct core_listener_cfg cfg; /* written under lock by the changing thread only */
    const char *state_dir;
    struct core_events *events;
    struct core_metrics *metrics; /* MAP_SHARED: children of the process model add to it */
    struct core_svc_env env;
    struct inst_ref *inst;        /* service instance while running */
    struct core_runner *runner;   /* while running */
    int lfd;                      /* while running: a dup of the runner's bound socket */
    struct sockaddr_storage addr; /* while running: where it is bound (changing thread) */
    uint16_t bound_port;          /* while running: the port it is bound to (changing thread) */
    struct pending pending;       /* changing thread only */
    struct core_endpoints *own;   /* borrowed, may be NULL: where the bound socket is published */
    struct core_sources
        *sources; /* per-source counts, shared by the current and draining runners */

    pthread_mutex_t lock;                            /* guards cfg writes and the status below */
    enum core_state state;                           /* guarded by lock */
    char bound[CORE_ADDR_STRLEN];                    /* guarded by lock; "" unless running */
    struct timespec since;                           /* guarded by lock: last state change */
    char error[sizeof(((struct core_err *)0)->msg)]; /* guarded by lock; "" unless failed */
    /* Runners replaced live, still ending their connections: linked and unlinked under lock
     * by the changing thread, which alone stops them. */
    struct draining *draining;
};

static const char *const state_names[CORE_STATE_COUNT] = {
    [CORE_STATE_STOPPED] = "stopped", [CORE_STATE_STARTING] = "starting",
    [CORE_STATE_RUNNING] = "running", [CORE_STATE_STOPPING] = "stopping",
    [CORE_STATE_FAILED] = "failed",
};

const char *core_state_name(enum core_state s)
{
    return s < CORE_STATE_COUNT ? state_names[s] : "unknown";
}

static void inst_unref(struct inst_ref *ir)
{
    if (ir && --ir->refs == 0) {
        ir->svc->instance_free(ir->inst);
        free(ir);
    }
}

static void format_since(const struct timespec *ts, char *buf, size_t len)
{
    struct tm tm;

    gmtime_r(&ts->tv_sec, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void format_ms(const struct timespec *ts, char *buf, size_t len)
{
    struct tm tm;
    size_t n;

    gmtime_r(&ts->tv_sec, &tm);
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts->tv_nsec / 1000000);
}

/* ---- draining runners in the status ---- */

/* Whether a connection's local address a (of family fam) is one a socket bound to b accepts. */
static bool local_matches(const struct sockaddr_storage *b, const struct inet_diag_sockid *a)
{
    if (b->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)b;

        return s->sin_addr.s_addr == htonl(INADDR_ANY) || s->sin_addr.s_addr == a->idiag_src[0];
    }
    {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)b;

        return IN6_IS_ADDR_UNSPECIFIED(&s->sin6_addr) ||
               memcmp(&s->sin6_addr, a->idiag_src, sizeof(s->sin6_addr)) == 0;
    }
}

/*
 * The TCP connections this host holds whose local end is the address a socket was bound to
 * (sock_diag): for a moved socket, closed and no longer listening, the connections its draining
 * runner still serves (in forked children too). Returns the count or a negative errno.
 */
static int count_connections(const struct sockaddr_storage *bound)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg = {0};
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
    uint16_t port = core_addr_port((const struct sockaddr *)bound);
    int fd, count = 0, r = 0;
    bool done = false;

    fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -errno;
    msg.nlh.nlmsg_len = sizeof(msg);
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.req.sdiag_family = (__u8)bound->ss_family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = 1u << TCP_ESTABLISHED | 1u << TCP_SYN_RECV | 1u << TCP_FIN_WAIT1 |
                           1u << TCP_FIN_WAIT2 | 1u << TCP_CLOSE_WAIT | 1u << TCP_LAST_ACK |
                           1u << TCP_CLOSING;
    if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0) {
        r = -errno;
        goto out;
    }
    while (!done) {
        _Alignas(struct nlmsghdr) char data[16384];
        ssize_t got = recv(fd, data, sizeof(data), 0);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            r = got < 0 ? -errno : -EIO;
            goto out;
        }
        for (size_t off = 0; off + NLMSG_HDRLEN <= (size_t)got;) {
            const struct nlmsghdr *h = (const struct nlmsghdr *)(data + off);
            const struct inet_diag_msg *m = NLMSG_DATA(h);

            if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > (size_t)got - off)
                break;
            if (h->nlmsg_type == NLMSG_DONE) {
                done = true;
                break;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                r = -EIO;
                goto out;
            }
            if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(*m)) && ntohs(m->id.idiag_sport) == port &&
                local_matches(bound, &m->id))
                count++;
            off += NLMSG_ALIGN(h->nlmsg_len);
        }
    }
out:
    close(fd);
    return r < 0 ? r : count;
}

/* A copy of the draining runners for the status. Under lock. */
static struct drain_view *drain_views_locked(const struct core_listener *l, size_t *ret_n)
{
    struct drain_view *v;
    size_t n = 0;

    for (const struct draining *d = l->draining; d; d = d->next)
        n++;
    *ret_n = 0;
    if (n == 0)
        return NULL;
    v = calloc(n, sizeof(*v));
    if (!v)
        return NULL;
    n = 0;
    for (const struct draining *d = l->draining; d; d = d->next, n++) {
        memcpy(v[n].bound, d->bound, sizeof(v[n].bound));
        v[n].moved = d->moved;
        v[n].addr = d->addr;
        v[n].deadline = d->deadline;
    }
    *ret_n = n;
    return v;
}

/*
 * The "draining" array of the status: {"bound", "connections", "deadline"} per draining runner.
 * "connections" is counted for a moved socket; it is null for a drain on the socket the
 * listener still listens on, whose connections cannot be told from the new runner's.
 */
static json_t *draining_json(const struct drain_view *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        char deadline[40];
        int count = v[i].moved ? count_connections(&v[i].addr) : -1;

        format_ms(&v[i].deadline, deadline, sizeof(deadline));
        if (json_array_append_new(a,
                                  json_pack("{s:s, s:o, s:s}", "bound", v[i].bound, "connections",
                                            count >= 0 ? json_integer(count) : json_null(),
                                            "deadline", deadline)) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* The "bound" array of the status: the address while running, else empty. */
static json_t *bound_json(const char *bound)
{
    json_t *a = json_array();

    if (a && bound[0])
        json_array_append_new(a, json_string(bound));
    return a;
}

/* The data of a "listener.state" event, without "draining", and a copy of the draining
 * runners to add it. Under lock. */
static json_t *state_event_locked(const struct core_listener *l, enum core_state previous,
                                  struct drain_view **ret_views, size_t *ret_n)
{
    char since[32];

    format_since(&l->since, since, sizeof(since));
    *ret_views = drain_views_locked(l, ret_n);
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s}", "id", l->id, "state",
                     core_state_name(l->state), "previous", core_state_name(previous), "bound",
                     bound_json(l->bound), "error",
                     l->error[0] ? json_string(l->error) : json_null(), "since", since);
}

/* Publishes ev (taken) with the draining runners v (freed). */
static void publish_state(struct core_listener *l, json_t *ev, struct drain_view *v, size_t n)
{
    if (ev && json_object_set_new(ev, "draining", draining_json(v, n)) == 0)
        core_events_publish(l->events, "listener.state", ev);
    else
        json_decref(ev);
    free(v);
}

static void set_state(struct core_listener *l, enum core_state s, const char *bound,
                      const char *error)
{
    struct drain_view *v = NULL;
    enum core_state previous;
    json_t *ev = NULL;
    size_t n = 0;

    pthread_mutex_lock(&l->lock);
    previous = l->state;
    l->state = s;
    snprintf(l->bound, sizeof(l->bound), "%s", bound ? bound : "");
    snprintf(l->error, sizeof(l->error), "%s", error ? error : "");
    clock_gettime(CLOCK_REALTIME, &l->since);
    if (l->events)
        ev = state_event_locked(l, previous, &v, &n);
    pthread_mutex_unlock(&l->lock);
    if (l->events)
        publish_state(l, ev, v, n);
}

/* A "listener.state" event for a change of the draining runners alone (the state is the same:
 * previous is the state). */
static void publish_draining(struct core_listener *l)
{
    struct drain_view *v = NULL;
    json_t *ev;
    size_t n = 0;

    if (!l->events)
        return;
    pthread_mutex_lock(&l->lock);
    ev = state_event_locked(l, l->state, &v, &n);
    pthread_mutex_unlock(&l->lock);
    publish_state(l, ev, v, n);
}

/* Stops the draining runners that are done (all of them when all), and frees them. Returns
 * whether it stopped any. */
static bool reap_draining(struct core_listener *l, bool all)
{
    struct draining *done = NULL;
    int64_t now = core_now_ms();

    pthread_mutex_lock(&l->lock);
    for (struct draining **p = &l->draining; *p;) {
        struct draining *d = *p;

        if (!all && now < d->deadline_ms && !d->runner->is_drained(d->runner)) {
            p = &d->next;
            continue;
        }
        *p = d->next;
        d->next = done;
        done = d;
    }
    pthread_mutex_unlock(&l->lock);
    if (!done)
        return false;
    while (done) {
        struct draining *d = done;

        done = d->next;
        core_runner_stop(d->runner);
        inst_unref(d->inst);
        free(d);
    }
    return true;
}

void core_listener_reap_drained(struct core_listener *l)
{
    if (l->draining && reap_draining(l, false))
        publish_draining(l);
}

/* Puts runner (already told to drain) among the draining ones, with the listener's deadline. */
static void add_draining(struct core_listener *l, struct core_runner *runner, struct inst_ref *inst,
                         const char *bound, const struct sockaddr_storage *moved_addr)
{
    struct draining *d = calloc(1, sizeof(*d));
    struct timespec now;

    if (!d) {
        /* Nothing to keep it by: it ends now. */
        core_runner_stop(runner);
        inst_unref(inst);
        return;
    }
    d->runner = runner;
    d->inst = inst;
    d->deadline_ms = core_now_ms() + l->cfg.drain_timeout_ms;
    clock_gettime(CLOCK_REALTIME, &now);
    d->deadline.tv_sec = now.tv_sec + l->cfg.drain_timeout_ms / 1000;
    d->deadline.tv_nsec = now.tv_nsec + (long)(l->cfg.drain_timeout_ms % 1000) * 1000000;
    if (d->deadline.tv_nsec >= 1000000000) {
        d->deadline.tv_sec++;
        d->deadline.tv_nsec -= 1000000000;
    }
    snprintf(d->bound, sizeof(d->bound), "%s", bound);
    if (moved_addr) {
        d->moved = true;
        d->addr = *moved_addr;
    }
    pthread_mutex_lock(&l->lock);
    d->next = l->draining;
    l->draining = d;
    pthread_mutex_unlock(&l->lock);
}

/* ---- life ---- */

int core_listener_new(const struct core_listener_cfg *cfg, const char *state_dir,
                      struct core_events *events, struct core_endpoints *own,
                      struct core_listener **ret)
{
    struct core_listener *l = calloc(1, sizeof(*l));
    void *m;

    if (!l)
        return -ENOMEM;
    if (core_sources_new(&l->sources) < 0) {
        free(l);
        return -ENOMEM;
    }
    m = mmap(NULL, sizeof(*l->metrics), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        core_sources_free(l->sources);
        free(l);
        return -ENOMEM;
    }
    l->metrics = m;
    if (core_listener_cfg_copy(cfg, &l->cfg) < 0) {
        munmap(l->metrics, sizeof(*l->metrics));
        core_sources_free(l->sources);
        free(l);
        return -ENOMEM;
    }
    l->own = own;
    memcpy(l->id, cfg->id, sizeof(l->id));
    l->state_dir = state_dir;
    l->events = events;
    l->lfd = -1;
    core_metrics_init(l->metrics);
    l->env =
        (struct core_svc_env){.listener_id = l->id, .state_dir = state_dir, .metrics = l->metrics};
    pthread_mutex_init(&l->lock, NULL);
    l->state = CORE_STATE_STOPPED;
    clock_gettime(CLOCK_REALTIME, &l->since);
    *ret = l;
    return 0;
}

/* Creates and binds the listener's socket. Returns the fd or a negative errno with err set;
 * *ret_addr (may be NULL) gets the address it is bound to. */
static int bind_socket(const struct core_listener_cfg *cfg, char *ret_bound,
                       struct sockaddr_storage *ret_addr, struct core_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *what;
    int fd, one = 1, zero = 0, r;
    char where[CORE_ADDR_STRLEN];

    r = core_addr_parse(cfg->address, cfg->port, &ss, &len);
    if (r < 0)
        return core_err_set(err, r, "address", "address: '%s' is not a numeric address",
                            cfg->address);
    core_addr_format((struct sockaddr *)&ss, where, sizeof(where));
    fd = socket(ss.ss_family,
                (cfg->transport == CORE_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        what = "socket";
        goto out_errno;
    }
    /* TCP: rebinding right after a stop must not wait for TIME_WAIT. Not for UDP, where
     * SO_REUSEADDR would let two listeners share a port. */
    if (cfg->transport == CORE_TCP &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        what = "setsockopt(SO_REUSEADDR)";
        goto out_errno;
    }
    r = core_runner_prepare_socket(cfg, fd);
    if (r < 0) {
        errno = -r;
        what = "setsockopt";
        goto out_errno;
    }
    /* "::" serves IPv4 too (dual-stack), whatever net.ipv6.bindv6only says. */
    if (ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) {
        what = "setsockopt(IPV6_V6ONLY)";
        goto out_errno;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        what = "bind";
        goto out_errno;
    }
    if (cfg->transport == CORE_TCP && listen(fd, TCP_BACKLOG) < 0) {
        what = "listen";
        goto out_errno;
    }
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        what = "getsockname";
        goto out_errno;
    }
    core_addr_format((struct sockaddr *)&ss, ret_bound, CORE_ADDR_STRLEN);
    if (ret_addr)
        *ret_addr = ss;
    return fd;

out_errno:
    r = -errno;
    if (fd >= 0)
        close(fd);
    return core_err_set(err, r, r == -EADDRINUSE || r == -EADDRNOTAVAIL ? "port" : NULL,
                        "%s %s/%s: %s", what, where, core_transport_name(cfg->transport),
                        strerror(-r));
}

int core_listener_probe(const struct core_listener_cfg *cfg, struct core_err *err)
{
    char bound[CORE_ADDR_STRLEN];
    int fd = bind_socket(cfg, bound, NULL, err);

    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

/* A new instance of the configured service, with one reference. */
static int inst_new(struct core_listener *l, const struct core_listener_cfg *cfg,
                    struct inst_ref **ret, struct core_err *err)
{
    struct inst_ref *ir = calloc(1, sizeof(*ir));
    int r;

    if (!ir)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    ir->svc = cfg->svc;
    ir->refs = 1;
    r = cfg->svc->instance_new(cfg->options, cfg->transport, &l->env, &ir->inst, err);
    if (r < 0) {
        free(ir);
        return r;
    }
    *ret = ir;
    return 0;
}

int core_listener_start(struct core_listener *l, struct core_err *err)
{
    char bound[CORE_ADDR_STRLEN];
    struct sockaddr_storage addr;
    struct core_err e = {0};
    int fd, r;

    if (l->runner)
        return 0;
    set_state(l, CORE_STATE_STARTING, NULL, NULL);
    fd = bind_socket(&l->cfg, bound, &addr, &e);
    if (fd < 0) {
        r = fd;
        goto out_failed;
    }
    (void)core_endpoints_add(l->own, l, fd);
    r = inst_new(l, &l->cfg, &l->inst, &e);
    if (r < 0) {
        close(fd);
        goto out_failed;
    }
    /* Kept for a live reconfiguration: a new runner starts on a dup of the same socket. */
    l->lfd = l->cfg.transport == CORE_TCP ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
    r = core_runner_start(&(struct core_runner_ctx){.cfg = &l->cfg,
                                                    .svc = l->cfg.svc,
                                                    .inst = l->inst->inst,
                                                    .metrics = l->metrics,
                                                    .fd = fd,
                                                    .sources = l->sources,
                                                    .own = l->own},
                          &l->runner, &e);
    if (r < 0) {
        inst_unref(l->inst);
        l->inst = NULL;
        if (l->lfd >= 0)
            close(l->lfd);
        l->lfd = -1;
        goto out_failed;
    }
    l->addr = addr;
    l->bound_port = core_addr_port((struct sockaddr *)&addr);
    set_state(l, CORE_STATE_RUNNING, bound, NULL);
    return 0;

out_failed:
    core_endpoints_remove(l->own, l);
    if (!e.msg[0])
        core_err_set(&e, r, NULL, "%s", strerror(-r));
    set_state(l, CORE_STATE_FAILED, NULL, e.msg);
    if (err)
        *err = e;
    return r;
}

void core_listener_stop(struct core_listener *l)
{
    if (!l->runner) {
        reap_draining(l, true);
        if (l->state != CORE_STATE_STOPPED)
            set_state(l, CORE_STATE_STOPPED, NULL, NULL);
        return;
    }
    set_state(l, CORE_STATE_STOPPING, NULL, NULL);
    reap_draining(l, true);
    core_runner_stop(l->runner);
    l->runner = NULL;
    inst_unref(l->inst);
    l->inst = NULL;
    if (l->lfd >= 0)
        close(l->lfd);
    l->lfd = -1;
    l->bound_port = 0;
    core_endpoints_remove(l->own, l);
    set_state(l, CORE_STATE_STOPPED, NULL, NULL);
}

static void swap_cfg(struct core_listener *l, struct core_listener_cfg *cfg)
{
    struct core_listener_cfg tmp;

    pthread_mutex_lock(&l->lock);
    tmp = l->cfg;
    l->cfg = *cfg;
    *cfg = tmp;
    pthread_mutex_unlock(&l->lock);
}

/* Whether cfg binds where the running listener is bound: same transport and address, and the
 * same port (or the port the kernel gave when it asked for 0). */
static bool same_socket(const struct core_listener *l, const struct core_listener_cfg *cfg)
{
    const struct core_listener_cfg *old = &l->cfg;

    return old->transport == cfg->transport && strcmp(old->address, cfg->address) == 0 &&
           (old->port == cfg->port || (cfg->port != 0 && cfg->port == l->bound_port));
}

/* Whether cfg can replace the running configuration without closing the listening socket. */
static bool can_go_live(const struct core_listener *l, const struct core_listener_cfg *cfg)
{
    const struct core_listener_cfg *old = &l->cfg;

    return l->runner && l->runner->drain && l->lfd >= 0 && cfg->enabled &&
           old->transport == CORE_TCP && cfg->transport == CORE_TCP && old->svc == cfg->svc &&
           same_socket(l, cfg) &&
           /* event needs SO_REUSEPORT, set before bind */
           (cfg->model != CORE_MODEL_EVENT || old->model == CORE_MODEL_EVENT);
}

/* Whether cfg moves the running listener to another address or port, binding the new socket
 * before the old one is closed. */
static bool can_move(const struct core_listener *l, const struct core_listener_cfg *cfg)
{
    const struct core_listener_cfg *old = &l->cfg;

    return l->runner && cfg->enabled && old->transport == cfg->transport && old->svc == cfg->svc &&
           !same_socket(l, cfg) && (cfg->transport == CORE_UDP || l->runner->drain);
}

/* The live path: a new runner on a dup of the bound socket; the old one goes on accepting
 * until the commit. */
static int prepare_live(struct core_listener *l, const struct core_listener_cfg *cfg,
                        struct core_err *err)
{
    struct pending *p = &l->pending;
    struct core_runner *runner;
    struct inst_ref *ir;
    int fd, r;

    r = core_listener_cfg_copy(cfg, &p->old_cfg);
    if (r < 0)
        return core_err_set(err, r, NULL, "out of memory");
    if (json_equal(l->cfg.options, cfg->options)) {
        ir = l->inst;
        ir->refs++;
    } else {
        r = inst_new(l, cfg, &ir, err);
        if (r < 0)
            goto out_fini;
    }
    fd = fcntl(l->lfd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        r = core_err_set(err, -errno, NULL, "dup: %s", strerror(errno));
        goto out_unref;
    }
    r = core_runner_start(&(struct core_runner_ctx){.cfg = cfg,
                                                    .svc = cfg->svc,
                                                    .inst = ir->inst,
                                                    .metrics = l->metrics,
                                                    .fd = fd,
                                                    .sources = l->sources,
                                                    .own = l->own},
                          &runner, err);
    if (r < 0)
        goto out_unref;
    p->kind = PENDING_LIVE;
    p->old_runner = l->runner;
    p->old_inst = l->inst;
    l->runner = runner;
    l->inst = ir;
    swap_cfg(l, &p->old_cfg);
    return 0;

out_unref:
    inst_unref(ir);
out_fini:
    core_listener_cfg_fini(&p->old_cfg);
    return r;
}

/* Bind before close: a new runner on a new socket; the old one goes on accepting on its own
 * socket until the commit. */
static int prepare_move(struct core_listener *l, const struct core_listener_cfg *cfg,
                        struct core_err *err)
{
    struct pending *p = &l->pending;
    struct core_runner *runner;
    struct sockaddr_storage addr;
    char bound[CORE_ADDR_STRLEN];
    struct inst_ref *ir;
    int fd, lfd = -1, udp_fd = -1, r;

    fd = bind_socket(cfg, bound, &addr, err);
    if (fd < 0)
        return fd;
    r = core_listener_cfg_copy(cfg, &p->old_cfg);
    if (r < 0) {
        close(fd);
        return core_err_set(err, r, NULL, "out of memory");
    }
    r = inst_new(l, cfg, &ir, err);
    if (r < 0) {
        close(fd);
        goto out_fini;
    }
    if (cfg->transport == CORE_TCP)
        lfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    else
        udp_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    /* Until the commit both sockets are this daemon's endpoints. */
    (void)core_endpoints_add(l->own, p, fd);
    r = core_runner_start(&(struct core_runner_ctx){.cfg = cfg,
                                                    .svc = cfg->svc,
                                                    .inst = ir->inst,
                                                    .metrics = l->metrics,
                                                    .fd = fd,
                                                    .sources = l->sources,
                                                    .own = l->own},
                          &runner, err);
    if (r < 0) {
        core_endpoints_remove(l->own, p);
        if (lfd >= 0)
            close(lfd);
        if (udp_fd >= 0)
            close(udp_fd);
        inst_unref(ir);
        goto out_fini;
    }
    p->kind = PENDING_MOVE;
    p->old_runner = l->runner;
    p->old_inst = l->inst;
    p->old_lfd = l->lfd;
    p->old_addr = l->addr;
    pthread_mutex_lock(&l->lock);
    memcpy(p->old_bound, l->bound, sizeof(p->old_bound));
    pthread_mutex_unlock(&l->lock);
    memcpy(p->bound, bound, sizeof(p->bound));
    p->addr = addr;
    p->udp_fd = udp_fd;
    l->runner = runner;
    l->inst = ir;
    l->lfd = lfd;
    swap_cfg(l, &p->old_cfg);
    return 0;

out_fini:
    core_listener_cfg_fini(&p->old_cfg);
    return r;
}

/* After a restart that cannot stand: the old configuration and, as far as it goes, the old
 * state (running again, or failed with its old reason, or stopped). */
static void restart_back(struct core_listener *l)
{
    struct pending *p = &l->pending;

    if (l->runner)
        core_listener_stop(l);
    swap_cfg(l, &p->old_cfg);
    core_listener_cfg_fini(&p->old_cfg);
    p->kind = PENDING_NONE;
    switch (p->old_state) {
    case CORE_STATE_RUNNING:
    case CORE_STATE_STARTING:
        /* When it does not start either, the state says why. */
        (void)core_listener_start(l, NULL);
        break;
    case CORE_STATE_FAILED:
        set_state(l, CORE_STATE_FAILED, NULL, p->old_error);
        break;
    default:
        if (core_listener_state(l) != CORE_STATE_STOPPED)
            set_state(l, CORE_STATE_STOPPED, NULL, NULL);
        break;
    }
}

/* Stop and start again with the new configuration (when enabled). */
static int prepare_restart(struct core_listener *l, const struct core_listener_cfg *cfg,
                           struct core_err *err)
{
    struct pending *p = &l->pending;
    int r;

    r = core_listener_cfg_copy(cfg, &p->old_cfg);
    if (r < 0)
        return core_err_set(err, r, NULL, "out of memory");
    pthread_mutex_lock(&l->lock);
    p->old_state = l->state;
    memcpy(p->old_error, l->error, sizeof(p->old_error));
    pthread_mutex_unlock(&l->lock);
    p->kind = PENDING_RESTART;
    core_listener_stop(l);
    swap_cfg(l, &p->old_cfg); /* old_cfg now holds the old configuration */
    if (l->cfg.enabled) {
        r = core_listener_start(l, err);
        if (r < 0) {
            restart_back(l);
            return r;
        }
    }
    return 0;
}

int core_listener_prepare(struct core_listener *l, const struct core_listener_cfg *cfg,
                          struct core_err *err)
{
    int r;

    if (l->pending.kind != PENDING_NONE)
        return core_err_set(err, -EBUSY, NULL, "listener '%s': a change is under way", l->id);
    core_listener_reap_drained(l);
    if (core_listener_cfg_equal(&l->cfg, cfg) && (l->runner != NULL) == cfg->enabled)
        return 0;
    if (can_go_live(l, cfg))
        return prepare_live(l, cfg, err);
    if (can_move(l, cfg)) {
        r = prepare_move(l, cfg, err);
        /* The new address takes in the old socket's (127.0.0.1 to :: on one port): only a
         * restart can bind it. */
        if (r != -EADDRINUSE || cfg->port != l->bound_port)
            return r;
    }
    return prepare_restart(l, cfg, err);
}

bool core_listener_prepared_live(const struct core_listener *l)
{
    return l->pending.kind == PENDING_LIVE || l->pending.kind == PENDING_MOVE;
}

void core_listener_commit(struct core_listener *l)
{
    struct pending *p = &l->pending;
    char bound[CORE_ADDR_STRLEN];

    switch (p->kind) {
    case PENDING_LIVE:
        p->old_runner->drain(p->old_runner);
        pthread_mutex_lock(&l->lock);
        memcpy(bound, l->bound, sizeof(bound));
        pthread_mutex_unlock(&l->lock);
        add_draining(l, p->old_runner, p->old_inst, bound, NULL);
        /* Running with the new configuration (previous: running), on the same socket. */
        set_state(l, CORE_STATE_RUNNING, bound, NULL);
        break;
    case PENDING_MOVE:
        if (p->old_runner->drain && p->old_lfd >= 0) {
            /* The old socket stops listening at once (the port refuses), its connections
             * drain. */
            p->old_runner->drain(p->old_runner);
            (void)shutdown(p->old_lfd, SHUT_RD);
            close(p->old_lfd);
            add_draining(l, p->old_runner, p->old_inst, p->old_bound, &p->old_addr);
        } else {
            core_runner_stop(p->old_runner);
            inst_unref(p->old_inst);
        }
        core_endpoints_remove(l->own, p);
        (void)core_endpoints_add(l->own, l, l->lfd >= 0 ? l->lfd : p->udp_fd);
        if (p->udp_fd >= 0)
            close(p->udp_fd);
        l->addr = p->addr;
        l->bound_port = core_addr_port((struct sockaddr *)&p->addr);
        set_state(l, CORE_STATE_RUNNING, p->bound, NULL);
        break;
    case PENDING_RESTART:
    case PENDING_NONE:
        break;
    }
    core_listener_cfg_fini(&p->old_cfg);
    memset(p, 0, sizeof(*p));
    /* A drain of 0 ms ends at once. */
    core_listener_reap_drained(l);
}

void core_listener_abort(struct core_listener *l)
{
    struct pending *p = &l->pending;

    switch (p->kind) {
    case PENDING_LIVE:
        core_runner_stop(l->runner);
        inst_unref(l->inst);
        l->runner = p->old_runner;
        l->inst = p->old_inst;
        swap_cfg(l, &p->old_cfg);
        break;
    case PENDING_MOVE:
        core_runner_stop(l->runner);
        inst_unref(l->inst);
        if (l->lfd >= 0)
            close(l->lfd);
        core_endpoints_remove(l->own, p);
        if (p->udp_fd >= 0)
            close(p->udp_fd);
        l->runner = p->old_runner;
        l->inst = p->old_inst;
        l->lfd = p->old_lfd;
        swap_cfg(l, &p->old_cfg);
        break;
    case PENDING_RESTART:
        restart_back(l);
        break;
    case PENDING_NONE:
        break;
    }
    core_listener_cfg_fini(&p->old_cfg);
    memset(p, 0, sizeof(*p));
}

int core_listener_reconfigure(struct core_listener *l, const struct core_listener_cfg *cfg,
                              struct core_err *err)
{
    int r = core_listener_prepare(l, cfg, err);

    if (r == 0)
        core_listener_commit(l);
    return r;
}

int core_listener_save(struct core_listener *l, struct core_listener_saved *ret)
{
    int r;

    pthread_mutex_lock(&l->lock);
    r = core_listener_cfg_copy(&l->cfg, &ret->cfg);
    ret->state = l->state;
    memcpy(ret->error, l->error, sizeof(ret->error));
    pthread_mutex_unlock(&l->lock);
    return r;
}

void core_listener_saved_fini(struct core_listener_saved *s)
{
    core_listener_cfg_fini(&s->cfg);
}

void core_listener_restore(struct core_listener *l, const struct core_listener_saved *s)
{
    struct core_listener_cfg cfg;

    if (s->state != CORE_STATE_FAILED) {
        if (core_listener_prepare(l, &s->cfg, NULL) == 0)
            core_listener_commit(l);
        return;
    }
    /* It had failed: it is put back failed, with its reason, not started again. */
    if (core_listener_cfg_copy(&s->cfg, &cfg) < 0)
        return;
    if (l->runner)
        core_listener_stop(l);
    else
        reap_draining(l, true);
    swap_cfg(l, &cfg);
    core_listener_cfg_fini(&cfg);
    set_state(l, CORE_STATE_FAILED, NULL, s->error);
}

uint16_t core_listener_bound_port(const struct core_listener *l)
{
    return l->runner ? l->bound_port : 0;
}

void core_listener_free(struct core_listener *l)
{
    if (!l)
        return;
    core_listener_abort(l);
    core_listener_stop(l);
    core_listener_cfg_fini(&l->cfg);
    pthread_mutex_destroy(&l->lock);
    munmap(l->metrics, sizeof(*l->metrics));
    core_sources_free(l->sources);
    free(l);
}

const struct core_listener_cfg *core_listener_cfg(const struct core_listener *l)
{
    return &l->cfg;
}

struct core_metrics *core_listener_metrics(struct core_listener *l)
{
    return l->metrics;
}

enum core_state core_listener_state(struct core_listener *l)
{
    enum core_state s;

    pthread_mutex_lock(&l->lock);
    s = l->state;
    pthread_mutex_unlock(&l->lock);
    return s;
}

int core_listener_cfg_snapshot(struct core_listener *l, struct core_listener_cfg *ret)
{
    int r;

    pthread_mutex_lock(&l->lock);
    r = core_listener_cfg_copy(&l->cfg, ret);
    pthread_mutex_unlock(&l->lock);
    return r;
}

const char *core_listener_id(const struct core_listener *l)
{
    return l->id;
}

static json_t *metrics_json_locked(struct core_listener *l)
{
    struct core_metrics_snapshot snap;

    core_metrics_snapshot(l->metrics, &snap);
    return core_metrics_to_json(&snap, l->cfg.svc->counters, l->cfg.svc->n_counters);
}

json_t *core_listener_metrics_json(struct core_listener *l)
{
    json_t *j;

    pthread_mutex_lock(&l->lock);
    j = metrics_json_locked(l);
    pthread_mutex_unlock(&l->lock);
    return j;
}

json_t *core_listener_to_json(struct core_listener *l, bool with_metrics)
{
    struct drain_view *v;
    char since[32];
    json_t *j, *status;
    size_t n;

    pthread_mutex_lock(&l->lock);
    j = core_listener_cfg_to_json(&l->cfg);
    format_since(&l->since, since, sizeof(since));
    status = json_pack("{s:s, s:o, s:s, s:o}", "state", core_state_name(l->state), "bound",
                       bound_json(l->bound), "since", since, "error",
                       l->error[0] ? json_string(l->error) : json_null());
    v = drain_views_locked(l, &n);
    if (!j || !status || json_object_set_new(j, "status", status) < 0 ||
        (with_metrics && json_object_set_new(j, "metrics", metrics_json_locked(l)) < 0)) {
        pthread_mutex_unlock(&l->lock);
        json_decref(j);
        free(v);
        return NULL;
    }
    pthread_mutex_unlock(&l->lock);
    if (json_object_set_new(status, "draining", draining_json(v, n)) < 0) {
        json_decref(j);
        j = NULL;
    }
    free(v);
    return j;
}
