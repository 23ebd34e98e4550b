/*
 * The offload pool: worker threads that take jobs from one locked queue, run them and post
 * them to their inboxes (core/offload.h).
 */
#include "core/offload.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/thread.h"

/* Worker threads run service callbacks: the stack the thread-per-connection model gives them,
 * plus room for what a job keeps on it. */
#define OFFLOAD_STACK_SIZE (512 * 1024)

struct worker {
    struct core_offload *pool;
    unsigned index; /* among the pool's threads: its name's number */
    pthread_t thread;
    void *scratch; /* scratch_size bytes */
};

struct core_offload {
    pthread_mutex_t lock;
    pthread_cond_t cond;                  /* a job is queued, or the pool stops */
    struct core_offload_job *head, *tail; /* the queue; guarded by lock */
    unsigned queued;                      /* jobs in the queue; guarded by lock */
    unsigned idle;                        /* threads waiting for a job; guarded by lock */
    bool stopping;                        /* guarded by lock */
    size_t scratch_size;
    unsigned max_threads;
    char id[CORE_THREAD_NAME_MAX + 1]; /* the listener's id (its start, in names), or "" */
    unsigned n_threads;                /* started; guarded by lock */
    struct worker *workers;            /* max_threads of them, n_threads started; guarded by lock */
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct core_offload *o = w->pool;

    if (o->id[0]) {
        char role[16], name[CORE_THREAD_NAME_MAX + 1];

        snprintf(role, sizeof(role), "off%u", w->index);
        core_thread_name_listener(name, o->id, role);
        core_thread_name(pthread_self(), name);
    }
    pthread_mutex_lock(&o->lock);
    for (;;) {
        struct core_offload_job *j;

        while (!o->head && !o->stopping) {
            o->idle++;
            pthread_cond_wait(&o->cond, &o->lock);
            o->idle--;
        }
        j = o->head;
        if (!j)
            break; /* stopping, and the queue is empty */
        o->head = j->next;
        if (!o->head)
            o->tail = NULL;
        o->queued--;
        pthread_mutex_unlock(&o->lock);

        j->next = NULL;
        j->run(j, w->scratch);
        {
            struct core_offload_inbox *ib = j->inbox;
            const uint64_t one = 1;

            /* After the unlock the job is its taker's: only the inbox is touched. */
            pthread_mutex_lock(&ib->lock);
            if (ib->tail)
                ib->tail->next = j;
            else
                ib->head = j;
            ib->tail = j;
            pthread_mutex_unlock(&ib->lock);
            (void)!write(ib->fd, &one, sizeof(one));
        }
        pthread_mutex_lock(&o->lock);
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

/* Starts one more thread. Under the lock. */
static int spawn_locked(struct core_offload *o)
{
    struct worker *w;
    pthread_attr_t attr;
    int r;

    if (o->n_threads >= o->max_threads)
        return -EAGAIN;
    w = &o->workers[o->n_threads];
    w->pool = o;
    w->index = o->n_threads;
    w->scratch = malloc(o->scratch_size ? o->scratch_size : 1);
    if (!w->scratch)
        return -ENOMEM;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, OFFLOAD_STACK_SIZE);
    r = -pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (r < 0) {
        free(w->scratch);
        w->scratch = NULL;
        return r;
    }
    o->n_threads++;
    return 0;
}

int core_offload_new(unsigned max_threads, size_t scratch_size, const char *listener_id,
                     struct core_offload **ret)
{
    struct core_offload *o;
    int r;

    if (max_threads == 0)
        return -EINVAL;
    o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->workers = calloc(max_threads, sizeof(*o->workers));
    if (!o->workers) {
        free(o);
        return -ENOMEM;
    }
    o->max_threads = max_threads;
    o->scratch_size = scratch_size;
    if (listener_id)
        snprintf(o->id, sizeof(o->id), "%s", listener_id);
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cond, NULL);
    pthread_mutex_lock(&o->lock);
    r = spawn_locked(o);
    pthread_mutex_unlock(&o->lock);
    if (r < 0) {
        core_offload_free(o);
        return r;
    }
    *ret = o;
    return 0;
}

void core_offload_submit(struct core_offload *o, struct core_offload_job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&o->lock);
    if (o->tail)
        o->tail->next = j;
    else
        o->head = j;
    o->tail = j;
    o->queued++;
    /* Every thread busy (the idle ones are already promised to the jobs before this one). */
    if (o->queued > o->idle)
        (void)spawn_locked(o);
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

void core_offload_free(struct core_offload *o)
{
    unsigned n;

    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    o->stopping = true;
    pthread_cond_broadcast(&o->cond);
    n = o->n_threads;
    pthread_mutex_unlock(&o->lock);
    /* No submit comes any more: n_threads holds still. */
    for (unsigned i = 0; i < n; i++) {
        pthread_join(o->workers[i].thread, NULL);
        free(o->workers[i].scratch);
    }
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    free(o->workers);
    free(o);
}

int core_offload_inbox_init(struct core_offload_inbox *ib)
{
    *ib = (struct core_offload_inbox){.fd = -1};
    ib->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ib->fd < 0)
        return -errno;
    pthread_mutex_init(&ib->lock, NULL);
    return 0;
}

void core_offload_inbox_fini(struct core_offload_inbox *ib)
{
    if (ib->fd < 0)
        return;
    close(ib->fd);
    ib->fd = -1;
    pthread_mutex_destroy(&ib->lock);
}

struct core_offload_job *core_offload_inbox_take(struct core_offload_inbox *ib)
{
    struct core_offload_job *j;
    uint64_t v;

    /* Emptied first: a job posted after the read makes it readable again. */
    (void)!read(ib->fd, &v, sizeof(v));
    pthread_mutex_lock(&ib->lock);
    j = ib->head;
    ib->head = ib->tail = NULL;
    pthread_mutex_unlock(&ib->lock);
    return j;
}
