#ifndef API_FLEET_H
#define API_FLEET_H

/*
 * The fleet view's route: GET /api/v1/fleet answers the daemon's fleet view (fleet/view.h) when
 * it was started with --fleet-view. Same thread rules as api/handlers.h: the view locks inside,
 * and building its JSON does no I/O.
 */

#include "api/handlers.h"
#include "api/reply.h"

/* GET /api/v1/fleet: 200 with fleet_view_json() of req->view; 404 (a problem saying so) when
 * the daemon has no view. */
void api_handle_fleet(const struct api_request *req, struct api_reply *ret);

#endif
