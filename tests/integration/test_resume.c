/*
 * Resumable uploads of the backup service over real sockets: an upload cut every way (the
 * client killed, a reset, the idle timeout, the daemon killed and started again on its state
 * directory) keeps what it received hidden beneath .sockserv/.partial, counted in the quota,
 * neither listed nor restorable; `sockserv backup put --resume` (or RESUME and PUT ... <offset>
 * by hand) sends the rest, and the result is the file byte for byte, one new version, the
 * partial gone. A different size or checksum starts over, resume_ttl_ms expires what is kept,
 * and the checksum after the content (PUT ... *) is verified before anything is kept.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#define LINE_CAP 2048

static struct it_fixture *fix(void **state)
{
    return *state;
}

/* A backup listener on an ephemeral port: top (listener fields) and opts (options) are
 * ",\"key\":value" lists, or "". */
static uint16_t listener(const struct it_daemon *d, const char *dir, const char *top,
                         const char *opts)
{
    char body[1024];

    snprintf(body, sizeof(body),
             "{\"id\":\"b1\",\"service\":\"backup\",\"port\":0%s,"
             "\"options\":{\"directory\":\"%s\"%s}}",
             top, dir, opts);
    return it_listener_create_port(d, body);
}

/* A service counter of listener b1 (metrics.service.NAME). */
static uint64_t svc_metric(const struct it_daemon *d, const char *name)
{
    char path[128];

    snprintf(path, sizeof(path), "service.%s", name);
    return it_metric(d, "b1", path);
}

struct counter_is {
    const struct it_daemon *d;
    const char *name;
    uint64_t want;
};

static bool counter_reached(void *arg)
{
    struct counter_is *c = arg;

    if (!c->name) /* a client that closes mid-content is told size-mismatch; a reset is a cut */
        return svc_metric(c->d, "uploads_cut") + svc_metric(c->d, "uploads_rejected_mismatch") ==
               c->want;
    return svc_metric(c->d, c->name) == c->want;
}

static void assert_counter_eventually(const struct it_daemon *d, const char *name, uint64_t want)
{
    struct counter_is c = {.d = d, .name = name, .want = want};

    if (!it_wait_until(IT_WAIT_MS, counter_reached, &c))
        fail_msg("%s did not reach %" PRIu64, name ? name : "uploads_cut + mismatch", want);
}

/* The bytes of the partial uploads beneath dir/.sockserv/.partial, and how many there are. */
static uint64_t partial_bytes(const char *dir, unsigned *ret_n)
{
    char path[1024];
    struct dirent *de;
    uint64_t sum = 0;
    unsigned n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "%s/.sockserv/.partial", dir);
    d = opendir(path);
    if (d) {
        while ((de = readdir(d))) {
            char p[2048];
            struct stat st;

            if (de->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
            if (stat(p, &st) == 0) {
                sum += (uint64_t)st.st_size;
                n++;
            }
        }
        closedir(d);
    }
    if (ret_n)
        *ret_n = n;
    return sum;
}

struct held {
    const char *dir;
    uint64_t want;
};

static bool partial_reached(void *arg)
{
    struct held *h = arg;

    return partial_bytes(h->dir, NULL) >= h->want;
}

/* Waits until the partial uploads of dir hold at least want bytes. */
static void wait_partial(const char *dir, uint64_t want)
{
    struct held h = {.dir = dir, .want = want};

    if (!it_wait_until(IT_WAIT_MS, partial_reached, &h))
        fail_msg("the partial upload did not reach %" PRIu64 " bytes (%" PRIu64 ")", want,
                 partial_bytes(dir, NULL));
}

/* RESUME name size [sha] on a fresh connection: the offset the server answers. */
static uint64_t resume_offset(uint16_t port, const char *name, size_t size, const char *sha)
{
    char line[LINE_CAP];
    unsigned long long off;
    int fd = it_tcp_connect_ok(port);

    snprintf(line, sizeof(line), "RESUME %s %zu%s%s\n", name, size, sha ? " " : "", sha ? sha : "");
    it_send_str_ok(fd, line);
    it_recv_line(fd, line, sizeof(line));
    close(fd);
    if (sscanf(line, "OK %llu", &off) != 1)
        fail_msg("RESUME answered \"%s\"", line);
    return off;
}

struct cut_ctx {
    uint16_t port;
    const char *dir;
};

static bool resume_busy_over(void *arg)
{
    struct cut_ctx *c = arg;
    char line[LINE_CAP];
    int fd = it_tcp_connect("127.0.0.1", c->port, IT_IO_TIMEOUT_MS);
    bool over;

    if (fd < 0)
        return false;
    over = it_send_all(fd, "RESUME x 1\n", 11, IT_IO_TIMEOUT_MS) == 0 &&
           it_read_line(fd, line, sizeof(line), IT_IO_TIMEOUT_MS) >= 0 &&
           strncmp(line, "OK ", 3) == 0;
    close(fd);
    return over;
}

/* Starts PUT name size * on a new connection and sends the first part bytes of data. */
static int put_part(uint16_t port, const char *name, size_t size, const uint8_t *data, size_t part)
{
    char line[LINE_CAP];
    int fd = it_tcp_connect_ok(port);

    snprintf(line, sizeof(line), "PUT %s %zu *\n", name, size);
    it_send_str_ok(fd, line);
    it_expect_line(fd, "OK");
    it_send_ok(fd, data, part);
    return fd;
}

/* Sends the rest by hand: RESUME, PUT ... * <offset>, the rest, the SHA256 line; STORED. */
static void resume_by_protocol(uint16_t port, const char *name, const uint8_t *data, size_t size,
                               unsigned version)
{
    char line[LINE_CAP], hex[65], want[LINE_CAP];
    uint64_t off = resume_offset(port, name, size, NULL);
    int fd;

    assert_true(off > 0 && off <= size);
    fd = it_tcp_connect_ok(port);
    snprintf(line, sizeof(line), "PUT %s %zu * %" PRIu64 "\n", name, size, off);
    it_send_str_ok(fd, line);
    it_expect_line(fd, "OK");
    it_send_ok(fd, data + off, size - off);
    it_sha256_hex(data, size, hex);
    snprintf(line, sizeof(line), "SHA256 %s\n", hex);
    it_send_str_ok(fd, line);
    snprintf(want, sizeof(want), "STORED %s %u %zu %s", name, version, size, hex);
    it_expect_line(fd, want);
    close(fd);
}

/* `sockserv backup put FILE --name NAME --resume 127.0.0.1 PORT`: exit 0, and what it said
 * about the bytes the server held. */
static void cli_resume_ok(const char *dir, const char *name, const uint8_t *data, size_t size,
                          uint16_t port, bool expect_held)
{
    char *file = it_path_in(dir, "upload.bin"), ps[8], want[320];
    const char *argv[] = {"put", file, "--name", name, "--resume", "127.0.0.1", ps, NULL};
    struct it_proc p;

    assert_int_equal(it_file_write(file, data, size), 0);
    snprintf(ps, sizeof(ps), "%u", port);
    it_run_verb("backup", argv, NULL, 0, CLI_TIMEOUT_MS, &p);
    if (it_proc_exit_code(&p) != 0)
        fail_msg("put --resume: exit %d\nstdout: %s\nstderr: %s", it_proc_exit_code(&p), p.out,
                 p.err);
    snprintf(want, sizeof(want), "stored %s version 1 (%zu bytes", name, size);
    assert_non_null(strstr(p.out, want));
    if (expect_held && !strstr(p.err, "bytes already; sending the rest"))
        fail_msg("put --resume sent everything again: %s", p.err);
    it_proc_fini(&p);
    free(file);
}

/* What every cut must end in once resumed: the file byte for byte, one version, no partial. */
static void assert_resumed(const struct it_daemon *d, const char *dir, uint16_t port,
                           const char *name, const uint8_t *data, size_t size)
{
    size_t n = 0;
    unsigned listed = 0, parts = 0;
    uint8_t *got = it_backup_get(port, name, 0, &n);

    assert_non_null(got);
    assert_int_equal(n, size);
    assert_memory_equal(got, data, size);
    free(got);
    free(it_backup_list(port, &listed));
    assert_int_equal(listed, 1);
    assert_int_equal(partial_bytes(dir, &parts), 0);
    assert_int_equal(parts, 0);
    assert_int_equal(svc_metric(d, "uploads_stored"), 1);
}

/* What a cut upload leaves: the bytes held, hidden (not listed, not restorable). */
static void assert_hidden(uint16_t port, const char *name)
{
    char line[LINE_CAP];
    unsigned listed = 99;
    int fd;

    free(it_backup_list(port, &listed));
    assert_int_equal(listed, 0);
    fd = it_tcp_connect_ok(port);
    snprintf(line, sizeof(line), "GET %s\n", name);
    it_send_str_ok(fd, line);
    it_recv_line(fd, line, sizeof(line));
    assert_int_equal(strncmp(line, "ERR not-found ", 14), 0);
    close(fd);
}

static void test_resume_client_killed_mid_upload_cli_sends_rest(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "files");
    size_t size = 8 * MIB, part = 3 * MIB + 17;
    uint8_t *data = it_pattern(size, 7);
    struct cut_ctx cut;
    uint16_t port = listener(d, dir, "", "");
    int tell[2], status;
    pid_t pid;
    char x;

    assert_int_equal(pipe(tell), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the client: header, part of the content, then it waits to be killed */
        close(tell[0]);
        (void)put_part(port, "db.dump", size, data, part);
        (void)!write(tell[1], "x", 1);
        for (;;)
            pause();
    }
    close(tell[1]);
    assert_int_equal(read(tell[0], &x, 1), 1);
    close(tell[0]);
    /* Killed with the bytes sent: the server holds them all once it sees the cut (a large
     * upload's last bytes wait in memory until then, to go to the disk in whole blocks). */
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    wait_partial(dir, part);
    cut = (struct cut_ctx){.port = port, .dir = dir};
    assert_true(it_wait_until(IT_WAIT_MS, resume_busy_over, &cut));
    assert_counter_eventually(d, NULL, 1);
    assert_hidden(port, "db.dump");
    assert_int_equal(resume_offset(port, "db.dump", size, NULL), part);

    cli_resume_ok(fix(state)->dir, "db.dump", data, size, port, true);
    assert_resumed(d, dir, port, "db.dump", data, size);
    free(data);
    free(dir);
}

static void test_resume_after_connection_reset(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "files");
    size_t size = 4 * MIB, part = MIB + 5;
    uint8_t *data = it_pattern(size, 8);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    uint16_t port = listener(d, dir, "", "");
    struct cut_ctx cut = {.port = port, .dir = dir};
    int fd = put_part(port, "a.bin", size, data, part);

    wait_partial(dir, part);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd); /* a reset */
    assert_true(it_wait_until(IT_WAIT_MS, resume_busy_over, &cut));
    assert_counter_eventually(d, "uploads_cut", 1);
    assert_hidden(port, "a.bin");

    resume_by_protocol(port, "a.bin", data, size, 1);
    assert_resumed(d, dir, port, "a.bin", data, size);
    free(data);
    free(dir);
}

/* Under every model (the process model's children share the quota through MAP_SHARED memory
 * and hold the partial's lock in their own process), a reset upload is resumed. */
static void test_resume_under_every_model(void **state)
{
    static const char *const models[] = {"event", "process", "pool", "sequential", "uring"};
    struct it_daemon *d = it_daemon_of(state);
    size_t size = 9 * MIB, part = MIB + 99; /* 8 MiB or more: written past the page cache */
    uint8_t *data = it_pattern(size, 14);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        char *dir, sub[64], top[64];
        struct cut_ctx cut;
        struct it_http r;
        uint16_t port;
        int fd;

        snprintf(sub, sizeof(sub), "files-%s", models[i]);
        dir = it_path_in(fix(state)->dir, sub);
        snprintf(top, sizeof(top), ",\"model\":\"%s\"", models[i]);
        port = listener(d, dir, top, "");
        fd = put_part(port, "m.bin", size, data, part);
        /* read by the daemon (a reset drops what is not): on the disk once it sees the cut */
        it_assert_metric_reaches(d, "b1", "bytes_in", strlen("PUT m.bin 9437184 *\n") + part,
                                 IT_WAIT_MS);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close(fd);
        cut = (struct cut_ctx){.port = port, .dir = dir};
        assert_true(it_wait_until(IT_WAIT_MS, resume_busy_over, &cut));
        assert_counter_eventually(d, NULL, 1);
        resume_by_protocol(port, "m.bin", data, size, 1);
        assert_resumed(d, dir, port, "m.bin", data, size);
        it_http(d, "DELETE", "/api/v1/listeners/b1", NULL, &r);
        assert_true(r.status >= 200 && r.status < 300);
        it_http_fini(&r);
        free(dir);
    }
    free(data);
}

static void test_resume_after_idle_timeout(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "files");
    size_t size = 2 * MIB, part = 700000;
    uint8_t *data = it_pattern(size, 9);
    uint16_t port = listener(d, dir, ",\"idle_timeout_ms\":300", "");
    int fd = put_part(port, "slow.bin", size, data, part);
    char *rest = NULL;
    size_t n = 0;

    /* nothing more is sent: the server closes the connection after its idle timeout */
    (void)it_read_to_eof(fd, IT_WAIT_MS, &rest, &n);
    free(rest);
    close(fd);
    assert_counter_eventually(d, "uploads_cut", 1);
    assert_int_equal(partial_bytes(dir, NULL), part);
    assert_hidden(port, "slow.bin");

    cli_resume_ok(fix(state)->dir, "slow.bin", data, size, port, true);
    assert_resumed(d, dir, port, "slow.bin", data, size);
    free(data);
    free(dir);
}

static void test_resume_after_daemon_killed_and_restarted(void **state)
{
    struct it_fixture *f = fix(state);
    struct it_daemon *d = &f->d;
    struct it_daemon_opts opts = {.dir = f->dir};
    char *dir = it_path_in(f->dir, "files"), line[LINE_CAP];
    size_t size = 6 * MIB, part = 4 * MIB;
    uint8_t *data = it_pattern(size, 10), *other = it_pattern(3 * MIB, 11);
    /* room for this file and half a MiB more: the 4 MiB held count after the restart too */
    uint16_t port = listener(d, dir, "", ",\"quota_bytes\":6815744");
    int fd = put_part(port, "vm.img", size, data, part);
    json_t *l;

    wait_partial(dir, part);
    it_daemon_kill(d);
    close(fd);
    it_daemon_start_ok(d, &opts);
    l = it_listener_get(d, "b1");
    port = it_bound_port(l);
    json_decref(l);
    assert_int_equal(partial_bytes(dir, NULL), part);
    assert_hidden(port, "vm.img");
    /* 3 MiB more would fit without what is held */
    fd = it_tcp_connect_ok(port);
    it_send_str_ok(fd, "PUT other 3145728 *\n");
    it_recv_line(fd, line, sizeof(line));
    if (strncmp(line, "ERR quota ", 10) != 0)
        fail_msg("a 3 MiB upload beside the 4 MiB held under a 6.5 MiB quota: \"%s\"", line);
    close(fd);

    cli_resume_ok(f->dir, "vm.img", data, size, port, true);
    assert_resumed(d, dir, port, "vm.img", data, size);
    free(other);
    free(data);
    free(dir);
}

static void test_resume_other_size_or_checksum_starts_over(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "files");
    size_t size = 2 * MIB, part = MIB;
    uint8_t *data = it_pattern(size, 12);
    char hex[65], other[65], line[LINE_CAP];
    uint16_t port = listener(d, dir, "", "");
    unsigned parts = 0;
    int fd;

    it_sha256_hex(data, size, hex);
    it_sha256_hex("x", 1, other);
    fd = it_tcp_connect_ok(port);
    snprintf(line, sizeof(line), "PUT f %zu %s\n", size, hex);
    it_send_str_ok(fd, line);
    it_expect_line(fd, "OK");
    it_send_ok(fd, data, part);
    wait_partial(dir, part);
    close(fd);
    assert_counter_eventually(d, NULL, 1);
    assert_int_equal(resume_offset(port, "f", size, hex), part);
    assert_int_equal(resume_offset(port, "f", size, NULL), part);
    assert_int_equal(resume_offset(port, "f", size + 1, NULL), 0);
    assert_int_equal(resume_offset(port, "f", size, other), 0);
    /* an offset the server does not hold is refused, and the connection goes on */
    fd = it_tcp_connect_ok(port);
    snprintf(line, sizeof(line), "PUT f %zu %s %zu\n", size, other, part);
    it_send_str_ok(fd, line);
    it_recv_line(fd, line, sizeof(line));
    assert_int_equal(strncmp(line, "ERR not-found ", 14), 0);
    /* a new upload of another size drops what was held and starts from 0 */
    it_send_str_ok(fd, "PUT f 3 *\n");
    it_expect_line(fd, "OK");
    assert_int_equal(partial_bytes(dir, &parts), 0);
    assert_int_equal(parts, 1);
    it_send_str_ok(fd, "abc");
    it_sha256_hex("abc", 3, hex);
    snprintf(line, sizeof(line), "SHA256 %s\n", hex);
    it_send_str_ok(fd, line);
    snprintf(line, sizeof(line), "STORED f 1 3 %s", hex);
    it_expect_line(fd, line);
    close(fd);
    assert_resumed(d, dir, port, "f", (const uint8_t *)"abc", 3);
    free(data);
    free(dir);
}

struct expiry {
    uint16_t port;
    size_t size;
};

static bool expired(void *arg)
{
    struct expiry *e = arg;

    return resume_offset(e->port, "t", e->size, NULL) == 0;
}

static void test_resume_ttl_expiry_removes_partial(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "files");
    size_t size = MIB, part = 300000;
    uint8_t *data = it_pattern(size, 13);
    uint16_t port = listener(d, dir, "", ",\"resume_ttl_ms\":400,\"quota_bytes\":1048576");
    struct expiry e = {.port = port, .size = size};
    unsigned parts = 9;
    int fd = put_part(port, "t", size, data, part);

    wait_partial(dir, part);
    close(fd);
    assert_counter_eventually(d, NULL, 1);
    /* the listener looks again at each RESUME: once resume_ttl_ms passed, nothing is held */
    assert_true(it_wait_until(IT_WAIT_MS, expired, &e));
    assert_int_equal(partial_bytes(dir, &parts), 0);
    assert_int_equal(parts, 0);
    /* and the quota has the room back: the whole file fits again */
    it_backup_put_ok(port, "t", data, size, 1);
    free(data);
    free(dir);
}

static void test_resume_trailer_checksum_mismatch_keeps_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "files");
    char hex[65], line[LINE_CAP];
    uint16_t port = listener(d, dir, "", "");
    unsigned parts = 9, listed = 9;
    int fd = it_tcp_connect_ok(port);

    it_send_str_ok(fd, "PUT n 5 *\n");
    it_expect_line(fd, "OK");
    it_send_str_ok(fd, "hello");
    it_sha256_hex("hellO", 5, hex);
    snprintf(line, sizeof(line), "SHA256 %s\n", hex);
    it_send_str_ok(fd, line);
    it_recv_line(fd, line, sizeof(line));
    if (strncmp(line, "ERR checksum-mismatch ", 22) != 0)
        fail_msg("a wrong SHA256 line answered \"%s\"", line);
    /* the connection goes on; a malformed line after the content closes it */
    it_send_str_ok(fd, "PUT n 5 *\nhelloSHA256 nothex\n");
    it_expect_line(fd, "OK");
    it_recv_line(fd, line, sizeof(line));
    assert_int_equal(strncmp(line, "ERR protocol ", 13), 0);
    close(fd);
    free(it_backup_list(port, &listed));
    assert_int_equal(listed, 0);
    assert_int_equal(partial_bytes(dir, &parts), 0);
    assert_int_equal(parts, 0);
    assert_int_equal(resume_offset(port, "n", 5, NULL), 0);
    assert_int_equal(svc_metric(d, "uploads_stored"), 0);
    free(dir);
}

/* The pages of file path in the page cache (mincore). */
static size_t cached_pages(const char *path, size_t *ret_total)
{
    long page = sysconf(_SC_PAGESIZE);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    unsigned char *vec;
    size_t pages, n = 0;
    void *m;

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    pages = ((size_t)st.st_size + (size_t)page - 1) / (size_t)page;
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    vec = malloc(pages);
    assert_non_null(vec);
    assert_int_equal(mincore(m, (size_t)st.st_size, vec), 0);
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    munmap(m, (size_t)st.st_size);
    close(fd);
    *ret_total = pages;
    return n;
}

/* A large upload goes to the disk past the page cache, in whole aligned blocks: cut at an
 * offset that is not a multiple of a block, it keeps every byte it received, and resumed from
 * there (the block it ends in is read back and written again whole) it is byte for byte the
 * file sent, with none of what came after the resume left in the page cache. */
static void test_resume_large_upload_at_unaligned_offset_bypasses_page_cache(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    char *dir = it_path_in(fix(state)->dir, "files");
    size_t size = 12 * MIB, part = MIB + 5, total = 0, cached;
    uint8_t *data = it_pattern(size, 21);
    uint16_t port = listener(d, dir, "", "");
    struct cut_ctx cut = {.port = port, .dir = dir};
    char *stored;

    close(put_part(port, "big.bin", size, data, part)); /* a cut once part bytes are sent */
    wait_partial(dir, part);
    assert_true(it_wait_until(IT_WAIT_MS, resume_busy_over, &cut));
    assert_counter_eventually(d, NULL, 1);
    assert_hidden(port, "big.bin");
    assert_int_equal(resume_offset(port, "big.bin", size, NULL), part);

    resume_by_protocol(port, "big.bin", data, size, 1);
    stored = it_path_in(dir, "big.bin");
    cached = cached_pages(stored, &total);
    /* the prefix held is read back to be hashed when the upload resumes; the rest is not */
    if (cached > part / 4096 + 8)
        fail_msg("%zu of the %zu pages of a 12 MiB upload are in the page cache", cached, total);
    assert_resumed(d, dir, port, "big.bin", data, size);
    free(stored);
    free(data);
    free(dir);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, it_fixture_setup, it_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_resume_client_killed_mid_upload_cli_sends_rest),
        T(test_resume_after_connection_reset),
        T(test_resume_after_idle_timeout),
        T(test_resume_under_every_model),
        T(test_resume_after_daemon_killed_and_restarted),
        T(test_resume_other_size_or_checksum_starts_over),
        T(test_resume_ttl_expiry_removes_partial),
        T(test_resume_trailer_checksum_mismatch_keeps_nothing),
        T(test_resume_large_upload_at_unaligned_offset_bypasses_page_cache),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
