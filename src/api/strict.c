#include "api/strict.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "api/routes.h"
#include "core/buf.h"

/* How often the headers the framing and the guard depend on were sent. */
struct header_counts {
    unsigned host, content_length, transfer_encoding;
    const char *transfer_encoding_value;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct header_counts *c = cls;

    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        c->host++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        c->content_length++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        c->transfer_encoding++;
        c->transfer_encoding_value = value;
    }
    return MHD_YES;
}

/* Whether a Transfer-Encoding value is exactly "chunked" (any case, blanks around). */
static bool is_chunked(const char *value)
{
    size_t n;

    if (!value)
        return false;
    value += strspn(value, " \t");
    n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    return n == 7 && strncasecmp(value, "chunked", 7) == 0;
}

/* The query parameters the API reads: each may be given once. */
static const char *const query_keys[] = {"dry_run", "limit", "version"};

struct query_count {
    const char *key;
    unsigned n;
};

static enum MHD_Result count_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct query_count *c = cls;

    (void)kind;
    (void)value;
    if (key && strcmp(key, c->key) == 0)
        c->n++;
    return MHD_YES;
}

int api_strict_check(struct MHD_Connection *conn, const char *target, struct api_reply *ret)
{
    struct header_counts c = {0};

    (void)MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &c);
    if (c.content_length > 1 || (c.content_length > 0 && c.transfer_encoding > 0)) {
        api_reply_problem(ret, MHD_HTTP_BAD_REQUEST, NULL, "%s",
                          c.content_length > 1
                              ? "the request has more than one Content-Length header"
                              : "the request has both Content-Length and Transfer-Encoding");
        return -EPROTO;
    }
    if (c.transfer_encoding > 1 ||
        (c.transfer_encoding && !is_chunked(c.transfer_encoding_value))) {
        api_reply_problem(ret, MHD_HTTP_NOT_IMPLEMENTED, NULL,
                          "the only Transfer-Encoding this API reads is 'chunked'");
        return -EPROTO;
    }
    if (c.host > 1) {
        api_reply_problem(ret, MHD_HTTP_BAD_REQUEST, NULL,
                          "the request has more than one Host header");
        return -EPROTO;
    }
    if (target && api_uri_has_nul(target)) {
        api_reply_problem(ret, MHD_HTTP_BAD_REQUEST, NULL,
                          "the URL holds an encoded NUL byte (%%00)");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(query_keys) / sizeof(query_keys[0]); i++) {
        struct query_count qc = {.key = query_keys[i]};

        (void)MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, count_query, &qc);
        if (qc.n > 1) {
            api_reply_problem(ret, MHD_HTTP_BAD_REQUEST, query_keys[i],
                              "%s: the query parameter is given %u times; give it once",
                              query_keys[i], qc.n);
            return -EINVAL;
        }
    }
    return 0;
}

/* The values of one header of a request, joined. */
struct header_join {
    const char *name;
    unsigned n;
    struct core_buf text;
    bool failed;
};

static enum MHD_Result join_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct header_join *j = cls;

    (void)kind;
    if (strcasecmp(key, j->name) != 0)
        return MHD_YES;
    if ((j->n++ > 0 && core_buf_append(&j->text, ", ", 2) < 0) ||
        core_buf_append(&j->text, value ? value : "", value ? strlen(value) : 0) < 0) {
        j->failed = true;
        return MHD_NO;
    }
    return MHD_YES;
}

int api_strict_header_list(struct MHD_Connection *conn, const char *name, char **ret)
{
    struct header_join j = {.name = name};
    int r = 0;

    (void)MHD_get_connection_values(conn, MHD_HEADER_KIND, join_header, &j);
    if (j.failed) {
        r = -ENOMEM;
    } else if (j.n > 0) {
        if (core_buf_append(&j.text, "", 1) < 0) {
            r = -ENOMEM;
        } else {
            *ret = (char *)j.text.data;
            return 0;
        }
    }
    core_buf_fini(&j.text);
    return r;
}
