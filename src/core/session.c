#include "core/session.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core/clock.h"

int core_session_open(struct core_session *s, const struct core_service *svc, void *inst,
                      struct core_metrics *m, uint64_t accepted_ns)
{
    *s = (struct core_session){.svc = svc, .m = m, .state = CORE_SESSION_OPEN};
    s->sess = calloc(1, svc->session_size ? svc->session_size : 1);
    if (!s->sess)
        return -ENOMEM;
    s->verdict = svc->session_open(inst, s->sess, &s->out);
    s->t0 = s->out.len ? accepted_ns : 0;
    return 0;
}

enum core_session_next core_session_next(struct core_session *s)
{
    for (;;) {
        if (s->state == CORE_SESSION_CUT)
            return CORE_SESSION_CLOSE;
        if (s->out.len > 0)
            return CORE_SESSION_WRITE;
        if (s->state == CORE_SESSION_DONE)
            return CORE_SESSION_LINGER;
        if (s->t0 && s->verdict != CORE_VERDICT_PULL) {
            core_metrics_record_latency(s->m, core_now_ns() - s->t0);
            s->t0 = 0;
        }
        if (s->verdict < 0) {
            core_metrics_add(s->m, CORE_CTR_ERRORS, 1);
            s->state = CORE_SESSION_DONE;
            continue;
        }
        if (s->verdict == CORE_VERDICT_PULL) {
            s->verdict = s->svc->session_pull(s->sess, &s->out);
            continue;
        }
        if (s->verdict == CORE_VERDICT_CLOSE || s->completed) {
            s->completed = true;
            s->state = CORE_SESSION_DONE;
            continue;
        }
        return CORE_SESSION_READ;
    }
}

void core_session_input(struct core_session *s, const uint8_t *in, size_t len)
{
    const struct core_service *svc = s->svc;

    assert(s->state == CORE_SESSION_OPEN && s->out.len == 0);
    s->t0 = core_now_ns();
    if (len == 0) {
        /* The client closed its side: the service may answer once more, then we close. */
        s->verdict = svc->session_eof ? svc->session_eof(s->sess, &s->out) : CORE_VERDICT_CLOSE;
        s->completed = s->verdict >= 0;
    } else {
        core_metrics_add(s->m, CORE_CTR_BYTES_IN, len);
        s->verdict = svc->session_feed(s->sess, in, len, &s->out);
    }
    if (!s->out.len)
        s->t0 = 0;
}

void core_session_sent(struct core_session *s, size_t n)
{
    core_metrics_add(s->m, CORE_CTR_BYTES_OUT, n);
    core_buf_consume(&s->out, n);
}

int core_session_recv(struct core_session *s, int fd, uint8_t *buf, size_t size)
{
    ssize_t n;

    if (s->tls) {
        n = core_tls_read(s->tls, buf, size);
        if (n < 0)
            return (int)n;
        core_session_input(s, buf, (size_t)n);
        return 0;
    }
    n = recv(fd, buf, size, MSG_DONTWAIT);

    if (n < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    core_session_input(s, buf, (size_t)n);
    return 0;
}

int core_session_send(struct core_session *s, int fd)
{
    while (s->out.len > 0) {
        ssize_t n;

        if (s->tls) {
            n = core_tls_write(s->tls, s->out.data, s->out.len);
            if (n < 0)
                return (int)n;
            core_session_sent(s, (size_t)n);
            continue;
        }
        n = send(fd, s->out.data, s->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            core_session_sent(s, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : -EIO;
    }
    return 0;
}

void core_session_fail(struct core_session *s, int error)
{
    if (s->state != CORE_SESSION_OPEN)
        return;
    switch (error) {
    case -ETIMEDOUT:
        core_metrics_add(s->m, CORE_CTR_IDLE_TIMEOUTS, 1);
        break;
    case -ECANCELED:
    case -ECONNRESET:
    case -EPIPE:
        break;
    default:
        core_metrics_add(s->m, CORE_CTR_ERRORS, 1);
        break;
    }
    s->completed = false;
    s->state = CORE_SESSION_CUT;
}

void core_session_close(struct core_session *s)
{
    s->svc->session_close(s->sess, s->completed && s->state != CORE_SESSION_CUT);
    core_buf_fini(&s->out);
    free(s->sess);
    s->sess = NULL;
}
