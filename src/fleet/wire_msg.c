/* The JSON messages of fleet/wire.h: envelopes, records and their decisions, replies, pongs. */
#include "fleet/wire.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON helpers ---- */

/* The object of body, or -EINVAL with what (e.g. "event body") in the message. */
static int load_object(const char *body, size_t len, const char *what, json_t **ret,
                       struct core_err *err)
{
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &je);

    if (!j)
        return core_err_set(err, -EINVAL, NULL, "%s is not JSON: %s", what, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return core_err_set(err, -EINVAL, NULL, "%s is not a JSON object", what);
    }
    *ret = j;
    return 0;
}

/* Copies the string member key of obj into buf (len bytes with the NUL; empty only when
 * may_be_empty). The error's field is "<path><key>". */
static int get_string(const json_t *obj, const char *path, const char *key, char *buf, size_t len,
                      bool may_be_empty, struct core_err *err)
{
    json_t *v = json_object_get(obj, key);
    char field[96];
    size_t n;

    snprintf(field, sizeof(field), "%s%s", path, key);
    if (!json_is_string(v))
        return core_err_set(err, -EINVAL, field, "%s must be a string", field);
    n = json_string_length(v);
    if (n >= len || (n == 0 && !may_be_empty) || strlen(json_string_value(v)) != n)
        return core_err_set(err, -EINVAL, field, "%s must be a string of %d-%zu characters", field,
                            may_be_empty ? 0 : 1, len - 1);
    memcpy(buf, json_string_value(v), n + 1);
    return 0;
}

/* Reads a non-negative integer member; with nullable, null (or absent) gives *ret_has false. */
static int get_u64(const json_t *obj, const char *path, const char *key, bool nullable,
                   bool *ret_has, uint64_t *ret, struct core_err *err)
{
    json_t *v = json_object_get(obj, key);
    char field[96];

    snprintf(field, sizeof(field), "%s%s", path, key);
    if (nullable && (!v || json_is_null(v))) {
        *ret_has = false;
        *ret = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return core_err_set(err, -EINVAL, field, "%s must be a non-negative integer%s", field,
                            nullable ? " or null" : "");
    if (ret_has)
        *ret_has = true;
    *ret = (uint64_t)json_integer_value(v);
    return 0;
}

static json_t *u64_or_null(bool has, uint64_t v)
{
    return has ? json_integer((json_int_t)v) : json_null();
}

static bool boot_valid(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return i == FLEET_BOOT_LEN - 1;
}

static int get_node(const json_t *obj, const char *path, char *ret, struct core_err *err)
{
    char field[96];
    int r = get_string(obj, path, "node", ret, FLEET_NAME_MAX, false, err);

    if (r < 0)
        return r;
    snprintf(field, sizeof(field), "%snode", path);
    if (!fleet_node_name_valid(ret))
        return core_err_set(err, -EINVAL, field, "%s '%s' is not a node name", field, ret);
    return 0;
}

static int get_boot(const json_t *obj, const char *path, char *ret, struct core_err *err)
{
    char field[96];
    int r = get_string(obj, path, "boot", ret, FLEET_BOOT_LEN, false, err);

    if (r < 0)
        return r;
    snprintf(field, sizeof(field), "%sboot", path);
    if (!boot_valid(ret))
        return core_err_set(err, -EINVAL, field, "%s must be 16 hex digits", field);
    return 0;
}

static int get_time(const json_t *obj, const char *path, const char *key, char *ret,
                    int64_t *ret_ms, struct core_err *err)
{
    char field[96];
    int64_t ms;
    int r = get_string(obj, path, key, ret, FLEET_TIME_LEN, false, err);

    if (r < 0)
        return r;
    snprintf(field, sizeof(field), "%s%s", path, key);
    if (fleet_time_parse(ret, &ms) < 0)
        return core_err_set(err, -EINVAL, field, "%s must be an RFC 3339 time", field);
    if (ret_ms)
        *ret_ms = ms;
    return 0;
}

/* ---- event envelopes and their sequence ---- */

json_t *fleet_envelope(const char *node, const char *boot, uint64_t seq, int64_t time_ms,
                       const char *kind, json_t *data)
{
    char time[FLEET_TIME_LEN];
    json_t *j = json_object();

    if (!data)
        data = json_object();
    if (!j || !data)
        goto out_fail;
    fleet_time_format(time, sizeof(time), time_ms);
    if (json_object_set_new(j, "node", json_string(node)) < 0 ||
        json_object_set_new(j, "boot", json_string(boot)) < 0 ||
        json_object_set_new(j, "seq", u64_or_null(seq != 0, seq)) < 0 ||
        json_object_set_new(j, "time", json_string(time)) < 0 ||
        json_object_set_new(j, "kind", json_string(kind)) < 0) {
        goto out_fail;
    }
    if (json_object_set_new(j, "data", data) < 0) {
        data = NULL; /* taken by the failed call */
        goto out_fail;
    }
    return j;

out_fail:
    json_decref(data);
    json_decref(j);
    return NULL;
}

int fleet_envelope_parse(const char *body, size_t len, struct fleet_envelope *ret,
                         struct core_err *err)
{
    struct fleet_envelope e = {0};
    bool has_seq;
    json_t *j;
    json_t *data;
    int r;

    r = load_object(body, len, "event body", &j, err);
    if (r < 0)
        return r;
    r = get_node(j, "", e.node, err);
    if (r < 0)
        goto out;
    r = get_boot(j, "", e.boot, err);
    if (r < 0)
        goto out;
    r = get_u64(j, "", "seq", true, &has_seq, &e.seq, err);
    if (r < 0)
        goto out;
    if (has_seq && e.seq == 0) {
        r = core_err_set(err, -EINVAL, "seq", "seq starts at 1 (null for unreliable kinds)");
        goto out;
    }
    r = get_time(j, "", "time", e.time, &e.time_ms, err);
    if (r < 0)
        goto out;
    r = get_string(j, "", "kind", e.kind, sizeof(e.kind), false, err);
    if (r < 0)
        goto out;
    if (!fleet_kind_valid(e.kind)) {
        r = core_err_set(err, -EINVAL, "kind", "kind '%s' is not AREA.WHAT", e.kind);
        goto out;
    }
    data = json_object_get(j, "data");
    if (!data) {
        r = core_err_set(err, -EINVAL, "data", "data is missing");
        goto out;
    }
    e.data = json_incref(data);
    *ret = e;
out:
    json_decref(j);
    return r;
}

void fleet_envelope_fini(struct fleet_envelope *e)
{
    if (!e)
        return;
    json_decref(e->data);
    e->data = NULL;
}

enum fleet_seq_verdict fleet_seq_check(struct fleet_seq_track *t, const char *boot, uint64_t seq)
{
    enum fleet_seq_verdict v;

    if (!t->has_boot || strcmp(t->boot, boot) != 0) {
        t->has_boot = true;
        snprintf(t->boot, sizeof(t->boot), "%s", boot);
        t->last = seq;
        return FLEET_SEQ_NEW_BOOT;
    }
    if (seq == 0)
        return FLEET_SEQ_UNTRACKED;
    if (seq <= t->last)
        return FLEET_SEQ_DUPLICATE;
    v = seq == t->last + 1 ? FLEET_SEQ_NEXT : FLEET_SEQ_GAP;
    t->last = seq;
    return v;
}

const char *fleet_seq_verdict_name(enum fleet_seq_verdict v)
{
    static const char *const names[FLEET_SEQ_COUNT] = {
        [FLEET_SEQ_NEXT] = "next",
        [FLEET_SEQ_DUPLICATE] = "duplicate",
        [FLEET_SEQ_GAP] = "gap",
        [FLEET_SEQ_NEW_BOOT] = "new_boot",
        [FLEET_SEQ_UNTRACKED] = "untracked",
    };

    return (unsigned)v < FLEET_SEQ_COUNT ? names[v] : "?";
}

/* ---- desired-state records ---- */

static int parse_target(const json_t *target, struct fleet_record *rec, struct core_err *err)
{
    json_t *nodes = json_object_get(target, "nodes");
    json_t *selector = json_object_get(target, "selector");
    json_t *all = json_object_get(target, "all");
    const char *key;
    json_t *v;
    int r;

    if (!json_is_object(target))
        return core_err_set(err, -EINVAL, "target",
                            "target must be an object with nodes, selector or all");
    json_object_foreach((json_t *)target, key, v)
    {
        char field[96];

        if (strcmp(key, "nodes") == 0 || strcmp(key, "selector") == 0 || strcmp(key, "all") == 0)
            continue;
        snprintf(field, sizeof(field), "target.%.80s", key);
        return core_err_set(err, -EINVAL, field, "unknown member '%.80s' in target", key);
    }
    if (!nodes && !selector && !all)
        return core_err_set(err, -EINVAL, "target", "target needs nodes, selector or all");
    if (all && !json_is_true(all))
        return core_err_set(err, -EINVAL, "target.all", "target.all must be true");
    if (all && (nodes || selector))
        return core_err_set(err, -EINVAL, "target",
                            "target.all cannot be combined with nodes or selector");
    if (nodes) {
        size_t n = json_array_size(nodes);

        if (!json_is_array(nodes) || n == 0 || n > FLEET_RECORD_NODES_MAX)
            return core_err_set(err, -EINVAL, "target.nodes",
                                "target.nodes must be an array of 1-%d node names",
                                FLEET_RECORD_NODES_MAX);
        rec->nodes = calloc(n, sizeof(*rec->nodes));
        if (!rec->nodes)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            const char *name = json_string_value(json_array_get(nodes, i));
            char field[64];

            snprintf(field, sizeof(field), "target.nodes[%zu]", i);
            if (!fleet_node_name_valid(name))
                return core_err_set(err, -EINVAL, field,
                                    "%s is not a node name ([a-z0-9][a-z0-9_-]{0,62}, not 'all')",
                                    field);
            rec->nodes[i] = strdup(name);
            if (!rec->nodes[i])
                return -ENOMEM;
            rec->n_nodes = i + 1;
        }
    }
    if (selector) {
        if (!json_is_string(selector))
            return core_err_set(err, -EINVAL, "target.selector",
                                "target.selector must be a string KEY=VALUE[,KEY=VALUE]...");
        r = fleet_selector_parse(json_string_value(selector), &rec->selector, err);
        if (r < 0) {
            if (err)
                snprintf(err->field, sizeof(err->field), "target.selector");
            return r;
        }
        rec->has_selector = true;
    }
    rec->all = all != NULL;
    return 0;
}

static int parse_if_match(const json_t *if_match, struct core_err *err)
{
    const char *key;
    json_t *v;

    if (!json_is_object(if_match))
        return core_err_set(err, -EINVAL, "if_match",
                            "if_match must be an object of node name -> ETag");
    json_object_foreach((json_t *)if_match, key, v)
    {
        char field[96];

        snprintf(field, sizeof(field), "if_match.%.80s", key);
        if (!fleet_node_name_valid(key))
            return core_err_set(err, -EINVAL, field, "if_match key '%.80s' is not a node name",
                                key);
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) >= FLEET_ETAG_MAX)
            return core_err_set(err, -EINVAL, field, "%s must be an ETag string", field);
    }
    return 0;
}

int fleet_record_parse(const char *body, size_t len, struct fleet_record *ret, struct core_err *err)
{
    static const char *const members[] = {"target", "config", "if_match", "issued_by", "issued_at"};
    const char *key;
    json_t *root;
    json_t *v;
    json_t *config;
    json_t *if_match;
    int r;

    memset(ret, 0, sizeof(*ret));
    r = load_object(body, len, "record", &root, err);
    if (r < 0)
        return r;
    if (!json_object_get(root, "target")) {
        r = core_err_set(err, -EINVAL, "target", "record has no target");
        goto out;
    }
    r = parse_target(json_object_get(root, "target"), ret, err);
    if (r < 0) {
        fleet_record_fini(ret);
        goto out;
    }
    ret->target_valid = true;

    json_object_foreach(root, key, v)
    {
        bool known = false;

        for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
            known = known || strcmp(key, members[i]) == 0;
        if (!known) {
            char field[96];

            /* "" is the field of a body that is not an object: an empty name is shown quoted */
            snprintf(field, sizeof(field), "%.80s", key[0] ? key : "\"\"");
            r = core_err_set(err, -EINVAL, field, "unknown member '%.80s' in record", key);
            goto out;
        }
    }
    config = json_object_get(root, "config");
    if (!json_is_object(config)) {
        r = core_err_set(err, -EINVAL, "config",
                         "config must be an object (the body of PUT /api/v1/config)");
        goto out;
    }
    if (!json_is_array(json_object_get(config, "listeners"))) {
        r = core_err_set(err, -EINVAL, "config.listeners", "config.listeners must be an array");
        goto out;
    }
    if_match = json_object_get(root, "if_match");
    if (if_match) {
        r = parse_if_match(if_match, err);
        if (r < 0)
            goto out;
    }
    if (json_object_get(root, "issued_by")) {
        r = get_string(root, "", "issued_by", ret->issued_by, sizeof(ret->issued_by), true, err);
        if (r < 0)
            goto out;
    }
    if (json_object_get(root, "issued_at")) {
        r = get_time(root, "", "issued_at", ret->issued_at, NULL, err);
        if (r < 0)
            goto out;
    }
    ret->config = json_incref(config);
    ret->if_match = json_incref(if_match);
out:
    if (r < 0) {
        ret->issued_by[0] = '\0';
        ret->issued_at[0] = '\0';
    }
    json_decref(root);
    return r;
}

void fleet_record_fini(struct fleet_record *r)
{
    if (!r)
        return;
    if (r->nodes)
        for (size_t i = 0; i < r->n_nodes; i++)
            free(r->nodes[i]);
    free(r->nodes);
    json_decref(r->config);
    json_decref(r->if_match);
    memset(r, 0, sizeof(*r));
}

bool fleet_record_targets(const struct fleet_record *r, const char *node,
                          const struct fleet_labels *labels)
{
    if (!r->target_valid)
        return false;
    if (r->all)
        return true;
    for (size_t i = 0; i < r->n_nodes; i++)
        if (strcmp(r->nodes[i], node) == 0)
            return true;
    return r->has_selector && fleet_selector_match(&r->selector, labels);
}

const char *fleet_record_if_match(const struct fleet_record *r, const char *node)
{
    return r->if_match ? json_string_value(json_object_get(r->if_match, node)) : NULL;
}

int fleet_record_build(const char *const *nodes, size_t n_nodes, const char *selector, bool all,
                       const json_t *config, const json_t *if_match, const char *issued_by,
                       int64_t issued_at_ms, json_t **ret, struct core_err *err)
{
    struct fleet_record check;
    char at[FLEET_TIME_LEN];
    json_t *root = json_object();
    json_t *target = json_object();
    char *text = NULL;
    int r = -ENOMEM;

    if (!root || !target)
        goto out;
    if (n_nodes > 0) {
        json_t *arr = json_array();

        if (json_object_set_new(target, "nodes", arr) < 0)
            goto out;
        for (size_t i = 0; i < n_nodes; i++)
            if (json_array_append_new(arr, json_string(nodes[i] ? nodes[i] : "")) < 0) {
                r = core_err_set(err, -EINVAL, "target.nodes", "node names must be UTF-8");
                goto out;
            }
    }
    if (selector && json_object_set_new(target, "selector", json_string(selector)) < 0) {
        r = core_err_set(err, -EINVAL, "target.selector", "the selector must be UTF-8");
        goto out;
    }
    if (all && json_object_set_new(target, "all", json_true()) < 0)
        goto out;
    fleet_time_format(at, sizeof(at), issued_at_ms);
    if (json_object_set(root, "target", target) < 0 ||
        json_object_set_new(root, "config", config ? json_deep_copy(config) : json_null()) < 0 ||
        (if_match && json_object_set_new(root, "if_match", json_deep_copy(if_match)) < 0) ||
        json_object_set_new(root, "issued_by", json_string(issued_by ? issued_by : "")) < 0 ||
        json_object_set_new(root, "issued_at", json_string(at)) < 0)
        goto out;
    /* One set of rules: the record is checked by the parser every node runs. */
    text = json_dumps(root, JSON_COMPACT);
    if (!text)
        goto out;
    r = fleet_record_parse(text, strlen(text), &check, err);
    fleet_record_fini(&check);
    if (r < 0)
        goto out;
    *ret = root;
    root = NULL;
out:
    free(text);
    json_decref(target);
    json_decref(root);
    return r;
}

enum fleet_verdict fleet_record_decide(uint64_t offset, bool has_stored, uint64_t stored,
                                       int parse_result, const struct fleet_record *rec,
                                       const char *node, const struct fleet_labels *labels)
{
    bool targeted = rec && fleet_record_targets(rec, node, labels);

    if (has_stored && offset <= stored)
        return FLEET_VERDICT_SKIP_OLD;
    if (parse_result == 0)
        return targeted ? FLEET_VERDICT_APPLY : FLEET_VERDICT_NOT_TARGETED;
    if (!rec || !rec->target_valid)
        return FLEET_VERDICT_REJECT;
    return targeted ? FLEET_VERDICT_REJECT : FLEET_VERDICT_NOT_TARGETED;
}

const char *fleet_verdict_name(enum fleet_verdict v)
{
    static const char *const names[FLEET_VERDICT_COUNT] = {
        [FLEET_VERDICT_SKIP_OLD] = "skip_old",
        [FLEET_VERDICT_NOT_TARGETED] = "not_targeted",
        [FLEET_VERDICT_APPLY] = "apply",
        [FLEET_VERDICT_REJECT] = "reject",
    };

    return (unsigned)v < FLEET_VERDICT_COUNT ? names[v] : "?";
}

size_t fleet_burst_pick(const enum fleet_verdict *verdicts, size_t n)
{
    for (size_t i = n; i > 0; i--)
        if (verdicts[i - 1] == FLEET_VERDICT_APPLY || verdicts[i - 1] == FLEET_VERDICT_REJECT)
            return i - 1;
    return n;
}

/* ---- results and replies ---- */

static const char *const result_names[FLEET_RESULT_COUNT] = {
    [FLEET_RESULT_APPLIED] = "applied",
    [FLEET_RESULT_UNCHANGED] = "unchanged",
    [FLEET_RESULT_REJECTED] = "rejected",
    [FLEET_RESULT_CONFLICT] = "conflict",
};

const char *fleet_result_name(enum fleet_result r)
{
    return (unsigned)r < FLEET_RESULT_COUNT ? result_names[r] : "?";
}

int fleet_result_from_name(const char *name, enum fleet_result *ret)
{
    for (int i = 0; name && i < FLEET_RESULT_COUNT; i++) {
        if (strcmp(result_names[i], name) == 0) {
            *ret = (enum fleet_result)i;
            return 0;
        }
    }
    return -EINVAL;
}

json_t *fleet_reply_json(const struct fleet_reply *r)
{
    json_t *j = json_object();

    if (!j)
        return NULL;
    if (json_object_set_new(j, "node", json_string(r->node)) < 0 ||
        json_object_set_new(j, "boot", json_string(r->boot)) < 0 ||
        json_object_set_new(j, "result", json_string(fleet_result_name(r->result))) < 0 ||
        json_object_set_new(j, "offset", json_integer((json_int_t)r->offset)) < 0 ||
        json_object_set_new(j, "record", r->record[0] ? json_string(r->record) : json_null()) < 0 ||
        json_object_set_new(j, "revision", json_integer((json_int_t)r->revision)) < 0 ||
        json_object_set_new(j, "etag", json_string(r->etag)) < 0 ||
        json_object_set_new(j, "applied_offset",
                            u64_or_null(r->has_applied_offset, r->applied_offset)) < 0 ||
        json_object_set_new(j, "problem", r->problem ? json_incref(r->problem) : json_null()) < 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int reply_from_json(const json_t *j, const char *path, struct fleet_reply *ret,
                           struct core_err *err)
{
    struct fleet_reply rep = {0};
    json_t *record;
    json_t *problem;
    char field[96];
    int r;

    if (!json_is_object(j))
        return core_err_set(err, -EINVAL, path[0] ? "last_result" : NULL,
                            "a reply must be an object");
    r = get_node(j, path, rep.node, err);
    if (r < 0)
        return r;
    r = get_boot(j, path, rep.boot, err);
    if (r < 0)
        return r;
    snprintf(field, sizeof(field), "%sresult", path);
    if (fleet_result_from_name(json_string_value(json_object_get(j, "result")), &rep.result) < 0)
        return core_err_set(err, -EINVAL, field,
                            "%s must be applied, unchanged, rejected or conflict", field);
    r = get_u64(j, path, "offset", false, NULL, &rep.offset, err);
    if (r < 0)
        return r;
    record = json_object_get(j, "record");
    if (record && !json_is_null(record)) {
        r = get_string(j, path, "record", rep.record, sizeof(rep.record), true, err);
        if (r < 0)
            return r;
    }
    r = get_u64(j, path, "revision", false, NULL, &rep.revision, err);
    if (r < 0)
        return r;
    r = get_string(j, path, "etag", rep.etag, sizeof(rep.etag), true, err);
    if (r < 0)
        return r;
    r = get_u64(j, path, "applied_offset", true, &rep.has_applied_offset, &rep.applied_offset, err);
    if (r < 0)
        return r;
    problem = json_object_get(j, "problem");
    if (problem && !json_is_null(problem)) {
        snprintf(field, sizeof(field), "%sproblem", path);
        if (!json_is_object(problem))
            return core_err_set(err, -EINVAL, field, "%s must be an object or null", field);
        rep.problem = json_incref(problem);
    }
    *ret = rep;
    return 0;
}

int fleet_reply_from_json(const json_t *j, struct fleet_reply *ret, struct core_err *err)
{
    return reply_from_json(j, "", ret, err);
}

int fleet_reply_parse(const char *body, size_t len, struct fleet_reply *ret, struct core_err *err)
{
    json_t *j;
    int r = load_object(body, len, "reply", &j, err);

    if (r < 0)
        return r;
    r = reply_from_json(j, "", ret, err);
    json_decref(j);
    return r;
}

void fleet_reply_fini(struct fleet_reply *r)
{
    if (!r)
        return;
    json_decref(r->problem);
    r->problem = NULL;
}

int fleet_exit_code(const enum fleet_result *results, size_t n, size_t n_pending)
{
    bool rejected = false, conflict = false;

    for (size_t i = 0; i < n; i++) {
        rejected = rejected || results[i] == FLEET_RESULT_REJECTED;
        conflict = conflict || results[i] == FLEET_RESULT_CONFLICT;
    }
    if (rejected)
        return 1;
    if (conflict)
        return 3;
    if (n_pending > 0)
        return 5;
    return 0;
}

/* ---- rpc and pongs ---- */

json_t *fleet_ping_request(void)
{
    return json_pack("{s:s}", "op", "ping");
}

int fleet_rpc_op(const char *body, size_t len, char *ret_op, size_t op_len, struct core_err *err)
{
    json_t *j;
    const char *op;
    int r = load_object(body, len, "rpc request", &j, err);

    if (r < 0)
        return r;
    op = json_string_value(json_object_get(j, "op"));
    if (!op)
        r = core_err_set(err, -EINVAL, "op", "rpc request has no string op");
    else
        r = (size_t)snprintf(ret_op, op_len, "%s", op) >= op_len ? -ENOSPC : 0;
    json_decref(j);
    return r;
}

json_t *fleet_rpc_error(const char *node, const char *op)
{
    char msg[160];

    snprintf(msg, sizeof(msg), "unknown op %.100s", op ? op : "");
    return json_pack("{s:s,s:s}", "node", node ? node : "", "error", msg);
}

int fleet_pong_from_json(const json_t *j, struct fleet_pong *ret, struct core_err *err)
{
    struct fleet_pong p = {0};
    json_t *v;
    int r;

    if (!json_is_object(j))
        return core_err_set(err, -EINVAL, NULL, "pong is not a JSON object");
    v = json_object_get(j, "error");
    if (json_is_string(v)) {
        const char *node = json_string_value(json_object_get(j, "node"));

        return core_err_set(err, -EINVAL, "error", "node %.64s: %.160s", node ? node : "?",
                            json_string_value(v));
    }
    r = get_node(j, "", p.node, err);
    if (r < 0)
        return r;
    r = get_boot(j, "", p.boot, err);
    if (r < 0)
        return r;
    r = get_string(j, "", "version", p.version, sizeof(p.version), false, err);
    if (r < 0)
        return r;
    r = fleet_labels_from_json(json_object_get(j, "labels"), &p.labels, err);
    if (r < 0)
        return r;
    r = get_time(j, "", "started", p.started, NULL, err);
    if (r < 0)
        return r;
    r = get_time(j, "", "time", p.time, &p.time_ms, err);
    if (r < 0)
        return r;
    r = get_u64(j, "", "revision", false, NULL, &p.revision, err);
    if (r < 0)
        return r;
    r = get_string(j, "", "etag", p.etag, sizeof(p.etag), true, err);
    if (r < 0)
        return r;
    r = get_u64(j, "", "applied_offset", true, &p.has_applied_offset, &p.applied_offset, err);
    if (r < 0)
        return r;
    r = get_u64(j, "", "desired_offset", true, &p.has_desired_offset, &p.desired_offset, err);
    if (r < 0)
        return r;
    v = json_object_get(j, "listeners");
    if (!json_is_array(v))
        return core_err_set(err, -EINVAL, "listeners", "listeners must be an array");
    v = json_object_get(j, "bridge");
    if (v && !json_is_null(v) && !json_is_object(v))
        return core_err_set(err, -EINVAL, "bridge", "bridge must be an object");
    v = json_object_get(j, "last_result");
    if (v && !json_is_null(v)) {
        r = reply_from_json(v, "last_result.", &p.last_result, err);
        if (r < 0)
            return r;
        p.has_last_result = true;
    }
    v = json_object_get(j, "listeners");
    p.listeners = json_incref(v);
    p.n_listeners = json_array_size(v);
    v = json_object_get(j, "bridge");
    p.bridge = json_is_object(v) ? json_incref(v) : NULL;
    *ret = p;
    return 0;
}

int fleet_pong_parse(const char *body, size_t len, struct fleet_pong *ret, struct core_err *err)
{
    json_t *j;
    int r = load_object(body, len, "pong", &j, err);

    if (r < 0)
        return r;
    r = fleet_pong_from_json(j, ret, err);
    json_decref(j);
    return r;
}

void fleet_pong_fini(struct fleet_pong *p)
{
    if (!p)
        return;
    fleet_reply_fini(&p->last_result);
    json_decref(p->listeners);
    json_decref(p->bridge);
    p->listeners = NULL;
    p->bridge = NULL;
}
