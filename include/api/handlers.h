#ifndef API_HANDLERS_H
#define API_HANDLERS_H

/*
 * One handler per route of the REST API (see api/routes.h for the table): each turns a parsed
 * request into a call to the registry and the registry's answer into a reply. Handlers never
 * touch libmicrohttpd; they only fill a struct api_reply.
 *
 * Every change of the listener set (POST, PUT, PATCH, DELETE of a listener, start, stop, PUT of
 * the whole configuration, restore) is one struct core_change (core/change.h), asked by the
 * API: its If-Match header is the expected revision (api_if_match_parse(); more than
 * CORE_EXPECT_MAX tags is 400), "?dry_run=true" (or 1; false or 0, or no dry_run, is a real
 * change; any other value is 400 naming "dry_run") asks what it would do. The answers:
 *   - a dry run: 200 {"dry_run": true, "revision": the current revision, "diff": [...]}, no
 *     ETag, nothing changed;
 *   - a change: its usual status and body, with "ETag: \"r<N>\"" of what the body is (nothing
 *     on a 204 unless the registry names one);
 *   - an If-Match not met: 412 "precondition failed: ...", with the current ETag when there is
 *     one;
 *   - any other failure: the problem of api_status_from_errno() (500 for any state file not
 *     written but a full disk's 507), with a member "listener" naming the listener at fault
 *     when the registry names one.
 *
 * Thread rules: called from libmicrohttpd's thread; the registry serialises changes.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api/events.h"
#include "api/reply.h"
#include "core/err.h"
#include "core/registry.h"

struct api_request;
struct api_upload_outcome;
struct api_tickets;
struct api_priority;

/*
 * The value of query parameter key of req: "" for "?key" or "?key=", NULL when absent (the
 * first one when it is repeated). Percent-decoded.
 */
typedef const char *(*api_query_fn)(const struct api_request *req, const char *key);

/* A request as a handler sees it. Every pointer is borrowed for the call. */
struct api_request {
    struct core_registry *registry;
    const struct core_service_table *services; /* the services; NULL: none */
    struct api_events *events;  /* the event streams, or NULL when the server has no event bus */
    struct fleet_view *view;    /* the fleet view (--fleet-view), or NULL */
    struct fleet_bridge *fleet; /* the fleet bridge (--amqp), or NULL */
    const char *path;           /* the URL path (percent-decoded), e.g. "/api/v1/listeners/e1" */
    const char *id;             /* the {id} segment of the path, or NULL when the route has none */
    const char *name;           /* the {name} segment (percent-decoded), or NULL */
    const char *n;              /* the {n} segment (percent-decoded), or NULL */
    const json_t *body;         /* routes that take a body: the JSON object sent; else NULL */
    const char *if_none_match;  /* the If-None-Match header, or NULL */
    const char *if_match;       /* the If-Match header, or NULL */
    const char *prefer;         /* the Prefer header (RFC 7240), or NULL */
    const char *last_event_id;  /* the Last-Event-ID header, or NULL */
    uint64_t uptime_seconds;    /* how long the server has been serving */
    api_query_fn query;         /* NULL: the request has no query parameters */
    void *query_ctx;            /* what query reads (the server's connection) */
    /* PUT of a file: what the upload came to (api/upload.h), or NULL. */
    const struct api_upload_outcome *upload;
    struct api_tickets *tickets;         /* the download tickets (api/ticket.h), or NULL */
    const struct api_priority *priority; /* the API thread's scheduling, or NULL */
};

/* The value of query parameter key (see api_query_fn), or NULL. */
const char *api_request_query(const struct api_request *req, const char *key);

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
/* GET /api/v1/config: {"revision", "listeners"} with ETag "r<revision>" (none at revision 0). */
void api_handle_config_get(const struct api_request *req, struct api_reply *ret);
/* PUT /api/v1/config: the whole listener set; 200 {"revision", "diff", "listeners"} with
 * ETag "r<revision>". */
void api_handle_config_replace(const struct api_request *req, struct api_reply *ret);
/* GET /api/v1/config/revisions[?limit=N]: {"revisions": [...]}, newest first; limit 1 to
 * API_REVISIONS_LIMIT_MAX (default API_REVISIONS_LIMIT_DEFAULT), else 400 naming "limit". */
void api_handle_revisions_list(const struct api_request *req, struct api_reply *ret);
/* GET /api/v1/events/recent[?limit=N]: {"events": [...]}, the newest events of this run but the
 * metrics ticks, newest first (core_events_recent()); limit 1 to CORE_EVENTS_RECENT (default
 * API_EVENTS_RECENT_DEFAULT), else 400 naming "limit". */
void api_handle_events_recent(const struct api_request *req, struct api_reply *ret);
/* GET /api/v1/config/revisions/{n}: revision n with its listener set. n not a revision number
 * (api_revision_parse()) is 400 naming "n"; a revision not kept is 404. */
void api_handle_revision_get(const struct api_request *req, struct api_reply *ret);
/* POST /api/v1/config/revisions/{n}/restore: revision n's listener set as a new revision,
 * answered as PUT /api/v1/config (If-Match is about the whole configuration). n as above. */
void api_handle_revision_restore(const struct api_request *req, struct api_reply *ret);
void api_handle_metrics(const struct api_request *req, struct api_reply *ret);
/* GET /metrics: the Prometheus text exposition (api/prometheus.h). */
void api_handle_prometheus(const struct api_request *req, struct api_reply *ret);
/* {"files": [...]} of a listener whose service keeps files; 404 when it keeps none. */
void api_handle_listener_files(const struct api_request *req, struct api_reply *ret);
/* One stored file (?version=N: older version N; absent or 0: the current one), as an
 * attachment streamed from its descriptor. */
void api_handle_listener_file_get(const struct api_request *req, struct api_reply *ret);

/*
 * Opens the file a files route names (req->id, req->name, the query's version): 0 with
 * *ret_version, *ret_fd (the caller's) and *ret_size; or a negative errno with the refusal in
 * ret (400 version or name, 404, or the error's status).
 */
int api_file_open(const struct api_request *req, struct api_reply *ret, unsigned *ret_version,
                  int *ret_fd, uint64_t *ret_size);
/* 201 {name, version, size, sha256, stored} with Repr-Digest, or the upload's problem. */
void api_handle_listener_file_put(const struct api_request *req, struct api_reply *ret);
/* 201 {"url", "expires_in_s"}: a download ticket (api/ticket.h) for the file, or 404/400 as
 * its GET would answer. */
void api_handle_listener_file_ticket(const struct api_request *req, struct api_reply *ret);
/* The server-sent event stream (api/events.h); 503 when the server has no event bus. */
void api_handle_events(const struct api_request *req, struct api_reply *ret);
/* The embedded file at req->path, or 304 when req->if_none_match names its ETag. */
void api_handle_asset(const struct api_request *req, struct api_reply *ret);

/*
 * Parses a request body that must be a JSON object. Returns 0 with *ret (new reference), or
 * -EINVAL with err->msg saying what is wrong and where (jansson's message, line, column and
 * byte position) when the text is not JSON or not an object.
 */
int api_body_parse(const char *data, size_t len, json_t **ret, struct core_err *err);

/*
 * Parses the "version" query parameter of a file download: NULL (absent) is 0, the current
 * copy; otherwise 1 to 4294967295 in decimal digits only, or "0". Returns 0 with *ret, or
 * -EINVAL (an empty value, a sign, blanks, another character, too large).
 */
int api_version_parse(const char *text, unsigned *ret);

#define API_REVISIONS_LIMIT_DEFAULT 20
#define API_REVISIONS_LIMIT_MAX 100

/*
 * Parses the "dry_run" query parameter: NULL (absent), "false" and "0" are false, "true" and
 * "1" true. Returns 0 with *ret, or -EINVAL for anything else ("" included).
 */
int api_dry_run_parse(const char *text, bool *ret);

#define API_EVENTS_RECENT_DEFAULT 50

/*
 * Parses a "limit" query parameter (the revisions list, the recent events): NULL (absent) is
 * def; otherwise decimal digits only, 1 to max. Returns 0 with *ret, or -EINVAL.
 */
int api_limit_parse(const char *text, size_t def, size_t max, size_t *ret);

/*
 * Parses a revision number, the {n} of a path: decimal digits only, 1 to UINT64_MAX. Returns 0
 * with *ret, or -EINVAL (empty, 0, a sign, blanks, another character, too large).
 */
int api_revision_parse(const char *text, uint64_t *ret);

/* One member of an entity-tag list (RFC 9110, 8.8.3): "*", or a tag whose opaque part (between
 * its quotes, len bytes, borrowed from the header) may be weak (W/"..."). */
struct api_etag {
    bool star;
    bool weak;
    const char *opaque;
    size_t len;
};

/*
 * The one entity-tag parser: reads the next member of the list at *p (blanks and commas
 * between members skipped) and moves *p past it. Returns 1 with *ret, 0 at the end of the
 * list, or -EINVAL when what follows is not an entity tag.
 */
int api_etag_next(const char **p, struct api_etag *ret);

/*
 * Whether an If-None-Match header value (a list of entity tags, or "*") matches etag (a quoted
 * strong tag), with the weak comparison RFC 9110 prescribes for If-None-Match. A list that
 * turns malformed matches if a tag before that point did.
 */
bool api_etag_matches(const char *if_none_match, const char *etag);

/*
 * An If-Match header value (NULL: not sent) as what the change expects (core/change.h): none;
 * exists for "*" alone; else one of the revisions of the strong tags "rN" in the list (N a
 * revision number; "r0" the configuration of a daemon never configured). Weak tags, other
 * tags and a value that is not a list of entity tags never match (no revision, or none at
 * all). Returns 0 with *ret, or -E2BIG when the list names more than CORE_EXPECT_MAX
 * revisions.
 */
int api_if_match_parse(const char *value, struct core_expect *ret);

/*
 * Whether a Prefer header value (RFC 7240; NULL: not sent) asks for return=minimal: one of its
 * comma-separated preferences is "return" (any case) with the value "minimal" (quoted or not);
 * parameters after ';' are ignored.
 */
bool api_prefer_minimal(const char *value);

#endif
