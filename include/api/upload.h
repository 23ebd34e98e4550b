#ifndef API_UPLOAD_H
#define API_UPLOAD_H

/*
 * PUT /api/v1/listeners/{id}/files/{name}: the request body stored by the listener's running
 * service (core/upload.h), piece by piece as libmicrohttpd reads it. The file work (the
 * session's writes, its fsync and commit) runs on the upload workers, never on
 * libmicrohttpd's thread: the server suspends the connection, hands the piece (a copy) to a
 * worker, and the worker resumes the connection when it is done. Nothing holds the body whole.
 *
 * Thread rules: api_uploads_start()/api_uploads_stop() from the thread that starts and stops
 * the server; the rest from libmicrohttpd's thread, but the digest parser (any thread).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core/err.h"
#include "core/registry.h"

#define API_UPLOAD_WORKERS 2
/* Body bytes gathered before they are handed to a worker at once (the last piece may be
 * shorter): fewer hand-offs, and what one upload holds in memory. */
#define API_UPLOAD_BATCH (256 * 1024)
#define API_UPLOAD_SHA256_LEN 32

struct api_uploads;

/* One upload's state, from its request's head to its completion. */
struct api_upload;

/* What an upload came to, as the route's handler turns it into a reply. */
struct api_upload_outcome {
    int code;            /* 1: stored (result), or a negative errno (err) */
    struct core_err err; /* code < 0 */
    const json_t *result;
};

/* Starts the workers. 0, or a negative errno. Stop them with api_uploads_stop(), then free
 * with api_uploads_free(). */
int api_uploads_start(struct api_uploads **ret);

/* Lets the workers finish what they were handed (resuming its connections), then joins them;
 * later hand-offs fail with -ESHUTDOWN and releases run on the caller's thread. Accepts
 * NULL; a second call does nothing. */
void api_uploads_stop(struct api_uploads *p);

/* Stops the workers if they still run, and frees p. Accepts NULL. */
void api_uploads_free(struct api_uploads *p);

/* A new upload of file name (size bytes; sha256 NULL when not sent) into listener id (both
 * copied). NULL on ENOMEM. */
struct api_upload *api_upload_new(struct core_registry *r, const char *id, const char *name,
                                  uint64_t size, const uint8_t *sha256);

/*
 * Gathers the next len bytes of the body (copied). Returns 1 when API_UPLOAD_BATCH bytes or
 * the rest of the declared size are gathered (time for a step), 0 while more may come, or
 * -ENOMEM.
 */
int api_upload_take(struct api_upload *up, const void *data, size_t len);

/*
 * Hands the next step of up to a worker, whose connection conn the caller has just suspended:
 * the beginning when begin, else the bytes gathered. The worker resumes conn when the step is
 * done (api_upload_step_done()). -ESHUTDOWN when the workers stop (nothing handed).
 */
int api_upload_step(struct api_uploads *p, struct api_upload *up, struct MHD_Connection *conn,
                    bool begin);

/* Whether a step was handed and is done; then its outcome is up's. */
bool api_upload_step_done(struct api_uploads *p, const struct api_upload *up);

/* Whether up still owes a step (the last one is not done). */
bool api_upload_step_pending(const struct api_upload *up);

/* The upload so far: code 0 while the body goes on, 1 once stored, < 0 once refused. */
const struct api_upload_outcome *api_upload_outcome(const struct api_upload *up);

/* Bytes of the body handed so far. */
uint64_t api_upload_received(const struct api_upload *up);

/* Ends up (what is not stored is given up) on a worker, or on the caller's thread once the
 * workers stopped. Accepts NULL. Never while a step is pending. */
void api_upload_release(struct api_uploads *p, struct api_upload *up);

/*
 * The SHA-256 of a Repr-Digest or Content-Digest value (RFC 9530: a dictionary such as
 * "sha-256=:BASE64:, sha-512=:...:"). Returns 1 with ret, 0 when it names no sha-256 (other
 * algorithms are ignored), -EINVAL when the sha-256 member is not 32 bytes of base64 between
 * colons.
 */
int api_digest_parse(const char *value, uint8_t ret[API_UPLOAD_SHA256_LEN]);

/* "sha-256=:BASE64:" of the 64 hex digits hex into buf (len bytes). 0, or -EINVAL. */
int api_digest_format(const char *hex, char *buf, size_t len);

#endif
