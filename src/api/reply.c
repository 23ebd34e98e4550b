#include "api/reply.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/download.h"
#include "api/events.h"

#define CONTENT_TYPE_JSON "application/json"
#define CONTENT_TYPE_PROBLEM "application/problem+json"
#define CONTENT_TYPE_OCTETS "application/octet-stream"

/* Sent when the real reply cannot be built (out of memory): static, needs no allocation. */
static const char bare_500[] =
    "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\",\"status\":500}\n";

void api_reply_init(struct api_reply *r)
{
    memset(r, 0, sizeof(*r));
    r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    r->fd = -1;
}

void api_reply_fini(struct api_reply *r)
{
    json_decref(r->json);
    if (r->fd >= 0)
        close(r->fd);
    api_stream_free(r->stream);
    free(r->text);
    api_reply_init(r);
}

void api_reply_json(struct api_reply *r, unsigned status, json_t *body)
{
    api_reply_fini(r);
    if (!body) {
        api_reply_error(r, -ENOMEM, NULL);
        return;
    }
    r->status = status;
    r->json = body;
}

void api_reply_text(struct api_reply *r, unsigned status, const char *content_type, char *text,
                    size_t len)
{
    api_reply_fini(r);
    r->status = status;
    r->text = text;
    r->text_len = text ? len : 0;
    r->content_type = content_type;
    r->no_store = true;
}

void api_reply_empty(struct api_reply *r, unsigned status)
{
    api_reply_fini(r);
    r->status = status;
}

static void set_problem(struct api_reply *r, unsigned status, const char *field, const char *fmt,
                        va_list ap) __attribute__((format(printf, 4, 0)));

static void set_problem(struct api_reply *r, unsigned status, const char *field, const char *fmt,
                        va_list ap)
{
    api_reply_fini(r);
    r->status = status;
    r->is_problem = true;
    (void)vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
    if (field)
        (void)snprintf(r->field, sizeof(r->field), "%s", field);
}

void api_reply_problem(struct api_reply *r, unsigned status, const char *field, const char *fmt,
                       ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_problem(r, status, field, fmt, ap);
    va_end(ap);
}

void api_reply_error(struct api_reply *r, int code, const struct core_err *err)
{
    unsigned status = api_status_from_errno(code);
    const char *field = err && err->field[0] ? err->field : NULL;

    if (err && err->msg[0])
        api_reply_problem(r, status, field, "%s", err->msg);
    else
        api_reply_problem(r, status, field, "%s", strerror(code < 0 ? -code : code));
    /* Out of descriptors: worth asking again once connections or drains have ended. */
    if (status == 503)
        r->retry_after = 1;
}

void api_reply_etag(struct api_reply *r, uint64_t revision)
{
    if (revision == 0)
        r->etag[0] = '\0';
    else
        (void)snprintf(r->etag, sizeof(r->etag), "\"r%" PRIu64 "\"", revision);
}

void api_reply_config_etag(struct api_reply *r, uint64_t revision)
{
    (void)snprintf(r->etag, sizeof(r->etag), "\"r%" PRIu64 "\"", revision);
}

void api_reply_method_not_allowed(struct api_reply *r, const char *method, const char *path,
                                  const char *allow)
{
    api_reply_problem(r, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, "%s is not allowed on %s; use %s",
                      method, path, allow);
    (void)snprintf(r->allow, sizeof(r->allow), "%s", allow);
}

void api_reply_asset(struct api_reply *r, const struct api_asset *asset, bool not_modified)
{
    api_reply_fini(r);
    r->status = not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK;
    r->asset = asset;
}

void api_reply_file(struct api_reply *r, int fd, uint64_t size, const char *name)
{
    api_reply_fini(r);
    r->fd = fd;
    if (api_content_disposition(name, r->disposition, sizeof(r->disposition)) < 0) {
        api_reply_problem(r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                          "the file name is too long for a Content-Disposition header");
        return;
    }
    r->status = MHD_HTTP_OK;
    r->fd_size = size;
    r->no_store = true;
}

void api_reply_stream(struct api_reply *r, struct api_stream *s)
{
    api_reply_fini(r);
    r->status = MHD_HTTP_OK;
    r->stream = s;
}

/* Whether c is an attr-char of RFC 8187: sent as itself in an ext-value. */
static bool is_attr_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$&+-.^_`|~", c) != NULL);
}

int api_content_disposition(const char *name, char *buf, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    static const char head[] = "attachment; filename=\"";
    static const char mid[] = "\"; filename*=UTF-8''";
    size_t n = strlen(name), need = sizeof(head) - 1 + n + sizeof(mid) - 1 + 1;
    char *p = buf;

    for (size_t i = 0; i < n; i++)
        need += is_attr_char((unsigned char)name[i]) ? 1 : 3;
    if (need > len) {
        if (len > 0)
            buf[0] = '\0';
        return -ENOSPC;
    }
    memcpy(p, head, sizeof(head) - 1);
    p += sizeof(head) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        *p++ = c >= 0x20 && c < 0x7f && !strchr("\"\\%/", c) ? (char)c : '_';
    }
    memcpy(p, mid, sizeof(mid) - 1);
    p += sizeof(mid) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        if (is_attr_char(c)) {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }
    }
    *p = '\0';
    return 0;
}

unsigned api_status_from_errno(int code)
{
    return core_err_http_status(code);
}

const char *api_status_title(unsigned status)
{
    const char *title = core_err_http_title(status);

    if (!title)
        title = MHD_get_reason_phrase_for(status);
    return title ? title : "Unknown";
}

json_t *api_problem_new(unsigned status, const char *detail, const char *field)
{
    return core_err_problem_json(status, api_status_title(status), detail, field);
}

/* The problem body of r: api_problem_new() and, when r names one, the listener at fault. */
static json_t *problem_of(const struct api_reply *r)
{
    json_t *p = api_problem_new(r->status, r->detail, r->field);

    if (p && r->listener[0] && json_object_set_new(p, "listener", json_string(r->listener)) < 0) {
        json_decref(p);
        return NULL;
    }
    return p;
}

/* Compact JSON text with a trailing newline, in a heap buffer for free(). NULL on ENOMEM. */
static char *dump_json(const json_t *j, size_t *ret_len)
{
    char *text = json_dumps(j, JSON_COMPACT);
    size_t len;
    char *grown;

    if (!text)
        return NULL;
    len = strlen(text);
    grown = realloc(text, len + 2);
    if (!grown) {
        free(text);
        return NULL;
    }
    grown[len] = '\n';
    grown[len + 1] = '\0';
    *ret_len = len + 1;
    return grown;
}

static struct MHD_Response *response_from_json(const json_t *j, const char *content_type)
{
    struct MHD_Response *resp;
    size_t len = 0;
    char *text = dump_json(j, &len);

    if (!text)
        return NULL;
    resp = MHD_create_response_from_buffer_with_free_callback(len, text, free);
    if (!resp) {
        free(text);
        return NULL;
    }
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

/*
 * The asset table is static: libmicrohttpd may send straight from it. A 304 gets the same
 * response: libmicrohttpd sends no body with a 304 and keeps the Content-Length of the 200, as
 * RFC 9110 (15.4.5) allows.
 */
static struct MHD_Response *response_from_asset(const struct api_asset *a)
{
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return NULL;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, a->etag) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

/* A text body, which the response then owns (r->text becomes NULL). */
static struct MHD_Response *response_from_text(struct api_reply *r)
{
    struct MHD_Response *resp;

    if (r->text_len == 0) {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer_with_free_callback(r->text_len, r->text, free);
        if (!resp)
            return NULL; /* r still owns the text */
        r->text = NULL;
    }
    if (!resp)
        return NULL;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

/* A stored file read from r->fd by the download workers (api/download.h), never by
 * libmicrohttpd's thread; the response then owns the fd (r->fd becomes -1). */
static struct MHD_Response *response_from_fd(struct api_reply *r, struct MHD_Connection *c)
{
    struct MHD_Response *resp = api_download_response(r->downloads, c, r->fd, r->fd_size);

    if (!resp)
        return NULL; /* r still owns the fd */
    r->fd = -1;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE_OCTETS) !=
        MHD_YES) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

/* The response r describes, with its extra headers; NULL on ENOMEM. A body r owns (fd,
 * stream) passes to the response. */
static struct MHD_Response *build(struct api_reply *r, struct MHD_Connection *c)
{
    struct MHD_Response *resp;

    if (r->stream) {
        resp = api_stream_response(r->stream, c);
        r->stream = NULL; /* the response took it, also on failure */
    } else if (r->fd >= 0) {
        resp = response_from_fd(r, c);
    } else if (r->asset) {
        resp = response_from_asset(r->asset);
    } else if (r->content_type) {
        resp = response_from_text(r);
    } else if (r->is_problem) {
        json_t *p = problem_of(r);

        resp = p ? response_from_json(p, CONTENT_TYPE_PROBLEM) : NULL;
        json_decref(p);
    } else if (r->json) {
        resp = response_from_json(r->json, CONTENT_TYPE_JSON);
    } else {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return NULL;
    if (r->location[0] &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location) != MHD_YES)
        goto out_destroy;
    if (r->allow[0] && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow) != MHD_YES)
        goto out_destroy;
    if (r->etag[0] && MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, r->etag) != MHD_YES)
        goto out_destroy;
    if (r->repr_digest[0] &&
        MHD_add_response_header(resp, "Repr-Digest", r->repr_digest) != MHD_YES)
        goto out_destroy;
    if (r->disposition[0] && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION,
                                                     r->disposition) != MHD_YES)
        goto out_destroy;
    if (r->no_store &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES)
        goto out_destroy;
    if (r->authenticate &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->authenticate) != MHD_YES)
        goto out_destroy;
    if (r->retry_after) {
        char text[16];

        (void)snprintf(text, sizeof(text), "%u", r->retry_after);
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, text) != MHD_YES)
            goto out_destroy;
    }
    if (r->preference_applied && MHD_add_response_header(resp, MHD_HTTP_HEADER_PREFERENCE_APPLIED,
                                                         r->preference_applied) != MHD_YES)
        goto out_destroy;
    return resp;

out_destroy:
    MHD_destroy_response(resp);
    return NULL;
}

enum MHD_Result api_reply_send(struct MHD_Connection *c, struct api_reply *r)
{
    struct MHD_Response *resp = build(r, c);
    unsigned status = r->status;
    enum MHD_Result ret;

    if (!resp) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        resp = MHD_create_response_from_buffer(sizeof(bare_500) - 1, (void *)bare_500,
                                               MHD_RESPMEM_PERSISTENT);
        if (!resp) {
            api_reply_fini(r);
            return MHD_NO;
        }
        (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE_PROBLEM);
    }
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    api_reply_fini(r);
    return ret;
}
