/*
 * How many completions a uring loop's next wait asks for (core/batch.h): one at a time while
 * the load brings fewer than CORE_BATCH_MIN per turn, more (a quarter more each turn) while it
 * brings what was asked for, at once what came when the window ran out first, and never more
 * than the loop's connections can bring or CORE_BATCH_MAX.
 */
#include "core/batch.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

static void test_batch_one_at_a_time_never_waits_for_more(void **state)
{
    (void)state;
    assert_int_equal(core_batch_next(1, 0, 50), 1); /* a turn woken for a timer */
    assert_int_equal(core_batch_next(1, 1, 50), 1);
    for (unsigned got = 2; got < CORE_BATCH_MIN; got++)
        assert_int_equal(core_batch_next(1, got, 50), 1);
}

static void test_batch_grows_while_the_load_brings_what_was_asked(void **state)
{
    unsigned want = 1, turns = 0;

    (void)state;
    assert_int_equal(core_batch_next(1, CORE_BATCH_MIN, 50), CORE_BATCH_MIN + CORE_BATCH_MIN / 4);
    assert_int_equal(core_batch_next(8, 8, 50), 10);
    assert_int_equal(core_batch_next(8, 12, 50), 15);
    /* A closed loop of 500 connections: every wait gets what it asked for, and the ask climbs
     * to the most within a few turns. */
    want = core_batch_next(want, 8, core_batch_max(500));
    while (want < CORE_BATCH_MAX && turns++ < 20)
        want = core_batch_next(want, want, core_batch_max(500));
    assert_int_equal(want, CORE_BATCH_MAX);
    assert_true(turns < 12);
    assert_int_equal(core_batch_next(want, want, core_batch_max(500)), CORE_BATCH_MAX);
}

static void test_batch_window_run_out_falls_to_what_came(void **state)
{
    (void)state;
    assert_int_equal(core_batch_next(64, 20, 64), 20);
    assert_int_equal(core_batch_next(64, CORE_BATCH_MIN, 64), CORE_BATCH_MIN);
    /* A load that fell to one message at a time: the next wait asks for one. */
    assert_int_equal(core_batch_next(64, 1, 64), 1);
    assert_int_equal(core_batch_next(64, CORE_BATCH_MIN - 1, 64), 1);
}

static void test_batch_bounded_by_the_connections(void **state)
{
    (void)state;
    assert_int_equal(core_batch_max(0), 1);
    assert_int_equal(core_batch_max(1), 1);
    assert_int_equal(core_batch_max(12), 12);
    assert_int_equal(core_batch_max(500), CORE_BATCH_MAX);
    assert_int_equal(core_batch_next(1, 40, core_batch_max(12)), 12);
    assert_int_equal(core_batch_next(12, 12, core_batch_max(12)), 12);
    /* Fewer connections than CORE_BATCH_MIN: always one. */
    assert_int_equal(core_batch_next(1, 3, core_batch_max(3)), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_one_at_a_time_never_waits_for_more),
        cmocka_unit_test(test_batch_grows_while_the_load_brings_what_was_asked),
        cmocka_unit_test(test_batch_window_run_out_falls_to_what_came),
        cmocka_unit_test(test_batch_bounded_by_the_connections),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
