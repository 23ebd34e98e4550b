/*
 * The pure parts of `sockserv fleet`: --if-match values, apply's rows, tables
 * and exit status, ls's table, watch's lines and the set of nodes apply waits for. No broker,
 * no I/O: the unit tests drive them directly.
 */
#include "cli/fleet.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ctl.h"
#include "fleet/wire.h"

/* ---- --if-match ---- */

int cli_fleet_if_match_add(json_t *if_match, const char *text, struct core_err *err)
{
    const char *eq = strchr(text, '=');
    char node[64], etag[256];
    size_t nlen, elen;

    if (!eq)
        return core_err_set(err, -EINVAL, "if_match", "--if-match '%s': not NODE=ETAG", text);
    nlen = (size_t)(eq - text);
    if (nlen >= sizeof(node))
        return core_err_set(err, -EINVAL, "if_match", "--if-match '%s': not a node name", text);
    memcpy(node, text, nlen);
    node[nlen] = '\0';
    if (!fleet_node_name_valid(node))
        return core_err_set(err, -EINVAL, "if_match", "--if-match '%s': '%s' is not a node name",
                            text, node);
    if (json_object_get(if_match, node))
        return core_err_set(err, -EINVAL, "if_match", "--if-match: node %s given twice", node);
    elen = strlen(eq + 1);
    if (elen == 0 || elen > 200 || strncmp(eq + 1, "W/", 2) == 0)
        return core_err_set(err, -EINVAL, "if_match",
                            "--if-match '%s': ETAG is a strong ETag as the API gives it (\"7\")",
                            text);
    if (eq[1] == '"') {
        if (elen < 3 || eq[elen] != '"' || memchr(eq + 2, '"', elen - 1) != eq + elen)
            return core_err_set(err, -EINVAL, "if_match", "--if-match '%s': malformed ETag", text);
        snprintf(etag, sizeof(etag), "%s", eq + 1);
    } else {
        for (const char *p = eq + 1; *p; p++)
            if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || *p == '"' || *p == ',')
                return core_err_set(err, -EINVAL, "if_match", "--if-match '%s': malformed ETag",
                                    text);
        snprintf(etag, sizeof(etag), "\"%s\"", eq + 1);
    }
    if (json_object_set_new(if_match, node, json_string(etag)) < 0)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    return 0;
}

/* ---- apply ---- */

static int compare_rows(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "node"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "node"));

    return strcmp(x ? x : "", y ? y : "");
}

/* Sorts the array by "node", in place. Returns 0 or -ENOMEM. */
static int sort_by_node(json_t *array)
{
    size_t n = json_array_size(array);
    json_t **items;

    if (n < 2)
        return 0;
    items = calloc(n, sizeof(*items));
    if (!items)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(array, i));
    qsort(items, n, sizeof(*items), compare_rows);
    json_array_clear(array);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(array, items[i]);
    free(items);
    return json_array_size(array) == n ? 0 : -ENOMEM;
}

json_t *cli_fleet_apply_rows(const json_t *replies, const char *const *expected, size_t n,
                             int64_t wait_ms)
{
    json_t *rows = json_array(), *reply;
    char wait[32], detail[96];
    const char *node;

    if (!rows)
        return NULL;
    cli_ctl_duration_format(wait_ms, wait, sizeof(wait));
    snprintf(detail, sizeof(detail), "did not answer in %s (offline?)", wait);
    json_object_foreach((json_t *)replies, node, reply)
    {
        if (json_array_append(rows, reply) < 0)
            goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (json_object_get(replies, expected[i]))
            continue;
        if (json_array_append_new(rows, json_pack("{s:s, s:s, s:n, s:n, s:s}", "node", expected[i],
                                                  "result", "pending", "offset", "revision",
                                                  "detail", detail)) < 0)
            goto fail;
    }
    if (sort_by_node(rows) < 0)
        goto fail;
    return rows;
fail:
    json_decref(rows);
    return NULL;
}

int cli_fleet_apply_exit(const json_t *rows)
{
    enum fleet_result *results = calloc(json_array_size(rows) + 1, sizeof(*results));
    size_t n = 0, pending = 0, i;
    const json_t *row;
    int code;

    if (!results)
        return CLI_FLEET_EXIT_REJECTED;
    json_array_foreach(rows, i, row)
    {
        const char *result = json_string_value(json_object_get(row, "result"));

        if (result && strcmp(result, "pending") == 0)
            pending++;
        else if (!result || fleet_result_from_name(result, &results[n]) < 0)
            results[n++] = FLEET_RESULT_REJECTED; /* an answer that is not a result */
        else
            n++;
    }
    code = fleet_exit_code(results, n, pending);
    free(results);
    return code;
}

/* A JSON integer as text, "-" for anything else. */
static void int_cell(const json_t *j, char *buf, size_t len)
{
    if (json_is_integer(j))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
    else
        snprintf(buf, len, "-");
}

/* A problem+json object in one line: its detail (else title), then " (field: F)". */
static void problem_line(const json_t *problem, char *buf, size_t len)
{
    const char *detail = json_string_value(json_object_get(problem, "detail"));
    const char *title = json_string_value(json_object_get(problem, "title"));
    const char *field = json_string_value(json_object_get(problem, "field"));

    snprintf(buf, len, "%s%s%s%s",
             detail  ? detail
             : title ? title
                     : "rejected",
             field ? " (field: " : "", field ? field : "", field ? ")" : "");
}

char *cli_fleet_apply_render(const json_t *rows)
{
    static const char *const headers[] = {"NODE", "RESULT", "OFFSET", "REVISION", "DETAIL"};
    struct cli_ctl_table t;
    const json_t *row;
    char *text = NULL;
    size_t i;

    if (cli_ctl_table_init(&t, 5, headers) < 0)
        return NULL;
    t.right = 1u << 2 | 1u << 3;
    json_array_foreach(rows, i, row)
    {
        const char *node = json_string_value(json_object_get(row, "node"));
        const char *result = json_string_value(json_object_get(row, "result"));
        const json_t *problem = json_object_get(row, "problem");
        char res[32], offset[32], revision[32], detail[512];
        size_t k;

        snprintf(res, sizeof(res), "%s", result ? result : "?");
        for (k = 0; res[k]; k++)
            res[k] = (char)(res[k] >= 'a' && res[k] <= 'z' ? res[k] - 'a' + 'A' : res[k]);
        int_cell(json_object_get(row, "offset"), offset, sizeof(offset));
        int_cell(json_object_get(row, "revision"), revision, sizeof(revision));
        if (json_is_object(problem))
            problem_line(problem, detail, sizeof(detail));
        else if (json_is_string(json_object_get(row, "detail")))
            snprintf(detail, sizeof(detail), "%s",
                     json_string_value(json_object_get(row, "detail")));
        else if (json_is_string(json_object_get(row, "error")))
            snprintf(detail, sizeof(detail), "%s",
                     json_string_value(json_object_get(row, "error")));
        else
            snprintf(detail, sizeof(detail), "-");
        if (cli_ctl_table_add(
                &t, (const char *const[]){node ? node : "?", res, offset, revision, detail}) < 0)
            goto out;
    }
    text = cli_ctl_table_render(&t);
out:
    cli_ctl_table_fini(&t);
    return text;
}

/* ---- ls ---- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "k=v,k=v" sorted by key, "-" for none. */
static void labels_cell(const json_t *labels, char *buf, size_t len)
{
    const char *keys[64], *key;
    size_t n = 0, off = 0;
    json_t *v;

    json_object_foreach((json_t *)labels, key, v)
    {
        if (n < sizeof(keys) / sizeof(keys[0]))
            keys[n++] = key;
    }
    if (n == 0) {
        snprintf(buf, len, "-");
        return;
    }
    qsort(keys, n, sizeof(keys[0]), compare_strings);
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++) {
        const char *val = json_string_value(json_object_get(labels, keys[i]));

        off += (size_t)snprintf(buf + off, len - off, "%s%s=%s", i ? "," : "", keys[i],
                                val ? val : "");
    }
}

char *cli_fleet_ls_render(const json_t *view)
{
    static const char *const headers[] = {"NODE",   "STATE",     "LABELS",   "REVISION",
                                          "OFFSET", "LISTENERS", "LAST-SEEN"};
    const json_t *nodes = json_object_get(view, "nodes"), *node;
    struct cli_ctl_table t;
    char *text = NULL;
    size_t i;

    if (json_array_size(nodes) == 0)
        return strdup("no nodes\n");
    if (cli_ctl_table_init(&t, 7, headers) < 0)
        return NULL;
    t.right = 1u << 3 | 1u << 4 | 1u << 5;
    json_array_foreach(nodes, i, node)
    {
        const char *name = json_string_value(json_object_get(node, "node"));
        const char *state = json_string_value(json_object_get(node, "state"));
        const char *seen = json_string_value(json_object_get(node, "last_seen"));
        const json_t *applied = json_object_get(node, "applied_offset");
        const json_t *desired = json_object_get(node, "desired_offset");
        const json_t *listeners = json_object_get(node, "listeners"), *l;
        char labels[512], revision[32], offset[64], count[32];
        size_t k, running = 0;

        labels_cell(json_object_get(node, "labels"), labels, sizeof(labels));
        int_cell(json_object_get(node, "revision"), revision, sizeof(revision));
        int_cell(applied, offset, sizeof(offset));
        if (json_is_integer(desired) &&
            (!json_is_integer(applied) ||
             json_integer_value(desired) != json_integer_value(applied)))
            snprintf(offset + strlen(offset), sizeof(offset) - strlen(offset),
                     "/%" JSON_INTEGER_FORMAT, json_integer_value(desired));
        json_array_foreach(listeners, k, l)
        {
            const char *ls = json_string_value(json_object_get(l, "state"));

            running += ls && strcmp(ls, "running") == 0;
        }
        if (json_is_array(listeners))
            snprintf(count, sizeof(count), "%zu/%zu", running, json_array_size(listeners));
        else
            snprintf(count, sizeof(count), "-");
        if (cli_ctl_table_add(&t, (const char *const[]){name ? name : "?", state ? state : "?",
                                                        labels, revision, offset, count,
                                                        seen ? seen : "-"}) < 0)
            goto out;
    }
    text = cli_ctl_table_render(&t);
    /* why a node is in ERROR: its last result's problem, below the table */
    json_array_foreach(nodes, i, node)
    {
        const json_t *last = json_object_get(node, "last_result");
        const char *state = json_string_value(json_object_get(node, "state"));
        const char *result = json_string_value(json_object_get(last, "result"));
        char detail[512], offset[32], *more;

        if (!text || !state || strcmp(state, "ERROR") != 0 || !result)
            continue;
        int_cell(json_object_get(last, "offset"), offset, sizeof(offset));
        if (json_is_object(json_object_get(last, "problem")))
            problem_line(json_object_get(last, "problem"), detail, sizeof(detail));
        else
            snprintf(detail, sizeof(detail), "-");
        if (asprintf(&more, "%s%s: %s offset %s: %s\n", text,
                     json_string_value(json_object_get(node, "node")), result, offset,
                     detail) < 0) {
            free(text);
            text = NULL;
            break;
        }
        free(text);
        text = more;
    }
out:
    cli_ctl_table_fini(&t);
    return text;
}

/* ---- watch ---- */

static bool is_kind(const char *kind, const char *name)
{
    return kind && strcmp(kind, name) == 0;
}

/* The summary of a kind's data, in buf. */
static void summarize(const char *kind, const json_t *data, char *buf, size_t len)
{
    const char *id = json_string_value(json_object_get(data, "id"));
    char what[512];

    if (is_kind(kind, "listener.created") || is_kind(kind, "listener.changed")) {
        cli_ctl_describe(data, what, sizeof(what));
        snprintf(buf, len, "%s: %s", id ? id : "?", what);
    } else if (is_kind(kind, "listener.deleted")) {
        snprintf(buf, len, "%s", id ? id : "?");
    } else if (is_kind(kind, "listener.state")) {
        const char *state = json_string_value(json_object_get(data, "state"));
        const char *prev = json_string_value(json_object_get(data, "previous"));
        const char *error = json_string_value(json_object_get(data, "error"));

        snprintf(buf, len, "%s: %s -> %s%s%s", id ? id : "?", prev ? prev : "?",
                 state ? state : "?", error ? ": " : "", error ? error : "");
    } else if (is_kind(kind, "config.revision")) {
        const char *summary = json_string_value(json_object_get(data, "summary"));
        const char *source = json_string_value(json_object_get(data, "source"));
        char rev[32];

        int_cell(json_object_get(data, "revision"), rev, sizeof(rev));
        snprintf(buf, len, "revision %s: %s (%s)", rev, summary ? summary : "?",
                 source ? source : "?");
    } else if (kind && strncmp(kind, "config.", 7) == 0) {
        const json_t *problem = json_object_get(data, "problem");
        char offset[32], rev[32];

        int_cell(json_object_get(data, "offset"), offset, sizeof(offset));
        int_cell(json_object_get(data, "revision"), rev, sizeof(rev));
        if (json_is_object(problem))
            problem_line(problem, what, sizeof(what));
        snprintf(buf, len, "offset %s, revision %s%s%s", offset, rev,
                 json_is_object(problem) ? ": " : "", json_is_object(problem) ? what : "");
    } else if (is_kind(kind, "node.hello") || is_kind(kind, "node.status")) {
        const json_t *listeners = json_object_get(data, "listeners");
        char rev[32], offset[32], labels[256];

        int_cell(json_object_get(data, "revision"), rev, sizeof(rev));
        int_cell(json_object_get(data, "applied_offset"), offset, sizeof(offset));
        labels_cell(json_object_get(data, "labels"), labels, sizeof(labels));
        snprintf(buf, len, "revision %s, offset %s, %zu listener%s, labels %s", rev, offset,
                 json_array_size(listeners), json_array_size(listeners) == 1 ? "" : "s", labels);
    } else if (is_kind(kind, "node.bye")) {
        snprintf(buf, len, "left the fleet");
    } else if (is_kind(kind, "node.forgotten")) {
        const char *by = json_string_value(json_object_get(data, "by"));

        snprintf(buf, len, "forgotten by %s", by ? by : "-");
    } else if (is_kind(kind, "metrics.tick")) {
        const json_t *m;
        json_int_t active = 0;
        const char *lid;
        size_t n = 0;

        json_object_foreach((json_t *)json_object_get(data, "listeners"), lid, m)
        {
            active += json_integer_value(json_object_get(m, "connections_active"));
            n++;
        }
        snprintf(buf, len, "%zu listener%s, %" JSON_INTEGER_FORMAT " active connection%s", n,
                 n == 1 ? "" : "s", active, active == 1 ? "" : "s");
    } else {
        char *compact = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);

        snprintf(buf, len, "%.300s", compact ? compact : "-");
        free(compact);
    }
}

char *cli_fleet_watch_line(const char *routing_key, const char *body, size_t len)
{
    json_t *env = json_loadb(body, len, 0, NULL);
    const char *time, *node, *kind;
    char summary[1024], *line = NULL;

    time = json_string_value(json_object_get(env, "time"));
    node = json_string_value(json_object_get(env, "node"));
    kind = json_string_value(json_object_get(env, "kind"));
    if (!time || !node || !kind) {
        int n = (int)(len > 200 ? 200 : len);

        for (int i = 0; i < n; i++)
            if (body[i] == '\n' || body[i] == '\r' || body[i] == '\0') {
                n = i;
                break;
            }
        if (asprintf(&line, "- - %s %.*s", routing_key ? routing_key : "-", n, body) < 0)
            line = NULL;
        json_decref(env);
        return line;
    }
    summarize(kind, json_object_get(env, "data"), summary, sizeof(summary));
    for (char *p = summary; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (asprintf(&line, "%s %s %s %s", time, node, kind, summary) < 0)
        line = NULL;
    json_decref(env);
    return line;
}

/* ---- the expected set ---- */

static bool has_string(const json_t *array, const char *s)
{
    const json_t *v;
    size_t i;

    json_array_foreach(array, i, v)
    {
        if (strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

json_t *cli_fleet_expected(const json_t *view, const char *const *names, size_t n,
                           const struct fleet_selector *selector, bool all)
{
    json_t *set = json_array(), *sorted = NULL;
    const json_t *node;
    size_t i;

    if (!set)
        return NULL;
    for (i = 0; i < n; i++)
        if (!has_string(set, names[i]) && json_array_append_new(set, json_string(names[i])) < 0)
            goto out;
    json_array_foreach(json_object_get(view, "nodes"), i, node)
    {
        const char *name = json_string_value(json_object_get(node, "node"));
        struct fleet_labels labels;
        struct core_err err = {0};
        bool match = all;

        if (!name || has_string(set, name))
            continue;
        if (!match && selector &&
            fleet_labels_from_json(json_object_get(node, "labels"), &labels, &err) == 0)
            match = fleet_selector_match(selector, &labels);
        if (match && json_array_append_new(set, json_string(name)) < 0)
            goto out;
    }
    sorted = json_array();
    if (!sorted)
        goto out;
    {
        const char **items = calloc(json_array_size(set) + 1, sizeof(*items));
        const json_t *v;

        if (!items) {
            json_decref(sorted);
            sorted = NULL;
            goto out;
        }
        json_array_foreach(set, i, v)
        {
            items[i] = json_string_value(v);
        }
        qsort(items, json_array_size(set), sizeof(*items), compare_strings);
        for (i = 0; i < json_array_size(set); i++)
            json_array_append_new(sorted, json_string(items[i]));
        free(items);
    }
out:
    json_decref(set);
    return sorted;
}
