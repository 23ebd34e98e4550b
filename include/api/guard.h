#ifndef API_GUARD_H
#define API_GUARD_H

/*
 * What a request must show before the control API routes it, as pure functions over a
 * configuration built once at start:
 *
 * - Host: one of the names the API answers to (DNS rebinding: a page of another site whose name
 *   was re-pointed at this machine carries its own name, never one of these). Over TCP: the
 *   bound address with its port ("127.0.0.1:8400", "[::1]:8400"; any IP literal with the port
 *   when bound to a wildcard address), "localhost" with the port when the address is loopback
 *   or a wildcard, and the extra names configured, with any port. Over a Unix socket: any.
 * - Origin and Fetch Metadata (cross-site requests): an Origin that is not the API's own
 *   (http or https, an allowed Host as above) is refused, "null" included, whatever the method.
 *   A Sec-Fetch-Site other than "same-origin" or "none" is refused, except for a GET or HEAD
 *   that is a top-level navigation (a link followed from elsewhere; frames are refused).
 * - Token: when one is configured, every request but the public ones (health, the dashboard's
 *   files) carries "Authorization: Bearer TOKEN". The comparison is constant-time (SHA-256 of
 *   both, compared with CRYPTO_memcmp()), so neither the token nor its length leaks.
 * - Media type: POST and PUT carry Content-Type application/json (parameters allowed), PATCH
 *   that or application/merge-patch+json, with or without a body: no HTML form and no "simple"
 *   cross-origin request can send one, so a browser must ask first (CORS preflight), and the
 *   API never answers yes.
 *
 * Thread rules: api_guard_new() and api_guard_free() from the thread that starts and stops the
 * server; the checks from any thread (the guard is immutable once built).
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/err.h"

#define API_GUARD_TOKEN_MAX 4096 /* longest token, in bytes */
#define API_GUARD_NAMES_MAX 16   /* extra host names */
#define API_GUARD_NAME_MAX 253   /* longest host name (RFC 1035) */

struct api_guard;

struct api_guard_opts {
    /* The token (bytes, see api_guard_token_is_valid()), token_len long; NULL: no token needed.
     * Copied. */
    const char *token;
    size_t token_len;
    /* Where the API listens: a TCP address with its (bound) port, or NULL for a Unix socket. */
    const struct sockaddr *listen;
    /* Extra host names (see api_guard_name_is_valid()), n_names of them; copied. */
    const char *const *names;
    size_t n_names;
};

/*
 * Builds a guard. Returns 0 with *ret (free with api_guard_free()), or -EINVAL with err naming
 * the bad option ("token", "names", "listen"), or -ENOMEM.
 */
int api_guard_new(const struct api_guard_opts *opts, struct api_guard **ret, struct core_err *err);

/* Frees g, its copy of the token wiped first. Accepts NULL. */
void api_guard_free(struct api_guard *g);

/* Whether g asks for a token. */
bool api_guard_has_token(const struct api_guard *g);

/* What the guard looks at in a request: header values as received, NULL when absent. */
struct api_guard_request {
    const char *method;
    bool is_public; /* a route that needs no token (health, the dashboard's files) */
    const char *host;
    const char *authorization;
    const char *origin;
    const char *sec_fetch_site;
    const char *sec_fetch_mode;
    const char *sec_fetch_dest;
};

enum api_guard_verdict {
    API_GUARD_ALLOW,
    API_GUARD_BAD_HOST,   /* 403: the Host is not one the API answers to */
    API_GUARD_CROSS_SITE, /* 403: the Origin or Sec-Fetch-Site says another site sent it */
    API_GUARD_NO_TOKEN,   /* 401: no bearer token */
    API_GUARD_BAD_TOKEN,  /* 401: a bearer token, not the right one */
    API_GUARD_VERDICT_COUNT
};

/*
 * Judges req: the Host first, then the Origin and Fetch Metadata, then the token. On a refusal
 * writes a sentence for the client into detail (len bytes; it may quote the Host or Origin
 * received, never the token).
 */
enum api_guard_verdict api_guard_check(const struct api_guard *g,
                                       const struct api_guard_request *req, char *detail,
                                       size_t len);

/* The HTTP status of a verdict: 200 for API_GUARD_ALLOW, else 403 or 401. */
unsigned api_guard_status(enum api_guard_verdict v);

/*
 * Whether a request of method may carry a body of content_type (the header's value, NULL when
 * absent), with or without a body: POST and PUT need application/json, PATCH that or
 * application/merge-patch+json (parameters such as charset allowed, case-insensitive); other
 * methods anything.
 */
bool api_guard_media_type_ok(const char *method, const char *content_type);

/* Whether token (len bytes) may be a token: 1 to API_GUARD_TOKEN_MAX bytes of visible ASCII
 * (0x21 to 0x7e), which an Authorization header carries as they are. */
bool api_guard_token_is_valid(const char *token, size_t len);

/* Whether name may be an extra host name: 1 to API_GUARD_NAME_MAX bytes of letters, digits,
 * '-', '.' and '_', or a numeric IPv4 address. */
bool api_guard_name_is_valid(const char *name);

#endif
