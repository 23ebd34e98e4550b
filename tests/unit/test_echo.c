#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "svc/echo.h"

struct fixture {
    struct core_metrics metrics;
    void *inst;
    uint8_t sess[64];
    struct core_buf out;
};

static struct fixture *start(enum core_transport t, const char *opts_text)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    json_t *opts = opts_text ? json_loads(opts_text, 0, NULL) : NULL, *checked = NULL;
    struct core_svc_env env = {.listener_id = "t", .state_dir = "/nonexistent"};

    core_metrics_init(&f->metrics);
    env.metrics = &f->metrics;
    assert_true(svc_echo.session_size <= sizeof(f->sess));
    assert_int_equal(core_service_options_check(&svc_echo, opts, t, &checked, NULL), 0);
    assert_int_equal(svc_echo.instance_new(checked, t, &env, &f->inst, NULL), 0);
    json_decref(opts);
    json_decref(checked);
    return f;
}

static void finish(struct fixture *f)
{
    svc_echo.instance_free(f->inst);
    core_buf_fini(&f->out);
    test_free(f);
}

static void test_echo_stream_echoes_every_chunk_until_eof(void **state)
{
    struct fixture *f = start(CORE_TCP, NULL);

    (void)state;
    assert_int_equal(svc_echo.session_open(f->inst, f->sess, &f->out), CORE_VERDICT_MORE);
    assert_int_equal(f->out.len, 0);
    assert_int_equal(svc_echo.session_feed(f->sess, (const uint8_t *)"ciao ", 5, &f->out),
                     CORE_VERDICT_MORE);
    assert_int_equal(svc_echo.session_feed(f->sess, (const uint8_t *)"mondo", 5, &f->out),
                     CORE_VERDICT_MORE);
    assert_int_equal(f->out.len, 10);
    assert_memory_equal(f->out.data, "ciao mondo", 10);
    assert_int_equal(svc_echo.session_eof(f->sess, &f->out), CORE_VERDICT_CLOSE);
    assert_int_equal(f->out.len, 10);
    svc_echo.session_close(f->sess, true);
    finish(f);
}

static void test_echo_once_closes_after_first_message(void **state)
{
    struct fixture *f = start(CORE_TCP, "{\"mode\":\"once\"}");

    (void)state;
    assert_int_equal(svc_echo.session_open(f->inst, f->sess, &f->out), CORE_VERDICT_MORE);
    assert_int_equal(svc_echo.session_feed(f->sess, (const uint8_t *)"hello", 5, &f->out),
                     CORE_VERDICT_CLOSE);
    assert_int_equal(f->out.len, 5);
    assert_memory_equal(f->out.data, "hello", 5);
    svc_echo.session_close(f->sess, true);
    finish(f);
}

static void test_echo_datagram_answers_same_bytes(void **state)
{
    struct fixture *f = start(CORE_UDP, NULL);
    const uint8_t msg[] = {'d', 0, 'g', 0xff};

    (void)state;
    assert_int_equal(svc_echo.datagram(f->inst, msg, sizeof(msg), &f->out), 1);
    assert_int_equal(f->out.len, sizeof(msg));
    assert_memory_equal(f->out.data, msg, sizeof(msg));
    finish(f);
}

static void test_echo_datagram_too_long_dropped_and_counted(void **state)
{
    struct fixture *f = start(CORE_UDP, "{\"max_datagram\":4}");
    struct core_metrics_snapshot s;

    (void)state;
    assert_int_equal(svc_echo.datagram(f->inst, (const uint8_t *)"12345", 5, &f->out), 0);
    assert_int_equal(f->out.len, 0);
    assert_int_equal(svc_echo.datagram(f->inst, (const uint8_t *)"1234", 4, &f->out), 1);
    core_metrics_snapshot(&f->metrics, &s);
    assert_string_equal(svc_echo.counters[0], "dropped_too_long");
    assert_int_equal(s.svc[0], 1);
    finish(f);
}

static void test_echo_options_per_transport(void **state)
{
    json_t *opts = json_pack("{s:s}", "mode", "once"), *out = NULL;
    struct core_err err = {0};

    (void)state;
    assert_int_equal(core_service_options_check(&svc_echo, opts, CORE_UDP, &out, &err), -EINVAL);
    assert_string_equal(err.field, "options.mode");
    assert_null(out);
    json_decref(opts);
    opts = json_pack("{s:i}", "max_datagram", 70000);
    assert_int_equal(core_service_options_check(&svc_echo, opts, CORE_UDP, &out, &err), -EINVAL);
    assert_string_equal(err.field, "options.max_datagram");
    json_decref(opts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_stream_echoes_every_chunk_until_eof),
        cmocka_unit_test(test_echo_once_closes_after_first_message),
        cmocka_unit_test(test_echo_datagram_answers_same_bytes),
        cmocka_unit_test(test_echo_datagram_too_long_dropped_and_counted),
        cmocka_unit_test(test_echo_options_per_transport),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
