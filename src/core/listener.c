#include "core/listener.h"

/* A listener's life (new, start, stop, free), its state and events, and its status as JSON.
 * Changes are in listener_change.c, drains in listener_drain.c. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/listener_int.h"
#include "core/fdbudget.h"
#include "core/net.h"
#include "core/ratelimit.h"
#include "core/runner.h"
#include "core/upload.h"
#include "core/tls.h"

static const char *const state_names[CORE_STATE_COUNT] = {
    [CORE_STATE_STOPPED] = "stopped", [CORE_STATE_STARTING] = "starting",
    [CORE_STATE_RUNNING] = "running", [CORE_STATE_STOPPING] = "stopping",
    [CORE_STATE_FAILED] = "failed",
};

const char *core_state_name(enum core_state s)
{
    return s < CORE_STATE_COUNT ? state_names[s] : "unknown";
}

void core_listener_inst_unref(struct inst_ref *ir)
{
    if (ir && --ir->refs == 0) {
        core_upload_cancel_all(&ir->uploads);
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

/* The "bound" array of the status: the address while running, else empty. */
static json_t *bound_json(const char *bound)
{
    json_t *a = json_array();

    if (a && bound[0])
        json_array_append_new(a, json_string(bound));
    return a;
}

/* A listener's state as its status and its "listener.state" events show it, copied under its
 * lock, for JSON made later on another thread. */
struct state_copy {
    enum core_state state;
    char bound[CORE_ADDR_STRLEN];
    struct timespec since;
    char error[sizeof(((struct core_err *)0)->msg)];
    struct drain_view *drains; /* the draining runners */
    size_t n_drains;
};

/* Fills c from l. Under lock. */
static void state_copy_locked(const struct core_listener *l, struct state_copy *c)
{
    c->state = l->state;
    memcpy(c->bound, l->bound, sizeof(c->bound));
    c->since = l->since;
    memcpy(c->error, l->error, sizeof(c->error));
    c->drains = core_listener_drain_views_locked(l, &c->n_drains);
}

/* c's error as JSON: null when there is none. */
static json_t *state_copy_error(const struct state_copy *c)
{
    return c->error[0] ? json_string(c->error) : json_null();
}

/* A "listener.state" event's data as it was when published; its first reader makes the JSON. */
struct state_shot {
    char id[CORE_ID_MAX];
    enum core_state previous;
    struct state_copy st;
};

static json_t *state_shot_json(const void *p)
{
    const struct state_shot *s = p;
    char since[32];

    format_since(&s->st.since, since, sizeof(since));
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:o}", "id", s->id, "state",
                     core_state_name(s->st.state), "previous", core_state_name(s->previous),
                     "bound", bound_json(s->st.bound), "error", state_copy_error(&s->st), "since",
                     since, "draining", core_listener_draining_json(s->st.drains, s->st.n_drains));
}

static void state_shot_free(void *p)
{
    struct state_shot *s = p;

    free(s->st.drains);
    free(s);
}

/* The data of a "listener.state" event now, or NULL (ENOMEM). Under lock. */
static struct state_shot *state_shot_locked(const struct core_listener *l, enum core_state previous)
{
    struct state_shot *s = malloc(sizeof(*s));

    if (!s)
        return NULL;
    memcpy(s->id, l->id, sizeof(s->id));
    s->previous = previous;
    state_copy_locked(l, &s->st);
    return s;
}

static void publish_state(struct core_listener *l, struct state_shot *s)
{
    if (s)
        core_events_publish_lazy(l->events, "listener.state", s, state_shot_json, state_shot_free);
}

void core_listener_set_state(struct core_listener *l, enum core_state s, const char *bound,
                             const char *error)
{
    struct state_shot *shot = NULL;
    enum core_state previous;

    pthread_mutex_lock(&l->lock);
    previous = l->state;
    l->state = s;
    snprintf(l->bound, sizeof(l->bound), "%s", bound ? bound : "");
    snprintf(l->error, sizeof(l->error), "%s", error ? error : "");
    clock_gettime(CLOCK_REALTIME, &l->since);
    if (l->events)
        shot = state_shot_locked(l, previous);
    pthread_mutex_unlock(&l->lock);
    publish_state(l, shot);
}

/* A "listener.state" event for a change of the draining runners alone (the state is the same:
 * previous is the state). */
void core_listener_publish_draining(struct core_listener *l)
{
    struct state_shot *shot;

    if (!l->events)
        return;
    pthread_mutex_lock(&l->lock);
    shot = state_shot_locked(l, l->state);
    pthread_mutex_unlock(&l->lock);
    publish_state(l, shot);
}

/* ---- life ---- */

int core_listener_new(const struct core_listener_cfg *cfg, const char *state_dir,
                      struct core_events *events, struct core_endpoints *own,
                      struct core_threads *threads, struct core_listener **ret)
{
    struct core_listener *l = calloc(1, sizeof(*l));

    if (!l)
        return -ENOMEM;
    if (core_sources_new(&l->sources) < 0) {
        free(l);
        return -ENOMEM;
    }
    l->metrics = core_metrics_alloc();
    if (!l->metrics) {
        core_sources_free(l->sources);
        free(l);
        return -ENOMEM;
    }
    if (core_listener_cfg_copy_rendered(cfg, &l->cfg) < 0) {
        core_metrics_release(l->metrics);
        core_sources_free(l->sources);
        free(l);
        return -ENOMEM;
    }
    l->own = own;
    l->threads = threads;
    memcpy(l->id, cfg->id, sizeof(l->id));
    l->state_dir = state_dir;
    l->events = events;
    l->lfd = -1;
    core_emitter_init(&l->emitter, events, l->id, l->metrics);
    l->env = (struct core_svc_env){.listener_id = l->id,
                                   .state_dir = state_dir,
                                   .metrics = l->metrics,
                                   .emitter = &l->emitter};
    pthread_mutex_init(&l->lock, NULL);
    l->state = CORE_STATE_STOPPED;
    clock_gettime(CLOCK_REALTIME, &l->since);
    *ret = l;
    return 0;
}

int core_listener_bind(const struct core_listener_cfg *cfg, char *ret_bound,
                       struct sockaddr_storage *ret_addr, struct core_err *err)
{
    const bool tcp = cfg->transport == CORE_TCP;
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, r;

    r = core_addr_parse(cfg->address, cfg->port, &ss, &len);
    if (r < 0)
        return core_err_set(err, r, "address", "address: '%s' is not a numeric address",
                            cfg->address);
    /* The event and uring models' loops bind one more socket each beside this one. Every
     * model's runner accepts without blocking. */
    fd = core_net_bind(&ss, len, tcp ? SOCK_STREAM : SOCK_DGRAM,
                       tcp ? CORE_NET_NONBLOCK |
                                 (core_model_has_reuseport(cfg->model) ? CORE_NET_REUSEPORT : 0)
                           : 0,
                       CORE_NET_BACKLOG, &ss, err);
    if (fd < 0) {
        if (err && (fd == -EADDRINUSE || fd == -EADDRNOTAVAIL))
            snprintf(err->field, sizeof(err->field), "port");
        return fd;
    }
    core_addr_format((struct sockaddr *)&ss, ret_bound, CORE_ADDR_STRLEN);
    if (ret_addr)
        *ret_addr = ss;
    return fd;
}

int core_listener_probe(const struct core_listener_cfg *cfg, struct core_err *err)
{
    char bound[CORE_ADDR_STRLEN];
    int fd = core_listener_bind(cfg, bound, NULL, err);

    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

/* A new instance of the configured service, with one reference. */
int core_listener_inst_new(struct core_listener *l, const struct core_listener_cfg *cfg,
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

int core_listener_runner_start(struct core_listener *l, const struct core_listener_cfg *cfg,
                               struct inst_ref *ir, int fd, struct core_runner **ret,
                               struct core_err *err)
{
    return core_runner_start(&(struct core_runner_ctx){.cfg = cfg,
                                                       .svc = cfg->svc,
                                                       .inst = ir->inst,
                                                       .metrics = l->metrics,
                                                       .fd = fd,
                                                       .sources = l->sources,
                                                       .own = l->own,
                                                       .emitter = &l->emitter,
                                                       .threads = l->threads},
                             ret, err);
}

int core_listener_start(struct core_listener *l, struct core_err *err)
{
    char bound[CORE_ADDR_STRLEN];
    struct sockaddr_storage addr;
    struct core_err e = {0};
    int fd, r;

    if (l->runner)
        return 0;
    core_listener_set_state(l, CORE_STATE_STARTING, NULL, NULL);
    fd = core_listener_bind(&l->cfg, bound, &addr, &e);
    if (fd < 0) {
        r = fd;
        goto out_failed;
    }
    (void)core_endpoints_add(l->own, l, &addr);
    r = core_listener_inst_new(l, &l->cfg, &l->inst, &e);
    if (r < 0) {
        close(fd);
        goto out_failed;
    }
    /* Kept for a live reconfiguration: a new runner starts on a dup of the same socket. */
    l->lfd = l->cfg.transport == CORE_TCP ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
    r = core_listener_runner_start(l, &l->cfg, l->inst, fd, &l->runner, &e);
    if (r < 0) {
        core_listener_inst_unref(l->inst);
        l->inst = NULL;
        if (l->lfd >= 0)
            close(l->lfd);
        l->lfd = -1;
        goto out_failed;
    }
    l->addr = addr;
    l->bound_port = core_addr_port((struct sockaddr *)&addr);
    core_listener_set_state(l, CORE_STATE_RUNNING, bound, NULL);
    return 0;

out_failed:
    core_endpoints_remove(l->own, l);
    if (!e.msg[0])
        core_err_set(&e, r, NULL, "%s", strerror(-r));
    core_listener_set_state(l, CORE_STATE_FAILED, NULL, e.msg);
    if (err)
        *err = e;
    return r;
}

void core_listener_stop(struct core_listener *l)
{
    if (!l->runner) {
        core_listener_drain_reap(l, true);
        if (l->state != CORE_STATE_STOPPED)
            core_listener_set_state(l, CORE_STATE_STOPPED, NULL, NULL);
        return;
    }
    core_listener_set_state(l, CORE_STATE_STOPPING, NULL, NULL);
    core_listener_drain_reap(l, true);
    core_runner_stop(l->runner);
    l->runner = NULL;
    core_listener_inst_unref(l->inst);
    l->inst = NULL;
    if (l->lfd >= 0)
        close(l->lfd);
    l->lfd = -1;
    l->bound_port = 0;
    core_endpoints_remove(l->own, l);
    core_listener_set_state(l, CORE_STATE_STOPPED, NULL, NULL);
}

void core_listener_stop_begin(struct core_listener *l)
{
    if (l->runner)
        core_runner_signal(l->runner->wake_fd);
    core_listener_drain_wake(l, REAP_ALL);
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
    json_decref(l->tls_status);
    json_decref(l->tls_of);
    pthread_mutex_destroy(&l->lock);
    core_metrics_release(l->metrics);
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

static json_t *metrics_json_locked(struct core_listener *l, struct core_metrics_snapshot *ret_snap)
{
    struct core_metrics_snapshot snap, *s = ret_snap ? ret_snap : &snap;

    core_metrics_snapshot(l->metrics, s);
    return core_metrics_to_json(s, l->cfg.svc->counters, l->cfg.svc->n_counters);
}

json_t *core_listener_metrics_json(struct core_listener *l, struct core_metrics_snapshot *ret_snap)
{
    json_t *j;

    pthread_mutex_lock(&l->lock);
    j = metrics_json_locked(l, ret_snap);
    pthread_mutex_unlock(&l->lock);
    return j;
}

/* status.tls: remade only when options.tls changed (it reads the certificate). Under lock. */
static json_t *tls_status_locked(struct core_listener *l)
{
    json_t *tls = json_object_get(l->cfg.options, CORE_TLS_OPTION);
    json_t *of = tls ? tls : json_null();

    if (!l->tls_status || !l->tls_of || !json_equal(l->tls_of, of)) {
        json_t *st = core_tls_status_json(tls), *copy = json_deep_copy(of);

        if (!st || !copy) {
            json_decref(st);
            json_decref(copy);
            return NULL;
        }
        json_decref(l->tls_status);
        json_decref(l->tls_of);
        l->tls_status = st;
        l->tls_of = copy;
    }
    return json_deep_copy(l->tls_status);
}

struct core_listener_snapshot {
    struct core_listener_cfg cfg;
    struct state_copy st;
    json_t *tls; /* TCP: status.tls, a copy; else NULL */
    bool with_metrics;
    struct core_metrics_snapshot metrics;
};

void core_listener_snapshot_free(struct core_listener_snapshot *v)
{
    if (!v)
        return;
    core_listener_cfg_fini(&v->cfg);
    free(v->st.drains);
    json_decref(v->tls);
    free(v);
}

struct core_listener_snapshot *core_listener_snapshot_take(struct core_listener *l,
                                                           bool with_metrics)
{
    struct core_listener_snapshot *v = malloc(sizeof(*v));
    bool ok;

    if (!v)
        return NULL;
    v->with_metrics = with_metrics;
    pthread_mutex_lock(&l->lock);
    ok = core_listener_cfg_copy(&l->cfg, &v->cfg) == 0;
    state_copy_locked(l, &v->st);
    v->tls = l->cfg.transport == CORE_TCP ? tls_status_locked(l) : NULL;
    if (with_metrics)
        core_metrics_snapshot(l->metrics, &v->metrics);
    pthread_mutex_unlock(&l->lock);
    if (!ok || (v->cfg.transport == CORE_TCP && !v->tls)) {
        core_listener_snapshot_free(v);
        return NULL;
    }
    return v;
}

json_t *core_listener_snapshot_json(const struct core_listener_snapshot *v)
{
    char since[32];
    json_t *j = core_listener_cfg_to_json(&v->cfg), *status;

    format_since(&v->st.since, since, sizeof(since));
    status = json_pack("{s:s, s:o, s:s, s:o}", "state", core_state_name(v->st.state), "bound",
                       bound_json(v->st.bound), "since", since, "error", state_copy_error(&v->st));
    if (status &&
        ((v->cfg.transport == CORE_TCP &&
          (core_fdbudget_status(status, v->cfg.max_connections) < 0 ||
           json_object_set_new(status, "tls", json_deep_copy(v->tls)) < 0)) ||
         json_object_set_new(status, "draining",
                             core_listener_draining_json(v->st.drains, v->st.n_drains)) < 0)) {
        json_decref(status);
        status = NULL;
    }
    if (!j || !status || json_object_set_new(j, "status", status) < 0 ||
        (v->with_metrics &&
         json_object_set_new(j, "metrics",
                             core_metrics_to_json(&v->metrics, v->cfg.svc->counters,
                                                  v->cfg.svc->n_counters)) < 0)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

json_t *core_listener_to_json(struct core_listener *l, bool with_metrics)
{
    struct core_listener_snapshot *v = core_listener_snapshot_take(l, with_metrics);
    json_t *j = v ? core_listener_snapshot_json(v) : NULL;

    core_listener_snapshot_free(v);
    return j;
}
