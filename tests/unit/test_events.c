#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"

static void count_notify(void *ctx)
{
    atomic_fetch_add((_Atomic int *)ctx, 1);
}

static void publish_n(struct core_events *e, int n)
{
    for (int i = 0; i < n; i++)
        core_events_publish(e, "test", json_pack("{s:i}", "n", i));
}

static void test_events_subscriber_gets_events_in_order(void **state)
{
    struct core_events *e;
    struct core_events_sub *s;
    struct core_event *ev;
    const char *text, *again;
    size_t len;
    _Atomic int notified = 0;
    bool caught_up = true;
    uint64_t base;

    (void)state;
    assert_int_equal(core_events_new(&e), 0);
    base = core_events_last_id(e);
    assert_true(base > 1700000000ull * 1000000u); /* from the wall clock, in microseconds */
    publish_n(e, 2);                              /* before the subscription: not delivered */
    assert_int_equal(core_events_subscribe(e, 0, count_notify, &notified, &s, &caught_up), 0);
    assert_false(caught_up);
    assert_true(core_events_has_subscribers(e));
    assert_int_equal(core_events_next(s, &ev), 0);
    core_events_publish(e, "listener.created", json_pack("{s:s}", "id", "a"));
    core_events_publish(e, "listener.deleted", json_pack("{s:s}", "id", "a"));
    assert_int_equal(atomic_load(&notified), 2);
    assert_int_equal(core_events_next(s, &ev), 1);
    assert_int_equal(ev->id, base + 3);
    assert_string_equal(ev->type, "listener.created");
    assert_int_equal(core_event_data(ev, &text, &len), 0);
    assert_string_equal(text, "{\"id\":\"a\"}");
    assert_int_equal(len, strlen(text));
    /* Made once: asked again, the same text. */
    assert_int_equal(core_event_data(ev, &again, &len), 0);
    assert_ptr_equal(again, text);
    core_event_unref(ev);
    assert_int_equal(core_events_next(s, &ev), 1);
    assert_int_equal(ev->id, base + 4);
    assert_string_equal(ev->type, "listener.deleted");
    core_event_unref(ev);
    assert_int_equal(core_events_next(s, &ev), 0);
    assert_int_equal(core_events_last_id(e), base + 4);
    core_events_unsubscribe(s);
    assert_false(core_events_has_subscribers(e));
    core_events_free(e);
}

static void test_events_last_id_in_ring_replays_missed(void **state)
{
    struct core_events *e;
    struct core_events_sub *s;
    struct core_event *ev;
    _Atomic int notified = 0;
    bool caught_up = false;
    uint64_t base;

    (void)state;
    assert_int_equal(core_events_new(&e), 0);
    base = core_events_last_id(e);
    publish_n(e, 10);
    assert_int_equal(core_events_subscribe(e, base + 7, count_notify, &notified, &s, &caught_up),
                     0);
    assert_true(caught_up);
    for (uint64_t want = base + 8; want <= base + 10; want++) {
        assert_int_equal(core_events_next(s, &ev), 1);
        assert_int_equal(ev->id, want);
        core_event_unref(ev);
    }
    assert_int_equal(core_events_next(s, &ev), 0);
    core_events_unsubscribe(s);
    core_events_free(e);
}

static void test_events_last_id_too_old_or_unknown_not_caught_up(void **state)
{
    struct core_events *e;
    struct core_events_sub *s;
    struct core_event *ev;
    _Atomic int notified = 0;
    bool caught_up = true;
    uint64_t base;

    (void)state;
    assert_int_equal(core_events_new(&e), 0);
    base = core_events_last_id(e);
    publish_n(e, CORE_EVENTS_RING + 5);
    /* Event base+5 was pushed out of the ring: the subscriber needs a snapshot. */
    assert_int_equal(core_events_subscribe(e, base + 5, count_notify, &notified, &s, &caught_up),
                     0);
    assert_false(caught_up);
    assert_int_equal(core_events_next(s, &ev), 0);
    core_events_unsubscribe(s);
    /* Ids of another run, before or after this one's, are unknown too. */
    for (uint64_t id = 1; id != 0; id = id == 1 ? base - 1 : id == base - 1 ? base + 100000 : 0) {
        caught_up = true;
        assert_int_equal(core_events_subscribe(e, id, count_notify, &notified, &s, &caught_up), 0);
        assert_false(caught_up);
        core_events_unsubscribe(s);
    }
    /* The oldest id still held replays everything after it. */
    assert_int_equal(core_events_subscribe(e, base + 6, count_notify, &notified, &s, &caught_up),
                     0);
    assert_true(caught_up);
    for (uint64_t want = base + 7; want <= base + CORE_EVENTS_RING + 5; want++) {
        assert_int_equal(core_events_next(s, &ev), 1);
        assert_int_equal(ev->id, want);
        core_event_unref(ev);
    }
    core_events_unsubscribe(s);
    core_events_free(e);
}

static void test_events_slow_subscriber_overrun_others_unaffected(void **state)
{
    struct core_events *e;
    struct core_events_sub *slow, *fast;
    struct core_event *ev;
    _Atomic int n_slow = 0, n_fast = 0;
    bool caught_up;
    int got = 0, r;

    (void)state;
    assert_int_equal(core_events_new(&e), 0);
    assert_int_equal(core_events_subscribe(e, 0, count_notify, &n_slow, &slow, &caught_up), 0);
    assert_int_equal(core_events_subscribe(e, 0, count_notify, &n_fast, &fast, &caught_up), 0);
    for (int i = 0; i < CORE_EVENTS_QUEUE_MAX + 10; i++) {
        publish_n(e, 1);
        assert_int_equal(core_events_next(fast, &ev), 1);
        core_event_unref(ev);
    }
    /* The slow one gets what fitted in its queue, then the overrun. */
    while ((r = core_events_next(slow, &ev)) == 1) {
        core_event_unref(ev);
        got++;
    }
    assert_int_equal(got, CORE_EVENTS_QUEUE_MAX);
    assert_int_equal(r, -EPIPE);
    assert_int_equal(core_events_next(fast, &ev), 0);
    core_events_unsubscribe(slow);
    core_events_unsubscribe(fast);
    core_events_free(e);
}

static void *publisher(void *arg)
{
    publish_n(arg, 500);
    return NULL;
}

static void test_events_concurrent_publishers_ids_unique_and_dense(void **state)
{
    struct core_events *e;
    struct core_events_sub *s;
    struct core_event *ev;
    _Atomic int notified = 0;
    pthread_t t[2];
    bool caught_up;
    uint64_t prev, base;

    (void)state;
    assert_int_equal(core_events_new(&e), 0);
    base = prev = core_events_last_id(e);
    assert_int_equal(core_events_subscribe(e, 0, count_notify, &notified, &s, &caught_up), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, publisher, e), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    while (core_events_next(s, &ev) == 1) {
        assert_int_equal(ev->id, prev + 1);
        prev = ev->id;
        core_event_unref(ev);
    }
    assert_int_equal(prev, base + 1000);
    core_events_unsubscribe(s);
    core_events_free(e);
}

static void test_events_recent_lists_newest_first_without_metrics_and_caps(void **state)
{
    struct core_events *e;
    json_t *list, *first;
    uint64_t base;

    (void)state;
    assert_int_equal(core_events_new(&e), 0);
    base = core_events_last_id(e);
    assert_int_equal(core_events_recent(e, 50, &list), 0);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    core_events_publish(e, "listener.created", json_pack("{s:s}", "id", "a"));
    core_events_publish(e, "metrics", json_pack("{s:i}", "interval_ms", 1000));
    core_events_publish(e, "listener.state",
                        json_pack("{s:s, s:s}", "id", "a", "state", "running"));
    assert_int_equal(core_events_recent(e, 50, &list), 0);
    assert_int_equal(json_array_size(list), 2);
    first = json_array_get(list, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "id")), base + 3);
    assert_string_equal(json_string_value(json_object_get(first, "event")), "listener.state");
    assert_string_equal(json_string_value(json_object_get(json_object_get(first, "data"), "state")),
                        "running");
    /* "2026-12-06T23:10:00.123Z" */
    assert_int_equal(strlen(json_string_value(json_object_get(first, "time"))), 24);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "event")),
                        "listener.created");
    json_decref(list);

    /* The limit, and only the last CORE_EVENTS_RECENT are kept whatever the ring holds. */
    publish_n(e, CORE_EVENTS_RECENT + 20);
    assert_int_equal(core_events_recent(e, 1, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")),
                     base + 3 + CORE_EVENTS_RECENT + 20);
    json_decref(list);
    assert_int_equal(core_events_recent(e, 1000, &list), 0);
    assert_int_equal(json_array_size(list), CORE_EVENTS_RECENT);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_array_get(list, CORE_EVENTS_RECENT - 1), "data"), "n")),
        20);
    json_decref(list);
    core_events_free(e);
}

/* What a lazily published event's data is made of: counts how often it is made and dropped. */
struct lazy_obj {
    int n;
    _Atomic int *made, *dropped;
};

static json_t *lazy_make(const void *p)
{
    const struct lazy_obj *o = p;

    atomic_fetch_add(o->made, 1);
    return json_pack("{s:i}", "n", o->n);
}

static void lazy_drop(void *p)
{
    struct lazy_obj *o = p;

    atomic_fetch_add(o->dropped, 1);
    free(o);
}

static struct lazy_obj *lazy_obj(int n, _Atomic int *made, _Atomic int *dropped)
{
    struct lazy_obj *o = malloc(sizeof(*o));

    assert_non_null(o);
    *o = (struct lazy_obj){.n = n, .made = made, .dropped = dropped};
    return o;
}

static void test_events_lazy_data_made_once_by_a_reader_never_without_one(void **state)
{
    _Atomic int made = 0, dropped = 0, notified = 0;
    struct core_events *e;
    struct core_events_sub *a, *b;
    struct core_event *ev;
    const char *text, *again;
    size_t len;
    bool caught_up;

    (void)state;
    assert_int_equal(core_events_new(&e), 0);
    /* Nobody reads it: the ring lets it go without its data ever being made. */
    core_events_publish_lazy(e, "test", lazy_obj(1, &made, &dropped), lazy_make, lazy_drop);
    for (int i = 0; i < CORE_EVENTS_RING; i++)
        core_events_publish(e, "test", json_pack("{s:i}", "n", i));
    assert_int_equal(atomic_load(&made), 0);
    assert_int_equal(atomic_load(&dropped), 1);

    /* Two readers: made once, as core_events_publish() would have sent it; the object is
     * dropped as soon as the text exists. */
    assert_int_equal(core_events_subscribe(e, 0, count_notify, &notified, &a, &caught_up), 0);
    assert_int_equal(core_events_subscribe(e, 0, count_notify, &notified, &b, &caught_up), 0);
    core_events_publish_lazy(e, "listener.state", lazy_obj(7, &made, &dropped), lazy_make,
                             lazy_drop);
    assert_int_equal(core_events_next(a, &ev), 1);
    assert_string_equal(ev->type, "listener.state");
    assert_int_equal(core_event_data(ev, &text, &len), 0);
    assert_string_equal(text, "{\"n\":7}");
    assert_int_equal(len, strlen(text));
    assert_int_equal(atomic_load(&made), 1);
    assert_int_equal(atomic_load(&dropped), 2);
    core_event_unref(ev);
    assert_int_equal(core_events_next(b, &ev), 1);
    assert_int_equal(core_event_data(ev, &again, &len), 0);
    assert_string_equal(again, "{\"n\":7}");
    assert_int_equal(atomic_load(&made), 1);
    core_event_unref(ev);

    /* Without a bus, the object is still the callee's to drop. */
    core_events_publish_lazy(NULL, "test", lazy_obj(2, &made, &dropped), lazy_make, lazy_drop);
    assert_int_equal(atomic_load(&dropped), 3);
    core_events_unsubscribe(a);
    core_events_unsubscribe(b);
    core_events_free(e);
    assert_int_equal(atomic_load(&made), 1);
    assert_int_equal(atomic_load(&dropped), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_subscriber_gets_events_in_order),
        cmocka_unit_test(test_events_last_id_in_ring_replays_missed),
        cmocka_unit_test(test_events_last_id_too_old_or_unknown_not_caught_up),
        cmocka_unit_test(test_events_slow_subscriber_overrun_others_unaffected),
        cmocka_unit_test(test_events_concurrent_publishers_ids_unique_and_dense),
        cmocka_unit_test(test_events_recent_lists_newest_first_without_metrics_and_caps),
        cmocka_unit_test(test_events_lazy_data_made_once_by_a_reader_never_without_one),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
