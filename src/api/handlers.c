#include "api/handlers.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/assets.h"
#include "api/events.h"
#include "sockserv-config.h"

#define LISTENERS_PATH "/api/v1/listeners"

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

void api_handle_health(const struct api_request *req, struct api_reply *ret)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:I}", "status", "ok", "version", SOCKSERV_VERSION,
                          "uptime_seconds", (json_int_t)req->uptime_seconds, "listeners",
                          (json_int_t)core_registry_count(req->registry));

    api_reply_json(ret, 200, j);
}

void api_handle_listeners_list(const struct api_request *req, struct api_reply *ret)
{
    json_t *list = NULL;
    int r = core_registry_list(req->registry, &list);

    if (r < 0) {
        api_reply_error(ret, r, NULL);
        return;
    }
    api_reply_json(ret, 200, wrap("listeners", list));
}

void api_handle_listener_create(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    json_t *j = NULL;
    int r = core_registry_create(req->registry, req->body, &j, &err);

    reply_result(ret, r, j, 201, &err);
    if (r >= 0)
        set_location(ret, j);
}

void api_handle_listener_get(const struct api_request *req, struct api_reply *ret)
{
    json_t *j = NULL;
    int r = core_registry_get(req->registry, req->id, &j);

    if (r == -ENOENT) {
        reply_no_listener(ret, req->id);
        return;
    }
    reply_result(ret, r, j, 200, NULL);
}

void api_handle_listener_replace(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    json_t *j = NULL;
    bool created = false;
    int r = core_registry_replace(req->registry, req->id, req->body, &j, &created, &err);

    reply_result(ret, r, j, created ? 201 : 200, &err);
    if (r >= 0 && created)
        set_location(ret, j);
}

void api_handle_listener_patch(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    json_t *j = NULL;
    int r = core_registry_patch(req->registry, req->id, req->body, &j, &err);

    reply_result(ret, r, j, 200, &err);
}

void api_handle_listener_delete(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    int r = core_registry_delete(req->registry, req->id, &err);

    if (r < 0) {
        api_reply_error(ret, r, &err);
        return;
    }
    api_reply_empty(ret, 204);
}

void api_handle_listener_start(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    json_t *j = NULL;
    int r = core_registry_start(req->registry, req->id, &j, &err);

    reply_result(ret, r, j, 200, &err);
}

void api_handle_listener_stop(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    json_t *j = NULL;
    int r = core_registry_stop(req->registry, req->id, &j, &err);

    reply_result(ret, r, j, 200, &err);
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
    int r = core_registry_metrics_all(req->registry, &all);

    if (r < 0) {
        api_reply_error(ret, r, NULL);
        return;
    }
    api_reply_json(ret, 200, wrap("listeners", all));
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
    if (r < 0) {
        api_reply_error(ret, r, &err);
        return;
    }
    api_reply_json(ret, 200, wrap("files", files));
}

void api_handle_listener_file_get(const struct api_request *req, struct api_reply *ret)
{
    struct core_err err = {0};
    const char *version_text = api_request_query(req, "version");
    unsigned version;
    uint64_t size = 0;
    int fd = -1, r;

    if (api_version_parse(version_text, &version) < 0) {
        api_reply_problem(ret, 400, "version",
                          "version: must be a number of an older version (1 or more), or 0 for "
                          "the current copy");
        return;
    }
    r = core_registry_file_open(req->registry, req->id, req->name, version, &fd, &size, &err);
    if (r == -ENOTSUP || r == -ENOENT) {
        api_reply_problem(ret, 404, NULL, "%s", err.msg[0] ? err.msg : strerror(-r));
        return;
    }
    if (r == -EINVAL) {
        api_reply_problem(ret, 400, "name", "%s", err.msg[0] ? err.msg : "not a valid file name");
        return;
    }
    if (r < 0) {
        api_reply_error(ret, r, &err);
        return;
    }
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

bool api_etag_matches(const char *if_none_match, const char *etag)
{
    const char *p = if_none_match;
    size_t etag_len = strlen(etag);

    for (;;) {
        const char *tag;
        const char *close;

        p += strspn(p, " \t,");
        if (*p == '\0')
            return false;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p != '"')
            return false; /* not an entity tag: the header is malformed */
        tag = p;
        close = strchr(p + 1, '"');
        if (!close)
            return false;
        if ((size_t)(close + 1 - tag) == etag_len && strncmp(tag, etag, etag_len) == 0)
            return true;
        p = close + 1;
    }
}
