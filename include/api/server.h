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
#include "core/registry.h"

struct api_server;

struct api_server_opts {
    const char *host;               /* numeric address to listen on, e.g. "127.0.0.1" */
    uint16_t port;                  /* 0: the kernel picks one; see api_server_port() */
    struct core_registry *registry; /* borrowed; must outlive the server */
    size_t body_max;                /* largest request body accepted; 0: 1 MiB */
};

/* Binds and starts serving. Returns 0 or a negative errno (-EADDRINUSE, ...) with err set. */
int api_server_start(const struct api_server_opts *opts, struct api_server **ret,
                     struct core_err *err);

/* The port the server listens on. */
uint16_t api_server_port(const struct api_server *s);

/* Stops serving (open requests are finished or cut), joins its threads, frees s. Accepts NULL. */
void api_server_stop(struct api_server *s);

#endif
