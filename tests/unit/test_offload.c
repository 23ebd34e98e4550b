/*
 * The offload pool (core/offload.h): jobs run on worker threads and come back through their
 * inbox; a job that blocks does not hold the others while threads are left; at max_threads the
 * rest wait in order; free runs what is queued and joins every thread.
 */
#include "core/offload.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#define WAIT_MS 5000
#define N_JOBS 100
#define SCRATCH 4096

/* A job that may wait on a gate, and records where it ran. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
};

struct test_job {
    struct core_offload_job job; /* first: the job's address is the test job's */
    struct gate *gate;           /* NULL: runs at once */
    pthread_t ran_on;
    bool had_scratch;
    unsigned index;
};

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = false;
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void gate_fini(struct gate *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

static void job_run(struct core_offload_job *j, void *scratch)
{
    struct test_job *t = (struct test_job *)j;

    t->ran_on = pthread_self();
    if (scratch) {
        memset(scratch, 0xab, SCRATCH); /* the whole buffer is the job's */
        t->had_scratch = true;
    }
    if (t->gate) {
        pthread_mutex_lock(&t->gate->lock);
        while (!t->gate->open)
            pthread_cond_wait(&t->gate->cond, &t->gate->lock);
        pthread_mutex_unlock(&t->gate->lock);
    }
}

static void job_init(struct test_job *t, struct core_offload_inbox *ib, struct gate *g,
                     unsigned index)
{
    *t = (struct test_job){.job = {.run = job_run, .inbox = ib}, .gate = g, .index = index};
}

/* Takes what the inbox holds within timeout_ms (0: what is there now) into got[], appending
 * after *n; returns how many came. */
static unsigned take(struct core_offload_inbox *ib, int timeout_ms, struct test_job **got,
                     unsigned *n)
{
    struct pollfd p = {.fd = ib->fd, .events = POLLIN};
    unsigned before = *n;

    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    for (struct core_offload_job *j = core_offload_inbox_take(ib); j; j = j->next)
        got[(*n)++] = (struct test_job *)j;
    return *n - before;
}

/* Takes until want jobs came in all, within WAIT_MS; asserts. */
static void take_until(struct core_offload_inbox *ib, struct test_job **got, unsigned *n,
                       unsigned want)
{
    for (int i = 0; *n < want && i < WAIT_MS / 10; i++)
        (void)take(ib, 10, got, n);
    assert_int_equal(*n, want);
}

static void test_offload_jobs_run_on_workers_and_come_back(void **state)
{
    static struct test_job jobs[N_JOBS];
    struct test_job *got[N_JOBS];
    struct core_offload_inbox ib;
    struct core_offload *o;
    unsigned n = 0;

    (void)state;
    assert_int_equal(core_offload_inbox_init(&ib), 0);
    assert_int_equal(core_offload_new(4, SCRATCH, NULL, &o), 0);
    for (unsigned i = 0; i < N_JOBS; i++) {
        job_init(&jobs[i], &ib, NULL, i);
        core_offload_submit(o, &jobs[i].job);
    }
    take_until(&ib, got, &n, N_JOBS);
    for (unsigned i = 0; i < N_JOBS; i++) {
        assert_false(pthread_equal(jobs[i].ran_on, pthread_self()));
        assert_true(jobs[i].had_scratch);
    }
    core_offload_free(o);
    core_offload_inbox_fini(&ib);
}

static void test_offload_blocked_job_others_still_run(void **state)
{
    struct test_job blocked, quick, *got[2];
    struct core_offload_inbox ib;
    struct core_offload *o;
    struct gate g;
    unsigned n = 0;

    (void)state;
    gate_init(&g);
    assert_int_equal(core_offload_inbox_init(&ib), 0);
    assert_int_equal(core_offload_new(2, SCRATCH, NULL, &o), 0);
    job_init(&blocked, &ib, &g, 0);
    job_init(&quick, &ib, NULL, 1);
    core_offload_submit(o, &blocked.job);
    core_offload_submit(o, &quick.job);
    /* The quick job comes back while the first one waits at its gate. */
    take_until(&ib, got, &n, 1);
    assert_ptr_equal(got[0], &quick);
    gate_open(&g);
    take_until(&ib, got, &n, 2);
    assert_ptr_equal(got[1], &blocked);
    assert_false(pthread_equal(quick.ran_on, blocked.ran_on));
    core_offload_free(o);
    core_offload_inbox_fini(&ib);
    gate_fini(&g);
}

static void test_offload_at_max_threads_jobs_wait_in_order(void **state)
{
    struct test_job jobs[3], *got[3];
    struct core_offload_inbox ib;
    struct core_offload *o;
    struct gate g;
    unsigned n = 0;

    (void)state;
    gate_init(&g);
    assert_int_equal(core_offload_inbox_init(&ib), 0);
    assert_int_equal(core_offload_new(1, SCRATCH, NULL, &o), 0);
    job_init(&jobs[0], &ib, &g, 0);
    job_init(&jobs[1], &ib, NULL, 1);
    job_init(&jobs[2], &ib, NULL, 2);
    for (unsigned i = 0; i < 3; i++)
        core_offload_submit(o, &jobs[i].job);
    /* One thread, held by the first job: nothing can have come back. */
    assert_int_equal(take(&ib, 0, got, &n), 0);
    gate_open(&g);
    take_until(&ib, got, &n, 3);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(got[i]->index, i);
    assert_true(pthread_equal(jobs[0].ran_on, jobs[2].ran_on));
    core_offload_free(o);
    core_offload_inbox_fini(&ib);
    gate_fini(&g);
}

static void test_offload_free_runs_queued_jobs(void **state)
{
    static struct test_job jobs[N_JOBS];
    struct test_job *got[N_JOBS];
    struct core_offload_inbox ib;
    struct core_offload *o;
    unsigned n = 0;

    (void)state;
    assert_int_equal(core_offload_inbox_init(&ib), 0);
    assert_int_equal(core_offload_new(2, SCRATCH, NULL, &o), 0);
    for (unsigned i = 0; i < N_JOBS; i++) {
        job_init(&jobs[i], &ib, NULL, i);
        core_offload_submit(o, &jobs[i].job);
    }
    core_offload_free(o);
    /* Every job ran and was posted before free returned. */
    assert_int_equal(take(&ib, 0, got, &n), N_JOBS);
    core_offload_inbox_fini(&ib);
}

static void test_offload_new_zero_threads_is_einval(void **state)
{
    struct core_offload *o = NULL;

    (void)state;
    assert_int_equal(core_offload_new(0, SCRATCH, NULL, &o), -EINVAL);
    assert_null(o);
    core_offload_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offload_jobs_run_on_workers_and_come_back),
        cmocka_unit_test(test_offload_blocked_job_others_still_run),
        cmocka_unit_test(test_offload_at_max_threads_jobs_wait_in_order),
        cmocka_unit_test(test_offload_free_runs_queued_jobs),
        cmocka_unit_test(test_offload_new_zero_threads_is_einval),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
