/* Thread names and the runners' pool of threads (core/thread.h). */
#include "core/thread.h"

#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void core_thread_name_listener(char *buf, const char *id, const char *role)
{
    /* "l:" and "/" take 3 of the 15. */
    size_t room = CORE_THREAD_NAME_MAX - 3, role_len = strnlen(role, room);
    int id_len = (int)(room - role_len);

    snprintf(buf, CORE_THREAD_NAME_MAX + 1, "l:%.*s/%.*s", id_len, id ? id : "", (int)role_len,
             role);
}

void core_thread_name(pthread_t t, const char *name)
{
    char cut[CORE_THREAD_NAME_MAX + 1];

    snprintf(cut, sizeof(cut), "%s", name);
    (void)pthread_setname_np(t, cut);
}

/* ---- the pool ---- */

struct core_thread {
    struct core_threads *pool;
    pthread_t tid;
    pthread_cond_t wake; /* a job was given, or the thread is to end */
    /* The rest guarded by pool->lock. */
    void *(*fn)(void *); /* the job; NULL: none (parked, or done) */
    void *arg;
    char name[CORE_THREAD_NAME_MAX + 1];
    bool done;                /* the job returned, not yet joined */
    bool end;                 /* told to end: the thread returns */
    bool batch;               /* parked at SCHED_BATCH; the thread's own */
    struct core_thread *next; /* in the parked list */
};

struct core_threads {
    pthread_mutex_t lock;
    pthread_cond_t done;        /* a job returned */
    struct core_thread *parked; /* guarded by lock */
    unsigned n_parked;          /* guarded by lock */
    unsigned n_busy;            /* jobs not yet joined; guarded by lock */
};

static void *pool_main(void *arg)
{
    static const struct sched_param other = {.sched_priority = 0};
    struct core_thread *t = arg;
    struct core_threads *p = t->pool;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        void *(*fn)(void *);
        void *fn_arg;
        char name[sizeof(t->name)];

        while (!t->fn && !t->end)
            pthread_cond_wait(&t->wake, &p->lock);
        if (!t->fn)
            break;
        fn = t->fn;
        fn_arg = t->arg;
        memcpy(name, t->name, sizeof(name));
        pthread_mutex_unlock(&p->lock);
        if (t->batch) {
            (void)sched_setscheduler(0, SCHED_OTHER, &other);
            t->batch = false;
        }
        /* Its own name: one prctl (naming another thread opens /proc/self/task/TID/comm). */
        core_thread_name(pthread_self(), name);
        (void)fn(fn_arg);
        core_thread_name(pthread_self(), "ss-idle");
        /* Parked at SCHED_BATCH: when it is given a job, its wake-up does not preempt the
         * thread that gave it (a change starting 250 runners would otherwise be switched out
         * and back in for each); it runs once that thread blocks or its turn ends, and is
         * SCHED_OTHER again before the job. Moving between the two needs no privilege; the
         * nice value is kept. */
        t->batch = sched_setscheduler(0, SCHED_BATCH, &other) == 0;
        pthread_mutex_lock(&p->lock);
        t->fn = NULL;
        t->done = true;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int core_threads_new(struct core_threads **ret)
{
    struct core_threads *p = calloc(1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->done, NULL);
    *ret = p;
    return 0;
}

/* Ends thread t (parked, or joined and taken out of the pool) and frees it. */
static void thread_end(struct core_thread *t)
{
    pthread_mutex_lock(&t->pool->lock);
    t->end = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->pool->lock);
    pthread_join(t->tid, NULL);
    pthread_cond_destroy(&t->wake);
    free(t);
}

void core_threads_free(struct core_threads *p)
{
    struct core_thread *list;

    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    assert(p->n_busy == 0);
    list = p->parked;
    p->parked = NULL;
    p->n_parked = 0;
    /* Told together, they end together: the joins then find them ended. */
    for (struct core_thread *t = list; t; t = t->next) {
        t->end = true;
        pthread_cond_signal(&t->wake);
    }
    pthread_mutex_unlock(&p->lock);
    while (list) {
        struct core_thread *t = list;

        list = t->next;
        thread_end(t);
    }
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int core_threads_run(struct core_threads *p, void *(*fn)(void *), void *arg, const char *name,
                     size_t stack_size, struct core_thread **ret)
{
    struct core_thread *t;
    pthread_attr_t attr;
    int e;

    pthread_mutex_lock(&p->lock);
    t = p->parked;
    if (t) {
        p->parked = t->next;
        p->n_parked--;
        t->next = NULL;
        t->fn = fn;
        t->arg = arg;
        snprintf(t->name, sizeof(t->name), "%s", name);
        p->n_busy++;
        pthread_mutex_unlock(&p->lock);
        /* After the unlock: woken, it finds the lock free. It cannot go away meanwhile: only
         * a join, after its job, parks or ends it. */
        pthread_cond_signal(&t->wake);
        *ret = t;
        return 0;
    }
    pthread_mutex_unlock(&p->lock);

    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->pool = p;
    t->fn = fn;
    t->arg = arg;
    snprintf(t->name, sizeof(t->name), "%s", name);
    pthread_cond_init(&t->wake, NULL);
    pthread_attr_init(&attr);
    if (stack_size)
        (void)pthread_attr_setstacksize(&attr, stack_size);
    /* Counted before it starts: its job may end before pthread_create() returns. */
    pthread_mutex_lock(&p->lock);
    p->n_busy++;
    pthread_mutex_unlock(&p->lock);
    e = pthread_create(&t->tid, &attr, pool_main, t);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        pthread_mutex_lock(&p->lock);
        p->n_busy--;
        pthread_mutex_unlock(&p->lock);
        pthread_cond_destroy(&t->wake);
        free(t);
        return -e;
    }
    *ret = t;
    return 0;
}

void core_threads_join(struct core_thread *t)
{
    struct core_threads *p = t->pool;
    bool keep;

    pthread_mutex_lock(&p->lock);
    while (!t->done)
        pthread_cond_wait(&p->done, &p->lock);
    t->done = false;
    p->n_busy--;
    keep = p->n_parked < CORE_THREADS_IDLE_MAX;
    if (keep) {
        t->next = p->parked;
        p->parked = t;
        p->n_parked++;
    }
    pthread_mutex_unlock(&p->lock);
    if (!keep)
        thread_end(t);
}
