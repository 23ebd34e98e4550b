#ifndef API_SERVER_H
#define API_SERVER_H

/*
 * The control plane: the REST API, the OpenAPI document and the dashboard over HTTP, served by
 * libmicrohttpd from its own epoll thread. Handlers call the registry and never block on the
 * data plane.
 *
 * Every request passes the guard (api/guard.h: Host, Origin and Fetch Metadata, bearer token,
 * media type) before it is routed.
 *
 * Admission. Every local client shares 127.0.0.1, so no limit is per address on loopback or a
 * Unix socket (API_SERVER_PER_IP_LIMIT applies on other addresses only); instead each
 * connection is in one phase, and the phases draw from separate shares:
 * - partial: waiting for or reading a request head (at most API_SERVER_HEAD_TIMEOUT_S from the
 *   connection's start or its previous response, idle keep-alive time included), or reading a
 *   declared body (API_SERVER_BODY_TIMEOUT_S from the head); the server's deadline thread cuts
 *   it at its deadline whatever it trickles meanwhile. At most API_SERVER_PARTIAL_LIMIT
 *   connections are partial: a new connection beyond that evicts the oldest partial one (idle
 *   keep-alive first, then a head, then a body), so a new request always gets in;
 * - streaming: GET /api/v1/events, at most API_SERVER_STREAM_LIMIT at once (beyond: 503 with
 *   Retry-After: API_SERVER_STREAM_RETRY_S and a problem);
 * - answering: a response under way (a stream included) has no deadline, but one whose socket
 *   holds unsent data that does not drain for API_SERVER_STALL_S (a client that does not read)
 *   is cut; and when the connections near API_SERVER_CONNECTION_LIMIT (within
 *   API_SERVER_RESERVE of it), a new one evicts the oldest response waiting on its client.
 * What is left of API_SERVER_CONNECTION_LIMIT beyond the partial and streaming shares is the
 * reserve of complete requests (health, ctl). A connection idle for API_SERVER_IDLE_TIMEOUT_S
 * is closed (libmicrohttpd's timeout); each has API_SERVER_MEMORY_LIMIT bytes of buffers, and
 * request bodies are at most body_max bytes.
 *
 * Thread rules: start and stop from the main thread.
 */

#include <stddef.h>
#include <stdint.h>

#include "api/priority.h"
#include "core/err.h"
#include "core/events.h"
#include "core/registry.h"
#include "core/service.h"

#define API_SERVER_CONNECTION_LIMIT 1024 /* connections in all */
#define API_SERVER_RESERVE 64            /* near the limit, stalled responses are evicted */
#define API_SERVER_PARTIAL_LIMIT 128     /* connections owing a head or a body, or idle */
#define API_SERVER_STREAM_LIMIT 64       /* event streams at once */
#define API_SERVER_STREAM_RETRY_S 5      /* Retry-After of the 503 beyond them */
#define API_SERVER_PER_IP_LIMIT 64       /* from one IP address, off on loopback */
#define API_SERVER_MEMORY_LIMIT (64 * 1024)
#define API_SERVER_IDLE_TIMEOUT_S 30
#define API_SERVER_HEAD_TIMEOUT_S 5
#define API_SERVER_BODY_TIMEOUT_S 15
#define API_SERVER_STALL_S 5      /* a response whose client reads nothing for this long is cut */
#define API_SERVER_UNIX_MODE 0600 /* the default mode of a Unix socket */

struct api_server;

struct api_server_opts {
    /* Where to listen: a numeric address ("127.0.0.1", "::1") and a port, or, when unix_path is
     * set, that Unix socket (host and port are then ignored). */
    const char *host;
    uint16_t port; /* 0: the kernel picks one; see api_server_port() */
    /*
     * A Unix socket path. A socket file there that nobody listens on is replaced; one in use is
     * -EADDRINUSE; anything else at the path is -EEXIST. The file gets unix_mode (0:
     * API_SERVER_UNIX_MODE) before the server listens, and is removed by api_server_stop().
     */
    const char *unix_path;
    unsigned unix_mode;
    /*
     * The bearer token every request but health and the dashboard's files must carry (bytes,
     * token_len long, see api_guard_token_is_valid()); NULL: none. Copied. Listening on an
     * address that is not loopback without one is refused (-EPERM).
     */
    const char *token;
    size_t token_len;
    /* HTTPS: the certificate (chain) and its key as PEM text (api/tls.h), both or neither;
     * NULL: plain HTTP. Borrowed for the call (loaded at start; the caller may wipe them after).
     * TLS 1.2 and newer only; TCP only (-EINVAL on a Unix socket). */
    const char *tls_cert;
    const char *tls_key;
    /* Extra host names requests may carry in Host and Origin (api/guard.h); copied. */
    const char *const *allow_hosts;
    size_t n_allow_hosts;
    struct core_registry *registry; /* borrowed; must outlive the server */
    /* Borrowed, must outlive the server; NULL: none. What GET /api/v1/services describes (the
     * registry's table). */
    const struct core_service_table *services;
    size_t body_max; /* largest request body accepted; 0: 1 MiB */
    /* Borrowed, may be NULL: the bus GET /api/v1/events streams (without one that route answers
     * 503). It must outlive the server: free it after api_server_stop(). */
    struct core_events *events;
    /* ": keepalive" on a stream that sent nothing for this long; 0 (and anything over half the
     * idle timeout) is 15000. */
    unsigned keepalive_ms;
    struct fleet_view *view; /* borrowed, may be NULL: what GET /api/v1/fleet shows */
    /* borrowed, may be NULL (no --amqp): the "fleet" member of the health, the sockserv_amqp_*
     * metrics */
    struct fleet_bridge *fleet;
    /* The API thread's scheduling (api/priority.h); 0: API_PRIORITY_OFF. */
    enum api_priority_mode priority;
};

/* Binds and starts serving. Returns 0 or a negative errno (-EADDRINUSE, -EPERM, ...) with err
 * set. */
int api_server_start(const struct api_server_opts *opts, struct api_server **ret,
                     struct core_err *err);

/* The port the server listens on; 0 on a Unix socket. */
uint16_t api_server_port(const struct api_server *s);

/* Stops serving (event streams are ended, open requests are finished or cut), joins its
 * threads, removes its Unix socket file, frees s. Returns promptly whatever the clients do.
 * Accepts NULL. */
void api_server_stop(struct api_server *s);

#endif
