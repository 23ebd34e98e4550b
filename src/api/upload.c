#include "api/upload.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "core/text.h"
#include "core/thread.h"
#include "core/upload.h"

enum step { STEP_NONE, STEP_BEGIN, STEP_WRITE, STEP_FREE };

struct api_upload {
    struct core_registry *registry;
    char *id, *name;
    uint64_t size;
    bool has_sha256;
    uint8_t sha256[API_UPLOAD_SHA256_LEN];
    uint64_t received; /* handed to the service */
    uint64_t taken;    /* gathered, handed or not */

    /* The step handed to a worker: read by the worker while the connection is suspended. */
    enum step step;
    struct MHD_Connection *conn;
    uint8_t *chunk;
    size_t chunk_len, chunk_cap;
    bool done; /* guarded by the workers' lock */
    struct api_upload *next;

    struct core_upload *u;
    struct api_upload_outcome outcome;
    json_t *result;
};

struct api_uploads {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct api_upload *head, *tail; /* guarded by lock */
    bool stopping;                  /* guarded by lock */
    pthread_t threads[API_UPLOAD_WORKERS];
    unsigned n_threads;
};

static void upload_free(struct api_upload *up)
{
    core_upload_free(up->u);
    json_decref(up->result);
    free(up->chunk);
    free(up->id);
    free(up->name);
    free(up);
}

struct api_upload *api_upload_new(struct core_registry *r, const char *id, const char *name,
                                  uint64_t size, const uint8_t *sha256)
{
    struct api_upload *up = calloc(1, sizeof(*up));

    if (!up)
        return NULL;
    up->registry = r;
    up->id = strdup(id);
    up->name = strdup(name);
    up->size = size;
    if (sha256) {
        up->has_sha256 = true;
        memcpy(up->sha256, sha256, sizeof(up->sha256));
    }
    if (!up->id || !up->name) {
        upload_free(up);
        return NULL;
    }
    return up;
}

/* The outcome of a step: code (and up->u's result once stored). */
static void settle(struct api_upload *up, int code)
{
    up->outcome.code = code;
    if (code == 1 && !up->result) {
        up->result = core_upload_result(up->u);
        up->outcome.result = up->result;
    }
}

/* One step, on a worker. */
static void run(struct api_upload *up)
{
    struct core_err err = {0};
    int r;

    if (up->step == STEP_BEGIN) {
        r = core_upload_begin(up->registry, up->id, up->name, up->size,
                              up->has_sha256 ? up->sha256 : NULL, &up->u, &err);
        if (r == 0 && up->size == 0)
            r = 1;
    } else if (up->outcome.code != 0) {
        return; /* refused already: the rest of the body is dropped */
    } else {
        r = core_upload_write(up->u, up->chunk, up->chunk_len, &err);
        up->received += up->chunk_len;
        up->chunk_len = 0;
        if (r == 0 && up->received >= up->size)
            r = core_err_set(&err, -EIO, NULL, "the service did not answer the upload");
    }
    if (r < 0)
        up->outcome.err = err;
    settle(up, r);
}

static void *worker_main(void *arg)
{
    struct api_uploads *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct api_upload *up;

        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        up = p->head;
        if (!up)
            break;
        p->head = up->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        if (up->step == STEP_FREE) {
            upload_free(up);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        run(up);
        pthread_mutex_lock(&p->lock);
        up->done = true;
        /* Under the lock: libmicrohttpd's thread reads done once resumed. */
        MHD_resume_connection(up->conn);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int api_uploads_start(struct api_uploads **ret)
{
    struct api_uploads *p = calloc(1, sizeof(*p));
    int r = 0;

    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (unsigned i = 0; i < API_UPLOAD_WORKERS; i++) {
        char name[16];

        r = -pthread_create(&p->threads[i], NULL, worker_main, p);
        if (r < 0)
            break;
        snprintf(name, sizeof(name), "ss-upload%u", i);
        core_thread_name(p->threads[i], name);
        p->n_threads++;
    }
    if (r < 0) {
        api_uploads_free(p);
        return r;
    }
    *ret = p;
    return 0;
}

void api_uploads_stop(struct api_uploads *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    /* The workers empty the queue before they end. */
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

void api_uploads_free(struct api_uploads *p)
{
    if (!p)
        return;
    api_uploads_stop(p);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Queues up; -ESHUTDOWN when the workers stop. */
static int enqueue(struct api_uploads *p, struct api_upload *up)
{
    int r = 0;

    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        r = -ESHUTDOWN;
    } else {
        up->next = NULL;
        up->done = false;
        if (p->tail)
            p->tail->next = up;
        else
            p->head = up;
        p->tail = up;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

int api_upload_take(struct api_upload *up, const void *data, size_t len)
{
    /* A batch is handed as soon as it is full: it holds less than a batch and one piece (no
     * larger than libmicrohttpd's buffer). */
    if (len > up->chunk_cap - up->chunk_len) {
        size_t cap =
            up->chunk_len + len > API_UPLOAD_BATCH ? up->chunk_len + len : API_UPLOAD_BATCH;
        uint8_t *c = realloc(up->chunk, cap);

        if (!c)
            return -ENOMEM;
        up->chunk = c;
        up->chunk_cap = cap;
    }
    memcpy(up->chunk + up->chunk_len, data, len);
    up->chunk_len += len;
    up->taken += len;
    return up->chunk_len >= API_UPLOAD_BATCH || up->taken >= up->size;
}

int api_upload_step(struct api_uploads *p, struct api_upload *up, struct MHD_Connection *conn,
                    bool begin)
{
    if (!p)
        return -ESHUTDOWN;
    up->step = begin ? STEP_BEGIN : STEP_WRITE;
    up->conn = conn;
    return enqueue(p, up);
}

bool api_upload_step_done(struct api_uploads *p, const struct api_upload *up)
{
    bool done;

    if (!p || up->step == STEP_NONE)
        return false;
    pthread_mutex_lock(&p->lock);
    done = up->done;
    pthread_mutex_unlock(&p->lock);
    return done;
}

bool api_upload_step_pending(const struct api_upload *up)
{
    return up->step != STEP_NONE;
}

const struct api_upload_outcome *api_upload_outcome(const struct api_upload *up)
{
    return &up->outcome;
}

uint64_t api_upload_received(const struct api_upload *up)
{
    return up->received;
}

void api_upload_release(struct api_uploads *p, struct api_upload *up)
{
    if (!up)
        return;
    up->step = STEP_FREE;
    if (!p || enqueue(p, up) < 0)
        upload_free(up);
}

/* The value of a base64 digit (RFC 4648 §4), or -1. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int api_digest_parse(const char *value, uint8_t ret[API_UPLOAD_SHA256_LEN])
{
    static const char key[] = "sha-256";
    const char *p = value;

    while (*p) {
        const char *k, *v, *end;
        uint8_t out[API_UPLOAD_SHA256_LEN + 2];
        unsigned acc = 0, bits = 0;
        size_t n = 0;

        p += strspn(p, " \t,");
        if (!*p)
            break;
        k = p;
        p += strcspn(p, "=,");
        if (*p != '=' || (size_t)(p - k) != sizeof(key) - 1 || strncmp(k, key, p - k) != 0) {
            p += strcspn(p, ",");
            continue;
        }
        v = p + 1;
        if (*v != ':')
            return -EINVAL;
        end = strchr(v + 1, ':');
        if (!end)
            return -EINVAL;
        for (const char *c = v + 1; c < end; c++) {
            int d;

            if (*c == '=')
                break;
            d = b64_value(*c);
            if (d < 0)
                return -EINVAL;
            acc = (acc << 6) | (unsigned)d;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                if (n == sizeof(out))
                    return -EINVAL;
                out[n++] = (uint8_t)(acc >> bits);
            }
        }
        if (n != API_UPLOAD_SHA256_LEN)
            return -EINVAL;
        memcpy(ret, out, API_UPLOAD_SHA256_LEN);
        return 1;
    }
    return 0;
}

int api_digest_format(const char *hex, char *buf, size_t len)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t b[API_UPLOAD_SHA256_LEN];
    char text[48];
    size_t n = 0;

    if (!hex || strlen(hex) != 2 * API_UPLOAD_SHA256_LEN)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(b); i++) {
        int hi = core_hex_value(hex[2 * i]), lo = core_hex_value(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -EINVAL;
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    for (size_t i = 0; i < sizeof(b); i += 3) {
        unsigned v = (unsigned)b[i] << 16;

        if (i + 1 < sizeof(b))
            v |= (unsigned)b[i + 1] << 8;
        if (i + 2 < sizeof(b))
            v |= b[i + 2];
        text[n++] = digits[(v >> 18) & 63];
        text[n++] = digits[(v >> 12) & 63];
        text[n++] = i + 1 < sizeof(b) ? digits[(v >> 6) & 63] : '=';
        text[n++] = i + 2 < sizeof(b) ? digits[v & 63] : '=';
    }
    text[n] = '\0';
    if ((size_t)snprintf(buf, len, "sha-256=:%s:", text) >= len)
        return -EINVAL;
    return 0;
}

void api_handle_listener_file_put(const struct api_request *req, struct api_reply *ret)
{
    const struct api_upload_outcome *o = req->upload;
    const char *hex;

    if (!o) {
        api_reply_problem(ret, 500, NULL, "the upload was not run");
        return;
    }
    if (o->code == 1 && o->result) {
        hex = json_string_value(json_object_get(o->result, "sha256"));
        api_reply_json(ret, 201, json_deep_copy(o->result));
        (void)api_digest_format(hex, ret->repr_digest, sizeof(ret->repr_digest));
        return;
    }
    switch (o->code) {
    case -ENOENT:
    case -ENOTSUP:
        api_reply_problem(ret, 404, NULL, "%s", o->err.msg);
        return;
    case -ESHUTDOWN:
        api_reply_problem(ret, 409, NULL, "%s", o->err.msg);
        return;
    case -EBADMSG:
        api_reply_problem(ret, 400, o->err.field[0] ? o->err.field : NULL, "%s", o->err.msg);
        return;
    case -ETIMEDOUT:
        api_reply_problem(ret, 408, NULL, "%s", o->err.msg);
        return;
    default:
        api_reply_error(ret, o->code < 0 ? o->code : -EIO, &o->err);
        return;
    }
}
