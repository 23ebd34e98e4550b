#ifndef API_SERVER_H
#define API_SERVER_H

/*
 * The control plane: the REST API, the OpenAPI document and the dashboard over HTTP, served by
 * libmicrohttpd from its own epoll thread. Handlers call the registry and never block on the
 * data plane.
 *
 * Every request passes the guard (api/guard.h: Host, Origin and Fetch Metadata, bearer token,
 * media type) before it is routed. Resources are bounded: API_SERVER_CONNECTION_LIMIT
 * connections in all, API_SERVER_PER_IP_LIMIT from one IP address (TCP only),
 * API_SERVER_MEMORY_LIMIT bytes of buffers per connection, request bodies of body_max bytes; a
 * connection idle for API_SERVER_IDLE_TIMEOUT_S is closed (libmicrohttpd's timeout), and one
 * that has not delivered a complete request head within API_SERVER_HEAD_TIMEOUT_S of its start
 * or of its previous response, or the declared body within API_SERVER_BODY_TIMEOUT_S of its
 * head, is cut by the server's deadline thread whatever it trickles meanwhile. A response under
 * way (an event stream, a download) has no deadline: only the idle timeout applies to it.
 *
 * Thread rules: start and stop from the main thread.
 */

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/events.h"
#include "core/registry.h"

#define API_SERVER_CONNECTION_LIMIT 256
#define API_SERVER_PER_IP_LIMIT 64
#define API_SERVER_MEMORY_LIMIT (64 * 1024)
#define API_SERVER_IDLE_TIMEOUT_S 30
#define API_SERVER_HEAD_TIMEOUT_S 15
#define API_SERVER_BODY_TIMEOUT_S 15
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
    size_t body_max;                /* largest request body accepted; 0: 1 MiB */
    /* Borrowed, may be NULL: the bus GET /api/v1/events streams (without one that route answers
     * 503). It must outlive the server: free it after api_server_stop(). */
    struct core_events *events;
    /* ": keepalive" on a stream that sent nothing for this long; 0 (and anything over half the
     * idle timeout) is 15000. */
    unsigned keepalive_ms;
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
