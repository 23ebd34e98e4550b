/*
 * The `event` TCP runner: `workers` epoll loops, each on its own listening socket bound to the
 * listener's address with SO_REUSEPORT (the kernel spreads new connections over them), each
 * serving its connections non-blocking, one state machine per connection. A loop watches its
 * connection for input only while no output is pending (EPOLLOUT then), so a slow reader holds
 * back only itself. Connections idle past idle_timeout_ms are closed from a list kept in order
 * of last activity; max_connections is counted across loops.
 *
 * A service whose session callbacks may block on the disk (core_service.blocking: backup's
 * writes, fsyncs, reads and its directory's commit lock) never has them run on a loop's thread:
 * its connections are handed to a pool of worker threads (core/offload.h), one per runner,
 * shared by its loops, so that the threads a listener holds are bounded whatever its workers
 * and a loop with many slow sessions can use more of them than a share. A connection with work
 * to do (accepted, readable, writable, done) is taken out of the loop's epoll set and its idle
 * list and handed over as one job; the job runs the session until it waits for the socket again
 * (reading what keeps coming, a few times over), closing it on a worker when it ends, and comes
 * back through the loop's inbox (an eventfd in the set), where the loop watches the connection
 * again. So one connection has one job at a time (its callbacks never run in two threads at
 * once, in the order they came), and a connection whose callback runs is not timed out
 * meanwhile (its idle time starts again when the job comes back). A stop waits for the jobs
 * running (a callback blocked on a lock holds the stop until it returns), then cuts every
 * connection through the pool too. Other services keep everything on the loop's thread. A TLS
 * handshake (CPU, no disk) is made on the loop in either case; the session opens after it.
 *
 * When the listener's socket was bound without SO_REUSEPORT, the loops share it instead
 * (EPOLLEXCLUSIVE wakes one loop per connection).
 */
#include "core/runner.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/deadlines.h"
#include "core/log.h"
#include "core/net.h"
#include "core/offload.h"
#include "core/session.h"
#include "core/tls.h"

#define READ_SIZE (64 * 1024)
#define LINGER_MS 1000
#define MAX_EVENTS 64
#define ACCEPT_BATCH 64
/* Reads a job makes in a row while input keeps coming, before the loop's turn. */
#define READ_BATCH 16
/* A runner's worker threads for blocking sessions: as many sessions' callbacks as may block at
 * once before the next ones wait their turn. */
#define OFFLOAD_THREADS 16

/* What a blocking service's job does (struct ev_conn.work). */
enum ev_work {
    EV_WORK_OPEN,   /* open the session, send a greeting */
    EV_WORK_INPUT,  /* read and feed what came */
    EV_WORK_OUTPUT, /* send what is pending, pull what comes next */
    EV_WORK_CLOSE,  /* close the session */
};

/* What a connection waits for once the session cannot go on without the socket. */
enum ev_wait {
    EV_WAIT_READ,    /* input: the session wants more */
    EV_WAIT_RECV,    /* a read found nothing: what it waits for (TLS: maybe room to send) */
    EV_WAIT_WRITE,   /* room to send (TLS: maybe input) */
    EV_WAIT_LINGER,  /* the service is done: linger, then close */
    EV_WAIT_CLOSE,   /* close the session and the connection now */
    EV_WAIT_CLOSED,  /* a job closed the session: close the connection */
    EV_WAIT_REFUSED, /* a job could not open the session: refuse the connection */
};

struct ev_loop;

struct ev_conn {
    struct ev_loop *loop;
    int fd;
    bool lingering;   /* the service is done; in loop.linger (else in loop.open) */
    bool want_out;    /* registered for EPOLLOUT (else for EPOLLIN) */
    bool handshaking; /* TLS: the handshake goes on; no session is open yet */
    bool begun;       /* counted by core_runner_conn_begin() */
    uint64_t accepted_ns;
    struct core_tls_conn *tls; /* NULL: plain */
    struct core_session s;
    struct core_admission adm; /* what the connection holds in the listener's sources */
    /* In loop.open or loop.linger; the idle or linger deadline (the handshake's: from the
     * accept). */
    struct core_dl_node dl;
    /* A blocking service's connection. While busy, the job owns s and fd, and the connection
     * is in no list and not in the epoll set. */
    bool busy;
    bool watched; /* in the loop's epoll set */
    enum ev_work work;
    enum ev_wait wait; /* set by the job */
    struct core_offload_job job;
};

struct event_runner;

/* A loop and everything registered on it belong to its thread. */
struct ev_loop {
    struct event_runner *rn;
    int epfd;
    int lfd;        /* this loop's listening socket */
    bool owns_lfd;  /* false for the listener's socket (the base's) */
    bool exclusive; /* lfd is in the set with EPOLLEXCLUSIVE (shared with other loops) */
    bool accepting; /* until the runner drains */
    bool warned;    /* an accept error was logged; until an accept succeeds */
    int64_t accept_paused_until; /* ms: out of fds or memory, lfd is out of the set until then */
    uint8_t *rbuf;               /* rbuf_size, shared by the loop's connections; NULL until the
                                    first one (an idle listener holds none) */
    size_t rbuf_size;            /* the service's read_size, or READ_SIZE */
    struct core_dl_list open;    /* by last activity */
    struct core_dl_list linger;  /* by linger deadline */
    /* With a pool: where this loop's jobs come back, how many are out, whether it stops. */
    struct core_offload_inbox inbox;
    unsigned n_busy;
    bool stopping;
};

struct event_runner {
    struct core_runner base;
    struct ev_loop *loops;
    unsigned n_loops;
    struct core_offload *pool; /* NULL unless the service is blocking */
    atomic_bool stopping;      /* a loop saw the stop: jobs read no more than once */
};

static struct ev_conn *conn_of(struct core_dl_node *n)
{
    return core_dl_entry(n, struct ev_conn, dl);
}

static struct core_dl_list *list_of(struct ev_conn *c)
{
    return c->lingering ? &c->loop->linger : &c->loop->open;
}

/* The connection was active: its idle deadline starts again. */
static void touch(struct ev_conn *c)
{
    if (!c->lingering)
        core_dl_touch(&c->loop->open, &c->dl, c->loop->rn->base.cfg.idle_timeout_ms);
}

/* The epoll events a -EAGAIN of the connection waits for: out for a send, else in (TLS: what
 * its last call waits for). */
static bool wants_out(const struct ev_conn *c, bool send)
{
    return c->tls ? core_tls_conn_events(c->tls) == POLLOUT : send;
}

/* Whether TLS holds input already decrypted: no epoll event will come for it. */
static bool has_pending(const struct ev_conn *c)
{
    return c->tls && core_tls_conn_pending(c->tls);
}

static int set_events(struct ev_conn *c, bool want_out)
{
    struct epoll_event ev = {.events = want_out ? EPOLLOUT : EPOLLIN, .data.ptr = c};

    if (c->watched && c->want_out == want_out)
        return 0;
    if (epoll_ctl(c->loop->epfd, c->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0)
        return -errno;
    c->watched = true;
    c->want_out = want_out;
    return 0;
}

/* Hands a blocking service's connection, taken out of its list, to a worker for work; the
 * loop leaves it alone until the job comes back (conn_done()). */
static void conn_submit(struct ev_conn *c, enum ev_work work)
{
    struct ev_loop *loop = c->loop;

    if (c->watched) {
        (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->watched = false;
    }
    c->work = work;
    c->busy = true;
    loop->n_busy++;
    core_offload_submit(loop->rn->pool, &c->job);
}

/* Closes the socket, ends the connection and frees it; its session is closed (or was never
 * open). */
static void conn_free(struct ev_conn *c)
{
    core_tls_conn_free(c->tls);
    close(c->fd);
    core_runner_conn_end(&c->loop->rn->base, &c->adm);
    free(c);
}

/* Frees the connection: closes the service's session (on a worker for a blocking service) and
 * the socket, ends the connection. */
static void conn_close(struct ev_conn *c)
{
    core_dl_remove(list_of(c), &c->dl);
    if (c->handshaking) {
        conn_free(c);
        return;
    }
    if (c->loop->rn->pool) {
        conn_submit(c, EV_WORK_CLOSE);
        return;
    }
    core_session_close(&c->s);
    conn_free(c);
}

/* The connection failed or was cut (error: a negative errno, see core_session_fail()). */
static void conn_fail(struct ev_conn *c, int error)
{
    if (c->handshaking)
        core_tls_handshake_cut(c->loop->rn->base.m, error);
    else
        core_session_fail(&c->s, error);
    conn_close(c);
}

/* The service is done: stop sending and read what the client still sends for a moment. */
static void conn_linger(struct ev_conn *c)
{
    core_dl_remove(&c->loop->open, &c->dl);
    c->lingering = true;
    c->dl.deadline = core_now_ms() + LINGER_MS;
    core_dl_append(&c->loop->linger, &c->dl);
    core_tls_conn_shutdown(c->tls);
    (void)shutdown(c->fd, SHUT_WR);
    if (set_events(c, false) < 0)
        conn_close(c);
}

/*
 * Does what the session says next until it waits for the socket, and says what for. Touches
 * c->s and c->fd only: a worker's job calls it too. A failure to send fails the session
 * (EV_WAIT_CLOSE).
 */
static enum ev_wait session_run(struct ev_conn *c)
{
    int r;

    for (;;) {
        switch (core_session_next(&c->s)) {
        case CORE_SESSION_WRITE:
            r = core_session_send(&c->s, c->fd);
            if (r == 0)
                continue;
            if (r == -EAGAIN)
                return EV_WAIT_WRITE;
            core_session_fail(&c->s, r);
            return EV_WAIT_CLOSE;
        case CORE_SESSION_READ:
            return EV_WAIT_READ;
        case CORE_SESSION_LINGER:
            return EV_WAIT_LINGER;
        case CORE_SESSION_CLOSE:
        default:
            return EV_WAIT_CLOSE;
        }
    }
}

/* Has the loop wait for what the session waits for. Returns whether c is still there and
 * waits for input (else it may be freed). */
static bool conn_wait(struct ev_conn *c, enum ev_wait w)
{
    int r;

    switch (w) {
    case EV_WAIT_READ:
        r = set_events(c, false);
        break;
    case EV_WAIT_RECV:
        r = set_events(c, wants_out(c, false));
        break;
    case EV_WAIT_WRITE:
        r = set_events(c, wants_out(c, true));
        break;
    case EV_WAIT_LINGER:
        conn_linger(c);
        return false;
    default:
        conn_close(c);
        return false;
    }
    if (r < 0) {
        conn_fail(c, r);
        return false;
    }
    return w == EV_WAIT_READ;
}

/* Does what the session says next until it waits for the socket. Returns as conn_wait(). */
static bool conn_advance(struct ev_conn *c)
{
    return conn_wait(c, session_run(c));
}

/* The job's input: reads what came and runs the session on it, again while more comes (up to
 * READ_BATCH reads, one once the runner stops; TLS: all it decrypted). */
static enum ev_wait session_read(struct ev_conn *c, uint8_t *buf)
{
    enum ev_wait w = EV_WAIT_READ;

    for (unsigned i = 0; w == EV_WAIT_READ && (i < READ_BATCH || has_pending(c)); i++) {
        int r;

        if (i > 0 && atomic_load_explicit(&c->loop->rn->stopping, memory_order_relaxed))
            break;
        r = core_session_recv(&c->s, c->fd, buf, READ_SIZE);
        if (r == -EAGAIN)
            return EV_WAIT_RECV;
        if (r < 0) {
            core_session_fail(&c->s, r);
            return EV_WAIT_CLOSE;
        }
        w = session_run(c);
    }
    return w;
}

/* A blocking service's job, on a worker thread: its session's callbacks, as c->work says. */
static void conn_job(struct core_offload_job *j, void *scratch)
{
    struct ev_conn *c = (struct ev_conn *)((char *)j - offsetof(struct ev_conn, job));
    const struct core_runner *b = &c->loop->rn->base;
    enum ev_wait w;

    switch (c->work) {
    case EV_WORK_OPEN:
        if (core_session_open(&c->s, b->svc, b->inst, b->m, c->accepted_ns) < 0) {
            c->wait = EV_WAIT_REFUSED;
            return;
        }
        c->s.tls = c->tls;
        w = session_run(c);
        break;
    case EV_WORK_INPUT:
        w = session_read(c, scratch);
        break;
    case EV_WORK_OUTPUT:
        w = session_run(c);
        break;
    case EV_WORK_CLOSE:
    default:
        w = EV_WAIT_CLOSE;
        break;
    }
    if (w == EV_WAIT_READ && has_pending(c))
        w = session_read(c, scratch);
    if (w == EV_WAIT_CLOSE) {
        core_session_close(&c->s);
        w = EV_WAIT_CLOSED;
    }
    c->wait = w;
}

/* A job came back: the loop takes the connection again. May free c. */
static void conn_done(struct ev_conn *c)
{
    struct ev_loop *loop = c->loop;
    struct core_runner *b = &loop->rn->base;

    c->busy = false;
    loop->n_busy--;
    if (c->wait == EV_WAIT_REFUSED && c->begun) {
        /* After a TLS handshake: the connection was served already. */
        core_metrics_add(b->m, CORE_CTR_ERRORS, 1);
        conn_free(c);
        return;
    }
    if (c->wait == EV_WAIT_REFUSED) {
        core_tls_conn_free(c->tls);
        core_runner_conn_refuse(b, c->fd, &c->adm);
        free(c);
        return;
    }
    if (!c->begun) {
        core_runner_conn_begin(b);
        c->begun = true;
    }
    if (c->wait == EV_WAIT_CLOSED) {
        conn_free(c);
        return;
    }
    core_dl_append(&loop->open, &c->dl);
    touch(c);
    if (loop->stopping)
        conn_fail(c, -ECANCELED);
    else
        (void)conn_wait(c, c->wait);
}

/* The loop's inbox is readable: the jobs that came back. */
static void on_done(struct ev_loop *loop)
{
    struct core_offload_job *j = core_offload_inbox_take(&loop->inbox);

    while (j) {
        struct core_offload_job *next = j->next;

        conn_done((struct ev_conn *)((char *)j - offsetof(struct ev_conn, job)));
        j = next;
    }
}

/* A blocking service's connection has work: off to a worker. */
static void conn_hand_over(struct ev_conn *c, enum ev_work work)
{
    core_dl_remove(list_of(c), &c->dl);
    conn_submit(c, work);
}

static void conn_on_readable(struct ev_conn *c)
{
    int r;

    if (c->lingering) {
        ssize_t n = recv(c->fd, c->loop->rbuf, c->loop->rbuf_size, MSG_DONTWAIT);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_close(c);
        return; /* discarded */
    }
    if (c->loop->rn->pool) {
        conn_hand_over(c, EV_WORK_INPUT);
        return;
    }
    do {
        r = core_session_recv(&c->s, c->fd, c->loop->rbuf, c->loop->rbuf_size);
        if (r == -EAGAIN) {
            (void)conn_wait(c, EV_WAIT_RECV);
            return;
        }
        if (r < 0) {
            conn_fail(c, r);
            return;
        }
        touch(c);
        /* Bytes TLS already decrypted are not in the socket: no event will come for them. */
    } while (conn_advance(c) && has_pending(c));
}

/* TLS: advances the handshake; once it is done, opens the session (on a worker for a blocking
 * service). May free c. */
static void conn_handshake(struct ev_conn *c)
{
    struct core_runner *b = &c->loop->rn->base;
    int r = core_tls_handshake(c->tls, b->m);

    if (r == -EAGAIN) {
        if (set_events(c, wants_out(c, false)) < 0)
            conn_fail(c, -EIO);
        return;
    }
    if (r < 0) {
        conn_close(c); /* counted by the handshake */
        return;
    }
    c->handshaking = false;
    if (c->loop->rn->pool) {
        conn_hand_over(c, EV_WORK_OPEN);
        return;
    }
    if (core_session_open(&c->s, b->svc, b->inst, b->m, c->accepted_ns) < 0) {
        core_metrics_add(b->m, CORE_CTR_ERRORS, 1);
        c->handshaking = true; /* nothing to close */
        conn_close(c);
        return;
    }
    c->s.tls = c->tls;
    touch(c);
    if (conn_advance(c) && has_pending(c))
        conn_on_readable(c);
}

static void conn_on_event(struct ev_conn *c, uint32_t events)
{
    if (c->handshaking) {
        conn_handshake(c);
        return;
    }
    if (!c->lingering && c->want_out) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            if (c->loop->rn->pool) {
                conn_hand_over(c, EV_WORK_OUTPUT);
                return;
            }
            touch(c);
            (void)conn_advance(c);
        }
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_on_readable(c);
}

/* A new connection, admitted as *a. */
static void conn_new(struct ev_loop *loop, struct core_accepted *a)
{
    struct event_runner *rn = loop->rn;
    struct core_runner *b = &rn->base;
    struct ev_conn *c = calloc(1, sizeof(*c));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

    if (!loop->rbuf)
        loop->rbuf = malloc(loop->rbuf_size);
    if (!c || !loop->rbuf) {
        free(c);
        core_runner_conn_refuse(b, a->fd, &a->adm);
        return;
    }
    c->loop = loop;
    c->fd = a->fd;
    c->adm = a->adm;
    c->accepted_ns = a->accepted_ns;
    c->job = (struct core_offload_job){.run = conn_job, .inbox = &loop->inbox};
    if (b->tls) {
        if (core_tls_conn_new(b->tls, a->fd, &c->tls) < 0)
            goto out_refuse;
        c->handshaking = true;
    } else if (rn->pool) {
        /* Opened on a worker; watched once it comes back. */
        conn_submit(c, EV_WORK_OPEN);
        return;
    } else if (core_session_open(&c->s, b->svc, b->inst, b->m, a->accepted_ns) < 0) {
        goto out_refuse;
    }
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, a->fd, &ev) < 0) {
        if (!c->handshaking) {
            core_session_fail(&c->s, -ECANCELED);
            core_session_close(&c->s);
        }
        goto out_refuse;
    }
    c->watched = true;
    core_dl_append(&loop->open, &c->dl);
    touch(c); /* a handshake must be done within the idle timeout from here */
    core_runner_conn_begin(b);
    c->begun = true;
    if (c->handshaking)
        conn_handshake(c);
    else
        (void)conn_advance(c);
    return;

out_refuse:
    core_tls_conn_free(c->tls);
    free(c);
    core_runner_conn_refuse(b, a->fd, &a->adm);
}

/* Out of fds or memory: the backlog is left alone for a moment. The listening socket leaves the
 * set meanwhile: level-triggered, with a connection waiting it would wake the loop at once, again
 * and again. */
static void pause_accepting(struct ev_loop *loop)
{
    loop->accept_paused_until = core_now_ms() + CORE_RUNNER_BACKOFF_MS;
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, loop->lfd, NULL);
}

/* The pause is over: the listening socket is watched again (or the pause goes on). */
static bool resume_accepting(struct ev_loop *loop)
{
    struct epoll_event ev = {.events = EPOLLIN | (loop->exclusive ? EPOLLEXCLUSIVE : 0),
                             .data.ptr = &loop->lfd};

    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->lfd, &ev) < 0 && errno != EEXIST) {
        loop->accept_paused_until = core_now_ms() + CORE_RUNNER_BACKOFF_MS;
        return false;
    }
    loop->accept_paused_until = 0;
    return true;
}

static void on_acceptable(struct ev_loop *loop)
{
    if (loop->accept_paused_until)
        return;
    for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
        struct core_accepted a;
        int r = core_runner_accept_conn(&loop->rn->base, loop->lfd, &loop->warned, &a);

        if (r == -EAGAIN)
            return;
        if (r == -ECONNREFUSED)
            continue;
        if (r < 0) {
            pause_accepting(loop);
            return;
        }
        conn_new(loop, &a);
    }
}

/* Closes the connections whose deadline passed; returns the ms until the next one (-1: none). */
static int expire(struct ev_loop *loop)
{
    int64_t now = core_now_ms();
    struct core_dl_node *n;

    while ((n = core_dl_due(&loop->linger, now)))
        conn_close(conn_of(n));
    while ((n = core_dl_due(&loop->open, now)))
        conn_fail(conn_of(n), -ETIMEDOUT);
    return core_dl_timeout(&loop->linger, &loop->open,
                           loop->accept_paused_until > now ? loop->accept_paused_until : INT64_MAX,
                           now);
}

/* Live reconfiguration: stops accepting. A socket of this loop's own (a SO_REUSEPORT sibling)
 * has its backlog taken and is closed, so that the kernel sends new connections to the new
 * runner's; the listener's socket is left alone: the new runner accepts on it, and what waits
 * in its backlog is the new runner's, under the new configuration. */
static void stop_accepting(struct ev_loop *loop)
{
    struct core_runner *b = &loop->rn->base;

    if (!loop->accepting)
        return;
    if (loop->owns_lfd)
        on_acceptable(loop);
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, b->drain_fd, NULL);
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, loop->lfd, NULL);
    if (loop->owns_lfd) {
        close(loop->lfd);
        loop->owns_lfd = false;
        loop->lfd = -1;
    }
    loop->accepting = false;
    loop->accept_paused_until = 0;
    core_runner_accepting_ended(b);
}

static void *loop_main(void *arg)
{
    struct ev_loop *loop = arg;
    struct core_runner *b = &loop->rn->base;
    struct epoll_event evs[MAX_EVENTS];
    bool stop = false;

    while (!stop) {
        int timeout = expire(loop);
        int n = epoll_wait(loop->epfd, evs, MAX_EVENTS, timeout);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            core_log_error("listener %s: epoll_wait: %s", b->cfg.id, strerror(errno));
            break;
        }
        if (loop->accepting && loop->accept_paused_until &&
            loop->accept_paused_until <= core_now_ms() && resume_accepting(loop))
            on_acceptable(loop);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;

            /* The two fds that are not connections carry the address of their fd field. */
            if (p == &b->wake_fd)
                stop = true;
            else if (p == &loop->inbox.fd)
                on_done(loop);
            else if (p == &b->drain_fd)
                stop_accepting(loop);
            else if (p == &loop->lfd)
                on_acceptable(loop);
            else
                conn_on_event(p, evs[i].events);
        }
    }
    /* Cut every connection; jobs that run are waited for, then cut too (conn_done()). */
    loop->stopping = true;
    atomic_store_explicit(&loop->rn->stopping, true, memory_order_relaxed);
    while (loop->open.head)
        conn_fail(conn_of(loop->open.head), -ECANCELED);
    while (loop->linger.head)
        conn_close(conn_of(loop->linger.head));
    while (loop->n_busy) {
        struct pollfd p = {.fd = loop->inbox.fd, .events = POLLIN};

        /* Until every job is back, whatever poll says: they use the loop's memory. */
        (void)poll(&p, 1, -1);
        on_done(loop);
    }
    return NULL;
}

/* Takes the listener's socket out of every loop's set from the thread of the change: once it is
 * shut down, no loop is woken to find it gone. A loop that listens on a socket of its own would
 * still accept on it: that runner drains at once instead. */
static bool event_runner_mute(struct core_runner *b)
{
    struct event_runner *rn = (struct event_runner *)b;

    if (b->own_sockets)
        return false;
    /* A loop paused for want of fds has it out of its set already (ENOENT). Should one put it
     * back meanwhile, it finds the socket shut down, pauses again and drains once told. */
    for (unsigned i = 0; i < rn->n_loops; i++)
        (void)epoll_ctl(rn->loops[i].epfd, EPOLL_CTL_DEL, b->lfd, NULL);
    return true;
}

static bool has_reuseport(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);

    return getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &len) == 0 && v;
}

/* Creates loop i's epoll set and listening socket (loop 0 gets the listener's). */
static int loop_init(struct event_runner *rn, unsigned i, bool reuseport)
{
    struct core_runner *b = &rn->base;
    struct ev_loop *loop = &rn->loops[i];
    struct epoll_event ev;
    int r;

    loop->rn = rn;
    loop->rbuf_size = b->svc->read_size ? b->svc->read_size : READ_SIZE;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return -errno;
    if (i == 0 || !reuseport) {
        loop->lfd = b->lfd;
    } else {
        r = core_net_bind_sibling(b->lfd, CORE_NET_NONBLOCK | CORE_NET_REUSEPORT, CORE_NET_BACKLOG,
                                  NULL);
        if (r < 0)
            return r;
        loop->lfd = r;
        loop->owns_lfd = true;
        b->own_sockets = true;
    }
    /* A shared socket wakes one loop per connection, not all. */
    loop->exclusive = !reuseport;
    ev = (struct epoll_event){.events = EPOLLIN | (loop->exclusive ? EPOLLEXCLUSIVE : 0),
                              .data.ptr = &loop->lfd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->lfd, &ev) < 0)
        return -errno;
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &b->wake_fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, b->wake_fd, &ev) < 0)
        return -errno;
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &b->drain_fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, b->drain_fd, &ev) < 0)
        return -errno;
    if (rn->pool) {
        r = core_offload_inbox_init(&loop->inbox);
        if (r < 0)
            return r;
        ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &loop->inbox.fd};
        if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->inbox.fd, &ev) < 0)
            return -errno;
    }
    loop->accepting = true;
    return 0;
}

static void event_runner_destroy(struct core_runner *base)
{
    struct event_runner *rn = (struct event_runner *)base;

    /* The loops waited for their jobs: the pool is idle, its threads end. */
    core_offload_free(rn->pool);
    for (unsigned i = 0; rn->loops && i < rn->n_loops; i++) {
        struct ev_loop *loop = &rn->loops[i];

        core_offload_inbox_fini(&loop->inbox);
        if (loop->owns_lfd)
            close(loop->lfd);
        if (loop->epfd >= 0)
            close(loop->epfd);
        free(loop->rbuf);
    }
    free(rn->loops);
}

int core_runner_event_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                            struct core_err *err)
{
    unsigned n = ctx->cfg->workers;
    const struct core_runner_spec spec = {
        .destroy = event_runner_destroy, .threads = n, .accepting = n, .drains = true};
    struct event_runner *rn;
    struct core_runner *b;
    bool reuseport;
    int r;

    r = core_runner_new(sizeof(*rn), ctx, &spec, &b, err);
    if (r < 0)
        return r;
    rn = (struct event_runner *)b;
    rn->loops = calloc(n, sizeof(*rn->loops));
    if (!rn->loops)
        return core_runner_abort(b, -ENOMEM, "event runner", err);
    atomic_init(&rn->stopping, false);
    if (b->svc->blocking) {
        r = core_offload_new(OFFLOAD_THREADS, READ_SIZE, b->cfg.id, &rn->pool);
        if (r < 0)
            return core_runner_abort(b, r, "event runner's worker threads", err);
    }
    /* Only loops beside the first bind siblings or share the socket: one loop asks it nothing
     * (and, alone on it, needs no EPOLLEXCLUSIVE). */
    reuseport = n == 1 || has_reuseport(b->lfd);
    for (; rn->n_loops < n; rn->n_loops++) {
        rn->loops[rn->n_loops].epfd = -1;
        rn->loops[rn->n_loops].lfd = -1;
        rn->loops[rn->n_loops].inbox.fd = -1;
        r = loop_init(rn, rn->n_loops, reuseport);
        if (r < 0) {
            rn->n_loops++;
            return core_runner_abort(b, r, "event runner", err);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        char role[16];

        snprintf(role, sizeof(role), "ev%u", i);
        r = core_runner_spawn(b, loop_main, &rn->loops[i], role);
        if (r < 0)
            return core_runner_abort(b, r, "event runner", err);
    }
    b->mute = event_runner_mute;
    *ret = b;
    return 0;
}
