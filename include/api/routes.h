#ifndef API_ROUTES_H
#define API_ROUTES_H

/*
 * The route table of the control plane: method and path pattern to handler, and the rules a
 * request body must follow on each route. Matching answers 404 when no pattern matches the
 * path, and 405 with the methods the path has when a pattern matches but not the method. HEAD
 * is allowed wherever GET is, and runs the GET handler (libmicrohttpd drops the body).
 *
 * Patterns are absolute paths of literal segments and placeholders: "{id}", "{name}" and "{n}"
 * each match any one non-empty segment, which is captured into the member of struct
 * api_captures of that name; the handler checks what it holds ({n} matches "abc" too). The
 * whole pattern "{asset}" matches the paths of the embedded files (api_asset_find()). Pure
 * functions over a static table, any thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/handlers.h"

enum api_method {
    API_METHOD_GET,
    API_METHOD_HEAD,
    API_METHOD_POST,
    API_METHOD_PUT,
    API_METHOD_PATCH,
    API_METHOD_DELETE,
    API_METHOD_OTHER, /* any other method: no route has it */
    API_METHOD_COUNT
};

#define API_METHOD_BIT(m) (1u << (m))

/* What a route accepts as request body. */
enum api_body {
    API_BODY_NONE,        /* a body, if sent, is read and ignored */
    API_BODY_JSON,        /* a JSON object, Content-Type application/json */
    API_BODY_MERGE_PATCH, /* a JSON object, application/json or application/merge-patch+json */
    API_BODY_OCTETS,      /* any bytes of any type, streamed to the handler's upload, never
                           * held whole; a Content-Length is required and body_max does not
                           * apply */
    API_BODY_COUNT
};

struct api_route {
    enum api_method method;
    const char *pattern;
    api_handler_fn handler;
    enum api_body body;
};

/* One captured segment: it points into the matched path and is not NUL-terminated. */
struct api_segment {
    const char *at; /* NULL when the route's pattern has no such placeholder */
    size_t len;
};

/* The placeholders a pattern may hold, one member each. */
struct api_captures {
    struct api_segment id;   /* {id}: a listener's id */
    struct api_segment name; /* {name}: a stored file's or a service's name */
    struct api_segment n;    /* {n}: a configuration revision's number */
};

struct api_match {
    const struct api_route *route; /* the route (on 0) */
    struct api_captures captures;  /* the placeholders of the route's pattern, in path */
    unsigned allow;                /* API_METHOD_BIT()s the path has (on 0 and -EOPNOTSUPP) */
};

/* The route table (static storage), *ret_n routes long; the pattern "{asset}" stands for every
 * embedded file. */
const struct api_route *api_routes(size_t *ret_n);

/* The method named name (case-sensitive, as HTTP methods are); API_METHOD_OTHER if unknown. */
enum api_method api_method_from_name(const char *name);

/* The name of m ("GET"); "" for API_METHOD_OTHER. */
const char *api_method_name(enum api_method m);

/*
 * Finds the route for method and path (without the query), percent-encoded as received: the
 * path is split at its '/' first and each segment decoded after, so that "%2F" is a byte of its
 * segment, never a separator. Captures point into path, still encoded (api_segment_decode()).
 * Returns 0 with *ret filled, -ENOENT when no route has path, or -EOPNOTSUPP when routes have path
 * but not method (ret->allow says which they have; HEAD is there whenever GET is). *ret is written
 * on 0 and -EOPNOTSUPP.
 */
int api_route_match(const char *method, const char *path, struct api_match *ret);

/*
 * Decodes a percent-encoded segment of len bytes ("%XX" is a byte; a '%' without two hex digits
 * after it stands for itself). Returns 0 with *ret (malloc'd, NUL-terminated; free it), -EINVAL
 * when it holds an encoded NUL, or -ENOMEM.
 */
int api_segment_decode(const char *raw, size_t len, char **ret);

/* Whether a request target as received (path and query, percent-encoded) holds an encoded NUL
 * ("%00") anywhere. */
bool api_uri_has_nul(const char *uri);

/*
 * Writes the methods of mask as an "Allow" value ("GET, HEAD, POST") into buf of size len,
 * in the order of enum api_method. Returns 0, or -ENOSPC when buf is too small (it then holds
 * "").
 */
int api_methods_format(unsigned mask, char *buf, size_t len);

/*
 * Whether a Content-Type header value (NULL when absent) is a media type body accepts: the
 * type before any parameter (";charset=utf-8" is fine), compared case-insensitively.
 * API_BODY_NONE and API_BODY_OCTETS accept anything.
 */
bool api_body_type_is_accepted(enum api_body body, const char *content_type);

/*
 * Checks a Content-Length header value (NULL when absent) against body_max. Returns 0 when
 * absent or within the limit, -EFBIG when over it, -EINVAL when it is not a decimal number.
 */
int api_body_length_check(const char *content_length, size_t body_max);

#endif
