#include "api/routes.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/assets.h"
#include "api/fleet.h"
#include "api/services.h"
#include "core/text.h"

#define PATTERN_ASSET "{asset}"

/* The placeholder segments of patterns, and where each one's capture goes. */
static const struct {
    const char *segment;
    size_t offset; /* of its struct api_segment in struct api_captures */
} placeholders[] = {
    {"{id}", offsetof(struct api_captures, id)},
    {"{name}", offsetof(struct api_captures, name)},
    {"{n}", offsetof(struct api_captures, n)},
};

static const struct api_route routes[] = {
    {API_METHOD_GET, "/api/v1/health", api_handle_health, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/listeners", api_handle_listeners_list, API_BODY_NONE},
    {API_METHOD_POST, "/api/v1/listeners", api_handle_listener_create, API_BODY_JSON},
    {API_METHOD_GET, "/api/v1/listeners/{id}", api_handle_listener_get, API_BODY_NONE},
    {API_METHOD_PUT, "/api/v1/listeners/{id}", api_handle_listener_replace, API_BODY_JSON},
    {API_METHOD_PATCH, "/api/v1/listeners/{id}", api_handle_listener_patch, API_BODY_MERGE_PATCH},
    {API_METHOD_DELETE, "/api/v1/listeners/{id}", api_handle_listener_delete, API_BODY_NONE},
    {API_METHOD_POST, "/api/v1/listeners/{id}/start", api_handle_listener_start, API_BODY_NONE},
    {API_METHOD_POST, "/api/v1/listeners/{id}/stop", api_handle_listener_stop, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/listeners/{id}/metrics", api_handle_listener_metrics, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/listeners/{id}/files", api_handle_listener_files, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/listeners/{id}/files/{name}", api_handle_listener_file_get,
     API_BODY_NONE},
    {API_METHOD_PUT, "/api/v1/listeners/{id}/files/{name}", api_handle_listener_file_put,
     API_BODY_OCTETS},
    {API_METHOD_POST, "/api/v1/listeners/{id}/files/{name}/ticket", api_handle_listener_file_ticket,
     API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/config", api_handle_config_get, API_BODY_NONE},
    {API_METHOD_PUT, "/api/v1/config", api_handle_config_replace, API_BODY_JSON},
    {API_METHOD_GET, "/api/v1/config/revisions", api_handle_revisions_list, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/config/revisions/{n}", api_handle_revision_get, API_BODY_NONE},
    {API_METHOD_POST, "/api/v1/config/revisions/{n}/restore", api_handle_revision_restore,
     API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/services", api_handle_services_list, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/services/{name}", api_handle_service_get, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/metrics", api_handle_metrics, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/events", api_handle_events, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/events/recent", api_handle_events_recent, API_BODY_NONE},
    {API_METHOD_GET, "/api/v1/fleet", api_handle_fleet, API_BODY_NONE},
    {API_METHOD_GET, "/metrics", api_handle_prometheus, API_BODY_NONE},
    {API_METHOD_GET, PATTERN_ASSET, api_handle_asset, API_BODY_NONE},
};

const struct api_route *api_routes(size_t *ret_n)
{
    *ret_n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

static const char *const method_names[API_METHOD_COUNT] = {
    [API_METHOD_GET] = "GET", [API_METHOD_HEAD] = "HEAD",   [API_METHOD_POST] = "POST",
    [API_METHOD_PUT] = "PUT", [API_METHOD_PATCH] = "PATCH", [API_METHOD_DELETE] = "DELETE",
    [API_METHOD_OTHER] = "",
};

enum api_method api_method_from_name(const char *name)
{
    for (unsigned m = 0; m < API_METHOD_OTHER; m++)
        if (strcmp(name, method_names[m]) == 0)
            return (enum api_method)m;
    return API_METHOD_OTHER;
}

const char *api_method_name(enum api_method m)
{
    return (unsigned)m < API_METHOD_COUNT ? method_names[m] : "";
}

/* The capture a placeholder segment of a pattern goes to, or NULL for a literal segment. */
static struct api_segment *placeholder(struct api_captures *c, const char *seg, size_t len)
{
    for (size_t i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++)
        if (strlen(placeholders[i].segment) == len &&
            strncmp(placeholders[i].segment, seg, len) == 0)
            return (struct api_segment *)((char *)c + placeholders[i].offset);
    return NULL;
}

/*
 * The byte at raw[*i] of a percent-encoded text len bytes long, decoded, and *i moved past it:
 * "%XX" is one byte; a '%' not followed by two hex digits stands for itself.
 */
static unsigned char decode_next(const char *raw, size_t len, size_t *i)
{
    if (raw[*i] == '%' && *i + 2 < len) {
        int hi = core_hex_value(raw[*i + 1]), lo = core_hex_value(raw[*i + 2]);

        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    return (unsigned char)raw[(*i)++];
}

/* Whether the percent-encoded segment raw (len bytes) decodes to literal (lit_len bytes). */
static bool segment_equals(const char *raw, size_t len, const char *lit, size_t lit_len)
{
    size_t i = 0, j = 0;

    while (i < len) {
        if (j == lit_len || decode_next(raw, len, &i) != (unsigned char)lit[j])
            return false;
        j++;
    }
    return j == lit_len;
}

/*
 * Whether path (percent-encoded) matches pattern segment by segment: a segment is decoded after
 * the path is split at its '/', so an encoded one ("%2F") belongs to its segment. The
 * placeholders' segments go to *ret as received.
 */
static bool pattern_matches(const char *pattern, const char *path, struct api_captures *ret)
{
    struct api_captures c = {0};

    if (strcmp(pattern, PATTERN_ASSET) == 0) {
        char *decoded = NULL;
        bool found;

        /* The embedded files' names hold no '/' to encode: the whole path is decoded. */
        if (api_segment_decode(path, strlen(path), &decoded) < 0)
            return false;
        found = api_asset_find(decoded) != NULL;
        free(decoded);
        if (!found)
            return false;
        *ret = c;
        return true;
    }
    if (*pattern != '/' || *path != '/')
        return false;
    while (*pattern == '/' && *path == '/') {
        struct api_segment *cap;
        size_t plen, slen;

        pattern++;
        path++;
        plen = strcspn(pattern, "/");
        slen = strcspn(path, "/");
        cap = placeholder(&c, pattern, plen);
        if (cap) {
            if (slen == 0)
                return false;
            cap->at = path;
            cap->len = slen;
        } else if (!segment_equals(path, slen, pattern, plen)) {
            return false;
        }
        pattern += plen;
        path += slen;
    }
    if (*pattern != '\0' || *path != '\0')
        return false;
    *ret = c;
    return true;
}

int api_segment_decode(const char *raw, size_t len, char **ret)
{
    char *out = malloc(len + 1);
    size_t i = 0, n = 0;

    if (!out)
        return -ENOMEM;
    while (i < len) {
        unsigned char b = decode_next(raw, len, &i);

        if (b == 0) {
            free(out);
            return -EINVAL;
        }
        out[n++] = (char)b;
    }
    out[n] = '\0';
    *ret = out;
    return 0;
}

bool api_uri_has_nul(const char *uri)
{
    size_t len = strlen(uri);

    for (size_t i = 0; i < len;)
        if (decode_next(uri, len, &i) == 0)
            return true;
    return false;
}

int api_route_match(const char *method, const char *path, struct api_match *ret)
{
    enum api_method m = api_method_from_name(method);
    enum api_method want = m == API_METHOD_HEAD ? API_METHOD_GET : m;
    struct api_match found = {0};
    bool path_known = false;

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        struct api_captures captures;

        if (!pattern_matches(routes[i].pattern, path, &captures))
            continue;
        path_known = true;
        found.allow |= API_METHOD_BIT(routes[i].method);
        if (routes[i].method == API_METHOD_GET)
            found.allow |= API_METHOD_BIT(API_METHOD_HEAD);
        if (!found.route && routes[i].method == want) {
            found.route = &routes[i];
            found.captures = captures;
        }
    }
    if (!path_known)
        return -ENOENT;
    *ret = found;
    return found.route ? 0 : -EOPNOTSUPP;
}

int api_methods_format(unsigned mask, char *buf, size_t len)
{
    size_t used = 0;

    if (len == 0)
        return -ENOSPC;
    buf[0] = '\0';
    for (unsigned m = 0; m < API_METHOD_OTHER; m++) {
        int n;

        if (!(mask & API_METHOD_BIT(m)))
            continue;
        n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", method_names[m]);
        if (n < 0 || (size_t)n >= len - used) {
            buf[0] = '\0';
            return -ENOSPC;
        }
        used += (size_t)n;
    }
    return 0;
}

/* Whether the media type of a Content-Type value (before ';', blanks trimmed) is type. */
static bool media_type_is(const char *content_type, const char *type)
{
    const char *p = content_type;
    size_t n;

    while (*p == ' ' || *p == '\t')
        p++;
    n = strcspn(p, ";");
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return n == strlen(type) && strncasecmp(p, type, n) == 0;
}

bool api_body_type_is_accepted(enum api_body body, const char *content_type)
{
    switch (body) {
    case API_BODY_NONE:
    case API_BODY_OCTETS:
        return true;
    case API_BODY_JSON:
        return content_type && media_type_is(content_type, "application/json");
    case API_BODY_MERGE_PATCH:
        return content_type && (media_type_is(content_type, "application/json") ||
                                media_type_is(content_type, "application/merge-patch+json"));
    case API_BODY_COUNT:
        break;
    }
    return false;
}

int api_body_length_check(const char *content_length, size_t body_max)
{
    unsigned long long n;
    char *end;

    if (!content_length)
        return 0;
    while (*content_length == ' ' || *content_length == '\t')
        content_length++;
    if (*content_length < '0' || *content_length > '9')
        return -EINVAL;
    errno = 0;
    n = strtoull(content_length, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE || n > body_max)
        return -EFBIG;
    return 0;
}
