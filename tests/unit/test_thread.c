#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/thread.h"

/* What a job saw of the thread it ran on. */
struct seen {
    pid_t tid;
    char name[CORE_THREAD_NAME_MAX + 1];
};

static void *see(void *arg)
{
    struct seen *s = arg;

    s->tid = gettid();
    (void)prctl(PR_GET_NAME, s->name);
    return NULL;
}

/* The name /proc gives thread tid of this process ("" when there is none). */
static void comm_of(pid_t tid, char *buf, size_t len)
{
    char path[64];
    FILE *f;

    buf[0] = '\0';
    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
    f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(buf, (int)len, f))
        buf[0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
}

/* The threads of this process. */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Waits (with a deadline) until this process has n threads: an ended thread's /proc entry
 * may outlive its join for a moment. */
static bool has_threads(int n)
{
    for (int i = 0; i < 5000; i++) {
        if (thread_count() == n)
            return true;
        usleep(1000);
    }
    return false;
}

/* Waits (with a deadline) until thread tid of this process has ended. */
static bool thread_gone(pid_t tid)
{
    char comm[32];

    for (int i = 0; i < 5000; i++) {
        comm_of(tid, comm, sizeof(comm));
        if (!comm[0])
            return true;
        usleep(1000);
    }
    return false;
}

static void test_threads_job_runs_named_then_thread_parked_idle(void **state)
{
    struct core_threads *p;
    struct core_thread *t;
    struct seen s = {0};
    char comm[32];

    (void)state;
    assert_int_equal(core_threads_new(&p), 0);
    assert_int_equal(core_threads_run(p, see, &s, "l:e1/ev0", 256 * 1024, &t), 0);
    core_threads_join(t);
    assert_string_equal(s.name, "l:e1/ev0");
    assert_int_not_equal(s.tid, gettid());
    /* Parked, not ended: `ps -L` shows it idle. */
    comm_of(s.tid, comm, sizeof(comm));
    assert_string_equal(comm, "ss-idle");
    core_threads_free(p);
    /* Ended (ThreadSanitizer's runtime may have started a thread of its own meanwhile). */
    assert_true(thread_gone(s.tid));
}

static void test_threads_parked_thread_runs_next_job(void **state)
{
    struct core_threads *p;
    struct core_thread *t;
    struct seen a = {0}, b = {0};
    int before;

    (void)state;
    assert_int_equal(core_threads_new(&p), 0);
    assert_int_equal(core_threads_run(p, see, &a, "l:a/ev0", 0, &t), 0);
    core_threads_join(t);
    before = thread_count();
    assert_int_equal(core_threads_run(p, see, &b, "l:b/acc", 0, &t), 0);
    core_threads_join(t);
    /* The same thread, named for its new job; none started. */
    assert_int_equal(b.tid, a.tid);
    assert_string_equal(b.name, "l:b/acc");
    assert_int_equal(thread_count(), before);
    core_threads_free(p);
}

/* A job that waits until the test lets it go. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int arrived;
    bool open;
};

static void *wait_at_gate(void *arg)
{
    struct gate *g = arg;

    pthread_mutex_lock(&g->lock);
    g->arrived++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

#define MANY (CORE_THREADS_IDLE_MAX + 8)

static void test_threads_jobs_at_once_each_own_thread_surplus_ends(void **state)
{
    struct gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct core_thread **t = calloc(MANY, sizeof(*t));
    struct core_threads *p;
    struct seen s = {0};
    int base;

    (void)state;
    assert_non_null(t);
    assert_int_equal(core_threads_new(&p), 0);
    /* One job first, its thread parked: a sanitizer's runtime starts a thread of its own with
     * the process's first. */
    assert_int_equal(core_threads_run(p, see, &s, "l:x/ev0", 64 * 1024, &t[0]), 0);
    core_threads_join(t[0]);
    base = thread_count() - 1;
    for (int i = 0; i < MANY; i++)
        assert_int_equal(core_threads_run(p, wait_at_gate, &g, "l:x/ev0", 64 * 1024, &t[i]), 0);
    pthread_mutex_lock(&g.lock);
    while (g.arrived < MANY)
        pthread_cond_wait(&g.cond, &g.lock);
    g.open = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    /* Every job ran at once, each on a thread of its own. */
    assert_int_equal(thread_count(), base + MANY);
    for (int i = 0; i < MANY; i++)
        core_threads_join(t[i]);
    /* At most CORE_THREADS_IDLE_MAX stay parked; the others ended (and were joined). */
    assert_true(has_threads(base + CORE_THREADS_IDLE_MAX));
    core_threads_free(p);
    assert_true(has_threads(base));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_job_runs_named_then_thread_parked_idle),
        cmocka_unit_test(test_threads_parked_thread_runs_next_job),
        cmocka_unit_test(test_threads_jobs_at_once_each_own_thread_surplus_ends),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
