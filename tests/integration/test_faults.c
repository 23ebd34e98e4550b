/*
 * Faults, as a user of the daemon meets them: the daemon killed (SIGKILL) mid-upload and at
 * every step of a backup's durable commit, fsync failing with EIO or ENOSPC, clients that reset
 * their connection mid-stream, and a port already in use. After a kill the daemon is started
 * again on the same state directory: every copy a client got STORED for is there byte for byte,
 * nothing partial is listed or lies in the directory, no temporary file is left, and the
 * listener set is back. After every fault the daemon answers, holds as many fds and threads as
 * before, and its log holds no sanitizer report. (A slowloris against the API is in
 * test_security.c.)
 *
 * Syscalls are faulted with strace: `strace -D -f -e inject=SYSCALL:...:when=N`. strace counts
 * the calls of each thread apart, and a backup listener of the thread model serves each
 * connection on a thread of its own, so N is the N-th call made for that connection, whatever
 * the daemon's other threads do. -D keeps the daemon the test's child (strace is its
 * grandchild), so that its pid, its /proc entries and its exit status are the daemon's. The
 * commit of an upload runs on its connection's thread (svc/backup.c upload_commit(),
 * svc/backup_store.c svc_backup_store_commit()); strace shows it as:
 *
 *   a new name                                     a name with a current copy (on_exists version)
 *   fsync 1      the data (an O_TMPFILE)           fsync 1      the data
 *   fsync 2      .sockserv, once NAME's dir made   fsync 2      record .sockserv/NAME/.tmp-X
 *   fsync 3      record .sockserv/NAME/.tmp-X      renameat2 1  .tmp-X -> 2.json, NOREPLACE
 *   renameat2 1  .tmp-X -> 1.json, NOREPLACE       linkat 1     NAME -> .sockserv/NAME/1
 *   fsync 4      .sockserv/NAME                    fsync 3      .sockserv/NAME
 *   linkat 1     /proc/self/fd/N -> NAME           linkat 2     /proc/self/fd/N -> .tmp-Y
 *   fsync 5      the directory, then STORED        renameat 1   .tmp-Y -> NAME
 *                                                  fsync 4      the directory, then STORED
 *
 * Under on_exists replace the older copy's second name is a hidden .sockserv/NAME/.tmp-K (only
 * an undo uses it, and the next writer's cleanup removes it), and after fsync 4 come unlinkat 2
 * of .tmp-K, unlinkat 3 of the older copy's record and fsync 5 of .sockserv/NAME (unlinkat 1 is
 * the record's temporary name, already renamed away: ENOENT).
 *
 * Where O_TMPFILE is refused (overlayfs before Linux 6.6, NFS) the data is a hidden .tmp-Y in
 * the directory from the start, and takes its name with renameat2(NOREPLACE) or renameat: the
 * tables below hold both sequences, and the test picks the one the directory's file system
 * takes.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

#define LISTENER "b1"
#define LINE_CAP 2048
#define NAMES_MAX 48
#define VERSIONS_MAX 8
#define DATA_LEN (160 * 1024 + 17)    /* more than one read, quick under strace */
#define BIG_LEN (8 * 1024 * 1024)     /* still on its way when the daemon is killed */
#define PART_LEN (1024 * 1024 + 4321) /* what of it the daemon has read by then */
#define LOG_WAIT_MS 10000             /* strace writes its log as it sees things */
#define DEATH_WAIT_MS 10000           /* a daemon killed in the commit of an upload */
#define SVC_PREFIX "service."

/* ---- what the store must hold ---- */

struct copy {
    uint8_t *data;
    size_t len;
    char hex[65];
};

/* A name's copies a client got STORED for (or that a kill left complete under the name). */
struct name_state {
    char name[64];
    struct copy cur;
    struct copy old[VERSIONS_MAX]; /* older versions, newest first */
    size_t n_old;
};

struct faults {
    struct it_fixture *f;     /* the temporary directory and the daemon */
    char files[IT_PATH_MAX];  /* the backup listener's directory */
    char strace[IT_PATH_MAX]; /* "" until a test needs it */
    json_t *configs;          /* the listener set as created: GET /api/v1/listeners, status and
                                 metrics left out */
    struct name_state names[NAMES_MAX];
    size_t n_names;
    bool replace; /* the backup listener's on_exists: replace (else version) */
    unsigned seed, seq;
};

static struct faults *faults_of(void **state)
{
    return *state;
}

static int faults_setup(void **state)
{
    struct faults *w = calloc(1, sizeof(*w));
    void *inner = NULL;

    if (!w || it_fixture_setup_dir(&inner) < 0) {
        free(w);
        return -1;
    }
    w->f = inner;
    snprintf(w->files, sizeof(w->files), "%s/files", w->f->dir);
    *state = w;
    return 0;
}

static void copy_free(struct copy *c)
{
    free(c->data);
    c->data = NULL;
}

static int faults_teardown(void **state)
{
    struct faults *w = *state;
    void *inner;

    if (!w)
        return 0;
    for (size_t i = 0; i < w->n_names; i++) {
        copy_free(&w->names[i].cur);
        for (size_t k = 0; k < w->names[i].n_old; k++)
            copy_free(&w->names[i].old[k]);
    }
    json_decref(w->configs);
    inner = w->f;
    free(w);
    *state = NULL;
    return it_fixture_teardown(&inner);
}

/* New content, different from every other (so that a mix-up or a loss shows). */
static struct copy copy_new(struct faults *w, size_t len)
{
    struct copy c = {.len = len};

    c.data = it_pattern(len, ++w->seed * 2654435761u);
    it_sha256_hex(c.data, len, c.hex);
    return c;
}

/* Records c as name's current copy (the store keeps the older one as a version, or drops it
 * under on_exists replace); takes c. */
static void expect_stored(struct faults *w, const char *name, struct copy c)
{
    struct name_state *ns = NULL;

    for (size_t i = 0; i < w->n_names && !ns; i++) {
        if (strcmp(w->names[i].name, name) == 0)
            ns = &w->names[i];
    }
    if (!ns) {
        assert_true(w->n_names < NAMES_MAX);
        ns = &w->names[w->n_names++];
        snprintf(ns->name, sizeof(ns->name), "%s", name);
    } else if (w->replace) {
        copy_free(&ns->cur);
    } else {
        assert_true(ns->n_old < VERSIONS_MAX);
        memmove(&ns->old[1], &ns->old[0], ns->n_old * sizeof(ns->old[0]));
        ns->old[0] = ns->cur;
        ns->n_old++;
    }
    ns->cur = c;
}

/* tmpl with each "{}" replaced by name. */
static void subst(char *out, size_t cap, const char *tmpl, const char *name)
{
    size_t n = 0;

    for (const char *p = tmpl; *p && n + 1 < cap;) {
        if (p[0] == '{' && p[1] == '}') {
            n += (size_t)snprintf(out + n, cap - n, "%s", name);
            p += 2;
        } else {
            out[n++] = *p++;
        }
    }
    out[n < cap ? n : cap - 1] = '\0';
}

/* ---- the daemon ---- */

static void start_plain(struct faults *w)
{
    it_daemon_start_ok(&w->f->d, &(struct it_daemon_opts){.dir = w->f->dir});
}

/* Finds strace, and checks that it may trace here (a container may forbid ptrace); skips the
 * test otherwise, saying why. */
static void require_strace(struct faults *w)
{
    char true_bin[IT_PATH_MAX];
    struct it_proc p;

    if (!it_which("strace", w->strace, sizeof(w->strace))) {
        fprintf(stderr, "# SKIPPED: strace is not installed (Debian package strace): the "
                        "daemon's syscalls cannot be faulted\n");
        skip();
    }
    assert_true(it_which("true", true_bin, sizeof(true_bin)));
    {
        const char *const argv[] = {
            w->strace, "-D", "-f", "-o", "/dev/null", "-e", "inject=getpid:error=EPERM",
            true_bin,  NULL};

        it_run(argv, NULL, 0, IT_IO_TIMEOUT_MS, &p);
    }
    if (it_proc_exit_code(&p) != 0) {
        fprintf(stderr, "# SKIPPED: strace cannot trace here (%s): %s\n", it_status_str(p.status),
                p.err);
        it_proc_fini(&p);
        skip();
    }
    it_proc_fini(&p);
}

/*
 * Starts the daemon under strace with the fault inject ("inject=fsync:error=EIO:when=2"); the
 * calls of the commit path go to log, each with the path of its fds (-y).
 */
static void start_traced(struct faults *w, const char *inject, char log[IT_PATH_MAX])
{
    static const char trace[] =
        "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat,unlink,unlinkat";
    const char *asan = getenv("ASAN_OPTIONS");
    char asan_env[512];
    const char *const env[] = {asan_env, NULL};
    int r;

    snprintf(log, IT_PATH_MAX, "%s/strace-%u.log", w->f->dir, ++w->seq);
    /* LeakSanitizer stops the threads with ptrace at exit, which a traced process cannot. The
     * daemons that run without strace keep the leak check. */
    snprintf(asan_env, sizeof(asan_env), "ASAN_OPTIONS=%s%sdetect_leaks=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    {
        const char *const argv[] = {w->strace, "-D",  "-f", "-y",   "-o", log,
                                    "-e",      trace, "-e", inject, NULL};

        r = it_daemon_start_wrapped(&w->f->d, &(struct it_daemon_opts){.dir = w->f->dir}, argv,
                                    env);
    }
    if (r < 0) {
        it_daemon_dump_stderr(&w->f->d);
        fail_msg("the daemon under strace -e %s did not become ready: %s", inject, strerror(-r));
    }
}

/* Whether log has the line "PID +++ event +++" (strace pads the pid to a column). */
static bool log_has_end(const char *log, pid_t pid, const char *event)
{
    char want[96];

    snprintf(want, sizeof(want), "+++ %s +++", event);
    for (const char *p = log; (p = strstr(p, want)); p += strlen(want)) {
        const char *bol = p;

        while (bol > log && bol[-1] != '\n')
            bol--;
        if (strtol(bol, NULL, 10) == pid)
            return true;
    }
    return false;
}

/* Reads the strace log until it says that process pid ended with event ("exited with 0"), for
 * at most LOG_WAIT_MS: strace writes it as it sees things. Returns it (malloc'd). */
static char *log_ended(const char *path, pid_t pid, const char *event)
{
    int64_t deadline = it_now_ms() + LOG_WAIT_MS;

    for (;;) {
        char *log = it_file_read(path, NULL);

        if (log && log_has_end(log, pid, event))
            return log;
        if (it_now_ms() >= deadline) {
            fprintf(stderr, "# strace log %s:\n%s\n", path, log ? log : "(none)");
            free(log);
            fail_msg("the strace log never said \"%d +++ %s +++\"", (int)pid, event);
        }
        free(log);
        (void)poll(NULL, 0, IT_POLL_INTERVAL_MS);
    }
}

/* strace's log as whole calls, one a line: a call another thread's line split ("TID
 * fsync(3</x> <unfinished ...>", then "TID <... fsync resumed>) = 0") is joined back. */
struct calls {
    char **v;
    size_t n;
};

static void calls_push(struct calls *c, char *line)
{
    char **v = realloc(c->v, (c->n + 1) * sizeof(*v));

    assert_non_null(v);
    assert_non_null(line);
    c->v = v;
    c->v[c->n++] = line;
}

static struct calls calls_of(char *log)
{
    static const char unfinished[] = " <unfinished ...>";
    struct calls c = {0};
    struct {
        char tid[16];
        char *head; /* the line up to its " <unfinished ...>" */
    } open[64];
    size_t n_open = 0;

    for (char *line = log, *next; line && *line; line = next) {
        size_t len, tl;
        char *resumed;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        len = strlen(line);
        tl = strcspn(line, " ");
        if (len > strlen(unfinished) && tl < sizeof(open[0].tid) &&
            strcmp(line + len - strlen(unfinished), unfinished) == 0 && n_open < 64) {
            snprintf(open[n_open].tid, sizeof(open[0].tid), "%.*s", (int)tl, line);
            open[n_open++].head = strndup(line, len - strlen(unfinished));
            continue;
        }
        resumed = strstr(line, " resumed>");
        if (strstr(line, "<... ") && resumed) {
            size_t i = 0;

            while (i < n_open && !(strlen(open[i].tid) == tl && !strncmp(open[i].tid, line, tl)))
                i++;
            if (i < n_open) {
                char *joined = NULL;

                assert_true(asprintf(&joined, "%s%s", open[i].head, resumed + strlen(" resumed>")) >
                            0);
                calls_push(&c, joined);
                free(open[i].head);
                open[i] = open[--n_open];
                continue;
            }
        }
        calls_push(&c, strdup(line));
    }
    for (size_t i = 0; i < n_open; i++)
        calls_push(&c, open[i].head);
    return c;
}

static void calls_fini(struct calls *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i]);
    free(c->v);
}

static void print_log(const char *path)
{
    char *log = it_file_read(path, NULL);

    fprintf(stderr, "# strace log %s:\n%s\n", path, log ? log : "");
    free(log);
}

/*
 * Asserts that the daemon was killed on entering syscall, on the call whose strace line holds
 * needle: one traced call was cut ("= ?"), and it is that one.
 */
static void assert_killed_in(const char *log_path, pid_t pid, const char *syscall,
                             const char *needle)
{
    char *log = log_ended(log_path, pid, "killed by SIGKILL");
    struct calls c = calls_of(log);
    const char *cut = NULL;
    unsigned n_cut = 0;
    char call[64];

    snprintf(call, sizeof(call), " %s(", syscall);
    for (size_t i = 0; i < c.n; i++) {
        size_t len = strlen(c.v[i]);

        if (len > 4 && strcmp(c.v[i] + len - 4, " = ?") == 0) {
            n_cut++;
            cut = c.v[i];
        }
    }
    if (n_cut != 1 || !strstr(cut, call) || !strstr(cut, needle)) {
        print_log(log_path);
        fail_msg("want the daemon killed in %s(... %s ...), %u calls were cut", syscall, needle,
                 n_cut);
    }
    calls_fini(&c);
    free(log);
}

/* Asserts that the injected calls, in order, are fsyncs whose lines hold needles[i]. Call once
 * the daemon has exited. */
static void assert_injected(const char *log_path, pid_t pid, const char *const *needles, size_t n)
{
    char *log = log_ended(log_path, pid, "exited with 0");
    struct calls c = calls_of(log);
    size_t seen = 0;
    bool ok = true;

    for (size_t i = 0; i < c.n; i++) {
        if (!strstr(c.v[i], "(INJECTED)"))
            continue;
        if (seen >= n || !strstr(c.v[i], " fsync(") || !strstr(c.v[i], needles[seen]))
            ok = false;
        seen++;
    }
    calls_fini(&c);
    free(log);
    if (!ok || seen != n) {
        print_log(log_path);
        fail_msg("want %zu injected fsyncs, in order on: %s%s%s; %zu were", n,
                 n > 0 ? needles[0] : "", n > 1 ? ", then " : "", n > 1 ? needles[1] : "", seen);
    }
}

/* ---- the REST API ---- */

static uint16_t backup_port(const struct it_daemon *d)
{
    json_t *j = it_listener_get(d, LISTENER);
    uint16_t port = it_bound_port(j);

    json_decref(j);
    return port;
}

static uint64_t svc_metric(const struct it_daemon *d, const char *name)
{
    char path[128];

    snprintf(path, sizeof(path), SVC_PREFIX "%s", name);
    return it_metric(d, LISTENER, path);
}

/* GET /api/v1/listeners, each without its status and metrics: the configuration. */
static json_t *configs_now(const struct it_daemon *d)
{
    json_t *body = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200), *list, *v;
    size_t i;

    assert_non_null(body);
    list = json_incref(json_object_get(body, "listeners"));
    json_decref(body);
    assert_true(json_is_array(list));
    json_array_foreach(list, i, v)
    {
        json_object_del(v, "status");
        json_object_del(v, "metrics");
    }
    return list;
}

static void assert_same_json(const json_t *want, const json_t *got, const char *what)
{
    if (!json_equal(want, got)) {
        char *a = json_dumps(want, JSON_COMPACT), *b = json_dumps(got, JSON_COMPACT);

        fprintf(stderr, "# want %s\n#  got %s\n", a, b);
        free(a);
        free(b);
        fail_msg("%s differs", what);
    }
}

static const char *state_of(const struct it_daemon *d, const char *id)
{
    static char buf[32];
    json_t *j = it_listener_get(d, id);

    snprintf(buf, sizeof(buf), "%s", it_json_str(j, "status.state"));
    json_decref(j);
    return buf;
}

/* Asserts the listener set is the one created, each listener in its desired state, and that
 * they serve. */
static void assert_listeners_restored(struct faults *w)
{
    const struct it_daemon *d = &w->f->d;
    json_t *now = configs_now(d), *e1;
    uint16_t port;

    assert_same_json(w->configs, now, "the restored listener set");
    json_decref(now);
    assert_string_equal(state_of(d, LISTENER), "running");
    assert_string_equal(state_of(d, "u1"), "running");
    assert_string_equal(state_of(d, "off"), "stopped");
    e1 = it_listener_get(d, "e1");
    assert_string_equal(it_json_str(e1, "status.state"), "running");
    port = it_bound_port(e1);
    json_decref(e1);
    it_assert_tcp_echo("127.0.0.1", port, "back", 4);
}

/*
 * The daemon's fds and threads at rest: once each running TCP listener has served a connection
 * (so that its threads are in their loops, holding what they keep) and they hold still.
 */
static void take_baseline(const struct it_daemon *d, struct it_resources *ret)
{
    json_t *body = it_http_expect(d, "GET", "/api/v1/listeners", NULL, 200), *list, *v;
    size_t i;

    assert_non_null(body);
    list = json_object_get(body, "listeners");
    json_array_foreach(list, i, v)
    {
        const char *id = it_json_str(v, "id");
        uint64_t total;
        int fd;

        if (strcmp(it_json_str(v, "transport"), "tcp") != 0 ||
            strcmp(it_json_str(v, "status.state"), "running") != 0)
            continue;
        total = it_metric(d, id, "connections_total");
        fd = it_tcp_connect("127.0.0.1", it_bound_port(v), IT_IO_TIMEOUT_MS);
        assert_true(fd >= 0);
        close(fd);
        it_assert_metric_eventually(d, id, "connections_total", total + 1, IT_WAIT_MS);
        it_assert_metric_eventually(d, id, "connections_active", 0, IT_WAIT_MS);
    }
    json_decref(body);
    it_resources_settle(d, ret);
}

/* ---- the wire protocol ---- */

static void quit(int fd)
{
    char line[LINE_CAP];

    it_send_str_ok(fd, "QUIT\n");
    it_recv_line(fd, line, sizeof(line));
    assert_string_equal(line, "BYE");
    close(fd);
}

/* PUT name with c's size and SHA-256 on fd. line gets the answer that ends it: an ERR refusing
 * the header, or, after OK and the content, STORED or ERR. */
static void put_on(int fd, const char *name, const struct copy *c, char line[LINE_CAP])
{
    char hdr[LINE_CAP];

    snprintf(hdr, sizeof(hdr), "PUT %s %zu %s\n", name, c->len, c->hex);
    it_send_str_ok(fd, hdr);
    it_recv_line(fd, line, LINE_CAP);
    if (strcmp(line, "OK") != 0)
        return;
    it_send_ok(fd, c->data, c->len);
    it_recv_line(fd, line, LINE_CAP);
}

static void assert_stored_line(const char *line, const char *name, unsigned version,
                               const struct copy *c)
{
    char want[LINE_CAP];

    snprintf(want, sizeof(want), "STORED %s %u %zu %s", name, version, c->len, c->hex);
    if (strcmp(line, want) != 0)
        fail_msg("answer \"%s\", want \"%s\"", line, want);
}

static void assert_err_line(const char *line, const char *code)
{
    char want[64];

    snprintf(want, sizeof(want), "ERR %s ", code);
    if (strncmp(line, want, strlen(want)) != 0 || !strstr(line, "nothing kept"))
        fail_msg("answer \"%s\", want \"%s... nothing kept\"", line, want);
}

/* A stored upload of a new copy of name on its own connection; returns its version. */
static unsigned put_ok(struct faults *w, uint16_t port, const char *name, struct copy c)
{
    char line[LINE_CAP], hdr[LINE_CAP];
    unsigned version = 0;
    int fd = it_tcp_connect_ok(port);

    put_on(fd, name, &c, line);
    snprintf(hdr, sizeof(hdr), "STORED %s ", name);
    if (strncmp(line, hdr, strlen(hdr)) != 0 || sscanf(line + strlen(hdr), "%u", &version) != 1)
        fail_msg("PUT %s answered \"%s\"", name, line);
    assert_stored_line(line, name, version, &c);
    quit(fd);
    expect_stored(w, name, c);
    return version;
}

/* Sets SO_LINGER 0 and closes: the peer gets a reset, not an end of stream. */
static void reset_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

/* Starts an upload of c under name and sends its first part bytes; returns the connection. */
static int put_partial(uint16_t port, const char *name, const struct copy *c, size_t part,
                       size_t *ret_sent)
{
    char hdr[LINE_CAP], line[LINE_CAP];
    int fd = it_tcp_connect_ok(port);

    snprintf(hdr, sizeof(hdr), "PUT %s %zu %s\n", name, c->len, c->hex);
    it_send_str_ok(fd, hdr);
    it_recv_line(fd, line, sizeof(line));
    assert_string_equal(line, "OK");
    it_send_ok(fd, c->data, part);
    *ret_sent = strlen(hdr) + part;
    return fd;
}

/*
 * Uploads c as name to a daemon that is to die in the commit: sends the header and the content,
 * asserts that no answer came (no STORED: the kill came first), then that the daemon died of
 * SIGKILL.
 */
static void put_expect_death(struct faults *w, uint16_t port, const char *name,
                             const struct copy *c, const char *what)
{
    struct it_daemon *d = &w->f->d;
    char hdr[LINE_CAP], line[LINE_CAP], *rest = NULL;
    size_t n = 0;
    int fd = it_tcp_connect_ok(port), status, r;

    snprintf(hdr, sizeof(hdr), "PUT %s %zu %s\n", name, c->len, c->hex);
    it_send_str_ok(fd, hdr);
    it_recv_line(fd, line, sizeof(line));
    assert_string_equal(line, "OK");
    r = it_send_all(fd, c->data, c->len, IT_IO_TIMEOUT_MS);
    if (r < 0 && r != -EPIPE && r != -ECONNRESET)
        fail_msg("sending the content: %s", strerror(-r));
    r = it_read_to_eof(fd, DEATH_WAIT_MS, &rest, &n);
    close(fd);
    if (n > 0)
        fail_msg("killing the daemon at %s: it answered \"%.*s\" first", what,
                 (int)strcspn(rest, "\n"), rest);
    free(rest);
    if (r < 0 && r != -ECONNRESET)
        fail_msg("killing the daemon at %s: the connection stayed open (%s)", what, strerror(-r));
    if (it_daemon_wait_exit(d, DEATH_WAIT_MS, &status) < 0)
        fail_msg("killing the daemon at %s: it still runs", what);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        it_daemon_dump_stderr(d);
        fail_msg("killing the daemon at %s: it ended with %s", what, it_status_str(status));
    }
}

/* ---- the store as a user sees it ---- */

/* GET /api/v1/listeners/b1/files/NAME: asserts 200 and the content. */
static void assert_download(const struct it_daemon *d, const char *name, const struct copy *c)
{
    char path[256];
    struct it_http r;

    snprintf(path, sizeof(path), "/api/v1/listeners/" LISTENER "/files/%s", name);
    assert_int_equal(it_http_raw(d, "GET", path, NULL, 0, NULL, &r), 0);
    if (r.status != 200 || r.body_len != c->len || memcmp(r.body, c->data, c->len) != 0)
        fail_msg("GET %s: %ld, %zu bytes, want 200 and the %zu bytes stored", path, r.status,
                 r.body_len, c->len);
    it_http_fini(&r);
}

/* Asserts that the file at path holds exactly c. */
static void assert_on_disk(const char *path, const struct copy *c)
{
    size_t len = 0;
    char *got = it_file_read(path, &len);
    char hex[65];

    if (!got)
        fail_msg("%s: %s", path, strerror(errno));
    it_sha256_hex(got, len, hex);
    if (len != c->len || strcmp(hex, c->hex) != 0)
        fail_msg("%s holds %zu bytes (sha256 %s), want %zu (%s)", path, len, hex, c->len, c->hex);
    free(got);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether dir or one of the directories in it holds an entry whose name starts with .tmp- */
static bool has_tmp(const char *dir, bool below)
{
    struct dirent *e;
    bool found = false;
    DIR *dp = opendir(dir);

    if (!dp)
        return false;
    while ((e = readdir(dp)) && !found) {
        char sub[IT_PATH_MAX + 256];

        if (strncmp(e->d_name, ".tmp-", 5) == 0)
            found = true;
        else if (below && e->d_type == DT_DIR && e->d_name[0] != '.') {
            snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
            found = has_tmp(sub, false);
        }
    }
    closedir(dp);
    return found;
}

/*
 * Asserts what the store holds, everywhere a user looks: GET .../files lists exactly the expected
 * names, each with its current copy's size and SHA-256 and its older versions; each downloads
 * byte for byte; and the directory holds those names and .sockserv, nothing partial, no
 * temporary file anywhere.
 */
static void verify_store(struct faults *w)
{
    const struct it_daemon *d = &w->f->d;
    char meta[IT_PATH_MAX + 16], want[4096] = ".sockserv", *got;
    const char *sorted[NAMES_MAX];
    json_t *body, *files;
    size_t used = strlen(want);

    body = it_http_expect(d, "GET", "/api/v1/listeners/" LISTENER "/files", NULL, 200);
    assert_non_null(body);
    files = json_object_get(body, "files");
    assert_true(json_is_array(files));
    if (json_array_size(files) != w->n_names) {
        char *text = json_dumps(files, JSON_COMPACT);

        fprintf(stderr, "# listed: %s\n", text);
        free(text);
        fail_msg("GET .../files lists %zu names, want %zu", json_array_size(files), w->n_names);
    }
    for (size_t i = 0; i < w->n_names; i++) {
        const struct name_state *ns = &w->names[i];
        json_t *file = NULL, *v, *versions;
        char path[IT_PATH_MAX + 80];
        size_t k;

        json_array_foreach(files, k, v)
        {
            if (strcmp(it_json_str(v, "name"), ns->name) == 0)
                file = v;
        }
        if (!file)
            fail_msg("%s is not listed", ns->name);
        assert_int_equal(it_json_int(file, "size"), ns->cur.len);
        assert_string_equal(it_json_str(file, "sha256"), ns->cur.hex);
        assert_true(it_json_bool(file, "verified"));
        versions = json_object_get(file, "versions");
        assert_true(json_is_array(versions));
        if (json_array_size(versions) != ns->n_old)
            fail_msg("%s lists %zu older versions, want %zu", ns->name, json_array_size(versions),
                     ns->n_old);
        json_array_foreach(versions, k, v)
        {
            assert_int_equal(it_json_int(v, "size"), ns->old[k].len);
            assert_string_equal(it_json_str(v, "sha256"), ns->old[k].hex);
        }
        assert_download(d, ns->name, &ns->cur);
        snprintf(path, sizeof(path), "%s/%s", w->files, ns->name);
        assert_on_disk(path, &ns->cur);
        sorted[i] = ns->name;
    }
    json_decref(body);

    if (w->n_names)
        qsort(sorted, w->n_names, sizeof(sorted[0]), cmp_str);
    for (size_t i = 0; i < w->n_names; i++)
        used += (size_t)snprintf(want + used, sizeof(want) - used, " %s", sorted[i]);
    got = it_dir_names(w->files);
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s holds \"%s\", want \"%s\"", w->files, got ? got : "(nothing)", want);
    free(got);
    snprintf(meta, sizeof(meta), "%s/.sockserv", w->files);
    if (has_tmp(w->files, false) || has_tmp(meta, true))
        fail_msg("a temporary file is left in %s", w->files);
}

/* ---- the world every backup fault starts from ---- */

/*
 * A daemon with a backup listener (thread model: a thread per connection; resume_ttl_ms 0, so that
 * an upload is an unnamed temporary file, as these steps expect; on_exists replace when
 * replace, else version), a TCP and a UDP echo and a stopped date listener, and three stored
 * copies (one name stored twice); then stopped. The listener set is kept in w->configs.
 */
static void world_setup(struct faults *w, bool replace)
{
    const struct it_daemon *d = &w->f->d;
    char body[IT_PATH_MAX + 256];
    uint16_t port;

    start_plain(w);
    snprintf(body, sizeof(body),
             "{\"id\":\"" LISTENER "\",\"service\":\"backup\",\"port\":0,\"model\":\"thread\","
             "\"options\":{\"directory\":\"%s\",\"on_exists\":\"%s\",\"resume_ttl_ms\":0}}",
             w->files, replace ? "replace" : "version");
    w->replace = replace;
    json_decref(it_listener_create(d, body));
    json_decref(it_listener_create(d, "{\"id\":\"e1\",\"service\":\"echo\",\"port\":0}"));
    json_decref(it_listener_create(
        d, "{\"id\":\"u1\",\"service\":\"echo\",\"transport\":\"udp\",\"port\":0}"));
    json_decref(it_listener_create(d, "{\"id\":\"off\",\"service\":\"date\",\"port\":0}"));
    json_decref(it_http_expect(d, "POST", "/api/v1/listeners/off/stop", NULL, 200));
    w->configs = configs_now(d);
    assert_int_equal(json_array_size(w->configs), 4);

    port = backup_port(d);
    assert_int_equal(put_ok(w, port, "keep.bin", copy_new(w, DATA_LEN)), 1);
    assert_int_equal(put_ok(w, port, "twice.bin", copy_new(w, DATA_LEN / 3)), 1);
    assert_int_equal(put_ok(w, port, "twice.bin", copy_new(w, DATA_LEN / 2)), 2);
    verify_store(w);
    it_daemon_stop_clean(&w->f->d);
}

/* Starts the daemon again on the same state directory and asserts what it restored; leaves it
 * running, with its fds and threads at rest in *ret_base. */
static void restart_and_verify(struct faults *w, struct it_resources *ret_base)
{
    start_plain(w);
    assert_listeners_restored(w);
    take_baseline(&w->f->d, ret_base);
    verify_store(w);
}

/* Asserts the daemon runs, is back to base's fds and threads, and its log is clean. */
static void assert_survived(struct faults *w, const struct it_resources *base)
{
    it_assert_daemon_alive(&w->f->d);
    it_assert_resources_back(&w->f->d, base, IT_WAIT_MS);
    it_assert_no_sanitizer_report(&w->f->d);
}

/* ---- SIGKILL mid-upload ---- */

static void test_faults_daemon_killed_mid_upload_keeps_stored_copies_only(void **state)
{
    struct faults *w = faults_of(state);
    struct it_daemon *d = &w->f->d;
    uint64_t want_in;
    struct it_resources base;
    struct copy fresh, over;
    size_t sent_a, sent_b;
    int fa, fb, status;
    uint16_t port;

    world_setup(w, false);
    start_plain(w);
    port = backup_port(d);
    fresh = copy_new(w, BIG_LEN);
    over = copy_new(w, BIG_LEN);
    want_in = it_metric(d, LISTENER, "bytes_in");
    /* Two uploads on their way: a new name, and a new copy of a stored one. */
    fa = put_partial(port, "big.bin", &fresh, PART_LEN, &sent_a);
    fb = put_partial(port, "keep.bin", &over, PART_LEN, &sent_b);
    want_in += sent_a + sent_b;
    if (!it_metric_reaches(d, LISTENER, "bytes_in", want_in, IT_WAIT_MS))
        fail_msg("the daemon did not read the first %d bytes of both uploads", PART_LEN);
    assert_int_equal(kill(d->pid, SIGKILL), 0);
    assert_int_equal(it_daemon_wait_exit(d, IT_EXIT_TIMEOUT_MS, &status), 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    it_assert_no_sanitizer_report(d);
    close(fa);
    close(fb);

    /* Started again: what was stored, byte for byte; nothing of the two cut uploads. */
    restart_and_verify(w, &base);
    /* The name the cut upload had is free, and its first copy is version 1. */
    assert_int_equal(put_ok(w, backup_port(d), "big.bin", fresh), 1);
    assert_int_equal(put_ok(w, backup_port(d), "keep.bin", over), 2);
    verify_store(w);
    assert_survived(w, &base);
    it_daemon_stop_clean(&w->f->d);
}

/* ---- SIGKILL at each step of the commit ---- */

enum { LEFT_DIR = 1, LEFT_META = 2 }; /* where a .tmp- entry lies after the kill */

struct step {
    const char *syscall;
    unsigned when;      /* the when-th call of syscall on the upload's thread */
    const char *needle; /* in strace's line for that call; {} is the name */
    unsigned leftover;  /* LEFT_* */
    bool visible;       /* the new copy has its name, complete, once the daemon is killed */
    const char *what;
};

#define DATA_UNNAMED "(deleted)"  /* strace -y shows an O_TMPFILE as "DIR/#INO (deleted)" */
#define DATA_NAMED "/files/.tmp-" /* the fallback: a hidden file in the directory */

static const struct step new_unnamed[] = {
    {"fsync", 1, DATA_UNNAMED, 0, false, "the data's fsync"},
    {"fsync", 2, "/.sockserv>)", 0, false, "the fsync of .sockserv once NAME's dir is made"},
    {"fsync", 3, "/.sockserv/{}/.tmp-", LEFT_META, false, "the record's fsync"},
    {"renameat2", 1, "\"1.json\", RENAME_NOREPLACE", LEFT_META, false, "the record's rename"},
    {"fsync", 4, "/.sockserv/{}>)", 0, false, "the fsync of .sockserv/NAME"},
    {"linkat", 1, "/files>, \"{}\", AT_SYMLINK_FOLLOW", 0, false, "the link that names the copy"},
    {"fsync", 5, "/files>)", 0, true, "the directory's fsync before STORED"},
};

static const struct step new_named[] = {
    {"fsync", 1, DATA_NAMED, LEFT_DIR, false, "the data's fsync"},
    {"fsync", 2, "/.sockserv>)", LEFT_DIR, false, "the fsync of .sockserv once NAME's dir is made"},
    {"fsync", 3, "/.sockserv/{}/.tmp-", LEFT_DIR | LEFT_META, false, "the record's fsync"},
    {"renameat2", 1, "\"1.json\", RENAME_NOREPLACE", LEFT_DIR | LEFT_META, false,
     "the record's rename"},
    {"fsync", 4, "/.sockserv/{}>)", LEFT_DIR, false, "the fsync of .sockserv/NAME"},
    {"renameat2", 2, "/files>, \"{}\", RENAME_NOREPLACE", LEFT_DIR, false,
     "the rename that names the copy"},
    {"fsync", 5, "/files>)", 0, true, "the directory's fsync before STORED"},
};

static const struct step existing_unnamed[] = {
    {"fsync", 1, DATA_UNNAMED, 0, false, "the data's fsync"},
    {"fsync", 2, "/.sockserv/{}/.tmp-", LEFT_META, false, "the record's fsync"},
    {"renameat2", 1, "\"2.json\", RENAME_NOREPLACE", LEFT_META, false, "the record's rename"},
    {"linkat", 1, "/.sockserv/{}>, \"1\", 0)", 0, false, "the link keeping the older copy"},
    {"fsync", 3, "/.sockserv/{}>)", 0, false, "the fsync of .sockserv/NAME"},
    {"linkat", 2, "/files>, \".tmp-", 0, false, "the link giving the copy a hidden name"},
    {"renameat", 1, "/files>, \"{}\")", LEFT_DIR, false, "the rename over the older copy"},
    {"fsync", 4, "/files>)", 0, true, "the directory's fsync before STORED"},
};

static const struct step existing_named[] = {
    {"fsync", 1, DATA_NAMED, LEFT_DIR, false, "the data's fsync"},
    {"fsync", 2, "/.sockserv/{}/.tmp-", LEFT_DIR | LEFT_META, false, "the record's fsync"},
    {"renameat2", 1, "\"2.json\", RENAME_NOREPLACE", LEFT_DIR | LEFT_META, false,
     "the record's rename"},
    {"linkat", 1, "/.sockserv/{}>, \"1\", 0)", LEFT_DIR, false, "the link keeping the older copy"},
    {"fsync", 3, "/.sockserv/{}>)", LEFT_DIR, false, "the fsync of .sockserv/NAME"},
    {"renameat", 1, "/files>, \"{}\")", LEFT_DIR, false, "the rename over the older copy"},
    {"fsync", 4, "/files>)", 0, true, "the directory's fsync before STORED"},
};

/* Under on_exists replace, the older copy is kept under a hidden name (.sockserv/NAME/.tmp-K) from
 * before the new one takes the name until the older is dropped: only an undo uses it, and the next
 * writer's cleanup removes it should the daemon die first. */
static const struct step replace_unnamed[] = {
    {"fsync", 1, DATA_UNNAMED, 0, false, "the data's fsync"},
    {"fsync", 2, "/.sockserv/{}/.tmp-", LEFT_META, false, "the record's fsync"},
    {"renameat2", 1, "\"2.json\", RENAME_NOREPLACE", LEFT_META, false, "the record's rename"},
    {"linkat", 1, "/files>, \"{}\", ", 0, false, "the link keeping the older copy"},
    {"fsync", 3, "/.sockserv/{}>)", LEFT_META, false, "the fsync of .sockserv/NAME"},
    {"linkat", 2, "/files>, \".tmp-", LEFT_META, false, "the link giving the copy a hidden name"},
    {"renameat", 1, "/files>, \"{}\")", LEFT_DIR | LEFT_META, false,
     "the rename over the older copy"},
    {"fsync", 4, "/files>)", LEFT_META, true, "the directory's fsync before STORED"},
    {"unlinkat", 2, "/.sockserv/{}>, \".tmp-", LEFT_META, true, "the drop of the older copy"},
    {"unlinkat", 3, "\"1.json\", 0)", 0, true, "the drop of the older copy's record"},
    {"fsync", 5, "/.sockserv/{}>)", 0, true, "the last fsync of .sockserv/NAME"},
};

static const struct step replace_named[] = {
    {"fsync", 1, DATA_NAMED, LEFT_DIR, false, "the data's fsync"},
    {"fsync", 2, "/.sockserv/{}/.tmp-", LEFT_DIR | LEFT_META, false, "the record's fsync"},
    {"renameat2", 1, "\"2.json\", RENAME_NOREPLACE", LEFT_DIR | LEFT_META, false,
     "the record's rename"},
    {"linkat", 1, "/files>, \"{}\", ", LEFT_DIR, false, "the link keeping the older copy"},
    {"fsync", 3, "/.sockserv/{}>)", LEFT_DIR | LEFT_META, false, "the fsync of .sockserv/NAME"},
    {"renameat", 1, "/files>, \"{}\")", LEFT_DIR | LEFT_META, false,
     "the rename over the older copy"},
    {"fsync", 4, "/files>)", LEFT_META, true, "the directory's fsync before STORED"},
    {"unlinkat", 2, "/.sockserv/{}>, \".tmp-", LEFT_META, true, "the drop of the older copy"},
    {"unlinkat", 3, "\"1.json\", 0)", 0, true, "the drop of the older copy's record"},
    {"fsync", 5, "/.sockserv/{}>)", 0, true, "the last fsync of .sockserv/NAME"},
};

/* Whether the store's directory takes O_TMPFILE, as the store tries first (then uploads are
 * unnamed files until they are linked in). */
static bool dir_takes_tmpfile(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Asserts the .tmp- entries a kill left: where the step says, and nowhere else. */
static void assert_leftovers(struct faults *w, const char *name, const struct step *s)
{
    char meta[IT_PATH_MAX + 96];
    bool in_dir, in_meta;

    snprintf(meta, sizeof(meta), "%s/.sockserv/%s", w->files, name);
    in_dir = has_tmp(w->files, false);
    in_meta = has_tmp(meta, false);
    if (in_dir != !!(s->leftover & LEFT_DIR) || in_meta != !!(s->leftover & LEFT_META))
        fail_msg("killed at %s: .tmp- entries in %s: %s, in %s: %s; want %s and %s", s->what,
                 w->files, in_dir ? "yes" : "no", meta, in_meta ? "yes" : "no",
                 s->leftover & LEFT_DIR ? "yes" : "no", s->leftover & LEFT_META ? "yes" : "no");
}

/* What an upload killed in its commit is for. */
enum scenario {
    NEW_NAME,     /* a name with no copy */
    OVER_VERSION, /* a name with a copy, on_exists version */
    OVER_REPLACE, /* a name with a copy, on_exists replace */
};

/*
 * One kill: the daemon (stopped) is started under strace to die at step s of an upload of name
 * (a name with a current copy when existing), then started again on the same state directory.
 */
static void kill_at(struct faults *w, const struct step *s, const char *name, bool existing)
{
    struct it_daemon *d = &w->f->d;
    char inject[128], log[IT_PATH_MAX], needle[256];
    struct it_resources base;
    struct copy c;
    pid_t pid;

    fprintf(stderr, "# %s: SIGKILL at %s (%s #%u)\n", name, s->what, s->syscall, s->when);
    if (existing) {
        start_plain(w);
        assert_int_equal(put_ok(w, backup_port(d), name, copy_new(w, DATA_LEN / 3)), 1);
        it_daemon_stop_clean(&w->f->d);
    }
    snprintf(inject, sizeof(inject), "inject=%s:signal=SIGKILL:when=%u", s->syscall, s->when);
    start_traced(w, inject, log);
    pid = d->pid;
    c = copy_new(w, DATA_LEN);
    put_expect_death(w, backup_port(d), name, &c, s->what);
    subst(needle, sizeof(needle), s->needle, name);
    assert_killed_in(log, pid, s->syscall, needle);
    it_assert_no_sanitizer_report(d);
    assert_leftovers(w, name, s);
    /* Complete under its name only once the last rename is done: then it is the current copy
     * (with its record), though no STORED came. */
    if (s->visible)
        expect_stored(w, name, c);
    else
        copy_free(&c);

    restart_and_verify(w, &base);
    /* The store goes on: the name takes a new copy. */
    (void)put_ok(w, backup_port(d), name, copy_new(w, DATA_LEN / 2));
    verify_store(w);
    assert_survived(w, &base);
    it_daemon_stop_clean(&w->f->d);
}

static void kill_at_each_step(void **state, enum scenario sc)
{
    static const struct {
        const struct step *unnamed, *named;
        size_t n_unnamed, n_named;
        const char *prefix;
    } tables[] = {
#define TABLES(u, n, prefix) {u, n, sizeof(u) / sizeof(u[0]), sizeof(n) / sizeof(n[0]), prefix}
        [NEW_NAME] = TABLES(new_unnamed, new_named, "new"),
        [OVER_VERSION] = TABLES(existing_unnamed, existing_named, "doc"),
        [OVER_REPLACE] = TABLES(replace_unnamed, replace_named, "rep"),
#undef TABLES
    };
    struct faults *w = faults_of(state);
    const struct step *steps = tables[sc].unnamed;
    size_t n = tables[sc].n_unnamed;

    require_strace(w);
    world_setup(w, sc == OVER_REPLACE);
    if (!dir_takes_tmpfile(w->files)) {
        fprintf(stderr, "# %s takes no O_TMPFILE: uploads are hidden files until named\n",
                w->files);
        steps = tables[sc].named;
        n = tables[sc].n_named;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t t0 = it_now_ms();
        char name[32];

        snprintf(name, sizeof(name), "%s-%zu", tables[sc].prefix, i + 1);
        kill_at(w, &steps[i], name, sc != NEW_NAME);
        fprintf(stderr, "#   %lld ms\n", (long long)(it_now_ms() - t0));
    }
}

static void
test_faults_daemon_killed_at_each_commit_step_of_new_name_restarts_consistent(void **state)
{
    kill_at_each_step(state, NEW_NAME);
}

static void
test_faults_daemon_killed_at_each_commit_step_over_older_copy_restarts_consistent(void **state)
{
    kill_at_each_step(state, OVER_VERSION);
}

static void
test_faults_daemon_killed_at_each_commit_step_replacing_older_copy_restarts_consistent(void **state)
{
    kill_at_each_step(state, OVER_REPLACE);
}

/* ---- fsync failing ---- */

/*
 * One daemon under strace failing the n-th fsync of every connection with errno_name: a new
 * name, then a new copy of it, are refused with ERR code and keep nothing; each connection goes
 * on, and the same upload sent again on it (past the failing call) is stored.
 */
static void fsync_fails_at(struct faults *w, const char *errno_name, const char *code,
                           const char *counter, unsigned n)
{
    static const char *const on_new[] = {NULL, "/.sockserv>)", "/.sockserv/{}/.tmp-",
                                         "/.sockserv/{}>)", "/files>)"};
    static const char *const on_existing[] = {NULL, "/.sockserv/{}/.tmp-", "/.sockserv/{}>)",
                                              "/files>)"};
    struct it_daemon *d = &w->f->d;
    const char *data = dir_takes_tmpfile(w->files) ? DATA_UNNAMED : DATA_NAMED;
    char inject[128], log[IT_PATH_MAX], name[32], line[LINE_CAP], needles[2][256];
    const char *nv[2] = {needles[0], needles[1]};
    size_t n_refused = 0;
    struct it_resources base;
    struct copy a, b;
    uint64_t count0;
    uint16_t port;
    int fa, fb;
    pid_t pid;

    assert_true(n >= 1 && n <= 5);
    fprintf(stderr, "# fsync #%u fails with %s\n", n, errno_name);
    snprintf(name, sizeof(name), "fresh-%s-%u", errno_name, n);
    snprintf(inject, sizeof(inject), "inject=fsync:error=%s:when=%u", errno_name, n);
    start_traced(w, inject, log);
    take_baseline(d, &base);
    pid = d->pid;
    port = backup_port(d);
    count0 = svc_metric(d, counter);

    /* A new name. */
    a = copy_new(w, DATA_LEN);
    fa = it_tcp_connect_ok(port);
    put_on(fa, name, &a, line);
    assert_err_line(line, code);
    subst(needles[n_refused++], sizeof(needles[0]), n == 1 ? data : on_new[n - 1], name);
    verify_store(w);
    put_on(fa, name, &a, line);
    assert_stored_line(line, name, 1, &a);
    expect_stored(w, name, a);
    verify_store(w);
    quit(fa);

    /* A new copy of it, on a connection of its own. The commit over an older copy makes only
     * four fsyncs: a fifth fails none. */
    b = copy_new(w, DATA_LEN / 2);
    fb = it_tcp_connect_ok(port);
    put_on(fb, name, &b, line);
    if (n <= 4) {
        assert_err_line(line, code);
        subst(needles[n_refused++], sizeof(needles[0]), n == 1 ? data : on_existing[n - 1], name);
        verify_store(w);
        put_on(fb, name, &b, line);
    }
    assert_stored_line(line, name, 2, &b);
    expect_stored(w, name, b);
    verify_store(w);
    quit(fb);

    assert_int_equal(svc_metric(d, counter) - count0, n_refused);
    assert_survived(w, &base);
    it_daemon_stop_clean(&w->f->d);
    assert_injected(log, pid, nv, n_refused);
}

static void test_faults_fsync_eio_at_each_step_refused_as_io_keeps_nothing(void **state)
{
    struct faults *w = faults_of(state);

    require_strace(w);
    world_setup(w, false);
    for (unsigned n = 1; n <= 5; n++)
        fsync_fails_at(w, "EIO", "io", "uploads_failed_io", n);
}

/* Under on_exists replace, a failed fsync after the older copy got its hidden second name (3),
 * or after the new copy took the name (4): the older copy is back under its name, alone. */
static void test_faults_fsync_eio_replacing_older_copy_restores_it(void **state)
{
    struct faults *w = faults_of(state);

    require_strace(w);
    world_setup(w, true);
    fsync_fails_at(w, "EIO", "io", "uploads_failed_io", 3);
    fsync_fails_at(w, "EIO", "io", "uploads_failed_io", 4);
}

static void test_faults_fsync_enospc_refused_as_disk_full_keeps_nothing(void **state)
{
    struct faults *w = faults_of(state);

    require_strace(w);
    world_setup(w, false);
    fsync_fails_at(w, "ENOSPC", "disk-full", "uploads_rejected_disk_full", 1);
    fsync_fails_at(w, "ENOSPC", "disk-full", "uploads_rejected_disk_full", 4);
}

/* ---- clients that reset their connection ---- */

struct metric_above {
    const struct it_daemon *d;
    const char *id, *name;
    uint64_t floor;
};

static bool metric_above(void *arg)
{
    struct metric_above *m = arg;

    return it_metric(m->d, m->id, m->name) > m->floor;
}

/* An upload of c under name, reset by its client once the daemon has read part of it. */
static void reset_mid_upload(struct faults *w, const char *name, const struct copy *c)
{
    const struct it_daemon *d = &w->f->d;
    uint64_t want_in;
    uint64_t cut = svc_metric(d, "uploads_cut");
    size_t sent;
    int fd;

    want_in = it_metric(d, LISTENER, "bytes_in");
    fd = put_partial(backup_port(d), name, c, PART_LEN, &sent);
    want_in += sent;
    if (!it_metric_reaches(d, LISTENER, "bytes_in", want_in, IT_WAIT_MS))
        fail_msg("the daemon did not read the first %d bytes of %s", PART_LEN, name);
    reset_close(fd);
    it_assert_metric_eventually(d, LISTENER, SVC_PREFIX "uploads_cut", cut + 1, IT_WAIT_MS);
    it_assert_metric_eventually(d, LISTENER, "connections_active", 0, IT_WAIT_MS);
    verify_store(w);
}

static void test_faults_client_reset_mid_upload_keeps_nothing(void **state)
{
    struct faults *w = faults_of(state);
    struct it_resources base;
    struct copy a, b;

    world_setup(w, false);
    start_plain(w);
    take_baseline(&w->f->d, &base);
    a = copy_new(w, BIG_LEN);
    b = copy_new(w, BIG_LEN);
    reset_mid_upload(w, "reset.bin", &a);
    reset_mid_upload(w, "keep.bin", &b);
    assert_int_equal(svc_metric(&w->f->d, "uploads_stored"), 0);
    /* The name the reset upload had is free: its first copy is version 1. */
    assert_int_equal(put_ok(w, backup_port(&w->f->d), "reset.bin", a), 1);
    copy_free(&b);
    verify_store(w);
    assert_survived(w, &base);
    it_daemon_stop_clean(&w->f->d);
}

/*
 * A client that sends without reading until the echo stops reading (it is blocked sending its
 * echo back), then resets: the daemon sends on a reset connection.
 */
static void reset_mid_echo(const struct it_daemon *d, const char *id, uint16_t port)
{
    struct metric_above out = {.d = d, .id = id, .name = "bytes_out"};
    int64_t deadline = it_now_ms() + IT_WAIT_MS;
    int small = 4096, fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);
    static uint8_t chunk[64 * 1024];
    size_t sent = 0;

    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    memset(chunk, 'e', sizeof(chunk));
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            fail_msg("%s: send after %zu bytes: %s", id, sent, strerror(errno));
        /* No room for 200 ms: both directions are full, the server is stuck sending its echo
         * to us. (Not a synchronisation: were it only slow, the reset would still come
         * mid-stream, after some of the echo.) */
        if (poll(&pfd, 1, 200) == 0)
            break;
        if (it_now_ms() > deadline)
            fail_msg("%s: the echo never stopped reading (%zu bytes sent)", id, sent);
    }
    if (!it_wait_until(IT_WAIT_MS, metric_above, &out))
        fail_msg("%s: nothing was echoed", id);
    reset_close(fd);
}

static void test_faults_client_reset_mid_echo_every_model_daemon_survives(void **state)
{
    static const char *const models[] = {"sequential", "thread",  "pool",
                                         "event",      "process", "uring"};
    enum { N_MODELS = sizeof(models) / sizeof(models[0]) };
    struct faults *w = faults_of(state);
    struct it_daemon *d = &w->f->d;
    struct it_resources base;
    uint16_t ports[N_MODELS];
    char body[256];

    start_plain(w);
    for (size_t i = 0; i < N_MODELS; i++) {
        snprintf(body, sizeof(body),
                 "{\"id\":\"e-%s\",\"service\":\"echo\",\"port\":0,\"model\":\"%s\"}", models[i],
                 models[i]);
        json_decref(it_listener_create(d, body));
    }
    take_baseline(d, &base);
    for (size_t i = 0; i < N_MODELS; i++) {
        char id[32];
        json_t *j;

        snprintf(id, sizeof(id), "e-%s", models[i]);
        j = it_listener_get(d, id);
        ports[i] = it_bound_port(j);
        json_decref(j);
        fprintf(stderr, "# %s: reset mid-stream\n", id);
        reset_mid_echo(d, id, ports[i]);
        it_assert_metric_eventually(d, id, "connections_active", 0, IT_WAIT_MS);
        it_assert_daemon_alive(d);
        it_assert_tcp_echo("127.0.0.1", ports[i], "after the reset", 15);
    }
    assert_survived(w, &base);
    it_daemon_stop_clean(&w->f->d);
}

/* ---- a port in use ---- */

static void test_faults_port_in_use_refused_409_changes_nothing(void **state)
{
    struct faults *w = faults_of(state);
    struct it_daemon *d = &w->f->d;
    char body[IT_PATH_MAX + 256], b9[IT_PATH_MAX], *file0, *file1;
    struct it_resources base;
    json_t *before, *after, *keep;
    struct it_http r;
    uint16_t taken, port;
    size_t len0, len1;
    int fd;

    start_plain(w);
    json_decref(it_listener_create(d, "{\"id\":\"keep\",\"service\":\"echo\",\"port\":0}"));
    take_baseline(d, &base);
    keep = it_listener_get(d, "keep");
    port = it_bound_port(keep);
    json_decref(keep);
    fd = it_bind(SOCK_STREAM, "::", 0, &taken);
    assert_true(fd >= 0);
    before = configs_now(d);
    file0 = it_file_read(d->state_file, &len0);
    assert_non_null(file0);

    /* Created by POST, by PUT, as a backup listener (whose directory is not made), moved there
     * by PATCH: each a 409 that names the reason. */
    snprintf(body, sizeof(body), "{\"id\":\"e2\",\"service\":\"echo\",\"port\":%u}", taken);
    it_http(d, "POST", "/api/v1/listeners", body, &r);
    it_assert_problem(&r, 409, NULL);
    assert_true(strcasestr(it_json_str(r.json, "detail"), "in use") != NULL);
    it_http_fini(&r);
    snprintf(body, sizeof(body), "{\"service\":\"echo\",\"port\":%u}", taken);
    it_http(d, "PUT", "/api/v1/listeners/e3", body, &r);
    it_assert_problem(&r, 409, NULL);
    it_http_fini(&r);
    snprintf(b9, sizeof(b9), "%s/b9", w->f->dir);
    snprintf(body, sizeof(body),
             "{\"id\":\"b9\",\"service\":\"backup\",\"port\":%u,\"options\":{\"directory\":"
             "\"%s\"}}",
             taken, b9);
    it_http(d, "POST", "/api/v1/listeners", body, &r);
    it_assert_problem(&r, 409, NULL);
    it_http_fini(&r);
    snprintf(body, sizeof(body), "{\"port\":%u}", taken);
    it_http(d, "PATCH", "/api/v1/listeners/keep", body, &r);
    it_assert_problem(&r, 409, NULL);
    it_http_fini(&r);

    /* Nothing changed: the listener set, the state file byte for byte, no directory made; the
     * listener that was to move serves where it was. */
    after = configs_now(d);
    assert_same_json(before, after, "the listener set after the refusals");
    json_decref(before);
    json_decref(after);
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/e2", NULL, 404));
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/e3", NULL, 404));
    json_decref(it_http_expect(d, "GET", "/api/v1/listeners/b9", NULL, 404));
    file1 = it_file_read(d->state_file, &len1);
    assert_non_null(file1);
    if (len1 != len0 || memcmp(file1, file0, len0) != 0)
        fail_msg("the state file changed:\n%s\nwas:\n%s", file1, file0);
    free(file0);
    free(file1);
    if (access(b9, F_OK) == 0)
        fail_msg("the refused backup listener left its directory %s", b9);
    assert_string_equal(state_of(d, "keep"), "running");
    it_assert_tcp_echo("::1", port, "still here", 10);
    close(fd);
    assert_survived(w, &base);
    it_daemon_stop_clean(&w->f->d);
}

/* ---- a slow disk does not stall the API ---- */

struct slow_change {
    const struct it_daemon *d;
    long status;
    int64_t ms;
};

static void *slow_change_main(void *arg)
{
    struct slow_change *c = arg;
    struct it_http r;
    int64_t t0 = it_now_ms();

    if (it_http_raw(c->d, "POST", "/api/v1/listeners",
                    "{\"id\":\"slow\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}",
                    strlen("{\"id\":\"slow\",\"service\":\"echo\",\"address\":\"127.0.0.1\","
                           "\"port\":0}"),
                    "application/json", &r) == 0) {
        c->status = r.status;
        it_http_fini(&r);
    }
    c->ms = it_now_ms() - t0;
    return NULL;
}

/* Whether the state file is being written: its temporary file is there (the fsync is slow). */
static bool state_being_written(void *arg)
{
    const struct it_daemon *d = arg;
    DIR *dir = opendir(d->state_dir);
    struct dirent *e;
    bool found = false;

    if (!dir)
        return false;
    while (!found && (e = readdir(dir)))
        found = strncmp(e->d_name, "listeners.json.tmp.", 19) == 0;
    closedir(dir);
    return found;
}

/*
 * A change writes the state to disk and fsyncs it; with every fsync made 2 s slow (strace), the
 * change takes seconds, and meanwhile health, reads and the event stream's routes answer at once:
 * the change runs beside libmicrohttpd's thread, not on it.
 */
static void test_faults_fsync_slow_change_leaves_the_api_answering(void **state)
{
    struct faults *w = faults_of(state);
    struct slow_change c = {.d = &w->f->d};
    char log[IT_PATH_MAX];
    pthread_t t;

    require_strace(w);
    start_traced(w, "inject=fsync:delay_enter=2000000", log);
    assert_int_equal(pthread_create(&t, NULL, slow_change_main, &c), 0);
    if (!it_wait_until(IT_WAIT_MS, state_being_written, &w->f->d)) {
        pthread_join(t, NULL);
        fail_msg("the change never wrote the state file (status %ld after %lld ms)", c.status,
                 (long long)c.ms);
    }
    for (int i = 0; i < 3; i++) {
        int64_t t0 = it_now_ms(), ms;
        json_t *j = it_http_expect(&w->f->d, "GET", i == 2 ? "/api/v1/listeners" : "/api/v1/health",
                                   NULL, 200);

        ms = it_now_ms() - t0;
        json_decref(j);
        if (ms > 1000) {
            pthread_join(t, NULL);
            fail_msg("a GET took %lld ms while a change waited on the disk", (long long)ms);
        }
    }
    assert_true(state_being_written(&w->f->d)); /* the change was still under way */
    pthread_join(t, NULL);
    assert_int_equal(c.status, 201);
    assert_true(c.ms >= 2000);
    it_daemon_stop_clean(&w->f->d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, faults_setup, faults_teardown)
        T(test_faults_daemon_killed_mid_upload_keeps_stored_copies_only),
        T(test_faults_daemon_killed_at_each_commit_step_of_new_name_restarts_consistent),
        T(test_faults_daemon_killed_at_each_commit_step_over_older_copy_restarts_consistent),
        T(test_faults_daemon_killed_at_each_commit_step_replacing_older_copy_restarts_consistent),
        T(test_faults_fsync_eio_at_each_step_refused_as_io_keeps_nothing),
        T(test_faults_fsync_eio_replacing_older_copy_restores_it),
        T(test_faults_fsync_enospc_refused_as_disk_full_keeps_nothing),
        T(test_faults_client_reset_mid_upload_keeps_nothing),
        T(test_faults_client_reset_mid_echo_every_model_daemon_survives),
        T(test_faults_port_in_use_refused_409_changes_nothing),
        T(test_faults_fsync_slow_change_leaves_the_api_answering),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
