#ifndef CORE_LISTENER_INT_H
#define CORE_LISTENER_INT_H

/*
 * What the listener's modules share, and nobody else may use: the struct, and the calls each
 * module offers the others.
 *
 * - listener.c: life (new, start, stop, free), state and its events, the status as JSON;
 * - listener_change.c: live reconfiguration (prepare, commit, abort, restore);
 * - listener_drain.c: the runners a change replaced, ending their connections.
 *
 * Sockets are bound through core/net.h. Every function here is called by the changing thread
 * (the one that calls new, start, stop, prepare, ...), unless it says otherwise.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

#include "core/emitter.h"
#include "core/listener.h"
#include "core/runner.h"
#include "core/service.h"

/* A service instance shared by the current runner and draining ones. Only the changing
 * thread touches it. */
struct inst_ref {
    const struct core_service *svc;
    void *inst;
    unsigned refs;
    /* The uploads given to it from outside a runner (core/upload.h), cut before it is freed.
     * Guarded by the registry's ops. */
    struct core_upload *uploads;
};

/* A runner replaced by a live reconfiguration: it accepts no more and lets its established
 * connections end, until its deadline. */
struct draining {
    struct core_runner *runner;
    struct inst_ref *inst;
    int64_t deadline_ms;      /* CLOCK_MONOTONIC */
    struct timespec deadline; /* the same, CLOCK_REALTIME, for the status */
    char bound[CORE_ADDR_STRLEN];
    bool moved; /* its own socket, closed: its connections are its runner's alone */
    bool muted; /* its runner was muted, not yet told to drain (by a reap but REAP_EXPIRED) */
    struct draining *next;
};

/* What the status shows of a draining runner (a copy, read outside the lock). */
struct drain_view {
    char bound[CORE_ADDR_STRLEN];
    int connections; /* a moved socket's runner's connections; -1: not told apart */
    bool accepting;  /* a thread of the runner may still accept */
    struct timespec deadline;
};

enum pending_kind {
    PENDING_NONE,
    PENDING_LIVE,    /* a new runner on the same socket; the old one still accepts */
    PENDING_MOVE,    /* a new runner on a new socket; the old one still accepts on its own */
    PENDING_RESTART, /* stopped and started again with the new configuration */
};

/* A change between core_listener_prepare() and its commit or abort: what puts it back. */
struct pending {
    enum pending_kind kind;
    struct core_listener_cfg old_cfg;
    struct core_runner *old_runner; /* LIVE, MOVE: still running */
    struct inst_ref *old_inst;
    int old_lfd; /* MOVE */
    char old_bound[CORE_ADDR_STRLEN];
    struct sockaddr_storage old_addr;
    char bound[CORE_ADDR_STRLEN]; /* MOVE: the new socket's */
    struct sockaddr_storage addr;
    int udp_fd;                                          /* MOVE, UDP: a dup of the new socket */
    enum core_state old_state;                           /* RESTART */
    char old_error[sizeof(((struct core_err *)0)->msg)]; /* RESTART */
};

struct core_listener {
    char id[CORE_ID_MAX];         /* never changes: readable without a lock */
    struct core_listener_cfg cfg; /* written under lock by the changing thread only */
    const char *state_dir;
    struct core_events *events;
    struct core_metrics *metrics; /* MAP_SHARED: children of the process model add to it */
    struct core_svc_env env;
    struct core_emitter emitter;  /* the sessions' events (env.emitter), to events */
    struct inst_ref *inst;        /* service instance while running */
    struct core_runner *runner;   /* while running */
    int lfd;                      /* while running: a dup of the runner's bound socket */
    struct sockaddr_storage addr; /* while running: where it is bound (changing thread) */
    uint16_t bound_port;          /* while running: the port it is bound to (changing thread) */
    struct pending pending;       /* changing thread only */
    struct core_endpoints *own;   /* borrowed, may be NULL: where the bound socket is published */
    struct core_threads *threads; /* borrowed: the pool of its runners' threads */
    struct core_sources
        *sources; /* per-source counts, shared by the current and draining runners */

    pthread_mutex_t lock;                            /* guards cfg writes and the status below */
    enum core_state state;                           /* guarded by lock */
    char bound[CORE_ADDR_STRLEN];                    /* guarded by lock; "" unless running */
    struct timespec since;                           /* guarded by lock: last state change */
    char error[sizeof(((struct core_err *)0)->msg)]; /* guarded by lock; "" unless failed */
    /* Runners replaced live, still ending their connections: linked and unlinked under lock
     * by the changing thread, which alone stops them. */
    struct draining *draining;
    /* What the status shows of cfg's options.tls (core_tls_status_json()), made from tls_of
     * (a copy of the options.tls it was made from, NULL: none yet), both guarded by lock. */
    json_t *tls_of, *tls_status;
};

/* ---- listener.c ---- */

/* Sets the state, bound address and error (NULL for none), and publishes the event. */
void core_listener_set_state(struct core_listener *l, enum core_state s, const char *bound,
                             const char *error);

/* A "listener.state" event for a change of the draining runners alone (state unchanged). */
void core_listener_publish_draining(struct core_listener *l);

/* A new instance of cfg's service, with one reference. Returns 0 or a negative errno with err
 * set. */
int core_listener_inst_new(struct core_listener *l, const struct core_listener_cfg *cfg,
                           struct inst_ref **ret, struct core_err *err);

/* Drops a reference; the last one frees the instance. Accepts NULL. */
void core_listener_inst_unref(struct inst_ref *ir);

/* Starts a runner for cfg on fd with the service instance ir (borrowed: the caller keeps its
 * reference), the listener's metrics, per-source counts and endpoints. Takes fd, also when it
 * fails (see core_runner_start()). */
int core_listener_runner_start(struct core_listener *l, const struct core_listener_cfg *cfg,
                               struct inst_ref *ir, int fd, struct core_runner **ret,
                               struct core_err *err);

/*
 * Creates and binds a socket as cfg says (see core_net_bind()), non-blocking for TCP, as a
 * runner takes it (core_runner_ctx). Returns the fd or a negative
 * errno with err set (field "address" for an address that does not parse, "port" when it cannot
 * be bound there); *ret_bound gets the address as the status shows it, *ret_addr (may be NULL)
 * the address itself.
 */
int core_listener_bind(const struct core_listener_cfg *cfg, char *ret_bound,
                       struct sockaddr_storage *ret_addr, struct core_err *err);

/* ---- listener_drain.c ---- */

/* Puts runner (already told to drain) among the draining ones, with the configuration's
 * drain_timeout_ms; moved_addr (NULL for none) is the address of its own socket, closed. Takes
 * runner and the reference inst. muted: the runner was muted (runner->mute()) instead of told
 * to drain; a reap by REAP_DONE or REAP_ALL tells it (drain()). */
void core_listener_drain_add(struct core_listener *l, struct core_runner *runner,
                             struct inst_ref *inst, const char *bound,
                             const struct sockaddr_storage *moved_addr, bool muted);

/* Stops the draining runners that are done or past their deadline (all of them when all) and
 * frees them. Returns whether it stopped any. */
bool core_listener_drain_reap(struct core_listener *l, bool all);

/* Which draining runners a reap stops. */
enum reap {
    REAP_EXPIRED, /* those past their deadline (their connections are cut); a change's own,
                   * which leaves its muted runners untold, for after its answer */
    REAP_DONE,    /* those too whose connections have all ended; a muted runner is told to
                   * drain first */
    REAP_ALL,     /* every one */
};

/* Tells the draining runners that a reap by what would stop to stop, without waiting for
 * them; a reap then joins them. */
void core_listener_drain_wake(struct core_listener *l, enum reap what);

/* Reaps the draining runners of n listeners by what, every one of them told before any is
 * joined; a "listener.state" event for each listener whose drains changed. */
void core_listener_reap_many(struct core_listener *const *ls, size_t n, enum reap what);

/* A copy of the draining runners, for the status (free() it); NULL and *ret_n 0 for none.
 * Under l->lock. */
struct drain_view *core_listener_drain_views_locked(const struct core_listener *l, size_t *ret_n);

/* The "draining" array of the status from the copy v of n runners (taken under the lock, with
 * each moved runner's count of its connections). New reference, or NULL on ENOMEM. */
json_t *core_listener_draining_json(const struct drain_view *v, size_t n);

#endif
