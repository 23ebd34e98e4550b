#include "core/change.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/diff.h"
#include "core/listener.h"
#include "core/listener_change.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/store.h"
#include "core/thread.h"
#include "registry_internal.h"

static const char *const iface_names[CORE_IFACE_COUNT] = {
    [CORE_IFACE_API] = "api",
    [CORE_IFACE_STARTUP] = "startup",
    [CORE_IFACE_FLEET] = "fleet",
};

static const char *const kind_names[CORE_CHANGE_KIND_COUNT] = {
    [CORE_CHANGE_CREATE] = "create",
    [CORE_CHANGE_REPLACE] = "replace",
    [CORE_CHANGE_PATCH] = "patch",
    [CORE_CHANGE_DELETE] = "delete",
    [CORE_CHANGE_START] = "start",
    [CORE_CHANGE_STOP] = "stop",
    [CORE_CHANGE_CONFIG_REPLACE] = "replace",
    [CORE_CHANGE_RESTORE] = "restore",
    [CORE_CHANGE_LOAD_DEFAULTS] = "load",
    [CORE_CHANGE_LOAD_STATE] = "load",
};

bool core_expect_met(const struct core_expect *e, uint64_t revision, bool exists)
{
    switch (e->kind) {
    case CORE_EXPECT_NONE:
        return true;
    case CORE_EXPECT_EXISTS:
        return exists;
    case CORE_EXPECT_ONE_OF:
        for (size_t i = 0; exists && i < e->n && i < CORE_EXPECT_MAX; i++)
            if (e->revisions[i] == revision)
                return true;
        return false;
    case CORE_EXPECT_KIND_COUNT:
        break;
    }
    return false;
}

const char *core_iface_name(enum core_iface iface)
{
    return iface < CORE_IFACE_COUNT ? iface_names[iface] : "unknown";
}

const char *core_change_kind_name(enum core_change_kind kind)
{
    return kind < CORE_CHANGE_KIND_COUNT ? kind_names[kind] : "unknown";
}

void core_change_source_format(const struct core_change_source *s, char *buf, size_t len)
{
    const char *iface = core_iface_name(s->iface);

    switch (s->kind) {
    case CORE_CHANGE_CONFIG_REPLACE:
        if (s->has_fleet_offset)
            (void)snprintf(buf, len, "%s: replace configuration (offset %" PRIu64 ")", iface,
                           s->fleet_offset);
        else
            (void)snprintf(buf, len, "%s: replace configuration", iface);
        break;
    case CORE_CHANGE_RESTORE:
        (void)snprintf(buf, len, "%s: restore of revision %" PRIu64, iface, s->restored);
        break;
    case CORE_CHANGE_LOAD_DEFAULTS:
        (void)snprintf(buf, len, "%s: defaults", iface);
        break;
    case CORE_CHANGE_LOAD_STATE:
        (void)snprintf(buf, len, "%s: state file", iface);
        break;
    default:
        (void)snprintf(buf, len, "%s: %s listener%s%.*s", iface, core_change_kind_name(s->kind),
                       s->listener[0] ? " " : "", CORE_ID_MAX - 1, s->listener);
        break;
    }
}

json_t *core_change_source_json(const struct core_change_source *s)
{
    return json_pack("{s:s, s:s, s:s?, s:o}", "interface", core_iface_name(s->iface), "action",
                     core_change_kind_name(s->kind), "listener",
                     s->listener[0] ? s->listener : NULL, "restored",
                     s->restored ? json_integer((json_int_t)s->restored) : json_null());
}

/* Records what the change is in ch->source: kind, about listener id (NULL: none). */
static void source_set(struct core_change *ch, enum core_change_kind kind, const char *id)
{
    ch->source = (struct core_change_source){.iface = ch->iface, .kind = kind};
    if (ch->iface == CORE_IFACE_FLEET && ch->has_fleet_offset) {
        ch->source.has_fleet_offset = true;
        ch->source.fleet_offset = ch->fleet_offset;
    }
    if (id)
        (void)snprintf(ch->source.listener, sizeof(ch->source.listener), "%.*s", CORE_ID_MAX - 1,
                       id);
}

void core_change_fini(struct core_change *ch)
{
    if (!ch)
        return;
    json_decref(ch->diff);
    ch->diff = NULL;
}

/* Makes up a free id for cfg: "<service>-<transport>", then "-2", "-3", ... */
static void make_id(struct core_registry *r, struct core_listener_cfg *cfg)
{
    char id[CORE_ID_MAX];

    snprintf(id, sizeof(id), "%s-%s", cfg->svc->name, core_transport_name(cfg->transport));
    for (unsigned k = 2; core_registry_lookup(r, id); k++)
        snprintf(id, sizeof(id), "%s-%s-%u", cfg->svc->name, core_transport_name(cfg->transport),
                 k);
    memcpy(cfg->id, id, sizeof(id));
}

/*
 * A change of the listener set, planned against the listeners there are: one item for each
 * listener that is there or wanted.
 */
enum item_kind { ITEM_KEEP, ITEM_CREATE, ITEM_CHANGE, ITEM_DELETE };

struct item {
    enum item_kind kind;
    struct core_listener_cfg *cfg; /* the wanted configuration (borrowed); NULL for delete */
    struct core_listener *l;       /* there (keep, change, delete) or made (create) */
    int body_index;                /* its index in the request's body, or -1 */
    bool applied;
    struct core_listener_saved saved; /* delete: what it was, to put it back */
};

struct plan {
    struct item *items;
    size_t n;
    struct core_listener **changed; /* room for n: the commit's list of the changed ones */
    json_t *diff;                   /* core/diff.h */
    /* {"id": resource} of the listeners created or changed, as their events carry them, for
     * the answer to reuse; NULL: not kept. */
    json_t *resources;
};

static void plan_fini(struct plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->items[i].kind == ITEM_DELETE)
            core_listener_saved_fini(&p->items[i].saved);
    free(p->items);
    free(p->changed);
    json_decref(p->diff);
    json_decref(p->resources);
    memset(p, 0, sizeof(*p));
}

/*
 * Plans the change from the listeners there are to want (n_want configurations with unique
 * ids, borrowed until plan_fini()). force_id (may be NULL) names a listener to start again
 * even when its configuration does not change, when it should run and does not. index[i] (may
 * be NULL) is want[i]'s index in the request's body. Called with ops held.
 */
static int plan_make(struct core_registry *r, struct core_listener_cfg *want, size_t n_want,
                     const int *index, const char *force_id, struct plan *ret)
{
    const struct core_listener_cfg **from = calloc(r->n + 1, sizeof(*from));
    const struct core_listener_cfg **to = calloc(n_want + 1, sizeof(*to));
    const struct core_listener_cfg **by_id = calloc(n_want + 1, sizeof(*by_id));
    bool *running = calloc(r->n + 1, sizeof(*running));
    struct plan p = {.items = calloc(r->n + n_want + 1, sizeof(*p.items)),
                     .changed = calloc(r->n + 1, sizeof(*p.changed))};
    int rc = -ENOMEM;

    if (!from || !to || !by_id || !running || !p.items || !p.changed)
        goto out;
    /* Both sides by id: the list is sorted, want is sorted here; one merge pairs them. */
    for (size_t k = 0; k < n_want; k++)
        by_id[k] = &want[k];
    qsort(by_id, n_want, sizeof(*by_id), core_cfg_ptr_cmp_id);
    for (size_t i = 0, w = 0; i < r->n; i++) {
        struct core_listener *l = r->list[i];
        struct item *it = &p.items[p.n++];
        size_t k;

        from[i] = core_listener_cfg(l);
        running[i] = core_listener_state(l) == CORE_STATE_RUNNING;
        it->l = l;
        it->body_index = -1;
        it->kind = ITEM_DELETE;
        while (w < n_want && strcmp(by_id[w]->id, core_listener_id(l)) < 0)
            w++;
        if (w == n_want || strcmp(by_id[w]->id, core_listener_id(l)) != 0)
            continue;
        k = (size_t)(by_id[w] - want);
        it->cfg = &want[k];
        it->body_index = index ? index[k] : -1;
        if (!core_listener_cfg_equal(from[i], &want[k]))
            it->kind = ITEM_CHANGE;
        else if (force_id && strcmp(force_id, want[k].id) == 0 && want[k].enabled && !running[i])
            it->kind = ITEM_CHANGE;
        else
            it->kind = ITEM_KEEP;
    }
    for (size_t k = 0; k < n_want; k++) {
        to[k] = &want[k];
        if (core_registry_lookup(r, want[k].id))
            continue;
        p.items[p.n++] = (struct item){
            .kind = ITEM_CREATE, .cfg = &want[k], .body_index = index ? index[k] : -1};
    }
    /* What the change sets is rendered once, here, for the state file and the revision: what
     * it keeps was rendered when it was set. */
    for (size_t i = 0; i < p.n; i++)
        if (p.items[i].kind == ITEM_CREATE || p.items[i].kind == ITEM_CHANGE)
            if (core_listener_cfg_render(p.items[i].cfg) < 0)
                goto out;
    rc = core_diff_sets(from, r->n, running, to, n_want, &p.diff);
out:
    free(from);
    free(to);
    free(by_id);
    free(running);
    if (rc < 0) {
        plan_fini(&p);
        return rc;
    }
    *ret = p;
    return 0;
}

/* Puts "listeners[index]." before err's field ("listeners[index]" when it names none). */
static void prefix_field(struct core_err *err, size_t index)
{
    char field[2 * sizeof(err->field)];
    int len;

    if (!err)
        return;
    len = snprintf(field, sizeof(field), "listeners[%zu]%s%s", index, err->field[0] ? "." : "",
                   err->field);
    if (len < 0)
        return;
    field[sizeof(err->field) - 1] = '\0';
    memcpy(err->field, field, sizeof(err->field));
}

/* Names the listener of it at fault in ch and err (its field as "listeners[I].FIELD" when it
 * came from a body). Returns code. */
static int item_fault(const struct item *it, int code, struct core_change *ch, struct core_err *err)
{
    const char *id = it->cfg ? it->cfg->id : core_listener_id(it->l);

    snprintf(ch->listener, sizeof(ch->listener), "%s", id);
    if (it->body_index >= 0)
        prefix_field(err, (size_t)it->body_index);
    return code;
}

/* The service's env_check of cfg (see core/service.h); 0 when it has none. */
static int env_check(const struct core_registry *r, const struct core_listener_cfg *cfg,
                     bool usable, struct core_err *err)
{
    const struct core_svc_env env = core_registry_svc_env(r, cfg->id);

    return cfg->svc->env_check ? cfg->svc->env_check(cfg->options, &env, usable, err) : 0;
}

/* The configuration item i leaves in the set, or NULL for a deletion. */
static const struct core_listener_cfg *item_cfg(const struct item *it)
{
    if (it->kind == ITEM_DELETE)
        return NULL;
    return it->kind == ITEM_KEEP ? core_listener_cfg(it->l) : it->cfg;
}

/* What item i claims (core_service.claim), into buf; "" for nothing. */
static int item_claim(const struct core_registry *r, const struct item *it, char *buf, size_t len)
{
    const struct core_listener_cfg *cfg = item_cfg(it);
    struct core_svc_env env;

    buf[0] = '\0';
    if (!cfg || !cfg->enabled || !cfg->svc->claim)
        return 0;
    env = core_registry_svc_env(r, cfg->id);
    return cfg->svc->claim(cfg->options, &env, buf, len);
}

/*
 * Whether two enabled listeners of the set the plan leaves claim the same thing (two backup
 * listeners, one directory): -EBUSY naming the one the plan creates or changes.
 */
static int plan_check_claims(const struct core_registry *r, const struct plan *p,
                             struct core_change *ch, struct core_err *err)
{
    char(*names)[PATH_MAX];
    size_t claiming = 0;
    int rc = 0;

    /* Most sets claim nothing: no PATH_MAX a listener to allocate then. */
    for (size_t i = 0; i < p->n; i++)
        claiming += item_cfg(&p->items[i]) && item_cfg(&p->items[i])->svc->claim;
    if (claiming < 2)
        return 0;
    names = calloc(p->n + 1, sizeof(*names));
    if (!names)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        const struct item *it = &p->items[i];

        if (item_claim(r, it, names[i], sizeof(names[i])) < 0)
            names[i][0] = '\0'; /* cannot tell: left to the start to find out */
        for (size_t k = 0; k < i && names[i][0]; k++) {
            const struct item *a = it->kind == ITEM_KEEP ? &p->items[k] : it;
            const struct item *b = a == it ? &p->items[k] : it;

            if (strcmp(names[k], names[i]) != 0 ||
                (it->kind == ITEM_KEEP && p->items[k].kind == ITEM_KEEP))
                continue;
            core_err_set(err, -EBUSY, item_cfg(a)->svc->claim_field,
                         "%s: %s is held by listener %s as well", item_cfg(a)->svc->claim_field,
                         names[i], item_cfg(b)->id);
            rc = item_fault(a, -EBUSY, ch, err);
            break;
        }
    }
    free(names);
    return rc;
}

/* Whether what the plan creates or changes may run where it would (dry runs and real ones). */
static int plan_check_env(const struct core_registry *r, const struct plan *p,
                          struct core_change *ch, struct core_err *err)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct item *it = &p->items[i];
        int rc;

        if (it->kind != ITEM_CREATE && it->kind != ITEM_CHANGE)
            continue;
        rc = env_check(r, it->cfg, it->cfg->enabled, err);
        if (rc < 0)
            return item_fault(it, rc, ch, err);
    }
    return plan_check_claims(r, p, ch, err);
}

/* A dry run: whether each socket the plan needs can be bound now. */
static int plan_probe(const struct plan *p, struct core_change *ch, struct core_err *err)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct item *it = &p->items[i];
        const struct core_listener_cfg *old;
        int rc;

        if ((it->kind != ITEM_CREATE && it->kind != ITEM_CHANGE) || !it->cfg->enabled)
            continue;
        if (it->kind == ITEM_CHANGE) {
            old = core_listener_cfg(it->l);
            /* A running listener that keeps its socket needs no new one. */
            if (core_listener_bound_port(it->l) != 0 && old->transport == it->cfg->transport &&
                (it->cfg->port == 0 || it->cfg->port == old->port) &&
                strcmp(old->address, it->cfg->address) == 0)
                continue;
        }
        rc = core_listener_probe(it->cfg, err);
        /* A listener restarted on its own port lets go of it first. */
        if (rc == -EADDRINUSE && it->kind == ITEM_CHANGE && it->cfg->port != 0 &&
            it->cfg->port == core_listener_bound_port(it->l) &&
            it->cfg->transport == core_listener_cfg(it->l)->transport)
            continue;
        if (rc < 0)
            return item_fault(it, rc, ch, err);
    }
    return 0;
}

/* Undoes what plan_apply() applied, newest first. Called with ops held. */
static void plan_rollback(struct core_registry *r, struct plan *p)
{
    (void)r;
    for (size_t i = p->n; i-- > 0;) {
        struct item *it = &p->items[i];

        if (!it->applied)
            continue;
        switch (it->kind) {
        case ITEM_CREATE:
            core_listener_free(it->l);
            it->l = NULL;
            break;
        case ITEM_CHANGE:
            core_listener_abort(it->l);
            break;
        case ITEM_DELETE: /* still as it was; what was saved of it is saved again by a retry */
            core_listener_saved_fini(&it->saved);
            break;
        case ITEM_KEEP:
            break;
        }
        it->applied = false;
    }
}

/*
 * Applies the plan's first half: the listeners it changes get their new configuration
 * prepared (core_listener_prepare()), those it creates are made and started; those it deletes
 * are only noted (they stop at the commit, so a port they hold is not free before it). On a
 * failure everything is rolled back and the listener at fault is named. Called with ops held.
 */
static int plan_apply(struct core_registry *r, struct plan *p, struct core_change *ch,
                      struct core_err *err)
{
    static const enum item_kind order[] = {ITEM_DELETE, ITEM_CHANGE, ITEM_CREATE};
    size_t creates = 0, deletes = 0;
    int rc = 0;

    for (size_t i = 0; i < p->n; i++) {
        creates += p->items[i].kind == ITEM_CREATE;
        deletes += p->items[i].kind == ITEM_DELETE;
    }
    if (r->n - deletes + creates > r->max_listeners)
        return core_err_set(err, -EMLINK, NULL, "the daemon holds its maximum of %zu listeners",
                            r->max_listeners);
    for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++) {
        for (size_t i = 0; i < p->n; i++) {
            struct item *it = &p->items[i];

            if (it->kind != order[o])
                continue;
            switch (it->kind) {
            case ITEM_DELETE:
                /* It goes on until the commit, so that a rollback finds its socket as it was. */
                rc = core_listener_save(it->l, &it->saved);
                if (rc < 0)
                    rc = core_err_set(err, rc, NULL, "out of memory");
                break;
            case ITEM_CHANGE:
                rc = core_listener_prepare(it->l, it->cfg, err);
                break;
            case ITEM_CREATE:
                rc =
                    core_listener_new(it->cfg, r->state_dir, r->events, r->own, r->threads, &it->l);
                if (rc < 0) {
                    rc = core_err_set(err, rc, NULL, "out of memory");
                    break;
                }
                if (it->cfg->enabled)
                    rc = core_listener_start(it->l, err);
                if (rc < 0) {
                    core_listener_free(it->l);
                    it->l = NULL;
                }
                break;
            case ITEM_KEEP:
                break;
            }
            if (rc < 0) {
                item_fault(it, rc, ch, err);
                plan_rollback(r, p);
                return rc;
            }
            it->applied = true;
        }
    }
    return 0;
}

/* The configurations the plan leaves (borrowed from it), sorted by id: an array of *ret_n
 * (free() it), NULL on ENOMEM. */
static const struct core_listener_cfg **plan_cfgs(const struct plan *p, size_t *ret_n)
{
    const struct core_listener_cfg **cfgs = calloc(p->n + 1, sizeof(*cfgs));
    size_t n = 0;

    if (!cfgs)
        return NULL;
    for (size_t i = 0; i < p->n; i++)
        if (p->items[i].kind != ITEM_DELETE)
            cfgs[n++] = item_cfg(&p->items[i]);
    qsort(cfgs, n, sizeof(*cfgs), core_cfg_ptr_cmp_id);
    *ret_n = n;
    return cfgs;
}

/* The state file's meta for a write at revision: the fleet offset ch carries, else the one
 * there is. Called with ops held. */
static struct core_store_meta store_meta(const struct core_registry *r,
                                         const struct core_change *ch, uint64_t revision)
{
    struct core_store_meta meta = {.revision = revision,
                                   .has_fleet_offset = r->has_fleet_offset,
                                   .fleet_offset = r->fleet_offset,
                                   .has_fleet_applied = r->has_fleet_applied,
                                   .fleet_applied_offset = r->fleet_applied};

    if (ch && ch->iface == CORE_IFACE_FLEET && ch->has_fleet_offset) {
        meta.has_fleet_offset = true;
        meta.fleet_offset = ch->fleet_offset;
    }
    return meta;
}

/* Takes the fleet offset of a change that was written; applied: its configuration is the
 * record's. Called with ops held. */
static void fleet_offset_commit(struct core_registry *r, const struct core_change *ch, bool applied)
{
    if (ch->iface != CORE_IFACE_FLEET || !ch->has_fleet_offset)
        return;
    pthread_mutex_lock(&r->lock);
    r->has_fleet_offset = true;
    r->fleet_offset = ch->fleet_offset;
    if (applied) {
        r->has_fleet_applied = true;
        r->fleet_applied = ch->fleet_offset;
    }
    pthread_mutex_unlock(&r->lock);
}

/* The set the plan leaves, for its revision: a JSON array sorted by id (new reference) of the
 * listeners' renderings' JSON, NULL on ENOMEM. */
static json_t *plan_set(const struct plan *p)
{
    const struct core_listener_cfg **cfgs;
    size_t n;
    json_t *set;

    cfgs = plan_cfgs(p, &n);
    set = cfgs ? core_cfgs_set_json(cfgs, n) : NULL;
    free(cfgs);
    return set;
}

/*
 * The state file's write for a change: the configurations the plan leaves, at a revision with
 * the change's fleet offset. It is staged (written beside the file and synced) on a thread of
 * the pool while the change binds and starts its runners, its fsync waiting for the disk
 * meanwhile, and put in place (renamed, the directory synced) once they are ready; a change
 * that fails drops it.
 */
struct state_save {
    struct core_registry *r;
    struct plan *p;
    struct core_store_meta meta;
    struct core_thread *thread; /* NULL: staged on the change's own thread */
    bool started;               /* a write is under way or done */
    struct core_fs_staged staged;
    int rc;
    struct core_err err;
};

/* The set plan p leaves as compact JSON text (free() it), put together from the listeners'
 * renderings; NULL on ENOMEM. */
static char *plan_set_text(const struct plan *p)
{
    size_t n;
    const struct core_listener_cfg **cfgs = plan_cfgs(p, &n);
    struct core_cfg_texts t;
    char *text = NULL;

    if (cfgs && core_cfg_texts_join(cfgs, n, "[", "", ",", "]", &t) == 0) {
        text = core_cfg_texts_string(&t);
        core_cfg_texts_release(&t);
    }
    free(cfgs);
    return text;
}

/* Whether plan p binds a socket: it creates a listener or changes one not live. */
static bool plan_binds(const struct plan *p)
{
    size_t i;
    json_t *e;

    json_array_foreach(p->diff, i, e)
    {
        const char *action = json_string_value(json_object_get(e, "action"));

        if (action &&
            (strcmp(action, "create") == 0 ||
             (strcmp(action, "change") == 0 && !json_is_true(json_object_get(e, "live")))))
            return true;
    }
    return false;
}

static void *state_stage_main(void *arg)
{
    struct state_save *s = arg;
    size_t n;
    const struct core_listener_cfg **cfgs = plan_cfgs(s->p, &n);

    s->rc = cfgs ? core_store_stage(s->r->state_path, cfgs, n, &s->meta, &s->staged, &s->err)
                 : core_err_set(&s->err, -ENOMEM, NULL, "out of memory");
    free(cfgs);
    return NULL;
}

/* Starts the state file's write for plan p at revision, when the change is to be recorded.
 * Called with ops held, before plan_apply(). */
static void state_save_begin(struct core_registry *r, struct plan *p, const struct core_change *ch,
                             struct state_save *s)
{
    *s = (struct state_save){.r = r, .p = p};
    if (!r->persist ||
        (json_array_size(p->diff) == 0 && !(ch->iface == CORE_IFACE_FLEET && ch->has_fleet_offset)))
        return;
    /* A fleet change of nothing still records its offset (same set, same revision). */
    s->meta = store_meta(r, ch,
                         json_array_size(p->diff) > 0 ? core_revisions_next(r->revisions)
                                                      : core_revisions_last(r->revisions));
    /* The change succeeds once written: its configuration is the record's. */
    if (ch->iface == CORE_IFACE_FLEET && ch->has_fleet_offset &&
        ch->source.kind == CORE_CHANGE_CONFIG_REPLACE) {
        s->meta.has_fleet_applied = true;
        s->meta.fleet_applied_offset = ch->fleet_offset;
    }
    s->started = true;
    /* A change that binds nothing has nothing for the write to overlap: no thread for it. */
    if (!plan_binds(p) || core_threads_run(r->threads, state_stage_main, s, "ss-state",
                                           CORE_THREAD_STACK_SIZE, &s->thread) < 0) {
        s->thread = NULL;
        (void)state_stage_main(s); /* no thread: here, then */
    }
}

/* Ends the write state_save_begin() started: puts the file in place when keep, else drops it.
 * Returns 0, or the errno of the write (-ENOSPC for a full disk) with err saying what. */
static int state_save_end(struct state_save *s, bool keep, struct core_err *err)
{
    if (!s->started)
        return 0;
    s->started = false;
    if (s->thread)
        core_threads_join(s->thread);
    s->thread = NULL;
    if (s->rc < 0) {
        if (keep && err)
            *err = s->err;
        return keep ? s->rc : 0;
    }
    if (!keep) {
        core_fs_stage_abort(&s->staged);
        return 0;
    }
    return core_store_commit(&s->staged, err);
}

/* A save of the revisions (core_revisions_save()) on a thread of its own. */
struct rev_save {
    struct core_revisions *rv;
    int rc;
    struct core_err err;
};

static void *rev_save_main(void *arg)
{
    struct rev_save *s = arg;

    s->rc = core_revisions_save(s->rv, &s->err);
    return NULL;
}

/*
 * Completes an applied plan: the list takes in the listeners created and lets go of those
 * deleted (freed), the changes are committed, the revision is recorded and the events
 * published. The revision's line is written and synced on a thread of the pool meanwhile
 * (its fdatasync waits for the disk while the commit runs), and waited for before the
 * "config.revision" event and the return. Called with ops held; cannot fail.
 */
static void plan_commit(struct core_registry *r, struct plan *p, struct core_change *ch)
{
    struct rev_save save = {.rv = r->revisions};
    struct core_thread *saver = NULL;
    struct core_listener **changed = p->changed;
    size_t n_changed = 0;
    char source[CORE_SOURCE_MAX];
    uint64_t rev = 0;
    json_t *set = NULL, *origin = core_change_source_json(&ch->source);
    char *summary = NULL, *set_text = NULL;

    core_change_source_format(&ch->source, source, sizeof(source));
    if (json_array_size(p->diff) > 0) {
        set = plan_set(p);
        set_text = set && r->persist ? plan_set_text(p) : NULL;
    }
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < p->n; i++) {
        struct item *it = &p->items[i];

        if (it->kind == ITEM_CREATE)
            core_registry_insert_locked(r, it->l);
        else if (it->kind == ITEM_DELETE)
            core_registry_take_out_locked(r, it->l);
    }
    if (set && core_revisions_append(r->revisions, source, json_incref(origin),
                                     json_incref(p->diff), set, set_text, false, &rev) < 0) {
        core_log_warn("revision of '%s' not recorded: out of memory", source);
        rev = 0;
    }
    pthread_mutex_unlock(&r->lock);
    if (rev && r->persist &&
        core_threads_run(r->threads, rev_save_main, &save, "ss-revisions", CORE_THREAD_STACK_SIZE,
                         &saver) < 0) {
        saver = NULL;
        (void)rev_save_main(&save); /* no thread: here, then */
    }
    /* Every runner that ends is told first, then each is joined: the wait is for the slowest,
     * not the sum of them. */
    for (size_t i = 0; i < p->n; i++) {
        struct item *it = &p->items[i];

        if (it->kind == ITEM_CHANGE)
            changed[n_changed++] = it->l;
        else if (it->kind == ITEM_DELETE)
            core_listener_stop_begin(it->l);
    }
    core_listener_commit_all(changed, n_changed);
    for (size_t i = 0; i < p->n; i++) {
        struct item *it = &p->items[i];

        if (it->kind == ITEM_DELETE) {
            core_listener_free(it->l);
            it->l = NULL;
        }
        it->applied = false;
    }
    for (size_t i = 0; i < p->n; i++) {
        struct item *it = &p->items[i];
        json_t *j = NULL;

        if (it->kind == ITEM_DELETE)
            core_registry_publish(r, "listener.deleted",
                                  json_pack("{s:s}", "id", it->saved.cfg.id));
        else if (it->kind != ITEM_KEEP &&
                 core_registry_publish_resource(
                     r, it->kind == ITEM_CREATE ? "listener.created" : "listener.changed", it->l,
                     p->resources ? &j : NULL) == 0 &&
                 j)
            (void)json_object_set_new(p->resources, core_listener_id(it->l), j);
    }
    if (saver)
        core_threads_join(saver);
    if (rev && r->persist && save.rc < 0)
        core_log_warn("revisions not saved: %s", save.err.msg);
    if (rev) {
        summary = core_diff_summary(p->diff);
        core_registry_publish(r, "config.revision",
                              json_pack("{s:I, s:s, s:o*, s:s}", "revision", (json_int_t)rev,
                                        "source", source, "origin",
                                        core_change_source_json(&ch->source), "summary",
                                        summary ? summary : ""));
        free(summary);
    }
    json_decref(origin);
    ch->revision = core_revisions_last(r->revisions);
}

/* Tells the event stream that a change was refused, nothing of it applied: what asked for it,
 * the listener and field at fault, and why. */
static void publish_refused(struct core_registry *r, const struct core_change *ch,
                            const struct core_err *err)
{
    char source[CORE_SOURCE_MAX];

    core_change_source_format(&ch->source, source, sizeof(source));
    core_registry_publish(r, "change.refused",
                          json_pack("{s:s, s:o, s:s?, s:s?, s:s}", "source", source, "origin",
                                    core_change_source_json(&ch->source), "listener",
                                    ch->listener[0] ? ch->listener : NULL, "field",
                                    err && err->field[0] ? err->field : NULL, "detail",
                                    err ? err->msg : ""));
}

/*
 * Changes the listener set to want (n_want configurations with unique ids; borrowed), as one
 * change: dry run, apply, persist, commit (see core_change in the header). On success
 * ch->diff holds the diff and, when ret_resources is not NULL, *ret_resources (new reference)
 * the resources of the listeners created or changed, as their events carried them. Called
 * with ops held.
 */
static int change_set(struct core_registry *r, struct core_listener_cfg *want, size_t n_want,
                      const int *index, const char *force_id, struct core_change *ch,
                      json_t **ret_resources, struct core_err *err)
{
    struct state_save save;
    struct plan p;
    int rc;

    ch->listener[0] = '\0';
    ch->persist_failed = false;
    rc = plan_make(r, want, n_want, index, force_id, &p);
    if (rc < 0)
        return core_err_set(err, rc, NULL, "out of memory");
    if (ret_resources && !ch->dry_run)
        p.resources = json_object(); /* NULL: each answered afresh */
    rc = plan_check_env(r, &p, ch, err);
    if (rc < 0)
        goto out;
    if (ch->dry_run) {
        rc = plan_probe(&p, ch, err);
        goto out;
    }
    state_save_begin(r, &p, ch, &save);
    rc = plan_apply(r, &p, ch, err);
    if (rc == -EMFILE || rc == -ENFILE) {
        /* Out of descriptors, maybe only because runners replaced by earlier changes still
         * hold theirs until the next reap: those whose connections ended give them back now,
         * and the change (rolled back whole) is tried once more. */
        core_listener_reap_drained_all(r->list, r->n);
        ch->listener[0] = '\0';
        rc = plan_apply(r, &p, ch, err);
    }
    if (rc < 0) {
        (void)state_save_end(&save, false, NULL);
        goto out;
    }
    rc = state_save_end(&save, true, err);
    if (rc < 0) {
        ch->persist_failed = true;
        plan_rollback(r, &p);
        goto out;
    }
    plan_commit(r, &p, ch);
    fleet_offset_commit(r, ch, ch->source.kind == CORE_CHANGE_CONFIG_REPLACE);
out:
    if (rc < 0 && !ch->dry_run)
        publish_refused(r, ch, err);
    if (rc == 0) {
        ch->diff = p.diff;
        p.diff = NULL;
        if (ret_resources) {
            *ret_resources = p.resources;
            p.resources = NULL;
        }
        if (ch->dry_run)
            ch->revision = core_revisions_last(r->revisions);
    }
    plan_fini(&p);
    return rc;
}

/* Copies of every listener's configuration, with room for extra more (ops held). */
static int current_cfgs(struct core_registry *r, size_t extra, struct core_listener_cfg **ret,
                        size_t *ret_n)
{
    struct core_listener_cfg *cfgs = calloc(r->n + extra + 1, sizeof(*cfgs));
    size_t n;

    if (!cfgs)
        return -ENOMEM;
    for (n = 0; n < r->n; n++) {
        if (core_listener_cfg_copy_rendered(core_listener_cfg(r->list[n]), &cfgs[n]) < 0) {
            core_cfgs_free(cfgs, n);
            return -ENOMEM;
        }
    }
    *ret = cfgs;
    *ret_n = n;
    return 0;
}

/* The answer for listener id after a change: its resource and revision. Called with ops held. */
static int answer_one(struct core_registry *r, const char *id, struct core_change *ch, json_t **ret)
{
    struct core_listener *l = core_registry_lookup(r, id);

    if (ch->dry_run || !ret)
        return 0;
    if (!l)
        return -ENOENT;
    ch->etag = core_revisions_of(r->revisions, id);
    return core_registry_resource(r, l, ret);
}

/*
 * Applies cfg (its id names the listener: changed when there, else created) as a change of
 * one listener, with every other listener as it is, and answers as answer_one(). Takes cfg's
 * content (cfg is zeroed). Called with ops held.
 */
static int change_one(struct core_registry *r, struct core_listener_cfg *cfg, bool force,
                      struct core_change *ch, json_t **ret, struct core_err *err)
{
    struct core_listener_cfg *want;
    char id[CORE_ID_MAX];
    size_t n, i;
    int rc;

    memcpy(id, cfg->id, sizeof(id));

    rc = current_cfgs(r, 1, &want, &n);
    if (rc < 0) {
        core_listener_cfg_fini(cfg);
        return core_err_set(err, rc, NULL, "out of memory");
    }
    for (i = 0; i < n && strcmp(want[i].id, cfg->id) != 0; i++)
        ;
    if (i < n)
        core_listener_cfg_fini(&want[i]);
    else
        n++;
    want[i] = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    rc = change_set(r, want, n, NULL, force ? want[i].id : NULL, ch, NULL, err);
    core_cfgs_free(want, n);
    return rc == 0 ? answer_one(r, id, ch, ret) : rc;
}

/* Checks ch's expectation against listener id (exists: it is there), or the whole
 * configuration when id is NULL. Called with ops held. */
static int precondition(struct core_registry *r, const char *id, bool exists,
                        struct core_change *ch, struct core_err *err)
{
    uint64_t rev = id ? core_revisions_of(r->revisions, id) : core_revisions_last(r->revisions);

    if (core_expect_met(&ch->expect, rev, exists))
        return 0;
    ch->etag = exists ? rev : 0;
    if (!exists)
        return core_err_set(err, -ESTALE, NULL, "there is no listener '%.64s' (yet)", id);
    return core_err_set(err, -ESTALE, NULL, "%s is at revision %" PRIu64 " now; read it again",
                        id ? "the listener" : "the configuration", rev);
}

/* Listener id, which a change is about, in *ret, once ch's expectation of it is met; else
 * -ENOENT or -ESTALE. Called with ops held. */
static int existing(struct core_registry *r, const char *id, struct core_change *ch,
                    struct core_listener **ret, struct core_err *err)
{
    struct core_listener *l = core_registry_lookup(r, id);
    int rc;

    if (!l)
        return core_err_set(err, -ENOENT, NULL, "no listener '%.64s'", id);
    rc = precondition(r, id, true, ch, err);
    if (rc < 0)
        return rc;
    *ret = l;
    return 0;
}

int core_registry_load(struct core_registry *r, const char *defaults, struct core_err *err)
{
    struct core_listener_cfg *cfgs = NULL, *last_cfgs = NULL;
    const struct core_listener_cfg **loaded = NULL, **last_set = NULL;
    struct core_store_meta meta = {0};
    bool from_defaults = false;
    size_t n = 0, n_last = 0;
    json_t *set = NULL, *last = NULL, *diff = NULL;
    uint64_t last_n = 0, rev;
    struct core_change_source src;
    char source[CORE_SOURCE_MAX];
    struct core_err e = {0};
    int ret;

    pthread_mutex_lock(&r->ops);
    ret = core_store_load(r->state_path, r->services, &cfgs, &n, &meta, err);
    if (ret == -ENOENT && defaults) {
        from_defaults = true;
        ret = core_store_parse(defaults, strlen(defaults), "embedded defaults", r->services, &cfgs,
                               &n, NULL, err);
    } else if (ret == -ENOENT) {
        ret = 0;
    }
    if (ret < 0)
        goto out;
    pthread_mutex_lock(&r->lock);
    r->has_fleet_offset = meta.has_fleet_offset;
    r->fleet_offset = meta.fleet_offset;
    r->has_fleet_applied = meta.has_fleet_applied;
    r->fleet_applied = meta.fleet_applied_offset;
    pthread_mutex_unlock(&r->lock);
    if (n > r->max_listeners) {
        ret = core_err_set(err, -EMLINK, NULL, "%zu listeners: the daemon holds at most %zu", n,
                           r->max_listeners);
        goto out;
    }
    if (n > 1)
        qsort(cfgs, n, sizeof(*cfgs), core_cfg_cmp_id);
    for (size_t i = 0; i < n; i++) {
        if (core_registry_lookup(r, cfgs[i].id) ||
            (i > 0 && strcmp(cfgs[i - 1].id, cfgs[i].id) == 0)) {
            ret = core_err_set(err, -EEXIST, "id", "%s: the id is there twice", cfgs[i].id);
            goto out;
        }
        memset(&e, 0, sizeof(e));
        ret = env_check(r, &cfgs[i], false, &e);
        if (ret < 0) {
            core_err_set(err, ret, e.field, "%s: listener %s: %s", r->state_path, cfgs[i].id,
                         e.msg);
            goto out;
        }
    }

    /* The history, before anything is written: a revision number once given is never given
     * again, so the state file's revision is a floor when the history lost revisions. */
    memset(&e, 0, sizeof(e));
    if (r->persist) {
        int lr = core_revisions_load(r->revisions, &e);
        uint64_t hist = core_revisions_last(r->revisions);
        char problem[256];

        if (lr < 0 && lr != -ENOENT && !core_revisions_problem(r->revisions, NULL, 0))
            core_revisions_report(r->revisions, "%s", e.msg);
        if (meta.revision > hist) {
            core_revisions_floor(r->revisions, meta.revision);
            if (!core_revisions_problem(r->revisions, NULL, 0))
                core_revisions_report(r->revisions,
                                      "%s/%s ends at revision %" PRIu64
                                      " but the state file is at revision %" PRIu64
                                      ": the revisions between are lost",
                                      r->state_dir, CORE_REVISIONS_FILE, hist, meta.revision);
        }
        if (core_revisions_problem(r->revisions, problem, sizeof(problem)))
            core_log_warn("history of revisions damaged: %s", problem);
    }
    for (size_t i = 0; i < n; i++) {
        struct core_listener *l;

        ret = core_listener_new(&cfgs[i], r->state_dir, r->events, r->own, r->threads, &l);
        if (ret < 0) {
            core_err_set(err, ret, NULL, "out of memory");
            goto out;
        }
        memset(&e, 0, sizeof(e));
        if (cfgs[i].enabled && core_listener_start(l, &e) < 0)
            core_log_warn("listener %s failed to start: %s", cfgs[i].id, e.msg);
        pthread_mutex_lock(&r->lock);
        core_registry_insert_locked(r, l);
        pthread_mutex_unlock(&r->lock);
    }
    loaded = calloc(n + 1, sizeof(*loaded));
    if (!loaded) {
        ret = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        loaded[i] = &cfgs[i];
    set = core_cfgs_set_json(loaded, n);
    last = core_revisions_last_listeners(r->revisions, &last_n);
    if (!set) {
        ret = -ENOMEM;
        goto out;
    }
    /* The history ends with the set loaded, or nothing loaded and no history (a first start
     * with --no-defaults): nothing to record. */
    if ((last && json_equal(last, set) && meta.revision <= last_n) || (!last && n == 0)) {
        if (from_defaults && r->persist) {
            meta.revision = last_n;
            ret = core_store_save(r->state_path, loaded, n, &meta, err);
        }
        goto out;
    }
    if (from_defaults && r->persist) {
        meta.revision = core_revisions_next(r->revisions);
        ret = core_store_save(r->state_path, loaded, n, &meta, err);
        if (ret < 0)
            goto out;
    }
    if (last && core_cfgs_from_json(r, last, &last_cfgs, &n_last, NULL) == 0) {
        last_set = calloc(n_last + 1, sizeof(*last_set));
        for (size_t i = 0; last_set && i < n_last; i++)
            last_set[i] = &last_cfgs[i];
    }
    if (core_diff_sets(last_set, last_set ? n_last : 0, NULL, loaded, n, &diff) < 0) {
        ret = -ENOMEM;
        goto out;
    }
    src = (struct core_change_source){.iface = CORE_IFACE_STARTUP,
                                      .kind = from_defaults ? CORE_CHANGE_LOAD_DEFAULTS
                                                            : CORE_CHANGE_LOAD_STATE};
    core_change_source_format(&src, source, sizeof(source));
    if (core_revisions_append(r->revisions, source, core_change_source_json(&src), diff,
                              json_incref(set), NULL, true, &rev) < 0) {
        diff = NULL;
        ret = -ENOMEM;
        goto out;
    }
    diff = NULL;
    memset(&e, 0, sizeof(e));
    if (r->persist && core_revisions_save(r->revisions, &e) < 0)
        core_log_warn("revisions not saved: %s", e.msg);
out:
    json_decref(diff);
    json_decref(set);
    json_decref(last);
    free(last_set);
    core_cfgs_free(last_cfgs, n_last);
    free(loaded);
    core_cfgs_free(cfgs, n);
    pthread_mutex_unlock(&r->ops);
    return ret;
}

int core_registry_create(struct core_registry *r, const json_t *body, struct core_change *ch,
                         json_t **ret, struct core_err *err)
{
    struct core_listener_cfg cfg;
    char id[CORE_ID_MAX];
    int rc;

    source_set(ch, CORE_CHANGE_CREATE, NULL);
    rc = core_listener_cfg_from_json(body, r->services, true, &cfg, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&r->ops);
    if (ch->expect.kind != CORE_EXPECT_NONE) {
        rc = core_err_set(err, -ESTALE, NULL, "a listener being created has no revision yet");
        core_listener_cfg_fini(&cfg);
        goto out;
    }
    if (!cfg.id[0])
        make_id(r, &cfg);
    if (core_registry_lookup(r, cfg.id)) {
        rc = core_err_set(err, -EEXIST, "id", "a listener with id '%s' exists", cfg.id);
        core_listener_cfg_fini(&cfg);
        goto out;
    }
    memcpy(id, cfg.id, sizeof(id));
    source_set(ch, CORE_CHANGE_CREATE, id);
    rc = change_one(r, &cfg, false, ch, ret, err);
out:
    pthread_mutex_unlock(&r->ops);
    return rc;
}

int core_registry_replace(struct core_registry *r, const char *id, const json_t *body,
                          struct core_change *ch, json_t **ret, bool *ret_created,
                          struct core_err *err)
{
    struct core_listener_cfg cfg;
    bool exists;
    int rc;

    source_set(ch, CORE_CHANGE_REPLACE, id);
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
    exists = core_registry_lookup(r, id) != NULL;
    rc = precondition(r, id, exists, ch, err);
    if (rc < 0) {
        core_listener_cfg_fini(&cfg);
        goto out;
    }
    rc = change_one(r, &cfg, true, ch, ret, err);
    if (rc == 0)
        *ret_created = !exists;
out:
    pthread_mutex_unlock(&r->ops);
    return rc;
}

int core_registry_patch(struct core_registry *r, const char *id, const json_t *patch,
                        struct core_change *ch, json_t **ret, struct core_err *err)
{
    struct core_listener_cfg cfg;
    struct core_listener *l;
    json_t *cur = NULL, *next = NULL;
    int rc;

    source_set(ch, CORE_CHANGE_PATCH, id);
    if (!json_is_object(patch))
        return core_err_set(err, -EINVAL, NULL, "a merge patch must be a JSON object");
    pthread_mutex_lock(&r->ops);
    rc = existing(r, id, ch, &l, err);
    if (rc < 0)
        goto out;
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
    rc = change_one(r, &cfg, false, ch, ret, err);
out:
    pthread_mutex_unlock(&r->ops);
    json_decref(next);
    json_decref(cur);
    return rc;
}

int core_registry_delete(struct core_registry *r, const char *id, struct core_change *ch,
                         struct core_err *err)
{
    struct core_listener_cfg *want;
    struct core_listener *l;
    size_t n, k = 0;
    int rc;

    source_set(ch, CORE_CHANGE_DELETE, id);
    pthread_mutex_lock(&r->ops);
    rc = existing(r, id, ch, &l, err);
    if (rc < 0)
        goto out;
    rc = current_cfgs(r, 0, &want, &n);
    if (rc < 0) {
        rc = core_err_set(err, rc, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(want[i].id, id) == 0)
            core_listener_cfg_fini(&want[i]);
        else
            want[k++] = want[i];
    }
    rc = change_set(r, want, k, NULL, NULL, ch, NULL, err);
    core_cfgs_free(want, k);
    ch->etag = 0;
out:
    pthread_mutex_unlock(&r->ops);
    return rc;
}

static int set_enabled(struct core_registry *r, const char *id, bool enabled,
                       struct core_change *ch, json_t **ret, struct core_err *err)
{
    struct core_listener_cfg cfg;
    struct core_listener *l;
    int rc;

    source_set(ch, enabled ? CORE_CHANGE_START : CORE_CHANGE_STOP, id);
    pthread_mutex_lock(&r->ops);
    rc = existing(r, id, ch, &l, err);
    if (rc < 0)
        goto out;
    rc = core_listener_cfg_copy(core_listener_cfg(l), &cfg);
    if (rc < 0)
        goto out;
    cfg.enabled = enabled;
    rc = change_one(r, &cfg, enabled, ch, ret, err);
out:
    pthread_mutex_unlock(&r->ops);
    return rc;
}

int core_registry_start(struct core_registry *r, const char *id, struct core_change *ch,
                        json_t **ret, struct core_err *err)
{
    return set_enabled(r, id, true, ch, ret, err);
}

int core_registry_stop(struct core_registry *r, const char *id, struct core_change *ch,
                       json_t **ret, struct core_err *err)
{
    return set_enabled(r, id, false, ch, ret, err);
}

/*
 * Reads a whole configuration {"listeners": [...]} (the members "revision" ignored) into *ret
 * (n of them, in body order) with *ret_index their index. -EINVAL with err naming the field
 * and ret_listener (CORE_ID_MAX bytes) the listener's id when it has one.
 */
static int config_parse(struct core_registry *r, const json_t *body, struct core_listener_cfg **ret,
                        int **ret_index, size_t *ret_n, char *ret_listener, struct core_err *err)
{
    const json_t *list = json_object_get(body, "listeners");
    struct core_listener_cfg *cfgs;
    const char *key;
    json_t *v, *e;
    int *index;
    size_t i, n = 0;
    int rc = 0;

    if (!json_is_object(body))
        return core_err_set(err, -EINVAL, NULL,
                            "the configuration must be a JSON object {\"listeners\": [...]}");
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "listeners") != 0 && strcmp(key, "revision") != 0)
            return core_err_set(err, -EINVAL, key, "%.48s: unknown member (expected listeners)",
                                key);
    }
    if (!json_is_array(list))
        return core_err_set(err, -EINVAL, "listeners",
                            "listeners: required, an array of listener configurations");
    if (json_array_size(list) > r->max_listeners)
        return core_err_set(err, -EMLINK, "listeners",
                            "listeners: %zu of them, the daemon holds at most %zu",
                            json_array_size(list), r->max_listeners);
    cfgs = calloc(json_array_size(list) + 1, sizeof(*cfgs));
    index = calloc(json_array_size(list) + 1, sizeof(*index));
    if (!cfgs || !index) {
        free(cfgs);
        free(index);
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    }
    json_array_foreach(list, i, e)
    {
        char field[sizeof(err->field)];

        if (!json_is_object(e) || !json_is_string(json_object_get(e, "id"))) {
            snprintf(field, sizeof(field), "listeners[%zu].id", i);
            rc = core_err_set(err, -EINVAL, field,
                              "%s: required (every listener of a configuration names its id)",
                              field);
            break;
        }
        rc = core_listener_cfg_from_json(e, r->services, false, &cfgs[n], err);
        if (rc < 0) {
            prefix_field(err, i);
            snprintf(ret_listener, CORE_ID_MAX, "%.*s", CORE_ID_MAX - 1,
                     json_string_value(json_object_get(e, "id")));
            break;
        }
        index[n++] = (int)i;
        for (size_t k = 0; k + 1 < n; k++) {
            if (strcmp(cfgs[k].id, cfgs[n - 1].id) == 0) {
                snprintf(field, sizeof(field), "listeners[%zu].id", i);
                rc = core_err_set(err, -EINVAL, field, "%s: '%s' is also listeners[%d]'s id", field,
                                  cfgs[k].id, index[k]);
                break;
            }
        }
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        core_cfgs_free(cfgs, n);
        free(index);
        return rc;
    }
    *ret = cfgs;
    *ret_index = index;
    *ret_n = n;
    return 0;
}

/* The answer of a whole-configuration change: {"revision", "diff", "listeners": [resources]},
 * with the resources made (may be NULL) of the listeners its events carried; without
 * "listeners" when ch->minimal. Called with ops held. */
static int answer_config(struct core_registry *r, struct core_change *ch, const json_t *made,
                         json_t **ret)
{
    json_t *list = NULL, *j;
    int rc;

    if (ch->dry_run || !ret)
        return 0;
    if (!ch->minimal) {
        rc = core_registry_list_made(r, made, &list);
        if (rc < 0)
            return rc;
    }
    /* o*: without "listeners" when there is no list (minimal) */
    j = json_pack("{s:I, s:O, s:o*}", "revision", (json_int_t)ch->revision, "diff", ch->diff,
                  "listeners", list);
    if (!j)
        return -ENOMEM;
    ch->etag = ch->revision;
    *ret = j;
    return 0;
}

/* Changes the whole configuration to want (n_want, index as change_set()'s), expected as the
 * whole configuration, and answers it. Takes ops. */
static int change_whole(struct core_registry *r, struct core_listener_cfg *want, size_t n_want,
                        const int *index, struct core_change *ch, json_t **ret,
                        struct core_err *err)
{
    json_t *made = NULL;
    int rc;

    pthread_mutex_lock(&r->ops);
    rc = precondition(r, NULL, true, ch, err);
    if (rc == 0)
        rc = change_set(r, want, n_want, index, NULL, ch, ch->minimal ? NULL : &made, err);
    if (rc == 0)
        rc = answer_config(r, ch, made, ret);
    pthread_mutex_unlock(&r->ops);
    json_decref(made);
    return rc;
}

int core_registry_fleet_mark(struct core_registry *r, uint64_t offset, struct core_err *err)
{
    struct core_change ch = {
        .iface = CORE_IFACE_FLEET, .has_fleet_offset = true, .fleet_offset = offset};
    const struct core_listener_cfg **set = NULL;
    struct core_listener_cfg *cfgs = NULL;
    struct core_store_meta meta;
    size_t n = 0;
    int rc = 0;

    pthread_mutex_lock(&r->ops);
    if (r->persist) {
        rc = current_cfgs(r, 0, &cfgs, &n);
        set = rc == 0 ? calloc(n + 1, sizeof(*set)) : NULL;
        if (!set) {
            rc = core_err_set(err, -ENOMEM, NULL, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            set[i] = &cfgs[i];
        meta = store_meta(r, &ch, core_revisions_last(r->revisions));
        rc = core_store_save(r->state_path, set, n, &meta, err);
        if (rc < 0)
            goto out;
    }
    fleet_offset_commit(r, &ch, false);
out:
    free(set);
    core_cfgs_free(cfgs, n);
    pthread_mutex_unlock(&r->ops);
    return rc;
}

void core_registry_fleet_applied(struct core_registry *r, bool *ret_has, uint64_t *ret_offset)
{
    pthread_mutex_lock(&r->lock);
    *ret_has = r->has_fleet_applied;
    *ret_offset = r->fleet_applied;
    pthread_mutex_unlock(&r->lock);
}

void core_registry_fleet_offset(struct core_registry *r, bool *ret_has, uint64_t *ret_offset)
{
    pthread_mutex_lock(&r->lock);
    *ret_has = r->has_fleet_offset;
    *ret_offset = r->fleet_offset;
    pthread_mutex_unlock(&r->lock);
}

int core_registry_config_replace(struct core_registry *r, const json_t *body,
                                 struct core_change *ch, json_t **ret, struct core_err *err)
{
    struct core_listener_cfg *cfgs = NULL;
    int *index = NULL;
    size_t n = 0;
    int rc;

    source_set(ch, CORE_CHANGE_CONFIG_REPLACE, NULL);
    ch->listener[0] = '\0';
    rc = config_parse(r, body, &cfgs, &index, &n, ch->listener, err);
    if (rc < 0)
        return rc;
    rc = change_whole(r, cfgs, n, index, ch, ret, err);
    core_cfgs_free(cfgs, n);
    free(index);
    return rc;
}

int core_registry_restore(struct core_registry *r, uint64_t n, struct core_change *ch, json_t **ret,
                          struct core_err *err)
{
    struct core_listener_cfg *cfgs = NULL;
    size_t n_cfgs = 0;
    json_t *rev = NULL;
    int rc;

    source_set(ch, CORE_CHANGE_RESTORE, NULL);
    ch->source.restored = n;
    ch->listener[0] = '\0';
    rc = core_revisions_get(r->revisions, n, &rev);
    if (rc == -ENOENT)
        return core_err_set(err, rc, NULL, "no revision %llu (the last %d are kept)",
                            (unsigned long long)n, CORE_REVISIONS_KEEP);
    if (rc < 0)
        return core_err_set(err, rc, NULL, "out of memory");
    rc = core_cfgs_from_json(r, json_object_get(rev, "listeners"), &cfgs, &n_cfgs, err);
    json_decref(rev);
    if (rc < 0)
        return rc;
    rc = change_whole(r, cfgs, n_cfgs, NULL, ch, ret, err);
    core_cfgs_free(cfgs, n_cfgs);
    return rc;
}
