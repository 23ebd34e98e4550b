/*
 * The backup service over real sockets: listeners created through the REST API on ephemeral
 * ports, files uploaded and restored with the `sockserv backup` command, with raw protocol
 * clients (the lecture's bare-name client among them) and with a client killed mid-upload;
 * what lands in the listener's directory, what the listings and counters say, and the
 * command's exit codes. Every guarantee of the backup protocol has a test here.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define MIB (1024 * 1024)
#define CLI_TIMEOUT_MS 60000
#define N_RACERS 6
#define LINE_CAP 2048

/* ---- small helpers ---- */

static struct it_fixture *fix(void **state)
{
    return *state;
}

static void write_file(const char *path, const void *p, size_t n)
{
    int r = it_file_write(path, p, n);

    if (r < 0)
        fail_msg("write %s: %s", path, strerror(-r));
}

/* Asserts the file at path holds exactly want. */
static void assert_file(const char *path, const void *want, size_t n)
{
    size_t len = 0;
    char *got = it_file_read(path, &len);

    if (!got)
        fail_msg("%s: %s", path, strerror(errno));
    if (len != n)
        fail_msg("%s holds %zu bytes, want %zu", path, len, n);
    assert_memory_equal(got, want, n);
    free(got);
}

static void assert_no_entry(const char *path)
{
    struct stat st;

    if (lstat(path, &st) == 0)
        fail_msg("%s exists", path);
}

/* Asserts the entries of dir are exactly want (space-separated, sorted; the store's metadata
 * directory included): no partial file, no temporary file left behind. */
static void assert_dir_names(const char *dir, const char *want)
{
    char *got = it_dir_names(dir);

    if (!got)
        fail_msg("scandir %s: %s", dir, strerror(errno));
    if (strcmp(got, want) != 0)
        fail_msg("%s holds \"%s\", want \"%s\"", dir, got, want);
    free(got);
}

/* ---- the REST API ---- */

/* A backup listener on port 0 keeping its files in dir; extra is more options JSON members
 * (",\"on_exists\":\"reject\"") or "". Returns the bound port. */
static uint16_t backup_listener(const struct it_daemon *d, const char *id, const char *dir,
                                const char *extra)
{
    char body[1024];

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"backup\",\"port\":0,"
             "\"options\":{\"directory\":\"%s\"%s}}",
             id, dir, extra);
    return it_listener_create_port(d, body);
}

/* A service counter of listener id (metrics.service.NAME). */
static uint64_t svc_metric(const struct it_daemon *d, const char *id, const char *name)
{
    char path[128];

    snprintf(path, sizeof(path), "service.%s", name);
    return it_metric(d, id, path);
}

/* GET /api/v1/listeners/ID/files: the "files" array (the whole body is kept in *ret_body). */
static json_t *rest_files(const struct it_daemon *d, const char *id, json_t **ret_body)
{
    char path[128];
    json_t *body, *files;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s/files", id);
    body = it_http_expect(d, "GET", path, NULL, 200);
    assert_non_null(body);
    files = json_object_get(body, "files");
    if (!json_is_array(files))
        fail_msg("GET %s: no \"files\" array", path);
    *ret_body = body;
    return files;
}

static json_t *find_file(json_t *files, const char *name)
{
    size_t i;
    json_t *v;

    json_array_foreach(files, i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));

        if (n && strcmp(n, name) == 0)
            return v;
    }
    return NULL;
}

/* ---- the command line ---- */

/* Runs `sockserv backup ARGS...` (NULL-terminated) and collects what it printed. */
static void run_backup(struct it_proc *p, ...)
{
    const char *argv[24];
    size_t n = 0;
    va_list ap;

    va_start(ap, p);
    for (const char *a = va_arg(ap, const char *); a; a = va_arg(ap, const char *)) {
        assert_true(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    it_run_verb("backup", argv, NULL, 0, CLI_TIMEOUT_MS, p);
    if (p->timed_out)
        fail_msg("sockserv backup %s timed out; stderr: %s", argv[0], p->err);
}

/* Asserts the exit code, printing what the command said otherwise. */
static void assert_exit(const struct it_proc *p, int code)
{
    int got = it_proc_exit_code(p);

    if (got != code)
        fail_msg("exit %d (%s), want %d\nstdout: %s\nstderr: %s", got, it_status_str(p->status),
                 code, p->out, p->err);
}

static void assert_contains(const char *text, const char *what, const char *where)
{
    if (!text || !strstr(text, what))
        fail_msg("%s does not contain \"%s\": %s", where, what, text ? text : "(nothing)");
}

/* `sockserv backup put FILE --name NAME 127.0.0.1 PORT`, asserting exit 0 and the version. */
static void cli_put_ok(const char *file, const char *name, uint16_t port, unsigned version)
{
    struct it_proc p;
    char ps[8], want[320];

    snprintf(ps, sizeof(ps), "%u", port);
    run_backup(&p, "put", file, "--name", name, "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    snprintf(want, sizeof(want), "stored %s version %u (", name, version);
    assert_contains(p.out, want, "stdout");
    it_proc_fini(&p);
}

/* ---- raw protocol clients ---- */

static void expect_prefix(int fd, const char *prefix)
{
    char line[LINE_CAP];

    it_recv_line(fd, line, sizeof(line));
    if (strncmp(line, prefix, strlen(prefix)) != 0)
        fail_msg("answer \"%s\", want it to start with \"%s\"", line, prefix);
}

/* Asserts the server closes the connection now, with nothing more to say. */
static void expect_eof(int fd)
{
    char *rest = NULL;
    size_t n = 0;
    int r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &rest, &n);

    if (r < 0 && r != -ECONNRESET)
        fail_msg("waiting for the server to close: %s", strerror(-r));
    if (n != 0)
        fail_msg("%zu more bytes before the close: %.80s", n, rest);
    free(rest);
}

/*
 * Sends content as a client that streams while watching for an answer: stops at the first
 * answer (or when the server stops reading). Returns the bytes sent.
 */
static size_t stream_until_answer(int fd, const uint8_t *p, size_t n)
{
    int64_t deadline = it_now_ms() + IT_IO_TIMEOUT_MS;
    size_t sent = 0;

    while (sent < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLOUT};
        ssize_t w;

        if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
            break;
        if (!(pfd.revents & POLLOUT)) {
            if (it_now_ms() > deadline)
                fail_msg("the server neither reads nor answers after %zu bytes", sent);
            continue;
        }
        w = send(fd, p + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0)
            break;
        sent += (size_t)w;
    }
    return sent;
}

/* The LIST line of version of name, or NULL (malloc'd). */
static char *list_line(uint16_t port, const char *name, unsigned version)
{
    char *all = it_backup_list(port, NULL), *line = NULL, prefix[300];

    snprintf(prefix, sizeof(prefix), "%s %u ", name, version);
    for (char *p = all; p && *p;) {
        char *nl = strchr(p, '\n');

        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            line = strndup(p, (size_t)(nl - p));
            break;
        }
        p = nl + 1;
    }
    free(all);
    return line;
}

/* ---- uploads with the command line, listed everywhere ---- */

static void test_backup_cli_put_stores_identical_file_listed_everywhere(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *store = it_path_in(fix(state)->dir, "files"),
         *src = it_path_in(fix(state)->dir, "report.bin");
    char *stored = it_path_in(store, "report.pdf"), ps[8], hex[65];
    size_t len = 3 * MIB + 17;
    uint8_t *data = it_pattern(len, 1);
    json_t *body, *files, *file;
    struct it_proc p;
    uint16_t port;

    port = backup_listener(d, "b1", store, "");
    snprintf(ps, sizeof(ps), "%u", port);
    write_file(src, data, len);
    it_sha256_hex(data, len, hex);

    run_backup(&p, "put", src, "--name", "report.pdf", "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    assert_contains(p.out, "stored report.pdf version 1 (3145745 bytes, sha256 ", "stdout");
    assert_contains(p.out, hex, "stdout");
    it_proc_fini(&p);
    assert_file(stored, data, len);
    assert_dir_names(store, ".sockserv report.pdf");

    run_backup(&p, "ls", "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    assert_contains(p.out, "report.pdf", "ls");
    assert_contains(p.out, "3145745", "ls");
    assert_contains(p.out, " verified ", "ls");
    assert_contains(p.out, "current", "ls");
    assert_contains(p.out, hex, "ls");
    it_proc_fini(&p);

    files = rest_files(d, "b1", &body);
    assert_int_equal(json_array_size(files), 1);
    file = find_file(files, "report.pdf");
    assert_non_null(file);
    assert_int_equal(it_json_int(file, "size"), len);
    assert_string_equal(it_json_str(file, "sha256"), hex);
    assert_true(it_json_bool(file, "verified"));
    assert_int_equal(it_json_int(file, "version"), 1);
    assert_int_equal(json_array_size(json_object_get(file, "versions")), 0);
    json_decref(body);

    assert_int_equal(svc_metric(d, "b1", "uploads_started"), 1);
    assert_int_equal(svc_metric(d, "b1", "uploads_stored"), 1);
    assert_int_equal(svc_metric(d, "b1", "bytes_stored"), len);
    free(data);
    free(stored);
    free(src);
    free(store);
}

/* ---- a client killed mid-upload ---- */

struct counters_rise {
    const struct it_daemon *d;
    uint64_t before;
};

static uint64_t cut_or_mismatch(const struct it_daemon *d)
{
    return svc_metric(d, "b1", "uploads_cut") + svc_metric(d, "b1", "uploads_rejected_mismatch");
}

static bool has_risen(void *arg)
{
    struct counters_rise *c = arg;

    return cut_or_mismatch(c->d) > c->before;
}

/* The child: header, part of the content, a word to the parent, then it waits to be killed. */
static void upload_part_then_wait(uint16_t port, const char *hdr, const uint8_t *p, size_t n,
                                  int tell_fd)
{
    char ok[3];
    int fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);

    if (fd < 0 || it_send_all(fd, hdr, strlen(hdr), IT_IO_TIMEOUT_MS) < 0 ||
        it_recv_exact(fd, ok, 3, IT_IO_TIMEOUT_MS) < 0 || memcmp(ok, "OK\n", 3) != 0 ||
        it_send_all(fd, p, n, IT_IO_TIMEOUT_MS) < 0)
        _exit(1);
    (void)!write(tell_fd, "x", 1);
    for (;;)
        pause();
}

static void test_backup_client_killed_mid_upload_leaves_nothing_and_older_copy(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *store = it_path_in(fix(state)->dir, "files"), *stored = it_path_in(store, "db.dump");
    size_t len = 4 * MIB, part = MIB + 4321;
    uint8_t *old = it_pattern(1000, 2), *data = it_pattern(len, 3);
    struct counters_rise rise = {.d = d};
    uint64_t want_in;
    char hdr[160], hex[65], got;
    struct pollfd pfd;
    json_t *body, *files, *file;
    int tell[2], status;
    unsigned n;
    uint16_t port;
    pid_t pid;

    port = backup_listener(d, "b1", store, "");
    it_backup_put_ok(port, "db.dump", old, 1000, 1);
    it_sha256_hex(data, len, hex);
    snprintf(hdr, sizeof(hdr), "PUT db.dump %zu %s\n", len, hex);
    rise.before = cut_or_mismatch(d);
    want_in = it_metric(d, "b1", "bytes_in") + strlen(hdr) + part;

    assert_int_equal(pipe(tell), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(tell[0]);
        upload_part_then_wait(port, hdr, data, part, tell[1]);
    }
    close(tell[1]);
    pfd = (struct pollfd){.fd = tell[0], .events = POLLIN};
    if (poll(&pfd, 1, IT_IO_TIMEOUT_MS) != 1 || read(tell[0], &got, 1) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("the uploading child did not get its header accepted and its bytes sent");
    }
    close(tell[0]);
    /* the server has read the header and part of the content: the upload is in progress */
    if (!it_metric_reaches(d, "b1", "bytes_in", want_in, IT_WAIT_MS)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("the server did not receive the first %zu bytes", part);
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    if (!it_wait_until(IT_WAIT_MS, has_risen, &rise))
        fail_msg("neither uploads_cut nor uploads_rejected_mismatch rose after the kill");
    it_assert_metric_eventually(d, "b1", "connections_active", 0, IT_WAIT_MS);
    /* the earlier copy, byte for byte, alone: no partial file, no temporary file */
    assert_file(stored, old, 1000);
    assert_dir_names(store, ".sockserv db.dump");
    free(it_backup_list(port, &n));
    assert_int_equal(n, 1);
    files = rest_files(d, "b1", &body);
    assert_int_equal(json_array_size(files), 1);
    file = find_file(files, "db.dump");
    assert_non_null(file);
    assert_int_equal(it_json_int(file, "size"), 1000);
    assert_int_equal(json_array_size(json_object_get(file, "versions")), 0);
    json_decref(body);
    assert_int_equal(svc_metric(d, "b1", "uploads_stored"), 1);
    free(old);
    free(data);
    free(stored);
    free(store);
}

/* ---- a full disk ---- */

static char *tmpfs_path(void **state)
{
    return it_path_in(fix(state)->dir, "tmpfs");
}

/* Unmounts the test's tmpfs (lazily: the daemon may still hold the directory), then the
 * common teardown. */
static int teardown_tmpfs(void **state)
{
    if (*state) {
        char *mnt = tmpfs_path(state);

        if (umount2(mnt, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
            fprintf(stderr, "# teardown: umount %s: %s\n", mnt, strerror(errno));
        free(mnt);
    }
    return it_fixture_teardown(state);
}

static void test_backup_disk_full_refused_keeps_nothing_and_older_copy(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *mnt = tmpfs_path(state), *store = it_path_in(mnt, "store"),
         *keep = it_path_in(store, "keep");
    size_t big = 2 * MIB;
    uint8_t *data = it_pattern(big, 4);
    unsigned n;
    uint16_t port;
    int fd;

    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") < 0) {
        print_message("cannot mount a 1 MiB tmpfs (%s; not root?): the disk-full case is "
                      "skipped\n",
                      strerror(errno));
        free(keep);
        free(store);
        free(mnt);
        free(data);
        skip();
    }
    port = backup_listener(d, "b1", store, "");
    it_backup_put_ok(port, "keep", "precious", 8, 1);

    /* the header declares more than the disk holds: refused before any byte is sent */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "PUT huge 2097152\n");
    expect_prefix(fd, "ERR disk-full ");
    /* and the connection goes on */
    it_send_str_ok(fd, "QUIT\n");
    it_expect_line(fd, "BYE");
    close(fd);

    /* the lecture's size-less flow runs out of disk while streaming */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "keep");
    it_expect_line(fd, "ACK");
    (void)stream_until_answer(fd, data, big);
    expect_prefix(fd, "ERR disk-full write failed after ");
    close(fd);

    assert_file(keep, "precious", 8);
    assert_dir_names(store, ".sockserv keep");
    free(it_backup_list(port, &n));
    assert_int_equal(n, 1);
    assert_int_equal(svc_metric(d, "b1", "uploads_rejected_disk_full"), 2);
    /* the space came back: a new upload fits */
    it_backup_put_ok(port, "after", data, 64 * 1024, 1);
    free(data);
    free(keep);
    free(store);
    free(mnt);
}

/* ---- mismatches ---- */

static void test_backup_size_and_checksum_mismatch_refused_keep_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *store = it_path_in(fix(state)->dir, "files"), *doc = it_path_in(store, "doc");
    char hex[65], line[256], *listing;
    unsigned n;
    uint16_t port;
    int fd;

    port = backup_listener(d, "b1", store, ",\"resume_ttl_ms\":0");
    it_backup_put_ok(port, "doc", "version one", 11, 1);

    /* fewer bytes than the header said, then the client closes its side */
    fd = it_tcp_connect_ok(port);
    it_sha256_hex("0123456789", 10, hex);
    snprintf(line, sizeof(line), "PUT doc 10 %s\n", hex);
    it_send_str_ok(fd, line);
    it_expect_line(fd, "OK");
    it_send_str_ok(fd, "0123");
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    it_expect_line(fd, "ERR size-mismatch the client closed after 4 of 10 bytes; nothing kept");
    expect_eof(fd);
    close(fd);

    /* the content is not what the header's SHA-256 says */
    fd = it_tcp_connect_ok(port);
    it_sha256_hex("other", 5, hex);
    snprintf(line, sizeof(line), "PUT doc 5 %s\n", hex);
    it_send_str_ok(fd, line);
    it_expect_line(fd, "OK");
    it_send_str_ok(fd, "hello");
    expect_prefix(fd, "ERR checksum-mismatch received content has sha256 ");
    /* the connection goes on */
    it_send_str_ok(fd, "QUIT\n");
    it_expect_line(fd, "BYE");
    close(fd);

    assert_file(doc, "version one", 11);
    assert_dir_names(store, ".sockserv doc");
    listing = it_backup_list(port, &n);
    assert_int_equal(n, 1);
    assert_contains(listing, "doc 1 11 ", "LIST");
    free(listing);
    assert_int_equal(svc_metric(d, "b1", "uploads_rejected_mismatch"), 2);
    assert_int_equal(svc_metric(d, "b1", "uploads_stored"), 1);
    free(doc);
    free(store);
}

/* ---- existing names ---- */

static void test_backup_second_upload_keeps_first_as_version(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *store = it_path_in(fix(state)->dir, "files"), *src = it_path_in(fix(state)->dir, "cfg");
    char *out = it_path_in(fix(state)->dir, "restored"), *cur = it_path_in(store, "app.conf");
    char ps[8], *l1, *l2;
    json_t *body, *files, *file, *old;
    struct it_proc p;
    uint16_t port;

    port = backup_listener(d, "b1", store, "");
    snprintf(ps, sizeof(ps), "%u", port);
    write_file(src, "first copy\n", 11);
    cli_put_ok(src, "app.conf", port, 1);
    write_file(src, "second, longer copy\n", 20);
    cli_put_ok(src, "app.conf", port, 2);

    assert_file(cur, "second, longer copy\n", 20);
    l2 = list_line(port, "app.conf", 2);
    l1 = list_line(port, "app.conf", 1);
    assert_non_null(l2);
    assert_non_null(l1);
    assert_contains(l2, " current", "LIST");
    assert_contains(l1, "app.conf 1 11 ", "LIST");
    assert_contains(l1, " old", "LIST");
    free(l1);
    free(l2);

    files = rest_files(d, "b1", &body);
    file = find_file(files, "app.conf");
    assert_non_null(file);
    assert_int_equal(it_json_int(file, "version"), 2);
    assert_int_equal(json_array_size(json_object_get(file, "versions")), 1);
    old = json_array_get(json_object_get(file, "versions"), 0);
    assert_int_equal(it_json_int(old, "version"), 1);
    assert_int_equal(it_json_int(old, "size"), 11);
    json_decref(body);

    run_backup(&p, "ls", "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    assert_contains(p.out, "old", "ls");
    it_proc_fini(&p);
    run_backup(&p, "get", "app.conf", "--version", "1", "-o", out, "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    it_proc_fini(&p);
    assert_file(out, "first copy\n", 11);
    free(cur);
    free(out);
    free(src);
    free(store);
}

static void test_backup_replace_swaps_and_reject_refuses(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *rep = it_path_in(fix(state)->dir, "rep"), *rej = it_path_in(fix(state)->dir, "rej");
    char *src = it_path_in(fix(state)->dir, "src"), *rep_doc = it_path_in(rep, "doc");
    char *rej_doc = it_path_in(rej, "doc"), ps[8], *listing;
    uint16_t rep_port, rej_port;
    struct it_proc p;
    unsigned n;
    int fd;

    rep_port = backup_listener(d, "rep", rep, ",\"on_exists\":\"replace\"");
    rej_port = backup_listener(d, "rej", rej, ",\"on_exists\":\"reject\"");

    write_file(src, "old", 3);
    cli_put_ok(src, "doc", rep_port, 1);
    cli_put_ok(src, "doc", rej_port, 1);
    write_file(src, "new!", 4);

    /* replace: the new copy takes the name, the older one is gone */
    cli_put_ok(src, "doc", rep_port, 2);
    assert_file(rep_doc, "new!", 4);
    listing = it_backup_list(rep_port, &n);
    assert_int_equal(n, 1);
    assert_contains(listing, "doc 2 4 ", "LIST");
    free(listing);

    /* reject: refused, the first copy stays */
    snprintf(ps, sizeof(ps), "%u", rej_port);
    run_backup(&p, "put", src, "--name", "doc", "127.0.0.1", ps, NULL);
    assert_exit(&p, 1);
    assert_contains(p.err, "ERR exists", "stderr");
    it_proc_fini(&p);
    fd = it_tcp_connect_ok(rej_port);
    it_send_str_ok(fd, "PUT doc 4\n");
    it_expect_line(fd, "ERR exists doc exists and on_exists is reject");
    close(fd);
    assert_file(rej_doc, "old", 3);
    listing = it_backup_list(rej_port, &n);
    assert_int_equal(n, 1);
    free(listing);
    assert_int_equal(svc_metric(d, "rej", "uploads_rejected_exists"), 2);
    free(rej_doc);
    free(rep_doc);
    free(src);
    free(rej);
    free(rep);
}

/* Open descriptors of process pid on deleted files beneath dir. */
static unsigned deleted_fds_beneath(pid_t pid, const char *dir)
{
    char path[64], target[PATH_MAX];
    unsigned n = 0;
    struct dirent *de;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d))) {
        char link[320];
        ssize_t len;

        snprintf(link, sizeof(link), "%s/%s", path, de->d_name);
        len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strncmp(target, dir, strlen(dir)) == 0 && strstr(target, " (deleted)"))
            n++;
    }
    closedir(d);
    return n;
}

struct replaced_wait {
    pid_t pid;
    const char *dir;
};

static bool replaced_closed(void *arg)
{
    const struct replaced_wait *w = arg;

    return deleted_fds_beneath(w->pid, w->dir) == 0;
}

/* The copy an upload replaces is freed after STORED is on its way (freeing a large file's
 * blocks takes a while), at the session's next command or end, and never left open. */
static void test_backup_replaced_copy_freed_after_the_answer(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *rep = it_path_in(fix(state)->dir, "rep"), *src = it_path_in(fix(state)->dir, "src");
    char *doc = it_path_in(rep, "doc");
    struct replaced_wait w = {.pid = d->pid, .dir = rep};
    uint16_t port;
    int fd;

    port = backup_listener(d, "rep", rep, ",\"on_exists\":\"replace\"");
    write_file(src, "old", 3);
    cli_put_ok(src, "doc", port, 1);
    assert_int_equal(deleted_fds_beneath(d->pid, rep), 0);

    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "PUT doc 4\n");
    it_expect_line(fd, "OK");
    it_send_str_ok(fd, "new!");
    expect_prefix(fd, "STORED doc 2 4 ");
    /* answered: the older copy is unlinked, still open, its blocks not yet freed */
    assert_int_equal(deleted_fds_beneath(d->pid, rep), 1);
    it_send_str_ok(fd, "LIST\n");
    expect_prefix(fd, "OK 1");
    expect_prefix(fd, "doc 2 4 ");
    it_expect_line(fd, "END");
    assert_true(it_wait_until(IT_WAIT_MS, replaced_closed, &w));

    /* the same when the connection simply ends after STORED */
    it_send_str_ok(fd, "PUT doc 3\n");
    it_expect_line(fd, "OK");
    it_send_str_ok(fd, "3rd");
    expect_prefix(fd, "STORED doc 3 3 ");
    close(fd);
    assert_true(it_wait_until(IT_WAIT_MS, replaced_closed, &w));
    assert_file(doc, "3rd", 3);
    free(doc);
    free(src);
    free(rep);
}

/* ---- concurrent uploads of one name ---- */

struct racers {
    pid_t pid[N_RACERS];
    int status[N_RACERS];
    bool done[N_RACERS];
};

static bool racers_done(void *arg)
{
    struct racers *r = arg;
    bool all = true;

    for (int i = 0; i < N_RACERS; i++) {
        if (!r->done[i] && waitpid(r->pid[i], &r->status[i], WNOHANG) == r->pid[i])
            r->done[i] = true;
        all = all && r->done[i];
    }
    return all;
}

/* Starts N_RACERS `sockserv backup put SRC_i --name shared` at once; waits for them all. */
static void race(const char *dir, uint16_t port, uint8_t *const data[N_RACERS],
                 const size_t len[N_RACERS], struct racers *r)
{
    char ps[8];

    snprintf(ps, sizeof(ps), "%u", port);
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < N_RACERS; i++) {
        char name[32], *src, *log;

        snprintf(name, sizeof(name), "racer-%d", i);
        src = it_path_in(dir, name);
        snprintf(name, sizeof(name), "racer-%d.log", i);
        log = it_path_in(dir, name);
        write_file(src, data[i], len[i]);
        r->pid[i] = fork();
        assert_true(r->pid[i] >= 0);
        if (r->pid[i] == 0) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

            if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                _exit(127);
            execl(it_bin(), it_bin(), "backup", "put", src, "--name", "shared", "127.0.0.1", ps,
                  (char *)NULL);
            _exit(127);
        }
        free(log);
        free(src);
    }
    if (!it_wait_until(CLI_TIMEOUT_MS, racers_done, r)) {
        for (int i = 0; i < N_RACERS; i++) {
            if (!r->done[i]) {
                kill(r->pid[i], SIGKILL);
                waitpid(r->pid[i], NULL, 0);
            }
        }
        fail_msg("the concurrent uploads did not all end");
    }
}

/* Which racer's content buf is (-1: none). */
static int whose(const uint8_t *buf, size_t n, uint8_t *const data[N_RACERS],
                 const size_t len[N_RACERS])
{
    for (int i = 0; i < N_RACERS; i++) {
        if (n == len[i] && memcmp(buf, data[i], n) == 0)
            return i;
    }
    return -1;
}

static void test_backup_concurrent_uploads_same_name_end_consistent_and_listed(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *dir = fix(state)->dir;
    char *ver = it_path_in(dir, "ver"), *rep = it_path_in(dir, "rep"),
         *rej = it_path_in(dir, "rej");
    uint8_t *data[N_RACERS];
    size_t len[N_RACERS];
    bool seen[N_RACERS] = {false};
    uint16_t ver_port, rep_port, rej_port;
    struct racers r;
    int winner = -1, winners = 0;
    unsigned n;
    char *listing;

    for (int i = 0; i < N_RACERS; i++) {
        len[i] = 700 * 1024 + (size_t)i * 4099;
        data[i] = it_pattern(len[i], 100 + (unsigned)i);
    }
    ver_port = backup_listener(d, "ver", ver, "");
    rep_port = backup_listener(d, "rep", rep, ",\"on_exists\":\"replace\"");
    rej_port = backup_listener(d, "rej", rej, ",\"on_exists\":\"reject\"");

    /* version: every upload succeeds and is kept, each copy one client's whole file */
    race(dir, ver_port, data, len, &r);
    for (int i = 0; i < N_RACERS; i++) {
        if (!it_status_is_exit0(r.status[i]))
            fail_msg("racer %d ended with %s under on_exists version", i,
                     it_status_str(r.status[i]));
    }
    listing = it_backup_list(ver_port, &n);
    assert_int_equal(n, N_RACERS);
    free(listing);
    for (unsigned v = 1; v <= N_RACERS; v++) {
        size_t got_n;
        uint8_t *got = it_backup_get(ver_port, "shared", v, &got_n);
        int i = whose(got, got_n, data, len);

        if (i < 0 || seen[i])
            fail_msg("version %u is %s", v, i < 0 ? "nobody's content" : "a repeated copy");
        seen[i] = true;
        free(got);
    }
    assert_dir_names(ver, ".sockserv shared");

    /* replace: every upload succeeds; one whole copy remains, no version */
    race(dir, rep_port, data, len, &r);
    for (int i = 0; i < N_RACERS; i++)
        assert_true(it_status_is_exit0(r.status[i]));
    listing = it_backup_list(rep_port, &n);
    assert_int_equal(n, 1);
    free(listing);
    {
        size_t got_n;
        uint8_t *got = it_backup_get(rep_port, "shared", 0, &got_n);

        assert_true(whose(got, got_n, data, len) >= 0);
        free(got);
    }
    assert_dir_names(rep, ".sockserv shared");

    /* reject: exactly one upload wins, the others are told why; its copy is the one kept */
    race(dir, rej_port, data, len, &r);
    for (int i = 0; i < N_RACERS; i++) {
        char name[32], *log, *text;

        if (it_status_is_exit0(r.status[i])) {
            winner = i;
            winners++;
            continue;
        }
        assert_int_equal(WEXITSTATUS(r.status[i]), 1);
        snprintf(name, sizeof(name), "racer-%d.log", i);
        log = it_path_in(dir, name);
        text = it_file_read(log, NULL);
        assert_non_null(text);
        if (!strstr(text, "ERR exists") && !strstr(text, "ERR busy"))
            fail_msg("racer %d was refused without ERR exists or ERR busy: %s", i, text);
        free(text);
        free(log);
    }
    assert_int_equal(winners, 1);
    {
        size_t got_n;
        uint8_t *got = it_backup_get(rej_port, "shared", 0, &got_n);

        assert_int_equal(whose(got, got_n, data, len), winner);
        free(got);
    }
    listing = it_backup_list(rej_port, &n);
    assert_int_equal(n, 1);
    free(listing);
    assert_dir_names(rej, ".sockserv shared");

    for (int i = 0; i < N_RACERS; i++)
        free(data[i]);
    free(rej);
    free(rep);
    free(ver);
}

/* ---- names and links ---- */

static void test_backup_bad_names_refused_with_bad_name(void **state)
{
    static const struct {
        const char *cmd, *why;
    } bad[] = {
        {"PUT a/b 1\n", "name contains /"},
        {"PUT a%2Fb 1\n", "name contains /"},
        {"PUT ..%2F..%2Fescape 1\n", "name contains /"},
        {"PUT .. 1\n", "name is . or .."},
        {"PUT a%00b 1\n", "name contains NUL"},
        {"PUT a%01b 1\n", "name contains a control character"},
        {"PUT a%0Ab 1\n", "name contains a control character"},
        {"PUT a%7Fb 1\n", "name contains a control character"},
        {"GET ..%2Fescape\n", "name contains /"},
    };
    struct it_daemon *d = it_daemon_of(state);
    char *store = it_path_in(fix(state)->dir, "files"), cmd[600], want[300], *listing;
    char name[257], *escape = it_path_in(fix(state)->dir, "escape");
    unsigned n;
    uint16_t port;
    int fd;

    port = backup_listener(d, "b1", store, "");
    fd = it_tcp_connect_ok(port);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        it_send_str_ok(fd, bad[i].cmd);
        snprintf(want, sizeof(want), "ERR bad-name %s", bad[i].why);
        it_expect_line(fd, want);
    }
    /* 256 bytes is one too many; 255 is fine */
    memset(name, 'n', 256);
    name[256] = '\0';
    snprintf(cmd, sizeof(cmd), "PUT %s 1\n", name);
    it_send_str_ok(fd, cmd);
    it_expect_line(fd, "ERR bad-name name is longer than 255 bytes");
    name[255] = '\0';
    snprintf(cmd, sizeof(cmd), "PUT %s 1\n", name);
    it_send_str_ok(fd, cmd);
    it_expect_line(fd, "OK");
    it_send_str_ok(fd, "x");
    snprintf(want, sizeof(want), "STORED %s 1 1 ", name);
    expect_prefix(fd, want);
    close(fd);

    /* the lecture's flow: a bare name that breaks the rules is refused, then closed */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "../escape");
    it_expect_line(fd, "ERR bad-name name contains /");
    expect_eof(fd);
    close(fd);
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "tab\there");
    it_expect_line(fd, "ERR bad-name name contains a control character");
    expect_eof(fd);
    close(fd);

    snprintf(want, sizeof(want), ".sockserv %s", name);
    assert_dir_names(store, want);
    assert_no_entry(escape);
    listing = it_backup_list(port, &n);
    assert_int_equal(n, 1);
    free(listing);
    assert_int_equal(svc_metric(d, "b1", "uploads_rejected_bad_name"), 12);
    free(escape);
    free(store);
}

static void test_backup_planted_symlink_never_followed(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *dir = fix(state)->dir;
    char *store = it_path_in(dir, "files"), *outside = it_path_in(dir, "outside");
    char *secret = it_path_in(outside, "secret"), *link = it_path_in(store, "link.txt");
    char *dlink = it_path_in(store, "linkdir"), *out = it_path_in(dir, "got"), ps[8];
    struct it_proc p;
    unsigned n;
    uint16_t port;
    int fd;

    port = backup_listener(d, "b1", store, "");
    snprintf(ps, sizeof(ps), "%u", port);
    assert_int_equal(mkdir(outside, 0700), 0);
    write_file(secret, "secret", 6);
    assert_int_equal(symlink(secret, link), 0);
    assert_int_equal(symlink(outside, dlink), 0);

    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "PUT link.txt 6\n");
    it_expect_line(fd, "ERR exists link.txt is taken by something that is not a regular file");
    it_send_str_ok(fd, "PUT linkdir 6\n");
    it_expect_line(fd, "ERR exists linkdir is taken by something that is not a regular file");
    it_send_str_ok(fd, "GET link.txt\n");
    it_expect_line(fd, "ERR not-found no file link.txt");
    close(fd);
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "link.txt");
    expect_prefix(fd, "ERR exists ");
    close(fd);
    run_backup(&p, "get", "link.txt", "-o", out, "127.0.0.1", ps, NULL);
    assert_exit(&p, 1);
    assert_contains(p.err, "ERR not-found", "stderr");
    it_proc_fini(&p);
    assert_no_entry(out);

    /* the target outside is untouched and nothing appeared beside it */
    assert_file(secret, "secret", 6);
    assert_dir_names(outside, "secret");
    free(it_backup_list(port, &n));
    assert_int_equal(n, 0);
    free(out);
    free(dlink);
    free(link);
    free(secret);
    free(outside);
    free(store);
}

/* ---- limits ---- */

static void test_backup_limits_refused_before_any_byte_and_while_streaming(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *dir = fix(state)->dir;
    char *lim = it_path_in(dir, "lim"), *quo = it_path_in(dir, "quo");
    uint8_t *data = it_pattern(4000, 5);
    uint16_t lim_port, quo_port;
    unsigned n;
    int fd;

    lim_port = backup_listener(d, "lim", lim, ",\"max_file_size\":1000,\"quota_bytes\":0");
    quo_port = backup_listener(d, "quo", quo, ",\"quota_bytes\":2500");

    /* the header says too much: refused at once, before any content */
    fd = it_tcp_connect_ok(lim_port);
    it_send_str_ok(fd, "PUT big 1001\n");
    it_expect_line(fd, "ERR too-large 1001 bytes is over max_file_size 1000");
    /* the limit itself fits */
    it_send_str_ok(fd, "PUT fits 1000\n");
    it_expect_line(fd, "OK");
    it_send_ok(fd, data, 1000);
    expect_prefix(fd, "STORED fits 1 1000 ");
    close(fd);
    assert_int_equal(svc_metric(d, "lim", "uploads_started"), 1);
    /* the lecture's flow: the limit is enforced as the bytes arrive */
    fd = it_tcp_connect_ok(lim_port);
    it_send_str_ok(fd, "bare-big");
    it_expect_line(fd, "ACK");
    (void)stream_until_answer(fd, data, 4000);
    it_expect_line(fd, "ERR too-large over max_file_size 1000; nothing kept");
    close(fd);
    assert_dir_names(lim, ".sockserv fits");
    free(it_backup_list(lim_port, &n));
    assert_int_equal(n, 1);
    assert_int_equal(svc_metric(d, "lim", "uploads_rejected_too_large"), 2);

    /* the quota: 2000 of 2500 bytes used */
    it_backup_put_ok(quo_port, "a", data, 1000, 1);
    it_backup_put_ok(quo_port, "b", data + 1000, 1000, 1);
    fd = it_tcp_connect_ok(quo_port);
    it_send_str_ok(fd, "PUT c 600\n");
    it_expect_line(
        fd, "ERR quota 600 bytes would exceed quota_bytes 2500 (2000 stored, 0 in progress)");
    close(fd);
    fd = it_tcp_connect_ok(quo_port);
    it_send_str_ok(fd, "bare-quota");
    it_expect_line(fd, "ACK");
    (void)stream_until_answer(fd, data, 800);
    it_expect_line(fd, "ERR quota over quota_bytes 2500; nothing kept");
    close(fd);
    assert_dir_names(quo, ".sockserv a b");
    free(it_backup_list(quo_port, &n));
    assert_int_equal(n, 2);
    assert_int_equal(svc_metric(d, "quo", "uploads_rejected_quota"), 2);
    assert_int_equal(svc_metric(d, "quo", "uploads_started"), 3);
    free(data);
    free(quo);
    free(lim);
}

/* ---- what a header holds, what a slow client keeps ---- */

/* Bytes in use on the file system holding path. */
static uint64_t fs_used(const char *path)
{
    struct statvfs v;

    assert_int_equal(statvfs(path, &v), 0);
    return (uint64_t)(v.f_blocks - v.f_bfree) * v.f_frsize;
}

#define N_HEADERS 16

static void test_backup_headers_alone_hold_no_disk(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *mnt = tmpfs_path(state), *store = it_path_in(mnt, "store");
    uint64_t before, after;
    int fd[N_HEADERS];
    uint16_t port;

    /* Room for one declared 4 GiB, so that the header's free-space check passes. */
    assert_int_equal(mkdir(mnt, 0700), 0);
    assert_int_equal(mount("tmpfs", mnt, "tmpfs", 0, "size=4200m"), 0);
    port = backup_listener(d, "h", store, "");
    before = fs_used(mnt);
    for (int i = 0; i < N_HEADERS; i++) {
        char hdr[64];

        fd[i] = it_tcp_connect_ok(port);
        snprintf(hdr, sizeof(hdr), "PUT r%d.bin 4294967296\n", i);
        it_send_str_ok(fd[i], hdr);
        it_expect_line(fd[i], "OK");
    }
    it_assert_metric_eventually(d, "h", "service.uploads_started", N_HEADERS, IT_WAIT_MS);
    after = fs_used(mnt);
    if (after - before >= 256 * (uint64_t)MIB)
        fail_msg("%d headers of 4 GiB took %" PRIu64 " bytes of disk", N_HEADERS, after - before);
    /* The bytes themselves are held as they come. */
    it_send_ok(fd[0], "abc", 3);
    it_assert_metric_eventually(d, "h", "bytes_in",
                                N_HEADERS * strlen("PUT rN.bin 4294967296\n") + 6 + 3, IT_WAIT_MS);
    for (int i = 0; i < N_HEADERS; i++)
        close(fd[i]);
    it_assert_metric_eventually(d, "h", "service.uploads_rejected_mismatch", N_HEADERS, IT_WAIT_MS);
    assert_dir_names(store, ".sockserv");
    free(store);
    free(mnt);
}

static void test_backup_upload_below_min_rate_cut(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "slow");
    uint8_t *data = it_pattern(256 * 1024, 9);
    int64_t deadline;
    struct pollfd pfd;
    uint16_t port;
    int fd;

    port =
        backup_listener(d, "slow", dir, ",\"min_rate_bytes_per_s\":100000,\"min_rate_window_s\":1");
    /* A client that keeps up is not cut. */
    it_backup_put_ok(port, "fast", data, 256 * 1024, 1);

    /* One byte every 20 ms is far below 100000 bytes/s: cut once a window has passed. */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "PUT trickle 1000000\n");
    it_expect_line(fd, "OK");
    deadline = it_now_ms() + 10000;
    for (;;) {
        pfd = (struct pollfd){.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) == 1)
            break;
        if (it_now_ms() > deadline)
            fail_msg("a trickling upload was not cut within 10 s");
        (void)send(fd, "x", 1, MSG_NOSIGNAL);
    }
    expect_prefix(fd, "ERR too-slow below min_rate_bytes_per_s 100000 ");
    expect_eof(fd);
    close(fd);
    assert_dir_names(dir, ".sockserv fast");
    assert_int_equal(svc_metric(d, "slow", "uploads_cut"), 1);
    free(data);
    free(dir);
}

struct racer {
    int fd;
    const uint8_t *data;
    size_t n;
    char line[LINE_CAP];
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;

    (void)stream_until_answer(r->fd, r->data, r->n);
    it_recv_line(r->fd, r->line, sizeof(r->line));
    return NULL;
}

static void test_backup_quota_holds_across_concurrent_uploads(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "q");
    size_t n = 2 * MIB;
    uint8_t *data = it_pattern(n, 11);
    struct racer r[2];
    pthread_t t[2];
    unsigned stored = 0, refused = 0;
    uint16_t port = backup_listener(d, "q", dir, ",\"quota_bytes\":3145728");

    /* Each header fits the quota alone: both are admitted, neither holds anything yet. */
    for (int i = 0; i < 2; i++) {
        char hdr[64];

        r[i] = (struct racer){.fd = it_tcp_connect_ok(port), .data = data, .n = n};
        snprintf(hdr, sizeof(hdr), "PUT q%d %zu\n", i, n);
        it_send_str_ok(r[i].fd, hdr);
        it_expect_line(r[i].fd, "OK");
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    /* Their bytes together would pass it: exactly one is stored. */
    for (int i = 0; i < 2; i++) {
        if (strncmp(r[i].line, "STORED ", 7) == 0)
            stored++;
        else if (strncmp(r[i].line, "ERR quota ", 10) == 0)
            refused++;
        else
            fail_msg("upload %d answered \"%s\"", i, r[i].line);
        close(r[i].fd);
    }
    assert_int_equal(stored, 1);
    assert_int_equal(refused, 1);
    assert_int_equal(svc_metric(d, "q", "uploads_rejected_quota"), 1);
    free(data);
    free(dir);
}

/* Options changed while the listener runs: the change goes live in the same directory, an
 * upload under way is stored (and listed) or refused with an ERR line. */
static void test_backup_options_changed_while_running(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "live");
    uint16_t port = backup_listener(d, "live", dir, "");
    char line[LINE_CAP];
    json_t *res, *body, *files;
    unsigned n;
    int fd;

    it_backup_put_ok(port, "a", "first", 5, 1);
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "PUT b 10\n");
    it_expect_line(fd, "OK");
    it_send_ok(fd, "01234", 5);
    res = it_http_expect(d, "PATCH", "/api/v1/listeners/live",
                         "{\"options\":{\"quota_bytes\":1000000,\"min_rate_bytes_per_s\":0}}", 200);
    assert_int_equal(it_json_int(res, "options.quota_bytes"), 1000000);
    assert_int_equal(it_json_int(res, "options.min_rate_bytes_per_s"), 0);
    assert_string_equal(it_json_str(res, "status.state"), "running");
    json_decref(res);
    it_send_ok(fd, "56789", 5);
    it_recv_line(fd, line, sizeof(line));
    files = rest_files(d, "live", &body);
    if (strncmp(line, "STORED b ", 9) == 0)
        assert_non_null(find_file(files, "b"));
    else if (strncmp(line, "ERR ", 4) == 0)
        assert_null(find_file(files, "b"));
    else
        fail_msg("answered \"%s\"", line);
    json_decref(body);
    close(fd);
    /* The listener goes on in its directory, under the new options. */
    it_backup_put_ok(port, "a", "second", 6, 2);
    free(it_backup_list(port, &n));
    assert_true(n >= 2);
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "PUT big 1000001\n");
    expect_prefix(fd, "ERR quota 1000001 bytes would exceed quota_bytes 1000000 ");
    close(fd);
    free(dir);
}

/* ---- the lecture's client ---- */

struct listed {
    uint16_t port;
    const char *name;
};

static bool is_listed(void *arg)
{
    struct listed *l = arg;
    char *line = list_line(l->port, l->name, 1);

    free(line);
    return line != NULL;
}

static void test_backup_lecture_client_stored_unverified(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *store = it_path_in(fix(state)->dir, "files"), *stored = it_path_in(store, "lecture.txt");
    size_t len = 300 * 1024 + 5;
    uint8_t *data = it_pattern(len, 6);
    struct listed l;
    json_t *body, *files, *file;
    char hex[65], *line;
    uint16_t port;
    int fd;

    port = backup_listener(d, "b1", store, "");
    /* exactly as the lecture: one write of the bare name, the ack, the content, close */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "lecture.txt");
    it_expect_line(fd, "ACK");
    it_send_ok(fd, data, len);
    close(fd);

    l = (struct listed){.port = port, .name = "lecture.txt"};
    if (!it_wait_until(IT_WAIT_MS, is_listed, &l))
        fail_msg("the lecture's upload was not listed");
    assert_file(stored, data, len);
    it_sha256_hex(data, len, hex);
    line = list_line(port, "lecture.txt", 1);
    assert_contains(line, " unverified current", "LIST");
    assert_contains(line, hex, "LIST");
    free(line);
    files = rest_files(d, "b1", &body);
    file = find_file(files, "lecture.txt");
    assert_non_null(file);
    assert_false(it_json_bool(file, "verified"));
    assert_string_equal(it_json_str(file, "integrity"), "none");
    assert_int_equal(it_json_int(file, "size"), len);
    json_decref(body);
    assert_int_equal(svc_metric(d, "b1", "uploads_stored_unverified"), 1);
    free(data);
    free(stored);
    free(store);
}

/* ---- restores ---- */

static void test_backup_restore_by_protocol_without_pacing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *dir = fix(state)->dir;
    char *store = it_path_in(dir, "files"), *src = it_path_in(dir, "big.bin"), line[LINE_CAP];
    char hex[65], want[200], *all = NULL;
    size_t len = 6 * MIB + 7, all_len = 0, hl;
    uint8_t *data = it_pattern(len, 7), *got = malloc(len);
    uint16_t port;
    int fd, r;

    assert_non_null(got);
    port = backup_listener(d, "b1", store, "");
    write_file(src, data, len);
    cli_put_ok(src, "big.bin", port, 1);
    it_sha256_hex(data, len, hex);
    snprintf(want, sizeof(want), "OK %zu %s 1", len, hex);

    /* a GET, the whole content with no acknowledgement, then the next command */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "GET big.bin\n");
    it_expect_line(fd, want);
    r = it_recv_exact(fd, got, len, IT_IO_TIMEOUT_MS);
    if (r < 0)
        fail_msg("receiving the content: %s", strerror(-r));
    assert_memory_equal(got, data, len);
    it_send_str_ok(fd, "LIST\n");
    it_expect_line(fd, "OK 1");
    it_recv_line(fd, line, sizeof(line));
    it_expect_line(fd, "END");
    close(fd);

    /* `printf 'GET big.bin\n' | nc -N`: one write, the sending side shut, read to the end */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "GET big.bin\n");
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &all, &all_len);
    if (r < 0)
        fail_msg("reading to the end: %s", strerror(-r));
    close(fd);
    hl = strlen(want) + 1;
    assert_int_equal(all_len, hl + len);
    assert_memory_equal(all, want, hl - 1);
    assert_memory_equal(all + hl, data, len);
    free(all);

    /* pipelined: two restores and QUIT in one write, answered in order */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "GET big.bin\nGET big.bin 1\nQUIT\n");
    for (int i = 0; i < 2; i++) {
        it_expect_line(fd, want);
        memset(got, 0, len);
        assert_int_equal(it_recv_exact(fd, got, len, IT_IO_TIMEOUT_MS), 0);
        assert_memory_equal(got, data, len);
    }
    it_expect_line(fd, "BYE");
    expect_eof(fd);
    close(fd);
    assert_int_equal(svc_metric(d, "b1", "restores"), 4);
    assert_int_equal(svc_metric(d, "b1", "bytes_restored"), 4 * len);
    free(got);
    free(data);
    free(src);
    free(store);
}

static void test_backup_restore_by_cli_and_rest_identical(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *dir = fix(state)->dir;
    char *store = it_path_in(dir, "files"), *src = it_path_in(dir, "src.bin");
    char *out1 = it_path_in(dir, "v1.bin"), *out2 = it_path_in(dir, "v2.bin"), ps[8];
    size_t len1 = 5 * MIB + 3, len2 = 2 * MIB + 11;
    uint8_t *v1 = it_pattern(len1, 8), *v2 = it_pattern(len2, 9);
    struct it_http h;
    struct it_proc p;
    uint16_t port;

    port = backup_listener(d, "b1", store, "");
    snprintf(ps, sizeof(ps), "%u", port);
    write_file(src, v1, len1);
    cli_put_ok(src, "data.bin", port, 1);
    write_file(src, v2, len2);
    cli_put_ok(src, "data.bin", port, 2);

    run_backup(&p, "get", "data.bin", "-o", out2, "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    assert_contains(p.out, "restored data.bin version 2 to ", "stdout");
    it_proc_fini(&p);
    assert_file(out2, v2, len2);
    run_backup(&p, "get", "data.bin", "--version", "1", "-o", out1, "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    assert_contains(p.out, "restored data.bin version 1 to ", "stdout");
    it_proc_fini(&p);
    assert_file(out1, v1, len1);
    /* to standard output */
    run_backup(&p, "get", "data.bin", "-o", "-", "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    assert_int_equal(p.out_len, len2);
    assert_memory_equal(p.out, v2, len2);
    it_proc_fini(&p);
    /* a restore whose writes fail (the disk full) says so and fails, whatever it received */
    {
        const char *argv[] = {
            "/bin/sh", "-c", "exec \"$0\" backup get data.bin -o - 127.0.0.1 \"$1\" >/dev/full",
            it_bin(),  ps,   NULL};

        it_run(argv, NULL, 0, CLI_TIMEOUT_MS, &p);
        assert_exit(&p, 1);
        assert_contains(p.err, "writing standard output: No space left on device", "stderr");
        it_proc_fini(&p);
    }
    /* ls: the current copy and the older one */
    run_backup(&p, "ls", "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    assert_contains(p.out, "current", "ls");
    assert_contains(p.out, "old", "ls");
    it_proc_fini(&p);

    /* the REST download is the same bytes */
    assert_int_equal(
        it_http_raw(d, "GET", "/api/v1/listeners/b1/files/data.bin", NULL, 0, NULL, &h), 0);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.body_len, len2);
    assert_memory_equal(h.body, v2, len2);
    it_http_fini(&h);
    free(v2);
    free(v1);
    free(out2);
    free(out1);
    free(src);
    free(store);
}

/* Changes the byte at off of the file at path to b, keeping its modification time: a silent
 * change of the disk's bytes, which the server cannot tell from its own copy. */
static void poke_byte(const char *path, size_t off, uint8_t b)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}};
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    times[1] = st.st_mtim;
    if (pwrite(fd, &b, 1, (off_t)off) != 1 || futimens(fd, times) < 0)
        fail_msg("pwrite %s: %s", path, strerror(errno));
    close(fd);
}

/*
 * A restore whose content is not what the server recorded (a byte changed on its disk, in a
 * whole block of the file or in its short last one) fails, and the file it was to replace stays
 * as it was with nothing beside it; the intact copy then restores byte for byte.
 */
static void test_backup_get_corrupted_byte_fails_and_writes_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *dir = fix(state)->dir;
    char *store = it_path_in(dir, "files"), *src = it_path_in(dir, "src.bin");
    char *outdir = it_path_in(dir, "restored"), *stored = it_path_in(store, "data.bin");
    char *out = it_path_in(outdir, "data.bin"), ps[8];
    size_t len = 3 * MIB + 7;
    const size_t offs[] = {MIB + 12345, len - 1};
    uint8_t *data = it_pattern(len, 21);
    struct it_proc p;
    uint16_t port;

    port = backup_listener(d, "b1", store, "");
    snprintf(ps, sizeof(ps), "%u", port);
    write_file(src, data, len);
    cli_put_ok(src, "data.bin", port, 1);
    assert_int_equal(mkdir(outdir, 0700), 0);
    write_file(out, "older\n", 6);

    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        poke_byte(stored, offs[i], data[offs[i]] ^ 0x40);
        run_backup(&p, "get", "data.bin", "-o", out, "127.0.0.1", ps, NULL);
        assert_exit(&p, 1);
        assert_contains(p.err, "checksum mismatch: the server recorded ", "stderr");
        assert_contains(p.err, "; nothing written", "stderr");
        it_proc_fini(&p);
        assert_file(out, "older\n", 6);
        assert_dir_names(outdir, "data.bin");
        poke_byte(stored, offs[i], data[offs[i]]);
    }
    run_backup(&p, "get", "data.bin", "-o", out, "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    assert_contains(p.out, "restored data.bin version 1 to ", "stdout");
    it_proc_fini(&p);
    assert_file(out, data, len);
    assert_dir_names(outdir, "data.bin");
    free(data);
    free(out);
    free(stored);
    free(outdir);
    free(src);
    free(store);
}

/* Restores of every size around the file system's blocks and the command's buffers arrive byte
 * for byte: the whole blocks and the short end of a file take different ways to the disk. */
static void test_backup_get_sizes_around_blocks_identical(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    const char *dir = fix(state)->dir;
    char *store = it_path_in(dir, "files"), *src = it_path_in(dir, "src.bin");
    char *out = it_path_in(dir, "out.bin"), ps[8], name[32];
    const size_t sizes[] = {0, 1, 4095, 4096, 4097, MIB - 1, MIB, MIB + 4096, 4 * MIB + 513};
    struct it_proc p;
    uint16_t port;

    port = backup_listener(d, "b1", store, "");
    snprintf(ps, sizeof(ps), "%u", port);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *data = it_pattern(sizes[i], 30 + (unsigned)i);

        snprintf(name, sizeof(name), "s%zu.bin", sizes[i]);
        write_file(src, data, sizes[i]);
        cli_put_ok(src, name, port, 1);
        run_backup(&p, "get", name, "-o", out, "127.0.0.1", ps, NULL);
        assert_exit(&p, 0);
        it_proc_fini(&p);
        assert_file(out, data, sizes[i]);
        free(data);
    }
    free(out);
    free(src);
    free(store);
}

/* A restore of a 2 MiB + 5 "big.bin" into a file system of its own (mounted by the test). */
struct get_into {
    char *mnt, *store, *src, *out;
    uint8_t *data;
    size_t len;
    char ps[8];
};

/* Mounts fstype (options opts) on a new directory, stores big.bin (pattern seed) on a new
 * listener, and says where its restore goes; skips the test when the mount is refused. */
static void get_into_setup(void **state, const char *fstype, const char *opts, uint8_t seed,
                           struct get_into *g)
{
    g->mnt = tmpfs_path(state);
    g->store = it_path_in(fix(state)->dir, "files");
    g->src = it_path_in(fix(state)->dir, "src.bin");
    g->out = it_path_in(g->mnt, "big.bin");
    g->len = 2 * MIB + 5;
    g->data = it_pattern(g->len, seed);
    assert_int_equal(mkdir(g->mnt, 0700), 0);
    if (mount(fstype, g->mnt, fstype, 0, opts) < 0) {
        print_message("cannot mount a %s (%s; not root?): the case is skipped\n", fstype,
                      strerror(errno));
        free(g->data);
        free(g->out);
        free(g->src);
        free(g->store);
        free(g->mnt);
        skip();
    }
    snprintf(g->ps, sizeof(g->ps), "%u", backup_listener(it_daemon_of(state), "b1", g->store, ""));
    write_file(g->src, g->data, g->len);
    cli_put_ok(g->src, "big.bin", (uint16_t)atoi(g->ps), 1);
}

static void get_into_fini(struct get_into *g)
{
    free(g->data);
    free(g->out);
    free(g->src);
    free(g->store);
    free(g->mnt);
}

/* A restore into a file system too small for it fails saying so, and leaves the file it was to
 * replace as it was, with nothing beside it. */
static void test_backup_get_disk_full_fails_and_keeps_older_file(void **state)
{
    struct get_into g;
    struct it_proc p;

    get_into_setup(state, "tmpfs", "size=1m", 5, &g);
    write_file(g.out, "older\n", 6);
    run_backup(&p, "get", "big.bin", "-o", g.out, "127.0.0.1", g.ps, NULL);
    assert_exit(&p, 1);
    assert_contains(p.err, "big.bin: No space left on device", "stderr");
    it_proc_fini(&p);
    assert_file(g.out, "older\n", 6);
    assert_dir_names(g.mnt, "big.bin");
    get_into_fini(&g);
}

/* A restore into a file system that cannot write past its page cache (ramfs) is the same bytes:
 * the way to the disk is only a hint. */
static void test_backup_get_to_ramfs_identical(void **state)
{
    struct get_into g;
    struct it_proc p;

    get_into_setup(state, "ramfs", NULL, 6, &g);
    run_backup(&p, "get", "big.bin", "-o", g.out, "127.0.0.1", g.ps, NULL);
    assert_exit(&p, 0);
    it_proc_fini(&p);
    assert_file(g.out, g.data, g.len);
    assert_dir_names(g.mnt, "big.bin");
    get_into_fini(&g);
}

/* ---- the command's exit codes ---- */

static void test_backup_cli_exit_codes(void **state)
{
    static const char *const usage[][6] = {
        {NULL},
        {"put", NULL},
        {"frob", "127.0.0.1", NULL},
        {"get", "x", "--version", "0", "127.0.0.1", NULL},
        {"put", "file", "127.0.0.1", "70000", NULL},
        {"put", "file", "--name", "a/b", "127.0.0.1", NULL},
    };
    struct it_daemon *d = it_daemon_of(state);
    char *store = it_path_in(fix(state)->dir, "files"), *out = it_path_in(fix(state)->dir, "out");
    char *file = it_path_in(fix(state)->dir, "file"), ps[8], closed[8];
    uint16_t port, free_port = 0;
    struct it_proc p;
    int lfd;

    port = backup_listener(d, "b1", store, ",\"on_exists\":\"reject\"");
    snprintf(ps, sizeof(ps), "%u", port);
    write_file(file, "some bytes\n", 11);

    /* 0: done */
    run_backup(&p, "put", file, "--name", "host", "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    it_proc_fini(&p);
    run_backup(&p, "ls", "127.0.0.1", ps, NULL);
    assert_exit(&p, 0);
    it_proc_fini(&p);

    /* 1: the server refused, and says why */
    run_backup(&p, "get", "missing", "-o", out, "127.0.0.1", ps, NULL);
    assert_exit(&p, 1);
    assert_contains(p.err, "ERR not-found no file missing", "stderr");
    it_proc_fini(&p);
    assert_no_entry(out);
    run_backup(&p, "put", file, "--name", "host", "127.0.0.1", ps, NULL);
    assert_exit(&p, 1);
    assert_contains(p.err, "ERR exists", "stderr");
    it_proc_fini(&p);

    /* 1: nobody listens */
    lfd = it_bind(SOCK_STREAM, "127.0.0.1", 0, &free_port);
    assert_true(lfd >= 0);
    close(lfd);
    snprintf(closed, sizeof(closed), "%u", free_port);
    run_backup(&p, "ls", "127.0.0.1", closed, NULL);
    assert_exit(&p, 1);
    assert_contains(p.err, "cannot connect", "stderr");
    it_proc_fini(&p);

    /* 2: usage errors */
    for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
        const char *argv[10] = {it_bin(), "backup"};
        size_t n = 2;

        for (size_t k = 0; usage[i][k]; k++)
            argv[n++] = strcmp(usage[i][k], "file") == 0 ? file : usage[i][k];
        argv[n] = NULL;
        it_run(argv, NULL, 0, CLI_TIMEOUT_MS, &p);
        if (it_proc_exit_code(&p) != 2)
            fail_msg("usage case %zu: exit %s, want 2; stderr: %s", i, it_status_str(p.status),
                     p.err);
        /* The hint names the verb when there is one: 'sockserv backup put --help'. */
        assert_contains(p.err, "Try 'sockserv backup ", "stderr");
        assert_contains(p.err, "--help'.", "stderr");
        it_proc_fini(&p);
    }
    free(file);
    free(out);
    free(store);
}

/* ---- the embedded default listener ---- */

static void test_backup_default_listener_on_32400(void **state)
{
    struct it_fixture *f = fix(state);
    char *src = it_path_in(f->dir, "default.txt"), *stored;
    json_t *res;
    struct it_proc p;

    it_daemon_start_ok(&f->d, &(struct it_daemon_opts){.dir = f->dir, .defaults = true});
    res = it_listener_get(&f->d, "backup-tcp");
    assert_string_equal(it_json_str(res, "service"), "backup");
    assert_string_equal(it_json_str(res, "transport"), "tcp");
    assert_int_equal(it_json_int(res, "port"), 32400);
    if (strcmp(it_json_str(res, "status.state"), "running") != 0) {
        json_t *err = it_json_path(res, "status.error");

        print_message("backup-tcp is %s (%s): port 32400 is taken here, the traffic part is "
                      "skipped\n",
                      it_json_str(res, "status.state"),
                      json_is_string(err) ? json_string_value(err) : "no reason given");
        json_decref(res);
        free(src);
        skip();
    }
    json_decref(res);

    /* the client's default port is the listener's; the file lands under the state dir */
    write_file(src, "to the default listener\n", 24);
    run_backup(&p, "put", src, "127.0.0.1", NULL);
    assert_exit(&p, 0);
    assert_contains(p.out, "stored default.txt version 1", "stdout");
    it_proc_fini(&p);
    stored = it_path_in(f->d.state_dir, "backup/backup-tcp/default.txt");
    assert_file(stored, "to the default listener\n", 24);
    free(stored);
    free(src);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_backup_cli_put_stores_identical_file_listed_everywhere),
        T(test_backup_client_killed_mid_upload_leaves_nothing_and_older_copy),
        cmocka_unit_test_setup_teardown(test_backup_disk_full_refused_keeps_nothing_and_older_copy,
                                        it_fixture_setup, teardown_tmpfs),
        T(test_backup_size_and_checksum_mismatch_refused_keep_nothing),
        T(test_backup_second_upload_keeps_first_as_version),
        T(test_backup_replace_swaps_and_reject_refuses),
        T(test_backup_replaced_copy_freed_after_the_answer),
        T(test_backup_concurrent_uploads_same_name_end_consistent_and_listed),
        T(test_backup_bad_names_refused_with_bad_name),
        T(test_backup_planted_symlink_never_followed),
        T(test_backup_limits_refused_before_any_byte_and_while_streaming),
        cmocka_unit_test_setup_teardown(test_backup_headers_alone_hold_no_disk, it_fixture_setup,
                                        teardown_tmpfs),
        T(test_backup_upload_below_min_rate_cut),
        T(test_backup_quota_holds_across_concurrent_uploads),
        T(test_backup_options_changed_while_running),
        T(test_backup_lecture_client_stored_unverified),
        T(test_backup_restore_by_protocol_without_pacing),
        T(test_backup_restore_by_cli_and_rest_identical),
        T(test_backup_get_corrupted_byte_fails_and_writes_nothing),
        T(test_backup_get_sizes_around_blocks_identical),
        cmocka_unit_test_setup_teardown(test_backup_get_disk_full_fails_and_keeps_older_file,
                                        it_fixture_setup, teardown_tmpfs),
        cmocka_unit_test_setup_teardown(test_backup_get_to_ramfs_identical, it_fixture_setup,
                                        teardown_tmpfs),
        T(test_backup_cli_exit_codes),
        cmocka_unit_test_setup_teardown(test_backup_default_listener_on_32400, it_fixture_setup_dir,
                                        it_fixture_teardown),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
