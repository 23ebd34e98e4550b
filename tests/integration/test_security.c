/*
 * The control API's security model as a user meets it over real HTTP (docs/security.md): the
 * bearer token, the Host check against DNS rebinding, cross-site requests, the JSON media type
 * of mutations, the refusal of an open address without a token, the Unix socket, the systemd
 * notifications, and a slowloris against the API.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/server.h"
#include "harness.h"

#define TOKEN "4f1c2b9e0d7a4c3f8e6b5a291d0c7e3a"

/* ---- HTTP with any header, over TCP or a Unix socket ---- */

struct target {
    const struct it_daemon *d; /* TCP: the daemon's address */
    const char *unix_path;     /* not NULL: this Unix socket, as http://localhost */
};

static void target_tcp(struct target *t, const struct it_daemon *d)
{
    t->d = d;
    t->unix_path = NULL;
}

/*
 * Sends method path with body (NULL: none, else no Content-Type unless headers name one) and
 * headers ("Name: value", NULL-terminated, may be NULL) within timeout_ms. Returns 0 with *r
 * (release with it_http_fini()), or -EIO when no answer came.
 */
static int request(const struct target *t, const char *method, const char *path, const char *body,
                   const char *const *headers, int timeout_ms, struct it_http *r)
{
    char url[512];

    snprintf(url, sizeof(url), "http://localhost%s", path);
    return it_http_request(t->unix_path ? NULL : t->d,
                           &(struct it_req){.method = method,
                                            .path = path,
                                            .url = t->unix_path ? url : NULL,
                                            .unix_socket = t->unix_path,
                                            .body = body,
                                            .body_len = body ? strlen(body) : 0,
                                            .headers = headers,
                                            .timeout_ms = timeout_ms},
                           r);
}

/* request() that asserts an answer came and had status. */
static void expect(const struct target *t, const char *method, const char *path, const char *body,
                   const char *const *headers, long status, struct it_http *r)
{
    assert_int_equal(request(t, method, path, body, headers, 10000, r), 0);
    if (r->status != status)
        fprintf(stderr, "# %s %s: want %ld, got %ld: %s\n", method, path, status, r->status,
                r->body);
    assert_int_equal(r->status, status);
}

/* The ids of the listeners (GET /api/v1/listeners with headers), comma-separated. */
static void listener_ids(const struct target *t, const char *const *headers, char *buf, size_t len)
{
    struct it_http r;
    json_t *v;
    size_t i;

    expect(t, "GET", "/api/v1/listeners", NULL, headers, 200, &r);
    buf[0] = '\0';
    json_array_foreach(json_object_get(r.json, "listeners"), i, v)
    {
        size_t used = strlen(buf);

        snprintf(buf + used, len - used, "%s%s", used ? "," : "",
                 json_string_value(json_object_get(v, "id")));
    }
    it_http_fini(&r);
}

/* Writes text to DIR/name with mode; returns the path (static buffer per call site). */
static void write_file(const char *dir, const char *name, const char *text, mode_t mode, char *path,
                       size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    assert_int_equal(it_file_write(path, text, strlen(text)), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static struct it_fixture *fixture_of(void **state)
{
    return *state;
}

/* Starts f's daemon with extra arguments. */
static void start(struct it_fixture *f, const char *const *extra)
{
    it_daemon_start_ok(&f->d, &(struct it_daemon_opts){.dir = f->dir, .extra_args = extra});
}

/* Stops the daemon and asserts a clean exit and a log free of sanitizer reports; returns the
 * log (free it). */
static char *stop_clean(struct it_daemon *d)
{
    it_daemon_stop_clean(d);
    return it_daemon_stderr(d);
}

/* ---- the token ---- */

static void test_security_token_missing_or_wrong_is_401_right_one_passes(void **state)
{
    struct it_fixture *f = fixture_of(state);
    static const char *const auth[] = {"Authorization: Bearer " TOKEN, NULL};
    static const char *const auth_json[] = {"Authorization: Bearer " TOKEN,
                                            "Content-Type: application/json", NULL};
    static const char *const wrong[] = {"Authorization: Bearer not-the-token-at-all", NULL};
    static const char *const basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    static const char *const json_only[] = {"Content-Type: application/json", NULL};
    char path[IT_PATH_MAX], ids[256];
    struct target t;
    struct it_http r;
    char *log;

    write_file(f->dir, "token", TOKEN "\n", 0600, path, sizeof(path));
    start(f, (const char *const[]){"--token-file", path, NULL});
    target_tcp(&t, &f->d);

    /* Without a token: 401 with the challenge, on known and unknown routes alike. */
    expect(&t, "GET", "/api/v1/listeners", NULL, NULL, 401, &r);
    it_assert_problem(&r, 401, NULL);
    it_assert_header(&r, "WWW-Authenticate", "Bearer realm=\"sockserv\"");
    it_http_fini(&r);
    expect(&t, "GET", "/api/v1/no-such-route", NULL, NULL, 401, &r);
    it_http_fini(&r);
    expect(&t, "GET", "/metrics", NULL, NULL, 401, &r);
    it_http_fini(&r);
    expect(&t, "GET", "/api/v1/events", NULL, NULL, 401, &r);
    it_http_fini(&r);
    expect(&t, "GET", "/api/v1/listeners", NULL, basic, 401, &r);
    it_assert_header(&r, "WWW-Authenticate", "Bearer realm=\"sockserv\"");
    it_http_fini(&r);

    /* A wrong token: 401 saying so, and the token sent is not repeated. */
    expect(&t, "GET", "/api/v1/listeners", NULL, wrong, 401, &r);
    it_assert_problem(&r, 401, NULL);
    it_assert_header(&r, "WWW-Authenticate", "Bearer realm=\"sockserv\", error=\"invalid_token\"");
    assert_null(strstr(r.body, "not-the-token"));
    assert_null(strstr(r.body, TOKEN));
    it_http_fini(&r);

    /* A mutation without the token changes nothing. */
    expect(&t, "POST", "/api/v1/listeners",
           "{\"id\":\"sneaky\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}",
           json_only, 401, &r);
    it_http_fini(&r);
    listener_ids(&t, auth, ids, sizeof(ids));
    assert_string_equal(ids, "");

    /* The right token: everything works. */
    expect(&t, "POST", "/api/v1/listeners",
           "{\"id\":\"e1\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}", auth_json,
           201, &r);
    it_http_fini(&r);
    expect(&t, "POST", "/api/v1/listeners/e1/stop", NULL, auth_json, 200, &r);
    it_http_fini(&r);
    listener_ids(&t, auth, ids, sizeof(ids));
    assert_string_equal(ids, "e1");
    expect(&t, "GET", "/metrics", NULL, auth, 200, &r);
    it_http_fini(&r);

    /* Health and the dashboard's files need none (they hold no secret). */
    expect(&t, "GET", "/api/v1/health", NULL, NULL, 200, &r);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "ok");
    it_http_fini(&r);
    expect(&t, "GET", "/api/v1/health", NULL, wrong, 200, &r);
    it_http_fini(&r);
    expect(&t, "GET", "/", NULL, NULL, 200, &r);
    assert_non_null(strstr(r.body, "<title>sockserv dashboard</title>"));
    it_http_fini(&r);
    expect(&t, "GET", "/app.js", NULL, NULL, 200, &r);
    it_http_fini(&r);
    expect(&t, "GET", "/openapi.yaml", NULL, NULL, 200, &r);
    it_http_fini(&r);

    /* The log never holds the token, and says nothing of its file's mode (0600). */
    log = stop_clean(&f->d);
    assert_null(strstr(log, TOKEN));
    assert_null(strstr(log, "can be read by others"));
    free(log);
}

static void test_security_token_file_problems_stop_the_start(void **state)
{
    struct it_fixture *f = fixture_of(state);
    char empty[IT_PATH_MAX], spaced[IT_PATH_MAX], open_file[IT_PATH_MAX], missing[IT_PATH_MAX];
    struct it_proc p;
    char *log;

    write_file(f->dir, "empty", "\n", 0600, empty, sizeof(empty));
    write_file(f->dir, "spaced", "two words\n", 0600, spaced, sizeof(spaced));
    snprintf(missing, sizeof(missing), "%s/missing", f->dir);
    {
        const char *const argv[] = {it_bin(),      "daemon", "--api",         "127.0.0.1:0",
                                    "--state-dir", f->dir,   "--no-defaults", "--token-file",
                                    empty,         NULL};

        it_run(argv, NULL, 0, IT_EXIT_TIMEOUT_MS, &p);
        assert_int_equal(it_proc_exit_code(&p), 2);
        assert_non_null(strstr(p.err, "--token-file"));
        assert_non_null(strstr(p.err, "empty"));
        it_proc_fini(&p);
    }
    {
        const char *const argv[] = {it_bin(),      "daemon", "--api",         "127.0.0.1:0",
                                    "--state-dir", f->dir,   "--no-defaults", "--token-file",
                                    missing,       NULL};

        it_run(argv, NULL, 0, IT_EXIT_TIMEOUT_MS, &p);
        assert_int_equal(it_proc_exit_code(&p), 2);
        assert_non_null(strstr(p.err, missing));
        it_proc_fini(&p);
    }
    {
        const char *const argv[] = {it_bin(),      "daemon", "--api",         "127.0.0.1:0",
                                    "--state-dir", f->dir,   "--no-defaults", "--token-file",
                                    spaced,        NULL};

        it_run(argv, NULL, 0, IT_EXIT_TIMEOUT_MS, &p);
        assert_int_equal(it_proc_exit_code(&p), 2);
        assert_non_null(strstr(p.err, "visible ASCII"));
        assert_null(strstr(p.err, "two words"));
        it_proc_fini(&p);
    }

    /* A token others may read: the daemon runs, and its log says so. */
    write_file(f->dir, "open", TOKEN "\r\n", 0644, open_file, sizeof(open_file));
    start(f, (const char *const[]){"--token-file", open_file, NULL});
    log = stop_clean(&f->d);
    assert_non_null(strstr(log, "can be read by others than its owner (mode 0644)"));
    assert_null(strstr(log, TOKEN));
    free(log);
}

/* ---- an address others can reach ---- */

static void test_security_open_address_without_token_is_refused_before_binding(void **state)
{
    struct it_fixture *f = fixture_of(state);
    static const char *const addrs[] = {"0.0.0.0:0", "[::]:0", "192.0.2.1:8400"};
    char never[IT_PATH_MAX];
    struct stat st;

    /* The state directory it would create is never made: it stops before doing anything. */
    snprintf(never, sizeof(never), "%s/never", f->dir);
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        const char *const argv[] = {it_bin(),      "daemon", "--api", addrs[i],
                                    "--state-dir", never,    NULL};
        struct it_proc p;

        it_run(argv, NULL, 0, IT_EXIT_TIMEOUT_MS, &p);
        fprintf(stderr, "# --api %s: %s: %s", addrs[i], it_status_str(p.status), p.err);
        assert_int_equal(it_proc_exit_code(&p), 2);
        assert_non_null(strstr(p.err, "--token-file"));
        assert_non_null(strstr(p.err, "not a loopback address"));
        it_proc_fini(&p);
        assert_int_equal(stat(never, &st), -1);
        assert_int_equal(errno, ENOENT);
    }
}

/* ---- DNS rebinding: the Host ---- */

static void test_security_foreign_host_is_403_even_on_get(void **state)
{
    struct it_fixture *f = fixture_of(state);
    char host[64], ids[64];
    struct target t;
    struct it_http r;

    start(f, (const char *const[]){"--allow-host", "ctl.example.org", NULL});
    target_tcp(&t, &f->d);
    json_decref(it_listener_create(
        &f->d, "{\"id\":\"e1\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}"));

    /* A page whose name was re-pointed at 127.0.0.1 sends its own name. */
    snprintf(host, sizeof(host), "Host: rebind.example:%u", f->d.api_port);
    expect(&t, "GET", "/api/v1/listeners", NULL, (const char *const[]){host, NULL}, 403, &r);
    it_assert_problem(&r, 403, NULL);
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "detail")), "rebind.example"));
    assert_null(strstr(r.body, "e1"));
    it_http_fini(&r);
    expect(&t, "GET", "/api/v1/health", NULL, (const char *const[]){host, NULL}, 403, &r);
    it_http_fini(&r);
    expect(&t, "GET", "/", NULL, (const char *const[]){host, NULL}, 403, &r);
    it_http_fini(&r);
    expect(&t, "DELETE", "/api/v1/listeners/e1", NULL, (const char *const[]){host, NULL}, 403, &r);
    it_http_fini(&r);
    /* The right address on another port is another server. */
    snprintf(host, sizeof(host), "Host: 127.0.0.1:%u", f->d.api_port + 1u);
    expect(&t, "GET", "/api/v1/listeners", NULL, (const char *const[]){host, NULL}, 403, &r);
    it_http_fini(&r);

    /* Its own address, localhost, and the name it was given pass. */
    snprintf(host, sizeof(host), "Host: localhost:%u", f->d.api_port);
    expect(&t, "GET", "/api/v1/listeners", NULL, (const char *const[]){host, NULL}, 200, &r);
    it_http_fini(&r);
    expect(&t, "GET", "/api/v1/listeners", NULL,
           (const char *const[]){"Host: CTL.example.org", NULL}, 200, &r);
    it_http_fini(&r);
    listener_ids(&t, NULL, ids, sizeof(ids));
    assert_string_equal(ids, "e1");
    free(stop_clean(&f->d));
}

/* ---- cross-site requests ---- */

static void test_security_cross_site_mutation_is_403_and_changes_nothing(void **state)
{
    struct it_fixture *f = fixture_of(state);
    char own[96], before_ids[64], after_ids[64];
    char *before, *after;
    uint16_t port;
    struct target t;
    struct it_http r;
    static const char *const foreign[][3] = {
        {"Origin: http://evil.example", "Content-Type: application/json", NULL},
        {"Origin: null", "Content-Type: application/json", NULL},
        {"Sec-Fetch-Site: cross-site", "Content-Type: application/json", NULL},
        /* Another port of localhost: the same site, not the same origin. */
        {"Sec-Fetch-Site: same-site", "Content-Type: application/json", NULL},
        {"Origin: http://127.0.0.1:1", "Content-Type: application/json", NULL},
    };
    static const struct {
        const char *method, *path, *body;
    } mutations[] = {
        {"POST", "/api/v1/listeners",
         "{\"id\":\"evil\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}"},
        {"POST", "/api/v1/listeners/keep/stop", NULL},
        {"PUT", "/api/v1/listeners/keep",
         "{\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0,\"enabled\":false}"},
        {"PATCH", "/api/v1/listeners/keep", "{\"enabled\":false}"},
        {"DELETE", "/api/v1/listeners/keep", NULL},
    };

    start(f, NULL);
    target_tcp(&t, &f->d);
    port = it_listener_create_port(
        &f->d, "{\"id\":\"keep\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}");
    listener_ids(&t, NULL, before_ids, sizeof(before_ids));
    before = it_file_read(f->d.state_file, NULL);
    assert_non_null(before);

    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
        for (size_t m = 0; m < sizeof(mutations) / sizeof(mutations[0]); m++) {
            fprintf(stderr, "# %s %s with %s\n", mutations[m].method, mutations[m].path,
                    foreign[i][0]);
            expect(&t, mutations[m].method, mutations[m].path, mutations[m].body, foreign[i], 403,
                   &r);
            it_assert_problem(&r, 403, NULL);
            it_http_fini(&r);
        }
    }
    /* Nothing changed: the same set, the same state file, the listener still serving. */
    listener_ids(&t, NULL, after_ids, sizeof(after_ids));
    assert_string_equal(before_ids, after_ids);
    after = it_file_read(f->d.state_file, NULL);
    assert_non_null(after);
    assert_string_equal(before, after);
    it_assert_tcp_echo("127.0.0.1", port, "still here", 10);
    free(before);
    free(after);

    /* The dashboard's own requests (its origin, same-origin) pass. */
    snprintf(own, sizeof(own), "Origin: http://127.0.0.1:%u", f->d.api_port);
    expect(&t, "POST", "/api/v1/listeners/keep/stop", NULL,
           (const char *const[]){own, "Sec-Fetch-Site: same-origin",
                                 "Content-Type: application/json", NULL},
           200, &r);
    it_http_fini(&r);
    /* A link followed from another site still opens the dashboard; a frame does not. */
    expect(&t, "GET", "/", NULL,
           (const char *const[]){"Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate",
                                 "Sec-Fetch-Dest: document", NULL},
           200, &r);
    it_http_fini(&r);
    expect(&t, "GET", "/", NULL,
           (const char *const[]){"Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate",
                                 "Sec-Fetch-Dest: iframe", NULL},
           403, &r);
    it_http_fini(&r);
    free(stop_clean(&f->d));
}

static void test_security_mutation_without_json_type_is_415(void **state)
{
    struct it_fixture *f = fixture_of(state);
    static const char *const types[] = {"Content-Type: text/plain",
                                        "Content-Type: application/x-www-form-urlencoded",
                                        "Content-Type: multipart/form-data; boundary=x", NULL};
    struct target t;
    struct it_http r;
    json_t *l;

    start(f, NULL);
    target_tcp(&t, &f->d);
    json_decref(it_listener_create(
        &f->d, "{\"id\":\"keep\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}"));
    /* What an HTML form or a "simple" cross-origin fetch can send is refused. */
    for (size_t i = 0; types[i]; i++) {
        expect(&t, "POST", "/api/v1/listeners",
               "{\"id\":\"x\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}",
               (const char *const[]){types[i], NULL}, 415, &r);
        it_assert_problem(&r, 415, NULL);
        it_http_fini(&r);
        expect(&t, "POST", "/api/v1/listeners/keep/stop", NULL,
               (const char *const[]){types[i], NULL}, 415, &r);
        it_http_fini(&r);
    }
    /* No Content-Type at all, on a POST without a body. */
    expect(&t, "POST", "/api/v1/listeners/keep/stop", NULL, NULL, 415, &r);
    assert_non_null(
        strstr(json_string_value(json_object_get(r.json, "detail")), "application/json"));
    it_http_fini(&r);
    l = it_listener_get(&f->d, "keep");
    assert_string_equal(it_json_str(l, "status.state"), "running");
    json_decref(l);
    /* With the type (a charset too), the same request works. */
    expect(&t, "POST", "/api/v1/listeners/keep/stop", NULL,
           (const char *const[]){"Content-Type: application/json; charset=utf-8", NULL}, 200, &r);
    assert_string_equal(it_json_str(r.json, "status.state"), "stopped");
    it_http_fini(&r);
    /* DELETE needs none. */
    expect(&t, "DELETE", "/api/v1/listeners/keep", NULL, NULL, 204, &r);
    it_http_fini(&r);
    free(stop_clean(&f->d));
}

/* ---- the Unix socket ---- */

/*
 * Starts `sockserv daemon --api unix:PATH [extra]` as d and waits for its ready line. Returns 0
 * with the line in ready, or -ECHILD when it exited first (d->status).
 */
static int start_unix(struct it_daemon *d, const char *dir, const char *path,
                      const char *const *extra, char *ready, size_t len)
{
    static unsigned seq;
    char api[IT_PATH_MAX + 8];
    const char *argv[16];
    int n = 0, pipefd[2], errfd;
    int64_t deadline;
    size_t got = 0;
    pid_t pid;

    memset(d, 0, sizeof(*d));
    snprintf(d->state_dir, sizeof(d->state_dir), "%s/state", dir);
    snprintf(d->stderr_path, sizeof(d->stderr_path), "%s/unix-daemon-%u.log", dir, ++seq);
    snprintf(api, sizeof(api), "unix:%s", path);
    argv[n++] = it_bin();
    argv[n++] = "daemon";
    argv[n++] = "--api";
    argv[n++] = api;
    argv[n++] = "--state-dir";
    argv[n++] = d->state_dir;
    argv[n++] = "--no-defaults";
    argv[n++] = "--ready-fd";
    argv[n++] = "3";
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    errfd = open(d->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(errfd >= 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        sigset_t none;

        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(errfd, 1) < 0 || dup2(errfd, 2) < 0 ||
            dup2(pipefd[1], 3) < 0)
            _exit(127);
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        (void)close_range(4, ~0u, 0);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    close(errfd);
    d->pid = pid;
    deadline = it_now_ms() + IT_READY_TIMEOUT_MS;
    while (got + 1 < len && !memchr(ready, '\n', got)) {
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        ssize_t r;

        if (poll(&pfd, 1, (int)(deadline - it_now_ms())) <= 0)
            break;
        r = read(pipefd[0], ready + got, len - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(pipefd[0]);
    ready[got] = '\0';
    if (!memchr(ready, '\n', got)) {
        int status;

        if (it_daemon_wait_exit(d, IT_EXIT_TIMEOUT_MS, &status) == 0)
            return -ECHILD;
        it_daemon_kill(d);
        return -ETIMEDOUT;
    }
    ready[strcspn(ready, "\n")] = '\0';
    return 0;
}

/* Whether fd reads an HTTP answer with status 200 within timeout_ms. */
static bool reads_200(int fd, int timeout_ms)
{
    char buf[1024];

    return it_http_read_head(fd, buf, sizeof(buf), timeout_ms) == 200;
}

static void test_security_unix_socket_mode_any_host_no_per_ip_limit_removed_at_exit(void **state)
{
    struct it_fixture *f = fixture_of(state);
    /* More connections at once than the per-IP limit of TCP. */
    enum { N = API_SERVER_PER_IP_LIMIT + 16 };
    static const char req[] = "GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[IT_PATH_MAX], ready[IT_PATH_MAX + 16], want[IT_PATH_MAX + 16];
    struct it_daemon d2;
    struct it_proc p;
    struct target t = {0};
    struct stat st;
    struct it_http r;
    int fds[N];

    snprintf(path, sizeof(path), "%s/api.sock", f->dir);
    assert_int_equal(start_unix(&f->d, f->dir, path,
                                (const char *const[]){"--api-mode", "0660", NULL}, ready,
                                sizeof(ready)),
                     0);
    snprintf(want, sizeof(want), "unix:%s", path);
    assert_string_equal(ready, want);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);

    t.unix_path = path;
    expect(&t, "GET", "/api/v1/health", NULL, NULL, 200, &r);
    it_http_fini(&r);
    /* Any Host: browsers cannot reach a Unix socket. */
    expect(&t, "POST", "/api/v1/listeners",
           "{\"id\":\"u1\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}",
           (const char *const[]){"Host: whatever.example", "Content-Type: application/json", NULL},
           201, &r);
    it_http_fini(&r);
    /* But not a page of another site through a proxy. */
    expect(&t, "DELETE", "/api/v1/listeners/u1", NULL,
           (const char *const[]){"Origin: http://evil.example", NULL}, 403, &r);
    it_http_fini(&r);

    /* Peers of a Unix socket have no IP address: no per-IP limit applies. */
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fds[i] >= 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL),
                         (ssize_t)(sizeof(req) - 1));
    for (int i = 0; i < N; i++) {
        if (!reads_200(fds[i], IT_IO_TIMEOUT_MS))
            fail_msg("connection %d of %d over the Unix socket got no 200", i + 1, (int)N);
        close(fds[i]);
    }

    /* A second daemon on the same path: in use. */
    {
        char api[IT_PATH_MAX + 8], dir2[IT_PATH_MAX];
        const char *const argv[] = {it_bin(),      "daemon", "--api",         api,
                                    "--state-dir", dir2,     "--no-defaults", NULL};

        snprintf(api, sizeof(api), "unix:%s", path);
        snprintf(dir2, sizeof(dir2), "%s/state2", f->dir);
        it_run(argv, NULL, 0, IT_EXIT_TIMEOUT_MS, &p);
        assert_int_not_equal(it_proc_exit_code(&p), 0);
        assert_non_null(strstr(p.err, "in use"));
        it_proc_fini(&p);
    }
    expect(&t, "GET", "/api/v1/health", NULL, NULL, 200, &r);
    it_http_fini(&r);

    /* Stopped: the file is gone. */
    free(stop_clean(&f->d));
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(errno, ENOENT);

    /* Killed: the file stays, stale; the next daemon replaces it. */
    assert_int_equal(start_unix(&f->d, f->dir, path, NULL, ready, sizeof(ready)), 0);
    it_daemon_kill(&f->d);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(start_unix(&d2, f->dir, path, NULL, ready, sizeof(ready)), 0);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* the default mode */
    expect(&t, "GET", "/api/v1/health", NULL, NULL, 200, &r);
    it_http_fini(&r);
    free(stop_clean(&d2));
    assert_int_equal(lstat(path, &st), -1);

    /* Something that is not a socket is never removed. */
    assert_int_equal(it_file_write(path, "keep me", 7), 0);
    assert_int_equal(start_unix(&d2, f->dir, path, NULL, ready, sizeof(ready)), -ECHILD);
    assert_false(it_status_is_exit0(d2.status));
    {
        char *log = it_daemon_stderr(&d2);

        assert_non_null(strstr(log, "not a socket"));
        free(log);
    }
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
}

/* ---- systemd's notifications ---- */

/* Reads one datagram from fd within timeout_ms into buf (NUL-terminated). */
static void read_notification(int fd, char *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ssize_t n;

    assert_int_equal(poll(&pfd, 1, timeout_ms), 1);
    n = recv(fd, buf, len - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
}

/* A datagram socket bound at name (a path, or "@name" in the abstract namespace). */
static int notify_socket(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(len < sizeof(sa.sun_path));
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    assert_int_equal(
        bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
        0);
    return fd;
}

static void test_security_notify_socket_gets_ready_then_stopping(void **state)
{
    struct it_fixture *f = fixture_of(state);
    char path[IT_PATH_MAX], abstract[64], msg[512];
    const char *names[2];
    int status;
    int64_t ms;

    snprintf(path, sizeof(path), "%s/notify", f->dir);
    snprintf(abstract, sizeof(abstract), "@sockserv-test-notify-%d", (int)getpid());
    names[0] = path;
    names[1] = abstract;
    for (size_t i = 0; i < 2; i++) {
        int fd = notify_socket(names[i]);
        char var[IT_PATH_MAX + 16];

        snprintf(var, sizeof(var), "NOTIFY_SOCKET=%s", names[i]);
        it_daemon_start_ok(&f->d, &(struct it_daemon_opts){
                                      .dir = f->dir, .env = (const char *const[]){var, NULL}});
        read_notification(fd, msg, sizeof(msg), IT_IO_TIMEOUT_MS);
        fprintf(stderr, "# %s: %s\n", names[i], msg);
        assert_int_equal(strncmp(msg, "READY=1\n", 8), 0);
        assert_non_null(strstr(msg, "STATUS=API on http://127.0.0.1:"));
        assert_int_equal(it_daemon_stop(&f->d, SIGTERM, IT_EXIT_TIMEOUT_MS, &status, &ms), 0);
        assert_true(it_status_is_exit0(status));
        read_notification(fd, msg, sizeof(msg), IT_IO_TIMEOUT_MS);
        assert_string_equal(msg, "STOPPING=1");
        close(fd);
    }
}

/* ---- a slowloris against the API ---- */

struct trickler {
    int fd;
    const char *text; /* what it sends, a byte at a time */
    size_t sent;
    int64_t owed_since; /* when its deadline started: connected, or head sent */
    int64_t closed_at;  /* 0 while open */
};

/* Whether the daemon closed t's connection (end of stream or reset). */
static bool trickler_closed(struct trickler *t)
{
    char buf[256];
    ssize_t n = recv(t->fd, buf, sizeof(buf), MSG_DONTWAIT);

    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void test_security_slowloris_is_cut_and_api_stays_responsive(void **state)
{
    struct it_fixture *f = fixture_of(state);
    /* Under the share of unfinished connections (so that none is evicted to make room: each
     * must meet its own deadline), over what a naive server keeps. */
    enum { N_HEAD = 40, N_BODY = 4, N = N_HEAD + N_BODY };
    _Static_assert(N + 2 < API_SERVER_PARTIAL_LIMIT, "the tricklers fit in the share");
    static const char head_text[] = "GET /api/v1/health HTTP/1.1\r\nX-Slow: "
                                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    static const char body_text[] = "{\"id\":\"slow\",\"service\":\"echo\",\"port\":0,\"x\":\""
                                    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const int64_t head_ms = API_SERVER_HEAD_TIMEOUT_S * 1000,
                  body_ms = API_SERVER_BODY_TIMEOUT_S * 1000;
    struct trickler tr[N];
    struct it_resources base;
    char stream_req[160], body_head[256];
    int64_t t0, end, worst_ms = 0;
    unsigned answered = 0;
    int stream, open_count;
    char *log;

    start(f, NULL);
    it_resources_take(&f->d, &base);
    fprintf(stderr, "# baseline: %d fds, %d threads\n", base.fds, base.threads);

    /* An event stream: a response under way, which no request deadline may cut. */
    stream = it_tcp_connect("127.0.0.1", f->d.api_port, IT_IO_TIMEOUT_MS);
    assert_true(stream >= 0);
    snprintf(stream_req, sizeof(stream_req),
             "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", f->d.api_port);
    assert_int_equal(it_send_all(stream, stream_req, strlen(stream_req), IT_IO_TIMEOUT_MS), 0);
    assert_true(it_stream_sees(stream, "event: snapshot", IT_IO_TIMEOUT_MS));

    /* N_HEAD connections trickle a request head, N_BODY a body after a whole head. */
    snprintf(body_head, sizeof(body_head),
             "POST /api/v1/listeners HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
             f->d.api_port);
    for (int i = 0; i < N; i++) {
        tr[i] = (struct trickler){.text = i < N_HEAD ? head_text : body_text};
        tr[i].fd = it_tcp_connect("127.0.0.1", f->d.api_port, IT_IO_TIMEOUT_MS);
        assert_true(tr[i].fd >= 0);
        if (i >= N_HEAD)
            assert_int_equal(it_send_all(tr[i].fd, body_head, strlen(body_head), IT_IO_TIMEOUT_MS),
                             0);
        tr[i].owed_since = it_now_ms();
    }

    /* A byte a second on each (well within libmicrohttpd's 30 s idle timeout), while another
     * client's requests keep being answered promptly. */
    t0 = it_now_ms();
    end = t0 + (head_ms > body_ms ? head_ms : body_ms) + 5000;
    for (int64_t next_byte = t0; it_now_ms() < end;) {
        int64_t a = it_now_ms();
        struct it_http r;
        struct target t;

        open_count = 0;
        for (int i = 0; i < N; i++) {
            if (tr[i].closed_at)
                continue;
            if (trickler_closed(&tr[i])) {
                tr[i].closed_at = it_now_ms();
                continue;
            }
            open_count++;
            if (a >= next_byte && tr[i].sent < strlen(tr[i].text) &&
                send(tr[i].fd, tr[i].text + tr[i].sent, 1, MSG_NOSIGNAL) == 1)
                tr[i].sent++;
        }
        if (a >= next_byte)
            next_byte = a + 1000;
        if (open_count == 0)
            break;

        target_tcp(&t, &f->d);
        assert_int_equal(request(&t, "GET", "/api/v1/health", NULL, NULL, 2000, &r), 0);
        assert_int_equal(r.status, 200);
        it_http_fini(&r);
        answered++;
        if (it_now_ms() - a > worst_ms)
            worst_ms = it_now_ms() - a;
        (void)poll(NULL, 0, 100); /* pacing, not synchronisation */
    }
    fprintf(stderr, "# %u requests answered meanwhile, the slowest in %lld ms\n", answered,
            (long long)worst_ms);
    assert_true(answered >= 20);
    assert_true(worst_ms < 2000);

    /* Every trickler was cut, by its deadline and not before. */
    for (int i = 0; i < N; i++) {
        int64_t owed = i < N_HEAD ? head_ms : body_ms, after;

        if (!tr[i].closed_at)
            fail_msg("trickling connection %d is still open after %lld ms", i,
                     (long long)(it_now_ms() - tr[i].owed_since));
        after = tr[i].closed_at - tr[i].owed_since;
        if (after < owed - 1000 || after > owed + 3000)
            fail_msg("trickling connection %d was cut after %lld ms (deadline %lld ms)", i,
                     (long long)after, (long long)owed);
        close(tr[i].fd);
    }

    /* The event stream lives on and still carries events. */
    json_decref(it_listener_create(
        &f->d, "{\"id\":\"after\",\"service\":\"echo\",\"address\":\"127.0.0.1\",\"port\":0}"));
    assert_true(it_stream_sees(stream, "event: listener.created", IT_IO_TIMEOUT_MS));
    close(stream);
    json_decref(it_http_expect(&f->d, "DELETE", "/api/v1/listeners/after", NULL, 204));

    /* The daemon is back to its baseline of fds and threads. */
    it_assert_resources_back(&f->d, &base, IT_WAIT_MS);
    log = stop_clean(&f->d);
    assert_non_null(strstr(log, "did not send a complete request in time"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_fixture_setup_dir, it_fixture_teardown)
        T(test_security_token_missing_or_wrong_is_401_right_one_passes),
        T(test_security_token_file_problems_stop_the_start),
        T(test_security_open_address_without_token_is_refused_before_binding),
        T(test_security_foreign_host_is_403_even_on_get),
        T(test_security_cross_site_mutation_is_403_and_changes_nothing),
        T(test_security_mutation_without_json_type_is_415),
        T(test_security_unix_socket_mode_any_host_no_per_ip_limit_removed_at_exit),
        T(test_security_notify_socket_gets_ready_then_stopping),
        T(test_security_slowloris_is_cut_and_api_stays_responsive),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
