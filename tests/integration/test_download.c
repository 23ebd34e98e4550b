/*
 * Downloads of stored files (GET /api/v1/listeners/{id}/files/{name}) over real HTTP: large
 * files byte for byte, with and without a ticket, many at once; the API answering while a
 * client reads nothing; the file's reads made by the download workers, never by
 * libmicrohttpd's thread (seen with strace); a client that goes away, a daemon that stops and
 * a file that shrinks mid-download.
 */

#include <dirent.h>
#include <inttypes.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define TOKEN "download-token-1"
#define BIG_LEN ((size_t)48 * 1024 * 1024 + 12345) /* far more than a download's buffers */
#define MID_LEN ((size_t)8 * 1024 * 1024 + 77)
#define TRACED_LEN ((size_t)4 * 1024 * 1024 + 5)
#define PARALLEL 8
#define HTTP_TIMEOUT_MS 120000
#define WAIT_MS 10000
#define PROMPT_MS 2000 /* an API request answered while a download stalls */

/* ---- storing ---- */

/* A backup listener id on 127.0.0.1, port 0. */
static void backup_listener(const struct it_daemon *d, const char *id)
{
    char body[256];

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0}", id);
    (void)it_listener_create_port(d, body);
}

/* Stores len bytes at p as name on listener b1 with a PUT; asserts 201. */
static void store(const struct it_daemon *d, const char *name, const void *p, size_t len)
{
    char path[256];
    struct it_http r;

    snprintf(path, sizeof(path), "/api/v1/listeners/b1/files/%s", name);
    if (it_http_request(d,
                        &(struct it_req){.method = "PUT",
                                         .path = path,
                                         .body = p,
                                         .body_len = len,
                                         .content_type = "application/octet-stream",
                                         .timeout_ms = HTTP_TIMEOUT_MS},
                        &r) < 0)
        fail_msg("PUT %s: no answer (%s)", path, r.error);
    if (r.status != 201)
        fail_msg("PUT %s: %ld %s", path, r.status, r.body);
    it_http_fini(&r);
}

/* A listener b1 holding name: len bytes of it_pattern(seed), returned (malloc'd). */
static uint8_t *stored(const struct it_daemon *d, const char *name, size_t len, unsigned seed)
{
    uint8_t *p = it_pattern(len, seed);

    backup_listener(d, "b1");
    store(d, name, p, len);
    return p;
}

/* ---- a download read by hand ---- */

struct reader {
    int fd;
    char head[4096];
    size_t head_len;
    bool in_body;
    uint64_t length; /* Content-Length */
    uint64_t got;    /* body bytes */
    const uint8_t *want;
    bool differs;
    bool eof;
};

/* Sends GET path (with the daemon's token) on a new connection; nothing is read yet. */
static void reader_open(struct reader *r, const struct it_daemon *d, const char *path,
                        const uint8_t *want)
{
    char req[512];
    int n;

    memset(r, 0, sizeof(*r));
    r->want = want;
    r->fd = it_tcp_connect_ok(d->api_port);
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nAuthorization: Bearer %s\r\n"
                 "Connection: close\r\n\r\n",
                 path, d->api_port, TOKEN);
    assert_int_equal(it_send_all(r->fd, req, (size_t)n, IT_IO_TIMEOUT_MS), 0);
}

static void reader_body(struct reader *r, const uint8_t *p, size_t n)
{
    if (r->want && (r->got + n > r->length || memcmp(r->want + r->got, p, n) != 0))
        r->differs = true;
    r->got += n;
}

/* Waits up to wait_ms for bytes and takes them; false once nothing more will come. */
static bool reader_pump(struct reader *r, int wait_ms)
{
    static uint8_t buf[256 * 1024];
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    ssize_t n;

    if (r->eof)
        return false;
    if (poll(&pfd, 1, wait_ms) <= 0)
        return true;
    n = recv(r->fd, buf, sizeof(buf), 0);
    if (n <= 0) {
        r->eof = true;
        return false;
    }
    if (r->in_body) {
        reader_body(r, buf, (size_t)n);
        return true;
    }
    for (ssize_t i = 0; i < n; i++) {
        char *end, *cl;

        if (r->head_len + 1 >= sizeof(r->head))
            fail_msg("a response head longer than %zu bytes", sizeof(r->head));
        r->head[r->head_len++] = (char)buf[i];
        r->head[r->head_len] = '\0';
        end = strstr(r->head, "\r\n\r\n");
        if (!end)
            continue;
        if (strncmp(r->head, "HTTP/1.1 200 ", 13) != 0)
            fail_msg("not a 200:\n%s", r->head);
        cl = strcasestr(r->head, "\r\nContent-Length:");
        if (!cl)
            fail_msg("no Content-Length:\n%s", r->head);
        r->length = strtoull(cl + 17, NULL, 10);
        r->in_body = true;
        reader_body(r, buf + i + 1, (size_t)(n - i - 1));
        break;
    }
    return true;
}

/* Reads until at least n body bytes came; asserts they come within WAIT_MS. */
static void reader_until(struct reader *r, uint64_t n)
{
    int64_t deadline = it_now_ms() + WAIT_MS;

    while (!r->in_body || r->got < n) {
        if (!reader_pump(r, 100) || it_now_ms() >= deadline)
            fail_msg("%" PRIu64 " body bytes came, not %" PRIu64, r->got, n);
    }
}

/* Reads to the end of the connection within HTTP_TIMEOUT_MS. */
static void reader_to_eof(struct reader *r)
{
    int64_t deadline = it_now_ms() + HTTP_TIMEOUT_MS;

    while (reader_pump(r, 100))
        if (it_now_ms() >= deadline)
            fail_msg("the download did not end (%" PRIu64 " bytes came)", r->got);
}

static void reader_close(struct reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

/* ---- the daemon seen from /proc ---- */

/* How many of pid's fds are open on a file whose path ends in "/name". */
static int fds_on(pid_t pid, const char *name)
{
    char dir[64], link[PATH_MAX + 64], target[PATH_MAX];
    size_t nlen = strlen(name);
    struct dirent *e;
    DIR *dp;
    int n = 0;

    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    dp = opendir(dir);
    if (!dp)
        fail_msg("%s: %s", dir, strerror(errno));
    while ((e = readdir(dp))) {
        ssize_t len;

        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
        len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if ((size_t)len > nlen && target[len - nlen - 1] == '/' &&
            strcmp(target + len - nlen, name) == 0)
            n++;
    }
    closedir(dp);
    return n;
}

/* The path of the file pid has open whose path ends in "/name", into buf; asserts there is one. */
static void fd_path(pid_t pid, const char *name, char *buf, size_t cap)
{
    char dir[64], link[PATH_MAX + 64];
    size_t nlen = strlen(name);
    struct dirent *e;
    DIR *dp;

    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    dp = opendir(dir);
    assert_non_null(dp);
    while ((e = readdir(dp))) {
        ssize_t len;

        snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
        len = readlink(link, buf, cap - 1);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        if ((size_t)len > nlen && buf[len - nlen - 1] == '/' &&
            strcmp(buf + len - nlen, name) == 0) {
            closedir(dp);
            return;
        }
    }
    closedir(dp);
    fail_msg("the daemon has no file ending in /%s open", name);
}

struct fds_want {
    pid_t pid;
    const char *name;
    int n;
};

static bool fds_are(void *arg)
{
    struct fds_want *w = arg;

    return fds_on(w->pid, w->name) == w->n;
}

/* Asserts GET /api/v1/health is answered 200 within PROMPT_MS. */
static void assert_health_prompt(const struct it_daemon *d)
{
    int64_t t0 = it_now_ms();
    struct it_http r;

    if (it_http_request(d, &(struct it_req){.path = "/api/v1/health", .timeout_ms = PROMPT_MS},
                        &r) < 0)
        fail_msg("GET /api/v1/health: no answer within %d ms (%s)", PROMPT_MS, r.error);
    assert_int_equal(r.status, 200);
    it_http_fini(&r);
    if (it_now_ms() - t0 > PROMPT_MS)
        fail_msg("GET /api/v1/health took %" PRId64 " ms", it_now_ms() - t0);
}

/* ---- tests ---- */

static void test_download_large_file_is_byte_identical_with_and_without_a_ticket(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint8_t *want = stored(d, "big.bin", BIG_LEN, 11);
    const char *path = "/api/v1/listeners/b1/files/big.bin";
    char len_text[32], cl[32];
    struct it_http r;
    json_t *j;

    snprintf(len_text, sizeof(len_text), "%zu", BIG_LEN);
    assert_int_equal(
        it_http_request(d, &(struct it_req){.path = path, .timeout_ms = HTTP_TIMEOUT_MS}, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(it_http_header(&r, "Content-Length", cl, sizeof(cl)));
    assert_string_equal(cl, len_text);
    assert_int_equal(r.body_len, BIG_LEN);
    assert_memory_equal(r.body, want, BIG_LEN);
    it_http_fini(&r);

    /* HEAD: the same length, no body. */
    assert_int_equal(it_http_request(d, &(struct it_req){.method = "HEAD", .path = path}, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(it_http_header(&r, "Content-Length", cl, sizeof(cl)));
    assert_string_equal(cl, len_text);
    assert_int_equal(r.body_len, 0);
    it_http_fini(&r);

    j = it_http_expect(d, "POST", "/api/v1/listeners/b1/files/big.bin/ticket", NULL, 201);
    assert_int_equal(it_http_request(d,
                                     &(struct it_req){.path = it_json_str(j, "url"),
                                                      .no_token = true,
                                                      .timeout_ms = HTTP_TIMEOUT_MS},
                                     &r),
                     0);
    json_decref(j);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_LEN);
    assert_memory_equal(r.body, want, BIG_LEN);
    it_http_fini(&r);
    free(want);
}

static void test_download_api_answers_while_a_client_reads_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint8_t *want = stored(d, "big.bin", BIG_LEN, 12);
    struct reader rd;

    reader_open(&rd, d, "/api/v1/listeners/b1/files/big.bin", want);
    reader_until(&rd, 1); /* the download is under way, then its client stops reading */
    for (int i = 0; i < 10; i++)
        assert_health_prompt(d);
    reader_to_eof(&rd);
    assert_int_equal(rd.length, BIG_LEN);
    assert_int_equal(rd.got, BIG_LEN);
    assert_false(rd.differs);
    reader_close(&rd);
    free(want);
}

static void test_download_eight_at_once_are_byte_identical(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint8_t *want = stored(d, "mid.bin", MID_LEN, 13);
    struct reader rd[PARALLEL];
    int64_t deadline = it_now_ms() + HTTP_TIMEOUT_MS;
    bool going = true;

    for (int i = 0; i < PARALLEL; i++)
        reader_open(&rd[i], d, "/api/v1/listeners/b1/files/mid.bin", want);
    while (going) {
        going = false;
        for (int i = 0; i < PARALLEL; i++)
            going |= reader_pump(&rd[i], 1);
        if (it_now_ms() >= deadline)
            fail_msg("the downloads did not end");
    }
    for (int i = 0; i < PARALLEL; i++) {
        assert_int_equal(rd[i].length, MID_LEN);
        assert_int_equal(rd[i].got, MID_LEN);
        assert_false(rd[i].differs);
        reader_close(&rd[i]);
    }
    free(want);
}

static void test_download_client_gone_closes_the_file(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint8_t *want = stored(d, "big.bin", BIG_LEN, 14);
    struct fds_want open1 = {d->pid, "big.bin", 1}, open0 = {d->pid, "big.bin", 0};
    struct reader rd;

    reader_open(&rd, d, "/api/v1/listeners/b1/files/big.bin", want);
    reader_until(&rd, 64 * 1024);
    assert_true(it_wait_until(WAIT_MS, fds_are, &open1));
    reader_close(&rd);
    if (!it_wait_until(WAIT_MS, fds_are, &open0))
        fail_msg("the daemon still has %d fds on big.bin", fds_on(d->pid, "big.bin"));
    assert_health_prompt(d);
    free(want);
}

static void test_download_stop_with_downloads_in_flight_is_clean(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint8_t *want = stored(d, "big.bin", BIG_LEN, 15);
    struct fds_want open3 = {d->pid, "big.bin", 3};
    struct reader rd[3];

    for (int i = 0; i < 3; i++) {
        reader_open(&rd[i], d, "/api/v1/listeners/b1/files/big.bin", want);
        reader_until(&rd[i], 1);
    }
    assert_true(it_wait_until(WAIT_MS, fds_are, &open3));
    it_daemon_stop_clean(d);
    for (int i = 0; i < 3; i++) {
        reader_to_eof(&rd[i]);
        assert_true(rd[i].got < BIG_LEN); /* cut: shorter than its Content-Length */
        assert_false(rd[i].differs);
        reader_close(&rd[i]);
    }
    free(want);
}

static void test_download_file_that_shrinks_ends_short(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint8_t *want = stored(d, "mid.bin", MID_LEN, 16);
    char path[PATH_MAX];
    struct reader rd;

    reader_open(&rd, d, "/api/v1/listeners/b1/files/mid.bin", want);
    reader_until(&rd, 1);
    fd_path(d->pid, "mid.bin", path, sizeof(path));
    assert_int_equal(truncate(path, 0), 0);
    reader_to_eof(&rd);
    assert_int_equal(rd.length, MID_LEN);
    assert_true(rd.got < MID_LEN); /* the connection is closed short of Content-Length */
    assert_false(rd.differs);
    reader_close(&rd);
    assert_health_prompt(d);
    free(want);
}

/* ---- the reads seen with strace ---- */

/* The thread id of pid's thread called comm, or 0. */
static pid_t thread_named(pid_t pid, const char *comm)
{
    char dir[64], path[384], name[64];
    struct dirent *e;
    pid_t tid = 0;
    DIR *dp;

    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    dp = opendir(dir);
    if (!dp)
        return 0;
    while (!tid && (e = readdir(dp))) {
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(name, sizeof(name), f)) {
            name[strcspn(name, "\n")] = '\0';
            if (strcmp(name, comm) == 0)
                tid = (pid_t)atoi(e->d_name);
        }
        fclose(f);
    }
    closedir(dp);
    return tid;
}

/*
 * Counts the lines of log (strace -f -y) that open, read or send from a file ending in "/name"
 * (its fd shown as "N</path/name>", also as an open's result): those of thread tid in
 * *ret_api, the pread64() calls of the other threads in *ret_other.
 */
static void count_reads(const char *log, const char *name, pid_t tid, int *ret_api, int *ret_other)
{
    char tag[256];
    const char *p = log;

    snprintf(tag, sizeof(tag), "/%s>", name);
    *ret_api = *ret_other = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[1024], *call;
        long who;

        snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) - 1 ? len : sizeof(line) - 1),
                 p);
        who = strtol(line, &call, 10);
        call += strspn(call, " ");
        if (strstr(line, tag)) {
            if (who == tid)
                (*ret_api)++;
            else if (strncmp(call, "pread64(", 8) == 0)
                (*ret_other)++;
        }
        p += len;
        if (*p)
            p++;
    }
}

struct log_reads {
    const char *path;
    pid_t tid;
    int api, other;
};

/* Whether the log shows any read of traced.bin yet (counted into the struct log_reads). */
static bool log_has_reads(void *arg)
{
    struct log_reads *w = arg;
    char *log = it_file_read(w->path, NULL);

    if (log)
        count_reads(log, "traced.bin", w->tid, &w->api, &w->other);
    free(log);
    return w->api + w->other > 0;
}

static void test_download_reads_the_file_off_the_api_thread(void **state)
{
    struct it_fixture *f = *state;
    static const char trace[] = "trace=open,openat,openat2,read,pread64,readv,preadv,preadv2,"
                                "sendfile,splice,copy_file_range,mmap";
    const char *asan = getenv("ASAN_OPTIONS");
    char strace[IT_PATH_MAX], log_path[IT_PATH_MAX], asan_env[512];
    const char *const env[] = {asan_env, NULL};
    struct log_reads reads = {.path = log_path};
    uint8_t *want;
    int r;
    pid_t tid;
    struct it_http h;

    if (!it_which("strace", strace, sizeof(strace)))
        fail_msg("strace is not installed (Debian package strace): this test needs it");
    snprintf(log_path, sizeof(log_path), "%s/strace.log", f->dir);
    /* LeakSanitizer stops the threads with ptrace at exit, which a traced process cannot. */
    snprintf(asan_env, sizeof(asan_env), "ASAN_OPTIONS=%s%sdetect_leaks=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    {
        const char *const argv[] = {strace, "-D", "-f", "-y", "-o", log_path, "-e", trace, NULL};

        r = it_daemon_start_wrapped(&f->d, &(struct it_daemon_opts){.dir = f->dir, .token = TOKEN},
                                    argv, env);
    }
    if (r < 0) {
        it_daemon_dump_stderr(&f->d);
        fail_msg("the daemon under strace did not become ready: %s", strerror(-r));
    }
    tid = thread_named(f->d.pid, "ss-api");
    if (tid == 0)
        fail_msg("the daemon has no thread called ss-api (libmicrohttpd's)");
    want = stored(&f->d, "traced.bin", TRACED_LEN, 17);
    assert_int_equal(it_http_request(&f->d,
                                     &(struct it_req){.path = "/api/v1/listeners/b1/files/"
                                                              "traced.bin",
                                                      .timeout_ms = HTTP_TIMEOUT_MS},
                                     &h),
                     0);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.body_len, TRACED_LEN);
    assert_memory_equal(h.body, want, TRACED_LEN);
    it_http_fini(&h);
    free(want);

    /* strace writes each call as it returns, before the bytes read can be sent: the log holds
     * the reads once the body came; it is read again until it does, in case of buffering. */
    reads.tid = tid;
    (void)it_wait_until(WAIT_MS, log_has_reads, &reads);
    if (reads.api > 0)
        fail_msg("libmicrohttpd's thread (%d) opened, read or sent traced.bin %d times (workers: "
                 "%d); see %s",
                 (int)tid, reads.api, reads.other, log_path);
    if (reads.other == 0)
        fail_msg("no thread read traced.bin under strace; see %s", log_path);
}

static int setup_token(void **state)
{
    return it_fixture_setup_opts(state, (struct it_daemon_opts){.token = TOKEN});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_download_large_file_is_byte_identical_with_and_without_a_ticket, setup_token,
            it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_download_api_answers_while_a_client_reads_nothing,
                                        setup_token, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_download_eight_at_once_are_byte_identical, setup_token,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_download_client_gone_closes_the_file, setup_token,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_download_stop_with_downloads_in_flight_is_clean,
                                        setup_token, it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_download_file_that_shrinks_ends_short, setup_token,
                                        it_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_download_reads_the_file_off_the_api_thread,
                                        it_fixture_setup_dir, it_fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
