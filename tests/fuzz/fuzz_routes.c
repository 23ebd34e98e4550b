/*
 * The control API's request routing (api/routes.h) and what parses a request's parts on the way
 * to a handler: the ids and names captured from the path, the "version" query parameter, the
 * Content-Type and Content-Length checks, If-None-Match, the Allow header.
 *
 * Input: lines "METHOD URL", then optionally Content-Type, Content-Length and If-None-Match
 * values. The URL is taken apart as libmicrohttpd does before calling the server: the path
 * before '?', percent-decoded with MHD_http_unescape() (so "%2F" is a '/' and "%00" ends the
 * path), and the query's key=value pairs, each percent-decoded.
 *
 * Properties: matching answers 0, -ENOENT or -EOPNOTSUPP, and whether a path has routes does
 * not depend on the method; a match is for the method asked (HEAD runs GET) and its captures,
 * put back into the route's pattern, give the path again; every method the path allows
 * matches; the Allow value lists exactly those methods; the version parser agrees with its
 * documented rule; Content-Length is refused when over the limit and only then; a body type
 * accepted as JSON is accepted as a merge patch too.
 */

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "api/assets.h"
#include "api/handlers.h"
#include "api/reply.h"
#include "api/routes.h"
#include "core/config.h"
#include "svc/backup_proto.h"

#include "fuzz.h"

#define BODY_MAX (1024 * 1024) /* the server's default */

/* Line i (0-based) of text as a new string (the rest of the text for the last one wanted). */
static char *line_dup(const uint8_t *data, size_t size, int i, bool rest)
{
    const uint8_t *p = data, *end = data + size, *nl;
    char *s;

    for (; i > 0; i--) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return NULL;
        p = nl + 1;
    }
    nl = rest ? NULL : memchr(p, '\n', (size_t)(end - p));
    s = malloc((size_t)((nl ? nl : end) - p) + 1);
    FUZZ_CHECK(s);
    memcpy(s, p, (size_t)((nl ? nl : end) - p));
    s[(nl ? nl : end) - p] = '\0';
    return s;
}

static bool route_is_in_table(const struct api_route *r)
{
    size_t n;
    const struct api_route *routes = api_routes(&n);

    return r >= routes && r < routes + n;
}

static bool segment_is_in(const struct api_segment *s, const char *path)
{
    size_t len = strlen(path);

    return s->at >= path && s->at + s->len <= path + len;
}

/* The route's pattern with its placeholders replaced by the captures equals path. */
static void check_captures(const struct api_match *m, const char *path)
{
    const char *pattern = m->route->pattern;
    char rebuilt[8192];
    size_t n = 0;

    if (strcmp(pattern, "{asset}") == 0) {
        FUZZ_CHECK(api_asset_find(path) != NULL);
        FUZZ_CHECK(!m->captures.id.at && !m->captures.name.at);
        return;
    }
    for (const char *p = pattern; *p;) {
        const struct api_segment *s = NULL;
        size_t skip = 1;

        if (strncmp(p, "{id}", 4) == 0) {
            s = &m->captures.id;
            skip = 4;
        } else if (strncmp(p, "{name}", 6) == 0) {
            s = &m->captures.name;
            skip = 6;
        }
        if (s) {
            FUZZ_CHECK(s->at && s->len > 0 && segment_is_in(s, path));
            FUZZ_CHECK(memchr(s->at, '/', s->len) == NULL);
            if (n + s->len >= sizeof(rebuilt))
                return; /* longer than any check needs */
            memcpy(rebuilt + n, s->at, s->len);
            n += s->len;
        } else {
            if (n + 1 >= sizeof(rebuilt))
                return;
            rebuilt[n++] = *p;
        }
        p += skip;
    }
    rebuilt[n] = '\0';
    FUZZ_CHECK(strcmp(rebuilt, path) == 0);
    if (!strstr(pattern, "{id}"))
        FUZZ_CHECK(!m->captures.id.at);
    if (!strstr(pattern, "{name}"))
        FUZZ_CHECK(!m->captures.name.at);
}

/* The Allow value of mask: exactly its methods, in enum order, or -ENOSPC in a short buffer. */
static void check_allow(unsigned mask)
{
    char buf[API_ALLOW_MAX], small[8];
    char expect[API_ALLOW_MAX] = "";

    for (unsigned m = 0; m < API_METHOD_OTHER; m++) {
        if (!(mask & API_METHOD_BIT(m)))
            continue;
        if (expect[0])
            strcat(expect, ", ");
        strcat(expect, api_method_name((enum api_method)m));
    }
    FUZZ_CHECK(api_methods_format(mask, buf, sizeof(buf)) == 0);
    FUZZ_CHECK(strcmp(buf, expect) == 0);
    if (strlen(expect) >= sizeof(small)) {
        FUZZ_CHECK(api_methods_format(mask, small, sizeof(small)) == -ENOSPC);
        FUZZ_CHECK(small[0] == '\0');
    }
}

static void check_route(const char *method, const char *path)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    enum api_method asked = api_method_from_name(method);
    struct api_match m;
    int r;

    memset(&m, 0, sizeof(m));
    r = api_route_match(method, path, &m);
    FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EOPNOTSUPP);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        struct api_match other;
        int o = api_route_match(methods[i], path, &other);

        FUZZ_CHECK((o == -ENOENT) == (r == -ENOENT));
        if (o != -ENOENT)
            FUZZ_CHECK(o == 0 || o == -EOPNOTSUPP);
        if (r != -ENOENT) {
            FUZZ_CHECK(other.allow == m.allow);
            FUZZ_CHECK((o == 0) == !!(m.allow & API_METHOD_BIT(api_method_from_name(methods[i]))));
        }
    }
    if (r == -ENOENT)
        return;
    FUZZ_CHECK(m.allow != 0 && !(m.allow & API_METHOD_BIT(API_METHOD_OTHER)));
    FUZZ_CHECK(!(m.allow & API_METHOD_BIT(API_METHOD_GET)) ==
               !(m.allow & API_METHOD_BIT(API_METHOD_HEAD)));
    check_allow(m.allow);
    if (r == -EOPNOTSUPP) {
        FUZZ_CHECK(!m.route);
        FUZZ_CHECK(asked == API_METHOD_OTHER || !(m.allow & API_METHOD_BIT(asked)));
        return;
    }
    FUZZ_CHECK(m.route && route_is_in_table(m.route));
    FUZZ_CHECK(asked != API_METHOD_OTHER && (m.allow & API_METHOD_BIT(asked)));
    FUZZ_CHECK(m.route->method == (asked == API_METHOD_HEAD ? API_METHOD_GET : asked));
    FUZZ_CHECK(m.route->body < API_BODY_COUNT);
    check_captures(&m, path);

    /* What the handlers do with the captures next: copy them, check them. */
    if (m.captures.id.at) {
        char *id = strndup(m.captures.id.at, m.captures.id.len);

        FUZZ_CHECK(id);
        (void)core_id_is_valid(id);
        free(id);
    }
    if (m.captures.name.at) {
        char *name = strndup(m.captures.name.at, m.captures.name.len);

        FUZZ_CHECK(name);
        (void)svc_backup_name_check(name, strlen(name), NULL);
        free(name);
    }
}

/* The documented rule of api_version_parse(), written independently. */
static void check_version(const char *text)
{
    unsigned got = 12345;
    int r = api_version_parse(text, &got);
    bool digits = text[0] != '\0';
    unsigned long long v = 0;

    for (const char *p = text; *p && digits; p++) {
        digits = *p >= '0' && *p <= '9';
        if (digits && v <= UINT32_MAX)
            v = v * 10 + (unsigned long long)(*p - '0');
    }
    if (!digits || v > UINT32_MAX) {
        FUZZ_CHECK(r == -EINVAL);
        FUZZ_CHECK(got == 12345);
        return;
    }
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(got == v);
}

/* Splits the query as libmicrohttpd does (key[=value] pairs joined by '&', each decoded) and
 * parses the first "version", as the file download does. */
static void check_query(char *query)
{
    bool seen = false;
    unsigned v = 7;

    FUZZ_CHECK(api_version_parse(NULL, &v) == 0 && v == 0);
    for (char *pair = query; pair && !seen;) {
        char *next = strchr(pair, '&');
        char *eq;

        if (next)
            *next++ = '\0';
        eq = strchr(pair, '=');
        if (eq)
            *eq++ = '\0';
        (void)MHD_http_unescape(pair);
        if (strcmp(pair, "version") == 0) {
            if (eq)
                (void)MHD_http_unescape(eq);
            check_version(eq ? eq : "");
            seen = true;
        }
        pair = next;
    }
}

static void check_content_length(const char *clen)
{
    const char *p = clen;
    unsigned long long v = 0;
    bool overflow = false;
    size_t digits;
    int r = api_body_length_check(clen, BODY_MAX);

    FUZZ_CHECK(r == 0 || r == -EFBIG || r == -EINVAL);
    p += strspn(p, " \t");
    digits = strspn(p, "0123456789");
    if (digits == 0 || p[digits + strspn(p + digits, " \t")] != '\0') {
        FUZZ_CHECK(r == -EINVAL);
        return;
    }
    for (size_t i = 0; i < digits; i++) {
        if (v > (ULLONG_MAX - 9) / 10)
            overflow = true;
        else
            v = v * 10 + (unsigned long long)(p[i] - '0');
    }
    FUZZ_CHECK(r == (overflow || v > BODY_MAX ? -EFBIG : 0));
}

static void check_headers(const char *ctype, const char *clen, const char *inm)
{
    if (ctype) {
        FUZZ_CHECK(api_body_type_is_accepted(API_BODY_NONE, ctype));
        if (api_body_type_is_accepted(API_BODY_JSON, ctype))
            FUZZ_CHECK(api_body_type_is_accepted(API_BODY_MERGE_PATCH, ctype));
    }
    if (clen)
        check_content_length(clen);
    if (inm) {
        for (size_t i = 0; i < api_assets_count; i++)
            (void)api_etag_matches(inm, api_assets[i].etag);
        if (strspn(inm, " \t,") == strlen(inm))
            FUZZ_CHECK(!api_etag_matches(inm, "\"x\""));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *request = line_dup(data, size, 0, false);
    char *ctype = line_dup(data, size, 1, false);
    char *clen = line_dup(data, size, 2, false);
    char *inm = line_dup(data, size, 3, true);
    char *url = strchr(request, ' ');
    char *query;

    if (url) {
        *url++ = '\0';
        query = strchr(url, '?');
        if (query)
            *query++ = '\0';
        (void)MHD_http_unescape(url);
        check_route(request, url);
        if (query)
            check_query(query);
    }
    check_headers(ctype, clen, inm);
    free(inm);
    free(clen);
    free(ctype);
    free(request);
    return 0;
}
