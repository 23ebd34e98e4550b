#include "core/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/runner.h"

#define TCP_BACKLOG 511
#define DRAIN_DEADLINE_MS 30000

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
    int64_t deadline_ms;
    struct draining *next;
};

struct core_listener {
    char id[CORE_ID_MAX];         /* never changes: readable without a lock */
    struct core_listener_cfg cfg; /* written under lock by the changing thread only */
    const char *state_dir;
    struct core_events *events;
    struct core_metrics *metrics; /* MAP_SHARED: children of the process model add to it */
    struct core_svc_env env;
    struct inst_ref *inst;      /* service instance while running */
    struct core_runner *runner; /* while running */
    int lfd;                    /* while running: a dup of the runner's bound socket */
    struct draining *draining;  /* runners replaced live, still ending their connections */

    pthread_mutex_t lock;                            /* guards cfg writes and the status below */
    enum core_state state;                           /* guarded by lock */
    char bound[CORE_ADDR_STRLEN];                    /* guarded by lock; "" unless running */
    struct timespec since;                           /* guarded by lock: last state change */
    char error[sizeof(((struct core_err *)0)->msg)]; /* guarded by lock; "" unless failed */
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

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void inst_unref(struct inst_ref *ir)
{
    if (ir && --ir->refs == 0) {
        ir->svc->instance_free(ir->inst);
        free(ir);
    }
}

/* Stops the draining runners that are done (all of them when all), and frees them. */
static void reap_draining(struct core_listener *l, bool all)
{
    int64_t now = now_ms();

    for (struct draining **p = &l->draining; *p;) {
        struct draining *d = *p;

        if (!all && now < d->deadline_ms && !d->runner->is_drained(d->runner)) {
            p = &d->next;
            continue;
        }
        *p = d->next;
        core_runner_stop(d->runner);
        inst_unref(d->inst);
        free(d);
    }
}

void core_listener_reap_drained(struct core_listener *l)
{
    if (l->draining)
        reap_draining(l, false);
}

static void format_since(const struct timespec *ts, char *buf, size_t len)
{
    struct tm tm;

    gmtime_r(&ts->tv_sec, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The "bound" array of the status: the address while running, else empty. */
static json_t *bound_json(const char *bound)
{
    json_t *a = json_array();

    if (a && bound[0])
        json_array_append_new(a, json_string(bound));
    return a;
}

static void set_state(struct core_listener *l, enum core_state s, const char *bound,
                      const char *error)
{
    enum core_state previous;
    char since[32];
    json_t *ev = NULL;

    pthread_mutex_lock(&l->lock);
    previous = l->state;
    l->state = s;
    snprintf(l->bound, sizeof(l->bound), "%s", bound ? bound : "");
    snprintf(l->error, sizeof(l->error), "%s", error ? error : "");
    clock_gettime(CLOCK_REALTIME, &l->since);
    if (l->events) {
        format_since(&l->since, since, sizeof(since));
        ev = json_pack("{s:s, s:s, s:s, s:o, s:o, s:s}", "id", l->id, "state", core_state_name(s),
                       "previous", core_state_name(previous), "bound", bound_json(l->bound),
                       "error", l->error[0] ? json_string(l->error) : json_null(), "since", since);
    }
    pthread_mutex_unlock(&l->lock);
    if (ev)
        core_events_publish(l->events, "listener.state", ev);
}

int core_listener_new(const struct core_listener_cfg *cfg, const char *state_dir,
                      struct core_events *events, struct core_listener **ret)
{
    struct core_listener *l = calloc(1, sizeof(*l));
    void *m;

    if (!l)
        return -ENOMEM;
    m = mmap(NULL, sizeof(*l->metrics), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        free(l);
        return -ENOMEM;
    }
    l->metrics = m;
    if (core_listener_cfg_copy(cfg, &l->cfg) < 0) {
        munmap(l->metrics, sizeof(*l->metrics));
        free(l);
        return -ENOMEM;
    }
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

/* Creates and binds the listener's socket. Returns the fd or a negative errno with err set. */
static int bind_socket(const struct core_listener_cfg *cfg, char *ret_bound, struct core_err *err)
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
    return fd;

out_errno:
    r = -errno;
    if (fd >= 0)
        close(fd);
    return core_err_set(err, r, r == -EADDRINUSE || r == -EADDRNOTAVAIL ? "port" : NULL,
                        "%s %s/%s: %s", what, where, core_transport_name(cfg->transport),
                        strerror(-r));
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
    struct core_err e = {0};
    int fd, r;

    if (l->runner)
        return 0;
    set_state(l, CORE_STATE_STARTING, NULL, NULL);
    fd = bind_socket(&l->cfg, bound, &e);
    if (fd < 0) {
        r = fd;
        goto out_failed;
    }
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
                                                    .fd = fd},
                          &l->runner, &e);
    if (r < 0) {
        inst_unref(l->inst);
        l->inst = NULL;
        if (l->lfd >= 0)
            close(l->lfd);
        l->lfd = -1;
        goto out_failed;
    }
    set_state(l, CORE_STATE_RUNNING, bound, NULL);
    return 0;

out_failed:
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

/* Whether cfg can replace the running configuration without closing the listening socket. */
static bool can_go_live(const struct core_listener *l, const struct core_listener_cfg *cfg)
{
    const struct core_listener_cfg *old = &l->cfg;

    return l->runner && l->runner->drain && l->lfd >= 0 && cfg->enabled &&
           old->transport == CORE_TCP && cfg->transport == CORE_TCP && old->svc == cfg->svc &&
           old->port == cfg->port && strcmp(old->address, cfg->address) == 0 &&
           /* event needs SO_REUSEPORT, set before bind */
           (cfg->model != CORE_MODEL_EVENT || old->model == CORE_MODEL_EVENT);
}

/*
 * The live path: a new runner on a dup of the bound socket, the old one drained in the
 * background. The new configuration is in next; on success it is swapped in.
 */
static int reconfigure_live(struct core_listener *l, struct core_listener_cfg *next,
                            struct core_err *err)
{
    struct draining *d = calloc(1, sizeof(*d));
    char bound[CORE_ADDR_STRLEN];
    struct core_runner *runner;
    struct inst_ref *ir;
    int fd, r;

    if (!d)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    if (json_equal(l->cfg.options, next->options)) {
        ir = l->inst;
        ir->refs++;
    } else {
        r = inst_new(l, next, &ir, err);
        if (r < 0)
            goto out_free;
    }
    fd = fcntl(l->lfd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        r = core_err_set(err, -errno, NULL, "dup: %s", strerror(errno));
        goto out_unref;
    }
    r = core_runner_start(
        &(struct core_runner_ctx){
            .cfg = next, .svc = next->svc, .inst = ir->inst, .metrics = l->metrics, .fd = fd},
        &runner, err);
    if (r < 0)
        goto out_unref;
    l->runner->drain(l->runner);
    d->runner = l->runner;
    d->inst = l->inst;
    d->deadline_ms =
        now_ms() + (l->cfg.idle_timeout_ms && l->cfg.idle_timeout_ms < DRAIN_DEADLINE_MS
                        ? (int64_t)l->cfg.idle_timeout_ms
                        : DRAIN_DEADLINE_MS);
    d->next = l->draining;
    l->draining = d;
    l->runner = runner;
    l->inst = ir;
    swap_cfg(l, next);
    /* Running with the new configuration (previous: running), on the same socket. */
    pthread_mutex_lock(&l->lock);
    memcpy(bound, l->bound, sizeof(bound));
    pthread_mutex_unlock(&l->lock);
    set_state(l, CORE_STATE_RUNNING, bound, NULL);
    return 0;

out_unref:
    inst_unref(ir);
out_free:
    free(d);
    return r;
}

int core_listener_reconfigure(struct core_listener *l, const struct core_listener_cfg *cfg,
                              struct core_err *err)
{
    struct core_listener_cfg next;
    bool was_running = l->runner != NULL;
    int r;

    reap_draining(l, false);
    if (core_listener_cfg_equal(&l->cfg, cfg) && was_running == cfg->enabled)
        return 0;
    r = core_listener_cfg_copy(cfg, &next);
    if (r < 0)
        return r;
    if (can_go_live(l, cfg)) {
        r = reconfigure_live(l, &next, err);
        core_listener_cfg_fini(&next);
        return r;
    }
    core_listener_stop(l);
    swap_cfg(l, &next); /* next now holds the old configuration */
    if (l->cfg.enabled) {
        r = core_listener_start(l, err);
        if (r < 0) {
            char reason[sizeof(l->error)];

            snprintf(reason, sizeof(reason), "%s", l->error);
            swap_cfg(l, &next);
            /* Back to the old configuration; when it does not run either, say why the new one
             * failed (the state already says so when the old one was not to run). */
            if (l->cfg.enabled && core_listener_start(l, NULL) < 0)
                set_state(l, CORE_STATE_FAILED, NULL, reason);
        }
    }
    core_listener_cfg_fini(&next);
    return r;
}

void core_listener_free(struct core_listener *l)
{
    if (!l)
        return;
    core_listener_stop(l);
    core_listener_cfg_fini(&l->cfg);
    pthread_mutex_destroy(&l->lock);
    munmap(l->metrics, sizeof(*l->metrics));
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
    char since[32];
    json_t *j, *status;

    pthread_mutex_lock(&l->lock);
    j = core_listener_cfg_to_json(&l->cfg);
    format_since(&l->since, since, sizeof(since));
    status = json_pack("{s:s, s:o, s:s, s:o}", "state", core_state_name(l->state), "bound",
                       bound_json(l->bound), "since", since, "error",
                       l->error[0] ? json_string(l->error) : json_null());
    if (!j || !status || json_object_set_new(j, "status", status) < 0 ||
        (with_metrics && json_object_set_new(j, "metrics", metrics_json_locked(l)) < 0)) {
        pthread_mutex_unlock(&l->lock);
        json_decref(j);
        return NULL;
    }
    pthread_mutex_unlock(&l->lock);
    return j;
}
