#ifndef CORE_OFFLOAD_H
#define CORE_OFFLOAD_H

/*
 * Work that may block (disk I/O: writes, fsync, reads, a lock on a directory) taken off a
 * thread that must not block, an event loop: the loop hands a job to a pool of worker threads
 * (core_offload_submit()) and learns that it ran through an inbox of its own, a locked list
 * plus an eventfd it watches (memcached's notify_worker, libuv's uv_queue_work and
 * uv_async_send).
 *
 * The pool starts one thread when made and more when needed: a job submitted while every
 * thread is busy starts another, up to max_threads; past that, jobs wait their turn in the
 * order submitted. Threads stay until the pool is freed. Each thread has a scratch buffer of
 * scratch_size bytes that its jobs may use (a read buffer), so that a job needs no memory of
 * its own for it.
 *
 * A job is caller storage and belongs to the pool from core_offload_submit() until it comes
 * out of its inbox (core_offload_inbox_take()); the submitter touches nothing the job's run
 * function touches meanwhile. The hand-overs (submit, take) order memory: what the submitter
 * wrote before submitting is seen by run, what run wrote is seen by whoever takes the job.
 */

#include <pthread.h>
#include <stddef.h>

struct core_offload;
struct core_offload_inbox;

struct core_offload_job {
    /* Runs on a worker thread; scratch is the thread's buffer (scratch_size bytes). */
    void (*run)(struct core_offload_job *j, void *scratch);
    struct core_offload_inbox *inbox; /* where the job is posted once run */
    struct core_offload_job *next;    /* the pool's queue, then the inbox's list */
};

/*
 * Makes a pool of at most max_threads (>= 1) threads, scratch_size bytes of scratch each, and
 * starts its first thread. The threads are named "l:<listener_id>/off<N>" (core/thread.h);
 * listener_id NULL: they keep the name of the thread that started them. Returns 0 or a negative
 * errno (-ENOMEM, or pthread_create()'s error). Free with core_offload_free(). Any thread; the
 * signal mask of the thread that starts a thread (this one, or a submitter's) is the new thread's.
 */
int core_offload_new(unsigned max_threads, size_t scratch_size, const char *listener_id,
                     struct core_offload **ret);

/*
 * Queues job j (run and inbox set) to run on a worker thread, starting one more thread when
 * every thread is busy and there are fewer than max_threads (when that fails, the job waits
 * for a busy one). Never fails and never blocks but on the pool's lock, held for no I/O.
 * Any thread.
 */
void core_offload_submit(struct core_offload *o, struct core_offload_job *j);

/*
 * Runs every job still queued, waits for the running ones, joins every thread and frees the
 * pool. Accepts NULL. Not from one of the pool's jobs; no core_offload_submit() may come
 * meanwhile or after. The inboxes of the jobs must outlive this call.
 */
void core_offload_free(struct core_offload *o);

/* Where jobs are posted once run: a list of them in the order they ended, and an eventfd
 * readable while the list may hold any. Caller storage. */
struct core_offload_inbox {
    pthread_mutex_t lock;
    struct core_offload_job *head, *tail; /* guarded by lock */
    int fd; /* eventfd (non-blocking, close-on-exec); watch it for POLLIN/EPOLLIN */
};

/* Makes the inbox's eventfd and lock. Returns 0 or a negative errno (then fd is -1 and there
 * is nothing to fini, but fini accepts it). */
int core_offload_inbox_init(struct core_offload_inbox *ib);

/* Closes the eventfd; the list must be empty, no job pending for it. Accepts an inbox whose
 * init failed. */
void core_offload_inbox_fini(struct core_offload_inbox *ib);

/* Takes every job posted so far, oldest first (linked through next; NULL when none), and
 * empties the eventfd. The thread that watches the inbox. */
struct core_offload_job *core_offload_inbox_take(struct core_offload_inbox *ib);

#endif
