#include "api/guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api/routes.h"

#define DIGEST_LEN 32 /* SHA-256 */

struct api_guard {
    bool has_token;
    unsigned char token_digest[DIGEST_LEN];
    bool is_unix;
    int family;             /* TCP: AF_INET or AF_INET6 */
    unsigned char addr[16]; /* TCP: the bound address (4 or 16 bytes) */
    bool addr_is_any, addr_is_loopback;
    unsigned port;                    /* TCP: the bound port */
    char *names[API_GUARD_NAMES_MAX]; /* lower case */
    size_t n_names;
};

/* A Host (or the host part of an Origin), taken apart. */
struct host {
    char name[API_GUARD_NAME_MAX + 1]; /* lower case; an IPv6 literal without its brackets */
    bool is_ip;
    int family;
    unsigned char addr[16];
    unsigned port; /* the default port of the scheme when absent */
};

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

bool api_guard_token_is_valid(const char *token, size_t len)
{
    if (!token || len == 0 || len > API_GUARD_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] > 0x7e)
            return false;
    return true;
}

bool api_guard_name_is_valid(const char *name)
{
    size_t n;

    if (!name)
        return false;
    n = strlen(name);
    if (n == 0 || n > API_GUARD_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(name[i]))
            return false;
    return true;
}

static void digest(const void *data, size_t len, unsigned char out[DIGEST_LEN])
{
    unsigned int n = DIGEST_LEN;

    /* SHA-256 of a few bytes in memory cannot fail short of a broken libcrypto; then the
     * digest is all zeroes on both sides of a comparison only if both calls failed. */
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, DIGEST_LEN);
}

void api_guard_free(struct api_guard *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_names; i++)
        free(g->names[i]);
    OPENSSL_cleanse(g, sizeof(*g));
    free(g);
}

int api_guard_new(const struct api_guard_opts *opts, struct api_guard **ret, struct core_err *err)
{
    struct api_guard *g;
    int r;

    if (opts->token && !api_guard_token_is_valid(opts->token, opts->token_len))
        return core_err_set(err, -EINVAL, "token",
                            "the token must be 1 to %d bytes of visible ASCII, without blanks",
                            API_GUARD_TOKEN_MAX);
    if (opts->n_names > API_GUARD_NAMES_MAX)
        return core_err_set(err, -EINVAL, "names", "at most %d extra host names",
                            API_GUARD_NAMES_MAX);
    for (size_t i = 0; i < opts->n_names; i++)
        if (!api_guard_name_is_valid(opts->names[i]))
            return core_err_set(err, -EINVAL, "names",
                                "'%s' is not a host name (letters, digits, '-', '.', '_')",
                                opts->names[i] ? opts->names[i] : "");
    if (opts->listen && opts->listen->sa_family != AF_INET && opts->listen->sa_family != AF_INET6)
        return core_err_set(err, -EINVAL, "listen", "not an IPv4 or IPv6 address");

    g = calloc(1, sizeof(*g));
    if (!g)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    if (opts->token) {
        g->has_token = true;
        digest(opts->token, opts->token_len, g->token_digest);
    }
    if (!opts->listen) {
        g->is_unix = true;
    } else if (opts->listen->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)opts->listen;

        g->family = AF_INET;
        memcpy(g->addr, &in->sin_addr, 4);
        g->port = ntohs(in->sin_port);
        g->addr_is_any = in->sin_addr.s_addr == htonl(INADDR_ANY);
        g->addr_is_loopback = g->addr[0] == 127;
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)opts->listen;

        g->family = AF_INET6;
        memcpy(g->addr, &in6->sin6_addr, 16);
        g->port = ntohs(in6->sin6_port);
        g->addr_is_any = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
        g->addr_is_loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                              (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && g->addr[12] == 127);
    }
    for (size_t i = 0; i < opts->n_names; i++) {
        char *copy = strdup(opts->names[i]);

        if (!copy) {
            r = core_err_set(err, -ENOMEM, NULL, "out of memory");
            goto out_free;
        }
        for (char *p = copy; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        g->names[g->n_names++] = copy;
    }
    *ret = g;
    return 0;

out_free:
    api_guard_free(g);
    return r;
}

bool api_guard_has_token(const struct api_guard *g)
{
    return g->has_token;
}

/* Parses a decimal port of 1 to 5 digits, 0 to 65535, from s (n bytes). */
static bool parse_port(const char *s, size_t n, unsigned *ret)
{
    unsigned v = 0;

    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *ret = v;
    return true;
}

/*
 * Takes "name[:port]" or "[v6]:port" (s, n bytes) apart into *ret; default_port when no port
 * is given. Returns false for anything else (userinfo, paths, blanks, an empty name).
 */
static bool parse_host(const char *s, size_t n, unsigned default_port, struct host *ret)
{
    const char *name = s, *colon;
    size_t name_len;
    char text[API_GUARD_NAME_MAX + 1];

    memset(ret, 0, sizeof(*ret));
    ret->port = default_port;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);

        if (!close)
            return false;
        name = s + 1;
        name_len = (size_t)(close - name);
        if (close + 1 < s + n) {
            if (close[1] != ':' || !parse_port(close + 2, (size_t)(s + n - close - 2), &ret->port))
                return false;
        }
        if (name_len == 0 || name_len >= sizeof(text))
            return false;
        memcpy(text, name, name_len);
        text[name_len] = '\0';
        if (inet_pton(AF_INET6, text, ret->addr) != 1)
            return false;
        ret->is_ip = true;
        ret->family = AF_INET6;
    } else {
        colon = memchr(s, ':', n);
        name_len = colon ? (size_t)(colon - s) : n;
        if (colon && !parse_port(colon + 1, (size_t)(s + n - colon - 1), &ret->port))
            return false;
        if (name_len == 0 || name_len >= sizeof(text))
            return false;
        for (size_t i = 0; i < name_len; i++)
            if (!is_name_char(name[i]))
                return false;
        memcpy(text, name, name_len);
        text[name_len] = '\0';
        if (inet_pton(AF_INET, text, ret->addr) == 1) {
            ret->is_ip = true;
            ret->family = AF_INET;
        }
    }
    for (size_t i = 0; i < name_len; i++)
        ret->name[i] = (text[i] >= 'A' && text[i] <= 'Z') ? (char)(text[i] - 'A' + 'a') : text[i];
    ret->name[name_len] = '\0';
    return true;
}

static bool is_extra_name(const struct api_guard *g, const char *name)
{
    for (size_t i = 0; i < g->n_names; i++)
        if (strcmp(g->names[i], name) == 0)
            return true;
    return false;
}

/* Whether h names this API: see the header. */
static bool host_is_ours(const struct api_guard *g, const struct host *h)
{
    if (is_extra_name(g, h->name))
        return true;
    if (g->is_unix)
        return false;
    if (h->port != g->port)
        return false;
    if (h->is_ip) {
        if (g->addr_is_any)
            return true;
        return h->family == g->family &&
               memcmp(h->addr, g->addr, g->family == AF_INET ? 4 : 16) == 0;
    }
    return strcmp(h->name, "localhost") == 0 && (g->addr_is_loopback || g->addr_is_any);
}

/* Whether an Origin value is this API's own: "http://HOST" or "https://HOST", HOST ours. */
static bool origin_is_ours(const struct api_guard *g, const char *origin)
{
    struct host h;
    unsigned default_port;
    size_t skip;

    if (strncasecmp(origin, "http://", 7) == 0) {
        skip = 7;
        default_port = 80;
    } else if (strncasecmp(origin, "https://", 8) == 0) {
        skip = 8;
        default_port = 443;
    } else {
        return false; /* "null", another scheme, garbage */
    }
    return parse_host(origin + skip, strlen(origin + skip), default_port, &h) &&
           host_is_ours(g, &h);
}

static bool is_method(const char *method, const char *name)
{
    return method && strcmp(method, name) == 0;
}

/* Writes a printable, bounded copy of a header value into buf, for a detail. */
static const char *quote(const char *value, char *buf, size_t len)
{
    size_t i = 0;

    for (; value[i] && i + 1 < len; i++)
        buf[i] = (value[i] >= 0x20 && value[i] < 0x7f) ? value[i] : '?';
    buf[i] = '\0';
    return buf;
}

/* The bearer token of an Authorization value, or NULL: "Bearer" (any case), blanks, token. */
static const char *bearer_token(const char *authorization, size_t *ret_len)
{
    const char *p = authorization;
    size_t n;

    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return NULL;
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0)
        return NULL;
    *ret_len = n;
    return p;
}

enum api_guard_verdict api_guard_check(const struct api_guard *g,
                                       const struct api_guard_request *req, char *detail,
                                       size_t len)
{
    char quoted[96];
    struct host h;

    if (!g->is_unix) {
        if (!req->host || !*req->host) {
            (void)snprintf(detail, len, "a Host header is required");
            return API_GUARD_BAD_HOST;
        }
        if (!parse_host(req->host, strlen(req->host), 80, &h) || !host_is_ours(g, &h)) {
            (void)snprintf(detail, len,
                           "Host '%s' is not a name this API answers to (start the daemon with "
                           "--allow-host NAME to add one)",
                           quote(req->host, quoted, sizeof(quoted)));
            return API_GUARD_BAD_HOST;
        }
    }

    if (req->origin && !origin_is_ours(g, req->origin)) {
        (void)snprintf(detail, len, "requests from another site are refused (Origin '%s')",
                       quote(req->origin, quoted, sizeof(quoted)));
        return API_GUARD_CROSS_SITE;
    }
    if (req->sec_fetch_site && strcmp(req->sec_fetch_site, "same-origin") != 0 &&
        strcmp(req->sec_fetch_site, "none") != 0) {
        /* Following a link from elsewhere is fine; being framed, fetched or posted to is not. */
        bool navigation = (is_method(req->method, "GET") || is_method(req->method, "HEAD")) &&
                          req->sec_fetch_mode && strcmp(req->sec_fetch_mode, "navigate") == 0 &&
                          req->sec_fetch_dest && strcmp(req->sec_fetch_dest, "document") == 0;

        if (!navigation) {
            (void)snprintf(detail, len,
                           "requests from another site are refused (Sec-Fetch-Site '%s')",
                           quote(req->sec_fetch_site, quoted, sizeof(quoted)));
            return API_GUARD_CROSS_SITE;
        }
    }

    if (g->has_token && !req->is_public) {
        unsigned char got[DIGEST_LEN];
        const char *token = NULL;
        size_t token_len = 0;

        if (req->authorization)
            token = bearer_token(req->authorization, &token_len);
        if (!token) {
            (void)snprintf(detail, len,
                           "this API needs a token: send 'Authorization: Bearer TOKEN'");
            return API_GUARD_NO_TOKEN;
        }
        digest(token, token_len, got);
        if (CRYPTO_memcmp(got, g->token_digest, DIGEST_LEN) != 0) {
            (void)snprintf(detail, len, "the bearer token is not the right one");
            return API_GUARD_BAD_TOKEN;
        }
    }
    return API_GUARD_ALLOW;
}

unsigned api_guard_status(enum api_guard_verdict v)
{
    switch (v) {
    case API_GUARD_ALLOW:
        return 200;
    case API_GUARD_NO_TOKEN:
    case API_GUARD_BAD_TOKEN:
        return 401;
    case API_GUARD_BAD_HOST:
    case API_GUARD_CROSS_SITE:
    case API_GUARD_VERDICT_COUNT:
        break;
    }
    return 403;
}

bool api_guard_media_type_ok(const char *method, const char *content_type)
{
    /* By method, whatever the route: a page can send no such type without a preflight. */
    if (is_method(method, "POST") || is_method(method, "PUT"))
        return api_body_type_is_accepted(API_BODY_JSON, content_type);
    if (is_method(method, "PATCH"))
        return api_body_type_is_accepted(API_BODY_MERGE_PATCH, content_type);
    return true;
}
