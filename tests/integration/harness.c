#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/store.h"

#define STDERR_DUMP_MAX 16384

/* ---- time, files, directories ---- */

int64_t it_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
    int64_t left = deadline - it_now_ms();

    if (left <= 0)
        return 0;
    return left > 1000000 ? 1000000 : (int)left;
}

static void pause_ms(int ms)
{
    (void)poll(NULL, 0, ms);
}

char *it_tmpdir_new(void)
{
    const char *base = getenv("TMPDIR");
    char path[IT_PATH_MAX];
    char *dir;

    if (!base || !*base)
        base = "/tmp";
    snprintf(path, sizeof(path), "%s/sockserv-it-XXXXXX", base);
    if (!mkdtemp(path))
        fail_msg("mkdtemp(%s): %s", path, strerror(errno));
    dir = strdup(path);
    assert_non_null(dir);
    return dir;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

void it_tmpdir_remove(char *dir)
{
    if (!dir)
        return;
    (void)nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

char *it_file_read(const char *path, size_t *ret_len)
{
    size_t len = 0, cap = 4096;
    char *buf;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    buf = malloc(cap + 1);
    while (buf) {
        ssize_t n;

        if (len == cap) {
            char *nbuf = realloc(buf, cap * 2 + 1);

            if (!nbuf) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nbuf;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            buf = NULL;
            break;
        }
        if (n == 0) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    if (buf && ret_len)
        *ret_len = len;
    return buf;
}

int it_file_write(const char *path, const void *data, size_t len)
{
    const char *p = data;
    int fd, r = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        p += n;
        len -= (size_t)n;
    }
    close(fd);
    return r;
}

bool it_wait_until(int timeout_ms, it_pred_fn pred, void *arg)
{
    int64_t deadline = it_now_ms() + timeout_ms;

    for (;;) {
        if (pred(arg))
            return true;
        if (it_now_ms() >= deadline)
            return false;
        pause_ms(IT_POLL_INTERVAL_MS);
    }
}

/* ---- child processes, shared ---- */

const char *it_bin(void)
{
    const char *bin = getenv("SOCKSERV_BIN");

    if (!bin || !*bin)
        fail_msg("SOCKSERV_BIN is not set: run the tests with meson test");
    return bin;
}

/* In a fresh child: die with the test, default signals, no inherited fds past max_keep. */
static void child_prepare(unsigned max_keep)
{
    sigset_t none;

    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    (void)signal(SIGPIPE, SIG_DFL);
    (void)close_range(max_keep + 1, ~0u, 0);
}

static void global_init(void)
{
    static bool done;

    if (done)
        return;
    done = true;
    (void)signal(SIGPIPE, SIG_IGN);
    (void)curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Reaps pid within timeout_ms. Returns 0 with the status or -ETIMEDOUT. */
static int reap(pid_t pid, int timeout_ms, int *ret_status)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int r;

    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);

        if (w == pid) {
            *ret_status = status;
            r = 0;
            break;
        }
        if (w < 0 && errno != EINTR) {
            r = -errno;
            break;
        }
        if (it_now_ms() >= deadline) {
            r = -ETIMEDOUT;
            break;
        }
        if (pidfd >= 0) {
            struct pollfd pfd = {.fd = pidfd, .events = POLLIN};

            (void)poll(&pfd, 1, left_ms(deadline));
        } else {
            pause_ms(5);
        }
    }
    if (pidfd >= 0)
        close(pidfd);
    return r;
}

bool it_status_is_exit0(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

const char *it_status_str(int status)
{
    static char buf[64];

    if (WIFEXITED(status))
        snprintf(buf, sizeof(buf), "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, sizeof(buf), "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, sizeof(buf), "status 0x%x", (unsigned)status);
    return buf;
}

/* ---- the daemon ---- */

static void daemon_reaped(struct it_daemon *d, int status)
{
    d->pid = 0;
    d->exited = true;
    d->status = status;
}

/* Reads one line from fd within timeout_ms. Returns its length, 0 at end of file with no line,
 * or -ETIMEDOUT. */
/* A daemon's ready fd: its pid and the pipe its fd 3 is ("pipe:[INODE]"). */
struct ready_fd {
    pid_t pid;
    char pipe[64];
};

/* Whether the daemon's fd 3 is no longer that pipe. */
static bool ready_fd_closed(void *arg)
{
    const struct ready_fd *r = arg;
    char link[64], target[64];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/%d/fd/3", (int)r->pid);
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return true;
    target[n] = '\0';
    return strcmp(target, r->pipe) != 0;
}

/* Waits (at most timeout_ms) until the daemon pid has closed its ready fd, the pipe whose
 * read end is fd (a wrapper such as strace may keep its own copy open: the daemon's is what
 * counts). */
static void wait_ready_fd_closed(pid_t pid, int fd, int timeout_ms)
{
    struct ready_fd r = {.pid = pid};
    struct stat st;

    if (fstat(fd, &st) < 0)
        return;
    snprintf(r.pipe, sizeof(r.pipe), "pipe:[%llu]", (unsigned long long)st.st_ino);
    (void)it_wait_until(timeout_ms, ready_fd_closed, &r);
}

static int read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    size_t len = 0;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char *nl;
        ssize_t n;
        int r;

        r = poll(&pfd, 1, left_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return -ETIMEDOUT;
        n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return len > 0 ? (int)len : 0;
        len += (size_t)n;
        buf[len] = '\0';
        nl = strchr(buf, '\n');
        if (nl) {
            *nl = '\0';
            return (int)(nl - buf);
        }
        if (len == cap - 1)
            return (int)len;
    }
}

/* environ with the "NAME=VALUE" entries of env replacing or adding theirs. malloc'd array of
 * borrowed strings (free() the array only), or NULL. */
static char **env_with(const char *const *env)
{
    size_t n = 0, m = 0, k;
    char **out;

    while (environ[n])
        n++;
    while (env && env[m])
        m++;
    out = calloc(n + m + 1, sizeof(*out));
    if (!out)
        return NULL;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool replaced = false;

        for (size_t j = 0; j < m && !replaced; j++)
            replaced = strncmp(env[j], environ[i], nl) == 0 && env[j][nl] == '=';
        if (!replaced)
            out[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        out[k++] = (char *)env[j];
    return out;
}

/* Writes token to a new file of mode 0600 in dir and records both in d. */
static int daemon_token(struct it_daemon *d, const char *dir, const char *token)
{
    static unsigned seq;
    int r;

    r = snprintf(d->token, sizeof(d->token), "%s", token);
    if (r < 0 || (size_t)r >= sizeof(d->token))
        return -ENAMETOOLONG;
    r = snprintf(d->token_file, sizeof(d->token_file), "%s/token-%u", dir, ++seq);
    if (r < 0 || (size_t)r >= sizeof(d->token_file))
        return -ENAMETOOLONG;
    r = it_file_write(d->token_file, token, strlen(token));
    if (r == 0 && chmod(d->token_file, 0600) < 0)
        r = -errno;
    return r;
}

/* DIR/api-cert.pem and DIR/api-key.pem, made on the first call for dir and kept, so that a
 * restarted daemon shows the same certificate. */
static int daemon_certificate(struct it_daemon *d, const char *dir)
{
    int r;

    r = snprintf(d->cacert, sizeof(d->cacert), "%s/api-cert.pem", dir);
    if (r < 0 || (size_t)r >= sizeof(d->cacert))
        return -ENAMETOOLONG;
    r = snprintf(d->tls_key, sizeof(d->tls_key), "%s/api-key.pem", dir);
    if (r < 0 || (size_t)r >= sizeof(d->tls_key))
        return -ENAMETOOLONG;
    if (access(d->cacert, R_OK) < 0 || access(d->tls_key, R_OK) < 0)
        it_make_certificate(d->cacert, d->tls_key);
    return 0;
}

/* A seccomp filter on this process (and what it execs): io_uring_setup(2) fails with EPERM,
 * everything else is allowed. In a forked child only. */
static int deny_io_uring(void)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
    return 0;
}

int it_daemon_start(struct it_daemon *d, const struct it_daemon_opts *o)
{
    static unsigned seq;
    char **envp;
    const char *argv[48];
    char line[256];
    const char *port;
    int n = 0, pipefd[2], errfd, r, status;
    pid_t pid;

    global_init();
    memset(d, 0, sizeof(*d));
    if (o->state_dir)
        r = snprintf(d->state_dir, sizeof(d->state_dir), "%s", o->state_dir);
    else
        r = snprintf(d->state_dir, sizeof(d->state_dir), "%s/state", o->dir);
    if (r < 0 || (size_t)r >= sizeof(d->state_dir))
        return -ENAMETOOLONG;
    if (mkdir(d->state_dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    r = snprintf(d->state_file, sizeof(d->state_file), "%s/%s", d->state_dir, CORE_STORE_FILE);
    if (r < 0 || (size_t)r >= sizeof(d->state_file))
        return -ENAMETOOLONG;
    r = snprintf(d->stderr_path, sizeof(d->stderr_path), "%s/daemon-%u.log", o->dir, ++seq);
    if (r < 0 || (size_t)r >= sizeof(d->stderr_path))
        return -ENAMETOOLONG;

    argv[n++] = it_bin();
    argv[n++] = "daemon";
    argv[n++] = "--api";
    argv[n++] = o->api ? o->api : "127.0.0.1:0";
    argv[n++] = "--state-dir";
    argv[n++] = d->state_dir;
    if (!o->defaults)
        argv[n++] = "--no-defaults";
    argv[n++] = "--ready-fd";
    argv[n++] = "3";
    if (o->token) {
        r = daemon_token(d, o->dir, o->token);
        if (r < 0)
            return r;
        argv[n++] = "--token-file";
        argv[n++] = d->token_file;
    }
    if (o->tls) {
        r = daemon_certificate(d, o->dir);
        if (r < 0)
            return r;
        argv[n++] = "--api-tls-cert";
        argv[n++] = d->cacert;
        argv[n++] = "--api-tls-key";
        argv[n++] = d->tls_key;
    }
    for (size_t i = 0; o->extra_args && o->extra_args[i] && n < 47; i++)
        argv[n++] = o->extra_args[i];
    argv[n] = NULL;
    envp = env_with(o->env);
    if (!envp)
        return -ENOMEM;

    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        r = -errno;
        free(envp);
        return r;
    }
    errfd = open(d->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (errfd < 0) {
        r = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        free(envp);
        return r;
    }
    pid = fork();
    if (pid < 0) {
        r = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        close(errfd);
        free(envp);
        return r;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);

        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(errfd, 1) < 0 || dup2(errfd, 2) < 0)
            _exit(127);
        if (pipefd[1] == 3) {
            if (fcntl(3, F_SETFD, 0) < 0)
                _exit(127);
        } else if (dup2(pipefd[1], 3) < 0) {
            _exit(127);
        }
        child_prepare(3);
        if (o->deny_io_uring && deny_io_uring() < 0)
            _exit(127);
        if (o->nofile_hard &&
            setrlimit(RLIMIT_NOFILE,
                      &(struct rlimit){.rlim_cur = o->nofile_soft, .rlim_max = o->nofile_hard}) < 0)
            _exit(127);
        execve(argv[0], (char *const *)argv, envp);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(envp);
    close(pipefd[1]);
    close(errfd);
    d->pid = pid;

    r = read_line(pipefd[0], line, sizeof(line), IT_READY_TIMEOUT_MS);
    /* The daemon closes its ready fd right after the line: once it has, the fds a test counts
     * from now on are the daemon's steady ones. */
    if (r > 0)
        wait_ready_fd_closed(pid, pipefd[0], IT_READY_TIMEOUT_MS);
    close(pipefd[0]);
    if (r == -ETIMEDOUT) {
        fprintf(stderr, "# the daemon printed no URL within %d ms\n", IT_READY_TIMEOUT_MS);
        it_daemon_kill(d);
        return -ETIMEDOUT;
    }
    if (r <= 0) {
        /* fd 3 closed with no URL: it exited, or is about to. */
        if (reap(pid, IT_EXIT_TIMEOUT_MS, &status) == 0) {
            daemon_reaped(d, status);
            return -ECHILD;
        }
        fprintf(stderr, "# the daemon closed its ready fd without a URL and kept running\n");
        it_daemon_kill(d);
        return -EPROTO;
    }
    line[strcspn(line, "\r")] = '\0';
    port = strrchr(line, ':');
    if ((strncmp(line, "http://", 7) != 0 && strncmp(line, "https://", 8) != 0) || !port ||
        atoi(port + 1) <= 0 || atoi(port + 1) > 65535) {
        fprintf(stderr, "# the daemon's ready line is not http(s)://HOST:PORT: '%s'\n", line);
        it_daemon_kill(d);
        return -EPROTO;
    }
    if (strlen(line) >= sizeof(d->url)) {
        fprintf(stderr, "# the daemon's ready line is too long: '%s'\n", line);
        it_daemon_kill(d);
        return -EPROTO;
    }
    memcpy(d->url, line, strlen(line) + 1);
    d->api_port = (uint16_t)atoi(port + 1);
    return 0;
}

void it_daemon_start_ok(struct it_daemon *d, const struct it_daemon_opts *opts)
{
    int r = it_daemon_start(d, opts);

    if (r == 0)
        return;
    it_daemon_dump_stderr(d);
    if (r == -ECHILD)
        fail_msg("the daemon exited before it was ready: %s", it_status_str(d->status));
    fail_msg("the daemon did not become ready: %s", strerror(-r));
}

int it_daemon_wait_exit(struct it_daemon *d, int timeout_ms, int *ret_status)
{
    int status, r;

    if (d->exited) {
        *ret_status = d->status;
        return 0;
    }
    if (d->pid <= 0)
        return -ECHILD;
    r = reap(d->pid, timeout_ms, &status);
    if (r < 0)
        return r;
    daemon_reaped(d, status);
    *ret_status = status;
    return 0;
}

int it_daemon_stop(struct it_daemon *d, int sig, int timeout_ms, int *ret_status, int64_t *ret_ms)
{
    int64_t t0 = it_now_ms();
    int status, r;

    if (d->exited) {
        if (ret_status)
            *ret_status = d->status;
        if (ret_ms)
            *ret_ms = 0;
        return 0;
    }
    if (d->pid <= 0)
        return -ECHILD;
    if (kill(d->pid, sig) < 0)
        return -errno;
    r = reap(d->pid, timeout_ms, &status);
    if (r < 0) {
        it_daemon_kill(d);
        return r;
    }
    daemon_reaped(d, status);
    if (ret_status)
        *ret_status = status;
    if (ret_ms)
        *ret_ms = it_now_ms() - t0;
    return 0;
}

void it_daemon_kill(struct it_daemon *d)
{
    int status;

    if (d->pid <= 0)
        return;
    (void)kill(d->pid, SIGKILL);
    if (reap(d->pid, IT_EXIT_TIMEOUT_MS, &status) == 0)
        daemon_reaped(d, status);
    d->pid = 0;
}

char *it_daemon_stderr(const struct it_daemon *d)
{
    char *text = d->stderr_path[0] ? it_file_read(d->stderr_path, NULL) : NULL;

    return text ? text : strdup("");
}

void it_daemon_dump_stderr(const struct it_daemon *d)
{
    size_t len = 0;
    char *text;
    const char *from;

    if (!d->stderr_path[0])
        return;
    text = it_file_read(d->stderr_path, &len);
    if (text && len > 0) {
        from = len > STDERR_DUMP_MAX ? text + len - STDERR_DUMP_MAX : text;
        fprintf(stderr, "# ---- daemon stderr (%s)%s ----\n%s%s# ---- end ----\n", d->stderr_path,
                from != text ? ", last part" : "", from, text[len - 1] == '\n' ? "" : "\n");
    }
    free(text);
}

/* ---- the common fixture ---- */

int it_fixture_setup_dir(void **state)
{
    struct it_fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    global_init();
    f->dir = it_tmpdir_new();
    *state = f;
    return 0;
}

int it_fixture_setup_opts(void **state, struct it_daemon_opts opts)
{
    struct it_fixture *f;
    int r;

    if (it_fixture_setup_dir(state) < 0)
        return -1;
    f = *state;
    opts.dir = f->dir;
    r = it_daemon_start(&f->d, &opts);
    if (r < 0) {
        fprintf(stderr, "# setup: the daemon did not start: %s%s%s\n", strerror(-r),
                f->d.exited ? ", " : "", f->d.exited ? it_status_str(f->d.status) : "");
        it_daemon_dump_stderr(&f->d);
        return -1;
    }
    return 0;
}

int it_fixture_setup(void **state)
{
    return it_fixture_setup_opts(state, (struct it_daemon_opts){0});
}

int it_fixture_teardown(void **state)
{
    struct it_fixture *f = *state;
    int ret = 0, status;
    int64_t ms;

    if (!f)
        return 0;
    if (f->d.pid > 0) {
        int r = it_daemon_stop(&f->d, SIGTERM, IT_EXIT_TIMEOUT_MS, &status, &ms);

        if (r < 0) {
            fprintf(stderr, "# teardown: the daemon did not exit on SIGTERM: %s\n", strerror(-r));
            ret = -1;
        } else if (!it_status_is_exit0(status)) {
            fprintf(stderr, "# teardown: the daemon ended with %s on SIGTERM\n",
                    it_status_str(status));
            ret = -1;
        }
    }
    it_daemon_dump_stderr(&f->d);
    it_tmpdir_remove(f->dir);
    free(f);
    *state = NULL;
    return ret;
}

/* ---- HTTP ---- */

struct http_ctx {
    struct it_http *r;
    size_t cap, headers_cap;
    bool oom;
};

static void header_value(const char *line, size_t len, size_t name_len, char *dst, size_t cap)
{
    const char *v = line + name_len;
    size_t vlen = len - name_len;

    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (vlen >= cap)
        vlen = cap - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

/* Appends len bytes to *buf (*len used, *cap allocated), keeping a NUL after them. */
static int buf_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = (*len + n + 1) * 2;
        char *nb = realloc(*buf, ncap);

        if (!nb)
            return -ENOMEM;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static size_t on_header(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct http_ctx *c = arg;
    size_t len = size * nmemb;
    static const struct {
        const char *name;
        size_t off, cap;
    } wanted[] = {
        {"Content-Type:", offsetof(struct it_http, content_type),
         sizeof(((struct it_http *)0)->content_type)},
        {"Location:", offsetof(struct it_http, location), sizeof(((struct it_http *)0)->location)},
        {"Allow:", offsetof(struct it_http, allow), sizeof(((struct it_http *)0)->allow)},
    };

    /* A new status line (after "100 Continue") starts a new set of headers. */
    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        c->r->content_type[0] = c->r->location[0] = c->r->allow[0] = '\0';
        c->r->headers_len = 0;
        if (len > 9)
            c->r->status = strtol(buf + 9, NULL, 10);
    }
    if (buf_append(&c->r->headers, &c->r->headers_len, &c->headers_cap, buf, len) < 0) {
        c->oom = true;
        return 0;
    }
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        size_t nl = strlen(wanted[i].name);

        if (len >= nl && strncasecmp(buf, wanted[i].name, nl) == 0)
            header_value(buf, len, nl, (char *)c->r + wanted[i].off, wanted[i].cap);
    }
    return len;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct http_ctx *c = arg;
    size_t len = size * nmemb;

    if (buf_append(&c->r->body, &c->r->body_len, &c->cap, buf, len) < 0) {
        c->oom = true;
        return 0;
    }
    return len;
}

const char *it_http_header(const struct it_http *r, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);

    for (const char *p = r->headers ? r->headers : ""; *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);

        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            header_value(p, len, nl + 1, buf, cap);
            return buf;
        }
        p += len + (eol ? 2 : 0);
    }
    return NULL;
}

void it_assert_header(const struct it_http *r, const char *name, const char *value)
{
    char buf[2048];
    const char *got = it_http_header(r, name, buf, sizeof(buf));

    if (!got)
        fail_msg("no %s header in:\n%s", name, r->headers ? r->headers : "");
    if (strcmp(got, value) != 0)
        fail_msg("%s: '%s', expected '%s'", name, got, value);
}

static long tls_version(int min, int max)
{
    static const long mins[] = {CURL_SSLVERSION_TLSv1_0, CURL_SSLVERSION_TLSv1_1,
                                CURL_SSLVERSION_TLSv1_2, CURL_SSLVERSION_TLSv1_3};
    static const long maxs[] = {CURL_SSLVERSION_MAX_TLSv1_0, CURL_SSLVERSION_MAX_TLSv1_1,
                                CURL_SSLVERSION_MAX_TLSv1_2, CURL_SSLVERSION_MAX_TLSv1_3};
    long v = 0;

    if (min >= 10 && min <= 13)
        v |= mins[min - 10];
    if (max >= 10 && max <= 13)
        v |= maxs[max - 10];
    return v;
}

/*
 * A curl handle set up for request q to the daemon d (may be NULL when q->url is whole), with
 * its header list in *ret_hdrs (free with curl_slist_free_all()) and its URL in url. NULL when
 * out of memory.
 */
static CURL *request_handle(const struct it_daemon *d, const struct it_req *q, char *url,
                            size_t url_cap, struct curl_slist **ret_hdrs)
{
    struct curl_slist *hdrs = NULL;
    const char *method = q->method ? q->method : "GET";
    const char *cacert = q->cacert ? q->cacert : d && d->cacert[0] ? d->cacert : NULL;
    const char *token = q->no_token        ? NULL
                        : q->token         ? q->token
                        : d && d->token[0] ? d->token
                                           : NULL;
    char line[512];
    CURL *h;

    global_init();
    h = curl_easy_init();
    if (!h)
        return NULL;
    if (q->url)
        snprintf(url, url_cap, "%s", q->url);
    else
        snprintf(url, url_cap, "%s%s", d->url, q->path ? q->path : "/");
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 || q->body)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); /* ".." is sent as it is */
    if (q->unix_socket)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, q->unix_socket);
    if (cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
    if (q->tls_min || q->tls_max) {
        curl_easy_setopt(h, CURLOPT_SSLVERSION, tls_version(q->tls_min, q->tls_max));
        /* The client's own policy must not be what refuses an old version. */
        curl_easy_setopt(h, CURLOPT_SSL_CIPHER_LIST, "DEFAULT:@SECLEVEL=0");
    }
    if (q->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    }
    if (q->content_type) {
        snprintf(line, sizeof(line), "Content-Type: %s", q->content_type);
        hdrs = curl_slist_append(hdrs, line);
    } else if (q->body) {
        /* No default form type: a request names the type it means, or sends none. */
        hdrs = curl_slist_append(hdrs, "Content-Type:");
    }
    if (token) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, line);
    }
    for (size_t i = 0; q->headers && q->headers[i]; i++)
        hdrs = curl_slist_append(hdrs, q->headers[i]);
    if (hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    *ret_hdrs = hdrs;
    return h;
}

int it_http_request(const struct it_daemon *d, const struct it_req *q, struct it_http *ret)
{
    struct http_ctx c = {.r = ret};
    struct curl_slist *hdrs = NULL;
    char url[1024], errbuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc;
    CURL *h;

    memset(ret, 0, sizeof(*ret));
    h = request_handle(d, q, url, sizeof(url), &hdrs);
    if (!h)
        return -ENOMEM;
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(q->timeout_ms > 0 ? q->timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &c);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);

    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);

    ret->status = status;
    if (!ret->body)
        ret->body = calloc(1, 1);
    if (!ret->headers)
        ret->headers = calloc(1, 1);
    if (c.oom || !ret->body || !ret->headers) {
        it_http_fini(ret);
        return -ENOMEM;
    }
    if (rc != CURLE_OK) {
        snprintf(ret->error, sizeof(ret->error), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        ret->tls_unverified = rc == CURLE_PEER_FAILED_VERIFICATION;
    }
    /* A server may answer (413) before it read the whole body and close: keep the answer. */
    if (rc != CURLE_OK && ret->status == 0) {
        if (!q->quiet)
            fprintf(stderr, "# %s %s: %s\n", q->method ? q->method : "GET", url, ret->error);
        it_http_fini(ret);
        return -EIO;
    }
    if (ret->body_len > 0)
        ret->json = json_loadb(ret->body, ret->body_len, 0, NULL);
    return 0;
}

int it_http_raw(const struct it_daemon *d, const char *method, const char *path, const void *body,
                size_t body_len, const char *content_type, struct it_http *ret)
{
    int r = it_http_request(d,
                            &(struct it_req){.method = method,
                                             .path = path,
                                             .body = body,
                                             .body_len = body_len,
                                             .content_type = content_type},
                            ret);

    return r;
}

void it_http(const struct it_daemon *d, const char *method, const char *path, const char *json_body,
             struct it_http *ret)
{
    /* POST, PUT and PATCH carry the JSON type even without a body, as the API requires. */
    bool typed = json_body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                 strcmp(method, "PATCH") == 0;
    int r = it_http_raw(d, method, path, json_body, json_body ? strlen(json_body) : 0,
                        typed ? "application/json" : NULL, ret);

    if (r < 0)
        fail_msg("%s %s%s%s: no answer (%s)", method, path, json_body ? " " : "",
                 json_body ? json_body : "", strerror(-r));
}

void it_http_fini(struct it_http *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    r->body = NULL;
    r->headers = NULL;
    r->json = NULL;
}

/* ---- HTTP: a response read as it streams ---- */

struct it_stream {
    struct it_http head; /* status and headers; the body goes to buf */
    struct http_ctx ctx;
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hdrs;
    char url[1024];
    char errbuf[CURL_ERROR_SIZE];
    char *buf; /* received, not yet consumed */
    size_t len, cap;
    bool oom, done;
    CURLcode result;
};

static size_t stream_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct it_stream *s = arg;
    size_t n = size * nmemb;

    if (buf_append(&s->buf, &s->len, &s->cap, data, n) < 0) {
        s->oom = true;
        return 0;
    }
    return n;
}

/* At most a second, at least 0, until deadline. */
static int slice_ms(int64_t deadline)
{
    int64_t l = deadline - it_now_ms();

    return l <= 0 ? 0 : l > 1000 ? 1000 : (int)l;
}

void it_stream_pump(struct it_stream *s, int wait_ms)
{
    CURLMsg *m;
    int running, queued;

    if (wait_ms > 0)
        (void)curl_multi_poll(s->multi, NULL, 0, wait_ms, NULL);
    (void)curl_multi_perform(s->multi, &running);
    while ((m = curl_multi_info_read(s->multi, &queued))) {
        if (m->msg == CURLMSG_DONE) {
            s->done = true;
            s->result = m->data.result;
        }
    }
    assert_false(s->oom || s->ctx.oom);
}

struct it_stream *it_stream_open(const struct it_daemon *d, const struct it_req *q)
{
    struct it_stream *s = calloc(1, sizeof(*s));
    int64_t deadline = it_now_ms() + (q->timeout_ms > 0 ? q->timeout_ms : IT_IO_TIMEOUT_MS);

    assert_non_null(s);
    s->ctx.r = &s->head;
    s->multi = curl_multi_init();
    s->easy = request_handle(d, q, s->url, sizeof(s->url), &s->hdrs);
    assert_non_null(s->multi);
    assert_non_null(s->easy);
    curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, &s->ctx);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, stream_on_body);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->errbuf);
    assert_int_equal(curl_multi_add_handle(s->multi, s->easy), CURLM_OK);
    it_stream_pump(s, 0);
    while (s->head.status == 0 && !s->done && it_now_ms() < deadline)
        it_stream_pump(s, slice_ms(deadline));
    if (s->head.status == 0)
        fail_msg("%s %s: no answer within %d ms (%s)", q->method ? q->method : "GET", s->url,
                 q->timeout_ms > 0 ? q->timeout_ms : IT_IO_TIMEOUT_MS, it_stream_error(s));
    return s;
}

const struct it_http *it_stream_head(const struct it_stream *s)
{
    return &s->head;
}

char *it_stream_data(struct it_stream *s, size_t *ret_len)
{
    *ret_len = s->len;
    return s->buf;
}

void it_stream_consume(struct it_stream *s, size_t n)
{
    assert_true(n <= s->len);
    s->len -= n;
    if (s->buf)
        memmove(s->buf, s->buf + n, s->len + 1);
}

int it_stream_end(const struct it_stream *s)
{
    if (!s->done)
        return -EINPROGRESS;
    return s->result == CURLE_OK ? 0 : -EIO;
}

const char *it_stream_error(const struct it_stream *s)
{
    if (!s->done)
        return "still waiting";
    if (s->result == CURLE_OK)
        return "the response ended";
    return s->errbuf[0] ? s->errbuf : curl_easy_strerror(s->result);
}

void it_stream_close(struct it_stream *s)
{
    if (!s)
        return;
    if (s->multi && s->easy)
        curl_multi_remove_handle(s->multi, s->easy);
    curl_easy_cleanup(s->easy);
    curl_multi_cleanup(s->multi);
    curl_slist_free_all(s->hdrs);
    it_http_fini(&s->head);
    free(s->buf);
    free(s);
}

/* Whether a Content-Type header is the media type want (parameters allowed). */
static bool ctype_is(const char *ct, const char *want)
{
    size_t n = strlen(want);

    return strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

json_t *it_http_expect(const struct it_daemon *d, const char *method, const char *path,
                       const char *json_body, long status)
{
    struct it_http r;
    json_t *j;

    it_http(d, method, path, json_body, &r);
    if (r.status != status) {
        fprintf(stderr, "# %s %s%s%s\n#   want %ld, got %ld (%s): %s\n", method, path,
                json_body ? " " : "", json_body ? json_body : "", status, r.status, r.content_type,
                r.body);
        it_http_fini(&r);
        fail_msg("%s %s: want status %ld", method, path, status);
    }
    if (status >= 400) {
        it_assert_problem(&r, status, NULL);
        j = json_incref(r.json);
        it_http_fini(&r);
        return j;
    }
    if (r.body_len == 0) {
        it_http_fini(&r);
        return NULL;
    }
    if (!ctype_is(r.content_type, "application/json")) {
        fprintf(stderr, "# %s %s: Content-Type '%s', body %s\n", method, path, r.content_type,
                r.body);
        it_http_fini(&r);
        fail_msg("%s %s: want Content-Type application/json", method, path);
    }
    if (!r.json) {
        fprintf(stderr, "# %s %s: body is not JSON: %s\n", method, path, r.body);
        it_http_fini(&r);
        fail_msg("%s %s: want a JSON body", method, path);
    }
    j = json_incref(r.json);
    it_http_fini(&r);
    return j;
}

void it_assert_problem(const struct it_http *r, long status, const char *field)
{
    const json_t *v;

    if (r->status != status || !ctype_is(r->content_type, "application/problem+json") || !r->json)
        fprintf(stderr, "# want %ld application/problem+json, got %ld '%s': %s\n", status,
                r->status, r->content_type, r->body);
    assert_int_equal(r->status, status);
    assert_true(ctype_is(r->content_type, "application/problem+json"));
    assert_non_null(r->json);
    assert_true(json_is_object(r->json));
    v = json_object_get(r->json, "status");
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), status);
    v = json_object_get(r->json, "type");
    assert_true(json_is_string(v));
    v = json_object_get(r->json, "title");
    assert_true(json_is_string(v) && json_string_length(v) > 0);
    v = json_object_get(r->json, "detail");
    assert_true(json_is_string(v) && json_string_length(v) > 0);
    if (field) {
        v = json_object_get(r->json, "field");
        if (!json_is_string(v) || strcmp(json_string_value(v), field) != 0)
            fprintf(stderr, "# want field '%s': %s\n", field, r->body);
        assert_true(json_is_string(v));
        assert_string_equal(json_string_value(v), field);
    }
}

json_t *it_json_path(const json_t *j, const char *path)
{
    char buf[256], *save = NULL, *seg;

    snprintf(buf, sizeof(buf), "%s", path);
    for (seg = strtok_r(buf, ".", &save); seg && j; seg = strtok_r(NULL, ".", &save)) {
        if (json_is_array(j)) {
            char *end;
            long i = strtol(seg, &end, 10);

            j = *end == '\0' && i >= 0 ? json_array_get(j, (size_t)i) : NULL;
        } else {
            j = json_object_get(j, seg);
        }
    }
    return (json_t *)j;
}

static void no_such(const json_t *j, const char *path, const char *type)
{
    char *text = json_dumps(j, JSON_COMPACT);

    fprintf(stderr, "# no %s at '%s' in %s\n", type, path, text ? text : "(null)");
    free(text);
    fail_msg("want a %s at '%s'", type, path);
}

const char *it_json_str(const json_t *j, const char *path)
{
    const json_t *v = it_json_path(j, path);

    if (!json_is_string(v))
        no_such(j, path, "string");
    return json_string_value(v);
}

json_int_t it_json_int(const json_t *j, const char *path)
{
    const json_t *v = it_json_path(j, path);

    if (!json_is_integer(v))
        no_such(j, path, "integer");
    return json_integer_value(v);
}

bool it_json_bool(const json_t *j, const char *path)
{
    const json_t *v = it_json_path(j, path);

    if (!json_is_boolean(v))
        no_such(j, path, "boolean");
    return json_is_true(v);
}

uint16_t it_bound_port(const json_t *resource)
{
    const json_t *bound = it_json_path(resource, "status.bound");
    const char *text, *colon;
    long port;

    if (!json_is_array(bound) || json_array_size(bound) == 0)
        no_such(resource, "status.bound", "non-empty array");
    text = json_string_value(json_array_get(bound, json_array_size(bound) - 1));
    if (!text)
        no_such(resource, "status.bound", "array of strings");
    colon = strrchr(text, ':');
    assert_non_null(colon);
    port = strtol(colon + 1, NULL, 10);
    assert_true(port > 0 && port <= 65535);
    return (uint16_t)port;
}

json_t *it_listener_create(const struct it_daemon *d, const char *json_body)
{
    json_t *j = it_http_expect(d, "POST", "/api/v1/listeners", json_body, 201);

    assert_non_null(j);
    return j;
}

uint16_t it_listener_create_port(const struct it_daemon *d, const char *json_body)
{
    json_t *j = it_listener_create(d, json_body);
    uint16_t port;

    if (strcmp(it_json_str(j, "status.state"), "running") != 0) {
        char *text = json_dumps(j, JSON_COMPACT);

        fprintf(stderr, "# created but not running: %s\n", text);
        free(text);
        fail_msg("want status.state running");
    }
    port = it_bound_port(j);
    json_decref(j);
    return port;
}

json_t *it_listener_get(const struct it_daemon *d, const char *id)
{
    char path[256];
    json_t *j;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s", id);
    j = it_http_expect(d, "GET", path, NULL, 200);
    assert_non_null(j);
    return j;
}

uint64_t it_metric(const struct it_daemon *d, const char *id, const char *name)
{
    char path[256];
    json_t *j;
    json_int_t v;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s/metrics", id);
    j = it_http_expect(d, "GET", path, NULL, 200);
    assert_non_null(j);
    v = it_json_int(j, name);
    json_decref(j);
    return (uint64_t)v;
}

struct metric_wait {
    const struct it_daemon *d;
    const char *id, *name;
    uint64_t want, last;
    bool at_least;
};

static bool metric_is(void *arg)
{
    struct metric_wait *w = arg;

    w->last = it_metric(w->d, w->id, w->name);
    return w->last == w->want || (w->at_least && w->last > w->want);
}

void it_assert_metric_eventually(const struct it_daemon *d, const char *id, const char *name,
                                 uint64_t expected, int timeout_ms)
{
    struct metric_wait w = {.d = d, .id = id, .name = name, .want = expected};

    if (!it_wait_until(timeout_ms, metric_is, &w))
        fail_msg("listener %s: metric %s is %llu after %d ms, want %llu", id, name,
                 (unsigned long long)w.last, timeout_ms, (unsigned long long)expected);
}

bool it_metric_reaches(const struct it_daemon *d, const char *id, const char *name,
                       uint64_t at_least, int timeout_ms)
{
    struct metric_wait w = {.d = d, .id = id, .name = name, .want = at_least, .at_least = true};

    return it_wait_until(timeout_ms, metric_is, &w);
}

void it_assert_metric_reaches(const struct it_daemon *d, const char *id, const char *name,
                              uint64_t at_least, int timeout_ms)
{
    if (!it_metric_reaches(d, id, name, at_least, timeout_ms))
        fail_msg("listener %s: metric %s is %llu after %d ms, want %llu or more", id, name,
                 (unsigned long long)it_metric(d, id, name), timeout_ms,
                 (unsigned long long)at_least);
}

/* ---- sockets ---- */

static int make_addr(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
        return 0;
    }
    return -EINVAL;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int r;

    do {
        r = poll(&pfd, 1, left_ms(deadline));
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    return pfd.revents;
}

int it_tcp_connect(const char *host, uint16_t port, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    struct sockaddr_storage ss;
    socklen_t len, elen = sizeof(int);
    int fd, r, err = 0;

    r = make_addr(host, port, &ss, &len);
    if (r < 0)
        return r;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&ss, len) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        r = -errno;
        close(fd);
        return r;
    }
    r = wait_fd(fd, POLLOUT, deadline);
    if (r < 0) {
        close(fd);
        return r;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
        err = errno;
    if (err != 0) {
        close(fd);
        return -err;
    }
    return fd;
}

int it_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n >= 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        n = wait_fd(fd, POLLOUT, deadline);
        if (n < 0)
            return (int)n;
    }
    return 0;
}

int it_recv_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    char *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);

        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0)
            return -EPIPE;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        n = wait_fd(fd, POLLIN, deadline);
        if (n < 0)
            return (int)n;
    }
    return 0;
}

struct growbuf {
    char *p;
    size_t len, cap;
};

static int grow_append(struct growbuf *b, const char *data, size_t len)
{
    return buf_append(&b->p, &b->len, &b->cap, data, len);
}

static void grow_give(struct growbuf *b, char **ret, size_t *ret_len)
{
    if (!b->p)
        b->p = calloc(1, 1);
    if (ret)
        *ret = b->p;
    else
        free(b->p);
    if (ret_len)
        *ret_len = b->len;
}

int it_read_to_eof(int fd, int timeout_ms, char **ret, size_t *ret_len)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    struct growbuf b = {0};
    char chunk[16384];
    int r;

    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

        if (n > 0) {
            r = grow_append(&b, chunk, (size_t)n);
            if (r < 0)
                break;
            continue;
        }
        if (n == 0) {
            r = 0;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            r = -errno;
            break;
        }
        r = wait_fd(fd, POLLIN, deadline);
        if (r < 0)
            break;
    }
    grow_give(&b, ret, ret_len);
    return r;
}

int it_tcp_exchange(const char *host, uint16_t port, const void *msg, size_t len, bool shut_wr,
                    int timeout_ms, char **ret, size_t *ret_len)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    const char *p = msg;
    struct growbuf b = {0};
    char chunk[16384];
    bool shut = false;
    int fd, r;

    fd = it_tcp_connect(host, port, timeout_ms);
    if (fd < 0)
        return fd;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (len == 0 && shut_wr && !shut) {
            (void)shutdown(fd, SHUT_WR);
            shut = true;
        }
        if (len > 0)
            pfd.events |= POLLOUT;
        r = poll(&pfd, 1, left_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            r = r == 0 ? -ETIMEDOUT : -errno;
            break;
        }
        if (pfd.revents & POLLOUT) {
            n = send(fd, p, len, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                r = -errno;
                break;
            }
            if (n > 0) {
                p += n;
                len -= (size_t)n;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            n = recv(fd, chunk, sizeof(chunk), 0);
            if (n == 0) {
                r = 0;
                break;
            }
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                r = -errno;
                break;
            }
            if (n > 0 && (r = grow_append(&b, chunk, (size_t)n)) < 0)
                break;
        }
    }
    close(fd);
    if (r < 0) {
        free(b.p);
        return r;
    }
    grow_give(&b, ret, ret_len);
    return 0;
}

static void assert_same_bytes(const char *what, const void *want, size_t want_len, const void *got,
                              size_t got_len)
{
    if (want_len != got_len || memcmp(want, got, want_len) != 0) {
        fprintf(stderr, "# %s: want %zu bytes '%.*s', got %zu bytes '%.*s'\n", what, want_len,
                (int)(want_len > 80 ? 80 : want_len), (const char *)want, got_len,
                (int)(got_len > 80 ? 80 : got_len), (const char *)got);
        fail_msg("%s: the reply differs from the message", what);
    }
}

void it_assert_tcp_echo(const char *host, uint16_t port, const void *msg, size_t len)
{
    char what[128], *reply = NULL;
    size_t reply_len = 0;
    int r;

    snprintf(what, sizeof(what), "TCP echo %s port %u", host, port);
    r = it_tcp_exchange(host, port, msg, len, true, IT_IO_TIMEOUT_MS, &reply, &reply_len);
    if (r < 0)
        fail_msg("%s: %s", what, strerror(-r));
    assert_same_bytes(what, msg, len, reply, reply_len);
    free(reply);
}

ssize_t it_udp_exchange(const char *host, uint16_t port, const void *msg, size_t len, void *buf,
                        size_t cap, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    struct sockaddr_storage ss;
    socklen_t sslen;
    ssize_t n;
    int fd, r;

    r = make_addr(host, port, &ss, &sslen);
    if (r < 0)
        return r;
    fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0 || send(fd, msg, len, 0) < 0) {
        n = -errno;
        goto out;
    }
    for (;;) {
        n = recv(fd, buf, cap, 0);
        if (n >= 0)
            break;
        if (errno != EAGAIN && errno != EINTR) {
            n = -errno;
            break;
        }
        r = wait_fd(fd, POLLIN, deadline);
        if (r < 0) {
            n = r;
            break;
        }
    }
out:
    close(fd);
    return n;
}

void it_assert_udp_echo(const char *host, uint16_t port, const void *msg, size_t len)
{
    const size_t cap = 65536;
    char what[128], *buf = malloc(cap);
    ssize_t n;

    assert_non_null(buf);
    snprintf(what, sizeof(what), "UDP echo %s port %u", host, port);
    n = it_udp_exchange(host, port, msg, len, buf, cap, IT_IO_TIMEOUT_MS);
    if (n < 0) {
        free(buf);
        fail_msg("%s: %s", what, strerror((int)-n));
    }
    assert_same_bytes(what, msg, len, buf, (size_t)n);
    free(buf);
}

int it_bind(int type, const char *host, uint16_t port, uint16_t *ret_port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, r, off = 0;

    r = make_addr(host, port, &ss, &len);
    if (r < 0)
        return r;
    fd = socket(ss.ss_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) < 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        goto fail;
    if (type == SOCK_STREAM && listen(fd, 16) < 0)
        goto fail;
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        goto fail;
    *ret_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
fail:
    r = -errno;
    close(fd);
    return r;
}

bool it_tcp_is_refused(const char *host, uint16_t port)
{
    int fd = it_tcp_connect(host, port, IT_IO_TIMEOUT_MS);

    if (fd >= 0) {
        close(fd);
        return false;
    }
    return fd == -ECONNREFUSED;
}

/* ---- child processes ---- */

void it_run(const char *const *argv, const void *in, size_t in_len, int timeout_ms,
            struct it_proc *ret)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    int pin[2] = {-1, -1}, pout[2], perr[2], status = 0;
    struct growbuf out = {0}, err = {0};
    const char *inp = in;
    pid_t pid;

    global_init();
    memset(ret, 0, sizeof(ret[0]));
    if ((in && pipe2(pin, O_CLOEXEC) < 0) || pipe2(pout, O_CLOEXEC) < 0 ||
        pipe2(perr, O_CLOEXEC) < 0)
        fail_msg("pipe2: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd0 = in ? pin[0] : open("/dev/null", O_RDONLY);

        if (fd0 < 0 || dup2(fd0, 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)
            _exit(127);
        child_prepare(2);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pout[1]);
    close(perr[1]);
    if (in) {
        close(pin[0]);
        (void)fcntl(pin[1], F_SETFL, O_NONBLOCK);
        if (in_len == 0) {
            close(pin[1]);
            pin[1] = -1;
        }
    }

    while (pout[0] >= 0 || perr[0] >= 0) {
        struct pollfd pfd[3] = {
            {.fd = pout[0], .events = POLLIN},
            {.fd = perr[0], .events = POLLIN},
            {.fd = pin[1], .events = POLLOUT},
        };
        int r = poll(pfd, 3, left_ms(deadline));

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ret->timed_out = true;
            (void)kill(pid, SIGKILL);
            break;
        }
        for (int i = 0; i < 2; i++) {
            int *fd = i == 0 ? &pout[0] : &perr[0];
            struct growbuf *b = i == 0 ? &out : &err;
            char chunk[4096];
            ssize_t n;

            if (!pfd[i].revents)
                continue;
            n = read(*fd, chunk, sizeof(chunk));
            if (n > 0) {
                assert_int_equal(grow_append(b, chunk, (size_t)n), 0);
            } else if (n == 0 || errno != EINTR) {
                close(*fd);
                *fd = -1;
            }
        }
        if (pin[1] >= 0 && pfd[2].revents) {
            ssize_t n = write(pin[1], inp, in_len);

            if (n > 0) {
                inp += n;
                in_len -= (size_t)n;
            }
            if (in_len == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
    }
    if (pout[0] >= 0)
        close(pout[0]);
    if (perr[0] >= 0)
        close(perr[0]);
    if (pin[1] >= 0)
        close(pin[1]);
    if (reap(pid, ret->timed_out ? IT_EXIT_TIMEOUT_MS : left_ms(deadline) + 1000, &status) < 0) {
        ret->timed_out = true;
        (void)kill(pid, SIGKILL);
        (void)reap(pid, IT_EXIT_TIMEOUT_MS, &status);
    }
    ret->status = status;
    grow_give(&out, &ret->out, &ret->out_len);
    grow_give(&err, &ret->err, &ret->err_len);
}

void it_run_pty(const char *const *argv, const char *prompt, const char *input, int timeout_ms,
                struct it_proc *ret)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    struct growbuf out = {0};
    bool typed = false;
    int master, status = 0;
    const char *slave;
    pid_t pid;

    global_init();
    memset(ret, 0, sizeof(ret[0]));
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || !(slave = ptsname(master)))
        fail_msg("pseudo-terminal: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd;

        if (setsid() < 0)
            _exit(127);
        fd = open(slave, O_RDWR);
        if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        child_prepare(2);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }

    for (;;) {
        struct pollfd pfd = {.fd = master, .events = POLLIN};
        char chunk[4096];
        ssize_t n;
        int r;

        if (!typed && input && (!prompt || (out.p && strstr(out.p, prompt)))) {
            if (write(master, input, strlen(input)) < 0)
                fail_msg("typing on the terminal: %s", strerror(errno));
            typed = true;
        }
        r = poll(&pfd, 1, left_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ret->timed_out = true;
            (void)kill(pid, SIGKILL);
            break;
        }
        n = read(master, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EIO: the program closed its end of the terminal */
        assert_int_equal(grow_append(&out, chunk, (size_t)n), 0);
    }
    close(master);
    if (reap(pid, IT_EXIT_TIMEOUT_MS, &status) < 0) {
        ret->timed_out = true;
        (void)kill(pid, SIGKILL);
        (void)reap(pid, IT_EXIT_TIMEOUT_MS, &status);
    }
    ret->status = status;
    grow_give(&out, &ret->out, &ret->out_len);
    ret->err = calloc(1, 1);
    assert_non_null(ret->err);
}

void it_proc_fini(struct it_proc *p)
{
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

int it_proc_exit_code(const struct it_proc *p)
{
    if (p->timed_out || !WIFEXITED(p->status))
        return -1;
    return WEXITSTATUS(p->status);
}

/* ---- faults ---- */

bool it_which(const char *name, char *buf, size_t cap)
{
    const char *path = getenv("PATH");

    if (strchr(name, '/')) {
        if (access(name, X_OK) < 0 || (size_t)snprintf(buf, cap, "%s", name) >= cap)
            return false;
        return true;
    }
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;;) {
        const char *end = strchrnul(p, ':');
        int n = end == p ? snprintf(buf, cap, "./%s", name)
                         : snprintf(buf, cap, "%.*s/%s", (int)(end - p), p, name);

        if (n > 0 && (size_t)n < cap && access(buf, X_OK) == 0)
            return true;
        if (*end == '\0')
            return false;
        p = end + 1;
    }
}

void it_make_certificate(const char *cert, const char *key)
{
    char openssl[IT_PATH_MAX];
    struct it_proc p;

    assert_true(it_which("openssl", openssl, sizeof(openssl)));
    it_run((const char *const[]){openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                 "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                                 "/CN=localhost", "-addext",
                                 "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key,
                                 "-out", cert, NULL},
           NULL, 0, 20000, &p);
    if (it_proc_exit_code(&p) != 0)
        fprintf(stderr, "# openssl req: %s\n", p.err);
    assert_int_equal(it_proc_exit_code(&p), 0);
    it_proc_fini(&p);
}

/* Writes s to f as one single-quoted shell word. */
static void shell_word(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

int it_daemon_start_wrapped(struct it_daemon *d, const struct it_daemon_opts *opts,
                            const char *const *wrapper, const char *const *env)
{
    static unsigned seq;
    char script[IT_PATH_MAX], prog[IT_PATH_MAX];
    char *bin;
    FILE *f;
    int r;

    assert_non_null(wrapper);
    assert_non_null(wrapper[0]);
    if (!it_which(wrapper[0], prog, sizeof(prog)))
        return -ENOENT;
    bin = strdup(it_bin()); /* setenv() below may free what getenv() returned */
    assert_non_null(bin);
    r = snprintf(script, sizeof(script), "%s/wrap-%u.sh", opts->dir, ++seq);
    if (r < 0 || (size_t)r >= sizeof(script)) {
        free(bin);
        return -ENAMETOOLONG;
    }
    f = fopen(script, "we");
    if (!f) {
        r = -errno;
        free(bin);
        return r;
    }
    fputs("#!/bin/sh\n", f);
    for (size_t i = 0; env && env[i]; i++) {
        const char *eq = strchr(env[i], '=');

        assert_non_null(eq);
        fprintf(f, "export %.*s=", (int)(eq - env[i]), env[i]);
        shell_word(f, eq + 1);
        fputc('\n', f);
    }
    fputs("exec ", f);
    shell_word(f, prog);
    for (size_t i = 1; wrapper[i]; i++) {
        fputc(' ', f);
        shell_word(f, wrapper[i]);
    }
    fputc(' ', f);
    shell_word(f, bin);
    fputs(" \"$@\"\n", f);
    r = ferror(f) ? -EIO : 0;
    if (fclose(f) != 0 && r == 0)
        r = -errno;
    if (r == 0 && chmod(script, 0700) < 0)
        r = -errno;
    if (r == 0) {
        /* it_daemon_start() runs $SOCKSERV_BIN: the script, for this one start. */
        setenv("SOCKSERV_BIN", script, 1);
        r = it_daemon_start(d, opts);
        setenv("SOCKSERV_BIN", bin, 1);
    }
    free(bin);
    return r;
}

/* The number of entries of /proc/PID/DIR, or a negative errno. */
static int proc_entries(pid_t pid, const char *dir)
{
    char path[64];
    struct dirent *e;
    int n = 0;
    DIR *dp;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, dir);
    dp = opendir(path);
    if (!dp)
        return -errno;
    while ((e = readdir(dp)))
        n += e->d_name[0] != '.';
    closedir(dp);
    return n;
}

int it_threads_each(pid_t pid, void (*fn)(void *ctx, pid_t tid, const char *comm), void *ctx)
{
    char path[64], comm_path[64 + 256 + 8];
    struct dirent *e;
    DIR *dp;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    dp = opendir(path);
    if (!dp)
        return -errno;
    while ((e = readdir(dp))) {
        char *comm;

        if (e->d_name[0] == '.')
            continue;
        snprintf(comm_path, sizeof(comm_path), "%s/%s/comm", path, e->d_name);
        comm = it_file_read(comm_path, NULL);
        if (comm)
            comm[strcspn(comm, "\n")] = '\0';
        fn(ctx, (pid_t)atoi(e->d_name), comm);
        free(comm);
    }
    closedir(dp);
    return 0;
}

static void count_working(void *ctx, pid_t tid, const char *comm)
{
    (void)tid;
    *(int *)ctx += comm && strcmp(comm, "ss-idle") != 0;
}

/* pid's threads but the parked ones of its runners' pool, called "ss-idle" (core/thread.h:
 * kept for the next runner, not a runner's thread left behind), or a negative errno. */
static int working_threads(pid_t pid)
{
    int n = 0, r = it_threads_each(pid, count_working, &n);

    return r < 0 ? r : n;
}

int it_proc_fds(pid_t pid)
{
    return proc_entries(pid, "fd");
}

void it_resources_take(const struct it_daemon *d, struct it_resources *ret)
{
    assert_true(d->pid > 0);
    ret->pid = d->pid;
    ret->fds = proc_entries(d->pid, "fd");
    ret->threads = working_threads(d->pid);
    if (ret->fds < 0 || ret->threads < 0)
        fail_msg("cannot count the daemon's fds and threads (pid %d): %s", (int)d->pid,
                 strerror(-(ret->fds < 0 ? ret->fds : ret->threads)));
}

struct settle {
    const struct it_daemon *d;
    struct it_resources last;
    int same; /* samples in a row equal to last */
};

static bool has_settled(void *arg)
{
    struct settle *s = arg;
    struct it_resources now;

    it_resources_take(s->d, &now);
    if (now.fds == s->last.fds && now.threads == s->last.threads) {
        s->same++;
    } else {
        s->last = now;
        s->same = 1;
    }
    return s->same >= 5;
}

void it_resources_settle(const struct it_daemon *d, struct it_resources *ret)
{
    struct settle s = {.d = d};

    if (!it_wait_until(IT_WAIT_MS, has_settled, &s))
        fail_msg("the daemon's fds and threads did not hold still for %d ms within %d ms",
                 5 * IT_POLL_INTERVAL_MS, IT_WAIT_MS);
    *ret = s.last;
}

static bool resources_are(void *arg)
{
    const struct it_resources *base = arg;

    return proc_entries(base->pid, "fd") == base->fds &&
           working_threads(base->pid) == base->threads;
}

/* Prints what each of pid's fds is, for a failure message. */
static void print_fds(pid_t pid)
{
    char path[64], link[IT_PATH_MAX + 64], target[IT_PATH_MAX];
    struct dirent *e;
    DIR *dp;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    dp = opendir(path);
    if (!dp)
        return;
    while ((e = readdir(dp))) {
        ssize_t n;

        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        n = readlink(link, target, sizeof(target) - 1);
        target[n < 0 ? 0 : n] = '\0';
        fprintf(stderr, "#   fd %s -> %s\n", e->d_name, target);
    }
    closedir(dp);
}

void it_assert_resources_back(const struct it_daemon *d, const struct it_resources *base,
                              int timeout_ms)
{
    struct it_resources now;

    assert_int_equal(d->pid, base->pid);
    if (it_wait_until(timeout_ms, resources_are, (void *)base))
        return;
    it_resources_take(d, &now);
    fprintf(stderr, "# the daemon's fds now:\n");
    print_fds(d->pid);
    fail_msg("after %d ms the daemon holds %d fds and %d threads, %d and %d before", timeout_ms,
             now.fds, now.threads, base->fds, base->threads);
}

void it_assert_no_sanitizer_report(const struct it_daemon *d)
{
    static const char *const reports[] = {
        "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",     "LeakSanitizer has encountered",
        "runtime error:",          "WARNING: ThreadSanitizer",
    };
    char *log = it_daemon_stderr(d);

    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++) {
        if (strstr(log, reports[i])) {
            it_daemon_dump_stderr(d);
            free(log);
            fail_msg("the daemon's log holds a sanitizer report (\"%s\")", reports[i]);
        }
    }
    free(log);
}

void it_assert_daemon_alive(const struct it_daemon *d)
{
    siginfo_t info = {0};
    json_t *j;

    if (d->exited || d->pid <= 0)
        fail_msg("the daemon is not running (%s)",
                 d->exited ? it_status_str(d->status) : "never started");
    /* WNOWAIT: look without reaping, so that a later wait still sees the status. */
    if (waitid(P_PID, (id_t)d->pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0)
        fail_msg("waitid(%d): %s", (int)d->pid, strerror(errno));
    if (info.si_pid == d->pid) {
        it_daemon_dump_stderr(d);
        fail_msg("the daemon has ended (si_code %d, status %d)", info.si_code, info.si_status);
    }
    j = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);
    assert_non_null(j);
    assert_string_equal(it_json_str(j, "status"), "ok");
    json_decref(j);
}

/* The socket among pid's fds whose peer is want (want_len bytes), copied with pidfd_getfd(2),
 * or -1. */
static int socket_peer_of(pid_t pid, const struct sockaddr_storage *want, socklen_t want_len)
{
    char path[64];
    struct dirent *e;
    int pidfd, found = -1;
    DIR *dp;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    dp = opendir(path);
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    while (dp && pidfd >= 0 && found < 0 && (e = readdir(dp))) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd;

        if (e->d_name[0] == '.')
            continue;
        fd = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(e->d_name), 0);
        if (fd < 0)
            continue;
        if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 && len == want_len &&
            memcmp(&peer, want, len) == 0)
            found = fd;
        else
            close(fd);
    }
    if (pidfd >= 0)
        close(pidfd);
    if (dp)
        closedir(dp);
    return found;
}

struct socket_search {
    const struct it_daemon *d;
    struct sockaddr_storage me;
    socklen_t len;
    int fd;
};

static bool socket_found(void *arg)
{
    struct socket_search *q = arg;
    pid_t kids[64];
    int n = it_children(q->d, kids, 64);

    q->fd = socket_peer_of(q->d->pid, &q->me, q->len);
    for (int i = 0; q->fd < 0 && i < n && i < 64; i++)
        q->fd = socket_peer_of(kids[i], &q->me, q->len);
    return q->fd >= 0;
}

int it_daemon_socket_of(const struct it_daemon *d, int client_fd)
{
    struct socket_search q = {.d = d, .len = sizeof(q.me), .fd = -1};

    assert_int_equal(getsockname(client_fd, (struct sockaddr *)&q.me, &q.len), 0);
    return it_wait_until(IT_WAIT_MS, socket_found, &q) ? q.fd : -1;
}

int it_children(const struct it_daemon *d, pid_t *pids, int cap)
{
    char path[64 + 256];
    struct dirent *e;
    DIR *dp;
    int n = 0;

    assert_true(d->pid > 0);
    snprintf(path, sizeof(path), "/proc/%d/task", (int)d->pid);
    dp = opendir(path);
    if (!dp)
        fail_msg("cannot list the daemon's threads (pid %d): %s", (int)d->pid, strerror(errno));
    while ((e = readdir(dp))) {
        char *text, *p, *end;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)d->pid, e->d_name);
        text = it_file_read(path, NULL);
        if (!text)
            continue; /* the thread ended meanwhile */
        for (p = text;; p = end) {
            long pid = strtol(p, &end, 10);

            if (end == p)
                break;
            if (n < cap)
                pids[n] = (pid_t)pid;
            n++;
        }
        free(text);
    }
    closedir(dp);
    return n;
}

unsigned long long it_cpu_ticks(pid_t pid)
{
    char path[64], *text, *p;
    unsigned long long utime = 0, stime = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    text = it_file_read(path, NULL);
    assert_non_null(text);
    p = strrchr(text, ')');
    assert_non_null(p);
    /* After the name: state (field 3) ... utime (14), stime (15). */
    assert_int_equal(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime), 2);
    free(text);
    return utime + stime;
}

char *it_path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);

    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

struct children_want {
    const struct it_daemon *d;
    int want;
};

static bool children_are(void *arg)
{
    const struct children_want *c = arg;

    return it_children(c->d, NULL, 0) == c->want;
}

void it_assert_children_eventually(const struct it_daemon *d, int want)
{
    struct children_want c = {.d = d, .want = want};

    if (!it_wait_until(IT_WAIT_MS, children_are, &c))
        fail_msg("children: %d, want %d", it_children(d, NULL, 0), want);
}

struct threads_bound {
    pid_t pid;
    int max;
};

static bool threads_within(void *arg)
{
    const struct threads_bound *b = arg;
    int n = working_threads(b->pid);

    return n >= 0 && n <= b->max;
}

static void print_thread(void *ctx, pid_t tid, const char *comm)
{
    (void)ctx;
    fprintf(stderr, "#   thread %d %s\n", (int)tid, comm ? comm : "(ended)");
}

/* Prints each of pid's threads with its name, for a failure message. */
static void print_threads(pid_t pid)
{
    (void)it_threads_each(pid, print_thread, NULL);
}

void it_assert_threads_at_most_eventually(const struct it_daemon *d, int max, int timeout_ms)
{
    struct threads_bound b = {.pid = d->pid, .max = max};
    int n;

    assert_true(d->pid > 0);
    if (it_wait_until(timeout_ms, threads_within, &b))
        return;
    n = working_threads(d->pid);
    fprintf(stderr, "# the daemon's threads now:\n");
    print_threads(d->pid);
    if (n < 0)
        fail_msg("cannot count the daemon's threads (pid %d): %s", (int)d->pid, strerror(-n));
    fail_msg("after %d ms the daemon runs %d threads, want at most %d", timeout_ms, n, max);
}

int it_tcp_connect_ok(uint16_t port)
{
    int fd = it_tcp_connect("127.0.0.1", port, IT_IO_TIMEOUT_MS);

    if (fd < 0)
        fail_msg("connect to port %u: %s", port, strerror(-fd));
    return fd;
}

void it_send_ok(int fd, const void *p, size_t n)
{
    int r = it_send_all(fd, p, n, IT_IO_TIMEOUT_MS);

    if (r < 0)
        fail_msg("send: %s", strerror(-r));
}

void it_send_str_ok(int fd, const char *s)
{
    it_send_ok(fd, s, strlen(s));
}

int it_read_line(int fd, char *line, size_t cap, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;

    for (size_t n = 0; n + 1 < cap; n++) {
        int r = it_recv_exact(fd, &line[n], 1, left_ms(deadline));

        if (r < 0) {
            line[n] = '\0';
            return r;
        }
        if (line[n] == '\n') {
            line[n] = '\0';
            return 0;
        }
    }
    line[cap - 1] = '\0';
    return -ENOBUFS;
}

void it_recv_line(int fd, char *line, size_t cap)
{
    int r = it_read_line(fd, line, cap, IT_IO_TIMEOUT_MS);

    if (r == -ENOBUFS)
        fail_msg("answer line too long: %.80s...", line);
    if (r < 0)
        fail_msg("reading an answer line: %s (after \"%s\")", strerror(-r), line);
}

void it_expect_line(int fd, const char *want)
{
    char line[2048];
    int r = it_read_line(fd, line, sizeof(line), IT_IO_TIMEOUT_MS);

    if (r < 0)
        fail_msg("want \"%s\", got \"%s\" and then %s", want, line, strerror(-r));
    if (strcmp(line, want) != 0)
        fail_msg("want \"%s\", got \"%s\"", want, line);
}

/* ---- HTTP written by hand ---- */

int it_http_read_head(int fd, char *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    size_t got = 0;

    buf[0] = '\0';
    while (!strstr(buf, "\r\n\r\n")) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = left_ms(deadline);
        ssize_t n;

        if (left <= 0 || got + 1 >= cap)
            return -ETIMEDOUT;
        if (poll(&pfd, 1, left) <= 0)
            continue;
        n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n == 0)
            return -EPIPE;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
        buf[got] = '\0';
    }
    if (strncmp(buf, "HTTP/1.1 ", 9) != 0)
        return -EPROTO;
    return atoi(buf + 9);
}

bool it_stream_sees(int fd, const char *needle, int timeout_ms)
{
    char buf[8192];
    size_t got = 0, keep = strlen(needle);
    int64_t deadline = it_now_ms() + timeout_ms;

    assert_true(keep < sizeof(buf) / 4);
    while (it_now_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, left_ms(deadline)) <= 0)
            return false;
        n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            return false;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, needle))
            return true;
        if (got > sizeof(buf) / 2) {
            memmove(buf, buf + got - keep, keep);
            got = keep;
        }
    }
    return false;
}

void it_wire_exchange(const struct it_daemon *d, const char *request, struct it_wire *ret)
{
    char host[64], *text, *at, *head_end;
    size_t len = 0, cap;
    int64_t t0;
    int fd, r;

    memset(ret, 0, sizeof(*ret));
    snprintf(host, sizeof(host), "127.0.0.1:%u", (unsigned)d->api_port);
    cap = strlen(request) + 64;
    text = malloc(cap);
    assert_non_null(text);
    text[0] = '\0';
    for (const char *p = request; (at = strstr(p, "HOST")); p = at + 4) {
        assert_true(len + (size_t)(at - p) + strlen(host) < cap);
        len += (size_t)snprintf(text + len, cap - len, "%.*s%s", (int)(at - p), p, host);
        request = at + 4;
    }
    len += (size_t)snprintf(text + len, cap - len, "%s", request);

    fd = it_tcp_connect("127.0.0.1", d->api_port, IT_IO_TIMEOUT_MS);
    assert_true(fd >= 0);
    t0 = it_now_ms();
    assert_int_equal(it_send_all(fd, text, len, IT_IO_TIMEOUT_MS), 0);
    free(text);
    r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, &ret->raw, &ret->raw_len);
    ret->ms = it_now_ms() - t0;
    close(fd);
    ret->closed = r == 0 || r == -ECONNRESET;
    assert_non_null(ret->raw);
    if (sscanf(ret->raw, "HTTP/1.1 %ld", &ret->http.status) != 1)
        fail_msg("no HTTP answer: '%s' (%s)", ret->raw, strerror(-r));
    head_end = strstr(ret->raw, "\r\n\r\n");
    at = strstr(ret->raw, "\r\n");
    len = head_end && at < head_end ? (size_t)(head_end - at) - 2 : 0;
    ret->http.headers = strndup(at ? at + 2 : "", len);
    ret->http.headers_len = len;
    assert_non_null(ret->http.headers);
    if (!it_http_header(&ret->http, "Content-Type", ret->http.content_type,
                        sizeof(ret->http.content_type)))
        ret->http.content_type[0] = '\0';
    len = head_end ? ret->raw_len - (size_t)(head_end + 4 - ret->raw) : 0;
    ret->http.body = strndup(head_end ? head_end + 4 : "", len);
    ret->http.body_len = len;
    assert_non_null(ret->http.body);
    if (len > 0)
        ret->http.json = json_loadb(ret->http.body, len, 0, NULL);
}

void it_wire_fini(struct it_wire *w)
{
    it_http_fini(&w->http);
    free(w->raw);
    w->raw = NULL;
}

/* ---- the backup protocol ---- */

void it_backup_put_ok(uint16_t port, const char *name, const void *p, size_t n, unsigned version)
{
    char hex[65], line[2048], want[2048];
    int fd = it_tcp_connect_ok(port);

    it_sha256_hex(p, n, hex);
    snprintf(line, sizeof(line), "PUT %s %zu %s\n", name, n, hex);
    it_send_str_ok(fd, line);
    it_expect_line(fd, "OK");
    it_send_ok(fd, p, n);
    snprintf(want, sizeof(want), "STORED %s %u %zu %s", name, version, n, hex);
    it_expect_line(fd, want);
    it_send_str_ok(fd, "QUIT\n");
    it_expect_line(fd, "BYE");
    close(fd);
}

char *it_backup_list(uint16_t port, unsigned *ret_n)
{
    struct growbuf b = {0};
    char line[2048];
    unsigned long n;
    int fd = it_tcp_connect_ok(port);

    it_send_str_ok(fd, "LIST\n");
    it_recv_line(fd, line, sizeof(line));
    if (sscanf(line, "OK %lu", &n) != 1)
        fail_msg("LIST answered \"%s\"", line);
    assert_int_equal(grow_append(&b, "", 0), 0);
    for (unsigned long i = 0; i < n; i++) {
        it_recv_line(fd, line, sizeof(line));
        assert_int_equal(grow_append(&b, line, strlen(line)), 0);
        assert_int_equal(grow_append(&b, "\n", 1), 0);
    }
    it_expect_line(fd, "END");
    close(fd);
    if (ret_n)
        *ret_n = (unsigned)n;
    return b.p;
}

void *it_backup_get(uint16_t port, const char *name, unsigned version, size_t *ret_n)
{
    char line[2048], sha[80], hex[65];
    unsigned long long size;
    unsigned long v;
    uint8_t *buf;
    int fd = it_tcp_connect_ok(port), r;

    snprintf(line, sizeof(line), "GET %s %u\n", name, version);
    it_send_str_ok(fd, line);
    it_recv_line(fd, line, sizeof(line));
    if (sscanf(line, "OK %llu %79s %lu", &size, sha, &v) != 3)
        fail_msg("GET %s %u answered \"%s\"", name, version, line);
    buf = malloc(size ? size : 1);
    assert_non_null(buf);
    r = it_recv_exact(fd, buf, size, IT_IO_TIMEOUT_MS);
    if (r < 0)
        fail_msg("restoring %s: %s", name, strerror(-r));
    it_sha256_hex(buf, size, hex);
    assert_string_equal(sha, hex);
    close(fd);
    *ret_n = size;
    return buf;
}

/* ---- small things the suites share ---- */

struct it_daemon *it_daemon_of(void **state)
{
    return &((struct it_fixture *)*state)->d;
}

unsigned it_pattern_fill(void *buf, size_t len, unsigned seed)
{
    uint8_t *p = buf;

    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
    return seed;
}

void *it_pattern(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len ? len : 1);

    assert_non_null(p);
    (void)it_pattern_fill(p, len, seed);
    return p;
}

void it_assert_metric_now(const struct it_daemon *d, const char *id, const char *name,
                          uint64_t want)
{
    uint64_t got = it_metric(d, id, name);

    if (got != want)
        fail_msg("listener %s: %s is %llu, want %llu", id, name, (unsigned long long)got,
                 (unsigned long long)want);
}

int it_echo_round_trip(int fd, const void *msg, size_t len, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    char *buf = malloc(len ? len : 1);
    int r;

    if (!buf)
        return -ENOMEM;
    r = it_send_all(fd, msg, len, timeout_ms);
    if (r == 0)
        r = it_recv_exact(fd, buf, len, left_ms(deadline));
    if (r == 0 && memcmp(buf, msg, len) != 0)
        r = -EBADMSG;
    free(buf);
    return r;
}

int it_daytime(const char *host, uint16_t port, char **ret, size_t *ret_len)
{
    int fd = it_tcp_connect(host, port, IT_IO_TIMEOUT_MS), r;

    if (ret)
        *ret = NULL;
    if (ret_len)
        *ret_len = 0;
    if (fd < 0)
        return fd;
    r = it_read_to_eof(fd, IT_IO_TIMEOUT_MS, ret, ret_len);
    close(fd);
    return r;
}

int it_connect_echoed(const char *host, uint16_t port, const char *msg)
{
    int fd = it_tcp_connect(host, port, IT_IO_TIMEOUT_MS), r;

    if (fd < 0)
        fail_msg("connect %s port %u: %s", host, port, strerror(-fd));
    r = it_echo_round_trip(fd, msg, strlen(msg), IT_IO_TIMEOUT_MS);
    if (r < 0)
        fail_msg("echo of '%s' on %s port %u: %s", msg, host, port, strerror(-r));
    return fd;
}

json_t *it_listener_patch(const struct it_daemon *d, const char *id, const char *body)
{
    char path[256];
    struct it_http r;
    json_t *j;

    snprintf(path, sizeof(path), "/api/v1/listeners/%s", id);
    assert_int_equal(
        it_http_raw(d, "PATCH", path, body, strlen(body), "application/merge-patch+json", &r), 0);
    if (r.status != 200)
        fail_msg("PATCH %s %s -> %ld %s", id, body, r.status, r.body);
    j = json_incref(r.json);
    it_http_fini(&r);
    return j;
}

char *it_dir_names(const char *dir)
{
    struct dirent **list = NULL;
    size_t cap = 1, used = 0;
    char *out;
    int n = scandir(dir, &list, NULL, alphasort);

    if (n < 0)
        return NULL;
    for (int i = 0; i < n; i++)
        cap += strlen(list[i]->d_name) + 1;
    out = calloc(1, cap);
    assert_non_null(out);
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;

        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
            used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? " " : "", name);
        free(list[i]);
    }
    free(list);
    return out;
}

void it_daemon_stop_clean(struct it_daemon *d)
{
    int64_t ms;
    int status;

    if (it_daemon_stop(d, SIGTERM, IT_EXIT_TIMEOUT_MS, &status, &ms) < 0)
        fail_msg("the daemon did not exit on SIGTERM");
    /* First: LeakSanitizer reports at exit, and makes the exit status say so too. */
    it_assert_no_sanitizer_report(d);
    if (!it_status_is_exit0(status)) {
        it_daemon_dump_stderr(d);
        fail_msg("the daemon ended with %s on SIGTERM", it_status_str(status));
    }
}

void it_daemons_stop_all(struct it_daemon *ds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct it_daemon *d = &ds[i];
        int status = 0;

        if (d->pid <= 0)
            continue;
        if (it_daemon_stop(d, SIGTERM, IT_EXIT_TIMEOUT_MS, &status, NULL) < 0 ||
            !it_status_is_exit0(status))
            it_daemon_dump_stderr(d);
        it_assert_no_sanitizer_report(d);
    }
}

void it_run_verb(const char *verb, const char *const *args, const void *in, size_t in_len,
                 int timeout_ms, struct it_proc *ret)
{
    const char *argv[32];
    size_t n = 0;

    argv[n++] = it_bin();
    argv[n++] = verb;
    for (size_t i = 0; args && args[i]; i++) {
        assert_true(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    it_run(argv, in, in_len, timeout_ms, ret);
    fprintf(stderr, "# sockserv %s", verb);
    for (size_t i = 2; i < n; i++)
        fprintf(stderr, " '%s'", argv[i]);
    fprintf(stderr, " -> %s, stdout %zu bytes '%.*s', stderr '%.*s'\n",
            ret->timed_out ? "timed out" : it_status_str(ret->status), ret->out_len,
            (int)strcspn(ret->out, "\n"), ret->out, (int)strcspn(ret->err, "\n"), ret->err);
}

void it_sha256_hex(const void *p, size_t n, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned len = 0;

    assert_int_equal(EVP_Digest(p, n, d, &len, EVP_sha256(), NULL), 1);
    assert_int_equal(len, 32);
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 0xf];
    }
    out[64] = '\0';
}

/* ---- the broker ---- */

const char *it_amqp_url(void)
{
    const char *url = getenv("SOCKSERV_TEST_AMQP");

    return url && *url ? url : NULL;
}

void it_fleet_prefix(char *buf, size_t len)
{
    static unsigned n; /* the test thread's own counter */

    snprintf(buf, len, "t%ld-%u", (long)getpid(), ++n);
}

static void broker_url(struct it_broker *b)
{
    snprintf(b->url, sizeof(b->url), "amqp://guest:guest@127.0.0.1:%u/", (unsigned)b->port);
}

bool it_broker_shared(struct it_broker *ret)
{
    const char *v = getenv("SOCKSERV_TEST_BROKER");
    const char *sp;
    char *end;
    unsigned long port;

    if (!v || !(sp = strrchr(v, ' ')) || sp == v || (size_t)(sp - v) >= sizeof(ret->dir))
        return false;
    errno = 0;
    port = strtoul(sp + 1, &end, 10);
    if (errno || *end || port == 0 || port > 65535)
        return false;
    memset(ret, 0, sizeof(ret[0]));
    memcpy(ret->dir, v, (size_t)(sp - v));
    ret->port = (uint16_t)port;
    broker_url(ret);
    return true;
}

static const char *broker_script(char *buf, size_t cap)
{
    const char *root = getenv("SOCKSERV_SOURCE_ROOT");

    if (!root || !*root)
        fail_msg("SOCKSERV_SOURCE_ROOT is not set: run the tests with meson test");
    snprintf(buf, cap, "%s/scripts/broker.sh", root);
    return buf;
}

/* scripts/broker.sh VERB [DIR PORT] [args], under `env BROKER_OWNER_PID=...` when owner. */
static void broker_exec(const struct it_broker *b, const char *verb, const char *const *args,
                        bool owner, int timeout_ms, struct it_proc *ret)
{
    char script[IT_PATH_MAX], port[16], owner_env[64], tls_env[IT_PATH_MAX + 32];
    const char *argv[48];
    size_t n = 0;

    if (owner) {
        snprintf(owner_env, sizeof(owner_env), "BROKER_OWNER_PID=%ld", (long)getpid());
        argv[n++] = "/usr/bin/env";
        argv[n++] = owner_env;
        if (b && b->tls_dir[0]) {
            snprintf(tls_env, sizeof(tls_env), "BROKER_TLS_DIR=%s", b->tls_dir);
            argv[n++] = tls_env;
        }
    }
    argv[n++] = broker_script(script, sizeof(script));
    argv[n++] = verb;
    if (b) {
        snprintf(port, sizeof(port), "%u", (unsigned)b->port);
        argv[n++] = b->dir;
        argv[n++] = port;
    }
    for (size_t i = 0; args && args[i]; i++) {
        assert_true(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    it_run(argv, NULL, 0, timeout_ms, ret);
}

void it_broker_run(const struct it_broker *b, const char *verb, const char *const *args,
                   int timeout_ms, struct it_proc *ret)
{
    struct it_broker shared;

    if (!b) {
        if (!it_broker_shared(&shared))
            fail_msg("SOCKSERV_TEST_BROKER is not set: run the tests with scripts/test.sh");
        b = &shared;
    }
    broker_exec(b, verb, args, false, timeout_ms, ret);
}

static int proc_result(const char *what, struct it_proc *p)
{
    int code = it_proc_exit_code(p);

    if (code != 0)
        fprintf(stderr, "# broker.sh %s -> %s%s\n%s%s", what, p->timed_out ? "timed out, " : "",
                it_status_str(p->status), p->out, p->err);
    it_proc_fini(p);
    return code;
}

int it_broker_ctl_at(const struct it_broker *b, const char *const *args)
{
    struct it_proc p;

    it_broker_run(b, "ctl", args, 60000, &p);
    return proc_result("ctl", &p);
}

int it_broker_ctl(const char *const *args)
{
    return it_broker_ctl_at(NULL, args);
}

static int broker_start(struct it_broker *b)
{
    struct it_proc p;

    broker_exec(b, "start", NULL, true, 150000, &p);
    return proc_result("start", &p) == 0 ? 0 : -EIO;
}

int it_broker_private_start_tls(struct it_broker *b, const char *dir, const char *tls_dir)
{
    unsigned from = 28000 + (unsigned)(getpid() % 50) * 20;
    int r = -EADDRINUSE;

    memset(b, 0, sizeof(b[0]));
    snprintf(b->dir, sizeof(b->dir), "%s/broker", dir);
    if (tls_dir)
        snprintf(b->tls_dir, sizeof(b->tls_dir), "%s", tls_dir);
    /* Two tries: another program may take the range between the look-up and the start. */
    for (int attempt = 0; attempt < 2 && r < 0; attempt++) {
        char from_s[16];
        const char *args[] = {from_s, "29980", NULL};
        struct it_proc p;
        unsigned long port;

        snprintf(from_s, sizeof(from_s), "%u", from + (unsigned)attempt * 20);
        broker_exec(NULL, "free-port", args, false, 30000, &p);
        port = it_proc_exit_code(&p) == 0 ? strtoul(p.out, NULL, 10) : 0;
        it_proc_fini(&p);
        if (port == 0 || port > 65000)
            return -EADDRINUSE;
        b->port = (uint16_t)port;
        b->tls_port = tls_dir ? (uint16_t)(port + 14) : 0;
        broker_url(b);
        r = broker_start(b);
    }
    return r;
}

bool it_have_rabbitmq(void)
{
    return access("/usr/lib/rabbitmq/bin/rabbitmq-server", X_OK) == 0;
}

int it_broker_private_start(struct it_broker *b, const char *dir)
{
    return it_broker_private_start_tls(b, dir, NULL);
}

int it_broker_private_restart(struct it_broker *b)
{
    return broker_start(b);
}

void it_broker_private_stop(struct it_broker *b)
{
    struct it_proc p;

    if (!b->port)
        return;
    broker_exec(b, "stop", NULL, false, 90000, &p);
    (void)proc_result("stop", &p);
}

pid_t it_broker_pid(const struct it_broker *b)
{
    char path[IT_PATH_MAX + 16];
    char *text;
    long pid;

    snprintf(path, sizeof(path), "%s/rabbit.pid", b->dir);
    text = it_file_read(path, NULL);
    if (!text)
        return 0;
    pid = strtol(text, NULL, 10);
    free(text);
    if (pid <= 0 || kill((pid_t)pid, 0) < 0)
        return 0;
    return (pid_t)pid;
}

/* ---- an AMQP peer ---- */

struct it_amqp_pending {
    struct it_amqp_msg m;
    struct it_amqp_pending *next;
};

struct it_amqp {
    amqp_connection_state_t conn;
    bool failed;
    bool confirm;           /* the channel is in confirm mode */
    uint64_t published;     /* the last publish's sequence number */
    uint64_t acked, nacked; /* the highest sequence number acked, nacked */
    bool returned;          /* a basic.return came since the last publish */
    char stream_tag[256];   /* the consumer whose messages are acked */
    struct it_amqp_pending *head, **tail;
    char err[256];
};

static void bytes_copy(char *dst, size_t cap, amqp_bytes_t b)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;

    if (n)
        memcpy(dst, b.bytes, n);
    dst[n] = '\0';
}

static const char *reply_text(amqp_rpc_reply_t r, char *buf, size_t cap)
{
    char text[200];

    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(buf, cap, "ok");
        break;
    case AMQP_RESPONSE_NONE:
        snprintf(buf, cap, "no reply");
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(buf, cap, "%s", amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *c = r.reply.decoded;

            bytes_copy(text, sizeof(text), c->reply_text);
            snprintf(buf, cap, "connection closed: %u %s", c->reply_code, text);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *c = r.reply.decoded;

            bytes_copy(text, sizeof(text), c->reply_text);
            snprintf(buf, cap, "channel closed: %u %s", c->reply_code, text);
        } else {
            snprintf(buf, cap, "server method 0x%08x", r.reply.id);
        }
        break;
    }
    return buf;
}

/* Asserts the last synchronous call on a's channel went well. */
static void amqp_ok(struct it_amqp *a, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(a->conn);
    char text[256];

    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        a->failed = true;
        fail_msg("amqp %s: %s", what, reply_text(r, text, sizeof(text)));
    }
}

struct it_amqp *it_amqp_open(const char *url, char *err, size_t cap)
{
    struct amqp_connection_info ci;
    struct timeval tv = {.tv_sec = IT_IO_TIMEOUT_MS / 1000};
    struct it_amqp *a;
    amqp_socket_t *sock;
    amqp_rpc_reply_t r;
    char *u = strdup(url), text[256], root[] = "/";
    int s;

    global_init();
    a = calloc(1, sizeof(*a));
    if (!u || !a) {
        snprintf(err, cap, "out of memory");
        goto out_free;
    }
    a->tail = &a->head;
    amqp_default_connection_info(&ci);
    if (amqp_parse_url(u, &ci) != AMQP_STATUS_OK) {
        snprintf(err, cap, "bad AMQP URL %s", url);
        goto out_free;
    }
    if (!ci.vhost || !*ci.vhost)
        ci.vhost = root; /* "amqp://host/": rabbitmq-c parses an empty vhost, RabbitMQ means "/" */
    a->conn = amqp_new_connection();
    sock = a->conn ? amqp_tcp_socket_new(a->conn) : NULL;
    if (!sock) {
        snprintf(err, cap, "amqp_tcp_socket_new failed");
        goto out_destroy;
    }
    (void)amqp_set_handshake_timeout(a->conn, &tv);
    (void)amqp_set_rpc_timeout(a->conn, &tv);
    s = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
    if (s != AMQP_STATUS_OK) {
        snprintf(err, cap, "connect %s:%d: %s", ci.host, ci.port, amqp_error_string2(s));
        goto out_destroy;
    }
    r = amqp_login(a->conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        snprintf(err, cap, "login: %s", reply_text(r, text, sizeof(text)));
        goto out_destroy;
    }
    amqp_channel_open(a->conn, 1);
    r = amqp_get_rpc_reply(a->conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        snprintf(err, cap, "channel.open: %s", reply_text(r, text, sizeof(text)));
        goto out_destroy;
    }
    free(u);
    return a;

out_destroy:
    if (a->conn)
        amqp_destroy_connection(a->conn);
out_free:
    free(a);
    free(u);
    return NULL;
}

struct it_amqp *it_amqp_open_ok(const char *url)
{
    char err[256];
    struct it_amqp *a = it_amqp_open(url, err, sizeof(err));

    if (!a)
        fail_msg("AMQP connection to %s: %s", url, err);
    return a;
}

void it_amqp_close(struct it_amqp *a)
{
    if (!a)
        return;
    if (!a->failed) {
        (void)amqp_channel_close(a->conn, 1, AMQP_REPLY_SUCCESS);
        (void)amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(a->conn);
    while (a->head) {
        struct it_amqp_pending *p = a->head;

        a->head = p->next;
        it_amqp_msg_fini(&p->m);
        free(p);
    }
    free(a);
}

void it_amqp_exchange(struct it_amqp *a, const char *exchange)
{
    amqp_exchange_declare(a->conn, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes("topic"), 0,
                          1, 0, 0, amqp_empty_table);
    amqp_ok(a, "exchange.declare");
}

char *it_amqp_queue_bind(struct it_amqp *a, const char *queue, const char *exchange,
                         const char *const *patterns)
{
    bool named = queue && *queue;
    amqp_queue_declare_ok_t *ok;
    char *name;

    ok = amqp_queue_declare(a->conn, 1, named ? amqp_cstring_bytes(queue) : amqp_empty_bytes, 0,
                            named, !named, !named, amqp_empty_table);
    amqp_ok(a, "queue.declare");
    assert_non_null(ok);
    name = malloc(ok->queue.len + 1);
    assert_non_null(name);
    bytes_copy(name, ok->queue.len + 1, ok->queue);
    for (size_t i = 0; patterns && patterns[i]; i++) {
        amqp_queue_bind(a->conn, 1, amqp_cstring_bytes(name), amqp_cstring_bytes(exchange),
                        amqp_cstring_bytes(patterns[i]), amqp_empty_table);
        amqp_ok(a, "queue.bind");
    }
    return name;
}

void it_amqp_consume(struct it_amqp *a, const char *queue)
{
    amqp_basic_consume(a->conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 1, 0,
                       amqp_empty_table);
    amqp_ok(a, "basic.consume");
}

char *it_amqp_subscribe(struct it_amqp *a, const char *queue, const char *exchange,
                        const char *const *patterns)
{
    char *name = it_amqp_queue_bind(a, queue, exchange, patterns);

    it_amqp_consume(a, name);
    return name;
}

void it_amqp_reply_to(struct it_amqp *a)
{
    amqp_basic_consume(a->conn, 1, amqp_cstring_bytes("amq.rabbitmq.reply-to"), amqp_empty_bytes, 0,
                       1, 0, amqp_empty_table);
    amqp_ok(a, "basic.consume amq.rabbitmq.reply-to");
}

void it_amqp_stream(struct it_amqp *a, const char *queue, int64_t offset)
{
    amqp_table_entry_t arg = {.key = amqp_cstring_bytes("x-stream-offset")};
    amqp_table_t args = {.num_entries = 1, .entries = &arg};
    amqp_basic_consume_ok_t *ok;

    if (offset < 0) {
        arg.value.kind = AMQP_FIELD_KIND_UTF8;
        arg.value.value.bytes = amqp_cstring_bytes("first");
    } else {
        arg.value.kind = AMQP_FIELD_KIND_I64;
        arg.value.value.i64 = offset;
    }
    amqp_basic_qos(a->conn, 1, 0, 64, 0);
    amqp_ok(a, "basic.qos");
    ok = amqp_basic_consume(a->conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, args);
    amqp_ok(a, "basic.consume (stream)");
    assert_non_null(ok);
    bytes_copy(a->stream_tag, sizeof(a->stream_tag), ok->consumer_tag);
}

static int64_t header_int(const amqp_table_t *t, const char *name)
{
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];

        if (e->key.len != strlen(name) || memcmp(e->key.bytes, name, e->key.len) != 0)
            continue;
        switch (e->value.kind) {
        case AMQP_FIELD_KIND_I8:
            return e->value.value.i8;
        case AMQP_FIELD_KIND_U8:
            return e->value.value.u8;
        case AMQP_FIELD_KIND_I16:
            return e->value.value.i16;
        case AMQP_FIELD_KIND_U16:
            return e->value.value.u16;
        case AMQP_FIELD_KIND_I32:
            return e->value.value.i32;
        case AMQP_FIELD_KIND_U32:
            return e->value.value.u32;
        case AMQP_FIELD_KIND_I64:
        case AMQP_FIELD_KIND_TIMESTAMP:
            return e->value.value.i64;
        case AMQP_FIELD_KIND_U64:
            return (int64_t)e->value.value.u64;
        default:
            return -1;
        }
    }
    return -1;
}

/* Reads the content of a delivery whose method frame came; queues it (acks a stream's). */
static int read_delivery(struct it_amqp *a, const amqp_frame_t *frame)
{
    amqp_basic_deliver_t *d = frame->payload.method.decoded;
    amqp_basic_properties_t *pr;
    struct it_amqp_pending *p;
    amqp_message_t msg;
    amqp_rpc_reply_t r;
    char tag[256];
    json_error_t jerr;

    p = calloc(1, sizeof(*p));
    assert_non_null(p);
    bytes_copy(p->m.exchange, sizeof(p->m.exchange), d->exchange);
    bytes_copy(p->m.routing_key, sizeof(p->m.routing_key), d->routing_key);
    bytes_copy(tag, sizeof(tag), d->consumer_tag);
    p->m.delivery_tag = d->delivery_tag;
    p->m.redelivered = d->redelivered;
    r = amqp_read_message(a->conn, frame->channel, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        free(p);
        return -EIO;
    }
    pr = &msg.properties;
    if (pr->_flags & AMQP_BASIC_TYPE_FLAG)
        bytes_copy(p->m.type, sizeof(p->m.type), pr->type);
    if (pr->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        bytes_copy(p->m.message_id, sizeof(p->m.message_id), pr->message_id);
    if (pr->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        bytes_copy(p->m.correlation_id, sizeof(p->m.correlation_id), pr->correlation_id);
    if (pr->_flags & AMQP_BASIC_REPLY_TO_FLAG)
        bytes_copy(p->m.reply_to, sizeof(p->m.reply_to), pr->reply_to);
    if (pr->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        bytes_copy(p->m.content_type, sizeof(p->m.content_type), pr->content_type);
    if (pr->_flags & AMQP_BASIC_EXPIRATION_FLAG)
        bytes_copy(p->m.expiration, sizeof(p->m.expiration), pr->expiration);
    if (pr->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)
        p->m.delivery_mode = pr->delivery_mode;
    p->m.stream_offset =
        pr->_flags & AMQP_BASIC_HEADERS_FLAG ? header_int(&pr->headers, "x-stream-offset") : -1;
    p->m.body = malloc(msg.body.len + 1);
    assert_non_null(p->m.body);
    if (msg.body.len)
        memcpy(p->m.body, msg.body.bytes, msg.body.len);
    p->m.body[msg.body.len] = '\0';
    p->m.body_len = msg.body.len;
    p->m.json = json_loadb(p->m.body, p->m.body_len, 0, &jerr);
    amqp_destroy_message(&msg);
    if (a->stream_tag[0] && strcmp(tag, a->stream_tag) == 0)
        (void)amqp_basic_ack(a->conn, 1, p->m.delivery_tag, 0);
    *a->tail = p;
    a->tail = &p->next;
    return 0;
}

/* Reads one frame within deadline and handles it. 0, -ETIMEDOUT, -EIO. */
static int amqp_pump(struct it_amqp *a, int64_t deadline)
{
    struct timeval tv;
    amqp_frame_t frame;
    int left = left_ms(deadline), s;

    if (a->failed)
        return -EIO;
    tv.tv_sec = left / 1000;
    tv.tv_usec = (left % 1000) * 1000;
    amqp_maybe_release_buffers(a->conn);
    s = amqp_simple_wait_frame_noblock(a->conn, &frame, &tv);
    if (s == AMQP_STATUS_TIMEOUT)
        return -ETIMEDOUT;
    if (s != AMQP_STATUS_OK) {
        snprintf(a->err, sizeof(a->err), "%s", amqp_error_string2(s));
        a->failed = true;
        return -EIO;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD)
        return 0;
    switch (frame.payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD:
        if (read_delivery(a, &frame) < 0) {
            a->failed = true;
            return -EIO;
        }
        return 0;
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *k = frame.payload.method.decoded;

        if (k->delivery_tag > a->acked)
            a->acked = k->delivery_tag;
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *k = frame.payload.method.decoded;

        if (k->delivery_tag > a->nacked)
            a->nacked = k->delivery_tag;
        return 0;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_message_t msg;

        a->returned = true;
        if (amqp_read_message(a->conn, frame.channel, &msg, 0).reply_type != AMQP_RESPONSE_NORMAL) {
            a->failed = true;
            return -EIO;
        }
        amqp_destroy_message(&msg);
        return 0;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        snprintf(a->err, sizeof(a->err), "the broker closed the %s",
                 frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ? "channel" : "connection");
        a->failed = true;
        return -EIO;
    default:
        return 0;
    }
}

int it_amqp_next(struct it_amqp *a, int timeout_ms, struct it_amqp_msg *ret)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    struct it_amqp_pending *p;

    while (!a->head) {
        int r = amqp_pump(a, deadline);

        if (r < 0)
            return r;
        if (!a->head && left_ms(deadline) == 0)
            return -ETIMEDOUT;
    }
    p = a->head;
    a->head = p->next;
    if (!a->head)
        a->tail = &a->head;
    *ret = p->m;
    free(p);
    return 0;
}

int it_amqp_next_matching(struct it_amqp *a, const char *pattern, int timeout_ms,
                          struct it_amqp_msg *ret)
{
    int64_t deadline = it_now_ms() + timeout_ms;

    for (;;) {
        struct it_amqp_msg m;
        int r = it_amqp_next(a, left_ms(deadline), &m);

        if (r < 0)
            return r;
        if (fnmatch(pattern, m.routing_key, 0) == 0) {
            *ret = m;
            return 0;
        }
        it_amqp_msg_fini(&m);
    }
}

void it_amqp_msg_fini(struct it_amqp_msg *m)
{
    free(m->body);
    json_decref(m->json);
    memset(m, 0, sizeof(m[0]));
}

int it_amqp_publish(struct it_amqp *a, const char *exchange, const char *rk, const void *body,
                    size_t len, const struct it_amqp_pub *props)
{
    static const struct it_amqp_pub none;
    amqp_basic_properties_t p = {0};
    int64_t deadline = it_now_ms() + IT_IO_TIMEOUT_MS;
    uint64_t seq;
    int s;

    if (!props)
        props = &none;
    if (!a->confirm) {
        amqp_confirm_select(a->conn, 1);
        amqp_ok(a, "confirm.select");
        a->confirm = true;
    }
#define PROP(member, flag)                                                                         \
    do {                                                                                           \
        if (props->member) {                                                                       \
            p._flags |= flag;                                                                      \
            p.member = amqp_cstring_bytes(props->member);                                          \
        }                                                                                          \
    } while (0)
    PROP(content_type, AMQP_BASIC_CONTENT_TYPE_FLAG);
    PROP(type, AMQP_BASIC_TYPE_FLAG);
    PROP(message_id, AMQP_BASIC_MESSAGE_ID_FLAG);
    PROP(correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG);
    PROP(reply_to, AMQP_BASIC_REPLY_TO_FLAG);
    PROP(expiration, AMQP_BASIC_EXPIRATION_FLAG);
#undef PROP
    if (props->delivery_mode) {
        p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        p.delivery_mode = (uint8_t)props->delivery_mode;
    }
    a->returned = false;
    s = amqp_basic_publish(a->conn, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(rk),
                           props->mandatory, 0, &p,
                           (amqp_bytes_t){.len = len, .bytes = (void *)body});
    if (s != AMQP_STATUS_OK) {
        snprintf(a->err, sizeof(a->err), "%s", amqp_error_string2(s));
        return -EIO;
    }
    seq = ++a->published;
    while (a->acked < seq && a->nacked < seq) {
        int r = amqp_pump(a, deadline);

        if (r < 0)
            return r == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
    }
    if (a->nacked >= seq)
        return -EPROTO;
    return a->returned ? -ENOENT : 0;
}

/* ---- fleet daemons and the fleet command ---- */

void it_fleet_node_start(struct it_daemon *d, const struct it_fleet_node_opts *o)
{
    char state_dir[IT_PATH_MAX];
    const char *args[64];
    size_t n = 0;

    snprintf(state_dir, sizeof(state_dir), "%s/%s", o->dir, o->node);
    args[n++] = "--amqp";
    args[n++] = o->url;
    args[n++] = "--node";
    args[n++] = o->node;
    args[n++] = "--amqp-prefix";
    args[n++] = o->prefix;
    args[n++] = "--amqp-heartbeat";
    args[n++] = "2";
    args[n++] = "--fleet-status-interval";
    args[n++] = o->status_interval ? o->status_interval : "2s";
    for (size_t i = 0; o->labels && o->labels[i]; i++) {
        assert_true(n < sizeof(args) / sizeof(args[0]) - 3);
        args[n++] = "--label";
        args[n++] = o->labels[i];
    }
    for (size_t i = 0; o->extra_args && o->extra_args[i]; i++) {
        assert_true(n < sizeof(args) / sizeof(args[0]) - 2);
        args[n++] = o->extra_args[i];
    }
    args[n] = NULL;
    it_daemon_start_ok(
        d, &(struct it_daemon_opts){.dir = o->dir, .state_dir = state_dir, .extra_args = args});
}

json_t *it_fleet_health(const struct it_daemon *d)
{
    json_t *h = it_http_expect(d, "GET", "/api/v1/health", NULL, 200);
    json_t *f = json_incref(json_object_get(h, "fleet"));

    json_decref(h);
    return f;
}

const char *it_fleet_state(const struct it_daemon *d, char *buf, size_t cap)
{
    json_t *f = it_fleet_health(d);
    const char *s = json_string_value(json_object_get(f, "state"));

    snprintf(buf, cap, "%s", s ? s : "");
    json_decref(f);
    return buf;
}

struct fleet_state_wait {
    const struct it_daemon *d;
    const char *state;
};

static bool fleet_state_is(void *arg)
{
    struct fleet_state_wait *w = arg;
    char buf[64];

    return strcmp(it_fleet_state(w->d, buf, sizeof(buf)), w->state) == 0;
}

bool it_fleet_wait_state(const struct it_daemon *d, const char *state, int timeout_ms)
{
    struct fleet_state_wait w = {d, state};
    json_t *f;
    char *text;

    if (it_wait_until(timeout_ms, fleet_state_is, &w))
        return true;
    f = it_fleet_health(d);
    text = f ? json_dumps(f, JSON_COMPACT) : NULL;
    fprintf(stderr, "# fleet state not %s within %d ms: %s\n", state, timeout_ms,
            text ? text : "(no fleet member in health)");
    free(text);
    json_decref(f);
    return false;
}

void it_fleet_assert_state(const struct it_daemon *d, const char *state, int timeout_ms)
{
    if (!it_fleet_wait_state(d, state, timeout_ms)) {
        it_daemon_dump_stderr(d);
        fail_msg("the daemon's bridge did not become %s", state);
    }
}

void it_fleet_cli(const char *url, const char *prefix, const char *const *args, int timeout_ms,
                  struct it_proc *ret)
{
    const char *argv[48];
    size_t n = 0;

    argv[n++] = "--amqp";
    argv[n++] = url;
    argv[n++] = "--amqp-prefix";
    argv[n++] = prefix;
    for (size_t i = 0; args && args[i]; i++) {
        assert_true(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    it_run_verb("fleet", argv, NULL, 0, timeout_ms, ret);
}
