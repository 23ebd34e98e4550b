/*
 * Listener configuration: core_listener_cfg_from_json() with the daemon's real service table,
 * its rendering, copy and comparison, and RFC 7396 merge patches.
 *
 * Input: TARGET, optionally followed by a NUL byte and PATCH (two JSON texts; without a NUL
 * the input is cut in two halves for the patch checks). TARGET is validated as a listener with
 * and without a required id; PATCH is merged into TARGET, and into a valid listener's rendering
 * as PATCH /api/v1/listeners/{id} does.
 *
 * Properties: validation answers 0 or -EINVAL (with a message) and leaves its output alone on
 * failure; a valid configuration is within every documented limit, keeps every value it was
 * given, renders to JSON that validates to an equal configuration and renders the same again;
 * a copy is equal; a merge patch never changes its target, follows RFC 7396 key by key and is
 * idempotent.
 */

#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "core/addr.h"
#include "core/config.h"
#include "svc/backup.h"
#include "svc/date.h"
#include "svc/echo.h"

#include "fuzz.h"

/* As main.c registers them. */
static const struct core_service *const svcs[] = {&svc_backup, &svc_date, &svc_echo};
static const struct core_service_table services = {.svcs = svcs,
                                                   .n = sizeof(svcs) / sizeof(svcs[0])};

/* The request body flags of the API and the state file, plus JSON_DECODE_ANY so that
 * non-objects reach the validation too. */
#define LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

/* The members that do not render as they were given: read-only ones, and the options, which
 * the service completes (checked key by key). */
static bool is_kept(const char *member)
{
    return strcmp(member, "status") != 0 && strcmp(member, "metrics") != 0 &&
           strcmp(member, "options") != 0;
}

static bool is_in_table(const struct core_service *svc)
{
    for (size_t i = 0; i < services.n; i++)
        if (services.svcs[i] == svc)
            return true;
    return false;
}

/* What any valid configuration is, whatever its input. */
static void check_valid(const struct core_listener_cfg *c, bool id_optional)
{
    FUZZ_CHECK(memchr(c->id, '\0', sizeof(c->id)) != NULL);
    FUZZ_CHECK(c->id[0] ? core_id_is_valid(c->id) : id_optional);
    FUZZ_CHECK(c->svc && is_in_table(c->svc));
    FUZZ_CHECK(c->transport < CORE_TRANSPORT_COUNT);
    FUZZ_CHECK(c->svc->transports & CORE_TRANSPORT_BIT(c->transport));
    FUZZ_CHECK(memchr(c->address, '\0', sizeof(c->address)) != NULL);
    FUZZ_CHECK(core_addr_is_valid_host(c->address));
    FUZZ_CHECK(c->model < CORE_MODEL_COUNT);
    FUZZ_CHECK(core_model_is_available(c->model, c->transport));
    FUZZ_CHECK(!(c->svc->refused_models & (1u << c->model)));
    FUZZ_CHECK(c->workers >= 1 && c->workers <= CORE_WORKERS_MAX);
    FUZZ_CHECK(c->max_connections >= 1 && c->max_connections <= CORE_MAX_CONNECTIONS_MAX);
    FUZZ_CHECK(c->idle_timeout_ms <= CORE_IDLE_TIMEOUT_MAX_MS);
    FUZZ_CHECK(c->max_connections_per_source <= CORE_MAX_CONNECTIONS_MAX);
    FUZZ_CHECK(c->connection_rate_per_source <= CORE_LIMIT_RATE_MAX);
    FUZZ_CHECK(c->reply_rate_per_source <= CORE_LIMIT_RATE_MAX);
    FUZZ_CHECK(c->reply_rate <= CORE_LIMIT_RATE_MAX);
    FUZZ_CHECK(json_is_object(c->options));
}

/* Every member the input gave is rendered as given. */
static void check_kept(const json_t *in, const json_t *rendered)
{
    const json_t *in_opts = json_object_get(in, "options");
    const json_t *out_opts = json_object_get(rendered, "options");
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)in, key, v)
    {
        if (is_kept(key))
            FUZZ_CHECK(json_equal(v, json_object_get(rendered, key)));
    }
    if (!json_is_object(in_opts))
        return;
    json_object_foreach((json_t *)in_opts, key, v)
    {
        FUZZ_CHECK(json_equal(v, json_object_get(out_opts, key)));
    }
}

/*
 * Validates j; for a valid listener, checks the round trip and returns its rendering with an id
 * (a new reference, as the registry keeps it), else NULL.
 */
static json_t *check_listener(const json_t *j, bool id_optional)
{
    struct core_listener_cfg cfg, before, again, copy;
    struct core_err err = {0};
    json_t *rendered, *rendered_again;
    int r;

    memset(&cfg, 0xa5, sizeof(cfg));
    before = cfg;
    r = core_listener_cfg_from_json(j, &services, id_optional, &cfg, &err);
    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL);
        FUZZ_CHECK(err.msg[0] != '\0');
        FUZZ_CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
        return NULL;
    }
    FUZZ_CHECK(r == 0);
    check_valid(&cfg, id_optional);

    rendered = core_listener_cfg_to_json(&cfg);
    FUZZ_CHECK(rendered);
    check_kept(j, rendered);
    if (!cfg.id[0]) /* the registry names it; an empty id is not one */
        FUZZ_CHECK(json_object_del(rendered, "id") == 0);

    memset(&err, 0, sizeof(err));
    r = core_listener_cfg_from_json(rendered, &services, !cfg.id[0], &again, &err);
    if (r != 0)
        fprintf(stderr, "rendered configuration refused: %s (%s)\n", err.msg, err.field);
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(core_listener_cfg_equal(&cfg, &again));
    rendered_again = core_listener_cfg_to_json(&again);
    FUZZ_CHECK(rendered_again);
    if (!cfg.id[0])
        FUZZ_CHECK(json_object_del(rendered_again, "id") == 0);
    FUZZ_CHECK(json_equal(rendered, rendered_again));
    json_decref(rendered_again);
    core_listener_cfg_fini(&again);

    FUZZ_CHECK(core_listener_cfg_copy(&cfg, &copy) == 0);
    FUZZ_CHECK(core_listener_cfg_equal(&cfg, &copy));
    FUZZ_CHECK(copy.options != cfg.options);
    core_listener_cfg_fini(&copy);
    FUZZ_CHECK(copy.options == NULL);
    FUZZ_CHECK(json_is_object(cfg.options)); /* the copy owned its own options */

    if (!cfg.id[0]) {
        FUZZ_CHECK(json_object_set_new(rendered, "id", json_string("fuzz")) == 0);
    }
    core_listener_cfg_fini(&cfg);
    return rendered;
}

/* RFC 7396 section 2, key by key; target (NULL: none) is left as it was. */
static void check_merge(const json_t *target, const json_t *patch)
{
    json_t *target_before = target ? json_deep_copy(target) : NULL;
    json_t *merged, *twice;
    const char *key;
    json_t *v;

    FUZZ_CHECK(!target || target_before);
    merged = core_json_merge_patch(target, patch);
    FUZZ_CHECK(merged);
    FUZZ_CHECK(!target || json_equal(target, target_before));
    json_decref(target_before);

    if (!json_is_object(patch)) {
        FUZZ_CHECK(json_equal(merged, patch));
    } else {
        FUZZ_CHECK(json_is_object(merged));
        json_object_foreach((json_t *)patch, key, v)
        {
            const json_t *got = json_object_get(merged, key);

            if (json_is_null(v))
                FUZZ_CHECK(!got);
            else if (!json_is_object(v))
                FUZZ_CHECK(json_equal(got, v));
            else
                FUZZ_CHECK(json_is_object(got));
        }
        if (json_is_object(target)) {
            json_object_foreach((json_t *)target, key, v)
            {
                if (!json_object_get(patch, key))
                    FUZZ_CHECK(json_equal(json_object_get(merged, key), v));
            }
        }
        json_object_foreach(merged, key, v)
        {
            FUZZ_CHECK(json_object_get(patch, key) ||
                       (json_is_object(target) && json_object_get(target, key)));
        }
    }

    twice = core_json_merge_patch(merged, patch);
    FUZZ_CHECK(twice);
    FUZZ_CHECK(json_equal(twice, merged));
    json_decref(twice);
    json_decref(merged);
}

/* PATCH /api/v1/listeners/{id}: the patched rendering validates as a whole listener. */
static void check_listener_patch(const json_t *current, const json_t *patch)
{
    json_t *next;

    if (!json_is_object(patch))
        return;
    next = core_json_merge_patch(current, patch);
    FUZZ_CHECK(next);
    json_decref(check_listener(next, false));
    json_decref(next);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t first_len = nul ? (size_t)(nul - data) : size / 2;
    const char *second = (const char *)data + (nul ? first_len + 1 : first_len);
    size_t second_len = size - (size_t)(second - (const char *)data);
    json_t *whole, *first, *patch, *valid;

    whole = nul ? NULL : json_loadb((const char *)data, size, LOAD_FLAGS, NULL);
    first = json_loadb((const char *)data, first_len, LOAD_FLAGS, NULL);
    patch = json_loadb(second, second_len, LOAD_FLAGS, NULL);

    if (whole) {
        json_decref(check_listener(whole, true));
        json_decref(check_listener(whole, false));
    }
    if (first) {
        valid = check_listener(first, true);
        json_decref(check_listener(first, false));
        if (patch) {
            check_merge(first, patch);
            if (valid)
                check_listener_patch(valid, patch);
        }
        json_decref(valid);
    }
    if (patch && !first)
        check_merge(NULL, patch);

    json_decref(patch);
    json_decref(first);
    json_decref(whole);
    return 0;
}
