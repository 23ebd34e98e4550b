#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/metrics.h"

#define THREADS 4
#define ADDS 100000

static void *adder(void *arg)
{
    struct core_metrics *m = arg;

    for (int i = 0; i < ADDS; i++) {
        core_metrics_add(m, CORE_CTR_BYTES_IN, 3);
        core_metrics_svc_add(m, 1, 1);
    }
    return NULL;
}

static void test_metrics_concurrent_adds_sum_exactly(void **state)
{
    struct core_metrics m;
    struct core_metrics_snapshot s;
    pthread_t t[THREADS];

    (void)state;
    core_metrics_init(&m);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, adder, &m), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    core_metrics_snapshot(&m, &s);
    assert_int_equal(s.c[CORE_CTR_BYTES_IN], 3ull * ADDS * THREADS);
    assert_int_equal(s.svc[1], (uint64_t)ADDS * THREADS);
    assert_int_equal(s.c[CORE_CTR_BYTES_OUT], 0);
}

static void test_metrics_gauge_goes_up_and_down(void **state)
{
    struct core_metrics m;
    struct core_metrics_snapshot s;

    (void)state;
    core_metrics_init(&m);
    core_metrics_add(&m, CORE_CTR_CONNECTIONS_ACTIVE, 2);
    core_metrics_sub(&m, CORE_CTR_CONNECTIONS_ACTIVE, 1);
    core_metrics_snapshot(&m, &s);
    assert_int_equal(s.c[CORE_CTR_CONNECTIONS_ACTIVE], 1);
}

static void test_metrics_json_names_every_counter(void **state)
{
    static const char *const names[] = {"dropped_too_long", "other"};
    struct core_metrics m;
    struct core_metrics_snapshot s;
    json_t *j;

    (void)state;
    core_metrics_init(&m);
    core_metrics_add(&m, CORE_CTR_DATAGRAMS_IN, 5);
    core_metrics_svc_add(&m, 0, 9);
    core_metrics_snapshot(&m, &s);
    j = core_metrics_to_json(&s, names, 2);
    assert_non_null(j);
    for (int c = 0; c < CORE_CTR_COUNT; c++)
        assert_true(json_is_integer(json_object_get(j, core_counter_name(c))));
    assert_int_equal(json_object_size(j), CORE_CTR_COUNT + 2); /* + service, latency */
    assert_int_equal(json_integer_value(json_object_get(j, "datagrams_in")), 5);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "service"), "dropped_too_long")), 9);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "service"), "other")),
                     0);
    json_decref(j);
}

static void test_latency_bucket_low_and_bucket_agree_with_quarter_width(void **state)
{
    unsigned last = core_latency_bucket(UINT64_MAX);

    (void)state;
    assert_true(last < CORE_LATENCY_BUCKETS);
    assert_true(core_latency_bucket_low(last + 1) == UINT64_MAX);
    for (unsigned i = 0; i < last; i++) {
        uint64_t low = core_latency_bucket_low(i), next = core_latency_bucket_low(i + 1);

        if (core_latency_bucket(low) != i || core_latency_bucket(next - 1) != i)
            fail_msg("bucket %u: [%llu, %llu) does not map back", i, (unsigned long long)low,
                     (unsigned long long)next);
        if (i >= 4 && next - low > low / 4)
            fail_msg("bucket %u is wider than a quarter of its low", i);
    }
}

static void test_latency_summary_of_empty_histogram_is_all_zero(void **state)
{
    struct core_metrics m;
    struct core_metrics_snapshot s;
    struct core_latency_summary sum;

    (void)state;
    core_metrics_init(&m);
    core_metrics_snapshot(&m, &s);
    memset(&sum, 0xff, sizeof(sum));
    core_latency_summarize(&s, &sum);
    assert_int_equal(sum.count, 0);
    assert_int_equal(sum.sum_ns, 0);
    assert_int_equal(sum.p50_ns, 0);
    assert_int_equal(sum.p999_ns, 0);
    assert_int_equal(sum.max_ns, 0);
    assert_int_equal(core_latency_percentile(s.latency, 0, 0, 500), 0);
}

static void test_latency_percentiles_are_bucket_highs_clamped_to_max(void **state)
{
    struct core_metrics m;
    struct core_metrics_snapshot s;
    struct core_latency_summary sum;

    (void)state;
    core_metrics_init(&m);
    for (uint64_t i = 1; i <= 100; i++)
        core_metrics_record_latency(&m, i * 1000); /* 1 us to 100 us */
    core_metrics_snapshot(&m, &s);
    core_latency_summarize(&s, &sum);
    assert_int_equal(sum.count, 100);
    assert_int_equal(sum.sum_ns, 5050000);
    assert_int_equal(sum.max_ns, 100000);
    assert_int_equal(sum.p50_ns, 57343);  /* rank 50: 50000 in [49152, 57344) */
    assert_int_equal(sum.p90_ns, 98303);  /* rank 90: 90000 in [81920, 98304) */
    assert_int_equal(sum.p99_ns, 100000); /* rank 99: 99000 in [98304, 114688), clamped */
    assert_int_equal(sum.p999_ns, 100000);
    assert_int_equal(core_latency_percentile(s.latency, 100, 100000, 10), 1023); /* rank 1 */
    assert_int_equal(core_latency_percentile(s.latency, 100, 100000, 1000), 100000);
}

static void test_latency_single_small_value_is_exact(void **state)
{
    struct core_metrics m;
    struct core_metrics_snapshot s;
    struct core_latency_summary sum;

    (void)state;
    core_metrics_init(&m);
    core_metrics_record_latency(&m, 7);
    core_metrics_snapshot(&m, &s);
    core_latency_summarize(&s, &sum);
    assert_int_equal(sum.count, 1);
    assert_int_equal(sum.p50_ns, 7);
    assert_int_equal(sum.p999_ns, 7);
    assert_int_equal(sum.max_ns, 7);
}

/* A snapshot skips the buckets while nothing was recorded (told by the max): a time of 0 is
 * recorded all the same, counted in its bucket, the max then 1. */
static void test_latency_zero_time_is_seen_by_a_snapshot(void **state)
{
    struct core_metrics m;
    struct core_metrics_snapshot s;
    struct core_latency_summary sum;

    (void)state;
    core_metrics_init(&m);
    memset(&s, 0xff, sizeof(s));
    core_metrics_snapshot(&m, &s);
    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS; i++)
        assert_int_equal(s.latency[i], 0);
    assert_int_equal(s.latency_sum_ns, 0);
    core_metrics_record_latency(&m, 0);
    core_metrics_snapshot(&m, &s);
    core_latency_summarize(&s, &sum);
    assert_int_equal(sum.count, 1);
    assert_int_equal(s.latency[0], 1);
    assert_int_equal(sum.sum_ns, 0);
    assert_int_equal(sum.max_ns, 1);
    assert_int_equal(sum.p50_ns, 0);
}

static void test_latency_since_counts_only_the_new_requests(void **state)
{
    uint64_t before[CORE_LATENCY_BUCKETS + 1];
    struct core_metrics m;
    struct core_metrics_snapshot s;
    struct core_latency_summary sum;

    (void)state;
    core_metrics_init(&m);
    for (uint64_t i = 0; i < 1000; i++)
        core_metrics_record_latency(&m, 1000000); /* 1 ms, long ago */
    core_metrics_record_latency(&m, 50000000);    /* 50 ms: the cumulative max */
    core_metrics_snapshot(&m, &s);
    memcpy(before, s.latency, sizeof(s.latency));
    before[CORE_LATENCY_BUCKETS] = s.latency_sum_ns;

    /* Nothing since: all zero. */
    core_latency_summarize_since(before, &s, &sum);
    assert_int_equal(sum.count, 0);
    assert_int_equal(sum.p99_ns, 0);

    /* 100 requests of 10 us since: their percentiles, not the old 1 ms ones; the max is the
     * top of their bucket, not the cumulative 50 ms. */
    for (uint64_t i = 0; i < 100; i++)
        core_metrics_record_latency(&m, 10000);
    core_metrics_snapshot(&m, &s);
    core_latency_summarize_since(before, &s, &sum);
    assert_int_equal(sum.count, 100);
    assert_int_equal(sum.sum_ns, 100 * 10000);
    assert_int_equal(sum.p50_ns, 10239); /* 10000 in [8192, 10240) */
    assert_int_equal(sum.p999_ns, 10239);
    assert_int_equal(sum.max_ns, 10239);

    /* A histogram that shrank (replaced) counts whole. */
    core_metrics_init(&m);
    core_metrics_record_latency(&m, 7);
    core_metrics_snapshot(&m, &s);
    core_latency_summarize_since(before, &s, &sum);
    assert_int_equal(sum.count, 1);
    assert_int_equal(sum.p50_ns, 7);
    assert_int_equal(sum.max_ns, 7);
}

static void *recorder(void *arg)
{
    struct core_metrics *m = arg;

    for (uint64_t i = 1; i <= ADDS; i++)
        core_metrics_record_latency(m, i);
    return NULL;
}

static void test_latency_concurrent_records_count_exactly(void **state)
{
    struct core_metrics m;
    struct core_metrics_snapshot s;
    struct core_latency_summary sum;
    pthread_t t[THREADS];

    (void)state;
    core_metrics_init(&m);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, recorder, &m), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    core_metrics_snapshot(&m, &s);
    core_latency_summarize(&s, &sum);
    assert_int_equal(sum.count, (uint64_t)ADDS * THREADS);
    assert_int_equal(sum.sum_ns, (uint64_t)ADDS * (ADDS + 1) / 2 * THREADS);
    assert_int_equal(sum.max_ns, ADDS);
}

static void test_metrics_json_latency_round_trips(void **state)
{
    static const uint64_t values[] = {3, 900, 900, 15000, 2000000, 2500000000ull};
    struct core_metrics m;
    struct core_metrics_snapshot s;
    json_t *j, *lat;

    (void)state;
    core_metrics_init(&m);
    core_metrics_add(&m, CORE_CTR_BYTES_OUT, 42);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        core_metrics_record_latency(&m, values[i]);
    core_metrics_snapshot(&m, &s);
    j = core_metrics_to_json(&s, NULL, 0);
    assert_non_null(j);
    lat = json_object_get(j, "latency");
    assert_int_equal(json_integer_value(json_object_get(lat, "count")), 6);
    assert_int_equal(json_integer_value(json_object_get(lat, "sum_ns")), 2502016803ll);
    assert_int_equal(json_integer_value(json_object_get(lat, "max_ns")), 2500000000ll);
    assert_int_equal(json_integer_value(json_object_get(lat, "p50_ns")), 1023); /* [896, 1024) */
    assert_true(json_is_integer(json_object_get(lat, "p90_ns")));
    assert_true(json_is_integer(json_object_get(lat, "p99_ns")));
    assert_true(json_is_integer(json_object_get(lat, "p999_ns")));
    assert_int_equal(json_object_size(lat), 7);
    json_decref(j);
}

static uint64_t counter(struct core_metrics *m, enum core_counter c)
{
    return atomic_load_explicit(&m->c[c], memory_order_relaxed);
}

/* Blocks are zeroed, apart, cache-line aligned, reused zeroed once given back, and shared with
 * a child forked after (the process model's children count into them). */
static void test_metrics_alloc_blocks_are_zeroed_reused_and_shared_with_children(void **state)
{
    enum { N = 300 }; /* more than one slab holds */
    struct core_metrics *ms[N], *again;
    pid_t pid;
    int status;

    (void)state;
    for (int i = 0; i < N; i++) {
        ms[i] = core_metrics_alloc();
        assert_non_null(ms[i]);
        assert_int_equal((uintptr_t)ms[i] % 64, 0);
        assert_int_equal(counter(ms[i], CORE_CTR_BYTES_IN), 0);
        assert_int_equal(atomic_load(&ms[i]->latency_max_ns), 0);
        for (int j = 0; j < i; j++)
            assert_true((char *)ms[j] + sizeof(struct core_metrics) <= (char *)ms[i] ||
                        (char *)ms[i] + sizeof(struct core_metrics) <= (char *)ms[j]);
        core_metrics_add(ms[i], CORE_CTR_BYTES_IN, (uint64_t)i + 1);
        atomic_store(&ms[i]->latency_max_ns, 7);
    }
    core_metrics_release(ms[5]);
    again = core_metrics_alloc();
    assert_ptr_equal(again, ms[5]);
    assert_int_equal(counter(again, CORE_CTR_BYTES_IN), 0);
    assert_int_equal(atomic_load(&again->latency_max_ns), 0);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        core_metrics_add(ms[N - 1], CORE_CTR_BYTES_OUT, 42);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(counter(ms[N - 1], CORE_CTR_BYTES_OUT), 42);
    assert_int_equal(counter(ms[N - 2], CORE_CTR_BYTES_IN), N - 1); /* its neighbour's own */
    for (int i = 0; i < N; i++)
        core_metrics_release(ms[i]);
    core_metrics_release(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_concurrent_adds_sum_exactly),
        cmocka_unit_test(test_metrics_gauge_goes_up_and_down),
        cmocka_unit_test(test_metrics_json_names_every_counter),
        cmocka_unit_test(test_latency_bucket_low_and_bucket_agree_with_quarter_width),
        cmocka_unit_test(test_latency_summary_of_empty_histogram_is_all_zero),
        cmocka_unit_test(test_latency_percentiles_are_bucket_highs_clamped_to_max),
        cmocka_unit_test(test_latency_single_small_value_is_exact),
        cmocka_unit_test(test_latency_zero_time_is_seen_by_a_snapshot),
        cmocka_unit_test(test_latency_since_counts_only_the_new_requests),
        cmocka_unit_test(test_latency_concurrent_records_count_exactly),
        cmocka_unit_test(test_metrics_json_latency_round_trips),
        cmocka_unit_test(test_metrics_alloc_blocks_are_zeroed_reused_and_shared_with_children),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
