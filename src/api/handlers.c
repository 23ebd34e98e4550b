#include "api/handlers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/assets.h"
#include "api/events.h"
#include "api/priority.h"
#include "core/events.h"
#include "core/fdbudget.h"
#include "core/revisions.h"
#include "fleet/bridge.h"
#include "sockserv-config.h"

#define LISTENERS_PATH "/api/v1/listeners"
#define REVISIONS_PATH "/api/v1/config/revisions"

/* Location of the listener resource: "/api/v1/listeners/ID". */
static void set_location(struct api_reply *r, const json_t *resource)
{
    const char *id = json_string_value(json_object_get(resource, "id"));

    if (id)
        (void)snprintf(r->location, sizeof(r->location), LISTENERS_PATH "/%s", id);
}

/* The registry's answer: the resource with status, or its error. Takes ownership of j. */
static void reply_result(struct api_reply *r, int code, json_t *j, unsigned status,
                         const struct core_err *err)
{
    if (code < 0) {
        json_decref(j);
        api_reply_error(r, code, err);
        return;
    }
    api_reply_json(r, status, j);
}

static void reply_no_listener(struct api_reply *r, const char *id)
{
    api_reply_problem(r, 404, NULL, "no listener '%s'", id);
}

/* {key: value}, taking ownership of value. */
static json_t *wrap(const char *key, json_t *value)
{
    json_t *j;

    if (!value)
        return NULL;
    j = json_object();
    if (!j || json_object_set_new(j, key, value) < 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A read's answer: 200 with {key: value} (value taken), or r's error (err may be NULL). */
static void reply_wrapped(struct api_reply *ret, int r, const char *key, json_t *value,
                          const struct core_err *err)
{
    if (r < 0) {
        json_decref(value);
        api_reply_error(ret, r, err);
        return;
    }
    api_reply_json(ret, 200, wrap(key, value));
}

/*
 * Prepares ch for the change req asks: its If-Match as the expected revision, its ?dry_run,
 * the API as who asks. Returns 0, or -EINVAL with ret answered (a bad dry_run, an If-Match of
 * too many tags); ch needs core_change_fini() only after 0.
 */
static int change_begin(const struct api_request *req, struct core_change *ch,
                        struct api_reply *ret)
{
    bool dry_run;

    *ch = (struct core_change){.iface = CORE_IFACE_API};
    if (api_dry_run_parse(api_request_query(req, "dry_run"), &dry_run) < 0) {
        api_reply_problem(ret, 400, "dry_run", "dry_run: must be true or false (or 1 or 0)");
        return -EINVAL;
    }
    if (api_if_match_parse(req->if_match, &ch->expect) < 0) {
        api_reply_problem(ret, 400, NULL, "If-Match: more than %d entity tags", CORE_EXPECT_MAX);
        return -EINVAL;
    }
    ch->dry_run = dry_run;
    ch->minimal = api_prefer_minimal(req->prefer);
    return 0;
}

/*
 * The answer to a change (see api/handlers.h): a dry run's diff; the body j (taken; NULL for
 * none) with status and the ETag of what it is, the whole configuration's (its revision) when
 * whole; or the failure code, a failed If-Match as 412 with the current ETag.
 */
static void reply_change(const struct api_request *req, struct api_reply *ret, int code,
                         const struct core_change *ch, json_t *j, unsigned status, bool whole,
                         const struct core_err *err)
{
    if (code == -ESTALE) {
        json_decref(j);
        api_reply_problem(ret, api_status_from_errno(code), err->field[0] ? err->field : NULL,
                          "precondition failed: If-Match: %.64s: %s",
                          req->if_match ? req->if_match : "",
                          err->msg[0] ? err->msg : "not the current ETag");
        if (whole)
            api_reply_config_etag(ret, ch->etag);
        else
            api_reply_etag(ret, ch->etag);
        return;
    }
    if (code < 0) {
        json_decref(j);
        api_reply_error(ret, code, err);
        /* The state not written is the daemon's fault, whatever the errno. */
        if (ch->persist_failed && ret->status < 500)
            ret->status = 500;
        (void)snprintf(ret->listener, sizeof(ret->listener), "%s", ch->listener);
        return;
    }
    if (ch->dry_run) {
        json_decref(j);
        api_reply_json(ret, 200,
                       json_pack("{s:b, s:I, s:o}", "dry_run", 1, "revision",
                                 (json_int_t)ch->revision, "diff",
                                 ch->diff ? json_incref(ch->diff) : json_array()));
        return;
    }
    if (j)
        api_reply_json(ret, status, j);
    else
        api_reply_empty(ret, status);
    if (whole && ch->minimal)
        ret->preference_applied = "return=minimal";
    if (whole)
        api_reply_config_etag(ret, ch->revision);
    else
        api_reply_etag(ret, ch->etag);
}

/*
 * One change as a handler runs it: call asks the registry (j: the body of the answer, or NULL;
 * *created when it made a listener), then the answer of reply_change() with status (201 and a
 * Location when a listener was created), the configuration's ETag when whole.
 */
struct change_op {
    int (*call)(const struct api_request *req, struct core_change *ch, json_t **j, bool *created,
                struct core_err *err);
    unsigned status;
    bool whole;
};

static void run_change(const struct api_request *req, struct api_reply *ret,
                       const struct change_op *op)
{
    struct core_err err = {0};
    struct core_change ch;
    json_t *j = NULL;
    bool created = false;
    int r;

    if (change_begin(req, &ch, ret) < 0)
        return;
    r = op->call(req, &ch, &j, &created, &err);
    reply_change(req, ret, r, &ch, j, created ? 201 : op->status, op->whole, &err);
    if (r >= 0 && !ch.dry_run && created)
        set_location(ret, ret->json);
    core_change_fini(&ch);
}

static int call_create(const struct api_request *req, struct core_change *ch, json_t **j,
                       bool *created, struct core_err *err)
{
    int r = core_registry_create(req->registry, req->body, ch, j, err);

    *created = r >= 0;
    return r;
}

static int call_replace(const struct api_request *req, struct core_change *ch, json_t **j,
                        bool *created, struct core_err *err)
{
    return core_registry_replace(req->registry, req->id, req->body, ch, j, created, err);
}

static int call_patch(const struct api_request *req, struct core_change *ch, json_t **j,
                      bool *created, struct core_err *err)
{
    (void)created;
    return core_registry_patch(req->registry, req->id, req->body, ch, j, err);
}

static int call_delete(const struct api_request *req, struct core_change *ch, json_t **j,
                       bool *created, struct core_err *err)
{
    (void)j;
    (void)created;
    return core_registry_delete(req->registry, req->id, ch, err);
}

static int call_start(const struct api_request *req, struct core_change *ch, json_t **j,
                      bool *created, struct core_err *err)
{
    (void)created;
    return core_registry_start(req->registry, req->id, ch, j, err);
}

static int call_stop(const struct api_request *req, struct core_change *ch, json_t **j,
                     bool *created, struct core_err *err)
{
    (void)created;
    return core_registry_stop(req->registry, req->id, ch, j, err);
}

static int call_config_replace(const struct api_request *req, struct core_change *ch, json_t **j,
                               bool *created, struct core_err *err)
{
    (void)created;
    return core_registry_config_replace(req->registry, req->body, ch, j, err);
}

void api_handle_listener_create(const struct api_request *req, struct api_reply *ret)
{
    static const struct change_op op = {call_create, 201, false};

    run_change(req, ret, &op);
}

void api_handle_listener_replace(const struct api_request *req, struct api_reply *ret)
{
    static const struct change_op op = {call_replace, 200, false};

    run_change(req, ret, &op);
}

void api_handle_listener_patch(const struct api_request *req, struct api_reply *ret)
{
    static const struct change_op op = {call_patch, 200, false};

    run_change(req, ret, &op);
}

void api_handle_listener_delete(const struct api_request *req, struct api_reply *ret)
{
    static const struct change_op op = {call_delete, 204, false};

    run_change(req, ret, &op);
}

void api_handle_listener_start(const struct api_request *req, struct api_reply *ret)
{
    static const struct change_op op = {call_start, 200, false};

    run_change(req, ret, &op);
}

void api_handle_listener_stop(const struct api_request *req, struct api_reply *ret)
{
    static const struct change_op op = {call_stop, 200, false};

    run_change(req, ret, &op);
}

void api_handle_config_replace(const struct api_request *req, struct api_reply *ret)
{
    static const struct change_op op = {call_config_replace, 200, true};

    run_change(req, ret, &op);
}

static void reply_no_revision(struct api_reply *r, uint64_t n)
{
    api_reply_problem(r, 404, NULL, "no revision %" PRIu64 " (the last %d are kept)", n,
                      CORE_REVISIONS_KEEP);
}

/*
 * The revision number {n} of a path under REVISIONS_PATH (the route table made sure it is
 * there). Returns 0 with *ret_n, or -EINVAL with ret answered (400 naming "n").
 */
static int revision_of_path(const struct api_request *req, uint64_t *ret_n, struct api_reply *ret)
{
    static const char prefix[] = REVISIONS_PATH "/";
    const char *seg = "";
    size_t len = 0;
    char text[24];

    if (req->n) {
        seg = req->n;
        len = strlen(seg);
    } else if (req->path && strncmp(req->path, prefix, sizeof(prefix) - 1) == 0) {
        seg = req->path + sizeof(prefix) - 1;
        len = strcspn(seg, "/");
    }
    if (len < sizeof(text)) {
        memcpy(text, seg, len);
        text[len] = '\0';
        if (api_revision_parse(text, ret_n) == 0)
            return 0;
    }
    api_reply_problem(ret, 400, "n", "n: '%.*s' is not a revision number (a whole number from 1)",
                      (int)(len < 32 ? len : 32), seg);
    return -EINVAL;
}

/* Health's "fds": the descriptor limit, the reserve no listener takes, the fds open now. */
static json_t *fds_json(void)
{
    struct core_fdbudget_info b;
    long open_fds = core_fdbudget_open_fds();

    core_fdbudget_get(&b);
    return json_pack("{s:I, s:I, s:I}", "limit", (json_int_t)b.limit, "reserve",
                     (json_int_t)b.reserve, "open", (json_int_t)(open_fds < 0 ? 0 : open_fds));
}

void api_handle_health(const struct api_request *req, struct api_reply *ret)
{
    char problem[256];
    bool damaged = core_registry_history_problem(req->registry, problem, sizeof(problem));
    json_t *history = damaged ? json_pack("{s:s, s:s}", "status", "damaged", "problem", problem)
                              : json_pack("{s:s}", "status", "ok");
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:o*}", "status", "ok", "version", SOCKSERV_VERSION,
                          "uptime_seconds", (json_int_t)req->uptime_seconds, "listeners",
                          (json_int_t)core_registry_count(req->registry), "history", history);

    if (j && req->priority &&
        json_object_set_new(j, "api_thread", api_priority_json(req->priority)) < 0) {
        json_decref(j);
        j = NULL;
    }
    if (j && json_object_set_new(j, "fds", fds_json()) < 0) {
        json_decref(j);
        j = NULL;
    }
    /* The broker's state is told, never judged: the data plane does not depend on it. */
    if (j && req->fleet &&
        json_object_set_new(j, "fleet", fleet_bridge_health_json(req->fleet)) < 0) {
        json_decref(j);
        j = NULL;
    }
    api_reply_json(ret, 200, j);
}

void api_handle_listeners_list(const struct api_request *req, struct api_reply *ret)
{
    json_t *list = NULL;
    int r = core_registry_list(req->registry, &list);

    reply_wrapped(ret, r, "listeners", list, NULL);
}

void api_handle_listener_get(const struct api_request *req, struct api_reply *ret)
{
    json_t *j = NULL;
    uint64_t etag = 0;
    int r = core_registry_get(req->registry, req->id, &j, &etag);

    if (r == -ENOENT) {
        reply_no_listener(ret, req->id);
        return;
    }
    reply_result(ret, r, j, 200, NULL);
    if (r >= 0)
        api_reply_etag(ret, etag);
}

void api_handle_config_get(const struct api_request *req, struct api_reply *ret)
{
    json_t *j = NULL;
    json_int_t revision;
    int r = core_registry_config(req->registry, &j);

    if (r < 0) {
        api_reply_error(ret, r, NULL);
        return;
    }
    revision = json_integer_value(json_object_get(j, "revision"));
    api_reply_json(ret, 200, j);
    api_reply_config_etag(ret, revision > 0 ? (uint64_t)revision : 0);
}

/* The request's "limit" (api_limit_parse()); -EINVAL after answering 400 naming it. */
static int limit_of(const struct api_request *req, size_t def, size_t max, size_t *limit,
                    struct api_reply *ret)
{
    if (api_limit_parse(api_request_query(req, "limit"), def, max, limit) == 0)
        return 0;
    api_reply_problem(ret, 400, "limit", "limit: must be a number from 1 to %zu", max);
    return -EINVAL;
}

void api_handle_revisions_list(const struct api_request *req, struct api_reply *ret)
{
    json_t *j = NULL;
    size_t limit;
    int r;

    if (limit_of(req, API_REVISIONS_LIMIT_DEFAULT, API_REVISIONS_LIMIT_MAX, &limit, ret) < 0)
        return;
    r = core_registry_revisions(req->registry, limit, &j);
    reply_result(ret, r, j, 200, NULL);
}

void api_handle_revision_get(const struct api_request *req, struct api_reply *ret)
{
    json_t *j = NULL;
    uint64_t n;
    int r;

    if (revision_of_path(req, &n, ret) < 0)
        return;
    r = core_registry_revision(req->registry, n, &j);
    if (r == -ENOENT) {
        reply_no_revision(ret, n);
        return;
    }
    reply_result(ret, r, j, 200, NULL);
}

void api_handle_revision_restore(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    struct core_change ch;
    json_t *j = NULL;
    uint64_t n;
    int r;

    if (revision_of_path(req, &n, ret) < 0 || change_begin(req, &ch, ret) < 0)
        return;
    r = core_registry_restore(req->registry, n, &ch, &j, &err);
    if (r == -ENOENT && !err.msg[0]) {
        json_decref(j);
        reply_no_revision(ret, n);
    } else {
        reply_change(req, ret, r, &ch, j, 200, true, &err);
    }
    core_change_fini(&ch);
}

void api_handle_listener_metrics(const struct api_request *req, struct api_reply *ret)
{
    json_t *j = NULL;
    int r = core_registry_metrics(req->registry, req->id, &j);

    if (r == -ENOENT) {
        reply_no_listener(ret, req->id);
        return;
    }
    reply_result(ret, r, j, 200, NULL);
}

void api_handle_metrics(const struct api_request *req, struct api_reply *ret)
{
    json_t *all = NULL;
    int r = core_registry_metrics_all(req->registry, NULL, NULL, &all);

    reply_wrapped(ret, r, "listeners", all, NULL);
}

void api_handle_listener_files(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    json_t *files = NULL;
    int r = core_registry_files(req->registry, req->id, &files, &err);

    if (r == -ENOTSUP || r == -ENOENT) {
        api_reply_problem(ret, 404, NULL, "%s", err.msg[0] ? err.msg : strerror(-r));
        return;
    }
    reply_wrapped(ret, r, "files", files, &err);
}

int api_file_open(const struct api_request *req, struct api_reply *ret, unsigned *ret_version,
                  int *ret_fd, uint64_t *ret_size)
{
    struct core_err err = {0};
    const char *version_text = api_request_query(req, "version");
    int r;

    if (api_version_parse(version_text, ret_version) < 0) {
        api_reply_problem(ret, 400, "version",
                          "version: must be a number of an older version (1 or more), or 0 for "
                          "the current copy");
        return -EINVAL;
    }
    r = core_registry_file_open(req->registry, req->id, req->name, *ret_version, ret_fd, ret_size,
                                &err);
    if (r == -ENOTSUP || r == -ENOENT)
        api_reply_problem(ret, 404, NULL, "%s", err.msg[0] ? err.msg : strerror(-r));
    else if (r == -EINVAL)
        api_reply_problem(ret, 400, "name", "%s", err.msg[0] ? err.msg : "not a valid file name");
    else if (r < 0)
        api_reply_error(ret, r, &err);
    return r;
}

void api_handle_listener_file_get(const struct api_request *req, struct api_reply *ret)
{
    unsigned version;
    uint64_t size = 0;
    int fd = -1;

    if (api_file_open(req, ret, &version, &fd, &size) < 0)
        return;
    api_reply_file(ret, fd, size, req->name);
}

void api_handle_events(const struct api_request *req, struct api_reply *ret)
{
    struct api_stream *s = NULL;
    int r;

    if (!req->events) {
        api_reply_problem(ret, 503, NULL, "event stream unavailable");
        return;
    }
    r = api_stream_open(req->events, req->last_event_id, &s);
    if (r == -ESHUTDOWN) {
        api_reply_problem(ret, 503, NULL, "event stream unavailable: the daemon is stopping");
        return;
    }
    if (r < 0) {
        api_reply_error(ret, r, NULL);
        return;
    }
    api_reply_stream(ret, s);
}

void api_handle_events_recent(const struct api_request *req, struct api_reply *ret)
{
    json_t *j = NULL;
    size_t limit;
    int r;

    if (limit_of(req, API_EVENTS_RECENT_DEFAULT, CORE_EVENTS_RECENT, &limit, ret) < 0)
        return;
    if (!req->events) {
        api_reply_problem(ret, 503, NULL, "event stream unavailable");
        return;
    }
    r = api_events_recent(req->events, limit, &j);
    if (r == 0 && !(j = json_pack("{s:o}", "events", j)))
        r = -ENOMEM;
    reply_result(ret, r, j, 200, NULL);
}

void api_handle_asset(const struct api_request *req, struct api_reply *ret)
{
    const struct api_asset *a = api_asset_find(req->path);

    if (!a) {
        api_reply_problem(ret, 404, NULL, "no such resource: %s", req->path);
        return;
    }
    api_reply_asset(ret, a, req->if_none_match && api_etag_matches(req->if_none_match, a->etag));
}

const struct api_asset *api_asset_find(const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < api_assets_count; i++)
        if (strcmp(api_assets[i].path, path) == 0)
            return &api_assets[i];
    return NULL;
}

const char *api_request_query(const struct api_request *req, const char *key)
{
    return req->query ? req->query(req, key) : NULL;
}

int api_version_parse(const char *text, unsigned *ret)
{
    uint64_t v = 0;

    if (!text) {
        *ret = 0;
        return 0;
    }
    if (*text == '\0')
        return -EINVAL;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -EINVAL;
    }
    *ret = (unsigned)v;
    return 0;
}

int api_dry_run_parse(const char *text, bool *ret)
{
    if (!text || strcmp(text, "false") == 0 || strcmp(text, "0") == 0) {
        *ret = false;
        return 0;
    }
    if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) {
        *ret = true;
        return 0;
    }
    return -EINVAL;
}

/* text as a whole number of decimal digits only, at most max. Returns 0 or -EINVAL. */
static int parse_digits(const char *text, uint64_t max, uint64_t *ret)
{
    uint64_t v = 0;

    if (*text == '\0')
        return -EINVAL;
    for (const char *p = text; *p; p++) {
        unsigned d = (unsigned)(*p - '0');

        if (*p < '0' || *p > '9' || v > (max - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

int api_limit_parse(const char *text, size_t def, size_t max, size_t *ret)
{
    uint64_t v;

    if (!text) {
        *ret = def;
        return 0;
    }
    if (parse_digits(text, max, &v) < 0 || v == 0)
        return -EINVAL;
    *ret = (size_t)v;
    return 0;
}

int api_revision_parse(const char *text, uint64_t *ret)
{
    uint64_t v;

    if (parse_digits(text, UINT64_MAX, &v) < 0 || v == 0)
        return -EINVAL;
    *ret = v;
    return 0;
}

int api_body_parse(const char *data, size_t len, json_t **ret, struct core_err *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);

    if (!j) {
        (void)core_err_set(err, -EINVAL, NULL,
                           "malformed JSON: %s (line %d, column %d, position %d)", jerr.text,
                           jerr.line, jerr.column, jerr.position);
        return -EINVAL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        (void)core_err_set(err, -EINVAL, NULL, "the body must be a JSON object");
        return -EINVAL;
    }
    *ret = j;
    return 0;
}

int api_etag_next(const char **p, struct api_etag *ret)
{
    const char *s = *p + strspn(*p, " \t,");
    const char *close;
    bool weak = false;

    if (*s == '\0') {
        *p = s;
        return 0;
    }
    if (*s == '*') {
        *ret = (struct api_etag){.star = true};
        *p = s + 1;
        return 1;
    }
    if (strncmp(s, "W/", 2) == 0) {
        weak = true;
        s += 2;
    }
    if (*s != '"')
        return -EINVAL;
    close = strchr(s + 1, '"');
    if (!close)
        return -EINVAL;
    *ret = (struct api_etag){.weak = weak, .opaque = s + 1, .len = (size_t)(close - s - 1)};
    *p = close + 1;
    return 1;
}

bool api_etag_matches(const char *if_none_match, const char *etag)
{
    size_t etag_len = strlen(etag);
    const char *p = if_none_match;
    struct api_etag t;

    /* etag is quoted: compare what is between its quotes. */
    if (etag_len < 2)
        return false;
    while (api_etag_next(&p, &t) > 0) {
        if (t.star)
            return true;
        if (t.len == etag_len - 2 && memcmp(t.opaque, etag + 1, t.len) == 0)
            return true;
    }
    return false;
}

/* The revision of opaque-tag "rN" (N decimal, no leading zero, fits 64 bits). 0 or -EINVAL. */
static int revision_of_tag(const char *opaque, size_t len, uint64_t *ret)
{
    char text[24];

    if (len < 2 || len > sizeof(text) || opaque[0] != 'r')
        return -EINVAL;
    memcpy(text, opaque + 1, len - 1);
    text[len - 1] = '\0';
    if (strcmp(text, "0") == 0) {
        *ret = 0;
        return 0;
    }
    if (text[0] == '0')
        return -EINVAL;
    return api_revision_parse(text, ret);
}

int api_if_match_parse(const char *value, struct core_expect *ret)
{
    struct core_expect e = {.kind = CORE_EXPECT_ONE_OF};
    const char *p = value;
    struct api_etag t;
    int r;

    if (!value) {
        *ret = (struct core_expect){.kind = CORE_EXPECT_NONE};
        return 0;
    }
    p += strspn(p, " \t");
    if (*p == '*' && p[1 + strspn(p + 1, " \t")] == '\0') {
        *ret = (struct core_expect){.kind = CORE_EXPECT_EXISTS};
        return 0;
    }
    while ((r = api_etag_next(&p, &t)) > 0) {
        uint64_t rev;

        if (t.star) {
            r = -EINVAL; /* "*" is the whole value or not at all */
            break;
        }
        if (t.weak || revision_of_tag(t.opaque, t.len, &rev) < 0)
            continue; /* never the current version of a configuration */
        if (e.n == CORE_EXPECT_MAX)
            return -E2BIG;
        e.revisions[e.n++] = rev;
    }
    if (r < 0)
        e.n = 0; /* not a list of entity tags: never met */
    *ret = e;
    return 0;
}

bool api_prefer_minimal(const char *value)
{
    static const char ows[] = " \t";

    for (const char *p = value; p && *p; p += *p == ',') {
        const char *end = p + strcspn(p, ","), *q = p + strspn(p, ows);
        size_t len;

        p = end;
        if (strncasecmp(q, "return", 6) != 0)
            continue;
        q += 6;
        q += strspn(q, ows);
        if (q >= end || *q != '=')
            continue;
        q += 1 + strspn(q + 1, ows);
        len = strcspn(q, ";, \t");
        if ((len == 7 && strncmp(q, "minimal", 7) == 0) ||
            (len == 9 && strncmp(q, "\"minimal\"", 9) == 0))
            return true;
    }
    return false;
}
