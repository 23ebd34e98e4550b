#ifndef FLEET_AMQP_H
#define FLEET_AMQP_H

/*
 * Connections to the fleet's broker (rabbitmq-c 0.11), shared by the daemon's bus thread and the
 * `sockserv fleet` command. Nothing here keeps state between calls or starts a thread: every
 * function works on the connection it is given, on the calling thread, and every call that talks
 * to the broker is bounded by the deadline of fleet_amqp_open() (opts.timeout_ms) so that no call
 * here blocks forever.
 *
 * Thread rule: a connection belongs to one thread (librabbitmq is not thread-safe); these
 * functions may be called from any thread on a connection that thread owns.
 *
 * Errors: negative errno, with a sentence in err->msg:
 *   -EINVAL        bad options (URL, credentials file, heartbeat) or PRECONDITION_FAILED (406)
 *   -ECONNREFUSED  "connection refused" (nobody listens)
 *   -ETIMEDOUT     "timed out" (open, handshake or a synchronous method passed the deadline)
 *   -EACCES        "ACCESS_REFUSED - Login was refused ..." (the broker's text) or 403
 *   -EBUSY         RESOURCE_LOCKED (405): an exclusive queue is held by another connection
 *   -ENOENT        NOT_FOUND (404)
 *   -EPROTO        TLS failure (certificate, hostname) or another channel/connection exception
 *   -ECONNRESET    the connection is gone (socket error, heartbeat timeout, connection.close)
 *   -ENOMEM        out of memory
 * Passwords never appear in err->msg.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <amqp.h>

#include "core/err.h"

#define FLEET_AMQP_DEFAULT_URL "amqp://localhost/"
#define FLEET_AMQP_HEARTBEAT_DEFAULT 10
#define FLEET_AMQP_TIMEOUT_DEFAULT_MS 5000
/* The channel fleet_amqp_open() opens. */
#define FLEET_AMQP_CHANNEL 1
/* x-max-length of a viewer queue (server-named, exclusive). */
#define FLEET_AMQP_VIEWER_MAX_LENGTH 10000

/* What the user gives (flags). Every pointer is borrowed; NULL means "not given". */
struct fleet_amqp_opts {
    const char *url;              /* amqp:// or amqps://; NULL: FLEET_AMQP_DEFAULT_URL */
    const char *credentials_file; /* one line USER:PASSWORD; overrides the URL's user/password */
    const char *cacert;           /* amqps: CA bundle (PEM) to verify the broker with */
    const char *cert;             /* amqps: client certificate (PEM), needs key */
    const char *key;              /* amqps: client key (PEM), needs cert */
    int heartbeat_s;              /* 1..60; 0: FLEET_AMQP_HEARTBEAT_DEFAULT */
    const char *connection_name;  /* shown by the broker, e.g. "sockserv n1"; NULL: "sockserv" */
    int64_t timeout_ms;           /* open, handshake and setup deadline; 0: 5000 */
};

/* The checked settings fleet_amqp_opts_check() makes; plain value, no pointers. Holds the
 * password: do not log it. */
struct fleet_amqp_conf {
    bool tls;
    char host[256];
    int port;
    char vhost[256];
    char user[256];
    char password[256];
    char cacert[4096];
    char cert[4096];
    char key[4096];
    int heartbeat_s;
    char connection_name[128];
    int64_t timeout_ms;
    char display[1024]; /* the URL without its password, for messages: "amqp://guest@host:5672/" */
};

/* Checks opts and fills *ret: parses the URL (amqp_parse_url on a copy), reads the credentials
 * file (one line "USER:PASSWORD", a trailing newline allowed), checks the TLS files are
 * readable and that cert and key come together, heartbeat within 1..60. Returns 0, or -EINVAL /
 * -ENOENT / -EACCES with a message naming the flag at fault ("--amqp: ...",
 * "--amqp-credentials FILE: ...") in err->msg and err->field set to the flag name without "--".
 * Any thread; no I/O other than reading the files. */
int fleet_amqp_opts_check(const struct fleet_amqp_opts *opts, struct fleet_amqp_conf *ret,
                          struct core_err *err);

/* Opens a connection: TCP (amqp://) or TLS (amqps://: TLS >= 1.2, peer and host name verified,
 * cacert/cert/key when given), open with conf->timeout_ms as deadline, handshake timeout, login
 * (PLAIN) with client properties (connection_name, capabilities connection.blocked,
 * consumer_cancel_notify, publisher_confirms, basic.nack, authentication_failure_close), the
 * requested heartbeat (read the negotiated one with amqp_get_heartbeat()); TCP keepalive,
 * TCP_USER_TIMEOUT and SO_SNDTIMEO on the socket; an RPC timeout of conf->timeout_ms for the
 * synchronous methods that follow; and channel FLEET_AMQP_CHANNEL open. On success *ret is a new
 * connection: free it with fleet_amqp_close(). On failure nothing is left open. */
int fleet_amqp_open(const struct fleet_amqp_conf *conf, amqp_connection_state_t *ret,
                    struct core_err *err);

/* Closes and frees c. graceful: channel and connection close handshakes (bounded by the RPC
 * timeout); otherwise the socket is just dropped (use that after any error). Accepts NULL. */
void fleet_amqp_close(amqp_connection_state_t c, bool graceful);

/* Reopens channel ch after a channel exception closed it (the broker's channel.close was
 * answered by the library). Returns 0 or a negative errno. */
int fleet_amqp_channel_reopen(amqp_connection_state_t c, amqp_channel_t ch, struct core_err *err);

/* Turns the reply of a synchronous call into 0 or a negative errno (table above) and writes
 * "WHAT: TEXT" into err (the broker's reply text for server exceptions, e.g. "declare
 * sockserv.node.n1: RESOURCE_LOCKED - cannot obtain exclusive access ..."). what may be NULL. */
int fleet_amqp_reply_check(amqp_rpc_reply_t r, const char *what, struct core_err *err);

/* The same for a librabbitmq status code (AMQP_STATUS_*): 0 for AMQP_STATUS_OK. */
int fleet_amqp_status_check(int status, const char *what, struct core_err *err);

/* Declares the contract's topology on channel ch (idempotent): PREFIX.events and PREFIX.rpc
 * (durable topic exchanges), PREFIX.desired and PREFIX.nodes (streams with the contract's
 * arguments), and the nodes stream's bindings to PREFIX.events. prefix must be valid. */
int fleet_amqp_declare(amqp_connection_state_t c, amqp_channel_t ch, const char *prefix,
                       struct core_err *err);

/* Declares the node's rpc inbox PREFIX.node.<node> (classic, exclusive, not durable) and binds it
 * to PREFIX.rpc with rpc.<node> and rpc.all. -EBUSY when another connection holds it (the broker
 * closed channel ch: reopen it with fleet_amqp_channel_reopen()). */
int fleet_amqp_declare_node_queue(amqp_connection_state_t c, amqp_channel_t ch, const char *prefix,
                                  const char *node, struct core_err *err);

/* Declares a server-named exclusive viewer queue (x-max-length FLEET_AMQP_VIEWER_MAX_LENGTH)
 * bound to PREFIX.events with each of the n patterns. Writes its name to ret_name (len >= 128). */
int fleet_amqp_declare_viewer_queue(amqp_connection_state_t c, amqp_channel_t ch,
                                    const char *prefix, const char *const *patterns, size_t n,
                                    char *ret_name, size_t len, struct core_err *err);

/* Where a stream consumer starts. */
enum fleet_amqp_from {
    FLEET_AMQP_FROM_NONE,   /* not a stream: no x-stream-offset argument */
    FLEET_AMQP_FROM_FIRST,  /* "first" */
    FLEET_AMQP_FROM_LAST,   /* "last" */
    FLEET_AMQP_FROM_NEXT,   /* "next" */
    FLEET_AMQP_FROM_OFFSET, /* the offset below, as a long */
};

struct fleet_amqp_consume_opts {
    bool no_ack;
    bool exclusive;
    uint16_t prefetch; /* 0: no basic.qos; streams need one (and no_ack = false) */
    enum fleet_amqp_from from;
    uint64_t offset; /* FLEET_AMQP_FROM_OFFSET */
};

/* basic.qos (when prefetch > 0) and basic.consume of queue on ch. Writes the consumer tag to
 * ret_tag (len >= 128) when ret_tag is not NULL. The queue "amq.rabbitmq.reply-to" is direct
 * reply-to (use no_ack = true, on the channel the requests are published on). */
int fleet_amqp_consume(amqp_connection_state_t c, amqp_channel_t ch, const char *queue,
                       const struct fleet_amqp_consume_opts *o, char *ret_tag, size_t len,
                       struct core_err *err);

/* A message to publish. content_type is always application/json and app_id "sockserv".
 * Every string is borrowed and may be NULL (property not set). */
struct fleet_amqp_msg {
    const char *exchange;    /* "" for the default exchange */
    const char *routing_key; /* required */
    const void *body;
    size_t len;
    bool mandatory;
    bool persistent;  /* delivery_mode 2, else 1 */
    const char *type; /* the kind */
    const char *message_id;
    const char *correlation_id;
    const char *reply_to;
    const char *expiration; /* milliseconds as text, e.g. "10000" */
    int64_t timestamp_s;    /* 0: not set */
};

/* amqp_basic_publish of m on ch. Returns 0 or a negative errno (-ECONNRESET: the connection is
 * gone). Never call it on a connection the broker blocked (connection.blocked). */
int fleet_amqp_publish(amqp_connection_state_t c, amqp_channel_t ch, const struct fleet_amqp_msg *m,
                       struct core_err *err);

/* Reads an integer header (e.g. "x-stream-offset") of a delivered message's properties. Returns
 * true and writes *ret when present and integral (any AMQP integer type). */
bool fleet_amqp_header_int(const amqp_basic_properties_t *p, const char *key, int64_t *ret);

/* Copies b into buf as a C string; "" when b is empty or does not fit. For a property, check
 * its flag (p->_flags & AMQP_BASIC_..._FLAG) first. */
void fleet_amqp_bytes_str(amqp_bytes_t b, char *buf, size_t len);

#endif
