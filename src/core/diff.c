#include "core/diff.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

bool core_diff_is_live(const struct core_listener_cfg *a, const struct core_listener_cfg *b,
                       bool running)
{
    bool same_socket;

    if (!running || !b->enabled || a->svc != b->svc || a->transport != b->transport)
        return false;
    same_socket = a->port == b->port && strcmp(a->address, b->address) == 0;
    if (!same_socket)
        return true; /* bind before close */
    /* UDP keeps no connections and has no live path: it restarts. */
    return a->transport == CORE_TCP &&
           (!core_model_has_reuseport(b->model) || core_model_has_reuseport(a->model));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends "options.KEY" for every key of the union of two options objects whose values
 * differ, sorted by key. */
static int append_option_fields(json_t *fields, const json_t *a, const json_t *b)
{
    size_t n = json_object_size(a) + json_object_size(b), k = 0;
    const char **keys;
    const char *key;
    json_t *v;
    int r = 0;

    if (n == 0)
        return 0;
    keys = calloc(n, sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    json_object_foreach((json_t *)a, key, v)
    {
        if (!json_equal(v, json_object_get(b, key)))
            keys[k++] = key;
    }
    json_object_foreach((json_t *)b, key, v)
    {
        if (!json_object_get(a, key))
            keys[k++] = key;
    }
    qsort(keys, k, sizeof(*keys), cmp_str);
    for (size_t i = 0; i < k && r == 0; i++) {
        char name[160];

        snprintf(name, sizeof(name), "options.%s", keys[i]);
        if (json_array_append_new(fields, json_string(name)) < 0)
            r = -ENOMEM;
    }
    free(keys);
    return r;
}

json_t *core_diff_fields(const struct core_listener_cfg *a, const struct core_listener_cfg *b)
{
    json_t *ja = core_listener_cfg_json(a), *jb = core_listener_cfg_json(b);
    json_t *fields = json_array(), *v;
    const char *key;

    if (!ja || !jb || !fields)
        goto out_fail;
    /* The members in the order of the rendering (jansson keeps insertion order). */
    json_object_foreach(ja, key, v)
    {
        json_t *w = json_object_get(jb, key);

        if (strcmp(key, "options") == 0) {
            if (!json_is_object(v) || !json_is_object(w)) {
                if (!json_equal(v, w) && json_array_append_new(fields, json_string(key)) < 0)
                    goto out_fail;
            } else if (append_option_fields(fields, v, w) < 0) {
                goto out_fail;
            }
        } else if (!json_equal(v, w) && json_array_append_new(fields, json_string(key)) < 0) {
            goto out_fail;
        }
    }
    json_decref(ja);
    json_decref(jb);
    return fields;

out_fail:
    json_decref(ja);
    json_decref(jb);
    json_decref(fields);
    return NULL;
}

json_t *core_diff_create(const char *id)
{
    return json_pack("{s:s, s:s}", "id", id, "action", "create");
}

json_t *core_diff_delete(const char *id)
{
    return json_pack("{s:s, s:s}", "id", id, "action", "delete");
}

json_t *core_diff_change(const char *id, json_t *fields, bool live)
{
    if (!fields)
        return NULL;
    return json_pack("{s:s, s:s, s:o, s:b}", "id", id, "action", "change", "fields", fields, "live",
                     live);
}

/* A configuration of a set with its running flag, to sort them together. */
struct entry {
    const struct core_listener_cfg *cfg;
    bool running;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    return strcmp(x->cfg->id, y->cfg->id);
}

/* The configurations of set in id order, with running flags to match (when running), in
 * O(n log n). */
static int sorted(const struct core_listener_cfg *const *set, size_t n, const bool *running,
                  const struct core_listener_cfg ***ret, bool **ret_running)
{
    const struct core_listener_cfg **s = calloc(n + 1, sizeof(*s));
    struct entry *e = calloc(n + 1, sizeof(*e));
    bool *run = calloc(n + 1, sizeof(*run));

    if (!s || !e || !run) {
        free(s);
        free(e);
        free(run);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        e[i] = (struct entry){.cfg = set[i], .running = running ? running[i] : set[i]->enabled};
    qsort(e, n, sizeof(*e), cmp_entry);
    for (size_t i = 0; i < n; i++) {
        s[i] = e[i].cfg;
        run[i] = e[i].running;
    }
    free(e);
    *ret = s;
    *ret_running = run;
    return 0;
}

int core_diff_sets(const struct core_listener_cfg *const *from, size_t n_from, const bool *running,
                   const struct core_listener_cfg *const *to, size_t n_to, json_t **ret)
{
    const struct core_listener_cfg **a = NULL, **b = NULL;
    bool *run_a = NULL, *run_b = NULL;
    json_t *diff = json_array();
    size_t i = 0, k = 0;
    int r = -ENOMEM;

    if (!diff || sorted(from, n_from, running, &a, &run_a) < 0 ||
        sorted(to, n_to, NULL, &b, &run_b) < 0)
        goto out;
    while (i < n_from || k < n_to) {
        int c = i == n_from ? 1 : k == n_to ? -1 : strcmp(a[i]->id, b[k]->id);
        json_t *e = NULL;

        if (c < 0) {
            e = core_diff_delete(a[i++]->id);
        } else if (c > 0) {
            e = core_diff_create(b[k++]->id);
        } else {
            if (!core_listener_cfg_equal(a[i], b[k]))
                e = core_diff_change(a[i]->id, core_diff_fields(a[i], b[k]),
                                     core_diff_is_live(a[i], b[k], run_a[i]));
            else
                e = json_null(); /* unchanged: not listed */
            i++;
            k++;
        }
        if (!e)
            goto out;
        if (json_is_null(e))
            continue;
        if (json_array_append_new(diff, e) < 0)
            goto out;
    }
    *ret = diff;
    diff = NULL;
    r = 0;
out:
    json_decref(diff);
    free(a);
    free(b);
    free(run_a);
    free(run_b);
    return r;
}

/* Appends the ids of diff's entries of action (with their fields when with_fields) to buf,
 * after "label "; nothing when there are none. */
static int summarize(struct core_buf *buf, const json_t *diff, const char *action,
                     const char *label, bool with_fields)
{
    size_t i;
    json_t *e;
    bool first = true;

    json_array_foreach(diff, i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        const char *act = json_string_value(json_object_get(e, "action"));
        json_t *fields = json_object_get(e, "fields");
        int r;

        if (!id || !act || strcmp(act, action) != 0)
            continue;
        if (first)
            r = core_buf_printf(buf, "%s%s %s", buf->len ? "; " : "", label, id);
        else
            r = core_buf_printf(buf, ", %s", id);
        first = false;
        if (r < 0)
            return r;
        if (with_fields && json_array_size(fields) > 0) {
            size_t f;
            json_t *name;

            json_array_foreach(fields, f, name)
            {
                r = core_buf_printf(buf, "%s%s", f == 0 ? " (" : ", ", json_string_value(name));
                if (r < 0)
                    return r;
            }
            r = core_buf_printf(buf, ")");
            if (r < 0)
                return r;
        }
    }
    return 0;
}

char *core_diff_summary(const json_t *diff)
{
    struct core_buf buf = {0};
    if (summarize(&buf, diff, "create", "created", false) < 0 ||
        summarize(&buf, diff, "change", "changed", true) < 0 ||
        summarize(&buf, diff, "delete", "deleted", false) < 0 ||
        (buf.len == 0 && core_buf_printf(&buf, "no change") < 0) ||
        core_buf_append(&buf, "", 1) < 0) {
        core_buf_fini(&buf);
        return NULL;
    }
    return (char *)buf.data;
}
