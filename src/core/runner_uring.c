/*
 * The `uring` TCP runner: `workers` loops, each with an io_uring of its own and, like the
 * `event` runner, its own listening socket bound with SO_REUSEPORT (or the listener's, shared,
 * when it was bound without). A loop accepts with one multishot accept (when it is the runner's
 * only loop; with several, each takes its connections with accept4() under the fd reserve's
 * lock, as a poll of its socket in the ring says they come), receives with one multishot
 * receive per connection into a ring of buffers the loop provides to the kernel, and
 * sends what the session answers with one send in flight per connection (the rest waits in the
 * session's output, so bytes leave in order). Everything a turn of the loop asks of the kernel
 * goes in with the one io_uring_enter() that waits for the next completions. Under load that
 * wait asks for several inputs at once, within a window of CORE_BATCH_WINDOW_US (core/batch.h:
 * io_uring's min_wait, kernel 6.12), so that a batch of messages costs one wake-up.
 *
 * Input that arrives while a connection's answer is being sent (or, for a blocking service, while
 * its callbacks run) is kept in the connection's backlog and fed once the session asks for more;
 * a backlog past BACKLOG_MAX stops the connection's receive until it is fed, so a client that
 * does not read holds back only itself. When the provided buffers run out, the receives that
 * found none end (ENOBUFS) and are started again as buffers come back.
 *
 * A blocking service (core_service.blocking: backup) never has its session callbacks run on a
 * loop: each step (open, input, what comes next, close) is a job of a pool of worker threads
 * (core/offload.h), one job at a time per connection, as in the `event` runner; the I/O stays
 * on the ring. TLS is not offered with this model (the configuration refuses it).
 *
 * A connection's memory lives until every operation of the ring that names it has completed:
 * closing one cancels them (by fd) and frees it once their last completions came.
 */
#include "core/runner.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/batch.h"
#include "core/clock.h"
#include "core/deadlines.h"
#include "core/log.h"
#include "core/net.h"
#include "core/offload.h"
#include "core/session.h"

#define RING_ENTRIES 256
#define CQ_ENTRIES 4096
#define BUF_GROUP 0
#define BUF_COUNT 512 /* a power of two */
#define BUF_SIZE_MAX (16 * 1024)
#define LINGER_MS 1000
#define ACCEPT_BATCH 64
#define BACKLOG_MAX (256 * 1024)
#define OFFLOAD_THREADS 16
#define OFFLOAD_SCRATCH 4096

/* What a completion is for: the low bits of its user_data, the rest a loop or a connection. */
enum ur_tag {
    TAG_IGNORE, /* a cancel */
    TAG_ACCEPT, /* the loop's multishot accept */
    TAG_RECV,   /* a connection's multishot receive */
    TAG_SEND,   /* a connection's send */
    TAG_WAKE,   /* the runner stops */
    TAG_DRAIN,  /* the runner drains */
    TAG_INBOX,  /* jobs came back */
    TAG_LPOLL,  /* out of fds: the listening socket is readable */
};
#define TAG_MASK 7u

/* A session step (struct ur_conn.work): on the loop, or a job's for a blocking service. */
enum ur_work {
    WORK_OPEN,  /* open the session */
    WORK_INPUT, /* feed the backlog (and then the end of input, if it came) */
    WORK_NEXT,  /* ask what comes next (the answer was sent) */
    WORK_CLOSE, /* close the session */
};

struct ur_loop;

struct ur_conn {
    struct ur_loop *loop;
    int fd;
    bool begun;      /* counted by core_runner_conn_begin() */
    bool is_open;    /* the session is open */
    bool lingering;  /* the service is done: in loop.linger (else in loop.open) */
    bool closing;    /* on its way out: in no list */
    bool recv_armed; /* the multishot receive is in the ring */
    bool recv_off;   /* the backlog is full: no receive until it is fed */
    bool eof;        /* the client's end of input came (and is to be fed once) */
    bool sending;    /* a send of s.out is in the ring */
    bool busy;       /* a job has the session */
    uint64_t accepted_ns;
    struct core_session s;
    struct core_admission adm;
    struct core_buf backlog; /* input the session could not take yet */
    struct core_buf feed;    /* the input a job feeds */
    bool feed_eof;
    enum ur_work work;
    enum core_session_next next; /* set by the step */
    bool refused;                /* the step could not open the session */
    struct core_offload_job job;
    struct core_dl_node dl; /* in loop.open or loop.linger */
};

struct uring_runner;

/* A loop and everything on its ring belong to its thread. */
struct ur_loop {
    struct uring_runner *rn;
    struct io_uring ring;
    bool has_ring;
    bool disabled;           /* enabled by the loop's thread when it starts */
    bool batches;            /* the kernel has min_wait: a wait may ask for several completions */
    struct core_batch batch; /* inputs (receives, accepts) the next wait asks for */
    unsigned n_sends; /* sends queued since the last wait: each completes as it is submitted */
    struct io_uring_buf_ring *br;
    size_t br_size;
    uint8_t *bufs;
    size_t buf_size;
    int lfd;
    bool owns_lfd;
    bool accepting;    /* until the runner drains */
    bool accept_armed; /* the multishot accept is in the ring */
    bool lpoll_armed;  /* out of fds: a poll of lfd is in the ring instead */
    bool fd_short;     /* out of fds: accept4() alone until an fd comes (accept_again()) */
    bool poll_only;    /* one of several loops: accept4() alone, always (accept_again()) */
    bool warned;
    int64_t accept_paused_until; /* ms; 0: not paused */
    struct core_dl_list open;    /* by idle deadline */
    struct core_dl_list linger;  /* by linger deadline */
    unsigned n_conns;            /* connections of this loop not yet freed */
    unsigned n_busy;
    bool stopping;
    struct core_offload_inbox inbox;
};

struct uring_runner {
    struct core_runner base;
    struct ur_loop *loops;
    unsigned n_loops;
    struct core_offload *pool; /* NULL unless the service is blocking */
};

static inline uint64_t ud(const void *p, enum ur_tag t)
{
    return (uint64_t)(uintptr_t)p | t;
}

static struct ur_conn *conn_of(struct core_dl_node *n)
{
    return core_dl_entry(n, struct ur_conn, dl);
}

/* A free submission entry, submitting what is queued when the ring is full. */
static struct io_uring_sqe *get_sqe(struct ur_loop *loop)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);

    while (!sqe) {
        (void)io_uring_submit(&loop->ring);
        sqe = io_uring_get_sqe(&loop->ring);
    }
    return sqe;
}

static void touch(struct ur_conn *c)
{
    if (!c->lingering && !c->closing && !c->busy)
        core_dl_touch(&c->loop->open, &c->dl, c->loop->rn->base.cfg.idle_timeout_ms);
}

static void arm_accept(struct ur_loop *loop)
{
    struct io_uring_sqe *sqe = get_sqe(loop);

    io_uring_prep_multishot_accept(sqe, loop->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud(loop, TAG_ACCEPT));
    loop->accept_armed = true;
}

static void arm_poll(struct ur_loop *loop, int fd, enum ur_tag t)
{
    struct io_uring_sqe *sqe = get_sqe(loop);

    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, ud(loop, t));
}

static void arm_recv(struct ur_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(c->loop);

    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, ud(c, TAG_RECV));
    c->recv_armed = true;
}

static void arm_send(struct ur_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(c->loop);

    io_uring_prep_send(sqe, c->fd, c->s.out.data, c->s.out.len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(c, TAG_SEND));
    c->sending = true;
    c->loop->n_sends++;
}

/* Cancels every operation of the ring on fd; their completions come (ECANCELED or done). */
static void cancel_fd(struct ur_loop *loop, int fd)
{
    struct io_uring_sqe *sqe = get_sqe(loop);

    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, ud(NULL, TAG_IGNORE));
}

static void recycle(struct ur_loop *loop, unsigned bid)
{
    io_uring_buf_ring_add(loop->br, loop->bufs + (size_t)bid * loop->buf_size,
                          (unsigned)loop->buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(loop->br, 1);
}

static void conn_act(struct ur_conn *c);
static void conn_close(struct ur_conn *c, int error);

/* Runs step c->work of the session and asks what comes next (c->next). Touches c->s, c->feed
 * and c->work only: a job of a blocking service runs it too. */
static void session_step(struct ur_conn *c)
{
    const struct core_runner *b = &c->loop->rn->base;

    switch (c->work) {
    case WORK_OPEN:
        if (core_session_open(&c->s, b->svc, b->inst, b->m, c->accepted_ns) < 0) {
            c->refused = true;
            return;
        }
        break;
    case WORK_INPUT:
        if (c->feed.len) {
            core_session_input(&c->s, c->feed.data, c->feed.len);
            core_buf_consume(&c->feed, c->feed.len);
        } else if (c->feed_eof) {
            c->feed_eof = false;
            core_session_input(&c->s, NULL, 0);
        }
        break;
    case WORK_NEXT:
        break;
    case WORK_CLOSE:
    default:
        core_session_close(&c->s);
        return;
    }
    c->next = core_session_next(&c->s);
}

static void conn_job(struct core_offload_job *j, void *scratch)
{
    struct ur_conn *c = (struct ur_conn *)((char *)j - offsetof(struct ur_conn, job));

    (void)scratch;
    session_step(c);
}

/* Has the session take step work: now, or on a worker for a blocking service (the loop acts
 * on what comes next when the job is back). */
static void conn_step(struct ur_conn *c, enum ur_work work)
{
    struct ur_loop *loop = c->loop;

    c->work = work;
    if (work == WORK_INPUT) {
        /* What arrived so far is fed in one go; what comes meanwhile waits in the backlog. */
        struct core_buf t = c->feed;

        c->feed = c->backlog;
        c->backlog = t;
        if (!c->feed.len && c->eof) {
            c->feed_eof = true;
            c->eof = false;
        }
    }
    if (loop->rn->pool) {
        if (!c->closing)
            core_dl_remove(c->lingering ? &loop->linger : &loop->open, &c->dl);
        c->busy = true;
        loop->n_busy++;
        core_offload_submit(loop->rn->pool, &c->job);
        return;
    }
    session_step(c);
    if (work == WORK_CLOSE) {
        c->is_open = false;
        conn_close(c, 0);
        return;
    }
    conn_act(c);
}

/* Frees a closing connection once nothing of the ring or of a job refers to it. */
static void conn_finish(struct ur_conn *c)
{
    struct ur_loop *loop = c->loop;
    struct core_runner *b = &loop->rn->base;

    if (c->recv_armed || c->sending || c->busy)
        return;
    if (c->is_open) {
        conn_step(c, WORK_CLOSE);
        return;
    }
    core_buf_fini(&c->backlog);
    core_buf_fini(&c->feed);
    if (c->begun) {
        close(c->fd);
        core_runner_conn_end(b, &c->adm);
    } else {
        core_runner_conn_refuse(b, c->fd, &c->adm);
    }
    loop->n_conns--;
    free(c);
}

/* Closes the connection: the session failed with error (a negative errno; 0: it ended). */
static void conn_close(struct ur_conn *c, int error)
{
    if (!c->closing) {
        if (!c->busy)
            core_dl_remove(c->lingering ? &c->loop->linger : &c->loop->open, &c->dl);
        c->closing = true;
        if (c->recv_armed || c->sending)
            cancel_fd(c->loop, c->fd);
    }
    if (error && c->is_open && !c->busy)
        core_session_fail(&c->s, error);
    conn_finish(c);
}

static void conn_linger(struct ur_conn *c)
{
    struct ur_loop *loop = c->loop;

    core_dl_remove(&loop->open, &c->dl);
    c->lingering = true;
    c->dl.deadline = core_now_ms() + LINGER_MS;
    core_dl_append(&loop->linger, &c->dl);
    core_buf_fini(&c->backlog);
    (void)shutdown(c->fd, SHUT_WR);
    if (c->eof)
        conn_close(c, 0);
    else if (!c->recv_armed)
        arm_recv(c);
}

/* Acts on what the session said comes next (c->next), the connection being the loop's. */
static void conn_act(struct ur_conn *c)
{
    if (c->closing) {
        conn_finish(c);
        return;
    }
    switch (c->next) {
    case CORE_SESSION_WRITE:
        arm_send(c);
        return;
    case CORE_SESSION_READ:
        if (c->backlog.len || c->eof) {
            conn_step(c, WORK_INPUT);
            return;
        }
        if (!c->recv_armed) {
            c->recv_off = false;
            arm_recv(c);
        }
        return;
    case CORE_SESSION_LINGER:
        conn_linger(c);
        return;
    case CORE_SESSION_CLOSE:
    default:
        conn_close(c, 0);
        return;
    }
}

/* A job came back. */
static void conn_done(struct ur_conn *c)
{
    struct ur_loop *loop = c->loop;

    c->busy = false;
    loop->n_busy--;
    if (c->work == WORK_OPEN) {
        if (c->refused) {
            c->closing = true;
            conn_finish(c);
            return;
        }
        c->is_open = true;
        core_runner_conn_begin(&loop->rn->base);
        c->begun = true;
    }
    if (c->work == WORK_CLOSE) {
        c->is_open = false;
        c->closing = true;
        conn_finish(c);
        return;
    }
    if (!c->closing) {
        if (c->lingering)
            core_dl_append(&loop->linger, &c->dl);
        else
            core_dl_append(&loop->open, &c->dl);
        touch(c);
        if (loop->stopping) {
            /* What the job answered leaves if the socket takes it at once (a commit that a stop
             * waited for is answered), then the connection is cut. */
            if (c->is_open && c->next == CORE_SESSION_WRITE && c->s.out.len) {
                ssize_t n = send(c->fd, c->s.out.data, c->s.out.len, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (n > 0)
                    core_session_sent(&c->s, (size_t)n);
            }
            conn_close(c, -ECANCELED);
            return;
        }
    } else if (c->is_open) {
        core_session_fail(&c->s, -ECANCELED);
    }
    conn_act(c);
}

static void on_inbox(struct ur_loop *loop)
{
    struct core_offload_job *j = core_offload_inbox_take(&loop->inbox);

    while (j) {
        struct core_offload_job *next = j->next;

        conn_done((struct ur_conn *)((char *)j - offsetof(struct ur_conn, job)));
        j = next;
    }
    arm_poll(loop, loop->inbox.fd, TAG_INBOX);
}

/* The session takes input now (its answer is sent, it waits for more, nothing holds it). */
static bool takes_input(const struct ur_conn *c)
{
    return !c->busy && !c->sending && !c->closing && !c->lingering && c->is_open &&
           c->next == CORE_SESSION_READ && !c->backlog.len;
}

/* The multishot receive ended without an end of input: it is started again unless the
 * connection closes or its backlog is full (then once the backlog is fed: conn_act()). */
static void recv_ended(struct ur_conn *c)
{
    if (c->closing) {
        conn_finish(c);
        return;
    }
    if (c->recv_off && c->backlog.len > BACKLOG_MAX && !c->lingering)
        return;
    c->recv_off = false;
    arm_recv(c);
}

static void on_recv(struct ur_conn *c, const struct io_uring_cqe *cqe)
{
    struct ur_loop *loop = c->loop;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    int res = cqe->res;

    if (!more)
        c->recv_armed = false;
    if (res > 0) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        const uint8_t *data = loop->bufs + (size_t)bid * loop->buf_size;

        if (c->closing || c->lingering) {
            recycle(loop, bid);
        } else if (takes_input(c) && !loop->rn->pool) {
            touch(c);
            core_session_input(&c->s, data, (size_t)res);
            recycle(loop, bid);
            c->next = core_session_next(&c->s);
            conn_act(c);
        } else {
            int r = core_buf_append(&c->backlog, data, (size_t)res);

            recycle(loop, bid);
            if (r < 0) {
                conn_close(c, r);
                return;
            }
            touch(c);
            if (!c->busy && !c->sending && c->is_open && c->next == CORE_SESSION_READ)
                conn_step(c, WORK_INPUT);
            else if (c->backlog.len > BACKLOG_MAX && c->recv_armed && !c->recv_off) {
                /* The session does not keep up: no more input until it took this. */
                struct io_uring_sqe *sqe = get_sqe(loop);

                io_uring_prep_cancel64(sqe, ud(c, TAG_RECV), 0);
                sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
                io_uring_sqe_set_data64(sqe, ud(NULL, TAG_IGNORE));
                c->recv_off = true;
            }
        }
        if (!more && !c->recv_armed)
            recv_ended(c);
        return;
    }
    if (res == -ENOBUFS || (res == -ECANCELED && c->recv_off)) {
        /* Out of provided buffers (the loop gives them back as it goes), or stopped for a full
         * backlog. */
        if (!c->recv_armed)
            recv_ended(c);
        return;
    }
    if (c->closing) {
        conn_finish(c);
        return;
    }
    if (res == 0) {
        if (c->lingering) {
            conn_close(c, 0);
            return;
        }
        c->eof = true;
        if (!c->busy && !c->sending && c->is_open && c->next == CORE_SESSION_READ)
            conn_step(c, WORK_INPUT);
        return;
    }
    if (c->lingering) {
        conn_close(c, 0);
        return;
    }
    if (c->busy) {
        c->eof = true; /* the job's session sees the end and the close follows */
        return;
    }
    conn_close(c, res);
}

static void on_send(struct ur_conn *c, int res)
{
    c->sending = false;
    if (c->closing) {
        conn_finish(c);
        return;
    }
    if (res < 0) {
        conn_close(c, res == -ECANCELED ? -ECANCELED : res);
        return;
    }
    touch(c);
    core_session_sent(&c->s, (size_t)res);
    if (c->s.out.len) {
        arm_send(c);
        return;
    }
    if (c->loop->rn->pool) {
        conn_step(c, WORK_NEXT);
        return;
    }
    c->next = core_session_next(&c->s);
    conn_act(c);
}

/* A new connection, admitted as *a. */
static void conn_new(struct ur_loop *loop, struct core_accepted *a)
{
    struct core_runner *b = &loop->rn->base;
    struct ur_conn *c = calloc(1, sizeof(*c));

    if (!c) {
        core_runner_conn_refuse(b, a->fd, &a->adm);
        return;
    }
    c->loop = loop;
    c->fd = a->fd;
    c->adm = a->adm;
    c->accepted_ns = a->accepted_ns;
    c->job = (struct core_offload_job){.run = conn_job, .inbox = &loop->inbox};
    loop->n_conns++;
    core_dl_append(&loop->open, &c->dl);
    if (loop->rn->pool) {
        conn_step(c, WORK_OPEN); /* begun once the job is back */
        return;
    }
    c->work = WORK_OPEN;
    session_step(c);
    if (c->refused) {
        core_dl_remove(&loop->open, &c->dl);
        loop->n_conns--;
        core_runner_conn_refuse(b, c->fd, &c->adm);
        free(c);
        return;
    }
    c->is_open = true;
    core_runner_conn_begin(b);
    c->begun = true;
    touch(c);
    conn_act(c);
}

/* Takes what waits in the backlog with accept4() (the reserve refuses one when out of fds);
 * returns false when accepting failed and is to pause. */
static bool accept_direct(struct ur_loop *loop)
{
    for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
        struct core_accepted a;
        int r = core_runner_accept_conn(&loop->rn->base, loop->lfd, &loop->warned, &a);

        if (r == -EAGAIN)
            return true;
        if (r == -ECONNREFUSED)
            continue;
        if (r < 0)
            return false;
        loop->fd_short = false; /* an fd came without the reserve */
        conn_new(loop, &a);
    }
    return true;
}

/*
 * The accept is out of the ring: the backlog is taken with accept4(), then the ring's accept is
 * armed again, or after a pause. Once out of fds (fd_short), connections are taken with
 * accept4() alone, as a poll of the socket says they come, until one gets an fd without the
 * reserve: the ring's accept takes an fd with none of the reserve's lock (another loop could take
 * the one given up for a refusal), and fails at once, with no connection waiting, while no fd is
 * free. The loops of a runner with several always accept that way, for the same lock.
 */
static void accept_again(struct ur_loop *loop)
{
    if (!accept_direct(loop)) {
        loop->accept_paused_until = core_now_ms() + CORE_RUNNER_BACKOFF_MS;
    } else if (loop->fd_short || loop->poll_only) {
        arm_poll(loop, loop->lfd, TAG_LPOLL);
        loop->lpoll_armed = true;
    } else {
        arm_accept(loop);
    }
}

/* The runner drains and the accept is out of the ring. A socket of the loop's own (a
 * SO_REUSEPORT sibling) has its backlog taken and is closed (the kernel sends new connections
 * to the new runner's). The listener's socket is left alone: on a live change the new runner
 * accepts on it, and what waits in its backlog is the new runner's, under the new
 * configuration. */
static void accepting_done(struct ur_loop *loop)
{
    if (loop->owns_lfd) {
        (void)accept_direct(loop);
        close(loop->lfd);
        loop->owns_lfd = false;
        loop->lfd = -1;
    }
    loop->accept_paused_until = 0;
    core_runner_accepting_ended(&loop->rn->base);
}

static void cancel_accept(struct ur_loop *loop)
{
    struct io_uring_sqe *sqe = get_sqe(loop);

    io_uring_prep_cancel64(sqe, ud(loop, TAG_ACCEPT), 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, ud(NULL, TAG_IGNORE));
}

/* Whether fd is within the process's fd limit. The multishot accept keeps the limit of when it
 * was armed: one lowered since (prlimit) is seen here. */
static bool is_within_limit(int fd)
{
    struct rlimit rl;

    return getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
           (rlim_t)fd < rl.rlim_cur;
}

static void on_accept(struct ur_loop *loop, const struct io_uring_cqe *cqe)
{
    struct core_runner *b = &loop->rn->base;
    struct core_accepted a;

    if (!(cqe->flags & IORING_CQE_F_MORE))
        loop->accept_armed = false;
    if (cqe->res >= 0) {
        if (loop->stopping) {
            close(cqe->res);
        } else if (!is_within_limit(cqe->res)) {
            /* Out of fds: refused, and the accept armed again under the limit of now. */
            if (core_runner_admit_conn(b, cqe->res, core_now_ns(), &a) == 0)
                core_runner_conn_refuse(b, a.fd, &a.adm);
            loop->fd_short = true;
            if (loop->accept_armed)
                cancel_accept(loop);
        } else if (core_runner_admit_conn(b, cqe->res, core_now_ns(), &a) == 0) {
            loop->warned = false;
            conn_new(loop, &a);
        }
    }
    if (loop->accept_armed || loop->stopping)
        return;
    if (!loop->accepting) {
        accepting_done(loop);
        return;
    }
    /* The accept ended (out of fds or memory, or the kernel ended it). */
    if (cqe->res == -EMFILE || cqe->res == -ENFILE)
        loop->fd_short = true;
    accept_again(loop);
}

/* Out of fds, a connection came. */
static void on_lpoll(struct ur_loop *loop)
{
    if (loop->stopping)
        return;
    if (!loop->accepting) {
        accepting_done(loop);
        return;
    }
    accept_again(loop);
}

static void cancel_lpoll(struct ur_loop *loop)
{
    struct io_uring_sqe *sqe = get_sqe(loop);

    io_uring_prep_poll_remove(sqe, ud(loop, TAG_LPOLL));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, ud(NULL, TAG_IGNORE));
}

static void stop_accepting(struct ur_loop *loop)
{
    if (!loop->accepting)
        return;
    loop->accepting = false;
    if (loop->accept_armed) {
        cancel_accept(loop);
        return;
    }
    if (loop->lpoll_armed) {
        cancel_lpoll(loop);
        return; /* done once the poll's completion comes */
    }
    accepting_done(loop);
}

/* Closes the connections whose deadline passed; returns the ms until the next one (-1: none). */
static int expire(struct ur_loop *loop)
{
    int64_t now = core_now_ms();
    struct core_dl_node *n;

    if (loop->accepting && loop->accept_paused_until && loop->accept_paused_until <= now) {
        loop->accept_paused_until = 0;
        accept_again(loop);
    }
    while ((n = core_dl_due(&loop->linger, now)))
        conn_close(conn_of(n), 0);
    while ((n = core_dl_due(&loop->open, now)))
        conn_close(conn_of(n), -ETIMEDOUT);
    return core_dl_timeout(&loop->linger, &loop->open,
                           loop->accept_paused_until ? loop->accept_paused_until : INT64_MAX, now);
}

static void on_cqe(struct ur_loop *loop, const struct io_uring_cqe *cqe)
{
    uint64_t d = io_uring_cqe_get_data64(cqe);
    void *p = (void *)(uintptr_t)(d & ~(uint64_t)TAG_MASK);

    switch ((enum ur_tag)(d & TAG_MASK)) {
    case TAG_ACCEPT:
        on_accept(loop, cqe);
        break;
    case TAG_RECV:
        on_recv(p, cqe);
        break;
    case TAG_SEND:
        on_send(p, cqe->res);
        break;
    case TAG_WAKE:
        loop->stopping = true;
        break;
    case TAG_DRAIN:
        stop_accepting(loop);
        break;
    case TAG_INBOX:
        on_inbox(loop);
        break;
    case TAG_LPOLL:
        loop->lpoll_armed = false;
        on_lpoll(loop);
        break;
    case TAG_IGNORE:
    default:
        break;
    }
}

/* Waits for completions (at most timeout ms; -1: no limit), submitting what is queued, and
 * handles them. Returns 0 or a negative errno the loop cannot go on after. */
static int turn(struct ur_loop *loop, int timeout)
{
    struct __kernel_timespec ts = {.tv_sec = timeout / 1000,
                                   .tv_nsec = (long long)(timeout % 1000) * 1000000};
    struct io_uring_cqe *cqe;
    unsigned head, n = 0, n_in = 0;
    int r;

    /* The sends complete as they go in (or come back at once): a wait asks for them and for
     * the inputs the load has shown, and never waits out its window for the sends alone. */
    if (loop->batch.want > 1)
        r = core_batch_submit_and_wait(
            &loop->ring,
            (loop->n_sends < CQ_ENTRIES / 2 ? loop->n_sends : CQ_ENTRIES / 2) + loop->batch.want,
            timeout >= 0 ? &ts : NULL);
    else
        r = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, timeout >= 0 ? &ts : NULL, NULL);
    loop->n_sends = 0;
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
        return r;
    io_uring_for_each_cqe(&loop->ring, head, cqe)
    {
        enum ur_tag t = (enum ur_tag)(io_uring_cqe_get_data64(cqe) & TAG_MASK);

        n_in += t == TAG_RECV || t == TAG_ACCEPT;
        on_cqe(loop, cqe);
        n++;
    }
    io_uring_cq_advance(&loop->ring, n);
    if (loop->batches)
        core_batch_turned(&loop->batch, n_in, core_batch_max(loop->n_conns));
    return 0;
}

static void *loop_main(void *arg)
{
    struct ur_loop *loop = arg;
    struct core_runner *b = &loop->rn->base;
    int r = 0;

    if (loop->disabled) {
        /* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
        r = (int)syscall(__NR_io_uring_register, loop->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                         NULL, 0);
        if (r < 0)
            r = -errno;
        if (r < 0) {
            core_log_error("listener %s: io_uring: %s", b->cfg.id, strerror(-r));
            loop->stopping = true;
        }
    }
    while (!loop->stopping) {
        r = turn(loop, expire(loop));
        if (r < 0) {
            core_log_error("listener %s: io_uring: %s", b->cfg.id, strerror(-r));
            loop->stopping = true;
        }
    }
    /* Cut every connection, then wait for the ring to give them back (and the jobs), and the
     * listening socket: a request in the ring holds it, and it would take connections until the
     * ring's teardown, which the kernel finishes later, let it go. */
    if (loop->accept_armed)
        cancel_accept(loop);
    if (loop->lpoll_armed)
        cancel_lpoll(loop);
    while (loop->open.head)
        conn_close(conn_of(loop->open.head), -ECANCELED);
    while (loop->linger.head)
        conn_close(conn_of(loop->linger.head), 0);
    while (r == 0 && (loop->n_conns || loop->accept_armed || loop->lpoll_armed)) {
        r = turn(loop, -1);
        while (loop->open.head)
            conn_close(conn_of(loop->open.head), -ECANCELED);
        while (loop->linger.head)
            conn_close(conn_of(loop->linger.head), 0);
    }
    return NULL;
}

static bool has_reuseport(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);

    return getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &len) == 0 && v;
}

static int ring_init(struct ur_loop *loop)
{
    /* Only the loop's thread submits, and completions are handled when it asks for them: the
     * ring is made here disabled and enabled by that thread, which becomes its only issuer. */
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
                                         IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER |
                                         IORING_SETUP_DEFER_TASKRUN,
                                .cq_entries = CQ_ENTRIES};
    struct io_uring_buf_reg reg = {0};
    int r;

    r = io_uring_queue_init_params(RING_ENTRIES, &loop->ring, &p);
    if (r == -EINVAL) {
        /* A kernel before 6.1. */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
                                     .cq_entries = CQ_ENTRIES};
        r = io_uring_queue_init_params(RING_ENTRIES, &loop->ring, &p);
    }
    if (r < 0)
        return r;
    loop->has_ring = true;
    loop->disabled = p.flags & IORING_SETUP_R_DISABLED;
    loop->batches = p.features & IORING_FEAT_MIN_TIMEOUT;
    loop->br_size = BUF_COUNT * sizeof(struct io_uring_buf);
    loop->br =
        mmap(NULL, loop->br_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (loop->br == MAP_FAILED) {
        loop->br = NULL;
        return -errno;
    }
    loop->bufs = malloc(BUF_COUNT * loop->buf_size);
    if (!loop->bufs)
        return -ENOMEM;
    reg.ring_addr = (uint64_t)(uintptr_t)loop->br;
    reg.ring_entries = BUF_COUNT;
    reg.bgid = BUF_GROUP;
    r = io_uring_register_buf_ring(&loop->ring, &reg, 0);
    if (r < 0)
        return r;
    io_uring_buf_ring_init(loop->br);
    for (unsigned i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(loop->br, loop->bufs + (size_t)i * loop->buf_size,
                              (unsigned)loop->buf_size, (unsigned short)i,
                              io_uring_buf_ring_mask(BUF_COUNT), (int)i);
    io_uring_buf_ring_advance(loop->br, BUF_COUNT);
    return 0;
}

/* Makes loop i's ring and listening socket (loop 0 gets the listener's). */
static int loop_init(struct uring_runner *rn, unsigned i, bool reuseport)
{
    struct core_runner *b = &rn->base;
    struct ur_loop *loop = &rn->loops[i];
    size_t want = b->svc->read_size ? b->svc->read_size : BUF_SIZE_MAX;
    int r;

    loop->rn = rn;
    loop->buf_size = want < BUF_SIZE_MAX ? want : BUF_SIZE_MAX;
    r = ring_init(loop);
    if (r < 0)
        return r;
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
    if (rn->pool) {
        r = core_offload_inbox_init(&loop->inbox);
        if (r < 0)
            return r;
        arm_poll(loop, loop->inbox.fd, TAG_INBOX);
    }
    arm_poll(loop, b->wake_fd, TAG_WAKE);
    arm_poll(loop, b->drain_fd, TAG_DRAIN);
    loop->poll_only = b->cfg.workers > 1;
    if (loop->poll_only) {
        arm_poll(loop, loop->lfd, TAG_LPOLL);
        loop->lpoll_armed = true;
    } else {
        arm_accept(loop);
    }
    loop->accepting = true;
    return 0;
}

static void uring_runner_destroy(struct core_runner *base)
{
    struct uring_runner *rn = (struct uring_runner *)base;

    core_offload_free(rn->pool);
    for (unsigned i = 0; rn->loops && i < rn->n_loops; i++) {
        struct ur_loop *loop = &rn->loops[i];

        if (loop->has_ring)
            io_uring_queue_exit(&loop->ring);
        core_offload_inbox_fini(&loop->inbox);
        if (loop->owns_lfd)
            close(loop->lfd);
        if (loop->br)
            munmap(loop->br, loop->br_size);
        free(loop->bufs);
    }
    free(rn->loops);
}

int core_runner_uring_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                            struct core_err *err)
{
    unsigned n = ctx->cfg->workers;
    const struct core_runner_spec spec = {
        .destroy = uring_runner_destroy, .threads = n, .accepting = n, .drains = true};
    struct uring_runner *rn;
    struct core_runner *b;
    bool reuseport;
    int r;

    r = core_runner_new(sizeof(*rn), ctx, &spec, &b, err);
    if (r < 0)
        return r;
    rn = (struct uring_runner *)b;
    rn->loops = calloc(n, sizeof(*rn->loops));
    if (!rn->loops)
        return core_runner_abort(b, -ENOMEM, "uring runner", err);
    if (b->svc->blocking) {
        r = core_offload_new(OFFLOAD_THREADS, OFFLOAD_SCRATCH, b->cfg.id, &rn->pool);
        if (r < 0)
            return core_runner_abort(b, r, "uring runner's worker threads", err);
    }
    /* Only loops beside the first bind siblings: one loop asks the socket nothing. */
    reuseport = n > 1 && has_reuseport(b->lfd);
    for (; rn->n_loops < n; rn->n_loops++) {
        rn->loops[rn->n_loops].lfd = -1;
        rn->loops[rn->n_loops].inbox.fd = -1;
        r = loop_init(rn, rn->n_loops, reuseport);
        if (r < 0) {
            rn->n_loops++;
            return core_runner_abort(b, r, "uring runner", err);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        char role[16];

        snprintf(role, sizeof(role), "ur%u", i);
        r = core_runner_spawn(b, loop_main, &rn->loops[i], role);
        if (r < 0)
            return core_runner_abort(b, r, "uring runner", err);
    }
    *ret = b;
    return 0;
}

/* The kernel's answer to io_uring_setup(), asked once. */
struct uring_probe {
    pthread_once_t once;
    int error;
    char why[160];
};

static struct uring_probe probe = {.once = PTHREAD_ONCE_INIT};

static void probe_run(void)
{
    struct io_uring ring;
    int r = io_uring_queue_init(2, &ring, 0);
    FILE *f;
    int disabled = -1;

    if (r == 0) {
        io_uring_queue_exit(&ring);
        return;
    }
    probe.error = r;
    f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (f) {
        if (fscanf(f, "%d", &disabled) != 1)
            disabled = -1;
        fclose(f);
    }
    if (disabled >= 0)
        snprintf(probe.why, sizeof(probe.why), "io_uring_setup: %s (kernel.io_uring_disabled=%d)",
                 strerror(-r), disabled);
    else
        snprintf(probe.why, sizeof(probe.why), "io_uring_setup: %s", strerror(-r));
}

int core_runner_uring_usable(struct core_err *err)
{
    (void)pthread_once(&probe.once, probe_run);
    if (probe.error == 0)
        return 0;
    return core_err_set(err, -EINVAL, "model", "model: 'uring' is not available: %s", probe.why);
}
