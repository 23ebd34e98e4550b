#include "core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
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

unsigned core_err_http_status(int code)
{
    switch (code) {
    case -EINVAL:
        return 400;
    case -EACCES:
    case -EPERM:
        return 403;
    case -ENOENT:
        return 404;
    case -EEXIST:
    case -EADDRINUSE:
    case -EADDRNOTAVAIL:
    case -EBUSY:
    case -EMLINK:
        return 409;
    case -ESTALE:
        return 412;
    case -E2BIG:
    case -EFBIG:
        return 413;
    case -EMFILE:
    case -ENFILE:
        return 503; /* out of descriptors: some come back as connections and drains end */
    case -ENOSPC:
    case -EDQUOT:
        return 507;
    default:
        return 500;
    }
}

const char *core_err_http_title(unsigned status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 507:
        return "Insufficient Storage";
    default:
        return NULL;
    }
}

/* Length of the well-formed UTF-8 sequence at s (1 to 4 bytes), 0 if it is not one. */
static size_t utf8_sequence_len(const unsigned char *s)
{
    unsigned c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
            return 0; /* overlong, or a surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
            return 0; /* overlong, or past U+10FFFF */
        return 4;
    }
    return 0;
}

/*
 * text as a JSON string. Text that is not UTF-8 (a path's bytes, a message cut in the middle
 * of a character) has each offending byte replaced by '?'. NULL on ENOMEM.
 */
static json_t *json_text(const char *text)
{
    json_t *j = json_string(text);
    unsigned char *copy;

    if (j)
        return j;
    copy = (unsigned char *)strdup(text);
    if (!copy)
        return NULL;
    for (unsigned char *p = copy; *p;) {
        size_t n = utf8_sequence_len(p);

        if (n == 0) {
            *p = '?';
            n = 1;
        }
        p += n;
    }
    j = json_string((const char *)copy);
    free(copy);
    return j;
}

json_t *core_err_problem_json(unsigned status, const char *title, const char *detail,
                              const char *field)
{
    json_t *j;

    if (!title)
        title = core_err_http_title(status);
    j = json_pack("{s:s, s:s, s:I}", "type", "about:blank", "title", title ? title : "Unknown",
                  "status", (json_int_t)status);
    if (!j)
        return NULL;
    if (detail && detail[0] && json_object_set_new(j, "detail", json_text(detail)) < 0)
        goto out_free;
    if (field && field[0] && json_object_set_new(j, "field", json_text(field)) < 0)
        goto out_free;
    return j;

out_free:
    json_decref(j);
    return NULL;
}
