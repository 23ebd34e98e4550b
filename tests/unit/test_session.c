#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/session.h"

/*
 * A tiny service: greets when asked; each input's first byte says what to do: 'm' echo and
 * more, 'c' answer and close, 'p' a pulled answer of three parts, 'e' an error answer.
 */
struct fake_inst {
    bool greet;
    unsigned closes;
    bool completed;
};

struct fake_sess {
    struct fake_inst *inst;
    unsigned pulls;
};

static int fake_open(void *inst, void *sess, struct core_buf *out)
{
    struct fake_sess *s = sess;

    s->inst = inst;
    if (s->inst->greet)
        (void)core_buf_append(out, "hi\n", 3);
    return CORE_VERDICT_MORE;
}

static int fake_feed(void *sess, const uint8_t *in, size_t len, struct core_buf *out)
{
    (void)sess;
    switch (in[0]) {
    case 'c':
        (void)core_buf_append(out, "bye\n", 4);
        return CORE_VERDICT_CLOSE;
    case 'p':
        (void)core_buf_append(out, "part1\n", 6);
        return CORE_VERDICT_PULL;
    case 'e':
        (void)core_buf_append(out, "ERR bad\n", 8);
        return -EINVAL;
    default:
        (void)core_buf_append(out, in, len);
        return CORE_VERDICT_MORE;
    }
}

static int fake_eof(void *sess, struct core_buf *out)
{
    (void)sess;
    (void)core_buf_append(out, "eof\n", 4);
    return CORE_VERDICT_CLOSE;
}

static int fake_pull(void *sess, struct core_buf *out)
{
    struct fake_sess *s = sess;

    s->pulls++;
    if (s->pulls == 1) {
        (void)core_buf_append(out, "part2\n", 6);
        return CORE_VERDICT_PULL;
    }
    /* The last part may be empty: the answer ends with the verdict alone. */
    return CORE_VERDICT_MORE;
}

static void fake_close(void *sess, bool completed)
{
    struct fake_sess *s = sess;

    s->inst->closes++;
    s->inst->completed = completed;
}

static const struct core_service fake_svc = {
    .name = "fake",
    .transports = CORE_TRANSPORT_BIT(CORE_TCP),
    .session_size = sizeof(struct fake_sess),
    .session_open = fake_open,
    .session_feed = fake_feed,
    .session_eof = fake_eof,
    .session_pull = fake_pull,
    .session_close = fake_close,
};

struct fixture {
    struct core_metrics m;
    struct fake_inst inst;
    struct core_session s;
};

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    core_metrics_init(&f->m);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    test_free(*state);
    return 0;
}

static uint64_t counter(struct fixture *f, enum core_counter c)
{
    return atomic_load(&f->m.c[c]);
}

/* How many service times were recorded. */
static uint64_t latencies(struct fixture *f)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < CORE_LATENCY_BUCKETS; i++)
        n += atomic_load(&f->m.latency[i]);
    return n;
}

static void input(struct fixture *f, const char *text)
{
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_READ);
    core_session_input(&f->s, (const uint8_t *)text, strlen(text));
}

/* Expects out to hold text, sends it all. */
static void expect_write(struct fixture *f, const char *text)
{
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_WRITE);
    assert_int_equal(f->s.out.len, strlen(text));
    assert_memory_equal(f->s.out.data, text, strlen(text));
    core_session_sent(&f->s, f->s.out.len);
}

static void test_session_open_greeting_is_written_then_read(void **state)
{
    struct fixture *f = *state;

    f->inst.greet = true;
    assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
    /* Part of the greeting sent: the rest is still to write, no service time yet. */
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_WRITE);
    core_session_sent(&f->s, 1);
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_WRITE);
    assert_int_equal(latencies(f), 0);
    expect_write(f, "i\n");
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_READ);
    assert_int_equal(counter(f, CORE_CTR_BYTES_OUT), 3);
    assert_int_equal(latencies(f), 1);
    core_session_close(&f->s);
    assert_int_equal(f->inst.closes, 1);
    assert_false(f->inst.completed);
}

static void test_session_open_no_greeting_reads_first(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_READ);
    assert_int_equal(latencies(f), 0);
    core_session_close(&f->s);
    assert_int_equal(f->inst.closes, 1);
}

static void test_session_more_answers_and_reads_again(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
    input(f, "mciao");
    expect_write(f, "mciao");
    input(f, "m!");
    expect_write(f, "m!");
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_READ);
    assert_int_equal(counter(f, CORE_CTR_BYTES_IN), 7);
    assert_int_equal(counter(f, CORE_CTR_BYTES_OUT), 7);
    assert_int_equal(latencies(f), 2);
    assert_int_equal(counter(f, CORE_CTR_ERRORS), 0);
    core_session_close(&f->s);
}

static void test_session_close_verdict_lingers_completed(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
    input(f, "c");
    expect_write(f, "bye\n");
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_LINGER);
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_LINGER);
    /* A failure while lingering counts nothing and leaves the session completed. */
    core_session_fail(&f->s, -EIO);
    assert_int_equal(counter(f, CORE_CTR_ERRORS), 0);
    core_session_close(&f->s);
    assert_true(f->inst.completed);
    assert_int_equal(latencies(f), 1);
}

static void test_session_pull_writes_every_part_then_reads(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
    input(f, "p");
    expect_write(f, "part1\n");
    expect_write(f, "part2\n");
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_READ);
    /* One answer in three parts: one service time. */
    assert_int_equal(latencies(f), 1);
    assert_int_equal(counter(f, CORE_CTR_BYTES_OUT), 12);
    core_session_close(&f->s);
}

static void test_session_error_sends_answer_counts_once_and_lingers(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
    input(f, "e");
    assert_int_equal(counter(f, CORE_CTR_ERRORS), 0);
    expect_write(f, "ERR bad\n");
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_LINGER);
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_LINGER);
    assert_int_equal(counter(f, CORE_CTR_ERRORS), 1);
    core_session_close(&f->s);
    assert_false(f->inst.completed);
}

static void test_session_eof_answers_once_more_then_lingers(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
    input(f, "mx");
    expect_write(f, "mx");
    input(f, "");
    expect_write(f, "eof\n");
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_LINGER);
    assert_int_equal(counter(f, CORE_CTR_BYTES_IN), 2);
    core_session_close(&f->s);
    assert_true(f->inst.completed);
}

static void test_session_fail_counts_by_cause_and_closes(void **state)
{
    static const struct {
        int error;
        enum core_counter counted; /* CORE_CTR_COUNT: none */
    } cases[] = {
        {-ETIMEDOUT, CORE_CTR_IDLE_TIMEOUTS}, {-EIO, CORE_CTR_ERRORS},
        {-ECONNRESET, CORE_CTR_COUNT},        {-EPIPE, CORE_CTR_COUNT},
        {-ECANCELED, CORE_CTR_COUNT},
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        core_metrics_init(&f->m);
        f->inst = (struct fake_inst){0};
        assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
        input(f, "mabc");
        core_session_fail(&f->s, cases[i].error);
        assert_int_equal(core_session_next(&f->s), CORE_SESSION_CLOSE);
        assert_int_equal(counter(f, CORE_CTR_ERRORS), cases[i].counted == CORE_CTR_ERRORS);
        assert_int_equal(counter(f, CORE_CTR_IDLE_TIMEOUTS),
                         cases[i].counted == CORE_CTR_IDLE_TIMEOUTS);
        /* The answer cut off was never sent, and records no service time. */
        assert_int_equal(counter(f, CORE_CTR_BYTES_OUT), 0);
        assert_int_equal(latencies(f), 0);
        core_session_close(&f->s);
        assert_int_equal(f->inst.closes, 1);
        assert_false(f->inst.completed);
    }
}

static void test_session_socket_halves_carry_bytes(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[16];
    char got[8];
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(core_session_open(&f->s, &fake_svc, &f->inst, &f->m, 1), 0);
    assert_int_equal(core_session_recv(&f->s, sv[0], buf, sizeof(buf)), -EAGAIN);
    assert_int_equal(write(sv[1], "mping", 5), 5);
    assert_int_equal(core_session_recv(&f->s, sv[0], buf, sizeof(buf)), 0);
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_WRITE);
    assert_int_equal(core_session_send(&f->s, sv[0]), 0);
    assert_int_equal(read(sv[1], got, sizeof(got)), 5);
    assert_memory_equal(got, "mping", 5);
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_READ);
    /* The client closes its side: the end of input reaches the service. */
    assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
    assert_int_equal(core_session_recv(&f->s, sv[0], buf, sizeof(buf)), 0);
    assert_int_equal(core_session_send(&f->s, sv[0]), 0);
    assert_int_equal(read(sv[1], got, sizeof(got)), 4);
    assert_memory_equal(got, "eof\n", 4);
    assert_int_equal(core_session_next(&f->s), CORE_SESSION_LINGER);
    core_session_close(&f->s);
    close(sv[0]);
    close(sv[1]);
    assert_true(f->inst.completed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_session_open_greeting_is_written_then_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_open_no_greeting_reads_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_more_answers_and_reads_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_close_verdict_lingers_completed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_pull_writes_every_part_then_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_error_sends_answer_counts_once_and_lingers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_eof_answers_once_more_then_lingers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_fail_counts_by_cause_and_closes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_socket_halves_carry_bytes, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
