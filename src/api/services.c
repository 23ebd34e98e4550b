#include "api/services.h"

#include <jansson.h>

#include "core/service.h"

static const struct core_service_table no_services;

/* The table of req (an empty one when the server has none). */
static const struct core_service_table *table_of(const struct api_request *req)
{
    return req->services ? req->services : &no_services;
}

void api_handle_services_list(const struct api_request *req, struct api_reply *ret)
{
    json_t *list = core_services_to_json(table_of(req));

    /* NULL (out of memory) is a 500; "o" takes list, also when the pack fails */
    api_reply_json(ret, 200, list ? json_pack("{s:o}", "services", list) : NULL);
}

void api_handle_service_get(const struct api_request *req, struct api_reply *ret)
{
    const char *name = req->name ? req->name : "";
    const struct core_service *svc = core_service_find(table_of(req), name);

    if (!svc) {
        api_reply_problem(ret, 404, NULL, "no service '%.64s'", name);
        return;
    }
    api_reply_json(ret, 200, core_service_to_json(svc)); /* NULL (out of memory): 500 */
}
