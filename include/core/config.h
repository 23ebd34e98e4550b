#ifndef CORE_CONFIG_H
#define CORE_CONFIG_H

/*
 * A listener's configuration: its validation from JSON (table-driven, one error naming the
 * field), its rendering back to JSON, and RFC 7396 merge patches. Pure functions, any thread.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <jansson.h>

#include "core/err.h"
#include "core/service.h"

#define CORE_ID_MAX 64 /* an id is 1..63 bytes of [A-Za-z0-9._-], starting alphanumeric */
#define CORE_HOST_MAX 64
#define CORE_WORKERS_MAX 256
#define CORE_MAX_CONNECTIONS_MAX 1000000
#define CORE_IDLE_TIMEOUT_MAX_MS 86400000u
#define CORE_DRAIN_TIMEOUT_MAX_MS 3600000u
#define CORE_DEFAULT_DRAIN_TIMEOUT_MS 30000u
#define CORE_LIMIT_RATE_MAX 10000000u /* the rates below: 0 (no limit) to this per second */

/* The defaults of the per-source limits (see docs/api.md, the listener resource). */
#define CORE_DEFAULT_MAX_CONNECTIONS_PER_SOURCE 0
#define CORE_DEFAULT_CONNECTION_RATE_PER_SOURCE 0
#define CORE_DEFAULT_REPLY_RATE_PER_SOURCE 100
#define CORE_DEFAULT_REPLY_RATE 10000

enum core_model {
    CORE_MODEL_SEQUENTIAL, /* one thread: accept, serve, close, next */
    CORE_MODEL_THREAD,     /* one thread per connection */
    CORE_MODEL_POOL,
    CORE_MODEL_PROCESS,
    CORE_MODEL_EVENT,
    CORE_MODEL_URING, /* io_uring loops (TCP) */
    CORE_MODEL_COUNT
};

struct core_listener_cfg {
    char id[CORE_ID_MAX];
    const struct core_service *svc;
    enum core_transport transport;
    char address[CORE_HOST_MAX]; /* numeric host; "::" is dual-stack */
    uint16_t port;               /* 0: the kernel picks one */
    enum core_model model;
    uint32_t workers;         /* UDP: receiving threads */
    uint32_t max_connections; /* TCP: open connections at once; more are refused */
    uint32_t idle_timeout_ms; /* TCP: a connection silent this long is closed; 0: never */
    /* How long the connections of a runner replaced by a live change, or of a moved socket,
     * may go on before they are cut */
    uint32_t drain_timeout_ms;
    /* TCP: open connections from one source IP address at once; 0: no limit */
    uint32_t max_connections_per_source;
    /* TCP: new connections per second from one source IP (burst: one second's); 0: no limit */
    uint32_t connection_rate_per_source;
    /* UDP: replies per second to one source IP (burst: one second's); 0: no limit */
    uint32_t reply_rate_per_source;
    uint32_t reply_rate; /* UDP: replies per second in all (burst: one second's); 0: no limit */
    bool enabled;        /* desired state */
    json_t *options;     /* owned; checked by the service, defaults filled in */
    /* Its renderings, made by core_listener_cfg_render() and shared by the copies the changes
     * make (core_listener_cfg_copy_rendered()); NULL: not rendered. A configuration changed
     * after it was rendered must be rendered again. */
    struct core_cfg_rendering *rendering;
};

/*
 * A configuration rendered once, for the state file and the revisions to write without
 * rendering again what did not change: its JSON (core_listener_cfg_to_json(), shared, never
 * changed) and its compact text (JSON_COMPACT | JSON_PRESERVE_ORDER).
 */
struct core_cfg_rendering {
    unsigned refs; /* atomic */
    json_t *json;
    char *text;
    size_t len;
};

const char *core_model_name(enum core_model m);
/* The model named name, or -EINVAL. */
int core_model_from_name(const char *name);
/* Whether a TCP listener of model m binds its socket with SO_REUSEPORT (its loops bind one more
 * socket each beside it), so that a change to m keeps the socket only from such a model. */
bool core_model_has_reuseport(enum core_model m);
/* Whether a listener of transport t may run model m in this build. */
bool core_model_is_available(enum core_model m, enum core_transport t);

/* Whether id is a valid listener id. */
bool core_id_is_valid(const char *id);

/*
 * Validates a listener object and fills *ret (caller storage; release with
 * core_listener_cfg_fini()). Absent fields take their defaults; "id" may be absent only when
 * id_optional (ret->id is then empty). The read-only members "status" and "metrics" are
 * ignored so that a GET's body can be PUT back. Returns 0 or -EINVAL with err naming the field;
 * *ret is untouched on failure.
 */
int core_listener_cfg_from_json(const json_t *j, const struct core_service_table *services,
                                bool id_optional, struct core_listener_cfg *ret,
                                struct core_err *err);

/* The configuration as JSON (every field). Returns a new reference, NULL on ENOMEM. */
json_t *core_listener_cfg_to_json(const struct core_listener_cfg *c);

/* core_listener_cfg_to_json(), shared with c's rendering when it has one: a new reference to
 * JSON that must not be changed. NULL on ENOMEM. */
json_t *core_listener_cfg_json(const struct core_listener_cfg *c);

/* Renders c (again: what it had is let go). Returns 0 or -ENOMEM (c then has none). */
int core_listener_cfg_render(struct core_listener_cfg *c);

/* c's rendering: its own, or a new one (core_listener_cfg_rendering_unref() it either way).
 * NULL on ENOMEM. */
struct core_cfg_rendering *core_listener_cfg_rendering(const struct core_listener_cfg *c);

void core_listener_cfg_rendering_unref(struct core_cfg_rendering *g);

/*
 * The compact texts of a set of configurations laid out for writev(): head, then each
 * configuration's text after sep (the first's after first_sep), then tail. The strings are the
 * caller's and must outlive the iovecs; the renderings are held until core_cfg_texts_release().
 */
struct core_cfg_texts {
    struct core_cfg_rendering **g;
    size_t n;
    struct iovec *iov;
    size_t n_iov;
    size_t len; /* the bytes of all of iov */
};

/* Lays out cfgs[0..n) in *ret as above, in their order. Returns 0 or
 * -ENOMEM (*ret then holds nothing). */
int core_cfg_texts_join(const struct core_listener_cfg *const *cfgs, size_t n, const char *head,
                        const char *first_sep, const char *sep, const char *tail,
                        struct core_cfg_texts *ret);

/* The bytes of t in one NUL-terminated string (free() it), or NULL on ENOMEM. */
char *core_cfg_texts_string(const struct core_cfg_texts *t);

void core_cfg_texts_release(struct core_cfg_texts *t);

/* Deep copy into *ret, without src's rendering. Returns 0 or -ENOMEM. Any thread. */
int core_listener_cfg_copy(const struct core_listener_cfg *src, struct core_listener_cfg *ret);

/* core_listener_cfg_copy() sharing src's rendering: only where the changes run (its JSON's
 * references are taken and let go there alone; jansson's are not made for other threads). */
int core_listener_cfg_copy_rendered(const struct core_listener_cfg *src,
                                    struct core_listener_cfg *ret);

/* Whether two configurations are the same in every field. */
bool core_listener_cfg_equal(const struct core_listener_cfg *a, const struct core_listener_cfg *b);

/* Releases what cfg owns. Accepts a zeroed cfg. */
void core_listener_cfg_fini(struct core_listener_cfg *c);

/*
 * RFC 7396: applies patch to target and returns the result as a new reference (target is not
 * modified). A non-object patch replaces the target. NULL on ENOMEM.
 */
json_t *core_json_merge_patch(const json_t *target, const json_t *patch);

#endif
