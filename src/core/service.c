#include "core/service.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/tls.h"

/* The TCP models in the order GET /api/v1/services lists them. */
static const enum core_model listed_models[] = {
    CORE_MODEL_SEQUENTIAL, CORE_MODEL_THREAD,  CORE_MODEL_POOL,
    CORE_MODEL_EVENT,      CORE_MODEL_PROCESS, CORE_MODEL_URING,
};

static const char *const type_names[CORE_OPTION_TYPE_COUNT] = {
    [CORE_OPTION_STRING] = "string",   [CORE_OPTION_INTEGER] = "integer",
    [CORE_OPTION_BOOLEAN] = "boolean", [CORE_OPTION_PATH] = "path",
    [CORE_OPTION_OBJECT] = "object",
};

/* The option every TCP service has besides its own. */
static const struct core_option tls_option = {
    .name = CORE_TLS_OPTION,
    .type = CORE_OPTION_OBJECT,
    .transports = CORE_TRANSPORT_BIT(CORE_TCP),
    .live = true,
    .help = "TLS on the listener: {\"cert_file\": \"/...\", \"key_file\": \"/...\"}, PEM, "
            "and \"client_ca_file\" to require client certificates that this CA signed",
};

/* Whether svc has tls_option (it speaks TCP). */
static bool has_tls(const struct core_service *svc)
{
    return (svc->transports & CORE_TRANSPORT_BIT(CORE_TCP)) != 0;
}

const struct core_service *core_service_find(const struct core_service_table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->svcs[i]->name, name) == 0)
            return t->svcs[i];
    return NULL;
}

const char *core_transport_name(enum core_transport t)
{
    return t == CORE_UDP ? "udp" : "tcp";
}

const struct core_option *core_service_option(const struct core_service *svc, const char *name)
{
    for (unsigned i = 0; i < svc->n_options; i++)
        if (strcmp(svc->options[i].name, name) == 0)
            return &svc->options[i];
    if (has_tls(svc) && strcmp(name, tls_option.name) == 0)
        return &tls_option;
    return NULL;
}

/* Whether option o exists for transport t. */
static bool applies(const struct core_option *o, enum core_transport t)
{
    return (o->transports & CORE_TRANSPORT_BIT(t)) != 0;
}

/* "options.NAME" of a key a user sent, cut to fit a field. */
static void field_of(const char *key, char *buf, size_t len)
{
    (void)snprintf(buf, len, "options.%.48s", key);
}

static int unknown_option(const struct core_service *svc, enum core_transport t, const char *key,
                          struct core_err *err)
{
    char field[64], names[160] = "";
    size_t n = 0;

    for (unsigned i = 0; i < svc->n_options; i++) {
        if (!applies(&svc->options[i], t))
            continue;
        (void)snprintf(names + n, sizeof(names) - n, "%s%s", n ? ", " : "", svc->options[i].name);
        n = strlen(names);
    }
    if (has_tls(svc) && applies(&tls_option, t)) {
        (void)snprintf(names + n, sizeof(names) - n, "%s%s", n ? ", " : "", tls_option.name);
        n = strlen(names);
    }
    field_of(key, field, sizeof(field));
    return core_err_set(err, -EINVAL, field, "%s: unknown option of %s over %s (it has %s)", field,
                        svc->name, core_transport_name(t), n ? names : "none");
}

/* Writes what a value of o must be ("an integer from 1 to 65507") into buf. */
static void expected_of(const struct core_option *o, char *buf, size_t len)
{
    size_t n;

    switch (o->type) {
    case CORE_OPTION_STRING:
        if (!o->choices) {
            (void)snprintf(buf, len, "a string");
            break;
        }
        buf[0] = '\0';
        for (size_t i = 0; o->choices[i]; i++) {
            n = strlen(buf);
            (void)snprintf(buf + n, len - n, "%s\"%s\"",
                           i == 0              ? ""
                           : o->choices[i + 1] ? ", "
                                               : " or ",
                           o->choices[i]);
        }
        break;
    case CORE_OPTION_INTEGER:
        if (o->maximum == CORE_OPTION_NO_MAXIMUM)
            (void)snprintf(buf, len, "an integer of at least %" PRId64, o->minimum);
        else
            (void)snprintf(buf, len, "an integer from %" PRId64 " to %" PRId64, o->minimum,
                           o->maximum);
        if (o->unit) {
            n = strlen(buf);
            (void)snprintf(buf + n, len - n, " (%s)", o->unit);
        }
        break;
    case CORE_OPTION_BOOLEAN:
        (void)snprintf(buf, len, "true or false");
        break;
    case CORE_OPTION_PATH:
        (void)snprintf(buf, len, "an absolute path");
        break;
    case CORE_OPTION_OBJECT:
        (void)snprintf(buf, len, "an object");
        break;
    case CORE_OPTION_TYPE_COUNT:
        buf[0] = '\0';
        break;
    }
}

/* -EINVAL naming o: "options.NAME: must be WHAT: HELP". */
static int bad_value(const struct core_option *o, struct core_err *err)
{
    char field[64], what[160];

    field_of(o->name, field, sizeof(field));
    expected_of(o, what, sizeof(what));
    return core_err_set(err, -EINVAL, field, "%s: must be %s%s%s", field, what, o->help ? ": " : "",
                        o->help ? o->help : "");
}

/* Whether string v is NUL-free. */
static bool is_text(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

/* Checks value v of option o: 0 or -EINVAL with err set. */
static int value_check(const struct core_option *o, const json_t *v, struct core_err *err)
{
    const char *s;
    char field[64];

    switch (o->type) {
    case CORE_OPTION_STRING:
        if (!is_text(v))
            return bad_value(o, err);
        if (o->choices) {
            s = json_string_value(v);
            for (size_t i = 0; o->choices[i]; i++)
                if (strcmp(o->choices[i], s) == 0)
                    return 0;
            return bad_value(o, err);
        }
        return 0;
    case CORE_OPTION_INTEGER:
        if (!json_is_integer(v) || json_integer_value(v) < o->minimum ||
            json_integer_value(v) > o->maximum)
            return bad_value(o, err);
        return 0;
    case CORE_OPTION_BOOLEAN:
        return json_is_boolean(v) ? 0 : bad_value(o, err);
    case CORE_OPTION_PATH:
        s = json_string_value(v);
        if (!is_text(v) || s[0] != '/')
            return bad_value(o, err);
        field_of(o->name, field, sizeof(field));
        if (strlen(s) >= PATH_MAX)
            return core_err_set(err, -EINVAL, field, "%s: must be shorter than %d bytes", field,
                                PATH_MAX);
        for (const char *c = s; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return core_err_set(err, -EINVAL, field, "%s: must not hold control characters",
                                    field);
        return 0;
    case CORE_OPTION_OBJECT:
        return core_tls_options_check(v, err);
    case CORE_OPTION_TYPE_COUNT:
        break;
    }
    return bad_value(o, err);
}

/* o's default as a new JSON value; NULL for a computed one (or out of memory: *ret_nomem). */
static json_t *default_of(const struct core_option *o, bool *ret_nomem)
{
    json_t *v = NULL;

    switch (o->type) {
    case CORE_OPTION_STRING:
    case CORE_OPTION_PATH:
        if (!o->default_string)
            return NULL;
        v = json_string(o->default_string);
        break;
    case CORE_OPTION_INTEGER:
        v = json_integer((json_int_t)o->default_integer);
        break;
    case CORE_OPTION_BOOLEAN:
        v = json_boolean(o->default_boolean);
        break;
    case CORE_OPTION_OBJECT:
    case CORE_OPTION_TYPE_COUNT:
        return NULL;
    }
    *ret_nomem = v == NULL;
    return v;
}

int core_service_options_check(const struct core_service *svc, const json_t *opts,
                               enum core_transport t, json_t **ret_opts, struct core_err *err)
{
    const char *key;
    json_t *v, *res;
    int r;

    if (!(svc->transports & CORE_TRANSPORT_BIT(t)))
        return core_err_set(err, -EINVAL, "transport", "transport: service %s does not speak %s",
                            svc->name, core_transport_name(t));
    if (opts && !json_is_object(opts))
        return core_err_set(err, -EINVAL, "options", "options: must be an object");
    json_object_foreach((json_t *)opts, key, v)
    {
        const struct core_option *o = core_service_option(svc, key);

        if (!o || !applies(o, t))
            return unknown_option(svc, t, key, err);
        r = value_check(o, v, err);
        if (r < 0)
            return r;
    }
    res = json_object();
    if (!res)
        goto out_nomem;
    for (unsigned i = 0; i < svc->n_options; i++) {
        const struct core_option *o = &svc->options[i];
        bool nomem = false;
        json_t *given = json_object_get(opts, o->name);

        if (!applies(o, t))
            continue;
        v = given ? json_deep_copy(given) : default_of(o, &nomem);
        if ((given && !v) || nomem || (v && json_object_set_new(res, o->name, v) < 0))
            goto out_free;
    }
    v = json_object_get(opts, tls_option.name);
    if (v && has_tls(svc) && applies(&tls_option, t) &&
        json_object_set_new(res, tls_option.name, json_deep_copy(v)) < 0)
        goto out_free;
    if (svc->options_verify) {
        r = svc->options_verify(res, t, err);
        if (r < 0) {
            json_decref(res);
            return r;
        }
    }
    *ret_opts = res;
    return 0;

out_free:
    json_decref(res);
out_nomem:
    return core_err_set(err, -ENOMEM, NULL, "out of memory");
}

/* The names of the transports in mask, as a new array. */
static json_t *transports_json(unsigned mask)
{
    json_t *a = json_array();

    for (unsigned t = 0; a && t < CORE_TRANSPORT_COUNT; t++)
        if ((mask & CORE_TRANSPORT_BIT(t)) &&
            json_array_append_new(a, json_string(core_transport_name((enum core_transport)t))) <
                0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *models_json(const struct core_service *svc)
{
    json_t *a = json_array();

    if (!(svc->transports & CORE_TRANSPORT_BIT(CORE_TCP)))
        return a;
    for (size_t i = 0; a && i < sizeof(listed_models) / sizeof(listed_models[0]); i++) {
        enum core_model m = listed_models[i];

        if ((svc->refused_models & (1u << m)) || !core_model_is_available(m, CORE_TCP))
            continue;
        if (json_array_append_new(a, json_string(core_model_name(m))) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *counters_json(const struct core_service *svc)
{
    json_t *a = json_array();

    for (unsigned i = 0; a && i < svc->n_counters; i++) {
        const char *help = svc->counter_help && svc->counter_help[i] ? svc->counter_help[i] : "";
        unsigned on = svc->counter_transports && svc->counter_transports[i]
                          ? svc->counter_transports[i]
                          : svc->transports;

        if (json_array_append_new(a, json_pack("{s:s, s:s, s:o*}", "name", svc->counters[i], "help",
                                               help, "transports", transports_json(on))) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* Sets key to v (taken) in o; false when v is NULL or out of memory. */
static bool put(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0;
}

static json_t *option_json(const struct core_option *o)
{
    json_t *j = json_object(), *def;
    bool nomem = false, ok;

    if (!j)
        return NULL;
    def = default_of(o, &nomem);
    ok = !nomem && put(j, "name", json_string(o->name)) &&
         put(j, "type", json_string(type_names[o->type]));
    if (ok)
        ok = put(j, "default", def ? def : json_null());
    else
        json_decref(def);
    if (ok && o->type == CORE_OPTION_STRING && o->choices) {
        json_t *c = json_array();

        for (size_t i = 0; c && o->choices[i]; i++)
            if (json_array_append_new(c, json_string(o->choices[i])) < 0) {
                json_decref(c);
                c = NULL;
            }
        ok = put(j, "choices", c);
    }
    if (ok && o->type == CORE_OPTION_INTEGER) {
        ok = put(j, "minimum", json_integer((json_int_t)o->minimum));
        if (ok && o->maximum != CORE_OPTION_NO_MAXIMUM)
            ok = put(j, "maximum", json_integer((json_int_t)o->maximum));
    }
    if (ok && o->unit)
        ok = put(j, "unit", json_string(o->unit));
    ok = ok && put(j, "transports", transports_json(o->transports)) &&
         put(j, "live", json_boolean(o->live)) &&
         put(j, "help", json_string(o->help ? o->help : ""));
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

json_t *core_service_to_json(const struct core_service *svc)
{
    json_t *j = json_object(), *opts = json_array();
    bool ok = j && opts;

    for (unsigned i = 0; ok && i < svc->n_options; i++)
        ok = json_array_append_new(opts, option_json(&svc->options[i])) == 0;
    if (ok && has_tls(svc))
        ok = json_array_append_new(opts, option_json(&tls_option)) == 0;
    ok = ok && put(j, "name", json_string(svc->name)) &&
         put(j, "help", json_string(svc->help ? svc->help : "")) &&
         put(j, "transports", transports_json(svc->transports)) &&
         put(j, "models", models_json(svc)) && put(j, "counters", counters_json(svc));
    if (ok) {
        ok = put(j, "options", opts); /* taken either way */
        opts = NULL;
    }
    if (!ok) {
        json_decref(opts);
        json_decref(j);
        return NULL;
    }
    return j;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const struct core_service *const *)a)->name,
                  (*(const struct core_service *const *)b)->name);
}

json_t *core_services_to_json(const struct core_service_table *t)
{
    const struct core_service **sorted = calloc(t->n ? t->n : 1, sizeof(*sorted));
    json_t *a;

    if (!sorted)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        sorted[i] = t->svcs[i];
    qsort(sorted, t->n, sizeof(*sorted), by_name);
    a = json_array();
    for (size_t i = 0; a && i < t->n; i++)
        if (json_array_append_new(a, core_service_to_json(sorted[i])) < 0) {
            json_decref(a);
            a = NULL;
        }
    free(sorted);
    return a;
}
