#ifndef CORE_FILEWRITER_H
#define CORE_FILEWRITER_H

/*
 * A thread that writes a file while its owner receives and checks what comes next (a restore
 * the client keeps, a large upload the server stores): the waits of the disk (a write past the
 * page cache, a full device queue, the writeback) no longer stall the network and the checksum,
 * also on one CPU. The owner takes a free buffer, fills it, pushes it; the thread hands the
 * buffers to the write function in the order pushed (those that follow each other in memory in
 * one call: larger writes keep more of the device busy at once).
 *
 * Caller storage. The owner's thread calls everything; the write function runs on the writer's
 * thread, which owns whatever it writes to from start to finish.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/writeback.h"

/* The alignment of every buffer (in memory): whole blocks of it may be written past the page
 * cache (O_DIRECT) as they are. */
#define CORE_FILEWRITER_ALIGN CORE_WRITEBACK_DIRECT_ALIGN
#define CORE_FILEWRITER_BUFFERS_MAX 16
/* Buffers of this much and more together start at a multiple of it and are advised to the
 * kernel as huge pages (MADV_HUGEPAGE). */
#define CORE_FILEWRITER_HUGE (2u << 20)

/* Writes all of p[0..n) (the next bytes of the file): 0, or a negative errno that ends the
 * writing. */
typedef int (*core_filewriter_fn)(void *ctx, const uint8_t *p, size_t n);

struct core_filewriter {
    core_filewriter_fn write;
    void *ctx;
    unsigned buffers;
    size_t chunk;
    uint8_t *mem; /* buffers buffers of chunk bytes */
    size_t len[CORE_FILEWRITER_BUFFERS_MAX];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t pushed, written; /* buffers; buffer i is mem + (i % buffers) * chunk */
    bool stop;                /* the owner is done: write nothing more */
    bool discard;             /* ... and gives up: sync nothing more either */
    int error;                /* the failed write's negative errno, or 0 */
    bool started;
    bool inline_; /* no thread: each push written there and then (core_filewriter_start_inline) */
    bool writer_waits, owner_waits; /* who waits for the other: the one to wake */
    /* core_filewriter_flush_behind(): the thread that syncs what is written meanwhile. */
    pthread_t flusher;
    int flush_fd;
    bool flushing, flusher_waits;
    uint64_t flushed; /* buffers written before the last sync began */
};

/*
 * Starts the thread: buffers (2 to CORE_FILEWRITER_BUFFERS_MAX) buffers of chunk bytes (a
 * multiple of CORE_FILEWRITER_ALIGN), written through write(ctx, ...). The thread is named after
 * the caller's ("l:bk/conn" makes "l:bk/write"; "ss-write" otherwise). Returns 0 or a negative
 * errno (-ENOMEM, pthread_create()'s error), after which nothing is to be finished.
 */
int core_filewriter_start(struct core_filewriter *w, unsigned buffers, size_t chunk,
                          core_filewriter_fn write, void *ctx);

/*
 * The same without a thread, for a process that must not start one (a child forked from the
 * multi-threaded daemon): one buffer of chunk bytes, each push written before it returns.
 * Returns 0 or -EINVAL, -ENOMEM.
 */
int core_filewriter_start_inline(struct core_filewriter *w, size_t chunk, core_filewriter_fn write,
                                 void *ctx);

/*
 * Syncs fd (what write writes to) behind the writes, on one more thread: each fdatasync() takes
 * what the writes put in the device's cache meanwhile, while the owner receives and checks the
 * next bytes, so that the sync the owner makes at the end has little left to wait for. A
 * finish that does not discard returns once all that was written is synced. A failed sync is
 * the writer's failure (core_filewriter_finish() returns it: the error a sync took would not be
 * reported again to a later one). After core_filewriter_start() (threaded); returns 0 or a
 * negative errno (-EINVAL: inline or twice; pthread_create()'s), after which nothing is synced
 * behind and nothing else changes.
 */
int core_filewriter_flush_behind(struct core_filewriter *w, int fd);

/* Waits for a free buffer (chunk bytes) and returns it; NULL once a write failed (the error in
 * core_filewriter_finish()). */
uint8_t *core_filewriter_next(struct core_filewriter *w);

/* The buffer core_filewriter_next() returned holds n bytes to write next. */
void core_filewriter_push(struct core_filewriter *w, size_t n);

/* Waits until every buffer pushed is written (all of them, or none more when discard) and, with
 * core_filewriter_flush_behind(), synced (unless discard), then joins the threads and frees the
 * buffers. Returns 0 or the failed write's (or sync's) negative errno.
 * Accepts a writer never started (0 unless it failed); once finished it may be finished again. */
int core_filewriter_finish(struct core_filewriter *w, bool discard);

#endif
