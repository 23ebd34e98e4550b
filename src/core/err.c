#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int core_err_set(struct core_err *err, int code, const char *field, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void core_err_clear(struct core_err *err)
{
    if (!err)
        return;
    err->msg[0] = '\0';
    err->field[0] = '\0';
}
