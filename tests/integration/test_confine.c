/*
 * The data plane never reaches the control plane: a backup listener's directory may not be,
 * hold or lie inside the daemon's state directory, its token file's directory or its revisions
 * log, however the path is spelled (a symbolic link, "..", a bind mount), on every way a
 * configuration comes in (create, replace, patch, the whole configuration, a restored
 * revision, dry runs of each, the state file at start). A directory that cannot hold files is
 * the user's error (400 naming options.directory), a rolled-back change leaves no directory it
 * made, and an upload that was under way while its listener moved to another directory is
 * never answered STORED and then missing from the listing.
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define TOKEN "confine-test-token-0123456789"

static struct it_fixture *fix(void **state)
{
    return *state;
}

static bool exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* A backup listener's body: id, directory dir (JSON-escaped by jansson). */
static char *backup_body(const char *id, const char *dir)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:{s:s}}", "id", id, "service", "backup", "address",
                          "127.0.0.1", "port", 0, "options", "directory", dir);
    char *text;

    assert_non_null(j);
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    assert_non_null(text);
    return text;
}

/* method path with body; asserts a 400 problem naming field. */
static void expect_400(const struct it_daemon *d, const char *method, const char *path,
                       const char *body, const char *field)
{
    struct it_http r;

    it_http(d, method, path, body, &r);
    if (r.status != 400)
        fprintf(stderr, "# %s %s %s\n", method, path, body ? body : "");
    it_assert_problem(&r, 400, field);
    it_http_fini(&r);
}

/*
 * Every way a configuration comes in, with directory dir: each is refused with 400 naming the
 * directory, dry runs too, and the listener "ok" (whose directory is good) is left as it was.
 */
static void expect_refused_everywhere(const struct it_daemon *d, const char *ok_dir,
                                      const char *dir)
{
    char *body = backup_body("bad", dir), *put = backup_body("ok", dir), *cfg, patch[4200];
    json_t *res;

    expect_400(d, "POST", "/api/v1/listeners", body, "options.directory");
    expect_400(d, "POST", "/api/v1/listeners?dry_run=true", body, "options.directory");
    expect_400(d, "PUT", "/api/v1/listeners/ok", put, "options.directory");
    expect_400(d, "PUT", "/api/v1/listeners/ok?dry_run=true", put, "options.directory");
    {
        json_t *p = json_pack("{s:{s:s}}", "options", "directory", dir);
        char *t = json_dumps(p, JSON_COMPACT);

        snprintf(patch, sizeof(patch), "%s", t);
        free(t);
        json_decref(p);
    }
    expect_400(d, "PATCH", "/api/v1/listeners/ok", patch, "options.directory");
    expect_400(d, "PATCH", "/api/v1/listeners/ok?dry_run=true", patch, "options.directory");
    cfg = malloc(strlen(put) + 32);
    assert_non_null(cfg);
    sprintf(cfg, "{\"listeners\":[%s]}", put);
    expect_400(d, "PUT", "/api/v1/config", cfg, "listeners[0].options.directory");
    expect_400(d, "PUT", "/api/v1/config?dry_run=true", cfg, "listeners[0].options.directory");
    free(cfg);
    free(put);
    free(body);
    /* Nothing changed. */
    res = it_listener_get(d, "ok");
    assert_string_equal(it_json_str(res, "options.directory"), ok_dir);
    assert_string_equal(it_json_str(res, "status.state"), "running");
    json_decref(res);
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/bad", NULL, 404));
}

static void test_confine_state_dir_refused_however_spelled(void **state)
{
    struct it_fixture *f = fix(state);
    const char *st = f->d.state_dir;
    char *ok_dir = it_path_in(f->dir, "ok"), *body = backup_body("ok", ok_dir);
    char *inside = it_path_in(st, "data"), *link = it_path_in(f->dir, "link");
    char *via_link = it_path_in(link, "sub"), *dotdot, *bind = it_path_in(f->dir, "bind");
    char *via_bind = it_path_in(bind, "data"), *in_backup = it_path_in(st, "backup"),
         *allowed = it_path_in(st, "backup/mine"), *allowed_body = backup_body("mine", allowed);
    const char *root = "/";

    (void)it_listener_create_port(&f->d, body);
    dotdot = malloc(strlen(f->dir) + strlen(st) + 32);
    assert_non_null(dotdot);
    sprintf(dotdot, "%s/ok/../state/x", f->dir);
    assert_int_equal(symlink(st, link), 0);
    assert_int_equal(mkdir(bind, 0700), 0);
    assert_int_equal(mount(st, bind, NULL, MS_BIND, NULL), 0);

    expect_refused_everywhere(&f->d, ok_dir, st);        /* the state directory itself */
    expect_refused_everywhere(&f->d, ok_dir, inside);    /* inside it */
    expect_refused_everywhere(&f->d, ok_dir, f->dir);    /* holding it */
    expect_refused_everywhere(&f->d, ok_dir, root);      /* holding everything */
    expect_refused_everywhere(&f->d, ok_dir, link);      /* a symbolic link to it */
    expect_refused_everywhere(&f->d, ok_dir, via_link);  /* beneath that link */
    expect_refused_everywhere(&f->d, ok_dir, dotdot);    /* ".." into it */
    expect_refused_everywhere(&f->d, ok_dir, bind);      /* a bind mount of it */
    expect_refused_everywhere(&f->d, ok_dir, via_bind);  /* beneath the bind mount */
    expect_refused_everywhere(&f->d, ok_dir, in_backup); /* its backup/ itself */
    assert_false(exists(inside));
    assert_false(exists(via_bind));

    /* Beneath <state>/backup/, where the default directories live, is allowed. */
    (void)it_listener_create_port(&f->d, allowed_body);
    assert_true(exists(allowed));

    free(allowed_body);
    free(allowed);
    free(in_backup);
    free(via_bind);
    free(bind);
    free(dotdot);
    free(via_link);
    free(link);
    free(inside);
    free(body);
    free(ok_dir);
}

/* A revision that named a directory which now leads into the state directory is not restored. */
static void test_confine_restore_of_revision_naming_it_refused(void **state)
{
    struct it_fixture *f = fix(state);
    char *later = it_path_in(f->dir, "later"), *other = it_path_in(f->dir, "other");
    char *body = backup_body("b", later), path[128];
    json_t *revs, *res;
    json_int_t first;

    (void)it_listener_create_port(&f->d, body);
    revs = it_http_expect(&f->d, "GET", "/api/v1/config/revisions", NULL, 200);
    first = it_json_int(json_array_get(json_object_get(revs, "revisions"), 0), "revision");
    json_decref(revs);
    {
        char patch[512];

        snprintf(patch, sizeof(patch), "{\"options\":{\"directory\":\"%s\"}}", other);
        json_decref(it_http_expect(&f->d, "PATCH", "/api/v1/listeners/b", patch, 200));
    }
    /* The directory of that revision is now a link into the state directory. */
    {
        char *meta = it_path_in(later, ".sockserv");

        (void)rmdir(meta);
        (void)rmdir(later);
        free(meta);
    }
    assert_int_equal(symlink(f->d.state_dir, later), 0);
    snprintf(path, sizeof(path), "/api/v1/config/revisions/%lld/restore?dry_run=true",
             (long long)first);
    expect_400(&f->d, "POST", path, NULL, NULL);
    snprintf(path, sizeof(path), "/api/v1/config/revisions/%lld/restore", (long long)first);
    {
        struct it_http r;

        it_http(&f->d, "POST", path, NULL, &r);
        it_assert_problem(&r, 400, NULL);
        assert_non_null(
            strstr(json_string_value(json_object_get(r.json, "field")), "options.directory"));
        it_http_fini(&r);
    }
    res = it_listener_get(&f->d, "b");
    assert_string_equal(it_json_str(res, "options.directory"), other);
    json_decref(res);
    free(body);
    free(other);
    free(later);
}

/* The state file at start: a listener whose directory is the state directory stops the start. */
static void test_confine_state_file_naming_it_refused_at_start(void **state)
{
    struct it_fixture *f = fix(state);
    char *dir = it_path_in(f->dir, "elsewhere"), *body = backup_body("b", dir), *text;
    json_t *sf, *opts;
    int64_t ms;
    int status;
    char *log;

    (void)it_listener_create_port(&f->d, body);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM, 10000, &status, &ms), 0);
    sf = json_load_file(f->d.state_file, 0, NULL);
    assert_non_null(sf);
    opts = json_object_get(json_array_get(json_object_get(sf, "listeners"), 0), "options");
    assert_non_null(opts);
    assert_int_equal(json_object_set_new(opts, "directory", json_string(f->d.state_dir)), 0);
    text = json_dumps(sf, JSON_INDENT(2));
    json_decref(sf);
    assert_int_equal(it_file_write(f->d.state_file, text, strlen(text)), 0);
    free(text);

    assert_int_equal(it_daemon_start(&f->d, &(struct it_daemon_opts){.dir = f->dir}), -ECHILD);
    assert_false(it_status_is_exit0(f->d.status));
    log = it_daemon_stderr(&f->d);
    assert_non_null(strstr(log, "options.directory"));
    assert_non_null(strstr(log, "state directory"));
    assert_non_null(strstr(log, "listener b"));
    free(log);
    free(body);
    free(dir);
}

/* ---- the token file's directory ---- */

/* POST /api/v1/listeners body with the token; returns the status, *ret_json the body. */
static long post_with_token(const struct it_daemon *d, const char *body, json_t **ret_json)
{
    struct it_http r;
    long status;

    assert_int_equal(it_http_request(d,
                                     &(struct it_req){.method = "POST",
                                                      .path = "/api/v1/listeners",
                                                      .body = body,
                                                      .body_len = strlen(body),
                                                      .content_type = "application/json",
                                                      .token = TOKEN},
                                     &r),
                     0);
    status = r.status;
    *ret_json = json_incref(r.json);
    it_http_fini(&r);
    return status;
}

static void test_confine_token_file_directory_refused(void **state)
{
    struct it_fixture *f = fix(state);
    char *tdir = it_path_in(f->dir, "secrets"), *token = it_path_in(tdir, "token");
    char *inside = it_path_in(tdir, "backup"), *body, *text;
    const char *const args[] = {"--token-file", token, NULL};
    json_t *j, *sf;
    int64_t ms;
    int status;
    char *log;

    assert_int_equal(it_daemon_stop(&f->d, SIGTERM, 10000, &status, &ms), 0);
    assert_int_equal(mkdir(tdir, 0700), 0);
    assert_int_equal(it_file_write(token, TOKEN "\n", strlen(TOKEN) + 1), 0);
    assert_int_equal(chmod(token, 0600), 0);
    it_daemon_start_ok(&f->d, &(struct it_daemon_opts){.dir = f->dir, .extra_args = args});

    /* Anyone who reaches the backup port could read and replace the token: refused. */
    body = backup_body("b", tdir);
    assert_int_equal(post_with_token(&f->d, body, &j), 400);
    assert_string_equal(json_string_value(json_object_get(j, "field")), "options.directory");
    json_decref(j);
    free(body);
    body = backup_body("b", inside);
    assert_int_equal(post_with_token(&f->d, body, &j), 400);
    assert_string_equal(json_string_value(json_object_get(j, "field")), "options.directory");
    json_decref(j);
    free(body);
    assert_false(exists(inside));

    /* A state file that names it stops the start. */
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM, 10000, &status, &ms), 0);
    sf = json_pack("{s:i, s:[o]}", "version", 1, "listeners",
                   json_loads("{\"id\":\"t\",\"service\":\"backup\",\"transport\":\"tcp\","
                              "\"address\":\"127.0.0.1\",\"port\":0}",
                              0, NULL));
    assert_non_null(sf);
    assert_int_equal(json_object_set_new(json_array_get(json_object_get(sf, "listeners"), 0),
                                         "options", json_pack("{s:s}", "directory", inside)),
                     0);
    text = json_dumps(sf, JSON_INDENT(2));
    json_decref(sf);
    assert_int_equal(it_file_write(f->d.state_file, text, strlen(text)), 0);
    free(text);
    assert_int_equal(
        it_daemon_start(&f->d, &(struct it_daemon_opts){.dir = f->dir, .extra_args = args}),
        -ECHILD);
    assert_false(it_status_is_exit0(f->d.status));
    log = it_daemon_stderr(&f->d);
    assert_non_null(strstr(log, "options.directory"));
    assert_non_null(strstr(log, tdir));
    free(log);
    free(inside);
    free(token);
    free(tdir);
}

/* ---- directories that cannot hold files ---- */

static void test_confine_bad_directories_are_400_never_404_or_500(void **state)
{
    struct it_fixture *f = fix(state);
    char *file = it_path_in(f->dir, "a-file"), *ro = it_path_in(f->dir, "ro");
    char *in_file = it_path_in(file, "x"), *in_ro = it_path_in(ro, "x");
    char *ok_dir = it_path_in(f->dir, "ok"), *body = backup_body("ok", ok_dir);
    const char *bad[] = {file, in_file, "/proc/sockserv-x", "/sys/sockserv-x",
                         ro,   in_ro,   "relative/dir"};
    struct it_http r;

    assert_int_equal(it_file_write(file, "x", 1), 0);
    assert_int_equal(mkdir(ro, 0700), 0);
    /* Read-only for root too (permissions alone do not stop root). */
    assert_int_equal(mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=64k"), 0);
    (void)it_listener_create_port(&f->d, body);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused_everywhere(&f->d, ok_dir, bad[i]);

    /* A stopped listener is not judged on whether its directory can be written today: it can
     * still be changed (and stopped) when its disk is gone. */
    it_http(&f->d, "PATCH", "/api/v1/listeners/ok", "{\"enabled\":false}", &r);
    assert_int_equal(r.status, 200);
    it_http_fini(&r);
    free(body);
    free(ok_dir);
    free(in_ro);
    free(in_file);
    free(ro);
    free(file);
}

/* A dry run that says yes is a real call that succeeds: a directory another listener holds is
 * refused by both. */
static void test_confine_dry_run_refuses_what_the_real_call_refuses(void **state)
{
    struct it_fixture *f = fix(state);
    char *dir = it_path_in(f->dir, "held"), *x = backup_body("x", dir), *y = backup_body("y", dir);
    struct it_http r;

    (void)it_listener_create_port(&f->d, x);
    it_http(&f->d, "POST", "/api/v1/listeners?dry_run=true", y, &r);
    it_assert_problem(&r, 409, "options.directory");
    it_http_fini(&r);
    it_http(&f->d, "POST", "/api/v1/listeners", y, &r);
    it_assert_problem(&r, 409, NULL);
    it_http_fini(&r);
    /* x itself may change its options (and keeps its directory) */
    json_decref(it_http_expect(&f->d, "PATCH", "/api/v1/listeners/x?dry_run=true",
                               "{\"options\":{\"quota_bytes\":1000}}", 200));
    json_decref(it_http_expect(&f->d, "PATCH", "/api/v1/listeners/x",
                               "{\"options\":{\"quota_bytes\":1000}}", 200));
    free(y);
    free(x);
    free(dir);
}

/* Two listeners of one whole configuration naming one directory: the dry run says what the
 * real change says, and names the second. */
static void test_confine_one_directory_twice_in_one_config_refused(void **state)
{
    struct it_fixture *f = fix(state);
    char *dir = it_path_in(f->dir, "shared"), *alias = it_path_in(f->dir, "alias/../shared");
    char *body = NULL;
    struct it_http r;
    json_t *h;

    assert_true(asprintf(&body,
                         "{\"listeners\":[{\"id\":\"p\",\"service\":\"backup\",\"port\":0,"
                         "\"address\":\"127.0.0.1\",\"options\":{\"directory\":\"%s\"}},"
                         "{\"id\":\"q\",\"service\":\"backup\",\"port\":0,"
                         "\"address\":\"127.0.0.1\",\"options\":{\"directory\":\"%s\"}}]}",
                         dir, alias) > 0);
    it_http(&f->d, "PUT", "/api/v1/config?dry_run=true", body, &r);
    it_assert_problem(&r, 409, "listeners[1].options.directory");
    it_http_fini(&r);
    it_http(&f->d, "PUT", "/api/v1/config", body, &r);
    it_assert_problem(&r, 409, "listeners[1].options.directory");
    it_http_fini(&r);
    h = it_http_expect(&f->d, "GET", "/api/v1/health", NULL, 200);
    assert_int_equal(it_json_int(h, "listeners"), 0);
    json_decref(h);
    free(body);
    free(alias);
    free(dir);
}

/* ---- a change rolled back ---- */

static void test_confine_rolled_back_config_leaves_no_directory(void **state)
{
    struct it_fixture *f = fix(state);
    char *made = it_path_in(f->dir, "made"), *deep = it_path_in(made, "deep/store");
    char *def = it_path_in(f->d.state_dir, "backup/a-backup"), *b = backup_body("a-backup", deep);
    char cfg[2048];
    uint16_t taken = 0;
    int fd = it_bind(SOCK_STREAM, "127.0.0.1", 0, &taken);
    struct it_http r;

    assert_true(fd >= 0);
    /* a-backup is made (its directory with it), then b-echo cannot bind: all rolled back. */
    snprintf(cfg, sizeof(cfg),
             "{\"listeners\":[%s,{\"id\":\"b-echo\",\"service\":\"echo\",\"address\":"
             "\"127.0.0.1\",\"port\":%u}]}",
             b, (unsigned)taken);
    it_http(&f->d, "PUT", "/api/v1/config", cfg, &r);
    it_assert_problem(&r, 409, NULL);
    it_http_fini(&r);
    assert_false(exists(made));
    /* The default directory too. */
    snprintf(cfg, sizeof(cfg),
             "{\"listeners\":[{\"id\":\"a-backup\",\"service\":\"backup\",\"address\":"
             "\"127.0.0.1\",\"port\":0},{\"id\":\"b-echo\",\"service\":\"echo\",\"address\":"
             "\"127.0.0.1\",\"port\":%u}]}",
             (unsigned)taken);
    it_http(&f->d, "PUT", "/api/v1/config", cfg, &r);
    it_assert_problem(&r, 409, NULL);
    it_http_fini(&r);
    assert_false(exists(def));
    {
        char *bk = it_path_in(f->d.state_dir, "backup");

        assert_false(exists(bk));
        free(bk);
    }
    json_decref(it_http_expect(&f->d, "GET", "/api/v1/listeners/a-backup", NULL, 404));
    close(fd);
    free(b);
    free(def);
    free(deep);
    free(made);
}

/* ---- an upload under way while the directory changes ---- */

static void test_confine_upload_during_directory_change_listed_or_refused(void **state)
{
    struct it_fixture *f = fix(state);
    char *a = it_path_in(f->dir, "a"), *b = it_path_in(f->dir, "b"), *body = backup_body("mv", a);
    char patch[512], line[512], data[1000];
    uint16_t port = it_listener_create_port(&f->d, body);
    int fd = it_tcp_connect_ok(port);
    json_t *files;

    memset(data, 'z', sizeof(data));
    it_send_str_ok(fd, "PUT f.bin 1000\n");
    it_recv_line(fd, line, sizeof(line));
    assert_string_equal(line, "OK");
    it_send_ok(fd, data, 500);
    snprintf(patch, sizeof(patch), "{\"options\":{\"directory\":\"%s\"}}", b);
    json_decref(it_http_expect(&f->d, "PATCH", "/api/v1/listeners/mv", patch, 200));
    it_send_ok(fd, data + 500, 500);
    it_recv_line(fd, line, sizeof(line));
    files = it_http_expect(&f->d, "GET", "/api/v1/listeners/mv/files", NULL, 200);
    if (strncmp(line, "STORED ", 7) == 0) {
        /* Stored: then where the listener lists its files. */
        const json_t *v = json_array_get(json_object_get(files, "files"), 0);

        if (!v || strcmp(json_string_value(json_object_get(v, "name")), "f.bin") != 0)
            fail_msg("answered \"%s\" but the listing is empty", line);
    } else {
        if (strncmp(line, "ERR ", 4) != 0)
            fail_msg("answered \"%s\"", line);
        assert_int_equal(json_array_size(json_object_get(files, "files")), 0);
    }
    json_decref(files);
    close(fd);
    free(body);
    free(b);
    free(a);
}

/* Unmounts what a test mounted in its directory (lazily, even when it failed midway), then the
 * common teardown. */
static int teardown_mounts(void **state)
{
    static const char *const names[] = {"bind", "ro"};

    for (size_t i = 0; *state && i < sizeof(names) / sizeof(names[0]); i++) {
        char *mnt = it_path_in(fix(state)->dir, names[i]);

        (void)umount2(mnt, MNT_DETACH);
        free(mnt);
    }
    return it_fixture_teardown(state);
}

/* ---- the TLS key's and certificate's directories, the API's socket ---- */

/* Writes a state file with one backup listener whose directory is dir. */
static void state_file_naming(const struct it_daemon *d, const char *dir)
{
    json_t *sf = json_pack("{s:i, s:[{s:s, s:s, s:s, s:i, s:{s:s}}]}", "version", 1, "listeners",
                           "id", "t", "service", "backup", "address", "127.0.0.1", "port", 0,
                           "options", "directory", dir);
    char *text;

    assert_non_null(sf);
    text = json_dumps(sf, JSON_INDENT(2));
    json_decref(sf);
    assert_int_equal(it_file_write(d->state_file, text, strlen(text)), 0);
    free(text);
}

/* Starts the daemon on a state file naming dir, with args; asserts it refuses, naming both. */
static void refused_at_start(struct it_fixture *f, const char *dir, const char *api,
                             const char *const *args)
{
    char *log;

    state_file_naming(&f->d, dir);
    assert_int_equal(
        it_daemon_start(&f->d,
                        &(struct it_daemon_opts){.dir = f->dir, .api = api, .extra_args = args}),
        -ECHILD);
    assert_false(it_status_is_exit0(f->d.status));
    log = it_daemon_stderr(&f->d);
    assert_non_null(strstr(log, "options.directory"));
    assert_non_null(strstr(log, dir));
    free(log);
}

static void test_confine_tls_and_socket_directories_refused(void **state)
{
    struct it_fixture *f = fix(state);
    char *tls = it_path_in(f->dir, "tls"), *cert = it_path_in(tls, "cert.pem");
    char *key = it_path_in(tls, "key.pem"), *run = it_path_in(f->dir, "run");
    char *sock = it_path_in(run, "api.sock"), *data = it_path_in(f->dir, "data");
    char api[IT_PATH_MAX + 16];
    const char *const tls_args[] = {"--api-tls-cert", cert, "--api-tls-key", key, NULL};
    int64_t ms;
    int status;

    assert_int_equal(it_daemon_stop(&f->d, SIGTERM, 10000, &status, &ms), 0);
    assert_int_equal(mkdir(tls, 0700), 0);
    assert_int_equal(mkdir(run, 0700), 0);
    it_make_certificate(cert, key);

    /* A backup client could read the private key: refused. */
    refused_at_start(f, tls, NULL, tls_args);
    /* One that holds the API's socket could replace it by a file: refused. */
    snprintf(api, sizeof(api), "unix:%s", sock);
    refused_at_start(f, run, api, NULL);
    /* Elsewhere is fine, with the same key. */
    state_file_naming(&f->d, data);
    it_daemon_start_ok(&f->d, &(struct it_daemon_opts){.dir = f->dir, .extra_args = tls_args});
    assert_true(strncmp(f->d.url, "https://", 8) == 0);
    free(data);
    free(sock);
    free(run);
    free(key);
    free(cert);
    free(tls);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_confine_state_dir_refused_however_spelled,
                                        it_fixture_setup, teardown_mounts),
        T(test_confine_restore_of_revision_naming_it_refused),
        T(test_confine_state_file_naming_it_refused_at_start),
        T(test_confine_token_file_directory_refused),
        T(test_confine_tls_and_socket_directories_refused),
        cmocka_unit_test_setup_teardown(test_confine_bad_directories_are_400_never_404_or_500,
                                        it_fixture_setup, teardown_mounts),
        T(test_confine_dry_run_refuses_what_the_real_call_refuses),
        T(test_confine_one_directory_twice_in_one_config_refused),
        T(test_confine_rolled_back_config_leaves_no_directory),
        T(test_confine_upload_during_directory_change_listed_or_refused),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
