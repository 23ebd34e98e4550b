/*
 * The descriptor budget: the reserve is 768 fds or half a low limit, the listeners' connections
 * together are admitted up to the rest and no further, a max_connections beyond it is capped
 * with a reason, and the soft limit is raised to the hard one.
 */
#include "core/fdbudget.h"

#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#define LOW 1000 /* the soft limit the budget first sees: below 2 x 768 */

static void test_fdbudget_low_limit_keeps_half_and_admits_the_rest(void **state)
{
    struct core_fdbudget_info b;
    unsigned taken = 0;

    (void)state;
    core_fdbudget_get(&b);
    assert_int_equal(b.limit, LOW);
    assert_int_equal(b.reserve, LOW / 2);
    assert_int_equal(b.conns_max, LOW / 2);
    assert_int_equal(b.api_conns, LOW / 2 * 2 / 3);
    assert_int_equal(core_fdbudget_api_conns(), LOW / 2 * 2 / 3);
    while (taken < 2 * LOW && core_fdbudget_conn_take())
        taken++;
    assert_int_equal(taken, LOW / 2);
    core_fdbudget_get(&b);
    assert_int_equal(b.conns, LOW / 2);
    assert_false(core_fdbudget_conn_take());
    core_fdbudget_conn_end();
    assert_true(core_fdbudget_conn_take());
    for (unsigned i = 0; i < taken; i++)
        core_fdbudget_conn_end();
    core_fdbudget_get(&b);
    assert_int_equal(b.conns, 0);
}

static void test_fdbudget_cap_says_why(void **state)
{
    char note[256];
    uint64_t eff;

    (void)state;
    assert_false(core_fdbudget_cap(100, &eff, note, sizeof(note)));
    assert_int_equal(eff, 100);
    assert_true(core_fdbudget_cap(1000, &eff, note, sizeof(note)));
    assert_int_equal(eff, LOW / 2);
    assert_non_null(strstr(note, "max_connections 1000 is capped to 500"));
    assert_non_null(strstr(note, "descriptor limit 1000"));
}

static void test_fdbudget_raise_sets_soft_to_hard(void **state)
{
    struct core_fdbudget_info b;
    uint64_t before, after;
    struct rlimit rl;

    (void)state;
    assert_int_equal(core_fdbudget_raise(&before, &after), 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(before, LOW);
    assert_int_equal(after, rl.rlim_max);
    assert_int_equal(rl.rlim_cur, rl.rlim_max);
    core_fdbudget_get(&b);
    assert_int_equal(b.limit, rl.rlim_max);
    assert_int_equal(b.reserve, rl.rlim_max >= 2 * CORE_FDBUDGET_RESERVE ? CORE_FDBUDGET_RESERVE
                                                                         : rl.rlim_max / 2);
}

static void test_fdbudget_open_fds_counts_this_process(void **state)
{
    long n0 = core_fdbudget_open_fds(), n1;
    int fd = dup(0);

    (void)state;
    assert_true(n0 >= 3);
    assert_true(fd >= 0);
    n1 = core_fdbudget_open_fds();
    close(fd);
    assert_int_equal(n1, n0 + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fdbudget_low_limit_keeps_half_and_admits_the_rest),
        cmocka_unit_test(test_fdbudget_cap_says_why),
        cmocka_unit_test(test_fdbudget_raise_sets_soft_to_hard),
        cmocka_unit_test(test_fdbudget_open_fds_counts_this_process),
    };
    struct rlimit rl;

    /* Before the budget's first use, which reads the soft limit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_max < LOW)
        return 1;
    rl.rlim_cur = LOW;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
