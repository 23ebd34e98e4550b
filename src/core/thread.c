/* Thread names (core/thread.h). */
#include "core/thread.h"

#include <stdio.h>
#include <string.h>

void core_thread_name_listener(char *buf, const char *id, const char *role)
{
    /* "l:" and "/" take 3 of the 15. */
    size_t room = CORE_THREAD_NAME_MAX - 3, role_len = strnlen(role, room);
    int id_len = (int)(room - role_len);

    snprintf(buf, CORE_THREAD_NAME_MAX + 1, "l:%.*s/%.*s", id_len, id ? id : "", (int)role_len,
             role);
}

void core_thread_name(pthread_t t, const char *name)
{
    char cut[CORE_THREAD_NAME_MAX + 1];

    snprintf(cut, sizeof(cut), "%s", name);
    (void)pthread_setname_np(t, cut);
}
