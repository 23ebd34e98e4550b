/*
 * One connection admitted by its source (every TCP model), and served to its end with
 * blocking-style waits: every wait is a poll(2) that also watches the runner's wake eventfd, so
 * a stop reaches the connection at once. Used by the thread-style TCP models (sequential,
 * thread, pool) and by the process model's children.
 */
#include "core/runner.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

#define READ_SIZE (64 * 1024)
#define LINGER_MS 1000

enum wait_result { WAIT_READY, WAIT_STOP, WAIT_TIMEOUT, WAIT_ERROR };

static void reject(struct core_metrics *m, enum core_counter reason)
{
    core_metrics_add(m, CORE_CTR_CONNECTIONS_REJECTED, 1);
    core_metrics_add(m, reason, 1);
}

int core_runner_admit(struct core_sources *sources, const struct core_listener_cfg *cfg,
                      struct core_metrics *m, int fd, uint64_t now_ns, struct core_admission *ret)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct core_admission a = {0};
    int r;

    if (sources && getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
        core_source_from_sockaddr((struct sockaddr *)&ss, &a.src, NULL)) {
        r = core_sources_admit(sources, &a.src, cfg->max_connections_per_source,
                               cfg->connection_rate_per_source, now_ns);
        switch (r) {
        case 0:
            a.counted = true;
            break;
        case -EAGAIN:
            reject(m, CORE_CTR_REJECTED_RATE);
            return r;
        case -EUSERS:
            reject(m, CORE_CTR_REJECTED_PER_SOURCE);
            return r;
        default:
            reject(m, CORE_CTR_REJECTED_RESOURCES);
            return r;
        }
    }
    *ret = a;
    return 0;
}

void core_runner_release(struct core_sources *sources, struct core_admission *a)
{
    if (sources && a->counted)
        core_sources_release(sources, &a->src);
    a->counted = false;
}

/* Waits until fd has events, the runner stops, or timeout_ms (-1: forever) passes. */
static enum wait_result wait_fd(const struct core_conn_ctx *rn, int fd, short events,
                                int timeout_ms)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = rn->wake_fd, .events = POLLIN}};
    int n;

    for (;;) {
        n = poll(p, 2, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return WAIT_ERROR;
        if (n == 0)
            return WAIT_TIMEOUT;
        if (p[1].revents)
            return WAIT_STOP;
        return WAIT_READY;
    }
}

static int idle_timeout(const struct core_conn_ctx *rn)
{
    return rn->idle_timeout_ms ? (int)rn->idle_timeout_ms : -1;
}

/* Sends everything in out. Returns 0, or a negative errno / -ETIMEDOUT / -ECANCELED (stop). */
static int flush(const struct core_conn_ctx *rn, int fd, struct core_buf *out)
{
    while (out->len > 0) {
        ssize_t n = send(fd, out->data, out->len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            core_metrics_add(rn->m, CORE_CTR_BYTES_OUT, (uint64_t)n);
            core_buf_consume(out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -errno;
        switch (wait_fd(rn, fd, POLLOUT, idle_timeout(rn))) {
        case WAIT_READY:
            break;
        case WAIT_TIMEOUT:
            return -ETIMEDOUT;
        case WAIT_STOP:
            return -ECANCELED;
        case WAIT_ERROR:
            return -EIO;
        }
    }
    return 0;
}

/* After the service closed: stop sending, then read and discard what the client still sends
 * for a moment, so that unread input does not turn our close into a reset that could destroy
 * the answer in flight. */
static void linger(const struct core_conn_ctx *rn, int fd)
{
    int64_t deadline = core_now_ms() + LINGER_MS;
    char sink[4096];

    (void)shutdown(fd, SHUT_WR);
    for (;;) {
        int64_t left = deadline - core_now_ms();
        ssize_t n;

        if (left <= 0 || wait_fd(rn, fd, POLLIN, (int)left) != WAIT_READY)
            return;
        n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return;
    }
}

/* Serves one accepted connection to its end; closes fd. accepted_ns: when it was accepted
 * (the service time of a greeting starts there). */
void core_runner_serve_conn(const struct core_conn_ctx *rn, int fd, uint64_t accepted_ns)
{
    const struct core_service *svc = rn->svc;
    struct core_buf out = {0};
    bool completed = false, do_linger = false;
    uint8_t *in = malloc(READ_SIZE);
    void *sess = calloc(1, svc->session_size ? svc->session_size : 1);
    uint64_t t0; /* when the request being answered arrived; 0: none */
    int r;

    if (!in || !sess) {
        core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
        goto out_free;
    }
    r = svc->session_open(rn->inst, sess, &out);
    t0 = out.len ? accepted_ns : 0;
    for (;;) {
        int fr = flush(rn, fd, &out);
        ssize_t n;

        if (fr < 0) {
            if (fr == -ETIMEDOUT)
                core_metrics_add(rn->m, CORE_CTR_IDLE_TIMEOUTS, 1);
            else if (fr != -ECANCELED)
                core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
            break;
        }
        if (t0 && r != CORE_VERDICT_PULL) {
            core_metrics_record_latency(rn->m, core_runner_now_ns() - t0);
            t0 = 0;
        }
        if (r < 0) {
            core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
            do_linger = true;
            break;
        }
        if (r == CORE_VERDICT_PULL) {
            r = svc->session_pull(sess, &out);
            continue;
        }
        if (r == CORE_VERDICT_CLOSE || completed) {
            completed = true;
            do_linger = true;
            break;
        }
        switch (wait_fd(rn, fd, POLLIN, idle_timeout(rn))) {
        case WAIT_READY:
            break;
        case WAIT_TIMEOUT:
            core_metrics_add(rn->m, CORE_CTR_IDLE_TIMEOUTS, 1);
            goto out_close;
        case WAIT_STOP:
            goto out_close;
        case WAIT_ERROR:
            core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
            goto out_close;
        }
        n = recv(fd, in, READ_SIZE, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            if (errno != ECONNRESET)
                core_metrics_add(rn->m, CORE_CTR_ERRORS, 1);
            goto out_close;
        }
        if (n == 0) {
            /* The client closed its side: the service may answer once more, then we close. */
            t0 = core_runner_now_ns();
            r = svc->session_eof ? svc->session_eof(sess, &out) : CORE_VERDICT_CLOSE;
            completed = r >= 0;
            if (!out.len)
                t0 = 0;
            continue;
        }
        core_metrics_add(rn->m, CORE_CTR_BYTES_IN, (uint64_t)n);
        t0 = core_runner_now_ns();
        r = svc->session_feed(sess, in, (size_t)n, &out);
        if (!out.len)
            t0 = 0;
    }
    if (do_linger)
        linger(rn, fd);
out_close:
    svc->session_close(sess, completed);
out_free:
    core_buf_fini(&out);
    free(sess);
    free(in);
    close(fd);
}
