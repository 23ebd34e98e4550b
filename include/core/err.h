#ifndef CORE_ERR_H
#define CORE_ERR_H

/*
 * Error detail for humans. Functions return a negative errno; when they also take a
 * struct core_err *, they fill it with a sentence and, for a user's bad input, the name of
 * the field at fault (a JSON path such as "options.mode"). err may be NULL.
 */

#include <stddef.h>

#include <jansson.h>

struct core_err {
    char msg[256];
    char field[64]; /* empty when no single field is at fault */
};

/* Sets err->field (may be NULL) and formats err->msg. Returns code unchanged, so that callers write
 * `return core_err_set(err, -EINVAL, "port", "must be 0-65535");`. Accepts err == NULL. */
int core_err_set(struct core_err *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Clears msg and field. Accepts NULL. */
void core_err_clear(struct core_err *err);

/*
 * The HTTP status for a negative errno from core/ (and svc/ through it): the one table, shared
 * by the REST API and the fleet's replies, which answer a rejected change with the problem the
 * API would answer.
 *
 *   errno                          status  meaning
 *   -EINVAL                        400     bad input (the field at fault in the problem)
 *   -EACCES, -EPERM                403     not allowed to the daemon (a privileged port)
 *   -ENOENT                        404     no such listener, revision or file
 *   -EEXIST                        409     the id is taken
 *   -EADDRINUSE, -EADDRNOTAVAIL    409     the address is in use, or not this host's
 *   -EBUSY                         409     something the change claims is held (a directory)
 *   -EMLINK                        409     the daemon holds its maximum number of listeners
 *   -ESTALE                        412     an If-Match (or a fleet record's if_match) not met
 *   -E2BIG, -EFBIG                 413     too large
 *   -EMFILE, -ENFILE               503     out of descriptors (answered with Retry-After)
 *   -ENOSPC, -EDQUOT               507     the disk (or the quota) is full
 *   anything else                  500     the daemon failed (the problem says why)
 */
unsigned core_err_http_status(int code);

/* The reason phrase (RFC 9110) of the statuses core_err_http_status() gives, the "title" of a
 * problem; NULL for any other status. */
const char *core_err_http_title(unsigned status);

/*
 * The problem+json object (RFC 9457) {"type":"about:blank","title","status","detail","field"}:
 * title as core_err_http_title() ("Unknown" when it has none), "detail" only when detail is
 * neither NULL nor empty, "field" likewise. Bytes of detail and field that are not UTF-8 are
 * sent as '?'. Returns a new reference, NULL on ENOMEM. Any thread.
 */
json_t *core_err_problem_json(unsigned status, const char *title, const char *detail,
                              const char *field);

#endif
