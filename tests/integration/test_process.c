/*
 * The `process` model: a forked child per connection. Echo and date served byte-exact, many
 * clients at once, the children visible while they serve and reaped after, the counters the
 * children add seen live through the API, and a stop under load that is prompt and leaves no
 * child, fd or thread behind. Backup under it: concurrent uploads in separate processes, each
 * stored whole with its own version number and no gap, one quota for every process, and a child
 * killed mid-upload that leaves nothing behind and gives its share of the quota back.
 */

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define N_CLIENTS 20
#define N_HELD 10
#define N_SAME 4           /* concurrent uploads of one name */
#define N_OTHER 3          /* concurrent uploads of names of their own */
#define N_QUOTA 5          /* uploads of 1000 bytes against a quota of 3000 */
#define PROTO_LINE_MAX 512 /* a backup answer line (a name is at most 255 bytes) */

static uint16_t create(const struct it_daemon *d, const char *id, const char *svc,
                       const char *options)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"%s\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"process\",\"max_connections\":100%s%s}",
             id, svc, options ? ",\"options\":" : "", options ? options : "");
    return it_listener_create_port(d, body);
}

static void test_process_echo_and_date_served_exactly(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    size_t big_len = 1 << 20, len;
    char *big = it_pattern(big_len, 7), *reply;
    uint16_t echo = create(d, "pe", "echo", "{\"mode\":\"stream\"}");
    uint16_t date = create(d, "pd", "date", NULL);

    it_assert_tcp_echo("127.0.0.1", echo, "hello\n", 6);
    it_assert_tcp_echo("127.0.0.1", echo, big, big_len);
    it_assert_metric_eventually(d, "pe", "bytes_in", 6 + big_len, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pe", "bytes_out", 6 + big_len, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pe", "connections_total", 2, IT_WAIT_MS);

    assert_int_equal(
        it_tcp_exchange("127.0.0.1", date, NULL, 0, false, IT_IO_TIMEOUT_MS, &reply, &len), 0);
    /* One line of text: a date of this century. */
    assert_true(len > 10);
    assert_int_equal(reply[len - 1], '\n');
    assert_non_null(strstr(reply, "20"));
    free(reply);
    it_assert_metric_eventually(d, "pd", "connections_total", 1, IT_WAIT_MS);
    it_assert_children_eventually(d, 0);
    free(big);
}

struct client {
    uint16_t port;
    unsigned seed;
    int result;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    size_t len = 64 * 1024, got_len = 0;
    char *msg = malloc(len), *got = NULL;

    if (msg)
        (void)it_pattern_fill(msg, len, c->seed);
    c->result = msg ? it_tcp_exchange("127.0.0.1", c->port, msg, len, true, IT_IO_TIMEOUT_MS * 2,
                                      &got, &got_len)
                    : -ENOMEM;
    if (c->result == 0 && (got_len != len || memcmp(got, msg, len) != 0))
        c->result = -EBADMSG;
    free(got);
    free(msg);
    return NULL;
}

static void test_process_concurrent_clients_served_and_reaped(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create(d, "pc", "echo", "{\"mode\":\"stream\"}");
    struct client c[N_CLIENTS];
    pthread_t t[N_CLIENTS];

    for (unsigned i = 0; i < N_CLIENTS; i++) {
        c[i] = (struct client){.port = port, .seed = i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
    }
    for (unsigned i = 0; i < N_CLIENTS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].result, 0);
    }
    it_assert_metric_eventually(d, "pc", "connections_total", N_CLIENTS, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pc", "bytes_in", N_CLIENTS * 64 * 1024, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pc", "connections_active", 0, IT_WAIT_MS);
    it_assert_children_eventually(d, 0);
    assert_int_equal(it_metric(d, "pc", "errors"), 0);
}

static void test_process_open_connection_counted_live(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create(d, "pl", "echo", "{\"mode\":\"stream\"}");
    int fd = it_connect_echoed("127.0.0.1", port, "ping");

    /* The child added the bytes in shared memory; the daemon sees them while it serves. */
    assert_int_equal(it_metric(d, "pl", "connections_active"), 1);
    it_assert_metric_eventually(d, "pl", "bytes_in", 4, IT_WAIT_MS);
    it_assert_metric_eventually(d, "pl", "bytes_out", 4, IT_WAIT_MS);
    assert_int_equal(it_children(d, NULL, 0), 1);
    close(fd);
    it_assert_metric_eventually(d, "pl", "connections_active", 0, IT_WAIT_MS);
    it_assert_children_eventually(d, 0);
}

static void test_process_over_limit_rejected(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = it_listener_create_port(
        d, "{\"id\":\"pm\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,"
           "\"model\":\"process\",\"max_connections\":1,\"options\":{\"mode\":\"stream\"}}");
    int held = it_connect_echoed("127.0.0.1", port, "ping"), fd;
    char *rest = NULL;

    fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
    assert_true(fd >= 0);
    /* Closed at once, without an answer. */
    assert_true(it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &rest, NULL) <= 0);
    free(rest);
    close(fd);
    it_assert_metric_eventually(d, "pm", "connections_rejected", 1, IT_WAIT_MS);
    close(held);
}

static void test_process_stop_under_load_prompt_and_clean(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    struct it_resources base;
    uint16_t port;
    int64_t t0;
    int held[N_HELD];

    /* What the daemon holds before the listener exists, once the API's own connections have
     * come and gone. */
    it_resources_settle(d, &base);
    port = create(d, "ps", "echo", "{\"mode\":\"stream\"}");
    for (unsigned i = 0; i < N_HELD; i++)
        held[i] = it_connect_echoed("127.0.0.1", port, "ping");
    assert_int_equal(it_children(d, NULL, 0), N_HELD);
    t0 = it_now_ms();
    json_decref(it_listener_patch(d, "ps", "{\"enabled\":false}"));
    assert_true(it_now_ms() - t0 < 1000);
    /* Reaped before the stop returned. */
    assert_int_equal(it_children(d, NULL, 0), 0);
    assert_int_equal(it_metric(d, "ps", "connections_active"), 0);
    for (unsigned i = 0; i < N_HELD; i++) {
        char *rest = NULL;

        assert_true(it_read_to_eof(held[i], IT_IO_TIMEOUT_MS, &rest, NULL) != -ETIMEDOUT);
        free(rest);
        close(held[i]);
    }
    /* Back to the fds and threads the daemon had before the listener existed. */
    it_assert_resources_back(d, &base, IT_WAIT_MS);
}

/* ---- backup under the process model ---- */

static const char *dir_of(void **state)
{
    return ((struct it_fixture *)*state)->dir;
}

static void sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int n = 0;

    assert_int_equal(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(n, 32);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void send_text(int fd, const char *text)
{
    assert_int_equal(it_send_all(fd, text, strlen(text), IT_IO_TIMEOUT_MS), 0);
}

static int backup_connect(uint16_t port)
{
    int fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);

    if (fd < 0)
        fail_msg("connect port %u: %s", port, strerror(-fd));
    return fd;
}

/* A backup listener under the process model, its files in DIR/id. */
static uint16_t create_backup(void **state, const char *id, const char *options)
{
    char body[1024];

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"service\":\"backup\",\"address\":\"127.0.0.1\",\"port\":0,"
             "\"model\":\"process\",\"max_connections\":100,"
             "\"options\":{\"directory\":\"%s/%s\"%s%s}}",
             id, dir_of(state), id, options ? "," : "", options ? options : "");
    return it_listener_create_port(it_daemon_of(state), body);
}

/* One upload: its content and SHA-256, its connection, and what the server answered after the
 * content (sent by a thread of its own, see upload_all_at_once()). */
struct upload {
    char name[64];
    char *data;
    size_t len;
    char sha[65];
    int fd;
    pthread_barrier_t *start;
    int result;                  /* of sending the content and reading the answer */
    char answer[PROTO_LINE_MAX]; /* the line after the content */
    unsigned version;            /* from a well-formed STORED line */
};

static void upload_init(struct upload *u, const char *name, size_t len, unsigned seed)
{
    *u = (struct upload){.fd = -1};
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->data = it_pattern(len, seed);
    u->len = len;
    sha256_hex(u->data, len, u->sha);
}

/* Connects and sends PUT with the size and the SHA-256; the answer is left to the caller. */
static void upload_begin(struct upload *u, uint16_t port)
{
    char hdr[256];

    u->fd = backup_connect(port);
    snprintf(hdr, sizeof(hdr), "PUT %.63s %zu %.64s\n", u->name, u->len, u->sha);
    send_text(u->fd, hdr);
}

static void *upload_main(void *arg)
{
    struct upload *u = arg;

    (void)pthread_barrier_wait(u->start);
    u->result = it_send_all(u->fd, u->data, u->len, IT_IO_TIMEOUT_MS * 2);
    if (u->result == 0)
        u->result = it_read_line(u->fd, u->answer, sizeof(u->answer), IT_IO_TIMEOUT_MS);
    return NULL;
}

/* Sends the content of every upload at once, each from its own thread, and reads each
 * answer. */
static void upload_all_send(struct upload *u, unsigned n)
{
    pthread_barrier_t start;
    pthread_t t[16];

    assert_true(n <= 16);
    assert_int_equal(pthread_barrier_init(&start, NULL, n), 0);
    for (unsigned i = 0; i < n; i++) {
        u[i].start = &start;
        assert_int_equal(pthread_create(&t[i], NULL, upload_main, &u[i]), 0);
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
}

/* As upload_all_send(), and asserts that each was answered STORED with its name, its size and
 * its SHA-256; records the versions. */
static void upload_all_at_once(struct upload *u, unsigned n)
{
    upload_all_send(u, n);
    for (unsigned i = 0; i < n; i++) {
        char name[64], sha[65];
        size_t size = 0;

        if (u[i].result < 0)
            fail_msg("upload %u (%s): %s after \"%s\"", i, u[i].name, strerror(-u[i].result),
                     u[i].answer);
        if (sscanf(u[i].answer, "STORED %63s %u %zu %64s", name, &u[i].version, &size, sha) != 4 ||
            strcmp(name, u[i].name) != 0 || size != u[i].len || strcmp(sha, u[i].sha) != 0)
            fail_msg("upload %u: want \"STORED %s <version> %zu %s\", got \"%s\"", i, u[i].name,
                     u[i].len, u[i].sha, u[i].answer);
    }
}

static void upload_fini(struct upload *u)
{
    if (u->fd >= 0)
        close(u->fd);
    free(u->data);
}

/* GET name version over fd, and asserts the answer is the upload u, stored as that version. */
static void expect_restored(int fd, const struct upload *u)
{
    char cmd[128], want[PROTO_LINE_MAX];
    char *got = malloc(u->len ? u->len : 1);

    assert_non_null(got);
    snprintf(cmd, sizeof(cmd), "GET %s %u\n", u->name, u->version);
    send_text(fd, cmd);
    snprintf(want, sizeof(want), "OK %zu %s %u", u->len, u->sha, u->version);
    it_expect_line(fd, want);
    assert_int_equal(it_recv_exact(fd, got, u->len, IT_IO_TIMEOUT_MS), 0);
    assert_memory_equal(got, u->data, u->len);
    free(got);
}

/* The names in dir that are not the store's own (hidden) entries, and whether a temporary file
 * of an upload is among the hidden ones. */
static int visible_entries(const char *dir, bool *ret_has_tmp)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    *ret_has_tmp = false;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".tmp", 4) == 0)
            *ret_has_tmp = true;
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

static void test_process_backup_concurrent_uploads_numbered_without_gaps(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create_backup(state, "pbv", NULL);
    struct upload u[N_SAME + N_OTHER], later;
    bool seen[N_SAME + 1] = {false};
    char line[PROTO_LINE_MAX], want[PROTO_LINE_MAX];
    int fd;

    for (unsigned i = 0; i < N_SAME + N_OTHER; i++) {
        char name[32];

        if (i < N_SAME)
            snprintf(name, sizeof(name), "same.bin");
        else
            snprintf(name, sizeof(name), "other-%u.bin", i - N_SAME);
        /* Sizes that differ, so that a copy stored under the wrong version shows. */
        upload_init(&u[i], name, 256 * 1024 + i * 4099, i + 1);
    }
    /* Every upload admitted before any content: all in progress at once, one process each. */
    for (unsigned i = 0; i < N_SAME + N_OTHER; i++) {
        upload_begin(&u[i], port);
        it_expect_line(u[i].fd, "OK");
    }
    assert_int_equal(it_children(d, NULL, 0), N_SAME + N_OTHER);
    upload_all_at_once(u, N_SAME + N_OTHER);

    /* One name: versions 1 to N_SAME, each given once. Other names: version 1. */
    for (unsigned i = 0; i < N_SAME + N_OTHER; i++) {
        if (i >= N_SAME) {
            assert_int_equal(u[i].version, 1);
            continue;
        }
        if (u[i].version < 1 || u[i].version > N_SAME || seen[u[i].version])
            fail_msg("same.bin: upload %u got version %u, which is out of 1..%d or taken twice", i,
                     u[i].version, N_SAME);
        seen[u[i].version] = true;
    }
    /* The next one goes on from there. */
    upload_init(&later, "same.bin", 1000, 99);
    upload_begin(&later, port);
    it_expect_line(later.fd, "OK");
    assert_int_equal(it_send_all(later.fd, later.data, later.len, IT_IO_TIMEOUT_MS), 0);
    snprintf(want, sizeof(want), "STORED same.bin %d 1000 %s", N_SAME + 1, later.sha);
    it_expect_line(later.fd, want);
    later.version = N_SAME + 1;

    /* Each version holds the very bytes that were stored as it. */
    fd = backup_connect(port);
    for (unsigned i = 0; i < N_SAME + N_OTHER; i++)
        expect_restored(fd, &u[i]);
    expect_restored(fd, &later);
    /* LIST: same.bin newest first, every copy verified, then the other names. */
    send_text(fd, "LIST\n");
    snprintf(want, sizeof(want), "OK %d", N_SAME + 1 + N_OTHER);
    it_expect_line(fd, want);
    for (unsigned i = 0; i < N_OTHER; i++) {
        assert_int_equal(it_read_line(fd, line, sizeof(line), IT_IO_TIMEOUT_MS), 0);
        snprintf(want, sizeof(want), "other-%u.bin 1 %zu %s ", i, u[N_SAME + i].len,
                 u[N_SAME + i].sha);
        if (strncmp(line, want, strlen(want)) != 0 || !strstr(line, " verified current"))
            fail_msg("LIST: want \"%s... verified current\", got \"%s\"", want, line);
    }
    for (unsigned v = N_SAME + 1; v >= 1; v--) {
        const struct upload *w = &later;

        for (unsigned i = 0; i < N_SAME; i++)
            if (u[i].version == v)
                w = &u[i];
        assert_int_equal(it_read_line(fd, line, sizeof(line), IT_IO_TIMEOUT_MS), 0);
        snprintf(want, sizeof(want), "same.bin %u %zu %s ", v, w->len, w->sha);
        if (strncmp(line, want, strlen(want)) != 0 ||
            !strstr(line, v == N_SAME + 1 ? " verified current" : " verified old"))
            fail_msg("LIST: want \"%s...\" (version %u), got \"%s\"", want, v, line);
    }
    it_expect_line(fd, "END");
    send_text(fd, "QUIT\n");
    it_expect_line(fd, "BYE");
    close(fd);

    for (unsigned i = 0; i < N_SAME + N_OTHER; i++)
        upload_fini(&u[i]);
    upload_fini(&later);
    it_assert_metric_eventually(d, "pbv", "connections_active", 0, IT_WAIT_MS);
    it_assert_children_eventually(d, 0);
    assert_int_equal(it_metric(d, "pbv", "service.uploads_stored"), N_SAME + N_OTHER + 1);
    assert_int_equal(it_metric(d, "pbv", "service.restores"), N_SAME + N_OTHER + 1);
    assert_int_equal(it_metric(d, "pbv", "errors"), 0);
}

static void test_process_backup_quota_shared_by_every_process(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create_backup(state, "pbq", "\"quota_bytes\":3000");
    struct upload u[N_QUOTA];
    unsigned n_stored = 0, refused[N_QUOTA], n_refused = 0;
    char name[32];

    /* Five processes declare 1000 bytes each: a header holds nothing, every one is admitted. */
    for (unsigned i = 0; i < N_QUOTA; i++) {
        snprintf(name, sizeof(name), "q%u", i);
        upload_init(&u[i], name, 1000, i + 1);
        upload_begin(&u[i], port);
        it_expect_line(u[i].fd, "OK");
    }
    assert_int_equal(it_children(d, NULL, 0), N_QUOTA);
    /* Their bytes take the quota as they come: exactly three fit, whichever they are. */
    upload_all_send(u, N_QUOTA);
    for (unsigned i = 0; i < N_QUOTA; i++) {
        char want[PROTO_LINE_MAX + 128];

        if (u[i].result < 0)
            fail_msg("upload %u: %s after \"%s\"", i, strerror(-u[i].result), u[i].answer);
        snprintf(want, sizeof(want), "STORED %.63s 1 1000 %.64s", u[i].name, u[i].sha);
        if (strcmp(u[i].answer, want) == 0) {
            n_stored++;
            continue;
        }
        if (strcmp(u[i].answer,
                   "ERR quota 1000 bytes received would exceed quota_bytes 3000; nothing kept") !=
            0)
            fail_msg("upload %u: got \"%s\"", i, u[i].answer);
        refused[n_refused++] = i;
    }
    assert_int_equal(n_stored, 3);
    assert_int_equal(n_refused, 2);
    /* A process refused sees what the others stored. */
    {
        char cmd[96];

        snprintf(cmd, sizeof(cmd), "PUT %.63s 1\n", u[refused[0]].name);
        send_text(u[refused[0]].fd, cmd);
    }
    it_expect_line(u[refused[0]].fd,
                   "ERR quota 1 bytes would exceed quota_bytes 3000 (3000 stored, "
                   "0 in progress)");
    send_text(u[refused[1]].fd, "QUIT\n");
    it_expect_line(u[refused[1]].fd, "BYE");
    for (unsigned i = 0; i < N_QUOTA; i++)
        upload_fini(&u[i]);
    it_assert_metric_eventually(d, "pbq", "connections_active", 0, IT_WAIT_MS);
    assert_int_equal(it_metric(d, "pbq", "service.uploads_stored"), 3);
    assert_int_equal(it_metric(d, "pbq", "service.uploads_rejected_quota"), 3);
    assert_int_equal(it_metric(d, "pbq", "service.bytes_stored"), 3000);
}

static void test_process_backup_child_killed_mid_upload_keeps_nothing(void **state)
{
    struct it_daemon *d = it_daemon_of(state);
    uint16_t port = create_backup(state, "pbk", "\"quota_bytes\":1000");
    struct upload big, other, small;
    char want[PROTO_LINE_MAX], files[IT_PATH_MAX];
    pid_t pid = 0;
    bool has_tmp;

    upload_init(&big, "big", 800, 1);
    upload_init(&other, "other", 500, 2);
    upload_init(&small, "big", 3, 3);
    upload_begin(&big, port);
    it_expect_line(big.fd, "OK");
    assert_int_equal(it_children(d, &pid, 1), 1);
    /* Half the content is in the child's hands when it dies. */
    assert_int_equal(it_send_all(big.fd, big.data, 400, IT_IO_TIMEOUT_MS), 0);
    it_assert_metric_eventually(d, "pbk", "bytes_in", strlen("PUT big 800 ") + 64 + 1 + 400,
                                IT_WAIT_MS);

    /* While it lives, its upload holds its share of the quota. */
    upload_begin(&other, port);
    it_expect_line(other.fd, "ERR quota 500 bytes would exceed quota_bytes 1000 (0 stored, 800 in "
                             "progress)");
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_true(it_read_to_eof(big.fd, IT_IO_TIMEOUT_MS, NULL, NULL) != -ETIMEDOUT);
    it_assert_children_eventually(d, 1);

    /* Its share is free again, and it numbered nothing: the next "big" is version 1. */
    snprintf(want, sizeof(want), "PUT other 500 %s\n", other.sha);
    send_text(other.fd, want);
    it_expect_line(other.fd, "OK");
    assert_int_equal(it_send_all(other.fd, other.data, other.len, IT_IO_TIMEOUT_MS), 0);
    snprintf(want, sizeof(want), "STORED other 1 500 %s", other.sha);
    it_expect_line(other.fd, want);
    snprintf(want, sizeof(want), "PUT big 3 %s\n", small.sha);
    send_text(other.fd, want);
    it_expect_line(other.fd, "OK");
    assert_int_equal(it_send_all(other.fd, small.data, small.len, IT_IO_TIMEOUT_MS), 0);
    snprintf(want, sizeof(want), "STORED big 1 3 %s", small.sha);
    it_expect_line(other.fd, want);
    small.version = 1;
    expect_restored(other.fd, &small);

    /* The killed upload left no file and no temporary file. */
    snprintf(files, sizeof(files), "%s/pbk", dir_of(state));
    assert_int_equal(visible_entries(files, &has_tmp), 2);
    assert_false(has_tmp);
    upload_fini(&big);
    upload_fini(&other);
    upload_fini(&small);
    it_assert_metric_eventually(d, "pbk", "connections_active", 0, IT_WAIT_MS);
    it_assert_children_eventually(d, 0);
    assert_int_equal(it_metric(d, "pbk", "service.uploads_stored"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup, it_fixture_teardown)
        T(test_process_echo_and_date_served_exactly),
        T(test_process_concurrent_clients_served_and_reaped),
        T(test_process_open_connection_counted_live),
        T(test_process_over_limit_rejected),
        T(test_process_stop_under_load_prompt_and_clean),
        T(test_process_backup_concurrent_uploads_numbered_without_gaps),
        T(test_process_backup_quota_shared_by_every_process),
        T(test_process_backup_child_killed_mid_upload_keeps_nothing),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
