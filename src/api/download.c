#include "api/download.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/thread.h"

/* What libmicrohttpd takes from the content reader at a time: the copy it sends from. */
#define SEND_BLOCK (128 * 1024)

/*
 * Locks, always taken in this order: the pool's lock, then (inside MHD_resume_connection() and
 * MHD_suspend_connection()) libmicrohttpd's own.
 */
struct api_download {
    struct api_downloads *pool;
    struct MHD_Connection *conn;
    int fd;
    uint64_t size;
    uint8_t *buf[2];

    /*
     * Guarded by pool->lock. The blocks of the file go into buf[0], buf[1], buf[0]... in
     * order: the worker fills buf[fill] while it is empty (len 0), the reader sends from
     * buf[send] while it is full; neither touches the other's buffer.
     */
    size_t len[2];     /* bytes in buf[i]; 0 while empty */
    unsigned fill;     /* the buffer the next block goes into */
    unsigned send;     /* the buffer the reader sends from */
    uint64_t read_off; /* where the next block begins */
    int error;         /* a failed read, or -EIO for a file shorter than size */
    bool queued;       /* waits for a worker */
    bool busy;         /* a worker reads into it */
    bool suspended;    /* the reader suspended conn; nobody resumed it since */
    bool released;     /* libmicrohttpd freed the response: free it once the worker is done */
    struct api_download *next;                  /* the queue */
    struct api_download *live_prev, *live_next; /* every download not freed */

    size_t sent; /* the reader's own: bytes of buf[send] handed to libmicrohttpd */
};

struct api_downloads {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct api_download *head, *tail; /* guarded by lock: waiting for a worker, oldest first */
    struct api_download *live;        /* guarded by lock */
    struct api_download_job *jobs, *jobs_tail; /* guarded by lock: oldest first */
    bool stopping;                             /* guarded by lock */
    pthread_t threads[API_DOWNLOAD_WORKERS];
    unsigned n_threads;
};

/* Frees d, unlinked already. */
static void download_free(struct api_download *d)
{
    if (d->fd >= 0)
        close(d->fd);
    free(d->buf[0]);
    free(d->buf[1]);
    free(d);
}

static void live_unlink(struct api_downloads *p, struct api_download *d)
{
    if (d->live_prev)
        d->live_prev->live_next = d->live_next;
    else
        p->live = d->live_next;
    if (d->live_next)
        d->live_next->live_prev = d->live_prev;
}

/* Queues d for a worker. Called with p->lock held, d neither queued nor busy. */
static void enqueue_locked(struct api_downloads *p, struct api_download *d)
{
    d->queued = true;
    d->next = NULL;
    if (p->tail)
        p->tail->next = d;
    else
        p->head = d;
    p->tail = d;
    pthread_cond_signal(&p->wake);
}

/* Whether d wants its next block read: not everything is read, and the buffer is empty. */
static bool wants_read_locked(const struct api_download *d)
{
    return !d->queued && !d->busy && !d->error && d->read_off < d->size && d->len[d->fill] == 0;
}

/* Reads len bytes of fd at off into buf: how many (fewer at the file's end), or -errno. */
static ssize_t read_block(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Runs the oldest job, if any, and resumes its connection. Called with p->lock held (released
 * meanwhile). Whether there was one. */
static bool run_job_locked(struct api_downloads *p)
{
    struct api_download_job *job = p->jobs;

    if (!job)
        return false;
    p->jobs = job->next;
    if (!p->jobs)
        p->jobs_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    job->fn(job->arg);
    pthread_mutex_lock(&p->lock);
    job->done = true;
    /* Under the lock: libmicrohttpd's thread reads done once resumed. */
    MHD_resume_connection(job->conn);
    return true;
}

static void *worker_main(void *arg)
{
    struct api_downloads *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct api_download *d;
        unsigned idx;
        uint64_t off, rest;
        size_t want;
        ssize_t n;

        while (!p->head && !p->jobs && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        if (run_job_locked(p))
            continue;
        if (p->stopping)
            break;
        d = p->head;
        p->head = d->next;
        if (!p->head)
            p->tail = NULL;
        d->queued = false;
        d->busy = true;
        idx = d->fill;
        off = d->read_off;
        rest = d->size - off;
        want = rest < API_DOWNLOAD_BLOCK ? (size_t)rest : API_DOWNLOAD_BLOCK;
        pthread_mutex_unlock(&p->lock);

        n = read_block(d->fd, d->buf[idx], want, off);

        pthread_mutex_lock(&p->lock);
        d->busy = false;
        if (d->released) {
            live_unlink(p, d);
            download_free(d);
            continue;
        }
        if (n < 0) {
            d->error = (int)n;
        } else if ((size_t)n < want) {
            d->error = -EIO; /* the file shrank */
        } else {
            d->len[idx] = (size_t)n;
            d->read_off += (uint64_t)n;
            d->fill ^= 1;
            if (wants_read_locked(d))
                enqueue_locked(p, d); /* read ahead into the other buffer */
        }
        if (d->suspended) {
            d->suspended = false;
            MHD_resume_connection(d->conn);
        }
    }
    /* What still waits is ended by the stop: its reader fails from now on. */
    for (struct api_download *d = p->head; d; d = d->next)
        d->queued = false;
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int api_downloads_start(struct api_downloads **ret)
{
    struct api_downloads *p = calloc(1, sizeof(*p));
    int r = 0;

    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (unsigned i = 0; i < API_DOWNLOAD_WORKERS; i++) {
        char name[16];

        r = -pthread_create(&p->threads[i], NULL, worker_main, p);
        if (r < 0)
            break;
        snprintf(name, sizeof(name), "ss-dl%u", i);
        core_thread_name(p->threads[i], name);
        p->n_threads++;
    }
    if (r < 0) {
        api_downloads_free(p);
        return r;
    }
    *ret = p;
    return 0;
}

void api_downloads_stop(struct api_downloads *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    for (struct api_download *d = p->live; d; d = d->live_next) {
        if (d->suspended) {
            d->suspended = false;
            MHD_resume_connection(d->conn);
        }
    }
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

int api_downloads_run(struct api_downloads *p, struct api_download_job *job)
{
    int r = 0;

    if (!p)
        return -ESHUTDOWN;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        r = -ESHUTDOWN;
    } else {
        job->done = false;
        job->next = NULL;
        if (p->jobs_tail)
            p->jobs_tail->next = job;
        else
            p->jobs = job;
        p->jobs_tail = job;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

bool api_download_job_done(struct api_downloads *p, const struct api_download_job *job)
{
    bool done;

    if (!p)
        return false;
    pthread_mutex_lock(&p->lock);
    done = job->done;
    pthread_mutex_unlock(&p->lock);
    return done;
}

void api_downloads_free(struct api_downloads *p)
{
    if (!p)
        return;
    api_downloads_stop(p);
    /* libmicrohttpd freed every response: nothing is left, but be safe with a caller who did
     * not stop it. */
    while (p->live) {
        struct api_download *d = p->live;

        live_unlink(p, d);
        download_free(d);
    }
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/*
 * libmicrohttpd's content reader: the next bytes of the file, copied from the block a worker
 * read. With no block ready it asks for one, suspends the connection and returns 0; the worker
 * resumes it.
 */
static ssize_t download_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct api_download *d = cls;
    struct api_downloads *p = d->pool;
    unsigned idx;
    size_t avail, n;

    (void)pos;
    if (max == 0)
        return 0;
    pthread_mutex_lock(&p->lock);
    if (p->stopping || d->error) {
        pthread_mutex_unlock(&p->lock);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    idx = d->send;
    if (d->len[idx] == 0) {
        if (wants_read_locked(d))
            enqueue_locked(p, d);
        d->suspended = true;
        MHD_suspend_connection(d->conn);
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    avail = d->len[idx] - d->sent;
    pthread_mutex_unlock(&p->lock);

    /* buf[idx] is full: no worker writes it until it is handed back below. */
    n = avail < max ? avail : max;
    memcpy(buf, d->buf[idx] + d->sent, n);
    d->sent += n;
    pthread_mutex_lock(&p->lock);
    if (d->sent == d->len[idx]) {
        d->len[idx] = 0;
        d->sent = 0;
        d->send ^= 1;
        if (wants_read_locked(d))
            enqueue_locked(p, d);
    }
    pthread_mutex_unlock(&p->lock);
    return (ssize_t)n;
}

/* libmicrohttpd frees the response (sent, failed, or the client went away). */
static void download_release(void *cls)
{
    struct api_download *d = cls;
    struct api_downloads *p = d->pool;

    pthread_mutex_lock(&p->lock);
    if (d->queued) {
        struct api_download **at = &p->head, *prev = NULL;

        while (*at != d) {
            prev = *at;
            at = &(*at)->next;
        }
        *at = d->next;
        if (p->tail == d)
            p->tail = prev;
        d->queued = false;
    }
    if (d->busy) {
        d->released = true; /* the worker frees it */
        pthread_mutex_unlock(&p->lock);
        return;
    }
    live_unlink(p, d);
    pthread_mutex_unlock(&p->lock);
    download_free(d);
}

struct MHD_Response *api_download_response(struct api_downloads *p, struct MHD_Connection *conn,
                                           int fd, uint64_t size)
{
    struct MHD_Response *resp;
    struct api_download *d;
    bool stopping;

    if (!p)
        return NULL;
    pthread_mutex_lock(&p->lock);
    stopping = p->stopping;
    pthread_mutex_unlock(&p->lock);
    if (stopping)
        return NULL;
    if (size == 0) {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp)
            close(fd);
        return resp;
    }
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->pool = p;
    d->conn = conn;
    d->fd = -1;
    d->size = size;
    d->buf[0] = malloc(API_DOWNLOAD_BLOCK);
    d->buf[1] = malloc(API_DOWNLOAD_BLOCK);
    if (!d->buf[0] || !d->buf[1]) {
        download_free(d);
        return NULL;
    }
    resp = MHD_create_response_from_callback(size, SEND_BLOCK, download_read, d, download_release);
    if (!resp) {
        download_free(d); /* fd is still the caller's */
        return NULL;
    }
    d->fd = fd;
    pthread_mutex_lock(&p->lock);
    d->live_next = p->live;
    if (p->live)
        p->live->live_prev = d;
    p->live = d;
    pthread_mutex_unlock(&p->lock);
    return resp;
}
