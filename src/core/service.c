#include "core/service.h"

#include <string.h>

const struct core_service *core_service_find(const struct core_service_table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->svcs[i]->name, name) == 0)
            return t->svcs[i];
    return NULL;
}

const char *core_transport_name(enum core_transport t)
{
    return t == CORE_UDP ? "udp" : "tcp";
}
