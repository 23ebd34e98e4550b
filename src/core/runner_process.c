/*
 * The TCP `process` runner: the lecture's multi-processing server. An acceptor thread accepts
 * and forks one child process per connection. The child closes every fd but its connection and
 * the runner's wake eventfd, resets its signals, serves the session and _exit()s; it never
 * starts a thread. The counters live in memory the listener shares with its children
 * (MAP_SHARED), so the child's atomic additions are seen by the daemon at once.
 *
 * The parent keeps one pidfd per child in its poll set and reaps a child as soon as it ends;
 * the connection gauge is kept by the parent (raised before the fork, lowered at the reap), so
 * it stays right whatever way a child ends. Stop writes the wake eventfd, which every child
 * polls too; children still alive after STOP_GRACE_MS are killed with SIGKILL.
 *
 * Services that keep state shared by their sessions in the instance (services with stored
 * files: backup) cannot run here: each child would hold its own copy. Starting them fails
 * with -EINVAL.
 */
#include "core/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"

#define ACCEPT_BACKOFF_MS 100
#define STOP_GRACE_MS 500
#define DRAIN_DEADLINE_MS 30000

struct child {
    pid_t pid;
    int pidfd;
    struct core_admission adm; /* what its connection holds in the listener's sources */
};

struct proc_runner {
    struct core_runner base;
    struct core_listener_cfg cfg;
    const struct core_service *svc;
    void *inst;
    struct core_metrics *m;
    struct core_sources *sources; /* borrowed; may be NULL; the acceptor counts, a reap releases */
    int lfd;
    int wake_fd;  /* readable once the runner stops: the acceptor and every child watch it */
    int drain_fd; /* readable once the runner drains: the acceptor stops accepting */
    pthread_t acceptor;
    atomic_bool done; /* the acceptor ended (drained, or stopped) */

    /* Owned by the acceptor thread only; read by stop after the join. */
    struct child *children;
    unsigned n_children, cap_children;
    struct pollfd *polls;            /* 3 + cap_children */
    struct core_fd_reserve *reserve; /* for core_runner_accept() */
};

/* ---- the child: one session, no threads ---- */

/* Serves one connection to its end, as the thread model does. The gauge and the total are the
 * parent's. */
static void serve(struct proc_runner *rn, int fd, uint64_t accepted_ns)
{
    const struct core_conn_ctx c = {.svc = rn->svc,
                                    .inst = rn->inst,
                                    .m = rn->m,
                                    .idle_timeout_ms = rn->cfg.idle_timeout_ms,
                                    .wake_fd = rn->wake_fd};

    core_runner_serve_conn(&c, fd, accepted_ns);
}

/* Closes every fd from 3 up except keep[0] and keep[1]. */
static void close_all_but(int a, int b)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;

    if (lo > 3)
        (void)syscall(SYS_close_range, 3u, (unsigned)lo - 1, 0u);
    if (hi > lo + 1)
        (void)syscall(SYS_close_range, (unsigned)lo + 1, (unsigned)hi - 1, 0u);
    (void)syscall(SYS_close_range, (unsigned)hi + 1, ~0u, 0u);
}

static _Noreturn void child_main(struct proc_runner *rn, int fd, uint64_t accepted_ns, pid_t parent)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigset_t none;

    close_all_but(fd, rn->wake_fd);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &dfl, NULL);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    /* The daemon gone (even by SIGKILL), no child must outlive it. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    serve(rn, fd, accepted_ns);
    _exit(0);
}

/* ---- the parent: accept, fork, reap ---- */

static void child_reaped(struct proc_runner *rn, unsigned i)
{
    close(rn->children[i].pidfd);
    core_runner_release(rn->sources, &rn->children[i].adm);
    rn->children[i] = rn->children[--rn->n_children];
    core_metrics_sub(rn->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
}

/* Reaps the children that ended. */
static void reap(struct proc_runner *rn)
{
    for (unsigned i = 0; i < rn->n_children;) {
        siginfo_t si = {0};

        if (waitid(P_PIDFD, (id_t)rn->children[i].pidfd, &si, WEXITED | WNOHANG) == 0 &&
            si.si_pid != 0) {
            if (si.si_code != CLD_EXITED || si.si_status != 0)
                core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
            child_reaped(rn, i);
            continue;
        }
        i++;
    }
}

/* A connection refused for lack of a process, an fd or memory: closed, adm given back. */
static void reject_resources(struct proc_runner *rn, int fd, struct core_admission *adm)
{
    if (fd >= 0)
        close(fd);
    core_runner_release(rn->sources, adm);
    core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_REJECTED, 1);
    core_metrics_add(rn->m, CORE_CTR_REJECTED_RESOURCES, 1);
}

/* Forks a child for an admitted connection, or refuses it (giving back adm). */
static void spawn(struct proc_runner *rn, int fd, uint64_t accepted_ns, struct core_admission *adm)
{
    pid_t parent = getpid(), pid;
    int pidfd;

    if (rn->n_children >= rn->cfg.max_connections) {
        core_runner_release(rn->sources, adm);
        core_runner_reject_max(rn->m);
        close(fd);
        return;
    }
    if (rn->n_children == rn->cap_children) {
        unsigned cap = rn->cap_children * 2;
        struct child *c = realloc(rn->children, cap * sizeof(*c));
        struct pollfd *p = c ? realloc(rn->polls, (cap + 3) * sizeof(*p)) : NULL;

        if (c)
            rn->children = c;
        if (!p) {
            reject_resources(rn, fd, adm);
            return;
        }
        rn->polls = p;
        rn->cap_children = cap;
    }
    core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_TOTAL, 1);
    core_metrics_add(rn->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
    pid = fork();
    if (pid == 0)
        child_main(rn, fd, accepted_ns, parent);
    close(fd);
    if (pid < 0) {
        core_metrics_sub(rn->m, CORE_CTR_CONNECTIONS_TOTAL, 1);
        core_metrics_sub(rn->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
        reject_resources(rn, -1, adm);
        return;
    }
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        /* Cannot watch it (out of fds, most likely): cut it and wait for it here. */
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        core_metrics_sub(rn->m, CORE_CTR_CONNECTIONS_TOTAL, 1);
        core_metrics_sub(rn->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
        reject_resources(rn, -1, adm);
        return;
    }
    (void)fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    rn->children[rn->n_children].pid = pid;
    rn->children[rn->n_children].pidfd = pidfd;
    rn->children[rn->n_children].adm = *adm;
    rn->n_children++;
}

/* Kills the children still alive after grace_ms and reaps them all. */
static void reap_all(struct proc_runner *rn, int grace_ms)
{
    int64_t deadline = core_now_ms() + grace_ms;
    bool killed = false;

    for (;;) {
        reap(rn);
        if (rn->n_children == 0)
            return;
        int64_t left = deadline - core_now_ms();

        if (left <= 0 && !killed) {
            for (unsigned i = 0; i < rn->n_children; i++)
                (void)syscall(SYS_pidfd_send_signal, rn->children[i].pidfd, SIGKILL, NULL, 0);
            killed = true;
        }
        struct pollfd p = {.fd = rn->children[0].pidfd, .events = POLLIN};

        (void)poll(&p, 1, left > 0 ? (int)left : 100);
    }
}

static void *acceptor_main(void *arg)
{
    struct proc_runner *rn = arg;
    bool warned = false, draining = false;
    int64_t drain_deadline = 0;

    for (;;) {
        struct pollfd *p = rn->polls;
        struct core_admission adm;
        unsigned n = 0;
        int timeout = -1;
        uint64_t now;
        int fd;

        p[n++] = (struct pollfd){.fd = rn->wake_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = draining ? -1 : rn->drain_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = draining ? -1 : rn->lfd, .events = POLLIN};
        for (unsigned i = 0; i < rn->n_children; i++)
            p[n++] = (struct pollfd){.fd = rn->children[i].pidfd, .events = POLLIN};
        if (draining) {
            int64_t left = drain_deadline - core_now_ms();

            if (rn->n_children == 0 || left <= 0)
                break;
            timeout = (int)left;
        }
        if (poll(p, n, timeout) < 0) {
            if (errno == EINTR)
                continue;
            core_log_error("listener %s: poll: %s", rn->cfg.id, strerror(errno));
            break;
        }
        if (p[0].revents)
            break;
        if (p[1].revents) {
            draining = true;
            drain_deadline = core_now_ms() +
                             (rn->cfg.idle_timeout_ms && rn->cfg.idle_timeout_ms < DRAIN_DEADLINE_MS
                                  ? (int64_t)rn->cfg.idle_timeout_ms
                                  : DRAIN_DEADLINE_MS);
            continue;
        }
        reap(rn);
        if (!p[2].revents)
            continue;
        fd = core_runner_accept(rn->lfd, rn->reserve, rn->m);
        if (fd < 0) {
            if (fd == -EAGAIN || fd == -ECONNREFUSED)
                continue;
            if (!warned)
                core_log_warn("listener %s: accept: %s (backing off)", rn->cfg.id, strerror(-fd));
            warned = true;
            if (poll(&p[0], 1, ACCEPT_BACKOFF_MS) > 0)
                break;
            continue;
        }
        warned = false;
        now = core_runner_now_ns();
        if (core_runner_admit(rn->sources, &rn->cfg, rn->m, fd, now, &adm) < 0) {
            close(fd);
            continue;
        }
        spawn(rn, fd, now, &adm);
    }
    /* Stopped, or drained past its deadline: every child still alive is cut. */
    {
        uint64_t one = 1;

        (void)!write(rn->wake_fd, &one, sizeof(one));
    }
    reap_all(rn, STOP_GRACE_MS);
    atomic_store(&rn->done, true);
    return NULL;
}

static void proc_runner_free(struct proc_runner *rn)
{
    if (rn->lfd >= 0)
        close(rn->lfd);
    if (rn->wake_fd >= 0)
        close(rn->wake_fd);
    if (rn->drain_fd >= 0)
        close(rn->drain_fd);
    core_fd_reserve_free(rn->reserve);
    free(rn->children);
    free(rn->polls);
    core_listener_cfg_fini(&rn->cfg);
    free(rn);
}

static void proc_runner_stop(struct core_runner *base)
{
    struct proc_runner *rn = (struct proc_runner *)base;
    uint64_t one = 1;

    (void)!write(rn->wake_fd, &one, sizeof(one));
    pthread_join(rn->acceptor, NULL);
    proc_runner_free(rn);
}

static void proc_runner_drain(struct core_runner *base)
{
    struct proc_runner *rn = (struct proc_runner *)base;
    uint64_t one = 1;

    (void)!write(rn->drain_fd, &one, sizeof(one));
}

static bool proc_runner_is_drained(struct core_runner *base)
{
    return atomic_load(&((struct proc_runner *)base)->done);
}

int core_runner_process_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                              struct core_err *err)
{
    struct proc_runner *rn;
    int r;

    rn = calloc(1, sizeof(*rn));
    if (!rn) {
        close(ctx->fd);
        return -ENOMEM;
    }
    rn->base.stop = proc_runner_stop;
    rn->base.drain = proc_runner_drain;
    rn->base.is_drained = proc_runner_is_drained;
    rn->svc = ctx->svc;
    rn->inst = ctx->inst;
    rn->m = ctx->metrics;
    rn->sources = ctx->sources;
    rn->lfd = ctx->fd;
    rn->wake_fd = -1;
    rn->drain_fd = -1;
    r = core_listener_cfg_copy(ctx->cfg, &rn->cfg);
    if (r < 0)
        goto out_free;
    rn->cap_children = 16;
    rn->children = calloc(rn->cap_children, sizeof(*rn->children));
    rn->polls = calloc(rn->cap_children + 3, sizeof(*rn->polls));
    if (!rn->children || !rn->polls) {
        r = -ENOMEM;
        goto out_free;
    }
    if (fcntl(rn->lfd, F_SETFL, fcntl(rn->lfd, F_GETFL) | O_NONBLOCK) < 0) {
        r = -errno;
        goto out_free;
    }
    r = core_fd_reserve_new(1, &rn->reserve);
    if (r < 0)
        goto out_free;
    rn->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rn->drain_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rn->wake_fd < 0 || rn->drain_fd < 0) {
        r = -errno;
        goto out_free;
    }
    r = -pthread_create(&rn->acceptor, NULL, acceptor_main, rn);
    if (r < 0)
        goto out_free;
    *ret = &rn->base;
    return 0;

out_free:
    proc_runner_free(rn);
    return core_err_set(err, r, NULL, "cannot start the process runner: %s", strerror(-r));
}
