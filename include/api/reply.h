#ifndef API_REPLY_H
#define API_REPLY_H

/*
 * Every HTTP reply of the control plane goes through this module: JSON bodies, problem+json
 * errors (RFC 9457), embedded static files, stored files streamed from a descriptor, event
 * streams, and the one mapping from a negative errno to an HTTP status. A handler fills a
 * struct api_reply; the server sends it with api_reply_send().
 *
 * Thread rules: a reply belongs to the request that fills it (libmicrohttpd's thread). The
 * pure functions (api_status_from_errno(), api_status_title(), api_problem_new()) may be
 * called from any thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "api/assets.h"
#include "core/config.h"
#include "core/err.h"

struct api_downloads;
struct api_stream;

/* Longest "Location", "Allow", "Content-Disposition" and "ETag" header values a reply carries,
 * with their NUL. A disposition holds a file name of up to 255 bytes twice, once
 * percent-encoded; an ETag is "r" and a revision number, quoted. */
#define API_LOCATION_MAX 128
#define API_ALLOW_MAX 64
#define API_DISPOSITION_MAX 1152
#define API_ETAG_MAX 32

struct api_reply {
    unsigned status;
    json_t *json;                    /* owned: the application/json body, or NULL for none */
    bool is_problem;                 /* the body is application/problem+json from detail, field */
    char detail[256];                /* problem: what went wrong, for humans */
    char field[64];                  /* problem: the field at fault; empty for none */
    char listener[CORE_ID_MAX];      /* problem: the listener at fault ("listener"); empty: none */
    char location[API_LOCATION_MAX]; /* "Location" header when not empty */
    char allow[API_ALLOW_MAX];       /* "Allow" header when not empty */
    char etag[API_ETAG_MAX];         /* "ETag" header when not empty (api_reply_etag()) */
    char repr_digest[64];            /* "Repr-Digest" header when not empty */
    const struct api_asset *asset;   /* a static file (borrowed, static storage), or NULL */
    int fd;                          /* owned: an application/octet-stream body, or -1 */
    uint64_t fd_size;                /* its length, from offset 0 */
    struct api_downloads *downloads; /* borrowed: the workers that read fd (api/download.h); set
                                        by the server just before api_reply_send() */
    char disposition[API_DISPOSITION_MAX]; /* "Content-Disposition" header when not empty */
    bool no_store;                         /* "Cache-Control: no-store" */
    const char *authenticate;              /* "WWW-Authenticate" header (static storage), or NULL */
    unsigned retry_after;                  /* "Retry-After" header in seconds when not 0 */
    const char *preference_applied;        /* "Preference-Applied" (static storage), or NULL */
    struct api_stream *stream;             /* owned: a text/event-stream body, or NULL */
    char *text; /* owned (malloc): a body of text_len bytes of content_type */
    size_t text_len;
    const char *content_type; /* of text: static storage */
};

/* Prepares r: 500 with no body until a setter says otherwise. */
void api_reply_init(struct api_reply *r);

/* Releases what r owns (closes its fd, frees its stream) and prepares it again. Accepts an
 * initialised reply. */
void api_reply_fini(struct api_reply *r);

/*
 * A JSON reply with status. Takes ownership of body (new reference; NULL is 500: the handler
 * ran out of memory building it). Replaces what r held.
 */
void api_reply_json(struct api_reply *r, unsigned status, json_t *body);

/*
 * A reply of len bytes of text (malloc'd; ownership passes to r, also on failure; NULL with len
 * 0 is an empty body) of content_type (static storage), with "Cache-Control: no-store".
 */
void api_reply_text(struct api_reply *r, unsigned status, const char *content_type, char *text,
                    size_t len);

/* A reply with no body (204, 304). */
void api_reply_empty(struct api_reply *r, unsigned status);

/* A problem reply: status, a printf-formatted detail, field (NULL or "" for none). */
void api_reply_problem(struct api_reply *r, unsigned status, const char *field, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

/*
 * A problem reply for a negative errno from core/: the status is api_status_from_errno(code),
 * the detail err->msg (or the errno's text when err is NULL or empty), the field err->field.
 */
void api_reply_error(struct api_reply *r, int code, const struct core_err *err);

/*
 * Adds to r the "ETag" header of a configuration revision: "r<revision>", quoted, as
 * core/registry.h says; nothing for revision 0 (none). Call it after the setter of the status
 * and body: each setter starts the reply afresh.
 */
void api_reply_etag(struct api_reply *r, uint64_t revision);

/* The whole configuration's ETag, "r<revision>", also "r0" for a daemon never configured (so
 * that the first conditional write can be made). Same rules as api_reply_etag(). */
void api_reply_config_etag(struct api_reply *r, uint64_t revision);

/* 405 with the "Allow" header set to allow (e.g. "GET, HEAD, PUT"). */
void api_reply_method_not_allowed(struct api_reply *r, const char *method, const char *path,
                                  const char *allow);

/* An embedded file: 200 with its body, or 304 (no body) when not_modified. Both carry the
 * asset's ETag, its Content-Type and "Cache-Control: no-cache". */
void api_reply_asset(struct api_reply *r, const struct api_asset *asset, bool not_modified);

/*
 * A stored file: 200 application/octet-stream of size bytes read from fd (offset 0) by the
 * download workers of r->downloads (api/download.h; a reply without them is a 500), with
 * "Content-Disposition: attachment" naming it name (see api_content_disposition()) and
 * "Cache-Control: no-store". Takes ownership of fd (closed by api_reply_fini() if never sent).
 * A name whose disposition does not fit is a 500 (fd closed).
 */
void api_reply_file(struct api_reply *r, int fd, uint64_t size, const char *name);

/* An event stream: 200 with s as the body (see api/events.h). Takes ownership of s. */
void api_reply_stream(struct api_reply *r, struct api_stream *s);

/*
 * The Content-Disposition value for downloading a file called name (bytes, UTF-8 expected):
 * `attachment; filename="FALLBACK"; filename*=UTF-8''ENCODED` (RFC 6266, RFC 8187). ENCODED
 * is name with every byte but RFC 8187's attr-char percent-encoded (%XX, upper case);
 * FALLBACK is name with every byte outside printable ASCII, '"', '\\', '%' and '/' replaced by
 * '_'. Writes it into buf of size len; returns 0 or -ENOSPC (buf holds "" then).
 */
int api_content_disposition(const char *name, char *buf, size_t len);

/*
 * Builds the libmicrohttpd response for r, queues it on c and releases r (api_reply_fini()).
 * Call from the access handler only. If the body cannot be built, sends a bare 500 instead.
 * Returns what MHD_queue_response() returned (MHD_NO closes the connection).
 */
enum MHD_Result api_reply_send(struct MHD_Connection *c, struct api_reply *r);

/*
 * The HTTP status for a negative errno from core/: core_err_http_status() (core/err.h holds the
 * one table). A change whose state could not be written (core_change.persist_failed) is the
 * daemon's fault whatever the errno: the handlers answer it 507 for a full disk, else 500.
 */
unsigned api_status_from_errno(int code);

/* The reason phrase of status ("Not Found"), the "title" of a problem. Never NULL. */
const char *api_status_title(unsigned status);

/*
 * The problem+json object {"type":"about:blank","title","status","detail","field"}: "detail"
 * only when detail is neither NULL nor empty, "field" likewise. Bytes of detail and field that
 * are not UTF-8 are sent as '?'. Returns a new reference, NULL on ENOMEM. (A reply's problem
 * also has "listener" when its listener member is set.)
 */
json_t *api_problem_new(unsigned status, const char *detail, const char *field);

#endif
