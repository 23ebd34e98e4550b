#include "api/fleet.h"

#include <stddef.h>

#include <jansson.h>

#include "fleet/view.h"

void api_handle_fleet(const struct api_request *req, struct api_reply *ret)
{
    if (!req->view) {
        api_reply_problem(ret, 404, NULL,
                          "this daemon keeps no fleet view: start it with --fleet-view (and "
                          "--amqp) to serve /api/v1/fleet");
        return;
    }
    /* NULL (out of memory) is a 500 */
    api_reply_json(ret, 200, fleet_view_json(req->view, fleet_view_now_ms()));
}
