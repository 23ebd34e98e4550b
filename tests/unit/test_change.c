/*
 * The change engine (core/change.h) driven without HTTP, as a fleet bridge would: an expected
 * revision instead of an If-Match header, a structured source instead of a request line; and
 * the errors a user sees of it through the API's handlers (the listener limit, a port the
 * daemon may not bind).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/handlers.h"
#include "core/change.h"
#include "core/registry.h"
#include "core/revisions.h"
#include "core/store.h"
#include "svc/echo.h"

static const struct core_service *const svcs[] = {&svc_echo};
static const struct core_service_table table = {.svcs = svcs, .n = 1};

struct fx {
    char dir[64];
    struct core_registry *r;
};

static struct core_registry *fx_registry(struct fx *f, size_t max_listeners)
{
    const struct core_registry_opts opts = {
        .services = &table, .state_dir = f->dir, .persist = true, .max_listeners = max_listeners};

    assert_int_equal(core_registry_new(&opts, &f->r), 0);
    assert_int_equal(core_registry_load(f->r, NULL, NULL), 0);
    return f->r;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/sockserv-test-change-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char path[128];

    core_registry_free(f->r);
    snprintf(path, sizeof(path), "%s/%s", f->dir, CORE_STORE_FILE);
    (void)unlink(path);
    snprintf(path, sizeof(path), "%s/%s", f->dir, CORE_REVISIONS_FILE);
    (void)unlink(path);
    (void)rmdir(f->dir);
    free(f);
    return 0;
}

static json_t *body(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);

    assert_non_null(j);
    return j;
}

/* The newest revision's member key (a string), as core_registry_revisions() lists it. */
static const char *newest(struct core_registry *r, json_t **hold, const char *key)
{
    json_t *list = NULL, *rev;

    assert_int_equal(core_registry_revisions(r, 1, &list), 0);
    *hold = list;
    rev = json_array_get(json_object_get(list, "revisions"), 0);
    assert_non_null(rev);
    if (strcmp(key, "source") == 0)
        return json_string_value(json_object_get(rev, "source"));
    return json_string_value(json_object_get(json_object_get(rev, "origin"), key));
}

static void test_change_fleet_source_and_expected_revision_need_no_http(void **state)
{
    struct fx *f = *state;
    struct core_registry *r = fx_registry(f, 0);
    struct core_err err = {0};
    struct core_change ch = {.iface = CORE_IFACE_FLEET};
    json_t *b = body("{\"id\":\"f1\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}");
    json_t *patch = body("{\"workers\":3}"), *res = NULL, *hold = NULL;
    char path[128], *text;
    size_t len;
    uint64_t rev;

    assert_int_equal(core_registry_create(r, b, &ch, &res, &err), 0);
    rev = ch.revision;
    assert_int_equal(rev, 1);
    assert_int_equal(ch.etag, 1);
    assert_string_equal(newest(r, &hold, "source"), "fleet: create listener f1");
    json_decref(hold);
    json_decref(res);
    res = NULL;
    core_change_fini(&ch);

    /* Expected a revision that is not the listener's: nothing changes, the current one is told. */
    ch = (struct core_change){
        .iface = CORE_IFACE_FLEET,
        .expect = {.kind = CORE_EXPECT_ONE_OF, .revisions = {rev + 7}, .n = 1}};
    assert_int_equal(core_registry_patch(r, "f1", patch, &ch, &res, &err), -ESTALE);
    assert_int_equal(ch.etag, rev);
    assert_null(res);
    assert_non_null(strstr(err.msg, "revision 1"));
    core_change_fini(&ch);
    assert_int_equal(core_registry_get(r, "f1", &res, NULL), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "workers")), 1);
    json_decref(res);
    res = NULL;

    /* The one expected: applied as the next revision, recorded with its fleet origin. */
    ch = (struct core_change){.iface = CORE_IFACE_FLEET,
                              .expect = {.kind = CORE_EXPECT_ONE_OF, .revisions = {rev}, .n = 1}};
    assert_int_equal(core_registry_patch(r, "f1", patch, &ch, &res, &err), 0);
    assert_int_equal(ch.revision, rev + 1);
    assert_int_equal(json_integer_value(json_object_get(res, "workers")), 3);
    assert_int_equal(ch.source.iface, CORE_IFACE_FLEET);
    assert_int_equal(ch.source.kind, CORE_CHANGE_PATCH);
    assert_string_equal(newest(r, &hold, "source"), "fleet: patch listener f1");
    json_decref(hold);
    assert_string_equal(newest(r, &hold, "interface"), "fleet");
    json_decref(hold);
    assert_string_equal(newest(r, &hold, "action"), "patch");
    json_decref(hold);
    json_decref(res);
    core_change_fini(&ch);

    /* And on disk, as the history file keeps it. */
    snprintf(path, sizeof(path), "%s/%s", f->dir, CORE_REVISIONS_FILE);
    assert_int_equal(core_fs_read_file(path, 1 << 20, &text, &len), 0);
    assert_non_null(strstr(text, "\"fleet: patch listener f1\""));
    assert_non_null(strstr(text, "\"interface\":\"fleet\""));
    free(text);
    json_decref(patch);
    json_decref(b);
}

/* A request to the API's handlers with a body, as the server would hand it over. */
static void call(api_handler_fn fn, struct core_registry *r, const char *path, const char *id,
                 const char *text, struct api_reply *ret)
{
    json_t *b = text ? body(text) : NULL;
    const struct api_request req = {.registry = r, .path = path, .id = id, .body = b};

    api_reply_init(ret);
    fn(&req, ret);
    json_decref(b);
}

static void test_change_listener_limit_is_409_not_a_full_disk(void **state)
{
    struct fx *f = *state;
    struct core_registry *r = fx_registry(f, 2);
    struct api_reply rep;

    call(api_handle_listener_create, r, "/api/v1/listeners", NULL,
         "{\"id\":\"a\",\"service\":\"echo\",\"enabled\":false,\"port\":0}", &rep);
    assert_int_equal(rep.status, 201);
    api_reply_fini(&rep);
    call(api_handle_listener_create, r, "/api/v1/listeners", NULL,
         "{\"id\":\"b\",\"service\":\"echo\",\"enabled\":false,\"port\":0}", &rep);
    assert_int_equal(rep.status, 201);
    api_reply_fini(&rep);

    call(api_handle_listener_create, r, "/api/v1/listeners", NULL,
         "{\"id\":\"c\",\"service\":\"echo\",\"enabled\":false,\"port\":0}", &rep);
    assert_int_equal(rep.status, 409);
    assert_true(rep.is_problem);
    assert_non_null(strstr(rep.detail, "maximum of 2 listeners"));
    api_reply_fini(&rep);

    call(api_handle_config_replace, r, "/api/v1/config", NULL,
         "{\"listeners\":[{\"id\":\"a\",\"service\":\"echo\",\"enabled\":false,\"port\":0},"
         "{\"id\":\"b\",\"service\":\"echo\",\"enabled\":false,\"port\":0},"
         "{\"id\":\"c\",\"service\":\"echo\",\"enabled\":false,\"port\":0}]}",
         &rep);
    assert_int_equal(rep.status, 409);
    assert_string_equal(rep.field, "listeners");
    assert_non_null(strstr(rep.detail, "at most 2"));
    api_reply_fini(&rep);
    assert_int_equal(core_registry_count(r), 2);
}

/* Drops CAP_NET_BIND_SERVICE from this process's effective set (nothing to do for a user
 * without it). */
static int drop_bind_capability(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

    if (syscall(SYS_capget, &h, d) < 0)
        return -errno;
    d[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].effective &= ~CAP_TO_MASK(CAP_NET_BIND_SERVICE);
    return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

static void test_change_privileged_port_is_403(void **state)
{
    struct fx *f = *state;
    char got[512] = "";
    int fds[2], status;
    ssize_t n;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A child: the capability stays dropped in it only. */
        struct core_registry *r;
        struct api_reply rep;
        int len;

        close(fds[0]);
        if (drop_bind_capability() < 0)
            _exit(2);
        r = fx_registry(f, 0);
        call(api_handle_listener_create, r, "/api/v1/listeners", NULL,
             "{\"id\":\"low\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":1}", &rep);
        len =
            snprintf(got, sizeof(got), "%u %zu %s", rep.status, core_registry_count(r), rep.detail);
        api_reply_fini(&rep);
        core_registry_free(r);
        _exit(write(fds[1], got, (size_t)len) == len ? 0 : 3);
    }
    close(fds[1]);
    n = read(fds[0], got, sizeof(got) - 1);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(n > 0);
    got[n] = '\0';
    fprintf(stderr, "# port 1 without CAP_NET_BIND_SERVICE: %s\n", got);
    /* 403, nothing created, and the detail says why. */
    assert_true(strncmp(got, "403 0 ", 6) == 0);
    assert_non_null(strcasestr(got, "permission denied"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_change_fleet_source_and_expected_revision_need_no_http,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_listener_limit_is_409_not_a_full_disk, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_change_privileged_port_is_403, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
