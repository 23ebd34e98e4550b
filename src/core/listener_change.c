#include "core/listener_change.h"

/* Live reconfiguration (core/listener_change.h): the live path, bind before close and restart,
 * each prepared, then committed or undone. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/listener_int.h"
#include "core/log.h"

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
           /* event and uring need SO_REUSEPORT, set before bind */
           (!core_model_has_reuseport(cfg->model) || core_model_has_reuseport(old->model));
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

    r = core_listener_cfg_copy_rendered(cfg, &p->old_cfg);
    if (r < 0)
        return core_err_set(err, r, NULL, "out of memory");
    if (json_equal(l->cfg.options, cfg->options)) {
        ir = l->inst;
        ir->refs++;
    } else {
        r = core_listener_inst_new(l, cfg, &ir, err);
        if (r < 0)
            goto out_fini;
    }
    fd = fcntl(l->lfd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        r = core_err_set(err, -errno, NULL, "dup: %s", strerror(errno));
        goto out_unref;
    }
    r = core_listener_runner_start(l, cfg, ir, fd, &runner, err);
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
    core_listener_inst_unref(ir);
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

    fd = core_listener_bind(cfg, bound, &addr, err);
    if (fd < 0)
        return fd;
    r = core_listener_cfg_copy_rendered(cfg, &p->old_cfg);
    if (r < 0) {
        close(fd);
        return core_err_set(err, r, NULL, "out of memory");
    }
    r = core_listener_inst_new(l, cfg, &ir, err);
    if (r < 0) {
        close(fd);
        goto out_fini;
    }
    if (cfg->transport == CORE_TCP)
        lfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    else
        udp_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    /* Until the commit both sockets are this daemon's endpoints. */
    (void)core_endpoints_add(l->own, p, &addr);
    r = core_listener_runner_start(l, cfg, ir, fd, &runner, err);
    if (r < 0) {
        core_endpoints_remove(l->own, p);
        if (lfd >= 0)
            close(lfd);
        if (udp_fd >= 0)
            close(udp_fd);
        core_listener_inst_unref(ir);
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
        core_listener_set_state(l, CORE_STATE_FAILED, NULL, p->old_error);
        break;
    default:
        if (core_listener_state(l) != CORE_STATE_STOPPED)
            core_listener_set_state(l, CORE_STATE_STOPPED, NULL, NULL);
        break;
    }
}

/* Stop and start again with the new configuration (when enabled). */
static int prepare_restart(struct core_listener *l, const struct core_listener_cfg *cfg,
                           struct core_err *err)
{
    struct pending *p = &l->pending;
    int r;

    r = core_listener_cfg_copy_rendered(cfg, &p->old_cfg);
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
    /* The runners an earlier change left draining are not reaped here: joining their threads
     * one listener after the other would hold up the change (the registry reaps them). */
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

/*
 * core_listener_commit() but for the reaping of the drains that are done. Returns the runner
 * it replaced when that one may still accept a connection that is the new runner's (it shares
 * the listener's socket, or listens on SO_REUSEPORT siblings of its own), for the caller to
 * wait for (wait_quiet()); NULL otherwise.
 */
static struct core_runner *commit(struct core_listener *l)
{
    struct pending *p = &l->pending;
    struct core_runner *quiet = NULL;
    char bound[CORE_ADDR_STRLEN];

    switch (p->kind) {
    case PENDING_LIVE:
        p->old_runner->drain(p->old_runner);
        quiet = p->old_runner;
        pthread_mutex_lock(&l->lock);
        memcpy(bound, l->bound, sizeof(bound));
        pthread_mutex_unlock(&l->lock);
        core_listener_drain_add(l, p->old_runner, p->old_inst, bound, NULL, false);
        /* Running with the new configuration (previous: running), on the same socket. */
        core_listener_set_state(l, CORE_STATE_RUNNING, bound, NULL);
        break;
    case PENDING_MOVE:
        if (p->old_runner->drain && p->old_lfd >= 0) {
            /* The old socket stops listening at once (the port refuses), its connections
             * drain. A runner that can be muted is not woken by that: it is told to drain
             * after the change has answered (the registry's next reap), so that a change
             * that moves 250 listeners does not switch to each replaced runner's thread and
             * back before it answers. */
            bool muted = p->old_runner->mute && p->old_runner->mute(p->old_runner);

            if (!muted)
                p->old_runner->drain(p->old_runner);
            (void)shutdown(p->old_lfd, SHUT_RD);
            close(p->old_lfd);
            if (p->old_runner->own_sockets)
                quiet = p->old_runner;
            core_listener_drain_add(l, p->old_runner, p->old_inst, p->old_bound, &p->old_addr,
                                    muted);
        } else {
            core_runner_stop(p->old_runner);
            core_listener_inst_unref(p->old_inst);
        }
        core_endpoints_remove(l->own, p);
        (void)core_endpoints_add(l->own, l, &p->addr);
        if (p->udp_fd >= 0)
            close(p->udp_fd);
        l->addr = p->addr;
        l->bound_port = core_addr_port((struct sockaddr *)&p->addr);
        core_listener_set_state(l, CORE_STATE_RUNNING, p->bound, NULL);
        break;
    case PENDING_RESTART:
    case PENDING_NONE:
        break;
    }
    core_listener_cfg_fini(&p->old_cfg);
    memset(p, 0, sizeof(*p));
    return quiet;
}

/* How long a change waits for the runners it replaced to stop accepting. */
#define QUIET_TIMEOUT_MS 1000

/* Waits until the n runners commit() returned accept no more: from the answer on, every new
 * connection is the new runners', under the new configuration. */
static void wait_quiet(struct core_runner *const *rs, size_t n)
{
    size_t left = n ? core_runners_wait_not_accepting(rs, n, QUIET_TIMEOUT_MS) : 0;

    if (left > 0)
        core_log_warn("%zu replaced runner(s) still accepting after %d ms", left, QUIET_TIMEOUT_MS);
}

void core_listener_commit(struct core_listener *l)
{
    struct core_runner *quiet = commit(l);

    if (quiet)
        wait_quiet(&quiet, 1);
    /* A drain of 0 ms ends at once. */
    core_listener_reap_drained(l);
}

void core_listener_commit_all(struct core_listener *const *ls, size_t n)
{
    struct core_runner **quiet = calloc(n ? n : 1, sizeof(*quiet));
    size_t n_quiet = 0;

    /* What earlier changes left draining and has ended gives its descriptors and threads back
     * before this change's runners join the drains: changes that follow one another faster
     * than the registry's reap do not pile them up. */
    core_listener_reap_many(ls, n, REAP_DONE);
    /* Every replaced runner is told before any is waited for: the wait is for the slowest. */
    for (size_t i = 0; i < n; i++) {
        struct core_runner *q = commit(ls[i]);

        if (q && quiet)
            quiet[n_quiet++] = q;
        else if (q)
            wait_quiet(&q, 1); /* no memory for the list: one at a time */
    }
    wait_quiet(quiet, n_quiet);
    free(quiet);
    /* A drain of 0 ms ends at once. A runner whose connections have ended (or that had none)
     * is left to the next reap: joining it adds nothing the change is waiting for. */
    core_listener_reap_many(ls, n, REAP_EXPIRED);
}

void core_listener_abort(struct core_listener *l)
{
    struct pending *p = &l->pending;

    switch (p->kind) {
    case PENDING_LIVE:
        core_runner_stop(l->runner);
        core_listener_inst_unref(l->inst);
        l->runner = p->old_runner;
        l->inst = p->old_inst;
        swap_cfg(l, &p->old_cfg);
        break;
    case PENDING_MOVE:
        core_runner_stop(l->runner);
        core_listener_inst_unref(l->inst);
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
    r = core_listener_cfg_copy_rendered(&l->cfg, &ret->cfg);
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
    if (core_listener_cfg_copy_rendered(&s->cfg, &cfg) < 0)
        return;
    if (l->runner)
        core_listener_stop(l);
    else
        core_listener_drain_reap(l, true);
    swap_cfg(l, &cfg);
    core_listener_cfg_fini(&cfg);
    core_listener_set_state(l, CORE_STATE_FAILED, NULL, s->error);
}
