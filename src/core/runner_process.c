/*
 * The TCP `process` runner: the lecture's multi-processing server. An acceptor thread accepts
 * and forks one child process per connection. The child closes every fd but its connection and
 * the runner's wake eventfd, resets its signals, serves the session and _exit()s; it never
 * starts a thread. The counters live in memory the listener shares with its children
 * (MAP_SHARED), so the child's atomic additions are seen by the daemon at once.
 *
 * A child's sessions report events (core_svc_emit()) over the runner's event channel, a socket
 * pair whose receiving end the acceptor polls and publishes from; the child keeps the sending
 * end and never blocks on it (a full channel drops the event, counted).
 *
 * The parent keeps one pidfd per child in its poll set and reaps a child as soon as it ends;
 * the connection gauge is kept by the parent (raised before the fork, lowered at the reap), so
 * it stays right whatever way a child ends. Stop writes the wake eventfd, which every child
 * polls too; children still alive after STOP_GRACE_MS are killed with SIGKILL.
 *
 * A child runs the service's session callbacks only, on its copy of the instance (see the
 * process-model contract in core/runner.h); which services may run here is the listener
 * configuration's to judge (a service's refused_models), not the runner's.
 */
#include "core/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/emitter.h"
#include "core/log.h"

#define STOP_GRACE_MS 500
#define DRAIN_DEADLINE_MS 30000
#define POLL_FIXED 4  /* wake, drain, listening socket, event channel; then the children */
#define PUMP_BATCH 64 /* event messages published at a time between the other fds' turns */

struct child {
    pid_t pid;
    int pidfd;
    struct core_admission adm; /* what its connection holds in the listener's sources */
};

struct proc_runner {
    struct core_runner base;

    /* Owned by the acceptor thread only; read by stop after the join. */
    struct child *children;
    unsigned n_children, cap_children;
    struct pollfd *polls; /* POLL_FIXED + cap_children */

    /* The event channel (-1 without an emitter): the acceptor reads emit_rfd; the children
     * keep emit_wfd. Both closed by destroy, after every child ended. */
    int emit_rfd, emit_wfd;
};

/* ---- the child: one session, no threads ---- */

/* Closes every fd from 3 up except the n (<= 3) of keep that are >= 0. */
static void close_all_but(const int *keep, unsigned n)
{
    unsigned from = 3, k = 0;
    int v[3];

    for (unsigned i = 0; i < n; i++) {
        if (keep[i] < 0)
            continue;
        /* insertion sort: ascending */
        unsigned j = k++;

        for (; j > 0 && v[j - 1] > keep[i]; j--)
            v[j] = v[j - 1];
        v[j] = keep[i];
    }
    for (unsigned i = 0; i < k; i++) {
        if ((unsigned)v[i] > from)
            (void)syscall(SYS_close_range, from, (unsigned)v[i] - 1, 0u);
        if ((unsigned)v[i] + 1 > from)
            from = (unsigned)v[i] + 1;
    }
    (void)syscall(SYS_close_range, from, ~0u, 0u);
}

static _Noreturn void child_main(struct proc_runner *rn, int fd, uint64_t accepted_ns, pid_t parent)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigset_t none;

    const struct core_conn_ctx c = core_runner_conn_ctx(&rn->base);
    const int keep[] = {fd, rn->base.wake_fd, rn->emit_wfd};

    close_all_but(keep, sizeof(keep) / sizeof(keep[0]));
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &dfl, NULL);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    /* The daemon gone (even by SIGKILL), no child must outlive it. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    if (rn->emit_wfd >= 0)
        core_emitter_child(rn->base.emitter, rn->emit_wfd);
    /* The gauge and the total are the parent's. */
    core_runner_serve_conn(&c, fd, accepted_ns);
    _exit(0);
}

/* ---- the parent: accept, fork, reap ---- */

static void child_reaped(struct proc_runner *rn, unsigned i)
{
    struct core_admission adm = rn->children[i].adm;

    close(rn->children[i].pidfd);
    rn->children[i] = rn->children[--rn->n_children];
    core_runner_conn_end(&rn->base, &adm);
}

/* Reaps the children that ended. */
static void reap(struct proc_runner *rn)
{
    for (unsigned i = 0; i < rn->n_children;) {
        siginfo_t si = {0};

        if (waitid(P_PIDFD, (id_t)rn->children[i].pidfd, &si, WEXITED | WNOHANG) == 0 &&
            si.si_pid != 0) {
            if (si.si_code != CLD_EXITED || si.si_status != 0)
                core_metrics_add(rn->base.m, CORE_CTR_ERRORS, 1);
            child_reaped(rn, i);
            continue;
        }
        i++;
    }
}

/* Forks a child for an admitted connection, or refuses it. */
static void spawn(struct proc_runner *rn, struct core_accepted *a)
{
    struct core_runner *b = &rn->base;
    pid_t parent = getpid(), pid;
    int pidfd;

    if (rn->n_children == rn->cap_children) {
        unsigned cap = rn->cap_children * 2;
        struct child *c = realloc(rn->children, cap * sizeof(*c));
        struct pollfd *p = c ? realloc(rn->polls, (cap + POLL_FIXED) * sizeof(*p)) : NULL;

        if (c)
            rn->children = c;
        if (!p) {
            core_runner_conn_refuse(b, a->fd, &a->adm);
            return;
        }
        rn->polls = p;
        rn->cap_children = cap;
    }
    /* Counted before the fork: the child's client may read the counters at once. */
    core_runner_conn_begin(b);
    pid = fork();
    if (pid == 0)
        child_main(rn, a->fd, a->accepted_ns, parent);
    close(a->fd);
    pidfd = pid < 0 ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        if (pid > 0) {
            /* Cannot watch it (out of fds, most likely): cut it and wait for it here. */
            (void)kill(pid, SIGKILL);
            (void)waitpid(pid, NULL, 0);
        }
        core_metrics_sub(b->m, CORE_CTR_CONNECTIONS_TOTAL, 1);
        core_metrics_sub(b->m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
        core_runner_conn_refuse(b, -1, &a->adm);
        return;
    }
    (void)fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    rn->children[rn->n_children].pid = pid;
    rn->children[rn->n_children].pidfd = pidfd;
    rn->children[rn->n_children].adm = a->adm;
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
    struct core_runner *b = &rn->base;
    bool warned = false, draining = false;
    int64_t drain_deadline = 0;

    for (;;) {
        struct pollfd *p = rn->polls;
        struct core_accepted a;
        unsigned n = 0;
        int timeout = -1, r;

        p[n++] = (struct pollfd){.fd = b->wake_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = draining ? -1 : b->drain_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = draining ? -1 : b->lfd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = rn->emit_rfd, .events = POLLIN};
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
            core_log_error("listener %s: poll: %s", b->cfg.id, strerror(errno));
            break;
        }
        if (p[0].revents)
            break;
        if (p[1].revents) {
            draining = true;
            core_runner_accepting_ended(b); /* it polls its socket no more */
            drain_deadline = core_now_ms() +
                             (b->cfg.idle_timeout_ms && b->cfg.idle_timeout_ms < DRAIN_DEADLINE_MS
                                  ? (int64_t)b->cfg.idle_timeout_ms
                                  : DRAIN_DEADLINE_MS);
            continue;
        }
        if (p[3].revents)
            (void)core_emitter_pump(b->emitter, rn->emit_rfd, PUMP_BATCH);
        reap(rn);
        if (!p[2].revents)
            continue;
        r = core_runner_accept_conn(b, b->lfd, &warned, &a);
        if (r == 0)
            spawn(rn, &a);
        else if (r != -EAGAIN && r != -ECONNREFUSED && core_runner_backoff(b))
            break;
    }
    /* Stopped, or drained past its deadline: every child still alive is cut. */
    core_runner_signal(b->wake_fd);
    reap_all(rn, STOP_GRACE_MS);
    /* What the children reported before they ended. */
    if (rn->emit_rfd >= 0)
        while (core_emitter_pump(b->emitter, rn->emit_rfd, PUMP_BATCH) > 0)
            ;
    if (!draining)
        core_runner_accepting_ended(b);
    return NULL;
}

static void proc_runner_destroy(struct core_runner *base)
{
    struct proc_runner *rn = (struct proc_runner *)base;

    free(rn->children);
    free(rn->polls);
    if (rn->emit_rfd >= 0)
        close(rn->emit_rfd);
    if (rn->emit_wfd >= 0)
        close(rn->emit_wfd);
}

int core_runner_process_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                              struct core_err *err)
{
    const struct core_runner_spec spec = {
        .destroy = proc_runner_destroy, .threads = 1, .accepting = 1, .drains = true};
    struct proc_runner *rn;
    struct core_runner *b;
    int r;

    r = core_runner_new(sizeof(*rn), ctx, &spec, &b, err);
    if (r < 0)
        return r;
    rn = (struct proc_runner *)b;
    rn->emit_rfd = rn->emit_wfd = -1;
    rn->cap_children = 16;
    rn->children = calloc(rn->cap_children, sizeof(*rn->children));
    rn->polls = calloc(rn->cap_children + POLL_FIXED, sizeof(*rn->polls));
    if (!rn->children || !rn->polls)
        return core_runner_abort(b, -ENOMEM, "process runner", err);
    if (b->emitter) {
        int fds[2];

        r = core_emitter_channel(fds);
        if (r < 0)
            return core_runner_abort(b, r, "process runner's event channel", err);
        rn->emit_rfd = fds[0];
        rn->emit_wfd = fds[1];
    }
    r = core_runner_spawn(b, acceptor_main, rn, "acc");
    if (r < 0)
        return core_runner_abort(b, r, "process runner", err);
    *ret = b;
    return 0;
}
