/*
 * How many messages a uring loop's next wait asks for (core/batch.h): one at a time while the
 * load brings fewer than CORE_BATCH_MIN per turn, with a probe for more after CORE_BATCH_PROBE
 * turns of 2 or 3; more (a quarter more each turn) while the load brings what was asked for; at
 * once what came when the window ran out first; never more than the loop's connections can
 * bring or CORE_BATCH_MAX.
 */
#include "core/batch.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* The wait after turns that each handled got inputs, from a fresh loop. */
static unsigned after(unsigned turns, unsigned got, unsigned max)
{
    struct core_batch b = {0};

    for (unsigned i = 0; i < turns; i++)
        core_batch_turned(&b, got, max);
    return b.want;
}

static void test_batch_one_at_a_time_never_waits_for_more(void **state)
{
    (void)state;
    assert_int_equal(after(1000, 0, 50), 1); /* turns woken by timers */
    assert_int_equal(after(1000, 1, 50), 1);
    for (unsigned got = 2; got < CORE_BATCH_MIN; got++)
        assert_int_equal(after(1, got, 50), 1);
}

static void test_batch_probes_now_and_then_when_turns_bring_a_few(void **state)
{
    struct core_batch b = {0};
    unsigned probes = 0;

    (void)state;
    /* A loop just ahead of its load: 2 inputs a turn. One wait in CORE_BATCH_PROBE asks for
     * CORE_BATCH_MIN; when its window runs out with 2, the next asks for one again. */
    for (unsigned i = 0; i < 10 * CORE_BATCH_PROBE; i++) {
        core_batch_turned(&b, 2, 50);
        if (b.want > 1) {
            assert_int_equal(b.want, CORE_BATCH_MIN);
            probes++;
        }
    }
    assert_int_equal(probes, 10);
    /* The probe found the load: it asked for 4 and got 4, and the waits climb from there. */
    b = (struct core_batch){0};
    for (unsigned i = 0; i < CORE_BATCH_PROBE; i++)
        core_batch_turned(&b, 3, 50);
    assert_int_equal(b.want, CORE_BATCH_MIN);
    core_batch_turned(&b, CORE_BATCH_MIN, 50);
    assert_int_equal(b.want, CORE_BATCH_MIN + CORE_BATCH_MIN / 4);
    /* Too few connections to bring CORE_BATCH_MIN: no probe. */
    assert_int_equal(after(10 * CORE_BATCH_PROBE, 2, CORE_BATCH_MIN - 1), 1);
}

static void test_batch_grows_while_the_load_brings_what_was_asked(void **state)
{
    struct core_batch b = {0};
    unsigned turns = 0;

    (void)state;
    assert_int_equal(after(1, CORE_BATCH_MIN, 50), CORE_BATCH_MIN + CORE_BATCH_MIN / 4);
    assert_int_equal(after(1, 8, 50), 10);
    core_batch_turned(&b, 8, 50);
    core_batch_turned(&b, 12, 50); /* asked for 10, more came */
    assert_int_equal(b.want, 15);
    /* A closed loop of 500 connections: every wait gets what it asked for, and the ask climbs
     * to the most within a few turns. */
    b = (struct core_batch){0};
    core_batch_turned(&b, 8, core_batch_max(500));
    while (b.want < CORE_BATCH_MAX && turns++ < 20)
        core_batch_turned(&b, b.want, core_batch_max(500));
    assert_int_equal(b.want, CORE_BATCH_MAX);
    assert_true(turns < 12);
    core_batch_turned(&b, b.want, core_batch_max(500));
    assert_int_equal(b.want, CORE_BATCH_MAX);
}

static void test_batch_window_run_out_falls_to_what_came(void **state)
{
    struct core_batch b = {.want = 64};

    (void)state;
    core_batch_turned(&b, 20, 64);
    assert_int_equal(b.want, 20);
    core_batch_turned(&b, CORE_BATCH_MIN, 64);
    assert_int_equal(b.want, CORE_BATCH_MIN);
    /* A load that fell to one message at a time: the next wait asks for one. */
    b.want = 64;
    core_batch_turned(&b, 1, 64);
    assert_int_equal(b.want, 1);
    b.want = 64;
    core_batch_turned(&b, CORE_BATCH_MIN - 1, 64);
    assert_int_equal(b.want, 1);
}

static void test_batch_bounded_by_the_connections(void **state)
{
    (void)state;
    assert_int_equal(core_batch_max(0), 1);
    assert_int_equal(core_batch_max(1), 1);
    assert_int_equal(core_batch_max(12), 12);
    assert_int_equal(core_batch_max(500), CORE_BATCH_MAX);
    assert_int_equal(after(1, 40, core_batch_max(12)), 12);
    assert_int_equal(after(5, 12, core_batch_max(12)), 12);
    /* Fewer connections than CORE_BATCH_MIN: always one. */
    assert_int_equal(after(1, 5, core_batch_max(3)), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_one_at_a_time_never_waits_for_more),
        cmocka_unit_test(test_batch_probes_now_and_then_when_turns_bring_a_few),
        cmocka_unit_test(test_batch_grows_while_the_load_brings_what_was_asked),
        cmocka_unit_test(test_batch_window_run_out_falls_to_what_came),
        cmocka_unit_test(test_batch_bounded_by_the_connections),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
