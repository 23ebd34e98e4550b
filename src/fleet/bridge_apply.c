/*
 * The bridge's apply worker: runs a desired-state record through the same all-or-nothing
 * transaction as PUT /api/v1/config, off the bus thread (a change binds sockets and joins
 * threads), and hands the result back to the bus thread by the bridge's lock and eventfd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge_internal.h"
#include "core/change.h"
#include "core/err.h"
#include "core/log.h"
#include "core/registry.h"

void bridge_etag(char *buf, size_t len, uint64_t revision)
{
    (void)snprintf(buf, len, "\"r%" PRIu64 "\"", revision);
}

void bridge_job_fini(struct bridge_job *j)
{
    json_decref(j->problem);
    json_decref(j->config);
    memset(j, 0, sizeof(*j));
}

/* The configuration's revision now. */
static uint64_t current_revision(struct core_registry *r)
{
    json_t *conf = NULL;
    uint64_t rev = 0;

    if (core_registry_config(r, &conf) == 0)
        rev = (uint64_t)json_integer_value(json_object_get(conf, "revision"));
    json_decref(conf);
    return rev;
}

/* The revision an If-Match ETag names ("\"r7\"", also W/ and unquoted forms); false when it
 * names none. */
static bool etag_revision(const char *etag, uint64_t *ret)
{
    const char *p = etag;
    char *end;
    unsigned long long v;

    if (strncmp(p, "W/", 2) == 0)
        p += 2;
    if (*p == '"')
        p++;
    if (*p == 'r')
        p++;
    if (*p < '0' || *p > '9')
        return false;
    errno = 0;
    v = strtoull(p, &end, 10);
    if (errno || (*end != '\0' && strcmp(end, "\"") != 0))
        return false;
    *ret = v;
    return true;
}

/* The problem the REST API would answer for a failed change (see api/handlers.c). */
static json_t *change_problem(int code, const struct core_change *ch, const struct core_err *err)
{
    unsigned status = core_err_http_status(code);
    json_t *p;

    if (ch->persist_failed && status < 500)
        status = 500;
    p = core_err_problem_json(status, NULL, err->msg[0] ? err->msg : strerror(-code), err->field);
    if (p && ch->listener[0])
        (void)json_object_set_new(p, "listener", json_string(ch->listener));
    return p;
}

/* Runs job; fills res->reply's result, revision, problem. */
static void run_job(struct fleet_bridge *b, struct bridge_job *job, struct bridge_result *res)
{
    struct fleet_reply *rep = &res->reply;
    struct core_change ch = {
        .iface = CORE_IFACE_FLEET, .has_fleet_offset = true, .fleet_offset = job->offset};
    struct core_err err = {0};
    json_t *out = NULL;
    uint64_t want;
    int rc;

    if (job->reject) {
        rep->result = FLEET_RESULT_REJECTED;
        rep->problem = json_incref(job->problem);
        goto mark;
    }
    if (job->has_if_match) {
        ch.expect.kind = CORE_EXPECT_ONE_OF;
        if (etag_revision(job->if_match, &want)) {
            ch.expect.revisions[0] = want;
            ch.expect.n = 1;
        }
    }
    rc = core_registry_config_replace(b->registry, job->config, &ch, &out, &err);
    json_decref(out);
    if (rc == -ESTALE) {
        char etag[FLEET_ETAG_MAX], detail[256];

        bridge_etag(etag, sizeof(etag), ch.etag);
        (void)snprintf(detail, sizeof(detail),
                       "precondition failed: if_match %.64s: the configuration is at %s now",
                       job->if_match, etag);
        rep->result = FLEET_RESULT_CONFLICT;
        rep->problem = core_err_problem_json(core_err_http_status(rc), NULL, detail, NULL);
        core_change_fini(&ch);
        goto mark;
    }
    if (rc < 0) {
        rep->result = FLEET_RESULT_REJECTED;
        rep->problem = change_problem(rc, &ch, &err);
        core_change_fini(&ch);
        goto mark;
    }
    rep->result = json_array_size(ch.diff) > 0 ? FLEET_RESULT_APPLIED : FLEET_RESULT_UNCHANGED;
    rep->revision = ch.revision;
    core_change_fini(&ch);
    pthread_mutex_lock(&b->lock);
    b->st.has_applied_offset = true;
    b->st.applied_offset = job->offset;
    pthread_mutex_unlock(&b->lock);
    goto answer;

mark:
    /* Nothing changed: the offset alone is recorded, before the answer goes out. */
    memset(&err, 0, sizeof(err));
    if (core_registry_fleet_mark(b->registry, job->offset, &err) < 0)
        core_log_warn("fleet: offset %" PRIu64 " not recorded: %s", job->offset, err.msg);
    rep->revision = current_revision(b->registry);
answer:
    bridge_etag(rep->etag, sizeof(rep->etag), rep->revision);
    pthread_mutex_lock(&b->lock);
    rep->has_applied_offset = b->st.has_applied_offset;
    rep->applied_offset = b->st.applied_offset;
    pthread_mutex_unlock(&b->lock);
}

void *bridge_worker_main(void *arg)
{
    struct fleet_bridge *b = arg;

    for (;;) {
        struct bridge_job job;
        struct bridge_result res;
        uint64_t one = 1;

        pthread_mutex_lock(&b->lock);
        while (!b->job_ready && !b->worker_stop)
            pthread_cond_wait(&b->cond, &b->lock);
        if (!b->job_ready) {
            pthread_mutex_unlock(&b->lock);
            break;
        }
        job = b->job;
        memset(&b->job, 0, sizeof(b->job));
        b->job_ready = false;
        b->busy = true;
        pthread_mutex_unlock(&b->lock);

        memset(&res, 0, sizeof(res));
        snprintf(res.correlation_id, sizeof(res.correlation_id), "%s", job.correlation_id);
        snprintf(res.reply_to, sizeof(res.reply_to), "%s", job.reply_to);
        snprintf(res.reply.node, sizeof(res.reply.node), "%s", b->node);
        snprintf(res.reply.boot, sizeof(res.reply.boot), "%s", b->boot);
        snprintf(res.reply.record, sizeof(res.reply.record), "%s", job.record_id);
        res.reply.offset = job.offset;
        run_job(b, &job, &res);
        bridge_job_fini(&job);

        pthread_mutex_lock(&b->lock);
        b->result = res;
        b->result_ready = true;
        b->busy = false;
        pthread_mutex_unlock(&b->lock);
        (void)!write(b->efd, &one, sizeof(one));
        /* The result is out: the runners the change replaced without waking them are told to
         * drain now (core_listener_commit_all()), as the API's change thread does after its
         * answer. */
        core_registry_reap_drained(b->registry);
    }
    return NULL;
}
