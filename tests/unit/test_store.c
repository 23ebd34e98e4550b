#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/store.h"
#include "svc/echo.h"

static const struct core_service *const svcs[] = {&svc_echo};
static const struct core_service_table table = {.svcs = svcs, .n = 1};

struct dir {
    char path[PATH_MAX];
    char file[PATH_MAX + sizeof(CORE_STORE_FILE) + 1];
};

static int setup(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));

    snprintf(d->path, sizeof(d->path), "/tmp/sockserv-test-store-XXXXXX");
    if (!mkdtemp(d->path))
        return -1;
    snprintf(d->file, sizeof(d->file), "%s/%s", d->path, CORE_STORE_FILE);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dir *d = *state;
    char cmd[PATH_MAX + 16];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
    (void)!system(cmd);
    free(d);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void test_store_missing_file_is_enoent(void **state)
{
    struct dir *d = *state;
    struct core_listener_cfg *cfgs = NULL;
    size_t n = 0;

    assert_int_equal(core_store_load(d->file, &table, &cfgs, &n, NULL, NULL), -ENOENT);
}

/* Two listeners, written by hand as an older daemon wrote them (no revision): one TCP with
 * options, one UDP. */
static const char *const two_listeners =
    "{\"version\":1,\"listeners\":["
    "{\"id\":\"a\",\"service\":\"echo\",\"port\":7007,\"enabled\":false,"
    "\"options\":{\"mode\":\"once\"}},"
    "{\"id\":\"b\",\"service\":\"echo\",\"transport\":\"udp\",\"address\":\"::1\","
    "\"port\":0,\"workers\":4}]}";

static void test_store_round_trip_keeps_every_field(void **state)
{
    struct dir *d = *state;
    struct core_listener_cfg *in = NULL, *out = NULL;
    const struct core_listener_cfg *ptrs[2];
    struct core_store_meta meta = {.revision = 99}, saved = {.revision = 42};
    size_t n_in = 0, n_out = 0;

    assert_int_equal(core_store_parse(two_listeners, strlen(two_listeners), "test", &table, &in,
                                      &n_in, &meta, NULL),
                     0);
    assert_int_equal(n_in, 2);
    /* A file from before revisions were kept in it: none recorded. */
    assert_int_equal(meta.revision, 0);
    ptrs[0] = &in[0];
    ptrs[1] = &in[1];
    assert_int_equal(core_store_save(d->file, ptrs, 2, &saved, NULL), 0);
    assert_int_equal(core_store_load(d->file, &table, &out, &n_out, &meta, NULL), 0);
    assert_int_equal(n_out, 2);
    assert_int_equal(meta.revision, 42);
    for (size_t i = 0; i < 2; i++) {
        assert_true(core_listener_cfg_equal(&in[i], &out[i]));
        core_listener_cfg_fini(&in[i]);
        core_listener_cfg_fini(&out[i]);
    }
    free(in);
    free(out);
    /* Nothing but the state file is left behind. */
    assert_int_equal(count_entries(d->path), 1);
}

/* The state file's document, as jansson makes it from the configurations. */
static json_t *expected_doc(const struct core_listener_cfg *const *cfgs, size_t n,
                            const struct core_store_meta *meta)
{
    json_t *list = json_array(), *root;

    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, core_listener_cfg_to_json(cfgs[i]));
    root = json_pack("{s:i, s:I, s:o}", "version", 1, "revision", (json_int_t)meta->revision,
                     "listeners", list);
    if (meta->has_fleet_offset)
        json_object_set_new(root, "fleet_offset", json_integer((json_int_t)meta->fleet_offset));
    if (meta->has_fleet_applied)
        json_object_set_new(root, "fleet_applied_offset",
                            json_integer((json_int_t)meta->fleet_applied_offset));
    return root;
}

/* The file at path holds the document of cfgs and meta, each listener on a line of its own. */
static void assert_file_holds(const char *path, const struct core_listener_cfg *const *cfgs,
                              size_t n, const struct core_store_meta *meta)
{
    json_t *want = expected_doc(cfgs, n, meta), *got;
    char *text = NULL, *line;
    size_t len = 0, k = 0;

    assert_int_equal(core_fs_read_file(path, 1 << 20, &text, &len), 0);
    got = json_loadb(text, len, 0, NULL);
    assert_non_null(got);
    assert_true(json_equal(got, want));
    for (line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char start[CORE_ID_MAX + 16];
        const char *end;

        if (strncmp(line, "    {", 5) != 0)
            continue;
        assert_true(k < n);
        snprintf(start, sizeof(start), "    {\"id\":\"%s\",", cfgs[k]->id);
        assert_memory_equal(line, start, strlen(start));
        /* the whole listener: its line ends with it */
        end = strchr(line, '\n');
        assert_non_null(end);
        assert_true(end[-1] == '}' || (end[-1] == ',' && end[-2] == '}'));
        k++;
    }
    assert_int_equal(k, n);
    json_decref(got);
    json_decref(want);
    free(text);
}

/* The file is put together from the listeners' renderings (core_listener_cfg_render()), made
 * when each was set: it holds the whole set, rendered or not, and a configuration changed and
 * rendered again is written as it now is. */
static void test_store_file_from_renderings_holds_the_set(void **state)
{
    struct dir *d = *state;
    struct core_listener_cfg *in = NULL, *out = NULL;
    const struct core_listener_cfg *ptrs[2];
    struct core_store_meta metas[] = {
        {.revision = 7},
        {.revision = 8, .has_fleet_offset = true, .fleet_offset = 12},
        {.revision = 9,
         .has_fleet_offset = true,
         .fleet_offset = 13,
         .has_fleet_applied = true,
         .fleet_applied_offset = 11},
    };
    size_t n_in = 0, n_out = 0;

    assert_int_equal(core_store_parse(two_listeners, strlen(two_listeners), "test", &table, &in,
                                      &n_in, NULL, NULL),
                     0);
    assert_int_equal(n_in, 2);
    ptrs[0] = &in[0];
    ptrs[1] = &in[1];
    /* no listener */
    assert_int_equal(core_store_save(d->file, ptrs, 0, &metas[0], NULL), 0);
    assert_file_holds(d->file, ptrs, 0, &metas[0]);
    /* one rendered, one not; then both */
    assert_int_equal(core_listener_cfg_render(&in[0]), 0);
    for (size_t m = 0; m < 3; m++) {
        if (m == 2)
            assert_int_equal(core_listener_cfg_render(&in[1]), 0);
        assert_int_equal(core_store_save(d->file, ptrs, 2, &metas[m], NULL), 0);
        assert_file_holds(d->file, ptrs, 2, &metas[m]);
    }
    /* changed and rendered again: the file has the change */
    in[0].port = 7008;
    assert_int_equal(core_listener_cfg_render(&in[0]), 0);
    assert_int_equal(core_store_save(d->file, ptrs, 2, &metas[0], NULL), 0);
    assert_file_holds(d->file, ptrs, 2, &metas[0]);
    assert_int_equal(core_store_load(d->file, &table, &out, &n_out, NULL, NULL), 0);
    assert_int_equal(n_out, 2);
    assert_int_equal(out[0].port, 7008);
    for (size_t i = 0; i < 2; i++) {
        core_listener_cfg_fini(&in[i]);
        core_listener_cfg_fini(&out[i]);
    }
    free(in);
    free(out);
}

static void test_store_corrupt_file_names_file_and_problem(void **state)
{
    struct dir *d = *state;
    struct core_listener_cfg *cfgs = NULL;
    struct core_err err = {0};
    size_t n = 0;

    write_file(d->file, "{\"version\":1,\"listeners\":[{\"id\":\"a\",");
    assert_int_equal(core_store_load(d->file, &table, &cfgs, &n, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, d->file));
    assert_non_null(strstr(err.msg, "line 1"));
    assert_null(cfgs);
}

static void test_store_bad_listener_names_it(void **state)
{
    struct dir *d = *state;
    struct core_listener_cfg *cfgs = NULL;
    struct core_err err = {0};
    size_t n = 0;

    write_file(d->file, "{\"version\":1,\"listeners\":[{\"id\":\"a\",\"service\":\"echo\","
                        "\"port\":1},{\"id\":\"b\",\"service\":\"echo\",\"port\":99999}]}");
    assert_int_equal(core_store_load(d->file, &table, &cfgs, &n, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, d->file));
    assert_non_null(strstr(err.msg, "listener 1"));
    assert_non_null(strstr(err.msg, "port"));
}

static void test_store_duplicate_ids_refused(void **state)
{
    static const char *const text = "{\"listeners\":[{\"id\":\"a\",\"service\":\"echo\","
                                    "\"port\":1},{\"id\":\"a\",\"service\":\"echo\",\"port\":2}]}";
    struct core_listener_cfg *cfgs = NULL;
    struct core_err err = {0};
    size_t n = 0;

    (void)state;
    assert_int_equal(core_store_parse(text, strlen(text), "t", &table, &cfgs, &n, NULL, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
}

static void test_store_wrong_shape_refused(void **state)
{
    static const char *const texts[] = {"[]", "{\"listeners\":{}}",
                                        "{\"version\":2,\"listeners\":[]}", "null"};
    struct core_listener_cfg *cfgs = NULL;
    size_t n = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        assert_int_equal(
            core_store_parse(texts[i], strlen(texts[i]), "t", &table, &cfgs, &n, NULL, NULL),
            -EINVAL);
}

static void test_fs_write_atomic_replaces_whole_content(void **state)
{
    struct dir *d = *state;
    char path[PATH_MAX + 8], buf[64] = "";
    struct stat st;
    FILE *f;

    snprintf(path, sizeof(path), "%s/x", d->path);
    assert_int_equal(core_fs_write_atomic(path, "first version", 13, 0600), 0);
    assert_int_equal(core_fs_write_atomic(path, "second", 6, 0600), 0);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 6);
    fclose(f);
    assert_string_equal(buf, "second");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(count_entries(d->path), 1);
}

/* A staged write is not at its place until committed: the old content stays readable; an abort
 * leaves the old content and nothing beside it; a commit puts the new content in place. */
static void test_fs_stage_commit_or_abort(void **state)
{
    struct dir *d = *state;
    char path[PATH_MAX + 8], *text = NULL;
    struct core_fs_staged s;
    size_t len;

    snprintf(path, sizeof(path), "%s/x", d->path);
    assert_int_equal(core_fs_write_atomic(path, "old", 3, 0600), 0);

    assert_int_equal(core_fs_stage(path, "dropped", 7, 0600, &s), 0);
    assert_int_equal(count_entries(d->path), 2);
    assert_int_equal(core_fs_read_file(path, 64, &text, &len), 0);
    assert_string_equal(text, "old");
    free(text);
    core_fs_stage_abort(&s);
    assert_int_equal(count_entries(d->path), 1);
    assert_int_equal(core_fs_read_file(path, 64, &text, &len), 0);
    assert_string_equal(text, "old");
    free(text);

    assert_int_equal(core_fs_stage(path, "new", 3, 0600, &s), 0);
    assert_int_equal(core_fs_stage_commit(&s), 0);
    assert_int_equal(count_entries(d->path), 1);
    assert_int_equal(core_fs_read_file(path, 64, &text, &len), 0);
    assert_string_equal(text, "new");
    free(text);
}

static void test_fs_write_atomic_missing_dir_fails_cleanly(void **state)
{
    struct dir *d = *state;
    char path[PATH_MAX + 16];

    snprintf(path, sizeof(path), "%s/no/such/file", d->path);
    assert_int_equal(core_fs_write_atomic(path, "x", 1, 0600), -ENOENT);
    assert_int_equal(count_entries(d->path), 0);
}

/* A state that cannot be written says why with the system's own errno (not a flattened EIO),
 * so that the API can tell a full disk (507) from the rest (500). */
static void test_store_save_keeps_the_system_errno(void **state)
{
    struct dir *d = *state;
    char path[PATH_MAX + 32];
    struct core_err err = {0};

    snprintf(path, sizeof(path), "%s/gone/%s", d->path, CORE_STORE_FILE);
    assert_int_equal(core_store_save(path, NULL, 0, NULL, &err), -ENOENT);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, strerror(ENOENT)));
    snprintf(path, sizeof(path), "/proc/self/%s", CORE_STORE_FILE);
    memset(&err, 0, sizeof(err));
    assert_true(core_store_save(path, NULL, 0, NULL, &err) < 0);
    assert_true(err.msg[0] != '\0');
}

static void test_fs_mkdir_p_creates_parents(void **state)
{
    struct dir *d = *state;
    char path[PATH_MAX + 16];
    struct stat st;

    snprintf(path, sizeof(path), "%s/a/b/c", d->path);
    assert_int_equal(core_fs_mkdir_p(path, 0700), 0);
    assert_int_equal(core_fs_mkdir_p(path, 0700), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_missing_file_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_round_trip_keeps_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_file_from_renderings_holds_the_set, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_corrupt_file_names_file_and_problem, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_bad_listener_names_it, setup, teardown),
        cmocka_unit_test(test_store_duplicate_ids_refused),
        cmocka_unit_test(test_store_wrong_shape_refused),
        cmocka_unit_test_setup_teardown(test_fs_write_atomic_replaces_whole_content, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fs_stage_commit_or_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fs_write_atomic_missing_dir_fails_cleanly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fs_mkdir_p_creates_parents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_save_keeps_the_system_errno, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
