#ifndef API_SERVICES_H
#define API_SERVICES_H

/*
 * The services routes: what each service the daemon hosts speaks, which models it may run
 * under, its counters and its options, from the services' own tables (core_service_to_json()),
 * so that a client (the dashboard's form) needs no knowledge of its own about them. Same
 * thread rules as api/handlers.h.
 */

#include "api/handlers.h"
#include "api/reply.h"

/* GET /api/v1/services: 200 {"services": [...]}, sorted by name. */
void api_handle_services_list(const struct api_request *req, struct api_reply *ret);

/* GET /api/v1/services/{name}: 200 the service; 404 when the daemon has no service name. */
void api_handle_service_get(const struct api_request *req, struct api_reply *ret);

#endif
