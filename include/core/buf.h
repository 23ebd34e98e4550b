#ifndef CORE_BUF_H
#define CORE_BUF_H

/*
 * A growable byte buffer: what a service appends its answer to, and what a runner drains to
 * the socket. Caller storage: zero-initialise, then core_buf_fini() when done. One thread.
 */

#include <stddef.h>
#include <stdint.h>

struct core_buf {
    uint8_t *data;
    size_t len; /* bytes held, starting at data */
    size_t cap;
};

/* Appends n bytes. Returns 0 or -ENOMEM (the buffer is unchanged then). */
int core_buf_append(struct core_buf *b, const void *p, size_t n);

/* Appends printf-formatted text without its NUL. Returns 0, -ENOMEM or -EINVAL. */
int core_buf_printf(struct core_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Drops the first n bytes (n <= len). */
void core_buf_consume(struct core_buf *b, size_t n);

/* Frees the storage and zeroes b. Accepts a zeroed buffer. */
void core_buf_fini(struct core_buf *b);

#endif
