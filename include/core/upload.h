#ifndef CORE_UPLOAD_H
#define CORE_UPLOAD_H

/*
 * One file stored into a running listener's service from outside its sockets (the REST API's
 * upload): a session of the service itself is opened on the listener's running instance and
 * fed what a client of the wire protocol would send (the service's upload_header, then the
 * content), so that every rule of the protocol holds (naming, quota counting the uploads in
 * flight, existing names, durability, events, counters). The session runs in the daemon, on the
 * daemon's instance, whatever the listener's model. The content goes through in pieces;
 * nothing holds it whole.
 *
 * The instance stays alive while an upload is under way: when the listener stops, or when a
 * live change lets the instance go, the upload is cut (its session closed as a cut connection:
 * nothing kept) and its next core_upload_write() fails with -ESHUTDOWN.
 *
 * Threads: core_upload_begin(), core_upload_write() and core_upload_free() block on file I/O
 * and on the registry's changes: call them from a worker thread, never from an event loop or
 * libmicrohttpd's thread. The calls of one upload are made from one thread at a time.
 */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"
#include "core/registry.h"

struct core_upload;

/*
 * Asks listener id to store file name, size bytes long, whose SHA-256 is sha256 (32 bytes;
 * NULL: unknown, the service stores what it is sent). Returns 0 with *ret (free with
 * core_upload_free()), after which the content follows through core_upload_write(); for size
 * 0 the file is already stored (core_upload_result()). Errors, with err:
 *   -ENOENT     no listener id
 *   -ENOTSUP    its service takes no uploads
 *   -EBUSY      it is not running
 *   the service's refusal (see upload_result in core/service.h): -EINVAL (field "name"),
 *   -EFBIG, -ENOSPC, -EEXIST, -EBUSY, -EIO; -ENOMEM.
 */
int core_upload_begin(struct core_registry *r, const char *id, const char *name, uint64_t size,
                      const uint8_t *sha256, struct core_upload **ret, struct core_err *err);

/*
 * The next len bytes of the content. Returns 0 while more is owed, 1 once the service stored
 * the file (after the last byte: core_upload_result()), or a negative errno with err when the
 * upload failed and nothing was kept: the service's refusal (as core_upload_begin()'s, and
 * -EBADMSG for content that does not match sha256, -ETIMEDOUT for a too slow one),
 * -ESHUTDOWN when the listener stopped or changed meanwhile. After a failure or 1, no more
 * writes.
 */
int core_upload_write(struct core_upload *u, const void *data, size_t len, struct core_err *err);

/* What was stored, once core_upload_write() (or core_upload_begin() for size 0) said so:
 * {"name", "version", "size", "sha256", "stored"} (new reference), or NULL before that. */
json_t *core_upload_result(struct core_upload *u);

/* Ends the upload: a file not yet stored is given up (nothing kept). Accepts NULL. */
void core_upload_free(struct core_upload *u);

/*
 * Cuts the uploads of *list, an instance's (core/listener.c calls it before the instance is
 * freed, with the registry's change lock held): waits for a piece being written, closes each
 * session as a cut connection, empties the list.
 */
void core_upload_cancel_all(struct core_upload **list);

#endif
