#include "core/registry.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/listener.h"
#include "core/store.h"
#include "core/thread.h"
#include "core/ticker.h"
#include "registry_internal.h"

#define DEFAULT_MAX_LISTENERS 256

int core_registry_new(const struct core_registry_opts *opts, struct core_registry **ret)
{
    struct core_registry *r = calloc(1, sizeof(*r));
    char path[PATH_MAX];
    int rc;

    if (!r)
        return -ENOMEM;
    r->services = opts->services;
    r->state_dir = strdup(opts->state_dir ? opts->state_dir : ".");
    r->persist = opts->persist;
    r->max_listeners = opts->max_listeners ? opts->max_listeners : DEFAULT_MAX_LISTENERS;
    r->list = calloc(r->max_listeners, sizeof(*r->list));
    if (!r->state_dir || !r->list || core_endpoints_new(&r->own) < 0 ||
        snprintf(r->state_path, sizeof(r->state_path), "%s/%s", r->state_dir, CORE_STORE_FILE) >=
            (int)sizeof(r->state_path) ||
        snprintf(path, sizeof(path), "%s/%s", r->state_dir, CORE_REVISIONS_FILE) >=
            (int)sizeof(path) ||
        core_revisions_new(path, &r->revisions) < 0 || core_threads_new(&r->threads) < 0) {
        core_threads_free(r->threads);
        core_revisions_free(r->revisions);
        core_endpoints_free(r->own);
        free(r->list);
        free(r->state_dir);
        free(r);
        return -ENOMEM;
    }
    r->events = opts->events;
    pthread_mutex_init(&r->ops, NULL);
    pthread_mutex_init(&r->lock, NULL);
    rc = core_ticker_start(r, opts->events, opts->metrics_interval_ms, &r->ticker);
    if (rc < 0) {
        core_registry_free(r);
        return rc;
    }
    *ret = r;
    return 0;
}

void core_registry_free(struct core_registry *r)
{
    if (!r)
        return;
    core_ticker_stop(r->ticker);
    for (size_t i = 0; i < r->n; i++)
        core_listener_free(r->list[i]);
    core_threads_free(r->threads); /* after every runner */
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->ops);
    core_endpoints_free(r->own);
    core_revisions_free(r->revisions);
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

struct core_listener *core_registry_lookup(const struct core_registry *r, const char *id)
{
    bool found;
    size_t i = find(r, id, &found);

    return found ? r->list[i] : NULL;
}

void core_registry_insert_locked(struct core_registry *r, struct core_listener *l)
{
    bool found;
    size_t i = find(r, core_listener_id(l), &found);

    memmove(&r->list[i + 1], &r->list[i], (r->n - i) * sizeof(*r->list));
    r->list[i] = l;
    r->n++;
}

void core_registry_take_out_locked(struct core_registry *r, struct core_listener *l)
{
    bool found;
    size_t i = find(r, core_listener_id(l), &found);

    if (!found)
        return;
    memmove(&r->list[i], &r->list[i + 1], (r->n - i - 1) * sizeof(*r->list));
    r->n--;
}

void core_registry_publish(struct core_registry *r, const char *type, json_t *data)
{
    if (r->events)
        core_events_publish(r->events, type, data);
    else
        json_decref(data);
}

int core_registry_resource(struct core_registry *r, struct core_listener *l, json_t **ret)
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

static json_t *snapshot_json(const void *v)
{
    return core_listener_snapshot_json(v);
}

static void snapshot_free(void *v)
{
    core_listener_snapshot_free(v);
}

int core_registry_publish_resource(struct core_registry *r, const char *type,
                                   struct core_listener *l, json_t **ret)
{
    struct core_listener_snapshot *v;

    if (!r->events && !ret)
        return 0;
    pthread_mutex_lock(&r->lock);
    v = core_listener_snapshot_take(l, true);
    pthread_mutex_unlock(&r->lock);
    if (!v)
        return -ENOMEM;
    if (ret && !(*ret = core_listener_snapshot_json(v))) {
        core_listener_snapshot_free(v);
        return -ENOMEM;
    }
    if (r->events)
        core_events_publish_lazy(r->events, type, v, snapshot_json, snapshot_free);
    else
        core_listener_snapshot_free(v);
    return 0;
}

int core_cfg_cmp_id(const void *a, const void *b)
{
    const struct core_listener_cfg *x = a, *y = b;

    return strcmp(x->id, y->id);
}

int core_cfg_ptr_cmp_id(const void *a, const void *b)
{
    const struct core_listener_cfg *const *x = a, *const *y = b;

    return strcmp((*x)->id, (*y)->id);
}

json_t *core_cfgs_set_json(const struct core_listener_cfg *const *set, size_t n)
{
    const struct core_listener_cfg **s = calloc(n + 1, sizeof(*s));
    json_t *a = json_array();

    if (!s || !a)
        goto fail;
    memcpy(s, set, n * sizeof(*s));
    qsort(s, n, sizeof(*s), core_cfg_ptr_cmp_id);
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(a, core_listener_cfg_json(s[i])) < 0)
            goto fail;
    free(s);
    return a;
fail:
    free(s);
    json_decref(a);
    return NULL;
}

int core_cfgs_from_json(struct core_registry *r, const json_t *a, struct core_listener_cfg **ret,
                        size_t *ret_n, struct core_err *err)
{
    struct core_listener_cfg *cfgs = calloc(json_array_size(a) + 1, sizeof(*cfgs));
    size_t i, n = 0;
    json_t *e;
    int rc = 0;

    if (!cfgs)
        return -ENOMEM;
    json_array_foreach(a, i, e)
    {
        rc = core_listener_cfg_from_json(e, r->services, false, &cfgs[n], err);
        if (rc < 0)
            break;
        n++;
    }
    if (rc < 0) {
        for (i = 0; i < n; i++)
            core_listener_cfg_fini(&cfgs[i]);
        free(cfgs);
        return rc;
    }
    *ret = cfgs;
    *ret_n = n;
    return 0;
}

void core_cfgs_free(struct core_listener_cfg *cfgs, size_t n)
{
    for (size_t i = 0; cfgs && i < n; i++)
        core_listener_cfg_fini(&cfgs[i]);
    free(cfgs);
}

struct core_svc_env core_registry_svc_env(const struct core_registry *r, const char *id)
{
    return (struct core_svc_env){.listener_id = id,
                                 .state_dir = r->state_dir,
                                 .protected_paths = r->services->protected_paths};
}

int core_registry_config(struct core_registry *r, json_t **ret)
{
    uint64_t n = 0;
    json_t *set = core_revisions_last_listeners(r->revisions, &n), *j;

    if (!set)
        set = json_array();
    j = set ? json_pack("{s:I, s:o}", "revision", (json_int_t)n, "listeners", set) : NULL;
    if (!j)
        return -ENOMEM;
    *ret = j;
    return 0;
}

int core_registry_revisions(struct core_registry *r, size_t limit, json_t **ret)
{
    json_t *list = core_revisions_list(r->revisions, limit), *j;

    j = list ? json_pack("{s:o}", "revisions", list) : NULL;
    if (!j)
        return -ENOMEM;
    *ret = j;
    return 0;
}

int core_registry_revision(struct core_registry *r, uint64_t n, json_t **ret)
{
    return core_revisions_get(r->revisions, n, ret);
}

/* Listener id's resource with its metrics (resource) or its metrics alone, or -ENOENT. */
static int listener_json(struct core_registry *r, const char *id, bool resource, json_t **ret)
{
    struct core_listener *l;
    json_t *j = NULL;

    pthread_mutex_lock(&r->lock);
    l = core_registry_lookup(r, id);
    if (l)
        j = resource ? core_listener_to_json(l, true) : core_listener_metrics_json(l, NULL);
    pthread_mutex_unlock(&r->lock);
    if (!l)
        return -ENOENT;
    if (!j)
        return -ENOMEM;
    *ret = j;
    return 0;
}

int core_registry_get(struct core_registry *r, const char *id, json_t **ret, uint64_t *ret_etag)
{
    int rc = listener_json(r, id, true, ret);

    if (rc == 0 && ret_etag)
        *ret_etag = core_revisions_of(r->revisions, id);
    return rc;
}

int core_registry_list(struct core_registry *r, json_t **ret)
{
    return core_registry_list_made(r, NULL, ret);
}

int core_registry_list_made(struct core_registry *r, const json_t *made, json_t **ret)
{
    json_t *a = json_array();

    if (!a)
        return -ENOMEM;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++) {
        json_t *j = json_object_get(made, core_listener_id(r->list[i]));

        j = j ? json_incref(j) : core_listener_to_json(r->list[i], true);
        if (json_array_append_new(a, j) < 0) {
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
    return listener_json(r, id, false, ret);
}

int core_registry_metrics_all(struct core_registry *r, core_registry_metrics_fn fn, void *ctx,
                              json_t **ret)
{
    struct core_metrics_snapshot snap;
    json_t *o = json_object();

    if (!o)
        return -ENOMEM;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++) {
        struct core_listener *l = r->list[i];
        json_t *m = core_listener_metrics_json(l, &snap);

        if (json_object_set_new(o, core_listener_id(l), m) < 0) {
            pthread_mutex_unlock(&r->lock);
            json_decref(o);
            return -ENOMEM;
        }
        if (fn)
            fn(ctx, core_listener_id(l), m, &snap);
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
    l = core_registry_lookup(r, id);
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
    struct core_svc_env env = core_registry_svc_env(r, id);
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
    struct core_svc_env env = core_registry_svc_env(r, id);
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

bool core_registry_history_problem(struct core_registry *r, char *buf, size_t len)
{
    return core_revisions_problem(r->revisions, buf, len);
}

void core_registry_reap_drained(struct core_registry *r)
{
    if (pthread_mutex_trylock(&r->ops) != 0)
        return;
    core_listener_reap_drained_all(r->list, r->n);
    pthread_mutex_unlock(&r->ops);
}
