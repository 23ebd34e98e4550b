#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/emitter.h"
#include "core/events.h"
#include "core/metrics.h"

#define CHILD_EXIT_MS 10000 /* a child that emits into a full channel must still end by then */

/* A bus with one subscriber, counters a forked child shares, and an emitter for listener "b1". */
struct fx {
    struct core_events *bus;
    struct core_events_sub *sub;
    struct core_metrics *m; /* MAP_SHARED */
    struct core_emitter em;
    int ch[2]; /* a channel: [0] receiving, [1] sending */
};

static void nop_notify(void *ctx)
{
    (void)ctx;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    bool caught_up;
    void *m;

    assert_non_null(f);
    m = mmap(NULL, sizeof(*f->m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    f->m = m;
    core_metrics_init(f->m);
    assert_int_equal(core_events_new(&f->bus), 0);
    assert_int_equal(core_events_subscribe(f->bus, 0, nop_notify, NULL, &f->sub, &caught_up), 0);
    core_emitter_init(&f->em, f->bus, "b1", f->m);
    assert_int_equal(core_emitter_channel(f->ch), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    close(f->ch[0]);
    close(f->ch[1]);
    core_events_unsubscribe(f->sub);
    core_events_free(f->bus);
    munmap(f->m, sizeof(*f->m));
    free(f);
    return 0;
}

static uint64_t dropped(const struct fx *f)
{
    return atomic_load_explicit(&f->m->c[CORE_CTR_EVENTS_DROPPED], memory_order_relaxed);
}

/* Asserts that the next event on the bus is type with data want. */
static void expect_event(struct fx *f, const char *type, const char *want)
{
    struct core_event *ev = NULL;
    const char *text;
    size_t len;

    assert_int_equal(core_events_next(f->sub, &ev), 1);
    assert_string_equal(ev->type, type);
    assert_int_equal(core_event_data(ev, &text, &len), 0);
    assert_string_equal(text, want);
    core_event_unref(ev);
}

static void expect_no_event(struct fx *f)
{
    struct core_event *ev = NULL;

    assert_int_equal(core_events_next(f->sub, &ev), 0);
}

/* Waits for child pid to exit 0; fails when it takes longer than CHILD_EXIT_MS (blocked). */
static void wait_child(pid_t pid)
{
    int64_t deadline = core_now_ms() + CHILD_EXIT_MS;
    int status = 0;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        assert_true(r >= 0);
        if (r == pid)
            break;
        if (core_now_ms() > deadline) {
            (void)kill(pid, SIGKILL);
            (void)waitpid(pid, NULL, 0);
            fail_msg("the emitting child did not end within %d ms: blocked on the channel",
                     CHILD_EXIT_MS);
        }
        (void)poll(NULL, 0, 5);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Forks a child that points the emitter at the channel, emits n events {"n": i} of type
 * "t.ev" (with pad bytes of padding each), and exits; waits for it. */
static void child_emits(struct fx *f, int n, size_t pad)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char *p = malloc(pad + 1);

        if (!p)
            _exit(2);
        memset(p, 'x', pad);
        p[pad] = '\0';
        core_emitter_child(&f->em, f->ch[1]);
        for (int i = 0; i < n; i++)
            core_svc_emit(&f->em, "t.ev",
                          pad ? json_pack("{s:i, s:s}", "n", i, "pad", p)
                              : json_pack("{s:i}", "n", i));
        free(p);
        _exit(0);
    }
    wait_child(pid);
}

static void test_emitter_in_the_daemon_publishes_at_once_with_the_listener(void **state)
{
    struct fx *f = *state;

    core_svc_emit(&f->em, "backup.stored", json_pack("{s:s, s:i}", "name", "a.txt", "version", 2));
    expect_event(f, "backup.stored", "{\"listener\":\"b1\",\"name\":\"a.txt\",\"version\":2}");
    /* Not an object, no type, NULL emitter: nothing, and nothing leaks. */
    core_svc_emit(&f->em, "x.y", json_string("no"));
    core_svc_emit(&f->em, "", json_object());
    core_svc_emit(&f->em, "a-type-that-is-much-longer-than-31-bytes", json_object());
    core_svc_emit(NULL, "x.y", json_object());
    expect_no_event(f);
    assert_int_equal(dropped(f), 0);
}

static void test_emitter_child_events_cross_the_channel_in_order(void **state)
{
    struct fx *f = *state;

    child_emits(f, 3, 0);
    /* Nothing reached the bus from the child itself: only the pump publishes. */
    expect_no_event(f);
    assert_int_equal(core_emitter_pump(&f->em, f->ch[0], 64), 3);
    expect_event(f, "t.ev", "{\"listener\":\"b1\",\"n\":0}");
    expect_event(f, "t.ev", "{\"listener\":\"b1\",\"n\":1}");
    expect_event(f, "t.ev", "{\"listener\":\"b1\",\"n\":2}");
    expect_no_event(f);
    assert_int_equal(core_emitter_pump(&f->em, f->ch[0], 64), 0);
    assert_int_equal(dropped(f), 0);
}

static void test_emitter_full_channel_drops_and_counts_never_blocks(void **state)
{
    struct fx *f = *state;
    const int n = 20000;
    unsigned got = 0, k;

    /* Nobody reads while the child emits: the channel fills, the child goes on. */
    child_emits(f, n, 200);
    assert_true(dropped(f) > 0);
    while ((k = core_emitter_pump(&f->em, f->ch[0], 64)) > 0)
        got += k;
    assert_true(got > 0);
    assert_int_equal(got + dropped(f), n);
    /* What came is the first events, in order: a drop loses the newest. */
    for (unsigned i = 0; i < got; i++) {
        struct core_event *ev = NULL;
        const char *text;
        size_t len;
        char want[32];

        assert_int_equal(core_events_next(f->sub, &ev), 1);
        snprintf(want, sizeof(want), "\"n\":%u,", i);
        assert_int_equal(core_event_data(ev, &text, &len), 0);
        assert_non_null(strstr(text, want));
        core_event_unref(ev);
        if (i == CORE_EVENTS_QUEUE_MAX - 1)
            break; /* the subscriber's queue holds no more */
    }
}

static void test_emitter_oversized_event_is_dropped_and_counted(void **state)
{
    struct fx *f = *state;

    child_emits(f, 1, CORE_EMIT_MAX);
    assert_int_equal(dropped(f), 1);
    assert_int_equal(core_emitter_pump(&f->em, f->ch[0], 64), 0);
    expect_no_event(f);
}

static void test_emitter_malformed_message_is_dropped_and_counted(void **state)
{
    struct fx *f = *state;
    static const char no_type[] = "{\"a\":1}";
    static const char bad_json[] = "t.ev\0{\"a\":";

    assert_true(write(f->ch[1], no_type, sizeof(no_type) - 1) > 0);
    assert_true(write(f->ch[1], bad_json, sizeof(bad_json) - 1) > 0);
    assert_int_equal(core_emitter_pump(&f->em, f->ch[0], 64), 2);
    assert_int_equal(dropped(f), 2);
    expect_no_event(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_emitter_in_the_daemon_publishes_at_once_with_the_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emitter_child_events_cross_the_channel_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_emitter_full_channel_drops_and_counts_never_blocks,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_emitter_oversized_event_is_dropped_and_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_emitter_malformed_message_is_dropped_and_counted,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
