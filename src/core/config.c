#include "core/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "core/addr.h"
#include "core/runner.h"

static const char *const model_names[CORE_MODEL_COUNT] = {
    [CORE_MODEL_SEQUENTIAL] = "sequential",
    [CORE_MODEL_THREAD] = "thread",
    [CORE_MODEL_POOL] = "pool",
    [CORE_MODEL_PROCESS] = "process",
    [CORE_MODEL_EVENT] = "event",
    [CORE_MODEL_URING] = "uring",
};

const char *core_model_name(enum core_model m)
{
    return m < CORE_MODEL_COUNT ? model_names[m] : "unknown";
}

int core_model_from_name(const char *name)
{
    for (int i = 0; i < CORE_MODEL_COUNT; i++)
        if (strcmp(model_names[i], name) == 0)
            return i;
    return -EINVAL;
}

bool core_model_has_reuseport(enum core_model m)
{
    return m == CORE_MODEL_EVENT || m == CORE_MODEL_URING;
}

bool core_model_is_available(enum core_model m, enum core_transport t)
{
    if (t == CORE_UDP)
        return m == CORE_MODEL_SEQUENTIAL;
    return m == CORE_MODEL_SEQUENTIAL || m == CORE_MODEL_THREAD || m == CORE_MODEL_POOL ||
           m == CORE_MODEL_EVENT || m == CORE_MODEL_PROCESS || m == CORE_MODEL_URING;
}

bool core_id_is_valid(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n >= CORE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

/* Validation of one listener object, field by field, in the order of fields[]. Later fields
 * may depend on earlier ones (options on service and transport, model on transport). */
struct check_ctx {
    const struct core_service_table *services;
    bool id_optional;
    struct core_listener_cfg cfg;
};

typedef int (*field_check_fn)(const json_t *v, struct check_ctx *c, struct core_err *err);

static int get_uint(const json_t *v, const char *field, uint64_t min, uint64_t max, uint64_t *ret,
                    struct core_err *err)
{
    json_int_t i;

    if (!json_is_integer(v))
        return core_err_set(err, -EINVAL, field, "%s: must be an integer from %llu to %llu", field,
                            (unsigned long long)min, (unsigned long long)max);
    i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
        return core_err_set(err, -EINVAL, field, "%s: must be an integer from %llu to %llu", field,
                            (unsigned long long)min, (unsigned long long)max);
    *ret = (uint64_t)i;
    return 0;
}

static int get_string(const json_t *v, const char *field, const char **ret, struct core_err *err)
{
    if (!json_is_string(v))
        return core_err_set(err, -EINVAL, field, "%s: must be a string", field);
    *ret = json_string_value(v);
    return 0;
}

static int check_id(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    const char *s = NULL;
    int r;

    if (!v) {
        if (c->id_optional)
            return 0;
        return core_err_set(err, -EINVAL, "id", "id: is required");
    }
    r = get_string(v, "id", &s, err);
    if (r < 0)
        return r;
    if (!core_id_is_valid(s))
        return core_err_set(err, -EINVAL, "id",
                            "id: must be 1-%d characters of A-Z a-z 0-9 . _ -, starting with a "
                            "letter or digit",
                            CORE_ID_MAX - 1);
    snprintf(c->cfg.id, sizeof(c->cfg.id), "%s", s);
    return 0;
}

static int check_service(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    char names[128] = "";
    const char *s = NULL;
    int r;

    for (size_t i = 0; i < c->services->n; i++) {
        size_t n = strlen(names);

        snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "", c->services->svcs[i]->name);
    }
    if (!v)
        return core_err_set(err, -EINVAL, "service", "service: is required (one of %s)", names);
    r = get_string(v, "service", &s, err);
    if (r < 0)
        return r;
    c->cfg.svc = core_service_find(c->services, s);
    if (!c->cfg.svc)
        return core_err_set(err, -EINVAL, "service", "service: unknown service '%.64s' (one of %s)",
                            s, names);
    return 0;
}

static int check_transport(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    const char *s = "tcp";
    int r;

    if (v) {
        r = get_string(v, "transport", &s, err);
        if (r < 0)
            return r;
    }
    if (strcmp(s, "tcp") == 0)
        c->cfg.transport = CORE_TCP;
    else if (strcmp(s, "udp") == 0)
        c->cfg.transport = CORE_UDP;
    else
        return core_err_set(err, -EINVAL, "transport", "transport: must be \"tcp\" or \"udp\"");
    if (!(c->cfg.svc->transports & CORE_TRANSPORT_BIT(c->cfg.transport)))
        return core_err_set(err, -EINVAL, "transport", "transport: service %s does not speak %s",
                            c->cfg.svc->name, s);
    return 0;
}

static int check_address(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    const char *s = "::";
    int r;

    if (v) {
        r = get_string(v, "address", &s, err);
        if (r < 0)
            return r;
    }
    if (strlen(s) >= CORE_HOST_MAX || !core_addr_is_valid_host(s))
        return core_err_set(err, -EINVAL, "address",
                            "address: must be a numeric IPv4 or IPv6 address (\"::\" for all, "
                            "dual-stack)");
    snprintf(c->cfg.address, sizeof(c->cfg.address), "%s", s);
    return 0;
}

static int check_port(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    uint64_t u = 0;
    int r;

    if (!v)
        return core_err_set(err, -EINVAL, "port", "port: is required (0 lets the kernel choose)");
    r = get_uint(v, "port", 0, 65535, &u, err);
    if (r < 0)
        return r;
    c->cfg.port = (uint16_t)u;
    return 0;
}

static int check_model(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    const char *s = NULL;
    int m, r;

    if (!v) {
        c->cfg.model = c->cfg.transport == CORE_UDP ? CORE_MODEL_SEQUENTIAL : CORE_MODEL_THREAD;
        return 0;
    }
    r = get_string(v, "model", &s, err);
    if (r < 0)
        return r;
    m = core_model_from_name(s);
    if (m < 0)
        return core_err_set(err, -EINVAL, "model",
                            "model: unknown model '%.64s' (sequential, thread, pool, process, "
                            "event, uring)",
                            s);
    if (!core_model_is_available((enum core_model)m, c->cfg.transport))
        return core_err_set(
            err, -EINVAL, "model", "model: '%s' is not available for %s listeners (%s)", s,
            core_transport_name(c->cfg.transport),
            c->cfg.transport == CORE_UDP ? "sequential"
                                         : "sequential, thread, pool, event, process, uring");
    if (c->cfg.svc->refused_models & (1u << m))
        return core_err_set(err, -EINVAL, "model", "model: '%s' is not available for %s", s,
                            c->cfg.svc->name);
    if (m == CORE_MODEL_URING) {
        r = core_runner_uring_usable(err);
        if (r < 0)
            return r;
    }
    c->cfg.model = (enum core_model)m;
    return 0;
}

static int check_workers(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    uint64_t u = 1;
    int r;

    if (v) {
        r = get_uint(v, "workers", 1, CORE_WORKERS_MAX, &u, err);
        if (r < 0)
            return r;
    }
    c->cfg.workers = (uint32_t)u;
    return 0;
}

static int check_max_connections(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    uint64_t u = 1024;
    int r;

    if (v) {
        r = get_uint(v, "max_connections", 1, CORE_MAX_CONNECTIONS_MAX, &u, err);
        if (r < 0)
            return r;
    }
    c->cfg.max_connections = (uint32_t)u;
    return 0;
}

static int check_idle_timeout(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    uint64_t u = 30000;
    int r;

    if (v) {
        r = get_uint(v, "idle_timeout_ms", 0, CORE_IDLE_TIMEOUT_MAX_MS, &u, err);
        if (r < 0)
            return r;
    }
    c->cfg.idle_timeout_ms = (uint32_t)u;
    return 0;
}

static int check_drain_timeout(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    uint64_t u = CORE_DEFAULT_DRAIN_TIMEOUT_MS;
    int r;

    if (v) {
        r = get_uint(v, "drain_timeout_ms", 0, CORE_DRAIN_TIMEOUT_MAX_MS, &u, err);
        if (r < 0)
            return r;
    }
    c->cfg.drain_timeout_ms = (uint32_t)u;
    return 0;
}

/* A limit of the per-source family: 0 (no limit) to max, def when absent. */
static int check_limit(const json_t *v, const char *field, uint64_t max, uint32_t def,
                       uint32_t *ret, struct core_err *err)
{
    uint64_t u = def;
    int r;

    if (v) {
        r = get_uint(v, field, 0, max, &u, err);
        if (r < 0)
            return r;
    }
    *ret = (uint32_t)u;
    return 0;
}

static int check_max_connections_per_source(const json_t *v, struct check_ctx *c,
                                            struct core_err *err)
{
    return check_limit(v, "max_connections_per_source", CORE_MAX_CONNECTIONS_MAX,
                       CORE_DEFAULT_MAX_CONNECTIONS_PER_SOURCE, &c->cfg.max_connections_per_source,
                       err);
}

static int check_connection_rate_per_source(const json_t *v, struct check_ctx *c,
                                            struct core_err *err)
{
    return check_limit(v, "connection_rate_per_source", CORE_LIMIT_RATE_MAX,
                       CORE_DEFAULT_CONNECTION_RATE_PER_SOURCE, &c->cfg.connection_rate_per_source,
                       err);
}

static int check_reply_rate_per_source(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    return check_limit(v, "reply_rate_per_source", CORE_LIMIT_RATE_MAX,
                       CORE_DEFAULT_REPLY_RATE_PER_SOURCE, &c->cfg.reply_rate_per_source, err);
}

static int check_reply_rate(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    return check_limit(v, "reply_rate", CORE_LIMIT_RATE_MAX, CORE_DEFAULT_REPLY_RATE,
                       &c->cfg.reply_rate, err);
}

static int check_enabled(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    if (!v) {
        c->cfg.enabled = true;
        return 0;
    }
    if (!json_is_boolean(v))
        return core_err_set(err, -EINVAL, "enabled", "enabled: must be true or false");
    c->cfg.enabled = json_is_true(v);
    return 0;
}

static int check_options(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    if (v && json_is_null(v))
        v = NULL;
    if (v && !json_is_object(v))
        return core_err_set(err, -EINVAL, "options", "options: must be an object");
    int r = core_service_options_check(c->cfg.svc, v, c->cfg.transport, &c->cfg.options, err);

    if (r < 0)
        return r;
    /* The uring model drives plain connections only. */
    if (c->cfg.model == CORE_MODEL_URING && json_is_object(json_object_get(c->cfg.options, "tls")))
        return core_err_set(err, -EINVAL, "options.tls",
                            "options.tls: TLS is not available with model 'uring' (use 'event')");
    return 0;
}

static int check_read_only(const json_t *v, struct check_ctx *c, struct core_err *err)
{
    (void)v;
    (void)c;
    (void)err;
    return 0;
}

static const struct {
    const char *name;
    field_check_fn check;
} fields[] = {
    {"id", check_id},
    {"service", check_service},
    {"transport", check_transport},
    {"address", check_address},
    {"port", check_port},
    {"model", check_model},
    {"workers", check_workers},
    {"max_connections", check_max_connections},
    {"idle_timeout_ms", check_idle_timeout},
    {"drain_timeout_ms", check_drain_timeout},
    {"max_connections_per_source", check_max_connections_per_source},
    {"connection_rate_per_source", check_connection_rate_per_source},
    {"reply_rate_per_source", check_reply_rate_per_source},
    {"reply_rate", check_reply_rate},
    {"enabled", check_enabled},
    {"options", check_options},
    {"status", check_read_only},
    {"metrics", check_read_only},
};

int core_listener_cfg_from_json(const json_t *j, const struct core_service_table *services,
                                bool id_optional, struct core_listener_cfg *ret,
                                struct core_err *err)
{
    struct check_ctx c = {.services = services, .id_optional = id_optional};
    const char *key;
    json_t *v;
    int r;

    if (!json_is_object(j))
        return core_err_set(err, -EINVAL, NULL, "a listener must be a JSON object");
    json_object_foreach((json_t *)j, key, v)
    {
        bool known = false;

        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && !known; i++)
            known = strcmp(fields[i].name, key) == 0;
        if (!known)
            return core_err_set(err, -EINVAL, key, "%.60s: unknown field", key);
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        r = fields[i].check(json_object_get(j, fields[i].name), &c, err);
        if (r < 0) {
            core_listener_cfg_fini(&c.cfg);
            return r;
        }
    }
    *ret = c.cfg;
    return 0;
}

json_t *core_listener_cfg_to_json(const struct core_listener_cfg *c)
{
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o}", "id",
        c->id, "service", c->svc->name, "transport", core_transport_name(c->transport), "address",
        c->address, "port", (json_int_t)c->port, "model", core_model_name(c->model), "workers",
        (json_int_t)c->workers, "max_connections", (json_int_t)c->max_connections,
        "idle_timeout_ms", (json_int_t)c->idle_timeout_ms, "drain_timeout_ms",
        (json_int_t)c->drain_timeout_ms, "max_connections_per_source",
        (json_int_t)c->max_connections_per_source, "connection_rate_per_source",
        (json_int_t)c->connection_rate_per_source, "reply_rate_per_source",
        (json_int_t)c->reply_rate_per_source, "reply_rate", (json_int_t)c->reply_rate, "enabled",
        c->enabled, "options", c->options ? json_deep_copy(c->options) : json_object());
}

json_t *core_listener_cfg_json(const struct core_listener_cfg *c)
{
    return c->rendering ? json_incref(c->rendering->json) : core_listener_cfg_to_json(c);
}

void core_listener_cfg_rendering_unref(struct core_cfg_rendering *g)
{
    if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    json_decref(g->json);
    free(g->text);
    free(g);
}

static struct core_cfg_rendering *rendering_ref(struct core_cfg_rendering *g)
{
    if (g)
        __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
    return g;
}

struct core_cfg_rendering *core_listener_cfg_rendering(const struct core_listener_cfg *c)
{
    struct core_cfg_rendering *g;

    if (c->rendering)
        return rendering_ref(c->rendering);
    g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->refs = 1;
    g->json = core_listener_cfg_to_json(c);
    if (g->json)
        g->text = json_dumps(g->json, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!g->text) {
        core_listener_cfg_rendering_unref(g);
        return NULL;
    }
    g->len = strlen(g->text);
    return g;
}

int core_cfg_texts_join(const struct core_listener_cfg *const *cfgs, size_t n, const char *head,
                        const char *first_sep, const char *sep, const char *tail,
                        struct core_cfg_texts *ret)
{
    struct core_cfg_texts t = {.g = calloc(n + 1, sizeof(*t.g)),
                               .iov = calloc(2 * n + 2, sizeof(*t.iov))};

    if (!t.g || !t.iov)
        goto fail;
    t.iov[t.n_iov++] = (struct iovec){.iov_base = (char *)head, .iov_len = strlen(head)};
    for (; t.n < n; t.n++) {
        const char *before = t.n ? sep : first_sep;

        if (!(t.g[t.n] = core_listener_cfg_rendering(cfgs[t.n])))
            goto fail;
        t.iov[t.n_iov++] = (struct iovec){.iov_base = (char *)before, .iov_len = strlen(before)};
        t.iov[t.n_iov++] = (struct iovec){.iov_base = t.g[t.n]->text, .iov_len = t.g[t.n]->len};
    }
    t.iov[t.n_iov++] = (struct iovec){.iov_base = (char *)tail, .iov_len = strlen(tail)};
    for (size_t i = 0; i < t.n_iov; i++)
        t.len += t.iov[i].iov_len;
    *ret = t;
    return 0;
fail:
    core_cfg_texts_release(&t);
    memset(ret, 0, sizeof(*ret));
    return -ENOMEM;
}

char *core_cfg_texts_string(const struct core_cfg_texts *t)
{
    char *s = malloc(t->len + 1), *o = s;

    for (size_t i = 0; s && i < t->n_iov; i++) {
        memcpy(o, t->iov[i].iov_base, t->iov[i].iov_len);
        o += t->iov[i].iov_len;
    }
    if (s)
        *o = '\0';
    return s;
}

void core_cfg_texts_release(struct core_cfg_texts *t)
{
    for (size_t i = 0; t->g && i < t->n; i++)
        core_listener_cfg_rendering_unref(t->g[i]);
    free(t->g);
    free(t->iov);
    t->g = NULL;
    t->iov = NULL;
}

int core_listener_cfg_render(struct core_listener_cfg *c)
{
    core_listener_cfg_rendering_unref(c->rendering);
    c->rendering = NULL;
    c->rendering = core_listener_cfg_rendering(c);
    return c->rendering ? 0 : -ENOMEM;
}

int core_listener_cfg_copy(const struct core_listener_cfg *src, struct core_listener_cfg *ret)
{
    *ret = *src;
    ret->rendering = NULL;
    ret->options = src->options ? json_deep_copy(src->options) : NULL;
    if (src->options && !ret->options)
        return -ENOMEM;
    return 0;
}

int core_listener_cfg_copy_rendered(const struct core_listener_cfg *src,
                                    struct core_listener_cfg *ret)
{
    int r = core_listener_cfg_copy(src, ret);

    if (r == 0)
        ret->rendering = rendering_ref(src->rendering);
    return r;
}

bool core_listener_cfg_equal(const struct core_listener_cfg *a, const struct core_listener_cfg *b)
{
    return strcmp(a->id, b->id) == 0 && a->svc == b->svc && a->transport == b->transport &&
           strcmp(a->address, b->address) == 0 && a->port == b->port && a->model == b->model &&
           a->workers == b->workers && a->max_connections == b->max_connections &&
           a->idle_timeout_ms == b->idle_timeout_ms && a->drain_timeout_ms == b->drain_timeout_ms &&
           a->max_connections_per_source == b->max_connections_per_source &&
           a->connection_rate_per_source == b->connection_rate_per_source &&
           a->reply_rate_per_source == b->reply_rate_per_source && a->reply_rate == b->reply_rate &&
           a->enabled == b->enabled && json_equal(a->options, b->options);
}

void core_listener_cfg_fini(struct core_listener_cfg *c)
{
    json_decref(c->options);
    c->options = NULL;
    core_listener_cfg_rendering_unref(c->rendering);
    c->rendering = NULL;
}

json_t *core_json_merge_patch(const json_t *target, const json_t *patch)
{
    const char *key;
    json_t *result, *v;

    if (!json_is_object(patch))
        return json_deep_copy(patch);
    result = json_is_object(target) ? json_deep_copy(target) : json_object();
    if (!result)
        return NULL;
    json_object_foreach((json_t *)patch, key, v)
    {
        if (json_is_null(v)) {
            json_object_del(result, key);
        } else {
            json_t *merged = core_json_merge_patch(json_object_get(result, key), v);

            if (!merged || json_object_set_new(result, key, merged) < 0) {
                json_decref(result);
                return NULL;
            }
        }
    }
    return result;
}
