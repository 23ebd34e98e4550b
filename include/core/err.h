#ifndef CORE_ERR_H
#define CORE_ERR_H

/*
 * Error detail for humans. Functions return a negative errno; when they also take a
 * struct core_err *, they fill it with a sentence and, for a user's bad input, the name of
 * the field at fault (a JSON path such as "options.mode"). err may be NULL.
 */

#include <stddef.h>

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

#endif
