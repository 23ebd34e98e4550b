/*
 * The HTTP client of `sockserv ctl`: one libcurl easy handle reused for every request of the
 * command (so they share a connection), over TCP or a Unix socket, with the bearer token, the
 * media type every mutation must carry, and no proxy (the daemon is local, or named exactly).
 */
#include "cli/ctl.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "sockserv-config.h"

#define UNIX_PREFIX "unix:"
#define BODY_MAX (256u * 1024 * 1024)

struct cli_ctl_client {
    CURL *curl;
    char *base;      /* "http://HOST:PORT" without a trailing '/' */
    char *unix_path; /* NULL over TCP */
    char *where;     /* for messages */
    char *auth;      /* "Authorization: Bearer TOKEN", or NULL */
    char *cacert;    /* the CA file for https, or NULL: the system's */
    int64_t timeout_ms;
};

/* What one transfer gathers. */
struct xfer {
    const struct cli_ctl_request *req;
    struct cli_ctl_response *resp;
    CURL *curl;
    size_t cap;
    bool too_big;
    bool stopped;
    int64_t next_poll_ms;
};

int cli_ctl_client_new(const struct cli_ctl_client_opts *opts, struct cli_ctl_client **ret,
                       struct core_err *err)
{
    static bool global_done;
    struct cli_ctl_client *c;
    const char *api = opts->api && *opts->api ? opts->api : CLI_CTL_DEFAULT_API;
    size_t n;

    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return core_err_set(err, -ENOMEM, NULL, "cannot initialise libcurl");
        global_done = true;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : CLI_CTL_DEFAULT_TIMEOUT_MS;
    if (strncmp(api, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0) {
        const char *path = api + strlen(UNIX_PREFIX);

        if (!*path) {
            free(c);
            return core_err_set(err, -EINVAL, "api", "--api unix:PATH needs a socket path");
        }
        c->unix_path = strdup(path);
        c->base = strdup("http://localhost");
        c->where = strdup(api);
    } else if (strstr(api, "://")) {
        if (strncasecmp(api, "http://", 7) != 0 && strncasecmp(api, "https://", 8) != 0) {
            free(c);
            return core_err_set(err, -EINVAL, "api",
                                "--api '%s': http://HOST:PORT, https://HOST:PORT or unix:PATH",
                                api);
        }
        c->base = strdup(api);
    } else {
        size_t len = strlen(api) + 8;

        c->base = malloc(len);
        if (c->base)
            snprintf(c->base, len, "http://%s", api);
    }
    if (!c->base || (c->unix_path == NULL && strncmp(api, UNIX_PREFIX, 5) == 0)) {
        cli_ctl_client_free(c);
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    }
    n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    if (strlen(c->base) <= strlen("http://") || strchr(strstr(c->base, "://") + 3, '/')) {
        core_err_set(err, -EINVAL, "api", "--api '%s': http://HOST:PORT or unix:PATH (no path)",
                     api);
        cli_ctl_client_free(c);
        return -EINVAL;
    }
    if (!c->where)
        c->where = strdup(c->base);
    if (opts->token) {
        size_t len = strlen(opts->token) + sizeof("Authorization: Bearer ");

        c->auth = malloc(len);
        if (c->auth)
            snprintf(c->auth, len, "Authorization: Bearer %s", opts->token);
    }
    if (opts->cacert)
        c->cacert = strdup(opts->cacert);
    c->curl = curl_easy_init();
    if (!c->where || !c->curl || (opts->token && !c->auth) || (opts->cacert && !c->cacert)) {
        cli_ctl_client_free(c);
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    }
    *ret = c;
    return 0;
}

void cli_ctl_client_free(struct cli_ctl_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    if (c->auth) {
        explicit_bzero(c->auth, strlen(c->auth));
        free(c->auth);
    }
    free(c->base);
    free(c->cacert);
    free(c->unix_path);
    free(c->where);
    free(c);
}

const char *cli_ctl_client_where(const struct cli_ctl_client *c)
{
    return c->where;
}

bool cli_ctl_client_has_token(const struct cli_ctl_client *c)
{
    return c->auth != NULL;
}

char *cli_ctl_escape(const char *segment)
{
    char *e = curl_easy_escape(NULL, segment, (int)strlen(segment));
    char *copy;

    if (!e)
        return NULL;
    copy = strdup(e);
    curl_free(e);
    return copy;
}

void cli_ctl_response_fini(struct cli_ctl_response *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static int keep(struct xfer *x, const char *buf, size_t n)
{
    struct cli_ctl_response *r = x->resp;

    if (r->body_len + n > BODY_MAX) {
        x->too_big = true;
        return -1;
    }
    if (r->body_len + n + 1 > x->cap) {
        size_t cap = (r->body_len + n + 1) * 2;
        char *np = realloc(r->body, cap);

        if (!np)
            return -1;
        r->body = np;
        x->cap = cap;
    }
    memcpy(r->body + r->body_len, buf, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static size_t on_write(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;
    long status = 0;

    if (x->req->on_body) {
        (void)curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200) {
            if (x->req->on_body(x->req->ctx, buf, n) != 0) {
                x->stopped = true;
                return 0;
            }
            return n;
        }
    }
    return keep(x, buf, n) == 0 ? n : 0;
}

/* Copies a header's value (blanks trimmed) when line is "name: value". */
static void header_value(const char *line, size_t n, const char *name, char *dst, size_t cap)
{
    size_t nlen = strlen(name);
    const char *v;

    if (n <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
        return;
    v = line + nlen + 1;
    n -= nlen + 1;
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)v[n - 1]))
        n--;
    snprintf(dst, cap, "%.*s", (int)n, v);
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nitems;

    /* A new status line (after a 100 Continue, say) starts the headers over. */
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        x->resp->etag[0] = '\0';
        x->resp->content_type[0] = '\0';
    }
    header_value(buf, n, "ETag", x->resp->etag, sizeof(x->resp->etag));
    header_value(buf, n, "Content-Type", x->resp->content_type, sizeof(x->resp->content_type));
    return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *x = arg;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    if (x->req->should_stop && x->req->should_stop(x->req->ctx)) {
        x->stopped = true;
        return 1;
    }
    return 0;
}

static bool is_json_type(const char *ct)
{
    size_t n = strcspn(ct, ";");

    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n == 24 && strncasecmp(ct, "application/problem+json", 24) == 0);
}

static int transfer_error(struct cli_ctl_client *c, CURLcode code, const char *errbuf,
                          int64_t timeout_ms, bool connected, struct core_err *err)
{
    long os_errno = 0;
    char dur[32];

    (void)curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return core_err_set(err, -ECONNREFUSED, NULL, "cannot connect to the daemon at %s: %s",
                            c->where,
                            os_errno ? strerror((int)os_errno) : (*errbuf ? errbuf : "refused"));
    case CURLE_OPERATION_TIMEDOUT:
        if (timeout_ms < 0 && connected)
            return core_err_set(err, -ECONNRESET, NULL, "the stream from %s was silent for %ds",
                                c->where, CLI_CTL_STREAM_SILENCE_S);
        cli_ctl_duration_format(timeout_ms < 0 ? c->timeout_ms : timeout_ms, dur, sizeof(dur));
        return core_err_set(err, -ETIMEDOUT, NULL, "no answer from %s within %s", c->where, dur);
    case CURLE_PEER_FAILED_VERIFICATION:
        return core_err_set(err, -EIO, NULL,
                            "%s: the daemon's certificate is not trusted: %s (pass --cacert FILE "
                            "or set SOCKSERV_CACERT)",
                            c->where, *errbuf ? errbuf : curl_easy_strerror(code));
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return core_err_set(err, -ECONNRESET, NULL, "the connection to %s broke: %s", c->where,
                            *errbuf ? errbuf : curl_easy_strerror(code));
    default:
        return core_err_set(err, -EIO, NULL, "%s: %s", c->where,
                            *errbuf ? errbuf : curl_easy_strerror(code));
    }
}

int cli_ctl_request(struct cli_ctl_client *c, const struct cli_ctl_request *req,
                    struct cli_ctl_response *ret, struct core_err *err)
{
    char errbuf[CURL_ERROR_SIZE] = "", header[512];
    struct curl_slist *headers = NULL, *h;
    int64_t timeout_ms = req->timeout_ms == 0 ? c->timeout_ms : req->timeout_ms;
    struct xfer x = {.req = req, .resp = ret, .curl = c->curl};
    bool has_body_method = strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
                           strcmp(req->method, "PATCH") == 0;
    size_t url_len = strlen(c->base) + strlen(req->path) + 1;
    char *url = malloc(url_len);
    CURLcode code;
    int r = 0;

    memset(ret, 0, sizeof(*ret));
    if (!url)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    snprintf(url, url_len, "%s%s", c->base, req->path);

    h = curl_slist_append(headers, "Expect:");
    if (h)
        headers = h;
    snprintf(header, sizeof(header), "Accept: %s", req->accept ? req->accept : "application/json");
    if (h && (h = curl_slist_append(headers, header)))
        headers = h;
    if (h && has_body_method) {
        snprintf(header, sizeof(header), "Content-Type: %s",
                 req->content_type ? req->content_type : "application/json");
        if ((h = curl_slist_append(headers, header)))
            headers = h;
    }
    if (h && req->if_match) {
        snprintf(header, sizeof(header), "If-Match: %s", req->if_match);
        if ((h = curl_slist_append(headers, header)))
            headers = h;
    }
    if (h && req->last_event_id && *req->last_event_id) {
        snprintf(header, sizeof(header), "Last-Event-ID: %s", req->last_event_id);
        if ((h = curl_slist_append(headers, header)))
            headers = h;
    }
    if (h && c->auth && (h = curl_slist_append(headers, c->auth)))
        headers = h;
    if (!h) {
        r = core_err_set(err, -ENOMEM, NULL, "out of memory");
        goto out;
    }

    curl_easy_reset(c->curl);
    (void)curl_easy_setopt(c->curl, CURLOPT_URL, url);
    if (c->unix_path)
        (void)curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, c->unix_path);
    (void)curl_easy_setopt(c->curl, CURLOPT_PROXY, "");
    if (c->cacert)
        (void)curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cacert);
    (void)curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    (void)curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    (void)curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "sockserv-ctl/" SOCKSERV_VERSION);
    (void)curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
    (void)curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_write);
    (void)curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &x);
    (void)curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    (void)curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &x);
    (void)curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS,
                           (long)(timeout_ms > 0 ? timeout_ms : c->timeout_ms));
    if (timeout_ms > 0) {
        (void)curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    } else {
        (void)curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        (void)curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, (long)CLI_CTL_STREAM_SILENCE_S);
    }
    if (req->should_stop) {
        (void)curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
        (void)curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        (void)curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, &x);
    }
    if (strcmp(req->method, "GET") != 0)
        (void)curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, req->method);
    if (has_body_method || req->body) {
        const char *body = req->body ? req->body : "";

        (void)curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        (void)curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }

    code = curl_easy_perform(c->curl);
    (void)curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &ret->status);
    ret->stopped = x.stopped;
    if (x.stopped) {
        code = CURLE_OK;
    } else if (x.too_big) {
        r = core_err_set(err, -EIO, NULL, "the answer from %s is over %u MiB", c->where,
                         BODY_MAX >> 20);
        goto out;
    } else if (code != CURLE_OK) {
        r = transfer_error(c, code, errbuf, timeout_ms, ret->status != 0, err);
        goto out;
    }
    if (!ret->body)
        ret->body = calloc(1, 1);
    if (!ret->body) {
        r = core_err_set(err, -ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (ret->body_len > 0 && is_json_type(ret->content_type))
        ret->json = json_loadb(ret->body, ret->body_len, 0, NULL);
out:
    /* The handle keeps pointers to these; forget them before they go. */
    (void)curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    (void)curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    free(url);
    if (r < 0)
        cli_ctl_response_fini(ret);
    return r;
}
