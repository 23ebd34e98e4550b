/*
 * GET /api/v1/services against the daemon itself: every service with every option, each
 * option's type and default what a listener created without options gets, its range and
 * choices what the daemon refuses beyond, its "live" what a change of it on a running listener
 * does, the "models" those a listener is accepted with, the counters those its metrics show.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

static struct it_fixture *fixture_of(void **state)
{
    return *state;
}

static json_t *services_get(const struct it_daemon *d)
{
    json_t *j = it_http_expect(d, "GET", "/api/v1/services", NULL, 200);
    json_t *list = json_object_get(j, "services");

    assert_true(json_is_array(list));
    json_incref(list);
    json_decref(j);
    return list;
}

/* The JSON type an option of type name carries. */
static bool value_has_type(const json_t *v, const char *type)
{
    if (strcmp(type, "string") == 0 || strcmp(type, "path") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    fail_msg("unknown option type %s", type);
    return false;
}

static bool has_string(const json_t *array, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(array, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static void test_services_listed_sorted_with_every_option(void **state)
{
    static const char *const names[] = {"backup", "date", "echo"};
    static const char *const options[][12] = {
        {"directory", "on_exists", "max_file_size", "quota_bytes", "require_checksum",
         "min_rate_bytes_per_s", "min_rate_window_s", "keep_versions", "keep_days", "resume_ttl_ms",
         "tls", NULL},
        {"timezone", "format", "tls", NULL},
        {"mode", "max_datagram", "tls", NULL},
    };
    const struct it_daemon *d = &fixture_of(state)->d;
    json_t *list = services_get(d);

    assert_int_equal(json_array_size(list), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *svc = json_array_get(list, i), *opts = json_object_get(svc, "options"), *one;
        char path[64];
        size_t k = 0;

        assert_string_equal(it_json_str(svc, "name"), names[i]);
        assert_true(strlen(it_json_str(svc, "help")) > 0);
        assert_true(json_array_size(json_object_get(svc, "transports")) > 0);
        assert_true(json_is_array(json_object_get(svc, "counters")));
        for (; options[i][k]; k++)
            assert_string_equal(it_json_str(json_array_get(opts, k), "name"), options[i][k]);
        assert_int_equal(json_array_size(opts), k);
        /* Every option says everything a form needs. */
        for (k = 0; k < json_array_size(opts); k++) {
            json_t *o = json_array_get(opts, k);

            assert_non_null(json_object_get(o, "default"));
            assert_true(json_array_size(json_object_get(o, "transports")) > 0);
            assert_true(json_is_boolean(json_object_get(o, "live")));
            assert_true(strlen(it_json_str(o, "help")) > 0);
            assert_true(json_is_null(json_object_get(o, "default")) ||
                        value_has_type(json_object_get(o, "default"), it_json_str(o, "type")));
        }
        /* One service alone: the same object. */
        snprintf(path, sizeof(path), "/api/v1/services/%s", names[i]);
        one = it_http_expect(d, "GET", path, NULL, 200);
        assert_true(json_equal(one, svc));
        json_decref(one);
    }
    json_decref(list);
}

static void test_services_unknown_name_is_404(void **state)
{
    const struct it_daemon *d = &fixture_of(state)->d;
    struct it_http r;

    it_http(d, "GET", "/api/v1/services/gopher", NULL, &r);
    it_assert_problem(&r, 404, NULL);
    assert_non_null(strstr(it_json_str(r.json, "detail"), "gopher"));
    it_http_fini(&r);
}

/*
 * For each service and transport: a listener created without options has exactly the options
 * of that transport, each of its type, at its default (absent when the default is computed);
 * its metrics show exactly the service's counters.
 */
static void test_services_defaults_are_what_a_listener_gets(void **state)
{
    const struct it_daemon *d = &fixture_of(state)->d;
    json_t *list = services_get(d), *svc;
    unsigned created = 0;
    size_t i;

    json_array_foreach(list, i, svc)
    {
        json_t *transports = json_object_get(svc, "transports"), *t;
        size_t ti;

        json_array_foreach(transports, ti, t)
        {
            const char *tr = json_string_value(t);
            json_t *res, *got, *metrics, *o, *counters = json_object_get(svc, "counters"), *c;
            char body[256], id[32];
            size_t k, n_applying = 0;

            snprintf(id, sizeof(id), "%s-%s", it_json_str(svc, "name"), tr);
            snprintf(body, sizeof(body),
                     "{\"id\":\"%s\",\"service\":\"%s\",\"transport\":\"%s\","
                     "\"address\":\"127.0.0.1\",\"port\":0}",
                     id, it_json_str(svc, "name"), tr);
            json_decref(it_listener_create(d, body));
            created++;
            res = it_listener_get(d, id);
            got = json_object_get(res, "options");
            assert_true(json_is_object(got));
            json_array_foreach(json_object_get(svc, "options"), k, o)
            {
                const char *name = it_json_str(o, "name");
                json_t *def = json_object_get(o, "default"), *v = json_object_get(got, name);

                if (!has_string(json_object_get(o, "transports"), tr)) {
                    if (v)
                        fail_msg("%s: option %s of another transport is present", id, name);
                    continue;
                }
                n_applying++;
                if (json_is_null(def)) {
                    if (v)
                        fail_msg("%s: option %s has a computed default, yet is present", id, name);
                    n_applying--;
                    continue;
                }
                if (!v)
                    fail_msg("%s: option %s is missing", id, name);
                if (!value_has_type(v, it_json_str(o, "type")) || !json_equal(v, def)) {
                    char *a = json_dumps(v, JSON_ENCODE_ANY), *b = json_dumps(def, JSON_ENCODE_ANY);

                    fail_msg("%s: option %s is %s, the table says %s", id, name, a, b);
                }
            }
            assert_int_equal(json_object_size(got), n_applying);
            /* The counters, by name. */
            metrics = json_object_get(json_object_get(res, "metrics"), "service");
            assert_int_equal(json_object_size(metrics), json_array_size(counters));
            json_array_foreach(counters, k, c)
            {
                if (!json_object_get(metrics, it_json_str(c, "name")))
                    fail_msg("%s: counter %s not in its metrics", id, it_json_str(c, "name"));
                assert_true(strlen(it_json_str(c, "help")) > 0);
            }
            json_decref(res);
        }
    }
    assert_int_equal(created, 5); /* echo and date over TCP and UDP, backup over TCP */
    json_decref(list);
}

/* A value of option o other than its default that the daemon accepts, as JSON text. */
static void other_value(const json_t *o, const char *dir, char *buf, size_t len)
{
    const char *type = it_json_str(o, "type"), *name = it_json_str(o, "name");
    json_t *def = json_object_get(o, "default"), *choices = json_object_get(o, "choices");

    if (choices) {
        const char *c = json_string_value(json_array_get(choices, 0));

        if (strcmp(c, json_string_value(def)) == 0)
            c = json_string_value(json_array_get(choices, 1));
        snprintf(buf, len, "\"%s\"", c);
    } else if (strcmp(type, "integer") == 0) {
        json_int_t min = it_json_int(o, "minimum");

        snprintf(buf, len, "%lld", (long long)(json_integer_value(def) == min ? min + 1 : min));
    } else if (strcmp(type, "boolean") == 0) {
        snprintf(buf, len, "%s", json_is_true(def) ? "false" : "true");
    } else if (strcmp(type, "path") == 0) {
        snprintf(buf, len, "\"%s/other-%s\"", dir, name);
    } else if (strcmp(type, "object") == 0 && strcmp(name, "tls") == 0) {
        char cert[IT_PATH_MAX], key[IT_PATH_MAX];

        snprintf(cert, sizeof(cert), "%s/tls.pem", dir);
        snprintf(key, sizeof(key), "%s/tls.key", dir);
        if (access(cert, R_OK) != 0)
            it_make_certificate(cert, key);
        if (snprintf(buf, len, "{\"cert_file\":\"%s\",\"key_file\":\"%s\"}", cert, key) >= (int)len)
            fail_msg("%s: the paths are too long", name);
    } else if (strcmp(name, "timezone") == 0) {
        snprintf(buf, len, "\"UTC\"");
    } else if (strcmp(name, "format") == 0) {
        snprintf(buf, len, "\"%%Y\"");
    } else {
        fail_msg("no other value known for string option %s", name);
    }
}

/*
 * Each option's "live" is what a dry-run change of it on a running listener says, and its
 * value accepted; the table's limits are where the daemon starts refusing, naming the option.
 */
static void test_services_live_and_limits_are_what_the_daemon_does(void **state)
{
    struct it_fixture *f = fixture_of(state);
    json_t *list = services_get(&f->d), *svc;
    size_t i;

    json_array_foreach(list, i, svc)
    {
        json_t *o;
        size_t k;

        json_array_foreach(json_object_get(svc, "options"), k, o)
        {
            const char *name = it_json_str(o, "name");
            const char *tr = json_string_value(json_array_get(json_object_get(o, "transports"), 0));
            json_t *max = json_object_get(o, "maximum"), *j, *change;
            char id[64], body[512], value[256], path[128];
            struct it_http r;

            snprintf(id, sizeof(id), "l-%s-%s", it_json_str(svc, "name"), name);
            for (char *p = id; *p; p++)
                if (*p == '_')
                    *p = '-';
            snprintf(body, sizeof(body),
                     "{\"id\":\"%s\",\"service\":\"%s\",\"transport\":\"%s\","
                     "\"address\":\"127.0.0.1\",\"port\":0}",
                     id, it_json_str(svc, "name"), tr);
            json_decref(it_listener_create(&f->d, body));
            snprintf(path, sizeof(path), "/api/v1/listeners/%s?dry_run=true", id);
            other_value(o, f->dir, value, sizeof(value));
            snprintf(body, sizeof(body), "{\"options\":{\"%s\":%s}}", name, value);
            j = it_http_expect(&f->d, "PATCH", path, body, 200);
            change = json_array_get(json_object_get(j, "diff"), 0);
            assert_string_equal(it_json_str(change, "action"), "change");
            if (it_json_bool(change, "live") != json_is_true(json_object_get(o, "live")))
                fail_msg("%s over %s: the table says live %d, a change says %d", name, tr,
                         json_is_true(json_object_get(o, "live")), it_json_bool(change, "live"));
            json_decref(j);
            /* Beyond the table's range, or not one of its choices, or of another type. */
            if (max)
                snprintf(body, sizeof(body), "{\"options\":{\"%s\":%lld}}", name,
                         (long long)json_integer_value(max) + 1);
            else if (json_object_get(o, "minimum"))
                snprintf(body, sizeof(body), "{\"options\":{\"%s\":%lld}}", name,
                         (long long)it_json_int(o, "minimum") - 1);
            else if (json_object_get(o, "choices"))
                snprintf(body, sizeof(body), "{\"options\":{\"%s\":\"none-of-them\"}}", name);
            else
                snprintf(body, sizeof(body), "{\"options\":{\"%s\":[]}}", name);
            it_http(&f->d, "PATCH", path, body, &r);
            snprintf(value, sizeof(value), "options.%s", name);
            it_assert_problem(&r, 400, value);
            it_http_fini(&r);
        }
    }
    json_decref(list);
}

/* The models listed are those a listener is accepted with; the others are refused. */
static void test_services_models_are_what_a_listener_may_run(void **state)
{
    static const char *const all[] = {"sequential", "thread", "pool", "event", "process", "uring"};
    const struct it_daemon *d = &fixture_of(state)->d;
    json_t *list = services_get(d), *svc;
    size_t i;

    json_array_foreach(list, i, svc)
    {
        json_t *models = json_object_get(svc, "models");

        assert_true(json_array_size(models) > 0);
        for (size_t m = 0; m < sizeof(all) / sizeof(all[0]); m++) {
            char body[256];
            struct it_http r;

            snprintf(body, sizeof(body),
                     "{\"service\":\"%s\",\"address\":\"127.0.0.1\",\"port\":0,\"model\":\"%s\"}",
                     it_json_str(svc, "name"), all[m]);
            it_http(d, "POST", "/api/v1/listeners?dry_run=true", body, &r);
            if (has_string(models, all[m]))
                assert_int_equal(r.status, 200);
            else
                it_assert_problem(&r, 400, "model");
            it_http_fini(&r);
        }
    }
    json_decref(list);
}

/* An unknown option is refused naming it, whatever the service. */
static void test_services_unknown_option_refused_naming_it(void **state)
{
    const struct it_daemon *d = &fixture_of(state)->d;
    static const char *const services[] = {"backup", "date", "echo"};

    for (size_t i = 0; i < 3; i++) {
        char body[256];
        struct it_http r;

        snprintf(body, sizeof(body),
                 "{\"service\":\"%s\",\"address\":\"127.0.0.1\",\"port\":0,"
                 "\"options\":{\"colour\":\"blue\"}}",
                 services[i]);
        it_http(d, "POST", "/api/v1/listeners?dry_run=true", body, &r);
        it_assert_problem(&r, 400, "options.colour");
        it_http_fini(&r);
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_services_listed_sorted_with_every_option),
        T(test_services_unknown_name_is_404),
        T(test_services_defaults_are_what_a_listener_gets),
        T(test_services_live_and_limits_are_what_the_daemon_does),
        T(test_services_models_are_what_a_listener_may_run),
        T(test_services_unknown_option_refused_naming_it),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
