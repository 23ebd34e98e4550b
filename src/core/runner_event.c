/*
 * The `event` TCP runner: `workers` epoll loops, each on its own listening socket bound to the
 * listener's address with SO_REUSEPORT (the kernel spreads new connections over them), each
 * serving its connections non-blocking, one state machine per connection. A loop watches its
 * connection for input only while no output is pending (EPOLLOUT then), so a slow reader holds
 * back only itself. Connections idle past idle_timeout_ms are closed from a list kept in order
 * of last activity; max_connections is counted across loops.
 *
 * A service callback runs on the loop's thread: one that blocks (backup's fsync at the end of an
 * upload) holds the other connections of that loop for that long. That is accepted: the other
 * loops go on, and such waits are short.
 *
 * When the listener's socket was bound without SO_REUSEPORT, the loops share it instead
 * (EPOLLEXCLUSIVE wakes one loop per connection).
 */
#include "core/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"

#define READ_SIZE (64 * 1024)
#define LINGER_MS 1000
#define TCP_BACKLOG 511
#define MAX_EVENTS 64
#define ACCEPT_BATCH 64
#define ACCEPT_BACKOFF_MS 100

struct ev_loop;

enum conn_state { CONN_OPEN, CONN_LINGER };

struct ev_conn {
    struct ev_loop *loop;
    int fd;
    enum conn_state state;
    int verdict;      /* the service's last answer, acted on once out is sent */
    bool completed;   /* the service saw the whole exchange (end of input or CLOSE) */
    bool want_out;    /* registered for EPOLLOUT (else for EPOLLIN) */
    uint64_t t0;      /* when the request being answered arrived; 0: none */
    int64_t deadline; /* ms: idle or linger deadline */
    struct core_buf out;
    struct core_admission adm;   /* what the connection holds in the listener's sources */
    struct ev_conn *prev, *next; /* in loop.open or loop.linger, in order of deadline */
    void *sess;
};

struct conn_list {
    struct ev_conn *head, *tail;
};

struct event_runner;

/* A loop and everything registered on it belong to its thread. */
struct ev_loop {
    struct event_runner *rn;
    int epfd;
    int lfd;        /* this loop's listening socket */
    bool owns_lfd;  /* false when it shares another loop's */
    bool exclusive; /* lfd is in the set with EPOLLEXCLUSIVE (shared with other loops) */
    bool accepting; /* until the runner drains */
    pthread_t thread;
    bool started;
    int64_t accept_paused_until; /* ms: out of fds or memory, lfd is out of the set until then */
    uint8_t *rbuf;               /* READ_SIZE, shared by the loop's connections */
    struct conn_list open;       /* by last activity */
    struct conn_list linger;     /* by linger deadline */
};

struct event_runner {
    struct core_runner base;
    struct core_listener_cfg cfg;
    const struct core_service *svc;
    void *inst;
    struct core_metrics *m;
    struct core_sources *sources;    /* borrowed; may be NULL */
    struct core_fd_reserve *reserve; /* one fd per loop, for core_runner_accept() */
    int wake_fd;                     /* readable once the runner stops; in every loop */
    int drain_fd;                    /* readable once the runner drains; in every loop */
    atomic_uint n_accepting;         /* loops that have not yet stopped accepting */
    _Atomic uint32_t n_conns;        /* open connections across loops */
    struct ev_loop *loops;
    unsigned n_loops;
};

static void list_remove(struct conn_list *l, struct ev_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static void list_append(struct conn_list *l, struct ev_conn *c)
{
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static struct conn_list *list_of(struct ev_conn *c)
{
    return c->state == CONN_OPEN ? &c->loop->open : &c->loop->linger;
}

/* The connection was active: its idle deadline starts again. */
static void touch(struct ev_conn *c)
{
    uint32_t idle = c->loop->rn->cfg.idle_timeout_ms;

    if (c->state != CONN_OPEN)
        return;
    c->deadline = idle ? core_now_ms() + idle : INT64_MAX;
    list_remove(&c->loop->open, c);
    list_append(&c->loop->open, c);
}

static int set_events(struct ev_conn *c, bool want_out)
{
    struct epoll_event ev = {.events = want_out ? EPOLLOUT : EPOLLIN, .data.ptr = c};

    if (c->want_out == want_out)
        return 0;
    if (epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -errno;
    c->want_out = want_out;
    return 0;
}

/* Frees the connection; completed tells the service whether it ended normally. */
static void conn_close(struct ev_conn *c, bool completed)
{
    struct event_runner *rn = c->loop->rn;

    list_remove(list_of(c), c);
    rn->svc->session_close(c->sess, completed);
    close(c->fd);
    core_buf_fini(&c->out);
    free(c->sess);
    core_runner_release(rn->sources, &c->adm);
    free(c);
    core_metrics_sub(rn->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
    atomic_fetch_sub_explicit(&rn->n_conns, 1, memory_order_relaxed);
}

/* The service is done: stop sending and read what the client still sends for a moment, so that
 * unread input does not turn our close into a reset that could destroy the answer in flight. */
static void conn_linger(struct ev_conn *c)
{
    list_remove(&c->loop->open, c);
    c->state = CONN_LINGER;
    c->deadline = core_now_ms() + LINGER_MS;
    list_append(&c->loop->linger, c);
    (void)shutdown(c->fd, SHUT_WR);
    if (set_events(c, false) < 0)
        conn_close(c, c->completed);
}

/* Sends what out holds until done or the socket is full. 0, or a negative errno. */
static int conn_send(struct ev_conn *c)
{
    struct core_metrics *m = c->loop->rn->m;

    while (c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            core_metrics_add(m, CORE_CTR_BYTES_OUT, (uint64_t)n);
            core_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        return n < 0 ? -errno : -EIO;
    }
    return 0;
}

/* Sends the pending output and acts on the service's verdict once it is out: records the
 * service time, pulls the next part, lingers, or waits for input. May free c. */
static void conn_advance(struct ev_conn *c)
{
    struct event_runner *rn = c->loop->rn;
    int r;

    for (;;) {
        r = conn_send(c);
        if (r < 0) {
            if (r != -ECONNRESET && r != -EPIPE)
                core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
            conn_close(c, false);
            return;
        }
        if (c->out.len > 0) {
            if (set_events(c, true) < 0)
                conn_close(c, false);
            return;
        }
        if (c->t0 && c->verdict != CORE_VERDICT_PULL) {
            core_metrics_record_latency(rn->m, core_runner_now_ns() - c->t0);
            c->t0 = 0;
        }
        if (c->verdict < 0) {
            core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
            conn_linger(c);
            return;
        }
        if (c->verdict == CORE_VERDICT_PULL) {
            c->verdict = rn->svc->session_pull(c->sess, &c->out);
            continue;
        }
        if (c->verdict == CORE_VERDICT_CLOSE || c->completed) {
            c->completed = true;
            conn_linger(c);
            return;
        }
        if (set_events(c, false) < 0)
            conn_close(c, false);
        return;
    }
}

static void conn_on_readable(struct ev_conn *c)
{
    struct ev_loop *loop = c->loop;
    struct event_runner *rn = loop->rn;
    ssize_t n = recv(c->fd, loop->rbuf, READ_SIZE, MSG_DONTWAIT);

    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        if (errno != ECONNRESET && c->state == CONN_OPEN)
            core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
        conn_close(c, c->state == CONN_LINGER && c->completed);
        return;
    }
    if (c->state == CONN_LINGER) {
        if (n == 0)
            conn_close(c, c->completed);
        return; /* discarded */
    }
    touch(c);
    c->t0 = core_runner_now_ns();
    if (n == 0) {
        /* The client closed its side: the service may answer once more, then we close. */
        c->verdict =
            rn->svc->session_eof ? rn->svc->session_eof(c->sess, &c->out) : CORE_VERDICT_CLOSE;
        c->completed = c->verdict >= 0;
    } else {
        core_metrics_add(rn->m, CORE_CTR_BYTES_IN, (uint64_t)n);
        c->verdict = rn->svc->session_feed(c->sess, loop->rbuf, (size_t)n, &c->out);
    }
    if (!c->out.len)
        c->t0 = 0;
    conn_advance(c);
}

static void conn_on_event(struct ev_conn *c, uint32_t events)
{
    if (c->state == CONN_OPEN && c->want_out) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            touch(c);
            conn_advance(c);
        }
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_on_readable(c);
}

/* A new connection, counted in n_conns and admitted as *adm already. */
static void conn_new(struct ev_loop *loop, int fd, uint64_t accepted_ns, struct core_admission *adm)
{
    struct event_runner *rn = loop->rn;
    const struct core_service *svc = rn->svc;
    struct ev_conn *c = calloc(1, sizeof(*c));
    struct epoll_event ev = {.events = EPOLLIN};

    if (c)
        c->sess = calloc(1, svc->session_size ? svc->session_size : 1);
    ev.data.ptr = c;
    if (!c || !c->sess || epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        if (c)
            free(c->sess);
        free(c);
        close(fd);
        core_runner_release(rn->sources, adm);
        atomic_fetch_sub_explicit(&rn->n_conns, 1, memory_order_relaxed);
        core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_REJECTED, 1);
        core_metrics_add(rn->m, CORE_CTR_REJECTED_RESOURCES, 1);
        return;
    }
    c->loop = loop;
    c->fd = fd;
    c->adm = *adm;
    c->state = CONN_OPEN;
    list_append(&loop->open, c);
    touch(c);
    core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_TOTAL, 1);
    core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
    c->verdict = svc->session_open(rn->inst, c->sess, &c->out);
    c->t0 = c->out.len ? accepted_ns : 0;
    conn_advance(c);
}

/* Out of fds or memory: the backlog is left alone for a moment. The listening socket leaves the
 * set meanwhile: level-triggered, with a connection waiting it would wake the loop at once, again
 * and again. */
static void pause_accepting(struct ev_loop *loop)
{
    loop->accept_paused_until = core_now_ms() + ACCEPT_BACKOFF_MS;
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, loop->lfd, NULL);
}

/* The pause is over: the listening socket is watched again (or the pause goes on). */
static bool resume_accepting(struct ev_loop *loop)
{
    struct epoll_event ev = {.events = EPOLLIN | (loop->exclusive ? EPOLLEXCLUSIVE : 0),
                             .data.ptr = &loop->lfd};

    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->lfd, &ev) < 0 && errno != EEXIST) {
        loop->accept_paused_until = core_now_ms() + ACCEPT_BACKOFF_MS;
        return false;
    }
    loop->accept_paused_until = 0;
    return true;
}

static void on_acceptable(struct ev_loop *loop)
{
    struct event_runner *rn = loop->rn;
    bool warned = false;

    if (loop->accept_paused_until)
        return;
    for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
        struct core_admission adm;
        uint64_t now;
        int fd;

        fd = core_runner_accept(loop->lfd, rn->reserve, rn->m);
        if (fd == -EAGAIN)
            return;
        if (fd == -ECONNREFUSED)
            continue;
        if (fd < 0) {
            if (!warned)
                core_log_warn("listener %s: accept: %s (backing off)", rn->cfg.id, strerror(-fd));
            warned = true;
            pause_accepting(loop);
            return;
        }
        now = core_runner_now_ns();
        if (core_runner_admit(rn->sources, &rn->cfg, rn->m, fd, now, &adm) < 0) {
            close(fd);
            continue;
        }
        if (atomic_fetch_add_explicit(&rn->n_conns, 1, memory_order_relaxed) >=
            rn->cfg.max_connections) {
            atomic_fetch_sub_explicit(&rn->n_conns, 1, memory_order_relaxed);
            core_runner_release(rn->sources, &adm);
            core_runner_reject_max(rn->m);
            close(fd);
            continue;
        }
        conn_new(loop, fd, now, &adm);
    }
}

/* Closes the connections whose deadline passed; returns the ms until the next one (-1: none). */
static int expire(struct ev_loop *loop)
{
    struct event_runner *rn = loop->rn;
    int64_t now = core_now_ms(), next = INT64_MAX;

    while (loop->linger.head && loop->linger.head->deadline <= now)
        conn_close(loop->linger.head, loop->linger.head->completed);
    while (loop->open.head && loop->open.head->deadline <= now) {
        core_metrics_add(rn->m, CORE_CTR_IDLE_TIMEOUTS, 1);
        conn_close(loop->open.head, false);
    }
    if (loop->linger.head)
        next = loop->linger.head->deadline;
    if (loop->open.head && loop->open.head->deadline < next)
        next = loop->open.head->deadline;
    if (loop->accept_paused_until > now && loop->accept_paused_until < next)
        next = loop->accept_paused_until;
    if (next == INT64_MAX)
        return -1;
    return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

/* Live reconfiguration: takes what waits in the backlog, then stops accepting; a socket of
 * this runner's own is closed so that the kernel sends new connections to the new runner's. */
static void stop_accepting(struct ev_loop *loop)
{
    struct event_runner *rn = loop->rn;

    if (!loop->accepting)
        return;
    on_acceptable(loop);
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, rn->drain_fd, NULL);
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, loop->lfd, NULL);
    if (loop->owns_lfd && loop != &rn->loops[0]) {
        close(loop->lfd);
        loop->owns_lfd = false;
        loop->lfd = -1;
    }
    loop->accepting = false;
    loop->accept_paused_until = 0;
    atomic_fetch_sub(&rn->n_accepting, 1);
}

static void *loop_main(void *arg)
{
    struct ev_loop *loop = arg;
    struct event_runner *rn = loop->rn;
    struct epoll_event evs[MAX_EVENTS];
    bool stop = false;

    while (!stop) {
        int timeout = expire(loop);
        int n = epoll_wait(loop->epfd, evs, MAX_EVENTS, timeout);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            core_log_error("listener %s: epoll_wait: %s", rn->cfg.id, strerror(errno));
            break;
        }
        if (loop->accepting && loop->accept_paused_until &&
            loop->accept_paused_until <= core_now_ms() && resume_accepting(loop))
            on_acceptable(loop);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;

            /* The two fds that are not connections carry the address of their fd field. */
            if (p == &rn->wake_fd)
                stop = true;
            else if (p == &rn->drain_fd)
                stop_accepting(loop);
            else if (p == &loop->lfd)
                on_acceptable(loop);
            else
                conn_on_event(p, evs[i].events);
        }
    }
    while (loop->open.head)
        conn_close(loop->open.head, false);
    while (loop->linger.head)
        conn_close(loop->linger.head, loop->linger.head->completed);
    return NULL;
}

/* A listening socket bound where fd is, with SO_REUSEPORT, or a negative errno. */
static int bind_sibling(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int s, one = 1, zero = 0, r;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -errno;
    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        (ss.ss_family == AF_INET6 &&
         setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) ||
        bind(s, (struct sockaddr *)&ss, len) < 0 || listen(s, TCP_BACKLOG) < 0) {
        r = -errno;
        close(s);
        return r;
    }
    return s;
}

static bool has_reuseport(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);

    return getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &len) == 0 && v;
}

/* Creates loop i's epoll set and listening socket (loop 0 gets the listener's). */
static int loop_init(struct event_runner *rn, unsigned i, int fd0, bool reuseport)
{
    struct ev_loop *loop = &rn->loops[i];
    struct epoll_event ev;
    int r;

    loop->rn = rn;
    loop->rbuf = malloc(READ_SIZE);
    if (!loop->rbuf)
        return -ENOMEM;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return -errno;
    if (i == 0 || !reuseport) {
        loop->lfd = fd0;
        loop->owns_lfd = i == 0;
    } else {
        r = bind_sibling(fd0);
        if (r < 0)
            return r;
        loop->lfd = r;
        loop->owns_lfd = true;
    }
    /* A shared socket wakes one loop per connection, not all. */
    loop->exclusive = !reuseport;
    ev = (struct epoll_event){.events = EPOLLIN | (loop->exclusive ? EPOLLEXCLUSIVE : 0),
                              .data.ptr = &loop->lfd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->lfd, &ev) < 0)
        return -errno;
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &rn->wake_fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, rn->wake_fd, &ev) < 0)
        return -errno;
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &rn->drain_fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, rn->drain_fd, &ev) < 0)
        return -errno;
    loop->accepting = true;
    return 0;
}

static void event_runner_free(struct event_runner *rn, int fd0)
{
    for (unsigned i = 0; rn->loops && i < rn->n_loops; i++) {
        struct ev_loop *loop = &rn->loops[i];

        if (loop->owns_lfd && loop->lfd >= 0)
            close(loop->lfd);
        if (loop->epfd >= 0)
            close(loop->epfd);
        free(loop->rbuf);
    }
    /* The listener's socket, when loop 0 did not take it. */
    if (fd0 >= 0 && (!rn->loops || !rn->loops[0].owns_lfd))
        close(fd0);
    if (rn->wake_fd >= 0)
        close(rn->wake_fd);
    if (rn->drain_fd >= 0)
        close(rn->drain_fd);
    free(rn->loops);
    core_fd_reserve_free(rn->reserve);
    core_listener_cfg_fini(&rn->cfg);
    free(rn);
}

static void event_runner_stop(struct core_runner *base)
{
    struct event_runner *rn = (struct event_runner *)base;
    uint64_t one = 1;

    (void)!write(rn->wake_fd, &one, sizeof(one));
    for (unsigned i = 0; i < rn->n_loops; i++)
        if (rn->loops[i].started)
            pthread_join(rn->loops[i].thread, NULL);
    event_runner_free(rn, -1);
}

static void event_runner_drain(struct core_runner *base)
{
    struct event_runner *rn = (struct event_runner *)base;
    uint64_t one = 1;

    (void)!write(rn->drain_fd, &one, sizeof(one));
}

static bool event_runner_is_drained(struct core_runner *base)
{
    struct event_runner *rn = (struct event_runner *)base;

    return atomic_load(&rn->n_accepting) == 0 &&
           atomic_load_explicit(&rn->n_conns, memory_order_relaxed) == 0;
}

int core_runner_event_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                            struct core_err *err)
{
    struct event_runner *rn;
    bool reuseport;
    int r;

    rn = calloc(1, sizeof(*rn));
    if (!rn) {
        close(ctx->fd);
        return -ENOMEM;
    }
    rn->base.stop = event_runner_stop;
    rn->base.drain = event_runner_drain;
    rn->base.is_drained = event_runner_is_drained;
    rn->svc = ctx->svc;
    rn->inst = ctx->inst;
    rn->m = ctx->metrics;
    rn->sources = ctx->sources;
    rn->wake_fd = -1;
    rn->drain_fd = -1;
    atomic_init(&rn->n_conns, 0);
    r = core_listener_cfg_copy(ctx->cfg, &rn->cfg);
    if (r < 0)
        goto out_free;
    rn->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rn->drain_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rn->wake_fd < 0 || rn->drain_fd < 0) {
        r = -errno;
        goto out_free;
    }
    rn->loops = calloc(rn->cfg.workers, sizeof(*rn->loops));
    if (!rn->loops) {
        r = -ENOMEM;
        goto out_free;
    }
    if (fcntl(ctx->fd, F_SETFL, fcntl(ctx->fd, F_GETFL) | O_NONBLOCK) < 0) {
        r = -errno;
        goto out_free;
    }
    r = core_fd_reserve_new(rn->cfg.workers, &rn->reserve);
    if (r < 0)
        goto out_free;
    reuseport = has_reuseport(ctx->fd);
    for (; rn->n_loops < rn->cfg.workers; rn->n_loops++) {
        rn->loops[rn->n_loops].epfd = -1;
        rn->loops[rn->n_loops].lfd = -1;
        r = loop_init(rn, rn->n_loops, ctx->fd, reuseport);
        if (r < 0) {
            rn->n_loops++;
            goto out_free;
        }
    }
    atomic_init(&rn->n_accepting, rn->n_loops);
    for (unsigned i = 0; i < rn->n_loops; i++) {
        r = -pthread_create(&rn->loops[i].thread, NULL, loop_main, &rn->loops[i]);
        if (r < 0) {
            event_runner_stop(&rn->base);
            return core_err_set(err, r, NULL, "cannot start an event loop: %s", strerror(-r));
        }
        rn->loops[i].started = true;
    }
    *ret = &rn->base;
    return 0;

out_free:
    event_runner_free(rn, ctx->fd);
    return core_err_set(err, r, NULL, "cannot start the event runner: %s", strerror(-r));
}
