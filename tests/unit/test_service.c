#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "core/config.h"
#include "core/service.h"
#include "svc/backup.h"
#include "svc/backup_store.h"
#include "svc/date.h"
#include "svc/echo.h"

/* ---- a service made for the tests: one option of each type, one of each transport ---- */

static const char *const colour_choices[] = {"red", "green", "blue", NULL};

static const struct core_option test_options[] = {
    {.name = "colour",
     .type = CORE_OPTION_STRING,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP) | CORE_TRANSPORT_BIT(CORE_UDP),
     .live = true,
     .default_string = "red",
     .choices = colour_choices,
     .help = "a colour"},
    {.name = "label",
     .type = CORE_OPTION_STRING,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .default_string = "x",
     .help = "any text"},
    {.name = "size",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_UDP),
     .default_integer = 10,
     .minimum = 1,
     .maximum = 100,
     .unit = "bytes",
     .help = "a size"},
    {.name = "count",
     .type = CORE_OPTION_INTEGER,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .default_integer = 0,
     .minimum = 0,
     .maximum = CORE_OPTION_NO_MAXIMUM,
     .help = "a count; 0: none"},
    {.name = "strict",
     .type = CORE_OPTION_BOOLEAN,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .default_boolean = true,
     .help = "a flag"},
    {.name = "where",
     .type = CORE_OPTION_PATH,
     .transports = CORE_TRANSPORT_BIT(CORE_TCP),
     .help = "a directory; default: computed"},
};

/* Refuses label "bad" after the table passed it: what a table cannot express. */
static int test_verify(json_t *opts, enum core_transport t, struct core_err *err)
{
    const char *label = json_string_value(json_object_get(opts, "label"));

    if (t == CORE_TCP) {
        assert_non_null(json_object_get(opts, "count")); /* defaults are filled in first */
        if (strcmp(label, "bad") == 0)
            return core_err_set(err, -EINVAL, "options.label", "options.label: not bad");
    }
    return 0;
}

static const char *const test_counters[] = {"hits"};
static const char *const test_counter_help[] = {"requests answered"};

static const struct core_service test_svc = {
    .name = "test",
    .help = "a service of the tests",
    .transports = CORE_TRANSPORT_BIT(CORE_TCP) | CORE_TRANSPORT_BIT(CORE_UDP),
    .refused_models = 1u << CORE_MODEL_PROCESS,
    .counters = test_counters,
    .counter_help = test_counter_help,
    .n_counters = 1,
    .options = test_options,
    .n_options = sizeof(test_options) / sizeof(test_options[0]),
    .options_verify = test_verify,
};

static const struct core_service udp_only_svc = {
    .name = "aaa-udp",
    .transports = CORE_TRANSPORT_BIT(CORE_UDP),
};

/* Checks text as options of test_svc for t: returns the checked object, or NULL with err. */
static json_t *check(const char *text, enum core_transport t, int want, struct core_err *err)
{
    json_t *in = text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL, *out = NULL;

    if (text)
        assert_non_null(in);
    assert_int_equal(core_service_options_check(&test_svc, in, t, &out, err), want);
    json_decref(in);
    return out;
}

static void test_service_options_absent_defaults_filled_in_table_order(void **state)
{
    json_t *o;
    char *text;

    (void)state;
    o = check(NULL, CORE_TCP, 0, NULL);
    text = json_dumps(o, JSON_COMPACT);
    /* "where" has a computed default: absent; "size" is UDP's */
    assert_string_equal(text, "{\"colour\":\"red\",\"label\":\"x\",\"count\":0,\"strict\":true}");
    free(text);
    json_decref(o);
    o = check("{}", CORE_UDP, 0, NULL);
    text = json_dumps(o, JSON_COMPACT);
    assert_string_equal(text, "{\"colour\":\"red\",\"size\":10}");
    free(text);
    json_decref(o);
}

static void test_service_options_given_values_kept(void **state)
{
    json_t *o;
    char *text;

    (void)state;
    o = check("{\"where\":\"/srv/x\",\"count\":9223372036854775807,\"strict\":false,"
              "\"colour\":\"blue\"}",
              CORE_TCP, 0, NULL);
    text = json_dumps(o, JSON_COMPACT);
    assert_string_equal(text, "{\"colour\":\"blue\",\"label\":\"x\",\"count\":9223372036854775807,"
                              "\"strict\":false,\"where\":\"/srv/x\"}");
    free(text);
    json_decref(o);
    o = check("{\"size\":1}", CORE_UDP, 0, NULL);
    json_decref(o);
    o = check("{\"size\":100}", CORE_UDP, 0, NULL);
    json_decref(o);
}

static void test_service_options_bad_values_name_the_field(void **state)
{
    static const struct {
        const char *opts;
        enum core_transport t;
        const char *field, *msg;
    } cases[] = {
        {"{\"colour\":\"pink\"}", CORE_TCP, "options.colour",
         "options.colour: must be \"red\", \"green\" or \"blue\": a colour"},
        {"{\"colour\":1}", CORE_UDP, "options.colour", NULL},
        {"{\"label\":\"a\\u0000b\"}", CORE_TCP, "options.label",
         "options.label: must be a string: any text"},
        {"{\"label\":null}", CORE_TCP, "options.label", NULL},
        {"{\"size\":0}", CORE_UDP, "options.size",
         "options.size: must be an integer from 1 to 100 (bytes): a size"},
        {"{\"size\":101}", CORE_UDP, "options.size", NULL},
        {"{\"size\":1.5}", CORE_UDP, "options.size", NULL},
        {"{\"size\":\"10\"}", CORE_UDP, "options.size", NULL},
        {"{\"count\":-1}", CORE_TCP, "options.count",
         "options.count: must be an integer of at least 0: a count; 0: none"},
        {"{\"strict\":1}", CORE_TCP, "options.strict",
         "options.strict: must be true or false: a flag"},
        {"{\"where\":\"rel/dir\"}", CORE_TCP, "options.where", NULL},
        {"{\"where\":\"/a\\nb\"}", CORE_TCP, "options.where",
         "options.where: must not hold control characters"},
        {"{\"where\":7}", CORE_TCP, "options.where", NULL},
        /* unknown, and of the other transport */
        {"{\"shape\":\"round\"}", CORE_TCP, "options.shape",
         "options.shape: unknown option of test over tcp (it has colour, label, count, strict, "
         "where, tls)"},
        {"{\"size\":10}", CORE_TCP, "options.size", NULL},
        {"{\"label\":\"x\"}", CORE_UDP, "options.label",
         "options.label: unknown option of test over udp (it has colour, size)"},
        /* tls: every TCP service has it, checked by core/tls.c; not on UDP */
        {"{\"tls\":true}", CORE_TCP, "options.tls", NULL},
        {"{\"tls\":{\"cert_file\":\"/c\",\"key_file\":\"/k\",\"ca\":\"/a\"}}", CORE_TCP,
         "options.tls", NULL},
        {"{\"tls\":{\"key_file\":\"/k\"}}", CORE_TCP, "options.tls.cert_file", NULL},
        {"{\"tls\":{\"cert_file\":\"c.pem\",\"key_file\":\"/k\"}}", CORE_TCP,
         "options.tls.cert_file", NULL},
        {"{\"tls\":{\"cert_file\":\"/nonexistent/c.pem\",\"key_file\":\"/k\"}}", CORE_TCP,
         "options.tls.cert_file",
         "options.tls.cert_file: cannot read /nonexistent/c.pem: No such file or directory"},
        {"{\"tls\":{\"cert_file\":\"/dev/null\",\"key_file\":\"/k\"}}", CORE_TCP,
         "options.tls.cert_file", NULL},
        {"{\"tls\":{\"cert_file\":\"/c\",\"key_file\":\"/k\"}}", CORE_UDP, "options.tls", NULL},
        /* the hook, after the table */
        {"{\"label\":\"bad\"}", CORE_TCP, "options.label", "options.label: not bad"},
        {"[]", CORE_TCP, "options", "options: must be an object"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct core_err err = {0};

        if (check(cases[i].opts, cases[i].t, -EINVAL, &err))
            fail_msg("case %zu: checked", i);
        if (strcmp(err.field, cases[i].field) != 0)
            fail_msg("case %zu (%s): field %s, want %s", i, cases[i].opts, err.field,
                     cases[i].field);
        if (cases[i].msg && strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu (%s): message '%s', want '%s'", i, cases[i].opts, err.msg,
                     cases[i].msg);
    }
}

static void test_service_options_transport_not_spoken_names_transport(void **state)
{
    struct core_err err = {0};
    json_t *o = NULL;

    (void)state;
    assert_int_equal(core_service_options_check(&udp_only_svc, NULL, CORE_TCP, &o, &err), -EINVAL);
    assert_string_equal(err.field, "transport");
    assert_null(o);
}

static void test_service_json_shows_the_table(void **state)
{
    json_t *j = core_service_to_json(&test_svc);
    char *text = json_dumps(j, JSON_COMPACT);

    (void)state;
    assert_string_equal(
        text,
        "{\"name\":\"test\",\"help\":\"a service of the tests\",\"transports\":[\"tcp\",\"udp\"],"
        "\"models\":[\"sequential\",\"thread\",\"pool\",\"event\",\"uring\"],"
        "\"counters\":[{\"name\":\"hits\",\"help\":\"requests answered\",\"transports\":[\"tcp\","
        "\"udp\"]}],\"options\":["
        "{\"name\":\"colour\",\"type\":\"string\",\"default\":\"red\","
        "\"choices\":[\"red\",\"green\",\"blue\"],\"transports\":[\"tcp\",\"udp\"],\"live\":true,"
        "\"help\":\"a colour\"},"
        "{\"name\":\"label\",\"type\":\"string\",\"default\":\"x\",\"transports\":[\"tcp\"],"
        "\"live\":false,\"help\":\"any text\"},"
        "{\"name\":\"size\",\"type\":\"integer\",\"default\":10,\"minimum\":1,\"maximum\":100,"
        "\"unit\":\"bytes\",\"transports\":[\"udp\"],\"live\":false,\"help\":\"a size\"},"
        "{\"name\":\"count\",\"type\":\"integer\",\"default\":0,\"minimum\":0,"
        "\"transports\":[\"tcp\"],\"live\":false,\"help\":\"a count; 0: none\"},"
        "{\"name\":\"strict\",\"type\":\"boolean\",\"default\":true,\"transports\":[\"tcp\"],"
        "\"live\":false,\"help\":\"a flag\"},"
        "{\"name\":\"where\",\"type\":\"path\",\"default\":null,\"transports\":[\"tcp\"],"
        "\"live\":false,\"help\":\"a directory; default: computed\"},"
        "{\"name\":\"tls\",\"type\":\"object\",\"default\":null,\"transports\":[\"tcp\"],"
        "\"live\":true,\"help\":\"TLS on the listener: {\\\"cert_file\\\": \\\"/...\\\", "
        "\\\"key_file\\\": \\\"/...\\\"}, PEM, and \\\"client_ca_file\\\" to require client "
        "certificates that this CA signed\"}]}");
    free(text);
    json_decref(j);
}

static void test_service_list_sorted_udp_only_has_no_models(void **state)
{
    const struct core_service *const svcs[] = {&test_svc, &svc_echo, &udp_only_svc};
    const struct core_service_table t = {.svcs = svcs, .n = 3};
    json_t *list = core_services_to_json(&t);

    (void)state;
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")),
                        "aaa-udp");
    assert_int_equal(json_array_size(json_object_get(json_array_get(list, 0), "models")), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "name")),
                        "echo");
    assert_int_equal(json_array_size(json_object_get(json_array_get(list, 1), "models")), 6);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 2), "name")),
                        "test");
    json_decref(list);
}

/* A model the service refuses is refused for its listeners, naming "model"; others pass. */
static void test_service_refused_model_refused_for_a_listener(void **state)
{
    const struct core_service *const svcs[] = {&test_svc};
    const struct core_service_table t = {.svcs = svcs, .n = 1};
    struct core_listener_cfg cfg;
    struct core_err err = {0};
    json_t *j;

    (void)state;
    j = json_pack("{s:s, s:s, s:i, s:s}", "id", "t1", "service", "test", "port", 0, "model",
                  "process");
    assert_int_equal(core_listener_cfg_from_json(j, &t, false, &cfg, &err), -EINVAL);
    assert_string_equal(err.field, "model");
    json_decref(j);
    j = json_pack("{s:s, s:s, s:i, s:s}", "id", "t1", "service", "test", "port", 0, "model",
                  "event");
    assert_int_equal(core_listener_cfg_from_json(j, &t, false, &cfg, &err), 0);
    assert_string_equal(json_string_value(json_object_get(cfg.options, "colour")), "red");
    core_listener_cfg_fini(&cfg);
    json_decref(j);
}

/* ---- the services' own tables ---- */

static const struct core_service *const real[] = {&svc_backup, &svc_date, &svc_echo};

/* Every table is well formed: names unique, transports the service speaks, each default of its
 * type, in range or among the choices, and accepted by the validator; every counter has help. */
static void test_service_tables_well_formed(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof(real) / sizeof(real[0]); s++) {
        const struct core_service *svc = real[s];

        assert_non_null(svc->help);
        assert_true(svc->n_options > 0);
        assert_non_null(svc->counter_help);
        for (unsigned c = 0; c < svc->n_counters; c++)
            if (!svc->counter_help[c] || !svc->counter_help[c][0])
                fail_msg("%s: counter %s has no help", svc->name, svc->counters[c]);
        for (unsigned i = 0; i < svc->n_options; i++) {
            const struct core_option *o = &svc->options[i];

            assert_ptr_equal(core_service_option(svc, o->name), o);
            assert_non_null(o->help);
            assert_true(o->transports != 0 && (o->transports & ~svc->transports) == 0);
            assert_true((unsigned)o->type < CORE_OPTION_TYPE_COUNT);
            if (o->type == CORE_OPTION_INTEGER) {
                assert_true(o->minimum <= o->default_integer);
                assert_true(o->default_integer <= o->maximum);
            }
            if (o->choices) {
                bool found = false;

                assert_int_equal(o->type, CORE_OPTION_STRING);
                for (size_t k = 0; o->choices[k]; k++)
                    found = found || strcmp(o->choices[k], o->default_string) == 0;
                if (!found)
                    fail_msg("%s: default of %s is not a choice", svc->name, o->name);
            }
        }
        for (unsigned t = 0; t < CORE_TRANSPORT_COUNT; t++) {
            json_t *o = NULL;
            struct core_err err = {0};

            if (!(svc->transports & CORE_TRANSPORT_BIT(t)))
                continue;
            if (core_service_options_check(svc, NULL, (enum core_transport)t, &o, &err) < 0)
                fail_msg("%s over %s: the defaults are refused: %s", svc->name,
                         core_transport_name((enum core_transport)t), err.msg);
            json_decref(o);
        }
    }
}

/* backup's on_exists choices are its store's policies. */
static void test_service_backup_choices_are_policies(void **state)
{
    const struct core_option *o = core_service_option(&svc_backup, "on_exists");

    (void)state;
    assert_non_null(o);
    for (size_t k = 0; o->choices[k]; k++)
        assert_true(svc_backup_policy_from_name(o->choices[k]) >= 0);
    assert_int_equal(svc_backup_policy_from_name("overwrite"), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service_options_absent_defaults_filled_in_table_order),
        cmocka_unit_test(test_service_options_given_values_kept),
        cmocka_unit_test(test_service_options_bad_values_name_the_field),
        cmocka_unit_test(test_service_options_transport_not_spoken_names_transport),
        cmocka_unit_test(test_service_json_shows_the_table),
        cmocka_unit_test(test_service_list_sorted_udp_only_has_no_models),
        cmocka_unit_test(test_service_refused_model_refused_for_a_listener),
        cmocka_unit_test(test_service_tables_well_formed),
        cmocka_unit_test(test_service_backup_choices_are_policies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
