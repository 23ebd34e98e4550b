/*
 * The pure parts of `sockserv ctl`: durations, exit statuses, problem messages, --set, the
 * desired-state file and its merge with the current set, diffs, "key: value" text, tables and
 * the server-sent events parser. No I/O.
 */
#include "cli/ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growing text buffer ---- */

struct text {
    char *p;
    size_t len, cap;
    bool failed;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *np = realloc(t->p, cap);

        if (!np) {
            t->failed = true;
            return;
        }
        t->p = np;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        text_add(t, small, (size_t)n);
        return;
    }
    {
        char *big = malloc((size_t)n + 1);

        if (!big) {
            t->failed = true;
            return;
        }
        va_start(ap, fmt);
        (void)vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        text_add(t, big, (size_t)n);
        free(big);
    }
}

/* The text, or NULL when anything failed (freed then). An empty text is "". */
static char *text_take(struct text *t)
{
    if (t->failed) {
        free(t->p);
        return NULL;
    }
    if (!t->p)
        return calloc(1, 1);
    return t->p;
}

/* ---- durations, statuses, problems ---- */

int cli_ctl_duration_parse(const char *text, int64_t *ret_ms)
{
    return cli_duration_parse(text, 1000, CLI_CTL_DURATION_MAX_MS, ret_ms);
}

void cli_ctl_duration_format(int64_t ms, char *buf, size_t len)
{
    if (ms > 0 && ms % 3600000 == 0)
        snprintf(buf, len, "%" PRId64 "h", ms / 3600000);
    else if (ms > 0 && ms % 60000 == 0)
        snprintf(buf, len, "%" PRId64 "m", ms / 60000);
    else if (ms > 0 && ms % 1000 == 0)
        snprintf(buf, len, "%" PRId64 "s", ms / 1000);
    else
        snprintf(buf, len, "%" PRId64 "ms", ms);
}

int cli_ctl_exit_from_status(long status)
{
    if (status >= 200 && status < 300)
        return CLI_CTL_EXIT_OK;
    if (status == 404)
        return CLI_CTL_EXIT_NOT_FOUND;
    if (status == 409 || status == 412)
        return CLI_CTL_EXIT_CONFLICT;
    return CLI_CTL_EXIT_FAILURE;
}

void cli_ctl_problem_format(long status, const json_t *body, char *buf, size_t len)
{
    const char *detail = json_string_value(json_object_get(body, "detail"));
    const char *title = json_string_value(json_object_get(body, "title"));
    const char *field = json_string_value(json_object_get(body, "field"));
    const char *listener = json_string_value(json_object_get(body, "listener"));
    size_t used;

    if (len == 0)
        return;
    if (detail && *detail)
        snprintf(buf, len, "%s", detail);
    else if (title && *title)
        snprintf(buf, len, "%s (HTTP %ld)", title, status);
    else
        snprintf(buf, len, "HTTP %ld", status);
    used = strlen(buf);
    if (field && *field && used < len)
        used += (size_t)snprintf(buf + used, len - used, " (field: %s)", field);
    if (listener && *listener && used < len)
        (void)snprintf(buf + used, len - used, " (listener: %s)", listener);
}

int cli_ctl_if_match_normalize(const char *text, char *buf, size_t len)
{
    size_t used = 0;
    const char *p = text;
    bool any = false;

    if (len == 0)
        return -ENOSPC;
    buf[0] = '\0';
    for (;;) {
        const char *tag;
        size_t n;
        int w;

        p += strspn(p, " \t");
        if (*p == '\0')
            break;
        n = strcspn(p, ",");
        tag = p;
        p += n;
        while (n > 0 && (tag[n - 1] == ' ' || tag[n - 1] == '\t'))
            n--;
        if (*p == ',')
            p++;
        if (n == 0)
            return -EINVAL;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)tag[i] <= 0x20 || (unsigned char)tag[i] >= 0x7f)
                return -EINVAL;
        if (n == 1 && tag[0] == '*') {
            w = snprintf(buf + used, len - used, "%s*", any ? ", " : "");
        } else {
            const char *inner = tag;
            size_t inner_len = n;
            bool weak = n > 2 && strncmp(tag, "W/", 2) == 0;

            if (weak) {
                inner += 2;
                inner_len -= 2;
            }
            if (inner_len >= 2 && inner[0] == '"' && inner[inner_len - 1] == '"') {
                inner++;
                inner_len -= 2;
            } else if (memchr(inner, '"', inner_len)) {
                return -EINVAL;
            }
            if (memchr(inner, '"', inner_len))
                return -EINVAL;
            w = snprintf(buf + used, len - used, "%s%s\"%.*s\"", any ? ", " : "", weak ? "W/" : "",
                         (int)inner_len, inner);
        }
        if (w < 0 || (size_t)w >= len - used) {
            buf[0] = '\0';
            return -ENOSPC;
        }
        used += (size_t)w;
        any = true;
    }
    return any ? 0 : -EINVAL;
}

/* ---- --set ---- */

/* Copies the next segment of a dotted key into name; returns its length, or 0 when empty or
 * too long. */
static size_t key_segment(const char *key, const char *end, char *name, size_t cap)
{
    const char *dot = memchr(key, '.', (size_t)(end - key));
    size_t n = dot ? (size_t)(dot - key) : (size_t)(end - key);

    if (n == 0 || n >= cap)
        return 0;
    memcpy(name, key, n);
    name[n] = '\0';
    return n;
}

int cli_ctl_set_apply(json_t *obj, const char *assignment, struct core_err *err)
{
    const char *eq = strchr(assignment, '=');
    const json_t *probe = obj;
    json_t *at = obj, *v;
    json_error_t jerr;
    char name[256];
    const char *key;
    size_t n;

    if (!eq)
        return core_err_set(err, -EINVAL, NULL, "'%s' is not KEY=VALUE", assignment);
    /* check the whole path first, so that a refusal changes nothing */
    for (key = assignment;; key += n + 1) {
        n = key_segment(key, eq, name, sizeof(name));
        if (n == 0)
            return core_err_set(err, -EINVAL, NULL, "'%s': an empty or too long key", assignment);
        if (key + n == eq)
            break;
        if (probe) {
            probe = json_object_get(probe, name);
            if (probe && !json_is_object(probe))
                return core_err_set(err, -EINVAL, NULL, "'%s': %s is not an object", assignment,
                                    name);
        }
    }
    for (key = assignment;; key += n + 1) {
        n = key_segment(key, eq, name, sizeof(name));
        if (key + n == eq)
            break;
        v = json_object_get(at, name);
        if (!v) {
            v = json_object();
            if (!v || json_object_set_new(at, name, v) < 0)
                return core_err_set(err, -ENOMEM, NULL, "out of memory");
        }
        at = v;
    }
    v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        v = json_string(eq + 1);
    if (!v || json_object_set_new(at, name, v) < 0)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    return 0;
}

/* ---- the desired set ---- */

int cli_ctl_desired_parse(const json_t *doc, json_t **ret, struct core_err *err)
{
    const json_t *list = doc;
    const char *prefix = "";
    json_t *ids;
    size_t i;
    json_t *item;

    if (json_is_object(doc)) {
        list = json_object_get(doc, "listeners");
        prefix = "listeners";
        if (!list)
            return core_err_set(err, -EINVAL, "listeners",
                                "no \"listeners\": the file holds {\"listeners\": [...]} or an "
                                "array of listeners");
    }
    if (!json_is_array(list))
        return core_err_set(err, -EINVAL, *prefix ? prefix : NULL,
                            "%s must be an array of listeners", *prefix ? prefix : "the file");
    ids = json_object();
    if (!ids)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    json_array_foreach(list, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        char where[64];

        snprintf(where, sizeof(where), "%s[%zu]", prefix, i);
        if (!json_is_object(item)) {
            json_decref(ids);
            return core_err_set(err, -EINVAL, where, "%s: a listener must be an object", where);
        }
        snprintf(where, sizeof(where), "%s[%zu].id", prefix, i);
        if (!id || !*id) {
            json_decref(ids);
            return core_err_set(err, -EINVAL, where, "%s: every listener needs an \"id\"", where);
        }
        if (json_object_get(ids, id)) {
            json_decref(ids);
            return core_err_set(err, -EINVAL, where, "%s: \"%s\" is there twice", where, id);
        }
        if (json_object_set_new(ids, id, json_true()) < 0) {
            json_decref(ids);
            return core_err_set(err, -ENOMEM, NULL, "out of memory");
        }
    }
    json_decref(ids);
    *ret = json_incref((json_t *)list);
    return 0;
}

/* A copy of a listener without what the API reports but does not take. */
static json_t *config_of(const json_t *listener)
{
    json_t *c = json_deep_copy(listener);

    if (c) {
        (void)json_object_del(c, "status");
        (void)json_object_del(c, "metrics");
    }
    return c;
}

static const json_t *find_by_id(const json_t *list, const char *id)
{
    size_t i;
    json_t *item;

    json_array_foreach(list, i, item)
    {
        const char *it = json_string_value(json_object_get(item, "id"));

        if (it && strcmp(it, id) == 0)
            return item;
    }
    return NULL;
}

json_t *cli_ctl_desired_merge(const json_t *current, const json_t *file)
{
    json_t *out = json_array(), *item;
    size_t i;

    if (!out)
        return NULL;
    json_array_foreach(current, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        const json_t *mine = id ? find_by_id(file, id) : NULL;

        if (json_array_append_new(out, config_of(mine ? mine : item)) < 0)
            goto fail;
    }
    json_array_foreach(file, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));

        if (id && find_by_id(current, id))
            continue;
        if (json_array_append_new(out, config_of(item)) < 0)
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* ---- rendering ---- */

char *cli_ctl_diff_render(const json_t *diff)
{
    struct text t = {0};
    json_t *item;
    size_t i;

    if (!json_is_array(diff) || json_array_size(diff) == 0) {
        text_puts(&t, "no changes\n");
        return text_take(&t);
    }
    json_array_foreach(diff, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        const char *action = json_string_value(json_object_get(item, "action"));
        const json_t *fields = json_object_get(item, "fields");
        const json_t *live = json_object_get(item, "live");

        if (!id)
            id = "?";
        if (!action)
            action = "?";
        if (strcmp(action, "create") == 0) {
            text_printf(&t, "+ %s (create)\n", id);
        } else if (strcmp(action, "delete") == 0) {
            text_printf(&t, "- %s (delete)\n", id);
        } else if (strcmp(action, "change") == 0) {
            json_t *f;
            size_t j;

            text_printf(&t, "~ %s", id);
            json_array_foreach(fields, j, f)
            {
                if (json_is_string(f))
                    text_printf(&t, "%s%s", j == 0 ? ": " : ", ", json_string_value(f));
            }
            if (json_is_boolean(live))
                text_puts(&t, json_is_true(live) ? " (live)" : " (restart)");
            text_puts(&t, "\n");
        } else {
            text_printf(&t, "? %s (%s)\n", id, action);
        }
    }
    return text_take(&t);
}

static bool is_scalar(const json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v) || json_is_null(v);
}

static void scalar_add(struct text *t, const json_t *v)
{
    if (json_is_string(v))
        text_puts(t, json_string_value(v));
    else if (json_is_integer(v))
        text_printf(t, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        text_printf(t, "%g", json_real_value(v));
    else if (json_is_true(v))
        text_puts(t, "true");
    else if (json_is_false(v))
        text_puts(t, "false");
    else
        text_puts(t, "-");
}

static void kv_add(struct text *t, const json_t *obj, const char *indent, const char *prefix)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        char path[512];

        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
        if (json_is_object(v) && json_object_size(v) > 0) {
            kv_add(t, v, indent, path);
            continue;
        }
        text_printf(t, "%s%s: ", indent, path);
        if (json_is_object(v)) {
            text_puts(t, "-");
        } else if (json_is_array(v)) {
            bool scalars = true;
            json_t *e;
            size_t i;

            json_array_foreach(v, i, e) scalars = scalars && is_scalar(e);
            if (json_array_size(v) == 0) {
                text_puts(t, "-");
            } else if (scalars) {
                json_array_foreach(v, i, e)
                {
                    if (i > 0)
                        text_puts(t, ", ");
                    scalar_add(t, e);
                }
            } else {
                char *s = json_dumps(v, JSON_COMPACT);

                if (!s)
                    t->failed = true;
                else
                    text_puts(t, s);
                free(s);
            }
        } else {
            scalar_add(t, v);
        }
        text_puts(t, "\n");
    }
}

char *cli_ctl_kv_render(const json_t *obj, const char *indent)
{
    struct text t = {0};

    if (json_is_object(obj))
        kv_add(&t, obj, indent ? indent : "", "");
    return text_take(&t);
}

void cli_ctl_bytes_format(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(buf, len, "%" PRIu64 " B", n);
        return;
    }
    v /= 1024;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, units[u]);
}

/* ---- tables ---- */

int cli_ctl_table_init(struct cli_ctl_table *t, size_t ncols, const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    return cli_ctl_table_add(t, headers);
}

int cli_ctl_table_add(struct cli_ctl_table *t, const char *const *cells)
{
    char **grown = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(*grown));

    if (!grown)
        return -ENOMEM;
    t->cells = grown;
    for (size_t c = 0; c < t->ncols; c++) {
        char *copy = strdup(cells[c] ? cells[c] : "-");

        if (!copy) {
            for (size_t k = 0; k < c; k++)
                free(t->cells[t->nrows * t->ncols + k]);
            return -ENOMEM;
        }
        t->cells[t->nrows * t->ncols + c] = copy;
    }
    t->nrows++;
    return 0;
}

char *cli_ctl_table_render(const struct cli_ctl_table *t)
{
    struct text out = {0};
    size_t *width = calloc(t->ncols ? t->ncols : 1, sizeof(*width));

    if (!width)
        return NULL;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t n = strlen(t->cells[r * t->ncols + c]);

            if (n > width[c])
                width[c] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        size_t line_start = out.len;

        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            int pad = (int)(width[c] - strlen(cell));
            bool right = t->right & (1u << c);

            if (c > 0)
                text_puts(&out, "  ");
            if (right)
                text_printf(&out, "%*s%s", pad, "", cell);
            else
                text_printf(&out, "%s%*s", cell, pad, "");
        }
        /* no trailing blanks */
        while (out.len > line_start && out.p && out.p[out.len - 1] == ' ')
            out.p[--out.len] = '\0';
        text_puts(&out, "\n");
    }
    free(width);
    return text_take(&out);
}

void cli_ctl_table_fini(struct cli_ctl_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

/* ---- server-sent events ---- */

void cli_ctl_sse_init(struct cli_ctl_sse *s, cli_ctl_sse_event_fn fn, void *ctx)
{
    memset(s, 0, sizeof(*s));
    s->fn = fn;
    s->ctx = ctx;
    s->retry_ms = -1;
}

void cli_ctl_sse_reset(struct cli_ctl_sse *s)
{
    s->line_len = 0;
    s->data_len = 0;
    s->has_data = false;
    s->skip_lf = false;
    s->event[0] = '\0';
}

void cli_ctl_sse_fini(struct cli_ctl_sse *s)
{
    free(s->line);
    free(s->data);
    s->line = s->data = NULL;
    s->line_cap = s->data_cap = 0;
}

static int grow(char **p, size_t *cap, size_t need)
{
    char *np;
    size_t ncap;

    if (need <= *cap)
        return 0;
    if (need > CLI_CTL_SSE_LINE_MAX + 1)
        return -E2BIG;
    ncap = *cap ? *cap : 256;
    while (ncap < need)
        ncap *= 2;
    np = realloc(*p, ncap);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

static int dispatch(struct cli_ctl_sse *s)
{
    int r = 0;

    if (s->has_data) {
        if (s->data_len > 0 && s->data[s->data_len - 1] == '\n')
            s->data_len--;
        s->data[s->data_len] = '\0';
        r = s->fn(s->ctx, s->last_id, s->event[0] ? s->event : "message", s->data);
    }
    s->data_len = 0;
    s->has_data = false;
    s->event[0] = '\0';
    return r;
}

/* One complete line (s->line, s->line_len, NUL-terminated). */
static int process_line(struct cli_ctl_sse *s)
{
    char *line = s->line, *colon, *value;
    size_t vlen;
    int r;

    if (s->line_len == 0)
        return dispatch(s);
    if (line[0] == ':')
        return 0;
    colon = memchr(line, ':', s->line_len);
    if (colon) {
        *colon = '\0';
        value = colon + 1;
        if (*value == ' ')
            value++;
    } else {
        value = line + s->line_len;
    }
    vlen = (size_t)(line + s->line_len - value);
    if (strcmp(line, "data") == 0) {
        r = grow(&s->data, &s->data_cap, s->data_len + vlen + 2);
        if (r < 0)
            return r;
        memcpy(s->data + s->data_len, value, vlen);
        s->data_len += vlen;
        s->data[s->data_len++] = '\n';
        s->has_data = true;
    } else if (strcmp(line, "event") == 0) {
        snprintf(s->event, sizeof(s->event), "%s", value);
    } else if (strcmp(line, "id") == 0) {
        if (!memchr(value, '\0', vlen))
            snprintf(s->last_id, sizeof(s->last_id), "%s", value);
    } else if (strcmp(line, "retry") == 0) {
        long v = 0;
        bool ok = vlen > 0 && vlen < 10;

        for (size_t i = 0; ok && i < vlen; i++) {
            ok = value[i] >= '0' && value[i] <= '9';
            v = v * 10 + (value[i] - '0');
        }
        if (ok)
            s->retry_ms = v;
    }
    return 0;
}

int cli_ctl_sse_feed(struct cli_ctl_sse *s, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        int r;

        if (s->skip_lf) {
            s->skip_lf = false;
            if (ch == '\n')
                continue;
        }
        if (ch == '\r' || ch == '\n') {
            s->skip_lf = ch == '\r';
            r = grow(&s->line, &s->line_cap, s->line_len + 1);
            if (r < 0)
                return r;
            s->line[s->line_len] = '\0';
            r = process_line(s);
            s->line_len = 0;
            if (r != 0)
                return r;
            continue;
        }
        r = grow(&s->line, &s->line_cap, s->line_len + 2);
        if (r < 0)
            return r;
        s->line[s->line_len++] = ch;
    }
    return 0;
}
