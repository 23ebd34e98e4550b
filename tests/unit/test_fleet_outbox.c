/*
 * The confirm bookkeeping of reliable events (fleet/outbox.h), fed synthetic delivery tags,
 * acks and nacks as a broker's channel in confirm mode would give them: publish order, multiple
 * and out-of-order acks, nack and republish, a reconnect, and overflow.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fleet/outbox.h"

static int setup(void **state)
{
    struct fleet_outbox *o = NULL;

    if (fleet_outbox_new(8, &o) < 0)
        return -1;
    *state = o;
    return 0;
}

static int teardown(void **state)
{
    fleet_outbox_free(*state);
    return 0;
}

/* Pushes the event with seq: routing key "ev.n1.listener.state", body "{"seq":N}". */
static int push_seq(struct fleet_outbox *o, uint64_t seq)
{
    char id[64], body[64];
    struct fleet_outbox_msg m = {
        .routing_key = "ev.n1.listener.state",
        .kind = "listener.state",
        .message_id = id,
        .seq = seq,
        .timestamp = 1796558400,
        .body = body,
    };

    snprintf(id, sizeof(id), "n1:00112233aabbccdd:%llu", (unsigned long long)seq);
    m.body_len = (size_t)snprintf(body, sizeof(body), "{\"seq\":%llu}", (unsigned long long)seq);
    return fleet_outbox_push(o, &m);
}

/* Publishes the oldest unsent with tag and returns its seq (0 when nothing was unsent). */
static uint64_t publish(struct fleet_outbox *o, uint64_t tag)
{
    const struct fleet_outbox_msg *m = fleet_outbox_next_unsent(o);
    uint64_t seq;

    if (!m)
        return 0;
    seq = m->seq;
    assert_int_equal(fleet_outbox_sent(o, tag), 0);
    return seq;
}

static void test_outbox_new_rejects_zero_capacity(void **state)
{
    struct fleet_outbox *o = NULL;

    (void)state;
    assert_int_equal(fleet_outbox_new(0, &o), -EINVAL);
    assert_null(o);
    fleet_outbox_free(NULL);
}

static void test_outbox_push_copies_message(void **state)
{
    struct fleet_outbox *o = *state;
    char key[] = "ev.n1.backup.stored";
    char body[] = "{\"x\":1}";
    struct fleet_outbox_msg m = {.routing_key = key,
                                 .kind = "backup.stored",
                                 .message_id = "n1:b:1",
                                 .seq = 1,
                                 .timestamp = 99,
                                 .body = body,
                                 .body_len = strlen(body)};
    const struct fleet_outbox_msg *got;

    assert_int_equal(fleet_outbox_push(o, &m), 0);
    key[3] = 'X';
    body[2] = 'y';
    got = fleet_outbox_next_unsent(o);
    assert_non_null(got);
    assert_string_equal(got->routing_key, "ev.n1.backup.stored");
    assert_string_equal(got->kind, "backup.stored");
    assert_string_equal(got->message_id, "n1:b:1");
    assert_int_equal(got->seq, 1);
    assert_int_equal(got->timestamp, 99);
    assert_int_equal(got->body_len, 7);
    assert_memory_equal(got->body, "{\"x\":1}", 7);
    assert_int_equal(fleet_outbox_depth(o), 1);

    m.kind = NULL;
    assert_int_equal(fleet_outbox_push(o, &m), -EINVAL);
    m.kind = "backup.stored";
    m.body = NULL;
    assert_int_equal(fleet_outbox_push(o, &m), -EINVAL);
    m.body_len = 0;
    assert_int_equal(fleet_outbox_push(o, &m), 0);
    assert_int_equal(fleet_outbox_depth(o), 2);
}

static void test_outbox_publishes_in_order_and_multiple_ack_confirms_range(void **state)
{
    struct fleet_outbox *o = *state;
    struct fleet_outbox_stats st;

    for (uint64_t s = 1; s <= 4; s++)
        assert_int_equal(push_seq(o, s), 0);
    assert_int_equal(publish(o, 1), 1);
    assert_int_equal(publish(o, 2), 2);
    assert_int_equal(publish(o, 3), 3);
    assert_int_equal(publish(o, 4), 4);
    assert_null(fleet_outbox_next_unsent(o));
    assert_int_equal(fleet_outbox_sent(o, 5), -ENOENT);

    assert_int_equal(fleet_outbox_ack(o, 3, true), 3);
    assert_int_equal(fleet_outbox_depth(o), 1);
    assert_int_equal(fleet_outbox_ack(o, 3, true), 0); /* already settled */
    assert_int_equal(fleet_outbox_ack(o, 4, false), 1);
    fleet_outbox_stats(o, &st);
    assert_int_equal(st.published, 4);
    assert_int_equal(st.confirmed, 4);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.unsent, 0);
}

static void test_outbox_out_of_order_acks(void **state)
{
    struct fleet_outbox *o = *state;

    for (uint64_t s = 1; s <= 4; s++)
        assert_int_equal(push_seq(o, s), 0);
    for (uint64_t t = 1; t <= 4; t++)
        assert_int_equal(publish(o, t), t);
    assert_int_equal(fleet_outbox_ack(o, 3, false), 1);
    assert_int_equal(fleet_outbox_ack(o, 1, false), 1);
    assert_int_equal(fleet_outbox_depth(o), 2);
    /* what is left is 2 and 4, in order: a reconnect republishes them oldest first */
    fleet_outbox_reset(o);
    assert_int_equal(publish(o, 1), 2);
    assert_int_equal(publish(o, 2), 4);
    assert_int_equal(fleet_outbox_ack(o, 2, true), 2);
    assert_int_equal(fleet_outbox_depth(o), 0);
}

static void test_outbox_tags_must_increase(void **state)
{
    struct fleet_outbox *o = *state;

    assert_int_equal(push_seq(o, 1), 0);
    assert_int_equal(push_seq(o, 2), 0);
    assert_int_equal(fleet_outbox_sent(o, 0), -EINVAL);
    assert_int_equal(fleet_outbox_sent(o, 5), 0); /* tags 1-4 went to unreliable publishes */
    assert_int_equal(fleet_outbox_sent(o, 5), -EINVAL);
    assert_int_equal(fleet_outbox_sent(o, 3), -EINVAL);
    assert_int_equal(fleet_outbox_sent(o, 7), 0);
    /* an ack for tags the outbox does not hold (6: an unreliable publish) is ignored */
    assert_int_equal(fleet_outbox_ack(o, 6, false), 0);
    assert_int_equal(fleet_outbox_ack(o, 6, true), 1);
    assert_int_equal(fleet_outbox_next_unsent(o), NULL);
    assert_int_equal(fleet_outbox_depth(o), 1);
}

static void test_outbox_nack_republishes(void **state)
{
    struct fleet_outbox *o = *state;
    struct fleet_outbox_stats st;

    for (uint64_t s = 1; s <= 4; s++)
        assert_int_equal(push_seq(o, s), 0);
    for (uint64_t t = 1; t <= 4; t++)
        assert_int_equal(publish(o, t), t);
    assert_int_equal(fleet_outbox_nack(o, 2, true), 2); /* seq 1 and 2 */
    assert_int_equal(fleet_outbox_nack(o, 2, true), 0); /* not in flight any more */
    assert_int_equal(fleet_outbox_ack(o, 4, false), 1);
    fleet_outbox_stats(o, &st);
    assert_int_equal(st.nacked, 2);
    assert_int_equal(st.unsent, 2);
    assert_int_equal(st.depth, 3);
    /* republished oldest first with new tags */
    assert_int_equal(publish(o, 5), 1);
    assert_int_equal(publish(o, 6), 2);
    assert_null(fleet_outbox_next_unsent(o));
    assert_int_equal(fleet_outbox_nack(o, 6, false), 1); /* only seq 2 */
    assert_int_equal(publish(o, 7), 2);
    assert_int_equal(fleet_outbox_ack(o, 7, true), 3);
    fleet_outbox_stats(o, &st);
    assert_int_equal(st.published, 7);
    assert_int_equal(st.confirmed, 4);
    assert_int_equal(st.nacked, 3);
    assert_int_equal(st.depth, 0);
}

static void test_outbox_reset_after_reconnect(void **state)
{
    struct fleet_outbox *o = *state;
    struct fleet_outbox_stats st;

    for (uint64_t s = 1; s <= 5; s++)
        assert_int_equal(push_seq(o, s), 0);
    for (uint64_t t = 10; t <= 12; t++)
        assert_int_equal(publish(o, t), t - 9); /* seq 1..3 in flight, 4 and 5 unsent */
    assert_int_equal(fleet_outbox_ack(o, 10, false), 1);
    fleet_outbox_reset(o);
    fleet_outbox_stats(o, &st);
    assert_int_equal(st.depth, 4);
    assert_int_equal(st.unsent, 4);
    /* acks of the old connection's tags do nothing now */
    assert_int_equal(fleet_outbox_ack(o, 12, true), 0);
    /* tags start at 1 again, order kept */
    assert_int_equal(publish(o, 1), 2);
    assert_int_equal(publish(o, 2), 3);
    assert_int_equal(publish(o, 3), 4);
    assert_int_equal(publish(o, 4), 5);
    assert_int_equal(fleet_outbox_ack(o, 4, true), 4);
    fleet_outbox_stats(o, &st);
    assert_int_equal(st.confirmed, 5);
    assert_int_equal(st.published, 7);
    assert_int_equal(st.depth, 0);
}

static void test_outbox_overflow_drops_oldest(void **state)
{
    struct fleet_outbox *o = *state; /* capacity 8 */
    struct fleet_outbox_stats st;

    for (uint64_t s = 1; s <= 8; s++)
        assert_int_equal(push_seq(o, s), 0);
    assert_int_equal(publish(o, 1), 1);
    assert_int_equal(publish(o, 2), 2);
    assert_int_equal(push_seq(o, 9), 1);  /* drops seq 1 (in flight) */
    assert_int_equal(push_seq(o, 10), 1); /* drops seq 2 (in flight) */
    assert_int_equal(push_seq(o, 11), 1); /* drops seq 3 (unsent) */
    fleet_outbox_stats(o, &st);
    assert_int_equal(st.dropped_full, 3);
    assert_int_equal(st.depth, 8);
    assert_int_equal(st.unsent, 8);
    /* the late ack of a dropped message settles nothing */
    assert_int_equal(fleet_outbox_ack(o, 2, true), 0);
    for (uint64_t t = 3, want = 4; want <= 11; t++, want++)
        assert_int_equal(publish(o, t), want);
    assert_int_equal(fleet_outbox_ack(o, 10, true), 8);
    assert_int_equal(fleet_outbox_depth(o), 0);
}

static void test_outbox_ring_wraps_many_times(void **state)
{
    struct fleet_outbox *o = *state; /* capacity 8 */
    uint64_t tag = 0;

    for (uint64_t s = 1; s <= 100; s++) {
        assert_int_equal(push_seq(o, s), 0);
        assert_int_equal(publish(o, ++tag), s);
        if (s % 3 == 0)
            assert_int_equal(fleet_outbox_ack(o, tag, true), 3);
    }
    assert_int_equal(fleet_outbox_depth(o), 1);
    assert_int_equal(fleet_outbox_ack(o, tag, false), 1);
}

/* A plain model of the outbox: entries in push order, each with its seq and tag (0: unsent). */
struct model {
    size_t n;
    uint64_t seq[8];
    uint64_t tag[8];
};

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void model_settle(struct model *m, uint64_t tag, bool multiple, bool ack)
{
    size_t kept = 0;

    for (size_t i = 0; i < m->n; i++) {
        bool hit = m->tag[i] != 0 && (multiple ? m->tag[i] <= tag : m->tag[i] == tag);

        if (hit && ack)
            continue;
        m->seq[kept] = m->seq[i];
        m->tag[kept] = hit ? 0 : m->tag[i];
        kept++;
    }
    m->n = kept;
}

static void test_outbox_matches_model_under_random_operations(void **state)
{
    struct fleet_outbox *o = *state; /* capacity 8 */
    struct model m = {0};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    uint64_t seq = 0, tag = 0;

    for (int step = 0; step < 20000; step++) {
        uint64_t r = next_random(&x) % 100;
        const struct fleet_outbox_msg *want;
        size_t first = m.n;

        if (r < 35) {
            int dropped = m.n == 8;

            assert_int_equal(push_seq(o, ++seq), dropped);
            if (dropped) {
                memmove(m.seq, m.seq + 1, 7 * sizeof(m.seq[0]));
                memmove(m.tag, m.tag + 1, 7 * sizeof(m.tag[0]));
                m.n--;
            }
            m.seq[m.n] = seq;
            m.tag[m.n] = 0;
            m.n++;
        } else if (r < 70) {
            for (size_t i = 0; i < m.n && first == m.n; i++)
                if (m.tag[i] == 0)
                    first = i;
            if (first == m.n) {
                assert_int_equal(fleet_outbox_sent(o, tag + 1), -ENOENT);
            } else {
                assert_int_equal(fleet_outbox_sent(o, ++tag), 0);
                m.tag[first] = tag;
            }
        } else if (r < 97) {
            uint64_t t = tag ? 1 + next_random(&x) % tag : 0;
            bool multiple = next_random(&x) % 2;
            bool ack = r < 90;

            if (ack)
                fleet_outbox_ack(o, t, multiple);
            else
                fleet_outbox_nack(o, t, multiple);
            model_settle(&m, t, multiple, ack);
        } else {
            fleet_outbox_reset(o);
            for (size_t i = 0; i < m.n; i++)
                m.tag[i] = 0;
            tag = 0;
        }
        assert_int_equal(fleet_outbox_depth(o), m.n);
        first = m.n;
        for (size_t i = 0; i < m.n && first == m.n; i++)
            if (m.tag[i] == 0)
                first = i;
        want = fleet_outbox_next_unsent(o);
        if (first == m.n)
            assert_null(want);
        else
            assert_int_equal(want->seq, m.seq[first]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outbox_new_rejects_zero_capacity),
        cmocka_unit_test_setup_teardown(test_outbox_push_copies_message, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_outbox_publishes_in_order_and_multiple_ack_confirms_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_out_of_order_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_tags_must_increase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_nack_republishes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_reset_after_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_overflow_drops_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_ring_wraps_many_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_matches_model_under_random_operations, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
