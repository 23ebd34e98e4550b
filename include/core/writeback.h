#ifndef CORE_WRITEBACK_H
#define CORE_WRITEBACK_H

/*
 * Early writeback of a file written from start to end (an upload the server stores, a download
 * a client keeps): once a step of new bytes is written, the disk is asked to start writing them
 * (sync_file_range), after waiting for the step before, which it had the time of one step to
 * write. The fsync that makes the file durable then finds little left to do, and the disk works
 * while the network does. Only a hint: a file system without it keeps it all for the fsync.
 *
 * Caller storage; one thread at a time per file.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_WRITEBACK_STEP (UINT64_C(8) << 20) /* bytes whose writeback starts at once */

struct core_writeback {
    uint64_t written; /* bytes of the file written so far */
    uint64_t flushed; /* writeback was started for [0, flushed) */
};

/* A file whose first offset bytes are written already (0 for a new one). */
void core_writeback_init(struct core_writeback *w, uint64_t offset);

/* n more bytes were appended to fd: starts the writeback of each full step. */
void core_writeback_wrote(struct core_writeback *w, int fd, uint64_t n);

/* The alignment, in memory and in the file, of the writes that bypass the page cache. */
#define CORE_WRITEBACK_DIRECT_ALIGN 4096

/* Puts fd in O_DIRECT: true, or false when the file system refuses it (nothing changed). */
bool core_writeback_direct(int fd);

/*
 * Appends all of p[0..n) to fd at its file position, which is w->written (w NULL: no
 * writeback, and direct must be NULL). While *direct, whole CORE_WRITEBACK_DIRECT_ALIGN blocks
 * from aligned memory at an aligned offset bypass the page cache; anything else (a short end,
 * an alignment the file system or the device refuses) clears O_DIRECT and *direct, and goes
 * through the cache from then on, its writeback started (core_writeback_wrote()). direct NULL:
 * through the cache. Returns 0 or a negative errno.
 */
int core_writeback_append(struct core_writeback *w, int fd, bool *direct, const void *p, size_t n);

/* Starts the writeback of what is left, without waiting (before an fsync, or a close). */
void core_writeback_rest(struct core_writeback *w, int fd);

#endif
