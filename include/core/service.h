#ifndef CORE_SERVICE_H
#define CORE_SERVICE_H

/*
 * The service interface: what a protocol implements so that any runner can drive it. A service
 * never touches a socket ("sans-I/O"): it is fed bytes or a datagram and appends its answer to
 * a buffer; the runner owns sockets and threads. svc/ implements this table, main.c registers
 * the services in a struct core_service_table, and core/ looks them up by name.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/metrics.h"

enum core_transport { CORE_TCP, CORE_UDP, CORE_TRANSPORT_COUNT };

#define CORE_TRANSPORT_BIT(t) (1u << (t))

/* Verdicts of the session callbacks; a negative errno means a protocol or service error
 * (the runner sends what is in out, counts an error and closes). */
enum core_verdict {
    CORE_VERDICT_MORE = 0,  /* keep the connection; feed me more */
    CORE_VERDICT_CLOSE = 1, /* send what is in out, then close */
    CORE_VERDICT_PULL = 2   /* send what is in out, then call session_pull for the rest (a
                             * large answer, produced as the client takes it); input is not
                             * read meanwhile */
};

/* What a service instance may know of the listener that runs it. Borrowed for the life of
 * the instance. */
struct core_svc_env {
    const char *listener_id;
    const char *state_dir;        /* the daemon's state directory, for services that store data */
    struct core_metrics *metrics; /* the listener's counters; svc[] indexes match counters[] */
    /* NULL-terminated, may be NULL: the daemon's own files and directories besides state_dir
     * (the token file's directory, the revisions log) that no service may keep data in, above
     * or at; state_dir always counts. */
    const char *const *protected_paths;
};

struct core_service {
    const char *name;            /* "echo": the "service" field of a listener */
    unsigned transports;         /* CORE_TRANSPORT_BIT()s this service speaks */
    unsigned refused_models;     /* 1u << enum core_model for each model it cannot run under
                                  * (e.g. state its sessions share in one process); 0: none */
    const char *const *counters; /* names of the service's own counters, n_counters of them */
    unsigned n_counters;         /* <= CORE_METRICS_SVC_MAX */

    /*
     * Validates a listener's "options" object (NULL when absent) for transport t and returns
     * in *ret_opts a new object with every option present (defaults filled in). Unknown or
     * ill-typed options are -EINVAL with err->field "options.NAME". Any thread; pure.
     */
    int (*options_check)(const json_t *opts, enum core_transport t, json_t **ret_opts,
                         struct core_err *err);

    /*
     * Optional: judges checked options against the place the listener would run in, what
     * options_check cannot see (paths on disk), creating nothing. Always: what must never run
     * (a directory that is, holds or lies inside the daemon's own state); when usable is true
     * also what would keep the listener from starting now (a directory that cannot be made or
     * written, or that another listener holds: -EBUSY). Returns 0, -EINVAL or -EBUSY with
     * err->field "options.NAME". Any thread; reads the file system.
     */
    int (*env_check)(const json_t *opts, const struct core_svc_env *env, bool usable,
                     struct core_err *err);

    /*
     * Optional: what a running listener of this service holds alone (a directory, resolved),
     * as a name into buf (len bytes); "" when nothing. Two enabled listeners of one set whose
     * names are equal are refused before anything changes (-EBUSY, field claim_field), so a
     * dry run sees the clash the real change would meet. Returns 0 or a negative errno. Any
     * thread; reads the file system.
     */
    int (*claim)(const json_t *opts, const struct core_svc_env *env, char *buf, size_t len);
    const char *claim_field;

    /* Creates the per-listener state from checked options. Called when the listener starts,
     * before its workers. Returns 0 or a negative errno (err says why). */
    int (*instance_new)(const json_t *opts, enum core_transport t, const struct core_svc_env *env,
                        void **ret_inst, struct core_err *err);
    /* Frees the instance after every worker stopped. Accepts NULL. */
    void (*instance_free)(void *inst);

    /* TCP. Sessions are session_size bytes of zeroed runner memory; the callbacks of one
     * session are called from one thread at a time, sessions of one instance concurrently. */
    size_t session_size;
    /* A connection was accepted. May append a greeting to out. */
    int (*session_open)(void *inst, void *sess, struct core_buf *out);
    /* len > 0 bytes arrived. Appends the answer to out. */
    int (*session_feed)(void *sess, const uint8_t *in, size_t len, struct core_buf *out);
    /* The client closed its sending side. May append a last answer. */
    int (*session_eof)(void *sess, struct core_buf *out);
    /* After a CORE_VERDICT_PULL, once out has been sent: append the next part of the answer.
     * Optional for services that never answer CORE_VERDICT_PULL. */
    int (*session_pull)(void *sess, struct core_buf *out);
    /* Called once after session_open, whatever it returned; frees what the session holds.
     * completed is false when the runner cut the connection (reset, timeout, stop). */
    void (*session_close)(void *sess, bool completed);

    /* UDP. One datagram arrived; returns 1 with the reply in out, 0 for no reply (the service
     * counted why), or a negative errno. Called from several workers concurrently. */
    int (*datagram)(void *inst, const uint8_t *in, size_t len, struct core_buf *out);

    /* Optional (NULL when the service keeps no files): what the REST API's files routes show.
     * Both work whether the listener runs or not; env->metrics may be NULL. Any thread. */
    /* The stored files as a JSON array (new reference). */
    int (*files_list)(const json_t *opts, const struct core_svc_env *env, json_t **ret,
                      struct core_err *err);
    /* Opens stored file name for reading (version 0: the current one, N: older version N):
     * *ret_fd is O_RDONLY|O_CLOEXEC and the caller closes it; *ret_size its size. -ENOENT when
     * there is no such file, -EINVAL for a bad name. */
    int (*file_open)(const json_t *opts, const struct core_svc_env *env, const char *name,
                     unsigned version, int *ret_fd, uint64_t *ret_size, struct core_err *err);
};

struct core_service_table {
    const struct core_service *const *svcs;
    size_t n;
    const char *const *protected_paths; /* handed to services in core_svc_env; may be NULL */
};

/* The service named name, or NULL. */
const struct core_service *core_service_find(const struct core_service_table *t, const char *name);

const char *core_transport_name(enum core_transport t);

#endif
