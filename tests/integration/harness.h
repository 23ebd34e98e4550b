#ifndef IT_HARNESS_H
#define IT_HARNESS_H

/*
 * The integration tests' harness, the one place where the suites' clients live: the daemon as
 * a child process ($SOCKSERV_BIN: arguments, environment, token, TLS; its fds, threads and
 * children), HTTP through libcurl (any method and header, TCP, TLS or a Unix socket, whole or
 * streamed) and HTTP written by hand, the echo, date and backup wire clients on loopback, child
 * processes of the command line, temporary directories, and waiting for a condition with a
 * deadline (never a bare sleep). A suite writes no client of its own.
 *
 * Functions that say "asserts" fail the current cmocka test when something is off; the others
 * return a negative errno. Everything runs on the test's thread unless it says otherwise; the
 * socket helpers may be called from any thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define IT_READY_TIMEOUT_MS 10000 /* the daemon prints its API URL within this */
#define IT_EXIT_TIMEOUT_MS 10000  /* how long to wait for an exit before SIGKILL */
#define IT_IO_TIMEOUT_MS 5000     /* one network exchange */
#define IT_WAIT_MS 5000           /* a condition polled with it_wait_until() */
#define IT_POLL_INTERVAL_MS 20
#define IT_PATH_MAX 512

/* ---- time, files, directories ---- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t it_now_ms(void);

/* A new directory under $TMPDIR (or /tmp). Returns a malloc'd path; asserts. */
char *it_tmpdir_new(void);

/* Removes dir and everything beneath it, then frees it. Accepts NULL. */
void it_tmpdir_remove(char *dir);

/* Reads a whole file; returns a malloc'd, NUL-terminated buffer or NULL (errno set). */
char *it_file_read(const char *path, size_t *ret_len);

/* Writes a whole file (create or truncate). Returns 0 or a negative errno. */
int it_file_write(const char *path, const void *data, size_t len);

/*
 * Calls pred(arg) until it returns true, every IT_POLL_INTERVAL_MS, for at most timeout_ms.
 * Returns whether it became true.
 */
typedef bool (*it_pred_fn)(void *arg);
bool it_wait_until(int timeout_ms, it_pred_fn pred, void *arg);

/* ---- the daemon ---- */

struct it_daemon_opts {
    const char *dir;       /* required: the test's temporary directory (stderr goes there) */
    const char *state_dir; /* NULL: DIR/state */
    bool defaults;         /* false: pass --no-defaults */
    const char *api;       /* NULL: 127.0.0.1:0 */
    const char *const *extra_args; /* NULL-terminated; may be NULL */
    const char *const
        *env; /* "NAME=VALUE" set for the daemon alone, NULL-terminated; may be NULL */
    /* Not NULL: written to a file of mode 0600 in DIR and passed as --token-file; requests to
     * the daemon then carry it (struct it_req says how to send another or none). */
    const char *token;
    /* A certificate made for localhost and 127.0.0.1 in DIR, passed as --api-tls-cert and
     * --api-tls-key; requests to the daemon trust it. */
    bool tls;
    /* The daemon runs under a seccomp filter (installed in the child before exec, with
     * PR_SET_NO_NEW_PRIVS) that makes io_uring_setup(2) fail with EPERM. */
    bool deny_io_uring;
    /* Not 0: the daemon starts with this RLIMIT_NOFILE (soft, hard), set in the child before
     * exec. */
    unsigned long nofile_soft, nofile_hard;
};

struct it_daemon {
    pid_t pid;     /* 0 when no child runs */
    char url[128]; /* "http://127.0.0.1:PORT" (https with a certificate) once ready */
    uint16_t api_port;
    char state_dir[IT_PATH_MAX];
    char state_file[IT_PATH_MAX];  /* STATE_DIR/listeners.json */
    char stderr_path[IT_PATH_MAX]; /* where the child's stdout and stderr go */
    bool exited;                   /* reaped: status is valid */
    int status;                    /* waitpid() status */
    char token[128];               /* opts->token, "" when none */
    char token_file[IT_PATH_MAX];  /* where it was written, "" when none */
    char cacert[IT_PATH_MAX];      /* with opts->tls: the certificate, "" otherwise */
    char tls_key[IT_PATH_MAX];     /* with opts->tls: its key */
};

/*
 * Starts `$SOCKSERV_BIN daemon --api 127.0.0.1:0 --state-dir DIR [--no-defaults] --ready-fd 3
 * [--token-file F] [--api-tls-cert C --api-tls-key K] [extra]` with opts->env added to the
 * environment and reads the API URL from fd 3 within IT_READY_TIMEOUT_MS. Returns 0 when ready;
 * -ECHILD when the daemon exited first (d->exited, d->status tell how); -ETIMEDOUT (the child
 * is killed); another negative errno when it could not be spawned.
 */
int it_daemon_start(struct it_daemon *d, const struct it_daemon_opts *opts);

/* As it_daemon_start(), and asserts that the daemon became ready (printing its stderr). */
void it_daemon_start_ok(struct it_daemon *d, const struct it_daemon_opts *opts);

/*
 * Sends sig and waits up to timeout_ms for the exit. Returns 0 with the waitpid() status and
 * the time it took (ret_status and ret_ms may each be NULL), or -ETIMEDOUT (the child is then
 * killed with SIGKILL and reaped).
 */
int it_daemon_stop(struct it_daemon *d, int sig, int timeout_ms, int *ret_status, int64_t *ret_ms);

/* Waits up to timeout_ms for the child to exit on its own. 0 or -ETIMEDOUT. */
int it_daemon_wait_exit(struct it_daemon *d, int timeout_ms, int *ret_status);

/* SIGKILL and reap, if it still runs. */
void it_daemon_kill(struct it_daemon *d);

/* What the daemon wrote to stdout and stderr, malloc'd ("" when nothing). */
char *it_daemon_stderr(const struct it_daemon *d);

/* Prints the daemon's stderr to the test's stderr, framed, when it is not empty. */
void it_daemon_dump_stderr(const struct it_daemon *d);

/* Whether a waitpid() status is a normal exit with code 0. */
bool it_status_is_exit0(int status);

/* "exit 3", "signal 9", for messages. Returns a static buffer. */
const char *it_status_str(int status);

/* ---- the common fixture: a temporary directory and a daemon started with --no-defaults ---- */

struct it_fixture {
    char *dir;
    struct it_daemon d;
};

/* cmocka setup: *state becomes a struct it_fixture with a running daemon. */
int it_fixture_setup(void **state);

/* As it_fixture_setup(), the daemon started with opts (opts.dir is the fixture's). */
int it_fixture_setup_opts(void **state, struct it_daemon_opts opts);

/* cmocka setup with a temporary directory only (the test starts its daemons itself). */
int it_fixture_setup_dir(void **state);

/* cmocka teardown: stops the daemon if it runs (SIGTERM), prints its stderr, removes the
 * directory. */
int it_fixture_teardown(void **state);

/* ---- HTTP ---- */

struct it_http {
    long status;            /* 0 when no answer came */
    char content_type[128]; /* "" when absent */
    char location[512];
    char allow[256];
    char *headers; /* the response's header lines as received ("Name: value\r\n"...) */
    size_t headers_len;
    char *body; /* NUL-terminated, may be "" */
    size_t body_len;
    json_t *json; /* the body parsed as JSON, NULL when it is not JSON */
    /* How the transfer failed, "" when it did not; kept when no answer came too. */
    char error[256];
    bool tls_unverified; /* the client did not trust the server's certificate */
};

/* One request. Every member may be left 0. */
struct it_req {
    const char *method; /* NULL: GET; HEAD reads no body */
    const char *path;   /* after the daemon's URL; NULL: "/" */
    const char *url;    /* a whole URL instead of the daemon's and path (another name, scheme) */
    const void *body;   /* NULL: none */
    size_t body_len;
    const char *content_type;   /* NULL: no Content-Type header, even with a body */
    const char *const *headers; /* more "Name: value" lines, NULL-terminated ("Name:" removes
                                   one libcurl would send) */
    const char *token;          /* Authorization: Bearer TOKEN; NULL: the daemon's, if any */
    bool no_token;              /* send no Authorization of the daemon's own */
    const char *unix_socket;    /* the path of a Unix socket to connect to instead of TCP */
    const char *cacert;         /* for https: the CA to trust; NULL: the daemon's certificate
                                   when it made one, else the system's CAs */
    int tls_min, tls_max;       /* 10 (TLS 1.0) to 13 (TLS 1.3); 0: libcurl's default */
    int timeout_ms;             /* 0: 10 s */
    bool quiet;                 /* no line on stderr when no answer comes */
};

/*
 * Sends request q to d (d may be NULL when q->url is set). Returns 0 when an answer came (*ret
 * filled; release with it_http_fini()), -EIO when none came (ret->error and ret->tls_unverified
 * say why; nothing to release) or -ENOMEM.
 */
int it_http_request(const struct it_daemon *d, const struct it_req *q, struct it_http *ret);

/* The value of the response header name (case-insensitive), copied into buf (cap bytes) and
 * returned; NULL when the response has none. */
const char *it_http_header(const struct it_http *r, const char *name, char *buf, size_t cap);

/* Asserts the response header name is value (printing the headers when it is absent). */
void it_assert_header(const struct it_http *r, const char *name, const char *value);

/*
 * One request to the daemon's API (it_http_request() with the daemon's token and certificate,
 * if it has them). body may be NULL (no body); content_type NULL sends none. Returns 0 when an
 * answer came (*ret filled; release with it_http_fini()), or -EIO.
 */
int it_http_raw(const struct it_daemon *d, const char *method, const char *path, const void *body,
                size_t body_len, const char *content_type, struct it_http *ret);

/* As it_http_raw() with a JSON text body (NULL: none) sent as application/json (a POST, PUT or
 * PATCH carries that Content-Type even without a body); asserts that an answer came. */
void it_http(const struct it_daemon *d, const char *method, const char *path, const char *json_body,
             struct it_http *ret);

void it_http_fini(struct it_http *r);

/*
 * A response read as it comes (an event stream): it_stream_open() sends q and waits up to
 * q->timeout_ms (0: IT_IO_TIMEOUT_MS) for the status line, asserting that it came;
 * it_stream_pump() waits up to wait_ms for bytes and appends them to the data; the test
 * consumes what it parsed. Test thread only.
 */
struct it_stream;
struct it_stream *it_stream_open(const struct it_daemon *d, const struct it_req *q);
void it_stream_pump(struct it_stream *s, int wait_ms);
/* The status and headers. Borrowed. */
const struct it_http *it_stream_head(const struct it_stream *s);
/* The bytes received and not consumed yet (NUL-terminated; NULL before any came). */
char *it_stream_data(struct it_stream *s, size_t *ret_len);
void it_stream_consume(struct it_stream *s, size_t n);
/* -EINPROGRESS while the response goes on, 0 once it ended complete, -EIO once it was cut or
 * failed; it_stream_error() says how, for messages. */
int it_stream_end(const struct it_stream *s);
const char *it_stream_error(const struct it_stream *s);
/* Accepts NULL. */
void it_stream_close(struct it_stream *s);

/*
 * Sends a request and asserts the status (printing the request and the answer if it differs)
 * and, for an answer with a body, that it is application/json (application/problem+json, see
 * it_assert_problem(), for a status from 400). Returns the parsed body (new reference) or NULL
 * when the answer has no body.
 */
json_t *it_http_expect(const struct it_daemon *d, const char *method, const char *path,
                       const char *json_body, long status);

/*
 * Asserts r is an RFC 9457 problem with the given status: Content-Type
 * application/problem+json, "status" equal, "title" and "detail" non-empty strings, and, when
 * field is not NULL, "field" equal to it.
 */
void it_assert_problem(const struct it_http *r, long status, const char *field);

/* The string, integer or boolean at a dotted path ("status.state"); asserts it exists and has
 * that type. */
const char *it_json_str(const json_t *j, const char *path);
json_int_t it_json_int(const json_t *j, const char *path);
bool it_json_bool(const json_t *j, const char *path);
/* The value at a dotted path, or NULL. Borrowed. */
json_t *it_json_path(const json_t *j, const char *path);

/* The port in the last entry of resource's status.bound ("[::]:41235"); asserts. */
uint16_t it_bound_port(const json_t *resource);

/* POST /api/v1/listeners with body, asserts 201; returns the resource (new reference). */
json_t *it_listener_create(const struct it_daemon *d, const char *json_body);

/* As it_listener_create() and returns the bound port. */
uint16_t it_listener_create_port(const struct it_daemon *d, const char *json_body);

/* GET /api/v1/listeners/ID, asserts 200; returns the resource. */
json_t *it_listener_get(const struct it_daemon *d, const char *id);

/* Reads counter name of listener id (GET .../metrics); asserts. */
uint64_t it_metric(const struct it_daemon *d, const char *id, const char *name);

/*
 * Polls listener id's counter until it equals expected, for at most timeout_ms; asserts that it
 * did, printing the last value seen otherwise.
 */
void it_assert_metric_eventually(const struct it_daemon *d, const char *id, const char *name,
                                 uint64_t expected, int timeout_ms);

/* Polls counter name of listener id until it is at_least or more: true, or false after
 * timeout_ms (the assert form fails then). */
bool it_metric_reaches(const struct it_daemon *d, const char *id, const char *name,
                       uint64_t at_least, int timeout_ms);
void it_assert_metric_reaches(const struct it_daemon *d, const char *id, const char *name,
                              uint64_t at_least, int timeout_ms);

/* ---- sockets on loopback ---- */

/* A TCP connection to host (a numeric address) and port. Returns a non-blocking fd (every
 * helper here polls) or -errno. */
int it_tcp_connect(const char *host, uint16_t port, int timeout_ms);

/* Sends all of buf within timeout_ms. 0 or -errno (-ETIMEDOUT). */
int it_send_all(int fd, const void *buf, size_t len, int timeout_ms);

/* Receives exactly len bytes within timeout_ms. 0, -ETIMEDOUT, -ECONNRESET, or -EPIPE for an
 * end of stream before len bytes. */
int it_recv_exact(int fd, void *buf, size_t len, int timeout_ms);

/*
 * Reads until the peer closes, for at most timeout_ms. Returns 0 on an orderly end,
 * -ECONNRESET on a reset, -ETIMEDOUT; what was read is in *ret (malloc'd, NUL-terminated;
 * may be NULL when ret is NULL).
 */
int it_read_to_eof(int fd, int timeout_ms, char **ret, size_t *ret_len);

/*
 * The echo client: connects, sends msg while reading, shuts down its sending side when
 * shut_wr, and reads until the server closes. Returns 0 with the reply in *ret (malloc'd) or a
 * negative errno.
 */
int it_tcp_exchange(const char *host, uint16_t port, const void *msg, size_t len, bool shut_wr,
                    int timeout_ms, char **ret, size_t *ret_len);

/* it_tcp_exchange() with shut_wr that asserts the reply equals msg. */
void it_assert_tcp_echo(const char *host, uint16_t port, const void *msg, size_t len);

/* One datagram to host:port and one reply into buf (cap bytes). Returns the reply's length or
 * a negative errno (-ETIMEDOUT, -ECONNREFUSED). */
ssize_t it_udp_exchange(const char *host, uint16_t port, const void *msg, size_t len, void *buf,
                        size_t cap, int timeout_ms);

/* it_udp_exchange() that asserts the reply equals msg. */
void it_assert_udp_echo(const char *host, uint16_t port, const void *msg, size_t len);

/*
 * Binds a socket of type (SOCK_STREAM listens) on host ("::" is dual-stack) and port (0: any)
 * and returns it with the port in *ret_port, or -errno.
 */
int it_bind(int type, const char *host, uint16_t port, uint16_t *ret_port);

/* Whether a TCP connect to host:port is refused now. */
bool it_tcp_is_refused(const char *host, uint16_t port);

/* ---- child processes (the command line) ---- */

struct it_proc {
    int status;     /* waitpid() status */
    bool timed_out; /* killed after the timeout */
    char *out;      /* stdout, NUL-terminated */
    size_t out_len;
    char *err; /* stderr, NUL-terminated */
    size_t err_len;
};

/* $SOCKSERV_BIN; asserts it is set. */
const char *it_bin(void);

/*
 * Runs argv (argv[0] is the program path) with in as its standard input (NULL: /dev/null),
 * collects stdout and stderr, and kills it after timeout_ms. Asserts it could be started.
 * Release with it_proc_fini().
 */
void it_run(const char *const *argv, const void *in, size_t in_len, int timeout_ms,
            struct it_proc *ret);

/*
 * Runs argv on a new pseudo-terminal (its stdin, stdout and stderr, as a user at a terminal).
 * Once the terminal has shown prompt (NULL: at once), types input; collects everything the
 * terminal shows into ret->out until the program ends or timeout_ms passes. Asserts it could be
 * started. Release with it_proc_fini().
 */
void it_run_pty(const char *const *argv, const char *prompt, const char *input, int timeout_ms,
                struct it_proc *ret);

void it_proc_fini(struct it_proc *p);

/* The exit code of a normal exit, or -1 (killed, signalled). */
int it_proc_exit_code(const struct it_proc *p);

/* ---- faults: the daemon under a wrapper, what it holds, what its log says ---- */

/*
 * As it_daemon_start(), with the daemon's command line prefixed by wrapper (NULL-terminated,
 * wrapper[0] a path or a name looked up in $PATH) and the variables env ("NAME=VALUE",
 * NULL-terminated, may be NULL) set for it alone. The wrapper must exec the daemon in the
 * process it was started as (`strace -D ...` does), so that d->pid is the daemon's. A small
 * shell script in opts->dir carries the prefix. Returns as it_daemon_start().
 */
int it_daemon_start_wrapped(struct it_daemon *d, const struct it_daemon_opts *opts,
                            const char *const *wrapper, const char *const *env);

/* The full path of program name found in $PATH, in buf (cap bytes); false when there is none. */
bool it_which(const char *name, char *buf, size_t cap);

/* A self-signed P-256 certificate for localhost and 127.0.0.1, made now with openssl(1), into
 * the files cert and key; asserts. */
void it_make_certificate(const char *cert, const char *key);

/* What a process holds: its open fds (/proc/PID/fd) and its threads (/proc/PID/task), but
 * the parked threads of the runners' pool ("ss-idle", core/thread.h). */
struct it_resources {
    pid_t pid;
    int fds;
    int threads;
};

/* Calls fn(ctx, tid, comm) for each of pid's threads (comm: its name without the newline, NULL
 * for a thread that ended meanwhile). 0, or a negative errno when pid's threads cannot be read. */
int it_threads_each(pid_t pid, void (*fn)(void *ctx, pid_t tid, const char *comm), void *ctx);

/* How many fds process pid holds now (/proc/PID/fd), or a negative errno. Any thread. */
int it_proc_fds(pid_t pid);

/* Counts the daemon's fds and threads now; asserts it runs. */
void it_resources_take(const struct it_daemon *d, struct it_resources *ret);

/*
 * Counts the daemon's fds and threads once they hold still: the same in 5 samples
 * IT_POLL_INTERVAL_MS apart, within IT_WAIT_MS; asserts. A thread started just before the
 * daemon became ready may still be opening what it keeps: serve a connection on each listener
 * first, so that its threads are in their loops.
 */
void it_resources_settle(const struct it_daemon *d, struct it_resources *ret);

/*
 * Polls until the daemon holds exactly base's fds and threads again, for at most timeout_ms;
 * asserts that it did, listing its fds otherwise.
 */
void it_assert_resources_back(const struct it_daemon *d, const struct it_resources *base,
                              int timeout_ms);

/*
 * Asserts the daemon's stdout and stderr hold no sanitizer report (AddressSanitizer,
 * LeakSanitizer, UndefinedBehaviorSanitizer's "runtime error:", ThreadSanitizer), printing the
 * log when they do. Works on a daemon that has exited too.
 */
void it_assert_no_sanitizer_report(const struct it_daemon *d);

/* Asserts the daemon still runs (not exited, not a zombie) and GET /api/v1/health answers 200
 * with "status":"ok". */
void it_assert_daemon_alive(const struct it_daemon *d);

/*
 * The daemon's child processes now (the `process` model forks one per connection), gathered
 * from every thread's /proc/PID/task/TID/children, since a child belongs to the thread that
 * forked it. Returns how many there are and stores the first min(that, cap) pids in pids (which
 * may be NULL when cap is 0); asserts the daemon runs.
 */
int it_children(const struct it_daemon *d, pid_t *pids, int cap);

/*
 * The daemon's end of the TCP connection client_fd (a socket of this process connected to it),
 * looked for among the fds of the daemon and of its children (the `process` model's), copied
 * into this process with pidfd_getfd(2): an fd to close, or -1 when none is found within
 * IT_WAIT_MS (an accepted connection may take a moment to reach a child).
 */
int it_daemon_socket_of(const struct it_daemon *d, int client_fd);

/* Polls until the daemon has exactly want child processes, for at most IT_WAIT_MS (a child
 * whose connection ended exits on its own time); asserts. */
void it_assert_children_eventually(const struct it_daemon *d, int want);

/*
 * Polls until the daemon runs at most max threads (/proc/PID/task, but the parked "ss-idle"
 * ones), for at most timeout_ms;
 * asserts that it did, listing its threads (id and name) otherwise. For a count that must come
 * down to a bound (runners that end) rather than back to a baseline of fds and threads, which
 * is it_assert_resources_back().
 */
void it_assert_threads_at_most_eventually(const struct it_daemon *d, int max, int timeout_ms);

/* The CPU time pid has used, in clock ticks (/proc/PID/stat: utime + stime); asserts. */
unsigned long long it_cpu_ticks(pid_t pid);

/* A malloc'd "DIR/name" (free() it); asserts. */
char *it_path_in(const char *dir, const char *name);

/* ---- a TCP protocol spoken by hand (backup's, say) ---- */

/* A connection to 127.0.0.1:port; asserts it is made within IT_IO_TIMEOUT_MS. */
int it_tcp_connect_ok(uint16_t port);

/* Sends all of p (n bytes) within IT_IO_TIMEOUT_MS; asserts it went. */
void it_send_ok(int fd, const void *p, size_t n);

/* it_send_ok() of a string. */
void it_send_str_ok(int fd, const char *s);

/*
 * One answer line, without its newline, into line (cap bytes, always NUL-terminated: what came
 * before an error stays there); read byte by byte so that nothing after it is taken. Returns 0,
 * -ENOBUFS when it does not fit, or it_recv_exact()'s error within timeout_ms. Any thread.
 */
int it_read_line(int fd, char *line, size_t cap, int timeout_ms);

/* it_read_line() within IT_IO_TIMEOUT_MS that asserts the line came and fit. */
void it_recv_line(int fd, char *line, size_t cap);

/* Asserts the next line from fd (at most 2047 bytes) is want. */
void it_expect_line(int fd, const char *want);

/* The SHA-256 of p (n bytes) as 64 lowercase hex digits and a NUL in out. */
void it_sha256_hex(const void *p, size_t n, char out[65]);

/* ---- HTTP written by hand (bytes no client library would send) ---- */

/*
 * Reads a response head from fd within timeout_ms into buf (cap bytes, NUL-terminated: the
 * head and whatever came after it). Returns the status, or -ETIMEDOUT, -EPIPE (an end before
 * the head), -EPROTO (not HTTP/1.1), another -errno. Any thread.
 */
int it_http_read_head(int fd, char *buf, size_t cap, int timeout_ms);

/* Reads what fd brings within timeout_ms and tells whether it holds needle (an event stream
 * read raw, say). */
bool it_stream_sees(int fd, const char *needle, int timeout_ms);

/* An answer read off the wire. */
struct it_wire {
    struct it_http http; /* status, headers, content_type, body and json of the answer */
    bool closed;         /* the daemon closed the connection after it */
    int64_t ms;          /* from the request sent to the end of the connection */
    char *raw;           /* everything received */
    size_t raw_len;
};

/*
 * Sends request (in which "HOST" stands for the daemon's 127.0.0.1:PORT) as it is on a new
 * connection to the API and reads what comes back until the daemon closes it or
 * IT_IO_TIMEOUT_MS passes. Asserts an HTTP/1.1 answer came; release with it_wire_fini().
 */
void it_wire_exchange(const struct it_daemon *d, const char *request, struct it_wire *ret);
void it_wire_fini(struct it_wire *w);

/* ---- the backup protocol (sockserv-protocols(7)) on a new connection to 127.0.0.1:port ---- */

/* PUT name with its SHA-256, then QUIT; asserts it was STORED as version. */
void it_backup_put_ok(uint16_t port, const char *name, const void *p, size_t n, unsigned version);

/* LIST: the listing lines, each ended by '\n' (malloc'd), *ret_n (may be NULL) their count;
 * asserts. */
char *it_backup_list(uint16_t port, unsigned *ret_n);

/* GET name (version 0: the current copy); asserts OK and that the bytes match the SHA-256 sent.
 * Returns the content (malloc'd), *ret_n its length. */
void *it_backup_get(uint16_t port, const char *name, unsigned version, size_t *ret_n);

/* ---- small things the suites share ---- */

/* The daemon of the common fixture (*state a struct it_fixture). */
struct it_daemon *it_daemon_of(void **state);

/* len bytes (malloc'd) that are not all the same, from seed, so that a reordering or a loss
 * shows. */
void *it_pattern(size_t len, unsigned seed);

/* Fills buf with the len bytes it_pattern() makes from seed; returns the seed that goes on from
 * there. Any thread. */
unsigned it_pattern_fill(void *buf, size_t len, unsigned seed);

/* Asserts listener id's counter name is want now (a counter that must not move, or one counted
 * before the reply was sent). */
void it_assert_metric_now(const struct it_daemon *d, const char *id, const char *name,
                          uint64_t want);

/* Sends msg on an open echo connection and reads it back within timeout_ms. 0, -EBADMSG when
 * other bytes came back, or it_send_all()'s and it_recv_exact()'s errors. Any thread. */
int it_echo_round_trip(int fd, const void *msg, size_t len, int timeout_ms);

/* The daytime client (RFC 867 over TCP): connects to host:port and reads until the server
 * closes, within IT_IO_TIMEOUT_MS each. Returns as it_read_to_eof() (what came is in *ret), or
 * the connect's error with *ret NULL. Any thread. */
int it_daytime(const char *host, uint16_t port, char **ret, size_t *ret_len);

/* A TCP connection to host:port that completed one round trip of msg (so the server has
 * accepted it and serves it); asserts. */
int it_connect_echoed(const char *host, uint16_t port, const char *msg);

/* PATCH /api/v1/listeners/ID with body as merge-patch; asserts 200 and returns the resource
 * (new reference). */
json_t *it_listener_patch(const struct it_daemon *d, const char *id, const char *body);

/* The entries of dir (no . and ..), sorted, joined by spaces (malloc'd); NULL when dir cannot be
 * read (errno set). */
char *it_dir_names(const char *dir);

/* SIGTERM; asserts an exit 0 within IT_EXIT_TIMEOUT_MS and a log with no sanitizer report. */
void it_daemon_stop_clean(struct it_daemon *d);

/* A teardown's end for the n daemons of ds: each one still running gets SIGTERM (killed after
 * IT_EXIT_TIMEOUT_MS), its stderr is printed when it did not exit 0, and its log is asserted to
 * hold no sanitizer report. Slots never started (pid 0) are skipped. */
void it_daemons_stop_all(struct it_daemon *ds, size_t n);

/* Runs `$SOCKSERV_BIN verb ARGS...` (args NULL-terminated, may be NULL) as it_run() does, and
 * prints the command and the first lines of what it wrote, for the test's log. */
void it_run_verb(const char *verb, const char *const *args, const void *in, size_t in_len,
                 int timeout_ms, struct it_proc *ret);

/* ---- the broker (scripts/broker.sh; scripts/test.sh starts one for the run) ---- */

/*
 * $SOCKSERV_TEST_AMQP ("amqp://guest:guest@127.0.0.1:PORT/", the run's shared broker), or NULL
 * when the tests run without one: the test then calls cmocka's skip(), which fails CI (the
 * broker is part of the test command).
 */
const char *it_amqp_url(void);

/* A fleet prefix (--amqp-prefix) of its own for each call: "t<pid>-<n>". */
void it_fleet_prefix(char *buf, size_t len);

/* A broker of scripts/broker.sh: its data directory and AMQP port. */
struct it_broker {
    char dir[IT_PATH_MAX];
    uint16_t port;
    char url[128]; /* amqp://guest:guest@127.0.0.1:PORT/ */
    /* with it_broker_private_start_tls(): the directory of ca.pem, server.pem, server.key and
     * the amqps port (PORT+14); "" and 0 otherwise */
    char tls_dir[IT_PATH_MAX];
    uint16_t tls_port;
};

/* The run's shared broker from $SOCKSERV_TEST_BROKER ("DIR PORT"); false when it is not set. */
bool it_broker_shared(struct it_broker *ret);

/*
 * Runs `scripts/broker.sh VERB DIR PORT [args]` for b (NULL: the shared broker; asserts it is
 * set) as it_run() does, within timeout_ms. For ctl, args are rabbitmqctl's. Release with
 * it_proc_fini().
 */
void it_broker_run(const struct it_broker *b, const char *verb, const char *const *args,
                   int timeout_ms, struct it_proc *ret);

/*
 * rabbitmqctl ARGS (NULL-terminated) against the shared broker, within 60 s. Returns its exit
 * code (0: done), -1 when it was killed; prints what it wrote when it failed.
 */
int it_broker_ctl(const char *const *args);

/* As it_broker_ctl() against broker b. */
int it_broker_ctl_at(const struct it_broker *b, const char *const *args);

/* Whether RabbitMQ is installed here (its server script), so that a private broker can run. */
bool it_have_rabbitmq(void);

/*
 * A SECOND broker, private to this test binary, for the tests that stop, restart, freeze or
 * alarm a broker (the shared one serves the suites running beside): data in DIR/broker, AMQP
 * on a free port found now (a range of 14 ports from 28000). Stopped by
 * it_broker_private_stop(), or by a watcher once this process has ended. Returns 0 when it
 * accepts connections, or a negative errno (its log printed).
 */
int it_broker_private_start(struct it_broker *b, const char *dir);

/*
 * As it_broker_private_start(), with AMQP over TLS too on b->tls_port (PORT+14): the broker's
 * certificate and key are tls_dir/server.pem and tls_dir/server.key, client certificates are
 * verified against tls_dir/ca.pem when given but not required. A restart keeps it.
 */
int it_broker_private_start_tls(struct it_broker *b, const char *dir, const char *tls_dir);

/* Starts b again on the same directory and port (its queues and streams kept). 0 or -errno. */
int it_broker_private_restart(struct it_broker *b);

/* Stops it (rabbitmqctl shutdown; SIGKILL when that fails) and its epmd; a frozen one too.
 * Accepts a broker that is not running. */
void it_broker_private_stop(struct it_broker *b);

/* The broker's process id (for SIGSTOP/SIGCONT), or 0 when it does not run. */
pid_t it_broker_pid(const struct it_broker *b);

/* ---- an AMQP peer (librabbitmq, one connection and one channel; test thread only) ---- */

struct it_amqp;

/* A message received. */
struct it_amqp_msg {
    char exchange[256];
    char routing_key[256];
    char *body; /* NUL-terminated */
    size_t body_len;
    json_t *json; /* the body parsed as JSON, NULL when it is not */
    char type[128], message_id[256], correlation_id[256], reply_to[256], content_type[128];
    char expiration[32];
    int delivery_mode;     /* 0 when absent */
    int64_t stream_offset; /* the x-stream-offset header, -1 when absent */
    uint64_t delivery_tag;
    bool redelivered;
};

/*
 * Connects to url (amqp://USER:PASS@HOST:PORT/VHOST) within IT_IO_TIMEOUT_MS, no heartbeats,
 * and opens channel 1. Returns NULL with a message in err (cap bytes) when it cannot
 * (refused, ACCESS_REFUSED, ...).
 */
struct it_amqp *it_amqp_open(const char *url, char *err, size_t cap);

/* As it_amqp_open(), asserting it connected. */
struct it_amqp *it_amqp_open_ok(const char *url);

/* Closes the connection (politely when it still works). Accepts NULL. */
void it_amqp_close(struct it_amqp *a);

/* Declares a durable topic exchange (what daemons declare: PREFIX.events, PREFIX.rpc); asserts. */
void it_amqp_exchange(struct it_amqp *a, const char *exchange);

/*
 * Declares queue (NULL or "": a server-named, exclusive, auto-delete one; else a durable,
 * non-exclusive one of that name), binds it to exchange with each of patterns (NULL-terminated)
 * and consumes it without acks. Returns the queue's name (malloc'd); asserts.
 */
char *it_amqp_subscribe(struct it_amqp *a, const char *queue, const char *exchange,
                        const char *const *patterns);

/*
 * Declares queue (NULL or "": server-named, exclusive, auto-delete; else durable, of that name)
 * and binds it to exchange with each of patterns, without consuming it (a durable queue then
 * keeps what comes while nobody reads, across a broker restart too). Returns the queue's name
 * (malloc'd); asserts.
 */
char *it_amqp_queue_bind(struct it_amqp *a, const char *queue, const char *exchange,
                         const char *const *patterns);

/* Consumes queue without acks (what it_amqp_next() then returns). Asserts. */
void it_amqp_consume(struct it_amqp *a, const char *queue);

/* Consumes amq.rabbitmq.reply-to (direct reply-to) so that replies to what this connection
 * publishes with reply_to "amq.rabbitmq.reply-to" arrive through it_amqp_next(). Call once,
 * before publishing. Asserts. */
void it_amqp_reply_to(struct it_amqp *a);

/*
 * Consumes the stream queue from offset (-1: "first") with manual acks (prefetch 64; every
 * message is acked as it_amqp_next() returns it). Asserts.
 */
void it_amqp_stream(struct it_amqp *a, const char *queue, int64_t offset);

/* Waits up to timeout_ms for the next delivery on any consumer of a. 0 (*ret filled; release
 * with it_amqp_msg_fini()), -ETIMEDOUT, or -EIO when the connection failed. */
int it_amqp_next(struct it_amqp *a, int timeout_ms, struct it_amqp_msg *ret);

/* Waits up to timeout_ms for a delivery whose routing key matches pattern (fnmatch(3): "*"
 * across dots too), dropping the others. 0, -ETIMEDOUT or -EIO. */
int it_amqp_next_matching(struct it_amqp *a, const char *pattern, int timeout_ms,
                          struct it_amqp_msg *ret);

void it_amqp_msg_fini(struct it_amqp_msg *m);

/* Properties of a message published by it_amqp_publish(); every member may be left 0. */
struct it_amqp_pub {
    const char *content_type, *type, *message_id, *correlation_id, *reply_to, *expiration;
    int delivery_mode; /* 0: none */
    bool mandatory;
};

/*
 * Publishes body (len bytes) on exchange ("" the default one) with routing key rk, and waits
 * for the broker's confirm when the channel is in confirm mode (it is after the first call).
 * Returns 0 when confirmed (ack), -EPROTO on a nack, -ENOENT when returned (mandatory and no
 * queue), -EIO.
 */
int it_amqp_publish(struct it_amqp *a, const char *exchange, const char *rk, const void *body,
                    size_t len, const struct it_amqp_pub *props);

/* ---- fleet daemons and the fleet command ---- */

/* A daemon of a fleet, as the fleet tests start it. */
struct it_fleet_node_opts {
    const char *dir;               /* required: the test's directory; state in DIR/NODE */
    const char *url;               /* --amqp */
    const char *prefix;            /* --amqp-prefix */
    const char *node;              /* --node */
    const char *const *labels;     /* "KEY=VALUE", NULL-terminated, each a --label; may be NULL */
    const char *const *extra_args; /* more arguments, NULL-terminated; may be NULL */
    const char *status_interval;   /* --fleet-status-interval; NULL: "2s" */
};

/*
 * Starts `sockserv daemon --no-defaults --state-dir DIR/NODE --amqp URL --node NODE
 * --amqp-prefix PREFIX --amqp-heartbeat 2 --fleet-status-interval 2s [--label L]... [extra]`
 * and asserts it became ready (not that it joined: see it_fleet_wait_state()).
 */
void it_fleet_node_start(struct it_daemon *d, const struct it_fleet_node_opts *o);

/* The "fleet" member of GET /api/v1/health (new reference), NULL when it has none; asserts the
 * answer is 200. */
json_t *it_fleet_health(const struct it_daemon *d);

/* The bridge's state now ("connected", "connecting", "blocked", "down", "refused"), copied into
 * buf; "" when health has no fleet member. */
const char *it_fleet_state(const struct it_daemon *d, char *buf, size_t cap);

/* Polls until the bridge's state is state, for at most timeout_ms. Returns whether it was; when
 * not, prints the last fleet member seen. */
bool it_fleet_wait_state(const struct it_daemon *d, const char *state, int timeout_ms);

/* As it_fleet_wait_state(), asserting. */
void it_fleet_assert_state(const struct it_daemon *d, const char *state, int timeout_ms);

/*
 * Runs `sockserv fleet --amqp URL --amqp-prefix PREFIX ARGS...` (args NULL-terminated) as
 * it_run_verb() does, within timeout_ms.
 */
void it_fleet_cli(const char *url, const char *prefix, const char *const *args, int timeout_ms,
                  struct it_proc *ret);

#endif
