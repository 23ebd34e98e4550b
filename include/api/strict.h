#ifndef API_STRICT_H
#define API_STRICT_H

/*
 * What libmicrohttpd 0.9.75 lets through and a strict HTTP server refuses, checked on a
 * request's head before the guard and the routes:
 *
 * - an encoded NUL ("%00") anywhere in the target, path or query: 400 (libmicrohttpd's decoding
 *   would cut the path short there);
 * - two Content-Length headers, or Content-Length with Transfer-Encoding: 400, and the
 *   connection is closed (where the body ends would be ambiguous: request smuggling);
 * - a Transfer-Encoding other than "chunked": 501, at once (libmicrohttpd would read the body
 *   until the connection ends);
 * - two Host headers: 400, and the connection is closed;
 * - a query parameter the API reads ("dry_run", "limit", "version") given twice: 400 naming it.
 *
 * It also joins list headers sent several times (RFC 9110, 5.3), which libmicrohttpd keeps
 * apart and looks up one of.
 *
 * Thread rules: libmicrohttpd's thread, for a connection in its access handler.
 */

#include <microhttpd.h>

#include "api/reply.h"

/*
 * Checks the head of conn's request; target is the request target as received
 * (percent-encoded, with its query), or NULL when it is not known. Returns 0 when the request
 * may go on; -EINVAL when it is refused (ret holds the problem: answer it once the body is
 * read); -EPROTO when its framing is refused (ret holds the problem: answer it at once, without
 * reading the body, and the connection is closed).
 */
int api_strict_check(struct MHD_Connection *conn, const char *target, struct api_reply *ret);

/*
 * Header name of conn's request as one list: its values joined with ", ". Returns 0 with *ret
 * (malloc'd; free it) when it was sent, 0 with *ret untouched when it was not, or -ENOMEM.
 */
int api_strict_header_list(struct MHD_Connection *conn, const char *name, char **ret);

#endif
