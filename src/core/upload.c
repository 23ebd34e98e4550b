#include "core/upload.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/listener_int.h"
#include "core/service.h"
#include "registry_internal.h"

struct core_upload {
    struct core_registry *r;
    const struct core_service *svc;
    char id[CORE_ID_MAX];
    void *sess; /* the service's session; closed once, by whoever ends the upload */
    struct core_buf out;
    json_t *result; /* the stored file, once stored */
    bool ended;     /* the service gave its last answer (stored or refused) */

    pthread_mutex_t lock;
    pthread_cond_t idle;
    bool busy; /* guarded by lock: a piece is being fed */
    bool dead; /* guarded by lock: cut with its instance; sess is closed */

    struct inst_ref *ir;      /* guarded by the registry's ops: NULL once cut */
    struct core_upload *next; /* guarded by the registry's ops: in ir->uploads */
};

/*
 * Reads the service's answers in u->out: 0 when the content may go on, 1 once stored, or its
 * refusal. A final answer ends the upload.
 */
static int take_answers(struct core_upload *u, struct core_err *err)
{
    uint8_t *nl;

    while (u->out.len > 0 && (nl = memchr(u->out.data, '\n', u->out.len)) != NULL) {
        size_t n = (size_t)(nl - u->out.data);
        json_t *j = NULL;
        int r = u->svc->upload_result((const char *)u->out.data, n, &j, err);

        core_buf_consume(&u->out, n + 1);
        if (r == 0)
            continue;
        u->ended = true;
        if (r > 0) {
            u->result = j;
            return 1;
        }
        return r;
    }
    return 0;
}

/* Feeds len bytes to the session and reads its answers (see core_upload_write()). */
static int feed(struct core_upload *u, const void *data, size_t len, struct core_err *err)
{
    int v = u->svc->session_feed(u->sess, data, len, &u->out);
    int r = take_answers(u, err);

    if (r != 0)
        return r;
    if (v < 0 || v == CORE_VERDICT_CLOSE) {
        u->ended = true;
        return core_err_set(err, -EIO, NULL, "the service ended the upload without an answer");
    }
    return 0;
}

static void upload_destroy(struct core_upload *u)
{
    core_buf_fini(&u->out);
    json_decref(u->result);
    free(u->sess);
    pthread_cond_destroy(&u->idle);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

int core_upload_begin(struct core_registry *r, const char *id, const char *name, uint64_t size,
                      const uint8_t *sha256, struct core_upload **ret, struct core_err *err)
{
    struct core_buf head = {0};
    struct core_listener *l;
    struct core_upload *u;
    int rc, v;

    u = calloc(1, sizeof(*u));
    if (!u)
        return core_err_set(err, -ENOMEM, NULL, "out of memory");
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->idle, NULL);
    u->r = r;
    /* Under ops: no change replaces or frees the instance meanwhile. */
    pthread_mutex_lock(&r->ops);
    l = core_registry_lookup(r, id);
    if (!l) {
        rc = core_err_set(err, -ENOENT, NULL, "no listener '%s'", id);
        goto out_unlock;
    }
    u->svc = core_listener_cfg(l)->svc;
    if (!u->svc->upload_header || !u->svc->upload_result) {
        rc = core_err_set(err, -ENOTSUP, NULL, "listener '%s' (%s) takes no uploads", id,
                          u->svc->name);
        goto out_unlock;
    }
    if (!l->inst || !l->runner) {
        rc =
            core_err_set(err, -EBUSY, NULL, "listener '%s' is not running: start it to upload", id);
        goto out_unlock;
    }
    rc = u->svc->upload_header(name, size, sha256, &head, err);
    if (rc < 0)
        goto out_unlock;
    u->sess = calloc(1, u->svc->session_size ? u->svc->session_size : 1);
    if (!u->sess) {
        rc = core_err_set(err, -ENOMEM, NULL, "out of memory");
        goto out_unlock;
    }
    v = u->svc->session_open(l->inst->inst, u->sess, &u->out);
    rc = take_answers(u, err);
    if (rc == 0 && (v < 0 || v == CORE_VERDICT_CLOSE))
        rc = core_err_set(err, -EIO, NULL, "the service refused the session");
    if (rc == 0)
        rc = feed(u, head.data, head.len, err);
    if (rc < 0) {
        u->svc->session_close(u->sess, false);
        goto out_unlock;
    }
    snprintf(u->id, sizeof(u->id), "%s", id);
    u->ir = l->inst;
    u->next = l->inst->uploads;
    l->inst->uploads = u;
    pthread_mutex_unlock(&r->ops);
    core_buf_fini(&head);
    *ret = u;
    return 0;

out_unlock:
    pthread_mutex_unlock(&r->ops);
    core_buf_fini(&head);
    upload_destroy(u);
    return rc;
}

int core_upload_write(struct core_upload *u, const void *data, size_t len, struct core_err *err)
{
    int r;

    if (u->ended)
        return core_err_set(err, -EINVAL, NULL, "the upload is over");
    pthread_mutex_lock(&u->lock);
    if (u->dead) {
        pthread_mutex_unlock(&u->lock);
        u->ended = true;
        return core_err_set(err, -ESHUTDOWN, NULL,
                            "listener '%s' stopped or changed during the upload; nothing kept, "
                            "send it again",
                            u->id);
    }
    u->busy = true;
    pthread_mutex_unlock(&u->lock);
    r = len > 0 ? feed(u, data, len, err) : 0;
    pthread_mutex_lock(&u->lock);
    u->busy = false;
    pthread_cond_broadcast(&u->idle);
    pthread_mutex_unlock(&u->lock);
    return r;
}

json_t *core_upload_result(struct core_upload *u)
{
    return u->result ? json_incref(u->result) : NULL;
}

void core_upload_free(struct core_upload *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&u->r->ops);
    if (u->ir) {
        struct core_upload **p = &u->ir->uploads;

        while (*p && *p != u)
            p = &(*p)->next;
        if (*p)
            *p = u->next;
        u->ir = NULL;
        u->svc->session_close(u->sess, u->result != NULL);
    }
    pthread_mutex_unlock(&u->r->ops);
    upload_destroy(u);
}

void core_upload_cancel_all(struct core_upload **list)
{
    while (*list) {
        struct core_upload *u = *list;

        *list = u->next;
        pthread_mutex_lock(&u->lock);
        while (u->busy)
            pthread_cond_wait(&u->idle, &u->lock);
        u->dead = true;
        pthread_mutex_unlock(&u->lock);
        u->svc->session_close(u->sess, u->result != NULL);
        u->ir = NULL;
        u->next = NULL;
    }
}
