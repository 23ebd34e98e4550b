/*
 * The control API's request routing (api/routes.h) and what parses a request's parts on the way
 * to a handler: the ids and names captured from the path, the "version" query parameter, the
 * Content-Type and Content-Length checks, If-None-Match, the Allow header.
 *
 * Input: lines "METHOD URL", then optionally Content-Type, Content-Length and If-None-Match
 * values. The URL is taken apart as the server does: the path before '?', as received
 * (percent-encoded: the routes split it at '/' and decode each segment after), and the query's
 * key=value pairs, each percent-decoded as libmicrohttpd does.
 *
 * Properties: matching answers 0, -ENOENT or -EOPNOTSUPP, and whether a path has routes does
 * not depend on the method; a match is for the method asked (HEAD runs GET) and its captures,
 * put back into the route's pattern, give the path again; every method the path allows
 * matches; a captured segment decodes unless it holds an encoded NUL, and then only when the
 * whole target would have been refused for one; the Allow value lists exactly those methods; the
 * version parser agrees with its documented rule; Content-Length is refused when over the limit and
 * only then; a body type accepted as JSON is accepted as a merge patch too.
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

/* The capture a placeholder segment of a pattern goes to, or NULL for a literal one. */
static const struct api_segment *capture_of(const struct api_match *m, const char *seg, size_t len)
{
    if (len == 4 && strncmp(seg, "{id}", 4) == 0)
        return &m->captures.id;
    if (len == 6 && strncmp(seg, "{name}", 6) == 0)
        return &m->captures.name;
    if (len == 3 && strncmp(seg, "{n}", 3) == 0)
        return &m->captures.n;
    return NULL;
}

/*
 * Segment by segment, the route's pattern and path agree: a placeholder's capture is the path's
 * segment itself (non-empty, as received), a literal one is the path's segment decoded.
 */
static void check_captures(const struct api_match *m, const char *path)
{
    const char *q = m->route->pattern, *p = path;
    unsigned placeholders = 0;

    if (strcmp(q, "{asset}") == 0) {
        char *decoded = NULL;

        FUZZ_CHECK(api_segment_decode(path, strlen(path), &decoded) == 0);
        FUZZ_CHECK(api_asset_find(decoded) != NULL);
        free(decoded);
        FUZZ_CHECK(!m->captures.id.at && !m->captures.name.at && !m->captures.n.at);
        return;
    }
    while (*q == '/') {
        const struct api_segment *s;
        size_t qlen, plen;

        FUZZ_CHECK(*p == '/');
        q++;
        p++;
        qlen = strcspn(q, "/");
        plen = strcspn(p, "/");
        s = capture_of(m, q, qlen);
        if (s) {
            FUZZ_CHECK(s->at == p && s->len == plen && plen > 0);
            placeholders++;
        } else {
            char *decoded = NULL;

            FUZZ_CHECK(api_segment_decode(p, plen, &decoded) == 0);
            FUZZ_CHECK(strlen(decoded) == qlen && memcmp(decoded, q, qlen) == 0);
            free(decoded);
        }
        q += qlen;
        p += plen;
    }
    FUZZ_CHECK(*q == '\0' && *p == '\0');
    FUZZ_CHECK(placeholders ==
               (unsigned)!!m->captures.id.at + !!m->captures.name.at + !!m->captures.n.at);
}

/* A capture decodes, or holds an encoded NUL, which the whole target would show too. */
static char *capture_decode(const struct api_segment *s, const char *path)
{
    char *text = strndup(s->at, s->len), *decoded = NULL;
    int r;

    FUZZ_CHECK(text);
    r = api_segment_decode(s->at, s->len, &decoded);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    FUZZ_CHECK((r == -EINVAL) == api_uri_has_nul(text));
    if (r == -EINVAL)
        FUZZ_CHECK(api_uri_has_nul(path));
    else
        FUZZ_CHECK(strlen(decoded) <= s->len);
    free(text);
    return decoded;
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
        char *id = capture_decode(&m.captures.id, path);

        if (id)
            (void)core_id_is_valid(id);
        free(id);
    }
    if (m.captures.name.at) {
        char *name = capture_decode(&m.captures.name, path);

        if (name)
            (void)svc_backup_name_check(name, strlen(name), NULL);
        free(name);
    }
    if (m.captures.n.at) {
        uint64_t n;
        char *text = capture_decode(&m.captures.n, path);

        if (text)
            (void)api_revision_parse(text, &n);
        free(text);
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
        /* The same text as an If-Match: an expectation no larger than its array. */
        {
            struct core_expect e;
            int r = api_if_match_parse(inm, &e);

            FUZZ_CHECK(r == 0 || r == -E2BIG);
            FUZZ_CHECK(r < 0 || e.kind != CORE_EXPECT_ONE_OF || e.n <= CORE_EXPECT_MAX);
        }
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
