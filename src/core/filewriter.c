/* A thread that writes a file in order while its owner goes on (core/filewriter.h). */
#include "core/filewriter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/thread.h"

static void *writer_main(void *arg)
{
    struct core_filewriter *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        uint64_t i, k = 1;
        size_t n;
        int r;

        while (!w->stop && w->written == w->pushed) {
            w->writer_waits = true;
            pthread_cond_wait(&w->cv, &w->mu);
            w->writer_waits = false;
        }
        if (w->stop || w->error)
            break;
        i = w->written % w->buffers;
        n = w->len[i];
        while (k < w->pushed - w->written && i + k < w->buffers && w->len[i + k - 1] == w->chunk) {
            n += w->len[i + k];
            k++;
        }
        pthread_mutex_unlock(&w->mu);
        /* The buffers are the thread's until written is raised: the owner waits for them. */
        r = w->write(w->ctx, w->mem + i * w->chunk, n);
        pthread_mutex_lock(&w->mu);
        if (r < 0) {
            w->error = r;
            pthread_cond_broadcast(&w->cv);
            break;
        }
        w->written += k;
        if (w->owner_waits || w->flusher_waits)
            pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void *flusher_main(void *arg)
{
    struct core_filewriter *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        uint64_t upto;
        int r;

        while (!w->stop && !w->error && w->written == w->flushed) {
            w->flusher_waits = true;
            pthread_cond_wait(&w->cv, &w->mu);
            w->flusher_waits = false;
        }
        /* At the finish, what is written and not yet synced is synced once more (unless
         * discarded): the owner's own sync then finds it done. */
        if (w->error || (w->stop && (w->discard || w->written == w->flushed)))
            break;
        upto = w->written;
        pthread_mutex_unlock(&w->mu);
        r = fdatasync(w->flush_fd) < 0 ? -errno : 0;
        pthread_mutex_lock(&w->mu);
        if (r < 0) {
            /* Taken by this sync, the error would not reach the owner's: it is the writer's. */
            w->error = r;
            pthread_cond_broadcast(&w->cv);
            break;
        }
        w->flushed = upto;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/*
 * The buffers, mapped for the writer alone and in transparent huge pages where the kernel has
 * them (MADV_HUGEPAGE: the machine's setting is often "madvise"). A write past the page cache
 * pins the pages it writes from and maps them for the device: 1 MiB is then half a huge page
 * instead of 256 small ones. A restore of 256 MiB took 313-349 ms instead of 419-570 ms here.
 * Without huge pages (THP off), the same buffers in small ones. Fresh pages every time: an
 * allocator's reused memory would be in small pages already.
 */
static uint8_t *buffers_map(size_t n)
{
    size_t slack = n >= CORE_FILEWRITER_HUGE ? CORE_FILEWRITER_HUGE : 0;
    uint8_t *p = mmap(NULL, n + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uintptr_t head;

    if (p == MAP_FAILED)
        return NULL;
    if (!slack)
        return p;
    head = (CORE_FILEWRITER_HUGE - (uintptr_t)p % CORE_FILEWRITER_HUGE) % CORE_FILEWRITER_HUGE;
    if (head)
        (void)munmap(p, head);
    if (slack - head)
        (void)munmap(p + head + n, slack - head);
    (void)madvise(p + head, n, MADV_HUGEPAGE);
    return p + head;
}

static void buffers_unmap(struct core_filewriter *w)
{
    if (w->mem)
        (void)munmap(w->mem, (size_t)w->buffers * w->chunk);
    w->mem = NULL;
}

/* "<the caller's thread name up to its last '/'>/<role>", or "ss-<role>". */
static void writer_name(char out[CORE_THREAD_NAME_MAX + 1], const char *role)
{
    char self[CORE_THREAD_NAME_MAX + 1] = "";
    const char *slash;
    int keep, room = CORE_THREAD_NAME_MAX - 1 - (int)strlen(role);

    (void)pthread_getname_np(pthread_self(), self, sizeof(self));
    slash = strrchr(self, '/');
    if (!slash) {
        snprintf(out, CORE_THREAD_NAME_MAX + 1, "ss-%s", role);
        return;
    }
    keep = (int)(slash - self);
    if (keep > room)
        keep = room;
    snprintf(out, CORE_THREAD_NAME_MAX + 1, "%.*s/%s", keep, self, role);
}

int core_filewriter_start(struct core_filewriter *w, unsigned buffers, size_t chunk,
                          core_filewriter_fn write, void *ctx)
{
    char name[CORE_THREAD_NAME_MAX + 1];
    int e;

    memset(w, 0, sizeof(*w));
    if (buffers < 2 || buffers > CORE_FILEWRITER_BUFFERS_MAX || chunk == 0 ||
        chunk % CORE_FILEWRITER_ALIGN != 0)
        return -EINVAL;
    w->write = write;
    w->ctx = ctx;
    w->buffers = buffers;
    w->chunk = chunk;
    w->mem = buffers_map((size_t)buffers * chunk);
    if (!w->mem)
        return -ENOMEM;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    e = pthread_create(&w->thread, NULL, writer_main, w);
    if (e != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        buffers_unmap(w);
        return -e;
    }
    writer_name(name, "write");
    core_thread_name(w->thread, name);
    w->started = true;
    return 0;
}

int core_filewriter_flush_behind(struct core_filewriter *w, int fd)
{
    char name[CORE_THREAD_NAME_MAX + 1];
    int e;

    if (!w->started || w->inline_ || w->flushing)
        return -EINVAL;
    w->flush_fd = fd;
    e = pthread_create(&w->flusher, NULL, flusher_main, w);
    if (e != 0)
        return -e;
    writer_name(name, "sync");
    core_thread_name(w->flusher, name);
    w->flushing = true;
    return 0;
}

int core_filewriter_start_inline(struct core_filewriter *w, size_t chunk, core_filewriter_fn write,
                                 void *ctx)
{
    memset(w, 0, sizeof(*w));
    if (chunk == 0 || chunk % CORE_FILEWRITER_ALIGN != 0)
        return -EINVAL;
    w->mem = buffers_map(chunk);
    if (!w->mem)
        return -ENOMEM;
    w->write = write;
    w->ctx = ctx;
    w->buffers = 1;
    w->chunk = chunk;
    w->inline_ = true;
    w->started = true;
    return 0;
}

uint8_t *core_filewriter_next(struct core_filewriter *w)
{
    uint8_t *buf = NULL;

    if (w->inline_)
        return w->error ? NULL : w->mem;

    pthread_mutex_lock(&w->mu);
    while (!w->error && w->pushed - w->written >= w->buffers) {
        w->owner_waits = true;
        pthread_cond_wait(&w->cv, &w->mu);
        w->owner_waits = false;
    }
    if (!w->error)
        buf = w->mem + (w->pushed % w->buffers) * w->chunk;
    pthread_mutex_unlock(&w->mu);
    return buf;
}

void core_filewriter_push(struct core_filewriter *w, size_t n)
{
    if (w->inline_) {
        if (!w->error)
            w->error = w->write(w->ctx, w->mem, n);
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->len[w->pushed % w->buffers] = n;
    w->pushed++;
    if (w->writer_waits)
        pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int core_filewriter_finish(struct core_filewriter *w, bool discard)
{
    if (!w->started)
        return w->error;
    if (w->inline_) {
        buffers_unmap(w);
        w->started = false;
        return w->error;
    }
    pthread_mutex_lock(&w->mu);
    while (!discard && !w->error && w->written < w->pushed) {
        w->owner_waits = true;
        pthread_cond_wait(&w->cv, &w->mu);
        w->owner_waits = false;
    }
    w->stop = true;
    w->discard = discard;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    if (w->flushing)
        pthread_join(w->flusher, NULL);
    w->flushing = false;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    buffers_unmap(w);
    w->started = false;
    return w->error;
}
