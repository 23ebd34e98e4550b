#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>

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
    assert_int_equal(json_object_size(j), CORE_CTR_COUNT + 1);
    assert_int_equal(json_integer_value(json_object_get(j, "datagrams_in")), 5);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "service"), "dropped_too_long")), 9);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "service"), "other")),
                     0);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_concurrent_adds_sum_exactly),
        cmocka_unit_test(test_metrics_gauge_goes_up_and_down),
        cmocka_unit_test(test_metrics_json_names_every_counter),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
