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
#include <sys/stat.h>
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

/* The state file's member key (a whole number), read back as JSON (-1 when absent). */
static json_int_t state_int(struct fx *f, const char *key)
{
    char path[128];
    json_error_t jerr;
    json_t *root, *fo;
    json_int_t v;

    snprintf(path, sizeof(path), "%s/%s", f->dir, CORE_STORE_FILE);
    root = json_load_file(path, 0, &jerr);
    assert_non_null(root);
    fo = json_object_get(root, key);
    v = fo ? json_integer_value(fo) : -1;
    json_decref(root);
    return v;
}

static void test_change_fleet_offset_written_with_the_configuration(void **state)
{
    struct fx *f = *state;
    struct core_registry *r = fx_registry(f, 0);
    struct core_err err = {0};
    struct core_change ch = {
        .iface = CORE_IFACE_FLEET, .has_fleet_offset = true, .fleet_offset = 7};
    json_t *cfg = body("{\"listeners\":[{\"id\":\"f1\",\"service\":\"echo\","
                       "\"address\":\"127.0.0.1\",\"port\":0}]}");
    json_t *res = NULL, *hold = NULL;
    uint64_t offset = 0;
    bool has = true;

    core_registry_fleet_offset(r, &has, &offset);
    assert_false(has);
    assert_int_equal(core_registry_config_replace(r, cfg, &ch, &res, &err), 0);
    assert_int_equal(ch.revision, 1);
    assert_string_equal(newest(r, &hold, "source"), "fleet: replace configuration (offset 7)");
    json_decref(hold);
    json_decref(res);
    core_change_fini(&ch);
    assert_int_equal(state_int(f, "fleet_offset"), 7);
    assert_int_equal(state_int(f, "fleet_applied_offset"), 7);
    core_registry_fleet_offset(r, &has, &offset);
    assert_true(has);
    assert_int_equal(offset, 7);

    /* The same configuration again from a later record: no revision, but the offset is kept. */
    ch = (struct core_change){
        .iface = CORE_IFACE_FLEET, .has_fleet_offset = true, .fleet_offset = 9};
    res = NULL;
    assert_int_equal(core_registry_config_replace(r, cfg, &ch, &res, &err), 0);
    assert_int_equal(ch.revision, 1);
    assert_int_equal(json_array_size(ch.diff), 0);
    json_decref(res);
    core_change_fini(&ch);
    assert_int_equal(state_int(f, "fleet_offset"), 9);
    assert_int_equal(state_int(f, "fleet_applied_offset"), 9);

    /* A record answered without a change moves the offset, not the applied one. */
    assert_int_equal(core_registry_fleet_mark(r, 10, &err), 0);
    assert_int_equal(state_int(f, "fleet_offset"), 10);
    assert_int_equal(state_int(f, "fleet_applied_offset"), 9);

    /* A change through the API keeps the stored offsets. */
    ch = (struct core_change){.iface = CORE_IFACE_API};
    assert_int_equal(core_registry_delete(r, "f1", &ch, &err), 0);
    core_change_fini(&ch);
    assert_int_equal(state_int(f, "fleet_offset"), 10);
    assert_int_equal(state_int(f, "fleet_applied_offset"), 9);
    json_decref(cfg);

    /* A restart reads it back. */
    core_registry_free(f->r);
    f->r = NULL;
    r = fx_registry(f, 0);
    core_registry_fleet_offset(r, &has, &offset);
    assert_true(has);
    assert_int_equal(offset, 10);
    core_registry_fleet_applied(r, &has, &offset);
    assert_true(has);
    assert_int_equal(offset, 9);
}

static void test_change_fleet_mark_writes_offset_keeps_listeners(void **state)
{
    struct fx *f = *state;
    struct core_registry *r = fx_registry(f, 0);
    struct core_err err = {0};
    struct core_change ch = {.iface = CORE_IFACE_API};
    json_t *b = body("{\"id\":\"m1\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}");
    json_t *res = NULL, *conf = NULL;

    assert_int_equal(core_registry_create(r, b, &ch, &res, &err), 0);
    json_decref(res);
    json_decref(b);
    core_change_fini(&ch);
    assert_int_equal(state_int(f, "fleet_offset"), -1);
    assert_int_equal(core_registry_fleet_mark(r, 12, &err), 0);
    assert_int_equal(state_int(f, "fleet_offset"), 12);
    assert_int_equal(state_int(f, "fleet_applied_offset"), -1);
    assert_int_equal(core_registry_config(r, &conf), 0);
    assert_int_equal(json_integer_value(json_object_get(conf, "revision")), 1);
    assert_int_equal(json_array_size(json_object_get(conf, "listeners")), 1);
    json_decref(conf);
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

/* Drops capability cap from this process's effective set (nothing to do for a user without
 * it). */
static int drop_capability(int cap)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

    if (syscall(SYS_capget, &h, d) < 0)
        return -errno;
    d[CAP_TO_INDEX(cap)].effective &= ~CAP_TO_MASK(cap);
    return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/*
 * Runs fn in a child process (whose capabilities may be dropped without touching the test's)
 * and reads back what it wrote into got (len bytes). Asserts that it exited 0.
 */
static void in_child(void (*fn)(struct fx *f, int out), struct fx *f, char *got, size_t len)
{
    int fds[2], status;
    ssize_t n;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        fn(f, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    n = read(fds[0], got, len - 1);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(n > 0);
    got[n] = '\0';
}

/* Creates listener body through the API's handler and writes "STATUS COUNT DETAIL" to out. */
static void create_and_tell(struct fx *f, const char *text, int out)
{
    struct core_registry *r = fx_registry(f, 0);
    struct api_reply rep;
    char line[512];
    int len;

    call(api_handle_listener_create, r, "/api/v1/listeners", NULL, text, &rep);
    len = snprintf(line, sizeof(line), "%u %zu %s", rep.status, core_registry_count(r), rep.detail);
    api_reply_fini(&rep);
    core_registry_free(r);
    if (write(out, line, (size_t)len) != len)
        _exit(3);
}

static void create_on_port_1(struct fx *f, int out)
{
    if (drop_capability(CAP_NET_BIND_SERVICE) < 0)
        _exit(2);
    create_and_tell(f, "{\"id\":\"low\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":1}",
                    out);
}

static void create_in_read_only_dir(struct fx *f, int out)
{
    if (drop_capability(CAP_DAC_OVERRIDE) < 0 || drop_capability(CAP_DAC_READ_SEARCH) < 0 ||
        chmod(f->dir, 0500) < 0)
        _exit(2);
    create_and_tell(f, "{\"id\":\"e\",\"service\":\"echo\",\"enabled\":false,\"port\":0}", out);
}

static void test_change_privileged_port_is_403(void **state)
{
    char got[512];

    in_child(create_on_port_1, *state, got, sizeof(got));
    fprintf(stderr, "# port 1 without CAP_NET_BIND_SERVICE: %s\n", got);
    /* 403, nothing created, and the detail says why. */
    assert_true(strncmp(got, "403 0 ", 6) == 0);
    assert_non_null(strcasestr(got, "permission denied"));
}

/* The same EACCES from writing the state file is the daemon's fault: 500, not 403. */
static void test_change_state_dir_not_writable_is_500(void **state)
{
    struct fx *f = *state;
    char got[512];

    in_child(create_in_read_only_dir, f, got, sizeof(got));
    assert_int_equal(chmod(f->dir, 0700), 0);
    fprintf(stderr, "# a state directory the daemon may not write: %s\n", got);
    assert_true(strncmp(got, "500 0 ", 6) == 0);
    assert_non_null(strstr(got, "listeners.json"));
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
        cmocka_unit_test_setup_teardown(test_change_fleet_offset_written_with_the_configuration,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_fleet_mark_writes_offset_keeps_listeners, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_change_state_dir_not_writable_is_500, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
