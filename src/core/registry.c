#include "core/registry.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/store.h"

#define DEFAULT_MAX_LISTENERS 256

struct core_registry {
    const struct core_service_table *services;
    char *state_dir;
    char state_path[PATH_MAX];
    bool persist;
    size_t max_listeners;
    struct core_events *events;
    unsigned metrics_interval_ms;

    pthread_t ticker;
    bool has_ticker;
    pthread_mutex_t tick_lock;
    pthread_cond_t tick_cond;
    bool stopping; /* guarded by tick_lock */

    pthread_mutex_t ops;         /* serialises changes, held across their binds and joins */
    pthread_mutex_t lock;        /* guards list and n; never held across I/O */
    struct core_listener **list; /* sorted by id; the ops holder may read it without lock */
    size_t n;
};

static void *ticker_main(void *arg);

int core_registry_new(const struct core_registry_opts *opts, struct core_registry **ret)
{
    struct core_registry *r = calloc(1, sizeof(*r));
    pthread_condattr_t attr;

    if (!r)
        return -ENOMEM;
    r->services = opts->services;
    r->state_dir = strdup(opts->state_dir ? opts->state_dir : ".");
    r->persist = opts->persist;
    r->max_listeners = opts->max_listeners ? opts->max_listeners : DEFAULT_MAX_LISTENERS;
    r->list = calloc(r->max_listeners, sizeof(*r->list));
    if (!r->state_dir || !r->list ||
        snprintf(r->state_path, sizeof(r->state_path), "%s/%s", r->state_dir, CORE_STORE_FILE) >=
            (int)sizeof(r->state_path)) {
        free(r->list);
        free(r->state_dir);
        free(r);
        return -ENOMEM;
    }
    r->events = opts->events;
    r->metrics_interval_ms = opts->metrics_interval_ms ? opts->metrics_interval_ms : 1000;
    pthread_mutex_init(&r->ops, NULL);
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->tick_lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->tick_cond, &attr);
    pthread_condattr_destroy(&attr);
    {
        int rc = -pthread_create(&r->ticker, NULL, ticker_main, r);

        if (rc < 0) {
            core_registry_free(r);
            return rc;
        }
        r->has_ticker = true;
    }
    *ret = r;
    return 0;
}

void core_registry_free(struct core_registry *r)
{
    if (!r)
        return;
    if (r->has_ticker) {
        pthread_mutex_lock(&r->tick_lock);
        r->stopping = true;
        pthread_cond_signal(&r->tick_cond);
        pthread_mutex_unlock(&r->tick_lock);
        pthread_join(r->ticker, NULL);
    }
    for (size_t i = 0; i < r->n; i++)
        core_listener_free(r->list[i]);
    pthread_cond_destroy(&r->tick_cond);
    pthread_mutex_destroy(&r->tick_lock);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->ops);
    free(r->list);
    free(r->state_dir);
    free(r);
}

/* Index of id in the sorted list, or where it would go (with *found false). */
static size_t find(const struct core_registry *r, const char *id, bool *found)
{
    size_t lo = 0, hi = r->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(core_listener_id(r->list[mid]), id);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static struct core_listener *lookup(const struct core_registry *r, const char *id)
{
    bool found;
    size_t i = find(r, id, &found);

    return found ? r->list[i] : NULL;
}

static void insert(struct core_registry *r, struct core_listener *l)
{
    bool found;
    size_t i = find(r, core_listener_id(l), &found);

    pthread_mutex_lock(&r->lock);
    memmove(&r->list[i + 1], &r->list[i], (r->n - i) * sizeof(*r->list));
    r->list[i] = l;
    r->n++;
    pthread_mutex_unlock(&r->lock);
}

static void take_out(struct core_registry *r, struct core_listener *l)
{
    bool found;
    size_t i = find(r, core_listener_id(l), &found);

    if (!found)
        return;
    pthread_mutex_lock(&r->lock);
    memmove(&r->list[i], &r->list[i + 1], (r->n - i - 1) * sizeof(*r->list));
    r->n--;
    pthread_mutex_unlock(&r->lock);
}

/* Writes the listener set to the state file. Called with ops held. */
static int persist(struct core_registry *r, struct core_err *err)
{
    const struct core_listener_cfg **cfgs;
    int ret;

    if (!r->persist)
        return 0;
    cfgs = calloc(r->n + 1, sizeof(*cfgs));
    if (!cfgs)
        return -ENOMEM;
    for (size_t i = 0; i < r->n; i++)
        cfgs[i] = core_listener_cfg(r->list[i]);
    ret = core_store_save(r->state_path, cfgs, r->n, err);
    free(cfgs);
    return ret < 0 ? -EIO : 0;
}

/* Publishes a copy of resource j as event type. */
static void publish(struct core_registry *r, const char *type, const json_t *j)
{
    if (r->events)
        core_events_publish(r->events, type, json_deep_copy(j));
}

static int resource(struct core_registry *r, struct core_listener *l, json_t **ret)
{
    json_t *j;

    pthread_mutex_lock(&r->lock);
    j = core_listener_to_json(l, true);
    pthread_mutex_unlock(&r->lock);
    if (!j)
        return -ENOMEM;
    *ret = j;
    return 0;
}

/* Makes up a free id for cfg: "<service>-<transport>", then "-2", "-3", ... */
static void make_id(struct core_registry *r, struct core_listener_cfg *cfg)
{
    char id[CORE_ID_MAX];

    snprintf(id, sizeof(id), "%s-%s", cfg->svc->name, core_transport_name(cfg->transport));
    for (unsigned k = 2; lookup(r, id); k++)
        snprintf(id, sizeof(id), "%s-%s-%u", cfg->svc->name, core_transport_name(cfg->transport),
                 k);
    memcpy(cfg->id, id, sizeof(id));
}

/* Adds a listener for cfg and starts it when enabled. With must_start, a listener that cannot
 * start is not added (-errno); otherwise it stays, failed. Called with ops held. */
static int add(struct core_registry *r, const struct core_listener_cfg *cfg, bool must_start,
               struct core_listener **ret, struct core_err *err)
{
    struct core_listener *l;
    int ret_code;

    if (lookup(r, cfg->id))
        return core_err_set(err, -EEXIST, "id", "a listener with id '%s' exists", cfg->id);
    if (r->n >= r->max_listeners)
        return core_err_set(err, -ENOSPC, NULL, "the daemon holds its maximum of %zu listeners",
                            r->max_listeners);
    ret_code = core_listener_new(cfg, r->state_dir, r->events, &l);
    if (ret_code < 0)
        return core_err_set(err, ret_code, NULL, "out of memory");
    if (cfg->enabled) {
        ret_code = core_listener_start(l, err);
        if (ret_code < 0 && must_start) {
            core_listener_free(l);
            return ret_code;
        }
    }
    insert(r, l);
    *ret = l;
    return 0;
}

int core_registry_load(struct core_registry *r, const char *defaults, struct core_err *err)
{
    struct core_listener_cfg *cfgs = NULL;
    struct core_listener *l;
    bool from_defaults = false;
    size_t n = 0;
    int ret;

    pthread_mutex_lock(&r->ops);
    ret = core_store_load(r->state_path, r->services, &cfgs, &n, err);
    if (ret == -ENOENT && defaults) {
        from_defaults = true;
        ret = core_store_parse(defaults, strlen(defaults), "embedded defaults", r->services, &cfgs,
                               &n, err);
    } else if (ret == -ENOENT) {
        ret = 0;
    }
    if (ret < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct core_err e = {0};

        ret = add(r, &cfgs[i], false, &l, &e);
        if (ret < 0) {
            core_err_set(err, ret, e.field, "%s: %s", cfgs[i].id, e.msg);
            goto out;
        }
        if (cfgs[i].enabled && core_listener_state(l) == CORE_STATE_FAILED)
            core_log_warn("listener %s failed to start: %s", cfgs[i].id, e.msg);
    }
    if (from_defaults)
        ret = persist(r, err);
out:
    for (size_t i = 0; i < n; i++)
        core_listener_cfg_fini(&cfgs[i]);
    free(cfgs);
    pthread_mutex_unlock(&r->ops);
    return ret;
}

int core_registry_create(struct core_registry *r, const json_t *body, json_t **ret,
                         struct core_err *err)
{
    struct core_listener_cfg cfg;
    struct core_listener *l;
    int rc;

    rc = core_listener_cfg_from_json(body, r->services, true, &cfg, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&r->ops);
    if (!cfg.id[0])
        make_id(r, &cfg);
    rc = add(r, &cfg, true, &l, err);
    if (rc < 0)
        goto out;
    rc = persist(r, err);
    if (rc < 0) {
        take_out(r, l);
        core_listener_free(l);
        goto out;
    }
    rc = resource(r, l, ret);
    if (rc == 0)
        publish(r, "listener.created", *ret);
out:
    pthread_mutex_unlock(&r->ops);
    core_listener_cfg_fini(&cfg);
    return rc;
}

/* Applies cfg to the existing listener l, persisting; rolls back when persisting fails. */
static int change(struct core_registry *r, struct core_listener *l,
                  const struct core_listener_cfg *cfg, json_t **ret, struct core_err *err)
{
    struct core_listener_cfg old;
    int rc;

    rc = core_listener_cfg_copy(core_listener_cfg(l), &old);
    if (rc < 0)
        return rc;
    rc = core_listener_reconfigure(l, cfg, err);
    if (rc < 0)
        goto out;
    rc = persist(r, err);
    if (rc < 0) {
        (void)core_listener_reconfigure(l, &old, NULL);
        goto out;
    }
    rc = resource(r, l, ret);
    if (rc == 0)
        publish(r, "listener.changed", *ret);
out:
    core_listener_cfg_fini(&old);
    return rc;
}

int core_registry_replace(struct core_registry *r, const char *id, const json_t *body, json_t **ret,
                          bool *ret_created, struct core_err *err)
{
    struct core_listener_cfg cfg;
    struct core_listener *l;
    int rc;

    if (!core_id_is_valid(id))
        return core_err_set(err, -EINVAL, "id",
                            "id: '%.64s' is not a valid id (1-%d of A-Z a-z 0-9 . _ -, starting "
                            "with a letter or digit)",
                            id, CORE_ID_MAX - 1);
    rc = core_listener_cfg_from_json(body, r->services, true, &cfg, err);
    if (rc < 0)
        return rc;
    if (cfg.id[0] && strcmp(cfg.id, id) != 0) {
        core_listener_cfg_fini(&cfg);
        return core_err_set(err, -EINVAL, "id", "id: '%s' does not match the URL's '%s'", cfg.id,
                            id);
    }
    snprintf(cfg.id, sizeof(cfg.id), "%s", id);
    pthread_mutex_lock(&r->ops);
    l = lookup(r, id);
    if (l) {
        rc = change(r, l, &cfg, ret, err);
        if (rc == 0)
            *ret_created = false;
        goto out;
    }
    rc = add(r, &cfg, true, &l, err);
    if (rc < 0)
        goto out;
    rc = persist(r, err);
    if (rc < 0) {
        take_out(r, l);
        core_listener_free(l);
        goto out;
    }
    rc = resource(r, l, ret);
    if (rc == 0) {
        *ret_created = true;
        publish(r, "listener.created", *ret);
    }
out:
    pthread_mutex_unlock(&r->ops);
    core_listener_cfg_fini(&cfg);
    return rc;
}

int core_registry_patch(struct core_registry *r, const char *id, const json_t *patch, json_t **ret,
                        struct core_err *err)
{
    struct core_listener_cfg cfg;
    struct core_listener *l;
    json_t *cur = NULL, *next = NULL;
    int rc;

    if (!json_is_object(patch))
        return core_err_set(err, -EINVAL, NULL, "a merge patch must be a JSON object");
    pthread_mutex_lock(&r->ops);
    l = lookup(r, id);
    if (!l) {
        rc = core_err_set(err, -ENOENT, NULL, "no listener '%.64s'", id);
        goto out;
    }
    cur = core_listener_cfg_to_json(core_listener_cfg(l));
    next = cur ? core_json_merge_patch(cur, patch) : NULL;
    if (!next) {
        rc = -ENOMEM;
        goto out;
    }
    rc = core_listener_cfg_from_json(next, r->services, false, &cfg, err);
    if (rc < 0)
        goto out;
    if (strcmp(cfg.id, id) != 0) {
        core_listener_cfg_fini(&cfg);
        rc = core_err_set(err, -EINVAL, "id", "id: cannot be changed (create a new listener)");
        goto out;
    }
    rc = change(r, l, &cfg, ret, err);
    core_listener_cfg_fini(&cfg);
out:
    pthread_mutex_unlock(&r->ops);
    json_decref(next);
    json_decref(cur);
    return rc;
}

int core_registry_delete(struct core_registry *r, const char *id, struct core_err *err)
{
    struct core_listener *l;
    int rc;

    pthread_mutex_lock(&r->ops);
    l = lookup(r, id);
    if (!l) {
        pthread_mutex_unlock(&r->ops);
        return core_err_set(err, -ENOENT, NULL, "no listener '%.64s'", id);
    }
    take_out(r, l);
    core_listener_free(l);
    rc = persist(r, err);
    if (r->events)
        core_events_publish(r->events, "listener.deleted", json_pack("{s:s}", "id", id));
    pthread_mutex_unlock(&r->ops);
    return rc;
}

static int set_enabled(struct core_registry *r, const char *id, bool enabled, json_t **ret,
                       struct core_err *err)
{
    struct core_listener_cfg cfg;
    struct core_listener *l;
    int rc;

    pthread_mutex_lock(&r->ops);
    l = lookup(r, id);
    if (!l) {
        rc = core_err_set(err, -ENOENT, NULL, "no listener '%.64s'", id);
        goto out;
    }
    rc = core_listener_cfg_copy(core_listener_cfg(l), &cfg);
    if (rc < 0)
        goto out;
    cfg.enabled = enabled;
    rc = change(r, l, &cfg, ret, err);
    core_listener_cfg_fini(&cfg);
out:
    pthread_mutex_unlock(&r->ops);
    return rc;
}

int core_registry_start(struct core_registry *r, const char *id, json_t **ret, struct core_err *err)
{
    return set_enabled(r, id, true, ret, err);
}

int core_registry_stop(struct core_registry *r, const char *id, json_t **ret, struct core_err *err)
{
    return set_enabled(r, id, false, ret, err);
}

int core_registry_get(struct core_registry *r, const char *id, json_t **ret)
{
    struct core_listener *l;
    json_t *j = NULL;

    pthread_mutex_lock(&r->lock);
    l = lookup(r, id);
    if (l)
        j = core_listener_to_json(l, true);
    pthread_mutex_unlock(&r->lock);
    if (!l)
        return -ENOENT;
    if (!j)
        return -ENOMEM;
    *ret = j;
    return 0;
}

int core_registry_list(struct core_registry *r, json_t **ret)
{
    json_t *a = json_array();

    if (!a)
        return -ENOMEM;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++) {
        if (json_array_append_new(a, core_listener_to_json(r->list[i], true)) < 0) {
            pthread_mutex_unlock(&r->lock);
            json_decref(a);
            return -ENOMEM;
        }
    }
    pthread_mutex_unlock(&r->lock);
    *ret = a;
    return 0;
}

int core_registry_metrics(struct core_registry *r, const char *id, json_t **ret)
{
    struct core_listener *l;
    json_t *j = NULL;

    pthread_mutex_lock(&r->lock);
    l = lookup(r, id);
    if (l)
        j = core_listener_metrics_json(l);
    pthread_mutex_unlock(&r->lock);
    if (!l)
        return -ENOENT;
    if (!j)
        return -ENOMEM;
    *ret = j;
    return 0;
}

int core_registry_metrics_all(struct core_registry *r, json_t **ret)
{
    json_t *o = json_object();

    if (!o)
        return -ENOMEM;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++) {
        struct core_listener *l = r->list[i];

        if (json_object_set_new(o, core_listener_id(l), core_listener_metrics_json(l)) < 0) {
            pthread_mutex_unlock(&r->lock);
            json_decref(o);
            return -ENOMEM;
        }
    }
    pthread_mutex_unlock(&r->lock);
    *ret = o;
    return 0;
}

/*
 * A copy of the configuration of listener id, a service that keeps files, for reading outside
 * the registry's locks. -ENOENT for no such listener, -ENOTSUP when its service keeps none.
 */
static int files_cfg_of(struct core_registry *r, const char *id, struct core_listener_cfg *ret,
                        struct core_err *err)
{
    struct core_listener *l;
    int rc;

    pthread_mutex_lock(&r->lock);
    l = lookup(r, id);
    rc = l ? core_listener_cfg_snapshot(l, ret) : -ENOENT;
    pthread_mutex_unlock(&r->lock);
    if (rc == -ENOENT)
        return core_err_set(err, rc, NULL, "no listener '%.64s'", id);
    if (rc == 0 && !(ret->svc->files_list && ret->svc->file_open)) {
        rc = core_err_set(err, -ENOTSUP, NULL, "listener '%s' (%s) keeps no files", id,
                          ret->svc->name);
        core_listener_cfg_fini(ret);
    }
    return rc;
}

int core_registry_files(struct core_registry *r, const char *id, json_t **ret, struct core_err *err)
{
    struct core_listener_cfg cfg;
    struct core_svc_env env = {.listener_id = id, .state_dir = r->state_dir};
    int rc;

    rc = files_cfg_of(r, id, &cfg, err);
    if (rc < 0)
        return rc;
    rc = cfg.svc->files_list(cfg.options, &env, ret, err);
    core_listener_cfg_fini(&cfg);
    return rc;
}

int core_registry_file_open(struct core_registry *r, const char *id, const char *name,
                            unsigned version, int *ret_fd, uint64_t *ret_size, struct core_err *err)
{
    struct core_listener_cfg cfg;
    struct core_svc_env env = {.listener_id = id, .state_dir = r->state_dir};
    int rc;

    rc = files_cfg_of(r, id, &cfg, err);
    if (rc < 0)
        return rc;
    rc = cfg.svc->file_open(cfg.options, &env, name, version, ret_fd, ret_size, err);
    core_listener_cfg_fini(&cfg);
    return rc;
}

int core_registry_views(struct core_registry *r, struct core_listener_view **ret, size_t *ret_n)
{
    struct core_listener_view *v;
    size_t n;

    pthread_mutex_lock(&r->lock);
    n = r->n;
    v = calloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; v && i < n; i++) {
        struct core_listener *l = r->list[i];
        struct core_listener_cfg cfg;

        snprintf(v[i].id, sizeof(v[i].id), "%s", core_listener_id(l));
        if (core_listener_cfg_snapshot(l, &cfg) < 0) {
            free(v);
            v = NULL;
            break;
        }
        v[i].svc = cfg.svc;
        v[i].transport = cfg.transport;
        core_listener_cfg_fini(&cfg);
        v[i].running = core_listener_state(l) == CORE_STATE_RUNNING;
        core_metrics_snapshot(core_listener_metrics(l), &v[i].metrics);
    }
    pthread_mutex_unlock(&r->lock);
    if (!v)
        return -ENOMEM;
    *ret = v;
    *ret_n = n;
    return 0;
}

size_t core_registry_count(struct core_registry *r)
{
    size_t n;

    pthread_mutex_lock(&r->lock);
    n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* The metrics tick: every listener's counters with their rates since the previous tick. */
static void tick(struct core_registry *r, json_t *prev, double dt)
{
    static const char *const rated[] = {"bytes_in", "bytes_out", "connections_total",
                                        "datagrams_in", "datagrams_out"};
    static const char *const rate_names[] = {"bytes_in", "bytes_out", "connections", "datagrams_in",
                                             "datagrams_out"};
    struct timespec now;
    char when[40];
    struct tm tm;
    const char *id;
    json_t *all = NULL, *m;

    if (core_registry_metrics_all(r, &all) < 0)
        return;
    json_object_foreach(all, id, m)
    {
        json_t *before = json_object_get(prev, id), *rates = json_object();

        for (size_t i = 0; i < sizeof(rated) / sizeof(rated[0]); i++) {
            json_int_t cur = json_integer_value(json_object_get(m, rated[i]));
            json_t *old = json_object_get(before, rated[i]);
            double rate = old && dt > 0 && cur >= json_integer_value(old)
                              ? (double)(cur - json_integer_value(old)) / dt
                              : 0.0;

            json_object_set_new(rates, rate_names[i], json_real(rate));
        }
        json_object_set_new(m, "rates", rates);
    }
    json_object_clear(prev);
    json_object_update(prev, all);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03ldZ", now.tv_nsec / 1000000);
    core_events_publish(r->events, "metrics",
                        json_pack("{s:s, s:I, s:o}", "time", when, "interval_ms",
                                  (json_int_t)r->metrics_interval_ms, "listeners", all));
}

/* Ends the live reconfigurations' draining runners that are done or past their deadline. A
 * change under way (it holds ops) reaps them itself. */
static void reap_drained(struct core_registry *r)
{
    if (pthread_mutex_trylock(&r->ops) != 0)
        return;
    for (size_t i = 0; i < r->n; i++)
        core_listener_reap_drained(r->list[i]);
    pthread_mutex_unlock(&r->ops);
}

static void *ticker_main(void *arg)
{
    struct core_registry *r = arg;
    struct timespec deadline, last = {0}, now;
    json_t *prev = json_object();

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    pthread_mutex_lock(&r->tick_lock);
    while (!r->stopping) {
        deadline.tv_sec += r->metrics_interval_ms / 1000;
        deadline.tv_nsec += (long)(r->metrics_interval_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
        while (!r->stopping &&
               pthread_cond_timedwait(&r->tick_cond, &r->tick_lock, &deadline) != ETIMEDOUT)
            ;
        if (r->stopping)
            break;
        pthread_mutex_unlock(&r->tick_lock);
        reap_drained(r);
        if (r->events && core_events_has_subscribers(r->events)) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            tick(r, prev,
                 last.tv_sec ? (double)(now.tv_sec - last.tv_sec) +
                                   (double)(now.tv_nsec - last.tv_nsec) / 1e9
                             : 0.0);
            last = now;
        } else {
            last.tv_sec = 0;
            json_object_clear(prev);
        }
        pthread_mutex_lock(&r->tick_lock);
    }
    pthread_mutex_unlock(&r->tick_lock);
    json_decref(prev);
    return NULL;
}
