#ifndef API_HANDLERS_H
#define API_HANDLERS_H

/*
 * One handler per route of the REST API (see api/routes.h for the table): each turns a parsed
 * request into a call to the registry and the registry's answer into a reply. Handlers never
 * touch libmicrohttpd; they only fill a struct api_reply.
 *
 * Thread rules: called from libmicrohttpd's thread; the registry serialises changes.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api/reply.h"
#include "core/err.h"
#include "core/registry.h"

/* A request as a handler sees it. Every pointer is borrowed for the call. */
struct api_request {
    struct core_registry *registry;
    const char *path;          /* the URL path (percent-decoded), e.g. "/api/v1/listeners/e1" */
    const char *id;            /* the {id} segment of the path, or NULL when the route has none */
    const json_t *body;        /* routes that take a body: the JSON object sent; else NULL */
    const char *if_none_match; /* the If-None-Match header, or NULL */
    uint64_t uptime_seconds;   /* how long the server has been serving */
};

/* Fills ret (initialised with api_reply_init()) with the answer to req. */
typedef void (*api_handler_fn)(const struct api_request *req, struct api_reply *ret);

void api_handle_health(const struct api_request *req, struct api_reply *ret);
void api_handle_listeners_list(const struct api_request *req, struct api_reply *ret);
void api_handle_listener_create(const struct api_request *req, struct api_reply *ret);
void api_handle_listener_get(const struct api_request *req, struct api_reply *ret);
void api_handle_listener_replace(const struct api_request *req, struct api_reply *ret);
void api_handle_listener_patch(const struct api_request *req, struct api_reply *ret);
void api_handle_listener_delete(const struct api_request *req, struct api_reply *ret);
void api_handle_listener_start(const struct api_request *req, struct api_reply *ret);
void api_handle_listener_stop(const struct api_request *req, struct api_reply *ret);
void api_handle_listener_metrics(const struct api_request *req, struct api_reply *ret);
void api_handle_metrics(const struct api_request *req, struct api_reply *ret);
/* The embedded file at req->path, or 304 when req->if_none_match names its ETag. */
void api_handle_asset(const struct api_request *req, struct api_reply *ret);

/*
 * Parses a request body that must be a JSON object. Returns 0 with *ret (new reference), or
 * -EINVAL with err->msg saying what is wrong and where (jansson's message, line, column and
 * byte position) when the text is not JSON or not an object.
 */
int api_body_parse(const char *data, size_t len, json_t **ret, struct core_err *err);

/*
 * Whether an If-None-Match header value (a list of entity tags, or "*") matches etag (a quoted
 * strong tag), with the weak comparison RFC 9110 prescribes for If-None-Match.
 */
bool api_etag_matches(const char *if_none_match, const char *etag);

#endif
