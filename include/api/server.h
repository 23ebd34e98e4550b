#ifndef API_SERVER_H
#define API_SERVER_H

/*
 * The control plane: the REST API, the OpenAPI document and the dashboard over HTTP, served by
 * libmicrohttpd from its own epoll thread. Handlers call the registry and never block on the
 * data plane.
 *
 * Thread rules: start and stop from the main thread.
 */

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/events.h"
#include "core/registry.h"

struct api_server;

struct api_server_opts {
    const char *host;               /* numeric address to listen on, e.g. "127.0.0.1" */
    uint16_t port;                  /* 0: the kernel picks one; see api_server_port() */
    struct core_registry *registry; /* borrowed; must outlive the server */
    size_t body_max;                /* largest request body accepted; 0: 1 MiB */
    /* Borrowed, may be NULL: the bus GET /api/v1/events streams (without one that route answers
     * 503). It must outlive the server: free it after api_server_stop(). */
    struct core_events *events;
    /* ": keepalive" on a stream that sent nothing for this long; 0 (and anything over half the
     * 30 s connection timeout) is 15000. */
    unsigned keepalive_ms;
};

/* Binds and starts serving. Returns 0 or a negative errno (-EADDRINUSE, ...) with err set. */
int api_server_start(const struct api_server_opts *opts, struct api_server **ret,
                     struct core_err *err);

/* The port the server listens on. */
uint16_t api_server_port(const struct api_server *s);

/* Stops serving (event streams are ended, open requests are finished or cut), joins its
 * threads, frees s. Returns promptly whatever the clients do. Accepts NULL. */
void api_server_stop(struct api_server *s);

#endif
