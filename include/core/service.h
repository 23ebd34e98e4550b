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

struct core_emitter;

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
    /* Where the instance's sessions report events (core_svc_emit()); NULL: nowhere. */
    struct core_emitter *emitter;
};

/*
 * Reports an event from a session callback, under every model, for the daemon's event stream
 * (GET /api/v1/events) and whoever else follows the event bus: type is "area.what" (at most 31
 * bytes), data a JSON object (taken, also when the event is dropped) to which the listener's id
 * is added as "listener". In the daemon the event is published at once; in a child of the
 * `process` model it is handed to the daemon without blocking and without any lock of the
 * daemon's, and dropped, counted in the listener's events_dropped, when the daemon has not
 * kept up (or when it is larger than 4096 bytes as compact JSON). An event costs a JSON
 * encoding and, in a child, one message: report what a user follows (a file stored), not
 * every byte. em NULL: nothing happens. The instance's sessions, any model.
 */
void core_svc_emit(struct core_emitter *em, const char *type, json_t *data);

/* The type of an option's value, as JSON carries it. */
enum core_option_type {
    CORE_OPTION_STRING,  /* a string without NUL bytes; with choices, one of them */
    CORE_OPTION_INTEGER, /* an integer from minimum to maximum */
    CORE_OPTION_BOOLEAN, /* true or false */
    CORE_OPTION_PATH,    /* an absolute path: "/..." shorter than PATH_MAX, no control bytes */
    CORE_OPTION_OBJECT,  /* an object: only the options core adds (tls, core/tls.h) */
    CORE_OPTION_TYPE_COUNT
};

#define CORE_OPTION_NO_MAXIMUM INT64_MAX /* an integer option's maximum when it has none */

/*
 * One option of a service: one key of a listener's "options" object. A service's table of them
 * is what validates its options (core_service_options_check()) and what GET /api/v1/services
 * shows (core_service_to_json()).
 */
struct core_option {
    const char *name;
    enum core_option_type type;
    unsigned transports; /* CORE_TRANSPORT_BIT()s it applies to; elsewhere it is unknown */
    /* Whether a running TCP listener takes a new value live: its socket and established
     * connections are kept, the new value applies to new connections. (A UDP listener restarts
     * on any change.) */
    bool live;
    /* The value used when absent, by type. A string or path option with default_string NULL
     * has a default computed when the listener starts: it stays absent from the checked
     * options, and help says what it is. */
    const char *default_string;
    int64_t default_integer;
    bool default_boolean;
    int64_t minimum, maximum;   /* integer: the range; maximum CORE_OPTION_NO_MAXIMUM for none */
    const char *const *choices; /* string: the allowed values, NULL-terminated; NULL: any */
    const char *unit;           /* NULL, or "ms", "s", "bytes", "bytes/s", ... */
    const char *help;           /* one line, for a form's hint */
};

/*
 * A service: its description (name, transports, models, counters, options) and the callbacks a
 * runner drives.
 *
 * Threads and processes. Under every model but `process`, the session callbacks run in the
 * daemon's threads, on the instance instance_new made. Under the TCP `process` model the daemon
 * still makes the instance (instance_new, in the daemon, before any child exists) and frees it
 * (instance_free, in the daemon, after every child ended), but each connection is served by a
 * child process forked for it: session_open, session_feed, session_eof, session_pull and
 * session_close run in that child, on the child's copy of the instance (copy-on-write memory
 * of the daemon at the fork), and the child then exits. So, under `process`:
 *   - counters added through env->metrics are seen at once by the daemon (the metrics live in
 *     memory the listener shares with its children);
 *   - what a session writes into the instance's ordinary memory is seen by no other session
 *     and not by the daemon: state that sessions share must live in memory the service mapped
 *     MAP_SHARED in instance_new, behind process-shared locks (backup does so), or the
 *     service refuses the model (refused_models);
 *   - the child keeps no fd but its connection (the instance's fds are closed in it: a session
 *     that needs a file opens its own) and must start no thread;
 *   - a lock that another thread of the daemon held at the fork stays held in the child: a
 *     session takes no lock of ordinary memory that the daemon's threads also take.
 * UDP has no `process` model: datagram always runs in the daemon.
 */
struct core_service {
    const char *name;    /* "echo": the "service" field of a listener */
    const char *help;    /* one line about the service */
    unsigned transports; /* CORE_TRANSPORT_BIT()s this service speaks */
    /* 1u << enum core_model (core/config.h) for each TCP model the service cannot run under
     * (CORE_MODEL_PROCESS when its sessions must share state in the instance's ordinary memory:
     * see above); 0: none. A listener asking for a refused model is invalid (-EINVAL, field
     * "model", from core_listener_cfg_from_json()), and core_service_to_json() leaves the model
     * out of the service's "models". */
    unsigned refused_models;
    const char *const *counters;     /* names of the service's own counters, n_counters of them */
    const char *const *counter_help; /* one line for each counter, or NULL */
    /* For each counter, the CORE_TRANSPORT_BIT()s on which it can count; NULL, or 0 for a
     * counter: every transport of the service. */
    const unsigned *counter_transports;
    unsigned n_counters; /* <= CORE_METRICS_SVC_MAX */

    /* The service's options; n_options entries, names unique. */
    const struct core_option *options;
    unsigned n_options;

    /*
     * Optional: what the table cannot express, judged after it on opts, the options of transport
     * t with their defaults filled in (core_service_options_check()): the parsing of a format or
     * a time zone, a rule across options. May change opts (it is the caller's new object).
     * Returns 0, or a negative errno with err->field "options.NAME" (-EINVAL for a bad value).
     * Any thread; may read files (a time zone) but changes nothing outside opts.
     */
    int (*options_verify)(json_t *opts, enum core_transport t, struct core_err *err);

    /*
     * Optional: judges checked options against the place the listener would run in, what
     * the options' checks cannot see (paths on disk), creating nothing. Always: what must never run
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

    /* Creates the per-listener state from checked options, in the daemon. Called when the
     * listener starts, before its workers, and for a live change (the old instance then serves
     * its remaining connections beside the new one), from the thread making listener changes.
     * Returns 0 or a negative errno (err says why). */
    int (*instance_new)(const json_t *opts, enum core_transport t, const struct core_svc_env *env,
                        void **ret_inst, struct core_err *err);
    /* Frees the instance, in the daemon, after every worker (and child) of it ended. Accepts
     * NULL. */
    void (*instance_free)(void *inst);

    /* TCP. Sessions are session_size bytes of zeroed runner memory; the callbacks of one
     * session are called from one thread at a time, sessions of one instance concurrently (in
     * threads, or in child processes under `process`: see above). */
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

    /*
     * Optional (both or neither): how a session of the service stores one file given whole
     * from outside the wire (the REST API's upload, core/upload.h), so that every rule of the
     * protocol holds for it. upload_header appends to out the input that asks a fresh session
     * to store name, size bytes long, with the content's SHA-256 when sha256 is not NULL;
     * the content follows it. -EINVAL (err->field "name") for a name the service refuses.
     * upload_result reads one answer line of such a session (len bytes, without '\n'):
     * 0 when the content may follow (or go on), 1 with *ret (new reference: {"name",
     * "version", "size", "sha256", "stored"}) once stored, or a negative errno with err for a
     * refusal: -EINVAL (field "name" for a bad name), -EFBIG, -ENOSPC (quota or disk full),
     * -EEXIST, -EBUSY, -EBADMSG (the content does not match its checksum), -EIO. Any thread.
     * Such a session runs in the daemon under every model, the `process` model's too, on the
     * daemon's instance: a service that offers the hooks serves a session there.
     */
    int (*upload_header)(const char *name, uint64_t size, const uint8_t *sha256,
                         struct core_buf *out, struct core_err *err);
    int (*upload_result)(const char *line, size_t len, json_t **ret, struct core_err *err);
    /* Whether the session callbacks may block on the disk (file writes, fsync, reads, a lock
     * on a directory): the `event` runner then never runs them on a loop's thread but on worker
     * threads of its own, one session's callbacks one at a time and in order (runner_event.c).
     * false: they only compute, and run on the loop's thread at no added cost. The other models
     * run every callback on a thread (or process) of the connection's own anyway. */
    bool blocking;
    /* TCP: the most bytes one read of a connection hands to session_feed; 0: the runners'
     * default (64 KiB). A service that streams files in asks for more, to do less per byte. */
    size_t read_size;
};

struct core_service_table {
    const struct core_service *const *svcs;
    size_t n;
    const char *const *protected_paths; /* handed to services in core_svc_env; may be NULL */
};

/* The service named name, or NULL. */
const struct core_service *core_service_find(const struct core_service_table *t, const char *name);

/* "tcp" or "udp". */
const char *core_transport_name(enum core_transport t);

/*
 * The option named name of svc, or NULL. Besides its own table, every service that speaks TCP
 * has the option "tls" (type object, TCP only, absent by default: TLS on the listener,
 * checked by core_tls_options_check()), added here and by the two calls below.
 */
const struct core_option *core_service_option(const struct core_service *svc, const char *name);

/*
 * Validates a listener's "options" object (NULL when absent) against svc's table for transport
 * t, then with svc->options_verify, and returns in *ret_opts a new object holding every option
 * of t (defaults filled in, but for computed ones), in the table's order. -EINVAL with
 * err->field naming what is wrong: "transport" when svc does not speak t; "options" when opts
 * is not an object; "options.NAME" for an option unknown for t (one of another transport
 * included), of the wrong type, out of range, or not one of its choices. -ENOMEM. Any thread.
 */
int core_service_options_check(const struct core_service *svc, const json_t *opts,
                               enum core_transport t, json_t **ret_opts, struct core_err *err);

/*
 * svc as GET /api/v1/services/{name} shows it (new reference; NULL when out of memory):
 * {"name", "help", "transports", "models", "counters": [{"name", "help", "transports"}],
 * "options": [{"name", "type", "default", ["choices"], ["minimum"], ["maximum"], ["unit"],
 * "transports", "live", "help"}]}. "models" are the TCP models a listener of svc may run (none for
 * a UDP-only service); a computed default is null. Any thread.
 */
json_t *core_service_to_json(const struct core_service *svc);

/* Every service of t as core_service_to_json() shows it, sorted by name (new reference; NULL
 * when out of memory). Any thread. */
json_t *core_services_to_json(const struct core_service_table *t);

#endif
