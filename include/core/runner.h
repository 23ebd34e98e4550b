#ifndef CORE_RUNNER_H
#define CORE_RUNNER_H

/*
 * Runners: the sockets and worker threads that drive a service (the concurrency models).
 * Used by the listener only. A runner is started on sockets the listener has bound and is
 * stopped by the listener: stop wakes every worker, cuts every connection, joins every thread,
 * closes every fd and frees the runner.
 *
 * A runner is the runner base (struct core_runner, below: configuration, service, counters,
 * sockets, admission, the stop and drain handshake, the thread list) and its own I/O in one
 * file: threads per connection or a pool (runner_tcp.c), epoll loops (runner_event.c), a
 * process per connection (runner_process.c), recvmmsg workers (runner_udp.c). Every TCP
 * connection is served through the session driver (core/session.h): by the blocking driver
 * core_runner_serve_conn() or by a runner's own loop.
 *
 * The `process` model: a connection is served in a child process forked from the runner's
 * accepting thread. The child runs the service's session callbacks only (session_open to
 * session_close, through core_runner_serve_conn()), on its copy of the service instance as it
 * was at the fork, with no thread of its own and no fd but its connection, the wake fd and the
 * sending end of the runner's event channel; its counters go to the listener's metrics, which
 * live in MAP_SHARED memory, so the daemon sees them at once, and its sessions' events
 * (core_svc_emit()) go over the channel to the accepting thread, which publishes them
 * (core/emitter.h). A service whose sessions share state through the instance must keep that state
 * where processes share it, or refuse the model: the listener configuration refuses a model a
 * service lists in its refused_models (-EINVAL, field "model"); the runner itself checks
 * nothing. backup refuses none: what its sessions share lives in MAP_SHARED memory.
 *
 * Thread rules: start and stop from the thread making listener changes.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "core/ratelimit.h"
#include "core/service.h"
#include "core/thread.h"

struct core_runner;

struct core_runner_ctx {
    const struct core_listener_cfg *cfg; /* copied by the runner */
    const struct core_service *svc;
    void *inst;                   /* the service instance; outlives the runner */
    struct core_metrics *metrics; /* outlives the runner */
    /* The bound socket (listening and non-blocking for TCP, as core_listener_bind() makes it);
     * ownership taken. */
    int fd;
    /* Borrowed, outlive the runner; NULL: none (no per-source limit, no loop guard). */
    struct core_sources *sources; /* TCP: the listener's sources, shared with its other runners */
    struct core_endpoints *own;   /* UDP: this daemon's listening endpoints */
    /* Borrowed, outlives the runner; NULL: none. The emitter of the instance's sessions: the
     * `process` runner carries their events from its children to it (core/emitter.h). */
    struct core_emitter *emitter;
    /* Borrowed, outlives the runner: the pool its threads come from (core/thread.h). */
    struct core_threads *threads;
};

/*
 * Starts the runner for ctx->cfg's transport and model. Takes ownership of ctx->fd, also when
 * it fails (then it is closed). Returns 0 or a negative errno with err set.
 */
int core_runner_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                      struct core_err *err);

/* Stops and frees the runner (see above). Accepts NULL. */
void core_runner_stop(struct core_runner *r);

/* ---- the runner base: what a runner's own I/O builds on ---- */

/* The fds a listener's accepting threads keep to refuse connections when out of fds (one per
 * accepting thread, shared by them: see runner.c). */
struct core_fd_reserve;

/* Every runner starts with this struct (its first member), made by core_runner_new(). */
struct core_runner {
    /*
     * For the listener. drain is optional (NULL: the model cannot drain; the listener stops and
     * restarts instead): stops accepting at once and returns; the established connections go
     * on until they end (or a deadline of the runner's choice passes). The listening socket is
     * not closed before stop. core_runner_stop() must still be called and cuts what remains.
     * Same thread rules as stop. is_drained, with drain: whether every accepting thread has
     * stopped accepting and every connection has ended. Any thread.
     */
    void (*drain)(struct core_runner *r);
    bool (*is_drained)(struct core_runner *r);
    /*
     * Optional (NULL: cannot), with drain: stops watching the listener's socket without waking
     * a thread of the runner, so that a shutdown() of that socket wakes none either; drain()
     * must follow, and may come later (a change calls it once it has answered). Returns false
     * when it cannot (a thread listens on a socket of its own): then drain() at once. Any
     * thread.
     */
    bool (*mute)(struct core_runner *r);

    /* Set by core_runner_new(), read-only afterwards. */
    void (*destroy)(struct core_runner *r); /* see struct core_runner_spec */
    struct core_listener_cfg cfg;
    const struct core_service *svc;
    void *inst;
    struct core_metrics *m;
    struct core_sources *sources;    /* borrowed; may be NULL */
    struct core_endpoints *own;      /* borrowed; may be NULL */
    struct core_emitter *emitter;    /* borrowed; may be NULL */
    struct core_fd_reserve *reserve; /* one fd per accepting thread; NULL without */
    int lfd;                         /* the listener's socket, owned; non-blocking for TCP */
    int wake_fd;                     /* eventfd, readable once the runner stops */
    int drain_fd;                    /* eventfd, readable once the runner drains; -1 without */
    /* TCP with options.tls: the server context every connection does its handshake in; made
     * by core_runner_new(), freed by core_runner_stop(); NULL: plain. */
    struct core_tls *tls;

    atomic_uint n_accepting; /* accepting threads that may accept now (not stopped, not busy
                              * serving, under sequential and pool) */
    atomic_bool draining;    /* drain() was called: a thread that stopped accepting to serve
                              * does not come back */
    /* Some accepting thread listens on a socket of its own (a SO_REUSEPORT sibling under
     * event and uring), which closing the listener's socket does not stop. Set at start. */
    bool own_sockets;
    atomic_uint n_conns; /* connections admitted and not yet ended (max_connections) */

    /* Threads of core_runner_spawn(); only the thread that starts and stops the runner. */
    struct core_threads *pool;    /* borrowed: where they come from */
    struct core_thread **threads; /* max_threads, n_threads of them running */
    unsigned n_threads, max_threads;
};

struct core_runner_spec {
    /* Called by core_runner_stop() once the wake fd is written and the runner's threads are
     * joined, also on a runner whose start failed half-way: frees what the runner's own I/O
     * holds (not the base, nor the runner's memory). NULL: nothing to free. */
    void (*destroy)(struct core_runner *r);
    unsigned threads;   /* at most this many core_runner_spawn() */
    unsigned accepting; /* accepting threads (n_accepting at the start), each with a reserve fd */
    bool drains;        /* the runner can drain (drain_fd, drain and is_drained are set) */
};

/*
 * Allocates a runner of size bytes (>= sizeof(struct core_runner), zeroed besides the base)
 * and sets up its base from ctx: a copy of the configuration, the listening socket (taken),
 * the wake and drain eventfds, the fd reserve, room for the
 * threads. Takes ownership of ctx->fd, also when it fails. Returns 0 with *ret, or a negative
 * errno with err set (then nothing is left). Once it succeeded, a failing start ends with
 * core_runner_abort(). The listener's thread.
 */
int core_runner_new(size_t size, const struct core_runner_ctx *ctx,
                    const struct core_runner_spec *spec, struct core_runner **ret,
                    struct core_err *err);

/* Starts a thread of the runner (one of its pool's, core/thread.h) running fn(arg), joined by
 * core_runner_stop(), named "l:<id>/<role>" while it runs it (role: "acc", "ev0", ...). Returns
 * 0 or a negative errno. The listener's thread, while starting. */
int core_runner_spawn(struct core_runner *r, void *(*fn)(void *), void *arg, const char *role);

/* Stops and frees a runner whose start failed (what started is stopped and joined), and sets
 * err: "cannot start the <what>: <error>". Returns error (a negative errno). */
int core_runner_abort(struct core_runner *r, int error, const char *what, struct core_err *err);

/* Makes eventfd fd readable (the wake, drain or another runner's own eventfd). Any thread. */
void core_runner_signal(int fd);

/* Flags of core_runner_wait(). */
#define CORE_RUNNER_WAIT_END 1u   /* the runner stops, or drains; or the wait failed (logged) */
#define CORE_RUNNER_WAIT_FD 2u    /* fd is readable */
#define CORE_RUNNER_WAIT_EXTRA 4u /* extra is readable */

/* Waits until fd or extra (-1: none) is readable, or the runner stops or drains. Returns the
 * CORE_RUNNER_WAIT_ flags that hold (0 after a signal). The runner's threads. */
unsigned core_runner_wait(struct core_runner *r, int fd, int extra);

/* How long an accepting thread leaves the backlog alone after an accept error. */
#define CORE_RUNNER_BACKOFF_MS 100

/* After an accept error: waits CORE_RUNNER_BACKOFF_MS unless the runner stops; returns
 * whether it stops. The runner's threads. */
bool core_runner_backoff(struct core_runner *r);

/* What an admitted connection holds in its listener's sources. */
struct core_admission {
    struct core_source src;
    bool counted; /* one of src's open connections in the sources */
};

/* A connection core_runner_accept_conn() took. */
struct core_accepted {
    int fd;               /* non-blocking, close-on-exec; the caller's */
    uint64_t accepted_ns; /* core_now_ns() when it was accepted */
    struct core_admission adm;
};

/*
 * Admits connection fd (non-blocking, close-on-exec; taken: closed when refused), accepted at
 * accepted_ns, as core_runner_accept_conn() does once it accepted one: for a runner that
 * accepts through other means (io_uring). Returns 0 with *ret, or -ECONNREFUSED (counted).
 */
int core_runner_admit_conn(struct core_runner *r, int fd, uint64_t accepted_ns,
                           struct core_accepted *ret);

/*
 * Takes the next connection from listening socket lfd (accept4(), SOCK_CLOEXEC |
 * SOCK_NONBLOCK) and admits it. Out of fds, a connection is refused with a fd of the reserve
 * (counted in rejected_resources) rather than left in the backlog until its client gives up.
 * Then the per-source limits: connection_rate_per_source (rejected_rate) and
 * max_connections_per_source (rejected_per_source), every connection counted among its
 * source's open ones whatever the limits, so that a limit set later sees them; then
 * max_connections (rejected_max_connections), counted in n_conns; then the descriptor budget
 * shared by every listener (core/fdbudget.h: rejected_fd_budget). Returns 0 with *ret, a connection
 * the caller serves and ends with core_runner_conn_end() (after core_runner_conn_begin()) or
 * refuses with core_runner_conn_refuse(); or, with the connection closed and counted: -ECONNREFUSED
 * when one was refused (call again); -EAGAIN when none is waiting; another negative errno when
 * accepting failed (a warning is logged, once until an accept succeeds again: *warned keeps that,
 * one per thread, false at first): back off (core_runner_backoff(), or stop watching lfd for
 * CORE_RUNNER_BACKOFF_MS). Any accepting thread of the runner.
 */
int core_runner_accept_conn(struct core_runner *r, int lfd, bool *warned,
                            struct core_accepted *ret);

/* The connection is served from now on: counted in connections_total and the gauge. */
void core_runner_conn_begin(struct core_runner *r);

/* The connection begun has ended (its fd closed): gives back its admission *adm, then lowers
 * the gauge and n_conns (whoever sees the gauge fall sees its source's place free). */
void core_runner_conn_end(struct core_runner *r, struct core_admission *adm);

/* The admitted connection cannot be served (no thread, process, fd or memory): closes fd
 * (-1: closed already), gives back *adm and n_conns, counts it in rejected_resources. */
void core_runner_conn_refuse(struct core_runner *r, int fd, struct core_admission *adm);

/* An accepting thread has stopped accepting (drained, stopped; or, under sequential and pool,
 * while it serves the connection it accepted, until core_runner_accepting_resume()):
 * n_accepting falls. The base's is_drained and a change's wait for the runners it replaced
 * wait for every one. */
void core_runner_accepting_ended(struct core_runner *r);

/* Back from serving: true when the thread accepts again; false when the runner drains (then it
 * must not accept again, nor call core_runner_accepting_ended()). */
bool core_runner_accepting_resume(struct core_runner *r);

/*
 * Waits until none of the n runners (each told to drain) may accept a connection any more,
 * for at most timeout_ms: a change answers only once every new connection is the new
 * runner's. Returns how many still may (0 once all stopped). The change thread's.
 */
size_t core_runners_wait_not_accepting(struct core_runner *const *rs, size_t n, int timeout_ms);

/* ---- the runners' halves, for core_runner_start() ---- */

/* TCP `sequential`, `thread` and `pool`; TCP `event`; TCP `process`; UDP. */
int core_runner_tcp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err);
int core_runner_event_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                            struct core_err *err);
int core_runner_process_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                              struct core_err *err);
int core_runner_uring_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                            struct core_err *err);

/*
 * Whether this process may use io_uring (the `uring` model): the kernel is asked once, on the
 * first call (a ring is made and freed), and the answer kept. Returns 0, or a negative errno
 * with err saying why (field "model"). Any thread.
 */
int core_runner_uring_usable(struct core_err *err);
int core_runner_udp_start(const struct core_runner_ctx *ctx, struct core_runner **ret,
                          struct core_err *err);

/* ---- shared by the runners; any thread ---- */

/* What serving one connection with blocking-style waits needs. */
struct core_conn_ctx {
    const struct core_service *svc;
    void *inst;
    struct core_metrics *m;
    uint32_t idle_timeout_ms; /* 0: never */
    int wake_fd;              /* readable once the runner stops: the connection is cut */
    struct core_tls *tls;     /* NULL: plain; else the handshake comes first (core/tls.h) */
};

/*
 * Serves one accepted connection to its end through the session driver (the service's session
 * from open to close, idle timeout, a lingering close after the service closes) and closes fd.
 * With c->tls, a TLS handshake comes first (done within idle_timeout_ms, counted in the tls_
 * counters) and the session's bytes go through TLS, closed with close_notify.
 * Counts bytes, errors, idle timeouts and service times (a greeting's from accepted_ns); the
 * connection totals and gauge are the caller's. Any thread, or a forked child.
 */
void core_runner_serve_conn(const struct core_conn_ctx *c, int fd, uint64_t accepted_ns);

/* The blocking driver's context for a connection of runner r. */
struct core_conn_ctx core_runner_conn_ctx(const struct core_runner *r);

#endif
